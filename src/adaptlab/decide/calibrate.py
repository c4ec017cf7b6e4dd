"""Calibration: what the units of a study's work cost on this machine, measured the way the study runs them.

A study's cost is made of a few units: one frozen forward pass per text (the embedding pass), one
optimizer step of a network rung (forward + backward + AdamW on a batch), an evaluation pass, a TF-IDF
fit and a logistic head. :func:`calibrate` times each on a sample of the user's own texts:

* training steps run on batches built like the training loop builds them (the rung's tokenizer and
  ``max_length``, length-bucketed batches of ``batch_size`` texts, dynamic padding, the study's
  precision), after two warm-up steps, on a copy of the encoder (the weights are never touched);
* a step is split into a part that grows with the padded tokens of the batch (forward + backward) and
  the optimizer's part (a function of the parameters only), so a batch of 30-token tweets and one of
  256-token articles are each costed from the same measurement;
* the *length profile* of the data (mean padded tokens of a training batch, of a SetFit pair batch, of
  an MLM batch, of an evaluation batch) is computed from the tokenized texts, so the estimate follows
  the data's real lengths instead of a few sampled batches;
* the machine's load is checked: the process's CPU time against its wall time over the timed steps
  (another job on the cores stretches the wall clock, not the CPU time) and the spread between
  repeats. A loaded calibration says so (:attr:`Calibration.loaded`) and keeps the fastest repeat.

Example:
    >>> Calibration("cpu", 0.01, 0.5, 16, 1e-4, 1e-4, 1.0).step_seconds("finetune")
    0.5
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.rungs.ladder import RELATIVE_STEP_COST
from adaptlab.rungs.ladder import facts as rung_facts
from adaptlab.store.costs import machine_id

# Below this share of the available CPU time the timed steps ran on a shared machine.
LOADED_CPU_SHARE = 0.6
# Repeats more than this far apart (slowest / fastest against the fitted cost of their batch shape) mean
# interference.
LOADED_SPREAD = 1.6
# The share of a full fine-tune's optimizer work (parameters updated) each network rung pays is its
# record's ``optimizer_share`` in the rung catalogue; a rung whose cost shape is ``pairs`` steps on pairs.
# SetFit trains through sentence-transformers' Trainer, in float32 whatever the study's precision, on
# unbucketed pairs: measured against this loop's step on the same pairs (bench/costs.py, tweets, MiniLM,
# 2-core AMD EPYC, 2026-12-07) its step costs 1.5x a float32 step of ours, and a float32 step ~1.6x a bf16 one.
SETFIT_STEP_FACTOR = 1.5
FLOAT32_OVER_BF16 = 1.6


@dataclass
class Calibration:
    """Measured unit costs on this machine (seconds).

    ``train_step`` is one optimizer step on ``batch_size`` texts of this data (kept for callers that
    read one number). The token-level units (``train_token_seconds``, ``optimizer_seconds``,
    ``forward_token_seconds``) and the data's ``lengths`` (mean padded tokens per batch of each kind)
    let every rung be costed from its own batch shape; they are None for a calibration made by hand.
    """

    device: str
    encode_per_text: float
    train_step: float  # one forward + backward (+ optimizer) of the encoder on `batch_size` texts
    batch_size: int
    tfidf_per_train_text: float
    head_per_train_text: float
    seconds: float  # how long the calibration itself took
    precision: str = "fp32"  # the frozen encoder's numeric path the encode cost was measured on
    mixed_precision: str = "no"  # the training step's autocast
    train_token_seconds: Optional[float] = None  # forward + backward per padded token of a training batch
    optimizer_seconds: Optional[float] = None  # one AdamW step over every encoder parameter
    forward_token_seconds: Optional[float] = None  # an evaluation forward pass per padded token
    lengths: dict[str, float] = field(default_factory=dict)  # mean padded tokens: train, pairs, mlm, eval_text
    build_seconds: float = 0.0  # a network rung's model built from the encoder (a copy and a head)
    checkpoint_seconds: float = 0.0  # one resumable checkpoint written (weights and the optimizer's state)
    max_length: Optional[int] = None
    loaded: bool = False
    load_note: str = ""
    cpu_share: Optional[float] = None  # process CPU time / (wall time x threads) over the timed steps
    spread: Optional[float] = None  # slowest / fastest timed step, per token
    machine: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def token_level(self) -> bool:
        return self.train_token_seconds is not None and bool(self.lengths)

    def step_seconds(self, rung: str, batch_size: Optional[int] = None) -> float:
        """One optimizer step of ``rung`` on this data: its batch's padded tokens times the measured
        seconds per token, plus its share of the optimizer; without token-level units, the measured step
        scaled by the rung's relative cost."""
        bs = batch_size or self.batch_size
        if not self.token_level:
            return self.train_step * bs / self.batch_size * RELATIVE_STEP_COST.get(rung, 1.0)
        facts = rung_facts(rung)
        pairs = facts.cost_shape == "pairs"
        per_text = self.lengths["pairs" if pairs else "train"] / self.batch_size
        tokens = per_text * bs * (2 if pairs else 1)  # SetFit steps on pairs: two texts each
        step = (1.0 if pairs else RELATIVE_STEP_COST.get(rung, 1.0)) * tokens * self.train_token_seconds
        step += facts.optimizer_share * self.optimizer_seconds
        if pairs:
            step *= SETFIT_STEP_FACTOR * (FLOAT32_OVER_BF16 if self.mixed_precision == "bf16" else 1.0)
        return step

    def mlm_step_seconds(self, batch_size: int) -> float:
        """One MLM step of the refit on ``batch_size`` texts (its own, shorter max length)."""
        if not self.token_level or "mlm" not in self.lengths:
            return self.train_step * batch_size / self.batch_size
        tokens = self.lengths["mlm"] * batch_size
        # The MLM head adds the vocabulary projection of the masked tokens and its parameters to AdamW.
        return 1.1 * tokens * self.train_token_seconds + 1.5 * self.optimizer_seconds

    def eval_seconds(self, n_texts: float) -> float:
        """An evaluation pass (length-sorted batches, no gradients) over ``n_texts`` of this data."""
        if self.forward_token_seconds is None or "eval_text" not in self.lengths:
            return n_texts * self.encode_per_text
        return n_texts * self.lengths["eval_text"] * self.forward_token_seconds


