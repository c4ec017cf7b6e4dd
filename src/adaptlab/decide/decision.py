"""`decide`: from the evidence of a study to a decision a team can commit to, and the inspection that would flip it.

The rule (every threshold from :class:`~adaptlab.decide.policy.Policy`):

1. A rung with fewer than ``min_seeds`` seeds cannot win ("not enough seeds: run >= 3").
2. Climb the ladder from the simplest adapted rung (``probe``; ``tfidf`` is the scratch baseline): a
   more adapted rung replaces the current choice only if its mean beats *every* simpler rung by at
   least ``margin`` with non-overlapping bands and, where per-item predictions exist, a paired test-set
   difference whose CI excludes zero.
3. The scratch baseline wins only by the same standard; when it is within the margin the encoder is
   not earning its keep and the decision says so.
4. Switch rules (MMD ~ 0 -> the refit's gain is noise; slow refit; rare failing slice; many labels)
   and the rules by data size are applied; when the evidence contradicts them, the evidence wins.
5. Ship only if the chosen rung's mean reaches ``ship_threshold``; otherwise name the cheapest next
   experiment.
6. One story: a rung the next experiment runs is never called settled, and a network rung below the
   frozen probe is "under-trained", not "overfitting", when its budget ended while it still improved
   (or it was only screened at a share of its budget).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from adaptlab.decide.evidence import Evidence, RungEvidence, ladder_key
from adaptlab.rungs.ladder import kind as rung_kind
from adaptlab.decide.policy import (
    LABEL_TRAINED_ENCODER, LADDER, SCRATCH, Facts, Policy, evaluate_rules, rung_info, z_value,
)
from adaptlab.decide.slice_noise import noisy_slice_words
from adaptlab.decide.stats import f1_replicates, items_to_resolve, paired_bootstrap, seed_only_difference
from adaptlab.config import format_duration
from adaptlab.errors import ConfigError
from adaptlab.evaluate.adaptive import stop_reason
from adaptlab.store import json_safe

__all__ = ["Comparison", "Decision", "Flag", "NextExperiment", "compare_rungs", "decide", "Evidence"]


def _f(x: Optional[float], nd: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _pm(r: RungEvidence) -> str:
    if r.n_seeds == 1:
        return f"{_f(r.mean)} (one run)"
    return f"{_f(r.mean)} ± {_f(r.std)} over {r.n_seeds} seeds"


def _band(r: RungEvidence) -> str:
    return f"[{_f(r.ci_low)}, {_f(r.ci_high)}]" if r.has_band else "[no band]"


def _hours(seconds: Optional[float]) -> str:
    return "cost not measured" if seconds is None else "~" + format_duration(seconds, (0, 0, 1))


@dataclass
class Comparison:
    """Rung ``other`` (more adapted) against rung ``simpler``: difference of seed-mean F1 with its CI.

    Example:
        >>> from adaptlab.decide import Comparison, Evidence, decide
        >>> d = decide(Evidence.from_tables({"probe": [0.77, 0.78, 0.79], "refit": [0.80, 0.81, 0.82]}))
        >>> c = d.comparison("probe", "refit")
        >>> isinstance(c, Comparison), c.simpler, c.other, round(c.diff, 3), c.beats_by_margin
        (True, 'probe', 'refit', 0.03, True)
        >>> sorted(c.to_dict())[:4]
        ['bands_overlap', 'beats_by_margin', 'ci_high', 'ci_low']
    """

    simpler: str
    other: str
    diff: float
    ci_low: Optional[float]
    ci_high: Optional[float]
    method: str
    paired: bool
    significant: Optional[bool]
    bands_overlap: Optional[bool]
    beats_by_margin: bool
    worse_by_margin: bool
    p_value: Optional[float] = None
    se: Optional[float] = None
    se_seed: Optional[float] = None
    n_test: Optional[int] = None
    n_test_positive: Optional[int] = None
    more_items_needed: Optional[int] = None
    more_positives_needed: Optional[int] = None
    more_seeds_needed: Optional[int] = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-safe data (a non-finite number becomes None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


@dataclass
class Flag:
    """A warning the decision carries: the rule that raised it, the message, the rung it concerns and its severity.

    Example:
        >>> from adaptlab.decide import Evidence, Flag, decide
        >>> d = decide(Evidence.from_tables({"probe": [0.81], "refit": [0.90]}))
        >>> [(f.rule, f.rung, f.severity) for f in d.flags][:2]
        [('decision.min-seeds', 'probe', 'block'), ('decision.min-seeds', 'refit', 'block')]
        >>> Flag(rule="one_seed", message="refit ran one seed", rung="refit").severity
        'warn'
    """
    rule: str
    message: str
    rung: Optional[str] = None
    severity: str = "warn"  # "info" | "warn" | "block"


@dataclass
class NextExperiment:
    """The run most likely to change the decision: what to run, why, and what it costs.

    Example:
        >>> from adaptlab.decide import Evidence, NextExperiment, decide
        >>> ev = Evidence.from_tables({"tfidf": [0.80, 0.81, 0.82], "probe": [0.81, 0.82, 0.83]},
        ...                          n_labels=5200, n_unlabeled=80_000)
        >>> nxt = decide(ev).next_experiment
        >>> isinstance(nxt, NextExperiment), nxt.what, nxt.rule
        (True, 'run refit with 3 seeds', 'regime.refit')
    """
    what: str
    why: str
    cost: str
    cost_seconds: Optional[float] = None
    rule: Optional[str] = None
    rung: Optional[str] = None  # the rung it runs (None for labeling and other non-runs)


@dataclass
class Decision:
    """The recommendation, why, and what would change it. JSON-serialisable with :meth:`to_dict`.

    Example:
        >>> from adaptlab.decide import Decision, Evidence, decide
        >>> d = decide(Evidence.from_tables({"probe": [0.81, 0.82, 0.83], "refit": [0.82, 0.83, 0.84]}))
        >>> isinstance(d, Decision), d.status, d.chosen, d.ship
        (True, 'ship', 'probe', True)
        >>> d.verdict("refit")
        'no gain of ≥ 0.02 over probe (+0.010)'
        >>> d.to_dict()["chosen"] == d.chosen, d.to_json().startswith("{")
        (True, True)
    """

    chosen: Optional[str]
    status: str  # "ship" | "do-not-ship" | "no-decision" | "provisional"
    ship: bool
    headline: str
    reasons: list[str]
    comparisons: list[Comparison]
    flags: list[Flag]
    flip_inspection: str
    flips: list[str]
    next_experiment: Optional[NextExperiment]
    rungs: list[dict[str, Any]]
    regime: Optional[dict[str, Any]]
    rules_fired: list[str]
    policy: dict[str, Any]
    metric: str = "F1"
    study_id: Optional[str] = None
    evidence_notes: list[str] = field(default_factory=list)
    # Which pretrained encoder the study started from, when several were compared (issue #9).
    encoder_choice: Optional[dict[str, Any]] = None
    # A decision-driven study that ran out of budget with a trained rung ahead on the evidence but short of
    # the full-budget seeds the rule needs: that rung (``chosen`` is then the rule's fallback).
    provisional: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-safe data (what ``decision.json`` holds)."""
        d = asdict(self)
        d["comparisons"] = [c.to_dict() for c in self.comparisons]
        return json.loads(json.dumps(d, default=json_safe))

    def to_json(self, **kw: Any) -> str:
        """:meth:`to_dict` as a JSON string; keyword arguments go to :func:`json.dumps`."""
        return json.dumps(self.to_dict(), **kw)

    def comparison(self, simpler: str, other: str) -> Comparison:
        """The comparison of rung ``other`` against rung ``simpler`` (KeyError if not compared)."""
        for c in self.comparisons:
            if c.simpler == simpler and c.other == other:
                return c
        raise KeyError((simpler, other))

    def verdict(self, rung: str) -> str:
        """The one-line verdict on ``rung`` (KeyError for a rung not in the evidence)."""
        for r in self.rungs:
            if r["rung"] == rung:
                return r["verdict"]
        raise KeyError(rung)

    def flags_for(self, rule: str) -> list[Flag]:
        """The flags raised by rule ``rule``."""
        return [f for f in self.flags if f.rule == rule]

    def _repr_html_(self) -> str:
        """What Jupyter shows for the decision: status, headline, reasons, each rung's verdict, flags."""
        from adaptlab.decide.notebook import decision_html

        return decision_html(self)

    def summary_lines(self) -> list[str]:
        """The decision as plain lines: headline, reasons, flags, flip inspection, next experiment."""
        lines = [self.headline]
        lines += [f"- {r}" for r in self.reasons]
        lines += [f"{'!' if f.severity != 'info' else '·'} {f.message}" for f in self.flags]
        lines.append(f"Flip inspection: {self.flip_inspection}")
        if self.next_experiment:
            lines.append(f"Next experiment: {self.next_experiment.what} ({self.next_experiment.cost}) — "
                         f"{self.next_experiment.why}")
        return lines


