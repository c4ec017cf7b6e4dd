"""The fine-tuning rungs (lora, unfreeze, finetune, lpft) on the tiny encoder, and a study with them."""
import json
import re

import numpy as np
import pytest
import torch

from adaptlab.config import StudyConfig
from adaptlab.errors import ConfigError
from adaptlab.evaluate import Study
from adaptlab.metrics import score
from adaptlab.rungs import RUNGS, RungContext, get_rung
from synthetic import topic_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"head_lr": 1e-2, "backbone_lr": 3e-3, "batch_size": 8, "max_epochs": 12, "patience": 4}
CLASSES = ["money", "sport", "tech"]



@pytest.fixture(scope="module")
def corpus():
    ds = topic_corpus(150, seed=0)
    return ds.subset(range(90)), ds.subset(range(90, 120)), ds.subset(range(120, 150))


def ctx(encoder, **kw):
    return RungContext(classes=CLASSES, encoder=encoder, **kw)


def test_the_four_rungs_are_registered_on_the_ladder():
    assert {"lora", "unfreeze", "finetune", "lpft"} <= set(RUNGS)
    for name in ("lora", "unfreeze", "finetune", "lpft"):
        rung = get_rung(name)
        assert rung.trains_network and rung.uses_encoder and rung.summary


@pytest.mark.parametrize("name,params", [
    ("finetune", {}),
    ("lpft", {}),
    ("lpft", {"lp_method": "head", "lp_epochs": 3}),
    ("unfreeze", {"top_k": 1}),
    ("unfreeze", {"schedule": "gradual", "blocks_per_stage": 1}),
    ("lora", {"r": 4}),
])
def test_each_rung_learns_the_topic_task_above_chance(tiny_encoder, corpus, name, params):
    tr, va, te = corpus
    fitted = get_rung(name, {**FAST, **params}).fit(tr, va, seed=0, context=ctx(tiny_encoder))
    test_f1 = score(te.labels, fitted.predict(te.texts), None, CLASSES, None)["f1"]
    assert fitted.val_scores_["f1"] > 0.55 and test_f1 > 0.5, (fitted.val_scores_, test_f1)  # chance is 1/3
    proba = fitted.predict_proba(te.texts)
    assert proba.shape == (30, 3) and np.allclose(proba.sum(1), 1)
    emb = fitted.embed(te.texts[:4])
    assert emb.shape == (4, tiny_encoder.dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)  # the encoder's own pooling (normalised)
    assert fitted.cost_.fit_seconds > 0 and fitted.cost_.samples_seen > 0
    d = fitted.diagnostics_
    json.dumps(d)
    assert {"history", "movement", "overfitting", "budget", "stages", "param_groups"} <= set(d)
    assert 0.0 < d["cka_pretrained_vs_tuned"] <= 1.0 + 1e-9 and d["cka_texts"] == min(len(va), 200)
    assert fitted.selected_["val_f1"] == pytest.approx(max(h["val_f1"] for h in d["history"]))


def test_unfreeze_top_k_keeps_lower_layers_bit_identical(tiny_encoder, corpus):
    tr, va, _ = corpus
    fitted = get_rung("unfreeze", {**FAST, "top_k": 1}).fit(tr, va, seed=0, context=ctx(tiny_encoder))
    move = fitted.diagnostics_["movement"]["per_layer"]
    assert move["embeddings"] == 0.0 and move["layer.0"] == 0.0 and move["layer.1"] > 0.01
    assert {"embeddings", "layer.0"} <= set(fitted.diagnostics_["movement"]["frozen"])
    base = dict(tiny_encoder.model.named_parameters())
    for name, p in fitted.model.backbone.named_parameters():
        if "layer.0." in name or name.startswith("embeddings."):
            assert torch.equal(p, base[name]), name
        elif "layer.1." in name:
            assert not torch.equal(p, base[name]) or "bias" in name or "LayerNorm" in name
    # Discriminative LRs: the unfrozen block gets backbone_lr, the head head_lr; nothing else is trained.
    groups = {g["name"]: g["lr"] for g in fitted.diagnostics_["param_groups"][0]["groups"]}
    assert set(groups) == {"head", "head/no_decay", "layer.1", "layer.1/no_decay", "other", "other/no_decay"}
    assert groups["layer.1"] == 3e-3 and groups["head"] == 1e-2


