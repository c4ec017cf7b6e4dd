"""Benchmark: encode throughput of the `static` rung (model2vec distillation) against the probe's encoder.

The probe encodes with the frozen transformer (`Encoder.encode`); the `static` rung distils that same
encoder once into static token vectors (`adaptlab.rungs.static.static_model`) and encodes a text as the
mean of its tokens' vectors. Both run here, in the same process, on the same real BBC News texts, with the
same torch threads; both read the same number of tokens per text (the encoder's ``max_seq_length``, e.g.
256 for all-MiniLM-L6-v2); the best of ``--repeats`` counts, in rotating order. Prints texts per second
of each, the ratio static / probe, and the one-time distillation; ``--json FILE`` saves the figures.

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/static_encode.py --n 2000
    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/static_encode.py --encoder tests-tiny-folder --n 200

Without ``--encoder`` it uses the packaged all-MiniLM-L6-v2 (the probe's default encoder). Target (issue
#32): static encodes >= 50x the probe's texts per second on CPU (model2vec reports ~100x and more).
Needs ``pip install 'adaptlab[static]'``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(encoder_path: Optional[str], n: int, repeats: int, batch_size: int, pca_dims: int) -> dict:
    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.encoders import Encoder
    from adaptlab.rungs.static import StaticConfig, static_model

    texts = list(load_bbc_news().texts)[:n]
    encoder = Encoder.from_pretrained(encoder_path, device="cpu")
    cfg = StaticConfig(pca_dims=pca_dims, max_length=encoder.max_seq_length)
    t0 = time.perf_counter()
    model, _ = static_model(encoder, cfg, home=None)
    distill_seconds = time.perf_counter() - t0

    def probe() -> object:
        return encoder.encode(texts, batch_size=batch_size)

    def static() -> object:
        return model.encode(texts, max_length=cfg.max_length, use_multiprocessing=False)

    probe(), static()  # warm-up: first-call allocations, tokenizer caches
    seconds = {"probe": [], "static": []}
    for i in range(repeats):  # rotating order: neither path always runs on a cooler machine
        for name, fn in ((("probe", probe), ("static", static)) if i % 2 == 0 else (("static", static), ("probe", probe))):
            seconds[name].append(best_of(fn, 1))
    probe_s, static_s = min(seconds["probe"]), min(seconds["static"])
    return {"encoder": encoder.name, "fingerprint": encoder.fingerprint, "n_texts": len(texts),
            "max_tokens": encoder.max_seq_length, "batch_size": batch_size, "torch_threads": torch.get_num_threads(),
            "static_dim": int(model.embedding.shape[1]), "static_vocabulary": int(model.embedding.shape[0]),
            "distill_seconds": round(distill_seconds, 3), "probe_seconds": round(probe_s, 4),
            "static_seconds": round(static_s, 4), "probe_texts_per_second": round(len(texts) / probe_s, 1),
            "static_texts_per_second": round(len(texts) / static_s, 1), "ratio_static_over_probe": round(probe_s / static_s, 1),
            "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default=None, help="encoder folder (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--n", type=int, default=2000, help="BBC News texts to encode (at most 2,225)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32, help="the probe's encoding batch size")
    ap.add_argument("--pca-dims", type=int, default=256, help="the static rung's pca_dims")
    ap.add_argument("--json", type=Path, default=None, help="save the figures to this file")
    a = ap.parse_args()
    res = run(a.encoder, a.n, a.repeats, a.batch_size, a.pca_dims)
    print(f"{res['encoder']} on {res['n_texts']} BBC texts (<= {res['max_tokens']} tokens each), "
          f"{res['torch_threads']} torch threads")
    print(f"  distillation (once): {res['distill_seconds']:.1f} s -> {res['static_vocabulary']:,} token vectors "
          f"of {res['static_dim']} dims")
    print(f"  probe (transformer): {res['probe_texts_per_second']:>10,.1f} texts/s")
    print(f"  static (model2vec):  {res['static_texts_per_second']:>10,.1f} texts/s")
    print(f"  ratio static / probe: {res['ratio_static_over_probe']:.1f}x")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
