"""Read CSV, TSV, JSON Lines and Parquet files one record at a time: the one reader of data files.

:func:`load_dataset <adaptlab.data.load_dataset>` collects the records of a file;
:func:`predict_file <adaptlab.ship.predict_file>` streams them in batches. Both read through
:func:`open_records`, so a file means the same thing to both: the same formats, separators, encodings,
header rules and record boundaries.

Each :class:`Record` carries two numbers:

* ``line``: the 1-based physical line where the record starts, header included, as an editor shows
  it (Parquet: the row number, starting at 1);
* ``number``: the record's position among the file's records, starting at 1 (blank lines and the
  header are not counted).

A record that cannot be read (a CSV record with the wrong number of fields, a quote never closed, a
JSON line that is not an object) is not skipped: it comes back with ``problem`` set to a
``(code, reason)`` pair, and the caller decides whether it is an error (``load_dataset``) or a
rejected row (``predict``). Bytes that are not valid in the file's encoding either stop the read with
``UnicodeDecodeError`` (``strict_bytes=True``) or come back as lone surrogates in the values, one bad
byte costing one row, not the file.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import gzip
import io
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from adaptlab.errors import ConfigError, DataError

__all__ = ["Record", "RecordReader", "open_records", "detect_format", "SUPPORTED_SUFFIXES"]

#: File suffixes read, and their format. Text formats may also be gzipped (``.csv.gz``).
SUPPORTED_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}

_FORMAT_HINTS = {
    ".json": "if it is a JSON array of objects, save it as JSON Lines (.jsonl), one object per line",
    ".xlsx": "in Excel use File > Save As > 'CSV UTF-8 (Comma delimited)'",
    ".xls": "in Excel use File > Save As > 'CSV UTF-8 (Comma delimited)'",
    ".txt": "if it is comma- or tab-separated with a header line, rename it to .csv or .tsv",
}
_STREAM_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


@dataclass
class Record:
    """One record of a data file.

    ``values`` is the list of fields (CSV/TSV, as strings), the object (JSON Lines) or a column → value
    dict (Parquet); ``problem`` is ``(code, reason)`` when the record itself cannot be read, and
    ``preview`` then holds its raw text.
    """

    line: int
    number: int
    values: Any = None
    problem: Optional[tuple[str, str]] = None
    preview: str = ""


# ------------------------------------------------------------------------------------------ paths


def check_input_file(path: Path) -> None:
    """Refuse a missing path (naming files with similar names) or a folder, with the fix."""
    if not path.exists():
        near = ""
        if path.parent.is_dir():
            close = difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir()], n=3)
            if close:
                near = f" Files with similar names there: {', '.join(close)}."
        raise DataError(f"{path} does not exist.{near} Fix: check the path (it is relative to {Path.cwd()}).")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a file. Fix: pass the path of the data file inside it.")


def detect_format(path: Path) -> tuple[str, bool]:
    """``(format, gzipped)`` from the file name, or a :class:`DataError` that says how to convert it.

    Example:
        >>> from pathlib import Path
        >>> detect_format(Path("news.csv.gz")), detect_format(Path("news.ndjson"))
        (('csv', True), ('jsonl', False))
    """
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    suffix = (suffixes[-2] if len(suffixes) >= 2 else "") if gz else (suffixes[-1] if suffixes else "")
    fmt = SUPPORTED_SUFFIXES.get(suffix)
    if fmt is None or (gz and fmt == "parquet"):
        shown = "".join(path.suffixes[-2:] if gz else path.suffixes[-1:]) or "(none)"
        hint = _FORMAT_HINTS.get(suffix, "convert the file to one of these formats, or rename it if it already is one")
        raise DataError(
            f"{path}: cannot read files of type {shown!r}. adaptlab reads .csv, .tsv, .jsonl, .ndjson and "
            f".parquet (text formats may be gzipped, e.g. .csv.gz). Fix: {hint}."
        )
    return fmt, gz


def codec_for(encoding: str) -> str:
    """The codec that decodes a file saved in ``encoding`` (checked: a clear error for an unknown name).

    UTF-8 reads as ``utf-8-sig``: it also accepts a file without a BOM and drops the BOM from the
    first header.

    Example:
        >>> codec_for("UTF8"), codec_for("cp1252")
        ('utf-8-sig', 'cp1252')
    """
    try:
        canonical = codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError.invalid(
            "encoding", encoding, "a Python codec name such as 'utf-8', 'cp1252' or 'latin-1'"
        ) from None
    return "utf-8-sig" if canonical == "utf-8" else encoding


def other_separator(header: str) -> Optional[str]:
    """The separator of a "CSV" whose header parsed as one field: ';' or tab when it holds one, else None.

    European Excel writes ';'-separated CSV; a single header field holding ';' gives it away.

    Example:
        >>> other_separator("text;label"), other_separator("text")
        (';', None)
    """
    return next((alt for alt in (";", "\t") if alt in header), None)


def unique_names(header: list[str]) -> list[str]:
    """Column names as pandas makes them: a blank name is ``Unnamed: i``, a repeated one gets ``.1``, ``.2``.

    Example:
        >>> unique_names(["text", "", "text", "label"])
        ['text', 'Unnamed: 1', 'text.1', 'label']
    """
    names: list[str] = []
    taken = set()
    for i, name in enumerate(header):
        base = name if name.strip() else f"Unnamed: {i}"
        new, k = base, 0
        while new in taken:
            k += 1
            new = f"{base}.{k}"
        taken.add(new)
        names.append(new)
    return names


# ---------------------------------------------------------------------------------- text streams


def stream_error(path: Path, e: Exception) -> DataError:
    """The error for a text stream that broke while reading (a cut gzip file, an undecodable byte)."""
    if isinstance(e, UnicodeDecodeError):
        return DataError(
            f"{path} cannot be decoded as {e.encoding} ({e.reason}). Fix: pass the encoding the file was saved "
            "with (CLI: --encoding NAME), or re-save the file as UTF-8."
        )
    return DataError(
        f"{path} is not a complete gzip file ({e}). Fix: check that the download or copy finished, or "
        "pass the uncompressed file."
    )


def _guarded(path: Path, fn: Any, strict_bytes: bool = False) -> Any:
    try:
        return fn()
    except _STREAM_ERRORS as e:
        raise stream_error(path, e) from None
    except UnicodeDecodeError as e:
        if strict_bytes:
            raise
        raise stream_error(path, e) from None


def _text_codec(path: Path, gz: bool, encoding: Optional[str]) -> tuple[str, str]:
    """(codec used to decode, encoding name reported) for a text input."""
    if encoding is not None:
        return codec_for(encoding), encoding
    raw = open(path, "rb")
    try:
        binary = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        head = _guarded(path, lambda: binary.read(4))
    finally:
        raw.close()
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # A UTF-16 BOM is unambiguous (Excel's "Unicode text" export): no guessing involved.
        return "utf-16", "utf-16"
    return "utf-8-sig", "utf-8"


class _TextSource:
    """A text file opened for streaming, gzipped or not."""

    def __init__(self, path: Path, gz: bool, codec: str, newline: str, strict_bytes: bool) -> None:
        self.raw = open(path, "rb")
        binary = gzip.GzipFile(fileobj=self.raw, mode="rb") if gz else self.raw
        # surrogateescape keeps every record boundary intact (separators, quotes and newlines are
        # ASCII), so one bad byte costs one row, not the file.
        errors = "strict" if strict_bytes else "surrogateescape"
        self.stream = io.TextIOWrapper(binary, encoding=codec, errors=errors, newline=newline)

    def position(self) -> int:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stream.close()  # a GzipFile given a fileobj leaves it open
        self.raw.close()


class _Lines:
    """The stream's lines, noting when the csv reader had to read past the last one.

    The csv module (non-strict, like pandas) returns a record cut off by the end of the file inside a
    quoted field as if it were complete; reaching the end in the middle of a record is how to tell.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.exhausted = False

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = self.stream.readline()
        if not line:
            self.exhausted = True
            raise StopIteration
        return line