def length_profile(lengths: np.ndarray, *, batch_size: int, seed: int = 0) -> dict[str, float]:
    """Mean padded tokens per batch of each kind, from the token lengths of the data's texts.

    ``train``: the training loop's length-bucketed batches of ``batch_size``; ``pairs``: randomly drawn
    batches of ``batch_size`` (SetFit pads each side of its pairs to its longest text); ``mlm``: random
    batches of 32 texts cut at 128 tokens (the refit's defaults); ``eval_text``: padded tokens per text
    of length-sorted evaluation batches of 64.

    Example:
        >>> p = length_profile(np.array([10, 10, 200, 200] * 8), batch_size=4)
        >>> bool(p["train"] < p["pairs"])  # bucketing pads less than random batches
        True
    """
    from adaptlab.rungs.training import epoch_batches

    lengths = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng(seed)
    batches = epoch_batches(lengths, batch_size, seed=seed, stage=0, epoch=0)
    train = float(np.mean([lengths[b].max() * len(b) for b in batches])) * batch_size / np.mean([len(b) for b in batches])

    def random_batches(cap: int, bs: int) -> float:
        capped = np.minimum(lengths, cap)
        order = rng.permutation(len(capped))
        sizes = [capped[order[i:i + bs]].max() for i in range(0, len(order), bs)]
        return float(np.mean(sizes))

    srt = np.sort(lengths)
    eval_pad = [srt[i:i + 64].max() * len(srt[i:i + 64]) for i in range(0, len(srt), 64)]
    return {"train": train, "pairs": random_batches(int(lengths.max()), batch_size) * batch_size,
            "mlm": random_batches(128, 32), "eval_text": float(np.sum(eval_pad)) / len(srt)}


