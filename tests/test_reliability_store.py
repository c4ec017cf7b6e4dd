"""The run store is never moved or deleted automatically: a damaged store fails with recovery steps,
`adaptlab store backup|check` protect and inspect it, and a full disk rolls the write back."""
from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.errors import DiskFullError
from adaptlab.store import RunStore, StoreError, check_store
from synthetic import topic_corpus

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def home(tmp_path):
    ds = topic_corpus(90, seed=1)
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(tmp_path / "d.csv", index=False)
    r = invoke("study", "run", "--data", tmp_path / "d.csv", "--rungs", "tfidf", "--seeds", 2, "--home",
               tmp_path / "home", "--json")
    assert r.exit_code == 0, r.output
    return tmp_path / "home"


def _damage(path):
    with sqlite3.connect(path) as con:  # fold the write-ahead log into the file first
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    assert len(data) >= 3 * 4096
    data[4096:len(data)] = b"\xff" * (len(data) - 4096)  # every page after the first overwritten
    path.write_bytes(bytes(data))
    return bytes(data)


def test_store_backup_and_check_in_table_and_json(home, tmp_path):
    r = invoke("store", "check", "--home", home)
    assert r.exit_code == 0 and "ok (1 studies, 2 results" in r.output
    rep = json.loads(invoke("store", "check", "--home", home, "--json").stdout)
    assert rep["ok"] and rep["problems"] == [] and rep["results"] == 2
    r = invoke("store", "backup", tmp_path / "b1.sqlite", "--home", home)
    assert r.exit_code == 0 and "1 studies, 2 results" in r.output and "integrity check ok" in r.output
    info = json.loads(invoke("store", "backup", tmp_path / "backups", "--home", home, "--json").stdout)
    assert info["ok"] and info["dest"].startswith(str(tmp_path / "backups" / "runs-"))
    copy = RunStore(tmp_path / "b1.sqlite")
    original = RunStore(home / "runs.sqlite")
    assert copy.list_studies() == original.list_studies()
    sid = original.list_studies()[0]["study_id"]
    assert copy.study_results(sid) == original.study_results(sid)
    r = invoke("store", "backup", tmp_path / "b1.sqlite", "--home", home)
    assert r.exit_code == 2 and "never overwrite" in r.output  # an existing file is not replaced


def test_a_damaged_store_fails_with_recovery_steps_and_is_kept(home):
    path = home / "runs.sqlite"
    damaged = _damage(path)
    r = invoke("study", "list", "--home", home)
    assert r.exit_code == 2 and "Traceback" not in r.output
    msg = " ".join(r.output.split())
    assert "is damaged" in msg and "never deleted" in msg and "adaptlab store check" in msg and ".recover" in msg
    assert path.read_bytes() == damaged  # never moved, rewritten or deleted
    r = invoke("store", "check", "--home", home)
    assert r.exit_code == 1 and "DAMAGED" in r.output and "adaptlab store backup" in " ".join(r.output.split())
    rep = json.loads(invoke("store", "check", "--home", home, "--json").stdout)
    assert rep["ok"] is False and rep["problems"] and "recovery" in rep
    assert path.read_bytes() == damaged
    with pytest.raises(StoreError, match="is damaged"):
        RunStore(path).list_studies()


def test_check_of_a_missing_store_says_where_it_looked(tmp_path):
    r = invoke("store", "check", "--home", tmp_path / "nowhere")
    assert r.exit_code == 2 and "no run store at" in r.output
    with pytest.raises(StoreError):
        check_store(tmp_path / "nowhere.sqlite")


def test_a_full_disk_during_a_store_write_rolls_back_and_says_what_to_free(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite")
    store.put_result("k1", rung="tfidf", seed=0, metrics={"f1": 0.9}, predictions={}, manifest={})
    real_connect = sqlite3.connect

    def full_disk(*args, **kwargs):  # SQLite's real SQLITE_FULL: no page may be added to the file
        con = real_connect(*args, **kwargs)
        (pages,) = con.execute("PRAGMA page_count").fetchone()
        con.execute(f"PRAGMA max_page_count = {pages}")
        return con

    monkeypatch.setattr(sqlite3, "connect", full_disk)
    with pytest.raises(DiskFullError, match=r"is full .* during a run store write; the store holds what it held "
                                            r"before this write\. Free space \(e\.g\. refits"):
        store.put_result("k2", rung="probe", seed=0, metrics={"f1": 0.8}, predictions={"p": ["x" * 50] * 5000},
                         manifest={})
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    assert store.get_result("k1")["metrics"] == {"f1": 0.9} and store.get_result("k2") is None
    assert check_store(store.path)["ok"]
