"""`ModelRegistry`: every version of a shipped model, its training data, a fixed sealed evaluation set.

Layout of a model folder (what ``adaptlab ship -o MODEL`` creates)::

    MODEL/
      registry.json          versions, which one is in use, the gate's settings
      eval.parquet           the sealed evaluation set: the same texts judge every version
      data/<hash>.parquet    the training data of each version (content-addressed)
      blobs/                 encoders and adapters, stored once, referenced by fingerprint
      versions/v0001/        a saved Pipeline (adaptlab.json, weights.safetensors, MODEL_CARD.md)

Data files are Parquet (texts and labels as strings), the registry index is JSON: nothing is pickled.
Rejected versions are kept too (with the gate's reason) so a coordinator can see what was refused.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from adaptlab.data.dataset import TextDataset
from adaptlab.errors import ConfigError

REGISTRY_FILE = "registry.json"
REGISTRY_FORMAT = "adaptlab-registry-v1"
EVAL_FILE = "eval.parquet"
DEFAULT_MAX_DROP = 0.02
PathLike = Union[str, Path]


@dataclass
class ModelVersion:
    """One entry of the registry: a trained version and what happened to it.

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import ModelRegistry, ModelVersion, Pipeline
        >>> texts = [f"great film {i}" for i in range(12)] + [f"awful film {i}" for i in range(12)]
        >>> train = TextDataset(texts, ["pos"] * 12 + ["neg"] * 12)
        >>> pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(train.texts, train.labels)
        >>> reg = ModelRegistry.create("models/films", pipe, train=train, eval_set=train)
        >>> v = reg.current
        >>> isinstance(v, ModelVersion), v.id, v.rung, v.status, v.n_train
        (True, 'v0001', 'tfidf', 'promoted', 24)
    """

    id: str
    created: str
    rung: str
    status: str  # "promoted" (was or is in use) | "rejected" (kept for the record, never used)
    data_hash: str
    n_train: int
    evaluation: dict[str, Any]
    reason: str = ""
    parent: Optional[str] = None
    gate: Optional[dict[str, Any]] = None
    merge: Optional[dict[str, Any]] = None
    # Shipped with --force against its study's "do not ship yet" decision: the status, the ship threshold and
    # the reason the decision gave (adaptlab.ship.from_study.ship_gate). None: not forced.
    forced: Optional[dict[str, Any]] = None

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict."""
        return asdict(self)


@dataclass
class _Index:
    current: Optional[str]
    versions: list[ModelVersion]
    max_drop: float = DEFAULT_MAX_DROP
    eval_hash: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_dataset(ds: TextDataset, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {"id": [str(i) for i in ds.ids], "text": list(ds.texts),
            "label": list(ds.labels) if ds.labels is not None else [None] * len(ds)}
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table(cols), str(tmp))
    os.replace(tmp, path)


def read_dataset(path: Path) -> TextDataset:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ConfigError(f"{str(path)!r} is missing: the model folder is incomplete. Copy the whole folder.")
    t = pq.read_table(str(path)).to_pydict()
    if set(t) != {"id", "text", "label"}:
        raise ConfigError(f"{str(path)!r} has columns {sorted(t)}, expected id, text, label: it was edited.")
    labels = t["label"]
    return TextDataset(texts=[str(x) for x in t["text"]], ids=[str(x) for x in t["id"]],
                       labels=None if all(v is None for v in labels) else [str(v) for v in labels],
                       source=str(path))


