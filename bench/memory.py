"""Benchmark (issue #18): peak resident memory of refit vs steps, and of encode / `data check` vs corpus size.

Every measurement runs in a fresh Python process (so one measurement's heap never inflates the next) and reports
its peak RSS (``ru_maxrss``) plus, for the refit, the RSS after each step. Corpora are synthetic from real text:
sentences of BBC News (bundled) recombined into distinct texts of 2-6 sentences, so any size can be asked for.

    PYTHONPATH=src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/memory.py \\
        --refit-steps 10,100 --refit-texts 10000 --encode-texts 1000,10000 --check-texts 10000,100000

Defaults are sized for a shared 2-core CPU (minutes); the issue's full grid (refit 1,000 steps; 1M texts for
encode and data check) is ``--refit-steps 10,100,1000 --encode-texts 10000,100000,1000000
--check-texts 10000,100000,1000000`` and takes hours on a CPU. ``--json FILE`` writes every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def rss_mb() -> float:
    """Current resident set size of this process, in MiB (from /proc: no dependency)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct texts of 2-6 BBC News sentences each (deterministic)."""
    import numpy as np

    from adaptlab.data.bundled import load_bbc_news

    sentences = [s.strip() for t in load_bbc_news().texts for s in re.split(r"(?<=[.!?])\s+", t) if len(s) > 20]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(2, 7))
        picks = rng.integers(0, len(sentences), size=k)
        out.append(f"{' '.join(sentences[j] for j in picks)} ({i})")  # the counter keeps every text distinct
    return out


def one_refit(steps: int, n_texts: int, home: str, trace_file: str = "") -> dict[str, Any]:
    """Refit ``steps`` steps; with ``trace_file``, each step's RSS is also appended there as it happens, so a
    long run stopped early (hours on a CPU) still leaves its figures."""
    import torch

    from adaptlab.encoders import Encoder
    from adaptlab.rungs.refit import RefitConfig, refit_encoder

    texts = synthetic_texts(n_texts)
    enc = Encoder.from_pretrained(device="cpu")
    base = rss_mb()
    trace: list[tuple[int, float]] = []
    t0 = time.perf_counter()

    def on_step(step: int, loss: float, model: Any) -> None:
        trace.append((step, round(rss_mb(), 1)))
        if trace_file:
            with open(trace_file, "a") as fh:
                fh.write(f"{step}\t{trace[-1][1]}\t{round(peak_mb(), 1)}\t{time.perf_counter() - t0:.1f}\n")

    refit_encoder(enc, texts, RefitConfig(budget=f"{steps}steps", estimate_steps=1, checkpoint_every=10**9),
                  home=home, callback=on_step)
    return {"what": "refit", "steps": steps, "n_texts": n_texts, "seconds": time.perf_counter() - t0,
            "rss_after_load_mb": round(base, 1), "peak_mb": round(peak_mb(), 1), "trace": trace,
            "torch_threads": torch.get_num_threads()}


class _Sampler:
    """RSS sampled every 20 ms in a thread: the highest value since the last ``window()`` call."""

    def __init__(self) -> None:
        import threading

        self.high, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.high = max(self.high, rss_mb())

    def window(self) -> float:
        high, self.high = max(self.high, rss_mb()), 0.0
        return round(high, 1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def one_finetune(steps: int, home: str, trim: bool = False, trace_file: str = "") -> dict[str, Any]:
    """The finetune rung (every MiniLM weight trained; its defaults: batch 16, AdamW, a checkpoint every 200 steps
    and at each epoch end, an evaluation at each epoch end) on BBC News articles cut to their first 1-6 sentences
    (seeded), so batches have different widths as in real data. Per step: RSS after it and the highest RSS
    sampled during it. ``trim``: after each step, also glibc's ``malloc_trim(0)`` and the RSS after it (what is
    live, without the freed heap glibc keeps; a diagnostic: trimming changes the later steps). It is how the leak was
    found; since then the training loop itself trims after every CPU step (``TrainingRuntime.after_step``), so
    both columns now read the same."""
    import ctypes

    import numpy as np
    import torch

    from adaptlab.config import Budget
    from adaptlab.data import TextDataset, split_dataset
    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.encoders import Encoder
    from adaptlab.rungs import RungContext, get_rung

    bbc = load_bbc_news()
    rng = np.random.default_rng(0)
    cut = [" ".join(re.split(r"(?<=[.!?])\s+", t)[: int(rng.integers(1, 7))]) for t in bbc.texts]
    ds = TextDataset(cut, list(bbc.labels))
    split = split_dataset(ds, strategy="stratified", seed=0, test_seed=0)
    train, val = ds.subset(split.train), ds.subset(split.val)
    enc = Encoder.from_pretrained(device="cpu")
    base = rss_mb()
    trace: list[tuple[int, float, float]] = []
    sampler = _Sampler()
    sampler.window()
    ctx = RungContext(classes=ds.classes, encoder=enc, budget=Budget(steps=steps), home=Path(home))
    libc = ctypes.CDLL("libc.so.6") if trim else None
    t0 = time.perf_counter()

    def on_step(step: int) -> None:
        row = [step, round(rss_mb(), 1), sampler.window()]
        if libc is not None:
            libc.malloc_trim(0)
            row.append(round(rss_mb(), 1))
        trace.append(tuple(row))
        if trace_file:
            with open(trace_file, "a") as fh:
                fh.write("\t".join(map(str, row)) + f"\t{time.perf_counter() - t0:.1f}\n")

    try:
        get_rung("finetune").fit(train, val, seed=0, context=ctx, callback=on_step)
        after = sampler.window()
    finally:
        sampler.stop()
    return {"what": "finetune (malloc_trim after each step)" if trim else "finetune", "steps": steps,
            "n_train": len(train), "seconds": time.perf_counter() - t0,
            "rss_after_load_mb": round(base, 1), "peak_mb": round(peak_mb(), 1), "trace": trace,
            "peak_after_last_step_mb": after, "torch_threads": torch.get_num_threads()}


class StandIn:
    """MiniLM's shape without its compute: a vector per text from a seeded generator (384 dims, float32). Measures
    what encoding holds besides the model (texts, hashes, cache writes, the output) at sizes MiniLM would take
    hours to encode on 2 cores."""

    fingerprint, name, precision, dim = "stand-in-384", "stand-in", "fp32", 384

    def encode(self, texts: list[str], batch_size: int = 32, show_progress: Any = None) -> Any:
        import numpy as np

        return np.random.default_rng(len(texts)).standard_normal((len(texts), self.dim), dtype=np.float32)


def one_encode(n_texts: int, home: str, stand_in: bool = False, precision: str = "fp32",
               trace_file: str = "") -> dict[str, Any]:
    """`adaptlab encoders embed`: vectors into the cache and a .npy file, a chunk at a time (with ``trace_file``,
    texts done, RSS, peak and seconds are appended there after each chunk)."""
    from adaptlab.encoders import EmbeddingCache, Encoder, embed_to_file
    from adaptlab.encoders.fast import make_encoder

    texts = synthetic_texts(n_texts)
    enc = StandIn() if stand_in else make_encoder(Encoder.from_pretrained(device="cpu"), precision)
    base = rss_mb()
    t0 = time.perf_counter()
    with EmbeddingCache(Path(home) / "embeddings.sqlite") as cache:
        def on_chunk(done: int, total: int) -> None:
            if trace_file:
                with open(trace_file, "a") as fh:
                    fh.write(f"{done}\t{rss_mb():.1f}\t{peak_mb():.1f}\t{time.perf_counter() - t0:.1f}\n")

        embed_to_file(enc, texts, Path(home) / "vectors.npy", cache=cache, on_chunk=on_chunk)
    return {"what": "encode (stand-in encoder)" if stand_in else "encode", "n_texts": n_texts,
            "precision": getattr(enc, "precision", "fp32"), "seconds": time.perf_counter() - t0,
            "rss_after_load_mb": round(base, 1), "peak_mb": round(peak_mb(), 1),
            "texts_mb": round(sum(sys.getsizeof(t) for t in texts) / 2**20, 1)}


def write_data(n_texts: int, path: str) -> dict[str, Any]:
    """The labeled CSV `data check` reads (written by its own process, so the check's peak excludes it)."""
    import pandas as pd

    texts = synthetic_texts(n_texts)
    labels = [["business", "sport", "tech"][i % 3] for i in range(n_texts)]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return {"what": "data", "n_texts": n_texts, "mb": round(os.path.getsize(path) / 2**20, 1)}


def one_check(n_texts: int, path: str) -> dict[str, Any]:
    """`adaptlab data check` as a user runs it (label check included, default --max-rows 20,000)."""
    from typer.testing import CliRunner

    from adaptlab.cli import app

    base = rss_mb()
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, ["data", "check", "--data", path, "--json"])
    if r.exit_code != 0:
        raise SystemExit(r.output)
    rep = json.loads(r.stdout)
    return {"what": "data check", "n_texts": n_texts, "seconds": time.perf_counter() - t0,
            "rss_before_mb": round(base, 1), "peak_mb": round(peak_mb(), 1),
            "near_dup_clusters": rep["near_dup_clusters"], "sampled": rep["naive_split"].get("sampled"),
            "label_check_rows": (rep["label_quality"] or {}).get("n")}


