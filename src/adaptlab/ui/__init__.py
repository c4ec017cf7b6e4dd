"""The local web app (`adaptlab ui`): the study, the decision and shipped models in the browser, a thin shell over the public API.

FastAPI + server-rendered Jinja2 pages, one small static script for live progress; no JS framework and
no CDN, so it runs offline. Long work (studies, the sketch, retrains) runs in background threads whose
state is kept on disk next to the run store, so every browser tab sees the same state.

Example:
    >>> from adaptlab.ui import UISettings, create_app           # doctest: +SKIP
    >>> app = create_app(UISettings(home="adaptlab-runs", models_root="models"))  # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8765)             # doctest: +SKIP
"""
from typing import Any

from adaptlab.ui.settings import UISettings

__all__ = ["UISettings", "create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI is imported only when an app is built, so `import adaptlab.ui` stays cheap.
    if name == "create_app":
        from adaptlab.ui.app import create_app

        return create_app
    raise AttributeError(name)