def calibrate(encoder: Any, texts: Sequence[str], labels: Optional[Sequence[str]] = None, *, n: int = 96,
              batch_size: int = 16, seed: int = 0, precision: str = "fp32", mixed_precision: str = "no",
              max_length: Optional[int] = None, min_seconds: float = 4.0, max_steps: int = 12,
              profile_texts: int = 4000) -> Calibration:
    """Time the unit costs on the user's own texts (about 10-20 s on a CPU for MiniLM).

    ``precision`` is the frozen encoder's path the study will use (``StudyConfig.encode_precision``)
    and ``mixed_precision`` the training rungs' (``"bf16"`` times the steps under autocast), so the
    plan costs what the study runs. ``max_length`` is the training rungs' (default: the encoder's).
    """
    from adaptlab.encoders.fast import make_encoder, precision_of

    t_all = time.perf_counter()
    rng = np.random.default_rng(seed)
    device = "gpu" if str(getattr(encoder, "device", "cpu")).startswith("cuda") else "cpu"
    ml = int(min(max_length or encoder.max_seq_length, encoder.max_seq_length))

    prof_idx = rng.choice(len(texts), size=min(profile_texts, len(texts)), replace=False)
    from adaptlab.rungs.training import encode_texts

    ids = encode_texts(encoder.tokenizer, [texts[i] for i in prof_idx], ml)
    lengths = np.array([len(t) for t in ids], dtype=np.int64)
    profile = length_profile(lengths, batch_size=batch_size, seed=seed)

    frozen = make_encoder(encoder, precision)
    sample = [texts[i] for i in prof_idx[:min(n, len(prof_idx))]]
    frozen.encode(sample[:8], batch_size=32)  # warm-up: the first call pays one-time kernel set-up
    t0 = time.perf_counter()
    emb = frozen.encode(sample, batch_size=32)
    encode_per_text = (time.perf_counter() - t0) / len(sample)

    steps = _time_training_steps(encoder, ids, lengths, batch_size=batch_size, seed=seed, device=device,
                                 mixed_precision=mixed_precision, min_seconds=min_seconds, max_steps=max_steps)
    ys = [labels[i] for i in prof_idx[:len(sample)]] if labels is not None else None
    tfidf_per, head_per = _time_heads(texts, labels, np.asarray(emb), ys, rng=rng, seed=seed)
    train_step = steps["token"] * profile["train"] + steps["optimizer"]
    return Calibration(
        device=device, encode_per_text=encode_per_text, train_step=train_step, batch_size=batch_size,
        tfidf_per_train_text=tfidf_per, head_per_train_text=head_per, seconds=time.perf_counter() - t_all,
        precision=precision_of(frozen), mixed_precision=mixed_precision, train_token_seconds=steps["token"],
        optimizer_seconds=steps["optimizer"], forward_token_seconds=steps["forward"], lengths=profile,
        max_length=ml, loaded=steps["loaded"], load_note=steps["note"], cpu_share=steps["cpu_share"],
        spread=steps["spread"], machine=machine_id(), build_seconds=steps["build"],
        checkpoint_seconds=steps["checkpoint"])


