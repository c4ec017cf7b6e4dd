"""The refit training loop: length-bucketed batches, AdamW with warm-up + linear decay, clipping,
NaN guard, time estimate before training, and checkpoints that resume to the same loss curve.

A checkpoint holds everything the next step depends on: weights (safetensors), optimizer and
scheduler state (tensor-only dicts read back with ``torch.load(weights_only=True)``), the RNG states
(torch, the masking generator, numpy, python) and the data-order position (epoch, batch). The data
order of an epoch is a pure function of (seed, epoch), so the position is two integers.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from adaptlab.cancel import Cancelled, cancel_requested
from adaptlab.encoders.encoder import pad_batch
from adaptlab.errors import AdaptlabError
from adaptlab.rungs.refit.config import RefitBudget, RefitConfig
from adaptlab.rungs.runtime import NonFiniteGuard, TrainingRuntime
from adaptlab.store.files import disk_full_error, is_disk_full
from adaptlab.store.integrity import quarantine, verify_folder, write_checksums

# Batches are sorted by length inside windows of this many batches, then the batches are shuffled:
# padding drops to a few percent while the order stays random (Hugging Face's group_by_length idea).
_BUCKET_WINDOW = 50
StepCallback = Callable[[int, float, nn.Module], None]


class RefitDivergedError(AdaptlabError):
    """The refit loss (or gradient) became NaN or infinite."""


class RefitTimeWarning(UserWarning):
    """The measured estimate of a refit exceeds the configured limit (``max_hours``)."""


# ---------------------------------------------------------------------------------------------- data
class PackedIds(Sequence):
    """Token ids of many texts in one flat ``int32`` array plus offsets: no Python object per text, so a corpus
    of a million texts costs its tokens (4 bytes each) and not a million arrays.

    Example:
        >>> p = PackedIds.from_lists([[101, 7, 102], [101, 102]])
        >>> len(p), p[0].tolist(), p[1].tolist()
        (2, [101, 7, 102], [101, 102])
    """

    def __init__(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        self.flat, self.offsets = flat, offsets

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[int]]) -> "PackedIds":
        lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.fromiter((t for x in lists for t in x), dtype=np.int32, count=int(offsets[-1]))
        return cls(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: Any) -> np.ndarray:  # type: ignore[override]
        return self.flat[self.offsets[i]:self.offsets[i + 1]]


@dataclass
class TokenizedCorpus:
    """Token ids (no padding) of the refit corpus, truncated to the training length, packed in one array."""

    ids: PackedIds
    lengths: np.ndarray
    pad_id: int

    @classmethod
    def build(cls, tokenizer: Any, texts: list[str], max_length: int, chunk: int = 4096) -> "TokenizedCorpus":
        """Tokenize ``chunk`` texts at a time: the tokenizer's Python lists (28 bytes an id) never exist for more
        than one chunk, so memory is the packed ids (4 bytes an id) plus one chunk."""
        parts, lengths = [], []
        for start in range(0, len(texts), chunk):
            enc = tokenizer(texts[start:start + chunk], truncation=True, max_length=max_length, padding=False,
                            add_special_tokens=True, return_attention_mask=False,
                            return_token_type_ids=False)["input_ids"]
            packed = PackedIds.from_lists(enc)
            parts.append(packed.flat)
            lengths.append(np.diff(packed.offsets))
        lens = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        pad = tokenizer.pad_token_id
        return cls(ids=PackedIds(flat, offsets), lengths=lens, pad_id=0 if pad is None else int(pad))

    def __len__(self) -> int:
        return len(self.ids)

    def epoch_batches(self, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
        """The batches of one epoch: a pure function of (seed, epoch), so a resume needs only a position."""
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])
        perm = rng.permutation(len(self.ids))
        batches: list[np.ndarray] = []
        window = batch_size * _BUCKET_WINDOW
        for start in range(0, len(perm), window):
            chunk = perm[start:start + window]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def collate(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad one batch to its own longest text (dynamic padding)."""
        return pad_batch(self.ids, idx, self.pad_id)


