"""The web app's templates: one Jinja environment and the filters every page group's router renders with.

Apart from ``app.py`` so that each page group's router (``labelfix`` ...) renders without importing the
app that includes it.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from adaptlab.ui.uploads import file_size, mib
from adaptlab.values import is_number as is_num  # re-exported: the pages' "is it a number" test

HERE = Path(__file__).resolve().parent


def _secs(x: Any) -> str:
    from adaptlab.decide.plan import format_seconds

    return format_seconds(x, digits=1) if is_num(x) else "n/a"


def _stop_reason(reason: Any, kind: Any = None) -> str:
    """An allocation's stop reason without the leading ``"<kind>: "`` the page already shows, e.g.
    ``"settled: no affordable run ..."`` -> ``"no affordable run ..."``."""
    from adaptlab.evaluate.adaptive import stop_reason

    return stop_reason({"reason": reason, "kind": kind}).rstrip(".")


def template_env() -> Environment:
    """The pages' Jinja environment: autoescaped, strict, with the number filters the templates use."""
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["f4"] = lambda x: "n/a" if not is_num(x) else f"{x:.4f}"
    env.filters["f3"] = lambda x: "n/a" if not is_num(x) else f"{x:.3f}"
    env.filters["signed"] = lambda x: "n/a" if not is_num(x) else f"{x:+.4f}"
    env.filters["secs"] = _secs
    env.filters["pct"] = lambda x: "n/a" if not is_num(x) else f"{x:.0%}"
    env.filters["mib"] = mib
    env.filters["filesize"] = file_size
    env.filters["stop_reason"] = _stop_reason
    env.filters["when"] = lambda t: dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if is_num(t) else ""
    return env


def rows_text(rows: list[int], limit: int = 40) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


__all__ = ["is_num", "rows_text", "template_env"]
