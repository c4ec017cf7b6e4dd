"""Likely label errors: confident learning (cleanlab) on out-of-fold probabilities of a cheap model.

Wrong labels are the most likely fault of a labeling loop run by people who are not engineers. This
module finds the rows whose label the data itself argues against, before they train anything:

1. Out-of-fold predicted probabilities by stratified K-fold cross-validation on the labeled pool only
   (the caller never passes a sealed test set): every row is scored by a model that did not see it.
   The default model is the ``tfidf`` rung's recipe on unigrams (word TF-IDF + class-weighted logistic
   regression), fast enough for thousands of texts in seconds; ``features=`` swaps TF-IDF for any
   feature matrix (e.g. frozen-encoder embeddings), ``probabilities=`` takes out-of-fold probabilities
   computed elsewhere.
2. :func:`cleanlab.filter.find_label_issues` flags the rows, ranked by self-confidence (the
   out-of-fold probability of the given label: low means suspicious).
3. :func:`cleanlab.count.estimate_joint` (the calibrated confident joint of given and true labels)
   gives the estimated noise rate per class and overall.

This stage sits left of ``rungs``, so the cheap model is built here from scikit-learn directly, with
the same settings as :mod:`adaptlab.rungs.tfidf` (no upward import).

Example:
    >>> from adaptlab.data import TextDataset, check_labels
    >>> texts = [f"goal match team {i}" for i in range(20)] + [f"chip software data {i}" for i in range(20)]
    >>> labels = ["sport"] * 20 + ["tech"] * 20
    >>> labels[3] = "tech"                       # one wrong label
    >>> issues = check_labels(TextDataset(texts, labels))
    >>> [(r.row, r.given, r.suggested) for r in issues.rows]
    [(4, 'tech', 'sport')]
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np

from adaptlab.data.dataset import TextDataset
from adaptlab.data.safe_csv import safe_frame
from adaptlab.errors import ConfigError

DEFAULT_FOLDS = 5
# Fixed C (no search): a search would need a validation split inside every fold. On BBC News and
# tweets with 10% and 30% flipped labels, C=1 flagged the flips with better precision than C=10 or 100
# (out-of-fold probabilities of a strongly regularised head rank better) and ran 2-3x faster.
DEFAULT_C = 1.0
# Above this many labeled rows a stratified, seeded sample of them is checked: the noise rates are
# shares, and the check must stay bounded (seconds to a minute on 2 CPU cores) on 100k-row data.
DEFAULT_MAX_ROWS = 20_000
WRITE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


@dataclass
class SuspiciousRow:
    """One row whose label the out-of-fold model argues against.

    ``row`` is the row number the loader gave it (1 = first record after the header), ``index`` its
    position in the dataset that was checked. ``score`` is the label quality: the out-of-fold
    probability of the given label (lower = more likely wrong); ``suggested_probability`` that of the
    suggested label.

    Example:
        >>> from adaptlab.data import TextDataset, check_labels
        >>> texts = [f"goal match team {i}" for i in range(20)] + [f"chip software data {i}" for i in range(20)]
        >>> labels = ["sport"] * 20 + ["tech"] * 20
        >>> labels[3] = "tech"                         # one wrong label
        >>> row = check_labels(TextDataset(texts, labels)).rows[0]
        >>> row.row, row.text, row.given, row.suggested, row.score < 0.5
        (4, 'goal match team 3', 'tech', 'sport', True)
    """

    index: int
    row: int
    id: str
    text: str
    given: str
    suggested: str
    score: float
    suggested_probability: float

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict (JSON-safe)."""
        return asdict(self)