# ---------------------------------------------------------------------------------------------- plan
@dataclass
class RefitPlan:
    """How many steps the refit runs and when it stops."""

    total_steps: int
    steps_per_epoch: int
    budget: RefitBudget
    stop_tokens: Optional[int] = None
    stop_seconds: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return {"total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
                "budget": self.budget.to_dict(), "budget_text": str(self.budget),
                "stop_tokens": self.stop_tokens, "stop_seconds": self.stop_seconds}


def make_plan(corpus: TokenizedCorpus, batch_size: int, budget: RefitBudget, *, sec_per_step: float) -> RefitPlan:
    spe = max(1, math.ceil(len(corpus) / batch_size))
    if budget.steps is not None:
        return RefitPlan(budget.steps, spe, budget)
    if budget.epochs is not None:
        return RefitPlan(max(1, math.ceil(budget.epochs * spe)), spe, budget)
    if budget.tokens is not None:
        per_step = float(corpus.lengths.mean()) * min(batch_size, len(corpus))
        return RefitPlan(max(1, math.ceil(budget.tokens / per_step)), spe, budget, stop_tokens=budget.tokens)
    assert budget.seconds is not None
    return RefitPlan(max(1, int(budget.seconds / max(sec_per_step, 1e-9))), spe, budget, stop_seconds=budget.seconds)


# ---------------------------------------------------------------------------------------------- state
@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    position: int = 0  # next batch index inside the epoch
    tokens: int = 0
    samples: int = 0
    elapsed: float = 0.0  # training seconds summed over sessions
    losses: list[float] = field(default_factory=list)
    total_steps: int = 0
    resumed_at: list[int] = field(default_factory=list)
    estimate: dict[str, Any] = field(default_factory=dict)
    skipped_steps: int = 0  # fp16: steps the loss scaler skipped (non-finite gradients)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _numpy_state_to_json() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _numpy_state_from_json(s: list) -> None:
    np.random.set_state((s[0], np.asarray(s[1], dtype=np.uint32), s[2], s[3], s[4]))


def _python_state_to_json() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _python_state_from_json(s: list) -> None:
    random.setstate((s[0], tuple(s[1]), s[2]))


