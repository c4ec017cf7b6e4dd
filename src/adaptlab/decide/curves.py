"""Learning curve: F1 against the fraction of training labels, to tell "more labels" from "more adaptation".

The sealed test set is carved exactly as the study carves it (same split strategy, ``test_size`` and
``test_seed``), then nested, stratified subsets of the train+validation pool (10% inside 25% inside
50% inside 100%) are each run as a small study (few seeds) against that same sealed test. Every point
is a stored study, so a rerun reads the store.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Callable, Optional, Sequence

import numpy as np

from adaptlab.config import StudyConfig
from adaptlab.data import TextDataset, split_dataset
from adaptlab.decide.policy import SCRATCH, Policy
from adaptlab.errors import ConfigError
from adaptlab.rungs.ladder import FROZEN, facts

DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def nested_fractions(labels: Sequence[str], fractions: Sequence[float], seed: int = 0) -> dict[float, np.ndarray]:
    """Nested stratified subsets: each fraction's indices contain every smaller fraction's indices.

    Example:
        >>> subs = nested_fractions(["a"] * 10 + ["b"] * 10, [0.5, 1.0])
        >>> len(subs[0.5]), set(subs[0.5]) <= set(subs[1.0])
        (10, True)
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=object)
    perm_by_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in sorted(set(labels.tolist()))}
    out = {}
    for f in sorted(fractions):
        # at least 2 per class so a train/validation split stays possible
        idx = [p[: max(2, int(math.ceil(f * len(p))))] for p in perm_by_class.values()]
        out[f] = np.sort(np.concatenate(idx))
    return out


