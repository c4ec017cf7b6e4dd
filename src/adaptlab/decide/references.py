"""Where the decision's rules come from: the one table of sources, printed by the report.

A rule, a reason or a flag names a rule by what it says ("Under 1,000 labels, keep the encoder frozen"),
never by the document it came from: a reader of a decision should not need the project's reading list.
The sources are cited here, once, and the HTML/Markdown report renders this table under its rules (the
documentation's Policy page cites them too). :class:`~adaptlab.decide.policy.Rule` refers to an entry by
its key.

Example:
    >>> from adaptlab.decide.references import REFERENCES, cite
    >>> sorted(REFERENCES)
    ['freezing', 'reuse-or-retrain', 'setfit', 'transfer']
    >>> cite(("reuse-or-retrain", "transfer"))
    '[1], [2]'
"""
from __future__ import annotations

from typing import Sequence

#: key -> (title of the source, what the rules take from it). Order = the numbers the report prints.
REFERENCES: dict[str, dict[str, str]] = {
    "reuse-or-retrain": {
        "title": "Clinic 21: Embedding Reuse Or Retrain",
        "takes": "the rules by label count (few labels: freeze; moderate labels and unlabeled text: refit; many "
                 "labels: adapters, then a full fine-tune), the switch rules (labels grow, a rare failing slice, a "
                 "refit that did not move the embeddings, a refit too slow to rerun), at least 3 seeds, more than "
                 "2 points with bands apart, the 0.80 ship bar, and the case of an end-to-end fine-tune on 5.2k "
                 "labels at 0.73 against 0.78 frozen",
    },
    "transfer": {
        "title": "Seed 001: Transfer and Fine-Tuning note",
        "takes": "the smallest adaptation that works; adapters (PEFT) before partial or full unfreezing; every "
                 "adapted rung compared against a scratch baseline, since negative transfer is real",
    },
    "freezing": {
        "title": "Seed 002: freezing scenarios and encoder choice",
        "takes": "the three freezing scenarios on the ladder (everything frozen, a frozen backbone with a trained "
                 "head, partial or gradual unfreezing) and choosing the encoder from benchmark evidence",
    },
    "setfit": {
        "title": "Tunstall et al. 2022, Efficient Few-Shot Learning Without Prompts (SetFit)",
        "takes": "contrastive tuning on 8-64 labels per class rivals full fine-tuning on thousands, and its lead "
                 "shrinks as labels grow",
    },
}


def reference_number(key: str) -> int:
    """The 1-based number the report prints for source ``key`` (KeyError for an unknown key)."""
    return list(REFERENCES).index(key) + 1


def cite(keys: Sequence[str]) -> str:
    """``[1], [2]`` for the sources ``keys`` (unknown keys are left out)."""
    return ", ".join(f"[{reference_number(k)}]" for k in keys if k in REFERENCES)


def references_table() -> list[dict[str, str | int]]:
    """Every source as ``{"n", "key", "title", "takes"}``, in citation order (what the report renders)."""
    return [{"n": i + 1, "key": k, **v} for i, (k, v) in enumerate(REFERENCES.items())]
