"""Diagnostics of a finished study: probe gap, refit movement (MMD) and domain shift, in one dict.

The DESIGN flow is data -> encoders -> rungs -> evaluate -> diagnostics -> decide, so the study
(evaluate) never imports this module; :func:`run_study_with_diagnostics` runs the study and then
diagnoses it, and stores the diagnostics in the study's summary in the run store.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

from adaptlab.data.dataset import TextDataset
from adaptlab.diagnostics.probe_gap import count_refits, probe_gap
from adaptlab.diagnostics.rules import MAX_REFIT_HOURS, MMD_ALPHA, MMD_N, MMD_PERMUTATIONS
from adaptlab.diagnostics.shift import DEFAULT_REFERENCE, domain_shift, embedding_movement


def held_out_texts(result: Any, data: TextDataset, test: Optional[TextDataset], home: Path) -> list[str]:
    """The texts of the study's sealed test split (read after the study: the decision inputs are fixed)."""
    from adaptlab.evaluate.study import _concat
    from adaptlab.store import RunStore

    full = _concat(data, test) if test is not None else data
    stored = RunStore(Path(home) / "runs.sqlite").study_results(result.study_id)
    if not stored:
        return []
    by_id = dict(zip(full.ids, full.texts))
    return [by_id[i] for i in stored[0]["predictions"]["test_ids"] if i in by_id]


def diagnose_study(
    result: Any,
    data: TextDataset,
    *,
    test: Optional[TextDataset] = None,
    unlabeled: Optional[TextDataset] = None,
    home: Optional[str | Path] = None,
    encoder: Any = None,
    reference: Optional[TextDataset] = None,
    n: int = MMD_N,
    n_permutations: int = MMD_PERMUTATIONS,
    seed: int = 0,
    alpha: float = MMD_ALPHA,
    progress: Optional[Callable[[str], None]] = None,
) -> dict[str, Any]:
    """Probe-gap verdict, MMD(off-the-shelf vs refit) on up to ``n`` held-out texts, and domain shift.

    Args:
        result: The `StudyResult` (its rows must include ``probe`` and ``refit`` for the gap).
        data: The labeled data the study was run on (to find the held-out texts).
        test: The study's separate test file, if it had one.
        unlabeled: The unlabeled in-domain corpus, if any.
        home: The study's home (run store, refit store, embedding cache).
        encoder: The study's base encoder (loaded from the study config when None).
        reference: General-domain texts for the shift test; default the bundled BBC News.

    Returns a JSON-safe dict: ``probe_gap``, ``refit_movement`` (one entry per distinct refit),
    ``domain_shift``, ``refit_cost`` and ``recommendations`` (plain sentences).

    Example:
        >>> res = study.run(labeled, unlabeled=abstracts)                          # doctest: +SKIP
        >>> diag = diagnose_study(res, labeled, unlabeled=abstracts, home=study.home)  # doctest: +SKIP
        >>> diag["probe_gap"]["sentence"]                                           # doctest: +SKIP
    """
    from adaptlab.config import default_home
    from adaptlab.encoders import EmbeddingCache, load_encoder
    from adaptlab.rungs.refit import load_stored_refit

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    home = Path(home) if home is not None else default_home()
    rungs = [r["rung"] for r in result.rows]
    out: dict[str, Any] = {"settings": {"n": n, "n_permutations": n_permutations, "seed": seed, "alpha": alpha},
                           "recommendations": []}
    recs: list[str] = out["recommendations"]
    if "probe" in rungs and "refit" in rungs:
        verdict = probe_gap(result)
        out["probe_gap"] = verdict.to_dict()
        recs.append(verdict.sentence)
    if encoder is None:
        encoder = load_encoder(result.config.get("encoder"))
    cache = EmbeddingCache(home / "cache" / "embeddings.sqlite")

    refit_diags = [p["diagnostics"] for p in result.per_seed if p["rung"] == "refit" and p.get("diagnostics")]
    if refit_diags:
        first = refit_diags[0]
        hours = first["wall_seconds"] / 3600.0
        out["refit_cost"] = {"wall_seconds": first["wall_seconds"], "steps": first["steps"], "tokens": first["tokens"],
                             "tokens_per_second": first["tokens_per_second"],
                             "samples_per_second": first["samples_per_second"],
                             "estimated_seconds": first.get("estimated_seconds"),
                             "n_refits": count_refits(result), "objective": first["objective"]}
        if hours > MAX_REFIT_HOURS:
            recs.append(f"the refit took {hours:.1f} h (> {MAX_REFIT_HOURS:g} h): tell the review coordinator that a "
                        "quarterly rerun is an engineer-in-the-loop task.")
        held = held_out_texts(result, data, test, home)
        movements = []
        seen: set[str] = set()
        for d in refit_diags:
            if d["refit_key"] in seen:
                continue
            seen.add(d["refit_key"])
            stored = load_stored_refit(Path(d["refit_path"]), device=getattr(encoder, "device", "auto"))
            if stored is None or len(held) < 2:
                continue
            say(f"diagnostics: MMD between off-the-shelf and refit {d['refit_key'][:12]} embeddings "
                f"of {min(n, len(held))} held-out texts ...")
            mv = embedding_movement(encoder, stored[0], held, n=n, n_permutations=n_permutations, seed=seed,
                                    alpha=alpha, cache=cache, refit_key=d["refit_key"])
            movements.append(mv.to_dict())
        out["refit_movement"] = movements
        if movements:
            if any(not m["moved"] for m in movements):
                recs.append(next(m["recommendation"] for m in movements if not m["moved"]))
            else:
                recs.append(movements[0]["recommendation"])

    in_domain = list(unlabeled.texts) if unlabeled is not None and len(unlabeled) else list(data.texts)
    say(f"diagnostics: domain shift of {min(n, len(in_domain))} in-domain texts vs "
        f"{'the given reference' if reference is not None else 'BBC News'} ...")
    shift = domain_shift(encoder, in_domain, reference.texts if reference is not None else None,
                         reference_name=(reference.source or "the given reference") if reference is not None
                         else DEFAULT_REFERENCE, n=n, n_permutations=n_permutations, seed=seed, alpha=alpha,
                         cache=cache)
    out["domain_shift"] = {**shift.to_dict(),
                           "in_domain": "unlabeled texts" if unlabeled is not None and len(unlabeled) else "labeled texts"}
    recs.append(shift.recommendation[0].upper() + shift.recommendation[1:])
    out["seconds"] = time.perf_counter() - t0
    return out


