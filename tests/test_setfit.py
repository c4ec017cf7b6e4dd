"""The `setfit` rung (issue #16) on the tiny encoder: budget, movement, seeds, a study, shipping."""
import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from adaptlab.config import Budget, StudyConfig
from adaptlab.errors import ConfigError
from adaptlab.evaluate import Study
from adaptlab.rungs import RungContext, available_rungs, get_rung
from synthetic import topic_corpus

pytest.importorskip("setfit")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = ["money", "sport", "tech"]
# The tiny random encoder needs a large LR to move visibly in a few steps.
FAST = {"body_lr": 1e-3, "batch_size": 8, "C_grid": [0.1, 1.0, 10.0]}


@pytest.fixture(scope="module")
def corpus():
    ds = topic_corpus(120, seed=0)
    return ds.subset(range(80)), ds.subset(range(80, 120))


def ctx(encoder, **kw):
    return RungContext(classes=CLASSES, encoder=encoder, **kw)


def test_setfit_sits_between_refit_and_lora():
    names = available_rungs()
    assert names.index("refit") < names.index("setfit") < names.index("lora")
    rung = get_rung("setfit")
    assert rung.trains_network and rung.uses_encoder


def test_trains_exactly_the_step_budget_and_moves_the_body(tiny_encoder, corpus):
    train, val = corpus
    before = tiny_encoder.fingerprint
    fitted = get_rung("setfit", FAST).fit(train, val, seed=0, context=ctx(tiny_encoder, budget=Budget(steps=12)))
    diag = fitted.diagnostics_
    assert diag["budget"]["steps_used"] == 12 and diag["budget"]["declared"]["steps"] == 12
    assert diag["stopped_by"] == "budget_steps"
    assert diag["pairs"]["sampled"] == 12 * 8 and diag["budget"]["samples_seen"] == 12 * 8
    assert fitted.cost_.samples_seen == 96 and fitted.selected_["steps"] == 12
    assert diag["movement"]["overall"] > 0 and diag["movement_sentence"]
    assert diag["cka_pretrained_vs_tuned"] is not None and diag["cka_pretrained_vs_tuned"] < 1
    assert diag["overfitting"]["sentence"] and [h["step"] for h in diag["history"]] == [3, 6, 9, 12]
    assert len(diag["contrastive_loss"]) >= 1
    assert fitted.selected_["C"] in FAST["C_grid"]
    # The study's encoder is never modified; the tuned one is another encoder.
    assert tiny_encoder.fingerprint == before and fitted.encoder.fingerprint != before
    proba = fitted.predict_proba(val.texts)
    assert proba.shape == (40, 3) and np.allclose(proba.sum(1), 1)
    assert fitted.val_scores_["f1"] > 0.5


