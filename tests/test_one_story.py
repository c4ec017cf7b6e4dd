"""One story per decision: the stop reason, the next experiment, the verdicts and the flags never contradict.

Checked over simulated decision-driven studies (tests/simulated_rungs.py: fake rungs of known mean, noise
and cost; budgets from a sixth of the exhaustive grid to all of it, so some studies settle and some run
out of budget), some with budget-bound or memorising network runs, and on the two cases a user reported:
a rung with a next experiment called "found no run of it that could change the decision", and a 5-step
LoRA run flagged both budget-bound and "the signature of overfitting ... do not run it".
"""
from __future__ import annotations

import numpy as np
import pytest

from adaptlab.decide import Evidence, Policy, decide
from simulated_rungs import CLASSES, FakeRung, simulate

# Sentences that say a rung is finished with: none may describe the rung the next experiment runs.
SETTLED = ("no run of it that could change the decision", "could not change the decision", "do not run it")
OVERFIT = ("signature of overfitting", "do not run it")
BOUND = {"stopped_by": "budget_steps", "best": {"step": 5}, "budget": {"steps_used": 5}}
MEMORISED = {"stopped_by": "early_stopping", "best": {"step": 2}, "budget": {"steps_used": 9},
             "overfitting": {"overfitting": True, "best_epoch": 0}}


def world(i: int) -> list[FakeRung]:
    """Cheap baselines near a random base and four network rungs around it (some far below the probe)."""
    rng = np.random.default_rng(500 + i)
    base = rng.uniform(0.65, 0.85)
    rungs = [FakeRung("tfidf", base, 2, "cheap", 0.004), FakeRung("probe", base + rng.uniform(-0.03, 0.03), 1,
                                                                     "cheap", 0.004)]
    for name, secs in (("setfit", 60), ("lora", 200), ("finetune", 300), ("lpft", 340)):
        rungs.append(FakeRung(name, float(np.clip(base + rng.uniform(-0.12, 0.08), 0.3, 0.97)), secs, "network",
                              0.01, gap=rng.uniform(0.0, 0.05)))
    return rungs


def evidence_of(rec: dict, sim, i: int) -> Evidence:
    """The evidence a stored decision-driven study gives the decision: per rung, its full-budget seeds, else
    its runs at the highest share of the budget; some network rungs' diagnostics budget-bound or memorising."""
    rng = np.random.default_rng(i)
    preds, fid = {}, {}
    for name in sim.rungs:
        obs = [o for o in sim.allocator.obs if o.rung == name]
        if not obs:
            continue
        top = max(o.fidelity for o in obs)
        by_seed = {o.seed: o for o in obs if o.fidelity == top}
        preds[name] = [list(o.predictions) for o in by_seed.values()]
        fid[name] = top
    ev = Evidence.from_tables({r: None for r in preds}, predictions=preds, y_true=list(sim.y_true),
                              classes=CLASSES, n_labels=int(rng.integers(300, 20_000)), n_boot=200)
    for name, e in ev.rungs.items():
        e.fidelity = fid[name]
        if name not in ("tfidf", "probe"):
            kind = rng.choice(["none", "bound", "memorised", "mixed"])
            per = {"none": {}, "bound": BOUND, "memorised": MEMORISED}
            e.diagnostics = [{"seed": s, **(per[kind] if kind != "mixed" else (BOUND if s % 2 else MEMORISED))}
                             for s in range(e.n_seeds)]
    ev.allocation = rec
    return ev


def under_trained(e) -> bool:
    return e.fidelity < 1 or any(d.get("stopped_by") == "budget_steps" and d["best"]["step"] ==
                                 d["budget"]["steps_used"] for d in e.diagnostics)


def contradictions(d, ev) -> list[str]:
    """Every pair of statements in the decision that tell two stories; [] when there is one."""
    out = []
    text_of = {r["rung"]: r["verdict"] for r in d.rungs}
    flags_of: dict = {}
    for f in d.flags:
        flags_of.setdefault(f.rung, []).append(f.message)
    nxt = d.next_experiment
    stop = ((ev.allocation or {}).get("stop") or {}).get("kind")
    if nxt is not None and nxt.rung is not None:
        said = [text_of.get(nxt.rung, "")] + flags_of.get(nxt.rung, [])
        out += [f"next experiment runs {nxt.rung}, yet: {s}" for s in said if any(w in s for w in SETTLED)]
    if stop == "settled" and nxt is not None and nxt.rule == "allocation.value-per-cost":
        out.append(f"stopped as settled (no run could change the decision), yet the next experiment is {nxt.what}")
    for name, e in ev.rungs.items():
        said = [text_of.get(name, "")] + flags_of.get(name, [])
        if under_trained(e):
            out += [f"{name} is under-trained, yet: {s}" for s in said if any(w in s for w in OVERFIT)]
        if text_of.get(name, "").startswith("not enough seeds"):
            out += [f"{name} needs seeds, yet: {s}" for s in said if "do not run it" in s]
    return out