class Checkpointer:
    """Writes and reads the checkpoint folder atomically (write beside, then swap)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def exists(self) -> bool:
        return (self.folder / "state.json").is_file()

    def step(self) -> Optional[int]:
        if not self.exists():
            return None
        return int(json.loads((self.folder / "state.json").read_text())["step"])

    def save(self, model: nn.Module, optimizer: Any, scheduler: Any, generator: torch.Generator,
             state: TrainState, scaler: Optional[dict[str, Any]] = None) -> None:
        tmp = self.folder.with_name(self.folder.name + ".tmp")
        try:
            self._write(tmp, model, optimizer, scheduler, generator, state, scaler)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # the half-written copy; the previous checkpoint is untouched
            kept = (f"the previous checkpoint (step {self.step()}) in {self.folder} is intact" if self.exists()
                    else "no checkpoint had been written yet")
            raise disk_full_error(self.folder, f"the refit checkpoint at step {state.step}", kept,
                                  f"finished refits you no longer need under {self.folder.parent.parent}, or "
                                  "the embedding cache under <home>/cache") from exc
        old = self.folder.with_name(self.folder.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if self.folder.exists():
            os.replace(self.folder, old)
        os.replace(tmp, self.folder)
        if old.exists():
            shutil.rmtree(old)

    @staticmethod
    def _write(tmp: Path, model: nn.Module, optimizer: Any, scheduler: Any, generator: torch.Generator,
               state: TrainState, scaler: Optional[dict[str, Any]]) -> None:
        from safetensors.torch import save_file, save_model

        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        rng = {"torch_cpu": torch.get_rng_state(), "mask_generator": generator.get_state()}
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda_{i}"] = s
        save_file(rng, str(tmp / "rng.safetensors"))
        payload = {**state.to_dict(), "numpy_rng": _numpy_state_to_json(), "python_rng": _python_state_to_json(),
                   "scaler": scaler}
        (tmp / "state.json").write_text(json.dumps(payload))
        write_checksums(tmp)  # last: a checkpoint is trusted only when every file matches what was written

    def discard_if_damaged(self) -> None:
        """Move the checkpoint aside (a warning names it) when a file does not match its checksum, so the refit
        starts over instead of resuming from damaged weights or optimizer state."""
        if not self.exists():
            return
        problems = verify_folder(self.folder)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            quarantine(self.folder, problems[0] + more,
                       then="the refit starts again from step 0 (a damaged checkpoint is never resumed)")

    def load(self, model: nn.Module, optimizer: Any, scheduler: Any, generator: torch.Generator,
             runtime: Optional[TrainingRuntime] = None) -> TrainState:
        from safetensors.torch import load_file, load_model

        load_model(model, str(self.folder / "model.safetensors"))
        optimizer.load_state_dict(torch.load(self.folder / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(self.folder / "scheduler.pt", weights_only=True))
        rng = load_file(str(self.folder / "rng.safetensors"))
        torch.set_rng_state(rng["torch_cpu"])
        try:
            generator.set_state(rng["mask_generator"])
        except RuntimeError as exc:  # the masking stream of another kind of device (a GPU's vs the CPU's)
            raise AdaptlabError(
                f"the refit checkpoint in {self.folder} was written on another kind of device than "
                f"{generator.device.type} ({exc}); resume it where it started, or delete the folder to start over."
            ) from exc
        if torch.cuda.is_available():
            states = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda_"))]
            if states:
                torch.cuda.set_rng_state_all(states)
        payload = json.loads((self.folder / "state.json").read_text())
        _numpy_state_from_json(payload.pop("numpy_rng"))
        _python_state_from_json(payload.pop("python_rng"))
        scaler = payload.pop("scaler", None)
        if runtime is not None:
            runtime.load_scaler_state(scaler)
        return TrainState(**payload)

    def remove(self) -> None:
        for f in (self.folder, self.folder.with_name(self.folder.name + ".tmp")):
            if f.exists():
                shutil.rmtree(f)


class _StopRequest:
    """Turns the first Ctrl-C / SIGTERM into a request to checkpoint and stop at the next step boundary.

    A second Ctrl-C interrupts at once (the last checkpoint is then the one on disk).
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):  # pragma: no cover - exotic embedders
                    pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------------------------- loop
