"""Benchmark: the `setfit` rung vs SetFit's own `Trainer` on the same pairs, and F1 side by side on BBC News.

Both sides start from the packaged all-MiniLM-L6-v2 and train its body contrastively
(``CosineSimilarityLoss``) for ``--steps`` optimizer steps of ``--batch-size`` pairs, truncating at
``--seq-len`` tokens, with the same seed, learning rate and texts in the same order, so SetFit samples
the same pairs on both sides. Runs alternate (adaptlab, SetFit, ...) and the best of ``--repeats``
counts.

* throughput: pairs/s of the contrastive phase. ``loop`` is the time inside
  ``Trainer.train_embeddings`` (the same code on both sides); ``phase`` adds what each side does around
  it (adaptlab: writing a sentence-transformers copy of the study encoder and loading it; SetFit:
  loading the model from its folder). Target: ratio adaptlab/SetFit >= 0.95 on ``phase`` (best of each side, and the
  median of the paired runs, steadier on a shared machine).
* F1 (macro) on held-out BBC texts with ``--per-class`` labels per class: SetFit's default flow
  (body + ``LogisticRegression()`` head on all labels) vs adaptlab's ``Pipeline(rung="setfit")``, which
  holds out 20% of the labels to choose the head's C (class-weighted), as ``probe`` does, and vs the
  frozen ``probe`` for reference.

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/setfit.py --steps 20 --batch-size 8 --seq-len 64

Writes a JSON summary with ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings

# This file is named like the library it measures: drop its folder from the path so `import setfit` finds SetFit.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

LR = 2e-5


def load_data(per_class: int, n_test: int, seed: int):
    from adaptlab.data.bundled import load_bbc_news

    ds = load_bbc_news()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds))
    labels = np.asarray(ds.labels, dtype=object)
    train_idx, taken = [], {c: 0 for c in ds.classes}
    for i in order:
        if taken[labels[i]] < per_class:
            train_idx.append(int(i))
            taken[labels[i]] += 1
    rest = [int(i) for i in order if int(i) not in set(train_idx)]
    return ds.subset(sorted(train_idx)), ds.subset(rest[:n_test])


def adaptlab_phase(encoder, train, args) -> dict:
    """The rung's contrastive phase (``SetFitRung._train_body``), timed from outside."""
    from adaptlab.config import Budget
    from adaptlab.rungs import RungContext, get_rung
    from adaptlab.rungs.setfit import _own_rng, _quiet

    # eval_points=0: no checkpoint evaluations inside the loop, as SetFit's Trainer evaluates nothing there.
    rung = get_rung("setfit", {"batch_size": args.batch_size, "max_length": args.seq_len, "body_lr": LR,
                               "eval_points": 0})
    ctx = RungContext(classes=train.classes, encoder=encoder, budget=Budget(steps=args.steps))
    t0 = time.perf_counter()
    with _quiet(False), _own_rng("cpu"):
        _, info = rung._train_body(train, train, seed=args.seed, context=ctx, budget=ctx.budget,
                                   max_length=args.seq_len)
    return {"phase_s": time.perf_counter() - t0, "loop_s": info["seconds"], "pairs": info["pairs_seen"],
            "steps": info["steps"]}


def setfit_phase(folder: str, train, args) -> dict:
    """SetFit's own Trainer on the same texts, order, seed and settings."""
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    order = np.random.default_rng([args.seed, 0x5E7F]).permutation(len(train))  # as the rung shuffles
    texts = [train.texts[i] for i in order]
    index = {c: i for i, c in enumerate(train.classes)}
    labels = [index[train.labels[i]] for i in order]
    t0 = time.perf_counter()
    body = SentenceTransformer(folder, device="cpu", local_files_only=True)
    body.max_seq_length = args.seq_len
    model = SetFitModel(model_body=body)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(output_dir=out, batch_size=args.batch_size, max_steps=args.steps,
                                  body_learning_rate=LR, seed=args.seed, report_to="none", save_strategy="no",
                                  show_progress_bar=False)
        trainer = Trainer(model=model, args=targs)
        trainer.st_trainer.args.disable_tqdm = True
        for cb in (PrinterCallback, ProgressCallback):
            trainer.st_trainer.remove_callback(cb)
        t1 = time.perf_counter()
        trainer.train_embeddings(texts, labels, args=targs)
        t2 = time.perf_counter()
    return {"phase_s": t2 - t0, "loop_s": t2 - t1, "pairs": args.steps * args.batch_size, "steps": args.steps,
            "model": model, "texts": texts, "labels": labels}


