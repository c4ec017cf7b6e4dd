"""A study in a notebook: its rungs as a pandas DataFrame, its HTML view, and progress shown by default.

Jupyter shows an object through its ``_repr_html_``; :class:`~adaptlab.evaluate.StudyResult` gets one here
(and :class:`~adaptlab.decide.Decision` builds on :func:`html_table`). A :class:`~adaptlab.evaluate.Study`
made in a notebook without ``show_progress`` shows its progress there: a bar over the (rung, seed) cells
(``tqdm.auto``: a widget in Jupyter) and the embedding and training bars, as a terminal would.
"""
from __future__ import annotations

import html
import sys
from typing import Any, Iterable, Optional, Sequence

__all__ = ["html_table", "in_notebook", "study_frame", "study_html", "widget_bars", "CellBar"]

# Columns of StudyResult.to_frame(), in order; a rung that lacks one (no fidelity) leaves it empty.
_FRAME_COLUMNS = ("summary", "n_seeds", "mean", "std", "ci_low", "ci_high", "val_f1_mean", "accuracy_mean",
                  "fit_seconds_mean", "fidelity", "auprc_mean", "leakage_inflation", "f1_by_seed")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), where progress is shown by default.

    Example:
        >>> in_notebook()
        False
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - an odd IPython is not a notebook
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def widget_bars() -> bool:
    """Whether ``tqdm.auto`` can draw its notebook widget (``ipywidgets`` is installed): the embedding and
    training bars are turned on by default in a notebook only then, as without it they cannot be drawn.

    Example:
        >>> isinstance(widget_bars(), bool)
        True
    """
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


def study_frame(result: Any, per_seed: bool = False) -> Any:
    """The study's rungs as a :class:`pandas.DataFrame`, one row per rung (index ``rung``); with
    ``per_seed=True`` one row per (rung, seed) run with its test and validation F1 and fit seconds.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> r = NS(rows=[{"rung": "probe", "n_seeds": 3, "mean": 0.8, "std": 0.01, "ci_low": 0.77, "ci_high": 0.83}],
        ...        per_seed=[])
        >>> frame = study_frame(r)
        >>> int(frame.loc["probe", "n_seeds"]), float(frame.loc["probe", "mean"])
        (3, 0.8)
    """
    import pandas as pd

    if per_seed:
        rows = [{"rung": p.get("rung"), "seed": p.get("seed"), "fidelity": p.get("fidelity", 1.0),
                 "test_f1": (p.get("test") or {}).get("f1"), "val_f1": (p.get("val") or {}).get("f1"),
                 "fit_seconds": (p.get("cost") or {}).get("fit_seconds")} for p in result.per_seed or []]
        return pd.DataFrame(rows, columns=["rung", "seed", "fidelity", "test_f1", "val_f1", "fit_seconds"])
    rows = [{"rung": r["rung"], **{c: r.get(c) for c in _FRAME_COLUMNS}} for r in result.rows]
    frame = pd.DataFrame(rows, columns=["rung", *_FRAME_COLUMNS]).set_index("rung")
    # Columns no rung has (no screened rung, no positive class) say nothing: drop them.
    return frame.drop(columns=[c for c in ("fidelity", "auprc_mean", "leakage_inflation") if frame[c].isna().all()])


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]], table_id: Optional[str] = None) -> str:
    """An HTML table of already formatted cells, every cell escaped.

    Example:
        >>> html_table(["rung", "F1"], [["probe", "<0.81>"]])[-67:]
        '<tbody><tr><td>probe</td><td>&lt;0.81&gt;</td></tr></tbody></table>'
    """
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    attr = f' id="{html.escape(table_id)}"' if table_id else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _f(x: Any, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def study_html(result: Any) -> str:
    """The HTML a notebook shows for a :class:`~adaptlab.evaluate.StudyResult`: what ran on what, the rung
    table (mean ± std over seeds and the 95% band) and the warnings.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> r = NS(name="demo", study_id="0123456789abcdef", metric="macro-F1", n_train_pool=80, n_test=20,
        ...        classes=["a", "b"], split={"strategy": "stratified"}, n_trained=3, n_from_store=0,
        ...        wall_seconds=1.5, warnings=[], rows=[{"rung": "probe", "n_seeds": 3, "mean": 0.8, "std": 0.01,
        ...        "ci_low": 0.77, "ci_high": 0.83, "fit_seconds_mean": 0.2}])
        >>> "<td>0.8000 ± 0.0100</td>" in study_html(r)
        True
    """
    esc = html.escape
    split = (result.split or {}).get("strategy", "?")
    head = (f"<p><b>{esc(str(result.name))}</b> · study <code>{esc(result.study_id[:12])}</code> · "
            f"{esc(result.metric)} on "
            f"{result.n_test} sealed test texts ({esc(split)} split, {result.n_train_pool} in the train/validation "
            f"pool; classes {esc(', '.join(map(str, result.classes)))})</p>")
    rows = []
    for r in result.rows:
        at = f" @{r['fidelity']:.0%}" if r.get("fidelity") is not None and r["fidelity"] < 1 else ""
        rows.append([r["rung"] + at, r["n_seeds"], f"{_f(r['mean'])} ± {_f(r['std'])}",
                     f"[{_f(r.get('ci_low'))}, {_f(r.get('ci_high'))}]", _f(r.get("fit_seconds_mean"), 1)])
    table = html_table(["rung", "seeds", f"{result.metric} mean ± std", "95% band (seeds and test)", "fit s"], rows,
                       "study-rungs")
    notes = "".join(f"<li>{esc(str(w))}</li>" for w in (result.warnings or []))
    tail = (f"<p>{result.n_trained} run(s) trained, {result.n_from_store} read from the run store, "
            f"{result.wall_seconds:.1f} s. <code>result.to_frame()</code> has the numbers; "
            f"<code>adaptlab.decide</code> the decision.</p>")
    return head + table + (f"<ul>{notes}</ul>" if notes else "") + tail


class CellBar:
    """A progress bar over a study's (rung, seed) cells (``tqdm.auto``: a widget in a notebook), fed by the
    study's events; a cell read from the run store counts as done.

    Example:
        >>> import io
        >>> from types import SimpleNamespace as NS
        >>> bar = CellBar(total=2, file=io.StringIO())
        >>> bar.on_event(NS(kind="done", rung="tfidf", seed=0, fidelity=1.0))
        >>> bar.n
        1
    """

    def __init__(self, total: int, **tqdm_kwargs: Any) -> None:
        from tqdm.auto import tqdm

        try:
            self.bar = tqdm(total=total, desc="study cells", unit="cell", **tqdm_kwargs)
        except ImportError:  # a notebook without ipywidgets: tqdm.auto cannot draw its widget
            from tqdm import tqdm as text_tqdm

            self.bar = text_tqdm(total=total, desc="study cells", unit="cell", **tqdm_kwargs)

    @property
    def n(self) -> int:
        """Cells finished or read from the store so far."""
        return int(self.bar.n)

    def on_event(self, ev: Any) -> None:
        """Advance on a finished or stored cell; name the cell that starts."""
        try:
            if ev.kind in ("done", "stored"):
                self.bar.update(1)
            elif ev.kind == "start":
                at = "" if (getattr(ev, "fidelity", 1.0) or 1.0) >= 1.0 else f" @{ev.fidelity:.0%}"
                self.bar.set_postfix_str(f"{ev.rung} seed {ev.seed}{at}", refresh=True)
        except Exception:  # noqa: BLE001 - a progress bar must never stop the study
            pass

    def close(self) -> None:
        """Close the bar (the study ended, or stopped)."""
        self.bar.close()
