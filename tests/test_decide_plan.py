"""The planner: budget parsing, cost scaling, the screen-first fit with reasons, measured costs from the run
store, and a real calibration on the tiny encoder."""
import json
import math

import pytest

from adaptlab.decide.plan import (Calibration, estimate_costs, estimate_rung_costs, make_plan, measured_costs,
                                  parse_budget, parse_train_budget, plan_study)
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
    # the MLM refit is a one-time cost: more unlabeled texts make it longer, not the seeds
    more = estimate_costs(CAL, n_labeled=1000, n_unlabeled=80_000)["refit"]
    assert more[0] > small["refit"][0] and more[1] == pytest.approx(small["refit"][1])


def test_plan_fits_the_budget_and_says_what_is_skipped_and_why():
    costs = estimate_costs(CAL, n_labeled=5200, n_unlabeled=80_000)
    plan = make_plan(costs, 3600, device="cpu", rungs=["tfidf", "probe", "refit", "lora", "finetune"],
                     n_labels=5200, n_unlabeled=80_000)
    assert plan.total_seconds <= 3600
    assert plan.rungs == ["tfidf", "probe", "refit", "lora", "finetune"]
    items = {i.rung: i for i in plan.items}
    # Until issue #15 the network rungs were skipped here ("more than the ... left") and the refit paid its
    # MLM once a seed; now they are screened at a quarter of their steps and the refit is shared.
    assert all(items[r].fidelity == 0.25 and items[r].full_seeds == 0 for r in ("lora", "finetune"))
    assert all("not promoted" in items[r].reason for r in ("lora", "finetune"))
    assert items["refit"].full_seeds == 5 and items["tfidf"].seeds == 5
    json.dumps(plan.to_dict())
    # with a huge budget everything runs, with extra seeds on the cheap rungs
    plan = make_plan(costs, 30 * 86400, device="gpu", n_labels=5200, n_unlabeled=80_000)
    assert all(i.included for i in plan.items) and plan.items[0].seeds == 5


def test_plan_skips_refit_without_unlabeled_and_network_rungs_with_few_labels():
    costs = estimate_costs(CAL, n_labeled=500)
    plan = make_plan(costs, 30 * 86400, device="cpu", n_labels=500, n_unlabeled=0)
    reasons = {i.rung: i.reason for i in plan.items if not i.included}
    assert "no unlabeled" in reasons["refit"] and "keep the encoder frozen" in reasons["finetune"]


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


def test_a_shared_refit_is_costed_once_and_a_seed_pays_a_head():
    costs = estimate_rung_costs(CAL, n_labeled=5200, n_unlabeled=20_000)
    refit = costs["refit"]
    n_train = 5200 * 0.8 * 0.8
    assert refit.kind == "shared" and refit.steps == math.ceil((20_000 + 5200 * 0.8) / 32)
    assert refit.one_time >= refit.steps * refit.step_seconds  # the MLM refit is in the one-time cost
    assert refit.per_seed == pytest.approx(CAL.head_per_train_text * n_train)  # a head, nothing repeated
    totals = {}
    for seeds in (1, 5):
        plan = make_plan(costs, 30 * 86400, device="cpu", rungs=["refit"], n_labels=5200, n_unlabeled=20_000,
                         max_seeds=seeds)
        (item,) = plan.items
        assert item.full_seeds == seeds and item.one_time_seconds == pytest.approx(refit.one_time)
        totals[seeds] = item.total_seconds
    assert totals[5] < 2 * totals[1]
    assert totals[5] == pytest.approx(totals[1] + 4 * refit.per_seed)


