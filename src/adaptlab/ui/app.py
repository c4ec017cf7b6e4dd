"""`create_app`: the FastAPI application behind `adaptlab ui` (server-rendered pages + a small JSON API).

Pages: upload and validate data -> choose rungs, seeds and budget (with the planner's estimate) -> live
progress (cancel, resume) -> results (table, bands plot, diagnostics, decision, transfer note, defense,
HTML report); the coordinator's model page (retrain with the gate, rollback); the sketch mode.

What the browser can name: upload ids, job ids and study ids (random or content hashes, checked against
a pattern before any lookup), a model folder among those listed under the configured models root, and
columns of an uploaded file. It never names a path on the server.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import logging
import math
import re
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.exceptions import HTTPException

from adaptlab.errors import AdaptlabError, ConfigError, DataError
from adaptlab.ui.jobs import FINISHED, JobManager, sketch_config
from adaptlab.ui.labeling import router as labeling_router
from adaptlab.ui.settings import UISettings
from adaptlab.ui.uploads import (
    ENCODINGS, UploadError, UploadStore, UploadTooLarge, display_name, mib, problems_view, read_columns,
    too_large_message,
)

logger = logging.getLogger("adaptlab.ui")
HERE = Path(__file__).resolve().parent
STUDY_ID = re.compile(r"^[0-9a-f]{6,64}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
VERSION_ID = re.compile(r"^v\d{1,8}$")
COLUMN_ROLES = ("text", "label", "group", "time", "id")
SPLITS = ("auto", "stratified", "group", "near-dup", "time")
_PRIVATE_SPEC = ("data_path", "unlabeled_path", "model_path", "display_paths")


# ------------------------------------------------------------------------------------ middleware
def _send_text(send: Any, status: int, body: str, html_page: bool) -> Any:
    async def go() -> None:
        data = body.encode("utf-8")
        ctype = b"text/html; charset=utf-8" if html_page else b"application/json"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(data)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": data})
    return go()


def _wants_html(headers: dict[str, str]) -> bool:
    return "text/html" in headers.get("accept", "")


def _error_body(status: int, message: str, as_html: bool) -> str:
    if not as_html:
        return json.dumps({"detail": message})
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>adaptlab: error {status}</title>"
            "<link rel='stylesheet' href='/static/app.css'></head><body><header><nav><a class='brand' href='/'>adaptlab"
            "</a><a href='/study/new'>New study</a><a href='/sketch'>Sketch mode</a><a href='/models'>Models "
            f"(coordinator)</a></nav></header><main><h1>Error {status}</h1>"
            f"<p class='error' id='error-message'>{html.escape(message, quote=False)}</p><p>Use your browser's back "
            "button to return, or <a href='/'>start again</a>.</p></main></body></html>")


# Everything the pages need comes from this server: no inline script, no CDN, no framing by other sites.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                 b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" would make form posts send Origin: null
]


class GuardMiddleware:
    """Host check (DNS rebinding), same-origin check on writes (CSRF), the request-size limit, and
    security headers on every answer."""

    def __init__(self, app: Any, settings: UISettings) -> None:
        self.app = app
        self.settings = settings
        self.allowed = {h.lower() for h in settings.allowed_hosts()}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        as_html = _wants_html(headers)
        raw_send = send

        async def send(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                msg = {**msg, "headers": [*msg.get("headers", []), *SECURITY_HEADERS]}
            await raw_send(msg)

        host = headers.get("host", "")
        hostname = urlsplit("//" + host).hostname or ""
        if not self.settings.exposed and hostname.lower() not in self.allowed and f"[{hostname}]" not in self.allowed:
            await _send_text(send, 400, _error_body(400, f"unknown Host {host!r}: this app answers on "
                                                         f"{self.settings.host} only.", as_html), as_html)
            return
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            cross = headers.get("sec-fetch-site") == "cross-site"
            if cross or (origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.lower())):
                await _send_text(send, 403, _error_body(403, "cross-site request refused: use the app's own pages.",
                                                        as_html), as_html)
                return
            await self._limited(scope, receive, send, headers, as_html)
            return
        await self.app(scope, receive, send)

    async def _limited(self, scope: dict, receive: Any, send: Any, headers: dict[str, str], as_html: bool) -> None:
        limit = self.settings.max_upload_bytes
        declared = headers.get("content-length")
        size = int(declared) if declared and declared.isdigit() else None

        async def refuse(seen: Optional[int], more: bool = True) -> None:
            # Read (and drop) the rest of the body so the browser gets to see the answer, not a reset.
            # Never past its end: there, receive() waits for the client to go away.
            total = seen or 0
            while more and total < max(4 * limit, 1 << 30):
                msg = await receive()
                if msg["type"] != "http.request":
                    break
                total += len(msg.get("body", b""))
                more = msg.get("more_body", False)
            await _send_text(send, 413, _error_body(413, too_large_message(size or total, limit), as_html), as_html)

        if size is not None and size > limit:
            await refuse(0)
            return
        state = {"seen": 0, "over": False, "started": False, "more": True}

        async def limited_receive() -> dict:
            msg = await receive()
            if msg["type"] == "http.request":
                state["seen"] += len(msg.get("body", b""))
                state["more"] = bool(msg.get("more_body", False))
                if state["seen"] > limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: dict) -> None:
            if state["over"]:
                return  # the app's answer to a cut body is replaced by the 413 below
            state["started"] = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await refuse(state["seen"], state["more"])


# ------------------------------------------------------------------------------------ helpers
def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _secs(x: Any) -> str:
    from adaptlab.decide.plan import format_seconds

    return format_seconds(x, digits=1) if _is_num(x) else "n/a"


def _stop_reason(reason: Any, kind: Any = None) -> str:
    """An allocation's stop reason without the leading ``"<kind>: "`` the page already shows, e.g.
    ``"settled: no affordable run ..."`` -> ``"no affordable run ..."``."""
    from adaptlab.evaluate.adaptive import stop_reason

    return stop_reason({"reason": reason, "kind": kind}).rstrip(".")


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["f4"] = lambda x: "n/a" if not _is_num(x) else f"{x:.4f}"
    env.filters["f3"] = lambda x: "n/a" if not _is_num(x) else f"{x:.3f}"
    env.filters["signed"] = lambda x: "n/a" if not _is_num(x) else f"{x:+.4f}"
    env.filters["secs"] = _secs
    env.filters["pct"] = lambda x: "n/a" if not _is_num(x) else f"{x:.0%}"
    env.filters["mib"] = mib
    env.filters["stop_reason"] = _stop_reason
    env.filters["when"] = lambda t: dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if _is_num(t) else ""
    return env


def _rows_text(rows: list[int], limit: int = 40) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _not_run(summary: dict[str, Any]) -> list[str]:
    """Rungs of a decision-driven study that never ran and that no drop explains (the study stopped first)."""
    ran = {r["rung"] for r in summary.get("rows") or []}
    dropped = {d.get("rung") for d in (summary.get("allocation") or {}).get("drops") or []}
    return [r for r in (summary.get("config") or {}).get("rungs") or [] if r not in ran and r not in dropped]


def public_job(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A job as the browser sees it: without server paths."""
    out = dict(snapshot)
    out["spec"] = {k: v for k, v in (snapshot.get("spec") or {}).items() if k not in _PRIVATE_SPEC}
    return out


