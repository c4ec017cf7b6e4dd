"""Train / validation / sealed test splits that do not leak, and a report of what leaks anyway.

Sizes: ``test_size`` is a fraction of the whole dataset; ``val_size`` is a fraction of what remains
after the test set is taken out (the train+val *pool*). The defaults 0.2 / 0.2 give about
64% train, 16% validation and 20% test.

Seeds: the test set depends only on ``test_seed`` (plus the data, the strategy and ``test_size``).
``seed`` only re-draws validation inside the fixed train+val pool, so a study that repeats over seeds
always scores against the same sealed test set.

Strategies:

* ``"stratified"``: items are drawn per class so each split keeps the label distribution.
* ``"group"``: every group (``TextDataset.groups``) lands entirely in one split; groups are drawn so
  the label distribution stays close to the overall one.
* ``"near-dup"``: like ``"group"``, with near-duplicate clusters (:func:`find_near_duplicates`) as
  the groups, so no copy of a text sits on the other side of a split.
* ``"time"``: the test set is the latest ``test_size`` of the items by timestamp (every test
  timestamp is >= every train/validation timestamp) and validation the latest ``val_size`` of the
  rest. Time splits are deterministic: ``seed`` and ``test_seed`` have no effect.
* ``"auto"``: ``"group"`` when the dataset has groups, else ``"near-dup"`` when near-duplicates
  exist, else ``"stratified"``.

Grouped and stratified draws use one greedy algorithm: groups are visited in an order shuffled by
the seed, and a group joins the held-out side when that brings the held-out size and per-class
counts closer to their targets. Each class keeps at least one training example where the groups
allow it.

The test indices are sealed: :attr:`Split.test` raises :class:`~adaptlab.errors.SealedTestError`;
evaluation code calls :meth:`Split.unseal_test` with a purpose, which is recorded in
:attr:`Split.test_reads`.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.data.dataset import TextDataset
from adaptlab.data.neardup import NearDupClusters, find_near_duplicates, normalize_text
from adaptlab.data.validate import is_missing
from adaptlab.errors import ConfigError, DataError, SealedTestError

__all__ = ["Split", "LeakageReport", "split_dataset", "describe_split", "STRATEGIES"]

STRATEGIES = ("auto", "stratified", "group", "near-dup", "time")
_TRAIN, _VAL, _TEST = 0, 1, 2
_PART_NAMES = ("train", "val", "test")
_N_EXAMPLES = 5

_SEALED_MESSAGE = (
    "the test split is sealed: tuning code must use validation; evaluation reads it through "
    "Split.unseal_test(purpose)"
)


# ------------------------------------------------------------------------------------- leakage


@dataclass
class LeakageReport:
    """How much of the test set has a copy in train+val, and which test items those are.

    Exact duplicates compare normalised text (:func:`~adaptlab.data.neardup.normalize_text`: case,
    punctuation and whitespace ignored). Near-duplicates are items that share a near-duplicate
    cluster; exact duplicates are always near-duplicates too.

    Attributes:
        threshold: Jaccard threshold of the near-duplicate clusters.
        n_test: Size of the test set.
        n_test_exact_dup: Test items with an exact duplicate in train+val.
        n_val_exact_dup: Validation items with an exact duplicate in train (inflates model selection).
        exact_dup_examples: Up to 5 ``(test row, train/val row)`` pairs, as source row numbers.
        n_clusters_crossing: Near-duplicate clusters with members in more than one of train/val/test.
        n_test_near_dup: Test items sharing a near-duplicate cluster with a train/val item.
        near_dup_examples: Up to 5 ``(test row, train/val row)`` near (not exact) duplicate pairs.
        test_leaked: Boolean mask *aligned with the test indices* as returned by
            :meth:`Split.unseal_test` (ascending dataset order): True for test items with an exact or
            near duplicate in train+val. Positions rather than dataset indices, so reading the mask does
            not reveal which items are in the test set. Score the test set with and without these
            items to see how much leakage inflates the numbers.
        n_groups_crossing: With groups, the number of groups with members in more than one split
            (0 for a group split unless the test set was given); None without groups.

    Example:
        >>> from adaptlab.data import TextDataset, split_dataset
        >>> texts = [f"article {i} about topic {i % 4}" for i in range(40)]
        >>> texts[39] = texts[0]                      # one text twice
        >>> split = split_dataset(TextDataset(texts, [str(i % 2) for i in range(40)]), strategy="stratified", seed=0)
        >>> leak = split.leakage
        >>> leak.n_test, leak.threshold, leak.has_leakage
        (8, 0.8, True)
    """

    threshold: float
    n_test: int
    n_test_exact_dup: int
    n_val_exact_dup: int
    exact_dup_examples: list[tuple[int, int]]
    n_clusters_crossing: int
    n_test_near_dup: int
    near_dup_examples: list[tuple[int, int]]
    test_leaked: np.ndarray
    n_groups_crossing: Optional[int] = None

    @property
    def n_test_leaked(self) -> int:
        """Test items with an exact or near duplicate in train+val."""
        return int(np.count_nonzero(self.test_leaked))

    @property
    def fraction_leaked(self) -> float:
        """Share of the test set with an exact or near duplicate in train+val (0 for an empty test set)."""
        return self.n_test_leaked / self.n_test if self.n_test else 0.0

    def test_leaked_positions(self, test_indices: Optional[Sequence[int]] = None) -> np.ndarray:
        """Positions (into the unsealed test indices) of the leaked test items.

        Pass the array :meth:`Split.unseal_test` returned to have its length checked against this
        report, which catches a report paired with another split's test set.

        Example:
            >>> test_idx = split.unseal_test("score with and without leaked items")  # doctest: +SKIP
            >>> clean = np.delete(test_idx, split.leakage.test_leaked_positions(test_idx))  # doctest: +SKIP
        """
        if test_indices is not None and len(test_indices) != len(self.test_leaked):
            raise ConfigError.invalid(
                "test_indices", f"<{len(test_indices)} indices>",
                f"the {len(self.test_leaked)} test indices of the split this report belongs to",
            )
        return np.flatnonzero(self.test_leaked)

    @property
    def has_leakage(self) -> bool:
        """Any leaked test item, validation copy of a train item, or group across splits."""
        return self.n_test_leaked > 0 or self.n_val_exact_dup > 0 or bool(self.n_groups_crossing)

    def summary(self) -> str:
        """A short paragraph a person can read."""
        if not self.has_leakage and self.n_clusters_crossing == 0:
            return (f"No leakage found: none of the {self.n_test} test items has an exact or near duplicate "
                    f"(Jaccard >= {self.threshold:g}) in train+val.")
        parts = []
        if self.n_test_leaked:
            ex = ""
            if self.exact_dup_examples:
                t, p = self.exact_dup_examples[0]
                ex = f" (e.g. test row {t} = train/val row {p})"
            elif self.near_dup_examples:
                t, p = self.near_dup_examples[0]
                ex = f" (e.g. test row {t} ~ train/val row {p})"
            parts.append(
                f"{self.n_test_leaked} of {self.n_test} test items ({100 * self.fraction_leaked:.1f}%) have a copy in "
                f"train+val: {self.n_test_exact_dup} exact duplicates, {self.n_test_near_dup} near duplicates "
                f"(Jaccard >= {self.threshold:g}, exact ones included){ex}."
            )
        else:
            parts.append(f"No test item has an exact or near duplicate in train+val ({self.n_test} test items).")
        if self.n_clusters_crossing:
            parts.append(f"{self.n_clusters_crossing} near-duplicate cluster(s) cross the train/val/test boundaries.")
        if self.n_val_exact_dup:
            parts.append(f"{self.n_val_exact_dup} validation item(s) have an exact duplicate in train, which "
                         "flatters validation scores.")
        if self.n_groups_crossing:
            parts.append(f"{self.n_groups_crossing} group(s) have members in more than one split.")
        if self.n_test_leaked:
            parts.append(
                f"Test scores may be inflated: compare the score on all test items with the score on the "
                f"{self.n_test - self.n_test_leaked} items without a copy (LeakageReport.test_leaked), or "
                "split with strategy='near-dup'."
            )
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; ``test_leaked`` becomes the list of leaked positions within the test set."""
        return {
            "threshold": float(self.threshold),
            "n_test": int(self.n_test),
            "n_test_exact_dup": int(self.n_test_exact_dup),
            "n_val_exact_dup": int(self.n_val_exact_dup),
            "exact_dup_examples": [[int(a), int(b)] for a, b in self.exact_dup_examples],
            "n_clusters_crossing": int(self.n_clusters_crossing),
            "n_test_near_dup": int(self.n_test_near_dup),
            "near_dup_examples": [[int(a), int(b)] for a, b in self.near_dup_examples],
            "n_test_leaked": self.n_test_leaked,
            "fraction_leaked": float(self.fraction_leaked),
            "test_leaked_positions": np.flatnonzero(self.test_leaked).astype(int).tolist(),
            "n_groups_crossing": None if self.n_groups_crossing is None else int(self.n_groups_crossing),
        }


