"""Tiny checks on values read back from files and records (TOML study files, JSON summaries, diagnostics).

Shared by every stage (a shared module: it imports no stage, see ``pyproject.toml``'s import contracts), so a
number means the same to the study file, the rungs' configs, the decision and the report. ``bool`` is never a
number here, although Python's ``True`` is an ``int``: ``lr = true`` in a study file is a mistake to name.
"""
from __future__ import annotations

import math
import numbers
from typing import Any


def is_int(value: Any) -> bool:
    """True for an integer (Python's or numpy's), never for a bool.

    Example:
        >>> import numpy as np
        >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
        (True, True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any, *, finite: bool = True) -> bool:
    """True for an ``int`` or ``float`` that is not a bool; with ``finite`` (the default) not NaN or infinite.

    ``finite=False`` is a type check only (a study file's ``lr = inf`` is then the config's range check to refuse).

    Example:
        >>> is_number(0.5), is_number(2), is_number(True), is_number("1"), is_number(float("nan"))
        (True, True, False, False, False)
        >>> is_number(float("inf"), finite=False)
        True
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return not finite or math.isfinite(value)


__all__ = ["is_int", "is_number"]


#: Label cells read as "no label". "none" is deliberately absent: it is a common real class name ("no finding").
MISSING_LABEL_TOKENS = frozenset({"", "nan", "na", "null"})


def is_missing(value: object) -> bool:
    """True for None, NaN, pandas NA/NaT and the strings in :data:`MISSING_LABEL_TOKENS`; a list is a value.

    Example:
        >>> is_missing(None), is_missing(" NaN "), is_missing(float("nan")), is_missing("none"), is_missing([])
        (True, True, True, False, False)
    """
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in MISSING_LABEL_TOKENS
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (list, tuple, dict, set)) or type(value).__name__ == "ndarray":
        return False
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
