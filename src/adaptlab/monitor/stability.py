"""Nearest-neighbour stability between two encoder versions.

Before swapping the encoder behind a shipped model (a refit, a new base model, an upgrade), check
how much the *neighbourhoods* move: for probe items, take their ``k`` nearest reference items under
the old encoder and under the new one, and measure the overlap. Anything built on neighbours (cold
start placement, duplicate detection, "similar items" lists, a kNN head) changes by that much.

``overlap="fraction"`` scores ``|A ∩ B| / k`` (the default, "how many of my 10 neighbours stay");
``overlap="jaccard"`` scores ``|A ∩ B| / |A ∪ B|``. Two random neighbour sets overlap by about
``k / n_reference`` (reported as ``chance``).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref, probes = rng.normal(size=(300, 16)), rng.normal(size=(40, 16))
    >>> neighbor_stability(ref, ref, probes, probes, k=5).mean
    1.0
    >>> W = rng.normal(size=(16, 16))                      # a different "encoder"
    >>> neighbor_stability(ref, ref @ W, probes, probes @ W, k=5).mean < 0.5
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.errors import ConfigError
from adaptlab.monitor._common import (
    EmbedFn, as_matrix, call_embed, check_fraction, check_ids, check_int, check_texts, fnum,
)
from adaptlab.monitor.neighbors import NeighborIndex

OVERLAPS = ("fraction", "jaccard")
#: Mean overlap from which the neighbourhoods count as stable in the verdict.
STABLE_OVERLAP = 0.8


@dataclass
class StabilityReport:
    """Overlap of each probe's k nearest reference items under the old and the new encoder.

    Example:
        >>> import numpy as np
        >>> from adaptlab.monitor import StabilityReport, neighbor_stability
        >>> rng = np.random.default_rng(0)
        >>> old = rng.normal(size=(50, 8))
        >>> report = neighbor_stability(old, old * 2.0, old[:10], old[:10] * 2.0, k=5)   # a rescaled space
        >>> isinstance(report, StabilityReport), report.mean, report.stable
        (True, 1.0, True)
    """

    k: int
    overlap: str
    n_probes: int
    n_reference: int
    stable_threshold: float
    overlaps: np.ndarray = field(repr=False)
    probe_ids: list[str] = field(repr=False)
    old_neighbors: np.ndarray = field(repr=False)
    new_neighbors: np.ndarray = field(repr=False)
    n_worst: int = 10

    @property
    def mean(self) -> float:
        """Mean overlap@k over the probes (rounded to 6 decimals)."""
        return float(np.round(self.overlaps.mean(), 6))

    @property
    def chance(self) -> float:
        """Expected overlap of two random k-sets out of ``n_reference`` items."""
        p = self.k / self.n_reference
        if self.overlap == "fraction":
            return p
        return p / (2 - p)  # E|A∩B| = k²/n over |A∪B| = 2k - k²/n, to first order

    @property
    def stable(self) -> bool:
        """Whether the mean overlap reaches ``stable_threshold``."""
        return self.mean >= self.stable_threshold

    @property
    def verdict(self) -> str:
        """The report in plain sentences."""
        what = (f"mean overlap@{self.k} = {self.mean:.2f} ({self.overlap}; chance {self.chance:.3f}) "
                f"over {self.n_probes} probe items")
        if self.stable:
            return (f"neighbourhoods are stable: {what}. Neighbour-based results (cold start, similar items) "
                    "will barely change with the new encoder.")
        share = float((self.overlaps < 0.5).mean())
        return (f"neighbourhoods changed: {what}; {100 * share:.0f}% of probes keep fewer than half of their "
                "neighbours. Neighbour-based results will change: re-embed the reference set with the new encoder "
                "(monitor.refresh) and re-check the items listed under most_changed.")

    def most_changed(self) -> list[dict[str, Any]]:
        """The ``n_worst`` probes with the lowest overlap: their old and new neighbour ids."""
        order = np.argsort(self.overlaps, kind="stable")[: self.n_worst]
        out = []
        for i in order:
            old = [x for x in self.old_neighbors[i].tolist() if x is not None]
            new = [x for x in self.new_neighbors[i].tolist() if x is not None]
            out.append({"probe_id": self.probe_ids[i], "overlap": fnum(self.overlaps[i]),
                        "old_neighbors": old, "new_neighbors": new,
                        "lost": [x for x in old if x not in set(new)], "gained": [x for x in new if x not in set(old)]})
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-safe data, with overlap quantiles."""
        q = np.quantile(self.overlaps, [0.1, 0.25, 0.5, 0.75, 0.9])
        shared = np.rint(self.overlaps * self.k).astype(int) if self.overlap == "fraction" else None
        return {
            "stable": self.stable,
            "verdict": self.verdict,
            "k": self.k,
            "overlap": self.overlap,
            "n_probes": self.n_probes,
            "n_reference": self.n_reference,
            "mean": fnum(self.mean),
            "chance": fnum(self.chance),
            "stable_threshold": self.stable_threshold,
            "quantiles": {name: fnum(v) for name, v in zip(("p10", "p25", "p50", "p75", "p90"), q)},
            "share_below_half": fnum((self.overlaps < 0.5).mean()),
            "histogram": None if shared is None else {
                f"{j}/{self.k}": int((shared == j).sum()) for j in range(self.k + 1)},
            "most_changed": self.most_changed(),
        }

    def __str__(self) -> str:
        d = self.to_dict()
        q = d["quantiles"]
        lines = [self.verdict,
                 f"quantiles: p10 {q['p10']:.2f}, p25 {q['p25']:.2f}, median {q['p50']:.2f}, p75 {q['p75']:.2f}, "
                 f"p90 {q['p90']:.2f}"]
        if d["histogram"]:
            lines.append("shared neighbours: " + ", ".join(f"{k}: {v}" for k, v in d["histogram"].items() if v))
        for item in d["most_changed"][:5]:
            lines.append(f"  probe {item['probe_id']}: overlap {item['overlap']:.2f}; lost {item['lost'][:5]}, "
                         f"gained {item['gained'][:5]}")
        return "\n".join(lines)


