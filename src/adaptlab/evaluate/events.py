"""What a running study tells live views and scripts: one :class:`StudyEvent` per step.

Kept apart from :mod:`adaptlab.evaluate.study` so the cell runner (:mod:`adaptlab.evaluate.cells`), which
emits most of them, needs nothing of the study itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["StudyEvent"]


@dataclass(frozen=True)
class StudyEvent:
    """One step of a running study, for live views (the web app) and scripts; ``progress`` has the same as text.

    ``kind``: ``"study"`` (the study id is known and the study is stored; the grid starts), ``"stored"``
    (a (rung, seed) cell read from the run store), ``"start"`` (a cell starts training; on Ray: handed to
    the cluster) or ``"done"`` (a cell finished and is stored; ``f1`` on the sealed test, ``seconds``).

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.evaluate import Study
        >>> texts = ([f"goal match team player {i}" for i in range(30)]
        ...          + [f"chip software data server {i}" for i in range(30)])
        >>> data = TextDataset(texts, ["sport"] * 30 + ["tech"] * 30)
        >>> events = []
        >>> _ = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home="runs").run(data, on_event=events.append)
        >>> [(e.kind, e.rung, e.seed) for e in events]
        [('study', None, None), ('start', 'tfidf', 0), ('done', 'tfidf', 0), ('start', 'tfidf', 1), ('done', 'tfidf', 1)]
    """

    kind: str
    study_id: str
    rung: Optional[str] = None
    seed: Optional[int] = None
    n_train: Optional[int] = None
    f1: Optional[float] = None
    seconds: Optional[float] = None
    fidelity: float = 1.0  # share of its training budget the cell runs with (< 1: a decision-driven screen)
    key: Optional[str] = None  # the cell's result key in the run store