def _optimizer(model: nn.Module, cfg: RefitConfig, total_steps: int) -> tuple[Any, Any]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    warmup = int(cfg.warmup_ratio * total_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def measure_seconds_per_step(model: nn.Module, corpus: TokenizedCorpus, batches: list[np.ndarray],
                             n_steps: int, generator: torch.Generator,
                             autocast: Callable[[], Any] = contextlib.nullcontext) -> dict[str, float]:
    """Time forward+backward on a few representative batches without changing weights or RNG streams.

    The cost of a step scales with its padded tokens, so the measured time is rescaled from the
    measured batches' padded size to the average padded size of the whole epoch.
    """
    torch_state, gen_state = torch.get_rng_state(), generator.get_state()
    picks = [batches[int(i)] for i in np.linspace(0, len(batches) - 1, num=min(n_steps + 1, len(batches)))]
    padded = np.array([len(b) * int(corpus.lengths[b].max()) for b in batches], dtype=np.float64)
    times, sizes = [], []
    try:
        for k, idx in enumerate(picks):
            ids, mask = corpus.collate(idx)
            t0 = time.perf_counter()
            with autocast():
                loss, _ = model(ids, mask, generator)
            loss.backward()
            if loss.is_cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            model.zero_grad(set_to_none=True)
            if k > 0 or len(picks) == 1:  # the first pass pays one-off allocation costs
                times.append(dt)
                sizes.append(len(idx) * int(corpus.lengths[idx].max()))
    finally:
        torch.set_rng_state(torch_state)
        generator.set_state(gen_state)
    # The median per-token time resists one slow pass (allocator warm-up, a busy neighbour).
    per_token = float(np.median(np.asarray(times) / np.maximum(1, np.asarray(sizes))))
    return {"seconds_per_step": per_token * float(padded.mean()), "measured_passes": len(times),
            "measured_seconds": float(np.sum(times))}


@dataclass
class TrainOutcome:
    state: TrainState
    plan: RefitPlan
    runtime: TrainingRuntime


def train(
    model: nn.Module,
    corpus: TokenizedCorpus,
    cfg: RefitConfig,
    *,
    budget: RefitBudget,
    seed: int,
    checkpoint_dir: Path,
    show_progress: bool = False,
    callback: Optional[StepCallback] = None,
    log: Callable[[str], None] = lambda _m: None,
    runtime: Optional[TrainingRuntime] = None,
) -> TrainOutcome:
    """Run (or resume) the refit loop on ``model`` in place. Call inside ``torch.random.fork_rng``.

    ``model(input_ids, attention_mask, generator) -> (loss, tokens)``; the caller seeded torch before
    building the model, so a fresh run is reproducible.

    Under ``accelerate launch`` every process runs this with the same arguments: each global batch is
    split across the processes (DDP averages the gradients), only the main process writes checkpoints,
    and stop decisions (wall-clock budget, Ctrl-C, divergence) are taken together.
    """
    rt = runtime or TrainingRuntime(cfg.mixed_precision, device=next(model.parameters()).device,
                                    name="refit.mixed_precision", find_unused_parameters=False)
    # Whole model, every time: an objective's own layers (the MLM head) are built on the CPU beside a
    # body that may already be on the GPU.
    model.to(rt.device)
    ckpt = Checkpointer(checkpoint_dir)
    # Process k > 0 masks from its own stream; process 0 draws what a one-process run draws. The generator
    # lives on the model's device, so a GPU masks its batches itself (the CPU stream is the one of before).
    generator = torch.Generator(device=rt.device).manual_seed(
        (int(seed) * 1_000_003 + 7 + 7_919 * rt.process_index) & 0x7FFFFFFFFFFFFFFF)
    guard = NonFiniteGuard(cfg.max_skipped_steps)
    model.train()
    batches0 = corpus.epoch_batches(cfg.batch_size, seed, 0)
    measured = measure_seconds_per_step(model, corpus, batches0, cfg.estimate_steps, generator, rt.autocast)
    if rt.is_main:
        ckpt.discard_if_damaged()
    rt.wait()
    resume_step = ckpt.step()
    plan = _session_plan(ckpt, resume_step, corpus, cfg, budget, measured)
    # A wall-clock plan comes from each process's own timing: every process follows the main one's.
    plan.total_steps = int(rt.broadcast(plan.total_steps))
    optimizer, scheduler = _optimizer(model, cfg, plan.total_steps)
    if resume_step is not None:
        state = ckpt.load(model, optimizer, scheduler, generator, runtime=rt)
        state.resumed_at.append(state.step)
        log(f"refit: resuming from the checkpoint at step {state.step}/{state.total_steps}")
    else:
        state = TrainState(total_steps=plan.total_steps)
    _estimate_session(state, plan, measured, corpus, cfg, budget, log)

    params = [p for p in model.parameters() if p.requires_grad]
    train_module = rt.wrap(model)
    stepper = rt.prepare_optimizer(optimizer)  # fp16: behind the loss scaler
    fp16 = rt.mixed_precision == "fp16"
    bar = None
    if show_progress and rt.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=plan.total_steps, initial=state.step, desc="refit", unit="step")
    reader = _LossReader(loss_read_interval(rt, callback), state, ckpt, cfg, fp16, bar)
    batches = corpus.epoch_batches(cfg.batch_size, seed, state.epoch) if state.epoch else batches0
    session_start = time.perf_counter()
    base_elapsed = state.elapsed
    last_ckpt_time = session_start
    try:
        with _StopRequest() as stop:
            while state.step < plan.total_steps:
                if plan.stop_tokens is not None and state.tokens >= plan.stop_tokens:
                    break
                if plan.stop_seconds is not None and rt.any(state.elapsed >= plan.stop_seconds):
                    break
                if state.position >= len(batches):
                    state.epoch += 1
                    state.position = 0
                    batches = corpus.epoch_batches(cfg.batch_size, seed, state.epoch)
                idx = batches[state.position]
                local = rt.shard(idx)
                idle = len(local) == 0  # a batch smaller than the number of processes
                ids, mask = corpus.collate(local if not idle else idx[:1])
                with rt.autocast():
                    loss, n_tokens = train_module(ids, mask, generator)
                if idle:
                    loss, n_tokens = loss * 0.0, 0
                value, n_tokens = reader.loss(rt, loss, n_tokens, idle)
                rt.backward(loss)
                reader.grad_norm(rt.clip_grad_norm_(params, cfg.max_grad_norm))
                stepper.step()
                # fp16: overflowing gradients skip the update (the scaler lowers its scale); too many in a
                # row is divergence. The schedule advances only with real updates.
                skipped = fp16 and rt.step_was_skipped
                if not skipped:
                    scheduler.step()
                else:
                    state.skipped_steps += 1
                guard.record(skipped=skipped, step=state.step + 1,
                             hint=f"Lower the learning rate (lr={cfg.lr:g}) or use mixed_precision='bf16'.")
                optimizer.zero_grad(set_to_none=True)
                rt.after_step()
                state.step += 1
                state.position += 1
                state.tokens += n_tokens
                state.samples += len(idx)
                reader.record(value)
                now = time.perf_counter()
                state.elapsed = base_elapsed + (now - session_start)
                if bar is not None:
                    bar.update(1)
                if callback is not None:
                    callback(state.step, value, model)
                last_ckpt_time = _checkpoint_if_due(rt, ckpt, cfg, state, plan, stop.requested or cancel_requested(),
                                                    now, last_ckpt_time,
                                                    params, (model, optimizer, scheduler, generator), reader.flush)
            reader.flush()
    finally:
        if bar is not None:
            bar.close()
        rt.unwrap(train_module)  # takes accelerate's autocast wrapper off the model's forward
    return TrainOutcome(state=state, plan=plan, runtime=rt)


