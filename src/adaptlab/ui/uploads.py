"""Uploaded files: stored under server-chosen names, never executed, only ever parsed as data.

A browser names a file; that name is shown back (sanitised, escaped by the templates) and its suffix
picks the parser, nothing more. Every upload gets a random id and a folder of its own:
``<upload_dir>/<id>/labeled.csv`` (or ``unlabeled.jsonl`` ...) plus ``meta.json``.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
import unicodedata
from pathlib import Path
from typing import Any, BinaryIO, Optional

from adaptlab.data.reader import SUPPORTED_SUFFIXES, open_records
from adaptlab.errors import AdaptlabError, DataError, DataValidationError

UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
ROLES = ("labeled", "unlabeled", "labels")
_CHUNK = 1 << 20
ENCODINGS = ("", "utf-8", "cp1252", "latin-1", "utf-16")


class UploadError(AdaptlabError):
    """An upload was refused (type, size, missing file); the message says what to do."""


class UploadTooLarge(UploadError):
    """The upload is larger than the server's limit."""


def mib(n: float) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def file_size(n: Any) -> str:
    """A file's size as a person reads it: bytes, KB, MB or GB (powers of 1,000), never "0.0" of a unit.

    Example:
        >>> file_size(312), file_size(5432), file_size(2_500_000), file_size(None)
        ('312 bytes', '5.4 KB', '2.5 MB', 'size unknown')
    """
    if not isinstance(n, (int, float)) or isinstance(n, bool) or n < 0:
        return "size unknown"
    if n < 1000:
        return f"{int(n)} byte{'' if n == 1 else 's'}"
    for unit, scale in (("KB", 1e3), ("MB", 1e6)):
        if n < scale * 999.95:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e9:.1f} GB"


def too_large_message(size: Optional[int], limit: int) -> str:
    got = f"The upload is {mib(size)}" if size else "The upload is"
    return (f"{got}, larger than this app's limit of {mib(limit)}. Split the file into smaller parts, keep "
            "only the columns the study needs (text and label), or restart the app with a larger limit: "
            f"adaptlab ui --max-upload-mb {max(2 * limit // (1024 * 1024), 1)}.")


