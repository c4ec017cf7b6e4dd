"""The `refit` rung: MLM head initialisation, masking, loss, NaN guard, resume, content addressing."""
from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest
import torch

from adaptlab.config import StudyConfig
from adaptlab.encoders import Encoder
from adaptlab.errors import AdaptlabError, ConfigError
from adaptlab.evaluate import Study
from adaptlab.rungs import get_rung
from adaptlab.rungs.refit import (
    MLMObjective, RefitBudget, RefitConfig, RefitDivergedError, RefitTimeWarning, TokenizedCorpus, mask_tokens,
    refit_encoder,
)
from adaptlab.rungs.refit import train as train_mod
from adaptlab.rungs.refit.rung import downsample_curve, nearest_to_positives
from adaptlab.rungs.refit.train import make_plan
from synthetic import topic_corpus
from tiny_models import tiny_vocab

FAST = dict(batch_size=16, max_seq_length=32, lr=1e-3, estimate_steps=1)


@pytest.fixture
def enc(mlm_dir):
    e = Encoder.from_pretrained(mlm_dir, device="cpu")
    assert len(e.tokenizer) == len(tiny_vocab())
    return e


@pytest.fixture(scope="module")
def texts():
    return topic_corpus(160, seed=3).texts


def run(enc, texts, home, budget="12steps", seed=0, **kw):
    return refit_encoder(enc, texts, RefitConfig(budget=budget, **{**FAST, **kw}), seed=seed, home=home)


# --------------------------------------------------------------------------------------------- config
def test_budget_parses_steps_tokens_epochs_and_durations():
    assert RefitBudget.parse("300steps") == RefitBudget(steps=300)
    assert RefitBudget.parse("5Mtokens") == RefitBudget(tokens=5_000_000)
    assert RefitBudget.parse("250k tokens") == RefitBudget(tokens=250_000)
    assert RefitBudget.parse("2epochs") == RefitBudget(epochs=2.0)
    assert RefitBudget.parse("2h") == RefitBudget(seconds=7200.0)
    assert RefitBudget.parse(40) == RefitBudget(steps=40)
    with pytest.raises(ConfigError, match=r"refit.budget='soon' is not valid.*5Mtokens"):
        RefitBudget.parse("soon")


def test_config_rejects_bad_values_with_the_field_name():
    with pytest.raises(ConfigError, match=r"refit.objective='tsdae'.*not available"):
        RefitConfig(objective="tsdae")
    with pytest.raises(ConfigError, match=r"refit.lr=-1"):
        RefitConfig(lr=-1)
    with pytest.raises(ConfigError, match=r"refit.mlm_probability"):
        RefitConfig(mlm_probability=1.5)
    with pytest.raises(ConfigError, match=r"unknown parameter"):
        get_rung("refit", {"epochs": 3})
    assert get_rung("refit", {"budget": "10steps"}).config.budget == "10steps"


def test_plan_turns_each_budget_into_steps(enc, texts):
    corpus = TokenizedCorpus.build(enc.tokenizer, texts, 32)
    assert make_plan(corpus, 16, RefitBudget(steps=7), sec_per_step=1).total_steps == 7
    assert make_plan(corpus, 16, RefitBudget(epochs=2), sec_per_step=1).total_steps == 20  # 160 texts / 16
    tok = make_plan(corpus, 16, RefitBudget(tokens=int(corpus.lengths.mean() * 16 * 5)), sec_per_step=1)
    assert tok.total_steps == 5 and tok.stop_tokens is not None
    assert make_plan(corpus, 16, RefitBudget(seconds=3.0), sec_per_step=0.5).total_steps == 6


