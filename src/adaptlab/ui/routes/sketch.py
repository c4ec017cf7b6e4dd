"""The sketch mode: the frozen probe against a domain refit (+ MMD) on the bundled BBC News, in minutes."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from adaptlab.ui.context import Ui, public_job, see_other
from adaptlab.ui.jobs import sketch_config

router = APIRouter()


@router.get("/sketch", response_class=HTMLResponse)
def sketch_page(ui: Ui) -> HTMLResponse:
    recent = [public_job(j) for j in ui.jobs.list() if j["kind"] == "sketch"][:5]
    return ui.render("sketch.html.j2", sk=ui.settings.sketch, recent=recent)


@router.post("/sketch/start")
def sketch_start(ui: Ui) -> Response:
    cfg = sketch_config(ui.settings)
    spec = {"config": cfg, "rungs": cfg["rungs"], "seeds": cfg["seeds"]}
    job = ui.jobs.submit("sketch", spec, title="sketch: OTS probe vs domain refit + MMD (BBC News)")
    return see_other(f"/jobs/{job.id}")