def learning_curve(
    data: TextDataset,
    config: StudyConfig,
    *,
    rungs: Optional[Sequence[str]] = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: int = 2,
    home: Any = None,
    encoder: Any = None,
    unlabeled: Optional[TextDataset] = None,
    policy: Optional[Policy] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> dict[str, Any]:
    """Run the rungs on growing fractions of the labels; return points and a verdict.

    Returns a JSON-safe dict: ``points`` (rung, fraction, n_labels, n_seeds, mean, ci_low, ci_high,
    study_id), ``verdict`` ("more-labels" | "more-adaptation" | "both" | "neither"), ``summary`` and
    ``extrapolation`` (:func:`extrapolate_curve` of the best rung: how many labels reach a target F1).

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.decide import learning_curve
        >>> texts = ([f"goal match team player {i}" for i in range(40)]
        ...          + [f"chip software data server {i}" for i in range(40)])
        >>> data = TextDataset(texts, ["sport"] * 40 + ["tech"] * 40)
        >>> curve = learning_curve(data, StudyConfig(n_boot=200), rungs=["tfidf"], fractions=(0.5, 1.0), seeds=2, home="runs")
        >>> [(p["fraction"], p["n_seeds"]) for p in curve["points"]]
        [(0.5, 2), (1.0, 2)]
    """
    from adaptlab.evaluate import Study

    p = policy or Policy()
    if not fractions or any(not (0 < f <= 1) for f in fractions):
        raise ConfigError.invalid("fractions", list(fractions), "fractions in (0, 1], e.g. 0.1,0.25,0.5,1")
    if data.labels is None:
        raise ConfigError("the learning curve needs labeled data; pass --label-col NAME.")
    rungs = list(rungs or [r for r in config.rungs if r != SCRATCH] or config.rungs)
    say = progress or (lambda _m: None)
    # Carve the sealed test set the way the study does, read once to build the fixed test file.
    split = split_dataset(data, strategy=config.split, test_size=config.test_size, val_size=config.val_size,
                          seed=0, test_seed=config.test_seed, near_dup_threshold=config.near_dup_threshold)
    test_idx = split.unseal_test("learning curve: fix the sealed test set shared by every fraction")
    pool_idx = np.sort(np.concatenate([split.train, split.val]))
    test = data.subset(test_idx)
    pool = data.subset(pool_idx)
    subsets = nested_fractions(pool.labels, fractions, seed=config.test_seed)
    points: list[dict[str, Any]] = []
    for f, idx in subsets.items():
        sub = pool.subset(idx)
        cfg = dataclasses.replace(config, rungs=rungs, seeds=seeds,
                                  name=f"learning curve {f:.0%} of {len(pool)} labels: {','.join(rungs)}")
        say(f"learning curve: {f:.0%} of the labels ({len(sub)} texts), {', '.join(rungs)} x {seeds} seeds ...")
        res = Study(cfg, home=home, encoder=encoder).run(sub, test=test, unlabeled=unlabeled)
        for row in res.rows:
            points.append({"rung": row["rung"], "fraction": float(f), "n_labels": len(sub), "n_seeds": row["n_seeds"],
                           "mean": row["mean"], "std": row["std"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                           "study_id": res.study_id})
    out = {"points": points, "fractions": sorted(float(f) for f in fractions), "rungs": rungs, "seeds": seeds,
           "n_pool": len(pool), "n_test": len(test)}
    out.update(curve_verdict(points, p))
    last = [pt for pt in points if pt["fraction"] == max(fractions)]
    best = max(last, key=lambda pt: pt["mean"])["rung"] if last else None
    out["extrapolation"] = extrapolate_curve(points, rung=best, policy=p)
    if out["extrapolation"] and out["verdict"] in ("more-labels", "both"):
        out["summary"] += " " + out["extrapolation"]["summary"]
    return out


def curve_verdict(points: list[dict[str, Any]], policy: Optional[Policy] = None) -> dict[str, str]:
    """Does the curve still rise (more labels pay) and does the best adapted rung beat the probe (more adaptation pays)?

    Example:
        >>> pts = [{"rung": "probe", "fraction": f, "n_labels": int(1000 * f), "mean": m}
        ...        for f, m in ((0.5, 0.70), (1.0, 0.76))]
        >>> curve_verdict(pts)["verdict"]
        'more-labels'
    """
    p = policy or Policy()
    by_rung: dict[str, list[dict[str, Any]]] = {}
    for pt in points:
        by_rung.setdefault(pt["rung"], []).append(pt)
    parts, label_gain = [], {}
    for rung, pts in by_rung.items():
        pts = sorted(pts, key=lambda x: x["fraction"])
        if len(pts) >= 2:
            a, b = pts[-2], pts[-1]
            label_gain[rung] = b["mean"] - a["mean"]
            parts.append(f"{rung} gains {label_gain[rung]:+.3f} from {a['fraction']:.0%} ({a['n_labels']} labels) to "
                         f"{b['fraction']:.0%} ({b['n_labels']})")
    more_labels = any(g >= p.margin for g in label_gain.values())
    full = {r: max(pts, key=lambda x: x["fraction"]) for r, pts in by_rung.items()}
    adapt_gain = None
    if FROZEN in full and len(full) > 1:
        # The best adaptation (a rung whose encoder moved) against reusing the encoder frozen.
        best = max((r for r in full if facts(r).changes_encoder), key=lambda r: full[r]["mean"], default=None)
        if best is not None:
            adapt_gain = full[best]["mean"] - full[FROZEN]["mean"]
            parts.append(f"at {full[best]['fraction']:.0%} of the labels {best} − {FROZEN} = {adapt_gain:+.3f}")
    more_adapt = adapt_gain is not None and adapt_gain >= p.margin
    verdict = {(True, True): "both", (True, False): "more-labels", (False, True): "more-adaptation",
               (False, False): "neither"}[(more_labels, more_adapt)]
    tail = {"both": "both more labels and more adaptation still pay",
            "more-labels": f"the curve still rises by ≥ {p.margin:.2f} at the last doubling: more labels pay",
            "more-adaptation": "the curve is flat at the top but the adapted rung wins: more adaptation pays, not more labels",
            "neither": f"the curve is flat (< {p.margin:.2f} per doubling) and adaptation adds < {p.margin:.2f}: "
                       "neither more labels nor more adaptation is likely to pay"}[verdict]
    return {"verdict": verdict, "summary": ("; ".join(parts) + ": " if parts else "") + tail + "."}


def _fit_power_law(n: np.ndarray, f1: np.ndarray) -> Optional[tuple[float, float, float]]:
    """Fit ``1 − F1(n) = a · n^(−b) + c`` (error falls as a power of the labels to a floor ``c``).

    With three or more distinct sizes all three are fitted (bounded: ``a > 0``, ``0 < b ≤ 2``,
    ``0 ≤ c ≤`` the smallest observed error); with two, the floor is fixed at 0 and the line in log-log
    space goes through both. None when the points do not fall (no power law to extrapolate).
    """
    err = np.clip(1.0 - f1, 1e-6, 1.0)
    if len(np.unique(n)) < 2:
        return None
    slope = np.polyfit(np.log(n), np.log(err), 1)[0]
    if slope >= 0:
        return None
    a0, b0 = float(err.max() * n.min() ** -slope), float(min(-slope, 2.0))
    if len(np.unique(n)) < 3:
        return a0, b0, 0.0
    from scipy.optimize import OptimizeWarning, curve_fit

    try:
        with warnings.catch_warnings():
            # Three points for three parameters leave no covariance to estimate; only the fit is used.
            warnings.simplefilter("ignore", OptimizeWarning)
            (a, b, c), _ = curve_fit(lambda x, a, b, c: a * x ** (-b) + c, n, err, p0=(a0, b0, 0.0),
                                     bounds=([1e-9, 1e-3, 0.0], [np.inf, 2.0, float(err.min())]), maxfev=5000)
    except (RuntimeError, ValueError):
        return a0, b0, 0.0
    return float(a), float(b), float(c)


def _labels_for(params: tuple[float, float, float], target_f1: float) -> float:
    a, b, c = params
    gap = (1.0 - target_f1) - c
    return math.inf if gap <= 0 else (gap / a) ** (-1.0 / b)


def extrapolate_curve(points: list[dict[str, Any]], target_f1: Optional[float] = None, *, rung: Optional[str] = None,
                      n_boot: int = 200, seed: int = 0, policy: Optional[Policy] = None) -> Optional[dict[str, Any]]:
    """How many labels would reach ``target_f1``: a power law fitted to the learning curve, with a band.

    The model is the inverse power law of learning curves, ``1 − F1(n) = a·n^(−b) + c`` (Figueroa et al.
    2012, "Predicting sample size required for classification performance"; Hestness et al. 2017 for its
    power-law form). The band is a bootstrap over seeds: each replicate redraws every point's mean from
    its seed spread (normal, ``std / √seeds``), refits and solves for ``n``; the 10th–90th percentiles
    of the replicates are the band. ``target_f1`` defaults to the policy's ship threshold when the
    curve is below it, else the last point plus the policy margin (the next gain worth measuring).

    Returns None when the rung has fewer than two points or its curve does not rise. Otherwise a
    JSON-safe dict: ``rung``, ``n_now``, ``f1_now``, ``target_f1``, ``labels_needed`` (total, median
    of the replicates; None when the fit levels off below the target), ``more_labels``, ``band``
    (10th–90th percentile of the total, None ends where unreachable), ``reachable`` (share of
    replicates that reach it), ``ceiling`` (fitted F1 as n → ∞), ``params`` and ``summary``.

    Example:
        >>> pts = [{"rung": "probe", "n_labels": n, "mean": 1 - 0.9 * n ** -0.5, "std": 0.0, "n_seeds": 2}
        ...        for n in (100, 200, 400, 800)]
        >>> ex = extrapolate_curve(pts, 0.98)
        >>> round(ex["labels_needed"], -1), ex["n_now"]  # exact: 0.9 / 0.02 = 45 = √2025
        (2030, 800)
    """
    p = policy or Policy()
    pts = [pt for pt in points if rung is None or pt.get("rung") == rung]
    if rung is None and pts:
        rung = FROZEN if any(pt["rung"] == FROZEN for pt in pts) else pts[0]["rung"]
        pts = [pt for pt in pts if pt["rung"] == rung]
    pts = sorted(pts, key=lambda pt: pt["n_labels"])
    if len(pts) < 2:
        return None
    n = np.asarray([pt["n_labels"] for pt in pts], dtype=np.float64)
    f1 = np.asarray([pt["mean"] for pt in pts], dtype=np.float64)
    fit = _fit_power_law(n, f1)
    if fit is None:
        return None
    n_now, f1_now = int(n[-1]), float(f1[-1])
    if target_f1 is None:
        target_f1 = p.ship_threshold if f1_now < p.ship_threshold else min(f1_now + p.margin, 0.999)
    se = np.asarray([float(pt.get("std") or 0.0) / math.sqrt(max(int(pt.get("n_seeds") or 1), 1)) for pt in pts])
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        b = _fit_power_law(n, np.clip(f1 + rng.normal(0.0, 1.0, len(f1)) * se, 0.0, 1.0))
        boots.append(math.inf if b is None else _labels_for(b, target_f1))
    boots_arr = np.asarray(boots)
    central = _labels_for(fit, target_f1)
    reach = float(np.mean(np.isfinite(boots_arr)))
    # Without interpolation: "unreachable" replicates are inf and must stay inf, not become NaN.
    lo, hi = ((float(np.quantile(boots_arr, 0.1, method="lower")), float(np.quantile(boots_arr, 0.9, method="higher")))
              if n_boot else (central, central))

    def total(x: float) -> Optional[int]:
        return None if not math.isfinite(x) else int(max(math.ceil(x - 1e-6), n_now))  # 1e-6: float noise

    need = total(central)
    ceiling = 1.0 - fit[2]
    if f1_now >= target_f1:
        summary = f"{rung} is already at F1 {f1_now:.3f} ≥ {target_f1:.3f} with {n_now:,} labels."
    elif need is None:
        summary = (f"the fitted curve of {rung} levels off at F1 ≈ {ceiling:.3f}, below {target_f1:.3f}: more labels "
                   "alone are unlikely to get there.")
    else:
        band = f"{total(lo):,}–{total(hi):,}" if total(hi) is not None else f"≥ {total(lo) or n_now:,}"
        summary = (f"~{need - n_now:,} more labels ({need:,} in all; 80% band {band}) would take {rung} from F1 "
                   f"{f1_now:.3f} to {target_f1:.3f} (power law fitted to {len(pts)} points; "
                   f"{reach:.0%} of the bootstrap refits reach it).")
    return {"rung": rung, "n_now": n_now, "f1_now": f1_now, "target_f1": float(target_f1), "labels_needed": need,
            "more_labels": None if need is None else need - n_now, "band": [total(lo), total(hi)],
            "reachable": reach, "ceiling": float(ceiling),
            "params": {"a": fit[0], "b": fit[1], "c": fit[2]}, "summary": summary}
