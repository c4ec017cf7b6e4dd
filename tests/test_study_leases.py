"""Studies that share a home train each (rung, seed) cell once: a per-cell lease in the run store.

Two processes run the same study on one home at the same moment (a file barrier lines them up); every
training call appends a line to a counter file, so a cell trained twice shows up as a duplicate line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from adaptlab.config import StudyConfig
from adaptlab.evaluate import Study
from adaptlab.store import RunStore
from adaptlab.store.leases import CellLeases, LeaseWaitTimeout
from synthetic import topic_corpus

ROOT = Path(__file__).resolve().parents[1]

# Runs a 1-rung x 3-seed tfidf study; each fit sleeps (so the two processes overlap) and logs itself.
WORKER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from adaptlab.rungs.tfidf import TfidfRung

    home, data, counter, barrier, name = sys.argv[1:6]
    real_fit = TfidfRung.fit

    def counted_fit(self, train, val, *, seed, context):
        with open(counter, "a") as fh:
            fh.write(f"{seed} {os.getpid()}\\n")
        time.sleep(1.0)
        return real_fit(self, train, val, seed=seed, context=context)

    TfidfRung.fit = counted_fit
    from adaptlab.config import StudyConfig
    from adaptlab.data import load_dataset
    from adaptlab.evaluate import Study

    ds = load_dataset(data)
    Path(barrier, name).touch()
    while len(list(Path(barrier).iterdir())) < 2:  # start together
        time.sleep(0.05)
    study = Study(StudyConfig(rungs="tfidf", seeds=3), home=home)
    study.lease_options = {"ttl": 5.0, "poll": 0.2}
    res = study.run(ds)
    print(json.dumps({"n_trained": res.n_trained, "n_from_store": res.n_from_store,
                      "f1": res.rows[0]["mean"]}))
""")


@pytest.fixture
def data(tmp_path):
    ds = topic_corpus(90, seed=1)
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(tmp_path / "d.csv", index=False)
    return tmp_path / "d.csv"


def test_two_processes_running_the_same_study_train_each_cell_once(tmp_path, data):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    counter, barrier = tmp_path / "trained.txt", tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "home"), str(data), str(counter),
                               str(barrier), name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for name in ("a", "b")]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    lines = counter.read_text().split()
    seeds = sorted(int(s) for s in lines[0::2])
    assert seeds == [0, 1, 2], f"trained {seeds}: a cell was trained twice"
    assert sum(o["n_trained"] for o in outs) == 3 and all(o["n_trained"] + o["n_from_store"] == 3 for o in outs)
    assert outs[0]["f1"] == outs[1]["f1"]  # both read the same three results
    with RunStore(tmp_path / "home" / "runs.sqlite")._connect() as con:
        assert con.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


def _keys(home):
    with RunStore(home / "runs.sqlite")._connect() as con:
        return [r[0] for r in con.execute("SELECT result_key FROM results")]


def test_a_lease_whose_owner_was_killed_is_taken_over(tmp_path, data):
    from adaptlab.data import load_dataset

    ds = load_dataset(data)
    home = tmp_path / "home"
    Study(StudyConfig(rungs="tfidf", seeds=2), home=home).run(ds)
    keys = _keys(home)
    store = RunStore(home / "runs.sqlite")
    with store._connect() as con:  # forget seed results, and leave a dead owner's leases on them
        con.execute("DELETE FROM results")
    for key in keys:
        assert store.acquire_lease(key, "deadhost:4242:killed", ttl=0.5)
    lines = []
    time.sleep(0.6)  # the killed owner's heartbeat never came: expired
    study = Study(StudyConfig(rungs="tfidf", seeds=2), home=home)
    study.lease_options = {"ttl": 5.0, "poll": 0.1}
    res = study.run(ds, progress=lines.append)
    assert res.n_trained == 2 and res.n_from_store == 0
    assert all(store.lease(k) is None for k in keys)


def test_a_live_lease_is_waited_for_then_taken_over_when_it_expires(tmp_path, data):
    from adaptlab.data import load_dataset

    ds = load_dataset(data)
    home = tmp_path / "home"
    Study(StudyConfig(rungs="tfidf", seeds=1), home=home).run(ds)
    (key,) = _keys(home)
    store = RunStore(home / "runs.sqlite")
    with store._connect() as con:
        con.execute("DELETE FROM results")
    assert store.acquire_lease(key, "otherhost:1:live", ttl=1.5)  # alive for 1.5 s, then never renewed
    lines: list[str] = []
    study = Study(StudyConfig(rungs="tfidf", seeds=1), home=home)
    study.lease_options = {"ttl": 5.0, "poll": 0.1}
    t0 = time.monotonic()
    res = study.run(ds, progress=lines.append)
    waited = time.monotonic() - t0
    assert res.n_trained == 1 and waited > 1.0
    assert any("another study on this home is training (otherhost:1:live)" in line for line in lines)
    assert any("training it here" in line for line in lines)


