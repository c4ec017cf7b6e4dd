"""The linear-probe gap: mean F1 of the frozen refit encoder minus the frozen off-the-shelf encoder.

The rule: ship the refit only if the gap is at least 2 F1 points AND the two 95% bands do
not overlap AND the numbers are 3-seed means (with the refit itself trained 3 times, so its own
variance is in the band). Otherwise keep the off-the-shelf encoder and save the compute.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from adaptlab.diagnostics.rules import MIN_PROBE_GAP, MIN_REFIT_SEEDS, MIN_SEEDS
from adaptlab.errors import ConfigError


@dataclass
class GapVerdict:
    """The probe-gap verdict; ``sentence`` says it in plain words.

    Example:
        >>> from adaptlab.diagnostics import GapVerdict, probe_gap
        >>> rows = [{"rung": "probe", "mean": 0.78, "ci_low": 0.76, "ci_high": 0.80, "n_seeds": 3},
        ...         {"rung": "refit", "mean": 0.79, "ci_low": 0.77, "ci_high": 0.81, "n_seeds": 3}]
        >>> v = probe_gap(rows, n_refits=3)
        >>> isinstance(v, GapVerdict), v.ship, v.bands_overlap
        (True, False, True)
        >>> v.reasons
        ['the gap is below the 2-point bar', 'the 95% bands overlap, so the difference can be seed and test-set noise']
    """

    base: str
    candidate: str
    gap: float  # candidate mean - base mean, F1 units (0.02 = 2 points)
    base_mean: float
    base_band: tuple[float, float]
    candidate_mean: float
    candidate_band: tuple[float, float]
    n_seeds: int
    n_refits: Optional[int]
    bands_overlap: bool
    ship: bool
    reasons: list[str] = field(default_factory=list)
    sentence: str = ""
    min_gap: float = MIN_PROBE_GAP

    @property
    def gap_points(self) -> float:
        """The gap in F1 points (100 x the difference of the means)."""
        return 100.0 * self.gap

    def to_dict(self) -> dict[str, Any]:
        """The verdict as JSON-safe data, with ``gap_points``."""
        d = asdict(self)
        d["gap_points"] = self.gap_points
        d["base_band"], d["candidate_band"] = list(self.base_band), list(self.candidate_band)
        return d


def _rows(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, dict):
        return result.get("rows") or result.get("summary", {}).get("rows") or []
    if isinstance(result, list):
        return result
    return list(getattr(result, "rows", []))


def count_refits(result: Any, rung: str = "refit") -> Optional[int]:
    """Distinct refits behind a study's `refit` row (1 when one refit is shared by all seeds)."""
    per_seed = result.get("per_seed") if isinstance(result, dict) else getattr(result, "per_seed", None)
    keys = {(p.get("diagnostics") or {}).get("refit_key") for p in (per_seed or []) if p.get("rung") == rung}
    keys.discard(None)
    return len(keys) or None


def probe_gap(
    result: Any,
    *,
    base: str = "probe",
    candidate: str = "refit",
    min_gap: float = MIN_PROBE_GAP,
    min_seeds: int = MIN_SEEDS,
    min_refit_seeds: int = MIN_REFIT_SEEDS,
    n_refits: Optional[int] = None,
) -> GapVerdict:
    """Compare two rows of a study (a `StudyResult`, its dict, or its rows) with that rule.

    ``n_refits`` (distinct refits behind the candidate row) is read from the study when not given;
    pass ``min_refit_seeds=1`` to accept one refit shared by all seeds.

    Example:
        >>> rows = [{"rung": "probe", "mean": 0.78, "ci_low": 0.77, "ci_high": 0.79, "n_seeds": 3},
        ...         {"rung": "refit", "mean": 0.81, "ci_low": 0.80, "ci_high": 0.825, "n_seeds": 3}]
        >>> v = probe_gap(rows, n_refits=3)
        >>> v.ship, round(v.gap_points, 1)
        (True, 3.0)
    """
    rows = {r["rung"]: r for r in _rows(result)}
    for name in (base, candidate):
        if name not in rows:
            raise ConfigError(
                f"the study has no {name!r} row (rows: {sorted(rows)}); the probe gap needs both "
                f"{base!r} and {candidate!r}: run the study with --rungs {base},{candidate}."
            )
    b, c = rows[base], rows[candidate]
    if n_refits is None and not isinstance(result, list):
        n_refits = count_refits(result, candidate)
    gap = float(c["mean"] - b["mean"])
    bb, cb = (float(b["ci_low"]), float(b["ci_high"])), (float(c["ci_low"]), float(c["ci_high"]))
    overlap = not (bb[1] < cb[0] or cb[1] < bb[0])
    n_seeds = int(min(b.get("n_seeds", 1), c.get("n_seeds", 1)))
    reasons = []
    if gap < min_gap:
        reasons.append(f"the gap is below the {100 * min_gap:.0f}-point bar")
    if overlap:
        reasons.append("the 95% bands overlap, so the difference can be seed and test-set noise")
    if n_seeds < min_seeds:
        reasons.append(f"only {n_seeds} seed(s): one run is a draw, not a measurement; run {min_seeds} seeds")
    if n_refits is not None and n_refits < min_refit_seeds:
        reasons.append(
            f"the refit was trained {n_refits} time(s), so its own variance is not in the band; rerun with "
            f"refit_per_seed=True and {min_refit_seeds} seeds"
        )
    ship = not reasons
    head = (f"{candidate} {c['mean']:.3f} [{cb[0]:.3f}, {cb[1]:.3f}] vs {base} {b['mean']:.3f} "
            f"[{bb[0]:.3f}, {bb[1]:.3f}] over {n_seeds} seed(s): gap {100 * gap:+.1f} F1 points")
    if ship:
        sentence = (f"Ship the {candidate} encoder: {head}, at least {100 * min_gap:.0f} points with bands "
                    "that do not overlap.")
    else:
        sentence = (f"Do not ship the {candidate} yet; keep the frozen off-the-shelf encoder ({base}): {head}; "
                    + "; ".join(reasons) + ".")
    return GapVerdict(base=base, candidate=candidate, gap=gap, base_mean=float(b["mean"]), base_band=bb,
                      candidate_mean=float(c["mean"]), candidate_band=cb, n_seeds=n_seeds, n_refits=n_refits,
                      bands_overlap=overlap, ship=ship, reasons=reasons, sentence=sentence, min_gap=min_gap)
