"""The diagnostic thresholds of the refit decision (frozen encoder vs domain MLM refit), in one place.

The decision engine reads them from here; their sources are in :mod:`adaptlab.decide.references`.
"""
from __future__ import annotations

#: Ship the refit only if its mean beats the frozen probe by at least this much (2 F1 points)...
MIN_PROBE_GAP = 0.02
#: ...with bands that do not overlap, over at least this many seeds (one run is a draw, not a measurement).
MIN_SEEDS = 3
#: The refit itself must have been trained with this many seeds for its own variance to be in the band.
MIN_REFIT_SEEDS = 3
#: MMD permutation-test level: p >= this means "no detectable difference" (shift ~ 0, refit did not move).
MMD_ALPHA = 0.05
#: Texts per side of an MMD test ("1000 held-out abstracts") and permutations.
MMD_N = 1000
MMD_PERMUTATIONS = 200
#: Beyond this, a refit is an engineer-in-the-loop task, not a coordinator's quarterly rerun.
MAX_REFIT_HOURS = 48.0