# -- comparisons -------------------------------------------------------------------------------------
def compare_rungs(evidence: Evidence, policy: Optional[Policy] = None) -> list[Comparison]:
    """Every pair of rungs (simpler first in ladder order): paired bootstrap where predictions exist.

    Example:
        >>> ev = Evidence.from_tables({"probe": [0.77, 0.78, 0.79], "refit": [0.80, 0.81, 0.82]})
        >>> c = compare_rungs(ev)[0]
        >>> c.simpler, c.other, round(c.diff, 3), c.beats_by_margin
        ('probe', 'refit', 0.03, True)
    """
    p = policy or Policy()
    ev = evidence
    names = ev.order
    reps: dict[str, tuple[list[int], np.ndarray, np.ndarray]] = {}
    if ev.y_true is not None:
        usable = [n for n in names if ev.rungs[n].predictions is not None]
        flat, owner = [], []
        for n in usable:
            seeds = sorted(ev.rungs[n].predictions)
            for s in seeds:
                flat.append(ev.rungs[n].predictions[s])
                owner.append((n, s))
        if flat:
            from adaptlab.metrics import weighted_f1

            classes = ev.classes or sorted(set(ev.y_true.tolist()))
            R = f1_replicates(ev.y_true, flat, classes, ev.positive_label, n_boot=p.n_boot, seed=p.boot_seed)
            ones = np.ones((1, len(ev.y_true)))
            for n in usable:
                idx = [i for i, (m, _) in enumerate(owner) if m == n]
                seeds = [owner[i][1] for i in idx]
                point = np.array([weighted_f1(ones, ev.y_true, flat[i], classes, ev.positive_label)[0] for i in idx])
                reps[n] = (seeds, R[:, idx], point)

    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            out.append(_compare(ev, p, ev.rungs[a], ev.rungs[b], reps.get(a), reps.get(b)))
    return out


def _compare(ev: Evidence, p: Policy, A: RungEvidence, B: RungEvidence, ra, rb) -> Comparison:
    diff = B.mean - A.mean
    overlap = None
    if A.has_band and B.has_band:
        overlap = not (A.ci_high < B.ci_low or B.ci_high < A.ci_low)
    kw: dict[str, Any] = {}
    if ra is not None and rb is not None:
        paired_seeds = ra[0] == rb[0] and len(ra[0]) > 1
        if ra[0] == rb[0]:
            pr = paired_bootstrap(ra[1], rb[1], ra[2], rb[2], paired_seeds=True, alpha=p.alpha, seed=p.boot_seed)
        else:
            pr = paired_bootstrap(ra[1], rb[1], ra[2], rb[2], paired_seeds=False, alpha=p.alpha, seed=p.boot_seed)
        significant = pr.ci_low > 0 or pr.ci_high < 0
        n = len(ev.y_true)
        how = ("paired bootstrap over the same test items and seeds" if paired_seeds
               else "bootstrap over the same test items (seeds resampled per rung)")
        kw = dict(ci_low=pr.ci_low, ci_high=pr.ci_high, method=f"{how} ({n} items)", paired=True,
                  significant=significant, p_value=pr.p_value, se=pr.se, se_seed=pr.se_seed, n_test=n,
                  n_test_positive=ev.n_test_positive)
        if not significant:
            need = items_to_resolve(pr.se, pr.se_seed, n, p.margin, p.alpha, p.power)
            if need is None:
                target = p.margin / (z_value(1 - p.alpha / 2) + z_value(p.power))
                s = max(len(ra[0]), len(rb[0]))
                kw["more_seeds_needed"] = max(1, int(math.ceil(s * 2 * (pr.se_seed / target) ** 2)) - s)
            else:
                kw["more_items_needed"] = max(0, need - n)
                if ev.n_test_positive:
                    kw["more_positives_needed"] = max(0, int(math.ceil(ev.n_test_positive * need / n)) - ev.n_test_positive)
    else:
        if A.n_seeds > 1 and B.n_seeds > 1:
            d, lo, hi, se = seed_only_difference(A.f1_by_seed, B.f1_by_seed, p.alpha)
            kw = dict(ci_low=lo, ci_high=hi, se=se, method="normal approximation over seeds only (unpaired; no "
                      "test-set sampling error: no per-item predictions)", paired=False, significant=lo > 0 or hi < 0)
        else:
            kw = dict(ci_low=None, ci_high=None, method="no interval: a rung has a single run", paired=False,
                      significant=None)
    enough = A.n_seeds >= p.min_seeds and B.n_seeds >= p.min_seeds
    sig_ok = kw["significant"] if kw["paired"] else True
    eps = 1e-12
    beats = bool(enough and diff >= p.margin - eps and overlap is False and sig_ok)
    worse = bool(enough and -diff >= p.margin - eps and overlap is False and sig_ok)
    c = Comparison(simpler=A.rung, other=B.rung, diff=float(diff), bands_overlap=overlap, beats_by_margin=beats,
                   worse_by_margin=worse, **kw)
    c.note = _comparison_note(c, p, ev)
    return c


def _comparison_note(c: Comparison, p: Policy, ev: Evidence) -> str:
    s = f"{c.other} − {c.simpler} = {c.diff:+.3f}"
    if c.ci_low is not None:
        s += f" [{_f(c.ci_low)}, {_f(c.ci_high)}]"
    s += f" ({c.method})"
    if c.significant is True:
        s += "; significant"
    elif c.significant is False:
        s += "; not significant"
        if c.more_items_needed == 0:
            s += (f": the {c.n_test} test items already resolve a {p.margin:.2f} difference (paired SE "
                  f"{_f(c.se, 4)}), so the true gap is most likely smaller than the margin")
        elif c.more_items_needed is not None:
            pos = (f" ({c.more_positives_needed} more positives of {ev.positive_label!r})"
                   if c.more_positives_needed is not None else "")
            s += (f": ~{c.more_items_needed} more labeled test items{pos} would resolve a {p.margin:.2f} difference "
                  f"(paired SE {_f(c.se, 4)} on {c.n_test} items, scaling with 1/√n, {p.power:.0%} power)")
        elif c.more_seeds_needed is not None:
            s += (f": seed noise alone (SE {_f(c.se_seed, 4)}) is too large for more test items to resolve a "
                  f"{p.margin:.2f} difference; run ~{c.more_seeds_needed} more seeds")
    if c.bands_overlap is not None:
        s += "; bands overlap" if c.bands_overlap else "; bands apart"
    return s


