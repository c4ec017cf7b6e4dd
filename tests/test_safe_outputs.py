"""Outputs safe to open (issue #36): CSV cells never start a spreadsheet formula, the Markdown report and the
model card never carry raw HTML, user text never reaches rich as markup, messages quote bounded excerpts, and
exit statuses say when nothing was done."""
from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app, exit_codes
from adaptlab.data.dataset import TextDataset
from adaptlab.data.label_quality import LabelIssues, SuspiciousRow, write_table
from adaptlab.data.safe_csv import FORMULA_TRIGGERS, SafeCsvWriter, safe_cell, safe_frame
from adaptlab.ship import ModelRegistry, Pipeline
from adaptlab.ship.predict import predict_file
from synthetic import topic_corpus

runner = CliRunner()
SRC = Path(__file__).resolve().parents[1] / "src" / "adaptlab"

FORMULA = "=cmd|' /C calc'!A0"
# One formula-looking label per class of the synthetic corpus.
LABELS = {"sport": FORMULA, "tech": "@SUM(1+1)", "money": "+HYPERLINK(\"http://x\")"}


def flat(s: str) -> str:
    return " ".join(s.split())


def cells(path: Path, sep: str = ",", opener=open) -> list[list[str]]:
    """Every cell as a spreadsheet would receive it (the raw CSV fields, no type guessing)."""
    with opener(path, "rt", newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh, delimiter=sep))


def assert_no_formula(rows: list[list[str]]) -> None:
    """No cell starts a formula, except plain numbers (-0.5 stays a number)."""
    number = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
    bad = [c for r in rows for c in r if c[:1] in FORMULA_TRIGGERS and not number.fullmatch(c)]
    assert not bad, bad[:5]


def relabeled(ds: TextDataset) -> TextDataset:
    return TextDataset(ds.texts, [LABELS[lab] for lab in ds.labels])


# ------------------------------------------------------------------------------------------ the rule


