"""The planner: budget parsing, cost scaling, greedy fit with reasons, and a real calibration on the tiny encoder."""
import json

import pytest

from adaptlab.decide.plan import Calibration, estimate_costs, make_plan, parse_budget, plan_study
from adaptlab.errors import ConfigError
from synthetic import topic_corpus

CAL = Calibration(device="cpu", encode_per_text=0.01, train_step=0.5, batch_size=16, tfidf_per_train_text=1e-4,
                  head_per_train_text=1e-4, seconds=1.0)


@pytest.mark.parametrize("text,seconds,device", [
    ("2 CPU hours", 7200, "cpu"), ("4 days on one GPU", 4 * 86400, "gpu"), ("90min", 5400, "cpu"),
    ("1.5h gpu", 5400, "gpu"), ("1 week", 604800, "cpu")])
def test_parse_budget(text, seconds, device):
    assert parse_budget(text) == (seconds, device)


@pytest.mark.parametrize("bad", ["soon", "0 hours", "2 parsecs"])
def test_bad_budget_names_the_field(bad):
    with pytest.raises(ConfigError, match="budget="):
        parse_budget(bad)


def test_costs_scale_with_data_and_speedup():
    small = estimate_costs(CAL, n_labeled=1000)
    big = estimate_costs(CAL, n_labeled=10_000)
    assert big["tfidf"][1] == pytest.approx(10 * small["tfidf"][1])
    assert big["probe"][0] == pytest.approx(10 * small["probe"][0])  # the one-time embedding pass
    assert big["finetune"][1] > 9 * small["finetune"][1]
    fast = estimate_costs(CAL, n_labeled=1000, speedup=25)
    assert fast["finetune"][1] == pytest.approx(small["finetune"][1] / 25)
    assert estimate_costs(CAL, n_labeled=1000, n_unlabeled=80_000)["refit"][1] > small["refit"][1]


def test_plan_fits_the_budget_and_says_what_is_skipped_and_why():
    costs = estimate_costs(CAL, n_labeled=5200, n_unlabeled=80_000)
    plan = make_plan(costs, 3600, device="cpu", rungs=["tfidf", "probe", "refit", "lora", "finetune"],
                     n_labels=5200, n_unlabeled=80_000)
    assert plan.total_seconds <= 3600
    assert plan.rungs[:3] == ["tfidf", "probe", "refit"]  # baselines, then the regime table's rung
    skipped = {i.rung: i.reason for i in plan.items if not i.included}
    assert skipped and all("left" in r for r in skipped.values())
    assert all(i.seeds >= 3 for i in plan.items if i.included)
    json.dumps(plan.to_dict())
    # with a huge budget everything runs, with extra seeds on the cheap rungs
    plan = make_plan(costs, 30 * 86400, device="gpu", n_labels=5200, n_unlabeled=80_000)
    assert all(i.included for i in plan.items) and plan.items[0].seeds == 5


def test_plan_skips_refit_without_unlabeled_and_network_rungs_with_few_labels():
    costs = estimate_costs(CAL, n_labeled=500)
    plan = make_plan(costs, 30 * 86400, device="cpu", n_labels=500, n_unlabeled=0)
    reasons = {i.rung: i.reason for i in plan.items if not i.included}
    assert "no unlabeled" in reasons["refit"] and "stay frozen" in reasons["finetune"]


def test_plan_study_with_a_real_calibration(tiny_encoder):
    ds = topic_corpus(120)
    plan = plan_study(ds.texts, ds.labels, "2 CPU hours", encoder=tiny_encoder, rungs=["tfidf", "probe", "refit"])
    cal = plan.calibration
    assert cal["encode_per_text"] > 0 and cal["train_step"] > 0
    assert {i.rung for i in plan.items} == {"tfidf", "probe", "refit"}
    assert "tfidf" in plan.rungs and "probe" in plan.rungs
    assert any("calibrated on cpu" in n for n in plan.notes)
    gpu = plan_study(ds.texts, ds.labels, "1 hour on one GPU", encoder=tiny_encoder, rungs=["tfidf", "probe"])
    assert any("assumed 25× faster" in n for n in gpu.notes)
