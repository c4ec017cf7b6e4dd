"""Overfitting and negative-transfer signatures, in numbers and in plain words.

* :func:`overfitting_signature` reads one run's per-epoch history: the train-validation gap, the epoch
  of the best validation F1, and whether validation F1 fell after its peak while training kept
  improving (memorisation: a fine-tune on a few thousand labels at 0.73 +- 0.04, below the frozen 0.78).
* :func:`budget_bound` reads one run's stop: the budget ended it while validation F1 was still at its
  best, so the run is under-trained, not overfit (the two never describe the same run).
* :func:`transfer_signatures` reads a whole study (a ``StudyResult`` dict): a fine-tuned rung whose test
  F1 is below the frozen ``probe`` or the ``tfidf`` scratch baseline with non-overlapping bands is
  negative transfer; runs whose histories show the overfitting signature are counted per rung.

Both are pure functions of JSON-like data, so they work on results read back from the run store.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from adaptlab.rungs.ladder import LABEL_TRAINED_ENCODER
from adaptlab.rungs.ladder import TRANSFER_BASELINES as _LADDER_BASELINES

# Rungs that train the encoder from the labels (their results carry histories and backbone movement).
FINE_TUNED_RUNGS = LABEL_TRAINED_ENCODER
# The baselines a fine-tuned rung must beat, nearest first: frozen reuse, then no pretraining at all.
TRANSFER_BASELINES = tuple(reversed(_LADDER_BASELINES))


def budget_bound(diagnostics: Mapping[str, Any]) -> bool:
    """Whether one run's budget stopped it while validation F1 was still at its best (its last evaluation).

    Such a run is under-trained, not overfit: a longer budget may change its score, so a decision never
    calls it "the signature of overfitting". Reads the diagnostics the training loop stores
    (``stopped_by``, ``best["step"]``, ``budget["steps_used"]``).

    Example:
        >>> budget_bound({"stopped_by": "budget_steps", "best": {"step": 5}, "budget": {"steps_used": 5}})
        True
        >>> budget_bound({"stopped_by": "early_stopping", "best": {"step": 3}, "budget": {"steps_used": 9}})
        False
    """
    best = (diagnostics.get("best") or {}).get("step")
    return (diagnostics.get("stopped_by") in ("budget_steps", "budget_seconds") and best is not None
            and best == (diagnostics.get("budget") or {}).get("steps_used"))


def overfitting_signature(
    history: Sequence[Mapping[str, Any]],
    *,
    tolerance: float = 0.01,
    train_improvement: float = 0.05,
) -> dict[str, Any]:
    """Train-validation gap over epochs and the memorisation flag of one training run.

    ``overfitting`` is true when validation F1 ended more than ``tolerance`` below its peak while the
    training loss kept falling after the peak (by more than ``train_improvement``, relative) or
    training F1 kept rising: the model kept fitting the training set while generalising worse.

    Args:
        history: One dict per evaluation, in order, with ``val_f1`` and, after some training,
            ``train_loss``, ``train_f1``, ``val_loss`` (as the training loop records them). An entry
            without ``train_loss`` is an evaluation before any training (e.g. after a linear probe).
        tolerance: How far (absolute F1) validation must fall below its peak to count.
        train_improvement: Relative fall of the training loss after the peak that counts as improving.

    Example:
        >>> h = [{"epoch": e, "train_loss": l, "train_f1": t, "val_loss": vl, "val_f1": v}
        ...      for e, l, t, vl, v in [(1, .9, .6, .8, .70), (2, .5, .8, .6, .80), (3, .2, .95, .7, .76),
        ...                             (4, .05, 1.0, .9, .72)]]
        >>> sig = overfitting_signature(h)
        >>> sig["overfitting"], sig["best_epoch"]
        (True, 2)
    """
    rows = [dict(h) for h in history if h.get("val_f1") is not None]
    if not rows:
        return {"overfitting": False, "best_epoch": None, "n_evaluations": 0,
                "sentence": "No validation history was recorded, so overfitting cannot be judged."}
    vals = [float(r["val_f1"]) for r in rows]
    best_i = max(range(len(vals)), key=lambda i: (vals[i], -i))  # first occurrence of the peak
    best, last = vals[best_i], vals[-1]
    epoch_of = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    after = rows[best_i + 1:]
    val_drop = best - last
    fell = bool(after) and val_drop > tolerance

    def num(row: Mapping[str, Any], key: str) -> Optional[float]:
        v = row.get(key)
        return None if v is None else float(v)

    train_loss_at_peak = num(rows[best_i], "train_loss")
    train_f1_at_peak = num(rows[best_i], "train_f1")
    train_loss_last = num(rows[-1], "train_loss")
    train_f1_last = num(rows[-1], "train_f1")
    train_improved = False
    if after and train_loss_last is not None:
        if train_loss_at_peak is None:  # the peak is the untrained start: any training is improvement
            train_improved = True
        else:
            f1_rose = (train_f1_last is not None and train_f1_at_peak is not None
                       and train_f1_last > train_f1_at_peak + tolerance)
            train_improved = train_loss_last < train_loss_at_peak * (1.0 - train_improvement) or f1_rose
    overfitting = bool(fell and train_improved)

    gap_f1 = [None if num(r, "train_f1") is None else round(float(r["train_f1"]) - float(r["val_f1"]), 6) for r in rows]
    gap_loss = [None if num(r, "train_loss") is None or num(r, "val_loss") is None
                else round(float(r["val_loss"]) - float(r["train_loss"]), 6) for r in rows]
    val_losses = [num(r, "val_loss") for r in rows]
    known = [v for v in val_losses if v is not None]
    val_loss_rose = bool(known) and val_losses[-1] is not None and val_losses[-1] > min(known) * 1.1

    be, le = epoch_of[best_i], epoch_of[-1]
    if overfitting:
        what = (f"training loss kept falling ({train_loss_at_peak:.3g} -> {train_loss_last:.3g})"
                if train_loss_at_peak is not None else f"training went on (training loss {train_loss_last:.3g})")
        sentence = (f"Overfitting: validation F1 peaked at {best:.3f} in epoch {be} and fell to {last:.3f} by "
                    f"epoch {le} while {what}; the model memorises the training set. The returned model "
                    f"is the epoch-{be} checkpoint; fewer trainable layers, a lower backbone learning rate "
                    "or more labels would help.")
    elif fell:
        sentence = (f"Validation F1 peaked at {best:.3f} in epoch {be} and fell to {last:.3f} by epoch {le}, "
                    "but training did not keep improving either: unstable training rather than memorisation. "
                    f"The returned model is the epoch-{be} checkpoint.")
    elif after:
        sentence = (f"No overfitting signature: validation F1 peaked at {best:.3f} in epoch {be} and stayed "
                    f"within {tolerance:.2f} of it (last {last:.3f}).")
    else:
        sentence = (f"No overfitting signature: validation F1 was still at its best ({best:.3f}) at the last "
                    f"evaluation (epoch {be}); more training might still help.")
    return {
        "overfitting": overfitting,
        "best_epoch": be,
        "best_val_f1": round(best, 6),
        "last_val_f1": round(last, 6),
        "val_drop_after_peak": round(val_drop, 6),
        "val_fell_after_peak": bool(fell),
        "train_improved_after_peak": bool(train_improved),
        "val_loss_rose": bool(val_loss_rose),
        "gap_f1_by_epoch": gap_f1,
        "gap_loss_by_epoch": gap_loss,
        "max_gap_f1": max((g for g in gap_f1 if g is not None), default=None),
        "n_evaluations": len(rows),
        "sentence": sentence,
    }


def _band(row: Mapping[str, Any]) -> tuple[float, float]:
    return float(row["ci_low"]), float(row["ci_high"])


def transfer_signatures(
    study_result: Mapping[str, Any],
    *,
    fine_tuned: Optional[Sequence[str]] = None,
    baselines: Sequence[str] = TRANSFER_BASELINES,
) -> list[dict[str, Any]]:
    """Negative-transfer and overfitting flags of a study's fine-tuned rungs.

    A pure function of a ``StudyResult`` dict (``Study.run(...).to_dict()`` or the ``summary`` of
    ``RunStore.get_study``). For every fine-tuned rung and every baseline present, one dict with
    ``kind="negative_transfer"``: ``flag`` (and ``negative_transfer``) is true when the rung's mean test
    F1 is below the baseline's and their bands do not overlap (a gap larger than the noise). For every
    fine-tuned rung with recorded histories, one dict with ``kind="overfitting"`` counting the seeds
    whose run shows the overfitting signature (``flag`` true when at least half of them do).

    A rung counts as fine-tuned if its name is in ``fine_tuned`` (default: the rungs whose catalogue record
    says they train the encoder from the labels) or its per-seed diagnostics record backbone movement.

    Example:
        >>> rows = [{"rung": "probe", "mean": .78, "ci_low": .77, "ci_high": .79},
        ...         {"rung": "finetune", "mean": .73, "ci_low": .70, "ci_high": .75}]
        >>> sig = transfer_signatures({"rows": rows, "metric": "F1"})
        >>> sig[0]["negative_transfer"], sig[0]["baseline"]
        (True, 'probe')
    """
    rows = {r["rung"]: r for r in study_result.get("rows", [])}
    per_seed = study_result.get("per_seed") or []
    names = set(fine_tuned if fine_tuned is not None else FINE_TUNED_RUNGS)
    for p in per_seed:
        diag = p.get("diagnostics") or {}
        if isinstance(diag, Mapping) and "movement" in diag:
            names.add(p["rung"])
    metric = study_result.get("metric", "F1")
    out: list[dict[str, Any]] = []
    for name, row in rows.items():
        if name not in names or name in baselines:
            continue
        for base in baselines:
            if base not in rows:
                continue
            b = rows[base]
            lo, hi = _band(row)
            blo, bhi = _band(b)
            separated = hi < blo or bhi < lo
            negative = bool(row["mean"] < b["mean"] and separated)
            diff = float(row["mean"]) - float(b["mean"])
            what = {"probe": "the frozen probe", "tfidf": "the tfidf scratch baseline"}.get(base, base)
            if negative:
                sentence = (f"Negative transfer: {name} scores {row['mean']:.3f} {metric} (band {lo:.3f}-{hi:.3f}), "
                            f"below {what} at {b['mean']:.3f} ({blo:.3f}-{bhi:.3f}) with bands that do not overlap. "
                            f"Adapting the encoder made it worse on this data; prefer {base}, or adapt more gently "
                            "(LoRA, fewer unfrozen layers, a lower backbone learning rate).")
            elif diff < 0:
                sentence = (f"{name} is {-diff:.3f} below {what} ({row['mean']:.3f} vs {b['mean']:.3f}), but the "
                            "bands overlap: within the noise, not evidence of negative transfer.")
            else:
                sentence = (f"{name} is {diff:+.3f} against {what} ({row['mean']:.3f} vs {b['mean']:.3f}); "
                            f"{'the bands do not overlap' if separated else 'the bands overlap'}.")
            out.append({"kind": "negative_transfer", "rung": name, "baseline": base, "flag": negative,
                        "negative_transfer": negative, "mean": float(row["mean"]), "baseline_mean": float(b["mean"]),
                        "diff": round(diff, 6), "band": [lo, hi], "baseline_band": [blo, bhi],
                        "bands_overlap": not separated, "sentence": sentence})
        sigs = [((p.get("diagnostics") or {}).get("overfitting") or {}) for p in per_seed if p.get("rung") == name]
        sigs = [s for s in sigs if "overfitting" in s]
        if sigs:
            k = sum(bool(s["overfitting"]) for s in sigs)
            flag = 2 * k >= len(sigs) and k > 0
            epochs = [s.get("best_epoch") for s in sigs]
            sentence = (f"{name}: {k} of {len(sigs)} seed(s) show the overfitting signature (validation F1 fell "
                        f"after its peak while training kept improving); best epochs {epochs}."
                        if k else f"{name}: no seed shows the overfitting signature; best epochs {epochs}.")
            out.append({"kind": "overfitting", "rung": name, "flag": bool(flag), "overfitting": bool(flag),
                        "n_seeds_overfitting": k, "n_seeds": len(sigs), "best_epochs": epochs, "sentence": sentence})
    return out
