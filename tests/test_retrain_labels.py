"""The retrain's label check: a batch of likely wrong labels is held before training, with its rows named."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.data.dataset import TextDataset
from adaptlab.decide import Policy
from adaptlab.errors import ConfigError
from adaptlab.ship import ModelRegistry, Pipeline, check_new_labels, merge_labels, retrain
from adaptlab.ship.label_check import new_label_positions
from synthetic import topic_corpus

runner = CliRunner()
CLASSES = ["money", "sport", "tech"]


def flat(s: str) -> str:
    return " ".join(s.split())


@pytest.fixture
def registry(tmp_path):
    """v0001: tfidf trained on 150 clean synthetic texts, judged on 60 sealed texts."""
    train, sealed = topic_corpus(150, seed=1), topic_corpus(60, seed=2)
    pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(train.texts, train.labels)
    return ModelRegistry.create(tmp_path / "model", pipe, train=train, eval_set=sealed, extra={"name": "triage"})


@pytest.fixture
def random_batch(tmp_path):
    """80 new texts whose labels were drawn at random (about two thirds wrong); returns (file, wrong rows)."""
    ds = topic_corpus(80, seed=7)
    labels = np.random.default_rng(0).choice(CLASSES, 80)
    path = tmp_path / "random.csv"
    pd.DataFrame({"id": [f"n{i}" for i in range(80)], "text": ds.texts, "label": labels}).to_csv(path, index=False)
    return path, {i + 1 for i in range(80) if labels[i] != ds.labels[i]}


@pytest.fixture
def clean_batch(tmp_path):
    ds = topic_corpus(60, seed=9)
    path = tmp_path / "clean.csv"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    return path


def test_a_random_label_batch_is_held_before_training_with_its_rows_named(registry, random_batch):
    path, wrong = random_batch
    out = retrain(registry.root, path)
    assert out.held and out.status == "held" and not out.promoted
    assert out.gate is None and out.version is None and out.in_use == "v0001"
    reg = ModelRegistry(registry.root)
    assert [v.id for v in reg.versions] == ["v0001"] and reg.current.id == "v0001"
    assert reg.events[-1]["event"] == "held" and reg.events[-1]["rows"] == [r["row"] for r in out.labels.rows[:10]]
    chk = out.labels
    assert chk.n_new == 80 and chk.n_old == 150 and chk.new_rate > 0.3 and chk.old_rate < 0.1
    assert chk.model_disagreement > 0.4 and chk.model_baseline < 0.2
    flagged = [r["row"] for r in chk.rows]
    assert len(set(flagged) & wrong) / len(flagged) >= 0.8  # the named rows are mostly truly wrong
    assert {r["id"] for r in chk.rows} == {f"n{row - 1}" for row in flagged}
    msg = flat(out.message)
    assert msg.startswith("Held: the new labels look wrong.") and "Nothing was trained" in msg
    assert f"row {flagged[0]} " in msg and "random.csv" in msg and "--accept-labels" in msg
    assert "--label-issues FILE" in msg and "v0001 stays in use" in msg
    json.dumps(out.to_dict())
    assert out.to_dict()["status"] == "held" and out.to_dict()["labels"]["rows"]


def test_a_clean_batch_is_promoted_as_before(registry, clean_batch):
    out = retrain(registry.root, clean_batch)
    assert out.promoted and out.status == "promoted" and not out.held
    assert out.labels is not None and not out.labels.held and not out.labels.accepted
    assert out.message.startswith("Promoted the retrained model") and "v0002 is now in use" in out.message
    card = (registry.root / "versions" / "v0002" / "MODEL_CARD.md").read_text()
    assert "## Label check (new labels)" in card and "Label check passed" in card and "override" not in card


def test_accept_labels_trains_anyway_and_the_card_records_the_override(registry, random_batch):
    path, _ = random_batch
    out = retrain(registry.root, path, accept_labels=True)
    assert not out.held and out.version is not None and out.version.id == "v0002"
    assert out.labels.accepted and out.status in ("promoted", "rejected")
    assert "Label check overridden with --accept-labels" in out.message
    card = (registry.root / "versions" / "v0002" / "MODEL_CARD.md").read_text()
    assert "override: the new labels were accepted with --accept-labels" in card
    assert f"row {out.labels.rows[0]['row']} " in card and "random.csv" in card


def test_policy_thresholds_decide_the_hold(registry, random_batch):
    path, _ = random_batch
    lenient = Policy(label_noise_min=0.95)
    out = retrain(registry.root, path, policy=lenient)
    assert not out.held and out.version is not None and not out.labels.accepted
    with pytest.raises(ConfigError, match="policy.label_noise_ratio=0.5 is not valid"):
        Policy(label_noise_ratio=0.5)
    with pytest.raises(ConfigError, match="policy.label_noise_min_rows"):
        Policy(label_noise_min_rows=0)


def test_a_few_suspicious_rows_do_not_hold_a_small_batch(registry, tmp_path):
    ds = topic_corpus(12, seed=21)
    labels = list(ds.labels)
    labels[0], labels[1] = labels[1], labels[0]  # two wrong labels out of 12 (17%): below label_noise_min_rows
    path = tmp_path / "small.csv"
    pd.DataFrame({"text": ds.texts, "label": labels}).to_csv(path, index=False)
    out = retrain(registry.root, path)
    assert not out.held and out.version is not None


def test_relabelled_old_texts_count_as_new_labels():
    old = TextDataset(["a b", "c d", "e f"], ["x", "y", "x"])
    new = TextDataset(["C  d", "e f", "g h"], ["x", "x", "y"], rows=[2, 3, 4])
    merged, _ = merge_labels(old, new, TextDataset(["zz"], ["x"]))
    # "c d" took the new label (row 2), "e f" repeats its old label (nothing new), "g h" is added (row 4).
    assert new_label_positions(old, new, merged) == {1: 2, 3: 4}
    assert check_new_labels(old, TextDataset(["a b"], ["x"]), old) is None  # nothing new to judge


def test_retrain_cli_holds_names_the_rows_and_writes_them(registry, random_batch, tmp_path):
    path, wrong = random_batch
    out = tmp_path / "suspicious.csv"
    r = runner.invoke(app, ["retrain", str(registry.root), str(path), "--label-issues", str(out)])
    assert r.exit_code == 4, r.output  # held: exit status 4 (adaptlab.cli.exit_codes.RETRAIN_HELD)
    text = flat(r.stdout)
    assert text.startswith("HELD Held: the new labels look wrong.") and "row " in text and "--accept-labels" in text
    assert "checking the new labels" in flat(r.stderr) and "flagged new label(s) written to" in text
    rows = pd.read_csv(out)
    assert len(rows) > 10 and len(set(rows["row"]) & wrong) / len(rows) >= 0.8
    assert list(rows.columns[:6]) == ["rank", "row", "id", "text", "given_label", "suggested_label"]
    r = runner.invoke(app, ["retrain", str(registry.root), str(path), "--json"])
    rep = json.loads(r.stdout)
    assert r.exit_code == 4 and rep["exit_code"] == 4
    assert rep["status"] == "held" and rep["held"] and rep["version"] is None and rep["labels"]["n_flagged_new"] > 10
    assert ModelRegistry(registry.root).current.id == "v0001"


def test_retrain_cli_accept_labels_and_policy_file(registry, random_batch, tmp_path):
    path, _ = random_batch
    r = runner.invoke(app, ["retrain", str(registry.root), str(path), "--accept-labels"])
    assert r.exit_code == 0, r.output
    text = flat(r.stdout)
    assert "HELD" not in text and "Label check overridden with --accept-labels" in text
    card = (registry.root / "versions" / "v0002" / "MODEL_CARD.md").read_text()
    assert "accepted with --accept-labels" in card
    other = topic_corpus(80, seed=17)
    again = tmp_path / "again.csv"
    labels = np.random.default_rng(1).choice(CLASSES, 80)
    pd.DataFrame({"text": other.texts, "label": labels}).to_csv(again, index=False)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"label_noise_min": 0.95}))
    r = runner.invoke(app, ["retrain", str(registry.root), str(again), "--policy", str(policy), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["status"] in ("promoted", "rejected") and rep["labels"]["thresholds"]["label_noise_min"] == 0.95


def test_retrain_cli_bad_label_issues_name_fails_before_training(registry, random_batch, tmp_path):
    path, _ = random_batch
    r = runner.invoke(app, ["retrain", str(registry.root), str(path), "--label-issues", str(tmp_path / "x.xls")])
    assert r.exit_code == 2 and "Rename it, e.g. x.csv" in flat(r.output) and "Traceback" not in r.output
    assert [v.id for v in ModelRegistry(registry.root).versions] == ["v0001"]
    r = runner.invoke(app, ["retrain", str(registry.root), str(path), "--policy", str(tmp_path / "none.json")])
    assert r.exit_code == 2 and "does not exist" in flat(r.output)


def test_models_list_shows_a_held_retrain_with_its_reason(registry, random_batch, clean_batch):
    path, _ = random_batch
    r = runner.invoke(app, ["models", "list", str(registry.root), "--json"])
    assert json.loads(r.stdout)["held"] == []
    assert "Held retrains" not in flat(runner.invoke(app, ["models", "list", str(registry.root)]).stdout)
    held = retrain(registry.root, path)
    assert held.held
    retrain(registry.root, clean_batch)  # a later, clean batch: promoted; the held one stays on the record
    r = runner.invoke(app, ["models", "list", str(registry.root), "--json"])
    assert r.exit_code == 0, r.output
    listing = json.loads(r.stdout)
    assert [v["id"] for v in listing["versions"]] == ["v0001", "v0002"] and listing["in_use"] == "v0002"
    [h] = listing["held"]
    assert h["version"] == "v0001" and h["source"] == "random.csv" and h["n_new"] == 80
    assert h["n_flagged_new"] == held.labels.n_flagged_new and h["rows"] == [x["row"] for x in held.labels.rows[:10]]
    assert h["reason"] == held.labels.evidence()
    r = runner.invoke(app, ["models", "list", str(registry.root)], terminal_width=250)
    assert r.exit_code == 0, r.output
    text = flat(r.stdout)
    assert "Held retrains (the label check stopped them; nothing was trained)" in text
    assert "random.csv" in text and f"{held.labels.n_flagged_new} (first: {h['rows'][0]}," in text
    assert "confident learning flags" in text
