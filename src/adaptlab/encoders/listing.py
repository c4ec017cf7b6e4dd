"""What encoders this machine can load: the registry's packages (installed or not) and local folders.

Kept apart from :mod:`adaptlab.encoders.candidates` (the registry, which ``Encoder.from_pretrained``
reads to resolve a name) because listing loads encoders: the registry cannot import the encoder that
imports it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from adaptlab.encoders import candidates as registry
from adaptlab.encoders.candidates import PathLike
from adaptlab.encoders.encoder import Encoder


def list_encoders(
    folders: Sequence[PathLike] = (),
    *,
    fingerprint: bool = True,
    include_missing: bool = True,
    loader: Optional[Callable[[Any], Any]] = None,
) -> list[dict[str, Any]]:
    """What encoders this machine can load: the registry packages (installed or not) plus ``folders``.

    Each row: ``name``, ``installed``, ``source``, ``path``, ``size_mb`` (weights on disk), ``dim``,
    ``max_seq_length``, ``n_parameters``, ``license``, ``fingerprint`` (None unless ``fingerprint``),
    ``pip`` (how to install a missing one) and ``note``. With ``fingerprint=True`` installed encoders
    are loaded to read the real values (a few seconds each; a packed package is assembled or converted
    on its first use, once); with ``fingerprint=False`` the registry's values are shown and nothing loads.

    Example:
        >>> from adaptlab.encoders import list_encoders
        >>> rows = list_encoders(fingerprint=False)          # reads the packages' metadata; loads no model
        >>> [(r["name"], r["dim"]) for r in rows if r["name"] == "all-MiniLM-L6-v2"]
        [('all-MiniLM-L6-v2', 384)]
    """
    load = loader or (lambda src: Encoder.from_pretrained(src, device="cpu"))
    rows: list[dict[str, Any]] = []
    for entry in registry.KNOWN_ENCODERS.values():
        row: dict[str, Any] = {
            "name": entry.name, "installed": registry.is_installed(entry), "hub_id": entry.hub_id,
            "source": f"package {registry._dists_label(entry)}", "path": None, "size_mb": entry.disk_mb,
            "download_mb": entry.download_mb, "dim": entry.dim, "max_seq_length": entry.max_seq_length,
            "n_parameters": entry.n_parameters, "license": entry.license, "fingerprint": None,
            "pip": entry.pip, "note": entry.note,
        }
        if row["installed"]:
            row["source"] = f"package {registry._dists_label(entry)} {registry.package_version(entry)}"
            if fingerprint:
                row.update(_describe(load(entry.name), fingerprint))
        elif not include_missing:
            continue
        rows.append(row)
    for folder in folders:
        enc = load(str(folder))
        row = {"name": enc.name, "installed": True, "hub_id": None, "pip": None, "note": "local folder",
               "download_mb": None}
        row.update(_describe(enc, fingerprint))
        rows.append(row)
    return rows


def _describe(enc: Any, fingerprint: bool) -> dict[str, Any]:
    info = enc.info
    path = Path(enc.path) if enc.path is not None else None
    return {
        "source": info.get("source"),
        "path": str(path) if path is not None else None,
        "size_mb": round(registry.weights_size(path) / 1e6, 1) if path is not None else None,
        "dim": int(enc.dim),
        "max_seq_length": int(enc.max_seq_length),
        "n_parameters": int(enc.n_parameters),
        "license": info.get("license"),
        "fingerprint": enc.fingerprint if fingerprint else None,
    }


__all__ = ["list_encoders"]
