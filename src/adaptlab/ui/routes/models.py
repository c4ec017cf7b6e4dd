"""The coordinator's models: the list, a model's page (versions, events, held retrains), retrain, rollback.

The browser names a model by its folder's name under ``settings.models_root``; only folders holding a
``registry.json`` and lying directly under the root (no symlink out of it) are offered.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import HTMLResponse, Response

from adaptlab.errors import AdaptlabError
from adaptlab.ui.context import Ui, UIContext, public_job, see_other
from adaptlab.ui.models_root import model_dirs, model_folder
from adaptlab.ui.uploads import ENCODINGS, UploadError, UploadTooLarge, display_name, problems_view

router = APIRouter()
VERSION_ID = re.compile(r"^v\d{1,8}$")


def model_view(path: Path) -> dict[str, Any]:
    from adaptlab.ship import ModelRegistry

    reg = ModelRegistry(path)
    try:
        current = reg.current.id
    except AdaptlabError:
        current = None
    return {"current": current, "max_drop": reg.max_drop, "versions": [v.to_dict() for v in reg.versions],
            "events": reg.events[-20:], "held": reg.held_retrains}


def _problem(message: str) -> dict[str, Any]:
    return {"message": message, "problems": [], "rows": []}


def model_page_response(ui: UIContext, name: str, status: int = 200, error: Optional[dict[str, Any]] = None,
                        notice: Optional[str] = None, error_title: str = "Not retrained") -> HTMLResponse:
    name, path = model_folder(ui.settings, name)
    try:
        view, view_error = model_view(path), None
    except AdaptlabError as exc:
        view, view_error = None, str(exc).replace(str(path), name)
    recent = [public_job(j) for j in ui.jobs.list() if j["kind"] == "retrain" and j["spec"].get("model") == name][:5]
    return ui.render("model.html.j2", status=status, name=name, view=view, view_error=view_error, error=error,
                     notice=notice, recent=recent, encodings=ENCODINGS, error_title=error_title)


@router.get("/models", response_class=HTMLResponse)
def models_page(ui: Ui) -> HTMLResponse:
    listing = []
    for name, path in model_dirs(ui.settings).items():
        try:
            v = model_view(path)
            cur = next((x for x in v["versions"] if x["id"] == v["current"]), None)
            listing.append({"name": name, "current": v["current"], "n_versions": len(v["versions"]),
                            "rung": cur["rung"] if cur else "", "f1": (cur or {}).get("evaluation", {}).get("f1"),
                            "held": v["held"],
                            # The version in use was shipped with --force / "ship anyway" past its study's decision.
                            "forced": (cur or {}).get("forced")})
        except AdaptlabError as exc:
            listing.append({"name": name, "error": str(exc).replace(str(path), name)})
    return ui.render("models.html.j2", models=listing)


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(ui: Ui, name: str, rolled_back: str = "", was: str = "") -> HTMLResponse:
    notice = None
    if VERSION_ID.match(rolled_back) and VERSION_ID.match(was):
        notice = f"{rolled_back} is in use again (was {was})."
    return model_page_response(ui, name, notice=notice)


@router.get("/api/models")
def models_api(ui: Ui) -> list[dict[str, Any]]:
    out = []
    for name, path in model_dirs(ui.settings).items():
        try:
            out.append({"name": name, **model_view(path)})
        except AdaptlabError as exc:
            out.append({"name": name, "error": str(exc).replace(str(path), name)})
    return out


@router.get("/api/models/{name}")
def model_api(ui: Ui, name: str) -> dict[str, Any]:
    name, path = model_folder(ui.settings, name)
    return {"name": name, **model_view(path)}


@router.post("/models/{name}/retrain")
def model_retrain(ui: Ui, name: str, labels: UploadFile = File(...), text_col: str = Form(""),
                  label_col: str = Form(""), encoding: str = Form("")) -> Response:
    from adaptlab.data import load_dataset

    name, path = model_folder(ui.settings, name)
    if not labels.filename:
        return model_page_response(ui, name, 400, _problem("Choose a file of new labels first."))
    if encoding not in ENCODINGS:
        return model_page_response(ui, name, 400, _problem(f"encoding {encoding!r} is not offered."))
    try:
        uid = ui.uploads.create({"labels": (labels.filename, labels.file)}, kind="retrain", extra={"model": name})
    except UploadError as exc:
        return model_page_response(ui, name, 413 if isinstance(exc, UploadTooLarge) else 400, _problem(str(exc)))
    f = ui.uploads.path(uid, "labels")
    shown = display_name(labels.filename)
    cols = {"text": text_col or None, "label": label_col or None, "encoding": encoding or None}
    try:
        load_dataset(f, text_col=cols["text"], label_col=cols["label"], encoding=cols["encoding"])
    except AdaptlabError as exc:
        return model_page_response(ui, name, 422, problems_view(exc, {str(f): shown}))
    spec = {"model": name, "model_path": str(path), "data_path": str(f), "data_name": shown, "columns": cols,
            "display_paths": {str(f): shown, str(path): name}}
    job = ui.jobs.submit("retrain", spec, title=f"retrain {name} with {shown}")
    return see_other(f"/jobs/{job.id}")


@router.post("/models/{name}/rollback")
def model_rollback(ui: Ui, name: str, version: str = Form("")) -> Response:
    from adaptlab.ship import ModelRegistry

    name, path = model_folder(ui.settings, name)
    if not VERSION_ID.match(version):
        return model_page_response(ui, name, 400, _problem(f"{version!r} is not a version id such as v0001."))
    try:
        reg = ModelRegistry(path)
        before = reg.current.id
        v = reg.rollback(version)
    except AdaptlabError as exc:
        return model_page_response(ui, name, 400, _problem(str(exc).replace(str(path), name)))
    return see_other(f"/models/{name}?rolled_back={v.id}&was={before}")


@router.post("/models/{name}/predict")
def model_predict(ui: Ui, name: str, texts: UploadFile = File(...), text_col: str = Form(""),
                  encoding: str = Form("")) -> Response:
    """Label every row of an uploaded file with the version in use; the predictions come back as a CSV download
    (the input's id or row number, label, confidence, one probability column per class)."""
    import shutil

    from adaptlab.ship import load_model
    from adaptlab.ship.predict import predict_file

    name, path = model_folder(ui.settings, name)
    title = "Not predicted"
    if not texts.filename:
        return model_page_response(ui, name, 400, _problem("Choose a file of texts to label first."), error_title=title)
    if encoding not in ENCODINGS:
        return model_page_response(ui, name, 400, _problem(f"encoding {encoding!r} is not offered."), error_title=title)
    try:
        uid = ui.uploads.create({"unlabeled": (texts.filename, texts.file)}, kind="predict", extra={"model": name})
    except UploadError as exc:
        return model_page_response(ui, name, 413 if isinstance(exc, UploadTooLarge) else 400, _problem(str(exc)),
                                   error_title=title)
    f, shown = ui.uploads.path(uid, "unlabeled"), display_name(texts.filename)
    out = f.parent / "predictions.csv"
    try:  # the upload is a copy made for this request only: removed once answered
        try:
            report = predict_file(load_model(path, use_cache=False), f, out, text_col=text_col or None,
                                  encoding=encoding or None)
        except AdaptlabError as exc:
            return model_page_response(ui, name, 422, problems_view(exc, {str(f): shown, str(path): name}),
                                       error_title=title)
        body = out.read_bytes()
    finally:
        shutil.rmtree(f.parent, ignore_errors=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(shown).name.split(".")[0]).strip("-") or "texts"
    return Response(body, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{stem}-predictions-{name}.csv"',
        "X-Adaptlab-Predicted": str(report.n_predicted), "X-Adaptlab-Rejected": str(report.n_rejected)})

