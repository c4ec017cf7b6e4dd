"""`create_app`: the FastAPI application behind `adaptlab ui` (server-rendered pages + a small JSON API).

Pages: upload and validate data -> choose rungs, seeds and budget (with the planner's estimate) -> live
progress (cancel, resume) -> results (table, bands plot, diagnostics, decision, transfer note, defense,
HTML report); the coordinator's model page (retrain with the gate, rollback); the sketch mode.

What the browser can name: upload ids, job ids and study ids (random or content hashes, checked against
a pattern before any lookup), a model folder among those listed under the configured models root, and
columns of an uploaded file. It never names a path on the server.
"""
from __future__ import annotations

import html
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from adaptlab.errors import AdaptlabError
from adaptlab.ui import labelfix, labeling
from adaptlab.ui.auth import TokenMiddleware
from adaptlab.ui.context import UIContext, public_job
from adaptlab.ui.jobs import JobManager
from adaptlab.ui.routes import ROUTERS
from adaptlab.ui.routes.uploads import rung_choices
from adaptlab.ui.settings import UISettings
from adaptlab.ui.templating import template_env
from adaptlab.ui.uploads import UploadStore, too_large_message

logger = logging.getLogger("adaptlab.ui")
HERE = Path(__file__).resolve().parent


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


# ------------------------------------------------------------------------------------ the app
def create_app(settings: Optional[UISettings] = None) -> FastAPI:
    """The web app over ``settings.home`` (run store) and ``settings.models_root`` (model folders).

    The pages are routers, one per page group (:mod:`adaptlab.ui.routes`); what they share is one
    :class:`~adaptlab.ui.context.UIContext` on ``app.state.ui``.

    Example:
        >>> app = create_app(UISettings(home="/tmp/al-home", models_root="/tmp/al-models"))  # doctest: +SKIP
    """
    settings = settings or UISettings()
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    ui = UIContext(settings=settings, jobs=JobManager(settings.jobs_dir, settings),
                   uploads=UploadStore(settings.upload_dir, settings.max_upload_bytes), env=template_env())

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        ui.jobs.shutdown()

    app = FastAPI(title="adaptlab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ui = ui
    app.state.settings, app.state.jobs, app.state.uploads = settings, ui.jobs, ui.uploads
    if settings.token:  # inside the guard: its host and cross-site checks and headers come first
        app.add_middleware(TokenMiddleware, settings=settings)
    app.add_middleware(GuardMiddleware, settings=settings)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(labelfix.router)  # the coordinator's label review before a retrain
    app.include_router(labeling.router)  # the coordinator's labeling page, /models/<name>/label
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(AdaptlabError, _user_error)
    return app


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(_error_body(exc.status_code, str(exc.detail), True), status_code=exc.status_code)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


async def _user_error(request: Request, exc: AdaptlabError) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(_error_body(400, str(exc), True), status_code=400)
    return JSONResponse({"detail": str(exc)}, status_code=400)


__all__ = ["create_app", "GuardMiddleware", "public_job", "rung_choices"]  # the last two as before the routers