@pytest.fixture(scope="module")
def decisions():
    out = []
    for i in range(48):
        rungs = world(i)
        exhaustive = sum(3 * r.seconds for r in rungs)
        share = (1 / 6, 1 / 3, 1.0)[i % 3]
        rec, sim = simulate(rungs, exhaustive * share, seed=i, n_draws=400, n_boot=200)
        ev = evidence_of(rec, sim, i)
        out.append((rec, ev, decide(ev, Policy(n_boot=300))))
    return out


def test_simulated_studies_cover_both_stops_and_under_trained_rungs(decisions):
    stops = {rec["stop"]["kind"] for rec, _, _ in decisions}
    assert stops == {"settled", "budget"}
    assert any(d.next_experiment is not None and d.next_experiment.rung for _, _, d in decisions)
    assert any(under_trained(e) and e.mean < ev.rungs["probe"].mean
               for _, ev, _ in decisions for n, e in ev.rungs.items() if n not in ("tfidf", "probe"))


def test_no_simulated_decision_tells_two_stories(decisions):
    found = [(i, c) for i, (_, ev, d) in enumerate(decisions) for c in contradictions(d, ev)]
    assert found == []


def test_a_rung_with_a_next_experiment_is_not_called_settled():
    """The reported case: out of budget, setfit screened once, and the next run is setfit's."""
    ev = Evidence.from_tables({"tfidf": [0.80, 0.81, 0.80], "probe": [0.82, 0.83, 0.82], "setfit": [0.83]},
                              n_labels=600)
    ev.rungs["setfit"].fidelity = 0.25
    ev.allocation = {"stop": {"kind": "budget", "reason": "the budget is spent"}, "config": {"min_seeds": 3},
                     "drops": [], "cells": [], "provisional": "probe", "budget_seconds": 120, "compute_seconds": 118,
                     "next": {"rung": "setfit", "seed": 0, "fidelity": 1.0, "phase": "promote",
                              "flip_probability": 0.3, "estimate_seconds": 60.0, "why": "promote", "provisional": "probe"}}
    d = decide(ev)
    assert d.next_experiment.rung == "setfit" and "setfit" in d.next_experiment.what
    assert "no run of it that could change" not in d.verdict("setfit")
    assert "next experiment" in d.verdict("setfit") and contradictions(d, ev) == []
    # Settled: no run is next, and the verdict may then say so.
    ev.allocation["stop"] = {"kind": "settled", "reason": "no affordable run could flip the decision"}
    d = decide(ev)
    assert d.next_experiment is None or d.next_experiment.rule != "allocation.value-per-cost"
    assert "no run of it that could change the decision" in d.verdict("setfit") and contradictions(d, ev) == []


def test_a_budget_bound_run_below_the_probe_is_under_trained_not_overfit():
    """The reported case: a 5-step lora run, budget-bound, below the probe. Under-trained wins."""
    ev = Evidence.from_tables({"probe": [0.94, 0.95, 0.94], "lora": [0.26, 0.27, 0.25]}, n_labels=200)
    ev.rungs["lora"].diagnostics = [{"seed": s, **BOUND} for s in range(3)]
    d = decide(ev)
    flag = d.flags_for("decision.below-frozen")[0]
    assert "under-trained, not overfit" in flag.message and "longer --budget" in flag.message
    assert "signature of overfitting" not in flag.message and "do not run it" not in flag.message
    assert "under-trained" in d.verdict("lora") and contradictions(d, ev) == []
    # The same scores after training that ended on its own: now it is the overfitting signature.
    ev.rungs["lora"].diagnostics = [{"seed": s, **MEMORISED} for s in range(3)]
    flag = decide(ev).flags_for("decision.below-frozen")[0]
    assert "signature of overfitting" in flag.message and "do not run it" in flag.message


def test_the_rung_table_never_counts_a_budget_bound_seed_as_overfit():
    from types import SimpleNamespace

    from adaptlab.evaluate.report import _flags, network_signatures

    both = {**BOUND, "overfitting": {"overfitting": True, "best_epoch": 0}, "movement": {}}
    res = SimpleNamespace(rows=[{"rung": "lora", "mean": 0.3, "ci_low": 0.2, "ci_high": 0.4}],
                          per_seed=[{"rung": "lora", "seed": 0, "diagnostics": both},
                                    {"rung": "lora", "seed": 1, "diagnostics": {**MEMORISED, "movement": {}}}])
    sig = network_signatures(res)["lora"]
    assert sig["n_budget_bound"] == 1 and sig["n_overfitting"] == 1  # seed 0 is budget-bound only
    assert _flags(sig) == "overfit 1/2 (ep 0); budget-bound 1/2"
