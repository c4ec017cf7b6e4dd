"""Experiment tracking (issue #19): a study and its (rung, seed) cells in MLflow, read back with MLflow's client."""
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.config import StudyConfig
from adaptlab.evaluate import Study
from adaptlab.evaluate.tracking import MlflowTracker, make_tracker
from adaptlab.report.tracking import track_decision
from adaptlab.rungs.tfidf import TfidfRung
from launch import free_port
from synthetic import topic_corpus, topic_csv

mlflow = pytest.importorskip("mlflow")  # the [track] extra; part of [test], so CI always has it
from mlflow.tracking import MlflowClient  # noqa: E402

runner = CliRunner()


def file_uri(tmp_path: Path) -> str:
    return (tmp_path / "mlruns").as_uri()


def runs_of(client: MlflowClient, experiment: str = "adaptlab") -> tuple[object, list]:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("adaptlab.kind") == "study"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], sorted(children, key=lambda r: int(r.data.params["seed"]))


def test_study_is_a_parent_run_with_one_child_run_per_cell(tmp_path):
    uri = file_uri(tmp_path)
    study = Study(StudyConfig(rungs=["tfidf"], seeds=3, n_boot=200), home=tmp_path / "home",
                  track=MlflowTracker(uri=uri))
    res = study.run(topic_corpus(150, noise=0.6))
    decision = track_decision(study, res.study_id)

    client = MlflowClient(uri)
    parent, children = runs_of(client)
    assert parent.info.run_id == study.tracker.run_id and parent.info.status == "FINISHED"
    assert parent.data.tags["adaptlab.study_id"] == res.study_id
    assert parent.data.params["seeds"] == "3" and json.loads(parent.data.params["rungs"]) == ["tfidf"]
    row = res.row("tfidf")
    assert parent.data.metrics["tfidf.mean"] == pytest.approx(row["mean"])
    assert parent.data.metrics["tfidf.ci_low"] == pytest.approx(row["ci_low"])
    assert parent.data.metrics["n_trained"] == 3
    # The decision as tags, the report and the records as artifacts.
    assert parent.data.tags["adaptlab.decision.status"] == decision.status
    assert parent.data.tags["adaptlab.decision.chosen"] == decision.chosen
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"report.html", "study.json", "decision.json"}
    html = Path(client.download_artifacts(parent.info.run_id, "report.html", str(tmp_path))).read_text()
    assert "<html" in html and res.study_id[:12] in html
    decided = json.loads(Path(client.download_artifacts(parent.info.run_id, "decision.json", str(tmp_path))).read_text())
    assert decided["headline"] == decision.headline

    # One child per seed: its config, scores, cost and the stored record.
    assert [c.data.params["seed"] for c in children] == ["0", "1", "2"]
    for child, per_seed in zip(children, res.per_seed):
        assert child.info.status == "FINISHED" and child.data.tags["adaptlab.source"] == "trained"
        assert child.data.tags["adaptlab.result_key"] == per_seed["result_key"]
        assert child.data.metrics["test.f1"] == pytest.approx(per_seed["test"]["f1"])
        assert child.data.metrics["test.accuracy"] == pytest.approx(per_seed["test"]["accuracy"])
        assert child.data.metrics["cost.total_seconds"] == pytest.approx(per_seed["cost"]["total_seconds"])
        assert json.loads(child.data.params["config.C_grid"]) == TfidfRung().config.C_grid
        assert int(child.data.params["split.n_train"]) > 0
        stored = json.loads(Path(client.download_artifacts(child.info.run_id, "result.json", str(tmp_path / "c"))).read_text())
        assert stored["metrics"]["test"]["f1"] == per_seed["test"]["f1"]


