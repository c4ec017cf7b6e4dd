"""Selection strategies on plain arrays: which pool rows to label next.

Every function takes the candidate pool as arrays (probabilities ``(n, k)`` or embeddings ``(n, d)``),
the number ``n`` to pick and, where it matters, a seed; it returns pool positions, best first. None
of them reads texts or a model, so they are cheap to test and to simulate (``bench/acquire.py``).

* :func:`uncertainty_order` — least confident first, by margin or entropy (Settles 2009, "Active
  Learning Literature Survey", §3.1 uncertainty sampling; margin: Scheffer et al. 2001).
* :func:`kcenter_greedy` — core-set selection: each pick is the pool point farthest from everything
  labeled or picked so far (Sener & Savarese 2018, "Active Learning for Convolutional Neural Networks:
  A Core-Set Approach", the greedy 2-approximation of k-center).
* :func:`kmeanspp_pick` — D² sampling of k-means++ (Arthur & Vassilvitskii 2007): spread out, but
  seeded-random rather than the farthest outliers.
* :func:`nearest_to` — the pool points most similar to an anchor set (the worst slice's texts).
* :func:`kmedoids` — representative texts without a model: k-medoids by alternating assignment and
  medoid update (Park & Jun 2009), initialised with k-means++.
* :func:`distinct_uncertain` — the default's uncertainty share: least confident first, skipping a text
  that is a near-copy (in embedding space) of one already in the batch.
* :func:`diverse_uncertain` — the most uncertain ``m·n`` candidates, then a k-center pass among them so a
  batch is not ``n`` near-copies of one boundary region (Zhdanov 2019, "Diverse mini-batch Active
  Learning"; Ash et al. 2020, BADGE, make the same point). The first default used it; it traded too
  much uncertainty for spread in ``bench/acquire.py`` (docs/guides/label-acquisition.md).

Example:
    >>> import numpy as np
    >>> uncertainty_order(np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3]]), 2).tolist()
    [1, 2]
    >>> E = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99]], dtype=float)
    >>> kcenter_greedy(E, 1, labeled=E[:1]).tolist()  # the text farthest from the labeled one
    [2]
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from adaptlab.errors import ConfigError

UNCERTAINTY_KINDS = ("margin", "entropy")


def uncertainty_scores(proba: np.ndarray, kind: str = "margin") -> np.ndarray:
    """Higher = less certain. ``margin``: 1 − (p₁ − p₂) of the two most likely classes; ``entropy``:
    Shannon entropy of the class distribution, divided by log(k) so both lie in [0, 1].

    Example:
        >>> uncertainty_scores(np.array([[1.0, 0.0], [0.5, 0.5]])).tolist()
        [0.0, 1.0]
    """
    P = np.asarray(proba, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] < 2:
        raise ConfigError(f"probabilities must be (texts x classes) with >= 2 classes; got shape {P.shape}.")
    if kind == "margin":
        top = np.sort(P, axis=1)[:, -2:]
        return 1.0 - (top[:, 1] - top[:, 0])
    if kind == "entropy":
        Q = np.clip(P, 1e-12, 1.0)
        return -(Q * np.log(Q)).sum(axis=1) / np.log(P.shape[1])
    raise ConfigError.invalid("uncertainty", kind, f"one of {', '.join(UNCERTAINTY_KINDS)}")


def uncertainty_order(proba: np.ndarray, n: int, kind: str = "margin", candidates: Optional[np.ndarray] = None
                      ) -> np.ndarray:
    """The ``n`` least confident rows (among ``candidates`` if given), least confident first; ties by position."""
    s = uncertainty_scores(proba, kind)
    cand = np.arange(len(s)) if candidates is None else np.asarray(candidates, dtype=int)
    order = cand[np.lexsort((cand, -s[cand]))]
    return order[:n]


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _cosine_distance(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - _unit(A) @ _unit(B).T, 0.0, 2.0)


def _pick_setup(E: np.ndarray, n: int, candidates: Optional[np.ndarray], seed: int
                ) -> tuple[np.ndarray, int, np.random.Generator, np.ndarray]:
    """What every embedding-space pick starts from: the candidate positions, ``n`` clamped to them, a
    seeded generator and the candidates' unit vectors (cosine distance is then 1 - dot product)."""
    E = np.asarray(E, dtype=np.float64)
    cand = np.arange(len(E)) if candidates is None else np.asarray(candidates, dtype=int)
    n = max(0, min(int(n), len(cand)))
    return cand, n, np.random.default_rng(seed), _unit(E[cand]) if n else np.zeros((0, E.shape[1]))


