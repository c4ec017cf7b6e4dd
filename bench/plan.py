"""How good are `adaptlab plan` estimates? Plan the demo study, run it, print estimate / measured.

The plan is calibrated on a few dozen texts; the demo study (BBC News, tfidf + probe, 5 seeds) is then
run in a fresh store with a cold embedding cache, and each rung's measured cost (one-time encoding +
per-seed fits) is set against the estimate. Target: every ratio within 0.5x-2x.

    python bench/plan.py [--seeds 5]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from adaptlab.config import StudyConfig  # noqa: E402
from adaptlab.data.bundled import load_bbc_news  # noqa: E402
from adaptlab.decide.plan import plan_study  # noqa: E402
from adaptlab.encoders import load_encoder  # noqa: E402
from adaptlab.evaluate import Study  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    ds = load_bbc_news()
    enc = load_encoder(None, device="cpu")
    t0 = time.perf_counter()
    plan = plan_study(ds.texts, ds.labels, "2 CPU hours", encoder=enc, rungs=["tfidf", "probe"])
    t_plan = time.perf_counter() - t0
    est = {i.rung: i.one_time_seconds + args.seeds * i.seconds_per_seed for i in plan.items}
    with tempfile.TemporaryDirectory() as home:
        res = Study(StudyConfig(rungs=["tfidf", "probe"], seeds=args.seeds), home=home, encoder=enc).run(ds)
    measured = {
        "tfidf": args.seeds * res.row("tfidf")["fit_seconds_mean"],
        "probe": res.data["encode_seconds"] + args.seeds * res.row("probe")["fit_seconds_mean"],
    }
    print(f"planning took {t_plan:.1f} s (calibration included); study wall time {res.wall_seconds:.1f} s")
    print(f"{'rung':>6} {'estimate s':>11} {'measured s':>11} {'ratio':>7}")
    ok = True
    for rung in ("tfidf", "probe"):
        ratio = est[rung] / measured[rung] if measured[rung] > 0 else float("inf")
        ok &= 0.5 <= ratio <= 2.0
        print(f"{rung:>6} {est[rung]:>11.1f} {measured[rung]:>11.1f} {ratio:>6.2f}x")
    total_est, total_meas = sum(est[r] for r in measured), sum(measured.values())
    print(f" total {total_est:>11.1f} {total_meas:>11.1f} {total_est / total_meas:>6.2f}x")
    print("within 2x:", "yes" if ok else "NO")


if __name__ == "__main__":
    main()
