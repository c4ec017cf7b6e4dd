"""Where learned costs are kept: the machine they were measured on and the key of the work measured.

The run store (:meth:`adaptlab.store.RunStore.learn_cost`) keeps, per machine and key, a correction of
the calibrated costs learned from every trained run: the next ``plan`` and study on that machine start
from it.

Example:
    >>> cost_key(None, "bf16", "cpu")
    'encoder|bf16|cpu'
"""
from __future__ import annotations

import os
import platform
from typing import Any


def machine_id() -> str:
    """The machine a cost was measured on: CPU model, cores and torch version (a container's host name
    changes every time; the cost of a step does not)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        version = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        version = "?"
    return f"{model} | {os.cpu_count()} cpus | torch {version}"


def cost_key(encoder: Any, mixed_precision: str, device: str) -> str:
    """The key a learned cost correction is kept under, besides the machine: the encoder, the training
    precision and the device (a bf16 step and a float32 step of another encoder cost differently)."""
    return f"{getattr(encoder, 'fingerprint', None) or 'encoder'}|{mixed_precision}|{device}"
