"""The written justification: a transfer note and a six-question defense of the pick, from the evidence.

Every sentence is built from the decision and the evidence it rests on; when a number is missing the
text says what was not measured instead of filling in a canned claim.

Example:
    >>> from adaptlab.decide import Evidence, decide
    >>> ev = Evidence.from_tables({"probe": [0.77, 0.78, 0.79], "finetune": [0.69, 0.73, 0.77]}, n_labels=5200)
    >>> d = decide(ev)
    >>> "0.730" in six_question_defense(d, ev).answers[1].answer
    True
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from adaptlab.decide.decision import Decision, _band, _f, _hours, _pm, _under_trained
from adaptlab.decide.evidence import Evidence, ladder_key
from adaptlab.decide.policy import LABEL_TRAINED_ENCODER, SCRATCH, Policy, rung_info
from adaptlab.rungs.ladder import CHANGED_ENCODER, FROZEN, facts


def _policy(decision: Decision) -> Policy:
    return Policy.from_dict(decision.policy)


def _diag_mean(diags: list[dict[str, Any]], *needles: str) -> Optional[float]:
    """Mean over seeds of the first numeric diagnostics value whose key contains every needle."""
    vals = []
    for d in diags:
        stack = [d]
        while stack:
            cur = stack.pop()
            for k, v in cur.items():
                if isinstance(v, dict):
                    stack.append(v)
                elif (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                      and all(n in str(k).lower() for n in needles)):
                    vals.append(float(v))
                    break
    return float(np.mean(vals)) if vals else None


def _comparison(decision: Decision, a: str, b: str):
    try:
        return decision.comparison(a, b)
    except KeyError:
        return None


@dataclass
class TransferNote:
    """What was frozen, what was trainable and why, the result vs simpler reuse, and what would justify more.

    Example:
        >>> from adaptlab.decide import Evidence, decide, transfer_note
        >>> ev = Evidence.from_tables({"probe": [0.81, 0.82, 0.83], "refit": [0.82, 0.83, 0.84]})
        >>> note = transfer_note(decide(ev), ev)
        >>> note.rung, note.frozen
        ('probe', 'the whole pretrained encoder (every transformer block and the pooling).')
    """

    rung: Optional[str]
    frozen: str
    trainable: str
    why: str
    result_vs_simpler: str
    unfreeze_more: str
    negative_transfer: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict."""
        return asdict(self)

    def items(self) -> list[tuple[str, str]]:
        """The note's fields as (heading, text) pairs, in reading order."""
        out = [("What was frozen", self.frozen), ("What was trainable", self.trainable),
               ("Why this depth", self.why), ("Result vs simpler reuse", self.result_vs_simpler),
               ("Evidence that would justify unfreezing more", self.unfreeze_more)]
        if self.negative_transfer:
            out.append(("Negative transfer", self.negative_transfer))
        return out

    def to_markdown(self) -> str:
        """The note as a Markdown list, one bold heading per field."""
        return "\n".join(f"- **{k}.** {v}" for k, v in self.items())


def transfer_note(decision: Decision, evidence: Evidence) -> TransferNote:
    """The transfer note for the chosen rung (what is frozen, what trains, why this depth), with the evidence's numbers.

    Example:
        >>> from adaptlab.decide import Evidence, decide, transfer_note
        >>> ev = Evidence.from_tables({"probe": [0.81, 0.82, 0.83], "refit": [0.82, 0.83, 0.84]})
        >>> note = transfer_note(decide(ev), ev)
        >>> note.rung, bool(note.why), bool(note.result_vs_simpler)
        ('probe', True, True)
    """
    p = _policy(decision)
    ev, R = evidence, evidence.rungs
    chosen = decision.chosen
    if chosen is None:
        missing = ", ".join(f"{r} ({R[r].n_seeds} seed(s))" for r in R)
        return TransferNote(None, "nothing yet: no rung has enough seeds to be chosen.", "n/a",
                            f"every rung needs ≥ {p.min_seeds} seeds; measured: {missing}.", "n/a",
                            decision.flip_inspection)
    frozen, trainable = _frozen_and_trainable(chosen, ev)
    more_txt = _what_would_justify_more(decision, ev, p)
    return TransferNote(chosen, frozen, trainable, _why_this_depth(decision, ev, p), _result_vs_simpler(decision, ev),
                        more_txt or decision.flip_inspection, _negative_transfer_seen(ev))


