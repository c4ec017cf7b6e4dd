"""Choosing the pretrained encoder by evidence: frozen probe over seeds per candidate, plus a fast pre-screen.

Pick the starting encoder from benchmark evidence rather than its name (see the references table). Public
benchmarks (MTEB) rank encoders on other people's data; :func:`compare_encoders` ranks them on the
user's data, under the same sealed split and seeds as the study:

* **probe** (the evidence): for each candidate, the frozen encoder + logistic-regression head over
  seeds, exactly the study's ``probe`` rung (results go to the run store, so the later study with the
  chosen encoder reads them instead of training again);
* **pre-screen** (the shortcut): a transferability estimate computed once from frozen features of the
  train+validation pool, without training a head per seed: LogME (You et al., ICML 2021, the log
  marginal evidence of a Bayesian linear model from the features to each one-hot label) and the
  leave-one-out k-NN macro-F1. The comparison reports how well the pre-screen's ranking agreed with
  the probe's (Spearman and Kendall), so a user learns whether the shortcut is trustworthy on data
  like theirs before using it alone on many candidates;
* **choice**: the encoder with the best mean probe F1, unless a cheaper one (fewer compute parameters
  per token) is within the noise of it (paired bootstrap over the same test items and seeds includes
  zero): then the cheaper one, the project's rule that a costlier option must win by more than the
  noise. The comparison gives the chosen encoder, the runner-up, the gap with its 95% band, and each
  candidate's cost (compute parameters, encode speed measured here, size on disk).
"""
from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from adaptlab.config import StudyConfig, default_home
from adaptlab.data import TextDataset
from adaptlab.errors import ConfigError, DataError
from adaptlab.metrics import weighted_f1

PRESCREENS = ("logme", "knn")
EncoderSpec = Union[str, Path, Any]
Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- pre-screens
def logme(features: np.ndarray, labels: Sequence[Any]) -> float:
    """LogME: mean over classes of the per-sample log evidence of ``features`` for a one-hot label.

    For each class c, the target ``y = 1[label == c]`` is modelled as ``y = F w + noise`` with
    ``w ~ N(0, 1/alpha I)`` and ``noise ~ N(0, 1/beta)``; alpha and beta are set by maximising the
    evidence ``p(y | F, alpha, beta)`` with MacKay's fixed-point updates, computed in the eigenbasis of
    ``F^T F`` (one eigendecomposition serves every class). Higher is better; values are comparable
    across encoders of different dimension on the same labels, which is what a pre-screen needs.

    Reference: K. You, Y. Liu, J. Wang, M. Long, "LogME: Practical Assessment of Pre-trained Models for
    Transfer Learning", ICML 2021 (Algorithm 2).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat(["a", "b"], 50)
        >>> good = rng.normal(size=(100, 8)) + (y == "a")[:, None] * 3.0
        >>> bad = rng.normal(size=(100, 8))
        >>> logme(good, y) > logme(bad, y)
        True
    """
    F = np.asarray(features, dtype=np.float64)
    y_all = np.asarray(labels, dtype=object)
    if F.ndim != 2 or F.shape[0] != len(y_all):
        raise ConfigError(f"logme: features must be (n, dim) with one row per label; got {F.shape} and "
                          f"{len(y_all)} labels.")
    n, d = F.shape
    classes = sorted(set(y_all.tolist()))
    if n < 2 or len(classes) < 2:
        raise ConfigError("logme needs at least 2 samples and 2 classes.")
    # F^T F = V diag(s) V^T; with n < d the missing eigenvalues are zeros, which eigh returns as such.
    s, V = np.linalg.eigh(F.T @ F)
    s = np.clip(s, 0.0, None)
    evidences = []
    for c in classes:
        y = (y_all == c).astype(np.float64)
        evidences.append(_logme_one(F, y, s, V)[0])
    return float(np.mean(evidences))


