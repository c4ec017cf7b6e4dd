"""The decision engine on hand-made evidence: the clinic's table, ties, overlaps, thresholds, paired tests."""
import json

import numpy as np
import pytest

from adaptlab.decide import Evidence, Policy, decide, six_question_defense, transfer_note
from adaptlab.decide.stats import items_to_resolve, normal_band
from adaptlab.errors import ConfigError

CLINIC = dict(n_labels=5_200, n_unlabeled=80_000)


def clinic_first_pass(**extra):
    return Evidence.from_tables(
        {"probe": [0.77, 0.78, 0.79], "refit": [0.82], "finetune": [0.69, 0.73, 0.77]},
        fit_hours={"probe": 1.0, "refit": 36.0, "finetune": 4.0}, **{**CLINIC, **extra})


def test_clinic_first_pass_table():
    ev = clinic_first_pass()
    d = decide(ev)
    assert d.chosen == "probe" and not d.ship and d.status == "do-not-ship"
    assert d.verdict("refit") == "not enough seeds: run ≥ 3"
    assert any(f.rule == "decision.min-seeds" and f.rung == "refit" for f in d.flags)
    assert d.verdict("finetune").startswith("rejected: below the frozen probe (-0.050)")
    assert "overfitting" in d.verdict("finetune")
    # 0.78 < 0.80 and the refit's single run cannot count: nothing ships.
    assert any("Nothing meets the ship threshold" in r for r in d.reasons)
    # The cheapest next experiment: finish the refit's seeds (2 x 36 h), named with its cost.
    assert d.next_experiment.what.startswith("run 2 more seed(s) of refit")
    assert "72.0 h" in d.next_experiment.cost
    # The flip inspection is concrete: the refit's 3-seed mean against the frozen 0.78 ± 0.01 band.
    assert "refit with 3 seeds" in d.flip_inspection and "0.800" in d.flip_inspection
    assert "0.780 ± 0.010" in d.flip_inspection and "[0.769, 0.791]" in d.flip_inspection
    # The regime table (5.2k labels + 80k unlabeled) suggests refit; with one run it is a prior, not a verdict.
    assert d.regime["recommends"] == "refit" and not d.regime["agrees"]
    json.loads(d.to_json())


def test_clinic_expected_outcome_refit_wins_and_ships():
    ev = Evidence.from_tables({"probe": [0.77, 0.78, 0.79], "refit": [0.795, 0.81, 0.825],
                               "finetune": [0.69, 0.73, 0.77]}, **CLINIC)
    d = decide(ev)
    assert d.chosen == "refit" and d.ship and d.status == "ship"
    c = d.comparison("probe", "refit")
    assert c.diff == pytest.approx(0.03) and c.beats_by_margin and c.bands_overlap is False
    assert d.regime["agrees"]
    assert any('agrees with the rule "1,000 to 10,000 labels with 10,000+ unlabeled texts: refit the encoder '
               'on them"' in r for r in d.reasons)
    assert not any("Clinic" in r or "regime table" in r for r in d.reasons)
    assert "normal approximation over seeds only" in ev.rungs["probe"].band_method
    assert ev.notes and "optimistic" in ev.notes[0]


def test_tie_goes_to_the_simpler_rung():
    d = decide(Evidence.from_tables({"probe": [0.80, 0.81, 0.82], "refit": [0.80, 0.81, 0.82]}))
    assert d.chosen == "probe" and d.ship
    assert d.verdict("refit").startswith("tie with probe")


def test_gain_below_margin_keeps_the_simpler_rung():
    d = decide(Evidence.from_tables({"probe": [0.80, 0.81, 0.82], "lora": [0.81, 0.825, 0.84]}))
    assert d.chosen == "probe"
    assert "no gain of ≥ 0.02" in d.verdict("lora")


