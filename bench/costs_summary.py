"""The cost-estimate matrix of issue #30 from several ``bench/costs.py`` runs: corpus x encoder x rung, the
screen's and the full seed's estimate / measured, which run each number comes from, and the cells not
measured yet.

``bench/costs.py`` runs are long (a BBC x e5 full seed is minutes a rung), so the matrix is measured in
pieces; this joins them. A later file overrides an earlier one for the same cell, so list the runs oldest
first (or a loaded-machine run before its quiet re-run).

A cell passes when its ratio is in [0.67, 1.5], or when estimate and measurement are both within
``--floor`` seconds of each other (default 1 s): TF-IDF's 0.3 s against 0.2 s reads 1.99, and an error of
a tenth of a second cannot change what a study runs next.

    python bench/costs_summary.py bench/results/costs_*_minilm_fit.json bench/results/costs_*_q5.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

QUIET_BAND = (0.67, 1.5)
CORPORA = ("tweets", "imdb80", "bbc")
ENCODERS = ("minilm", "e5")
RUNGS = ("tfidf", "probe", "refit", "setfit", "lora", "unfreeze", "finetune", "lpft")
SCREENED = {"setfit", "lora", "unfreeze", "finetune", "lpft"}


def cell_ok(row: dict[str, Any], floor: float) -> bool:
    """Within the band, or within ``floor`` seconds of what it took."""
    est, meas = float(row["est_cell"]), float(row["measured"])
    return QUIET_BAND[0] <= est / max(meas, 1e-9) <= QUIET_BAND[1] or abs(est - meas) <= floor


def join(paths: list[Path]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """(corpus, encoder, rung, "screen" | "full") -> the latest row, with the tag of its run."""
    cells: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for path in paths:
        record = json.loads(path.read_text())
        for row in record.get("rows", []):
            kind = "full" if float(row["fidelity"]) >= 1.0 else "screen"
            cells[(row["corpus"], row["encoder"], row["rung"], kind)] = {
                **row, "tag": record.get("tag", path.stem), "date": record.get("date", "")[:10],
                "commit": record.get("commit", "")[:7]}
    return cells


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="bench/costs.py JSON results, oldest first")
    ap.add_argument("--floor", type=float, default=1.0, help="seconds of error that pass whatever the ratio")
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (for the docs)")
    args = ap.parse_args(argv)
    cells = join(args.runs)
    if args.markdown:
        print("| corpus | encoder | rung | screen: est/meas, ratio | full seed: est/meas, ratio | run |\n|---|---|---|---|---|---|")
    else:
        print(f"{'corpus':<7} {'encoder':<7} {'rung':<9} {'screen':>15} {'full seed':>17}  run")
    n_ok = n = 0
    missing = []
    for corpus in CORPORA:
        for enc in ENCODERS:
            for rung in RUNGS:
                parts, tags = [], set()
                for kind in ("screen", "full"):
                    if kind == "screen" and rung not in SCREENED:
                        parts.append("-")
                        continue
                    row = cells.get((corpus, enc, rung, kind))
                    if row is None:
                        parts.append("not run")
                        missing.append(f"{corpus} x {enc} {rung} {kind}")
                        continue
                    ok = cell_ok(row, args.floor)
                    n, n_ok = n + 1, n_ok + ok
                    parts.append(f"{row['est_cell']:.0f}/{row['measured']:.0f}s {row['ratio']:.2f}{'' if ok else ' NO'}")
                    tags.add(row["tag"])
                if tags and args.markdown:
                    print(f"| {corpus} | {enc} | {rung} | {parts[0]} | {parts[1]} | {', '.join(sorted(tags))} |")
                elif tags:
                    print(f"{corpus:<7} {enc:<7} {rung:<9} {parts[0]:>15} {parts[1]:>17}  {', '.join(sorted(tags))}")
    print(f"\n{n_ok}/{n} cells within [{QUIET_BAND[0]}, {QUIET_BAND[1]}] or {args.floor:g} s; "
          f"{len(missing)} not run" + (": " + "; ".join(missing) if missing else ""))
    return 0 if n_ok == n and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
