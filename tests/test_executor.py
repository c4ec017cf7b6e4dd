"""Study executors: in-process (default) and Ray on a local 2-CPU instance started by this module.

The Ray tests share one `ray.init` (module scope) so workers, once started, serve every test.
"""
from __future__ import annotations

import os
import sys

import pytest

from adaptlab.config import ExecutorConfig, StudyConfig
from adaptlab.encoders import Encoder
from adaptlab.errors import ConfigError, DataError
from adaptlab.evaluate import Study
from adaptlab.evaluate.executor import JobsFailedError, RayExecutor, make_executor, shared_artifact_key
from adaptlab.rungs import RUNGS, RungContext, get_rung
from adaptlab.rungs.tfidf import TfidfRung
from adaptlab.store import RunStore
from stored_results import stored
from synthetic import topic_corpus

FAST_REFIT = dict(batch_size=16, max_seq_length=32, lr=1e-3, estimate_steps=1, budget="6steps")


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def data():
    return topic_corpus(120, seed=4, noise=0.5)


def ray_executor(**kw) -> RayExecutor:
    return RayExecutor(ExecutorConfig(kind="ray", **kw))


def register(cls):
    RUNGS[cls.name] = cls
    return cls


# --------------------------------------------------------------------------------------------- no Ray needed
def test_executor_config_is_validated_with_the_parameter_name():
    with pytest.raises(ConfigError, match=r"executor='spark'.*inprocess, ray"):
        ExecutorConfig(kind="spark")
    with pytest.raises(ConfigError, match="ray_address='auto'.*--executor ray"):
        ExecutorConfig(address="auto")
    with pytest.raises(ConfigError, match="max_retries=-1"):
        ExecutorConfig(kind="ray", max_retries=-1)
    with pytest.raises(ConfigError, match=r"rung_resources\['refit'\]"):
        ExecutorConfig(kind="ray", rung_resources={"refit": {"gpu": 1}})
    with pytest.raises(ConfigError, match="memory='lots'"):
        ExecutorConfig(kind="ray", memory="lots")
    cfg = ExecutorConfig(kind="ray", memory="2GB", rung_resources={"refit": {"gpus": 1, "memory": "512MiB"}})
    assert cfg.resources_for("probe") == {"num_cpus": 1.0, "num_gpus": 0.0, "memory": 2_000_000_000}
    assert cfg.resources_for("refit") == {"num_cpus": 1.0, "num_gpus": 1.0, "memory": 512 * 2**20}


def test_missing_ray_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ConfigError, match=r'pip install "ray==2\.60\.0"'):
        Study(StudyConfig(rungs=["tfidf"]), executor="ray")
    assert make_executor("inprocess").kind == "inprocess"


def test_shared_refit_key_is_one_for_all_seeds_unless_refit_per_seed(tiny_encoder, data):
    ctx = RungContext(classes=data.classes, encoder=tiny_encoder)
    a_train, a_val = data.subset(range(0, 60)), data.subset(range(60, 90))
    b_train, b_val = data.subset(range(30, 90)), data.subset(range(0, 30))  # same pool, other split
    shared = get_rung("refit", FAST_REFIT)
    assert shared_artifact_key(shared, a_train, a_val, 0, ctx) == shared_artifact_key(shared, b_train, b_val, 1, ctx)
    per_seed = get_rung("refit", {**FAST_REFIT, "refit_per_seed": True})
    assert shared_artifact_key(per_seed, a_train, a_val, 0, ctx) != shared_artifact_key(per_seed, b_train, b_val, 1, ctx)
    assert shared_artifact_key(get_rung("tfidf"), a_train, a_val, 0, ctx) is None


def test_in_process_manifests_list_only_their_own_test_reads(tmp_path, data):
    class Second(TfidfRung):
        name = "second"

    register(Second)
    try:
        res = Study(StudyConfig(rungs=["tfidf", "second"], seeds=2, n_boot=200), home=tmp_path).run(data)
    finally:
        RUNGS.pop("second")
    assert res.n_trained == 4 and res.data["executor"] == {"kind": "inprocess"}
    for r in RunStore(tmp_path / "runs.sqlite").study_results(res.study_id):
        assert r["manifest"]["test_reads"] == [f"evaluate {r['rung']} seed {r['seed']}"]