# -- the decision -------------------------------------------------------------------------------------
def decide(evidence: Evidence, policy: Optional[Policy] = None) -> Decision:
    """Choose the simplest rung that wins by more than the noise; say whether to ship and what would flip it.

    The stages run in order on one :class:`_Deliberation`: seeds, the ladder climb, the MMD check, the
    scratch baseline, rungs below the frozen probe, the rule by data size, the other switch rules, the ship
    threshold.

    Example (a first pass: one refit run, a fine-tune below the frozen probe):
        >>> ev = Evidence.from_tables({"probe": [0.77, 0.78, 0.79], "refit": [0.82],
        ...                            "finetune": [0.69, 0.73, 0.77]}, n_labels=5200, n_unlabeled=80000)
        >>> d = decide(ev)
        >>> d.chosen, d.ship, d.verdict("refit")
        ('probe', False, 'not enough seeds: run ≥ 3')
    """
    if not evidence.rungs:
        raise ConfigError("the evidence holds no rungs; run a study first (adaptlab study run).")
    d = _Deliberation(evidence, policy or Policy())
    d.check_seeds()
    d.climb()
    d.check_mmd()
    d.check_scratch()
    d.check_below_frozen()
    d.check_regime()
    d.check_switch_rules()
    d.check_ship()
    d.check_provisional()
    return d.decision()