class ModelRegistry:
    """The versions of one shipped model (see the module docstring for the folder layout).

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import ModelRegistry, Pipeline
        >>> texts = [f"great film {i}" for i in range(12)] + [f"awful film {i}" for i in range(12)]
        >>> train = TextDataset(texts, ["pos"] * 12 + ["neg"] * 12)
        >>> test = TextDataset(["great plot", "awful plot", "great cast", "awful cast"], ["pos", "neg", "pos", "neg"])
        >>> pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(train.texts, train.labels)
        >>> reg = ModelRegistry.create("models/films", pipe, train=train, eval_set=test)
        >>> reg.current.id, reg.current.evaluation["f1"]
        ('v0001', 1.0)
        >>> ModelRegistry("models/films").load().predict(["a great film"]).tolist()
        ['pos']
    """

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root).expanduser()
        index = self.root / REGISTRY_FILE
        if not index.is_file():
            if (self.root / "adaptlab.json").is_file():
                raise ConfigError(f"{str(self.root)!r} is a single saved model, not a model registry: retrain and "
                                  "rollback need a folder made by `adaptlab ship -o FOLDER` (or ModelRegistry.create).")
            raise ConfigError(f"{str(self.root)!r} is not an adaptlab model folder ({REGISTRY_FILE} is missing). "
                              "Create one with `adaptlab ship DATA -o FOLDER`.")
        try:
            raw = json.loads(index.read_text(encoding="utf-8"))
            if raw.get("format") != REGISTRY_FORMAT:
                raise ValueError(f"format {raw.get('format')!r}")
            self._index = _Index(current=raw["current"], versions=[ModelVersion(**v) for v in raw["versions"]],
                                 max_drop=float(raw.get("max_drop", DEFAULT_MAX_DROP)),
                                 eval_hash=raw.get("eval_hash", ""), events=list(raw.get("events", [])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read {str(index)!r} ({exc}); it was edited or is from another version.") from exc

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, root: PathLike, pipeline: Any, *, train: TextDataset, eval_set: TextDataset,
               max_drop: float = DEFAULT_MAX_DROP, extra: Optional[dict[str, Any]] = None) -> "ModelRegistry":
        """A new registry whose first version is the fitted ``pipeline`` (trained on ``train``)."""
        from adaptlab.ship.evaluation import evaluate_pipeline

        root = Path(root).expanduser()
        if (root / REGISTRY_FILE).exists():
            raise ConfigError(f"{str(root)!r} already holds a model. Use `adaptlab retrain {root} NEW_LABELS.csv` to "
                              "add labels, or choose another folder.")
        if root.exists() and any(root.iterdir()):
            raise ConfigError.invalid("output folder", str(root), "a new or empty folder", "Choose another path.")
        _check_max_drop(max_drop)
        if eval_set.labels is None or len(eval_set) == 0:
            raise ConfigError("the sealed evaluation set needs labeled texts.")
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "versions").mkdir(exist_ok=True)
        write_dataset(eval_set, root / EVAL_FILE)
        _write_json_atomic(root / REGISTRY_FILE, {"format": REGISTRY_FORMAT, "current": None, "versions": [],
                                                  "max_drop": float(max_drop), "eval_hash": eval_set.content_hash,
                                                  "events": []})
        reg = cls(root)
        evaluation = evaluate_pipeline(pipeline, eval_set)
        forced = (extra or {}).get("forced")
        reason = "first version"
        if forced:
            reason += (f"; forced past study {str(forced.get('study_id') or '')[:12]}'s decision "
                       f"({forced.get('status')}): {forced.get('reason')}")
        reg.add_version(pipeline, train, evaluation, status="promoted", reason=reason, extra=extra, forced=forced)
        return reg

    # ------------------------------------------------------------------ reading
    @property
    def versions(self) -> list[ModelVersion]:
        """Every version, oldest first."""
        return list(self._index.versions)

    @property
    def current(self) -> ModelVersion:
        """The version in use."""
        cur = self._index.current
        for v in self._index.versions:
            if v.id == cur:
                return v
        raise ConfigError(f"{str(self.root)!r} has no version in use; run `adaptlab models rollback {self.root} VERSION`.")

    @property
    def max_drop(self) -> float:
        """The largest F1 drop the gate accepts for this model."""
        return self._index.max_drop

    @property
    def events(self) -> list[dict[str, Any]]:
        """The registry's history of events (promoted, rejected, held, rollback, ...), oldest first."""
        return list(self._index.events)

    @property
    def held_retrains(self) -> list[dict[str, Any]]:
        """Retrains the label check held (nothing trained, no version stored), oldest first.

        Each is the ``held`` event: ``time``, ``version`` (the one in use then), ``reason`` (the
        evidence in words), ``rows`` (the first flagged rows of the labels file) and, from this
        version on, ``source`` (the labels file's name), ``n_new`` and ``n_flagged_new``.

        Example:
            >>> [e["reason"] for e in ModelRegistry("models/news").held_retrains]   # doctest: +SKIP
            ['confident learning flags 52 of the 80 new label(s) (65%) as likely wrong, ...']
        """
        return [dict(e) for e in self._index.events if e.get("event") == "held"]

    def version(self, version_id: str) -> ModelVersion:
        """The version with id ``version_id``; a ConfigError naming the existing ones otherwise."""
        for v in self._index.versions:
            if v.id == version_id:
                return v
        raise ConfigError.invalid("version", version_id, f"one of {', '.join(v.id for v in self._index.versions)}",
                                  f"See `adaptlab models list {self.root}`.")

    def version_dir(self, version_id: str) -> Path:
        """The folder of version ``version_id``."""
        return self.root / "versions" / self.version(version_id).id

    def load(self, version_id: Optional[str] = None, *, device: str = "cpu", use_cache: bool = True,
             precision: Optional[str] = None) -> Any:
        """The saved pipeline of a version (default: the one in use), verified before loading.

        ``use_cache``: frozen-encoder versions read and write the registry's embedding cache (retrains
        and monitoring embed the same training texts again and again); batch prediction of new texts
        turns it off, as caching millions of one-off texts only costs time and disk. ``precision``: the
        frozen encoder's numeric path (:func:`~adaptlab.ship.pipeline.load_pipeline`; default: as shipped,
        where this hardware runs it natively).
        """
        from adaptlab.ship.pipeline import load_pipeline

        vid = version_id or self.current.id
        pipe = load_pipeline(self.version_dir(vid), device=device, blobs=self.root / "blobs", precision=precision)
        if use_cache and hasattr(pipe.fitted_, "cache"):
            from adaptlab.encoders import EmbeddingCache

            # Frozen-encoder versions share one embedding cache: retrains and monitoring reuse vectors.
            pipe.fitted_.cache = EmbeddingCache(self.root / "embeddings.sqlite")
        return pipe

    def training_data(self, version_id: Optional[str] = None) -> TextDataset:
        """The data a version (default: the one in use) was trained on."""
        v = self.version(version_id) if version_id else self.current
        return read_dataset(self.root / "data" / f"{v.data_hash}.parquet")

    def eval_set(self) -> TextDataset:
        """The sealed evaluation set; a ConfigError if the file changed since the model shipped."""
        ds = read_dataset(self.root / EVAL_FILE)
        if self._index.eval_hash and ds.content_hash != self._index.eval_hash:
            raise ConfigError(f"{str(self.root / EVAL_FILE)!r} changed since the model was shipped (hash mismatch): "
                              "versions can only be compared on the same sealed set. Restore the file.")
        return ds

    # ------------------------------------------------------------------ writing
    def _next_id(self) -> str:
        return f"v{len(self._index.versions) + 1:04d}"

    def add_version(self, pipeline: Any, train: TextDataset, evaluation: dict[str, Any], *, status: str,
                    reason: str, parent: Optional[str] = None, gate: Optional[dict[str, Any]] = None,
                    merge: Optional[dict[str, Any]] = None, extra: Optional[dict[str, Any]] = None,
                    forced: Optional[dict[str, Any]] = None) -> ModelVersion:
        """Save ``pipeline`` as the next version; ``status="promoted"`` also puts it in use. ``forced``: the
        study decision this version was shipped against (``--force``), kept on the version."""
        if status not in ("promoted", "rejected"):
            raise ConfigError.invalid("status", status, "'promoted' or 'rejected'")
        vid = self._next_id()
        data_hash = train.content_hash
        data_file = self.root / "data" / f"{data_hash}.parquet"
        if not data_file.exists():
            write_dataset(train, data_file)
        extra = dict(extra or {})
        lineage = dict(extra.pop("lineage", {}) or {})
        lineage.setdefault("code_version", _version())
        if parent:
            lineage["parent"] = parent
        if merge:
            lineage["new_labels"] = {k: merge[k] for k in ("added", "relabelled", "duplicates", "in_eval_set")
                                     if k in merge}
        card_extra = {**extra, "version": vid, "lineage": lineage, "evaluation": evaluation}
        if gate:
            card_extra["gate"] = gate
        pipeline.save(self.root / "versions" / vid, blobs=self.root / "blobs", extra=card_extra)
        entry = ModelVersion(id=vid, created=_now(), rung=str(pipeline.rung), status=status, data_hash=data_hash,
                             n_train=len(train), evaluation=_summary(evaluation), reason=reason, parent=parent,
                             gate=gate, merge=merge, forced=forced or None)
        self._index.versions.append(entry)
        if status == "promoted":
            self._index.current = vid
        self._index.events.append({"time": entry.created, "event": "promoted" if status == "promoted" else "rejected",
                                   "version": vid, "reason": reason})
        self._save()
        return entry

    def log_event(self, event: str, **details: Any) -> None:
        """Append an event that stores no version (e.g. a retrain held by the label check) to the log."""
        self._index.events.append({"time": _now(), "event": event, **details})
        self._save()

    def rollback(self, version_id: Optional[str] = None) -> ModelVersion:
        """Put an earlier promoted version back in use (default: the one before the current)."""
        promoted = [v for v in self._index.versions if v.status == "promoted"]
        cur = self._index.current
        if version_id is None:
            ids = [v.id for v in promoted]
            pos = ids.index(cur) if cur in ids else len(ids)
            if pos == 0:
                raise ConfigError(f"{cur} is the first version; there is nothing earlier to roll back to.")
            target = promoted[pos - 1]
        else:
            target = self.version(version_id)
            if target.status != "promoted":
                raise ConfigError(f"{target.id} was rejected by the gate ({target.reason}); only versions that passed "
                                  f"it can be put in use: {', '.join(v.id for v in promoted)}.")
        if target.id == cur:
            raise ConfigError(f"{target.id} is already in use.")
        self._index.current = target.id
        self._index.events.append({"time": _now(), "event": "rollback", "version": target.id, "from": cur})
        self._save()
        return target

    def _save(self) -> None:
        _write_json_atomic(self.root / REGISTRY_FILE, {
            "format": REGISTRY_FORMAT, "current": self._index.current, "max_drop": self._index.max_drop,
            "eval_hash": self._index.eval_hash, "versions": [v.to_dict() for v in self._index.versions],
            "events": self._index.events,
        })


