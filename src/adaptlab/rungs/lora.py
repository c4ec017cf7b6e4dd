"""`lora`: low-rank adapters (Hugging Face ``peft``) on the encoder's attention projections + a head.

The ladder's "smaller adaptation surface": the pretrained weights stay frozen (bit-identical) and each
targeted projection learns a low-rank update ``B A`` (rank ``r``, scaled by ``alpha / r``). Only the
adapters and the head train, typically well under 1% of the parameters, so the saved adapter is small
and loads back onto the unchanged base encoder. The head (``head="linear"`` or ``"mlp"``) is saved
beside the adapters as safetensors, its kind and width in ``head_config.json``.

Example:
    >>> fitted = get_rung("lora", {"r": 8}).fit(train, val, seed=0, context=ctx)  # doctest: +SKIP
    >>> fitted.save_pretrained("adapters/run-0")                                  # doctest: +SKIP
    >>> again = FittedLora.from_pretrained("adapters/run-0", encoder=ctx.encoder)  # doctest: +SKIP
    >>> (again.predict_proba(texts) == fitted.predict_proba(texts)).all()         # doctest: +SKIP
    True
"""
from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence, Union

import numpy as np
from torch import nn

from adaptlab.errors import ConfigError
from adaptlab.rungs.base import Cost, RungContext, register_rung
from adaptlab.rungs.training import (
    FittedNetwork,
    NetworkRung,
    Stage,
    TextClassifier,
    TrainingConfig,
    load_network,
)
from adaptlab.values import is_int, is_number

HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head_config.json"
# v2 adds the head's kind ("linear" | "mlp") and its state-dict names; v1 folders hold a linear head.
HEAD_FORMAT = "adaptlab-lora-head-v2"
HEAD_FORMATS = ("adaptlab-lora-head-v1", HEAD_FORMAT)


