"""`retrain`: the review coordinator's one command — new labels in, a gated new version out.

1. The new labels are validated like any data file (row-numbered problems, never silent loss).
2. They are merged into the training data of the version in use: exact repeats are skipped, a text
   that already had another label takes the new one (reported), a text of the sealed evaluation set is
   refused (it would leak into the judge).
3. Before training, the new labels are checked against the old ones and the model in use
   (:mod:`adaptlab.ship.label_check`); a batch far noisier than the old data is held, nothing trained,
   unless the coordinator accepts it after review (``accept_labels``, recorded in the card).
4. The same rung is retrained with the same settings and seed. Frozen-encoder rungs keep their encoder:
   a ``refit`` model retrains its head on the stored refit encoder (the MLM refit is not rerun, which
   is what makes the monthly retrain a one-command job).
5. Old and new are scored on the same sealed evaluation set; :func:`~adaptlab.ship.evaluation.gate`
   decides. Both outcomes are stored as versions; only a promoted one is put in use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from adaptlab.data.dataset import TextDataset, require_single_label
from adaptlab.errors import ConfigError, DataError
from adaptlab.rungs.ladder import facts as rung_facts
from adaptlab.ship.evaluation import GateResult, calibration_gate, evaluate_pipeline, gate, predict_sealed
from adaptlab.ship.label_check import LabelCheck, check_new_labels
from adaptlab.ship.registry import ModelRegistry, ModelVersion, _check_max_drop

_SHOWN = 10


def _key(text: str) -> str:
    # Repeats differ by case and spacing as often as not (copy-paste from a spreadsheet).
    return " ".join(text.split()).casefold()


@dataclass
class MergeReport:
    """What happened to each new label.

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import merge_labels
        >>> current = TextDataset(["goal", "chip", "cash"], ["sport", "tech", "money"], ids=["1", "2", "3"])
        >>> new = TextDataset(["chip", "vote"], ["money", "politics"], ids=["2", "4"])
        >>> merged, report = merge_labels(current, new, eval_set=TextDataset(["pitch"], ["sport"], ids=["9"]))
        >>> report.n_new_rows, report.added, report.relabelled, report.new_classes
        (2, 1, [{'row': 1, 'old': 'tech', 'new': 'money', 'text': 'chip'}], ['politics'])
    """

    n_new_rows: int = 0
    added: int = 0
    duplicates: int = 0
    relabelled: list[dict[str, Any]] = field(default_factory=list)
    in_eval_set: list[dict[str, Any]] = field(default_factory=list)
    new_classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-safe data (counts, and a few examples of each list)."""
        return {"n_new_rows": self.n_new_rows, "added": self.added, "duplicates": self.duplicates,
                "relabelled": len(self.relabelled), "relabelled_examples": self.relabelled[:_SHOWN],
                "in_eval_set": len(self.in_eval_set), "in_eval_set_examples": self.in_eval_set[:_SHOWN],
                "new_classes": self.new_classes}

    def lines(self) -> list[str]:
        """The merge in plain lines: added, known, relabelled, in the evaluation set, new classes."""
        out = [f"{self.n_new_rows} new label(s): {self.added} added, {self.duplicates} already known (skipped)"]
        if self.relabelled:
            ex = "; ".join(f"row {r['row']}: {r['old']!r} -> {r['new']!r}" for r in self.relabelled[:3])
            out.append(f"{len(self.relabelled)} text(s) already had another label; the new label replaces it ({ex}"
                       f"{'; ...' if len(self.relabelled) > 3 else ''})")
        if self.in_eval_set:
            rows = ", ".join(str(r["row"]) for r in self.in_eval_set[:_SHOWN])
            out.append(f"{len(self.in_eval_set)} text(s) are in the sealed evaluation set and were NOT added "
                       f"(rows {rows}): training on them would make the evaluation meaningless")
        if self.new_classes:
            out.append(f"new class(es) {self.new_classes}: the sealed evaluation set has no examples of them, so "
                       "the gate cannot judge them; add labeled examples of them to a new `adaptlab ship`")
        return out


