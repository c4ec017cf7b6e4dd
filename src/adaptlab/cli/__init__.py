"""The `adaptlab` command line: a thin shell over the public API (no logic lives here)."""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.markup import escape

from adaptlab.cancel import Cancelled, cancel_on_sigint
from adaptlab.cli import exit_codes
from adaptlab.cli.catalogue import rung_catalogue
from adaptlab.cli.console import SafeConsole, plain
from adaptlab.cli.progress import progress_bars
from adaptlab.errors import AdaptlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, epilog=exit_codes.EXIT_STATUS_HELP,
                  help="Reuse the pretrained text encoder frozen, or adapt it? Answer with evidence.")
study_app = typer.Typer(no_args_is_help=True, help="Run and inspect studies (rungs x seeds on one sealed split).")
data_app = typer.Typer(no_args_is_help=True, help="Check a data file before running a study.")
app.add_typer(study_app, name="study")
app.add_typer(data_app, name="data")

# Tables are wide; when output is piped (CI logs, files) rich would wrap them at 80 columns.
# SafeConsole: user text that reaches a print unescaped prints as typed instead of failing the command.
out = SafeConsole(width=None if sys.stdout.isatty() else 140)
err = SafeConsole(stderr=True, width=None if sys.stderr.isatty() else 140)

