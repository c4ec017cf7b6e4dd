"""Embedding drift: do new texts still look like the ones the model was trained on?

:func:`embedding_drift` compares the reference embeddings (the training items, see
:class:`~adaptlab.monitor.ReferenceSet`) with the embeddings of new texts, four ways:

* **MMD² with a permutation p-value** (:func:`adaptlab.diagnostics.mmd_test`, RBF kernel, median
  bandwidth) on seeded subsamples of at most ``max_points`` per side. This is the test behind the
  verdict: ``p < alpha`` means "drift detected".
* **Per-dimension summary**: the standardised mean shift of every dimension,
  ``(mean_new - mean_ref) / sd_ref``, and the dimensions that moved most.
* **PCA summary**: principal components of the reference; for the top ones, the share of reference
  variance they explain, the new points' mean shift in reference-SD units and their variance ratio;
  plus how much of the new points' variance falls *outside* the reference's top components (new
  directions the reference never varied along).
* **Out-of-distribution share**: the share of new points whose nearest reference neighbour (cosine)
  is less similar than the reference's own 5th-percentile leave-one-out nearest-neighbour
  similarity. About 5% is expected without drift.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(400, 16))
    >>> embedding_drift(ref, rng.normal(size=(300, 16)) + 0.4, n_permutations=100).drift
    True
    >>> embedding_drift(ref, rng.normal(size=(300, 16)), n_permutations=100).drift
    False
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from adaptlab.diagnostics.mmd import MMDResult, mmd_test
from adaptlab.diagnostics.rules import MMD_ALPHA, MMD_N, MMD_PERMUTATIONS
from adaptlab.errors import ConfigError
from adaptlab.monitor._common import (
    EmbedFn, as_matrix, call_embed, check_fraction, check_int, check_texts, fnum, l2_normalize, same_dim, subsample,
)

#: A dimension (or component) whose mean moved by at least this many reference SDs counts as shifted
#: ("medium" effect in Cohen's convention).
SHIFT_SD = 0.5
_SD_FLOOR = 1e-8
#: Similarity entries held at once in the nearest-neighbour scan (~32 MB of float64).
_BLOCK_ENTRIES = 4_000_000


@dataclass
class DriftReport:
    """Result of :func:`embedding_drift`. ``drift`` is the MMD test's verdict; the rest explains it.

    Example:
        >>> import numpy as np
        >>> from adaptlab.monitor import DriftReport, embedding_drift
        >>> rng = np.random.default_rng(0)
        >>> reference, same, moved = rng.normal(size=(200, 8)), rng.normal(size=(100, 8)), rng.normal(size=(100, 8)) + 0.8
        >>> embedding_drift(reference, same, n_permutations=100).drift
        False
        >>> report = embedding_drift(reference, moved, n_permutations=100)
        >>> isinstance(report, DriftReport), report.drift, report.n_new, report.ood_flags.shape
        (True, True, 100, (100,))
    """

    mmd: MMDResult
    alpha: float
    n_reference: int
    n_new: int
    dims: dict[str, Any]
    pca: dict[str, Any]
    ood: dict[str, Any]
    seed: int
    ood_flags: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=bool))
    nn_similarity: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    @property
    def drift(self) -> bool:
        """The MMD test's verdict: new embeddings differ from the reference (p-value below ``alpha``)."""
        return bool(self.mmd.p_value < self.alpha)

    @property
    def verdict(self) -> str:
        """One paragraph in plain words."""
        mmd = f"MMD² = {self.mmd.mmd2:.4g}, permutation p = {self.mmd.p_value:.3g}"
        ood = (f"{100 * self.ood['share']:.1f}% of the new texts are farther from every training text than "
               f"{100 * (1 - self.ood['quantile']):.0f}% of training texts are from their nearest neighbour "
               f"(about {100 * self.ood['quantile']:.0f}% expected)")
        top = self.pca["components"][0] if self.pca["components"] else None
        if self.drift:
            parts = [f"drift detected: the new texts are distributed differently from the training texts ({mmd})."]
            moved = [c for c in self.pca["components"] if abs(c["mean_shift_sd"]) >= SHIFT_SD]
            if moved:
                c = max(moved, key=lambda c: abs(c["mean_shift_sd"]))
                parts.append(f"Largest move along principal component {c['component']} "
                             f"({100 * c['explained_variance_share']:.1f}% of training variance): "
                             f"{c['mean_shift_sd']:+.2f} training SDs.")
            elif top is not None:
                parts.append("No single principal direction moved by half a training SD; the change is spread out.")
            out_new, out_ref = self.pca["new_variance_outside_share"], self.pca["reference_variance_outside_share"]
            if out_new - out_ref >= 0.1:
                parts.append(f"The new texts also vary along directions the training texts hardly use "
                             f"({100 * out_new:.0f}% of their variance lies outside the training's top "
                             f"{self.pca['n_components']} components, vs {100 * out_ref:.0f}% for the training texts).")
            parts.append(ood[0].upper() + ood[1:] + ".")
            parts.append("Check recent predictions by hand and consider retraining with labelled recent texts.")
            return " ".join(parts)
        text = f"no significant drift: the new texts look like the training texts ({mmd}, p >= {self.alpha:g})."
        if self.ood["share"] > 2 * self.ood["quantile"] and self.ood["n_flagged"] >= 5:
            text += f" However, {ood}: look at those texts (see ood_items)."
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no per-item arrays)."""
        return {
            "drift": self.drift,
            "verdict": self.verdict,
            "alpha": self.alpha,
            "mmd": {k: (fnum(v, 8) if isinstance(v, float) else v) for k, v in self.mmd.to_dict().items()},
            "n_reference": self.n_reference,
            "n_new": self.n_new,
            "seed": self.seed,
            "dimensions": self.dims,
            "pca": self.pca,
            "ood": self.ood,
        }

    def __str__(self) -> str:
        lines = [self.verdict, "",
                 f"reference: {self.n_reference} items, new: {self.n_new} items; {self.mmd}"]
        d = self.dims
        lines.append(f"dimensions: mean |shift| {d['mean_abs_shift_sd']:.3f} SD, "
                     f"{100 * d['share_shifted']:.1f}% of {d['n_dims']} dims moved >= {SHIFT_SD} SD; top: "
                     + ", ".join(f"dim {t['dim']} {t['shift_sd']:+.2f}" for t in d["top"]))
        lines.append(f"PCA (fit on reference; top {len(self.pca['components'])} components explain "
                     f"{100 * self.pca['reference_variance_share_top']:.1f}% of its variance):")
        for c in self.pca["components"]:
            lines.append(f"  PC{c['component']}: {100 * c['explained_variance_share']:5.1f}% var, mean shift "
                         f"{c['mean_shift_sd']:+.2f} SD, variance ratio {c['variance_ratio']:.2f}")
        lines.append(f"  new-data variance outside these components: {100 * self.pca['new_variance_outside_share']:.1f}%"
                     f" (reference: {100 * self.pca['reference_variance_outside_share']:.1f}%)")
        o = self.ood
        lines.append(f"out of distribution: {o['n_flagged']}/{o['n_scored']} new items ({100 * o['share']:.1f}%, "
                     f"expected ~{100 * o['quantile']:.0f}%) below nearest-neighbour cosine {o['threshold']:.3f}")
        return "\n".join(lines)


def _dimension_summary(R: np.ndarray, N: np.ndarray, top_k: int) -> dict[str, Any]:
    mu_r, mu_n = R.mean(0), N.mean(0)
    sd_r = R.std(0, ddof=1) if len(R) > 1 else np.zeros(R.shape[1])
    z = (mu_n - mu_r) / np.maximum(sd_r, _SD_FLOOR)
    # A dimension constant in the reference but not in the new data is a real change; the floor keeps
    # it finite, clipping keeps the JSON readable.
    z = np.clip(z, -1e6, 1e6)
    order = np.argsort(-np.abs(z), kind="stable")[:top_k]
    return {
        "n_dims": int(R.shape[1]),
        "mean_abs_shift_sd": fnum(np.abs(z).mean()),
        "max_abs_shift_sd": fnum(np.abs(z).max()),
        "share_shifted": fnum((np.abs(z) >= SHIFT_SD).mean()),
        "top": [{"dim": int(j), "shift_sd": fnum(z[j]), "reference_mean": fnum(mu_r[j]), "new_mean": fnum(mu_n[j]),
                 "reference_sd": fnum(sd_r[j])} for j in order],
    }


def _pca_summary(R: np.ndarray, N: np.ndarray, n_components: int) -> dict[str, Any]:
    mu = R.mean(0)
    Rc, Nc = R - mu, N - mu
    # Eigen-decomposition of the d x d covariance costs n d² once, independent of how many new points.
    cov = Rc.T @ Rc / max(len(R) - 1, 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(-evals, kind="stable")
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    # Eigenvector signs are arbitrary; fixing them makes "mean shift +1.2 SD" reproducible.
    signs = np.sign(evecs[np.argmax(np.abs(evecs), axis=0), np.arange(evecs.shape[1])])
    evecs = evecs * np.where(signs == 0, 1.0, signs)
    total_r = float(evals.sum())
    k = min(n_components, R.shape[1])
    P_r, P_n = Rc @ evecs[:, :k], Nc @ evecs[:, :k]
    comps = []
    for j in range(k):
        sd = float(np.sqrt(evals[j]))
        var_n = float(P_n[:, j].var(ddof=1)) if len(N) > 1 else 0.0
        comps.append({
            "component": j + 1,
            "explained_variance_share": fnum(evals[j] / total_r) if total_r > 0 else 0.0,
            "mean_shift_sd": fnum((P_n[:, j].mean() - P_r[:, j].mean()) / max(sd, _SD_FLOOR)),
            "variance_ratio": fnum(var_n / max(float(evals[j]), _SD_FLOOR ** 2)),
        })
    top_r = float(evals[:k].sum())
    # Total variance of the new points around *their own* mean, split into inside/outside the top-k subspace.
    Nc_own = N - N.mean(0)
    total_n = float((Nc_own ** 2).sum() / max(len(N) - 1, 1))
    inside_n = float(((Nc_own @ evecs[:, :k]) ** 2).sum() / max(len(N) - 1, 1))
    return {
        "n_components": k,
        "fit_on": "reference",
        "reference_variance_share_top": fnum(top_r / total_r) if total_r > 0 else 0.0,
        "reference_variance_outside_share": fnum(1 - top_r / total_r) if total_r > 0 else 0.0,
        "new_variance_outside_share": fnum(1 - inside_n / total_n) if total_n > 0 else 0.0,
        "total_variance_ratio": fnum(total_n / total_r) if total_r > 0 else None,
        "components": comps,
    }


def _nn_similarity(Q: np.ndarray, R: np.ndarray, *, exclude_diagonal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Max cosine similarity of each (normalised) row of Q to R, and the argmax, in blocks."""
    best = np.empty(len(Q))
    arg = np.empty(len(Q), dtype=np.int64)
    block = max(1, _BLOCK_ENTRIES // max(len(R), 1))
    for s in range(0, len(Q), block):
        S = Q[s:s + block] @ R.T
        if exclude_diagonal:
            rows = np.arange(S.shape[0])
            S[rows, s + rows] = -np.inf
        arg[s:s + block] = np.argmax(S, axis=1)
        best[s:s + block] = S[np.arange(S.shape[0]), arg[s:s + block]]
    return best, arg


def embedding_drift(
    reference_emb: Any,
    new_emb: Any,
    *,
    n_permutations: int = MMD_PERMUTATIONS,
    max_points: int = MMD_N,
    seed: int = 0,
    alpha: float = MMD_ALPHA,
    n_components: int = 10,
    top_k: int = 5,
    ood_quantile: float = 0.05,
    n_ood_items: int = 10,
) -> DriftReport:
    """Compare new embeddings with the reference embeddings; see the module docstring for the four views.

    Args:
        reference_emb: ``(n_ref, d)`` embeddings of the training items (``ReferenceSet.embeddings``).
        new_emb: ``(n_new, d)`` embeddings of the new texts, same encoder.
        n_permutations: Permutations of the MMD test (p-value resolution is ``1 / (n_permutations + 1)``).
        max_points: Seeded subsample size per side for the MMD test and for the reference side of the
            nearest-neighbour (OOD) check; the per-dimension and PCA summaries use every row.
        seed: Seeds the subsamples and the permutations; same inputs + seed = same report.
        alpha: Level of the MMD test.
        n_components: Principal components reported.
        top_k: Most-shifted dimensions reported.
        ood_quantile: Reference leave-one-out nearest-neighbour similarity quantile used as the OOD cut.
        n_ood_items: How many of the most out-of-distribution new items to list (row numbers in ``new_emb``).

    Returns:
        A :class:`DriftReport`; ``report.ood_flags`` / ``report.nn_similarity`` hold per-new-item values.

    Example:
        >>> import numpy as np
        >>> from adaptlab.monitor import embedding_drift
        >>> rng = np.random.default_rng(0)
        >>> report = embedding_drift(rng.normal(size=(200, 8)), rng.normal(size=(100, 8)) + 0.8, n_permutations=100)
        >>> report.drift, report.mmd.p_value < 0.05, len(report.nn_similarity)
        (True, True, 100)
    """
    R = as_matrix("reference_emb", reference_emb, min_rows=2)
    N = as_matrix("new_emb", new_emb, min_rows=2)
    same_dim("reference_emb", R, "new_emb", N)
    check_int("n_permutations", n_permutations, 1)
    max_points = check_int("max_points", max_points, 2, "an integer >= 2 (1000 is the default)")
    seed = check_int("seed", seed, 0)
    alpha = check_fraction("alpha", alpha)
    n_components = check_int("n_components", n_components, 1)
    top_k = check_int("top_k", top_k, 1)
    ood_quantile = check_fraction("ood_quantile", ood_quantile)
    n_ood_items = check_int("n_ood_items", n_ood_items, 0)

    rng = np.random.default_rng(seed)
    ir = subsample(len(R), max_points, rng)
    inew = subsample(len(N), max_points, rng)
    mmd = mmd_test(R[ir], N[inew], n_permutations=n_permutations, seed=seed)

    dims = _dimension_summary(R, N, top_k)
    pca = _pca_summary(R, N, n_components)

    Rs = l2_normalize(R[ir])
    loo, _ = _nn_similarity(Rs, Rs, exclude_diagonal=True)
    threshold = float(np.quantile(loo, ood_quantile))
    nn_sim, nn_arg = _nn_similarity(l2_normalize(N), Rs)
    flags = nn_sim < threshold
    worst = np.argsort(nn_sim, kind="stable")[:n_ood_items]
    ood = {
        "quantile": ood_quantile,
        "threshold": fnum(threshold),
        "n_scored": int(len(N)),
        "n_flagged": int(flags.sum()),
        "share": fnum(flags.mean()),
        "reference_points": int(len(ir)),
        "reference_nn_similarity_median": fnum(np.median(loo)),
        "new_nn_similarity_median": fnum(np.median(nn_sim)),
        "items": [{"new_row": int(i), "nn_similarity": fnum(nn_sim[i]), "nearest_reference_row": int(ir[nn_arg[i]]),
                   "out_of_distribution": bool(flags[i])} for i in worst],
    }
    return DriftReport(mmd=mmd, alpha=alpha, n_reference=int(len(R)), n_new=int(len(N)), dims=dims, pca=pca,
                       ood=ood, seed=seed, ood_flags=flags, nn_similarity=nn_sim)


def drift_from_texts(
    reference: Any,
    new_texts: Sequence[str],
    embed_fn: EmbedFn,
    fingerprint: str,
    *,
    batch_size: int = 256,
    **kwargs: Any,
) -> DriftReport:
    """:func:`embedding_drift` of new texts against a :class:`~adaptlab.monitor.ReferenceSet`.

    Refuses to compare when any reference row was embedded by another encoder than ``fingerprint``
    (vectors of two encoders are not comparable): refresh the reference first. Keyword arguments go
    to :func:`embedding_drift`.

    Example:
        >>> import numpy as np
        >>> from adaptlab.monitor import ReferenceSet, drift_from_texts
        >>> def embed(texts):                      # stands in for Encoder.encode
        ...     return np.array([[len(t), t.count("patient"), t.count("market")] for t in texts], dtype="float32")
        >>> news = [f"the market rose {i} points in the market" for i in range(60)]
        >>> ref = ReferenceSet.build(None, news, embed, "toy-v1")
        >>> medical = [f"patient {i} reports knee pain, patient stable" for i in range(40)]
        >>> drift_from_texts(ref, medical, embed, "toy-v1", n_permutations=100).drift
        True
        >>> drift_from_texts(ref, medical, embed, "toy-v2")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: 60 of 60 reference rows were embedded by another encoder than 'toy-v2'; ...
    """
    from adaptlab.monitor.reference import ReferenceSet

    if not isinstance(reference, ReferenceSet):
        raise ConfigError.invalid("reference", type(reference).__name__, "a ReferenceSet")
    stale = sum(fp != fingerprint for fp in reference.fingerprints)
    if stale:
        raise ConfigError(
            f"{stale} of {len(reference)} reference rows were embedded by another encoder than {fingerprint!r}; "
            "drift between two encoders' spaces is meaningless. Re-embed them first with "
            "adaptlab.monitor.refresh(reference, embed_fn, fingerprint, texts_by_id)."
        )
    texts = check_texts("new_texts", new_texts)
    E = call_embed(embed_fn, texts, batch_size=batch_size)
    return embedding_drift(reference.embeddings, E, **kwargs)


__all__ = ["DriftReport", "SHIFT_SD", "drift_from_texts", "embedding_drift"]
