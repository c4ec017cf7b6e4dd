"""Read labeled (or unlabeled) texts from CSV, TSV, JSON Lines or Parquet into a `TextDataset`.

Row numbers (``TextDataset.rows``, and every row in error messages) point back into the file:

* CSV/TSV: the record number, header not counted. Row 1 is the first record under the header, i.e.
  spreadsheet row 2. Blank lines are skipped and a quoted field spanning several lines is one record.
* JSON Lines: the line number in the file (blank lines are counted, so it matches an editor).
* Parquet: the record number, starting at 1.

Encoding: files are read as UTF-8 (a BOM is accepted; a UTF-16 file with a BOM is decoded as such).
A file that is not valid UTF-8 is never decoded by guesswork: the error says whether it looks like a
legacy single-byte encoding (pass ``encoding="cp1252"``) or mixes encodings line by line (re-save it).

The records come from :func:`adaptlab.data.reader.open_records`, the reader `adaptlab predict` streams
with, so both read a file the same way; this module collects them into columns and validates them.
"""
from __future__ import annotations

import codecs
import difflib
import gzip
import logging
import re
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union, overload

import numpy as np
import pandas as pd

from adaptlab.data.dataset import TextDataset
from adaptlab.data.multilabel import check_task, detect_task, label_sets_from_columns, parse_label_sets
from adaptlab.data.reader import (  # noqa: F401  (codec_for, other_separator: part of this module's API before)
    SUPPORTED_SUFFIXES,
    RecordReader,
    check_input_file,
    codec_for,
    detect_format,
    open_records,
    other_separator,
)
from adaptlab.data.validate import ROW_LEVEL_CODES, _validate_positions, is_missing
from adaptlab.errors import ConfigError, DataError, DataValidationError, Problem, excerpt, excerpt_repr

__all__ = [
    "load_dataset",
    "LoadReport",
    "DroppedRow",
    "DroppedRowsWarning",
    "TEXT_COLUMN_CANDIDATES",
    "LABEL_COLUMN_CANDIDATES",
    "SUPPORTED_SUFFIXES",
]

logger = logging.getLogger(__name__)

#: Column names tried, in order, when ``text_col`` is not given (compared case-insensitively).
TEXT_COLUMN_CANDIDATES = ("text", "sentence", "content", "abstract", "document", "body")
#: Column names tried, in order, when ``label_col`` is not given (compared case-insensitively).
LABEL_COLUMN_CANDIDATES = ("label", "labels", "target", "class", "category", "y")
_INTEGRAL_FLOAT = re.compile(r"^[+-]?\d+\.0+$")
# Digit strings this long are not dates written out (20240131 has 8 digits) but Unix epoch seconds.
_EPOCH = re.compile(r"^[+-]?\d{9,}(\.\d*)?$")
_NS_MIN = np.datetime64("1677-09-22T00:00:00", "us")
_NS_MAX = np.datetime64("2262-04-11T00:00:00", "us")


OnInvalid = Literal["error", "drop"]


class DroppedRowsWarning(UserWarning):
    """``load_dataset(..., on_invalid="drop")`` removed rows and the caller did not ask for the report.

    Example:
        >>> import warnings
        >>> from pathlib import Path
        >>> from adaptlab.data import DroppedRowsWarning, load_dataset
        >>> rows = "text,label\\ngreat film,pos\\nfine film,pos\\n,neg\\nawful film,neg\\nbad film,neg\\n"
        >>> _ = Path("reviews.csv").write_text(rows, encoding="utf-8")  # row 3 has no text
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     ds = load_dataset("reviews.csv", on_invalid="drop")
        >>> len(ds), [w.category is DroppedRowsWarning for w in caught]
        (4, [True])
    """


@dataclass
class DroppedRow:
    """A row that ``on_invalid="drop"`` removed, with the reasons (problem codes).

    Example:
        >>> from pathlib import Path
        >>> from adaptlab.data import load_dataset
        >>> rows = "text,label\\ngreat film,pos\\nfine film,pos\\n,neg\\nawful film,neg\\nbad film,neg\\n"
        >>> _ = Path("reviews.csv").write_text(rows, encoding="utf-8")  # row 3 has no text
        >>> ds, report = load_dataset("reviews.csv", on_invalid="drop", return_report=True)
        >>> dropped = report.dropped[0]
        >>> dropped.row, dropped.codes
        (3, ['empty_text'])
    """

    row: int
    id: str
    codes: list[str]
    text: str  # a short preview, so the user can find the row


