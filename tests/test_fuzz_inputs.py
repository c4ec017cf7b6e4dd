"""Fuzzed input files for `load_dataset` and `predict_file`: every input loads with every row accounted for
(kept, or dropped and listed / rejected with its line) or fails with a `DataError`; never another exception.

Files are written from known records (so the number of rows is known independently of the reader) with BOMs,
CRLF, quoted newlines, NUL bytes, huge fields, duplicate or empty headers, mixed encodings, non-object JSON
lines, wrong Parquet types and empty files. ``max_examples`` keeps the whole module to a few seconds per test.
"""
from __future__ import annotations

import csv
import io
import json
import tempfile
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adaptlab.data import load_dataset
from adaptlab.errors import ConfigError, DataError
from adaptlab.rungs import RungContext, get_rung
from adaptlab.ship.predict import predict_file
from synthetic import topic_corpus

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

# Characters that break naive readers: separators, quotes, line breaks of every kind, NUL, BOM, non-BMP.
NASTY = st.sampled_from([",", ";", "\t", '"', "'", "\n", "\r", "\r\n", "\x00", "\ufeff", "\u2028", "\x85", "é",
                         "😀", "\\", " ", "NA", "null", "#", "="])
FIELD = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.lists(st.one_of(NASTY, st.text("abc xyz", max_size=5)), max_size=8).map("".join),
    st.just("x" * 200_000),  # a huge field
    st.just(""),
)
LABEL = st.sampled_from(["a", "b", "c", "", " ", "NA", "1", "1.0", "\x00", "é"])


@st.composite
def table(draw):
    """(header, records): a header with maybe duplicate or empty names, and 0..12 records of text/label."""
    header = draw(st.sampled_from([["text", "label"], ["id", "text", "label"], ["text", "text", "label"],
                                   ["", "text", "label"], ["text", "label", ""], ["\ufefftext", "label"],
                                   ["Text", "Label"], ["text"]]))
    n = draw(st.integers(0, 12))
    records = []
    for i in range(n):
        row = []
        for col in header:
            if col == "id":
                row.append(str(i))
            elif col.lower().endswith("label"):
                row.append(draw(LABEL))
            else:
                row.append(draw(FIELD))
        records.append(row)
    return header, records


def _csv_bytes(header, records, sep, newline, encoding, bom):
    buf = io.StringIO()
    # The csv module quotes a field holding a character of the line terminator; with "\n" alone a lone "\r"
    # would go unquoted (a line break to every CSV reader), so such files quote every field.
    w = csv.writer(buf, delimiter=sep, lineterminator=newline,
                   quoting=csv.QUOTE_MINIMAL if newline == "\r\n" else csv.QUOTE_ALL)
    w.writerow(header)
    w.writerows(records)
    text = buf.getvalue()
    data = text.encode(encoding, errors="replace" if encoding != "utf-8" else "surrogatepass")
    return (b"\xef\xbb\xbf" if bom else b"") + data


GOOD = [("the market rallied", "a"), ("shares fell sharply", "a"), ("the striker scored twice", "b"),
        ("a late goal won it", "b")]  # rows every file starts with, so most files are valid datasets


def _accounted(ds, report, n_records, texts=None):
    """Every record of the file is a kept row or a dropped row listed in the report; kept texts are unchanged."""
    assert report.n_read == n_records, f"read {report.n_read} rows of {n_records}"
    assert len(ds) + len(report.dropped) == n_records
    kept = set(ds.rows)
    dropped = {d.row for d in report.dropped}
    assert not kept & dropped and len(kept | dropped) == n_records
    if texts is not None:
        assert [texts[r - 1] for r in ds.rows] == list(ds.texts)


