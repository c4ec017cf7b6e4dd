"""Monitoring a shipped model folder from the command line: drift, cold start, embedding age, bias, stability."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.ship import ModelRegistry
from synthetic import topic_corpus

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def flat(s: str) -> str:
    return " ".join(s.split())


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture
def model(tmp_path, tiny_encoder_dir):
    data = topic_corpus(150, seed=21)
    pd.DataFrame({"id": [f"t{i}" for i in range(150)], "text": data.texts, "label": data.labels}).to_csv(
        tmp_path / "train.csv", index=False)
    invoke("ship", tmp_path / "train.csv", "-o", tmp_path / "model", "--rung", "probe", "--encoder", tiny_encoder_dir,
           "--home", tmp_path / "home", "--json")
    return tmp_path / "model"


def test_drift_flags_a_shifted_corpus_and_not_a_resample(model, tmp_path):
    same = topic_corpus(120, seed=22)
    pd.DataFrame({"text": same.texts}).to_csv(tmp_path / "same.csv", index=False)
    rng = np.random.default_rng(0)
    other = [" ".join(rng.choice(["recipe", "oven", "flour", "sugar", "bake", "butter", "salt", "egg"], 15))
             for _ in range(120)]
    pd.DataFrame({"text": other}).to_csv(tmp_path / "shifted.csv", index=False)
    ok = json.loads(invoke("drift", model, tmp_path / "same.csv", "--json"))
    bad = json.loads(invoke("drift", model, tmp_path / "shifted.csv", "--json"))
    assert bad["mmd"]["p_value"] < 0.05 and ok["mmd"]["p_value"] > 0.05
    assert "drift detected" in flat(invoke("drift", model, tmp_path / "shifted.csv"))
    assert (model / "reference" / "reference.safetensors").is_file()  # built once, reused


def test_neighbors_places_the_planted_near_duplicate_first(model, tmp_path):
    train = ModelRegistry(model).training_data()
    planted = train.texts[7] + " the"  # one word more: a near-duplicate
    fresh = topic_corpus(3, seed=40).texts
    pd.DataFrame({"id": ["new-a", "new-b", "new-c", "new-dup"], "text": [*fresh, planted]}).to_csv(
        tmp_path / "items.csv", index=False)
    rows = json.loads(invoke("neighbors", model, tmp_path / "items.csv", "-k", "3", "--json",
                             "-o", tmp_path / "placed.csv"))
    dup = [r for r in rows if r["new_id"] == "new-dup"]
    assert dup[0]["rank"] == 1 and dup[0]["neighbor_id"] == train.ids[7] and dup[0]["score"] > 0.95
    assert len(pd.read_csv(tmp_path / "placed.csv")) == 12


def test_embedding_age_after_a_retrain_and_stability_between_versions(model, tmp_path):
    invoke("embeddings", model, "--update")
    more = topic_corpus(60, seed=30)
    pd.DataFrame({"text": more.texts, "label": more.labels}).to_csv(tmp_path / "new.csv", index=False)
    invoke("retrain", model, tmp_path / "new.csv", "--max-drop", "0.5")
    age = json.loads(invoke("embeddings", model, "--json"))
    assert age["not_embedded"]["n"] == 60 and age["up_to_date"]  # same frozen encoder: only new rows to embed
    out = flat(invoke("embeddings", model, "--update"))
    assert json.loads(invoke("embeddings", model, "--json"))["not_embedded"]["n"] == 0
    assert "re-embedded" not in out  # nothing stale: new rows are embedded, old ones kept
    stab = json.loads(invoke("stability", model, "v0001", "v0002", "--json", "--probes", "50"))
    assert stab["mean"] == pytest.approx(1.0)  # the frozen encoder did not change between versions


def test_bias_audit_names_the_group_the_model_fails(model, tmp_path):
    data = topic_corpus(180, seed=50)
    groups = np.random.default_rng(1).permutation(np.array(["A", "B", "C"] * 60))  # not aligned with the classes
    rotate = {"sport": "tech", "tech": "money", "money": "sport"}
    labels = [rotate[lab] if g == "C" else lab for lab, g in zip(data.labels, groups)]
    pd.DataFrame({"text": data.texts, "label": labels, "site": groups}).to_csv(tmp_path / "audit.csv", index=False)
    rep = json.loads(invoke("bias", model, tmp_path / "audit.csv", "--group-col", "site", "--json"))
    assert "C" in rep["significantly_worse"] and "A" not in rep["significantly_worse"]
    assert "C" in flat(invoke("bias", model, tmp_path / "audit.csv", "--group-col", "site"))