@dataclass
class LoadReport:
    """What :func:`load_dataset` read, which columns it used, and what it dropped or warned about.

    Attributes:
        source: The file path.
        format: ``csv``, ``tsv``, ``jsonl`` or ``parquet``.
        encoding: The text encoding used (None for Parquet).
        columns: The column used for each role (``text``, ``label``, ``group``, ``time``, ``id``), or
            None when the role is not used.
        n_read: Rows read from the file.
        dropped: Rows removed by ``on_invalid="drop"``, each with its reasons.
        problems: Every problem found in the file as read, before anything was dropped.
        warnings: Warnings that still apply to the returned dataset.

    Example:
        >>> from pathlib import Path
        >>> from adaptlab.data import load_dataset
        >>> rows = "text,label\\ngreat film,pos\\nfine film,pos\\n,neg\\nawful film,neg\\nbad film,neg\\n"
        >>> _ = Path("reviews.csv").write_text(rows, encoding="utf-8")  # row 3 has no text
        >>> ds, report = load_dataset("reviews.csv", on_invalid="drop", return_report=True)
        >>> report.format, report.n_read, report.n_kept, [d.row for d in report.dropped]
        ('csv', 5, 4, [3])
        >>> report.columns["text"], report.columns["label"]
        ('text', 'label')
    """

    source: str
    format: str
    encoding: Optional[str]
    columns: dict[str, Optional[str]]
    n_read: int
    dropped: list[DroppedRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    task: str = "single"
    task_note: str = ""  # how the task was chosen ("detected: ..." or "given"); "" for a plain single-label file

    @property
    def n_kept(self) -> int:
        """Rows in the returned dataset: rows read minus rows dropped."""
        return self.n_read - len(self.dropped)

    def summary(self) -> str:
        """A few lines a person can read."""
        enc = f", {self.encoding}" if self.encoding else ""
        lines = [f"Loaded {self.source} ({self.format}{enc}): {self.n_read} rows read, {self.n_kept} kept."]
        used = ", ".join(f"{role}={excerpt_repr(col)}" for role, col in self.columns.items() if col is not None)
        lines.append(f"Columns: {used}.")
        if self.task_note:
            lines.append(f"Task: {self.task} ({self.task_note}).")
        if self.dropped:
            reasons = Counter(c for d in self.dropped for c in d.codes)
            why = ", ".join(f"{code} x{n}" for code, n in reasons.most_common())
            rows = ", ".join(str(d.row) for d in self.dropped[:10])
            more = f" and {len(self.dropped) - 10} more" if len(self.dropped) > 10 else ""
            lines.append(f"Dropped {len(self.dropped)} row(s) ({why}): rows {rows}{more}.")
        lines += [f"Warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for run manifests)."""
        return {
            "source": self.source,
            "format": self.format,
            "encoding": self.encoding,
            "columns": dict(self.columns),
            "n_read": self.n_read,
            "n_kept": self.n_kept,
            "dropped": [asdict(d) for d in self.dropped],
            "problems": [asdict(p) for p in self.problems],
            "warnings": [asdict(p) for p in self.warnings],
            # Only for multi-label data, so single-label manifests stay byte for byte as they were.
            **({"task": self.task, "task_note": self.task_note} if self.task != "single" else {}),
        }


@dataclass
class _Table:
    """A file's columns as Python lists, with the source row number of each record."""

    columns: list[str]
    get: Any  # callable: column name -> list of values
    rows: list[int]
    fmt: str
    encoding: Optional[str]
    source: str = ""


# --------------------------------------------------------------------------------------- reading


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _fmt_lines(lines: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def _decode(data: bytes, encoding: Optional[str], name: str) -> tuple[str, str]:
    """Bytes to text. Returns the text and the encoding used."""
    if encoding is not None:
        codec = codec_for(encoding)
        try:
            return data.decode(codec), encoding
        except UnicodeDecodeError as e:
            raise DataError(
                f"{name} cannot be decoded as {encoding}: byte 0x{data[e.start]:02X} on line "
                f"{_line_of(data, e.start)} is not valid in that encoding. Fix: pass the encoding the file "
                f"was saved with (CLI: --encoding NAME), or re-save the file as UTF-8."
            ) from None

    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # A UTF-16 BOM is unambiguous (Excel's "Unicode text" export), so no guessing is involved.
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as first_error:
        first_bad = first_error.start

    utf8_lines: list[int] = []
    bad_lines: list[int] = []
    utf8_sample = ""
    for n, line in enumerate(data.split(b"\n"), start=1):
        if line.isascii():
            continue
        try:
            decoded = line.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.append(n)
            continue
        utf8_lines.append(n)
        if not utf8_sample:
            k = next(i for i, ch in enumerate(decoded) if ord(ch) > 127)
            utf8_sample = decoded[max(0, k - 12) : k + 12].strip()

    byte = data[first_bad]
    as_cp1252 = bytes([byte]).decode("cp1252", errors="replace")
    if utf8_lines and bad_lines:
        raise DataError(
            f"{name} mixes text encodings: line(s) {_fmt_lines(utf8_lines)} are UTF-8 (e.g. {utf8_sample!r}) "
            f"but line(s) {_fmt_lines(bad_lines)} are not valid UTF-8 (e.g. byte 0x{byte:02X} on line "
            f"{_line_of(data, first_bad)}, {as_cp1252!r} in cp1252). Lines are counted from the top of the "
            "file, header included. This happens when text from different programs is pasted into one "
            "file, and no single encoding reads it correctly. Fix: open the file in an editor, correct the "
            "characters on the non-UTF-8 lines and re-save the file as UTF-8."
        )
    try:
        data.decode("cp1252")
        guess = "cp1252"
    except UnicodeDecodeError:
        guess = "latin-1"
    raise DataError(
        f"{name} is not UTF-8: byte 0x{byte:02X} on line {_line_of(data, first_bad)} is not valid UTF-8 "
        f"({len(bad_lines)} line(s) affected). It looks like cp1252/latin-1, the encoding Excel and many "
        f"Windows programs write. Fix: pass encoding=\"{guess}\" (CLI: --encoding {guess}), or re-save the "
        "file as UTF-8. If accented characters then look wrong, the file uses another encoding "
        "(e.g. shift_jis, gbk): pass that one."
    )


def _read_table(path: Path, encoding: Optional[str]) -> _Table:
    """The file's columns, read record by record through the shared reader (`adaptlab.data.reader`)."""
    try:
        with open_records(path, encoding=encoding, strict_bytes=True) as records:
            if records.fmt == "parquet":
                return _collect_parquet(records, path)
            collect = _collect_jsonl if records.fmt == "jsonl" else _collect_csv
            return collect(records, path)
    except UnicodeDecodeError:
        # Stopped at the first bad byte; reread the bytes once to say which lines and which encoding.
        _decode(_raw_bytes(path), encoding, str(path))
        raise DataError(f"{path} cannot be decoded. Fix: re-save the file as UTF-8.") from None


#: The source name of a dataset loaded from a pandas DataFrame (in messages, ``TextDataset.source``).
DATAFRAME_SOURCE = "DataFrame"


def _as_path(path: Any) -> Path:
    """A file argument as a Path; anything else (a list, a Series, a dict) is a clear error, not a TypeError."""
    if isinstance(path, (str, Path)) or hasattr(path, "__fspath__"):
        return Path(path).expanduser()
    raise ConfigError(
        f"load_dataset reads a file path or a pandas DataFrame, not a {type(path).__name__}. Fix: pass the path "
        "of a CSV / JSONL / Parquet file, or pandas.DataFrame({'text': texts, 'label': labels}); a TextDataset "
        "is built directly with TextDataset(texts, labels)."
    )


def _frame_table(df: pd.DataFrame) -> _Table:
    """A DataFrame's columns as a :class:`_Table` (column names as strings; rows numbered from 1)."""
    names = [str(c) for c in df.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"the DataFrame has duplicate column names {dupes}. Fix: rename them so each is unique "
                        "(df.columns = [...]).")
    if len(df) == 0:
        raise DataError(f"the DataFrame has columns ({show_columns(names)}) but no rows. Fix: check that you "
                        "passed the right frame.")
    by_name = dict(zip(names, df.columns))
    return _Table(columns=names, get=lambda c: df[by_name[c]].tolist(), rows=list(range(1, len(df) + 1)),
                  fmt="dataframe", encoding=None, source=DATAFRAME_SOURCE)


def _raw_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.lower().endswith(".gz") else data


def _collect_csv(records: RecordReader, path: Path) -> _Table:
    n_cols = len(records.columns)
    values: list[list[str]] = [[] for _ in range(n_cols)]
    rows: list[int] = []
    for rec in records:
        fields = rec.values
        if rec.problem is not None and not (rec.problem[0] == "wrong_field_count" and len(fields) < n_cols):
            kind = "TSV" if records.fmt == "tsv" else "CSV"
            raise DataError(
                f"{path} is not valid {kind}: {rec.problem[1]} (line {rec.line}). Fix: quote fields that contain "
                "the separator or line breaks (\"like, this\"), or save the file again from a spreadsheet "
                "program with 'CSV UTF-8'."
            )
        if len(fields) < n_cols:  # a short record reads as empty trailing fields, as pandas reads it
            fields = fields + [""] * (n_cols - len(fields))
        for column, v in zip(values, fields):
            column.append(v)
        rows.append(rec.number)
    if not rows:
        raise DataError(
            f"{path} has a header ({', '.join(excerpt(c) for c in records.columns[:10])}) but no data rows. "
            "Fix: check that you passed the right file."
        )
    by_name = dict(zip(records.columns, values))
    return _Table(columns=records.columns, get=by_name.__getitem__, rows=rows, fmt=records.fmt,
                  encoding=records.encoding)


def _collect_jsonl(records: RecordReader, path: Path) -> _Table:
    objects: list[dict] = []
    rows: list[int] = []
    for rec in records:
        if rec.problem is not None:
            raise DataError(
                f"{path} line {rec.line} {rec.problem[1].removeprefix('the line ')}: {rec.preview[:80]!r}. Fix: "
                "each line must hold one JSON object, e.g. {\"text\": \"...\", \"label\": \"...\"}."
            )
        objects.append(rec.values)
        rows.append(rec.line)
    if not objects:
        raise DataError(f"{path} has no JSON records. Fix: check that you passed the right file.")
    columns = list(dict.fromkeys(k for r in objects for k in r))
    return _Table(columns=columns, get=lambda c: [r.get(c) for r in objects], rows=rows, fmt="jsonl",
                  encoding=records.encoding)


def _collect_parquet(records: Any, path: Path) -> _Table:
    import pyarrow as pa

    table = pa.Table.from_batches(list(records.batches()), schema=records.schema)
    if table.num_rows == 0:
        raise DataError(f"{path} has no rows. Fix: check that you passed the right file.")
    return _Table(columns=records.columns, get=lambda c: table.column(c).to_pylist(),
                  rows=list(range(1, table.num_rows + 1)), fmt="parquet", encoding=None)


# --------------------------------------------------------------------------------------- columns


def show_columns(columns: list[str]) -> str:
    # Bounded: a 50 MB line read as a header is one 50 MB column name.
    shown = ", ".join(excerpt_repr(c) for c in columns[:20])
    return shown + (f" and {len(columns) - 20} more" if len(columns) > 20 else "")


def _find_default(columns: list[str], candidates: tuple[str, ...]) -> Optional[str]:
    by_key = {}
    for c in columns:
        by_key.setdefault(c.strip().lower(), c)
    for cand in candidates:
        if cand in columns:
            return cand
        if cand in by_key:
            return by_key[cand]
    return None


def resolve_column(
    role: str, given: Optional[str], columns: list[str], path: Path, candidates: tuple[str, ...] = (),
    required: bool = True,
) -> Optional[str]:
    flag = f"--{role}-col"
    if given is not None:
        if given in columns:
            return given
        close = difflib.get_close_matches(given, columns, n=1, cutoff=0.6)
        ci = [c for c in columns if c.strip().lower() == str(given).strip().lower()]
        suggestion = ci[0] if ci else (close[0] if close else None)
        did = f" Did you mean {excerpt_repr(suggestion)}?" if suggestion else ""
        raise DataError(
            f"{path}: {role}_col={excerpt_repr(given)} is not a column.{did} Columns in the file: "
            f"{show_columns(columns)}. "
            f"Fix: pass {role}_col=NAME (CLI: {flag} NAME) with one of these names."
        )
    if not candidates:
        return None
    found = _find_default(columns, candidates)
    if found is None and required:
        extra = ""
        if role == "label":
            extra = " If the file is unlabeled, pass require_labels=False."
        raise DataError(
            f"{path}: no {role} column found (looked for {', '.join(candidates)}). Columns in the file: "
            f"{show_columns(columns)}. Fix: pass {role}_col=NAME (CLI: {flag} NAME).{extra}"
        )
    return found


# --------------------------------------------------------------------------------------- values


def _scalar_to_str(v: object) -> Optional[str]:
    """A label/group/id value as a string; None when missing. Raises TypeError for containers."""
    if is_missing(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return str(int(f)) if f.is_integer() else str(f)
    if isinstance(v, str):
        s = v.strip()
        # "1.0" in a CSV is what pandas writes for an integer column with gaps; it means class "1".
        return str(int(float(s))) if _INTEGRAL_FLOAT.match(s) else s
    if isinstance(v, (list, tuple, dict, set, np.ndarray)):
        raise TypeError(type(v).__name__)
    return str(v)


def _convert_column(values: list, role: str, col: str, rows: list[int], path: Path) -> list[Optional[str]]:
    out: list[Optional[str]] = []
    bad: list[int] = []
    for i, v in enumerate(values):
        try:
            out.append(_scalar_to_str(v))
        except TypeError:
            bad.append(i)
            out.append(None)
    if bad:
        example = values[bad[0]]
        fix = ("use one label per row, or load it as multi-label: drop --task single (CLI) / task='single' (API); "
               "multi-label cells may hold lists, JSON lists or labels separated by --label-sep"
               if role == "label" else f"use one plain value per row in the {role} column")
        raise DataError(
            f"{path}: {role} column {excerpt_repr(col)} holds {type(example).__name__} values, e.g. "
            f"{excerpt_repr(example)} on row(s) "
            f"{_fmt_lines([rows[i] for i in bad])}; adaptlab needs one plain value per row. Fix: {fix}."
        )
    return out


def _parse_timestamps(values: list) -> np.ndarray:
    """Values to datetime64[ns] (naive UTC); NaT where missing or unparseable.

    Strings are parsed one by one (``format="mixed"``) so one odd format does not poison the column.
    Numbers, and digit strings of 9+ digits, are Unix epoch seconds. Time-zone aware values are
    converted to UTC; naive values are taken as UTC. Ambiguous dates like 05/01/2024 are read
    month-first (pandas' rule), so ISO 8601 (2024-01-05) is the safe format.
    """
    n = len(values)
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    groups: dict[str, tuple[list[int], list]] = {"str": ([], []), "num": ([], []), "obj": ([], [])}
    for i, v in enumerate(values):
        if is_missing(v) or isinstance(v, (bool, np.bool_)):
            continue
        if isinstance(v, (int, float, np.integer, np.floating)):
            kind, v = "num", float(v)
        elif isinstance(v, str):
            s = v.strip()
            kind, v = ("num", float(s)) if _EPOCH.match(s) else ("str", s)
        elif isinstance(v, (datetime, date, np.datetime64, pd.Timestamp)):
            kind = "obj"
        else:
            continue
        groups[kind][0].append(i)
        groups[kind][1].append(v)
    for kind, (pos, vals) in groups.items():
        if not pos:
            continue
        series = pd.Series(vals, dtype=object if kind != "num" else float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas warns about formats it cannot infer; NaT says it all
            try:
                if kind == "num":
                    parsed = pd.to_datetime(series, unit="s", utc=True, errors="coerce")
                elif kind == "str":
                    parsed = pd.to_datetime(series, utc=True, errors="coerce", format="mixed")
                else:
                    parsed = pd.to_datetime(series, utc=True, errors="coerce")
            except (ValueError, TypeError, OverflowError):
                parsed = pd.Series([_one_timestamp(v) for v in vals], dtype="datetime64[us, UTC]")
        arr = parsed.dt.tz_convert(None).to_numpy().astype("datetime64[us]")
        ok = ~np.isnat(arr) & (arr >= _NS_MIN) & (arr <= _NS_MAX)
        idx = np.asarray(pos)
        out[idx[ok]] = arr[ok].astype("datetime64[ns]")
    return out


def _one_timestamp(v: object) -> pd.Timestamp:
    try:
        return pd.to_datetime(v, utc=True)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT


# --------------------------------------------------------------------------------------- public


@overload
def load_dataset(
    path: Union[str, Path, pd.DataFrame], *, text_col: Optional[str] = ..., label_col: Optional[str] = ...,
    group_col: Optional[str] = ..., time_col: Optional[str] = ..., id_col: Optional[str] = ...,
    encoding: Optional[str] = ..., require_labels: bool = ..., on_invalid: OnInvalid = ...,
    task: Optional[str] = ..., label_sep: str = ..., label_cols: Optional[Sequence[str]] = ...,
    return_report: Literal[False] = ...,
) -> TextDataset: ...


@overload
def load_dataset(
    path: Union[str, Path, pd.DataFrame], *, text_col: Optional[str] = ..., label_col: Optional[str] = ...,
    group_col: Optional[str] = ..., time_col: Optional[str] = ..., id_col: Optional[str] = ...,
    encoding: Optional[str] = ..., require_labels: bool = ..., on_invalid: OnInvalid = ...,
    task: Optional[str] = ..., label_sep: str = ..., label_cols: Optional[Sequence[str]] = ...,
    return_report: Literal[True],
) -> tuple[TextDataset, LoadReport]: ...


def load_dataset(
    path: Union[str, Path, pd.DataFrame],
    *,
    text_col: Optional[str] = None,
    label_col: Optional[str] = None,
    group_col: Optional[str] = None,
    time_col: Optional[str] = None,
    id_col: Optional[str] = None,
    encoding: Optional[str] = None,
    require_labels: bool = True,
    on_invalid: OnInvalid = "error",
    return_report: bool = False,
    task: Optional[str] = None,
    label_sep: str = "|",
    label_cols: Optional[Sequence[str]] = None,
) -> Union[TextDataset, tuple[TextDataset, LoadReport]]:
    """Read a CSV/TSV, JSON Lines or Parquet file into a validated :class:`TextDataset`.

    Args:
        path: The file (``.csv``, ``.tsv``, ``.jsonl``, ``.ndjson``, ``.parquet``; text formats may
            be gzipped), or a :class:`pandas.DataFrame` already in memory (a notebook's data): its
            columns are read as a file's, row 1 is its first row, and the frame is not modified.
        text_col: Text column. Default: the first of :data:`TEXT_COLUMN_CANDIDATES` present.
        label_col: Label column. Default: the first of :data:`LABEL_COLUMN_CANDIDATES` present.
            Labels become strings: ``1`` and ``1.0`` give ``"1"``, ``true`` gives ``"True"``;
            empty, NaN, NA and null are missing labels.
        group_col: Column whose rows must stay together in one split (author, patient, thread).
        time_col: Timestamp column, parsed with :func:`pandas.to_datetime` (ISO 8601 recommended).
        id_col: Id column. Default: ``"id"`` when present, else the row numbers.
        encoding: Text encoding of CSV/TSV/JSONL. Default: UTF-8, with an explanatory error when the
            file is not UTF-8.
        require_labels: When False, a file without a label column loads with ``labels=None`` (as does
            one whose label column is entirely empty).
        on_invalid: ``"error"`` raises :class:`~adaptlab.errors.DataValidationError` listing every
            problem. ``"drop"`` removes the rows with row-level problems (empty or non-string text,
            missing label, group or timestamp), lists them in the report, and still raises for
            problems of the dataset as a whole (one class, a class with one example, the same text
            with different labels).
        return_report: Also return a :class:`LoadReport` (columns used, rows dropped, warnings).
            Without it, dropped rows are announced with a :class:`DroppedRowsWarning`.
        task: ``"single"`` (one label per text), ``"multilabel"`` (a set of labels per text, in
            ``TextDataset.label_sets``) or None: detected, and the report says how (``task_note``); see
            :mod:`adaptlab.data.multilabel`.
        label_sep: The separator of several labels in one label cell (multi-label), default ``|``;
            a cell may also hold a JSON list.
        label_cols: Multi-label data as one 0/1 column per label (the label names are the column names).

    Returns:
        The dataset, or ``(dataset, report)`` with ``return_report=True``.

    Raises:
        DataError: The file cannot be read: missing file, unknown type, not UTF-8, missing column.
        DataValidationError: The data fails validation (see :func:`adaptlab.data.validate`).
        ConfigError: A bad argument value (``on_invalid``, ``encoding``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "reviews.csv"
        >>> _ = p.write_text("review,stars\\ngreat,5\\nawful,1\\nfine,5\\nbad,1\\n", encoding="utf-8")
        >>> ds = load_dataset(p, text_col="review", label_col="stars")
        >>> ds.texts[:2], ds.labels, ds.rows
        (['great', 'awful'], ['5', '1', '5', '1'], [1, 2, 3, 4])
        >>> import pandas as pd
        >>> df = pd.DataFrame({"review": ["great", "awful", "fine", "bad"], "stars": [5, 1, 5, 1]})
        >>> load_dataset(df, text_col="review", label_col="stars").labels
        ['5', '1', '5', '1']
    """
    if on_invalid not in ("error", "drop"):
        raise ConfigError.invalid("on_invalid", on_invalid, "'error' or 'drop'")
    if isinstance(path, pd.DataFrame):
        table, fmt = _frame_table(path), "dataframe"
        path = Path(table.source)
    else:
        path = _as_path(path)
        check_input_file(path)
        fmt, _ = detect_format(path)
        table = _read_table(path, encoding)
    check_task(task)
    if label_cols is not None and task == "single":
        raise ConfigError("label_cols (CLI: --label-cols) gives one 0/1 column per label, which is multi-label "
                          "data, but task='single' was asked. Fix: drop --task single, or use --label-col NAME.")
    roles = _resolve_roles(table.columns, path, text_col=text_col, label_col=label_col, group_col=group_col,
                           time_col=time_col, id_col=id_col,
                           require_labels=require_labels and label_cols is None)
    label_sets, task, note = _read_label_sets(table, roles, path, task, label_sep, label_cols, label_col)
    ds, raw_ts = _build_dataset(table, roles, path, require_labels, label_sets)
    where = {
        "csv": f"{path} (row 1 = first record after the header)",
        "tsv": f"{path} (row 1 = first record after the header)",
        "jsonl": f"{path} (rows are line numbers)",
        "parquet": f"{path} (row 1 = first record)",
        "dataframe": f"{path} (row 1 = the frame's first row, whatever its index)",
    }[fmt]
    ts_raw = None
    if raw_ts is not None:
        ts_raw = {int(i): raw_ts[i] for i in np.flatnonzero(np.isnat(ds.timestamps))}
    found = _validate_positions(ds, require_labels=require_labels, timestamp_raw=ts_raw)
    report = LoadReport(
        source=str(path), format=fmt, encoding=table.encoding, columns=roles, n_read=len(ds),
        problems=[p for p, _ in found], task=task, task_note=note,
    )
    if note:
        logger.info("%s: task %s (%s)", path, task, note)
    ds, found = _apply_on_invalid(ds, found, report, on_invalid, where, require_labels)
    report.warnings = [p for p, _ in found if p.severity != "error"]
    for w in report.warnings:
        logger.warning("%s: %s", path, w)
    if report.dropped and not return_report:
        warnings.warn(
            f"load_dataset dropped {len(report.dropped)} row(s) from {path} "
            f"(rows {_fmt_lines([d.row for d in report.dropped])}): "
            + ", ".join(f"{c} x{n}" for c, n in Counter(c for d in report.dropped for c in d.codes).items())
            + ". Pass return_report=True to get the list.",
            DroppedRowsWarning,
            stacklevel=2,
        )
    return (ds, report) if return_report else ds


def _resolve_roles(cols: list[str], path: Path, *, text_col: Optional[str], label_col: Optional[str],
                   group_col: Optional[str], time_col: Optional[str], id_col: Optional[str],
                   require_labels: bool) -> dict[str, Optional[str]]:
    """The column each role is read from (None: the role is absent); two roles never share a column."""
    roles = {
        "text": resolve_column("text", text_col, cols, path, TEXT_COLUMN_CANDIDATES),
        "label": resolve_column("label", label_col, cols, path, LABEL_COLUMN_CANDIDATES, required=require_labels),
        "group": resolve_column("group", group_col, cols, path),
        "time": resolve_column("time", time_col, cols, path),
        "id": resolve_column("id", id_col, cols, path) if id_col is not None else ("id" if "id" in cols else None),
    }
    used = [(r, c) for r, c in roles.items() if c is not None]
    for k, (role, c) in enumerate(used):
        for other, c2 in used[k + 1 :]:
            if c == c2:
                raise DataError(
                    f"{path}: {role}_col and {other}_col both point at column {excerpt_repr(c)}. Fix: pass a "
                    f"different column for one of them (CLI: --{role}-col / --{other}-col). Columns in the file: "
                    f"{show_columns(cols)}."
                )
    return roles


def _read_label_sets(table: _Table, roles: dict[str, Optional[str]], path: Path, task: Optional[str], sep: str,
                     label_cols: Optional[Sequence[str]], label_col: Optional[str]
                     ) -> tuple[Optional[list[tuple[str, ...]]], str, str]:
    """``(label_sets or None, task, how the task was chosen)``; sets ``roles["label"]`` for --label-cols."""
    if label_cols is not None:
        names = [c.strip() for c in ([label_cols] if isinstance(label_cols, str) else label_cols) if c.strip()]
        if len(names) < 2:
            raise ConfigError.invalid("label_cols", list(label_cols), "two or more column names, e.g. --label-cols a,b,c")
        if label_col is not None:
            raise ConfigError("give label_col (one column of labels) or label_cols (one 0/1 column per label), not both.")
        cols = [resolve_column("label", c, table.columns, path) for c in names]
        clash = [c for c in cols if c in {v for k, v in roles.items() if k != "label"}]
        if clash:
            raise DataError(f"{path}: label column {excerpt_repr(clash[0])} is also used as another role. Fix: "
                            "leave it out of --label-cols.")
        roles["label"] = ",".join(cols)
        sets = label_sets_from_columns({c: table.get(c) for c in cols}, table.rows, path)
        return sets, "multilabel", f"one 0/1 column per label ({len(cols)} columns)"
    lcol = roles["label"]
    if lcol is None or task == "single":
        return None, "single", ("given" if task else "")
    values = table.get(lcol)
    detected, why = detect_task(values, sep=sep)
    if task is None and detected == "single":
        return None, "single", ""
    note = f"given (--task multilabel); {why}" if task else f"detected: {why}; pass --task single to refuse it"
    return parse_label_sets(values, sep=sep), "multilabel", note


def _build_dataset(table: _Table, roles: dict[str, Optional[str]], path: Path, require_labels: bool,
                   label_sets: Optional[list[tuple[str, ...]]] = None) -> tuple[TextDataset, Optional[list]]:
    """The dataset the columns describe (before validation), and the raw timestamp values.

    ``roles["label"]`` becomes None when labels are optional and the label column is empty.
    """
    tcol, lcol, gcol, timecol, icol = (roles[r] for r in ("text", "label", "group", "time", "id"))
    rows = table.rows
    labels = None
    if label_sets is None and lcol:
        labels = _convert_column(table.get(lcol), "label", lcol, rows, path)
    if labels is not None and not require_labels and all(v is None for v in labels):
        logger.info("%s: label column %r is empty; loading as unlabeled", path, lcol)
        labels, roles["label"] = None, None
    groups = _convert_column(table.get(gcol), "group", gcol, rows, path) if gcol else None
    raw_ts = table.get(timecol) if timecol else None
    timestamps = _parse_timestamps(raw_ts) if raw_ts is not None else None
    if icol:
        ids = [v if v is not None else str(r)
               for v, r in zip(_convert_column(table.get(icol), "id", icol, rows, path), rows)]
    else:
        ids = [str(r) for r in rows]
    ds = TextDataset(
        texts=table.get(tcol), labels=labels, groups=groups, timestamps=timestamps, ids=ids, rows=list(rows),
        source=str(path), columns={r: c for r, c in roles.items() if c is not None}, label_sets=label_sets,
    )
    return ds, raw_ts


def _apply_on_invalid(ds: TextDataset, found: list, report: LoadReport, on_invalid: str, where: str,
                      require_labels: bool) -> tuple[TextDataset, list]:
    """Raise on errors (``on_invalid="error"``), or drop the rows with row-level problems into the report and
    validate what is left; returns the dataset kept and its problems."""
    errors = [p for p, _ in found if p.severity == "error"]
    if errors and on_invalid == "error":
        raise DataValidationError([p for p, _ in found], source=where)
    if not errors:
        return ds, found
    reasons: dict[int, list[str]] = {}
    for p, pos in found:
        if p.severity == "error" and p.code in ROW_LEVEL_CODES:
            for i in pos:
                reasons.setdefault(i, []).append(p.code)
    if reasons:
        if len(reasons) == len(ds):
            raise DataValidationError(
                [p for p, _ in found if p.code in ROW_LEVEL_CODES]
                + [Problem(code="no_rows_left", message="every row has a row-level problem, so dropping "
                           "them would leave nothing", fix="check text_col and label_col point at the "
                           "right columns")],
                source=where,
            )
        report.dropped = [
            DroppedRow(row=int(ds.rows[i]), id=str(ds.ids[i]), codes=reasons[i], text=_preview_text(ds.texts[i]))
            for i in sorted(reasons)
        ]
        ds = ds.subset([i for i in range(len(ds)) if i not in reasons])
        # Dropping rows can create dataset-level problems (a class left with one example),
        # so the kept rows are validated again.
        found = _validate_positions(ds, require_labels=require_labels)
    if any(p.severity == "error" for p, _ in found):
        context = []
        if report.dropped:
            # Say what was dropped: a problem such as a class left with one example may exist
            # only because of the drop.
            context.append(Problem(
                code="rows_dropped",
                message=f"{len(report.dropped)} row(s) with row-level problems were dropped before these checks",
                fix="fix the rows in the file instead of dropping them if that keeps the data valid",
                rows=[d.row for d in report.dropped],
                severity="warning",
            ))
        raise DataValidationError([p for p, _ in found] + context, source=where)
    return ds, found


def _preview_text(text: object, width: int = 60) -> str:
    if not isinstance(text, str):
        return repr(text)
    s = " ".join(text.split())
    return s if len(s) <= width else s[: width - 3] + "..."
