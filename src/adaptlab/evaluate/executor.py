"""Where a study's (rung, seed) jobs run: in this process (the default) or as Ray tasks.

A `Study` turns its grid into :class:`Job` objects (rung, seed, split, context) after it has done the
shared work once on the driver: the split of every seed, the embedding of every labeled text, the
int8 gate. An executor runs the jobs with :func:`run_job` and hands each result back to the driver,
which alone writes the SQLite run store, so there is never more than one writer.

* :class:`InProcessExecutor` runs the jobs one after the other and lets an exception stop the study:
  exactly what `Study.run` always did.
* :class:`RayExecutor` sends every job to Ray with its resource request. Large inputs travel once per
  study (``ray.put``) and are unpacked once per worker process: the labeled data, the unlabeled corpus,
  each encoder, and the labeled texts' embeddings (so a worker on another machine needs neither the
  driver's cache file nor a second encoding pass). A job whose task raises, whose worker process dies
  or whose node is lost is resubmitted up to ``max_retries`` times (user errors, which fail the same way
  every time, are not); the others go on, and the ones that still fail are reported together at the end.
  Jobs that share an expensive artifact (one refit encoder shared by all seeds) are ordered: the first
  one trains and stores it under ``home/refits/<key>``, the others start once it is there and read it.

Numbers do not depend on the executor: both call the same :func:`run_job` on the same inputs.
"""
from __future__ import annotations

import copy
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import numpy as np

import adaptlab
from adaptlab.cancel import check_cancelled
from adaptlab.config import ExecutorConfig
from adaptlab.data import TextDataset
from adaptlab.errors import AdaptlabError, ConfigError
from adaptlab.metrics import score
from adaptlab.rungs import RungContext

RAY_VERSION = "2.60.0"
RAY_INSTALL = f'.venv/bin/pip install "ray=={RAY_VERSION}"'

Say = Callable[[str], None]
OnResult = Callable[["Job", dict[str, Any]], None]


@dataclass
class Job:
    """One (rung, seed) cell of the grid, with everything needed to fit and score it.

    ``context`` is this job's own copy (its encoder may be the int8 one); ``group`` names a shared
    artifact (e.g. ``"refit:<key>"``): jobs of one group wait until the first of them has succeeded.
    """

    index: int
    key: str
    rung: Any
    seed: int
    split: Any
    context: RungContext
    group: Optional[str] = None
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.rung.name} seed {self.seed}"


@dataclass
class JobFailure:
    """A job that failed on every attempt: which one, how often it was tried, the last error."""

    key: str
    rung: str
    seed: int
    attempts: int
    error: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class JobsFailedError(AdaptlabError):
    """Some jobs of a study failed after their retries; every other result is in the run store.

    ``failures`` lists them; running the same study again trains only the missing ones.
    """

    exit_code = 1

    def __init__(self, failures: list[JobFailure], n_done: int) -> None:
        self.failures = failures
        self.n_done = n_done
        lines = [f"{len(failures)} job(s) failed after all their attempts; the {n_done} other result(s) are stored "
                 "in the run store:"]
        lines += [f"  - {f.rung} seed {f.seed} ({f.attempts} attempt(s)): {f.error}" for f in failures]
        lines.append("Fix the cause and run the same study again: only the failed jobs run (the others are read "
                     "from the store).")
        super().__init__("\n".join(lines))


