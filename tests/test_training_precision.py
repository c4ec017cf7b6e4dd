"""``mixed_precision="auto"`` (adaptlab.evaluate.training_precision): float32 where bf16 is not native, and
where it is, bf16 only when a short bf16 run keeps the first seed's validation F1 within the tolerance of a
short float32 run. The machine is simulated (``native_bf16`` patched) so the tests mean the same on any CPU."""
from __future__ import annotations

import pytest

from adaptlab.config import StudyConfig
from adaptlab.encoders import fast
from adaptlab.evaluate import Study
from adaptlab.evaluate import training_precision as tp
from adaptlab.evaluate.report import precision_lines
from adaptlab.rungs import get_rung
from adaptlab.rungs.runtime import TrainingRuntime, resolve_mixed_precision
from synthetic import topic_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"head_lr": 1e-2, "backbone_lr": 3e-3, "batch_size": 8, "max_epochs": 2}


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setattr(fast, "native_bf16", lambda device="cpu": False)


@pytest.fixture
def bf16_machine(monkeypatch):
    monkeypatch.setattr(fast, "native_bf16", lambda device="cpu": True)
    monkeypatch.setattr(tp, "GATE_STEPS", 3)


def _study(tmp_path, enc, mixed, tolerance=0.005, rungs=("finetune",)):
    cfg = StudyConfig(rungs=list(rungs), seeds=2, n_boot=200, budget="6steps", precision_tolerance=tolerance,
                      rung_params={r: {**FAST, "mixed_precision": mixed} for r in rungs})
    return Study(cfg, home=tmp_path, encoder=enc)


def _keys(result):
    return [p["result_key"] for p in result.per_seed]


def test_auto_is_float32_without_native_bf16_and_keeps_the_float32_keys(no_bf16, tiny_encoder, tmp_path):
    assert resolve_mixed_precision("auto", "cpu")[0] == "no"
    assert TrainingRuntime("auto", device="cpu").mixed_precision == "no"  # a rung fitted outside a study
    data = topic_corpus(90, seed=0)
    plain = _study(tmp_path / "a", tiny_encoder, "no").run(data)
    auto = _study(tmp_path / "b", tiny_encoder, "auto").run(data)
    assert _keys(auto) == _keys(plain)  # the resolved precision is what the keys carry
    assert auto.study_id == plain.study_id  # the id hashes what auto became: this is the float32 study
    choice = auto.data["training_precision"]["finetune"]
    assert choice["used"] == "no" and choice["precision"] == "fp32" and choice["fp32_f1"] is None
    assert "no native bf16" in choice["message"]
    assert not (tmp_path / "b" / "precision_gates").exists(), "no gate without native bf16"
    assert "training_precision" not in plain.data


def test_the_gate_refuses_bf16_when_validation_f1_drops_beyond_tolerance(bf16_machine, tiny_encoder, tmp_path,
                                                                         monkeypatch):
    real, calls = tp.gate_validation_f1, []

    def bf16_hurts(rung, precision, *args, **kwargs):
        calls.append((rung.name, precision))
        f1 = real(rung, precision, *args, **kwargs)
        return f1 - 0.2 if precision == "bf16" else f1  # forced: bf16 costs 20 F1 points here

    monkeypatch.setattr(tp, "gate_validation_f1", bf16_hurts)
    data = topic_corpus(90, seed=0)
    res = _study(tmp_path, tiny_encoder, "auto").run(data)
    assert calls == [("finetune", "no"), ("finetune", "bf16")]  # one gate for the rung, on the first seed
    choice = res.data["training_precision"]["finetune"]
    assert choice["used"] == "no" and choice["bf16_f1"] == pytest.approx(choice["fp32_f1"] - 0.2)
    assert "bf16 rejected, training in float32" in choice["message"] and "-20.00 points" in choice["message"]
    assert all(p["diagnostics"]["runtime"]["mixed_precision"] == "no" for p in res.per_seed)
    plain = _study(tmp_path / "plain", tiny_encoder, "no").run(data)
    assert _keys(res) == _keys(plain)
    assert any("bf16 rejected" in line for line in precision_lines(res))
    # A rerun reads the stored decision: no gate, the same cells, all from the run store.
    again = _study(tmp_path, tiny_encoder, "auto").run(data)
    assert len(calls) == 2 and _keys(again) == _keys(res) and again.n_trained == 0
    assert not list((tmp_path / "precision_gates").glob("*/")), "the gate's checkpoints are not kept"