class _Deliberation:
    """The decision being made: the chosen rung so far, and the reasons, flags, verdicts and rules behind it."""

    def __init__(self, ev: Evidence, p: Policy) -> None:
        self.ev, self.p, self.R, self.order = ev, p, ev.rungs, ev.order
        self.comps = compare_rungs(ev, p)
        self._cmap = {(c.simpler, c.other): c for c in self.comps}
        self.reasons: list[str] = []
        self.flags: list[Flag] = []
        self.verdicts: dict[str, str] = {}
        self.fired: list[str] = []
        # Runs at a share of the training budget (a decision-driven study's screens) are evidence, not the
        # full-budget seeds the rule commits on.
        self.eligible = [r for r in self.order if self.R[r].n_seeds >= p.min_seeds and self.R[r].fidelity >= 1.0]
        self.dropped = allocation_verdicts(ev)
        self.adapted = [r for r in self.eligible if r != SCRATCH]
        self.chosen: Optional[str] = None
        self.base: Optional[str] = None
        self.regime: Optional[dict[str, Any]] = None
        self.ship = False
        self.status = "no-decision"
        self.provisional: Optional[str] = None
        facts = Facts(n_labels=ev.n_labels, n_unlabeled=ev.n_unlabeled, has_compute=ev.has_compute,
                      mmd_p_value=ev.mmd_p_value, mmd=ev.mmd, refit_hours=ev.refit_hours, slices=ev.slices,
                      overall_f1=ev.overall_f1, rungs_run=tuple(self.order))
        self.fired_rules = {r.id: (r, res) for r, res in evaluate_rules(p, facts)}
        # The allocator's next run, known before any verdict so that no verdict or flag contradicts it.
        self.advice = allocator_advice(ev, p)
        self.next_rung: Optional[str] = (self.advice or {}).get("rung")

    def cmp(self, a: str, b: str) -> Comparison:
        return self._cmap[(a, b)] if (a, b) in self._cmap else self._cmap[(b, a)]

    def check_seeds(self) -> None:
        """Rungs with fewer than min_seeds: left by the allocation on purpose (said), else blocked."""
        p, R = self.p, self.R
        for r in self.order:
            if r not in self.eligible and r in self.dropped:
                # A decision-driven study left it here on purpose: say why, without blocking the decision.
                self.verdicts[r] = self.dropped[r]
                self.flags.append(Flag("decision.allocation", f"{r}: {self.dropped[r]}.", r, "info"))
                self.fired.append("decision.allocation")
            elif r not in self.eligible:
                self.verdicts[r] = f"not enough seeds: run ≥ {p.min_seeds}"
                self.flags.append(Flag(
                    "decision.min-seeds", f"{r}: not enough seeds: run ≥ {p.min_seeds}. {R[r].n_seeds} run(s) at "
                    f"{_f(R[r].mean)} is a draw from a distribution, not a measurement; it cannot win until its "
                    f"{p.min_seeds}-seed mean is known.", r, "block"))
                self.fired.append("decision.min-seeds")

    def climb(self) -> None:
        """The ladder climb over adapted rungs: a rung wins only by beating every simpler one by the margin."""
        p, R, ev, eligible = self.p, self.R, self.ev, self.eligible
        adapted = self.adapted
        chosen = adapted[0] if adapted else (SCRATCH if SCRATCH in eligible else None)
        self.base = chosen
        if chosen is not None:
            self.reasons.append(f"{chosen} ({rung_info(chosen)['label']}) is the simplest "
                                f"{'adapted ' if chosen != SCRATCH else ''}rung with ≥ {p.min_seeds} seeds: "
                                f"{p_metric(ev)} {_pm(R[chosen])}, band {_band(R[chosen])}.")
        for r in adapted[1:]:
            simpler = [s for s in eligible if ladder_key(s) < ladder_key(r)]
            failing = [s for s in simpler if not self.cmp(s, r).beats_by_margin]
            if not failing:
                vs = ", ".join(f"{s} by {self.cmp(s, r).diff:+.3f}" for s in simpler)
                self.reasons.append(f"{r} beats every simpler rung by ≥ {p.margin:.2f} with bands apart ({vs}): "
                                    f"{_pm(R[r])}, band {_band(R[r])}.")
                self.verdicts.setdefault(chosen, f"beaten by {r}")
                chosen = r
                self.fired.append("decision.margin")
            else:
                s = chosen if chosen in failing else failing[0]
                c = self.cmp(s, r)
                self.verdicts[r] = _why_not(c, p, r, s)
                self.reasons.append(f"{r} does not earn its extra adaptation over {s}: {self.verdicts[r]} ({c.note}).")
        self.chosen = chosen

    def check_mmd(self) -> None:
        """MMD ~ 0: a refit that did not move the representation cannot explain a gain."""
        ev, p = self.ev, self.p
        if "switch.mmd-skip-refit" not in self.fired_rules or "refit" not in self.R:
            return
        rule = self.fired_rules["switch.mmd-skip-refit"][0]
        self.fired.append(rule.id)
        mmd_txt = f"MMD {_f(ev.mmd, 4)}, " if ev.mmd is not None else ""
        msg = (f"MMD between pretrained and refit embeddings is ≈ 0 ({mmd_txt}p = {_f(ev.mmd_p_value)} ≥ "
               f"{p.mmd_p_value}): the refit did not move the representation — skip the refit next time")
        if self.chosen == "refit":
            fallback = max((s for s in self.eligible if ladder_key(s) < ladder_key("refit") and s != SCRATCH),
                           key=ladder_key, default=self.base)
            msg += (f"; its {self.cmp(fallback, 'refit').diff:+.3f} gap over {fallback} is treated as noise, so the "
                    f"decision falls back to {fallback}")
            self.verdicts["refit"] = "gap treated as noise: MMD ≈ 0"
            self.chosen = fallback
            self.reasons.append(msg + ".")
        self.flags.append(Flag(rule.id, msg + f" (the rule {rule.quoted}).", "refit", "warn"))

    def check_scratch(self) -> None:
        """The scratch baseline: is the encoder earning its keep?"""
        p, R, chosen = self.p, self.R, self.chosen
        if SCRATCH in self.eligible and chosen not in (None, SCRATCH):
            c = self.cmp(SCRATCH, chosen)
            if c.diff <= 0:
                # The encoder does not even match the scratch baseline: the simplest pipeline wins (ties included).
                how = ("by ≥ the margin with bands apart" if c.worse_by_margin else
                       "by ≥ the margin, bands overlapping (the simpler pipeline wins)" if -c.diff >= p.margin else
                       "(within the margin, and the simpler pipeline wins ties)")
                self.flags.append(Flag(
                    "decision.scratch", f"the scratch baseline tfidf {_pm(R[SCRATCH])} scores {-c.diff:+.3f} vs "
                    f"{chosen} {how}: the pretrained encoder is not earning its keep"
                    + (" (negative transfer)." if c.worse_by_margin else "."), SCRATCH, "warn"))
                self.verdicts[chosen] = f"not above scratch tfidf ({c.diff:+.3f})"
                self.reasons.append(f"tfidf (no pretraining) {_pm(R[SCRATCH])} is at least as good as {chosen} "
                                    f"({c.note}): commit to the scratch baseline; the encoder is not earning its keep.")
                self.chosen = SCRATCH
                self.fired.append("decision.scratch")
            elif c.diff < p.margin:
                self.flags.append(Flag("decision.scratch", f"{chosen} is only {c.diff:+.3f} over the scratch baseline "
                                       f"tfidf (< {p.margin:.2f} margin): the pretrained encoder is not clearly earning "
                                       "its keep.", SCRATCH, "warn"))
                self.fired.append("decision.scratch")
            else:
                self.reasons.append(f"{chosen} beats the scratch baseline tfidf ({_pm(R[SCRATCH])}) by {c.diff:+.3f}: "
                                    f"{'bands apart' if c.bands_overlap is False else 'bands overlap'}, so the "
                                    "pretrained representation is earning its keep.")
        if self.chosen == SCRATCH and not self.adapted:
            self.reasons.append("only the scratch baseline has enough seeds; no adapted rung can be judged yet.")

    def check_below_frozen(self) -> None:
        """Rungs that train the encoder and land below the frozen probe: the overfitting signature, unless
        under-trained. Under-trained wins (a seed its budget stopped while still at its best, or a rung only
        screened at a share of its budget, says nothing about overfitting), and a rung still short of its
        seeds, or the one the next experiment runs, is never told not to run."""
        p, R = self.p, self.R
        if "probe" not in R:
            return
        for r in self.order:
            # Only the rungs above the frozen probe on the ladder adapt the encoder.
            if ladder_key(r) <= ladder_key("probe") or R[r].mean >= R["probe"].mean:
                continue
            gap = R[r].mean - R["probe"].mean
            c = self.cmp("probe", r)
            apart = c.worse_by_margin or (R["probe"].has_band and R[r].has_band and R[r].ci_high < R["probe"].ci_low)
            why, advice = self._below_frozen_story(r)
            if r in self.dropped:
                verdict = f"{self.dropped[r]}; below the frozen probe ({gap:+.3f})"
            elif _under_trained(R[r]):
                verdict = f"below the frozen probe ({gap:+.3f}), {why}"
            elif R[r].n_seeds < p.min_seeds:
                verdict = f"not enough seeds: run ≥ {p.min_seeds}; so far below the frozen probe ({gap:+.3f})"
            elif r == self.next_rung:
                verdict = f"below the frozen probe ({gap:+.3f}) so far; the next experiment runs it again"
            else:
                verdict = f"rejected: below the frozen probe ({gap:+.3f}) — {why}"
            self.verdicts[r] = verdict
            self.flags.append(Flag("decision.below-frozen",
                                   f"{r} {_pm(R[r])} is below the frozen probe {_pm(R['probe'])} ({gap:+.3f}"
                                   f"{', bands apart' if apart else ''}): {why}; {advice}.", r, "warn"))
            self.fired.append("decision.below-frozen")

    def _below_frozen_story(self, r: str) -> tuple[str, str]:
        """(why ``r`` is below the frozen probe, what to do about it): one story, whichever applies first:
        under-trained, the next experiment's rung, short of seeds, then overfitting / negative transfer."""
        p, R, ev = self.p, self.R, self.ev
        under = _under_trained(R[r])
        if under:
            return (f"under-trained, not overfit ({under})",
                    "a longer --budget may change this row, so it is not evidence against the rung")
        if r in LABEL_TRAINED_ENCODER:
            why = "the signature of overfitting to the labels" + (f" at {ev.n_labels:,} labels" if ev.n_labels else "")
        else:
            why = "negative transfer of the refit representation"
        memorised = [d.get("seed") for d in R[r].diagnostics
                     if isinstance(d.get("overfitting"), dict) and d["overfitting"].get("overfitting")]
        if memorised:
            why += (f"; its training diagnostics flag memorisation (train-validation gap) in "
                    f"{len(memorised)} of {R[r].n_seeds} seed(s)")
        if r == self.next_rung:
            return f"so far {why}", "the next experiment runs it again, and decides"
        if R[r].n_seeds < p.min_seeds and r not in self.dropped:
            return f"so far {why}", f"its {p.min_seeds}-seed mean decides"
        return why, "do not run it at this label count unless the labels grow"

    def check_regime(self) -> None:
        """The rule by data size versus the evidence: the rule is a prior, the evidence wins."""
        p, R, ev, chosen = self.p, self.R, self.ev, self.chosen
        regime_rule = p.regime(ev.n_labels, ev.n_unlabeled, ev.has_compute)
        if regime_rule is None:
            return
        self.fired.append(regime_rule.id)
        sug = regime_rule.recommends
        regime = {"rule": regime_rule.id, "title": regime_rule.title, "condition": regime_rule.condition,
                  "recommends": sug, "evidence": regime_rule.evidence, "agrees": chosen == sug, "measured": sug in R}
        self.regime = regime
        sizes = f"{ev.n_labels:,} labels" + (f" and {ev.n_unlabeled:,} unlabeled texts" if ev.n_unlabeled else "")
        rule = f"the rule {regime_rule.quoted}"
        if chosen == sug:
            self.reasons.append(f"This agrees with {rule} for {sizes}: {regime_rule.action}.")
        elif sug in R and R[sug].n_seeds >= p.min_seeds and chosen is not None:
            regime["contradicted"] = True
            self.reasons.append(f"The evidence contradicts {rule}, and the evidence wins: for {sizes} the rule "
                                f"suggests {sug}, but {sug} scores {_pm(R[sug])} and {chosen} {_pm(R[chosen])} is "
                                "the justified choice.")
            self.flags.append(Flag(regime_rule.id, f"the evidence overrides {rule}: {sug} suggested, {chosen} "
                                   "chosen.", sug, "info"))
        elif sug in R:
            self.flags.append(Flag(regime_rule.id, f"{rule} suggests {sug} for {sizes}, but {sug} has only "
                                   f"{R[sug].n_seeds} seed(s): the rule is a prior, the {p.min_seeds}-seed evidence "
                                   "decides.", sug, "info"))
        else:
            self.flags.append(Flag(regime_rule.id, f"{rule} suggests {sug} for {sizes} "
                                   f"({regime_rule.condition}); {sug} was not run.", sug, "info"))

    def check_switch_rules(self) -> None:
        """The other switch rules: labels for LoRA, few labels for SetFit, a rare slice, a slow refit."""
        p, ev, fired_rules = self.p, self.ev, self.fired_rules
        if "switch.labels-lora" in fired_rules:
            rule = fired_rules["switch.labels-lora"][0]
            self.fired.append(rule.id)
            run = "lora" in self.eligible
            self.flags.append(Flag(rule.id, f"{ev.n_labels:,} labels ≥ {p.lora_switch_labels:,}: {rule.action}"
                                   + ("" if run else " (lora has not been run with enough seeds)") + ".", "lora",
                                   "info" if run else "warn"))
        if "switch.setfit-few-labels" in fired_rules:
            rule = fired_rules["switch.setfit-few-labels"][0]
            self.fired.append(rule.id)
            self.flags.append(Flag(rule.id, f"{ev.n_labels:,} labels < {p.setfit_max_labels:,}: {rule.action}.",
                                   "setfit", "info"))
        if "switch.rare-slice" in fired_rules:
            rule, bad = fired_rules["switch.rare-slice"]
            self.fired.append(rule.id)
            names = "; ".join(f"{s['slice']} ({s['n']} test items, {s['share']:.0%} of items, F1 {_f(s['f1'])} vs "
                              f"{_f(ev.overall_f1)} overall, {s['error_share']:.0%} of the errors)" for s in bad[:3])
            # A weak slice whose labels are also noisy needs its labels checked before more of them are collected.
            noisy = [f"{s['slice']}: {w}" for s in bad[:3] for w in [noisy_slice_words(s, ev.label_quality, p)] if w]
            more = f" But {'; '.join(noisy)}." if noisy else ""
            self.flags.append(Flag(rule.id, f"errors concentrate on rare slice(s) {names}: {rule.action}.{more}",
                                   ev.slice_rung, "warn"))
        if "switch.refit-slow" in fired_rules:
            rule = fired_rules["switch.refit-slow"][0]
            self.fired.append(rule.id)
            self.flags.append(Flag(rule.id, f"the refit took {ev.refit_hours:.1f} h > {p.refit_max_hours:g} h: "
                                   f"{rule.action}.", "refit", "warn" if self.chosen == "refit" else "info"))

    def check_ship(self) -> None:
        """The ship threshold, and the allocation's stop sentence of a decision-driven study."""
        p, R, ev, chosen, eligible = self.p, self.R, self.ev, self.chosen, self.eligible
        ship = bool(chosen is not None and R[chosen].n_seeds >= p.min_seeds and R[chosen].mean >= p.ship_threshold)
        meeting = [r for r in eligible if R[r].mean >= p.ship_threshold]
        self.status = "no-decision" if chosen is None else ("ship" if ship else "do-not-ship")
        if chosen is not None and not ship:
            if not meeting:
                self.reasons.append(
                    f"Nothing meets the ship threshold: no rung with ≥ {p.min_seeds} seeds reaches a mean "
                    f"{p_metric(ev)} of {p.ship_threshold:.2f} (best: {max(eligible, key=lambda r: R[r].mean)} "
                    f"at {_f(max(R[r].mean for r in eligible))}).")
            else:
                self.reasons.append(
                    f"{chosen} is below the ship threshold {p.ship_threshold:.2f}; "
                    + ", ".join(f"{r} reaches {_f(R[r].mean)} but {self.verdicts.get(r, 'is not a justified win')}"
                                for r in meeting) + ".")
            self.fired.append("decision.ship")
        elif ship:
            self.reasons.append(f"{chosen} meets the ship threshold: mean {_f(R[chosen].mean)} ≥ "
                                f"{p.ship_threshold:.2f} over {R[chosen].n_seeds} seeds.")
            self.fired.append("decision.ship")
        self.ship = ship
        if ev.allocation is not None:
            self.reasons.append(allocation_stop_sentence(ev.allocation))
            self.fired.append("allocation.stop")

    def check_provisional(self) -> None:
        """A decision-driven study that stopped with a trained rung ahead of the committed one on the
        evidence, without the full-budget seeds the rule needs: say so first, as a provisional commitment
        with its band and what the remaining doubt is, instead of the fallback alone."""
        alloc, R, p = self.ev.allocation or {}, self.R, self.p
        lead = alloc.get("provisional")
        if lead is None or lead not in R or lead == self.chosen or lead in self.eligible:
            return
        e, point = R[lead], ((alloc.get("estimates") or {}).get(lead) or {}).get("point")
        fallback = self.chosen
        if fallback is not None and max(e.mean, point or e.mean) <= R[fallback].mean:
            return
        runs = f"{e.n_seeds} run(s)" + (f" at {e.fidelity:.0%} of its training budget" if e.fidelity < 1 else "")
        proj = f" (projected to the full budget: {_f(point)})" if point is not None and e.fidelity < 1 else ""
        if fallback in LABEL_TRAINED_ENCODER and e.mean - R[fallback].mean < p.margin:
            # The question the study answers (adapt the encoder or not) is settled by a committed trained
            # rung; a lead smaller than the margin the rule asks of a more adapted rung refines it, not undoes it.
            self.reasons.append(
                f"{lead} is ahead of the committed {fallback} on {runs}, {_f(e.mean)}{proj}, by "
                f"{e.mean - R[fallback].mean:+.3f}, less than the {p.margin:.2f} margin the rule asks of a more "
                f"adapted rung: {fallback} stands; {lead}'s {p.min_seeds} full-budget seeds could still change it.")
            self.flags.append(Flag("decision.provisional", f"{lead}: ahead of {fallback} on {runs} by less than "
                                   f"the margin; its {p.min_seeds} full-budget seeds could change the decision.",
                                   lead, "info"))
            return
        self.provisional, self.status, self.ship = lead, "provisional", False
        vs = (f", ahead of {fallback} ({_f(R[fallback].mean)}) by {e.mean - R[fallback].mean:+.3f}"
              if fallback is not None else "")
        doubt = (f"whether its full-budget mean over {p.min_seeds} seeds stays ahead of {fallback} by the "
                 f"{p.margin:.2f} margin with bands apart" if fallback else "its full-budget mean over seeds")
        self.reasons.insert(0, (
            f"Provisional commitment to {lead} ({rung_info(lead)['label']}): it leads on the evidence, "
            f"{p_metric(self.ev)} {_f(e.mean)} over {runs}, band {_band(e)}{proj}{vs}. The budget ended "
            f"before it had {p.min_seeds} full-budget seeds, so the rule cannot commit to it yet. The remaining "
            f"doubt: {doubt}." + (f" Until that is run, {fallback} is the committed fallback." if fallback else "")))
        self.flags.append(Flag("decision.provisional", f"{lead}: provisional commitment on {runs}; run its "
                               f"{p.min_seeds} full-budget seeds to commit.", lead, "warn"))
        self.fired.append("decision.provisional")

    def decision(self) -> Decision:
        """The :class:`Decision`: every rung's verdict, the next experiment, what would flip it, the headline."""
        p, R, ev, chosen, ship = self.p, self.R, self.ev, self.chosen, self.ship
        nxt = _next_experiment(ev, p, chosen, ship, self.eligible, self.cmp, self.fired_rules, self.regime,
                               self.advice)
        if (nxt.rung if nxt else None) != self.next_rung:
            # Another next experiment won (labels first, say): the below-probe verdicts must tell its story.
            self.next_rung = nxt.rung if nxt else None
            self.flags = [f for f in self.flags if f.rule != "decision.below-frozen"]
            self.check_below_frozen()
        for r in self.order:
            self.verdicts.setdefault(r, "chosen" if r == chosen else ("scratch baseline" if r == SCRATCH else
                                                                      f"beaten by or tied with {chosen}"))
        if chosen is not None:
            self.verdicts[chosen] = "chosen" + (" — ship" if ship else " — do not ship yet")
        flips = _flips(ev, p, chosen, self.eligible, self.cmp, self.regime)
        headline = _headline(ev, p, chosen, ship, self.status, self.eligible)
        if self.provisional is not None:
            e = R[self.provisional]
            headline = (f"Provisionally {self.provisional} ({rung_info(self.provisional)['label']}): {p_metric(ev)} "
                        f"{_f(e.mean)} over {e.n_seeds} run(s)" + (f" at {e.fidelity:.0%} of its training budget"
                                                                   if e.fidelity < 1 else "")
                        + f", ahead of every committed rung; not yet {p.min_seeds} full-budget seeds, so do not "
                        "ship it yet" + (f" (fallback: {chosen})." if chosen else "."))
        rows = []
        for r in self.order:
            d = R[r].to_dict()
            d["verdict"] = self.verdicts[r]
            d["label"] = rung_info(r)["label"]
            rows.append(d)
        reasons = list(self.reasons)
        if ev.encoder_choice:
            reasons.insert(0, encoder_choice_sentence(ev.encoder_choice))
        return Decision(
            chosen=chosen, status=self.status, ship=ship, headline=headline, reasons=reasons, comparisons=self.comps,
            flags=self.flags,
            flip_inspection=flips[0] if flips else "no inspection can change this: only one rung was measured.",
            flips=flips, next_experiment=nxt, rungs=rows, regime=self.regime, rules_fired=sorted(set(self.fired)),
            policy=p.to_dict(), metric=ev.metric, study_id=ev.study_id, evidence_notes=list(ev.notes),
            encoder_choice=ev.encoder_choice, provisional=self.provisional,
        )


