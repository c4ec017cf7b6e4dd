"""The study's cell runner: each (rung, seed, fidelity) cell is read from the run store or trained.

A cell's result key is its content (data, split, the rung's identity under the cell's budget, seed), so
an interrupted study resumes and an identical one is answered from the store. Cells another study is
training right now (a lease in the store) are waited for, or taken over when their owner died. Only the
driver writes the run store, whichever executor trained the cell. The fixed grid and the
decision-driven study (:mod:`adaptlab.evaluate.adaptive`) both run their cells through one
:class:`CellRunner`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from adaptlab.evaluate.events import StudyEvent
from adaptlab.evaluate.executor import Job, JobsFailedError, shared_artifact_key
from adaptlab.rungs import RungContext
from adaptlab.store import content_key
from adaptlab.store.leases import CellLeases

__all__ = ["Cell", "CellBatch", "CellRunner", "RESULT_SCHEMA"]

RESULT_SCHEMA = 1
Cell = tuple[Any, int, float]  # (rung, seed, fidelity): fidelity < 1 trains under that share of the budget
Progress = Callable[[str], None]


@dataclass
class CellBatch:
    """What :meth:`CellRunner.run` did with a list of cells.

    ``grid``: one ``(rung, seed, result key, fidelity)`` per cell, in the order asked; ``results``: result
    key -> ``{"metrics", "predictions"}``; ``cached``: the keys read from the run store; ``n_trained``:
    how many cells this run trained.

    Example:
        >>> batch = CellBatch()
        >>> (batch.grid, batch.results, batch.cached, batch.n_trained)
        ([], {}, set(), 0)
    """

    grid: list[tuple[Any, int, str, float]] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached: set[str] = field(default_factory=set)
    n_trained: int = 0
    _fidelity: dict[str, float] = field(default_factory=dict, repr=False)

    def add(self, rung: Any, seed: int, key: str, fidelity: float) -> None:
        """One more cell of the grid."""
        self.grid.append((rung, seed, key, fidelity))
        self._fidelity[key] = fidelity

    def extend(self, other: "CellBatch") -> None:
        """Add ``other``'s cells (a later round of the same study)."""
        for cell in other.grid:
            self.add(*cell)
        self.results.update(other.results)
        self.cached |= other.cached
        self.n_trained += other.n_trained

    def fidelity(self, key: str) -> float:
        """The fidelity of the cell whose result key is ``key``."""
        return self._fidelity[key]


