"""File helpers every stage that writes artifacts shares: content hashes and all-or-nothing folders."""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Union

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
