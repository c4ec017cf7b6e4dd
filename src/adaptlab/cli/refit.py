"""`adaptlab refit`: train (or find stored) the refit encoder of a study, on its own.

The study's ``refit`` rung asks for its refit encoder by content key (base encoder, corpus, refit
config, budget, refit seed) and reuses a stored one. This command computes that key exactly as
``adaptlab study run --rungs ...,refit`` with the same flags does (one code path: `Study.refit`), so
the refit can be trained first, e.g. on several GPUs with ``accelerate launch``, and the study then
reads it. Registered on the main app by one import line at the bottom of ``adaptlab.cli``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shlex
import warnings
from pathlib import Path
from typing import Any, Optional

import typer

from adaptlab.cli import (EncoderOpt, EncodingOpt, GroupColOpt, HomeOpt, IdColOpt, JsonOpt, LabelColOpt, OnInvalidOpt,
                          PositiveLabelOpt, RefitBudgetOpt, RefitObjectiveOpt, SplitOpt, TestOpt, TestSeedOpt,
                          TestSizeOpt, TextColOpt, TimeColOpt, TransductiveOpt, UnlabeledOpt, ValSizeOpt, _load,
                          _progress, app, out, user_errors)
from adaptlab.cli.progress import json_stdout, progress_bars, stderr_line
from adaptlab.errors import AdaptlabError

# The manifest fields `--json` prints (the full manifest, loss curve included, is in the refit's folder).
_SUMMARY_FIELDS = ("objective", "seed", "budget", "steps", "epochs", "tokens", "samples", "wall_seconds",
                   "samples_per_second", "tokens_per_second", "loss_first", "loss_last", "corpus", "config",
                   "runtime", "device", "resumed_at")


def _study_command(flags: list[tuple[str, Any]]) -> str:
    """The `adaptlab study run` line that asks for the same refit (flags at their default are left out)."""
    words = ["adaptlab", "study", "run"]
    for flag, value in flags:
        if value is None or value is False:
            continue
        words.append(flag)
        if value is not True:
            words.append(str(value))
        if flag == "--data":
            words += ["--rungs", "tfidf,probe,refit"]
    return " ".join(shlex.quote(w) for w in words)


def refit_summary(outcome: Any, study_command: str) -> dict[str, Any]:
    """What `adaptlab refit --json` prints: where the refit is, whether it was reused, and what it cost."""
    m = outcome.manifest
    return {"key": outcome.key, "path": str(outcome.path), "reused": bool(outcome.reused),
            "base_fingerprint": m.get("base_encoder", {}).get("fingerprint"),
            "refit_fingerprint": m.get("refit_encoder", {}).get("fingerprint"),
            **{k: m.get(k) for k in _SUMMARY_FIELDS},
            "study_command": study_command}


def _fmt_loss(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


@app.command("refit")
@user_errors
def refit_cmd(
    data: Path = typer.Option(..., "--data", help="Labeled CSV / JSONL / Parquet file (its texts join the corpus, never a label)."),
    unlabeled: Optional[Path] = UnlabeledOpt,
    test: Optional[Path] = TestOpt,
    split: str = SplitOpt,
    text_col: Optional[str] = TextColOpt,
    label_col: Optional[str] = LabelColOpt,
    group_col: Optional[str] = GroupColOpt,
    time_col: Optional[str] = TimeColOpt,
    id_col: Optional[str] = IdColOpt,
    encoding: Optional[str] = EncodingOpt,
    on_invalid: str = OnInvalidOpt,
    encoder: Optional[str] = EncoderOpt,
    positive_label: Optional[str] = PositiveLabelOpt,
    test_size: float = TestSizeOpt,
    val_size: float = ValSizeOpt,
    test_seed: int = TestSeedOpt,
    budget: Optional[str] = typer.Option(None, "--budget", help="The study's training budget (the refit's default length)."),
    refit_budget: Optional[str] = RefitBudgetOpt,
    refit_objective: Optional[str] = RefitObjectiveOpt,
    transductive: bool = TransductiveOpt,
    mixed_precision: Optional[str] = typer.Option(None, "--mixed-precision", help="auto | no | bf16 | fp16 (fp16 needs a CUDA GPU; auto, the default as in study run: bf16 where native and within --precision-tolerance of a short float32 run on validation, else float32)."),
    precision_tolerance: float = typer.Option(0.005, "--precision-tolerance", help="With --mixed-precision auto: largest validation-F1 loss bf16 may show against float32 (0.005 = half a point; the study's flag of the same name)."),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train (or find stored) the refit encoder that `adaptlab study run --rungs ...,refit` with the same flags uses.

    Give it the study's data, split and encoder flags; the study then reuses the stored refit instead of training it.

    On several GPUs: accelerate launch --num_processes 4 -m adaptlab.cli refit --data labeled.csv --unlabeled
    abstracts.csv --refit-budget 2000steps --mixed-precision bf16. A step budget is the same optimizer steps over the
    same texts on 1 or 4 GPUs (each global batch is split across the processes); only the main process writes and
    prints.
    """
    from adaptlab.rungs.runtime import is_main_process

    main = is_main_process()
    try:
        with contextlib.ExitStack() as stack:
            if not main:  # the main process alone speaks: the others repeat no data or training warning
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore")
                stack.callback(logging.disable, logging.root.manager.disable)
                logging.disable(logging.WARNING)
            from time import monotonic

            from adaptlab.cli.diagnose import refit_rung_params
            from adaptlab.config import StudyConfig, format_duration
            from adaptlab.evaluate import Study

            # The study's config minus the other rungs: nothing here changes the refit's key with the rung list.
            cfg = StudyConfig(rungs=["refit"], seeds=1, split=split, test_size=test_size, val_size=val_size,
                              test_seed=test_seed, encoder=encoder, positive_label=positive_label, budget=budget,
                              precision_tolerance=precision_tolerance, mixed_precision=mixed_precision or "auto",
                              rung_params=refit_rung_params("refit", refit_budget, refit_objective, transductive,
                                                            mixed_precision))
            cols = dict(text_col=text_col, label_col=label_col, group_col=group_col, time_col=time_col, id_col=id_col,
                        encoding=encoding, on_invalid=on_invalid)
            study = Study(cfg, home=home, show_progress=main and progress_bars(json_out))
            ds = _load(data, **cols)
            test_ds = _load(test, **cols)
            unl = _load(unlabeled, **{**cols, "label_col": None, "group_col": None, "time_col": None},
                        require_labels=False)
            if json_out and main:  # stdout is the JSON document: say on stderr that the refit runs, and when it ends
                stderr_line(f"refit: {len(unl) if unl is not None else 0} unlabeled texts, budget "
                            f"{refit_budget or 'the default'}; the JSON follows when it is done")
            t0 = monotonic()
            with json_stdout(json_out):
                outcome = study.refit(ds, test=test_ds, unlabeled=unl, progress=_progress(json_out) if main else None)
            if json_out and main:
                stderr_line(f"refit: done in {format_duration(monotonic() - t0)}")
    except AdaptlabError as exc:
        if not main:  # the main process says it once
            raise typer.Exit(exc.exit_code) from None
        raise
    if not main:
        return

    command = _study_command([
        ("--data", data), ("--unlabeled", unlabeled), ("--test", test),
        ("--split", split if split != "auto" else None), ("--text-col", text_col), ("--label-col", label_col),
        ("--group-col", group_col), ("--time-col", time_col), ("--id-col", id_col), ("--encoding", encoding),
        ("--on-invalid", on_invalid if on_invalid != "error" else None), ("--encoder", encoder),
        ("--positive-label", positive_label), ("--test-size", test_size if test_size != 0.2 else None),
        ("--val-size", val_size if val_size != 0.2 else None), ("--test-seed", test_seed or None),
        ("--budget", budget), ("--refit-budget", refit_budget), ("--refit-objective", refit_objective),
        ("--transductive", transductive), ("--mixed-precision", mixed_precision),
        ("--precision-tolerance", precision_tolerance if precision_tolerance != 0.005 else None), ("--home", home),
    ])
    summary = refit_summary(outcome, command)
    if json_out:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    rt = summary["runtime"] or {}
    runtime = (f"{rt.get('mixed_precision', '?')}, {rt.get('num_processes', '?')} process(es), {rt.get('device', '?')}"
               if rt else f"not recorded (device {summary['device']})")
    tps = summary["tokens_per_second"]
    lines = [
        f"refit {outcome.key} ({'reused: already stored' if outcome.reused else 'trained now'})",
        f"  folder    {outcome.path}",
        f"  objective {summary['objective']}, budget {summary['budget']}, refit seed {summary['seed']}",
        f"  trained   {summary['steps']} steps, {summary['tokens']:,} tokens"
        + (f", {tps:,.0f} tokens/s" if tps is not None else ""),
        f"  loss      {_fmt_loss(summary['loss_first'])} -> {_fmt_loss(summary['loss_last'])}",
        f"  runtime   {runtime}",
        f"  corpus    {summary['corpus'].get('n_texts')} texts" if summary["corpus"] else "  corpus    -",
        "a study with the same flags reuses it:",
        f"  {command}",
    ]
    for line in lines:
        out.print(line, highlight=False, markup=False, soft_wrap=True)