def _under_trained(e: RungEvidence) -> str:
    """Why ``e``'s runs are under-trained ("" when they are not): seeds whose budget stopped them while still
    at their best, or runs at a share of the training budget (a decision-driven study's screens)."""
    from adaptlab.rungs.overfit import budget_bound

    parts = []
    bound = sum(1 for d in e.diagnostics if budget_bound(d))
    if bound:
        parts.append(f"{bound} of {e.n_seeds} seed(s) still improving when the budget ended")
    if e.fidelity < 1:
        parts.append(f"run at {e.fidelity:.0%} of its training budget")
    return "; ".join(parts)


def encoder_choice_sentence(choice: dict[str, Any]) -> str:
    """The encoder choice in one sentence: what was chosen over what, the gap with its band, the cost."""
    text = f"Encoder: {choice.get('reason') or choice.get('chosen')}"
    gap = choice.get("gap") or {}
    if gap and choice.get("runner_up"):
        text += (f" Gap {choice['chosen']} − {choice['runner_up']}: {gap.get('diff', 0):+.4f} "
                 f"[{gap.get('ci_low', 0):+.4f}, {gap.get('ci_high', 0):+.4f}].")
    cost = (choice.get("cost") or {}).get("chosen") or {}
    if cost.get("texts_per_s"):
        text += f" It encodes {cost['texts_per_s']:.1f} texts/s here."
    return text


