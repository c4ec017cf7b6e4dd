"""Multi-task model with frozen heads (issue #9, seed 002's third freezing scenario), on tiny random encoders."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adaptlab.errors import ConfigError
from adaptlab.rungs.multitask import MultiTaskModel
from synthetic import topic_corpus


@pytest.fixture
def tasks():
    train = topic_corpus(72, seed=1)
    val = topic_corpus(36, seed=2)
    sport = lambda ds: ["sport" if y == "sport" else "other" for y in ds.labels]  # noqa: E731
    return {
        "train": {"topic": (train.texts, train.labels), "sport": (train.texts, sport(train))},
        "val": {"topic": (val.texts, val.labels), "sport": (val.texts, sport(val))},
    }


def _model(encoder, **kw):
    params = dict(epochs=3, batch_size=16, backbone_lr=1e-3, head_lr=1e-2, seed=0)
    params.update(kw)
    return MultiTaskModel(encoder, **params)


def _head_state(mt, task):
    return {k: v.detach().clone() for k, v in mt.heads_[task].head.state_dict().items()}


def test_frozen_head_is_bit_identical_and_its_metric_reported_before_and_after(tiny_encoder, tasks, one_torch_thread):
    mt = _model(tiny_encoder)
    first = mt.fit({"topic": tasks["train"]["topic"]}, eval_data={"topic": tasks["val"]["topic"]})
    assert first.task("topic").role == "trained" and not first.task("topic").head_unchanged
    frozen_before = _head_state(mt, "topic")
    topic_pred_before = mt.predict("topic", tasks["val"]["topic"][0])

    rep = mt.fit({"sport": tasks["train"]["sport"]}, freeze_heads=["topic"], eval_data=tasks["val"])

    after = _head_state(mt, "topic")
    assert all(torch.equal(frozen_before[k], after[k]) for k in frozen_before)  # bit-identical
    topic = rep.task("topic")
    assert topic.role == "frozen" and topic.head_unchanged
    # Measured before and after on the same held-out texts; the shared encoder moved under it.
    assert rep.encoder_moved and rep.encoder_relative_change > 0
    assert topic.before["n"] == topic.after["n"] == 36
    assert topic.delta_f1 == pytest.approx(mt.evaluate({"topic": tasks["val"]["topic"]})["topic"]["f1"]
                                           - topic.before["f1"])
    # The frozen head sees moved features, so at least some of its predictions change.
    assert (mt.predict("topic", tasks["val"]["topic"][0]) != topic_pred_before).any()
    assert rep.task("sport").role == "trained" and not rep.task("sport").head_unchanged
    assert any("topic (frozen" in line for line in rep.summary_lines())


def test_frozen_encoder_and_frozen_head_leave_that_task_exactly_unchanged(tiny_encoder, tasks, one_torch_thread):
    mt = _model(tiny_encoder)
    mt.fit({"topic": tasks["train"]["topic"]})
    backbone = {k: v.clone() for k, v in mt.backbone_.state_dict().items()}
    rep = mt.fit({"sport": tasks["train"]["sport"]}, freeze_heads=["topic"], freeze_encoder=True,
                 eval_data=tasks["val"])
    assert all(torch.equal(backbone[k], v) for k, v in mt.backbone_.state_dict().items())
    assert not rep.encoder_moved and rep.encoder_relative_change == 0.0
    assert rep.task("topic").delta_f1 == 0.0
    assert not rep.task("sport").head_unchanged


def test_frozen_head_with_data_trains_only_the_encoder(tiny_encoder, tasks, one_torch_thread):
    mt = _model(tiny_encoder)
    mt.fit({"topic": tasks["train"]["topic"], "sport": tasks["train"]["sport"]})
    before = _head_state(mt, "topic")
    rep = mt.fit({"topic": tasks["train"]["topic"], "sport": tasks["train"]["sport"]}, freeze_heads=["topic"])
    assert rep.task("topic").role == "frozen head, loss on encoder" and rep.task("topic").head_unchanged
    assert all(torch.equal(before[k], v) for k, v in _head_state(mt, "topic").items())
    assert rep.encoder_moved


def test_joint_and_in_turn_training(tiny_encoder, tasks, one_torch_thread):
    joint = _model(tiny_encoder)
    rj = joint.fit(tasks["train"], eval_data=tasks["val"], mode="joint")
    turn = _model(tiny_encoder)
    rt = turn.fit(tasks["train"], eval_data=tasks["val"], mode="in_turn")
    # Same data, same epochs: the same number of optimizer steps (ceil(72/16) = 5 per task and epoch).
    assert rj.steps == rt.steps == 2 * 3 * 5
    for rep in (rj, rt):
        assert {t.task: t.role for t in rep.tasks} == {"topic": "trained", "sport": "trained"}
        assert not any(t.head_unchanged for t in rep.tasks)
        # Training beat the untrained heads on held-out texts for the 3-class task.
        assert rep.task("topic").after["f1"] > rep.task("topic").before["f1"]
    # In turn, the topic head is trained first and then the encoder moves under it for "sport":
    # the two schedules end in different weights.
    assert not torch.equal(joint.heads_["topic"].head.weight, turn.heads_["topic"].head.weight)
    # The caller's encoder is never modified.
    assert joint.base_fingerprint_ == tiny_encoder.fingerprint == tiny_encoder.refresh_fingerprint()


def test_same_seed_same_weights(tiny_encoder, tasks, one_torch_thread):
    a = _model(tiny_encoder)
    a.fit(tasks["train"])
    b = _model(tiny_encoder)
    b.fit(tasks["train"])
    assert all(torch.equal(a.heads_[t].head.weight, b.heads_[t].head.weight) for t in ("topic", "sport"))


def test_save_load_round_trip_keeps_every_head(tiny_encoder, tasks, tmp_path, one_torch_thread):
    mt = _model(tiny_encoder)
    mt.fit({"topic": tasks["train"]["topic"]})
    mt.fit({"sport": tasks["train"]["sport"]}, freeze_heads=["topic"], eval_data=tasks["val"])
    folder = mt.save(tmp_path / "mt")
    assert (folder / "encoder" / "model.safetensors").is_file()  # the encoder moved: copied
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.bin"))
    back = MultiTaskModel.load(folder)
    assert back.tasks_ == mt.tasks_
    texts = tasks["val"]["topic"][0]
    for t in ("topic", "sport"):
        np.testing.assert_array_equal(back.predict(t, texts), mt.predict(t, texts))
        np.testing.assert_allclose(back.predict_proba(t, texts), mt.predict_proba(t, texts), atol=1e-6)
    assert [r.to_dict() for r in back.history_] == [r.to_dict() for r in mt.history_]
    assert back.history_[1].task("topic").role == "frozen"

    # Tampering with the heads is refused, never loaded.
    heads = folder / "heads.safetensors"
    raw = bytearray(heads.read_bytes())
    raw[-1] ^= 0xFF
    heads.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="SHA-256"):
        MultiTaskModel.load(folder)


def test_unmoved_encoder_is_referenced_not_copied(tiny_encoder, tasks, tmp_path, one_torch_thread):
    mt = _model(tiny_encoder)
    mt.fit({"topic": tasks["train"]["topic"]}, freeze_encoder=True)
    folder = mt.save(tmp_path / "heads-only")
    assert not (folder / "encoder").exists()
    man = json.loads((folder / "multitask.json").read_text())
    assert man["encoder"]["fingerprint"] == tiny_encoder.fingerprint
    back = MultiTaskModel.load(folder)
    np.testing.assert_array_equal(back.predict("topic", tasks["val"]["topic"][0]),
                                  mt.predict("topic", tasks["val"]["topic"][0]))


def test_referenced_encoder_that_changed_is_refused(tasks, tmp_path, one_torch_thread):
    from adaptlab.encoders import Encoder
    from tiny_models import build_tiny_encoder

    enc = Encoder.from_pretrained(build_tiny_encoder(tmp_path / "enc", seed=0), device="cpu")
    mt = _model(enc)
    mt.fit({"topic": tasks["train"]["topic"]}, freeze_encoder=True)
    folder = mt.save(tmp_path / "mt")
    build_tiny_encoder(tmp_path / "enc", seed=5)  # someone overwrote the referenced weights
    with pytest.raises(ConfigError, match="weights changed since"):
        MultiTaskModel.load(folder)


def test_user_errors_name_the_fix(tiny_encoder, tasks):
    mt = _model(tiny_encoder)
    with pytest.raises(ConfigError, match="mode='both' is not valid"):
        mt.fit(tasks["train"], mode="both")
    with pytest.raises(ConfigError, match="tasks with a head"):
        mt.fit({"topic": tasks["train"]["topic"]}, freeze_heads=["nope"])
    mt.add_task("topic", ["money", "sport", "tech"])
    with pytest.raises(ConfigError, match="nothing to train"):
        mt.fit({"topic": tasks["train"]["topic"]}, freeze_heads=["topic"], freeze_encoder=True)
    with pytest.raises(ConfigError, match="task name"):
        mt.add_task("bad.name", ["a", "b"])
    with pytest.raises(ConfigError, match="not among its classes"):
        mt.fit({"topic": (["x", "y"], ["sport", "weather"])})
    with pytest.raises(ConfigError, match="head="):
        MultiTaskModel(tiny_encoder, head="transformer")