def _neighbors_excluding(index: NeighborIndex, Q: np.ndarray, k: int, exclude: Optional[list[str]]) -> np.ndarray:
    extra = 1 if exclude is not None else 0
    ids, _ = index.query(Q, k + extra)
    if exclude is None:
        return ids[:, :k]
    out = np.empty((len(Q), k), dtype=object)
    for r in range(len(Q)):
        row = [x for x in ids[r] if x != exclude[r]][:k]
        out[r, :] = row + [None] * (k - len(row))
    return out


def neighbor_stability(
    old_reference: Any,
    new_reference: Any,
    old_probes: Any,
    new_probes: Any,
    *,
    k: int = 10,
    reference_ids: Optional[Sequence[str]] = None,
    probe_ids: Optional[Sequence[str]] = None,
    exclude_self: bool = True,
    metric: str = "cosine",
    overlap: str = "fraction",
    stable_threshold: float = STABLE_OVERLAP,
    n_worst: int = 10,
    backend: str = "auto",
) -> StabilityReport:
    """Overlap@k of the probes' nearest reference items: old embeddings vs new embeddings.

    Row ``i`` of ``old_reference`` and ``new_reference`` is the same reference item embedded by the
    old and the new encoder (likewise for the probes); the two spaces may have different dimensions.
    When a probe is itself a reference item (same id in ``probe_ids`` and ``reference_ids``) and
    ``exclude_self`` is on, it is not counted as its own neighbour, which would inflate the overlap.

    Example:
        >>> import numpy as np
        >>> from adaptlab.monitor import neighbor_stability
        >>> rng = np.random.default_rng(0)
        >>> old, new = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))    # an unrelated new space
        >>> report = neighbor_stability(old, new, old[:10], new[:10], k=5)
        >>> report.stable, report.mean < 0.5, report.n_probes
        (False, True, 10)
    """
    R_old = as_matrix("old_reference", old_reference, min_rows=2, dtype=np.float32)
    R_new = as_matrix("new_reference", new_reference, min_rows=2, dtype=np.float32)
    P_old = as_matrix("old_probes", old_probes, dtype=np.float32)
    P_new = as_matrix("new_probes", new_probes, dtype=np.float32)
    if len(R_old) != len(R_new):
        raise ConfigError(f"old_reference has {len(R_old)} rows and new_reference {len(R_new)}; row i of both must "
                          "be the same reference item.")
    if len(P_old) != len(P_new):
        raise ConfigError(f"old_probes has {len(P_old)} rows and new_probes {len(P_new)}; row i of both must be the "
                          "same probe item.")
    if overlap not in OVERLAPS:
        raise ConfigError.invalid("overlap", overlap, f"one of {list(OVERLAPS)}")
    k = check_int("k", k, 1)
    stable_threshold = check_fraction("stable_threshold", stable_threshold, open_low=False, open_high=False)
    n_worst = check_int("n_worst", n_worst, 0)
    ref_ids = check_ids("reference_ids", reference_ids, len(R_old))
    p_ids = check_ids("probe_ids", probe_ids, len(P_old), unique=False) if probe_ids is not None else None
    exclude = None
    if exclude_self and p_ids is not None and set(p_ids) & set(ref_ids):
        exclude = p_ids
    n_candidates = len(R_old) - (1 if exclude is not None else 0)
    if k > n_candidates:
        raise ConfigError.invalid("k", k, f"at most {n_candidates} (the reference set's size"
                                  f"{' minus the probe itself' if exclude is not None else ''})")
    old_idx = NeighborIndex(R_old, ref_ids, metric=metric, backend=backend)
    new_idx = NeighborIndex(R_new, ref_ids, metric=metric, backend=backend)
    A = _neighbors_excluding(old_idx, P_old, k, exclude)
    B = _neighbors_excluding(new_idx, P_new, k, exclude)
    scores = np.empty(len(P_old))
    for i in range(len(P_old)):
        a = {x for x in A[i] if x is not None}
        b = {x for x in B[i] if x is not None}
        inter = len(a & b)
        scores[i] = inter / k if overlap == "fraction" else inter / max(len(a | b), 1)
    return StabilityReport(
        k=k, overlap=overlap, n_probes=len(P_old), n_reference=len(R_old), stable_threshold=stable_threshold,
        overlaps=scores, probe_ids=p_ids or [str(i) for i in range(len(P_old))], old_neighbors=A, new_neighbors=B,
        n_worst=n_worst,
    )


