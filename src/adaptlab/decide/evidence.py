"""`Evidence`: the numbers a decision rests on, from a stored study or from hand-made tables.

From a study, every number comes from the run store: the study summary (per-rung seed F1, bands that
carry seed spread and test sampling error, costs, data sizes, diagnostics) and the stored per-item test
predictions (for paired comparisons). From tables (tests, or a team's spreadsheet), per-seed F1 lists
are enough; the bands then come from a normal approximation over seeds only and the evidence says so.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from adaptlab.decide.stats import normal_band
from adaptlab.errors import AdaptlabError, ConfigError
from adaptlab.rungs.ladder import ladder_key  # noqa: F401  (decision and writeup import it from here)
from adaptlab.values import is_number

BAND_BOOTSTRAP = "95% bootstrap over seeds and shared test items (seed spread + test sampling error)"
BAND_NORMAL = ("normal approximation over seeds only (mean ± z·std/√seeds); it ignores test-set sampling "
               "error, so it is narrower than an honest band")
BAND_GIVEN = "band given with the table"


@dataclass
class RungEvidence:
    """One rung's results: F1 per seed, its band and what it cost.

    Example:
        >>> from adaptlab.decide import Evidence, RungEvidence
        >>> ev = Evidence.from_tables({"probe": [0.77, 0.78, 0.79]})
        >>> probe = ev.rungs["probe"]
        >>> isinstance(probe, RungEvidence), probe.n_seeds, round(probe.mean, 3), probe.band_method[:40]
        (True, 3, 0.78, 'normal approximation over seeds only (me')
    """

    rung: str
    f1_by_seed: list[float]
    seeds: list[int]
    ci_low: float
    ci_high: float
    band_method: str
    fit_seconds_mean: Optional[float] = None
    fit_seconds_max: Optional[float] = None
    uses_encoder: Optional[bool] = None
    val_f1_mean: Optional[float] = None
    summary: str = ""
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    # Share of its training budget the runs had (< 1: only screened by a decision-driven study).
    fidelity: float = 1.0
    # Per-seed test predictions aligned with Evidence.y_true (not serialised: they can be large).
    predictions: Optional[dict[int, np.ndarray]] = field(default=None, repr=False)

    @property
    def n_seeds(self) -> int:
        """How many seeds the rung ran."""
        return len(self.f1_by_seed)

    @property
    def mean(self) -> float:
        """Mean F1 over the seeds (NaN without a seed)."""
        return float(np.mean(self.f1_by_seed)) if self.f1_by_seed else float("nan")

    @property
    def std(self) -> float:
        """Standard deviation of F1 over the seeds (ddof=1; 0 for a single seed)."""
        return float(np.std(self.f1_by_seed, ddof=1)) if len(self.f1_by_seed) > 1 else 0.0

    @property
    def has_band(self) -> bool:
        """Whether both ends of the 95% band are finite numbers."""
        return math.isfinite(self.ci_low) and math.isfinite(self.ci_high)

    def to_dict(self) -> dict[str, Any]:
        """The rung's evidence as JSON-safe data (non-finite band ends become None)."""
        return {"rung": self.rung, "n_seeds": self.n_seeds, "seeds": list(self.seeds),
                "f1_by_seed": [float(x) for x in self.f1_by_seed], "mean": self.mean, "std": self.std,
                "ci_low": _num(self.ci_low), "ci_high": _num(self.ci_high), "band_method": self.band_method,
                "fit_seconds_mean": self.fit_seconds_mean, "fit_seconds_max": self.fit_seconds_max,
                "uses_encoder": self.uses_encoder, "val_f1_mean": self.val_f1_mean, "summary": self.summary,
                "fidelity": self.fidelity, "has_predictions": self.predictions is not None}


