"""The coordinator's label review: an uploaded batch's suspicious rows, keep / fix / drop, then the retrain.

The flow (routes under ``/models/<name>/labels``; included by :func:`adaptlab.ui.app.create_app`):

1. ``POST /models/<name>/labels/check``: the new labels file is uploaded and validated like any
   retrain upload, then checked exactly as ``retrain`` will check it
   (:func:`adaptlab.ship.check_new_labels`: confident learning on old + new labels, and the model in
   use); the result is kept next to the upload (``label-check.json``).
2. ``GET /models/<name>/labels/<upload>``: the flagged rows, most suspicious first, each with keep /
   fix (pick the right label) / drop, and whether the label check would hold the batch as it is.
3. ``POST /models/<name>/labels/<upload>/retrain``: the decisions are appended to
   ``label-decisions.csv`` next to the upload, with their provenance (who: the name typed in, else
   the server's OS user; when; old label; new label; action), the corrected batch is written as
   ``labels-corrected.csv``, and a retrain job runs on it: dropped rows are removed and listed on the
   job page, fixed rows train with their new label; the retrain's own label check and gate still
   decide (held, promoted or not). The job page shows the verdict.

Nothing here names a server path to the browser: uploads by id, models by name (as in ``app``).
"""
from __future__ import annotations

import datetime as dt
import getpass
import json
import re
from pathlib import Path
from typing import Any, Callable, Optional

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from adaptlab.data.safe_csv import SafeCsvWriter
from adaptlab.errors import AdaptlabError, ConfigError

router = APIRouter()

CHECK_FILE = "label-check.json"
DECISIONS_FILE = "label-decisions.csv"
CORRECTED_FILE = "labels-corrected.csv"
DECISION_COLUMNS = ("when", "who", "row", "id", "old_label", "new_label", "action", "suggested_label", "score",
                    "text", "labels_file", "model", "in_use")
# The review page lists every flagged row up to this many (most suspicious first); the rest are said.
MAX_SHOWN = 300
_FIELD = re.compile(r"^(action|label)-(\d{1,9})$")
_PREVIEW = 200


# ------------------------------------------------------------------------------------ helpers
def reviewer(name: str) -> str:
    """Who made the decisions: the name typed in the form, else the OS user running the app.

    Example:
        >>> reviewer("  Ana  "), reviewer("") == getpass.getuser()
        ('Ana', True)
    """
    name = " ".join((name or "").split())[:80]
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "unknown user"


def _settings(request: Request) -> Any:
    return request.app.state.settings


def _model_path(request: Request, name: str) -> Path:
    """The model folder ``name`` under the models root (the models page's rules), else 404."""
    from adaptlab.ui.models_root import model_folder

    return model_folder(_settings(request), name)[1]


def _upload(request: Request, name: str, uid: str) -> tuple[Path, dict[str, Any]]:
    """The folder and meta of a retrain upload of model ``name``, else 404."""
    uploads = request.app.state.uploads
    try:
        folder, meta = uploads.folder(uid), uploads.meta(uid)
    except KeyError:
        raise HTTPException(404, "upload not found.") from None
    if meta.get("kind") != "retrain" or meta.get("model") != name or not (folder / CHECK_FILE).is_file():
        raise HTTPException(404, "upload not found.")
    return folder, meta


def _render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    return request.app.state.ui.render(template, status, **ctx)


def _load(path: Path, columns: dict[str, Any]) -> Any:
    from adaptlab.data import load_dataset

    return load_dataset(path, text_col=columns.get("text"), label_col=columns.get("label"),
                        encoding=columns.get("encoding") or None)


def _classes(check: dict[str, Any]) -> list[str]:
    return list(check.get("classes") or [])


# ------------------------------------------------------------------------------------ check
def check_upload(model: Path, labels_file: Path, columns: dict[str, Any], source: str) -> dict[str, Any]:
    """Run the retrain's label check on an uploaded batch without training; JSON-ready.

    Returns the :class:`~adaptlab.ship.label_check.LabelCheck` as a dict (``None`` fields when there
    is nothing to judge) plus ``classes`` (the labels a fix may pick), ``in_use`` and the merge lines.
    """
    from adaptlab.ship import ModelRegistry, check_new_labels, merge_labels

    new = _load(labels_file, columns)
    new.source = source
    reg = ModelRegistry(model)
    old = reg.training_data()
    merged, merge = merge_labels(old, new, reg.eval_set())
    chk = None
    if merge.added or merge.relabelled:
        chk = check_new_labels(old, new, merged, pipeline=reg.load(), evaluation=reg.current.evaluation)
    return {"in_use": reg.current.id, "n_rows": len(new), "merge": merge.lines(),
            "classes": sorted(set(old.labels or []) | set(new.labels or [])),
            "check": chk.to_dict() if chk is not None else None,
            "evidence": chk.evidence() if chk is not None else None,
            "would_hold": bool(chk is not None and chk.held)}


