"""validate(): every problem code, with its rows, message and fix."""
from __future__ import annotations

import math

import numpy as np
import pytest

from adaptlab.data import TextDataset, validate
from adaptlab.data.validate import ROW_LEVEL_CODES, is_missing


def ds(texts, labels=None, **kw):
    return TextDataset(texts=list(texts), labels=None if labels is None else list(labels), **kw)


def by_code(problems):
    out = {p.code: p for p in problems}
    assert len(out) == len(problems), "one problem per code"
    return out


def test_clean_dataset_has_no_problems():
    assert validate(ds(["a", "b", "c", "d"], ["x", "y", "x", "y"])) == []


def test_empty_and_whitespace_text():
    probs = by_code(validate(ds(["ok", "", "  \n\t", "fine", "more"], ["x", "y", "x", "y", "x"])))
    p = probs["empty_text"]
    assert p.rows == [2, 3] and p.severity == "error"
    assert "2 text(s) are empty or whitespace only" in p.message
    assert "on_invalid='drop'" in p.fix


def test_non_string_text():
    probs = by_code(validate(ds(["ok", 42, None, float("nan"), "fine"], ["x", "y", "x", "y", "x"])))
    p = probs["non_string_text"]
    assert p.rows == [2, 3, 4]
    assert "3 text value(s) are not strings" in p.message
    assert "int x1" in p.message and "null x2" in p.message
    assert "empty_text" not in probs  # None/NaN are not also reported as empty


@pytest.mark.parametrize("missing", [None, float("nan"), "nan", "NaN", "NA", "null", "", "  "])
def test_nan_label(missing):
    probs = by_code(validate(ds(["a", "b", "c", "d", "e"], ["x", missing, "y", "x", "y"])))
    p = probs["nan_label"]
    assert p.rows == [2]
    assert "1 label(s) are missing" in p.message
    assert "require_labels=False" in p.fix


def test_none_is_a_real_class_name():
    assert not is_missing("none") and is_missing("NULL") and is_missing(math.nan)
    assert validate(ds(["a", "b", "c", "d"], ["none", "spam", "none", "spam"])) == []


def test_single_class():
    probs = by_code(validate(ds(["a", "b", "c"], ["pos", "pos", "pos"])))
    p = probs["single_class"]
    assert p.message == "all 3 labeled texts have the same label 'pos'"
    assert "at least two classes" in p.fix and p.severity == "error"
    assert "rare_class" not in probs


def test_rare_class_names_class_and_count():
    probs = by_code(validate(ds(["a", "b", "c", "d", "e"], ["x", "x", "y", "y", "lonely"])))
    p = probs["rare_class"]
    assert "1 class(es) have fewer than 2 examples: 'lonely' (1)" in p.message
    assert p.rows == [5]
    assert "at least 2 examples" in p.fix
    assert "label_col points at the label column" not in p.fix


def test_rare_class_hints_at_wrong_label_column_when_most_classes_are_rare():
    texts = [f"t{i}" for i in range(8)]
    probs = by_code(validate(ds(texts, ["a", "a", "b", "c", "d", "e", "f", "g"])))
    assert "'b' (1), 'c' (1)" in probs["rare_class"].message
    assert "label_col points at the label column" in probs["rare_class"].fix


def test_conflicting_duplicates_list_texts_rows_and_labels():
    texts = ["great movie", "  great movie ", "boring", "great   movie", "fine", "awful"]
    labels = ["pos", "neg", "neg", "pos", "pos", "neg"]
    probs = by_code(validate(ds(texts, labels)))
    p = probs["conflicting_duplicates"]
    assert p.severity == "error"
    assert p.rows == [1, 2, 4]
    assert "1 text(s) appear more than once with different labels" in p.message
    assert "'great movie' (row 1: 'pos', row 2: 'neg', row 4: 'pos')" in p.message
    assert "does not guess" in p.fix
    assert "duplicate_text" not in probs


def test_conflicting_duplicate_long_text_is_truncated():
    long = "word " * 100
    probs = by_code(validate(ds([long, long, "b", "c"], ["x", "y", "x", "y"])))
    msg = probs["conflicting_duplicates"].message
    assert "..." in msg and len(msg) < 250


def test_same_text_same_label_is_only_a_warning():
    probs = by_code(validate(ds(["same", "same ", "other", "more"], ["x", "x", "y", "y"])))
    p = probs["duplicate_text"]
    assert p.severity == "warning" and p.rows == [2]
    assert "1 text(s) appear more than once with the same label (1 extra copies" in p.message
    assert "conflicting_duplicates" not in probs


def test_bad_timestamp():
    ts = np.array(["2024-01-01", "NaT", "2024-01-03", "NaT"], dtype="datetime64[ns]")
    probs = by_code(validate(ds(["a", "b", "c", "d"], ["x", "y", "x", "y"], timestamps=ts)))
    p = probs["bad_timestamp"]
    assert p.rows == [2, 4] and "2 timestamp(s) are missing or could not be parsed" in p.message


def test_missing_group():
    probs = by_code(validate(ds(["a", "b", "c", "d"], ["x", "y", "x", "y"], groups=["g1", None, "g2", ""])))
    assert probs["missing_group"].rows == [2, 4]


def test_duplicate_id_warning():
    probs = by_code(validate(ds(["a", "b", "c", "d"], ["x", "y", "x", "y"], ids=["1", "2", "1", "3"])))
    assert probs["duplicate_id"].severity == "warning" and probs["duplicate_id"].rows == [3]


def test_missing_labels_depends_on_require_labels():
    unlabeled = ds(["a", "b"])
    assert [p.code for p in validate(unlabeled)] == ["missing_labels"]
    assert "label_col=NAME" in validate(unlabeled)[0].fix
    assert validate(unlabeled, require_labels=False) == []


def test_class_checks_are_warnings_when_labels_not_required():
    probs = by_code(validate(ds(["a", "b"], ["x", "x"]), require_labels=False))
    assert probs["single_class"].severity == "warning"


def test_rows_refer_to_source_rows():
    data = ds(["ok", "", "fine", "more"], ["x", "y", "x", "y"], rows=[10, 20, 30, 40])
    assert validate(data)[0].rows == [20]


def test_order_and_fix_everywhere():
    texts = ["", 5, "dup", "dup", "solo", "x"]
    labels = ["a", "a", "a", "b", "c", None]
    problems = validate(ds(texts, labels))
    assert [p.code for p in problems] == [
        "non_string_text", "empty_text", "nan_label", "rare_class", "conflicting_duplicates"
    ]
    assert all(p.fix for p in problems)
    assert all(p.severity == "error" for p in problems)
    assert {"non_string_text", "empty_text", "nan_label"} <= ROW_LEVEL_CODES
    assert not {"rare_class", "conflicting_duplicates", "single_class"} & ROW_LEVEL_CODES
    assert "[rare_class]" in str(problems[3]) and "Fix:" in str(problems[3])


def test_rejects_non_dataset():
    from adaptlab.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset='<list>' is not valid: expected a TextDataset"):
        validate(["a", "b"])


def test_duplicates_of_unlabeled_texts_are_not_said_to_share_a_label():
    from adaptlab.data import TextDataset
    from adaptlab.data.validate import validate

    problems = validate(TextDataset(["same text", "same text", "other"]), require_labels=False)
    dup = next(p for p in problems if p.code == "duplicate_text")
    assert "appear more than once (1 extra" in dup.message and "label" not in dup.message