def _frozen_and_trainable(chosen: str, ev: Evidence) -> tuple[str, str]:
    """The note's "frozen" and "trainable" fields: the rung's words, with the encoder's and the head's sizes."""
    info, enc, R = rung_info(chosen), ev.encoder or {}, ev.rungs
    enc_txt = ""
    if enc.get("name"):
        n_par = enc.get("n_parameters")
        enc_txt = f" — {enc['name']}" + (f", {n_par:,} parameters" if isinstance(n_par, int) else "") + \
                  (f", {enc.get('dim')}-dim embeddings" if enc.get("dim") else "")
    frozen = info["frozen"] + (enc_txt if chosen != SCRATCH else "") + "."
    trainable = info["trainable"]
    n_classes = len(ev.classes) or None
    # A logistic head on the encoder's own embeddings (what a retrain refits: probe, and refit's frozen head).
    if facts(chosen).retrain_as == FROZEN and enc.get("dim") and n_classes:
        k = 1 if n_classes == 2 else n_classes
        trainable += f": {enc['dim']} × {k} weights + {k} bias(es) = {enc['dim'] * k + k:,} parameters"
    tp = _diag_mean(R[chosen].diagnostics, "trainable")
    if tp is not None:
        trainable += f" (diagnostics: {tp:,.0f} trainable parameters on average over seeds)"
    trainable += "."
    gate = (ev.training_precision or {}).get(chosen)
    if gate:  # mixed_precision="auto": which precision it trained in, and the gate's numbers
        trainable += f" Trained in {gate.get('precision')}: {gate.get('message')}."
    return frozen, trainable


def _why_this_depth(decision: Decision, ev: Evidence, p: Policy) -> str:
    """The decision's own reasons, condensed to the comparison that set the depth."""
    R, chosen = ev.rungs, decision.chosen
    simpler = [s for s in R if ladder_key(s) < ladder_key(chosen) and s != SCRATCH and R[s].n_seeds >= p.min_seeds]
    higher = [r for r in R if ladder_key(r) > ladder_key(chosen)]
    why_parts = []
    if chosen == SCRATCH:
        adapted = [r for r in R if r != SCRATCH]
        why_parts.append("no adapted rung beats the scratch baseline, so no pretrained encoder is used: "
                         + ", ".join(f"{r} {_f(R[r].mean)} vs tfidf {_f(R[SCRATCH].mean)}" for r in adapted)
                         if adapted else "only the scratch baseline was measured")
    elif simpler:
        c = _comparison(decision, simpler[-1], chosen)
        why_parts.append(f"it beats the simpler {simpler[-1]} by {c.diff:+.3f} (≥ {p.margin:.2f} margin, bands apart"
                         f"{', paired CI [' + _f(c.ci_low) + ', ' + _f(c.ci_high) + ']' if c.paired else ''})")
    else:
        why_parts.append(f"it is the smallest adaptation measured with ≥ {p.min_seeds} seeds")
    for r in higher:
        why_parts.append(f"{r} {_pm(R[r])}: {decision.verdict(r)}")
    if decision.regime:
        rule = decision.regime.get("title") or decision.regime["rule"]
        why_parts.append(f"the rule \"{rule}\" suggests {decision.regime['recommends']} "
                         f"({decision.regime['condition']})"
                         + ("" if decision.regime.get("agrees") else "; the measurements, not the rule, set the depth"))
    return "; ".join(why_parts) + "."