def _leakage_report(
    dataset: TextDataset, part: np.ndarray, test: np.ndarray, clusters: NearDupClusters
) -> LeakageReport:
    rows = dataset.rows
    keys = [normalize_text(t) if isinstance(t, str) else "" for t in dataset.texts]
    first_pool: dict[str, int] = {}
    first_train: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k and part[i] != _TEST:
            first_pool.setdefault(k, i)
            if part[i] == _TRAIN:
                first_train.setdefault(k, i)

    exact = np.zeros(len(test), dtype=bool)
    exact_examples: list[tuple[int, int]] = []
    for pos, i in enumerate(test):
        j = first_pool.get(keys[i]) if keys[i] else None
        if j is not None:
            exact[pos] = True
            if len(exact_examples) < _N_EXAMPLES:
                exact_examples.append((int(rows[i]), int(rows[j])))
    n_val_exact = sum(1 for i in np.flatnonzero(part == _VAL) if keys[i] and keys[i] in first_train)

    cl = np.asarray(clusters.labels)
    pool_member: dict[int, int] = {}
    n_crossing = 0
    for members in clusters.clusters:
        if len({int(part[i]) for i in members}) > 1:
            n_crossing += 1
        for i in members:
            if part[i] != _TEST:
                pool_member.setdefault(int(cl[i]), i)
                break
    near = np.zeros(len(test), dtype=bool)
    near_examples: list[tuple[int, int]] = []
    for pos, i in enumerate(test):
        j = pool_member.get(int(cl[i]))
        if j is not None:
            near[pos] = True
            if not exact[pos] and len(near_examples) < _N_EXAMPLES:
                near_examples.append((int(rows[i]), int(rows[j])))

    n_groups_crossing = None
    if dataset.groups is not None:
        parts_of: dict[str, set[int]] = {}
        for g, p in zip(dataset.groups, part):
            parts_of.setdefault(g, set()).add(int(p))
        n_groups_crossing = sum(1 for s in parts_of.values() if len(s) > 1)

    leaked = exact | near
    leaked.setflags(write=False)
    return LeakageReport(
        threshold=float(clusters.threshold),
        n_test=int(len(test)),
        n_test_exact_dup=int(exact.sum()),
        n_val_exact_dup=int(n_val_exact),
        exact_dup_examples=exact_examples,
        n_clusters_crossing=n_crossing,
        n_test_near_dup=int(near.sum()),
        near_dup_examples=near_examples,
        test_leaked=leaked,
        n_groups_crossing=n_groups_crossing,
    )


