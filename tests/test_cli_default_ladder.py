"""Issue #30: a study with a time budget and no rungs named tries the ladder; `--json` reports progress on stderr."""
import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.config import StudyConfig
from adaptlab.rungs import RUNGS
from adaptlab.rungs.ladder import LADDER, default_rungs
from adaptlab.studyfile import parse_study_file, study_config
from synthetic import topic_corpus


def test_default_rungs_without_a_time_budget_are_the_untimed_two():
    assert default_rungs(timed=False, unlabeled=False) == ["tfidf", "probe"]
    assert default_rungs(timed=False, unlabeled=True) == ["tfidf", "probe"]


def test_default_rungs_with_a_time_budget_are_the_ladder(monkeypatch):
    import adaptlab.rungs.ladder as ladder

    timed = default_rungs(timed=True, unlabeled=False)
    assert timed == [r for r in LADDER if r in timed] and set(timed) <= set(RUNGS)  # ladder order, registered rungs
    assert "refit" not in timed and {"tfidf", "probe", "lora", "unfreeze", "finetune", "lpft"} <= set(timed)
    assert default_rungs(timed=True, unlabeled=True)[:3] == ["tfidf", "probe", "refit"]
    monkeypatch.setattr(ladder, "_importable", lambda name: name != "setfit")  # the optional extra not installed
    assert "setfit" not in default_rungs(timed=True, unlabeled=True)
    monkeypatch.setattr(ladder, "_importable", lambda name: True)
    assert "setfit" in default_rungs(timed=True, unlabeled=False)


def test_study_config_default_rungs_keep_the_untimed_identity():
    named = StudyConfig(rungs=["tfidf", "probe"])
    default = StudyConfig()
    assert default.rungs == ["tfidf", "probe"] and default.rungs_defaulted and not named.rungs_defaulted
    assert default.to_dict() == named.to_dict() and type(default.to_dict()["rungs"]) is list
    assert default.identity("fp32") == named.identity("fp32")
    # A copy with a time budget (what Study(cfg, time_budget=...) makes) still knows its rungs were the default.
    assert replace(default, time_budget="40min").rungs_defaulted
    assert not replace(named, time_budget="40min").rungs_defaulted
    assert StudyConfig(rungs=None, seeds=3).rungs == ["tfidf", "probe"]


def test_a_study_file_without_rungs_and_with_a_time_budget_gets_the_ladder():
    timed = study_config(parse_study_file('time = "40min"\nseeds = 3\n[rung.lora]\nr = 4\n'))
    assert timed.rungs == default_rungs(timed=True) and timed.rung_params == {"lora": {"r": 4}}
    assert study_config(parse_study_file('seeds = 3\n')).rungs == ["tfidf", "probe"]
    refit = study_config(parse_study_file('time = "40min"\nunlabeled = "u.csv"\n'))
    assert "refit" in refit.rungs
    named = study_config(parse_study_file('rungs = ["tfidf", "lora"]\ntime = "40min"\n'))
    assert named.rungs == ["tfidf", "lora"]  # a file that names its rungs (as `study config` writes) keeps them


@pytest.fixture
def csv_file(tmp_path):
    import pandas as pd

    ds = topic_corpus(120, seed=3)
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    return path


