"""Planner: fit rungs x seeds into a compute budget from a short measured calibration.

The calibration times, on this machine, what each rung's cost is made of: TF-IDF + head fit, one
encoder forward pass per text, one training step (forward + backward) of the encoder on a batch.
Costs are then scaled to the data sizes. When the budget names a GPU and the calibration ran on a
CPU, an assumed GPU speed-up is applied to encoder work and said so in the plan. Results already in
the run store replace the calibration where they exist (:func:`measured_costs`).

What a rung costs is split like a study spends it: a one-time part (the frozen encoder's embedding
pass; the MLM refit, shared by every seed unless ``refit_per_seed``) and a part per seed (a head; a
network rung's training steps). A network rung is costed by the optimizer steps it will take: the
study's step budget (``--train-budget``) exactly, else ``max_epochs`` as the upper bound, with an
expected figure where early stopping usually ends it.

The budget is filled in the rounds of a budgeted study (:mod:`adaptlab.evaluate.adaptive`): the cheap
rungs (tfidf, probe) get all their seeds; every other rung that fits gets one screening run (a network
rung at ``screen_fidelity`` of its training steps, the refit its shared refit + one head) before any of
them gets a second seed; then full-fidelity seeds, ``min_seeds`` per rung first.

Example:
    >>> parse_budget("2 CPU hours")
    (7200.0, 'cpu')
    >>> parse_budget("4 days on one GPU")
    (345600.0, 'gpu')
"""
from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from adaptlab.config import Budget, format_duration
from adaptlab.decide.calibrate import Calibration, calibrate  # noqa: F401  (re-exported)
from adaptlab.store.costs import cost_key
from adaptlab.decide.policy import LADDER, Policy, rung_info
from adaptlab.rungs.ladder import CHEAP_RUNGS, LADDER_FACTS, NETWORK_RUNGS, RELATIVE_STEP_COST, facts as rung_facts
from adaptlab.rungs.ladder import kind as _rung_kind
from adaptlab.errors import ConfigError

_UNIT = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60, "minute": 60,
         "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400,
         "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}
# Assumed speed-up of encoder work on one GPU over this machine's CPU when the plan targets a GPU it
# cannot measure (a small BERT on a data-centre GPU vs a few CPU cores); overridable.
DEFAULT_GPU_SPEEDUP = 25.0
# Share of a full backward pass each network rung pays (LoRA / partial unfreeze backpropagate less).
_STEP_FACTOR = RELATIVE_STEP_COST
# Share of its training steps a network rung gets when screened (AdaptiveConfig.screen_fidelity).
DEFAULT_SCREEN_FIDELITY = 0.25
# Where validation F1 of a small encoder trained on a few thousand labels usually peaks: users saw finetune
# peak by epoch 2 (7 min of a 34-min, 10-epoch worst case); on Rotten Tomatoes (5,200 labels, ~80 tokens)
# lora and finetune peaked at epoch 4 and stopped at 7, lpft ran all 10 (bench/results/time_budget_rt5200_*).
# Epoch 3 keeps either case within 1.2x of the truth; early stopping ends the run `patience` epochs later.
# Used for the expected figure only, never for the upper bound; stored runs of the rung replace it.
TYPICAL_BEST_EPOCH = 3
SETFIT_SETUP_SECONDS = 30.0
# Tokenizer entries a distillation (cost shape ``distil``) encodes when the encoder's are not known: BERT's
# WordPiece vocabulary, that of MiniLM and most small English encoders. Each is one short sequence
# ([CLS] token [SEP]) through the encoder.
DEFAULT_VOCABULARY = 30_522
DISTIL_TOKENS_PER_ENTRY = 3


def parse_budget(text: str) -> tuple[float, str]:
    """``"2 CPU hours"``, ``"4 days on one GPU"``, ``"90min"`` -> (seconds, "cpu" | "gpu").

    Example:
        >>> from adaptlab.decide import parse_budget
        >>> parse_budget("2 CPU hours"), parse_budget("4 days on one GPU"), parse_budget("90min")
        ((7200.0, 'cpu'), (345600.0, 'gpu'), (5400.0, 'cpu'))
    """
    raw = str(text).strip().lower()
    m = re.search(r"(\d+(?:\.\d+)?)\s*(?:cpu|gpu)?\s*([a-z]+)", raw)
    if not m or m.group(2) not in _UNIT or float(m.group(1)) <= 0:
        raise ConfigError.invalid("budget", text, "a duration and optionally a device, e.g. '2 CPU hours', "
                                  "'4 days on one GPU', '90min'")
    device = "gpu" if re.search(r"\bgpus?\b", raw) else "cpu"
    return float(m.group(1)) * _UNIT[m.group(2)], device


def format_seconds(seconds: float, digits: int = 0) -> str:
    """A duration in the unit a person reads best (``digits`` decimals for seconds and minutes).

    Example:
        >>> format_seconds(95), format_seconds(95, digits=1), format_seconds(5400)
        ('95 s', '95.0 s', '90 min')
    """
    if seconds < 3 * 86400:
        return format_duration(seconds, (digits, digits, 1))
    return f"{seconds / 86400:.1f} days"


# ------------------------------------------------------------------------------------------ costs
@dataclass
class RungCost:
    """What one rung costs (seconds) and how that was figured.

    ``one_time`` is paid once per study (the frozen encoder's embedding pass, the shared refit);
    ``per_seed`` is one seed at full fidelity, an upper bound. A network rung's seed is ``steps``
    optimizer steps of ``step_seconds`` each (its validation passes spread over them) plus ``fixed``
    seconds (the test pass); ``expected_steps`` is where early stopping usually ends it. ``pair`` is the
    (one-time, per-seed) tuple :class:`adaptlab.evaluate.adaptive.Allocator` takes.

    Example:
        >>> c = RungCost("network", 0.0, 104.0, steps=400, step_seconds=0.25, fixed=4.0)
        >>> c.run_seconds(0.25), c.pair
        (29.0, (0.0, 104.0))
    """

    kind: str  # cheap | shared | network, as adaptlab.evaluate.adaptive.KINDS
    one_time: float
    per_seed: float
    steps: Optional[int] = None
    step_seconds: Optional[float] = None
    fixed: float = 0.0
    expected_steps: Optional[int] = None
    source: str = "calibrated"
    basis: str = ""
    correction: float = 1.0  # the learned factor already applied to the calibrated figures (scaled())

    @property
    def pair(self) -> tuple[float, float]:
        return (self.one_time, self.per_seed)

    def run_seconds(self, fidelity: float = 1.0) -> float:
        """Seconds of one seed at ``fidelity`` (a share of a network rung's training steps)."""
        if self.kind != "network" or fidelity >= 1.0:
            return self.per_seed
        if self.steps is None or self.step_seconds is None:  # a bare (one-time, per-seed) pair
            return self.fixed + fidelity * (self.per_seed - self.fixed)
        return self.fixed + self.fidelity_steps(fidelity) * self.step_seconds

    def estimate(self, fidelity: float = 1.0, *, first: bool = True) -> float:
        """Expected seconds of one cell at ``fidelity``, as a decision-driven study pays it: a network rung's
        full seed ends where early stopping usually ends it (a screen runs all its steps), the first seed
        of a shared rung pays the shared work, a cheap rung's first seed its one-time pass.

        Example:
            >>> c = RungCost("network", 0.0, 1302.0, steps=2600, step_seconds=0.5, fixed=2.0, expected_steps=1300)
            >>> c.estimate(1.0), c.estimate(0.25)
            (652.0, 327.0)
        """
        if self.kind != "network":
            return (self.one_time if first else 0.0) + self.per_seed
        if self.steps is None or self.step_seconds is None:
            return self.run_seconds(fidelity)
        steps = self.fidelity_steps(min(fidelity, 1.0)) or 0
        if self.expected_steps is not None:
            steps = min(steps, self.expected_steps)
        return self.fixed + steps * self.step_seconds

    def scaled(self, factor: float, why: str) -> "RungCost":
        """These costs times ``factor`` (a correction learned from measured runs), the basis saying why."""
        return RungCost(self.kind, self.one_time * factor, self.per_seed * factor, steps=self.steps,
                        step_seconds=None if self.step_seconds is None else self.step_seconds * factor,
                        fixed=self.fixed * factor, expected_steps=self.expected_steps, source=self.source,
                        basis=f"{self.basis}; {why}" if self.basis else why, correction=self.correction * factor)

    def fidelity_steps(self, fidelity: float) -> Optional[int]:
        """Optimizer steps of one seed at ``fidelity`` (None when the rung does not train in steps)."""
        return None if self.steps is None else max(1, math.ceil(fidelity * self.steps))

    @property
    def expected_per_seed(self) -> Optional[float]:
        if self.expected_steps is None or self.step_seconds is None:
            return None
        return self.fixed + self.expected_steps * self.step_seconds