def _result_vs_simpler(decision: Decision, ev: Evidence) -> str:
    """The chosen rung against the simpler reuse option: the frozen probe, or the scratch baseline when the
    probe is chosen (and the probe when the scratch baseline is)."""
    R, chosen = ev.rungs, decision.chosen
    ref = FROZEN if chosen not in (FROZEN, SCRATCH) and FROZEN in R else (
        SCRATCH if SCRATCH in R and chosen != SCRATCH else None)
    if chosen == SCRATCH and FROZEN in R:
        ref = FROZEN
    if ref is None:
        return f"{chosen} {_pm(R[chosen])} {_band(R[chosen])}; no simpler reuse option was measured."
    c = _comparison(decision, ref, chosen) or _comparison(decision, chosen, ref)
    sign = 1 if c.other == chosen else -1
    res = (f"{chosen} {_pm(R[chosen])} {_band(R[chosen])} vs {ref} {_pm(R[ref])} {_band(R[ref])}: "
           f"difference {sign * c.diff:+.3f}")
    if c.ci_low is not None:
        lo, hi = (c.ci_low, c.ci_high) if sign == 1 else (-c.ci_high, -c.ci_low)
        res += f" [{_f(lo)}, {_f(hi)}] ({c.method})"
    res += "."
    if R[ref].fit_seconds_mean and R[chosen].fit_seconds_mean:
        res += (f" Cost per seed: {chosen} {_hours(R[chosen].fit_seconds_mean)} vs {ref} "
                f"{_hours(R[ref].fit_seconds_mean)}.")
    return res


def _what_would_justify_more(decision: Decision, ev: Evidence, p: Policy) -> str:
    """What would justify unfreezing more: the flips, the label thresholds, backbone movement, the worst slice."""
    R = ev.rungs
    more = [f for f in decision.flips if f.startswith("if ") and "flips to" in f][:2]
    more_txt = " ".join(m[0].upper() + m[1:] for m in more)
    if ev.n_labels is not None:
        more_txt += (f" Labels: {ev.n_labels:,} today; at ≥ {p.lora_switch_labels:,} the switch rule says try LoRA "
                     f"adapters, and full fine-tuning needs > {p.full_ft_labels:,}.")
    mv = None
    for r in R:
        if r in LABEL_TRAINED_ENCODER:
            m = _diag_mean(R[r].diagnostics, "movement") or _diag_mean(R[r].diagnostics, "weight", "change")
            if m is not None:
                mv = (r, m)
    if mv:
        more_txt += f" Backbone movement of {mv[0]}: {mv[1]:.4g} (relative weight change) — watch it before unfreezing more."
    if ev.slices:
        worst = sorted(ev.slices, key=lambda s: s.get("f1", 1.0))[0]
        more_txt += (f" Domain slice check: worst slice {worst['slice']} F1 {_f(worst.get('f1'))} vs {_f(ev.overall_f1)} "
                     "overall; unfreezing only helps if it lifts that slice, not just the average.")
    return more_txt.strip()


def _negative_transfer_seen(ev: Evidence) -> str:
    """Rungs whose mean fell below the frozen probe (or the scratch baseline), and the probe below scratch."""
    R, neg = ev.rungs, []
    for r in R:
        if r in (SCRATCH, FROZEN):
            continue
        if FROZEN in R and R[r].mean < R[FROZEN].mean:
            neg.append(f"{r} {_f(R[r].mean)} < frozen probe {_f(R[FROZEN].mean)}")
        elif SCRATCH in R and R[r].mean < R[SCRATCH].mean:
            neg.append(f"{r} {_f(R[r].mean)} < scratch tfidf {_f(R[SCRATCH].mean)}")
    if SCRATCH in R and FROZEN in R and R[FROZEN].mean < R[SCRATCH].mean:
        neg.append(f"frozen probe {_f(R[FROZEN].mean)} < scratch tfidf {_f(R[SCRATCH].mean)}")
    return ("Seen: " + "; ".join(neg) + " — deeper adaptation (or pretraining) made it worse.") if neg else ""


@dataclass
class DefenseAnswer:
    question: str
    answer: str


