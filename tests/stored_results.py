"""What a study left in its run store, comparable across executors (shared by the Ray tests)."""
from pathlib import Path

from adaptlab.store import RunStore


def stored(home: Path, study_id: str) -> dict[tuple[str, int], dict]:
    """Every stored result of a study by (rung, seed), without the wall-clock costs (which differ by run)."""
    out = {}
    for r in RunStore(home / "runs.sqlite").study_results(study_id):
        metrics = {k: v for k, v in r["metrics"].items() if k != "cost"}
        out[(r["rung"], r["seed"])] = {"metrics": metrics, "predictions": r["predictions"],
                                       "test_reads": r["manifest"]["test_reads"]}
    return out
