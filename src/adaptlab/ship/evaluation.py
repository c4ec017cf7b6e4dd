"""Scoring a shipped model on the sealed evaluation set, and the no-regression gate between versions.

The gate compares the model in use and a candidate on the *same* texts with a paired bootstrap of the
F1 difference (the same resampled items score both), so the noise of a small evaluation set is
measured, not guessed. A candidate is promoted unless it regresses beyond that noise, or drops by more
than ``max_drop`` (two F1 points by default) even when the drop is within the noise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

import numpy as np
from sklearn.metrics import f1_score

from adaptlab.data.dataset import TextDataset
from adaptlab.metrics import score, weighted_f1

N_BOOT = 2000
ALPHA = 0.05


def _bootstrap_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def evaluate_pipeline(pipeline: Any, eval_set: TextDataset, *, n_boot: int = N_BOOT, seed: int = 0,
                      predictions: Optional[np.ndarray] = None) -> dict[str, Any]:
    """F1 (positive-class F1 for two classes, else macro-F1) with a 95% bootstrap CI, accuracy, per class.

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import Pipeline, evaluate_pipeline
        >>> pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(
        ...     ["good film", "great film", "bad film", "awful film"] * 3, ["pos", "pos", "neg", "neg"] * 3)
        >>> held_out = TextDataset(["great day", "awful day", "good plot", "bad plot"], ["pos", "neg", "pos", "neg"])
        >>> ev = evaluate_pipeline(pipe, held_out, n_boot=200)
        >>> ev["f1"], ev["accuracy"], ev["n"]
        (1.0, 1.0, 4)
    """
    y = np.asarray(eval_set.labels, dtype=object)
    pred = predictions if predictions is not None else predict_names(pipeline, eval_set.texts)
    classes = sorted(set(map(str, pipeline.classes_)) | set(y.tolist()))
    positive = getattr(pipeline, "positive_label_", None)
    positive = positive if positive in classes and len(classes) == 2 else None
    scores = score(y, pred, None, classes, positive)
    reps = weighted_f1(_bootstrap_weights(len(y), n_boot, seed), y, pred, classes, positive)
    lo, hi = np.quantile(reps, [ALPHA / 2, 1 - ALPHA / 2])
    f1s = f1_score(y, pred, labels=classes, average=None, zero_division=0)
    per_class = {c: {"n": int((y == c).sum()), "f1": float(f)} for c, f in zip(classes, f1s)}
    return {"metric": "f1" if positive else "macro_f1", "f1": float(scores["f1"]), "ci": [float(lo), float(hi)],
            "accuracy": float(scores["accuracy"]), "n": int(len(y)), "hash": eval_set.content_hash,
            "positive_label": positive, "per_class": per_class}


def predict_names(pipeline: Any, texts: Sequence[str]) -> np.ndarray:
    """Predicted labels as strings (registries store labels as text)."""
    return np.asarray([str(c) for c in pipeline.predict(list(texts))], dtype=object)


@dataclass
class GateResult:
    """The gate's verdict on a candidate against the model in use, in numbers and in plain words.

    Example:
        >>> import numpy as np
        >>> from adaptlab.ship import GateResult, gate
        >>> y = ["a", "b"] * 50
        >>> g = gate(y, np.array(["a"] * 100, dtype=object), np.array(y, dtype=object), ["a", "b"], None, max_drop=0.02)
        >>> isinstance(g, GateResult), g.promoted, g.old_f1 < g.new_f1, g.n
        (True, True, True, 100)
    """

    promoted: bool
    old_f1: float
    new_f1: float
    diff: float
    ci_low: float
    ci_high: float
    max_drop: float
    n: int
    verdict: str
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict."""
        return asdict(self)


def gate(y: Sequence[str], pred_old: np.ndarray, pred_new: np.ndarray, classes: Sequence[str],
         positive: Optional[str], *, max_drop: float, n_boot: int = N_BOOT, seed: int = 0,
         old_name: str = "the model in use", new_name: str = "the retrained model") -> GateResult:
    """Promote ``new`` unless it regresses beyond the noise or by more than ``max_drop``.

    Example:
        >>> y = ["a", "b"] * 50
        >>> g = gate(y, np.array(y, dtype=object), np.array(["a"] * 100, dtype=object), ["a", "b"], None, max_drop=0.02)
        >>> g.promoted, g.verdict
        (False, 'regression')
    """
    y = np.asarray(y, dtype=object)
    w = _bootstrap_weights(len(y), n_boot, seed)
    old_f1 = float(weighted_f1(np.ones((1, len(y))), y, pred_old, classes, positive)[0])
    new_f1 = float(weighted_f1(np.ones((1, len(y))), y, pred_new, classes, positive)[0])
    reps = weighted_f1(w, y, pred_new, classes, positive) - weighted_f1(w, y, pred_old, classes, positive)
    lo, hi = (float(q) for q in np.quantile(reps, [ALPHA / 2, 1 - ALPHA / 2]))
    diff = new_f1 - old_f1
    pts = lambda v: f"{abs(v) * 100:.1f} point{'s' if abs(v) * 100 != 1 else ''}"  # noqa: E731
    ci = f"95% interval of the difference {lo * 100:+.1f} to {hi * 100:+.1f} points"
    both = f"{new_name} scores F1 {new_f1:.3f} on the {len(y)} sealed evaluation texts, {old_name} {old_f1:.3f}"
    if hi < 0:
        promoted, verdict = False, "regression"
        why = (f"Kept {old_name}: {both}. That is {pts(diff)} worse, more than the evaluation noise ({ci}): "
               "the new labels made the model worse. Check them for mistakes or a changed label definition "
               "before retraining again.")
    elif diff < -max_drop:
        promoted, verdict = False, "drop-above-threshold"
        why = (f"Kept {old_name}: {both}. The drop of {pts(diff)} might be noise ({ci}), but it is larger than "
               f"the {pts(max_drop)} this model allows (max_drop). Add more labels or raise --max-drop if "
               "the drop is acceptable.")
    elif diff >= 0:
        promoted, verdict = True, "improved" if lo > 0 else "no-regression"
        why = (f"Promoted {new_name}: {both} ({diff * 100:+.1f} points; {ci}).")
    else:
        promoted, verdict = True, "within-noise"
        why = (f"Promoted {new_name}: {both}. The drop of {pts(diff)} is within the evaluation noise ({ci}) "
               f"and within the {pts(max_drop)} allowed.")
    return GateResult(promoted=promoted, old_f1=old_f1, new_f1=new_f1, diff=diff, ci_low=lo, ci_high=hi,
                      max_drop=float(max_drop), n=int(len(y)), verdict=verdict, explanation=why)
