"""Where a training loop runs: device, mixed precision and processes, through 🤗 accelerate.

Both training loops (``rungs/training.py`` for the classification rungs, ``rungs/refit/train.py`` for
the domain refit) run through one :class:`TrainingRuntime`, so the same loop runs

* on the CPU, one process (the default; ``mixed_precision="bf16"`` uses CPU autocast);
* on one GPU, with ``mixed_precision="bf16"`` (where the GPU supports it) or ``"fp16"`` (with
  accelerate's dynamic loss scaling: a step whose scaled gradients overflow is skipped and the scale
  lowered; :class:`NonFiniteGuard` stops a run that keeps overflowing);
* on several GPUs (or CPU processes) under ``accelerate launch``/``torchrun``: the model is wrapped in
  DistributedDataParallel and every *global* batch the loop draws is split across the processes, so
  a run takes the same number of optimizer steps over the same texts whatever the number of
  processes, and a step budget means the same thing on 1 or 8 GPUs.

accelerate keeps one mixed-precision setting per process (``AcceleratorState`` is shared), while a
study trains rungs with different settings one after the other in the same process; each runtime
therefore resets that shared state before building its ``Accelerator``, as transformers' Trainer does.
The process group itself (``PartialState``) is never reset.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from adaptlab.config import TRAINING_PRECISIONS
from adaptlab.encoders.heap import bound_heap_growth, trim_heap
from adaptlab.errors import AdaptlabError, ConfigError

# What a config may ask for: a precision, or "auto" (bf16 where the hardware runs it natively, else "no";
# a Study also gates it on the first seed's validation F1, see adaptlab.evaluate.training_precision). One
# list with the study's own setting (StudyConfig.mixed_precision).
MIXED_PRECISION_REQUESTS = TRAINING_PRECISIONS
MIXED_PRECISIONS = tuple(p for p in MIXED_PRECISION_REQUESTS if p != "auto")


def world_size() -> int:
    """Processes of this run as set by ``accelerate launch`` / ``torchrun`` (1 when run directly)."""
    for var in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a launched multi-process run."""
    value = os.environ.get("RANK")
    return not (world_size() > 1 and value and value.isdigit() and int(value) != 0)


def check_mixed_precision(value: Any, name: str = "mixed_precision",
                          device: "str | torch.device | None" = None) -> str:
    """Validate a ``mixed_precision`` setting; returns it.

    With ``device`` (``"auto"``: the GPU when there is one) it also checks that the device can run it:
    fp16 needs a CUDA GPU, bf16 on a GPU needs one since Ampere. ``"auto"`` runs anywhere (it resolves to
    ``"no"`` where bf16 is not native, see :func:`resolve_mixed_precision`).

    Example:
        >>> check_mixed_precision("bf16", device="cpu")
        'bf16'
    """
    if value not in MIXED_PRECISION_REQUESTS:
        raise ConfigError.invalid(name, value, f"one of {', '.join(MIXED_PRECISION_REQUESTS)}",
                                  "'bf16' on recent GPUs (and CPUs); 'fp16' on older GPUs; 'no' for full float32; "
                                  "'auto' for bf16 where the hardware runs it natively.")
    if device is None or value == "auto":
        return value
    on_cpu = not torch.cuda.is_available() or (device != "auto" and torch.device(device).type == "cpu")
    if value == "fp16" and on_cpu:
        raise ConfigError.invalid(name, "fp16", "'no' or 'bf16' on a CPU",
                                  "fp16 needs a CUDA GPU (its loss scaler does not run on the CPU); use "
                                  "'bf16' there, or 'no'.")
    if value == "bf16" and not on_cpu and not torch.cuda.is_bf16_supported():
        raise ConfigError.invalid(name, "bf16", "'fp16' or 'no' on this GPU",
                                  "This GPU has no bfloat16 support (it predates Ampere); use fp16.")
    return value


