"""Experiment tracking: a study's runs in MLflow, where teams keep their experiments (opt-in).

Nothing is logged unless asked: ``Study(config, track="mlflow")`` or ``adaptlab study run --track mlflow``.
The study becomes one parent run (its configuration as params, the band of every rung as metrics, and,
once decided, the decision as tags and the HTML report as an artifact, see
:func:`adaptlab.report.tracking.track_decision`); each (rung, seed) cell becomes a child run with the
rung's configuration as params, its test/validation scores, cost and scalar diagnostics as metrics, the
training history (the loss curve) as stepped metrics and the stored record as ``result.json``. Cells read
from the run store are logged too (tag ``adaptlab.source=store``), so every parent run is complete.

Where: ``uri``, else ``$ADAPTLAB_TRACKING_URI``, else ``./mlruns``, a local MLflow file store (one folder
per experiment, one per run, the artifacts inside the run's folder). MLflow 3.x keeps its file store in
maintenance mode and opens it only when ``MLFLOW_ALLOW_FILE_STORE=true``; adaptlab sets that variable (if
unset) when it logs to a file store, and ``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri ./mlruns``
browses it. A plain path is a file store too; ``sqlite:///mlflow.db`` (MLflow's recommended backend) and
``http://host:port`` (a tracking server) are used as given.

The runs are written through :class:`mlflow.tracking.MlflowClient` with explicit run ids: no global active
run is started, so a script's own ``mlflow.start_run()`` is left alone.

Example:
    >>> from adaptlab.config import StudyConfig
    >>> from adaptlab.evaluate import Study
    >>> study = Study(StudyConfig(rungs=["tfidf"], seeds=3), track="mlflow")  # doctest: +SKIP
    >>> result = study.run(data)  # doctest: +SKIP
    >>> study.tracker.run_id  # the parent run  # doctest: +SKIP
    '3f2a...'
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, runtime_checkable
from urllib.parse import urlparse

from adaptlab.cancel import Cancelled
from adaptlab.errors import ConfigError

if TYPE_CHECKING:
    from adaptlab.evaluate.events import StudyEvent
    from adaptlab.evaluate.study import StudyResult

TRACKING_ENV = "ADAPTLAB_TRACKING_URI"
DEFAULT_DIR = "mlruns"
# MLflow 3.x refuses its file store unless this variable is true.
FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"
TRACKERS = ("mlflow",)
# MLflow's batch limits (log_batch): at most this many of each per call.
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}
# Training-history fields logged as stepped metrics (the loss curve and its validation F1).
HISTORY_METRICS = ("train_loss", "val_loss", "train_f1", "val_f1")


@runtime_checkable
class Tracker(Protocol):
    """What a study tells an experiment tracker; :class:`MlflowTracker` is the one adaptlab ships.

    An object with these four methods can be given as ``Study(..., track=obj)`` (e.g. for W&B).

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.evaluate import Study
        >>> from adaptlab.evaluate.tracking import Tracker
        >>> class Printer:  # a tracker of your own (W&B, TensorBoard, a database): these four methods
        ...     def start_study(self, study): print("study", study["name"])
        ...     def log_cell(self, event, stored, rung_config): print("cell", event.rung, event.seed)
        ...     def end_study(self, result, error=None): print("end", result.rows[0]["rung"], error)
        ...     def log_decision(self, decision, artifacts): print("decision", decision["status"])
        >>> isinstance(Printer(), Tracker)
        True
        >>> texts = ([f"goal match team player {i}" for i in range(30)]
        ...          + [f"chip software data server {i}" for i in range(30)])
        >>> data = TextDataset(texts, ["sport"] * 30 + ["tech"] * 30)
        >>> _ = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200, name="demo"), home="runs", track=Printer()).run(data)
        study demo
        cell tfidf 0
        cell tfidf 1
        end tfidf None
    """

    def start_study(self, study: dict[str, Any]) -> None:
        """The study is stored (``study``: the run store's record: id, name, config, data hash)."""

    def log_cell(self, event: "StudyEvent", stored: dict[str, Any], rung_config: dict[str, Any]) -> None:
        """One (rung, seed) cell, trained now (``event.kind == "done"``) or read from the store."""

    def end_study(self, result: Optional["StudyResult"], error: Optional[BaseException] = None) -> None:
        """The study finished (``result``) or stopped (``error``)."""

    def log_decision(self, decision: dict[str, Any], artifacts: list[Path]) -> None:
        """The decision (``Decision.to_dict()``) and files to keep with the study (the HTML report)."""


def tracking_uri(uri: Optional[str] = None) -> str:
    """Where runs go: ``uri``, else ``$ADAPTLAB_TRACKING_URI``, else the file store ``./mlruns``.

    A plain path becomes an absolute ``file:`` URI (MLflow would read it as a file store anyway; the
    absolute form still names the same folder if the working directory changes).

    Example:
        >>> tracking_uri("http://127.0.0.1:5000")
        'http://127.0.0.1:5000'
        >>> tracking_uri().startswith("file:///") and tracking_uri().endswith("/mlruns")
        True
        >>> tracking_uri("team-runs") == (Path.cwd() / "team-runs").as_uri()
        True
    """
    chosen = uri or os.environ.get(TRACKING_ENV) or DEFAULT_DIR
    if is_file_store(chosen) and not chosen.startswith("file:"):
        return Path(chosen).resolve().as_uri()
    return chosen


def is_file_store(uri: str) -> bool:
    """Whether MLflow reads ``uri`` as its file store: a ``file:`` URI or a plain path (no scheme).

    Example:
        >>> is_file_store("./mlruns"), is_file_store("file:///tmp/mlruns")
        (True, True)
        >>> is_file_store("sqlite:///mlflow.db"), is_file_store("http://127.0.0.1:5000")
        (False, False)
    """
    scheme = urlparse(uri).scheme
    # A one-letter scheme is a Windows drive (C:\runs), a path.
    return scheme in ("", "file") or len(scheme) == 1


def make_tracker(track: "str | Tracker | None", *, uri: Optional[str] = None,
                 experiment: str = "adaptlab") -> Optional[Tracker]:
    """``None`` / ``"none"``: no tracking; ``"mlflow"``: an :class:`MlflowTracker`; a tracker object as is.

    Example:
        >>> make_tracker(None) is None
        True
        >>> make_tracker("wandb")
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: track='wandb' is not valid: expected mlflow (or a tracker object with start_study, log_cell, end_study and log_decision).
    """
    if track is None or track == "none" or track == "":
        return None
    if isinstance(track, str):
        if track.lower() == "mlflow":
            return MlflowTracker(uri=uri, experiment=experiment)
        raise ConfigError.invalid("track", track, " | ".join(TRACKERS) + " (or a tracker object with start_study, "
                                  "log_cell, end_study and log_decision)")
    if isinstance(track, Tracker):
        return track
    raise ConfigError.invalid("track", type(track).__name__, "mlflow or a tracker object with start_study, log_cell, "
                              "end_study and log_decision")


# -- turning adaptlab records into flat MLflow keys and values -----------------------------------------
def _key(name: str) -> str:
    # MLflow keys take letters, digits, _ - . space and /; anything else becomes _.
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)[:250]


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``a.b.c`` keys; lists and other leaves are kept as values.

    Example:
        >>> flatten({"test": {"f1": 0.9}, "seed": 1})
        {'test.f1': 0.9, 'seed': 1}
    """
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1] if prefix.endswith(".") else prefix: obj}


def scalar_metrics(obj: Any, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a nested record (bools as 0/1; text, lists and None left out).

    Example:
        >>> scalar_metrics({"test": {"f1": 0.9, "note": "x"}, "ok": True, "h": [1, 2]}, "m.")
        {'m.test.f1': 0.9, 'm.ok': 1.0}
    """
    out = {}
    for k, v in flatten(obj).items():
        if isinstance(v, bool):
            out[_key(prefix + k)] = float(v)
        elif isinstance(v, (int, float)) and not (isinstance(v, float) and math.isinf(v)):
            out[_key(prefix + k)] = float(v)
    return out