# --------------------------------------------------------------------------------------- split


def _frozen(a: np.ndarray) -> np.ndarray:
    out = np.array(a, dtype=np.int64)
    out.setflags(write=False)
    return out


class Split:
    """Train / validation indices into a dataset, and a sealed test set.

    Attributes:
        train: Training indices (ascending, read-only).
        val: Validation indices (ascending, read-only).
        n_test: Size of the test set (readable without unsealing).
        strategy: The strategy used (``"auto"`` is resolved; see :attr:`requested_strategy`).
        seed: Seed of the validation draw.
        test_seed: Seed of the test draw.
        test_size, val_size: The requested fractions (``test_size`` is None for a given test set).
        leakage: :class:`LeakageReport` of this split.
        test_reads: Audit list: the purpose of every :meth:`unseal_test` call, in order.
        notes: Things worth knowing about this split (e.g. a class missing from training).
        dataset_hash: ``content_hash`` of the dataset the split was made on.
        fingerprint: Hash of strategy, seeds, sizes and all index arrays.

    Example:
        >>> ds = TextDataset(texts=[f"text number {i}" for i in range(20)], labels=["a", "b"] * 10)
        >>> split = split_dataset(ds, strategy="stratified", seed=1)
        >>> len(split.train), len(split.val), split.n_test
        (13, 3, 4)
        >>> split.test
        Traceback (most recent call last):
        ...
        adaptlab.errors.SealedTestError: the test split is sealed: tuning code must use validation; evaluation reads it through Split.unseal_test(purpose)
        >>> len(split.unseal_test("final evaluation")), split.test_reads
        (4, ['final evaluation'])
    """

    def __init__(
        self,
        *,
        train: Sequence[int],
        val: Sequence[int],
        test: Sequence[int],
        strategy: str,
        seed: int,
        test_seed: int,
        leakage: LeakageReport,
        test_size: Optional[float] = None,
        val_size: Optional[float] = None,
        requested_strategy: Optional[str] = None,
        notes: Optional[list[str]] = None,
        dataset_hash: str = "",
    ) -> None:
        self.train = _frozen(train)
        self.val = _frozen(val)
        self._test = _frozen(test)
        self.strategy = strategy
        self.requested_strategy = requested_strategy or strategy
        self.seed = int(seed)
        self.test_seed = int(test_seed)
        self.test_size = test_size
        self.val_size = val_size
        self.leakage = leakage
        self.notes = list(notes or [])
        self.dataset_hash = dataset_hash
        self.test_reads: list[str] = []
        h = hashlib.sha256()
        h.update(json.dumps({
            "strategy": strategy, "seed": self.seed, "test_seed": self.test_seed,
            "test_size": test_size, "val_size": val_size,
            "sizes": [len(self.train), len(self.val), len(self._test)],
        }, sort_keys=True).encode())
        for a in (self.train, self.val, self._test):
            h.update(a.astype("<i8").tobytes())
            h.update(b"|")
        self.fingerprint = h.hexdigest()[:16]

    @property
    def test(self) -> np.ndarray:
        """Always raises: the test set is read through :meth:`unseal_test` only."""
        raise SealedTestError(_SEALED_MESSAGE)

    @property
    def n_test(self) -> int:
        """Size of the sealed test split (readable without unsealing it)."""
        return int(len(self._test))

    @property
    def n_train(self) -> int:
        """Size of the training split."""
        return int(len(self.train))

    @property
    def n_val(self) -> int:
        """Size of the validation split."""
        return int(len(self.val))

    def unseal_test(self, purpose: str) -> np.ndarray:
        """Return the test indices (ascending) and record ``purpose`` in :attr:`test_reads`.

        Call it only to evaluate a decision already made on validation, e.g.
        ``split.unseal_test("final evaluation of the chosen rung")``.
        """
        if not isinstance(purpose, str) or not purpose.strip():
            raise ConfigError.invalid("purpose", purpose, "a non-empty string saying why the test set is read")
        self.test_reads.append(purpose.strip())
        return self._test.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description for run manifests (sizes and fingerprint, no indices)."""
        return {
            "strategy": self.strategy,
            "requested_strategy": self.requested_strategy,
            "seed": self.seed,
            "test_seed": self.test_seed,
            "test_size": self.test_size,
            "val_size": self.val_size,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "fingerprint": self.fingerprint,
            "dataset_hash": self.dataset_hash,
            "notes": list(self.notes),
            "test_reads": list(self.test_reads),
            "leakage": self.leakage.to_dict(),
        }

    def __repr__(self) -> str:
        return (f"Split(strategy={self.strategy!r}, n_train={self.n_train}, n_val={self.n_val}, "
                f"n_test={self.n_test} (sealed), seed={self.seed}, test_seed={self.test_seed}, "
                f"fingerprint={self.fingerprint!r})")


# ----------------------------------------------------------------------------------- algorithm


def _grouped_holdout(
    pool: np.ndarray, y: np.ndarray, g: np.ndarray, frac: float, rng: np.random.Generator, min_groups_left: int
) -> np.ndarray:
    """Greedy stratified group holdout: the subset of ``pool`` held out, whole groups only."""
    uniq, inverse = np.unique(g[pool], return_inverse=True)
    n_groups = len(uniq)
    counts: list[dict[int, int]] = [dict() for _ in range(n_groups)]
    for gi, c in zip(inverse.tolist(), y[pool].tolist()):
        d = counts[gi]
        d[c] = d.get(c, 0) + 1
    n_classes = int(y.max()) + 1 if len(y) else 0
    totals = np.bincount(y[pool], minlength=n_classes).tolist()
    targets = [frac * t for t in totals]
    target_all = frac * len(pool)
    held = [0] * n_classes
    held_all = 0
    taken = np.zeros(n_groups, dtype=bool)
    n_taken = 0

    def delta(d: dict[int, int]) -> tuple[float, bool]:
        # Change of the L1 distance to the per-class targets plus the distance to the total target;
        # the total term stops many small classes from each rounding up.
        size = 0
        change = 0.0
        keeps_classes = True
        for c, v in d.items():
            h = held[c]
            change += abs(h + v - targets[c]) - abs(h - targets[c])
            if h + v > totals[c] - 1:
                keeps_classes = False
            size += v
        change += abs(held_all + size - target_all) - abs(held_all - target_all)
        return change, keeps_classes

    order = rng.permutation(n_groups)
    for gi in order.tolist():
        if n_groups - n_taken - 1 < min_groups_left:
            break
        change, keeps = delta(counts[gi])
        if keeps and change < -1e-9:
            taken[gi] = True
            n_taken += 1
            for c, v in counts[gi].items():
                held[c] += v
                held_all += v

    if n_taken == 0:
        # Every group alone overshoots the target (few, large groups): hold out the one that fits
        # best, preferring groups whose removal leaves every class in training.
        scored = [(not keeps, change, k) for k, gi in enumerate(order.tolist())
                  for change, keeps in [delta(counts[gi])]]
        best = min(scored)[2]
        taken[order[best]] = True
    return np.sort(pool[taken[inverse]])


def _as_seed(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError.invalid(name, value, "a non-negative integer")
    return int(value)


def _as_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not 0 < value < 1:
        raise ConfigError.invalid(name, value, "a fraction strictly between 0 and 1, e.g. 0.2")
    return float(value)


def _tail_count(frac: float, n: int, keep: int) -> int:
    return int(min(max(1, round(frac * n)), n - keep))


def split_dataset(
    dataset: TextDataset,
    *,
    strategy: str = "auto",
    test_size: float = 0.2,
    val_size: float = 0.2,
    seed: int = 0,
    test_seed: int = 0,
    test_indices: Optional[Sequence[int]] = None,
    clusters: Optional[NearDupClusters] = None,
    near_dup_threshold: float = 0.8,
) -> Split:
    """Split a labeled dataset into train, validation and a sealed test set, and check for leakage.

    Args:
        dataset: A labeled dataset (after :func:`~adaptlab.data.validate`).
        strategy: ``"auto"``, ``"stratified"``, ``"group"``, ``"near-dup"`` or ``"time"`` (see the
            module documentation).
        test_size: Fraction of the dataset held out as test. Ignored when ``test_indices`` is given.
        val_size: Fraction of the train+val pool (what is left after the test set) used for validation.
        seed: Seed of the validation draw. Changing it re-draws validation; the test set stays.
        test_seed: Seed of the test draw.
        test_indices: The test set, when it comes from a separate file (e.g. the test file appended
            with :meth:`TextDataset.concat`); only validation is then drawn.
        clusters: Near-duplicate clusters of this dataset, to reuse across calls (a study that splits
            with several seeds). Computed with ``near_dup_threshold`` when None.
        near_dup_threshold: Jaccard threshold for the near-duplicate clusters computed here.

    Returns:
        Split: with its :class:`LeakageReport` in ``split.leakage``.

    Raises:
        ConfigError: A bad argument (strategy, sizes, seeds, a strategy the data does not support).
        DataError: The data cannot be split that way (no labels, too few items or groups).

    Example:
        >>> texts = [f"document {i} about topic {i % 3}" for i in range(30)]
        >>> ds = TextDataset(texts=texts, labels=[str(i % 2) for i in range(30)])
        >>> s0 = split_dataset(ds, seed=0)
        >>> s1 = split_dataset(ds, seed=1)
        >>> s0.strategy, s0.n_test, bool((s0.unseal_test("doc") == s1.unseal_test("doc")).all())
        ('stratified', 6, True)
    """
    if not isinstance(dataset, TextDataset):
        raise ConfigError.invalid(
            "dataset", f"<{type(dataset).__name__}>", "a TextDataset", "Load it with adaptlab.data.load_dataset()."
        )
    if strategy not in STRATEGIES:
        raise ConfigError.invalid("strategy", strategy, "one of " + ", ".join(repr(s) for s in STRATEGIES))
    val_size = _as_fraction("val_size", val_size)
    seed = _as_seed("seed", seed)
    test_seed = _as_seed("test_seed", test_seed)
    if test_indices is None:
        test_size = _as_fraction("test_size", test_size)
    if (isinstance(near_dup_threshold, bool) or not isinstance(near_dup_threshold, (int, float))
            or not 0 < near_dup_threshold <= 1):
        raise ConfigError.invalid("near_dup_threshold", near_dup_threshold, "a Jaccard similarity in (0, 1], e.g. 0.8")
    _check_dataset(dataset, strategy, clusters)
    n = len(dataset)
    external = test_indices is not None
    test = _check_test_indices(test_indices, n) if external else None
    if not external and n < 3:
        raise DataError(
            f"split_dataset needs at least 3 items (one each for train, validation and test); the dataset "
            f"has {n}. Fix: add data."
        )
    if clusters is None:
        texts = [t if isinstance(t, str) else "" for t in dataset.texts]
        clusters = find_near_duplicates(texts, threshold=near_dup_threshold)
    resolved = _resolve_strategy(strategy, dataset, clusters)
    Y = dataset.label_matrix() if dataset.label_sets is not None else None
    classes, y = _strata(dataset, Y)
    notes: list[str] = []
    if resolved == "time":
        train, val, test = _time_split(dataset, test, test_size, val_size)
        notes.append("time split: test is the latest part and validation the latest part of the rest, so "
                     "seed and test_seed do not change it")
    else:
        train, val, test = _grouped_split(dataset, resolved, clusters, y, test, test_size, val_size, seed, test_seed,
                                          Y=Y)
    part = np.full(n, -1, dtype=np.int64)
    part[train], part[val], part[test] = _TRAIN, _VAL, _TEST
    leakage = _leakage_report(dataset, part, test, clusters)
    if Y is not None:
        notes += _multilabel_train_check(dataset, Y, train, resolved)
        if resolved == "stratified":
            notes.append("multi-label: iterative stratification (each label keeps its share in every split)")
        return Split(
            train=train, val=val, test=test, strategy=resolved, requested_strategy=strategy,
            seed=seed, test_seed=test_seed, test_size=None if external else test_size, val_size=val_size,
            leakage=leakage, notes=notes, dataset_hash=dataset.content_hash,
        )
    absent = [str(c) for k, c in enumerate(classes) if not np.any(y[train] == k)]
    if absent:
        notes.append(f"class(es) {', '.join(repr(c) for c in absent[:10])} have no training example in this split")
    if len(np.unique(y[train])) < 2:
        raise DataError(
            f"this {resolved} split leaves a single class ({classes[y[train][0]]!r}) in training, so no "
            "classifier can be trained. Fix: add data, lower test_size/val_size, or use another strategy."
        )
    return Split(
        train=train, val=val, test=test, strategy=resolved, requested_strategy=strategy,
        seed=seed, test_seed=test_seed, test_size=None if external else test_size, val_size=val_size,
        leakage=leakage, notes=notes, dataset_hash=dataset.content_hash,
    )


def _strata(dataset: TextDataset, Y: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The classes and each item's class index the grouped draws balance. Multi-label: each item's rarest
    label (a text with no label forms its own stratum), the usual stand-in where whole groups must move."""
    if Y is None:
        classes, y = np.unique(np.asarray(dataset.labels, dtype=str), return_inverse=True)
        return classes, y.astype(np.int64)
    freq = Y.sum(axis=0).astype(float)
    rarest = np.where(Y.any(axis=1), np.argmin(np.where(Y > 0, freq[None, :], np.inf), axis=1), Y.shape[1])
    return np.asarray(dataset.classes + [""], dtype=object), rarest.astype(np.int64)


