"""Batch prediction over a file of any size: stream it in batches, keep every row accounted for.

:func:`predict_file` reads CSV/TSV (optionally gzipped), JSON Lines or Parquet one batch at a time,
predicts each batch with a fitted model, and writes the predictions in the same row order. A row that
cannot be predicted (empty or missing text, text that is not a string, bytes that are not valid in
the file's encoding, a CSV record with the wrong number of fields, a line that is not a JSON object)
is never dropped silently: it goes to a reject file with its line number, the reason in plain words
and its id, and the report counts it.

Line numbers are the ones an editor shows: the 1-based physical line of the input, header included,
so the first CSV record under the header is line 2; a CSV record whose quoted field spans several
lines has the line where it starts. Parquet has no lines, so its rows are numbered 1, 2, ... .

The output and the reject file are written under temporary names beside their final paths and
renamed only when the whole input has been read, so a file at the output path is always complete
(an interrupted run leaves the previous output, if any, untouched).
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

# The loader's rules for columns are the contract users already know from `load_dataset`, and the
# records come from the same reader, so `load_dataset` and `predict` agree on what a file means.
from adaptlab.data.load import TEXT_COLUMN_CANDIDATES, resolve_column, show_columns
from adaptlab.data.reader import RecordReader, bad_char, check_input_file, detect_format, open_records
from adaptlab.data.safe_csv import SafeCsvWriter
from adaptlab.errors import ConfigError, DataError, excerpt_repr

__all__ = ["predict_file", "PredictReport", "OUTPUT_SUFFIXES", "REJECT_COLUMNS", "REVIEW_COLUMNS"]

PathLike = Union[str, Path]

#: Output file suffixes and the format written (text formats may also end in ``.gz``).
OUTPUT_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
#: Columns of the reject file.
REJECT_COLUMNS = ("line", "id", "problem", "reason", "preview")
#: Columns of the review file (``min_confidence``), before one ``proba_<class>`` column per class; the first
#: is the output's key column (the input's id column, or ``row``).
REVIEW_COLUMNS = ("text", "suggested_label", "confidence")

# Plain-word names of the reject codes, for the summary.
_PROBLEM_NAMES = {
    "empty_text": "empty text",
    "missing_text": "missing text",
    "non_string_text": "text is not a string",
    "bad_bytes": "bytes not valid in the file's encoding",
    "wrong_field_count": "wrong number of fields",
    "bad_csv": "unreadable CSV record",
    "unclosed_quote": "a quote never closed",
    "invalid_json": "not valid JSON",
    "not_an_object": "not a JSON object",
}
_PREVIEW_CHARS = 120
# Parquet row groups are buffered to this many rows: one group per small batch makes slow files.
_PARQUET_ROW_GROUP = 65_536


@dataclass
class PredictReport:
    """What :func:`predict_file` read, predicted and rejected.

    Attributes:
        input_path: The file read.
        output_path: The predictions written.
        format: Input format (``csv``, ``tsv``, ``jsonl`` or ``parquet``).
        encoding: Text encoding used to read the input (None for Parquet).
        text_col: The text column used.
        id_col: The id column copied to the output, or None (the output then has a ``row`` column).
        n_read: Rows (records) read; blank lines are not rows.
        n_predicted: Rows predicted and written to the output.
        n_rejected: Rows written to the reject file instead.
        reject_path: The reject file (always written; it has only a header when nothing was rejected).
        seconds: Wall time of the whole call.
        rows_per_second: ``n_read / seconds``.
        rejected_by_problem: Number of rejected rows per problem code (``empty_text``, ...).
        rejected_lines: Line numbers of the first rejected rows (up to 100), for the summary.
        precision: The numeric path the model's encoder ran (``fp32``, ``bf16``, ``int8``) and why, e.g.
            ``"bf16, as shipped"`` (None for a model without one, such as TF-IDF).
        calibrated: Whether the probabilities written are calibrated (the model carries a calibration).
        calibration: The model's calibration in words (method, fitted on which texts), or why there is none.
        min_confidence: Rows whose confidence is below it went to the review file (None: every row answered).
        n_review: Rows sent to the review file instead of the output (``min_confidence``).
        review_path: The review file ("" without ``min_confidence``).
    """

    input_path: str
    output_path: str
    format: str
    encoding: Optional[str]
    text_col: Optional[str]
    id_col: Optional[str]
    n_read: int = 0
    n_predicted: int = 0
    n_rejected: int = 0
    reject_path: str = ""
    seconds: float = 0.0
    rows_per_second: float = 0.0
    rejected_by_problem: dict[str, int] = field(default_factory=dict)
    rejected_lines: dict[str, list[int]] = field(default_factory=dict)
    precision: Optional[str] = None
    calibrated: bool = False
    calibration: Optional[str] = None
    min_confidence: Optional[float] = None
    n_review: int = 0
    review_path: str = ""

    def summary(self) -> str:
        """A few sentences a person can read."""
        lines = [
            f"Predicted {self.n_predicted:,} of {self.n_read:,} rows of {self.input_path} in {self.seconds:.1f} s "
            f"({self.rows_per_second:,.0f} rows/s) and wrote {self.output_path}."
            + (f" Encoder precision: {self.precision}." if self.precision else "")
        ]
        if self.calibration:
            lines.append(("Probabilities are calibrated" if self.calibrated else "Probabilities are the model's own, "
                          "NOT calibrated") + f" ({self.calibration}).")
        if self.min_confidence is not None:
            lines.append(f"{self.n_review:,} row(s) with confidence below {self.min_confidence:g} were NOT labeled and "
                         f"went to {self.review_path} for a person to label (with the model's suggestion).")
        if self.n_read == 0:
            lines.append("The input has no data rows, so the output has only its header.")
        if not self.n_rejected:
            lines.append("No row was rejected.")
            return "\n".join(lines)
        parts = []
        for code, n in sorted(self.rejected_by_problem.items(), key=lambda kv: -kv[1]):
            shown = self.rejected_lines.get(code, [])[:5]
            where = ", ".join(str(x) for x in shown) + (", ..." if n > len(shown) else "")
            parts.append(f"{_PROBLEM_NAMES.get(code, code)} x{n} (line{'s' if n > 1 else ''} {where})")
        row_word = "row was" if self.n_rejected == 1 else "rows were"
        lines.append(
            f"{self.n_rejected:,} {row_word} NOT predicted and went to {self.reject_path} with their line "
            f"numbers and reasons: {'; '.join(parts)}."
        )
        if self.format == "parquet":
            lines[-1] += " Parquet rows are numbered from 1."
        if self.rejected_by_problem.get("bad_bytes"):
            enc = self.encoding or "utf-8"
            lines.append(
                f"Rows with bytes that are not valid {enc}: if the file was saved by Excel or another Windows "
                "program, run again with --encoding cp1252 (Python: encoding=\"cp1252\"), or re-save the file "
                "as UTF-8."
            )
        if self.rejected_by_problem.get("wrong_field_count"):
            lines.append(
                "Rows with the wrong number of fields usually hold an unquoted separator or an unclosed quote: "
                "quote such fields (\"like, this\") or save the file again from a spreadsheet program."
            )
        lines.append("Fix those rows in the input and predict them again; every other row is in the output.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for ``--json`` output and run manifests)."""
        return {
            "input_path": self.input_path,
            "output_path": self.output_path,
            "format": self.format,
            "encoding": self.encoding,
            "text_col": self.text_col,
            "id_col": self.id_col,
            "n_read": self.n_read,
            "n_predicted": self.n_predicted,
            "n_rejected": self.n_rejected,
            "reject_path": self.reject_path,
            "seconds": self.seconds,
            "rows_per_second": self.rows_per_second,
            "rejected_by_problem": dict(self.rejected_by_problem),
            "rejected_lines": {k: list(v) for k, v in self.rejected_lines.items()},
            "precision": self.precision,
            "calibrated": self.calibrated,
            "calibration": self.calibration,
            "min_confidence": self.min_confidence,
            "n_review": self.n_review,
            "review_path": self.review_path,
        }