def _logme_one(F: np.ndarray, y: np.ndarray, s: np.ndarray, V: np.ndarray, *, max_iter: int = 100,
               tol: float = 1e-6) -> tuple[float, float, float]:
    """(evidence / n, alpha, beta) for one target vector (the fixed point of Algorithm 2)."""
    n, d = F.shape
    eps = 1e-12
    proj = V.T @ (F.T @ y)  # F^T y in the eigenbasis
    yy = float(y @ y)
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        denom = alpha + beta * s
        m_eig = beta * proj / denom          # posterior mean of w in the eigenbasis
        m_sq = float(m_eig @ m_eig)
        # ||y - F m||^2 = y.y - 2 m.F^T y + m^T F^T F m, all in the eigenbasis.
        res = max(yy - 2.0 * float(m_eig @ proj) + float((s * m_eig) @ m_eig), 0.0)
        gamma = float(np.sum(beta * s / denom))
        new_alpha = gamma / (m_sq + eps)
        new_beta = (n - gamma) / (res + eps)
        converged = abs(new_alpha / new_beta - alpha / beta) <= tol * (alpha / beta)
        alpha, beta = max(new_alpha, eps), max(new_beta, eps)
        if converged:
            break
    denom = alpha + beta * s
    m_eig = beta * proj / denom
    m_sq = float(m_eig @ m_eig)
    res = max(yy - 2.0 * float(m_eig @ proj) + float((s * m_eig) @ m_eig), 0.0)
    evidence = (d / 2.0 * math.log(alpha) + n / 2.0 * math.log(beta) - beta / 2.0 * res - alpha / 2.0 * m_sq
                - 0.5 * float(np.sum(np.log(denom))) - n / 2.0 * math.log(2.0 * math.pi))
    return evidence / n, alpha, beta


def knn_loo_f1(features: np.ndarray, labels: Sequence[Any], *, k: int = 10) -> float:
    """Leave-one-out k-nearest-neighbour macro-F1 (cosine similarity, each item voted on by its k
    nearest *other* items). A model-free transferability score: do same-class texts sit together?

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat(["a", "b"], 30)
        >>> X = rng.normal(size=(60, 4)) + (y == "a")[:, None] * 4.0
        >>> knn_loo_f1(X, y, k=5) > 0.9
        True
    """
    from sklearn.metrics import f1_score

    X = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=object)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError.invalid("k", k, "an integer >= 1")
    n = len(y)
    if X.ndim != 2 or X.shape[0] != n or n < 2:
        raise ConfigError(f"knn_loo_f1: features must be (n >= 2, dim) with one row per label; got {X.shape}.")
    k = min(k, n - 1)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    Xn = X / np.where(norms > 0, norms, 1.0)
    classes = sorted(set(y.tolist()))
    index = {c: i for i, c in enumerate(classes)}
    yi = np.array([index[c] for c in y])
    pred = np.empty(n, dtype=np.int64)
    for start in range(0, n, 1024):
        sims = Xn[start : start + 1024] @ Xn.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # leave the item itself out
        nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        nn_sims = np.take_along_axis(sims, nn, axis=1)
        votes = np.zeros((sims.shape[0], len(classes)))
        # Similarity-weighted votes break ties deterministically in favour of the closer neighbours.
        np.add.at(votes, (np.repeat(rows, k), yi[nn].ravel()), 1.0 + 1e-6 * nn_sims.ravel())
        pred[start : start + sims.shape[0]] = votes.argmax(axis=1)
    return float(f1_score(yi, pred, average="macro", labels=list(range(len(classes))), zero_division=0))


def rank_agreement(a: Sequence[float], b: Sequence[float]) -> dict[str, Optional[float]]:
    """Spearman and Kendall rank correlation of two score lists (None when undefined: < 2 items or ties only).

    Example:
        >>> rank_agreement([1, 2, 3], [10, 20, 30])
        {'spearman': 1.0, 'kendall': 1.0}
    """
    from scipy.stats import kendalltau, spearmanr

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"spearman": None, "kendall": None}
    if len(a) == 2:
        # Both coefficients are the sign of the order agreement for two items (scipy warns on n=2).
        sign = float(np.sign((a[1] - a[0]) * (b[1] - b[0])))
        return {"spearman": sign, "kendall": sign}
    rho = spearmanr(a, b).statistic
    tau = kendalltau(a, b).statistic
    return {"spearman": None if not np.isfinite(rho) else round(float(rho), 4),
            "kendall": None if not np.isfinite(tau) else round(float(tau), 4)}


