"""The web app deletes uploads and finished jobs after the retention period, and never a shipped model,
a running job, or an upload a kept job still reads. Ages come from file times set in the past."""
from __future__ import annotations

import io
import json
import os
import time

import pytest

from adaptlab.errors import ConfigError
from adaptlab.ui.jobs import JobManager
from adaptlab.ui.retention import DAY, purge_expired
from adaptlab.ui.settings import UISettings
from adaptlab.ui.uploads import UploadStore


def age(path, days):
    """Set the modification time of ``path`` (and everything in it) ``days`` in the past."""
    t = time.time() - days * DAY
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (t, t))


@pytest.fixture
def settings(tmp_path):
    return UISettings(home=tmp_path / "home", models_root=tmp_path / "models", retention_days=30)


def upload(settings, text=b"text,label\nx,a\n"):
    store = UploadStore(settings.upload_dir, settings.max_upload_bytes)
    uid = store.create({"labeled": ("d.csv", io.BytesIO(text))})
    return uid, store.path(uid, "labeled")


def write_job(settings, job_id, status, finished_days_ago, spec=None):
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    finished = time.time() - finished_days_ago * DAY if status in ("done", "failed", "cancelled") else None
    path = settings.jobs_dir / f"{job_id}.json"
    path.write_text(json.dumps({"id": job_id, "kind": "study", "spec": spec or {}, "title": "t", "status": status,
                                "created": time.time() - 40 * DAY, "finished": finished}))
    age(path, finished_days_ago)
    return path


def test_old_uploads_and_finished_jobs_go_recent_and_running_ones_stay(settings):
    old_uid, old_path = upload(settings)
    new_uid, _ = upload(settings)
    used_uid, used_path = upload(settings)
    for uid in (old_uid, used_uid):
        age(settings.upload_dir / uid, 45)
    write_job(settings, "a" * 16, "done", 45)  # old, finished: deleted
    write_job(settings, "b" * 16, "done", 2)  # recent: kept
    write_job(settings, "c" * 16, "failed", 10, spec={"data_path": str(used_path)})  # resumable, reads an old upload
    write_job(settings, "d" * 16, "running", 60)  # never deleted while it runs
    manager = JobManager(settings.jobs_dir, settings, runners={"study": lambda ctx: None})  # purges at start-up
    remaining = {j["id"] for j in manager.list()}
    assert remaining == {"b" * 16, "c" * 16, "d" * 16}
    assert not (settings.jobs_dir / ("a" * 16 + ".json")).exists()
    assert not (settings.upload_dir / old_uid).exists()
    assert (settings.upload_dir / new_uid).is_dir() and used_path.is_file()  # recent, and in use by a kept job
    manager.shutdown()


def test_a_shipped_model_is_never_deleted_even_in_the_upload_folder(settings, tmp_path):
    uid, _ = upload(settings)
    model = settings.upload_dir / uid / "model"
    model.mkdir()
    (model / "registry.json").write_text("{}")
    age(settings.upload_dir / uid, 400)
    settings.models_root.mkdir(parents=True)
    (settings.models_root / "m").mkdir()
    (settings.models_root / "m" / "registry.json").write_text("{}")
    age(settings.models_root, 400)
    report = purge_expired(settings)
    assert report["uploads"] == [] and report["kept_models"] == [str(settings.upload_dir / uid)]
    assert (model / "registry.json").is_file() and (settings.models_root / "m" / "registry.json").is_file()


def test_retention_off_keeps_everything_and_bad_values_are_refused(tmp_path):
    s = UISettings(home=tmp_path / "home", retention_days=None)
    uid, _ = upload(s)
    age(s.upload_dir / uid, 1000)
    write_job(s, "e" * 16, "done", 1000)
    assert purge_expired(s) == {"jobs": [], "uploads": [], "kept_models": [], "kept_studies": []}
    assert (s.upload_dir / uid).is_dir()
    with pytest.raises(ConfigError, match="retention_days"):
        UISettings(home=tmp_path, retention_days=-1)
    assert UISettings(home=tmp_path).retention_days == 30


def test_a_job_that_finishes_triggers_the_purge(settings):
    old_uid, _ = upload(settings)
    age(settings.upload_dir / old_uid, 31)
    settings_no_start = UISettings(home=settings.home, retention_days=None)
    manager = JobManager(settings.jobs_dir, settings_no_start, runners={"study": lambda ctx: None})
    assert (settings.upload_dir / old_uid).is_dir()  # retention off at start-up
    manager.settings = settings  # retention on: the next finished job purges
    job = manager.submit("study", {"rungs": [], "seeds": 0}, "t")
    for _ in range(100):
        if manager.get(job.id).status == "done" and not (settings.upload_dir / old_uid).exists():
            break
        time.sleep(0.05)
    assert not (settings.upload_dir / old_uid).exists()
    assert manager.get(job.id).status == "done"  # the job just finished is recent: kept
    manager.shutdown()


def test_an_old_upload_a_stored_study_ran_on_is_kept_as_store_gc_keeps_it(settings):
    from adaptlab.store import RunStore
    from adaptlab.store.housekeeping import check_home

    studied_uid, studied_path = upload(settings)
    unused_uid, _ = upload(settings)
    for uid in (studied_uid, unused_uid):
        age(settings.upload_dir / uid, 45)
    # The web job that ran the study is long gone; only the stored study names the upload.
    store = RunStore(settings.home / "runs.sqlite")
    store.put_study("s" * 40, name="web study", config={}, data_hash="h")
    store.set_summary("s" * 40, {"data": {"inputs": {"data": str(studied_path.resolve())}}})
    report = purge_expired(settings)
    assert report["uploads"] == [unused_uid] and report["kept_studies"] == [studied_uid]
    assert studied_path.is_file() and not (settings.upload_dir / unused_uid).exists()
    # The same rule as `store gc`: check_home calls it in use, for the same study.
    (item,) = [i for i in check_home(settings.home, verify=False)["items"] if i["kind"] == "upload"]
    assert item["status"] == "in use" and "stored study ssssssssssss" in item["detail"]
