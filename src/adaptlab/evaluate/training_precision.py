"""``mixed_precision="auto"``: train in bf16 where the hardware runs it natively and it costs no accuracy.

A rung that trains the encoder (refit, lora, unfreeze, finetune, lpft) and asks for ``"auto"`` gets, before
any of its cells trains:

1. the hardware's answer (:func:`~adaptlab.rungs.runtime.resolve_mixed_precision`): float32 where bf16 is
   not native (it would be emulated and slower), and no gate;
2. where bf16 is native, a gate: the rung trains twice on the first seed's split for a few steps
   (:data:`GATE_STEPS`), in float32 and in bf16, same seed, same data order; bf16 is kept when its
   validation F1 is at most ``tolerance`` (the study's ``precision_tolerance``) below float32's.

The rung's cells then train in the precision chosen, and their result keys carry it: a cell resolved
to float32 has the key of a float32 rung (``mixed_precision`` is left out of keys at its default), so
the results of studies that never asked for ``"auto"`` stay valid. The decision is stored in
``home/precision_gates/`` under a key of the data, the split, the rung and the device, so a rerun (or
``adaptlab refit`` followed by ``study run``) reads it instead of training the gate again, and asks for
the same cells.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from adaptlab.data.dataset import TextDataset
from adaptlab.errors import ConfigError
from adaptlab.rungs.base import Rung, RungContext
from adaptlab.store import content_key

#: Optimizer steps of each of the two short gate runs (float32 and bf16).
GATE_STEPS = 20
_SCHEMA = 2  # 2: the gate trains on samples of the split (at most GATE_MAX_TEXTS a part)


@dataclass
class TrainingPrecisionChoice:
    """What ``mixed_precision="auto"`` became for one rung, and the evidence.

    ``used`` is ``"bf16"`` or ``"no"`` (float32); ``fp32_f1`` / ``bf16_f1`` are the validation F1 of the
    two gate runs (``None`` when the gate did not run: no native bf16); ``message`` says it in a sentence.
    """

    rung: str
    used: str
    tolerance: float
    fp32_f1: Optional[float] = None
    bf16_f1: Optional[float] = None
    steps: int = 0
    seed: Optional[int] = None
    seconds: float = 0.0
    message: str = ""
    requested: str = "auto"

    @property
    def precision(self) -> str:
        """``"bf16"`` or ``"fp32"``: the name a report shows."""
        return "fp32" if self.used == "no" else self.used

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "precision": self.precision}


def _gate_rung(rung: Rung, precision: str, steps: int) -> tuple[Rung, Optional[Any]]:
    """``rung`` set to train ``steps`` steps in ``precision``, and the study budget it needs (None: its own)."""
    from adaptlab.config import Budget

    if rung.name == "refit":  # the refit has a budget of its own
        return type(rung)(replace(rung.config, mixed_precision=precision, budget=f"{steps}steps")), None
    return (type(rung)(replace(rung.config, mixed_precision=precision, budget=None)),
            Budget.parse(f"{steps}steps"))


def gate_validation_f1(rung: Rung, precision: str, train: TextDataset, val: TextDataset, *, seed: int,
                       context: RungContext, home: Path, steps: Optional[int] = None) -> float:
    """Validation F1 of ``rung`` trained ``steps`` steps in ``precision`` (``"no"`` or ``"bf16"``) on one split.

    It trains in ``home`` (its refits and checkpoints go there, not with the study's) and without the
    embedding cache (its encoders are thrown away).
    """
    gated, budget = _gate_rung(rung, precision, steps or GATE_STEPS)
    ctx = replace(context, cache=None, home=home, show_progress=False,
                  budget=budget if budget is not None else context.budget)
    fitted = gated.fit(train, val, seed=seed, context=ctx)
    return float(fitted.val_scores_["f1"])


def gate_key(rung: Rung, context: RungContext, data_hash: str, split_fingerprint: str, seed: int,
             tolerance: float, device: str) -> str:
    """The stored decision's key: everything that could change the gate's two numbers."""
    import torch

    from adaptlab.encoders.fast import _cpu_flags

    hardware = (torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available()
                else sorted({"avx512_bf16", "amx_bf16"} & _cpu_flags()))
    return content_key("precision-gate", _SCHEMA, data_hash, split_fingerprint, rung.identity(context), seed,
                       float(tolerance), GATE_STEPS, device, hardware, torch.__version__)


def choose_training_precision(
    rung: Rung, train: TextDataset, val: TextDataset, *, seed: int, context: RungContext, tolerance: float,
    home: Path, key: str, say: Callable[[str], None] = lambda _m: None, can_train: bool = True,
    asked: bool = True,
) -> TrainingPrecisionChoice:
    """What ``rung`` (whose ``mixed_precision`` is ``"auto"``) trains in, from the stored decision or the gate.

    ``can_train=False`` (a multi-process launch, whose processes cannot each train the gate) needs the
    decision stored by an earlier single-process run, or native float32 hardware; without either, a rung
    that asked for ``"auto"`` itself fails, and one that only took the study's default (``asked=False``)
    trains in float32, as it did before ``"auto"`` was the default.

    Example:
        >>> choice = choose_training_precision(rung, train, val, seed=0, context=ctx, tolerance=0.005,
        ...                                    home=tmp, key="k")  # doctest: +SKIP
        >>> choice.message  # doctest: +SKIP
        'auto: bf16 accepted for finetune: validation F1 0.9120 vs float32 0.9135 (-0.15 points; ...)'
    """
    from adaptlab.rungs.runtime import resolve_mixed_precision, training_device

    device = str(getattr(context.encoder, "device", None) or training_device())
    target, why = resolve_mixed_precision("auto", device.split(":")[0])
    if target == "no":
        return TrainingPrecisionChoice(rung.name, "no", tolerance, message=f"{rung.name}: {why}")
    stored = home / "precision_gates" / f"{key}.json"
    if stored.exists():
        return TrainingPrecisionChoice(**json.loads(stored.read_text(encoding="utf-8")))
    if not can_train and not asked:
        return TrainingPrecisionChoice(
            rung.name, "no", tolerance, message=(
                f"{rung.name}: {why}, but the float32-vs-bf16 check cannot run under a multi-process launch: "
                "training in float32. Run the study once without the launcher (it stores the check), or set "
                "mixed_precision='bf16'."))
    if not can_train:
        raise ConfigError(
            f"{rung.name}.mixed_precision='auto' needs a short float32-vs-bf16 check that a multi-process launch "
            f"cannot run; run the study once without the launcher (it stores the decision), or set "
            f"{rung.name}.mixed_precision to 'bf16' or 'no'.")
    say(f"{rung.name}: {why}; checking bf16 against float32 on the validation split of seed {seed} "
        f"({GATE_STEPS} steps each, tolerance {tolerance * 100:.2f} F1 points) ...")
    work = home / "precision_gates" / key
    t0 = time.perf_counter()
    try:
        f32 = gate_validation_f1(rung, "no", train, val, seed=seed, context=context, home=work)
        f16 = gate_validation_f1(rung, "bf16", train, val, seed=seed, context=context, home=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the gate's refits and checkpoints are not kept
    choice = _decide(rung.name, why, f32, f16, tolerance, seed, time.perf_counter() - t0)
    stored.parent.mkdir(parents=True, exist_ok=True)
    tmp = stored.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: v for k, v in asdict(choice).items()}, sort_keys=True), encoding="utf-8")
    tmp.replace(stored)
    return choice


def _decide(name: str, why: str, f32: float, f16: float, tolerance: float, seed: int,
            seconds: float) -> TrainingPrecisionChoice:
    drop = f32 - f16
    points = (f"validation F1 {f16:.4f} vs float32 {f32:.4f} ({-drop * 100:+.2f} points; tolerance "
              f"{tolerance * 100:.2f} points; {GATE_STEPS} steps each on seed {seed})")
    # A hair of slack so that equal scores computed in different orders are never rejected.
    used = "bf16" if drop <= tolerance + 1e-12 else "no"
    verdict = (f"bf16 accepted: {points}" if used == "bf16" else
               f"bf16 rejected, training in float32: {points}. Raise precision_tolerance "
               "(--precision-tolerance) to accept the loss, or set mixed_precision='bf16'")
    return TrainingPrecisionChoice(name, used, tolerance, f32, f16, GATE_STEPS, seed, round(seconds, 3),
                                   f"{name}: {why}; {verdict}")


def resolved_rung(rung: Rung, choice: TrainingPrecisionChoice) -> Rung:
    """``rung`` with ``mixed_precision`` set to what ``"auto"`` became (its result keys then carry it)."""
    return type(rung)(replace(rung.config, mixed_precision=choice.used))


__all__ = ["GATE_STEPS", "TrainingPrecisionChoice", "choose_training_precision", "gate_key", "gate_validation_f1",
           "resolved_rung"]
