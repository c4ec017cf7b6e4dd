"""`Study`: run the grid rungs x seeds on one sealed split and summarise it with honest bands.

Each seed re-draws the train/validation split inside the fixed train+validation pool and reseeds the
model; the test split is drawn once (``test_seed``) and sealed, and is read only after a rung has been
fitted. Every (rung, seed) result is stored as soon as it exists, so an interrupted study resumes where
it stopped and an identical study is answered from the store.

The shared work happens once, on the driver: near-duplicates, every seed's split, the precision gate when
``encode_precision`` is bf16, int8 or auto, and one embedding pass over all labeled texts. The (rung, seed) cells not
yet in the store then become jobs for an executor (`adaptlab.evaluate.executor`): in-process by
default, or Ray. Results come back to the driver, which alone writes the run store.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np

from adaptlab.cancel import CancelToken, cancel_scope
from adaptlab.config import ExecutorConfig, StudyConfig, default_home, parse_duration
from adaptlab.data import TextDataset, find_near_duplicates, split_dataset
from adaptlab.data.dataset import require_single_label
from adaptlab.errors import ConfigError, DataError
from adaptlab.evaluate.adaptive import AdaptiveConfig
from adaptlab.evaluate.cells import CellBatch, CellRunner
from adaptlab.evaluate.events import StudyEvent
from adaptlab.evaluate.executor import Executor, make_executor
from adaptlab.evaluate.notebook import CellBar, in_notebook, study_frame, study_html, widget_bars
from adaptlab.evaluate.tracking import StudyTracking, Tracker, make_tracker
from adaptlab.metrics import bands_overlap, resolve_positive_label, seed_and_test_bootstrap
from adaptlab.rungs import Budget, RungContext, get_rung
from adaptlab.store import RunStore, content_key

if TYPE_CHECKING:
    from adaptlab.rungs.refit.core import RefitOutcome

Progress = Callable[[str], None]


def _apply_study_precision(rungs: list[Any], config: StudyConfig) -> list[str]:
    """Give ``config.mixed_precision`` to each rung that trains the encoder and sets none of its own (in
    place); returns their names."""
    taken = []
    for i, rung in enumerate(rungs):
        own = (config.rung_params.get(rung.name) or {}).get("mixed_precision")
        if own is not None or not hasattr(rung.config, "mixed_precision"):
            continue
        rungs[i] = type(rung)(replace(rung.config, mixed_precision=config.mixed_precision))
        taken.append(rung.name)
    return taken


def _unlabeled_sample(ds: Optional[TextDataset], seed: int) -> Optional[TextDataset]:
    """At most twice :data:`~adaptlab.encoders.fast.GATE_MAX_TEXTS` unlabeled texts, drawn with ``seed``."""
    from adaptlab.encoders.fast import GATE_MAX_TEXTS

    if ds is None or len(ds) <= 2 * GATE_MAX_TEXTS:
        return ds
    keep = np.sort(np.random.default_rng(seed).choice(len(ds), 2 * GATE_MAX_TEXTS, replace=False))
    return ds.subset(keep)


def _gate_sample(ds: TextDataset, seed: int) -> TextDataset:
    """At most :data:`~adaptlab.encoders.fast.GATE_MAX_TEXTS` texts of ``ds``, each class keeping its share.

    The precision gate compares two numeric paths on the same texts, so a sample decides it; the full train
    split in fp32 as well would cost about what bf16 saves."""
    from adaptlab.data.bundled import stratified_subsample
    from adaptlab.encoders.fast import GATE_MAX_TEXTS

    if len(ds) <= GATE_MAX_TEXTS:
        return ds
    return ds.subset(stratified_subsample(ds.labels, max(GATE_MAX_TEXTS, len(set(ds.labels))), seed=seed))


@dataclass
class StudyResult:
    """What a study found: one summary row per rung plus the context needed to read it.

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.evaluate import Study, StudyResult
        >>> texts = ([f"goal match team player {i}" for i in range(30)]
        ...          + [f"chip software data server {i}" for i in range(30)])
        >>> data = TextDataset(texts, ["sport"] * 30 + ["tech"] * 30)
        >>> result = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home="runs").run(data)
        >>> isinstance(result, StudyResult), result.n_test, result.n_trained, result.row("tfidf")["n_seeds"]
        (True, 12, 2, 2)
        >>> StudyResult.from_dict(result.to_dict()).row("tfidf")["mean"] == result.row("tfidf")["mean"]
        True
    """

    study_id: str
    name: str
    config: dict[str, Any]
    metric: str
    classes: list[str]
    positive_label: Optional[str]
    n_train_pool: int
    n_test: int
    rows: list[dict[str, Any]]
    overlaps: list[dict[str, Any]]
    split: dict[str, Any]
    data: dict[str, Any]
    n_trained: int = 0
    n_from_store: int = 0
    wall_seconds: float = 0.0
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Filled by adaptlab.diagnostics (probe gap, MMD, domain shift) when a study includes `refit`.
    diagnostics: dict[str, Any] = field(default_factory=dict)
    # A decision-driven study (``time_budget``): what ran, at which fidelity and why, what was dropped,
    # why it stopped and the compute used vs the exhaustive grid (adaptlab.evaluate.adaptive).
    allocation: Optional[dict[str, Any]] = None

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict (JSON-safe)."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudyResult":
        """The result from :meth:`to_dict`'s output (as the run store keeps it)."""
        return cls(**d)

    def row(self, rung: str) -> dict[str, Any]:
        """The summary row of ``rung`` (KeyError if the study did not run it)."""
        for r in self.rows:
            if r["rung"] == rung:
                return r
        raise KeyError(rung)

    def to_frame(self, per_seed: bool = False) -> Any:
        """The rungs as a :class:`pandas.DataFrame`: one row per rung (index ``rung``) with ``n_seeds``,
        ``mean``, ``std``, the 95% band ``ci_low``/``ci_high``, validation F1, accuracy, fit seconds and the
        F1 of each seed; ``per_seed=True``: one row per (rung, seed) run.

        Example:
            >>> from adaptlab.data import TextDataset
            >>> texts = ([f"goal match team player {i}" for i in range(30)]
            ...          + [f"chip software data server {i}" for i in range(30)])
            >>> data = TextDataset(texts, ["sport"] * 30 + ["tech"] * 30)
            >>> result = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home="runs").run(data)
            >>> frame = result.to_frame()
            >>> frame.index.tolist(), int(frame.loc["tfidf", "n_seeds"]), len(result.to_frame(per_seed=True))
            (['tfidf'], 2, 2)
        """
        return study_frame(self, per_seed=per_seed)

    def _repr_html_(self) -> str:
        """What Jupyter shows for the result: the rung table with mean ± std and bands, and the warnings."""
        return study_html(self)


