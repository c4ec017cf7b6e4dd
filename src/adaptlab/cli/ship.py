"""`adaptlab ship | predict | retrain | models ...`: a thin shell over `adaptlab.ship`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from adaptlab.cli import HomeOpt, JsonOpt, _load, _progress, app, err, exit_codes, invoked_as, out, user_errors
from adaptlab.cli.console import plain
from adaptlab.cli.progress import count_lines, json_stdout, progress_bars, stderr_line
from adaptlab.errors import ConfigError

models_app = typer.Typer(no_args_is_help=True, help="List the versions of a shipped model; roll back.")
app.add_typer(models_app, name="models")

TextOpt = typer.Option(None, "--text-col", help="Text column (default: text).")
LabelOpt = typer.Option(None, "--label-col", help="Label column (default: label).")
IdOpt = typer.Option(None, "--id-col", help="Id column (default: id, else row number).")
EncodingOpt = typer.Option(None, "--encoding", help="File encoding when not UTF-8, e.g. cp1252.")


def _from_study(study: str, home: Optional[Path]) -> tuple[str, dict[str, Any]]:
    """The study's chosen rung and what its decision adds to the model card (:func:`adaptlab.ship.study_choice`)."""
    from adaptlab.ship.from_study import study_choice

    return study_choice(study, home)