def param_values(obj: Any, prefix: str = "") -> dict[str, str]:
    """Every leaf of a nested configuration as a string param (lists and None as JSON).

    Example:
        >>> from adaptlab.evaluate.tracking import param_values
        >>> param_values({"rungs": ["tfidf", "probe"], "split": {"test_size": 0.2, "group": None}}, prefix="config.")
        {'config.rungs': '["tfidf", "probe"]', 'config.split.test_size': '0.2', 'config.split.group': 'null'}
    """
    out = {}
    for k, v in flatten(obj).items():
        out[_key(prefix + k)] = v if isinstance(v, str) else json.dumps(v, default=str)
    return out


def history_points(history: Any) -> list[tuple[str, float, int]]:
    """(metric, value, step) of a training history (``diagnostics["history"]``): the loss curve.

    Example:
        >>> history_points([{"step": 8, "train_loss": 0.9, "val_loss": 1.0, "val_f1": 0.5, "train_f1": None}])
        [('train_loss', 0.9, 8), ('val_loss', 1.0, 8), ('val_f1', 0.5, 8)]
    """
    points = []
    for i, entry in enumerate(history if isinstance(history, list) else []):
        if not isinstance(entry, dict):
            continue
        step = int(entry.get("step", i) or 0)
        for name in HISTORY_METRICS:
            v = entry.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                points.append((name, float(v), step))
    return points


