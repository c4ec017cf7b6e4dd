"""How noisy a weak slice's labels are, and the words the rare-slice rule adds when it is.

Kept apart from :mod:`adaptlab.decide.slices` (which runs the decision on a study's slices) so the
decision can word its rare-slice flag without importing the module that imports it.
"""
from __future__ import annotations

from typing import Any, Optional

from adaptlab.decide.policy import Policy


def slice_label_noise(s: dict[str, Any], label_quality: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The estimated label noise of a slice's rows, from the study's stored label check; None when unknown.

    The most direct basis first: the share of the slice's train-pool labels the check flagged
    (:func:`slice_report` with a slice column stores ``label_flagged`` / ``label_checked``); else, when
    the slice is a class, that class's estimated noise rate; else the slice's classes (its test items'
    labels) weighted by their classes' rates. Returns ``{"rate", "basis"}`` (basis in words).

    Example:
        >>> lq = {"noise_rate": 0.04, "per_class": {"a": {"noise_rate": 0.02}, "b": {"noise_rate": 0.30}}}
        >>> round(slice_label_noise({"slice": "b"}, lq)["rate"], 2)
        0.3
        >>> round(slice_label_noise({"slice": "x", "labels": {"a": 1, "b": 3}}, lq)["rate"], 3)
        0.23
    """
    per_class = (label_quality or {}).get("per_class") or {}
    if not per_class:
        return None
    if s.get("label_checked"):
        k, n = s.get("label_flagged", 0), s["label_checked"]
        return {"rate": min(1.0, k / n), "basis": f"{k} of its ~{n:,.0f} train-pool labels flagged as likely wrong"}
    name = s.get("slice")
    if name in per_class:
        return {"rate": float(per_class[name]["noise_rate"]), "basis": f"the estimated label noise of class {name}"}
    counts = {c: k for c, k in (s.get("labels") or {}).items() if c in per_class and k}
    if not counts:
        return None
    total = sum(counts.values())
    rate = sum(per_class[c]["noise_rate"] * k for c, k in counts.items()) / total
    return {"rate": float(rate), "basis": "its classes' estimated label noise, weighted by its mix of classes"}


def noisy_slice_words(s: dict[str, Any], label_quality: Optional[dict[str, Any]], p: Policy) -> str:
    """A clause for the rare-slice rule when the weak slice is also a noisy one (its estimated label noise is
    at least the policy's ``label_noise_min``); "" otherwise or when the study has no label check.

    Example:
        >>> lq = {"noise_rate": 0.04, "per_class": {"a": {"noise_rate": 0.02}, "b": {"noise_rate": 0.30}}}
        >>> noisy_slice_words({"slice": "b"}, lq, Policy())[:72]
        'it is also a noisy slice: an estimated 30% of its labels are wrong (the '
        >>> noisy_slice_words({"slice": "a"}, lq, Policy())
        ''
    """
    est = slice_label_noise(s, label_quality)
    if est is None or est["rate"] < p.label_noise_min:
        return ""
    overall = (label_quality or {}).get("noise_rate")
    vs = f"; {overall:.1%} overall" if isinstance(overall, (int, float)) else ""
    return (f"it is also a noisy slice: an estimated {est['rate']:.0%} of its labels are wrong ({est['basis']}{vs}), "
            "so check and fix its labels (adaptlab data check --label-issues FILE) before collecting more")


__all__ = ["noisy_slice_words", "slice_label_noise"]
