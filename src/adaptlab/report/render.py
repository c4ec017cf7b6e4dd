"""The decision as a rich renderable, for the terminal (printed at the end of `study run` and `demo`)."""
from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.text import Text

_STYLE = {"ship": "green", "do-not-ship": "yellow", "no-decision": "red", "provisional": "yellow"}
_FLAG = {"block": "bold red", "warn": "yellow", "info": "dim"}


def render_decision(decision: Any) -> Panel:
    """A panel with the headline, the reasons, the flags, the flip inspection and the next experiment.

    Example:
        >>> from rich.console import Console
        >>> from adaptlab.decide import Evidence, decide
        >>> d = decide(Evidence.from_tables({"probe": [0.81, 0.82, 0.83]}))
        >>> Console(width=100).print(render_decision(d))  # doctest: +ELLIPSIS
        ╭─ decision: ship probe ...
    """
    style = _STYLE.get(decision.status, "white")
    parts: list[Any] = [Text(decision.headline, style=f"bold {style}")]
    if decision.reasons:
        parts.append(Text("\n".join(f"• {r}" for r in decision.reasons)))
    for f in decision.flags:
        parts.append(Text(f"{'!' if f.severity != 'info' else '·'} {f.message}", style=_FLAG.get(f.severity, "")))
    parts.append(Text.assemble(("flip inspection: ", "bold"), decision.flip_inspection))
    nxt = decision.next_experiment
    if nxt is not None:
        parts.append(Text.assemble(("next experiment: ", "bold"), f"{nxt.what} ({nxt.cost}) — {nxt.why}"))
    title = {"ship": f"decision: ship {decision.chosen}", "do-not-ship": f"decision: {decision.chosen}, do not ship yet",
             "no-decision": "decision: none yet",
             "provisional": f"decision: provisionally {decision.provisional}, do not ship yet"}.get(decision.status, "decision")
    return Panel(Group(*parts), title=title, title_align="left", border_style=style)
