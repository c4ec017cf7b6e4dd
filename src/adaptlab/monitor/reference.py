"""`ReferenceSet`: the embeddings of the items a model was shipped with, row by row.

Every row keeps its id, the hash of the text it was embedded from, an optional label, its vector, and
the fingerprint of the encoder that produced *that row*. Drift, cold-start placement and the
neighbour-stability check compare new texts against these rows; the per-row fingerprint is what lets
:func:`adaptlab.monitor.embedding_age` tell which rows are stale after the encoder changes.

Saved as two files and nothing else: ``reference.safetensors`` (the float32 matrix) and
``reference.json`` (ids, hashes, labels, fingerprints, the matrix's SHA-256). ``load`` reads only
those two files, never executes anything from the folder, and refuses unknown keys, wrong shapes or
a matrix whose hash does not match.

Example:
    >>> from adaptlab.encoders import load_encoder
    >>> enc = load_encoder()                                             # doctest: +SKIP
    >>> ref = ReferenceSet.build(ids, texts, enc.encode, enc.fingerprint,
    ...                          labels=labels, encoder_name=enc.name)   # doctest: +SKIP
    >>> ref.save("model/reference")                                      # doctest: +SKIP
    >>> ReferenceSet.load("model/reference").embeddings.shape            # doctest: +SKIP
    (5200, 384)
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from adaptlab.data.dataset import text_hash
from adaptlab.errors import ConfigError
from adaptlab.store.files import sha256_file
from adaptlab.monitor._common import EmbedFn, as_matrix, call_embed, check_ids, check_texts

FORMAT = "adaptlab.monitor.reference"
FORMAT_VERSION = 1
JSON_FILE = "reference.json"
TENSOR_FILE = "reference.safetensors"
TENSOR_KEY = "embeddings"
_JSON_KEYS = frozenset({
    "format", "format_version", "n_rows", "dim", "dtype", "ids", "text_hashes", "labels", "fingerprints",
    "encoders", "embeddings_file", "embeddings_sha256",
})
_HASH_RE = re.compile(r"^[0-9a-f]{32}$")
_MAX_FINGERPRINT_LEN = 256


class ReferenceSet:
    """Embeddings of the reference (training) items, each row tagged with the encoder that made it.

    Args:
        ids: One unique id per row (stored as strings).
        text_hashes: ``adaptlab.data.dataset.text_hash`` of each row's text (32 hex characters).
        embeddings: ``(n, d)`` float matrix (kept as float32).
        fingerprints: The encoder fingerprint that produced each row (one string per row).
        labels: Optional label per row (``None`` for an unlabeled row).
        encoders: Optional ``{fingerprint: {"name": ...}}`` descriptions shown in reports.

    Example:
        >>> import numpy as np
        >>> ref = ReferenceSet.from_embeddings(["a", "b"], ["first text", "second text"],
        ...                                    np.eye(2, dtype=np.float32), "fp-v1")
        >>> len(ref), ref.dim, ref.fingerprint_counts()
        (2, 2, {'fp-v1': 2})
    """

    def __init__(
        self,
        ids: Sequence[str],
        text_hashes: Sequence[str],
        embeddings: Any,
        fingerprints: Sequence[str],
        labels: Optional[Sequence[Optional[str]]] = None,
        encoders: Optional[dict[str, dict[str, Any]]] = None,
    ) -> None:
        E = as_matrix("embeddings", embeddings, min_rows=1, dtype=np.float32)
        n = E.shape[0]
        self.embeddings: np.ndarray = np.ascontiguousarray(E)
        self.ids: list[str] = check_ids("ids", ids, n)
        hashes = [str(h) for h in text_hashes] if not isinstance(text_hashes, str) else []
        if len(hashes) != n:
            raise ConfigError(f"text_hashes has {len(hashes)} entries but embeddings has {n} rows; pass one per row.")
        bad = [i for i, h in enumerate(hashes) if not _HASH_RE.match(h)]
        if bad:
            raise ConfigError(
                f"text_hashes row(s) {bad[:5]} are not text hashes (e.g. {hashes[bad[0]]!r}); expected the 32 "
                "hex characters of adaptlab.data.dataset.text_hash(text)."
            )
        self.text_hashes: list[str] = hashes
        fps = [fingerprints] * n if isinstance(fingerprints, str) else list(fingerprints)
        if len(fps) != n:
            raise ConfigError(f"fingerprints has {len(fps)} entries but embeddings has {n} rows; pass one per row.")
        bad = [i for i, f in enumerate(fps)
               if not isinstance(f, str) or not f.strip() or len(f) > _MAX_FINGERPRINT_LEN]
        if bad:
            raise ConfigError(
                f"fingerprints row(s) {bad[:5]} are not encoder fingerprints (value {fps[bad[0]]!r}); expected a "
                f"non-empty string of at most {_MAX_FINGERPRINT_LEN} characters, e.g. Encoder.fingerprint."
            )
        self.fingerprints: list[str] = fps
        if labels is not None:
            if isinstance(labels, str) or len(labels) != n:
                raise ConfigError(f"labels must have one entry per row ({n}); got {labels!r:.80}.")
            labels = [None if lab is None else str(lab) for lab in labels]
        self.labels: Optional[list[Optional[str]]] = labels
        enc = {} if encoders is None else encoders
        if not isinstance(enc, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in enc.items()):
            raise ConfigError.invalid("encoders", encoders, "a dict {fingerprint: {'name': ...}}")
        self.encoders: dict[str, dict[str, Any]] = {k: dict(v) for k, v in enc.items()}
        self._positions: Optional[dict[str, int]] = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        ids: Optional[Sequence[str]],
        texts: Sequence[str],
        embed_fn: EmbedFn,
        fingerprint: str,
        labels: Optional[Sequence[Optional[str]]] = None,
        *,
        batch_size: int = 256,
        encoder_name: Optional[str] = None,
        show_progress: Optional[bool] = None,
    ) -> "ReferenceSet":
        """Embed ``texts`` with ``embed_fn`` (batches of ``batch_size``) and tag every row with ``fingerprint``.

        ``embed_fn`` is any callable ``list[str] -> (n, d) array`` (``Encoder.encode`` works), or an
        object with an ``encode`` method. ``ids=None`` numbers the rows ``"0"``, ``"1"``, ...

        Example:
            >>> import numpy as np
            >>> fake = lambda texts: np.array([[len(t), 1.0] for t in texts])
            >>> ref = ReferenceSet.build(["x", "y"], ["ab", "abcd"], fake, "len-v1", labels=["s", "l"])
            >>> ref.embeddings.tolist(), ref.labels
            ([[2.0, 1.0], [4.0, 1.0]], ['s', 'l'])
        """
        texts = check_texts("texts", texts)
        E = call_embed(embed_fn, texts, batch_size=batch_size, show_progress=show_progress)
        return cls.from_embeddings(ids, texts, E, fingerprint, labels, encoder_name=encoder_name)

    @classmethod
    def from_embeddings(
        cls,
        ids: Optional[Sequence[str]],
        texts: Sequence[str],
        embeddings: Any,
        fingerprint: str,
        labels: Optional[Sequence[Optional[str]]] = None,
        *,
        encoder_name: Optional[str] = None,
    ) -> "ReferenceSet":
        """A reference set from vectors already computed (e.g. read from the embedding cache)."""
        texts = check_texts("texts", texts)
        if not isinstance(fingerprint, str) or not fingerprint.strip():
            raise ConfigError.invalid("fingerprint", fingerprint, "the encoder's fingerprint (a non-empty string)")
        E = as_matrix("embeddings", embeddings, dtype=np.float32)
        if E.shape[0] != len(texts):
            raise ConfigError(f"embeddings has {E.shape[0]} rows but there are {len(texts)} texts.")
        encoders = {fingerprint: {"name": encoder_name}} if encoder_name else {}
        return cls(check_ids("ids", ids, len(texts)), [text_hash(t) for t in texts], E,
                   [fingerprint] * len(texts), labels, encoders)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def __repr__(self) -> str:
        return (f"ReferenceSet(n_rows={len(self)}, dim={self.dim}, labeled={self.labels is not None}, "
                f"encoders={self.fingerprint_counts()})")

    @property
    def dim(self) -> int:
        """Dimension of the stored embeddings."""
        return int(self.embeddings.shape[1])

    def position(self, item_id: str) -> int:
        """Row number of ``item_id`` (KeyError if absent)."""
        if self._positions is None:
            self._positions = {i: p for p, i in enumerate(self.ids)}
        return self._positions[str(item_id)]

    def fingerprint_counts(self) -> dict[str, int]:
        """Rows per encoder fingerprint, most rows first."""
        return dict(Counter(self.fingerprints).most_common())

    def subset(self, indices: Sequence[int]) -> "ReferenceSet":
        """The rows at ``indices``, with the encoder records they still use."""
        idx = [int(i) for i in indices]
        return ReferenceSet(
            [self.ids[i] for i in idx], [self.text_hashes[i] for i in idx], self.embeddings[idx],
            [self.fingerprints[i] for i in idx], None if self.labels is None else [self.labels[i] for i in idx],
            {fp: info for fp, info in self.encoders.items() if fp in {self.fingerprints[i] for i in idx}},
        )

    def neighbor_index(self, **kwargs: Any) -> Any:
        """A :class:`~adaptlab.monitor.NeighborIndex` over these rows (labels attached); kwargs go to it."""
        from adaptlab.monitor.neighbors import NeighborIndex

        return NeighborIndex(self.embeddings, self.ids, labels=self.labels, **kwargs)

    def summary(self) -> dict[str, Any]:
        """JSON-safe overview: size, dimension, labels, rows per encoder."""
        return {
            "n_rows": len(self), "dim": self.dim, "labeled": self.labels is not None,
            "label_counts": None if self.labels is None else dict(sorted(
                Counter(lab for lab in self.labels if lab is not None).items())),
            "encoders": [{"fingerprint": fp, "name": self.encoders.get(fp, {}).get("name"), "n_rows": c}
                         for fp, c in self.fingerprint_counts().items()],
        }

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Union[str, Path]) -> Path:
        """Write ``reference.safetensors`` + ``reference.json`` into ``directory`` (created if needed)."""
        from safetensors.numpy import save_file

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        tensor_path = folder / TENSOR_FILE
        save_file({TENSOR_KEY: np.ascontiguousarray(self.embeddings, dtype=np.float32)}, str(tensor_path),
                  metadata={"format": FORMAT})
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n_rows": len(self),
            "dim": self.dim,
            "dtype": "float32",
            "ids": self.ids,
            "text_hashes": self.text_hashes,
            "labels": self.labels,
            "fingerprints": self.fingerprints,
            "encoders": self.encoders,
            "embeddings_file": TENSOR_FILE,
            "embeddings_sha256": sha256_file(tensor_path),
        }
        tmp = folder / (JSON_FILE + ".tmp")
        tmp.write_text(json.dumps(doc, ensure_ascii=False, allow_nan=False), encoding="utf-8")
        tmp.replace(folder / JSON_FILE)
        return folder

    @classmethod
    def load(cls, directory: Union[str, Path]) -> "ReferenceSet":
        """Read a folder written by :meth:`save`; any mismatch raises :class:`ConfigError`.

        Checked: both files present, JSON keys exactly the known ones, format and version, the
        matrix's SHA-256, a single float32 tensor named ``embeddings`` of shape ``(n_rows, dim)``,
        one id/hash/fingerprint (and label) per row, unique ids.
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(directory)
        json_path, tensor_path = folder / JSON_FILE, folder / TENSOR_FILE
        where = f"reference set in {folder}"
        for p in (json_path, tensor_path):
            if not p.is_file():
                raise ConfigError(f"{where}: {p.name} is missing. Point to a folder written by ReferenceSet.save.")
        try:
            doc = json.loads(json_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{where}: {JSON_FILE} is not valid JSON ({exc}); the file is damaged, rebuild it.") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{where}: {JSON_FILE} must hold a JSON object, found {type(doc).__name__}.")
        unknown, missing = sorted(set(doc) - _JSON_KEYS), sorted(_JSON_KEYS - set(doc))
        if unknown or missing:
            raise ConfigError(
                f"{where}: {JSON_FILE} was not written by this version of adaptlab (unknown keys {unknown}, "
                f"missing keys {missing}). Refusing to load it; rebuild the reference set."
            )
        if doc["format"] != FORMAT or doc["format_version"] != FORMAT_VERSION:
            raise ConfigError(
                f"{where}: format {doc['format']!r} version {doc['format_version']!r} is not "
                f"{FORMAT!r} version {FORMAT_VERSION}; rebuild the reference set with this adaptlab."
            )
        if doc["embeddings_file"] != TENSOR_FILE or doc["dtype"] != "float32":
            raise ConfigError(f"{where}: unexpected embeddings_file/dtype "
                              f"({doc['embeddings_file']!r}, {doc['dtype']!r}); expected {TENSOR_FILE!r}, 'float32'.")
        n, d = doc["n_rows"], doc["dim"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (n, d)):
            raise ConfigError(f"{where}: n_rows={n!r} and dim={d!r} must be positive integers.")
        for key in ("ids", "text_hashes", "fingerprints"):
            col = doc[key]
            if not isinstance(col, list) or len(col) != n or not all(isinstance(x, str) for x in col):
                raise ConfigError(f"{where}: {key!r} must be a list of {n} strings (one per row); it is not.")
        labels = doc["labels"]
        if labels is not None and (not isinstance(labels, list) or len(labels) != n
                                   or not all(x is None or isinstance(x, str) for x in labels)):
            raise ConfigError(f"{where}: 'labels' must be null or a list of {n} strings/nulls.")
        if doc["embeddings_sha256"] != sha256_file(tensor_path):
            raise ConfigError(
                f"{where}: {TENSOR_FILE} does not match the SHA-256 recorded in {JSON_FILE}; the vectors were "
                "changed after saving. Refusing to load them; rebuild the reference set."
            )
        try:
            tensors = load_file(str(tensor_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ConfigError(f"{where}: {TENSOR_FILE} is not a readable safetensors file ({exc}).") from exc
        if set(tensors) != {TENSOR_KEY}:
            raise ConfigError(f"{where}: {TENSOR_FILE} holds tensors {sorted(tensors)}; expected only {TENSOR_KEY!r}.")
        E = tensors[TENSOR_KEY]
        if E.dtype != np.float32 or E.shape != (n, d):
            raise ConfigError(
                f"{where}: the embeddings are {E.dtype} of shape {E.shape}; {JSON_FILE} says float32 ({n}, {d})."
            )
        return cls(doc["ids"], doc["text_hashes"], E, doc["fingerprints"], labels, doc["encoders"])
