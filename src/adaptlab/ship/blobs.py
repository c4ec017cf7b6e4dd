"""Content-addressed storage of the large parts of shipped models (encoders, adapters).

A refit or fine-tuned encoder is 90 MB; a registry with twelve monthly versions of a head on the same
refit encoder must not hold twelve copies. Blobs live in ``blobs/<kind>/<key>/`` (key = the encoder
fingerprint, or the SHA-256 of an adapter's files) and carry a ``blob.json`` listing the SHA-256 of
every file, which :meth:`BlobStore.verify` checks before anything is loaded.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from adaptlab.errors import ConfigError
from adaptlab.store.files import sha256_file, write_folder_atomically

BLOB_INDEX = "blob.json"
BLOB_FORMAT = "adaptlab-blob-v1"
# encoders: transformer folders; adapters: adapter folders on a base encoder; models: a rung's own model
# folder (ArtifactKit.put_folder), e.g. a static embedding table with its tokenizer.
BLOB_KINDS = ("encoders", "adapters", "models")
_KEY = re.compile(r"^[0-9a-f]{16,64}$")
# Files a blob may hold; anything else (a pickle, a script) makes the blob invalid.
_ALLOWED_SUFFIXES = (".safetensors", ".json", ".txt", ".md", ".model")


def check_key(kind: str, key: str) -> None:
    if kind not in BLOB_KINDS:
        raise ConfigError.invalid("blob kind", kind, f"one of {list(BLOB_KINDS)}")
    if not isinstance(key, str) or not _KEY.match(key):
        # Keys come from manifests; a key like "../x" must never become a path.
        raise ConfigError(f"blob key {key!r} is not a hex digest: the artifact's manifest was edited or corrupted. "
                          "Re-save the model.")


class BlobStore:
    """A folder of content-addressed blobs.

    Example:
        >>> store = BlobStore("models/news/blobs")                               # doctest: +SKIP
        >>> folder = store.put("encoders", enc.fingerprint, enc.save_pretrained)  # doctest: +SKIP
        >>> store.verify("encoders", enc.fingerprint)                             # doctest: +SKIP
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        check_key(kind, key)
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return (self.path(kind, key) / BLOB_INDEX).is_file()

    def put(self, kind: str, key: str, write: Callable[[Path], object]) -> Path:
        """Store a blob written by ``write(folder)`` unless one with this key exists already."""
        dest = self.path(kind, key)
        if self.has(kind, key):
            return dest

        def write_indexed(folder: Path) -> None:
            write(folder)
            files = {}
            for f in sorted(p for p in folder.rglob("*") if p.is_file()):
                rel = f.relative_to(folder).as_posix()
                if not rel.endswith(_ALLOWED_SUFFIXES):
                    f.unlink()  # e.g. a README is .md (kept); anything that could be code or a pickle is not
                    continue
                files[rel] = sha256_file(f)
            (folder / BLOB_INDEX).write_text(json.dumps({"format": BLOB_FORMAT, "kind": kind, "key": key,
                                                         "files": files}, indent=2) + "\n", encoding="utf-8")

        # An interrupted save never leaves half a blob.
        return write_folder_atomically(dest, write_indexed)

    def verify(self, kind: str, key: str) -> Path:
        """The blob's folder after checking every file's hash; refuses missing, changed or extra files."""
        folder = self.path(kind, key)
        index = folder / BLOB_INDEX
        if not index.is_file():
            raise ConfigError(f"the model needs {kind[:-1]} {key[:12]}..., which is not in {str(self.root)!r}. "
                              "Copy the whole model folder (with its blobs/) or re-save the model.")
        try:
            meta = json.loads(index.read_text(encoding="utf-8"))
            files = dict(meta["files"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{str(index)!r} is not a valid blob index ({exc}). Re-save the model.") from exc
        if meta.get("format") != BLOB_FORMAT or meta.get("key") != key:
            raise ConfigError(f"{str(index)!r} does not describe blob {key[:12]}...; the folder was edited. Re-save the model.")
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {BLOB_INDEX}
        extra = sorted(present - set(files))
        if extra:
            raise ConfigError(f"{str(folder)!r} holds files adaptlab did not write: {extra[:5]}. adaptlab never "
                              "loads unknown files (they could be pickles or code); remove them or re-save the model.")
        for rel, digest in files.items():
            f = folder / rel
            if not f.is_file():
                raise ConfigError(f"{str(f)!r} is missing from the model's {kind}. Copy the whole model folder.")
            if sha256_file(f) != digest:
                raise ConfigError(f"{str(f)!r} was modified after the model was saved (SHA-256 mismatch); "
                                  "adaptlab refuses tampered weights. Restore the file or re-save the model.")
        return folder
