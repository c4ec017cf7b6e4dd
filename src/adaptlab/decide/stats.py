"""Statistics behind the decision: seed bands, paired test-set bootstrap, and how many labels would settle it.

All rungs of a study are scored on the same sealed test items, and seed ``s`` draws the same
train/validation split for every rung. A paired comparison therefore resamples test items once for
both rungs (and seeds jointly where both rungs ran the same seeds), which removes the item-difficulty
noise the two rungs share; that is why a paired difference can be significant when two bands overlap,
and why two seed-only bands can be apart while the paired test-set difference is not significant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from adaptlab.decide.policy import z_value
from adaptlab.metrics import f1_replicates, multilabel_replicates, weighted_f1  # noqa: F401  (re-exported)

def normal_band(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float]:
    """Normal-approximation band of a seed mean from the seed spread only (no test-set sampling error).

    Example:
        >>> lo, hi = normal_band([0.77, 0.78, 0.79])
        >>> round(lo, 4), round(hi, 4)
        (0.7687, 0.7913)
    """
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float("nan"), float("nan")  # one run has no spread to estimate
    half = z_value(1 - alpha / 2) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


@dataclass
class PairedResult:
    diff: float  # mean F1 of b minus mean F1 of a (point estimate on all items)
    ci_low: float
    ci_high: float
    se: float
    se_seed: float  # part of the SE that seed resampling alone produces (does not shrink with more items)
    p_value: float
    paired_seeds: bool


def paired_bootstrap(
    rep_a: np.ndarray, rep_b: np.ndarray, point_a: np.ndarray, point_b: np.ndarray, *, paired_seeds: bool,
    alpha: float, seed: int,
) -> PairedResult:
    """Bootstrap CI of mean(b) - mean(a) from paired test-item replicates.

    ``rep_a``/``rep_b`` are (n_boot, seeds) F1 under the *same* item resamples; ``point_*`` the per-seed
    F1 on all items. Seeds are resampled too: jointly when the two rungs ran the same seeds (same splits),
    independently otherwise.
    """
    rng = np.random.default_rng(seed + 7919)
    B, sa = rep_a.shape
    sb = rep_b.shape[1]
    ia = rng.integers(0, sa, size=(B, sa))
    ib = ia if paired_seeds else rng.integers(0, sb, size=(B, sb))
    boot = np.take_along_axis(rep_b, ib, axis=1).mean(axis=1) - np.take_along_axis(rep_a, ia, axis=1).mean(axis=1)
    # Seed-only replicates (items fixed): the share of the noise more test items cannot remove.
    seed_only = point_b[ib].mean(axis=1) - point_a[ia].mean(axis=1)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    diff = float(point_b.mean() - point_a.mean())
    # Two-sided bootstrap p-value of "no difference": how often the replicate crosses zero.
    p = 2 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0)))
    return PairedResult(diff=diff, ci_low=float(lo), ci_high=float(hi), se=float(boot.std(ddof=1)),
                        se_seed=float(seed_only.std(ddof=1)) if min(sa, sb) > 1 else 0.0,
                        p_value=min(1.0, p), paired_seeds=paired_seeds)


def seed_only_difference(a: Sequence[float], b: Sequence[float], alpha: float) -> tuple[float, float, float, float]:
    """Normal-approximation (Welch) CI of mean(b) - mean(a) from seed spreads only: (diff, lo, hi, se)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    var = (a.var(ddof=1) / len(a) if len(a) > 1 else float("nan")) + (b.var(ddof=1) / len(b) if len(b) > 1 else float("nan"))
    diff = float(b.mean() - a.mean())
    se = math.sqrt(var) if np.isfinite(var) else float("nan")
    z = z_value(1 - alpha / 2)
    return diff, diff - z * se, diff + z * se, se


def items_to_resolve(se: float, se_seed: float, n_items: int, margin: float, alpha: float, power: float) -> Optional[int]:
    """Test items needed so that a true difference of ``margin`` is detected at ``alpha`` with ``power``.

    The test-sampling part of the variance scales with 1/n; the seed part does not, so when the seed
    noise alone is too large no number of test items suffices (returns None: run more seeds instead).

    Example:
        >>> items_to_resolve(se=0.02, se_seed=0.0, n_items=400, margin=0.02, alpha=0.05, power=0.8)
        3140
    """
    if margin <= 0 or n_items <= 0 or not np.isfinite(se):
        return None
    target = margin / (z_value(1 - alpha / 2) + z_value(power))
    var_test = max(se ** 2 - se_seed ** 2, 0.0)
    room = target ** 2 - se_seed ** 2
    if room <= 0:
        return None
    if var_test == 0:
        return n_items
    return int(math.ceil(n_items * var_test / room))
