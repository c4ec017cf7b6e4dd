"""The `static` rung (issue #32): the encoder distilled into static token vectors (model2vec) + the logistic head.

Added through the rung catalogue alone (its module and its record): it takes part in studies, ships,
predicts, retrains and reloads without pickle. The tiny random BERT of the other tests is distilled here (365 tokens:
a second), never a downloaded model.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.errors import ConfigError
from adaptlab.rungs import RungContext, get_rung
from adaptlab.rungs import static as static_mod
from adaptlab.rungs.ladder import default_rungs, facts, ladder_key
from synthetic import topic_corpus

runner = CliRunner()


def invoke(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


@pytest.fixture(autouse=True)
def _fresh_memo(monkeypatch):
    monkeypatch.setattr(static_mod, "_MEMO", {})


def test_static_is_a_cheap_rung_below_probe_that_no_default_study_runs():
    f = facts("static")
    assert f.kind == "cheap" and ladder_key("tfidf") < ladder_key("static") < ladder_key("probe")
    assert "static" not in default_rungs(timed=False) and "static" not in default_rungs(timed=True, unlabeled=True)


@pytest.mark.parametrize("params, words", [({"pca_dims": 1}, "static.pca_dims=1"),
                                           ({"sif_coefficient": 2}, "static.sif_coefficient=2"),
                                           ({"C_grid": []}, r"static.C_grid=\[\]"),
                                           ({"pcadims": 8}, r"unknown parameter\(s\) \['pcadims'\] for rung static")])
def test_bad_settings_get_a_clear_error(params, words):
    with pytest.raises(ConfigError, match=words):
        get_rung("static", params)


def test_without_model2vec_the_error_names_the_extra(monkeypatch, tiny_encoder):
    monkeypatch.setitem(sys.modules, "model2vec", None)  # import model2vec -> ImportError
    ds = topic_corpus(40, seed=0)
    with pytest.raises(ConfigError, match=r"pip install 'adaptlab\[static\]'"):
        get_rung("static").fit(ds, ds, seed=0, context=RungContext(ds.classes, encoder=tiny_encoder))


def test_fits_predicts_and_distils_once_per_home(tiny_encoder, tmp_path):
    ds = topic_corpus(150, seed=2)
    tr, va = ds.subset(range(0, 100)), ds.subset(range(100, 150))
    before = tiny_encoder.fingerprint
    ctx = RungContext(ds.classes, encoder=tiny_encoder, home=tmp_path)
    first = get_rung("static", {"pca_dims": 16}).fit(tr, va, seed=0, context=ctx)
    assert first.diagnostics_["static"]["distilled_now"] and first.diagnostics_["static"]["dim"] == 16
    proba = first.predict_proba(va.texts)
    assert proba.shape == (50, len(ds.classes)) and np.allclose(proba.sum(1), 1)
    assert first.embed(["a text"]).shape == (1, 16) and first.cost_.encode_seconds > 0
    assert tiny_encoder.fingerprint == before  # the distillation works on a copy of the encoder
    second = get_rung("static", {"pca_dims": 16}).fit(tr, va, seed=1, context=ctx)  # this process's memo
    static_mod._MEMO.clear()
    third = get_rung("static", {"pca_dims": 16}).fit(tr, va, seed=0, context=ctx)  # read from <home>/static
    assert not second.diagnostics_["static"]["distilled_now"] and not third.diagnostics_["static"]["distilled_now"]
    assert len(list((tmp_path / "static").iterdir())) == 1
    assert np.array_equal(third.predict_proba(va.texts), proba)


def test_a_study_with_static_runs_ships_and_predicts_on_the_cli(tmp_path, tiny_encoder_dir):
    ds = topic_corpus(120, seed=5, noise=0.2)
    path, home, model = tmp_path / "clean.csv", tmp_path / "home", tmp_path / "model"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    r = invoke("study", "run", "--data", path, "--rungs", "tfidf,static", "--seeds", 3, "--encoder", tiny_encoder_dir,
               "--home", home, "--json")
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert {row["rung"] for row in payload["rows"]} == {"tfidf", "static"}
    r = invoke("study", "show", "--home", home, terminal_width=200)
    assert r.exit_code == 0 and "static" in r.output
    r = invoke("report", "--home", home, "-o", tmp_path / "report.html")
    assert r.exit_code == 0, r.output
    assert "static token embeddings distilled from the encoder" in (tmp_path / "report.html").read_text()
    r = invoke("ship", path, "--study", payload["study_id"], "--rung", "static", "-o", model, "--encoder",
               tiny_encoder_dir, "--home", home, "--force")
    assert r.exit_code == 0, r.output
    assert "v0001 (static)" in " ".join(r.output.split())
    assert "static token vectors" in (model / "versions" / "v0001" / "MODEL_CARD.md").read_text()
    assert not list(model.rglob("*.pkl")) and list((model / "blobs" / "models").iterdir())
    pd.DataFrame({"id": ["a", "b"], "text": ds.texts[:2]}).to_csv(tmp_path / "in.csv", index=False)
    r = invoke("predict", model, tmp_path / "in.csv", "-o", tmp_path / "out.csv", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_predicted"] == 2
    assert pd.read_csv(tmp_path / "out.csv")["label"].isin(ds.classes).all()
    r = invoke("predict", model, tmp_path / "in.csv", "-o", tmp_path / "out2.csv")
    assert r.exit_code == 0, r.output
    assert pd.read_csv(tmp_path / "out2.csv")["label"].tolist() == pd.read_csv(tmp_path / "out.csv")["label"].tolist()
    more = topic_corpus(60, seed=9, noise=0.2)
    pd.DataFrame({"text": more.texts, "label": more.labels}).to_csv(tmp_path / "more.csv", index=False)
    r = invoke("retrain", model, tmp_path / "more.csv", "--json")  # the stored model reloads, a new static fit is gated
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["message"]