# ------------------------------------------------------------------------------------------ the job itself
def run_job(job: Job, full: TextDataset) -> dict[str, Any]:
    """Fit ``job.rung`` on its seed's train/validation, then read the sealed test once and score it.

    Returns the JSON-safe ``{"metrics", "predictions", "manifest"}`` the driver stores. ``job.split``
    is not modified: the test read is recorded on a copy, so each manifest lists the reads made for
    its own result (plus any read made for the whole seed, e.g. a transductive refit's).
    """
    rung, seed, context = job.rung, job.seed, job.context
    classes, positive = context.classes, context.positive_label
    split = copy.copy(job.split)
    split.test_reads = list(job.split.test_reads)
    train_ds, val_ds = full.subset(split.train), full.subset(split.val)
    fitted = rung.fit(train_ds, val_ds, seed=seed, context=context)
    # The only place the sealed test is read: after the rung is fitted and its choices are frozen.
    test_idx = split.unseal_test(f"evaluate {rung.name} seed {seed}")
    test_ds = full.subset(test_idx)
    proba = fitted.predict_proba(test_ds.texts)
    pred = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
    test_scores = score(test_ds.labels, pred, proba, classes, positive)
    leaked = np.zeros(len(test_idx), dtype=bool)
    leaked[split.leakage.test_leaked_positions(test_idx)] = True
    clean = None
    if leaked.any() and (~leaked).sum() > 0:
        keep = ~leaked
        clean = score(np.asarray(test_ds.labels, dtype=object)[keep], pred[keep], proba[keep], classes, positive)
    metrics = {
        "test": test_scores,
        "test_clean": clean,
        "n_test_leaked": int(leaked.sum()),
        "val": fitted.val_scores_,
        "selected": fitted.selected_,
        "cost": fitted.cost_.to_dict(),
        "diagnostics": getattr(fitted, "diagnostics_", None),
    }
    encoder_info = None
    if rung.uses_encoder and context.encoder is not None:
        encoder_info = {"precision": "fp32", **context.encoder.info}
    manifest = {
        "adaptlab_version": adaptlab.__version__,
        "rung": rung.identity(context),
        "seed": seed,
        "data_hash": full.content_hash,
        "split": {"strategy": split.strategy, "fingerprint": split.fingerprint, "seed": seed,
                  "test_seed": split.test_seed, "n_train": len(split.train), "n_val": len(split.val),
                  "n_test": len(test_idx)},
        "encoder": encoder_info,
        "positive_label": positive,
        "test_reads": list(split.test_reads),
    }
    predictions = {
        "test_ids": list(test_ds.ids),
        "y_true": list(test_ds.labels),
        "y_pred": [str(p) for p in pred],
        "proba": np.round(proba, 5).tolist(),
    }
    return {"metrics": metrics, "predictions": predictions, "manifest": manifest}


def shared_artifact_key(rung: Any, train: TextDataset, val: TextDataset, seed: int, context: RungContext) -> Optional[str]:
    """The content key of an expensive artifact this job would build and others reuse, or None.

    Today that is the refit encoder: one refit (same base, corpus, config, budget and refit seed) is
    shared by every seed unless ``refit_per_seed``. Jobs with the same key must not train it
    concurrently (the refit's training lock would refuse the second one), so executors that run jobs
    in parallel let the first one build it and start the others after it.
    """
    hook = getattr(rung, "shared_artifact_key", None)
    if callable(hook):
        return hook(train, val, seed=seed, context=context)
    from adaptlab.rungs.refit.rung import RefitRung

    if not isinstance(rung, RefitRung) or context.encoder is None:
        return None
    from adaptlab.rungs.refit.core import canonical_corpus, refit_key, resolve_budget

    cfg = rung.config
    texts, _info = rung.refit_corpus(train, val, context)
    corpus, corpus_hash = canonical_corpus(texts)
    budget = resolve_budget(cfg, context.budget, len(corpus))
    refit_seed = int(seed) if cfg.refit_per_seed else cfg.refit_seed
    return "refit:" + refit_key(context.encoder.fingerprint, corpus_hash, cfg, budget, refit_seed)


# ------------------------------------------------------------------------------------------ executors
class Executor(ABC):
    """Runs jobs and hands each result to ``on_result`` on the driver, in the order they finish."""

    kind: str = ""
    # Whether jobs may run at the same time (then shared artifacts are built by one job first).
    parallel: bool = False

    @abstractmethod
    def run(self, jobs: list[Job], full: TextDataset, *, on_result: OnResult, say: Say,
            primed: Optional[dict[str, tuple[list[str], np.ndarray]]] = None,
            on_start: Optional[Callable[[Job], None]] = None) -> list[JobFailure]:
        """Run ``jobs``; return the ones that failed for good (an in-process executor raises instead).

        ``on_start(job)`` is called when a job starts (in process) or is handed to the cluster (Ray).
        """

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}


