"""On-disk embedding cache keyed by (encoder fingerprint, text hash), and `embed` that uses it.

A frozen encoder gives the same vector for the same text every time, so a study computes each
embedding once: seeds, rungs and re-runs then read vectors back in milliseconds. Keys are content
addresses (the encoder's weight fingerprint and ``text_hash(text)``), so a changed model or a changed
text can never be served a stale vector.
"""
from __future__ import annotations

import sqlite3
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from adaptlab.data.dataset import text_hash
from adaptlab.errors import ConfigError, DataError
from adaptlab.store.files import MovedAsideWarning, disk_full_error, is_corrupt, is_disk_full, move_aside
from adaptlab.store.integrity import embedding_row_checksum as row_checksum
from adaptlab.store.integrity import scan_embedding_rows

# SQLite's historical limit on host parameters is 999; stay well under it (1 goes to the fingerprint).
_CHUNK = 800
# `embed` stores vectors after every this many newly encoded texts (the unit of resumption).
_WRITE_EVERY = 2048

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    fingerprint TEXT NOT NULL,
    text_hash   TEXT NOT NULL,
    dim         INTEGER NOT NULL,
    vector      BLOB NOT NULL,
    checksum    BLOB,
    PRIMARY KEY (fingerprint, text_hash)
) WITHOUT ROWID
"""


@dataclass
class CacheStats:
    """Lookup counters: ``hits`` and ``misses`` count hashes asked for, ``writes`` vectors stored.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> from adaptlab.encoders import EmbeddingCache
        >>> cache = EmbeddingCache(f"{tempfile.mkdtemp()}/cache.sqlite")
        >>> cache.put_many("enc-v1", ["h1"], np.ones((1, 3), dtype=np.float32))
        >>> found = cache.get_many("enc-v1", ["h1", "h2"])      # one hit, one miss
        >>> cache.stats.hits, cache.stats.misses, cache.stats.writes, cache.stats.hit_rate
        (1, 1, 1, 0.5)
    """

    hits: int = 0
    misses: int = 0
    writes: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits over lookups (0 before any lookup)."""
        asked = self.hits + self.misses
        return self.hits / asked if asked else 0.0


