"""`adaptlab drift | neighbors | bias | stability | embeddings`: watching a shipped model (thin shell over
`adaptlab.monitor`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from adaptlab.cli import JsonOpt, _load, app, err, out, user_errors
from adaptlab.cli.console import plain
from adaptlab.errors import ConfigError

ModelArg = typer.Argument(..., help="Model folder created by `adaptlab ship`.")
TextOpt = typer.Option(None, "--text-col", help="Text column (default: text).")
IdOpt = typer.Option(None, "--id-col", help="Id column (default: id, else row number).")
PrecisionOpt = typer.Option(
    "auto", "--precision", help="auto | fp32 | bf16 | int8: numeric path of a frozen encoder (auto: the one the "
    "model was shipped with where this hardware runs it natively, else fp32). The reference embeddings follow it "
    "(re-embedded once when it changes).")


def _registry_and_model(model: Path, version: Optional[str] = None, precision: Optional[str] = None):
    from adaptlab.ship import ModelRegistry

    reg = ModelRegistry(model)
    return reg, reg.load(version, precision=precision)


def _monitored(model: Path, precision: Optional[str] = None, quiet: bool = False):
    """The model in use, its embedding space and its up-to-date reference set."""
    from adaptlab.monitor.shipped import model_space, reference_for

    reg, pipe = _registry_and_model(model, precision=precision)
    space = model_space(pipe)
    if space.note:
        err.print(f"[dim]{plain(space.note)}[/]", highlight=False)
    if getattr(pipe, "precision_note_", None) and not quiet:
        err.print(f"[dim]encoder precision: {plain(pipe.precision_note_)}[/]", highlight=False)
    ref, _ = reference_for(reg, pipe, space)
    return reg, space, ref, pipe


def _texts(path: Path, text_col: Optional[str], id_col: Optional[str]):
    return _load(path, text_col=text_col, label_col=None, group_col=None, time_col=None, id_col=id_col,
                 encoding=None, on_invalid="error", require_labels=False)


@app.command("drift")
@user_errors
def drift_cmd(
    model: Path = ModelArg,
    new_texts: Path = typer.Argument(..., help="CSV / JSONL / Parquet file of new texts."),
    text_col: Optional[str] = TextOpt,
    permutations: int = typer.Option(200, "--permutations", help="Permutations of the MMD test."),
    max_points: int = typer.Option(1000, "--max-points", help="Points per side used by the MMD test (seeded sample)."),
    seed: int = typer.Option(0, "--seed"),
    precision: str = PrecisionOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Are new texts distributed like the training texts? MMD test, PCA/dimension view, out-of-distribution share."""
    from adaptlab.monitor import embedding_drift

    reg, space, ref, pipe = _monitored(model, precision, quiet=json_out)
    new = _texts(new_texts, text_col, None)
    report = embedding_drift(ref.embeddings, space.embed(new.texts), n_permutations=permutations,
                             max_points=max_points, seed=seed)
    if json_out:
        typer.echo(json.dumps({"model": str(model), "version": reg.current.id,
                               "precision": getattr(pipe, "precision_used_", None), **report.to_dict()}, indent=2))
        return
    out.print(str(report), highlight=False, markup=False, soft_wrap=True)


