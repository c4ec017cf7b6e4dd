"""How much near-duplicate leakage would inflate scores on this data, measured, not guessed.

A naive stratified split lets versions of one document land on both sides; the scratch baseline is then
scored on all test items and on the test items that have no (near-)duplicate in train/validation. The
difference is the inflation a user would have reported without the near-duplicate-aware split.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from adaptlab.data import TextDataset, find_near_duplicates, split_dataset
from adaptlab.metrics import resolve_positive_label, score
from adaptlab.rungs import RungContext, get_rung


def measure_leakage_inflation(
    dataset: TextDataset, *, threshold: float = 0.8, seed: int = 0, test_size: float = 0.2, clusters: Any = None,
    max_rows: Optional[int] = None,
) -> dict[str, Any]:
    """Fit the tfidf rung on a naive stratified split and compare test F1 with and without leaked items.

    ``max_rows`` bounds the baseline on large data: above it, the tfidf rung is fitted on a seeded sample of
    ``max_rows`` train rows plus every train near-duplicate of the sampled leaked test items (they are what it
    memorises), validated on ``max_rows`` validation rows and scored on a seeded sample of ``max_rows`` test rows. The leak counts always cover every
    row; ``sampled`` says how many rows the F1 values come from. None: every row.

    Example:
        >>> from adaptlab.data.bundled import load_bbc_news
        >>> measure_leakage_inflation(load_bbc_news())["n_test_leaked"]  # doctest: +SKIP
        21
    """
    if clusters is None:
        clusters = find_near_duplicates(dataset.texts, threshold=threshold)
    split = split_dataset(dataset, strategy="stratified", test_size=test_size, seed=seed, test_seed=seed,
                          clusters=clusters, near_dup_threshold=threshold)
    test_idx = split.unseal_test("measure near-duplicate leakage inflation (diagnostic split, not a study)")
    leaked = np.zeros(len(test_idx), dtype=bool)
    leaked[split.leakage.test_leaked_positions(test_idx)] = True
    out: dict[str, Any] = {"strategy": "stratified", "n_test": int(len(test_idx)), "n_test_leaked": int(leaked.sum()),
                           "f1_all": None, "f1_clean": None, "f1_leaked": None, "inflation": None, "sampled": None}
    if not leaked.any():
        return out
    train_idx, val_idx = np.asarray(split.train), np.asarray(split.val)
    if max_rows is not None and max(len(train_idx), len(val_idx), len(test_idx)) > max_rows:
        train_idx, test_idx, leaked, out["sampled"] = _sample(train_idx, test_idx, leaked, clusters, max_rows, seed)
        val_idx = np.sort(np.random.default_rng(seed + 1).permutation(val_idx)[:max_rows])
        if not leaked.any():
            return out
    classes = dataset.classes
    positive: Optional[str] = resolve_positive_label(classes, dataset.labels)
    ctx = RungContext(classes=classes, positive_label=positive)
    fitted = get_rung("tfidf").fit(dataset.subset(train_idx), dataset.subset(val_idx), seed=seed, context=ctx)
    test = dataset.subset(test_idx)
    proba = fitted.predict_proba(test.texts)
    pred = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
    y = np.asarray(test.labels, dtype=object)
    all_ = score(y, pred, proba, classes, positive)["f1"]
    clean = score(y[~leaked], pred[~leaked], proba[~leaked], classes, positive)["f1"] if (~leaked).any() else None
    leaky = score(y[leaked], pred[leaked], proba[leaked], classes, positive)["f1"]
    out.update(f1_all=all_, f1_clean=clean, f1_leaked=leaky, inflation=None if clean is None else all_ - clean)
    return out


def _sample(train_idx: np.ndarray, test_idx: np.ndarray, leaked: np.ndarray, clusters: Any, max_rows: int,
            seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """At most ``max_rows`` test rows, and ``max_rows`` train rows plus the train near-duplicates of the leaked
    test rows kept (seeded); returns the positions, the kept rows' leak flags and the sample's sizes."""
    rng = np.random.default_rng(seed)
    keep_test = np.sort(rng.permutation(len(test_idx))[:max_rows])
    test_s, leaked_s = np.asarray(test_idx)[keep_test], leaked[keep_test]
    labels = np.asarray(clusters.labels)
    partners = train_idx[np.isin(labels[train_idx], labels[test_s[leaked_s]])]
    base = train_idx[np.sort(rng.permutation(len(train_idx))[:max_rows])]
    train_s = np.union1d(base, partners)
    sizes = {"n_train_fit": int(len(train_s)), "n_train": int(len(train_idx)), "n_test_scored": int(len(test_s)),
             "n_test": int(len(test_idx)), "max_rows": int(max_rows)}
    return train_s, test_s, leaked_s, sizes