def test_network_rungs_cost_the_steps_they_take():
    budgeted = estimate_rung_costs(CAL, n_labeled=5200, train_budget="520steps")["finetune"]
    assert budgeted.steps == 520 and budgeted.per_seed == pytest.approx(budgeted.fixed + 520 * budgeted.step_seconds)
    free = estimate_rung_costs(CAL, n_labeled=5200)["finetune"]
    spe = math.ceil(5200 * 0.8 * 0.8 / 16)
    assert free.steps == 10 * spe  # max_epochs: the upper bound, and said so
    assert "max_epochs upper bound" in free.basis and "expected" in free.basis
    assert free.expected_steps == 6 * spe and free.expected_per_seed < free.per_seed / 1.6  # epoch 3 + patience 3
    assert estimate_rung_costs(CAL, n_labeled=5200, train_budget="10min")["finetune"].steps < free.steps
    assert "capped by max_epochs" in estimate_rung_costs(CAL, n_labeled=5200, train_budget="2h")["finetune"].basis
    # the study's step budget also bounds the refit (RefitConfig.budget None: the study's --budget)
    assert estimate_rung_costs(CAL, n_labeled=5200, n_unlabeled=20_000, train_budget="520steps")["refit"].steps == 520
    with pytest.raises(ConfigError, match="--train-budget='soon'"):
        parse_train_budget("soon")


def test_every_rung_that_fits_is_screened_before_any_rung_gets_a_second_seed():
    costs = estimate_rung_costs(CAL, n_labeled=5200, n_unlabeled=20_000)
    upper = ["refit", "setfit", "lora", "unfreeze", "finetune", "lpft"]
    cheap = sum(costs[r].one_time + 5 * costs[r].per_seed for r in ("tfidf", "probe"))
    screens = sum(costs[r].one_time + costs[r].run_seconds(0.25) for r in upper)
    budget = cheap + screens + 0.5 * min(costs[r].per_seed for r in upper[1:])
    assert budget < sum(c.one_time + 3 * c.per_seed for c in costs.values())  # 3 seeds of everything do not fit
    plan = make_plan(costs, budget, device="cpu", n_labels=5200, n_unlabeled=20_000)
    items = {i.rung: i for i in plan.items}
    assert plan.rungs == list(items) and plan.total_seconds <= budget
    for r in upper[1:]:
        it = items[r]
        assert it.seeds == 1 and it.full_seeds == 0 and it.fidelity == 0.25
        assert it.screen_steps == math.ceil(0.25 * costs[r].steps) and "screen: 1 run at 25%" in it.reason
        assert it.total_seconds == pytest.approx(costs[r].run_seconds(0.25))
    assert items["refit"].full_seeds >= 1 and "shared refit" in items["refit"].reason
    assert items["tfidf"].seeds == items["probe"].seeds == 5  # cheap: all their seeds first
    # a smaller budget screens what fits and says why the rest is left out
    small = make_plan(costs, cheap + costs["refit"].one_time + costs["refit"].per_seed + 1, device="cpu",
                      n_labels=5200, n_unlabeled=20_000)
    left_out = [i for i in small.items if not i.included]
    assert left_out and all("one screening run at 25%" in i.reason for i in left_out)
    with pytest.raises(ConfigError, match="--screen-fidelity=0"):
        make_plan(costs, budget, device="cpu", screen_fidelity=0)


def test_plan_commands_run_the_full_seeds_then_the_screens():
    costs = estimate_rung_costs(CAL, n_labeled=5200, n_unlabeled=20_000, train_budget="520steps")
    plan = make_plan(costs, 3 * 3600, device="cpu", rungs=["tfidf", "refit", "lora"], n_labels=5200,
                     n_unlabeled=20_000, train_budget="520steps")
    assert plan.commands("d.csv", "u.csv") == [
        "adaptlab study run --data d.csv --rungs tfidf,refit,lora --seeds 5 --budget 520steps --unlabeled u.csv",
        "adaptlab study run --data d.csv --rungs lora --seeds 1 --budget 130steps"]
    assert plan.time_command("d.csv", "u.csv") == ("adaptlab study run --data d.csv --rungs tfidf,refit,lora --seeds 5 "
                                                   "--time 3h --budget 520steps --unlabeled u.csv")
    # Without unlabeled texts there is no refit to run.
    assert plan.time_command("d.csv") == ("adaptlab study run --data d.csv --rungs tfidf,lora --seeds 5 --time 3h "
                                          "--budget 520steps")


