"""Fast frozen encoding: bf16 and int8 copies of an `Encoder`, and the accuracy gate that decides whether to use one.

**bf16** (:class:`Bf16Encoder`) casts a copy of the model's weights to bfloat16: every matrix product
runs in bf16 (on CPUs with AVX-512-BF16 or AMX, and on CUDA GPUs since Ampere, natively), while the
pooling and the L2 normalisation stay in float32 (``Encoder.pool`` casts the token states up first) and
the vectors come back as float32. Casting the weights beat ``torch.autocast`` on the 2-core Xeon
(AVX-512-BF16): 6.3 against 6.0 texts/s under load, mean cosine to fp32 0.99995 (``bench/encode.py``
has the full measurement); autocast pays a cast of every weight on every call.


The int8 path is torch dynamic quantisation (`torch.ao.quantization.quantize_dynamic`) of every
``nn.Linear`` with *per-channel* weight scales: weights are stored in int8, activations are quantised
on the fly per batch, everything else (tokenizer, length batching, pooling, normalisation) is the
fp32 encoder's own code. Why this and not ONNX Runtime: it needs no new dependency, no export step
and no second copy of the model on disk; on the 2-core CPU machine it encodes ~2x faster than fp32
(``bench/encode.py``). Per-channel scales matter: on 112 BBC articles, per-tensor int8 gave a mean
cosine of 0.931 to the fp32 vectors (minimum 0.876) against 0.983 (minimum 0.966) per channel, at the
same speed.

Both change the vectors, so each has its own ``fingerprint`` (the base's plus the method) and
``precision`` (``"bf16"``, ``"int8"``); `embed` keys the cache by both, so vectors of two precisions
never mix. Whether a study may use one is decided by :func:`choose_precision` from validation F1, never
assumed; ``"auto"`` asks for bf16 where the hardware runs it natively (:func:`native_bf16`) and fp32
elsewhere.

Example:
    >>> from adaptlab.encoders import Encoder
    >>> base = Encoder.from_pretrained()                       # doctest: +SKIP
    >>> fast = Int8Encoder(base)                               # doctest: +SKIP
    >>> fast.encode(["rates rise again"]).shape, fast.precision  # doctest: +SKIP
    ((1, 384), 'int8')
"""
from __future__ import annotations

import copy
import functools
import hashlib
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from adaptlab.errors import ConfigError

INT8_METHOD = "torch-dynamic-qint8-per-channel-linear-v1"
BF16_METHOD = "torch-bf16-weights-fp32-pooling-v1"
# The numeric paths an encoder can run; "auto" is a request that resolves to one of them.
PRECISIONS = ("fp32", "bf16", "int8")
REQUESTS = ("fp32", "bf16", "int8", "auto")

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


class _PackedLinear(torch.nn.Module):
    """A bf16 ``nn.Linear`` whose weight oneDNN has reordered once for its kernels, optionally fused with GELU.

    ``F.linear`` on a bf16 CPU tensor reorders the weight on every call; doing it once, and folding the
    exact (erf) GELU of a BERT intermediate layer into the same kernel, made the bf16 encoder ~1.3x faster
    on the 2-core EPYC (AVX-512-BF16), in CPU time per text, with the same vectors to bf16 round-off.
    """

    def __init__(self, linear: torch.nn.Linear, act: str = "none") -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.act = act
        self._packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]), self._packed, self.bias, self.act, [],
                                               "none" if self.act == "gelu" else "")
        return y.reshape(*shape[:-1], self.out_features)


def _pack_onednn(model: torch.nn.Module) -> torch.nn.Module:
    """Swap the bf16 Linear layers of ``model`` (on CPU) for :class:`_PackedLinear`, GELU fused where BERT has it."""
    for mod in list(model.modules()):
        act = getattr(mod, "intermediate_act_fn", None)
        dense = getattr(mod, "dense", None)
        # transformers' "gelu" (GELUActivation) is the exact erf GELU, which oneDNN's "gelu"/"none" computes.
        if type(dense) is torch.nn.Linear and type(act).__name__ == "GELUActivation" and \
                getattr(act, "act", None) is torch.nn.functional.gelu:
            mod.dense, mod.intermediate_act_fn = _PackedLinear(dense, "gelu"), torch.nn.Identity()
    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(mod, name, _PackedLinear(child))
    return model