def test_overlapping_bands_block_a_margin_sized_gain():
    ev = Evidence.from_tables({"probe": [0.74, 0.80, 0.86], "refit": [0.78, 0.83, 0.88]})
    d = decide(ev)
    c = d.comparison("probe", "refit")
    assert c.diff >= 0.02 and c.bands_overlap is True and not c.beats_by_margin
    assert d.chosen == "probe" and "bands overlap" in d.verdict("refit")


def test_nothing_above_threshold_names_the_cheapest_next_experiment():
    ev = Evidence.from_tables({"tfidf": [0.60, 0.61, 0.62], "probe": [0.70, 0.71, 0.72]},
                              fit_hours={"probe": 0.01}, n_labels=5_200, n_unlabeled=80_000)
    d = decide(ev)
    assert d.chosen == "probe" and not d.ship
    assert any("Nothing meets the ship threshold" in r and "0.710" in r for r in d.reasons)
    # The regime table wants a refit that was never run: that is the next experiment.
    assert d.next_experiment.what == "run refit with 3 seeds"
    assert "probe reaches a 3-seed mean ≥ 0.80 (today 0.710)" in " ".join(d.flips)


def test_bigger_margin_policy_changes_the_decision():
    ev = Evidence.from_tables({"probe": [0.77, 0.78, 0.79], "refit": [0.805, 0.81, 0.815]})
    assert decide(ev).chosen == "refit"
    d = decide(ev, Policy(margin=0.05))
    assert d.chosen == "probe" and "0.05" in d.verdict("refit")
    assert decide(ev, Policy(ship_threshold=0.9)).ship is False


def test_climb_requires_beating_every_simpler_rung():
    ev = Evidence.from_tables({"probe": [0.70, 0.71, 0.72], "refit": [0.80, 0.81, 0.82], "lora": [0.81, 0.82, 0.83]})
    d = decide(ev)
    assert d.chosen == "refit"  # lora beats probe but not refit by the margin
    assert "refit" in d.verdict("lora")
    ev = Evidence.from_tables({"probe": [0.70, 0.71, 0.72], "refit": [0.75, 0.76, 0.77], "lora": [0.84, 0.85, 0.86]})
    assert decide(ev).chosen == "lora"


def test_scratch_baseline_winning_means_the_encoder_is_not_earning_its_keep():
    d = decide(Evidence.from_tables({"tfidf": [0.88, 0.89, 0.90], "probe": [0.80, 0.81, 0.82]}))
    assert d.chosen == "tfidf"
    assert any(f.rule == "decision.scratch" and "not earning its keep" in f.message for f in d.flags)
    # A tie with the scratch baseline: the simplest pipeline wins and the flag says why.
    d = decide(Evidence.from_tables({"tfidf": [0.81, 0.82, 0.83], "probe": [0.81, 0.82, 0.83]}))
    assert d.chosen == "tfidf" and "not earning its keep" in d.flags_for("decision.scratch")[0].message
    assert d.flip_inspection.startswith("if probe (today 0.820") and "scores above the scratch baseline's 0.820" \
        in d.flip_inspection
    # Below the adapted rung but within the margin: keep the encoder, flag it.
    d = decide(Evidence.from_tables({"tfidf": [0.80, 0.81, 0.82], "probe": [0.81, 0.82, 0.83]}))
    assert d.chosen == "probe" and "only +0.010 over the scratch baseline" in d.flags_for("decision.scratch")[0].message


def test_no_rung_with_enough_seeds_is_no_decision():
    d = decide(Evidence.from_tables({"probe": [0.8], "refit": [0.9, 0.91]}))
    assert d.chosen is None and d.status == "no-decision" and not d.ship
    assert all(r["verdict"] == "not enough seeds: run ≥ 3" for r in d.rungs)
    assert decide(Evidence.from_tables({"probe": [0.8]}), Policy(min_seeds=1)).chosen == "probe"