@dataclass
class CellRunner:
    """Reads each cell of a study from the run store or has the executor train it, and stores what it trains.

    ``context_for(rung, seed, fidelity)`` gives the cell's split and :class:`~adaptlab.rungs.RungContext`
    (the study's budget, encoder and unlabeled texts for that seed); ``recompute(rung, key)`` whether a
    stored cell is trained again; ``recomputed`` collects the keys trained again, so a second read in the
    same study takes them from the store. ``say`` gets progress lines, ``emit`` the study's events;
    ``says_waits`` whether a wait for another study's cell is said (``--json`` keeps it on stderr anyway).

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.evaluate import Study
        >>> texts = [f"goal match {i}" for i in range(20)] + [f"chip data {i}" for i in range(20)]
        >>> data = TextDataset(texts, ["sport"] * 20 + ["tech"] * 20)
        >>> config = StudyConfig(rungs=["tfidf"], seeds=2, n_boot=100, name="cells")
        >>> first = Study(config, home="runs").run(data)
        >>> (first.n_trained, first.n_from_store)
        (2, 0)
        >>> again = Study(config, home="runs").run(data)  # every cell read back from the run store
        >>> (again.n_trained, again.n_from_store)
        (0, 2)
    """

    store: Any
    executor: Any
    full: Any
    splits: dict[int, Any]
    study_id: str
    positive: Optional[str]
    context_for: Callable[[Any, int, float], tuple[Any, RungContext]]
    recompute: Callable[[Any, str], bool]
    recomputed: set[str]
    resources_for: Callable[[str], Any]
    lease_options: dict[str, Any] = field(default_factory=dict)
    primed: Optional[dict[str, Any]] = None
    say: Progress = lambda _msg: None
    emit: Callable[[StudyEvent], None] = lambda _ev: None
    says_waits: bool = True

    def run(self, cells: list[Cell]) -> CellBatch:
        """Read or train ``cells``; returns the :class:`CellBatch` (raises ``JobsFailedError`` if a job fails)."""
        with CellLeases(self.store, **self.lease_options) as leases:
            return self._run(cells, leases)

    def _run(self, cells: list[Cell], leases: CellLeases) -> CellBatch:
        batch = CellBatch()
        jobs: list[Job] = []
        deferred: dict[str, tuple[Any, int, Any, RungContext]] = {}  # cells another study is training now
        for rung, seed, fidelity in cells:
            split, context = self.context_for(rung, seed, fidelity)
            key = content_key("result", RESULT_SCHEMA, self.full.content_hash, split.fingerprint,
                              rung.identity(context), seed, self.positive)
            batch.add(rung, seed, key, fidelity)
            stored = self._claim(key, rung, leases)
            if stored is False:
                deferred[key] = (rung, seed, split, context)  # read (or taken over) once ours are done
            elif stored is not None:
                self._take_stored(batch, key, stored, rung, seed)
            else:
                jobs.append(self._job(len(jobs), key, rung, seed, split, context))
        while True:
            self._train(batch, jobs, leases)
            if not deferred:
                return batch
            jobs = self._await_deferred(batch, deferred, leases)
            deferred = {}

    def _claim(self, key: str, rung: Any, leases: CellLeases) -> Any:
        """The stored result of ``key``; None when this study trains it (leased); False when another does."""
        redo = self.recompute(rung, key)
        stored = None if redo else self.store.get_result(key)
        if stored is None and not leases.claim(key):
            return False
        if stored is None and not redo:
            stored = self.store.get_result(key)  # stored by another study since the first read
            if stored is not None:
                leases.release(key)
        return stored

    def _take_stored(self, batch: CellBatch, key: str, stored: dict[str, Any], rung: Any, seed: int) -> None:
        fidelity = batch.fidelity(key)
        batch.cached.add(key)
        self.emit(StudyEvent("stored", self.study_id, rung.name, seed, f1=float(stored["metrics"]["test"]["f1"]),
                             fidelity=fidelity, key=key))
        self.say(f"{rung.name:>8} seed {seed}{_at(fidelity)}: from the run store")
        self.store.link_result(self.study_id, key)
        batch.results[key] = stored

    def _job(self, index: int, key: str, rung: Any, seed: int, split: Any, context: RungContext) -> Job:
        group = None
        if self.executor.parallel:
            group = shared_artifact_key(rung, self.full.subset(split.train), self.full.subset(split.val), seed,
                                        context)
        return Job(index=index, key=key, rung=rung, seed=seed, split=split, context=context, group=group,
                   resources=self.resources_for(rung.name))

    def _train(self, batch: CellBatch, jobs: list[Job], leases: CellLeases) -> None:
        def on_result(job: Job, out: dict[str, Any]) -> None:
            self.store.put_result(job.key, rung=job.rung.name, seed=job.seed, metrics=out["metrics"],
                                  predictions=out["predictions"], manifest=out["manifest"])
            self.store.link_result(self.study_id, job.key)
            self.recomputed.add(job.key)
            leases.release(job.key)  # stored: a study waiting for this cell reads it now
            batch.results[job.key] = {"metrics": out["metrics"], "predictions": out["predictions"]}
            self._said_done(job, out["metrics"], batch.fidelity(job.key))

        def on_start(job: Job) -> None:
            self.emit(StudyEvent("start", self.study_id, job.rung.name, job.seed, n_train=len(job.split.train),
                                 fidelity=batch.fidelity(job.key), key=job.key))

        failures = self.executor.run(jobs, self.full, on_result=on_result, say=self.say, primed=self.primed or None,
                                     on_start=on_start)
        if failures:
            raise JobsFailedError(failures, n_done=len(batch.results))
        batch.n_trained += len(jobs)

    def _said_done(self, job: Job, metrics: dict[str, Any], fidelity: float) -> None:
        # The event first: a progress callback may stop the study (cancel) once the cell is stored.
        f1, seconds = float(metrics["test"]["f1"]), float(metrics["cost"]["total_seconds"])
        self.emit(StudyEvent("done", self.study_id, job.rung.name, job.seed, f1=f1, seconds=seconds,
                             fidelity=fidelity, key=job.key))
        self.say(f"{job.rung.name:>8} seed {job.seed}{_at(fidelity)}: test {'F1' if self.positive else 'macro-F1'}="
                 f"{f1:.4f} ({seconds:.1f}s)")

    def _await_deferred(self, batch: CellBatch, deferred: dict[str, tuple[Any, int, Any, RungContext]],
                        leases: CellLeases) -> list[Job]:
        """Cells another study was training: read their results; the jobs for those whose owner died."""
        found, claimed = leases.await_cells(list(deferred), self.say if self.says_waits else None)
        for key, stored in found.items():
            rung, seed, _split, _context = deferred[key]
            self._take_stored(batch, key, stored, rung, seed)
        jobs = []
        for key in claimed:
            rung, seed, split, context = deferred[key]
            self.say(f"{rung.name:>8} seed {seed}: its other study stopped without a result; training it here")
            jobs.append(self._job(len(jobs), key, rung, seed, split, context))
        return jobs


def _at(fidelity: float) -> str:
    return "" if fidelity >= 1.0 else f" at {fidelity:.0%} of its budget"
