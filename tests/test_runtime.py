"""Mixed precision, the fp16 overflow guard and multi-process (DDP) training through accelerate
(adaptlab.rungs.runtime) in both training loops, on the CPU: bf16 autocast, two gloo processes
launched with torch.distributed.run. Real fp16 needs a GPU; its guard is driven here by a runtime
that reports the skipped steps a loss scaler would."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from adaptlab.errors import ConfigError
from adaptlab.rungs import RungContext, get_rung
from adaptlab.rungs.refit import RefitConfig, refit_encoder
from adaptlab.rungs.runtime import NonFiniteGuard, NonFiniteStepsError, TrainingRuntime
from adaptlab.rungs.training import TrainingConfig
from launch import run_processes
from synthetic import topic_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"head_lr": 1e-2, "backbone_lr": 3e-3, "batch_size": 8, "max_epochs": 2}
CLASSES = ["money", "sport", "tech"]
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def enc(mlm_dir):
    from adaptlab.encoders import Encoder

    return Encoder.from_pretrained(mlm_dir, device="cpu")


@pytest.fixture
def data():
    ds = topic_corpus(60, seed=0)
    return ds.subset(range(40)), ds.subset(range(40, 60))


# ------------------------------------------------------------------------------------------ settings
def test_bad_mixed_precision_names_the_field_and_the_values():
    with pytest.raises(ConfigError, match=r"finetune\.mixed_precision.*one of no, bf16, fp16"):
        get_rung("finetune", {"mixed_precision": "fp8"})
    with pytest.raises(ConfigError, match=r"refit\.mixed_precision"):
        RefitConfig(mixed_precision="half")


def test_fp16_on_a_cpu_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"fp16 needs a CUDA GPU.*bf16"):
        TrainingRuntime("fp16", device="cpu")


def test_float32_keeps_its_result_key_and_bf16_gets_another(enc):
    ctx = RungContext(classes=CLASSES, encoder=enc)
    plain = get_rung("finetune", FAST).identity(ctx)
    assert "mixed_precision" not in plain["config"]  # stored float32 results stay valid
    assert get_rung("finetune", {**FAST, "mixed_precision": "no"}).identity(ctx) == plain
    assert get_rung("finetune", {**FAST, "mixed_precision": "bf16"}).identity(ctx) != plain
    assert "mixed_precision" not in RefitConfig().training_identity()
    assert RefitConfig(mixed_precision="bf16").training_identity()["mixed_precision"] == "bf16"


def test_runtimes_of_different_precisions_follow_each_other_in_one_process():
    # accelerate keeps one precision per process; a study trains fp32 and bf16 rungs one after the other.
    assert TrainingRuntime("bf16", device="cpu").mixed_precision == "bf16"
    rt = TrainingRuntime("no", device="cpu")
    with rt.autocast():
        assert not torch.is_autocast_enabled("cpu")


# ------------------------------------------------------------------------------------------ bf16
def test_bf16_finetune_computes_in_bf16_and_returns_a_float32_model(enc, data):
    tr, va = data
    seen: set = set()
    rung = get_rung("finetune", {**FAST, "mixed_precision": "bf16"})

    def record(_m, _i, out):
        if torch.is_grad_enabled():
            seen.add(out.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: record(m, i, o) if isinstance(m, torch.nn.Linear) else None)
    try:
        fitted = rung.fit(tr, va, seed=0, context=RungContext(classes=CLASSES, encoder=enc))
    finally:
        handle.remove()
    assert torch.bfloat16 in seen  # the training forward ran under autocast
    d = fitted.diagnostics_
    assert d["runtime"]["mixed_precision"] == "bf16" and d["runtime"]["num_processes"] == 1
    assert all(np.isfinite(h["train_loss"]) for h in d["history"] if h["train_loss"] is not None)
    # The trained model is plain float32 with its own forward: predictions carry no autocast.
    assert all(p.dtype == torch.float32 for p in fitted.model.parameters())
    assert "forward" not in vars(fitted.model)
    proba = fitted.predict_proba(va.texts)
    assert proba.dtype == np.float32 or proba.dtype == np.float64
    assert np.allclose(proba.sum(1), 1.0, atol=1e-5)


def test_bf16_refit_records_its_runtime(enc, tmp_path):
    texts = topic_corpus(60, seed=3).texts
    cfg = RefitConfig(budget="4steps", batch_size=8, max_seq_length=32, estimate_steps=1, mixed_precision="bf16")
    out = refit_encoder(enc, texts, cfg, seed=0, home=tmp_path)
    m = out.manifest
    assert m["runtime"]["mixed_precision"] == "bf16" and m["runtime"]["skipped_steps"] == 0
    assert m["steps"] == 4 and all(np.isfinite(m["loss_curve"]))
    fp32 = refit_encoder(enc, texts, RefitConfig(**{**cfg.__dict__, "mixed_precision": "no"}), seed=0, home=tmp_path)
    assert fp32.key != out.key and not fp32.reused


# ------------------------------------------------------------------------------------------ fp16 guard
class _OverflowingRuntime(TrainingRuntime):
    """What an fp16 loss scaler reports: the listed optimizer steps (1-based) overflowed and were skipped."""

    def __init__(self, skipped_steps, **kw):
        super().__init__("no", device="cpu", **kw)
        self.mixed_precision = "fp16"  # the loops' fp16 branch, without a GPU
        self._skip = set(skipped_steps)
        self._n = 0

    def prepare_optimizer(self, optimizer):
        runtime = self
        real_step = optimizer.step

        def step(*a, **k):
            runtime._n += 1
            if runtime._n not in runtime._skip:  # a skipped step leaves the weights as they were
                return real_step(*a, **k)

        optimizer.step = step
        return optimizer

    @property
    def step_was_skipped(self) -> bool:
        return self._n in self._skip


def test_guard_counts_skips_and_stops_a_run_of_them():
    g = NonFiniteGuard(max_consecutive=3)
    for skipped in (True, True, False, True):
        g.record(skipped=skipped)
    assert g.skipped == 3 and g.consecutive == 1
    g.record(skipped=True)
    with pytest.raises(NonFiniteStepsError, match="3 optimizer steps in a row"):
        g.record(skipped=True, step=9, hint="Lower the learning rate.")


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_skipped_fp16_steps_do_not_advance_the_schedule_and_are_reported(enc, data, tmp_path):
    from adaptlab.rungs.training import Stage, TextClassifier, Trainer, encode_texts

    tr, va = data
    index = {c: i for i, c in enumerate(CLASSES)}
    y_tr = np.array([index[c] for c in tr.labels]); y_va = np.array([index[c] for c in va.labels])
    ids_tr, ids_va = encode_texts(enc.tokenizer, tr.texts, 32), encode_texts(enc.tokenizer, va.texts, 32)

    def fit(runtime, epochs=2):
        torch.manual_seed(0)
        import copy

        model = TextClassifier(copy.deepcopy(enc.model), enc.pool, enc.dim, 3)
        trainer = Trainer(model, config=TrainingConfig(**FAST), classes=CLASSES, seed=0, runtime=runtime)
        return trainer.fit(ids_tr, y_tr, ids_va, y_va, [Stage("all", lambda n, u: True, epochs, 10)],
                           pad_id=0)

    plain = fit(TrainingRuntime("no", device="cpu"))
    res = fit(_OverflowingRuntime({1, 2}))
    assert res.runtime["skipped_steps"] == 2 and res.steps == plain.steps == 10
    # 10 planned steps, 1 of warm-up, then linear decay: lr = head_lr * (10 - k) / 9 after k schedule
    # steps. Skipped updates do not move the schedule: 3 moves by step 5 and 8 by step 10, not 5 and 10.
    assert [h["lr_head"] for h in plain.history] == pytest.approx([1e-2 * 5 / 9, 0.0])
    assert [h["lr_head"] for h in res.history] == pytest.approx([1e-2 * 7 / 9, 1e-2 * 2 / 9])
    with pytest.raises(NonFiniteStepsError, match=r"in a row were skipped.*backbone_lr"):
        fit(_OverflowingRuntime(set(range(1, 100))), epochs=6)  # 30 steps: the 25th skip in a row stops it


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_refit_fp16_guard_stops_a_run_that_keeps_overflowing(enc, tmp_path, monkeypatch):
    from adaptlab.rungs.refit import train as train_mod

    texts = topic_corpus(60, seed=3).texts
    cfg = RefitConfig(budget="8steps", batch_size=8, max_seq_length=32, estimate_steps=1, max_skipped_steps=3)
    real = train_mod.train

    def with_runtime(skips):
        def patched(*a, **k):
            return real(*a, **{**k, "runtime": _OverflowingRuntime(skips, find_unused_parameters=False)})
        return patched

    monkeypatch.setattr("adaptlab.rungs.refit.core.train", with_runtime({1, 2}))
    out = refit_encoder(enc, texts, cfg, seed=0, home=tmp_path / "a")
    assert out.manifest["runtime"]["skipped_steps"] == 2 and out.manifest["steps"] == 8
    monkeypatch.setattr("adaptlab.rungs.refit.core.train", with_runtime(set(range(1, 100))))
    with pytest.raises(NonFiniteStepsError, match=r"3 optimizer steps in a row.*lr="):
        refit_encoder(enc, texts, cfg, seed=0, home=tmp_path / "b")


# ------------------------------------------------------------------------------------------ DDP
def _launch(encoder_dir: Path, out: Path, what: str, nproc: int, *extra: str, expect: int = 0) -> None:
    proc = run_processes([str(TESTS / "ddp_worker.py"), str(encoder_dir), str(out), what, *extra], nproc)
    assert (proc.returncode == 0) == (expect == 0), proc.stderr[-3000:]


def test_two_processes_train_the_same_model_as_one(mlm_dir, tmp_path):
    """DDP over 2 CPU processes, with a last batch of one text (one process idle): same steps, same
    history and the same weights (to float rounding) as one process."""
    from safetensors.torch import load_file

    _launch(mlm_dir, tmp_path / "one", "finetune", 1)
    _launch(mlm_dir, tmp_path / "two", "finetune", 2)
    one = json.loads((tmp_path / "one" / "result.json").read_text())
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    assert one["runtime"]["num_processes"] == 1
    assert two["runtime"]["num_processes"] == 2 and two["runtime"]["distributed_type"] == "multi_cpu"
    keys = ("step", "samples_seen", "train_f1", "val_f1")
    assert [{k: h[k] for k in keys} for h in one["history"]] == [{k: h[k] for k in keys} for h in two["history"]]
    for h1, h2 in zip(one["history"], two["history"]):
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], abs=1e-5)
        assert h1["val_loss"] == pytest.approx(h2["val_loss"], abs=1e-5)
    w1, w2 = load_file(str(tmp_path / "one" / "weights.safetensors")), load_file(str(tmp_path / "two" / "weights.safetensors"))
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5


def test_two_process_refit_is_stored_once_under_the_one_process_key(mlm_dir, tmp_path):
    _launch(mlm_dir, tmp_path / "two", "refit", 2)
    res = json.loads((tmp_path / "two" / "result.json").read_text())
    m = res["manifest"]
    assert m["runtime"]["num_processes"] == 2 and m["steps"] == 3
    # The global batch is split, not multiplied: the same texts per step as one process.
    assert m["samples"] == 15
    folders = list((tmp_path / "two" / "home" / "refits").iterdir())
    assert [f.name for f in folders] == [res["key"]]
    assert (folders[0] / "manifest.json").is_file() and (folders[0] / "encoder").is_dir()
    assert not (folders[0] / "training.lock").exists()


def test_refit_rung_result_key_is_unchanged_for_float32(enc):
    from adaptlab.rungs.refit.config import RefitConfig as C

    ctx = RungContext(classes=CLASSES, encoder=enc)
    ident = get_rung("refit", {"budget": "4steps"}).identity(ctx)
    # The fields a float32 refit had before mixed precision existed, and no others.
    old_fields = {f for f in C.__dataclass_fields__ if f not in ("mixed_precision", "max_skipped_steps", "long_text")}
    assert set(ident["config"]) == old_fields
    assert get_rung("refit", {"budget": "4steps", "long_text": "chunk_mean"}).identity(ctx) != ident
    assert get_rung("refit", {"budget": "4steps", "max_skipped_steps": 5}).identity(ctx) == ident
    assert get_rung("refit", {"budget": "4steps", "mixed_precision": "bf16"}).identity(ctx)["config"][
        "mixed_precision"] == "bf16"


def test_an_interrupted_two_process_refit_resumes_from_the_main_process_checkpoint(mlm_dir, tmp_path):
    out = tmp_path / "two"
    _launch(mlm_dir, out, "refit", 2, "6", "5", expect=1)  # both processes stop after step 5
    folder = next((out / "home" / "refits").iterdir())
    state = json.loads((folder / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4 and not (folder / "manifest.json").exists()  # last checkpoint: step 4
    _launch(mlm_dir, out, "refit", 2, "6")
    m = json.loads((out / "result.json").read_text())["manifest"]
    assert m["steps"] == 6 and m["resumed_at"] == [4] and m["runtime"]["num_processes"] == 2
    assert len(m["loss_curve"]) == 6 and m["samples"] == 6 * 5


def test_the_study_report_says_which_rows_trained_in_mixed_precision(enc, tmp_path):
    from adaptlab.config import StudyConfig
    from adaptlab.evaluate import Study
    from adaptlab.evaluate.report import network_lines, network_signatures

    cfg = StudyConfig(rungs=["finetune", "lora"], seeds=1, n_boot=200, budget="6steps",
                      rung_params={"finetune": {**FAST, "mixed_precision": "bf16"}, "lora": {"batch_size": 8}})
    res = Study(cfg, home=tmp_path, encoder=enc).run(topic_corpus(90, seed=0))
    sig = network_signatures(res)
    assert sig["finetune"]["mixed_precision"] == ["bf16"] and sig["lora"]["mixed_precision"] == ["no"]
    lines = "\n".join(network_lines(res))
    assert "finetune:" in lines and "trained in bf16 mixed precision" in lines
    assert "lora:" in lines and lines.count("mixed precision") == 1


# ------------------------------------------------------------------------------------------ resident memory
def _rss_mb() -> float:
    import os

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_trim_heap_gives_freed_blocks_back_to_the_os():
    from adaptlab.encoders.heap import bound_heap_growth, trim_heap

    if not bound_heap_growth():
        pytest.skip("glibc only (the heap thresholds are glibc's)")
    blocks = [np.ones(100_000 // 8) for _ in range(2000)]  # 200 MB of blocks under the 1 MiB mmap threshold
    last = blocks[-1]  # one live block at the top: free() alone cannot shrink the heap below it
    del blocks
    held = _rss_mb()
    assert trim_heap()
    assert held - _rss_mb() > 100, "the freed blocks stayed resident"
    assert last.sum() == 100_000 // 8


def test_both_training_loops_trim_the_heap_after_every_cpu_step(enc, data, tmp_path, monkeypatch):
    from adaptlab.rungs import runtime

    calls: list[int] = []
    monkeypatch.setattr(runtime, "trim_heap", lambda: calls.append(1) or True)
    tr, va = data
    fitted = get_rung("finetune", {**FAST, "max_epochs": 1}).fit(
        tr, va, seed=0, context=RungContext(classes=CLASSES, encoder=enc))
    assert len(calls) == fitted.selected_["steps"] == 5  # 40 texts, batch 8, one epoch
    calls.clear()
    cfg = RefitConfig(budget="3steps", batch_size=8, max_seq_length=32, estimate_steps=1)
    out = refit_encoder(enc, topic_corpus(60, seed=3).texts, cfg, seed=0, home=tmp_path)
    assert out.manifest["steps"] == 3 and len(calls) == 3