def merge_labels(current: TextDataset, new: TextDataset, eval_set: TextDataset) -> tuple[TextDataset, MergeReport]:
    """``current`` plus ``new`` (see the module docstring for the rules); rows keep their ids.

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import merge_labels
        >>> current = TextDataset(["goal", "chip"], ["sport", "tech"], ids=["1", "2"])
        >>> new = TextDataset(["goal", "vote"], ["sport", "politics"], ids=["1", "3"])
        >>> merged, report = merge_labels(current, new, eval_set=TextDataset(["pitch"], ["sport"], ids=["9"]))
        >>> merged.ids, merged.labels, report.duplicates
        (['1', '2', 'new:3'], ['sport', 'tech', 'politics'], 1)
    """
    if new.labels is None:
        raise ConfigError("the new labels file has no label column; pass --label-col NAME.")
    report = MergeReport(n_new_rows=len(new))
    texts, labels, ids = list(current.texts), list(current.labels or []), list(current.ids or [])
    where = {_key(t): i for i, t in enumerate(texts)}
    sealed = {_key(t) for t in eval_set.texts}
    known = set(labels)
    for j, (t, lab) in enumerate(zip(new.texts, new.labels)):
        row = int(new.rows[j]) if new.rows else j + 1
        k = _key(t)
        if k in sealed:
            report.in_eval_set.append({"row": row, "text": t[:80]})
            continue
        if k in where:
            i = where[k]
            if labels[i] == lab:
                report.duplicates += 1
            else:
                report.relabelled.append({"row": row, "old": labels[i], "new": lab, "text": t[:80]})
                labels[i] = lab
            continue
        where[k] = len(texts)
        texts.append(t)
        labels.append(lab)
        ids.append(f"new:{new.ids[j] if new.ids else row}")
        report.added += 1
    report.new_classes = sorted(set(labels) - known)
    return TextDataset(texts=texts, labels=labels, ids=ids, source="merged"), report


