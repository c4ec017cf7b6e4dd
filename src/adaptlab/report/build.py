"""Build the study report: one self-contained HTML file (plots inlined as base64 PNG) and the same as Markdown.

Every number comes from the run store: the study summary, the stored (rung, seed) results and their
diagnostics, plus the analyses saved beside the store (learning curve, slices) when they exist.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

import adaptlab
from adaptlab.decide import Decision, Evidence, Policy, decide, six_question_defense, transfer_note
from adaptlab.decide.analyses import analyses_dir, load_analysis, save_analysis  # noqa: F401  (re-exported)
from adaptlab.decide.policy import rung_info
from adaptlab.decide.references import references_table
from adaptlab.report import plots
from adaptlab.values import is_number as _is_num
from adaptlab.report.perclass import per_class_view, rung_words, words
from adaptlab.report.coverage import coverage_view

def evidence_for(store: Any, study: str = "latest", home: Optional[str | Path] = None) -> Evidence:
    """`Evidence.from_store` with the saved analyses of the study (learning curve, slices).

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.evaluate import Study
        >>> from adaptlab.report import evidence_for
        >>> from adaptlab.store import RunStore
        >>> texts = ([f"goal match team player {i}" for i in range(30)]
        ...          + [f"chip software data server {i}" for i in range(30)])
        >>> data = TextDataset(texts, ["sport"] * 30 + ["tech"] * 30)
        >>> _ = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home="runs").run(data)
        >>> evidence = evidence_for(RunStore("runs/runs.sqlite"), "latest", home="runs")
        >>> sorted(evidence.rungs), len(evidence.rungs["tfidf"].f1_by_seed)
        (['tfidf'], 2)
    """
    return Evidence.from_store(store, study, home=home)


def decision_for(store: Any, study: str = "latest", policy: Optional[Policy] = None,
                 home: Optional[str | Path] = None) -> tuple[Decision, Evidence]:
    """The decision on a stored study and the evidence it was made from.

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.evaluate import Study
        >>> from adaptlab.report import decision_for
        >>> from adaptlab.store import RunStore
        >>> texts = ([f"goal match team player {i}" for i in range(30)]
        ...          + [f"chip software data server {i}" for i in range(30)])
        >>> _ = Study(StudyConfig(rungs=["tfidf"], seeds=3, n_boot=200), home="runs").run(
        ...     TextDataset(texts, ["sport"] * 30 + ["tech"] * 30))
        >>> decision, evidence = decision_for(RunStore("runs/runs.sqlite"), "latest")
        >>> decision.status, decision.chosen, sorted(evidence.rungs)
        ('ship', 'tfidf', ['tfidf'])
    """
    ev = evidence_for(store, study, home)
    return decide(ev, policy), ev


# -- diagnostics of stored results ----------------------------------------------------------------
def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(_flatten(v, key))
            else:
                out[key] = v
    return out


def _series_name_ok(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in ("loss", "f1", "acc", "lr", "movement", "drift", "norm", "curve"))


def diagnostics_view(ev: Evidence, study_diag: Any) -> dict[str, Any]:
    """Scalars (mean over seeds), curves (first seed) and backbone movement from stored diagnostics."""
    scalars: list[dict[str, Any]] = []
    curves: dict[str, dict[str, list[float]]] = {}
    movement: list[dict[str, Any]] = []
    sentences: list[dict[str, Any]] = []
    per_layer: dict[str, dict[str, float]] = {}
    for rung, r in ev.rungs.items():
        if not r.diagnostics:
            continue
        per_key: dict[str, list[float]] = {}
        for d in r.diagnostics:
            for k, v in _flatten({kk: vv for kk, vv in d.items() if kk != "seed"}).items():
                if _is_num(v):
                    per_key.setdefault(k, []).append(float(v))
        for k, vals in [kv for kv in per_key.items() if ".per_layer." not in kv[0]][:24]:
            row = {"rung": rung, "rung_words": rung_words(rung), "key": k, "what": words(k),
                   "mean": float(np.mean(vals)), "n": len(vals)}
            scalars.append(row)
            if (any(w in k.lower() for w in ("movement", "drift", "weight_change", "relative_change", "distance"))
                    and ".per_layer." not in k):
                movement.append(row)
        first = min(r.diagnostics, key=lambda d: d.get("seed", 0))
        for k, v in _flatten(first).items():
            if isinstance(v, list) and len(v) >= 2 and all(_is_num(x) for x in v) and _series_name_ok(k):
                curves.setdefault(rung, {})[k] = [float(x) for x in v]
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                # a list of per-evaluation records, e.g. [{"step": 10, "train_loss": None, "val_loss": 0.9}, ...]
                for field_name in sorted({f for x in v for f in x if f not in ("step", "epoch", "stage_epoch")}):
                    pts = [(float(x["step"]) if _is_num(x.get("step")) else float(i), float(x[field_name]))
                           for i, x in enumerate(v) if _is_num(x.get(field_name))]
                    if len(pts) >= 2 and _series_name_ok(field_name):
                        curves.setdefault(rung, {})[field_name] = {"x": [a for a, _ in pts], "y": [b for _, b in pts]}
            elif isinstance(v, str) and k.lower().endswith("sentence"):
                sentences.append({"rung": rung, "rung_words": rung_words(rung), "key": k, "text": v})
        layers: dict[str, list[float]] = {}
        for d in r.diagnostics:
            per = (d.get("movement") or {}).get("per_layer") if isinstance(d.get("movement"), dict) else None
            for unit, val in (per or {}).items():
                if _is_num(val):
                    layers.setdefault(unit, []).append(float(val))
        if layers:
            per_layer[rung] = {u: float(np.mean(v)) for u, v in layers.items()}
    study_scalars = [{"key": k, "what": words(k), "value": v}
                     for k, v in _flatten(study_diag or {}).items() if _is_num(v)][:40]
    return {"scalars": scalars, "curves": curves, "movement": movement, "study_scalars": study_scalars,
            "sentences": sentences, "per_layer": per_layer}


def _shift_view(shift: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """Domain shift (in-domain vs reference text in the pretrained space) as stored by the diagnostics stage."""
    if not shift:
        return None
    m = shift.get("mmd") if isinstance(shift.get("mmd"), dict) else shift
    p = m.get("p_value")
    if not _is_num(p):
        return None
    return {"mmd2": m.get("mmd2"), "p_value": p, "reference": shift.get("reference", "a reference corpus"),
            "shifted": shift.get("shifted"), "recommendation": shift.get("recommendation", "")}


# -- the report ------------------------------------------------------------------------------------
@dataclass
class Report:
    """A rendered report: ``html`` (self-contained), ``markdown`` and the objects they were built from.

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.evaluate import Study
        >>> from adaptlab.report import Report, build_report
        >>> from adaptlab.store import RunStore
        >>> texts = ([f"goal match team player {i}" for i in range(30)]
        ...          + [f"chip software data server {i}" for i in range(30)])
        >>> data = TextDataset(texts, ["sport"] * 30 + ["tech"] * 30)
        >>> result = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home="runs").run(data)
        >>> report = build_report(RunStore("runs/runs.sqlite"), result.study_id)
        >>> isinstance(report, Report), report.html.startswith("<!DOCTYPE html>"), report.decision.status
        (True, True, 'no-decision')
        >>> [p.name for p in report.write("report.html", "report.md")]
        ['report.html', 'report.md']
    """

    context: dict[str, Any]
    html: str
    markdown: str
    decision: Decision
    evidence: Evidence
    images: dict[str, bytes] = field(default_factory=dict)

    def write(self, html_path: str | Path, md_path: Optional[str | Path] = None) -> tuple[Path, Optional[Path]]:
        """Write the HTML file (and the Markdown one, with its plots as PNG files in ``<stem>_files/``)."""
        html_path = Path(html_path)
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(self.html, encoding="utf-8")
        md_out = None
        if md_path is not None:
            md_out = Path(md_path)
            md_out.parent.mkdir(parents=True, exist_ok=True)
            files = md_out.parent / f"{md_out.stem}_files"
            if self.images:
                files.mkdir(exist_ok=True)
                for name, png in self.images.items():
                    (files / f"{name}.png").write_bytes(png)
            md_out.write_text(self.markdown.replace("{{FILES}}", files.name), encoding="utf-8")
        return html_path, md_out


# "<" opens every HTML tag, "&" every entity: escaped, no user text becomes HTML (">" alone is plain text, and
# "Jaccard >= 0.8" stays readable in the file).
_MD_ESCAPES = {"&": "&amp;", "<": "&lt;", "|": "\\|"}


def markdown_escape(value: Any) -> Any:
    """A value as literal Markdown text: HTML tags and entities show as typed, and ``|`` cannot split a table cell.

    The Markdown report quotes labels, slice names and file names; rendered Markdown passes raw HTML
    through, so a label ``<script>`` would run in the reader's viewer. Non-strings are returned as they are.

    Example:
        >>> print(markdown_escape("<script>alert(1)</script> | A&B"))
        &lt;script>alert(1)&lt;/script> \\| A&amp;B
    """
    if not isinstance(value, str):
        return value
    return "".join(_MD_ESCAPES.get(ch, ch) for ch in value)


def _env(markdown: bool = False) -> Environment:
    # Markdown: every {{ value }} is escaped (finalize) since Markdown has no autoescape of its own.
    env = Environment(loader=PackageLoader("adaptlab.report", "templates"),
                      autoescape=select_autoescape(["html", "html.j2"], default_for_string=False),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      finalize=markdown_escape if markdown else None)
    env.filters["f4"] = lambda x: "n/a" if x is None or not _is_num(x) else f"{x:.4f}"
    env.filters["f3"] = lambda x: "n/a" if x is None or not _is_num(x) else f"{x:.3f}"
    env.filters["signed"] = lambda x: "n/a" if x is None or not _is_num(x) else f"{x:+.4f}"
    env.filters["secs"] = lambda x: "n/a" if x is None or not _is_num(x) else (
        f"{x:.2f} s" if x < 120 else (f"{x / 60:.1f} min" if x < 7200 else f"{x / 3600:.1f} h"))
    env.filters["pct"] = lambda x: "n/a" if x is None or not _is_num(x) else f"{x:.0%}"
    env.filters["pct1"] = lambda x: "n/a" if x is None or not _is_num(x) else f"{x:.1%}"
    env.filters["rungw"] = rung_words
    env.filters["thousands"] = lambda x: "n/a" if x is None else (f"{x:,}" if isinstance(x, int) else str(x))
    return env


def build_report(store: Any, study: str = "latest", *, policy: Optional[Policy] = None,
                 home: Optional[str | Path] = None) -> Report:
    """Build the report of a stored study.

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.evaluate import Study
        >>> from adaptlab.report import build_report
        >>> from adaptlab.store import RunStore
        >>> texts = ([f"goal match team player {i}" for i in range(30)]
        ...          + [f"chip software data server {i}" for i in range(30)])
        >>> _ = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home="runs").run(
        ...     TextDataset(texts, ["sport"] * 30 + ["tech"] * 30))
        >>> paths = build_report(RunStore("runs/runs.sqlite"), "latest", home="runs").write("report.html", "report.md")
        >>> [p.name for p in paths]
        ['report.html', 'report.md']
    """
    policy = policy or Policy()
    rec = store.get_study(study)
    if rec["summary"] is None:
        from adaptlab.errors import AdaptlabError

        raise AdaptlabError(f"study {rec['study_id'][:12]} did not finish; run the same `adaptlab study run` again "
                            "to resume it, then build the report.")
    summary = rec["summary"]
    decision, ev = decision_for(store, rec["study_id"], policy, home)
    note = transfer_note(decision, ev)
    defense = six_question_defense(decision, ev)
    d = decision.to_dict()

    rows = summary["rows"]
    # Cost per rung, from every stored seed's cost record.
    costs = []
    for r in rows:
        runs = [p for p in summary.get("per_seed", []) if p["rung"] == r["rung"]]
        c = [p.get("cost") or {} for p in runs]

        def mean(key: str) -> Optional[float]:
            vals = [x[key] for x in c if _is_num(x.get(key))]
            return float(np.mean(vals)) if vals else None

        costs.append({"rung": r["rung"], "n_seeds": len(runs), "fit_seconds": mean("fit_seconds"),
                      "encode_seconds": mean("encode_seconds"), "total_seconds": mean("total_seconds"),
                      "samples_seen": mean("samples_seen"),
                      "total_all_seeds": float(np.sum([x.get("total_seconds", 0.0) for x in c])) if c else None,
                      "rerun": rung_info(r["rung"])["rerun"]})

    study_diag = summary.get("diagnostics") or {}
    diag = diagnostics_view(ev, study_diag)
    images, chart_notes = _charts(rows, d, diag, ev, summary["metric"], decision.chosen, policy)
    per_class = per_class_view(decision, ev)
    show_diag = bool("training_curves" in images or diag["scalars"] or diag["study_scalars"] or diag["sentences"])
    lc = ev.learning_curve

    ctx = {
        "title": f"adaptlab report — {summary['name']}",
        "generated": dt.datetime.now().isoformat(timespec="seconds"),
        "version": adaptlab.__version__,
        "store_path": str(store.path),
        "study_id": rec["study_id"],
        "summary": summary,
        # What the study warned of (a small test set, results stored before checksums, a precision fallback).
        "study_warnings": [str(w) for w in summary.get("warnings") or []],
        "rows": rows,
        "costs": costs,
        "split": summary.get("split") or {},
        "data": summary.get("data") or {},
        "config": summary.get("config") or {},
        "decision": d,
        "comparisons": d["comparisons"],
        "note": note.items(),
        "defense": defense.to_dict(),
        "diag": diag,
        "mmd": {"value": ev.mmd, "p_value": ev.mmd_p_value, "source": ev.mmd_source} if ev.mmd_p_value is not None else None,
        "shift": _shift_view(ev.domain_shift),
        "learning_curve": lc,
        "slices": sorted(ev.slices, key=lambda s: s.get("f1", 1.0))[:15] if ev.slices else [],
        "slice_meta": {"rung": ev.slice_rung, "overall_f1": ev.overall_f1},
        "policy": policy.to_dict(),
        "rules": [r.to_dict() for r in policy.rules()],
        "references": references_table(),
        "rules_fired": set(decision.rules_fired),
        "images": {k: plots.data_uri(v) for k, v in images.items()},
        "image_names": list(images),
        "band_method": next(iter(ev.rungs.values())).band_method if ev.rungs else "",
        "allocation": _allocation(summary.get("allocation")),
        "per_class": per_class,
        "coverage": coverage_view(store, rec["study_id"], decision, ev),
        "chart_notes": chart_notes,
        "show_diagnostics": show_diag,
    }
    ctx["contents"] = _contents(ctx)
    html = _env().get_template("report.html.j2").render(**ctx)
    md = _env(markdown=True).get_template("report.md.j2").render(**ctx)
    return Report(context=ctx, html=html, markdown=md, decision=decision, evidence=ev, images=images)


def _charts(rows: list[dict[str, Any]], d: dict[str, Any], diag: dict[str, Any], ev: Evidence, metric: str,
            chosen: Optional[str], policy: Policy) -> tuple[dict[str, bytes], dict[str, str]]:
    """The report's plots (PNG bytes by name), and for each chart left out for want of data, one line saying why."""
    images: dict[str, bytes] = {}
    notes: dict[str, str] = {}
    if rows:
        images["f1_by_rung"] = plots.f1_by_rung(rows, metric=metric, chosen=chosen,
                                                ship_threshold=policy.ship_threshold)
    else:
        notes["f1_by_rung"] = "No chart of F1 per rung: the study stored no rung results."
    charts = (
        ("paired_differences", lambda: plots.paired_differences(d["comparisons"], margin=policy.margin),
         "No chart of paired differences: the study has no comparison between two rungs with a difference."),
        ("training_curves", lambda: plots.series_plot(diag["curves"], "Training curves (first seed, from stored "
                                                                      "diagnostics)"),
         "No chart of training curves: no rung stored a training history (a loss or score per step)."),
        ("backbone_movement", lambda: plots.movement_plot(diag["per_layer"]),
         "No chart of backbone movement per layer: no rung stored a non-zero weight change per layer (only the "
         "rungs that train the encoder move it)."),
    )
    trained = bool(diag["curves"] or diag["movement"])  # a rung that trains the encoder stored what it did
    for name, draw, why in charts:
        png = draw()
        if png:
            images[name] = png
        elif name != "backbone_movement" or trained:
            notes[name] = why
    lc = ev.learning_curve
    if lc and lc.get("points"):
        png = plots.learning_curve(lc["points"], metric=metric)
        if png:
            images["learning_curve"] = png
    elif lc:
        notes["learning_curve"] = "No learning-curve chart: the stored analysis has no points."
    if ev.slices:
        png = plots.slices_plot(ev.slices, ev.overall_f1)
        if png:
            images["slices"] = png
    return images, notes


