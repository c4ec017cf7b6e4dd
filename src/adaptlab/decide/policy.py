"""The decision policy as data: the rules by data size, the switch rules and every threshold, in one place.

Every number the decision engine compares against lives in :class:`Policy` (a frozen dataclass a user
can override from a JSON/TOML file or keyword arguments). Every rule is a :class:`Rule` record that
names the policy fields it reads, is titled by what it says ("Under 1,000 labels, keep the encoder
frozen"), states its condition in words (with the current values filled in), says why it holds and
refers to its sources in :data:`adaptlab.decide.references.REFERENCES` (the report's references table). The engine evaluates rules through :func:`evaluate_rules`, so
there is no threshold hidden in an ``if`` elsewhere.

Example:
    >>> policy = Policy(margin=0.03)
    >>> policy.regime(n_labels=5200, n_unlabeled=80000).recommends
    'refit'
    >>> [r.id for r in policy.rules() if r.kind == "switch"]
    ['switch.labels-lora', 'switch.setfit-few-labels', 'switch.rare-slice', 'switch.mmd-skip-refit', 'switch.refit-slow']
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from adaptlab.errors import ConfigError
from adaptlab.rungs.ladder import LABEL_TRAINED_ENCODER, LADDER  # noqa: F401  (part of the policy's vocabulary)
from adaptlab.rungs.ladder import facts as rung_facts

# The ladder's order and which rungs train encoder weights from the labels (the overfitting risk behind
# the rule "Training the encoder must not score below keeping it frozen") live with the other per-rung
# facts in the rung catalogue, adaptlab.rungs.ladder.
SCRATCH = LADDER[0]


@dataclass(frozen=True)
class Policy:
    """Every threshold the decision uses. Override any field: ``Policy(margin=0.03)`` or a JSON/TOML file.

    Example:
        >>> Policy().margin, Policy().ship_threshold, Policy().min_seeds
        (0.02, 0.8, 3)
        >>> Policy.from_dict({"margin": 0.05}).margin
        0.05
    """

    margin: float = field(default=0.02, metadata={
        "help": "a more adapted rung must beat every simpler rung by at least this much (F1, absolute)"})
    ship_threshold: float = field(default=0.80, metadata={
        "help": "the chosen rung ships only if its seed-mean F1 reaches this"})
    min_seeds: int = field(default=3, metadata={
        "help": "fewer seeds than this and a rung cannot win: one run is a draw, not a measurement"})
    alpha: float = field(default=0.05, metadata={"help": "two-sided level of every confidence interval"})
    power: float = field(default=0.80, metadata={
        "help": "power used to size the extra test items that would resolve a margin-sized difference"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap replicates of paired comparisons"})
    boot_seed: int = field(default=0, metadata={"help": "seed of the paired bootstrap"})
    # rules by data size (label counts are labeled training examples, i.e. the train+validation pool)
    few_labels: int = field(default=1_000, metadata={
        "help": "below this many labels: freeze the encoder, train a head (probe)"})
    adapter_labels: int = field(default=10_000, metadata={
        "help": "from this many labels: adapters (LoRA) can specialise without wiping the base"})
    full_ft_labels: int = field(default=100_000, metadata={
        "help": "above this many labels (and with compute): full fine-tuning is justified"})
    refit_min_unlabeled: int = field(default=10_000, metadata={
        "help": "unlabeled in-domain texts needed for an MLM refit to move the representation"})
    # switch rules
    lora_switch_labels: int = field(default=15_000, metadata={
        "help": "once labels reach this, try LoRA adapters; full freeze may no longer be optimal"})
    setfit_max_labels: int = field(default=1_000, metadata={
        "help": "below this many labels, also try setfit (contrastive tuning on label pairs): few labels give "
                "many pairs, so they can move the encoder where a softmax fine-tune would overfit"})
    rare_slice_max_share: float = field(default=0.10, metadata={
        "help": "a slice is rare when it holds at most this share of the test items"})
    rare_slice_min_gap: float = field(default=0.10, metadata={
        "help": "a rare slice is failing when its F1 is at least this far below the overall F1"})
    rare_slice_error_ratio: float = field(default=2.0, metadata={
        "help": "errors are concentrated when the slice's share of errors is at least this multiple of its share of items"})
    rare_slice_min_items: int = field(default=5, metadata={
        "help": "slices with fewer test items are too small to judge"})
    mmd_p_value: float = field(default=0.05, metadata={
        "help": "MMD permutation p-value at or above which the refit did not move the representation"})
    refit_max_hours: float = field(default=48.0, metadata={
        "help": "a refit slower than this makes every scheduled rerun a job for an engineer"})
    # the retrain's label check (adaptlab retrain; confident learning on old + new labels)
    label_noise_ratio: float = field(default=3.0, metadata={
        "help": "a retrain is held when the share of its new labels flagged as likely wrong is at least this "
                "multiple of the share flagged among the labels the model was trained on"})
    label_noise_min: float = field(default=0.10, metadata={
        "help": "... and at least this share of the new labels (below it, a batch is never held)"})
    label_noise_min_rows: int = field(default=5, metadata={
        "help": "... and at least this many new rows are flagged (fewer cannot be told from chance)"})
    # the retrain gate's calibration check (adaptlab retrain; expected calibration error on the sealed texts)
    max_ece_increase: float = field(default=0.05, metadata={
        "help": "a retrained version is kept out when its expected calibration error on the sealed texts is "
                "more than this above the version in use's (its confidences got much less trustworthy)"})
    ece_min_texts: int = field(default=100, metadata={
        "help": "... judged only on at least this many sealed texts (ECE on fewer is mostly noise)"})

    def __post_init__(self) -> None:
        for name in ("margin", "rare_slice_min_gap"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v < 1.0):
                raise ConfigError.invalid(f"policy.{name}", v, "an F1 difference in [0, 1), e.g. 0.02")
        for name in ("ship_threshold", "rare_slice_max_share"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 < v <= 1.0):
                raise ConfigError.invalid(f"policy.{name}", v, "a number in (0, 1]")
        for name in ("alpha", "power", "mmd_p_value"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 < v < 1.0):
                raise ConfigError.invalid(f"policy.{name}", v, "a probability strictly between 0 and 1")
        for name in ("min_seeds", "few_labels", "adapter_labels", "full_ft_labels", "refit_min_unlabeled",
                     "lora_switch_labels", "setfit_max_labels", "rare_slice_min_items", "boot_seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if name == "min_seeds" else 0):
                raise ConfigError.invalid(f"policy.{name}", v, "a non-negative integer" if name != "min_seeds"
                                          else "an integer >= 1, e.g. 3")
        if not isinstance(self.n_boot, int) or self.n_boot < 200:
            raise ConfigError.invalid("policy.n_boot", self.n_boot, "an integer >= 200")
        if not (self.few_labels <= self.adapter_labels <= self.full_ft_labels):
            raise ConfigError.invalid(
                "policy.few_labels/adapter_labels/full_ft_labels",
                (self.few_labels, self.adapter_labels, self.full_ft_labels), "increasing label counts")
        if not (isinstance(self.rare_slice_error_ratio, (int, float)) and self.rare_slice_error_ratio >= 1.0):
            raise ConfigError.invalid("policy.rare_slice_error_ratio", self.rare_slice_error_ratio, "a number >= 1")
        if not (isinstance(self.refit_max_hours, (int, float)) and self.refit_max_hours > 0):
            raise ConfigError.invalid("policy.refit_max_hours", self.refit_max_hours, "a positive number of hours")
        if not (isinstance(self.label_noise_ratio, (int, float)) and self.label_noise_ratio >= 1.0):
            raise ConfigError.invalid("policy.label_noise_ratio", self.label_noise_ratio, "a number >= 1, e.g. 3")
        if not (isinstance(self.label_noise_min, (int, float)) and 0.0 <= self.label_noise_min < 1.0):
            raise ConfigError.invalid("policy.label_noise_min", self.label_noise_min, "a share in [0, 1), e.g. 0.10")
        if (not isinstance(self.label_noise_min_rows, int) or isinstance(self.label_noise_min_rows, bool)
                or self.label_noise_min_rows < 1):
            raise ConfigError.invalid("policy.label_noise_min_rows", self.label_noise_min_rows, "an integer >= 1")
        if (isinstance(self.max_ece_increase, bool) or not isinstance(self.max_ece_increase, (int, float))
                or not 0.0 <= self.max_ece_increase <= 1.0):
            raise ConfigError.invalid("policy.max_ece_increase", self.max_ece_increase, "an ECE difference in [0, 1], "
                                      "e.g. 0.05")
        if not isinstance(self.ece_min_texts, int) or isinstance(self.ece_min_texts, bool) or self.ece_min_texts < 0:
            raise ConfigError.invalid("policy.ece_min_texts", self.ece_min_texts, "a non-negative integer, e.g. 100")

    # construction ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> "Policy":
        """A policy from a dict of keys; an unknown key is a ConfigError naming the allowed ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"unknown policy field(s) {unknown}; allowed: {sorted(known)}.")
        return cls(**params)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "Policy":
        """Read a policy from JSON or TOML (a top-level table, or a ``[policy]`` table); kwargs win.

        Example:
            >>> import tempfile, os
            >>> p = os.path.join(tempfile.mkdtemp(), "policy.toml")
            >>> _ = open(p, "w").write("[policy]\\nmargin = 0.03\\n")
            >>> Policy.from_file(p).margin
            0.03
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"policy file {path} does not exist; pass a JSON or TOML file with fields of Policy.")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"cannot parse the policy file {path}: {exc}. Use JSON or TOML (.toml).") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"the policy file {path} must hold a table of fields, e.g. {{\"margin\": 0.02}}.")
        if isinstance(data.get("policy"), dict):
            data = data["policy"]
        return cls.from_dict({**data, **overrides})

    def replace(self, **overrides: Any) -> "Policy":
        """A copy with ``overrides`` applied (checked like any policy)."""
        return self.from_dict({**self.to_dict(), **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Every key with its value."""
        return dataclasses.asdict(self)

    @staticmethod
    def help() -> dict[str, str]:
        """The help text of every policy key, by key."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(Policy)}

    # rules --------------------------------------------------------------------------------------
    def rules(self) -> list["Rule"]:
        """Every rule with this policy's thresholds filled in."""
        return [spec.bind(self) for spec in RULE_SPECS]

    def rule(self, rule_id: str) -> "Rule":
        """The rule with id ``rule_id`` (KeyError if there is none)."""
        for r in self.rules():
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def regime(self, n_labels: Optional[int], n_unlabeled: Optional[int] = None,
               has_compute: Optional[bool] = None) -> Optional["Rule"]:
        """The regime-table row that matches the data sizes (None when the label count is unknown)."""
        if n_labels is None:
            return None
        facts = Facts(n_labels=n_labels, n_unlabeled=n_unlabeled, has_compute=has_compute)
        for r in self.rules():
            if r.kind == "regime" and r.applies(facts):
                return r
        return None  # unreachable with increasing thresholds; kept for custom rule lists