def run_study_with_diagnostics(
    study: Any,
    data: TextDataset,
    *,
    test: Optional[TextDataset] = None,
    unlabeled: Optional[TextDataset] = None,
    progress: Optional[Callable[[str], None]] = None,
    on_event: Optional[Callable[[Any], None]] = None,
    **diagnose_kwargs: Any,
) -> Any:
    """``study.run(...)``, then (when ``refit`` is among the rungs) :func:`diagnose_study`; the
    diagnostics go into ``result.diagnostics`` and the study's stored summary.

    Example:
        >>> from adaptlab.evaluate import Study
        >>> study = Study(StudyConfig(rungs=["probe", "refit"], seeds=3))       # doctest: +SKIP
        >>> res = run_study_with_diagnostics(study, labeled, unlabeled=abstracts)  # doctest: +SKIP
        >>> res.diagnostics["probe_gap"]["ship"]                                # doctest: +SKIP
    """
    result = study.run(data, test=test, unlabeled=unlabeled, progress=progress, on_event=on_event)
    # A finished study read back from the store keeps the diagnostics stored with it.
    if "refit" in study.config.rungs and not getattr(study, "read_back", False):
        result.diagnostics = diagnose_study(result, data, test=test, unlabeled=unlabeled, home=study.home,
                                            encoder=getattr(study, "_encoder", None), progress=progress,
                                            **diagnose_kwargs)
        study.store.set_summary(result.study_id, result.to_dict())
    return result
