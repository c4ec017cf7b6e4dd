"""Benchmark: long-text strategies of the frozen probe on BBC News (long articles), paired over seeds and test items.

One study per strategy (``truncate``, ``chunk_mean``, ``head_tail`` by default), each with the ``probe`` rung only,
on the same texts, seeds and sealed split, in one run store: the split depends on the data and the test seed only,
so the three studies score the same test items with the same train/validation draws. The per-seed test
predictions are read back from the run store and compared with the decision's own paired bootstrap
(``adaptlab.decide.compare_rungs``: test items and seeds resampled jointly). Prints the share of texts longer than
the encoder's window (by class), each strategy's mean F1 with its band, the paired difference to ``truncate``
with its 95% band, and the encoding time; ``--out`` writes the same lines to a file.

    PYTHONPATH=src HF_HUB_OFFLINE=1 nice -n 19 .venv/bin/python bench/long_text.py --seeds 3 \\
        --out bench/results/long_text_bbc.txt
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _subset(ds, n):
    import numpy as np

    if not n or n >= len(ds):
        return ds
    rng = np.random.default_rng(0)
    return ds.subset(np.sort(rng.choice(len(ds), size=n, replace=False)))


def _run(ds, strategies, seeds, home, say):
    """One probe study per strategy in one home; returns {strategy: (result, seconds)}."""
    from adaptlab.config import StudyConfig
    from adaptlab.encoders import Encoder
    from adaptlab.evaluate import Study

    enc = Encoder.from_pretrained(device="cpu")
    out = {}
    for s in strategies:
        params = {} if s == "truncate" else {"probe": {"long_text": s}}
        cfg = StudyConfig(rungs=["probe"], seeds=seeds, encode_precision="fp32", rung_params=params,
                          name=f"bench long_text={s}")
        t0 = time.perf_counter()
        res = Study(cfg, home=home, encoder=enc, show_progress=False).run(ds, progress=say)
        out[s] = (res, time.perf_counter() - t0)
    return out


def _paired(results, home):
    """Each strategy's per-seed test predictions as one evidence table, compared pairwise by the decision's code."""
    import numpy as np

    from adaptlab.decide import Evidence
    from adaptlab.decide.decision import compare_rungs
    from adaptlab.store import RunStore

    store = RunStore(Path(home) / "runs.sqlite")
    preds, y_true = {}, None
    for s, (res, _) in results.items():
        ev = Evidence.from_store(store, res.study_id, home=home, analyses=False)
        probe = ev.rungs["probe"]
        if y_true is None:
            y_true = ev.y_true
        assert np.array_equal(ev.y_true, y_true), "the studies scored different test items"
        preds[s] = [probe.predictions[k] for k in sorted(probe.predictions)]
    ev = Evidence.from_tables({s: None for s in preds}, predictions=preds, y_true=list(y_true))
    return ev, compare_rungs(ev)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=0, help="BBC texts (a seeded sample; 0: all 2,225)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--strategies", default="truncate,chunk_mean,head_tail")
    p.add_argument("--home", default=None, help="run store and embedding cache (default: a temporary folder)")
    p.add_argument("--out", default=None, help="also write the lines printed to this file")
    args = p.parse_args()

    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.encoders.longtext import window_report

    lines: list[str] = []

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def line(msg: str = "") -> None:
        lines.append(msg)
        print(msg, flush=True)

    ds = _subset(load_bbc_news(), args.n)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    win = window_report(ds.texts, ds.labels)
    line(f"BBC News: {len(ds):,} articles, probe on all-MiniLM-L6-v2 (fp32, CPU), {args.seeds} seeds, one sealed split; "
         f"load average before {os.getloadavg()[0]:.1f}")
    line(f"longer than the {win['window_tokens']}-token window: {win['share_longer']:.1%} ({win['n_longer']:,}); "
         f"median {win['median_tokens']:.0f} tokens, 90th percentile {win['p90_tokens']:.0f}; chunk_mean reads "
         f"{win['windows_per_text']:.2f} windows per text")
    line("  by class: " + ", ".join(f"{c['label']} {c['share_longer']:.0%}" for c in win["by_class"]))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or tmp
        results = _run(ds, strategies, args.seeds, home, say)
        ev, comparisons = _paired(results, home)
    line()
    line(f"{'strategy':<12} {'macro-F1':>9} {'band (95%)':>17} {'study s':>8}")
    for s, (res, secs) in results.items():
        r = ev.rungs[s]
        line(f"{s:<12} {r.mean:>9.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}] {secs:>8.0f}")
    line()
    line("paired difference (b - a), same test items and seeds (decision's paired bootstrap):")
    for c in comparisons:
        a, b = c.simpler, c.other
        if "truncate" in (a, b) and a != "truncate":  # always read as strategy - truncate
            a, b, sign = b, a, -1.0
        else:
            sign = 1.0
        lo, hi = (c.ci_low, c.ci_high) if sign > 0 else (-c.ci_high, -c.ci_low)
        line(f"  {b} - {a}: {sign * c.diff:+.4f}  95% band [{lo:+.4f}, {hi:+.4f}]  "
             f"{'significant' if c.significant else 'not significant'} ({c.method})")
    line(f"wall time {time.perf_counter() - t0:.0f} s, load average after {os.getloadavg()[0]:.1f}")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
