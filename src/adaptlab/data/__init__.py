"""The data stage: load, validate, find near-duplicates, split without leakage, find likely label errors.

Example:
    >>> from adaptlab.data import check_labels, load_dataset, split_dataset  # doctest: +SKIP
    >>> ds = load_dataset("reviews.csv", text_col="review")           # doctest: +SKIP
    >>> split = split_dataset(ds)                                     # doctest: +SKIP
    >>> print(split.leakage.summary())                                # doctest: +SKIP
    >>> print(check_labels(ds).summary())                             # doctest: +SKIP
"""
from adaptlab.data.dataset import TextDataset, text_hash
from adaptlab.data.label_quality import (LabelDecision, LabelIssues, OutOfFold, SuspiciousRow,
                                         apply_label_decisions, check_labels, out_of_fold_probabilities)
from adaptlab.data.load import DroppedRow, DroppedRowsWarning, LoadReport, load_dataset
from adaptlab.data.neardup import NearDupClusters, find_near_duplicates, normalize_text
from adaptlab.data.split import LeakageReport, Split, describe_split, split_dataset
from adaptlab.data.validate import validate

__all__ = [
    "TextDataset",
    "text_hash",
    "load_dataset",
    "LoadReport",
    "DroppedRow",
    "DroppedRowsWarning",
    "validate",
    "find_near_duplicates",
    "NearDupClusters",
    "normalize_text",
    "Split",
    "split_dataset",
    "describe_split",
    "LeakageReport",
    "check_labels",
    "apply_label_decisions",
    "LabelDecision",
    "out_of_fold_probabilities",
    "LabelIssues",
    "OutOfFold",
    "SuspiciousRow",
]