@dataclass
class LabelIssues:
    """What :func:`check_labels` found: ranked suspicious rows and the estimated noise rates.

    Example:
        >>> issues = LabelIssues(rows=[], n=10, noise_rate=0.0, per_class={}, method="m", n_folds=5)
        >>> issues.n_flagged, issues.summary()
        (0, 'estimated label noise 0.0% of 10 labeled rows; no row flagged as likely mislabeled')
    """

    rows: list[SuspiciousRow]
    n: int
    noise_rate: float
    per_class: dict[str, dict[str, Any]]
    method: str
    n_folds: int
    notes: list[str] = field(default_factory=list)
    n_total: Optional[int] = None  # rows of the data when a sample of ``n`` of them was checked

    @property
    def sampled(self) -> bool:
        """Only a stratified sample of the data was checked (``n`` of ``n_total`` rows)."""
        return self.n_total is not None and self.n_total > self.n

    @property
    def n_flagged(self) -> int:
        """How many rows were flagged."""
        return len(self.rows)

    @property
    def flagged_indices(self) -> list[int]:
        """Positions (in the checked dataset) of the flagged rows, most suspicious first."""
        return [r.index for r in self.rows]

    def top(self, k: int = 10) -> list[SuspiciousRow]:
        """The ``k`` most suspicious rows (the rows are sorted, most suspicious first)."""
        return self.rows[:k]

    def summary(self) -> str:
        """One line in plain words."""
        head = f"estimated label noise {self.noise_rate:.1%} of {self.n} labeled rows"
        if self.sampled:
            head += f" (a stratified sample of the {self.n_total:,})"
        if not self.rows:
            return f"{head}; no row flagged as likely mislabeled"
        noisy = sorted(self.per_class.items(), key=lambda kv: -kv[1]["noise_rate"])[:3]
        worst = ", ".join(f"{c} {v['noise_rate']:.1%}" for c, v in noisy if v["noise_rate"] >= 0.0005)
        return (f"{head}{f' (highest: {worst})' if worst else ''}; {self.n_flagged} row(s) flagged as likely "
                "mislabeled")

    def to_dict(self, limit: Optional[int] = None) -> dict[str, Any]:
        """JSON-ready; ``limit`` keeps only the first rows (the counts stay complete)."""
        rows = self.rows if limit is None else self.rows[:limit]
        return {"n": self.n, "n_flagged": self.n_flagged, "noise_rate": self.noise_rate,
                "per_class": self.per_class, "method": self.method, "n_folds": self.n_folds,
                "notes": list(self.notes), "rows": [r.to_dict() for r in rows],
                **({"n_total": self.n_total, "sampled": True} if self.sampled else {})}

    def to_frame(self) -> Any:
        """The flagged rows as a pandas DataFrame (rank, row, id, text, labels, scores)."""
        import pandas as pd

        cols = ["rank", "row", "id", "text", "given_label", "suggested_label", "score", "suggested_probability"]
        return pd.DataFrame([[k + 1, r.row, r.id, r.text, r.given, r.suggested, r.score, r.suggested_probability]
                             for k, r in enumerate(self.rows)], columns=cols)

    def write(self, path: Union[str, Path]) -> Path:
        """Write every flagged row, most suspicious first, as CSV, TSV, JSONL or Parquet (by suffix).

        Example:
            >>> LabelIssues([], 0, 0.0, {}, "m", 5).write("issues.txt")
            Traceback (most recent call last):
            ...
            adaptlab.errors.ConfigError: label issues file='issues.txt' is not valid: expected a file ending in .csv, .tsv, .jsonl, .ndjson or .parquet. Rename it, e.g. issues.csv.
        """
        return write_table(self.to_frame(), path, what="label issues file")


def write_table(frame: Any, path: Union[str, Path], *, what: str = "output file") -> Path:
    """Write a pandas frame as CSV, TSV, JSONL or Parquet, chosen by the file's suffix.

    Example:
        >>> import pandas as pd
        >>> write_table(pd.DataFrame({"a": [1]}), "out.txt", what="suggestions file")
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: suggestions file='out.txt' is not valid: expected a file ending in .csv, .tsv, .jsonl, .ndjson or .parquet. Rename it, e.g. out.csv.
    """
    path = Path(path).expanduser()
    fmt = issues_file_format(path, what=what)
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for rec in frame.to_dict(orient="records"):
                fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    else:
        # Safe cells: a label or text starting with = + - @ never runs as a spreadsheet formula.
        safe_frame(frame).to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")
    return path