@dataclass
class PreparedData:
    """The labeled data as every rung of a study sees it: the pool (+ the sealed test file), classes and splits."""

    full: TextDataset  # --data, followed by the --test file when one is given
    test_indices: Optional[list[int]]  # rows of ``full`` from the --test file (None: test carved from --data)
    classes: list[str]
    positive: Optional[str]
    clusters: Any  # near-duplicate clusters of ``full``
    splits: dict[int, Any]  # seed -> split of ``full``


def _concat(a: TextDataset, b: TextDataset) -> TextDataset:
    def cat(x, y):
        return None if x is None or y is None else list(x) + list(y)

    ts = None
    if a.timestamps is not None and b.timestamps is not None:
        ts = np.concatenate([a.timestamps, b.timestamps])
    return TextDataset(
        texts=a.texts + b.texts, labels=cat(a.labels, b.labels), groups=cat(a.groups, b.groups), timestamps=ts,
        ids=[f"train:{i}" for i in a.ids] + [f"test:{i}" for i in b.ids], rows=a.rows + b.rows,
        source=f"{a.source}+{b.source}",
    )


MIN_TEST_ITEMS = 50
MIN_TEST_PER_CLASS = 10


def _small_test_warnings(y_test: Optional[np.ndarray], classes: list[str], positive: Optional[str]) -> list[str]:
    """Say when the sealed test is too small for its F1 to mean much (bands then look falsely tight)."""
    if y_test is None:
        return []
    out = []
    if len(y_test) < MIN_TEST_ITEMS:
        out.append(
            f"the sealed test has only {len(y_test)} items (< {MIN_TEST_ITEMS}): its F1 is a coarse estimate and a "
            "bootstrap band on so few items understates the uncertainty. Label more data or pass a larger --test file."
        )
    counts = {c: int((y_test == c).sum()) for c in ([positive] if positive else classes)}
    thin = {c: n for c, n in counts.items() if n < MIN_TEST_PER_CLASS}
    if thin:
        listed = ", ".join(f"{c!r}: {n}" for c, n in thin.items())
        out.append(
            f"class(es) with fewer than {MIN_TEST_PER_CLASS} sealed test items ({listed}): their F1 can swing by "
            "tens of points on one item. Label more examples of these classes."
        )
    return out


def data_inputs(data: TextDataset, test: Optional[TextDataset] = None,
                unlabeled: Optional[TextDataset] = None) -> dict[str, str]:
    """Where a study's data came from, as study-file keys (``data``, ``test``, ``unlabeled``, ``text_col`` ...).

    Files are recorded as absolute paths (a dataset's ``path`` where it has one, else its ``source``) and
    columns as ``load_dataset`` chose them, so ``adaptlab study config`` can write a study file that reruns the
    study from its data alone.

    Example:
        >>> data_inputs(TextDataset(["a"], ["x"], source="", columns={"text": "body", "label": "y"}))
        {'text_col': 'body', 'label_col': 'y'}
    """
    out: dict[str, str] = {}
    for key, ds in (("data", data), ("test", test), ("unlabeled", unlabeled)):
        where = (ds.path or ds.source) if ds is not None else ""
        if where and Path(where).is_file():
            out[key] = str(Path(where).resolve())
    for role, col in (data.columns or {}).items():
        out[f"{role}_col"] = col
    return out



def _per_seed_rows(grid: Any, results: dict[str, Any]) -> tuple[list[dict[str, Any]], Optional[np.ndarray]]:
    """One row per (rung, seed) run with its metrics and test predictions, and the test labels."""
    per_seed: list[dict[str, Any]] = []
    y_test: Optional[np.ndarray] = None
    for rung, seed, key, fidelity in grid:
        stored = results[key]
        if y_test is None:
            y_test = np.asarray(stored["predictions"]["y_true"], dtype=object)
        per_seed.append({"rung": rung.name, "seed": seed, "result_key": key, **stored["metrics"],
                         "y_pred": stored["predictions"]["y_pred"], **({"fidelity": fidelity} if fidelity < 1 else {}),
                         # Stored before results had checksums (RunStore.get_result): kept, and marked.
                         **({"verified": False} if stored.get("verified") is False else {})})
    return per_seed, y_test


def unverified_note(per_seed: list[dict[str, Any]]) -> Optional[str]:
    """The warning for runs read from the store that were stored before results had checksums, or None.

    Example:
        >>> unverified_note([{"rung": "probe", "seed": 0, "verified": False}, {"rung": "tfidf", "seed": 0}])[:46]
        '1 stored run (probe seed 0) cannot be verified'
        >>> unverified_note([{"rung": "tfidf", "seed": 0}]) is None
        True
    """
    runs = [p for p in per_seed if p.get("verified") is False]
    if not runs:
        return None
    rungs = sorted({p["rung"] for p in runs})
    named = ", ".join(f"{p['rung']} seed {p['seed']}" for p in runs[:5]) + (", ..." if len(runs) > 5 else "")
    return (f"{len(runs)} stored run{'s' if len(runs) > 1 else ''} ({named}) cannot be verified: stored before "
            f"results had checksums, so flipped bytes in them would go unnoticed; they are used and marked unverified. "
            f"To train them again: `adaptlab study run ... --recompute {','.join(rungs)}`.")


def _overlaps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whether each pair of rungs' bands overlap, and their difference in means."""
    return [{"a": a["rung"], "b": b["rung"],
             "overlap": bands_overlap((a["ci_low"], a["ci_high"]), (b["ci_low"], b["ci_high"])),
             "diff": b["mean"] - a["mean"]}
            for i, a in enumerate(rows) for b in rows[i + 1:]]