def test_unknown_and_partial_rung_sets_degrade_gracefully():
    d = decide(Evidence.from_tables({"finetune": [0.85, 0.86, 0.87], "mystery": [0.9, 0.91, 0.92]}))
    assert d.chosen in ("finetune", "mystery") and d.to_dict()["rungs"][0]["rung"] == "finetune"
    assert decide(Evidence.from_tables({"tfidf": [0.9, 0.91, 0.92]})).chosen == "tfidf"
    with pytest.raises(ConfigError):
        decide(Evidence(rungs={}))


def test_evidence_contradicting_the_regime_table_wins_and_says_so():
    # 5.2k labels + 80k unlabeled: the table says refit, but a 3-seed refit does not beat the probe.
    ev = Evidence.from_tables({"probe": [0.80, 0.81, 0.82], "refit": [0.80, 0.815, 0.83]}, **CLINIC)
    d = decide(ev)
    assert d.chosen == "probe" and d.regime["recommends"] == "refit" and d.regime.get("contradicted")
    assert any('contradicts the rule "1,000 to 10,000 labels' in r and "the evidence wins" in r for r in d.reasons)
    # < 1k labels: the table says freeze, but LoRA wins clearly on three seeds.
    ev = Evidence.from_tables({"probe": [0.70, 0.71, 0.72], "lora": [0.85, 0.86, 0.87]}, n_labels=800)
    d = decide(ev)
    assert d.chosen == "lora" and any("evidence wins" in r for r in d.reasons)


def test_mmd_near_zero_vetoes_the_refit_and_significant_mmd_keeps_it():
    tables = {"probe": [0.77, 0.78, 0.79], "refit": [0.80, 0.81, 0.82]}
    d = decide(Evidence.from_tables(tables, mmd=0.0004, mmd_p_value=0.41, **CLINIC))
    assert d.chosen == "probe" and d.verdict("refit") == "gap treated as noise: MMD ≈ 0"
    f = d.flags_for("switch.mmd-skip-refit")[0]
    assert "p = 0.410" in f.message and "skip the refit" in f.message
    assert decide(Evidence.from_tables(tables, mmd=0.05, mmd_p_value=0.001, **CLINIC)).chosen == "refit"


def test_slow_refit_warns_the_coordinator():
    tables = {"probe": [0.77, 0.78, 0.79], "refit": [0.80, 0.81, 0.82]}
    d = decide(Evidence.from_tables(tables, refit_hours=60.0, **CLINIC))
    f = d.flags_for("switch.refit-slow")[0]
    assert f.severity == "warn" and "60.0 h > 48 h" in f.message and "needs an engineer" in f.message
    assert "coordinator" not in f.message
    assert not decide(Evidence.from_tables(tables, refit_hours=36.0, **CLINIC)).flags_for("switch.refit-slow")


def test_rare_slice_rule_asks_for_labels_not_a_bigger_model():
    slices = [{"slice": "pediatric", "n": 30, "share": 0.05, "f1": 0.52, "error_share": 0.30},
              {"slice": "adult", "n": 570, "share": 0.95, "f1": 0.86, "error_share": 0.70}]
    d = decide(Evidence.from_tables({"probe": [0.81, 0.82, 0.83]}, slices=slices, overall_f1=0.84, slice_rung="probe"))
    f = d.flags_for("switch.rare-slice")[0]
    assert "pediatric" in f.message and "not a bigger model" in f.message and "0.520" in f.message
    assert d.next_experiment.what == "collect more labels on slice pediatric"


