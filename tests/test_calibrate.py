"""The planner's calibration: batches built as the study trains them, token-level units, load detection."""
import numpy as np
import pytest

from adaptlab.decide import calibrate as cal_mod
from adaptlab.decide.calibrate import Calibration, calibrate, length_profile
from adaptlab.decide.plan import estimate_rung_costs


def _cal(**kw) -> Calibration:
    base = dict(device="cpu", encode_per_text=0.01, train_step=0.5, batch_size=16, tfidf_per_train_text=1e-4,
                head_per_train_text=1e-4, seconds=1.0, train_token_seconds=1e-3, optimizer_seconds=0.05,
                forward_token_seconds=2e-4, lengths={"train": 400.0, "pairs": 640.0, "mlm": 40.0, "eval_text": 24.0})
    base.update(kw)
    return Calibration(**base)


def test_a_rung_is_costed_from_its_own_batch_shape():
    cal = _cal()
    assert cal.step_seconds("finetune") == pytest.approx(400 * 1e-3 + 0.05)
    # SetFit steps on pairs drawn at random (two texts each, padded to the longest of the batch).
    # (through sentence-transformers' Trainer, in float32 whatever the study's precision: measured factors)
    assert cal.step_seconds("setfit") == pytest.approx((2 * 640 * 1e-3 + 0.05) * cal_mod.SETFIT_STEP_FACTOR)
    bf16 = _cal(mixed_precision="bf16")
    assert bf16.step_seconds("setfit") == pytest.approx(cal.step_seconds("setfit") * cal_mod.FLOAT32_OVER_BF16)
    # LoRA backpropagates through less and updates almost no parameters.
    assert cal.step_seconds("lora") < 0.9 * cal.step_seconds("finetune")
    assert cal.mlm_step_seconds(32) == pytest.approx(1.1 * 40 * 32 * 1e-3 + 1.5 * 0.05)
    assert cal.eval_seconds(100) == pytest.approx(100 * 24 * 2e-4)
    # A calibration made by hand (no token units) keeps the old scaling of one measured step.
    old = _cal(train_token_seconds=None, lengths={})
    assert old.step_seconds("finetune") == 0.5 and old.eval_seconds(10) == pytest.approx(0.1)


def test_longer_texts_cost_more_per_step_and_the_network_estimate_follows():
    short = estimate_rung_costs(_cal(), n_labeled=5200, train_budget="520steps")["finetune"]
    long = estimate_rung_costs(_cal(lengths={"train": 4000.0, "pairs": 4096.0, "mlm": 128.0, "eval_text": 256.0}),
                               n_labeled=5200, train_budget="520steps")["finetune"]
    assert long.step_seconds > 5 * short.step_seconds
    assert short.estimate(0.25) == pytest.approx(short.fixed + 130 * short.step_seconds)


def test_bucketed_training_batches_pad_less_than_random_pair_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 250, size=2000)
    p = length_profile(lengths, batch_size=16)
    assert p["train"] < p["pairs"] and p["train"] >= lengths.mean() * 16
    assert p["mlm"] <= 128 and p["eval_text"] >= lengths.mean()


def test_calibrate_measures_token_level_units_on_the_users_texts(tiny_encoder):
    texts = [("short text " * (1 + i % 3)).strip() for i in range(200)]
    labels = [str(i % 2) for i in range(200)]
    cal = calibrate(tiny_encoder, texts, labels, n=32, min_seconds=0.0, max_steps=5, profile_texts=200)
    assert cal.token_level and cal.train_token_seconds > 0 and cal.optimizer_seconds > 0
    assert cal.forward_token_seconds > 0 and cal.max_length == tiny_encoder.max_seq_length
    assert cal.train_step == pytest.approx(cal.train_token_seconds * cal.lengths["train"] + cal.optimizer_seconds)
    assert cal.machine and "cpus" in cal.machine


def test_a_loaded_machine_is_said_not_planned_from(tiny_encoder, monkeypatch):
    """Another job on the cores stretches the wall clock, not this process's CPU time."""
    monkeypatch.setattr(cal_mod.time, "process_time", lambda: 0.0)
    texts = [f"text number {i} with a few words" for i in range(120)]
    cal = calibrate(tiny_encoder, texts, [str(i % 2) for i in range(120)], n=32, min_seconds=0.0, max_steps=5,
                    profile_texts=120)
    assert cal.loaded and cal.cpu_share == 0.0
    assert "looks loaded" in cal.load_note and "fastest repeats" in cal.load_note