class Study:
    """Runs rungs x seeds and stores every result.

    ``executor`` says where the jobs run and changes no number (it is not part of the study id):
    ``"inprocess"`` (default), ``"ray"`` (a local Ray instance), an
    :class:`~adaptlab.config.ExecutorConfig` (cluster address, retries, per-job CPUs/GPUs/memory) or an
    executor object. ``track``: ``"mlflow"`` (or a tracker object, see :mod:`adaptlab.evaluate.tracking`)
    logs the study and each (rung, seed) cell to an experiment tracker; nothing is logged without it.
    ``recompute``: rung names (or ``"all"``) whose stored results are not read but trained again and replaced,
    for a user who distrusts them; their inputs (embeddings, refits) are read only after their checksums match.

    Example:
        >>> from adaptlab.data.bundled import load_bbc_news
        >>> bbc = load_bbc_news()                                   # 2,225 BBC News articles, bundled
        >>> data = bbc.subset(range(0, len(bbc), 20))               # every 20th: a fast example
        >>> study = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home="runs")
        >>> result = study.run(data)
        >>> result.n_trained, result.row("tfidf")["n_seeds"], result.row("tfidf")["mean"] > 0.5
        (2, 2, True)
        >>> study.run(data).n_from_store                            # the same study again: read, not retrained
        2
        >>> ray_cluster = ExecutorConfig(kind="ray", address="auto", max_retries=2,
        ...                              rung_resources={"refit": {"gpus": 1}})  # doctest: +SKIP
        >>> Study(StudyConfig(rungs=["tfidf", "probe", "refit"]), executor=ray_cluster).run(data)  # doctest: +SKIP
    """

    def __init__(self, config: StudyConfig, *, home: str | Path | None = None, encoder: Any = None,
                 show_progress: Optional[bool] = None, executor: "str | ExecutorConfig | Executor | None" = None,
                 time_budget: "str | float | None" = None, cost_estimates: Optional[dict[str, tuple[float, float]]] = None,
                 priors: Optional[dict[str, float]] = None, track: "str | Tracker | None" = None,
                 recompute: "str | Sequence[str] | None" = None) -> None:
        if time_budget is not None:
            config = replace(config, time_budget=str(time_budget) if not isinstance(time_budget, str) else time_budget)
        if config.rungs_defaulted and config.time_budget:
            # No rungs named and a time budget: the allocator is offered the ladder (refit needs named data).
            from adaptlab.rungs.ladder import default_rungs

            config = replace(config, rungs=default_rungs(timed=True, unlabeled=False))
        self.config = config
        # A decision-driven study (config.time_budget): seconds, the allocator's settings, its cost estimates
        # (one-time, per seed at the full budget; e.g. from adaptlab.decide.plan) and prior F1 offsets.
        self.time_budget = parse_duration(config.time_budget, "time_budget") if config.time_budget else None
        self.adaptive = AdaptiveConfig.from_dict(config.adaptive)
        self.cost_estimates = dict(cost_estimates or {})
        self.priors = dict(priors or {})
        # Seconds of the time budget already spent for this study before run() (its cost calibration).
        self.spent_before = 0.0
        self.home = Path(home) if home is not None else default_home()
        self._store: Optional[RunStore] = None
        self._encoder = encoder
        # Progress bars (embedding, training); None: shown in a Jupyter notebook, with a bar over the cells too.
        self._cell_bar = show_progress is None and in_notebook()
        self.show_progress = bool(show_progress) if show_progress is not None else (self._cell_bar and widget_bars())
        # Cell leases (adaptlab.store.leases): ttl, poll and max_wait seconds; tests shorten them.
        self.lease_options: dict[str, Any] = {}
        self._says = True  # whether the current run prints progress lines (set by _run); a lease wait is said anyway
        # Instantiate every rung up front so a typo fails before any training starts.
        self.rungs = [get_rung(name, config.rung_params.get(name)) for name in config.rungs]
        # The rungs that train in the study's mixed_precision (no setting of their own); the id hashes what
        # it became for them.
        self._study_precision_rungs = _apply_study_precision(self.rungs, config)
        # As configured: a rung asking for mixed_precision="auto" is resolved again by each run (its gate).
        self._configured_rungs = list(self.rungs)
        # Network rungs refuse a budget of their own unlike the study's, before anything trains (issue #5).
        for rung in self.rungs:
            if hasattr(rung, "resolve_budget"):
                rung.resolve_budget(Budget.parse(config.budget))
        # Where the (rung, seed) jobs run; not part of the study's identity (it changes no number).
        # A missing Ray fails here, before any work.
        self.executor = make_executor(executor)
        self._executor_config = getattr(self.executor, "config", None) or ExecutorConfig()
        # Experiment tracking (adaptlab.evaluate.tracking): nothing is logged unless asked; not part of the id.
        self.tracker = make_tracker(track)
        self.recompute = recompute_set(recompute, [r.name for r in self.rungs])
        self._recomputed: set[str] = set()  # result keys trained again in this run (read normally after)
        # True after a run() that read a finished decision-driven study back instead of running it: callers
        # then leave its stored summary as it is (``_read_back``).
        self.read_back = False

    @property
    def store(self) -> RunStore:
        """The run store under ``home`` (opened on first use: `refit` never touches it, so the processes of
        ``accelerate launch -m adaptlab.cli refit`` write nothing but the refit)."""
        if self._store is None:
            self._store = RunStore(self.home / "runs.sqlite")
        return self._store

    @property
    def encoder(self) -> Any:
        """The study's encoder, loaded on first use (the packaged MiniLM unless ``config.encoder`` names one)."""
        return self._load_encoder()

    def _load_encoder(self) -> Any:
        if self._encoder is None:
            from adaptlab.encoders import load_encoder

            self._encoder = load_encoder(self.config.encoder)
        return self._encoder

    def run(
        self,
        data: TextDataset,
        *,
        test: Optional[TextDataset] = None,
        unlabeled: Optional[TextDataset] = None,
        progress: Optional[Progress] = None,
        on_event: Optional[Callable[[StudyEvent], None]] = None,
        cancel: Optional[CancelToken] = None,
    ) -> StudyResult:
        """Run every (rung, seed) cell not yet in the run store; ``progress`` gets text lines, ``on_event``
        a :class:`StudyEvent` per cell started, read from the store or finished. With a tracker
        (``track=``), the study and each of its cells are logged to it as well. A finished study with a time
        budget and the same id is read back as stored (``read_back`` is then True), never allocated again:
        a stored study is never replaced.

        ``cancel`` (an :class:`adaptlab.cancel.CancelToken`, set from another thread) stops the study at the
        running cell's next training step or encode batch with :class:`adaptlab.cancel.Cancelled`; the cell's
        checkpoint is kept, so running the same study again reads the finished cells and resumes that one. In a notebook (and
        ``show_progress`` left out) a bar over the (rung, seed) cells shows how far it is."""
        with cancel_scope(cancel):
            if self._cell_bar:
                bar = CellBar(total=len(self.rungs) * self.config.seeds)
                on_event = _both(bar.on_event, on_event)
                try:
                    return self._run_tracked(data, test, unlabeled, progress, on_event)
                finally:
                    bar.close()
            return self._run_tracked(data, test, unlabeled, progress, on_event)

    def _run_tracked(self, data: TextDataset, test: Optional[TextDataset], unlabeled: Optional[TextDataset],
                     progress: Optional[Progress], on_event: Optional[Callable[[StudyEvent], None]]) -> StudyResult:
        if self.tracker is None:
            return self._run(data, test, unlabeled, progress, on_event)
        tracking = StudyTracking(self.tracker, self.store, {r.name: r.config.to_dict() for r in self.rungs}, on_event)
        with tracking:  # a study that stops (error, Ctrl-C, cancel) ends its tracked run as FAILED / KILLED
            result = self._run(data, test, unlabeled, progress, tracking.on_event)
            tracking.finish(result)
        return result

    def _run(self, data: TextDataset, test: Optional[TextDataset], unlabeled: Optional[TextDataset],
             progress: Optional[Progress], on_event: Optional[Callable[[StudyEvent], None]]) -> StudyResult:
        cfg = self.config
        for part in (data, test):
            if part is not None:  # not converted yet: refuse, never read the label sets as missing labels
                require_single_label(part, "a study (adaptlab study run, Study.run)")
        say = progress or (lambda _msg: None)
        self._says = progress is not None
        emit = on_event or (lambda _ev: None)
        t_start = time.perf_counter()
        self.read_back = False
        _ = self.store  # opened now, so an unusable --home fails before any work
        self._prune_abandoned_checkpoints(say)
        prepared = self._prepare(data, test, say)
        full, test_indices, clusters, splits = prepared.full, prepared.test_indices, prepared.clusters, prepared.splits
        classes, positive = prepared.classes, prepared.positive
        self._classes, self._positive = classes, positive

        uses_encoder = any(r.uses_encoder for r in self.rungs)
        encoder = self._load_encoder() if uses_encoder else None
        cache = None
        if encoder is not None:
            from adaptlab.encoders import EmbeddingCache

            cache = EmbeddingCache(self.home / "cache" / "embeddings.sqlite")
        context = self._context(prepared, encoder, cache, unlabeled)
        first = splits[cfg.seed_values[0]]
        split_info = self._split_info(full, first, clusters, test_indices)

        # Rungs that only read the frozen encoder may get the bf16 / int8 one; rungs that train it never do.
        frozen_rungs = [r for r in self.rungs if r.uses_encoder and not r.trains_network]
        frozen_encoder, choice, primed, encode_seconds = encoder, None, {}, 0.0
        if encoder is not None:
            frozen_encoder, choice, primed, encode_seconds = self._encode_once(
                encoder, cache, full, first, classes, positive, frozen_rungs, say)
        # mixed_precision="auto" -> bf16 or float32 per rung, before any cell key is computed.
        self.rungs, training_precision = self._training_precision(self._configured_rungs, full, first, context, say)

        # What each training rung that asked for "auto", or took the study's precision, trained in.
        trained_in = {now.name: now.config.mixed_precision for was, now in zip(self._configured_rungs, self.rungs)
                      if now.name in self._study_precision_rungs or getattr(was.config, "mixed_precision", None) == "auto"}
        study_id = content_key("study", full.content_hash, cfg.identity(choice.used if choice else None, trained_in),
                               encoder.fingerprint if encoder else None)
        name = cfg.name or f"{Path(data.source).name or 'data'}: {','.join(cfg.rungs)} x {cfg.seeds} seeds"
        self.store.put_study(study_id, name=name, config=cfg.to_dict(), data_hash=full.content_hash)
        emit(StudyEvent("study", study_id))
        stored = self._finished_allocation(study_id)
        if stored is not None:  # a stored study is never replaced: read back, not allocated again
            return self._read_back(stored, say, emit, t_start)

        # Before the cells: a time budget counts the label check too, as the user's clock does.
        label_quality = self._label_quality(full, first, study_id, say)
        runner = self._cell_runner(full, splits, context, frozen_rungs, frozen_encoder, encoder, positive,
                                   study_id, primed, say, emit)
        allocation = None
        if self.time_budget is not None:
            allocation, batch = self._run_adaptive(
                runner, say, clock=lambda: self.spent_before + time.perf_counter() - t_start)
        else:
            batch = runner.run([(rung, seed, 1.0) for seed in cfg.seed_values for rung in self.rungs])
        grid, results, n_cached, n_trained = batch.grid, batch.results, len(batch.cached), batch.n_trained

        per_seed, y_test = _per_seed_rows(allocation_rows(grid) if allocation else grid, results)
        rows = self._summarise(per_seed, y_test, classes, positive)
        warnings = _small_test_warnings(y_test, classes, positive)
        unverified = unverified_note(per_seed)
        if unverified:
            warnings.append(unverified)
            say(f"warning: {unverified}")
        if choice is not None and choice.fell_back:
            warnings.append(choice.message)
        overlaps = _overlaps(rows)
        result = StudyResult(
            study_id=study_id, name=name, config=cfg.to_dict(),
            metric=f"F1 of class {positive!r}" if positive else "macro-F1",
            classes=classes, positive_label=positive, n_train_pool=len(full) - split_info["n_test"],
            n_test=split_info["n_test"], rows=rows, overlaps=overlaps, split=split_info,
            data={"source": data.source, "inputs": data_inputs(data, test, unlabeled),
                  "n_labeled": len(data), "n_test_file": len(test) if test else 0,
                  "n_unlabeled": len(unlabeled) if unlabeled is not None else 0,
                  "data_hash": full.content_hash, "label_counts": full.label_counts(),
                  "encoder": encoder.info if encoder is not None else None,
                  "encode_seconds": encode_seconds,
                  # Which numeric path produced the frozen rungs' embeddings, and the gate's evidence.
                  "encode_precision": choice.to_dict() if choice is not None else None,
                  # How many texts are longer than the encoder's window, and how each rung reads them.
                  **(self._window_facts(encoder, full) if encoder is not None else {}),
                  # What mixed_precision="auto" became per training rung, and the gate's evidence.
                  **({"training_precision": training_precision} if training_precision else {}),
                  "executor": self.executor.describe(),
                  "label_quality": label_quality},
            n_trained=n_trained, n_from_store=n_cached, wall_seconds=time.perf_counter() - t_start,
            per_seed=[{k: v for k, v in p.items() if k != "y_pred"} for p in per_seed],
            warnings=warnings, allocation=allocation,
        )
        self.store.set_summary(study_id, result.to_dict())
        return result

    def _prune_abandoned_checkpoints(self, say: Progress) -> None:
        """Delete the checkpoints of runs killed long ago and never resumed (`adaptlab store gc` does it sooner)."""
        from adaptlab.store.housekeeping import AUTO_PRUNE_DAYS, collect_garbage

        gone = collect_garbage(self.home, AUTO_PRUNE_DAYS, kinds={"abandoned"})
        if gone["removed"]:
            say(f"deleted {len(gone['removed'])} checkpoint(s) of runs abandoned over {AUTO_PRUNE_DAYS:.0f} days ago "
                f"({gone['freed_bytes'] / 2**20:.0f} MiB)")

    def _finished_allocation(self, study_id: str) -> Optional[StudyResult]:
        """The finished decision-driven study stored under ``study_id``, or None (not timed, not stored, not
        finished, or stored by a version whose summary this one cannot read: then it runs).

        A study's id hashes its settings, not the clock or the cost estimates its allocator worked from, so
        running a finished timed study again could spend its budget differently and store fewer rows than it
        measured (issue #31: the setfit row was lost). A fixed grid needs no such guard: its rerun reads the
        same cells and computes the same rows."""
        from adaptlab.errors import AdaptlabError

        if self.time_budget is None:
            return None
        try:
            summary = self.store.get_study(study_id).get("summary")
        except AdaptlabError:
            return None
        if not summary or not summary.get("allocation"):
            return None
        try:
            return StudyResult.from_dict(summary)
        except TypeError:
            return None

    def _read_back(self, stored: StudyResult, say: Progress, emit: Callable[[StudyEvent], None],
                   t_start: float) -> StudyResult:
        """``stored`` as this run's result: every cell it summarises reported as read from the store, nothing
        trained and nothing written (its stored summary stays as it is)."""
        self.read_back = True
        # Every run the allocation made, in its order (a screen, then the full run it was promoted to).
        cells = [c for c in (stored.allocation or {}).get("cells") or [] if c.get("f1") is not None] or [
            {"rung": p["rung"], "seed": p["seed"], "f1": p["test"]["f1"], "fidelity": p.get("fidelity", 1.0),
             "key": p.get("result_key")} for p in stored.per_seed]
        for c in cells:
            emit(StudyEvent("stored", stored.study_id, c["rung"], c["seed"], f1=float(c["f1"]),
                            fidelity=float(c.get("fidelity") or 1.0), key=c.get("key")))
        say(f"study {stored.study_id[:12]} is stored and finished: read back, not run again (a study is never "
            "replaced). A longer time budget or other settings make a new study that reuses every stored run.")
        return replace(stored, n_trained=0, n_from_store=len(cells), wall_seconds=time.perf_counter() - t_start)

    def _split_info(self, full: TextDataset, first: Any, clusters: Any, test_indices: Any) -> dict[str, Any]:
        """The split's facts for the result, with what a naive split would have leaked on this data."""
        cfg = self.config
        split_info = {"strategy": first.strategy, "n_train": len(first.train), "n_val": len(first.val),
                      "n_test": first.n_test, "leakage": first.leakage.to_dict(),
                      "leakage_summary": first.leakage.summary(),
                      "near_dup_clusters": int(clusters.n_clusters),
                      "near_dup_items": int(clusters.n_items_in_clusters),
                      "naive_split": None}
        if clusters.n_clusters and first.strategy != "stratified" and test_indices is None:
            # Show what the leakage-aware split saved the user from, measured on this data.
            from adaptlab.evaluate.leakage import measure_leakage_inflation

            split_info["naive_split"] = measure_leakage_inflation(
                full, threshold=cfg.near_dup_threshold, seed=cfg.test_seed, test_size=cfg.test_size,
                clusters=clusters)
        return split_info

    @staticmethod
    def _no_gate_message(requested: str) -> str:
        if requested == "fp32":
            return "fp32 (full precision) requested"
        if requested == "auto":  # the default: nothing to report when no rung reads the frozen encoder
            return ""
        return (f"{requested} not used: it applies to rungs that encode with the frozen encoder (probe), and this "
                "study has none; the others train the encoder in fp32")

    def _encode_once(self, encoder: Any, cache: Any, full: TextDataset, first: Any, classes: list[str],
                     positive: Optional[str], frozen_rungs: list[Any],
                     say: Progress) -> tuple[Any, Any, dict, float]:
        """The frozen rungs' encoder (fp32, or bf16 / int8 when the gate allows), the gate's choice, the
        embeddings primed for parallel executors, and the seconds spent: every labeled text is embedded once."""
        from adaptlab.encoders.cache import embed, embedding_key
        from adaptlab.encoders.fast import PrecisionChoice, choose_precision, resolve_precision
        from adaptlab.encoders.longtext import long_text_encoder

        cfg = self.config
        frozen_encoder, choice = encoder, None
        primed: dict[str, tuple[list[str], np.ndarray]] = {}
        t_enc = time.perf_counter()
        if cfg.encode_precision != "fp32" and frozen_rungs:
            target, _ = resolve_precision(cfg.encode_precision, str(encoder.device))
            if target != "fp32":
                from adaptlab.encoders.fast import GATE_MAX_TEXTS

                n_train, n_val = (min(len(part), GATE_MAX_TEXTS) for part in (first.train, first.val))
                say(f"checking the {target} encoding path against fp32 on the split of seed {first.seed} "
                    f"({n_train} train, {n_val} validation texts; tolerance {cfg.precision_tolerance * 100:.2f} "
                    "F1 points) ...")
            frozen_encoder, choice = choose_precision(
                encoder, cfg.encode_precision, tolerance=cfg.precision_tolerance,
                validation_f1=self._gate_scorer(full, first, cache, classes, positive, frozen_rungs[0]))
            say(choice.message)
        else:
            choice = PrecisionChoice(cfg.encode_precision, "fp32", cfg.precision_tolerance,
                                     message=self._no_gate_message(cfg.encode_precision))
        # One pass over every labeled text fills the cache (one progress bar, tight length batches);
        # the frozen encoder never sees a label, so embedding test texts here leaks nothing.
        # Each frozen rung reads long texts its own way (long_text): one pass per distinct reader.
        readers: dict[str, Any] = {}
        for rung in frozen_rungs:
            reader = long_text_encoder(frozen_encoder, getattr(rung.config, "long_text", None))
            readers.setdefault(embedding_key(reader), reader)
        needed = list(readers.values())
        if embedding_key(encoder) not in readers and (
                not needed or any(r.uses_encoder and r.trains_network for r in self.rungs)):
            needed.insert(0, encoder)
        for enc in needed:
            say(f"embedding {len(full)} labeled texts with {enc.name} (cached on disk) ...")
            X = embed(enc, full.texts, cache=cache, show_progress=self.show_progress)
            if self.executor.parallel:
                from adaptlab.data.dataset import text_hash

                primed[embedding_key(enc)] = ([text_hash(t) for t in full.texts], X)
        encode_seconds = time.perf_counter() - t_enc
        return frozen_encoder, choice, primed, encode_seconds

    def _window_facts(self, encoder: Any, full: TextDataset) -> dict[str, Any]:
        """The share of labeled texts longer than the encoder's window (by class; a sample above 20,000 texts)
        and each rung's ``long_text`` where it has one, for the report."""
        from adaptlab.encoders.longtext import window_stats

        try:
            window = window_stats(encoder.tokenizer, int(encoder.max_seq_length), str(encoder.name), full.texts,
                                  full.labels, max_rows=20_000, seed=self.config.test_seed)
        except Exception as exc:  # a report fact, never a reason to lose the study's results
            window = {"skipped": f"{type(exc).__name__}: {exc}"}
        long_text = {r.name: r.config.long_text for r in self.rungs if hasattr(r.config, "long_text")}
        return {"window": window, "long_text": long_text}

    def _label_quality(self, full: TextDataset, split: Any, study_id: str, say: Progress) -> Optional[dict]:
        """Estimated label noise per class of the labeled pool (train + validation; never the sealed test).

        Stored with the study's data facts for the report. A rerun of the same study (same data and
        split) reads it back from the stored summary instead of redoing the cross-validation.
        """
        from adaptlab.data import check_labels
        from adaptlab.data.label_quality import DEFAULT_MAX_ROWS
        from adaptlab.errors import AdaptlabError

        try:
            before = (self.store.get_study(study_id).get("summary") or {}).get("data", {}).get("label_quality")
        except AdaptlabError:
            before = None
        if before:
            return before
        pool = full.subset(np.concatenate([split.train, split.val]))
        cap = self.config.label_check_max_rows or DEFAULT_MAX_ROWS
        sample = f" (a stratified sample of {cap:,} of its {len(pool):,} rows)" if len(pool) > cap else ""
        say(f"estimating label noise on the train pool{sample} (confident learning, 5-fold TF-IDF) ...")
        try:
            issues = check_labels(pool, seed=self.config.test_seed, max_rows=cap)
        except AdaptlabError as exc:  # e.g. a class with one example in the pool: the study still runs
            return {"skipped": str(exc)}
        # The report shows the rates; the first rows are kept as examples, `adaptlab data check` lists all.
        # Every flagged row's id is kept so a slice analysis can say how many fall in a weak slice.
        return {**issues.to_dict(limit=10), "flagged_ids": [str(pool.ids[i]) for i in issues.flagged_indices]}

    def _cell_runner(self, full: TextDataset, splits: dict[int, Any], context: RungContext, frozen_rungs: list[Any],
                     frozen_encoder: Any, encoder: Any, positive: Optional[str], study_id: str, primed: dict,
                     say: Progress, emit: Callable[[StudyEvent], None]) -> CellRunner:
        """The :class:`~adaptlab.evaluate.cells.CellRunner` of this run: each cell's split and context (the
        frozen rungs read the bf16 / int8 encoder the gate chose; a screen trains under its share of the
        budget), the run store, the executor and this study's recompute rule."""

        def context_for(rung: Any, seed: int, fidelity: float) -> tuple[Any, RungContext]:
            split = splits[seed]
            job_context = self._seed_context(context, full, split)
            if rung in frozen_rungs and frozen_encoder is not encoder:
                job_context = replace(job_context, encoder=frozen_encoder)
            if fidelity < 1.0 or self._capped_in_time(rung, context):
                job_context = replace(job_context, budget=fidelity_budget(rung, context.budget, fidelity,
                                                                         len(split.train)))
            return split, job_context

        return CellRunner(store=self.store, executor=self.executor, full=full, splits=splits, study_id=study_id,
                          positive=positive, context_for=context_for, recompute=self._recomputes,
                          recomputed=self._recomputed, resources_for=self._executor_config.resources_for,
                          lease_options=self.lease_options, primed=primed, say=say, emit=emit,
                          says_waits=self._says)

    def _recomputes(self, rung: Any, key: str) -> bool:
        """Whether the cell ``key`` of ``rung`` is trained again although stored (``recompute``; once per study)."""
        return ("all" in self.recompute or rung.name in self.recompute) and key not in self._recomputed

    def _capped_in_time(self, rung: Any, context: RungContext) -> bool:
        """SetFit sizes its own training from its pairs (millions for a few thousand texts); in a
        decision-driven study without a step budget its full budget is ``max_epochs`` epochs of steps, as
        every other network rung's, so a screen is a quarter of a run that can finish."""
        cfg = rung.config
        return (self.time_budget is not None and rung.name == "setfit" and context.budget is None
                and getattr(cfg, "budget", None) is None and getattr(cfg, "max_pairs", None) is None
                and getattr(cfg, "num_iterations", None) is None)

    def _learn_cost(self, rung: Any, ratio: float) -> None:
        """Keep what a trained run cost against its calibrated estimate (before any learned correction), so
        the next plan and study on this machine start from it."""
        from adaptlab.store.costs import cost_key, machine_id

        enc = self._encoder
        device = "gpu" if str(getattr(enc, "device", "cpu")).startswith("cuda") else "cpu"
        mp = str(getattr(rung.config, "mixed_precision", "no"))
        self.store.learn_cost(machine_id(), cost_key(enc, "bf16" if mp == "bf16" else "no", device), ratio)

    def _cost_learner(self, by_name: dict[str, Any]) -> Callable[[str, float], None]:
        """What the allocator calls with (rung, measured ÷ estimated) after a trained run: kept against the
        calibration (the learned factor its estimate carried taken back out), and only for estimates that
        came from the calibration (a cost read from the run store is no calibration to correct)."""
        def learn(rung: str, ratio: float) -> None:
            cost = self.cost_estimates.get(rung)
            if getattr(cost, "source", "calibrated") == "calibrated":
                self._learn_cost(by_name[rung], ratio * getattr(cost, "correction", 1.0))
        return learn

    def _run_adaptive(self, runner: CellRunner, say: Progress,
                      clock: Optional[Callable[[], float]] = None) -> tuple[dict[str, Any], CellBatch]:
        """Run the study in rounds chosen by an :class:`~adaptlab.evaluate.adaptive.Allocator` until the
        decision is settled or the time budget is spent; ``clock`` is the study's wall clock so far. Returns
        the allocation record and every cell run, in order."""
        from adaptlab.evaluate.adaptive import Allocator, Observation, RungSpec, run_allocation

        by_name = {r.name: r for r in self.rungs}
        specs = [RungSpec(r.name, adaptive_kind(r)) for r in self.rungs]
        alloc = Allocator(specs, budget_seconds=self.time_budget, seeds=self.config.seed_values,
                          costs=self.cost_estimates, priors=self.priors, config=self.adaptive, clock=clock,
                          on_cost=self._cost_learner(by_name))
        run = CellBatch()  # every cell of every round

        def execute(cells: list[Any]) -> list[Observation]:
            t0 = time.perf_counter()
            batch = runner.run([(by_name[c.rung], c.seed, c.fidelity) for c in cells])
            wall = (time.perf_counter() - t0) / max(1, len(cells) - len(batch.cached))  # shared by those it trained
            run.extend(batch)
            obs = []
            for c, (_rung, seed, key, fidelity) in zip(cells, batch.grid):
                stored, cached = batch.results[key], key in batch.cached
                if alloc.y_true is None:
                    alloc.set_test_labels(stored["predictions"]["y_true"], self._classes, self._positive)
                cost = stored["metrics"]["cost"]
                obs.append(Observation(c.rung, seed, fidelity, float(stored["metrics"]["test"]["f1"]),
                                       float(cost.get("total_seconds", cost.get("fit_seconds", 0.0))),
                                       np.asarray(stored["predictions"]["y_pred"], dtype=object),
                                       from_store=cached, key=key, wall=None if cached else wall))
            return obs

        def on_round(cells: list[Any]) -> None:
            for c in cells:
                say(f"allocation round {c.round} ({c.phase}): {c.rung} seed {c.seed}"
                    + (f" at {c.fidelity:.0%}" if c.fidelity < 1 else "") + f" — {c.why}")

        # A parallel executor (Ray) gets every screening run of a round at once.
        record = run_allocation(alloc, execute, parallel=len(self.rungs) if self.executor.parallel else 1,
                                on_round=on_round)
        say(f"allocation stopped ({record['stop']['kind']}): {record['stop']['reason']}")
        return record, run

    def refit(
        self,
        data: TextDataset,
        *,
        test: Optional[TextDataset] = None,
        unlabeled: Optional[TextDataset] = None,
        progress: Optional[Progress] = None,
        seed: Optional[int] = None,
    ) -> "RefitOutcome":
        """Train (or read from ``home/refits``) the refit encoder that :meth:`run` would use, and nothing else.

        Same data, same split, same corpus and the same ``refit_encoder`` call as the ``refit`` rung in
        :meth:`run`, so a later ``run`` with this config finds the stored refit instead of training it.
        Nothing is written to the run store, so it can run under ``accelerate launch`` (every process
        calls it with the same arguments; only the main one writes the refit). The refit rung's
        settings come from ``config.rung_params["refit"]``, whether or not ``"refit"`` is in
        ``config.rungs``. ``seed`` (default: the first seed) matters only with ``refit_per_seed=True``
        or ``corpus_filter="nearest-positive"``; otherwise every seed shares one refit.

        Example:
            >>> cfg = StudyConfig(rungs=["probe", "refit"], seeds=5,
            ...                   rung_params={"refit": {"budget": "300steps", "mixed_precision": "bf16"}})
            >>> out = Study(cfg, home="runs").refit(labeled, unlabeled=abstracts)  # doctest: +SKIP
            >>> out.key[:12], out.reused, out.manifest["runtime"]["num_processes"]  # doctest: +SKIP
            ('3f9c0d2a71be', False, 4)
            >>> Study(cfg, home="runs").run(labeled, unlabeled=abstracts)  # reuses it  # doctest: +SKIP
        """
        from adaptlab.rungs.refit import RefitRung
        from adaptlab.rungs.runtime import is_main_process

        cfg = self.config
        say = progress or (lambda _msg: None)
        rung = next((r for r in self.rungs if isinstance(r, RefitRung)), None)
        if rung is None:
            rung = get_rung("refit", cfg.rung_params.get("refit"))
            fitted_rungs = [rung]
            self._study_precision_rungs += _apply_study_precision(fitted_rungs, cfg)
            rung = fitted_rungs[0]
        seed = cfg.seed_values[0] if seed is None else int(seed)
        prepared = self._prepare(data, test, say, seeds=[seed])
        cache = None
        if is_main_process():
            from adaptlab.encoders import EmbeddingCache

            # Read only by a corpus_filter; the other processes of a launch compute without it (no writes).
            cache = EmbeddingCache(self.home / "cache" / "embeddings.sqlite")
        context = self._context(prepared, self._load_encoder(), cache, unlabeled)
        split = prepared.splits[seed]
        if rung.config.mixed_precision == "auto":  # the same decision `run` makes, so the same refit key
            from adaptlab.rungs.runtime import world_size

            (rung,), _ = self._training_precision([rung], prepared.full, split, context, say,
                                                  can_train=world_size() == 1)
        context = self._seed_context(context, prepared.full, split, rungs=[rung])
        return rung.refit(prepared.full.subset(split.train), prepared.full.subset(split.val), seed=seed,
                          context=context)

    def _prepare(self, data: TextDataset, test: Optional[TextDataset], say: Progress,
                 seeds: Optional[list[int]] = None) -> PreparedData:
        """Check the labels, append the --test file, resolve the classes and draw every seed's split."""
        cfg = self.config
        if data.labels is None:
            raise DataError("the study data has no labels; pass --label-col NAME naming the label column.")
        full, test_indices = data, None
        if test is not None:
            if test.labels is None:
                raise DataError("the --test file has no labels; a sealed test set needs them (--label-col NAME).")
            unseen = sorted(set(test.labels) - set(data.labels))
            if unseen:
                raise DataError(
                    f"the --test file has label(s) {unseen} that never occur in --data; a rung cannot learn them. "
                    "Add training examples of these classes or remove them from the test file."
                )
            full = _concat(data, test)
            test_indices = list(range(len(data), len(full)))
        classes = sorted(set(full.labels))
        positive = resolve_positive_label(classes, full.labels, cfg.positive_label)

        say(f"finding near-duplicates among {len(full)} labeled texts ...")
        clusters = find_near_duplicates(full.texts, threshold=cfg.near_dup_threshold)
        splits = {
            seed: split_dataset(
                full, strategy=cfg.split, test_size=cfg.test_size, val_size=cfg.val_size, seed=seed,
                test_seed=cfg.test_seed, test_indices=test_indices, clusters=clusters,
                near_dup_threshold=cfg.near_dup_threshold,
            )
            for seed in (cfg.seed_values if seeds is None else seeds)
        }
        return PreparedData(full=full, test_indices=test_indices, classes=classes, positive=positive,
                            clusters=clusters, splits=splits)

    def _context(self, prepared: PreparedData, encoder: Any, cache: Any,
                 unlabeled: Optional[TextDataset]) -> RungContext:
        return RungContext(classes=prepared.classes, positive_label=prepared.positive, encoder=encoder, cache=cache,
                           unlabeled=unlabeled, show_progress=self.show_progress,
                           budget=Budget.parse(self.config.budget), home=self.home)

    def _training_precision(self, rungs: list[Any], full: TextDataset, split: Any, context: RungContext,
                            say: Progress, can_train: bool = True) -> tuple[list[Any], dict[str, dict[str, Any]]]:
        """``rungs`` with every ``mixed_precision="auto"`` resolved (bf16 where native and the gate on ``split``
        passes, else float32), and each such rung's :class:`TrainingPrecisionChoice` as a dict."""
        from adaptlab.evaluate.training_precision import choose_training_precision, gate_key, resolved_rung

        out, choices = [], {}
        for rung in rungs:
            if getattr(rung.config, "mixed_precision", None) != "auto":
                out.append(rung)
                continue
            ctx = self._seed_context(context, full, split, rungs=[rung])
            device = str(getattr(ctx.encoder, "device", "cpu"))
            key = gate_key(rung, ctx, full.content_hash, split.fingerprint, split.seed,
                           self.config.precision_tolerance, device)
            # The gate compares two numeric paths: samples decide it (the refit's corpus too), at a few
            # seconds instead of encoding the whole split twice.
            gate_ctx = replace(ctx, unlabeled=_unlabeled_sample(ctx.unlabeled, split.seed))
            choice = choose_training_precision(
                rung, _gate_sample(full.subset(split.train), split.seed),
                _gate_sample(full.subset(split.val), split.seed), seed=split.seed, context=gate_ctx,
                tolerance=self.config.precision_tolerance, home=self.home, key=key, say=say, can_train=can_train,
                asked=rung.name not in self._study_precision_rungs)
            say(choice.message)
            out.append(resolved_rung(rung, choice))
            choices[rung.name] = choice.to_dict()
        return out, choices

    def _seed_context(self, context: RungContext, full: TextDataset, split: Any,
                      rungs: Optional[list[Any]] = None) -> RungContext:
        """``context`` for one seed: a transductive refit may read the test *texts* (never labels); audited."""
        if any(getattr(r.config, "transductive", False) for r in (self.rungs if rungs is None else rungs)):
            return replace(context, test_texts=full.subset(
                split.unseal_test("transductive refit: test texts, no labels")).texts)
        return context

    def _gate_scorer(self, full: TextDataset, split: Any, cache: Any, classes: list[str], positive: Optional[str],
                     rung: Any) -> Callable[[Any], float]:
        """``encoder -> validation F1`` of the frozen rung's head on one split (train fits, validation scores)."""
        from adaptlab.encoders.cache import embed
        from adaptlab.rungs.head import select_logistic_head
        from adaptlab.rungs.probe import ProbeConfig

        default = ProbeConfig()
        C_grid = list(getattr(rung.config, "C_grid", default.C_grid))
        batch_size = int(getattr(rung.config, "batch_size", default.batch_size))
        train_ds, val_ds = (_gate_sample(full.subset(split.train), split.seed),
                            _gate_sample(full.subset(split.val), split.seed))

        def validation_f1(enc: Any) -> float:
            X_train = embed(enc, train_ds.texts, cache=cache, batch_size=batch_size, show_progress=self.show_progress)
            X_val = embed(enc, val_ds.texts, cache=cache, batch_size=batch_size, show_progress=self.show_progress)
            _head, _C, val = select_logistic_head(X_train, train_ds.labels, X_val, val_ds.labels, C_grid=C_grid,
                                                  seed=split.seed, classes=classes, positive=positive)
            return float(val["f1"])

        return validation_f1

    def _summarise(self, per_seed, y_test, classes, positive) -> list[dict[str, Any]]:
        rows = []
        for rung in self.rungs:
            runs = [p for p in per_seed if p["rung"] == rung.name]
            if not runs:
                continue  # a decision-driven study may never run a rung (its allocation says why)
            f1 = np.array([r["test"]["f1"] for r in runs])
            lo, hi = seed_and_test_bootstrap(y_test, [r["y_pred"] for r in runs], classes, positive,
                                             n_boot=self.config.n_boot, seed=self.config.test_seed)
            row: dict[str, Any] = {
                "rung": rung.name,
                "summary": rung.summary,
                "n_seeds": len(runs),
                "f1_by_seed": [float(x) for x in f1],
                "mean": float(f1.mean()),
                "std": float(f1.std(ddof=1)) if len(f1) > 1 else 0.0,
                "ci_low": lo,
                "ci_high": hi,
                "val_f1_mean": float(np.mean([r["val"]["f1"] for r in runs])),
                "accuracy_mean": float(np.mean([r["test"]["accuracy"] for r in runs])),
                "fit_seconds_mean": float(np.mean([r["cost"]["fit_seconds"] for r in runs])),
                "uses_encoder": rung.uses_encoder,
            }
            low = [r["fidelity"] for r in runs if r.get("fidelity", 1.0) < 1.0]
            if low:
                row["fidelity"] = float(min(low))  # only screened: a share of the training budget
            if positive is not None:
                row["auprc_mean"] = float(np.nanmean([r["test"].get("auprc", np.nan) for r in runs]))
            cleans = [r for r in runs if r.get("test_clean")]
            if cleans:
                row["leakage_inflation"] = float(np.mean([r["test"]["f1"] - r["test_clean"]["f1"] for r in cleans]))
            rows.append(row)
        return rows


