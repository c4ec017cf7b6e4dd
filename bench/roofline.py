"""The machine's own limit, for the benchmarks: matmul rate per dtype at a model's shapes, and its FLOPs.

A benchmark that says "1.4x faster than X" does not say how close to the hardware either runs. This
module measures what the machine multiplies per second (``torch.matmul`` at the shapes a BERT-style
encoder's Linear layers have, per dtype, on the benchmark's own threads) and counts the FLOPs the
encoder spends on the batches it is given, so a benchmark can print achieved GFLOP/s and the share of
that limit beside its ratios.

    from roofline import matmul_limits, encoder_flops
    limits = matmul_limits(model.config, tokens=8064, dtypes=("fp32", "bf16"))
    flops = encoder_flops(model.config, [(32, 256), (32, 240), ...])   # (texts, padded length) per batch

The count is the one the model executes: every Linear layer (2 x in x out per token, QKV, output,
intermediate, FFN output, with padding tokens included as the model computes them) plus attention
scores and the weighted sum (2 x 2 x length^2 x hidden per text and layer). Embeddings, LayerNorm,
softmax and GELU are left out (well under 1% of the FLOPs at these shapes) but not of the time.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def linear_shapes(config: Any) -> list[tuple[int, int]]:
    """(in, out) of each Linear layer in one transformer layer: Q, K, V, attention output, FFN in, FFN out."""
    h, i = int(config.hidden_size), int(config.intermediate_size)
    return [(h, h), (h, h), (h, h), (h, h), (h, i), (i, h)]


def flops_per_token_linear(config: Any) -> int:
    """FLOPs of the Linear layers for one token through the whole encoder (2 x weights in Linear layers)."""
    return 2 * sum(a * b for a, b in linear_shapes(config)) * int(config.num_hidden_layers)


def encoder_flops(config: Any, batches: Iterable[tuple[int, int]]) -> float:
    """FLOPs of a forward pass over ``batches`` of ``(texts, padded length)``: Linear layers plus attention."""
    per_tok = flops_per_token_linear(config)
    h, n_layers = int(config.hidden_size), int(config.num_hidden_layers)
    total = 0.0
    for b, length in batches:
        total += b * length * per_tok
        total += n_layers * b * 2 * 2 * length * length * h  # Q K^T and attention x V, all heads together
    return total


def padded_batches(lengths: Sequence[int], batch_size: int) -> list[tuple[int, int]]:
    """``(texts, padded length)`` of each batch as `Encoder.encode` forms them: longest first, dynamic padding."""
    order = sorted(lengths, reverse=True)
    return [(len(order[s:s + batch_size]), order[s]) for s in range(0, len(order), batch_size)]


def matmul_rate(m: int, k: int, n: int, dtype: str, *, seconds: float = 0.6) -> float:
    """GFLOP/s of ``[m x k] @ [k x n]`` in ``dtype`` on this process's torch threads, best of a timed loop."""
    dt = DTYPES[dtype]
    a = torch.randn(m, k).to(dt)
    b = torch.randn(k, n).to(dt)
    with torch.inference_mode():
        torch.matmul(a, b)  # warm-up: kernel choice, allocation
        best = float("inf")
        spent = 0.0
        runs = 0
        while spent < seconds or runs < 3:
            t0 = time.perf_counter()
            torch.matmul(a, b)
            dt_s = time.perf_counter() - t0
            best = min(best, dt_s)
            spent += dt_s
            runs += 1
    return 2.0 * m * k * n / best / 1e9


def matmul_limits(config: Any, *, tokens: int, dtypes: Sequence[str] = ("fp32", "bf16"),
                  seconds: float = 0.6) -> dict[str, dict[str, Any]]:
    """Per dtype: GFLOP/s at each of the model's Linear shapes with ``tokens`` rows, and the best (the limit).

    The best over the model's own shapes is the limit a benchmark compares with: it is what this machine
    reaches on exactly this work when nothing else (attention, memory traffic, Python) is in the way.
    """
    out: dict[str, dict[str, Any]] = {}
    for dtype in dtypes:
        rates = {}
        for k, n in sorted(set(linear_shapes(config))):
            rates[f"{tokens}x{k}@{k}x{n}"] = matmul_rate(tokens, k, n, dtype, seconds=seconds)
        out[dtype] = {"shapes": rates, "limit_gflops": max(rates.values())}
    return out


