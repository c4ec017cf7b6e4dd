"""CLI commands of the decide and report stages: `adaptlab decide`, `adaptlab report`, `adaptlab plan`.

Registered on the main app by one import line at the bottom of ``adaptlab.cli``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from adaptlab.cli import HomeOpt, JsonOpt, app, out, user_errors
from adaptlab.cli.catalogue import rung_catalogue
from adaptlab.cli.console import plain

PolicyOpt = typer.Option(None, "--policy", help="JSON or TOML file overriding decision thresholds (margin, ship_threshold, min_seeds, ...).")
MarginOpt = typer.Option(None, "--margin", help="F1 margin a more adapted rung must win by (default: 0.02).")
ShipOpt = typer.Option(None, "--ship-threshold", help="Mean F1 the chosen rung needs to ship (default: 0.80).")


def _policy(policy: Optional[Path], margin: Optional[float], ship_threshold: Optional[float]):
    from adaptlab.decide import load_policy

    return load_policy(policy, margin=margin, ship_threshold=ship_threshold)


def decide_study(store: Any, study_id: str, *, policy: Any = None, home: Optional[Path] = None) -> Any:
    """The decision of a stored study (used by `study run` and `demo` to print it at the end)."""
    from adaptlab.report import decision_for

    decision, _ = decision_for(store, study_id, policy, home)
    return decision


@app.command("decide")
@user_errors
def decide_cmd(
    study: str = typer.Argument("latest", help="Study id (a prefix is enough), name, or 'latest'."),
    home: Optional[Path] = HomeOpt,
    policy: Optional[Path] = PolicyOpt,
    margin: Optional[float] = MarginOpt,
    ship_threshold: Optional[float] = ShipOpt,
    defense: bool = typer.Option(False, "--defense", help="Also print the transfer note and the six-question defense."),
    json_out: bool = JsonOpt,
) -> None:
    """Decide on a stored study: the rung to commit to, whether to ship, and the inspection that would flip it."""
    from adaptlab.config import default_home
    from adaptlab.decide import six_question_defense, transfer_note
    from adaptlab.report import decision_for, render_decision
    from adaptlab.store import RunStore

    h = home or default_home()
    store = RunStore(h / "runs.sqlite")
    decision, ev = decision_for(store, study, _policy(policy, margin, ship_threshold), h)
    note, qa = transfer_note(decision, ev), six_question_defense(decision, ev)
    if json_out:
        typer.echo(json.dumps({"decision": decision.to_dict(), "transfer_note": note.to_dict(),
                               "defense": qa.to_dict()}, indent=2))
        return
    out.print(render_decision(decision))
    if defense:
        from rich.markdown import Markdown

        out.print(Markdown("## Transfer note\n\n" + note.to_markdown() + "\n\n## Six-question defense\n\n"
                           + qa.to_markdown()))


@app.command("report")
@user_errors
def report_cmd(
    study: str = typer.Argument("latest", help="Study id (a prefix is enough), name, or 'latest'."),
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="The HTML file to write (self-contained)."),
    markdown: Optional[Path] = typer.Option(None, "--md", help="The Markdown file (default: next to the HTML, .md)."),
    home: Optional[Path] = HomeOpt,
    policy: Optional[Path] = PolicyOpt,
    margin: Optional[float] = MarginOpt,
    ship_threshold: Optional[float] = ShipOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Write the study report: one self-contained HTML file (opens offline) and the same content as Markdown."""
    from adaptlab.config import default_home
    from adaptlab.report import build_report, render_decision
    from adaptlab.store import RunStore

    h = home or default_home()
    store = RunStore(h / "runs.sqlite")
    rep = build_report(store, study, policy=_policy(policy, margin, ship_threshold), home=h)
    html_path, md_path = rep.write(output, markdown or output.with_suffix(".md"))
    if json_out:
        typer.echo(json.dumps({"html": str(html_path), "markdown": str(md_path), "decision": rep.decision.to_dict()},
                              indent=2))
        return
    out.print(render_decision(rep.decision))
    out.print(f"report: {html_path} (self-contained HTML), {md_path} (Markdown)", markup=False, highlight=False)


def _load_like_study(data: Path, test: Optional[Path], text_col, label_col, id_col, slice_col=None, time_col=None):
    from adaptlab.data import load_dataset

    kw = dict(text_col=text_col, label_col=label_col, id_col=id_col, group_col=slice_col, time_col=time_col)
    ds = load_dataset(data, **kw)
    return ds, (load_dataset(test, **kw) if test is not None else None)