def _multilabel_holdout(pool: np.ndarray, Y: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Iterative stratification (Sechidis et al. 2011, the ``iterative-stratification`` package) of ``pool``:
    the held-out positions, about ``frac`` of them, each label keeping its share on both sides."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n_out = min(max(1, int(round(frac * len(pool)))), len(pool) - 1)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_out,
                                                random_state=int(rng.integers(0, 2**31 - 1)))
    _, held = next(splitter.split(np.zeros(len(pool)), Y[pool]))
    return np.sort(pool[held])


def _multilabel_train_check(dataset: TextDataset, Y: np.ndarray, train: np.ndarray, resolved: str) -> list[str]:
    """Notes on labels training lacks; a DataError when no label has a positive and a negative example in it."""
    pos = Y[train].sum(axis=0)
    trainable = (pos > 0) & (pos < len(train))
    if not trainable.any():
        raise DataError(
            f"this {resolved} split leaves no label with both positive and negative training examples, so no "
            "classifier can be trained. Fix: add data, lower test_size/val_size, or use another strategy."
        )
    absent = [c for c, k in zip(dataset.classes, pos) if k == 0]
    if absent:
        return [f"label(s) {', '.join(repr(c) for c in absent[:10])} have no training example in this split"]
    return []


def _check_dataset(dataset: TextDataset, strategy: str, clusters: Optional[NearDupClusters]) -> None:
    """The dataset can be split with ``strategy``: labeled everywhere, with groups/timestamps when asked."""
    if dataset.labels is None and dataset.label_sets is None:
        raise DataError(
            "split_dataset needs a labeled dataset (splits are stratified by label and evaluation needs "
            "labels), but this one has no labels. Fix: load it with label_col=NAME (CLI: --label-col NAME)."
        )
    missing = [dataset.rows[i] for i, v in enumerate(dataset.labels or []) if is_missing(v)]
    if missing:
        raise DataError(
            f"split_dataset: {len(missing)} item(s) have no label (rows "
            f"{', '.join(map(str, missing[:10]))}). Fix: label them, or load with --on-invalid drop (API: on_invalid='drop')."
        )
    if strategy == "group" and dataset.groups is None:
        raise ConfigError.invalid(
            "strategy", strategy, "a strategy the data supports: the dataset has no groups",
            "Load it with group_col=NAME (CLI: --group-col NAME), or use strategy='stratified' or 'near-dup'.",
        )
    if strategy == "time" and dataset.timestamps is None:
        raise ConfigError.invalid(
            "strategy", strategy, "a strategy the data supports: the dataset has no timestamps",
            "Load it with time_col=NAME (CLI: --time-col NAME), or use strategy='stratified' or 'near-dup'.",
        )
    n = len(dataset)
    if clusters is not None and (not isinstance(clusters, NearDupClusters) or len(clusters.labels) != n):
        got = (f"<NearDupClusters of {len(clusters.labels)} texts>" if isinstance(clusters, NearDupClusters)
               else f"<{type(clusters).__name__}>")
        raise ConfigError.invalid("clusters", got, f"find_near_duplicates(dataset.texts) for this dataset ({n} texts)")