# --------------------------------------------------------------------------------------------- Ray
def test_ray_gives_the_same_numbers_as_in_process_and_reruns_read_the_store(ray_local, tmp_path, tiny_encoder_dir,
                                                                             data):
    cfg = StudyConfig(rungs=["tfidf", "probe"], seeds=3, n_boot=200)
    local = Study(cfg, home=tmp_path / "a", encoder=Encoder.from_pretrained(tiny_encoder_dir, device="cpu")).run(data)
    msgs: list[str] = []
    remote = Study(cfg, home=tmp_path / "b", encoder=Encoder.from_pretrained(tiny_encoder_dir, device="cpu"),
                   executor=ray_executor()).run(data, progress=msgs.append)
    assert any("dispatching 6 job(s) to Ray" in m for m in msgs)
    assert remote.n_trained == 6 and remote.data["executor"]["kind"] == "ray"
    assert remote.study_id == local.study_id, "the executor is not part of the study's identity"
    assert [r["f1_by_seed"] for r in remote.rows] == [r["f1_by_seed"] for r in local.rows]
    assert stored(tmp_path / "b", remote.study_id) == stored(tmp_path / "a", local.study_id)
    again = Study(cfg, home=tmp_path / "b", encoder=Encoder.from_pretrained(tiny_encoder_dir, device="cpu"),
                  executor=ray_executor()).run(data)
    assert again.n_trained == 0 and again.n_from_store == 6


def test_a_worker_killed_mid_job_is_retried_and_every_result_arrives(ray_local, tmp_path, data):
    markers = tmp_path / "markers"
    markers.mkdir()

    # Defined in the test so cloudpickle ships the class by value to the workers.
    class Crashing(TfidfRung):
        name = "crashing"

        def fit(self, train, val, *, seed, context):
            marker = markers / f"seed{seed}"
            if seed == 1 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # the worker process dies in the middle of the job
            fitted = super().fit(train, val, seed=seed, context=context)
            import ray

            fitted.diagnostics_ = {"pid": os.getpid(), "resources": ray.get_runtime_context().get_assigned_resources()}
            return fitted

    register(Crashing)
    try:
        cfg = StudyConfig(rungs=["tfidf", "crashing"], seeds=3, n_boot=200)
        msgs: list[str] = []
        res = Study(cfg, home=tmp_path, executor=ray_executor(max_retries=1, rung_resources={"crashing": {"cpus": 0.5}})
                    ).run(data, progress=msgs.append)
    finally:
        RUNGS.pop("crashing")
    assert any("crashing seed 1: attempt 1 failed (the worker process died" in m for m in msgs), msgs
    assert res.n_trained == 6 and res.row("crashing")["n_seeds"] == 3
    # The retried job computed the same thing as tfidf (same fit, other name).
    assert res.row("crashing")["f1_by_seed"] == res.row("tfidf")["f1_by_seed"]
    diags = {p["seed"]: p["diagnostics"] for p in res.per_seed if p["rung"] == "crashing"}
    assert diags[1]["pid"] != int((markers / "seed1").read_text()), "the retry ran in a new worker process"
    assert all(d["resources"].get("CPU") == 0.5 for d in diags.values()), "the rung's resource request reached Ray"


def test_jobs_that_keep_failing_are_reported_and_the_others_are_stored(ray_local, tmp_path, data):
    class Broken(TfidfRung):
        name = "broken"

        def fit(self, train, val, *, seed, context):
            if seed == 0:
                raise RuntimeError("disk on fire")
            if seed == 1:
                raise DataError("a user error fails the same way every time")
            return super().fit(train, val, seed=seed, context=context)

    register(Broken)
    try:
        cfg = StudyConfig(rungs=["tfidf", "broken"], seeds=3, n_boot=200)
        with pytest.raises(JobsFailedError) as info:
            Study(cfg, home=tmp_path, executor=ray_executor(max_retries=1)).run(data)
    finally:
        RUNGS.pop("broken")
    failures = {(f.rung, f.seed): f for f in info.value.failures}
    assert set(failures) == {("broken", 0), ("broken", 1)}
    assert failures[("broken", 0)].attempts == 2 and "disk on fire" in failures[("broken", 0)].error
    assert failures[("broken", 1)].attempts == 1, "user errors are not retried"
    assert "broken seed 0 (2 attempt(s)): RuntimeError: disk on fire" in str(info.value)
    store = RunStore(tmp_path / "runs.sqlite")
    (study,) = store.list_studies()  # recorded, but without a summary: it did not finish
    kept = sorted((r["rung"], r["seed"]) for r in store.study_results(study["study_id"]))
    assert kept == [("broken", 2), ("tfidf", 0), ("tfidf", 1), ("tfidf", 2)]


