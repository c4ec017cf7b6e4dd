"""The coordinator's labeling page: suggested texts, labeled with the keyboard, then a gated retrain.

``/models/<name>/label``: upload a file of unlabeled texts; `adaptlab.acquire.suggest_for_model` picks the
texts to label in a background job (kind ``label-pick``: scoring a large pool takes a while, so the upload
request only validates the file and returns); the page shows "picking ..." and reloads itself until the
new batch is there, or shows why the pick failed. Each text then takes a label with a number key (``s`` skips, ``u`` or Backspace undoes).
Every key press is saved on the server at once (``<home>/labeling/<model>.json``, written atomically), so
a reload or a closed tab loses nothing. "Retrain" writes the labels given so far to a file and runs the
existing retrain job (merge, label check, gate) on it; the job page shows the gate's verdict.

The routes live on their own router (``app.include_router(labeling.router)``); they read the app's
settings, job manager and upload store from ``request.app.state``.
"""
from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, Body, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from adaptlab.errors import AdaptlabError

router = APIRouter()
MAX_SUGGEST = 500
_LOCK = threading.RLock()  # one writer at a time (two tabs on one batch stay consistent); re-entered by _page


# ------------------------------------------------------------------------------------------ state
def _model_path(request: Request, name: str) -> Path:
    """The model folder ``name`` under the models root (the model pages' rules), else 404."""
    from adaptlab.ui.models_root import model_folder

    return model_folder(request.app.state.settings, name)[1]


def _session_file(request: Request, name: str) -> Path:
    return request.app.state.settings.home / "labeling" / f"{name}.json"


def _pick_file(request: Request, name: str) -> Path:
    """The pick in progress for ``name``: ``{"job": id, "n", "strategy", "pool_name"}`` (absent when none)."""
    return request.app.state.settings.home / "labeling" / f"{name}.pick.json"


def _picking(request: Request, name: str) -> Optional[dict[str, Any]]:
    """The pick job of ``name`` while it runs (``status``, ``phase``); when it failed, its ``error`` once.

    A finished pick's file is removed: a done job has written the new batch, a failed one is shown once.
    """
    from adaptlab.ui.jobstate import FINISHED

    pf = _pick_file(request, name)
    with _LOCK:
        info = _read(pf)
        if info is None:
            return None
        try:
            job = request.app.state.jobs.snapshot(info["job"], log_tail=0)
        except KeyError:  # the job is gone (retention): nothing to wait for
            pf.unlink(missing_ok=True)
            return None
        if job["status"] not in FINISHED:
            return {**info, "status": job["status"], "phase": job["phase"]}
        pf.unlink(missing_ok=True)
    if job["status"] == "done":
        return None
    why = (job.get("error") or {}).get("message") or job["phase"]
    return {**info, "status": job["status"], "error": f"Picking texts did not finish ({job['status']}): {why}"}


