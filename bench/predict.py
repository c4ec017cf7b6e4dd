"""Benchmark: `adaptlab predict` (predict_file on a saved probe model) vs sentence-transformers by hand.

Both sides turn the same CSV of real BBC News texts into a CSV of labels and probabilities, in the
same process, with the same torch threads and the same encoder batch size:

* adaptlab: ``predict_file(load_pipeline(folder), in.csv, out.csv)`` (what ``adaptlab predict`` runs:
  streaming read in batches of ``--predict-batch`` rows, reject checks, atomic write);
* by hand: ``pandas.read_csv`` -> ``SentenceTransformer(encoder folder).encode(texts)`` -> the same
  logistic head's ``predict_proba`` -> ``DataFrame.to_csv``, the whole file at once.

Runs alternate order and the best of ``--repeats`` counts. Model loading is timed apart (once).

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/predict.py --n 2000 --batch-size 32

Target: rows/second ratio adaptlab/by-hand >= 1.0.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="BBC texts to predict (default 2000)")
    parser.add_argument("--n-train", type=int, default=225, help="other BBC texts to fit the probe on (default 225)")
    parser.add_argument("--batch-size", type=int, default=32, help="encoder batch size for both (default 32)")
    parser.add_argument("--predict-batch", type=int, default=1024,
                        help="rows per batch read and predicted by predict_file (default 1024, its default)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads for both (default: torch.get_num_threads())")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side; best counts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/predict draw and the probe")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.ship import Pipeline, load_pipeline
    from adaptlab.ship.predict import predict_file

    bbc = load_bbc_news()
    if args.n + args.n_train > len(bbc):
        raise SystemExit(f"BBC News has {len(bbc)} texts; --n + --n-train must not exceed it.")
    order = np.random.default_rng(args.seed).permutation(len(bbc))
    pred_idx, train_idx = order[: args.n], order[args.n : args.n + args.n_train]

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pipe = Pipeline(rung="probe", rung_params={"batch_size": args.batch_size, "C_grid": [1.0]},
                        seed=args.seed, device="cpu")
        fit_s, _ = timed(lambda: pipe.fit([bbc.texts[i] for i in train_idx], [bbc.labels[i] for i in train_idx]))
        folder = pipe.save(tmp / "model")

        src = tmp / "in.csv"
        pd.DataFrame({"id": [bbc.ids[i] for i in pred_idx], "text": [bbc.texts[i] for i in pred_idx]}).to_csv(
            src, index=False)

        load_s, model = timed(lambda: load_pipeline(folder, device="cpu"))
        head = model.fitted_.head
        enc_path = str(model.fitted_.encoder.path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st_load_s, st = timed(lambda: SentenceTransformer(enc_path, device="cpu"))
        enc = model.fitted_.encoder
        n_tokens = sum(len(t) for t in enc.tokenizer([bbc.texts[i] for i in pred_idx], truncation=True,
                                                      max_length=enc.max_seq_length)["input_ids"])

        versions = {m: importlib.metadata.version(m) for m in ("torch", "transformers", "sentence-transformers")}
        print(f"machine      : {platform.machine()}, {os.cpu_count()} CPUs, device=cpu")
        print("versions     : " + ", ".join(f"{m} {v}" for m, v in versions.items()))
        print(f"settings     : threads={torch.get_num_threads()} encoder batch_size={args.batch_size} "
              f"predict_file batch={args.predict_batch} repeats={args.repeats} "
              f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', '(unset)')}")
        print(f"data         : {args.n} BBC News texts in a CSV ({src.stat().st_size / 1e6:.1f} MB), {n_tokens} tokens "
              f"after truncation to {enc.max_seq_length} ({n_tokens / args.n:.0f}/text)")
        print(f"model        : probe on {enc.name}, fitted on {args.n_train} other BBC texts in {fit_s:.1f} s; "
              f"load_pipeline {load_s:.2f} s, SentenceTransformer() {st_load_s:.2f} s")

        out_a, out_b = tmp / "adaptlab.csv", tmp / "by_hand.csv"

        def run_adaptlab() -> object:
            return predict_file(model, src, out_a, batch_size=args.predict_batch)

        def run_by_hand() -> object:
            df = pd.read_csv(src, dtype=str, keep_default_na=False)
            X = st.encode(df["text"].tolist(), batch_size=args.batch_size, show_progress_bar=False)
            proba = head.predict_proba(X)
            classes = [str(c) for c in head.classes_]
            out = pd.DataFrame({"id": df["id"], "label": np.asarray(classes, dtype=object)[proba.argmax(1)],
                                "confidence": proba.max(1)})
            for j, c in enumerate(classes):
                out[f"proba_{c}"] = proba[:, j]
            out.to_csv(out_b, index=False)
            return out

        # Warm-up: first calls pay for allocator growth and kernel selection.
        warm = [bbc.texts[i] for i in pred_idx[: 2 * args.batch_size]]
        model.predict_proba(warm)
        st.encode(warm, batch_size=args.batch_size, show_progress_bar=False)

        best = {"adaptlab": float("inf"), "by hand": float("inf")}
        runners = [("adaptlab", run_adaptlab), ("by hand", run_by_hand)]
        for rep in range(args.repeats):
            for name, fn in (runners if rep % 2 == 0 else runners[::-1]):
                seconds, _ = timed(fn)
                best[name] = min(best[name], seconds)
                print(f"  run {rep + 1} {name:<9}: {seconds:7.2f} s  {args.n / seconds:7.1f} rows/s")

        a = pd.read_csv(out_a, dtype={"id": str})
        b = pd.read_csv(out_b, dtype={"id": str})
        cols = [c for c in b.columns if c.startswith("proba_")]
        same_ids = a["id"].tolist() == b["id"].tolist()
        agree = float((a["label"] == b["label"]).mean())
        max_diff = float(np.abs(a[cols].to_numpy() - b[cols].to_numpy()).max())

    ta, tb = best["adaptlab"], best["by hand"]
    print()
    print(f"adaptlab predict_file (CSV in, CSV out)          : {args.n / ta:8.1f} rows/s  (best {ta:.2f} s)")
    print(f"by hand: read_csv + ST encode + head + to_csv    : {args.n / tb:8.1f} rows/s  (best {tb:.2f} s)")
    print(f"same ids in the same order: {same_ids}; labels agree on {agree:.2%} of rows; "
          f"max |proba difference| {max_diff:.2e}")
    print(f"ratio adaptlab/by-hand rows/s : {tb / ta:.3f}x  (target >= 1.0)")


if __name__ == "__main__":
    main()
