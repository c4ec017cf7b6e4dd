"""Multi-label data: reading label sets from a file, telling multi-label from single-label, and its checks.

A multi-label file gives each text a *set* of labels, in one of two shapes:

* one label column holding several labels: separated by ``sep`` (default ``|``: ``"sport|politics"``), or
  a JSON list (``["sport", "politics"]``; JSON Lines and Parquet lists too). An empty cell or ``[]`` is a
  text with no label (kept: in multi-label data "none of these" is an answer, and listed by the checks);
* one 0/1 column per label (``label_cols=["sport", "politics"]``, CLI ``--label-cols sport,politics``).

With ``task=None`` the task is detected: a label column whose cells hold lists, JSON lists or the separator is
multi-label, and the load report says which rule fired (``LoadReport.task_note``).

Example:
    >>> parse_label_sets(["a|b", "[\\"c\\"]", "", None], sep="|")
    [('a', 'b'), ('c',), (), ()]
    >>> detect_task(["a|b", "c"], sep="|")[0]
    'multilabel'
    >>> detect_task(["a", "c"], sep="|")[0]
    'single'
"""
from __future__ import annotations

import json
from collections import Counter
from itertools import combinations
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.data.dataset import TextDataset
from adaptlab.errors import ConfigError, DataError, Problem, excerpt_repr
from adaptlab.values import is_missing

__all__ = ["TASKS", "parse_label_sets", "detect_task", "label_sets_from_columns", "multilabel_summary",
           "multilabel_problems", "RARE_LABEL_COUNT"]

#: The values of ``task`` (``--task``); None (the default) detects it.
TASKS = ("single", "multilabel")
#: A label seen in fewer rows than this is listed as rare (too few to train and evaluate it on each split).
RARE_LABEL_COUNT = 5
_TRUE = frozenset({"1", "true", "yes", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "f", ""})


def check_task(task: Optional[str]) -> Optional[str]:
    """``task`` when valid (None = detect); a ConfigError naming the allowed values otherwise."""
    if task is not None and task not in TASKS:
        raise ConfigError.invalid("task", task, "'single', 'multilabel' or None (detect)")
    return task


def _json_list(s: str) -> Optional[list]:
    if not (s.startswith("[") and s.endswith("]")):
        return None
    try:
        value = json.loads(s)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _one_set(value: Any, sep: str) -> tuple[str, ...]:
    if isinstance(value, (list, tuple, set, np.ndarray)):
        items = list(value)
    elif is_missing(value):
        return ()
    else:
        s = str(value).strip()
        items = _json_list(s)
        if items is None:
            items = s.split(sep) if sep else [s]
    out = []
    for v in items:
        if is_missing(v):
            continue
        text = str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v).strip()
        if text:
            out.append(text)
    return tuple(sorted(set(out)))


def parse_label_sets(values: Sequence[Any], *, sep: str = "|") -> list[tuple[str, ...]]:
    """Each cell of a label column as a sorted tuple of labels (empty for a cell with no label).

    Example:
        >>> parse_label_sets([["x", "y"], "y | z", "[]"], sep="|")
        [('x', 'y'), ('y', 'z'), ()]
    """
    return [_one_set(v, sep) for v in values]


def detect_task(values: Sequence[Any], *, sep: str = "|") -> tuple[str, str]:
    """``("multilabel" | "single", why)`` for a label column's raw values.

    Multi-label when a cell holds a list (JSON Lines, Parquet), a JSON list as text, or the separator ``sep``
    in most rows or between parts that are labels on their own elsewhere (a class named ``"A|B"`` whose parts
    never stand alone stays a single label).

    Example:
        >>> detect_task([["x"], ["x", "y"]])
        ('multilabel', 'label cells hold lists (2 of 2 rows)')
    """
    lists = sum(isinstance(v, (list, tuple, np.ndarray)) for v in values)
    if lists:
        return "multilabel", f"label cells hold lists ({lists} of {len(values)} rows)"
    strings = [v.strip() for v in values if isinstance(v, str)]
    json_lists = sum(_json_list(s) is not None for s in strings)
    if json_lists:
        return "multilabel", f"label cells hold JSON lists ({json_lists} of {len(values)} rows)"
    joined = [s for s in strings if sep and sep in s]
    if joined and _separated_labels(strings, joined, sep):
        return "multilabel", f"label cells hold {sep!r}-separated labels ({len(joined)} of {len(values)} rows)"
    if joined:
        return "single", (f"one label per cell ({len(joined)} label(s) contain {sep!r}, but their parts are never "
                          "labels on their own: pass task='multilabel' if they are label sets)")
    return "single", "one label per cell"


def _separated_labels(strings: Sequence[str], joined: Sequence[str], sep: str) -> bool:
    # A class name that merely contains the separator ("A|B", never "A" alone) keeps a single-label file
    # single-label; label sets share their parts with the cells that hold one label, or are most rows.
    whole = {s for s in strings if sep not in s}
    parts = {p.strip() for s in joined for p in s.split(sep)}
    return bool(parts & whole) or len(joined) >= 0.5 * len(strings)


def _flag(value: Any) -> Optional[bool]:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and not is_missing(value):
        return {0: False, 1: True}.get(float(value))  # type: ignore[call-overload]
    if is_missing(value):
        return False
    return True if str(value).strip().lower() in _TRUE else (False if str(value).strip().lower() in _FALSE else None)