# -- the MLflow tracker ---------------------------------------------------------------------------------
class MlflowTracker:
    """Logs a study to MLflow: the study as a parent run, each (rung, seed) cell as a child run.

    ``uri``: see :func:`tracking_uri`; ``experiment``: the MLflow experiment (created when missing).
    ``run_id`` is the parent run of the last study started, ``child_run_ids`` its cells' runs by result key.

    Example:
        >>> from mlflow.tracking import MlflowClient
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.evaluate import Study
        >>> from adaptlab.evaluate.tracking import MlflowTracker
        >>> texts = ([f"goal match team player {i}" for i in range(30)]
        ...          + [f"chip software data server {i}" for i in range(30)])
        >>> data = TextDataset(texts, ["sport"] * 30 + ["tech"] * 30)
        >>> tracker = MlflowTracker(uri="./mlruns", experiment="bbc-news")     # a local MLflow file store
        >>> result = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home="runs", track=tracker).run(data)
        >>> run = MlflowClient(tracker.uri).get_run(tracker.run_id)
        >>> run.data.metrics["tfidf.mean"] == result.row("tfidf")["mean"], len(tracker.child_run_ids)
        (True, 2)
    """

    def __init__(self, uri: Optional[str] = None, experiment: str = "adaptlab") -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise ConfigError("tracking with MLflow needs the mlflow package: pip install 'adaptlab[track]'.") from exc
        self.uri = tracking_uri(uri)
        self.experiment = experiment
        self.run_id: Optional[str] = None
        self.child_run_ids: dict[str, str] = {}
        if is_file_store(self.uri):
            # MLflow 3.x opens its file store (the ./mlruns default) only for those who opt in; a user's own
            # setting of the variable wins.
            os.environ.setdefault(FILE_STORE_ENV, "true")
        self._client = MlflowClient(tracking_uri=self.uri)
        self._experiment_id: Optional[str] = None

    @property
    def client(self) -> Any:
        """The :class:`mlflow.tracking.MlflowClient` the runs are written with."""
        return self._client

    def _experiment(self) -> str:
        if self._experiment_id is None:
            try:
                exp = self._client.get_experiment_by_name(self.experiment)
                self._experiment_id = exp.experiment_id if exp is not None else self._client.create_experiment(
                    self.experiment)
            except Exception as exc:  # an unreachable server, a bad URI: say where and how to fix it
                raise ConfigError(f"cannot reach the MLflow tracking store at {self.uri}: {exc}. Check --tracking-uri "
                                  f"/ ${TRACKING_ENV} (e.g. http://127.0.0.1:5000, ./mlruns).") from exc
        return self._experiment_id

    def _log(self, run_id: str, metrics: dict[str, float] | None = None, params: dict[str, str] | None = None,
             steps: list[tuple[str, float, int]] | None = None) -> None:
        from mlflow.entities import Metric, Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        now = int(time.time() * 1000)
        ms = [Metric(k, v, now, 0) for k, v in (metrics or {}).items()]
        ms += [Metric(k, v, now, s) for k, v, s in (steps or [])]
        ps = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in (params or {}).items()]
        for i in range(0, max(len(ms), 1), _BATCH["metrics"]):
            chunk_m = ms[i:i + _BATCH["metrics"]]
            chunk_p = ps[:_BATCH["params"]] if i == 0 else []
            self._client.log_batch(run_id, metrics=chunk_m, params=chunk_p)
        for j in range(_BATCH["params"], len(ps), _BATCH["params"]):
            self._client.log_batch(run_id, params=ps[j:j + _BATCH["params"]])

    def _log_json(self, run_id: str, name: str, payload: Any) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
            self._client.log_artifact(run_id, str(path))

    def start_study(self, study: dict[str, Any]) -> None:
        """Open the parent run: the study's configuration as params, its id and data hash as tags."""
        tags = {"adaptlab.kind": "study", "adaptlab.study_id": study["study_id"],
                "adaptlab.data_hash": str(study.get("data_hash") or "")}
        run = self._client.create_run(self._experiment(), run_name=study.get("name") or study["study_id"][:12],
                                      tags=tags)
        self.run_id, self.child_run_ids = run.info.run_id, {}
        self._log(self.run_id, params=param_values(study.get("config") or {}))

    def log_cell(self, event: "StudyEvent", stored: dict[str, Any], rung_config: dict[str, Any]) -> None:
        """One child run per (rung, seed) cell: params, metrics, the loss curve and ``result.json``."""
        if self.run_id is None:
            raise RuntimeError("log_cell before start_study")
        metrics, manifest = stored.get("metrics") or {}, stored.get("manifest") or {}
        at = "" if event.fidelity >= 1.0 else f" @{event.fidelity:.0%}"
        tags = {"mlflow.parentRunId": self.run_id, "adaptlab.kind": "cell", "adaptlab.study_id": event.study_id,
                "adaptlab.rung": str(event.rung), "adaptlab.seed": str(event.seed),
                "adaptlab.result_key": str(event.key), "adaptlab.source": "trained" if event.kind == "done" else "store"}
        run = self._client.create_run(self._experiment(), run_name=f"{event.rung} seed {event.seed}{at}", tags=tags)
        run_id = run.info.run_id
        split = manifest.get("split") or {}
        params = {"rung": str(event.rung), "seed": str(event.seed), "fidelity": str(event.fidelity),
                  **param_values(rung_config, "config."),
                  **param_values({k: split.get(k) for k in ("strategy", "n_train", "n_val", "n_test")}, "split."),
                  **({"budget": json.dumps(manifest["rung"]["budget"])} if (manifest.get("rung") or {}).get("budget")
                     else {}),
                  **({"encoder": str((manifest.get("encoder") or {}).get("name"))} if manifest.get("encoder") else {})}
        diagnostics = metrics.get("diagnostics") or {}
        values = {**scalar_metrics({k: metrics.get(k) for k in ("test", "test_clean", "val")}),
                  **scalar_metrics(metrics.get("cost") or {}, "cost."),
                  **scalar_metrics({k: v for k, v in diagnostics.items() if k != "history"}, "diagnostics."),
                  "n_test_leaked": float(metrics.get("n_test_leaked") or 0)}
        self._log(run_id, metrics=values, params=params, steps=history_points(diagnostics.get("history")))
        self._log_json(run_id, "result.json", {k: stored.get(k) for k in ("metrics", "manifest", "rung", "seed")})
        self._client.set_terminated(run_id, "FINISHED")
        self.child_run_ids[str(event.key)] = run_id

    def end_study(self, result: Optional["StudyResult"], error: Optional[BaseException] = None) -> None:
        """Close the parent run: every rung's band as metrics and ``study.json``, or FAILED / KILLED."""
        if self.run_id is None:
            return
        if result is None:
            status = "KILLED" if isinstance(error, (KeyboardInterrupt, Cancelled)) else "FAILED"
            if error is not None:
                self._client.set_tag(self.run_id, "adaptlab.error", str(error)[:5000])
            self._client.set_terminated(self.run_id, status)
            return
        values = {"wall_seconds": float(result.wall_seconds), "n_trained": float(result.n_trained),
                  "n_from_store": float(result.n_from_store), "n_test": float(result.n_test)}
        for row in result.rows:
            for k in ("mean", "std", "ci_low", "ci_high", "n_seeds"):
                if isinstance(row.get(k), (int, float)):
                    values[_key(f"{row['rung']}.{k}")] = float(row[k])
        self._log(self.run_id, metrics=values)
        self._client.set_tag(self.run_id, "adaptlab.metric", result.metric)
        self._log_json(self.run_id, "study.json", result.to_dict())
        self._client.set_terminated(self.run_id, "FINISHED")

    def log_decision(self, decision: dict[str, Any], artifacts: list[Path]) -> None:
        """The decision as tags (status, chosen rung, ship, headline) and ``decision.json``, plus ``artifacts``."""
        if self.run_id is None:
            raise RuntimeError("log_decision before a study was tracked")
        tags = {"adaptlab.decision.status": decision.get("status"), "adaptlab.decision.chosen": decision.get("chosen"),
                "adaptlab.decision.ship": decision.get("ship"), "adaptlab.decision.headline": decision.get("headline"),
                "mlflow.note.content": decision.get("headline")}
        for k, v in tags.items():
            self._client.set_tag(self.run_id, k, "" if v is None else str(v)[:5000])
        self._log_json(self.run_id, "decision.json", decision)
        for path in artifacts:
            self._client.log_artifact(self.run_id, str(path))


