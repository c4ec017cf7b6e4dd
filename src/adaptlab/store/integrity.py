"""Checksums for what adaptlab writes and later trusts: folders (refits, checkpoints), files and rows.

A folder gets a ``checksums.json`` beside its files (SHA-256 and size of each, written once, when the folder is
complete); a reader verifies it before using anything inside, and a folder whose files do not match is *damaged*:
it is moved aside (``<name>.corrupt-<time>``, kept for inspection) with a one-line warning naming it and what is
wrong, and what it held is recomputed. A stored value that is not a file (an embedding row, a run-store result)
carries its own digest (:func:`digest`). Damaged state is thereby treated exactly like missing state: recomputed,
never used. The shipped model does the same with the SHA-256 of its weights (``adaptlab.ship``).

SHA-256 of a 90 MB file took 0.18 s on a shared 2-core Xeon with SHA extensions, so verifying at every read is
cheap next to loading the weights; checkpoints are hashed from memory as they are written (never read back).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from adaptlab.store.files import move_aside, sha256_file

PathLike = Union[str, Path]
CHECKSUMS = "checksums.json"
_SCHEMA = 1


class DamagedError(Exception):
    """A file or folder does not match its checksum (or has none); ``path`` names it, ``problem`` says how."""

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


def digest(*parts: Union[bytes, str]) -> bytes:
    """A 16-byte BLAKE2b digest of ``parts`` (each length-prefixed, so ``("ab", "c") != ("a", "bc")``).

    For small stored values (an embedding row with its key, a stored result): cheaper than SHA-256 per row and
    as good at catching flipped bytes.

    Example:
        >>> digest("fp", "h1", b"\\x00\\x01") == digest("fp", "h1", b"\\x00\\x01"), len(digest("x"))
        (True, 16)
        >>> digest("ab", "c") == digest("a", "bc")
        False
    """
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else bytes(p)
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.digest()


def embedding_row_checksum(fingerprint: str, text_hash: str, vector: bytes) -> bytes:
    """The digest stored with an embedding-cache row: its key and its vector's bytes, so a flipped byte in any
    of them is caught.

    Example:
        >>> embedding_row_checksum("fp", "h1", b"v" * 12) == embedding_row_checksum("fp", "h2", b"v" * 12)
        False
    """
    return digest(fingerprint, text_hash, vector)


def scan_embedding_rows(conn: Any, *, has_checksums: bool = True) -> dict[str, int]:
    """Every embedding-cache row of ``conn`` (sqlite3) checked against its checksum, in batches:
    ``{"rows", "damaged", "unverified"}``; ``unverified`` rows have none (written before rows had them, or a
    store whose table lacks the column: ``has_checksums=False``).

    Example:
        >>> import sqlite3
        >>> con = sqlite3.connect(":memory:")
        >>> _ = con.execute("CREATE TABLE embeddings (fingerprint, text_hash, vector, checksum)")
        >>> row = ("fp", "h", b"v", embedding_row_checksum("fp", "h", b"v"))
        >>> _ = con.execute("INSERT INTO embeddings VALUES (?, ?, ?, ?)", row)
        >>> scan_embedding_rows(con)["damaged"]
        0
    """
    counts = {"rows": 0, "damaged": 0, "unverified": 0}
    check = "checksum" if has_checksums else "NULL"
    cur = conn.execute(f"SELECT fingerprint, text_hash, vector, {check} FROM embeddings")
    while rows := cur.fetchmany(4096):
        for fp, h, blob, digest in rows:
            counts["rows"] += 1
            if digest is None:
                counts["unverified"] += 1
            elif bytes(digest) != embedding_row_checksum(fp, h, blob):
                counts["damaged"] += 1
    return counts


def json_checksum(obj: dict[str, Any]) -> str:
    """SHA-256 of ``obj`` as sorted JSON, without its own ``checksum`` key (for a json file that checks itself).

    Example:
        >>> meta = {"step": 8}; meta["checksum"] = json_checksum(meta)
        >>> json_checksum(meta) == meta["checksum"], json_checksum({**meta, "step": 9}) == meta["checksum"]
        (True, False)
    """
    body = {k: v for k, v in obj.items() if k != "checksum"}
    return sha256_bytes(json.dumps(body, sort_keys=True).encode("utf-8"))


def verify_listed(folder: PathLike, files: Any) -> list[str]:
    """Problems of the files ``{relative path: {"sha256", "bytes"}}`` under ``folder`` (``[]`` when all match).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); entry = write_bytes_checked(d / "w.bin", b"abc")
        >>> verify_listed(d, {"w.bin": entry}), len(verify_listed(d, {"x.bin": entry}))
        ([], 1)
    """
    folder = Path(folder)
    if not isinstance(files, dict):
        return [f"{folder}: no checksums were recorded (written by an older adaptlab, or not completely)"]
    problems = []
    for rel, entry in sorted(files.items()):
        path = folder / rel
        try:
            _check_entry(path, entry, path.stat().st_size, lambda: sha256_file(path))
        except FileNotFoundError:
            problems.append(f"{path}: the file is missing")
        except (DamagedError, TypeError, KeyError, ValueError, AttributeError) as exc:
            problems.append(str(exc) if isinstance(exc, DamagedError) else f"{path}: bad checksum entry ({exc})")
    return problems


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (for files hashed from memory as they are written, never read back).

    Example:
        >>> sha256_bytes(b"")[:12]
        'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def write_bytes_checked(path: PathLike, data: bytes) -> dict[str, Any]:
    """Write ``data`` to ``path`` and return its checksum entry ``{"sha256", "bytes"}`` (hashed from memory).

    Example:
        >>> import tempfile
        >>> entry = write_bytes_checked(Path(tempfile.mkdtemp()) / "w.bin", b"abc")
        >>> entry["bytes"], entry["sha256"][:8]
        (3, 'ba7816bf')
    """
    Path(path).write_bytes(data)
    return {"sha256": sha256_bytes(data), "bytes": len(data)}


def read_bytes_checked(path: PathLike, entry: Optional[dict[str, Any]]) -> bytes:
    """The bytes of ``path`` after checking them against ``entry`` (from :func:`write_bytes_checked`).

    Raises :class:`DamagedError` naming the file when it is missing, has another size or another SHA-256.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "w.bin"; entry = write_bytes_checked(p, b"abc")
        >>> read_bytes_checked(p, entry)
        b'abc'
        >>> _ = p.write_bytes(b"abd"); read_bytes_checked(p, entry)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        adaptlab.store.integrity.DamagedError: .../w.bin: its SHA-256 does not match the one written with it ...
    """
    path = Path(path)
    if not isinstance(entry, dict) or "sha256" not in entry or "bytes" not in entry:
        raise DamagedError(path, "no checksum was recorded for it (written by an older adaptlab)")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DamagedError(path, "the file is missing") from None
    _check_entry(path, entry, len(data), lambda: sha256_bytes(data))
    return data


def _check_entry(path: Path, entry: dict[str, Any], size: int, sha: Any) -> None:
    if int(entry["bytes"]) != size:
        raise DamagedError(path, f"{size:,} bytes instead of the {int(entry['bytes']):,} written "
                                 "(truncated or overwritten)")
    if sha() != entry["sha256"]:
        raise DamagedError(path, "its SHA-256 does not match the one written with it (flipped or overwritten bytes)")


def folder_checksums(folder: PathLike, names: Optional[Iterable[str]] = None) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "bytes"}}`` of every file under ``folder`` (or of ``names`` only).

    ``checksums.json`` itself and temporary files (``*.tmp``) are left out.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("x")
        >>> folder_checksums(d)["a.txt"]["bytes"]
        1
    """
    folder = Path(folder)
    if names is None:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
    else:
        files = sorted(p for n in names for p in ([folder / n] if (folder / n).is_file() else
                                                   (q for q in (folder / n).rglob("*") if q.is_file())))
    out: dict[str, dict[str, Any]] = {}
    for p in files:
        rel = p.relative_to(folder).as_posix()
        if rel == CHECKSUMS or rel.endswith(".tmp"):
            continue
        out[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


def write_checksums(folder: PathLike, entries: Optional[dict[str, dict[str, Any]]] = None) -> Path:
    """Write ``folder/checksums.json`` (atomically) for ``entries`` (default: every file in the folder now).

    Call it once the folder is complete; :func:`verify_folder` then checks every listed file.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "w.bin").write_bytes(b"abc")
        >>> write_checksums(d).name
        'checksums.json'
        >>> verify_folder(d)
        []
    """
    folder = Path(folder)
    entries = folder_checksums(folder) if entries is None else entries
    tmp = folder / (CHECKSUMS + ".tmp")
    tmp.write_text(json.dumps({"schema": _SCHEMA, "files": entries}, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / CHECKSUMS)
    return folder / CHECKSUMS


def verify_folder(folder: PathLike) -> list[str]:
    """What is wrong with ``folder`` against its ``checksums.json``: one line per problem, ``[]`` when whole.

    A folder without ``checksums.json`` (or with an unreadable one) is one problem: it cannot be trusted.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "w.bin").write_bytes(b"abc"); _ = write_checksums(d)
        >>> _ = (d / "w.bin").write_bytes(b"ab")
        >>> verify_folder(d)  # doctest: +ELLIPSIS
        ['.../w.bin: 2 bytes instead of the 3 written (truncated or overwritten)']
    """
    folder = Path(folder)
    try:
        listed = json.loads((folder / CHECKSUMS).read_text(encoding="utf-8"))["files"]
        if not isinstance(listed, dict):
            raise ValueError("files is not a mapping")
    except FileNotFoundError:
        return [f"{folder}: it has no {CHECKSUMS} (written by an older adaptlab, or not completely)"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{folder / CHECKSUMS}: unreadable ({type(exc).__name__}: {exc})"]
    return verify_listed(folder, listed)


def check_folder(folder: PathLike) -> None:
    """Raise :class:`DamagedError` for ``folder`` when :func:`verify_folder` finds anything wrong.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = write_checksums(d); check_folder(d)
    """
    problems = verify_folder(folder)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DamagedError(folder, problems[0] + more)


def quarantine(path: PathLike, problem: str, then: str = "its contents are being recomputed") -> Path:
    """Move a damaged file or folder aside (``<name>.corrupt-<time>``) with a one-line warning; return where.

    The warning (a :class:`~adaptlab.store.files.MovedAsideWarning`) names the damaged path, what is wrong, where
    it was kept and ``then``: what happens instead of using it.

    Example:
        >>> import tempfile, warnings
        >>> d = Path(tempfile.mkdtemp()) / "checkpoint"; d.mkdir()
        >>> with warnings.catch_warnings(record=True):
        ...     kept = quarantine(d, "its SHA-256 does not match")
        >>> d.exists(), ".corrupt-" in kept.name
        (False, True)
    """
    return move_aside(path, problem, then=then)


__all__ = ["CHECKSUMS", "DamagedError", "check_folder", "digest", "embedding_row_checksum", "folder_checksums", "scan_embedding_rows",
           "json_checksum", "quarantine", "read_bytes_checked", "sha256_bytes", "verify_folder", "verify_listed",
           "write_bytes_checked", "write_checksums"]