def recompute_set(recompute: "str | Sequence[str] | None", rungs: list[str]) -> set[str]:
    """The rung names of ``recompute`` (comma-separated text or a list; ``"all"`` for every rung), checked.

    Example:
        >>> sorted(recompute_set("probe,tfidf", ["tfidf", "probe"])), recompute_set("all", ["tfidf"])
        (['probe', 'tfidf'], {'all'})
    """
    if not recompute:
        return set()
    names = [n.strip() for n in (recompute.split(",") if isinstance(recompute, str) else recompute) if n.strip()]
    unknown = [n for n in names if n != "all" and n not in rungs]
    if unknown:
        raise ConfigError.invalid("recompute", ",".join(unknown), f"all, or rungs of this study ({', '.join(rungs)})",
                                  "Name the rungs whose stored results you want trained again.")
    return set(names)


def _both(first: Callable[[Any], None], second: Optional[Callable[[Any], None]]) -> Callable[[Any], None]:
    """One ``on_event`` that calls ``first`` (the notebook's bar), then the caller's own, if any."""
    if second is None:
        return first

    def call(ev: Any) -> None:
        first(ev)
        second(ev)

    return call


def adaptive_kind(rung: Any) -> str:
    """How a decision-driven study treats ``rung``: ``shared`` (the refit: one costly refit shared by its
    seeds), ``network`` (trains the encoder: can be screened at a reduced budget), ``cheap`` (the rest): the
    rung catalogue's kind (:func:`adaptlab.rungs.ladder.kind`); a plugin rung by whether it trains a network."""
    from adaptlab.rungs.ladder import catalogued, kind

    if catalogued(rung.name):
        return kind(rung.name)
    return "network" if rung.trains_network else "cheap"


