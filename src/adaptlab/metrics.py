"""Task metrics and their uncertainty.

Binary tasks report F1 of the positive class (plus AUPRC); multiclass tasks report macro-F1. The
confidence band of a rung carries both sources of noise: the spread over seeds and the sampling error of
a finite test set, by a two-level bootstrap (resample seeds and, jointly, the shared test items).
"""
from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

from adaptlab.errors import ConfigError

_POSITIVE_NAMES = ("1", "true", "yes", "pos", "positive", "relevant", "include", "included", "spam")


def resolve_positive_label(classes: Sequence[str], labels: Sequence[str], positive: Optional[str] = None) -> Optional[str]:
    """The class whose F1 is reported in a binary task (None for multiclass).

    An explicit ``positive`` must be one of the classes. Otherwise a conventional positive name
    ("1", "true", "yes", "relevant", ...) wins, else the minority class, because in triage-style
    tasks the rare class is the one that matters.

    Example:
        >>> resolve_positive_label(["0", "1"], ["0", "0", "1"])
        '1'
        >>> resolve_positive_label(["a", "b"], ["a", "a", "b"])
        'b'
    """
    classes = sorted(classes)
    if len(classes) != 2:
        if positive is not None and positive not in classes:
            raise ConfigError.invalid("positive_label", positive, f"one of {classes}")
        return None
    if positive is not None:
        if positive not in classes:
            raise ConfigError.invalid("positive_label", positive, f"one of {classes}", "Check the label column's values.")
        return positive
    for c in classes:
        if c.strip().lower() in _POSITIVE_NAMES:
            return c
    counts = Counter(labels)
    return min(classes, key=lambda c: (counts.get(c, 0), c))


def score(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    proba: Optional[np.ndarray],
    classes: Sequence[str],
    positive: Optional[str],
) -> dict[str, float]:
    """All metrics of one prediction set; ``f1`` is the headline (positive-class F1 or macro-F1).

    Example:
        >>> import numpy as np
        >>> from adaptlab.evaluate import score
        >>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
        >>> s = score(["neg", "pos", "pos", "neg"], ["neg", "pos", "neg", "pos"], proba, ["neg", "pos"], "pos")
        >>> s["f1"], s["accuracy"]
        (0.5, 0.5)
    """
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    out: dict[str, float] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=list(classes), zero_division=0)),
    }
    if positive is not None:
        out["f1"] = float(f1_score(y_true, y_pred, pos_label=positive, average="binary", zero_division=0))
        if proba is not None:
            col = list(classes).index(positive)
            y_bin = (y_true == positive).astype(int)
            out["auprc"] = float(average_precision_score(y_bin, proba[:, col])) if y_bin.any() else float("nan")
    else:
        out["f1"] = out["macro_f1"]
    return out


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)


def weighted_f1(
    weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], positive: Optional[str]
) -> np.ndarray:
    """F1 under item weights, vectorised over bootstrap replicates.

    ``weights`` has shape (B, n): row b gives how often each test item is drawn in replicate b.
    """
    labels = [positive] if positive is not None else list(classes)
    f1s = []
    for c in labels:
        t = (y_true == c).astype(np.float64)
        p = (y_pred == c).astype(np.float64)
        tp = weights @ (t * p)
        fp = weights @ ((1 - t) * p)
        fn = weights @ (t * (1 - p))
        f1s.append(_f1_from_counts(tp, fp, fn))
    return np.mean(f1s, axis=0)


_CHUNK = 250  # bootstrap replicates per weight matrix: bounds memory at _CHUNK x n_test floats


def f1_replicates(
    y_true: np.ndarray, preds: Sequence[np.ndarray], classes: Sequence[str], positive: Optional[str], *,
    n_boot: int, seed: int,
) -> np.ndarray:
    """F1 of each prediction set under ``n_boot`` shared test-item resamples: shape (n_boot, len(preds)).

    The same resamples (same ``seed``) are used for every call, so replicates of different rungs are paired.
    """
    n = len(y_true)
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, len(preds)))
    done = 0
    while done < n_boot:
        b = min(_CHUNK, n_boot - done)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        for j, p in enumerate(preds):
            out[done:done + b, j] = weighted_f1(w, y_true, p, classes, positive)
        done += b
    return out


def seed_and_test_bootstrap(
    y_true: Sequence[str],
    preds_by_seed: Sequence[Sequence[str]],
    classes: Sequence[str],
    positive: Optional[str],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile CI of the seed-mean F1, resampling seeds and (jointly) the shared test items.

    All seeds are scored on the same sealed test items, so one draw of items is applied to every seed;
    seeds are drawn with replacement on top. With one seed only the test-set noise remains.

    Example:
        >>> lo, hi = seed_and_test_bootstrap(["a", "b"] * 50, [["a", "b"] * 50, ["a", "a"] * 50], ["a", "b"], None)
        >>> 0.3 < lo < hi <= 1.0
        True
    """
    y_true = np.asarray(y_true, dtype=object)
    preds = [np.asarray(p, dtype=object) for p in preds_by_seed]
    n, s = len(y_true), len(preds)
    if n == 0 or s == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    per_seed = np.stack([weighted_f1(weights, y_true, p, classes, positive) for p in preds], axis=1)  # (B, S)
    seed_draw = rng.integers(0, s, size=(n_boot, s))
    boot = np.take_along_axis(per_seed, seed_draw, axis=1).mean(axis=1)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bands_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (low, high) bands share any value (touching counts as overlapping).

    Example:
        >>> bands_overlap((0.80, 0.85), (0.84, 0.90)), bands_overlap((0.80, 0.82), (0.84, 0.90))
        (True, False)
    """
    return not (a[1] < b[0] or b[1] < a[0])
