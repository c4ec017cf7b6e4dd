"""Checks a dataset must pass before a study runs on it.

:func:`validate` returns a list of :class:`~adaptlab.errors.Problem`, each with a code, the source
rows it concerns and a fix. Codes:

============================  ==========  =====================================================
code                          severity    meaning
============================  ==========  =====================================================
``non_string_text``           error       text is a number, null, list... (JSONL, Parquet)
``empty_text``                error       text is empty or whitespace only
``cell_too_long``             error       a text, label, group or id over MAX_CELL_CHARS characters
``nan_label``                 error       label is missing (empty, NaN, NA, null)
``missing_group``             error       group is missing while a group column is used
``bad_timestamp``             error       timestamp is missing or could not be parsed
``missing_labels``            error       labels are required but the dataset has none
``single_class``              error       only one distinct label
``rare_class``                error       a class has fewer than 2 examples
``conflicting_duplicates``    error       the same text appears with different labels
``duplicate_text``            warning     the same text appears more than once, same label
``duplicate_id``              warning     two rows share an id
============================  ==========  =====================================================

The first six are *row-level*: dropping the offending rows fixes them
(``load_dataset(..., on_invalid="drop")`` does that and reports every row it dropped). The others
concern the dataset as a whole and are never fixed by dropping rows silently.

With ``require_labels=False`` a dataset without labels is fine; when it has labels anyway,
``single_class`` and ``rare_class`` become warnings (the data is not used to train a classifier).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Mapping, Optional

import numpy as np

from adaptlab.data.dataset import TextDataset
from adaptlab.data.multilabel import multilabel_problems
from adaptlab.errors import ConfigError, Problem, excerpt_repr
from adaptlab.values import MISSING_LABEL_TOKENS, is_missing  # noqa: F401  (re-exported: load, split)

__all__ = ["validate", "ROW_LEVEL_CODES", "MISSING_LABEL_TOKENS", "MAX_CELL_CHARS", "LONG_TEXT_CHARS", "is_missing",
           "long_texts"]

#: Problems that concern single rows and go away when those rows are dropped.
ROW_LEVEL_CODES = frozenset({"non_string_text", "empty_text", "cell_too_long", "nan_label", "missing_group",
                             "bad_timestamp"})

#: Longest text, label, group or id accepted, in characters (1 MB of ASCII). An encoder reads a few hundred
#: tokens of a text; a cell this long is a broken file (an unclosed quote, a pasted document) and would cost
#: minutes and gigabytes in near-duplicate search and TF-IDF before anything useful happened.
MAX_CELL_CHARS = 1_000_000

#: Texts longer than this many characters are "far longer than the encoder reads": the packaged encoder
#: (all-MiniLM-L6-v2) reads the first 256 word pieces, about 1,000 characters of English, so most of such a
#: text is never seen by the model (``adaptlab data check`` reports them and their share of the file).
LONG_TEXT_CHARS = 5_000

_DROP_HINT = (
    "or drop these rows with --on-invalid drop (API: load_dataset(..., on_invalid='drop')), "
    "which lists each dropped row"
)


def _preview(text: object, width: int = 50) -> str:
    s = text if isinstance(text, str) else repr(text)
    s = " ".join(s.split())
    if len(s) > width:
        s = s[: width - 3] + "..."
    return repr(s)


def _type_summary(values: list[object]) -> str:
    counts = Counter("null" if v is None or is_missing(v) else type(v).__name__ for v in values)
    return ", ".join(f"{name} x{n}" for name, n in counts.most_common())


def _rows(ds: TextDataset, positions: list[int]) -> list[int]:
    return [int(ds.rows[i]) for i in positions]


def validate(dataset: TextDataset, *, require_labels: bool = True) -> list[Problem]:
    """Check a dataset; return every problem found (empty list when it is fine).

    Args:
        dataset: The dataset to check. Texts that are not strings are reported, not converted.
        require_labels: Whether the dataset must be labeled and trainable (at least two classes, two
            examples per class).

    Returns:
        Problems, row-level errors first, then dataset-level errors, then warnings. Rows in each
        problem are the dataset's source rows (``dataset.rows``).

    Example:
        >>> ds = TextDataset(texts=["good", " ", "bad", "good", "fine"],
        ...                  labels=["pos", "neg", "neg", "neg", "pos"])
        >>> [p.code for p in validate(ds)]
        ['empty_text', 'conflicting_duplicates']
    """
    if not isinstance(dataset, TextDataset):
        raise ConfigError.invalid(
            "dataset", f"<{type(dataset).__name__}>", "a TextDataset", "Load it with adaptlab.data.load_dataset()."
        )
    return [p for p, _ in _validate_positions(dataset, require_labels=require_labels)]


# Problems with the dataset positions each concerns.
_Found = list[tuple[Problem, list[int]]]


def _validate_positions(
    ds: TextDataset,
    *,
    require_labels: bool = True,
    timestamp_raw: Optional[Mapping[int, object]] = None,
) -> _Found:
    """Like :func:`validate`, but each problem comes with the dataset positions it concerns.

    ``timestamp_raw`` maps positions of unparseable timestamps to the raw value, so the message can
    show what was in the file. Row-level problems come first, then the dataset's, then warnings.
    """
    row_level, missing_lab = _row_problems(ds, timestamp_raw)
    conflicts, same = _duplicate_problems(ds, missing_lab)
    if ds.label_sets is not None:  # multi-label: its own checks (no label is a warning, not a missing value)
        found = multilabel_problems(ds, require_labels=require_labels)
        errors = [f for f in found if f[0].severity == "error"]
        return row_level + errors + conflicts + same + [f for f in found if f not in errors] + _id_problems(ds)
    dataset_level = _label_problems(ds, missing_lab, require_labels) + conflicts
    return row_level + dataset_level + same + _id_problems(ds)


def _row_problems(ds: TextDataset, timestamp_raw: Optional[Mapping[int, object]]) -> tuple[_Found, set[int]]:
    """Problems of single rows (text, label, group, timestamp), and the positions whose label is missing."""
    row_level: _Found = []
    texts = ds.texts
    non_str = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if non_str:
        row_level.append((Problem(
            code="non_string_text",
            message=f"{len(non_str)} text value(s) are not strings ({_type_summary([texts[i] for i in non_str])})",
            fix="make the text column hold strings (in JSONL quote numbers: \"text\": \"42\"; fill in "
                f"missing texts), {_DROP_HINT}",
            rows=_rows(ds, non_str),
        ), non_str))
    row_level += _too_long(ds)
    empty = [i for i, t in enumerate(texts) if isinstance(t, str) and not t.strip()]
    if empty:
        row_level.append((Problem(
            code="empty_text",
            message=f"{len(empty)} text(s) are empty or whitespace only",
            fix=f"fill in the text, {_DROP_HINT}",
            rows=_rows(ds, empty),
        ), empty))

    labels = ds.labels
    missing_lab: set[int] = set()
    if labels is not None:
        missing_lab = {i for i, v in enumerate(labels) if is_missing(v)}
        if missing_lab:
            pos = sorted(missing_lab)
            row_level.append((Problem(
                code="nan_label",
                message=f"{len(pos)} label(s) are missing (empty, NaN, NA or null)",
                fix=f"label these rows, {_DROP_HINT}; if the file is meant to be unlabeled, load it with "
                    "require_labels=False",
                rows=_rows(ds, pos),
            ), pos))

    if ds.groups is not None:
        miss_g = [i for i, g in enumerate(ds.groups) if is_missing(g)]
        if miss_g:
            row_level.append((Problem(
                code="missing_group",
                message=f"{len(miss_g)} row(s) have no group",
                fix=f"give every row a group (rows of one author, patient, thread... share a group), {_DROP_HINT}",
                rows=_rows(ds, miss_g),
            ), miss_g))

    if ds.timestamps is not None:
        ts = np.asarray(ds.timestamps, dtype="datetime64[ns]")
        bad_ts = np.flatnonzero(np.isnat(ts)).tolist()
        if bad_ts:
            msg = f"{len(bad_ts)} timestamp(s) are missing or could not be parsed"
            if timestamp_raw:
                shown = [
                    f"{_preview(timestamp_raw[i], 30)} (row {ds.rows[i]})"
                    for i in bad_ts[:5] if i in timestamp_raw and not is_missing(timestamp_raw[i])
                ]
                if shown:
                    msg += f", e.g. {', '.join(shown)}"
            row_level.append((Problem(
                code="bad_timestamp",
                message=msg,
                fix="use ISO 8601 dates such as 2024-03-01 or 2024-03-01T14:30:00Z and fill in missing "
                    f"ones, {_DROP_HINT}",
                rows=_rows(ds, bad_ts),
            ), bad_ts))

    return row_level, missing_lab


def _too_long(ds: TextDataset) -> _Found:
    """Rows with a text, label, group or id over :data:`MAX_CELL_CHARS` characters (one problem for all)."""
    where: dict[int, list[str]] = defaultdict(list)
    for role, values in (("text", ds.texts), ("label", ds.labels), ("group", ds.groups), ("id", ds.ids)):
        for i, v in enumerate(values or ()):
            if isinstance(v, str) and len(v) > MAX_CELL_CHARS:
                where[i].append(f"{role} of {len(v):,} characters")
    if not where:
        return []
    pos = sorted(where)
    first = pos[0]
    return [(Problem(
        code="cell_too_long",
        message=f"{len(pos)} row(s) hold a value over the {MAX_CELL_CHARS:,}-character limit (row "
                f"{ds.rows[first]}: {', '.join(where[first])}, starting {_preview(ds.texts[first])})",
        fix="a cell this long is usually a quote that is never closed or a whole document pasted into one cell: "
            f"fix the file, or cut such texts to their first pages (the encoder reads about 1,000 characters), "
            f"{_DROP_HINT}",
        rows=_rows(ds, pos),
    ), pos)]


def long_texts(dataset: TextDataset, max_chars: int = LONG_TEXT_CHARS) -> Optional[dict]:
    """Texts far longer than an encoder reads: how many, their share of the rows and of all characters.

    Returns None when no text is longer than ``max_chars`` characters.

    Example:
        >>> ds = TextDataset(["short"] * 3 + ["word " * 2000], ["a", "b", "a", "b"])
        >>> r = long_texts(ds)
        >>> r["n"], r["share_of_rows"], r["share_of_chars"] > 0.99, r["longest_chars"], r["longest_row"]
        (1, 0.25, True, 10000, 4)
    """
    lengths = np.array([len(t) if isinstance(t, str) else 0 for t in dataset.texts], dtype=np.int64)
    long_pos = np.flatnonzero(lengths > max_chars)
    if not len(long_pos):
        return None
    longest = int(long_pos[np.argmax(lengths[long_pos])])
    return {"n": int(len(long_pos)), "max_chars": int(max_chars),
            "share_of_rows": float(len(long_pos) / max(len(lengths), 1)),
            "share_of_chars": float(lengths[long_pos].sum() / max(int(lengths.sum()), 1)),
            "longest_chars": int(lengths[longest]), "longest_row": int(dataset.rows[longest]),
            "rows": [int(dataset.rows[i]) for i in long_pos[:20]]}


def _label_problems(ds: TextDataset, missing_lab: set[int], require_labels: bool) -> _Found:
    """Problems of the labels as a whole: none at all, a single class, classes with one example."""
    labels = ds.labels
    dataset_level: _Found = []
    if labels is None:
        if require_labels:
            dataset_level.append((Problem(
                code="missing_labels",
                message="the dataset has no labels",
                fix="load it with label_col=NAME (CLI: --label-col NAME), or pass require_labels=False "
                    "if it is unlabeled text",
            ), []))
    else:
        class_severity = "error" if require_labels else "warning"
        present = [i for i in range(len(labels)) if i not in missing_lab]
        counts = Counter(labels[i] for i in present)
        if len(counts) == 1:
            (only, n_only), = counts.items()
            dataset_level.append((Problem(
                code="single_class",
                message=f"all {n_only} labeled texts have the same label {excerpt_repr(only)}",
                fix="a classifier needs at least two classes: check that label_col points at the label "
                    "column, or add examples of the other classes",
                severity=class_severity,
            ), []))
        rare = sorted((c for c, n in counts.items() if n < 2), key=str)
        if rare and len(counts) > 1:
            shown = ", ".join(f"{excerpt_repr(c)} ({counts[c]})" for c in rare[:10])
            more = f" and {len(rare) - 10} more" if len(rare) > 10 else ""
            fix = ("every class needs at least 2 examples so it can appear in training and in evaluation: "
                   "add examples, merge the class into a related one, or remove its rows")
            if len(counts) >= 5 and len(rare) * 2 >= len(counts):
                fix += ("; most classes are this rare, so check that label_col points at the label column "
                        "and not at an id or text column")
            rare_set = set(rare)
            pos = [i for i in present if labels[i] in rare_set]
            dataset_level.append((Problem(
                code="rare_class",
                message=f"{len(rare)} class(es) have fewer than 2 examples: {shown}{more}",
                fix=fix,
                rows=_rows(ds, pos),
                severity=class_severity,
            ), pos))

    return dataset_level


def _duplicate_problems(ds: TextDataset, missing_lab: set[int]) -> tuple[_Found, _Found]:
    """The same text (whitespace collapsed) more than once: with different labels (an error), or the same."""
    texts, labels = ds.texts, ds.labels
    if ds.label_sets is not None:  # multi-label: the same text with two different label sets conflicts too
        labels = ["|".join(s) for s in ds.label_sets]
    dataset_level: _Found = []
    warnings: _Found = []
    # Duplicates: the same text once whitespace is stripped and collapsed.
    by_text: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(texts):
        if isinstance(t, str) and t.strip():
            by_text[" ".join(t.split())].append(i)
    conflicts: list[tuple[str, list[int]]] = []
    same: list[list[int]] = []
    for key, pos in by_text.items():
        if len(pos) < 2:
            continue
        if labels is not None:
            distinct = {labels[i] for i in pos if i not in missing_lab}
            if len(distinct) > 1:
                conflicts.append((key, pos))
                continue
        same.append(pos)
    if conflicts:
        shown = "; ".join(
            f"{_preview(key)} (" + ", ".join(f"row {ds.rows[i]}: {excerpt_repr(labels[i])}" for i in pos[:4])
            + (", ..." if len(pos) > 4 else "") + ")"
            for key, pos in conflicts[:5]
        )
        more = f"; and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        pos_all = sorted(i for _, pos in conflicts for i in pos)
        dataset_level.append((Problem(
            code="conflicting_duplicates",
            message=f"{len(conflicts)} text(s) appear more than once with different labels: {shown}{more}",
            fix="decide the correct label for each of these texts and fix the file (or delete the wrong "
                "copies); adaptlab does not guess which label is right",
            rows=_rows(ds, pos_all),
        ), pos_all))
    if same:
        extra = sorted(i for pos in same for i in pos[1:])
        warnings.append((Problem(
            code="duplicate_text",
            message=f"{len(same)} text(s) appear more than once{' with the same label' if labels is not None else ''} "
                    f"({len(extra)} extra "
                    f"copies, e.g. {_preview(texts[same[0][0]])} at rows "
                    f"{', '.join(str(ds.rows[i]) for i in same[0][:4])})",
            fix="usually harmless, but a copy in training and another in test inflates scores: remove the "
                "extra copies, or keep them and let split_dataset keep duplicates together and report "
                "any that cross splits",
            rows=_rows(ds, extra),
            severity="warning",
        ), extra))

    return dataset_level, warnings


def _id_problems(ds: TextDataset) -> _Found:
    """Ids an earlier row already has (a warning: outputs are keyed by id)."""
    warnings: _Found = []
    if ds.ids is not None:
        seen: dict[str, int] = {}
        dup_ids = []
        for i, v in enumerate(ds.ids):
            if v in seen:
                dup_ids.append(i)
            else:
                seen[v] = i
        if dup_ids:
            warnings.append((Problem(
                code="duplicate_id",
                message=f"{len(dup_ids)} row(s) reuse an id that an earlier row has "
                        f"(e.g. {excerpt_repr(ds.ids[dup_ids[0]])})",
                fix="make ids unique (predictions and reports are keyed by id), or leave id_col unset to "
                    "use row numbers",
                rows=_rows(ds, dup_ids),
                severity="warning",
            ), dup_ids))

    return warnings