def _checkpoint_if_due(rt: Any, ckpt: Any, cfg: Any, state: TrainState, plan: Any, stop_requested: bool, now: float,
                       last_ckpt_time: float, params: list, parts: tuple,
                       before_save: Callable[[], None] = lambda: None) -> float:
    """Save a checkpoint every ``checkpoint_every`` steps or ``checkpoint_minutes``, and on a stop request (then
    stop, saying how to resume); returns the time of the last checkpoint. ``before_save`` reads the losses
    not read yet, so the checkpoint holds them (and a diverged run stops before it writes)."""
    model, optimizer, scheduler, generator = parts
    due = (state.step % cfg.checkpoint_every == 0
           or rt.any(now - last_ckpt_time >= cfg.checkpoint_minutes * 60.0))
    requested = rt.any(stop_requested)
    if requested or (due and state.step < plan.total_steps):
        before_save()
        if rt.is_main and _weights_finite(params):
            ckpt.save(model, optimizer, scheduler, generator, state, scaler=rt.scaler_state())
        rt.wait()
        last_ckpt_time = time.perf_counter()
        if requested:
            # A cancel (web app, adaptlab.cancel) stops as a Ctrl-C does, with its own exception.
            stop = Cancelled if cancel_requested() else KeyboardInterrupt
            raise stop(
                f"refit interrupted at step {state.step}; the checkpoint is in {ckpt.folder}. "
                "Run the same command again to resume from it."
            )
    return last_ckpt_time