@dataclass
class MeasuredCost:
    """What the stored results of one rung cost, scaled to the data being planned.

    Example:
        >>> MeasuredCost(runs=2, per_seed=0.4).source
        'measured (2 runs)'
    """

    runs: int = 0
    per_seed: Optional[float] = None  # tfidf / probe / refit head: seconds a seed, scaled to the labeled pool
    step_seconds: Optional[float] = None  # network: seconds an optimizer step (validation included); refit: an MLM step
    epochs: Optional[float] = None  # network: epochs after which the stored runs stopped early

    @property
    def source(self) -> str:
        return f"measured ({self.runs} run{'' if self.runs == 1 else 's'})"


@dataclass(frozen=True)
class _Sizes:
    """Labeled texts as a study splits them (test carved first, validation from the pool)."""

    n_labeled: int
    n_pool: float
    n_train: float
    n_val: float
    n_test: float

    @classmethod
    def of(cls, n_labeled: int, test_size: float, val_size: float) -> "_Sizes":
        n_pool = n_labeled * (1 - test_size)
        n_train = n_pool * (1 - val_size)
        return cls(n_labeled, n_pool, n_train, n_pool - n_train, n_labeled * test_size)


def _training_defaults() -> dict[str, int]:
    # Read from the rung configs so the plan follows them when their defaults change.
    from adaptlab.rungs.refit.config import RefitConfig
    from adaptlab.rungs.training import TrainingConfig

    t, r = TrainingConfig.__dataclass_fields__, RefitConfig.__dataclass_fields__
    return {"max_epochs": t["max_epochs"].default, "patience": t["patience"].default,
            "batch_size": t["batch_size"].default, "refit_batch": r["batch_size"].default,
            "refit_max_steps": r["default_max_steps"].default}


def parse_train_budget(value: Union[str, int, Budget, None]) -> Optional[Budget]:
    """The study's training budget of network rungs (``--train-budget``): steps or wall-clock.

    Example:
        >>> parse_train_budget("520steps"), parse_train_budget(None)
        (Budget(steps=520, seconds=None), None)
    """
    try:
        return Budget.parse(value)
    except ConfigError:
        raise ConfigError.invalid("--train-budget", value, "a step or wall-clock budget, e.g. 520steps, 30min, 2h "
                                  "(the --budget of `study run`)") from None


def estimate_rung_costs(cal: Calibration, *, n_labeled: int, n_unlabeled: int = 0, test_size: float = 0.2,
                        val_size: float = 0.2, train_budget: Union[str, Budget, None] = None,
                        max_epochs: Optional[int] = None, patience: Optional[int] = None,
                        refit_max_steps: Optional[int] = None, refit_batch: Optional[int] = None,
                        speedup: float = 1.0, n_classes: int = 2,
                        measured: Optional[dict[str, MeasuredCost]] = None, timed: bool = False,
                        rung_params: Optional[dict[str, dict[str, Any]]] = None,
                        encode_gate: bool = False, vocabulary: Optional[int] = None) -> dict[str, RungCost]:
    """Each rung's :class:`RungCost` for these data sizes; ``measured`` costs replace calibrated ones.

    ``n_classes`` sizes SetFit's pairs when no step budget is given (they grow with the square of the
    training texts; classes taken as balanced). ``timed``: costs for a decision-driven study, which caps
    SetFit's own sizing at ``max_epochs`` epochs of steps (as :func:`adaptlab.evaluate.study.fidelity_budget`
    does for every network rung without a step budget). ``vocabulary``: the encoder's tokenizer entries, which
    a distilled rung (``static``) encodes once (default :data:`DEFAULT_VOCABULARY`).

    Example:
        >>> cal = Calibration("cpu", 0.01, 0.5, 16, 1e-4, 1e-4, 1.0)
        >>> costs = estimate_rung_costs(cal, n_labeled=5200, n_unlabeled=20_000, train_budget="520steps")
        >>> costs["finetune"].steps, costs["refit"].kind
        (520, 'shared')
    """
    d = _training_defaults()
    budget = parse_train_budget(train_budget)
    sz = _Sizes.of(n_labeled, test_size, val_size)
    m = measured or {}
    enc = cal.encode_per_text / speedup
    # encode_precision="auto" resolved to bf16: the study first embeds a sample of <= 512 train and 512
    # validation texts in both float32 (about twice bf16's time) and bf16.
    gate = 3 * enc * (min(512, sz.n_train) + min(512, sz.n_val)) if encode_gate and cal.precision == "bf16" else 0.0
    out = {
        "tfidf": _cheap_cost(cal.tfidf_per_train_text * sz.n_train, 0.0, m.get("tfidf"), "TF-IDF and its C search"),
        # the frozen encoder embeds every labeled text once (cached), then only a head per seed
        "probe": _cheap_cost(cal.head_per_train_text * sz.n_train, enc * n_labeled + gate, m.get("probe"),
                             "one embedding pass of the labeled texts" + (
                                 ", after the bf16 check of the encoder" if gate else "") + ", then a head"),
        "refit": _refit_cost(cal, sz, n_unlabeled, budget, enc=enc, speedup=speedup, measured=m.get("refit"),
                             batch=refit_batch or d["refit_batch"], cap=refit_max_steps or d["refit_max_steps"]),
    }
    for f in LADDER_FACTS:
        if f.cost_shape == "distil":
            out[f.name] = _distil_cost(cal, sz, encode_speedup=f.encode_speedup or 1.0, speedup=speedup,
                                       vocabulary=vocabulary or DEFAULT_VOCABULARY, measured=m.get(f.name))
    spe = max(1, math.ceil(sz.n_train / d["batch_size"]))
    # One validation pass per epoch, spread over its steps; the test pass (and SetFit's head fits) once.
    val_pass = cal.eval_seconds(sz.n_val) / speedup
    test_pass = cal.eval_seconds(sz.n_test) / speedup
    # Besides its steps a network cell builds its model, writes a checkpoint at each epoch's end and every
    # 200 steps, and embeds <= 200 validation texts for the CKA diagnostic.
    ckpt = cal.checkpoint_seconds * (1.0 / spe + 1.0 / 200)
    setup = cal.build_seconds + cal.eval_seconds(min(200, sz.n_val)) / speedup
    for r in NETWORK_RUNGS:
        mr = m.get(r)
        pairs = rung_facts(r).cost_shape == "pairs"  # SetFit: sentence-transformers' trainer, its own evaluations
        step = cal.step_seconds(r, d["batch_size"]) / speedup + (0.0 if pairs else val_pass / spe + ckpt)
        step_seconds = mr.step_seconds if mr and mr.step_seconds else step
        source = mr.source if mr and mr.step_seconds else "calibrated"
        if pairs and (budget is None or budget.steps is None):
            # Its checkpoints embed <= 256 train and validation texts each; the final head embeds them all.
            evals = cal.eval_seconds(4 * (min(256, sz.n_train) + min(256, sz.n_val)) + sz.n_pool) / speedup
            # Its Trainer's set-up (the model loaded by sentence-transformers, the pair datasets) and four
            # checkpoint heads: ~30 s for MiniLM on 2 cores (bench/costs.py); the first run corrects it.
            evals += SETFIT_SETUP_SECONDS / speedup
            params = dict((rung_params or {}).get(r) or {})
            own = any(params.get(k) is not None for k in ("max_pairs", "num_iterations", "budget"))
            out[r] = _setfit_cost(step_seconds, fixed=test_pass + evals, n_train=sz.n_train, n_classes=n_classes,
                                  budget=budget, source=source, params=params,
                                  cap=(max_epochs or d["max_epochs"]) * spe if timed and not own else None)
            continue
        out[r] = network_cost(step_seconds, fixed=test_pass + setup,
                              steps_per_epoch=spe, budget=budget, max_epochs=max_epochs or d["max_epochs"],
                              patience=patience or d["patience"], stopped_after=mr.epochs if mr else None,
                              source=source)
    return out