def test_measured_costs_from_the_run_store_replace_the_calibration(tmp_path, tiny_encoder):
    from adaptlab.config import StudyConfig
    from adaptlab.evaluate import Study
    from adaptlab.store import RunStore

    ds = topic_corpus(120)
    Study(StudyConfig(rungs=["tfidf"], seeds=2), home=tmp_path, encoder=tiny_encoder).run(ds)
    store = RunStore(tmp_path / "runs.sqlite")
    same, double = (measured_costs(store, n_labeled=n)["tfidf"] for n in (120, 240))
    assert same.runs == 2 and double.per_seed == pytest.approx(2 * same.per_seed)  # scaled to the labeled pool
    plan = plan_study(ds.texts, ds.labels, "1 hour", encoder=tiny_encoder, rungs=["tfidf", "probe"], home=tmp_path)
    items = {i.rung: i for i in plan.items}
    assert items["tfidf"].cost_source == "measured (2 runs)" and items["probe"].cost_source == "calibrated"
    assert items["tfidf"].seconds_per_seed == pytest.approx(same.per_seed)
    assert any("costs from the run store: tfidf measured (2 runs)" in n for n in plan.notes)
    # without a store (or with an empty home) everything is calibrated, and no store is created
    bare = plan_study(ds.texts, ds.labels, "1 hour", encoder=tiny_encoder, rungs=["tfidf"], home=tmp_path / "none")
    assert bare.items[0].cost_source == "calibrated" and not (tmp_path / "none").exists()


def test_a_tight_budget_gives_every_cheap_rung_a_seed_before_a_second():
    costs = {"tfidf": (0.0, 1.0), "probe": (2.0, 1.0)}
    plan = make_plan(costs, 5.5, device="cpu", n_labels=5000)
    assert [(i.rung, i.seeds) for i in plan.items] == [("tfidf", 2), ("probe", 1)]
    assert "(of 5: no more fit)" in plan.items[0].reason


class _FakeStore:
    """The three RunStore reads measured_costs makes, holding results shaped like a real study's."""

    def __init__(self, results, n_train_pool):
        self.results, self.summary = results, {"n_train_pool": n_train_pool}

    def list_studies(self):
        return [{"study_id": "s1"}, {"study_id": "s2"}]

    def get_study(self, study_id):
        return {"summary": self.summary}

    def study_results(self, study_id):
        return self.results  # both studies link the same results: each is counted once


def _result(key, rung, fit, diagnostics, encoder="fp"):
    return {"result_key": key, "rung": rung, "manifest": {"rung": {"encoder": encoder}},
            "metrics": {"cost": {"fit_seconds": fit, "total_seconds": fit}, "diagnostics": diagnostics}}


def test_measured_refit_and_network_costs_use_their_step_timings():
    first = {"reused": False, "wall_seconds": 100.0, "steps": 50}
    store = _FakeStore([
        _result("r0", "refit", 101.0, first), _result("r1", "refit", 1.0, {"reused": True}),
        _result("f0", "finetune", 40.0, {"budget": {"steps_used": 100, "seconds_used": 30.0, "declared": None},
                                          "stopped_by": "early_stopping", "device": "cpu",
                                          "stages": [{"epochs": 3}]}),
        _result("f1", "finetune", 40.0, {"budget": {"steps_used": 100, "seconds_used": 30.0}, "device": "cuda:0"}),
        _result("p0", "probe", 9.0, {}, encoder="another encoder"),
    ], n_train_pool=500)
    m = measured_costs(store, n_labeled=1250, encoder_fingerprint="fp", device="cpu")
    assert set(m) == {"refit", "finetune"}  # another encoder's probe is not this one's cost
    assert m["refit"].runs == 2 and m["refit"].step_seconds == pytest.approx(2.0)
    assert m["refit"].per_seed == pytest.approx(2.0)  # a head a seed (1 s), scaled from a pool of 500 to 1000
    assert m["finetune"].runs == 1 and m["finetune"].step_seconds == pytest.approx(0.3)  # the GPU run left out
    costs = estimate_rung_costs(CAL, n_labeled=1250, n_unlabeled=10_000, train_budget="200steps", measured=m)
    assert costs["refit"].one_time == pytest.approx(200 * 2.0 + 1250 * CAL.encode_per_text)
    assert costs["finetune"].per_seed == pytest.approx(costs["finetune"].fixed + 200 * 0.3)
    assert costs["finetune"].source == "measured (1 run)" and costs["lora"].source == "calibrated"
    free = estimate_rung_costs(CAL, n_labeled=1250, measured=m)["finetune"]
    assert free.expected_steps == 3 * math.ceil(1000 * 0.8 / 16) and "stopped early after 3 epochs" in free.basis