# ------------------------------------------------------------------------------------------ paths


def _split_suffix(path: Path) -> tuple[str, bool, str]:
    """(suffix without .gz, gzipped?, name without both) of an output path."""
    name = path.name
    gz = name.lower().endswith(".gz")
    if gz:
        name = name[:-3]
    suffix = Path(name).suffix.lower()
    return suffix, gz, name[: len(name) - len(suffix)] if suffix else name


def _output_format(path: Path) -> tuple[str, bool]:
    suffix, gz, _ = _split_suffix(path)
    fmt = OUTPUT_SUFFIXES.get(suffix)
    if fmt is None or (gz and fmt == "parquet"):
        raise ConfigError.invalid(
            "output_path", str(path),
            "a file ending in .csv, .tsv, .jsonl, .ndjson or .parquet (text formats may add .gz)",
            "Fix: name the output after the format you want, e.g. -o predictions.csv.",
        )
    return fmt, gz


def _default_reject_path(output: Path) -> Path:
    return output.with_name(_split_suffix(output)[2] + ".rejects.csv")


def _same_file(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b) or (a.exists() and b.exists() and os.path.samefile(a, b))


def _temp_beside(path: Path) -> Path:
    # Same folder, so the final rename is atomic; a leading dot and ".partial" so nobody takes it
    # for a result. Opened with "x" (not mkstemp) so it gets the user's normal file permissions.
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")


