"""`adaptlab suggest`: which texts to label next (thin shell over `adaptlab.acquire`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from adaptlab.cli import HomeOpt, JsonOpt, _load, _progress, app, out, user_errors
from adaptlab.cli.progress import json_stdout
from adaptlab.errors import ConfigError


@app.command("suggest")
@user_errors
def suggest_cmd(
    pool: Path = typer.Argument(..., help="CSV / JSONL / Parquet file of unlabeled texts (text + optional id)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model folder made by `adaptlab ship`. "
                                         "Without it: a cold start (representative texts, no model)."),
    study: Optional[str] = typer.Option(None, "--study", help="Instead of --model: a stored study's decided rung "
                                        "(trained once on the study's data, kept under --home)."),
    data: Optional[Path] = typer.Option(None, "--data", help="With --study: the labeled file the study ran on "
                                        "(default: the path the study recorded)."),
    n: int = typer.Option(50, "-n", help="How many texts to suggest."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="default | uncertainty | diversity | slice | "
                                           "cold-start (default: default with --model or --study, cold-start without)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the suggestions (with an empty label "
                                          "column to fill in) to .csv, .tsv, .jsonl or .parquet."),
    labeled: Optional[Path] = typer.Option(None, "--labeled", help="Texts labeled since the last retrain (never "
                                           "suggested again)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder folder for a cold start (default: packaged "
                                          "all-MiniLM-L6-v2)."),
    precision: str = typer.Option("auto", "--precision", help="fp32 | bf16 | int8 | auto: the --encoder's numeric "
                                  "path in a cold start (auto, the default: bf16 where the hardware runs it natively, "
                                  "else fp32); a model encodes in the precision it was shipped with."),
    uncertainty: str = typer.Option("margin", "--uncertainty", help="margin | entropy."),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="Text column (default: text)."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Id column (default: id, else row number)."),
    seed: int = typer.Option(0, "--seed"),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Which texts to label next: uncertain, diverse, near the worst slice (or representative, without a model)."""
    from adaptlab.acquire import STRATEGIES, cold_start, suggest_for_model, suggest_for_study
    from adaptlab.data.label_quality import issues_file_format

    if isinstance(n, bool) or n < 1:
        raise ConfigError.invalid("-n", n, "an integer >= 1 (how many texts to suggest)", "e.g. -n 50.")
    if model is not None and study is not None:
        raise ConfigError("pass --model FOLDER or --study STUDY_ID, not both: both name the model to suggest for.")
    if data is not None and study is None:
        raise ConfigError("--data is the labeled file of a --study; with --model the model folder holds its data.")
    has_model = model is not None or study is not None
    chosen = strategy or ("default" if has_model else "cold-start")
    if chosen not in STRATEGIES:
        raise ConfigError.invalid("--strategy", chosen, f"one of {', '.join(STRATEGIES)}")
    if chosen != "cold-start" and not has_model:
        raise ConfigError(f"--strategy {chosen} needs a model: pass --model FOLDER (made by `adaptlab ship`) or "
                          "--study STUDY_ID, or use --strategy cold-start to pick representative texts without one.")
    if chosen == "cold-start" and study is not None:
        raise ConfigError("--strategy cold-start needs no model; leave out --study (or pick another strategy).")
    if model is not None and not model.exists():
        raise ConfigError(f"model folder {str(model)!r} does not exist; pass a folder made by `adaptlab ship DATA -o "
                          "FOLDER`, or leave out --model for a cold start.")
    if output is not None:
        issues_file_format(output, what="--output")  # a wrong name fails now, not after the scoring
    ds = _load(pool, text_col=text_col, label_col=None, group_col=None, time_col=None, id_col=id_col, encoding=None,
               on_invalid="error", require_labels=False)
    done = []
    if labeled is not None:
        done = _load(labeled, text_col=text_col, label_col=None, group_col=None, time_col=None, id_col=None,
                     encoding=None, on_invalid="error", require_labels=False).texts
    say = _progress(json_out)
    say(f"suggest: scoring {len(ds):,} texts ({chosen})")
    with json_stdout(json_out):
        if chosen == "cold-start":
            result = cold_start(ds, n, encoder=encoder, also_labeled=done, seed=seed, model=model,
                                precision=precision)
        elif study is not None:
            result = suggest_for_study(study, ds, n, home=home, data=data, strategy=chosen, also_labeled=done,
                                       seed=seed, uncertainty=uncertainty, progress=say)
        else:
            result = suggest_for_model(model, ds, n, strategy=chosen, also_labeled=done, seed=seed,
                                       uncertainty=uncertainty, progress=say)
    if output is not None:
        result.write(output)
    if json_out:
        payload = result.to_dict()
        payload["output"] = str(output) if output is not None else None
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    t = Table(title=f"texts to label next ({result.strategy})", title_justify="left")
    for c in ("id", "text", "model says", "conf.", "why"):
        t.add_column(c, overflow="fold")
    for r in result.rows:
        text = r["text"] if len(r["text"]) <= 70 else r["text"][:67] + "..."
        # Escaped: texts and reasons quote the users' own words, which may hold [brackets] (rich markup).
        t.add_row(escape(str(r["id"])), escape(text), escape(r["predicted_label"] or "-"),
                  "-" if r["score"] is None else f"{r['score']:.2f}", escape(f"[{r['strategy']}] {r['reason']}"))
    out.print(t)
    out.print(escape(result.summary()), highlight=False)
    for note in result.notes:
        out.print(f"note: {escape(note)}", highlight=False)
    if output is not None:
        nxt = (f"`adaptlab retrain {model} {output}`" if model is not None
               else "add them to the study's data file and run the study again" if study is not None
               else "`adaptlab ship`")
        out.print(escape(f"written to {output}: fill in the label column (delete the rows you leave unlabeled), "
                         f"then {nxt}."), highlight=False)