def test_the_gate_accepts_bf16_within_tolerance_and_the_report_names_it(bf16_machine, tiny_encoder, tmp_path):
    from adaptlab.report import build_report

    data = topic_corpus(90, seed=0)
    res = _study(tmp_path, tiny_encoder, "auto", tolerance=0.99).run(data)  # any drop is accepted
    choice = res.data["training_precision"]["finetune"]
    assert choice["used"] == "bf16" and choice["steps"] == 3 and 0 <= choice["fp32_f1"] <= 1
    assert "bf16 accepted: validation F1" in choice["message"]
    assert all(p["diagnostics"]["runtime"]["mixed_precision"] == "bf16" for p in res.per_seed)
    explicit = _study(tmp_path / "explicit", tiny_encoder, "bf16").run(data)
    assert _keys(res) == _keys(explicit)
    report = build_report(_store(tmp_path), res.study_id, home=tmp_path)
    assert "finetune training precision: bf16" in report.markdown
    assert "finetune training precision</th><td>bf16" in report.html


def _store(home):
    from adaptlab.store import RunStore

    return RunStore(home / "runs.sqlite")


def test_auto_is_a_valid_setting_and_a_bad_one_names_it():
    assert get_rung("lora", {"mixed_precision": "auto"}).config.mixed_precision == "auto"
    from adaptlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"lora\.mixed_precision.*no, bf16, fp16, auto"):
        get_rung("lora", {"mixed_precision": "automatic"})


def test_the_transfer_note_says_what_auto_became_for_the_chosen_rung():
    from adaptlab.decide import Evidence, decide, transfer_note

    ev = Evidence.from_tables({"probe": [0.70, 0.71, 0.70], "finetune": [0.90, 0.91, 0.90]}, n_labels=800)
    msg = "finetune: auto: this CPU runs bf16 natively; bf16 accepted: validation F1 0.9000 vs float32 0.9010"
    ev.training_precision = {"finetune": {"precision": "bf16", "used": "bf16", "message": msg}}
    d = decide(ev)
    assert d.chosen == "finetune"
    assert f"Trained in bf16: {msg}." in transfer_note(d, ev).trainable
    ev.training_precision = None
    assert "Trained in" not in transfer_note(d, ev).trainable


def _default_study(tmp_path, enc, tolerance=0.005, **kw):
    """A study that says nothing of precision: its training rungs take the study's default, ``auto``."""
    cfg = StudyConfig(rungs=["finetune"], seeds=2, n_boot=200, budget="6steps", precision_tolerance=tolerance,
                      rung_params={"finetune": dict(FAST)}, **kw)
    return Study(cfg, home=tmp_path, encoder=enc)


def test_auto_is_the_study_default_and_float32_there_keeps_the_float32_study(no_bf16, tiny_encoder, tmp_path):
    assert StudyConfig().mixed_precision == "auto"
    data = topic_corpus(90, seed=0)
    default = _default_study(tmp_path, tiny_encoder).run(data)
    assert default.data["training_precision"]["finetune"]["used"] == "no"
    plain = _default_study(tmp_path / "plain", tiny_encoder, mixed_precision="no").run(data)
    assert "training_precision" not in plain.data
    assert _keys(default) == _keys(plain) and default.study_id == plain.study_id
    # A rung's own setting beats the study's.
    own = _study(tmp_path / "own", tiny_encoder, "no")
    assert own.rungs[0].config.mixed_precision == "no" and own._study_precision_rungs == []
    with pytest.raises(Exception, match="mixed_precision='fp8' is not valid"):
        StudyConfig(mixed_precision="fp8")


