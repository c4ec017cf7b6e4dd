"""Near-duplicate detection: MinHash LSH on word shingles, verified by exact Jaccard.

Near-duplicates (the same news story lightly edited, a review posted twice with a typo fixed) are the
main way a test set leaks into training. :func:`find_near_duplicates` groups them into clusters so a
split can keep each cluster on one side, and so the leakage report can count what crossed anyway.

How it works:

1. Each text is normalised (:func:`normalize_text`: Unicode NFKC, lower case, punctuation removed,
   whitespace collapsed) and cut into word shingles of ``shingle_size`` words. A text with fewer
   words than that becomes a single shingle (the whole normalised text), so short texts still match
   their exact copies.
2. Texts with the same normalised form are exact duplicates and always share a cluster.
3. One representative per distinct normalised text gets a MinHash, kept only as one 64-bit key per
   LSH band (168 bytes a text at the defaults); texts sharing a band key are candidates. The banding is tuned for recall (>= 99% chance to surface a pair whose Jaccard similarity is
   exactly ``threshold``), because every candidate pair is then checked with the *exact* Jaccard
   similarity of the shingle sets, which removes the false positives LSH lets through.
4. Verified pairs are merged with union-find. Clusters are transitive: A~B and B~C put A and C in
   one cluster even when A and C alone are below the threshold, which is what a leak-free split
   needs.

Texts that are empty after normalisation (empty or whitespace only) are never clustered.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from datasketch import MinHash

from adaptlab.errors import ConfigError

__all__ = ["NearDupClusters", "find_near_duplicates", "normalize_text", "shingle_set"]

_PUNCT = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")
# Probability that LSH proposes a pair whose Jaccard similarity equals the threshold.
_TARGET_RECALL = 0.99
# Texts whose shingle hashes are kept between candidate checks (the rest are recomputed from the text).
_SHINGLE_CACHE = 4096


def normalize_text(text: str) -> str:
    """Canonical form used for duplicate detection.

    NFKC (so full-width and compatibility characters compare equal), lower case, punctuation and
    symbols removed, runs of whitespace collapsed to one space. A text made only of punctuation or
    symbols (e.g. emoji) keeps them, so ``"😀"`` and ``"😢"`` stay different.

    Example:
        >>> normalize_text("  Hello,   WORLD!\\n")
        'hello world'
    """
    folded = unicodedata.normalize("NFKC", text).lower()
    stripped = _SPACE.sub(" ", _PUNCT.sub("", folded)).strip()
    if stripped:
        return stripped
    return _SPACE.sub(" ", folded).strip()


def shingle_set(normalized: str, shingle_size: int) -> set[str]:
    """Word shingles of an already normalised text; the whole text when it is shorter than that.

    Example:
        >>> sorted(shingle_set("a b c d", 3))
        ['a b c', 'b c d']
        >>> shingle_set("a b", 3)
        {'a b'}
    """
    words = normalized.split()
    if not words:
        return set()
    if len(words) < shingle_size:
        return {" ".join(words)}
    return {" ".join(words[i : i + shingle_size]) for i in range(len(words) - shingle_size + 1)}


@dataclass(frozen=True)
class NearDupClusters:
    """Near-duplicate clusters of a list of texts.

    Attributes:
        labels: ``labels[i]`` is the cluster id of text ``i``. Every text has one; a text without
            near-duplicates has an id of its own. Ids are numbered by first appearance.
        clusters: The clusters with two or more members, each a sorted list of text positions,
            ordered by their first member.
        threshold: The Jaccard similarity threshold used.

    Example:
        >>> c = find_near_duplicates(["the cat sat", "The cat sat!", "a dog ran"])
        >>> c.clusters, c.labels.tolist()
        ([[0, 1]], [0, 0, 1])
    """

    labels: np.ndarray
    clusters: list[list[int]]
    threshold: float
    num_perm: int = 128
    shingle_size: int = 5
    seed: int = 1
    n_texts: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_texts", int(len(self.labels)))

    @property
    def n_clusters(self) -> int:
        """Number of clusters with two or more members."""
        return len(self.clusters)

    @property
    def n_items_in_clusters(self) -> int:
        """Number of texts that have at least one near-duplicate."""
        return sum(len(c) for c in self.clusters)

    def to_dict(self) -> dict:
        """JSON-safe summary (clusters as lists of positions)."""
        return {
            "threshold": self.threshold,
            "num_perm": self.num_perm,
            "shingle_size": self.shingle_size,
            "seed": self.seed,
            "n_texts": self.n_texts,
            "n_clusters": self.n_clusters,
            "n_items_in_clusters": self.n_items_in_clusters,
            "clusters": [list(map(int, c)) for c in self.clusters],
        }


def _norm_key(norm: str) -> int:
    return int.from_bytes(hashlib.blake2b(norm.encode("utf-8"), digest_size=8).digest(), "little")


def _shingle_hashes(text: str, shingle_size: int) -> np.ndarray:
    """Sorted distinct 64-bit hashes of a text's shingles (two shingles sharing one: about 1e-19 a pair)."""
    sh = shingle_set(normalize_text(text), shingle_size)
    return np.unique(np.fromiter((hash(s) for s in sh), dtype=np.int64, count=len(sh)))


