"""Decision-driven allocation: spend a study's compute budget where the decision can still change.

An exhaustive study runs every rung × every seed at full training budget. Given a time budget, the
:class:`Allocator` runs the study in rounds instead:

1. **cheap** — the rungs that cost seconds (tfidf, probe: no network training), every seed;
2. **screen** — one seed of each other rung, network rungs at a reduced *fidelity* (a fraction of their
   training steps), in order of expected value per second: the chance that the rung changes the
   decision (under a prior that the evidence so far updates) divided by its estimated cost;
3. **eliminate** — a rung whose upper confidence bound against the current leader (paired bootstrap
   over the same test items, plus seed noise and the uncertainty of a reduced-fidelity score) is below
   ``-margin`` cannot be the decision and is dropped, with the numbers;
4. **resolve** — the remaining runs (promote a screened rung to full fidelity, add a seed) are ranked by
   the probability that their outcome flips the provisional decision, per second; the provisional
   choice always gets the ``min_seeds`` full-fidelity seeds the decision rule demands;
5. **stop** when no affordable run could flip the decision with probability ≥ ``flip_threshold``
   (*settled*), or when nothing more fits in the budget (*budget spent*).

The provisional decision is the ladder rule of :func:`adaptlab.decide.decide` on point estimates: the
simplest rung that no more adapted rung beats by ``margin``, and the scratch baseline when the encoder
does not beat it. The final decision is still :func:`~adaptlab.decide.decide` on the stored evidence.

Everything here is plain numbers (no model), so the allocation can be tested on simulated rungs, and the
same reasoning names the next experiment of any study (:func:`best_next_run`).

Example:
    >>> alloc = Allocator([RungSpec("tfidf"), RungSpec("probe"), RungSpec("finetune", "network")],
    ...                   budget_seconds=600, seeds=[0, 1, 2], y_true=None,
    ...                   costs={"tfidf": (0, 2), "probe": (5, 1), "finetune": (0, 120)})
    >>> [(c.rung, c.seed, c.phase) for c in alloc.next_cells(3)]
    [('tfidf', 0, 'cheap'), ('probe', 0, 'cheap'), ('tfidf', 1, 'cheap')]
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any, Callable, Optional, Sequence

import numpy as np

from adaptlab.config import format_duration
from adaptlab.errors import ConfigError

# Ladder order and each network rung's cost per step relative to a full fine-tune: the one copy.
from adaptlab.rungs.ladder import LADDER, RELATIVE_STEP_COST, kind as _rung_kind, ladder_key as _ladder_key  # noqa: E402

SCRATCH = LADDER[0]
KINDS = ("cheap", "shared", "network")


@dataclass(frozen=True)
class AdaptiveConfig:
    """The knobs of a decision-driven study; every one has a default that suits a first study.

    Example:
        >>> AdaptiveConfig(margin=0.03).screen_fidelity
        0.25
    """

    margin: float = 0.02  # the decision rule's margin (Policy.margin)
    min_seeds: int = 3  # full-fidelity seeds the chosen rung needs (Policy.min_seeds)
    screen_fidelity: float = 0.25  # share of its training budget a network rung gets when screened
    error_rate: float = 0.05  # chance of dropping a rung that is truly within the margin of the leader
    flip_threshold: float = 0.05  # stop when no affordable run flips the decision with this probability
    seed_sd_prior: float = 0.02  # seed-to-seed std of a trained rung until two seeds are measured
    fidelity_gain: float = 0.02  # prior F1 gain from screen fidelity to the full budget
    fidelity_sd: float = 0.03  # prior uncertainty of that gain
    prior_sd: float = 0.08  # uncertainty of an unmeasured rung's full-fidelity F1
    n_boot: int = 400  # paired test-item resamples
    n_draws: int = 2000  # Monte Carlo draws of a run's possible outcomes
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("margin", "error_rate", "flip_threshold", "seed_sd_prior", "fidelity_sd", "prior_sd"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ConfigError.invalid(f"adaptive.{name}", v, "a number in [0, 1)")
        if not 0.0 < self.screen_fidelity <= 1.0:
            raise ConfigError.invalid("adaptive.screen_fidelity", self.screen_fidelity,
                                      "a share of the training budget in (0, 1], e.g. 0.25")
        if not isinstance(self.min_seeds, int) or self.min_seeds < 1:
            raise ConfigError.invalid("adaptive.min_seeds", self.min_seeds, "an integer >= 1")
        if self.n_boot < 100 or self.n_draws < 100:
            raise ConfigError.invalid("adaptive.n_boot/n_draws", (self.n_boot, self.n_draws), "integers >= 100")

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> "AdaptiveConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"unknown adaptive setting(s) {unknown}; allowed: {sorted(known)}.")
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RungSpec:
    """A rung as the allocator sees it. ``kind``: ``cheap`` (seconds per seed: all seeds up front),
    ``shared`` (a one-time cost shared by its seeds, e.g. the refit), ``network`` (trains the encoder:
    can run at reduced fidelity)."""

    name: str
    kind: str = "cheap"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError.invalid("kind", self.kind, f"one of {', '.join(KINDS)}")


@dataclass
class Cell:
    """One run to make: ``rung`` with ``seed`` at ``fidelity`` (1.0 = the full training budget)."""

    rung: str
    seed: int
    fidelity: float
    phase: str  # cheap | screen | promote | seed | confirm
    why: str
    estimate_seconds: Optional[float] = None
    round: int = 0
    flip_probability: Optional[float] = None
    basis: str = ""  # where estimate_seconds came from
    value_seconds: Optional[float] = None  # seconds that buy flip_probability (several runs' worth), else the run's


def _per_second(a: "Cell") -> float:
    """A candidate run's worth: the chance it changes the decision per second of what that takes."""
    return (a.flip_probability or 0.0) / max(a.value_seconds or a.estimate_seconds or 1.0, 1e-3)


@dataclass
class Observation:
    """What a run gave: its test F1 and per-item predictions (aligned with the allocator's ``y_true``)."""

    rung: str
    seed: int
    fidelity: float
    f1: float
    seconds: float
    predictions: Optional[np.ndarray] = None
    from_store: bool = False
    key: Optional[str] = None
    wall: Optional[float] = None  # wall-clock seconds the run took in this study (None: as ``seconds``)


