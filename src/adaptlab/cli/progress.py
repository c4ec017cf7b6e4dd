"""Progress of long commands on stderr, for people and for the scripts that read ``--json``.

Table mode prints the study's own progress lines (``_progress``) and, on a terminal, progress bars. With
``--json`` stdout holds one JSON document and nothing else, so the study would be silent for minutes:
:class:`CellLines` prints one plain line per (rung, seed) cell on stderr instead, naming what runs, its
estimate and what is left of the time budget. Where stderr is not a terminal (a pipe, a log file) no
progress bar is drawn: bars redraw themselves with carriage returns, which a log keeps as one long line.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator, Optional

#: Seconds between two plain progress lines of counted work (a log gets a line, not a flood).
PLAIN_EVERY = 10.0

__all__ = ["CellLines", "CountLines", "count_lines", "json_stdout", "progress_bars", "stderr_line"]


def progress_bars(json_out: bool) -> bool:
    """Whether a command draws progress bars (embedding, training): in table mode on a terminal only.

    Example:
        >>> progress_bars(True)
        False
    """
    if json_out:
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def count_lines(json_out: bool, what: str, unit: str = "rows") -> "Optional[CountLines]":
    """Plain :class:`CountLines` where no progress bar is drawn (``--json``, or stderr is not a terminal:
    a pipe, a log file), else None (the bar shows it).

    Example:
        >>> count_lines(True, "predict new.csv").what
        'predict new.csv'
    """
    return None if progress_bars(json_out) else CountLines(what, unit=unit)


def stderr_line(line: str) -> None:
    """One plain line on stderr, flushed (a pipe sees it now, not when the command ends)."""
    stream = sys.stderr
    stream.write(line + "\n")
    stream.flush()


@contextlib.contextmanager
def json_stdout(json_out: bool) -> Iterator[None]:
    """With ``--json``, what libraries print on stdout while the work runs goes to stderr instead.

    stdout must hold the one JSON document and nothing else; a library that prints (the transformers
    Trainer's loss dicts, a stray ``print``) would break every script that parses it. The JSON itself is
    written after the block, to the real stdout.

    Example:
        >>> import contextlib, io
        >>> err = io.StringIO()
        >>> with contextlib.redirect_stderr(err), json_stdout(True):
        ...     print("{'loss': 0.69}")
        >>> err.getvalue()
        "{'loss': 0.69}\\n"
    """
    if not json_out:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


class CountLines:
    """Plain progress lines for counted work (texts embedded, rows predicted): one every ``every`` seconds,
    with the share done and the time left at the rate so far, and one at the end.

    Where no terminal draws a bar (``--json``, a pipe, a log file) long work still says where it is, one
    line at a time, never a carriage return.

    Example:
        >>> t = iter([0.0, 20.0, 40.0])
        >>> lines = CountLines("embed big.csv", unit="texts", write=print, every=10.0, clock=lambda: next(t))
        >>> lines(2_000, total=8_000)
        embed big.csv: 2,000 of 8,000 texts (25%) in 20 s; about 60 s left
        >>> lines(8_000, total=8_000, final=True)
        embed big.csv: 8,000 texts in 40 s
    """

    def __init__(self, what: str, *, unit: str = "rows", write: Callable[[str], None] = stderr_line,
                 every: Optional[float] = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.unit, self.write, self.clock = what, unit, write, clock
        self.every = PLAIN_EVERY if every is None else every
        self.t0 = clock()
        self.last = self.t0

    def __call__(self, done: int, total: Optional[int] = None, *, fraction: Optional[float] = None,
                 final: bool = False) -> None:
        """Report ``done`` units (of ``total``, or a ``fraction`` of the work when the units are not what is
        counted, e.g. bytes read); printed when ``every`` seconds passed since the last line, or ``final``."""
        try:
            now = self.clock()
            if not final and now - self.last < self.every:
                return
            self.last = now
            spent = now - self.t0
            if final:
                self.write(f"{self.what}: {done:,} {self.unit} in {_dur(spent)}")
                return
            if fraction is None and total:
                fraction = done / total
            line = f"{self.what}: {done:,}" + (f" of {total:,}" if total else "") + f" {self.unit}"
            if fraction is not None and 0 < fraction <= 1:
                line += f" ({fraction:.0%}) in {_dur(spent)}; about {_dur(spent * (1 - fraction) / fraction)} left"
            else:
                line += f" in {_dur(spent)}"
            self.write(line)
        except Exception:  # noqa: BLE001 - a progress line must never stop the work
            pass


class CellLines:
    """``on_event`` of a study run with ``--json``: one plain line on stderr per cell.

    The line names the rung and seed (and the share of its training budget when below 1), its estimated
    seconds when the study was costed (``study.cost_estimates``, with a time budget) and, with a time budget,
    what is left of it by the wall clock since the study started (made just before ``study.run``, as the
    study's own clock starts there). Cells read from the run store say so.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> study = NS(config=NS(rungs=["tfidf", "lora"], seeds=3), time_budget=600.0,
        ...            cost_estimates={"lora": (0.0, 100.0)})
        >>> lines = CellLines(study, write=print, clock=lambda: 0.0)
        >>> lines.on_event(NS(kind="study", study_id="0123456789abcdef", rung=None, seed=None, fidelity=1.0))
        study 0123456789ab: rungs tfidf, lora; up to 3 seeds each; time budget 10.0 min
        >>> lines.on_event(NS(kind="start", study_id="0123456789abcdef", rung="lora", seed=0, fidelity=0.25))
        cell 1: lora seed 0 at 25% of its training budget — estimate ~25 s; 10.0 min of 10.0 min left
        >>> lines.on_event(NS(kind="start", study_id="0123456789abcdef", rung="lora", seed=1, fidelity=1.0))
        cell 2: lora seed 1 — estimate ~100 s; 10.0 min of 10.0 min left
        >>> lines.on_event(NS(kind="done", study_id="0123456789abcdef", rung="lora", seed=0, fidelity=0.25))
    """

    def __init__(self, study: Any, write: Callable[[str], None] = stderr_line,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.study = study
        self.write = write
        self.clock = clock
        # The study's wall clock (what its time budget counts) starts when it is run: right after this.
        self.t0 = clock()
        self.n = 0
        self.started: set[str] = set()

    def on_event(self, ev: Any) -> None:
        """Print the line of one :class:`~adaptlab.evaluate.study.StudyEvent` (``study``, ``start``, ``stored``)."""
        try:
            if ev.kind == "study":
                self.write(self._header(ev.study_id))
            elif ev.kind in ("start", "stored"):
                self.n += 1
                self.write(self._cell(ev))
        except Exception:  # noqa: BLE001 - a progress line must never stop the study
            pass

    def _header(self, study_id: str) -> str:
        cfg = self.study.config
        budget = getattr(self.study, "time_budget", None)
        seeds = f"up to {cfg.seeds} seeds each" if budget else f"{cfg.seeds} seeds each"
        line = f"study {study_id[:12]}: rungs {', '.join(cfg.rungs)}; {seeds}"
        return line + (f"; time budget {_dur(budget)}" if budget else "")

    def _cell(self, ev: Any) -> str:
        fidelity = getattr(ev, "fidelity", 1.0) or 1.0
        at = "" if fidelity >= 1.0 else f" at {fidelity:.0%} of its training budget"
        what = f"cell {self.n}: {ev.rung} seed {ev.seed}{at}"
        parts = []
        if ev.kind == "stored":
            what += " — from the run store"
        else:
            est = self._estimate(ev, fidelity)
            parts.append(f"estimate ~{_dur(est)}" if est is not None else "no estimate yet")
        self.started.add(ev.rung)
        budget = getattr(self.study, "time_budget", None)
        if budget:
            spent = self.clock() - self.t0
            parts.append(f"{_dur(max(budget - spent, 0.0))} of {_dur(budget)} left")
        return what + (" — " + "; ".join(parts) if parts else "")

    def _estimate(self, ev: Any, fidelity: float) -> Optional[float]:
        """The cell's estimated seconds: the event's own (where the study gives one), else the study's cost
        estimate of the rung (one-time seconds on its first cell, plus the seconds of a seed at this share)."""
        own = getattr(ev, "estimate_seconds", None)
        if own is not None:
            return float(own)
        cost = (getattr(self.study, "cost_estimates", None) or {}).get(ev.rung)
        if cost is None:
            return None
        first = ev.rung not in self.started
        if hasattr(cost, "estimate"):
            return float(cost.estimate(fidelity, first=first))
        one, per = cost
        return float((one if first else 0.0) + per * fidelity)


def _dur(seconds: float) -> str:
    """A duration as the other lines say it; a tenth of a second under 10 s (a tiny model's cell is ~0.4 s)."""
    from adaptlab.config import format_duration

    return format_duration(seconds, (1, 1, 1) if seconds < 10 else (0, 1, 1))