def issues_file_format(path: Union[str, Path], *, what: str = "label issues file") -> str:
    """The format a label-issues (or other table) file is written in (from its suffix); checks the folder exists.

    Call it before long work, so a wrong output name fails at once.

    Example:
        >>> issues_file_format("issues.jsonl")
        'jsonl'
    """
    path = Path(path).expanduser()
    fmt = WRITE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError.invalid(what, str(path), "a file ending in .csv, .tsv, .jsonl, .ndjson "
                                  "or .parquet", f"Rename it, e.g. {path.stem or 'issues'}.csv.")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {str(path)!r}: the folder {str(path.parent)!r} does not exist. "
                          "Create it or choose another path.")
    return fmt


class OutOfFold(NamedTuple):
    """Out-of-fold probabilities (columns in ``classes`` order) and how they were made.

    Example:
        >>> from adaptlab.data import TextDataset, out_of_fold_probabilities
        >>> ds = TextDataset([f"goal team {i}" for i in range(6)] + [f"chip data {i}" for i in range(6)],
        ...                  ["sport"] * 6 + ["tech"] * 6)
        >>> oof = out_of_fold_probabilities(ds, n_folds=3)
        >>> oof.probabilities.shape, oof.classes, oof.n_folds
        ((12, 2), ['sport', 'tech'], 3)
        >>> bool((oof.probabilities.argmax(1) == [0] * 6 + [1] * 6).all())
        True
    """

    probabilities: np.ndarray
    classes: list[str]
    n_folds: int
    notes: list[str]


def _class_index(labels: Sequence[str], source: str) -> tuple[list[str], np.ndarray]:
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ConfigError(f"{source} has a single class ({classes[0] if classes else 'none'}): label errors are "
                          "judged against the other classes. Add labeled examples of at least one more class.")
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.asarray([index[c] for c in labels], dtype=np.int64)


def _folds(y: np.ndarray, classes: list[str], n_folds: int) -> tuple[int, list[str]]:
    """Folds for stratified CV: fewer when a class is smaller than ``n_folds`` (with a note saying so)."""
    counts = np.bincount(y, minlength=len(classes))
    smallest = int(counts.min())
    if smallest < 2:
        tiny = [c for c, k in zip(classes, counts) if k < 2]
        raise ConfigError(f"class(es) {tiny} have a single labeled example: no model can be trained without it to "
                          "judge its label. Add at least one more example of each, or drop these rows.")
    if smallest >= n_folds:
        return n_folds, []
    small = min(range(len(classes)), key=lambda i: counts[i])
    # Stratified K-fold needs every class in every fold; fewer folds keep each row out-of-fold.
    return smallest, [f"class {classes[small]!r} has only {smallest} examples, so {smallest}-fold cross-validation "
                      f"was used instead of {n_folds}-fold; its rows are judged by models that saw few examples "
                      "of it, so treat flags on small classes with care"]