def test_gradual_unfreezing_records_its_stages(tiny_encoder, corpus):
    tr, va, _ = corpus
    fitted = get_rung("unfreeze", {**FAST, "schedule": "gradual", "blocks_per_stage": 1, "stage_max_epochs": 2,
                                   "layer_decay": 0.5}).fit(tr, va, seed=0, context=ctx(tiny_encoder))
    stages = fitted.diagnostics_["stages"]
    assert [s["stage"] for s in stages] == ["head", "top1", "all"]
    assert stages[0]["trainable_parameters"] == 3 * tiny_encoder.dim + 3  # head only
    assert stages[0]["trainable_parameters"] < stages[1]["trainable_parameters"] < stages[2]["trainable_parameters"]
    assert all(s["end"] in ("plateau", "max_epochs", "early_stopping") for s in stages)
    assert all(1 <= s["epochs"] <= 2 for s in stages[:2])
    hist_stages = [h["stage"] for h in fitted.diagnostics_["history"]]
    assert hist_stages == sorted(hist_stages, key=["head", "top1", "all"].index)  # stages in order
    groups = [{g["name"]: g["lr"] for g in st["groups"]} for st in fitted.diagnostics_["param_groups"]]
    assert set(groups[0]) == {"head", "head/no_decay"}
    assert groups[2]["layer.0"] == pytest.approx(1.5e-3) and groups[2]["embeddings"] == pytest.approx(7.5e-4)


def test_lpft_starts_from_the_probe_head(tiny_encoder, corpus):
    tr, va, _ = corpus
    c = ctx(tiny_encoder)
    probe = get_rung("probe").fit(tr, va, seed=0, context=c)
    fitted = get_rung("lpft", FAST).fit(tr, va, seed=0, context=c)
    hist = fitted.diagnostics_["history"]
    assert hist[0]["stage"] == "start" and hist[0]["train_loss"] is None
    # Before any step, the converted head predicts exactly what the logistic-regression probe does.
    assert hist[0]["val_f1"] == pytest.approx(probe.val_scores_["f1"], abs=1e-6)
    assert fitted.diagnostics_["linear_probe"]["C"] == probe.selected_["C"]
    assert fitted.val_scores_["f1"] >= probe.val_scores_["f1"] - 1e-9  # validation keeps the probe if FT loses


def test_lpft_binary_head_conversion_matches_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    from adaptlab.rungs.lpft import logistic_to_linear

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = np.where(X[:, 0] > 0, "pos", "neg").astype(object)
    lr = LogisticRegression().fit(X, y)
    W, b = logistic_to_linear(lr, ["neg", "other", "pos"], 5)
    logits = torch.tensor(X, dtype=torch.float32) @ W.T + b
    proba = torch.softmax(logits, 1).numpy()
    np.testing.assert_allclose(proba[:, [0, 2]], lr.predict_proba(X), atol=1e-5)
    assert proba[:, 1].max() < 1e-9  # a class the probe never saw gets no mass


def test_lora_trains_few_parameters_and_never_touches_the_base(tiny_encoder, corpus):
    tr, va, _ = corpus
    fitted = get_rung("lora", {**FAST, "r": 2, "backbone_lr": 1e-2}).fit(tr, va, seed=0, context=ctx(tiny_encoder))
    d = fitted.diagnostics_
    lora = d["lora"]
    # q, k, v of 2 layers, rank 2: A (2 x 32) + B (32 x 2) each.
    assert lora["adapter_parameters"] == 2 * 3 * (2 * 32 + 32 * 2)
    assert d["trainable_parameters"] == lora["adapter_parameters"] + lora["head_parameters"]
    assert d["trainable_parameters"] < 0.05 * lora["base_parameters"]
    assert {g["name"] for g in d["param_groups"][0]["groups"]} == {"head", "head/no_decay", "layer.0", "layer.1"}
    base = dict(tiny_encoder.model.named_parameters())
    for name, p in fitted.model.backbone.named_parameters():
        if "lora_" in name:
            continue
        plain = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(p, base[plain]), name
        assert not p.requires_grad
    # Movement is measured on the merged weights: the adapted projections move, embeddings cannot.
    assert d["movement"]["per_layer"]["embeddings"] == 0.0 and d["movement"]["per_layer"]["layer.1"] > 0


