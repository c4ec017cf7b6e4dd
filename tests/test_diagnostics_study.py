"""Diagnostics wired to a study (tiny model): stored with the study, rendered in the report, and the
`adaptlab diagnose` / `adaptlab study run --rungs ...,refit` command lines."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.config import StudyConfig
from adaptlab.diagnostics import DEFAULT_REFERENCE, run_study_with_diagnostics
from adaptlab.encoders import Encoder
from adaptlab.evaluate import Study, StudyResult
from adaptlab.evaluate.report import render_study
from adaptlab.store import RunStore
from synthetic import topic_corpus
from test_refit import FAST

runner = CliRunner()


def test_a_study_with_refit_is_diagnosed_stored_and_reported(mlm_dir, tmp_path):
    data, unl = topic_corpus(90, seed=1), topic_corpus(100, seed=2)
    cfg = StudyConfig(rungs=["probe", "refit"], seeds=2, n_boot=200,
                      rung_params={"refit": {"budget": "6steps", **FAST}})
    study = Study(cfg, home=tmp_path, encoder=Encoder.from_pretrained(mlm_dir, device="cpu"))
    res = run_study_with_diagnostics(study, data, unlabeled=unl, n=40, n_permutations=50)
    d = res.diagnostics
    gap = d["probe_gap"]
    assert gap["gap"] == pytest.approx(res.row("refit")["mean"] - res.row("probe")["mean"])
    assert gap["n_refits"] == 1 and not gap["ship"] and "refit_per_seed=True" in gap["sentence"]
    (mv,) = d["refit_movement"]
    assert mv["n_texts"] == min(40, res.n_test) and 0.0 <= mv["mmd"]["p_value"] <= 1.0
    assert mv["refit_key"] == res.per_seed[1]["diagnostics"]["refit_key"]
    assert d["domain_shift"]["reference"] == DEFAULT_REFERENCE and d["domain_shift"]["in_domain"] == "unlabeled texts"
    assert d["refit_cost"]["steps"] == 6 and d["recommendations"][0] == gap["sentence"]
    stored = RunStore(tmp_path / "runs.sqlite").get_study(res.study_id)["summary"]
    assert stored["diagnostics"] == json.loads(json.dumps(d))
    again = StudyResult.from_dict(stored)
    console = Console(record=True, width=200)
    console.print(render_study(again))
    text = console.export_text()
    assert "diagnostics" in text and "probe gap: refit - probe" in text and "domain shift vs BBC" in text
    assert "OTS vs refit embeddings" in text and "p = " in text


def test_plain_study_has_no_diagnostics_and_evaluate_never_imports_diagnostics(tmp_path):
    res = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home=tmp_path).run(topic_corpus(60))
    assert res.diagnostics == {}
    code = ("import sys, adaptlab.evaluate, adaptlab.evaluate.report, adaptlab.rungs; "
            "sys.exit(1 if any(m.startswith('adaptlab.diagnostics') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0  # DESIGN: evaluate is left of diagnostics


def _csv(path, texts, labels=None):
    cols = {"text": texts} if labels is None else {"text": texts, "label": labels}
    pd.DataFrame(cols).to_csv(path, index=False)
    return path


def test_cli_diagnose_mmd_tells_two_domains_apart(mlm_dir, tmp_path):
    a = _csv(tmp_path / "sport.csv", topic_corpus(80, seed=1, classes=("sport",)).texts)
    b = _csv(tmp_path / "money.csv", topic_corpus(80, seed=2, classes=("money",)).texts)
    r = runner.invoke(app, ["diagnose", "mmd", str(a), str(b), "--encoder", str(mlm_dir), "--n", "60",
                            "--permutations", "100", "--home", str(tmp_path / "h"), "--json"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["n_x"] == 60 and payload["n_permutations"] == 100 and payload["p_value"] < 0.05
    r = runner.invoke(app, ["diagnose", "mmd", str(a), str(a), "--encoder", str(mlm_dir), "--n", "60",
                            "--home", str(tmp_path / "h")])
    assert r.exit_code == 0 and "MMD²" in r.output and "p = " in r.output
    r = runner.invoke(app, ["diagnose", "mmd", str(a), str(tmp_path / "missing.csv"), "--encoder", str(mlm_dir)])
    assert r.exit_code != 0 and "error" in r.output.lower()


def test_cli_study_run_with_refit_flags_prints_the_diagnostics(mlm_dir, tmp_path):
    ds = topic_corpus(90, seed=1)
    data = _csv(tmp_path / "train.csv", ds.texts, ds.labels)
    unl = _csv(tmp_path / "unlabeled.csv", topic_corpus(60, seed=2).texts)
    home = tmp_path / "home"
    r = runner.invoke(app, ["study", "run", "--data", str(data), "--unlabeled", str(unl), "--rungs", "tfidf,probe,refit",
                            "--seeds", "2", "--encoder", str(mlm_dir), "--refit-budget", "4steps", "--home", str(home)])
    assert r.exit_code == 0, r.output
    assert "refit" in r.output and "probe gap" in r.output and "domain shift" in r.output
    summary = RunStore(home / "runs.sqlite").get_study("latest")["summary"]
    assert summary["config"]["rung_params"]["refit"] == {"budget": "4steps"}
    assert summary["diagnostics"]["refit_cost"]["steps"] == 4
    r = runner.invoke(app, ["study", "run", "--data", str(data), "--rungs", "tfidf", "--refit-budget", "4steps",
                            "--home", str(home)])
    assert r.exit_code == 2 and "add it" in r.output
    r = runner.invoke(app, ["study", "run", "--data", str(data), "--rungs", "refit", "--refit-objective", "bert",
                            "--home", str(home)])
    assert r.exit_code == 2 and "refit.objective='bert'" in r.output