@contextlib.contextmanager
def _large_csv_fields() -> Iterator[None]:
    # The csv module's default field limit (128 KiB) is smaller than some documents.
    old = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)


# ---------------------------------------------------------------------------------------- readers


class RecordReader:
    """The records of one file, in order. Use :func:`open_records`; close it (or use ``with``).

    Attributes:
        fmt: ``csv``, ``tsv``, ``jsonl`` or ``parquet``.
        encoding: The text encoding used (None for Parquet).
        columns: The column names (JSON Lines: the keys seen so far, see ``sample_columns``).
        unit, total: What :meth:`position` counts (``B`` bytes or ``row``) and its value at the end.
    """

    fmt: str
    encoding: Optional[str] = None
    columns: list[str]
    unit: str = "B"
    total: Optional[int] = None

    def position(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Record]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "RecordReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _CsvRecords(RecordReader):
    def __init__(self, path: Path, fmt: str, gz: bool, encoding: Optional[str], strict_bytes: bool) -> None:
        self.path, self.fmt, self.gz, self.strict_bytes = path, fmt, gz, strict_bytes
        self.codec, self.encoding = _text_codec(path, gz, encoding)
        self.total = path.stat().st_size
        self.delimiter = "\t" if fmt == "tsv" else ","
        header = self._open()
        if fmt == "csv" and len(header) == 1 and (alt := other_separator(header[0])) is not None:
            self.close()  # European Excel's ';' CSV, or a tab-separated file named .csv
            self.delimiter = alt
            header = self._open()
        if any(bad_char(h) is not None for h in header):
            self.close()
            raise DataError(
                f"{path}: the header line is not valid {self.encoding}. Fix: pass the encoding the file was "
                "saved with (CLI: --encoding NAME, e.g. cp1252 for Excel on Windows), or re-save it as UTF-8."
            )
        header[0] = header[0].removeprefix("\ufeff")  # a second BOM, or one inside a UTF-16 file
        self.columns = unique_names(header)

    def _open(self) -> list[str]:
        self.source = _TextSource(self.path, self.gz, self.codec, "", self.strict_bytes)
        self.lines = _Lines(self.source.stream)
        self.reader = csv.reader(self.lines, delimiter=self.delimiter)
        try:
            with _large_csv_fields():
                header: Optional[list[str]] = []
                while header == []:  # blank lines before the header are skipped, as pandas does
                    header = _guarded(self.path, lambda: next(self.reader, None), self.strict_bytes)
        except BaseException:
            self.close()
            raise
        if header is None or not any(h.strip() for h in header):
            self.close()
            what = "is empty" if header is None else "starts with a line of blanks instead of a header"
            raise DataError(f"{self.path} {what}. Fix: the first line must name the columns, e.g. id,text.")
        return header

    def position(self) -> int:
        return self.source.position()

    def close(self) -> None:
        self.source.close()

    def __iter__(self) -> Iterator[Record]:
        n_cols, reader, number = len(self.columns), self.reader, 0
        prev = reader.line_num
        with _large_csv_fields():
            while True:
                start = prev + 1
                try:
                    rec = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    prev, number = reader.line_num, number + 1
                    yield Record(start, number, problem=("bad_csv", f"the CSV record cannot be read ({e})"))
                    continue
                except _STREAM_ERRORS as e:
                    raise stream_error(self.path, e) from None
                except UnicodeDecodeError as e:
                    if self.strict_bytes:
                        raise
                    raise stream_error(self.path, e) from None
                prev = reader.line_num
                if not rec:
                    continue  # a blank line is not a record
                number += 1
                yield Record(start, number, rec, self._problem(rec, start, prev, n_cols))

    def _problem(self, rec: list[str], start: int, end: int, n_cols: int) -> Optional[tuple[str, str]]:
        if self.lines.exhausted:
            return ("unclosed_quote",
                    f"a quote opened in this record is never closed, so the record runs from line {start} to the "
                    f"end of the file (line {end}); every line after it was read as part of its text")
        if len(rec) != n_cols:
            span = f"runs from line {start} to line {end} and " if end > start else ""
            hint = ("a quote is probably not closed" if end > start + 1
                    else "an unquoted separator in a field, or a missing field")
            return ("wrong_field_count",
                    f"the record {span}has {len(rec)} field(s) but the header has {n_cols} ({hint})")
        return None