def _load_or_data_error(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = load_dataset(path, on_invalid="drop", return_report=True, **kw)
        except DataError as e:
            event(f"DataError: {str(e).splitlines()[-1][:70]}")
            return None
    event("loaded")
    return out


@FUZZ
@given(table(), st.sampled_from([",", "\t"]), st.sampled_from(["\n", "\r\n"]), st.booleans(),
       st.sampled_from(["utf-8", "cp1252"]), st.booleans(), st.booleans())
def test_csv_and_tsv_load_every_row_or_raise_data_error(tmp_path, tab, sep, newline, bom, encoding, labels, mixed):
    header, records = tab
    ti = header.index("text") if "text" in header else None
    if ti is not None and "label" in header:
        li = header.index("label")
        good = [["x"] * len(header) for _ in GOOD]
        for row, (text, label) in zip(good, GOOD):
            row[ti], row[li] = text, label
        records = good + records
    suffix = ".tsv" if sep == "\t" else ".csv"
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        path = Path(d) / f"data{suffix}"
        data = _csv_bytes(header, records, sep, newline, encoding, bom and encoding == "utf-8")
        if mixed and encoding == "utf-8":  # one line saved by another program, in cp1252
            data += sep.join(["Caf\xe9 cr\xe8me"] * len(header)).encode("cp1252") + newline.encode()
        path.write_bytes(data)
        out = _load_or_data_error(path, require_labels=labels, encoding=None if encoding == "utf-8" else encoding)
        if out is not None:
            assert not (mixed and encoding == "utf-8"), "a file with bytes that are not UTF-8 must be a DataError"
            texts = None
            if ti is not None and encoding == "utf-8":
                texts = [r[ti] for r in records]
            _accounted(*out, n_records=len(records), texts=texts)


@FUZZ
@given(st.lists(st.one_of(
    st.fixed_dictionaries({"text": FIELD, "label": LABEL}),
    st.fixed_dictionaries({"text": FIELD, "label": LABEL}),
    st.fixed_dictionaries({"text": st.one_of(st.integers(), st.none(), st.lists(st.integers(), max_size=2),
                                             st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)),
                           "label": st.one_of(LABEL, st.integers(), st.booleans(), st.none(), st.floats())}),
    st.fixed_dictionaries({"text": FIELD, "label": LABEL, "": FIELD, "text ": FIELD}),  # odd keys
), max_size=10).flatmap(lambda recs: st.sampled_from([recs, recs + [[1, 2]], recs + [None], recs + ["a string"]])),
       st.sampled_from(["\n", "\r\n"]), st.booleans(), st.booleans())
def test_jsonl_loads_every_record_or_raises_data_error(tmp_path, records, newline, bom, mixed):
    records = [{"text": t, "label": label} for t, label in GOOD] + records
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    data = (b"\xef\xbb\xbf" if bom else b"") + newline.join(lines).encode("utf-8")
    if mixed and lines:
        data += newline.encode() + '{"text": "caf\xe9", "label": "a"}'.encode("cp1252")  # a second encoding
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        path = Path(d) / "data.jsonl"
        path.write_bytes(data)
        out = _load_or_data_error(path)
        if out is not None:
            assert all(isinstance(r, dict) for r in records) and not mixed  # else it must have been a DataError
            _accounted(*out, n_records=len(records), texts=[r.get("text") for r in records])


PARQUET_COLUMN = st.sampled_from([
    pa.array(["good film", "bad film", "great", None]),
    pa.array([1, 2, 3, 4]),
    pa.array([1.5, float("nan"), 2.0, None]),
    pa.array([True, False, None, True]),
    pa.array([b"\x00\xff", b"ok", None, b""]),
    pa.array([[1], [], None, [2, 3]]),
    pa.array([{"a": 1}, {"a": 2}, None, {"a": 3}]),
    pa.array(["2024-01-01", "x", "", "\x00"]),
    pa.array([None, None, None, None], type=pa.string()),
])


@FUZZ
@given(PARQUET_COLUMN, PARQUET_COLUMN, st.booleans(), st.integers(0, 4))
def test_parquet_with_wrong_types_loads_every_row_or_raises_data_error(tmp_path, text, label, labels, n):
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        path = Path(d) / "data.parquet"
        good = pa.table({"text": [t for t, _ in GOOD], "label": [label for _, label in GOOD]})
        fuzzed = pa.table({"text": text.slice(0, n), "label": label.slice(0, n)})
        both = fuzzed if fuzzed.schema != good.schema else pa.concat_tables([good, fuzzed])
        pq.write_table(both, path)
        out = _load_or_data_error(path, require_labels=labels)
        if out is not None:
            _accounted(*out, n_records=both.num_rows)