def _estimate_session(state: TrainState, plan: Any, measured: dict[str, Any], corpus: Any, cfg: Any, budget: Any,
                      log: Callable[[str], None]) -> None:
    """Estimate this session's time from the measured step time, say it, warn beyond ``max_hours``, and keep the
    first session's estimate in ``state.estimate`` (later sessions under ``last_session``)."""
    remaining = max(0, plan.total_steps - state.step)
    est_seconds = remaining * measured["seconds_per_step"]
    avg_tokens_per_step = float(corpus.lengths.mean()) * min(cfg.batch_size, len(corpus))
    estimate = {"seconds_per_step": measured["seconds_per_step"], "steps": remaining,
                "estimated_seconds": est_seconds, "measured_passes": measured["measured_passes"],
                "limit_hours": cfg.max_hours, "over_limit": False}
    if plan.stop_seconds is not None:
        estimate["estimated_seconds"] = est_seconds = min(est_seconds, plan.stop_seconds)
    log(f"refit: {plan.total_steps} steps ({budget}) on {len(corpus):,} texts; measured "
        f"{measured['seconds_per_step']:.3f} s/step -> estimated {_hms(est_seconds)}")
    limit = cfg.max_hours * 3600.0
    if est_seconds > limit:
        fit_steps = int(limit / max(measured["seconds_per_step"], 1e-9))
        estimate.update(over_limit=True, steps_that_fit=fit_steps, tokens_that_fit=int(fit_steps * avg_tokens_per_step))
        warnings.warn(RefitTimeWarning(
            f"the refit is estimated at {est_seconds / 3600:.1f} h ({remaining:,} steps x "
            f"{measured['seconds_per_step']:.3f} s), more than max_hours={cfg.max_hours:g}. About {fit_steps:,} "
            f"steps (~{estimate['tokens_that_fit']:,} tokens) fit in {cfg.max_hours:g} h: pass "
            f"budget='{fit_steps}steps' or budget='{cfg.max_hours:g}h'. Beyond {cfg.max_hours:g} h a quarterly "
            "rerun is an engineer-in-the-loop task, not something a review coordinator reruns."
        ), stacklevel=3)
    if not state.estimate:
        state.estimate = dict(estimate)  # the estimate made before the first step is the one reported
    else:
        state.estimate["last_session"] = dict(estimate)


def _session_plan(ckpt: Any, resume_step: Optional[int], corpus: Any, cfg: Any, budget: Any,
                  measured: dict[str, Any]) -> Any:
    """The step plan; a resumed refit keeps the total its first session planned (a wall-clock plan must not
    change between sessions)."""
    plan = make_plan(corpus, cfg.batch_size, budget, sec_per_step=measured["seconds_per_step"])
    if resume_step is not None:
        plan.total_steps = int(json.loads((ckpt.folder / "state.json").read_text())["total_steps"])
    return plan


#: Steps between reads of the loss and gradient norm on a GPU. A read waits for the device to finish the step,
#: so the host cannot queue the next one meanwhile; on a CPU a read costs nothing and happens every step.
LOSS_READ_EVERY = 16


def loss_read_interval(rt: TrainingRuntime, callback: Optional[Callable] = None) -> int:
    """Steps between loss reads: :data:`LOSS_READ_EVERY` on one GPU, every step on the CPU, with a per-step
    ``callback``, under DDP (the loss is averaged over the processes each step) and under fp16 (its
    loss scaler reads every step anyway)."""
    if torch.device(rt.device).type == "cpu" or callback is not None or rt.distributed or rt.mixed_precision == "fp16":
        return 1
    return LOSS_READ_EVERY