def fidelity_budget(rung: Any, budget: Optional[Budget], fidelity: float, n_train: int) -> Budget:
    """The training budget of ``rung`` at ``fidelity`` (a share of the study's budget; without one, a
    share of the steps its ``max_epochs`` allow on ``n_train`` texts).

    Example:
        >>> fidelity_budget(None, Budget(steps=400), 0.25, 1000)
        Budget(steps=100, seconds=None)
    """
    if budget is not None and budget.steps is not None:
        return Budget(steps=max(1, int(round(budget.steps * fidelity))))
    if budget is not None and budget.seconds is not None:
        return Budget(seconds=budget.seconds * fidelity)
    cfg = rung.config
    steps = int(getattr(cfg, "max_epochs", 10)) * max(1, -(-n_train // int(getattr(cfg, "batch_size", 16))))
    return Budget(steps=max(1, int(round(steps * fidelity))))


def allocation_rows(grid: list[tuple[Any, int, str, float]]) -> list[tuple[Any, int, str, float]]:
    """The cells a decision-driven study summarises: each rung's full-budget seeds, or (a rung only
    screened) its highest-fidelity runs, which the table and the decision mark as such."""
    out = []
    rungs = list(dict.fromkeys(r for r, *_ in grid))
    for rung in rungs:
        mine = list(dict.fromkeys((r, s, k, f) for r, s, k, f in grid if r is rung))
        top = max(f for *_, f in mine)
        out += sorted((c for c in mine if c[3] == top), key=lambda c: c[1])
    return out
