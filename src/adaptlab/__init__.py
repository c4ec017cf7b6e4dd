"""adaptlab: reuse the pretrained text encoder frozen, or adapt it? Answer with evidence.

The names a notebook starts from are importable from the top (loaded on first use, so ``import adaptlab``
stays instant); each lives in its stage's package.

Example:
    >>> import adaptlab
    >>> adaptlab.load_dataset is adaptlab.data.load_dataset
    True
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it (the stage's public package).
_LAZY = {
    "load_dataset": "adaptlab.data",
    "TextDataset": "adaptlab.data",
    "StudyConfig": "adaptlab.config",
    "Study": "adaptlab.evaluate",
    "StudyResult": "adaptlab.evaluate",
    "decide": "adaptlab.decide",
    "Decision": "adaptlab.decide",
    "Pipeline": "adaptlab.ship",
    "load_pipeline": "adaptlab.ship",
    "load_model": "adaptlab.ship",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """``adaptlab.load_dataset`` and the other notebook names of :data:`_LAZY`, imported when first used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adaptlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