def _num(x: Optional[float]) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class Evidence:
    """Everything the decision reads. Build it with :meth:`from_store` or :meth:`from_tables`.

    Example:
        >>> ev = Evidence.from_tables({"probe": [0.77, 0.78, 0.79], "refit": [0.82]}, n_labels=5200, n_unlabeled=80000)
        >>> round(ev.rungs["probe"].mean, 3), ev.rungs["refit"].n_seeds
        (0.78, 1)
    """

    rungs: dict[str, RungEvidence]
    metric: str = "F1"
    classes: list[str] = field(default_factory=list)
    positive_label: Optional[str] = None
    y_true: Optional[np.ndarray] = field(default=None, repr=False)
    n_test: Optional[int] = None
    n_labels: Optional[int] = None  # labeled training examples (train + validation pool)
    n_unlabeled: Optional[int] = None
    has_compute: Optional[bool] = None  # a GPU / compute for full fine-tuning; None = unknown
    mmd: Optional[float] = None
    mmd_p_value: Optional[float] = None
    mmd_source: str = ""
    refit_hours: Optional[float] = None
    slices: list[dict[str, Any]] = field(default_factory=list)
    slice_rung: Optional[str] = None
    overall_f1: Optional[float] = None  # F1 the slices are compared against
    learning_curve: Optional[dict[str, Any]] = None
    study_id: Optional[str] = None
    name: str = ""
    source: str = "tables"
    encoder: Optional[dict[str, Any]] = None
    domain_shift: Optional[dict[str, Any]] = None  # in-domain vs general text, pretrained embeddings (MMD)
    encoder_choice: Optional[dict[str, Any]] = None  # when the study compared several encoders first
    # What mixed_precision="auto" became per training rung (adaptlab.evaluate.training_precision), with its numbers.
    training_precision: Optional[dict[str, Any]] = None
    # A decision-driven study's record (adaptlab.evaluate.adaptive): what ran, what was dropped and why it stopped.
    allocation: Optional[dict[str, Any]] = None
    # The study's label check of its train pool (adaptlab.data.check_labels): noise rate per class, flagged ids.
    label_quality: Optional[dict[str, Any]] = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rungs = dict(sorted(self.rungs.items(), key=lambda kv: ladder_key(kv[0])))
        if self.n_test is None and self.y_true is not None:
            self.n_test = len(self.y_true)

    # ------------------------------------------------------------------------------------------
    @property
    def order(self) -> list[str]:
        """The rungs in the order the evidence lists them."""
        return list(self.rungs)

    @property
    def n_test_positive(self) -> Optional[int]:
        """Test items of the positive class (None without test labels or a positive class)."""
        if self.y_true is None or self.positive_label is None:
            return None
        return int(np.sum(self.y_true == self.positive_label))

    @property
    def has_predictions(self) -> bool:
        """Whether per-item test predictions are known (paired comparisons need them)."""
        return self.y_true is not None and any(r.predictions is not None for r in self.rungs.values())

    def to_dict(self) -> dict[str, Any]:
        """The evidence as JSON-safe data (what the report and ``decision.json`` carry)."""
        return {
            "study_id": self.study_id, "name": self.name, "source": self.source, "metric": self.metric,
            "classes": list(self.classes), "positive_label": self.positive_label, "n_test": self.n_test,
            "n_test_positive": self.n_test_positive, "n_labels": self.n_labels, "n_unlabeled": self.n_unlabeled,
            "has_compute": self.has_compute, "mmd": self.mmd, "mmd_p_value": self.mmd_p_value,
            "mmd_source": self.mmd_source, "refit_hours": self.refit_hours, "slices": self.slices,
            "slice_rung": self.slice_rung, "overall_f1": self.overall_f1, "learning_curve": self.learning_curve,
            "encoder": self.encoder, "domain_shift": self.domain_shift, "notes": list(self.notes),
            "allocation": self.allocation,
            # Without the flagged ids (thousands on large data); `adaptlab data check` lists the rows.
            "label_quality": ({k: v for k, v in self.label_quality.items() if k != "flagged_ids"}
                              if self.label_quality else None),
            "rungs": [r.to_dict() for r in self.rungs.values()],
        }

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_tables(
        cls,
        f1_by_seed: Mapping[str, Optional[Sequence[float]]],
        *,
        predictions: Optional[Mapping[str, Sequence[Sequence[str]]]] = None,
        y_true: Optional[Sequence[str]] = None,
        classes: Optional[Sequence[str]] = None,
        positive_label: Optional[str] = None,
        bands: Optional[Mapping[str, tuple[float, float]]] = None,
        band: str = "auto",
        fit_hours: Optional[Mapping[str, float]] = None,
        alpha: float = 0.05,
        n_boot: int = 1000,
        **facts: Any,
    ) -> "Evidence":
        """Evidence from hand-made tables: rung -> per-seed F1 (``None`` = compute from ``predictions``).

        ``predictions[rung][i]`` are seed ``i``'s predicted labels for the items of ``y_true`` (same order
        for every rung). ``band="auto"`` uses the seed+test bootstrap where predictions exist and the
        normal seed-only approximation elsewhere; ``band="seeds"`` forces the latter. ``facts`` sets any
        other field (``n_labels``, ``n_unlabeled``, ``mmd_p_value``, ``refit_hours``, ``slices`` ...).
        """
        from adaptlab.metrics import resolve_positive_label, score, seed_and_test_bootstrap

        if band not in ("auto", "seeds"):
            raise ConfigError.invalid("band", band, "'auto' or 'seeds'")
        unknown = sorted(set(facts) - set(cls.__dataclass_fields__) - {"rungs"})
        if unknown:
            raise ConfigError(f"unknown evidence field(s) {unknown}; allowed: {sorted(cls.__dataclass_fields__)}.")
        predictions = dict(predictions or {})
        yt = np.asarray(y_true, dtype=object) if y_true is not None else None
        if predictions and yt is None:
            raise ConfigError("predictions need y_true: pass the true labels of the test items they predict.")
        if yt is not None:
            classes = sorted(classes or set(yt.tolist()) | {p for ps in predictions.values() for s in ps for p in s})
            if positive_label is None and len(classes) == 2:
                positive_label = resolve_positive_label(classes, yt.tolist())
        rungs: dict[str, RungEvidence] = {}
        notes: list[str] = []
        for rung, f1s in f1_by_seed.items():
            preds = predictions.get(rung)
            pred_map = None
            if preds is not None:
                pred_map = {i: np.asarray(p, dtype=object) for i, p in enumerate(preds)}
                for p in pred_map.values():
                    if len(p) != len(yt):
                        raise ConfigError(f"predictions of rung {rung!r} have {len(p)} items; y_true has {len(yt)}.")
            if f1s is None:
                if pred_map is None:
                    raise ConfigError(f"rung {rung!r} has neither F1 values nor predictions.")
                f1s = [score(yt, p, None, classes, positive_label)["f1"] for p in pred_map.values()]
            f1s = [float(x) for x in f1s]
            if not f1s:
                raise ConfigError(f"rung {rung!r} has no F1 values; give at least one seed's F1.")
            if bands and rung in bands:
                lo, hi = bands[rung]
                method = BAND_GIVEN
            elif pred_map is not None and band == "auto":
                lo, hi = seed_and_test_bootstrap(yt, list(pred_map.values()), classes, positive_label,
                                                 n_boot=n_boot, alpha=alpha, seed=0)
                method = BAND_BOOTSTRAP
            else:
                lo, hi = normal_band(f1s, alpha)
                method = BAND_NORMAL
            hours = (fit_hours or {}).get(rung)
            rungs[rung] = RungEvidence(
                rung=rung, f1_by_seed=f1s, seeds=list(range(len(f1s))), ci_low=lo, ci_high=hi, band_method=method,
                fit_seconds_mean=hours * 3600 if hours is not None else None,
                fit_seconds_max=hours * 3600 if hours is not None else None,
                predictions=pred_map)
        if any(r.band_method == BAND_NORMAL for r in rungs.values()):
            notes.append("Bands of rungs without per-item predictions use a normal approximation over seeds only "
                         "(no test-set sampling error): they are optimistic.")
        return cls(rungs=rungs, classes=list(classes or []), positive_label=positive_label, y_true=yt,
                   metric=(f"F1 of class {positive_label!r}" if positive_label else "F1"),
                   notes=notes, source="tables", **facts)

    @classmethod
    def from_store(cls, store: Any, study_id: str = "latest", *, home: Any = None,
                   analyses: bool = True) -> "Evidence":
        """Evidence of a stored study: its summary rows plus the per-item predictions of every result.

        With ``analyses`` (default), the learning curve and slice analyses saved next to the store
        (``<home>/analyses/<study_id>/``, ``home`` defaulting to the store's folder) are read too.

        Example:
            >>> from adaptlab.store import RunStore  # doctest: +SKIP
            >>> ev = Evidence.from_store(RunStore("adaptlab-runs/runs.sqlite"), "latest")  # doctest: +SKIP
        """
        rec = store.get_study(study_id)
        summary = rec.get("summary")
        if not summary:
            raise AdaptlabError(f"study {rec['study_id'][:12]} did not finish; run the same `adaptlab study run` "
                                "again to resume it, then decide.")
        keys = {p["result_key"]: p for p in summary.get("per_seed", [])}
        results = [r for r in store.study_results(rec["study_id"]) if not keys or r["result_key"] in keys]
        y_true, preds, diags, fit_secs, notes = _read_results(results)

        rungs: dict[str, RungEvidence] = {}
        seeds_of = {}
        for p in summary.get("per_seed", []):
            seeds_of.setdefault(p["rung"], []).append(int(p["seed"]))
        for row in summary["rows"]:
            name = row["rung"]
            secs = fit_secs.get(name)
            rungs[name] = RungEvidence(
                rung=name, f1_by_seed=[float(x) for x in row["f1_by_seed"]],
                seeds=seeds_of.get(name, list(range(row["n_seeds"]))),
                ci_low=float(row["ci_low"]), ci_high=float(row["ci_high"]), band_method=BAND_BOOTSTRAP,
                fit_seconds_mean=float(np.mean(secs)) if secs else row.get("fit_seconds_mean"),
                fit_seconds_max=float(np.max(secs)) if secs else row.get("fit_seconds_mean"),
                uses_encoder=row.get("uses_encoder"), val_f1_mean=row.get("val_f1_mean"),
                summary=row.get("summary", ""), diagnostics=diags.get(name, []),
                predictions=preds.get(name) or None, fidelity=float(row.get("fidelity", 1.0)))
            if preds.get(name) and len(preds[name]) != rungs[name].n_seeds:
                notes.append(f"{name}: {len(preds[name])} of {rungs[name].n_seeds} seeds have stored predictions.")

        data = summary.get("data") or {}
        study_diag = summary.get("diagnostics") or {}
        if not isinstance(study_diag, dict):
            study_diag = {}
        mmd, mmd_p, mmd_src = _switch_rule_mmd(study_diag, diags.get("refit", []))
        refit_hours = None
        cost = study_diag.get("refit_cost") or {}
        if is_number(cost.get("wall_seconds")):
            refit_hours = float(cost["wall_seconds"]) / 3600.0
        elif "refit" in rungs:
            refit_hours = _refit_hours(diags.get("refit", []), rungs["refit"])
        shift = study_diag.get("domain_shift") if isinstance(study_diag.get("domain_shift"), dict) else None
        ev = cls(
            rungs=rungs, metric=summary.get("metric", "F1"), classes=list(summary.get("classes", [])),
            positive_label=summary.get("positive_label"), y_true=y_true, n_test=summary.get("n_test"),
            n_labels=summary.get("n_train_pool"), n_unlabeled=data.get("n_unlabeled") or None,
            mmd=mmd, mmd_p_value=mmd_p, mmd_source=mmd_src, refit_hours=refit_hours,
            study_id=rec["study_id"], name=summary.get("name", rec.get("name", "")), source="store",
            encoder=data.get("encoder"), notes=notes, domain_shift=shift, encoder_choice=data.get("encoder_choice"),
            training_precision=data.get("training_precision"),
            learning_curve=study_diag.get("learning_curve"), allocation=summary.get("allocation"),
            label_quality=data.get("label_quality") if isinstance(data.get("label_quality"), dict) else None,
        )
        if analyses:
            from pathlib import Path

            from adaptlab.decide.analyses import load_analysis

            where = Path(home) if home is not None else Path(store.path).parent
            lc = load_analysis(where, ev.study_id, "learning_curve")
            if lc:
                ev.learning_curve = lc
            sl = load_analysis(where, ev.study_id, "slices")
            if sl:
                ev.slices = sl.get("slices", [])
                ev.overall_f1 = sl.get("overall_f1")
                ev.slice_rung = sl.get("rung")
        return ev


