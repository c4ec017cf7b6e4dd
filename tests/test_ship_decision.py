"""Issue #31, from your own CSV to a shipped model without a trap: `ship --study` honours the decision (a "do not
ship yet" study needs --force, recorded in the card and `models list`), a stored study is never replaced by a
rerun, and the planner keeps the seeds the user gave."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.config import StudyConfig
from adaptlab.decide import Evidence, decide
from adaptlab.errors import ConfigError
from adaptlab.ship.from_study import decision_record, ship_gate
from adaptlab.store import RunStore
from synthetic import topic_corpus

runner = CliRunner()


def invoke(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def flat(s: str) -> str:
    return " ".join(s.split())


@pytest.fixture
def weak_study(tmp_path, tiny_encoder_dir):
    """A study on labels that are mostly noise: its decision is "do not ship yet" (below the 0.80 threshold)."""
    ds = topic_corpus(120, seed=4, noise=0.95)
    path = tmp_path / "weak.csv"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    home = tmp_path / "home"
    r = invoke("study", "run", "--data", path, "--rungs", "tfidf,probe", "--seeds", 3, "--encoder", tiny_encoder_dir,
               "--home", home, "--json")
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["decision"]["status"] == "do-not-ship", payload["decision"]["headline"]
    return path, home, payload["study_id"]


# ----------------------------------------------------------------------------------------- the gate itself
def test_decision_record_says_why_and_names_the_threshold():
    hold = decision_record(decide(Evidence.from_tables({"probe": [0.60, 0.61, 0.62]})))
    assert hold["status"] == "do-not-ship" and not hold["ship"] and hold["ship_threshold"] == 0.8
    assert hold["reason"] == "probe's mean F1 0.610 over 3 seed(s) is below the ship threshold 0.80"
    go = decide(Evidence.from_tables({"probe": [0.90, 0.91, 0.92]}))
    assert decision_record(go)["status"] == "ship" and "reaches the ship threshold 0.80" in decision_record(go)["reason"]
    assert decision_record(go.to_dict()) == decision_record(go)  # the report's dict reads the same


def test_ship_gate_refuses_a_hold_names_force_and_records_the_override():
    extra = {"decision": decision_record(decide(Evidence.from_tables({"probe": [0.60, 0.61, 0.62]})))}
    with pytest.raises(ConfigError, match="says do not ship yet: probe's mean F1 0.610") as err:
        ship_gate(extra, "probe")
    assert "pass --force to ship probe anyway" in str(err.value)
    with pytest.raises(ConfigError, match='tick "ship anyway"'):
        ship_gate(extra, "probe", how_to_force='tick "ship anyway"')
    forced = ship_gate(extra, "probe", force=True)["forced"]
    assert forced["status"] == "do-not-ship" and forced["ship_threshold"] == 0.8 and forced["rung"] == "probe"
    assert "below the ship threshold 0.80" in forced["reason"] and forced["when"]
    provisional = {"decision": {**extra["decision"], "status": "provisional"}}
    with pytest.raises(ConfigError):
        ship_gate(provisional, "probe")
    fine = {"decision": decision_record(decide(Evidence.from_tables({"probe": [0.90, 0.91, 0.92]})))}
    assert ship_gate(fine, "probe") is fine and "forced" not in ship_gate(fine, "probe", force=True)


# ----------------------------------------------------------------------------------------- ship on the CLI
@pytest.mark.parametrize("json_out", [False, True], ids=["table", "json"])
def test_ship_refuses_a_do_not_ship_study_without_force(weak_study, tmp_path, tiny_encoder_dir, json_out):
    path, home, sid = weak_study
    model = tmp_path / "model"
    r = invoke("ship", path, "--study", sid, "-o", model, "--encoder", tiny_encoder_dir, "--home", home,
               *(["--json"] if json_out else []))
    text = flat(r.output)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"study {sid[:12]} says do not ship yet" in text and "below the ship threshold 0.80" in text
    assert "pass --force to ship" in text and not model.exists()  # refused before anything was trained


def test_ship_with_force_is_recorded_in_the_card_and_models_list(weak_study, tmp_path, tiny_encoder_dir):
    path, home, sid = weak_study
    model = tmp_path / "model"
    r = invoke("ship", path, "--study", sid, "-o", model, "--encoder", tiny_encoder_dir, "--home", home, "--force")
    assert r.exit_code == 0, r.output
    assert "FORCED past the study's decision" in flat(r.output)
    card = flat((model / "versions" / "v0001" / "MODEL_CARD.md").read_text())
    assert "## Study decision" in card and "forced: shipped with --force against the study's decision" in card
    assert "the ship threshold is 0.80" in card and "below the ship threshold 0.80" in card
    assert f"study `{sid[:12]}` decided: **do not ship yet** (do-not-ship)" in card
    r = invoke("models", "list", model, terminal_width=250)
    assert r.exit_code == 0 and "(forced)" in r.output and "first version; forced" in r.output
    r = invoke("models", "list", model, "--json")
    v = json.loads(r.stdout)["versions"][0]
    assert v["status"] == "promoted" and v["forced"]["status"] == "do-not-ship"
    assert v["forced"]["ship_threshold"] == 0.8 and "below the ship threshold" in v["forced"]["reason"]
    # JSON mode of ship itself says it too.
    r = invoke("ship", path, "--study", sid, "-o", tmp_path / "m2", "--encoder", tiny_encoder_dir, "--home", home,
               "--force", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["version"]["forced"]["study_id"] == sid


def test_ship_of_a_ship_decision_needs_no_force_and_names_the_threshold(tmp_path):
    ds = topic_corpus(120, seed=5, noise=0.2)
    path, home = tmp_path / "clean.csv", tmp_path / "home"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    r = invoke("study", "run", "--data", path, "--rungs", "tfidf", "--seeds", 3, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    decision = json.loads(r.stdout)["decision"]
    assert decision["status"] == "ship", decision["headline"]
    r = invoke("ship", path, "--study", "latest", "-o", tmp_path / "m", "--home", home)
    assert r.exit_code == 0, r.output
    assert "FORCED" not in r.output
    card = flat((tmp_path / "m" / "versions" / "v0001" / "MODEL_CARD.md").read_text())
    assert "decided: **ship** (ship); ship threshold 0.80" in card and "forced" not in card
    r = invoke("models", "list", tmp_path / "m", "--json")
    assert json.loads(r.stdout)["versions"][0]["forced"] is None
    assert "(forced)" not in invoke("models", "list", tmp_path / "m", terminal_width=250).output


# ----------------------------------------------------------------------------------------- studies are immutable
def _timed(**kw) -> StudyConfig:
    return StudyConfig(rungs=["tfidf", "probe"], seeds=3, n_boot=200, time_budget=kw.pop("time_budget", "10min"), **kw)


def test_a_finished_timed_study_is_read_back_never_allocated_again(tiny_encoder, tmp_path, monkeypatch):
    from adaptlab.evaluate import Study

    data = topic_corpus(120, seed=1)
    first = Study(_timed(), home=tmp_path, encoder=tiny_encoder).run(data)
    store = RunStore(tmp_path / "runs.sqlite")
    stored = store.get_study(first.study_id)["summary"]
    assert first.allocation and first.n_trained > 0

    def allocate_again(*_a, **_k):
        raise AssertionError("a finished study was allocated again")

    monkeypatch.setattr(Study, "_run_adaptive", allocate_again)
    events = []
    study = Study(_timed(), home=tmp_path, encoder=tiny_encoder)
    again = study.run(data, on_event=events.append)
    assert study.read_back and again.study_id == first.study_id and again.n_trained == 0
    assert again.n_from_store == len(first.allocation["cells"])
    assert again.rows == first.rows and again.allocation == first.allocation
    assert store.get_study(first.study_id)["summary"] == stored  # not rewritten
    assert events[0].kind == "study" and {e.kind for e in events[1:]} == {"stored"}
    assert len(events) - 1 == again.n_from_store
    # Another time budget is another study: its own id, and the first one stays as it was.
    monkeypatch.undo()
    longer = Study(_timed(time_budget="20min"), home=tmp_path, encoder=tiny_encoder).run(data)
    assert longer.study_id != first.study_id and longer.n_trained == 0  # every run it needed was stored
    assert store.get_study(first.study_id)["summary"] == stored


@pytest.mark.parametrize("json_out", [False, True], ids=["table", "json"])
def test_rerun_from_study_config_leaves_the_stored_study_intact(tmp_path, tiny_encoder_dir, monkeypatch, json_out):
    """The issue's steps: a --time study, `study config latest -o study.toml`, `study run --config study.toml`."""
    from adaptlab.evaluate import Study

    ds = topic_corpus(120, seed=2)
    path, home, back = tmp_path / "train.csv", tmp_path / "home", tmp_path / "study.toml"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    r = invoke("study", "run", "--data", path, "--rungs", "tfidf,probe", "--seeds", 3, "--time", "10min",
               "--encoder", tiny_encoder_dir, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    stored = RunStore(home / "runs.sqlite").get_study(first["study_id"])["summary"]
    r = invoke("study", "config", "latest", "-o", back, "--home", home)
    assert r.exit_code == 0, r.output

    def allocate_again(*_a, **_k):
        raise AssertionError("a finished study was allocated again")

    monkeypatch.setattr(Study, "_run_adaptive", allocate_again)
    r = invoke("study", "run", "--config", back, "--home", home, *(["--json"] if json_out else []))
    assert r.exit_code == 0, r.output
    if json_out:
        again = json.loads(r.stdout)
        assert again["study_id"] == first["study_id"] and again["n_trained"] == 0
        assert again["rows"] == first["rows"] and again["allocation"] == first["allocation"]
    else:
        assert "read back, not run again" in flat(r.output) and first["study_id"][:12] in r.output
    assert RunStore(home / "runs.sqlite").get_study(first["study_id"])["summary"] == stored
    r = invoke("study", "show", first["study_id"][:12], "--home", home, "--json")
    shown = json.loads(r.stdout)
    assert shown["rows"] == first["rows"] and shown["allocation"] == first["allocation"]


# ----------------------------------------------------------------------------------------- plan keeps the seeds
def test_plan_without_enough_seeds_for_time_says_so():
    from adaptlab.decide.plan import Plan, PlanItem

    plan = Plan(5400.0, "cpu", {}, [PlanItem("tfidf", 2, 2.0, 0.0, True, "2 seeds")], max_seeds=2,
                eligible=["tfidf", "probe"])
    assert plan.time_command("d.csv") is None
    assert "--seeds 2" in plan.time_command_note and "--seeds 3" in plan.time_command_note
    assert plan.commands("d.csv") == ["adaptlab study run --data d.csv --rungs tfidf --seeds 2"]
    five = Plan(5400.0, "cpu", {}, [], max_seeds=5, eligible=["tfidf", "probe"])
    assert five.time_command_note is None and " --seeds 5 --time 90min" in five.time_command("d.csv")


@pytest.mark.parametrize("json_out", [False, True], ids=["table", "json"])
def test_plan_seeds_2_keeps_2(tmp_path, tiny_encoder_dir, json_out):
    ds = topic_corpus(90, seed=3)
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    r = invoke("plan", "--data", path, "--encoder", tiny_encoder_dir, "--budget", "2 hours", "--rungs", "tfidf,probe",
               "--seeds", 2, "--home", tmp_path / "home", *(["--json"] if json_out else []))
    assert r.exit_code == 0, r.output
    if json_out:
        payload = json.loads(r.stdout)
        assert payload["max_seeds"] == 2 and payload["time_command"] is None
        assert "this plan has --seeds 2" in payload["time_command_note"]
        assert all(i["seeds"] <= 2 for i in payload["items"]) and all("--seeds 2" in c for c in payload["commands"])
    else:
        text = flat(r.output)
        assert "--seeds 3" not in text.replace("plan with --seeds 3", "")
        assert "run it: adaptlab study run" in text and "--seeds 2" in text
        assert "no --time command: a decision-driven study needs at least 3 seeds" in text
