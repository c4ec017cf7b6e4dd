"""Study configuration, typed and validated once at the edge (CLI, API, web UI all go through here)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from adaptlab.errors import ConfigError

_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Budget:
    """A training budget in optimizer steps or wall-clock seconds, equal for every rung of a study.

    Example:
        >>> Budget.parse("500steps"), Budget.parse("30min").seconds, Budget.parse("2h").seconds
        (Budget(steps=500, seconds=None), 1800.0, 7200.0)
    """

    steps: Optional[int] = None
    seconds: Optional[float] = None

    @classmethod
    def parse(cls, text: "str | int | Budget | None") -> Optional["Budget"]:
        if text is None or isinstance(text, Budget):
            return text
        if isinstance(text, int):
            return cls(steps=text)
        raw = str(text).strip().lower().replace(" ", "")
        import re

        m = re.fullmatch(r"(\d+(?:\.\d+)?)(steps?|s|sec|min|m|h|d)?", raw)
        if not m or float(m.group(1)) <= 0:
            raise ConfigError.invalid(
                "budget", text, "a positive number of steps or a duration, e.g. 500steps, 90s, 30min, 2h, 4d"
            )
        value, unit = float(m.group(1)), m.group(2) or "steps"
        if unit.startswith("step"):
            return cls(steps=int(value))
        return cls(seconds=value * _UNITS[unit])

    def __str__(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else f"{self.seconds:g} s"

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "seconds": self.seconds}


SPLIT_STRATEGIES = ("auto", "stratified", "group", "near-dup", "time")


def default_home() -> Path:
    """Where the run store and caches live: $ADAPTLAB_HOME, else ./adaptlab-runs."""
    return Path(os.environ.get("ADAPTLAB_HOME", "adaptlab-runs"))


@dataclass
class StudyConfig:
    """The grid rungs x seeds on one split, and how it is evaluated.

    Example:
        >>> StudyConfig(rungs=["tfidf", "probe"], seeds=3).seed_values
        [0, 1, 2]
    """

    rungs: list[str] = field(default_factory=lambda: ["tfidf", "probe"])
    seeds: int = 5
    split: str = "auto"
    test_size: float = 0.2
    val_size: float = 0.2
    test_seed: int = 0
    encoder: Optional[str] = None
    positive_label: Optional[str] = None
    near_dup_threshold: float = 0.8
    n_boot: int = 1000
    rung_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: Optional[str] = None  # training budget for network-training rungs, e.g. "500steps", "30min"
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.rungs, str):
            self.rungs = [r.strip() for r in self.rungs.split(",") if r.strip()]
        if not self.rungs:
            raise ConfigError.invalid("rungs", self.rungs, "at least one rung, e.g. tfidf,probe")
        if len(set(self.rungs)) != len(self.rungs):
            raise ConfigError.invalid("rungs", ",".join(self.rungs), "each rung once")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError.invalid("seeds", self.seeds, "an integer >= 1 (5 is the default; 3 is the minimum to ship on)")
        if self.split not in SPLIT_STRATEGIES:
            raise ConfigError.invalid("split", self.split, f"one of {', '.join(SPLIT_STRATEGIES)}")
        for name in ("test_size", "val_size"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 < v < 1.0):
                raise ConfigError.invalid(name, v, "a fraction strictly between 0 and 1, e.g. 0.2")
        if not 0.0 < self.near_dup_threshold <= 1.0:
            raise ConfigError.invalid("near_dup_threshold", self.near_dup_threshold, "a Jaccard similarity in (0, 1]")
        if self.budget is not None:
            Budget.parse(self.budget)  # raises ConfigError naming the field
        if self.n_boot < 100:
            raise ConfigError.invalid("n_boot", self.n_boot, "an integer >= 100")

    @property
    def seed_values(self) -> list[int]:
        return list(range(self.seeds))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