def p_metric(ev: Evidence) -> str:
    return ev.metric or "F1"


def _why_not(c: Comparison, p: Policy, r: str, s: str) -> str:
    if c.diff < p.margin:
        if abs(c.diff) < 1e-12:
            return f"tie with {s} (+0.000): the simpler rung wins ties"
        return f"no gain of ≥ {p.margin:.2f} over {s} ({c.diff:+.3f})"
    if c.bands_overlap:
        return f"+{c.diff:.3f} over {s}, but the bands overlap"
    if c.paired and c.significant is False:
        return f"+{c.diff:.3f} over {s} with bands apart, but the paired test-set difference is not significant"
    return f"not a clear win over {s} ({c.diff:+.3f})"


def _headline(ev: Evidence, p: Policy, chosen: Optional[str], ship: bool, status: str, eligible: list[str]) -> str:
    if chosen is None:
        return (f"No decision: no rung has ≥ {p.min_seeds} seeds. Run every rung with at least {p.min_seeds} seeds "
                "before committing.")
    r = ev.rungs[chosen]
    lead = f"Commit to {chosen} ({rung_info(chosen)['label']}): {p_metric(ev)} {_pm(r)}, band {_band(r)}."
    if ship:
        return lead + f" Ship it (≥ {p.ship_threshold:.2f})."
    return lead + f" Do not ship yet: below the {p.ship_threshold:.2f} ship threshold."


def _cost_of(ev: Evidence, rung: str, runs: int) -> tuple[Optional[float], str]:
    r = ev.rungs.get(rung)
    if r is None or r.fit_seconds_mean is None:
        return None, f"{runs} run(s); cost not measured yet"
    secs = r.fit_seconds_mean * runs
    return secs, f"{runs} run(s) × {_hours(r.fit_seconds_mean)} = {_hours(secs)}"


def allocation_verdicts(ev: Evidence) -> dict[str, str]:
    """Verdicts of the rungs a decision-driven study screened or dropped (rung -> sentence)."""
    alloc = ev.allocation or {}
    out = {}
    for d in alloc.get("drops") or []:
        r = d.get("rung")
        e = ev.rungs.get(r)
        at = (f"screened at {e.fidelity:.0%} of its training budget ({_f(e.mean)}); " if e is not None and e.fidelity < 1
              else (f"{e.n_seeds} full-budget seed(s) ({_f(e.mean)}); " if e is not None else ""))
        what = {"eliminated": "dropped", "cannot-flip": "not pursued", "budget": "not pursued (budget)"}.get(d.get("kind"), "dropped")
        out[r] = f"{at}{what}: {d.get('reason', '')}"
    stop = (alloc.get("stop") or {}).get("kind")
    nxt = (alloc.get("next") or {}).get("rung") if stop != "settled" else None
    for r, e in ev.rungs.items():
        if r not in out and alloc and (e.n_seeds < (alloc.get("config") or {}).get("min_seeds", 3) or e.fidelity < 1):
            runs = f"{e.n_seeds} run(s) at {e.fidelity:.0%} of its training budget ({_f(e.mean)})"
            if r == alloc.get("provisional") and stop == "budget":
                out[r] = f"{runs}: it leads, but its full-budget seeds did not fit in the budget"
            elif r == nxt:
                out[r] = f"{runs}: not finished; its next run is the next experiment and could change the decision"
            elif stop == "budget":
                out[r] = f"{runs}: the budget ended before it got more runs"
            else:
                out[r] = f"{runs}: the decision-driven study found no run of it that could change the decision"
    return out


def allocation_stop_sentence(alloc: dict[str, Any]) -> str:
    """Why a decision-driven study stopped (settled, or out of budget) and the compute it used, in one sentence.

    Example:
        >>> allocation_stop_sentence({"stop": {"kind": "settled", "reason": "no affordable run could flip the "
        ...     "decision"}, "compute_seconds": 50, "budget_seconds": 600, "exhaustive_seconds": 400})
        'The decision-driven study stopped (settled): no affordable run could flip the decision. It used ~50 s of compute of its ~10 min budget (the exhaustive grid: ~7 min).'
    """
    stop = alloc.get("stop") or {}
    kind, reason = stop.get("kind"), stop_reason(stop).rstrip(".")
    why = {"settled": "settled", "budget": "out of budget"}.get(kind, kind)
    used = f"It used {_hours(alloc.get('compute_seconds'))} of compute of its {_hours(alloc.get('budget_seconds'))} budget"
    if alloc.get("exhaustive_seconds"):
        used += f" (the exhaustive grid: {_hours(alloc['exhaustive_seconds'])})"
    text = f"The decision-driven study stopped ({why}): {reason}. {used}."
    if kind == "budget" and alloc.get("next"):
        text += " More time could still change this decision (see the next experiment)."
    return text