@router.post("/models/{name}/labels/check")
def labels_check(request: Request, name: str, labels: UploadFile = File(...), text_col: str = Form(""),
                 label_col: str = Form(""), encoding: str = Form("")) -> Response:
    """Upload a batch of new labels and show its suspicious rows (nothing is trained)."""
    from adaptlab.ui.uploads import ENCODINGS, UploadError, UploadTooLarge, display_name, problems_view

    path = _model_path(request, name)
    uploads = request.app.state.uploads

    def refused(status: int, err: dict[str, Any]) -> HTMLResponse:
        return _render(request, "labelfix.html.j2", status, name=name, review=None, error=err)

    if not labels.filename:
        return refused(400, {"message": "Choose a file of new labels first.", "problems": [], "rows": []})
    if encoding not in ENCODINGS:
        return refused(400, {"message": f"encoding {encoding!r} is not offered.", "problems": [], "rows": []})
    try:
        uid = uploads.create({"labels": (labels.filename, labels.file)}, kind="retrain", extra={"model": name})
    except UploadError as exc:
        return refused(413 if isinstance(exc, UploadTooLarge) else 400,
                       {"message": str(exc), "problems": [], "rows": []})
    f = uploads.path(uid, "labels")
    shown = display_name(labels.filename)
    cols = {"text": text_col or None, "label": label_col or None, "encoding": encoding or None}
    try:
        result = check_upload(path, f, cols, shown)
    except AdaptlabError as exc:
        return refused(422, problems_view(exc, {str(f): shown, str(path): name}))
    meta = uploads.meta(uid)
    meta.update(columns=cols, checked=dt.datetime.now().isoformat(timespec="seconds"))
    uploads.save_meta(uid, meta)
    (uploads.folder(uid) / CHECK_FILE).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return RedirectResponse(f"/models/{name}/labels/{uid}", status_code=303)


