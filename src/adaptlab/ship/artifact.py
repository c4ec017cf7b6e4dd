"""Saving and loading fitted rungs without pickle: tensors in safetensors, everything else in JSON.

Each rung family has one exporter/importer pair:

* ``tfidf``: the vectorizer's settings and vocabulary (JSON), its idf weights (safetensors), the head;
* ``probe`` / ``refit`` / ``setfit``: a reference to the encoder (by fingerprint; the refit or
  contrastively tuned encoder is stored as a safetensors folder) and the logistic head;
* network rungs (``unfreeze``, ``finetune``, ``lpft``): the tuned encoder as a blob, the torch head;
* ``lora``: the base encoder's reference, the adapters as a blob (peft's own files), the torch head.

The logistic head is rebuilt as a scikit-learn ``LogisticRegression`` from its coefficients, so its
``predict_proba`` is the same arithmetic as before saving: predictions match bit for bit on CPU.
Encoders that come from an installed package are referenced (package, version, fingerprint) and not
copied; every other encoder (a local folder, a refit, a fine-tune) is stored once in the blob store.
"""
from __future__ import annotations

import copy
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from adaptlab.errors import ConfigError
from adaptlab.ship.blobs import BlobStore
from adaptlab.store.files import sha256_file

# What each stored tensor may look like; anything else in a tensor file is refused.
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


# ----------------------------------------------------------------------------- encoders
def encoder_reference(encoder: Any, blobs: BlobStore, *, store: bool = True) -> dict[str, Any]:
    """JSON reference to an encoder; stores its weights in ``blobs`` unless an installed package ships them.

    ``store=False`` records provenance only (the base a fine-tune started from is not needed to predict).
    A bf16 / int8 encoder (``adaptlab.encoders.fast``) is referenced through its fp32 base plus its
    ``precision`` and conversion ``method``: the conversion is redone on load, so only fp32 weights are stored.
    """
    variant = getattr(encoder, "base", None)
    if variant is not None and getattr(encoder, "precision", "fp32") != "fp32":
        ref = encoder_reference(variant, blobs, store=store)
        ref.update(precision=encoder.precision, method=encoder.method, precision_fingerprint=encoder.fingerprint)
        return ref
    info = encoder.info
    ref = {"fingerprint": encoder.fingerprint, "name": encoder.name, "source": info.get("source"),
           "license": info.get("license"), "dim": encoder.dim, "max_seq_length": encoder.max_seq_length,
           "pooling": encoder.pooling, "normalize": encoder.normalize, "n_parameters": encoder.n_parameters}
    source = str(info.get("source") or "")
    if source.startswith("package "):
        parts = source.split()
        ref.update(stored=False, package=parts[1], package_version=parts[2] if len(parts) > 2 else None)
    elif store:
        blobs.put("encoders", encoder.fingerprint, encoder.save_pretrained)
        ref.update(stored=True, package=None, package_version=None)
    else:
        ref.update(stored=False, package=None, package_version=None, provenance_only=True)
    return ref


def load_precision(shipped: str, requested: Optional[str], device: str) -> tuple[str, str]:
    """The numeric path a loaded frozen encoder runs, and why.

    ``requested`` ``None`` / ``"auto"``: the path the model was shipped (and evaluated) with, where this
    hardware runs it natively; a bf16 model on hardware without native bf16 runs in fp32, the reference
    path its gate compared against (emulated bf16 is several times slower). Anything else is used as asked.

    Example:
        >>> load_precision("int8", None, "cpu")
        ('int8', 'int8, as shipped')
        >>> load_precision("fp32", "bf16", "cpu")
        ('bf16', 'bf16 requested (shipped in fp32)')
    """
    from adaptlab.encoders.fast import native_bf16

    if requested not in (None, "auto"):
        return requested, (f"{requested}, as shipped" if requested == shipped
                           else f"{requested} requested (shipped in {shipped})")
    if shipped == "bf16" and not native_bf16(str(device).split(":")[0]):
        return "fp32", "fp32: shipped in bf16, which this hardware does not run natively"
    return shipped, f"{shipped}, as shipped"


