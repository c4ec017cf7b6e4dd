"""Cooperative cancel (issue #36): a cancel reaches a running cell at its next step or batch, the checkpoint
is kept, and running the same work again resumes from it. Tiny random models, a few dozen steps."""
import json
import os
import signal
import threading

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cancel import CancelToken, Cancelled, cancel_on_sigint, cancel_requested, cancel_scope, check_cancelled
from adaptlab.encoders import Encoder
from adaptlab.rungs import get_rung, training
from synthetic import topic_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The training tests' settings and helpers: a cancelled and resumed run is compared with theirs.
from test_training import FAST, ctx, data, history_numbers  # noqa: E402,F401  (data is a fixture)


# ------------------------------------------------------------------------------------------------ the token
def test_a_token_is_current_only_in_its_scope_and_its_thread():
    token = CancelToken()
    token.cancel("stop here")
    seen = []
    with cancel_scope(token):
        assert cancel_requested()
        # Another thread (another web job) has its own context: this job's cancel does not reach it.
        t = threading.Thread(target=lambda: seen.append(cancel_requested()))
        t.start()
        t.join()
        with pytest.raises(Cancelled, match="stop here"):
            check_cancelled()
    assert seen == [False] and not cancel_requested()
    check_cancelled()  # no scope: nothing to cancel
    assert not isinstance(Cancelled("x"), (Exception, KeyboardInterrupt))  # no `except Exception` swallows it


def test_first_ctrl_c_requests_a_stop_and_the_second_interrupts_at_once():
    handler = signal.getsignal(signal.SIGINT)
    said = []
    with cancel_on_sigint(lambda: said.append("stopping")) as token:
        signal.raise_signal(signal.SIGINT)
        assert token.cancelled and said == ["stopping"] and cancel_requested()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is handler  # the previous handler is back


# ------------------------------------------------------------------------------------ where a cancel lands
def test_study_run_takes_a_token_and_the_same_study_runs_again_afterwards(tmp_path):
    from adaptlab.config import StudyConfig
    from adaptlab.evaluate import Study

    data = topic_corpus(60)
    token = CancelToken()
    token.cancel("cancelled before the first cell")
    study = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=100), home=tmp_path)
    with pytest.raises(Cancelled, match="before the first cell"):
        study.run(data, cancel=token)
    assert not cancel_requested()  # the token was current for that run only
    result = study.run(data)
    assert result.n_trained == 2 and result.n_from_store == 0


def test_a_cancel_stops_training_at_the_next_step_and_the_resume_gives_the_same_numbers(tiny_encoder, data,
                                                                                       tmp_path):
    tr, va = data
    params = {**FAST, "checkpoint_every": 1000}  # no periodic mid-epoch checkpoint: the cancel writes its own
    full = get_rung("finetune", params).fit(tr, va, seed=0, context=ctx(tiny_encoder, home=tmp_path / "a"))
    token = CancelToken()

    def cancel_at_11(step):  # a cancel from the web app arrives while step 11 trains
        if step == 11:
            token.cancel("cancelled by the test")

    home = tmp_path / "b"
    with cancel_scope(token), pytest.raises(Cancelled, match="step 11; its checkpoint is in"):
        get_rung("finetune", params).fit(tr, va, seed=0, context=ctx(tiny_encoder, home=home), callback=cancel_at_11)
    (state,) = list(home.glob("checkpoints/finetune/*/checkpoint.json"))
    assert json.loads(state.read_text())["step"] == 11  # mid-epoch (8 steps an epoch): the cancel's checkpoint
    resumed = get_rung("finetune", params).fit(tr, va, seed=0, context=ctx(tiny_encoder, home=home))
    assert resumed.diagnostics_["resumed_from_step"] == 11
    assert history_numbers(resumed) == history_numbers(full)
    np.testing.assert_array_equal(resumed.predict_proba(va.texts), full.predict_proba(va.texts))


def test_an_encoding_pass_stops_at_its_next_batch(tiny_encoder):
    texts = topic_corpus(40, seed=1).texts
    token = CancelToken()
    token.cancel()
    with cancel_scope(token), pytest.raises(Cancelled):
        tiny_encoder.encode(texts, batch_size=4)
    assert tiny_encoder.encode(texts, batch_size=4).shape == (40, tiny_encoder.dim)  # outside the scope: runs


def test_setfit_stops_at_its_next_step(tiny_encoder, data):
    pytest.importorskip("setfit")
    from adaptlab.config import Budget

    tr, va = data
    token = CancelToken()
    steps = []
    real = CancelToken.check

    def check(self):  # the cancel arrives during the third step
        steps.append(1)
        if len(steps) == 3:
            self.cancel("cancelled by the test")
        real(self)

    token.check = check.__get__(token)
    before = tiny_encoder.fingerprint
    with cancel_scope(token), pytest.raises(Cancelled, match="cancelled by the test"):
        get_rung("setfit", {"body_lr": 1e-3, "batch_size": 8}).fit(
            tr, va, seed=0, context=ctx(tiny_encoder, budget=Budget(steps=40)))
    assert len(steps) == 3 and tiny_encoder.fingerprint == before  # stopped at its 3rd check; encoder untouched


