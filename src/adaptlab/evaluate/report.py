"""Human-readable rendering of a study: the rung table, band comparisons and the leakage report."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from adaptlab.config import format_duration
from adaptlab.evaluate.adaptive import stop_reason
from adaptlab.metrics import bands_overlap
from adaptlab.rungs.ladder import TRANSFER_BASELINES  # the baselines an adaptation must not fall below
from adaptlab.rungs.overfit import budget_bound
from adaptlab.evaluate.study import StudyResult

NA = "—"  # a cell that does not apply to the rung (tfidf and probe train no network)


def _count(n: float) -> str:
    """22713216 -> '22.7M', 1539 -> '1.5k', 99 -> '99'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{int(n)}"


def _pct(fraction: float) -> str:
    """A fraction as a short percentage: 1.0 -> '100%', 0.0123 -> '1.2%', 4.1e-4 -> '0.041%'."""
    v = 100.0 * fraction
    if v == 0:
        return "0%"
    if v >= 10:
        return f"{v:.0f}%"
    if v >= 1:
        return f"{v:.1f}%"
    return f"{v:.2g}%"


def _short_unit(unit: Optional[str]) -> str:
    if not unit:
        return ""
    if unit.startswith("layer."):
        return "L" + unit.split(".", 1)[1]
    return {"embeddings": "emb"}.get(unit, unit)


def network_signatures(result: StudyResult) -> dict[str, dict[str, Any]]:
    """Per rung that trained a network, what its seeds' stored diagnostics say, averaged over seeds.

    Reads ``per_seed[i]["diagnostics"]`` as the training rungs store them (``trainable_parameters``,
    ``total_parameters``, ``movement``, ``cka_pretrained_vs_tuned``, ``overfitting``, ``budget``) and the
    rows' bands for negative transfer: a rung below ``tfidf`` or ``probe`` with bands that do not
    overlap (a gap larger than the noise). A seed is budget-bound when the budget stopped it while its
    last evaluation was its best (under-trained rather than worse: a longer budget may change the row).
    Rungs without such diagnostics (tfidf, probe, refit) are absent.

    Example:
        >>> sig = network_signatures(result)  # doctest: +SKIP
        >>> sig["finetune"]["moved_overall"], sig["finetune"]["negative_transfer"]  # doctest: +SKIP
        (0.0041, [])
    """
    rows = {r["rung"]: r for r in result.rows}
    out: dict[str, dict[str, Any]] = {}
    for name, row in rows.items():
        diags = [p["diagnostics"] for p in result.per_seed
                 if p.get("rung") == name and isinstance(p.get("diagnostics"), dict)
                 and ("movement" in p["diagnostics"] or "trainable_parameters" in p["diagnostics"])]
        if not diags:
            continue

        def mean_of(values: list[Any]) -> Optional[float]:
            vals = [float(v) for v in values if v is not None]
            return float(np.mean(vals)) if vals else None

        moves = [d.get("movement") or {} for d in diags]
        most = [m.get("most_moved") or {} for m in moves]
        units = [m.get("unit") for m in most if m.get("unit")]
        over = [d.get("overfitting") or {} for d in diags]
        # Budget-bound: the budget ended training while validation F1 was still at its best, so the
        # rung may simply be under-trained; a longer budget could change its row.
        n_budget_bound = sum(1 for d in diags if budget_bound(d))
        # One story per seed: a seed its budget stopped while still at its best is under-trained, so it is
        # never also counted as overfit (budget-bound wins).
        overfit_epochs = [o.get("best_epoch") for d, o in zip(diags, over) if o.get("overfitting") and not budget_bound(d)]
        negative = []
        for base in TRANSFER_BASELINES:
            if base in rows and base != name:
                b = rows[base]
                apart = not bands_overlap((row["ci_low"], row["ci_high"]), (b["ci_low"], b["ci_high"]))
                if row["mean"] < b["mean"] and apart:
                    negative.append({"baseline": base, "mean": row["mean"], "baseline_mean": b["mean"]})
        out[name] = {
            "n_seeds": len(diags),
            "trainable_parameters": mean_of([d.get("trainable_parameters") for d in diags]),
            "total_parameters": mean_of([d.get("total_parameters") for d in diags]),
            "trainable_fraction": mean_of([d.get("trainable_fraction") for d in diags]),
            "moved_overall": mean_of([m.get("overall") for m in moves]),
            "moved_most": mean_of([m.get("ratio") for m in most]),
            "moved_most_unit": max(set(units), key=units.count) if units else None,
            "cka": mean_of([d.get("cka_pretrained_vs_tuned") for d in diags]),
            "steps_used": mean_of([(d.get("budget") or {}).get("steps_used") for d in diags]),
            "n_budget_bound": n_budget_bound,
            "n_overfitting": len(overfit_epochs),
            "overfitting_epochs": overfit_epochs,
            "negative_transfer": negative,
            # Where the seeds trained (stored since mixed precision exists; older results have none).
            "mixed_precision": sorted({(d.get("runtime") or {}).get("mixed_precision") or "no" for d in diags}),
            "skipped_steps": int(sum((d.get("runtime") or {}).get("skipped_steps") or 0 for d in diags)),
        }
    return out


