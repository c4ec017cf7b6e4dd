"""One shared encoder with several named task heads: the third freezing scenario.

Of the three freezing scenarios, the first two (everything frozen, backbone frozen) are the
``probe`` and ``unfreeze top_k=0`` rungs. The third is a multi-task model where one task's head stays
frozen while another task trains: the frozen task keeps its head, but if the shared encoder moves its
inputs change, so it can regress. :class:`MultiTaskModel` makes that measurable:

* any number of named heads on one copy of the encoder (the study encoder itself is never modified);
* ``fit(..., mode="joint")`` trains the heads together (one optimizer, batches of the tasks
  interleaved), ``mode="in_turn"`` one task after the other (a fresh optimizer per task);
* ``freeze_heads=[...]`` keeps named heads bit-identical (they get no gradient and are in no
  optimizer); a frozen head that is given data still contributes its loss to the shared encoder,
  the "frozen head as a regulariser" of the seed; ``freeze_encoder=True`` freezes the backbone too;
* every ``fit`` reports each task's metric on its evaluation data before and after, whether each head
  changed, and how far the shared encoder moved, so a frozen task's regression is a number;
* ``save``/``load`` keep every head (safetensors + JSON, no pickle); an encoder that did not move is
  referenced by path and fingerprint rather than copied.

Built from the pieces of the shared training loop: :class:`~adaptlab.rungs.training.TextClassifier`
gives each head the encoder's pooling and input scaling, ``encode_texts``/``epoch_batches`` tokenize
once and batch by length, ``forward_all`` evaluates, ``make_adamw`` optimizes.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adaptlab.cancel import check_cancelled
from adaptlab.data.dataset import TextDataset
from adaptlab.encoders.encoder import pad_batch
from adaptlab.errors import ConfigError
from adaptlab.store.files import sha256_file
from adaptlab.rungs.training import (
    HEADS,
    TextClassifier,
    encode_texts,
    epoch_batches,
    forward_all,
    head_input_scale,
    make_adamw,
)
from adaptlab.values import is_int, is_number

FORMAT = "adaptlab-multitask"
FORMAT_VERSION = 1
MODES = ("joint", "in_turn")
_TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
TaskData = Union[TextDataset, tuple[Sequence[str], Sequence[Any]]]
PathLike = Union[str, Path]


@dataclass
class TaskOutcome:
    """One task in one ``fit``: its role, its metric before and after, and whether its head changed."""

    task: str
    role: str  # "trained" | "frozen head, loss on encoder" | "frozen" | "not in this fit"
    before: Optional[dict[str, float]]
    after: Optional[dict[str, float]]
    head_unchanged: bool
    n_train: int = 0

    @property
    def delta_f1(self) -> Optional[float]:
        if self.before is None or self.after is None:
            return None
        return self.after["f1"] - self.before["f1"]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "delta_f1": self.delta_f1}


@dataclass
class MultiTaskReport:
    """What one ``fit`` did to every task (see :meth:`summary_lines` for the sentences)."""

    mode: str
    epochs: int
    steps: int
    seconds: float
    encoder_frozen: bool
    encoder_moved: bool
    encoder_relative_change: float
    tasks: list[TaskOutcome] = field(default_factory=list)

    def task(self, name: str) -> TaskOutcome:
        for t in self.tasks:
            if t.task == name:
                return t
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "tasks"}
        d["tasks"] = [t.to_dict() for t in self.tasks]
        return d

    def summary_lines(self) -> list[str]:
        enc = ("the shared encoder was frozen" if self.encoder_frozen else
               f"the shared encoder moved (relative weight change {self.encoder_relative_change:.2e})"
               if self.encoder_moved else "the shared encoder did not move")
        lines = [f"{self.mode} training, {self.steps} steps in {self.seconds:.1f} s; {enc}."]
        for t in self.tasks:
            if t.before is None or t.after is None:
                lines.append(f"{t.task} ({t.role}): no evaluation data, metric not measured.")
                continue
            d = t.delta_f1 or 0.0
            head = "head unchanged" if t.head_unchanged else "head trained"
            verdict = ("no change" if d == 0 else f"{d * 100:+.1f} points")
            lines.append(f"{t.task} ({t.role}, {head}): F1 {t.before['f1']:.4f} -> {t.after['f1']:.4f} ({verdict}).")
        return lines


class MultiTaskModel:
    """A shared encoder with named classification heads, trainable jointly or in turn, any head freezable.

    Args:
        encoder: The pretrained :class:`~adaptlab.encoders.Encoder`; its backbone is deep-copied, so the
            caller's encoder never changes.
        head: ``"linear"`` or ``"mlp"`` (default head kind of new tasks).
        head_hidden: Hidden units of an ``"mlp"`` head.
        head_dropout: Dropout on the pooled embedding before each head.
        head_lr: AdamW learning rate of the heads.
        backbone_lr: AdamW learning rate of the shared encoder.
        weight_decay: AdamW weight decay (not on biases and LayerNorm).
        batch_size: Texts per optimizer step.
        epochs: Epochs per ``fit`` (per task in ``in_turn`` mode).
        warmup_ratio: Fraction of the steps spent warming the learning rate up (linear decay after).
        max_grad_norm: Gradient clipping norm (0 = none).
        max_length: Truncate texts to this many tokens (default: the encoder's ``max_seq_length``).
        class_weighted: Weight each task's loss by inverse class frequency.
        seed: Seeds head initialisation, dropout and batch order.

    Example:
        >>> mt = MultiTaskModel(encoder, epochs=2, seed=0)                          # doctest: +SKIP
        >>> mt.fit({"topic": (texts, topics)}, eval_data={"topic": (vt, vtopics)})  # doctest: +SKIP
        >>> rep = mt.fit({"urgent": (texts, urgent)}, freeze_heads=["topic"],
        ...              eval_data={"topic": (vt, vtopics), "urgent": (vt, vurgent)})  # doctest: +SKIP
        >>> rep.task("topic").head_unchanged, rep.task("topic").delta_f1          # doctest: +SKIP
        (True, -0.012)
        >>> mt.save("models/multitask"); MultiTaskModel.load("models/multitask").tasks_  # doctest: +SKIP
    """

    def __init__(self, encoder: Any, *, head: str = "linear", head_hidden: int = 256, head_dropout: float = 0.1,
                 head_lr: float = 2e-3, backbone_lr: float = 3e-5, weight_decay: float = 0.01, batch_size: int = 16,
                 epochs: int = 3, warmup_ratio: float = 0.1, max_grad_norm: float = 1.0,
                 max_length: Optional[int] = None, class_weighted: bool = True, seed: int = 0) -> None:
        self.encoder = encoder
        self.head = head
        self.head_hidden = head_hidden
        self.head_dropout = head_dropout
        self.head_lr = head_lr
        self.backbone_lr = backbone_lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.warmup_ratio = warmup_ratio
        self.max_grad_norm = max_grad_norm
        self.max_length = max_length
        self.class_weighted = class_weighted
        self.seed = seed
        self._validate()
        if encoder is None or not hasattr(encoder, "model") or not hasattr(encoder, "pool"):
            raise ConfigError("MultiTaskModel needs an adaptlab Encoder (e.g. adaptlab.encoders.load_encoder()).")
        self.backbone_ = copy.deepcopy(encoder.model)
        self.backbone_.to(encoder.device)
        self.input_scale_ = head_input_scale(encoder)
        self.max_length_ = min(max_length or encoder.max_seq_length, encoder.max_seq_length)
        self.heads_: dict[str, TextClassifier] = {}
        self.tasks_: dict[str, list[str]] = {}
        self.history_: list[MultiTaskReport] = []
        self.base_fingerprint_: str = encoder.fingerprint
        pad = encoder.tokenizer.pad_token_id
        self._pad_id = 0 if pad is None else int(pad)

    # ------------------------------------------------------------------ params
    _PARAMS = ("head", "head_hidden", "head_dropout", "head_lr", "backbone_lr", "weight_decay", "batch_size", "epochs",
               "warmup_ratio", "max_grad_norm", "max_length", "class_weighted", "seed")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (scikit-learn style)."""
        return {"encoder": self.encoder, **{k: getattr(self, k) for k in self._PARAMS}}

    def _validate(self) -> None:
        if self.head not in HEADS:
            raise ConfigError.invalid("head", self.head, f"one of {', '.join(HEADS)}")
        for name in ("head_lr", "backbone_lr"):
            v = getattr(self, name)
            if not is_number(v) or v <= 0:
                raise ConfigError.invalid(name, v, "a positive number, e.g. 2e-5")
        for name in ("batch_size", "epochs", "head_hidden", "seed"):
            v = getattr(self, name)
            if not is_int(v) or v < (0 if name == "seed" else 1):
                raise ConfigError.invalid(name, v, "an integer >= 0" if name == "seed" else "an integer >= 1")
        if not is_number(self.head_dropout) or not 0 <= self.head_dropout < 1:
            raise ConfigError.invalid("head_dropout", self.head_dropout, "a probability in [0, 1)")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError.invalid("weight_decay", self.weight_decay, "a number >= 0")
        if not is_number(self.warmup_ratio) or not 0 <= self.warmup_ratio < 1:
            raise ConfigError.invalid("warmup_ratio", self.warmup_ratio, "a fraction in [0, 1)")
        if not is_number(self.max_grad_norm) or self.max_grad_norm < 0:
            raise ConfigError.invalid("max_grad_norm", self.max_grad_norm, "a number >= 0 (0 = no clipping)")
        if self.max_length is not None and (not is_int(self.max_length) or self.max_length < 2):
            raise ConfigError.invalid("max_length", self.max_length, "an integer >= 2 or None")

    # ------------------------------------------------------------------ tasks
    def add_task(self, name: str, classes: Sequence[Any], *, head: Optional[str] = None,
                 head_hidden: Optional[int] = None) -> "MultiTaskModel":
        """Add a head for task ``name`` over ``classes`` (its weights drawn from the model's seed and the name)."""
        if not isinstance(name, str) or not _TASK_NAME.match(name):
            raise ConfigError.invalid("task name", name, "a name of letters, digits, '_' or '-' starting with a letter",
                                      "Task names become keys in the saved weights file.")
        if name in self.heads_:
            raise ConfigError(f"task {name!r} already has a head; use another name or fit it again.")
        labels = sorted({str(c) for c in classes})
        if len(labels) < 2:
            raise ConfigError.invalid(f"classes of task {name!r}", list(classes), "at least two distinct classes")
        kind = head or self.head
        if kind not in HEADS:
            raise ConfigError.invalid("head", kind, f"one of {', '.join(HEADS)}")
        # The head's initial weights depend on (seed, task name) only, not on the order tasks were added.
        digest = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "little")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + digest) % (2**63))
            view = TextClassifier(self.backbone_, self.encoder.pool, self.encoder.dim, len(labels),
                                  head_dropout=self.head_dropout, input_scale=self.input_scale_, head=kind,
                                  head_hidden=head_hidden or self.head_hidden)
        view.head.to(self.device)
        self.heads_[name] = view
        self.tasks_[name] = labels
        return self

    @property
    def device(self) -> torch.device:
        """The device the shared backbone's weights are on."""
        for p in self.backbone_.parameters():
            return p.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ training
    def fit(self, data: Mapping[str, TaskData], *, eval_data: Optional[Mapping[str, TaskData]] = None,
            freeze_heads: Sequence[str] = (), freeze_encoder: bool = False, mode: str = "joint",
            epochs: Optional[int] = None) -> MultiTaskReport:
        """Train the heads of the tasks in ``data`` (and the shared encoder unless frozen).

        Args:
            data: ``{task: (texts, labels)}`` or ``{task: TextDataset}``; a task without a head gets one
                (classes from its labels).
            eval_data: Held-out ``{task: (texts, labels)}`` scored before and after, for every task
                that has a head (frozen ones included: that is where a regression shows).
            freeze_heads: Heads kept bit-identical. With data, their loss still reaches the encoder.
            freeze_encoder: Keep the shared encoder frozen too (then frozen tasks cannot change at all).
            mode: ``"joint"`` (interleaved batches, one optimizer) or ``"in_turn"`` (task by task).
            epochs: Overrides ``self.epochs`` for this call.

        Returns the :class:`MultiTaskReport` (also appended to ``history_``).
        """
        if mode not in MODES:
            raise ConfigError.invalid("mode", mode, f"one of {', '.join(MODES)}")
        n_epochs = self.epochs if epochs is None else epochs
        if not is_int(n_epochs) or n_epochs < 1:
            raise ConfigError.invalid("epochs", n_epochs, "an integer >= 1")
        if not data:
            raise ConfigError("fit needs training data for at least one task: {task: (texts, labels)}.")
        train = {t: _as_task_data(t, d) for t, d in data.items()}
        evals = {t: _as_task_data(t, d) for t, d in (eval_data or {}).items()}
        frozen = set(freeze_heads)
        # Checked before any head is added, so a failed call leaves the model as it was.
        unknown = sorted((frozen | set(evals)) - set(self.heads_) - set(train))
        if unknown:
            raise ConfigError.invalid("task", unknown, f"tasks with a head: {sorted(self.heads_)}",
                                      "Add the task (add_task or give it training data) before freezing or scoring it.")
        for t, (_texts, labels) in train.items():
            if t not in self.heads_:
                self.add_task(t, labels)
        for t, (_texts, labels) in train.items():
            bad = sorted({str(y) for y in labels} - set(self.tasks_[t]))
            if bad:
                raise ConfigError(f"task {t!r}: labels {bad[:5]} are not among its classes {self.tasks_[t]}; "
                                  "a head's classes are fixed when it is added.")
        if freeze_encoder and not (set(train) - frozen):
            raise ConfigError("nothing to train: every task with data has a frozen head and the encoder is frozen. "
                              "Unfreeze a head or the encoder.")

        ids_train = {t: encode_texts(self.encoder.tokenizer, x, self.max_length_) for t, (x, _y) in train.items()}
        y_train = {t: np.array([self.tasks_[t].index(str(v)) for v in y], dtype=np.int64)
                   for t, (_x, y) in train.items()}
        before = self._scores(evals)
        heads_before = {t: _tensor_digest(v.head) for t, v in self.heads_.items()}
        backbone_before = {n: p.detach().clone() for n, p in self.backbone_.named_parameters()}

        t0 = time.perf_counter()
        steps = 0
        with torch.random.fork_rng(devices=self._cuda_devices()):
            torch.manual_seed(self.seed + 7919 * len(self.history_))
            if mode == "joint":
                steps += self._train_phase(list(train), ids_train, y_train, frozen, freeze_encoder, n_epochs,
                                           phase=len(self.history_))
            else:
                for i, t in enumerate(train):
                    if t in frozen and freeze_encoder:
                        continue  # nothing of this task could learn
                    steps += self._train_phase([t], ids_train, y_train, frozen, freeze_encoder, n_epochs,
                                               phase=len(self.history_) * 1000 + i)
        seconds = time.perf_counter() - t0
        for module in [self.backbone_] + [v.head for v in self.heads_.values()]:
            for p in module.parameters():
                p.requires_grad_(True)

        after = self._scores(evals)
        num = sum(float((p.detach() - backbone_before[n]).float().pow(2).sum())
                  for n, p in self.backbone_.named_parameters())
        den = sum(float(v.float().pow(2).sum()) for v in backbone_before.values())
        rel = math.sqrt(num / den) if den > 0 else 0.0
        outcomes = []
        for t in self.heads_:
            role = ("trained" if t in train and t not in frozen else
                    "frozen head, loss on encoder" if t in train else
                    "frozen" if t in frozen else "not in this fit")
            outcomes.append(TaskOutcome(task=t, role=role, before=before.get(t), after=after.get(t),
                                        head_unchanged=_tensor_digest(self.heads_[t].head) == heads_before[t],
                                        n_train=len(train[t][0]) if t in train else 0))
        report = MultiTaskReport(mode=mode, epochs=int(n_epochs), steps=steps, seconds=round(seconds, 3),
                                 encoder_frozen=bool(freeze_encoder), encoder_moved=num > 0,
                                 encoder_relative_change=rel, tasks=outcomes)
        self.history_.append(report)
        return report

    def _train_phase(self, tasks: list[str], ids: dict[str, list[list[int]]], ys: dict[str, np.ndarray],
                     frozen: set[str], freeze_encoder: bool, n_epochs: int, *, phase: int) -> int:
        """One optimizer over the trainable parameters of ``tasks``; batches of the tasks interleaved."""
        trainable_heads = [t for t in tasks if t not in frozen]
        for p in self.backbone_.parameters():
            p.requires_grad_(not freeze_encoder)
        for t, view in self.heads_.items():
            for p in view.head.parameters():
                p.requires_grad_(t in trainable_heads)
        groups: dict[str, dict[str, Any]] = {}

        def add(name: str, p: nn.Parameter, lr: float, unit: str) -> None:
            no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
            key = f"{unit}/no_decay" if no_decay else unit
            groups.setdefault(key, {"params": [], "lr": lr, "weight_decay": 0.0 if no_decay else self.weight_decay})
            groups[key]["params"].append(p)

        if not freeze_encoder:
            for n, p in self.backbone_.named_parameters():
                add(n, p, self.backbone_lr, "backbone")
        for t in trainable_heads:
            for n, p in self.heads_[t].head.named_parameters():
                add(n, p, self.head_lr, f"head:{t}")
        if not groups:
            return 0
        opt = make_adamw(list(groups.values()), lr=self.head_lr)
        device = self.device
        weights = {}
        for t in tasks:
            k = len(self.tasks_[t])
            if self.class_weighted:
                counts = np.bincount(ys[t], minlength=k).astype(np.float64)
                w = np.where(counts > 0, len(ys[t]) / (k * np.maximum(counts, 1)), 0.0)
                weights[t] = torch.tensor(w, dtype=torch.float32, device=device)
            else:
                weights[t] = None
        lengths = {t: np.fromiter((len(x) for x in ids[t]), dtype=np.int64, count=len(ids[t])) for t in tasks}
        per_epoch = sum(math.ceil(len(ids[t]) / self.batch_size) for t in tasks)
        planned = max(1, per_epoch * n_epochs)
        warmup = int(round(self.warmup_ratio * planned))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (planned - s) / max(1, planned - warmup)))
        trainable = [p for g in groups.values() for p in g["params"]]
        self.backbone_.train()
        for view in self.heads_.values():
            view.train()
        steps = 0
        try:
            for epoch in range(n_epochs):
                plan: list[tuple[str, np.ndarray]] = []
                for i, t in enumerate(tasks):
                    plan += [(t, b) for b in epoch_batches(lengths[t], self.batch_size, seed=self.seed,
                                                           stage=phase * 100 + i, epoch=epoch)]
                order = np.random.default_rng([self.seed, phase, epoch, 0x3A5]).permutation(len(plan))
                for j in order:
                    check_cancelled()  # a cancel stops the joint training at its next step
                    t, idx = plan[j]
                    input_ids, mask = pad_batch(ids[t], idx, self._pad_id)
                    logits = self.heads_[t](input_ids.to(device), mask.to(device))
                    target = torch.from_numpy(ys[t][idx]).to(device)
                    loss = F.cross_entropy(logits, target, weight=weights[t])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.max_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(trainable, self.max_grad_norm)
                    opt.step()
                    sched.step()
                    steps += 1
        finally:
            self.backbone_.eval()
            for view in self.heads_.values():
                view.eval()
        return steps

    def _cuda_devices(self) -> list[int]:
        dev = self.device
        return [dev.index or 0] if dev.type == "cuda" else []

    # ------------------------------------------------------------------ inference
    def _logits(self, task: str, texts: Sequence[str]) -> np.ndarray:
        from adaptlab.encoders.encoder import _check_texts

        if task not in self.heads_:
            raise ConfigError.invalid("task", task, f"one of {sorted(self.heads_)}")
        texts = _check_texts(texts)
        ids = encode_texts(self.encoder.tokenizer, texts, self.max_length_) if texts else []
        return forward_all(self.heads_[task], ids, self._pad_id)[1]

    def predict_proba(self, task: str, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities of ``task`` (columns in ``tasks_[task]`` order)."""
        z = self._logits(task, texts).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, task: str, texts: Sequence[str]) -> np.ndarray:
        """The most probable label of each text for ``task``."""
        return np.asarray(self.tasks_[task], dtype=object)[self._logits(task, texts).argmax(axis=1)]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Pooled embeddings of the shared encoder (as it is now)."""
        from adaptlab.encoders.encoder import _check_texts

        texts = _check_texts(texts)
        if not self.heads_:
            raise ConfigError("add a task first; embeddings are computed through a task view of the encoder.")
        ids = encode_texts(self.encoder.tokenizer, texts, self.max_length_) if texts else []
        return forward_all(next(iter(self.heads_.values())), ids, self._pad_id)[0]

    def evaluate(self, data: Mapping[str, TaskData]) -> dict[str, dict[str, float]]:
        """``{task: {"f1": macro-F1, "accuracy", "n"}}`` on labeled texts per task."""
        return self._scores({t: _as_task_data(t, d) for t, d in data.items()})

    def _scores(self, evals: Mapping[str, tuple[list[str], list[str]]]) -> dict[str, dict[str, float]]:
        from sklearn.metrics import accuracy_score, f1_score

        out = {}
        for t, (texts, labels) in evals.items():
            pred = self.predict(t, texts)
            true = np.asarray([str(y) for y in labels], dtype=object)
            out[t] = {"f1": float(f1_score(true, pred, average="macro", labels=self.tasks_[t], zero_division=0)),
                      "accuracy": float(accuracy_score(true, pred)), "n": int(len(true))}
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, folder: PathLike, *, copy_encoder: Union[bool, str] = "auto") -> Path:
        """Write ``multitask.json``, ``heads.safetensors`` and the shared encoder (or a reference to it).

        ``copy_encoder="auto"`` copies the encoder only when it moved or the base encoder has no folder;
        an unchanged encoder is referenced by its folder and fingerprint (checked at load).
        """
        from safetensors.torch import save_file

        if not self.heads_:
            raise ConfigError("nothing to save: the model has no task head yet.")
        if copy_encoder not in (True, False, "auto"):
            raise ConfigError.invalid("copy_encoder", copy_encoder, "True, False or 'auto'")
        out = Path(folder).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        shared = self._shared_encoder()
        fingerprint = shared.fingerprint
        base_path = getattr(self.encoder, "path", None)
        moved = fingerprint != self.base_fingerprint_
        if copy_encoder is False and (moved or base_path is None):
            raise ConfigError("copy_encoder=False but the shared encoder moved (or has no folder); it must be copied.")
        copy_it = copy_encoder is True or moved or base_path is None
        if copy_it:
            shared.save_pretrained(out / "encoder")
            enc_ref = {"stored": "encoder", "fingerprint": fingerprint}
        else:
            enc_ref = {"path": str(Path(base_path).resolve()), "fingerprint": fingerprint}
        tensors = {f"{t}/{n}": p.detach().cpu().contiguous() for t, v in self.heads_.items()
                   for n, p in v.head.state_dict().items()}
        save_file(tensors, str(out / "heads.safetensors"), metadata={"format": FORMAT})
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION,
            "tasks": {t: {"classes": self.tasks_[t], "head": v.head_config} for t, v in self.heads_.items()},
            "params": {k: getattr(self, k) for k in self._PARAMS},
            "input_scale": self.input_scale_, "max_length": self.max_length_,
            "encoder": {**enc_ref, "name": self.encoder.name, "base_fingerprint": self.base_fingerprint_,
                        "pooling": self.encoder.pooling, "normalize": self.encoder.normalize},
            "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                        for k, v in tensors.items()},
            "sha256": {"heads.safetensors": sha256_file(out / "heads.safetensors")},
            "history": [r.to_dict() for r in self.history_],
        }
        (out / "multitask.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, folder: PathLike, *, device: str = "cpu") -> "MultiTaskModel":
        """Load a folder written by :meth:`save`: every head, the shared encoder, the history."""
        from safetensors.torch import load_file

        from adaptlab.encoders import Encoder

        root = Path(folder).expanduser()
        man_path = root / "multitask.json"
        if not man_path.is_file():
            raise ConfigError(f"{str(root)!r} is not a multi-task model folder (no multitask.json); pass the folder "
                              "MultiTaskModel.save wrote.")
        try:
            man = json.loads(man_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{str(man_path)!r} is not valid JSON ({exc}); the folder is damaged.") from exc
        if man.get("format") != FORMAT or man.get("version") != FORMAT_VERSION:
            raise ConfigError(f"{str(man_path)!r} has format {man.get('format')!r} v{man.get('version')}; this "
                              f"adaptlab reads {FORMAT} v{FORMAT_VERSION}.")
        heads_file = root / "heads.safetensors"
        if sha256_file(heads_file) != man["sha256"]["heads.safetensors"]:
            raise ConfigError(f"{str(heads_file)!r} does not match the SHA-256 in multitask.json; the file was changed "
                              "or damaged. Re-save the model.")
        enc_info = man["encoder"]
        enc_dir = root / enc_info["stored"] if "stored" in enc_info else Path(enc_info["path"])
        encoder = Encoder.from_pretrained(enc_dir, device=device)
        if encoder.fingerprint != enc_info["fingerprint"]:
            raise ConfigError(f"the encoder at {str(enc_dir)!r} has fingerprint {encoder.fingerprint[:12]}, but the "
                              "model "
                              f"was saved with {enc_info['fingerprint'][:12]}; its weights changed since. Restore them "
                              "or re-save the model with copy_encoder=True.")
        params = dict(man["params"])
        model = cls(encoder, **params)
        model.base_fingerprint_ = enc_info.get("base_fingerprint", encoder.fingerprint)
        tensors = load_file(str(heads_file))
        for k, spec in man["tensors"].items():
            t = tensors.get(k)
            if t is None or str(t.dtype).replace("torch.", "") != spec["dtype"] or list(t.shape) != spec["shape"]:
                raise ConfigError(f"heads.safetensors: tensor {k!r} is missing or has another dtype/shape than "
                                  "multitask.json records; the folder is damaged.")
        if set(tensors) != set(man["tensors"]):
            raise ConfigError("heads.safetensors holds tensors multitask.json does not list; refusing to load it.")
        for t, spec in man["tasks"].items():
            hc = spec["head"]
            model.add_task(t, spec["classes"], head=hc["kind"], head_hidden=hc.get("hidden") or params["head_hidden"])
            state = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.split("/", 1)[0] == t}
            model.heads_[t].head.load_state_dict(state, strict=True)
        model.history_ = [_report_from_dict(r) for r in man.get("history", [])]
        return model

    def _shared_encoder(self) -> Any:
        from adaptlab.encoders import Encoder

        enc = self.encoder
        return Encoder.from_model(self.backbone_, enc.tokenizer, name=enc.name, pooling=enc.pooling,
                                  normalize=enc.normalize, max_seq_length=enc.max_seq_length,
                                  do_lower_case=enc.do_lower_case)


# ---------------------------------------------------------------------------------------------- helpers
def _as_task_data(task: str, d: Any) -> tuple[list[str], list[str]]:
    if isinstance(d, TextDataset):
        if d.labels is None:
            raise ConfigError(f"task {task!r}: the dataset has no labels.")
        texts, labels = list(d.texts), list(d.labels)
    elif isinstance(d, (tuple, list)) and len(d) == 2:
        texts, labels = list(d[0]), [str(y) for y in d[1]]
    else:
        raise ConfigError.invalid(f"data[{task!r}]", type(d).__name__, "a (texts, labels) pair or a TextDataset")
    if len(texts) != len(labels) or not texts:
        raise ConfigError(f"task {task!r}: {len(texts)} texts and {len(labels)} labels; give one label per text "
                          "and at least one text.")
    return texts, labels


def _tensor_digest(module: nn.Module) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _report_from_dict(d: dict[str, Any]) -> MultiTaskReport:
    tasks = [TaskOutcome(**{k: v for k, v in t.items() if k != "delta_f1"}) for t in d.get("tasks", [])]
    return MultiTaskReport(**{**{k: v for k, v in d.items() if k != "tasks"}, "tasks": tasks})


__all__ = ["MODES", "MultiTaskModel", "MultiTaskReport", "TaskOutcome"]
