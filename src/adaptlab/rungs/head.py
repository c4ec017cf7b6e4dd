"""The linear head shared by the lower rungs: class-weighted logistic regression, C chosen on validation."""
from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from adaptlab.cancel import check_cancelled
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
        check_cancelled()  # a cancel stops the search between two fits (one fit is not interruptible)
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


def export_head(head: LogisticRegression, prefix: str = "head") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A fitted logistic head as (JSON state, tensors named ``<prefix>.coef`` / ``<prefix>.intercept``).

    Example:
        >>> import numpy as np
        >>> head = LogisticRegression().fit(np.array([[0.0], [1.0], [0.1], [0.9]]), ["n", "p", "n", "p"])
        >>> state, tensors = export_head(head)
        >>> state["classes"], sorted(tensors)
        (['n', 'p'], ['head.coef', 'head.intercept'])
        >>> bool((import_head(state, tensors).predict_proba([[0.7]]) == head.predict_proba([[0.7]])).all())
        True
    """
    state = {"classes": [str(c) for c in head.classes_], "C": float(head.C),
             "class_weight": head.class_weight if isinstance(head.class_weight, (str, type(None))) else None}
    tensors = {f"{prefix}.coef": np.ascontiguousarray(head.coef_),
               f"{prefix}.intercept": np.ascontiguousarray(head.intercept_)}
    return state, tensors


def import_head(state: dict[str, Any], tensors: dict[str, np.ndarray], prefix: str = "head") -> LogisticRegression:
    """The head :func:`export_head` wrote, rebuilt from its coefficients: the same ``predict_proba``
    arithmetic as before saving, so predictions match bit for bit."""
    from adaptlab.errors import ConfigError

    coef, intercept = tensors[f"{prefix}.coef"], tensors[f"{prefix}.intercept"]
    classes = np.asarray(state["classes"], dtype=object)
    n_rows = 1 if len(classes) == 2 else len(classes)
    if coef.ndim != 2 or coef.shape[0] != n_rows or intercept.shape != (n_rows,):
        raise ConfigError(f"the head's weights have shape {coef.shape}/{intercept.shape}, which does not fit "
                          f"{len(classes)} classes: the artifact is corrupted. Re-save the model.")
    head = LogisticRegression(C=float(state["C"]), class_weight=state.get("class_weight"))
    head.classes_ = classes
    head.coef_ = coef
    head.intercept_ = intercept
    head.n_features_in_ = int(coef.shape[1])
    head.n_iter_ = np.zeros(1, dtype=np.int32)
    return head


def check_state_kind(state: dict[str, Any], expected: str) -> None:
    """Refuse a shipped model's state written for another kind of model (an edited manifest)."""
    from adaptlab.errors import ConfigError

    if state.get("kind") != expected:
        raise ConfigError(f"unknown model kind {state.get('kind')!r} in the manifest (expected {expected!r}): the "
                          "artifact was written by another adaptlab version or edited. Re-save the model.")