def _epochs(epochs: list[Any]) -> str:
    return ",".join(str(e) for e in sorted(set(epochs), key=lambda e: (e is None, e)))


def _flags(sig: dict[str, Any]) -> str:
    flags = []
    if sig["n_overfitting"]:
        flags.append(f"overfit {sig['n_overfitting']}/{sig['n_seeds']} (ep {_epochs(sig['overfitting_epochs'])})")
    if sig["negative_transfer"]:
        flags.append("neg. transfer vs " + ", ".join(n["baseline"] for n in sig["negative_transfer"]))
    if sig["n_budget_bound"]:
        flags.append(f"budget-bound {sig['n_budget_bound']}/{sig['n_seeds']}")
    mixed = [p for p in sig.get("mixed_precision", []) if p != "no"]
    if mixed:  # not float32: numbers are comparable in kind, not bit for bit, with float32 rows
        flags.append("/".join(mixed))
    return "; ".join(flags) if flags else "none"


def rung_table(result: StudyResult) -> Table:
    """The rung table: mean ± std over seeds, the 95% band (seeds and test sampling) and the cost.

    When a rung trained a network (lora, unfreeze, finetune, lpft), four more columns say what it
    trained and what that did, from the diagnostics stored with each seed's result: trainable
    parameters (and their share of the model), backbone movement (mean relative L2 change from the
    pretrained weights, overall and of the layer that moved most), linear CKA between pretrained and
    tuned embeddings of held-out texts, and flags (overfitting seeds with the epoch validation F1
    peaked; negative transfer below tfidf / probe; budget-bound seeds, still improving when the
    budget ended). Rungs that train no network show "—" there.
    """
    binary = result.positive_label is not None
    sigs = network_signatures(result)
    # Text, not str: the study's name is the user's, and rich would read "[x]" in a str title as markup.
    title = Text(f"{result.name}  —  test {result.metric}, {result.n_test} sealed test items")
    if sigs:
        # Four more columns: lighter borders so the table fits 140 columns (the CLI's width when piped).
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    else:
        t = Table(title=title, title_justify="left")
    num = {"justify": "right", "no_wrap": True}
    t.add_column("rung", no_wrap=True)
    t.add_column("seeds", **num)
    t.add_column("test mean ± std", **num)
    t.add_column("95% CI", **num)
    t.add_column("val mean", **num)
    if binary:
        t.add_column("AUPRC", **num)
    t.add_column("fit s/seed" if not sigs else "fit s", **num)
    t.add_column("encode s (this run)" if not sigs else "encode s", **num)
    if sigs:
        # Numbers never wrap; the flags column takes what width is left.
        t.add_column("trainable", **num)
        t.add_column("moved (max)", **num)
        t.add_column("CKA", **num)
        t.add_column("flags", min_width=12)
        t.caption = ("encode s: encoding every labeled text once in this run, shared by the encoder rungs. "
                     "trainable: parameters trained (share of the model). moved: mean relative L2 change of "
                     "the backbone from its pretrained weights (layer that moved most). CKA: linear CKA of "
                     "pretrained vs tuned embeddings of held-out texts (1 = same geometry). flags: overfit k/n "
                     "(ep E): k of n seeds overfit, validation F1 peaking in epoch E; neg. transfer: below that "
                     "baseline with bands apart; budget-bound k/n: still improving when the budget ended.")
        t.caption_justify = "left"
    for r in result.rows:
        seeds = str(r["n_seeds"]) + (f" @{r['fidelity']:.0%}" if r.get("fidelity", 1.0) < 1 else "")
        cells = [
            r["rung"], seeds, f"{r['mean']:.4f} ± {r['std']:.4f}",
            f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]", f"{r['val_f1_mean']:.4f}",
        ]
        if binary:
            cells.append(f"{r.get('auprc_mean', float('nan')):.4f}")
        enc = f"{result.data.get('encode_seconds', 0.0):.1f}" if r.get("uses_encoder") else NA
        cells += [f"{r['fit_seconds_mean']:.2f}", enc]
        if sigs:
            sig = sigs.get(r["rung"])
            if sig is None:
                cells += [NA, NA, NA, NA]
            else:
                n, frac = sig["trainable_parameters"], sig["trainable_fraction"]
                trainable = NA if n is None else _count(n) + (f" ({_pct(frac)})" if frac is not None else "")
                moved = NA
                if sig["moved_overall"] is not None:
                    moved = _pct(sig["moved_overall"])
                    if sig["moved_most"]:
                        moved += f" ({_pct(sig['moved_most'])} {_short_unit(sig['moved_most_unit'])})"
                cka = NA if sig["cka"] is None else f"{sig['cka']:.3f}"
                cells += [trainable, moved, cka, _flags(sig)]
        t.add_row(*cells)
    return t