def test_rare_slice_rule_says_when_the_weak_slice_is_also_a_noisy_one():
    slices = [{"slice": "pediatric", "n": 30, "share": 0.05, "f1": 0.52, "error_share": 0.30,
               "labels": {"yes": 20, "no": 10}},
              {"slice": "adult", "n": 570, "share": 0.95, "f1": 0.86, "error_share": 0.70}]
    tables = {"probe": [0.81, 0.82, 0.83]}
    noisy = {"noise_rate": 0.06, "per_class": {"yes": {"noise_rate": 0.25}, "no": {"noise_rate": 0.01}}}
    d = decide(Evidence.from_tables(tables, slices=slices, overall_f1=0.84, slice_rung="probe", label_quality=noisy))
    f = d.flags_for("switch.rare-slice")[0]
    # 20 of its items are class yes (25% noise), 10 class no (1%): (20*0.25 + 10*0.01) / 30 = 17%.
    assert "But pediatric: it is also a noisy slice: an estimated 17% of its labels are wrong" in f.message
    assert "6.0% overall" in f.message and "not a bigger model" in f.message
    assert d.next_experiment.what == "check and fix the labels of slice pediatric, then collect more there"
    assert "also a noisy slice" in d.next_experiment.why
    # A slice named like a class takes that class's rate; clean labels (or no label check) add nothing.
    as_class = [dict(slices[0], slice="yes"), slices[1]]
    d = decide(Evidence.from_tables(tables, slices=as_class, overall_f1=0.84, slice_rung="probe", label_quality=noisy))
    assert "an estimated 25% of its labels are wrong (the estimated label noise of class yes" in \
        d.flags_for("switch.rare-slice")[0].message
    clean = {"noise_rate": 0.01, "per_class": {"yes": {"noise_rate": 0.02}, "no": {"noise_rate": 0.01}}}
    for lq in (clean, None):
        d = decide(Evidence.from_tables(tables, slices=slices, overall_f1=0.84, slice_rung="probe", label_quality=lq))
        assert "noisy" not in d.flags_for("switch.rare-slice")[0].message
        assert d.next_experiment.what == "collect more labels on slice pediatric"


def test_many_labels_suggest_lora():
    d = decide(Evidence.from_tables({"probe": [0.81, 0.82, 0.83]}, n_labels=20_000))
    assert d.flags_for("switch.labels-lora")[0].severity == "warn"
    assert d.next_experiment.what == "run lora with 3 seeds"


# -- paired comparisons on per-item predictions ---------------------------------------------------------
def _flip(y, idx):
    y = list(y)
    for i in idx:
        y[i] = "b" if y[i] == "a" else "a"
    return y


def paired_evidence(rep: int, band="seeds", positive_label=None):
    """probe and refit on the same 40*rep test items; refit fixes 4 of probe's errors and makes 2 new ones."""
    y = (["a"] * 20 + ["b"] * 20) * rep
    probe_wrong, refit_wrong = [0, 1, 2, 3, 20, 21, 22, 23], [0, 1, 20, 21, 5, 25]
    preds = {"probe": [], "refit": []}
    for s in range(3):
        extra = [30 + s]
        preds["probe"].append(_flip(y, [i + 40 * k for k in range(rep) for i in probe_wrong + extra]))
        preds["refit"].append(_flip(y, [i + 40 * k for k in range(rep) for i in refit_wrong + extra]))
    return Evidence.from_tables({"probe": None, "refit": None}, predictions=preds, y_true=y, band=band,
                                positive_label=positive_label)


def test_seed_bands_apart_but_paired_test_difference_not_significant():
    ev = paired_evidence(rep=1)
    d = decide(ev)
    c = d.comparison("probe", "refit")
    assert c.bands_overlap is False and c.diff >= 0.02  # seed-only bands are apart ...
    assert c.paired and c.significant is False and c.ci_low < 0 < c.ci_high  # ... the test set cannot tell
    assert d.chosen == "probe" and "paired test-set difference is not significant" in d.verdict("refit")
    assert c.more_items_needed and c.more_items_needed > 40
    assert "more labeled test items" in c.note
    assert d.next_experiment.what.startswith(f"label ~{c.more_items_needed} more test items")


def test_same_effect_on_a_larger_test_set_is_significant():
    d = decide(paired_evidence(rep=20))
    c = d.comparison("probe", "refit")
    assert c.significant and c.ci_low > 0 and d.chosen == "refit"


