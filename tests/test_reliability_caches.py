"""Self-healing caches, careful stores: a damaged embedding cache or refit folder is moved aside and recomputed;
the run store is never moved or deleted (it fails with recovery steps); a full disk keeps the previous state."""
from __future__ import annotations

import errno
import json
import sqlite3
import warnings

import numpy as np
import pytest

from adaptlab.data.dataset import text_hash
from adaptlab.encoders import EmbeddingCache, Encoder, embed
from adaptlab.errors import DiskFullError
from adaptlab.store.files import MovedAsideWarning
from tiny_models import build_tiny_encoder

TEXTS = [f"text number {i} about markets and football" for i in range(40)]


class CountingEncoder:
    """Wraps a real encoder and counts the texts it encodes."""

    def __init__(self, enc):
        self.enc, self.encoded = enc, 0
        self.fingerprint, self.dim, self.name = enc.fingerprint, enc.dim, enc.name

    def encode(self, texts, **kw):
        self.encoded += len(texts)
        return self.enc.encode(texts, **kw)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return Encoder.from_pretrained(build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", seed=0), device="cpu")


def _filled_cache(path, encoder):
    with EmbeddingCache(path) as cache:
        X = embed(encoder, TEXTS, cache=cache)
    return X


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_embedding_cache_is_moved_aside_and_recomputed(tmp_path, encoder, damage):
    path = tmp_path / "cache" / "embeddings.sqlite"
    X = _filled_cache(path, encoder)
    size = path.stat().st_size
    assert size > 8192
    with open(path, "r+b") as fh:
        if damage == "truncate":
            fh.truncate(size // 2)  # header intact: opens fine, fails on the first read
        else:
            fh.write(b"\x00garbage" * 64)  # header gone: "file is not a database"
    counting = CountingEncoder(encoder)
    with pytest.warns(MovedAsideWarning, match="moved aside") as caught:
        with EmbeddingCache(path) as cache:
            Y = embed(counting, TEXTS, cache=cache)
            assert cache.count() == len(TEXTS)  # the fresh cache holds the recomputed vectors
    np.testing.assert_allclose(Y, X, atol=1e-6)
    assert counting.encoded == len(TEXTS)
    kept = [p for p in path.parent.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(kept) == 1 and str(kept[0]) in str(caught[0].message)  # kept for inspection, named in the warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the healed cache is a normal cache: no warning, no encoding
        with EmbeddingCache(path) as cache:
            again = CountingEncoder(encoder)
            embed(again, TEXTS, cache=cache)
    assert again.encoded == 0


def test_a_study_runs_through_a_truncated_cache(tmp_path, encoder):
    from adaptlab.config import StudyConfig
    from adaptlab.evaluate import Study
    from synthetic import topic_corpus

    home = tmp_path / "home"
    cfg = StudyConfig(rungs="probe", seeds=1)
    ds = topic_corpus(90, seed=1)
    study = Study(cfg, home=home, encoder=encoder)
    study.run(ds)
    cache_file = home / "cache" / "embeddings.sqlite"
    with sqlite3.connect(cache_file) as con:  # fold the write-ahead log in, so the vectors are in the main file
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = cache_file.stat().st_size
    with open(cache_file, "r+b") as fh:
        fh.truncate(size // 3)
    assert size > 8192
    with pytest.warns(MovedAsideWarning):
        res = Study(StudyConfig(rungs="probe", seeds=2), home=home, encoder=encoder).run(ds)
    assert len(res.rows) == 1 and res.rows[0]["n_seeds"] == 2


def test_a_full_disk_during_a_cache_write_keeps_the_cache_and_says_what_to_free(tmp_path, encoder, monkeypatch):
    path = tmp_path / "cache" / "embeddings.sqlite"
    _filled_cache(path, encoder)

    def full(conn, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(EmbeddingCache, "_write_rows", staticmethod(full))
    more = [t + " extra" for t in TEXTS[:5]]
    with EmbeddingCache(path) as cache:
        with pytest.warns(UserWarning, match=r"is full .* free\) during writing 5 vectors.*rm "):
            X = embed(encoder, more, cache=cache)
        assert X.shape == (5, encoder.dim)  # the run goes on with the vectors in memory
        assert cache.count() == len(TEXTS)  # the previous contents are intact and readable
        assert not cache.get_many(cache.fingerprints()[0], [text_hash(t) for t in more])


def test_a_real_sqlite_full_error_is_recognised(tmp_path):
    # SQLite's own "database or disk is full" (SQLITE_FULL), made real with a page limit.
    from adaptlab.store.files import is_disk_full

    con = sqlite3.connect(tmp_path / "x.sqlite")
    con.execute("CREATE TABLE t (b BLOB)")
    con.commit()
    (pages,) = con.execute("PRAGMA page_count").fetchone()
    con.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.DatabaseError) as info:
        con.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    assert is_disk_full(info.value)
    con.close()


# ------------------------------------------------------------------------------------------ refits, checkpoints
from test_refit import FAST as REFIT_FAST  # noqa: E402


@pytest.fixture(scope="module")
def mlm(mlm_dir):
    return Encoder.from_pretrained(mlm_dir, device="cpu")


def test_a_damaged_refit_folder_is_moved_aside_and_trained_again(mlm, tmp_path, one_torch_thread):
    from adaptlab.rungs.refit import RefitConfig, refit_encoder
    from synthetic import topic_corpus

    texts = topic_corpus(80, seed=3).texts
    cfg = RefitConfig(budget="3steps", **REFIT_FAST)
    first = refit_encoder(mlm, texts, cfg, home=tmp_path)
    weights = next((first.path / "encoder").rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # truncated weights
    with pytest.warns(MovedAsideWarning, match="moved aside"):
        again = refit_encoder(mlm, texts, cfg, home=tmp_path)
    assert not again.reused and again.manifest["steps"] == 3
    assert again.encoder.fingerprint == first.encoder.fingerprint  # same seed, same refit
    aside = [p for p in (tmp_path / "refits").iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and (aside[0] / "manifest.json").is_file()  # kept for inspection
    (first.path / "manifest.json").write_text("{not json")
    with pytest.warns(MovedAsideWarning):
        assert not refit_encoder(mlm, texts, cfg, home=tmp_path).reused


def test_a_full_disk_at_a_refit_checkpoint_keeps_the_previous_one(mlm, tmp_path, monkeypatch, one_torch_thread):
    from adaptlab.rungs.refit import RefitConfig, refit_encoder
    from adaptlab.rungs.refit.train import Checkpointer
    from synthetic import topic_corpus

    texts = topic_corpus(80, seed=3).texts
    cfg = RefitConfig(budget="9steps", checkpoint_every=3, **REFIT_FAST)
    full = refit_encoder(mlm, texts, cfg, home=tmp_path / "a")
    real_write = Checkpointer._write

    def fill_up(tmp, model, *rest):
        if rest[-2].step >= 6:  # the state: the step-3 checkpoint is written, the step-6 one finds no space
            (tmp / "model.safetensors").parent.mkdir(parents=True, exist_ok=True)
            (tmp / "model.safetensors").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(tmp, model, *rest)

    monkeypatch.setattr(Checkpointer, "_write", staticmethod(fill_up))
    with pytest.raises(DiskFullError, match=r"is full .* during the refit checkpoint at step 6; the previous "
                                            r"checkpoint \(step 3\) .* is intact\. Free space"):
        refit_encoder(mlm, texts, cfg, home=tmp_path / "b")
    (state,) = list((tmp_path / "b").glob("refits/*/checkpoint/state.json"))
    assert json.loads(state.read_text())["step"] == 3
    assert not list((tmp_path / "b").glob("refits/*/checkpoint.tmp"))
    monkeypatch.setattr(Checkpointer, "_write", staticmethod(real_write))  # space freed: the same call resumes
    resumed = refit_encoder(mlm, texts, cfg, home=tmp_path / "b")
    assert resumed.manifest["resumed_at"] == [3]
    assert resumed.manifest["loss_curve"] == pytest.approx(full.manifest["loss_curve"], abs=1e-5)


def test_a_full_disk_at_a_training_checkpoint_keeps_the_previous_one(tiny_encoder, tmp_path, monkeypatch,
                                                                     one_torch_thread):
    from adaptlab.rungs import RungContext, get_rung
    from adaptlab.rungs.training import Trainer
    from synthetic import topic_corpus

    ds = topic_corpus(90, seed=0)
    tr, va = ds.subset(range(60)), ds.subset(range(60, 90))
    params = {"head_lr": 1e-2, "backbone_lr": 3e-3, "batch_size": 8, "max_epochs": 4, "checkpoint_every": 5}
    real_write = Trainer._write_checkpoint

    def fill_up(self, folder, tag, st, *rest):
        if st.step >= 10:
            (folder / f"weights-{tag}.safetensors").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, folder, tag, st, *rest)

    monkeypatch.setattr(Trainer, "_write_checkpoint", fill_up)
    home = tmp_path / "home"
    context = RungContext(classes=["money", "sport", "tech"], encoder=tiny_encoder, home=home)
    with pytest.raises(DiskFullError, match=r"training checkpoint at step 10; the previous checkpoint in .* intact"):
        get_rung("finetune", params).fit(tr, va, seed=0, context=context)
    (meta,) = list(home.glob("checkpoints/finetune/*/checkpoint.json"))
    saved = json.loads(meta.read_text())
    assert saved["step"] == 8  # the epoch end (8 batches) after the step-5 checkpoint
    before = json.loads((meta.parent / "checkpoint.prev.json").read_text())["tag"]  # step 5, kept beside it
    assert sorted(p.name for p in meta.parent.iterdir()) == sorted(
        ["checkpoint.json", "checkpoint.prev.json", *(name for t in (saved["tag"], before)
                                                      for name in (f"weights-{t}.safetensors", f"state-{t}.pt"))])
    monkeypatch.setattr(Trainer, "_write_checkpoint", real_write)
    resumed = get_rung("finetune", params).fit(tr, va, seed=0, context=context)
    assert resumed.diagnostics_["resumed_from_step"] == 8
