"""Calibration by default (#34 item 3) and abstention (item 4): shipped models carry a calibration fitted on
validation texts only; predict says so and can send low-confidence rows to review; the retrain gate refuses a
version whose calibration got much worse; the report shows coverage vs accuracy."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.data.dataset import TextDataset
from adaptlab.decide.policy import Policy
from adaptlab.errors import ConfigError
from adaptlab.evaluate.calibration import (
    METHODS, ProbabilityCalibration, confidence_ece, coverage_table, expected_calibration_error, fit_calibration,
)
from adaptlab.ship import ModelRegistry, Pipeline, load_pipeline, retrain, ship_model
from adaptlab.ship.evaluation import GateResult, calibration_gate
from adaptlab.ship.predict import predict_file
from synthetic import topic_corpus

runner = CliRunner()


def flat(s: str) -> str:
    return " ".join(s.split())


def _timid(n: int = 600, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities that rank well but are far too flat (an under-confident probe)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(0, 1, (n, k))
    z[np.arange(n), y] += 1.5
    P = np.exp(0.4 * z)
    return P / P.sum(axis=1, keepdims=True), y


# ------------------------------------------------------------------------------------------ the fit
@pytest.mark.parametrize("method", [*METHODS, "auto"])
def test_every_method_keeps_the_predicted_class_and_lowers_the_ece(method):
    P, y = _timid()
    cal = fit_calibration(P, y, method=method)
    Q = cal.apply(P)
    assert (Q.argmax(axis=1) == P.argmax(axis=1)).all() and np.allclose(Q.sum(axis=1), 1.0)
    assert expected_calibration_error(Q, y) < 0.5 * expected_calibration_error(P, y)
    if method == "auto":
        assert set(cal.selection) == set(METHODS) and cal.method == min(cal.selection, key=cal.selection.get)
    back = ProbabilityCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))  # JSON, no pickle
    assert np.allclose(back.apply(P), Q)


def test_too_few_texts_or_one_class_fit_nothing_and_a_bad_method_is_named():
    P, y = _timid(n=15)
    assert fit_calibration(P, y) is None
    assert fit_calibration(*_timid(n=60)[:1], np.zeros(60, dtype=int)) is None
    with pytest.raises(ConfigError, match="calibration.*one of auto"):
        fit_calibration(*_timid(), method="beta")
    with pytest.raises(ConfigError, match="calibration"):
        Pipeline(rung="tfidf", calibration="beta").fit(["a", "b"] * 10, ["x", "y"] * 10)


def test_coverage_table_and_confidence_ece_count_what_they_say():
    rows = coverage_table([0.95, 0.9, 0.7, 0.55], [True, True, False, True], thresholds=(0.0, 0.8, 0.99))
    assert [(r["answered"], r["to_review"]) for r in rows] == [(4, 0), (2, 2), (0, 4)]
    assert rows[1]["accuracy"] == 1.0 and rows[2]["accuracy"] is None
    assert confidence_ece([0.8] * 10, [True] * 8 + [False] * 2) == pytest.approx(0.0)


# ------------------------------------------------------------------------------------------ the shipped model
@pytest.fixture(scope="module")
def corpus():
    return topic_corpus(240, seed=3, noise=0.6)


def test_pipeline_calibrates_on_its_validation_holdout_and_saves_it_without_pickle(corpus, tmp_path):
    pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(corpus.texts, corpus.labels)
    assert pipe.calibrated_ and pipe.calibration_.fitted_on == "validation texts"
    assert pipe.calibration_.n == pipe.fit_info_["n_validation"]
    raw, cal = pipe.predict_proba(corpus.texts, calibrated=False), pipe.predict_proba(corpus.texts)
    assert not np.allclose(raw, cal) and (raw.argmax(1) == cal.argmax(1)).all()
    folder = pipe.save(tmp_path / "m")
    manifest = json.loads((folder / "adaptlab.json").read_text())
    assert manifest["calibration"]["method"] == pipe.calibration_.method
    loaded = load_pipeline(folder)
    assert loaded.calibrated_ and np.allclose(loaded.predict_proba(corpus.texts), cal)
    assert Pipeline(rung="tfidf", rung_params={"min_df": 1}, calibration="none").fit(
        corpus.texts, corpus.labels).calibration_ is None


def test_a_model_saved_before_calibration_loads_and_says_it_is_uncalibrated(corpus, tmp_path):
    folder = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(corpus.texts, corpus.labels).save(tmp_path / "m")
    path = folder / "adaptlab.json"
    manifest = json.loads(path.read_text())
    for key in ("calibration",):
        manifest.pop(key)
    manifest["params"].pop("calibration")
    manifest["fit"].pop("calibration")
    path.write_text(json.dumps(manifest))
    old = load_pipeline(folder)
    assert not old.calibrated_ and "before shipped models carried a calibration" in old.calibration_note_
    assert np.allclose(old.predict_proba(corpus.texts), old.predict_proba(corpus.texts, calibrated=False))
    rep = predict_file(old, _csv(tmp_path, corpus.texts[:5]), tmp_path / "o.csv")
    assert not rep.calibrated and "NOT calibrated" in rep.summary()


def test_calibration_is_fitted_on_validation_only_poisoned_sealed_labels_change_nothing(corpus, tmp_path):
    # The sealed evaluation texts carry every label rotated: if the calibration read them, it would change.
    sealed = topic_corpus(90, seed=4, noise=0.6)
    rotate = {"sport": "tech", "tech": "money", "money": "sport"}
    poisoned = TextDataset(sealed.texts, [rotate[v] for v in sealed.labels])
    regs = []
    for name, ev in (("clean", sealed), ("poisoned", poisoned)):
        pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(corpus.texts, corpus.labels)
        regs.append(ModelRegistry.create(tmp_path / name, pipe, train=corpus, eval_set=ev))
    cals = [json.loads((r.version_dir("v0001") / "adaptlab.json").read_text())["calibration"] for r in regs]
    assert cals[0] == cals[1] and cals[0] is not None
    # ... while what the card reports on the sealed texts does read them.
    evs = [r.current.evaluation for r in regs]
    assert evs[0]["ece"] != evs[1]["ece"]


def test_ship_model_card_shows_ece_before_after_reliability_and_coverage(corpus, tmp_path):
    reg = ship_model(corpus, tmp_path / "model", rung="tfidf", home=tmp_path / "home")
    card = (reg.version_dir("v0001") / "MODEL_CARD.md").read_text()
    section = card.split("## Calibration")[1].split("\n## ")[0]
    assert "calibrated:" in section and "validation holdout only" in section
    assert "expected calibration error on the 48 sealed texts" in section
    assert "Reliability diagram" in section and "| confidence | texts before |" in section
    assert "Coverage vs accuracy" in section and "| 0.90 |" in section
    assert reg.current.evaluation["ece"] is not None


# ------------------------------------------------------------------------------------------ predict --min-confidence
def _csv(tmp_path, texts, name="in.csv"):
    path = tmp_path / name
    pd.DataFrame({"id": [f"q{i}" for i in range(len(texts))], "text": texts}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("shipped")
    ship_model(corpus, root / "model", rung="tfidf", home=root / "home")
    return root / "model"


def test_predict_min_confidence_sends_low_rows_to_review_table_mode(shipped, tmp_path):
    texts = topic_corpus(40, seed=9, noise=0.9).texts
    inp = _csv(tmp_path, texts)
    r = runner.invoke(app, ["predict", str(shipped), str(inp), "-o", str(tmp_path / "out.csv"),
                            "--min-confidence", "0.9"])
    assert r.exit_code == 0, r.output
    out, review = pd.read_csv(tmp_path / "out.csv"), pd.read_csv(tmp_path / "out.review.csv")
    assert len(out) + len(review) == 40 and len(review) > 0
    assert (out["confidence"] >= 0.9).all() and (review["confidence"] < 0.9).all()
    assert list(review.columns[:4]) == ["id", "text", "suggested_label", "confidence"]
    assert set(review["text"]) <= set(texts)
    said = flat(r.output)
    assert "Probabilities are calibrated" in said and f"{len(review)} row(s) with confidence below 0.9" in said
    assert str(tmp_path / "out.review.csv") in "".join(r.output.split())  # the path, however the console wraps it


def test_predict_min_confidence_json_mode_names_the_review_file(shipped, tmp_path):
    inp = _csv(tmp_path, topic_corpus(30, seed=10, noise=0.9).texts)
    review = tmp_path / "people" / "check.csv"
    r = runner.invoke(app, ["predict", str(shipped), str(inp), "-o", str(tmp_path / "o.csv"), "--min-confidence",
                            "0.999", "--review", str(review), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["calibrated"] is True and rep["calibration"].startswith("calibrated:")
    assert rep["min_confidence"] == 0.999 and rep["review_path"] == str(review)
    assert rep["n_predicted"] + rep["n_review"] == 30 and rep["n_review"] == len(pd.read_csv(review))
    # Without the option every row is labeled and no review file appears.
    r = runner.invoke(app, ["predict", str(shipped), str(inp), "-o", str(tmp_path / "all.csv"), "--json"])
    rep = json.loads(r.stdout)
    assert rep["n_predicted"] == 30 and rep["n_review"] == 0 and rep["min_confidence"] is None
    assert not (tmp_path / "all.review.csv").exists()


def test_predict_min_confidence_bad_values_are_named(shipped, tmp_path):
    inp = _csv(tmp_path, ["a text"])
    r = runner.invoke(app, ["predict", str(shipped), str(inp), "-o", str(tmp_path / "o.csv"),
                            "--min-confidence", "1.5"])
    assert r.exit_code != 0 and "min_confidence" in flat(r.output) and "[0, 1]" in flat(r.output)
    r = runner.invoke(app, ["predict", str(shipped), str(inp), "-o", str(tmp_path / "o.csv"),
                            "--min-confidence", "0.5", "--review", str(tmp_path / "r.txt")])
    assert r.exit_code != 0 and "review_path" in flat(r.output)


# ------------------------------------------------------------------------------------------ the retrain gate
def test_calibration_gate_refuses_only_a_large_rise_on_enough_texts():
    g = GateResult(True, 0.9, 0.91, 0.01, -0.01, 0.03, 0.02, 400, "no-regression", "Promoted.")
    assert not calibration_gate(g, 0.03, 0.15, max_increase=0.05, min_texts=100).promoted
    ok = calibration_gate(g, 0.03, 0.07, max_increase=0.05, min_texts=100)
    assert ok.promoted and ok.new_ece == 0.07 and "within the 0.05" in ok.explanation
    few = calibration_gate(g, 0.03, 0.15, max_increase=0.05, min_texts=1000)
    assert few.promoted and "fewer than the 1000" in few.explanation
    with pytest.raises(ConfigError, match="max_ece_increase"):
        Policy(max_ece_increase=2.0)


def test_retrain_refuses_a_version_whose_calibration_got_much_worse(tmp_path, monkeypatch):
    reg = ship_model(topic_corpus(240, seed=3), tmp_path / "model", rung="tfidf", home=tmp_path / "home")
    # The retrained model comes out with its confidences flattened to ~1/3: right as often, trusted far less.
    flatten = ProbabilityCalibration(method="temperature", params={"temperature": 20.0}, n=48)
    monkeypatch.setattr(Pipeline, "_calibrate", lambda self, val, names: (flatten, "calibrated: flattened"))
    new = topic_corpus(60, seed=21)
    # max_drop 0.5: the F1 check lets it through, so the calibration check is what keeps it out.
    out = retrain(reg.root, TextDataset(new.texts, new.labels), max_drop=0.5, policy=Policy(ece_min_texts=10))
    assert out.status == "rejected" and out.gate.verdict == "calibration-worse", out.message
    assert out.gate.new_ece > out.gate.old_ece + 0.05 and "max_ece_increase" in out.message
    assert ModelRegistry(reg.root).current.id == "v0001"