# ---------------------------------------------------------------------------------------------- result
@dataclass
class EncoderComparison:
    """Candidates compared on one sealed split: the table, the choice, the gap, the pre-screen's agreement.

    ``rows`` holds one dict per encoder (best probe mean first): name, source, license, dim,
    max_seq_length, n_parameters, compute_parameters, size_mb, fingerprint, ``texts_per_s`` (encode speed here),
    ``encode_all_s`` (estimated time to encode the labeled data once), probe ``mean``/``std``/``ci_low``/
    ``ci_high``/``f1_by_seed``, ``fit_s_per_seed``, ``logme``, ``knn_f1``, ``prescreen_s`` and ``study_id``.

    Example:
        >>> from adaptlab.evaluate import EncoderComparison
        >>> rows = [{"name": "small", "mean": 0.91, "ci_low": 0.89, "ci_high": 0.93},
        ...         {"name": "big", "mean": 0.92, "ci_low": 0.90, "ci_high": 0.94}]
        >>> cmp = EncoderComparison(rows=rows, chosen="small", runner_up="big", gap=None, prescreen={},
        ...                         reason="small is as good as big within noise and 5x faster", metric="macro-F1",
        ...                         n_test=200, seeds=3, n_prescreen=0, wall_seconds=12.0)
        >>> cmp.row("big")["mean"], EncoderComparison.from_dict(cmp.to_dict()) == cmp
        (0.92, True)
    """

    rows: list[dict[str, Any]]
    chosen: str
    runner_up: Optional[str]
    gap: Optional[dict[str, Any]]
    prescreen: dict[str, Any]
    reason: str
    metric: str
    n_test: int
    seeds: int
    n_prescreen: int
    wall_seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict (JSON-safe)."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EncoderComparison":
        """The comparison from :meth:`to_dict`'s output."""
        return cls(**d)

    def row(self, name: str) -> dict[str, Any]:
        """The row of encoder ``name`` (KeyError if it was not compared)."""
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(name)

    def summary(self) -> dict[str, Any]:
        """The part the decision and report carry: chosen, runner-up, gap with band, cost, agreement."""
        chosen = self.row(self.chosen)
        runner = self.row(self.runner_up) if self.runner_up else None

        def cost(r: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
            if r is None:
                return None
            return {k: r.get(k) for k in ("texts_per_s", "encode_all_s", "fit_s_per_seed", "n_parameters",
                                          "compute_parameters", "size_mb")}

        return {
            "chosen": self.chosen, "runner_up": self.runner_up, "gap": self.gap, "reason": self.reason,
            "chosen_f1": [chosen["mean"], chosen["ci_low"], chosen["ci_high"]],
            "runner_up_f1": [runner["mean"], runner["ci_low"], runner["ci_high"]] if runner else None,
            "cost": {"chosen": cost(chosen), "runner_up": cost(runner)},
            "prescreen": {k: self.prescreen.get(k) for k in ("method", "spearman", "kendall", "top1_agrees")},
            "candidates": [r["name"] for r in self.rows], "metric": self.metric, "seeds": self.seeds,
        }

    def summary_lines(self) -> list[str]:
        """Plain sentences: the choice and why, the gap with its band, the cost, the pre-screen's agreement."""
        lines = [self.reason]
        if self.gap is not None:
            g = self.gap
            lines.append(
                f"gap {self.chosen} − {self.runner_up}: {g['diff']:+.4f} [{g['ci_low']:+.4f}, {g['ci_high']:+.4f}] "
                f"(paired bootstrap over {self.n_test} test items and {self.seeds} seeds; "
                f"{'distinguishable' if g['distinguishable'] else 'not distinguishable at this noise level'})")
        for r in self.rows:
            lines.append(
                f"cost {r['name']}: {r['texts_per_s']:.1f} texts/s here ({r['encode_all_s']:.1f} s to encode the "
                f"labeled data once), {r['n_parameters'] / 1e6:.1f}M parameters "
                f"({r['compute_parameters'] / 1e6:.1f}M per token), {r['size_mb']} MB")
        p = self.prescreen
        sp = "n/a" if p.get("spearman") is None else f"{p['spearman']:+.2f}"
        kt = "n/a" if p.get("kendall") is None else f"{p['kendall']:+.2f}"
        lines.append(
            f"pre-screen ({p['method']}, no head trained, {p.get('seconds', 0.0):.1f} s for all candidates) vs probe "
            f"ranking: Spearman {sp}, Kendall {kt}; top choice {'agrees' if p.get('top1_agrees') else 'differs'}.")
        return lines

    def to_markdown(self) -> str:
        """The comparison table as Markdown, the chosen encoder marked."""
        head = ("| encoder | dim | max len | params | MB | texts/s | probe mean ± std | 95% band | LogME "
                "| kNN-LOO F1 |\n"
                "|---|---|---|---|---|---|---|---|---|---|\n")
        body = "".join(
            f"| {r['name']}{' (chosen)' if r['name'] == self.chosen else ''} | {r['dim']} | {r['max_seq_length']} | "
            f"{r['n_parameters'] / 1e6:.1f}M | {r['size_mb']} | {r['texts_per_s']:.1f} | "
            f"{r['mean']:.4f} ± {r['std']:.4f} | [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | {r['logme']:.4f} | "
            f"{r['knn_f1']:.4f} |\n" for r in self.rows)
        return head + body + "\n" + "\n".join(f"- {x}" for x in self.summary_lines()) + "\n"


# ---------------------------------------------------------------------------------------------- comparison
def compare_encoders(
    dataset: TextDataset,
    encoders: Sequence[EncoderSpec],
    *,
    seeds: Optional[int] = None,
    config: Optional[StudyConfig] = None,
    test: Optional[TextDataset] = None,
    home: Optional[Union[str, Path]] = None,
    prescreen: str = "logme",
    max_seq_length: Optional[int] = None,
    speed_texts: int = 64,
    prescreen_max_texts: int = 4000,
    knn_k: int = 10,
    device: str = "auto",
    progress: Optional[Progress] = None,
    show_progress: bool = False,
) -> EncoderComparison:
    """Compare candidate encoders on ``dataset``: frozen probe over seeds, pre-screen, choice and cost.

    Args:
        dataset: Labeled texts (the study's ``--data``).
        encoders: Names of known encoder packages (``adaptlab encoders list``), local folders, or
            loaded :class:`~adaptlab.encoders.Encoder` objects. At least two.
        seeds: Probe seeds per encoder (default: ``config.seeds``, else 5).
        config: The study's config; its split, sizes, test seed, positive label and bootstrap size are
            used so the probe results are shared with a study on the chosen encoder (its ``rungs`` and
            ``encoder`` are ignored).
        test: A separate sealed test file, as in :meth:`Study.run`.
        home: The study home (run store and embedding cache).
        prescreen: ``"logme"`` (default) or ``"knn"``: which estimate the reported ranking uses (both are computed).
        max_seq_length: Truncate every candidate to at most this many tokens (quick screens on long
            texts; the cap is part of each encoder's fingerprint).
        speed_texts: Texts encoded (uncached) to measure each encoder's speed on this machine.
        prescreen_max_texts: Pre-screen on at most this many train+validation texts (seeded sample).
        knn_k: Neighbours of the leave-one-out k-NN score.

    Example:
        >>> from adaptlab.data.bundled import load_bbc_news
        >>> names = ["all-MiniLM-L6-v2", "all-mpnet-base-v2"]
        >>> cmp = compare_encoders(load_bbc_news(), names, seeds=3)  # doctest: +SKIP
        >>> cmp.chosen, cmp.runner_up, cmp.gap["diff"], cmp.prescreen["spearman"]  # doctest: +SKIP
        ('all-mpnet-base-v2', 'all-MiniLM-L6-v2', 0.012, 1.0)
        >>> print(cmp.to_markdown())  # doctest: +SKIP
    """
    from adaptlab.encoders import EmbeddingCache
    from adaptlab.store import RunStore

    say = progress or (lambda _m: None)
    t_start = time.perf_counter()
    _check_compare_args(dataset, encoders, prescreen, speed_texts, prescreen_max_texts)
    base = config or StudyConfig()
    n_seeds = seeds if seeds is not None else base.seeds
    cfg = StudyConfig(rungs=["probe"], seeds=n_seeds, split=base.split, test_size=base.test_size,
                      val_size=base.val_size, test_seed=base.test_seed, positive_label=base.positive_label,
                      near_dup_threshold=base.near_dup_threshold, n_boot=base.n_boot,
                      rung_params={k: v for k, v in base.rung_params.items() if k == "probe"})
    home = Path(home) if home is not None else default_home()
    run = _CandidateRun(dataset=dataset, test=test, cfg=cfg, home=home, store=RunStore(home / "runs.sqlite"),
                        cache=EmbeddingCache(home / "cache" / "embeddings.sqlite"), say=say,
                        prescreen_max_texts=prescreen_max_texts, knn_k=knn_k, show_progress=show_progress)
    order = np.random.default_rng([cfg.test_seed, 9]).permutation(len(dataset))
    speed_sample = [dataset.texts[i] for i in order[: min(speed_texts, len(dataset))]]
    for spec in encoders:
        enc = _cap(_load(spec, device), max_seq_length)
        run.add(spec, enc, speed_sample)
        if not hasattr(spec, "encode"):
            del enc
            gc.collect()
    rows, notes = run.rows, run.notes
    if len(rows) < 2:
        raise ConfigError("fewer than two distinct encoders to compare (the others had the same weights); "
                          "give encoders with different weights.")
    if run.y_test is None:  # pragma: no cover - set by the first encoder, which always exists here
        raise DataError("no encoder produced test predictions.")
    rows.sort(key=lambda r: -r["mean"])
    chosen, runner_up, gap, reason = _choose(rows, run, n_seeds)
    pre = _prescreen_summary(rows, prescreen, run.prescreen_seconds)
    if len(rows) == 2:
        notes.append("with two encoders a rank correlation is +1 or -1 (the order agrees or not); compare three or "
                     "more to measure how well the pre-screen ranks.")
    return EncoderComparison(rows=rows, chosen=chosen, runner_up=runner_up, gap=gap, prescreen=pre, reason=reason,
                             metric=run.metric, n_test=len(run.y_test), seeds=n_seeds, n_prescreen=run.n_pre,
                             wall_seconds=round(time.perf_counter() - t_start, 2), notes=notes)


def _check_compare_args(dataset: TextDataset, encoders: Sequence[EncoderSpec], prescreen: str, speed_texts: int,
                        prescreen_max_texts: int) -> None:
    if prescreen not in PRESCREENS:
        raise ConfigError.invalid("prescreen", prescreen, f"one of {', '.join(PRESCREENS)}")
    if isinstance(encoders, (str, Path)) or len(encoders) < 2:
        raise ConfigError.invalid("encoders", encoders, "at least two encoders (names, folders or Encoder objects)",
                                  "Comma-separate them on the command line, e.g. --encoders all-MiniLM-L6-v2,mpnet; "
                                  "`adaptlab encoders list` shows what is installed.")
    from adaptlab.encoders.encoder import encoder_source

    for spec in encoders:  # every name or folder resolves before the first candidate's minutes of work
        if not (hasattr(spec, "encode") and hasattr(spec, "fingerprint")):
            if not isinstance(spec, (str, Path)) or not str(spec).strip():
                raise ConfigError.invalid("encoders", spec, "an encoder name, a folder path or an Encoder object")
            encoder_source(str(spec).strip())
    for name, v in (("speed_texts", speed_texts), ("prescreen_max_texts", prescreen_max_texts)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError.invalid(name, v, "an integer >= 1")
    if dataset.labels is None:
        raise DataError("the data has no labels; pass --label-col NAME naming the label column.")


def _encode_speed(enc: Any, sample: list[str]) -> float:
    """Texts per second of ``enc`` on ``sample`` (uncached), after a warm-up."""
    enc.encode(sample[:8], show_progress=False)  # warm-up: first calls pay for allocations
    # Best of two halves: on a shared machine a burst of someone else's work slows one pass, and the
    # faster pass is the closer estimate of what this encoder costs.
    rates = []
    for half in (sample[: len(sample) // 2], sample[len(sample) // 2:]):
        if half:
            t0 = time.perf_counter()
            enc.encode(half, show_progress=False)
            rates.append(len(half) / max(time.perf_counter() - t0, 1e-9))
    return max(rates)


@dataclass
class _CandidateRun:
    """The candidates measured so far: one row each, their paired test predictions, and what they share."""

    dataset: TextDataset
    test: Optional[TextDataset]
    cfg: StudyConfig
    home: Path
    store: Any
    cache: Any
    say: Progress
    prescreen_max_texts: int
    knn_k: int
    show_progress: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    preds: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)
    y_test: Optional[np.ndarray] = None
    test_ids: Optional[list[str]] = None
    classes: list[str] = field(default_factory=list)
    positive: Optional[str] = None
    metric: str = ""
    prescreen_seconds: float = 0.0
    n_pre: int = 0

    def add(self, spec: EncoderSpec, enc: Any, speed_sample: list[str]) -> None:
        """Measure one candidate: speed, the frozen probe over seeds, the pre-screen; adds its row."""
        fp = enc.fingerprint
        if fp in self.seen:
            self.notes.append(f"{enc.name} has the same weights and settings as {self.seen[fp]} (fingerprint "
                              f"{fp[:12]}); compared once.")
            return
        name = enc.name
        while name in {r["name"] for r in self.rows}:
            name += "'"
        self.seen[fp] = name
        self.say(f"encoder {name}: measuring encode speed on {len(speed_sample)} texts ...")
        speed = _encode_speed(enc, speed_sample)
        row, study_id = self._probe(name, enc)
        lm, kn, pre_s = self._prescreen(enc)
        self.rows.append(self._row(name, spec, enc, speed, row, study_id, lm, kn, pre_s))
        self.say(f"encoder {name}: probe {row['mean']:.4f} ± {row['std']:.4f}, LogME {lm:.4f}, kNN-LOO F1 {kn:.4f}, "
                 f"{speed:.1f} texts/s")

    def _probe(self, name: str, enc: Any) -> tuple[dict[str, Any], str]:
        from adaptlab.evaluate.study import Study

        n_seeds = self.cfg.seeds
        self.say(f"encoder {name}: frozen probe over {n_seeds} seeds ...")
        study_cfg = StudyConfig(**{**self.cfg.to_dict(), "name": f"encoder candidate {name}: probe x {n_seeds} seeds"})
        result = Study(study_cfg, home=self.home, encoder=enc, show_progress=self.show_progress).run(
            self.dataset, test=self.test, progress=lambda m: self.say(f"  {m}"))
        stored = self.store.study_results(result.study_id)
        ids = list(stored[0]["predictions"]["test_ids"])
        if self.test_ids is None:
            self.test_ids, self.y_test = ids, np.asarray(stored[0]["predictions"]["y_true"], dtype=object)
            self.classes, self.positive, self.metric = result.classes, result.positive_label, result.metric
        elif ids != self.test_ids:  # pragma: no cover - the split depends only on the data and the config
            raise DataError("the encoders were scored on different test items; the comparison would not be paired.")
        self.preds[name] = {int(r["seed"]): np.asarray(r["predictions"]["y_pred"], dtype=object) for r in stored}
        return result.row("probe"), result.study_id

    def _prescreen(self, enc: Any) -> tuple[float, float, float]:
        """LogME and leave-one-out kNN F1 on the train+validation pool only: the sealed test never informs the choice."""
        from adaptlab.encoders import embed

        t1 = time.perf_counter()
        pool = _pool(self.dataset, self.test, set(self.test_ids or ()))
        if len(pool) > self.prescreen_max_texts:
            pick = np.sort(np.random.default_rng([self.cfg.test_seed, 11]).choice(
                len(pool), self.prescreen_max_texts, replace=False))
            pool = pool.subset(pick.tolist())
        X = embed(enc, pool.texts, cache=self.cache, show_progress=self.show_progress)
        lm, kn = logme(X, pool.labels), knn_loo_f1(X, pool.labels, k=self.knn_k)
        pre_s = time.perf_counter() - t1
        self.prescreen_seconds += pre_s
        self.n_pre = len(pool)
        return lm, kn, pre_s

    def _row(self, name: str, spec: EncoderSpec, enc: Any, speed: float, row: dict[str, Any], study_id: str,
             lm: float, kn: float, pre_s: float) -> dict[str, Any]:
        from adaptlab.encoders.candidates import weights_size

        info = enc.info
        path = getattr(enc, "path", None)
        size_mb = round(weights_size(path) / 1e6, 1) if path is not None else round(enc.n_parameters * 4 / 1e6, 1)
        n_total = len(self.dataset) + (len(self.test) if self.test is not None else 0)
        return {
            "name": name, "spec": str(spec).strip() if isinstance(spec, (str, Path)) else None,
            "source": info.get("source"), "license": info.get("license"), "dim": int(enc.dim),
            "max_seq_length": int(enc.max_seq_length), "n_parameters": int(enc.n_parameters),
            "compute_parameters": compute_parameters(enc.model), "size_mb": size_mb,
            "fingerprint": enc.fingerprint, "texts_per_s": round(speed, 2), "encode_all_s": round(n_total / speed, 1),
            "mean": row["mean"], "std": row["std"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
            "f1_by_seed": row["f1_by_seed"], "val_f1_mean": row["val_f1_mean"],
            "fit_s_per_seed": round(row["fit_seconds_mean"], 3), "logme": round(lm, 6), "knn_f1": round(kn, 6),
            "prescreen_s": round(pre_s, 3), "study_id": study_id,
        }


def _choose(rows: list[dict[str, Any]], run: _CandidateRun,
            n_seeds: int) -> tuple[str, Optional[str], Optional[dict[str, Any]], str]:
    """The chosen encoder (rows sorted best first), the runner-up, their paired gap, and the reason in words."""
    cfg, best = run.cfg, rows[0]["name"]

    def paired(a: str, b: str) -> dict[str, Any]:
        return _paired_diff(run.preds[a], run.preds[b], run.y_test, run.classes, run.positive, n_boot=cfg.n_boot,
                            seed=cfg.test_seed)

    chosen = choose_encoder(rows, {r["name"]: paired(best, r["name"]) for r in rows[1:]})
    chosen_row = next(r for r in rows if r["name"] == chosen)
    others = [r for r in rows if r["name"] != chosen]
    runner_up = others[0]["name"] if others else None
    gap = paired(chosen, runner_up) if runner_up is not None else None
    if chosen == best:
        why = f"{chosen} has the best frozen-probe {run.metric} ({chosen_row['mean']:.4f} over {n_seeds} seeds)"
        if runner_up is not None and gap is not None and not gap["distinguishable"]:
            why += (f", but {runner_up} is within the noise of it; {chosen} is also the cheaper one "
                    f"({_cost_words(chosen_row, others[0])})")
        elif runner_up is not None:
            why += f" and beats the runner-up {runner_up} by more than the noise"
    else:
        why = (f"{chosen} is within the noise of the best encoder {best} "
               f"({chosen_row['mean']:.4f} vs {rows[0]['mean']:.4f}) and cheaper "
               f"({_cost_words(chosen_row, rows[0])}): the costlier encoder has not earned its cost")
    return chosen, runner_up, gap, f"Encoder: {why}."


def _prescreen_summary(rows: list[dict[str, Any]], prescreen: str, seconds: float) -> dict[str, Any]:
    """How well the pre-screen's ranking (and the other method's) agrees with the probe's, rows sorted best first."""
    key = "logme" if prescreen == "logme" else "knn_f1"
    probe_means = [r["mean"] for r in rows]
    agree = rank_agreement([r[key] for r in rows], probe_means)
    other = rank_agreement([r["knn_f1" if key == "logme" else "logme"] for r in rows], probe_means)
    pre_rank = [r["name"] for r in sorted(rows, key=lambda r: -r[key])]
    return {"method": prescreen, "scores": {r["name"]: r[key] for r in rows}, "ranking": pre_rank,
            "probe_ranking": [r["name"] for r in rows], "spearman": agree["spearman"], "kendall": agree["kendall"],
            "top1_agrees": pre_rank[0] == rows[0]["name"],
            "other_method": "knn" if prescreen == "logme" else "logme", "other_spearman": other["spearman"],
            "other_kendall": other["kendall"], "seconds": round(seconds, 3)}


def choose_encoder(rows: Sequence[dict[str, Any]], diffs_vs_best: dict[str, dict[str, Any]]) -> str:
    """The encoder to start from: the best probe mean, unless a cheaper one is within the noise of it.

    ``rows`` are sorted best probe mean first; ``diffs_vs_best[name]`` is the paired difference best − name
    with its band. The ladder's rule applied to encoders: a costlier encoder must beat a cheaper one by
    more than the noise, so among the encoders whose band includes zero the cheapest wins. Cheapest means
    the fewest compute parameters (the weights every token passes through, i.e. all but the vocabulary
    table): the measured texts/s only breaks ties, because on a shared machine it swings with other
    people's load (a 12-layer encoder measured faster than a 6-layer one in one of our runs).

    Example:
        >>> rows = [{"name": "big", "texts_per_s": 5.0, "compute_parameters": 86e6},
        ...         {"name": "small", "texts_per_s": 30.0, "compute_parameters": 11e6}]
        >>> choose_encoder(rows, {"small": {"ci_low": -0.004, "ci_high": 0.02}})
        'small'
        >>> choose_encoder(rows, {"small": {"ci_low": 0.003, "ci_high": 0.02}})
        'big'
    """
    if not rows:
        raise ConfigError("no encoder to choose from.")
    tied = [rows[0]] + [r for r in rows[1:] if diffs_vs_best[r["name"]]["ci_low"] <= 0.0]
    return min(tied, key=lambda r: (r["compute_parameters"], -r["texts_per_s"]))["name"]


def compute_parameters(model: Any) -> int:
    """Parameters every token passes through: all but the vocabulary (word-embedding) table.

    A stable measure of an encoder's compute per token; a larger vocabulary adds memory, not compute.
    """
    total = 0
    for name, p in model.named_parameters():
        if "word_embeddings" in name or "embed_tokens" in name:
            continue
        total += p.numel()
    return int(total)


def _cost_words(a: dict[str, Any], b: dict[str, Any]) -> str:
    return (f"{a['compute_parameters'] / 1e6:.1f}M vs {b['compute_parameters'] / 1e6:.1f}M compute parameters; "
            f"{a['texts_per_s']:.1f} vs {b['texts_per_s']:.1f} texts/s measured here")


def _load(spec: EncoderSpec, device: str) -> Any:
    if hasattr(spec, "encode") and hasattr(spec, "fingerprint"):
        return spec
    from adaptlab.encoders import load_encoder

    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise ConfigError.invalid("encoders", spec, "an encoder name, a folder path or an Encoder object")
    return load_encoder(str(spec).strip(), device=device)


def _cap(enc: Any, max_seq_length: Optional[int]) -> Any:
    from adaptlab.encoders.encoder import with_max_seq_length

    return with_max_seq_length(enc, max_seq_length)


def _pool(dataset: TextDataset, test: Optional[TextDataset], test_ids: set[str]) -> TextDataset:
    if test is not None:
        return dataset  # with a separate test file, all of --data is the train+validation pool
    keep = [i for i, item_id in enumerate(dataset.ids) if item_id not in test_ids]
    return dataset.subset(keep)


def _paired_diff(pa: dict[int, np.ndarray], pb: dict[int, np.ndarray], y_true: np.ndarray, classes: Sequence[str],
                 positive: Optional[str], *, n_boot: int, seed: int) -> dict[str, Any]:
    """Mean F1 of A minus B over seeds, with a 95% band resampling test items and seeds jointly for both."""
    seeds = sorted(set(pa) & set(pb))
    n = len(y_true)
    rng = np.random.default_rng([seed, 21])
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    ones = np.ones((1, n))
    da = np.stack([weighted_f1(weights, y_true, pa[s], classes, positive) for s in seeds], axis=1)
    db = np.stack([weighted_f1(weights, y_true, pb[s], classes, positive) for s in seeds], axis=1)
    point = float(np.mean([weighted_f1(ones, y_true, pa[s], classes, positive)[0]
                           - weighted_f1(ones, y_true, pb[s], classes, positive)[0] for s in seeds]))
    draw = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
    boot = np.take_along_axis(da - db, draw, axis=1).mean(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"diff": round(point, 6), "ci_low": round(float(lo), 6), "ci_high": round(float(hi), 6),
            "distinguishable": bool(lo > 0 or hi < 0), "n_boot": int(n_boot), "n_seeds": len(seeds)}


__all__ = ["PRESCREENS", "EncoderComparison", "choose_encoder", "compare_encoders", "compute_parameters", "knn_loo_f1", "logme",
           "rank_agreement"]
