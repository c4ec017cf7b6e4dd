"""Benchmark: encode and refit time vs number of texts, to show that both cost grows linearly.

Texts are real BBC News articles (2,225); sizes above that repeat the corpus with a per-copy prefix
("copy 3: ...") so every text is distinct (no cache or dedup shortcut) and keeps the same length
profile. Every text is truncated to ``--seq-len`` tokens, so the cost per text is comparable across
sizes. Encode: `Encoder.encode` (no cache), fp32 and, unless ``--no-int8``, the int8 path.
Refit: one epoch of adaptlab's MLM refit loop over n texts (steps = n / batch size).

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/scaling.py --encode-sizes 1000,4000,16000 \\
        --refit-sizes 256,1024,4096 --seq-len 64

Printed per size: wall and process-CPU seconds, texts/s, CPU seconds per 1,000 texts, the ratio of the
CPU time to a linear extrapolation from the smallest size (1.00 = exactly linear), the load average,
and a least-squares fit time = fixed + per_text * n. On a shared machine wall time swings with other
people's jobs; CPU time (best of ``--repeats``) is the steadier measure of cost.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import torch  # noqa: E402


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (on {os.cpu_count()} CPUs)"


def corpus(n: int, base: list[str]) -> list[str]:
    """``n`` distinct texts: the BBC articles, then copies of them with a 'copy k:' prefix."""
    return [(base[i % len(base)] if i < len(base) else f"copy {i // len(base)}: {base[i % len(base)]}")
            for i in range(n)]


def report(label: str, sizes: list[int], wall: list[float], cpu: list[float], loads: list[str]) -> None:
    print(f"\n{label}")
    print(f"  {'texts':>7}  {'wall s':>8}  {'texts/s':>8}  {'CPU s':>8}  {'CPU s/1k':>8}  {'CPU vs linear':>13}  "
          "load (1/5/15 min)")
    for n, w, c, load in zip(sizes, wall, cpu, loads):
        linear = cpu[0] * n / sizes[0]
        print(f"  {n:>7}  {w:8.2f}  {n / w:8.1f}  {c:8.2f}  {c / n * 1000:8.2f}  {c / linear:13.2f}  {load}")
    if len(sizes) > 1:
        for name, ys in (("CPU", cpu), ("wall", wall)):
            # time = fixed + per_text * n by least squares: start-up costs are the intercept; a linear
            # cost shows as a good fit with residuals small next to the times.
            mx, my = sum(sizes) / len(sizes), sum(ys) / len(ys)
            per = sum((n - mx) * (t - my) for n, t in zip(sizes, ys)) / sum((n - mx) ** 2 for n in sizes)
            fixed = my - per * mx
            worst = max(abs(t - (fixed + per * n)) / t for n, t in zip(sizes, ys))
            print(f"  linear fit ({name} time): {fixed:.2f} s fixed + {per * 1000:.2f} s per 1,000 texts; "
                  f"largest residual {worst:.1%}")


def measure(fn, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` wall and process CPU seconds of ``fn()`` (CPU time is what other jobs on a
    shared machine disturb least: waiting for a core is not counted)."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return wall, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encode-sizes", default="1000,4000,16000")
    parser.add_argument("--refit-sizes", default="256,1024,4096")
    parser.add_argument("--seq-len", type=int, default=64, help="tokens per text (truncation) for both")
    parser.add_argument("--batch-size", type=int, default=32, help="encode batch size")
    parser.add_argument("--refit-batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--paths", default="fp32,int8", help="encode paths to time: fp32, int8 or both")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs per size")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.encoders import Encoder

    base = load_bbc_news().texts
    enc = Encoder.from_pretrained(device="cpu")
    enc.max_seq_length = args.seq_len  # the study encoder truncates at 256; shorter keeps 16k texts feasible here
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"seq_len {args.seq_len}; load {_load()}")

    encode_sizes = [int(x) for x in args.encode_sizes.split(",") if x]
    if encode_sizes:
        wanted = {p.strip() for p in args.paths.split(",")} - ({"int8"} if args.no_int8 else set())
        paths = [("fp32", enc)] if "fp32" in wanted else []
        if "int8" in wanted:
            from adaptlab.encoders.fast import Int8Encoder

            paths.append(("int8", Int8Encoder(enc)))
        enc.encode(base[:64], batch_size=args.batch_size)  # warm-up
        for name, e in paths:
            wall, cpu, loads = [], [], []
            for n in encode_sizes:
                texts = corpus(n, base)
                w, c = measure(lambda: e.encode(texts, batch_size=args.batch_size, show_progress=False), args.repeats)
                wall.append(w), cpu.append(c), loads.append(_load())
                print(f"  encode {name} {n}: {w:.1f} s wall, {c:.1f} s CPU", flush=True)
            report(f"encode ({name}, batch {args.batch_size}, {args.seq_len} tokens/text)", encode_sizes, wall, cpu,
                   loads)

    refit_sizes = [int(x) for x in args.refit_sizes.split(",") if x]
    if refit_sizes:
        from adaptlab.rungs.refit import MLMObjective, RefitBudget, RefitConfig, TokenizedCorpus
        from adaptlab.rungs.refit.train import train

        cfg = RefitConfig(batch_size=args.refit_batch_size, max_seq_length=args.seq_len, lr=5e-5, estimate_steps=1,
                          checkpoint_every=10**9, checkpoint_minutes=1e9)
        wall, cpu, loads = [], [], []
        for n in refit_sizes:
            texts = corpus(n, base)
            steps = math.ceil(n / args.refit_batch_size)

            def one_epoch() -> None:
                fresh = Encoder.from_pretrained(device="cpu")
                tokenized = TokenizedCorpus.build(fresh.tokenizer, texts, args.seq_len)
                with torch.random.fork_rng(), tempfile.TemporaryDirectory() as tmp:
                    torch.manual_seed(0)
                    model = MLMObjective(fresh, mlm_probability=0.15)
                    train(model, tokenized, cfg, budget=RefitBudget(steps=steps), seed=0,
                          checkpoint_dir=Path(tmp) / "ckpt")

            w, c = measure(one_epoch, args.repeats)
            wall.append(w), cpu.append(c), loads.append(_load())
            print(f"  refit {n}: {steps} steps, {w:.1f} s wall, {c:.1f} s CPU", flush=True)
        report(f"refit (MLM, one epoch, batch {args.refit_batch_size}, {args.seq_len} tokens/text)",
               refit_sizes, wall, cpu, loads)


if __name__ == "__main__":
    sys.exit(main())