def cast_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with its floating-point weights in bfloat16; ``model`` itself is not changed.

    On a CPU with native bf16 the Linear layers also get oneDNN-packed weights (:class:`_PackedLinear`);
    the pooler head, which sentence embeddings never read, is dropped.
    """
    work = copy.deepcopy(model).to(torch.bfloat16).eval()
    if getattr(work, "pooler", None) is not None:
        work.pooler = None  # BertModel skips it when None; encode pools the token states itself
    on_cpu = all(p.device.type == "cpu" for p in work.parameters())
    if on_cpu and native_bf16("cpu") and torch.backends.mkldnn.is_available():
        try:
            return _pack_onednn(work)
        except (AttributeError, RuntimeError):  # pragma: no cover - a torch build without these oneDNN ops
            return copy.deepcopy(model).to(torch.bfloat16).eval()
    return work


#: Texts in each of the precision gate's train and validation samples (a study draws them stratified).
GATE_MAX_TEXTS = 512

#: Environment variable that overrides :func:`native_bf16`'s detection ("0" or "1").
NATIVE_BF16_ENV = "ADAPTLAB_NATIVE_BF16"


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware: a CUDA GPU with bf16 (Ampere and later),
    or a CPU with AVX-512-BF16 or AMX-BF16. Elsewhere bf16 is emulated and slower than fp32.

    ``ADAPTLAB_NATIVE_BF16=0`` (or ``1``) overrides the detection: a machine whose bf16 path is slow or
    suspect can be kept on fp32 under ``auto`` without changing any study file, and a test suite can mean the
    same on every CPU.

    Example:
        >>> isinstance(native_bf16("cpu"), bool)
        True
    """
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ConfigError.invalid(NATIVE_BF16_ENV, forced, "0 (no native bf16) or 1 (native bf16), or unset")
    if str(device).startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    flags = _cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    try:  # no /proc/cpuinfo: ask oneDNN
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - depends on the torch build
        return False


def resolve_precision(precision: str, device: str = "cpu") -> tuple[str, str]:
    """The precision a request means on ``device`` and why: ``"auto"`` is bf16 where native, else fp32.

    Example:
        >>> resolve_precision("int8")
        ('int8', 'int8 requested')
    """
    if precision not in REQUESTS:
        raise ConfigError.invalid("encode_precision", precision, f"one of {', '.join(REQUESTS)}")
    if precision != "auto":
        return precision, f"{precision} requested"
    where = "this GPU" if str(device).startswith("cuda") else "this CPU"
    if native_bf16(device):
        return "bf16", f"auto: {where} runs bf16 natively"
    return "fp32", (f"auto: {where} has no native bf16 (no AVX-512-BF16 or AMX on a CPU; a GPU before Ampere), "
                    "where bf16 is emulated and slower, so fp32")


class _FrozenVariant:
    """A frozen `Encoder` run along another numeric path; reads like an `Encoder` for `embed` and the probe.

    Subclasses build ``self._inner`` (an `Encoder` around the converted model) and ``self._fingerprint``.
    """

    precision = "fp32"
    _tag = b""

    def _wrap(self, base: Any, model: torch.nn.Module, method: str, device: str) -> None:
        from adaptlab.encoders.encoder import Encoder

        self.base = base
        self.method = method
        self._inner = Encoder.from_model(
            model, base.tokenizer, name=f"{base.name} [{self.precision}]", pooling=base.pooling,
            normalize=base.normalize, max_seq_length=base.max_seq_length, do_lower_case=base.do_lower_case,
            device=device,
        )
        h = hashlib.blake2b(digest_size=16)
        h.update(self._tag)
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
        return self._inner.device

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

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: Optional[bool] = None) -> np.ndarray:
        """Embed ``texts`` like :meth:`Encoder.encode` (float32 vectors), along this path's matrix products."""
        return self._inner.encode(texts, batch_size=batch_size, show_progress=show_progress)

    def encode_ids(self, ids: Sequence[Sequence[int]], *, batch_size: int = 32,
                   show_progress: Optional[bool] = None) -> np.ndarray:
        """Embed token-id sequences like :meth:`Encoder.encode_ids`, along this path's matrix products."""
        return self._inner.encode_ids(ids, batch_size=batch_size, show_progress=show_progress)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base={self.base!r}, method={self.method!r})"