def test_network_rung_logs_its_loss_curve_as_stepped_metrics(tmp_path, tiny_encoder, one_torch_thread):
    uri = file_uri(tmp_path)
    fast = {"head_lr": 1e-2, "backbone_lr": 3e-3, "batch_size": 8, "max_epochs": 4, "patience": 10}
    cfg = StudyConfig(rungs=["finetune"], seeds=1, n_boot=200, budget="16steps", rung_params={"finetune": fast})
    study = Study(cfg, home=tmp_path / "home", encoder=tiny_encoder, track=MlflowTracker(uri=uri))
    res = study.run(topic_corpus(90, seed=1))
    client = MlflowClient(uri)
    _parent, (child,) = runs_of(client)
    history = res.per_seed[0]["diagnostics"]["history"]
    assert len(history) >= 2
    val_loss = sorted(client.get_metric_history(child.info.run_id, "val_loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in val_loss] == [(h["step"], pytest.approx(h["val_loss"])) for h in history]
    train_loss = client.get_metric_history(child.info.run_id, "train_loss")
    assert len(train_loss) == sum(h["train_loss"] is not None for h in history) >= 1
    # Scalar diagnostics and the rung's own settings.
    assert child.data.metrics["diagnostics.trainable_parameters"] > 0
    assert child.data.params["config.batch_size"] == "8" and child.data.params["budget"]


def test_rerun_logs_stored_cells_and_a_failed_study_ends_failed(tmp_path, monkeypatch):
    uri = file_uri(tmp_path)
    data = topic_corpus(150, noise=0.6)
    cfg = StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200)
    Study(cfg, home=tmp_path / "home").run(data)  # untracked first run: nothing logged
    assert not (tmp_path / "mlruns").exists()
    study = Study(cfg, home=tmp_path / "home", track=MlflowTracker(uri=uri, experiment="again"))
    study.run(data)
    client = MlflowClient(uri)
    _parent, children = runs_of(client, "again")
    assert [c.data.tags["adaptlab.source"] for c in children] == ["store", "store"]

    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(TfidfRung, "fit", broken)
    failing = Study(StudyConfig(rungs=["tfidf"], seeds=3, n_boot=200), home=tmp_path / "home2",
                    track=MlflowTracker(uri=uri, experiment="failing"))
    with pytest.raises(Exception):
        failing.run(data)
    run = client.get_run(failing.tracker.run_id)
    assert run.info.status == "FAILED" and "boom" in run.data.tags["adaptlab.error"]


def test_a_tracker_object_gets_every_cell_and_bad_values_are_refused(tmp_path):
    class Recorder:
        def __init__(self):
            self.calls = []

        def start_study(self, study):
            self.calls.append(("start", study["study_id"]))

        def log_cell(self, event, stored, rung_config):
            self.calls.append(("cell", event.rung, event.seed, stored["metrics"]["test"]["f1"], rung_config["C_grid"]))

        def end_study(self, result, error=None):
            self.calls.append(("end", result.study_id))

        def log_decision(self, decision, artifacts):
            self.calls.append(("decision", decision["status"], sorted(p.name for p in artifacts)))

    rec = Recorder()
    study = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home=tmp_path, track=rec)
    res = study.run(topic_corpus(120, seed=2))
    decision = track_decision(study, res.study_id)
    assert rec.calls == [("start", res.study_id),
                         ("cell", "tfidf", 0, res.per_seed[0]["test"]["f1"], TfidfRung().config.C_grid),
                         ("cell", "tfidf", 1, res.per_seed[1]["test"]["f1"], TfidfRung().config.C_grid),
                         ("end", res.study_id), ("decision", decision.status, ["report.html", "study.json"])]
    from adaptlab.errors import ConfigError

    with pytest.raises(ConfigError, match="track='wandb' is not valid"):
        make_tracker("wandb")
    with pytest.raises(ConfigError, match="track='int' is not valid"):
        make_tracker(3)


@pytest.fixture
def csv_file(tmp_path):
    return topic_csv(tmp_path / "train.csv", 150, noise=0.6)