# --------------------------------------------------------------------------------------------- masking
def test_masking_is_bert_80_10_10_never_special_or_padding_and_seeded():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (64, 128))
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones_like(ids)
    mask[:, 100:] = 0
    special = torch.tensor([0, 1, 2, 3, 4])
    out, labels = mask_tokens(ids, mask, special_ids=special, mask_id=4, vocab_size=1000, probability=0.15,
                              generator=g)
    picked = labels != -100
    eligible = (mask == 1) & (ids > 4)
    assert not (picked & ~eligible).any()
    assert abs(picked.sum().item() / eligible.sum().item() - 0.15) < 0.01
    assert torch.equal(labels[picked], ids[picked])
    frac_mask = (out[picked] == 4).float().mean().item()
    frac_kept = (out[picked] == ids[picked]).float().mean().item()
    assert abs(frac_mask - 0.8) < 0.03 and 0.05 < frac_kept < 0.15  # 10% kept (+ random hits of itself)
    assert torch.equal(out[~picked], ids[~picked])
    again = mask_tokens(ids, mask, special_ids=special, mask_id=4, vocab_size=1000, probability=0.15,
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], out) and torch.equal(again[1], labels)


def test_a_batch_of_tiny_texts_always_gets_one_masked_token():
    ids = torch.tensor([[2, 50, 3]])
    out, labels = mask_tokens(ids, torch.ones_like(ids), special_ids=torch.tensor([2, 3]), mask_id=4,
                              vocab_size=100, probability=1e-6, generator=torch.Generator().manual_seed(1))
    assert (labels != -100).sum() == 1 and labels[0, 1] == 50


# --------------------------------------------------------------------------------------------- MLM loss
def test_mlm_head_is_tied_to_input_embeddings_and_body_starts_from_the_encoder(enc):
    torch.manual_seed(0)
    obj = MLMObjective(enc, mlm_probability=0.15)
    assert obj.decoder_is_tied
    assert obj.head.predictions.decoder.weight.data_ptr() == obj.body.embeddings.word_embeddings.weight.data_ptr()
    base = enc.model.state_dict()
    for k, v in obj.body.state_dict().items():
        assert torch.equal(v, base[k]), k
    assert obj.body.embeddings.word_embeddings.weight.data_ptr() != enc.model.embeddings.word_embeddings.weight.data_ptr()


def test_mlm_loss_is_finite_at_step_0_and_decreases_and_the_base_encoder_is_untouched(enc, texts, tmp_path):
    fp = enc.fingerprint
    out = run(enc, texts, tmp_path, budget="60steps", checkpoint_every=1000)
    losses = out.manifest["loss_curve"]
    assert len(losses) == 60 and all(math.isfinite(v) for v in losses)
    # A fresh MLM head over a vocabulary of V tokens starts near ln(V), not at 0 or at infinity.
    assert 0.5 * math.log(len(tiny_vocab())) < losses[0] < 2 * math.log(len(tiny_vocab()))
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.3
    assert enc.fingerprint == fp and enc.refresh_fingerprint() == fp
    assert out.encoder.fingerprint != fp
    m = out.manifest
    assert m["steps"] == 60 and m["tokens"] > 0 and m["samples"] == 60 * 16
    assert m["tokens_per_second"] > 0 and m["samples_per_second"] > 0 and m["wall_seconds"] > 0
    assert m["estimate"]["estimated_seconds"] > 0 and m["estimate_vs_actual"] > 0
    assert (out.path / "encoder" / "modules.json").is_file() and not (out.path / "checkpoint").exists()
    again = Encoder.from_pretrained(out.path / "encoder", device="cpu")
    assert again.fingerprint == out.encoder.fingerprint
    assert json.loads((out.path / "manifest.json").read_text())["key"] == out.key


def test_simcse_refit_lowers_the_contrastive_loss(enc, texts, tmp_path):
    out = run(enc, texts, tmp_path, budget="30steps", objective="simcse")
    losses = out.manifest["loss_curve"]
    assert all(math.isfinite(v) for v in losses) and np.mean(losses[-5:]) < np.mean(losses[:5])
    assert losses[0] < math.log(16) + 0.5  # InfoNCE over 16 in-batch candidates starts near ln(16)
    assert out.manifest["objective"] == "simcse" and out.encoder.fingerprint != enc.fingerprint


