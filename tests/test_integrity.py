"""Fault injection (issue #36): flipped bytes and truncation in every kind of file adaptlab writes and later trusts.

For the embedding cache, a training checkpoint, a refit folder and its checkpoint, the run store and a shipped
model: no wrong F1 is reported or stored, the warning or error names the damaged file, and the rerun ends with the
same numbers as a clean run. Tiny random models, a few seconds each.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.config import StudyConfig
from adaptlab.errors import ConfigError
from adaptlab.evaluate import Study
from adaptlab.store import StoreError
from adaptlab.store.files import MovedAsideWarning
from adaptlab.store.integrity import (
    DamagedError,
    read_bytes_checked,
    verify_folder,
    write_bytes_checked,
    write_checksums,
)
from synthetic import topic_corpus
from test_refit import FAST as REFIT_FAST

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()


# ------------------------------------------------------------------------------------------------ helpers
def flip(path, offset=None, mask=0x5A):
    """XOR one byte of ``path`` (the middle one by default): the file keeps its size, only its content lies."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= mask
    path.write_bytes(bytes(data))


def truncate(path, keep=0.5):
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def fold_wal(db):
    """Write SQLite's write-ahead log into the main file, so editing the file edits the stored values."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def f1s(result):
    return [round(p["test"]["f1"], 12) for p in result.per_seed]


def stored_f1s(home, result):
    from adaptlab.store import RunStore

    store = RunStore(home / "runs.sqlite")
    return [round(store.get_result(p["result_key"])["metrics"]["test"]["f1"], 12) for p in result.per_seed]


def no_crash(r):
    assert "failed unexpectedly" not in r.output and "bug in adaptlab" not in r.output, r.output
    assert "Traceback" not in r.output, r.output


@pytest.fixture(scope="module")
def ds():
    return topic_corpus(90, seed=1)


# ------------------------------------------------------------------------------------------------ the helpers
def test_a_folder_verifies_until_a_byte_flips_or_it_is_truncated(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(os.urandom(4096))
    (tmp_path / "a.json").write_text("{}")
    write_checksums(tmp_path)
    assert verify_folder(tmp_path) == []
    flip(tmp_path / "sub" / "w.bin")
    (problem,) = verify_folder(tmp_path)
    assert str(tmp_path / "sub" / "w.bin") in problem and "SHA-256 does not match" in problem
    truncate(tmp_path / "sub" / "w.bin")
    assert "2,048 bytes instead of the 4,096" in verify_folder(tmp_path)[0]
    (tmp_path / "a.json").unlink()
    assert any("a.json: the file is missing" in p for p in verify_folder(tmp_path))
    (tmp_path / "checksums.json").unlink()
    assert "no checksums.json" in verify_folder(tmp_path)[0]


def test_a_file_read_against_its_checksum_names_itself(tmp_path):
    entry = write_bytes_checked(tmp_path / "w.bin", b"0123456789")
    assert read_bytes_checked(tmp_path / "w.bin", entry) == b"0123456789"
    flip(tmp_path / "w.bin")
    with pytest.raises(DamagedError, match=re.escape(str(tmp_path / "w.bin"))):
        read_bytes_checked(tmp_path / "w.bin", entry)
    with pytest.raises(DamagedError, match="no checksum was recorded"):
        read_bytes_checked(tmp_path / "w.bin", None)


def test_hashing_a_90_mb_file_takes_well_under_a_second(tmp_path):
    from adaptlab.store.files import sha256_file

    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(90 * 2**20))
    sha256_file(big)  # into the page cache, as right after a write
    t0 = time.perf_counter()
    sha256_file(big)
    assert time.perf_counter() - t0 < 1.0


# ------------------------------------------------------------------------------------------------ embedding cache
def _flip_every_vector(cache_file):
    """Flip one byte in every stored vector (the exponent of its first float): undetected, every row lies."""
    fold_wal(cache_file)
    con = sqlite3.connect(cache_file)
    blobs = [r[0] for r in con.execute("SELECT vector FROM embeddings")]
    con.close()
    data = bytearray(cache_file.read_bytes())
    hit = 0
    for blob in blobs:
        i = data.find(blob)
        if i >= 0:
            data[i + 3] ^= 0x40
            hit += 1
    cache_file.write_bytes(bytes(data))
    assert hit >= len(blobs) * 0.9
    from adaptlab.store.housekeeping import check_cache

    assert check_cache(cache_file)["damaged"] == hit  # SQLite itself sees nothing wrong: only the checksums do


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_embedding_cache_never_reaches_a_result(tmp_path, tiny_encoder, ds, damage):
    clean = Study(StudyConfig(rungs="probe", seeds=2), home=tmp_path / "clean", encoder=tiny_encoder).run(ds)
    home = tmp_path / "home"
    Study(StudyConfig(rungs="probe", seeds=2), home=home, encoder=tiny_encoder).run(ds)
    cache_file = home / "cache" / "embeddings.sqlite"
    if damage == "flip":
        _flip_every_vector(cache_file)
        r = runner.invoke(app, ["store", "check", "--home", str(home)])
        assert r.exit_code == 1 and f"{cache_file}: DAMAGED:" in r.output and "fail their checksum" in r.output
    else:
        fold_wal(cache_file)
        truncate(cache_file, 0.4)
    with pytest.warns(MovedAsideWarning, match=re.escape(str(cache_file))):
        again = Study(StudyConfig(rungs="probe", seeds=2), home=home, encoder=tiny_encoder,
                      recompute="probe").run(ds)
    assert again.n_trained == 2
    assert f1s(again) == f1s(clean)  # not one wrong number reported ...
    assert stored_f1s(home, again) == f1s(clean)  # ... or stored
    with warnings.catch_warnings(record=True) as caught:  # healed: a clean cache, the right stored results
        warnings.simplefilter("always")
        assert f1s(Study(StudyConfig(rungs="probe", seeds=2), home=home, encoder=tiny_encoder).run(ds)) == f1s(clean)
    assert not [w for w in caught if issubclass(w.category, MovedAsideWarning)]


def test_cache_rows_from_before_checksums_are_recomputed_not_trusted(tmp_path, tiny_encoder):
    from adaptlab.encoders import EmbeddingCache, embed

    path = tmp_path / "embeddings.sqlite"
    texts = [f"text {i} about football" for i in range(12)]
    with EmbeddingCache(path) as cache:
        X = embed(tiny_encoder, texts, cache=cache)
    con = sqlite3.connect(path)
    con.execute("UPDATE embeddings SET checksum = NULL, vector = zeroblob(length(vector))")  # old, and wrong
    con.commit()
    con.close()
    with EmbeddingCache(path) as cache:
        assert cache.get_many(tiny_encoder.fingerprint, []) == {}
        np.testing.assert_allclose(embed(tiny_encoder, texts, cache=cache), X, atol=1e-6)
        assert cache.verify() == {"rows": 12, "damaged": 0, "unverified": 0}


# ------------------------------------------------------------------------------------------------ training checkpoints
TRAIN = {"head_lr": 1e-2, "backbone_lr": 3e-3, "batch_size": 8, "max_epochs": 4, "checkpoint_every": 5}


def _history(fitted):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in fitted.diagnostics_["history"]]


def _damage_checkpoint(meta_file, damage):
    folder, tag = meta_file.parent, json.loads(meta_file.read_text())["tag"]
    what, name = damage.split()
    target = {"weights": folder / f"weights-{tag}.safetensors", "state": folder / f"state-{tag}.pt",
              "json": meta_file}[name]
    if name == "json":  # the step count: still valid JSON, a lie all the same
        meta = json.loads(meta_file.read_text())
        meta_file.write_text(json.dumps({**meta, "step": meta["step"] + 1}))
    else:
        (flip if what == "flip" else truncate)(target)


@pytest.mark.parametrize("damage", ["flip weights", "truncate weights", "truncate state", "flip json", "both"])
def test_a_damaged_training_checkpoint_resumes_from_the_previous_good_one_and_names_the_folder(tiny_encoder, ds,
                                                                                               tmp_path, damage):
    from adaptlab.rungs import RungContext, get_rung
    from adaptlab.rungs.training import PREVIOUS_CHECKPOINT, TrainingInterrupted

    tr, va = ds.subset(range(60)), ds.subset(range(60, 90))

    def ctx(home):
        return RungContext(classes=["money", "sport", "tech"], encoder=tiny_encoder, home=home)

    full = get_rung("finetune", TRAIN).fit(tr, va, seed=0, context=ctx(tmp_path / "a"))

    def ctrl_c(step):
        if step == 12:
            raise TrainingInterrupted("killed by the test")

    home = tmp_path / "b"
    with pytest.raises(TrainingInterrupted):
        get_rung("finetune", TRAIN).fit(tr, va, seed=0, context=ctx(home), callback=ctrl_c)
    (meta_file,) = home.glob("checkpoints/finetune/*/checkpoint.json")
    folder = meta_file.parent
    # Checkpoints at steps 5, 8 (the epoch's end) and 10: the newest and the one before it are kept.
    assert [json.loads((folder / n).read_text())["step"] for n in ("checkpoint.json", PREVIOUS_CHECKPOINT)] == [10, 8]
    if damage == "both":
        _damage_checkpoint(meta_file, "flip weights")
        _damage_checkpoint(folder / PREVIOUS_CHECKPOINT, "truncate state")
        expected, said = None, r".*starts again from step 0"
    else:
        _damage_checkpoint(meta_file, damage)
        expected, said = 8, r".*resumes from the previous checkpoint \(step 8\)"
    with pytest.warns(MovedAsideWarning, match=re.escape(str(folder)) + said):
        resumed = get_rung("finetune", TRAIN).fit(tr, va, seed=0, context=ctx(home))
    assert resumed.diagnostics_["resumed_from_step"] == expected
    assert _history(resumed) == _history(full)  # the same numbers as a run that was never interrupted
    np.testing.assert_array_equal(resumed.predict_proba(va.texts), full.predict_proba(va.texts))
    assert [p.name for p in folder.parent.iterdir() if ".corrupt-" in p.name]  # kept for inspection


def test_a_truncated_checkpoint_in_a_study_is_no_bug_report(tmp_path, tiny_encoder_dir, ds):
    """The reported failure: every rerun said "failed unexpectedly ... bug in adaptlab" (SafetensorError)."""
    import pandas as pd

    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(tmp_path / "data.csv", index=False)
    args = ["study", "run", "--data", str(tmp_path / "data.csv"), "--rungs", "finetune", "--seeds", "1",
            "--encoder", str(tiny_encoder_dir), "--budget", "6steps", "--home", str(tmp_path / "home"),
            "--set", "finetune.keep_checkpoints=true", "--set", "finetune.checkpoint_every=2", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    (meta_file,) = (tmp_path / "home").glob("checkpoints/finetune/*/checkpoint.json")
    weights = meta_file.parent / f"weights-{json.loads(meta_file.read_text())['tag']}.safetensors"  # the newest
    truncate(weights, 0.3)
    with pytest.warns(MovedAsideWarning, match=re.escape(str(weights.parent))):
        again = runner.invoke(app, args + ["--recompute", "finetune"])
    no_crash(again)
    assert again.exit_code == 0, again.output
    f1 = [json.loads(r.stdout)["rows"][0]["mean"] for r in (first, again)]
    assert f1[0] == f1[1]


# ------------------------------------------------------------------------------------------------ refits
@pytest.fixture(scope="module")
def mlm(mlm_dir):
    from adaptlab.encoders import Encoder

    return Encoder.from_pretrained(mlm_dir, device="cpu")


@pytest.mark.parametrize("damage", ["flip", "truncate", "flip manifest", "no checksums"])
def test_a_damaged_refit_folder_is_trained_again_never_used(mlm, tmp_path, damage):
    from adaptlab.rungs.refit import RefitConfig, refit_encoder

    texts = topic_corpus(80, seed=3).texts
    cfg = RefitConfig(budget="3steps", **REFIT_FAST)
    first = refit_encoder(mlm, texts, cfg, home=tmp_path)
    sample = texts[:6]
    before = first.encoder.encode(sample)  # now: its weights are mapped from the file the test damages
    if damage == "no checksums":  # a refit stored before checksums existed cannot be trusted either
        (first.path / "checksums.json").unlink()
    elif damage == "flip manifest":
        manifest = first.path / "manifest.json"
        text = manifest.read_text()
        assert '"steps": 3' in text
        manifest.write_text(text.replace('"steps": 3', '"steps": 4'))
    else:
        weights = next((first.path / "encoder").rglob("*.safetensors"))
        (flip if damage == "flip" else truncate)(weights)
    with pytest.warns(MovedAsideWarning, match=re.escape(str(first.path)) + r".*trained again"):
        again = refit_encoder(mlm, texts, cfg, home=tmp_path)
    assert not again.reused and again.manifest["steps"] == 3
    assert again.encoder.fingerprint == first.encoder.fingerprint  # same seed, same refit: the damage is gone
    np.testing.assert_allclose(again.encoder.encode(sample), before, atol=1e-6)
    assert verify_folder(again.path) == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert refit_encoder(mlm, texts, cfg, home=tmp_path).reused
    assert not [w for w in caught if issubclass(w.category, MovedAsideWarning)]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_refit_checkpoint_restarts_the_refit(mlm, tmp_path, damage):
    from adaptlab.rungs.refit import RefitConfig, refit_encoder

    texts = topic_corpus(80, seed=3).texts
    cfg = RefitConfig(budget="8steps", checkpoint_every=3, **REFIT_FAST)
    full = refit_encoder(mlm, texts, cfg, home=tmp_path / "a")

    def crash(step, loss, model):
        if step == 7:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        refit_encoder(mlm, texts, cfg, home=tmp_path / "b", callback=crash)
    (ckpt,) = (tmp_path / "b").glob("refits/*/checkpoint")
    (flip if damage == "flip" else truncate)(ckpt / "model.safetensors")
    with pytest.warns(MovedAsideWarning, match=re.escape(str(ckpt)) + r".*starts again from step 0"):
        again = refit_encoder(mlm, texts, cfg, home=tmp_path / "b")
    assert again.manifest["resumed_at"] == []
    np.testing.assert_allclose(again.manifest["loss_curve"], full.manifest["loss_curve"], rtol=0, atol=1e-6)
    assert again.encoder.fingerprint == full.encoder.fingerprint


# ------------------------------------------------------------------------------------------------ run store
def _flip_a_stored_f1(db):
    """Change one digit of the first stored result's test F1 in the file: valid JSON, a wrong number."""
    fold_wal(db)
    con = sqlite3.connect(db)
    (metrics,) = con.execute("SELECT metrics FROM results ORDER BY result_key LIMIT 1").fetchone()
    con.close()
    text = metrics.encode()
    m = re.search(rb'"test": \{[^}]*?"f1": 0\.(\d)', text)
    assert m is not None, metrics
    digit = m.group(1)
    lie = text[: m.start(1)] + (b"1" if digit != b"1" else b"2") + text[m.end(1):]
    data = db.read_bytes()
    assert data.count(text) == 1
    db.write_bytes(data.replace(text, lie))


