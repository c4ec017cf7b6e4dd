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
        """A budget from ``"500steps"``, ``"90min"``, ``"2h"`` or an int (steps); None and budgets pass through."""
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
        """The budget as JSON-safe data: ``{"steps": ..., "seconds": ...}`` (None where unset)."""
        return {"steps": self.steps, "seconds": self.seconds}


SPLIT_STRATEGIES = ("auto", "stratified", "group", "near-dup", "time")
# "auto": bf16 where the hardware runs it natively, else fp32 (adaptlab.encoders.fast.resolve_precision).
ENCODE_PRECISIONS = ("fp32", "bf16", "int8", "auto")
# The training loops' autocast ("auto" gated per rung); adaptlab.rungs.runtime checks rung settings against it.
TRAINING_PRECISIONS = ("no", "bf16", "fp16", "auto")
EXECUTORS = ("inprocess", "ray")
_RESOURCE_KEYS = ("cpus", "gpus", "memory")
_MEMORY_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
                 "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class _DefaultRungs(list):
    """``StudyConfig.rungs`` when the caller named none: a plain list that remembers it was the default
    (``StudyConfig.rungs_defaulted``), also in a copy (``dataclasses.replace``), so a study given a time
    budget can offer the ladder (``adaptlab.rungs.ladder.default_rungs``) in its place."""


def default_home() -> Path:
    """Where the run store and caches live: $ADAPTLAB_HOME, else ./adaptlab-runs.

    Example:
        >>> import os
        >>> from adaptlab.config import default_home
        >>> os.environ["ADAPTLAB_HOME"] = "/data/adaptlab"
        >>> default_home().as_posix()
        '/data/adaptlab'
        >>> del os.environ["ADAPTLAB_HOME"]
        >>> default_home().name                 # the default: ./adaptlab-runs
        'adaptlab-runs'
    """
    return Path(os.environ.get("ADAPTLAB_HOME", "adaptlab-runs"))