def _summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    out = {k: evaluation.get(k) for k in ("metric", "f1", "ci", "accuracy", "n")}
    cal = evaluation.get("calibration") or {}
    if cal.get("ece_after") is not None:  # the confidences the version reports, on the sealed texts
        out["ece"] = cal["ece_after"]
    return out


def _check_max_drop(v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not 0 <= float(v) < 1:
        raise ConfigError.invalid("max_drop", v, "an F1 difference in [0, 1), e.g. 0.02 for two points")


def _version() -> str:
    import adaptlab

    return str(adaptlab.__version__)


def load_model(path: PathLike, version: Optional[str] = None, *, device: str = "cpu", use_cache: bool = True,
               precision: Optional[str] = None) -> Any:
    """A saved pipeline from a registry folder (the version in use, or ``version``) or a single saved model.

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import ModelRegistry, Pipeline, load_model
        >>> train = TextDataset([f"great film {i}" for i in range(12)] + [f"awful film {i}" for i in range(12)],
        ...                     ["pos"] * 12 + ["neg"] * 12)
        >>> pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(train.texts, train.labels)
        >>> _ = ModelRegistry.create("models/films", pipe, train=train, eval_set=train)
        >>> load_model("models/films").predict(["awful"]).tolist(), load_model("models/films", "v0001").rung
        (['neg'], 'tfidf')
    """
    from adaptlab.ship.pipeline import load_pipeline

    root = Path(path).expanduser()
    if (root / REGISTRY_FILE).is_file():
        return ModelRegistry(root).load(version, device=device, use_cache=use_cache, precision=precision)
    if version is not None:
        raise ConfigError(f"{str(root)!r} is a single saved model, not a registry; drop --version.")
    return load_pipeline(root, device=device, precision=precision)


def _training_params(rung: str, trained_in: Optional[str], say: Any) -> Optional[dict[str, Any]]:
    """The shipped rung's ``mixed_precision``: bf16 when the study's rung trained in it and this hardware runs
    it natively (emulated bf16 is slower than float32), else the rung's own default, float32."""
    from adaptlab.rungs import get_rung
    from adaptlab.rungs.runtime import resolve_mixed_precision

    if trained_in != "bf16" or not hasattr(get_rung(rung).config, "mixed_precision"):
        return None
    if resolve_mixed_precision("auto")[0] != "bf16":
        say(f"the study trained {rung} in bf16, which this hardware does not run natively: training in float32")
        return None
    return {"mixed_precision": "bf16"}


def ship_model(data: TextDataset, output: PathLike, *, rung: str = "probe", encoder: Any = None,
               unlabeled: Optional[TextDataset] = None, split: str = "auto", test_size: float = 0.2,
               test_seed: int = 0, seed: int = 0, budget: Optional[str] = None, home: Optional[PathLike] = None,
               max_drop: float = DEFAULT_MAX_DROP, extra: Optional[dict[str, Any]] = None,
               show_progress: bool = False, progress: Optional[Any] = None, precision: str = "fp32") -> ModelRegistry:
    """Seal an evaluation set from ``data``, train ``rung`` on the rest and save it as version v0001.

    ``precision`` is the frozen encoder's numeric path (``Pipeline(precision=...)``), named in the model card.
    ``extra["training_precision"]`` (from :func:`~adaptlab.ship.from_study.study_choice`: what the study's rung
    trained in) makes a rung that trains the encoder train in bf16 too, where this hardware runs it natively;
    the card's rung settings then name it.
    The sealed set is drawn like a study's test set (same ``split`` strategy and ``test_seed``, so it is
    the study's test set when the data and settings are the same) and judges every later retrain.

    Example:
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.ship import ship_model
        >>> texts = ([f"goal match team player {i}" for i in range(30)]
        ...          + [f"chip software data server {i}" for i in range(30)])
        >>> reg = ship_model(TextDataset(texts, ["sport"] * 30 + ["tech"] * 30), "models/triage", rung="tfidf",
        ...                  home="runs")
        >>> reg.current.id, reg.current.rung, reg.current.evaluation["n"]
        ('v0001', 'tfidf', 12)
    """
    from adaptlab.config import default_home
    from adaptlab.data import split_dataset
    from adaptlab.ship.pipeline import Pipeline

    say = progress or (lambda _m: None)
    sp = split_dataset(data, strategy=split, test_size=test_size, test_seed=test_seed, seed=seed)
    eval_set = data.subset(sp.unseal_test("sealed evaluation set of the shipped model"))
    pool = data.subset(sorted([*sp.train.tolist(), *sp.val.tolist()]))
    say(f"training {rung} on {len(pool)} texts; {len(eval_set)} texts sealed for evaluation ({sp.strategy} split)")
    h = Path(home).expanduser() if home is not None else default_home()
    extra = dict(extra or {})
    rung_params = _training_params(rung, extra.pop("training_precision", None), say)
    # The study's embedding cache: shipping right after a study does not encode the texts again.
    pipe = Pipeline(rung=rung, encoder=encoder, seed=seed, budget=budget, home=h, device="auto",
                    cache=h / "cache" / "embeddings.sqlite", show_progress=show_progress, precision=precision,
                    rung_params=rung_params)
    pipe.fit(pool.texts, pool.labels, unlabeled=unlabeled.texts if unlabeled is not None else None)
    lineage = dict(extra.pop("lineage", {}) or {})
    lineage.setdefault("source", f"{data.source or 'data'} ({data.content_hash}, {len(data)} rows; split "
                                 f"{sp.strategy}, test_size {test_size}, test_seed {test_seed})")
    if unlabeled is not None:
        lineage.setdefault("refit_corpus", {"file": unlabeled.source, "hash": unlabeled.content_hash,
                                            "texts": len(unlabeled)})
    extra.setdefault("name", f"{Path(output).name} ({rung})")
    return ModelRegistry.create(output, pipe, train=pool, eval_set=eval_set, max_drop=max_drop,
                                extra={**extra, "lineage": lineage})
