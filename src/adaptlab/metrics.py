"""Task metrics and their uncertainty.

Binary tasks report F1 of the positive class (plus AUPRC); multiclass tasks report macro-F1. The
confidence band of a rung carries both sources of noise: the spread over seeds and the sampling error of
a finite test set, by a two-level bootstrap (resample seeds and, jointly, the shared test items).
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Optional, Sequence

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


def _resampled(n: int, k: int, n_boot: int, seed: int, score: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """``score(weights, j)`` of prediction set ``j`` under ``n_boot`` seeded resamples of ``n`` test items, as
    multinomial weights in chunks: shape (n_boot, k). One seed, one set of resamples: the rungs pair."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, k))
    done = 0
    while done < n_boot:
        b = min(_CHUNK, n_boot - done)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        for j in range(k):
            out[done:done + b, j] = score(w, j)
        done += b
    return out


def f1_replicates(
    y_true: np.ndarray, preds: Sequence[np.ndarray], classes: Sequence[str], positive: Optional[str], *,
    n_boot: int, seed: int,
) -> np.ndarray:
    """F1 of each prediction set under ``n_boot`` shared test-item resamples: shape (n_boot, len(preds)).

    The same resamples (same ``seed``) are used for every call, so replicates of different rungs are paired.
    """
    return _resampled(len(y_true), len(preds), n_boot, seed,
                      lambda w, j: weighted_f1(w, y_true, preds[j], classes, positive))


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


# ----------------------------------------------------------------------------------------- multi-label

#: The multi-label metrics a study can decide on (``primary_metric``); micro-F1 is the default.
MULTILABEL_METRICS = ("micro_f1", "macro_f1", "samples_f1")


def check_multilabel_metric(metric: str) -> str:
    """``metric`` when it is one of :data:`MULTILABEL_METRICS`; a ConfigError naming them otherwise.

    Example:
        >>> check_multilabel_metric("macro_f1")
        'macro_f1'
    """
    if metric not in MULTILABEL_METRICS:
        raise ConfigError.invalid("primary_metric", metric, "one of " + ", ".join(MULTILABEL_METRICS))
    return metric


def _as_indicator(Y: object, name: str) -> np.ndarray:
    arr = np.asarray(Y)
    if arr.ndim != 2:
        raise ConfigError.invalid(name, f"<array of shape {arr.shape}>", "a 0/1 matrix of texts x labels")
    return (arr > 0).astype(np.float64)


def weighted_multilabel_f1(weights: np.ndarray, Y_true: np.ndarray, Y_pred: np.ndarray, metric: str) -> np.ndarray:
    """Multi-label F1 (``micro_f1``, ``macro_f1`` or ``samples_f1``) under item weights, one value per row of
    ``weights`` (shape (B, n): how often each test item is drawn in bootstrap replicate b).

    With all weights 1 it is scikit-learn's ``f1_score(..., average=...)`` with ``zero_division=0``
    (samples-F1: a text with no true and no predicted label is right and scores 1, scikit-learn's
    ``zero_division=1``: "none of these" is an answer in multi-label data).

    Example:
        >>> import numpy as np
        >>> Y, P = np.array([[1, 0], [1, 1]]), np.array([[1, 1], [0, 1]])
        >>> float(weighted_multilabel_f1(np.ones((1, 2)), Y, P, "micro_f1")[0])
        0.6666666666666666
    """
    t, p = Y_true.astype(np.float64), Y_pred.astype(np.float64)
    if metric == "samples_f1":
        tp, denom = (t * p).sum(axis=1), t.sum(axis=1) + p.sum(axis=1)
        per_item = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 1.0)
        return (weights @ per_item) / weights.sum(axis=1)
    tp, fp, fn = weights @ (t * p), weights @ ((1 - t) * p), weights @ (t * (1 - p))  # (B, labels)
    if metric == "micro_f1":
        return _f1_from_counts(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1))
    if metric == "macro_f1":
        return _f1_from_counts(tp, fp, fn).mean(axis=1)
    raise ConfigError.invalid("metric", metric, "one of " + ", ".join(MULTILABEL_METRICS))


def score_multilabel(Y_true: object, Y_pred: object, classes: Sequence[str], primary: str = "micro_f1") -> dict[str, object]:
    """Micro-, macro- and samples-F1, per-label F1, and ``f1`` = the ``primary`` metric (the headline).

    Example:
        >>> s = score_multilabel([[1, 0], [1, 1]], [[1, 1], [0, 1]], ["a", "b"])
        >>> round(s["micro_f1"], 4), s["per_label_f1"], s["f1"] == s["micro_f1"]
        (0.6667, {'a': 0.6667, 'b': 0.6667}, True)
    """
    check_multilabel_metric(primary)
    t, p = _as_indicator(Y_true, "Y_true"), _as_indicator(Y_pred, "Y_pred")
    ones = np.ones((1, len(t)))
    out: dict[str, object] = {m: float(weighted_multilabel_f1(ones, t, p, m)[0]) for m in MULTILABEL_METRICS}
    tp, fp, fn = (t * p).sum(axis=0), ((1 - t) * p).sum(axis=0), (t * (1 - p)).sum(axis=0)
    per_label = _f1_from_counts(tp, fp, fn)
    out["per_label_f1"] = {str(c): round(float(v), 4) for c, v in zip(classes, per_label)}
    out["subset_accuracy"] = float((t == p).all(axis=1).mean()) if len(t) else float("nan")
    out["f1"] = out[primary]
    return out


def multilabel_replicates(Y_true: np.ndarray, preds: Sequence[np.ndarray], metric: str, *, n_boot: int,
                          seed: int) -> np.ndarray:
    """Multi-label :func:`f1_replicates`: ``metric`` of each prediction matrix under ``n_boot`` shared test-item
    resamples, shape (n_boot, len(preds)); the same ``seed`` draws the same resamples, so rungs pair.

    Example:
        >>> import numpy as np
        >>> Y = np.eye(2, dtype=int)[[0, 1] * 20]
        >>> multilabel_replicates(Y, [Y, 1 - Y], "micro_f1", n_boot=50, seed=0).mean(axis=0).round(2).tolist()
        [1.0, 0.0]
    """
    t = _as_indicator(Y_true, "Y_true")
    ps = [_as_indicator(p, "preds") for p in preds]
    return _resampled(len(t), len(ps), n_boot, seed, lambda w, j: weighted_multilabel_f1(w, t, ps[j], metric))


def multilabel_seed_and_test_bootstrap(Y_true: object, preds_by_seed: Sequence[object], metric: str = "micro_f1", *,
                                       n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Multi-label :func:`seed_and_test_bootstrap`: the band of the seed-mean ``metric``, resampling seeds and,
    jointly, the shared test items.

    Example:
        >>> import numpy as np
        >>> Y = np.eye(3, dtype=int)[[0, 1, 2] * 30]
        >>> lo, hi = multilabel_seed_and_test_bootstrap(Y, [Y, np.roll(Y, 1, axis=0)], "macro_f1")
        >>> 0.0 <= lo < hi <= 1.0
        True
    """
    t = _as_indicator(Y_true, "Y_true")
    n, s = len(t), len(preds_by_seed)
    if n == 0 or s == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    per_seed = np.stack([weighted_multilabel_f1(weights, t, _as_indicator(p, "preds"), metric)
                         for p in preds_by_seed], axis=1)
    boot = np.take_along_axis(per_seed, rng.integers(0, s, size=(n_boot, s)), axis=1).mean(axis=1)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
