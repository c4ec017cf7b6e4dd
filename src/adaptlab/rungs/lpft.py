"""`lpft`: linear probe, then fine-tune everything from that head (LP-FT, Kumar et al. 2022).

Fine-tuning with a random head sends large, noisy gradients into the pretrained backbone during the
first steps and distorts features the head has not learned to use yet. LP-FT first fits the head on
the frozen features, then fine-tunes all weights starting from it:

* ``lp_method="logistic"`` (default): the ``probe`` rung's head (class-weighted logistic regression on
  the frozen embeddings, C chosen on validation F1) becomes the linear head's initial weights; the
  LP-initialised model is evaluated before any step, so fine-tuning must beat the probe on
  validation to be kept;
* ``lp_method="head"``: a first training stage with the backbone frozen (``lp_epochs`` at most); the
  one that works with ``head="mlp"``.

The linear probe's choice (``diagnostics_["linear_probe"]``) is saved with the training checkpoints,
so a run resumed after an interruption reports the same diagnostics as an uninterrupted one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from adaptlab.data.dataset import TextDataset
from adaptlab.errors import ConfigError
from adaptlab.rungs.base import RungContext, register_rung
from adaptlab.rungs.training import (
    NetworkRung, Stage, TextClassifier, TrainingConfig, encode_texts, forward_all,
)
from adaptlab.values import is_int

LP_METHODS = ("logistic", "head")


@dataclass
class LpftConfig(TrainingConfig):
    """Linear probe, then full fine-tuning from the probe's head.

    Example:
        >>> from adaptlab.rungs import LpftConfig
        >>> cfg = LpftConfig()
        >>> cfg.lp_method, cfg.lp_epochs, cfg.rung_name
        ('logistic', 5, 'lpft')
    """

    rung_name: ClassVar[str] = "lpft"

    lp_method: str = field(
        default="logistic",
        metadata={"help": "'logistic': logistic regression on frozen embeddings becomes the head; "
                          "'head': train the head with the backbone frozen first"},
    )
    C_grid: list[float] = field(
        default_factory=lambda: [0.01, 0.1, 1.0, 10.0, 100.0],
        metadata={"help": "lp_method=logistic: inverse regularisation strengths tried, chosen on validation F1"},
    )
    lp_epochs: int = field(default=5, metadata={"help": "lp_method=head: epochs at most of the head-only stage"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lp_method not in LP_METHODS:
            raise ConfigError.invalid("lpft.lp_method", self.lp_method, f"one of {', '.join(LP_METHODS)}")
        if not self.C_grid or any(not isinstance(c, (int, float)) or c <= 0 for c in self.C_grid):
            raise ConfigError.invalid("lpft.C_grid", self.C_grid, "a non-empty list of positive numbers")
        if not is_int(self.lp_epochs) or self.lp_epochs < 1:
            raise ConfigError.invalid("lpft.lp_epochs", self.lp_epochs, "an integer >= 1")
        if self.lp_method == "logistic" and self.head != "linear":
            # A logistic regression is a linear head; it has no hidden layer to initialise.
            raise ConfigError.invalid("lpft.head", self.head, "'linear' when lp_method='logistic'",
                                      "Set lpft.lp_method='head' to train an MLP head on the frozen backbone first.")


def logistic_to_linear(head: Any, classes: list[str], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of a ``torch.nn.Linear`` whose softmax equals a fitted LogisticRegression's probabilities.

    Multinomial models map row for row; a binary model's single row becomes logits ``[0, z]``
    (``softmax([0, z]) = sigmoid(z)``). Classes absent from the training split get a very negative bias.
    """
    coef = np.asarray(head.coef_, dtype=np.float64)
    intercept = np.asarray(head.intercept_, dtype=np.float64)
    fitted = list(head.classes_)
    if coef.shape[0] == 1 and len(fitted) == 2:
        coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    W = np.zeros((len(classes), dim))
    b = np.full(len(classes), -30.0)
    for j, c in enumerate(fitted):
        i = classes.index(c)
        W[i], b[i] = coef[j], intercept[j]
    return torch.tensor(W, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)


@register_rung
class LpftRung(NetworkRung):
    """Linear probe on the frozen encoder, then fine-tune the whole model from that head.

    Example:
        >>> from adaptlab.rungs import get_rung
        >>> get_rung("lpft").config.lp_method
        'logistic'
    """

    name = "lpft"
    config_class = LpftConfig
    summary = "linear probe, then full fine-tuning from the probe's head (LP-FT)"

    @property
    def evaluate_at_start(self) -> bool:  # type: ignore[override]
        """Evaluate before fine-tuning when the head was fitted as a logistic probe."""
        return self.config.lp_method == "logistic"  # type: ignore[attr-defined]

    def stages(self, model: TextClassifier, n_layers: int) -> list[Stage]:
        """The probe-then-fine-tune stages (a head-only stage first with ``lp_method="head"``)."""
        cfg: LpftConfig = self.config  # type: ignore[assignment]
        all_ = Stage("finetune", lambda name, unit: True, cfg.max_epochs, cfg.patience)
        if cfg.lp_method == "head":
            return [Stage("probe", lambda name, unit: unit == "head", cfg.lp_epochs, cfg.patience), all_]
        return [all_]

    def before_training(self, model: TextClassifier, train: TextDataset, val: TextDataset, *, seed: int,
                        context: RungContext, y_train: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
        """Fit the head as a logistic probe on frozen embeddings first (``lp_method="logistic"``)."""
        cfg: LpftConfig = self.config  # type: ignore[assignment]
        if cfg.lp_method != "logistic":
            return {}
        from adaptlab.encoders import embed
        from adaptlab.encoders.longtext import long_text_encoder
        from adaptlab.rungs.head import select_logistic_head

        encoder = context.encoder
        t0 = time.perf_counter()
        max_length = min(cfg.max_length or encoder.max_seq_length, encoder.max_seq_length)
        if max_length == encoder.max_seq_length:
            # Same features the probe rung uses (and the study has cached): the LP step is the probe, reading
            # long texts as the FT stage will (head_tail: one window of head and tail tokens).
            reader = long_text_encoder(encoder, cfg.long_text)
            X_train = embed(reader, train.texts, cache=context.cache)
            X_val = embed(reader, val.texts, cache=context.cache)
        else:
            pad = encoder.tokenizer.pad_token_id or 0
            X_train = forward_all(model, encode_texts(encoder.tokenizer, train.texts, max_length, cfg.long_text), pad)[0]
            X_val = forward_all(model, encode_texts(encoder.tokenizer, val.texts, max_length, cfg.long_text), pad)[0]
        t1 = time.perf_counter()
        head, C, val_scores = select_logistic_head(
            X_train, train.labels, X_val, val.labels, C_grid=cfg.C_grid, seed=seed,
            classes=context.classes, positive=context.positive_label,
        )
        W, b = logistic_to_linear(head, list(context.classes), encoder.dim)
        W = W / model.input_scale  # the head sees scaled embeddings; same logits as the probe
        with torch.no_grad():
            model.head.weight.copy_(W.to(model.head.weight.device))
            model.head.bias.copy_(b.to(model.head.bias.device))
        return {"encode_seconds": t1 - t0, "samples_seen": len(train) * len(cfg.C_grid),
                "linear_probe": {"C": C, "val_f1": val_scores["f1"], "seconds": round(time.perf_counter() - t1, 3)}}