@pytest.mark.parametrize("value, expected", [
    (FORMULA, "'" + FORMULA), ("+1+1", "'+1+1"), ("-A1", "'-A1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("sport", "sport"), ("", ""), ("a=b", "a=b"),
    ("-0.5", "-0.5"), ("+3", "+3"), ("-1e-3", "-1e-3"), (-0.5, -0.5), (None, None), (7, 7),
])
def test_safe_cell_follows_owasp_and_keeps_numbers(value, expected):
    assert safe_cell(value) == expected


def test_safe_frame_neutralises_text_cells_and_headers_not_number_columns():
    frame = pd.DataFrame({"=h": ["=x", "ok"], "score": [-0.5, 0.25], "n": [-1, 2]})
    out = safe_frame(frame)
    assert list(out.columns) == ["'=h", "score", "n"]
    assert out["'=h"].tolist() == ["'=x", "ok"] and out["score"].tolist() == [-0.5, 0.25]
    assert out["n"].tolist() == [-1, 2] and frame["=h"].tolist() == ["=x", "ok"]  # the input is not changed


def test_no_csv_is_written_outside_the_safe_writers():
    """Every CSV writer of the package goes through adaptlab.data.safe_csv (a new raw writer fails here)."""
    raw = re.compile(r"csv\.(writer|DictWriter)\(|(?<!safe_frame\(table\))(?<!safe_frame\(frame\))\.to_csv\(")
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "safe_csv.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if raw.search(line) and not line.lstrip().startswith((">>>", "#")):
                offenders.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not offenders, offenders


# ------------------------------------------------------------------------------------------ every writer


@pytest.fixture(scope="module")
def formula_model():
    ds = relabeled(topic_corpus(90, seed=1))
    return Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(ds.texts, ds.labels)


@pytest.mark.parametrize("name, sep, opener", [("out.csv", ",", open), ("out.tsv", "\t", open),
                                               ("out.csv.gz", ",", gzip.open)])
def test_predictions_and_rejects_neutralise_labels_ids_and_previews(formula_model, tmp_path, name, sep, opener):
    texts = topic_corpus(6, seed=2).texts
    src = tmp_path / "new.csv"
    pd.DataFrame({"id": ["=1+2", "-5", "@me", "ok", "+x", "-bad"],
                  "text": [texts[0], texts[1], texts[2], texts[3], "", "=HYPERLINK(\"http://evil\")"]}).to_csv(
        src, index=False)
    report = predict_file(formula_model, src, tmp_path / name, id_col="id")
    rows = cells(tmp_path / name, sep, opener)
    assert_no_formula(rows)
    header, body = rows[0], rows[1:]
    assert header == ["id", "label", "confidence"] + [f"proba_{c}" for c in formula_model.classes_]
    assert [r[0] for r in body] == ["'=1+2", "-5", "'@me", "ok", "'-bad"]  # -5 is a number: kept
    assert {r[1] for r in body} <= {"'" + lab for lab in LABELS.values()}
    assert all(float(x) >= 0 for r in body for x in r[2:])  # numbers stay numbers
    rej = cells(Path(report.reject_path))
    assert_no_formula(rej)
    assert rej[1][:3] == ["6", "'+x", "empty_text"]  # line 6: the fifth data row


def test_label_issues_and_tables_neutralise_every_text_cell(tmp_path):
    row = SuspiciousRow(index=0, row=2, id="=id", text="+text that starts a formula", given=FORMULA,
                        suggested="@other", score=0.05, suggested_probability=0.9)
    issues = LabelIssues(rows=[row], n=10, noise_rate=0.1, per_class={}, method="m", n_folds=5)
    for name, sep in (("issues.csv", ","), ("issues.tsv", "\t")):
        rows = cells(issues.write(tmp_path / name), sep)
        assert_no_formula(rows)
        assert rows[1][2:6] == ["'=id", "'+text that starts a formula", "'" + FORMULA, "'@other"]
        assert rows[1][6] == "0.05"
    # JSON Lines keeps the exact values (no spreadsheet opens it).
    rec = json.loads((issues.write(tmp_path / "issues.jsonl")).read_text().splitlines()[0])
    assert rec["given_label"] == FORMULA
    # The shared writer (suggestions files use it too).
    out = write_table(pd.DataFrame({"text": ["-1+1"], "predicted_label": [FORMULA], "score": [-0.5]}),
                      tmp_path / "to-label.csv")
    assert cells(out)[1] == ["'-1+1", "'" + FORMULA, "-0.5"]


def test_web_review_files_neutralise_labels_texts_and_names(tmp_path):
    from adaptlab.ui.labelfix import write_corrected, write_decisions

    decision = SimpleNamespace(row=2, old=FORMULA, new="@fixed", action="fix")
    view = {"rows": [{"row": 2, "id": "=id", "suggested": "-s", "score": 0.5, "text": "+t"}], "file": "=f.csv",
            "in_use": "v0001"}
    rows = cells(write_decisions(tmp_path, [decision], view, who="=who", when="2026-01-01", model="m"))
    assert_no_formula(rows)
    assert "'" + FORMULA in rows[1] and "'@fixed" in rows[1] and "'=who" in rows[1] and "'=f.csv" in rows[1]
    corrected = SimpleNamespace(rows=[2], ids=["=id"], texts=["+t"], labels=[FORMULA])
    rows = cells(write_corrected(tmp_path, corrected))
    assert rows[1] == ["2", "'=id", "'+t", "'" + FORMULA]


def test_safe_writer_writes_rows_like_csv_writer():
    import io

    buf = io.StringIO()
    SafeCsvWriter(buf, lineterminator="\n").writerows([["a", 1.5], ["=b", -2]])
    assert buf.getvalue() == "a,1.5\n'=b,-2\n"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, tiny_encoder_dir):
    """A probe shipped from a CSV whose labels and ids start like formulas (the CLI writers' input)."""
    d = tmp_path_factory.mktemp("shipped")
    ds = relabeled(topic_corpus(90, seed=21))
    pd.DataFrame({"id": [f"=t{i}" for i in range(90)], "text": ds.texts, "label": ds.labels}).to_csv(
        d / "train.csv", index=False)
    r = runner.invoke(app, ["ship", str(d / "train.csv"), "-o", str(d / "model"), "--rung", "probe", "--encoder",
                            str(tiny_encoder_dir), "--home", str(d / "home"), "--json"])
    assert r.exit_code == 0, r.output
    return d


