"""`adaptlab plan` end to end through the CLI: table and JSON modes, measured costs from --home, bad flags."""
import json

import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from synthetic import topic_corpus

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def files(tmp_path):
    import pandas as pd

    ds = topic_corpus(150, noise=0.6)
    data, unlabeled = tmp_path / "train.csv", tmp_path / "unlabeled.csv"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(data, index=False)
    pd.DataFrame({"text": topic_corpus(60, seed=1).texts}).to_csv(unlabeled, index=False)
    return data, unlabeled


def plan_flags(files, encoder_dir, home, *extra, budget="2 hours"):
    # A budget far above what the tiny study needs, so a loaded machine's slow calibration changes nothing.
    data, unlabeled = files
    return ["plan", "--data", data, "--unlabeled", unlabeled, "--encoder", encoder_dir, "--budget", budget,
            "--rungs", "tfidf,probe,refit,finetune", "--train-budget", "8steps", "--home", home, *extra]


def test_plan_prints_its_table_and_the_commands_that_run_it(files, tiny_encoder_dir, tmp_path):
    r = invoke(*plan_flags(files, tiny_encoder_dir, tmp_path / "home"))
    assert r.exit_code == 0, r.output
    assert r.exception is None  # the table mode used to die on `cannot import name '_fmt'`
    assert "plan for 2 hours" in r.output and "calibrated" in r.output and "planned" in r.output
    assert "run it: adaptlab study run" in r.output and "--budget 8steps" in r.output
    assert "--seeds 1 --budget 2steps" in r.output  # the screen: a quarter of the 8 steps
    assert "or let the study choose each next run from the results so far: adaptlab study run" in r.output
    assert "--rungs tfidf,probe,refit,finetune --seeds 5 --time 2h --budget 8steps --unlabeled" in r.output


def test_plan_json_has_fidelity_cost_source_and_commands(files, tiny_encoder_dir, tmp_path):
    r = invoke(*plan_flags(files, tiny_encoder_dir, tmp_path / "home", "--seeds", 3, "--json"))
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    items = {i["rung"]: i for i in payload["items"]}
    assert set(items) == {"tfidf", "probe", "refit", "finetune"} and payload["train_budget"] == "8steps"
    ft = items["finetune"]
    assert ft["steps_per_seed"] == 8 and ft["screen_steps"] == 2 and ft["fidelity"] == 0.25
    assert ft["full_seeds"] == 3 and ft["cost_source"] == "calibrated"
    assert items["refit"]["one_time_seconds"] > items["refit"]["seconds_per_seed"]
    assert payload["total_seconds"] <= payload["budget_seconds"]
    assert payload["commands"][-1].endswith("--rungs finetune --seeds 1 --budget 2steps")
    assert payload["max_seeds"] == 3 and payload["eligible"] == ["tfidf", "probe", "refit", "finetune"]
    assert " --seeds 3 --time 2h --budget 8steps" in payload["time_command"]


def test_plan_reads_measured_costs_from_home(files, tiny_encoder_dir, tmp_path):
    home = tmp_path / "home"
    data, _ = files
    r = invoke("study", "run", "--data", data, "--rungs", "tfidf", "--seeds", 2, "--encoder", tiny_encoder_dir,
               "--home", home)
    assert r.exit_code == 0, r.output
    r = invoke(*plan_flags(files, tiny_encoder_dir, home, "--json"))
    assert r.exit_code == 0, r.output
    items = {i["rung"]: i for i in json.loads(r.stdout)["items"]}
    assert items["tfidf"]["cost_source"] == "measured (2 runs)" and items["probe"]["cost_source"] == "calibrated"
    r = invoke(*plan_flags(files, tiny_encoder_dir, home))
    assert r.exit_code == 0 and "measured (2" in r.output


@pytest.mark.parametrize("flag,value,message", [
    ("--train-budget", "soon", "--train-budget='soon' is not valid"),
    ("--screen-fidelity", "1.5", "--screen-fidelity=1.5 is not valid"),
    ("--seeds", "0", "--seeds=0 is not valid"),
])
def test_bad_plan_flags_are_named(files, tiny_encoder_dir, tmp_path, flag, value, message):
    r = invoke(*plan_flags(files, tiny_encoder_dir, tmp_path / "home", flag, value))
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output