@app.command("curve")
@user_errors
def curve_cmd(
    data: Path = typer.Option(..., "--data", help="The labeled file the study ran on."),
    study: str = typer.Option("latest", "--study", help="Study whose config (split, encoder) the curve reuses."),
    rungs: Optional[str] = typer.Option(None, "--rungs", help="Rungs (default: probe and the best adapted rung of the study)."),
    fractions: str = typer.Option("0.1,0.25,0.5,1", "--fractions", help="Fractions of the training labels."),
    seeds: int = typer.Option(2, "--seeds", help="Seeds per point (a curve needs few)."),
    text_col: Optional[str] = typer.Option(None, "--text-col"),
    label_col: Optional[str] = typer.Option(None, "--label-col"),
    id_col: Optional[str] = typer.Option(None, "--id-col"),
    group_col: Optional[str] = typer.Option(None, "--group-col", help="Same as the study's, so the sealed test is the same."),
    time_col: Optional[str] = typer.Option(None, "--time-col", help="Same as the study's, so the sealed test is the same."),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Learning curve: F1 vs fraction of training labels; says whether more labels or more adaptation pays."""
    from adaptlab.cli import _progress
    from adaptlab.config import StudyConfig, default_home
    from adaptlab.decide import Evidence, decide
    from adaptlab.decide.analyses import save_analysis
    from adaptlab.decide.curves import learning_curve
    from adaptlab.errors import ConfigError
    from adaptlab.rungs.ladder import FROZEN, ladder_key
    from adaptlab.store import RunStore

    h = home or default_home()
    store = RunStore(h / "runs.sqlite")
    rec = store.get_study(study)
    cfg = StudyConfig(**rec["config"])
    if rungs is None:
        ev = Evidence.from_store(store, rec["study_id"], analyses=False)
        d = decide(ev)
        adapted = [r for r in ev.rungs if ladder_key(r) > ladder_key(FROZEN)]
        best = d.chosen if d.chosen in adapted else max(adapted, key=lambda r: ev.rungs[r].mean, default=None)
        chosen_rungs = [FROZEN] + ([best] if best else [])
    else:
        chosen_rungs = [r.strip() for r in rungs.split(",") if r.strip()]
    try:
        fr = [float(x) for x in fractions.split(",") if x.strip()]
    except ValueError:
        raise ConfigError.invalid("fractions", fractions, "comma-separated numbers in (0, 1], e.g. 0.1,0.25,0.5,1")
    ds, _ = _load_like_study(data, None, text_col, label_col, id_col, group_col, time_col)
    curve = learning_curve(ds, cfg, rungs=chosen_rungs, fractions=fr, seeds=seeds, home=h,
                           progress=_progress(json_out))
    curve["study_id"] = rec["study_id"]
    path = save_analysis(h, rec["study_id"], "learning_curve", curve)
    # Each curve point is a stored study; touch the parent so 'latest' still names the study analysed.
    store.set_summary(rec["study_id"], rec["summary"])
    if json_out:
        typer.echo(json.dumps(curve, indent=2))
        return
    from rich.table import Table

    t = Table("rung", "fraction", "labels", "seeds", "mean", "95% band", title="learning curve")
    for p in curve["points"]:
        t.add_row(p["rung"], f"{p['fraction']:.0%}", str(p["n_labels"]), str(p["n_seeds"]), f"{p['mean']:.4f}",
                  f"[{p['ci_low']:.4f}, {p['ci_high']:.4f}]")
    out.print(t)
    out.print(curve["summary"], markup=False, highlight=False)
    out.print(f"saved to {path}; `adaptlab report` includes it.", markup=False, highlight=False)


@app.command("slices")
@user_errors
def slices_cmd(
    data: Path = typer.Option(..., "--data", help="The labeled file the study ran on."),
    test: Optional[Path] = typer.Option(None, "--test", help="The study's test file, if it had one."),
    study: str = typer.Option("latest", "--study"),
    slice_col: Optional[str] = typer.Option(None, "--slice-col", help="Column naming each row's slice (default: KMeans clusters of embeddings)."),
    rung: Optional[str] = typer.Option(None, "--rung", help="Rung to slice (default: the decision's choice)."),
    n_clusters: int = typer.Option(8, "--clusters", help="KMeans clusters when there is no slice column."),
    text_col: Optional[str] = typer.Option(None, "--text-col"),
    label_col: Optional[str] = typer.Option(None, "--label-col"),
    id_col: Optional[str] = typer.Option(None, "--id-col"),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Per-slice F1 of the chosen rung, worst slices first, with the rare-slice switch rule applied."""
    from adaptlab.config import default_home
    from adaptlab.decide.analyses import save_analysis
    from adaptlab.decide.slices import slice_report
    from adaptlab.store import RunStore

    h = home or default_home()
    store = RunStore(h / "runs.sqlite")
    ds, test_ds = _load_like_study(data, test, text_col, label_col, id_col, slice_col)
    values = None
    if slice_col is not None:
        values = list(ds.groups or []) + (list(test_ds.groups or []) if test_ds is not None else [])
    rec = store.get_study(study)
    rep = slice_report(store, rec["study_id"], ds, test=test_ds, rung=rung, slice_values=values,
                       n_clusters=n_clusters)
    path = save_analysis(h, rec["study_id"], "slices", rep)
    if json_out:
        typer.echo(json.dumps(rep, indent=2))
        return
    from rich.table import Table

    t = Table("slice", "test items", "share", "F1", "share of errors", title=f"slices of {rep['rung']} ({plain(rep['source'])})")
    for s in rep["slices"][:15]:
        t.add_row(plain(s["slice"]), str(s["n"]), f"{s['share']:.0%}", f"{s['f1']:.4f}", f"{s['error_share']:.0%}")
    out.print(t)
    out.print(rep["summary"], markup=False, highlight=False)  # slice names are the user's values
    out.print(f"saved to {path}; `adaptlab decide` and `adaptlab report` use it.", markup=False, highlight=False)


@app.command("plan")
@user_errors
def plan_cmd(
    data: Path = typer.Option(..., "--data", help="Labeled file the study will run on."),
    budget: str = typer.Option(..., "--budget", help="Compute budget, e.g. '2 CPU hours', '4 days on one GPU'."),
    unlabeled: Optional[Path] = typer.Option(None, "--unlabeled", help="Unlabeled in-domain texts (for the refit)."),
    rungs: Optional[str] = typer.Option(None, "--rungs", help=rung_catalogue().rungs_help(planner=True)),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder folder (default: packaged all-MiniLM-L6-v2)."),
    train_budget: Optional[str] = typer.Option(None, "--train-budget", help="The study's training budget of network rungs "
                                               "(`study run --budget`): 520steps, 30min. Default: max_epochs, the upper bound."),
    seeds: int = typer.Option(5, "--seeds", help="Seeds the study runs at most per rung."),
    screen_fidelity: float = typer.Option(0.25, "--screen-fidelity", help="Share of its training a network rung gets "
                                          "in its one screening run, before any rung gets a second seed."),
    gpu_speedup: float = typer.Option(25.0, "--gpu-speedup", help="Assumed GPU/CPU speed-up when planning for a GPU on a CPU."),
    text_col: Optional[str] = typer.Option(None, "--text-col"),
    label_col: Optional[str] = typer.Option(None, "--label-col"),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Plan a study into a budget: which rungs, how many seeds at which fidelity, what is skipped and why.

    Costs come from the run store under --home where it holds results of the same rungs, else from a
    short calibration.
    """
    from time import monotonic

    from adaptlab.cli.progress import stderr_line
    from adaptlab.config import default_home, format_duration
    from adaptlab.data import load_dataset
    from adaptlab.decide.plan import plan_study
    from adaptlab.encoders import load_encoder

    ds = load_dataset(data, text_col=text_col, label_col=label_col)
    n_unl = len(load_dataset(unlabeled, text_col=text_col, require_labels=False)) if unlabeled is not None else 0
    t0 = monotonic()
    if json_out:  # stdout is the JSON document: say on stderr what takes the time, and when it ends
        stderr_line(f"plan: costing the rungs for {len(ds)} labeled texts (from the run store, else a short "
                    f"calibration); the JSON follows when it is done")
    plan = plan_study(ds.texts, ds.labels, budget, encoder=load_encoder(encoder), n_unlabeled=n_unl,
                      rungs=[r.strip() for r in rungs.split(",")] if rungs else None, gpu_speedup=gpu_speedup,
                      train_budget=train_budget, seeds=seeds, screen_fidelity=screen_fidelity,
                      home=home or default_home())
    if json_out:
        stderr_line(f"plan: done in {format_duration(monotonic() - t0)}")
        u = unlabeled and str(unlabeled)
        typer.echo(json.dumps({**plan.to_dict(), "commands": plan.commands(str(data), u),
                               "time_command": plan.time_command(str(data), u),
                               "time_command_note": plan.time_command_note}, indent=2))
        return
    _print_plan(plan, budget, str(data), unlabeled and str(unlabeled))


def _print_plan(plan: Any, budget: str, data: str, unlabeled: Optional[str]) -> None:
    from rich.table import Table

    from adaptlab.decide.plan import format_seconds as fmt

    t = Table("rung", "seeds", "per seed", "once", "total", "cost", "plan",
              title=f"plan for {budget} ({fmt(plan.budget_seconds)}, {plan.device})")
    for it in plan.items:
        screen = f"1 @{it.fidelity:.0%}" if it.fidelity < 1 else ""
        seeds = " + ".join(x for x in (screen, str(it.full_seeds) if it.full_seeds else "") if x)
        t.add_row(it.rung, seeds if it.included else "-", fmt(it.seconds_per_seed, 1), fmt(it.one_time_seconds, 1),
                  fmt(it.total_seconds, 1) if it.included else "-", it.cost_source,
                  ("run: " if it.included else "skip: ") + it.reason)
    out.print(t)
    out.print(f"planned {fmt(plan.total_seconds)} of {fmt(plan.budget_seconds)}. " + " ".join(plan.notes), markup=False)
    for cmd in plan.commands(data, unlabeled):
        # One unbroken line that copies as typed: no wrapping, and no [markup] read out of a path.
        out.print(f"run it: {cmd}", soft_wrap=True, markup=False, highlight=False)
    adaptive = plan.time_command(data, unlabeled)
    if adaptive:
        out.print(f"or let the study choose each next run from the results so far: {adaptive}", soft_wrap=True,
                  markup=False, highlight=False)
    elif plan.time_command_note:  # said, not silently rewritten to more seeds than the user asked for
        out.print(f"{plan.time_command_note}.", soft_wrap=True, markup=False, highlight=False)