# ---------------------------------------------------------------------------------------- reading


@dataclass
class _Row:
    """One record of the input. ``problem`` is set when the record itself cannot be read."""

    line: int
    text: Any = None
    id: Any = None
    problem: Optional[tuple[str, str]] = None  # (code, reason)
    preview: str = ""
    has_text: bool = True  # False when the record has no text field at all (JSONL)


class _Reader:
    """The input's rows, with the text and id pulled out of each record of the shared reader."""

    def __init__(self, records: RecordReader, text_col: Optional[str], id_col: Optional[str]) -> None:
        self.records, self.text_col, self.id_col = records, text_col, id_col
        self.fmt, self.encoding, self.columns = records.fmt, records.encoding, records.columns
        self.unit, self.total = records.unit, records.total
        self.id_type: Any = None  # pyarrow type of the id column (Parquet input), kept in Parquet output

    def position(self) -> int:
        return self.records.position()

    def close(self) -> None:
        self.records.close()

    def __iter__(self) -> Iterator[_Row]:
        tc, ic = self.text_col, self.id_col
        if self.fmt in ("csv", "tsv"):
            ti = self.columns.index(tc)
            ii = self.columns.index(ic) if ic is not None else None
        for rec in self.records:
            values = rec.values
            if self.fmt in ("csv", "tsv"):
                ident = values[ii] if ii is not None and ii < len(values) else None
                if rec.problem is not None:
                    yield _Row(rec.line, id=ident, problem=rec.problem, preview=self._joined(values))
                else:
                    yield _Row(rec.line, text=values[ti], id=ident)
            elif rec.problem is not None:
                yield _Row(rec.line, problem=rec.problem, preview=rec.preview)
            else:
                yield _Row(rec.line, text=values.get(tc), id=values.get(ic) if ic is not None else None,
                           has_text=tc in values)

    def _joined(self, values: Optional[list[str]]) -> str:
        return getattr(self.records, "delimiter", ",").join(values) if values else ""


def _check_text_type(reader: _Reader, path: Path) -> None:
    """A Parquet text column must hold strings; keep the id column's type for the output."""
    import pyarrow as pa

    schema = reader.records.schema
    ttype = schema.field(reader.text_col).type
    if pa.types.is_dictionary(ttype):
        ttype = ttype.value_type
    textual = (pa.types.is_string(ttype) or pa.types.is_large_string(ttype) or pa.types.is_null(ttype)
               or (hasattr(pa.types, "is_string_view") and pa.types.is_string_view(ttype)))
    if not textual:
        kinds = ", ".join(f"{excerpt_repr(f.name)} ({f.type})" for f in schema)
        raise DataError(
            f"{path}: text column {excerpt_repr(reader.text_col)} holds {ttype} values, not text. Columns in the file: "
            f"{kinds}. Fix: pass text_col=NAME (CLI: --text-col NAME) with the column that holds the texts."
        )
    if reader.id_col is not None:
        itype = schema.field(reader.id_col).type
        reader.id_type = itype.value_type if pa.types.is_dictionary(itype) else itype


def _resolve_id(id_col: Optional[str], columns: list[str], path: Path) -> Optional[str]:
    # Same default as load_dataset: the column named "id" when there is one.
    if id_col is not None:
        return resolve_column("id", id_col, columns, path)
    return "id" if "id" in columns else None


def _check_distinct(text_col: Optional[str], id_col: Optional[str], columns: list[str], path: Path) -> None:
    if text_col is not None and text_col == id_col:
        raise DataError(
            f"{path}: text_col and id_col both point at column {excerpt_repr(text_col)}. Fix: pass a different column for "
            f"one of them (CLI: --text-col / --id-col). Columns in the file: {show_columns(columns)}."
        )


