"""A finished study: its results page, the HTML report, its study file and the JSON API."""
from __future__ import annotations

import re
from typing import Any

from pathlib import Path
from typing import Optional

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response

from adaptlab.errors import AdaptlabError
from adaptlab.ui.context import Ui, UIContext, not_found, see_other
from adaptlab.ui.models_root import MODEL_NAME

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
    return results_page(ui, study_id(ui, sid))


def results_page(ui: UIContext, sid: str, status: int = 200, ship_error: Optional[str] = None,
                 form: Optional[dict[str, str]] = None) -> HTMLResponse:
    """The results page of the stored study ``sid`` (a full id); ``ship_error``: why the Ship form did nothing."""
    from adaptlab.ship.from_study import HOLD_STATUSES, decision_record
    from adaptlab.studyfile import describe_config

    rec = ui.store().get_study(sid)
    if rec["summary"] is None:
        job = next((j for j in ui.jobs.list() if sid in (j.get("study_id"), j.get("expected_study_id"))), None)
        return ui.render("unfinished.html.j2", status=409, rec=rec, job=job)
    rep = _report(ui, sid)
    diag = rec["summary"].get("diagnostics") or {}
    alloc = rec["summary"].get("allocation")
    said = decision_record(rep.context["decision"])
    form = form or {}
    ship = {"record": said, "hold": said["status"] in HOLD_STATUSES, "error": ship_error,
            "source": ship_source(ui, sid, rec) is not None, "force": bool(form.get("force")),
            "name": form.get("name") or default_model_name(ui, rec)}
    return ui.render("results.html.j2", status=status, sid=sid, c=rep.context, study_diag=diag, allocation=alloc,
                     not_run=not_run(rec["summary"]) if alloc else [], config_lines=describe_config(rec["config"]),
                     ship=ship)


def ship_source(ui: UIContext, sid: str, rec: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Where the study's labeled data is on this server, as a job spec's data fields, or None (gone, or a sketch).

    The web app's own study job names its upload; a study run from the command line names its file in the
    stored summary (``adaptlab study config`` writes the same)."""
    for job in ui.jobs.list():
        spec = job.get("spec") or {}
        if job.get("kind") == "study" and job.get("study_id") == sid and spec.get("data_path") \
                and Path(spec["data_path"]).is_file():
            return {k: spec.get(k) for k in ("data_path", "data_name", "unlabeled_path", "unlabeled_name", "columns")}
    inputs = ((rec.get("summary") or {}).get("data") or {}).get("inputs") or {}
    if not inputs.get("data") or not Path(inputs["data"]).is_file():
        return None
    unl = inputs.get("unlabeled") if inputs.get("unlabeled") and Path(inputs["unlabeled"]).is_file() else None
    return {"data_path": inputs["data"], "data_name": Path(inputs["data"]).name, "unlabeled_path": unl,
            "unlabeled_name": Path(unl).name if unl else None,
            "columns": {role: inputs.get(f"{role}_col") for role in ("text", "label", "group", "time", "id")}}


def default_model_name(ui: UIContext, rec: dict[str, Any]) -> str:
    """A model folder name for the Ship form: the study's data file and rung-free, not yet taken."""
    stem = Path(str(((rec.get("summary") or {}).get("data") or {}).get("source") or "model")).stem
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:60] or "model"
    name, i = base, 2
    while (ui.settings.models_root / name).exists():
        name, i = f"{base}-{i}", i + 1
    return name


@router.post("/studies/{sid}/ship")
def ship(ui: Ui, sid: str, name: str = Form(""), force: str = Form("")) -> Response:
    """Ship the study's decided rung into the models folder (a background job); a "do not ship yet" decision
    needs the form's "ship anyway" box (recorded in the model card and on the model's page)."""
    from adaptlab.ship.from_study import ship_gate, study_choice

    sid = study_id(ui, sid)
    rec = ui.store().get_study(sid)
    form = {"name": name, "force": force}
    if rec["summary"] is None:
        return results_page(ui, sid)
    name = name.strip()
    if not MODEL_NAME.match(name):
        return results_page(ui, sid, 400, f"{name!r} is not a model name: use letters, digits, '.', '_' or '-' "
                                          "(up to 100 characters, starting with a letter or digit).", form)
    folder = ui.settings.models_root / name
    if folder.exists():
        return results_page(ui, sid, 409, f"a model named {name!r} already exists; choose another name, or "
                                          f"retrain it from its page (/models/{name}).", form)
    try:
        rung, extra = study_choice(sid, ui.settings.home, fix="there is no rung to ship.")
        ship_gate(extra, rung, force=bool(force), how_to_force='tick "ship anyway"')
    except AdaptlabError as exc:
        return results_page(ui, sid, 409, str(exc), form)
    source = ship_source(ui, sid, rec)
    if source is None:
        return results_page(ui, sid, 409, "the study's data file is not on this server any more (or it is the "
                                          f"sketch); ship from the command line: adaptlab ship DATA --study {sid[:12]} "
                                          "-o FOLDER.", form)
    spec = {**source, "study_id": sid, "model": name, "model_path": str(folder), "rung": rung, "force": bool(force),
            "display_paths": {p: n for p, n in ((source.get("data_path"), source.get("data_name")),
                                                 (str(folder), name)) if p}}
    job = ui.jobs.submit("ship", spec, title=f"ship {rung} of study {sid[:12]} as {name}")
    return see_other(f"/jobs/{job.id}")


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
