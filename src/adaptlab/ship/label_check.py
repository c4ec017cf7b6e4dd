"""The retrain's label check: hold a batch of new labels that is far noisier than the data it joins.

The gate (:mod:`adaptlab.ship.evaluation`) judges the retrained model on the sealed set, and a robust
rung can absorb a batch of wrong labels without scoring worse there; the wrong labels then stay in the
training data and hurt next quarter. So before training, the new labels are checked twice:

* **Confident learning on old + new** (:func:`adaptlab.data.check_labels`): out-of-fold TF-IDF
  probabilities over the merged training data; the share of new labels flagged as likely wrong is
  compared with the share flagged among the labels the model in use was trained on. This decides:
  a batch is held when it is flagged far more often (thresholds in :class:`adaptlab.decide.Policy`:
  ``label_noise_min``, ``label_noise_ratio``, ``label_noise_min_rows``).
* **The model in use**: how often it disagrees with the new labels, next to how often it disagrees
  with the sealed evaluation labels (its stored accuracy, no new read of the sealed set). Reported
  as a second witness in the verdict; it does not decide alone, because a model that is simply weak,
  or a batch that deliberately changes a label definition, disagrees just as much.

A batch that outnumbers the old data and is consistently relabelled teaches the out-of-fold model its
own labels, so confident learning flags the *old* rows instead; such a batch is not held here and is
left to the gate, which measures its effect on the sealed set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from adaptlab.data.dataset import TextDataset

SHOWN_ROWS = 5
# Above this many old rows, a stratified sample of them stands for the old data: the old rate is a
# share, and the check must stay a few seconds on a CPU however long the model's history grows.
MAX_OLD_ROWS = 20_000


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass
class LabelCheck:
    """What the retrain's label check found, and whether it holds the retrain.

    ``rows`` are the flagged new labels, most suspicious first, with their row in the new labels file.

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import LabelCheck, check_new_labels, merge_labels
        >>> old = TextDataset([f"goal match team {i}" for i in range(20)] + [f"chip software data {i}" for i in range(20)],
        ...                   ["sport"] * 20 + ["tech"] * 20)
        >>> new = TextDataset([f"goal match team {i}" for i in range(20, 26)], ["tech"] * 6)  # six wrong labels
        >>> merged, _ = merge_labels(old, new, eval_set=TextDataset(["pitch"], ["sport"]))
        >>> chk = check_new_labels(old, new, merged)
        >>> isinstance(chk, LabelCheck), chk.held, chk.n_new, chk.n_flagged_new, chk.old_rate
        (True, True, 6, 6, 0.0)
        >>> chk.rows[0]["given"], chk.rows[0]["suggested"]
        ('tech', 'sport')
    """

    n_new: int
    n_old: int
    n_flagged_new: int
    n_flagged_old: int
    new_rate: float
    old_rate: float
    rows: list[dict[str, Any]]
    model_disagreement: Optional[float]
    model_baseline: Optional[float]
    held: bool
    accepted: bool
    thresholds: dict[str, Any]
    method: str
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def noisy(self) -> bool:
        """The batch crossed the policy's thresholds (held, unless accepted)."""
        return self.held or self.accepted

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-safe data."""
        return {"n_new": self.n_new, "n_old": self.n_old, "n_flagged_new": self.n_flagged_new,
                "n_flagged_old": self.n_flagged_old, "new_rate": self.new_rate, "old_rate": self.old_rate,
                "model_disagreement": self.model_disagreement, "model_baseline": self.model_baseline,
                "held": self.held, "accepted": self.accepted, "thresholds": dict(self.thresholds),
                "method": self.method, "source": self.source, "notes": list(self.notes), "rows": list(self.rows)}

    def evidence(self) -> str:
        """The numbers in one sentence."""
        text = (f"confident learning flags {self.n_flagged_new} of the {self.n_new} new label(s) "
                f"({self.new_rate:.0%}) as likely wrong, against {self.n_flagged_old} of the {self.n_old} labels "
                f"already in the training data ({self.old_rate:.1%})")
        if self.model_disagreement is not None and self.model_baseline is not None:
            text += (f"; the model in use disagrees with {self.model_disagreement:.0%} of the new labels, against "
                     f"{self.model_baseline:.0%} of its sealed evaluation texts")
        return text

    def shown_rows(self, k: int = SHOWN_ROWS) -> str:
        """The first ``k`` flagged rows as one line: row, given label, suggested label, text preview."""
        return "; ".join(f"row {r['row']} {r['given']!r} (looks like {r['suggested']!r}): "
                         f"{_preview(r['text'])}" for r in self.rows[:k])

    def explanation(self, model: str = "MODEL", labels_file: str = "FILE") -> str:
        """The verdict in plain words (what was found and how to proceed)."""
        p = self.thresholds
        rule = (f"the policy holds a batch above {p['label_noise_min']:.0%} and {p['label_noise_ratio']:g}x the old "
                "rate")
        more = f" and {self.n_flagged_new - SHOWN_ROWS} more" if self.n_flagged_new > SHOWN_ROWS else ""
        if self.held:
            return (f"Held: the new labels look wrong. {_cap(self.evidence())} ({rule}). Most suspicious rows of "
                    f"{self.source or 'the new labels'}: {self.shown_rows()}{more}. Nothing was trained. Fix these "
                    f"labels and run `adaptlab retrain {model} {labels_file}` again (write them all with "
                    f"--label-issues FILE), or, if you reviewed them and they are right (e.g. a changed label "
                    f"definition), rerun with --accept-labels.")
        if self.accepted:
            return (f"Label check overridden with --accept-labels: {self.evidence()} ({rule}); the new labels were "
                    "accepted after review and trained on.")
        return f"Label check passed: {self.evidence()}."


def _preview(text: str, n: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat[:n] + ("…" if len(flat) > n else ""))


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def new_label_positions(old: TextDataset, new: TextDataset, merged: TextDataset) -> dict[int, int]:
    """Position in ``merged`` -> row in the new labels file, for every label the new file added or changed.

    Rows that repeat an old text with its old label add nothing to check; texts of the sealed set were
    not merged.
    """
    row_of: dict[str, int] = {}
    for j, t in enumerate(new.texts):
        row_of[_key(t)] = int(new.rows[j]) if new.rows else j + 1
    out: dict[int, int] = {}
    old_labels = old.labels or []
    for i, t in enumerate(merged.texts):
        k = _key(t)
        if k not in row_of:
            continue
        if i >= len(old) or merged.labels[i] != old_labels[i]:
            out[i] = row_of[k]
    return out


def check_new_labels(old: TextDataset, new: TextDataset, merged: TextDataset, *, pipeline: Any = None,
                     evaluation: Optional[dict[str, Any]] = None, policy: Any = None, accept: bool = False,
                     seed: int = 0) -> Optional[LabelCheck]:
    """Check the labels ``new`` adds to ``old`` (``merged`` is the result of the merge).

    ``pipeline`` is the model in use and ``evaluation`` its stored sealed-set evaluation (for the
    second witness); ``policy`` holds the thresholds (default :class:`~adaptlab.decide.Policy`).
    Returns None when there is nothing to judge (no new label, or a single class).

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import check_new_labels, merge_labels
        >>> old = TextDataset([f"goal match team {i}" for i in range(20)] + [f"chip software data {i}" for i in range(20)],
        ...                   ["sport"] * 20 + ["tech"] * 20)
        >>> new = TextDataset([f"goal match team {i}" for i in range(20, 26)], ["tech"] * 6)   # six wrong labels
        >>> merged, _ = merge_labels(old, new, eval_set=TextDataset(["pitch"], ["sport"]))
        >>> chk = check_new_labels(old, new, merged)
        >>> chk.held, chk.new_rate, chk.rows[0]["row"], chk.rows[0]["suggested"]
        (True, 1.0, 6, 'sport')
    """
    from adaptlab.data import check_labels
    from adaptlab.data.bundled import stratified_subsample
    from adaptlab.decide.policy import Policy, noisy_new_labels

    policy = policy or Policy()
    new_rows = new_label_positions(old, new, merged)
    if not new_rows or merged.labels is None:
        return None
    notes: list[str] = []
    old_pos = [i for i in range(len(merged)) if i not in new_rows]
    if len(old_pos) > MAX_OLD_ROWS:
        keep = stratified_subsample([merged.labels[i] for i in old_pos], MAX_OLD_ROWS, seed=seed)
        notes.append(f"the old rate was measured on a stratified sample of {MAX_OLD_ROWS:,} of the "
                     f"{len(old_pos):,} old labels")
        old_pos = sorted(old_pos[i] for i in keep)
    pos = sorted([*old_pos, *new_rows])
    counts: dict[str, int] = {}
    for i in pos:
        counts[merged.labels[i]] = counts.get(merged.labels[i], 0) + 1
    # A class with a single example cannot be judged by a model trained without it (a new class in the
    # batch, typically); its rows are left out of the check rather than flagged for being alone.
    lonely = sorted(c for c, k in counts.items() if k < 2)
    if lonely:
        notes.append(f"class(es) {lonely} have a single example and were not checked")
        pos = [i for i in pos if merged.labels[i] not in lonely]
    if len({merged.labels[i] for i in pos}) < 2 or not any(i in new_rows for i in pos):
        return None
    sub = merged.subset(pos)
    issues = check_labels(sub, seed=seed)
    notes += issues.notes
    is_new = np.asarray([i in new_rows for i in pos])
    flagged = np.zeros(len(pos), dtype=bool)
    flagged[issues.flagged_indices] = True
    n_new, n_old = int(is_new.sum()), int((~is_new).sum())
    n_flag_new, n_flag_old = int((flagged & is_new).sum()), int((flagged & ~is_new).sum())
    new_rate = n_flag_new / n_new
    old_rate = n_flag_old / n_old if n_old else 0.0
    rows = [{"row": new_rows[pos[r.index]], "id": _new_id(r.id), "text": r.text, "given": r.given,
             "suggested": r.suggested, "score": r.score, "suggested_probability": r.suggested_probability}
            for r in issues.rows if is_new[r.index]]
    disagreement, baseline = _model_witness(pipeline, sub, is_new, evaluation)
    noisy = noisy_new_labels(new_rate, old_rate, n_flag_new, policy)
    return LabelCheck(n_new=n_new, n_old=n_old, n_flagged_new=n_flag_new, n_flagged_old=n_flag_old,
                      new_rate=float(new_rate), old_rate=float(old_rate), rows=rows,
                      model_disagreement=disagreement, model_baseline=baseline, held=noisy and not accept,
                      accepted=noisy and accept,
                      thresholds={k: getattr(policy, k) for k in ("label_noise_min", "label_noise_ratio",
                                                                   "label_noise_min_rows")},
                      method=issues.method, source=Path(new.source).name if new.source else "", notes=notes)


def _new_id(merged_id: str) -> str:
    # merge_labels prefixes the ids of added rows with "new:"; the coordinator knows them without it.
    return merged_id[4:] if merged_id.startswith("new:") else merged_id


def _model_witness(pipeline: Any, sub: TextDataset, is_new: np.ndarray,
                   evaluation: Optional[dict[str, Any]]) -> tuple[Optional[float], Optional[float]]:
    """(disagreement of the model in use with the new labels, its error rate on the sealed set)."""
    if pipeline is None:
        return None, None
    from adaptlab.ship.evaluation import predict_names

    idx = np.flatnonzero(is_new)
    pred = predict_names(pipeline, [sub.texts[i] for i in idx])
    given = np.asarray([sub.labels[i] for i in idx], dtype=object)
    acc = (evaluation or {}).get("accuracy")
    return float((pred != given).mean()), (None if acc is None else float(1.0 - acc))


def write_label_issues(check: LabelCheck, path: Union[str, Path]) -> Path:
    """Write the flagged new labels (row in the new file, id, text, given, suggested, score) to CSV/JSONL/Parquet.

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import check_new_labels, merge_labels, write_label_issues
        >>> old = TextDataset([f"goal match team {i}" for i in range(20)] + [f"chip software data {i}" for i in range(20)],
        ...                   ["sport"] * 20 + ["tech"] * 20)
        >>> new = TextDataset([f"goal match team {i}" for i in range(20, 26)], ["tech"] * 6)  # six wrong labels
        >>> merged, _ = merge_labels(old, new, eval_set=TextDataset(["pitch"], ["sport"]))
        >>> chk = check_new_labels(old, new, merged)
        >>> path = write_label_issues(chk, "label-issues.csv")
        >>> lines = path.read_text().splitlines()
        >>> len(lines), lines[0]
        (7, 'rank,row,id,text,given_label,suggested_label,score,suggested_probability')
    """
    from adaptlab.data.label_quality import LabelIssues, SuspiciousRow

    rows = [SuspiciousRow(index=k, row=r["row"], id=r["id"], text=r["text"], given=r["given"],
                          suggested=r["suggested"], score=r["score"],
                          suggested_probability=r["suggested_probability"])
            for k, r in enumerate(check.rows)]
    return LabelIssues(rows=rows, n=check.n_new, noise_rate=check.new_rate, per_class={}, method=check.method,
                       n_folds=0).write(path)