def _setfit_cost(step_seconds: float, *, fixed: float, n_train: int, n_classes: int, budget: Optional[Budget],
                 source: str, cap: Optional[int] = None, params: Optional[dict[str, Any]] = None) -> RungCost:
    # Without a step budget SetFit sizes its own training: num_epochs passes over its pairs, no early
    # stopping, so the steps are known in advance (and grow with the square of the training texts).
    from adaptlab.rungs.setfit import SetFitConfig, setfit_pair_count

    cfg = SetFitConfig(**{k: v for k, v in (params or {}).items() if k in SetFitConfig.__dataclass_fields__})
    k, n_train = max(2, int(n_classes)), int(round(n_train))
    counts = [n_train // k + (1 if i < n_train % k else 0) for i in range(k)]
    pairs = setfit_pair_count(counts, num_iterations=cfg.num_iterations, sampling_strategy=cfg.sampling_strategy,
                              max_pairs=cfg.max_pairs)
    worst = cfg.num_epochs * max(1, math.ceil(pairs / cfg.batch_size))
    what = (f"SetFit's sizing: {pairs:,} pairs ({cfg.sampling_strategy}, {k} classes of ~{n_train // k} texts) / "
            f"{cfg.batch_size} a step x {cfg.num_epochs} epoch")
    if cap is not None and cap < worst:
        worst, what = cap, f"{cap} steps: a decision-driven study caps {what} at max_epochs epochs of steps"
    steps = worst
    if budget is not None and budget.seconds is not None:
        steps = min(worst, max(1, int(budget.seconds / step_seconds)))
        what = f"~{steps} steps in {format_seconds(budget.seconds)} (--train-budget), at most {what}"
    if steps > 100_000:
        what += "; give the study a step budget (--budget 500steps) or setfit.max_pairs"
    return RungCost("network", 0.0, fixed + steps * step_seconds, steps=steps, step_seconds=step_seconds,
                    fixed=fixed, expected_steps=steps, source=source, basis=what)


def _cheap_cost(per_seed: float, one_time: float, measured: Optional[MeasuredCost], what: str) -> RungCost:
    if measured is not None and measured.per_seed is not None:
        return RungCost("cheap", one_time, measured.per_seed, source=measured.source,
                        basis=f"{what}; seconds a seed from the run store, scaled to this data")
    return RungCost("cheap", one_time, per_seed, basis=what)


def _distil_cost(cal: Calibration, sz: _Sizes, *, encode_speedup: float, speedup: float, vocabulary: int,
                 measured: Optional[MeasuredCost]) -> RungCost:
    # Once: the encoder runs over its own vocabulary, one short sequence an entry (on the study's device); the
    # distilled model is kept in the home, so a later study of the same encoder pays nothing. A seed: every
    # labeled text (train, validation, test) encoded by the static vectors, on the CPU whatever the device,
    # ``encode_speedup`` times faster than the encoder, then a head as the probe fits it.
    eval_tokens = cal.lengths.get("eval_text") or 64.0  # a hand-made calibration has no length profile
    per_token = cal.forward_token_seconds or cal.encode_per_text / eval_tokens
    distil = vocabulary * DISTIL_TOKENS_PER_ENTRY * per_token / speedup
    per_seed = cal.encode_per_text * sz.n_labeled / encode_speedup + cal.head_per_train_text * sz.n_train
    return _cheap_cost(per_seed, distil, measured, f"one distillation of the encoder over its {vocabulary:,}-entry "
                       f"vocabulary (kept in the home), then texts encoded ~{encode_speedup:g}x faster than by the "
                       "encoder and a head a seed")


def _refit_cost(cal: Calibration, sz: _Sizes, n_unlabeled: int, budget: Optional[Budget], *, enc: float,
                speedup: float, measured: Optional[MeasuredCost], batch: int, cap: int) -> RungCost:
    # One refit is shared by every seed (RefitConfig.refit_per_seed is off by default): the MLM training
    # and embedding the labeled texts with the refit encoder are paid once; a seed pays a head.
    step = cal.mlm_step_seconds(batch) / speedup
    head = cal.head_per_train_text * sz.n_train
    source = "calibrated"
    if measured is not None:
        step, head = measured.step_seconds or step, head if measured.per_seed is None else measured.per_seed
        # Reused refits record no MLM timing: then only the head is measured.
        source = measured.source if measured.step_seconds else f"refit calibrated, head {measured.source}"
    if budget is not None and budget.seconds is not None:
        steps, mlm, what = None, budget.seconds, f"{format_seconds(budget.seconds)} of MLM (--train-budget)"
    else:
        # Default corpus: the unlabeled texts plus the labeled train+validation texts, one epoch, capped.
        steps = budget.steps if budget is not None else min(cap, math.ceil((n_unlabeled + sz.n_pool) / batch))
        mlm = steps * step
        what = f"{steps} MLM steps" + (" (--train-budget)" if budget is not None else f" (one epoch, at most {cap})")
    return RungCost("shared", mlm + enc * sz.n_labeled, head, steps=steps, step_seconds=step, source=source,
                    basis=f"one shared refit, {what}, and one embedding pass with it; then a head a seed")


def network_cost(step_seconds: float, *, fixed: float, steps_per_epoch: int, budget: Optional[Budget],
                 max_epochs: int, patience: int, stopped_after: Optional[float] = None,
                 source: str = "calibrated") -> RungCost:
    """A network rung's seed: the steps it will take under ``budget`` and where early stopping ends it.

    A step budget replaces ``max_epochs`` (the trainer's rule), so the seed takes exactly those steps at
    most; a wall-clock budget is still capped by ``max_epochs``; without a budget ``max_epochs`` is the
    upper bound. ``stopped_after`` (epochs, from stored runs) replaces the typical early-stopping epoch.

    Example:
        >>> c = network_cost(0.5, fixed=2.0, steps_per_epoch=260, budget=None, max_epochs=10, patience=3)
        >>> c.steps, c.expected_steps, c.per_seed, c.expected_per_seed
        (2600, 1560, 1302.0, 782.0)
    """
    worst = max_epochs * steps_per_epoch
    if budget is not None and budget.steps is not None:
        steps, what = budget.steps, f"{budget.steps} steps (--train-budget)"
    elif budget is not None:
        steps = min(worst, max(1, int(budget.seconds / step_seconds)))
        what = f"~{steps} steps in {format_seconds(budget.seconds)} (--train-budget)" + (
            f", capped by max_epochs={max_epochs}" if steps == worst else "")
    else:
        steps, what = worst, f"{max_epochs} epochs × {steps_per_epoch} steps, the max_epochs upper bound"
    epochs = stopped_after or min(max_epochs, TYPICAL_BEST_EPOCH + patience)
    expected = min(steps, math.ceil(epochs * steps_per_epoch))
    why = (f"stored runs stopped early after {epochs:g} epochs" if stopped_after else
           f"early stopping (patience {patience}) usually ends it near epoch {epochs:g}")
    basis = what + (f"; expected ~{expected} steps: {why}" if expected < steps else "")
    return RungCost("network", 0.0, fixed + steps * step_seconds, steps=steps, step_seconds=step_seconds,
                    fixed=fixed, expected_steps=expected, source=source, basis=basis)


def estimate_costs(cal: Calibration, *, n_labeled: int, n_unlabeled: int = 0, test_size: float = 0.2,
                   val_size: float = 0.2, max_epochs: Optional[int] = None, refit_max_steps: Optional[int] = None,
                   refit_batch: Optional[int] = None, speedup: float = 1.0,
                   train_budget: Union[str, Budget, None] = None) -> dict[str, tuple[float, float]]:
    """(one-time seconds, seconds per seed at full fidelity) of each rung, as the Allocator takes them.

    Example:
        >>> cal = Calibration("cpu", 0.01, 0.5, 16, 1e-4, 1e-4, 1.0)
        >>> one, per = estimate_costs(cal, n_labeled=1000, n_unlabeled=8000)["refit"]
        >>> one > 100 * per  # the shared refit is paid once, a seed pays a head
        True
    """
    costs = estimate_rung_costs(cal, n_labeled=n_labeled, n_unlabeled=n_unlabeled, test_size=test_size,
                                val_size=val_size, max_epochs=max_epochs, refit_max_steps=refit_max_steps,
                                refit_batch=refit_batch, speedup=speedup, train_budget=train_budget)
    return {r: c.pair for r, c in costs.items()}


def study_rung_costs(config: Any, texts: Sequence[str], labels: Optional[Sequence[str]], *, encoder: Any,
                     n_unlabeled: int = 0, home: Union[str, Path, None] = None, test_size: Optional[float] = None,
                     store: Any = None) -> tuple[dict[str, RungCost], Calibration]:
    """Each rung of ``config``'s :class:`RungCost` on this data and machine, and the calibration behind it.

    A calibration on the user's texts (batches built as the study trains, its precisions); costs already
    measured in the run store under ``home`` replace calibrated ones rung by rung; the correction learned
    from earlier trained runs on this machine (:meth:`adaptlab.store.RunStore.learned_cost`) scales the
    calibrated costs of the rungs that train. ``RungCost.estimate(fidelity)`` is what one cell costs.

    Example:
        >>> costs, cal = study_rung_costs(StudyConfig(rungs=["tfidf", "finetune"], budget="200steps"),
        ...                               ds.texts, ds.labels, encoder=enc)  # doctest: +SKIP
        >>> costs["finetune"].estimate(0.25) < costs["finetune"].estimate(1.0), cal.loaded  # doctest: +SKIP
        (True, False)
    """
    from adaptlab.rungs import trains_encoder
    from adaptlab.rungs.runtime import resolve_mixed_precision

    # "auto" is calibrated as what it resolves to on this machine (its gate may still pick float32).
    params = getattr(config, "rung_params", None) or {}
    default = str(getattr(config, "mixed_precision", "no"))  # the study's: rungs without their own take it
    rungs = list(getattr(config, "rungs", None) or params)
    mixed = {resolve_mixed_precision(str((params.get(name) or {}).get("mixed_precision", default)))[0]
             for name in rungs if trains_encoder(name)}
    mp = "bf16" if "bf16" in mixed else "no"
    cal = calibrate(encoder, texts, labels, precision=getattr(config, "encode_precision", "fp32"), mixed_precision=mp)
    st = store if store is not None else _open_store(home)
    ts = config.test_size if test_size is None else test_size
    measured = {} if st is None else measured_costs(
        st, n_labeled=len(texts), test_size=ts, encoder_fingerprint=getattr(encoder, "fingerprint", None),
        device=cal.device)
    costs = estimate_rung_costs(cal, n_labeled=len(texts), n_unlabeled=n_unlabeled, test_size=ts,
                                val_size=config.val_size, train_budget=config.budget, measured=measured,
                                n_classes=len(set(labels or ())) or 2,
                                timed=bool(getattr(config, "time_budget", None)), rung_params=params,
                                encode_gate=str(getattr(config, "encode_precision", "fp32")) == "auto",
                                vocabulary=_vocabulary(encoder))
    costs = _with_learned(costs, st, cal.machine, cost_key(encoder, mp, cal.device))
    return {r: c for r, c in costs.items() if r in rungs}, cal


def _with_learned(costs: dict[str, RungCost], store: Any, machine: str, key: str) -> dict[str, RungCost]:
    """The calibrated costs of the rungs that train, scaled by the correction learned on this machine
    (:meth:`adaptlab.store.RunStore.learned_cost`); the others, and every cost without one, as they are."""
    learned = store.learned_cost(machine, key) if store is not None else None
    if learned is None:
        return costs
    why = f"x {learned['ratio']:.2f} learned from {learned['runs']} trained run(s) on this machine"
    return {r: (c.scaled(learned["ratio"], why) if c.kind != "cheap" and c.source == "calibrated" else c)
            for r, c in costs.items()}


def study_cost_estimates(config: Any, texts: Sequence[str], labels: Optional[Sequence[str]], *, encoder: Any,
                         n_unlabeled: int = 0, home: Union[str, Path, None] = None,
                         test_size: Optional[float] = None) -> tuple[dict[str, RungCost], str]:
    """Cost estimates for a decision-driven study, as ``Study(cost_estimates=...)`` takes them, and a note.

    :func:`study_rung_costs` for the rungs of ``config``, and a sentence saying where they came from
    (the calibration, costs measured in the run store, a learned correction, a loaded machine). The
    allocator uses an estimate until the rung's first run measures its real cost, and corrects every
    unmeasured rung's estimate by what the measured ones cost against theirs.

    Example:
        >>> costs, note = study_cost_estimates(StudyConfig(rungs=["tfidf", "lora"], budget="60steps"),
        ...                                    ds.texts, ds.labels, encoder=enc)  # doctest: +SKIP
        >>> sorted(costs), note  # doctest: +SKIP
        (['lora', 'tfidf'], 'costed from a 12.1 s calibration on this machine')
    """
    costs, cal = study_rung_costs(config, texts, labels, encoder=encoder, n_unlabeled=n_unlabeled, home=home,
                                  test_size=test_size)
    note = f"costed from a {format_seconds(cal.seconds, 1)} calibration on this machine"
    used = sorted(r for r, c in costs.items() if c.source != "calibrated")
    if used:
        note += f"; {', '.join(used)} from costs measured in the run store"
    learned = next((c.basis.rsplit("; ", 1)[-1] for c in costs.values() if "learned from" in c.basis), None)
    if learned:
        note += f"; trained rungs {learned}"
    if cal.loaded:
        note += f"; {cal.load_note}"
    return costs, note


def cost_the_study(study: Any, data: Any, *, test: Any = None, unlabeled: Any = None) -> Optional[str]:
    """Give a decision-driven :class:`~adaptlab.evaluate.Study` cost estimates for its first runs.

    Estimates it already holds are kept. Returns the note saying where the costs came from, or None when
    every rung is cheap (tfidf, probe: their first seed costs seconds and measures the rest).

    Example:
        >>> study = Study(StudyConfig(rungs=["tfidf", "probe", "finetune"]), time_budget="1h")  # doctest: +SKIP
        >>> cost_the_study(study, ds)  # doctest: +SKIP
        'costed from a 3.1 s calibration on this machine'
    """
    from adaptlab.evaluate.study import adaptive_kind

    if all(adaptive_kind(r) == "cheap" for r in study.rungs):
        return None
    texts, labels, test_size = list(data.texts), list(data.labels), None
    n_unlabeled = len(unlabeled) if unlabeled is not None else 0
    if test is not None:  # a separate test file: the labeled texts are both, the test its share
        texts, labels = texts + list(test.texts), labels + list(test.labels)
        test_size = len(test) / len(texts)
    t0 = time.perf_counter()
    costs, note = study_cost_estimates(study.config, texts, labels, encoder=study.encoder,
                                       n_unlabeled=n_unlabeled, home=study.home, test_size=test_size)
    study.cost_estimates = {**costs, **study.cost_estimates}
    # The calibration is the study's work too: its time budget counts it, as the user's clock does.
    study.spent_before = getattr(study, "spent_before", 0.0) + (time.perf_counter() - t0)
    priors, why = regime_priors(Policy(), n_labels=len(texts), n_unlabeled=n_unlabeled,
                                rungs=[r.name for r in study.rungs if adaptive_kind(r) != "cheap"])
    study.priors = {**priors, **study.priors}
    return note + (f"; {why}" if why else "")


def regime_priors(policy: Policy, *, n_labels: int, n_unlabeled: int, rungs: Sequence[str],
                  offset: float = 0.01) -> tuple[dict[str, float], Optional[str]]:
    """The rule by data size as the allocator's prior: the rung it recommends for these sizes starts ``offset``
    above the others (a nudge to screen it first; its first run replaces the prior), and the sentence
    that says so. Empty when the rule recommends none of ``rungs``.

    Example:
        >>> regime_priors(Policy(), n_labels=5200, n_unlabeled=80_000, rungs=["lora", "refit"])[0]
        {'refit': 0.01}
    """
    rule = policy.regime(n_labels, n_unlabeled)
    if rule is None or rule.recommends not in rungs:
        return {}, None
    return {rule.recommends: offset}, (f"the rule {rule.quoted} ({rule.condition}): {rule.recommends} starts "
                                       f"{offset:+.3f} ahead in the allocator's prior")


# ------------------------------------------------------------------------------- measured costs
def measured_costs(store: Any, *, n_labeled: int, test_size: float = 0.2, encoder_fingerprint: Optional[str] = None,
                   device: Optional[str] = None) -> dict[str, MeasuredCost]:
    """Per-rung costs of the results already in ``store`` (a :class:`adaptlab.store.RunStore`).

    Seconds a seed of tfidf, probe and the refit's head scale with the labeled pool, so they are scaled
    from the stored study's ``n_train_pool`` to this data's; seconds an optimizer step (network rungs, the
    refit's MLM) do not. Results of another encoder than ``encoder_fingerprint``, or of network rungs
    trained on another kind of ``device`` ("cpu" | "gpu") than the plan's, are left out.

    Example:
        >>> measured_costs(store, n_labeled=5200)["tfidf"].source  # doctest: +SKIP
        'measured (5 runs)'
    """
    n_pool = n_labeled * (1 - test_size)
    got: dict[str, list[dict[str, float]]] = {}
    for res, summary in _stored_results(store):
        enc = ((res.get("manifest") or {}).get("rung") or {}).get("encoder")
        if encoder_fingerprint and enc and enc != encoder_fingerprint:
            continue
        sample = _cost_sample(res, summary, n_pool=n_pool, device=device)
        if sample:
            got.setdefault(res["rung"], []).append(sample)
    return {rung: _summarise(samples) for rung, samples in got.items()}


def _stored_results(store: Any) -> Iterator[tuple[dict, dict]]:
    # A result linked to several studies (a re-run reuses it) is counted once.
    seen: set[str] = set()
    for s in store.list_studies():
        summary = store.get_study(s["study_id"]).get("summary") or {}
        for res in store.study_results(s["study_id"]):
            if res["result_key"] not in seen:
                seen.add(res["result_key"])
                yield res, summary


def _cost_sample(res: dict, summary: dict, *, n_pool: float, device: Optional[str]) -> Optional[dict[str, float]]:
    metrics = res.get("metrics") or {}
    cost, diag = metrics.get("cost") or {}, metrics.get("diagnostics") or {}
    fit = cost.get("fit_seconds")
    if not isinstance(fit, (int, float)):
        return None
    if res["rung"] in NETWORK_RUNGS:
        return _network_sample(fit, diag, device)
    split = (res.get("manifest") or {}).get("split") or {}
    pool_then = summary.get("n_train_pool") or (split.get("n_train", 0) + split.get("n_val", 0))
    if not pool_then:
        return None
    scale = n_pool / pool_then
    if rung_facts(res["rung"]).cost_shape != "refit":
        return {"per_seed": float(cost.get("total_seconds", fit)) * scale}
    # The first seed paid the shared refit inside its fit time; later seeds reused it.
    wall = 0.0 if diag.get("reused") else float(diag.get("wall_seconds") or 0.0)
    sample = {"per_seed": max(0.0, fit - wall) * scale}
    # A refit records no device: its MLM timing is trusted for CPU plans only.
    if wall and diag.get("steps") and device in (None, "cpu"):
        sample["step_seconds"] = wall / diag["steps"]
    return sample


def _network_sample(fit: float, diag: dict, device: Optional[str]) -> Optional[dict[str, float]]:
    used = diag.get("budget") or {}
    steps = used.get("steps_used")
    ran_on = str(diag.get("device") or "cpu")
    if not steps or (device is not None and ("cuda" in ran_on) != (device == "gpu")):
        return None
    sample = {"step_seconds": float(used.get("seconds_used") or fit) / steps}
    if diag.get("stopped_by") == "early_stopping" and not used.get("declared"):
        sample["epochs"] = float(sum(s.get("epochs", 0) for s in diag.get("stages") or []))
    return sample


def _summarise(samples: list[dict[str, float]]) -> MeasuredCost:
    def median(key: str) -> Optional[float]:
        vals = [s[key] for s in samples if key in s]
        return float(statistics.median(vals)) if vals else None

    return MeasuredCost(runs=len(samples), per_seed=median("per_seed"), step_seconds=median("step_seconds"),
                        epochs=median("epochs"))


def _open_store(home: Union[str, Path, None]) -> Any:
    # Planning reads a store; it never creates one where none exists.
    if home is None or not (Path(home) / "runs.sqlite").exists():
        return None
    from adaptlab.store import RunStore

    return RunStore(Path(home) / "runs.sqlite")


# ------------------------------------------------------------------------------------------- plan
@dataclass
class PlanItem:
    """One rung of a plan: how many seeds at which fidelity, what they cost, and why.

    ``seeds`` counts the distinct seeds the rung runs, ``full_seeds`` those at the full training budget
    (default: all of them). A network rung screened first has ``fidelity`` < 1: one run at that share of
    its training steps (``screen_steps``), costing ``screen_seconds``, before or instead of full seeds.
    ``cost_source`` says whether the costs are "calibrated" or "measured (N runs)" from the run store.

    Example:
        >>> it = PlanItem("lora", 1, 400.0, 0.0, True, "screen", full_seeds=0, fidelity=0.25, screen_seconds=100.0)
        >>> it.total_seconds
        100.0
    """

    rung: str
    seeds: int
    seconds_per_seed: float
    one_time_seconds: float
    included: bool
    reason: str
    full_seeds: Optional[int] = None
    fidelity: float = 1.0
    screen_seconds: float = 0.0
    screen_steps: Optional[int] = None
    steps_per_seed: Optional[int] = None
    expected_seconds_per_seed: Optional[float] = None
    cost_source: str = "calibrated"
    cost_basis: str = ""

    def __post_init__(self) -> None:
        if self.full_seeds is None:
            self.full_seeds = self.seeds

    @property
    def total_seconds(self) -> float:
        if not self.included:
            return 0.0
        screen = self.screen_seconds if self.fidelity < 1.0 else 0.0
        return self.one_time_seconds + screen + (self.full_seeds or 0) * self.seconds_per_seed


@dataclass
class Plan:
    """Rungs x seeds fitted into a budget; every item says what runs, at which fidelity, and why.

    Example:
        >>> plan = Plan(60.0, "cpu", {}, [PlanItem("tfidf", 5, 2.0, 0.0, True, "5 seeds")])
        >>> plan.total_seconds, plan.rungs
        (10.0, ['tfidf'])
    """

    budget_seconds: float
    device: str
    calibration: dict[str, Any]
    items: list[PlanItem]
    notes: list[str] = field(default_factory=list)
    screen_fidelity: float = DEFAULT_SCREEN_FIDELITY
    train_budget: Optional[str] = None
    max_seeds: int = 5
    eligible: list[str] = field(default_factory=list)  # rungs not left out for a regime reason

    @property
    def total_seconds(self) -> float:
        """Estimated seconds of every item of the plan together."""
        return float(sum(i.total_seconds for i in self.items))

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-safe data, each item with its total seconds."""
        return {"budget_seconds": self.budget_seconds, "device": self.device, "calibration": self.calibration,
                "total_seconds": self.total_seconds, "notes": list(self.notes),
                "screen_fidelity": self.screen_fidelity, "train_budget": self.train_budget,
                "max_seeds": self.max_seeds, "eligible": list(self.eligible),
                "items": [{**asdict(i), "total_seconds": i.total_seconds} for i in self.items]}

    @property
    def rungs(self) -> list[str]:
        """The rungs the plan runs (included items), in plan order."""
        return [i.rung for i in self.items if i.included]

    def commands(self, data: str, unlabeled: Optional[str] = None) -> list[str]:
        """``adaptlab study run`` lines for this plan: the full-fidelity seeds, then the screening runs.

        Example:
            >>> plan = Plan(60.0, "cpu", {}, [PlanItem("tfidf", 5, 2.0, 0.0, True, "5 seeds")])
            >>> plan.commands("train.csv")
            ['adaptlab study run --data train.csv --rungs tfidf --seeds 5']
        """
        full = [i for i in self.items if i.included and i.full_seeds]
        screen = [i for i in self.items if i.included and i.fidelity < 1.0]
        out = []
        if full:
            cmd = (f"adaptlab study run --data {data} --rungs {','.join(i.rung for i in full)} "
                   f"--seeds {min(i.full_seeds or 0 for i in full)}")
            cmd += f" --budget {self.train_budget}" if self.train_budget else ""
            cmd += f" --unlabeled {unlabeled}" if unlabeled and any(_needs_unlabeled(i.rung) for i in full) else ""
            out.append(cmd)
        if screen:
            out.append(f"adaptlab study run --data {data} --rungs {','.join(i.rung for i in screen)} --seeds 1 "
                       f"--budget {self._screen_budget(screen)}")
        return out

    def time_command(self, data: str, unlabeled: Optional[str] = None) -> Optional[str]:
        """The decision-driven ``adaptlab study run --time`` over every eligible rung, with this plan's budget:
        it runs the same rounds, but chooses each next run from the results so far (None: no rung is eligible).

        When the eligible rungs are the ladder a time budget tries by default, ``--rungs`` is left out.

        Example:
            >>> plan = Plan(5400.0, "cpu", {}, [], max_seeds=3, eligible=["tfidf", "probe", "finetune"])
            >>> plan.time_command("train.csv")
            'adaptlab study run --data train.csv --rungs tfidf,probe,finetune --seeds 3 --time 90min'
        """
        from adaptlab.rungs.ladder import default_rungs

        rungs = [r for r in self.eligible if unlabeled or not _needs_unlabeled(r)]
        if not rungs or self.time_command_note is not None:
            return None
        secs = self.budget_seconds
        when = f"{secs / 3600:g}h" if secs % 3600 == 0 else f"{secs / 60:g}min" if secs % 60 == 0 else f"{secs:g}s"
        named = "" if rungs == default_rungs(timed=True, unlabeled=bool(unlabeled)) else f" --rungs {','.join(rungs)}"
        # The user's --seeds as given: never raised behind their back (time_command_note says when it is short).
        cmd = f"adaptlab study run --data {data}{named} --seeds {self.max_seeds} --time {when}"
        cmd += f" --budget {self.train_budget}" if self.train_budget else ""
        cmd += f" --screen-fidelity {self.screen_fidelity:g}" if self.screen_fidelity != DEFAULT_SCREEN_FIDELITY else ""
        return cmd + (f" --unlabeled {unlabeled}" if unlabeled and any(map(_needs_unlabeled, rungs)) else "")

    @property
    def time_command_note(self) -> Optional[str]:
        """Why there is no :meth:`time_command`, when the plan's seeds are too few for a decision-driven study
        (it needs :data:`TIME_MIN_SEEDS` full-budget seeds of the rung it picks); None when there is one.

        Example:
            >>> Plan(5400.0, "cpu", {}, [], max_seeds=2, eligible=["tfidf"]).time_command_note
            'no --time command: ... at least 3 seeds of the rung it picks and this plan has --seeds 2; plan with --seeds 3 ...'
        """
        if self.max_seeds >= TIME_MIN_SEEDS:
            return None
        return (f"no --time command: a decision-driven study needs at least {TIME_MIN_SEEDS} seeds of the rung it "
                f"picks and this plan has --seeds {self.max_seeds}; plan with --seeds {TIME_MIN_SEEDS} to get one")

    def _screen_budget(self, screen: list[PlanItem]) -> str:
        # The study's budget is one for all its network rungs, so the screen gets one too.
        tb = Budget.parse(self.train_budget)
        if tb is not None and tb.seconds is not None:
            return f"{max(1, round(self.screen_fidelity * tb.seconds))}s"
        return f"{max(i.screen_steps or 1 for i in screen)}steps"


# The fewest seeds a decision-driven study (`--time`) takes: the decision rule's min_seeds of the rung it picks
# (StudyConfig refuses fewer).
TIME_MIN_SEEDS = 3


class _Purse:
    """The seconds left of a budget."""

    def __init__(self, seconds: float) -> None:
        self.left = float(seconds)

    def take(self, seconds: float) -> bool:
        if seconds > self.left + 1e-9:
            return False
        self.left -= seconds
        return True


def _needs_unlabeled(rung: str) -> bool:
    return rung_facts(rung).needs_unlabeled


def _kind(rung: str) -> str:
    return _rung_kind(rung)


def _as_cost(rung: str, cost: Union[RungCost, tuple[float, float]]) -> RungCost:
    if isinstance(cost, RungCost):
        return cost
    one, per = cost
    return RungCost(_kind(rung), float(one), float(per))


def _check_plan_args(max_seeds: int, screen_fidelity: float) -> None:
    if isinstance(max_seeds, bool) or not isinstance(max_seeds, int) or max_seeds < 1:
        raise ConfigError.invalid("--seeds", max_seeds, "an integer >= 1 (the study's seeds)")
    if isinstance(screen_fidelity, bool) or not isinstance(screen_fidelity, (int, float)) \
            or not 0.0 < screen_fidelity <= 1.0:
        raise ConfigError.invalid("--screen-fidelity", screen_fidelity,
                                  "a share of the training budget in (0, 1], e.g. 0.25")


def make_plan(
    costs: dict[str, Union[RungCost, tuple[float, float]]],
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
    screen_fidelity: float = DEFAULT_SCREEN_FIDELITY,
    train_budget: Optional[str] = None,
) -> Plan:
    """Fill ``budget_seconds`` in a budgeted study's rounds; every item says what runs and why.

    1. tfidf and probe (seconds a seed) get all ``max_seeds`` seeds;
    2. every other rung that fits gets ONE screening run before any of them gets a second seed: a
       network rung at ``screen_fidelity`` of its training steps, the refit its shared refit + a head;
       the rung the rule by data size recommends first, then the cheapest;
    3. screened rungs are promoted to ``policy.min_seeds`` full-fidelity seeds in the same order, then
       extra seeds up to ``max_seeds`` go round-robin, cheapest first.

    Rungs in ``forced`` (named by the user) are never skipped for a regime reason, only for the budget.
    ``costs`` holds :class:`RungCost` or (one-time, per-seed) pairs.

    Example:
        >>> plan = make_plan({"tfidf": (0, 2), "probe": (10, 1), "finetune": (0, 400)}, 300, device="cpu",
        ...                  n_labels=5000)
        >>> [(i.rung, i.seeds, i.full_seeds, i.fidelity) for i in plan.items]
        [('tfidf', 5, 5, 1.0), ('probe', 5, 5, 1.0), ('finetune', 1, 0, 0.25)]
    """
    _check_plan_args(max_seeds, screen_fidelity)
    p = policy or Policy()
    rc = {r: _as_cost(r, c) for r, c in costs.items()}
    wanted = [r for r in (rungs or planned_by_default()) if r in rc]  # static only when named
    items = {r: _empty_item(r, rc[r]) for r in wanted}
    regime = p.regime(n_labels, n_unlabeled, True if device == "gpu" else None)
    purse = _Purse(budget_seconds)
    eligible = [r for r in wanted if not _skip_for_regime(items[r], p, n_labels, n_unlabeled, forced)]
    _fill_cheap([r for r in eligible if rc[r].kind == "cheap"], items, rc, purse, max_seeds)
    first = regime.recommends if regime is not None else None
    order = sorted((r for r in eligible if rc[r].kind != "cheap"),
                   key=lambda r: (r != first, rc[r].one_time + rc[r].run_seconds(screen_fidelity)))
    screened = _fill_screens(order, items, rc, purse, screen_fidelity)
    _fill_full_seeds(screened, items, rc, purse, min(p.min_seeds, max_seeds), max_seeds)
    notes = [] if first is None else [f"The rule {regime.quoted} ({regime.condition}): {first} " + (
        "is not among the rungs planned." if first not in items else
        "is one of the cheap rungs: all its seeds first." if rc[first].kind == "cheap"
        else "is screened and promoted first.")]
    if not any(i.included for i in items.values()):
        notes.append("nothing fits the budget, not even one screening run; raise the budget or subsample the data.")
    return Plan(budget_seconds=budget_seconds, device=device, calibration=calibration.to_dict() if calibration else {},
                items=[items[r] for r in wanted], notes=notes, screen_fidelity=screen_fidelity,
                train_budget=train_budget, max_seeds=max_seeds, eligible=eligible)


def _empty_item(rung: str, c: RungCost) -> PlanItem:
    return PlanItem(rung, 0, c.per_seed, c.one_time, False, "", full_seeds=0, steps_per_seed=c.steps if
                    c.kind == "network" else None, expected_seconds_per_seed=c.expected_per_seed,
                    cost_source=c.source, cost_basis=c.basis)


def _skip_for_regime(it: PlanItem, p: Policy, n_labels: Optional[int], n_unlabeled: Optional[int],
                     forced: Sequence[str]) -> bool:
    f = rung_facts(it.rung)
    if f.needs_unlabeled and not n_unlabeled:
        it.reason = f"no unlabeled in-domain texts: nothing to {it.rung} on"
    elif (it.rung in NETWORK_RUNGS and not f.few_labels_ok and n_labels is not None and n_labels < p.few_labels
          and it.rung not in forced):
        # A rung made for few labels (setfit) is the exception the switch rules make (pairs multiply them).
        it.reason = (f"{n_labels} labels < {p.few_labels:,}: the rule {p.rule('regime.few-labels').quoted} "
                     "(too little signal to adapt it)")
    return bool(it.reason)


def _fill_cheap(cheap: list[str], items: dict[str, PlanItem], rc: dict[str, RungCost], purse: _Purse,
                max_seeds: int) -> None:
    # Seed by seed across the cheap rungs, so a tight budget leaves none of them without a seed.
    for k in range(max_seeds):
        for r in cheap:
            c, it = rc[r], items[r]
            if it.full_seeds == k and purse.take(c.per_seed + (c.one_time if k == 0 else 0.0)):
                it.full_seeds = k + 1
    for r in cheap:
        c, it = rc[r], items[r]
        n = it.full_seeds or 0
        if n == 0:
            it.reason = (f"one seed needs ~{_secs(c.one_time + c.per_seed)}, more than the "
                         f"{_secs(max(purse.left, 0))} left")
            continue
        it.included, it.seeds = True, n
        once = f" + {_secs(c.one_time)} once" if c.one_time > 1 else ""
        short = "" if n == max_seeds else f" (of {max_seeds}: no more fit)"
        it.reason = f"cheap, so all its seeds first: {_seeds(n)}{short} × {_secs(c.per_seed)}{once}"


def _fill_screens(order: list[str], items: dict[str, PlanItem], rc: dict[str, RungCost], purse: _Purse,
                  fidelity: float) -> list[str]:
    screened = []
    for r in order:
        c, it = rc[r], items[r]
        f = fidelity if c.kind == "network" else 1.0
        need = c.one_time + c.run_seconds(f)
        if not purse.take(need):
            it.reason = (f"one screening run{_at(c, f)} needs ~{_secs(need)}, more than the "
                         f"{_secs(max(purse.left, 0))} left")
            continue
        it.included, it.seeds = True, 1
        if f < 1.0:
            it.fidelity, it.screen_seconds, it.screen_steps = f, c.run_seconds(f), c.fidelity_steps(f)
        else:
            it.full_seeds = 1
        screened.append(r)
    return screened


def _at(c: RungCost, f: float) -> str:
    if c.kind != "network" or f >= 1.0:
        return ""
    return f" at {f:.0%} of its training ({c.fidelity_steps(f)} of {c.steps} steps)"


def _fill_full_seeds(screened: list[str], items: dict[str, PlanItem], rc: dict[str, RungCost], purse: _Purse,
                     min_seeds: int, max_seeds: int) -> None:
    promoted, held = [], {}
    for r in screened:
        c, it = rc[r], items[r]
        need = max(0, min_seeds - (it.full_seeds or 0)) * c.per_seed
        if purse.take(need):
            it.full_seeds = max(it.full_seeds or 0, min_seeds)
            promoted.append(r)
        else:
            held[r] = (f"not promoted: {min_seeds} full seeds need ~{_secs(need)} more than the "
                       f"{_secs(max(purse.left, 0))} left; the screen shows whether it is worth a bigger budget")
    more = True
    while more:  # extra seeds round-robin, cheapest first: tighter bands where they are cheap
        more = False
        for r in sorted(promoted, key=lambda r: rc[r].per_seed):
            if (items[r].full_seeds or 0) < max_seeds and purse.take(rc[r].per_seed):
                items[r].full_seeds = (items[r].full_seeds or 0) + 1
                more = True
    for r in screened:
        items[r].seeds = max(1, items[r].full_seeds or 0)
        items[r].reason = _screened_reason(items[r], rc[r], held.get(r))


def _secs(seconds: float) -> str:
    # Heads and TF-IDF take fractions of a second on small data; "0 s" would read as free.
    return format_seconds(seconds, digits=1 if seconds < 10 else 0)


def _seeds(n: int) -> str:
    return f"{n} seed{'' if n == 1 else 's'}"


def _screened_reason(it: PlanItem, c: RungCost, held: Optional[str]) -> str:
    parts = []
    if it.fidelity < 1.0:
        parts.append(f"screen: 1 run{_at(c, it.fidelity)}, {_secs(it.screen_seconds)}, before any rung "
                     "gets a second seed")
    if c.kind == "shared":
        parts.append(f"shared refit {_secs(c.one_time)} once, then {_seeds(it.full_seeds or 0)} × "
                     f"{_secs(c.per_seed)} (a head each)")
    elif it.full_seeds:
        parts.append(f"then {_seeds(it.full_seeds)} at full fidelity × {_secs(c.per_seed)}")
    if held:
        parts.append(held)
    if c.kind == "network":
        parts.append(f"a full seed is {c.basis}")
        exp = c.expected_per_seed
        if exp is not None and exp < c.per_seed:
            parts.append(f"~{_secs(exp)} a full seed expected, {_secs(c.per_seed)} at most")
    return "; ".join(parts)


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
    train_budget: Union[str, Budget, None] = None,
    seeds: int = 5,
    screen_fidelity: float = DEFAULT_SCREEN_FIDELITY,
    home: Union[str, Path, None] = None,
    store: Any = None,
    precision: str = "fp32",
    mixed_precision: str = "auto",
) -> Plan:
    """Calibrate on a few of ``texts``, cost each rung, and fit rungs x seeds into ``budget``.

    ``train_budget`` is the study's network-rung budget (``study run --budget``), so the plan costs
    exactly what that study would run; ``precision`` is its frozen encoder's path (``--precision``). Costs of results already in ``store`` (or the run store under
    ``home``) replace the calibrated ones for their rungs.

    Example:
        >>> plan = plan_study(ds.texts, ds.labels, "2 CPU hours", encoder=enc, home="adaptlab-runs")  # doctest: +SKIP
        >>> plan.rungs, plan.items[0].cost_source  # doctest: +SKIP
        (['tfidf', 'probe', 'refit'], 'measured (5 runs)')
    """
    seconds, device = parse_budget(budget)
    tb = parse_train_budget(train_budget)
    _check_plan_args(seeds, screen_fidelity)
    from adaptlab.rungs.runtime import resolve_mixed_precision

    # The training rungs' precision as the study will resolve it (the study's default is auto).
    mp = "bf16" if resolve_mixed_precision(mixed_precision)[0] == "bf16" else "no"
    cal = calibrate(encoder, texts, labels, precision=precision, mixed_precision=mp)
    speed = gpu_speedup if (device == "gpu" and cal.device == "cpu") else 1.0
    st = store if store is not None else _open_store(home)
    measured = {} if st is None else measured_costs(
        st, n_labeled=len(texts), test_size=test_size, encoder_fingerprint=getattr(encoder, "fingerprint", None),
        device=device)
    costs = estimate_rung_costs(cal, n_labeled=len(texts), n_unlabeled=n_unlabeled, test_size=test_size,
                                val_size=val_size, speedup=speed, train_budget=tb, measured=measured,
                                n_classes=len(set(labels or ())) or 2, timed=True, vocabulary=_vocabulary(encoder))
    if speed == 1.0:  # a correction learned on this CPU says nothing of an assumed GPU
        costs = _with_learned(costs, st, cal.machine, cost_key(encoder, cal.mixed_precision, cal.device))
    from adaptlab.rungs import RUNGS

    available = [r for r in (rungs or planned_by_default()) if r in RUNGS]
    plan = make_plan(costs, seconds, device=device, calibration=cal, rungs=available, n_labels=len(texts),
                     n_unlabeled=n_unlabeled, policy=policy, forced=list(rungs or ()), max_seeds=seeds,
                     screen_fidelity=screen_fidelity, train_budget=_budget_flag(tb))
    plan.notes += _study_notes(rungs, cal, speed, tb, measured, available)
    for it in plan.items:
        if rung_info(it.rung)["needs_engineer"] and it.included:
            it.reason += "; needs an engineer to rerun"
    return plan


def planned_by_default() -> list[str]:
    """The rungs ``adaptlab plan`` considers without ``--rungs``: the ladder a time budget offers, each with the
    reason it is left out (no unlabeled texts, too few labels); a rung offered only when named (``static``) is
    planned only when named.

    Example:
        >>> "static" in planned_by_default(), planned_by_default()[:2]
        (False, ['tfidf', 'probe'])
    """
    return [f.name for f in LADDER_FACTS if f.default != "never"]


def _vocabulary(encoder: Any) -> Optional[int]:
    # The tokenizer entries a distillation encodes (a bf16 / int8 variant distils from its fp32 base).
    tokenizer = getattr(getattr(encoder, "base", None) or encoder, "tokenizer", None)
    try:
        return len(tokenizer) if tokenizer is not None else None
    except TypeError:
        return None


def _budget_flag(budget: Optional[Budget]) -> Optional[str]:
    # As `study run --budget` takes it (str(Budget) has a space, which a shell would split).
    if budget is None:
        return None
    return f"{budget.steps}steps" if budget.steps is not None else f"{budget.seconds:g}s"


def _study_notes(rungs: Optional[Sequence[str]], cal: Calibration, speed: float, tb: Optional[Budget],
                 measured: dict[str, MeasuredCost], available: list[str]) -> list[str]:
    from adaptlab.rungs import RUNGS

    notes = []
    missing = [r for r in (rungs or LADDER) if r not in RUNGS]
    if missing:
        notes.append(f"not available in this version, so not planned: {', '.join(missing)}.")
    named_only = [f.name for f in LADDER_FACTS if f.default == "never" and f.name not in available]
    if rungs is None and named_only:
        notes.append(f"planned only when named (--rungs ...,{named_only[0]}): {', '.join(named_only)}.")
    notes.append(f"calibrated on {cal.device} in {cal.seconds:.1f} s: encode {cal.encode_per_text * 1000:.1f} ms/text, "
                 f"training step {cal.train_step:.2f} s per {cal.batch_size} texts of this data.")
    if cal.loaded:
        notes.append(f"{cal.load_note}.")
    used = {r: m for r, m in measured.items() if r in available}
    if used:
        notes.append("costs from the run store: " + ", ".join(f"{r} {m.source}" for r, m in used.items()) + ".")
    if speed != 1.0:
        notes.append(f"the budget names a GPU but this machine has none: encoder work is assumed {speed:g}× faster "
                     "there (--gpu-speedup); calibrate on the GPU machine for a measured plan.")
    if tb is None and any(r in NETWORK_RUNGS for r in available):
        notes.append("no --train-budget: network rungs are costed at max_epochs (the upper bound) with an expected "
                     "figure for early stopping; pass the study's --budget as --train-budget to cost exactly its "
                     "steps.")
    return notes