def rung_choices() -> list[dict[str, Any]]:
    from adaptlab.rungs import PLANNED_RUNGS, RUNGS, available_rungs
    from adaptlab.rungs.base import LADDER_ORDER

    from adaptlab.ui.studyform import form_parameters

    out = [{"name": n, "summary": RUNGS[n].summary, "available": True, "uses_encoder": RUNGS[n].uses_encoder,
            "trains_network": getattr(RUNGS[n], "trains_network", False), "params": form_parameters(n)}
           for n in available_rungs()]
    for n in LADDER_ORDER:
        if n not in RUNGS:
            out.append({"name": n, "summary": PLANNED_RUNGS.get(n, ""), "available": False, "uses_encoder": True,
                        "trains_network": False, "params": {"main": [], "more": []}})
    return out


async def rung_param_fields(request: Request) -> dict[str, dict[str, str]]:
    """The posted form's ``p.<rung>.<parameter>`` fields (names not known in advance, so read from the form)."""
    from adaptlab.ui.studyform import param_fields

    return param_fields(dict((await request.form()).items()))


# ------------------------------------------------------------------------------------ the app
def create_app(settings: Optional[UISettings] = None) -> FastAPI:
    """The web app over ``settings.home`` (run store) and ``settings.models_root`` (model folders).

    Example:
        >>> app = create_app(UISettings(home="/tmp/al-home", models_root="/tmp/al-models"))  # doctest: +SKIP
    """
    settings = settings or UISettings()
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    env = _env()
    uploads = UploadStore(settings.upload_dir, settings.max_upload_bytes)
    jobs = JobManager(settings.jobs_dir, settings)
    report_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        jobs.shutdown()

    app = FastAPI(title="adaptlab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.jobs, app.state.uploads = settings, jobs, uploads
    app.add_middleware(GuardMiddleware, settings=settings)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(labeling_router)  # the coordinator's labeling page, /models/<name>/label

    def store() -> Any:
        from adaptlab.store import RunStore

        return RunStore(settings.home / "runs.sqlite")

    def render(template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        import adaptlab

        base = {"settings": settings, "max_upload": settings.max_upload_bytes, "version": adaptlab.__version__,
                "rows_text": _rows_text}
        return HTMLResponse(env.get_template(template).render(**base, **ctx), status_code=status)

    def see_other(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    def not_found(what: str) -> HTTPException:
        return HTTPException(404, f"{what} not found.")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_error_body(exc.status_code, str(exc.detail), True), status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(AdaptlabError)
    async def user_error(request: Request, exc: AdaptlabError) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(_error_body(400, str(exc), True), status_code=400)
        return JSONResponse({"detail": str(exc)}, status_code=400)

    # -------------------------------------------------------------------------------- home
    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        studies = store().list_studies()
        job_list = [public_job(j) for j in jobs.list()]
        by_study = {}
        for j in job_list:
            for sid in (j.get("study_id"), j.get("expected_study_id")):
                if sid and sid not in by_study:
                    by_study[sid] = j
        return render("index.html.j2", studies=studies, jobs=job_list[:20], by_study=by_study)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    # -------------------------------------------------------------------------------- data
    @app.get("/study/new", response_class=HTMLResponse)
    def new_study() -> HTMLResponse:
        return render("upload.html.j2", error=None)

    @app.post("/upload")
    def upload(labeled: UploadFile = File(...), unlabeled: Optional[UploadFile] = File(None)) -> Response:
        files = {"labeled": (labeled.filename, labeled.file)}
        if unlabeled is not None and unlabeled.filename:
            files["unlabeled"] = (unlabeled.filename, unlabeled.file)
        if not labeled.filename:
            return render("upload.html.j2", status=400, error="Choose a labeled data file first.")
        try:
            uid = uploads.create(files, kind="study")
        except UploadTooLarge as exc:
            return render("upload.html.j2", status=413, error=str(exc))
        except UploadError as exc:
            return render("upload.html.j2", status=400, error=str(exc))
        return see_other(f"/data/{uid}")

    def _meta(uid: str) -> dict[str, Any]:
        try:
            meta = uploads.meta(uid)
        except (KeyError, OSError, ValueError):
            raise not_found("upload") from None
        if meta.get("kind") != "study":
            raise not_found("upload")
        return meta

    def _columns(uid: str, role: str) -> tuple[list[str], Optional[str]]:
        try:
            return read_columns(uploads.path(uid, role)), None
        except KeyError:
            return [], None
        except DataError as exc:
            return [], str(exc)

    def _paths(uid: str) -> tuple[Path, Optional[Path], dict[str, str]]:
        meta = _meta(uid)
        data = uploads.path(uid, "labeled")
        unl = uploads.path(uid, "unlabeled") if "unlabeled" in meta["files"] else None
        names = {str(data): meta["files"]["labeled"]["name"]}
        if unl is not None:
            names[str(unl)] = meta["files"]["unlabeled"]["name"]
        return data, unl, names

    def _data_page(uid: str, status: int = 200, check_error: Optional[dict[str, Any]] = None,
                   chosen: Optional[dict[str, str]] = None) -> HTMLResponse:
        from adaptlab.data.load import LABEL_COLUMN_CANDIDATES, TEXT_COLUMN_CANDIDATES

        meta = _meta(uid)
        cols, col_error = _columns(uid, "labeled")
        ucols, ucol_error = _columns(uid, "unlabeled")

        def guess(candidates: tuple[str, ...], columns: list[str]) -> str:
            low = {c.strip().lower(): c for c in columns}
            return next((low[c] for c in candidates if c in low), "")

        chosen = chosen or meta.get("columns") or {
            "text": guess(TEXT_COLUMN_CANDIDATES, cols), "label": guess(LABEL_COLUMN_CANDIDATES, cols),
            "group": "", "time": "", "id": "id" if "id" in cols else "",
            "unlabeled_text": guess(TEXT_COLUMN_CANDIDATES, ucols), "encoding": "", "on_invalid": "error"}
        return render("data.html.j2", status=status, uid=uid, meta=meta, cols=cols, col_error=col_error,
                      ucols=ucols, ucol_error=ucol_error, chosen=chosen, check_error=check_error,
                      encodings=ENCODINGS, roles=COLUMN_ROLES)

    @app.get("/data/{uid}", response_class=HTMLResponse)
    def data_page(uid: str) -> HTMLResponse:
        return _data_page(uid)

    @app.post("/data/{uid}/check")
    def data_check(uid: str, text_col: str = Form(""), label_col: str = Form(""), group_col: str = Form(""),
                   time_col: str = Form(""), id_col: str = Form(""), unlabeled_text_col: str = Form(""),
                   encoding: str = Form(""), on_invalid: str = Form("error")) -> Response:
        from adaptlab.ui.jobs import load_labeled

        meta = _meta(uid)
        data, unl, names = _paths(uid)
        chosen = {"text": text_col, "label": label_col, "group": group_col, "time": time_col, "id": id_col,
                  "unlabeled_text": unlabeled_text_col, "encoding": encoding, "on_invalid": on_invalid}
        if encoding not in ENCODINGS:
            return _data_page(uid, 400, {"message": f"encoding {encoding!r} is not offered; pick one of the list.",
                                         "problems": [], "rows": []}, chosen)
        if on_invalid not in ("error", "drop"):
            return _data_page(uid, 400, {"message": "on_invalid must be 'error' or 'drop'.", "problems": [],
                                         "rows": []}, chosen)
        spec_cols = {k: (v or None) for k, v in chosen.items()}
        spec_cols["on_invalid"] = on_invalid
        spec = {"data_path": str(data), "unlabeled_path": str(unl) if unl else None, "columns": spec_cols}
        try:
            ds, unl_ds, report = load_labeled(spec)
        except AdaptlabError as exc:
            return _data_page(uid, 422, problems_view(exc, names), chosen)
        meta["columns"] = chosen
        meta["check"] = {
            "n": len(ds), "label_counts": ds.label_counts(), "classes": sorted(set(ds.labels or [])),
            "columns_used": report.columns,
            "warnings": [{"code": p.code, "message": p.message, "fix": p.fix, "rows": list(p.rows)}
                         for p in report.warnings],
            "dropped": [{"row": d.row, "codes": d.codes, "text": d.text} for d in report.dropped][:500],
            "n_dropped": len(report.dropped),
            "n_unlabeled": len(unl_ds) if unl_ds is not None else 0,
        }
        meta.pop("plan", None)
        uploads.save_meta(uid, meta)
        return see_other(f"/data/{uid}/configure")

    def _default_form(meta: dict[str, Any]) -> dict[str, Any]:
        has_unl = bool(meta["check"].get("n_unlabeled"))
        return {"rungs": ["tfidf", "probe"] + (["refit"] if has_unl else []), "seeds": 3, "compute_budget": "30 min",
                "time_budget": "", "train_budget": "", "refit_budget": "200steps" if has_unl else "", "split": "auto"}

    def _configure_page(uid: str, status: int = 200, form: Optional[dict[str, Any]] = None,
                        error: Optional[str] = None) -> Response:
        meta = _meta(uid)
        if "check" not in meta:
            return see_other(f"/data/{uid}")
        form = {"params": {}, "extra": {}, "file_notes": [], **(form or meta.get("form") or _default_form(meta))}
        return render("configure.html.j2", status=status, uid=uid, meta=meta, rungs=rung_choices(), form=form,
                      plan=meta.get("plan"), error=error, splits=SPLITS)

    @app.get("/data/{uid}/configure")
    def configure(uid: str) -> Response:
        return _configure_page(uid)

    def _form_rungs(rungs: list[str]) -> list[str]:
        from adaptlab.rungs import RUNGS

        return [r for r in dict.fromkeys(rungs) if r in RUNGS]

    def _kept(uid: str) -> dict[str, Any]:
        """What an uploaded study file put in the form that the form has no field for."""
        saved = _meta(uid).get("form") or {}
        return {k: saved[k] for k in ("extra", "file_notes", "study_file") if k in saved}

    @app.post("/data/{uid}/studyfile")
    def study_file(uid: str, study_file: UploadFile = File(...)) -> Response:
        from adaptlab.ui.studyform import form_from_study_file

        meta = _meta(uid)
        if "check" not in meta:
            return see_other(f"/data/{uid}")
        name = display_name(study_file.filename or "study.toml")
        try:
            form, _ = form_from_study_file(study_file.file.read(), name, meta.get("form") or {})
        except AdaptlabError as exc:
            return _configure_page(uid, 400, None, str(exc))
        meta["form"] = {**_default_form(meta), **form}
        uploads.save_meta(uid, meta)
        return see_other(f"/data/{uid}/configure")

    @app.post("/data/{uid}/plan")
    def plan(uid: str, rungs: list[str] = Form([]), compute_budget: str = Form(""), seeds: str = Form("3"),
             train_budget: str = Form(""), refit_budget: str = Form(""), split: str = Form("auto"),
             time_budget: str = Form(""), params: dict = Depends(rung_param_fields)) -> Response:
        from adaptlab.decide.plan import plan_study
        from adaptlab.encoders import load_encoder
        from adaptlab.ui.jobs import load_labeled

        meta = _meta(uid)
        if "check" not in meta:
            return see_other(f"/data/{uid}")
        form = {"rungs": _form_rungs(rungs), "seeds": seeds, "compute_budget": compute_budget,
                "time_budget": time_budget, "train_budget": train_budget, "refit_budget": refit_budget, "split": split,
                "params": params, **_kept(uid)}
        data, unl, _ = _paths(uid)
        cols = {k: (v or None) for k, v in meta["columns"].items()}
        try:
            if not compute_budget.strip():
                raise ConfigError.invalid("compute budget", compute_budget,
                                          "a duration, e.g. '30 min' or '2 CPU hours'")
            ds, unl_ds, _ = load_labeled({"data_path": str(data), "unlabeled_path": str(unl) if unl else None,
                                        "columns": cols})
            p = plan_study(ds.texts, ds.labels, compute_budget, encoder=load_encoder(settings.encoder),
                           n_unlabeled=len(unl_ds) if unl_ds is not None else 0, rungs=form["rungs"] or None)
        except AdaptlabError as exc:
            return _configure_page(uid, 400, form, str(exc))
        meta["plan"] = {**p.to_dict(), "budget_text": compute_budget}
        planned = [i for i in p.items if i.included]
        if planned:
            form["rungs"] = [i.rung for i in planned]
            form["seeds"] = min(i.seeds for i in planned)
        meta["form"] = form
        uploads.save_meta(uid, meta)
        return see_other(f"/data/{uid}/configure#plan")

    @app.post("/data/{uid}/start")
    def start(uid: str, rungs: list[str] = Form([]), seeds: str = Form("3"), compute_budget: str = Form(""),
              train_budget: str = Form(""), refit_budget: str = Form(""), split: str = Form("auto"),
              time_budget: str = Form(""), param_texts: dict = Depends(rung_param_fields)) -> Response:
        from adaptlab.config import StudyConfig, parse_duration
        from adaptlab.evaluate import Study

        meta = _meta(uid)
        if "check" not in meta:
            return see_other(f"/data/{uid}")
        chosen = _form_rungs(rungs)
        whole = time_budget.strip()
        form = {"rungs": chosen, "seeds": seeds, "compute_budget": compute_budget, "time_budget": time_budget,
                "train_budget": train_budget, "refit_budget": refit_budget, "split": split, "params": param_texts,
                **_kept(uid)}
        extra = dict(form.get("extra") or {})
        try:
            if not chosen:
                raise ConfigError.invalid("rungs", ",".join(rungs), "at least one available rung; tick one")
            try:
                n_seeds = int(seeds)
            except ValueError:
                raise ConfigError.invalid("seeds", seeds, "an integer >= 1") from None
            if split not in SPLITS:
                raise ConfigError.invalid("split", split, f"one of {', '.join(SPLITS)}")
            if whole:
                parse_duration(whole, "time budget")  # names the form's field, not the config's
            from adaptlab.ui.studyform import rung_params_from_form

            params = rung_params_from_form(param_texts, chosen)
            if refit_budget.strip() and "refit" in chosen:
                params.setdefault("refit", {})["budget"] = refit_budget.strip()
            name = f"{meta['files']['labeled']['name']}: {','.join(chosen)} x {n_seeds} seeds"
            if whole:
                name += f" within {whole}"
            extra.setdefault("n_boot", settings.n_boot)
            extra.setdefault("name", name)
            name = extra["name"] or name
            cfg = StudyConfig(rungs=chosen, seeds=n_seeds, split=split, encoder=settings.encoder,
                              budget=train_budget.strip() or None, rung_params=params,
                              time_budget=whole or None, **extra)
            study = Study(cfg, home=settings.home)  # validates every rung's parameters before anything is queued
            if study.time_budget is not None and n_seeds < study.adaptive.min_seeds:
                # The allocator needs the decision rule's full-budget seeds of the rung it picks.
                raise ConfigError.invalid("seeds", n_seeds, f"at least {study.adaptive.min_seeds} with a time budget "
                                          "(the rung the study picks needs that many full-budget seeds)")
        except AdaptlabError as exc:
            return _configure_page(uid, 400, form, str(exc))
        data, unl, names = _paths(uid)
        meta["form"] = form
        uploads.save_meta(uid, meta)
        spec = {"config": cfg.to_dict(), "rungs": chosen, "seeds": n_seeds, "upload_id": uid,
                "time_budget": whole or None,
                "data_name": meta["files"]["labeled"]["name"], "data_path": str(data),
                "unlabeled_name": meta["files"].get("unlabeled", {}).get("name"),
                "unlabeled_path": str(unl) if unl else None,
                "columns": {k: (v or None) for k, v in meta["columns"].items()}, "display_paths": names}
        job = jobs.submit("study", spec, title=name)
        return see_other(f"/jobs/{job.id}")

    # -------------------------------------------------------------------------------- jobs
    def _job(jid: str) -> dict[str, Any]:
        try:
            return public_job(jobs.snapshot(jid))
        except KeyError:
            raise not_found("job") from None

    @app.get("/jobs/{jid}", response_class=HTMLResponse)
    def job_page(jid: str) -> HTMLResponse:
        return render("job.html.j2", job=_job(jid), finished=FINISHED)

    @app.get("/api/jobs/{jid}")
    def job_api(jid: str) -> dict[str, Any]:
        return _job(jid)

    @app.get("/api/jobs")
    def jobs_api() -> list[dict[str, Any]]:
        return [public_job(j) for j in jobs.list()]

    @app.post("/jobs/{jid}/cancel")
    def job_cancel(request: Request, jid: str) -> Response:
        _job(jid)
        jobs.cancel(jid)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(_job(jid))
        return see_other(f"/jobs/{jid}")

    @app.post("/jobs/{jid}/resume")
    def job_resume(request: Request, jid: str) -> Response:
        _job(jid)
        jobs.resume(jid)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(_job(jid))
        return see_other(f"/jobs/{jid}")

    # -------------------------------------------------------------------------------- results
    def _study_id(sid: str) -> str:
        if not STUDY_ID.match(sid or ""):
            raise not_found("study")
        try:
            rec = store().get_study(sid)
        except AdaptlabError:
            raise not_found("study") from None
        return rec["study_id"]

    def _report(sid: str) -> Any:
        from adaptlab.report import build_report

        with report_lock:
            return build_report(store(), sid, home=settings.home)

    @app.get("/studies/{sid}", response_class=HTMLResponse)
    def results(sid: str) -> HTMLResponse:
        sid = _study_id(sid)
        rec = store().get_study(sid)
        if rec["summary"] is None:
            job = next((j for j in jobs.list() if sid in (j.get("study_id"), j.get("expected_study_id"))), None)
            return render("unfinished.html.j2", status=409, rec=rec, job=job)
        rep = _report(sid)
        diag = rec["summary"].get("diagnostics") or {}
        alloc = rec["summary"].get("allocation")
        from adaptlab.studyfile import describe_config

        return render("results.html.j2", sid=sid, c=rep.context, study_diag=diag, allocation=alloc,
                      not_run=_not_run(rec["summary"]) if alloc else [], config_lines=describe_config(rec["config"]))

    @app.get("/studies/{sid}/study.toml")
    def study_file_download(sid: str) -> Response:
        from adaptlab.studyfile import study_file_text

        sid = _study_id(sid)
        rec = store().get_study(sid)
        text = study_file_text(rec["config"], header=f"adaptlab study {sid[:12]} ({rec['name']})\nrerun it exactly: "
                               "adaptlab study run --data DATA --config study.toml, or load it on the configure page")
        return Response(text, media_type="application/toml; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="study-{sid[:12]}.toml"'})

    @app.get("/studies/{sid}/report.html")
    def report_download(sid: str) -> Response:
        sid = _study_id(sid)
        rep = _report(sid)
        return Response(rep.html, media_type="text/html; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="adaptlab-report-{sid[:12]}.html"'})

    @app.get("/api/studies")
    def studies_api() -> list[dict[str, Any]]:
        return store().list_studies()

    @app.get("/api/studies/{sid}")
    def study_api(sid: str) -> dict[str, Any]:
        from adaptlab.report import decision_for

        sid = _study_id(sid)
        rec = store().get_study(sid)
        if rec["summary"] is None:
            return {"study_id": sid, "name": rec["name"], "complete": False}
        decision, _ = decision_for(store(), sid, None, settings.home)
        s = rec["summary"]
        return {"study_id": sid, "name": rec["name"], "complete": True, "metric": s["metric"], "rows": s["rows"],
                "diagnostics": s.get("diagnostics") or {}, "decision": decision.to_dict(),
                "allocation": s.get("allocation")}

    # -------------------------------------------------------------------------------- sketch
    @app.get("/sketch", response_class=HTMLResponse)
    def sketch_page() -> HTMLResponse:
        recent = [public_job(j) for j in jobs.list() if j["kind"] == "sketch"][:5]
        return render("sketch.html.j2", sk=settings.sketch, recent=recent)

    @app.post("/sketch/start")
    def sketch_start() -> Response:
        cfg = sketch_config(settings)
        spec = {"config": cfg, "rungs": cfg["rungs"], "seeds": cfg["seeds"]}
        job = jobs.submit("sketch", spec, title="sketch: OTS probe vs domain refit + MMD (BBC News)")
        return see_other(f"/jobs/{job.id}")

    # -------------------------------------------------------------------------------- models
    def _model_dirs() -> dict[str, Path]:
        root = settings.models_root
        if not root.is_dir():
            return {}
        base = root.resolve()
        out = {}
        for child in sorted(root.iterdir(), key=lambda p: p.name):
            if not MODEL_NAME.match(child.name) or not child.is_dir():
                continue
            real = child.resolve()
            if real.parent != base or not (real / "registry.json").is_file():
                continue  # symlinks out of the models root are not offered
            out[child.name] = real
        return out

    def _model(name: str) -> tuple[str, Path]:
        dirs = _model_dirs()
        if not MODEL_NAME.match(name or "") or name not in dirs:
            raise not_found("model")
        return name, dirs[name]

    def _model_view(path: Path) -> dict[str, Any]:
        from adaptlab.ship import ModelRegistry

        reg = ModelRegistry(path)
        try:
            current = reg.current.id
        except AdaptlabError:
            current = None
        return {"current": current, "max_drop": reg.max_drop, "versions": [v.to_dict() for v in reg.versions],
                "events": reg.events[-20:]}

    def _model_page(name: str, status: int = 200, error: Optional[dict[str, Any]] = None,
                    notice: Optional[str] = None) -> HTMLResponse:
        name, path = _model(name)
        try:
            view, view_error = _model_view(path), None
        except AdaptlabError as exc:
            view, view_error = None, str(exc).replace(str(path), name)
        recent = [public_job(j) for j in jobs.list() if j["kind"] == "retrain" and j["spec"].get("model") == name][:5]
        return render("model.html.j2", status=status, name=name, view=view, view_error=view_error, error=error,
                      notice=notice, recent=recent, encodings=ENCODINGS)

    @app.get("/models", response_class=HTMLResponse)
    def models_page() -> HTMLResponse:
        listing = []
        for name, path in _model_dirs().items():
            try:
                v = _model_view(path)
                cur = next((x for x in v["versions"] if x["id"] == v["current"]), None)
                listing.append({"name": name, "current": v["current"], "n_versions": len(v["versions"]),
                                "rung": cur["rung"] if cur else "", "f1": (cur or {}).get("evaluation", {}).get("f1")})
            except AdaptlabError as exc:
                listing.append({"name": name, "error": str(exc).replace(str(path), name)})
        return render("models.html.j2", models=listing)

    @app.get("/models/{name}", response_class=HTMLResponse)
    def model_page(name: str, rolled_back: str = "", was: str = "") -> HTMLResponse:
        notice = None
        if VERSION_ID.match(rolled_back) and VERSION_ID.match(was):
            notice = f"{rolled_back} is in use again (was {was})."
        return _model_page(name, notice=notice)

    @app.get("/api/models")
    def models_api() -> list[dict[str, Any]]:
        out = []
        for name, path in _model_dirs().items():
            try:
                out.append({"name": name, **_model_view(path)})
            except AdaptlabError as exc:
                out.append({"name": name, "error": str(exc).replace(str(path), name)})
        return out

    @app.get("/api/models/{name}")
    def model_api(name: str) -> dict[str, Any]:
        name, path = _model(name)
        return {"name": name, **_model_view(path)}

    @app.post("/models/{name}/retrain")
    def model_retrain(name: str, labels: UploadFile = File(...), text_col: str = Form(""), label_col: str = Form(""),
                      encoding: str = Form("")) -> Response:
        from adaptlab.data import load_dataset

        name, path = _model(name)
        if not labels.filename:
            return _model_page(name, 400, {"message": "Choose a file of new labels first.", "problems": [], "rows": []})
        if encoding not in ENCODINGS:
            return _model_page(name, 400, {"message": f"encoding {encoding!r} is not offered.", "problems": [],
                                           "rows": []})
        try:
            uid = uploads.create({"labels": (labels.filename, labels.file)}, kind="retrain", extra={"model": name})
        except UploadError as exc:
            return _model_page(name, 413 if isinstance(exc, UploadTooLarge) else 400,
                               {"message": str(exc), "problems": [], "rows": []})
        f = uploads.path(uid, "labels")
        shown = display_name(labels.filename)
        cols = {"text": text_col or None, "label": label_col or None, "encoding": encoding or None}
        try:
            load_dataset(f, text_col=cols["text"], label_col=cols["label"], encoding=cols["encoding"])
        except AdaptlabError as exc:
            return _model_page(name, 422, problems_view(exc, {str(f): shown}))
        spec = {"model": name, "model_path": str(path), "data_path": str(f), "data_name": shown, "columns": cols,
                "display_paths": {str(f): shown, str(path): name}}
        job = jobs.submit("retrain", spec, title=f"retrain {name} with {shown}")
        return see_other(f"/jobs/{job.id}")

    @app.post("/models/{name}/rollback")
    def model_rollback(name: str, version: str = Form("")) -> Response:
        from adaptlab.ship import ModelRegistry

        name, path = _model(name)
        if not VERSION_ID.match(version):
            return _model_page(name, 400, {"message": f"{version!r} is not a version id such as v0001.",
                                           "problems": [], "rows": []})
        try:
            reg = ModelRegistry(path)
            before = reg.current.id
            v = reg.rollback(version)
        except AdaptlabError as exc:
            return _model_page(name, 400, {"message": str(exc).replace(str(path), name), "problems": [], "rows": []})
        return see_other(f"/models/{name}?rolled_back={v.id}&was={before}")

    return app

