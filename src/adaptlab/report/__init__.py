"""Reports of a study: the decision in the terminal, and one self-contained HTML file (+ Markdown).

Example:
    >>> from adaptlab.report import build_report  # doctest: +SKIP
    >>> build_report(store, "latest").write("report.html", "report.md")  # doctest: +SKIP
"""
from typing import Any

from adaptlab.report.render import render_decision

__all__ = ["Report", "build_report", "decision_for", "evidence_for", "load_analysis", "render_decision",
           "save_analysis"]


def __getattr__(name: str) -> Any:
    # The builder pulls in matplotlib and jinja2; load it only when a report is built.
    if name in ("Report", "build_report", "decision_for", "evidence_for", "load_analysis", "save_analysis"):
        from adaptlab.report import build

        return getattr(build, name)
    raise AttributeError(name)
