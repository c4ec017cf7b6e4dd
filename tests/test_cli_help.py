"""`--help` of every command: options grouped into panels, commands grouped on the top level, no raw markup."""
from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from adaptlab.cli import app

# What a help screen must never show: Markdown/rich syntax that was not rendered.
RAW = ("``", "\\[", "[/", "[bold", "[dim", "<home>")


def all_commands() -> list[list[str]]:
    """Every command path of the app, e.g. ["study", "run"], ["ship"]."""
    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path):  # noqa: ANN001
        if hasattr(cmd, "list_commands"):
            ctx = cmd.context_class(cmd, info_name=path[-1] if path else "adaptlab")
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), path + [name])
        else:
            out.append(path)

    walk(root, [])
    return out


def help_of(path: list[str]) -> str:
    r = CliRunner().invoke(app, [*path, "--help"], terminal_width=160, env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    return r.output


def test_study_run_help_is_grouped_into_the_five_panels():
    text = help_of(["study", "run"])
    for panel in ("Data", "Rungs", "Budget", "Execution", "Output"):
        assert re.search(rf"╭─ {panel} ─", text), panel
    # Each flag sits in its own panel: --time under Budget, --json under Output, --data under Data.
    blocks = dict(re.findall(r"╭─ (\w+) ─+╮\n(.*?)╰", text, flags=re.S))
    assert "--time" in blocks["Budget"] and "--json" in blocks["Output"] and "--data" in blocks["Data"]
    assert "--executor" in blocks["Execution"] and "--rungs" in blocks["Rungs"]


def test_top_level_help_groups_the_commands_in_the_order_a_user_needs_them():
    text = help_of([])
    titles = re.findall(r"╭─ ([^─]+?) ─", text)
    assert titles.index("Start here") < titles.index("Your data") < titles.index("Study and decision") \
        < titles.index("Ship and label")
    start = re.search(r"╭─ Start here ─+╮\n(.*?)╰", text, flags=re.S).group(1)
    assert "demo" in start and "ui" in start


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p))
def test_no_help_screen_shows_raw_markup(path):
    text = help_of(path)
    shown = [m for m in RAW if m in text]
    assert shown == [], f"adaptlab {' '.join(path)} --help shows {shown}"
