"""Model registry, the coordinator's gated retrain, rollback, and the ship/predict/retrain/models CLI."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.data.dataset import TextDataset
from adaptlab.errors import ConfigError
from adaptlab.ship import ModelRegistry, Pipeline, gate, load_model, merge_labels, retrain
from synthetic import topic_corpus

runner = CliRunner()
TFIDF = {"min_df": 1}
ROTATE = {"sport": "tech", "tech": "money", "money": "sport"}


def flat(s: str) -> str:
    return " ".join(s.split())


def _pipe():
    return Pipeline(rung="tfidf", rung_params=dict(TFIDF))


@pytest.fixture
def registry(tmp_path):
    """v0001 trained on 9 noisy texts (weak), judged on 150 sealed texts."""
    small = topic_corpus(9, seed=1, noise=0.5)
    sealed = topic_corpus(150, seed=2)
    pipe = _pipe().fit(small.texts, small.labels)
    return ModelRegistry.create(tmp_path / "model", pipe, train=small, eval_set=sealed,
                                extra={"name": "triage", "transfer_note": "Ship tfidf: nothing beats it here."})


def _frame(ds: TextDataset, labels=None) -> pd.DataFrame:
    return pd.DataFrame({"text": ds.texts, "label": labels if labels is not None else ds.labels})


def test_create_writes_the_registry_layout_and_first_version(registry):
    root = registry.root
    assert (root / "registry.json").is_file() and (root / "eval.parquet").is_file()
    v = registry.current
    assert v.id == "v0001" and v.status == "promoted" and v.n_train == 9
    assert 0 <= v.evaluation["ci"][0] <= v.evaluation["f1"] <= v.evaluation["ci"][1] <= 1
    assert (root / "versions" / "v0001" / "MODEL_CARD.md").is_file()
    assert registry.training_data().texts == topic_corpus(9, seed=1, noise=0.5).texts
    with pytest.raises(ConfigError, match="already holds a model"):
        ModelRegistry.create(root, _pipe().fit(["aa bb", "cc dd"] * 2, ["x", "y"] * 2),
                             train=TextDataset(["a"], ["x"]), eval_set=TextDataset(["b"], ["y"]))


def test_retrain_promotes_an_improving_model(registry, tmp_path):
    f = tmp_path / "new.csv"
    _frame(topic_corpus(150, seed=5)).to_csv(f, index=False)
    out = retrain(registry.root, f)
    assert out.promoted and out.gate.verdict == "improved" and out.gate.ci_low > 0
    reg = ModelRegistry(registry.root)
    assert reg.current.id == "v0002" == out.version.id and reg.current.n_train == 159
    assert "Promoted" in out.message and "v0002 is now in use" in out.message
    card = (reg.root / "versions" / "v0002" / "MODEL_CARD.md").read_text()
    assert "## Retrain gate" in card and "retrained from: v0001" in card
    assert "# triage" in card and "nothing beats it here" in card  # carried over from v0001
    assert out.merge.added == 150 and reg.load().score(reg.eval_set().texts, reg.eval_set().labels) > 0.9


def test_retrain_refuses_a_regressing_model_and_keeps_the_old_one(registry, tmp_path):
    good = tmp_path / "good.csv"
    _frame(topic_corpus(150, seed=5)).to_csv(good, index=False)
    retrain(registry.root, good)
    wrong = topic_corpus(300, seed=6)
    bad = tmp_path / "bad.csv"
    _frame(wrong, [ROTATE[label] for label in wrong.labels]).to_csv(bad, index=False)
    out = retrain(registry.root, bad)
    reg = ModelRegistry(registry.root)
    assert not out.promoted and out.gate.verdict == "regression" and out.gate.ci_high < 0
    assert reg.current.id == "v0002" and out.in_use == "v0002"
    assert reg.version("v0003").status == "rejected"
    assert "Kept v0002 (in use)" in out.message and "worse" in out.message and "NOT put in use" in out.message
    # The next retrain builds on the version in use, not on the rejected data.
    assert len(reg.training_data()) == 159
    with pytest.raises(ConfigError, match="rejected by the gate"):
        reg.rollback("v0003")


def test_a_drop_within_the_noise_but_beyond_max_drop_is_refused():
    y = np.array(["a", "b"] * 50, dtype=object)
    old = y.copy()
    new = y.copy()
    new[:3] = np.where(new[:3] == "a", "b", "a")  # 3 of 100 flipped: F1 -0.03, CI reaches 0
    g = gate(y, old, new, ["a", "b"], None, max_drop=0.02)
    assert not g.promoted and g.verdict == "drop-above-threshold" and "max_drop" in g.explanation
    g = gate(y, old, new, ["a", "b"], None, max_drop=0.05)
    assert g.promoted and g.verdict == "within-noise"


def test_rollback_and_models_list(registry, tmp_path):
    f = tmp_path / "new.csv"
    _frame(topic_corpus(150, seed=5)).to_csv(f, index=False)
    retrain(registry.root, f)
    reg = ModelRegistry(registry.root)
    texts = reg.eval_set().texts[:20]
    assert reg.rollback().id == "v0001"
    again = ModelRegistry(registry.root)
    assert again.current.id == "v0001"
    assert (load_model(registry.root).predict(texts) == again.load("v0001").predict(texts)).all()
    with pytest.raises(ConfigError, match="already in use"):
        again.rollback("v0001")
    with pytest.raises(ConfigError, match="first version"):
        again.rollback()
    assert again.rollback("v0002").id == "v0002"
    assert [e["event"] for e in again.events] == ["promoted", "promoted", "rollback", "rollback"]


def test_merge_reports_duplicates_relabels_and_sealed_texts():
    current = TextDataset(texts=["alpha text", "beta text"], labels=["x", "y"])
    sealed = TextDataset(texts=["gamma sealed"], labels=["x"])
    new = TextDataset(texts=["Alpha  TEXT", "beta text", "gamma sealed", "delta new"], labels=["x", "x", "y", "z"])
    merged, rep = merge_labels(current, new, sealed)
    assert merged.texts == ["alpha text", "beta text", "delta new"] and merged.labels == ["x", "x", "z"]
    assert rep.duplicates == 1 and rep.added == 1 and rep.new_classes == ["z"]
    assert rep.relabelled == [{"row": 2, "old": "y", "new": "x", "text": "beta text"}]
    assert rep.in_eval_set[0]["row"] == 3
    text = "\n".join(rep.lines())
    assert "sealed evaluation set and were NOT added (rows 3)" in text and "'y' -> 'x'" in text


def test_nothing_new_creates_no_version(registry, tmp_path):
    f = tmp_path / "same.csv"
    _frame(registry.training_data()).to_csv(f, index=False)
    out = retrain(registry.root, f)
    assert out.version is None and out.gate is None and "Nothing to retrain" in out.message
    assert len(ModelRegistry(registry.root).versions) == 1


def test_cli_ship_predict_retrain_models(tmp_path):
    home = tmp_path / "home"
    data = topic_corpus(120, seed=11)
    _frame(data).to_csv(tmp_path / "train.csv", index=False)
    model = tmp_path / "model"
    r = runner.invoke(app, ["ship", str(tmp_path / "train.csv"), "-o", str(model), "--rung", "tfidf", "--home", str(home)])
    assert r.exit_code == 0, r.output
    assert "v0001 (tfidf)" in flat(r.output) and "sealed texts" in flat(r.output)
    items = topic_corpus(30, seed=12)
    rows = pd.DataFrame({"id": [f"q{i}" for i in range(30)], "text": items.texts})
    rows.loc[4, "text"] = ""
    rows.to_csv(tmp_path / "in.csv", index=False)
    r = runner.invoke(app, ["predict", str(model), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)  # stderr: the progress lines
    assert rep["n_predicted"] == 29 and rep["n_rejected"] == 1
    pred = pd.read_csv(tmp_path / "out.csv")
    assert pred["id"].tolist() == [f"q{i}" for i in range(30) if i != 4]
    assert (pred["label"] == np.asarray(items.labels)[[i for i in range(30) if i != 4]]).mean() > 0.9
    wrong = topic_corpus(300, seed=13)
    _frame(wrong, [ROTATE[label] for label in wrong.labels]).to_csv(tmp_path / "bad.csv", index=False)
    r = runner.invoke(app, ["retrain", str(model), str(tmp_path / "bad.csv")])
    assert r.exit_code == 0, r.output
    assert "KEPT v0001" in flat(r.output) and "worse" in flat(r.output)
    r = runner.invoke(app, ["models", "list", str(model), "--json"])
    listing = json.loads(r.output)
    assert listing["in_use"] == "v0001" and [v["status"] for v in listing["versions"]] == ["promoted", "rejected"]
    r = runner.invoke(app, ["models", "rollback", str(model)])
    assert r.exit_code == 2 and "first version" in flat(r.output)
    r = runner.invoke(app, ["retrain", str(tmp_path / "nowhere"), str(tmp_path / "bad.csv")])
    assert r.exit_code == 2 and "not an adaptlab model folder" in flat(r.output)


def test_a_batch_is_judged_as_an_addition_and_unlabeled_rows_can_be_skipped(registry, tmp_path):
    """One class, or a class labeled once, is fine in a batch when the merged data is; rows left unlabeled
    (an `adaptlab suggest` file half done) are refused by default and skipped, listed, with on_invalid=drop."""
    ds = topic_corpus(60, seed=7)
    sport = [i for i, y in enumerate(ds.labels) if y == "sport"]
    one_class = tmp_path / "sport.csv"
    _frame(ds.subset(sport)).to_csv(one_class, index=False)
    out = retrain(registry.root, one_class)
    assert out.version is not None and out.merge.added == len(sport)
    partly = tmp_path / "suggested.csv"
    labels = [y if i % 3 else "" for i, y in enumerate(ds.labels)]
    pd.DataFrame({"id": [f"s{i}" for i in range(60)], "text": ds.texts, "label": labels}).to_csv(partly, index=False)
    with pytest.raises(Exception, match="label"):
        retrain(registry.root, partly)
    out = retrain(registry.root, partly, on_invalid="drop")
    assert out.message.startswith("Skipped 20 row(s) of suggested.csv with no usable label or text (rows 1, 4, 7")
    r = runner.invoke(app, ["retrain", str(registry.root), str(partly), "--on-invalid", "drop", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["message"].startswith("Skipped 20 row(s)")
    empty = tmp_path / "empty.csv"
    pd.DataFrame({"text": ds.texts[:5], "label": [""] * 5}).to_csv(empty, index=False)
    r = runner.invoke(app, ["retrain", str(registry.root), str(empty)])
    assert r.exit_code == 2 and "has no labels" in r.output and "Traceback" not in r.output
