"""Benchmark (issue #20): `load_dataset` through the one streaming reader vs pandas.read_csv, same process.

Both read the same CSV of real BBC News texts (repeated with a row number appended, so no two texts are equal)
with every value kept as a string:

* adaptlab: ``load_dataset(path)``: the records of ``adaptlab.data.reader`` (what ``predict`` streams too),
  collected into columns, then validated (duplicates, labels, classes);
* reference: ``pandas.read_csv(path, dtype=str, keep_default_na=False)``: parsing only, no validation.

Each side runs in a fresh subprocess so peak resident memory (ru_maxrss) is its own; runs alternate, best
time of ``--repeats`` counts.

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/load.py --n 200000

Target: adaptlab's time within 1.5x of pandas' parse alone, and its peak memory no higher.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(side: str, path: str) -> None:
    t0 = time.perf_counter()
    if side == "adaptlab":
        from adaptlab.data import load_dataset

        n = len(load_dataset(path))
    else:
        import pandas as pd

        n = len(pd.read_csv(path, dtype=str, keep_default_na=False))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"side": side, "rows": n, "seconds": seconds, "peak_mb": peak}))


def write_corpus(path: Path, n: int) -> int:
    from adaptlab.data.bundled import load_bbc_news

    bbc = load_bbc_news()
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        for i in range(n):
            k = i % len(bbc)
            w.writerow([f"r{i}", f"{bbc.texts[k]} ({i})", bbc.labels[k]])
    return path.stat().st_size


def run(side: str, path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    out = subprocess.run([sys.executable, __file__, "--child", side, str(path)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="rows in the CSV (default 200,000)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side; the best time counts")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bbc.csv"
        size = write_corpus(path, args.n)
        best: dict[str, dict] = {}
        for r in range(args.repeats):
            for side in (("adaptlab", "pandas") if r % 2 == 0 else ("pandas", "adaptlab")):
                got = run(side, path)
                if side not in best or got["seconds"] < best[side]["seconds"]:
                    best[side] = got
    a, p = best["adaptlab"], best["pandas"]
    result = {
        "rows": args.n, "file_mb": round(size / 2**20, 1), "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores", "load_avg": round(os.getloadavg()[0], 2),
        "adaptlab_seconds": round(a["seconds"], 2), "pandas_seconds": round(p["seconds"], 2),
        "time_ratio": round(a["seconds"] / p["seconds"], 2),
        "adaptlab_peak_mb": round(a["peak_mb"]), "pandas_peak_mb": round(p["peak_mb"]),
        "memory_ratio": round(a["peak_mb"] / p["peak_mb"], 2),
    }
    print(f"{args.n:,} rows ({result['file_mb']} MB CSV): load_dataset {a['seconds']:.2f} s, peak {a['peak_mb']:.0f} MB"
          f" | pandas.read_csv {p['seconds']:.2f} s, peak {p['peak_mb']:.0f} MB")
    print(f"time ratio adaptlab/pandas {result['time_ratio']} (adaptlab also validates); "
          f"memory ratio {result['memory_ratio']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