def test_a_flipped_number_in_the_run_store_is_trained_again(tmp_path, ds):
    clean = Study(StudyConfig(rungs="tfidf", seeds=2), home=tmp_path / "clean").run(ds)
    home = tmp_path / "home"
    Study(StudyConfig(rungs="tfidf", seeds=2), home=home).run(ds)
    _flip_a_stored_f1(home / "runs.sqlite")
    r = runner.invoke(app, ["store", "check", "--home", str(home), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["damaged_results"], r.output
    with pytest.warns(MovedAsideWarning, match=re.escape(str(home / "runs.sqlite")) + r": the stored result "):
        again = Study(StudyConfig(rungs="tfidf", seeds=2), home=home).run(ds)
    assert again.n_trained == 1 and again.n_from_store == 1
    assert f1s(again) == f1s(clean) and stored_f1s(home, again) == f1s(clean)
    assert runner.invoke(app, ["store", "check", "--home", str(home)]).exit_code == 0


def test_a_truncated_run_store_is_refused_and_a_backup_brings_the_same_numbers_back(tmp_path, ds):
    home = tmp_path / "home"
    clean = Study(StudyConfig(rungs="tfidf", seeds=2), home=home).run(ds)
    assert runner.invoke(app, ["store", "backup", str(tmp_path / "backup.sqlite"), "--home", str(home)]).exit_code == 0
    db = home / "runs.sqlite"
    fold_wal(db)
    truncate(db, 0.3)
    with pytest.raises(StoreError, match=re.escape(str(db)) + r" is damaged.*store backup"):
        Study(StudyConfig(rungs="tfidf", seeds=2), home=home).run(ds)
    for side in ("-wal", "-shm"):
        (home / f"runs.sqlite{side}").unlink(missing_ok=True)
    os.replace(tmp_path / "backup.sqlite", db)  # step (3) of the recovery steps
    again = Study(StudyConfig(rungs="tfidf", seeds=2), home=home).run(ds)
    assert again.n_from_store == 2 and f1s(again) == f1s(clean)


def test_results_stored_before_checksums_are_marked_unverified_on_first_read(tmp_path, ds):
    home = tmp_path / "home"
    clean = Study(StudyConfig(rungs="tfidf", seeds=1), home=home).run(ds)
    db = home / "runs.sqlite"
    con = sqlite3.connect(db)
    con.execute("UPDATE results SET checksum = NULL")  # as an adaptlab before result checksums left it
    con.commit()
    con.close()
    lines = []
    again = Study(StudyConfig(rungs="tfidf", seeds=1), home=home).run(ds, progress=lines.append)
    assert again.n_from_store == 1 and f1s(again) == f1s(clean)
    assert again.per_seed[0]["verified"] is False and "verified" not in clean.per_seed[0]
    (note,) = [w for w in again.warnings if "cannot be verified" in w]
    assert "tfidf seed 0" in note and "--recompute tfidf" in note and any(note in line for line in lines)
    con = sqlite3.connect(db)
    (seal,) = con.execute("SELECT checksum FROM results").fetchone()
    con.close()
    assert seal.startswith("unverified:")  # marked in the store by its first read
    r = runner.invoke(app, ["store", "check", "--home", str(home), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["unverified_results"] == 1
    r = runner.invoke(app, ["store", "check", "--home", str(home)])
    assert r.exit_code == 0 and "1 stored before results had checksums, marked unverified" in " ".join(r.output.split())
    # Sealed: bytes that change after the first read are caught, and the run is trained again, verified.
    _flip_a_stored_f1(db)
    with pytest.warns(MovedAsideWarning, match="the stored result .* is damaged"):
        third = Study(StudyConfig(rungs="tfidf", seeds=1), home=home).run(ds)
    assert third.n_trained == 1 and f1s(third) == f1s(clean) and "verified" not in third.per_seed[0]
    assert not any("cannot be verified" in w for w in third.warnings)


# ------------------------------------------------------------------------------------------------ shipped model
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_shipped_model_is_refused_by_name_and_a_resave_predicts_the_same(tmp_path, tiny_encoder_dir, ds,
                                                                                   damage):
    from adaptlab.ship import Pipeline, load_pipeline

    tr, te = ds.subset(range(60)), ds.subset(range(60, 90))

    def make():
        return Pipeline(rung="probe", encoder=str(tiny_encoder_dir), device="cpu").fit(tr.texts, tr.labels)

    folder = make().save(tmp_path / "model")
    before = load_pipeline(folder).predict(te.texts)
    for target in (folder / "weights.safetensors",
                   next((folder / "blobs" / "encoders").iterdir()) / "model.safetensors"):
        original = target.read_bytes()
        (flip if damage == "flip" else truncate)(target)
        with pytest.raises(ConfigError, match=re.escape(str(target))):
            load_pipeline(folder)
        target.write_bytes(original)
    again = make().save(tmp_path / "model-again")
    assert list(load_pipeline(again).predict(te.texts)) == list(before)


# ------------------------------------------------------------------------------------------------ CLI
def _study_args(tmp_path, ds, *extra):
    import pandas as pd

    if not (tmp_path / "data.csv").exists():
        pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(tmp_path / "data.csv", index=False)
    return ["study", "run", "--data", str(tmp_path / "data.csv"), "--rungs", "tfidf", "--seeds", "2",
            "--home", str(tmp_path / "home"), *extra]


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_recompute_trains_stored_cells_again_in_table_and_json_mode(tmp_path, ds, mode):
    first = runner.invoke(app, _study_args(tmp_path, ds, "--json"))
    assert first.exit_code == 0, first.output
    r = runner.invoke(app, _study_args(tmp_path, ds, "--recompute", "all", *mode))
    no_crash(r)
    assert r.exit_code == 0, r.output
    if mode:
        study = json.loads(r.stdout)
        assert study["n_trained"] == 2 and study["n_from_store"] == 0
        assert study["rows"][0]["mean"] == json.loads(first.stdout)["rows"][0]["mean"]
    else:
        assert "tfidf seed 0: test" in r.output  # trained, not "from the run store"
    bad = runner.invoke(app, _study_args(tmp_path, ds, "--recompute", "lora", *mode))
    assert bad.exit_code == 2 and "recompute='lora' is not valid" in bad.output and "tfidf" in bad.output


def _home_with_checkpoints(tmp_path):
    """A home with an abandoned (old) and a fresh training checkpoint, a damaged one and a moved-aside file."""
    from adaptlab.store.integrity import json_checksum

    home = tmp_path / "home"
    from adaptlab.store import RunStore

    RunStore(home / "runs.sqlite")
    made = {}
    for name, age_days in (("old", 45), ("fresh", 0), ("damaged", 0)):
        folder = home / "checkpoints" / "finetune" / name
        folder.mkdir(parents=True)
        files = {"weights-t.safetensors": write_bytes_checked(folder / "weights-t.safetensors", os.urandom(1000)),
                 "state-t.pt": write_bytes_checked(folder / "state-t.pt", b"state")}
        meta = {"tag": "t", "step": 4, "files": files}
        meta["checksum"] = json_checksum(meta)
        (folder / "checkpoint.json").write_text(json.dumps(meta))
        stamp = time.time() - age_days * 86400
        os.utime(folder / "checkpoint.json", (stamp, stamp))
        made[name] = folder
    flip(made["damaged"] / "weights-t.safetensors")
    (home / "cache").mkdir()
    (home / "cache" / "embeddings.sqlite.corrupt-20261201-000000-000000").write_bytes(b"junk")
    return home, made


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_store_check_names_damaged_checkpoints_and_what_gc_would_free(tmp_path, mode):
    home, made = _home_with_checkpoints(tmp_path)
    r = runner.invoke(app, ["store", "check", "--home", str(home), *mode])
    no_crash(r)
    assert r.exit_code == 1, r.output
    if mode:
        items = {i["path"]: i for i in json.loads(r.stdout)["home_check"]["items"]}
        assert items[str(made["damaged"])]["status"] == "damaged"
        assert "weights-t.safetensors" in items[str(made["damaged"])]["detail"]
        assert items[str(made["old"])]["status"] == "abandoned" and items[str(made["fresh"])]["status"] == "resumable"
    else:
        assert f"{made['damaged']}: DAMAGED" in r.output.replace("\n", "")
        assert "store gc` would free" in r.output


def _gc_dry_run_then_gc(home, made, mode):
    """`store gc --dry-run` deletes nothing, then `store gc` runs; its result."""
    dry = runner.invoke(app, ["store", "gc", "--home", str(home), "--dry-run", *mode])
    assert dry.exit_code == 0, dry.output
    assert all(p.exists() for p in made.values())
    r = runner.invoke(app, ["store", "gc", "--home", str(home), *mode])
    no_crash(r)
    assert r.exit_code == 0, r.output
    return r


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_store_gc_deletes_abandoned_and_damaged_checkpoints_only(tmp_path, mode):
    home, made = _home_with_checkpoints(tmp_path)
    r = _gc_dry_run_then_gc(home, made, mode)
    assert not made["old"].exists() and not made["damaged"].exists() and made["fresh"].exists()
    assert not list((home / "cache").iterdir()) and (home / "runs.sqlite").exists()
    if mode:
        report = json.loads(r.stdout)
        assert {i["status"] for i in report["removed"]} == {"abandoned", "damaged", "moved-aside"}
        assert report["freed_bytes"] > 2000
    else:
        assert "deleted 3 item(s)" in r.output
    assert runner.invoke(app, ["store", "check", "--home", str(home)]).exit_code == 0


def _home_with_uploads(tmp_path):
    """A study home with the web app's uploads: one a stored study ran on, one a web job reads, one holding a
    shipped model, one fresh, one old that nothing names; all but the fresh one a month old."""
    from adaptlab.store import RunStore

    home, root, made = tmp_path / "home", tmp_path / "home" / "ui" / "uploads", {}
    for i, name in enumerate(("study", "job", "model", "fresh", "unused")):
        made[name] = root / f"{i:032x}"
        made[name].mkdir(parents=True)
        (made[name] / "labeled.csv").write_text("text,label\nsome words,a\n", encoding="utf-8")
    (made["model"] / "m" / "registry.json").parent.mkdir()
    (made["model"] / "m" / "registry.json").write_text("{}")
    store = RunStore(home / "runs.sqlite")
    store.put_study("s" * 40, name="web study", config={}, data_hash="h")
    store.set_summary("s" * 40, {"data": {"source": "my data.csv",
                                          "inputs": {"data": str(made["study"].resolve() / "labeled.csv")}}})
    (home / "ui" / "jobs").mkdir(parents=True)
    (home / "ui" / "jobs" / "j1.json").write_text(json.dumps({"id": "j1", "status": "cancelled", "spec": {
        "upload_id": made["job"].name, "data_path": str(made["job"] / "labeled.csv")}}))
    month_ago = time.time() - 30 * 86400
    for name in ("study", "job", "model", "unused"):
        for p in [made[name], *made[name].rglob("*")]:
            os.utime(p, (month_ago, month_ago))
    return home, made


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_store_gc_deletes_old_uploads_no_stored_study_or_web_job_names(tmp_path, mode):
    from adaptlab.store.housekeeping import collect_garbage

    home, made = _home_with_uploads(tmp_path)
    assert collect_garbage(home, 7, kinds={"abandoned"})["removed"] == []  # a study's own prune leaves uploads be
    r = _gc_dry_run_then_gc(home, made, mode)
    assert not made["unused"].exists()
    assert all(made[k].is_dir() for k in ("study", "job", "model", "fresh"))
    if mode:
        (item,) = json.loads(r.stdout)["removed"]
        assert item["kind"] == "upload" and item["status"] == "unused" and item["path"] == str(made["unused"])
    else:
        assert f"deleted {made['unused']} (unused" in r.output.replace("\n", "") and "deleted 1 item(s)" in r.output
    check = runner.invoke(app, ["store", "check", "--home", str(home), "--json"])
    items = {i["path"]: i for i in json.loads(check.stdout)["home_check"]["items"] if i["kind"] == "upload"}
    assert {items[str(made[k])]["status"] for k in ("study", "job", "model")} == {"in use"}
    assert "stored study ssssssssssss" in items[str(made["study"])]["detail"]
    assert items[str(made["fresh"])]["status"] == "recent" and not items[str(made["fresh"])]["removable"]


def test_a_study_prunes_checkpoints_abandoned_a_month_ago(tmp_path, ds):
    home, made = _home_with_checkpoints(tmp_path)
    lines = []
    Study(StudyConfig(rungs="tfidf", seeds=1), home=home).run(ds, progress=lines.append)
    assert not made["old"].exists() and made["fresh"].exists() and made["damaged"].exists()
    assert any("deleted 1 checkpoint(s) of runs abandoned" in line for line in lines)


def test_store_check_calls_a_damaged_newest_checkpoint_resumable_while_the_previous_one_is_whole(tmp_path):
    from adaptlab.store.housekeeping import check_home
    from adaptlab.store.integrity import json_checksum, write_bytes_checked

    folder = tmp_path / "checkpoints" / "finetune" / "k"
    folder.mkdir(parents=True)
    for name, tag in (("checkpoint.prev.json", "a"), ("checkpoint.json", "b")):
        weights = f"weights-{tag}.safetensors"
        meta = {"tag": tag, "files": {weights: write_bytes_checked(folder / weights, b"weights " + tag.encode())}}
        meta["checksum"] = json_checksum(meta)
        (folder / name).write_text(json.dumps(meta))

    def status():
        (item,) = [i for i in check_home(tmp_path)["items"] if i["kind"] == "training checkpoint"]
        return item["status"], item["detail"]

    assert status()[0] == "resumable"
    flip(folder / "weights-b.safetensors", 0)
    assert status()[0] == "resumable" and "a resume goes on from the previous one" in status()[1]
    flip(folder / "weights-a.safetensors", 0)
    assert status()[0] == "damaged"
