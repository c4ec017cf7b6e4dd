"""Suggestions from a shipped model folder (``adaptlab ship``), or from the frozen encoder alone (cold start).

The model folder holds everything needed: the model in use (probabilities and its embedding space),
its training data (already labeled: never re-suggested, and the reference for diversity; its
embeddings come from the monitor's stored reference set, so they are not computed twice) and the
sealed evaluation set (never suggested).

The worst slice: the sealed evaluation texts are clustered in the model's embedding space exactly as
``adaptlab slices`` does without a slice column (:func:`adaptlab.decide.slices.cluster_slices`) and scored
with the model in use. The slice that fires the rare-slice rule (else the lowest-F1 slice, when it is at
least the policy margin below the overall F1) is the anchor: pool texts near its texts are suggested.
Only the slice's location is used; its texts are never offered. This reads the gate's set to choose
where to label, the same way the study's slice analysis reads its test set; what is added there is
judged on the same set, so a gain on the slice is a gain the gate sees and means to see.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from adaptlab.acquire.calibration import Calibration, calibrate_on, scale
from adaptlab.acquire.suggest import Suggestions, suggest
from adaptlab.data import TextDataset
from adaptlab.errors import ConfigError


def worst_slice(texts: Sequence[str], labels: Sequence[str], embeddings: np.ndarray, predicted: Sequence[str],
                classes: Sequence[str], *, positive: Optional[str] = None, policy: Any = None, seed: int = 0,
                slice_names: Optional[Sequence[str]] = None) -> Optional[dict[str, Any]]:
    """The failing slice of a labeled set (see the module docstring), or None when no slice fails.

    ``slice_names`` (one per text) replaces the clustering: a slice column, or clusters computed once
    and reused while the model changes (the simulation benchmark does that).

    Returns ``{"name", "f1", "overall_f1", "accuracy", "overall_accuracy", "n", "positions", "rare"}``
    (positions in ``texts``).

    Example:
        >>> info = worst_slice(sealed.texts, sealed.labels, E_sealed, pipe.predict(sealed.texts),  # doctest: +SKIP
        ...                    list(pipe.classes_))
        >>> info["name"], info["accuracy"], info["overall_accuracy"]                               # doctest: +SKIP
        ('cluster 1: election, eu, blair', 0.923, 0.975)
    """
    from adaptlab.decide.policy import Policy, rare_failing_slices
    from adaptlab.decide.slices import cluster_slices, slice_table

    p = policy or Policy()
    if len(texts) < 20:
        return None
    names = (list(map(str, slice_names)) if slice_names is not None
             else cluster_slices(list(texts), np.asarray(embeddings), seed=seed))
    rows, overall = slice_table(list(labels), [list(predicted)], names, list(classes), positive)
    overall_acc = float(np.mean(np.asarray(labels, dtype=object) == np.asarray(predicted, dtype=object)))
    rare = rare_failing_slices(rows, overall, p)
    # Ranked by accuracy, not by F1: a slice holding one class scores a low macro F1 even when every
    # prediction in it is right (the absent classes count as 0), and must not be chased for that.
    worst = min(rows, key=lambda r: (r["accuracy"], -r["n"]), default=None)
    rare = [r for r in rare if overall_acc - r["accuracy"] >= p.margin]
    pick = rare[0] if rare else (worst if worst and overall_acc - worst["accuracy"] >= p.margin else None)
    if pick is None:
        return None
    pos = [i for i, s in enumerate(names) if s == pick["slice"]]
    return {"name": pick["slice"], "f1": float(pick["f1"]), "overall_f1": float(overall),
            "accuracy": float(pick["accuracy"]), "overall_accuracy": overall_acc, "n": len(pos),
            "positions": pos, "rare": bool(rare)}


def suggest_for_model(model: Union[str, Path, Any], pool: TextDataset, n: int, *, strategy: str = "default",
                      also_labeled: Sequence[str] = (), seed: int = 0, uncertainty: str = "margin",
                      progress: Optional[Callable[[str], None]] = None, also_sealed: Sequence[str] = ()
                      ) -> Suggestions:
    """Suggest ``n`` texts of ``pool`` to label for the model in use in a registry folder.

    ``also_labeled``: texts labeled since the last retrain (e.g. a labeling session in progress);
    they are never suggested again. ``also_sealed``: more texts never to suggest (a study's test file).

    The probabilities are temperature-scaled first (:func:`stored_calibration`); the notes say how.

    Example:
        >>> s = suggest_for_model("models/news", load_dataset("inbox.csv", require_labels=False), 50)  # doctest: +SKIP
        >>> s.counts                                                                                   # doctest: +SKIP
        {'slice': 5, 'uncertainty': 45}
        >>> s.write("to-label.csv")                                                                    # doctest: +SKIP
    """
    from adaptlab.monitor.shipped import model_space, reference_for
    from adaptlab.ship import ModelRegistry
    from adaptlab.ship.evaluation import predict_names

    say = progress or (lambda _m: None)
    if strategy == "cold-start":
        return cold_start(pool, n, also_labeled=also_labeled, seed=seed, model=model)
    reg = model if isinstance(model, ModelRegistry) else ModelRegistry(model)
    _check_pool(pool)
    pipe = reg.load()
    space = model_space(pipe)
    say(f"embedding the training texts of {reg.current.id} (stored reference set) ...")
    ref, _ = reference_for(reg, pipe, space)
    train = reg.training_data()
    sealed = reg.eval_set()
    say(f"scoring the {len(pool)} pool texts with {reg.current.id} ({pipe.rung}) ...")
    proba = np.asarray(pipe.predict_proba(pool.texts), dtype=np.float64)
    E = np.asarray(space.embed(pool.texts), dtype=np.float32)
    classes = [str(c) for c in pipe.classes_]
    cal, cal_note = stored_calibration(reg, pipe, sealed, classes, progress=say)
    if cal is not None:
        proba = scale(proba, cal.temperature)
    anchor, info = None, None
    if strategy in ("default", "slice"):
        say(f"finding the worst slice on the {len(sealed)} sealed evaluation texts ...")
        E_eval = np.asarray(space.embed(sealed.texts), dtype=np.float32)
        pred = predict_names(pipe, sealed.texts)
        positive = getattr(pipe, "positive_label_", None) if len(classes) == 2 else None
        info = worst_slice(sealed.texts, sealed.labels, E_eval, pred, classes, positive=positive, seed=seed)
        if info is not None:
            anchor = E_eval[info.pop("positions")]
    out = suggest(pool.texts, n, embeddings=E, ids=pool.ids, proba=proba, classes=classes,
                  labeled_texts=[*train.texts, *also_labeled], labeled_embeddings=ref.embeddings,
                  sealed_texts=[*sealed.texts, *also_sealed], slice_anchor=anchor, slice_info=info,
                  strategy=strategy, uncertainty=uncertainty, seed=seed,
                  calibration=cal.to_dict() if cal is not None else None)
    if strategy in ("default", "uncertainty"):
        out.notes.append(cal_note)
    if strategy == "default" and info is None:
        out.notes.append("no slice of the sealed evaluation set fails (none is a policy margin below the overall "
                         "accuracy), so the slice share went to uncertainty.")
    elif strategy == "default" and not info["rare"]:
        out.notes.append(f"the weakest slice, {info['name']} (accuracy {info['accuracy']:.3f} on {info['n']} sealed "
                         f"texts vs {info['overall_accuracy']:.3f} overall), does not fire the rare-slice rule, so "
                         "the slice share went to uncertainty (--strategy slice chases it anyway).")
    elif info is not None:
        out.notes.append(f"worst slice: {info['name']} (accuracy {info['accuracy']:.3f} on {info['n']} sealed texts vs "
                         f"{info['overall_accuracy']:.3f} overall).")
    out.notes.append(f"model: {reg.root} {reg.current.id} ({pipe.rung}); {len(train)} labeled texts, "
                     f"{len(sealed)} sealed.")
    return out


CALIBRATION_FILE = Path("acquire") / "calibration.json"


def stored_calibration(reg: Any, pipe: Any, sealed: TextDataset, classes: Sequence[str], *,
                       progress: Optional[Callable[[str], None]] = None) -> tuple[Optional[Calibration], str]:
    """The temperature of the model in use, fitted on its sealed evaluation set and stored in the model
    folder (``acquire/calibration.json``, keyed by version and evaluation-set hash, so it is fitted once
    per version). Returns it (None when the set is too small) and the line saying which calibration is used.
    """
    import json

    path = Path(reg.root) / CALIBRATION_FILE
    key = {"version": reg.current.id, "eval_hash": sealed.content_hash}
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if {k: saved.get(k) for k in key} == key:
            if saved.get("calibration") is None:
                return None, saved["note"]
            try:
                cal = Calibration(**{k: saved["calibration"][k] for k in Calibration.__dataclass_fields__})
                return cal, saved["note"]
            except (KeyError, TypeError):
                pass  # written by another adaptlab version: fitted again below and rewritten
    (progress or (lambda _m: None))(f"fitting a temperature on the {len(sealed)} sealed evaluation texts ...")
    proba = np.asarray(pipe.predict_proba(sealed.texts), dtype=np.float64)
    cal, note = calibrate_on(proba, sealed.labels, classes, fitted_on="sealed evaluation texts")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**key, "calibration": cal.to_dict() if cal else None, "note": note}, indent=1),
                       encoding="utf-8")
        tmp.replace(path)  # atomic: a half-written file is never read back
    except OSError:
        pass  # a read-only model folder: fitted again next time (one scalar, cheap)
    return cal, note


def cold_start(pool: TextDataset, n: int, *, encoder: Any = None, also_labeled: Sequence[str] = (), seed: int = 0,
               model: Any = None, precision: str = "fp32") -> Suggestions:
    """No model yet: the ``n`` most representative pool texts (k-medoids in the frozen encoder's space).

    With ``model`` (a registry folder) its training and sealed texts are still excluded. ``precision``
    (``fp32 | bf16 | int8 | auto``) is the numeric path of an encoder loaded from a name or folder.

    Example:
        >>> s = cold_start(load_dataset("inbox.csv", require_labels=False), 40)   # doctest: +SKIP
    """
    from adaptlab.encoders import load_encoder

    _check_pool(pool)
    labeled, sealed = list(also_labeled), []
    if model is not None:
        from adaptlab.ship import ModelRegistry

        reg = model if isinstance(model, ModelRegistry) else ModelRegistry(model)
        labeled += reg.training_data().texts
        sealed = reg.eval_set().texts
    # A str has .encode too: only an object that is not a path is taken as an encoder.
    if encoder is None or isinstance(encoder, (str, Path)):
        from adaptlab.encoders.fast import make_encoder

        enc = make_encoder(load_encoder(encoder), precision)
    else:
        enc = encoder
    E = np.asarray(enc.encode(pool.texts), dtype=np.float32)
    out = suggest(pool.texts, n, embeddings=E, ids=pool.ids, labeled_texts=labeled, sealed_texts=sealed,
                  strategy="cold-start", seed=seed)
    out.notes.append(f"cold start: representative texts in the frozen {getattr(enc, 'name', 'encoder')} space.")
    return out


def _check_pool(pool: TextDataset) -> None:
    if not isinstance(pool, TextDataset):
        raise ConfigError.invalid("pool", type(pool).__name__, "a TextDataset (adaptlab.data.load_dataset)")
    if len(pool) == 0:
        raise ConfigError("the pool of unlabeled texts is empty; pass a file with at least one text.")


__all__ = ["CALIBRATION_FILE", "cold_start", "stored_calibration", "suggest_for_model", "worst_slice"]