def test_paired_ci_is_narrower_than_the_unpaired_bands_and_binary_counts_positives():
    ev = paired_evidence(rep=5, band="auto", positive_label="a")
    assert "bootstrap" in ev.rungs["probe"].band_method
    d = decide(ev)
    c = d.comparison("probe", "refit")
    width_paired = c.ci_high - c.ci_low
    width_bands = (ev.rungs["probe"].ci_high - ev.rungs["probe"].ci_low)
    assert width_paired < 2 * width_bands
    assert c.significant is False and c.n_test_positive == 100
    # half the test items are positives, so about half the extra items are positives
    assert c.more_positives_needed == pytest.approx(c.more_items_needed / 2, abs=2)
    # the 1/sqrt(n) scaling is self-consistent: the total needed barely depends on today's test size
    c40 = decide(paired_evidence(rep=1)).comparison("probe", "refit")
    assert (c.more_items_needed + 200) == pytest.approx(c40.more_items_needed + 40, rel=0.25)


def test_identical_predictions_have_a_zero_difference():
    ev = paired_evidence(rep=2)
    ev.rungs["refit"].predictions = dict(ev.rungs["probe"].predictions)
    ev.rungs["refit"].f1_by_seed = list(ev.rungs["probe"].f1_by_seed)
    c = decide(ev).comparison("probe", "refit")
    assert c.diff == 0 and c.ci_low == 0 and c.ci_high == 0


def test_items_to_resolve_scales_with_the_squared_se():
    base = items_to_resolve(0.02, 0.0, 400, 0.02, 0.05, 0.8)
    assert items_to_resolve(0.04, 0.0, 400, 0.02, 0.05, 0.8) == pytest.approx(4 * base, rel=0.01)
    assert items_to_resolve(0.02, 0.01, 400, 0.02, 0.05, 0.8) is None  # seed noise alone too big
    lo, hi = normal_band([0.77, 0.78, 0.79])
    assert (round(lo, 4), round(hi, 4)) == (0.7687, 0.7913)
    assert np.isnan(normal_band([0.8])[0])


def test_decision_is_json_serialisable_with_every_part():
    d = decide(clinic_first_pass())
    data = json.loads(json.dumps(d.to_dict()))
    assert set(data) >= {"chosen", "status", "ship", "headline", "reasons", "comparisons", "flags",
                         "flip_inspection", "flips", "next_experiment", "rungs", "regime", "rules_fired", "policy"}
    assert data["policy"]["margin"] == 0.02 and data["chosen"] == "probe"


def test_transfer_note_and_defense_carry_the_numbers():
    ev = clinic_first_pass()
    d = decide(ev)
    note = transfer_note(d, ev)
    assert "whole pretrained encoder" in note.frozen and "head" in note.trainable
    assert "0.820" in note.why and "finetune 0.730" in note.negative_transfer
    assert "0.800" in note.unfreeze_more and "15,000" in note.unfreeze_more
    defense = six_question_defense(d, ev)
    assert len(defense.answers) == 6
    a = [x.answer for x in defense.answers]
    assert "probe" in a[0] and "0.780 ± 0.010" in a[0]
    assert a[1].startswith("No:") and "0.730" in a[1] and "5,200" in a[1]
    assert "refit" in a[2] and "+0.040" in a[2]
    assert "0.80" in a[3] and "MMD not measured yet" in a[3]
    assert "anyone can rerun it, no engineer needed" in a[4]
    assert "100,000" in a[5] and "5,200" in a[5]
    md = defense.to_markdown()
    assert md.count("\n") == 5
    # Every answer carries at least one number from the evidence or the policy.
    assert all(any(ch.isdigit() for ch in x) for x in a)


