"""Background jobs of the web app: studies, the sketch and retrains, with live progress on disk.

A job runs in a worker thread (one lane for studies, one for model retrains, so a coordinator's retrain
does not wait for an engineer's study). Its state (status, the rung x seed grid, the log, loss curves
of finished runs) is written to ``<home>/ui/jobs/<id>.json`` as it changes, so every browser tab and a
restarted server see the same thing.

Cancel is cooperative and quick: each job runs under its own :class:`adaptlab.cancel.CancelToken`, so a
cancel reaches the running cell at its next training step or encode batch (the network rungs and the refit
save their checkpoint first), and the progress callback raises between two (rung, seed) runs. Every
finished run is already in the run store, and resume simply runs the same study again: the study reads the
stored runs instead of training them, and the interrupted run continues from its checkpoint.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import math
import re
import secrets
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from adaptlab.cancel import CancelToken, Cancelled, cancel_scope
from adaptlab.errors import AdaptlabError, DataValidationError
from adaptlab.ui.jobstate import FINISHED, RESUMABLE

logger = logging.getLogger("adaptlab.ui")

JOB_ID = re.compile(r"^[0-9a-f]{16}$")
# Picking texts to label has its own lane: it must not wait behind a long retrain or study.
LANES = {"study": "study", "sketch": "study", "retrain": "models", "label-pick": "labeling", "ship": "models"}
_LOG_LINES = 400
# How a grid cell names why a decision-driven study dropped its rung (Allocator drop kinds).
_DROP_WORDS = {"eliminated": "eliminated", "cannot-flip": "cannot flip the decision", "budget": "out of budget"}



class JobCancelled(Cancelled):
    """Raised by the progress callback when a cancel was requested (between two runs)."""


@dataclass
class Job:
    id: str
    kind: str
    spec: dict[str, Any]
    title: str
    status: str = "queued"  # queued | running | done | failed | cancelled | interrupted
    created: float = field(default_factory=time.time)
    started: Optional[float] = None
    finished: Optional[float] = None
    phase: str = "waiting to start"
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    rungs: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    log: deque = field(default_factory=lambda: deque(maxlen=_LOG_LINES))
    curves: list[dict[str, Any]] = field(default_factory=list)
    study_id: Optional[str] = None
    expected_study_id: Optional[str] = None
    error: Optional[dict[str, Any]] = None
    result: Optional[dict[str, Any]] = None
    cancel_requested: bool = False
    runs: int = 0  # how many times the job was started (1 + resumes)

    def to_dict(self, log_tail: Optional[int] = None) -> dict[str, Any]:
        log = list(self.log)
        if log_tail is not None:
            log = log[-log_tail:] if log_tail > 0 else []
        done = sum(1 for c in self.cells.values() if c["state"] in ("done", "stored"))
        skipped = sum(1 for c in self.cells.values() if c["state"] == "skipped")
        return {"id": self.id, "kind": self.kind, "spec": self.spec, "title": self.title, "status": self.status,
                "created": self.created, "started": self.started, "finished": self.finished, "phase": self.phase,
                "cells": self.cells, "rungs": self.rungs, "seeds": self.seeds, "log": log, "curves": self.curves,
                "study_id": self.study_id, "expected_study_id": self.expected_study_id, "error": self.error,
                "result": self.result, "cancel_requested": self.cancel_requested, "runs": self.runs,
                "n_cells": len(self.cells), "n_done": done, "n_skipped": skipped,
                "resumable": self.status in RESUMABLE and self.kind in ("study", "sketch"),
                "cancellable": self.status in ("queued", "running") and not self.cancel_requested,
                "elapsed": ((self.finished or time.time()) - self.started) if self.started else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Job":
        keep = {k: d[k] for k in ("id", "kind", "spec", "title", "status", "created", "started", "finished", "phase",
                                  "cells", "rungs", "seeds", "curves", "study_id", "expected_study_id", "error",
                                  "result", "cancel_requested", "runs") if k in d}
        job = cls(**keep)
        job.log = deque(d.get("log", []), maxlen=_LOG_LINES)
        return job

    def init_grid(self, rungs: list[str], seeds: list[int]) -> None:
        self.rungs, self.seeds = list(rungs), list(seeds)
        old = self.cells
        self.cells = {}
        for r in rungs:
            for s in seeds:
                prev = old.get(f"{r}|{s}")
                # A resumed job keeps what finished; anything else (skipped included) starts over as pending.
                if prev and prev["state"] in ("done", "stored"):
                    self.cells[f"{r}|{s}"] = prev
                else:
                    self.cells[f"{r}|{s}"] = {"rung": r, "seed": s, "state": "pending"}


class JobContext:
    """What a runner gets: ``say`` (progress, and the cancel point) and the app settings."""

    def __init__(self, manager: "JobManager", job: Job, settings: Any) -> None:
        self.manager, self.job, self.settings = manager, job, settings

    def say(self, msg: str) -> None:
        self.manager._progress(self.job, str(msg))
        if self.job.cancel_requested:
            raise JobCancelled()

    def event(self, ev: Any) -> None:
        """A `StudyEvent` of the running study: the live grid of (rung, seed) cells follows it."""
        self.manager._study_event(self.job, ev)

    def update(self, **changes: Any) -> None:
        self.manager._update(self.job, **changes)


Runner = Callable[[JobContext], None]


class _ThreadLogHandler(logging.Handler):
    """Forwards library log lines (e.g. the refit's) emitted on a job's thread into that job's log."""

    def __init__(self, manager: "JobManager") -> None:
        super().__init__(level=logging.INFO)
        self.manager = manager
        self.by_thread: dict[int, Job] = {}

    def emit(self, record: logging.LogRecord) -> None:
        job = self.by_thread.get(threading.get_ident())
        if job is not None:
            try:
                self.manager._log(job, record.getMessage())
            except Exception:  # a log line must never break a run
                pass


class JobManager:
    """Queues, runs and records jobs; safe to call from request threads."""

    def __init__(self, root: Path, settings: Any, runners: Optional[dict[str, Runner]] = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.runners = runners or {"study": run_study, "sketch": run_sketch, "retrain": run_retrain,
                                   "label-pick": run_label_pick, "ship": run_ship}
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, queue.Queue] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = False
        self._last_write: dict[str, float] = {}
        self._tokens: dict[str, CancelToken] = {}  # the running jobs' cancel tokens
        self._load()
        self.purge()  # uploads and finished jobs past UISettings.retention_days
        self._handler = _ThreadLogHandler(self)
        logging.getLogger("adaptlab").addHandler(self._handler)
        refit_log = logging.getLogger("adaptlab.refit")
        self._refit_level = refit_log.level
        if refit_log.level == logging.NOTSET:
            # The refit reports its estimate and its end at INFO; let them reach the job log.
            refit_log.setLevel(logging.INFO)

    # ------------------------------------------------------------------ persistence
    def _path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.json"

    def _load(self) -> None:
        for p in sorted(self.root.glob("*.json")):
            try:
                job = Job.from_dict(json.loads(p.read_text(encoding="utf-8")))
            except (ValueError, TypeError, KeyError):
                logger.warning("skipping unreadable job file %s", p)
                continue
            if not JOB_ID.match(job.id):
                continue
            if job.status in ("queued", "running"):
                # The server stopped while it ran; finished runs are in the store, so it can be resumed.
                job.status = "interrupted"
                job.phase = ("interrupted: the server stopped while this job ran. Finished runs are stored; "
                             "Resume continues.")
                job.finished = job.finished or time.time()
                for c in job.cells.values():
                    if c["state"] == "running":
                        c["state"] = "pending"
            self._jobs[job.id] = job
            self._write(job, force=True)

    def _write(self, job: Job, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write.get(job.id, 0.0) < 0.25:
            return
        self._last_write[job.id] = now
        path = self._path(job.id)
        tmp = path.with_name(path.name + f".{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(job.to_dict(), default=str), encoding="utf-8")
        os.replace(tmp, path)

    def purge(self) -> dict[str, Any]:
        """Delete uploads and finished jobs older than the retention setting (``adaptlab.ui.retention``)."""
        from adaptlab.ui.retention import purge_expired

        with self._lock:
            snapshot = {j.id: j.to_dict(log_tail=0) for j in self._jobs.values()}
        try:
            report = purge_expired(self.settings, snapshot, jobs_dir=self.root)
        except OSError as exc:  # housekeeping must never stop the app
            logger.warning("retention: could not delete old files (%s)", exc)
            return {"jobs": [], "uploads": [], "kept_models": [], "kept_studies": []}
        with self._lock:
            for job_id in report["jobs"]:
                if self._jobs.get(job_id) is not None and self._jobs[job_id].status in FINISHED:
                    del self._jobs[job_id]
        return report

    # ------------------------------------------------------------------ public
    def submit(self, kind: str, spec: dict[str, Any], title: str) -> Job:
        if kind not in self.runners:
            raise KeyError(kind)
        job = Job(id=secrets.token_hex(8), kind=kind, spec=spec, title=title)
        if kind in ("study", "sketch"):
            job.init_grid(spec.get("rungs", []), list(range(int(spec.get("seeds", 0)))))
        with self._lock:
            self._jobs[job.id] = job
            self._write(job, force=True)
        self._enqueue(job)
        return job

    def get(self, job_id: str) -> Job:
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            raise KeyError(job_id)
        with self._lock:
            return self._jobs[job_id]

    def snapshot(self, job_id: str, log_tail: Optional[int] = 80) -> dict[str, Any]:
        job = self.get(job_id)
        with self._lock:
            return json.loads(json.dumps(job.to_dict(log_tail=log_tail), default=str))

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)
            return [json.loads(json.dumps(j.to_dict(log_tail=0), default=str)) for j in jobs]

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        with self._lock:
            if job.status == "queued":
                job.status, job.phase, job.finished = "cancelled", "cancelled before it started", time.time()
            elif job.status == "running":
                job.cancel_requested = True
                job.phase = ("cancelling: stops at the running run's next training step (finished runs and its "
                             "checkpoint are kept)")
                token = self._tokens.get(job.id)
                if token is not None:
                    token.cancel("cancelled from the web app")
            self._write(job, force=True)
        return job

    def resume(self, job_id: str) -> Job:
        job = self.get(job_id)
        with self._lock:
            if job.status not in RESUMABLE or job.kind not in ("study", "sketch"):
                raise AdaptlabError(f"job {job_id} is {job.status}; only a cancelled, failed or interrupted study "
                                    "can be resumed.")
            job.status, job.phase, job.error, job.cancel_requested = "queued", "waiting to resume", None, False
            job.finished = None
            job.init_grid(job.rungs, job.seeds)
            self._write(job, force=True)
        self._enqueue(job)
        return job

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job has finished (tests and scripts)."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            job = self.get(job_id)
            if job.status in FINISHED:
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} still {self.get(job_id).status} after {timeout} s")

    def shutdown(self) -> None:
        self._stopping = True
        with self._lock:
            for job in self._jobs.values():
                if job.status == "running":
                    job.cancel_requested = True
            for token in self._tokens.values():
                token.cancel("the server is stopping")
        for q in self._queues.values():
            q.put(None)
        logging.getLogger("adaptlab").removeHandler(self._handler)
        logging.getLogger("adaptlab.refit").setLevel(self._refit_level)

    # ------------------------------------------------------------------ workers
    def _enqueue(self, job: Job) -> None:
        lane = LANES[job.kind]
        with self._lock:
            if lane not in self._queues:
                self._queues[lane] = queue.Queue()
                t = threading.Thread(target=self._worker, args=(lane,), name=f"adaptlab-ui-{lane}", daemon=True)
                self._threads[lane] = t
                t.start()
        self._queues[lane].put(job.id)

    def _worker(self, lane: str) -> None:
        q = self._queues[lane]
        while not self._stopping:
            job_id = q.get()
            if job_id is None:
                return
            job = self._jobs.get(job_id)
            if job is None or job.status != "queued":
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        ctx = JobContext(self, job, self.settings)
        token = CancelToken()
        with self._lock:
            job.status, job.started, job.runs = "running", time.time(), job.runs + 1
            job.phase = "starting"
            self._tokens[job.id] = token
            self._write(job, force=True)
        self._handler.by_thread[threading.get_ident()] = job
        threads = getattr(self.settings, "torch_threads", None)
        if threads:
            import torch

            torch.set_num_threads(threads)  # process-wide: the app's jobs are its only torch work
        try:
            with cancel_scope(token):
                self.runners[job.kind](ctx)
        except Cancelled:
            with self._lock:
                job.status, job.phase = "cancelled", _cancelled_phase(job)
        except DataValidationError as exc:
            with self._lock:
                from adaptlab.ui.uploads import problems_view

                job.status, job.phase = "failed", "the data failed validation"
                job.error = problems_view(exc, job.spec.get("display_paths", {}))
        except AdaptlabError as exc:
            with self._lock:
                job.status, job.phase = "failed", "stopped by an error"
                msg = str(exc)
                for a, b in job.spec.get("display_paths", {}).items():
                    msg = msg.replace(a, b)
                job.error = {"message": msg, "problems": [], "rows": []}
        except Exception as exc:  # an unexpected error: show it, keep the server running
            logger.error("job %s failed:\n%s", job.id, traceback.format_exc())
            with self._lock:
                job.status, job.phase = "failed", "stopped by an internal error"
                job.error = {"message": f"internal error: {type(exc).__name__}: {exc}. The server log has the "
                                        "traceback; finished runs are stored, so Resume continues after a fix.",
                             "problems": [], "rows": []}
        else:
            with self._lock:
                job.status = "done"
                job.phase = "finished"
        finally:
            self._handler.by_thread.pop(threading.get_ident(), None)
            with self._lock:
                self._tokens.pop(job.id, None)
                job.finished = time.time()
                job.cancel_requested = False
                for c in job.cells.values():
                    if c["state"] == "running":
                        c["state"] = "pending"
                self._write(job, force=True)
            self.purge()

    # ------------------------------------------------------------------ progress
    def _log(self, job: Job, msg: str) -> None:
        with self._lock:
            job.log.append(f"{time.strftime('%H:%M:%S')}  {msg}")
            self._write(job)

    def _update(self, job: Job, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(job, k, v)
            self._write(job, force=True)

    def _progress(self, job: Job, msg: str) -> None:
        with self._lock:
            job.log.append(f"{time.strftime('%H:%M:%S')}  {msg.strip()}")
            job.phase = msg.strip()
            self._write(job)

    def _study_event(self, job: Job, ev: Any) -> None:
        if ev.kind == "study":
            self._update(job, expected_study_id=ev.study_id)
            return
        with self._lock:
            cell = job.cells.setdefault(f"{ev.rung}|{ev.seed}", {"rung": ev.rung, "seed": int(ev.seed)})
            # A decision-driven study screens a network rung at a share of its training budget first; the
            # same cell may run again at the full budget (promoted), and then shows that run.
            fidelity = _float(getattr(ev, "fidelity", 1.0))
            fidelity = 1.0 if fidelity is None or fidelity >= 1.0 else fidelity
            at = cell_label(ev.rung, ev.seed, fidelity)
            if ev.kind == "start":
                cell.update(state="running", started=time.time(), fidelity=fidelity)
                if fidelity < 1.0:
                    cell.pop("f1", None)  # a new screen; a promoted run keeps the screen's F1 until it ends
                job.phase = f"training {at} on {ev.n_train} texts"
            elif ev.kind == "done":
                cell.update(state="done", f1=_float(ev.f1), seconds=_float(ev.seconds), finished=time.time(),
                            fidelity=fidelity)
                job.phase = f"{at} finished"
            elif ev.kind == "stored":
                if cell.get("fidelity", 1.0) != fidelity:
                    cell.pop("f1", None)  # the stored run's own score comes from the store below
                cell.update(state="stored", finished=time.time(), fidelity=fidelity)
                job.phase = f"{at} read from the run store"
            self._write(job, force=True)
        if ev.kind in ("done", "stored"):
            self._refresh_from_store(job)

    def _skip_unrun(self, job: Job, alloc: dict[str, Any]) -> None:
        """After a decision-driven study: the cells it never needed say so (and why, when a rung was dropped)."""
        drops = {d.get("rung"): d for d in alloc.get("drops") or []}
        with self._lock:
            for c in job.cells.values():
                if c["state"] == "pending":
                    d = drops.get(c["rung"])
                    c.update(state="skipped", why=_DROP_WORDS.get(d.get("kind"), "dropped") if d else "not needed")
            self._write(job, force=True)

    def _refresh_from_store(self, job: Job) -> None:
        """Scores of stored runs and loss curves of finished runs, read back from the run store."""
        sid = job.expected_study_id
        if not sid:
            return
        try:
            from adaptlab.store import RunStore

            results = RunStore(Path(self.settings.home) / "runs.sqlite").study_results(sid)
        except Exception:  # the live view is best-effort; the run itself goes on
            return
        curves = []
        shared: set[str] = set()
        # A decision-driven study can hold two runs of one (rung, seed): its screen at a share of the training
        # budget and the full run it was promoted to. The smaller budget is the screen.
        by_cell: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for r in sorted(results, key=lambda r: (r["rung"], r["seed"], _budget_size(r))):
            by_cell.setdefault((r["rung"], r["seed"]), []).append(r)
        with self._lock:
            for (rung, seed), runs in by_cell.items():
                cell = job.cells.get(f"{rung}|{seed}")
                fidelity = (cell or {}).get("fidelity", 1.0)
                mine = runs[-1] if fidelity >= 1.0 or len(runs) == 1 else runs[0]
                f1 = ((mine.get("metrics") or {}).get("test") or {}).get("f1")
                if cell is not None and cell.get("f1") is None and f1 is not None:
                    cell["f1"] = _float(f1)
                for r in runs:
                    diag = (r.get("metrics") or {}).get("diagnostics")
                    refit_key = diag.get("refit_key") if isinstance(diag, dict) else None
                    if refit_key in shared:
                        continue  # one refit shared by every seed: its curve once
                    series = loss_series(diag)
                    if series:
                        if refit_key:
                            shared.add(refit_key)
                        curve = {"rung": rung, "seed": seed, "series": series}
                        if r is not runs[-1]:
                            curve["note"] = "screen"
                        elif len(runs) == 1 and fidelity < 1.0:
                            curve["note"] = f"@{fidelity:.0%}"
                        curves.append(curve)
            job.curves = curves[:16]
            self._write(job, force=True)


def _cancelled_phase(job: Job) -> str:
    """What a cancelled job says: how far it got, and that Resume goes on from there."""
    if not job.cells:
        return "cancelled"
    n = sum(1 for c in job.cells.values() if c["state"] in ("done", "stored"))
    running = [c for c in job.cells.values() if c["state"] == "running"]
    kept = (f"; {cell_label(running[0]['rung'], running[0]['seed'], running[0].get('fidelity'))} stopped mid-run "
            "(a training rung keeps its checkpoint)" if running else "")
    return (f"cancelled after {n} of {len(job.cells)} runs. Finished runs are in the run store{kept}; Resume "
            "continues from there.")


def _budget_size(result: dict[str, Any]) -> float:
    """How much training budget a stored run had (steps, else seconds; no budget: the rung's full default)."""
    budget = (((result.get("manifest") or {}).get("rung") or {}).get("budget")) or {}
    for k in ("steps", "seconds"):
        v = _float(budget.get(k)) if isinstance(budget, dict) else None
        if v is not None:
            return v
    return math.inf


def cell_label(rung: Any, seed: Any, fidelity: Optional[float] = 1.0) -> str:
    """``finetune seed 0``, or ``finetune seed 0 @25%`` for a run at a share of its training budget.

    Example:
        >>> cell_label("finetune", 0, 0.25), cell_label("probe", 1, 1.0)
        ('finetune seed 0 @25%', 'probe seed 1')
    """
    at = f" @{fidelity:.0%}" if fidelity is not None and fidelity < 1.0 else ""
    return f"{rung} seed {seed}{at}"


def _float(x: Any) -> Optional[float]:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None  # NaN/inf would break the job's JSON for the browser


def loss_series(diag: Any) -> list[dict[str, Any]]:
    """Loss curves in a stored run's diagnostics: the refit's MLM loss, a network rung's train/val loss."""
    if not isinstance(diag, dict):
        return []
    out = []
    curve = diag.get("loss_curve")
    if isinstance(curve, list) and len(curve) >= 2:
        pts = [(float(x), float(y)) for x, y in curve if isinstance(y, (int, float))]
        out.append({"name": f"{diag.get('objective', 'refit')} loss", "x": [p[0] for p in pts],
                    "y": [p[1] for p in pts]})
    hist = diag.get("history")
    if isinstance(hist, list) and hist and all(isinstance(h, dict) for h in hist):
        for key in ("train_loss", "val_loss"):
            pts = [(float(h.get("step", i)), float(h[key])) for i, h in enumerate(hist)
                   if isinstance(h.get(key), (int, float))]
            if len(pts) >= 2:
                out.append({"name": key.replace("_", " "), "x": [p[0] for p in pts], "y": [p[1] for p in pts]})
    return out


# ---------------------------------------------------------------------------------------- runners
def load_labeled(spec: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The labeled dataset, the unlabeled one (or None) and the labeled file's `LoadReport`."""
    from adaptlab.data import load_dataset

    cols = spec["columns"]
    ds, report = load_dataset(spec["data_path"], text_col=cols.get("text"), label_col=cols.get("label"),
                              group_col=cols.get("group"), time_col=cols.get("time"), id_col=cols.get("id"),
                              encoding=cols.get("encoding") or None, on_invalid=cols.get("on_invalid", "error"),
                              return_report=True)
    unl = None
    if spec.get("unlabeled_path"):
        unl = load_dataset(spec["unlabeled_path"], text_col=cols.get("unlabeled_text"),
                           encoding=cols.get("encoding") or None, require_labels=False, on_invalid="drop",
                           return_report=True)[0]
    # The user's file names, not the server's upload paths, are shown in the study summary and the report
    # (the source is not part of the content hash, so the study id does not change); the upload's path is
    # kept as the dataset's path, so the stored study can find its file again (study config, acquire, ship).
    if spec.get("data_name"):
        ds.source, ds.path = spec["data_name"], str(spec["data_path"])
    if unl is not None and spec.get("unlabeled_name"):
        unl.source, unl.path = spec["unlabeled_name"], str(spec["unlabeled_path"])
    return ds, unl, report


def _run_study_on(ctx: JobContext, ds: Any, unl: Any, cfg: Any, **diagnose_kwargs: Any) -> None:
    from adaptlab.diagnostics import run_study_with_diagnostics
    from adaptlab.evaluate import Study
    from adaptlab.rungs import RUNGS

    encoder = None
    if any(getattr(RUNGS.get(r), "uses_encoder", False) for r in cfg.rungs):
        from adaptlab.encoders import load_encoder

        ctx.say(f"loading the encoder {cfg.encoder or '(packaged all-MiniLM-L6-v2)'} ...")
        encoder = load_encoder(cfg.encoder)
    study = Study(cfg, home=ctx.settings.home, encoder=encoder, show_progress=False)
    from adaptlab.ui.eta import estimates_for_job, stored_estimates

    costed: dict[str, Any] = {}
    if study.time_budget is not None:
        from adaptlab.decide.plan import cost_the_study

        ctx.say("time budget: costing the rungs on this machine (a short calibration) ...")
        note = cost_the_study(study, ds, unlabeled=unl)
        if note:
            ctx.say(f"time budget: {note}")
        costed = estimates_for_job(study.cost_estimates)
    # The job page's time left starts from these until the rungs' own runs have been timed: the study's cost
    # estimates, else (no time budget, or a rung it did not cost) what the rung took in the run store before.
    stored = stored_estimates(study.store, cfg.rungs, n_labeled=len(ds))
    ctx.update(spec={**ctx.job.spec, "cost_estimates": {**stored, **costed}})
    # The study's events carry its id (set as soon as it is stored) and drive the live grid.
    result = run_study_with_diagnostics(study, ds, unlabeled=unl, progress=ctx.say, on_event=ctx.event,
                                        **diagnose_kwargs)
    summary = {"n_trained": result.n_trained, "n_from_store": result.n_from_store,
               "wall_seconds": result.wall_seconds}
    alloc = getattr(result, "allocation", None)
    if alloc:
        summary["allocation"] = allocation_brief(alloc)
        ctx.manager._skip_unrun(ctx.job, alloc)
    ctx.update(study_id=result.study_id, result=summary)
    ctx.say(f"study {result.study_id[:12]} finished: {result.n_trained} run(s) trained, {result.n_from_store} read "
            f"from the run store, {result.wall_seconds:.1f} s.")


def allocation_brief(alloc: dict[str, Any]) -> dict[str, Any]:
    """What the job page shows of a decision-driven study's allocation (the results page has all of it)."""
    stop = alloc.get("stop") or {}
    return {"stop_kind": stop.get("kind"), "stop_reason": stop.get("reason"), "chosen": stop.get("chosen"),
            "n_runs": len(alloc.get("cells") or []), "compute_seconds": _float(alloc.get("compute_seconds")),
            "budget_seconds": _float(alloc.get("budget_seconds")),
            "exhaustive_seconds": _float(alloc.get("exhaustive_seconds"))}


def run_study(ctx: JobContext) -> None:
    from adaptlab.config import StudyConfig

    spec = ctx.job.spec
    ctx.say("reading and validating the data ...")
    ds, unl, _ = load_labeled(spec)
    cfg = StudyConfig(**spec["config"])
    _run_study_on(ctx, ds, unl, cfg)


def sketch_data(settings: Any) -> tuple[Any, Any, Any]:
    """The sketch's corpora from the bundled BBC News: labeled, unlabeled and a reference slice.

    Disjoint, stratified by topic, drawn with seed 0; each text cut to its first ``words`` words so the
    sketch stays under a minute on a CPU.
    """
    import numpy as np

    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.data.dataset import TextDataset

    s = settings.sketch
    bbc = load_bbc_news()
    rng = np.random.default_rng(0)
    classes = sorted(set(bbc.labels))
    by_class = {c: rng.permutation([i for i, y in enumerate(bbc.labels) if y == c]).tolist() for c in classes}

    def take(n: int) -> list[int]:
        per = max(1, n // len(classes))
        out = []
        for c in classes:
            out += by_class[c][:per]
            by_class[c] = by_class[c][per:]
        return sorted(out)

    lab, unl, ref = take(s.n_labeled), take(s.n_unlabeled), take(s.n_reference)

    def cut(i: int) -> str:
        return " ".join(bbc.texts[i].split()[: s.words])

    source = f"{bbc.source} (sketch: {len(lab)} articles, first {s.words} words)"
    labeled = TextDataset(texts=[cut(i) for i in lab], labels=[bbc.labels[i] for i in lab],
                          ids=[bbc.ids[i] for i in lab], source=source)
    unlabeled = TextDataset(texts=[cut(i) for i in unl], ids=[bbc.ids[i] for i in unl],
                            source=f"BBC News, {len(unl)} other articles (unlabeled)")
    reference = TextDataset(texts=[cut(i) for i in ref], ids=[bbc.ids[i] for i in ref],
                            source=f"BBC News, {len(ref)} further articles (reference)")
    return labeled, unlabeled, reference


def sketch_config(settings: Any) -> dict[str, Any]:
    s = settings.sketch
    return {"rungs": ["probe", "refit"], "seeds": s.seeds, "encoder": settings.encoder, "n_boot": settings.n_boot,
            "name": "sketch: OTS probe vs refit on BBC News",
            "rung_params": {"refit": {"budget": s.refit_budget, "batch_size": s.refit_batch_size,
                                      "max_seq_length": s.refit_max_seq_length,
                                      # one timed warm-up pass is enough to size a 20-step refit
                                      "estimate_steps": 1}}}


def run_sketch(ctx: JobContext) -> None:
    from adaptlab.config import StudyConfig

    s = ctx.settings.sketch
    ctx.say("sketch: drawing labeled, unlabeled and reference articles from the bundled BBC News ...")
    labeled, unlabeled, reference = sketch_data(ctx.settings)
    cfg = StudyConfig(**ctx.job.spec["config"])
    t0 = time.perf_counter()
    threads = None if getattr(ctx.settings, "torch_threads", None) else s.torch_threads
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        _run_study_on(ctx, labeled, unlabeled, cfg, reference=reference, n=s.mmd_n,
                      n_permutations=s.mmd_permutations)
    finally:
        torch.set_num_threads(before)
    ctx.update(result={**(ctx.job.result or {}), "sketch_seconds": time.perf_counter() - t0})


def run_label_pick(ctx: JobContext) -> None:
    """Pick the texts of a labeling batch (:func:`adaptlab.ui.labeling.run_pick`)."""
    from adaptlab.ui.labeling import run_pick

    run_pick(ctx)


def run_retrain(ctx: JobContext) -> None:
    from adaptlab.data import load_dataset
    from adaptlab.ship import retrain

    spec = ctx.job.spec
    cols = spec.get("columns", {})
    ctx.say("reading and validating the new labels ...")
    new = load_dataset(spec["data_path"], text_col=cols.get("text"), label_col=cols.get("label"),
                       id_col=cols.get("id"), encoding=cols.get("encoding") or None)
    if spec.get("data_name"):
        new.source = spec["data_name"]  # the user's file name in the verdict, not the upload path
    review = spec.get("review")
    if review:
        from adaptlab.ui.labelfix import reviewed_batch

        new, review = reviewed_batch(new, review, ctx.say)
    outcome = retrain(spec["model_path"], new, progress=ctx.say, accept_labels=bool((review or {}).get("accept")),
                      review=review)
    gate = outcome.gate
    if outcome.promoted:
        headline = f"Promoted: {outcome.in_use} is now in use."
    elif outcome.held:
        headline = f"Held: the new labels look wrong, so nothing was trained; {outcome.in_use} stays in use."
    elif gate is None:
        headline = f"Nothing to retrain: {outcome.in_use} stays in use."
    else:
        headline = f"Not promoted: the retrained model would be worse, so {outcome.in_use} stays in use."
    message = outcome.message
    for a, b in spec.get("display_paths", {}).items():
        message = message.replace(a, b)  # the held verdict names the model folder: its name, not the server path
    ctx.update(result={"promoted": outcome.promoted, "headline": headline, "message": message,
                       "status": outcome.status, "review": review,
                       "verdict": gate.verdict if gate else ("held" if outcome.held else None),
                       "in_use": outcome.in_use, "labels": outcome.labels.to_dict() if outcome.labels else None,
                       "version": outcome.version.id if outcome.version else None,
                       "gate": gate.to_dict() if gate else None, "merge": outcome.merge.lines(),
                       "model": spec["model"]})
    ctx.say(headline)


def run_ship(ctx: JobContext) -> None:
    """Ship a study's decided rung into the models folder (the results page's Ship form): trained on the study's
    data with its split settings, as ``adaptlab ship DATA --study ID`` does; a "do not ship yet" decision is
    shipped only when the form asked to force it, and the model card says so."""
    from adaptlab.config import StudyConfig
    from adaptlab.ship import ship_model
    from adaptlab.ship.from_study import ship_gate, study_choice
    from adaptlab.store import RunStore

    spec, home = ctx.job.spec, Path(ctx.settings.home)
    rung, extra = study_choice(spec["study_id"], home, fix="there is no rung to ship.")
    extra = ship_gate(extra, rung, force=bool(spec.get("force")), how_to_force='tick "ship anyway"')
    ctx.say("reading the study's data ...")
    ds, unl, _ = load_labeled(spec)
    cfg = StudyConfig(**RunStore(home / "runs.sqlite").get_study(spec["study_id"])["config"])
    precision = extra.pop("encode_precision", None) or "fp32"
    reg = ship_model(ds, spec["model_path"], rung=rung, encoder=cfg.encoder, unlabeled=unl if rung == "refit" else None,
                     split=cfg.split, test_size=cfg.test_size, test_seed=cfg.test_seed, home=home, extra=extra,
                     progress=ctx.say, precision=precision)
    v = reg.current
    ev = v.evaluation
    headline = (f"Shipped {rung} as {spec['model']} {v.id}: {ev.get('metric')} {ev.get('f1', float('nan')):.4f} on "
                f"{ev.get('n')} sealed texts" + (" (forced past the study's decision)." if v.forced else "."))
    ctx.update(result={"model": spec["model"], "version": v.id, "rung": rung, "forced": v.forced,
                       "evaluation": ev, "headline": headline})
    ctx.say(headline)