@dataclass
class Defense:
    """The six questions a reviewer asks of the decision, each answered from the evidence (``to_markdown`` for a write-up).

    Example:
        >>> from adaptlab.decide import Evidence, decide, six_question_defense
        >>> ev = Evidence.from_tables({"probe": [0.81, 0.82, 0.83], "refit": [0.82, 0.83, 0.84]})
        >>> defense = six_question_defense(decide(ev), ev)
        >>> len(defense.answers), defense.to_markdown().splitlines()[0][:60]
        (6, '1. **Which approach do you commit — reuse the frozen encoder')
    """
    answers: list[DefenseAnswer] = field(default_factory=list)

    def to_dict(self) -> list[dict[str, str]]:
        """The answers as a list of ``{"question": ..., "answer": ...}``."""
        return [asdict(a) for a in self.answers]

    def to_markdown(self) -> str:
        """The answers as a numbered Markdown list, each question in bold."""
        return "\n".join(f"{i}. **{a.question}** {a.answer}" for i, a in enumerate(self.answers, 1))


def six_question_defense(decision: Decision, evidence: Evidence) -> Defense:
    """Six questions a reviewer asks of the pick, answered from the decision and its evidence (one short paragraph each).

    Example:
        >>> from adaptlab.decide import Evidence, decide, six_question_defense
        >>> ev = Evidence.from_tables({"probe": [0.81, 0.82, 0.83], "refit": [0.82, 0.83, 0.84]})
        >>> answers = six_question_defense(decide(ev), ev).answers
        >>> [a.question for a in answers][:2]
        ['Which approach do you commit — reuse the frozen encoder or adapt it?', 'Would you run end-to-end fine-tuning at all, given an unknown number of labels?']
    """
    p = _policy(decision)
    n_lab = f"{evidence.n_labels:,}" if evidence.n_labels is not None else "an unknown number of"
    questions = (_q_commit, _q_end_to_end, _q_inspection, _q_drop_refit, _q_rerun, _q_min_labels)
    return Defense([q(decision, evidence, p, n_lab) for q in questions])


def _q_commit(decision: Decision, ev: Evidence, p: Policy, n_lab: str) -> DefenseAnswer:
    """1. Commit."""
    R, chosen = ev.rungs, decision.chosen
    a1 = decision.headline
    if chosen and "probe" in R and chosen not in ("probe",):
        c = _comparison(decision, "probe", chosen) or _comparison(decision, chosen, "probe")
        if c is not None:
            a1 += f" Against reusing the frozen encoder as is: {c.note}."
    elif chosen == "probe":
        adapted = [r for r in R if ladder_key(r) > ladder_key("probe")]
        a1 += (" Reuse the pretrained encoder frozen: " + "; ".join(f"{r} {_pm(R[r])} — {decision.verdict(r)}"
                                                                  for r in adapted) + "." if adapted else
               " No adaptation beyond the frozen encoder was measured.")
    return DefenseAnswer("Which approach do you commit — reuse the frozen encoder or adapt it?", a1)


