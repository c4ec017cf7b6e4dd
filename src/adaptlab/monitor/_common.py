"""Input checks and small numeric helpers shared by the monitor modules (not public API)."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import numpy as np

from adaptlab.errors import ConfigError

#: Anything that turns a list of texts into an ``(n, d)`` float array: ``Encoder.encode``, a
#: ``Pipeline``'s embedding function, or ``lambda texts: model.encode(texts)``.
EmbedFn = Callable[[list[str]], Any]


def check_int(name: str, value: Any, minimum: int, allowed: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError.invalid(name, value, allowed or f"an integer >= {minimum}")
    return int(value)


def check_fraction(name: str, value: Any, *, open_low: bool = True, open_high: bool = True) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)
        ok = (v > 0 if open_low else v >= 0) and (v < 1 if open_high else v <= 1)
    if not ok:
        lo = "(0" if open_low else "[0"
        hi = "1)" if open_high else "1]"
        raise ConfigError.invalid(name, value, f"a number in {lo}, {hi}")
    return float(value)


def as_matrix(name: str, X: Any, *, min_rows: int = 1, dtype: Any = np.float64) -> np.ndarray:
    """A finite 2-D float array, or a ConfigError that names ``name`` and says what is wrong."""
    try:
        A = np.asarray(X, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ConfigError.invalid(name, type(X).__name__, "a 2-D numeric array (rows x dims)") from exc
    if A.ndim != 2 or A.shape[0] < min_rows or A.shape[1] < 1:
        raise ConfigError.invalid(
            name, f"array of shape {A.shape}", f"a 2-D array with at least {min_rows} row(s) and 1 column (rows x dims)"
        )
    if not np.isfinite(A).all():
        bad = np.flatnonzero(~np.isfinite(A).all(axis=1))
        raise ConfigError(
            f"{name} has NaN or infinite values in {len(bad)} row(s) (first: {bad[:5].tolist()}); "
            "drop or re-embed those rows."
        )
    return A


def same_dim(a_name: str, A: np.ndarray, b_name: str, B: np.ndarray) -> None:
    if A.shape[1] != B.shape[1]:
        raise ConfigError(
            f"{a_name} has {A.shape[1]} dimensions and {b_name} has {B.shape[1]}: they come from different "
            "encoders and cannot be compared. Embed both with the same encoder (see monitor.embedding_age)."
        )


def l2_normalize(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def check_texts(name: str, texts: Any) -> list[str]:
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
        raise ConfigError.invalid(name, type(texts).__name__, "a list of strings", "Wrap a single text in a list.")
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        raise ConfigError(
            f"{name} must contain only strings; item(s) {bad[:5]} are "
            f"{sorted({type(out[i]).__name__ for i in bad})}. Convert or drop them first."
        )
    return out


def check_ids(name: str, ids: Any, n: int, *, unique: bool = True) -> list[str]:
    if ids is None:
        return [str(i) for i in range(n)]
    if isinstance(ids, str):
        raise ConfigError.invalid(name, ids, f"a list of {n} ids")
    out = [str(i) for i in ids]
    if len(out) != n:
        raise ConfigError(f"{name} has {len(out)} entries but there are {n} rows; pass one id per row.")
    if unique and len(set(out)) != n:
        seen: set[str] = set()
        dup = [i for i in out if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        raise ConfigError(f"{name} must be unique; repeated: {sorted(set(dup))[:5]}. Deduplicate the id column.")
    return out


def call_embed(embed_fn: Any, texts: list[str], *, batch_size: int, what: str = "embed_fn",
               show_progress: Optional[bool] = None) -> np.ndarray:
    """Embed ``texts`` in batches with a callable (or an object with ``.encode``); float32 ``(n, d)``."""
    fn = embed_fn
    if not callable(fn):
        fn = getattr(embed_fn, "encode", None)
        if not callable(fn):
            raise ConfigError.invalid(what, type(embed_fn).__name__,
                                      "a callable texts -> (n, d) array, or an object with .encode(texts)")
    batch_size = check_int("batch_size", batch_size, 1)
    n = len(texts)
    if n == 0:
        raise ConfigError(f"{what}: there are no texts to embed; pass at least one text.")
    if show_progress is None:
        # A bar redraws itself with carriage returns: on a terminal only, never into a pipe or a log file.
        show_progress = n > 5000 and _stderr_is_a_terminal()
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="embed", unit="text")
    parts = []
    try:
        for start in range(0, n, batch_size):
            chunk = texts[start:start + batch_size]
            E = np.asarray(fn(chunk), dtype=np.float32)
            if E.ndim != 2 or E.shape[0] != len(chunk):
                raise ConfigError(
                    f"{what} returned an array of shape {E.shape} for {len(chunk)} texts; it must return one "
                    "row per text, shape (n_texts, dim)."
                )
            if parts and E.shape[1] != parts[0].shape[1]:
                raise ConfigError(f"{what} returned {E.shape[1]} dims for one batch and {parts[0].shape[1]} for another.")
            parts.append(E)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    out = np.concatenate(parts, axis=0)
    if not np.isfinite(out).all():
        raise ConfigError(f"{what} returned NaN or infinite values; check the encoder.")
    return out


def subsample(n: int, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a seeded sample of at most ``max_points`` of ``range(n)``."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(rng.choice(n, max_points, replace=False))


def fnum(x: Union[float, np.floating, None], nd: int = 6) -> Optional[float]:
    """A JSON-safe float: rounded, and ``None`` for NaN/inf."""
    if x is None:
        return None
    v = float(x)
    return round(v, nd) if math.isfinite(v) else None


def _stderr_is_a_terminal() -> bool:
    import sys

    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
