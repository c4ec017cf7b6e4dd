"""`adaptlab ui`: start the local web app (a thin shell over `adaptlab.ui.create_app`).

Registered on the main app by one import line at the bottom of ``adaptlab.cli``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from adaptlab.cli import HomeOpt, app, err, out, user_errors
from adaptlab.ui.settings import TOKEN_ENV, access_token


@app.command("ui")
@user_errors
def ui_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on. Beyond loopback (e.g. 0.0.0.0) "
                             "every request needs the access token (--token, or one generated and printed), "
                             "unless --no-auth."),
    port: int = typer.Option(8765, "--port", help="TCP port."),
    home: Optional[Path] = HomeOpt,
    models: Path = typer.Option(Path("models"), "--models", help="Folder whose model folders (from `adaptlab ship -o "
                                                                 "MODELS/NAME`) the models page lists."),
    max_upload_mb: float = typer.Option(100.0, "--max-upload-mb", help="Largest upload accepted, in MiB."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder folder for studies, the planner and the "
                                                                  "sketch (default: the packaged all-MiniLM-L6-v2)."),
    retention_days: float = typer.Option(30.0, "--retention-days", help="Delete uploads and finished jobs older "
                                         "than this many days (0: keep forever). Shipped models are never deleted."),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="torch threads for jobs (default: torch's own). On a machine shared with busy "
                                "processes 1 is often fastest."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar=TOKEN_ENV, show_envvar=True,
        help="Access token every request must carry (header 'Authorization: Bearer TOKEN', or open "
             "/?token=TOKEN once: the browser keeps it in a cookie). Default beyond loopback: a random one, "
             "printed at start; on loopback: none asked."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve beyond loopback without a token: anyone who "
                                 "can reach the port may upload data and retrain models."),
) -> None:
    """Start the local web app: upload data, run studies with live progress, read the decision, retrain models."""
    try:
        import uvicorn

        from adaptlab.ui import UISettings, create_app
    except ImportError as exc:  # pragma: no cover - fastapi/uvicorn are dependencies
        raise typer.BadParameter(f"the web app needs fastapi, uvicorn and python-multipart ({exc}); "
                                 "run `pip install adaptlab` again.") from exc
    from adaptlab.config import default_home

    token, generated = access_token(host, token, no_auth)
    settings = UISettings(home=home or default_home(), models_root=models, max_upload_mb=max_upload_mb,
                          encoder=encoder, host=host, port=port, torch_threads=threads,
                          retention_days=retention_days or None, token=token, no_auth=no_auth)
    if settings.exposed and settings.no_auth:
        err.print(f"[yellow]warning:[/] listening on {host} with --no-auth: anyone who can reach this machine on "
                  f"port {port} can upload data and retrain models.", highlight=False)
    shown = f"[{host}]" if ":" in host else host
    out.print(f"adaptlab ui on http://{shown}:{port}/  (run store {settings.home}, models {settings.models_root}; "
              "Ctrl+C stops it)", highlight=False)
    if generated:
        out.print(f"access token: open http://{shown}:{port}/?token={token} (the browser keeps it in a cookie); "
                  f"scripts send 'Authorization: Bearer {token}'. A new token at every start unless --token or "
                  f"${TOKEN_ENV} gives one.", highlight=False, soft_wrap=True)
    elif token:
        out.print(f"every request needs the access token you gave (--token / ${TOKEN_ENV}): open "
                  f"http://{shown}:{port}/?token=... once, or send 'Authorization: Bearer ...'.", highlight=False)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