class EmbeddingCache:
    """Float32 embedding vectors in a SQLite file, keyed by (encoder fingerprint, text hash).

    The file uses WAL journaling so several processes (e.g. parallel seeds) can read while one writes.
    Each row carries a digest of its key and vector, checked on every read: a row whose bytes changed on disk is
    never returned (it counts as a miss, so it is recomputed and replaced) and a warning names the file; rows
    written before checksums existed are recomputed the same way, once.
    A damaged file (truncated, overwritten) is moved aside with a warning and the cache starts empty: it only
    holds recomputable vectors. A write that finds the disk full is skipped with a warning saying what to free.
    ``stats`` counts hits, misses and writes since creation (or :meth:`reset_stats`); ``last_stats``
    covers the most recent :meth:`get_many` / :meth:`put_many` call.

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> cache = EmbeddingCache(f"{tempfile.mkdtemp()}/embeddings.sqlite")
        >>> cache.put_many("fp", ["h1", "h2"], np.eye(2, 3, dtype=np.float32))
        >>> sorted(cache.get_many("fp", ["h1", "h3"]))
        ['h1']
        >>> cache.last_stats.hits, cache.last_stats.misses
        (1, 1)
    """

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise ConfigError.invalid(
                "path", str(self.path), "a file path", "It is a folder; pass e.g. <folder>/embeddings.sqlite."
            )
        self.stats = CacheStats()
        self.last_stats = CacheStats()
        self._lock = threading.RLock()
        self._conn: Optional[sqlite3.Connection] = None
        self._connect()

    # ------------------------------------------------------------------ connection
    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL stays consistent after a crash; it only may lose the last transaction,
            # which for a cache means recomputing a few vectors.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            _add_checksum_column(conn)
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                try:
                    conn = self._open()
                except sqlite3.DatabaseError as exc:
                    # The cache only holds recomputable vectors: a damaged file is moved aside, not fatal.
                    if not (is_corrupt(exc) and self.path.is_file()):
                        raise
                    move_aside(self.path, str(exc))
                    conn = self._open()
            except (sqlite3.Error, OSError) as exc:
                raise DataError(
                    f"cannot open the embedding cache {str(self.path)!r}: {exc}. Check that the folder is "
                    "writable and has free space, or pass another --home."
                ) from exc
            self._conn = conn
        return self._conn

    def _run(self, op: Callable[[sqlite3.Connection], Any]) -> Any:
        """``op(connection)``; when the file turns out damaged mid-way (a truncated file opens fine and fails on
        its first read), move it aside, warn, and run ``op`` once more on a fresh, empty cache."""
        with self._lock:
            try:
                return op(self._connect())
            except sqlite3.DatabaseError as exc:
                if not is_corrupt(exc):
                    raise
                self.close()
                move_aside(self.path, str(exc))
                return op(self._connect())

    def close(self) -> None:
        """Close the database connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # Connections and locks do not pickle; workers (e.g. Ray) reopen the same file.
        state = self.__dict__.copy()
        state["_conn"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"EmbeddingCache(path={str(self.path)!r})"

    # ------------------------------------------------------------------ queries
    def get_many(self, fingerprint: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Return ``{hash: vector}`` for the hashes stored under ``fingerprint``; absent ones are left out.

        Vectors are read-only float32 arrays (views on the stored bytes); copy one before editing it.
        """
        keys = list(dict.fromkeys(hashes))
        damaged: list[str] = []

        def read(conn: sqlite3.Connection) -> dict[str, np.ndarray]:
            found: dict[str, np.ndarray] = {}
            damaged.clear()
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT text_hash, vector, checksum FROM embeddings WHERE fingerprint = ? "
                    f"AND text_hash IN ({marks})",
                    (fingerprint, *chunk),
                ).fetchall()
                for h, blob, check in rows:
                    if check is None:  # written before rows had checksums: unverifiable, so recomputed
                        continue
                    if bytes(check) != row_checksum(fingerprint, h, blob):
                        damaged.append(h)
                        continue
                    found[h] = np.frombuffer(blob, dtype=np.float32)
            return found

        found = self._run(read)
        if damaged:
            warnings.warn(MovedAsideWarning(
                f"{self.path}: {len(damaged)} embedding vector(s) failed their checksum (bytes changed on disk); "
                "they are not used and are being recomputed (`adaptlab store check` checks the whole file)."),
                stacklevel=2)
        self.last_stats = CacheStats(hits=len(found), misses=len(keys) - len(found))
        self.stats.hits += self.last_stats.hits
        self.stats.misses += self.last_stats.misses
        return found

    def put_many(self, fingerprint: str, hashes: Sequence[str], matrix: np.ndarray) -> None:
        """Store row ``i`` of ``matrix`` under ``(fingerprint, hashes[i])``, replacing older values.

        All rows are written in one transaction: a crash leaves either all or none of them.
        """
        matrix = np.asarray(matrix)
        hashes = list(hashes)
        if matrix.ndim != 2 or matrix.shape[0] != len(hashes):
            raise ConfigError(
                f"put_many needs a 2-D matrix with one row per hash: got shape {matrix.shape} for "
                f"{len(hashes)} hashes."
            )
        if not np.issubdtype(matrix.dtype, np.number):
            raise ConfigError(f"put_many needs a numeric matrix, got dtype {matrix.dtype}.")
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        dim = int(matrix.shape[1])
        rows = []
        for i, h in enumerate(hashes):
            blob = matrix[i].tobytes()
            rows.append((fingerprint, h, dim, blob, row_checksum(fingerprint, h, blob)))
        try:
            self._run(lambda conn: self._write_rows(conn, rows))
        except (sqlite3.Error, OSError) as exc:
            if not is_disk_full(exc):
                raise
            # The transaction rolled back: the cache holds what it held before. The vectors are still in the
            # caller's hands, so the work goes on; only the next run recomputes them.
            warnings.warn(str(disk_full_error(
                self.path, f"writing {len(rows)} vectors to the embedding cache",
                "the cache is as before and this run goes on without storing them",
                f"old refits under {self.path.parent.parent / 'refits'}, or this cache file with `rm "
                f"{self.path}` (it only holds recomputable vectors)")), UserWarning, stacklevel=2)
            self.last_stats = CacheStats()
            return
        self.last_stats = CacheStats(writes=len(rows))
        self.stats.writes += len(rows)

    @staticmethod
    def _write_rows(conn: sqlite3.Connection, rows: list[tuple[str, str, int, bytes, bytes]]) -> None:
        with conn:  # one transaction, committed on exit (rolled back on any error)
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings (fingerprint, text_hash, dim, vector, checksum) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def count(self, fingerprint: Optional[str] = None) -> int:
        """Number of stored vectors, for one fingerprint or (``None``) all of them."""
        if fingerprint is None:
            (n,) = self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM embeddings").fetchone())
        else:
            (n,) = self._run(lambda conn: conn.execute(
                "SELECT COUNT(*) FROM embeddings WHERE fingerprint = ?", (fingerprint,)).fetchone())
        return int(n)

    def __len__(self) -> int:
        return self.count()

    def fingerprints(self) -> list[str]:
        """The encoder fingerprints that have vectors in this cache."""
        rows = self._run(lambda conn: conn.execute("SELECT DISTINCT fingerprint FROM embeddings ORDER BY 1").fetchall())
        return [r[0] for r in rows]

    def clear(self, fingerprint: Optional[str] = None) -> int:
        """Delete the vectors of one fingerprint (or all); returns how many were deleted."""
        with self._lock:
            conn = self._connect()
            with conn:
                if fingerprint is None:
                    cur = conn.execute("DELETE FROM embeddings")
                else:
                    cur = conn.execute("DELETE FROM embeddings WHERE fingerprint = ?", (fingerprint,))
        return int(cur.rowcount)

    def verify(self) -> dict[str, int]:
        """Check every row against its checksum (read-only): ``{"rows", "damaged", "unverified"}``.

        ``damaged`` rows changed on disk, ``unverified`` ones were written before rows had checksums; a study
        recomputes both instead of using them.

        Example:
            >>> import tempfile
            >>> cache = EmbeddingCache(f"{tempfile.mkdtemp()}/verify.sqlite")
            >>> cache.put_many("fp", ["h1"], np.ones((1, 3), dtype=np.float32))
            >>> cache.verify()["damaged"]
            0
        """
        return self._run(scan_embedding_rows)

    def reset_stats(self) -> None:
        """Set the hit, miss and write counters back to zero."""
        self.stats = CacheStats()
        self.last_stats = CacheStats()