@dataclass
class StudyConfig:
    """The grid rungs x seeds on one split, and how it is evaluated.

    ``rungs`` left out (or None) is the default: ``tfidf`` and ``probe`` (the ids of such studies are
    those of every earlier version). With a time budget a :class:`~adaptlab.evaluate.Study` replaces that
    default by the ladder, :func:`adaptlab.rungs.ladder.default_rungs` (``rungs_defaulted`` says it may):
    every rung that runs here but ``refit``, which needs unlabeled texts the configuration does not see;
    name the rungs (``refit`` among them) to choose them.

    Example:
        >>> StudyConfig(rungs=["tfidf", "probe"], seeds=3).seed_values
        [0, 1, 2]
        >>> StudyConfig().rungs, StudyConfig().rungs_defaulted, StudyConfig(rungs="tfidf,probe").rungs_defaulted
        (['tfidf', 'probe'], True, False)
    """

    rungs: Optional[list[str]] = None
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
    # Precision of the *frozen* encoder (probe-like rungs): "bf16" / "int8" (and "auto" where it picks bf16)
    # are used only if the first seed's validation F1 stays within `precision_tolerance` (a fraction: 0.005 =
    # 0.5 F1 points) of fp32. "auto" (bf16 where native, else fp32) is the default; the study id hashes what
    # it became (`identity`), so an auto study that ran in fp32 is the fp32 study of earlier versions.
    encode_precision: str = "auto"
    precision_tolerance: float = 0.005
    # The tolerance's first name (int8 was the only fast path), still accepted: folded into
    # precision_tolerance. `to_dict` writes the tolerance under this name so study ids stay as they were.
    int8_tolerance: Optional[float] = None
    # A whole-study time budget ("3h", "90min"): the study runs in rounds and spends it where the decision
    # can still change (adaptlab.evaluate.adaptive). None: the exhaustive grid rungs x seeds.
    time_budget: Optional[str] = None
    adaptive: dict[str, Any] = field(default_factory=dict)  # AdaptiveConfig overrides (margin, screen_fidelity ...)
    # The study's label check (estimated label noise of the train pool) reads at most this many rows, a
    # stratified sample seeded by test_seed above it. None: the default, 20,000.
    label_check_max_rows: Optional[int] = None
    # Precision of the rungs that train the encoder (refit, lora, unfreeze, finetune, lpft) whose rung_params
    # do not set their own `mixed_precision`. "auto" (the default): bf16 where the hardware runs it natively
    # and a short float32 run on the first seed agrees within `precision_tolerance`, else float32
    # (adaptlab.evaluate.training_precision). The study id hashes what it became (`identity`).
    mixed_precision: str = "auto"

    def __post_init__(self) -> None:
        if self.rungs is None or isinstance(self.rungs, _DefaultRungs):
            self.rungs = _DefaultRungs(["tfidf", "probe"])
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
        if self.encode_precision not in ENCODE_PRECISIONS:
            raise ConfigError.invalid("encode_precision", self.encode_precision, f"one of {', '.join(ENCODE_PRECISIONS)}")
        if self.mixed_precision not in TRAINING_PRECISIONS:
            raise ConfigError.invalid("mixed_precision", self.mixed_precision, f"one of {', '.join(TRAINING_PRECISIONS)}",
                                      "'auto' (the default) trains in bf16 where the hardware runs it natively")
        if self.time_budget is not None:
            parse_duration(self.time_budget, "time_budget")
            need = (self.adaptive or {}).get("min_seeds", 3) if isinstance(self.adaptive, dict) else 3
            if self.seeds < need:
                raise ConfigError.invalid("seeds", self.seeds, f"at least {need} with a time budget (the decision needs "
                                          f"{need} seeds of the rung it picks); --seeds is the most a rung gets")
        cap = self.label_check_max_rows
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 100):
            raise ConfigError.invalid("label_check_max_rows", cap, "an integer >= 100 (default 20,000)")
        if not isinstance(self.adaptive, dict):
            raise ConfigError.invalid("adaptive", self.adaptive, 'a dict of adaptive settings, e.g. {"margin": 0.03}')
        tol_name = "precision_tolerance"
        if self.int8_tolerance is not None:
            old, self.int8_tolerance, tol_name = self.int8_tolerance, None, "int8_tolerance"
            if self.precision_tolerance not in (0.005, old):
                raise ConfigError.invalid("int8_tolerance", old, f"left out: precision_tolerance="
                                          f"{self.precision_tolerance} is its new name; give only that")
            self.precision_tolerance = old
        tol = self.precision_tolerance
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0.0 <= tol < 1.0:
            raise ConfigError.invalid(
                tol_name, tol, "an F1 difference as a fraction in [0, 1), e.g. 0.005 for 0.5 F1 points"
            )

    @property
    def rungs_defaulted(self) -> bool:
        """Whether ``rungs`` is the default (none were named): a study with a time budget offers the ladder
        in its place (:func:`adaptlab.rungs.ladder.default_rungs`)."""
        return isinstance(self.rungs, _DefaultRungs)

    @property
    def seed_values(self) -> list[int]:
        """The seeds a study runs: ``0 .. seeds - 1``."""
        return list(range(self.seeds))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as stored (and hashed into the study id); unset later fields are left out."""
        d = dataclasses.asdict(self)
        d["rungs"] = list(d["rungs"])
        # The tolerance under the name study ids were first computed with.
        d["int8_tolerance"] = d.pop("precision_tolerance")
        # Fields added with the decision-driven study stay out while unset: study ids of earlier studies hold.
        for name in ("time_budget", "adaptive", "label_check_max_rows"):
            if not d[name]:
                d.pop(name)
        return d

    def identity(self, encode_precision_used: Optional[str] = None,
                 training_precision_used: Optional[dict[str, str]] = None) -> dict[str, Any]:
        """What the study id hashes: :meth:`to_dict`, with each ``"auto"`` replaced by what it became.

        ``auto`` is the default of both precisions, and it means fp32 on a machine without native bf16 (or
        when the gate refuses bf16): that study is the fp32 study, under the fp32 study's id, so results
        stored before ``auto`` became the default stay found. Where it became bf16, the id is the one of the
        study that asked for bf16. ``training_precision_used`` maps each training rung whose precision was
        the study's ``mixed_precision`` or ``"auto"`` to what it trained in; it is hashed as if given in
        ``rung_params``, the form earlier versions stored, and ``mixed_precision="no"`` (float32, every rung's
        own default) is left out.

        Example:
            >>> cfg = StudyConfig(rungs=["tfidf", "probe"])
            >>> cfg.encode_precision, cfg.mixed_precision
            ('auto', 'auto')
            >>> ident = cfg.identity("fp32")  # what a study of earlier versions hashed
            >>> ident["encode_precision"], "mixed_precision" in ident, ident == StudyConfig(encode_precision="fp32").identity()
            ('fp32', False, True)
            >>> cfg.identity("bf16")["encode_precision"]
            'bf16'
            >>> StudyConfig(rungs=["probe", "lora"]).identity("fp32", {"lora": "bf16"})["rung_params"]
            {'lora': {'mixed_precision': 'bf16'}}
        """
        d = self.to_dict()
        if d["encode_precision"] == "auto":
            d["encode_precision"] = encode_precision_used or "fp32"
        d.pop("mixed_precision", None)
        params = {name: dict(p) for name, p in (d.get("rung_params") or {}).items()}
        for name, used in (training_precision_used or {}).items():
            params.setdefault(name, {})["mixed_precision"] = used
        for name in list(params):
            if params[name].get("mixed_precision") == "no":
                del params[name]["mixed_precision"]
            if params[name].get("long_text") == "truncate":  # the default: ids of studies before long_text hold
                del params[name]["long_text"]
            if not params[name]:
                del params[name]
        d["rung_params"] = params
        return d


def parse_duration(text: "str | float | int", name: str = "time_budget") -> float:
    """Seconds from a duration: ``3h``, ``90min``, ``2 CPU hours``, ``1.5 hours``, ``45s`` or a number of seconds.

    Example:
        >>> parse_duration("3h"), parse_duration("90 min"), parse_duration("2 CPU hours"), parse_duration(30)
        (10800.0, 5400.0, 7200.0, 30.0)
    """
    import re

    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text > 0:
            return float(text)
        raise ConfigError.invalid(name, text, "a positive duration, e.g. 3h, 90min, 2 CPU hours")
    units = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60, "minute": 60,
             "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600, "d": 86400,
             "day": 86400, "days": 86400}
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:cpu|gpu)?\s*([a-z]+)?\s*", str(text).lower())
    if not m or (m.group(2) or "s") not in units or float(m.group(1)) <= 0:
        raise ConfigError.invalid(name, text, "a positive duration, e.g. 3h, 90min, 2 CPU hours")
    return float(m.group(1)) * units[m.group(2) or "s"]


def format_duration(seconds: "float | None", digits: "tuple[int, int, int]" = (0, 1, 1),
                    unknown: str = "unknown time") -> str:
    """Seconds in the unit a reader wants: seconds under 2 min, minutes under 2 h, then hours.

    ``digits`` are the decimals of the three units. ``None`` (a cost never measured) reads ``unknown``.

    Example:
        >>> format_duration(95), format_duration(5400), format_duration(None), format_duration(30, (1, 1, 2))
        ('95 s', '90.0 min', 'unknown time', '30.0 s')
    """
    if seconds is None:
        return unknown
    s, m, h = digits
    if seconds < 120:
        return f"{seconds:.{s}f} s"
    if seconds < 7200:
        return f"{seconds / 60:.{m}f} min"
    return f"{seconds / 3600:.{h}f} h"


def parse_memory(value: "str | int | float | None", name: str = "memory") -> Optional[int]:
    """Bytes from ``4GB``, ``512MiB``, ``2e9`` or an int; ``None`` stays ``None`` (no memory request).

    Example:
        >>> parse_memory("4GB"), parse_memory("512MiB"), parse_memory(1000), parse_memory(None)
        (4000000000, 536870912, 1000, None)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError.invalid(name, value, "a size such as 4GB, 512MiB or a number of bytes")
    if isinstance(value, (int, float)):
        n = float(value)
    else:
        import re

        m = re.fullmatch(r"(\d+(?:\.\d+)?(?:e\d+)?)([kmgt]i?b|b)?", str(value).strip().lower().replace(" ", ""))
        if not m:
            raise ConfigError.invalid(name, value, "a size such as 4GB, 512MiB or a number of bytes")
        n = float(m.group(1)) * _MEMORY_UNITS[m.group(2) or ""]
    if n <= 0:
        raise ConfigError.invalid(name, value, "a positive size such as 4GB, 512MiB or a number of bytes")
    return int(n)


