"""Learning curve: F1 against the fraction of training labels, to tell "more labels" from "more adaptation".

The sealed test set is carved exactly as the study carves it (same split strategy, ``test_size`` and
``test_seed``), then nested, stratified subsets of the train+validation pool (10% inside 25% inside
50% inside 100%) are each run as a small study (few seeds) against that same sealed test. Every point
is a stored study, so a rerun reads the store.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Sequence

import numpy as np

from adaptlab.config import StudyConfig
from adaptlab.data import TextDataset, split_dataset
from adaptlab.decide.policy import Policy
from adaptlab.errors import ConfigError

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
    study_id), ``verdict`` ("more-labels" | "more-adaptation" | "both" | "neither") and ``summary``.

    Example:
        >>> curve = learning_curve(ds, StudyConfig(encoder=path), rungs=["probe"], seeds=2)  # doctest: +SKIP
        >>> curve["summary"]  # doctest: +SKIP
    """
    from adaptlab.evaluate import Study

    p = policy or Policy()
    if not fractions or any(not (0 < f <= 1) for f in fractions):
        raise ConfigError.invalid("fractions", list(fractions), "fractions in (0, 1], e.g. 0.1,0.25,0.5,1")
    if data.labels is None:
        raise ConfigError("the learning curve needs labeled data; pass --label-col NAME.")
    rungs = list(rungs or [r for r in config.rungs if r != "tfidf"] or config.rungs)
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
    if "probe" in full and len(full) > 1:
        best = max((r for r in full if r not in ("probe", "tfidf")), key=lambda r: full[r]["mean"], default=None)
        if best is not None:
            adapt_gain = full[best]["mean"] - full["probe"]["mean"]
            parts.append(f"at {full[best]['fraction']:.0%} of the labels {best} − probe = {adapt_gain:+.3f}")
    more_adapt = adapt_gain is not None and adapt_gain >= p.margin
    verdict = {(True, True): "both", (True, False): "more-labels", (False, True): "more-adaptation",
               (False, False): "neither"}[(more_labels, more_adapt)]
    tail = {"both": "both more labels and more adaptation still pay",
            "more-labels": f"the curve still rises by ≥ {p.margin:.2f} at the last doubling: more labels pay",
            "more-adaptation": "the curve is flat at the top but the adapted rung wins: more adaptation pays, not more labels",
            "neither": f"the curve is flat (< {p.margin:.2f} per doubling) and adaptation adds < {p.margin:.2f}: "
                       "neither more labels nor more adaptation is likely to pay"}[verdict]
    return {"verdict": verdict, "summary": ("; ".join(parts) + ": " if parts else "") + tail + "."}
