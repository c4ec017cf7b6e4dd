"""The shared training loop (adaptlab.rungs.training): optimizer groups, batching, early stopping,
budgets, checkpoint/resume, determinism. Tiny random encoder, ~60 texts, a few dozen steps."""
import json

import numpy as np
import pytest
import torch

from adaptlab.config import Budget
from adaptlab.errors import ConfigError
from adaptlab.rungs import RungContext, get_rung
from adaptlab.rungs.training import (
    Stage,
    TextClassifier,
    Trainer,
    TrainingConfig,
    TrainingInterrupted,
    epoch_batches,
    param_unit,
)
from synthetic import topic_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"head_lr": 1e-2, "backbone_lr": 3e-3, "batch_size": 8, "max_epochs": 6}



@pytest.fixture
def data():
    ds = topic_corpus(90, seed=0)
    return ds.subset(range(60)), ds.subset(range(60, 90))


def ctx(encoder, **kw):
    return RungContext(classes=["money", "sport", "tech"], encoder=encoder, **kw)


def history_numbers(fitted):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in fitted.diagnostics_["history"]]


def test_param_groups_carry_head_lr_backbone_lr_and_layer_decay(tiny_encoder):
    model = TextClassifier(tiny_encoder.model, tiny_encoder.pool, tiny_encoder.dim, 3)
    cfg = TrainingConfig(head_lr=1e-2, backbone_lr=1e-3, layer_decay=0.5, weight_decay=0.05)
    trainer = Trainer(model, config=cfg, classes=["a", "b", "c"], seed=0)
    groups = trainer.param_groups(Stage("all", lambda n, u: True, 1, 1))
    opt = torch.optim.AdamW(groups)
    lr = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lr["head"] == 1e-2 and lr["head/no_decay"] == 1e-2
    assert lr["layer.1"] == pytest.approx(1e-3)  # top block (tiny model has 2)
    assert lr["layer.0"] == pytest.approx(5e-4)
    assert lr["embeddings"] == pytest.approx(2.5e-4)
    wd = {g["name"]: g["weight_decay"] for g in opt.param_groups}
    assert wd["layer.0"] == 0.05 and wd["layer.0/no_decay"] == 0.0  # no decay on biases / LayerNorm
    # Every parameter is in exactly one group, and in the group of its own unit.
    seen = [p for g in opt.param_groups for p in g["params"]]
    assert len(seen) == len({id(p) for p in seen}) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    for g in opt.param_groups:
        assert all(param_unit(names[id(p)]) == g["unit"] for p in g["params"])


def test_frozen_units_get_no_group_and_no_grad(tiny_encoder):
    model = TextClassifier(tiny_encoder.model, tiny_encoder.pool, tiny_encoder.dim, 3)
    trainer = Trainer(model, config=TrainingConfig(), classes=["a", "b", "c"], seed=0)
    groups = trainer.param_groups(Stage("top", lambda n, u: u in ("head", "layer.1"), 1, 1))
    assert {g["unit"] for g in groups} == {"head", "layer.1"}
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(param_unit(n) in ("embeddings", "layer.0", "other") for n in frozen)