def kcenter_greedy(E: np.ndarray, n: int, *, labeled: Optional[np.ndarray] = None,
                   candidates: Optional[np.ndarray] = None, seed: int = 0) -> np.ndarray:
    """Greedy k-center (core-set) picks in cosine distance: each pick is the candidate farthest from the
    labeled points and the earlier picks. Without labeled points the first pick is the candidate nearest
    the pool's mean (the most typical text), not a random outlier.

    ``seed`` only breaks exact ties (duplicated rows).
    """
    cand, n, rng, U = _pick_setup(E, n, candidates, seed)
    if n == 0:
        return np.zeros(0, dtype=int)
    if labeled is not None and len(labeled):
        dist = _cosine_distance(U, np.asarray(labeled, dtype=np.float64)).min(axis=1)
    else:
        dist = np.full(len(cand), np.inf)
    jitter = rng.random(len(cand)) * 1e-9
    picks: list[int] = []
    for _ in range(n):
        if np.isinf(dist).all():
            j = int(np.argmax(U @ _unit(U.mean(axis=0, keepdims=True))[0] + jitter))
        else:
            j = int(np.argmax(dist + jitter))
        picks.append(j)
        dist = np.minimum(dist, np.clip(1.0 - U @ U[j], 0.0, 2.0))
        dist[j] = -1.0  # never again
    return cand[np.asarray(picks, dtype=int)]


def kmeanspp_pick(E: np.ndarray, n: int, *, labeled: Optional[np.ndarray] = None,
                  candidates: Optional[np.ndarray] = None, seed: int = 0) -> np.ndarray:
    """k-means++ seeding as a batch: each pick drawn with probability ∝ squared distance to the nearest
    labeled point or earlier pick (Arthur & Vassilvitskii 2007). Spread out like k-center, but an outlier
    is only likely, not certain, to be picked."""
    cand, n, rng, U = _pick_setup(E, n, candidates, seed)
    if n == 0:
        return np.zeros(0, dtype=int)
    if labeled is not None and len(labeled):
        d = _cosine_distance(U, np.asarray(labeled, dtype=np.float64)).min(axis=1)
    else:
        d = None
    picks: list[int] = []
    for _ in range(n):
        if d is None:
            j = int(rng.integers(len(cand)))
        else:
            w = d ** 2
            w[picks] = 0.0
            j = int(rng.choice(len(cand), p=w / w.sum())) if w.sum() > 0 else int(
                rng.choice(np.setdiff1d(np.arange(len(cand)), picks)))
        picks.append(j)
        dj = np.clip(1.0 - U @ U[j], 0.0, 2.0)
        d = dj if d is None else np.minimum(d, dj)
    return cand[np.asarray(picks, dtype=int)]


def nearest_to(E: np.ndarray, anchor: np.ndarray, n: int, *, candidates: Optional[np.ndarray] = None,
               k: int = 5) -> np.ndarray:
    """The ``n`` candidates most similar to the anchor set: mean cosine similarity to their ``k`` nearest
    anchor texts (a slice is often several small groups, so the centroid alone could sit between them).

    Example:
        >>> E = np.array([[1, 0], [0, 1], [0.9, 0.1]], dtype=float)
        >>> nearest_to(E, np.array([[1.0, 0.0]]), 2).tolist()
        [0, 2]
    """
    E = np.asarray(E, dtype=np.float64)
    cand = np.arange(len(E)) if candidates is None else np.asarray(candidates, dtype=int)
    A = np.asarray(anchor, dtype=np.float64)
    if A.ndim != 2 or len(A) == 0:
        raise ConfigError("the slice anchor needs at least one embedded text of the slice.")
    S = _unit(E[cand]) @ _unit(A).T
    kk = min(k, S.shape[1])
    score = np.sort(S, axis=1)[:, -kk:].mean(axis=1)
    return cand[np.lexsort((cand, -score))][:n]