@pytest.mark.usefixtures("one_torch_thread")
def test_cli_predict_neighbors_and_data_check_write_safe_csv(shipped, tmp_path):
    items = tmp_path / "items.csv"
    pd.DataFrame({"id": ["=new-1", "@new-2"], "text": topic_corpus(2, seed=40).texts}).to_csv(items, index=False)
    r = runner.invoke(app, ["neighbors", str(shipped / "model"), str(items), "-k", "2", "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    rows = cells(tmp_path / "p.csv")
    assert_no_formula(rows)
    assert {"'=new-1", "'@new-2"} <= {c for row in rows for c in row}
    r = runner.invoke(app, ["predict", str(shipped / "model"), str(items), "-o", str(tmp_path / "pred.csv")])
    assert r.exit_code == 0, r.output
    assert_no_formula(cells(tmp_path / "pred.csv"))
    data = shipped / "train.csv"
    r = runner.invoke(app, ["data", "check", "--data", str(data), "--label-issues", str(tmp_path / "i.csv")])
    assert r.exit_code == 0, r.output
    assert_no_formula(cells(tmp_path / "i.csv"))


# ------------------------------------------------------------------------------------------ Markdown


def test_markdown_report_escapes_html_in_labels(tmp_path):
    from adaptlab.config import StudyConfig
    from adaptlab.evaluate import Study
    from adaptlab.report import build_report
    from adaptlab.store import RunStore

    xss = {"sport": "<script>alert(1)</script>", "tech": "a|b", "money": "R&D <b>"}
    ds = topic_corpus(90, seed=3)
    Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=100), home=tmp_path).run(
        TextDataset(ds.texts, [xss[lab] for lab in ds.labels]))
    rep = build_report(RunStore(tmp_path / "runs.sqlite"), "latest", home=tmp_path)
    assert "<script>" not in rep.markdown and "<b>" not in rep.markdown
    assert "&lt;script>alert(1)&lt;/script>" in rep.markdown and "R&amp;D &lt;b>" in rep.markdown
    assert "a\\|b" in rep.markdown  # a pipe in a label cannot split a table row
    assert "<script>alert" not in rep.html
    assert "| rung | seeds |" in rep.markdown  # the report's own tables are intact


def test_model_card_escapes_html_outside_code():
    from adaptlab.ship.card import model_card

    card = model_card({"classes": ["<script>x</script>", "ok"], "fit": {"label_counts": {"<img src=x>": 3}}})
    assert "<script>" not in card and "<img" not in card and "&lt;script>x&lt;/script>" in card
    assert "pipe = load_pipeline('MODEL/versions/<version>')" in card  # code blocks stay as typed


def test_model_card_per_class_table_keeps_a_pipe_or_line_break_in_a_label_inside_its_cell():
    import re

    from adaptlab.ship.card import model_card

    per_class = {"a|b": {"n": 3, "f1": 0.5}, "two\nlines": {"n": 4, "f1": 0.25}, "ok": {"n": 5, "f1": 1.0}}
    card = model_card({"classes": list(per_class), "extra": {"evaluation": {"f1": 0.6, "per_class": per_class}}})
    lines = card.splitlines()
    head = lines.index("| class | n | F1 |")
    rows = lines[head + 2:head + 2 + len(per_class)]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]  # split on unescaped pipes
    assert cells == [["a\\|b", "3", "0.500"], ["two lines", "4", "0.250"], ["ok", "5", "1.000"]]


# ------------------------------------------------------------------------------------------ printers


@pytest.fixture
def markup_csv(tmp_path):
    """Labels that are rich markup: a closing tag alone, a style, a bracketed word."""
    ds = topic_corpus(60, seed=5)
    names = {"sport": "[/]", "tech": "[bold red]tech", "money": "money [x]"}
    path = tmp_path / "markup.csv"
    pd.DataFrame({"text": ds.texts, "label": [names[lab] for lab in ds.labels]}).to_csv(path, index=False)
    return path


