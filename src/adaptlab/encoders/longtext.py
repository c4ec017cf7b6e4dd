"""Long texts and frozen encoders: what to do with the tokens past the encoder's window.

An encoder reads at most ``max_seq_length`` tokens (256 for the packaged all-MiniLM-L6-v2, about 1,000
characters of English); a longer text is cut, silently, and everything after its beginning is never seen.
Four strategies, declared per rung (``long_text`` of ``probe`` and ``refit``; ``--long-text`` on the command
line sets it for both):

- ``truncate`` (the default, what every earlier version did): the first window of tokens.
- ``head_tail[:K]``: the first ``K`` tokens and the last ones, one window in all (default ``K``: a quarter
  of the window; Sun et al. 2019 found head + tail best on long reviews).
- ``chunk_mean[:O]``: windows of the encoder's length, overlapping by ``O`` tokens (default: an eighth of the
  window), the last one ending at the text's end; the text's vector is the mean of its windows' vectors
  (L2-normalised again when the encoder normalises).
- ``chunk_max[:O]``: the same windows, pooled by the element-wise maximum.

A text that fits in one window gets the same vector under every strategy. A strategy other than
``truncate`` has its own fingerprint (the encoder's plus the strategy, with its sizes), so its vectors
are cached apart; ``truncate`` is the encoder itself, so caches and study ids of earlier versions stay valid.

Example:
    >>> from adaptlab.encoders import load_encoder
    >>> enc = load_encoder()                                        # doctest: +SKIP
    >>> chunked = long_text_encoder(enc, "chunk_mean")              # doctest: +SKIP
    >>> chunked.encode(["a very long article ..."]).shape           # doctest: +SKIP
    (1, 384)
    >>> long_text_encoder(enc, "truncate") is enc                   # doctest: +SKIP
    True
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from adaptlab.errors import ConfigError

LONG_TEXT_STRATEGIES = ("truncate", "head_tail", "chunk_mean", "chunk_max")
# The strategies that give one window per text: the only ones a rung that trains the encoder can use.
ONE_WINDOW_STRATEGIES = ("truncate", "head_tail")
DEFAULT_LONG_TEXT = "truncate"
LONG_TEXT_ALLOWED = "truncate, head_tail[:HEAD_TOKENS], chunk_mean[:OVERLAP_TOKENS] or chunk_max[:OVERLAP_TOKENS]"
_TAG = b"adaptlab-long-text-v1|"
# Texts tokenized and encoded together: their windows are batched by length, and memory holds one group's
# token ids and window vectors, whatever the number of texts.
_TEXTS_PER_GROUP = 512
_PROGRESS_THRESHOLD = 1000


@dataclass(frozen=True)
class LongTextStrategy:
    """A long-text strategy and its size: head tokens (``head_tail``) or overlap tokens (``chunk_*``).

    ``size=None`` takes the default for the window (a quarter of it as head, an eighth as overlap).

    Example:
        >>> s = LongTextStrategy.parse("chunk_mean:16")
        >>> s.name, s.size, str(s)
        ('chunk_mean', 16, 'chunk_mean:16')
        >>> [len(w) for w in s.windows(list(range(100)), room=40)]
        [40, 40, 40, 40]
        >>> LongTextStrategy.parse("head_tail").windows(list(range(10)), room=4)
        [[0, 7, 8, 9]]
    """

    name: str = DEFAULT_LONG_TEXT
    size: Optional[int] = None

    @classmethod
    def parse(cls, value: "str | LongTextStrategy | None", what: str = "long_text") -> "LongTextStrategy":
        """The strategy ``value`` names (``None``: truncate); a ConfigError names the allowed values."""
        if value is None:
            return cls()
        if isinstance(value, LongTextStrategy):
            return value
        if not isinstance(value, str):
            raise ConfigError.invalid(what, value, f"one of {LONG_TEXT_ALLOWED}")
        name, sep, size_text = value.strip().lower().replace("-", "_").partition(":")
        if name not in LONG_TEXT_STRATEGIES or (sep and (name == "truncate" or not size_text.strip().isdigit())):
            raise ConfigError.invalid(what, value, f"one of {LONG_TEXT_ALLOWED}",
                                      "For example chunk_mean (windows of the encoder's length, mean-pooled) or "
                                      "head_tail:64 (the first 64 tokens and the last ones).")
        return cls(name, int(size_text) if sep else None)

    def __str__(self) -> str:
        return self.name if self.size is None else f"{self.name}:{self.size}"

    @property
    def is_truncate(self) -> bool:
        """Whether this is ``truncate`` (the encoder's own behaviour)."""
        return self.name == "truncate"

    def sizes(self, room: int) -> dict[str, int]:
        """The resolved sizes for a window of ``room`` content tokens (what the fingerprint hashes)."""
        if self.name == "head_tail":
            return {"head": min(room, room // 4 if self.size is None else self.size)}
        if self.name in ("chunk_mean", "chunk_max"):
            return {"overlap": min(room - 1, room // 8 if self.size is None else self.size)}
        return {}

    def windows(self, ids: Sequence[int], room: int) -> list[list[int]]:
        """The windows (each at most ``room`` token ids, special tokens not included) cut from ``ids``."""
        ids = list(ids)
        n = len(ids)
        if n <= room or self.is_truncate:
            return [ids[:room]]
        if self.name == "head_tail":
            head = self.sizes(room)["head"]
            return [ids[:head] + ids[n - (room - head):] if head < room else ids[:room]]
        stride = room - self.sizes(room)["overlap"]
        starts = list(range(0, n - room, stride)) + [n - room]  # the last window ends at the text's end
        return [ids[s:s + room] for s in starts]


def pool_windows(vectors: np.ndarray, strategy: "str | LongTextStrategy", normalize: bool) -> np.ndarray:
    """One text's vector from its windows' vectors ``(k, dim)``: mean or max, L2-normalised when asked.

    Example:
        >>> v = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
        >>> pool_windows(v, "chunk_mean", normalize=False).tolist(), pool_windows(v, "chunk_max", False).tolist()
        ([0.5, 0.5], [1.0, 1.0])
    """
    s = LongTextStrategy.parse(strategy)
    out = vectors.max(axis=0) if s.name == "chunk_max" else vectors.mean(axis=0)
    if normalize:
        out = out / max(float(np.linalg.norm(out)), 1e-12)
    return out.astype(np.float32)


class LongTextEncoder:
    """A frozen encoder that reads long texts with a strategy other than truncation; drop-in for `embed`.

    Wraps an :class:`~adaptlab.encoders.Encoder` (or its bf16 / int8 variant) and reads like one: ``embed``,
    the probe and the study see ``fingerprint``, ``dim``, ``name``, ``encode``. The fingerprint hashes the
    base's and the strategy with its sizes, so the embedding cache keeps its vectors apart.

    Example:
        >>> chunked = LongTextEncoder(enc, "chunk_max:32")               # doctest: +SKIP
        >>> chunked.fingerprint != enc.fingerprint, chunked.info["long_text"]   # doctest: +SKIP
        (True, 'chunk_max:32')
    """

    def __init__(self, base: Any, strategy: "str | LongTextStrategy") -> None:
        self.base = base
        self.strategy = LongTextStrategy.parse(strategy)
        self._prefix, self._suffix = special_tokens_around(base.tokenizer)
        special = len(self._prefix) + len(self._suffix)
        self.room = int(base.max_seq_length) - special
        if self.room < 2:
            raise ConfigError(f"encoder {base.name!r} reads {base.max_seq_length} tokens, {special} of them special: "
                              "too few to cut a long text into windows. Use long_text='truncate'.")

    # The attributes `embed`, the probe and the study read from an encoder.
    @property
    def fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(_TAG)
        h.update(str(self.base.fingerprint).encode())
        h.update(f"|{self.strategy.name}|{sorted(self.strategy.sizes(self.room).items())}|{self.room}".encode())
        return h.hexdigest()

    @property
    def name(self) -> str:
        return f"{self.base.name} [{self.strategy}]"

    @property
    def precision(self) -> str:
        return str(getattr(self.base, "precision", "fp32"))

    @property
    def info(self) -> dict[str, Any]:
        return {**self.base.info, "long_text": str(self.strategy)}

    def __getattr__(self, attr: str) -> Any:
        # dim, device, tokenizer, model, max_seq_length, pooling, normalize ...: the base's.
        if attr in ("base", "strategy", "room", "_prefix", "_suffix"):  # not set yet (unpickling): never recurse
            raise AttributeError(attr)
        return getattr(self.base, attr)

    def __repr__(self) -> str:
        return f"LongTextEncoder(base={self.base!r}, strategy={str(self.strategy)!r})"

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: Optional[bool] = None) -> np.ndarray:
        """Embed ``texts`` (float32, ``(len(texts), dim)``): each text's windows encoded, then pooled.

        Texts are handled 512 at a time (their windows batched by length), so memory holds one group's
        windows, whatever the number of texts.
        """
        from adaptlab.encoders.encoder import _check_batch_size, _check_texts

        texts = _check_texts(texts)
        batch_size = _check_batch_size(batch_size)
        out = np.empty((len(texts), int(self.base.dim)), dtype=np.float32)
        bar = None
        if show_progress or (show_progress is None and len(texts) > _PROGRESS_THRESHOLD):
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc=f"encode {self.name}", unit="text")
        try:
            for start in range(0, len(texts), _TEXTS_PER_GROUP):
                group = texts[start:start + _TEXTS_PER_GROUP]
                out[start:start + len(group)] = self._encode_group(group, batch_size)
                if bar is not None:
                    bar.update(len(group))
        finally:
            if bar is not None:
                bar.close()
        return out

    def with_specials(self, window: Sequence[int]) -> list[int]:
        """A window's token ids between the special tokens the encoder expects (``[CLS] ... [SEP]`` for BERT)."""
        return self._prefix + list(window) + self._suffix

    def _encode_group(self, texts: list[str], batch_size: int) -> np.ndarray:
        content = content_ids(self.base.tokenizer, texts)
        windows: list[list[int]] = []
        owner: list[int] = []
        for i, ids in enumerate(content):
            for w in self.strategy.windows(ids, self.room):
                windows.append(self.with_specials(w))
                owner.append(i)
        vectors = self.base.encode_ids(windows, batch_size=batch_size, show_progress=False)
        if len(windows) == len(texts):  # one window per text (short texts, head_tail): nothing to pool
            return vectors
        bounds = np.flatnonzero(np.diff(np.asarray(owner))) + 1
        return np.stack([pool_windows(v, self.strategy, bool(self.base.normalize))
                         for v in np.split(vectors, bounds)])


def special_tokens_around(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids a tokenizer puts before and after a single text (``[CLS]`` and ``[SEP]`` for BERT).

    Read off one encoded word (transformers 5's fast tokenizers have no ``build_inputs_with_special_tokens``);
    a tokenizer that puts special tokens inside the text cannot have its windows rebuilt and is refused.

    Example:
        >>> special_tokens_around(enc.tokenizer)                    # doctest: +SKIP
        ([101], [102])
    """
    plain = tokenizer(["a"], add_special_tokens=False)["input_ids"][0]
    full = tokenizer(["a"], add_special_tokens=True)["input_ids"][0]
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return list(full[:i]), list(full[i + len(plain):])
    raise ConfigError("this encoder's tokenizer puts special tokens inside the text, so long texts cannot be cut "
                      "into windows for it; use long_text='truncate'.")


def one_window_ids(tokenizer: Any, texts: Sequence[str], max_length: int,
                   strategy: "str | LongTextStrategy | None") -> list[list[int]]:
    """Token ids of one window per text, special tokens included, at most ``max_length``: what a network rung
    trains on. ``head_tail`` keeps the first tokens and the last ones; a text that fits is whole.

    Only one-window strategies apply (``truncate``, ``head_tail``): a network rung reads one window per text.

    Example:
        >>> ids = one_window_ids(enc.tokenizer, ["word " * 600], 16, "head_tail:4")   # doctest: +SKIP
        >>> len(ids[0])                                                                # doctest: +SKIP
        16
    """
    s = LongTextStrategy.parse(strategy)
    if s.name not in ONE_WINDOW_STRATEGIES:
        raise ConfigError.invalid("long_text", str(s), "truncate or head_tail[:HEAD_TOKENS] for a rung that "
                                  "trains the encoder", "chunk_mean and chunk_max pool several windows of a "
                                  "frozen encoder: they work for probe and refit.")
    prefix, suffix = special_tokens_around(tokenizer)
    room = max(1, int(max_length) - len(prefix) - len(suffix))
    return [prefix + s.windows(ids, room)[0] + suffix for ids in content_ids(tokenizer, texts)]


def content_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Each text's token ids, whole: no special tokens, no truncation (the strategies cut them)."""
    # verbose=False: no "sequence longer than the maximum" warning; cutting them is the caller's job.
    return tokenizer(list(texts), add_special_tokens=False, truncation=False, padding=False, verbose=False,
                     return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def long_text_encoder(encoder: Any, strategy: "str | LongTextStrategy | None") -> Any:
    """``encoder`` reading long texts with ``strategy``: ``truncate`` (or None) returns ``encoder`` itself.

    Example:
        >>> long_text_encoder(enc, "truncate") is enc                # doctest: +SKIP
        True
        >>> long_text_encoder(enc, "chunk_mean").strategy.name       # doctest: +SKIP
        'chunk_mean'
    """
    s = LongTextStrategy.parse(strategy)
    if encoder is None or s.is_truncate:
        return encoder
    if isinstance(encoder, LongTextEncoder):
        encoder = encoder.base
    return LongTextEncoder(encoder, s)


def check_long_text(value: Any, what: str = "long_text") -> str:
    """``value`` as a valid strategy string (the error names the allowed values).

    Example:
        >>> check_long_text("chunk-mean")
        'chunk_mean'
        >>> check_long_text("chunks")
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: long_text='chunks' is not valid: expected one of truncate, head_tail[:HEAD_TOKENS], chunk_mean[:OVERLAP_TOKENS] or chunk_max[:OVERLAP_TOKENS]. For example chunk_mean (windows of the encoder's length, mean-pooled) or head_tail:64 (the first 64 tokens and the last ones).
    """
    return str(LongTextStrategy.parse(value, what))


# ------------------------------------------------------------------------------------- how long the texts are
def encoder_tokenizer(name_or_path: "Union[str, Path, None]" = None) -> tuple[Any, int, str]:
    """The tokenizer, window (``max_seq_length``) and name of an encoder, without loading its weights.

    Example:
        >>> tok, window, name = encoder_tokenizer()                 # doctest: +SKIP
        >>> window, name
        (256, 'all-MiniLM-L6-v2')
    """
    from transformers import AutoTokenizer

    from adaptlab.encoders.encoder import (_add_lowercase_normalizer, _quiet_transformers,
                                           _read_sentence_transformers_spec, _resolve_source)

    import warnings

    path, name, _source, _license = _resolve_source(name_or_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no modules.json": the window is all this needs
        spec = _read_sentence_transformers_spec(path)
    try:
        with _quiet_transformers():
            tok = AutoTokenizer.from_pretrained(str(spec["model_dir"]), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot load the tokenizer of encoder {name!r} from {str(spec['model_dir'])!r}: {exc}. "
                          "The folder must hold the tokenizer files written by `save_pretrained`.") from exc
    if spec["do_lower_case"]:
        _add_lowercase_normalizer(tok)
    window = spec["max_seq_length"]
    if window is None:
        tok_max = getattr(tok, "model_max_length", None)
        window = min(512, tok_max) if isinstance(tok_max, int) and 0 < tok_max < 10**6 else 512
    return tok, int(window), name


def token_counts(tokenizer: Any, texts: Sequence[str], batch: int = 1000) -> np.ndarray:
    """Tokens of each text, special tokens included (what the encoder would read without a window).

    Example:
        >>> token_counts(tok, ["one two", ""]).tolist()             # doctest: +SKIP
        [4, 2]
    """
    special = int(tokenizer.num_special_tokens_to_add(pair=False))
    out = np.empty(len(texts), dtype=np.int64)
    for s in range(0, len(texts), batch):
        ids = tokenizer(list(texts[s:s + batch]), add_special_tokens=False, truncation=False, verbose=False,
                        return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        out[s:s + len(ids)] = [len(x) + special for x in ids]
    return out


def window_report(texts: Sequence[str], labels: Optional[Sequence[Any]] = None, *,
                  encoder: "Union[str, Path, None]" = None, max_rows: Optional[int] = None,
                  seed: int = 0) -> dict[str, Any]:
    """How many texts are longer than the encoder's window, overall and by class, with its tokenizer.

    ``max_rows``: above it, a seeded sample of that many texts is counted (``"sampled"`` says so).
    ``"windows_per_text"``: the mean number of windows ``chunk_mean`` / ``chunk_max`` would encode per text
    (their encoding cost relative to ``truncate``).

    Example:
        >>> r = window_report(["short text"] * 3 + ["word " * 400], ["a", "a", "b", "b"])
        >>> r["window_tokens"], r["n_longer"], r["share_longer"], r["by_class"][1]["share_longer"]
        (256, 1, 0.25, 0.5)
    """
    tok, window, name = encoder_tokenizer(encoder)
    return window_stats(tok, window, name, texts, labels, max_rows=max_rows, seed=seed)


def window_stats(tokenizer: Any, window: int, name: str, texts: Sequence[str],
                 labels: Optional[Sequence[Any]] = None, *, max_rows: Optional[int] = None,
                 seed: int = 0) -> dict[str, Any]:
    """:func:`window_report` for a tokenizer already loaded (a study's encoder: ``enc.tokenizer``,
    ``enc.max_seq_length``, ``enc.name``).

    Example:
        >>> window_stats(enc.tokenizer, enc.max_seq_length, enc.name, ["short"])["n_longer"]   # doctest: +SKIP
        0
    """
    tok = tokenizer
    idx = np.arange(len(texts))
    sampled = bool(max_rows and len(texts) > max_rows)
    if sampled:
        idx = np.sort(np.random.default_rng(seed).choice(len(texts), size=int(max_rows), replace=False))
    counts = token_counts(tok, [texts[i] for i in idx])
    longer = counts > window
    special = int(tok.num_special_tokens_to_add(pair=False))
    room = window - special
    strategy = LongTextStrategy("chunk_mean")
    n_windows = [len(strategy.windows(range(max(int(c) - special, 0)), room)) for c in counts]
    report: dict[str, Any] = {
        "encoder": name, "window_tokens": window, "n": int(len(counts)), "sampled": sampled,
        "n_longer": int(longer.sum()), "share_longer": float(longer.mean()) if len(counts) else 0.0,
        "median_tokens": float(np.median(counts)) if len(counts) else 0.0,
        "p90_tokens": float(np.percentile(counts, 90)) if len(counts) else 0.0,
        "max_tokens": int(counts.max()) if len(counts) else 0,
        "windows_per_text": float(np.mean(n_windows)) if n_windows else 0.0,
        "by_class": [],
    }
    if labels is not None:
        labs = np.asarray([str(labels[i]) for i in idx], dtype=object)
        for lab in sorted(set(labs.tolist())):
            mask = labs == lab
            report["by_class"].append({"label": lab, "n": int(mask.sum()), "n_longer": int(longer[mask].sum()),
                                       "share_longer": float(longer[mask].mean())})
    return report


__all__ = ["DEFAULT_LONG_TEXT", "LONG_TEXT_ALLOWED", "LONG_TEXT_STRATEGIES", "LongTextEncoder", "LongTextStrategy",
           "ONE_WINDOW_STRATEGIES", "check_long_text", "encoder_tokenizer", "long_text_encoder", "one_window_ids",
           "pool_windows", "special_tokens_around",
           "token_counts", "window_report", "window_stats"]
