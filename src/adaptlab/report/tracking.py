"""The decision and the HTML report of a tracked study, logged to its tracker's parent run.

`adaptlab.evaluate.tracking` logs the study and its (rung, seed) cells while they run; the decision
comes later, from the decide stage, and the report from this one, so they are added here.

Example:
    >>> study = Study(StudyConfig(rungs=["tfidf", "probe"], seeds=3), track="mlflow")  # doctest: +SKIP
    >>> result = study.run(data)  # doctest: +SKIP
    >>> track_decision(study, result.study_id).status  # decision tags + report.html on the parent run  # doctest: +SKIP
    'ship'
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Optional

from adaptlab.decide import Decision, Policy
from adaptlab.errors import ConfigError


def track_decision(study: Any, study_id: str, *, policy: Optional[Policy] = None) -> Decision:
    """Decide on the stored study and log the decision, ``report.html`` and the final ``study.json``
    (with the study's diagnostics) to ``study.tracker``'s parent run; return the decision.

    Example:
        >>> from mlflow.tracking import MlflowClient
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.evaluate import Study
        >>> from adaptlab.evaluate.tracking import MlflowTracker
        >>> from adaptlab.report.tracking import track_decision
        >>> texts = ([f"goal match team player {i}" for i in range(30)]
        ...          + [f"chip software data server {i}" for i in range(30)])
        >>> data = TextDataset(texts, ["sport"] * 30 + ["tech"] * 30)
        >>> study = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home="runs", track=MlflowTracker("mlruns"))
        >>> result = study.run(data)
        >>> decision = track_decision(study, result.study_id)
        >>> run = MlflowClient(study.tracker.uri).get_run(study.tracker.run_id)
        >>> run.data.tags["adaptlab.decision.status"] == decision.status
        True
        >>> sorted(a.path for a in MlflowClient(study.tracker.uri).list_artifacts(run.info.run_id))
        ['decision.json', 'report.html', 'study.json']
    """
    from adaptlab.report.build import build_report

    if getattr(study, "tracker", None) is None:
        raise ConfigError("this study has no tracker: create it with Study(..., track=\"mlflow\").")
    report = build_report(study.store, study_id, policy=policy, home=study.home)
    summary = study.store.get_study(study_id)["summary"]
    with tempfile.TemporaryDirectory() as tmp:
        html, _ = report.write(Path(tmp) / "report.html")
        summary_file = Path(tmp) / "study.json"
        summary_file.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        study.tracker.log_decision(report.decision.to_dict(), [html, summary_file])
    return report.decision