def kmedoids(E: np.ndarray, n: int, *, candidates: Optional[np.ndarray] = None, seed: int = 0,
             max_iter: int = 20, max_cluster: int = 2000) -> np.ndarray:
    """``n`` medoids (actual pool points) of the candidates in cosine distance, largest cluster first.

    Alternating k-medoids (Park & Jun 2009): assign each point to its nearest medoid, move each medoid to
    the member with the least total distance to its cluster, repeat until stable. k-means++ init. A
    cluster larger than ``max_cluster`` updates its medoid on a seeded sample (quadratic cost otherwise).
    """
    cand, n, rng, U = _pick_setup(E, n, candidates, seed)
    if n == 0:
        return np.zeros(0, dtype=int)
    med = kmeanspp_pick(U, n, seed=seed) if n < len(cand) else np.arange(len(cand))
    assign = np.zeros(len(cand), dtype=int)
    for _ in range(max_iter):
        assign = np.argmin(1.0 - U @ U[med].T, axis=1)
        new = med.copy()
        for c in range(len(med)):
            members = np.flatnonzero(assign == c)
            if len(members) == 0:
                continue
            pool = members if len(members) <= max_cluster else rng.choice(members, max_cluster, replace=False)
            cost = (1.0 - U[pool] @ U[members].T).sum(axis=1)
            new[c] = pool[int(np.argmin(cost))]
        if np.array_equal(new, med):
            break
        med = new
    sizes = np.bincount(assign, minlength=len(med))
    order = np.lexsort((med, -sizes))
    return cand[med[order]]


def diverse_uncertain(proba: np.ndarray, E: np.ndarray, n: int, *, kind: str = "margin", factor: int = 4,
                      labeled: Optional[np.ndarray] = None, candidates: Optional[np.ndarray] = None,
                      seed: int = 0) -> np.ndarray:
    """The most uncertain ``factor·n`` candidates, thinned to ``n`` by k-center so they are not near-copies;
    returned least confident first."""
    top = uncertainty_order(proba, max(n, factor * n), kind, candidates)
    picked = kcenter_greedy(E, n, labeled=labeled, candidates=top, seed=seed)
    s = uncertainty_scores(proba, kind)
    return picked[np.lexsort((picked, -s[picked]))]


def distinct_uncertain(proba: np.ndarray, E: np.ndarray, n: int, *, kind: str = "margin", factor: int = 4,
                       min_distance: float = 0.1, candidates: Optional[np.ndarray] = None) -> np.ndarray:
    """The least confident candidates in order, skipping one within cosine distance ``min_distance`` of a
    text already in the batch (a clump of paraphrases is labeled once); returned least confident first.

    Only the ``factor·n`` most uncertain are scanned: when they hold fewer than ``n`` distinct texts the
    batch is filled with the skipped ones, in uncertainty order, rather than with confident texts. Unlike
    :func:`diverse_uncertain` it never trades uncertainty for spread: it only breaks near-duplicate clumps.

    Example:
        >>> P = np.array([[0.5, 0.5], [0.51, 0.49], [0.6, 0.4], [0.9, 0.1]])
        >>> E = np.array([[1, 0], [1, 0.01], [0, 1], [1, 1]], dtype=float)   # rows 0 and 1: paraphrases
        >>> distinct_uncertain(P, E, 2).tolist()
        [0, 2]
    """
    top = uncertainty_order(proba, max(n, factor * n), kind, candidates)
    U = _unit(np.asarray(E, dtype=np.float64)[top])
    taken: list[int] = []
    for j in range(len(top)):
        if len(taken) == n:
            break
        if not taken or float(np.max(U[taken] @ U[j])) < 1.0 - min_distance:
            taken.append(j)
    if len(taken) < n:
        chosen = set(taken)
        taken += [j for j in range(len(top)) if j not in chosen][: n - len(taken)]
    s = uncertainty_scores(proba, kind)
    picked = top[np.asarray(sorted(taken), dtype=int)]
    return picked[np.lexsort((picked, -s[picked]))]


__all__ = ["UNCERTAINTY_KINDS", "distinct_uncertain", "diverse_uncertain", "kcenter_greedy", "kmeanspp_pick", "kmedoids", "nearest_to",
           "uncertainty_order", "uncertainty_scores"]