def test_waiting_is_bounded_by_max_wait(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    with CellLeases(store, ttl=60) as other:
        assert other.claim("cell")
        with CellLeases(store, poll=0.05, max_wait=0.3) as mine:
            with pytest.raises(LeaseWaitTimeout, match="run the same command again later"):
                mine.await_cells(["cell"])


def test_the_heartbeat_keeps_a_lease_alive_past_its_ttl(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    with CellLeases(store, ttl=0.4) as owner:
        assert owner.claim("cell")
        time.sleep(1.0)  # > 2 ttl: only the heartbeat (every ttl/4) keeps it live
        assert store.lease("cell")["live"] and not CellLeases(store).claim("cell")
    assert store.lease("cell") is None


def test_two_studies_in_threads_of_one_process_share_the_cells(tmp_path, data, monkeypatch):
    # The web app runs studies in worker threads of one server process: each Study has its own lease owner.
    import threading

    from adaptlab.data import load_dataset
    from adaptlab.rungs.tfidf import TfidfRung

    trained: list[int] = []
    real_fit = TfidfRung.fit

    def counted_fit(self, train, val, *, seed, context):
        trained.append(seed)
        time.sleep(0.5)
        return real_fit(self, train, val, seed=seed, context=context)

    monkeypatch.setattr(TfidfRung, "fit", counted_fit)
    ds = load_dataset(data)
    results = []

    def run():
        study = Study(StudyConfig(rungs="tfidf", seeds=3), home=tmp_path / "home")
        study.lease_options = {"poll": 0.1}
        results.append(study.run(ds))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(trained) == [0, 1, 2] and len(results) == 2
    assert sum(r.n_trained for r in results) == 3


def test_two_web_app_jobs_for_the_same_study_train_each_cell_once(tmp_path, data, monkeypatch):
    """Two web-app servers on one home (each with its own job manager) get the same study at once: the job
    manager's studies take the same leases as the CLI's, so every cell is trained once and read by the other."""
    import threading

    from adaptlab.rungs.tfidf import TfidfRung
    from adaptlab.ui.jobs import JobManager
    from adaptlab.ui.settings import UISettings

    real_fit, trained, both_started = TfidfRung.fit, [], threading.Barrier(2, timeout=30)
    lock = threading.Lock()

    def counted_fit(self, train, val, *, seed, context):
        with lock:
            trained.append(seed)
        time.sleep(0.5)  # long enough for the other job to find the cell leased
        return real_fit(self, train, val, seed=seed, context=context)

    monkeypatch.setattr(TfidfRung, "fit", counted_fit)
    home = tmp_path / "home"
    spec = {"data_path": str(data), "columns": {"text": "text", "label": "label"},
            "config": {"rungs": ["tfidf"], "seeds": 3, "n_boot": 100}}

    def start_together(ctx):
        both_started.wait()
        from adaptlab.ui.jobs import run_study

        run_study(ctx)

    managers = [JobManager(tmp_path / f"server-{i}" / "jobs", UISettings(home=home, models_root=tmp_path / "models"),
                           runners={"study": start_together}) for i in range(2)]
    try:
        jobs = [m.submit("study", spec, "same study") for m in managers]
        done = [m.wait(j.id, timeout=180) for m, j in zip(managers, jobs)]
    finally:
        for m in managers:
            m.shutdown()
    assert [j.status for j in done] == ["done", "done"], [j.error for j in done]
    assert sorted(trained) == [0, 1, 2], f"trained {sorted(trained)}: a cell was trained twice"
    results = [j.result for j in done]
    assert sum(r["n_trained"] for r in results) == 3
    assert all(r["n_trained"] + r["n_from_store"] == 3 for r in results)
    assert done[0].study_id == done[1].study_id
    # The jobs overlapped: one of them waited for a cell the other was training (its log says so).
    assert any("another study on this home is training" in line for j in done for line in j.log), list(done[1].log)
    with RunStore(home / "runs.sqlite")._connect() as con:
        assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 3
        assert con.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