@dataclass
class Estimate:
    """What is known of one rung's full-fidelity F1: a point, the variance of its difference to the leader
    split by source, and how it was obtained."""

    rung: str
    point: float
    var_items: float = 0.0  # paired test-item part (more seeds cannot shrink it)
    var_seed: float = 0.0  # seed part (shrinks with seeds)
    var_fidelity: float = 0.0  # a reduced-fidelity score projected to the full budget
    var_prior: float = 0.0  # not measured at all
    n_full: int = 0
    fidelity: float = 0.0  # highest fidelity measured (0: none)
    basis: str = ""

    @property
    def var(self) -> float:
        return self.var_items + self.var_seed + self.var_fidelity + self.var_prior


class Allocator:
    """Chooses the next runs of a study from the evidence so far; see the module docstring.

    ``costs`` maps a rung to its estimated (one-time seconds, seconds per seed at full fidelity), or to an
    object with ``estimate(fidelity, first=...)`` (:class:`adaptlab.decide.plan.RungCost`, which knows a
    network rung's steps and where early stopping ends it). Every trained run's measured ÷ estimated
    seconds corrects the estimates: a rung's own runs its own, and one measured rung every rung not run
    yet (:meth:`cost_correction`). ``clock`` returns the seconds the study has spent so far, everything
    included (encoding, gates, label checks): the budget is the user's clock; without it, the runs'
    seconds are added up. ``on_cost`` is told (rung, measured ÷ estimated) after every trained run.
    ``priors`` maps a rung to an expected F1 offset over the best cheap rung (the regime table's
    suggestion, say); the evidence of measured rungs updates it. ``y_true`` (the sealed test
    labels) makes the comparisons paired; without it they use the seed spread only.
    """

    def __init__(self, rungs: Sequence[RungSpec], *, budget_seconds: float, seeds: Sequence[int],
                 y_true: Optional[Sequence[str]] = None, classes: Optional[Sequence[str]] = None,
                 positive: Optional[str] = None, costs: Optional[dict[str, tuple[float, float]]] = None,
                 priors: Optional[dict[str, float]] = None, config: Optional[AdaptiveConfig] = None,
                 clock: Optional[Callable[[], float]] = None,
                 on_cost: Optional[Callable[[str, float], None]] = None) -> None:
        if budget_seconds <= 0:
            raise ConfigError.invalid("time_budget", budget_seconds, "a positive duration, e.g. 3h or 90min")
        self.specs = sorted(rungs, key=lambda s: _ladder_key(s.name))
        self.kind = {s.name: s.kind for s in self.specs}
        self.budget = float(budget_seconds)
        self.seeds = list(seeds)
        self.cfg = config or AdaptiveConfig()
        if len(self.seeds) < self.cfg.min_seeds:
            raise ConfigError.invalid("seeds", len(self.seeds), f"at least min_seeds={self.cfg.min_seeds} with a time budget")
        self.y_true = np.asarray(y_true, dtype=object) if y_true is not None else None
        self.classes = list(classes) if classes is not None else (
            sorted(set(self.y_true.tolist())) if self.y_true is not None else [])
        self.positive = positive
        self.cost_prior = dict(costs or {})
        self.priors = dict(priors or {})
        self.obs: list[Observation] = []
        self.cells: list[Cell] = []
        self.drops: dict[str, dict[str, Any]] = {}
        self.stop: Optional[dict[str, Any]] = None
        self.round = 0
        self._phase: Optional[str] = None
        self._reps: dict[int, np.ndarray] = {}
        self._weights: Optional[np.ndarray] = None
        self._z = NormalDist().inv_cdf
        self._rng = np.random.default_rng(self.cfg.seed)
        self._pending: list[Cell] = []
        self.clock = clock
        self.on_cost = on_cost  # told (rung, measured ÷ estimated) of every trained run, e.g. to keep it
        # (rung, full budget or not, measured ÷ prior estimate) of trained runs: a full seed's error (where
        # early stopping really ends it) is not a screen's (its steps are known), so each corrects its kind.
        self._ratios: list[tuple[str, bool, float]] = []

    def set_test_labels(self, y_true: Sequence[str], classes: Sequence[str], positive: Optional[str]) -> None:
        """The sealed test labels the runs are scored on (known once the first run is back)."""
        self.y_true = np.asarray(y_true, dtype=object)
        self.classes, self.positive = list(classes), positive
        self._reps.clear()
        self._weights = None

    # -- bookkeeping ----------------------------------------------------------------------------------
    @property
    def spent(self) -> float:
        if self.clock is not None:
            return float(self.clock())
        return float(sum(o.seconds for o in self.obs if math.isfinite(o.seconds)))

    def left(self) -> float:
        """Seconds of the budget not spent and not promised to runs in flight."""
        return self.budget - self.spent - sum(c.estimate_seconds or 0.0 for c in self._pending)

    def observe(self, cell: Cell, obs: Observation) -> None:
        """Record a finished run (read from the store or trained); a trained run teaches the cost model."""
        first = not self._of(obs.rung)
        self.obs.append(obs)
        self._pending = [c for c in self._pending if c is not cell]
        took = obs.wall if obs.wall is not None else obs.seconds
        raw = self._prior_seconds(obs.rung, obs.fidelity, first=first)
        if (not obs.from_store and self.kind.get(obs.rung) != "cheap" and raw and raw > 0
                and took is not None and math.isfinite(took) and took > 0):
            self._ratios.append((obs.rung, obs.fidelity >= 1.0, float(took) / raw))
            if self.on_cost is not None:
                self.on_cost(obs.rung, float(took) / raw)

    def _of(self, rung: str, fidelity: Optional[float] = None) -> list[Observation]:
        return [o for o in self.obs if o.rung == rung and (fidelity is None or abs(o.fidelity - fidelity) < 1e-9)]

    def _full(self, rung: str) -> list[Observation]:
        return self._of(rung, 1.0)

    def _planned(self, rung: str) -> list[Cell]:
        return [c for c in self.cells if c.rung == rung]

    # -- costs ----------------------------------------------------------------------------------------
    def _prior_seconds(self, rung: str, fidelity: float, *, first: bool) -> Optional[float]:
        """The cost prior's seconds of one run (no correction), or None without a prior."""
        prior = self.cost_prior.get(rung)
        if prior is None:
            return None
        if self.kind.get(rung) == "cheap":
            return self._pair(rung)[1]  # its one-time pass (the embedding) runs before the cells
        if hasattr(prior, "estimate"):
            return float(prior.estimate(fidelity, first=first))
        one, per = prior
        if self.kind.get(rung) == "network":
            return float(one + per * fidelity)
        return float((one if first else 0.0) + per)

    def cost_correction(self, rung: str, fidelity: float = 1.0) -> tuple[float, str]:
        """(factor, basis) by which the prior of ``rung`` at ``fidelity`` is corrected: the geometric mean of
        measured ÷ estimated over the first that has runs of: its own runs at that kind of budget (full or
        screen), every rung's at that kind (one measured rung corrects every unmeasured one), its own runs
        at any budget, every trained run; else 1."""
        full = fidelity >= 1.0
        kind = "full-budget" if full else "screen"
        tiers = ((f"its own {kind} run(s)", lambda n, f: n == rung and f == full),
                 (f"{kind} run(s) of the rungs measured", lambda n, f: f == full),
                 ("its own run(s)", lambda n, f: n == rung), ("the trained run(s)", lambda n, f: True))
        for whose, keep in tiers:
            use = [r for n, f, r in self._ratios if keep(n, f)]
            if use:
                x = float(np.exp(np.mean(np.log(use))))
                return x, f"the prior x {x:.2f} (measured ÷ estimated on {len(use)} of {whose})"
        return 1.0, "the prior"

    def _pair(self, rung: str) -> tuple[Optional[float], Optional[float]]:
        """The prior as (one-time seconds, seconds a seed at full fidelity), or (None, None)."""
        prior = self.cost_prior.get(rung)
        if prior is None:
            return None, None
        if hasattr(prior, "one_time"):
            return float(prior.one_time), float(prior.per_seed)
        one, per = prior
        return float(one), float(per)

    def _estimate_basis(self, rung: str, fidelity: float = 1.0) -> str:
        prior = self.cost_prior.get(rung)
        if prior is None:
            return "measured runs" if self._of(rung) else "another rung's measured cost per step"
        if self.kind[rung] == "cheap" or (self.kind[rung] == "shared" and self._of(rung)):
            return "measured runs" if self._of(rung) else (getattr(prior, "basis", "") or "the cost prior")
        what = getattr(prior, "basis", "") or "the cost prior"
        return f"{self.cost_correction(rung, fidelity)[1]}; {what}"

    def estimate_seconds(self, rung: str, fidelity: float) -> Optional[float]:
        """Estimated seconds of the next run of ``rung`` at ``fidelity`` (None: nothing to go on)."""
        kind = self.kind[rung]
        done = [o for o in self._of(rung) if math.isfinite(o.seconds)]  # NaN: a run whose cost is unknown
        if kind == "network" and rung in self.cost_prior:
            return self._prior_seconds(rung, fidelity, first=not done) * self.cost_correction(rung, fidelity)[0]
        if kind == "shared" and not done and rung in self.cost_prior:
            return self._prior_seconds(rung, 1.0, first=True) * self.cost_correction(rung, 1.0)[0]
        if kind == "network":
            if done:
                per_unit = float(np.mean([o.seconds / max(o.fidelity, 1e-6) for o in done]))
                return per_unit * fidelity
            # Scale a measured network rung by the relative cost of a training step.
            other = [o for o in self.obs if self.kind.get(o.rung) == "network" and math.isfinite(o.seconds)]
            if other:
                o = other[0]
                unit = o.seconds / max(o.fidelity, 1e-6) / RELATIVE_STEP_COST.get(o.rung, 1.0)
                return unit * RELATIVE_STEP_COST.get(rung, 1.0) * fidelity
            return None
        one, per = self._pair(rung)
        if done:
            first = done[0].seconds
            later = [o.seconds for o in done[1:]]
            if later:
                return float(np.mean(later))
            # The shared work (the refit's MLM training) was paid by the first seed.
            # Without an estimate of its per-seed part, a shared rung's next seed is costed like its first.
            return float(per) if per is not None and kind == "shared" else first
        if per is None:
            return None
        # A cheap rung's one-time work (the embedding pass) is done before the cells, on the study's clock.
        return float(per if kind == "cheap" and self.clock is not None else one + per)

    def affordable(self, estimate: Optional[float], reserve: float = 0.0) -> bool:
        """Whether a run of ``estimate`` seconds fits in what is left, keeping ``reserve`` seconds aside."""
        left = self.left() - reserve
        if estimate is None:
            return left > 0
        return estimate <= left + 1e-9

    # -- estimates ------------------------------------------------------------------------------------
    def _replicates(self, o: Observation) -> Optional[np.ndarray]:
        if self.y_true is None or o.predictions is None:
            return None
        if id(o) not in self._reps:
            from adaptlab.metrics import f1_replicates, weighted_f1

            pred = np.asarray(o.predictions, dtype=object)
            n = len(self.y_true)
            if self.cfg.n_boot * n <= 4_000_000:
                # One set of resample weights for every run: the same resamples pair the rungs, drawn once.
                if self._weights is None:
                    rng = np.random.default_rng(self.cfg.seed)
                    self._weights = rng.multinomial(n, np.full(n, 1.0 / n), size=self.cfg.n_boot).astype(np.float64)
                self._reps[id(o)] = weighted_f1(self._weights, self.y_true, pred, self.classes, self.positive)
            else:
                self._reps[id(o)] = f1_replicates(self.y_true, [pred], self.classes, self.positive,
                                                  n_boot=self.cfg.n_boot, seed=self.cfg.seed)[:, 0]
        return self._reps[id(o)]

    def _seed_var(self, rung: str) -> float:
        """Seed-to-seed variance of ``rung``: its own sample variance shrunk towards the pooled variance of
        its kind, itself shrunk towards the prior (two seeds alone can agree by chance)."""
        prior = (self.cfg.seed_sd_prior / (2 if self.kind[rung] == "cheap" else 1)) ** 2
        k = 2.0  # pseudo degrees of freedom of each prior
        dfs = [(len(self._full(r)) - 1, float(np.var([o.f1 for o in self._full(r)], ddof=1)))
               for r in self.kind if self.kind[r] == self.kind[rung] and r != rung and len(self._full(r)) >= 2]
        pooled = (k * prior + sum(d * v for d, v in dfs)) / (k + sum(d for d, _ in dfs))
        own = [o.f1 for o in self._full(rung)]
        if len(own) < 2:
            return pooled
        df = len(own) - 1
        return (k * pooled + df * float(np.var(own, ddof=1))) / (k + df)

    def fidelity_gain(self) -> tuple[float, float, str]:
        """(mean, sd, basis) of the F1 gain from screen fidelity to the full budget: the prior, updated by
        every rung measured at both (same seed)."""
        gains = []
        for r, kind in self.kind.items():
            if kind != "network":
                continue
            for o in self._full(r):
                low = [x for x in self._of(r) if x.fidelity < 1.0 and x.seed == o.seed]
                if low:
                    gains.append(o.f1 - low[0].f1)
        prior_m, prior_sd = self.cfg.fidelity_gain, self.cfg.fidelity_sd
        if not gains:
            return prior_m, prior_sd, f"prior {prior_m:+.3f} ± {prior_sd:.3f}"
        n = len(gains)
        m = (prior_m + sum(gains)) / (n + 1)
        spread = float(np.var(gains, ddof=1)) if n >= 2 else 0.0
        sd = math.sqrt(prior_sd ** 2 / (n + 1) + spread)
        return m, max(sd, 0.005), f"measured on {n} run(s): {', '.join(f'{g:+.3f}' for g in gains)} → {m:+.3f} ± {sd:.3f}"

    def _own_point(self, rung: str) -> Optional[tuple[float, list[Observation], float]]:
        """(point, the observations it rests on, their fidelity) of a measured rung."""
        full = self._full(rung)
        if full:
            return float(np.mean([o.f1 for o in full])), full, 1.0
        low = self._of(rung)
        if not low:
            return None
        f = max(o.fidelity for o in low)
        use = [o for o in low if o.fidelity == f]
        return float(np.mean([o.f1 for o in use])), use, f

    def _baseline(self) -> Optional[float]:
        cheap = [self._own_point(s.name) for s in self.specs if s.kind == "cheap"]
        cheap = [c[0] for c in cheap if c is not None]
        return max(cheap) if cheap else None

    def estimates(self) -> dict[str, Estimate]:
        """Every rung's estimate, with variances relative to the current leader."""
        gain_m, gain_sd, _ = self.fidelity_gain()
        raw: dict[str, Estimate] = {}
        used: dict[str, list[Observation]] = {}
        for s in self.specs:
            own = self._own_point(s.name)
            if own is None:
                continue
            point, obs, f = own
            e = Estimate(s.name, point, n_full=len(self._full(s.name)), fidelity=f)
            if f < 1.0:
                e.point += gain_m * (1.0 - f) / (1.0 - self.cfg.screen_fidelity if self.cfg.screen_fidelity < 1 else 1.0)
                e.var_fidelity = gain_sd ** 2
                e.basis = f"one run at {f:.0%} of the training budget, projected with the gain {gain_m:+.3f} ± {gain_sd:.3f}"
            else:
                e.basis = f"{len(obs)} full-budget seed(s)"
            e.var_seed = self._seed_var(s.name) / len(obs)
            raw[s.name] = e
            used[s.name] = obs
        # Unmeasured rungs: the prior, moved by what measured trained rungs show.
        base = self._baseline()
        trained = [raw[r].point for r in raw if self.kind[r] != "cheap"]
        for s in self.specs:
            if s.name in raw:
                continue
            sd = self.cfg.prior_sd
            if trained and base is not None:
                # Halfway between the best cheap rung and the trained rungs measured so far, and as uncertain
                # as they are far apart: one poor screen should lower the prior, not rule out every rung.
                t = float(np.mean(trained))
                point, sd = (base + t) / 2, math.sqrt(sd ** 2 + ((base - t) / 2) ** 2)
                basis = f"between the best cheap rung ({base:.3f}) and {len(trained)} measured trained rung(s) ({t:.3f})"
            elif base is not None:
                point, basis = base, f"the best cheap rung ({base:.3f})"
            else:
                point, basis = 0.5, "no evidence yet"
            offset = self.priors.get(s.name, 0.0)
            if offset:
                basis += f", {offset:+.3f} prior offset"
            raw[s.name] = Estimate(s.name, min(1.0, point + offset), var_prior=sd ** 2,
                                   basis=f"not run: {basis}, ± {sd:.2f}")
        leader = self.leader(raw)
        if leader is not None and leader in used and self.y_true is not None:
            ref = self._mean_reps(used[leader])
            for r, e in raw.items():
                if r == leader or r not in used:
                    continue
                mine = self._mean_reps(used[r])
                if ref is not None and mine is not None:
                    # Paired item noise of the difference, seeds held fixed.
                    e.var_items = float(np.var(mine - ref, ddof=1))
        return raw

    def _mean_reps(self, obs: list[Observation]) -> Optional[np.ndarray]:
        reps = [self._replicates(o) for o in obs]
        if any(r is None for r in reps):
            return None
        return np.mean(np.stack(reps, axis=1), axis=1)

    def active(self) -> list[str]:
        return [s.name for s in self.specs if s.name not in self.drops]

    def leader(self, est: dict[str, Estimate]) -> Optional[str]:
        measured = [r for r in self.active() if r in est and (est[r].n_full or est[r].fidelity)]
        return max(measured, key=lambda r: (est[r].point, -_ladder_key(r)[0])) if measured else None

    # -- the decision rule on point estimates -----------------------------------------------------------
    def choice(self, points: np.ndarray, names: list[str]) -> np.ndarray:
        """Index (into ``names``, ladder-sorted) of the rung the ladder rule picks, per row of ``points``."""
        m = self.cfg.margin - 1e-12
        adapted = [i for i, n in enumerate(names) if n != SCRATCH]
        if not adapted:
            return np.zeros(points.shape[0], dtype=int)
        chosen = np.full(points.shape[0], adapted[0])
        for j in adapted[1:]:
            beats = np.all(points[:, [j]] - points[:, :j] >= m, axis=1)
            chosen = np.where(beats, j, chosen)
        if SCRATCH in names:
            t = names.index(SCRATCH)
            worse = points[np.arange(points.shape[0]), chosen] - points[:, t] <= 0
            chosen = np.where(worse, t, chosen)
        return chosen

    def _measured(self, est: dict[str, Estimate], plus: Optional[str] = None) -> list[str]:
        """Active rungs with a measurement (and ``plus``): an unmeasured rung's prior must not block a flip."""
        # A dropped rung that already has the decision's seeds stays: the decision rule will see it.
        keep = [s.name for s in self.specs
                if s.name not in self.drops or s.name == plus or len(self._full(s.name)) >= self.cfg.min_seeds]
        return [r for r in keep if r in est and (est[r].n_full or est[r].fidelity or r == plus)]

    def provisional(self, est: dict[str, Estimate]) -> Optional[str]:
        """The rung the ladder rule picks from the measured rungs' point estimates."""
        names = self._measured(est)
        if not names:
            return None
        pts = np.array([[est[r].point for r in names]])
        return names[int(self.choice(pts, names)[0])]

    def flip_probability(self, est: dict[str, Estimate], rung: str, var_drop: float) -> float:
        """Chance that a run on ``rung`` which removes ``var_drop`` of its variance changes the provisional
        choice (the other rungs held at their point estimates)."""
        names = self._measured(est, plus=rung)
        now = self.provisional(est)
        if var_drop <= 0 or rung not in names:
            return 0.0
        pts = np.tile([est[r].point for r in names], (self.cfg.n_draws, 1))
        j = names.index(rung)
        pts[:, j] = np.clip(pts[:, j] + self._rng.normal(0.0, math.sqrt(var_drop), self.cfg.n_draws), 0.0, 1.0)
        picks = self.choice(pts, names)
        return float(np.mean(np.array(names, dtype=object)[picks] != now))

    # -- rounds ---------------------------------------------------------------------------------------
    def next_cells(self, n: int = 1) -> list[Cell]:
        """Up to ``n`` runs to make now (several for a parallel executor); ``[]`` when the study stops
        (then :attr:`stop` says why)."""
        if self.stop is not None:
            return []
        out: list[Cell] = []
        while len(out) < n:
            cell = self._next_cell()
            if cell is None:
                break
            cell.basis = cell.basis or self._estimate_basis(cell.rung, cell.fidelity)
            self.cells.append(cell)
            self._pending.append(cell)
            out.append(cell)
            if cell.phase not in ("cheap", "screen"):
                break  # resolving runs depend on each other's outcome: one at a time
        if not out and not self._pending and self.stop is None:
            self.stop = {"kind": "budget", "reason": "nothing more fits in the budget"}
        return out

    def _start_round(self, phase: str) -> None:
        if phase != self._phase:
            self._phase = phase
            self.round += 1

    def _next_cell(self) -> Optional[Cell]:
        cell = self._cheap_cell()
        if cell is None and not self._pending_of("cheap"):
            # While screens are in flight (a parallel executor), only more screens can start.
            cell = self._resolve_cell(screens_only=bool(self._pending))
        return cell

    def _pending_of(self, phase: str) -> list[Cell]:
        return [c for c in self._pending if c.phase == phase]

    def _cheap_cell(self) -> Optional[Cell]:
        for seed in self.seeds:
            for s in self.specs:
                if s.kind != "cheap" or s.name in self.drops:
                    continue
                if any(c.seed == seed for c in self._planned(s.name)):
                    continue
                est = self.estimate_seconds(s.name, 1.0)
                # The decision needs min_seeds of a cheap rung and they cost seconds: a budget spent before
                # them (a slow encoding pass) still gets them, never a study without evidence.
                if len(self._planned(s.name)) >= self.cfg.min_seeds and not self.affordable(est):
                    self._drop(s.name, "budget", f"its next seed (~{_secs(est)}) does not fit in the budget left")
                    continue
                self._start_round("cheap")
                return Cell(s.name, seed, 1.0, "cheap", "cheap rung: every seed (seconds once embeddings are cached)",
                            est, self.round)
        return None

    def _screen_actions(self, est: dict[str, Estimate]) -> list[Cell]:
        """One run of each rung not run yet: network rungs at the screen fidelity, the others in full."""
        out = []
        for s in self.specs:
            if s.kind == "cheap" or s.name in self.drops or self._planned(s.name):
                continue
            f = self.cfg.screen_fidelity if s.kind == "network" else 1.0
            secs = self.estimate_seconds(s.name, f)
            flip = self.flip_probability(est, s.name, est[s.name].var)
            where = f"{f:.0%} of its training budget" if f < 1 else "the full budget (later seeds share its cost)"
            out.append(Cell(s.name, self.seeds[0], f, "screen",
                            f"screen at {where}: flip probability {flip:.2f} for ~{_secs(secs)} "
                            f"(prior {est[s.name].point:.3f}: {est[s.name].basis})", secs, 0, flip))
        return out

    def _eliminate(self, est: dict[str, Estimate]) -> None:
        leader = self.leader(est)
        if leader is None:
            return
        contenders = [r for r in self.active() if r != leader and r in est and (est[r].n_full or est[r].fidelity)]
        if not contenders:
            return
        z = self._z(1 - self.cfg.error_rate / max(1, len(contenders)))
        for r in contenders:
            e = est[r]
            d = e.point - est[leader].point
            sd = math.sqrt(e.var + est[leader].var_seed + est[leader].var_fidelity)
            upper = d + z * sd
            if upper < -self.cfg.margin:
                self._drop(r, "eliminated", f"upper bound of {r} − {leader} is {upper:+.3f} < −{self.cfg.margin:.2f} "
                           f"(difference {d:+.3f}, SE {sd:.3f}, one-sided {1 - self.cfg.error_rate / len(contenders):.3f} "
                           f"bound over {len(contenders)} comparison(s))", estimate=e,
                           extra={"leader": leader, "diff": d, "se": sd, "upper": upper})

    def _resolve_cell(self, screens_only: bool = False) -> Optional[Cell]:
        est = self.estimates()
        if not screens_only:
            self._eliminate(est)
            est = self.estimates()
        chosen = self.provisional(est)
        actions = self._screen_actions(est)
        target = self._commit_target(est, chosen)
        if not screens_only:
            actions = self._with_commit(est, target, actions + self._run_actions(est))
        reserve = self._reserve(est, target)
        if reserve > self.left():
            # The leader's full seeds do not fit whatever else runs: keeping time for them would leave the
            # budget unspent, so what is left goes to the runs that can still change the decision.
            reserve = 0.0
        useful = [a for a in actions if a.flip_probability >= self.cfg.flip_threshold
                  and self.affordable(a.estimate_seconds, reserve=0.0 if a.rung == target else reserve)]
        best = max(useful, key=_per_second, default=None)
        if screens_only:
            if best is not None:
                self._start_round(best.phase)
                best.round = self.round
            return best
        need = self._decision_seed(est, chosen) if chosen is not None else None
        if best is None and need is not None:
            best = need if self.affordable(need.estimate_seconds) else self._low_confirm(est, chosen)
            if best is None:
                return self._halt("budget", chosen, f"the budget ran out before {chosen} had {self.cfg.min_seeds} "
                                  "full-budget seeds", actions)
        if best is None:
            top = max(actions, key=lambda a: a.flip_probability, default=None)
            if top is not None and top.flip_probability >= self.cfg.flip_threshold:
                return self._halt("budget", chosen, f"the budget is spent: the most useful next run ({top.rung} seed "
                                  f"{top.seed} at {top.fidelity:.0%}, flip probability {top.flip_probability:.2f}) needs "
                                  f"~{_secs(top.estimate_seconds)}, {_secs(self.budget - self.spent)} left", actions)
            p = top.flip_probability if top is not None else 0.0
            return self._halt("settled", chosen, f"no affordable run could flip the decision (largest flip "
                              f"probability {p:.3f} < {self.cfg.flip_threshold})", actions)
        self._start_round(best.phase if best.phase in ("screen",) else "resolve")
        best.round = self.round
        return best

    def _halt(self, kind: str, chosen: Optional[str], reason: str, actions: list[Cell]) -> None:
        """Stop, and say for every rung never run why not."""
        for a in actions:
            if a.phase != "screen":
                continue
            if a.flip_probability < self.cfg.flip_threshold:
                self._drop(a.rung, "cannot-flip", f"not run: even a good result could not change the decision "
                           f"(flip probability {a.flip_probability:.3f} < {self.cfg.flip_threshold})")
            else:
                self._drop(a.rung, "budget", f"not run: one screening run (~{_secs(a.estimate_seconds)}) does not fit "
                           f"in the {_secs(max(self.budget - self.spent, 0.0))} left")
        self.stop = {"kind": kind, "chosen": chosen, "reason": reason}
        return None

    def _run_actions(self, est: dict[str, Estimate]) -> list[Cell]:
        """The next run of every active rung; for a screened rung whose promotion does not fit in what is
        left, another seed at its screen fidelity too (cheaper evidence of the same kind)."""
        out = []
        for r in self.active():
            a = self._action(est, r)
            if a is not None:
                out.append(a)
            if a is None or (a.phase == "promote" and not self.affordable(a.estimate_seconds)):
                low = self._low_seed_action(est, r)
                if low is not None:
                    out.append(low)
        return out

    def _low_confirm(self, est: dict[str, Estimate], chosen: str) -> Optional[Cell]:
        """The leader's full seeds do not fit: seeds at its screen fidelity instead, up to ``min_seeds``, the
        evidence a provisional commitment rests on (None when none fits or it has them)."""
        low = self._low_seed_action(est, chosen)
        if low is None or len(self._of(chosen, low.fidelity)) >= self.cfg.min_seeds \
                or not self.affordable(low.estimate_seconds):
            return None
        low.why = (f"{chosen} leads, and its {self.cfg.min_seeds} full-budget seeds do not fit in the "
                   f"{_secs(max(self.left(), 0.0))} left: seed {len(self._of(chosen, low.fidelity)) + 1} at "
                   f"{low.fidelity:.0%} of its training budget, for a provisional commitment")
        return low

    def _low_seed_action(self, est: dict[str, Estimate], rung: str) -> Optional[Cell]:
        """One more seed of a rung only screened, at its screen fidelity: shrinks its seed noise for a
        quarter of a full seed's cost."""
        e = est[rung]
        if self._full(rung) or not e.fidelity or e.fidelity >= 1.0:
            return None
        low = self._of(rung, e.fidelity)
        free = [s for s in self.seeds if s not in {o.seed for o in low}]
        if not free:
            return None
        n, sv = len(low), self._seed_var(rung)
        flip = self.flip_probability(est, rung, sv / n - sv / (n + 1))
        return Cell(rung, free[0], e.fidelity, "screen-seed", f"seed {n + 1} of {rung} at {e.fidelity:.0%} of its "
                    f"training budget (a full seed does not fit): flip probability {flip:.2f} (now {e.point:.3f})",
                    self.estimate_seconds(rung, e.fidelity), 0, flip)

    def _action(self, est: dict[str, Estimate], rung: str) -> Optional[Cell]:
        """The next run of ``rung`` and its flip probability (None when it has nothing left to run)."""
        e = est[rung]
        full = self._full(rung)
        if not full and e.fidelity:
            drop = e.var_fidelity
            secs = self.estimate_seconds(rung, 1.0)
            flip = self.flip_probability(est, rung, drop)
            return Cell(rung, self.seeds[0], 1.0, "promote", f"promote to the full budget: flip probability "
                        f"{flip:.2f} (now {e.point:.3f} projected from {e.fidelity:.0%})", secs, 0, flip)
        if not e.fidelity and not full:
            return None  # unmeasured and not screened: the screen round decided against it
        used = {o.seed for o in full}
        free = [s for s in self.seeds if s not in used]
        if not free:
            return None
        n = len(full)
        sv = self._seed_var(rung)
        drop = sv / n - sv / (n + 1)
        secs = self.estimate_seconds(rung, 1.0)
        flip = self.flip_probability(est, rung, drop)
        return Cell(rung, free[0], 1.0, "seed", f"seed {n + 1} of {rung}: flip probability {flip:.2f} "
                    f"(now {e.point:.3f} over {n} seed(s))", secs, 0, flip)

    def _reserve(self, est: dict[str, Estimate], target: Optional[str]) -> float:
        """Seconds kept for the full-budget seeds the commit target (:meth:`_commit_target`) still needs:
        exploring must not leave it short of the seeds the decision rule demands."""
        if target is None or self.kind[target] == "cheap":
            return 0.0
        return self._missing_seconds(target)

    def _decision_seed(self, est: dict[str, Estimate], chosen: str) -> Optional[Cell]:
        """The run the provisional choice still needs before the decision rule can pick it."""
        a = self._action(est, chosen)
        if a is None or len(self._full(chosen)) >= self.cfg.min_seeds:
            return None
        a.phase = "confirm"
        a.why = (f"{chosen} leads the decision; the rule needs {self.cfg.min_seeds} full-budget seeds "
                 f"(has {len(self._full(chosen))})")
        return a

    def _with_commit(self, est: dict[str, Estimate], target: Optional[str], actions: list[Cell]) -> list[Cell]:
        """``actions`` with ``target``'s own next run valued as a step toward committing the decision to it.

        A trained rung that leads without the rule's full-budget seeds is only a provisional decision; its
        missing seeds turn it into the committed one, which changes the decision (from the rule's cheap
        fallback) unless they overturn its lead. Valued by its extra seed alone (the chance one more seed
        moves a point estimate past a margin) that run looked worthless, and twice a 40-minute Rotten Tomatoes
        study ended one seed short of committing to lora (+6 F1 over the probe)."""
        commit = self._commit_action(est, target, leads=target == self.provisional(est)) if target else None
        if commit is None:
            return actions
        own = [a for a in actions if a.rung == target and a.phase in ("promote", "seed")]
        return [a for a in actions if a not in own] + [commit]

    def _commit_target(self, est: dict[str, Estimate], chosen: Optional[str], *, fit: bool = True) -> Optional[str]:
        """The trained rung whose missing full-budget seeds would commit the decision: the provisional choice;
        or, when its seeds do not fit in what is left (``fit``), the trained rung most likely to be committed
        whose seeds do (a committed lora beats a provisional lpft with probe as the fallback)."""
        if chosen is None or self.kind[chosen] == "cheap":
            return None
        if not fit or self._missing_seconds(chosen) <= self.left():
            return chosen
        best, best_hold = None, 0.5
        for r in self.active():
            if r == chosen or self.kind[r] == "cheap" or not (est[r].n_full or est[r].fidelity):
                continue
            if self._decision_seed(est, r) is None or self._missing_seconds(r) > self.left():
                continue
            hold = self._commit_probability(est, r)
            if hold > best_hold:
                best, best_hold = r, hold
        return best or chosen

    def _missing_seconds(self, rung: str) -> float:
        """Seconds of the full-budget seeds ``rung`` still needs before the rule can commit to it."""
        missing = max(0, self.cfg.min_seeds - len(self._full(rung)))
        return missing * (self.estimate_seconds(rung, 1.0) or 0.0)

    def _commit_probability(self, est: dict[str, Estimate], rung: str) -> float:
        """Chance that, with its missing full-budget seeds, the decision rule commits to ``rung`` over the
        rungs that already have the rule's seeds (its remaining variance drawn, the others at their points)."""
        e, n = est[rung], len(self._full(rung))
        committed = [r for r in self._measured(est) if len(self._of_full_or_cheap(r)) >= self.cfg.min_seeds]
        names = [s.name for s in self.specs if s.name in committed or s.name == rung]
        if rung not in names or len(names) < 2:
            return 1.0
        # Variance the missing seeds remove: the projection from a screen, and seed noise down to min_seeds.
        drop = e.var_fidelity + e.var_seed * (1.0 - max(n, 1) / self.cfg.min_seeds)
        pts = np.tile([est[r].point for r in names], (self.cfg.n_draws, 1))
        j = names.index(rung)
        pts[:, j] = np.clip(pts[:, j] + self._rng.normal(0.0, math.sqrt(max(drop, 0.0)), self.cfg.n_draws), 0.0, 1.0)
        return float(np.mean(self.choice(pts, names) == j))

    def _of_full_or_cheap(self, rung: str) -> list[Observation]:
        return self._of(rung) if self.kind[rung] == "cheap" else self._full(rung)

    def _commit_action(self, est: dict[str, Estimate], target: str, *, leads: bool = True) -> Optional[Cell]:
        """``target``'s next full-budget seed, its flip probability the chance that its missing seeds commit
        the decision to it, over the seconds of all of them."""
        need = self._decision_seed(est, target)
        if need is None:
            return None
        missing = self.cfg.min_seeds - len(self._full(target))
        if not leads:
            need.why = (f"the leader's full-budget seeds do not fit in the {_secs(self.left())} left; {target}'s "
                        f"do (has {len(self._full(target))} of {self.cfg.min_seeds})")
        hold = self._commit_probability(est, target)
        need.flip_probability = hold
        need.value_seconds = missing * (need.estimate_seconds or 0.0) or None
        need.why += (f"; its {missing} missing seed(s) (~{_secs(need.value_seconds)}) commit the decision to it "
                     f"if it keeps its lead (chance {hold:.2f})")
        return need

    def _drop(self, rung: str, kind: str, reason: str, estimate: Optional[Estimate] = None,
              extra: Optional[dict[str, Any]] = None) -> None:
        if rung in self.drops:
            return
        self.drops[rung] = {"rung": rung, "kind": kind, "round": self.round, "reason": reason,
                            "point": estimate.point if estimate else None, **(extra or {})}

    # -- the record ------------------------------------------------------------------------------------
    def next_run(self) -> Optional[dict[str, Any]]:
        """The most useful run now, budget aside: the best flip probability per second among screens of
        rungs not run, promotions and extra seeds; else the seeds the provisional choice still needs for
        the decision rule; ``None`` when no run could change the decision."""
        est = self.estimates()
        chosen = self.provisional(est)
        actions = [a for a in self._screen_actions(est) if a.rung not in self.drops or self.drops[a.rung]["kind"] == "budget"]
        for r in self.drops:
            if self.drops[r]["kind"] == "budget" and not self._of(r) and all(a.rung != r for a in actions):
                f = self.cfg.screen_fidelity if self.kind[r] == "network" else 1.0
                flip = self.flip_probability(est, r, est[r].var)
                actions.append(Cell(r, self.seeds[0], f, "screen", f"not run for lack of budget: flip probability "
                                    f"{flip:.2f}", self.estimate_seconds(r, f), 0, flip))
        actions = self._with_commit(est, self._commit_target(est, chosen, fit=False), actions + self._run_actions(est))
        useful = [a for a in actions if a.flip_probability >= self.cfg.flip_threshold]
        best = max(useful, key=_per_second, default=None)
        if best is None and chosen is not None:
            best = self._decision_seed(est, chosen)
        if best is None:
            return None
        return {"rung": best.rung, "seed": best.seed, "fidelity": best.fidelity, "phase": best.phase,
                "flip_probability": best.flip_probability, "estimate_seconds": best.estimate_seconds,
                "why": best.why, "provisional": chosen}

    def exhaustive_seconds(self) -> Optional[float]:
        """Estimated cost of the exhaustive grid: every rung × every seed at the full budget."""
        total = 0.0
        for s in self.specs:
            one = self.estimate_seconds_first(s.name)
            per = self.estimate_seconds(s.name, 1.0) if self._of(s.name) else None
            if one is None:
                return None
            total += one + (len(self.seeds) - 1) * (per if per is not None else one)
        return total

    def estimate_seconds_first(self, rung: str) -> Optional[float]:
        done = self._of(rung)
        if self.kind[rung] == "network":
            return self.estimate_seconds(rung, 1.0)
        if done:
            return max(o.seconds for o in done)
        one, per = self._pair(rung)
        return None if per is None else one + per

    def record(self) -> dict[str, Any]:
        """The allocation as JSON-safe data: what ran, at which fidelity and why; what was dropped; why it stopped."""
        by_cell = {}
        for o in self.obs:
            by_cell[(o.rung, o.seed, round(o.fidelity, 6))] = o
        cells = []
        for c in self.cells:
            o = by_cell.get((c.rung, c.seed, round(c.fidelity, 6)))
            took = (o.wall if o.wall is not None else o.seconds) if o else None
            ratio = (took / c.estimate_seconds if o and not o.from_store and c.estimate_seconds
                     and took is not None and math.isfinite(took) else None)
            cells.append({"round": c.round, "phase": c.phase, "rung": c.rung, "seed": c.seed, "fidelity": c.fidelity,
                          "why": c.why, "estimate_seconds": c.estimate_seconds, "estimate_basis": c.basis,
                          "flip_probability": c.flip_probability, "seconds": o.seconds if o else None,
                          "wall_seconds": o.wall if o else None, "measured_over_estimate": ratio,
                          "f1": o.f1 if o else None, "from_store": o.from_store if o else None,
                          "key": o.key if o else None})
        est = self.estimates()
        gain = self.fidelity_gain()
        exhaustive = self.exhaustive_seconds()
        return {
            "budget_seconds": self.budget, "compute_seconds": self.spent, "exhaustive_seconds": exhaustive,
            "unspent_seconds": max(0.0, self.budget - self.spent), "clock": "wall" if self.clock else "runs",
            "cost_ratios": [{"rung": r, "full_budget": f, "measured_over_prior": x} for r, f, x in self._ratios],
            "ratio": (self.spent / exhaustive) if exhaustive else None, "seeds": list(self.seeds),
            "config": self.cfg.to_dict(), "cells": cells, "drops": list(self.drops.values()),
            # Settled means no run could change the decision: then there is no next run (one story).
            "stop": self.stop, "provisional": self.provisional(est),
            "next": None if (self.stop or {}).get("kind") == "settled" else self.next_run(),
            "fidelity_gain": {"mean": gain[0], "sd": gain[1], "basis": gain[2]},
            "estimates": {r: {"point": e.point, "sd": math.sqrt(e.var), "n_full": e.n_full, "fidelity": e.fidelity,
                              "basis": e.basis} for r, e in est.items()},
        }


