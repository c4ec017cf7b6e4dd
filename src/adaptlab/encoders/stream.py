"""Embeddings of any number of texts with bounded memory: yielded, or written to a ``.npy`` file, a chunk at a time.

:func:`~adaptlab.encoders.embed` returns the whole ``(n, dim)`` matrix (1.5 GB for 1M texts at 384 dims).
:func:`embed_chunks` yields it ``chunk_size`` rows at a time instead, reading and filling the embedding cache as
it goes, and :func:`embed_to_file` appends each chunk to a ``.npy`` file as soon as it is encoded, so at most one
chunk of vectors (2,048 x dim floats: 3 MiB at 384 dims) is held at once, whatever the number of texts.

The ``.npy`` file is written under a temporary name beside its final path and renamed when the last row is in:
a file at the path is always complete (an interrupted run leaves no half file; run it again and the cache
makes the finished chunks cost one read each).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from adaptlab.encoders.cache import _WRITE_EVERY, EmbeddingCache, embed
from adaptlab.encoders.heap import bound_heap_growth
from adaptlab.errors import ConfigError

__all__ = ["embed_chunks", "embed_to_file"]

# Bytes of the .npy preamble (magic, version, header length, header dict padded with spaces): a fixed size, a
# multiple of 64 as the format asks, so the data starts at the same offset for every shape.
_NPY_PREAMBLE = 128


def embed_chunks(
    encoder: Any,
    texts: Sequence[str],
    *,
    cache: Optional[EmbeddingCache] = None,
    batch_size: int = 32,
    chunk_size: int = _WRITE_EVERY,
) -> Iterator[np.ndarray]:
    """Yield the embeddings of ``texts`` in order, ``chunk_size`` rows at a time (float32, ``(k, dim)``).

    Each chunk goes through :func:`~adaptlab.encoders.embed` (identical texts of a chunk encoded once, cached
    vectors read, new ones stored), so memory holds one chunk of vectors, never the whole matrix.

    Example:
        >>> from adaptlab.encoders import Encoder
        >>> enc = Encoder.from_pretrained()
        >>> [c.shape for c in embed_chunks(enc, ["a", "b", "c"], chunk_size=2)]
        [(2, 384), (1, 384)]
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError.invalid("chunk_size", chunk_size, "a positive integer (2048 is the default)")
    bound_heap_growth()  # thousands of batches of varying width would otherwise fragment the heap
    for start in range(0, len(texts), chunk_size):
        yield embed(encoder, texts[start : start + chunk_size], cache=cache, batch_size=batch_size,
                    show_progress=False)


def _npy_preamble(n_rows: int, dim: int) -> bytes:
    """The ``.npy`` (format 1.0) preamble of a C-order float32 ``(n_rows, dim)`` array, ``_NPY_PREAMBLE`` bytes."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({n_rows}, {dim}), }}"
    room = _NPY_PREAMBLE - 10  # magic (6) + version (2) + header length (2)
    return b"\x93NUMPY\x01\x00" + room.to_bytes(2, "little") + header.ljust(room - 1).encode("latin-1") + b"\n"


def embed_to_file(
    encoder: Any,
    texts: Sequence[str],
    path: Union[str, Path],
    *,
    cache: Optional[EmbeddingCache] = None,
    batch_size: int = 32,
    chunk_size: int = _WRITE_EVERY,
    on_chunk: Optional[Any] = None,
) -> Path:
    """Write the embeddings of ``texts`` to the ``.npy`` file ``path``, one chunk at a time; returns the path.

    Row ``i`` of the file is text ``i``'s vector (float32); ``numpy.load(path, mmap_mode="r")`` reads it without
    loading it whole. ``on_chunk(rows_done, n)`` is called after each chunk (a progress bar).

    Example:
        >>> from adaptlab.encoders import Encoder
        >>> enc = Encoder.from_pretrained()
        >>> p = embed_to_file(enc, ["first text", "second text"], "vectors.npy")
        >>> np.load(p).shape
        (2, 384)
    """
    path = Path(path).expanduser()
    if path.suffix != ".npy":
        raise ConfigError(f"{path}: embeddings are written as a NumPy .npy file; give a path ending in .npy.")
    dim, n = int(encoder.dim), len(texts)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    try:
        with open(tmp, "wb") as fh:
            fh.write(_npy_preamble(n, dim))
            for chunk in embed_chunks(encoder, texts, cache=cache, batch_size=batch_size, chunk_size=chunk_size):
                fh.write(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
                fh.flush()  # to the OS now: the chunk leaves this process's memory, not only Python's buffer
                done += len(chunk)
                if on_chunk is not None:
                    on_chunk(done, n)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