def _contents(ctx: dict[str, Any]) -> list[dict[str, str]]:
    """The report's sections that have something to show, in page order: the contents list links to each."""
    sections = [("decision", "Decision", True), ("f1", "F1 per rung", True),
                ("per-class", "Per class and confusion matrix", True),
                ("coverage", "Coverage vs accuracy (abstain below a confidence)", True),
                ("comparisons", "Paired comparisons", True), ("cost", "Cost", True),
                ("allocation", "Allocation (decision-driven study)", bool(ctx["allocation"])),
                ("data", "Data, split and leakage", True), ("transfer-note", "Transfer note", True),
                ("defense", "Six-question defense", True),
                ("mmd", "Domain shift and refit movement (MMD)", bool(ctx["mmd"] or ctx["shift"])),
                ("diagnostics", "Diagnostics", ctx["show_diagnostics"]),
                ("learning-curve", "Learning curve", bool(ctx["learning_curve"])),
                ("slices", "Slices", bool(ctx["slices"])), ("policy", "Policy and rules used", True),
                ("references", "References", True)]
    return [{"id": i, "title": t} for i, t, shown in sections if shown]


def _allocation(alloc: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    # The stop reason as the page words it (older stored studies repeat their stop kind in it).
    if not alloc:
        return alloc
    from adaptlab.evaluate.adaptive import stop_reason

    return {**alloc, "stop": {**(alloc.get("stop") or {}), "reason": stop_reason(alloc.get("stop"))}}
