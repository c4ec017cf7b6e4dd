"""The study's cell runner (adaptlab.evaluate.cells): stored cells are read, missing ones trained and stored,
a screen is its own cell, and what it did comes back typed."""
from types import SimpleNamespace

import pytest

from adaptlab.data import TextDataset
from adaptlab.evaluate.cells import CellBatch, CellRunner
from adaptlab.evaluate.executor import JobFailure, JobsFailedError
from adaptlab.rungs import RungContext
from adaptlab.store import RunStore


class _Rung:
    def __init__(self, name):
        self.name = name

    def identity(self, context):
        return {"rung": self.name, "budget": repr(context.budget)}


class _Executor:
    """Trains every job at once, in order; ``fail`` names rungs whose jobs fail."""
    parallel = False

    def __init__(self, fail=()):
        self.trained, self.fail = [], set(fail)

    def run(self, jobs, full, *, on_result, say, primed, on_start):
        failures = []
        for job in jobs:
            on_start(job)
            if job.rung.name in self.fail:
                failures.append(JobFailure(job.key, job.rung.name, job.seed, 1, "boom"))
                continue
            self.trained.append((job.rung.name, job.seed))
            on_result(job, {"metrics": {"test": {"f1": 0.5 + job.seed / 10}, "cost": {"total_seconds": 2.0}},
                            "predictions": {"y_true": ["a"], "y_pred": ["a"]}, "manifest": {}})
        return failures


def _runner(tmp_path, executor, events, lines):
    full = TextDataset([f"text {i}" for i in range(8)], ["a", "b"] * 4)
    splits = {s: SimpleNamespace(fingerprint=f"split{s}", train=[0, 1, 2, 3], val=[4, 5]) for s in (0, 1)}

    def context_for(rung, seed, fidelity):
        return splits[seed], RungContext(classes=["a", "b"], budget=None if fidelity >= 1 else f"{fidelity:.0%}")

    return CellRunner(store=RunStore(tmp_path / "runs.sqlite"), executor=executor, full=full, splits=splits,
                      study_id="s1", positive=None, context_for=context_for, recompute=lambda rung, key: False,
                      recomputed=set(), resources_for=lambda name: None, say=lines.append, emit=events.append)


def test_missing_cells_are_trained_and_stored_then_read_back(tmp_path):
    events, lines = [], []
    tfidf, lora = _Rung("tfidf"), _Rung("lora")
    first = _runner(tmp_path, _Executor(), events, lines).run([(tfidf, 0, 1.0), (lora, 0, 0.25), (lora, 0, 1.0)])
    assert isinstance(first, CellBatch) and first.n_trained == 3 and first.cached == set()
    keys = [k for _r, _s, k, _f in first.grid]
    assert len(set(keys)) == 3  # the lora screen is a cell of its own, beside lora's full seed
    assert first.fidelity(keys[1]) == 0.25 and "lora seed 0 at 25% of its budget: test macro-F1=0.5000" in lines[1]
    assert [e.kind for e in events] == ["start", "done"] * 3 and events[3].fidelity == 0.25

    executor = _Executor()
    again = _runner(tmp_path, executor, events, lines).run([(lora, 0, 1.0), (lora, 1, 1.0)])
    assert executor.trained == [("lora", 1)] and again.n_trained == 1
    assert again.cached == {keys[2]} and again.results[keys[2]]["metrics"]["test"]["f1"] == 0.5
    assert "    lora seed 0: from the run store" in lines

    whole = CellBatch()
    whole.extend(first)
    whole.extend(again)
    assert len(whole.grid) == 5 and whole.n_trained == 4 and whole.cached == {keys[2]}


def test_a_failed_job_raises_after_the_others_are_stored(tmp_path):
    runner = _runner(tmp_path, _Executor(fail={"lora"}), [], [])
    with pytest.raises(JobsFailedError):
        runner.run([(_Rung("tfidf"), 0, 1.0), (_Rung("lora"), 0, 1.0)])
    assert _runner(tmp_path, _Executor(), [], []).run([(_Rung("tfidf"), 0, 1.0)]).n_trained == 0
