"""Fast frozen encoding: an int8 copy of an `Encoder`, and the accuracy gate that decides whether to use it.

The int8 path is torch dynamic quantisation (`torch.ao.quantization.quantize_dynamic`) of every
``nn.Linear`` with *per-channel* weight scales: weights are stored in int8, activations are quantised
on the fly per batch, everything else (tokenizer, length batching, pooling, normalisation) is the
fp32 encoder's own code. Why this and not ONNX Runtime: it needs no new dependency, no export step
and no second copy of the model on disk; on the 2-core CPU machine it encodes ~2x faster than fp32
(``bench/encode.py``). Per-channel scales matter: on 112 BBC articles, per-tensor int8 gave a mean
cosine of 0.931 to the fp32 vectors (minimum 0.876) against 0.983 (minimum 0.966) per channel, at the
same speed.

Quantisation changes the vectors, so an int8 encoder has its own ``fingerprint`` (the base's plus the
method) and ``precision = "int8"``; `embed` keys the cache by both, so int8 and fp32 vectors never mix.
Whether a study may use int8 is decided by :func:`choose_precision` from validation F1, never assumed.

Example:
    >>> from adaptlab.encoders import Encoder
    >>> base = Encoder.from_pretrained()                       # doctest: +SKIP
    >>> fast = Int8Encoder(base)                               # doctest: +SKIP
    >>> fast.encode(["rates rise again"]).shape, fast.precision  # doctest: +SKIP
    ((1, 384), 'int8')
"""
from __future__ import annotations

import copy
import hashlib
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from adaptlab.errors import ConfigError

INT8_METHOD = "torch-dynamic-qint8-per-channel-linear-v1"
PRECISIONS = ("fp32", "int8")

Quantizer = Callable[[torch.nn.Module], torch.nn.Module]