def _q_end_to_end(decision: Decision, ev: Evidence, p: Policy, n_lab: str) -> DefenseAnswer:
    """2. End-to-end fine-tuning at this label count."""
    R, chosen = ev.rungs, decision.chosen
    e2e = [r for r in R if r in LABEL_TRAINED_ENCODER]
    if e2e:
        parts = []
        for r in e2e:
            ref = "probe" if "probe" in R else None
            gap = f", {R[r].mean - R[ref].mean:+.3f} vs the frozen probe" if ref else ""
            parts.append(f"{r} scored {_pm(R[r])}{gap} ({decision.verdict(r)})")
        yes = chosen in e2e
        a2 = (("Yes — it is the justified choice: " if yes else "No: ") + "; ".join(parts) + ".")
        under = [r for r in e2e if _under_trained(R[r])]
        if under:
            # One story: a run its budget cut short is under-trained; it shows nothing about overfitting.
            a2 += (f" {', '.join(under)} did not finish training ({'; '.join(_under_trained(R[r]) for r in under)}): "
                   "a longer --budget is needed before its score says anything about overfitting.")
        elif not yes and ev.n_labels is not None and ev.n_labels < p.adapter_labels:
            a2 += (f" With {n_lab} labels (< {p.adapter_labels:,}) unfreezing the encoder overfits the labels; "
                   "a lower score than the frozen counterpart is that signature.")
    else:
        reg = decision.regime
        a2 = (f"Not measured in this study. With {n_lab} labels the rule by data size points to "
              f"{reg['recommends'] if reg else 'no rung'}; adapters start at {p.adapter_labels:,} labels and "
              f"full fine-tuning at > {p.full_ft_labels:,}, so I would " +
              ("not run it" if ev.n_labels is not None and ev.n_labels < p.adapter_labels else "run LoRA adapters first")
              + ".")
    return DefenseAnswer(f"Would you run end-to-end fine-tuning at all, given {n_lab} labels?", a2)


def _q_inspection(decision: Decision, ev: Evidence, p: Policy, n_lab: str) -> DefenseAnswer:
    """3. The inspection separating a real gain from one run's noise."""
    R, chosen = ev.rungs, decision.chosen
    cand = next((r for r in CHANGED_ENCODER if r in R and r != chosen), None)  # the first adaptation run
    target = chosen if chosen not in (None, "probe", SCRATCH) else cand
    if target and "probe" in R and target != "probe":
        c = _comparison(decision, "probe", target)
        a3 = (f"The linear-probe gap over ≥ {p.min_seeds} seeds with non-overlapping bands: {target} vs probe today is "
              f"{c.note}; {target} has {R[target].n_seeds} seed(s). It counts as real only if the "
              f"{p.min_seeds}-seed gap is ≥ {p.margin:.2f} with bands apart"
              + (" and the paired test-set difference excludes 0" if c.paired else "") + ".")
    else:
        a3 = (f"The gap between rungs over ≥ {p.min_seeds} seeds with non-overlapping bands (margin {p.margin:.2f}); "
              "only the frozen probe and the scratch baseline were measured here, so the inspection is to run the "
              "adapted rung with 3 seeds.")
    a3 += f" Concretely: {decision.flip_inspection}"
    return DefenseAnswer('What single inspection separates "real domain gain" from "random noise from one run"?', a3)


def _q_drop_refit(decision: Decision, ev: Evidence, p: Policy, n_lab: str) -> DefenseAnswer:
    """4. What would make you drop the MLM-refit plan."""
    R = ev.rungs
    conds = [f"its {p.min_seeds}-seed mean stays below {p.ship_threshold:.2f}",
             f"its gap over the frozen probe is < {p.margin:.2f} or the bands overlap",
             f"MMD between pretrained and refit embeddings is ≈ 0 (p ≥ {p.mmd_p_value})"]
    today = []
    if "refit" in R:
        rf = R["refit"]
        today.append(f"refit {_pm(rf)} {_band(rf)}")
        if "probe" in R:
            c = _comparison(decision, "probe", "refit")
            bands = {None: "no band for a single run", True: "bands overlap", False: "bands apart"}[c.bands_overlap]
            today.append(f"gap {c.diff:+.3f} ({bands})")
    if ev.mmd_p_value is not None:
        today.append(f"MMD {_f(ev.mmd, 4)} with p = {_f(ev.mmd_p_value)} ({ev.mmd_source or 'study diagnostics'})")
    else:
        today.append("MMD not measured yet")
    if ev.refit_hours is not None:
        today.append(f"refit took {ev.refit_hours:.1f} h")
    sh = ev.domain_shift or {}
    shm = sh.get("mmd") if isinstance(sh.get("mmd"), dict) else sh
    if isinstance(shm, dict) and isinstance(shm.get("p_value"), (int, float)):
        moved = shm["p_value"] < p.mmd_p_value
        today.append(f"domain shift of the in-domain texts vs {sh.get('reference', 'general text')}: MMD² "
                     f"{_f(shm.get('mmd2'), 4)}, p = {_f(shm['p_value'])} ("
                     + ("a refit has something to learn" if moved else "no detectable shift: a refit has little to learn")
                     + ")")
    a4 = "Drop the refit if " + "; or ".join(conds) + ". Today: " + "; ".join(today) + "."
    if "refit" not in R:
        a4 += (" The refit was not run" + (f"; with {ev.n_unlabeled:,} unlabeled texts" if ev.n_unlabeled else
                                           "; no unlabeled in-domain texts were given")
               + f" (a refit needs ≥ {p.refit_min_unlabeled:,}).")
    elif decision.verdict("refit").startswith(("not enough", "gap treated", "rejected", "no gain", "tie")):
        a4 += f" Current verdict on refit: {decision.verdict('refit')}."
    return DefenseAnswer("What would make you drop the MLM-refit plan?", a4)


