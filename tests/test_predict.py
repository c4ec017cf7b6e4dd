"""predict_file: streaming batch prediction, rejects with line numbers, formats, atomic output."""
from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adaptlab.errors import ConfigError, DataError
from adaptlab.rungs import RungContext, get_rung
from adaptlab.ship.predict import REJECT_COLUMNS, PredictReport, predict_file
from synthetic import topic_corpus


@pytest.fixture(scope="module")
def model():
    ds = topic_corpus(90, seed=1)
    return get_rung("tfidf", {"min_df": 1}).fit(ds, ds, seed=0, context=RungContext(classes=ds.classes))


@pytest.fixture(scope="module")
def texts():
    return topic_corpus(60, seed=2).texts


def read_csv(path, sep=","):
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def rejects(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def proba_of(out: pd.DataFrame, classes) -> np.ndarray:
    return out[[f"proba_{c}" for c in classes]].to_numpy(dtype=float)


# ------------------------------------------------------------------------------------ CSV and rejects


def test_csv_bad_rows_are_rejected_with_their_lines_and_good_rows_predicted_in_order(model, texts, tmp_path):
    t = texts
    raw = (
        b"id,text,source\n"                                        # line 1
        + f"a1,{t[0]},web\n".encode()                              # 2
        + b"a2,,web\n"                                             # 3  empty text
        + f'a3,"{t[1]}\nsecond line of a3",mail\n'.encode()        # 4-5 one record over two lines
        + f"a4,{t[2]},web,extra\n".encode()                        # 6  wrong field count
        + b"a5,caf\xe9 au lait,web\n"                              # 7  cp1252 byte in a UTF-8 file
        + b"\n"                                                    # 8  blank: not a row
        + b"a6,   ,web\n"                                          # 9  whitespace only
        + f"a7,{t[3]},web\n".encode()                              # 10
    )
    src = tmp_path / "new.csv"
    src.write_bytes(raw)
    report = predict_file(model, src, tmp_path / "out.csv")

    out = read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["id", "label", "confidence"] + [f"proba_{c}" for c in model.classes_]
    assert out["id"].tolist() == ["a1", "a3", "a7"]
    good = [t[0], f"{t[1]}\nsecond line of a3", t[3]]
    expected = model.predict_proba(good)
    assert np.array_equal(proba_of(out, model.classes_), expected)
    assert out["label"].tolist() == list(model.classes_[expected.argmax(1)])
    assert np.array_equal(out["confidence"].astype(float), expected.max(1))

    rej = rejects(tmp_path / "out.rejects.csv")
    assert list(rej[0]) == list(REJECT_COLUMNS)
    assert [(r["line"], r["id"], r["problem"]) for r in rej] == [
        ("3", "a2", "empty_text"), ("6", "a4", "wrong_field_count"),
        ("7", "a5", "bad_bytes"), ("9", "a6", "empty_text"),
    ]
    assert "4 field(s) but the header has 3" in rej[1]["reason"]
    assert "0xE9" in rej[2]["reason"] and rej[2]["preview"] == "caf\\xe9 au lait"

    assert (report.n_read, report.n_predicted, report.n_rejected) == (7, 3, 4)
    assert report.reject_path == str(tmp_path / "out.rejects.csv")
    assert report.rejected_by_problem == {"empty_text": 2, "wrong_field_count": 1, "bad_bytes": 1}
    summary = report.summary()
    assert "4 rows were NOT predicted" in summary and str(tmp_path / "out.rejects.csv") in summary
    assert "lines 3, 9" in summary and "--encoding cp1252" in summary
    json.dumps(report.to_dict())  # JSON-safe


def test_the_same_file_read_as_cp1252_has_no_bad_bytes(model, tmp_path):
    src = tmp_path / "excel.csv"
    src.write_bytes("text\ncafé match goal\nprix €\n".encode("cp1252"))
    report = predict_file(model, src, tmp_path / "out.csv", encoding="cp1252")
    assert report.n_rejected == 0 and report.encoding == "cp1252"
    with pytest.raises(ConfigError, match=r"encoding='klingon' is not valid"):
        predict_file(model, src, tmp_path / "out.csv", encoding="klingon")


def test_unclosed_quote_is_one_reject_starting_at_its_line(model, tmp_path):
    src = tmp_path / "q.csv"
    src.write_text('id,text\n1,match goal\n2,"software chip\n3,bank market\n4,data network\n', encoding="utf-8")
    predict_file(model, src, tmp_path / "out.csv")
    (rej,) = rejects(tmp_path / "out.rejects.csv")
    assert (rej["line"], rej["id"], rej["problem"]) == ("3", "2", "unclosed_quote")
    assert "runs from line 3 to the end of the file (line 5)" in rej["reason"]
    assert read_csv(tmp_path / "out.csv")["id"].tolist() == ["1"]


def test_without_an_id_column_rows_carry_their_input_line(model, texts, tmp_path):
    src = tmp_path / "plain.csv"
    src.write_text(f'text\n{texts[0]}\n"{texts[1]}\nmore"\n\n{texts[2]}\n', encoding="utf-8")
    report = predict_file(model, src, tmp_path / "out.csv")
    out = read_csv(tmp_path / "out.csv")
    assert out.columns[0] == "row" and out["row"].tolist() == ["2", "3", "6"]
    assert report.id_col is None and report.n_rejected == 0
    assert "No row was rejected" in report.summary()


def test_text_column_is_auto_detected_and_explicit_columns_win(model, texts, tmp_path):
    src = tmp_path / "c.csv"
    pd.DataFrame({"ref": ["r1", "r2"], " Content ": texts[:2], "note": ["x", "y"]}).to_csv(src, index=False)
    report = predict_file(model, src, tmp_path / "out.csv")
    assert report.text_col == " Content " and report.id_col is None
    assert np.array_equal(proba_of(read_csv(tmp_path / "out.csv"), model.classes_), model.predict_proba(texts[:2]))

    report = predict_file(model, src, tmp_path / "out2.csv", text_col="note", id_col="ref")
    out = read_csv(tmp_path / "out2.csv")
    assert report.text_col == "note" and out["ref"].tolist() == ["r1", "r2"]
    assert np.array_equal(proba_of(out, model.classes_), model.predict_proba(["x", "y"]))


def test_missing_text_column_lists_the_columns_and_suggests_the_flag(model, tmp_path):
    src = tmp_path / "m.csv"
    src.write_text("id,review,stars\n1,great,5\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        predict_file(model, src, tmp_path / "out.csv")
    msg = str(e.value)
    assert "no text column found" in msg and "'id', 'review', 'stars'" in msg and "--text-col NAME" in msg
    with pytest.raises(DataError, match=r"text_col='reveiw' is not a column. Did you mean 'review'\?"):
        predict_file(model, src, tmp_path / "out.csv", text_col="reveiw")
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.rejects.csv").exists()


def test_unusable_inputs_and_outputs_raise_with_the_fix(model, tmp_path):
    src = tmp_path / "data.csv"
    src.write_text("text\nmatch goal\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dta.csv does not exist. Files with similar names there: data.csv"):
        predict_file(model, tmp_path / "dta.csv", tmp_path / "out.csv")
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"cannot read files of type '.xlsx'.*CSV UTF-8"):
        predict_file(model, tmp_path / "data.xlsx", tmp_path / "out.csv")
    with pytest.raises(ConfigError, match=r"output_path=.*out.xlsx.* expected a file ending in .csv"):
        predict_file(model, src, tmp_path / "out.xlsx")
    with pytest.raises(ConfigError, match=r"output_path=.*data.csv.* expected a file other than the input"):
        predict_file(model, src, src)
    with pytest.raises(ConfigError, match=r"batch_size=0 is not valid"):
        predict_file(model, src, tmp_path / "out.csv", batch_size=0)
    with pytest.raises(ConfigError, match=r"model='str' is not valid: expected a fitted model"):
        predict_file("model", src, tmp_path / "out.csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.csv is empty"):
        predict_file(model, tmp_path / "empty.csv", tmp_path / "out.csv")
    (tmp_path / "a_file").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cannot write the predictions beside .*a_file/out.csv"):
        predict_file(model, src, tmp_path / "a_file" / "out.csv")
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(b"text\nmatch goal\n" * 50)[:40])
    with pytest.raises(DataError, match=r"not a complete gzip file"):
        predict_file(model, tmp_path / "cut.csv.gz", tmp_path / "out.csv")