def label_sets_from_columns(columns: dict[str, Sequence[Any]], rows: Sequence[int], source: Any) -> list[tuple[str, ...]]:
    """Label sets from one 0/1 column per label (``{label: values}``); other values are a DataError.

    Example:
        >>> label_sets_from_columns({"a": [1, 0], "b": ["1", "true"]}, [1, 2], "f.csv")
        [('a', 'b'), ('b',)]
    """
    n = len(rows)
    sets: list[list[str]] = [[] for _ in range(n)]
    for name, values in columns.items():
        for i, v in enumerate(values):
            flag = _flag(v)
            if flag is None:
                bad = [rows[k] for k, w in enumerate(values) if _flag(w) is None]
                raise DataError(
                    f"{source}: label column {excerpt_repr(name)} holds {excerpt_repr(v)} on row {rows[i]} "
                    f"({len(bad)} row(s) in all: {', '.join(map(str, bad[:10]))}); a label column of --label-cols "
                    "holds 0/1 (or true/false) per row. Fix: correct those cells, or leave the column out of "
                    "--label-cols."
                )
            if flag:
                sets[i].append(str(name))
    return [tuple(sorted(s)) for s in sets]


def _cooccurrence(sets: Sequence[tuple[str, ...]], counts: Counter, top: int) -> list[dict[str, Any]]:
    pairs: Counter = Counter()
    for s in sets:
        pairs.update(combinations(s, 2))
    out = []
    for (a, b), n in pairs.most_common(top):
        union = counts[a] + counts[b] - n
        out.append({"labels": [a, b], "rows": int(n), "jaccard": round(n / union, 4) if union else 0.0})
    return out


def multilabel_summary(ds: TextDataset, *, min_count: int = RARE_LABEL_COUNT, top_pairs: int = 10) -> dict[str, Any]:
    """Label cardinality, density, rows without a label, rare labels and the most frequent label pairs.

    Example:
        >>> ds = TextDataset(["a", "b", "c"], label_sets=[("x", "y"), ("x",), ()])
        >>> s = multilabel_summary(ds, min_count=2)
        >>> s["n_labels"], s["cardinality"], s["rows_without_label"]["n"], s["rare_labels"], s["pairs"][0]["labels"]
        (2, 1.0, 1, {'y': 1}, ['x', 'y'])
    """
    sets = ds.label_sets or []
    counts = Counter(lab for s in sets for lab in s)
    sizes = np.array([len(s) for s in sets]) if sets else np.zeros(0)
    empty = [int(ds.rows[i]) for i, s in enumerate(sets) if not s]
    return {
        "task": "multilabel",
        "n": len(sets),
        "n_labels": len(counts),
        "label_counts": dict(sorted(counts.items())),
        "cardinality": round(float(sizes.mean()), 4) if len(sizes) else 0.0,
        "density": round(float(sizes.mean()) / len(counts), 4) if counts and len(sizes) else 0.0,
        "max_labels_per_row": int(sizes.max()) if len(sizes) else 0,
        "distinct_label_sets": len(set(sets)),
        "rows_without_label": {"n": len(empty), "rows": empty[:50]},
        "min_count": int(min_count),
        "rare_labels": {lab: int(n) for lab, n in sorted(counts.items()) if n < min_count},
        "pairs": _cooccurrence(sets, counts, top_pairs),
    }


def multilabel_problems(ds: TextDataset, *, require_labels: bool = True,
                        min_count: int = RARE_LABEL_COUNT) -> list[tuple[Problem, list[int]]]:
    """Problems of multi-label data with the positions each concerns: fewer than two labels (an error when
    labels are required), rows without any label and rare labels (warnings)."""
    sets = ds.label_sets or []
    counts = Counter(lab for s in sets for lab in s)
    found: list[tuple[Problem, list[int]]] = []
    if len(counts) < 2:
        found.append((Problem(
            code="single_class", severity="error" if require_labels else "warning",
            message=f"the multi-label data has {len(counts)} distinct label(s) ({', '.join(map(excerpt_repr, counts))})",
            fix="multi-label needs at least two labels: check the label column and its separator (--label-sep), or "
                "load a 0/1 column as a single-label task (--task single)"), []))
    empty = [i for i, s in enumerate(sets) if not s]
    if empty:
        found.append((Problem(
            code="no_labels", severity="warning",
            message=f"{len(empty)} row(s) have no label at all (kept: a multi-label model may answer 'none')",
            fix="check those rows were labeled; drop them if they were skipped rather than judged to carry no label",
            rows=[int(ds.rows[i]) for i in empty]), empty))
    rare = {lab: n for lab, n in sorted(counts.items()) if n < min_count}
    if rare and len(counts) >= 2:
        shown = ", ".join(f"{excerpt_repr(lab)} ({n})" for lab, n in list(rare.items())[:10])
        more = f" and {len(rare) - 10} more" if len(rare) > 10 else ""
        pos = [i for i, s in enumerate(sets) if any(lab in rare for lab in s)]
        found.append((Problem(
            code="rare_label", severity="warning",
            message=f"{len(rare)} label(s) are seen in fewer than {min_count} rows: {shown}{more}",
            fix="their F1 will be noisy or undefined on a split: add examples, merge them into a related label, "
                "or drop the label", rows=[int(ds.rows[i]) for i in pos]), pos))
    return found
