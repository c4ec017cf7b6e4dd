"""Cells safe to open in a spreadsheet: text a spreadsheet would run as a formula is neutralised.

Every CSV / TSV file adaptlab writes (predictions, rejects, label issues, suggestions, placements, the
web app's label decisions) quotes user text: labels, ids, texts. Excel, LibreOffice and Google Sheets
run a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (``=cmd|' /C calc'!A0`` starts a
program on an unpatched Excel), and a leading tab or carriage return hides such a start. OWASP's rule
(CSV injection) is applied: a text cell that starts with one of :data:`FORMULA_TRIGGERS` gets a single
quote in front, which spreadsheets show as text and do not store. Numbers are never touched: a number
column keeps ``-0.5``, and a text cell that is a plain number (``-3``, ``+1.5e3``) cannot run anything, so
it is written as it is.

JSON Lines and Parquet outputs keep the exact values (they are not opened as spreadsheets).
Files adaptlab writes only to read back itself are written as JSON Lines, so their values stay exact.
"""
from __future__ import annotations

import csv
import re
from typing import Any, Iterable, TextIO

__all__ = ["FORMULA_TRIGGERS", "safe_cell", "safe_row", "safe_frame", "SafeCsvWriter"]

#: First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

# A plain number, as a spreadsheet reads one: harmless even though it may start with + or -.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """The value to write in a CSV cell: text that would start a formula gets a leading single quote.

    Only strings change; numbers, None and other values are returned as they are.

    Example:
        >>> safe_cell("=cmd|' /C calc'!A0"), safe_cell("@SUM(A1)"), safe_cell("sport")
        ("'=cmd|' /C calc'!A0", "'@SUM(A1)", 'sport')
        >>> safe_cell(-0.5), safe_cell("-0.5"), safe_cell("-1+2")
        (-0.5, '-0.5', "'-1+2")
    """
    if isinstance(value, str) and value[:1] in FORMULA_TRIGGERS and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_row(row: Iterable[Any]) -> list[Any]:
    """One CSV row with every cell passed through :func:`safe_cell`.

    Example:
        >>> safe_row(["7", "=1+1", 0.25])
        ['7', "'=1+1", 0.25]
    """
    return [safe_cell(v) for v in row]


def safe_frame(frame: Any) -> Any:
    """A copy of a pandas DataFrame whose text cells and column names are safe (numeric columns untouched).

    Example:
        >>> import pandas as pd
        >>> out = safe_frame(pd.DataFrame({"label": ["=A1", "ok"], "score": [-0.5, 0.25]}))
        >>> out["label"].tolist(), out["score"].tolist()
        (["'=A1", 'ok'], [-0.5, 0.25])
    """
    out = frame.copy()
    for col in out.columns:
        # Object columns hold the strings (and ids of mixed type); number columns cannot start a formula.
        if out[col].dtype == object or str(out[col].dtype) in ("string", "str"):
            out[col] = out[col].map(safe_cell)
    out.columns = [safe_cell(c) for c in out.columns]
    return out


class SafeCsvWriter:
    """A :func:`csv.writer` whose rows are neutralised with :func:`safe_row`.

    Example:
        >>> import io
        >>> buf = io.StringIO()
        >>> w = SafeCsvWriter(buf, lineterminator="\\n")
        >>> w.writerow(["id", "label"]); w.writerows([[1, "+SUM(A1)"]])
        >>> buf.getvalue()
        "id,label\\n1,'+SUM(A1)\\n"
    """

    def __init__(self, fh: TextIO, **kwargs: Any) -> None:
        self._writer = csv.writer(fh, **kwargs)

    def writerow(self, row: Iterable[Any]) -> None:
        """Write one row (safe cells)."""
        self._writer.writerow(safe_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        """Write many rows (safe cells)."""
        self._writer.writerows(safe_row(r) for r in rows)