# --------------------------------------------------------------------------------------------- guards
def test_nan_loss_stops_with_the_step_and_last_finite_loss_and_keeps_the_checkpoint(enc, texts, tmp_path):
    def poison(step, loss, model):
        if step == 5:
            with torch.no_grad():
                model.body.embeddings.word_embeddings.weight.fill_(float("nan"))

    cfg = RefitConfig(budget="20steps", checkpoint_every=4, **FAST)
    with pytest.raises(RefitDivergedError, match=r"diverged at step 6.*last finite loss [0-9.]+ at step 5.*"
                                                 r"checkpoint \(step 4\) is kept") as exc:
        refit_encoder(enc, texts, cfg, home=tmp_path, callback=poison)
    assert isinstance(exc.value, AdaptlabError) and "Lower the learning rate" in str(exc.value)
    ckpts = list(tmp_path.glob("refits/*/checkpoint/state.json"))
    assert len(ckpts) == 1 and json.loads(ckpts[0].read_text())["step"] == 4
    assert not list(tmp_path.glob("refits/*/manifest.json"))  # an unfinished refit is never reused


def test_losses_read_every_few_steps_give_the_same_refit(enc, texts, tmp_path, monkeypatch):
    """On a GPU the loop reads the loss every LOSS_READ_EVERY steps; forced here on the CPU."""
    eager = run(enc, texts, tmp_path / "a", budget="14steps", checkpoint_every=5)
    monkeypatch.setattr(train_mod, "loss_read_interval", lambda rt, callback=None: 4)
    lazy = run(enc, texts, tmp_path / "b", budget="14steps", checkpoint_every=5)
    assert lazy.manifest["loss_curve"] == eager.manifest["loss_curve"] and len(lazy.manifest["loss_curve"]) == 14
    np.testing.assert_array_equal(lazy.encoder.encode(texts[:8]), eager.encoder.encode(texts[:8]))


def test_a_lazily_read_nan_still_stops_at_its_step_before_a_checkpoint_is_written(enc, texts, tmp_path, monkeypatch):
    def poison(step, loss, model):
        if step == 5:
            with torch.no_grad():
                model.body.embeddings.word_embeddings.weight.fill_(float("nan"))

    monkeypatch.setattr(train_mod, "loss_read_interval", lambda rt, callback=None: 4)
    cfg = RefitConfig(budget="20steps", checkpoint_every=4, **FAST)
    with pytest.raises(RefitDivergedError, match=r"diverged at step 6.*last finite loss [0-9.]+ at step 5.*"
                                                 r"checkpoint \(step 4\) is kept"):
        refit_encoder(enc, texts, cfg, home=tmp_path, callback=poison)
    ckpts = list(tmp_path.glob("refits/*/checkpoint/state.json"))
    assert len(ckpts) == 1 and json.loads(ckpts[0].read_text())["step"] == 4


def test_losses_are_read_every_step_on_the_cpu_and_lazily_on_one_gpu():
    from types import SimpleNamespace

    def rt(device, **kw):
        return SimpleNamespace(device=torch.device(device), distributed=False, mixed_precision="bf16", **kw)

    assert train_mod.loss_read_interval(rt("cpu")) == 1
    assert train_mod.loss_read_interval(rt("cuda")) == train_mod.LOSS_READ_EVERY > 1
    assert train_mod.loss_read_interval(rt("cuda"), callback=print) == 1
    gpu_fp16 = rt("cuda")
    gpu_fp16.mixed_precision = "fp16"
    assert train_mod.loss_read_interval(gpu_fp16) == 1


def test_masking_runs_on_the_generators_device(enc, monkeypatch):
    import adaptlab.rungs.refit.objectives as obj_mod

    calls, original = [], obj_mod.mask_tokens

    def spy(input_ids, attention_mask, **kw):
        calls.append((input_ids.device, kw["generator"].device, kw["special_ids"].device))
        return original(input_ids, attention_mask, **kw)

    monkeypatch.setattr(obj_mod, "mask_tokens", spy)
    ids = torch.tensor([[2, 10, 11, 12, 3, 0]] * 4)
    loss, n_tokens = MLMObjective(enc, mlm_probability=0.15)(ids, (ids != 0).long(), torch.Generator().manual_seed(0))
    assert calls == [(torch.device("cpu"),) * 3] and n_tokens == 20 and torch.isfinite(loss)


def test_estimate_over_the_limit_warns_before_training_and_says_what_fits(enc, texts, tmp_path):
    with pytest.warns(RefitTimeWarning, match=r"more than max_hours=1e-07.*steps .*fit in 1e-07 h.*engineer"):
        out = run(enc, texts, tmp_path, budget="3steps", max_hours=1e-7)
    assert out.manifest["estimate"]["over_limit"] is True and "steps_that_fit" in out.manifest["estimate"]