def _read(path: Path) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, session: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(session, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a crash mid-write keeps the previous state


def _session_or_404(sfile: Path) -> dict[str, Any]:
    """The labeling session in ``sfile``; 404 when the model has none. Call it holding ``_LOCK``."""
    session = _read(sfile)
    if session is None:
        raise HTTPException(404, "no labeling batch for this model yet; upload texts on its labeling page.")
    return session


def progress(session: dict[str, Any]) -> dict[str, Any]:
    """Counts and the next undecided row of a labeling session (what the page and the API show)."""
    decisions = session["decisions"]
    labeled = sum(1 for v in decisions.values() if v is not None)
    skipped = sum(1 for v in decisions.values() if v is None)
    nxt = next((k for k in range(len(session["rows"])) if str(k) not in decisions), None)
    return {"total": len(session["rows"]), "labeled": labeled, "skipped": skipped, "next": nxt,
            "done": nxt is None, "can_undo": bool(session["history"]), "decisions": decisions,
            "retrain_job": session.get("retrain_job")}


def apply(session: dict[str, Any], action: str, row: Optional[int] = None, label: Optional[str] = None) -> None:
    """Record one key press: ``label`` (row, label), ``skip`` (row) or ``undo`` (the last decision).

    Example:
        >>> s = {"rows": [{}, {}], "classes": ["a", "b"], "decisions": {}, "history": []}
        >>> apply(s, "label", 0, "b"); apply(s, "skip", 1); apply(s, "undo")
        >>> s["decisions"], s["history"]
        ({'0': 'b'}, ['0'])
    """
    if action == "undo":
        if session["history"]:
            session["decisions"].pop(session["history"].pop(), None)
        return
    if action not in ("label", "skip"):
        raise HTTPException(400, f"action {action!r} is not one of label, skip, undo.")
    if not isinstance(row, int) or isinstance(row, bool) or not 0 <= row < len(session["rows"]):
        raise HTTPException(400, f"row {row!r} is not a row of this batch (0..{len(session['rows']) - 1}).")
    if action == "label" and label not in session["classes"]:
        raise HTTPException(400, f"label {label!r} is not one of the model's classes: {', '.join(session['classes'])}.")
    key = str(row)
    if key in session["history"]:
        session["history"].remove(key)  # relabeling a row: undo then takes back the newest decision
    session["decisions"][key] = label if action == "label" else None
    session["history"].append(key)


# ------------------------------------------------------------------------------------------ pages
def _render(request: Request, status: int = 200, **ctx: Any) -> HTMLResponse:
    return request.app.state.ui.render("labeling.html.j2", status, **ctx)


def _page(request: Request, name: str, status: int = 200, error: Optional[str] = None) -> HTMLResponse:
    path = _model_path(request, name)
    picking = _picking(request, name)
    if picking is not None and picking.get("error"):
        error, picking = error or picking["error"], None
    session = _read(_session_file(request, name))
    from adaptlab.ship import ModelRegistry

    in_use = ModelRegistry(path).current.id
    return _render(request, status, name=name, session=session, progress=progress(session) if session else None,
                   error=error, in_use=in_use, max_suggest=MAX_SUGGEST, picking=picking)


@router.get("/models/{name}/label", response_class=HTMLResponse)
def label_page(request: Request, name: str) -> HTMLResponse:
    return _page(request, name)


@router.post("/models/{name}/label/suggest")
def label_suggest(request: Request, name: str, pool: UploadFile = File(...), n: str = Form("20"),
                  strategy: str = Form("default"), text_col: str = Form("")) -> Response:
    """Pick the texts to label from an uploaded pool and start a new labeling batch."""
    from adaptlab.acquire import STRATEGIES
    from adaptlab.data import load_dataset
    from adaptlab.ui.uploads import UploadError, UploadTooLarge

    path = _model_path(request, name)
    try:
        count = int(n)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_SUGGEST:
        return _page(request, name, 400, f"How many texts: {n!r} is not a number from 1 to {MAX_SUGGEST}.")
    if strategy not in STRATEGIES or strategy == "cold-start":
        return _page(request, name, 400, f"strategy {strategy!r} is not offered here.")
    if not pool.filename:
        return _page(request, name, 400, "Choose a file of unlabeled texts first.")
    uploads = request.app.state.uploads
    try:
        uid = uploads.create({"unlabeled": (pool.filename, pool.file)}, kind="labeling", extra={"model": name})
        # Read now so a bad file is refused on this page; the pick itself runs in the background.
        load_dataset(uploads.path(uid, "unlabeled"), text_col=text_col or None, require_labels=False)
    except UploadError as exc:
        return _page(request, name, 413 if isinstance(exc, UploadTooLarge) else 400, str(exc))
    except AdaptlabError as exc:
        return _page(request, name, 422, str(exc).replace(str(uploads.root), "upload"))
    busy = _picking(request, name)
    if busy is not None and not busy.get("error"):
        return _page(request, name, 409, "Texts are being picked for this model already; wait for that batch.")
    settings = request.app.state.settings
    spec = {"model": name, "model_path": str(path), "data_path": str(uploads.path(uid, "unlabeled")),
            "text_col": text_col or None, "n": count, "strategy": strategy, "pool_name": pool.filename,
            # The browser never sees a server path: messages name the model folder by its name.
            "display_paths": {str(path): name, str(settings.models_root): "models", str(uploads.root): "upload"}}
    job = request.app.state.jobs.submit("label-pick", spec, title=f"pick {count} texts to label for {name}")
    with _LOCK:
        _write(_pick_file(request, name), {"job": job.id, "n": count, "strategy": strategy,
                                           "pool_name": pool.filename})
    return RedirectResponse(f"/models/{name}/label", status_code=303)


def run_pick(ctx: Any) -> None:
    """The ``label-pick`` job: pick the texts of an uploaded pool and write them as the model's new batch.

    The labels of the batch it replaces are kept out of the new picks (they are not retrained).
    """
    from adaptlab.acquire import suggest_for_model
    from adaptlab.data import load_dataset
    from adaptlab.ship import ModelRegistry

    spec = ctx.job.spec
    ctx.say(f"reading {spec['pool_name']} ...")
    ds = load_dataset(spec["data_path"], text_col=spec.get("text_col"), require_labels=False)
    sfile = Path(ctx.settings.home) / "labeling" / f"{spec['model']}.json"
    before = _read(sfile)
    done = [] if before is None else [before["rows"][int(k)]["text"] for k, v in before["decisions"].items()
                                     if v is not None]
    result = suggest_for_model(spec["model_path"], ds, int(spec["n"]), strategy=spec["strategy"], also_labeled=done,
                               progress=ctx.say)
    classes = sorted({str(c) for c in ModelRegistry(spec["model_path"]).training_data().labels or []})
    notes = list(result.notes)
    for a, b in spec.get("display_paths", {}).items():
        notes = [note.replace(a, b) for note in notes]
    session = {"model": spec["model"], "created": time.time(), "strategy": spec["strategy"],
               "summary": result.summary(), "notes": notes, "classes": classes, "pool_name": spec["pool_name"],
               "rows": [{k: r[k] for k in ("id", "text", "predicted_label", "score", "strategy", "reason")}
                        for r in result.rows],
               "decisions": {}, "history": [], "retrain_job": None}
    with _LOCK:
        _write(sfile, session)
    ctx.update(result={"model": spec["model"], "n": len(session["rows"]), "summary": session["summary"]})
    ctx.say(f"picked {len(session['rows'])} texts to label: {session['summary']}")


@router.get("/api/models/{name}/label")
def label_state(request: Request, name: str) -> dict[str, Any]:
    _model_path(request, name)
    session = _read(_session_file(request, name))
    if session is None:
        raise HTTPException(404, "no labeling batch for this model yet; upload texts on its labeling page.")
    return {"classes": session["classes"], **progress(session)}


@router.post("/api/models/{name}/label")
def label_action(request: Request, name: str, payload: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """One key press: ``{"action": "label", "row": 3, "label": "sport"}``, ``{"action": "skip", "row": 3}``
    or ``{"action": "undo"}``; saved before the answer is sent."""
    _model_path(request, name)
    sfile = _session_file(request, name)
    with _LOCK:
        session = _session_or_404(sfile)
        if session.get("retrain_job"):
            raise HTTPException(409, "this batch was sent to retrain already; start a new batch to label more.")
        apply(session, str(payload.get("action")), payload.get("row"), payload.get("label"))
        _write(sfile, session)
    return {"classes": session["classes"], **progress(session)}


@router.post("/models/{name}/label/retrain")
def label_retrain(request: Request, name: str) -> Response:
    """Write the labels given so far to a file and run the model's gated retrain on it."""
    from adaptlab.data import load_dataset

    path = _model_path(request, name)
    sfile = _session_file(request, name)
    with _LOCK:
        session = _session_or_404(sfile)
        if session.get("retrain_job"):
            return RedirectResponse(f"/jobs/{session['retrain_job']}", status_code=303)
        rows = [(session["rows"][int(k)], v) for k, v in session["decisions"].items() if v is not None]
        if not rows:
            return _page(request, name, 400, "Label at least one text before retraining (skipped texts are left out).")
        # JSON Lines, not CSV: the retrain reads back exactly the labels given (a CSV written by adaptlab
        # neutralises cells that start like a spreadsheet formula, adaptlab.data.safe_csv).
        lines = "".join(json.dumps({"id": r["id"], "text": r["text"], "label": v}, ensure_ascii=False) + "\n"
                        for r, v in rows)
        shown = f"{len(rows)} labels from the labeling page"
        uploads = request.app.state.uploads
        uid = uploads.create({"labels": ("labeling.jsonl", io.BytesIO(lines.encode("utf-8")))},
                             kind="retrain", extra={"model": name})
        f = uploads.path(uid, "labels")
        try:
            # The retrain job validates its file like any data file; checking here keeps the coordinator on
            # this page with the reason (e.g. a class labeled once) instead of a failed job.
            load_dataset(f, text_col="text", label_col="label", id_col="id")
        except AdaptlabError as exc:
            msg = str(exc).replace(str(f), "your labels").replace(str(uploads.root), "upload")
            return _page(request, name, 422, f"Not retrained yet: {msg}")
        spec = {"model": name, "model_path": str(path), "data_path": str(f), "data_name": shown,
                "columns": {"text": "text", "label": "label", "id": "id", "encoding": None},
                "display_paths": {str(f): shown, str(path): name}}
        job = request.app.state.jobs.submit("retrain", spec, title=f"retrain {name} with {shown}")
        session["retrain_job"] = job.id
        _write(sfile, session)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


__all__ = ["apply", "progress", "router", "run_pick"]