def _resolve_strategy(strategy: str, dataset: TextDataset, clusters: NearDupClusters) -> str:
    """``auto``: groups when the data has them, else near-duplicate clusters when there are any, else stratified."""
    if strategy != "auto":
        return strategy
    if dataset.groups is not None:
        return "group"
    return "near-dup" if clusters.n_clusters > 0 else "stratified"


def _time_split(dataset: TextDataset, test: Optional[np.ndarray], test_size: float,
                val_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test = the latest items (unless given), validation = the latest of the rest, train = the earlier ones."""
    n = len(dataset)
    all_idx = np.arange(n)
    ts = np.asarray(dataset.timestamps, dtype="datetime64[ns]")
    bad = np.flatnonzero(np.isnat(ts))
    if len(bad):
        raise DataError(
            f"strategy='time' needs a timestamp on every item; {len(bad)} are missing or unparseable "
            f"(rows {', '.join(str(dataset.rows[i]) for i in bad[:10])}). Fix: fix those timestamps, or "
            "load with --on-invalid drop (API: on_invalid='drop')."
        )
    order = np.lexsort((all_idx, ts.astype(np.int64)))  # by time, ties by position
    if test is None:
        test = np.sort(order[len(order) - _tail_count(test_size, n, keep=2):])
    in_test = np.zeros(n, dtype=bool)
    in_test[test] = True
    pool_sorted = order[~in_test[order]]
    if len(pool_sorted) < 2:
        raise DataError(_too_few_pool_message(len(pool_sorted)))
    k_val = _tail_count(val_size, len(pool_sorted), keep=1)
    val = np.sort(pool_sorted[len(pool_sorted) - k_val:])
    train = np.sort(pool_sorted[: len(pool_sorted) - k_val])
    return train, val, test


def _split_units(dataset: TextDataset, resolved: str, clusters: NearDupClusters) -> tuple[np.ndarray, str, str]:
    """What no split may cut through (group ids, near-duplicate clusters, or items), its name, and the fix."""
    if resolved == "group":
        missing_g = [dataset.rows[i] for i, v in enumerate(dataset.groups) if is_missing(v)]
        if missing_g:
            raise DataError(
                f"strategy='group' needs a group on every item; {len(missing_g)} have none (rows "
                f"{', '.join(map(str, missing_g[:10]))}). Fix: fill them in, or load with --on-invalid drop (API: on_invalid='drop')."
            )
        _, g = np.unique(np.asarray(dataset.groups, dtype=str), return_inverse=True)
        return (np.asarray(g, dtype=np.int64), "groups",
                "add data from more groups, or use strategy='stratified' if rows of one group may be split")
    if resolved == "near-dup":
        return (np.asarray(clusters.labels, dtype=np.int64),
                "near-duplicate clusters (texts that are copies of each other count once)",
                "use strategy='stratified', or raise near_dup_threshold")
    return np.arange(len(dataset), dtype=np.int64), "items", "add data"


def _grouped_split(dataset: TextDataset, resolved: str, clusters: NearDupClusters, y: np.ndarray,
                   test: Optional[np.ndarray], test_size: float, val_size: float, seed: int,
                   test_seed: int, Y: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified holdouts of whole units (groups, clusters or items): the test set (unless given), then validation.

    Multi-label items (``Y``, no groups) are held out by iterative stratification; the same seeds give the same sets.
    """
    all_idx = np.arange(len(dataset))
    g, what, fix = _split_units(dataset, resolved, clusters)
    if Y is not None and resolved == "stratified":
        if test is None:
            test = _multilabel_holdout(all_idx, Y, test_size, np.random.default_rng([test_seed, 0]))
        pool = np.setdiff1d(all_idx, test)
        val = _multilabel_holdout(pool, Y, val_size, np.random.default_rng([seed, 1]))
        return np.setdiff1d(pool, val), val, test
    if test is None:
        n_groups = len(np.unique(g))
        if n_groups < 3:
            raise DataError(
                f"strategy={resolved!r} needs at least 3 distinct {what} (one each for train, validation "
                f"and test); this dataset has {n_groups}. Fix: {fix}."
            )
        test = _grouped_holdout(all_idx, y, g, test_size, np.random.default_rng([test_seed, 0]), min_groups_left=2)
    pool = np.setdiff1d(all_idx, test)
    if len(np.unique(g[pool])) < 2:
        raise DataError(
            f"strategy={resolved!r}: after the test set, the rest holds {len(np.unique(g[pool]))} distinct "
            f"{what}; train and validation need at least one each. Fix: {fix}."
        )
    val = _grouped_holdout(pool, y, g, val_size, np.random.default_rng([seed, 1]), min_groups_left=1)
    return np.setdiff1d(pool, val), val, test


def _too_few_pool_message(m: int) -> str:
    return (f"after the test set, {m} item(s) remain; train and validation need at least one each. "
            "Fix: give fewer test indices or add training data.")


def _check_test_indices(test_indices: Sequence[int], n: int) -> np.ndarray:
    arr = np.asarray(test_indices)
    if arr.ndim != 1 or arr.size == 0 or not (np.issubdtype(arr.dtype, np.integer)):
        raise ConfigError.invalid(
            "test_indices", f"<{arr.dtype} array of shape {arr.shape}>", "a non-empty 1-D sequence of integer positions"
        )
    if arr.min() < 0 or arr.max() >= n:
        raise ConfigError.invalid(
            "test_indices", f"<values from {arr.min()} to {arr.max()}>", f"positions in [0, {n - 1}]"
        )
    uniq = np.unique(arr)
    if len(uniq) != len(arr):
        raise ConfigError.invalid("test_indices", f"<{len(arr) - len(uniq)} repeated positions>", "unique positions")
    if n - len(uniq) < 2:
        raise DataError(_too_few_pool_message(n - len(uniq)))
    return uniq.astype(np.int64)


def describe_split(split: Split, dataset: TextDataset, *, include_test_labels: bool = False) -> dict[str, Any]:
    """Sizes and label distribution per split, as a JSON-safe dict.

    The test label distribution is left out unless ``include_test_labels=True``, which reads the test
    set through :meth:`Split.unseal_test` (and so appears in ``split.test_reads``).

    Example:
        >>> ds = TextDataset(texts=[f"t {i}" for i in range(10)], labels=["a", "b"] * 5)
        >>> d = describe_split(split_dataset(ds, strategy="stratified"), ds)
        >>> d["sizes"], d["labels"]["train"]
        ({'train': 6, 'val': 2, 'test': 2}, {'a': 3, 'b': 3})
    """
    labels = dataset.labels or []
    sets = dataset.label_sets

    def dist(idx: np.ndarray) -> dict[str, int]:
        if sets is not None:  # multi-label: rows carrying each label
            return dict(sorted(Counter(lab for i in idx for lab in sets[i]).items()))
        return dict(sorted(Counter(str(labels[i]) for i in idx).items())) if labels else {}

    out: dict[str, Any] = {
        "strategy": split.strategy,
        "seed": split.seed,
        "test_seed": split.test_seed,
        "fingerprint": split.fingerprint,
        "sizes": {"train": split.n_train, "val": split.n_val, "test": split.n_test},
        "labels": {"train": dist(split.train), "val": dist(split.val)},
        "leakage": split.leakage.to_dict(),
        "notes": list(split.notes),
    }
    if include_test_labels:
        out["labels"]["test"] = dist(split.unseal_test("describe_split"))
    return out
