"""The front page (studies and recent jobs) and the small endpoints every deployment needs."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from adaptlab.ui.context import Ui, public_job

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def index(ui: Ui) -> HTMLResponse:
    studies = ui.store().list_studies()
    job_list = [public_job(j) for j in ui.jobs.list()]
    by_study = {}
    for j in job_list:
        for sid in (j.get("study_id"), j.get("expected_study_id")):
            if sid and sid not in by_study:
                by_study[sid] = j
    return ui.render("index.html.j2", studies=studies, jobs=job_list[:20], by_study=by_study)


@router.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"ok": True}


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)