# --------------------------------------------------------------------------------------------- resume
def test_crash_and_resume_reaches_the_same_loss_curve_as_an_uninterrupted_run(enc, texts, tmp_path):
    full = run(enc, texts, tmp_path / "a", budget="14steps", checkpoint_every=3)

    def crash(step, loss, model):
        if step == 8:
            raise RuntimeError("power cut")

    cfg = RefitConfig(budget="14steps", checkpoint_every=3, **FAST)
    with pytest.raises(RuntimeError, match="power cut"):
        refit_encoder(enc, texts, cfg, home=tmp_path / "b", callback=crash)
    resumed = refit_encoder(enc, texts, cfg, home=tmp_path / "b")
    assert resumed.manifest["resumed_at"] == [6]  # last checkpoint before the crash
    np.testing.assert_allclose(resumed.manifest["loss_curve"], full.manifest["loss_curve"], rtol=0, atol=1e-6)
    sample = texts[:8]
    np.testing.assert_allclose(resumed.encoder.encode(sample), full.encoder.encode(sample), atol=1e-6)


def test_ctrl_c_checkpoints_at_the_next_step_and_resumes_to_the_same_curve(enc, texts, tmp_path):
    full = run(enc, texts, tmp_path / "a", budget="12steps", checkpoint_every=100, objective="simcse")

    def ctrl_c(step, loss, model):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    cfg = RefitConfig(budget="12steps", checkpoint_every=100, objective="simcse", **FAST)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        refit_encoder(enc, texts, cfg, home=tmp_path / "b", callback=ctrl_c)
    assert signal.getsignal(signal.SIGINT) is handler  # the user's handler is restored
    state = json.loads(next((tmp_path / "b").glob("refits/*/checkpoint/state.json")).read_text())
    assert state["step"] == 5 and state["position"] == 5 and len(state["losses"]) == 5
    resumed = refit_encoder(enc, texts, cfg, home=tmp_path / "b")
    assert resumed.manifest["resumed_at"] == [5]
    np.testing.assert_allclose(resumed.manifest["loss_curve"], full.manifest["loss_curve"], rtol=0, atol=1e-6)


def test_same_refit_is_read_back_not_retrained(enc, texts, tmp_path, monkeypatch):
    first = run(enc, texts, tmp_path)
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: pytest.fail("a stored refit must not be retrained"))
    import adaptlab.rungs.refit.core as core

    monkeypatch.setattr(core, "train", lambda *a, **k: pytest.fail("a stored refit must not be retrained"))
    second = run(enc, texts, tmp_path)
    assert second.reused and second.key == first.key and second.encoder.fingerprint == first.encoder.fingerprint
    # The key follows the corpus, the config and the seed, not the order texts arrive in.
    assert run(enc, list(reversed(texts)), tmp_path).reused
    from adaptlab.rungs.refit import canonical_corpus, refit_key

    cfg, budget = RefitConfig(budget="12steps", **FAST), RefitBudget(steps=12)
    h = canonical_corpus(texts)[1]
    assert refit_key(enc.fingerprint, h, cfg, budget, 0) == first.key
    others = {refit_key(enc.fingerprint, canonical_corpus(texts[:-1])[1], cfg, budget, 0),
              refit_key(enc.fingerprint, h, cfg, budget, 1), refit_key("other-encoder", h, cfg, budget, 0),
              refit_key(enc.fingerprint, h, RefitConfig(budget="12steps", **{**FAST, "lr": 1e-4}), budget, 0),
              refit_key(enc.fingerprint, h, cfg, RefitBudget(steps=13), 0)}
    assert first.key not in others and len(others) == 5


def test_epoch_batches_cover_the_corpus_once_with_little_padding(enc, texts):
    corpus = TokenizedCorpus.build(enc.tokenizer, texts, 32)
    b0 = corpus.epoch_batches(16, seed=0, epoch=0)
    assert sorted(np.concatenate(b0).tolist()) == list(range(len(texts)))
    assert [x.tolist() for x in b0] == [x.tolist() for x in corpus.epoch_batches(16, seed=0, epoch=0)]
    assert [x.tolist() for x in b0] != [x.tolist() for x in corpus.epoch_batches(16, seed=0, epoch=1)]
    padded = sum(len(b) * corpus.lengths[b].max() for b in b0)
    assert padded < 1.1 * corpus.lengths.sum()