def test_the_regime_table_is_only_the_allocators_prior():
    from adaptlab.decide.plan import regime_priors
    from adaptlab.decide.policy import Policy

    priors, why = regime_priors(Policy(), n_labels=5200, n_unlabeled=80_000, rungs=["lora", "refit", "finetune"])
    rule = Policy().regime(5200, 80_000)
    assert priors == {rule.recommends: 0.01} and rule.recommends in why and "+0.010" in why
    # The table's rung is not in the study (or is a cheap rung): no prior at all, not a made-up one.
    assert regime_priors(Policy(), n_labels=5200, n_unlabeled=80_000, rungs=["lora"]) == ({}, None)
    assert regime_priors(Policy(), n_labels=300, n_unlabeled=0, rungs=["lora", "finetune"]) == ({}, None)


def test_setfit_is_a_network_rung_the_few_labels_regime_does_not_skip():
    costs = estimate_rung_costs(CAL, n_labeled=400, train_budget="100steps")
    assert costs["setfit"].kind == "network" and costs["setfit"].steps == 100
    # A step is batch_size pairs: about twice the texts of a finetune step.
    assert costs["setfit"].step_seconds > 1.5 * costs["finetune"].step_seconds
    plan = make_plan(costs, 3600 * 24, device="cpu", rungs=["tfidf", "probe", "setfit", "finetune"], n_labels=400)
    items = {i.rung: i for i in plan.items}
    assert items["setfit"].included and not items["finetune"].included
    assert "too little signal" in items["finetune"].reason


def test_setfit_without_a_step_budget_is_costed_by_setfits_own_pair_sizing():
    from adaptlab.rungs.setfit import setfit_pair_count

    # 400 labeled -> 256 training texts (test 20%, then val 20%); 4 balanced classes of 64.
    costs = estimate_rung_costs(CAL, n_labeled=400, n_classes=4)
    pairs = setfit_pair_count([64] * 4)
    c = costs["setfit"]
    assert c.steps == c.expected_steps == -(-pairs // 16)  # one epoch, no early stopping
    assert f"{pairs:,} pairs" in c.basis and "oversampling" in c.basis
    # Quadratic in the texts: ten times the labels cost about a hundred times the steps.
    big = estimate_rung_costs(CAL, n_labeled=4000, n_classes=4)["setfit"]
    assert 80 < big.steps / c.steps < 120 and "--budget 500steps" in big.basis
    # A wall-clock budget caps the sizing; a step budget replaces it as for the other network rungs.
    timed = estimate_rung_costs(CAL, n_labeled=4000, n_classes=4, train_budget="10min")["setfit"]
    assert timed.steps < big.steps and "(--train-budget)" in timed.basis
    assert estimate_rung_costs(CAL, n_labeled=4000, train_budget="300steps")["setfit"].steps == 300


def test_the_time_command_leaves_rungs_out_when_they_are_the_default_ladder():
    from adaptlab.decide.plan import Plan
    from adaptlab.rungs.ladder import default_rungs

    ladder = default_rungs(timed=True, unlabeled=True)
    plan = Plan(2400.0, "cpu", {}, [], max_seeds=5, eligible=ladder)
    assert plan.time_command("d.csv", unlabeled="u.csv") == "adaptlab study run --data d.csv --seeds 5 --time 40min --unlabeled u.csv"
    # Without unlabeled texts the default ladder has no refit: the same plan names nothing either.
    assert "--rungs" not in plan.time_command("d.csv")
    # A plan that left a rung out (few labels, say) names the rungs it kept.
    few = Plan(2400.0, "cpu", {}, [], max_seeds=5, eligible=["tfidf", "probe", "setfit"])
    assert "--rungs tfidf,probe,setfit" in few.time_command("d.csv")
