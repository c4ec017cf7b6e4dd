"""The multi-label head of the lower rungs: one class-weighted logistic regression per label (one-vs-rest),
``C`` and a decision threshold per label chosen on validation only, and how it saves (no pickle).

Example:
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]] * 5)
    >>> Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 5)
    >>> head, C, val = select_multilabel_head(X, Y, X, Y, C_grid=[1.0], seed=0)
    >>> bool((head.predict(X[:4]) == Y[:4]).all()), val["micro_f1"]
    (True, 1.0)
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.utils.extmath import safe_sparse_dot

from adaptlab.errors import ConfigError
from adaptlab.metrics import check_multilabel_metric, score_multilabel
from adaptlab.rungs.head import import_head, select_logistic_head

#: Thresholds tried per label on validation; ties go to the one nearest 0.5 (the uncalibrated default).
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


class MultilabelHead:
    """Per-label logistic heads as one weight matrix: ``predict_proba`` gives each label's probability
    (rows need not sum to 1), ``predict`` the 0/1 matrix of labels over their threshold.

    Example:
        >>> head = MultilabelHead(np.array([[2.0], [-2.0]]), np.zeros(2), np.array([0.5, 0.5]))
        >>> head.predict(np.array([[1.0], [-1.0]])).tolist()
        [[1, 0], [0, 1]]
    """

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, thresholds: np.ndarray, C: float = 1.0) -> None:
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        self.thresholds_ = np.asarray(thresholds, dtype=np.float64)
        self.C = float(C)

    def predict_proba(self, X: Any) -> np.ndarray:
        return expit(np.asarray(safe_sparse_dot(X, self.coef_.T, dense_output=True)) + self.intercept_)

    def predict(self, X: Any) -> np.ndarray:
        return (self.predict_proba(X) >= self.thresholds_).astype(np.int8)


def _fit_label(X: Any, y: np.ndarray, C: float, seed: int, max_iter: int) -> tuple[np.ndarray, float]:
    """One label's weights; a label constant in training gets a constant (near-0 or near-1) score."""
    n_features = X.shape[1]
    if y.min() == y.max():
        return np.zeros(n_features), (-12.0 if y[0] == 0 else 12.0)
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return clf.coef_[0], float(clf.intercept_[0])


