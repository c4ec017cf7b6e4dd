"""`--help` in panels: every option of every command grouped by what it is about, in one table.

A command with forty options (``study run``) is read by group: the data, the rungs, the budget, where the
jobs run, and what comes out. The grouping lives here, once, keyed by flag, and is applied to every
registered command when the app is assembled (:func:`group_help`), so a command file never repeats it
and a new flag lands in its panel by name. The top-level ``adaptlab --help`` groups the commands the same
way, in the order a new user needs them.

Help texts are Markdown (``--flag`` in backticks renders as code in the terminal and in the docs' CLI
reference alike), so no markup shows raw.

Example:
    >>> from adaptlab.cli.panels import OPTION_PANELS, panel_of
    >>> panel_of("--time"), panel_of("--json"), panel_of("--unknown-flag")
    ('Budget', 'Output', None)
"""
from __future__ import annotations

from typing import Any, Optional

import typer

DATA, RUNGS, BUDGET, EXECUTION, OUTPUT = "Data", "Rungs", "Budget", "Execution", "Output"

#: flag -> panel. Options not listed stay in typer's default "Options" panel.
OPTION_PANELS: dict[str, str] = {
    **dict.fromkeys((
        "--data", "--unlabeled", "--test", "--split", "--text-col", "--label-col", "--group-col", "--time-col",
        "--id-col", "--encoding", "--on-invalid", "--positive-label", "--test-size", "--val-size", "--test-seed",
        "--near-dup-threshold", "--max-rows", "--label-issues", "--no-label-issues", "--transductive",
        "--reference", "--new-labels",
    ), DATA),
    **dict.fromkeys((
        "--rungs", "--rung", "--seeds", "--seed", "--encoder", "--encoders", "--config", "--set", "--study",
        "--refit-objective", "--precision", "--precision-tolerance", "--int8-tolerance", "--mixed-precision", "--long-text",
        "--policy", "--margin", "--ship-threshold", "--max-drop", "--accept-labels",
    ), RUNGS),
    **dict.fromkeys((
        "--budget", "--time", "--screen-fidelity", "--refit-budget", "--train-budget", "--gpu-speedup",
    ), BUDGET),
    **dict.fromkeys((
        "--executor", "--address", "--max-retries", "--job-cpus", "--job-gpus", "--job-memory", "--rung-resources",
        "--device", "--batch-size", "--home", "--workers", "--host", "--port",
    ), EXECUTION),
    **dict.fromkeys((
        "--json", "--name", "--track", "--tracking-uri", "--output", "-o", "--defense", "--rejects", "--md",
        "--version",
    ), OUTPUT),
}

#: command (or command group) -> panel of the top-level help, in the order a new user needs them.
COMMAND_PANELS: dict[str, str] = {
    **dict.fromkeys(("demo", "ui", "rungs"), "Start here"),
    **dict.fromkeys(("data", "plan", "encoders", "diagnose"), "Your data"),
    **dict.fromkeys(("study", "refit", "decide", "report", "curve", "slices"), "Study and decision"),
    **dict.fromkeys(("ship", "predict", "retrain", "models", "suggest"), "Ship and label"),
    **dict.fromkeys(("drift", "neighbors", "bias", "stability", "embeddings"), "Monitor"),
    **dict.fromkeys(("store",), "Maintenance"),
}


def panel_of(flag: str) -> Optional[str]:
    """The help panel of option ``flag`` (None: the default panel)."""
    return OPTION_PANELS.get(flag)


def _option_infos(callback: Any) -> list[Any]:
    """The typer OptionInfo defaults of a command callback's parameters (wrappers followed)."""
    import inspect

    fn = inspect.unwrap(callback)
    return [p.default for p in inspect.signature(fn).parameters.values()
            if isinstance(p.default, typer.models.OptionInfo)]


def _panel_options(callback: Any) -> None:
    for info in _option_infos(callback):
        flags = [d for d in (info.param_decls or ()) if d.startswith("-")]
        flags = [f.split("/")[0] for f in flags]  # "--ship/--no-ship" -> "--ship"
        panel = next((OPTION_PANELS[f] for f in flags if f in OPTION_PANELS), None)
        if panel is not None and info.rich_help_panel is None:
            info.rich_help_panel = panel


def group_help(group: typer.Typer, top: bool = True) -> None:
    """Put every option of every command under ``group`` in its panel, the top-level commands in theirs,
    and render all help texts as Markdown (sub-apps included)."""
    group.rich_markup_mode = "markdown"  # the root's mode is the one typer passes down to every sub-app
    for info in group.registered_commands:
        _panel_options(info.callback)
        name = info.name or info.callback.__name__.replace("_", "-")
        if top and name in COMMAND_PANELS:
            info.rich_help_panel = COMMAND_PANELS[name]
    for sub in group.registered_groups:
        if top and (sub.name or "") in COMMAND_PANELS:
            sub.rich_help_panel = COMMAND_PANELS[sub.name or ""]
        group_help(sub.typer_instance, top=False)
    if top:
        # typer shows panels in the order their first command appears: sort commands by panel (stable).
        rank = {panel: i for i, panel in enumerate(dict.fromkeys(COMMAND_PANELS.values()))}
        group.registered_commands.sort(key=lambda c: rank.get(c.rich_help_panel, len(rank)))
        group.registered_groups.sort(key=lambda g: rank.get(g.rich_help_panel, len(rank)))
    if group.registered_callback is not None:
        _panel_options(group.registered_callback.callback)
