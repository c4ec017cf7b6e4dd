"""`RefitConfig` and the refit budget (steps, tokens, epochs or wall-clock)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from adaptlab.config import Budget
from adaptlab.encoders.longtext import check_long_text
from adaptlab.errors import ConfigError
from adaptlab.rungs.base import RungConfig
from adaptlab.rungs.runtime import check_mixed_precision

OBJECTIVES = ("mlm", "simcse")
PLANNED_OBJECTIVES = {"tsdae": "TSDAE denoising auto-encoder refit (not available in this version)"}
CORPUS_FILTERS = ("nearest-positive",)
LABELED_TEXTS = ("train+val", "train", "none")

_TOKEN_SCALE = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}


@dataclass(frozen=True)
class RefitBudget:
    """How long a refit trains: optimizer steps, tokens seen, epochs over the corpus, or seconds.

    Exactly one field is set.

    Example:
        >>> RefitBudget.parse("300steps").steps, RefitBudget.parse("5Mtokens").tokens
        (300, 5000000)
        >>> RefitBudget.parse("2h").seconds, RefitBudget.parse("1epoch").epochs
        (7200.0, 1.0)
    """

    steps: Optional[int] = None
    tokens: Optional[int] = None
    epochs: Optional[float] = None
    seconds: Optional[float] = None

    @classmethod
    def parse(cls, value: "str | int | Budget | RefitBudget | None", name: str = "refit.budget") -> Optional["RefitBudget"]:
        if value is None or isinstance(value, RefitBudget):
            return value
        if isinstance(value, Budget):
            return cls(steps=value.steps) if value.steps is not None else cls(seconds=value.seconds)
        if isinstance(value, bool):
            raise ConfigError.invalid(name, value, "a budget such as 300steps, 5Mtokens, 1epoch, 90min or 2h")
        if isinstance(value, int):
            value = f"{value}steps"
        raw = str(value).strip().lower().replace(" ", "").replace("_", "")
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmbg]?)(tokens?|toks?)", raw)
        if m:
            n = float(m.group(1)) * _TOKEN_SCALE[m.group(2)]
            if n < 1:
                raise ConfigError.invalid(name, value, "a positive number of tokens, e.g. 5Mtokens")
            return cls(tokens=int(n))
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(epochs?|ep)", raw)
        if m:
            if float(m.group(1)) <= 0:
                raise ConfigError.invalid(name, value, "a positive number of epochs, e.g. 1epoch")
            return cls(epochs=float(m.group(1)))
        try:
            b = Budget.parse(value)
        except ConfigError:
            raise ConfigError.invalid(
                name, value, "a budget such as 300steps, 5Mtokens, 1epoch, 90min or 2h"
            ) from None
        assert b is not None
        return cls.parse(b)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def __str__(self) -> str:
        if self.steps is not None:
            return f"{self.steps} steps"
        if self.tokens is not None:
            return f"{self.tokens:,} tokens"
        if self.epochs is not None:
            return f"{self.epochs:g} epoch(s)"
        return f"{self.seconds / 3600:.3g} h" if self.seconds and self.seconds >= 3600 else f"{self.seconds:g} s"


@dataclass
class RefitConfig(RungConfig):
    """Parameters of the `refit` rung: the self-supervised refit, then the frozen probe on top.

    Field groups: the refit objective and its corpus, the optimisation, the budget and its limit,
    checkpointing, and the linear head (same as ``probe``, so the two rows compare directly).

    Example:
        >>> from adaptlab.rungs import RefitConfig, get_rung
        >>> RefitConfig().objective, RefitConfig().mlm_probability
        ('mlm', 0.15)
        >>> get_rung("refit", {"objective": "simcse", "budget": "200steps"}).config.budget
        '200steps'
    """

    objective: str = field(default="mlm", metadata={"help": "refit objective: 'mlm' (masked LM, 15% masking "
                                                            "80/10/10) or 'simcse' (unsupervised contrastive)"})
    budget: Optional[str] = field(default=None, metadata={
        "help": "refit length: '300steps', '5Mtokens', '1epoch', '90min', '2h'. None: the study's --budget, "
                "else one epoch capped at default_max_steps"})
    default_max_steps: int = field(default=1000, metadata={"help": "cap of the default one-epoch budget"})
    max_hours: float = field(default=48.0, metadata={
        "help": "warn before training when the measured estimate exceeds this many hours (48 h: "
                "beyond it a scheduled rerun needs an engineer)"})
    max_seq_length: int = field(default=128, metadata={"help": "tokens per training text (longer ones are truncated)"})
    batch_size: int = field(default=32, metadata={"help": "texts per optimizer step"})
    lr: float = field(default=5e-5, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and LayerNorm)"})
    warmup_ratio: float = field(default=0.06, metadata={"help": "fraction of steps of linear warm-up, then linear decay to 0"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    mlm_probability: float = field(default=0.15, metadata={"help": "fraction of tokens masked (mlm)"})
    temperature: float = field(default=0.05, metadata={"help": "softmax temperature of the contrastive loss (simcse)"})
    refit_seed: int = field(default=0, metadata={"help": "seed of the shared refit (init of the MLM head, masking, data order)"})
    refit_per_seed: bool = field(default=False, metadata={
        "help": "one refit per study seed (refit seed = study seed) to measure the refit's own variance; "
                "default: one refit shared by every seed"})
    labeled_texts: str = field(default="train+val", metadata={
        "help": "labeled texts (never their labels) added to the unlabeled corpus: 'train+val' (the same for "
                "every seed, so one refit is shared), 'train', or 'none'"})
    transductive: bool = field(default=False, metadata={
        "help": "also refit on the test texts (never their labels); off by default"})
    corpus_filter: Optional[str] = field(default=None, metadata={
        "help": "None, or 'nearest-positive': keep the corpus_top_k unlabeled texts nearest (cosine, base encoder) "
                "to the positive-class training texts (all training texts for a multiclass task)"})
    corpus_top_k: int = field(default=5000, metadata={"help": "unlabeled texts kept by corpus_filter"})
    estimate_steps: int = field(default=3, metadata={"help": "timed warm-up passes used to estimate the refit time"})
    checkpoint_every: int = field(default=200, metadata={"help": "steps between checkpoints"})
    checkpoint_minutes: float = field(default=15.0, metadata={"help": "also checkpoint after this many minutes"})
    keep_checkpoint: bool = field(default=False, metadata={"help": "keep the last checkpoint after a finished refit"})
    C_grid: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0, 100.0], metadata={
        "help": "inverse regularisation strengths of the head (as in probe), chosen on validation F1 only"})
    embed_batch_size: int = field(default=32, metadata={"help": "encoding batch size of the frozen refit encoder"})
    long_text: str = field(default="truncate", metadata={
        "help": "how the frozen refit encoder reads texts longer than its window (as probe.long_text): truncate, "
                "head_tail[:HEAD_TOKENS], chunk_mean[:OVERLAP_TOKENS] or chunk_max[:OVERLAP_TOKENS]",
        "identity": "unless_default"})
    mixed_precision: str = field(default="no", metadata={
        "help": "'no' (float32), 'bf16' (autocast; GPUs since Ampere, and CPUs), 'fp16' (GPU, dynamic loss "
                "scaling; a run of max_skipped_steps overflowing steps stops it) or 'auto' (bf16 where native, "
                "checked by a study against a short float32 run)", "identity": "unless_default"})
    # The guard's patience changes no number of a run it does not stop.
    max_skipped_steps: int = field(default=25, metadata={
        "help": "fp16: stop with an error after this many consecutive steps skipped for non-finite gradients",
        "identity": False})

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str, fix: str = "") -> ConfigError:
            return ConfigError.invalid(f"refit.{name}", getattr(self, name), allowed, fix)

        if self.objective in PLANNED_OBJECTIVES:
            raise bad("objective", f"one of {list(OBJECTIVES)}", PLANNED_OBJECTIVES[self.objective] + ".")
        if self.objective not in OBJECTIVES:
            raise bad("objective", f"one of {list(OBJECTIVES)}")
        if self.budget is not None:
            RefitBudget.parse(self.budget)
        for name in ("default_max_steps", "max_seq_length", "batch_size", "corpus_top_k", "checkpoint_every",
                     "estimate_steps", "embed_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "an integer >= 1")
        if self.max_seq_length < 8:
            raise bad("max_seq_length", "an integer >= 8 (128 is the default)")
        if self.batch_size < 2 and self.objective == "simcse":
            raise bad("batch_size", "an integer >= 2 for simcse (in-batch negatives)")
        for name in ("lr", "max_hours", "max_grad_norm", "temperature", "checkpoint_minutes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise bad(name, "a positive number")
        if not 0.0 <= self.weight_decay < 1.0:
            raise bad("weight_decay", "a number in [0, 1)")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise bad("warmup_ratio", "a fraction in [0, 1)")
        if not 0.0 < self.mlm_probability < 1.0:
            raise bad("mlm_probability", "a fraction in (0, 1), 0.15 is standard")
        if self.labeled_texts not in LABELED_TEXTS:
            raise bad("labeled_texts", f"one of {list(LABELED_TEXTS)}")
        if self.corpus_filter is not None and self.corpus_filter not in CORPUS_FILTERS:
            raise bad("corpus_filter", f"None or one of {list(CORPUS_FILTERS)}")
        if not self.C_grid or any(not isinstance(c, (int, float)) or c <= 0 for c in self.C_grid):
            raise bad("C_grid", "a non-empty list of positive numbers")
        if not isinstance(self.refit_seed, int) or isinstance(self.refit_seed, bool):
            raise bad("refit_seed", "an integer")
        check_mixed_precision(self.mixed_precision, "refit.mixed_precision")
        self.long_text = check_long_text(self.long_text, "refit.long_text")
        if isinstance(self.max_skipped_steps, bool) or not isinstance(self.max_skipped_steps, int) \
                or self.max_skipped_steps < 1:
            raise bad("max_skipped_steps", "an integer >= 1")

    def training_identity(self) -> dict[str, Any]:
        """The fields that change the refit weights (part of the refit's content key)."""
        keys = ("objective", "max_seq_length", "batch_size", "lr", "weight_decay", "warmup_ratio", "max_grad_norm")
        ident = {k: getattr(self, k) for k in keys}
        if self.objective == "mlm":
            ident["mlm_probability"] = self.mlm_probability
        if self.objective == "simcse":
            ident["temperature"] = self.temperature
        if self.mixed_precision != "no":  # float32 refits keep the keys they had before mixed precision
            ident["mixed_precision"] = self.mixed_precision
        return ident