def test_the_default_trains_in_bf16_where_native_with_the_id_of_a_bf16_study(bf16_machine, tiny_encoder, tmp_path,
                                                                            monkeypatch):
    seen = []
    real = tp.gate_validation_f1

    def spy(rung, precision, train, val, **kwargs):
        seen.append((len(train), len(val), len(kwargs["context"].unlabeled or [])))
        return real(rung, precision, train, val, **kwargs)

    monkeypatch.setattr(tp, "gate_validation_f1", spy)
    monkeypatch.setattr(fast, "GATE_MAX_TEXTS", 20)  # the gate trains on samples of the split
    data, unlabeled = topic_corpus(120, seed=0), topic_corpus(90, seed=1)
    unlabeled = type(unlabeled)(unlabeled.texts)
    res = _default_study(tmp_path, tiny_encoder, tolerance=0.99).run(data, unlabeled=unlabeled)
    assert res.data["training_precision"]["finetune"]["used"] == "bf16"
    assert all(p["diagnostics"]["runtime"]["mixed_precision"] == "bf16" for p in res.per_seed)
    assert seen and all(n_train <= 20 and n_val <= 20 and n_unl <= 40 for n_train, n_val, n_unl in seen)
    explicit = _default_study(tmp_path, tiny_encoder, tolerance=0.99, mixed_precision="bf16").run(
        data, unlabeled=unlabeled)
    assert explicit.study_id == res.study_id and _keys(explicit) == _keys(res) and explicit.n_trained == 0


def test_under_a_launcher_the_default_trains_in_float32_and_an_explicit_auto_fails(bf16_machine, tiny_encoder,
                                                                                  tmp_path):
    from adaptlab.errors import ConfigError
    from adaptlab.rungs import RungContext

    rung, data = get_rung("finetune", {**FAST, "mixed_precision": "auto"}), topic_corpus(40, seed=0)
    ctx = RungContext(classes=sorted(set(data.labels)), encoder=tiny_encoder)
    args = dict(seed=0, context=ctx, tolerance=0.005, home=tmp_path, key="k", can_train=False)
    choice = tp.choose_training_precision(rung, data, data, asked=False, **args)
    assert choice.used == "no" and "cannot run under a multi-process launch" in choice.message
    with pytest.raises(ConfigError, match="multi-process launch cannot run"):
        tp.choose_training_precision(rung, data, data, **args)


def test_a_study_that_asked_for_bf16_before_the_study_setting_keeps_its_id():
    """Earlier versions copied --mixed-precision into each training rung's rung_params and hashed that."""
    before = StudyConfig(rungs=["probe", "lora", "refit"],
                         rung_params={"lora": {"r": 4, "mixed_precision": "bf16"}, "refit": {"mixed_precision": "bf16"}})
    stored_then = {**{k: v for k, v in before.to_dict().items() if k != "mixed_precision"}, "encode_precision": "fp32"}
    now = StudyConfig(rungs=["probe", "lora", "refit"], rung_params={"lora": {"r": 4}}, mixed_precision="bf16")
    assert now.identity("fp32", {"lora": "bf16", "refit": "bf16"}) == stored_then
    # An explicit "no" (a rung's or the study's) is float32, every rung's own default: the id of no setting.
    plain = {**{k: v for k, v in StudyConfig(rungs=["probe", "lora"]).to_dict().items() if k != "mixed_precision"},
             "encode_precision": "fp32"}
    assert StudyConfig(rungs=["probe", "lora"], rung_params={"lora": {"mixed_precision": "no"}}).identity("fp32") == plain
    assert StudyConfig(rungs=["probe", "lora"], mixed_precision="no").identity("fp32", {"lora": "no"}) == plain


@pytest.mark.parametrize("native", [True, False])
def test_ship_trains_in_what_the_studys_rung_trained_in_where_native(native, tiny_encoder_dir, tmp_path, monkeypatch):
    from adaptlab.ship import ship_model

    monkeypatch.setattr(fast, "native_bf16", lambda device="cpu": native)
    said = []
    reg = ship_model(topic_corpus(90, seed=0), tmp_path / "m", rung="finetune", encoder=str(tiny_encoder_dir),
                     budget="4steps", home=tmp_path / "h", extra={"training_precision": "bf16"}, progress=said.append)
    manifest = reg.load().manifest_
    assert manifest["rung_config"]["mixed_precision"] == ("bf16" if native else "no")
    assert any("does not run natively: training in float32" in m for m in said) is not native
    card = next((tmp_path / "m" / "versions").glob("*/MODEL_CARD.md")).read_text()
    assert ("mixed_precision=bf16" in card) is native and "backbone_lr=3e-05" in card  # not rounded to 0.0000
