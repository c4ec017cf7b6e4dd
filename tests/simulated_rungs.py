"""Fake rungs of known mean, noise and cost (no model) for simulating decision-driven studies.

Every rung answers the same sealed test items. An item is answered correctly when a Gaussian copula
score (an item difficulty shared by every rung and seed, plus run-specific noise) falls under the run's
accuracy, so two rungs' errors overlap the way real models' do and paired comparisons mean something.
A network rung run at fidelity f < 1 scores ``gap * (1 - f) / 0.75`` below its full-budget mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Optional

import numpy as np

from adaptlab.evaluate.adaptive import Allocator, Cell, Observation, RungSpec, run_allocation

CLASSES = ["a", "b", "c", "d"]


@dataclass
class FakeRung:
    name: str
    mean: float  # full-budget accuracy (~ macro-F1 on balanced classes)
    seconds: float  # cost of one seed at the full budget
    kind: str = "network"
    seed_sd: float = 0.01
    gap: float = 0.0  # how much lower the screen fidelity (0.25) scores
    one_time: float = 0.0  # shared work paid by the first seed


class World:
    """A test set and a set of fake rungs; ``execute`` runs allocator cells."""

    def __init__(self, rungs: list[FakeRung], *, n_test: int = 400, rho: float = 0.7, seed: int = 0,
                 cost_noise: float = 0.1) -> None:
        self.rungs = {r.name: r for r in rungs}
        self.rng = np.random.default_rng(seed)
        self.y_true = np.array([CLASSES[i % len(CLASSES)] for i in range(n_test)], dtype=object)
        self.difficulty = self.rng.normal(size=n_test)
        self.rho = rho
        self.cost_noise = cost_noise
        self._seed_offsets: dict[tuple[str, int], float] = {}
        self._cdf = np.vectorize(NormalDist().cdf)

    def accuracy(self, rung: str, seed: int, fidelity: float) -> float:
        r = self.rungs[rung]
        key = (rung, seed)
        if key not in self._seed_offsets:
            self._seed_offsets[key] = float(self.rng.normal(0, r.seed_sd))
        low = r.gap * (1 - fidelity) / 0.75 if r.kind == "network" else 0.0
        return float(np.clip(r.mean - low + self._seed_offsets[key], 0.0, 1.0))

    def predictions(self, rung: str, seed: int, fidelity: float) -> np.ndarray:
        acc = self.accuracy(rung, seed, fidelity)
        noise = self.rng.normal(size=len(self.y_true))
        u = self._cdf(np.sqrt(self.rho) * self.difficulty + np.sqrt(1 - self.rho) * noise)
        wrong = u >= acc
        pred = self.y_true.copy()
        shift = self.rng.integers(1, len(CLASSES), size=len(pred))
        idx = np.array([CLASSES.index(y) for y in self.y_true])
        pred[wrong] = np.array(CLASSES, dtype=object)[(idx[wrong] + shift[wrong]) % len(CLASSES)]
        return pred

    def seconds(self, cell: Cell, first: bool) -> float:
        r = self.rungs[cell.rung]
        base = r.seconds * (cell.fidelity if r.kind == "network" else 1.0) + (r.one_time if first else 0.0)
        return float(base * (1 + self.rng.uniform(-self.cost_noise, self.cost_noise)))

    def execute(self, cells: list[Cell], ran: Optional[set] = None) -> list[Observation]:
        from adaptlab.metrics import score

        ran = ran if ran is not None else self.__dict__.setdefault("_ran", set())
        out = []
        for c in cells:
            pred = self.predictions(c.rung, c.seed, c.fidelity)
            f1 = score(self.y_true, pred, None, CLASSES, None)["f1"]
            out.append(Observation(c.rung, c.seed, c.fidelity, f1, self.seconds(c, c.rung not in ran), pred))
            ran.add(c.rung)
        return out

    def costs(self) -> dict[str, tuple[float, float]]:
        return {r.name: (r.one_time, r.seconds) for r in self.rungs.values()}

    def true_winner(self, margin: float = 0.02) -> str:
        """The ladder rule on the true full-budget means."""
        names = [n for n in ("tfidf", "probe", "refit", "lora", "unfreeze", "finetune", "lpft") if n in self.rungs]
        alloc = Allocator([RungSpec(n) for n in names], budget_seconds=1, seeds=[0, 1, 2])
        alloc.cfg = type(alloc.cfg)(margin=margin)
        pts = np.array([[self.rungs[n].mean for n in names]])
        return names[int(alloc.choice(pts, names)[0])]


def simulate(rungs: list[FakeRung], budget: float, *, seed: int = 0, seeds: int = 3, cost_error: float = 1.0,
             overhead: float = 0.0, **config) -> tuple[dict, "World"]:
    """Run an allocation on fake rungs. ``cost_error`` multiplies every cost prior (5: five times too high);
    ``overhead`` seconds are on the study's clock before the first run (encoding, gates), and the clock
    then advances by what each run took. ``world.allocator`` keeps the allocator for inspection."""
    from adaptlab.evaluate.adaptive import AdaptiveConfig

    world = World(rungs, seed=seed)
    costs = {name: (one * cost_error, per * cost_error) for name, (one, per) in world.costs().items()}
    clock = (lambda: overhead + sum(o.seconds for o in alloc.obs)) if overhead else None
    alloc = Allocator([RungSpec(r.name, r.kind) for r in rungs], budget_seconds=budget, seeds=list(range(seeds)),
                      y_true=world.y_true, classes=CLASSES, costs=costs, clock=clock,
                      config=AdaptiveConfig(seed=seed, **config))
    world.allocator = alloc
    return run_allocation(alloc, world.execute), world
