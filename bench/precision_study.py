"""Benchmark: a study on BBC News with the default precisions (``auto``) against the same study in fp32.

Both run from empty run stores and embedding caches (cold), on the same texts, seeds and split; the
decision (which rung is chosen) and each rung's mean F1 are compared, with wall time. ``auto`` resolves
to bf16 on a CPU with AVX-512-BF16 or AMX and then runs the validation gate, which embeds a stratified
sample of the first seed's train and validation texts (at most 512 each) with both paths: on a first run
that gate is part of the cost. The demo's study is ``--n 2225 --seeds 5``. With a rung that trains the
encoder (``--rungs tfidf,probe,finetune --budget 100steps``) ``auto`` also means ``mixed_precision="auto"``
(its 20-step float32-vs-bf16 gate included) against ``mixed_precision="no"``.

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/precision_study.py --n 600 --seeds 3
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=600, help="BBC texts (stratified sample; default 600)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rungs", default="tfidf,probe")
    p.add_argument("--budget", default=None, help="training budget of the network rungs, e.g. 100steps")
    p.add_argument("--repeats", type=int, default=2, help="alternated runs of each (default 2)")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import numpy as np

    from adaptlab.config import StudyConfig
    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.decide import Evidence, decide
    from adaptlab.store import RunStore
    from adaptlab.encoders import Encoder
    from adaptlab.encoders.fast import resolve_precision
    from adaptlab.evaluate import Study

    full = load_bbc_news()
    rng = np.random.default_rng(0)
    ds = full.subset(np.sort(rng.choice(len(full), size=min(args.n, len(full)), replace=False)))
    enc = Encoder.from_pretrained(device="cpu")
    out = {"n_texts": len(ds), "seeds": args.seeds, "auto_resolves_to": resolve_precision("auto", "cpu")[0],
           "rungs": args.rungs, "budget": args.budget, "load_before": os.getloadavg()}
    for precision in ("fp32", "auto") * args.repeats:  # alternate: the machine is shared
        with tempfile.TemporaryDirectory() as home:
            cfg = StudyConfig(rungs=args.rungs.split(","), seeds=args.seeds, encode_precision=precision,
                              mixed_precision="no" if precision == "fp32" else "auto", budget=args.budget)
            t0 = time.perf_counter()
            res = Study(cfg, home=home, encoder=enc, show_progress=False).run(ds)
            wall = time.perf_counter() - t0
            dec = decide(Evidence.from_store(RunStore(Path(home) / "runs.sqlite"), res.study_id, home=home))
        row = {"wall_s": wall, "encode_s": res.data["encode_seconds"], "chosen": dec.chosen,
               "f1": {r["rung"]: r["mean"] for r in res.rows}, "gate": res.data["encode_precision"],
               "training_precision": res.data.get("training_precision")}
        out.setdefault(precision, []).append(row)
        print(f"{precision:<5} {wall:7.1f} s (encoding {row['encode_s']:.1f} s)  chosen {dec.chosen}  "
              f"F1 {row['f1']}  gate: {row['gate']['message']}")
        for choice in (row["training_precision"] or {}).values():
            print(f"      training: {choice['message']} ({choice['seconds']:.1f} s)")
    for precision in ("fp32", "auto"):
        out[f"{precision}_best_wall_s"] = min(r["wall_s"] for r in out[precision])
        out[f"{precision}_best_encode_s"] = min(r["encode_s"] for r in out[precision])
    out["same_decision"] = len({r["chosen"] for r in out["fp32"] + out["auto"]}) == 1
    out["load_after"] = os.getloadavg()
    print(f"best wall: fp32 {out['fp32_best_wall_s']:.1f} s, auto {out['auto_best_wall_s']:.1f} s "
          f"({out['fp32_best_wall_s'] / out['auto_best_wall_s']:.2f}x); best encoding: fp32 "
          f"{out['fp32_best_encode_s']:.1f} s, auto {out['auto_best_encode_s']:.1f} s "
          f"({out['fp32_best_encode_s'] / out['auto_best_encode_s']:.2f}x); same decision: {out['same_decision']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