def comparison_lines(result: StudyResult) -> list[str]:
    lines = []
    for o in result.overlaps:
        verdict = "bands overlap: not distinguishable at this noise level" if o["overlap"] else "bands do not overlap"
        lines.append(f"{o['b']} vs {o['a']}: {o['diff']:+.4f} ({verdict})")
    for r in result.rows:
        if "leakage_inflation" in r:
            lines.append(
                f"{r['rung']}: near-duplicate leakage inflates test {result.metric} by {r['leakage_inflation']:+.4f} "
                "(all test items vs items without a near-duplicate in train/val)"
            )
    return lines


def precision_lines(result: StudyResult) -> list[str]:
    """What the study computed in, where it was not plain float32: the frozen encoder's path and each
    training rung's ``mixed_precision="auto"`` decision, with the gates' numbers.

    Example:
        >>> precision_lines(result)  # doctest: +SKIP
        ['training precision: finetune: auto: this CPU runs bf16 natively; bf16 accepted: validation F1 ...']
    """
    data = result.data or {}
    lines = []
    enc = data.get("encode_precision") or {}
    if enc.get("requested", "fp32") != "fp32" and enc.get("message"):
        lines.append(f"encoding precision: {enc['message']}")
    for choice in (data.get("training_precision") or {}).values():
        lines.append(f"training precision: {choice.get('message')}")
    return lines


def window_lines(result: StudyResult) -> list[str]:
    """The share of texts longer than the encoder's window (when any is) and how the frozen rungs read them.

    Example:
        >>> window_lines(result)  # doctest: +SKIP
        ['long texts: 84.0% of the labeled texts are longer than the 256-token window (business 80%, ...); probe: truncate']
    """
    data = result.data or {}
    win = data.get("window") or {}
    if not win.get("n_longer"):
        return []
    by = ", ".join(f"{c['label']} {c['share_longer']:.0%}" for c in win.get("by_class") or [])
    how = "; ".join(f"{r}: {s}" for r, s in (data.get("long_text") or {}).items())
    return [f"long texts: {win['share_longer']:.1%} of the labeled texts are longer than the {win['window_tokens']}-token "
            f"window{f' ({by})' if by else ''}; {how or 'no rung reads them past it'} (--long-text chooses; "
            "`adaptlab data check` counts them)"]