class Int8Encoder(_FrozenVariant):
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
    _tag = b"adaptlab-int8-encoder-v1|"

    def __init__(self, base: Any, *, quantizer: Optional[Quantizer] = None, method: Optional[str] = None) -> None:
        if str(getattr(base, "device", "cpu")) != "cpu":
            raise ConfigError.invalid(
                "encode_precision", "int8", "fp32 or bf16 on a GPU",
                f"int8 dynamic quantisation runs on CPU only and the encoder is on {base.device}; "
                "a GPU encodes fp32 faster than a CPU encodes int8.",
            )
        if quantizer is None:
            quantizer, method = quantize_dynamic_int8, method or INT8_METHOD
        elif method is None:
            method = f"custom:{getattr(quantizer, '__module__', '?')}.{getattr(quantizer, '__qualname__', repr(quantizer))}"
        self._wrap(base, quantizer(base.model), method, "cpu")

    @property
    def info(self) -> dict[str, Any]:
        return {**self.base.info, "precision": "int8", "quantization": self.method,
                "base_fingerprint": self.base.fingerprint}

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Built-in quantisation is a deterministic function of the fp32 weights: ship the base and
        # quantise again on arrival (Ray workers) rather than pickling both models.
        if self.method == INT8_METHOD:
            return (Int8Encoder, (self.base,))
        return object.__reduce_ex__(self, protocol)


class Bf16Encoder(_FrozenVariant):
    """A frozen `Encoder` whose weights are bfloat16, pooling and normalisation float32; on its base's device.

    Args:
        base: The fp32 :class:`~adaptlab.encoders.Encoder` (not modified).
        caster: ``model -> bf16 copy``; default :func:`cast_bf16`. Tests inject a degraded one to
            exercise the accuracy gate.
        method: Name of the conversion, part of the fingerprint.

    Attributes:
        precision: ``"bf16"``.
        base: The fp32 encoder.
        fingerprint: Hash of the base fingerprint and ``method``: cached vectors never mix with fp32 ones.

    Example:
        >>> fast = Bf16Encoder(Encoder.from_pretrained("minilm", device="cpu"))   # doctest: +SKIP
        >>> fast.encode(["rates rise again"]).dtype, fast.precision                # doctest: +SKIP
        (dtype('float32'), 'bf16')
    """

    precision = "bf16"
    _tag = b"adaptlab-bf16-encoder-v1|"

    def __init__(self, base: Any, *, caster: Optional[Quantizer] = None, method: Optional[str] = None) -> None:
        if caster is None:
            caster, method = cast_bf16, method or BF16_METHOD
        elif method is None:
            method = f"custom:{getattr(caster, '__module__', '?')}.{getattr(caster, '__qualname__', repr(caster))}"
        self._wrap(base, caster(base.model), method, str(getattr(base, "device", "cpu")))

    @property
    def info(self) -> dict[str, Any]:
        return {**self.base.info, "precision": "bf16", "conversion": self.method,
                "base_fingerprint": self.base.fingerprint}

    def __reduce_ex__(self, protocol: Any) -> Any:
        # The cast is a deterministic function of the fp32 weights: ship the base only.
        if self.method == BF16_METHOD:
            return (Bf16Encoder, (self.base,))
        return object.__reduce_ex__(self, protocol)


def precision_of(encoder: Any) -> str:
    """``"bf16"`` / ``"int8"`` for a :class:`Bf16Encoder` / :class:`Int8Encoder`, ``"fp32"`` for a plain encoder."""
    return str(getattr(encoder, "precision", "fp32"))


@dataclass
class PrecisionChoice:
    """What the gate decided: the precision asked for, the one used, and the evidence.

    ``fp32_f1`` / ``candidate_f1`` are validation F1 of the same probe head fitted on the fp32 path's
    and the candidate path's vectors (``None`` when the gate did not run); ``candidate`` names the path
    checked (``"bf16"``, ``"int8"``; ``"auto"`` resolves to one first); ``message`` says it in one sentence.
    """

    requested: str
    used: str
    tolerance: float
    fp32_f1: Optional[float] = None
    candidate_f1: Optional[float] = None
    method: Optional[str] = None
    message: str = ""
    candidate: Optional[str] = None

    @property
    def fell_back(self) -> bool:
        # A path was tried (or could not be built) and fp32 used instead. "auto" that resolved to fp32 (no
        # native bf16) or whose bf16 was accepted is what was asked for, not a fall-back.
        if self.requested == "auto":
            return self.candidate is not None and self.used == "fp32"
        return self.requested != self.used

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "fell_back": self.fell_back}
        if self.candidate:
            out[f"{self.candidate}_f1"] = self.candidate_f1  # e.g. "int8_f1", the key results stored before bf16
        return out