@dataclass
class LoraConfig(TrainingConfig):
    """LoRA adapters on the attention projections (and optionally dense/MLP layers) + a head.

    Example:
        >>> from adaptlab.rungs import LoraConfig
        >>> cfg = LoraConfig(r=4, alpha=8.0)
        >>> cfg.r, cfg.alpha, cfg.backbone_lr, cfg.rung_name
        (4, 8.0, 0.0005, 'lora')
    """

    rung_name: ClassVar[str] = "lora"

    backbone_lr: float = field(default=5e-4, metadata={"help": "learning rate of the LoRA adapters"})
    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA scaling numerator (the update is scaled by alpha / r)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the adapters' input"})
    target_modules: list[str] = field(
        default_factory=lambda: ["query", "key", "value"],
        metadata={"help": "module names that get adapters; add 'dense' for the attention output and MLP layers"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not is_int(self.r) or self.r < 1:
            raise ConfigError.invalid("lora.r", self.r, "an integer >= 1, e.g. 8")
        if not is_number(self.alpha) or self.alpha <= 0:
            raise ConfigError.invalid("lora.alpha", self.alpha, "a positive number, e.g. 16")
        if not is_number(self.dropout) or not 0 <= self.dropout < 1:
            raise ConfigError.invalid("lora.dropout", self.dropout, "a probability in [0, 1)")
        if (isinstance(self.target_modules, str) or not self.target_modules
                or not all(isinstance(m, str) and m for m in self.target_modules)):
            raise ConfigError.invalid("lora.target_modules", self.target_modules,
                                      "a non-empty list of module names, e.g. ['query', 'key', 'value']")


def _peft_config(cfg: LoraConfig) -> Any:
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=list(cfg.target_modules), bias="none", task_type="FEATURE_EXTRACTION")


def _check_targets(backbone: nn.Module, targets: Sequence[str]) -> None:
    leaves = {name.rsplit(".", 1)[-1] for name, m in backbone.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in targets if t not in leaves]
    if missing:
        raise ConfigError.invalid(
            "lora.target_modules", list(targets),
            f"names of Linear layers of this encoder ({', '.join(sorted(leaves))})",
            f"{missing} match no layer.",
        )


class FittedLora(FittedNetwork):
    """A trained LoRA rung; saves as a small adapter folder that loads back onto the base encoder.

    Example:
        >>> from adaptlab.rungs import FittedLora, get_rung
        >>> fitted = get_rung("lora", {"r": 8}).fit(train, val, seed=0, context=context)  # doctest: +SKIP
        >>> fitted.save_pretrained("adapters/run-0")                                    # doctest: +SKIP
        >>> again = FittedLora.from_pretrained("adapters/run-0", encoder=context.encoder)  # doctest: +SKIP
        >>> bool((again.predict_proba(texts) == fitted.predict_proba(texts)).all())        # doctest: +SKIP
        True
    """

    def __init__(self, model: TextClassifier, tokenizer: Any, classes: Sequence[str], *, max_length: int,
                 encoder_fingerprint: str, config: dict[str, Any], pooling: dict[str, Any]) -> None:
        super().__init__("lora", model, tokenizer, classes, max_length=max_length)
        self.encoder_fingerprint = encoder_fingerprint
        self.config = config
        self.pooling = pooling

    @property
    def n_adapter_parameters(self) -> int:
        """Parameters of the LoRA adapters (the head not included)."""
        return int(sum(p.numel() for n, p in self.model.backbone.named_parameters() if "lora_" in n))

    def save_pretrained(self, save_directory: Union[str, Path]) -> Path:
        """Write the adapters (peft's ``adapter_model.safetensors`` + ``adapter_config.json``) and the
        head (``head.safetensors`` + ``head_config.json``): no base weights, no pickle."""
        from safetensors.torch import save_file

        out = Path(save_directory).expanduser()
        if out.exists() and not out.is_dir():
            raise ConfigError.invalid("save_directory", str(out), "a folder path", "It names an existing file.")
        out.mkdir(parents=True, exist_ok=True)
        self.model.backbone.save_pretrained(str(out))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.model.head.state_dict().items()},
                  str(out / HEAD_WEIGHTS))
        meta = {
            "format": HEAD_FORMAT,
            "head": self.model.head_config,
            "classes": [str(c) for c in self.classes_],
            "dim": int(self.model.dim),
            "max_length": self.max_length,
            "input_scale": self.model.input_scale,
            "encoder_fingerprint": self.encoder_fingerprint,
            "pooling": self.pooling,
            "rung_config": self.config,
            "selected": getattr(self, "selected_", None),
            "val_scores": getattr(self, "val_scores_", None),
        }
        (out / HEAD_CONFIG).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
        return out

    @classmethod
    def from_pretrained(cls, save_directory: Union[str, Path], encoder: Any = None, *,
                        device: Optional[str] = None) -> "FittedLora":
        """Load adapters + head saved by :meth:`save_pretrained` onto the base ``encoder``.

        Args:
            save_directory: The folder written by :meth:`save_pretrained`.
            encoder: The base encoder the adapters were trained on: an ``Encoder``, a folder path, or
                ``None`` for the packaged all-MiniLM-L6-v2. It is not modified (the adapters go on a copy).
            device: Where to run (default: the encoder's device).
        """
        from peft import PeftModel
        from safetensors.torch import load_file

        from adaptlab.encoders import Encoder

        folder = Path(save_directory).expanduser()
        meta_file = folder / HEAD_CONFIG
        if not meta_file.is_file() or not (folder / HEAD_WEIGHTS).is_file():
            raise ConfigError(f"{str(folder)!r} is not a saved LoRA rung: {HEAD_CONFIG} or {HEAD_WEIGHTS} is "
                              "missing. Pass the folder given to FittedLora.save_pretrained.")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("format") not in HEAD_FORMATS:
            raise ConfigError(f"{str(meta_file)!r} has format {meta.get('format')!r}; this adaptlab reads "
                              f"{', '.join(HEAD_FORMATS)}. Upgrade adaptlab or save the adapters again.")
        if not isinstance(encoder, Encoder):
            encoder = Encoder.from_pretrained(encoder, device=device or "auto")
        if encoder.fingerprint != meta["encoder_fingerprint"]:
            raise ConfigError(
                f"the adapters in {str(folder)!r} were trained on another base encoder (fingerprint "
                f"{meta['encoder_fingerprint'][:12]}..., this one is {encoder.fingerprint[:12]}...). Pass the "
                "encoder the study used (its --encoder)."
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            backbone = PeftModel.from_pretrained(copy.deepcopy(encoder.model), str(folder), is_trainable=False)
        classes = list(meta["classes"])
        head_meta = meta.get("head") or {"kind": "linear", "hidden": None}  # v1 folders: a linear head
        model = TextClassifier(backbone, encoder.pool, int(meta["dim"]), len(classes),
                               head_dropout=float(meta["rung_config"].get("head_dropout", 0.0)),
                               input_scale=float(meta["input_scale"]), head=head_meta["kind"],
                               head_hidden=int(head_meta.get("hidden") or 1))
        # strict: a head file that does not match the recorded kind fails here, not with odd predictions.
        model.head.load_state_dict(load_file(str(folder / HEAD_WEIGHTS)), strict=True)
        model.to(device or encoder.device)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        fitted = cls(model, encoder.tokenizer, classes, max_length=int(meta["max_length"]),
                     encoder_fingerprint=meta["encoder_fingerprint"], config=meta["rung_config"],
                     pooling=meta.get("pooling", {}))
        fitted.long_text = str(meta["rung_config"].get("long_text", "truncate"))  # read as it was trained
        fitted.selected_ = meta.get("selected") or {}
        fitted.val_scores_ = meta.get("val_scores") or {}
        fitted.cost_ = Cost()
        return fitted


@register_rung
class LoraRung(NetworkRung):
    """LoRA adapters on the frozen encoder + a head (linear or MLP) on the pooled embedding.

    Example:
        >>> from adaptlab.rungs import get_rung
        >>> cfg = get_rung("lora").config
        >>> cfg.r, cfg.alpha, cfg.dropout, cfg.target_modules
        (8, 16.0, 0.1, ['query', 'key', 'value'])
    """

    name = "lora"
    config_class = LoraConfig
    summary = "LoRA adapters (peft) on the attention projections + head; base weights frozen"

    @classmethod
    def load_artifact(cls, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                      kit: Any) -> FittedNetwork:
        """A shipped LoRA model: the base encoder with the stored adapters (peft's files) and the head."""
        from peft import PeftModel

        from adaptlab.rungs.head import check_state_kind

        check_state_kind(state, "network")
        enc = kit.load_encoder(state["encoder"], frozen=False)
        folder = kit.folder("adapters", str(state["adapter"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            backbone = PeftModel.from_pretrained(copy.deepcopy(enc.model), str(folder), is_trainable=False)
        return load_network(cls.name, enc, backbone, state, tensors, classes)

    def build_backbone(self, backbone: nn.Module, seed: int) -> nn.Module:
        """The backbone wrapped with LoRA adapters on ``target_modules`` (the base weights frozen)."""
        from peft import get_peft_model

        cfg: LoraConfig = self.config  # type: ignore[assignment]
        _check_targets(backbone, cfg.target_modules)
        with warnings.catch_warnings():
            # peft calls a transformers API that transformers 5 deprecates; nothing the user can act on.
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(backbone, _peft_config(cfg))

    def stages(self, model: TextClassifier, n_layers: int) -> list[Stage]:
        """One stage that trains the LoRA adapters and the head only."""
        cfg: LoraConfig = self.config  # type: ignore[assignment]
        return [Stage("lora", lambda name, unit: unit == "head" or "lora_" in name, cfg.max_epochs, cfg.patience)]

    def make_fitted(self, model: TextClassifier, context: RungContext, max_length: int) -> FittedLora:
        """The fitted LoRA rung: adapters, head and the base encoder's fingerprint and pooling."""
        enc = context.encoder
        fitted = FittedLora(model, enc.tokenizer, context.classes, max_length=max_length,
                            encoder_fingerprint=enc.fingerprint, config=self.config.to_dict(),
                            pooling={"pooling": enc.pooling, "normalize": enc.normalize})
        return fitted

    def fit(self, train: Any, val: Any, *, seed: int, context: RungContext, callback: Any = None) -> FittedLora:
        """Train the adapters and the head; ``diagnostics_["lora"]`` records the adapter settings and sizes."""
        fitted = super().fit(train, val, seed=seed, context=context, callback=callback)
        cfg: LoraConfig = self.config  # type: ignore[assignment]
        adapters = fitted.n_adapter_parameters  # type: ignore[attr-defined]
        head = int(sum(p.numel() for p in fitted.model.head.parameters()))
        fitted.diagnostics_["lora"] = {
            "r": cfg.r, "alpha": cfg.alpha, "dropout": cfg.dropout, "target_modules": list(cfg.target_modules),
            "adapter_parameters": adapters, "head_parameters": head,
            "base_parameters": int(context.encoder.n_parameters),
            "trainable_fraction_of_base": round((adapters + head) / max(1, context.encoder.n_parameters), 6),
        }
        return fitted  # type: ignore[return-value]
