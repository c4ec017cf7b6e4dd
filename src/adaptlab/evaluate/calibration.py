"""Probability calibration fitted on validation texts, and the numbers that show it worked.

A rung's probabilities are often not what they say: a frozen probe on long news articles is
under-confident (most right answers at p ~ 0.6), a fine-tuned network over-confident. A coordinator who
routes texts by confidence (``adaptlab predict --min-confidence``) needs a 0.9 that is right nine times in
ten. :func:`fit_calibration` fits three maps on held-out *validation* texts and keeps the one with the lowest
out-of-fold log-loss (5-fold cross-validation inside the validation texts):

* ``temperature`` — the logits (``log p``) divided by one scalar ``T`` (Guo et al. 2017, §4.2);
* ``platt`` — a sigmoid of the logit of the top-label confidence (Platt 1999, on the top label);
* ``isotonic`` — a monotone step map of the top-label confidence (Zadrozny & Elkan 2002), tried only with
  :data:`ISOTONIC_MIN_TEXTS` validation texts or more (it over-fits smaller sets).

None of the maps changes which class is predicted: temperature scaling keeps the order of the classes,
and the top-label maps move the winner's probability (never below the runner-up's) and spread the rest
over the other classes in their old proportions. So accuracy and F1 are those of the rung; only the
confidences move. The sealed test set is never read here: the caller passes validation rows only.

A :class:`ProbabilityCalibration` is plain numbers (``to_dict`` / ``from_dict``), stored as JSON with the
model, never pickled.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400)
    >>> p1 = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.15, 400), 0.01, 0.99)  # right, but timid
    >>> P = np.c_[1 - p1, p1]
    >>> cal = fit_calibration(P, y)
    >>> cal.method in ("temperature", "platt", "isotonic"), cal.ece_after < cal.ece_before
    (True, True)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.errors import ConfigError

#: Fewer validation texts than this (or one class only): no calibration is fitted.
MIN_TEXTS = 20
#: Isotonic regression is a candidate only from this many validation texts on.
ISOTONIC_MIN_TEXTS = 200
#: Folds of the cross-validation inside the validation texts that chooses the method.
N_FOLDS = 5
#: Equal-width confidence bins of the expected calibration error (Guo et al. 2017 use 15).
ECE_BINS = 15
METHODS = ("temperature", "platt", "isotonic")
#: What ``Pipeline(calibration=...)`` accepts: a method, ``auto`` (chosen on validation) or ``none``.
CHOICES = ("auto", *METHODS, "none")
_EPS = 1e-12


# ------------------------------------------------------------------------------------------ the maps
def temperature_scale(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their logits (``log p``) divided by ``temperature``.

    Example:
        >>> temperature_scale(np.array([[0.9, 0.1]]), 2.0).round(3).tolist()
        [[0.75, 0.25]]
    """
    z = np.log(np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0)) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def mean_nll(P: np.ndarray, y: np.ndarray) -> float:
    """The mean negative log-likelihood of ``y`` (column positions) under the probabilities ``P``."""
    return float(-np.mean(np.log(np.clip(P[np.arange(len(y)), y], _EPS, 1.0))))


