"""File helpers every stage that writes artifacts shares: content hashes, all-or-nothing folders, and what to do
with a damaged cache or a full disk."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

if TYPE_CHECKING:
    from adaptlab.errors import DiskFullError

PathLike = Union[str, Path]


def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (weights files are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_folder_atomically(dest: PathLike, write: Callable[[Path], object]) -> Path:
    """Fill a temporary folder beside ``dest`` with ``write(folder)``, then swap it in.

    An interrupted or failing write never leaves half a folder at ``dest`` (readers see the old
    folder or the new one); an existing ``dest`` is replaced.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        write(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


class MovedAsideWarning(UserWarning):
    """A damaged cache or refit folder was renamed (kept for inspection) and is being recomputed."""


def move_aside(path: PathLike, reason: str, then: str = "its contents are being recomputed") -> Path:
    """Rename a damaged, recomputable ``path`` to ``<name>.corrupt-<timestamp>`` beside it, warn, return the new path.

    Only for what can be recomputed (embedding cache, refit folders): the run store is never moved or deleted
    automatically. SQLite side files (``-wal``, ``-shm``) move with their database.

    Example:
        >>> import tempfile, warnings
        >>> p = Path(tempfile.mkdtemp()) / "embeddings.sqlite"; _ = p.write_bytes(b"junk")
        >>> with warnings.catch_warnings(record=True):
        ...     kept = move_aside(p, "file is not a database")
        >>> p.exists(), kept.name.startswith("embeddings.sqlite.corrupt-")
        (False, True)
    """
    import datetime as dt
    import warnings

    path = Path(path)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    dest = path.with_name(f"{path.name}.corrupt-{stamp}")
    os.replace(path, dest)
    for side in ("-wal", "-shm", "-journal"):
        extra = path.with_name(path.name + side)
        if extra.exists():
            os.replace(extra, dest.with_name(dest.name + side))
    warnings.warn(MovedAsideWarning(
        f"{path} was damaged ({reason}); it was moved aside to {dest} (kept for inspection; delete it when done) "
        f"and {then}."), stacklevel=2)
    return dest


def is_corrupt(exc: BaseException) -> bool:
    """True when a SQLite error means the file itself is damaged (not locked, not full, not unreadable)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` is a full disk or quota: ``OSError`` ENOSPC/EDQUOT, or SQLite's SQLITE_FULL."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    if isinstance(exc, sqlite3.DatabaseError):
        code = getattr(exc, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or "disk is full" in str(exc).lower()
    return False


def disk_full_error(path: PathLike, what: str, kept: str, free: str) -> "DiskFullError":
    """The error for a write that hit a full disk: where, how much is left, what is intact, what to delete.

    Example:
        >>> print(disk_full_error("/tmp", "the run store write", "the store is as before", "old refits"))
        ... # doctest: +ELLIPSIS
        the disk holding /tmp is full (... free) during the run store write; the store is as before. Free space ...
    """
    from adaptlab.errors import DiskFullError

    path = Path(path)
    probe = path if path.exists() else path.parent
    try:
        left = f"{shutil.disk_usage(probe).free / 2**20:.0f} MiB"
    except OSError:
        left = "unknown space"
    return DiskFullError(f"the disk holding {path} is full ({left} free) during {what}; {kept}. Free space "
                         f"(e.g. {free}), then run the same command again.")
