"""A study, sketch or retrain job: its live page, its JSON, cancel and resume."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from adaptlab.ui.context import Ui, UIContext, not_found, public_job, see_other
from adaptlab.ui.jobs import FINISHED

router = APIRouter()


def job_view(ui: UIContext, jid: str) -> dict[str, Any]:
    try:
        return public_job(ui.jobs.snapshot(jid))
    except KeyError:
        raise not_found("job") from None


@router.get("/jobs/{jid}", response_class=HTMLResponse)
def job_page(ui: Ui, jid: str) -> HTMLResponse:
    return ui.render("job.html.j2", job=job_view(ui, jid), finished=FINISHED)


@router.get("/api/jobs/{jid}")
def job_api(ui: Ui, jid: str) -> dict[str, Any]:
    return job_view(ui, jid)


@router.get("/api/jobs")
def jobs_api(ui: Ui) -> list[dict[str, Any]]:
    return [public_job(j) for j in ui.jobs.list()]


def _answer(ui: UIContext, request: Request, jid: str) -> Response:
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(job_view(ui, jid))
    return see_other(f"/jobs/{jid}")


@router.post("/jobs/{jid}/cancel")
def job_cancel(ui: Ui, request: Request, jid: str) -> Response:
    job_view(ui, jid)
    ui.jobs.cancel(jid)
    return _answer(ui, request, jid)


@router.post("/jobs/{jid}/resume")
def job_resume(ui: Ui, request: Request, jid: str) -> Response:
    job_view(ui, jid)
    ui.jobs.resume(jid)
    return _answer(ui, request, jid)