@dataclass
class Facts:
    """What rules are evaluated on: sizes, diagnostics and slice results, all optional.

    Example:
        >>> from adaptlab.decide import Facts, Policy, evaluate_rules
        >>> facts = Facts(n_labels=300, n_unlabeled=50_000, has_compute=False)
        >>> [rule.id for rule, _ in evaluate_rules(Policy(), facts)]
        ['regime.few-labels', 'switch.setfit-few-labels']
    """

    n_labels: Optional[int] = None
    n_unlabeled: Optional[int] = None
    has_compute: Optional[bool] = None
    mmd_p_value: Optional[float] = None
    mmd: Optional[float] = None
    refit_hours: Optional[float] = None
    slices: list[dict[str, Any]] = field(default_factory=list)
    overall_f1: Optional[float] = None
    rungs_run: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """One rule of the policy: what it says (``title``), a condition on the evidence, the action it
    recommends, why it holds (``evidence``) and its sources (keys of
    :data:`~adaptlab.decide.references.REFERENCES`, which only the report's references table prints).

    ``thresholds`` maps the :class:`Policy` fields this rule reads to their values, so a report can
    print exactly which numbers the decision used.

    Example:
        >>> from adaptlab.decide import Policy, Rule
        >>> rule = next(r for r in Policy().rules() if r.id == "switch.labels-lora")
        >>> isinstance(rule, Rule), rule.kind, rule.thresholds
        (True, 'switch', {'lora_switch_labels': 15000})
        >>> rule.title
        'Labels grew to 15,000 or more: try adapters (LoRA)'
    """

    id: str
    kind: str  # "regime" (by data size) | "switch" | "decision"
    condition: str
    action: str
    thresholds: dict[str, Any]
    evidence: str
    recommends: Optional[str] = None
    check: Optional[Callable[["Facts", "Policy"], Any]] = field(default=None, repr=False, compare=False)
    policy: Optional[Policy] = field(default=None, repr=False, compare=False)
    title: str = ""
    sources: tuple[str, ...] = ()

    def applies(self, facts: Facts) -> Any:
        """Whether the rule fires; truthy results may carry details (e.g. the failing slices)."""
        if self.check is None or self.policy is None:
            return False
        return self.check(facts, self.policy)

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON-safe data (without its check function)."""
        from adaptlab.decide.references import cite

        return {"id": self.id, "title": self.title, "kind": self.kind, "condition": self.condition,
                "action": self.action, "thresholds": dict(self.thresholds), "evidence": self.evidence,
                "recommends": self.recommends, "sources": list(self.sources), "cite": cite(self.sources)}

    @property
    def quoted(self) -> str:
        """The rule as a reason names it: its title in quotes (its id when it has no title)."""
        return f'"{self.title}"' if self.title else self.id


@dataclass(frozen=True)
class RuleSpec:
    """A rule before a policy fills in its thresholds (the templates use ``{field}``)."""

    id: str
    kind: str
    fields: tuple[str, ...]
    condition: str
    action: str
    evidence: str
    recommends: Optional[str]
    check: Callable[[Facts, Policy], Any]
    title: str = ""
    sources: tuple[str, ...] = ()

    def bind(self, policy: Policy) -> Rule:
        values = {f: getattr(policy, f) for f in self.fields}
        fmt = {k: (f"{v:,}" if isinstance(v, int) else f"{v:g}") for k, v in values.items()}
        return Rule(id=self.id, kind=self.kind, condition=self.condition.format(**fmt),
                    action=self.action.format(**fmt), thresholds=values, evidence=self.evidence,
                    recommends=self.recommends, check=self.check, policy=policy,
                    title=self.title.format(**fmt), sources=self.sources)


def _plenty_unlabeled(f: Facts, p: Policy) -> bool:
    return f.n_unlabeled is not None and f.n_unlabeled >= p.refit_min_unlabeled


def rare_failing_slices(slices: list[dict[str, Any]], overall_f1: Optional[float], p: Policy) -> list[dict[str, Any]]:
    """Slices that are rare, big enough to judge, far below the overall F1 and hold a concentrated share of errors.

    Each slice dict needs ``n`` (test items), ``share`` (of test items), ``f1`` and ``error_share``
    (share of all test errors that fall in the slice).
    """
    if overall_f1 is None:
        return []
    out = []
    for s in slices:
        share, err_share = s.get("share"), s.get("error_share")
        if share is None or err_share is None or s.get("f1") is None:
            continue
        if (s.get("n", 0) >= p.rare_slice_min_items and share <= p.rare_slice_max_share
                and overall_f1 - s["f1"] >= p.rare_slice_min_gap
                and err_share >= p.rare_slice_error_ratio * share):
            out.append(s)
    return sorted(out, key=lambda s: s["f1"])


def noisy_new_labels(new_rate: float, old_rate: float, n_flagged_new: int, p: Policy) -> bool:
    """Whether a retrain's new labels are flagged far more often than the old ones (the batch is held).

    Example:
        >>> noisy_new_labels(0.40, 0.02, 80, Policy()), noisy_new_labels(0.05, 0.01, 10, Policy())
        (True, False)
    """
    return (n_flagged_new >= p.label_noise_min_rows and new_rate >= p.label_noise_min
            and new_rate >= p.label_noise_ratio * old_rate)


RULE_SPECS: list[RuleSpec] = [
    # ---- by data size: labels (and unlabeled texts, compute) -> the first rung worth trying ----
    RuleSpec(
        "regime.few-labels", "regime", ("few_labels",),
        "labels < {few_labels}", "freeze the pretrained encoder and train a linear head (probe)",
        "too few labels to adapt the encoder without overfitting to them", "probe",
        lambda f, p: f.n_labels is not None and f.n_labels < p.few_labels,
        title="Under {few_labels} labels, keep the encoder frozen", sources=("reuse-or-retrain",)),
    RuleSpec(
        "regime.refit", "regime", ("few_labels", "adapter_labels", "refit_min_unlabeled"),
        "{few_labels} <= labels < {adapter_labels} and >= {refit_min_unlabeled} unlabeled in-domain texts",
        "MLM-refit the encoder on the unlabeled texts, then freeze it and train a linear head (refit)",
        "unlabeled in-domain text moves the representation towards the domain without overfitting to the labels",
        "refit",
        lambda f, p: f.n_labels is not None and p.few_labels <= f.n_labels < p.adapter_labels and _plenty_unlabeled(f, p),
        title="{few_labels} to {adapter_labels} labels with {refit_min_unlabeled}+ unlabeled texts: refit the "
              "encoder on them", sources=("reuse-or-retrain",)),
    RuleSpec(
        "regime.moderate-no-unlabeled", "regime", ("few_labels", "adapter_labels", "refit_min_unlabeled"),
        "{few_labels} <= labels < {adapter_labels} and fewer than {refit_min_unlabeled} unlabeled in-domain texts",
        "freeze the encoder and train a linear head (probe); a refit has too little text to move the representation",
        "a refit needs plenty of unlabeled in-domain text; without it the frozen encoder is the sound start", "probe",
        lambda f, p: f.n_labels is not None and p.few_labels <= f.n_labels < p.adapter_labels and not _plenty_unlabeled(f, p),
        title="{few_labels} to {adapter_labels} labels and little unlabeled text: keep the encoder frozen",
        sources=("reuse-or-retrain",)),
    RuleSpec(
        "regime.adapters", "regime", ("adapter_labels", "full_ft_labels"),
        "{adapter_labels} <= labels <= {full_ft_labels}, or more labels without the compute for a full fine-tune",
        "fine-tune small adapters end to end (lora); adapter layers can specialise without wiping the base",
        "adapters specialise with few trainable weights and leave the pretrained base intact: the smallest "
        "adaptation that works comes before partial or full unfreezing", "lora",
        lambda f, p: f.n_labels is not None and (p.adapter_labels <= f.n_labels <= p.full_ft_labels
                                                 or (f.n_labels > p.full_ft_labels and f.has_compute is False)),
        title="{adapter_labels} labels or more: train adapters (LoRA)", sources=("reuse-or-retrain", "transfer")),
    RuleSpec(
        "regime.full-finetune", "regime", ("full_ft_labels",),
        "labels > {full_ft_labels} and compute for it",
        "full fine-tune (finetune), still compared against a simpler reuse baseline",
        "enough labels to justify the encoder's full capacity, still measured against a simpler baseline", "finetune",
        lambda f, p: f.n_labels is not None and f.n_labels > p.full_ft_labels and f.has_compute is not False,
        title="Over {full_ft_labels} labels and the compute: fine-tune the whole encoder",
        sources=("reuse-or-retrain", "transfer")),
    # ---- switch rules for the next cycle ----
    RuleSpec(
        "switch.labels-lora", "switch", ("lora_switch_labels",),
        "labels >= {lora_switch_labels}",
        "try small adapter layers (LoRA) unfrozen on the labels; full freeze may no longer be optimal",
        "with many more labels, an encoder kept fully frozen may no longer be the best choice", "lora",
        lambda f, p: f.n_labels is not None and f.n_labels >= p.lora_switch_labels,
        title="Labels grew to {lora_switch_labels} or more: try adapters (LoRA)", sources=("reuse-or-retrain",)),
    RuleSpec(
        "switch.setfit-few-labels", "switch", ("setfit_max_labels",),
        "labels < {setfit_max_labels} and setfit not run yet",
        "also try setfit: n labels give ~n^2/2 text pairs, so contrastive tuning lets few labels adapt the encoder "
        "that the probe keeps frozen; it must still beat the probe by the margin",
        "contrastive tuning on 8-64 labels per class rivals full fine-tuning on thousands, and its lead shrinks as "
        "labels grow; the smallest adaptation that works", "setfit",
        lambda f, p: f.n_labels is not None and f.n_labels < p.setfit_max_labels and "setfit" not in f.rungs_run,
        title="Under {setfit_max_labels} labels: also try SetFit", sources=("setfit", "transfer")),
    RuleSpec(
        "switch.rare-slice", "switch",
        ("rare_slice_max_share", "rare_slice_min_gap", "rare_slice_error_ratio", "rare_slice_min_items"),
        "a slice with <= {rare_slice_max_share} of the test items (>= {rare_slice_min_items} items) scores >= "
        "{rare_slice_min_gap} F1 below overall and holds >= {rare_slice_error_ratio}x its share of the errors",
        "collect more labels on that slice, not a bigger model",
        "errors concentrated on rare subtopics come from too few examples of them, which a bigger model does not fix",
        None, lambda f, p: rare_failing_slices(f.slices, f.overall_f1, p),
        title="Errors concentrate in a rare slice: label more there, not a bigger model",
        sources=("reuse-or-retrain",)),
    RuleSpec(
        "switch.mmd-skip-refit", "switch", ("mmd_p_value",),
        "MMD between pretrained and refit embeddings is ~0 (permutation p >= {mmd_p_value})",
        "skip the refit next time: it did not move the representation, so its gap is noise",
        "the MMD of held-out texts' embeddings before and after the refit measures whether it changed anything",
        "probe", lambda f, p: f.mmd_p_value is not None and f.mmd_p_value >= p.mmd_p_value,
        title="A refit that did not move the embeddings is skipped", sources=("reuse-or-retrain",)),
    RuleSpec(
        "switch.refit-slow", "switch", ("refit_max_hours",),
        "the refit takes > {refit_max_hours} hours end to end",
        "tell whoever reruns the model that each scheduled rerun needs an engineer",
        "what it costs to rerun the pipeline counts as much as its score", None,
        lambda f, p: f.refit_hours is not None and f.refit_hours > p.refit_max_hours,
        title="A refit over {refit_max_hours} hours makes every rerun an engineer's job",
        sources=("reuse-or-retrain",)),
    # ---- decision rules (documented here so every threshold the engine uses is listed) ----
    RuleSpec(
        "decision.min-seeds", "decision", ("min_seeds",),
        "a rung has fewer than {min_seeds} seeds",
        "it cannot win: run >= {min_seeds} seeds; one run is a draw from a distribution, not a measurement",
        "seed-to-seed spread can be larger than the gap between two rungs", None,
        lambda f, p: False, title="One run is not a measurement: at least {min_seeds} seeds",
        sources=("reuse-or-retrain",)),
    RuleSpec(
        "decision.margin", "decision", ("margin", "alpha"),
        "a more adapted rung's mean beats every simpler rung by >= {margin} with non-overlapping {alpha}-level "
        "bands (and a paired test-set difference whose CI excludes 0 when predictions exist)",
        "climb to that rung; otherwise keep the simpler one",
        "a gain smaller than the noise is not a gain; the smallest adaptation that works wins", None,
        lambda f, p: False, title="Adapt further only for a gain of {margin} or more beyond the noise",
        sources=("reuse-or-retrain", "transfer")),
    RuleSpec(
        "decision.ship", "decision", ("ship_threshold", "min_seeds"),
        "the chosen rung's mean F1 >= {ship_threshold} over >= {min_seeds} seeds",
        "ship it; otherwise name the cheapest next experiment",
        "the quality bar the seed mean must reach before anyone relies on the model", None,
        lambda f, p: False, title="Ship only at a mean F1 of {ship_threshold} or more",
        sources=("reuse-or-retrain",)),
    RuleSpec(
        "decision.scratch", "decision", ("margin",),
        "the scratch baseline (tfidf) is within {margin} of, or above, the best adapted rung",
        "the pretrained encoder is not earning its keep; prefer the scratch baseline if it wins outright",
        "negative transfer is real: a pretrained encoder has to beat TF-IDF trained from scratch", None,
        lambda f, p: False, title="The pretrained encoder must beat a scratch baseline", sources=("transfer",)),
    RuleSpec(
        "decision.below-frozen", "decision", ("margin",),
        "a rung that trains the encoder on labels scores below the frozen probe",
        "reject it: the signature of overfitting to the labels at this scale (negative transfer); a run still "
        "improving when its budget ended is under-trained instead, and is not rejected",
        "on a few thousand labels an end-to-end fine-tune can overfit and land below the frozen encoder "
        "(0.73 against 0.78 on 5.2k labels in the reference case)", None,
        lambda f, p: False, title="Training the encoder must not score below keeping it frozen",
        sources=("reuse-or-retrain",)),
]


def evaluate_rules(policy: Policy, facts: Facts) -> list[tuple[Rule, Any]]:
    """The regime and switch rules that fire on ``facts``, each with what its check returned.

    Example:
        >>> from adaptlab.decide import Facts, Policy, evaluate_rules
        >>> fired = evaluate_rules(Policy(), Facts(n_labels=5200, n_unlabeled=80_000, has_compute=True))
        >>> [(rule.id, rule.recommends) for rule, _ in fired]
        [('regime.refit', 'refit')]
    """
    fired = []
    for r in policy.rules():
        if r.kind in ("regime", "switch"):
            res = r.applies(facts)
            if res:
                fired.append((r, res))
    return fired


def load_policy(path: Optional[str | Path] = None, **overrides: Any) -> Policy:
    """The policy from a file (JSON/TOML) and/or keyword overrides; the defaults otherwise.

    Example:
        >>> from pathlib import Path
        >>> from adaptlab.decide import Policy, load_policy
        >>> load_policy() == Policy()
        True
        >>> _ = Path("policy.toml").write_text("margin = 0.02\\n", encoding="utf-8")
        >>> p = load_policy("policy.toml", lora_switch_labels=2000)
        >>> p.margin, p.lora_switch_labels
        (0.02, 2000)
        >>> load_policy(marginn=0.02)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: unknown policy field(s) ['marginn']; allowed: ['adapter_labels', 'alpha', ...].
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if path is not None:
        return Policy.from_file(path, **overrides)
    return Policy.from_dict(overrides)


def z_value(p: float) -> float:
    """Standard normal quantile (no scipy needed on this hot path)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def rung_info(rung: str) -> dict[str, Any]:
    """What the transfer note and the report say of a rung, from its record in the rung catalogue
    (:mod:`adaptlab.rungs.ladder`; a neutral description for rungs this version does not know).

    Example:
        >>> from adaptlab.decide import rung_info
        >>> info = rung_info("lora")
        >>> sorted(info)
        ['depth', 'frozen', 'label', 'needs_engineer', 'rerun', 'short', 'trainable']
        >>> rung_info("my-rung")["label"]
        'my-rung'
    """
    f = rung_facts(rung)
    return {"label": f.label, "short": f.short, "frozen": f.frozen, "trainable": f.trainable, "depth": f.position,
            "rerun": f.rerun, "needs_engineer": f.needs_engineer}
