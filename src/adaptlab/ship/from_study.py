"""The rung a stored study decided on, and what its decision adds to a shipped model's card.

Shared by ``adaptlab ship --study`` and ``adaptlab suggest --study`` (:mod:`adaptlab.acquire.study`), so both
ship the same rung with the same numeric path the study's gate accepted.

Example:
    >>> rung, extra = study_choice("latest", "adaptlab-runs")   # doctest: +SKIP
    >>> rung, extra["study_id"][:12]                            # doctest: +SKIP
    ('probe', '3f2a9c0b1d4e')
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from adaptlab.errors import ConfigError


def study_choice(study: str, home: Optional[Union[str, Path]] = None, *,
                 fix: str = "pass --rung to ship one anyway.") -> tuple[str, dict[str, Any]]:
    """The study's chosen rung and what its decision adds to the model card (``transfer_note``,
    ``encode_precision``, ``training_precision``, ``limitations``, ``evaluation_study``, ``study_id``).

    Raises ConfigError when the study reached no decision, ending with ``fix`` (what the caller can do).
    """
    from adaptlab.config import default_home
    from adaptlab.decide import transfer_note
    from adaptlab.report import decision_for
    from adaptlab.store import RunStore

    h = Path(home).expanduser() if home is not None else default_home()
    decision, ev = decision_for(RunStore(h / "runs.sqlite"), study, None, h)
    if decision.chosen is None:
        raise ConfigError(f"study {study!r} reached no decision ({decision.headline}); {fix}")
    summary = (RunStore(h / "runs.sqlite").get_study(decision.study_id).get("summary") or {}) if decision.study_id else {}
    gate = ((summary.get("data") or {}).get("encode_precision") or {})
    extra = {"transfer_note": transfer_note(decision, ev).to_markdown(),
             # The frozen encoder's numeric path the study's gate accepted; the shipped probe uses the same.
             "encode_precision": gate.get("used") or "fp32",
             # What the chosen rung trained in, if it trains the encoder (bf16 where the study's gate took it).
             "training_precision": trained_in(summary, decision.chosen),
             "limitations": [f"{f.rung + ': ' if f.rung else ''}{f.message}" for f in decision.flags],
             "evaluation_study": decision.headline, "study_id": decision.study_id}
    return decision.chosen, extra


def trained_in(summary: dict[str, Any], rung: str) -> Optional[str]:
    """What ``rung`` trained in within a stored study: ``"bf16"`` / ``"fp16"``, or None (float32, or a rung
    that trains no encoder).

    Example:
        >>> trained_in({"data": {"training_precision": {"lora": {"used": "bf16"}}}}, "lora")
        'bf16'
        >>> trained_in({"config": {"mixed_precision": "auto"}}, "probe") is None  # auto, nothing trained: no gate
        True
    """
    choice = ((summary.get("data") or {}).get("training_precision") or {}).get(rung)
    if choice:
        used = choice.get("used")
    else:
        cfg = summary.get("config") or {}
        used = ((cfg.get("rung_params") or {}).get(rung) or {}).get("mixed_precision") or cfg.get("mixed_precision")
    return used if used in ("bf16", "fp16") else None


__all__ = ["study_choice", "trained_in"]