def test_lora_saves_small_adapters_that_load_back_identically(tiny_encoder, corpus, tmp_path, tiny_encoder_dir):
    from adaptlab.encoders import Encoder
    from adaptlab.rungs.lora import FittedLora

    tr, va, te = corpus
    params = {**FAST, "r": 2, "backbone_lr": 1e-2, "long_text": "head_tail:8"}
    fitted = get_rung("lora", params).fit(tr, va, seed=0, context=ctx(tiny_encoder))
    folder = fitted.save_pretrained(tmp_path / "adapter")
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "head.safetensors", "head_config.json"} <= names
    base_bytes = (tiny_encoder_dir / "model.safetensors").stat().st_size
    assert (folder / "adapter_model.safetensors").stat().st_size < 0.2 * base_bytes
    # A fresh encoder loaded from disk (not the object used for training) + the adapter folder.
    fresh = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")
    loaded = FittedLora.from_pretrained(folder, encoder=fresh)
    np.testing.assert_array_equal(loaded.predict_proba(te.texts), fitted.predict_proba(te.texts))
    np.testing.assert_array_equal(loaded.embed(te.texts), fitted.embed(te.texts))
    assert list(loaded.classes_) == CLASSES and loaded.selected_ == json.loads(json.dumps(fitted.selected_))
    assert loaded.long_text == fitted.long_text == "head_tail:8"  # long texts are read as in training
    assert fresh.refresh_fingerprint() == tiny_encoder.refresh_fingerprint()  # the base stays untouched
    # Loading onto another base encoder is refused with a precise message.
    from tiny_models import build_tiny_encoder

    other = Encoder.from_pretrained(build_tiny_encoder(tmp_path / "other", seed=5), device="cpu")
    with pytest.raises(ConfigError, match="trained on another base encoder"):
        FittedLora.from_pretrained(folder, encoder=other)
    with pytest.raises(ConfigError, match="is not a saved LoRA rung"):
        FittedLora.from_pretrained(tmp_path, encoder=fresh)


def test_lora_config_is_validated_and_has_the_documented_defaults():
    cfg = get_rung("lora").config
    assert (cfg.r, cfg.alpha, cfg.dropout, cfg.target_modules) == (8, 16.0, 0.1, ["query", "key", "value"])
    with pytest.raises(ConfigError, match=r"lora.r=0 is not valid"):
        get_rung("lora", {"r": 0})
    with pytest.raises(ConfigError, match=r"lora.target_modules='query' is not valid"):
        get_rung("lora", {"target_modules": "query"})
    with pytest.raises(ConfigError, match=r"unfreeze.schedule='slow' is not valid: expected one of topk, gradual"):
        get_rung("unfreeze", {"schedule": "slow"})
    with pytest.raises(ConfigError, match=r"lpft.lp_method='svm' is not valid"):
        get_rung("lpft", {"lp_method": "svm"})


def test_lora_on_dense_layers_too_and_unknown_targets_are_refused(tiny_encoder, corpus):
    tr, va, _ = corpus
    c = ctx(tiny_encoder)
    fitted = get_rung("lora", {**FAST, "r": 2, "max_epochs": 1, "target_modules": ["query", "key", "value", "dense"]}
                      ).fit(tr, va, seed=0, context=c)
    qkv = 2 * 3 * (2 * 32 + 32 * 2)
    assert fitted.diagnostics_["lora"]["adapter_parameters"] > qkv
    with pytest.raises(ConfigError, match=r"lora.target_modules=\['qkv'\] is not valid: expected names of Linear layers"):
        get_rung("lora", {**FAST, "target_modules": ["qkv"]}).fit(tr, va, seed=0, context=c)


