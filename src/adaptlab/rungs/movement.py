"""Backbone movement: how far fine-tuning moved each layer of the encoder from its pretrained weights.

The number per layer is the relative L2 change ``||W - W0|| / ||W0||`` over all of the layer's
parameters taken together. A frozen layer moves exactly 0; a layer that moved by more than a few
percent on a few thousand labels is where forgetting of the pretrained representation starts.

This module only needs tensors (no other adaptlab stage), so training code can call it on the fly.
"""
from __future__ import annotations

import copy
import math
import re
from typing import Any, Mapping, Optional

import torch

_LAYER_RE = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)(?:\.|$)")


def layer_unit(name: str) -> str:
    """The unit a backbone parameter belongs to: ``"embeddings"``, ``"layer.<i>"`` or ``"other"``.

    Works for BERT-like names, with or without a ``peft`` prefix.

    Example:
        >>> layer_unit("encoder.layer.3.attention.self.query.weight")
        'layer.3'
        >>> layer_unit("base_model.model.embeddings.word_embeddings.weight")
        'embeddings'
        >>> layer_unit("pooler.dense.bias")
        'other'
    """
    m = _LAYER_RE.search(name)
    if m:
        return f"layer.{int(m.group(1))}"
    if "embed" in name:
        return "embeddings"
    return "other"


def _unit_order(unit: str) -> tuple[int, int]:
    if unit == "embeddings":
        return (0, 0)
    if unit.startswith("layer."):
        return (1, int(unit.split(".")[1]))
    return (2, 0)


def effective_state_dict(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's weights as a plain model would hold them.

    For a ``peft`` model the adapters are merged into a copy (``W + B A * scaling``) and the names are
    those of the base model, so the result compares name for name with the pretrained state dict.
    The model passed in is not changed.

    Example:
        >>> import torch
        >>> from adaptlab.diagnostics import backbone_movement, effective_state_dict
        >>> backbone = torch.nn.Linear(2, 2)
        >>> # The weights themselves (detached, not copied): clone them to keep the pretrained state.
        >>> pretrained = {k: v.clone() for k, v in effective_state_dict(backbone).items()}
        >>> with torch.no_grad():
        ...     _ = backbone.bias.add_(1.0)                     # training moved the bias
        >>> m = backbone_movement(pretrained, effective_state_dict(backbone))
        >>> sorted(pretrained), m["n_tensors_compared"], m["overall"] > 0
        (['bias', 'weight'], 2, True)
    """
    if hasattr(backbone, "merge_and_unload") and hasattr(backbone, "peft_config"):
        merged = copy.deepcopy(backbone).merge_and_unload()
        return {k: v.detach() for k, v in merged.state_dict().items()}
    return {k: v.detach() for k, v in backbone.state_dict().items()}


def backbone_movement(
    initial: Mapping[str, torch.Tensor],
    final: Mapping[str, torch.Tensor],
    *,
    digits: Optional[int] = 8,
) -> dict[str, Any]:
    """Relative L2 change per layer between two state dicts of the same backbone.

    Args:
        initial: The pretrained weights (name -> tensor).
        final: The fine-tuned weights, same names (see :func:`effective_state_dict` for peft models).
        digits: Round the ratios (``None`` keeps full precision). Exact zeros stay exact.

    Returns:
        JSON-safe dict: ``per_layer`` (unit -> ratio, embeddings first, then layers bottom-up),
        ``overall`` (all weights together), ``most_moved`` (unit, ratio), ``frozen`` (units that
        did not change at all, bit for bit) and ``n_tensors_compared``.

    Example:
        >>> import torch
        >>> w0 = {"embeddings.w": torch.ones(4), "encoder.layer.0.w": torch.ones(4)}
        >>> w1 = {"embeddings.w": torch.ones(4), "encoder.layer.0.w": torch.ones(4) * 1.5}
        >>> m = backbone_movement(w0, w1)
        >>> m["per_layer"], m["frozen"]
        ({'embeddings': 0.0, 'layer.0': 0.5}, ['embeddings'])
    """
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    changed: dict[str, bool] = {}
    n = 0
    for name, w0 in initial.items():
        if name not in final or not torch.is_floating_point(w0):
            continue  # integer buffers (position ids) are not weights
        w1 = final[name]
        if w1.shape != w0.shape:
            raise ValueError(f"backbone_movement: {name} has shape {tuple(w1.shape)}, expected {tuple(w0.shape)}")
        unit = layer_unit(name)
        a = w0.detach().double().cpu()
        b = w1.detach().double().cpu()
        num[unit] = num.get(unit, 0.0) + float(((b - a) ** 2).sum())
        den[unit] = den.get(unit, 0.0) + float((a ** 2).sum())
        changed[unit] = changed.get(unit, False) or not torch.equal(w0.detach().cpu(), w1.detach().cpu())
        n += 1

    def ratio(nu: float, de: float) -> float:
        r = math.sqrt(nu) / math.sqrt(de) if de > 0 else (0.0 if nu == 0 else float("inf"))
        return round(r, digits) if digits is not None else r

    units = sorted(num, key=_unit_order)
    per_layer = {u: (ratio(num[u], den[u]) if changed[u] else 0.0) for u in units}
    overall = ratio(sum(num.values()), sum(den.values())) if any(changed.values()) else 0.0
    most = max(units, key=lambda u: per_layer[u]) if units else None
    return {
        "per_layer": per_layer,
        "overall": overall,
        "most_moved": {"unit": most, "ratio": per_layer[most]} if most is not None else None,
        "frozen": [u for u in units if not changed[u]],
        "n_tensors_compared": n,
    }


def movement_sentence(movement: Mapping[str, Any]) -> str:
    """One plain-words line about a :func:`backbone_movement` result.

    Example:
        >>> import torch
        >>> from adaptlab.diagnostics import backbone_movement, movement_sentence
        >>> w0 = {"embeddings.w": torch.ones(4), "encoder.layer.0.w": torch.ones(4)}
        >>> w1 = {"embeddings.w": torch.ones(4), "encoder.layer.0.w": torch.ones(4) * 1.02}
        >>> movement_sentence(backbone_movement(w0, w1))
        'The backbone moved 1.41% overall from its pretrained weights; layer.0 moved most (2.00%). Unchanged: embeddings.'
    """
    if not movement.get("per_layer"):
        return "No backbone weights were compared."
    most = movement["most_moved"]
    frozen = movement["frozen"]
    text = (f"The backbone moved {100 * movement['overall']:.2f}% overall from its pretrained weights; "
            f"{most['unit']} moved most ({100 * most['ratio']:.2f}%).")
    if frozen:
        text += f" Unchanged: {', '.join(frozen)}."
    return text


def linear_cka(x: "np.ndarray", y: "np.ndarray") -> float:
    """Linear CKA (Kornblith et al., 2019) between two embeddings of the same texts, in [0, 1].

    1.0 means the tuned representation is the pretrained one up to rotation and scale; values well
    below 1 mean fine-tuning reshaped the geometry (the feature distortion LP-FT guards against).

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(50, 8))
        >>> round(linear_cka(x, 3 * x), 6)
        1.0
    """
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"linear_cka needs the same >= 2 texts in both embeddings, got {x.shape[0]} and {y.shape[0]}")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else 0.0