def fit_temperature_value(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the NLL of ``y`` (column positions); 1.0 when nothing better is found.

    L-BFGS-B on ``log T`` bounded to T in [0.05, 20], starting from T = 1; never worse than T = 1.

    Example:
        >>> P = np.array([[0.99, 0.01], [0.98, 0.02], [0.02, 0.98], [0.97, 0.03]])
        >>> fit_temperature_value(P, np.array([0, 1, 1, 1])) > 1       # over-confident: T > 1 softens
        True
    """
    from scipy.optimize import minimize

    P, y = np.asarray(proba, dtype=np.float64), np.asarray(y, dtype=int)
    res = minimize(lambda v: mean_nll(temperature_scale(P, float(np.exp(v[0]))), y), x0=np.zeros(1),
                   method="L-BFGS-B", bounds=[(np.log(0.05), np.log(20.0))])
    t = float(np.exp(res.x[0]))
    return t if mean_nll(temperature_scale(P, t), y) <= mean_nll(P, y) else 1.0


def _logit(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 1e-6, 1 - 1e-6)
    return np.log(c / (1 - c))


def top_label_apply(proba: np.ndarray, new_top: np.ndarray) -> np.ndarray:
    """``proba`` with each row's top probability replaced by ``new_top``, the rest spread in the old proportions.

    The new top is kept at or above the lowest value that leaves it the largest (``p2 / (rest + p2)`` with
    ``p2`` the runner-up, at most 0.5), so the predicted class never changes.

    Example:
        >>> top_label_apply(np.array([[0.6, 0.3, 0.1]]), np.array([0.9])).round(3).tolist()
        [[0.9, 0.075, 0.025]]
    """
    P = np.asarray(proba, dtype=np.float64)
    n, k = P.shape
    rows = np.arange(n)
    top = P.argmax(axis=1)
    c = P[rows, top]
    others = P.copy()
    others[rows, top] = 0.0
    rest = 1.0 - c
    p2 = others.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        floor = np.where(rest > _EPS, p2 / np.maximum(rest + p2, _EPS), 1.0 / k)
    g = np.clip(np.maximum(np.asarray(new_top, dtype=np.float64), floor + 1e-9), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(rest > _EPS, (1.0 - g) / np.maximum(rest, _EPS), 0.0)
    out = others * scale[:, None]
    flat = rest <= _EPS  # the rung said 1.0: the rest goes evenly to the other classes
    if flat.any() and k > 1:
        out[flat] = ((1.0 - g[flat]) / (k - 1))[:, None]
    out[rows, top] = g
    return out


def _fit_platt(conf: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4, max_iter=1000).fit(_logit(conf)[:, None], correct.astype(int))
    return {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def _fit_isotonic(conf: np.ndarray, correct: np.ndarray) -> dict[str, list[float]]:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True).fit(conf, correct)
    return {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}


def _fit_method(method: str, P: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    if method == "temperature":
        return {"temperature": fit_temperature_value(P, y)}
    conf, correct = P.max(axis=1), (P.argmax(axis=1) == y).astype(float)
    return _fit_platt(conf, correct) if method == "platt" else _fit_isotonic(conf, correct)


def apply_method(method: str, params: dict[str, Any], proba: np.ndarray) -> np.ndarray:
    """``proba`` mapped by a fitted method (``params`` as :attr:`ProbabilityCalibration.params` holds them).

    Example:
        >>> apply_method("platt", {"a": 1.0, "b": 0.0}, np.array([[0.7, 0.3]])).round(3).tolist()
        [[0.7, 0.3]]
    """
    P = np.asarray(proba, dtype=np.float64)
    if method == "none" or len(P) == 0:
        return P
    if method == "temperature":
        return temperature_scale(P, float(params["temperature"]))
    conf = P.max(axis=1)
    if method == "platt":
        g = 1.0 / (1.0 + np.exp(-(float(params["a"]) * _logit(conf) + float(params["b"]))))
    elif method == "isotonic":
        g = np.interp(conf, np.asarray(params["x"], dtype=float), np.asarray(params["y"], dtype=float))
    else:
        raise ConfigError.invalid("calibration method", method, f"one of {', '.join(METHODS)} or none")
    return top_label_apply(P, g)


# ------------------------------------------------------------------------------------------ the measures
def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error: the mean |accuracy - confidence| over equal-width bins, weighted
    by the share of texts in each bin (Guo et al. 2017, eq. 3). 0 is perfect.

    Example:
        >>> P = np.array([[0.9, 0.1]] * 10)
        >>> round(expected_calibration_error(P, np.array([0] * 9 + [1])), 3)   # says 0.9, right 9 in 10
        0.0
    """
    P = np.asarray(proba, dtype=np.float64)
    return confidence_ece(P.max(axis=1), P.argmax(axis=1) == np.asarray(y, dtype=int), n_bins)


def confidence_ece(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = ECE_BINS) -> float:
    """:func:`expected_calibration_error` from each text's confidence and whether its answer was right.

    Example:
        >>> round(confidence_ece([0.9, 0.9, 0.6, 0.6], [True, False, True, True]), 2)
        0.4
    """
    bins = _bins(np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=float), n_bins)
    n = sum(b["n"] for b in bins)
    return float(sum(b["n"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / n) if n else float("nan")


def reliability_bins(proba: np.ndarray, y: np.ndarray, n_bins: int = 10) -> list[dict[str, Any]]:
    """The reliability diagram as rows: for each non-empty confidence bin, its bounds, the number of texts,
    their mean confidence and their accuracy.

    Example:
        >>> reliability_bins(np.array([[0.95, 0.05], [0.55, 0.45]]), np.array([0, 1]), n_bins=2)
        [{'low': 0.5, 'high': 1.0, 'n': 2, 'confidence': 0.75, 'accuracy': 0.5}]
    """
    P = np.asarray(proba, dtype=np.float64)
    return _bins(P.max(axis=1), (P.argmax(axis=1) == np.asarray(y, dtype=int)).astype(float), n_bins)


def _bins(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> list[dict[str, Any]]:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        m = which == b
        if m.any():
            out.append({"low": round(float(edges[b]), 4), "high": round(float(edges[b + 1]), 4), "n": int(m.sum()),
                        "confidence": float(conf[m].mean()), "accuracy": float(correct[m].mean())})
    return out


#: Confidence thresholds of the coverage table (``predict --min-confidence P``).
COVERAGE_THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def coverage_table(confidence: Sequence[float], correct: Sequence[bool],
                   thresholds: Sequence[float] = COVERAGE_THRESHOLDS) -> list[dict[str, Any]]:
    """For each threshold P: the share of texts answered (confidence >= P), the accuracy on them, and the
    number sent to review. What a coordinator reads to pick ``--min-confidence``.

    Example:
        >>> rows = coverage_table([0.95, 0.9, 0.6, 0.55], [True, True, False, True], thresholds=(0.0, 0.8))
        >>> [(r["min_confidence"], r["coverage"], r["accuracy"], r["to_review"]) for r in rows]
        [(0.0, 1.0, 0.75, 0), (0.8, 0.5, 1.0, 2)]
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    rows = []
    for t in thresholds:
        m = conf >= float(t)
        rows.append({"min_confidence": float(t), "coverage": float(m.mean()) if len(m) else float("nan"),
                     "accuracy": float(ok[m].mean()) if m.any() else None, "answered": int(m.sum()),
                     "to_review": int((~m).sum())})
    return rows


# ------------------------------------------------------------------------------------------ the fit
@dataclass
class ProbabilityCalibration:
    """A fitted calibration map and what it did on the validation texts it was fitted on.

    Attributes:
        method: ``temperature``, ``platt`` or ``isotonic``.
        params: The map's numbers (``temperature``; ``a``, ``b``; or the isotonic steps ``x``, ``y``).
        n: Validation texts it was fitted on.
        fitted_on: Which texts (always validation texts: never the sealed test).
        selection: Out-of-fold log-loss of each candidate method on the validation texts (lower is better).
        ece_before, ece_after: Expected calibration error on the validation texts, before and after.
        nll_before, nll_after: Mean log-loss on the validation texts, before and after.
    """

    method: str
    params: dict[str, Any]
    n: int
    fitted_on: str = "validation texts"
    selection: dict[str, Optional[float]] = field(default_factory=dict)
    ece_before: float = float("nan")
    ece_after: float = float("nan")
    nll_before: float = float("nan")
    nll_after: float = float("nan")

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (columns and predicted class as in ``proba``)."""
        return apply_method(self.method, self.params, proba)

    def describe(self) -> str:
        """One line: the method, its numbers and the validation ECE before -> after."""
        how = {"temperature": lambda p: f"temperature scaling, T = {p['temperature']:.2f}",
               "platt": lambda p: f"Platt scaling of the top-label confidence (a = {p['a']:.2f}, b = {p['b']:.2f})",
               "isotonic": lambda p: f"isotonic regression of the top-label confidence ({len(p['x'])} steps)"}
        return (f"{how[self.method](self.params)}, chosen on {self.n} {self.fitted_on} by cross-validated "
                f"log-loss (validation ECE {self.ece_before:.3f} -> {self.ece_after:.3f})")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe numbers (stored in the model's manifest)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProbabilityCalibration":
        """The calibration stored by :meth:`to_dict`; a ConfigError when it was edited into nonsense."""
        try:
            cal = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
            apply_method(cal.method, cal.params, np.array([[0.6, 0.4]]))
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise ConfigError(f"the stored calibration {str(d)[:80]!r} cannot be read ({exc}); the manifest was "
                              "edited. Re-save the model.") from exc
        return cal


def _folds(y: np.ndarray, n_folds: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    return [np.sort(f) for f in np.array_split(order, n_folds)]


def _cv_nll(method: str, P: np.ndarray, y: np.ndarray, seed: int) -> Optional[float]:
    """Out-of-fold log-loss of ``method`` fitted on the other folds; None where a fold cannot fit it."""
    losses = []
    for held in _folds(y, N_FOLDS, seed):
        fit_idx = np.setdiff1d(np.arange(len(y)), held)
        correct = P[fit_idx].argmax(axis=1) == y[fit_idx]
        if method != "temperature" and (correct.all() or not correct.any()):
            return None  # a top-label map needs right and wrong answers to learn from
        params = _fit_method(method, P[fit_idx], y[fit_idx])
        losses.append(mean_nll(apply_method(method, params, P[held]), y[held]) * len(held))
    return float(sum(losses) / len(y))


def fit_calibration(proba: np.ndarray, y: np.ndarray, *, method: str = "auto", seed: int = 0,
                    fitted_on: str = "validation texts") -> Optional[ProbabilityCalibration]:
    """Fit a calibration on validation probabilities ``proba`` and labels ``y`` (column positions).

    ``method="auto"`` tries every method of :data:`METHODS` (isotonic only from :data:`ISOTONIC_MIN_TEXTS`
    texts) and keeps the lowest out-of-fold log-loss; a named method is fitted as asked. Returns None when
    the set is too small (fewer than :data:`MIN_TEXTS` texts or one class), or for ``method="none"``.

    Example:
        >>> P = np.array([[0.6, 0.4], [0.4, 0.6]] * 20)
        >>> cal = fit_calibration(P, np.array([0, 1] * 20), method="temperature")
        >>> cal.params["temperature"] < 1                     # always right, timid: T < 1 sharpens
        True
    """
    if method not in CHOICES:
        raise ConfigError.invalid("calibration", method, f"one of {', '.join(CHOICES)}")
    P = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    if method == "none" or len(y) < MIN_TEXTS or len(np.unique(y)) < 2:
        return None
    correct = P.argmax(axis=1) == y
    if method == "auto":
        tried = [m for m in METHODS if m != "isotonic" or len(y) >= ISOTONIC_MIN_TEXTS]
        selection = {m: _cv_nll(m, P, y, seed) for m in tried}
        usable = {m: v for m, v in selection.items() if v is not None}
        chosen = min(usable, key=lambda m: (usable[m], METHODS.index(m)))
    else:
        if method != "temperature" and (correct.all() or not correct.any()):
            method = "temperature"  # nothing for a top-label map to learn from; say which was used
        selection, chosen = {}, method
    params = _fit_method(chosen, P, y)
    after = apply_method(chosen, params, P)
    return ProbabilityCalibration(method=chosen, params=params, n=int(len(y)), fitted_on=fitted_on,
                                  selection=selection, ece_before=expected_calibration_error(P, y),
                                  ece_after=expected_calibration_error(after, y), nll_before=mean_nll(P, y),
                                  nll_after=mean_nll(after, y))


def calibration_report(raw: np.ndarray, calibrated: np.ndarray, y: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """ECE before/after, reliability bins before/after and the coverage table (on ``calibrated``) of one set.

    Example:
        >>> P = np.array([[0.6, 0.4], [0.4, 0.6]] * 10)
        >>> r = calibration_report(P, P, np.array([0, 1] * 10))
        >>> round(r["ece_before"], 2), r["n"], len(r["coverage"])
        (0.4, 20, 8)
    """
    raw, calibrated, y = np.asarray(raw, dtype=np.float64), np.asarray(calibrated, dtype=np.float64), np.asarray(y)
    conf = calibrated.max(axis=1)
    return {"n": int(len(y)), "ece_before": expected_calibration_error(raw, y),
            "ece_after": expected_calibration_error(calibrated, y),
            "reliability_before": reliability_bins(raw, y, n_bins),
            "reliability_after": reliability_bins(calibrated, y, n_bins),
            "coverage": coverage_table(conf, calibrated.argmax(axis=1) == y)}


__all__ = ["CHOICES", "COVERAGE_THRESHOLDS", "ECE_BINS", "ISOTONIC_MIN_TEXTS", "METHODS", "MIN_TEXTS",
           "ProbabilityCalibration", "apply_method", "calibration_report", "confidence_ece", "coverage_table",
           "expected_calibration_error", "fit_calibration", "fit_temperature_value", "reliability_bins",
           "temperature_scale", "top_label_apply"]