def render_study(result: StudyResult) -> Group:
    s = result.split
    head = Text(
        f"data: {result.data['source']} — {result.data['n_labeled']} labeled"
        + (f", {result.data['n_test_file']} in the test file" if result.data.get("n_test_file") else "")
        + (f", {result.data['n_unlabeled']} unlabeled" if result.data.get("n_unlabeled") else "")
        + f"; classes: {', '.join(result.classes)}\n"
        f"split: {s['strategy']} — train {s['n_train']}, validation {s['n_val']} (re-drawn per seed), "
        f"test {s['n_test']} (sealed)\n"
        f"near-duplicates: {s['near_dup_items']} texts in {s['near_dup_clusters']} clusters. {s['leakage_summary']}"
    )
    naive = s.get("naive_split")
    if naive and naive.get("inflation") is not None:
        head.append(
            f"\na naive stratified split would put {naive['n_test_leaked']} of {naive['n_test']} test items next to "
            f"a (near-)duplicate in train; tfidf scores {naive['f1_all']:.4f} on all of them vs {naive['f1_clean']:.4f} "
            f"without the leaked ones (inflation {naive['inflation']:+.4f}); the {s['strategy']} split avoids this."
        )
    enc = result.data.get("encoder")
    if enc:
        head.append(f"\nencoder: {enc.get('name')} ({enc.get('source')}, license {enc.get('license')})")
    for line in precision_lines(result) + window_lines(result):
        head.append(f"\n{line}")
    tail = Text("\n".join(comparison_lines(result)))
    for w in getattr(result, "warnings", []) or []:
        tail.append(f"\nwarning: {w}", style="yellow")
    tail.append(
        f"\n{result.n_trained} run(s) trained, {result.n_from_store} read from the run store, "
        f"{result.wall_seconds:.1f}s. Study id {result.study_id[:12]}."
    )
    parts: list[Any] = [head, rung_table(result), tail]
    diag = diagnostics_lines(result)
    if diag:
        parts.append(Text("\n".join(diag)))
    if getattr(result, "allocation", None):
        parts += [allocation_table(result.allocation), Text("\n".join(allocation_lines(result.allocation)))]
    return Group(*parts)


def _dur(seconds: Optional[float]) -> str:
    return format_duration(seconds, (1, 1, 2), unknown="?")


