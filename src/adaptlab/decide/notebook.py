"""The HTML a notebook shows for a :class:`~adaptlab.decide.Decision`: headline, reasons, each rung's verdict,
the flags, what would flip it and the next experiment."""
from __future__ import annotations

import html
from typing import Any

from adaptlab.evaluate.notebook import html_table

__all__ = ["decision_html"]

_STATUS_COLOUR = {"ship": "#1b8a3a", "do-not-ship": "#b3261e", "provisional": "#c76b00", "no-decision": "#5b636e"}


def _f(x: Any) -> str:
    return "–" if x is None else f"{x:.4f}"


def decision_html(d: Any) -> str:
    """The decision as HTML (every text escaped).

    Example:
        >>> from adaptlab.decide import Evidence, decide
        >>> d = decide(Evidence.from_tables({"probe": [0.81, 0.82, 0.83], "refit": [0.82, 0.83, 0.84]}))
        >>> page = decision_html(d)
        >>> "ship" in page and "<td>probe</td>" in page
        True
    """
    esc = html.escape
    colour = _STATUS_COLOUR.get(d.status, "#5b636e")
    out = [f'<p><span style="color:#fff;background:{colour};padding:1px 6px;border-radius:3px">{esc(d.status)}</span> '
           f"<b>{esc(d.headline)}</b></p>"]
    if d.reasons:
        out.append("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in d.reasons) + "</ul>")
    rows = [[r.get("rung"), r.get("n_seeds"), f"{_f(r.get('mean'))} ± {_f(r.get('std'))}",
             f"[{_f(r.get('ci_low'))}, {_f(r.get('ci_high'))}]", r.get("verdict", "")] for r in d.rungs]
    out.append(html_table(["rung", "seeds", f"{d.metric} mean ± std", "95% band", "verdict"], rows, "decision-rungs"))
    if d.flags:
        out.append("<ul>" + "".join(f"<li>{'⚠ ' if f.severity != 'info' else ''}{esc(f.message)}</li>"
                                    for f in d.flags) + "</ul>")
    out.append(f"<p>Flip inspection: {esc(d.flip_inspection)}</p>")
    if d.next_experiment:
        n = d.next_experiment
        out.append(f"<p>Next experiment: {esc(n.what)} ({esc(n.cost)}) — {esc(n.why)}</p>")
    return "".join(out)
