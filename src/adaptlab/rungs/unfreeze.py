"""`unfreeze`: train the top blocks of the encoder (and the head), keep the lower ones frozen.

The ladder's "partial unfreeze of later blocks": lower layers hold the general language knowledge
and stay bit-identical; the top ``top_k`` blocks adapt with discriminative learning rates (head LR,
backbone LR for the top block, times ``layer_decay`` per block below).

``schedule="gradual"`` is progressive unfreezing (ULMFiT-style): stage 1 trains the head
only, then the top ``blocks_per_stage`` blocks, then more, then everything including the embeddings.
Each stage runs until validation F1 stops improving (``stage_patience`` evaluations) or for
``stage_max_epochs``, and the next stage starts from the best weights so far. The stages and why
each ended are recorded in ``diagnostics_["stages"]``.

The three freezing scenarios on the ladder:

* whole network frozen (a fixed feature extractor): the ``probe`` rung;
* backbone frozen with a trainable head: ``unfreeze`` with ``top_k=0`` (``head="mlp"`` for a small
  Linear-GELU-Dropout-Linear head, ``head="linear"`` for a linear one); every backbone weight stays
  bit-identical and its movement is exactly 0;
* partial unfreezing: ``top_k`` >= 1, or ``schedule="gradual"``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

from adaptlab.errors import ConfigError
from adaptlab.rungs.base import register_rung
from adaptlab.rungs.training import NetworkRung, Stage, TextClassifier, TrainingConfig
from adaptlab.values import is_int

SCHEDULES = ("topk", "gradual")


@dataclass
class UnfreezeConfig(TrainingConfig):
    """Partial / gradual unfreezing with discriminative learning rates.

    Example:
        >>> from adaptlab.rungs import UnfreezeConfig, get_rung
        >>> cfg = get_rung("unfreeze", {"top_k": 4}).config
        >>> isinstance(cfg, UnfreezeConfig), cfg.top_k, cfg.schedule, cfg.layer_decay
        (True, 4, 'topk', 0.9)
    """

    rung_name: ClassVar[str] = "unfreeze"

    layer_decay: float = field(
        default=0.9, metadata={"help": "each lower block's LR is the one above times this (discriminative LRs)"}
    )
    top_k: int = field(
        default=2,
        metadata={"help": "schedule=topk: number of top transformer blocks trained (0 = head only; "
                          "more than the model has = all blocks)"},
    )
    train_embeddings: bool = field(
        default=False, metadata={"help": "schedule=topk: also train the embedding layer"}
    )
    schedule: str = field(
        default="topk",
        metadata={"help": "'topk': train the top_k blocks from the start; 'gradual': head, then top blocks, "
                          "then more, then all, each stage until validation stops improving"},
    )
    blocks_per_stage: int = field(
        default=2, metadata={"help": "schedule=gradual: blocks unfrozen at each new stage"}
    )
    stage_max_epochs: int = field(
        default=3, metadata={"help": "schedule=gradual: epochs at most per stage before the last"}
    )
    stage_patience: int = field(
        default=1, metadata={"help": "schedule=gradual: evaluations without a better validation F1 that end a stage"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule not in SCHEDULES:
            raise ConfigError.invalid("unfreeze.schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")
        if not is_int(self.top_k) or self.top_k < 0:
            raise ConfigError.invalid("unfreeze.top_k", self.top_k, "an integer >= 0 (0 = head only)")
        for name in ("blocks_per_stage", "stage_max_epochs", "stage_patience"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise ConfigError.invalid(f"unfreeze.{name}", v, "an integer >= 1")


def top_blocks(k: int, n_layers: int, *, embeddings: bool) -> Callable[[str, str], bool]:
    """Trainable predicate: the head, the top ``k`` blocks (with top-level extras), optionally embeddings."""
    lowest = n_layers - k

    def trainable(name: str, unit: str) -> bool:
        if unit == "head":
            return True
        if unit.startswith("layer."):
            return int(unit.split(".")[1]) >= lowest
        if unit == "embeddings":
            return embeddings
        return k >= 1  # top-level extras (pooler, final norm) sit above the last block

    return trainable


@register_rung
class UnfreezeRung(NetworkRung):
    """Train the top blocks of the encoder with discriminative LRs; lower blocks stay frozen.

    Example:
        >>> from adaptlab.rungs import get_rung
        >>> get_rung("unfreeze", {"top_k": 2}).config.layer_decay
        0.9
        >>> get_rung("unfreeze", {"schedule": "gradual", "blocks_per_stage": 1}).config.schedule
        'gradual'
        >>> frozen_backbone = get_rung("unfreeze", {"top_k": 0, "head": "mlp", "head_hidden": 128})
        >>> frozen_backbone.config.top_k, frozen_backbone.config.head
        (0, 'mlp')
    """

    name = "unfreeze"
    config_class = UnfreezeConfig
    summary = "top-k blocks unfrozen (or gradual unfreezing) with discriminative LRs + head (top_k=0: head only)"

    def stages(self, model: TextClassifier, n_layers: int) -> list[Stage]:
        """The unfreezing stages: the top ``top_k`` blocks, or gradually block by block."""
        cfg: UnfreezeConfig = self.config  # type: ignore[assignment]
        if cfg.schedule == "topk":
            k = min(cfg.top_k, n_layers)
            name = "head" if k == 0 else (f"top{k}" + ("+embeddings" if cfg.train_embeddings else ""))
            return [Stage(name, top_blocks(k, n_layers, embeddings=cfg.train_embeddings), cfg.max_epochs, cfg.patience)]
        stages = [Stage("head", top_blocks(0, n_layers, embeddings=False), cfg.stage_max_epochs, cfg.stage_patience)]
        k = cfg.blocks_per_stage
        while k < n_layers:
            stages.append(Stage(f"top{k}", top_blocks(k, n_layers, embeddings=False), cfg.stage_max_epochs,
                                cfg.stage_patience))
            k += cfg.blocks_per_stage
        stages.append(Stage("all", top_blocks(n_layers, n_layers, embeddings=True), cfg.max_epochs, cfg.patience))
        return stages
