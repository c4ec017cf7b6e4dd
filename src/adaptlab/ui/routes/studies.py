"""A finished study: its results page, the HTML report, its study file and the JSON API."""
from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from adaptlab.errors import AdaptlabError
from adaptlab.ui.context import Ui, UIContext, not_found

router = APIRouter()
STUDY_ID = re.compile(r"^[0-9a-f]{6,64}$")
# Study-file keys the web download keeps from the study's inputs: columns, never server paths.
_COLUMN_INPUTS = ("text_col", "label_col", "group_col", "time_col", "id_col")


def study_id(ui: UIContext, sid: str) -> str:
    """The full id of a stored study named by ``sid`` (a prefix is enough); 404 otherwise."""
    if not STUDY_ID.match(sid or ""):
        raise not_found("study")
    try:
        rec = ui.store().get_study(sid)
    except AdaptlabError:
        raise not_found("study") from None
    return rec["study_id"]


def _report(ui: UIContext, sid: str) -> Any:
    from adaptlab.report import build_report

    with ui.report_lock:
        return build_report(ui.store(), sid, home=ui.settings.home)


def not_run(summary: dict[str, Any]) -> list[str]:
    """Rungs of a decision-driven study that never ran and that no drop explains (the study stopped first)."""
    ran = {r["rung"] for r in summary.get("rows") or []}
    dropped = {d.get("rung") for d in (summary.get("allocation") or {}).get("drops") or []}
    return [r for r in (summary.get("config") or {}).get("rungs") or [] if r not in ran and r not in dropped]


@router.get("/studies/{sid}", response_class=HTMLResponse)
def results(ui: Ui, sid: str) -> HTMLResponse:
    from adaptlab.studyfile import describe_config

    sid = study_id(ui, sid)
    rec = ui.store().get_study(sid)
    if rec["summary"] is None:
        job = next((j for j in ui.jobs.list() if sid in (j.get("study_id"), j.get("expected_study_id"))), None)
        return ui.render("unfinished.html.j2", status=409, rec=rec, job=job)
    rep = _report(ui, sid)
    diag = rec["summary"].get("diagnostics") or {}
    alloc = rec["summary"].get("allocation")
    return ui.render("results.html.j2", sid=sid, c=rep.context, study_diag=diag, allocation=alloc,
                     not_run=not_run(rec["summary"]) if alloc else [], config_lines=describe_config(rec["config"]))


@router.get("/studies/{sid}/study.toml")
def study_file_download(ui: Ui, sid: str) -> Response:
    from adaptlab.studyfile import study_file_text

    sid = study_id(ui, sid)
    rec = ui.store().get_study(sid)
    inputs = ((rec["summary"] or {}).get("data") or {}).get("inputs") or {}
    text = study_file_text(rec["config"], header=f"adaptlab study {sid[:12]} ({rec['name']})\nrerun it exactly: "
                           "adaptlab study run --data DATA --config study.toml, or load it on the configure page",
                           inputs={k: v for k, v in inputs.items() if k in _COLUMN_INPUTS})
    return Response(text, media_type="application/toml; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="study-{sid[:12]}.toml"'})


@router.get("/studies/{sid}/report.html")
def report_download(ui: Ui, sid: str) -> Response:
    sid = study_id(ui, sid)
    rep = _report(ui, sid)
    return Response(rep.html, media_type="text/html; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="adaptlab-report-{sid[:12]}.html"'})


@router.get("/api/studies")
def studies_api(ui: Ui) -> list[dict[str, Any]]:
    return ui.store().list_studies()


@router.get("/api/studies/{sid}")
def study_api(ui: Ui, sid: str) -> dict[str, Any]:
    from adaptlab.report import decision_for

    sid = study_id(ui, sid)
    rec = ui.store().get_study(sid)
    if rec["summary"] is None:
        return {"study_id": sid, "name": rec["name"], "complete": False}
    decision, _ = decision_for(ui.store(), sid, None, ui.settings.home)
    s = rec["summary"]
    return {"study_id": sid, "name": rec["name"], "complete": True, "metric": s["metric"], "rows": s["rows"],
            "diagnostics": s.get("diagnostics") or {}, "decision": decision.to_dict(),
            "allocation": s.get("allocation")}