def encoder_stability(
    reference_texts: Sequence[str],
    old_embed: EmbedFn,
    new_embed: EmbedFn,
    *,
    probe_texts: Optional[Sequence[str]] = None,
    reference_ids: Optional[Sequence[str]] = None,
    probe_ids: Optional[Sequence[str]] = None,
    old_reference_emb: Any = None,
    n_probes: int = 500,
    k: int = 10,
    seed: int = 0,
    batch_size: int = 256,
    **kwargs: Any,
) -> StabilityReport:
    """Text-level :func:`neighbor_stability`: embed the reference (and probe) texts with both encoders.

    Without ``probe_texts``, ``n_probes`` reference items are drawn (seeded) as probes and each is
    excluded from its own neighbour list. Pass ``old_reference_emb`` (e.g. ``ReferenceSet.embeddings``,
    rows in the order of ``reference_texts``) to skip re-embedding the reference with the old encoder.
    Extra keyword arguments go to :func:`neighbor_stability` (``overlap``, ``metric``, ...).

    Example:
        >>> import numpy as np
        >>> from adaptlab.monitor import encoder_stability
        >>> rng = np.random.default_rng(0)
        >>> vectors = {f"text {i}": rng.normal(size=8) for i in range(60)}
        >>> old = lambda texts: np.stack([vectors[t] for t in texts])          # stands in for Encoder.encode
        >>> rescaled = lambda texts: 3.0 * old(texts)                           # same neighbourhoods
        >>> encoder_stability(list(vectors), old, rescaled, n_probes=20, k=5).stable
        True
        >>> shuffled = lambda texts: rng.normal(size=(len(texts), 8))          # unrelated space
        >>> encoder_stability(list(vectors), old, shuffled, n_probes=20, k=5).stable
        False
    """
    texts = check_texts("reference_texts", reference_texts)
    ref_ids = check_ids("reference_ids", reference_ids, len(texts))
    seed = check_int("seed", seed, 0)
    if probe_texts is None:
        n_probes = check_int("n_probes", n_probes, 1)
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(texts), min(n_probes, len(texts)), replace=False))
        probes = [texts[i] for i in pick]
        p_ids: Optional[list[str]] = [ref_ids[i] for i in pick]
    else:
        probes = check_texts("probe_texts", probe_texts)
        p_ids = None if probe_ids is None else check_ids("probe_ids", probe_ids, len(probes), unique=False)
    if old_reference_emb is None:
        R_old = call_embed(old_embed, texts, batch_size=batch_size, what="old_embed")
    else:
        R_old = as_matrix("old_reference_emb", old_reference_emb, dtype=np.float32)
        if len(R_old) != len(texts):
            raise ConfigError(f"old_reference_emb has {len(R_old)} rows but there are {len(texts)} reference texts.")
    R_new = call_embed(new_embed, texts, batch_size=batch_size, what="new_embed")
    if probe_texts is None:
        P_old, P_new = R_old[pick], R_new[pick]
    else:
        P_old = call_embed(old_embed, probes, batch_size=batch_size, what="old_embed")
        P_new = call_embed(new_embed, probes, batch_size=batch_size, what="new_embed")
    return neighbor_stability(R_old, R_new, P_old, P_new, k=k, reference_ids=ref_ids, probe_ids=p_ids, **kwargs)


__all__ = ["OVERLAPS", "STABLE_OVERLAP", "StabilityReport", "encoder_stability", "neighbor_stability"]
