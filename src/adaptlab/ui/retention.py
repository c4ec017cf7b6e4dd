"""Retention of the web app's own files: uploads and finished jobs older than ``UISettings.retention_days``.

What is deleted: upload folders under ``upload_dir`` (the copies of files users uploaded) and the state files
of finished jobs under ``<home>/ui/jobs``. What never is: a job that is queued or running, an upload a kept job
still reads (a study that can be resumed), an upload a stored study ran on (the rule ``store gc`` keeps it by,
:func:`adaptlab.store.housekeeping.stored_study_using`), anything outside those two folders, and any folder that
holds a shipped model (``registry.json`` / ``adaptlab.json``), wherever it is. The run store and the models folder are
not looked at. Ages are file modification times (an upload's newest file; a job's ``finished`` time).
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from adaptlab.store.housekeeping import stored_study_inputs, stored_study_using
from adaptlab.ui.jobstate import FINISHED

logger = logging.getLogger("adaptlab.ui")

DAY = 86400.0
# Files that mark a shipped model folder (adaptlab.ship.registry); a folder holding one is never deleted.
MODEL_MARKERS = ("registry.json", "adaptlab.json")


def _newest_mtime(folder: Path) -> float:
    times = [folder.stat().st_mtime]
    times += [p.stat().st_mtime for p in folder.rglob("*") if p.is_file() or p.is_dir()]
    return max(times)


def holds_a_model(folder: Path) -> bool:
    """True when ``folder`` or any folder inside it is a shipped model (never deleted by retention)."""
    return any(next(folder.rglob(marker), None) is not None for marker in MODEL_MARKERS)


def _paths_in(spec: Any) -> set[Path]:
    """Every string in a job spec that names a path (the upload files a job reads)."""
    found: set[Path] = set()
    if isinstance(spec, dict):
        for v in spec.values():
            found |= _paths_in(v)
    elif isinstance(spec, (list, tuple)):
        for v in spec:
            found |= _paths_in(v)
    elif isinstance(spec, str) and ("/" in spec or "\\" in spec):
        found.add(Path(spec))
    return found


def _read_jobs(jobs_dir: Path) -> dict[str, Any]:
    """Job id -> job dict, from the job files in ``jobs_dir`` (unreadable ones skipped)."""
    jobs: dict[str, Any] = {}
    for p in sorted(jobs_dir.glob("*.json")) if jobs_dir.is_dir() else []:
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            jobs[str(d["id"])] = d
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return jobs


def _purge_uploads(upload_dir: Path, home: Path, in_use: set[Path], cutoff: float, report: dict) -> None:
    """Delete the upload folders older than ``cutoff`` that no kept job, stored study or shipped model uses."""
    studies: Optional[dict[Path, str]] = None  # the run store is read only once an old upload is found
    for folder in sorted(upload_dir.iterdir()) if upload_dir.is_dir() else []:
        if not folder.is_dir() or folder.resolve() in in_use or _newest_mtime(folder) >= cutoff:
            continue
        studies = stored_study_inputs(home) if studies is None else studies
        if stored_study_using(folder, studies) is not None:  # a stored study can still be resumed or shipped on it
            report["kept_studies"].append(folder.name)
            continue
        if holds_a_model(folder):
            report["kept_models"].append(str(folder))
            logger.warning("retention: %s holds a shipped model; it is kept", folder)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        report["uploads"].append(folder.name)


def purge_expired(settings: Any, jobs: Optional[dict[str, Any]] = None, now: Optional[float] = None,
                  jobs_dir: Optional[Path] = None) -> dict:
    """Delete uploads and finished job files older than ``settings.retention_days``; return what was deleted.

    ``jobs`` maps job id -> job dict (``status``, ``finished``, ``spec``), as the job manager holds them; by
    default they are read from the job files in ``jobs_dir`` (default ``settings.jobs_dir``). ``retention_days``
    of None or 0 keeps everything. Old uploads kept because a stored study in ``settings.home`` ran on them are
    listed under ``kept_studies``, those holding a shipped model under ``kept_models``.

    Example:
        >>> import tempfile
        >>> from adaptlab.ui.settings import UISettings
        >>> purge_expired(UISettings(home=tempfile.mkdtemp(), retention_days=30))
        {'jobs': [], 'uploads': [], 'kept_models': [], 'kept_studies': []}
    """
    report: dict[str, list[str]] = {"jobs": [], "uploads": [], "kept_models": [], "kept_studies": []}
    days = getattr(settings, "retention_days", None)
    if not days:
        return report
    now = time.time() if now is None else now
    cutoff = now - float(days) * DAY
    jobs_dir = Path(jobs_dir if jobs_dir is not None else settings.jobs_dir)
    upload_dir = Path(getattr(settings, "upload_dir", None) or jobs_dir / "no-uploads")
    jobs = _read_jobs(jobs_dir) if jobs is None else jobs
    kept_paths: set[Path] = set()
    for job_id, job in jobs.items():
        finished = job.get("finished") or 0.0
        path = jobs_dir / f"{job_id}.json"
        # A job's age is its recorded finish time (its file is rewritten whenever the server starts).
        if job.get("status") in FINISHED and finished < cutoff and path.is_file():
            path.unlink(missing_ok=True)
            report["jobs"].append(job_id)
        else:
            kept_paths |= _paths_in(job.get("spec", {}))
    home = Path(getattr(settings, "home", None) or jobs_dir.parent.parent)  # jobs live in <home>/ui/jobs
    _purge_uploads(upload_dir, home, {p.resolve().parent for p in kept_paths}, cutoff, report)
    if report["jobs"] or report["uploads"]:
        logger.info("retention (%s days): deleted %d finished job(s) and %d upload(s)", days, len(report["jobs"]),
                    len(report["uploads"]))
    return report
