"""The Ray executor on a cluster it did not start: a head started by `ray start --head`, joined by address
(``host:port`` and ``auto``) and through Ray Client (``ray://host:port``), from Python and from the CLI.

The cluster is a separate process tree, started the way a user starts one in a container
(``ray start --head --block``), with its own ports and temp dir. It is stopped by sending SIGTERM to that
``ray start`` process, which stops the processes it started; whatever is left of its process group is
killed. Not ``ray stop``: that kills every Ray process of the machine by name (other people's clusters,
the in-process Ray of tests/test_executor.py, even any command line containing ``monitor.py`` such as
``pytest tests/test_monitor.py``).

Ray 2.60 turns on token authentication for ``ray start --head`` when a token exists (~/.ray/auth_token,
which any local ``ray.init()`` creates), and a driver sends its token to an explicit address only with
``RAY_AUTH_MODE=token``. The cluster here always uses token authentication and this module's drivers
set ``RAY_AUTH_MODE=token``, as a user of such a cluster must.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.config import ExecutorConfig, StudyConfig
from adaptlab.encoders import Encoder
from adaptlab.errors import ConfigError
from adaptlab.evaluate import Study
from stored_results import stored
from synthetic import topic_corpus

RAY = str(Path(sys.executable).parent / "ray")
CFG = StudyConfig(rungs=["tfidf", "probe"], seeds=2, n_boot=200)
GRID_TASKS = {f"adaptlab {rung} seed {seed}" for rung in ("tfidf", "probe") for seed in (0, 1)}  # Ray task names
START_TIMEOUT_S = 90


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that are free now (held open together so the OS cannot hand one out twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Cluster:
    process: subprocess.Popen
    temp_dir: Path
    gcs_port: int
    client_port: int

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def client(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    def log(self) -> str:
        return (self.temp_dir / "ray-start.log").read_text(errors="replace")[-3000:]

    def assert_running(self) -> None:
        """The head is up and serves a new driver: the study only disconnected from it."""
        import ray

        assert self.process.poll() is None, f"`ray start` exited:\n{self.log()}"
        assert not ray.is_initialized(), "the executor left its connection open"
        ray.init(address=self.gcs, log_to_driver=False)
        try:
            assert ray.cluster_resources().get("CPU") == 2
        finally:
            ray.shutdown()

    def task_runs(self) -> Counter:
        """How often each task name ran on the cluster's workers (Ray marks each task start in the worker's log)."""
        runs: Counter = Counter()
        for path in (self.temp_dir / "session_latest" / "logs").glob("worker-*.out"):
            runs.update(line[len(":task_name:"):] for line in path.read_text(errors="replace").splitlines()
                        if line.startswith(":task_name:"))
        return runs

    def assert_ran(self, before: Counter, labels: set[str]) -> None:
        """Each of ``labels`` ran (once more) on this cluster since ``before``."""
        deadline = time.monotonic() + 10  # the marks are in the workers' log files: allow for a late flush
        while set((self.task_runs() - before)) != labels and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set(self.task_runs() - before) == labels


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_cluster(proc: subprocess.Popen) -> None:
    """SIGTERM to `ray start --block` stops its processes; then anything left of its process group is killed."""
    pgid = proc.pid  # start_new_session: the group (and session) of `ray start` and everything it started
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 5
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)  # raylet's workers notice its exit on their own
    if group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not group_alive(pgid), f"processes of the test's Ray cluster (process group {pgid}) are still alive"


def refresh_ray_config() -> None:
    """Make this process's Ray see the current RAY_AUTH_MODE.

    Ray reads it once, at import; a user exports it before Python starts. Ray itself refreshes its
    config this way when it turns token authentication on (authentication_token_setup._enable_token_auth).
    """
    from ray._raylet import Config

    Config.initialize("")


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node, 2-CPU Ray cluster in other processes, with a Ray Client server; stopped at the end."""
    import ray

    if ray.is_initialized():  # an earlier module's in-process Ray would be used instead of the cluster
        ray.shutdown()
    # Short: Ray's socket paths under it must stay below ~107 characters.
    temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    gcs_port, client_port = free_ports(2)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Token auth whatever ~/.ray holds; no 30 s drain on SIGTERM (nothing to drain).
    env.update(RAY_AUTH_MODE="token", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    # The token of this user (~/.ray/auth_token, RAY_AUTH_TOKEN[_PATH]); created only when there is none.
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    with open(temp_dir / "ray-start.log", "wb") as log:
        proc = subprocess.Popen(
            [RAY, "start", "--head", "--block", "--port", str(gcs_port), "--ray-client-server-port", str(client_port),
             "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp_dir)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    cluster = Cluster(proc, temp_dir, gcs_port, client_port)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ("Ray runtime started" in cluster.log() and port_open(gcs_port) and port_open(client_port)):
            if proc.poll() is not None:
                pytest.fail(f"`ray start --head` exited with {proc.returncode}:\n{cluster.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not come up within {START_TIMEOUT_S} s:\n{cluster.log()}")
            time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAY_AUTH_MODE", "token")
            mp.delenv("RAY_ADDRESS", raising=False)
            refresh_ray_config()
            yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        refresh_ray_config()  # back to this process's own RAY_AUTH_MODE
        stop_cluster(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def data():
    return topic_corpus(120, seed=4, noise=0.5)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_encoder_dir, data):
    """The same study in this process: the numbers every executor must reproduce."""
    home = tmp_path_factory.mktemp("inprocess")
    res = Study(CFG, home=home, encoder=Encoder.from_pretrained(tiny_encoder_dir, device="cpu")).run(data)
    return res, stored(home, res.study_id)


def run_on(address: str, cfg: StudyConfig, home: Path, encoder_dir: "Path | None", data) -> tuple:
    msgs: list[str] = []
    ex = ExecutorConfig(kind="ray", address=address, max_retries=0)
    encoder = Encoder.from_pretrained(encoder_dir, device="cpu") if encoder_dir is not None else None
    res = Study(cfg, home=home, encoder=encoder, executor=ex).run(data, progress=msgs.append)
    return res, msgs


def assert_same_as_baseline(res, home: Path, baseline) -> None:
    local, local_stored = baseline
    assert res.n_trained == 4 and res.data["executor"]["kind"] == "ray"
    assert res.study_id == local.study_id, "the executor is not part of the study's identity"
    assert [r["f1_by_seed"] for r in res.rows] == [r["f1_by_seed"] for r in local.rows]
    assert stored(home, res.study_id) == local_stored


# ------------------------------------------------------------------------------------------ tests
def test_a_study_joins_an_existing_cluster_by_host_port_gets_the_same_numbers_and_leaves_it_running(
        ray_cluster, baseline, tmp_path, tiny_encoder_dir, data):
    before = ray_cluster.task_runs()
    res, msgs = run_on(ray_cluster.gcs, CFG, tmp_path, tiny_encoder_dir, data)
    assert f"connecting to the Ray cluster at {ray_cluster.gcs} ..." in msgs
    assert any("dispatching 4 job(s) to Ray (2 CPU, 0 GPU in the cluster" in m for m in msgs), msgs
    assert_same_as_baseline(res, tmp_path, baseline)
    ray_cluster.assert_ran(before, GRID_TASKS)
    ray_cluster.assert_running()


def test_address_auto_joins_the_cluster_named_by_ray_address(ray_cluster, baseline, tmp_path, data, monkeypatch):
    # How a job on a cluster node finds its cluster. Without RAY_ADDRESS, "auto" takes the last `ray start`
    # of /tmp/ray, else any GCS process it sees: on a shared machine, maybe someone else's cluster.
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.gcs)
    cfg = StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200)  # no encoder to ship: the cheapest grid
    before = ray_cluster.task_runs()
    res, msgs = run_on("auto", cfg, tmp_path, None, data)
    assert "connecting to the Ray cluster at auto ..." in msgs
    assert any("(2 CPU, 0 GPU in the cluster" in m for m in msgs), msgs
    tfidf_only = {k: v for k, v in baseline[1].items() if k[0] == "tfidf"}
    assert res.n_trained == 2 and stored(tmp_path, res.study_id) == tfidf_only
    ray_cluster.assert_ran(before, {"adaptlab tfidf seed 0", "adaptlab tfidf seed 1"})
    ray_cluster.assert_running()


def test_ray_client_gets_the_same_numbers_and_leaves_the_cluster_running(ray_cluster, baseline, tmp_path,
                                                                          tiny_encoder_dir, data):
    import ray

    before = ray_cluster.task_runs()
    res, msgs = run_on(ray_cluster.client, CFG, tmp_path, tiny_encoder_dir, data)
    assert f"connecting to the Ray cluster at {ray_cluster.client} ..." in msgs
    assert_same_as_baseline(res, tmp_path, baseline)
    ray_cluster.assert_ran(before, GRID_TASKS)
    assert not ray.util.client.ray.is_connected(), "the Ray Client connection was closed"
    ray_cluster.assert_running()


def test_cli_study_run_through_ray_client(ray_cluster, baseline, tmp_path, tiny_encoder_dir, data):
    import pandas as pd

    csv = tmp_path / "train.csv"
    pd.DataFrame({"text": data.texts, "label": data.labels}).to_csv(csv, index=False)
    args = ["study", "run", "--data", csv, "--rungs", "tfidf,probe", "--seeds", 2, "--encoder", tiny_encoder_dir,
            "--home", tmp_path / "home", "--executor", "ray", "--address", ray_cluster.client, "--max-retries", 0,
            "--json"]
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["n_trained"] == 4
    assert payload["data"]["executor"] == {"kind": "ray", "address": ray_cluster.client, "max_retries": 0}
    rows = {row["rung"]: row for row in payload["rows"]}
    assert set(rows) == {"tfidf", "probe"}
    assert all(row["n_seeds"] == 2 for row in rows.values())
    # The CSV holds the same texts, labels and ids: the same grid, so the same numbers.
    expected = {r["rung"]: r["f1_by_seed"] for r in baseline[0].rows}
    assert {rung: row["f1_by_seed"] for rung, row in rows.items()} == expected
    ray_cluster.assert_running()


def test_a_driver_without_the_token_is_told_to_set_ray_auth_mode(ray_cluster, tmp_path, data, monkeypatch):
    import ray

    try:
        with monkeypatch.context() as mp:
            mp.delenv("RAY_AUTH_MODE")  # a user who did not export it: Ray sends no token to an explicit address
            mp.setenv("RAY_gcs_server_port_wait_time_s", "1")  # give up after one try instead of ~20
            refresh_ray_config()
            with pytest.raises(ConfigError, match=r"did not send or got wrong: .*export RAY_AUTH_MODE=token"):
                run_on(ray_cluster.gcs, StudyConfig(rungs=["tfidf"], seeds=1, n_boot=200), tmp_path, None, data)
    finally:
        refresh_ray_config()  # token mode again (the context put RAY_AUTH_MODE back)
    assert not ray.is_initialized()
    ray_cluster.assert_running()


def test_the_fix_for_a_failed_connection_depends_on_the_cause(monkeypatch):
    from adaptlab.evaluate.executor import _connect_fix

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    # Ray Client gives no cause (a timeout), so a driver without token mode is told about tokens too.
    assert "If the cluster uses token authentication: " in _connect_fix("ray://head:10001", ConnectionError("timeout"))
    assert _connect_fix("head:6379", ConnectionError("no GCS")).startswith("Start one with `ray start --head`")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert _connect_fix("ray://head:10001", ConnectionError("timeout")).startswith("Start one")