def test_cli_track_mlflow_table_json_default_store_and_env(tmp_path, csv_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADAPTLAB_TRACKING_URI", raising=False)
    base = ["study", "run", "--data", str(csv_file), "--rungs", "tfidf", "--seeds", "2", "--home", str(tmp_path / "h")]
    # Nothing is logged unless asked, even with the variable set.
    monkeypatch.setenv("ADAPTLAB_TRACKING_URI", (tmp_path / "env-store").as_uri())
    assert runner.invoke(app, base).exit_code == 0
    assert not (tmp_path / "env-store").exists() and not (tmp_path / "mlruns").exists()
    # --track mlflow logs to $ADAPTLAB_TRACKING_URI (table mode says where).
    r = runner.invoke(app, base + ["--track", "mlflow"])
    assert r.exit_code == 0, r.output
    assert "tracked: mlflow run" in r.output
    parent, children = runs_of(MlflowClient((tmp_path / "env-store").as_uri()))
    assert len(children) == 2 and parent.data.tags["adaptlab.decision.status"]
    # Without the variable: the default store, the MLflow file store ./mlruns; JSON names the run.
    monkeypatch.delenv("ADAPTLAB_TRACKING_URI")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # adaptlab opts in by itself
    r = runner.invoke(app, base + ["--track", "mlflow", "--json"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["tracking"]["uri"] == (tmp_path / "mlruns").as_uri()
    parent_id = payload["tracking"]["run_id"]
    # The file store's layout: mlruns/<experiment id>/meta.yaml, one folder per run, artifacts inside it.
    assert not list((tmp_path / "mlruns").glob("*.db"))
    [run_dir] = (tmp_path / "mlruns").glob(f"*/{parent_id}")
    assert (run_dir.parent / "meta.yaml").is_file() and (run_dir / "meta.yaml").is_file()
    assert (run_dir / "artifacts" / "report.html").is_file()
    assert len([p for p in run_dir.parent.glob("*/meta.yaml") if p.parent != run_dir]) == 2  # the two cells
    # What `mlflow ui --backend-store-uri ./mlruns` opens: the relative path, read by MLflow's own client.
    parent = MlflowClient("./mlruns").get_run(parent_id)
    assert parent.data.tags["adaptlab.decision.status"] == payload["decision"]["status"]


@pytest.mark.parametrize("args,message", [
    (["--track", "wandb"], "track='wandb' is not valid"),
    (["--tracking-uri", "http://127.0.0.1:9"], "nothing is logged without --track mlflow"),
])
def test_cli_tracking_mistakes_exit_with_one_message(tmp_path, csv_file, args, message):
    r = runner.invoke(app, ["study", "run", "--data", str(csv_file), "--rungs", "tfidf", "--seeds", "2",
                            "--home", str(tmp_path / "h")] + args)
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output


def test_tracking_server_over_http(tmp_path):
    """One real `mlflow server` (127.0.0.1, free port, file backend, proxied artifacts): the HTTP path."""
    port = free_port()
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", (tmp_path / "server-runs").as_uri(),
           "--artifacts-destination", (tmp_path / "server-artifacts").as_uri(), "--workers", "1"]
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("mlflow server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        study = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home=tmp_path / "home",
                      track=MlflowTracker(uri=url))
        res = study.run(topic_corpus(120, seed=3))
        track_decision(study, res.study_id)
        client = MlflowClient(url)
        parent, children = runs_of(client)
        assert parent.data.metrics["tfidf.mean"] == pytest.approx(res.row("tfidf")["mean"])
        assert [c.data.metrics["test.f1"] for c in children] == pytest.approx([p["test"]["f1"] for p in res.per_seed])
        html = Path(client.download_artifacts(parent.info.run_id, "report.html", str(tmp_path))).read_text()
        assert res.study_id[:12] in html
        # The artifacts went through the server into its own destination.
        assert list((tmp_path / "server-artifacts").rglob("report.html"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