def _tfidf_features(texts: Sequence[str]) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    # The tfidf rung's recipe with unigrams only: on BBC News and tweets with 10% flipped labels,
    # bigrams found the same flips (precision at k within 0.01) at 3-8x the time (2,225 BBC articles:
    # ~6 s instead of ~20 s on 2 CPU cores). Fitting the vocabulary on all texts reads no label, so the
    # probabilities stay out-of-fold with respect to the labels.
    min_df = min(2, max(1, len(texts) // 2))
    vec = TfidfVectorizer(ngram_range=(1, 1), min_df=min_df, max_features=200_000, sublinear_tf=True,
                          dtype=np.float32)
    return vec.fit_transform(list(texts))


def out_of_fold_probabilities(dataset: TextDataset, *, features: Any = None, n_folds: int = DEFAULT_FOLDS,
                              seed: int = 0, C: float = DEFAULT_C) -> OutOfFold:
    """Out-of-fold class probabilities of every labeled row, by stratified K-fold cross-validation.

    Returns an :class:`OutOfFold` ``(probabilities, classes, n_folds, notes)``: columns follow
    ``classes`` (sorted label names); ``n_folds`` may be fewer than asked when a class is small. The
    model is class-weighted logistic regression on TF-IDF n-grams, or on ``features`` (one row per
    text, e.g. frozen-encoder embeddings) when given. Pass the labeled pool only, never a sealed test.

    Example:
        >>> ds = TextDataset([f"goal team {i}" for i in range(6)] + [f"chip data {i}" for i in range(6)],
        ...                  ["sport"] * 6 + ["tech"] * 6)
        >>> proba, classes, k, notes = out_of_fold_probabilities(ds, n_folds=3)
        >>> proba.shape, classes, k
        ((12, 2), ['sport', 'tech'], 3)
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    if dataset.labels is None:
        raise ConfigError("the data has no labels to check; pass --label-col NAME (default: label).")
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ConfigError.invalid("n_folds", n_folds, "an integer >= 2 (5 is the default)")
    classes, y = _class_index(dataset.labels, dataset.source or "the data")
    k, notes = _folds(y, classes, n_folds)
    X = _tfidf_features(dataset.texts) if features is None else features
    if not hasattr(X, "shape"):
        X = np.asarray(X, dtype=np.float64)  # a list of feature rows
    if getattr(X, "shape", (len(dataset),))[0] != len(dataset):
        raise ConfigError(f"features has {X.shape[0]} rows but the data has {len(dataset)} texts; pass one "
                          "feature row per text, in the same order.")
    proba = np.zeros((len(dataset), len(classes)))
    for train, held in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        # tol 1e-3 (not 1e-4): the ranking needs probabilities, not the last digits of the optimum.
        head = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, tol=1e-3, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            head.fit(X[train], y[train])
        proba[np.ix_(held, head.classes_)] = head.predict_proba(X[held])
    return OutOfFold(proba, classes, k, notes)


def _validated_probabilities(probabilities: Any, n: int, classes: list[str]) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape != (n, len(classes)):
        raise ConfigError(f"probabilities has shape {p.shape}, expected ({n}, {len(classes)}): one row per labeled "
                          f"text and one column per class in sorted order {classes}.")
    if not np.all(np.isfinite(p)) or (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ConfigError("probabilities must be finite, non-negative and sum to 1 in every row (out-of-fold "
                          "predict_proba output).")
    return p


def check_labels(dataset: TextDataset, *, features: Any = None, probabilities: Any = None,
                 n_folds: int = DEFAULT_FOLDS, seed: int = 0, feature_name: str = "",
                 max_rows: Optional[int] = None) -> LabelIssues:
    """Rows whose label is likely wrong, ranked, and the estimated noise rate per class (confident learning).

    ``dataset`` is the labeled pool (never a sealed test set). By default the out-of-fold
    probabilities come from TF-IDF + logistic regression (:func:`out_of_fold_probabilities`);
    ``features`` replaces TF-IDF by any feature matrix (name it with ``feature_name`` for the method
    string), ``probabilities`` skips the model (out-of-fold probabilities, columns in sorted class order).
    ``max_rows``: above it, a stratified sample of that many rows (seeded by ``seed``) is checked, so
    the check stays bounded on large data; the result says so (``sampled``, ``n`` of ``n_total``) and
    its rows keep their positions in ``dataset``. None: check every row.

    Example:
        >>> texts = [f"goal match team {i}" for i in range(20)] + [f"chip software data {i}" for i in range(20)]
        >>> labels = ["sport"] * 20 + ["tech"] * 20
        >>> labels[25] = "sport"
        >>> issues = check_labels(TextDataset(texts, labels))
        >>> issues.rows[0].row, issues.rows[0].suggested, issues.per_class["sport"]["n"]
        (26, 'tech', 21)
    """
    from cleanlab import __version__ as cleanlab_version
    from cleanlab.count import estimate_joint
    from cleanlab.filter import find_label_issues

    if dataset.labels is None:
        raise ConfigError("the data has no labels to check; pass --label-col NAME (default: label).")
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 100):
        raise ConfigError.invalid("label check max_rows", max_rows, "an integer >= 100 (20,000 is the default)")
    if max_rows is not None and len(dataset) > max_rows:
        return _sampled_check(dataset, max_rows, features=features, probabilities=probabilities, n_folds=n_folds,
                              seed=seed, feature_name=feature_name)
    if probabilities is not None:
        classes, y = _class_index(dataset.labels, dataset.source or "the data")
        proba, k, notes = _validated_probabilities(probabilities, len(dataset), classes), 0, []
        model = "out-of-fold probabilities given by the caller"
    else:
        proba, classes, k, notes = out_of_fold_probabilities(dataset, features=features, n_folds=n_folds, seed=seed)
        y = _class_index(dataset.labels, dataset.source or "the data")[1]
        inputs = "TF-IDF words" if features is None else feature_name or "the given features"
        model = f"out-of-fold probabilities of {inputs} + logistic regression ({k}-fold stratified cross-validation)"
    with warnings.catch_warnings():
        # cleanlab warns on near-empty classes; the fold note already says so in plain words.
        warnings.simplefilter("ignore")
        flagged = find_label_issues(y, proba, return_indices_ranked_by="self_confidence", n_jobs=1)
        joint = estimate_joint(y, proba)
    counts = np.bincount(y, minlength=len(classes))
    given_mass = joint.sum(axis=1)
    per_class: dict[str, dict[str, Any]] = {}
    flagged_per_class = np.bincount(y[flagged], minlength=len(classes)) if len(flagged) else np.zeros(len(classes), int)
    for i, c in enumerate(classes):
        rate = float(1.0 - joint[i, i] / given_mass[i]) if given_mass[i] > 0 else 0.0
        per_class[c] = {"n": int(counts[i]), "noise_rate": max(0.0, rate), "flagged": int(flagged_per_class[i])}
    # The overall rate weighs each class's rate by its size, so it agrees with the per-class numbers.
    overall = float(sum(v["noise_rate"] * v["n"] for v in per_class.values()) / max(1, len(dataset)))
    rows = []
    names = np.asarray(classes, dtype=object)
    for i in flagged:
        i = int(i)
        best = int(np.argmax(proba[i]))
        rows.append(SuspiciousRow(index=i, row=int(dataset.rows[i]), id=str(dataset.ids[i]), text=dataset.texts[i],
                                  given=str(dataset.labels[i]), suggested=str(names[best]),
                                  score=float(proba[i, y[i]]), suggested_probability=float(proba[i, best])))
    method = (f"confident learning (cleanlab {cleanlab_version}): {model}; rows flagged by find_label_issues "
              "(prune by noise rate), ranked by self-confidence; noise rates from the calibrated confident joint")
    return LabelIssues(rows=rows, n=len(dataset), noise_rate=overall, per_class=per_class, method=method,
                       n_folds=k, notes=notes)


def _sampled_check(dataset: TextDataset, max_rows: int, *, features: Any, probabilities: Any, n_folds: int,
                   seed: int, feature_name: str) -> LabelIssues:
    """:func:`check_labels` on a stratified sample of ``max_rows`` rows; positions map back to ``dataset``."""
    from adaptlab.data.bundled import stratified_subsample

    keep = stratified_subsample(dataset.labels, max_rows, seed=seed)
    sub = dataset.subset(keep)
    pick = (lambda a: None if a is None else (a[keep] if hasattr(a, "shape") else [a[i] for i in keep]))
    issues = check_labels(sub, features=pick(features),
                          probabilities=None if probabilities is None else np.asarray(probabilities)[keep],
                          n_folds=n_folds, seed=seed, feature_name=feature_name)
    for r in issues.rows:
        r.index = int(keep[r.index])
    issues.n_total = len(dataset)
    issues.notes.append(f"checked a stratified sample of {len(keep):,} of the {len(dataset):,} labeled rows "
                        f"(seed {seed}); rows outside it were not judged")
    return issues


LABEL_ACTIONS = ("keep", "fix", "drop")


@dataclass
class LabelDecision:
    """A person's decision on one (usually flagged) row of a labels file: keep it, fix its label, or drop it.

    ``row`` is the row number the loader gave it (1 = first record after the header); ``old`` the label
    in the file; ``new`` the label it gets (``old`` for keep, None for drop).

    Example:
        >>> from adaptlab.data import LabelDecision, TextDataset, apply_label_decisions
        >>> ds = TextDataset(["goal", "chip", "cash"], ["sport", "sport", "money"])
        >>> fix = LabelDecision(row=2, action="fix", old="sport", new="tech")
        >>> keep = LabelDecision(row=1, action="keep", old="sport")
        >>> keep.new, fix.new
        ('sport', 'tech')
        >>> out, done = apply_label_decisions(ds, [fix, keep])
        >>> out.labels
        ['sport', 'tech', 'money']
    """

    row: int
    action: str
    old: str
    new: Optional[str] = None

    def __post_init__(self) -> None:
        if self.action not in LABEL_ACTIONS:
            raise ConfigError.invalid(f"action of row {self.row}", self.action, "keep, fix or drop")
        if self.action == "fix" and not self.new:
            raise ConfigError(f"row {self.row}: 'fix' needs the right label; pick one, or choose keep or drop.")
        if self.action == "keep":
            self.new = self.old
        elif self.action == "drop":
            self.new = None


def apply_label_decisions(dataset: TextDataset, decisions: Sequence[LabelDecision]) -> tuple[TextDataset, dict]:
    """``dataset`` with the decisions applied: fixed rows take their new label, dropped rows are removed.

    Rows keep their row numbers and ids, so later messages still point into the original file. The
    second value lists what was done, row by row (``fixed``, ``dropped``, ``kept``), so nothing is lost
    silently. A decision whose row is not in the file, or whose old label is not the file's, is refused
    (the file changed since the review).

    Example:
        >>> ds = TextDataset(["goal team", "chip data", "bank rates"], ["sport", "sport", "money"])
        >>> out, done = apply_label_decisions(ds, [LabelDecision(2, "fix", "sport", "tech"),
        ...                                        LabelDecision(3, "drop", "money")])
        >>> out.labels, out.rows, [d["row"] for d in done["dropped"]]
        (['sport', 'tech'], [1, 2], [3])
    """
    if dataset.labels is None:
        raise ConfigError("the data has no labels to correct; pass --label-col NAME (default: label).")
    where = {int(r): i for i, r in enumerate(dataset.rows)}
    labels = list(dataset.labels)
    keep = [True] * len(dataset)
    done: dict[str, list[dict[str, Any]]] = {"fixed": [], "dropped": [], "kept": []}
    seen: set[int] = set()
    for d in decisions:
        if d.row in seen:
            raise ConfigError(f"row {d.row} has two decisions; keep one.")
        seen.add(d.row)
        i = where.get(int(d.row))
        if i is None:
            raise ConfigError(f"row {d.row} is not in {dataset.source or 'the data'}: the file changed since the "
                              "review. Review it again.")
        if str(labels[i]) != str(d.old):
            raise ConfigError(f"row {d.row} has label {labels[i]!r}, but the review saw {d.old!r}: the file changed "
                              "since the review. Review it again.")
        item = {"row": int(d.row), "id": str(dataset.ids[i]), "text": dataset.texts[i], "old": d.old, "new": d.new}
        if d.action == "drop":
            keep[i] = False
            done["dropped"].append(item)
        elif d.action == "fix" and d.new != d.old:
            labels[i] = str(d.new)
            done["fixed"].append(item)
        else:
            done["kept"].append(item)
    relabelled = TextDataset(texts=list(dataset.texts), labels=labels, groups=dataset.groups,
                             timestamps=dataset.timestamps, ids=list(dataset.ids), rows=list(dataset.rows),
                             source=dataset.source)
    return relabelled.subset([i for i in range(len(dataset)) if keep[i]]), done