class _JsonlRecords(RecordReader):
    fmt = "jsonl"

    def __init__(self, path: Path, gz: bool, encoding: Optional[str], strict_bytes: bool) -> None:
        self.path, self.strict_bytes = path, strict_bytes
        self.codec, self.encoding = _text_codec(path, gz, encoding)
        self.total = path.stat().st_size
        # "\n" only: U+2028 and friends are legal inside JSON strings.
        self.source = _TextSource(path, gz, self.codec, "\n", strict_bytes)
        self._records = self._parse()
        self._head: list[Record] = []
        self.columns = []

    def sample_columns(self, n: int) -> Optional[Record]:
        """Read up to ``n`` objects ahead to learn the columns (JSON Lines has no header).

        Returns the first unreadable record when none of them is an object, else None. The records read
        ahead are still returned by the iteration.
        """
        keys: dict[str, None] = {}
        first_problem: Optional[Record] = None
        n_objects = 0
        for rec in self._records:
            self._head.append(rec)
            if rec.problem is None:
                keys.update(dict.fromkeys(rec.values))
                n_objects += 1
            elif first_problem is None:
                first_problem = rec
            if n_objects >= n:
                break
        self.columns = list(keys)
        self.n_sampled = len(self._head)
        return first_problem if n_objects == 0 else None

    def _parse(self) -> Iterator[Record]:
        stream, n, number = self.source.stream, 0, 0
        while True:
            line = _guarded(self.path, stream.readline, self.strict_bytes)
            if not line:
                return
            n += 1
            s = line.strip()
            if not s:
                continue
            number += 1
            try:
                obj = json.loads(s)
            except json.JSONDecodeError as e:
                hint = ("; the file looks like one JSON array, and JSON Lines needs one object per line"
                        if n == 1 and s.startswith("[") else "")
                why = f"the line is not valid JSON ({e.msg}, column {e.colno}){hint}"
                yield Record(n, number, problem=("invalid_json", why), preview=s)
                continue
            if not isinstance(obj, dict):
                why = f"the line holds a JSON {type(obj).__name__}, not an object"
                yield Record(n, number, problem=("not_an_object", why), preview=s)
                continue
            yield Record(n, number, obj)

    def position(self) -> int:
        return self.source.position()

    def close(self) -> None:
        self.source.close()

    def __iter__(self) -> Iterator[Record]:
        head, self._head = self._head, []
        yield from head
        yield from self._records