def allocation_lines(alloc: dict[str, Any]) -> list[str]:
    """A decision-driven study in words: compute used against the budget and the exhaustive grid, what was
    dropped on which evidence, why it stopped, and what would be run next.

    Example:
        >>> allocation_lines({"budget_seconds": 600, "compute_seconds": 90, "exhaustive_seconds": 450, "ratio": 0.2,
        ...                   "cells": [{}] * 8, "drops": [], "stop": {"kind": "settled", "reason": "no affordable run ..."},
        ...                   "next": None, "seeds": [0, 1, 2]})[0]
        'decision-driven study: 8 run(s), compute 90.0 s of the 10.0 min budget; the exhaustive grid (every rung × 3 seeds at the full budget) would take ~7.5 min: ratio 0.20.'
    """
    ex, ratio = alloc.get("exhaustive_seconds"), alloc.get("ratio")
    lines = [f"decision-driven study: {len(alloc.get('cells') or [])} run(s), compute {_dur(alloc.get('compute_seconds'))} "
             f"of the {_dur(alloc.get('budget_seconds'))} budget; the exhaustive grid (every rung × "
             f"{len(alloc.get('seeds') or [])} seeds at the full budget) would take "
             + (f"~{_dur(ex)}: ratio {ratio:.2f}." if ex else "an unknown time (a rung's cost was never measured).")]
    if alloc.get("clock") == "wall":
        lines[0] = lines[0].replace("compute ", "wall clock ", 1) + (
            f" Unspent: {_dur(alloc.get('unspent_seconds'))} (the budget counts everything the study did: "
            "encoding, gates, label check, runs).")
    ratios = [c["measured_over_estimate"] for c in alloc.get("cells") or []
              if c.get("measured_over_estimate") and c.get("phase") != "cheap"]
    if ratios:
        lines.append(f"cost estimates: measured ÷ estimated {min(ratios):.2f}–{max(ratios):.2f} over {len(ratios)} "
                     "trained run(s); each run corrects the next estimates.")
    gain = alloc.get("fidelity_gain") or {}
    if any((c.get("fidelity") or 1) < 1 for c in alloc.get("cells") or []) and gain:
        lines.append(f"screen-to-full-budget gain used to project screened rungs: {gain.get('basis')}.")
    for d in alloc.get("drops") or []:
        label = {"eliminated": "dropped", "cannot-flip": "not pursued", "budget": "not pursued (budget)"}.get(d["kind"], d["kind"])
        lines.append(f"{label} in round {d.get('round')}: {d['rung']} — {d['reason']}")
    stop = alloc.get("stop") or {}
    if stop:
        lines.append(f"stopped ({stop.get('kind')}): {stop_reason(stop)}")
    nxt = alloc.get("next") if stop.get("kind") != "settled" else None  # settled: no run is next
    if nxt:
        at = f" at {nxt['fidelity']:.0%} of its budget" if nxt.get("fidelity", 1) < 1 else ""
        lines.append(f"next run if you give it more time: {nxt['rung']} seed {nxt['seed']}{at} (~{_dur(nxt.get('estimate_seconds'))}; "
                     f"{nxt.get('why')})")
    return lines


