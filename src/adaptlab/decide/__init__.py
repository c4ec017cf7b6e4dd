"""Decide: evidence in, a decision out (policy as data, paired comparisons, transfer note, defense).

Example:
    >>> from adaptlab.decide import Evidence, decide
    >>> d = decide(Evidence.from_tables({"probe": [0.81, 0.82, 0.83], "refit": [0.82, 0.83, 0.84]}))
    >>> d.chosen, d.ship
    ('probe', True)
"""
from adaptlab.decide.decision import Comparison, Decision, Flag, NextExperiment, compare_rungs, decide
from adaptlab.decide.evidence import Evidence, RungEvidence
from adaptlab.decide.policy import RULE_SPECS, Facts, Policy, Rule, evaluate_rules, load_policy, rung_info
from adaptlab.decide.analyses import load_analysis, save_analysis
from adaptlab.decide.curves import learning_curve
from adaptlab.decide.plan import Plan, parse_budget, plan_study
from adaptlab.decide.slices import slice_report
from adaptlab.decide.writeup import Defense, TransferNote, six_question_defense, transfer_note

__all__ = [
    "Comparison", "Decision", "Defense", "Evidence", "Facts", "Flag", "NextExperiment", "Plan", "Policy", "RULE_SPECS",
    "Rule", "RungEvidence", "TransferNote", "compare_rungs", "decide", "evaluate_rules", "learning_curve",
    "load_analysis", "load_policy", "parse_budget", "plan_study", "rung_info", "save_analysis", "six_question_defense",
    "slice_report", "transfer_note",
]