def training_device() -> str:
    """The device a training loop runs on when none is given: ``"cuda"`` when there is a GPU, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_mixed_precision(value: str, device: "str | torch.device | None" = None) -> tuple[str, str]:
    """The precision a request means on ``device`` (default: :func:`training_device`) and why.

    ``"auto"`` is ``"bf16"`` where the device multiplies bf16 natively (a CPU with AVX-512-BF16 or AMX, a
    CUDA GPU since Ampere: the encoders' :func:`~adaptlab.encoders.fast.native_bf16`), else ``"no"``
    (float32); any other value is returned as asked. No gate here: a Study also checks bf16 against a
    short float32 run before it trusts it (:mod:`adaptlab.evaluate.training_precision`).

    Example:
        >>> resolve_mixed_precision("no")
        ('no', 'no requested')
    """
    from adaptlab.encoders.fast import native_bf16

    check_mixed_precision(value)
    if value != "auto":
        return value, f"{value} requested"
    dev = str(torch.device(device).type if device is not None else training_device())
    where = "this GPU" if dev == "cuda" else "this CPU"
    if native_bf16(dev):
        return "bf16", f"auto: {where} runs bf16 natively"
    return "no", (f"auto: {where} has no native bf16 (no AVX-512-BF16 or AMX on a CPU; a GPU before Ampere), "
                  "where bf16 is emulated and slower, so float32")


class NonFiniteStepsError(AdaptlabError):
    """fp16 training overflowed on too many consecutive steps (loss scaling could not recover)."""


class NonFiniteGuard:
    """Counts optimizer steps skipped because the loss or gradients were not finite.

    Under fp16 a few skipped steps are normal: the loss scaler starts high and halves its scale at
    each overflow. Many in a row mean the run diverged, and training stops with an error instead of
    spinning on without updating anything.

    Example:
        >>> guard = NonFiniteGuard(max_consecutive=2)
        >>> guard.record(skipped=True); guard.record(skipped=False); guard.skipped
        1
        >>> guard.record(skipped=True); guard.record(skipped=True)
        Traceback (most recent call last):
        ...
        adaptlab.rungs.runtime.NonFiniteStepsError: 2 optimizer steps in a row were skipped ...
    """

    def __init__(self, max_consecutive: int = 25) -> None:
        self.max_consecutive = int(max_consecutive)
        self.skipped = 0
        self.consecutive = 0

    def record(self, *, skipped: bool, step: int = 0, hint: str = "") -> None:
        if not skipped:
            self.consecutive = 0
            return
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteStepsError(
                f"{self.consecutive} optimizer steps in a row were skipped (non-finite loss or gradients under fp16 "
                f"loss scaling), the last at step {step}; the run diverged. {hint or ''}".rstrip()
            )


class TrainingRuntime:
    """One training run's accelerate ``Accelerator``: autocast, loss scaling, DDP and process helpers.

    Example:
        >>> rt = TrainingRuntime("no", device="cpu")
        >>> rt.num_processes, rt.is_main, rt.mixed_precision
        (1, True, 'no')
        >>> rt.shard(np.arange(5)).tolist()
        [0, 1, 2, 3, 4]
    """

    def __init__(self, mixed_precision: str = "no", *, device: "str | torch.device | None" = None,
                 name: str = "mixed_precision", find_unused_parameters: bool = True) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedDataParallelKwargs

        bound_heap_growth()  # flat resident memory over steps (see adaptlab.encoders.heap)
        dev = torch.device(device) if device is not None else None
        # "auto" outside a Study (a rung fitted directly) resolves by the hardware alone, without the gate.
        resolved = resolve_mixed_precision(check_mixed_precision(mixed_precision, name), dev)[0]
        self.mixed_precision = check_mixed_precision(resolved, name, device=dev if dev is not None else "auto")
        distributed = world_size() > 1
        cpu = dev is not None and dev.type == "cpu"
        AcceleratorState._reset_state(reset_partial_state=not distributed)
        # Parameters that a stage trains but the loss never reaches (BERT's pooler under mean pooling)
        # would stall DDP's gradient reduction without find_unused_parameters; a model whose loss
        # reaches every parameter (the refit objectives) turns it off and saves a graph traversal.
        self.accelerator = Accelerator(
            mixed_precision=self.mixed_precision, cpu=cpu, device_placement=False,
            step_scheduler_with_optimizer=False,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
        )
        self.num_processes = int(self.accelerator.num_processes)
        self.process_index = int(self.accelerator.process_index)
        self.is_main = bool(self.accelerator.is_main_process)
        # Single process: the model stays where the caller put it. Several: each process owns a device.
        self.device = dev if (dev is not None and self.num_processes == 1) else self.accelerator.device

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1

    def after_step(self) -> None:
        """After each optimizer step on a CPU, the heap's freed pages go back to the OS, so the resident size
        stays what is live instead of creeping up with every step (see adaptlab.encoders.heap.trim_heap)."""
        if self.device is not None and torch.device(self.device).type == "cpu":
            trim_heap()

    # ---------------------------------------------------------------- model and optimizer
    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training forward goes through: DDP over ``model`` when distributed.

        Call again whenever the set of trainable parameters changes (a new unfreezing stage).
        """
        if not self.distributed:
            return model
        return self.accelerator.prepare_model(model, device_placement=False)

    def unwrap(self, module: nn.Module) -> nn.Module:
        """The plain model behind :meth:`wrap`, without accelerate's autocast wrapper on ``forward``."""
        if not self.distributed:
            return module
        return self.accelerator.unwrap_model(module, keep_fp32_wrapper=False)

    def prepare_optimizer(self, optimizer: torch.optim.Optimizer) -> Any:
        """The optimizer behind accelerate's loss scaler (fp16); unchanged otherwise."""
        if self.accelerator.scaler is None:
            return optimizer
        return self.accelerator.prepare_optimizer(optimizer, device_placement=False)

    def autocast(self) -> Any:
        """Autocast context of this run's precision (a no-op for ``"no"``)."""
        if self.mixed_precision == "no":
            return contextlib.nullcontext()
        return self.accelerator.autocast()

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def clip_grad_norm_(self, params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
        """Unscale (fp16) then clip; returns the total norm before clipping (inf when fp16 overflowed)."""
        return self.accelerator.clip_grad_norm_(params, max_norm)

    @property
    def step_was_skipped(self) -> bool:
        """The last ``optimizer.step()`` was skipped by the fp16 loss scaler (inf/NaN gradients)."""
        return bool(self.accelerator.optimizer_step_was_skipped)

    def scaler_state(self) -> Optional[dict[str, Any]]:
        scaler = self.accelerator.scaler
        return None if scaler is None else scaler.state_dict()

    def load_scaler_state(self, state: Optional[dict[str, Any]]) -> None:
        if state and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state)

    # ---------------------------------------------------------------- processes
    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This process's part of one global batch (contiguous, sizes differ by at most one)."""
        if not self.distributed:
            return idx
        return np.array_split(np.asarray(idx), self.num_processes)[self.process_index]

    def wait(self) -> None:
        if self.distributed:
            self.accelerator.wait_for_everyone()

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any: keeps stop decisions in step."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item() > 0)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over processes (the tensor itself when single-process)."""
        if not self.distributed:
            return values
        return self.accelerator.reduce(values.to(self.accelerator.device), reduction="sum")

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj`` on every process."""
        if not self.distributed:
            return obj
        from accelerate.utils import broadcast_object_list

        box = [obj if self.is_main else None]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def gather(self, items: list[Any]) -> list[Any]:
        """Every process's list, concatenated in process order."""
        if not self.distributed:
            return list(items)
        from accelerate.utils import gather_object

        return list(gather_object(list(items)))

    def describe(self) -> dict[str, Any]:
        """What a manifest records about where the run trained."""
        return {"mixed_precision": self.mixed_precision, "num_processes": self.num_processes,
                "distributed_type": str(self.accelerator.distributed_type).split(".")[-1].lower(),
                "device": str(self.device)}


__all__ = ["MIXED_PRECISIONS", "MIXED_PRECISION_REQUESTS", "NonFiniteGuard", "NonFiniteStepsError", "TrainingRuntime",
           "check_mixed_precision", "is_main_process", "resolve_mixed_precision", "training_device", "world_size"]