# ------------------------------------------------------------------------------------ other formats


def test_jsonl_invalid_lines_and_non_string_texts_are_rejected(model, texts, tmp_path):
    lines = [
        json.dumps({"id": 1, "text": texts[0]}),            # 1
        '{"id": 2, "text": "unterminated',                  # 2  invalid JSON
        "",                                                 # 3  blank, still counted as a line
        json.dumps({"id": 3, "text": 42}),                  # 4  not a string
        json.dumps({"id": 4, "text": None}),                # 5  null
        json.dumps({"id": 5}),                              # 6  no text field
        json.dumps(["a", "list"]),                          # 7  not an object
        json.dumps({"id": 6, "text": texts[1]}),            # 8
    ]
    src = tmp_path / "new.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = predict_file(model, src, tmp_path / "out.jsonl")

    out = [json.loads(s) for s in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [o["id"] for o in out] == [1, 6]  # JSON ids keep their type
    got = np.array([[o[f"proba_{c}"] for c in model.classes_] for o in out])
    assert np.array_equal(got, model.predict_proba([texts[0], texts[1]]))
    rej = rejects(tmp_path / "out.rejects.csv")
    assert [(r["line"], r["id"], r["problem"]) for r in rej] == [
        ("2", "", "invalid_json"), ("4", "3", "non_string_text"), ("5", "4", "missing_text"),
        ("6", "5", "missing_text"), ("7", "", "not_an_object"),
    ]
    assert "not valid JSON" in rej[0]["reason"] and "'text' field" in rej[3]["reason"]
    assert (report.n_read, report.n_predicted, report.n_rejected) == (7, 2, 5)

    array = tmp_path / "array.jsonl"
    array.write_text(json.dumps([{"text": "a"}, {"text": "b"}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"none of the first 1 non-blank line\(s\) holds a JSON object.*JSON array"):
        predict_file(model, array, tmp_path / "o.csv")


def test_parquet_in_and_out_keeps_the_id_type_and_numbers_rows(model, texts, tmp_path):
    src = tmp_path / "new.parquet"
    table = pa.table({"doc_id": pa.array([10, 11, 12, 13], pa.int64()),
                      "body": [texts[0], None, texts[1], texts[2]]})
    pq.write_table(table, src, row_group_size=2)
    report = predict_file(model, src, tmp_path / "out.parquet", id_col="doc_id", batch_size=2)

    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.field("doc_id").type == pa.int64()
    assert out.column("doc_id").to_pylist() == [10, 12, 13]
    got = np.column_stack([out.column(f"proba_{c}").to_numpy() for c in model.classes_])
    assert np.array_equal(got, model.predict_proba([texts[0], texts[1], texts[2]]))
    (rej,) = rejects(tmp_path / "out.rejects.csv")
    assert (rej["line"], rej["id"], rej["problem"]) == ("2", "11", "missing_text")
    assert report.format == "parquet" and report.text_col == "body" and "numbered from 1" in report.summary()

    (tmp_path / "header_only.csv").write_text("id,text\n", encoding="utf-8")
    report = predict_file(model, tmp_path / "header_only.csv", tmp_path / "empty.parquet")
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0 and report.n_read == 0
    assert "no data rows" in report.summary()

    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(DataError, match=r"text column 'text' holds int64 values, not text.*--text-col"):
        predict_file(model, tmp_path / "ints.parquet", tmp_path / "o.csv")


def test_gzipped_tsv_in_csv_out_and_utf16_and_semicolon_csv(model, texts, tmp_path):
    gz = tmp_path / "new.tsv.gz"
    gz.write_bytes(gzip.compress(f"id\ttext\nx\t{texts[0]}\ny\t{texts[1]}\n".encode()))
    predict_file(model, gz, tmp_path / "out.csv.gz")
    with gzip.open(tmp_path / "out.csv.gz", "rt", encoding="utf-8") as f:
        out = pd.read_csv(f, dtype={"id": str})
    assert out["id"].tolist() == ["x", "y"]
    assert np.array_equal(proba_of(out, model.classes_), model.predict_proba(texts[:2]))

    u16 = tmp_path / "u16.csv"
    u16.write_bytes(f"text\n{texts[0]}\n".encode("utf-16"))
    report = predict_file(model, u16, tmp_path / "u16.tsv")
    assert report.encoding == "utf-16" and report.n_predicted == 1

    semi = tmp_path / "semi.csv"
    semi.write_text(f"id;text\n1;{texts[0]}\n", encoding="utf-8")
    assert predict_file(model, semi, tmp_path / "semi_out.csv").n_predicted == 1


# ------------------------------------------------------------------------------------ batching, atomicity


def test_batches_give_the_same_predictions_as_one_call(model, texts, tmp_path):
    src = tmp_path / "big.csv"
    pd.DataFrame({"id": [f"d{i}" for i in range(len(texts))], "text": texts}).to_csv(src, index=False)
    recorder = _Recording(model)
    predict_file(recorder, src, tmp_path / "small_batches.csv", batch_size=7)
    assert recorder.sizes == [7] * 8 + [4]  # streamed: the model never sees more than one batch
    predict_file(model, src, tmp_path / "one_batch.csv", batch_size=1000)
    small, one = read_csv(tmp_path / "small_batches.csv"), read_csv(tmp_path / "one_batch.csv")
    assert small["id"].tolist() == [f"d{i}" for i in range(len(texts))]
    assert small.equals(one)
    assert np.array_equal(proba_of(small, model.classes_), model.predict_proba(texts))


class _Recording:
    def __init__(self, model):
        self.model, self.classes_, self.sizes = model, model.classes_, []

    def predict_proba(self, texts):
        self.sizes.append(len(texts))
        return self.model.predict_proba(texts)


class _Interrupting:
    """Wraps a model; the second predict_proba call is interrupted like Ctrl-C."""

    def __init__(self, model):
        self.model, self.classes_, self.calls = model, model.classes_, 0

    def predict_proba(self, texts):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return self.model.predict_proba(texts)


def test_an_interrupted_run_leaves_no_partial_output(model, texts, tmp_path):
    src = tmp_path / "big.csv"
    pd.DataFrame({"text": texts}).to_csv(src, index=False)
    previous = tmp_path / "out.csv"
    previous.write_text("row,label\n2,complete earlier result\n", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        predict_file(_Interrupting(model), src, previous, batch_size=10)
    assert previous.read_text(encoding="utf-8") == "row,label\n2,complete earlier result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "out.csv"]  # no .partial left


def test_progress_bar_reports_bytes_on_stderr(model, texts, tmp_path, capsys):
    src = tmp_path / "p.csv"
    pd.DataFrame({"text": texts[:20]}).to_csv(src, index=False)
    report = predict_file(model, src, tmp_path / "out.csv", batch_size=5, show_progress=True)
    err = capsys.readouterr().err
    assert "predict p.csv" in err and "100%" in err and "rows=20" in err
    assert isinstance(report, PredictReport) and report.rows_per_second > 0


def test_the_shipped_pipeline_is_a_model_predict_file_accepts(texts, tmp_path):
    from adaptlab.ship import Pipeline

    ds = topic_corpus(60, seed=3)
    y = [ds.classes.index(c) for c in ds.labels]  # integer classes: written as text labels
    pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(ds.texts, y)
    src = tmp_path / "new.csv"
    pd.DataFrame({"text": texts[:5]}).to_csv(src, index=False)
    predict_file(pipe, src, tmp_path / "out.csv")
    out = read_csv(tmp_path / "out.csv")
    assert out["label"].tolist() == [str(v) for v in pipe.predict(texts[:5])]
    assert np.array_equal(proba_of(out, pipe.classes_), pipe.predict_proba(texts[:5]))