def test_study_run_with_time_and_no_rungs_runs_the_ladder_and_json_progress_goes_to_stderr(
        tiny_encoder_dir, csv_file, tmp_path, monkeypatch):
    import adaptlab.rungs.ladder as ladder

    # Without the optional setfit extra (its runs are the slow ones here): the ladder leaves it out.
    monkeypatch.setattr(ladder, "_importable", lambda name: name != "setfit")
    home = tmp_path / "h"
    args = ["study", "run", "--data", str(csv_file), "--seeds", "3", "--budget", "4steps", "--time", "2min",
            "--encoder", str(tiny_encoder_dir), "--home", str(home), "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)  # stdout: exactly one JSON document
    rungs = payload["config"]["rungs"]
    assert rungs == ["tfidf", "probe", "lora", "unfreeze", "finetune", "lpft"]
    # stderr: the costing (before and after), a header, one plain line per cell naming its rung and seed, and a
    # closing line; no bar redraws.
    lines = r.stderr.splitlines()
    assert lines[0].startswith("time budget: costing the rungs") and lines[1].startswith("time budget: costed from")
    lines = lines[2:]
    assert "\r" not in r.stderr and lines[0].startswith(f"study {payload['study_id'][:12]}: rungs tfidf, probe")
    cells = [ln for ln in lines if ln.startswith("cell ")]
    n_cells = payload["n_trained"] + payload["n_from_store"]
    assert len(cells) == n_cells > 0
    for c in payload["allocation"]["cells"]:
        assert any(f": {c['rung']} seed {c['seed']}" in ln for ln in cells), (c, cells)
    assert all(ln.endswith("of 2.0 min left") and "estimate ~" in ln for ln in cells)
    assert lines[-1].startswith(f"study {payload['study_id'][:12]}: done in ")
    # The stored study, written back as a study file, names the rungs it ran: rerun without --time, it keeps them.
    r = CliRunner().invoke(app, ["study", "config", payload["study_id"][:12], "--home", str(home), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["config"]["rungs"] == rungs
    assert parse_study_file(json.loads(r.stdout)["text"]).values["rungs"] == rungs


def test_study_run_without_time_keeps_tfidf_and_probe_and_prints_one_line_per_cell(csv_file, tmp_path,
                                                                                     tiny_encoder_dir):
    args = ["study", "run", "--data", str(csv_file), "--seeds", "2", "--encoder", str(tiny_encoder_dir),
            "--home", str(tmp_path / "h"), "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["config"]["rungs"] == ["tfidf", "probe"]
    cells = [ln for ln in r.stderr.splitlines() if ln.startswith("cell ")]
    assert sorted(ln.split(": ", 1)[1].split(" —")[0] for ln in cells) == [
        "probe seed 0", "probe seed 1", "tfidf seed 0", "tfidf seed 1"]
    assert not any("left" in ln for ln in cells)  # no time budget, nothing is left of one
    # Again: every cell from the run store, still one line each.
    r = CliRunner().invoke(app, args)
    cells = [ln for ln in r.stderr.splitlines() if ln.startswith("cell ")]
    assert len(cells) == 4 and all("from the run store" in ln for ln in cells)


def test_web_form_with_a_time_budget_and_no_rung_ticked_runs_the_default_ladder(tmp_path, tiny_encoder_dir):
    import re

    import pandas as pd
    from fastapi.testclient import TestClient

    from adaptlab.ui import UISettings, create_app

    settings = UISettings(home=tmp_path / "home", models_root=tmp_path / "models", encoder=str(tiny_encoder_dir),
                          n_boot=200, torch_threads=1)
    ds = topic_corpus(90)
    data = pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(index=False).encode("utf-8")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8765") as client:
        def configured(unlabeled=None):
            files = {"labeled": ("data.csv", data, "text/csv")}
            if unlabeled is not None:
                files["unlabeled"] = ("unl.csv", unlabeled, "text/csv")
            r = client.post("/upload", files=files, follow_redirects=False)
            uid = r.headers["location"].rstrip("/").split("/")[-1]
            client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"})
            return uid

        def ticked(page):
            return re.findall(r'id="rung-([a-z]+)"\s+checked', page)

        uid = configured()
        page = client.get(f"/data/{uid}/configure").text
        ladder = ", ".join(default_rungs(timed=True))
        assert 'id="default-rungs"' in page and f"<b>tfidf, probe</b>" in page and f"<b>{ladder}</b>" in page
        # Nothing ticked and a time budget: the ladder (a bad training budget stops it before any job is queued,
        # and the form comes back with the rungs it would have run).
        r = client.post(f"/data/{uid}/start", data={"seeds": "3", "time_budget": "20min", "train_budget": "soon"})
        assert r.status_code == 400 and ticked(r.text) == default_rungs(timed=True)
        r = client.post(f"/data/{uid}/start", data={"seeds": "3", "train_budget": "soon"})
        assert r.status_code == 400 and ticked(r.text) == ["tfidf", "probe"]
        # With an unlabeled file the ladder has refit.
        unl = pd.DataFrame({"text": ds.texts[:20]}).to_csv(index=False).encode("utf-8")
        uid = configured(unl)
        assert f"<b>{', '.join(default_rungs(timed=True, unlabeled=True))}</b>" in client.get(
            f"/data/{uid}/configure").text
        r = client.post(f"/data/{uid}/start", data={"seeds": "3", "time_budget": "20min", "train_budget": "soon"})
        assert r.status_code == 400 and "refit" in ticked(r.text)
        assert client.get("/api/jobs").json() == []