def load_encoder_reference(ref: dict[str, Any], blobs: BlobStore, device: str,
                           precision: Optional[str] = None) -> Any:
    """The encoder a reference names, after checking its fingerprint (and its files' hashes when stored).

    ``precision``: the frozen encoder's numeric path (see :func:`load_precision`)."""
    from adaptlab.encoders import Encoder

    fp = str(ref.get("fingerprint", ""))
    if ref.get("stored"):
        folder = blobs.verify("encoders", fp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            enc = Encoder.from_pretrained(folder, device=device)
        # The folder name is a digest; keep the name the encoder had when the model was saved.
        enc.name = str(ref.get("name") or enc.name)
    else:
        enc = Encoder.from_pretrained(None, device=device)
    if enc.fingerprint != fp:
        wanted = f"{ref.get('package')} {ref.get('package_version')}" if not ref.get("stored") else "the stored copy"
        raise ConfigError(
            f"this model was trained on encoder {ref.get('name')!r} with fingerprint {fp[:12]}..., but the one "
            f"found has fingerprint {enc.fingerprint[:12]}... ({enc.info.get('source')}). Install {wanted} "
            "(pip install the exact version) so predictions match what was evaluated."
        )
    shipped = str(ref.get("precision") or "fp32")
    used, _why = load_precision(shipped, precision, device)
    if used != "fp32":
        from adaptlab.encoders.fast import make_encoder

        enc = make_encoder(enc, used, method=ref.get("method") if used == shipped else None)
    if used == shipped != "fp32":
        if ref.get("precision_fingerprint") and enc.fingerprint != ref["precision_fingerprint"]:
            raise ConfigError(
                f"this model encodes in {used} ({ref.get('method')}), and redoing that conversion here gives "
                f"fingerprint {enc.fingerprint[:12]}... instead of {str(ref['precision_fingerprint'])[:12]}.... "
                "Use the adaptlab version that saved the model."
            )
    return enc


# ----------------------------------------------------------------------------- sklearn parts
def _export_logistic(head: Any, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    state = {"classes": [str(c) for c in head.classes_], "C": float(head.C),
             "class_weight": head.class_weight if isinstance(head.class_weight, (str, type(None))) else None}
    tensors = {f"{prefix}.coef": np.ascontiguousarray(head.coef_), f"{prefix}.intercept": np.ascontiguousarray(head.intercept_)}
    return state, tensors


def _import_logistic(state: dict[str, Any], tensors: dict[str, np.ndarray], prefix: str) -> Any:
    from sklearn.linear_model import LogisticRegression

    coef, intercept = tensors[f"{prefix}.coef"], tensors[f"{prefix}.intercept"]
    classes = np.asarray(state["classes"], dtype=object)
    n_rows = 1 if len(classes) == 2 else len(classes)
    if coef.ndim != 2 or coef.shape[0] != n_rows or intercept.shape != (n_rows,):
        raise ConfigError(f"the head's weights have shape {coef.shape}/{intercept.shape}, which does not fit "
                          f"{len(classes)} classes: the artifact is corrupted. Re-save the model.")
    head = LogisticRegression(C=float(state["C"]), class_weight=state.get("class_weight"))
    head.classes_ = classes
    head.coef_ = coef
    head.intercept_ = intercept
    head.n_features_in_ = int(coef.shape[1])
    head.n_iter_ = np.zeros(1, dtype=np.int32)
    return head


def _export_tfidf(vec: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    state = {"ngram_range": list(vec.ngram_range), "min_df": vec.min_df, "max_features": vec.max_features,
             "sublinear_tf": bool(vec.sublinear_tf), "lowercase": bool(vec.lowercase),
             "vocabulary": {str(k): int(v) for k, v in vec.vocabulary_.items()}}
    return state, {"tfidf.idf": np.ascontiguousarray(vec.idf_)}


def _import_tfidf(state: dict[str, Any], tensors: dict[str, np.ndarray]) -> Any:
    from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer

    vocab = {str(k): int(v) for k, v in state["vocabulary"].items()}
    idf = tensors["tfidf.idf"]
    if idf.shape != (len(vocab),) or sorted(vocab.values()) != list(range(len(vocab))):
        raise ConfigError(f"the TF-IDF vocabulary ({len(vocab)} terms) does not match its idf weights "
                          f"(shape {idf.shape}): the artifact is corrupted. Re-save the model.")
    vec = TfidfVectorizer(ngram_range=tuple(state["ngram_range"]), min_df=state["min_df"],
                          max_features=state["max_features"], sublinear_tf=state["sublinear_tf"],
                          lowercase=state["lowercase"], dtype=np.float32)
    vec.vocabulary_ = vocab
    vec.fixed_vocabulary_ = False
    # TfidfVectorizer keeps its weights in a TfidfTransformer created by fit; rebuild it from idf_.
    vec._tfidf = TfidfTransformer(sublinear_tf=state["sublinear_tf"])
    vec.idf_ = idf
    return vec


# ----------------------------------------------------------------------------- torch parts
def _export_torch_head(model: Any) -> dict[str, np.ndarray]:
    return {f"net.head.{k}": v.detach().cpu().float().numpy().copy() for k, v in model.head.state_dict().items()}


def _build_classifier(backbone: Any, encoder: Any, n_classes: int, state: dict[str, Any]) -> Any:
    from adaptlab.rungs.training import TextClassifier

    kwargs: dict[str, Any] = {"head_dropout": float(state.get("head_dropout", 0.0)),
                              "input_scale": float(state["input_scale"])}
    if state.get("head", "linear") != "linear":
        kwargs.update(head=state["head"], head_hidden=state.get("head_hidden"))
    return TextClassifier(backbone, encoder.pool, encoder.dim, n_classes, **kwargs)


def _load_torch_head(model: Any, tensors: dict[str, np.ndarray]) -> None:
    import torch

    expected = model.head.state_dict()
    got = {k[len("net.head."):]: v for k, v in tensors.items() if k.startswith("net.head.")}
    if set(got) != set(expected):
        raise ConfigError(f"the stored head has parameters {sorted(got)}, the rebuilt head expects "
                          f"{sorted(expected)}: the artifact is corrupted or from another version. Re-save the model.")
    for k, v in got.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ConfigError(f"head parameter {k!r} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}: "
                              "the artifact is corrupted. Re-save the model.")
    model.head.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(expected[k].dtype) for k, v in got.items()})


def _adapter_key(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json")):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- export / import
def export_fitted(fitted: Any, rung_config: dict[str, Any], blobs: BlobStore, base_encoder: Any = None
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(JSON state, tensors) of a fitted rung; large weights go to ``blobs``.

    ``base_encoder`` is the encoder a network rung started from (LoRA adapters sit on it).
    """
    rung = fitted.rung
    if rung == "tfidf":
        vstate, tensors = _export_tfidf(fitted.vectorizer)
        hstate, htensors = _export_logistic(fitted.head, "head")
        return {"kind": "tfidf", "vectorizer": vstate, "head": hstate}, {**tensors, **htensors}
    if rung in ("probe", "refit", "setfit"):
        hstate, tensors = _export_logistic(fitted.head, "head")
        state = {"kind": "frozen", "encoder": encoder_reference(fitted.encoder, blobs), "head": hstate,
                 "batch_size": int(fitted.batch_size)}
        if rung == "setfit" and base_encoder is not None:
            # The contrastively tuned body is the stored encoder; the base it started from is provenance only.
            state["base_encoder"] = encoder_reference(base_encoder, blobs, store=False)
        return state, tensors
    if hasattr(fitted, "model") and hasattr(fitted.model, "head"):
        if base_encoder is None:
            raise ConfigError(f"shipping a {rung} model needs the encoder it was trained from (base_encoder).")
        return _export_network(fitted, rung_config, blobs, base_encoder)
    raise ConfigError(f"rung {rung!r} cannot be shipped yet: adaptlab has no exporter for {type(fitted).__name__}.")


def _export_network(fitted: Any, rung_config: dict[str, Any], blobs: BlobStore, base: Any
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from adaptlab.encoders import Encoder

    model = fitted.model
    state: dict[str, Any] = {
        "kind": "network", "max_length": int(fitted.max_length), "input_scale": float(model.input_scale),
        "head": rung_config.get("head", "linear"), "head_hidden": rung_config.get("head_hidden"),
        "head_dropout": float(rung_config.get("head_dropout", 0.0)),
    }
    if fitted.rung == "lora":
        import shutil
        import tempfile

        # The adapters are written once: hashed where they were saved, then copied into the store.
        with tempfile.TemporaryDirectory() as tmp:
            model.backbone.save_pretrained(tmp)
            key = _adapter_key(Path(tmp))
            blobs.put("adapters", key, lambda d: shutil.copytree(tmp, d, dirs_exist_ok=True))
        state.update(encoder=encoder_reference(base, blobs), adapter=key)
    else:
        tuned = Encoder.from_model(model.backbone, base.tokenizer, name=f"{base.name}-{fitted.rung}",
                                   pooling=base.pooling, normalize=base.normalize,
                                   max_seq_length=base.max_seq_length, do_lower_case=base.do_lower_case)
        state.update(encoder=encoder_reference(tuned, blobs), base_encoder=encoder_reference(base, blobs, store=False))
    return state, _export_torch_head(model)


def import_fitted(rung: str, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                  blobs: BlobStore, *, device: str, precision: Optional[str] = None) -> Any:
    """Rebuild the fitted rung :func:`export_fitted` wrote; ``precision`` is the numeric path of a frozen
    encoder (:func:`load_precision`; a network rung runs its own weights in float32)."""
    kind = state.get("kind")
    if kind == "tfidf":
        from adaptlab.rungs.tfidf import FittedTfidf

        return FittedTfidf(_import_tfidf(state["vectorizer"], tensors), _import_logistic(state["head"], tensors, "head"),
                           classes)
    if kind == "frozen":
        from adaptlab.rungs.probe import FittedProbe

        enc = load_encoder_reference(state["encoder"], blobs, device, precision)
        fitted = FittedProbe(enc, None, _import_logistic(state["head"], tensors, "head"), classes,
                             int(state.get("batch_size", 32)))
        fitted.rung = rung
        return fitted
    if kind == "network":
        return _import_network(rung, state, tensors, classes, blobs, device)
    raise ConfigError(f"unknown model kind {kind!r} in the manifest: the artifact was written by another "
                      "adaptlab version or edited. Re-save the model.")


def _import_network(rung: str, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                    blobs: BlobStore, device: str) -> Any:
    from adaptlab.rungs.training import FittedNetwork

    enc = load_encoder_reference(state["encoder"], blobs, device)
    backbone = enc.model
    if rung == "lora":
        from peft import PeftModel

        folder = blobs.verify("adapters", str(state["adapter"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            backbone = PeftModel.from_pretrained(copy.deepcopy(enc.model), str(folder), is_trainable=False)
    model = _build_classifier(backbone, enc, len(classes), state)
    _load_torch_head(model, tensors)
    model.to(enc.device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return FittedNetwork(rung, model, enc.tokenizer, classes, max_length=int(state["max_length"]))


def check_tensors(tensors: dict[str, np.ndarray], declared: dict[str, Any]) -> None:
    """Refuse tensors that the manifest does not declare, or whose dtype/shape differ from it."""
    if set(tensors) != set(declared):
        extra, missing = sorted(set(tensors) - set(declared)), sorted(set(declared) - set(tensors))
        raise ConfigError(f"the tensor file does not match the manifest (unexpected {extra[:5]}, missing "
                          f"{missing[:5]}): the artifact was edited. Re-save the model.")
    for k, t in tensors.items():
        d = declared[k]
        if str(t.dtype) != d["dtype"] or list(t.shape) != list(d["shape"]) or d["dtype"] not in _FLOAT_DTYPES:
            raise ConfigError(f"tensor {k!r} is {t.dtype}{list(t.shape)}, the manifest says {d['dtype']}{d['shape']}: "
                              "the artifact was edited. Re-save the model.")
        if not np.isfinite(t).all():
            raise ConfigError(f"tensor {k!r} holds NaN or infinite values: the model is broken. Retrain it.")


def describe_tensors(tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in sorted(tensors.items())}


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {exc}. Is this a model saved by adaptlab?") from exc