# ---------------------------------------------------------------- MLP head (seed 002: backbone frozen + head)
def test_frozen_backbone_with_an_mlp_head_trains_only_the_head(tiny_encoder, corpus):
    tr, va, te = corpus
    rung = get_rung("unfreeze", {**FAST, "top_k": 0, "head": "mlp", "head_hidden": 16, "head_lr": 3e-2})
    fitted = rung.fit(tr, va, seed=0, context=ctx(tiny_encoder))
    head = fitted.model.head
    assert isinstance(head, torch.nn.Sequential) and [type(m).__name__ for m in head] == [
        "Linear", "GELU", "Dropout", "Linear"]
    d = fitted.diagnostics_
    dim = tiny_encoder.dim
    assert d["trainable_parameters"] == (dim * 16 + 16) + (16 * 3 + 3)  # both head layers, nothing else
    assert {g["name"] for g in d["param_groups"][0]["groups"]} == {"head", "head/no_decay"}
    assert d["stages"][0]["stage"] == "head"
    # The backbone is bit-identical: zero movement in every unit, and embeddings equal the frozen ones.
    assert d["movement"]["overall"] == 0.0 and set(d["movement"]["frozen"]) == set(d["movement"]["per_layer"])
    base = dict(tiny_encoder.model.named_parameters())
    for name, p in fitted.model.backbone.named_parameters():
        assert torch.equal(p, base[name]), name
    np.testing.assert_allclose(fitted.embed(te.texts[:5]), tiny_encoder.encode(te.texts[:5]), atol=1e-5)
    # ... and the MLP head learned the task on the frozen features.
    test_f1 = score(te.labels, fitted.predict(te.texts), None, CLASSES, None)["f1"]
    assert fitted.val_scores_["f1"] > 0.55 and test_f1 > 0.5, (fitted.val_scores_, test_f1)


def test_mlp_head_trains_with_the_backbone_too(tiny_encoder, corpus):
    tr, va, _ = corpus
    fitted = get_rung("finetune", {**FAST, "max_epochs": 3, "head": "mlp", "head_hidden": 8}).fit(
        tr, va, seed=0, context=ctx(tiny_encoder))
    assert tuple(fitted.model.head[0].weight.shape) == (8, tiny_encoder.dim) and fitted.model.head[3].out_features == 3
    d = fitted.diagnostics_
    assert d["movement"]["overall"] > 0 and d["trainable_parameters"] == d["total_parameters"]
    losses = [h["train_loss"] for h in d["history"]]
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("rung,params,match", [
    ("finetune", {"head": "deep"}, r"finetune.head='deep' is not valid: expected one of linear, mlp"),
    ("unfreeze", {"head": "mlp", "head_hidden": 0}, r"unfreeze.head_hidden=0 is not valid: expected an integer >= 1"),
    ("lora", {"head_hidden": 2.5}, r"lora.head_hidden=2.5 is not valid"),
    ("lpft", {"head": "mlp"}, r"lpft.head='mlp' is not valid: expected 'linear' when lp_method='logistic'"),
])
def test_bad_head_settings_name_the_field(rung, params, match):
    with pytest.raises(ConfigError, match=match):
        get_rung(rung, params)
    assert get_rung("lpft", {"head": "mlp", "lp_method": "head"}).config.head == "mlp"


def test_lora_with_an_mlp_head_saves_and_loads_back_identically(tiny_encoder, corpus, tmp_path, tiny_encoder_dir):
    from safetensors.torch import load_file

    from adaptlab.encoders import Encoder
    from adaptlab.rungs.lora import FittedLora

    tr, va, te = corpus
    fitted = get_rung("lora", {**FAST, "r": 2, "backbone_lr": 1e-2, "max_epochs": 3, "head": "mlp",
                               "head_hidden": 12}).fit(tr, va, seed=0, context=ctx(tiny_encoder))
    lora = fitted.diagnostics_["lora"]
    assert lora["head_parameters"] == (tiny_encoder.dim * 12 + 12) + (12 * 3 + 3)
    folder = fitted.save_pretrained(tmp_path / "adapter")
    meta = json.loads((folder / "head_config.json").read_text())
    assert meta["head"] == {"kind": "mlp", "hidden": 12, "dim": tiny_encoder.dim, "n_classes": 3}
    assert set(load_file(str(folder / "head.safetensors"))) == {"0.weight", "0.bias", "3.weight", "3.bias"}
    loaded = FittedLora.from_pretrained(folder, encoder=Encoder.from_pretrained(tiny_encoder_dir, device="cpu"))
    assert isinstance(loaded.model.head, torch.nn.Sequential)
    np.testing.assert_array_equal(loaded.predict_proba(te.texts), fitted.predict_proba(te.texts))
    # A head file that does not match the recorded kind is refused, not silently misread.
    meta["head"] = {"kind": "linear", "hidden": None}
    (folder / "head_config.json").write_text(json.dumps(meta))
    with pytest.raises(RuntimeError, match="state_dict"):
        FittedLora.from_pretrained(folder, encoder=tiny_encoder)