class InProcessExecutor(Executor):
    """One job after the other in this process; the first exception stops the study (results so far stay stored).

    Example:
        >>> Study(StudyConfig(rungs=["tfidf"]), executor="inprocess")   # the default  # doctest: +SKIP
    """

    kind = "inprocess"

    def run(self, jobs: list[Job], full: TextDataset, *, on_result: OnResult, say: Say,
            primed: Optional[dict[str, tuple[list[str], np.ndarray]]] = None,
            on_start: Optional[Callable[[Job], None]] = None) -> list[JobFailure]:
        for job in jobs:
            check_cancelled()  # a cancel between two cells (one inside a cell stops at its next step)
            say(f"{job.rung.name:>8} seed {job.seed}: training on {len(job.split.train)}, "
                f"validating on {len(job.split.val)} ...")
            if on_start is not None:
                on_start(job)
            on_result(job, run_job(job, full))
        return []


def import_ray() -> Any:
    """``import ray``, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            f"executor='ray' needs Ray, which is not installed ({exc}). Install it with: {RAY_INSTALL} "
            "(for a ray://host:port address also the client extra: pip install \"ray[client]==2.60.0\"), "
            "or run with executor='inprocess' (--executor inprocess)."
        ) from None
    return ray


class RayExecutor(Executor):
    """Runs every job as a Ray task with the resources its rung asks for.

    ``config.address``: ``None`` starts a local Ray instance for this study (stopped afterwards);
    ``"auto"`` joins the cluster of this machine; ``"ray://head:10001"`` connects through Ray Client.
    If Ray is already initialised in this process (e.g. by a notebook or a test), that connection is
    used and left open.

    Example:
        >>> from adaptlab.config import ExecutorConfig
        >>> ex = RayExecutor(ExecutorConfig(kind="ray", address="auto", max_retries=2,
        ...                                 rung_resources={"refit": {"gpus": 1}}))    # doctest: +SKIP
        >>> Study(StudyConfig(rungs=["tfidf", "probe", "refit"]), executor=ex).run(data)  # doctest: +SKIP
    """

    kind = "ray"
    parallel = True

    def __init__(self, config: Optional[ExecutorConfig] = None) -> None:
        self.config = config or ExecutorConfig(kind="ray")
        self._ray = import_ray()  # fail at construction, before any work, when Ray is missing
        self._owned = False

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": self.config.address, "max_retries": self.config.max_retries}

    # ------------------------------------------------------------------ connection
    def _connect(self, say: Say) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {}
        if self.config.runtime_env:
            kwargs["runtime_env"] = self.config.runtime_env
        if self.config.address is None:
            say("starting a local Ray instance ...")
            # Worker output would interleave with the study's progress; task errors come back anyway.
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
        else:
            say(f"connecting to the Ray cluster at {self.config.address} ...")
            if not self.config.address.startswith("ray://"):
                # As locally: worker prints would land in this process's stdout (and in --json output).
                # Ray Client does not forward worker output unless asked.
                kwargs["log_to_driver"] = False
            try:
                self._init_with_retry(address=self.config.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError.invalid(
                    "ray_address", self.config.address, "the address of a running Ray cluster",
                    f"Ray could not connect: {exc}. {_connect_fix(self.config.address, exc)}",
                ) from exc
        self._owned = True

    def _init_with_retry(self, **kwargs: Any) -> None:
        # Ray Client starts a server process for each driver that connects; on a busy head it sometimes
        # fails to start in time ("Starting Ray client server failed") and a second try succeeds.
        for attempt in range(3):
            try:
                self._ray.init(**kwargs)
                return
            except ConnectionError as exc:
                transient = "client server failed" in str(exc) or isinstance(exc, ConnectionAbortedError)
                if attempt == 2 or not str(kwargs.get("address", "")).startswith("ray://") or not transient:
                    raise
                time.sleep(2.0 * (attempt + 1))

    def _disconnect(self) -> None:
        if self._owned:
            self._ray.shutdown()
            self._owned = False

    # ------------------------------------------------------------------ run
    def run(self, jobs: list[Job], full: TextDataset, *, on_result: OnResult, say: Say,
            primed: Optional[dict[str, tuple[list[str], np.ndarray]]] = None,
            on_start: Optional[Callable[[Job], None]] = None) -> list[JobFailure]:
        if not jobs:
            return []
        ray = self._ray
        self._connect(say)
        pending: dict[Any, tuple[Job, int]] = {}
        try:
            shared, payloads = self._pack(jobs, full, primed)
            shared_ref = ray.put(shared)
            remote = ray.remote(_ray_job)
            cluster = ray.cluster_resources()
            say(f"dispatching {len(jobs)} job(s) to Ray ({cluster.get('CPU', 0):g} CPU, {cluster.get('GPU', 0):g} GPU "
                f"in the cluster; up to {self.config.max_retries} retries each) ...")

            def submit(job: Job, attempt: int) -> None:
                opts = {**job.resources, "max_retries": 0, "name": f"adaptlab {job.label}"}
                pending[remote.options(**opts).remote(shared_ref, payloads[job.index])] = (job, attempt)
                if on_start is not None and attempt == 0:
                    on_start(job)

            waiting: dict[str, deque[Job]] = {}
            for job in jobs:
                if job.group is not None and job.group in waiting:
                    waiting[job.group].append(job)  # starts after the group's first job has built the artifact
                    continue
                if job.group is not None:
                    waiting[job.group] = deque()
                submit(job, 0)

            failures: list[JobFailure] = []
            n_done = 0
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job, attempt = pending.pop(done[0])
                try:
                    out = ray.get(done[0])
                except Exception as exc:  # noqa: BLE001 - any task failure is retried or reported
                    cause = _cause(exc)
                    retry = attempt < self.config.max_retries and not isinstance(cause, AdaptlabError)
                    say(f"{job.rung.name:>8} seed {job.seed}: attempt {attempt + 1} failed ({_describe(exc)})"
                        + ("; retrying" if retry else ""))
                    if retry:
                        submit(job, attempt + 1)
                        continue
                    failures.append(JobFailure(job.key, job.rung.name, job.seed, attempt + 1, _describe(exc)))
                    queue = waiting.get(job.group) if job.group is not None else None
                    if queue:  # the next job of the group tries to build the artifact itself
                        submit(queue.popleft(), 0)
                    continue
                n_done += 1
                on_result(job, out)
                if job.group is not None:
                    for other in waiting.pop(job.group, deque()):
                        submit(other, 0)
            return failures
        finally:
            for ref in list(pending):
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
            self._disconnect()

    def _pack(self, jobs: list[Job], full: TextDataset,
              primed: Optional[dict[str, tuple[list[str], np.ndarray]]]) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        """Put each large input into the object store once; jobs carry only references to them.

        References are nested in lists so Ray does not resolve them per task: workers resolve each one
        once and keep it (see ``_worker_get``).
        """
        ray = self._ray
        encoders: dict[int, Any] = {}
        unlabeled: dict[int, Any] = {}
        caches: dict[int, Any] = {}
        for job in jobs:
            ctx = job.context
            if ctx.encoder is not None and id(ctx.encoder) not in encoders:
                encoders[id(ctx.encoder)] = [ray.put(ctx.encoder)]
            if ctx.unlabeled is not None and id(ctx.unlabeled) not in unlabeled:
                unlabeled[id(ctx.unlabeled)] = [ray.put(ctx.unlabeled)]
            if ctx.cache is not None:
                caches[id(ctx.cache)] = ctx.cache
        shared = {
            "full": [ray.put(full)],
            "primed": [ray.put(primed)] if primed else None,
        }
        payloads = {}
        for job in jobs:
            ctx = job.context
            payloads[job.index] = {
                "key": job.key, "index": job.index, "rung": job.rung, "seed": job.seed, "split": job.split,
                "context": replace(ctx, encoder=None, unlabeled=None, cache=None, show_progress=False),
                "encoder": encoders.get(id(ctx.encoder)) if ctx.encoder is not None else None,
                "unlabeled": unlabeled.get(id(ctx.unlabeled)) if ctx.unlabeled is not None else None,
                # An EmbeddingCache pickles as its path; a worker reopens the file if it can see it.
                "cache": ctx.cache,
            }
        return shared, payloads


def _connect_fix(address: str, exc: BaseException) -> str:
    """How to fix a failed connection to ``address``.

    A cluster that wants an authentication token refuses the driver the way a dead one would (Ray only
    names the cause deep in the chained errors, or not at all through Ray Client), and the usual fix,
    starting a cluster, would be wrong there.
    """
    chain, seen = [], exc
    while seen is not None and len(chain) < 10:
        chain.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    refused = any("InvalidAuthToken" in c or "AuthenticationError" in c for c in chain)
    token_mode = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    if refused or (address.startswith("ray://") and not token_mode):
        how = ("`ray start --head` turns token authentication on when a token exists (~/.ray/auth_token, which any "
               "local ray.init() creates), and Ray sends the token to an explicit address only with "
               "RAY_AUTH_MODE=token set before Python starts: export RAY_AUTH_MODE=token, with the cluster's token "
               "in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN (`ray get-auth-token` on the head "
               "prints it).")
        if refused:
            return f"The cluster wants an authentication token that this driver did not send or got wrong: {how}"
        return f"If the cluster uses token authentication: {how}"
    return "Start one with `ray start --head`, or pass no address to start a local instance."


def _cause(exc: BaseException) -> BaseException:
    """The exception raised inside the task, when Ray carried it back (RayTaskError.cause)."""
    return getattr(exc, "cause", None) or exc


def _describe(exc: BaseException) -> str:
    cause = _cause(exc)
    name = type(cause).__name__
    if "WorkerCrashed" in name or "ActorDied" in name or "NodeDied" in name or "ObjectLost" in name:
        return f"the worker process died ({name})"
    text = str(cause).strip().splitlines()
    out = f"{name}: {text[-1] if text else ''}"[:500]
    if "No module named 'adaptlab'" in str(cause) or "No module named \"adaptlab\"" in str(cause):
        out += (" (the Ray workers cannot import adaptlab: install the same adaptlab version on every node, "
                "or pass runtime_env={'pip': [...]} in ExecutorConfig)")
    return out


def make_executor(spec: "str | ExecutorConfig | Executor | None") -> Executor:
    """An executor from ``"inprocess"``, ``"ray"``, an :class:`ExecutorConfig` or an executor instance.

    Example:
        >>> make_executor("inprocess").kind
        'inprocess'
    """
    if spec is None:
        return InProcessExecutor()
    if isinstance(spec, Executor):
        return spec
    if isinstance(spec, str):
        spec = ExecutorConfig(kind=spec)
    if not isinstance(spec, ExecutorConfig):
        raise ConfigError.invalid("executor", spec, "'inprocess', 'ray', an ExecutorConfig or an Executor")
    return RayExecutor(spec) if spec.kind == "ray" else InProcessExecutor()


# ------------------------------------------------------------------------------------------ worker side
# Objects a worker process has unpacked, by object-store id: each large input is deserialised once per
# worker, not once per task. Few entries (one study's inputs), so no eviction beyond a small cap.
_WORKER_CACHE: dict[str, Any] = {}
_WORKER_CACHE_MAX = 16


def _worker_get(holder: Optional[list[Any]]) -> Any:
    if holder is None:
        return None
    ref = holder[0]
    key = ref.hex()
    if key not in _WORKER_CACHE:
        import ray

        if len(_WORKER_CACHE) >= _WORKER_CACHE_MAX:
            _WORKER_CACHE.pop(next(iter(_WORKER_CACHE)))
        _WORKER_CACHE[key] = ray.get(ref)
    return _WORKER_CACHE[key]


def _ray_job(shared: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: rebuild the job from references, run it, return the result (stored by the driver)."""
    from adaptlab.encoders.cache import PrimedCache

    t0 = time.perf_counter()
    full = _worker_get(shared["full"])
    primed = _worker_get(shared["primed"])
    encoder = _worker_get(payload["encoder"])
    cache = payload["cache"]
    if primed:
        cache = PrimedCache(primed, backing=cache)
    context = replace(payload["context"], encoder=encoder, unlabeled=_worker_get(payload["unlabeled"]), cache=cache)
    job = Job(index=payload["index"], key=payload["key"], rung=payload["rung"], seed=payload["seed"],
              split=payload["split"], context=context)
    out = run_job(job, full)
    out["worker"] = {"pid": os.getpid(), "seconds": time.perf_counter() - t0}
    return out
