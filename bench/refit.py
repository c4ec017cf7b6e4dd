"""Benchmark: MLM refit throughput of adaptlab's loop vs a plain `transformers.Trainer`.

Both train the same masked-LM (packaged all-MiniLM-L6-v2 + a fresh MLM head tied to its input
embeddings) on the same real BBC News texts, with the same batch size, sequence length, optimizer
settings and torch threads, in one process; runs alternate (adaptlab, Trainer, adaptlab, Trainer) and
the best run of each counts. Each run does ``--warmup`` untimed steps, then ``--steps`` timed steps.

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/refit.py --steps 24 --batch-size 16 --seq-len 128

The Trainer side uses `DataCollatorForLanguageModeling` (dynamic padding to the longest text of each
batch, full-vocabulary logits at every position). adaptlab adds length bucketing (batches of similar
length) and computes logits only at the masked positions. Target: ratio adaptlab/Trainer >= 1.0.
Tokens/s counts real (non-padding) tokens: samples/s x the corpus's mean tokens per text.

``--precisions no,bf16`` runs both loops in each precision (adaptlab ``mixed_precision="bf16"``, the
Trainer with ``bf16=True``) and prints every ratio against the Trainer in the same precision and in fp32.
The roofline (``bench/roofline.py``): the machine's matmul rate per dtype at the model's Linear shapes,
and each run's achieved GFLOP/s, counting 3x the encoder's forward FLOPs per text (forward + backward)
at its real length. The MLM head is left out (adaptlab scores only the masked positions, the Trainer
every position), so the count is the useful work both do.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def adaptlab_run(encoder, texts, args, seed: int) -> dict:
    from adaptlab.rungs.refit import MLMObjective, RefitBudget, RefitConfig, TokenizedCorpus
    from adaptlab.rungs.refit.train import train

    cfg = RefitConfig(batch_size=args.batch_size, max_seq_length=args.seq_len, lr=5e-5, estimate_steps=1,
                      checkpoint_every=10**9, checkpoint_minutes=1e9, mixed_precision=args.precision)
    corpus = TokenizedCorpus.build(encoder.tokenizer, texts, args.seq_len)
    times: list[float] = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MLMObjective(encoder, mlm_probability=0.15)
        with tempfile.TemporaryDirectory() as tmp:
            train(model, corpus, cfg, budget=RefitBudget(steps=args.warmup + args.steps), seed=seed,
                  checkpoint_dir=Path(tmp) / "ckpt", callback=lambda step, loss, m: times.append(time.perf_counter()))
    return _rates(times, args)


def trainer_run(encoder, texts, args, seed: int) -> dict:
    from transformers import (AutoModelForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainerCallback,
                              TrainingArguments)

    tok = encoder.tokenizer
    torch.manual_seed(seed)
    mlm = AutoModelForMaskedLM.from_config(encoder.model.config)
    missing = getattr(mlm, mlm.base_model_prefix).load_state_dict(copy.deepcopy(encoder.model.state_dict()), strict=False)
    assert not missing.missing_keys, missing.missing_keys
    mlm.tie_weights()
    enc = tok(texts, truncation=True, max_length=args.seq_len, padding=False)["input_ids"]
    data = [{"input_ids": ids} for ids in enc]
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, max_steps=args.warmup + args.steps,
            learning_rate=5e-5, warmup_steps=int(0.06 * (args.warmup + args.steps)), weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear",
            logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
            seed=seed, disable_tqdm=True, bf16=args.precision == "bf16",
        )
        trainer = Trainer(model=mlm, args=targs, train_dataset=data, callbacks=[Clock()],
                          data_collator=DataCollatorForLanguageModeling(tok, mlm_probability=0.15))
        trainer.train()
    return _rates(times, args)


def _rates(times: list[float], args) -> dict:
    timed = times[args.warmup - 1:] if args.warmup > 0 else times
    seconds = timed[-1] - timed[0]
    steps = len(timed) - 1
    return {"steps": steps, "seconds": seconds, "samples_per_s": steps * args.batch_size / seconds}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=512, help="BBC texts in the corpus")
    p.add_argument("--steps", type=int, default=24, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per run")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=1, help="alternating runs of each; the best counts")
    p.add_argument("--precisions", default="no", help="comma-separated: no (float32), bf16 (default: no)")
    p.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = p.parse_args(argv)
    precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.encoders import Encoder

    texts = load_bbc_news().texts[: args.n]
    encoder = Encoder.from_pretrained(None, device="cpu")
    lengths = np.array([len(x) for x in encoder.tokenizer(texts, truncation=True, max_length=args.seq_len)["input_ids"]])
    print(f"adaptlab refit bench: {encoder.name}, {len(texts)} BBC texts (mean {lengths.mean():.1f} tokens at "
          f"max {args.seq_len}), batch {args.batch_size}, {args.warmup}+{args.steps} steps/run, "
          f"{args.threads} torch threads, torch {torch.__version__}, {platform.processor() or platform.machine()}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import roofline

    flops_per_sample, limits = roofline.training_limits(encoder.model.config, lengths, batch_size=args.batch_size,
                                                        precisions=precisions)
    best: dict = {}
    for r in range(args.repeats):
        for precision in precisions:
            args.precision = precision
            for name, fn in (("adaptlab", adaptlab_run), ("trainer", trainer_run)):
                res = fn(encoder, texts, args, seed=r)
                print(f"  run {r + 1} {name:>8} {precision:>4}: {res['samples_per_s']:7.2f} samples/s "
                      f"({res['steps']} steps in {res['seconds']:.1f}s)", flush=True)
                key = (name, precision)
                if key not in best or res["samples_per_s"] > best[key]["samples_per_s"]:
                    best[key] = res
    figures = roofline.training_report(best, precisions=precisions, flops_per_sample=flops_per_sample,
                                       limits=limits, mean_tokens=float(lengths.mean()))
    if args.json:
        figures["settings"] = {k: v for k, v in vars(args).items() if k not in ("json", "precision")}
        figures["machine"] = {"cpu": roofline.cpu_model(), "flags": roofline.cpu_flags(), "torch": torch.__version__,
                              "load_average_at_end": os.getloadavg()}  # a shared machine: how busy it was
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2, default=float) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