def stop_reason(stop: Optional[dict[str, Any]]) -> str:
    """The reason an allocation stopped, without a leading ``"<kind>: "`` (studies stored before
    2026-12-03 repeat their kind there), e.g. ``"settled: no affordable run ..."`` -> ``"no affordable run ..."``."""
    stop = stop or {}
    text, kind = str(stop.get("reason") or "").strip(), str(stop.get("kind") or "")
    if kind and text.lower().startswith(f"{kind.lower()}:"):
        text = text[len(kind) + 1:].strip()
    return text


def _secs(seconds: Optional[float]) -> str:
    return format_duration(seconds)


def run_allocation(allocator: Allocator, execute: Callable[[list[Cell]], list[Observation]], *,
                   parallel: int = 1, on_round: Optional[Callable[[list[Cell]], None]] = None) -> dict[str, Any]:
    """Drive ``allocator`` to its stop: ``execute`` runs a list of cells and returns their observations.

    Example (fake rungs, no model):
        >>> alloc = Allocator([RungSpec("tfidf"), RungSpec("probe")], budget_seconds=100, seeds=[0, 1, 2])
        >>> rec = run_allocation(alloc, lambda cells: [Observation(c.rung, c.seed, c.fidelity,
        ...                      0.8 if c.rung == "tfidf" else 0.9, 1.0) for c in cells])
        >>> rec["stop"]["kind"], rec["provisional"], rec["compute_seconds"]
        ('settled', 'probe', 6.0)
    """
    while True:
        cells = allocator.next_cells(parallel)
        if not cells:
            break
        if on_round is not None:
            on_round(cells)
        for cell, obs in zip(cells, execute(cells)):
            allocator.observe(cell, obs)
    return allocator.record()


