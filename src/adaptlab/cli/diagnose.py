"""`adaptlab diagnose ...`: embedding diagnostics from the command line (a thin shell over
`adaptlab.diagnostics`), and the refit flags of `adaptlab study run`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from adaptlab.cli import HomeOpt, JsonOpt, _load, app, out, user_errors
from adaptlab.errors import ConfigError

diagnose_app = typer.Typer(no_args_is_help=True, help="Embedding diagnostics: MMD two-sample test, domain shift.")
app.add_typer(diagnose_app, name="diagnose")


def refit_rung_params(rungs: str, budget: Optional[str], objective: Optional[str], transductive: bool,
                      mixed_precision: Optional[str] = None) -> dict[str, dict[str, Any]]:
    """`study run` flags -> ``StudyConfig.rung_params`` (the API takes the same dict).

    The refit flags go to ``rung_params["refit"]``. ``--mixed-precision`` is only checked here (a value this
    machine runs, a rung in ``rungs`` that trains the encoder): it is the study's ``mixed_precision``, which
    every training rung without a setting of its own takes.

    Example:
        >>> refit_rung_params("probe,refit,lora", "300steps", None, False, mixed_precision="bf16")
        {'refit': {'budget': '300steps'}}
    """
    params: dict[str, Any] = {}
    if budget is not None:
        params["budget"] = budget
    if objective is not None:
        params["objective"] = objective
    if transductive:
        params["transductive"] = True
    names = [r.strip() for r in rungs.split(",") if r.strip()] if isinstance(rungs, str) else list(rungs)
    if params and "refit" not in names:
        flags = ", ".join(f"--{k.replace('_', '-') if k != 'budget' else 'refit-budget'}" for k in params)
        raise ConfigError(f"{flags} configure the refit rung, which is not in --rungs {rungs!r}; add it, "
                          "e.g. --rungs tfidf,probe,refit.")
    if params:
        from adaptlab.rungs.refit import RefitConfig

        RefitConfig(**params)  # validate at the edge: the error names the field
    if mixed_precision is not None:
        mixed_precision_rungs(names, mixed_precision)
    return {"refit": params} if params else {}


def mixed_precision_rungs(names: list[str], mixed_precision: str) -> list[str]:
    """The rungs among ``names`` that ``--mixed-precision`` configures.

    Fails, naming ``--mixed-precision``, on an unknown value, on a precision this machine cannot run
    (fp16 without a CUDA GPU), and when no rung in ``names`` trains the encoder (an unknown rung name is
    left to the study's own error).
    """
    from adaptlab.rungs import RUNGS, available_rungs, trains_encoder
    from adaptlab.rungs.runtime import check_mixed_precision

    check_mixed_precision(mixed_precision, "--mixed-precision", device="auto")  # before any work
    trainers = [n for n in available_rungs() if trains_encoder(n)]
    chosen = [n for n in names if n in trainers]
    if not chosen and mixed_precision != "auto" and all(n in RUNGS for n in names):  # auto: the default
        raise ConfigError(
            f"--mixed-precision applies to rungs that train the encoder ({', '.join(trainers)}), and none is in "
            f"--rungs {','.join(names)!r}; add one (e.g. --rungs tfidf,probe,finetune) or drop --mixed-precision."
        )
    return chosen


def _texts(path: Path, text_col: Optional[str], encoding: Optional[str]) -> list[str]:
    ds = _load(path, text_col=text_col, label_col=None, group_col=None, time_col=None, id_col=None,
               encoding=encoding, on_invalid="drop", require_labels=False)
    return ds.texts


def _cache(home: Optional[Path]) -> Any:
    from adaptlab.config import default_home
    from adaptlab.encoders import EmbeddingCache

    return EmbeddingCache((home or default_home()) / "cache" / "embeddings.sqlite")


@diagnose_app.command("mmd")
@user_errors
def mmd(
    a: Path = typer.Argument(..., help="First corpus (CSV / JSONL / Parquet / TXT with a text column)."),
    b: Path = typer.Argument(..., help="Second corpus."),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="Text column (default: text)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder folder (default: packaged all-MiniLM-L6-v2)."),
    n: int = typer.Option(1000, "--n", help="Texts sampled from each corpus."),
    permutations: int = typer.Option(200, "--permutations", help="Permutations of the test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling and the permutations."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="File encoding when not UTF-8."),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Do two corpora differ in the encoder's embedding space? Unbiased MMD² + permutation p-value."""
    from adaptlab.diagnostics import mmd_test, sample_texts
    from adaptlab.encoders import embed, load_encoder

    if n < 2:
        raise ConfigError.invalid("--n", n, "an integer >= 2 (1000 is the default)")
    enc = load_encoder(encoder)
    cache = _cache(home)
    sa = sample_texts(_texts(a, text_col, encoding), n, seed)
    sb = sample_texts(_texts(b, text_col, encoding), n, seed + 1)
    res = mmd_test(embed(enc, sa, cache=cache), embed(enc, sb, cache=cache), n_permutations=permutations, seed=seed)
    verdict = ("the two corpora differ in this embedding space" if res.significant()
               else "no detectable difference (p >= 0.05)")
    payload = {"a": str(a), "b": str(b), "encoder": enc.name, **res.to_dict(), "different": res.significant(),
               "verdict": verdict}
    if json_out:
        typer.echo(json.dumps(payload, indent=2))
        return
    # markup=False: file and encoder names are the user's, never rich markup.
    out.print(f"{a.name} ({res.n_x} texts) vs {b.name} ({res.n_y} texts), {enc.name} embeddings:", highlight=False,
              markup=False)
    out.print(f"{res} -> {verdict}", highlight=False, markup=False)


@diagnose_app.command("shift")
@user_errors
def shift(
    data: Path = typer.Argument(..., help="In-domain corpus (e.g. the unlabeled file)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="General-domain corpus (default: bundled BBC News)."),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="Text column (default: text)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder folder (default: packaged all-MiniLM-L6-v2)."),
    n: int = typer.Option(1000, "--n", help="Texts sampled from each corpus."),
    permutations: int = typer.Option(200, "--permutations"),
    seed: int = typer.Option(0, "--seed"),
    encoding: Optional[str] = typer.Option(None, "--encoding"),
    home: Optional[Path] = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Domain shift of a corpus from general text, and the rule: no shift -> skip the refit."""
    from adaptlab.diagnostics import domain_shift
    from adaptlab.encoders import load_encoder

    enc = load_encoder(encoder)
    ref = _texts(reference, text_col, encoding) if reference is not None else None
    res = domain_shift(enc, _texts(data, text_col, encoding), ref, reference_name=str(reference) if reference else None,
                       n=n, n_permutations=permutations, seed=seed, cache=_cache(home))
    if json_out:
        typer.echo(json.dumps(res.to_dict(), indent=2))
        return
    out.print(res.recommendation, highlight=False, markup=False)