def _open_reader(path: Path, encoding: Optional[str], text_col: Optional[str], id_col: Optional[str],
                 batch_size: int) -> _Reader:
    records = open_records(path, encoding=encoding, batch_size=batch_size)
    try:
        columns = records.columns
        if records.fmt == "jsonl":
            first_problem = records.sample_columns(batch_size)
            columns = records.columns
            if first_problem is not None:
                raise DataError(
                    f"{path}: none of the first {records.n_sampled} non-blank line(s) holds a JSON object (line "
                    f"{first_problem.line}: {first_problem.problem[1]}; {first_problem.preview[:60]!r}). Fix: "
                    "each line must hold one JSON object, e.g. {\"text\": \"...\"}; a JSON array must be "
                    "saved as JSON Lines first."
                )
            if not columns:  # an empty file: nothing to detect, nothing to predict
                return _Reader(records, text_col, id_col)
        text_col = resolve_column("text", text_col, columns, path, TEXT_COLUMN_CANDIDATES)
        id_col = _resolve_id(id_col, columns, path)
        _check_distinct(text_col, id_col, columns, path)
        reader = _Reader(records, text_col, id_col)
        if records.fmt == "parquet":
            records.wanted = [text_col] + ([id_col] if id_col is not None else [])
            _check_text_type(reader, path)
        return reader
    except BaseException:
        records.close()
        raise


# ----------------------------------------------------------------------------------------- checks


def _printable(s: str) -> str:
    # Undecodable bytes come back as \xNN so the user sees which byte it was.
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") if bad_char(s) is not None else s


def _preview(value: Any) -> str:
    s = value if isinstance(value, str) else repr(value)
    s = " ".join(_printable(s).split())
    return s if len(s) <= _PREVIEW_CHARS else s[: _PREVIEW_CHARS - 3] + "..."


def _byte_problem(what: str, s: str, encoding: Optional[str]) -> tuple[str, str]:
    k = bad_char(s) or 0
    ch = ord(s[k])
    if 0xDC80 <= ch <= 0xDCFF:
        reason = (f"the {what} holds byte 0x{ch - 0xDC00:02X} (character {k + 1}), which is not valid "
                  f"{encoding or 'utf-8'}")
    else:
        reason = f"the {what} holds an invalid Unicode character U+{ch:04X} (a lone surrogate)"
    return "bad_bytes", reason


def _row_problem(row: _Row, text_col: Optional[str], encoding: Optional[str]) -> Optional[tuple[str, str]]:
    if row.problem is not None:
        return row.problem
    t = row.text
    if not row.has_text:
        return "missing_text", f"the record has no {excerpt_repr(text_col)} field"
    if t is None or (isinstance(t, float) and t != t):
        return "missing_text", "the text is missing (null)"
    if not isinstance(t, str):
        return "non_string_text", (f"the text is a {type(t).__name__} ({_preview(t)}), not a string; in JSON "
                                   "quote it: \"42\"")
    if not t.strip():
        return "empty_text", "the text is empty" if not t else "the text is only whitespace"
    if bad_char(t) is not None:
        return _byte_problem("text", t, encoding)
    if isinstance(row.id, str) and bad_char(row.id) is not None:
        return _byte_problem("id", row.id, encoding)
    return None


def _check_model(model: Any) -> list[str]:
    classes = getattr(model, "classes_", None)
    if classes is None or not callable(getattr(model, "predict_proba", None)):
        raise ConfigError.invalid(
            "model", type(model).__name__,
            "a fitted model with classes_ and predict_proba(texts), such as adaptlab.ship.Pipeline",
            "Fix: fit the model first, or load a saved one with adaptlab.ship.load_pipeline(folder).",
        )
    names = [str(c) for c in classes]
    if len(names) < 2:
        raise ConfigError.invalid("model.classes_", names, "at least two classes")
    return names


# ---------------------------------------------------------------------------------------- writing


