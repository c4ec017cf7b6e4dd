"""`finetune`: full end-to-end fine-tuning of the encoder with its classification head.

The ladder's top rung ("end-to-end fine-tune of the off-the-shelf encoder on the labels"): every backbone weight
learns, with a smaller learning rate than the freshly initialised head. On a few thousand labels it
often memorises; the overfitting signature and the backbone movement in ``diagnostics_`` say so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from adaptlab.rungs.base import register_rung
from adaptlab.rungs.training import NetworkRung, Stage, TextClassifier, TrainingConfig


@dataclass
class FinetuneConfig(TrainingConfig):
    """Full fine-tuning: the shared training settings (separate head and backbone learning rates).

    Example:
        >>> from adaptlab.rungs import FinetuneConfig
        >>> cfg = FinetuneConfig(backbone_lr=2e-5, max_epochs=3)
        >>> cfg.head_lr, cfg.backbone_lr, cfg.max_epochs, cfg.rung_name
        (0.002, 2e-05, 3, 'finetune')
    """

    rung_name: ClassVar[str] = "finetune"


@register_rung
class FinetuneRung(NetworkRung):
    """Fine-tune the whole encoder and a head (linear or MLP) on the pooled embedding.

    Example:
        >>> from adaptlab.rungs import get_rung
        >>> rung = get_rung("finetune", {"backbone_lr": 2e-5, "head_lr": 1e-3})
        >>> rung.trains_network, rung.config.layer_decay
        (True, 1.0)
    """

    name = "finetune"
    config_class = FinetuneConfig
    summary = "full fine-tuning of the encoder + head (separate head / backbone LRs)"

    def stages(self, model: TextClassifier, n_layers: int) -> list[Stage]:
        """One stage that trains every parameter."""
        cfg: FinetuneConfig = self.config  # type: ignore[assignment]
        return [Stage("all", lambda name, unit: True, cfg.max_epochs, cfg.patience)]
