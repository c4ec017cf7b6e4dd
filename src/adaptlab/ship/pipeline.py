"""`Pipeline`: the shipped model, a scikit-learn classifier of raw texts built from one rung.

It wraps whatever the study chose (the TF-IDF baseline, the frozen encoder + logistic head, the refit
encoder + head, or a fine-tuned / LoRA network) behind ``fit(X, y)`` / ``predict`` / ``predict_proba``
so it drops into ``cross_val_score``, ``GridSearchCV`` and a coordinator's one-line retrain. It holds
out ``validation_size`` of the training texts (stratified, seeded) for the rung's own model selection
(the C of the head, early stopping), exactly as in the study.

Saved with :meth:`Pipeline.save` as a folder: ``adaptlab.json`` (manifest: settings, classes, tensor
shapes, SHA-256 of every file), ``weights.safetensors`` and ``MODEL_CARD.md``; encoders other than the
installed package's go to a content-addressed ``blobs/`` store. :func:`load_pipeline` verifies all of
it before building anything and never unpickles or executes content from the folder.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from adaptlab.errors import ConfigError
from adaptlab.ship.artifact import (
    check_tensors, describe_tensors, export_fitted, import_fitted, load_precision, read_json,
)
from adaptlab.ship.blobs import BlobStore
from adaptlab.store import json_safe
from adaptlab.store.files import sha256_file

MANIFEST = "adaptlab.json"
WEIGHTS = "weights.safetensors"
CARD = "MODEL_CARD.md"
BLOBS = "blobs"
FORMAT = "adaptlab-pipeline-v1"
# Files an artifact folder may hold besides blobs/. The card is documentation: never read at load time.
_ARTIFACT_FILES = (MANIFEST, WEIGHTS, CARD)
_MANIFEST_KEYS = frozenset({"format", "adaptlab_version", "created", "rung", "params", "classes", "class_dtype",
                            "positive_label", "rung_config", "state", "tensors", "fit", "extra", "blobs", "files",
                            "calibration"})
PathLike = Union[str, Path]


def _check_shippable(rung: Any, what: str) -> None:
    """Refuse a rung the catalogue does not know (every rung of the ladder ships)."""
    from adaptlab.rungs.ladder import LADDER, catalogued

    if not isinstance(rung, str) or not catalogued(rung):
        raise ConfigError.invalid(what, rung, f"one of {', '.join(LADDER)}")


def _check_texts(X: Any, name: str = "X") -> list[str]:
    """Raw texts as a list of str; numeric or nested input gets an error that says what is expected."""
    if isinstance(X, str):
        raise ConfigError.invalid(name, X[:40] + ("..." if len(X) > 40 else ""), "a sequence of texts, not one string",
                                  "Wrap a single text in a list: pipe.predict([text]).")
    try:
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            if X.shape[1] != 1:
                raise ConfigError.invalid(name, f"DataFrame with columns {list(X.columns)[:5]}",
                                          "a 1-D sequence of texts", "Pass the text column: df['text'].")
            X = X.iloc[:, 0]
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    arr = np.asarray(X, dtype=object) if not isinstance(X, np.ndarray) else X
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ConfigError.invalid(name, f"array of shape {arr.shape}", "a 1-D sequence of texts (str)",
                                  "adaptlab pipelines classify raw texts; pass a list or a text column.")
    bad = [i for i, t in enumerate(arr) if not isinstance(t, str)]
    if bad:
        i = bad[0]
        raise ConfigError(f"{name} must contain texts (str); item {i} is {type(arr[i]).__name__} {arr[i]!r}"
                          f"{f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''}. adaptlab pipelines classify raw "
                          "texts: convert or drop the non-text items.")
    return [str(t) for t in arr]


def _stratified_holdout(labels: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class holdout; every class keeps at least one training example."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels, dtype=object)
    train, val = [], []
    for c in sorted(set(labels)):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_val = min(int(round(len(idx) * fraction)), len(idx) - 1)
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return np.sort(np.asarray(train, dtype=int)), np.sort(np.asarray(val, dtype=int))


def _has_linear_head(self: "Pipeline") -> bool:
    return hasattr(getattr(self, "fitted_", None), "head") and hasattr(self.fitted_.head, "decision_function")


class Pipeline(ClassifierMixin, BaseEstimator):
    """A text classifier built from one adaptation rung; scikit-learn compatible, saved without pickle.

    Args:
        rung: Which rung to train: ``"tfidf"``, ``"probe"`` (frozen encoder + logistic head; the
            default), ``"refit"`` (needs ``unlabeled`` texts in :meth:`fit`), ``"setfit"`` (needs
            ``pip install adaptlab[setfit]``), ``"lora"``, ``"unfreeze"``,
            ``"finetune"`` or ``"lpft"``.
        encoder: ``None`` for the packaged all-MiniLM-L6-v2, a folder path, or an ``Encoder``.
        rung_params: The rung's settings (as in ``StudyConfig.rung_params[rung]``), e.g. ``{"C_grid": [1.0]}``.
        seed: Seed of the validation holdout and of the rung's training.
        validation_size: Share of the training texts held out to select the head / stop early.
        budget: Training budget of network rungs, e.g. ``"200steps"`` or ``"10m"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        precision: Numeric path of a *frozen* encoder (``probe``): ``"fp32"`` (default), ``"bf16"``,
            ``"int8"`` or ``"auto"`` (bf16 where the hardware runs it natively, else fp32). No gate here:
            pass what the study's gate accepted (``result.data["encode_precision"]["used"]``). Saved with
            the model and named in its card; rungs that train the encoder ignore it.
        home: Folder for refit artifacts (default: ``$ADAPTLAB_HOME`` or ``./adaptlab-runs``).
        cache: SQLite file of cached embeddings (e.g. a study's ``<home>/cache/embeddings.sqlite``), so
            texts already embedded by the same encoder are not encoded again; ``None`` disables it.
        show_progress: Progress bars while encoding / training.
        calibration: How the probabilities are calibrated on the validation holdout after training
            (:mod:`adaptlab.evaluate.calibration`): ``"auto"`` (default: temperature, Platt or isotonic,
            whichever has the lowest cross-validated log-loss on the validation texts), one of
            ``"temperature"``, ``"platt"``, ``"isotonic"``, or ``"none"``. It never changes the predicted
            class, only the probabilities; the sealed test is never read.

    Attributes:
        classes_: The class labels, sorted (same dtype as ``y``).
        fitted_: The fitted rung (``adaptlab.rungs``): ``predict_proba``, ``embed``.
        encoder_: The encoder the rung used (``None`` for ``tfidf``).
        val_scores_: Scores on the internal validation holdout.
        fit_info_: Sizes, hashes and cost of the last fit (goes to the model card).
        calibration_: The :class:`~adaptlab.evaluate.calibration.ProbabilityCalibration` fitted on the
            validation holdout, or None (too few validation texts, ``calibration="none"``, or a model saved
            before adaptlab calibrated models); ``calibration_note_`` says which, in words.

    Example:
        >>> from adaptlab.ship import Pipeline, load_pipeline
        >>> pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(
        ...     ["good film", "great film", "bad film", "awful film"] * 3, ["pos", "pos", "neg", "neg"] * 3)
        >>> pipe.predict(["great", "awful"]).tolist()
        ['pos', 'neg']
        >>> folder = pipe.save("model")
        >>> load_pipeline(folder).predict(["great"]).tolist()
        ['pos']
    """

    def __init__(self, rung: str = "probe", encoder: Any = None, rung_params: Optional[dict] = None, seed: int = 0,
                 validation_size: float = 0.2, budget: Optional[str] = None, device: str = "auto",
                 home: Optional[PathLike] = None, cache: Optional[PathLike] = None,
                 show_progress: bool = False, precision: str = "fp32", calibration: str = "auto") -> None:
        self.rung = rung
        self.encoder = encoder
        self.rung_params = rung_params
        self.seed = seed
        self.validation_size = validation_size
        self.budget = budget
        self.device = device
        self.home = home
        self.cache = cache
        self.show_progress = show_progress
        self.precision = precision
        self.calibration = calibration

    # ------------------------------------------------------------------------- fit
    def _validate_params(self) -> None:  # noqa: D401 - sklearn name
        _check_shippable(self.rung, "rung")
        if self.rung_params is not None and not isinstance(self.rung_params, dict):
            raise ConfigError.invalid("rung_params", self.rung_params, "a dict of the rung's settings or None")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError.invalid("seed", self.seed, "an integer >= 0")
        vs = self.validation_size
        if isinstance(vs, bool) or not isinstance(vs, (int, float)) or not 0 < vs < 1:
            raise ConfigError.invalid("validation_size", vs, "a fraction in (0, 1), e.g. 0.2")
        from adaptlab.encoders.fast import REQUESTS

        if self.precision not in REQUESTS:
            raise ConfigError.invalid("precision", self.precision, f"one of {', '.join(REQUESTS)}")
        from adaptlab.evaluate.calibration import CHOICES

        if self.calibration not in CHOICES:
            raise ConfigError.invalid("calibration", self.calibration, f"one of {', '.join(CHOICES)}")

    def fit(self, X: Any, y: Any, *, unlabeled: Optional[Sequence[str]] = None) -> "Pipeline":
        """Train the rung on texts ``X`` with labels ``y`` (``unlabeled`` in-domain texts for ``refit``)."""
        from adaptlab.config import Budget
        from adaptlab.data.dataset import TextDataset
        from adaptlab.metrics import resolve_positive_label
        from adaptlab.rungs import RungContext, get_rung

        self._validate_params()
        texts = _check_texts(X)
        y_arr = np.asarray(y)
        if y_arr.ndim == 2 and y_arr.shape[1] == 1:
            y_arr = y_arr[:, 0]
        if y_arr.ndim != 1 or len(y_arr) != len(texts):
            multi = (" A 2-D y is multi-label data, which the shipped pipeline does not handle yet: fit the tfidf or "
                     "probe rung on a multi-label TextDataset instead (docs/guides/multilabel.md).") if y_arr.ndim == 2 else ""
            raise ConfigError(f"y must be one label per text: got {y_arr.shape} labels for {len(texts)} texts.{multi}")
        if len(texts) == 0:
            raise ConfigError("X is empty: fit needs at least two labeled texts per class.")
        if y_arr.dtype.kind == "f" and not np.isfinite(y_arr).all():
            raise ConfigError("y contains NaN or infinite labels; drop those rows or give them a class.")
        classes = np.unique(y_arr)
        if len(classes) < 2:
            raise ConfigError(f"y has only one class ({classes.tolist()!r}); a classifier needs at least 2 classes.")
        names = [str(c) for c in classes]
        if len(set(names)) != len(names):
            raise ConfigError(f"labels {classes.tolist()!r} are not distinct as text; use one label type.")
        to_name = {c: n for c, n in zip(classes.tolist(), names)}
        labels = [to_name[v] for v in y_arr.tolist()]
        rung = get_rung(self.rung, dict(self.rung_params or {}))
        tr, va = _stratified_holdout(labels, float(self.validation_size), int(self.seed))
        if len(va) == 0:
            # Too few texts to hold any out: select on the training texts (reported in fit_info_).
            va = tr
        data = TextDataset(texts=texts, labels=labels)
        train, val = data.subset(tr), data.subset(va)
        encoder = self._load_encoder() if rung.uses_encoder else None
        if encoder is not None and not rung.trains_network and getattr(encoder, "precision", "fp32") == "fp32":
            from adaptlab.encoders.fast import make_encoder

            encoder = make_encoder(encoder, self.precision)
        from adaptlab.encoders import EmbeddingCache

        cache = EmbeddingCache(Path(self.cache).expanduser()) if self.cache is not None and encoder is not None else None
        context = RungContext(
            classes=names, positive_label=resolve_positive_label(names, labels), encoder=encoder, cache=cache,
            unlabeled=TextDataset(texts=_check_texts(unlabeled, "unlabeled")) if unlabeled is not None else None,
            show_progress=bool(self.show_progress), budget=Budget.parse(self.budget), home=self._home(),
        )
        self.fitted_ = rung.fit(train, val, seed=int(self.seed), context=context)
        self.classes_ = classes
        self.encoder_ = encoder
        self.rung_config_ = rung.config.to_dict()
        self.positive_label_ = context.positive_label
        self.val_scores_ = dict(getattr(self.fitted_, "val_scores_", {}) or {})
        # Calibrated on the validation holdout only (never on what the model is later judged on).
        self.calibration_, self.calibration_note_ = self._calibrate(val if va is not tr else None, names)
        cost = getattr(self.fitted_, "cost_", None)
        self.fit_info_ = json_safe({
            "n_texts": len(texts), "n_train": len(tr), "n_validation": len(va) if va is not tr else 0,
            "data_hash": data.content_hash, "label_counts": data.label_counts(),
            "selected": getattr(self.fitted_, "selected_", {}), "val_scores": self.val_scores_,
            "cost": cost.to_dict() if cost is not None else None,
            "diagnostics": getattr(self.fitted_, "diagnostics_", None),
            "n_unlabeled": len(unlabeled) if unlabeled is not None else 0,
            "calibration": self.calibration_note_,
        })
        return self

    def _calibrate(self, val: Any, names: list[str]) -> tuple[Any, str]:
        """The calibration fitted on the validation holdout ``val`` (None without one) and its line."""
        from adaptlab.evaluate.calibration import MIN_TEXTS, fit_calibration

        if self.calibration == "none":
            return None, "uncalibrated: calibration='none' was asked for"
        if val is None or len(val) < MIN_TEXTS:
            return None, (f"uncalibrated: fewer than {MIN_TEXTS} validation texts to fit a calibration on "
                          f"({0 if val is None else len(val)} held out)")
        pos = {n: k for k, n in enumerate(names)}
        proba = np.asarray(self.fitted_.predict_proba(list(val.texts)), dtype=np.float64)
        cal = fit_calibration(proba, np.asarray([pos[v] for v in val.labels]), method=self.calibration,
                              seed=int(self.seed), fitted_on="validation texts")
        if cal is None:
            return None, "uncalibrated: the validation texts hold one class only"
        return cal, "calibrated: " + cal.describe()

    def _home(self) -> Path:
        from adaptlab.config import default_home

        return Path(self.home).expanduser() if self.home is not None else default_home()

    def _load_encoder(self) -> Any:
        from adaptlab.encoders import Encoder

        from adaptlab.encoders.fast import _FrozenVariant

        if isinstance(self.encoder, (Encoder, _FrozenVariant)):  # a retrain keeps the bf16 / int8 encoder it had
            return self.encoder
        return Encoder.from_pretrained(self.encoder, device=self.device)

    # ------------------------------------------------------------------------- predict
    def predict_proba(self, X: Any, *, calibrated: bool = True) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``: calibrated on the validation holdout
        (``calibration_``) unless ``calibrated=False`` or the model has no calibration (``calibrated_``)."""
        check_is_fitted(self, "fitted_")
        proba = np.asarray(self.fitted_.predict_proba(_check_texts(X)), dtype=np.float64)
        cal = getattr(self, "calibration_", None)
        return cal.apply(proba) if calibrated and cal is not None else proba

    @property
    def calibrated_(self) -> bool:
        """Whether :meth:`predict_proba` returns calibrated probabilities."""
        check_is_fitted(self, "fitted_")
        return getattr(self, "calibration_", None) is not None

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each text (calibration never changes it)."""
        check_is_fitted(self, "fitted_")
        return self.classes_[np.argmax(self.predict_proba(X, calibrated=False), axis=1)]

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba` (``-inf`` where a probability is 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    @available_if(_has_linear_head)
    def decision_function(self, X: Any) -> np.ndarray:
        """Scores of the linear head (shape (n,) for two classes, positive = ``classes_[1]``)."""
        check_is_fitted(self, "fitted_")
        head = self.fitted_.head
        scores = head.decision_function(self.fitted_.embed(_check_texts(X)))
        names = [str(c) for c in self.classes_]
        head_names = [str(c) for c in head.classes_]
        if scores.ndim == 1:
            return scores if head_names[1] == names[1] else -scores
        return scores[:, [head_names.index(n) for n in names]]

    def embed(self, X: Any) -> Any:
        """Features the head sees: the encoder's (or tuned encoder's) embeddings, TF-IDF rows for ``tfidf``."""
        check_is_fitted(self, "fitted_")
        return self.fitted_.embed(_check_texts(X))

    @property
    def embedding_fingerprint_(self) -> Optional[str]:
        """Identity of the weights behind :meth:`embed` (None for TF-IDF): embeddings with another
        fingerprint came from another encoder version and must be recomputed before comparing."""
        check_is_fitted(self, "fitted_")
        enc = getattr(self.fitted_, "encoder", None)
        if enc is not None:
            return enc.fingerprint
        model = getattr(self.fitted_, "model", None)
        if model is None:
            return None
        import hashlib

        import torch

        h = hashlib.blake2b(digest_size=16)
        for name, t in sorted(model.backbone.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.input_tags.one_d_array = True
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------------- save / load
    def save(self, directory: PathLike, *, blobs: Optional[PathLike] = None, card: Optional[str] = None,
             extra: Optional[dict[str, Any]] = None) -> Path:
        """Write the fitted pipeline to ``directory`` (safetensors + JSON, no pickle).

        Args:
            directory: Folder to create (must not hold another model).
            blobs: Blob store for large weights (default ``directory/blobs``; a model registry passes its
                shared store so a refit encoder is stored once for every version).
            card: Markdown of the model card (default: one built from what the pipeline knows).
            extra: JSON-safe metadata kept in the manifest (lineage, evaluation, decision).
        """
        from safetensors.numpy import save_file

        check_is_fitted(self, "fitted_")
        out = Path(directory).expanduser()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError.invalid("directory", str(out), "a new or empty folder",
                                      "Choose another path or delete the old model first.")
        store = BlobStore(Path(blobs) if blobs is not None else out / BLOBS)
        state, tensors = export_fitted(self.fitted_, self.rung_config_, store, base_encoder=self.encoder_)
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".saving.", dir=out))
        try:
            save_file(tensors, str(tmp / WEIGHTS))
            manifest = {
                "format": FORMAT,
                "adaptlab_version": _version(),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "rung": self.rung,
                "params": json_safe({k: (v if k != "encoder" or not hasattr(v, "fingerprint") else None)
                                     for k, v in self.get_params().items()}),
                "classes": json_safe(self.classes_.tolist()),
                "class_dtype": str(self.classes_.dtype) if self.classes_.dtype.kind != "U" else "str",
                "positive_label": self.positive_label_,
                "rung_config": json_safe(self.rung_config_),
                "state": json_safe(state),
                "tensors": describe_tensors(tensors),
                "fit": self.fit_info_,
                "extra": json_safe(extra or {}),
                "blobs": "registry" if blobs is not None else "local",
                "files": {WEIGHTS: sha256_file(tmp / WEIGHTS)},
                "calibration": cal.to_dict() if (cal := getattr(self, "calibration_", None)) is not None else None,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            if card is None:
                from adaptlab.ship.card import model_card

                card = model_card(manifest)
            (tmp / CARD).write_text(card, encoding="utf-8")
            for name in _ARTIFACT_FILES:
                os.replace(tmp / name, out / name)
        finally:
            for f in tmp.glob("*"):
                f.unlink()
            tmp.rmdir()
        return out

    save_pretrained = save

    @classmethod
    def load(cls, directory: PathLike, *, device: str = "cpu", blobs: Optional[PathLike] = None) -> "Pipeline":
        """Load a pipeline saved by :meth:`save` after verifying every file (see :func:`load_pipeline`)."""
        return load_pipeline(directory, device=device, blobs=blobs)

    from_pretrained = load


def _version() -> str:
    import adaptlab

    return str(adaptlab.__version__)


def _find_blobs(folder: Path, manifest: dict[str, Any], blobs: Optional[PathLike]) -> BlobStore:
    if blobs is not None:
        return BlobStore(Path(blobs))
    if manifest.get("blobs") == "registry":
        # versions/<id>/ inside a registry: the shared store is two levels up.
        return BlobStore(folder.parent.parent / BLOBS)
    return BlobStore(folder / BLOBS)


def read_manifest(directory: PathLike) -> dict[str, Any]:
    """The manifest of a saved pipeline, after checking the folder holds only what adaptlab wrote.

    Example:
        >>> from adaptlab.ship import Pipeline, read_manifest
        >>> pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(
        ...     ["good film", "great film", "bad film", "awful film"] * 3, ["pos", "pos", "neg", "neg"] * 3)
        >>> manifest = read_manifest(pipe.save("model"))
        >>> manifest["rung"], manifest["classes"]
        ('tfidf', ['neg', 'pos'])
    """
    folder = Path(directory).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"model folder {str(folder)!r} does not exist. Pass the folder given to Pipeline.save "
                          "or `adaptlab ship -o`.")
    path = folder / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{str(folder)!r} is not an adaptlab model: {MANIFEST} is missing.")
    manifest = read_json(path, "model manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise ConfigError(f"{str(path)!r} has format {fmt!r}; this adaptlab reads {FORMAT!r}. "
                          "Re-save the model with this version.")
    unknown = sorted(p.name for p in folder.iterdir() if p.name not in _ARTIFACT_FILES and p.name != BLOBS)
    if unknown:
        raise ConfigError(f"{str(folder)!r} holds files adaptlab did not write: {unknown[:5]}. adaptlab never loads "
                          "unknown files (they could be pickles or code); remove them or re-save the model.")
    required = {"rung", "params", "classes", "state", "tensors", "files"}
    missing = sorted(required - set(manifest))
    if missing:
        raise ConfigError(f"{str(path)!r} lacks {missing}: the manifest was edited. Re-save the model.")
    unknown_keys = sorted(set(manifest) - _MANIFEST_KEYS)
    if unknown_keys:
        raise ConfigError(f"{str(path)!r} has keys adaptlab does not write: {unknown_keys[:5]}. The manifest was "
                          "edited or comes from a newer adaptlab; re-save the model with this version.")
    if set(manifest["files"]) != {WEIGHTS}:
        raise ConfigError(f"{str(path)!r} lists files {sorted(manifest['files'])}, expected only {WEIGHTS}: "
                          "the manifest was edited. Re-save the model.")
    return manifest


def _version_in_use(folder: Path) -> Optional[Path]:
    """The folder of the version in use when ``folder`` is a model registry (``registry.json``, no manifest of
    its own), else None. Read here, not through ``ModelRegistry``, so a pipeline loads without the registry."""
    index = folder / "registry.json"
    if (folder / MANIFEST).is_file() or not index.is_file():
        return None
    try:
        current = json.loads(index.read_text(encoding="utf-8")).get("current")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"cannot read {str(index)!r} ({exc}); it was edited or is from another version.") from exc
    if isinstance(current, str) and (Path(current).name != current or current in (".", "..")):
        current = None  # a version id is a plain folder name; anything else was edited in
    if not isinstance(current, str) or not current:
        raise ConfigError(f"{str(folder)!r} has no version in use; run `adaptlab models rollback {folder} VERSION`.")
    version_dir = folder / "versions" / current
    if not (version_dir / MANIFEST).is_file():
        raise ConfigError(f"{str(folder)!r} says {current} is in use, but {str(version_dir)!r} holds no saved model. "
                          "Copy the whole model folder, or roll back to a version that is there.")
    return version_dir


def load_pipeline(directory: PathLike, *, device: str = "cpu", blobs: Optional[PathLike] = None,
                  precision: Optional[str] = None) -> Pipeline:
    """Load a saved :class:`Pipeline`, refusing anything adaptlab did not write.

    ``precision`` (``auto`` | ``fp32`` | ``bf16`` | ``int8``) is the numeric path of a frozen encoder
    (``probe``): by default the one it was shipped with, where this hardware runs it natively, else fp32
    (:func:`~adaptlab.ship.artifact.load_precision`). ``precision_used_`` and ``precision_note_`` say what it
    runs; a model that trains its encoder runs its own weights in float32 whatever is asked.

    Checks, before building the model: the folder holds only the manifest, the weights file, the card
    and ``blobs/``; the weights' SHA-256 matches the manifest; every tensor has the declared dtype and
    shape; stored encoders/adapters match their own hashes; a referenced encoder package has the
    recorded fingerprint. No pickle is read and no code from the folder is run.

    ``directory`` is a saved pipeline, or a model folder made by ``adaptlab ship`` (a registry of versions):
    then the version in use is loaded, as ``adaptlab predict`` does
    (:func:`~adaptlab.ship.load_model` also picks another version).

    Example:
        >>> from adaptlab.ship import Pipeline, load_pipeline
        >>> pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(
        ...     ["good film", "great film", "bad film", "awful film"] * 3, ["pos", "pos", "neg", "neg"] * 3)
        >>> folder = pipe.save("models/films-v1")
        >>> load_pipeline(folder).predict(["a great film"]).tolist()
        ['pos']
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(directory).expanduser()
    version_dir = _version_in_use(folder)
    if version_dir is not None:
        return load_pipeline(version_dir, device=device, blobs=blobs or folder / BLOBS, precision=precision)
    manifest = read_manifest(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"{str(weights)!r} is missing: copy the whole model folder.")
    if sha256_file(weights) != manifest["files"][WEIGHTS]:
        raise ConfigError(f"{str(weights)!r} was modified after the model was saved (SHA-256 mismatch); adaptlab "
                          "refuses tampered weights. Restore the file or re-save the model.")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {str(weights)!r}: {exc}. Re-save the model.") from exc
    check_tensors(tensors, manifest["tensors"])
    rung = manifest["rung"]
    _check_shippable(rung, "rung in the manifest")
    dtype = manifest.get("class_dtype", "str")
    classes = np.asarray(manifest["classes"], dtype=None if dtype == "str" else dtype)
    names = [str(c) for c in classes]
    store = _find_blobs(folder, manifest, blobs)
    from adaptlab.encoders.fast import REQUESTS

    if precision is not None and precision not in REQUESTS:
        raise ConfigError.invalid("precision", precision, f"one of {', '.join(REQUESTS)}")
    fitted = import_fitted(rung, manifest["state"], tensors, names, store, device=device, precision=precision)
    params = dict(manifest["params"])
    params["device"] = device
    known = set(Pipeline().get_params())
    pipe = Pipeline(**{k: v for k, v in params.items() if k in known})
    pipe.fitted_ = fitted
    pipe.classes_ = classes
    pipe.encoder_ = getattr(fitted, "encoder", None)
    pipe.rung_config_ = manifest.get("rung_config", {})
    pipe.positive_label_ = manifest.get("positive_label")
    pipe.fit_info_ = manifest.get("fit", {})
    pipe.val_scores_ = dict(pipe.fit_info_.get("val_scores") or {})
    pipe.manifest_ = manifest
    pipe.calibration_, pipe.calibration_note_ = _loaded_calibration(manifest)
    pipe.precision_used_, pipe.precision_note_ = _loaded_precision(manifest["state"], rung, precision, device)
    return pipe


def _loaded_calibration(manifest: dict[str, Any]) -> tuple[Any, str]:
    """A loaded model's calibration and its line; a model saved before models carried one says so."""
    from adaptlab.evaluate.calibration import ProbabilityCalibration

    if "calibration" not in manifest:
        return None, (f"uncalibrated: saved by adaptlab {manifest.get('adaptlab_version', '?')}, before shipped models "
                      "carried a calibration (retrain it to get one)")
    stored = manifest["calibration"]
    if stored is None:
        return None, str((manifest.get("fit") or {}).get("calibration") or "uncalibrated")
    cal = ProbabilityCalibration.from_dict(stored)
    return cal, "calibrated: " + cal.describe()


def _loaded_precision(state: dict[str, Any], rung: str, precision: Optional[str],
                      device: str) -> tuple[Optional[str], Optional[str]]:
    """What a loaded model's encoder runs in, and why (None for TF-IDF, which has no encoder)."""
    kind = state.get("kind")
    if kind == "frozen":
        return load_precision(str((state.get("encoder") or {}).get("precision") or "fp32"), precision, device)
    if kind == "network":
        return "fp32", f"fp32: the {rung} model runs its own trained weights"
    return None, None