# ------------------------------------------------------------------------------------ review
def _review_view(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    result = json.loads((folder / CHECK_FILE).read_text(encoding="utf-8"))
    chk = result.get("check") or {}
    rows = list(chk.get("rows") or [])
    return {**result, "uid": meta["id"], "file": meta["files"]["labels"]["name"], "rows": rows[:MAX_SHOWN],
            "n_flagged": len(rows), "has_decisions": (folder / DECISIONS_FILE).is_file()}


@router.get("/models/{name}/labels/{uid}", response_class=HTMLResponse)
def labels_review(request: Request, name: str, uid: str) -> HTMLResponse:
    _model_path(request, name)
    folder, meta = _upload(request, name, uid)
    return _render(request, "labelfix.html.j2", name=name, review=_review_view(folder, meta), error=None)


def decisions_from_form(form: dict[str, str], view: dict[str, Any]) -> list[Any]:
    """The keep / fix / drop decisions a review form carries, checked against the flagged rows.

    Fields are ``action-<row>`` (keep | fix | drop; empty = not reviewed) and ``label-<row>`` (the
    right label for fix, one of the known classes). A fix to the label the row already has is a keep.

    Example:
        >>> view = {"rows": [{"row": 3, "given": "sport"}], "classes": ["sport", "tech"]}
        >>> [(d.row, d.action, d.new) for d in decisions_from_form({"action-3": "fix", "label-3": "tech"}, view)]
        [(3, 'fix', 'tech')]
    """
    from adaptlab.data import LabelDecision

    given = {int(r["row"]): str(r["given"]) for r in view["rows"]}
    classes = set(view.get("classes") or [])
    out = []
    for key, value in form.items():
        m = _FIELD.match(key)
        if not m or m.group(1) != "action" or not value:
            continue
        row = int(m.group(2))
        if row not in given:
            raise ConfigError(f"row {row} is not among the flagged rows of this batch; reload the review page.")
        new = form.get(f"label-{row}") or None
        if value == "fix":
            if new not in classes:
                raise ConfigError.invalid(f"label of row {row}", new or "", f"one of {', '.join(sorted(classes))}")
            if new == given[row]:
                value = "keep"
        out.append(LabelDecision(row=row, action=value, old=given[row], new=new if value == "fix" else None))
    return sorted(out, key=lambda d: d.row)


def write_decisions(folder: Path, decisions: list[Any], view: dict[str, Any], who: str, when: str,
                    model: str) -> Path:
    """Append the decisions, with who / when / old and new label, to ``label-decisions.csv`` next to the upload."""
    path = folder / DECISIONS_FILE
    flagged = {int(r["row"]): r for r in view["rows"]}
    new_file = not path.is_file()
    with path.open("a", encoding="utf-8", newline="") as fh:
        w = SafeCsvWriter(fh)  # offered as a download: labels and texts never start a spreadsheet formula
        if new_file:
            w.writerow(DECISION_COLUMNS)
        for d in decisions:
            r = flagged[d.row]
            w.writerow([when, who, d.row, r.get("id", ""), d.old, "" if d.new is None else d.new, d.action,
                        r.get("suggested", ""), f"{float(r.get('score', 0.0)):.4f}", r.get("text", ""), view["file"],
                        model, view.get("in_use", "")])
    return path


def write_corrected(folder: Path, corrected: Any) -> Path:
    """The batch as it will train (drops removed, fixes applied), with each row's number in the uploaded file."""
    path = folder / CORRECTED_FILE
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = SafeCsvWriter(fh)  # a download only: the retrain reads the upload and the decisions, not this file
        w.writerow(("row", "id", "text", "label"))
        for row, i, t, lab in zip(corrected.rows, corrected.ids, corrected.texts, corrected.labels):
            w.writerow((row, i, t, lab))
    return path


def reviewed_batch(new: Any, review: dict[str, Any], say: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The retrain job's side: apply a review's decisions to the uploaded batch and say what changed.

    Returns the corrected batch (row numbers of the uploaded file kept) and the review record stored
    with the job and in the new version's model card (dropped rows listed, never silently lost).
    """
    from adaptlab.data import LabelDecision, apply_label_decisions

    decisions = [LabelDecision(**d) for d in review.get("decisions") or []]
    corrected, done = apply_label_decisions(new, decisions)
    for item in (*done["fixed"], *done["dropped"], *done["kept"]):
        item["text"] = item["text"][:_PREVIEW]
    record = {k: review.get(k) for k in ("who", "when", "source", "decisions_file", "accept")}
    record.update(done)
    say(f"label review by {record['who']}: {len(done['fixed'])} label(s) fixed, {len(done['dropped'])} row(s) "
        f"dropped, {len(done['kept'])} kept as labeled; training on {len(corrected)} of the {len(new)} rows")
    if done["dropped"]:
        say("dropped at review (not trained on): rows " + ", ".join(str(d["row"]) for d in done["dropped"]))
    return corrected, record


@router.post("/models/{name}/labels/{uid}/retrain")
async def labels_retrain(request: Request, name: str, uid: str) -> Response:
    """Write the review's decisions next to the upload and start the retrain on the corrected batch."""
    from adaptlab.data import apply_label_decisions

    path = _model_path(request, name)
    folder, meta = _upload(request, name, uid)
    view = _review_view(folder, meta)
    form = {k: str(v) for k, v in (await request.form()).items()}
    who, when = reviewer(form.get("reviewer", "")), dt.datetime.now().astimezone().isoformat(timespec="seconds")
    labels_file = request.app.state.uploads.path(uid, "labels")
    try:
        decisions = decisions_from_form(form, view)
        corrected, _ = apply_label_decisions(_load(labels_file, meta.get("columns") or {}), decisions)
    except AdaptlabError as exc:
        err = {"message": str(exc).replace(str(labels_file), view["file"]), "problems": [], "rows": []}
        return _render(request, "labelfix.html.j2", 400, name=name, review=view, error=err)
    if decisions:
        write_decisions(folder, decisions, view, who, when, name)
    write_corrected(folder, corrected)
    review = {"decisions": [{"row": d.row, "action": d.action, "old": d.old, "new": d.new} for d in decisions],
              "who": who, "when": when, "source": view["file"], "accept": form.get("accept") == "yes",
              "decisions_file": f"{DECISIONS_FILE} (upload {uid})" if decisions else None, "upload": uid}
    spec = {"model": name, "model_path": str(path), "data_path": str(labels_file), "data_name": view["file"],
            "columns": meta.get("columns") or {}, "review": review,
            "display_paths": {str(labels_file): view["file"], str(path): name}}
    job = request.app.state.jobs.submit("retrain", spec, title=f"retrain {name} with {view['file']} (reviewed)")
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.get("/models/{name}/labels/{uid}/{filename}")
def labels_file_download(request: Request, name: str, uid: str, filename: str) -> Response:
    """The decisions file (with provenance) or the corrected batch of a reviewed upload."""
    _model_path(request, name)
    folder, _ = _upload(request, name, uid)
    if filename not in (DECISIONS_FILE, CORRECTED_FILE) or not (folder / filename).is_file():
        raise HTTPException(404, "file not found.")
    return Response((folder / filename).read_bytes(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