class _Writer:
    def __init__(self, path: Path, fmt: str, gz: bool, key_name: str, key_type: Any, classes: list[str]) -> None:
        self.path, self.fmt = path, fmt
        self.header = [key_name, "label", "confidence"] + [f"proba_{c}" for c in classes]
        self.key_type = key_type
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            self.schema = pa.schema(
                [(key_name, key_type), ("label", pa.string()), ("confidence", pa.float64())]
                + [(h, pa.float64()) for h in self.header[3:]]
            )
            self.file = None
            self.pq_writer = pq.ParquetWriter(str(path), self.schema)
            self.buffer: list[list[Any]] = [[] for _ in self.header]
            return
        raw = open(path, "xb")
        # mtime=0: the same predictions give the same bytes.
        self.file = gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) if gz else raw
        self._raw = raw
        self.text = io.TextIOWrapper(self.file, encoding="utf-8", newline="")
        if fmt == "jsonl":
            return
        # Safe cells: labels, ids and class names in the header never start a spreadsheet formula.
        self.csv = SafeCsvWriter(self.text, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        self.csv.writerow(self.header)

    def write(self, keys: list[Any], labels: list[str], confidence: np.ndarray, proba: np.ndarray) -> None:
        columns = [keys, labels, confidence.tolist()] + proba.T.tolist()
        if self.fmt == "parquet":
            for buf, col in zip(self.buffer, columns):
                buf.extend(col)
            if len(self.buffer[0]) >= _PARQUET_ROW_GROUP:
                self._flush_parquet()
        elif self.fmt == "jsonl":
            header = self.header
            self.text.write("".join(
                json.dumps(dict(zip(header, row)), ensure_ascii=False, default=str) + "\n" for row in zip(*columns)
            ))
        else:
            self.csv.writerows(zip(*columns))

    def _flush_parquet(self) -> None:
        import pyarrow as pa

        keys = self.buffer[0]
        if pa.types.is_string(self.key_type):
            keys = [None if k is None else str(k) for k in keys]
        arrays = [pa.array(keys, type=self.key_type)] + [
            pa.array(col, type=f.type) for col, f in zip(self.buffer[1:], list(self.schema)[1:])
        ]
        self.pq_writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.buffer = [[] for _ in self.header]

    def close(self) -> None:
        if self.fmt == "parquet":
            if self.buffer[0]:
                self._flush_parquet()
            self.pq_writer.close()
            return
        self.text.close()  # closes the gzip member and the file underneath
        if self._raw is not self.file:
            self._raw.close()

    def abort(self) -> None:
        closers = [self.pq_writer.close] if self.fmt == "parquet" else [self.text.close, self._raw.close]
        for close in closers:
            with contextlib.suppress(Exception):
                close()


class _RejectWriter:
    def __init__(self, path: Path) -> None:
        self.text = open(path, "x", encoding="utf-8", newline="")
        self.csv = SafeCsvWriter(self.text, lineterminator="\n")  # the preview quotes the user's text
        self.csv.writerow(REJECT_COLUMNS)

    def write(self, line: int, id_value: Any, code: str, reason: str, preview: str) -> None:
        idv = "" if id_value is None else _printable(id_value if isinstance(id_value, str) else str(id_value))
        self.csv.writerow([line, idv, code, reason, preview])

    def close(self) -> None:
        self.text.close()


class _ReviewWriter:
    """Rows below ``min_confidence``: the key, the text, the model's suggestion and its probabilities (CSV)."""

    def __init__(self, path: Path, key_name: str, classes: list[str]) -> None:
        self.text = open(path, "x", encoding="utf-8", newline="")
        self.csv = SafeCsvWriter(self.text, lineterminator="\n")  # texts and labels never start a formula
        self.csv.writerow([key_name, *REVIEW_COLUMNS, *(f"proba_{c}" for c in classes)])

    def write(self, keys: list[Any], texts: list[str], labels: list[str], confidence: np.ndarray,
              proba: np.ndarray) -> None:
        for k, t, lab, c, p in zip(keys, texts, labels, confidence.tolist(), proba.tolist()):
            self.csv.writerow(["" if k is None else k, t, lab, c, *p])

    def close(self) -> None:
        self.text.close()


def _check_min_confidence(value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError.invalid("min_confidence", value, "a probability in [0, 1], e.g. 0.8",
                                  "Fix: pick P from the coverage table of the model card, e.g. --min-confidence 0.8.")
    return float(value)


# ----------------------------------------------------------------------------------------- public


def predict_file(
    model: Any,
    input_path: PathLike,
    output_path: PathLike,
    *,
    text_col: Optional[str] = None,
    id_col: Optional[str] = None,
    batch_size: int = 1024,
    reject_path: Optional[PathLike] = None,
    encoding: Optional[str] = None,
    show_progress: bool = False,
    on_progress: Optional[Callable[[int, Optional[float]], None]] = None,
    min_confidence: Optional[float] = None,
    review_path: Optional[PathLike] = None,
) -> PredictReport:
    """Predict every row of a CSV/TSV, JSON Lines or Parquet file, streaming it in batches.

    The output (format from its extension: ``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``; text formats
    may add ``.gz``) has, in input order, the input's id column (or ``row``, the input line number,
    when there is none), ``label`` (the class with the highest probability), ``confidence`` (that
    probability) and one ``proba_<class>`` column per class of ``model.classes_``. Rows that cannot be
    predicted go to the reject file (CSV: ``line, id, problem, reason, preview``) instead; see the
    module docstring for how lines are numbered.

    Args:
        model: A fitted model with ``classes_`` and ``predict_proba(list[str]) -> (n, n_classes)``,
            e.g. :class:`adaptlab.ship.Pipeline`.
        input_path: The file to predict. Read as :func:`adaptlab.data.load_dataset` reads it.
        output_path: Where to write the predictions. Written under a temporary name and renamed when
            complete, so an interrupted run never leaves a partial file here.
        text_col: Text column. Default: the first of ``text, sentence, content, abstract, document,
            body`` present (as in ``load_dataset``).
        id_col: Id column copied to the output. Default: ``id`` when present.
        batch_size: Rows read and predicted at a time; memory use is bounded by it.
        reject_path: The reject file. Default: ``<output name>.rejects.csv`` beside the output.
        encoding: Text encoding of CSV/TSV/JSONL (ignored for Parquet). Default UTF-8 (a UTF-16 BOM is
            recognised). Bytes invalid in the encoding reject their row, and the report suggests a fix.
        show_progress: Show a progress bar on stderr (bytes read; rows for Parquet).
        on_progress: Called after each batch with the rows read so far and the share of the input read
            (None when unknown): plain progress lines where no bar is drawn (``adaptlab predict --json``).
        min_confidence: Abstain below this confidence: a row whose highest (calibrated, where the model
            carries a calibration) probability is below it is not labeled; it goes to the review file with
            the model's suggestion, for a person to label. None (default): every row is labeled.
        review_path: The review file (CSV: the key column, ``text``, ``suggested_label``, ``confidence``,
            ``proba_<class>``...). Default: ``<output name>.review.csv`` beside the output.

    Returns:
        A :class:`PredictReport`; ``report.summary()`` says what was predicted and rejected.

    Raises:
        DataError: The input cannot be used: missing file, unknown type, no text column (the message
            lists the columns found and says to pass ``--text-col``), a damaged file.
        ConfigError: A bad argument (``batch_size``, ``encoding``, output type, a model without
            ``predict_proba``).

    Example:
        >>> import pathlib, tempfile
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.rungs import RungContext, get_rung
        >>> ds = TextDataset(["good film", "great film", "bad film", "awful film"] * 3, ["p", "p", "n", "n"] * 3)
        >>> model = get_rung("tfidf", {"min_df": 1}).fit(ds, ds, seed=0, context=RungContext(classes=["n", "p"]))
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "new.csv").write_text("id,text\\n7,great\\n8,\\n9,awful\\n", encoding="utf-8")
        >>> report = predict_file(model, d / "new.csv", d / "out.csv")
        >>> (report.n_predicted, report.n_rejected)
        (2, 1)
        >>> (d / "out.csv").read_text().splitlines()[0]
        'id,label,confidence,proba_n,proba_p'
        >>> (d / "out.rejects.csv").read_text().splitlines()[1]
        '3,8,empty_text,the text is empty,'
    """
    t0 = time.perf_counter()
    classes = _check_model(model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError.invalid("batch_size", batch_size, "an integer >= 1", "Fix: e.g. --batch-size 1024.")
    batch_size = int(batch_size)
    min_confidence = _check_min_confidence(min_confidence)
    input_path, output_path, rejects = _check_paths(input_path, output_path, reject_path)
    review = _check_review(review_path, input_path, output_path, rejects) if min_confidence is not None else None
    reader = _open_reader(input_path, encoding, text_col, id_col, batch_size)
    report = PredictReport(
        input_path=str(input_path), output_path=str(output_path), format=reader.fmt, encoding=reader.encoding,
        text_col=reader.text_col, id_col=reader.id_col, reject_path=str(rejects),
        precision=getattr(model, "precision_note_", None),
        calibrated=getattr(model, "calibration_", None) is not None,
        calibration=getattr(model, "calibration_note_", None), min_confidence=min_confidence,
        review_path=str(review) if review is not None else "",
    )
    run = _Prediction(model, classes, reader, report, batch_size)
    run.on_progress = on_progress
    try:
        _stream_to_files(run, output_path, rejects, review, input_path.name if show_progress else None)
    finally:
        reader.close()
        if run.bar is not None:
            run.bar.close()

    report.seconds = time.perf_counter() - t0
    report.rows_per_second = report.n_read / report.seconds if report.seconds > 0 else 0.0
    report.rejected_by_problem = dict(run.by_problem)
    report.rejected_lines = run.lines_by_problem
    return report


def _stream_to_files(run: "_Prediction", output_path: Path, rejects: Path, review: Optional[Path],
                     progress_name: Optional[str]) -> None:
    """Stream the predictions into temporary files beside the outputs, then rename them into place."""
    tmp_out, tmp_rej = _temp_beside(output_path), _temp_beside(rejects)
    tmp_rev = _temp_beside(review) if review is not None else None
    try:
        try:
            for p in (output_path, rejects, review):
                if p is not None:
                    p.parent.mkdir(parents=True, exist_ok=True)
            run.open(tmp_out, output_path, tmp_rej, tmp_rev)
        except OSError as e:
            raise ConfigError(
                f"cannot write the predictions beside {output_path} ({e.strerror or e}). Fix: choose an output "
                "path in a folder you can write to (CLI: -o PATH)."
            ) from None
        if progress_name is not None:
            run.show_progress(progress_name)
        run.stream()
        # Rejects (and the review file) first: the output appearing is the signal that the run finished.
        os.replace(tmp_rej, rejects)
        if tmp_rev is not None:
            os.replace(tmp_rev, review)
        os.replace(tmp_out, output_path)
    except BaseException:
        # Interrupted or failed: remove the partial files so nothing half-written is left behind.
        run.abort()
        for p in (tmp_out, tmp_rej, tmp_rev):
            with contextlib.suppress(OSError, AttributeError):
                p.unlink()
        raise


def _check_review(review_path: Optional[PathLike], input_path: Path, output_path: Path, rejects: Path) -> Path:
    """The review file: a .csv path other than the input, the output and the reject file."""
    review = (Path(review_path).expanduser() if review_path is not None
              else output_path.with_name(_split_suffix(output_path)[2] + ".review.csv"))
    if review.suffix.lower() != ".csv":
        raise ConfigError.invalid("review_path", str(review), "a file ending in .csv (the review file is CSV)")
    if review.is_dir():
        raise ConfigError.invalid("review_path", str(review), "a file path, not a folder",
                                  "Fix: add a file name, e.g. --review out/review.csv.")
    for other in (input_path, output_path, rejects):
        if _same_file(review, other):
            raise ConfigError.invalid("review_path", str(review), "a file other than the input, the output and the "
                                      "reject file", "Fix: e.g. --review to-review.csv.")
    return review


def _check_paths(input_path: PathLike, output_path: PathLike,
                 reject_path: Optional[PathLike]) -> tuple[Path, Path, Path]:
    """(input, output, rejects) as paths, checked: an input that exists, an output type we write, three
    different files, none of them a folder."""
    input_path = Path(input_path).expanduser()
    output_path = Path(output_path).expanduser()
    check_input_file(input_path)
    detect_format(input_path)
    _output_format(output_path)
    rejects = Path(reject_path).expanduser() if reject_path is not None else _default_reject_path(output_path)
    if rejects.suffix.lower() != ".csv":
        raise ConfigError.invalid("reject_path", str(rejects), "a file ending in .csv (rejects are written as CSV)")
    for name, p in (("output_path", output_path), ("reject_path", rejects)):
        if _same_file(p, input_path):
            raise ConfigError.invalid(name, str(p), "a file other than the input",
                                      "Fix: write the predictions to a new file, e.g. -o predictions.csv.")
    if _same_file(output_path, rejects):
        raise ConfigError.invalid("reject_path", str(rejects), "a file other than the output")
    for p in (output_path, rejects):
        if p.is_dir():
            raise ConfigError.invalid("output_path" if p == output_path else "reject_path", str(p),
                                      "a file path, not a folder", "Fix: add a file name, e.g. out/predictions.csv.")
    return input_path, output_path, rejects


class _Prediction:
    """One streaming pass: rows in, batches predicted into the output, bad rows into the reject file."""

    def __init__(self, model: Any, classes: list[str], reader: _Reader, report: PredictReport,
                 batch_size: int) -> None:
        self.model, self.classes, self.reader, self.report, self.batch_size = model, classes, reader, report, batch_size
        self.class_arr = np.asarray(classes, dtype=object)
        self.writer: Optional[_Writer] = None
        self.rej: Optional[_RejectWriter] = None
        self.review: Optional[_ReviewWriter] = None
        self.bar: Any = None
        self.on_progress: Optional[Callable[[int, Optional[float]], None]] = None
        self.by_problem: Counter[str] = Counter()
        self.lines_by_problem: dict[str, list[int]] = {}
        self.texts: list[str] = []
        self.keys: list[Any] = []
        self._last_pos = 0

    def open(self, tmp_out: Path, output_path: Path, tmp_rej: Path, tmp_rev: Optional[Path] = None) -> None:
        out_fmt, out_gz = _output_format(output_path)
        key_name, key_type = "row", None
        if self.reader.id_col is not None:
            reserved = {"label", "confidence", "row"} | {f"proba_{c}" for c in self.classes}
            key_name = self.reader.id_col if self.reader.id_col not in reserved else f"input_{self.reader.id_col}"
        if out_fmt == "parquet":
            import pyarrow as pa

            key_type = pa.int64() if self.reader.id_col is None else (self.reader.id_type or pa.string())
        self.writer = _Writer(tmp_out, out_fmt, out_gz, key_name, key_type, self.classes)
        self.rej = _RejectWriter(tmp_rej)
        if tmp_rev is not None:
            self.review = _ReviewWriter(tmp_rev, key_name, self.classes)

    def show_progress(self, name: str) -> None:
        from tqdm.auto import tqdm

        r = self.reader
        self.bar = tqdm(total=r.total, desc=f"predict {name}", unit=r.unit, unit_scale=r.unit == "B",
                        unit_divisor=1024 if r.unit == "B" else 1000)

    def stream(self) -> None:
        use_id = self.reader.id_col is not None
        for row in self.reader:
            self.report.n_read += 1
            problem = _row_problem(row, self.reader.text_col, self.reader.encoding)
            if problem is not None:
                self._reject(row, *problem)
                continue
            self.texts.append(row.text)
            self.keys.append(row.id if use_id else row.line)
            if len(self.texts) >= self.batch_size:
                self._flush()
                self._tick()
        if self.texts:
            self._flush()
        self._tick()
        self.rej.close()
        if self.review is not None:
            self.review.close()
        self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
        for f in (self.rej, self.review):
            if f is not None:
                with contextlib.suppress(Exception):
                    f.close()

    def _reject(self, row: _Row, code: str, reason: str) -> None:
        preview = row.preview or ("" if row.problem is not None or row.text is None else row.text)
        self.rej.write(row.line, row.id, code, reason, _preview(preview) if preview else "")
        self.report.n_rejected += 1
        self.by_problem[code] += 1
        seen = self.lines_by_problem.setdefault(code, [])
        if len(seen) < 100:
            seen.append(row.line)

    def _flush(self) -> None:
        texts = self.texts
        proba = np.asarray(self.model.predict_proba(texts), dtype=np.float64)
        if proba.shape != (len(texts), len(self.classes)):
            raise ValueError(
                f"model.predict_proba returned shape {proba.shape} for {len(texts)} texts and {len(self.classes)} "
                "classes; expected (n_texts, n_classes)."
            )
        best = proba.argmax(axis=1)
        conf = proba[np.arange(len(texts)), best]
        labels = self.class_arr[best].tolist()
        floor = self.report.min_confidence
        if floor is None or self.review is None:
            self.writer.write(self.keys, labels, conf, proba)
            self.report.n_predicted += len(texts)
        else:
            ok = conf >= floor  # abstain below the floor: a person labels these rows, not a guess
            pick = lambda xs, m: [x for x, keep in zip(xs, m) if keep]  # noqa: E731
            self.writer.write(pick(self.keys, ok), pick(labels, ok), conf[ok], proba[ok])
            self.review.write(pick(self.keys, ~ok), pick(texts, ~ok), pick(labels, ~ok), conf[~ok], proba[~ok])
            self.report.n_predicted += int(ok.sum())
            self.report.n_review += int((~ok).sum())
        self.texts, self.keys = [], []

    def _tick(self) -> None:
        if self.on_progress is not None:
            total = self.reader.total
            self.on_progress(self.report.n_read, min(self.reader.position() / total, 1.0) if total else None)
        if self.bar is not None:
            pos = self.reader.position()
            self.bar.update(max(0, pos - self._last_pos))
            self._last_pos = pos
            self.bar.set_postfix(rows=self.report.n_read, rejected=self.report.n_rejected, refresh=False)