def f1(y_true, y_pred) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(list(y_true), list(y_pred), average="macro"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--per-class", type=int, default=64)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--skip-f1", action="store_true", help="throughput only")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    from adaptlab.encoders import Encoder
    from adaptlab.ship import Pipeline

    encoder = Encoder.from_pretrained(None, device="cpu")
    folder = str(encoder.path)
    train, test = load_data(args.per_class, args.test, args.seed)
    print(f"BBC News: {len(train)} labels ({args.per_class}/class), {len(test)} test texts; {args.steps} steps x "
          f"{args.batch_size} pairs, {args.seq_len} tokens, {args.threads} torch thread(s)", flush=True)

    ours, theirs, sf_last = [], [], None
    for r in range(args.repeats):
        ours.append(adaptlab_phase(encoder, train, args))
        sf_last = setfit_phase(folder, train, args)
        theirs.append({k: v for k, v in sf_last.items() if k not in ("model", "texts", "labels")})
        print(f"  run {r}: adaptlab phase {ours[-1]['phase_s']:.1f}s (loop {ours[-1]['loop_s']:.1f}s), "
              f"SetFit phase {theirs[-1]['phase_s']:.1f}s (loop {theirs[-1]['loop_s']:.1f}s)", flush=True)
    best_o = min(ours, key=lambda d: d["phase_s"])
    best_t = min(theirs, key=lambda d: d["phase_s"])
    loop_o, loop_t = min(d["loop_s"] for d in ours), min(d["loop_s"] for d in theirs)
    rate = {"adaptlab_pairs_per_s": best_o["pairs"] / best_o["phase_s"],
            "setfit_pairs_per_s": best_t["pairs"] / best_t["phase_s"],
            "adaptlab_loop_pairs_per_s": best_o["pairs"] / loop_o, "setfit_loop_pairs_per_s": best_t["pairs"] / loop_t}
    rate["ratio_phase"] = rate["adaptlab_pairs_per_s"] / rate["setfit_pairs_per_s"]
    rate["ratio_loop"] = rate["adaptlab_loop_pairs_per_s"] / rate["setfit_loop_pairs_per_s"]
    # Runs alternate, so each adaptlab run has a SetFit run beside it under the same load: the median of these
    # paired ratios is steadier on a shared machine than the ratio of two separate bests.
    rate["ratio_phase_paired_median"] = float(np.median([t["phase_s"] / o["phase_s"] for o, t in zip(ours, theirs)]))
    rate["ratio_loop_paired_median"] = float(np.median([t["loop_s"] / o["loop_s"] for o, t in zip(ours, theirs)]))

    summary = {"bench": "setfit", "platform": platform.platform(), "python": sys.version.split()[0],
               "torch": torch.__version__, "threads": args.threads, "args": vars(args),
               "throughput": {k: round(v, 3) for k, v in rate.items()}, "runs": {"adaptlab": ours, "setfit": theirs}}
    if args.skip_f1:
        print(json.dumps(summary["throughput"], indent=2))
        if args.out:
            with open(args.out, "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=2)
        return 0
    # F1: SetFit's default head on its tuned body (all labels) ...
    from sklearn.linear_model import LogisticRegression

    sf_model = sf_last["model"]
    X = sf_model.model_body.encode(sf_last["texts"], convert_to_numpy=True)
    head = LogisticRegression().fit(X, sf_last["labels"])
    pred = np.asarray(train.classes, dtype=object)[head.predict(sf_model.model_body.encode(test.texts,
                                                                                          convert_to_numpy=True))]
    scores = {"setfit_library": f1(test.labels, pred)}
    # ... adaptlab's shipped pipeline (80/20 split for the head's C) and the frozen probe.
    t0 = time.perf_counter()
    pipe = Pipeline(rung="setfit", encoder=encoder, seed=args.seed, budget=f"{args.steps}steps",
                    rung_params={"batch_size": args.batch_size, "max_length": args.seq_len, "body_lr": LR}
                    ).fit(train.texts, train.labels)
    scores["adaptlab_setfit"] = f1(test.labels, pipe.predict(test.texts))
    seconds_pipe = time.perf_counter() - t0
    probe = Pipeline(rung="probe", encoder=encoder, seed=args.seed).fit(train.texts, train.labels)
    scores["adaptlab_probe"] = f1(test.labels, probe.predict(test.texts))

    summary.update({"f1_macro": {k: round(v, 4) for k, v in scores.items()},
                    "adaptlab_pipeline_fit_s": round(seconds_pipe, 1), "selected_C": pipe.fitted_.selected_.get("C")})
    print(json.dumps({k: summary[k] for k in ("throughput", "f1_macro", "selected_C")}, indent=2))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