def quantize_dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A dynamically quantised (int8, per-channel) copy of ``model``; ``model`` itself is not changed.

    Raises:
        ConfigError: this torch build has no eager-mode dynamic quantisation.
    """
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as exc:  # pragma: no cover - depends on the torch build
        raise ConfigError(
            f"encode_precision='int8' needs torch.ao.quantization.quantize_dynamic, which torch {torch.__version__} "
            "does not provide. Use encode_precision='fp32' (--precision fp32)."
        ) from exc
    work = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        # torch marks eager-mode quantisation as deprecated in favour of torchao; it still works and
        # the warning would be printed on every study.
        warnings.simplefilter("ignore")
        return quantize_dynamic(work, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


class Int8Encoder:
    """A frozen `Encoder` with int8 Linear layers, on CPU; drop-in for `embed` and the probe rung.

    Args:
        base: The fp32 :class:`~adaptlab.encoders.Encoder` (not modified).
        quantizer: ``model -> quantised copy``; default :func:`quantize_dynamic_int8`. Tests inject a
            degraded one to exercise the accuracy gate.
        method: Name of the quantisation, part of the fingerprint; required with a custom ``quantizer``
            unless the function's qualified name is enough.

    Attributes:
        precision: ``"int8"``.
        base: The fp32 encoder.
        fingerprint: Hash of the base fingerprint and ``method``: cached vectors never mix with fp32 ones.

    Example:
        >>> fast = Int8Encoder(Encoder.from_pretrained("minilm", device="cpu"))   # doctest: +SKIP
        >>> fast.fingerprint != fast.base.fingerprint                              # doctest: +SKIP
        True
    """

    precision = "int8"

    def __init__(self, base: Any, *, quantizer: Optional[Quantizer] = None, method: Optional[str] = None) -> None:
        from adaptlab.encoders.encoder import Encoder

        if str(getattr(base, "device", "cpu")) != "cpu":
            raise ConfigError.invalid(
                "encode_precision", "int8", "fp32 on a GPU",
                f"int8 dynamic quantisation runs on CPU only and the encoder is on {base.device}; "
                "a GPU encodes fp32 faster than a CPU encodes int8.",
            )
        if quantizer is None:
            quantizer, method = quantize_dynamic_int8, method or INT8_METHOD
        elif method is None:
            method = f"custom:{getattr(quantizer, '__module__', '?')}.{getattr(quantizer, '__qualname__', repr(quantizer))}"
        self.base = base
        self.method = method
        qmodel = quantizer(base.model)
        self._inner = Encoder.from_model(
            qmodel, base.tokenizer, name=f"{base.name} [int8]", pooling=base.pooling, normalize=base.normalize,
            max_seq_length=base.max_seq_length, do_lower_case=base.do_lower_case, device="cpu",
        )
        h = hashlib.blake2b(digest_size=16)
        h.update(b"adaptlab-int8-encoder-v1|")
        h.update(base.fingerprint.encode())
        h.update(b"|" + method.encode())
        self._fingerprint = h.hexdigest()

    # The attributes `embed`, the probe rung and the study read from an encoder.
    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def path(self) -> Any:
        return self.base.path

    @property
    def tokenizer(self) -> Any:
        return self.base.tokenizer

    @property
    def model(self) -> torch.nn.Module:
        return self._inner.model

    @property
    def max_seq_length(self) -> int:
        return self.base.max_seq_length

    @property
    def pooling(self) -> str:
        return self.base.pooling

    @property
    def normalize(self) -> bool:
        return self.base.normalize

    @property
    def do_lower_case(self) -> bool:
        return self.base.do_lower_case

    @property
    def n_parameters(self) -> int:
        return self.base.n_parameters

    @property
    def info(self) -> dict[str, Any]:
        return {**self.base.info, "precision": "int8", "quantization": self.method,
                "base_fingerprint": self.base.fingerprint}

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: Optional[bool] = None) -> np.ndarray:
        """Embed ``texts`` like :meth:`Encoder.encode`, with int8 matrix products."""
        return self._inner.encode(texts, batch_size=batch_size, show_progress=show_progress)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Built-in quantisation is a deterministic function of the fp32 weights: ship the base and
        # quantise again on arrival (Ray workers) rather than pickling both models.
        if self.method == INT8_METHOD:
            return (Int8Encoder, (self.base,))
        return object.__reduce_ex__(self, protocol)

    def __repr__(self) -> str:
        return f"Int8Encoder(base={self.base!r}, method={self.method!r})"


def precision_of(encoder: Any) -> str:
    """``"int8"`` for an :class:`Int8Encoder`, ``"fp32"`` for a plain encoder."""
    return str(getattr(encoder, "precision", "fp32"))


@dataclass
class PrecisionChoice:
    """What the gate decided: the precision asked for, the one used, and the evidence.

    ``fp32_f1`` / ``int8_f1`` are validation F1 of the same probe head fitted on each path's vectors
    (``None`` when the gate did not run); ``message`` says it in one sentence.
    """

    requested: str
    used: str
    tolerance: float
    fp32_f1: Optional[float] = None
    int8_f1: Optional[float] = None
    method: Optional[str] = None
    message: str = ""

    @property
    def fell_back(self) -> bool:
        return self.requested != self.used

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fell_back": self.fell_back}


def choose_precision(
    encoder: Any,
    precision: str,
    *,
    validation_f1: Callable[[Any], float],
    tolerance: float = 0.005,
    quantizer: Optional[Quantizer] = None,
    method: Optional[str] = None,
) -> tuple[Any, PrecisionChoice]:
    """The encoder to use for frozen encoding and why: int8 only if it costs at most ``tolerance`` F1.

    Args:
        encoder: The fp32 encoder.
        precision: ``"fp32"`` (returned as is, no gate) or ``"int8"``.
        validation_f1: ``encoder -> validation F1`` of the study's head on that encoder's vectors
            (the study fits the probe head on the first seed's train split, scores its validation).
        tolerance: Largest accepted drop, as a fraction (0.005 = 0.5 F1 points). An int8 path that
            scores higher than fp32 is accepted.
        quantizer, method: Passed to :class:`Int8Encoder`.

    Example:
        >>> enc, choice = choose_precision(base, "int8", validation_f1=probe_val_f1)   # doctest: +SKIP
        >>> choice.message                                                            # doctest: +SKIP
        'int8 accepted: validation F1 0.9688 vs fp32 0.9716 (-0.28 points; tolerance 0.50 points)'
    """
    if precision not in PRECISIONS:
        raise ConfigError.invalid("encode_precision", precision, f"one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return encoder, PrecisionChoice("fp32", "fp32", tolerance, message="fp32 (full precision) requested")
    try:
        fast = Int8Encoder(encoder, quantizer=quantizer, method=method)
    except ConfigError as exc:
        return encoder, PrecisionChoice("int8", "fp32", tolerance, message=f"int8 unavailable, using fp32: {exc}")
    f32 = float(validation_f1(encoder))
    f8 = float(validation_f1(fast))
    drop = f32 - f8
    points = f"validation F1 {f8:.4f} vs fp32 {f32:.4f} ({-drop * 100:+.2f} points; tolerance {tolerance * 100:.2f} points)"
    # A hair of slack so that equal scores computed in different orders are never rejected.
    if drop <= tolerance + 1e-12:
        return fast, PrecisionChoice("int8", "int8", tolerance, f32, f8, fast.method, f"int8 accepted: {points}")
    return encoder, PrecisionChoice(
        "int8", "fp32", tolerance, f32, f8, fast.method,
        f"int8 rejected, falling back to fp32: {points}. Raise int8_tolerance (--int8-tolerance) to accept the loss.",
    )


def make_encoder(encoder: Any, precision: str, *, method: Optional[str] = None) -> Any:
    """The encoder for ``precision`` without a gate (used by workers to rebuild what the driver chose)."""
    if precision == "fp32":
        return encoder
    if precision == "int8":
        if method not in (None, INT8_METHOD):
            raise ConfigError.invalid("int8 method", method, f"{INT8_METHOD!r} (the only built-in quantizer)")
        return Int8Encoder(encoder)
    raise ConfigError.invalid("encode_precision", precision, f"one of {', '.join(PRECISIONS)}")


__all__ = ["INT8_METHOD", "Int8Encoder", "PrecisionChoice", "choose_precision", "make_encoder", "precision_of",
           "quantize_dynamic_int8"]
