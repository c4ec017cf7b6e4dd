"""Encoders stage: load a pretrained encoder offline, embed texts fast, cache embeddings on disk.

Example:
    >>> from adaptlab.encoders import load_encoder, EmbeddingCache, embed
    >>> enc = load_encoder()                     # the packaged all-MiniLM-L6-v2
    >>> cache = EmbeddingCache("~/.adaptlab/cache/embeddings.sqlite")
    >>> X = embed(enc, ["rates rise again", "cup final tonight"], cache=cache)
    >>> X.shape
    (2, 384)
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from adaptlab.encoders.cache import CacheStats, EmbeddingCache, embed
from adaptlab.encoders.encoder import DEFAULT_ENCODER, POOLING_MODES, Encoder
from adaptlab.encoders.candidates import KNOWN_ENCODERS  # issue #9
from adaptlab.encoders.listing import list_encoders
from adaptlab.encoders.stream import embed_chunks, embed_to_file  # issue #18: bounded memory


def load_encoder(name_or_path: Optional[Union[str, Path]] = None, device: str = "auto") -> Encoder:
    """Shortcut for :meth:`Encoder.from_pretrained` (``None`` loads the packaged all-MiniLM-L6-v2).

    Example:
        >>> from adaptlab.encoders import load_encoder
        >>> enc = load_encoder(device="cpu")          # the packaged all-MiniLM-L6-v2 (a package, no download)
        >>> enc.dim, enc.encode(["one text"]).shape
        (384, (1, 384))
    """
    return Encoder.from_pretrained(name_or_path, device=device)


__all__ = [
    "DEFAULT_ENCODER",
    "KNOWN_ENCODERS",
    "POOLING_MODES",
    "CacheStats",
    "EmbeddingCache",
    "Encoder",
    "embed",
    "embed_chunks",
    "embed_to_file",
    "list_encoders",
    "load_encoder",
]