# -- the glue Study.run uses -----------------------------------------------------------------------------
class StudyTracking:
    """Feeds a tracker from a running study's events; ends its parent run however the study ends.

    Used by :meth:`adaptlab.evaluate.Study.run` as a context manager; ``on_event`` chains the caller's.

    Example:
        >>> from types import SimpleNamespace
        >>> from adaptlab.evaluate.tracking import StudyTracking
        >>> class Printer:
        ...     def start_study(self, study): print("start", study["name"])
        ...     def log_cell(self, event, stored, rung_config): print("cell", event.rung, event.seed, rung_config)
        ...     def end_study(self, result, error=None): print("end", repr(error))
        ...     def log_decision(self, decision, artifacts): pass
        >>> store = SimpleNamespace(get_study=lambda sid: {"name": "demo"}, get_result=lambda key: {"key": key})
        >>> try:
        ...     with StudyTracking(Printer(), store, {"tfidf": {"min_df": 2}}) as feed:  # what Study.run does
        ...         feed.on_event(SimpleNamespace(kind="study", study_id="s1", key=None))
        ...         feed.on_event(SimpleNamespace(kind="done", rung="tfidf", seed=0, key="k0"))
        ...         raise RuntimeError("the study stopped")
        ... except RuntimeError:
        ...     pass
        start demo
        cell tfidf 0 {'min_df': 2}
        end RuntimeError('the study stopped')
    """

    def __init__(self, tracker: Tracker, store: Any, rung_configs: dict[str, dict[str, Any]],
                 on_event: Optional[Callable[["StudyEvent"], None]] = None) -> None:
        self.tracker, self.store, self.rung_configs = tracker, store, rung_configs
        self._next = on_event
        self._started = False

    def on_event(self, event: "StudyEvent") -> None:
        """Start the parent run, log a finished or stored cell, then pass the event on."""
        if event.kind == "study":
            self.tracker.start_study(self.store.get_study(event.study_id))
            self._started = True
        elif event.kind in ("done", "stored") and self._started and event.key:
            stored = self.store.get_result(event.key)
            if stored is not None:
                self.tracker.log_cell(event, stored, self.rung_configs.get(str(event.rung), {}))
        if self._next is not None:
            self._next(event)

    def finish(self, result: "StudyResult") -> None:
        """End the parent run with the study's result (once; nothing if no study started)."""
        if self._started:
            self.tracker.end_study(result)
            self._started = False

    def __enter__(self) -> "StudyTracking":
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        if self._started and exc is not None:
            self.tracker.end_study(None, exc)
            self._started = False