@app.command("ship")
@user_errors
def ship_cmd(
    data: Path = typer.Argument(..., help="Labeled CSV / JSONL / Parquet file to train the shipped model on."),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to create (a versioned registry)."),
    rung: Optional[str] = typer.Option(None, "--rung", help="Rung to ship (default: the --study's decision, else probe)."),
    study: Optional[str] = typer.Option(None, "--study", help="Take the rung and transfer note from this study's decision."),
    unlabeled: Optional[Path] = typer.Option(None, "--unlabeled", help="Unlabeled in-domain texts (needed by --rung refit)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder folder (default: packaged all-MiniLM-L6-v2)."),
    split: str = typer.Option("auto", "--split", help="How the sealed evaluation set is drawn: auto | stratified | group | near-dup | time."),
    test_size: float = typer.Option(0.2, "--test-size", help="Share of the data sealed for evaluating every version."),
    test_seed: int = typer.Option(0, "--test-seed"),
    seed: int = typer.Option(0, "--seed", help="Training seed (retrains reuse it)."),
    budget: Optional[str] = typer.Option(None, "--budget", help="Training budget of network rungs, e.g. 300steps."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | bf16 | int8 | auto: numeric path of a frozen encoder (probe); default: what the --study's gate accepted, else fp32."),
    max_drop: float = typer.Option(0.02, "--max-drop", help="Largest F1 drop a retrain may show and still be promoted."),
    force: bool = typer.Option(False, "--force", help="Ship although the --study's decision says do not ship yet "
                               "(below the ship threshold, or provisional); the model card and `models list` say so."),
    text_col: Optional[str] = TextOpt, label_col: Optional[str] = LabelOpt, id_col: Optional[str] = IdOpt,
    group_col: Optional[str] = typer.Option(None, "--group-col", help="Group column: no group crosses the split."),
    time_col: Optional[str] = typer.Option(None, "--time-col", help="Timestamp column (for --split time)."),
    encoding: Optional[str] = EncodingOpt,
    on_invalid: str = typer.Option("error", "--on-invalid", help="error | drop (drop bad rows, listing them)."),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train the chosen rung on DATA and save it as version v0001 of a model folder, with its model card.

    With ``--study``, a decision that says do not ship yet refuses unless ``--force`` is given.
    """
    from adaptlab.ship import ship_model
    from adaptlab.ship.from_study import ship_gate

    say = _progress(json_out) or (lambda m: None)
    extra: dict[str, Any] = {}
    if study is not None:
        chosen, extra = _from_study(study, home)
        if rung is not None and rung != chosen:
            say(f"note: study {study!r} chose {chosen!r}; shipping {rung!r} as asked.")
            extra.pop("training_precision", None)  # what the chosen rung trained in
        rung = rung or chosen
        extra = ship_gate(extra, rung, force=force)  # before any training: refuses a "do not ship yet"
        if extra.get("forced"):
            say(f"forced: the study said do not ship yet ({extra['forced']['reason']}); shipping {rung} as asked. "
                "The model card and `adaptlab models list` record it.")
    elif force:
        say("note: --force only overrides a --study's decision; there is none here.")
    rung = rung or "probe"
    precision = precision or extra.pop("encode_precision", None) or "fp32"
    extra.pop("encode_precision", None)
    cols = dict(text_col=text_col, label_col=label_col, group_col=group_col, time_col=time_col, id_col=id_col,
                encoding=encoding, on_invalid=on_invalid)
    ds = _load(data, **cols)
    unl = _load(unlabeled, **{**cols, "label_col": None, "group_col": None, "time_col": None}, require_labels=False)
    with json_stdout(json_out):
        reg = ship_model(ds, output, rung=rung, encoder=encoder, unlabeled=unl, split=split, test_size=test_size,
                         test_seed=test_seed, seed=seed, budget=budget, home=home, max_drop=max_drop, extra=extra,
                         show_progress=progress_bars(json_out), progress=say, precision=precision)
    v = reg.current
    if json_out:
        typer.echo(json.dumps({"model": str(output), "version": v.to_dict()}, indent=2))
        return
    ev = v.evaluation
    out.print(f"[bold]{plain(output)}[/] {v.id} ({rung}): {ev['metric']} {ev['f1']:.4f} "
              f"[95% CI {ev['ci'][0]:.4f}, {ev['ci'][1]:.4f}] on {ev['n']} sealed texts"
              + (" [bold yellow]FORCED[/] past the study's decision" if v.forced else ""))
    out.print(f"model card: {output / 'versions' / v.id / 'MODEL_CARD.md'}", markup=False, highlight=False)
    out.print(f"next: adaptlab predict {output} FILE -o OUT.csv | adaptlab retrain {output} NEW_LABELS.csv",
              markup=False, highlight=False)


def ship_demo(decision: Any, home: Path, study_id: str) -> None:
    """The demo's last step: ship the decided rung (once; a rerun shows the shipped model)."""
    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.ship import ModelRegistry, ship_model

    folder = Path(home) / "models" / "bbc-news"
    if (folder / "registry.json").is_file():
        reg = ModelRegistry(folder)
    else:
        out.print(f"\nshipping {decision.chosen} (the decision) to {folder} ...")
        _, extra = _from_study(study_id, home)
        precision = extra.pop("encode_precision", "fp32")
        reg = ship_model(load_bbc_news(), folder, rung=decision.chosen, home=home, extra=extra, precision=precision)
    v = reg.current
    ev = v.evaluation
    out.print(f"\n[bold]shipped[/] {folder} {v.id} ({v.rung}): {ev['metric']} {ev['f1']:.4f} "
              f"[95% CI {ev['ci'][0]:.4f}, {ev['ci'][1]:.4f}] on {ev['n']} sealed texts; card: "
              f"{folder / 'versions' / v.id / 'MODEL_CARD.md'}")
    # Lines that work when pasted into the same shell: the command as this shell knows it, and a real file.
    cmd, sample = invoked_as(), _demo_sample(Path(home))
    out.print(f"try: {cmd} predict {folder} {sample} -o predictions.csv", soft_wrap=True, markup=False,
              highlight=False)
    out.print(f"     {cmd} models list {folder}", soft_wrap=True, markup=False, highlight=False)


def _demo_sample(home: Path, n: int = 20) -> Path:
    """A small CSV of BBC News texts (id, text) for the demo's "try: predict" line; written once."""
    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.data.safe_csv import SafeCsvWriter

    path = home / "demo-texts.csv"
    if not path.is_file():
        ds = load_bbc_news()
        step = max(1, len(ds.texts) // n)
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = SafeCsvWriter(fh)
            w.writerow(["id", "text"])
            w.writerows([f"bbc-{i}", ds.texts[i]] for i in range(0, step * n, step))
    return path


@app.command("predict")
@user_errors
def predict_cmd(
    model: Path = typer.Argument(..., help="Model folder (from `adaptlab ship`) or a saved pipeline folder."),
    input: Path = typer.Argument(..., help="CSV / TSV / JSONL / Parquet file with a text column."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write predictions (.csv, .tsv, .jsonl, .parquet)."),
    version: Optional[str] = typer.Option(None, "--version", help="Model version (default: the one in use)."),
    text_col: Optional[str] = TextOpt, id_col: Optional[str] = IdOpt, encoding: Optional[str] = EncodingOpt,
    batch_size: int = typer.Option(1024, "--batch-size", help="Rows read and predicted per batch (the encoder sorts each batch by length, so larger batches pad less)."),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Reject file (default: OUTPUT stem + .rejects.csv)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto."),
    precision: str = typer.Option("auto", "--precision", help="auto | fp32 | bf16 | int8: numeric path of a frozen encoder (probe). auto: the one the model was shipped with, where this hardware runs it natively, else fp32; bf16 on an fp32 model encodes about 4x faster on a CPU with AMX (cosine 0.9999 to fp32), but is not what was evaluated."),
    min_confidence: Optional[float] = typer.Option(None, "--min-confidence", help="Abstain below this (calibrated) confidence, e.g. 0.8: those rows are not labeled but go to the review file with the model's suggestion. The model card's coverage table says what share each P answers, and how accurately."),
    review: Optional[Path] = typer.Option(None, "--review", help="Review file for --min-confidence (default: OUTPUT stem + .review.csv)."),
    json_out: bool = JsonOpt,
) -> None:
    """Label every row of INPUT (streamed in batches); bad rows go to a reject file with their line numbers.

    Probabilities are calibrated when the model carries a calibration (every model shipped by this version);
    the output says which. With --min-confidence P, rows below P go to a review file instead of a guess.

    Exit status 3 when rows were read but none was labeled or sent to review (every row rejected: see the
    reject file).
    """
    from adaptlab.ship import load_model
    from adaptlab.ship.predict import predict_file

    lines = count_lines(json_out, f"predict {input.name}")
    if json_out:
        stderr_line(f"predict {input.name}: loading the model {model}; the JSON follows when every row is predicted")
    with json_stdout(json_out):
        pipe = load_model(model, version, device=device, use_cache=False, precision=precision)
        report = predict_file(pipe, input, output, text_col=text_col, id_col=id_col, batch_size=batch_size,
                              reject_path=rejects, encoding=encoding, show_progress=progress_bars(json_out),
                              on_progress=None if lines is None else (lambda n, share: lines(n, fraction=share)),
                              min_confidence=min_confidence, review_path=review)
    if review is not None and min_confidence is None and not json_out:
        err.print("[yellow]note:[/] --review names the review file of --min-confidence; without it every row is "
                  "labeled and no review file is written.", highlight=False)
    code = (exit_codes.NO_ROW_PREDICTED if report.n_read and not report.n_predicted and not report.n_review
            else exit_codes.OK)
    if json_out:
        lines(report.n_read, final=True)
        typer.echo(json.dumps({**report.to_dict(), "exit_code": code}, indent=2, default=str))
    else:
        out.print(report.summary(), markup=False, highlight=False)
    if code != exit_codes.OK:
        err.print(f"[bold red]error:[/] no row of {escape(str(input))} was labeled: all {report.n_read:,} went to "
                  f"{escape(report.reject_path)} (exit status {code}).", highlight=False, soft_wrap=True)
        raise typer.Exit(code)


@app.command("retrain")
@user_errors
def retrain_cmd(
    model: Path = typer.Argument(..., help="Model folder created by `adaptlab ship`."),
    new_labels: Path = typer.Argument(..., help="CSV / JSONL / Parquet file of new labeled texts."),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Largest F1 drop still promoted (default: the model's, 0.02)."),
    accept_labels: bool = typer.Option(False, "--accept-labels", help="Train even if the label check flags the new "
                                       "labels as likely wrong (after you reviewed them); recorded in the model card."),
    label_issues: Optional[Path] = typer.Option(None, "--label-issues", help="Write every new label the check flags "
                                                "(row, id, text, given, suggested, score) to .csv/.tsv/.jsonl/.parquet."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="JSON or TOML file overriding thresholds, e.g. "
                                          "label_noise_ratio, label_noise_min, label_noise_min_rows."),
    text_col: Optional[str] = TextOpt, label_col: Optional[str] = LabelOpt, id_col: Optional[str] = IdOpt,
    on_invalid: str = typer.Option("error", "--on-invalid", help="error | drop: skip rows without a usable label "
                                   "or text (e.g. the rows of an `adaptlab suggest` file left unlabeled), listing them."),
    json_out: bool = JsonOpt,
) -> None:
    """Add new labels, check them, retrain; the new version is used only if it does not regress.

    A batch of labels far noisier than the old ones is held (nothing trained) until fixed or accepted:
    exit status 4.
    """
    from adaptlab.data.label_quality import issues_file_format
    from adaptlab.decide.policy import load_policy
    from adaptlab.ship import retrain, write_label_issues

    if label_issues is not None:
        issues_file_format(label_issues)  # a wrong name fails now, not after the retrain
    with json_stdout(json_out):
        outcome = retrain(model, new_labels, max_drop=max_drop, text_col=text_col, label_col=label_col,
                          id_col=id_col, accept_labels=accept_labels, policy=load_policy(policy) if policy else None,
                          progress=_progress(json_out), on_invalid=on_invalid)
    written = None
    if label_issues is not None and outcome.labels is not None:
        written = write_label_issues(outcome.labels, label_issues)
    code = exit_codes.RETRAIN_HELD if outcome.held else exit_codes.OK
    if json_out:
        typer.echo(json.dumps({**outcome.to_dict(), "label_issues_file": str(written) if written else None,
                               "exit_code": code}, indent=2, default=str))
    elif outcome.held:
        # Escaped: the message quotes the users' own texts and labels, which may hold [brackets].
        out.print(f"[bold yellow]HELD[/]  {escape(outcome.message)}", highlight=False, soft_wrap=True)
    else:
        colour = "green" if outcome.promoted else ("yellow" if outcome.gate is None else "red")
        out.print(f"[bold {colour}]{'PROMOTED' if outcome.promoted else 'KEPT ' + escape(outcome.in_use)}[/]  "
                  f"{escape(outcome.message)}", highlight=False, soft_wrap=True)
    if written is not None and not json_out:
        out.print(f"{outcome.labels.n_flagged_new} flagged new label(s) written to {escape(str(written))}",
                  highlight=False)
    if code != exit_codes.OK:
        raise typer.Exit(code)


@models_app.command("list")
@user_errors
def models_list(model: Path = typer.Argument(..., help="Model folder created by `adaptlab ship`."),
                json_out: bool = JsonOpt) -> None:
    """Every version with its status, training size and sealed-set F1 (the one in use is marked), then the
    retrains the label check held (nothing trained) with their reason."""
    from adaptlab.ship import ModelRegistry

    reg = ModelRegistry(model)
    cur = reg.current.id
    held = reg.held_retrains
    if json_out:
        typer.echo(json.dumps({"in_use": cur, "versions": [v.to_dict() for v in reg.versions], "held": held},
                              indent=2, default=str))
        return
    t = Table(title=f"{plain(model)}  —  in use: {cur}", title_justify="left")
    for c in ("", "version", "created", "rung", "status", "train texts", "F1 [95% CI]", "note"):
        t.add_column(c)
    for v in reg.versions:
        ev = v.evaluation
        ci = ev.get("ci") or [float("nan")] * 2
        # A version shipped with --force against its study's decision says so where its status is read.
        status = f"{v.status} (forced)" if v.forced else v.status
        t.add_row("▶" if v.id == cur else "", v.id, v.created.replace("T", " ")[:16], v.rung, status,
                  str(v.n_train), f"{ev.get('f1', float('nan')):.4f} [{ci[0]:.4f}, {ci[1]:.4f}]",
                  plain((v.reason[:90] + "…") if len(v.reason) > 90 and not v.forced else v.reason))
    out.print(t)
    if held:
        h = Table(title="Held retrains (the label check stopped them; nothing was trained)", title_justify="left")
        for c in ("when", "in use then", "labels file", "new labels", "flagged rows", "reason"):
            h.add_column(c)
        for e in held:
            rows = ", ".join(str(r) for r in e.get("rows") or [])
            n_flag = e.get("n_flagged_new")
            h.add_row(str(e.get("time", "")).replace("T", " ")[:16], str(e.get("version", "")),
                      escape(str(e.get("source") or "")), str(e.get("n_new", "")),
                      f"{n_flag if n_flag is not None else len(e.get('rows') or [])} (first: {rows})" if rows else "",
                      escape(str(e.get("reason", ""))))
        out.print(h)


@models_app.command("rollback")
@user_errors
def models_rollback(model: Path = typer.Argument(..., help="Model folder created by `adaptlab ship`."),
                    version: Optional[str] = typer.Argument(None, help="Version to put in use (default: the previous one)."),
                    ) -> None:
    """Put an earlier version back in use (kept versions are never deleted)."""
    from adaptlab.ship import ModelRegistry

    reg = ModelRegistry(model)
    before = reg.current.id
    v = reg.rollback(version)
    out.print(f"{v.id} is in use again (was {before}). F1 on the sealed set: {v.evaluation.get('f1'):.4f}.")
    err.print("[dim]Undo with: adaptlab models rollback " f"{plain(model)} {before}[/]", highlight=False)