class _LossReader:
    """Reads each step's loss and gradient norm, stops the refit on a non-finite one, and records the loss.

    With ``every == 1`` (the CPU) it reads at once, before the backward pass for the loss, as the loop always
    did. With ``every > 1`` the values stay on the device and are read ``every`` steps (and before each
    checkpoint): a divergence is then caught up to ``every - 1`` steps later, still before any checkpoint
    is written with its weights.
    """

    def __init__(self, every: int, state: TrainState, ckpt: Any, cfg: RefitConfig, fp16: bool, bar: Any) -> None:
        self.every, self.state, self.ckpt, self.cfg, self.fp16, self.bar = every, state, ckpt, cfg, fp16, bar
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, loss, gradient norm)
        self._loss: Optional[torch.Tensor] = None

    def loss(self, rt: TrainingRuntime, loss: torch.Tensor, n_tokens: int, idle: bool) -> tuple[Optional[float], int]:
        """The step's loss (None while it is left on the device) and its tokens."""
        if self.every > 1:
            self._loss = loss.detach()
            return None, int(n_tokens)
        value, n_tokens = _step_stats(rt, loss, n_tokens, idle)
        if not math.isfinite(value) and not self.fp16:
            _diverged(self.state, value, "loss", self.ckpt, self.cfg)
        return value, n_tokens

    def grad_norm(self, norm: torch.Tensor) -> None:
        if self.every > 1:
            self.pending.append((self.state.step + 1, self._loss, torch.as_tensor(norm).detach()))
            return
        value = float(norm)
        if not math.isfinite(value) and not self.fp16:
            _diverged(self.state, value, "gradient norm", self.ckpt, self.cfg)

    def record(self, value: Optional[float]) -> None:
        """After the step: keep its loss, or read the pending ones when ``every`` steps are waiting."""
        if value is not None:
            self._keep(value)
        elif len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Read every pending step's loss and gradient norm (one wait for the device)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        values = torch.stack([torch.stack([l.float(), g.float()]) for _, l, g in pending]).cpu().tolist()
        for (step, _l, _g), (loss, norm) in zip(pending, values):
            for value, what in ((loss, "loss"), (norm, "gradient norm")):
                if not math.isfinite(value) and not self.fp16:
                    _diverged(self.state, value, what, self.ckpt, self.cfg, step=step)
            self._keep(loss)

    def _keep(self, value: float) -> None:
        if math.isfinite(value):
            self.state.losses.append(value)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{value:.4f}")


def _step_stats(rt: TrainingRuntime, loss: torch.Tensor, n_tokens: int, idle: bool) -> tuple[float, int]:
    """The step's loss (mean over the processes that had texts) and its tokens (summed over processes)."""
    if not rt.distributed:
        return float(loss.detach()), int(n_tokens)
    active = 0.0 if idle else 1.0
    stats = torch.stack([loss.detach().float() * active, torch.tensor(float(n_tokens), device=loss.device),
                         torch.tensor(active, device=loss.device)])
    total = rt.sum(stats).cpu().tolist()
    return total[0] / max(total[2], 1.0), int(total[1])


def _weights_finite(params: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params)


def _diverged(state: TrainState, value: float, what: str, ckpt: Checkpointer, cfg: RefitConfig,
              step: Optional[int] = None) -> None:
    last = next(((len(state.losses) - i, v) for i, v in enumerate(reversed(state.losses)) if math.isfinite(v)), None)
    last_txt = f"last finite loss {last[1]:.4f} at step {last[0]}" if last else "no finite loss yet"
    kept = ckpt.step()
    where = (f"The last good checkpoint (step {kept}) is kept in {ckpt.folder}."
             if kept is not None else "No checkpoint had been written yet.")
    raise RefitDivergedError(
        f"refit diverged at step {step or state.step + 1}: the {what} is {value} ({last_txt}). {where} "
        f"Lower the learning rate (lr={cfg.lr:g}, try {cfg.lr / 4:g}) or the clipping norm "
        f"(max_grad_norm={cfg.max_grad_norm:g}) and run again."
    )


def _hms(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
