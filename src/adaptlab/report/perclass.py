"""Per-class results of one rung on the sealed test, and the words the report shows instead of internal keys.

The report's per-class table and confusion matrix are read from the stored test predictions of the rung's
seeds (the same predictions the decision's paired comparisons read); nothing is recomputed from a model.
"""
from __future__ import annotations

import re
from typing import Any, Optional

import numpy as np

from adaptlab.decide.policy import rung_info

__all__ = ["per_class_view", "report_rung", "rung_words", "words"]


def report_rung(decision: Any, ev: Any) -> tuple[Optional[str], str]:
    """The rung the per-class section describes and why: the chosen rung, else the provisional one, else the
    rung with the highest mean among those with stored predictions (the decision's leader).

    Example:
        >>> from adaptlab.decide import Evidence, decide
        >>> ev = Evidence.from_tables({"probe": [0.81, 0.82, 0.83]})
        >>> report_rung(decide(ev), ev)
        ('probe', 'the chosen rung')
    """
    if getattr(decision, "chosen", None) in ev.rungs:
        return decision.chosen, "the chosen rung"
    if getattr(decision, "provisional", None) in ev.rungs:
        return decision.provisional, "the provisional choice"
    with_preds = [r for r in ev.rungs.values() if r.predictions]
    if not with_preds:
        return None, ""
    best = max(with_preds, key=lambda r: float(np.mean(r.f1_by_seed)) if r.f1_by_seed else -1.0)
    return best.rung, "no rung is chosen yet: the rung with the highest mean test F1"


def per_class_view(decision: Any, ev: Any) -> dict[str, Any]:
    """Precision, recall, F1 and support per class, and the confusion matrix (rows true, columns predicted), of
    :func:`report_rung`'s rung on the sealed test.

    Per-class scores are the mean over the rung's seeds of each seed's scores; support is the number of test
    items of the class; the confusion matrix sums every seed's counts (one count per test item per seed).
    Returns ``{"missing": reason}`` when no stored predictions allow it.

    Example:
        >>> from adaptlab.decide import Evidence, decide
        >>> ev = Evidence.from_tables({"probe": None}, y_true=["a", "a", "b", "b"],
        ...                           predictions={"probe": [["a", "b", "b", "b"]]})
        >>> view = per_class_view(decide(ev), ev)
        >>> [(c["label"], round(c["precision"], 3), c["recall"], c["support"]) for c in view["classes"]]
        [('a', 1.0, 0.5, 2), ('b', 0.667, 1.0, 2)]
        >>> view["matrix"]
        [[1, 1], [0, 2]]
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rung, why = report_rung(decision, ev)
    if rung is None:
        return {"missing": "no rung has stored test predictions, so there is no per-class result to show."}
    preds = ev.rungs[rung].predictions
    if not preds or ev.y_true is None:
        return {"missing": f"{rung_words(rung)} has no stored test predictions (a study stored before they were "
                           "kept, or read from tables), so there is no per-class result to show."}
    y_true = np.asarray(ev.y_true, dtype=object)
    seen = set(y_true.tolist()) | {p for yp in preds.values() for p in yp.tolist()}
    labels = [c for c in ev.classes if c in seen] + sorted(seen - set(ev.classes), key=str)
    seeds = sorted(preds)
    scores = np.array([precision_recall_fscore_support(y_true, preds[s], labels=labels, zero_division=0)[:3]
                       for s in seeds])  # (seeds, 3, classes)
    mean = scores.mean(axis=0)
    support = [int(np.sum(y_true == c)) for c in labels]
    matrix = sum(confusion_matrix(y_true, preds[s], labels=labels) for s in seeds)
    return {"rung": rung, "rung_words": rung_words(rung), "why": why, "seeds": seeds, "n_test": len(y_true),
            "labels": labels, "matrix": [[int(x) for x in row] for row in matrix],
            "classes": [{"label": c, "precision": float(mean[0, i]), "recall": float(mean[1, i]),
                         "f1": float(mean[2, i]), "support": support[i]} for i, c in enumerate(labels)]}


def rung_words(rung: str) -> str:
    """A rung as the report names it: its short description, then the name the CLI takes.

    Example:
        >>> rung_words("probe")
        'frozen probe (probe)'
        >>> rung_words("my-rung")
        'my-rung'
    """
    short = str(rung_info(rung).get("short") or rung)
    return short if short == rung else f"{short} ({rung})"


# Parts of stored keys, in words (the rest: underscores and dots become spaces).
_WORDS = {"f1": "F1", "val": "validation", "train": "training", "lr": "learning rate", "mmd2": "MMD²",
          "mmd": "MMD", "auprc": "AUPRC", "acc": "accuracy", "seconds": "seconds", "p_value": "p-value",
          "n": "count", "std": "std", "ci": "band", "per_layer": "per layer", "cls": "CLS", "mlm": "MLM"}
_KEYS = {"test_f1": "test F1", "val_f1": "validation F1", "train_loss": "training loss",
         "val_loss": "validation loss", "generalization_gap": "generalization gap", "f1_gap": "F1 gap",
         "movement.overall": "backbone movement, overall", "trainable_parameters": "trainable parameters",
         "wall_seconds": "wall time (s)", "mean_cosine": "mean cosine similarity"}


def words(key: str) -> str:
    """A stored key (``val_f1``, ``movement.overall``, ``refit_movement.0.mmd.p_value``) in words.

    Example:
        >>> words("test_f1"), words("val_loss"), words("refit_movement.0.mmd.p_value")
        ('test F1', 'validation loss', 'refit movement, MMD, p-value')
    """
    if key in _KEYS:
        return _KEYS[key]
    parts = []
    for part in str(key).split("."):
        if part.isdigit():
            continue  # a list position says nothing to a reader
        if part in _KEYS:
            parts.append(_KEYS[part])
            continue
        part = part.replace("p_value", "p-value")
        parts.append(" ".join(_WORDS.get(w, w) for w in re.split(r"_+", part) if w))
    return ", ".join(p for p in parts if p) or str(key)