def _time_training_steps(encoder: Any, ids: list[list[int]], lengths: np.ndarray, *, batch_size: int, seed: int,
                         device: str, mixed_precision: str, min_seconds: float, max_steps: int) -> dict[str, Any]:
    """Forward + backward per padded token, the AdamW step and an evaluation forward per token, timed on a
    copy of the encoder with batches built as the training loop builds them."""
    import contextlib
    import copy

    import torch
    import torch.nn.functional as F

    from adaptlab.encoders.heap import bound_heap_growth, trim_heap
    from adaptlab.rungs.training import TextClassifier, _collate, epoch_batches, head_input_scale

    dev = torch.device(encoder.device)
    on_cpu = dev.type == "cpu"
    if on_cpu:
        bound_heap_growth()  # as the training loop's runtime does: big tensors in their own mappings
    t_build = time.perf_counter()
    model = TextClassifier(copy.deepcopy(encoder.model), encoder.pool, encoder.dim, 2,
                           input_scale=head_input_scale(encoder)).to(dev)
    build = time.perf_counter() - t_build
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    fused = dev.type in ("cpu", "cuda")
    opt = torch.optim.AdamW(params, lr=1e-5, fused=fused) if fused else torch.optim.AdamW(params, lr=1e-5)
    dev_type = "cuda" if device == "gpu" else "cpu"
    batches = epoch_batches(lengths, batch_size, seed=seed, stage=0, epoch=0)
    full = [b for b in batches if len(b) == batch_size] or batches
    pad = int(encoder.tokenizer.pad_token_id or 0)
    timed = _quantile_batches(full, lengths, max_steps, seed)

    def cast() -> Any:
        return torch.autocast(dev_type, dtype=torch.bfloat16) if mixed_precision == "bf16" else contextlib.nullcontext()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    per_token, opt_times, wall, cpu = [], [], 0.0, 0.0
    shapes: list[tuple[int, int]] = []
    for k in range(max_steps + 2):
        idx = timed[(k - 2) % len(timed)] if k >= 2 else timed[len(timed) // 2]
        input_ids, mask = _collate(ids, idx, pad, dev)
        target = torch.zeros(len(idx), dtype=torch.long, device=dev)
        sync()
        w0, c0 = time.perf_counter(), time.process_time()
        with cast():
            loss = F.cross_entropy(model(input_ids, mask), target)
        loss.backward()
        sync()
        w1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # the loop clips every step (max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if on_cpu:
            trim_heap()  # the loop's runtime hands freed pages back after every CPU step (after_step)
        sync()
        w2, c2 = time.perf_counter(), time.process_time()
        if k < 2:
            continue  # warm-up: kernel set-up and the optimizer's first allocation
        per_token.append((w1 - w0) / float(input_ids.numel()))
        shapes.append(tuple(input_ids.shape))
        opt_times.append(w2 - w1)
        wall, cpu = wall + (w2 - w0), cpu + (c2 - c0)
        if len(per_token) >= 5 and wall >= min_seconds * (1 if len(per_token) >= len(timed) else 4):
            break
    threads = torch.get_num_threads() if dev.type == "cpu" else 1
    cpu_share = cpu / max(wall * threads, 1e-9) if dev.type == "cpu" else None
    epoch = [(len(b), int(lengths[b].max())) for b in batches]
    token, fit = _epoch_token_seconds(per_token, shapes, epoch)
    spread = repeat_spread(fit)
    forward = _time_forward(model, ids, pad, dev, cast, sync)
    checkpoint = _time_checkpoint(model, opt)
    loaded = bool((cpu_share is not None and cpu_share < LOADED_CPU_SHARE) or spread > LOADED_SPREAD)
    note = ""
    if loaded:
        note = (f"the machine looks loaded while calibrating (this process got {cpu_share:.0%} of {threads} "
                f"core(s); repeats {spread:.1f}x apart): the costs use the fastest repeats, what the machine does "
                "when quiet; another job on the cores will make the study slower than planned"
                if cpu_share is not None else f"repeats {spread:.1f}x apart: the costs use the fastest repeats")
    if loaded and len(per_token) >= 6:
        # The faster half of the repeats against the fit: robust to steps slowed by interference, not as
        # optimistic as the fastest.
        keep = fit <= np.median(fit)
        token = _epoch_token_seconds([p for p, k in zip(per_token, keep) if k],
                                     [x for x, k in zip(shapes, keep) if k], epoch)[0]
    optimizer = float(np.quantile(opt_times, 0.25)) if loaded else float(np.median(opt_times))
    del model, opt
    return {"token": token, "optimizer": optimizer, "forward": forward, "loaded": loaded, "note": note,
            "cpu_share": cpu_share, "spread": spread, "build": build, "checkpoint": checkpoint}


def repeat_spread(fit: np.ndarray) -> float:
    """How far apart timed repeats are (each one's seconds ÷ the fitted seconds of its shape): slowest ÷
    fastest, leaving out the single slowest and fastest once there are five or more.

    One stray step (a page fault, a timer tick on a tweet-sized batch) is not a loaded machine: on a quiet
    2-core machine a tweets calibration read 1.7x from one outlier and called itself loaded. Another job
    on the cores slows many steps, which the trimmed spread still sees (and the CPU share sees first).

    Example:
        >>> round(repeat_spread(np.array([1.0, 1.02, 0.98, 1.01, 1.7])), 2)  # one outlier
        1.03
        >>> round(repeat_spread(np.array([1.0, 1.9, 0.9, 1.8, 2.0, 1.0])), 2)  # interference throughout
        1.9
    """
    r = np.sort(np.asarray(fit, dtype=float))
    if len(r) >= 5:
        r = r[1:-1]
    return float(r[-1] / max(r[0], 1e-12))


def _quantile_batches(full: list[np.ndarray], lengths: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """The epoch's largest batch, then ``n - 1`` of its batches at evenly spaced quantiles of their padded
    size in a random order: the range a step's cost is fitted over (see :func:`_epoch_token_seconds`)."""
    size = np.array([lengths[b].max() * len(b) for b in full])
    by_size = np.argsort(size, kind="stable")
    m = max(1, n - 1)
    picks = [full[by_size[min(len(full) - 1, int((k + 0.5) * len(full) / m))]] for k in range(m)]
    return [full[by_size[-1]]] + [picks[i] for i in np.random.default_rng(seed).permutation(len(picks))]


def _epoch_token_seconds(per_token: list[float], shapes: list[tuple[int, int]],
                         epoch: list[tuple[int, int]]) -> tuple[float, np.ndarray]:
    """Seconds per padded token of an epoch's mean forward + backward, from timed steps of several shapes,
    and each timed step's seconds ÷ the fitted seconds of its shape.

    A step costs ``a + b * tokens + c * tokens * length`` (attention grows with the square of the
    length), fitted without negative terms; the epoch's mean step is that over its own batch shapes. On
    tweets (median 34 tokens, a few of 256) the one batch of 16 x 256 took 3.8 s against 0.3 s for a
    median one: the median repeat read the epoch 25-40% short.

    Example:
        >>> shapes = [(16, 20), (16, 40), (16, 80), (16, 160)]
        >>> secs = [0.01 + 1e-4 * b * n + 1e-6 * b * n * n for b, n in shapes]
        >>> per = [t / (b * n) for t, (b, n) in zip(secs, shapes)]
        >>> token, fit = _epoch_token_seconds(per, shapes, [(16, 40), (16, 160)])
        >>> round(token * 1e4, 3), bool(abs(fit - 1).max() < 1e-6)  # (0.0996 + 0.6756) / 2 / 1600 tokens
        (2.422, True)
    """
    from scipy.optimize import nnls

    t = np.array([p * b * n for p, (b, n) in zip(per_token, shapes)])
    x = np.array([[1.0, b * n, b * n * n] for b, n in shapes])
    scale = x.max(axis=0)
    coef = nnls(x / scale, t)[0] / scale
    e = np.array([[1.0, b * n, b * n * n] for b, n in epoch])
    return float((e @ coef).mean() / e[:, 1].mean()), t / np.maximum(x @ coef, 1e-12)


def _time_checkpoint(model: Any, opt: Any) -> float:
    """Seconds to write what the training loop's resumable checkpoint holds (as ``Trainer._write_checkpoint``
    does): copies of the weights and of the best weights so far, then AdamW's state saved by torch."""
    import tempfile

    import torch
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        weights = {f"{tag}.{k}": v.detach().cpu().contiguous().clone()
                   for tag in ("model", "best") for k, v in model.state_dict().items()}
        save_file(weights, f"{tmp}/w.safetensors")
        torch.save({"optimizer": opt.state_dict()}, f"{tmp}/s.pt")
        return time.perf_counter() - t0


def _time_forward(model: Any, ids: list[list[int]], pad: int, dev: Any, cast: Any, sync: Any) -> float:
    """Seconds per padded token of an evaluation pass (no gradients, length-sorted batches of 64)."""
    import torch

    from adaptlab.rungs.training import _collate

    order = np.argsort([len(t) for t in ids])
    model.eval()
    times = []
    with torch.inference_mode():
        for start in (len(order) // 2, len(order) // 2, max(0, len(order) - 64)):  # the first is a warm-up
            idx = order[start:start + 64]
            input_ids, mask = _collate(ids, idx, pad, dev)
            sync()
            t0 = time.perf_counter()
            with cast():
                model(input_ids, mask)
            sync()
            times.append((time.perf_counter() - t0) / float(input_ids.numel()))
    return float(min(times[1:]))


def _time_heads(texts: Sequence[str], labels: Optional[Sequence[str]], emb: np.ndarray, ys: Optional[list],
                *, rng: np.random.Generator, seed: int) -> tuple[float, float]:
    """Seconds per training text of TF-IDF + its head, and of the probe's head on embeddings."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from adaptlab.rungs.head import select_logistic_head

    # TF-IDF needs no encoder, so it is timed on a larger sample: on a few dozen texts the fixed cost of
    # the C search dominates and the per-text cost came out ~8x too high on the demo data.
    n_tf = min(len(texts), 600)
    tf_idx = rng.choice(len(texts), size=n_tf, replace=False)
    tf_texts = [texts[i] for i in tf_idx]
    tf_y = [labels[i] for i in tf_idx] if labels is not None else [str(i % 2) for i in range(n_tf)]
    if len(set(tf_y)) < 2:
        tf_y = [str(i % 2) for i in range(n_tf)]
    half = max(2, n_tf // 2)
    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32)
    Xtr, Xva = vec.fit_transform(tf_texts[:half]), vec.transform(tf_texts[half:])
    select_logistic_head(Xtr, tf_y[:half], Xva, tf_y[half:], C_grid=[0.1, 1.0, 10.0, 100.0], seed=seed,
                         classes=sorted(set(tf_y)), positive=None)
    tfidf_per = (time.perf_counter() - t0) / half
    ys = ys if ys is not None and len(set(ys)) >= 2 else [str(i % 2) for i in range(len(emb))]
    # A head on a few dozen vectors is all fixed cost (the C search): time it on ~1,000 vectors made from
    # the sample's (jittered copies), whose cost per text scales to the real training split.
    reps = max(1, 1280 // len(emb))
    X = np.tile(emb, (reps, 1)) + rng.normal(0, 0.05, size=(len(emb) * reps, emb.shape[1])).astype(emb.dtype)
    y = list(ys) * reps
    h = (len(X) * 4) // 5
    t0 = time.perf_counter()
    select_logistic_head(X[:h], y[:h], X[h:], y[h:], C_grid=[0.01, 0.1, 1.0, 10.0, 100.0], seed=seed,
                         classes=sorted(set(ys)), positive=None)
    return tfidf_per, (time.perf_counter() - t0) / h