def test_seeds_are_reproducible_and_leave_the_caller_rng_alone(tiny_encoder, corpus):
    train, val = corpus
    c = ctx(tiny_encoder, budget=Budget(steps=6))
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(5)
    expect = (torch.rand(1).item(), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(5)
    a = get_rung("setfit", FAST).fit(train, val, seed=0, context=c)
    assert (torch.rand(1).item(), random.random(), np.random.rand()) == expect
    b = get_rung("setfit", FAST).fit(train, val, seed=0, context=c)
    other = get_rung("setfit", FAST).fit(train, val, seed=1, context=c)
    assert a.encoder.fingerprint == b.encoder.fingerprint
    assert np.array_equal(a.predict_proba(val.texts), b.predict_proba(val.texts))
    assert other.encoder.fingerprint != a.encoder.fingerprint


def test_wall_clock_budget_stops_training(tiny_encoder, corpus):
    train, val = corpus
    fitted = get_rung("setfit", {**FAST, "num_iterations": 20}).fit(
        train, val, seed=0, context=ctx(tiny_encoder, budget=Budget(seconds=1e-6)))
    diag = fitted.diagnostics_
    assert diag["stopped_by"] == "budget_seconds" and diag["budget"]["steps_used"] == 1
    assert diag["pairs"]["sampled"] == 20 * 2 * 80  # SetFit's sizing: num_iterations pairs per text and side


def test_max_length_truncates_training_and_prediction(tiny_encoder, corpus):
    train, val = corpus
    fitted = get_rung("setfit", {**FAST, "max_length": 8}).fit(train, val, seed=0,
                                                                 context=ctx(tiny_encoder, budget=Budget(steps=3)))
    assert fitted.encoder.max_seq_length == 8 and fitted.diagnostics_["max_length"] == 8
    assert tiny_encoder.max_seq_length == 64


@pytest.mark.parametrize("params, match", [
    ({"body_lr": 0}, r"setfit.body_lr=0 is not valid"),
    ({"batch_size": 1}, r"setfit.batch_size=1 is not valid"),
    ({"num_iterations": 0}, r"setfit.num_iterations=0 is not valid"),
    ({"sampling_strategy": "random"}, r"setfit.sampling_strategy='random' is not valid.*oversampling"),
    ({"C_grid": []}, r"setfit.C_grid=\[\] is not valid"),
    ({"max_length": 1}, r"setfit.max_length=1 is not valid"),
    ({"warmup_ratio": 1.0}, r"setfit.warmup_ratio=1.0 is not valid"),
    ({"budget": "soon"}, r"budget='soon' is not valid"),
    ({"num_pairs": 10}, r"unknown parameter\(s\) \['num_pairs'\] for rung setfit; allowed: .*body_lr"),
])
def test_bad_config_names_the_parameter(params, match):
    with pytest.raises(ConfigError, match=match):
        get_rung("setfit", params)


def test_needs_an_encoder_and_two_classes(tiny_encoder, corpus):
    train, val = corpus
    with pytest.raises(ConfigError, match="setfit rung needs an encoder"):
        get_rung("setfit").fit(train, val, seed=0, context=RungContext(classes=CLASSES))
    one = train.subset([i for i, y in enumerate(train.labels) if y == "sport"])
    with pytest.raises(ConfigError, match="at least 2 classes"):
        get_rung("setfit").fit(one, val, seed=0, context=ctx(tiny_encoder))


def test_study_refuses_a_rung_budget_unlike_the_study_budget(tiny_encoder, tmp_path):
    cfg = StudyConfig(rungs=["tfidf", "setfit"], seeds=1, n_boot=200, budget="24steps",
                      rung_params={"setfit": {"budget": "48steps"}})
    with pytest.raises(ConfigError, match=r"setfit.budget='48steps' differs from the study's budget \(24 steps\)"):
        Study(cfg, home=tmp_path, encoder=tiny_encoder)
    cfg.rung_params["setfit"]["allow_unequal_budgets"] = True
    Study(cfg, home=tmp_path, encoder=tiny_encoder)


def test_study_with_tfidf_probe_setfit_stores_results_and_reads_them_back(tiny_encoder, tmp_path):
    from adaptlab.store import RunStore

    data = topic_corpus(120, seed=1)
    cfg = StudyConfig(rungs=["tfidf", "probe", "setfit"], seeds=2, n_boot=200, budget="10steps",
                      rung_params={"setfit": dict(FAST)})
    res = Study(cfg, home=tmp_path, encoder=tiny_encoder).run(data)
    assert [r["rung"] for r in res.rows] == ["tfidf", "probe", "setfit"]
    results = [r for r in RunStore(tmp_path / "runs.sqlite").study_results(res.study_id) if r["rung"] == "setfit"]
    assert len(results) == 2
    for r in results:
        diag = r["metrics"]["diagnostics"]
        assert diag["budget"]["steps_used"] == 10 and diag["movement"]["overall"] > 0
        assert r["manifest"]["rung"]["budget"] == {"steps": 10, "seconds": None}
        assert r["manifest"]["rung"]["config"]["body_lr"] == FAST["body_lr"]
    again = Study(cfg, home=tmp_path, encoder=tiny_encoder).run(data)
    assert again.n_trained == 0 and again.n_from_store == 6
    # The config is part of the key: another learning rate is another result.
    cfg2 = StudyConfig(rungs=["setfit"], seeds=1, n_boot=200, budget="10steps",
                       rung_params={"setfit": {**FAST, "body_lr": 5e-4}})
    assert Study(cfg2, home=tmp_path, encoder=tiny_encoder).run(data).n_trained == 1


# ------------------------------------------------------------------------------------------ shipping
def test_pipeline_ships_setfit_pickle_free_and_reloads_bit_identical(tmp_path, tiny_encoder_dir):
    from adaptlab.ship import Pipeline, load_pipeline, read_manifest
    from adaptlab.ship.retrain import retrain_pipeline

    ds = topic_corpus(90, seed=3)
    X, y = ds.texts, np.asarray(ds.labels, dtype=object)
    pipe = Pipeline(rung="setfit", encoder=str(tiny_encoder_dir), device="cpu", rung_params=dict(FAST),
                    budget="8steps", home=tmp_path / "home").fit(X, y)
    folder = pipe.save(tmp_path / "model")
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".joblib", ".bin", ".pt", ".pth")]
    assert any(p.name == "model.safetensors" for p in files)  # the tuned body
    state = read_manifest(folder)["state"]
    assert state["kind"] == "frozen" and state["encoder"]["stored"]
    assert state["encoder"]["fingerprint"] == pipe.fitted_.encoder.fingerprint
    assert state["base_encoder"]["provenance_only"]
    assert "SetFit" in (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    back = load_pipeline(folder)
    assert back.rung == "setfit" and back.fitted_.rung == "setfit"
    assert np.array_equal(back.predict_proba(X), pipe.predict_proba(X))
    assert back.embedding_fingerprint_ == pipe.embedding_fingerprint_
    # A fresh process gives the same bits.
    (tmp_path / "texts.json").write_text(json.dumps(X))
    code = ("import json,sys,numpy as np,torch; torch.set_num_threads(1); from adaptlab.ship import load_pipeline;"
            "np.save(sys.argv[3], load_pipeline(sys.argv[1]).predict_proba(json.load(open(sys.argv[2]))))")
    subprocess.run([sys.executable, "-c", code, str(folder), str(tmp_path / "texts.json"),
                    str(tmp_path / "p.npy")], check=True)
    assert np.array_equal(np.load(tmp_path / "p.npy"), pipe.predict_proba(X))
    # The retrain trains it the same way: same rung, settings, budget and seed, from the base encoder.
    again = retrain_pipeline(back)
    assert again.rung == "setfit" and again.budget == "8steps" and again.rung_params == pipe.rung_params
    again.set_params(encoder=str(tiny_encoder_dir)).fit(X, y)
    assert again.fitted_.encoder.fingerprint == pipe.fitted_.encoder.fingerprint
    assert np.array_equal(again.predict_proba(X), pipe.predict_proba(X))


# ------------------------------------------------------------------------------------------ policy
def test_policy_suggests_setfit_below_its_label_threshold_and_is_overridable():
    from adaptlab.decide.policy import LABEL_TRAINED_ENCODER, LADDER, Facts, Policy, evaluate_rules, rung_info

    assert LADDER.index("refit") < LADDER.index("setfit") < LADDER.index("lora")
    assert "setfit" in LABEL_TRAINED_ENCODER and rung_info("setfit")["short"] == "SetFit"

    def fired(p, **kw):
        return {r.id for r, _ in evaluate_rules(p, Facts(**kw))}

    assert "switch.setfit-few-labels" in fired(Policy(), n_labels=600, rungs_run=("tfidf", "probe"))
    assert "switch.setfit-few-labels" not in fired(Policy(), n_labels=600, rungs_run=("probe", "setfit"))
    assert "switch.setfit-few-labels" not in fired(Policy(), n_labels=5_200)
    assert "switch.setfit-few-labels" in fired(Policy(setfit_max_labels=10_000), n_labels=5_200)
    rule = Policy(setfit_max_labels=2_000).rule("switch.setfit-few-labels")
    assert "2,000" in rule.condition and rule.recommends == "setfit"


def test_study_file_lists_setfit_parameters_with_help():
    from adaptlab.studyfile import rung_parameters

    params = {p["name"]: p for p in rung_parameters("setfit")}
    assert {"body_lr", "batch_size", "num_iterations", "C_grid", "budget"} <= set(params)
    assert params["body_lr"]["help"]


def test_an_in_memory_encoder_trains_like_the_same_encoder_read_from_its_folder(tiny_encoder, corpus):
    from adaptlab.encoders import Encoder

    train, val = corpus
    # Loaded from its folder, the body is read from there (weights copied in); in memory, it is written out.
    twin = Encoder.from_model(tiny_encoder.model, tiny_encoder.tokenizer, name="tiny", pooling=tiny_encoder.pooling,
                              normalize=tiny_encoder.normalize, max_seq_length=tiny_encoder.max_seq_length)
    assert twin.path is None and twin.fingerprint == tiny_encoder.fingerprint
    c = {"budget": Budget(steps=4)}
    a = get_rung("setfit", FAST).fit(train, val, seed=0, context=ctx(tiny_encoder, **c))
    b = get_rung("setfit", FAST).fit(train, val, seed=0, context=ctx(twin, **c))
    assert a.encoder.fingerprint == b.encoder.fingerprint


def _scripted_val_f1(monkeypatch, values):
    """Make the checkpoint evaluations report ``values`` as validation F1, in order (the real head still fits)."""
    import adaptlab.rungs.setfit as mod

    real, calls = mod.select_logistic_head, []

    def scripted(*args, **kw):
        head, C, val = real(*args, **kw)
        calls.append(1)
        if len(calls) <= len(values):
            val = {**val, "f1": values[len(calls) - 1]}
        return head, C, val

    monkeypatch.setattr(mod, "select_logistic_head", scripted)


def test_checkpoints_keep_the_best_body_and_show_overfitting(tiny_encoder, corpus, monkeypatch):
    train, val = corpus
    c = ctx(tiny_encoder, budget=Budget(steps=12))
    with monkeypatch.context() as m:
        _scripted_val_f1(m, [0.6, 0.7, 0.8, 0.9])
        last = get_rung("setfit", FAST).fit(train, val, seed=0, context=c)
    assert last.selected_["best_step"] == 12 and not last.diagnostics_["overfitting"]["val_fell_after_peak"]
    _scripted_val_f1(monkeypatch, [0.9, 0.8, 0.7, 0.6])
    early = get_rung("setfit", FAST).fit(train, val, seed=0, context=c)
    diag = early.diagnostics_
    assert early.selected_["best_step"] == 3 and diag["best_step"] == 3
    assert [h["val_f1"] for h in diag["history"]] == [0.9, 0.8, 0.7, 0.6]
    sig = diag["overfitting"]
    assert sig["best_epoch"] == 1 and sig["val_fell_after_peak"] and sig["val_drop_after_peak"] == 0.3
    # The returned body is the step-3 checkpoint, not the last one.
    assert early.encoder.fingerprint != last.encoder.fingerprint
    # Training the same 12 steps with one evaluation keeps the last body: the same as the unscripted run.
    one = get_rung("setfit", {**FAST, "eval_points": 1}).fit(train, val, seed=0, context=c)
    assert len(one.diagnostics_["history"]) == 1 and one.encoder.fingerprint == last.encoder.fingerprint
    # eval_points=0 is SetFit's own flow: no checkpoints, one evaluation of the final body on all texts.
    none = get_rung("setfit", {**FAST, "eval_points": 0}).fit(train, val, seed=0, context=c)
    (h,) = none.diagnostics_["history"]
    assert none.encoder.fingerprint == last.encoder.fingerprint and h["val_f1"] == round(none.val_scores_["f1"], 6)


def test_checkpoint_settings_are_checked():
    with pytest.raises(ConfigError, match="eval_points"):
        get_rung("setfit", {"eval_points": -1})
    with pytest.raises(ConfigError, match="eval_max_texts"):
        get_rung("setfit", {"eval_max_texts": 1})


def test_max_pairs_is_a_pairs_budget(tiny_encoder, corpus):
    train, val = corpus
    fitted = get_rung("setfit", {**FAST, "max_pairs": 40, "eval_points": 1}).fit(
        train, val, seed=0, context=ctx(tiny_encoder))
    diag = fitted.diagnostics_
    assert diag["budget"]["steps_used"] == 5 and diag["stopped_by"] == "max_pairs"  # ceil(40 / 8)
    assert diag["pairs"]["seen"] == 40 and "max_pairs=40" in diag["pairs"]["sampling"]
    # The study's step budget replaces it (equal accounting with the other network rungs).
    capped = get_rung("setfit", {**FAST, "max_pairs": 40, "eval_points": 1}).fit(
        train, val, seed=0, context=ctx(tiny_encoder, budget=Budget(steps=3)))
    assert capped.diagnostics_["budget"]["steps_used"] == 3 and capped.diagnostics_["stopped_by"] == "budget_steps"
    with pytest.raises(ConfigError, match="max_pairs"):
        get_rung("setfit", {"max_pairs": 4, "batch_size": 8})


def test_pair_count_matches_setfits_own_dataset():
    from setfit.sampler import ContrastiveDataset

    from adaptlab.rungs.setfit import setfit_pair_count

    labels = [0] * 7 + [1] * 4 + [2] * 9
    texts = [f"t{i}" for i in range(len(labels))]
    for strategy in ("oversampling", "undersampling", "unique"):
        ds = ContrastiveDataset(texts, labels, False, sampling_strategy=strategy)
        assert setfit_pair_count([7, 4, 9], sampling_strategy=strategy) == len(ds)
    assert setfit_pair_count([7, 4, 9], num_iterations=3) == len(ContrastiveDataset(texts, labels, False, num_iterations=3))