def allocator_advice(ev: Evidence, p: Policy) -> Optional[dict[str, Any]]:
    """The next run by value per cost (adaptlab.evaluate.adaptive): a decision-driven study's own answer,
    else the allocator's reasoning applied to this evidence (unrun ladder rungs are candidates)."""
    from adaptlab.evaluate.adaptive import AdaptiveConfig, best_next_run

    if ev.allocation is not None:
        if (ev.allocation.get("stop") or {}).get("kind") == "settled":
            # It stopped because no run could change the decision: no run is next (one story).
            return None
        return ev.allocation.get("next")
    rungs = {r: {"f1_by_seed": e.f1_by_seed, "seeds": e.seeds, "predictions": e.predictions,
                 "seconds": e.fit_seconds_mean, "fidelity": e.fidelity} for r, e in ev.rungs.items()}
    # Unrun rungs are candidates of a stored study (they could run on its data); a hand-made table names
    # the rungs in play itself.
    candidates = [r for r in LADDER if r not in ev.rungs and (r != "refit" or ev.n_unlabeled)] if ev.source == "store" else []
    try:
        from adaptlab.rungs import available_rungs

        candidates = [r for r in candidates if r in available_rungs()]
    except ImportError:  # pragma: no cover - rungs always importable in a full install
        pass
    classes = ev.classes or (sorted(set(ev.y_true.tolist())) if ev.y_true is not None else None)
    return best_next_run(rungs, y_true=ev.y_true if ev.has_predictions else None, classes=classes,
                         positive=ev.positive_label, candidates=candidates,
                         config=AdaptiveConfig(margin=p.margin, min_seeds=p.min_seeds))


def _advice_experiment(ev: Evidence, p: Policy, adv: dict[str, Any]) -> NextExperiment:
    r, phase = adv["rung"], adv["phase"]
    e = ev.rungs.get(r)
    runs, have = 1, (e.n_seeds if e is not None and e.fidelity >= 1 else 0)  # a screen is not a full seed
    if phase in ("confirm", "seed") and e is not None and have < p.min_seeds:
        runs = p.min_seeds - have  # the decision rule needs them all before the rung can win
    if phase == "screen":
        what = (f"screen {r}: one seed at {adv['fidelity']:.0%} of its training budget" if adv["fidelity"] < 1
                else f"run {r} once (its later seeds share the cost)")
        others = [x for x in LADDER if x not in ev.rungs and x != r and (x != "refit" or ev.n_unlabeled)]
        if others and ev.allocation is None:
            what += f", then the other unrun rungs ({', '.join(others)}); `adaptlab study run --time ...` does this"
    elif phase == "promote":
        what = f"run {r} at its full training budget (seed {adv['seed']})"
    else:
        what = f"run {runs} {'more ' if have else ''}seed(s) of {r} at its full training budget"
    cheap = [x for x, c in ev.rungs.items() if rung_kind(x) == "cheap" and c.n_seeds < p.min_seeds and x != r]
    if cheap:
        what += f", and {', '.join(cheap)} to {p.min_seeds} seeds (seconds each)"
    per = adv.get("estimate_seconds")
    secs = per * runs if per is not None else None
    cost = _hours(secs) if secs is not None else "cost not measured yet"
    flip = adv.get("flip_probability")
    why = adv.get("why", "")
    if phase != "confirm" and flip is not None:
        why = f"the run most likely to change the decision per second ({why})"
    elif adv.get("provisional") and not why.startswith(f"{adv['provisional']} leads"):
        why = f"{adv['provisional']} leads: {why}"
    return NextExperiment(what=what, why=why, cost=cost, cost_seconds=secs, rule="allocation.value-per-cost", rung=r)


def _next_experiment(ev, p, chosen, ship, eligible, cmp, fired_rules, regime, adv) -> Optional[NextExperiment]:
    R = ev.rungs
    cands: list[tuple[int, float, NextExperiment]] = []
    base_mean = R[chosen].mean if chosen else max((e.mean for e in R.values()), default=0.0)
    if adv is not None:
        # After the policy's label rules (rare slice, test set too small): labels before compute.
        cands.append((1, math.inf, _advice_experiment(ev, p, adv)))
    # 1. an under-seeded rung that could change the decision: finish its seeds (the allocator's advice
    #    supersedes this whenever it has one).
    for r, e in R.items():
        if adv is not None:
            break
        if e.n_seeds < p.min_seeds and r not in allocation_verdicts(ev):
            missing = p.min_seeds - e.n_seeds
            promising = e.mean >= base_mean + p.margin or e.mean >= p.ship_threshold
            secs, cost = _cost_of(ev, r, missing)
            cands.append((0 if promising else 3, secs if secs is not None else math.inf, NextExperiment(
                what=f"run {missing} more seed(s) of {r} (≥ {p.min_seeds} in all)",
                why=f"{r} has {e.n_seeds} run(s) at {_f(e.mean)}; its {p.min_seeds}-seed mean decides whether it "
                    f"beats {chosen or 'the baseline'} ({_f(base_mean)}) by ≥ {p.margin:.2f}",
                cost=cost, cost_seconds=secs, rule="decision.min-seeds", rung=r)))
    # 2. a promising comparison that the test set is too small to resolve.
    if chosen:
        for r in eligible:
            if ladder_key(r) <= ladder_key(chosen):
                continue
            c = cmp(chosen, r)
            if c.diff >= p.margin and not c.beats_by_margin and c.paired and c.significant is False:
                if c.more_items_needed is not None:
                    pos = (f" (~{c.more_positives_needed} more positives)" if c.more_positives_needed is not None else "")
                    cands.append((1, 0.0, NextExperiment(
                        what=f"label ~{c.more_items_needed} more test items{pos} and re-score {chosen} vs {r}",
                        why=f"{r} leads by {c.diff:+.3f} but the paired difference on {c.n_test} items is not "
                            f"significant ({c.note})", cost="labeling effort; no retraining (stored models re-score)",
                        rule="decision.margin")))
                elif c.more_seeds_needed is not None:
                    secs, cost = _cost_of(ev, r, c.more_seeds_needed)
                    cands.append((1, secs if secs is not None else math.inf, NextExperiment(
                        what=f"run ~{c.more_seeds_needed} more seeds of {chosen} and {r}",
                        why=f"seed noise hides a {c.diff:+.3f} lead ({c.note})", cost=cost, cost_seconds=secs,
                        rule="decision.margin", rung=r)))
    # 3. the rung the rule by data size or a switch rule points at, not run yet.
    wanted = []
    if regime and not regime.get("measured"):
        wanted.append((regime["recommends"], f"the rule \"{regime.get('title') or regime['rule']}\" suggests it "
                       f"({regime['condition']})", regime["rule"]))
    if "switch.labels-lora" in fired_rules and "lora" not in R:
        wanted.append(("lora", f"{ev.n_labels:,} labels ≥ {p.lora_switch_labels:,} (switch rule)", "switch.labels-lora"))
    if "switch.setfit-few-labels" in fired_rules and "setfit" not in R:
        wanted.append(("setfit", f"{ev.n_labels:,} labels < {p.setfit_max_labels:,} (switch rule)",
                       "switch.setfit-few-labels"))
    for rung, why, rule in wanted:
        if rung and rung not in R and ev.allocation is None and (adv is None or ev.source != "store"):
            cands.append((2, math.inf, NextExperiment(what=f"run {rung} with {p.min_seeds} seeds", why=why,
                                                        cost=f"{p.min_seeds} run(s); cost not measured yet", rule=rule,
                                                        rung=rung)))
    if "switch.rare-slice" in fired_rules:
        bad = fired_rules["switch.rare-slice"][1]
        noisy = noisy_slice_words(bad[0], ev.label_quality, p)
        cands.append((1, 0.0, NextExperiment(
            what=(f"check and fix the labels of slice {bad[0]['slice']}, then collect more there" if noisy
                  else f"collect more labels on slice {bad[0]['slice']}"),
            why=f"its F1 is {_f(bad[0]['f1'])} vs {_f(ev.overall_f1)} overall and it holds {bad[0]['error_share']:.0%} "
                f"of the errors with {bad[0]['share']:.0%} of the items: more labels there, not a bigger model"
                + (f"; {noisy}" if noisy else ""),
            cost="labeling effort", rule="switch.rare-slice")))
    # 4. nothing ships and every measured rung is settled: climb one rung or add labels.
    if not ship:
        top = max((r for r in R), key=ladder_key)
        nxt_rungs = [r for r in LADDER if ladder_key(r) > ladder_key(top) and r not in R]
        if nxt_rungs and ev.allocation is None and (adv is None or ev.source != "store"):
            cands.append((2, math.inf, NextExperiment(
                what=f"run {nxt_rungs[0]} with {p.min_seeds} seeds",
                why=f"nothing measured reaches {p.ship_threshold:.2f}; {nxt_rungs[0]} is the next rung up the ladder",
                cost=f"{p.min_seeds} run(s); cost not measured yet", rung=nxt_rungs[0])))
        lc = ev.learning_curve or {}
        if lc.get("verdict") == "more-labels":
            cands.append((1, math.inf, _more_labels_experiment(lc, chosen, p)))
        if chosen == "refit" or ("refit" in eligible and R["refit"].mean < p.ship_threshold):
            cands.append((4, math.inf, NextExperiment(
                what="refit on a curated in-domain sub-corpus (or a harder self-supervised task, e.g. SimCSE-style)",
                why=f"the {p.min_seeds}-seed refit mean {_f(R['refit'].mean)} does not clear {p.ship_threshold:.2f}",
                cost="one more refit")))
    if ship and (ev.learning_curve or {}).get("verdict") in ("more-labels", "both"):
        # The model ships, and the curve says labels still pay: after anything that could change the
        # decision, the next experiment is labeling, sized by the extrapolated curve.
        cands.append((3, math.inf, _more_labels_experiment(ev.learning_curve, chosen, p)))
    if not cands:
        return None
    cands.sort(key=lambda t: (t[0], t[1]))
    return cands[0][2]