def test_data_check_prints_markup_labels_as_typed(markup_csv):
    r = runner.invoke(app, ["data", "check", "--data", str(markup_csv)])
    assert r.exit_code == 0, r.output
    text = flat(r.stdout)
    assert "'[/]': 20" in text and "'[bold red]tech': 20" in text and "'money [x]': 20" in text
    assert "bug in adaptlab" not in r.output
    r = runner.invoke(app, ["data", "check", "--data", str(markup_csv), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["label_counts"] == {"[/]": 20, "[bold red]tech": 20, "money [x]": 20}


def test_safe_console_prints_unescaped_markup_instead_of_failing():
    from rich.table import Table

    from adaptlab.cli.console import SafeConsole

    con = SafeConsole(width=80, record=True)
    con.print("label [/] here")
    t = Table("label")
    t.add_row("[/]")
    con.print(t)
    text = con.export_text()
    assert "label [/] here" in text and "[/]" in text.splitlines()[-2]
    con.print("[bold]styled[/bold] still works")
    assert "styled still works" in con.export_text()


def test_progress_lines_and_errors_escape_user_text(tmp_path):
    from adaptlab.cli import _progress

    _progress(False)("label review by [/]: 1 label(s) fixed")  # would raise MarkupError unescaped
    r = runner.invoke(app, ["data", "check", "--data", str(tmp_path / "[/]missing.csv")])
    assert r.exit_code == exit_codes.USAGE and "[/]missing.csv" in flat(r.output)


# ------------------------------------------------------------------------------------------ bounded


def test_a_huge_header_line_gives_a_short_error(tmp_path):
    path = tmp_path / "one-line.csv"
    path.write_text("x" * 300_000 + "\nfoo\n", encoding="utf-8")
    r = runner.invoke(app, ["data", "check", "--data", str(path)])
    assert r.exit_code == exit_codes.USAGE, r.output
    assert len(r.output) < 3_000 and "(300,000 characters)" in flat(r.output)
    r = runner.invoke(app, ["data", "check", "--data", str(path), "--text-col", "y" * 100_000])
    assert r.exit_code == exit_codes.USAGE and len(r.output) < 3_000


def test_bounded_message_cuts_every_line():
    from adaptlab.cli import bounded_message
    from adaptlab.errors import ConfigError, excerpt

    assert excerpt("ab" * 300) == "ab" * 100 + "… (600 characters)"
    msg = bounded_message("first\n" + "z" * 10_000)
    assert msg.startswith("first\n") and len(msg) < 2_100
    assert len(str(ConfigError.invalid("label", "q" * 10_000, "a short one"))) < 400


def test_a_cell_over_the_hard_cap_is_a_validation_problem(tmp_path):
    from adaptlab.data import load_dataset
    from adaptlab.data.validate import MAX_CELL_CHARS
    from adaptlab.errors import DataValidationError

    ds = topic_corpus(20, seed=4)
    texts = list(ds.texts)
    texts[3] = "word " * (MAX_CELL_CHARS // 5 + 1)
    path = tmp_path / "huge.csv"
    pd.DataFrame({"text": texts, "label": ds.labels}).to_csv(path, index=False)
    with pytest.raises(DataValidationError) as err:
        load_dataset(path)
    assert [p.code for p in err.value.problems] == ["cell_too_long"] and err.value.problems[0].rows == [4]
    assert len(str(err.value)) < 2_000 and "1,000,000-character limit" in str(err.value)
    kept, report = load_dataset(path, on_invalid="drop", return_report=True)
    assert len(kept) == 19 and [d.row for d in report.dropped] == [4] and report.dropped[0].codes == ["cell_too_long"]
    r = runner.invoke(app, ["data", "check", "--data", str(path)])
    assert r.exit_code == exit_codes.USAGE and "cell_too_long" in r.output and len(r.output) < 3_000


def test_data_check_warns_about_texts_far_longer_than_the_encoder_reads(tmp_path):
    ds = topic_corpus(40, seed=6)
    texts = list(ds.texts)
    texts[0] = texts[0] + " filler" * 1_000  # ~7,000 characters
    texts[1] = texts[1] + " filler" * 1_000
    path = tmp_path / "long.csv"
    pd.DataFrame({"text": texts, "label": ds.labels}).to_csv(path, index=False)
    r = runner.invoke(app, ["data", "check", "--data", str(path), "--no-label-issues"])
    assert r.exit_code == 0, r.output
    text = flat(r.output)
    assert "[long_texts] 2 text(s) (5.0% of the rows" in text and "longer than 5,000 characters" in text
    assert "(rows 1, 2)" in text and text.count("longer than 5,000 characters") == 1  # said once, in the list
    rep = json.loads(runner.invoke(app, ["data", "check", "--data", str(path), "--no-label-issues", "--json"]).stdout)
    assert rep["long_texts"]["n"] == 2 and rep["long_texts"]["rows"] == [1, 2]
    assert rep["long_texts"]["share_of_chars"] > 0.5


# ------------------------------------------------------------------------------------------ exit codes


@pytest.fixture
def registry(tmp_path):
    train, sealed = topic_corpus(150, seed=1), topic_corpus(60, seed=2)
    pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(train.texts, train.labels)
    return ModelRegistry.create(tmp_path / "model", pipe, train=train, eval_set=sealed, extra={"name": "triage"})


def test_predict_exits_3_when_every_row_is_rejected(registry, tmp_path):
    src = tmp_path / "empty-texts.csv"
    src.write_text("id,text\n1,\n2,   \n", encoding="utf-8")
    r = runner.invoke(app, ["predict", str(registry.root), str(src), "-o", str(tmp_path / "p.csv")])
    assert r.exit_code == exit_codes.NO_ROW_PREDICTED == 3, r.output
    assert "no row of" in flat(r.stderr) and "exit status 3" in flat(r.stderr)
    r = runner.invoke(app, ["predict", str(registry.root), str(src), "-o", str(tmp_path / "p2.csv"), "--json"])
    assert r.exit_code == 3 and json.loads(r.stdout)["exit_code"] == 3
    ok = tmp_path / "ok.csv"
    ok.write_text("id,text\n1,goal match team\n2,\n", encoding="utf-8")
    r = runner.invoke(app, ["predict", str(registry.root), str(ok), "-o", str(tmp_path / "p3.csv"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["exit_code"] == 0


def test_exit_statuses_are_listed_in_help():
    r = runner.invoke(app, ["--help"])
    text = flat(r.output)
    # The help renders as Markdown: the backticks of `predict` become code style, not characters.
    assert "Exit status:" in text and "3 predict labeled no row" in text and "4 retrain held the batch" in text


# ------------------------------------------------------------------------------------------ lease waits


def test_a_lease_wait_says_how_long_even_without_progress_lines(tmp_path, caplog):
    """--json prints no progress lines; the wait on another study's lease is still said (logging: stderr)."""
    import logging

    from adaptlab.config import StudyConfig
    from adaptlab.evaluate import Study
    from adaptlab.store import RunStore
    from adaptlab.store.leases import CellLeases

    store = RunStore(tmp_path / "runs.sqlite")
    assert store.acquire_lease("cell", "otherhost:1:live", ttl=0.6)
    with CellLeases(store, poll=0.05) as mine, caplog.at_level(logging.WARNING, logger="adaptlab.store.leases"):
        _, claimed = mine.await_cells(["cell"])  # no `say`: the --json case
    assert claimed == ["cell"]
    msg = flat(" ".join(r.getMessage() for r in caplog.records))
    assert "waiting for 1 cell(s) another study on this home is training (otherhost:1:live)" in msg
    assert re.search(r"trained here in at most [01]s", msg)

    # The same through a study run without progress (what `study run --json` does).
    ds = topic_corpus(60, seed=8)
    home = tmp_path / "home"
    Study(StudyConfig(rungs="tfidf", seeds=1), home=home).run(ds)
    store = RunStore(home / "runs.sqlite")
    with store._connect() as con:
        (key,) = [r[0] for r in con.execute("SELECT result_key FROM results")]
        con.execute("DELETE FROM results")
    assert store.acquire_lease(key, "otherhost:2:live", ttl=2.0)
    caplog.clear()
    study = Study(StudyConfig(rungs="tfidf", seeds=1), home=home)
    study.lease_options = {"poll": 0.05}
    with caplog.at_level(logging.WARNING, logger="adaptlab.store.leases"):
        assert study.run(ds).n_trained == 1
    assert "(otherhost:2:live)" in caplog.text and "in at most" in caplog.text


def test_a_rerun_takes_over_the_leases_of_a_killed_study_on_this_machine_at_once(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    from adaptlab.store import RunStore
    from adaptlab.store.leases import CellLeases, owner_is_dead

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f"{socket.gethostname()}:{int(gone.stdout)}:killed"
    assert owner_is_dead(dead) and not owner_is_dead("otherhost:1:x")
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.acquire_lease("cell", dead, ttl=90)
    said: list[str] = []
    t0 = time.monotonic()
    with CellLeases(store, poll=0.05) as mine:
        _, claimed = mine.await_cells(["cell"], said.append)
        assert claimed == ["cell"] and store.lease("cell")["owner"] == mine.owner
    assert time.monotonic() - t0 < 5 and "no longer runs on this machine" in said[0]
