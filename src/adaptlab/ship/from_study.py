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
    ``encode_precision``, ``training_precision``, ``limitations``, ``evaluation_study``, ``study_id`` and
    ``decision``, what the decision said about shipping: :func:`decision_record`).

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
             "evaluation_study": decision.headline, "study_id": decision.study_id,
             # What the decision said about shipping, with its threshold: the card names it, `ship` enforces it.
             "decision": decision_record(decision)}
    return decision.chosen, extra


# Decision statuses that say "do not ship yet": shipping then needs an explicit override (--force).
HOLD_STATUSES = ("do-not-ship", "provisional")


def decision_record(decision: Any) -> dict[str, Any]:
    """What a study's :class:`~adaptlab.decide.Decision` (or its ``to_dict()``) says about shipping its chosen
    rung: the status, the ship threshold, the rung's mean and seeds, the headline and the reason in one sentence.

    Example:
        >>> from adaptlab.decide import Evidence, decide
        >>> rec = decision_record(decide(Evidence.from_tables({"probe": [0.60, 0.61, 0.62]})))
        >>> rec["status"], rec["ship_threshold"], rec["reason"]
        ('do-not-ship', 0.8, "probe's mean F1 0.610 over 3 seed(s) is below the ship threshold 0.80")
    """
    d = decision if isinstance(decision, dict) else decision.to_dict()  # the object or its to_dict()
    policy, chosen, status = d.get("policy") or {}, d.get("chosen"), d.get("status")
    threshold, min_seeds = float(policy.get("ship_threshold", 0.0)), int(policy.get("min_seeds", 3))
    row = next((r for r in d.get("rungs") or [] if r.get("rung") == chosen), {})
    mean, n = row.get("mean"), int(row.get("n_seeds") or 0)
    metric = d.get("metric") or "F1"
    said = f"{chosen}'s mean {metric} {mean:.3f} over {n} seed(s)" if mean is not None else ""
    if status == "provisional":
        reason = (f"the study's budget ended with {d.get('provisional')} ahead on the evidence but without the "
                  f"{min_seeds} full-budget seeds the decision needs; {chosen} is only its fallback")
    elif status == "do-not-ship" and mean is not None and mean < threshold:
        reason = f"{said} is below the ship threshold {threshold:.2f}"
    elif status == "do-not-ship":
        reason = f"{said}; the decision needs {min_seeds} seeds at or above the ship threshold {threshold:.2f}"
    else:
        reason = f"{said} reaches the ship threshold {threshold:.2f}" if said else str(d.get("headline") or "")
    return {"status": status, "ship": bool(d.get("ship")), "chosen": chosen, "provisional": d.get("provisional"),
            "ship_threshold": threshold, "min_seeds": min_seeds, "metric": metric, "mean": mean, "n_seeds": n,
            "headline": d.get("headline"), "reason": reason, "study_id": d.get("study_id")}


def ship_gate(extra: dict[str, Any], rung: str, *, force: bool = False,
              how_to_force: str = "pass --force") -> dict[str, Any]:
    """``extra`` (from :func:`study_choice`) checked against its study's decision before shipping ``rung``.

    A decision that says "do not ship yet" (status ``do-not-ship`` or ``provisional``) refuses, with the
    reason and how to override it; ``force=True`` ships anyway and records the override under
    ``extra["forced"]`` (the model card and ``adaptlab models list`` show it). Any other decision passes.

    Example:
        >>> extra = {"decision": {"status": "do-not-ship", "ship_threshold": 0.8, "study_id": "3f2a9c0b1d4e5",
        ...                       "reason": "probe's mean F1 0.610 over 3 seeds is below the ship threshold 0.80"}}
        >>> ship_gate(extra, "probe")
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: study 3f2a9c0b1d4e says do not ship yet: probe's mean F1 0.610 over ... or pass --force to ship probe anyway: ...
        >>> ship_gate(extra, "probe", force=True)["forced"]["ship_threshold"]
        0.8
    """
    rec = extra.get("decision") or {}
    if rec.get("status") not in HOLD_STATUSES:
        return extra
    sid = str(rec.get("study_id") or "")[:12]
    if not force:
        raise ConfigError(
            f"study {sid} says do not ship yet: {rec.get('reason')}. Run the experiment it names next (adaptlab "
            f"study show {sid}), or {how_to_force} to ship {rung} anyway: the model card and `adaptlab models "
            "list` then say it was forced, with the threshold and this reason.")
    import datetime as dt

    forced = {"rung": rung, "status": rec.get("status"), "ship_threshold": rec.get("ship_threshold"),
              "reason": rec.get("reason"), "study_id": rec.get("study_id"), "metric": rec.get("metric"),
              "mean": rec.get("mean"), "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    return {**extra, "forced": forced}


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


__all__ = ["HOLD_STATUSES", "decision_record", "ship_gate", "study_choice", "trained_in"]
