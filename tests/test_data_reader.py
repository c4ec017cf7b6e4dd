"""The one reader of data files (`adaptlab.data.reader`), and that `load_dataset` and `predict` agree on it."""
import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adaptlab.data import load_dataset
from adaptlab.data.reader import open_records, unique_names
from adaptlab.errors import DataError
from adaptlab.rungs import RungContext, get_rung
from adaptlab.ship.predict import predict_file
from synthetic import topic_corpus

SRC = Path(__file__).resolve().parents[1] / "src" / "adaptlab"


def _records(path, **kw):
    with open_records(path, **kw) as r:
        return r.columns, [(x.line, x.number, x.values, x.problem and x.problem[0]) for x in r]


def test_csv_records_carry_editor_lines_and_record_numbers(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(b'\n\ntext,label\r\n"two\nlines",a\r\n\r\nplain,b\r\nshort\r\nb,c,extra\r\n')
    columns, recs = _records(p)
    assert columns == ["text", "label"]
    assert recs == [(4, 1, ["two\nlines", "a"], None), (7, 2, ["plain", "b"], None),
                    (8, 3, ["short"], "wrong_field_count"), (9, 4, ["b", "c", "extra"], "wrong_field_count")]


def test_semicolon_csv_bom_and_header_names(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes("\ufefftext;;text;label\nx;1;2;a\n".encode("utf-8"))
    columns, recs = _records(p)
    assert columns == ["text", "Unnamed: 1", "text.1", "label"]
    assert recs == [(2, 1, ["x", "1", "2", "a"], None)]
    assert unique_names(["a", "a", "a.1"]) == ["a", "a.1", "a.1.1"]


def test_unclosed_quote_is_a_record_problem_not_lost_text(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('text,label\nok,a\n"never closed,b\nmore,c\n', encoding="utf-8")
    _, recs = _records(p)
    assert recs[0][3] is None and recs[1][3] == "unclosed_quote" and len(recs) == 2


def test_jsonl_problems_and_sampled_columns(tmp_path):
    p = tmp_path / "d.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"text": "a", "label": "x"}\n\n[1, 2]\n{bad\n{"text": "b", "extra": 1}\n'))
    with open_records(p) as r:
        assert r.sample_columns(1) is None and r.columns == ["text", "label"]
        recs = [(x.line, x.number, x.problem and x.problem[0]) for x in r]
    assert recs == [(1, 1, None), (3, 2, "not_an_object"), (4, 3, "invalid_json"), (5, 4, None)]


def test_parquet_records_and_projection(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": [7, 8], "text": ["a", None], "label": ["x", "y"]}), p)
    with open_records(p, batch_size=1) as r:
        assert r.columns == ["id", "text", "label"] and r.total == 2
        r.wanted = ["text"]
        assert [(x.line, x.values) for x in r] == [(1, {"text": "a"}), (2, {"text": None})]
        assert r.position() == 2


def test_strict_bytes_stops_and_lenient_reads_keep_the_row(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes("text,label\nCaf\xe9,a\nok,b\n".encode("cp1252"))
    with pytest.raises(UnicodeDecodeError):
        _records(p, strict_bytes=True)
    _, recs = _records(p)
    assert recs[0][2][0] == "Caf\udce9" and recs[1][2] == ["ok", "b"]
    assert _records(p, encoding="cp1252")[1][0][2] == ["Café", "a"]


def test_empty_and_blank_header_files_say_what_to_do(tmp_path):
    (tmp_path / "e.csv").write_bytes(b"")
    with pytest.raises(DataError, match="is empty.*Fix"):
        open_records(tmp_path / "e.csv")
    (tmp_path / "b.tsv").write_bytes(b" \t \nx\ty\n")
    with pytest.raises(DataError, match="line of blanks instead of a header"):
        open_records(tmp_path / "b.tsv")


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl", "d.parquet", "d.csv.gz"])
def test_load_and_predict_agree_on_every_record(tmp_path, name):
    """The same file gives load_dataset's rows and predict's output rows, record for record."""
    texts = ["the market rallied", 'shares "fell"\nsharply', "the striker scored, twice", "a late goal won it"] * 3
    labels = ["a", "a", "b", "b"] * 3
    path = tmp_path / name
    rows = [{"id": f"r{i}", "text": t, "label": y} for i, (t, y) in enumerate(zip(texts, labels))]
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif ".jsonl" in name:
        path.write_text("\n\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    else:
        sep = "\t" if ".tsv" in name else ","
        with open(tmp_path / "plain", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, ["id", "text", "label"], delimiter=sep)
            w.writeheader()
            w.writerows(rows)
            f.write("\n")  # a trailing blank line is not a record
        data = (tmp_path / "plain").read_bytes()
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    ds = load_dataset(path)
    assert list(ds.texts) == texts and list(ds.ids) == [r["id"] for r in rows]
    train = topic_corpus(40, seed=0)
    model = get_rung("tfidf", {"min_df": 1}).fit(train, train, seed=0, context=RungContext(classes=train.classes))
    report = predict_file(model, path, tmp_path / "out.jsonl")
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert report.n_predicted == len(ds) and [o["id"] for o in out] == list(ds.ids)


def test_short_and_long_records_in_load_and_predict(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\nfine,a\nshort\nalso fine,b\ngood,a\nbetter,b\n", encoding="utf-8")
    ds, report = load_dataset(p, on_invalid="drop", return_report=True)
    assert ds.texts == ["fine", "also fine", "good", "better"]
    assert [d.row for d in report.dropped] == [2]  # read as a missing label
    p.write_text("text,label\nfine,a\ntoo,many,fields\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"not valid CSV: the record has 3 field\(s\).*\(line 3\)"):
        load_dataset(p)


def test_one_reader_of_data_files():
    """No module but data/reader.py parses CSV records or reads Parquet rows of user files (#20)."""
    parsers = ("csv.reader(", "csv.DictReader(", "read_csv(", "pq.read_table(", "iter_batches(", "ParquetFile(")
    allowed = {"data/reader.py", "data/bundled.py", "ship/registry.py"}  # packaged corpora; the model's own data
    found = [f"{p.relative_to(SRC)}: {s}" for p in SRC.rglob("*.py") for s in parsers
             if s in p.read_text(encoding="utf-8") and str(p.relative_to(SRC)) not in allowed]
    assert found == []