def _switch_rule_mmd(study_diag: dict[str, Any], refit_diags: list[dict[str, Any]]
                     ) -> tuple[Optional[float], Optional[float], str]:
    """(MMD, p-value, where it was read) for the switch rule: pretrained-vs-refit embeddings of the same
    held-out texts (the diagnostics stage's "refit_movement"), not the corpus-vs-reference domain shift; else
    any MMD of the study's diagnostics, else one of the refit seeds' own."""
    mmd, mmd_p, mmd_src = refit_movement_mmd(study_diag)
    if mmd_p is None:
        mmd, mmd_p, mmd_src = find_mmd({k: v for k, v in study_diag.items() if k != "domain_shift"})
    if mmd_p is None:
        for d in refit_diags:
            mmd, mmd_p, mmd_src = find_mmd(d)
            if mmd_p is not None:
                return mmd, mmd_p, f"refit seed {d.get('seed')} diagnostics: {mmd_src}"
    elif mmd_src:
        mmd_src = f"study diagnostics: {mmd_src}"
    return mmd, mmd_p, mmd_src


def _read_results(results: list[dict[str, Any]]) -> tuple[Any, dict[str, dict[int, np.ndarray]],
                                                          dict[str, list[dict[str, Any]]], dict[str, list[float]],
                                                          list[str]]:
    """The stored results of a study, per rung: predictions aligned to one test order, diagnostics, seconds a
    seed, and notes on what could not be aligned. Returns (y_true, predictions, diagnostics, seconds, notes)."""
    # Align every prediction list to one test order (they share it by construction; check, don't trust).
    y_true = test_ids = None
    preds: dict[str, dict[int, np.ndarray]] = {}
    diags: dict[str, list[dict[str, Any]]] = {}
    fit_secs: dict[str, list[float]] = {}
    notes: list[str] = []
    for r in sorted(results, key=lambda r: (ladder_key(r["rung"]), r["seed"])):
        pr = r.get("predictions") or {}
        d = (r.get("metrics") or {}).get("diagnostics")
        if d:
            diags.setdefault(r["rung"], []).append({"seed": r["seed"], **d})
        cost = (r.get("metrics") or {}).get("cost") or {}
        if "total_seconds" in cost or "fit_seconds" in cost:
            fit_secs.setdefault(r["rung"], []).append(float(cost.get("total_seconds", cost.get("fit_seconds", 0.0))))
        if not pr.get("y_pred"):
            continue
        ids = list(pr.get("test_ids") or range(len(pr["y_pred"])))
        if test_ids is None:
            test_ids, y_true = ids, np.asarray(pr["y_true"], dtype=object)
            pos = {t: i for i, t in enumerate(test_ids)}
        if ids != test_ids:
            if set(ids) != set(test_ids):
                notes.append(f"{r['rung']} seed {r['seed']} was scored on other test items; "
                             "left out of paired comparisons.")
                continue
            order = np.argsort([pos[t] for t in ids])
            yp = np.asarray(pr["y_pred"], dtype=object)[order]
        else:
            yp = np.asarray(pr["y_pred"], dtype=object)
        preds.setdefault(r["rung"], {})[int(r["seed"])] = yp
    return y_true, preds, diags, fit_secs, notes


