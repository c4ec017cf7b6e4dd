"""What every page group of the web app shares: the settings, the job manager, the uploads, the templates.

One :class:`UIContext` is built by :func:`adaptlab.ui.app.create_app` and kept on ``app.state.ui``; a route
asks for it as a FastAPI dependency (``ui: Ui``), so the routers in :mod:`adaptlab.ui.routes` hold no state
of their own and can be read, and tested, one page group at a time.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment
from starlette.exceptions import HTTPException

from adaptlab.ui.jobs import JobManager
from adaptlab.ui.settings import UISettings
from adaptlab.ui.templating import rows_text
from adaptlab.ui.uploads import UploadStore

# Server paths a job's spec holds; the browser never sees them.
PRIVATE_SPEC = ("data_path", "unlabeled_path", "model_path", "display_paths")


@dataclass
class UIContext:
    """The web app's shared state.

    Example:
        >>> ui = request.app.state.ui                                # doctest: +SKIP
        >>> ui.render("upload.html.j2", error=None).status_code      # doctest: +SKIP
        200
    """

    settings: UISettings
    jobs: JobManager
    uploads: UploadStore
    env: Environment
    # matplotlib's pyplot is not thread-safe: one report is built at a time.
    report_lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self) -> Any:
        from adaptlab.store import RunStore

        return RunStore(self.settings.home / "runs.sqlite")

    def render(self, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        import adaptlab

        base = {"settings": self.settings, "max_upload": self.settings.max_upload_bytes,
                "version": adaptlab.__version__, "rows_text": rows_text}
        return HTMLResponse(self.env.get_template(template).render(**base, **ctx), status_code=status)


def get_ui(request: Request) -> UIContext:
    return request.app.state.ui


Ui = Annotated[UIContext, Depends(get_ui)]


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"{what} not found.")


def public_job(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A job as the browser sees it: without server paths."""
    from adaptlab.ui.eta import job_eta

    out = dict(snapshot)
    out["spec"] = {k: v for k, v in (snapshot.get("spec") or {}).items() if k not in PRIVATE_SPEC}
    out["eta"] = job_eta(snapshot)  # a running study's time left, for the job page
    return out


__all__ = ["UIContext", "Ui", "get_ui", "see_other", "not_found", "public_job", "PRIVATE_SPEC"]
