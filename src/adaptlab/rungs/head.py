"""The linear head shared by the lower rungs: class-weighted logistic regression, C chosen on validation."""
from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from adaptlab.metrics import score


def select_logistic_head(
    X_train: Any,
    y_train: Sequence[str],
    X_val: Any,
    y_val: Sequence[str],
    *,
    C_grid: Sequence[float],
    seed: int,
    classes: Sequence[str],
    positive: Optional[str],
    max_iter: int = 2000,
) -> tuple[LogisticRegression, float, dict[str, float]]:
    """Fit one head per C on train, keep the one with the best validation F1.

    Ties go to the smaller C (stronger regularisation): with equal evidence the simpler head wins.
    Only validation is looked at; the test split never reaches this function.
    """
    best: tuple[float, float, LogisticRegression, dict[str, float]] | None = None
    for C in sorted(C_grid):
        head = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            head.fit(X_train, np.asarray(y_train, dtype=object))
        proba = _align(head, head.predict_proba(X_val), classes)
        pred = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
        val = score(y_val, pred, proba, classes, positive)
        if best is None or val["f1"] > best[0] + 1e-12:
            best = (val["f1"], C, head, val)
    assert best is not None  # C_grid is validated non-empty by the rung config
    return best[2], best[1], best[3]


def _align(head: LogisticRegression, proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Probabilities in the study's class order, with zeros for classes absent from train."""
    out = np.zeros((proba.shape[0], len(classes)))
    index = {c: i for i, c in enumerate(classes)}
    for j, c in enumerate(head.classes_):
        out[:, index[c]] = proba[:, j]
    return out


def head_proba(head: LogisticRegression, X: Any, classes: Sequence[str]) -> np.ndarray:
    return _align(head, head.predict_proba(X), classes)
