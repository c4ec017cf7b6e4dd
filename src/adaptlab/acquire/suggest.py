"""`suggest`: which unlabeled texts to label next, with the reason for each, as a file to fill in.

The pool is first cleaned: a text that is a near-duplicate (:func:`adaptlab.data.find_near_duplicates`,
MinHash + exact Jaccard) of an already labeled text or of a sealed evaluation text is never suggested
(labeling it teaches nothing new, or leaks into the judge), and near-copies inside the pool are
offered once. Then one of the strategies of :mod:`adaptlab.acquire.strategies` picks ``n``:

* ``uncertainty`` — the model's least confident texts (margin of its probabilities; Settles 2009).
* ``diversity`` — core-set / k-center in the model's embedding space (Sener & Savarese 2018).
* ``slice`` — texts nearest to the model's worst slice (the rare-slice rule: "more labels on
  those subtopics, not a bigger model").
* ``cold-start`` — no model: k-medoids in the frozen encoder's space, the most representative texts.
* ``default`` — uncertainty-led: the least confident texts, a near-copy of a text already in the batch
  skipped (so a batch is not 50 paraphrases); a share near the worst slice only when a slice fires the
  rare-slice rule; the result says how many came from each.

Example:
    >>> import numpy as np
    >>> texts = ["goal scored late", "shares fell", "chip prices rise", "the match ended"]
    >>> proba = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.95, 0.05]])
    >>> E = np.eye(4)
    >>> s = suggest(texts, 2, proba=proba, classes=["sport", "money"], embeddings=E, strategy="uncertainty")
    >>> [r["text"] for r in s.rows], s.counts
    (['shares fell', 'chip prices rise'], {'uncertainty': 2})
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from adaptlab.acquire import strategies as st
from adaptlab.errors import ConfigError

STRATEGIES = ("default", "uncertainty", "diversity", "slice", "cold-start")
#: Output columns, in order; ``label`` is left empty for the annotator.
COLUMNS = ("id", "text", "predicted_label", "score", "strategy", "reason", "label")
#: Shares of the default mix. The slice share is used only when a slice fires the rare-slice rule (else it
#: goes to uncertainty); ``diversity`` (k-center) stays available to a caller's own mix but is 0 here.
#: Why (bench/acquire.py, docs/guides/label-acquisition.md has the table): plain uncertainty reached random
#: sampling's F1 at 500 labels with 32-53% fewer labels on all three corpora, k-center never did, the
#: slice strategy alone only on one; the earlier mixes (20/50/30, then 10/80/10 with the uncertainty share
#: thinned by k-center) fell short of 30% on Rotten Tomatoes and tweets: each text given to spread or to
#: a slice that is merely the lowest of eight clusters was a text the model was sure of.
DEFAULT_MIX = {"slice": 0.1, "uncertainty": 0.9, "diversity": 0.0}


@dataclass
class Suggestions:
    """The texts to label next, best first, and how they were chosen.

    Attributes:
        rows: One dict per text with the keys of :data:`COLUMNS` (``label`` empty).
        counts: How many rows each strategy picked.
        excluded: Pool texts never offered, by reason.
        n_pool: Texts in the pool file.
        strategy: The strategy asked for.
        notes: Plain-word remarks (e.g. the worst slice, or why there is no slice share).
        slice: The worst slice chased, if any.
        calibration: The temperature the probabilities were scaled by (:mod:`adaptlab.acquire.calibration`),
            or None when they are the model's own.
    """

    rows: list[dict[str, Any]]
    counts: dict[str, int]
    excluded: dict[str, int]
    n_pool: int
    strategy: str
    notes: list[str] = field(default_factory=list)
    slice: Optional[dict[str, Any]] = None
    calibration: Optional[dict[str, Any]] = None

    def summary(self) -> str:
        parts = ", ".join(f"{v} by {k}" for k, v in self.counts.items() if v)
        text = f"{len(self.rows)} of {self.n_pool} pool texts suggested ({parts or 'none'})"
        ex = ", ".join(f"{v} {k}" for k, v in self.excluded.items() if v)
        if ex:
            text += f"; never offered: {ex}"
        return text + "."

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([[r.get(c, "") for c in COLUMNS] for r in self.rows], columns=list(COLUMNS))

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "n_pool": self.n_pool, "n_suggested": len(self.rows),
                "counts": self.counts, "excluded": self.excluded, "notes": self.notes, "slice": self.slice,
                "calibration": self.calibration,
                "summary": self.summary(), "rows": self.rows}

    def write(self, path: Union[str, Path]) -> Path:
        """Write the suggestions as CSV, TSV, JSONL or Parquet (by suffix), with an empty ``label`` column."""
        from adaptlab.data.label_quality import write_table

        return write_table(self.to_frame(), path, what="suggestions file")


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError.invalid("n", n, "an integer >= 1 (how many texts to suggest)", "e.g. -n 50.")
    return int(n)


def _check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ConfigError.invalid("strategy", strategy, f"one of {', '.join(STRATEGIES)}")
    return strategy


def offerable(texts: Sequence[str], labeled_texts: Sequence[str] = (), sealed_texts: Sequence[str] = (), *,
              threshold: float = 0.8) -> tuple[np.ndarray, dict[str, int]]:
    """Pool positions that may be suggested, and how many were left out and why.

    Left out: empty texts; near-duplicates of a labeled text; near-duplicates of a sealed evaluation
    text; all but the first of a group of near-copies inside the pool.

    Example:
        >>> keep, why = offerable(["a b c d e f", "a b c d e f!", "x y z"], labeled_texts=["x y z"])
        >>> keep.tolist(), why["near-duplicate of a labeled text"], why["near-copy of another pool text"]
        ([0], 1, 1)
    """
    from adaptlab.data.neardup import find_near_duplicates, normalize_text

    n = len(texts)
    every = [*texts, *labeled_texts, *sealed_texts]
    clusters = find_near_duplicates(every, threshold=threshold).labels
    labeled_c = set(clusters[n:n + len(labeled_texts)].tolist())
    sealed_c = set(clusters[n + len(labeled_texts):].tolist())
    why = {"empty": 0, "near-duplicate of a sealed evaluation text": 0, "near-duplicate of a labeled text": 0,
           "near-copy of another pool text": 0}
    keep, seen = [], set()
    for i, t in enumerate(texts):
        c = int(clusters[i])
        if not normalize_text(t):
            why["empty"] += 1
        elif c in sealed_c:
            why["near-duplicate of a sealed evaluation text"] += 1
        elif c in labeled_c:
            why["near-duplicate of a labeled text"] += 1
        elif c in seen:
            why["near-copy of another pool text"] += 1
        else:
            seen.add(c)
            keep.append(i)
    return np.asarray(keep, dtype=int), why


def select(strategy: str, n: int, *, proba: Optional[np.ndarray], embeddings: np.ndarray,
           labeled_embeddings: Optional[np.ndarray] = None, slice_anchor: Optional[np.ndarray] = None,
           candidates: Optional[np.ndarray] = None, uncertainty: str = "margin", seed: int = 0,
           mix: Optional[dict[str, float]] = None, slice_info: Optional[dict[str, Any]] = None
           ) -> list[tuple[int, str]]:
    """Pick ``n`` pool positions with ``strategy``; each with the name of the strategy that picked it.

    This is the array core of :func:`suggest`, used as is by the simulation benchmark. The default mix
    gives the slice a share only when ``slice_anchor`` is given and ``slice_info`` (if given) says the
    slice fires the rare-slice rule (``"rare": True``).

    Example:
        >>> proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.99, 0.01]])
        >>> select("default", 2, proba=proba, embeddings=np.eye(4))
        [(0, 'uncertainty'), (2, 'uncertainty')]
    """
    _check_strategy(strategy)
    n = _check_n(n)
    cand = np.arange(len(embeddings)) if candidates is None else np.asarray(candidates, dtype=int)
    if strategy != "cold-start" and proba is None and strategy in ("default", "uncertainty"):
        raise ConfigError(f"strategy {strategy!r} needs a model's probabilities; without a model use "
                          "--strategy cold-start.")
    if strategy == "uncertainty":
        return [(int(i), "uncertainty") for i in st.uncertainty_order(proba, n, uncertainty, cand)]
    if strategy == "diversity":
        return [(int(i), "diversity") for i in st.kcenter_greedy(embeddings, n, labeled=labeled_embeddings,
                                                                  candidates=cand, seed=seed)]
    if strategy == "cold-start":
        return [(int(i), "cold-start") for i in st.kmedoids(embeddings, n, candidates=cand, seed=seed)]
    if strategy == "slice":
        if slice_anchor is None:
            raise ConfigError("strategy 'slice' needs a failing slice; none was found (see the notes), or pass one.")
        return [(int(i), "slice") for i in st.nearest_to(embeddings, slice_anchor, n, candidates=cand)]
    weak = slice_anchor if slice_info is None or slice_info.get("rare", True) else None
    return _default_mix(n, proba, embeddings, labeled_embeddings, weak, cand, uncertainty, seed, mix)


def _quotas(n: int, mix: dict[str, float]) -> dict[str, int]:
    """Largest-remainder rounding of ``n · share`` so the quotas add up to ``n``."""
    total = sum(mix.values())
    raw = {k: n * v / total for k, v in mix.items()}
    q = {k: int(math.floor(v)) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: -(raw[k] - q[k]))[: n - sum(q.values())]:
        q[k] += 1
    return q


def _default_mix(n, proba, E, labeled_E, anchor, cand, uncertainty, seed, mix) -> list[tuple[int, str]]:
    shares = dict(mix or DEFAULT_MIX)
    if anchor is None:
        shares["uncertainty"] = shares.get("uncertainty", 0.0) + shares.pop("slice", 0.0)
    quota = _quotas(n, shares)
    picked: list[tuple[int, str]] = []
    remaining = np.asarray(cand, dtype=int)

    def taken(idx: np.ndarray, name: str) -> None:
        nonlocal remaining
        picked.extend((int(i), name) for i in idx)
        remaining = np.setdiff1d(remaining, idx, assume_unique=False)

    def known() -> Optional[np.ndarray]:
        parts = [p for p in (labeled_E, E[[i for i, _ in picked]] if picked else None) if p is not None and len(p)]
        return np.vstack(parts) if parts else None

    if quota.get("slice") and anchor is not None:
        taken(st.nearest_to(E, anchor, quota["slice"], candidates=remaining), "slice")
    if quota.get("uncertainty") and len(remaining):
        taken(st.distinct_uncertain(proba, E, quota["uncertainty"], kind=uncertainty, candidates=remaining),
              "uncertainty")
    if quota.get("diversity") and len(remaining):
        taken(st.kcenter_greedy(E, quota["diversity"], labeled=known(), candidates=remaining, seed=seed), "diversity")
    return picked


def _reason(name: str, i: int, proba: Optional[np.ndarray], classes: Sequence[str], E: np.ndarray,
            labeled_E: Optional[np.ndarray], slice_info: Optional[dict[str, Any]], cluster_size: dict[int, int],
            calibration: Optional[dict[str, Any]] = None) -> str:
    if name == "uncertainty":
        order = np.argsort(-proba[i])
        a, b = order[0], order[1]
        how = (f"; calibrated probabilities, temperature {calibration['temperature']:.2f}" if calibration
               else "")
        return (f"the model hesitates between {classes[a]} ({proba[i, a]:.2f}) and {classes[b]} "
                f"({proba[i, b]:.2f}{how})")
    if name == "slice":
        return (f"close to the worst slice, {slice_info['name']} (accuracy {slice_info['accuracy']:.2f} vs "
                f"{slice_info['overall_accuracy']:.2f} overall)")
    if name == "cold-start":
        return f"representative of {cluster_size.get(i, 1)} pool texts (k-medoids; no model needed)"
    if labeled_E is not None and len(labeled_E):
        d = float(np.min(1.0 - st._unit(E[i:i + 1]) @ st._unit(labeled_E).T))
        return f"unlike anything labeled so far (cosine distance {d:.2f} to the nearest labeled text)"
    return "spreads the batch over the pool (k-center)"


def suggest(texts: Sequence[str], n: int, *, embeddings: np.ndarray, ids: Optional[Sequence[str]] = None,
            proba: Optional[np.ndarray] = None, classes: Optional[Sequence[str]] = None,
            labeled_texts: Sequence[str] = (), labeled_embeddings: Optional[np.ndarray] = None,
            sealed_texts: Sequence[str] = (), slice_anchor: Optional[np.ndarray] = None,
            slice_info: Optional[dict[str, Any]] = None, strategy: str = "default", uncertainty: str = "margin",
            seed: int = 0, near_dup_threshold: float = 0.8, calibration: Optional[dict[str, Any]] = None
            ) -> Suggestions:
    """Pick ``n`` of ``texts`` to label next (see the module docstring).

    Args:
        texts: The unlabeled pool.
        n: How many to suggest (fewer when the pool has fewer offerable texts).
        embeddings: The pool in the model's embedding space (the frozen encoder's for cold start).
        ids: One id per text (default: row numbers from 1); kept in the output.
        proba: The model's class probabilities ``(len(texts), k)``, columns in ``classes`` order.
        labeled_texts / labeled_embeddings: What is labeled already (never re-suggested; diversity
            measures distance from it).
        sealed_texts: The sealed evaluation texts (never suggested, nor their near-duplicates).
        slice_anchor / slice_info: Embeddings of the worst slice's texts, and its name, accuracy and overall
            accuracy (:func:`adaptlab.acquire.worst_slice`).
        strategy: One of :data:`STRATEGIES`.
        calibration: How ``proba`` was calibrated (``Calibration.to_dict()``), named in the reasons and kept
            in the result; None when they are the model's own probabilities.
    """
    _check_strategy(strategy)
    n = _check_n(n)
    texts = list(texts)
    if not texts:
        raise ConfigError("the pool of unlabeled texts is empty; pass a file with at least one text.")
    ids = [str(i) for i in ids] if ids is not None else [str(i + 1) for i in range(len(texts))]
    E = np.asarray(embeddings, dtype=np.float32)
    if E.shape[0] != len(texts) or (proba is not None and len(proba) != len(texts)):
        raise ConfigError(f"embeddings/probabilities cover {E.shape[0]} rows but the pool has {len(texts)} texts.")
    keep, excluded = offerable(texts, labeled_texts, sealed_texts, threshold=near_dup_threshold)
    if len(keep) == 0:
        raise ConfigError(f"none of the {len(texts)} pool texts can be suggested ("
                          + ", ".join(f"{v} {k}" for k, v in excluded.items() if v)
                          + "); pass texts that are not labeled yet.")
    if strategy == "slice" and slice_anchor is None:
        raise ConfigError("strategy 'slice' needs a worst slice: the model's sealed evaluation set shows none "
                          "failing; use --strategy default or uncertainty.")
    picks = select(strategy, n, proba=proba, embeddings=E, labeled_embeddings=labeled_embeddings,
                   slice_anchor=slice_anchor, candidates=keep, uncertainty=uncertainty, seed=seed,
                   slice_info=slice_info)
    cluster_size: dict[int, int] = {}
    if strategy == "cold-start" and picks:
        med = np.asarray([i for i, _ in picks])
        nearest = np.argmax(st._unit(E[keep]) @ st._unit(E[med]).T, axis=1)
        cluster_size = {int(m): int(c) for m, c in zip(med, np.bincount(nearest, minlength=len(med)))}
    classes = [str(c) for c in (classes or [])]
    conf = st.uncertainty_scores(proba, uncertainty) if proba is not None else None
    rows = []
    for i, name in picks:
        pred = classes[int(np.argmax(proba[i]))] if proba is not None else ""
        rows.append({"id": ids[i], "text": texts[i], "predicted_label": pred,
                     "score": round(float(np.max(proba[i])), 4) if proba is not None else None,
                     "uncertainty": round(float(conf[i]), 4) if conf is not None else None,
                     "strategy": name,
                     "reason": _reason(name, i, proba, classes, E, labeled_embeddings, slice_info, cluster_size,
                                       calibration),
                     "label": ""})
    counts = {k: sum(1 for _, s in picks if s == k) for k in dict.fromkeys(s for _, s in picks)}
    notes = []
    if len(picks) < n:
        notes.append(f"only {len(picks)} offerable texts in the pool (asked for {n}).")
    return Suggestions(rows=rows, counts=counts, excluded=excluded, n_pool=len(texts), strategy=strategy,
                       notes=notes, slice=slice_info, calibration=calibration)


__all__ = ["COLUMNS", "DEFAULT_MIX", "STRATEGIES", "Suggestions", "offerable", "select", "suggest"]
