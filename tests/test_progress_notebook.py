"""Issue #31: long work says where it is (``--json`` lines on stderr, no carriage returns off a terminal, the web
job's time left, the planner's spinner) and the notebook API (DataFrames in, ``to_frame``, HTML views, progress
by default, ``load_pipeline`` on a model folder)."""
import json
import re
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import adaptlab
from adaptlab.cli import app
from adaptlab.config import StudyConfig
from adaptlab.data import load_dataset
from adaptlab.errors import ConfigError, DataError
from adaptlab.evaluate import Study
from adaptlab.ship import ModelRegistry, Pipeline, load_model, load_pipeline
from synthetic import topic_corpus

runner = CliRunner()


@pytest.fixture
def every_batch(monkeypatch):
    """Plain progress lines after every batch, not every 10 s (the tests' files take milliseconds)."""
    import adaptlab.cli.progress as progress

    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)


@pytest.fixture
def model_folder(tmp_path):
    train = topic_corpus(90, seed=1)
    pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(train.texts, train.labels)
    ModelRegistry.create(tmp_path / "model", pipe, train=train, eval_set=topic_corpus(30, seed=2))
    return tmp_path / "model"


def _csv(path, ds, labels=True):
    cols = {"id": [f"q{i}" for i in range(len(ds))], "text": ds.texts}
    if labels:
        cols["label"] = ds.labels
    pd.DataFrame(cols).to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------------------- --json on stderr