def allocation_table(alloc: dict[str, Any]) -> Table:
    """The allocation timeline: one row per run, in the order the study made them."""
    t = Table(title="allocation timeline (what ran, at which share of its training budget, and why)",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    num = {"justify": "right", "no_wrap": True}
    for col, kw in (("round", num), ("phase", {"no_wrap": True}), ("rung", {"no_wrap": True}), ("seed", num),
                    ("budget", num), ("test F1", num), ("est s", num), ("seconds", num), ("meas/est", num),
                    ("why", {"min_width": 30})):
        t.add_column(col, **kw)
    for c in alloc.get("cells") or []:
        f1 = "—" if c.get("f1") is None else f"{c['f1']:.4f}"
        took = c.get("wall_seconds") if c.get("wall_seconds") is not None else c.get("seconds")
        secs = "—" if took is None else f"{took:.1f}" + (" (stored)" if c.get("from_store") else "")
        est = "—" if c.get("estimate_seconds") is None else f"{c['estimate_seconds']:.1f}"
        ratio = "—" if c.get("measured_over_estimate") is None else f"{c['measured_over_estimate']:.2f}"
        t.add_row(str(c.get("round")), c.get("phase", ""), c.get("rung", ""), str(c.get("seed")),
                  f"{c.get('fidelity', 1.0):.0%}", f1, est, secs, ratio, c.get("why", ""))
    return t


def network_lines(result: StudyResult) -> list[str]:
    """One plain line per rung that trained a network: movement, CKA, overfitting, negative transfer."""
    sigs = network_signatures(result)
    if not sigs:
        return []
    lines = ["", "fine-tuning signatures (means over seeds; movement = relative L2 change from the pretrained weights):"]
    for name, sig in sigs.items():
        parts = []
        if sig["trainable_parameters"] is not None:
            frac = f" ({_pct(sig['trainable_fraction'])} of the model)" if sig["trainable_fraction"] is not None else ""
            parts.append(f"trained {_count(sig['trainable_parameters'])} parameters{frac}")
        if sig["moved_overall"] is not None:
            if sig["moved_overall"] == 0:
                parts.append("backbone unchanged (frozen, or the pretrained weights were the best checkpoint)")
            else:
                parts.append(f"backbone moved {_pct(sig['moved_overall'])} overall, most in "
                             f"{sig['moved_most_unit']} ({_pct(sig['moved_most'] or 0.0)})")
        if sig["cka"] is not None:
            parts.append(f"CKA pretrained vs tuned {sig['cka']:.3f}")
        if sig["n_overfitting"]:
            eps = _epochs(sig["overfitting_epochs"]).replace(",", ", ")
            parts.append(f"{sig['n_overfitting']} of {sig['n_seeds']} seed(s) overfit (validation F1 peaked in "
                         f"epoch {eps}, then fell while training kept improving; the peak checkpoint is kept)")
        if sig["n_budget_bound"]:
            parts.append(f"still improving when the budget ran out in {sig['n_budget_bound']} of {sig['n_seeds']} "
                         "seed(s): a longer --budget may change this row")
        mixed = [p for p in sig.get("mixed_precision", []) if p != "no"]
        if mixed:
            parts.append(f"trained in {'/'.join(mixed)} mixed precision")
        if sig.get("skipped_steps"):
            parts.append(f"{sig['skipped_steps']} step(s) skipped by the fp16 loss scaler (overflow), over all seeds")
        lines.append(f"  {name}: " + "; ".join(parts) + ".")
        for neg in sig["negative_transfer"]:
            why = ("adapting the encoder made it worse here, or the budget was too short to tell (see above)"
                   if sig["n_budget_bound"] else "adapting the encoder made it worse here")
            lines.append(f"  {name}: NEGATIVE TRANSFER: {neg['mean']:.4f} vs {neg['baseline']} {neg['baseline_mean']:.4f} "
                         f"with bands apart; {why}. Prefer {neg['baseline']}, or adapt more gently (LoRA, fewer "
                         "unfrozen layers, a lower backbone learning rate).")
    return lines


def diagnostics_lines(result: StudyResult) -> list[str]:
    """The diagnostics section: fine-tuning signatures of network rungs (from their stored diagnostics),
    then what adaptlab.diagnostics found for studies with a `refit` rung."""
    lines = network_lines(result)
    d = getattr(result, "diagnostics", None) or {}
    if not d:
        return lines
    lines += ["", "diagnostics (linear-probe gap, MMD, domain shift):"]
    gap = d.get("probe_gap")
    if gap:
        lines.append(f"  probe gap: refit - probe = {gap['gap_points']:+.1f} F1 points, bands "
                     f"{'overlap' if gap['bands_overlap'] else 'apart'} -> {'SHIP the refit' if gap['ship'] else 'keep probe'}")
    cost = d.get("refit_cost")
    if cost:
        est = cost.get("estimated_seconds")
        lines.append(f"  refit ({cost['objective']}): {cost['steps']} steps, {cost['tokens']:,} tokens in "
                     f"{cost['wall_seconds']:.1f}s ({cost['tokens_per_second']:.0f} tokens/s"
                     + (f", estimated {est:.1f}s before training" if est is not None else "")
                     + f"); {cost.get('n_refits') or 1} refit(s)")
    for m in d.get("refit_movement") or []:
        cos = f", mean paired cosine {m['mean_cosine']:.3f}" if m.get("mean_cosine") is not None else ""
        lines.append(f"  OTS vs refit embeddings ({m['n_texts']} held-out texts): MMD² {m['mmd']['mmd2']:.5f}, "
                     f"p = {m['mmd']['p_value']:.3f}{cos} -> {'moved' if m['moved'] else 'NOT moved'}")
    sh = d.get("domain_shift")
    if sh:
        lines.append(f"  domain shift vs {sh['reference']}: MMD² {sh['mmd']['mmd2']:.5f}, p = {sh['mmd']['p_value']:.3f} "
                     f"-> {'shifted' if sh['shifted'] else 'no detectable shift'}")
    for r in d.get("recommendations") or []:
        lines.append(f"  - {r}")
    return lines