class _ParquetRecords(RecordReader):
    fmt = "parquet"
    unit = "row"

    def __init__(self, path: Path, batch_size: int) -> None:
        import pyarrow.parquet as pq

        self.path, self.batch_size = path, batch_size
        try:
            self.file = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several unrelated types for a bad file
            raise DataError(
                f"{path} cannot be read as Parquet ({type(e).__name__}: {e}). Fix: check that the file is a "
                "complete Parquet file (not a renamed CSV), or export it again."
            ) from None
        self.schema = self.file.schema_arrow
        self.columns = [str(c) for c in self.schema.names]
        self.total = self.file.metadata.num_rows
        self.wanted: Optional[list[str]] = None
        self._rows_read = 0

    def batches(self, columns: Optional[list[str]] = None) -> Iterator[Any]:
        """The file's record batches (pyarrow), only ``columns`` when given."""
        batches = self.file.iter_batches(batch_size=self.batch_size, columns=columns)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as e:  # a damaged row group surfaces only when it is read
                raise DataError(
                    f"{self.path}: cannot read the Parquet data after row {self._rows_read} ({type(e).__name__}: "
                    f"{e}). Fix: export the file again; rows before it were read fine."
                ) from None
            self._rows_read += batch.num_rows
            yield batch

    def position(self) -> int:
        return self._rows_read

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()

    def __iter__(self) -> Iterator[Record]:
        n = 0
        for batch in self.batches(self.wanted):
            names = batch.schema.names
            for values in zip(*(batch.column(i).to_pylist() for i in range(len(names)))):
                n += 1
                yield Record(n, n, dict(zip(names, values)))


def bad_char(s: str) -> Optional[int]:
    """Index of the first character that cannot be written as UTF-8 (a byte the codec could not read)."""
    try:
        s.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        return e.start


def open_records(path: Path, *, encoding: Optional[str] = None, strict_bytes: bool = False,
                 batch_size: int = 1024) -> RecordReader:
    """Open a data file for reading record by record.

    Args:
        path: A ``.csv``, ``.tsv``, ``.jsonl``/``.ndjson`` (text formats may add ``.gz``) or ``.parquet`` file.
        encoding: The text encoding; default UTF-8, or UTF-16 when the file starts with its BOM.
        strict_bytes: Raise ``UnicodeDecodeError`` at a byte the encoding cannot read, instead of
            passing it through as a lone surrogate in that record's values.
        batch_size: Parquet rows read at a time.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.csv"
        >>> _ = p.write_text('text,label\\n"two\\nlines",a\\n\\nb,c,extra\\n', encoding="utf-8")
        >>> with open_records(p) as records:
        ...     print(records.columns, [(r.line, r.number, r.values, r.problem and r.problem[0]) for r in records])
        ['text', 'label'] [(2, 1, ['two\\nlines', 'a'], None), (5, 2, ['b', 'c', 'extra'], 'wrong_field_count')]
    """
    fmt, gz = detect_format(path)
    if fmt == "parquet":
        return _ParquetRecords(path, batch_size)
    if fmt == "jsonl":
        return _JsonlRecords(path, gz, encoding, strict_bytes)
    return _CsvRecords(path, fmt, gz, encoding, strict_bytes)