@dataclass
class ExecutorConfig:
    """Where a study's (rung, seed) jobs run. Not part of the study's identity: it changes no number.

    ``kind="inprocess"`` (the default) runs the jobs one after the other in this process.
    ``kind="ray"`` sends each job to Ray with its resource request; ``address=None`` starts a local
    Ray instance, ``"auto"`` joins the cluster this machine belongs to, ``"ray://host:10001"`` goes
    through Ray Client. A job that fails (exception, killed worker, lost node) is resubmitted up to
    ``max_retries`` times. ``cpus``/``gpus``/``memory`` are the request of every job;
    ``rung_resources`` overrides them per rung, e.g. ``{"refit": {"gpus": 1, "memory": "16GB"}}``.
    ``runtime_env`` is handed to ``ray.init`` as is (e.g. ``{"pip": ["adaptlab==0.1.0"]}``).

    Example:
        >>> ExecutorConfig(kind="ray", rung_resources={"finetune": {"gpus": 1}}).resources_for("finetune")
        {'num_cpus': 1.0, 'num_gpus': 1.0}
        >>> ExecutorConfig(kind="ray", memory="2GB").resources_for("probe")["memory"]
        2000000000
    """

    kind: str = "inprocess"
    address: Optional[str] = None
    max_retries: int = 2
    cpus: float = 1.0
    gpus: float = 0.0
    memory: "str | int | None" = None
    rung_resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    runtime_env: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError.invalid("executor", self.kind, f"one of {', '.join(EXECUTORS)}")
        if self.address is not None:
            if not isinstance(self.address, str) or not self.address.strip():
                raise ConfigError.invalid("ray_address", self.address, "'auto', 'ray://host:port', 'host:port' or None")
            if self.kind != "ray":
                raise ConfigError.invalid("ray_address", self.address, "no address with executor='inprocess'",
                                          "Add --executor ray, or drop --address.")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError.invalid("max_retries", self.max_retries, "an integer >= 0")
        self._check_request("", {"cpus": self.cpus, "gpus": self.gpus, "memory": self.memory})
        if not isinstance(self.rung_resources, dict):
            raise ConfigError.invalid("rung_resources", self.rung_resources, 'a dict such as {"refit": {"gpus": 1}}')
        for rung, req in self.rung_resources.items():
            if not isinstance(req, dict):
                raise ConfigError.invalid(f"rung_resources[{rung!r}]", req, 'a dict such as {"gpus": 1}')
            unknown = sorted(set(req) - set(_RESOURCE_KEYS))
            if unknown:
                raise ConfigError.invalid(f"rung_resources[{rung!r}]", req, f"keys among {', '.join(_RESOURCE_KEYS)}")
            self._check_request(f"rung_resources[{rung!r}].", req)
        if self.runtime_env is not None and not isinstance(self.runtime_env, dict):
            raise ConfigError.invalid("runtime_env", self.runtime_env, "a dict (Ray's runtime_env) or None")

    @staticmethod
    def _check_request(prefix: str, req: dict[str, Any]) -> None:
        for key in ("cpus", "gpus"):
            if key in req:
                v = req[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                    raise ConfigError.invalid(f"{prefix}{key}", v, "a number >= 0 (fractions such as 0.5 share a device)")
        if "memory" in req:
            parse_memory(req["memory"], f"{prefix}memory")

    def resources_for(self, rung: str) -> dict[str, Any]:
        """Ray task options (``num_cpus``, ``num_gpus``, ``memory`` in bytes) for one job of ``rung``."""
        req = {"cpus": self.cpus, "gpus": self.gpus, "memory": self.memory, **self.rung_resources.get(rung, {})}
        out: dict[str, Any] = {"num_cpus": float(req["cpus"]), "num_gpus": float(req["gpus"])}
        memory = parse_memory(req["memory"])
        if memory is not None:
            out["memory"] = memory
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict (JSON-safe)."""
        return dataclasses.asdict(self)
