"""Benchmark: fine-tuning throughput of adaptlab's training loop vs a plain `transformers.Trainer`.

Both fine-tune the same model (packaged all-MiniLM-L6-v2 + mean pooling + L2 normalisation + dropout +
a linear head, every weight trainable) on the same real BBC News texts, with the same batch size,
maximum length, optimizer (AdamW, one learning rate, weight decay 0.01, linear warm-up/decay, gradient
clipping 1.0), unweighted cross-entropy and torch threads, in one process. adaptlab runs through the
`finetune` rung (``NetworkRung.fit`` -> ``Trainer``); runs alternate (adaptlab, Trainer, ...) and the
best run of each counts. Each run does ``--warmup`` untimed steps, then ``--steps`` timed steps; the
timed window stays inside the first epoch, so neither side evaluates or checkpoints in it.

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/finetune.py --steps 24 --batch-size 16 --seq-len 128

The Trainer side uses `DataCollatorWithPadding` (dynamic padding to the longest text of each random
batch); adaptlab adds length bucketing (each batch holds texts of similar length, so it pads less).
Target: ratio adaptlab/Trainer >= 1.0. Tokens/s counts real (non-padding) tokens: samples/s x the
corpus's mean tokens per text.

``--precisions no,bf16`` runs both in each precision (the rung's ``mixed_precision="bf16"``, the Trainer
with ``bf16=True``) and prints the ratios against the Trainer in the same precision and in fp32, beside
the roofline (``bench/roofline.py``): matmul limit per dtype at the model's shapes, and each run's
achieved GFLOP/s counting 3x the encoder's forward FLOPs per text at its real length (the head is
negligible).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
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
from torch import nn  # noqa: E402

LR = 5e-5
WARMUP_RATIO = 0.1
WEIGHT_DECAY = 0.01
DROPOUT = 0.1


def adaptlab_run(encoder, data, args, seed: int) -> dict:
    from adaptlab.config import Budget
    from adaptlab.rungs import RungContext, get_rung

    train, val = data
    steps = args.warmup + args.steps
    rung = get_rung("finetune", {"batch_size": args.batch_size, "max_length": args.seq_len, "head_lr": LR,
                                 "backbone_lr": LR, "layer_decay": 1.0, "weight_decay": WEIGHT_DECAY,
                                 "warmup_ratio": WARMUP_RATIO, "max_grad_norm": 1.0, "class_weighted": False,
                                 "head_dropout": DROPOUT, "patience": 10**6,
                                 "mixed_precision": args.precision})
    context = RungContext(classes=train.classes, encoder=encoder, budget=Budget(steps=steps))  # no home: no checkpoints
    times: list[float] = []
    rung.fit(train, val, seed=seed, context=context, callback=lambda step: times.append(time.perf_counter()))
    return _rates(times, args)


class PlainClassifier(nn.Module):
    """The same network as adaptlab's TextClassifier, written the way a Trainer user would."""

    def __init__(self, backbone: nn.Module, dim: int, n_classes: int, scale: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(DROPOUT)
        self.head = nn.Linear(dim, n_classes)
        self.scale = scale

    def forward(self, input_ids, attention_mask, labels=None):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = nn.functional.normalize(pooled, p=2, dim=1)
        logits = self.head(self.dropout(pooled * self.scale))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def trainer_run(encoder, data, args, seed: int) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    train, _ = data
    tok = encoder.tokenizer
    index = {c: i for i, c in enumerate(train.classes)}
    torch.manual_seed(seed)
    model = PlainClassifier(copy.deepcopy(encoder.model), encoder.dim, len(train.classes),
                            math.sqrt(encoder.dim) if encoder.normalize else 1.0)
    enc = tok(list(train.texts), truncation=True, max_length=args.seq_len, padding=False)["input_ids"]
    rows = [{"input_ids": ids, "labels": index[y]} for ids, y in zip(enc, train.labels)]
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            times.append(time.perf_counter())

    steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, max_steps=steps,
            learning_rate=LR, warmup_steps=int(round(WARMUP_RATIO * steps)), weight_decay=WEIGHT_DECAY,
            max_grad_norm=1.0, lr_scheduler_type="linear", logging_strategy="no", save_strategy="no",
            report_to=[], use_cpu=args.device == "cpu", dataloader_num_workers=0, seed=seed, disable_tqdm=True,
            bf16=args.precision == "bf16",
        )
        trainer = Trainer(model=model, args=targs, train_dataset=rows, callbacks=[Clock()],
                          data_collator=DataCollatorWithPadding(tok))
        trainer.train()
    return _rates(times, args)


def _rates(times: list[float], args) -> dict:
    timed = times[args.warmup - 1:] if args.warmup > 0 else times
    seconds = timed[-1] - timed[0]
    steps = len(timed) - 1
    # The median step is robust to a neighbour's burst on a shared machine; the window rate is not.
    median = float(np.median(np.diff(timed)))
    return {"steps": steps, "seconds": seconds, "samples_per_s": steps * args.batch_size / seconds,
            "median_step_s": median, "median_samples_per_s": args.batch_size / median}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=512, help="BBC texts to train on (the timed steps stay in one epoch)")
    p.add_argument("--steps", type=int, default=24, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per run")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best counts")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--precisions", default="no", help="comma-separated: no (float32), bf16 (default: no)")
    p.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = p.parse_args(argv)
    precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
    if (args.warmup + args.steps) * args.batch_size > args.n:
        sys.exit(f"--n {args.n} is less than (warmup + steps) x batch size; the timed window must fit one epoch.")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.encoders import Encoder

    ds = load_bbc_news()
    idx = np.random.default_rng(0).permutation(len(ds))
    train, val = ds.subset(idx[: args.n]), ds.subset(idx[args.n: args.n + 32])
    encoder = Encoder.from_pretrained(None, device=args.device)
    lengths = np.array([len(x) for x in encoder.tokenizer(list(train.texts), truncation=True,
                                                          max_length=args.seq_len)["input_ids"]])
    import transformers

    print(f"adaptlab fine-tuning bench: {encoder.name} + linear head, {len(train)} BBC texts (mean "
          f"{lengths.mean():.1f} tokens at max {args.seq_len}), batch {args.batch_size}, {args.warmup}+{args.steps} "
          f"steps/run, {args.threads} torch threads, device {args.device}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {platform.machine()} {os.cpu_count()} CPUs "
          f"({platform.processor() or 'cpu'})")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import roofline

    flops_per_sample, limits = roofline.training_limits(encoder.model.config, lengths, batch_size=args.batch_size,
                                                        precisions=precisions)
    best: dict = {}
    for r in range(args.repeats):
        order = (("adaptlab", adaptlab_run), ("trainer", trainer_run))
        for precision in precisions:
            args.precision = precision
            for name, fn in (order if r % 2 == 0 else order[::-1]):
                res = fn(encoder, (train, val), args, seed=r)
                print(f"  run {r + 1} {name:>8} {precision:>4}: {res['samples_per_s']:7.2f} samples/s over the window "
                      f"({res['steps']} steps in {res['seconds']:.1f}s), {res['median_samples_per_s']:7.2f} samples/s "
                      f"at the median step ({res['median_step_s']:.3f}s)", flush=True)
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