@dataclass
class RetrainOutcome:
    """What `retrain` did: the merge, the label check, the gate and the version it stored (None when
    nothing changed, or when the label check held the retrain).

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import ModelRegistry, Pipeline, retrain
        >>> texts = [f"great film {i}" for i in range(12)] + [f"awful film {i}" for i in range(12)]
        >>> train = TextDataset(texts, ["pos"] * 12 + ["neg"] * 12)
        >>> pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(train.texts, train.labels)
        >>> _ = ModelRegistry.create("models/films", pipe, train=train, eval_set=train)
        >>> new = TextDataset(["great acting", "awful plot"], ["pos", "neg"], ids=["n1", "n2"])
        >>> out = retrain("models/films", new)
        >>> out.status, out.merge.added, out.in_use
        ('promoted', 2, 'v0002')
    """

    merge: MergeReport
    gate: Optional[GateResult]
    version: Optional[ModelVersion]
    in_use: str
    message: str
    labels: Optional[LabelCheck] = None

    @property
    def promoted(self) -> bool:
        """Whether the retrained version went through the gate and is now in use."""
        return bool(self.gate and self.gate.promoted)

    @property
    def held(self) -> bool:
        """The label check held the retrain: nothing was trained (see ``labels.rows``)."""
        return bool(self.labels and self.labels.held)

    @property
    def status(self) -> str:
        """promoted | rejected (by the gate) | held (by the label check) | unchanged (nothing to retrain)."""
        if self.held:
            return "held"
        if self.gate is None:
            return "unchanged"
        return "promoted" if self.gate.promoted else "rejected"

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON-safe data."""
        return {"merge": self.merge.to_dict(), "gate": self.gate.to_dict() if self.gate else None,
                "version": self.version.to_dict() if self.version else None, "in_use": self.in_use,
                "promoted": self.promoted, "status": self.status, "held": self.held,
                "labels": self.labels.to_dict() if self.labels else None, "message": self.message}


def retrain_pipeline(old: Any) -> Any:
    """An unfitted pipeline that retrains ``old`` the same way (same rung, settings and seed).

    bf16 stays bf16 where this hardware runs it natively; elsewhere (emulated, several times slower) the
    retrain runs in float32, the path bf16 was checked against, and the no-regression gate judges it.
    """
    from adaptlab.rungs.runtime import resolve_mixed_precision
    from adaptlab.ship.pipeline import Pipeline

    params = {k: v for k, v in old.get_params().items()}
    if getattr(old, "precision_used_", None) == "fp32" and params.get("precision") == "bf16":
        params["precision"] = "fp32"  # loaded in fp32 (no native bf16 here): retrain on that path
    rung_params = dict(params.get("rung_params") or {})
    if rung_params.get("mixed_precision") == "bf16" and resolve_mixed_precision("auto")[0] != "bf16":
        params["rung_params"] = {**rung_params, "mixed_precision": "no"}
    retrain_as = rung_facts(old.rung).retrain_as
    if retrain_as is not None:
        # Keep the frozen encoder the model was evaluated with; for refit that is the refit encoder.
        cfg = dict(old.rung_config_ or {})
        params.update(rung=retrain_as, encoder=old.fitted_.encoder,
                      rung_params={k: cfg[k] for k in ("C_grid",) if k in cfg} or None)
    return Pipeline(**params)


def retrain(model: Union[str, Path, ModelRegistry], new_labels: Union[str, Path, TextDataset], *,
            max_drop: Optional[float] = None, text_col: Optional[str] = None, label_col: Optional[str] = None,
            id_col: Optional[str] = None, device: str = "cpu", accept_labels: bool = False, policy: Any = None,
            review: Optional[dict[str, Any]] = None, progress: Optional[Callable[[str], None]] = None,
            on_invalid: str = "error") -> RetrainOutcome:
    """Add ``new_labels`` to ``model`` (a registry folder), retrain, and promote only without regression.

    Before training, the new labels are checked (:mod:`adaptlab.ship.label_check`): a batch flagged as
    likely wrong far more often than the old data (``policy`` thresholds, default
    :class:`~adaptlab.decide.Policy`) is **held**: nothing is trained and the verdict names the rows.
    ``accept_labels=True`` trains anyway and records the override in the new version's model card.
    ``review`` (who reviewed the flagged rows, when, and what they fixed or dropped; the web app's
    review page passes it) is recorded in the card too.

    The new batch is judged as an addition, not as a dataset of its own: a batch with one class, or a
    class labeled once, is fine when the merged data is. ``on_invalid="drop"`` skips rows with
    row-level problems (e.g. the rows of an ``adaptlab suggest`` file left unlabeled) and lists them in
    the outcome's message; ``"error"`` (default) refuses the file and names them.

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import ModelRegistry, Pipeline, retrain
        >>> old = TextDataset([f"goal match team {i}" for i in range(20)] + [f"chip software data {i}" for i in range(20)],
        ...                   ["sport"] * 20 + ["tech"] * 20)
        >>> pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(old.texts, old.labels)
        >>> _ = ModelRegistry.create("models/news", pipe, train=old, eval_set=old)
        >>> good = TextDataset(["goal match league", "chip data server"], ["sport", "tech"])
        >>> retrain("models/news", good).status
        'promoted'
        >>> wrong = TextDataset([f"goal match team {i}" for i in range(20, 26)], ["tech"] * 6)   # six wrong labels
        >>> out = retrain("models/news", wrong)
        >>> out.status, out.labels.n_flagged_new, out.in_use
        ('held', 6, 'v0002')
    """
    from adaptlab.data import load_dataset

    say = progress or (lambda msg: None)
    reg = model if isinstance(model, ModelRegistry) else ModelRegistry(model)
    limit = reg.max_drop if max_drop is None else max_drop
    _check_max_drop(limit)
    skipped = ""
    if isinstance(new_labels, TextDataset):
        new = new_labels
        require_single_label(new, "retrain (the shipped model predicts one label per text)")
    else:
        new, loaded = load_dataset(new_labels, text_col=text_col, label_col=label_col, id_col=id_col,
                                   require_labels=False, on_invalid=on_invalid, return_report=True)
        require_single_label(new, f"retrain (the shipped model predicts one label per text; {new_labels})")
        if new.labels is None:
            raise DataError(f"{new_labels} has no labels: its label column ({label_col or 'label'}) is empty. "
                            "Fix: fill in the labels, or name the label column with --label-col.")
        if loaded.dropped:
            rows = ", ".join(str(d.row) for d in loaded.dropped[:_SHOWN])
            more = f" and {len(loaded.dropped) - _SHOWN} more" if len(loaded.dropped) > _SHOWN else ""
            skipped = (f"Skipped {len(loaded.dropped)} row(s) of {Path(new_labels).name} with no usable label or "
                       f"text (rows {rows}{more}). ")
            say(skipped.strip())
    current = reg.current
    train_old = reg.training_data()
    eval_set = reg.eval_set()
    merged, report = merge_labels(train_old, new, eval_set)
    for line in report.lines():
        say(line)
    if report.added == 0 and not report.relabelled:
        msg = (f"Nothing to retrain: none of the {report.n_new_rows} rows changes the training data of "
               f"{current.id} (all repeats{' or sealed evaluation texts' if report.in_eval_set else ''}). "
               f"{current.id} stays in use.")
        return RetrainOutcome(merge=report, gate=None, version=None, in_use=current.id, message=skipped + msg)
    old = reg.load(device=device)
    say("checking the new labels (confident learning on old + new labels, and against the model in use) ...")
    labels = check_new_labels(train_old, new, merged, pipeline=old, evaluation=current.evaluation, policy=policy,
                              accept=accept_labels)
    if labels is not None and labels.held:
        where = str(new_labels) if not isinstance(new_labels, TextDataset) else "FILE"
        msg = f"{skipped}{labels.explanation(str(reg.root), where)} {current.id} stays in use."
        reg.log_event("held", version=current.id, reason=labels.evidence(),
                      rows=[r["row"] for r in labels.rows[:_SHOWN]], source=labels.source, n_new=labels.n_new,
                      n_flagged_new=labels.n_flagged_new)
        return RetrainOutcome(merge=report, gate=None, version=None, in_use=current.id, message=msg, labels=labels)
    if labels is not None:
        say(labels.explanation())
    say(f"retraining {old.rung} on {len(merged)} texts ({report.added} new) ...")
    new_pipe = retrain_pipeline(old)
    # The registry's own cache: last month's texts are not encoded again.
    new_pipe.set_params(device=device, cache=reg.root / "embeddings.sqlite")
    new_pipe.fit(merged.texts, np.asarray(merged.labels, dtype=object))
    result, evaluation = _score_and_gate(old, new_pipe, eval_set, current.id, limit, policy, say)
    status = "promoted" if result.promoted else "rejected"
    limitations = []
    if rung_facts(old.rung).retrain_note:
        limitations.append(rung_facts(old.rung).retrain_note)
    # What the first version's card said about the model (name, intended use, the study's transfer note,
    # where the data came from) still holds for its retrains.
    before = dict(getattr(old, "manifest_", {}).get("extra", {}) or {})
    carried = {k: before[k] for k in ("name", "intended_use", "transfer_note", "study_id", "decision", "forced")
               if before.get(k)}
    old_lineage = dict(before.get("lineage") or {})
    lineage = {k: old_lineage[k] for k in ("source", "refit_corpus") if old_lineage.get(k)}
    entry = reg.add_version(new_pipe, merged, evaluation, status=status, reason=result.explanation,
                            parent=current.id, gate=result.to_dict(), merge=report.to_dict(),
                            extra={**carried, "lineage": lineage,
                                   "limitations": list(dict.fromkeys([*(before.get("limitations") or []),
                                                                      *limitations])),
                                   "retrained_from_rung": old.rung,
                                   **({"label_check": _card_label_check(labels)} if labels is not None else {}),
                                   **({"label_review": review} if review else {})})
    in_use = reg.current.id
    head = f"{entry.id} is now in use." if result.promoted else f"{entry.id} was stored but NOT put in use; {in_use} stays."
    override = f" {labels.explanation()}" if labels is not None and labels.accepted else ""
    return RetrainOutcome(merge=report, gate=result, version=entry, in_use=in_use,
                          message=f"{skipped}{result.explanation}{override} {head}", labels=labels)


def _score_and_gate(old: Any, new_pipe: Any, eval_set: TextDataset, current_id: str, limit: float,
                    policy: Any, say: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """Both versions on the sealed evaluation texts: the no-regression gate, then the calibration check."""
    say(f"scoring {current_id} and the retrained model on the {len(eval_set)} sealed evaluation texts ...")
    y = np.asarray(eval_set.labels, dtype=object)
    sealed_old, sealed_new = predict_sealed(old, eval_set.texts), predict_sealed(new_pipe, eval_set.texts)
    pred_old, pred_new = sealed_old.pred, sealed_new.pred
    classes = sorted(set(map(str, old.classes_)) | set(map(str, new_pipe.classes_)) | set(y.tolist()))
    positive = old.positive_label_ if len(classes) == 2 else None
    result = gate(y, pred_old, pred_new, classes, positive, max_drop=limit, old_name=f"{current_id} (in use)",
                  new_name="the retrained model")
    evaluation = evaluate_pipeline(new_pipe, eval_set, predictions=pred_new, sealed=sealed_new)
    # The calibration check: the confidences each version reports (calibrated where it carries a calibration).
    from adaptlab.decide.policy import Policy

    pol = policy or Policy()
    result = calibration_gate(result, sealed_old.calibration_view(y)["ece_after"],
                              evaluation["calibration"]["ece_after"], max_increase=pol.max_ece_increase,
                              min_texts=pol.ece_min_texts, old_name=f"{current_id} (in use)")
    return result, evaluation


def _card_label_check(labels: LabelCheck) -> dict[str, Any]:
    """What the model card keeps of the label check: the verdict, its numbers and the first flagged rows."""
    return {"verdict": "accepted" if labels.accepted else "passed", "explanation": labels.explanation(),
            "new_rate": labels.new_rate, "old_rate": labels.old_rate, "n_new": labels.n_new,
            "n_flagged_new": labels.n_flagged_new, "source": labels.source,
            "rows": [{k: r[k] for k in ("row", "id", "given", "suggested")} for r in labels.rows[:_SHOWN]]}
