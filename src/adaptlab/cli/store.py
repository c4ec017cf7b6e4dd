"""`adaptlab store backup DEST`, `adaptlab store check` and `adaptlab store gc`: keep a copy of the run store, see
whether it and everything else under the home is whole, and delete the checkpoints nothing needs any more.

The run store is the one thing under the home that cannot be recomputed quickly (every trained result is in it),
so it is never moved or deleted automatically; these commands are how a user protects and inspects it.
Registered on the main app by one import line at the bottom of ``adaptlab.cli``.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from adaptlab.cli import HomeOpt, JsonOpt, app, err, out
from adaptlab.store.files import MovedAsideWarning

_plain_format = warnings.formatwarning


def _one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              line: Optional[str] = None) -> str:
    """A damaged file moved aside (or skipped) is news for the user, not a code location: one line, no source."""
    if issubclass(category, MovedAsideWarning):
        return f"warning: {message}\n"
    return _plain_format(message, category, filename, lineno, line)


# The CLI imports this module at start-up (see ``adaptlab.cli``); library users keep Python's own format.
warnings.formatwarning = _one_line

store_app = typer.Typer(no_args_is_help=True, help="Back up and check the run store (studies and results), the "
                        "embedding cache, checkpoints and refits; delete checkpoints nothing needs.")
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
    """Check the run store (SQLite's integrity check and every result's checksum), the embedding cache (every
    row's checksum), checkpoints and refits, all read-only; exit 1 if anything is damaged (recovery steps for the
    store; damaged caches, results and checkpoints are recomputed by the next study that needs them)."""
    from adaptlab.store import check_store, recovery_steps
    from adaptlab.store.housekeeping import check_home

    path = _store_path(home)
    report = check_store(path)
    if not report["ok"]:
        report["recovery"] = recovery_steps(path, "; ".join(report["problems"][:3]))
    report["home_check"] = check_home(path.parent)
    damaged = not report["ok"] or bool(report["damaged_results"]) or report["home_check"]["damaged"] > 0
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_store(path, report)
        _print_home(report["home_check"])
        if not report["ok"]:
            err.print(escape(report["recovery"]), highlight=False, soft_wrap=True)
    if damaged:
        raise typer.Exit(1)


def _print_store(path: Path, report: dict) -> None:
    if report["ok"]:
        unverified = report.get("unverified_results") or 0
        note = (f"; {unverified} stored before results had checksums, marked unverified (`study run --recompute "
                "RUNG` trains them again)") if unverified else ""
        out.print(f"{escape(str(path))}: ok ({report['studies']} studies, {report['results']} results, "
                  f"{report['bytes'] / 2**20:.1f} MiB{note})", highlight=False)
    else:
        out.print(f"{escape(str(path))}: DAMAGED", highlight=False)
        for problem in report["problems"][:20]:
            out.print(f"  - {escape(problem)}", highlight=False)
    for line in report.get("damaged_results", [])[:20]:
        out.print(f"  - DAMAGED {escape(line)}", highlight=False)


def _print_home(home: dict) -> None:
    """The embedding cache, then one line per checkpoint, refit and moved-aside file, then what gc would free."""
    cache = home["cache"]
    if cache["problem"]:
        out.print(f"{escape(cache['path'])}: DAMAGED ({escape(cache['problem'])})", highlight=False, soft_wrap=True)
    elif cache["rows"]:
        state = (f"DAMAGED: {cache['damaged']} row(s) fail their checksum and will be recomputed"
                 if cache["damaged"] else "ok")
        extra = f"; {cache['unverified']} from before checksums (recomputed when used)" if cache["unverified"] else ""
        out.print(f"{escape(cache['path'])}: {state} ({cache['rows']} vectors, {cache['bytes'] / 2**20:.1f} MiB"
                  f"{extra})", highlight=False, soft_wrap=True)
    for item in home["items"]:
        label = item["status"].upper() if item["status"] == "damaged" else item["status"]
        out.print(f"{escape(item['path'])}: {label}, {item['bytes'] / 2**20:.1f} MiB ({escape(item['detail'])})",
                  highlight=False, soft_wrap=True)
    if home["removable_bytes"]:
        out.print(f"`adaptlab store gc` would free {home['removable_bytes'] / 2**20:.1f} MiB (checkpoints of finished "
                  "or abandoned runs, damaged checkpoints, files moved aside, unused web uploads).", highlight=False,
                  soft_wrap=True)


@store_app.command("gc")
def store_gc(
    older_than: float = typer.Option(7.0, "--older-than", help="Days without a write after which an unfinished "
                                     "run's checkpoint counts as abandoned, and a web upload no stored study or web "
                                     "job names as unused (0: every one)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted; delete nothing."),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Delete checkpoints of finished or abandoned runs, damaged checkpoints, leftovers of interrupted writes, files
    moved aside as damaged, and web uploads no stored study or web job names (as old as --older-than). Never the
    run store, the embedding cache, a finished refit or the upload a stored study ran on."""
    from adaptlab.config import default_home
    from adaptlab.errors import ConfigError
    from adaptlab.store.housekeeping import collect_garbage

    if older_than < 0:
        raise ConfigError.invalid("--older-than", older_than, "a number of days >= 0")
    report = collect_garbage(home or default_home(), older_than, dry_run=dry_run)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    for item in report["removed"]:
        out.print(f"{verb} {escape(item['path'])} ({item['status']}, {item['bytes'] / 2**20:.1f} MiB)",
                  highlight=False, soft_wrap=True)
    out.print(f"{verb} {len(report['removed'])} item(s), {report['freed_bytes'] / 2**20:.1f} MiB",
              highlight=False, soft_wrap=True)