def _q_rerun(decision: Decision, ev: Evidence, p: Policy, n_lab: str) -> DefenseAnswer:
    """5. Someone without an engineer reruns it next quarter."""
    R, chosen = ev.rungs, decision.chosen
    if chosen:
        info = rung_info(chosen)
        cost = R[chosen].fit_seconds_mean
        a5 = (f"{chosen} reruns as {info['rerun']}" + (f", {_hours(cost)} per seed here" if cost is not None else "")
              + ("; it needs an engineer in the loop" if info["needs_engineer"] else "; anyone can rerun it, no engineer needed")
              + ".")
        fancier = [r for r in R if rung_info(r)["needs_engineer"] and r != chosen and R[r].n_seeds >= 1]
        if fancier and not info["needs_engineer"]:
            best = max(fancier, key=lambda r: R[r].mean)
            gain = R[best].mean - R[chosen].mean
            a5 += f" The best pipeline that needs a training loop, {best}, is {gain:+.3f} vs {chosen}; "
            a5 += (f"a gain below {p.margin:.2f} is not worth a pipeline only an engineer can rerun." if gain < p.margin
                   else f"its lead is not established ({decision.verdict(best)}), and it would need an engineer to rerun.")
        if ev.refit_hours is not None and chosen == "refit":
            a5 += (f" The refit took {ev.refit_hours:.1f} h" + (f" > {p.refit_max_hours:g} h: tell whoever reruns it that "
                   "rerunning the refit needs an engineer; the head alone refits in one call."
                   if ev.refit_hours > p.refit_max_hours else f" (≤ {p.refit_max_hours:g} h): a scheduled job can redo it."))
    else:
        a5 = "No rung is chosen yet; nobody can rerun anything until one is."
    return DefenseAnswer("Someone without an engineer reruns this next quarter: how does that affect the pick?", a5)


def _q_min_labels(decision: Decision, ev: Evidence, p: Policy, n_lab: str) -> DefenseAnswer:
    """6. Minimum labels for full end-to-end fine-tuning."""
    R = ev.rungs
    a6 = (f"Adapters (LoRA) from {p.adapter_labels:,} labels — try them once labels reach {p.lora_switch_labels:,} — and "
          f"full end-to-end fine-tuning above {p.full_ft_labels:,} labels with the compute for it.")
    if ev.n_labels is not None:
        a6 += f" Today: {ev.n_labels:,} labels ({ev.n_labels / p.lora_switch_labels:.0%} of the LoRA switch point)."
    lc = ev.learning_curve
    if lc and lc.get("summary"):
        a6 += f" Learning curve: {lc['summary']}"
    if "finetune" in R and "probe" in R:
        a6 += (f" Measured here: finetune {_f(R['finetune'].mean)} vs probe {_f(R['probe'].mean)} "
               f"({R['finetune'].mean - R['probe'].mean:+.3f}).")
    return DefenseAnswer("What is the minimum labeled-data count at which you would switch to full end-to-end "
                         "fine-tuning?", a6)
