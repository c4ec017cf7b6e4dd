"""Planner: fit rungs x seeds into a compute budget from a short measured calibration.

The calibration times, on this machine, what each rung's cost is made of: TF-IDF + head fit, one
encoder forward pass per text, one training step (forward + backward) of the encoder on a batch.
Costs are then scaled to the data sizes. When the budget names a GPU and the calibration ran on a
CPU, an assumed GPU speed-up is applied to encoder work and said so in the plan.

Example:
    >>> parse_budget("2 CPU hours")
    (7200.0, 'cpu')
    >>> parse_budget("4 days on one GPU")
    (345600.0, 'gpu')
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.decide.policy import LADDER, Policy, rung_info
from adaptlab.errors import ConfigError

_UNIT = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60, "minute": 60,
         "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400,
         "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}
# Assumed speed-up of encoder work on one GPU over this machine's CPU when the plan targets a GPU it
# cannot measure (a small BERT on a data-centre GPU vs a few CPU cores); overridable.
DEFAULT_GPU_SPEEDUP = 25.0
NETWORK_RUNGS = ("lora", "unfreeze", "finetune", "lpft")
# Share of a full backward pass each network rung pays (LoRA / partial unfreeze backpropagate less).
_STEP_FACTOR = {"lora": 0.7, "unfreeze": 0.6, "finetune": 1.0, "lpft": 1.1}


def parse_budget(text: str) -> tuple[float, str]:
    """``"2 CPU hours"``, ``"4 days on one GPU"``, ``"90min"`` -> (seconds, "cpu" | "gpu")."""
    raw = str(text).strip().lower()
    m = re.search(r"(\d+(?:\.\d+)?)\s*(?:cpu|gpu)?\s*([a-z]+)", raw)
    if not m or m.group(2) not in _UNIT or float(m.group(1)) <= 0:
        raise ConfigError.invalid("budget", text, "a duration and optionally a device, e.g. '2 CPU hours', "
                                  "'4 days on one GPU', '90min'")
    device = "gpu" if re.search(r"\bgpus?\b", raw) else "cpu"
    return float(m.group(1)) * _UNIT[m.group(2)], device


@dataclass
class Calibration:
    """Measured unit costs on this machine (seconds)."""

    device: str
    encode_per_text: float
    train_step: float  # one forward + backward of the encoder on `batch_size` texts
    batch_size: int
    tfidf_per_train_text: float
    head_per_train_text: float
    seconds: float  # how long the calibration itself took

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate(encoder: Any, texts: Sequence[str], labels: Optional[Sequence[str]] = None, *, n: int = 48,
              batch_size: int = 16, seed: int = 0) -> Calibration:
    """Time the unit costs on a few texts (a few seconds on a CPU for MiniLM)."""
    import torch

    from adaptlab.rungs.head import select_logistic_head
    from sklearn.feature_extraction.text import TfidfVectorizer

    t_all = time.perf_counter()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(texts), size=min(n, len(texts)), replace=False)
    sample = [texts[i] for i in idx]
    ys = [labels[i] for i in idx] if labels is not None else [str(i % 2) for i in range(len(sample))]
    if len(set(ys)) < 2:
        ys = [str(i % 2) for i in range(len(sample))]
    device = "gpu" if str(getattr(encoder, "device", "cpu")).startswith("cuda") else "cpu"

    t0 = time.perf_counter()
    emb = encoder.encode(sample, batch_size=32)
    encode_per_text = (time.perf_counter() - t0) / len(sample)

    model, tok = encoder.model, encoder.tokenizer
    batch = sample[:batch_size]
    enc = tok(batch, padding=True, truncation=True, max_length=encoder.max_seq_length, return_tensors="pt")
    enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items()}
    head = torch.nn.Linear(encoder.dim, 2).to(next(model.parameters()).device)
    was_training = model.training
    model.train()
    times = []
    try:
        for _ in range(3):
            t0 = time.perf_counter()
            out = model(**enc)
            pooled = encoder.pool(out.last_hidden_state, enc["attention_mask"])
            loss = head(pooled).logsumexp(dim=1).mean()
            loss.backward()
            model.zero_grad(set_to_none=True)
            head.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    train_step = float(np.median(times[1:])) * batch_size / len(batch)

    half = max(2, len(sample) // 2)
    # TF-IDF needs no encoder, so it is timed on a larger sample: on a few dozen texts the fixed cost of
    # the C search dominates and the per-text cost came out ~8x too high on the demo data.
    n_tf = min(len(texts), max(len(sample), 600))
    tf_idx = rng.choice(len(texts), size=n_tf, replace=False)
    tf_texts = [texts[i] for i in tf_idx]
    tf_y = [labels[i] for i in tf_idx] if labels is not None else [str(i % 2) for i in range(n_tf)]
    if len(set(tf_y)) < 2:
        tf_y = [str(i % 2) for i in range(n_tf)]
    tf_half = max(2, n_tf // 2)
    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32)
    Xtr, Xva = vec.fit_transform(tf_texts[:tf_half]), vec.transform(tf_texts[tf_half:])
    select_logistic_head(Xtr, tf_y[:tf_half], Xva, tf_y[tf_half:], C_grid=[0.1, 1.0, 10.0, 100.0], seed=seed,
                         classes=sorted(set(tf_y)), positive=None)
    tfidf_per = (time.perf_counter() - t0) / tf_half
    t0 = time.perf_counter()
    select_logistic_head(np.asarray(emb[:half]), ys[:half], np.asarray(emb[half:]), ys[half:],
                         C_grid=[0.01, 0.1, 1.0, 10.0, 100.0], seed=seed, classes=sorted(set(ys)), positive=None)
    head_per = (time.perf_counter() - t0) / half
    return Calibration(device=device, encode_per_text=encode_per_text, train_step=train_step, batch_size=batch_size,
                       tfidf_per_train_text=tfidf_per, head_per_train_text=head_per,
                       seconds=time.perf_counter() - t_all)


@dataclass
class PlanItem:
    rung: str
    seeds: int
    seconds_per_seed: float
    one_time_seconds: float
    included: bool
    reason: str

    @property
    def total_seconds(self) -> float:
        return self.one_time_seconds + self.seeds * self.seconds_per_seed if self.included else 0.0


@dataclass
class Plan:
    budget_seconds: float
    device: str
    calibration: dict[str, Any]
    items: list[PlanItem]
    notes: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return float(sum(i.total_seconds for i in self.items))

    def to_dict(self) -> dict[str, Any]:
        return {"budget_seconds": self.budget_seconds, "device": self.device, "calibration": self.calibration,
                "total_seconds": self.total_seconds, "notes": list(self.notes),
                "items": [{**asdict(i), "total_seconds": i.total_seconds} for i in self.items]}

    @property
    def rungs(self) -> list[str]:
        return [i.rung for i in self.items if i.included]


def format_seconds(seconds: float, digits: int = 0) -> str:
    """A duration in the unit a person reads best (``digits`` decimals for seconds and minutes).

    Example:
        >>> format_seconds(95), format_seconds(95, digits=1), format_seconds(5400)
        ('95 s', '95.0 s', '90 min')
    """
    if seconds < 120:
        return f"{seconds:.{digits}f} s"
    if seconds < 7200:
        return f"{seconds / 60:.{digits}f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"



def estimate_costs(cal: Calibration, *, n_labeled: int, n_unlabeled: int = 0, test_size: float = 0.2,
                   val_size: float = 0.2, max_epochs: int = 10, refit_max_steps: int = 1000, refit_batch: int = 32,
                   speedup: float = 1.0) -> dict[str, tuple[float, float]]:
    """(one-time seconds, seconds per seed) of each rung for these data sizes."""
    n_pool = n_labeled * (1 - test_size)
    n_train = n_pool * (1 - val_size)
    n_val, n_test = n_pool - n_train, n_labeled * test_size
    enc = cal.encode_per_text / speedup
    step = cal.train_step / speedup
    steps_per_epoch = math.ceil(n_train / cal.batch_size)
    out = {
        "tfidf": (0.0, cal.tfidf_per_train_text * n_train),
        # the frozen encoder embeds every labeled text once (cached), then only a head per seed
        "probe": (enc * n_labeled, cal.head_per_train_text * n_train),
    }
    refit_steps = min(refit_max_steps, math.ceil(max(n_unlabeled, 1) / refit_batch))
    out["refit"] = (0.0, refit_steps * step * refit_batch / cal.batch_size + enc * n_labeled
                    + cal.head_per_train_text * n_train)
    for r in NETWORK_RUNGS:
        # worst case: every epoch runs (early stopping usually ends sooner); validation each epoch, test once
        per_seed = max_epochs * (steps_per_epoch * step * _STEP_FACTOR[r] + n_val * enc) + n_test * enc
        out[r] = (0.0, per_seed)
    return out


def make_plan(
    costs: dict[str, tuple[float, float]],
    budget_seconds: float,
    *,
    device: str,
    calibration: Optional[Calibration] = None,
    rungs: Optional[Sequence[str]] = None,
    n_labels: Optional[int] = None,
    n_unlabeled: Optional[int] = None,
    policy: Optional[Policy] = None,
    max_seeds: int = 5,
    forced: Sequence[str] = (),
) -> Plan:
    """Greedy fit: the regime table's rung and the frozen baselines first, ``min_seeds`` each, ladder order;
    then extra seeds up to ``max_seeds`` while the budget lasts. Every skipped rung says why; rungs in
    ``forced`` (named by the user) are never skipped for a regime reason, only for the budget."""
    p = policy or Policy()
    wanted = [r for r in (rungs or LADDER) if r in costs]
    regime = p.regime(n_labels, n_unlabeled, True if device == "gpu" else None)
    first = list(dict.fromkeys(["tfidf", "probe"] + ([regime.recommends] if regime and regime.recommends else [])))
    order = [r for r in first if r in wanted] + [r for r in wanted if r not in first]
    left = budget_seconds
    items: list[PlanItem] = []
    notes: list[str] = []
    if regime is not None:
        notes.append(f"regime table ({regime.condition}): {regime.recommends} goes first after the frozen baselines.")
    for r in order:
        one, per = costs[r]
        need = one + p.min_seeds * per
        if r == "refit" and not n_unlabeled:
            items.append(PlanItem(r, 0, per, one, False, "no unlabeled in-domain texts: nothing to refit on"))
            continue
        if r in NETWORK_RUNGS and n_labels is not None and n_labels < p.few_labels and r not in forced:
            items.append(PlanItem(r, 0, per, one, False,
                                  f"{n_labels} labels < {p.few_labels:,}: the regime table says the encoder "
                                  "should stay frozen (too little signal to adapt it)"))
            continue
        if need <= left:
            items.append(PlanItem(r, p.min_seeds, per, one, True,
                                  f"{p.min_seeds} seeds × {format_seconds(per)}" + (f" + {format_seconds(one)} once" if one > 1 else "")))
            left -= need
        else:
            items.append(PlanItem(r, 0, per, one, False,
                                  f"{p.min_seeds} seeds need ~{format_seconds(need)}, more than the {format_seconds(max(left, 0))} left"))
    # spend what is left on extra seeds, cheapest rungs first (tighter bands where they are cheap)
    for it in sorted((i for i in items if i.included), key=lambda i: i.seconds_per_seed):
        while it.seeds < max_seeds and it.seconds_per_seed <= left:
            it.seeds += 1
            left -= it.seconds_per_seed
        if it.seeds > p.min_seeds:
            it.reason = f"{it.seeds} seeds × {format_seconds(it.seconds_per_seed)}" + (
                f" + {format_seconds(it.one_time_seconds)} once" if it.one_time_seconds > 1 else "")
    if not any(i.included for i in items):
        notes.append("nothing fits the budget with the minimum number of seeds; raise the budget or subsample the data.")
    return Plan(budget_seconds=budget_seconds, device=device,
                calibration=calibration.to_dict() if calibration else {}, items=items, notes=notes)


def plan_study(
    texts: Sequence[str],
    labels: Optional[Sequence[str]],
    budget: str,
    *,
    encoder: Any,
    n_unlabeled: int = 0,
    rungs: Optional[Sequence[str]] = None,
    policy: Optional[Policy] = None,
    gpu_speedup: float = DEFAULT_GPU_SPEEDUP,
    test_size: float = 0.2,
    val_size: float = 0.2,
) -> Plan:
    """Calibrate on a few of ``texts``, estimate each rung's cost, and fit rungs x seeds into ``budget``.

    Example:
        >>> plan = plan_study(ds.texts, ds.labels, "2 CPU hours", encoder=enc)  # doctest: +SKIP
        >>> plan.rungs  # doctest: +SKIP
        ['tfidf', 'probe', 'refit']
    """
    seconds, device = parse_budget(budget)
    cal = calibrate(encoder, texts, labels)
    speed = gpu_speedup if (device == "gpu" and cal.device == "cpu") else 1.0
    costs = estimate_costs(cal, n_labeled=len(texts), n_unlabeled=n_unlabeled, test_size=test_size,
                           val_size=val_size, speedup=speed)
    from adaptlab.rungs import RUNGS

    available = [r for r in (rungs or LADDER) if r in RUNGS]
    plan = make_plan(costs, seconds, device=device, calibration=cal, rungs=available, n_labels=len(texts),
                     n_unlabeled=n_unlabeled, policy=policy, forced=list(rungs or ()))
    missing = [r for r in (rungs or LADDER) if r not in RUNGS]
    if missing:
        plan.notes.append(f"not available in this version, so not planned: {', '.join(missing)}.")
    plan.notes.append(f"calibrated on {cal.device} in {cal.seconds:.1f} s: encode {cal.encode_per_text * 1000:.1f} ms/text, "
                      f"training step {cal.train_step:.2f} s per {cal.batch_size} texts.")
    if speed != 1.0:
        plan.notes.append(f"the budget names a GPU but this machine has none: encoder work is assumed {speed:g}× faster "
                          "there (--gpu-speedup); calibrate on the GPU machine for a measured plan.")
    plan.notes.append("network rungs are costed at their worst case (every epoch runs); early stopping usually ends "
                      "them sooner.")
    for it in plan.items:
        it.reason = it.reason + ("" if it.rung in RUNGS else " (rung not available)")
        if rung_info(it.rung)["needs_engineer"] and it.included:
            it.reason += "; needs an engineer to rerun"
    return plan
