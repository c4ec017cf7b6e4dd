"""Human-readable rendering of a study: the rung table, band comparisons and the leakage report."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from adaptlab.evaluate.study import StudyResult


def rung_table(result: StudyResult) -> Table:
    """The rung table: mean ± std over seeds and the 95% band (seeds and test sampling)."""
    binary = result.positive_label is not None
    t = Table(title=f"{result.name}  —  test {result.metric}, {result.n_test} sealed test items", title_justify="left")
    t.add_column("rung")
    t.add_column("seeds", justify="right")
    t.add_column("test mean ± std", justify="right")
    t.add_column("95% CI", justify="right")
    t.add_column("val mean", justify="right")
    if binary:
        t.add_column("AUPRC", justify="right")
    t.add_column("fit s/seed", justify="right")
    t.add_column("encode s (this run)", justify="right")
    for r in result.rows:
        cells = [
            r["rung"], str(r["n_seeds"]), f"{r['mean']:.4f} ± {r['std']:.4f}",
            f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]", f"{r['val_f1_mean']:.4f}",
        ]
        if binary:
            cells.append(f"{r.get('auprc_mean', float('nan')):.4f}")
        enc = f"{result.data.get('encode_seconds', 0.0):.1f}" if r.get("uses_encoder") else "-"
        cells += [f"{r['fit_seconds_mean']:.2f}", enc]
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
    tail = Text("\n".join(comparison_lines(result)))
    for w in getattr(result, "warnings", []) or []:
        tail.append(f"\nwarning: {w}", style="yellow")
    tail.append(
        f"\n{result.n_trained} run(s) trained, {result.n_from_store} read from the run store, "
        f"{result.wall_seconds:.1f}s. Study id {result.study_id[:12]}."
    )
    diag = diagnostics_lines(result)
    if diag:
        return Group(head, rung_table(result), tail, Text("\n".join(diag)))
    return Group(head, rung_table(result), tail)


def diagnostics_lines(result: StudyResult) -> list[str]:
    """The diagnostics section (filled by adaptlab.diagnostics for studies with a `refit` rung)."""
    d = getattr(result, "diagnostics", None) or {}
    if not d:
        return []
    lines = ["", "diagnostics (clinic: linear-probe gap, MMD, domain shift):"]
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
