"""Saving and loading fitted rungs without pickle: tensors in safetensors, everything else in JSON.

Each rung writes and reads its own artifact (``FittedRung.export_artifact`` / ``Rung.load_artifact`` in
``adaptlab.rungs``), through an :class:`ArtifactKit` that stores encoders and folders content-addressed:
a TF-IDF model as its vocabulary (JSON) and idf weights, a frozen-encoder rung as a reference to its
encoder (by fingerprint; a refit or tuned encoder is stored as a safetensors folder) and its head, a
network rung as its tuned encoder (or the base plus an adapter folder) and its torch head.

The logistic head is rebuilt as a scikit-learn ``LogisticRegression`` from its coefficients, so its
``predict_proba`` is the same arithmetic as before saving: predictions match bit for bit on CPU.
Encoders that come from an installed package are referenced (package, version, fingerprint) and not
copied; every other encoder (a local folder, a refit, a fine-tune) is stored once in the blob store.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from adaptlab.data.dataset import MULTILABEL_WORKS
from adaptlab.errors import ConfigError, DataError
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


# ----------------------------------------------------------------------------- export / import
@dataclass
class ArtifactKit:
    """What a rung's ``export_artifact`` / ``load_artifact`` may use: the blob store (encoders and folders,
    content-addressed), the rung's config, the encoder it started from, and where and how to load.

    Example:
        >>> kit = ArtifactKit(BlobStore("models/news/blobs"), rung_config={"C_grid": [1.0]})  # doctest: +SKIP
        >>> state, tensors = fitted.export_artifact(kit)                                      # doctest: +SKIP
    """

    blobs: BlobStore
    rung_config: dict[str, Any] = field(default_factory=dict)
    base_encoder: Any = None
    device: str = "cpu"
    precision: Optional[str] = None

    def encoder_reference(self, encoder: Any, *, store: bool = True) -> dict[str, Any]:
        """JSON reference to ``encoder`` (see :func:`encoder_reference`)."""
        return encoder_reference(encoder, self.blobs, store=store)

    def load_encoder(self, ref: dict[str, Any], *, frozen: bool = True) -> Any:
        """The encoder ``ref`` names; a frozen one runs in the precision asked for (:func:`load_precision`),
        a network's own weights as shipped."""
        return load_encoder_reference(ref, self.blobs, self.device, self.precision if frozen else None)

    def put_folder(self, kind: str, write: Callable[[str], object]) -> str:
        """Store the folder ``write(path)`` fills under ``blobs/<kind>/<key>``; the key (the SHA-256 of its
        safetensors and JSON files) goes in the manifest."""
        # The folder is written once: hashed where it was saved, then copied into the store.
        with tempfile.TemporaryDirectory() as tmp:
            write(tmp)
            key = _folder_key(Path(tmp))
            self.blobs.put(kind, key, lambda d: shutil.copytree(tmp, d, dirs_exist_ok=True))
        return key

    def folder(self, kind: str, key: str) -> Path:
        """The stored folder ``key``, after checking every file's hash."""
        return self.blobs.verify(kind, key)


def _folder_key(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json")):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def export_fitted(fitted: Any, rung_config: dict[str, Any], blobs: BlobStore, base_encoder: Any = None
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(JSON state, tensors) of a fitted rung, written by the rung itself (``FittedRung.export_artifact``);
    large weights go to ``blobs``. ``base_encoder`` is the encoder the rung started from."""
    if getattr(fitted, "task", "single") == "multilabel":
        raise DataError(
            f"the {getattr(fitted, 'rung', '?')} model was fitted on multi-label data, and shipping a multi-label "
            "model (save, predict, retrain) is not available yet: the shipped pipeline predicts one label per text. "
            f"Fix: use the fitted rung in Python (predict() gives the labels over their validation thresholds, "
            f"thresholds_ holds them); {MULTILABEL_WORKS}."
        )
    return fitted.export_artifact(ArtifactKit(blobs, dict(rung_config or {}), base_encoder))


def import_fitted(rung: str, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                  blobs: BlobStore, *, device: str, precision: Optional[str] = None) -> Any:
    """Rebuild the fitted rung :func:`export_fitted` wrote (``Rung.load_artifact`` of the rung named in the
    manifest); ``precision`` is the numeric path of a frozen encoder (:func:`load_precision`; a network rung
    runs its own weights in float32)."""
    from adaptlab.rungs import RUNGS

    if rung not in RUNGS:
        raise ConfigError.invalid("rung in the manifest", rung, f"one of {', '.join(RUNGS)}")
    if isinstance(state.get("head"), dict) and state["head"].get("task") == "multilabel":
        raise DataError("this shipped model holds a multi-label head, which this version's pipeline cannot run (it "
                        f"predicts one label per text). Fix: {MULTILABEL_WORKS}.")
    return RUNGS[rung].load_artifact(state, tensors, classes, ArtifactKit(blobs, device=device, precision=precision))


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