# -- tolerant readers of diagnostics written by other stages ----------------------------------------
_P_KEYS = ("p_value", "pvalue", "p", "mmd_p_value", "mmd_p", "permutation_p")
_V_KEYS = ("mmd", "mmd2", "value", "statistic", "mmd_value", "mmd2_unbiased")


def refit_movement_mmd(study_diag: dict[str, Any]) -> tuple[Optional[float], Optional[float], str]:
    """MMD of pretrained vs refit embeddings from the diagnostics stage; with several refits the least-moved one
    (largest p-value) speaks, because one refit that did not move is enough to doubt the gain."""
    moves = study_diag.get("refit_movement")
    if isinstance(moves, dict):
        moves = [moves]
    best: tuple[Optional[float], Optional[float], str] = (None, None, "")
    for i, m in enumerate(moves or []):
        if not isinstance(m, dict):
            continue
        v, p, _ = find_mmd({"mmd": m.get("mmd")} if isinstance(m.get("mmd"), dict) else m)
        if p is not None and (best[1] is None or p > best[1]):
            n = m.get("n_texts")
            best = (v, p, f"pretrained vs refit embeddings of {n} held-out texts" if n else f"refit_movement[{i}]")
    return best


def find_mmd(obj: Any, path: str = "") -> tuple[Optional[float], Optional[float], str]:
    """Find an MMD value and its permutation p-value anywhere in a diagnostics dict: (mmd, p, where)."""
    if not isinstance(obj, dict):
        return None, None, ""
    keys = {str(k).lower(): k for k in obj}
    mmdish = "mmd" in path.lower() or any("mmd" in k for k in keys)
    if mmdish:
        p = next((obj[keys[k]] for k in _P_KEYS if k in keys and is_number(obj[keys[k]])), None)
        if p is not None:
            v = next((obj[keys[k]] for k in _V_KEYS if k in keys and is_number(obj[keys[k]])), None)
            return (float(v) if v is not None else None), float(p), path or "mmd"
    for k, v in obj.items():
        if isinstance(v, dict):
            found = find_mmd(v, f"{path}.{k}" if path else str(k))
            if found[1] is not None:
                return found
    return None, None, ""


def _refit_hours(diags: list[dict[str, Any]], row: RungEvidence) -> Optional[float]:
    """Hours the MLM refit took end to end: from the refit's own timing if it logged one, else its fit time."""
    best = None
    for d in diags:
        for k, v in _walk(d):
            if re.search(r"(refit|mlm).*(seconds|secs|_s)$", k.lower()) and is_number(v):
                best = max(best or 0.0, float(v))
    if best is None and row.fit_seconds_max is not None:
        best = row.fit_seconds_max
    return None if best is None else best / 3600.0


def _walk(obj: Any, prefix: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                yield from _walk(v, key)
            else:
                yield str(k), v