# --------------------------------------------------------------------------------------------- study
def study(home, data, unlabeled, seeds=2, **refit):
    cfg = StudyConfig(rungs=["probe", "refit"], seeds=seeds, n_boot=200,
                      rung_params={"refit": {"budget": "8steps", **FAST, **refit}})
    return Study(cfg, home=home).run(data, unlabeled=unlabeled)


def test_refit_rung_in_a_study_shares_one_refit_and_a_second_study_does_not_retrain(mlm_dir, tmp_path, monkeypatch):
    data, unl = topic_corpus(90, seed=1), topic_corpus(120, seed=2)
    enc = Encoder.from_pretrained(mlm_dir, device="cpu")
    cfg = StudyConfig(rungs=["probe", "refit"], seeds=2, n_boot=200,
                      rung_params={"refit": {"budget": "8steps", **FAST}})
    res = Study(cfg, home=tmp_path, encoder=enc).run(data, unlabeled=unl)
    row = res.row("refit")
    assert row["n_seeds"] == 2 and 0.0 <= row["mean"] <= 1.0
    refits = list((tmp_path / "refits").iterdir())
    assert len(refits) == 1, "one refit shared by all seeds"
    diags = [p["diagnostics"] for p in res.per_seed if p["rung"] == "refit"]
    assert [d["reused"] for d in diags] == [False, True]
    d = diags[0]
    for k in ("loss_curve", "steps", "tokens", "wall_seconds", "samples_per_second", "tokens_per_second",
              "refit_key", "estimated_seconds", "estimate_vs_actual", "objective"):
        assert k in d, k
    assert d["steps"] == 8 and d["objective"] == "mlm" and d["refit_fingerprint"] != d["base_fingerprint"]
    # Corpus: unlabeled + the labeled pool's texts (train + validation, never a label), no test texts.
    assert d["corpus"]["n_unlabeled"] == 120 and d["corpus"]["n_test_texts"] == 0
    assert d["corpus"]["n_labeled_texts"] == res.split["n_train"] + res.split["n_val"]

    import adaptlab.rungs.refit.core as core

    monkeypatch.setattr(core, "train", lambda *a, **k: pytest.fail("the second study retrained the refit"))
    cfg3 = StudyConfig(rungs=["probe", "refit"], seeds=3, n_boot=200,
                       rung_params={"refit": {"budget": "8steps", **FAST}})
    again = Study(cfg3, home=tmp_path, encoder=Encoder.from_pretrained(mlm_dir, device="cpu")).run(data, unlabeled=unl)
    assert again.study_id != res.study_id and again.row("refit")["n_seeds"] == 3
    assert all(p["diagnostics"]["reused"] for p in again.per_seed if p["rung"] == "refit" and p["seed"] == 2)
    assert again.row("refit")["f1_by_seed"][:2] == row["f1_by_seed"]


def test_refit_per_seed_trains_one_refit_per_seed_and_changing_unlabeled_changes_the_result_key(mlm_dir, tmp_path):
    data = topic_corpus(90, seed=1)
    cfg = StudyConfig(rungs=["refit"], seeds=2, n_boot=200,
                      rung_params={"refit": {"budget": "4steps", "refit_per_seed": True, **FAST}})
    res = Study(cfg, home=tmp_path, encoder=Encoder.from_pretrained(mlm_dir, device="cpu")).run(
        data, unlabeled=topic_corpus(40, seed=2))
    seeds = {p["diagnostics"]["refit_seed"] for p in res.per_seed}
    assert seeds == {0, 1} and len(list((tmp_path / "refits").iterdir())) == 2
    other = Study(cfg, home=tmp_path, encoder=Encoder.from_pretrained(mlm_dir, device="cpu")).run(
        data, unlabeled=topic_corpus(40, seed=5))
    assert other.n_trained == 2, "a new unlabeled corpus must not be answered from the store"