def test_a_refit_shared_by_all_seeds_is_trained_once_while_jobs_run_in_parallel(ray_local, mlm_dir, tmp_path):
    cfg = StudyConfig(rungs=["refit"], seeds=3, n_boot=200, rung_params={"refit": FAST_REFIT})
    res = Study(cfg, home=tmp_path, encoder=Encoder.from_pretrained(mlm_dir, device="cpu"),
                executor=ray_executor(max_retries=0)).run(topic_corpus(90, seed=1), unlabeled=topic_corpus(60, seed=2))
    assert len(list((tmp_path / "refits").iterdir())) == 1
    reused = sorted(p["diagnostics"]["reused"] for p in res.per_seed)
    assert reused == [False, True, True], "one job trained the refit, the others read it"


def test_jobs_sharing_an_artifact_start_only_after_the_first_has_built_it(ray_local, tmp_path, data):
    import time

    class Shared(TfidfRung):
        name = "shared"

        def shared_artifact_key(self, train, val, *, seed, context):
            return "one-artifact-for-all-seeds"

        def fit(self, train, val, *, seed, context):
            start = time.time()
            time.sleep(1.0)  # long enough that two jobs started together would overlap
            fitted = super().fit(train, val, seed=seed, context=context)
            fitted.diagnostics_ = {"start": start, "end": time.time()}
            return fitted

    register(Shared)
    try:
        res = Study(StudyConfig(rungs=["shared"], seeds=3, n_boot=200), home=tmp_path,
                    executor=ray_executor()).run(data)
    finally:
        RUNGS.pop("shared")
    spans = sorted((p["diagnostics"]["start"], p["diagnostics"]["end"]) for p in res.per_seed)
    first_end = spans[0][1]
    assert all(start >= first_end for start, _ in spans[1:]), spans


def test_ray_studies_wait_for_a_cell_another_study_is_training_and_read_it(ray_local, tmp_path, data):
    # The lease is taken in the driver around dispatch: a cell leased by another live study is not sent to Ray;
    # its result is read once the other study stores it.
    import threading

    from adaptlab.store import RunStore

    cfg = StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200)
    Study(cfg, home=tmp_path / "a").run(data)
    source = RunStore(tmp_path / "a" / "runs.sqlite")
    with source._connect() as con:
        keys = sorted(r[0] for r in con.execute("SELECT result_key FROM results"))
    theirs = source.get_result(keys[0])
    store = RunStore(tmp_path / "b" / "runs.sqlite")
    # A lease that outlives a slow start on a loaded machine (an expired one would be taken and trained here).
    assert store.acquire_lease(keys[0], "otherhost:7:training", ttl=600)
    msgs: list[str] = []
    waiting = threading.Event()

    def progress(message: str) -> None:
        msgs.append(message)
        if "waiting for 1 cell(s) another study on this home is training" in message:
            waiting.set()

    def other_study_finishes():
        # The other study stores its result once this one waits for it: a fixed sleep raced a loaded machine
        # (stored before this study looked, so it never waited). The timeout only keeps a broken run from hanging.
        waiting.wait(timeout=300)
        store.put_result(keys[0], rung="tfidf", seed=theirs["seed"], metrics=theirs["metrics"],
                         predictions=theirs["predictions"], manifest=theirs["manifest"])
        store.release_lease(keys[0], "otherhost:7:training")

    other = threading.Thread(target=other_study_finishes, daemon=True)
    other.start()
    study = Study(cfg, home=tmp_path / "b", executor=ray_executor())
    study.lease_options = {"poll": 0.1}
    res = study.run(data, progress=progress)
    other.join(timeout=60)
    assert waiting.is_set(), "the study never said it waited for the other study's cell"
    assert any("dispatching 1 job(s) to Ray" in m for m in msgs)
    assert any("waiting for 1 cell(s) another study on this home is training" in m for m in msgs)
    assert res.n_trained == 1 and res.n_from_store == 1
    assert store.lease(keys[0]) is None and store.lease(keys[1]) is None
