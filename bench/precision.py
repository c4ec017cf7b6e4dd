"""Benchmark: the refit and fine-tuning loops per mixed precision, on one GPU (with its utilisation) or the CPU.

For each precision (``no`` = float32, ``bf16``, ``fp16``) it runs, on real BBC News texts:

* an MLM refit of the encoder (``refit_encoder``, the study's own code path): tokens/s and samples/s
  from the refit manifest, the steps the fp16 loss scaler skipped, the loss first -> last;
* a full fine-tune (``finetune`` rung) under a step budget: steps/s (over the rung's training
  seconds, its validation passes at epoch ends included) and the validation F1;

while, on a GPU, a thread samples its utilisation and memory through NVML every 100 ms; the
utilisation reported is that of the samples between the first and the last training step. Then it checks
the fp16 guard: a refit with an absurd learning rate should stop with NonFiniteStepsError (a run of
steps skipped by the loss scaler) or RefitDivergedError, instead of training on NaN weights.

    PYTHONPATH=src python bench/precision.py --encoder PATH --refit-steps 300 --finetune-steps 200 --json out.json
    PYTHONPATH=src python bench/precision.py --device cpu --refit-steps 12 --finetune-steps 12 --precisions no,bf16

On the CPU fp16 is refused (it needs a GPU) and there is no utilisation column.

Ratios are printed against the float32 run of the same loop, measured in the same process.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402


class GpuSampler:
    """Samples GPU utilisation (%) and used memory (MiB) every ``interval`` seconds while active
    (does nothing on the CPU)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.times: list[float] = []
        self.util: list[float] = []
        self.mem: list[float] = []
        self.first_step: float | None = None
        self.last_step: float | None = None
        self.active = torch.cuda.is_available()
        if not self.active:
            return
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        self.interval = interval
        # Training steps' time window (set by the loop's per-step callback): setup, the time estimate,
        # evaluation at the end and saving are left out of the utilisation.
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.times.append(time.perf_counter())
            self.util.append(float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))
            self.mem.append(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20)
            time.sleep(self.interval)

    def __enter__(self) -> "GpuSampler":
        if self.active:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            self._stop.set()
            self._thread.join()

    def step(self, *_args) -> None:
        now = time.perf_counter()
        self.first_step = self.first_step or now
        self.last_step = now

    def summary(self) -> dict:
        if not self.active:
            return {"gpu_util_mean": None, "gpu_util_median": None, "gpu_util_samples": 0, "gpu_mem_peak_mib": None}
        t, u = np.asarray(self.times), np.asarray(self.util)
        if self.first_step is not None and len(t):
            u = u[(t >= self.first_step) & (t <= self.last_step)]
        u = u if len(u) else np.zeros(1)
        return {"gpu_util_mean": round(float(u.mean()), 1), "gpu_util_median": float(np.median(u)),
                "gpu_util_samples": int(len(u)), "gpu_mem_peak_mib": round(max(self.mem or [0.0]))}


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_mib() -> "int | None":
    return round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None


def bbc_split(seed: int = 0):
    from sklearn.model_selection import train_test_split

    from adaptlab.data.bundled import load_bbc_news

    ds = load_bbc_news()
    idx = np.arange(len(ds))
    tr, va = train_test_split(idx, test_size=0.2, random_state=seed, stratify=list(ds.labels))
    return ds, ds.subset(tr.tolist()), ds.subset(va.tolist())


def run_refit(encoder, texts, precision: str, steps: int, home: str, **over) -> dict:
    from adaptlab.rungs.refit import RefitConfig, refit_encoder

    cfg = RefitConfig(budget=f"{steps}steps", mixed_precision=precision, **over)
    _reset_peak()
    with GpuSampler() as gpu:
        t0 = time.perf_counter()
        out = refit_encoder(encoder, texts, cfg, seed=0, home=home, callback=gpu.step)
        _sync()
        wall = time.perf_counter() - t0
    m = out.manifest
    return {"precision": precision, "steps": m["steps"], "tokens_per_second": round(m["tokens_per_second"]),
            "samples_per_second": round(m["samples_per_second"], 1), "train_seconds": round(m["wall_seconds"], 2),
            "call_seconds": round(wall, 2), "skipped_steps": m["runtime"]["skipped_steps"],
            "loss_first": round(m["loss_first"], 3), "loss_last": round(m["loss_last"], 3),
            "torch_peak_mib": _peak_mib(), **gpu.summary()}


