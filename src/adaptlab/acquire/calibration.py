"""Temperature scaling of a model's probabilities before they rank texts by uncertainty.

A probe or a fine-tuned head is often over-confident: most texts get p ≈ 1 and the margin / entropy
ranking is then decided by tiny differences. Temperature scaling (Guo et al. 2017, "On Calibration of
Modern Neural Networks", §4.2) divides the logits by one scalar ``T`` fitted to minimise the negative
log-likelihood on held-out labeled texts. The logits are taken as ``log p`` (the softmax of ``log p / T``
is the probability raised to ``1/T`` and renormalised), so it works for any head that gives
probabilities. One scalar cannot reorder a text's classes, so the predicted label never changes;
it moves the confidences (and, with three or more classes, the uncertainty ranking).

For a shipped model the held-out set is its sealed evaluation set: the scalar only changes which texts
are offered for labeling, never the model or the gate's verdict.

Example:
    >>> import numpy as np
    >>> P = np.array([[0.99, 0.01], [0.98, 0.02], [0.02, 0.98], [0.97, 0.03]])
    >>> y = np.array([0, 1, 1, 1])                 # two of the confident answers are wrong
    >>> cal = fit_temperature(P, y)
    >>> cal.temperature > 1, cal.nll_after < cal.nll_before
    (True, True)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

from adaptlab.evaluate.calibration import fit_temperature_value, mean_nll, temperature_scale

#: Fewer held-out texts than this: no temperature is fitted (one scalar, but still noisy on a handful).
MIN_TEXTS = 20


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it did to the held-out negative log-likelihood (mean per text)."""

    temperature: float
    nll_before: float
    nll_after: float
    n: int
    fitted_on: str = "held-out texts"

    def describe(self) -> str:
        """One line for the output: which calibration was used."""
        return (f"temperature scaling, T = {self.temperature:.2f} fitted on {self.n} {self.fitted_on} "
                f"(NLL {self.nll_before:.3f} -> {self.nll_after:.3f})")

    def to_dict(self) -> dict[str, Any]:
        return {"method": "temperature", **asdict(self), "summary": self.describe()}


def scale(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their logits (``log p``) divided by ``temperature`` (shared with shipped models:
    :func:`adaptlab.evaluate.calibration.temperature_scale`).

    Example:
        >>> scale(np.array([[0.9, 0.1]]), 2.0).round(3).tolist()
        [[0.75, 0.25]]
    """
    return temperature_scale(proba, temperature)


def fit_temperature(proba: np.ndarray, y: np.ndarray, *, fitted_on: str = "held-out texts") -> Calibration:
    """The temperature minimising the NLL of ``y`` (column positions) under ``scale(proba, T)``.

    L-BFGS-B on ``log T`` (T stays positive), bounded to T in [0.05, 20]; starting from T = 1.
    """
    P = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    t = fit_temperature_value(P, y)  # the fit shipped models use too (never worse than T = 1)
    before, after = mean_nll(scale(P, 1.0), y), mean_nll(scale(P, t), y)
    return Calibration(temperature=t, nll_before=before, nll_after=after, n=len(y), fitted_on=fitted_on)


def calibrate_on(proba: np.ndarray, labels: Any, classes: Any, *, fitted_on: str = "held-out texts"
                 ) -> tuple[Optional[Calibration], str]:
    """Fit on held-out ``labels`` (names, one per row of ``proba``, columns in ``classes`` order) when the
    set allows it; returns the calibration (or None) and the line saying which one is used."""
    names = [str(c) for c in classes]
    pos = {c: k for k, c in enumerate(names)}
    keep = [(i, pos[str(v)]) for i, v in enumerate(labels or []) if str(v) in pos]
    if len(keep) < MIN_TEXTS or len({k for _, k in keep}) < 2:
        return None, (f"no calibration: the model's own probabilities (fewer than {MIN_TEXTS} held-out texts of "
                      "two or more of its classes to fit a temperature on).")
    idx = np.asarray([i for i, _ in keep])
    cal = fit_temperature(np.asarray(proba)[idx], np.asarray([k for _, k in keep]), fitted_on=fitted_on)
    return cal, "calibration: " + cal.describe() + "."


__all__ = ["Calibration", "MIN_TEXTS", "calibrate_on", "fit_temperature", "scale"]
