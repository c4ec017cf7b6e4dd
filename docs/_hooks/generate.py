"""mkdocs hook: pages written from the code at build time, never copied by hand.

A page holds a marker (an HTML comment) and the build replaces it:

* ``<!-- generated:cli -->``: every command of the typer app (usage, help, every option with its default);
* ``<!-- generated:policy-rules -->``: every rule of the default :class:`adaptlab.decide.Policy` with its
  condition, action, thresholds and source;
* ``<!-- generated:policy-keys -->``: every policy key with its default and help;
* ``<!-- generated:store-schema -->``: the run store's SQL schema;
* ``<!-- generated:ladder -->``: the rung catalogue in ladder order (kind, words, main parameters, retraining).
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

# The tree being documented, not whatever adaptlab the interpreter has installed.
SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def _cell(text: object) -> str:
    return _escape(str(text)).replace("|", "\\|").replace("\n", " ").strip()


def _escape(text: str) -> str:
    # Help texts say <home>, [default: ...] and escape [ for rich; Markdown would read <home> as HTML.
    return text.replace("\\[", "[").replace("<", "&lt;").replace(">", "&gt;")


def cli_markdown() -> str:
    """The CLI reference from the typer app: one section per command, in the app's order."""
    import typer.main

    from adaptlab.cli import app

    root = typer.main.get_command(app)
    out: list[str] = []

    # typer vendors its own click (typer._click): go by the objects' own classes and attributes.
    def walk(cmd, path: list[str], parent) -> None:  # noqa: ANN001
        ctx = cmd.context_class(cmd, info_name=path[-1], parent=parent)
        if len(path) > 1:
            name = " ".join(path)
            out.append(f"## `{name}`\n")
            help_text = _escape(cmd.help or "").replace("\b\n", "")
            out.append(help_text.strip() + "\n")
            usage = cmd.get_usage(ctx).replace("Usage: ", "")
            out.append(f"```text\n{usage}\n```\n")
            rows = []
            for p in cmd.params:
                if p.param_type_name == "argument":
                    rows.append((f"`{p.name.upper()}` (argument)", "required" if p.required else "",
                                 getattr(p, "help", "") or ""))
                elif p.param_type_name == "option" and not getattr(p, "hidden", False):
                    flags = ", ".join(f"`{o}`" for o in p.opts + p.secondary_opts)
                    default = "" if p.default is None or p.is_flag and not p.default else f"`{p.default}`"
                    if p.required:
                        default = "required"
                    rows.append((flags, default, p.help or ""))
            if rows:
                out.append("| option | default | what it does |\n| --- | --- | --- |")
                out.extend(f"| {_cell(a)} | {_cell(b)} | {_cell(c)} |" for a, b, c in rows)
                out.append("")
        if hasattr(cmd, "list_commands"):
            for sub in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, sub), path + [sub], ctx)

    walk(root, ["adaptlab"], None)
    return "\n".join(out)


def policy_rules_markdown() -> str:
    """Every rule of the default policy, as the decision engine evaluates it."""
    from adaptlab.decide import Policy

    from adaptlab.decide.references import cite, references_table

    lines = ["| rule (id) | condition | action | thresholds | why | source |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in Policy().rules():
        thresholds = ", ".join(f"`{k}` = {v:,}" if isinstance(v, int) else f"`{k}` = {v:g}"
                               for k, v in r.thresholds.items())
        lines.append(f"| {_cell(r.title)} (`{r.id}`) | {_cell(r.condition)} | {_cell(r.action)} | {thresholds} | "
                     f"{_cell(r.evidence)} | {cite(r.sources)} |")
    lines += ["", "Sources:", ""]
    lines += [f"{ref['n']}. {ref['title']}: {ref['takes']}." for ref in references_table()]
    return "\n".join(lines)


def policy_keys_markdown() -> str:
    """Every field of :class:`adaptlab.decide.Policy`: the keys a ``--policy`` file may set."""
    from adaptlab.decide import Policy

    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(Policy):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "")
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        lines.append(f"| `{f.name}` | {_cell(kind)} | `{default}` | {_cell(f.metadata.get('help', ''))} |")
    return "\n".join(lines)


def ladder_markdown() -> str:
    """The rung catalogue in ladder order (``adaptlab.rungs.ladder``): kind, what the rung is, what it trains,
    its main parameters and what retraining it takes; a catalogued rung missing from this build is marked."""
    from adaptlab.rungs import RUNGS
    from adaptlab.rungs.ladder import LADDER_FACTS

    lines = ["| rung | kind | what it is | what it trains | main parameters | to retrain it |",
             "| --- | --- | --- | --- | --- | --- |"]
    for f in LADDER_FACTS:
        name = f"`{f.name}`" + ("" if f.name in RUNGS else " (not in this build)")
        params = ", ".join(f"`{p}`" for p in f.main_parameters)
        lines.append(f"| {name} | {f.kind} | {_cell(f.label)} | {_cell(f.trainable)} | {params} | {_cell(f.rerun)} |")
    return "\n".join(lines)


def store_schema_markdown() -> str:
    from adaptlab.store import SCHEMA

    return f"```sql\n{SCHEMA.strip()}\n```"


GENERATED = {
    "<!-- generated:cli -->": cli_markdown,
    "<!-- generated:policy-rules -->": policy_rules_markdown,
    "<!-- generated:policy-keys -->": policy_keys_markdown,
    "<!-- generated:store-schema -->": store_schema_markdown,
    "<!-- generated:ladder -->": ladder_markdown,
}


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:  # noqa: ANN001 (mkdocs hook signature)
    for marker, make in GENERATED.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
