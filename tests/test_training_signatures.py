"""Backbone movement, overfitting and negative-transfer signatures (adaptlab.diagnostics.movement/overfit)."""
import copy
import json

import pytest
import torch

from adaptlab.diagnostics.movement import backbone_movement, effective_state_dict, layer_unit, movement_sentence
from adaptlab.diagnostics.overfit import overfitting_signature, transfer_signatures
from adaptlab.rungs import RungContext, get_rung
from synthetic import topic_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def hist(rows):
    return [{"epoch": i + 1, "train_loss": tl, "train_f1": tf, "val_loss": vl, "val_f1": vf}
            for i, (tl, tf, vl, vf) in enumerate(rows)]


def test_movement_is_relative_l2_per_layer_and_exactly_zero_when_frozen(tiny_encoder):
    w0 = {k: v.clone() for k, v in tiny_encoder.model.state_dict().items()}
    w1 = copy.deepcopy(w0)
    q = "encoder.layer.1.attention.self.query.weight"
    w1[q] = w1[q] + 0.5 * w1[q]  # only this tensor changes
    m = backbone_movement(w0, w1)
    assert m["per_layer"]["embeddings"] == 0.0 and m["per_layer"]["layer.0"] == 0.0
    layer1 = [k for k in w0 if layer_unit(k) == "layer.1" and torch.is_floating_point(w0[k])]
    expected = 0.5 * w0[q].norm().item() / torch.sqrt(sum((w0[k].double() ** 2).sum() for k in layer1)).item()
    assert m["per_layer"]["layer.1"] == pytest.approx(expected, rel=1e-6)
    assert m["most_moved"]["unit"] == "layer.1" and set(m["frozen"]) == {"embeddings", "layer.0", "other"}
    assert list(m["per_layer"]) == ["embeddings", "layer.0", "layer.1", "other"]
    assert "layer.1 moved most" in movement_sentence(m)
    json.dumps(m)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls an API transformers 5 deprecates
def test_movement_of_a_peft_model_uses_the_merged_weights(tiny_encoder):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(tiny_encoder.model), LoraConfig(r=2, target_modules=["query"]))
    w0 = tiny_encoder.model.state_dict()
    assert backbone_movement(w0, effective_state_dict(model))["overall"] == 0.0  # B starts at zero
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name and "layer.0." in name:
                p.fill_(0.1)
    m = backbone_movement(w0, effective_state_dict(model))
    assert m["per_layer"]["layer.0"] > 0 and m["per_layer"]["layer.1"] == 0.0
    assert any("lora_B" in n for n, _ in model.named_parameters())  # the model itself was not merged


def test_overfitting_signature_flags_memorisation_in_plain_words():
    sig = overfitting_signature(hist([(0.9, 0.6, 0.8, 0.70), (0.5, 0.8, 0.6, 0.80), (0.2, 0.95, 0.7, 0.76),
                                      (0.05, 1.0, 0.9, 0.72)]))
    assert sig["overfitting"] is True and sig["best_epoch"] == 2
    assert sig["val_drop_after_peak"] == pytest.approx(0.08) and sig["val_loss_rose"] is True
    assert sig["gap_f1_by_epoch"] == pytest.approx([-0.1, 0.0, 0.19, 0.28])
    assert "Overfitting" in sig["sentence"] and "epoch 2" in sig["sentence"] and "0.800" in sig["sentence"]


@pytest.mark.parametrize("rows,fell,expected", [
    ([(0.9, 0.6, 0.8, 0.70), (0.5, 0.8, 0.6, 0.80), (0.3, 0.9, 0.6, 0.81)], False, "still at its best"),
    ([(0.9, 0.6, 0.8, 0.70), (0.5, 0.8, 0.6, 0.80), (0.3, 0.9, 0.6, 0.795)], False, "stayed within"),
    ([(0.5, 0.6, 0.8, 0.70), (0.5, 0.6, 0.6, 0.80), (0.6, 0.55, 0.6, 0.70)], True, "unstable training"),
])
def test_no_overfitting_flag_without_both_halves_of_the_signature(rows, fell, expected):
    sig = overfitting_signature(hist(rows))
    assert sig["overfitting"] is False and sig["val_fell_after_peak"] is fell
    assert expected in sig["sentence"]


def test_overfitting_signature_handles_an_untrained_start_and_empty_history():
    h = [{"epoch": 0, "val_f1": 0.8, "train_loss": None}] + hist([(0.5, 0.9, 0.7, 0.7), (0.1, 1.0, 0.9, 0.65)])
    sig = overfitting_signature(h)
    assert sig["overfitting"] is True and sig["best_epoch"] == 0
    assert overfitting_signature([])["overfitting"] is False