def measure(args: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh process; return its JSON."""
    out = subprocess.run([sys.executable, __file__, "--one", *args], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:], "args": args}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--refit-steps", default="10,100")
    p.add_argument("--refit-texts", type=int, default=10000)
    p.add_argument("--finetune-steps", default="", help="e.g. 10,100 (the finetune rung on BBC News)")
    p.add_argument("--finetune-trim", action="store_true", help="diagnostic: malloc_trim(0) after each step")
    p.add_argument("--encode-texts", default="1000,10000")
    p.add_argument("--encode-precision", default="fp32", help="fp32 | bf16 | int8 | auto (the real encoder's path)")
    p.add_argument("--standin-texts", default="", help="encode with a stand-in encoder (no model compute), e.g. "
                                                        "100000,1000000")
    p.add_argument("--check-texts", default="10000,100000")
    p.add_argument("--json", type=Path)
    p.add_argument("--trace-dir", type=Path, help="refit, finetune and encode: append each step's (or "
                                                  "chunk's) RSS to DIR/refit_STEPS.tsv, DIR/finetune_STEPS.tsv or "
                                                  "DIR/encode_TEXTS.tsv as the run goes")
    p.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        what, *rest = a.one
        with tempfile.TemporaryDirectory() as home:
            if what == "refit":
                res = one_refit(int(rest[0]), int(rest[1]), home, *rest[2:3])
            elif what in ("finetune", "finetune-trim"):
                res = one_finetune(int(rest[0]), home, trim=what == "finetune-trim", trace_file=(rest[1:2] or [""])[0])
            elif what == "encode":
                res = one_encode(int(rest[0]), home, precision=(rest[1:2] or ["fp32"])[0], trace_file=(rest[2:3] or [""])[0])
            elif what == "standin":
                res = one_encode(int(rest[0]), home, stand_in=True)
            elif what == "data":
                res = write_data(int(rest[0]), rest[1])
            else:
                res = one_check(int(rest[0]), rest[1])
        print(json.dumps(res))
        return
    results = []
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    print(f"machine: {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load {os.getloadavg()[0]:.1f}")
    for steps in ints(a.refit_steps):
        trace = [str(a.trace_dir / f"refit_{steps}.tsv")] if a.trace_dir else []
        r = measure(["refit", str(steps), str(a.refit_texts), *trace])
        results.append(r)
        if "error" in r:
            print(f"refit {steps} steps: FAILED {r['error'][-300:]}")
            continue
        tr = r["trace"]
        first, last = (tr[0][1], tr[-1][1]) if tr else (None, None)
        print(f"refit {steps:>5} steps on {a.refit_texts:,} texts: peak {r['peak_mb']:,.0f} MiB "
              f"(after loading {r['rss_after_load_mb']:,.0f}; RSS at step 1 {first}, at step {steps} {last}), "
              f"{r['seconds']:.0f} s")
    for steps in ints(a.finetune_steps):
        trace = [str(a.trace_dir / f"finetune_{steps}.tsv")] if a.trace_dir else []
        r = measure(["finetune-trim" if a.finetune_trim else "finetune", str(steps), *trace])
        results.append(r)
        if "error" in r:
            print(f"finetune {steps} steps: FAILED {r['error'][-300:]}")
            continue
        tr = r["trace"]
        print(f"finetune {steps:>5} steps on {r['n_train']:,} texts: peak {r['peak_mb']:,.0f} MiB (after loading "
              f"{r['rss_after_load_mb']:,.0f}; RSS after step 1 {tr[0][1]}, after step {tr[-1][0]} {tr[-1][1]}; "
              f"highest during step 1 {tr[0][2]}, during the last 10 steps {max(t[2] for t in tr[-10:])}; "
              f"after the last step {r['peak_after_last_step_mb']}), {r['seconds']:.0f} s")
    for n in ints(a.encode_texts):
        trace = str(a.trace_dir / f"encode_{n}.tsv") if a.trace_dir else ""
        r = measure(["encode", str(n), a.encode_precision, trace])
        results.append(r)
        print(f"encode {n:>9,} texts: " + (f"peak {r['peak_mb']:,.0f} MiB, {r['seconds']:.0f} s"
                                             if "error" not in r else f"FAILED {r['error'][-300:]}"))
    for n in ints(a.standin_texts):
        r = measure(["standin", str(n)])
        results.append(r)
        print(f"encode {n:>9,} texts, stand-in encoder: " + (
            f"peak {r['peak_mb']:,.0f} MiB (texts {r['texts_mb']:,.0f} MiB), {r['seconds']:.0f} s"
            if "error" not in r else f"FAILED {r['error'][-300:]}"))
    for n in ints(a.check_texts):
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "data.csv")
            made = measure(["data", str(n), path])
            r = measure(["check", str(n), path]) if "error" not in made else made
        results.append(r)
        print(f"data check {n:>9,} texts: " + (f"peak {r['peak_mb']:,.0f} MiB, {r['seconds']:.0f} s"
                                                 if "error" not in r else f"FAILED {r['error'][-300:]}"))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
