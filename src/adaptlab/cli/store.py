"""`adaptlab store backup DEST` and `adaptlab store check`: keep a copy of the run store, and see whether it is whole.

The run store is the one thing under the home that cannot be recomputed quickly (every trained result is in it),
so it is never moved or deleted automatically; these two commands are how a user protects and inspects it.
Registered on the main app by one import line at the bottom of ``adaptlab.cli``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from adaptlab.cli import HomeOpt, JsonOpt, app, err, out

store_app = typer.Typer(no_args_is_help=True, help="Back up and check the run store (studies and results).")
app.add_typer(store_app, name="store")


def _store_path(home: Optional[Path]) -> Path:
    from adaptlab.config import default_home

    return (home or default_home()) / "runs.sqlite"


@store_app.command("backup")
def store_backup(
    dest: Path = typer.Argument(..., help="File to write (e.g. runs-copy.sqlite; must not exist), or a folder (existing, or a "
                                       "name without suffix) to put runs-<time>.sqlite in."),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Copy the run store with SQLite's online backup (safe while studies run), then check the copy."""
    from adaptlab.store import backup_store

    info = backup_store(_store_path(home), dest)
    if json_out:
        typer.echo(json.dumps(info, indent=2))
    else:
        out.print(f"backed up {escape(info['source'])} to {escape(info['dest'])}: {info['studies']} studies, "
                  f"{info['results']} results, {info['bytes'] / 2**20:.1f} MiB; integrity check "
                  f"{'ok' if info['ok'] else 'FAILED'}", highlight=False)
    if not info["ok"]:
        raise typer.Exit(1)


@store_app.command("check")
def store_check(home: Optional[Path] = HomeOpt, json_out: bool = JsonOpt) -> None:
    """Run SQLite's integrity check on the run store (read-only); exit 1 and print recovery steps if damaged."""
    from adaptlab.store import check_store, recovery_steps

    path = _store_path(home)
    report = check_store(path)
    if not report["ok"]:
        report["recovery"] = recovery_steps(path, "; ".join(report["problems"][:3]))
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    elif report["ok"]:
        out.print(f"{escape(str(path))}: ok ({report['studies']} studies, {report['results']} results, "
                  f"{report['bytes'] / 2**20:.1f} MiB)", highlight=False)
    else:
        out.print(f"{escape(str(path))}: DAMAGED", highlight=False)
        for problem in report["problems"][:20]:
            out.print(f"  - {escape(problem)}", highlight=False)
        err.print(escape(report["recovery"]), highlight=False, soft_wrap=True)
    if not report["ok"]:
        raise typer.Exit(1)
