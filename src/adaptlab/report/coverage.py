"""Coverage vs accuracy of the report's rung: what share of texts it answers at each confidence floor, and how
accurately, so a coordinator can pick ``adaptlab predict --min-confidence P``.

Read from the stored test probabilities of the rung's seeds (pooled: each test item once per seed), as the
per-class table is; nothing is recomputed from a model. These are the rung's own probabilities: a model
shipped from the study calibrates them on its validation texts, and its model card gives the same table in
the calibrated confidence ``predict`` uses.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from adaptlab.evaluate.calibration import confidence_ece, coverage_table
from adaptlab.report.perclass import report_rung, rung_words

__all__ = ["coverage_view", "coverage_svg"]


def _stored(store: Any, study_id: str, rung: str) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """Seeds, confidences and right/wrong of the rung's stored test predictions that kept probabilities."""
    seeds, conf, ok = [], [], []
    for r in sorted(store.study_results(study_id), key=lambda r: r["seed"]):
        pr = r.get("predictions") or {}
        if r["rung"] != rung or not pr.get("proba") or not pr.get("y_pred"):
            continue
        P = np.asarray(pr["proba"], dtype=np.float64)
        if P.ndim != 2 or len(P) != len(pr["y_pred"]):
            continue
        seeds.append(int(r["seed"]))
        conf.append(P.max(axis=1))
        ok.append(np.asarray(pr["y_pred"], dtype=object) == np.asarray(pr["y_true"], dtype=object))
    return seeds, conf, ok


def coverage_view(store: Any, study_id: str, decision: Any, ev: Any) -> dict[str, Any]:
    """The coverage table of :func:`~adaptlab.report.perclass.report_rung`'s rung, its uncalibrated ECE and
    an SVG curve; ``{"missing": reason}`` when no stored probabilities allow it.

    Example:
        >>> view = coverage_view(store, study_id, decision, evidence)   # doctest: +SKIP
        >>> [(r["min_confidence"], r["coverage"]) for r in view["rows"]][:2]   # doctest: +SKIP
        [(0.0, 1.0), (0.5, 0.97)]
    """
    rung, why = report_rung(decision, ev)
    if rung is None:
        return {"missing": "no rung has stored test predictions, so there is no coverage to show."}
    seeds, conf, ok = _stored(store, study_id, rung)
    if not seeds:
        return {"missing": f"{rung_words(rung)} has no stored test probabilities, so there is no coverage to show."}
    c, k = np.concatenate(conf), np.concatenate(ok)
    ece = confidence_ece(c, k)
    rows = coverage_table(c, k)
    return {"rung": rung, "rung_words": rung_words(rung), "why": why, "seeds": seeds, "n": int(len(c)),
            "rows": rows, "ece": ece, "svg": coverage_svg(rows)}


def coverage_svg(rows: list[dict[str, Any]], width: int = 320, height: int = 200) -> str:
    """A small inline SVG: accuracy (y) against coverage (x), one labelled point per confidence floor.

    Example:
        >>> coverage_svg([{"min_confidence": 0.0, "coverage": 1.0, "accuracy": 0.9},
        ...               {"min_confidence": 0.9, "coverage": 0.5, "accuracy": 1.0}]).startswith("<svg")
        True
    """
    pts = [(r["coverage"], r["accuracy"], r["min_confidence"]) for r in rows if r.get("accuracy") is not None]
    if not pts:
        return ""
    lo = min(0.5, min(a for _, a, _ in pts))
    pad = 34

    def xy(cov: float, acc: float) -> tuple[float, float]:
        return (pad + cov * (width - pad - 10), height - pad - (acc - lo) / max(1e-9, 1 - lo) * (height - pad - 10))

    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(c, a) for c, a, _ in pts))
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>P {p:.2f}: coverage {c:.0%}, accuracy {a:.1%}'
                   f'</title></circle>' for (c, a, p), (x, y) in ((q, xy(q[0], q[1])) for q in pts))
    x0, y0 = xy(0, lo)
    x1, y1 = xy(1, 1)
    return (f'<svg id="coverage-curve" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="accuracy against coverage"><g fill="none" stroke="#888">'
            f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y0:.1f}"/>'
            f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x0:.1f}" y2="{y1:.1f}"/></g>'
            f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="2"/>'
            f'<g fill="#1f77b4">{dots}</g>'
            f'<g font-size="10" fill="#333"><text x="{x1 - 60:.1f}" y="{height - 8}">coverage →</text>'
            f'<text x="2" y="{y1 + 4:.1f}">acc 1.0</text><text x="2" y="{y0:.1f}">{lo:.2f}</text></g></svg>')