def cpu_flags() -> list[str]:
    """The bf16 / AMX / AVX-512 flags of this CPU (empty off Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return sorted(f for f in line.split(":", 1)[1].split()
                                  if f.startswith(("amx", "avx512_bf16", "avx512f", "avx512_vnni")))
    except OSError:
        pass
    return []


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _dtype(precision: str) -> str:
    """A training precision ("no", "bf16") -> the matmul dtype its limit is measured in."""
    return "bf16" if precision == "bf16" else "fp32"


def training_limits(config: Any, lengths: Sequence[int], *, batch_size: int,
                    precisions: Sequence[str]) -> tuple[float, dict[str, dict[str, Any]]]:
    """FLOPs per trained text and the matmul limits of the ``precisions`` a training benchmark runs; prints them.

    A training step costs 3x the encoder's forward (forward + backward), counted at each text's real
    length; the limits are measured with ``batch_size x mean length`` rows (one batch's tokens).
    """
    flops_per_sample = 3 * encoder_flops(config, [(1, int(n)) for n in lengths]) / len(lengths)
    mean_len = int(sum(int(n) for n in lengths) / len(lengths))
    limits = matmul_limits(config, tokens=batch_size * mean_len, dtypes=sorted({_dtype(p) for p in precisions}))
    print(f"roofline: {flops_per_sample / 1e9:.2f} GFLOP per text (3x forward); matmul limit "
          + ", ".join(f"{d} {v['limit_gflops']:.0f} GFLOP/s" for d, v in limits.items())
          + f"; cpu {cpu_model()} ({' '.join(cpu_flags())})")
    return flops_per_sample, limits


def training_report(best: dict[tuple[str, str], dict[str, Any]], *, precisions: Sequence[str],
                    flops_per_sample: float, limits: dict[str, dict[str, Any]], mean_tokens: float,
                    ours: str = "adaptlab", reference: str = "trainer") -> dict[str, Any]:
    """Print the best run of each (loop, precision): samples/s, tokens/s, achieved GFLOP/s and the share of the
    limit, then adaptlab's ratio against the reference in the same precision and in fp32; return the figures.

    ``best[(name, precision)]`` holds ``samples_per_s`` (and ``median_samples_per_s`` when the benchmark
    times single steps too: printed as its own column and ratio).
    """
    median = all("median_samples_per_s" in r for r in best.values())
    print(f"{'best run':>16} {'samples/s':>10} {'tokens/s':>10}" + (f" {'median-step samples/s':>22}" if median else "")
          + f" {'GFLOP/s':>8} {'share':>6}")
    runs = {}
    for (name, precision), r in best.items():
        gflops = r["samples_per_s"] * flops_per_sample / 1e9
        share = gflops / limits[_dtype(precision)]["limit_gflops"]
        runs[f"{name} {precision}"] = {**r, "tokens_per_s": r["samples_per_s"] * mean_tokens, "gflops": gflops,
                                       "share_of_limit": share}
        print(f"{name + ' ' + precision:>16} {r['samples_per_s']:10.2f} {r['samples_per_s'] * mean_tokens:10.0f}"
              + (f" {r['median_samples_per_s']:22.2f}" if median else "") + f" {gflops:8.1f} {share:6.0%}")
    ratios = {}
    ref32 = best.get((reference, "no"))
    for precision in precisions:
        a, t = best[(ours, precision)], best[(reference, precision)]
        ratio = a["samples_per_s"] / t["samples_per_s"]
        ratios[f"{ours}/{reference} {precision}"] = ratio
        line = f"ratio {ours}/{reference} ({precision}) = {ratio:.2f} ("
        if median:
            ratios[f"{ours}/{reference} {precision} median step"] = m = (
                a["median_samples_per_s"] / t["median_samples_per_s"])
            line += f"median step: {m:.2f}; "
        line += f"target >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'})"
        if ref32 is not None and precision != "no":
            ratios[f"{ours} {precision}/{reference} no"] = r32 = a["samples_per_s"] / ref32["samples_per_s"]
            line += f"; {ours} {precision} / {reference} fp32 = {r32:.2f}"
        print(line)
    return {"flops_per_sample": flops_per_sample, "limits": limits, "mean_tokens": mean_tokens, "runs": runs,
            "ratios": ratios}