def choose_thresholds(Y_val: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per label, the threshold of :data:`THRESHOLD_GRID` with the best validation F1 (0.5 for a label with no
    positive in validation, where every threshold scores the same).

    Example:
        >>> choose_thresholds(np.array([[1], [0], [1]]), np.array([[0.3], [0.2], [0.4]])).tolist()
        [0.3]
    """
    t = Y_val.astype(bool)
    out = np.full(Y_val.shape[1], 0.5)
    for j in range(Y_val.shape[1]):
        if not t[:, j].any():
            continue
        pred = proba[:, j][:, None] >= THRESHOLD_GRID[None, :]  # (n, grid)
        tp = (pred & t[:, j][:, None]).sum(axis=0)
        f1 = 2 * tp / (pred.sum(axis=0) + t[:, j].sum())
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        out[j] = THRESHOLD_GRID[best[np.argmin(np.abs(THRESHOLD_GRID[best] - 0.5))]]
    return out


def select_multilabel_head(X_train: Any, Y_train: np.ndarray, X_val: Any, Y_val: np.ndarray, *, C_grid: Sequence[float],
                           seed: int, metric: str = "micro_f1", max_iter: int = 2000) -> tuple[MultilabelHead, float, dict]:
    """Per ``C``: one head per label on train, thresholds chosen on validation; keep the ``C`` whose thresholded
    validation ``metric`` is best (ties: the smaller ``C``). Only validation is read: never the sealed test."""
    check_multilabel_metric(metric)
    Y_train, Y_val = np.asarray(Y_train), np.asarray(Y_val)
    best: tuple[float, float, MultilabelHead, dict] | None = None
    for C in sorted(C_grid):
        weights = [_fit_label(X_train, Y_train[:, j], C, seed, max_iter) for j in range(Y_train.shape[1])]
        head = MultilabelHead(np.stack([w for w, _ in weights]), np.array([b for _, b in weights]),
                              np.full(Y_train.shape[1], 0.5), C)
        head.thresholds_ = choose_thresholds(Y_val, head.predict_proba(X_val))
        val = score_multilabel(Y_val, head.predict(X_val), [str(j) for j in range(Y_val.shape[1])], metric)
        val = {k: v for k, v in val.items() if k != "per_label_f1"}
        if best is None or val["f1"] > best[0] + 1e-12:
            best = (float(val["f1"]), C, head, val)
    if best is None:
        raise ConfigError.invalid("C_grid", list(C_grid), "a non-empty list of positive numbers")
    return best[2], best[1], best[3]


def export_multilabel_head(head: MultilabelHead, prefix: str = "head") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(JSON state with the thresholds, tensors ``<prefix>.coef`` / ``<prefix>.intercept``) of a multi-label head.

    Example:
        >>> head = MultilabelHead(np.ones((2, 3)), np.zeros(2), np.array([0.3, 0.6]))
        >>> state, tensors = export_multilabel_head(head)
        >>> state["thresholds"], import_multilabel_head(state, tensors).coef_.shape
        ([0.3, 0.6], (2, 3))
    """
    state = {"task": "multilabel", "C": head.C, "thresholds": [float(t) for t in head.thresholds_]}
    return state, {f"{prefix}.coef": np.ascontiguousarray(head.coef_),
                   f"{prefix}.intercept": np.ascontiguousarray(head.intercept_)}


def import_multilabel_head(state: dict[str, Any], tensors: dict[str, np.ndarray], prefix: str = "head") -> MultilabelHead:
    """The head :func:`export_multilabel_head` wrote."""
    coef, intercept = tensors[f"{prefix}.coef"], tensors[f"{prefix}.intercept"]
    thresholds = np.asarray(state["thresholds"], dtype=np.float64)
    if coef.ndim != 2 or intercept.shape != (coef.shape[0],) or thresholds.shape != intercept.shape:
        raise ConfigError(f"the multi-label head's weights ({coef.shape}/{intercept.shape}) do not fit its "
                          f"{len(thresholds)} thresholds: the artifact is corrupted. Re-save the model.")
    return MultilabelHead(coef, intercept, thresholds, float(state.get("C", 1.0)))


def fit_head(X_train: Any, train: Any, X_val: Any, val: Any, *, C_grid: Sequence[float], seed: int,
             context: Any) -> tuple[Any, float, dict]:
    """The linear head of a lower rung for the task of ``train``: a logistic head on single-label data, the
    :class:`MultilabelHead` (per-label ``C`` search and thresholds on validation) on multi-label data."""
    if getattr(train, "label_sets", None) is None:
        return select_logistic_head(X_train, train.labels, X_val, val.labels, C_grid=C_grid, seed=seed,
                                    classes=context.classes, positive=context.positive_label)
    classes = list(context.classes)
    return select_multilabel_head(X_train, train.label_matrix(classes), X_val, val.label_matrix(classes),
                                  C_grid=C_grid, seed=seed, metric=context.primary_metric)


def import_any_head(state: dict[str, Any], tensors: dict[str, np.ndarray], prefix: str = "head") -> Any:
    """A saved head of either task (the state says which)."""
    if state.get("task") == "multilabel":
        return import_multilabel_head(state, tensors, prefix)
    return import_head(state, tensors, prefix)


def task_of(head: Any) -> tuple[str, Any]:
    """``(task, thresholds or None)`` of a fitted head: what a fitted rung records about it."""
    if isinstance(head, MultilabelHead):
        return "multilabel", head.thresholds_
    return "single", None