def test_defense_when_refit_wins_and_mmd_measured():
    ev = Evidence.from_tables({"probe": [0.77, 0.78, 0.79], "refit": [0.80, 0.81, 0.82]}, mmd=0.031,
                              mmd_p_value=0.002, refit_hours=36.0, **CLINIC)
    d = decide(ev)
    a = [x.answer for x in six_question_defense(d, ev).answers]
    assert d.chosen == "refit" and "Ship it" in a[0]
    assert "MMD 0.0310 with p = 0.002" in a[3] and "36.0 h" in a[3]
    assert "36.0 h (≤ 48 h)" in a[4]
    note = transfer_note(d, ev)
    assert "refit 0.810" in note.result_vs_simpler and "probe 0.780" in note.result_vs_simpler


def test_overfitting_diagnostics_back_up_a_below_frozen_rejection():
    ev = Evidence.from_tables({"probe": [0.77, 0.78, 0.79], "finetune": [0.69, 0.73, 0.77]}, n_labels=5_200)
    ev.rungs["finetune"].diagnostics = [{"seed": s, "overfitting": {"overfitting": s != 2}} for s in range(3)]
    d = decide(ev)
    assert "memorisation (train-validation gap) in 2 of 3 seed(s)" in d.verdict("finetune")


def test_store_diagnostics_shapes_are_read():
    from adaptlab.decide.evidence import find_mmd, refit_movement_mmd

    diag = {"refit_movement": [{"mmd": {"mmd2": 0.02, "p_value": 0.001}, "n_texts": 500},
                               {"mmd": {"mmd2": 0.0001, "p_value": 0.3}, "n_texts": 500}],
            "domain_shift": {"mmd": {"mmd2": 0.5, "p_value": 0.001}}}
    v, p, src = refit_movement_mmd(diag)
    assert (v, p) == (0.0001, 0.3) and "500 held-out texts" in src  # the least-moved refit speaks
    assert find_mmd({"x": {"mmd_p_value": 0.2, "mmd": 0.01}})[:2] == (0.01, 0.2)
    assert find_mmd({"nothing": 1}) == (None, None, "")


def test_flip_never_asks_for_an_f1_above_one():
    d = decide(Evidence.from_tables({"probe": [0.985, 0.99, 0.995], "lora": [0.99, 0.995, 1.0]}))
    assert d.chosen == "probe"
    assert "cannot beat probe" in d.flip_inspection and "≥ 1.0" not in d.flip_inspection


def test_the_encoder_choice_leads_the_reasons_and_is_kept_in_the_decision():
    ev = Evidence.from_tables({"tfidf": [0.70, 0.71, 0.72], "probe": [0.80, 0.81, 0.82]})
    ev.encoder_choice = {"chosen": "all-MiniLM-L6-v2", "runner_up": "all-mpnet-base-v2",
                         "reason": "all-MiniLM-L6-v2 is within the noise of all-mpnet-base-v2 and cheaper.",
                         "gap": {"diff": -0.0073, "ci_low": -0.0356, "ci_high": 0.0206},
                         "cost": {"chosen": {"texts_per_s": 20.0}}}
    d = decide(ev)
    assert d.reasons[0].startswith("Encoder: all-MiniLM-L6-v2 is within the noise")
    assert "[-0.0356, +0.0206]" in d.reasons[0] and "20.0 texts/s" in d.reasons[0]
    assert d.to_dict()["encoder_choice"]["runner_up"] == "all-mpnet-base-v2"
    assert decide(Evidence.from_tables({"probe": [0.8, 0.81, 0.82]})).encoder_choice is None


def test_the_scratch_flag_words_a_gap_beyond_the_margin_with_overlapping_bands_as_such():
    from adaptlab.decide.decision import decide
    from adaptlab.decide.evidence import Evidence

    # tfidf ahead of probe by 0.10 (beyond the 0.02 margin) but with wide, overlapping bands.
    d = decide(Evidence.from_tables({"tfidf": [0.95, 0.80, 0.85], "probe": [0.85, 0.70, 0.75]}))
    flag = next(f for f in d.flags if f.rule == "decision.scratch")
    assert d.chosen == "tfidf" and "bands overlapping" in flag.message and "within the" not in flag.message
