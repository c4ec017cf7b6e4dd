"""load_dataset: formats, column defaults, value conversion, encodings, invalid rows."""
from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from adaptlab.data import DroppedRowsWarning, LoadReport, load_dataset
from adaptlab.errors import ConfigError, DataError, DataValidationError


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def write_jsonl(path, records, blank_lines_after=()):
    lines = []
    for k, r in enumerate(records):
        lines.append(json.dumps(r))
        if k in blank_lines_after:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def codes(err: DataValidationError) -> list[str]:
    return [p.code for p in err.problems]


# ------------------------------------------------------------------------------------ CSV basics


def test_csv_reads_strings_rows_and_ids(tmp_path):
    p = write(tmp_path / "d.csv", "id,text,label\n7,good film,pos\n8,bad film,neg\n9,fine film,pos\n10,awful,neg\n")
    ds = load_dataset(p)
    assert ds.texts == ["good film", "bad film", "fine film", "awful"]
    assert ds.labels == ["pos", "neg", "pos", "neg"]
    assert ds.ids == ["7", "8", "9", "10"]
    assert ds.rows == [1, 2, 3, 4]  # row 1 = first record after the header
    assert ds.source == str(p)
    assert ds.groups is None and ds.timestamps is None


def test_ids_default_to_row_numbers_without_id_column(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\na,x\nb,y\nc,x\nd,y\n")
    assert load_dataset(p).ids == ["1", "2", "3", "4"]


def test_csv_keeps_na_like_text_as_text(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\nNA,x\nnull,y\nNaN,x\nnone,y\n")
    ds = load_dataset(p)
    assert ds.texts == ["NA", "null", "NaN", "none"]


def test_csv_integral_float_labels_become_integers(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\na,1.0\nb,0.0\nc,1\nd,0\n")
    ds = load_dataset(p)
    assert ds.labels == ["1", "0", "1", "0"]
    assert ds.classes == ["0", "1"]


@pytest.mark.parametrize(
    "header, expected",
    [
        ("sentence,label", "sentence"),
        ("body,content,label", "content"),  # candidates are tried in order: content before body
        ("Text,label", "Text"),  # case-insensitive
        ("abstract,document,label", "abstract"),
    ],
)
def test_default_text_column(tmp_path, header, expected):
    ncols = header.count(",") + 1
    body = "\n".join(",".join([f"v{r}{c}" for c in range(ncols - 1)] + [lab]) for r, lab in enumerate("xyxy"))
    p = write(tmp_path / "d.csv", header + "\n" + body + "\n")
    ds, report = load_dataset(p, return_report=True)
    assert report.columns["text"] == expected
    assert ds.texts[0] == f"v0{header.split(',').index(expected)}"


@pytest.mark.parametrize("name", ["label", "labels", "target", "class", "category", "y"])
def test_default_label_column(tmp_path, name):
    p = write(tmp_path / "d.csv", f"text,{name}\na,1\nb,2\nc,1\nd,2\n")
    ds, report = load_dataset(p, return_report=True)
    assert report.columns["label"] == name
    assert ds.labels == ["1", "2", "1", "2"]


def test_label_column_order_prefers_label_over_target(tmp_path):
    p = write(tmp_path / "d.csv", "text,target,label\na,t1,x\nb,t2,y\nc,t1,x\nd,t2,y\n")
    assert load_dataset(p).labels == ["x", "y", "x", "y"]


def test_tsv_and_semicolon_csv(tmp_path):
    tsv = write(tmp_path / "d.tsv", "text\tlabel\nhello, world\tx\nbye\ty\nagain\tx\nmore\ty\n")
    assert load_dataset(tsv).texts[0] == "hello, world"
    semi = write(tmp_path / "e.csv", "text;label\nhallo welt;x\ntschuess;y\nnochmal;x\nmehr;y\n")
    ds = load_dataset(semi)
    assert ds.texts[0] == "hallo welt" and ds.labels == ["x", "y", "x", "y"]


def test_gzipped_csv(tmp_path):
    p = tmp_path / "d.csv.gz"
    p.write_bytes(gzip.compress(b"text,label\na,x\nb,y\nc,x\nd,y\n"))
    assert load_dataset(p).texts == ["a", "b", "c", "d"]


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(b"\xef\xbb\xbftext,label\ncaf\xc3\xa9,x\nb,y\nc,x\nd,y\n")
    ds, report = load_dataset(p, return_report=True)
    assert report.columns["text"] == "text"
    assert ds.texts[0] == "café"


# ------------------------------------------------------------------------------------ file errors


def test_missing_file(tmp_path):
    write(tmp_path / "train.csv", "text,label\n")
    with pytest.raises(DataError, match="does not exist") as e:
        load_dataset(tmp_path / "trian.csv")
    assert "train.csv" in str(e.value)  # suggests the file with a similar name


@pytest.mark.parametrize("name, hint", [("d.xlsx", "CSV UTF-8"), ("d.json", "JSON Lines"), ("d.dat", "convert")])
def test_unknown_extension(tmp_path, name, hint):
    p = write(tmp_path / name, "whatever")
    with pytest.raises(DataError) as e:
        load_dataset(p)
    msg = str(e.value)
    assert "cannot read files of type" in msg and ".csv, .tsv, .jsonl" in msg and hint in msg


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        load_dataset(tmp_path)


def test_empty_and_header_only_files(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        load_dataset(write(tmp_path / "a.csv", ""))
    with pytest.raises(DataError, match="no data rows"):
        load_dataset(write(tmp_path / "b.csv", "text,label\n"))


def test_malformed_csv(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\na,x\nb,y,extra,fields\n")
    with pytest.raises(DataError, match="not valid CSV") as e:
        load_dataset(p)
    assert "quote fields" in str(e.value)


# ------------------------------------------------------------------------------------ columns


def test_no_text_column_lists_columns_and_fix(tmp_path):
    p = write(tmp_path / "d.csv", "review,stars\ngood,5\nbad,1\n")
    with pytest.raises(DataError) as e:
        load_dataset(p)
    msg = str(e.value)
    assert "no text column found" in msg
    assert "'review', 'stars'" in msg
    assert "--text-col NAME" in msg and "text_col=NAME" in msg


def test_named_column_missing_suggests_close_match(tmp_path):
    p = write(tmp_path / "d.csv", "review,stars\ngood,5\nbad,1\n")
    with pytest.raises(DataError) as e:
        load_dataset(p, text_col="reveiw", label_col="stars")
    msg = str(e.value)
    assert "text_col='reveiw' is not a column" in msg
    assert "Did you mean 'review'?" in msg and "'review', 'stars'" in msg and "--text-col" in msg


def test_no_label_column(tmp_path):
    p = write(tmp_path / "d.csv", "text,score\na,1\nb,2\n")
    with pytest.raises(DataError) as e:
        load_dataset(p)
    msg = str(e.value)
    assert "no label column found" in msg and "'text', 'score'" in msg
    assert "--label-col NAME" in msg and "require_labels=False" in msg


def test_unlabeled_file_with_require_labels_false(tmp_path):
    p = write(tmp_path / "d.csv", "text,score\na,1\nb,2\n")
    ds = load_dataset(p, require_labels=False)
    assert ds.labels is None and ds.texts == ["a", "b"]


def test_empty_label_column_is_unlabeled_when_labels_not_required(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\na,\nb,\n")
    assert load_dataset(p, require_labels=False).labels is None


def test_same_column_for_two_roles(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\na,x\nb,y\n")
    with pytest.raises(DataError, match="text_col and label_col both point at column 'text'"):
        load_dataset(p, label_col="text")


# ------------------------------------------------------------------------------------ JSONL / Parquet


def test_jsonl_label_conversion_and_line_numbers(tmp_path):
    recs = [
        {"text": "a", "label": 1, "id": 10},
        {"text": "b", "label": 1.0, "id": 11},
        {"text": "c", "label": True, "id": 12},
        {"text": "d", "label": True, "id": 13},
        {"text": "e", "label": 0.5, "id": 14},
        {"text": "f", "label": 0.5, "id": 15},
    ]
    p = write_jsonl(tmp_path / "d.jsonl", recs, blank_lines_after=(1,))
    ds = load_dataset(p)
    assert ds.labels == ["1", "1", "True", "True", "0.5", "0.5"]
    assert ds.ids == ["10", "11", "12", "13", "14", "15"]
    assert ds.rows == [1, 2, 4, 5, 6, 7]  # line numbers; line 3 is blank


def test_ndjson_missing_labels_are_nan_labels(tmp_path):
    recs = [{"text": "a", "label": "x"}, {"text": "b", "label": None}, {"text": "c"},
            {"text": "d", "label": "NA"}, {"text": "e", "label": "y"}, {"text": "f", "label": "x"},
            {"text": "g", "label": "y"}]
    p = write_jsonl(tmp_path / "d.ndjson", recs)
    with pytest.raises(DataValidationError) as e:
        load_dataset(p)
    assert codes(e.value) == ["nan_label"]
    assert e.value.problems[0].rows == [2, 3, 4]
    assert "(rows are line numbers)" in str(e.value)


def test_jsonl_non_string_text(tmp_path):
    recs = [{"text": 42, "label": "x"}, {"text": None, "label": "y"}, {"text": "ok", "label": "x"},
            {"text": "fine", "label": "y"}, {"text": "good", "label": "x"}, {"text": "more", "label": "y"}]
    p = write_jsonl(tmp_path / "d.jsonl", recs)
    with pytest.raises(DataValidationError) as e:
        load_dataset(p)
    prob = e.value.problems[0]
    assert prob.code == "non_string_text" and prob.rows == [1, 2]
    assert "int x1" in prob.message and "null x1" in prob.message


def test_jsonl_invalid_line(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", label: y}\n')
    with pytest.raises(DataError, match=r"line 2 is not valid JSON") as e:
        load_dataset(p)
    assert "one JSON object" in str(e.value)


def test_jsonl_array_file_gets_hint(tmp_path):
    p = write(tmp_path / "d.jsonl", '[{"text": "a", "label": "x"},\n{"text": "b", "label": "y"}]\n')
    with pytest.raises(DataError, match="looks like one JSON array"):
        load_dataset(p)


def test_jsonl_multilabel_lists_are_rejected(tmp_path):
    # Lists load as multi-label data now (tests/test_multilabel.py); asked for single-label they are refused.
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": ["y"]}])
    with pytest.raises(DataError) as e:
        load_dataset(p, task="single")
    assert "label column 'label' holds list values" in str(e.value)
    assert "one label per row" in str(e.value)


def test_parquet_types(tmp_path):
    df = pd.DataFrame({
        "content": ["first text", "second", "third", "fourth", "fifth"],
        "y": pd.array([1, 0, 1, 0, None], dtype="Int64"),
        "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]),
    })
    p = tmp_path / "d.parquet"
    df.to_parquet(p)
    ds, report = load_dataset(p, time_col="when", on_invalid="drop", return_report=True)
    assert ds.labels == ["1", "0", "1", "0"]
    assert report.format == "parquet" and report.encoding is None
    assert [d.row for d in report.dropped] == [5] and report.dropped[0].codes == ["nan_label"]
    assert ds.timestamps.dtype == np.dtype("datetime64[ns]")
    assert str(ds.timestamps[0]) == "2024-01-01T00:00:00.000000000"


def test_parquet_non_string_text(tmp_path):
    p = tmp_path / "d.parquet"
    pd.DataFrame({"text": [1.5, 2.5, 3.5, 4.5], "label": ["a", "b", "a", "b"]}).to_parquet(p)
    with pytest.raises(DataValidationError) as e:
        load_dataset(p)
    assert codes(e.value) == ["non_string_text"] and e.value.problems[0].rows == [1, 2, 3, 4]


def test_corrupt_parquet(tmp_path):
    p = write(tmp_path / "d.parquet", "text,label\na,b\n")
    with pytest.raises(DataError, match="cannot be read as Parquet"):
        load_dataset(p)


# ------------------------------------------------------------------------------------ encodings


def test_cp1252_file_without_encoding_explains_fix(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\ncafé au lait,x\nna\u00efve,y\nplain,x\nmore,y\n", encoding="cp1252")
    with pytest.raises(DataError) as e:
        load_dataset(p)
    msg = str(e.value)
    assert "is not UTF-8" in msg and "line 2" in msg and "0xE9" in msg
    assert "cp1252/latin-1" in msg
    assert 'encoding="cp1252"' in msg and "--encoding cp1252" in msg


def test_cp1252_file_with_encoding(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\ncafé au lait,x\nna\u00efve,y\nplain,x\nmore,y\n", encoding="cp1252")
    ds, report = load_dataset(p, encoding="cp1252", return_report=True)
    assert ds.texts[:2] == ["café au lait", "na\u00efve"]
    assert report.encoding == "cp1252"


def test_mixed_encodings_names_lines_of_both_kinds(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(
        b"text,label\n"
        + "caf\u00e9 cr\u00e8me,x\n".encode("utf-8")  # line 2: UTF-8
        + "na\u00efve,y\n".encode("cp1252")  # line 3: cp1252
        + b"plain,x\n"
        + "\u00fcber,y\n".encode("utf-8")  # line 5: UTF-8
        + "r\u00e9sum\u00e9,x\n".encode("cp1252")  # line 6: cp1252
    )
    with pytest.raises(DataError) as e:
        load_dataset(p)
    msg = str(e.value)
    assert "mixes text encodings" in msg
    assert "line(s) 2, 5 are UTF-8" in msg
    assert "line(s) 3, 6 are not valid UTF-8" in msg
    assert "re-save the file as UTF-8" in msg


def test_wrong_explicit_encoding_and_unknown_codec(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\n\u00e9t\u00e9,x\n", encoding="utf-8")
    with pytest.raises(DataError, match="cannot be decoded as ascii: byte 0xC3 on line 2"):
        load_dataset(p, encoding="ascii")
    with pytest.raises(ConfigError, match="encoding='klingon' is not valid"):
        load_dataset(p, encoding="klingon")


def test_utf16_with_bom(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_bytes("text\tlabel\ncaf\u00e9\tx\nb\ty\nc\tx\nd\ty\n".encode("utf-16"))
    assert load_dataset(p).texts[0] == "café"


# ------------------------------------------------------------------------------------ validation


def test_invalid_rows_raise_with_codes_rows_and_fix(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\ngood,pos\n   ,neg\nbad,\nfine,pos\nawful,neg\nok,NA\n")
    with pytest.raises(DataValidationError) as e:
        load_dataset(p)
    err = e.value
    assert codes(err) == ["empty_text", "nan_label"]
    assert err.problems[0].rows == [2] and err.problems[1].rows == [3, 6]
    msg = str(err)
    assert "2 problem(s)" in msg and "row 1 = first record after the header" in msg and "Fix:" in msg


def test_drop_removes_only_offending_rows_and_reports_them(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\ngood,pos\n   ,neg\nbad,\nfine,pos\nawful,neg\nok,NA\nmeh,neg\n")
    ds, report = load_dataset(p, on_invalid="drop", return_report=True)
    assert isinstance(report, LoadReport)
    assert ds.texts == ["good", "fine", "awful", "meh"]
    assert ds.rows == [1, 4, 5, 7]
    assert [(d.row, d.codes) for d in report.dropped] == [(2, ["empty_text"]), (3, ["nan_label"]), (6, ["nan_label"])]
    assert report.n_read == 7 and report.n_kept == 4
    assert "Dropped 3 row(s)" in report.summary()
    json.dumps(report.to_dict())


def test_drop_without_report_warns(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\ngood,pos\n,neg\nfine,pos\nawful,neg\nmeh,neg\n")
    with pytest.warns(DroppedRowsWarning, match=r"dropped 1 row\(s\).*rows 2.*empty_text"):
        ds = load_dataset(p, on_invalid="drop")
    assert len(ds) == 4


def test_no_warning_when_nothing_dropped(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\ngood,pos\nbad,neg\nfine,pos\nawful,neg\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DroppedRowsWarning)
        load_dataset(p, on_invalid="drop")


def test_drop_still_raises_dataset_level_problems(tmp_path):
    # Dropping the empty row leaves class 'neg' with one example: that is never fixed silently.
    p = write(tmp_path / "d.csv", "text,label\ngood,pos\n ,neg\nfine,pos\nawful,neg\n")
    with pytest.raises(DataValidationError) as e:
        load_dataset(p, on_invalid="drop")
    assert codes(e.value) == ["rare_class", "rows_dropped"]
    assert "'neg' (1)" in str(e.value)
    assert e.value.problems[1].rows == [2] and e.value.problems[1].severity == "warning"
    assert str(e.value).startswith("1 problem(s)")


def test_drop_does_not_drop_conflicting_duplicates(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\ngreat,pos\ngreat ,neg\nfine,pos\nawful,neg\n")
    with pytest.raises(DataValidationError) as e:
        load_dataset(p, on_invalid="drop")
    assert codes(e.value) == ["conflicting_duplicates"]


def test_drop_everything_is_an_error(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\n,pos\n ,neg\n")
    with pytest.raises(DataValidationError, match="no_rows_left"):
        load_dataset(p, on_invalid="drop")


def test_bad_on_invalid_value(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\na,x\n")
    with pytest.raises(ConfigError, match="on_invalid='skip' is not valid: expected 'error' or 'drop'"):
        load_dataset(p, on_invalid="skip")


def test_duplicate_text_is_a_warning_in_the_report(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\nsame,pos\nsame,pos\nfine,pos\nawful,neg\nbad,neg\n")
    ds, report = load_dataset(p, return_report=True)
    assert len(ds) == 5
    assert [w.code for w in report.warnings] == ["duplicate_text"]


# ------------------------------------------------------------------------------------ groups, time


def test_groups_and_timestamps(tmp_path):
    p = write(
        tmp_path / "d.csv",
        "text,label,author,date\n"
        "a,x,ann,2024-01-05\n"
        "b,y,bob,2024-01-06T10:00:00Z\n"
        "c,x,ann,1704499200\n"  # epoch seconds: 2024-01-06
        "d,y,7,2024-02-01 08:30\n",
    )
    ds = load_dataset(p, group_col="author", time_col="date")
    assert ds.groups == ["ann", "bob", "ann", "7"]
    assert [str(t)[:16] for t in ds.timestamps] == [
        "2024-01-05T00:00", "2024-01-06T10:00", "2024-01-06T00:00", "2024-02-01T08:30"
    ]


def test_unparseable_timestamps_are_reported_with_rows_and_values(tmp_path):
    p = write(tmp_path / "d.csv", "text,label,date\na,x,2024-01-05\nb,y,yesterday\nc,x,\nd,y,2024-13-45\n")
    with pytest.raises(DataValidationError) as e:
        load_dataset(p, time_col="date")
    prob = e.value.problems[0]
    assert prob.code == "bad_timestamp" and prob.rows == [2, 3, 4]
    assert "'yesterday' (row 2)" in prob.message and "'2024-13-45' (row 4)" in prob.message
    assert "ISO 8601" in prob.fix


def test_missing_group_is_a_row_problem(tmp_path):
    p = write(tmp_path / "d.csv", "text,label,g\na,x,1\nb,y,\nc,x,2\nd,y,3\ne,y,4\n")
    ds, report = load_dataset(p, group_col="g", on_invalid="drop", return_report=True)
    assert ds.groups == ["1", "2", "3", "4"]
    assert report.dropped[0].codes == ["missing_group"]
