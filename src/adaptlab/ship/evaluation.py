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
                      predictions: Optional[np.ndarray] = None,
                      sealed: Optional["SealedPredictions"] = None) -> dict[str, Any]:
    """F1 (positive-class F1 for two classes, else macro-F1) with a 95% bootstrap CI, accuracy, per class,
    and (``calibration``) the expected calibration error before/after the model's calibration, its
    reliability bins and the coverage-vs-accuracy table (:func:`~adaptlab.evaluate.calibration.calibration_report`).
    ``sealed`` (from :func:`predict_sealed`) saves predicting the texts again.

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
    sealed = sealed if sealed is not None else predict_sealed(pipeline, eval_set.texts)
    pred = predictions if predictions is not None else sealed.pred
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
            "positive_label": positive, "per_class": per_class, "calibration": sealed.calibration_view(y)}


@dataclass
class SealedPredictions:
    """A model's predictions of the sealed texts: labels, its own probabilities (``raw``) and the ones it
    reports (``proba``: calibrated when the model carries a calibration), columns in ``classes`` order."""

    pred: np.ndarray
    raw: np.ndarray
    proba: np.ndarray
    classes: list[str]
    method: Optional[str]

    def calibration_view(self, y: Sequence[str]) -> dict[str, Any]:
        """ECE before/after, reliability bins and coverage of these predictions against labels ``y``."""
        from adaptlab.evaluate.calibration import calibration_report

        pos = {c: k for k, c in enumerate(self.classes)}
        idx = np.asarray([pos.get(str(v), -1) for v in y], dtype=int)  # a class the model lacks: always wrong
        return {"method": self.method, **calibration_report(self.raw, self.proba, idx)}


def predict_sealed(pipeline: Any, texts: Sequence[str]) -> SealedPredictions:
    """One pass of ``pipeline`` over ``texts``: labels, raw and calibrated probabilities.

    Example:
        >>> from adaptlab.ship import Pipeline
        >>> pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(["good", "bad"] * 6, ["p", "n"] * 6)
        >>> sp = predict_sealed(pipe, ["good", "bad"])
        >>> sp.pred.tolist(), sp.method          # 12 texts: too few to hold out 20 for a calibration
        (['p', 'n'], None)
    """
    texts = list(texts)
    cal = getattr(pipeline, "calibration_", None)
    try:
        raw = np.asarray(pipeline.predict_proba(texts, calibrated=False), dtype=np.float64)
    except TypeError:  # a model without the keyword (not an adaptlab Pipeline): its probabilities as they are
        raw, cal = np.asarray(pipeline.predict_proba(texts), dtype=np.float64), None
    classes = [str(c) for c in pipeline.classes_]
    proba = cal.apply(raw) if cal is not None else raw
    pred = np.asarray([classes[k] for k in raw.argmax(axis=1)], dtype=object)
    return SealedPredictions(pred=pred, raw=raw, proba=proba, classes=classes,
                             method=getattr(cal, "method", None))


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
    # The expected calibration error of each on the sealed texts (None: not measured, e.g. an older record).
    old_ece: Optional[float] = None
    new_ece: Optional[float] = None
    max_ece_increase: Optional[float] = None

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


def calibration_gate(result: GateResult, old_ece: float, new_ece: float, *, max_increase: float,
                     min_texts: int, new_name: str = "the retrained model",
                     old_name: str = "the model in use") -> GateResult:
    """``result`` with the calibration check added: a candidate the F1 gate promoted is kept out when its
    expected calibration error on the sealed texts is more than ``max_increase`` above the model in use's
    (policy ``max_ece_increase``), on at least ``min_texts`` sealed texts (fewer cannot tell, and the check
    is then only reported).

    Example:
        >>> g = GateResult(True, 0.9, 0.91, 0.01, -0.01, 0.03, 0.02, 400, "no-regression", "Promoted ...")
        >>> out = calibration_gate(g, 0.03, 0.15, max_increase=0.05, min_texts=100)
        >>> out.promoted, out.verdict
        (False, 'calibration-worse')
    """
    import dataclasses

    out = dataclasses.replace(result, old_ece=float(old_ece), new_ece=float(new_ece),
                              max_ece_increase=float(max_increase))
    rise = float(new_ece) - float(old_ece)
    said = (f" Calibration: expected calibration error {new_ece:.3f} ({new_name}) vs {old_ece:.3f} "
            f"({old_name}) on the sealed texts")
    if not result.promoted or not np.isfinite(rise):
        return dataclasses.replace(out, explanation=result.explanation + (said + "." if np.isfinite(rise) else ""))
    if rise <= max_increase:
        return dataclasses.replace(out, explanation=f"{result.explanation}{said}, within the {max_increase:.2f} "
                                                    "increase allowed.")
    if result.n < min_texts:
        return dataclasses.replace(out, explanation=f"{result.explanation}{said}: {rise:+.3f}, more than the "
                                   f"{max_increase:.2f} allowed, but {result.n} sealed texts are fewer than the "
                                   f"{min_texts} the check needs, so it does not hold the model back.")
    why = (f"Kept {old_name}: {new_name}'s F1 passes ({new_name} {result.new_f1:.3f}, {old_name} "
           f"{result.old_f1:.3f}), but its probabilities got much less trustworthy: expected calibration error "
           f"{new_ece:.3f} against {old_ece:.3f} on the {result.n} sealed texts ({rise:+.3f}, more than the "
           f"{max_increase:.2f} the policy allows, max_ece_increase). Texts routed by confidence would be "
           "routed wrongly; check the new labels, or raise max_ece_increase in a --policy file if acceptable.")
    return dataclasses.replace(out, promoted=False, verdict="calibration-worse", explanation=why)