def _variant(encoder: Any, precision: str, quantizer: Optional[Quantizer], method: Optional[str]) -> Any:
    if precision == "int8":
        return Int8Encoder(encoder, quantizer=quantizer, method=method)
    return Bf16Encoder(encoder, caster=quantizer, method=method)


def choose_precision(
    encoder: Any,
    precision: str,
    *,
    validation_f1: Callable[[Any], float],
    tolerance: float = 0.005,
    quantizer: Optional[Quantizer] = None,
    method: Optional[str] = None,
) -> tuple[Any, PrecisionChoice]:
    """The encoder to use for frozen encoding and why: bf16 or int8 only if it costs at most ``tolerance`` F1.

    Args:
        encoder: The fp32 encoder.
        precision: ``"fp32"`` (returned as is, no gate), ``"bf16"``, ``"int8"`` or ``"auto"`` (bf16
            where the encoder's device runs it natively, see :func:`native_bf16`; else fp32, no gate).
        validation_f1: ``encoder -> validation F1`` of the study's head on that encoder's vectors
            (the study fits the probe head on the first seed's train split, scores its validation; each
            a stratified sample of at most :data:`GATE_MAX_TEXTS` texts, the same for both paths).
        tolerance: Largest accepted drop, as a fraction (0.005 = 0.5 F1 points). A candidate path
            that scores higher than fp32 is accepted.
        quantizer, method: The conversion (``model -> converted copy``) and its name, passed to
            :class:`Int8Encoder` (``quantizer``) or :class:`Bf16Encoder` (``caster``).

    Example:
        >>> enc, choice = choose_precision(base, "int8", validation_f1=probe_val_f1)   # doctest: +SKIP
        >>> choice.message                                                            # doctest: +SKIP
        'int8 accepted: validation F1 0.9688 vs fp32 0.9716 (-0.28 points; tolerance 0.50 points)'
    """
    target, why = resolve_precision(precision, str(getattr(encoder, "device", "cpu")))
    if target == "fp32":
        msg = "fp32 (full precision) requested" if precision == "fp32" else why
        return encoder, PrecisionChoice(precision, "fp32", tolerance, message=msg)
    prefix = f"{why}; " if precision == "auto" else ""
    try:
        fast = _variant(encoder, target, quantizer, method)
    except ConfigError as exc:
        return encoder, PrecisionChoice(precision, "fp32", tolerance, candidate=target,
                                        message=f"{prefix}{target} unavailable, using fp32: {exc}")
    f32 = float(validation_f1(encoder))
    fx = float(validation_f1(fast))
    drop = f32 - fx
    points = f"validation F1 {fx:.4f} vs fp32 {f32:.4f} ({-drop * 100:+.2f} points; tolerance {tolerance * 100:.2f} points)"
    # A hair of slack so that equal scores computed in different orders are never rejected.
    if drop <= tolerance + 1e-12:
        return fast, PrecisionChoice(precision, target, tolerance, f32, fx, fast.method,
                                     f"{prefix}{target} accepted: {points}", target)
    return encoder, PrecisionChoice(
        precision, "fp32", tolerance, f32, fx, fast.method,
        f"{prefix}{target} rejected, falling back to fp32: {points}. Raise precision_tolerance "
        "(--precision-tolerance) to accept the loss.", target,
    )


def make_encoder(encoder: Any, precision: str, *, method: Optional[str] = None) -> Any:
    """The encoder for ``precision`` without a gate (workers rebuilding what the driver chose; `predict`,
    `drift`, `neighbors`). ``"auto"`` resolves by :func:`native_bf16` on the encoder's device.

    Example:
        >>> make_encoder(base, "bf16").precision                 # doctest: +SKIP
        'bf16'
    """
    target, _ = resolve_precision(precision, str(getattr(encoder, "device", "cpu")))
    if target == "fp32":
        return encoder
    builtin = INT8_METHOD if target == "int8" else BF16_METHOD
    if method not in (None, builtin):
        raise ConfigError.invalid(f"{target} method", method, f"{builtin!r} (the only built-in {target} path)")
    return Int8Encoder(encoder) if target == "int8" else Bf16Encoder(encoder)


__all__ = ["BF16_METHOD", "GATE_MAX_TEXTS", "INT8_METHOD", "NATIVE_BF16_ENV", "PRECISIONS", "REQUESTS", "Bf16Encoder",
           "Int8Encoder", "PrecisionChoice", "cast_bf16", "choose_precision", "make_encoder", "native_bf16",
           "precision_of", "quantize_dynamic_int8", "resolve_precision"]