def display_name(client_name: Optional[str]) -> str:
    """The client's file name, for display only: last path component, printable, at most 120 characters."""
    name = (client_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return (name[:117] + "...") if len(name) > 120 else (name or "upload")


def data_suffix(client_name: Optional[str]) -> str:
    """The parser suffix of a client file name (".csv", ".jsonl.gz", ...); refuses anything else."""
    name = (client_name or "").lower().strip()
    for suffix in SUPPORTED_SUFFIXES:
        if suffix != ".parquet" and name.endswith(suffix + ".gz"):
            return suffix + ".gz"
    for suffix in SUPPORTED_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    shown = ("." + name.rsplit(".", 1)[-1]) if "." in name else "(none)"
    hint = ""
    if shown in (".xlsx", ".xls"):
        hint = " In Excel use File > Save As > 'CSV UTF-8 (Comma delimited)'."
    elif shown == ".json":
        hint = " If it is a JSON array of objects, save it as JSON Lines (.jsonl), one object per line."
    raise UploadError(f"cannot read files of type {shown!r} ({display_name(client_name)}). adaptlab reads "
                      f"{', '.join(SUPPORTED_SUFFIXES)} (text formats may be gzipped, e.g. .csv.gz).{hint}")


def new_upload_id() -> str:
    return secrets.token_hex(16)


class UploadStore:
    """Upload folders under one root; ids are validated before any path is built from them."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def folder(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not UPLOAD_ID.match(upload_id):
            raise KeyError(upload_id)
        folder = self.root / upload_id
        if not (folder / "meta.json").is_file():
            raise KeyError(upload_id)
        return folder

    def meta(self, upload_id: str) -> dict[str, Any]:
        return json.loads((self.folder(upload_id) / "meta.json").read_text(encoding="utf-8"))

    def save_meta(self, upload_id: str, meta: dict[str, Any]) -> None:
        path = self.folder(upload_id) / "meta.json"
        tmp = path.with_name("meta.json.tmp")
        tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
        os.replace(tmp, path)

    def path(self, upload_id: str, role: str) -> Path:
        meta = self.meta(upload_id)
        f = meta.get("files", {}).get(role)
        if role not in ROLES or not f:
            raise KeyError(role)
        return self.folder(upload_id) / f"{role}{f['suffix']}"

    def create(self, files: dict[str, tuple[Optional[str], BinaryIO]], kind: str = "study",
               extra: Optional[dict[str, Any]] = None) -> str:
        """Copy each (client name, stream) into a new upload folder; returns the new id.

        Raises UploadError for an unsupported type, an empty file or one over the size limit (and
        leaves nothing behind).
        """
        suffixes = {role: data_suffix(name) for role, (name, _) in files.items()}
        uid = new_upload_id()
        folder = self.root / uid
        folder.mkdir(parents=True, exist_ok=False)
        meta: dict[str, Any] = {"id": uid, "kind": kind, "created": time.time(), "files": {}, **(extra or {})}
        try:
            total = 0
            for role, (name, stream) in files.items():
                if role not in ROLES:
                    raise UploadError(f"unknown upload role {role!r}")
                target = folder / f"{role}{suffixes[role]}"
                size = 0
                with open(target, "wb") as out:
                    while True:
                        chunk = stream.read(_CHUNK)
                        if not chunk:
                            break
                        size += len(chunk)
                        total += len(chunk)
                        if total > self.max_bytes:
                            raise UploadTooLarge(too_large_message(None, self.max_bytes))
                        out.write(chunk)
                if size == 0:
                    raise UploadError(f"{display_name(name)} is empty (0 bytes). Check that you picked the right file.")
                meta["files"][role] = {"name": display_name(name), "suffix": suffixes[role], "bytes": size}
            (folder / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        except BaseException:
            for p in folder.iterdir():
                p.unlink()
            folder.rmdir()
            raise
        return uid


# ------------------------------------------------------------------------------------------- columns
def read_columns(path: Path) -> list[str]:
    """The column names of a data file, for the column pickers: the names `load_dataset` will see.

    Reads the header (JSON Lines: the keys of the first 5,000 objects; Parquet: the schema) through the
    shared reader. A header that is not UTF-8 is shown as cp1252 (what Excel on Windows writes): the
    user picks the columns and the encoding on the same form. Raises DataError with what to do.
    """
    try:
        try:
            return _header(path, None)
        except DataError as exc:
            if "header line is not valid" not in str(exc):
                raise
            return _header(path, "cp1252")
    except DataError as exc:
        raise DataError(str(exc).replace(f"{path}: ", "").replace(str(path), "the file")) from None


def preview_rows(path: Path, encoding: Optional[str] = None, n: int = 5, width: int = 160) -> dict[str, Any]:
    """The first ``n`` records of a data file as the columns page shows them: ``{"columns", "rows"}``, each cell
    cut to ``width`` characters (a record that cannot be read shows its raw text in the first cell).

    The page escapes every cell; bytes the encoding cannot read show as U+FFFD. Raises DataError like
    :func:`read_columns`.
    """
    def cell(v: Any) -> str:
        text = "" if v is None else str(v)
        text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates from undecodable bytes
        return text if len(text) <= width else text[:width - 1] + "…"

    tries = [encoding] if encoding else [None, "cp1252"]  # as read_columns: a non-UTF-8 header is read as cp1252
    for i, enc in enumerate(tries):
        try:
            with open_records(path, encoding=enc) as records:
                raw = []
                for rec in records:
                    if len(raw) >= n:
                        break
                    raw.append(rec)
                cols = list(records.columns)
        except DataError as exc:
            if i + 1 < len(tries) and "header line is not valid" in str(exc):
                continue
            raise DataError(str(exc).replace(f"{path}: ", "").replace(str(path), "the file")) from None
        rows = [[cell(r.preview)] if r.problem is not None else
                [cell(r.values.get(c)) for c in cols] if isinstance(r.values, dict) else [cell(v) for v in r.values]
                for r in raw]
        return {"columns": [cell(c) for c in cols], "rows": rows}
    return {"columns": [], "rows": []}


def _header(path: Path, encoding: Optional[str]) -> list[str]:
    with open_records(path, encoding=encoding) as records:
        if records.fmt == "jsonl" and records.sample_columns(5000) is not None:
            raise DataError("no JSON object found in the first lines: JSON Lines needs one object per line, "
                            'e.g. {"text": "...", "label": "..."}.')
        return list(records.columns)


def problems_view(exc: Exception, replace: dict[str, str]) -> dict[str, Any]:
    """An error from loading data as what the page shows: a message, and problems with their rows.

    ``replace`` maps server paths to the names the user knows, so no server path reaches the page.
    """
    def clean(s: str) -> str:
        for a, b in replace.items():
            s = s.replace(a, b)
        return s

    if isinstance(exc, DataValidationError):
        problems = [{"code": p.code, "message": clean(p.message), "fix": clean(p.fix), "rows": list(p.rows),
                     "severity": p.severity} for p in exc.problems]
        by_row: dict[int, list[str]] = {}
        for p in problems:
            for r in p["rows"]:
                by_row.setdefault(int(r), []).append(p["code"])
        n_err = sum(1 for p in problems if p["severity"] == "error")
        return {"message": f"{n_err} problem(s) found; nothing has run. Fix them in the file (or choose "
                           "'drop bad rows' for row-level problems) and upload it again.",
                "problems": problems,
                "rows": [{"row": r, "codes": sorted(set(c))} for r, c in sorted(by_row.items())[:500]],
                "n_rows": len(by_row)}
    return {"message": clean(str(exc)), "problems": [], "rows": [], "n_rows": 0}