def test_a_real_run_with_few_labels_and_a_high_lr_shows_the_signature(tiny_encoder):
    ds = topic_corpus(90, seed=2, noise=0.6)
    tr, va = ds.subset(range(12)), ds.subset(range(12, 90))
    fitted = get_rung("finetune", {"head_lr": 0.05, "backbone_lr": 0.01, "batch_size": 4, "max_epochs": 25,
                                   "patience": 25, "head_dropout": 0.0}).fit(
        tr, va, seed=0, context=RungContext(classes=ds.classes, encoder=tiny_encoder))
    sig = fitted.diagnostics_["overfitting"]
    assert sig["max_gap_f1"] > 0.2  # 12 labels are memorised: train F1 far above validation F1
    assert sig["overfitting"] is True and sig["val_fell_after_peak"] and sig["train_improved_after_peak"]
    assert sig["best_epoch"] < fitted.diagnostics_["history"][-1]["epoch"]
    assert fitted.selected_["epoch"] == sig["best_epoch"]


def study(rows, per_seed=()):
    return {"rows": rows, "per_seed": list(per_seed), "metric": "macro-F1"}


def row(name, mean, lo, hi):
    return {"rung": name, "mean": mean, "ci_low": lo, "ci_high": hi}


def test_negative_transfer_needs_a_lower_mean_and_separated_bands():
    res = study([row("tfidf", 0.70, 0.66, 0.74), row("probe", 0.78, 0.77, 0.79), row("finetune", 0.73, 0.70, 0.75),
                 row("lora", 0.775, 0.76, 0.79)])
    sigs = {(s["rung"], s["baseline"]): s for s in transfer_signatures(res) if s["kind"] == "negative_transfer"}
    assert set(sigs) == {("finetune", "probe"), ("finetune", "tfidf"), ("lora", "probe"), ("lora", "tfidf")}
    assert sigs[("finetune", "probe")]["negative_transfer"] is True
    assert "Negative transfer: finetune" in sigs[("finetune", "probe")]["sentence"]
    assert sigs[("finetune", "tfidf")]["negative_transfer"] is False  # above tfidf
    assert sigs[("lora", "probe")]["negative_transfer"] is False  # below, but within the noise
    assert "within the noise" in sigs[("lora", "probe")]["sentence"]
    json.dumps(sigs[("finetune", "probe")])


def test_transfer_signatures_count_overfitting_seeds_and_spot_unknown_fine_tuned_rungs():
    over = {"overfitting": {"overfitting": True, "best_epoch": 2}, "movement": {"overall": 0.1}}
    fine = {"overfitting": {"overfitting": False, "best_epoch": 5}, "movement": {"overall": 0.1}}
    per_seed = [{"rung": "finetune", "seed": s, "diagnostics": d} for s, d in enumerate([over, over, fine])]
    per_seed += [{"rung": "adapter2", "seed": 0, "diagnostics": fine}, {"rung": "probe", "seed": 0, "diagnostics": None}]
    res = study([row("probe", 0.78, 0.77, 0.79), row("finetune", 0.8, 0.78, 0.82), row("adapter2", 0.7, 0.6, 0.72)],
                per_seed)
    sigs = transfer_signatures(res)
    over_ft = next(s for s in sigs if s["kind"] == "overfitting" and s["rung"] == "finetune")
    assert over_ft["flag"] is True and over_ft["n_seeds_overfitting"] == 2 and over_ft["n_seeds"] == 3
    assert "2 of 3 seed(s)" in over_ft["sentence"]
    # A rung not named as fine-tuned but recording backbone movement is checked too.
    assert any(s["rung"] == "adapter2" and s["kind"] == "negative_transfer" and s["flag"] for s in sigs)
    assert not any(s["rung"] == "probe" for s in sigs)


def test_linear_cka_is_rotation_and_scale_invariant_and_low_for_unrelated_embeddings():
    import numpy as np

    from adaptlab.diagnostics.movement import linear_cka

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert linear_cka(x, 2.5 * x @ q) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, rng.normal(size=(200, 16))) < 0.3
    noisy = x + 0.5 * rng.normal(size=x.shape)
    assert 0.3 < linear_cka(x, noisy) < 1.0
    with pytest.raises(ValueError, match="same >= 2 texts"):
        linear_cka(x, x[:10])
