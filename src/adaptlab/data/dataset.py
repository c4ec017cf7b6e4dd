"""`TextDataset`: the texts a study works on, with optional labels, groups and timestamps."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np


def text_hash(text: str) -> str:
    """Stable content hash of one text (used by the embedding cache and leakage checks).

    Example:
        >>> from adaptlab.data import text_hash
        >>> text_hash("The market rallied.") == text_hash("The market rallied.")
        True
        >>> text_hash("The market rallied.") == text_hash("the market rallied.")
        False
        >>> len(text_hash("any text"))
        32
    """
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass
class TextDataset:
    """Texts plus optional labels, groups and timestamps, all aligned by position.

    ``rows`` keeps the 1-based row number each item had in its source file, so every report can point
    the user back to the original line. Labels are strings (a CSV has no other type), groups too.

    Example:
        >>> ds = TextDataset(texts=["good", "bad", "fine"], labels=["pos", "neg", "pos"])
        >>> len(ds), ds.classes
        (3, ['neg', 'pos'])
        >>> ds.subset([0, 2]).labels
        ['pos', 'pos']
    """

    texts: list[str]
    labels: Optional[list[str]] = None
    groups: Optional[list[str]] = None
    timestamps: Optional[np.ndarray] = None  # datetime64[ns]
    ids: Optional[list[str]] = None
    rows: Optional[list[int]] = None
    source: str = ""
    # The file the rows were read from when ``source`` shows another name (the web app shows the user's file
    # name, its upload lies under a server path): where a stored study finds its data again. "" = ``source``.
    path: str = field(default="", repr=False, compare=False)
    # The file's columns each role was read from (text, label, group, time, id), as load_dataset chose them.
    columns: Optional[dict[str, str]] = field(default=None, repr=False, compare=False)
    _hash: Optional[str] = field(default=None, repr=False, compare=False)
    # Multi-label data: the labels of each text (a tuple, possibly empty), with ``labels`` left None so that
    # no single-label code path can read them as classes. None for single-label and unlabeled data.
    label_sets: Optional[list[tuple[str, ...]]] = None

    def __post_init__(self) -> None:
        n = len(self.texts)
        if self.label_sets is not None:
            if self.labels is not None:
                raise ValueError("a dataset has labels (single-label) or label_sets (multi-label), not both")
            self.label_sets = [tuple(sorted(set(s))) for s in self.label_sets]
        for name in ("labels", "groups", "ids", "rows", "label_sets"):
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise ValueError(f"{name} has {len(col)} entries but texts has {n}")
        if self.timestamps is not None and len(self.timestamps) != n:
            raise ValueError(f"timestamps has {len(self.timestamps)} entries but texts has {n}")
        if self.rows is None:
            self.rows = list(range(1, n + 1))
        if self.ids is None:
            self.ids = [str(r) for r in self.rows]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def has_labels(self) -> bool:
        """Whether the dataset has single-label labels (unlabeled and multi-label data have none)."""
        return self.labels is not None

    @property
    def task(self) -> str:
        """``"multilabel"`` when each text has a set of labels, else ``"single"`` (also for unlabeled data).

        Example:
            >>> TextDataset(["a", "b"], label_sets=[("x", "y"), ()]).task, TextDataset(["a"], ["x"]).task
            ('multilabel', 'single')
        """
        return "multilabel" if self.label_sets is not None else "single"

    @property
    def classes(self) -> list[str]:
        """The distinct labels, sorted (empty without labels); for multi-label data every label seen."""
        if self.label_sets is not None:
            return sorted({lab for s in self.label_sets for lab in s})
        return sorted(set(self.labels or []))

    def label_counts(self) -> dict[str, int]:
        """Rows per label, sorted by label (multi-label: rows carrying each label)."""
        if self.label_sets is not None:
            return dict(sorted(Counter(lab for s in self.label_sets for lab in s).items()))
        return dict(sorted(Counter(self.labels or []).items()))

    def label_matrix(self, classes: Optional[Sequence[str]] = None) -> np.ndarray:
        """Multi-label data as a 0/1 matrix (texts x labels, columns in ``classes`` order, default :attr:`classes`).

        Example:
            >>> TextDataset(["a", "b"], label_sets=[("x", "y"), ("y",)]).label_matrix().tolist()
            [[1, 1], [0, 1]]
        """
        if self.label_sets is None:
            raise ValueError("label_matrix needs multi-label data (label_sets)")
        cols = list(self.classes if classes is None else classes)
        index = {c: j for j, c in enumerate(cols)}
        out = np.zeros((len(self), len(cols)), dtype=np.int8)
        for i, s in enumerate(self.label_sets):
            for lab in s:
                if lab in index:
                    out[i, index[lab]] = 1
        return out

    @property
    def y(self) -> np.ndarray:
        """The labels as a numpy object array; a ValueError without labels (a DataError for multi-label data)."""
        require_single_label(self, "this step")
        if self.labels is None:
            raise ValueError("this dataset has no labels")
        return np.asarray(self.labels, dtype=object)

    def subset(self, indices: Sequence[int]) -> "TextDataset":
        """The rows at ``indices`` (labels, groups, times and ids follow), in that order."""
        idx = [int(i) for i in indices]
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            labels=None if self.labels is None else [self.labels[i] for i in idx],
            groups=None if self.groups is None else [self.groups[i] for i in idx],
            timestamps=None if self.timestamps is None else self.timestamps[idx],
            ids=[self.ids[i] for i in idx],
            rows=[self.rows[i] for i in idx],
            source=self.source,
            path=self.path,
            columns=self.columns,
            label_sets=None if self.label_sets is None else [self.label_sets[i] for i in idx],
        )

    @property
    def content_hash(self) -> str:
        """Hash of texts, labels, groups and timestamps (not of ids or source), order-sensitive."""
        if self._hash is None:
            h = hashlib.sha256()
            for name, col in (("t", self.texts), ("l", self.labels), ("g", self.groups)):
                h.update(name.encode())
                if col is not None:
                    h.update(json.dumps(col, ensure_ascii=False).encode("utf-8"))
            if self.timestamps is not None:
                h.update(np.asarray(self.timestamps, dtype="datetime64[ns]").astype("int64").tobytes())
            if self.label_sets is not None:  # only then: single-label hashes (and study ids) stay as they were
                h.update(b"ml")
                h.update(json.dumps([list(s) for s in self.label_sets], ensure_ascii=False).encode("utf-8"))
            self._hash = h.hexdigest()[:20]
        return self._hash

    @classmethod
    def concat(cls, datasets: Sequence["TextDataset"]) -> "TextDataset":
        """Stack datasets end to end, e.g. a training file followed by a separate test file.

        Optional columns (labels, groups, timestamps) must be present in all datasets or in none.
        ``rows`` keep their values from each source file; ``source`` joins the sources with " + ".

        Example:
            >>> a = TextDataset(texts=["x", "y"], labels=["1", "0"])
            >>> b = TextDataset(texts=["z"], labels=["1"])
            >>> both = TextDataset.concat([a, b])
            >>> len(both), both.rows
            (3, [1, 2, 1])
        """
        parts = list(datasets)
        if not parts:
            raise ValueError("concat needs at least one dataset")

        def joined(name: str) -> Optional[list]:
            cols = [getattr(d, name) for d in parts]
            if all(c is None for c in cols):
                return None
            if any(c is None for c in cols):
                raise ValueError(f"cannot concat: some datasets have {name} and others do not")
            return [v for c in cols for v in c]

        ts = [d.timestamps for d in parts]
        if all(t is None for t in ts):
            timestamps = None
        elif any(t is None for t in ts):
            raise ValueError("cannot concat: some datasets have timestamps and others do not")
        else:
            timestamps = np.concatenate([np.asarray(t, dtype="datetime64[ns]") for t in ts])
        return cls(
            texts=[t for d in parts for t in d.texts],
            label_sets=joined("label_sets"),
            labels=joined("labels"),
            groups=joined("groups"),
            timestamps=timestamps,
            ids=[i for d in parts for i in d.ids],
            rows=[r for d in parts for r in d.rows],
            source=" + ".join(dict.fromkeys(d.source for d in parts if d.source)),
        )


def require_single_label(dataset: Any, what: str, instead: str = "") -> None:
    """Refuse multi-label data in a path that handles one label per text, with what works instead.

    Every single-label-only entry point calls it, so multi-label data gets this error, never a wrong answer.

    Example:
        >>> require_single_label(TextDataset(["a"], ["x"]), "retrain")  # single-label: passes
        >>> require_single_label(TextDataset(["a"], label_sets=[("x", "y")]), "retrain")
        Traceback (most recent call last):
        ...
        adaptlab.errors.DataError: retrain handles one label per text, but this data is multi-label (each text has a set of labels). Fix: multi-label data works with: load_dataset, adaptlab data check, split_dataset, the tfidf and probe rungs (see docs/guides/multilabel.md).
    """
    from adaptlab.errors import DataError

    if getattr(dataset, "label_sets", None) is None:
        return
    raise DataError(
        f"{what} handles one label per text, but this data is multi-label (each text has a set of labels). "
        f"Fix: {instead or MULTILABEL_WORKS}."
    )


#: What handles multi-label data today (the "instead" of every single-label-only error).
MULTILABEL_WORKS = ("multi-label data works with: load_dataset, adaptlab data check, split_dataset, the tfidf and "
                    "probe rungs (see docs/guides/multilabel.md)")