def test_a_cancel_checkpoints_the_refit_at_the_next_step_and_the_resume_continues(mlm_dir, tmp_path):
    from adaptlab.rungs.refit import RefitConfig, refit_encoder

    enc = Encoder.from_pretrained(mlm_dir, device="cpu")
    texts = topic_corpus(160, seed=3).texts
    cfg = RefitConfig(budget="12steps", checkpoint_every=100, batch_size=16, max_seq_length=32, lr=1e-3,
                      estimate_steps=1)
    full = refit_encoder(enc, texts, cfg, home=tmp_path / "a")
    token = CancelToken()

    def cancel_at_5(step, loss, model):
        if step == 5:
            token.cancel("cancelled by the test")

    with cancel_scope(token), pytest.raises(Cancelled, match="refit interrupted at step 5"):
        refit_encoder(enc, texts, cfg, home=tmp_path / "b", callback=cancel_at_5)
    state = json.loads(next((tmp_path / "b").glob("refits/*/checkpoint/state.json")).read_text())
    assert state["step"] == 5
    resumed = refit_encoder(enc, texts, cfg, home=tmp_path / "b")
    assert resumed.manifest["resumed_at"] == [5]
    np.testing.assert_allclose(resumed.manifest["loss_curve"], full.manifest["loss_curve"], rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ the CLI
def test_ctrl_c_in_study_run_stops_at_the_next_step_and_the_same_command_resumes(tiny_encoder_dir, tmp_path,
                                                                                monkeypatch):
    from adaptlab.cli import app
    from adaptlab.store import RunStore

    csv = tmp_path / "data.csv"
    ds = topic_corpus(90, seed=0)
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(csv, index=False)
    home = tmp_path / "home"
    args = ["study", "run", "--data", str(csv), "--rungs", "finetune", "--seeds", "1", "--budget", "30steps",
            "--encoder", str(tiny_encoder_dir), "--home", str(home), "--set", "finetune.batch_size=8"]
    real = training._Loop._step
    fired = []

    def step(self, idx, trainable):
        real(self, idx, trainable)
        if self.st.step == 5 and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl+C during step 5

    monkeypatch.setattr(training._Loop, "_step", step)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 130, r.output
    assert "stopping at the next training step" in r.output and "run the same command again" in r.output
    (state,) = list(home.glob("checkpoints/finetune/*/checkpoint.json"))
    assert json.loads(state.read_text())["step"] == 5  # the step it was pressed in, not the last epoch end
    r = CliRunner().invoke(app, args + ["--json"])
    assert r.exit_code == 0, r.output
    study_id = json.loads(r.stdout)["study_id"]
    (stored,) = RunStore(home / "runs.sqlite").study_results(study_id)
    assert stored["metrics"]["diagnostics"]["resumed_from_step"] == 5


# ------------------------------------------------------------------------------------------------ inside one call
def _cancel_at_call(obj, name, monkeypatch, token, at):
    """Wrap ``obj.name`` (one batch's forward pass) to count its calls and cancel ``token`` during call ``at``,
    as the web app's Cancel button does from another thread while the pass runs."""
    calls = []
    real = getattr(obj, name)

    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            token.cancel("cancelled by the test")
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, counting)
    return calls


def test_a_cancel_during_an_encoding_pass_stops_it_at_the_next_batch(tiny_encoder, monkeypatch):
    texts = topic_corpus(200, seed=2).texts  # 50 batches of 4
    token = CancelToken()
    calls = _cancel_at_call(tiny_encoder, "_forward", monkeypatch, token, at=3)
    with cancel_scope(token), pytest.raises(Cancelled, match="by the test"):
        tiny_encoder.encode(texts, batch_size=4)
    assert len(calls) == 3  # batch 3 finished, batch 4 of 50 never started


def test_a_cancel_during_a_fine_tuned_models_forward_pass_stops_it_at_the_next_batch(tiny_encoder, monkeypatch):
    import copy

    texts = topic_corpus(120, seed=3).texts
    model = training.TextClassifier(copy.deepcopy(tiny_encoder.model), tiny_encoder.pool, tiny_encoder.dim, 3)
    ids = training.encode_texts(tiny_encoder.tokenizer, texts, 32)
    pad = tiny_encoder.tokenizer.pad_token_id or 0
    token = CancelToken()
    calls = _cancel_at_call(model, "embed", monkeypatch, token, at=2)
    with cancel_scope(token), pytest.raises(Cancelled):
        training.forward_all(model, ids, pad, batch_size=4)  # a test-set prediction or a diagnostic's pass
    assert len(calls) == 2  # of 30 batches
    with cancel_scope(token):  # the training loop's own evaluation runs through (its loop checks after it)
        emb, _logits = training.forward_all(model, ids, pad, batch_size=4, cancellable=False)
    assert emb.shape == (120, tiny_encoder.dim) and len(calls) == 32
    with cancel_scope(token), pytest.raises(Cancelled):
        training.pooled_embeddings(model.backbone, tiny_encoder.pool, ids, pad, batch_size=4)