@app.command("neighbors")
@user_errors
def neighbors_cmd(
    model: Path = ModelArg,
    items: Path = typer.Argument(..., help="CSV / JSONL / Parquet file of new items (text + optional id)."),
    k: int = typer.Option(5, "-k", help="Neighbours per new item."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write all placements to this CSV."),
    text_col: Optional[str] = TextOpt, id_col: Optional[str] = IdOpt,
    precision: str = PrecisionOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Cold start: place new items among the training items by content embedding (kNN, with scores)."""
    import pandas as pd

    from adaptlab.monitor import place_new_items

    _, space, ref, _pipe = _monitored(model, precision, quiet=json_out)
    new = _texts(items, text_col, id_col)
    rows = place_new_items(ref.neighbor_index(), new.texts, space.embed, k=k, new_ids=new.ids)
    table = pd.DataFrame([r.to_dict() for r in rows])
    if output is not None:
        from adaptlab.data.safe_csv import safe_frame

        safe_frame(table).to_csv(output, index=False)  # ids and labels never start a spreadsheet formula
    if json_out:
        typer.echo(table.to_json(orient="records", indent=2))
        return
    t = Table(title=f"nearest training items ({len(ref)} in the index, k={k})", title_justify="left")
    for c in ("new item", "rank", "neighbour", "label", "cosine", ""):
        t.add_column(c)
    for r in rows[: 20 * k]:
        # plain(): ids and labels are the user's own text, never rich markup.
        t.add_row(plain(r.new_id), str(r.rank), plain(r.neighbor_id), plain(r.neighbor_label or ""), f"{r.score:.3f}",
                  "near-duplicate" if r.near_duplicate else "")
    out.print(t)
    if output is not None:
        out.print(f"all {len(rows)} placements written to {plain(output)}", highlight=False)


@app.command("bias")
@user_errors
def bias_cmd(
    model: Path = typer.Argument(..., help="Model folder created by `adaptlab ship` (or a saved pipeline)."),
    data: Path = typer.Argument(..., help="Labeled file with a group column."),
    group_col: str = typer.Option(..., "--group-col", help="Column with the group of each row (e.g. site, language)."),
    text_col: Optional[str] = TextOpt,
    label_col: Optional[str] = typer.Option(None, "--label-col", help="Label column (default: label)."),
    min_group_size: int = typer.Option(20, "--min-group-size", help="Smaller groups are reported but not tested."),
    json_out: bool = JsonOpt,
) -> None:
    """Per-group metrics with confidence intervals and embedding-association gaps; names the worst group."""
    from adaptlab.monitor import bias_audit
    from adaptlab.monitor.shipped import model_space
    from adaptlab.ship import load_model

    pipe = load_model(model)
    ds = _load(data, text_col=text_col, label_col=label_col, group_col=group_col, time_col=None, id_col=None,
               encoding=None, on_invalid="error")
    proba = pipe.predict_proba(ds.texts)
    pred = [str(c) for c in pipe.classes_[proba.argmax(1)]]
    space = model_space(pipe)
    report = bias_audit(ds.labels, pred, ds.groups, embeddings=space.embed(ds.texts), proba=proba,
                        classes=[str(c) for c in pipe.classes_], min_group_size=min_group_size)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    out.print(str(report), highlight=False, markup=False, soft_wrap=True)


@app.command("stability")
@user_errors
def stability_cmd(
    model: Path = ModelArg,
    old: str = typer.Argument(..., help="Version whose neighbourhoods are the baseline, e.g. v0001."),
    new: str = typer.Argument(..., help="Version to compare, e.g. v0003."),
    k: int = typer.Option(10, "-k"),
    probes: int = typer.Option(500, "--probes", help="Training items used as probes (seeded sample)."),
    json_out: bool = JsonOpt,
) -> None:
    """Nearest-neighbour stability between two versions' encoders (overlap of each probe's k neighbours)."""
    from adaptlab.monitor import encoder_stability
    from adaptlab.monitor.shipped import model_space

    from adaptlab.ship import ModelRegistry

    reg = ModelRegistry(model)
    a, b = model_space(reg.load(old)), model_space(reg.load(new))
    train = reg.training_data()
    report = encoder_stability(train.texts, a.embed, b.embed, reference_ids=train.ids, n_probes=probes, k=k)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    out.print(str(report), highlight=False, markup=False, soft_wrap=True)


@app.command("embeddings")
@user_errors
def embeddings_cmd(
    model: Path = ModelArg,
    update: bool = typer.Option(False, "--update", help="Re-embed the rows that need it (only those)."),
    json_out: bool = JsonOpt,
) -> None:
    """Embedding age: which encoder version produced the stored reference embeddings; what needs re-embedding."""
    from adaptlab.monitor import embedding_age
    from adaptlab.monitor.shipped import REFERENCE_DIR, model_space, reference_for
    from adaptlab.monitor.reference import ReferenceSet

    reg, pipe = _registry_and_model(model)
    space = model_space(pipe)
    folder = Path(model) / REFERENCE_DIR
    if not (folder / "reference.json").is_file() and not update:
        raise ConfigError(f"{model} has no stored reference embeddings yet; run `adaptlab embeddings {model} "
                          "--update` (or `adaptlab drift`) to build them.")
    before = None
    if update:
        ref, before = reference_for(reg, pipe, space)
    else:
        ref = ReferenceSet.load(folder)
    train = reg.training_data()
    age = embedding_age(ref, space.fingerprint, dict(zip(train.ids, train.texts)))
    if json_out:
        typer.echo(json.dumps(age.to_dict(), indent=2))
        return
    if update and before is not None and not before.up_to_date:
        out.print(f"updated: {len(before.needs_reembedding)} row(s) re-embedded")
    out.print(str(age), highlight=False, markup=False, soft_wrap=True)