def kind_of(rung: str) -> str:
    """The allocator's kind of a rung known by name (see :func:`adaptlab.evaluate.study.adaptive_kind`)."""
    return _rung_kind(rung)


def best_next_run(rungs: dict[str, dict[str, Any]], *, y_true: Optional[Sequence[str]] = None,
                  classes: Optional[Sequence[str]] = None, positive: Optional[str] = None,
                  candidates: Sequence[str] = (), config: Optional[AdaptiveConfig] = None,
                  costs: Optional[dict[str, tuple[float, float]]] = None) -> Optional[dict[str, Any]]:
    """The next experiment of any study, by the allocator's value-per-cost reasoning.

    ``rungs`` maps a measured rung to ``{"f1_by_seed", "seeds", "predictions" (seed -> labels or None),
    "seconds" (mean per run, or None), "fidelity"}``; ``candidates`` are rungs not run yet that could be.

    Example:
        >>> nxt = best_next_run({"tfidf": {"f1_by_seed": [0.893]}, "probe": {"f1_by_seed": [0.803]},
        ...                      "finetune": {"f1_by_seed": [0.923], "seconds": 420.0}})
        >>> nxt["rung"], nxt["phase"]
        ('finetune', 'confirm')
    """
    cfg = config or AdaptiveConfig()
    names = list(dict.fromkeys([*rungs, *candidates]))
    n_seeds = max([cfg.min_seeds] + [len(r.get("f1_by_seed", [])) for r in rungs.values()])
    alloc = Allocator([RungSpec(n, kind_of(n)) for n in names], budget_seconds=1e12, seeds=list(range(n_seeds)),
                      y_true=y_true, classes=classes, positive=positive, costs=costs, config=cfg)
    for name, r in rungs.items():
        seeds = list(r.get("seeds") or range(len(r["f1_by_seed"])))
        preds = r.get("predictions") or {}
        for seed, f1 in zip(seeds, r["f1_by_seed"]):
            cell = Cell(name, seed, float(r.get("fidelity", 1.0)), "seed", "already run")
            alloc.cells.append(cell)
            p = preds.get(seed)
            secs = r.get("seconds")
            alloc.observe(cell, Observation(name, seed, cell.fidelity, float(f1), float("nan") if secs is None else float(secs),
                                            None if p is None else np.asarray(p, dtype=object)))
    return alloc.next_run()
