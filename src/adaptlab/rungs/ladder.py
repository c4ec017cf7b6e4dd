"""Per-rung facts in one place: the ladder's order, each rung's kind and its cost per training step.

The study, the decision-driven allocator (`evaluate.adaptive`), the planner (`decide.plan`) and the policy
(`decide.policy`) all read these; a new rung is added here once. This module imports nothing of adaptlab,
so every stage may use it.

Example:
    >>> from adaptlab.rungs.ladder import LADDER, facts
    >>> LADDER[:3], facts("lora").kind, facts("lora").step_cost
    (('tfidf', 'probe', 'refit'), 'network', 0.7)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["RungFacts", "LADDER_FACTS", "LADDER", "NETWORK_RUNGS", "CHEAP_RUNGS", "LABEL_TRAINED_ENCODER",
           "RELATIVE_STEP_COST", "facts", "ladder_key", "default_rungs"]


@dataclass(frozen=True)
class RungFacts:
    """What the study, the planner and the policy know of a rung before it runs.

    Attributes:
        name: The rung's registry name.
        kind: ``cheap`` (seconds: tfidf, probe), ``shared`` (trained once per study, reused by every seed:
            refit) or ``network`` (trains encoder weights per seed).
        step_cost: Cost of one training step relative to a full fine-tune step (network rungs; LoRA and a
            partial unfreeze backpropagate through less of the network, LP-FT adds its linear probe, a
            SetFit step is ``batch_size`` text pairs, twice the texts of a fine-tune step).
        label_trained_encoder: Training updates encoder weights from the labels (the overfitting risk of a
            few thousand labels).
    """

    name: str
    kind: str
    step_cost: Optional[float] = None
    label_trained_encoder: bool = False


# Simplest first. tfidf is the scratch baseline, probe the first adapted rung. setfit sits after the frozen
# rungs and before lora: its encoder learns from the labels, but only through a pair-similarity objective,
# and it predicts with the same logistic head as probe (issue #16).
LADDER_FACTS = (
    RungFacts("tfidf", "cheap"),
    RungFacts("probe", "cheap"),
    RungFacts("refit", "shared"),
    RungFacts("setfit", "network", 2.0, True),
    RungFacts("lora", "network", 0.95, True),  # measured: 0.85 (RT) to 0.97 (tweets) of a finetune step (MiniLM, 2 cores)
    RungFacts("unfreeze", "network", 0.6, True),
    RungFacts("finetune", "network", 1.0, True),
    RungFacts("lpft", "network", 1.1, True),
)
LADDER = tuple(f.name for f in LADDER_FACTS)
CHEAP_RUNGS = tuple(f.name for f in LADDER_FACTS if f.kind == "cheap")
NETWORK_RUNGS = tuple(f.name for f in LADDER_FACTS if f.kind == "network")
LABEL_TRAINED_ENCODER = tuple(f.name for f in LADDER_FACTS if f.label_trained_encoder)
RELATIVE_STEP_COST = {f.name: f.step_cost for f in LADDER_FACTS if f.step_cost is not None}
_BY_NAME = {f.name: f for f in LADDER_FACTS}


def facts(rung: str) -> RungFacts:
    """The facts of ``rung``; a rung outside the ladder (a plugin) counts as a network rung of unit cost."""
    return _BY_NAME.get(rung) or RungFacts(rung, "network", 1.0, True)


def ladder_key(rung: str) -> tuple[int, str]:
    """Sort key: ladder order, rungs outside the ladder last (by name).

    Example:
        >>> sorted(["lpft", "mine", "tfidf"], key=ladder_key)
        ['tfidf', 'lpft', 'mine']
    """
    return (LADDER.index(rung) if rung in LADDER else len(LADDER), rung)


def default_rungs(*, timed: bool, unlabeled: bool = False) -> list[str]:
    """The rungs a study compares when none are named (``study run`` without ``--rungs``, a study file
    without ``rungs``, the web app's form with no rung ticked).

    Without a time budget: the cheap rungs, ``tfidf`` and ``probe``, the default of every earlier version
    (so the ids of untimed studies stay as they were). With one, the decision-driven study spends it where
    the decision can still change, so it is offered the whole ladder, in ladder order: ``refit`` only with
    unlabeled texts to refit on, ``setfit`` only where the optional ``setfit`` package is installed
    (``pip install 'adaptlab[setfit]'``). Imports nothing (neither torch nor the rungs).

    Example:
        >>> default_rungs(timed=False, unlabeled=True)
        ['tfidf', 'probe']
        >>> [r for r in default_rungs(timed=True) if r != "setfit"]
        ['tfidf', 'probe', 'lora', 'unfreeze', 'finetune', 'lpft']
        >>> "refit" in default_rungs(timed=True, unlabeled=True)
        True
    """
    if not timed:
        return list(CHEAP_RUNGS)
    return [name for name in LADDER
            if not (name == "refit" and not unlabeled) and not (name == "setfit" and not _importable("setfit"))]


def _importable(module: str) -> bool:
    """Whether ``module`` could be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