def test_predict_json_says_where_it_is_on_stderr_and_stdout_is_one_document(model_folder, tmp_path, every_batch):
    src = _csv(tmp_path / "new.csv", topic_corpus(40, seed=3), labels=False)
    r = runner.invoke(app, ["predict", str(model_folder), str(src), "-o", str(tmp_path / "out.csv"),
                            "--batch-size", "10", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)  # exactly one JSON document
    assert report["n_predicted"] == 40
    lines = r.stderr.splitlines()
    assert "\r" not in r.stderr
    assert any(ln.startswith("predict new.csv: loading the model") for ln in lines)
    # A line per batch (every 10 s in real use) with the share read and the time left, then the total.
    periodic = [ln for ln in lines if re.match(r"predict new.csv: [\d,]+ rows \(\d+%\) in .*; about .* left", ln)]
    assert len(periodic) >= 3, lines
    assert lines[-1].startswith("predict new.csv: 40 rows in ")


def test_predict_in_table_mode_off_a_terminal_prints_plain_lines_never_a_bar(model_folder, tmp_path, every_batch):
    src = _csv(tmp_path / "new.csv", topic_corpus(30, seed=3), labels=False)
    r = runner.invoke(app, ["predict", str(model_folder), str(src), "-o", str(tmp_path / "out.csv"),
                            "--batch-size", "10"])
    assert r.exit_code == 0, r.output
    assert "\r" not in r.output and "predict new.csv: 10 rows" in r.stderr
    assert "predicted" in r.stdout.lower()


def test_data_check_json_names_each_step_on_stderr(tmp_path):
    src = _csv(tmp_path / "train.csv", topic_corpus(120, seed=4))
    r = runner.invoke(app, ["data", "check", "--data", str(src), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n"] == 120
    lines = r.stderr.splitlines()
    assert "data check: 120 rows read; searching near-duplicates" in lines
    assert any(ln.startswith("data check: label check on 120 rows") for ln in lines)
    assert lines[-1].startswith("data check: done in ") and "\r" not in r.stderr


def test_json_output_stays_one_document_when_a_library_prints(tmp_path, monkeypatch):
    import adaptlab.evaluate.datacheck as data  # where `data check` (CLI and web) calls it

    def chatty(*a, **kw):
        print({"loss": 0.69, "epoch": 1.0})  # what the transformers Trainer prints per step
        return real(*a, **kw)

    real = data.find_near_duplicates
    monkeypatch.setattr(data, "find_near_duplicates", chatty)
    src = _csv(tmp_path / "train.csv", topic_corpus(60, seed=4))
    r = runner.invoke(app, ["data", "check", "--data", str(src), "--json", "--no-label-issues"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n"] == 60 and "'loss': 0.69" in r.stderr


def test_ship_and_retrain_json_report_progress_on_stderr(tmp_path):
    train = _csv(tmp_path / "train.csv", topic_corpus(90, seed=5))
    r = runner.invoke(app, ["ship", str(train), "-o", str(tmp_path / "m"), "--rung", "tfidf",
                            "--home", str(tmp_path / "h"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["version"]["id"] == "v0001"
    assert r.stderr.strip() and "\r" not in r.stderr
    new = _csv(tmp_path / "new.csv", topic_corpus(30, seed=6))
    r = runner.invoke(app, ["retrain", str(tmp_path / "m"), str(new), "--json"])
    assert r.exit_code == 0, r.output
    assert "promoted" in json.loads(r.stdout) and r.stderr.strip() and "\r" not in r.stderr


def test_encoders_embed_json_counts_the_texts_on_stderr(tmp_path, tiny_encoder_dir, every_batch):
    src = _csv(tmp_path / "texts.csv", topic_corpus(50, seed=7), labels=False)
    r = runner.invoke(app, ["encoders", "embed", "--data", str(src), "--out", str(tmp_path / "v.npy"),
                            "--encoder", str(tiny_encoder_dir), "--no-cache", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n"] == 50 and np.load(tmp_path / "v.npy").shape[0] == 50
    assert "embed texts.csv: 50 of 50 texts (100%)" in r.stderr and "\r" not in r.stderr


def test_count_lines_are_throttled_and_say_the_time_left():
    from adaptlab.cli.progress import CountLines

    got, t = [], iter([0.0, 1.0, 5.0, 30.0])
    lines = CountLines("predict x.csv", write=got.append, every=10.0, clock=lambda: next(t))
    lines(100, total=1000)  # 1 s in: too soon for a line
    lines(200, fraction=0.25)  # 5 s in: still too soon
    lines(600, fraction=0.6)  # 30 s in
    assert got == ["predict x.csv: 600 rows (60%) in 30 s; about 20 s left"]


def test_setfit_loss_dicts_stay_off_stdout(tiny_encoder, capsys, one_torch_thread):
    from adaptlab.config import Budget
    from adaptlab.rungs import RungContext, get_rung

    ds = topic_corpus(60, seed=0)
    train, val = ds.subset(range(40)), ds.subset(range(40, 60))
    rung = get_rung("setfit", {"body_lr": 1e-3, "batch_size": 8, "C_grid": [1.0], "eval_points": 1})
    for show in (False, True):  # the table mode on a terminal draws the bar; neither prints the losses
        ctx = RungContext(classes=["money", "sport", "tech"], encoder=tiny_encoder, budget=Budget(steps=4),
                          show_progress=show)
        rung.fit(train, val, seed=0, context=ctx)
        out = capsys.readouterr().out
        assert "loss" not in out and "{" not in out, out


# ------------------------------------------------------------------------------------------- notebook API
def test_load_dataset_reads_a_dataframe_like_a_file():
    reviews = ["great film", "awful film", "fine film", "bad film", "lovely cast", "dull plot", "nice end", "weak cast"]
    df = pd.DataFrame({"review": reviews, "stars": [5, 1] * 4, "user": list("abcdefgh")}, index=range(10, 18))
    ds, report = load_dataset(df, text_col="review", label_col="stars", group_col="user", return_report=True)
    assert ds.texts == reviews and ds.labels == ["5", "1"] * 4 and ds.groups == list("abcdefgh")
    assert ds.rows == list(range(1, 9)) and report.format == "dataframe" and ds.source == "DataFrame"
    assert adaptlab.load_dataset(df, text_col="review", label_col="stars", group_col="user").content_hash == ds.content_hash
    # The same rules as a file: a wrong column names the fix, a bad row is listed by its row number.
    with pytest.raises(DataError, match="text_col='text_body' is not a column"):
        load_dataset(df, text_col="text_body", label_col="stars")
    bad = df.assign(review=[None if i == 1 else t for i, t in enumerate(reviews)])
    dropped = load_dataset(bad, text_col="review", label_col="stars", on_invalid="drop", return_report=True)[1]
    assert [d.row for d in dropped.dropped] == [2]
    with pytest.raises(DataError, match="duplicate column names"):
        load_dataset(pd.DataFrame([[1, 2]], columns=["text", "text"]))
    with pytest.raises(ConfigError, match="a file path or a pandas DataFrame, not a list"):
        load_dataset(["great film", "awful film"])


def _study_result(tmp_path, **kw):
    ds = topic_corpus(90, seed=8)
    return Study(StudyConfig(rungs=["tfidf"], seeds=3, n_boot=100), home=tmp_path / "h", **kw).run(ds)


def test_study_result_to_frame_and_html(tmp_path):
    result = _study_result(tmp_path, show_progress=False)
    frame = result.to_frame()
    assert frame.index.tolist() == ["tfidf"]
    row = result.row("tfidf")
    assert frame.loc["tfidf", "n_seeds"] == 3 and frame.loc["tfidf", "mean"] == pytest.approx(row["mean"])
    assert frame.loc["tfidf", "ci_low"] == pytest.approx(row["ci_low"]) and "std" in frame.columns
    seeds = result.to_frame(per_seed=True)
    assert len(seeds) == 3 and set(seeds["rung"]) == {"tfidf"} and seeds["test_f1"].notna().all()
    page = result._repr_html_()
    assert 'id="study-rungs"' in page and f"{row['mean']:.4f} ± {row['std']:.4f}" in page
    assert result.study_id[:12] in page


def test_decision_html_escapes_and_shows_the_verdicts():
    from adaptlab.decide import Evidence, decide

    d = decide(Evidence.from_tables({"probe": [0.81, 0.82, 0.83], "refit": [0.82, 0.83, 0.84]}))
    page = d._repr_html_()
    assert d.status in page and "<td>probe</td>" in page and "<td>refit</td>" in page
    assert "Flip inspection" in page and "<script" not in page
    d.headline = "<script>alert(1)</script>"
    assert "&lt;script&gt;" in d._repr_html_()


def test_a_study_in_a_notebook_shows_a_bar_over_its_cells(tmp_path, monkeypatch, capsys):
    import adaptlab.evaluate.study as study_mod

    monkeypatch.setattr(study_mod, "in_notebook", lambda: True)
    monkeypatch.setattr(study_mod, "widget_bars", lambda: False)  # no ipywidgets: no embedding/training bars
    assert Study(StudyConfig(rungs=["tfidf"])).show_progress is False
    monkeypatch.setattr(study_mod, "widget_bars", lambda: True)
    study = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=100), home=tmp_path / "h")
    assert study.show_progress is True
    study.run(topic_corpus(60, seed=9))
    err = capsys.readouterr().err
    assert "study cells" in err and "2/2" in err
    # Outside a notebook, or when asked, nothing is drawn.
    monkeypatch.setattr(study_mod, "in_notebook", lambda: False)
    assert Study(StudyConfig(rungs=["tfidf"])).show_progress is False


def test_in_notebook_is_false_in_a_plain_interpreter_and_true_in_a_kernel(monkeypatch):
    import sys

    from adaptlab.evaluate.notebook import in_notebook

    class ZMQInteractiveShell:
        pass

    monkeypatch.setitem(sys.modules, "IPython", NS(get_ipython=lambda: None))
    assert in_notebook() is False
    monkeypatch.setitem(sys.modules, "IPython", NS(get_ipython=lambda: ZMQInteractiveShell()))
    assert in_notebook() is True


def test_load_pipeline_accepts_the_model_folder_and_loads_the_version_in_use(model_folder):
    texts = topic_corpus(20, seed=10).texts
    pipe = load_pipeline(model_folder)
    assert pipe.predict(texts).tolist() == load_model(model_folder).predict(texts).tolist()
    assert adaptlab.load_pipeline(model_folder / "versions" / "v0001").rung == "tfidf"
    index = model_folder / "registry.json"
    raw = json.loads(index.read_text())
    index.write_text(json.dumps({**raw, "current": "../../elsewhere"}))
    with pytest.raises(ConfigError, match="no version in use"):
        load_pipeline(model_folder)
    index.write_text(json.dumps({**raw, "current": "v0009"}))
    with pytest.raises(ConfigError, match="v0009 is in use, but"):
        load_pipeline(model_folder)


# ------------------------------------------------------------------------------------------- web app
def test_job_eta_from_finished_runs_estimates_and_the_time_budget():
    from adaptlab.ui.eta import estimates_for_job, job_eta

    cells = {"tfidf|0": {"rung": "tfidf", "state": "done", "seconds": 2.0},
             "tfidf|1": {"rung": "tfidf", "state": "running", "started": 99.0},
             "lora|0": {"rung": "lora", "state": "pending"}, "lora|1": {"rung": "lora", "state": "pending"}}
    job = {"status": "running", "started": 0.0, "spec": {}, "cells": cells}
    eta = job_eta(job, now=100.0)
    assert eta["seconds"] is None and "lora not yet timed" in eta["text"]
    job["spec"]["cost_estimates"] = {"lora": {"first": 60.0, "next": 40.0}}
    eta = job_eta(job, now=100.0)
    # tfidf seed 1: 2 s a run, 1 s of it spent; lora: 60 s for its first run, 40 s for the next.
    assert eta["seconds"] == pytest.approx(101.0) and "cost estimates" in eta["text"] and "finished runs" in eta["text"]
    job["spec"]["time_budget"] = "2min"
    assert job_eta(job, now=100.0)["seconds"] == pytest.approx(20.0)  # 120 s budget, 100 s spent
    assert job_eta({**job, "status": "done"}) is None
    before_any = {"status": "running", "started": 0.0, "spec": {},
                  "cells": {"lora|0": {"rung": "lora", "state": "running", "started": 1.0}}}
    assert job_eta(before_any, now=5.0)["text"] == "time left: known once the first run of lora finishes"
    from adaptlab.decide.plan import RungCost

    assert estimates_for_job({"lora": RungCost("network", 0.0, 100.0), "probe": (2.0, 0.5)}) == {
        "lora": {"first": 100.0, "next": 100.0}, "probe": {"first": 2.5, "next": 0.5}}


def test_job_page_and_api_show_the_time_left(tmp_path, tiny_encoder_dir):
    import threading

    from fastapi.testclient import TestClient

    from adaptlab.ui import UISettings, create_app

    app = create_app(UISettings(home=tmp_path / "home", models_root=tmp_path / "models",
                                encoder=str(tiny_encoder_dir), n_boot=100, torch_threads=1))
    release = threading.Event()

    def slow_study(ctx):
        ctx.manager._update(ctx.job, cells={
            "tfidf|0": {"rung": "tfidf", "seed": 0, "state": "done", "seconds": 30.0, "f1": 0.9},
            "tfidf|1": {"rung": "tfidf", "seed": 1, "state": "pending"}})
        ctx.say("training tfidf seed 1")
        release.wait(30)

    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        app.state.jobs.runners["study"] = slow_study
        job = app.state.jobs.submit("study", {"rungs": ["tfidf"], "seeds": 2}, title="slow")
        try:
            for _ in range(200):
                snap = client.get(f"/api/jobs/{job.id}").json()
                if snap["status"] == "running" and snap["n_done"] == 1:
                    break
                threading.Event().wait(0.05)
            assert snap["eta"]["text"].startswith("about 30 s left") and snap["eta"]["seconds"] == pytest.approx(30.0)
            page = client.get(f"/jobs/{job.id}").text
            assert re.search(r'<p class="small" id="job-eta">about 30 s left', page)
        finally:
            release.set()
        app.state.jobs.wait(job.id, 30)
        assert client.get(f"/api/jobs/{job.id}").json()["eta"] is None
        assert "job.eta" in client.get("/static/app.js").text


def test_planner_button_shows_a_spinner_with_how_long_the_last_estimate_took(tmp_path, tiny_encoder_dir):
    from fastapi.testclient import TestClient

    from adaptlab.ui import UISettings, create_app

    app = create_app(UISettings(home=tmp_path / "home", models_root=tmp_path / "models",
                                encoder=str(tiny_encoder_dir), n_boot=100, torch_threads=1))
    data = pd.DataFrame({"text": topic_corpus(90).texts, "label": topic_corpus(90).labels}).to_csv(index=False)
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        r = client.post("/upload", files={"labeled": ("d.csv", data.encode(), "text/csv")}, follow_redirects=False)
        uid = r.headers["location"].split("?")[0].rstrip("/").split("/")[-1]
        client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"})
        page = client.get(f"/data/{uid}/configure").text
        busy = re.search(r'<p class="busy" id="plan-busy"[^>]*>', page)
        assert busy and "hidden" in busy.group(0) and 'data-seconds=""' in busy.group(0)
        assert "Calibrating on this machine… (from seconds to a few minutes" in page
        assert 'class="spinner"' in page and 'id="plan-busy-elapsed"' in page
        script = client.get("/static/app.js").text
        assert "plan-button" in script and "plan-busy" in script
        r = client.post(f"/data/{uid}/plan", data={"rungs": ["tfidf"], "compute_budget": "10 min"})
        assert r.status_code == 200 and 'id="plan-table"' in r.text
        assert re.search(r'id="plan-busy"[^>]*data-seconds="\d+"', r.text)
        assert "as the last estimate on this data took" in r.text


def test_top_level_names_load_on_first_use():
    assert adaptlab.Study is Study and adaptlab.load_pipeline is load_pipeline
    assert "load_dataset" in dir(adaptlab)
    with pytest.raises(AttributeError):
        adaptlab.no_such_name  # noqa: B018