def _add_checksum_column(conn: sqlite3.Connection) -> None:
    """Give a cache file from before row checksums its ``checksum`` column (its old rows stay NULL: recomputed)."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(embeddings)")}
    if "checksum" in columns:
        return
    try:
        conn.execute("ALTER TABLE embeddings ADD COLUMN checksum BLOB")
    except sqlite3.OperationalError as exc:  # another process added it first
        if "duplicate column" not in str(exc):
            raise


class PrimedCache:
    """Vectors handed over in memory, in front of an optional on-disk :class:`EmbeddingCache`.

    A study driver embeds every labeled text once and ships the vectors to its workers (e.g. Ray
    tasks on other machines) in one object; a worker's ``embed`` then finds them here without a
    shared file system and without encoding again. Misses fall through to ``backing``, where new
    vectors are also written. Same ``get_many`` / ``put_many`` interface as ``EmbeddingCache``.

    Example:
        >>> import numpy as np
        >>> primed = PrimedCache({"fp": (["h1", "h2"], np.eye(2, 3, dtype=np.float32))})
        >>> sorted(primed.get_many("fp", ["h2", "h9"]))
        ['h2']
    """

    def __init__(self, vectors: dict[str, tuple[Sequence[str], np.ndarray]],
                 backing: Optional[EmbeddingCache] = None) -> None:
        self._vectors: dict[str, tuple[dict[str, int], np.ndarray]] = {}
        for key, (hashes, matrix) in vectors.items():
            matrix = np.asarray(matrix, dtype=np.float32)
            if matrix.ndim != 2 or matrix.shape[0] != len(hashes):
                raise ConfigError(
                    f"PrimedCache needs one row per hash: got shape {matrix.shape} for {len(hashes)} hashes of {key!r}."
                )
            self._vectors[key] = ({h: i for i, h in enumerate(hashes)}, matrix)
        self.backing = backing
        self.path = backing.path if backing is not None else Path("<memory>")
        self.stats = CacheStats()
        self.last_stats = CacheStats()

    def get_many(self, fingerprint: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        keys = list(dict.fromkeys(hashes))
        found: dict[str, np.ndarray] = {}
        index, matrix = self._vectors.get(fingerprint, ({}, None))
        rest = []
        for h in keys:
            i = index.get(h)
            if i is None:
                rest.append(h)
            else:
                found[h] = matrix[i]
        if rest and self.backing is not None:
            found.update(self.backing.get_many(fingerprint, rest))
        self.last_stats = CacheStats(hits=len(found), misses=len(keys) - len(found))
        self.stats.hits += self.last_stats.hits
        self.stats.misses += self.last_stats.misses
        return found

    def put_many(self, fingerprint: str, hashes: Sequence[str], matrix: np.ndarray) -> None:
        if self.backing is not None:
            self.backing.put_many(fingerprint, hashes, matrix)
            self.last_stats = CacheStats(writes=len(hashes))
            self.stats.writes += len(hashes)

    def close(self) -> None:
        if self.backing is not None:
            self.backing.close()

    def __repr__(self) -> str:
        n = sum(len(ix) for ix, _ in self._vectors.values())
        return f"PrimedCache({n} vectors in memory, backing={self.backing!r})"


def embedding_key(encoder: Any) -> str:
    """The cache key of ``encoder``'s vectors: its fingerprint, plus the numeric path when not fp32.

    An int8 encoder (``adaptlab.encoders.fast.Int8Encoder``) already has its own fingerprint; naming the
    precision in the key as well keeps vectors of different paths apart even for an encoder whose
    fingerprint ignores precision, and shows in the cache file which path produced each vector.

    Example:
        >>> class E: fingerprint, precision = "abc", "int8"
        >>> embedding_key(E())
        'abc@int8'
    """
    precision = str(getattr(encoder, "precision", "fp32"))
    fingerprint = str(encoder.fingerprint)
    return fingerprint if precision == "fp32" else f"{fingerprint}@{precision}"


def embed(
    encoder: Any,
    texts: Sequence[str],
    *,
    cache: Optional[EmbeddingCache] = None,
    batch_size: int = 32,
    show_progress: Optional[bool] = None,
) -> np.ndarray:
    """Embed ``texts`` with ``encoder``, reading and filling ``cache``; returns ``(len(texts), dim)`` float32.

    Identical texts are encoded once. Texts already in the cache for this encoder's fingerprint are
    not encoded at all, so a repeated call costs only hashing and one indexed read. New vectors are
    stored every 2,048 texts, so an interrupted call resumes where it stopped when run again.

    Args:
        encoder: An :class:`~adaptlab.encoders.Encoder` (anything with ``fingerprint``, ``dim`` and
            ``encode(texts, batch_size=..., show_progress=...)``).
        texts: The texts, in the order the rows are wanted.
        cache: Where vectors are kept between calls; ``None`` encodes every (distinct) text.
        batch_size: Passed to ``encoder.encode``.
        show_progress: Passed to ``encoder.encode`` (``None``: a bar above 1,000 texts to encode).

    Example:
        >>> import tempfile
        >>> from adaptlab.encoders import Encoder
        >>> enc = Encoder.from_pretrained()
        >>> cache = EmbeddingCache(f"{tempfile.mkdtemp()}/embeddings.sqlite")  # a study uses <home>/cache/
        >>> X = embed(enc, ["first text", "second text", "first text"], cache=cache)
        >>> X.shape, bool((X[0] == X[2]).all())
        ((3, 384), True)
    """
    from adaptlab.encoders.encoder import _check_texts

    texts = _check_texts(texts)
    dim = int(encoder.dim)
    if not texts:
        return np.empty((0, dim), dtype=np.float32)

    hashes = [text_hash(t) for t in texts]
    position: dict[str, int] = {}
    unique_texts: list[str] = []
    for h, t in zip(hashes, texts):
        if h not in position:
            position[h] = len(unique_texts)
            unique_texts.append(t)
    unique_hashes = list(position)

    table = np.empty((len(unique_hashes), dim), dtype=np.float32)
    found: dict[str, np.ndarray] = {}
    if cache is not None:
        fingerprint = embedding_key(encoder)
        found = cache.get_many(fingerprint, unique_hashes)
        for h, vec in found.items():
            if vec.shape != (dim,):
                raise DataError(
                    f"the embedding cache {str(cache.path)!r} holds a {vec.shape[0]}-dim vector for a "
                    f"{dim}-dim encoder under the same fingerprint; the file is inconsistent. Delete it "
                    "(it only holds recomputable vectors) and run again."
                )
            table[position[h]] = vec

    missing = [h for h in unique_hashes if h not in found]
    # With a cache, encode and store in chunks: an interrupted run keeps what it finished and the
    # next call resumes from there. Without one, a single call lets `encode` sort all texts at once.
    step = _WRITE_EVERY if cache is not None else max(len(missing), 1)
    chunks = [missing[i : i + step] for i in range(0, len(missing), step)]
    bar = None
    if len(chunks) > 1 and (show_progress or (show_progress is None and len(missing) > 1000)):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(missing), desc=f"embed {getattr(encoder, 'name', '')}".strip(), unit="text")
    try:
        for chunk in chunks:
            vectors = np.asarray(
                encoder.encode(
                    [unique_texts[position[h]] for h in chunk],
                    batch_size=batch_size,
                    show_progress=False if len(chunks) > 1 else show_progress,
                ),
                dtype=np.float32,
            )
            if vectors.shape != (len(chunk), dim):
                raise ValueError(
                    f"encoder.encode returned shape {vectors.shape} for {len(chunk)} texts, expected "
                    f"({len(chunk)}, {dim})."
                )
            table[[position[h] for h in chunk]] = vectors
            if cache is not None:
                cache.put_many(fingerprint, chunk, vectors)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()

    if len(unique_hashes) == len(hashes):
        return table
    return table[np.fromiter((position[h] for h in hashes), dtype=np.int64, count=len(hashes))]