def _band_keys(
    texts: Sequence[str], uf: _UnionFind, *, num_perm: int, threshold: float, shingle_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One MinHash per distinct normalised text, kept only as one 64-bit key per LSH band.

    Exact duplicates after normalisation are merged into ``uf`` here. Returns the band keys (one row per
    representative) and the text position of each representative.

    Memory: 8 bytes per band and text (21 bands at the default threshold: 168 bytes a text), where an LSH
    index of band byte strings in hash tables of sets took about 12 kB a text (12 GB at 1M texts). Exact
    duplicates are found by a 64-bit hash of the normalised text (checked against the text on a match).
    """
    b, r = _lsh_params(threshold, num_perm)
    # A band's key is a random linear hash of its r values: equal bands always share it; different ones
    # share it by chance with probability about 2**-64, and every proposed pair is verified anyway.
    rng = np.random.default_rng(0x5EED)
    mult = rng.integers(0, 2**63, size=(b, r), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    keys = np.empty((1024, b), dtype=np.uint64)
    reps: list[int] = []
    first_of: dict[int, int] = {}
    template = MinHash(num_perm=num_perm, seed=seed)
    for i, text in enumerate(texts):
        norm = normalize_text(text)
        if not norm:
            continue
        first = first_of.setdefault(_norm_key(norm), i)
        if first != i and normalize_text(texts[first]) == norm:
            uf.union(first, i)
            continue
        if len(reps) == len(keys):  # grow by half: amortised O(1), at most 1.5x the final size
            keys = np.concatenate([keys, np.empty((len(keys) // 2, b), dtype=np.uint64)])
        m = template.copy()  # copying skips re-deriving the permutations for every text
        m.update_batch([s.encode("utf-8") for s in shingle_set(norm, shingle_size)])
        with np.errstate(over="ignore"):
            keys[len(reps)] = (m.hashvalues[: b * r].reshape(b, r) * mult).sum(axis=1)
        reps.append(i)
    return keys[: len(reps)].copy(), np.asarray(reps, dtype=np.int64)


def _verify_candidates(
    texts: Sequence[str], keys: np.ndarray, reps: np.ndarray, uf: _UnionFind, *, threshold: float, shingle_size: int
) -> None:
    """Union every pair that shares a band key and whose exact shingle Jaccard is at least ``threshold``.

    A pair already in one cluster is not checked (the clusters would not change), and shingle hashes are
    recomputed from the texts (the last few thousand kept), so memory does not grow with the corpus.
    """
    cache: dict[int, np.ndarray] = {}

    def hashes(k: int) -> np.ndarray:
        if k not in cache:
            if len(cache) >= _SHINGLE_CACHE:
                cache.pop(next(iter(cache)))
            cache[k] = _shingle_hashes(texts[int(reps[k])], shingle_size)
        return cache[k]

    for band in range(keys.shape[1]):
        col = keys[:, band]
        order = np.argsort(col, kind="stable")
        sorted_col = col[order]
        same = np.flatnonzero(sorted_col[1:] == sorted_col[:-1])
        if not len(same):
            continue
        # Runs of equal keys: starts are where a "same" follows a "different".
        starts = same[np.r_[True, np.diff(same) > 1]]
        for start in starts:
            stop = start + 1
            while stop < len(sorted_col) and sorted_col[stop] == sorted_col[start]:
                stop += 1
            members = np.sort(order[start:stop])
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    a, c = int(members[x]), int(members[y])
                    if uf.find(int(reps[a])) == uf.find(int(reps[c])):
                        continue
                    ha, hc = hashes(a), hashes(c)
                    inter = len(np.intersect1d(ha, hc, assume_unique=True))
                    if inter and inter >= threshold * (len(ha) + len(hc) - inter):
                        uf.union(int(reps[a]), int(reps[c]))


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression keeps later finds O(1)
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller index becomes the root so the result does not depend on pair order.
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands ``b`` and rows ``r`` with the fewest candidates that still reach the target recall."""
    for r in range(num_perm // 2, 0, -1):
        b = num_perm // r
        if 1.0 - (1.0 - threshold**r) ** b >= _TARGET_RECALL:
            return b, r
    return num_perm, 1


def _check_params(threshold: float, num_perm: int, shingle_size: int, seed: int) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ConfigError.invalid("threshold", threshold, "a Jaccard similarity in (0, 1], e.g. 0.8")
    if isinstance(num_perm, bool) or not isinstance(num_perm, (int, np.integer)) or num_perm < 4:
        raise ConfigError.invalid("num_perm", num_perm, "an integer >= 4 (128 is a good default)")
    if isinstance(shingle_size, bool) or not isinstance(shingle_size, (int, np.integer)) or shingle_size < 1:
        raise ConfigError.invalid("shingle_size", shingle_size, "an integer >= 1 (words per shingle)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError.invalid("seed", seed, "a non-negative integer")


def find_near_duplicates(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle_size: int = 5,
    seed: int = 1,
) -> NearDupClusters:
    """Cluster texts whose word-shingle Jaccard similarity is at least ``threshold``.

    Args:
        texts: The texts, in dataset order.
        threshold: Minimum Jaccard similarity of the shingle sets for two texts to be linked.
        num_perm: MinHash permutations; more gives LSH fewer misses at some cost in speed.
        shingle_size: Words per shingle. Texts shorter than this are one shingle.
        seed: Seed of the MinHash permutations (results are deterministic for a given seed).

    Returns:
        NearDupClusters: a cluster id per text and the clusters of two or more texts.

    Example:
        >>> base = "the central bank raised interest rates by a quarter point on tuesday citing inflation"
        >>> texts = [base, base.replace("inflation", "prices"), "completely different text here"]
        >>> find_near_duplicates(texts).clusters
        [[0, 1]]
    """
    _check_params(threshold, num_perm, shingle_size, seed)
    n = len(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ConfigError.invalid(
            "texts", f"<{type(texts[bad[0]]).__name__} at position {bad[0]}>", "a sequence of str",
            "Run adaptlab.data.validate() on the dataset and fix the non-string texts first.",
        )

    uf = _UnionFind(n)
    band_keys, reps = _band_keys(texts, uf, num_perm=int(num_perm), threshold=float(threshold),
                                 shingle_size=int(shingle_size), seed=int(seed))
    _verify_candidates(texts, band_keys, reps, uf, threshold=float(threshold), shingle_size=int(shingle_size))

    ids: dict[int, int] = {}
    labels = np.empty(n, dtype=np.int64)
    members: dict[int, list[int]] = {}
    for i in range(n):
        root = uf.find(i)
        labels[i] = ids.setdefault(root, len(ids))
        members.setdefault(root, []).append(i)
    clusters = [m for m in members.values() if len(m) > 1]
    clusters.sort(key=lambda m: m[0])
    labels.setflags(write=False)
    return NearDupClusters(
        labels=labels,
        clusters=clusters,
        threshold=float(threshold),
        num_perm=int(num_perm),
        shingle_size=int(shingle_size),
        seed=int(seed),
    )