def _more_labels_experiment(lc: dict[str, Any], chosen: Optional[str], p: Policy) -> NextExperiment:
    """"Collect more labels", with how many (the learning curve's power-law extrapolation) when it can say."""
    from adaptlab.decide.curves import extrapolate_curve

    why = lc.get("summary", "the learning curve is still rising")
    rungs = {pt.get("rung") for pt in lc.get("points") or []}
    ex = extrapolate_curve(lc.get("points") or [], rung=chosen if chosen in rungs else None, policy=p)
    if ex and ex.get("more_labels"):
        what = (f"collect ~{ex['more_labels']:,} more labels (to reach F1 {ex['target_f1']:.2f} with {ex['rung']}; "
                "`adaptlab suggest` picks which)")
        if ex["summary"] not in why:
            why = f"{why} {ex['summary']}"
    else:
        what = "collect more labels (`adaptlab suggest` picks which)"
        if ex and ex["summary"] not in why:
            why = f"{why} {ex['summary']}"
    return NextExperiment(what=what, why=why, cost="labeling effort; the retrain is one command",
                          rule="curve.more-labels")


def _flips(ev, p, chosen, eligible, cmp, regime) -> list[str]:
    R = ev.rungs
    if chosen is None:
        return [f"run every rung with ≥ {p.min_seeds} seeds; the simplest adapted rung with ≥ {p.min_seeds} seeds "
                "becomes the default."]
    C = R[chosen]
    need = C.mean + p.margin
    out = []
    cband = f"{chosen}'s {_f(C.mean)} ± {_f(C.std)} {_band(C)}"
    # Flips worth naming: rungs still under-seeded, or measured and not far behind; a rung with enough seeds
    # that scores below the choice would need a different experiment, not an inspection.
    higher = [r for r in R if ladder_key(r) > ladder_key(chosen) and r != SCRATCH
              and (R[r].n_seeds < p.min_seeds or R[r].mean >= C.mean or chosen == SCRATCH)]
    if regime and regime.get("recommends") and regime["recommends"] not in R and ladder_key(regime["recommends"]) > ladder_key(chosen):
        higher.append(regime["recommends"])
    # Most promising more-adapted rung first: highest mean (unmeasured ones last).
    higher.sort(key=lambda r: -(R[r].mean if r in R else -1))
    for r in higher:
        if r not in R:
            who = f"{r} with {p.min_seeds} seeds (not run yet)"
        elif R[r].n_seeds < p.min_seeds:
            who = f"{r} with {p.min_seeds} seeds (so far {_pm(R[r])})"
        else:
            who = f"{r} (today {_pm(R[r])}), rerun with more seeds or test items,"
        if chosen == SCRATCH:
            # An adapted rung displaces the scratch baseline as soon as it scores above it (see decide()).
            out.append(f"if {who} scores above the scratch baseline's {_f(C.mean)}, the decision flips to {r}"
                       + (f" (and ships at ≥ {p.ship_threshold:.2f})" if C.mean < p.ship_threshold else "") + ".")
            continue
        if need > 1.0:
            out.append(f"{r} cannot beat {chosen} ({_f(C.mean)}) by the {p.margin:.2f} margin: it would need a mean "
                       f"above 1.0; only a rerun that lowers {chosen}'s own number could change the decision.")
            continue
        ship_note = (f"; ≥ {p.ship_threshold:.2f} to also ship" if need < p.ship_threshold - 1e-9 else "")
        out.append(f"if {who} reaches a mean ≥ {_f(need)} ({_f(C.mean)} + {p.margin:.2f} margin{ship_note}) "
                   f"with a band whose low end is above {_f(C.ci_high)} (not overlapping {cband})"
                   + (" and a paired test-set difference excluding 0" if ev.has_predictions else "")
                   + f", the decision flips to {r}.")
    simpler = [s for s in eligible if ladder_key(s) < ladder_key(chosen)]
    for s in simpler:
        S = R[s]
        c = cmp(s, chosen)
        if s == SCRATCH:
            out.append(f"if a rerun puts {chosen} at or below the scratch baseline tfidf ({_f(S.mean)}), the decision "
                       f"falls back to tfidf; today the lead is {c.diff:+.3f}"
                       + (f" [{_f(c.ci_low)}, {_f(c.ci_high)}]" if c.ci_low is not None else "") + ".")
            continue
        out.append(f"if a rerun (more seeds or more test items) puts {chosen} below {_f(S.mean + p.margin)} "
                   f"({s} {_f(S.mean)} + {p.margin:.2f}) or its band's low end under {_f(S.ci_high)} ({s}'s band "
                   f"{_band(S)}), the decision falls back to {s}; today the lead is {c.diff:+.3f}"
                   + (f" [{_f(c.ci_low)}, {_f(c.ci_high)}]" if c.ci_low is not None else "") + ".")
    if chosen == "refit":
        out.append(f"if the MMD between pretrained and refit embeddings is ≈ 0 (p ≥ {p.mmd_p_value}), the refit did not "
                   "move the representation: drop it and ship the frozen probe.")
    if C.mean >= p.ship_threshold:
        out.append(f"if the {chosen} mean on next quarter's data drops below {p.ship_threshold:.2f}, do not ship it.")
    else:
        out.append(f"if {chosen} reaches a {p.min_seeds}-seed mean ≥ {p.ship_threshold:.2f} (today {_f(C.mean)}), "
                   "it ships.")
    return out