@pytest.mark.parametrize("name,data", [
    ("empty.csv", b""), ("empty.tsv", b""), ("empty.jsonl", b""), ("bom.csv", b"\xef\xbb\xbf"),
    ("blank.jsonl", b"\n\r\n  \n"), ("header-only.csv", b"text,label\r\n"), ("nul.csv", b"\x00\x00\x00"),
    ("empty.parquet", b""), ("not.parquet", b"text,label\nx,y\n"), ("utf16.csv", "text,label\nx,a\n".encode("utf-16")),
])
def test_empty_and_odd_files_raise_data_error(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError):
        load_dataset(tmp_path / name)


# ------------------------------------------------------------------------------------------ predict
@pytest.fixture(scope="module")
def model():
    ds = topic_corpus(60, seed=1)
    return get_rung("tfidf", {"min_df": 1}).fit(ds, ds, seed=0, context=RungContext(classes=ds.classes))


def _predict_or_data_error(model, path, out, **kw):
    try:
        report = predict_file(model, path, out, **kw)
    except DataError as e:
        event(f"DataError: {str(e)[:70]}")
        return None
    event("predicted")
    return report


def _check_predicted(report, out_path, n_records):
    import pandas as pd

    assert report.n_read == n_records, f"read {report.n_read} rows of {n_records}"
    assert report.n_predicted + report.n_rejected == n_records
    written = pd.read_csv(out_path, dtype=str, keep_default_na=False) if out_path.suffix == ".csv" else None
    if written is not None:
        assert len(written) == report.n_predicted
    rejects = list(csv.DictReader(open(report.reject_path, newline="", encoding="utf-8")))
    assert len(rejects) == report.n_rejected


@FUZZ
@given(table(), st.sampled_from([",", "\t"]), st.sampled_from(["\n", "\r\n"]), st.booleans(),
       st.sampled_from(["utf-8", "cp1252"]))
def test_predict_csv_predicts_or_rejects_every_row(tmp_path, model, tab, sep, newline, bom, encoding):
    header, records = tab
    suffix = ".tsv" if sep == "\t" else ".csv"
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        path = Path(d) / f"in{suffix}"
        path.write_bytes(_csv_bytes(header, records, sep, newline, encoding, bom and encoding == "utf-8"))
        report = _predict_or_data_error(model, path, Path(d) / "out.csv")
        if report is not None:
            _check_predicted(report, Path(d) / "out.csv", len(records))


@FUZZ
@given(st.lists(st.one_of(
    st.fixed_dictionaries({"text": FIELD}),
    st.fixed_dictionaries({"text": st.one_of(st.integers(), st.none(), st.lists(st.integers(), max_size=2))}),
    st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.none()),
), max_size=10), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_predict_jsonl_predicts_or_rejects_every_record(tmp_path, model, records, newline, bom):
    data = (b"\xef\xbb\xbf" if bom else b"") + newline.join(json.dumps(r) for r in records).encode()
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        path = Path(d) / "in.jsonl"
        path.write_bytes(data)
        report = _predict_or_data_error(model, path, Path(d) / "out.csv")
        if report is not None:
            _check_predicted(report, Path(d) / "out.csv", len(records))


@FUZZ
@given(PARQUET_COLUMN, st.integers(0, 4))
def test_predict_parquet_with_wrong_types_predicts_or_rejects_every_row(tmp_path, model, text, n):
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        path = Path(d) / "in.parquet"
        pq.write_table(pa.table({"text": text.slice(0, n)}), path)
        report = _predict_or_data_error(model, path, Path(d) / "out.csv")
        if report is not None:
            _check_predicted(report, Path(d) / "out.csv", n)