def test_lora_folders_of_the_first_format_still_load(tiny_encoder, corpus, tmp_path):
    from adaptlab.rungs.lora import FittedLora

    tr, va, te = corpus
    fitted = get_rung("lora", {**FAST, "r": 2, "max_epochs": 1}).fit(tr, va, seed=0, context=ctx(tiny_encoder))
    folder = fitted.save_pretrained(tmp_path / "v1")
    meta = json.loads((folder / "head_config.json").read_text())
    del meta["head"]
    meta["format"] = "adaptlab-lora-head-v1"  # written before heads had kinds: weight + bias of a Linear
    (folder / "head_config.json").write_text(json.dumps(meta))
    loaded = FittedLora.from_pretrained(folder, encoder=tiny_encoder)
    np.testing.assert_array_equal(loaded.predict_proba(te.texts), fitted.predict_proba(te.texts))
    meta["format"] = "adaptlab-lora-head-v9"
    (folder / "head_config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="has format 'adaptlab-lora-head-v9'"):
        FittedLora.from_pretrained(folder, encoder=tiny_encoder)


def test_study_with_tfidf_probe_finetune_stores_diagnostics(tiny_encoder, tmp_path):
    from adaptlab.diagnostics.overfit import transfer_signatures
    from adaptlab.store import RunStore

    data = topic_corpus(120, seed=1)
    cfg = StudyConfig(rungs=["tfidf", "probe", "finetune"], seeds=2, n_boot=200, budget="24steps",
                      rung_params={"finetune": {**FAST, "patience": 10}})
    res = Study(cfg, home=tmp_path, encoder=tiny_encoder).run(data)
    assert [r["rung"] for r in res.rows] == ["tfidf", "probe", "finetune"]
    results = [r for r in RunStore(tmp_path / "runs.sqlite").study_results(res.study_id) if r["rung"] == "finetune"]
    assert len(results) == 2
    for r in results:
        diag = r["metrics"]["diagnostics"]
        assert diag["budget"]["steps_used"] <= 24 and diag["budget"]["declared"]["steps"] == 24
        assert diag["movement"]["overall"] > 0 and len(diag["history"]) >= 1
        assert "overfitting" in diag["overfitting"] and diag["overfitting"]["sentence"]
        assert r["manifest"]["rung"]["budget"] == {"steps": 24, "seconds": None}
    sigs = transfer_signatures(res.to_dict())
    kinds = {(s["kind"], s.get("baseline")) for s in sigs if s["rung"] == "finetune"}
    assert kinds == {("negative_transfer", "probe"), ("negative_transfer", "tfidf"), ("overfitting", None)}
    # Same study again: every result is read back, nothing retrains.
    again = Study(cfg, home=tmp_path, encoder=tiny_encoder).run(data)
    assert again.n_trained == 0 and again.n_from_store == 6
    # Another budget is another result (the budget is part of the key).
    cfg2 = StudyConfig(rungs=["finetune"], seeds=1, n_boot=200, budget="12steps", rung_params=cfg.rung_params)
    assert Study(cfg2, home=tmp_path, encoder=tiny_encoder).run(data).n_trained == 1


def _columns(table):
    return {str(c.header): [str(x) for x in c.cells] for c in table.columns}


def test_study_table_shows_trainable_parameters_movement_cka_and_flags(tiny_encoder, tmp_path):
    import copy

    from rich.console import Console

    from adaptlab.evaluate import StudyResult
    from adaptlab.evaluate.report import diagnostics_lines, render_study, rung_table

    data = topic_corpus(120, seed=1)
    head_only = {**FAST, "top_k": 0, "head": "mlp", "head_hidden": 16, "head_lr": 3e-2}
    cfg = StudyConfig(rungs=["tfidf", "probe", "unfreeze", "finetune"], seeds=2, n_boot=200, budget="16steps",
                      rung_params={"finetune": FAST, "unfreeze": head_only})
    res = Study(cfg, home=tmp_path, encoder=tiny_encoder).run(data)
    cols = _columns(rung_table(res))
    assert cols["rung"] == ["tfidf", "probe", "unfreeze", "finetune"]
    assert all("±" in c for c in cols["test mean ± std"]) and all(float(c) >= 0 for c in cols["fit s"])
    for col in ("trainable", "moved (max)", "CKA", "flags"):
        assert cols[col][:2] == ["—", "—"], col  # tfidf and probe train no network
    dim = tiny_encoder.dim
    head_params = (dim * 16 + 16) + (16 * 3 + 3)
    total = res.per_seed[-1]["diagnostics"]["total_parameters"]
    assert total > head_params
    # unfreeze top_k=0: only the MLP head trains; the backbone did not move and embeds as before.
    assert cols["trainable"][2] == f"{head_params} ({100 * head_params / total:.1f}%)"
    assert cols["moved (max)"][2] == "0%" and cols["CKA"][2] == "1.000"
    # finetune: everything trains and moves; the geometry changed a little.
    assert cols["trainable"][3].endswith("(100%)")
    moved = [p["diagnostics"]["movement"]["overall"] for p in res.per_seed if p["rung"] == "finetune"]
    m = re.fullmatch(r"([\d.]+)% \(([\d.]+)% (emb|L\d+)\)", cols["moved (max)"][3])
    assert m, cols["moved (max)"][3]
    assert float(m.group(1)) == pytest.approx(100 * np.mean(moved), rel=0.05) and float(m.group(2)) >= float(m.group(1))
    assert 0 < float(cols["CKA"][3]) < 1
    known = re.compile(r"(overfit \d/2 \(ep [\d,]+\)|neg\. transfer vs [a-z, ]+|budget-bound \d/2)")
    assert all(f == "none" or all(known.fullmatch(part) for part in f.split("; ")) for f in cols["flags"][2:])

    # Flags come from the stored data: a finetune band far below both baselines and an overfitting seed.
    d = copy.deepcopy(res.to_dict())
    row = next(r for r in d["rows"] if r["rung"] == "finetune")
    row.update(mean=0.2, ci_low=0.15, ci_high=0.25)
    seed0, seed1 = [p for p in d["per_seed"] if p["rung"] == "finetune"]
    for p in (seed0, seed1):  # best checkpoint well before the end: not budget-bound
        p["diagnostics"].update(stopped_by="budget_steps", best={**p["diagnostics"]["best"], "step": 3})
    seed0["diagnostics"]["overfitting"].update(overfitting=True, best_epoch=2)
    seed1["diagnostics"]["overfitting"]["overfitting"] = False
    bad = StudyResult.from_dict(d)
    flags = _columns(rung_table(bad))["flags"][3]
    assert flags == "overfit 1/2 (ep 2); neg. transfer vs tfidf, probe"
    lines = "\n".join(diagnostics_lines(bad))
    assert "finetune: NEGATIVE TRANSFER: 0.2000 vs tfidf" in lines and "1 of 2 seed(s) overfit" in lines
    assert "budget was too short" not in lines
    # A seed whose best checkpoint is the last step the budget allowed was still improving: under-trained.
    seed1["diagnostics"]["best"]["step"] = seed1["diagnostics"]["budget"]["steps_used"]
    short = StudyResult.from_dict(d)
    assert _columns(rung_table(short))["flags"][3].endswith("; budget-bound 1/2")
    lines = "\n".join(diagnostics_lines(short))
    assert "still improving when the budget ran out in 1 of 2 seed(s)" in lines and "budget was too short" in lines
    assert "unfreeze: trained" in lines and "backbone unchanged (frozen" in lines
    console = Console(record=True, width=220)
    console.print(render_study(bad))
    text = console.export_text()
    assert "fine-tuning signatures" in text and "neg. transfer vs tfidf" in text

    # A study without network rungs keeps the short table.
    plain = copy.deepcopy(res.to_dict())
    plain["rows"] = [r for r in plain["rows"] if r["rung"] in ("tfidf", "probe")]
    plain["per_seed"] = [p for p in plain["per_seed"] if p["rung"] in ("tfidf", "probe")]
    plain_res = StudyResult.from_dict(plain)
    assert "trainable" not in _columns(rung_table(plain_res)) and diagnostics_lines(plain_res) == []


def test_study_refuses_a_rung_budget_unlike_the_study_budget(tiny_encoder, tmp_path):
    cfg = StudyConfig(rungs=["tfidf", "finetune"], seeds=1, n_boot=200, budget="24steps",
                      rung_params={"finetune": {"budget": "48steps"}})
    with pytest.raises(ConfigError, match=r"finetune.budget='48steps' differs from the study's budget \(24 steps\)"):
        Study(cfg, home=tmp_path, encoder=tiny_encoder)  # refused before any rung trains
    cfg.rung_params["finetune"]["allow_unequal_budgets"] = True
    Study(cfg, home=tmp_path, encoder=tiny_encoder)