def test_one_stray_repeat_on_a_quiet_machine_is_not_a_loaded_machine():
    """A quiet tweets calibration read 1.7x from a single slow step and called the machine loaded."""
    from adaptlab.decide.calibrate import LOADED_SPREAD, repeat_spread

    quiet = np.array([1.0, 0.97, 1.03, 1.01, 0.99, 1.7])
    assert repeat_spread(quiet) < 1.1 < LOADED_SPREAD
    busy = np.array([1.0, 2.1, 0.95, 1.9, 2.2, 1.05, 2.0])  # another job on the cores, on and off
    assert repeat_spread(busy) > LOADED_SPREAD
    assert repeat_spread(np.array([1.0, 1.8])) == pytest.approx(1.8)  # too few repeats to trim


def test_the_learned_correction_is_kept_per_machine_and_scales_the_next_plan(tiny_encoder, tmp_path):
    from adaptlab.config import StudyConfig
    from adaptlab.decide.plan import study_rung_costs
    from adaptlab.store import RunStore
    from adaptlab.store.costs import cost_key, machine_id

    store = RunStore(tmp_path / "runs.sqlite")
    key = cost_key(tiny_encoder, "no", "cpu")
    assert store.learned_cost(machine_id(), key) is None
    store.learn_cost(machine_id(), key, 2.0)
    got = store.learn_cost(machine_id(), key, 2.0)
    assert got == {"ratio": pytest.approx(2.0), "runs": 2}
    assert store.learned_cost("another machine", key) is None  # kept per machine
    texts = [f"text number {i} about {'sport' if i % 2 else 'money'}" for i in range(160)]
    labels = ["a" if i % 2 else "b" for i in range(160)]
    cfg = StudyConfig(rungs=["tfidf", "finetune"], seeds=3, budget="40steps", mixed_precision="no",
                      time_budget="10min")
    costs, _ = study_rung_costs(cfg, texts, labels, encoder=tiny_encoder, store=store)
    assert costs["finetune"].correction == pytest.approx(2.0) and "learned from 2 trained run(s)" in costs["finetune"].basis
    assert costs["tfidf"].correction == 1.0  # cheap rungs are not trained runs


def test_a_study_keeps_what_its_trained_runs_cost_against_the_calibration(tiny_encoder, tmp_path):
    from synthetic import topic_corpus

    from adaptlab.config import StudyConfig
    from adaptlab.decide.plan import cost_the_study
    from adaptlab.evaluate import Study
    from adaptlab.store.costs import cost_key, machine_id

    data = topic_corpus(120, seed=2)
    study = Study(StudyConfig(rungs=["tfidf", "probe", "finetune"], seeds=3, budget="6steps", mixed_precision="no"),
                  time_budget="10min", home=tmp_path, encoder=tiny_encoder)
    cost_the_study(study, data)
    assert study.spent_before > 0  # the calibration is on the study's clock
    res = study.run(data)
    trained = [c for c in res.allocation["cells"] if c["rung"] == "finetune"]
    assert trained and all(c["measured_over_estimate"] > 0 for c in trained)
    learned = study.store.learned_cost(machine_id(), cost_key(tiny_encoder, "no", "cpu"))
    assert learned is not None and learned["runs"] == len(trained)


def test_the_calibration_times_the_epochs_largest_batch_and_fits_the_square_of_the_length():
    """On tweets (median 34 tokens, a few of 256) the one 16 x 256 batch of an epoch took 3.8 s against 0.3 s
    for a median one; a median per-token repeat read the epoch's steps 25-40% short (bench/costs.py)."""
    import numpy as np

    from adaptlab.decide.calibrate import _epoch_token_seconds, _quantile_batches
    from adaptlab.rungs.training import epoch_batches

    rng = np.random.default_rng(0)
    lengths = np.minimum(rng.lognormal(np.log(34), 0.35, 640).astype(int), 256)
    lengths[:8] = 256
    batches = epoch_batches(lengths, 16, seed=0, stage=0, epoch=0)
    timed = _quantile_batches(batches, lengths, 12, seed=0)
    assert len(timed) == 12 and lengths[timed[0]].max() == 256  # the longest batch is timed, first

    def step(b: int, n: int) -> float:  # fixed + linear + attention's square, as on a CPU
        return 0.02 + 2e-4 * b * n + 2e-6 * b * n * n

    shapes = [(len(b), int(lengths[b].max())) for b in timed]
    per = [step(b, n) / (b * n) for b, n in shapes]
    epoch = [(len(b), int(lengths[b].max())) for b in batches]
    token, fit = _epoch_token_seconds(per, shapes, epoch)
    true_mean = np.mean([step(b, n) for b, n in epoch])
    assert abs(token * np.mean([b * n for b, n in epoch]) / true_mean - 1) < 0.02
    assert np.median(per) * np.mean([b * n for b, n in epoch]) < 0.9 * true_mean  # what the median read
    assert abs(fit - 1).max() < 1e-6  # every repeat on its fitted cost: nothing looks loaded