def test_transductive_refit_reads_test_texts_only_when_asked_and_audits_it(mlm_dir, tmp_path):
    data = topic_corpus(90, seed=1)
    enc = Encoder.from_pretrained(mlm_dir, device="cpu")
    cfg = StudyConfig(rungs=["refit"], seeds=1, n_boot=200,
                      rung_params={"refit": {"budget": "3steps", "transductive": True, **FAST}})
    res = Study(cfg, home=tmp_path, encoder=enc).run(data)
    d = res.per_seed[0]["diagnostics"]
    assert d["corpus"]["n_test_texts"] == res.n_test
    from adaptlab.store import RunStore

    reads = RunStore(tmp_path / "runs.sqlite").study_results(res.study_id)[0]["manifest"]["test_reads"]
    assert any("transductive" in r for r in reads)
    with pytest.raises(ConfigError, match="transductive"):
        get_rung("refit", {"transductive": True, **FAST}).refit_corpus(
            data.subset(range(10)), data.subset(range(10, 20)),
            __import__("adaptlab.rungs", fromlist=["RungContext"]).RungContext(classes=data.classes, encoder=enc))


# --------------------------------------------------------------------------------------------- corpus filter
class BagOfWords:
    """A transparent stand-in encoder: counts of a few topic words (so 'nearest' is checkable)."""

    fingerprint = "bag-of-words-test"
    words = ["match", "goal", "team", "bank", "market", "price", "software", "phone", "data"]
    dim = len(words)

    def encode(self, texts, batch_size=32, show_progress=None):
        return np.array([[t.split().count(w) + 1e-3 for w in self.words] for t in texts], dtype=np.float32)


def test_corpus_filter_keeps_the_unlabeled_texts_nearest_to_the_positive_class():
    sport = topic_corpus(30, seed=1, classes=("sport",)).texts
    money = topic_corpus(30, seed=2, classes=("money",)).texts
    cands = [t for pair in zip(sport, money) for t in pair]
    keep = nearest_to_positives(BagOfWords(), cands, topic_corpus(5, seed=9, classes=("sport",)).texts, 20)
    assert len(keep) == 20 and sum(cands[i] in sport for i in keep) >= 18


def test_loss_curve_is_downsampled_for_the_result_store():
    assert downsample_curve([3.0, 2.0]) == [[1, 3.0], [2, 2.0]]
    curve = downsample_curve(list(np.linspace(5, 1, 1000)), points=10)
    assert len(curve) == 10 and curve[-1][0] == 1000 and curve[0][1] > curve[-1][1]


def test_a_refit_being_trained_by_another_live_process_is_not_trained_twice(enc, texts, tmp_path):
    from adaptlab.rungs.refit import canonical_corpus, refit_key
    from adaptlab.rungs.refit.core import RefitBusyError

    cfg = RefitConfig(budget="3steps", **FAST)
    folder = tmp_path / "refits" / refit_key(enc.fingerprint, canonical_corpus(texts)[1], cfg, RefitBudget(steps=3), 0)
    folder.mkdir(parents=True)
    (folder / "training.lock").write_text(str(os.getppid()))  # a live process that is not us
    with pytest.raises(RefitBusyError, match="is training this refit right now"):
        refit_encoder(enc, texts, cfg, home=tmp_path)
    (folder / "training.lock").write_text("999999999")  # a killed owner: the stale lock is taken over
    assert refit_encoder(enc, texts, cfg, home=tmp_path).manifest["steps"] == 3
    assert not (folder / "training.lock").exists()


def test_corpus_filter_in_the_rung_keeps_top_k_unlabeled_texts_plus_labeled_texts(enc):
    from adaptlab.rungs import RungContext

    data, unl = topic_corpus(30, seed=1), topic_corpus(50, seed=2)
    rung = get_rung("refit", {"corpus_filter": "nearest-positive", "corpus_top_k": 12, **FAST})
    ctx = RungContext(classes=data.classes, encoder=enc, unlabeled=unl)
    texts, info = rung.refit_corpus(data.subset(range(20)), data.subset(range(20, 30)), ctx)
    assert info["n_unlabeled"] == 12 and info["n_anchor_texts"] == 20 and len(texts) == 12 + 30
    assert set(texts[:12]) <= set(unl.texts)