def test_optimizer_is_fused_adamw_where_torch_has_the_kernel(tiny_encoder):
    from adaptlab.rungs.training import make_adamw

    model = TextClassifier(tiny_encoder.model, tiny_encoder.pool, tiny_encoder.dim, 3)
    groups = Trainer(model, config=TrainingConfig(), classes=["a", "b", "c"], seed=0).param_groups(
        Stage("all", lambda n, u: True, 1, 1))
    assert make_adamw(groups, lr=1e-3).defaults["fused"] is True  # CPU float32
    slow = [{"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))], "lr": 1e-3}]
    opt = make_adamw(slow, lr=1e-3)
    assert not opt.defaults["fused"] and opt.defaults["foreach"] is False


def test_best_evaluation_is_reused_not_repeated(tiny_encoder, data, monkeypatch):
    tr, va = data
    calls = []
    real = Trainer.evaluate

    def counting(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(Trainer, "evaluate", counting)
    fitted = get_rung("finetune", {**FAST, "max_epochs": 3, "patience": 10}).fit(tr, va, seed=0,
                                                                                context=ctx(tiny_encoder))
    # One validation pass per epoch and none after: the restored best checkpoint's scores are the ones
    # its evaluation computed.
    assert len(calls) == len(fitted.diagnostics_["history"]) == 3
    from adaptlab.metrics import score

    again = score(va.labels, fitted.predict(va.texts), fitted.predict_proba(va.texts), ["money", "sport", "tech"], None)
    assert fitted.val_scores_ == pytest.approx(again)


def test_rung_records_the_groups_it_trained_with(tiny_encoder, data):
    tr, va = data
    fitted = get_rung("unfreeze", {**FAST, "top_k": 2, "train_embeddings": True, "layer_decay": 0.5,
                                   "max_epochs": 1}).fit(tr, va, seed=0, context=ctx(tiny_encoder))
    groups = {g["name"]: g["lr"] for g in fitted.diagnostics_["param_groups"][0]["groups"]}
    assert groups["head"] == 1e-2
    assert groups["layer.1"] == pytest.approx(3e-3) and groups["layer.0"] == pytest.approx(1.5e-3)
    assert groups["embeddings"] == pytest.approx(7.5e-4)
    json.dumps(fitted.diagnostics_)  # JSON-safe, as the run store needs


def test_batches_are_seeded_length_bucketed_and_cover_every_text():
    lengths = np.random.default_rng(0).integers(3, 60, size=203)
    a = epoch_batches(lengths, 16, seed=1, stage=0, epoch=0)
    b = epoch_batches(lengths, 16, seed=1, stage=0, epoch=0)
    c = epoch_batches(lengths, 16, seed=1, stage=0, epoch=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    flat = np.concatenate(a)
    assert sorted(flat.tolist()) == list(range(203))
    # Length bucketing: padding waste is far below that of random batches.
    def waste(batches):
        return sum(int(lengths[x].max() * len(x) - lengths[x].sum()) for x in batches)
    rng = np.random.default_rng(5)
    random_batches = np.array_split(rng.permutation(203), len(a))
    assert waste(a) < 0.2 * waste(random_batches)


def test_early_stopping_returns_the_best_checkpoint(tiny_encoder, data):
    tr, va = data
    # A large learning rate makes validation F1 go up and down; patience 2 stops on a plateau.
    rung = get_rung("finetune", {**FAST, "head_lr": 0.05, "backbone_lr": 0.02, "max_epochs": 30, "patience": 2})
    fitted = rung.fit(tr, va, seed=0, context=ctx(tiny_encoder))
    hist = fitted.diagnostics_["history"]
    best = max(h["val_f1"] for h in hist)
    assert fitted.diagnostics_["stopped_by"] == "early_stopping" and len(hist) < 30
    assert fitted.selected_["epoch"] < hist[-1]["epoch"]  # the last epoch was not the best ...
    assert fitted.val_scores_["f1"] == pytest.approx(best, abs=1e-6)  # ... yet the best one is returned
    pred = fitted.predict(va.texts)
    from adaptlab.metrics import score

    assert score(va.labels, pred, None, ["money", "sport", "tech"], None)["f1"] == pytest.approx(best, abs=1e-6)
    assert fitted.selected_["epoch"] == fitted.diagnostics_["overfitting"]["best_epoch"]


def test_step_budget_is_never_exceeded_and_replaces_max_epochs(tiny_encoder, data):
    tr, va = data  # 60 texts, batch 8: 8 steps per epoch
    c = ctx(tiny_encoder, budget=Budget(steps=13))
    fitted = get_rung("finetune", {**FAST, "max_epochs": 100, "patience": 100}).fit(tr, va, seed=0, context=c)
    d = fitted.diagnostics_
    assert d["budget"]["steps_used"] == 13 and d["stopped_by"] == "budget_steps"
    assert d["history"][-1]["step"] == 13  # the partial last epoch is evaluated too
    assert d["budget"]["declared"] == {"steps": 13, "seconds": None}
    # 13 batches: all 8 of epoch 1 (60 texts = 7 x 8 + 4) and 5 of epoch 2, which may include its short one.
    assert fitted.cost_.samples_seen in (60 + 5 * 8, 60 + 4 * 8 + 4) and fitted.cost_.samples_seen == d["history"][-1]["samples_seen"]
    # A step budget replaces the epoch cap: max_epochs=1 still trains 20 steps.
    c = ctx(tiny_encoder, budget=Budget(steps=20))
    fitted = get_rung("finetune", {**FAST, "max_epochs": 1, "patience": 100}).fit(tr, va, seed=0, context=c)
    assert fitted.diagnostics_["budget"]["steps_used"] == 20


def test_seconds_budget_is_honoured(tiny_encoder, data):
    tr, va = data
    c = ctx(tiny_encoder, budget=Budget(seconds=0.4))
    fitted = get_rung("finetune", {**FAST, "max_epochs": 10_000, "patience": 10_000}).fit(tr, va, seed=0, context=c)
    d = fitted.diagnostics_
    assert d["stopped_by"] == "budget_seconds"
    assert 0.4 <= d["budget"]["seconds_used"] < 5.0  # checked before every step: one step + one evaluation late at most
    assert d["budget"]["steps_used"] > 0


def test_same_seed_same_numbers_other_seed_other_numbers(tiny_encoder, data):
    tr, va = data
    runs = [get_rung("finetune", FAST).fit(tr, va, seed=s, context=ctx(tiny_encoder)) for s in (3, 3, 4)]
    assert history_numbers(runs[0]) == history_numbers(runs[1])
    np.testing.assert_array_equal(runs[0].predict_proba(va.texts), runs[1].predict_proba(va.texts))
    assert history_numbers(runs[0]) != history_numbers(runs[2])


def test_training_leaves_the_shared_encoder_and_the_global_rng_alone(tiny_encoder, data):
    tr, va = data
    before = tiny_encoder.refresh_fingerprint()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fitted = get_rung("finetune", FAST).fit(tr, va, seed=0, context=ctx(tiny_encoder))
    assert torch.equal(torch.rand(3), expected)
    assert tiny_encoder.refresh_fingerprint() == before
    assert fitted.diagnostics_["movement"]["overall"] > 0
    # The fitted model runs where the encoder runs (GPU-agnostic: everything follows encoder.device).
    assert fitted.diagnostics_["device"] == str(torch.device(tiny_encoder.device))
    assert all(str(p.device) == str(torch.device(tiny_encoder.device)) for p in fitted.model.parameters())


@pytest.mark.parametrize("name,params", [
    ("finetune", {}),
    ("unfreeze", {"schedule": "gradual", "blocks_per_stage": 1, "stage_max_epochs": 2}),
    ("lora", {"r": 2, "backbone_lr": 1e-2}),
])
def test_interrupted_run_resumes_to_the_same_numbers(tiny_encoder, data, tmp_path, name, params):
    tr, va = data
    params = {**FAST, **params, "checkpoint_every": 5}
    full = get_rung(name, params).fit(tr, va, seed=0, context=ctx(tiny_encoder, home=tmp_path / "a"))

    def ctrl_c(step):
        if step == 17:
            raise TrainingInterrupted("interrupted by the test")

    home = tmp_path / "b"
    with pytest.raises(TrainingInterrupted):
        get_rung(name, params).fit(tr, va, seed=0, context=ctx(tiny_encoder, home=home), callback=ctrl_c)
    (state,) = list(home.glob(f"checkpoints/{name}/*/checkpoint.json"))
    saved = json.loads(state.read_text())
    assert saved["step"] == 16  # epoch end at step 16 (8 steps per epoch) is the last checkpoint
    files = {p.name.split("-")[0] for p in state.parent.iterdir()}
    assert files == {"weights", "state", "checkpoint.json", "checkpoint.prev.json"}  # and the one before it
    resumed = get_rung(name, params).fit(tr, va, seed=0, context=ctx(tiny_encoder, home=home))
    assert resumed.diagnostics_["resumed_from_step"] == 16
    assert history_numbers(resumed) == history_numbers(full)
    assert resumed.diagnostics_["stages"] == full.diagnostics_["stages"]
    for (n1, p1), (n2, p2) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    np.testing.assert_array_equal(resumed.predict_proba(va.texts), full.predict_proba(va.texts))
    assert not list(home.glob(f"checkpoints/{name}/*/checkpoint.json"))  # cleaned up once finished


# Diagnostics that measure this machine's clock or say how the run went (resumed or not), not the model.
_TIMING = {"seconds", "seconds_used", "resumed_from_step"}


def without_timing(obj):
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items() if k not in _TIMING}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    return obj


def test_lpft_keeps_its_linear_probe_diagnostics_across_a_resume(tiny_encoder, data, tmp_path):
    tr, va = data
    params = {**FAST, "checkpoint_every": 5}
    full = get_rung("lpft", params).fit(tr, va, seed=0, context=ctx(tiny_encoder, home=tmp_path / "a"))
    assert set(full.diagnostics_["linear_probe"]) == {"C", "val_f1", "seconds"}

    def ctrl_c(step):
        if step == 12:
            raise TrainingInterrupted("interrupted by the test")

    home = tmp_path / "b"
    with pytest.raises(TrainingInterrupted):
        get_rung("lpft", params).fit(tr, va, seed=0, context=ctx(tiny_encoder, home=home), callback=ctrl_c)
    (state,) = list(home.glob("checkpoints/lpft/*/checkpoint.json"))
    assert json.loads(state.read_text())["extra"]["linear_probe"]["C"] == full.diagnostics_["linear_probe"]["C"]
    resumed = get_rung("lpft", params).fit(tr, va, seed=0, context=ctx(tiny_encoder, home=home))
    assert resumed.diagnostics_["resumed_from_step"] == 10
    # Everything but clock readings equals the uninterrupted run, the linear-probe entry included.
    assert without_timing(resumed.diagnostics_) == without_timing(full.diagnostics_)
    assert resumed.cost_.samples_seen == full.cost_.samples_seen
    assert resumed.cost_.encode_seconds > 0  # the probe's encoding, done before the interruption, still counts
    np.testing.assert_array_equal(resumed.predict_proba(va.texts), full.predict_proba(va.texts))


def test_mid_epoch_checkpoint_resumes_exactly(tiny_encoder, data, tmp_path):
    tr, va = data
    params = {**FAST, "checkpoint_every": 3}
    full = get_rung("finetune", params).fit(tr, va, seed=1, context=ctx(tiny_encoder))

    def stop(step):
        if step == 11:
            raise TrainingInterrupted("stop")

    with pytest.raises(TrainingInterrupted):
        get_rung("finetune", params).fit(tr, va, seed=1, context=ctx(tiny_encoder, home=tmp_path), callback=stop)
    resumed = get_rung("finetune", params).fit(tr, va, seed=1, context=ctx(tiny_encoder, home=tmp_path))
    assert resumed.diagnostics_["resumed_from_step"] == 9  # mid-epoch: batch position and RNG restored
    assert history_numbers(resumed) == history_numbers(full)


def test_checkpoint_of_another_run_is_ignored(tiny_encoder, data, tmp_path):
    tr, va = data
    params = {**FAST, "keep_checkpoints": True}
    get_rung("finetune", params).fit(tr, va, seed=0, context=ctx(tiny_encoder, home=tmp_path))
    (ckpt,) = list(tmp_path.glob("checkpoints/finetune/*/checkpoint.json"))
    # Another seed is another run key, so it trains from scratch rather than resuming the seed-0 run.
    other = get_rung("finetune", params).fit(tr, va, seed=1, context=ctx(tiny_encoder, home=tmp_path))
    assert other.diagnostics_["resumed_from_step"] is None
    meta = json.loads(ckpt.read_text())
    meta["run_key"] = "someone-else"
    ckpt.write_text(json.dumps(meta))
    from adaptlab.rungs.training import Trainer as T

    model = TextClassifier(tiny_encoder.model, tiny_encoder.pool, tiny_encoder.dim, 3)
    with pytest.warns(UserWarning, match="another run"):
        assert T(model, config=TrainingConfig(), classes=["a", "b", "c"], seed=0, checkpoint_dir=ckpt.parent,
                 run_key="mine")._load_checkpoint(dict(model.named_parameters()), []) is None


def test_rung_budget_must_equal_the_study_budget(tiny_encoder, data):
    tr, va = data
    c = ctx(tiny_encoder, budget=Budget(steps=20))
    with pytest.raises(ConfigError, match=r"finetune.budget='10steps' differs from the study's budget \(20 steps\)"):
        get_rung("finetune", {**FAST, "budget": "10steps"}).fit(tr, va, seed=0, context=c)
    with pytest.raises(ConfigError, match="allow_unequal_budgets"):
        get_rung("lora", {"budget": "10steps"}).identity(c)
    same = get_rung("finetune", {**FAST, "budget": "20steps"})
    assert same.identity(c)["budget"] == {"steps": 20, "seconds": None}
    fitted = get_rung("finetune", {**FAST, "budget": "10steps", "allow_unequal_budgets": True}).fit(tr, va, seed=0, context=c)
    assert fitted.diagnostics_["budget"]["steps_used"] == 10
    # The budget is part of the result key; checkpoint settings are not (they do not change numbers).
    a = get_rung("finetune", FAST).identity(ctx(tiny_encoder, budget=Budget(steps=20)))
    b = get_rung("finetune", FAST).identity(ctx(tiny_encoder, budget=Budget(steps=30)))
    assert a != b
    assert get_rung("finetune", {**FAST, "checkpoint_every": 7}).identity(c) == get_rung("finetune", FAST).identity(c)


@pytest.mark.parametrize("params,match", [
    ({"head_lr": 0}, r"finetune.head_lr=0 is not valid"),
    ({"layer_decay": 1.5}, r"finetune.layer_decay=1.5 is not valid: expected a number in \(0, 1\]"),
    ({"batch_size": 0}, r"finetune.batch_size=0 is not valid"),
    ({"budget": "soon"}, r"budget='soon' is not valid"),
    ({"lr": 1e-3}, r"unknown parameter\(s\) \['lr'\] for rung finetune"),
])
def test_bad_training_params_name_the_field(params, match):
    with pytest.raises(ConfigError, match=match):
        get_rung("finetune", params)


def test_network_rungs_need_an_encoder_and_validation(tiny_encoder, data):
    tr, va = data
    with pytest.raises(ConfigError, match="finetune rung needs an encoder"):
        get_rung("finetune").fit(tr, va, seed=0, context=RungContext(classes=tr.classes))
    with pytest.raises(ConfigError, match="non-empty validation split"):
        get_rung("finetune", FAST).fit(tr, va.subset([]), seed=0, context=ctx(tiny_encoder))