HomeOpt = typer.Option(None, "--home", help="Folder of the run store and caches (default: $ADAPTLAB_HOME or ./adaptlab-runs).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
# The data, split and refit flags `study run` and `refit` share (one declaration: the same flags, the same key).
UnlabeledOpt = typer.Option(None, "--unlabeled", help="Unlabeled in-domain texts (used by the refit rung).")
TestOpt = typer.Option(None, "--test", help="Labeled test file; sealed. Default: carved from --data.")
SplitOpt = typer.Option("auto", "--split", help="auto | stratified | group | near-dup | time.")
TextColOpt = typer.Option(None, "--text-col", help="Text column (default: text).")
LabelColOpt = typer.Option(None, "--label-col", help="Label column (default: label).")
TaskOpt = typer.Option(None, "--task", help="single | multilabel (default: detected from the label column).")
LabelSepOpt = typer.Option("|", "--label-sep", help="Separator of several labels in one cell (multi-label; a JSON list works too).")
LabelColsOpt = typer.Option(None, "--label-cols", help="Multi-label as one 0/1 column per label: a,b,c.")
GroupColOpt = typer.Option(None, "--group-col", help="Group column: no group crosses splits.")
TimeColOpt = typer.Option(None, "--time-col", help="Timestamp column (for --split time).")
IdColOpt = typer.Option(None, "--id-col", help="Id column (default: id, else row number).")
EncodingOpt = typer.Option(None, "--encoding", help="File encoding when not UTF-8, e.g. cp1252.")
OnInvalidOpt = typer.Option("error", "--on-invalid", help="error | drop (drop bad rows, listing them).")
EncoderOpt = typer.Option(None, "--encoder", help="Encoder folder (default: packaged all-MiniLM-L6-v2).")
PositiveLabelOpt = typer.Option(None, "--positive-label", help="Positive class of a binary task.")
TestSizeOpt = typer.Option(0.2, "--test-size")
ValSizeOpt = typer.Option(0.2, "--val-size")
TestSeedOpt = typer.Option(0, "--test-seed", help="Seed of the sealed test draw (fixed across seeds).")
RefitBudgetOpt = typer.Option(None, "--refit-budget", help="Refit length: 300steps, 5Mtokens, 1epoch, 2h (default: --budget, else one epoch capped at 1000 steps).")
RefitObjectiveOpt = typer.Option(None, "--refit-objective", help="Refit objective: mlm (default) | simcse.")
TransductiveOpt = typer.Option(False, "--transductive", help="Let the refit also read the test texts (never labels).")
ConfigOpt = typer.Option(None, "--config", help="Study file (TOML): these flags' settings (seeds = 3, budget = \"500steps\" ...) "
                         "and `[rung.NAME]` parameters; flags given here override it. `adaptlab study config STUDY` writes one.")
SetOpt = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override one setting of the study file: --set lora.r=16, --set seeds=3 (repeatable; "
                      "values are TOML: 5e-5, true, [0.1, 1.0]; a bare word is a string).")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user mistakes into one clear message and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AdaptlabError as exc:
            # Escape: messages contain [codes] and [lists] that rich would swallow as markup.
            err.print(f"[bold red]error:[/] {escape(bounded_message(str(exc)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code)
        except (KeyboardInterrupt, Cancelled):  # Ctrl+C, or the first one's stop at the next step
            err.print("interrupted. Finished runs are stored; run the same command again to resume.")
            raise typer.Exit(exit_codes.INTERRUPTED)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer's own exits and usage errors print themselves
        except Exception as exc:  # noqa: BLE001 -- a bug: one line and a log file, not a traceback
            from adaptlab.cli.crash import crash_message, debug_enabled, write_crash_log

            if debug_enabled():
                raise
            command = getattr(wrapper, "_adaptlab_command", fn.__name__)
            msg = bounded_message(crash_message(exc, command, write_crash_log(exc, command)))
            err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exit_codes.CRASH)

    wrapper._adaptlab_guarded = True  # type: ignore[attr-defined]
    return wrapper


def bounded_message(message: str, limit: int = 2_000) -> str:
    """An error message with each line cut to ``limit`` characters: a message that quotes a whole 50 MB line
    or cell prints as its start and its length (the messages themselves quote bounded excerpts; this is the net).

    Example:
        >>> bounded_message("bad value " + "x" * 50, limit=12)
        'bad value xx… (60 characters)'
    """
    from adaptlab.errors import excerpt

    return "\n".join(excerpt(line, limit) for line in message.split("\n"))


def _guard_commands(group: typer.Typer, prefix: str = "") -> None:
    """Give every registered command (and sub-command) the ``user_errors`` handling, also those that forgot the
    decorator, so no command can show a traceback; records each one's full name for the crash message."""
    for info in group.registered_commands:
        name = f"{prefix}{info.name or info.callback.__name__.replace('_', '-')}"
        if not getattr(info.callback, "_adaptlab_guarded", False):
            info.callback = user_errors(info.callback)
        info.callback._adaptlab_command = name  # type: ignore[union-attr]
    for sub in group.registered_groups:
        _guard_commands(sub.typer_instance, f"{prefix}{sub.name} ")


def invoked_as() -> str:
    """How to type ``adaptlab`` again in this shell, so a printed "try: ..." line works when pasted:
    ``adaptlab`` when that name on the PATH is this program, else the path it was started by (e.g.
    ``.venv/bin/adaptlab`` when ``scripts/dev.sh`` ran it without activating the environment).

    Example:
        >>> invoked_as() in ("adaptlab",) or invoked_as().endswith("adaptlab")
        True
    """
    import os
    import shlex
    import shutil

    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name != "adaptlab" or os.sep not in argv0:
        return "adaptlab"  # found on the PATH, or not the console script (python -m adaptlab, tests)
    found = shutil.which("adaptlab")
    try:
        if found and os.path.samefile(found, argv0):
            return "adaptlab"
    except OSError:
        pass
    return shlex.quote(argv0)


def _progress(json_out: bool) -> Callable[[str], None]:
    """Where a command's progress lines go: dim lines on stderr; with ``--json`` plain lines on stderr (stdout
    holds only the JSON document, and a script reading it still sees that the command is working)."""
    from adaptlab.cli.progress import stderr_line

    if json_out:
        return lambda msg: stderr_line(str(msg).strip())
    return lambda msg: err.print(f"[dim]{escape(str(msg))}[/]", highlight=False)


def _load(path: Optional[Path], *, text_col, label_col, group_col, time_col, id_col, encoding, on_invalid,
          require_labels: bool = True):
    from adaptlab.data import load_dataset

    if path is None:
        return None
    return load_dataset(path, text_col=text_col, label_col=label_col, group_col=group_col, time_col=time_col,
                        id_col=id_col, encoding=encoding, require_labels=require_labels, on_invalid=on_invalid)


def _emit(result: Any, json_out: bool, decision: Any = None, extra: Optional[dict[str, Any]] = None) -> None:
    from adaptlab.evaluate.report import render_study

    if json_out:
        payload = result.to_dict()
        if decision is not None:
            payload["decision"] = decision.to_dict()
        payload.update(extra or {})
        typer.echo(json.dumps(payload, indent=2, default=str))
    else:
        out.print(render_study(result))
        if decision is not None:
            from adaptlab.report import render_decision

            out.print(render_decision(decision))


@study_app.command("run")
@user_errors
def study_run(
    ctx: typer.Context,
    data: Optional[Path] = typer.Option(None, "--data", help="Labeled CSV / JSONL / Parquet file (required here or "
                                        "as data = \"FILE\" in the study file)."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    unlabeled: Optional[Path] = UnlabeledOpt,
    test: Optional[Path] = TestOpt,
    rungs: Optional[str] = typer.Option(None, "--rungs", help=rung_catalogue().rungs_help()),
    seeds: int = typer.Option(5, "--seeds", help="Number of seeds; each re-draws validation and reseeds the model."),
    split: str = SplitOpt,
    text_col: Optional[str] = TextColOpt,
    label_col: Optional[str] = LabelColOpt,
    group_col: Optional[str] = GroupColOpt,
    time_col: Optional[str] = TimeColOpt,
    id_col: Optional[str] = IdColOpt,
    encoding: Optional[str] = EncodingOpt,
    on_invalid: str = OnInvalidOpt,
    encoder: Optional[str] = EncoderOpt,
    encoders: Optional[str] = typer.Option(None, "--encoders", help="Compare these encoders first (comma-separated names "
                                           "or folders; frozen probe over seeds + LogME pre-screen), then run the study "
                                           "with the chosen one. See `adaptlab encoders list`."),
    positive_label: Optional[str] = PositiveLabelOpt,
    test_size: float = TestSizeOpt,
    val_size: float = ValSizeOpt,
    test_seed: int = TestSeedOpt,
    budget: Optional[str] = typer.Option(None, "--budget", help="Training budget of network rungs, equal for all: 500steps, 30min, 2h."),
    time: Optional[str] = typer.Option(None, "--time", help="Whole-study time budget, e.g. 3h, 90min: run in rounds (cheap rungs, short screens of the network rungs, then full runs and seeds only where they can flip the decision) and stop when settled. --seeds is then the most seeds a rung gets. Default: the exhaustive grid rungs × seeds."),
    screen_fidelity: float = typer.Option(0.25, "--screen-fidelity", help="With --time: share of its training budget a network rung gets when first screened."),
    name: str = typer.Option("", "--name", help="A name for the study."),
    refit_budget: Optional[str] = RefitBudgetOpt,
    refit_objective: Optional[str] = RefitObjectiveOpt,
    transductive: bool = TransductiveOpt,
    mixed_precision: Optional[str] = typer.Option(None, "--mixed-precision", help="auto | no | bf16 | fp16: precision of the rungs that train the encoder (lora, unfreeze, finetune, lpft, refit); fp16 needs a CUDA GPU; auto (the default) is bf16 where the hardware runs it natively and a short float32 run on the first seed agrees within --precision-tolerance, else float32 (no: float32)."),
    executor: str = typer.Option("inprocess", "--executor", help="inprocess | ray: where the (rung, seed) jobs run."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: auto | ray://host:10001 (default: a local Ray instance)."),
    max_retries: int = typer.Option(2, "--max-retries", help="Ray: resubmit a failed job this many times."),
    job_cpus: float = typer.Option(1.0, "--job-cpus", help="Ray: CPUs per job."),
    job_gpus: float = typer.Option(0.0, "--job-gpus", help="Ray: GPUs per job."),
    job_memory: Optional[str] = typer.Option(None, "--job-memory", help="Ray: memory per job, e.g. 4GB."),
    rung_resources: Optional[str] = typer.Option(None, "--rung-resources", help='Ray: per-rung requests as JSON, e.g. {"refit": {"gpus": 1}}.'),
    precision: str = typer.Option("auto", "--precision", help="fp32 | bf16 | int8 | auto: the frozen encoder's numeric path (probe); bf16 and int8 are used only within --precision-tolerance of fp32 on validation; auto (the default) is bf16 where the hardware runs it natively (AVX-512-BF16/AMX CPUs, CUDA GPUs with bf16; ADAPTLAB_NATIVE_BF16=0 says no), else fp32."),
    precision_tolerance: float = typer.Option(0.005, "--precision-tolerance", help="Largest validation-F1 loss bf16 or int8 may show against fp32 (0.005 = half a point)."),
    int8_tolerance: Optional[float] = typer.Option(None, "--int8-tolerance", hidden=True, help="Deprecated name of --precision-tolerance."),
    long_text: Optional[str] = typer.Option(None, "--long-text", metavar="STRATEGY", help="How the rungs read texts longer than the encoder's window: truncate (the default: the first window) | head_tail[:K] (the first K tokens and the last ones; every rung but tfidf and setfit) | chunk_mean[:O] | chunk_max[:O] (windows overlapping by O tokens, mean- or max-pooled; the frozen rungs probe and refit). `adaptlab data check` says how many texts are longer."),
    track: Optional[str] = typer.Option(None, "--track", help="Log the study to an experiment tracker: mlflow (the study as "
                                        "a parent run with its decision and HTML report, each rung × seed as a child run). "
                                        "Default: nothing is logged."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="With --track: where to log (default: "
                                               "$ADAPTLAB_TRACKING_URI, else ./mlruns), e.g. http://127.0.0.1:5000."),
    recompute: Optional[str] = typer.Option(None, "--recompute", help="RUNG[,RUNG] or all: train these rungs' cells "
                                            "again instead of reading their stored results, and replace them (for "
                                            "results you distrust)."),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Run rungs x seeds on one sealed split; print mean ± std and 95% bands per rung.

    With ``--encoders a,b``, the candidates are compared first (frozen probe over the same seeds and
    sealed split, LogME / kNN pre-screen, speed) and the study runs with the chosen encoder; its probe
    results are read back from the run store, and the choice is stored with the study and added to
    the decision.

    With ``--config study.toml`` the settings come from a study file (top-level keys named like these flags,
    per-rung parameters under ``[rung.NAME]``); ``--set lora.r=16`` overrides one of them, and flags
    given explicitly override both. ``adaptlab study config STUDY`` writes a stored study back as a file.
    """
    from adaptlab.evaluate import Study

    from adaptlab.cli.diagnose import refit_rung_params
    from adaptlab.cli.encoders import parse_encoders
    from adaptlab.cli.studyfile import settle_flags
    from adaptlab.errors import ConfigError
    from adaptlab.studyfile import study_config

    flags = {k: v for k, v in locals().items() if k not in ("ctx", "config", "set_", "json_out")}
    f, settings = settle_flags(ctx, flags, config, set_, quiet=json_out)
    if f.int8_tolerance is not None and not json_out:
        err.print("[dim]int8_tolerance (--int8-tolerance) is the old name of precision_tolerance "
                  "(--precision-tolerance); it still works.[/]", highlight=False)
    if f.data is None:
        raise ConfigError("no labeled data: give --data FILE, or data = \"FILE\" in the study file (--config).")
    candidates = parse_encoders(f.encoders)
    if candidates and f.encoder is not None:
        raise ConfigError("give either --encoder (one encoder) or --encoders (candidates to compare), not both.")
    if len(candidates) == 1:
        settings.values["encoder"], candidates = candidates[0], []
    # The refit flags' own checks (refit in --rungs, a precision this machine runs); the parameters themselves
    # come from the layered settings (file < --set < flags), which hold the same for flags alone.
    names = f.rungs if isinstance(f.rungs, str) else ",".join(f.rungs)  # the default is a list (studyfile)
    refit_rung_params(names, f.refit_budget, f.refit_objective, f.transductive, f.mixed_precision)
    cfg = study_config(settings)
    ex = _executor_config(f)
    from adaptlab.evaluate.tracking import make_tracker

    if f.tracking_uri and not f.track:
        raise ConfigError("--tracking-uri says where to log, but nothing is logged without --track mlflow.")
    tracker = make_tracker(f.track, uri=f.tracking_uri)
    study = Study(cfg, home=f.home, show_progress=progress_bars(json_out), executor=ex, track=tracker,
                  recompute=f.recompute)
    ds, test_ds, unl = _study_inputs(f)
    comparison = None
    from adaptlab.cli.progress import json_stdout

    if candidates:
        with json_stdout(json_out):
            study, comparison = _choose_the_encoder_first(study, candidates, ds, test_ds, json_out)
    if study.time_budget is not None:
        _cost_the_study(study, ds, test_ds, unl, json_out)
    # Studies with a refit rung are diagnosed (probe gap, MMD, domain shift) and the result stored with it.
    with cancel_on_sigint(_say_stopping):  # the first Ctrl+C stops at the next training step, checkpoint kept
        result = _run_with_progress(study, ds, test_ds, unl, json_out)
    if comparison is not None and not study.read_back:  # a finished study read back is never rewritten
        # Stored with the study's data facts (beside the encoder it used), so reports can show the choice.
        result.data["encoder_choice"] = comparison.summary()
        result.data["encoder_comparison"] = comparison.to_dict()
        study.store.set_summary(result.study_id, result.to_dict())
    _decide_and_emit(study, result, f.track, tracker, json_out)


def _cost_the_study(study: Any, ds: Any, test_ds: Any, unl: Any, json_out: bool) -> None:
    """Cost a time-budgeted study's rungs before it runs, saying so (the calibration takes seconds to minutes)."""
    from adaptlab.cli.progress import json_stdout
    from adaptlab.decide.plan import cost_the_study

    say = _progress(json_out)
    if json_out:
        say("time budget: costing the rungs on this machine (the run store, else a short calibration) ...")
    with json_stdout(json_out):
        note = cost_the_study(study, ds, test=test_ds, unlabeled=unl)
    if note:
        say(f"time budget: {note}")


def _say_stopping() -> None:
    """What the first Ctrl+C of a study says (from the signal handler: a plain write, no rich)."""
    sys.stderr.write("\nstopping at the next training step and keeping its checkpoint (Ctrl+C again stops at "
                     "once) ...\n")


def _run_with_progress(study: Any, ds: Any, test_ds: Any, unl: Any, json_out: bool) -> Any:
    """Run the study (and its diagnostics). Table mode prints the study's progress lines; with ``--json``
    stdout is the one JSON document at the end, and stderr gets a plain line per cell meanwhile."""
    import time

    from adaptlab.cli.progress import CellLines, json_stdout, stderr_line
    from adaptlab.config import format_duration
    from adaptlab.diagnostics import run_study_with_diagnostics

    cells = CellLines(study) if json_out else None
    t0 = time.monotonic()
    # With --json the cell lines say it all: one line per cell, not the study's own lines as well.
    with json_stdout(json_out):
        result = run_study_with_diagnostics(study, ds, test=test_ds, unlabeled=unl,
                                            progress=None if json_out else _progress(json_out),
                                            on_event=cells.on_event if cells is not None else None)
    if cells is not None:
        stderr_line(f"study {result.study_id[:12]}: done in {format_duration(time.monotonic() - t0)}; "
                    f"{result.n_trained} cell(s) trained, {result.n_from_store} read from the run store")
    return result


def _executor_config(f: Any) -> Any:
    """Where the (rung, seed) jobs run, from the settled flags."""
    from adaptlab.config import ExecutorConfig
    from adaptlab.errors import ConfigError

    per_rung = f.rung_resources
    try:
        per_rung = json.loads(per_rung) if isinstance(per_rung, str) else (per_rung or {})
    except ValueError as exc:
        raise ConfigError.invalid("--rung-resources", f.rung_resources, 'JSON like {"refit": {"gpus": 1}}') from exc
    return ExecutorConfig(kind=f.executor, address=f.address, max_retries=f.max_retries, cpus=f.job_cpus,
                          gpus=f.job_gpus, memory=f.job_memory, rung_resources=per_rung)


def _study_inputs(f: Any) -> tuple[Any, Any, Any]:
    """The labeled data, the separate test file and the unlabeled texts the settled flags name."""
    cols = dict(text_col=f.text_col, label_col=f.label_col, group_col=f.group_col, time_col=f.time_col,
                id_col=f.id_col, encoding=f.encoding, on_invalid=f.on_invalid)
    ds = _load(Path(f.data), **cols)
    test_ds = _load(Path(f.test) if f.test else None, **cols)
    unl = _load(Path(f.unlabeled) if f.unlabeled else None, **{**cols, "label_col": None, "group_col": None,
                                                                 "time_col": None}, require_labels=False)
    return ds, test_ds, unl


def _choose_the_encoder_first(study: Any, candidates: list[str], ds: Any, test_ds: Any,
                              json_out: bool) -> tuple[Any, Any]:
    """``--encoders a,b``: compare the candidates, then the same study on the chosen one (and the comparison)."""
    import dataclasses

    from adaptlab.cli.encoders import render_comparison
    from adaptlab.evaluate import Study
    from adaptlab.evaluate.encoders import compare_encoders

    comparison = compare_encoders(ds, candidates, config=study.config, test=test_ds, home=study.home,
                                  progress=_progress(json_out), show_progress=progress_bars(json_out))
    cfg = dataclasses.replace(study.config, encoder=comparison.row(comparison.chosen)["spec"])
    chosen = Study(cfg, home=study.home, show_progress=progress_bars(json_out), executor=study.executor,
                   track=study.tracker, recompute=",".join(study.recompute) or None)
    if not json_out:
        out.print(render_comparison(comparison))
    return chosen, comparison


def _decide_and_emit(study: Any, result: Any, track: Optional[str], tracker: Any, json_out: bool) -> None:
    """The decision (read with the encoder choice stored with the study), logged to the tracker if any, printed."""
    from adaptlab.cli.report import decide_study

    if tracker is None:
        _emit(result, json_out, decide_study(study.store, result.study_id, home=study.home))
        return
    from adaptlab.report.tracking import track_decision

    decision = track_decision(study, result.study_id)
    where = {"tracker": track, "uri": tracker.uri, "run_id": tracker.run_id}
    _emit(result, json_out, decision, extra={"tracking": where})
    if not json_out:
        err.print(f"[dim]tracked: {track} run {tracker.run_id} (the study; one child run per rung × seed) at "
                  f"{escape(tracker.uri)}[/]", highlight=False, soft_wrap=True)


@study_app.command("show")
@user_errors
def study_show(
    study: str = typer.Argument("latest", help="Study id (a prefix is enough), name, or 'latest'."),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Show a stored study and its decision."""
    from adaptlab.config import default_home
    from adaptlab.evaluate import StudyResult
    from adaptlab.store import RunStore

    from adaptlab.cli.report import decide_study

    h = home or default_home()
    store = RunStore(h / "runs.sqlite")
    rec = store.get_study(study)
    if rec["summary"] is None:
        raise AdaptlabError(f"study {rec['study_id'][:12]} did not finish; run the same `adaptlab study run` again to resume it.")
    _emit(StudyResult.from_dict(rec["summary"]), json_out, decide_study(store, rec["study_id"], home=h))
    if not json_out:  # JSON has it as "config"
        from adaptlab.cli.studyfile import print_configuration

        print_configuration(rec["config"], rec["study_id"])


@study_app.command("list")
@user_errors
def study_list(home: Optional[Path] = HomeOpt, json_out: bool = JsonOpt) -> None:
    """List the studies in the run store."""
    import datetime as dt

    from rich.table import Table

    from adaptlab.config import default_home
    from adaptlab.store import RunStore

    studies = RunStore((home or default_home()) / "runs.sqlite").list_studies()
    if json_out:
        typer.echo(json.dumps(studies, indent=2))
        return
    t = Table("id", "name", "updated", "complete")
    for s in studies:
        t.add_row(s["study_id"][:12], plain(s["name"]), dt.datetime.fromtimestamp(s["updated_at"]).isoformat(timespec="seconds"),
                  "yes" if s["complete"] else "no (re-run to resume)")
    out.print(t)


@data_app.command("check")
@user_errors
def data_check(
    data: Path = typer.Option(..., "--data", help="Labeled CSV / JSONL / Parquet file."),
    text_col: Optional[str] = typer.Option(None, "--text-col"),
    label_col: Optional[str] = typer.Option(None, "--label-col"),
    group_col: Optional[str] = typer.Option(None, "--group-col"),
    time_col: Optional[str] = typer.Option(None, "--time-col"),
    id_col: Optional[str] = typer.Option(None, "--id-col"),
    encoding: Optional[str] = typer.Option(None, "--encoding"),
    threshold: float = typer.Option(0.8, "--near-dup-threshold", help="Jaccard similarity of word 5-shingles."),
    label_issues: Optional[Path] = typer.Option(None, "--label-issues", help="Write every likely mislabeled row "
                                                "(ranked) to this file: .csv, .tsv, .jsonl or .parquet."),
    no_label_issues: bool = typer.Option(False, "--no-label-issues", help="Skip the label check (confident "
                                         "learning on 5-fold TF-IDF probabilities; seconds for thousands of texts)."),
    max_rows: int = typer.Option(20_000, "--max-rows", min=0, help="Above this many rows, the label check and the "
                                 "naive split's TF-IDF baseline use a seeded sample of this size (the output says "
                                 "so); near-duplicates are always searched in every row. 0: every row."),
    task: Optional[str] = TaskOpt,
    label_sep: str = LabelSepOpt,
    label_cols: Optional[str] = LabelColsOpt,
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder whose window (and tokenizer) the texts are "
                                          "measured against (default: packaged all-MiniLM-L6-v2, 256 tokens)."),
    json_out: bool = JsonOpt,
) -> None:
    """Validate a file, find near-duplicates, measure how much they would inflate a naive split, say how many
    texts are longer than the encoder's window (by class), and find likely label errors (ranked rows and the
    estimated noise rate per class). Multi-label data (detected, or --task multilabel / --label-cols) gets its
    label summary: cardinality, rows without a label, rare labels, co-occurring pairs."""
    from adaptlab.data import load_dataset
    from adaptlab.evaluate.datacheck import data_check as run_check

    _check_data_check_options(max_rows, label_issues, no_label_issues)
    import time

    from adaptlab.cli.progress import json_stdout
    from adaptlab.config import format_duration

    say, t0 = _progress(json_out), time.monotonic()
    # The report lists the loader's warnings with the check's own, each with its fix: not logged twice.
    with _quiet_logger("adaptlab.data.load"):
        ds, loaded = load_dataset(data, text_col=text_col, label_col=label_col, group_col=group_col,
                                  time_col=time_col, id_col=id_col, encoding=encoding, on_invalid="error",
                                  return_report=True, **_task_kwargs(task, label_sep, label_cols))
    with json_stdout(json_out):
        # The web app's check page runs the same function: the same warnings, word for word.
        report, issues = run_check(ds, load_warnings=loaded.warnings, threshold=threshold, max_rows=max_rows,
                                   label_check=not no_label_issues, progress=say, encoder=encoder)
    if json_out:
        say(f"data check: done in {format_duration(time.monotonic() - t0)}")
    report["source"] = str(data)
    if ds.label_sets is not None:
        return _print_multilabel_check(report, loaded, json_out)
    infl = report["naive_split"]
    written = issues.write(label_issues) if issues is not None and label_issues is not None else None
    if json_out:
        report["label_issues_file"] = None if written is None else str(written)
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    # markup=False: the class names are the user's own (a label "[/]" is a label, not rich markup).
    out.print(f"{report['n']} labeled texts, classes: {_counts_line(report['label_counts'])}", markup=False,
              highlight=False)
    _print_window(report["window"])
    out.print(f"near-duplicates: {report['near_dup_items']} texts in {report['near_dup_clusters']} clusters")
    if infl["inflation"] is not None:
        out.print(f"a naive stratified split puts {infl['n_test_leaked']} of {infl['n_test']} test items next to a "
                  f"(near-)duplicate in train; the tfidf baseline scores {infl['f1_all']:.4f} on all test items, "
                  f"{infl['f1_clean']:.4f} without them: inflation {infl['inflation']:+.4f}.")
        if infl.get("sampled"):
            smp = infl["sampled"]
            out.print(f"  (baseline fitted on {smp['n_train_fit']:,} of {smp['n_train']:,} train rows and scored on "
                      f"{smp['n_test_scored']:,} of {smp['n_test']:,} test rows: --max-rows {smp['max_rows']:,})")
    out.print(f"recommended split: {report['recommended_split']} (the default `--split auto` picks it)")
    if issues is not None:
        _print_label_issues(issues, written)
    _print_check_warnings(report["warnings"])


def _check_data_check_options(max_rows: int, label_issues: Optional[Path], no_label_issues: bool) -> None:
    from adaptlab.errors import ConfigError

    if 0 < max_rows < 100:
        raise ConfigError.invalid("--max-rows", max_rows, "0 (every row) or an integer >= 100 (default 20,000)")
    if label_issues is not None and no_label_issues:
        raise ConfigError("--label-issues FILE writes the label check's rows, --no-label-issues skips the check: "
                          "give one of them, not both.")


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _print_check_warnings(warnings: list[dict[str, Any]]) -> None:
    """The check's warnings, each with its fix: the list the web app's check page shows."""
    if not warnings:
        out.print("warnings: none")
        return
    out.print(f"warnings ({len(warnings)}):")
    for w in warnings:
        rows = w.get("rows") or []
        where = f" (rows {', '.join(map(str, rows[:10]))}{', ...' if len(rows) > 10 else ''})" if rows else ""
        # soft_wrap: a long message stays one line (the terminal wraps it; a pipe or a file keeps it whole)
        out.print(f"  [{w['code']}] {w['message']}{where}", markup=False, highlight=False, soft_wrap=True)
        if w.get("fix"):
            out.print(f"      fix: {w['fix']}", markup=False, highlight=False, soft_wrap=True)


def _task_kwargs(task: Optional[str], label_sep: str, label_cols: Optional[str]) -> dict[str, Any]:
    """The multi-label options of a command as load_dataset's keyword arguments."""
    cols = [c for c in label_cols.split(",") if c.strip()] if label_cols else None
    return {"task": task, "label_sep": label_sep, "label_cols": cols}


def _print_multilabel_check(report: dict[str, Any], loaded: Any, json_out: bool) -> None:
    """`data check` of multi-label data: the task and how it was chosen, the label summary and the warnings."""
    report["task_note"] = loaded.task_note
    if json_out:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    ml = report["multilabel"]
    out.print(f"{report['n']} texts, multi-label ({loaded.task_note}): {ml['n_labels']} labels, "
              f"{ml['cardinality']:.2f} labels per text on average (density {ml['density']:.3f}, at most "
              f"{ml['max_labels_per_row']}), {ml['distinct_label_sets']} distinct label sets", markup=False,
              highlight=False)
    out.print(f"labels: {_counts_line(report['label_counts'])}", markup=False, highlight=False)
    none = ml["rows_without_label"]
    out.print(f"rows without any label: {none['n']}" + (f" (rows {', '.join(map(str, none['rows'][:10]))})"
                                                         if none["n"] else ""), markup=False, highlight=False)
    if ml["rare_labels"]:
        out.print(f"labels seen in fewer than {ml['min_count']} rows: {_counts_line(ml['rare_labels'])}",
                  markup=False, highlight=False)
    if ml["pairs"]:
        pairs = ", ".join(f"{p['labels'][0]} + {p['labels'][1]}: {p['rows']}" for p in ml["pairs"][:5])
        out.print(f"most frequent label pairs: {pairs}", markup=False, highlight=False)
    out.print(f"near-duplicates: {report['near_dup_items']} texts in {report['near_dup_clusters']} clusters")
    out.print(f"recommended split: {report['recommended_split']} (multi-label: iterative stratification)")
    _print_check_warnings(report["warnings"])
    out.print(f"[dim]not yet for multi-label data: {', '.join(report['not_yet'])}[/]")


def _print_label_issues(issues: Any, written: Optional[Path], shown: int = 10) -> None:
    from rich.table import Table

    out.print(f"labels: {issues.summary()}", highlight=False, markup=False)
    for note in issues.notes:
        out.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    if not issues.rows:
        return
    t = Table(title=f"most likely mislabeled (top {min(shown, issues.n_flagged)} of {issues.n_flagged}; score = "
                    "out-of-fold probability of the given label)", title_justify="left")
    for col, kw in (("row", {"justify": "right"}), ("id", {}), ("given", {}), ("suggested", {}),
                    ("score", {"justify": "right"}), ("text", {"overflow": "ellipsis", "no_wrap": True, "max_width": 60})):
        t.add_column(col, **kw)
    for r in issues.top(shown):
        text = " ".join(r.text.split())
        t.add_row(str(r.row), escape(r.id), escape(r.given), escape(r.suggested), f"{r.score:.3f}",
                  escape(text[:80] + ("…" if len(text) > 80 else "")))
    out.print(t)
    if written is not None:
        out.print(f"all {issues.n_flagged} flagged rows written to {plain(written)}", highlight=False)
    else:
        out.print("[dim]write them all with --label-issues FILE (.csv/.jsonl/.parquet); fix the labels that are "
                  "wrong before training[/]")


def _counts_line(counts: dict[str, int], shown: int = 20) -> str:
    """Class counts on one line, each name bounded (a label is a cell of the user's file, of any length)."""
    from adaptlab.errors import excerpt_repr

    line = ", ".join(f"{excerpt_repr(k, 60)}: {v:,}" for k, v in list(counts.items())[:shown])
    return line + (f" and {len(counts) - shown:,} more" if len(counts) > shown else "")


def _print_window(win: dict[str, Any]) -> None:
    """How many texts are longer than the encoder's window, overall and by class (a table)."""
    from rich.table import Table

    if "skipped" in win:
        out.print(f"[dim]encoder window: not measured ({escape(win['skipped'])})[/]", highlight=False, soft_wrap=True)
        return
    sample = f" (a sample of {win['n']:,} rows: --max-rows)" if win["sampled"] else ""
    out.print(f"encoder window: {win['share_longer']:.1%} of the texts ({win['n_longer']:,} of {win['n']:,}){sample} are "
              f"longer than the {win['window_tokens']} tokens {plain(win['encoder'])} reads (median "
              f"{win['median_tokens']:.0f} tokens, 90th percentile {win['p90_tokens']:.0f}, longest {win['max_tokens']:,})",
              highlight=False, soft_wrap=True)
    if not win["n_longer"]:
        return
    t = Table("class", "texts", "longer than the window", title_justify="left",
              title=f"longer than {win['window_tokens']} tokens, by class")
    for c in win["by_class"]:
        t.add_row(escape(c["label"]), f"{c['n']:,}", f"{c['n_longer']:,} ({c['share_longer']:.1%})")
    out.print(t)
    out.print(f"[dim]the rungs read only their first window unless the study says otherwise: --long-text "
              f"chunk_mean reads every window (about {win['windows_per_text']:.1f} per text here, so that many times "
              "the encoding time; probe and refit), head_tail the start and the end (every encoder rung)[/]",
              highlight=False, soft_wrap=True)


@app.command("rungs")
def rungs_cmd() -> None:
    """List the rungs of the adaptation ladder and which are available."""
    from adaptlab.rungs import RUNGS, available_rungs
    from adaptlab.rungs.ladder import LADDER_FACTS

    for n in available_rungs():
        out.print(f"[green]{n:>9}[/]  {RUNGS[n].summary}")
    for f in LADDER_FACTS:  # catalogued, not registered: planned, or missing from this build
        if f.name not in RUNGS:
            out.print(f"[dim]{f.name:>9}  not available yet: {f.label}[/]")


@app.command("demo")
@user_errors
def demo(
    seeds: int = typer.Option(5, "--seeds"),
    rungs: str = typer.Option("tfidf,probe", "--rungs"),
    ship: bool = typer.Option(True, "--ship/--no-ship", help="Ship the decided rung to the folder models/bbc-news "
                              "under `--home`."),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Run the demo study on bundled real data (BBC News, 2,225 articles, 5 classes), decide, and ship."""
    from adaptlab.config import StudyConfig
    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.evaluate import Study

    cfg = StudyConfig(rungs=rungs, seeds=seeds, name="demo: BBC News (5 topics)")
    study = Study(cfg, home=home, show_progress=progress_bars(json_out))
    result = study.run(load_bbc_news(), progress=_progress(json_out))
    from adaptlab.cli.report import decide_study

    decision = decide_study(study.store, result.study_id, home=study.home)
    _emit(result, json_out, decision)
    if ship and not json_out and decision.ship and decision.chosen:
        from adaptlab.cli.ship import ship_demo

        ship_demo(decision, study.home, result.study_id)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context, version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        import adaptlab

        typer.echo(adaptlab.__version__)
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


from adaptlab.cli import diagnose  # noqa: E402,F401  (registers `adaptlab diagnose ...`)
from adaptlab.cli import report  # noqa: E402,F401  (registers `adaptlab decide`, `report`, `plan`)
from adaptlab.cli import ship  # noqa: E402,F401  (registers `adaptlab ship`, `predict`, `retrain`, `models`)
from adaptlab.cli import ui  # noqa: E402,F401  (registers `adaptlab ui`)
from adaptlab.cli import monitor  # noqa: E402,F401  (registers `adaptlab drift`, `neighbors`, `bias`, `stability`, `embeddings`)
from adaptlab.cli import encoders  # noqa: E402,F401  (registers `adaptlab encoders list`, `encoders compare`)
from adaptlab.cli import refit  # noqa: E402,F401  (registers `adaptlab refit`)
from adaptlab.cli import studyfile  # noqa: E402,F401  (registers `adaptlab study config`)
from adaptlab.cli import acquire  # noqa: E402,F401  (registers `adaptlab suggest`)
from adaptlab.cli import store  # noqa: E402,F401  (registers `adaptlab store backup`, `store check`)


_guard_commands(app)

from adaptlab.cli.panels import group_help  # noqa: E402

group_help(app)  # --help in panels (data, rungs, budget, execution, output), help texts as Markdown


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
