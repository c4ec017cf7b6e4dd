"""Study files on the command line: `study run --config FILE --set KEY=VALUE` and `adaptlab study config`.

A thin shell over :mod:`adaptlab.studyfile`: flags given explicitly beat ``--set``, which beats the file,
which beats the flags' defaults.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import typer

from rich.markup import escape

from adaptlab.cli import HomeOpt, JsonOpt, err, out, study_app, user_errors

def explicit_flags(ctx: typer.Context, names: "list[str]") -> set[str]:
    """Which of the command's parameters ``names`` were given on the command line (or by environment), not
    left at their defaults.

    Example (inside a command run as ``adaptlab study run --seeds 3 ...``):
        >>> explicit_flags(ctx, ["seeds", "split"])  # doctest: +SKIP
        {'seeds'}
    """
    given = set()
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            given.add(name)
    return given


def settle_flags(ctx: typer.Context, flags: dict[str, Any], config: Optional[Path], sets: Optional[list[str]],
                 quiet: bool = False) -> tuple[SimpleNamespace, Any]:
    """The effective `study run` settings: defaults < study file < ``--set`` < flags given explicitly.

    Returns the settings as attributes (flag names) and the :class:`~adaptlab.studyfile.ResolvedSettings`
    (rung parameters, adaptive settings, notes).
    """
    from adaptlab.studyfile import KEYS, StudySettings, parse_set_options, read_study_file, resolve_settings

    names = [k for k in KEYS if k in flags]
    given = explicit_flags(ctx, names)
    layers = []
    if config is not None:
        layers.append(read_study_file(config))
    if sets:
        layers.append(parse_set_options(sets))
    layers.append(StudySettings(values={k: flags[k] for k in names if k in given}, source="flags"))
    resolved = resolve_settings(layers, defaults={k: flags[k] for k in names})
    if not quiet and (config is not None or sets):
        from_file = sorted(k for k, src in resolved.origin.items() if config is not None and src == str(config))
        over = sorted(k for k in given if layers[0].values.get(k) is not None) if config is not None else []
        parts = []
        if config is not None:
            tables = [f"rung.{r}" for r in layers[0].rung_params]
            parts.append(f"study file {config}: {', '.join(from_file + tables) or 'nothing'}")
        if sets:
            parts.append(f"--set {' '.join(sets)}")
        if over:
            parts.append(f"flags override the file: {', '.join('--' + k.replace('_', '-') for k in over)}")
        for line in ["settings: " + "; ".join(parts), *resolved.notes]:
            err.print(f"[dim]{escape(line)}[/]", highlight=False, soft_wrap=True)
    return SimpleNamespace(**{**flags, **resolved.values}), resolved


@study_app.command("config")
@user_errors
def study_config_cmd(
    study: str = typer.Argument("latest", help="Study id (a prefix is enough), name, or 'latest'."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the study file here (default: print "
                                          "it); a .yaml / .yml name writes YAML."),
    fmt: Optional[str] = typer.Option(None, "--format", help="toml | yaml (default: from the -o name, else toml)."),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Write a stored study's configuration as a study file (TOML or YAML) that reruns it exactly.

    The file names the data it ran on (absolute paths, the columns used), so
    `adaptlab study run --config study.toml` gives the same study id and reads every result from the run
    store. JSON: the study id, the configuration, the inputs and the file's text.
    """
    from adaptlab.config import default_home
    from adaptlab.errors import ConfigError
    from adaptlab.store import RunStore
    from adaptlab.studyfile import YAML_SUFFIXES, study_file_text, study_file_yaml

    if fmt is None:
        fmt = "yaml" if output is not None and output.suffix.lower() in YAML_SUFFIXES else "toml"
    if fmt not in ("toml", "yaml"):
        raise ConfigError.invalid("--format", fmt, "toml or yaml")
    store = RunStore((home or default_home()) / "runs.sqlite")
    rec = store.get_study(study)
    data = (rec["summary"] or {}).get("data") or {}
    inputs = data.get("inputs") or {}
    source = data.get("source") or "DATA"
    target = str(output) if output is not None else f"study.{fmt}"
    rerun = (f"adaptlab study run --config {target}" if inputs.get("data")
             else f"adaptlab study run --data {source} --config {target}")
    header = (f"adaptlab study {rec['study_id'][:12]} ({rec['name']}); data {source} (hash {rec['data_hash'][:12]})\n"
              f"rerun it exactly: {rerun}\n"
              "executor, --home, --encoding and --on-invalid are not part of a study: give them as flags")
    writer = study_file_yaml if fmt == "yaml" else study_file_text
    text = writer(rec["config"], header=header, inputs=inputs)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {output}: {exc}. Fix: give -o a file in a folder you can write to.") from None
    if json_out:
        typer.echo(json.dumps({"study_id": rec["study_id"], "name": rec["name"], "path": str(output) if output else None,
                               "format": fmt, "config": rec["config"], "inputs": inputs, "text": text,
                               "toml": text if fmt == "toml" else None}, indent=2))
    elif output is None:
        typer.echo(text, nl=False)
    else:
        out.print(f"wrote {output} (study {rec['study_id'][:12]}); rerun it: {rerun.replace(target, str(output))}",
                  highlight=False, soft_wrap=True, markup=False)


def print_configuration(config: dict[str, Any], study_id: str) -> None:
    """The short configuration block of `study show` (table mode)."""
    from adaptlab.studyfile import describe_config

    out.print("[bold]configuration[/]")
    for line in describe_config(config):
        out.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    out.print(f"[dim]  as a study file: adaptlab study config {study_id[:12]} -o study.toml[/]", highlight=False)


__all__ = ["explicit_flags", "settle_flags", "study_config_cmd", "print_configuration"]