def run_finetune(encoder, train, val, classes, precision: str, steps: int, batch_size: int) -> dict:
    from adaptlab.config import Budget
    from adaptlab.rungs import RungContext, get_rung

    rung = get_rung("finetune", {"mixed_precision": precision, "batch_size": batch_size, "max_epochs": 100,
                                 "patience": 100, "max_length": 128, "checkpoint_every": 0})
    ctx = RungContext(classes=classes, encoder=encoder, budget=Budget.parse(f"{steps}steps"))
    _reset_peak()
    with GpuSampler() as gpu:
        t0 = time.perf_counter()
        fitted = rung.fit(train, val, seed=0, context=ctx, callback=gpu.step)
        _sync()
        wall = time.perf_counter() - t0
    d = fitted.diagnostics_
    train_s = d["budget"]["seconds_used"]
    return {"precision": precision, "steps": d["budget"]["steps_used"], "steps_per_second": round(
        d["budget"]["steps_used"] / max(train_s, 1e-9), 2), "samples_per_second": round(
        d["budget"]["samples_seen"] / max(train_s, 1e-9), 1), "train_seconds": round(train_s, 2),
        "call_seconds": round(wall, 2), "val_f1": round(float(fitted.val_scores_["f1"]), 4),
        "skipped_steps": d["runtime"]["skipped_steps"], "torch_peak_mib": _peak_mib(),
        **gpu.summary()}


def guard_check(encoder, texts, precision: str, home: str) -> dict:
    from adaptlab.rungs.refit import RefitDivergedError
    from adaptlab.rungs.runtime import NonFiniteStepsError

    t0 = time.perf_counter()
    try:
        out = run_refit(encoder, texts, precision, 150, home, lr=50.0, max_grad_norm=1e6, warmup_ratio=0.0,
                        max_skipped_steps=10, estimate_steps=1)
        return {"precision": precision, "stopped": False, "result": out}
    except (RefitDivergedError, NonFiniteStepsError) as exc:
        return {"precision": precision, "stopped": True, "error": type(exc).__name__, "message": str(exc)[:300],
                "seconds": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", default=None, help="encoder folder (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--refit-steps", type=int, default=300)
    ap.add_argument("--finetune-steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32, help="texts per optimizer step (refit and fine-tune)")
    ap.add_argument("--precisions", default="no,bf16,fp16")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--device", default="auto", help="auto (the GPU when there is one) | cpu | cuda")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads on the CPU")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from adaptlab.encoders import load_encoder

    encoder = load_encoder(args.encoder, device=args.device)
    if encoder.device == "cpu" and "fp16" in args.precisions.split(","):
        sys.exit("fp16 needs a CUDA GPU; on the CPU pass --precisions no,bf16.")
    ds, train, val = bbc_split()
    texts = list(ds.texts)
    env = {"gpu": torch.cuda.get_device_name() if encoder.device != "cpu" else None,
           "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "python": platform.python_version(), "encoder": encoder.name, "device": str(encoder.device),
           "texts": len(texts), "batch_size": args.batch_size}
    try:
        import accelerate
        import transformers

        env.update(accelerate=accelerate.__version__, transformers=transformers.__version__)
    except ImportError:
        pass
    print(json.dumps(env), flush=True)
    results: dict = {"env": env, "refit": [], "finetune": [], "guards": []}
    precisions = [p for p in args.precisions.split(",") if p]
    with tempfile.TemporaryDirectory() as home:
        # Warm-up (CUDA context, kernels' autotuning), not reported.
        run_refit(encoder, texts[:256], "no", 2 if encoder.device == "cpu" else 5, os.path.join(home, "warm"),
                  estimate_steps=1)
        for p in precisions:
            r = run_refit(encoder, texts, p, args.refit_steps, os.path.join(home, f"refit-{p}"),
                          batch_size=args.batch_size)
            results["refit"].append(r)
            print("refit", json.dumps(r), flush=True)
        for p in precisions:
            r = run_finetune(encoder, train, val, list(ds.classes), p, args.finetune_steps, args.batch_size)
            results["finetune"].append(r)
            print("finetune", json.dumps(r), flush=True)
        for p in [p for p in ("fp16",) if p in precisions]:
            g = guard_check(encoder, texts[:512], p, os.path.join(home, f"guard-{p}"))
            results["guards"].append(g)
            print("guard", json.dumps(g), flush=True)
    base = {k: next((r for r in results[k] if r["precision"] == "no"), None) for k in ("refit", "finetune")}
    print("\nloop      precision   per second        vs float32   GPU util (mean)   skipped")
    # GPU util: share of time a kernel ran, sampled over the training steps only.
    for kind, unit in (("refit", "tokens_per_second"), ("finetune", "steps_per_second")):
        for r in results[kind]:
            ratio = r[unit] / base[kind][unit] if base[kind] else float("nan")
            util = "-" if r["gpu_util_mean"] is None else f"{r['gpu_util_mean']:.1f} %"
            print(f"{kind:<9} {r['precision']:<10} {r[unit]:>12,.1f} {unit.split('_')[0]:<7} {ratio:>6.2f}x"
                  f"   {util:>12}   {r['skipped_steps']:>6}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
