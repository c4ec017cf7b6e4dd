"""The rung catalogue (issue #32): one record per rung, read by every stage; rung names stay in `rungs/`.

`adaptlab.rungs.ladder` holds what the program knows of each rung (kind, words, main parameters, cost
shape, how it retrains); each rung saves and loads its own shipped artifact. These tests keep it that way:
every registered rung has a complete record, the tables the catalogue replaced stay gone, and the rung-name
string literals outside `adaptlab/rungs/` can only become fewer (a ratchet).
"""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from adaptlab.rungs import RUNGS, Rung
from adaptlab.rungs import ladder
from adaptlab.rungs.ladder import COST_SHAPES, KINDS, LADDER, LADDER_FACTS, catalogued, facts

SRC = Path(__file__).resolve().parents[1] / "src" / "adaptlab"
# Rung-name literals outside adaptlab/rungs/ when the catalogue landed (issue #32: 226 before it). The
# decision policy names rungs on purpose (its rules say "refit", "lora") and is not counted. Lower this
# number when a change removes some; never raise it: a new rung fact belongs in the catalogue.
RUNG_LITERALS_RATCHET = 109  # 145 until TRANSFER_BASELINES, FINE_TUNED_RUNGS and the plan read the records
INTENDED = {"decide/policy.py"}
# Words that are a rung's name and something else in these files: the web app's static-files folder.
HOMONYMS = {("ui/app.py", "static")}


@pytest.mark.parametrize("name", sorted(RUNGS))
def test_every_registered_rung_has_a_complete_record(name):
    cls = RUNGS[name]
    assert catalogued(name), f"rung {name!r} is registered but has no record in adaptlab.rungs.ladder"
    f = facts(name)
    assert f.kind in KINDS and f.cost_shape in COST_SHAPES and f.default in ("always", "timed", "never")
    for text in ("label", "short", "words", "frozen", "trainable", "rerun"):
        assert getattr(f, text).strip(), f"{name}: {text} is empty"
    fields = {x.name for x in dataclasses.fields(cls.config_class)}
    assert f.main_parameters and set(f.main_parameters) <= fields, (name, set(f.main_parameters) - fields)
    assert f.uses_encoder == cls.uses_encoder  # read from the record (FromCatalogue), never declared twice
    assert (f.kind == "network") <= bool(cls.trains_network)
    assert (f.kind == "network") == (f.step_cost is not None) == (f.cost_shape in ("steps", "pairs"))
    assert f.retrain_as is None or catalogued(f.retrain_as)
    assert f.requires is None or len(f.requires) == 2
    assert f.position == LADDER.index(name)
    # Its shipped artifact is its own: the rung loads it (ship/ names no rung).
    assert cls.load_artifact.__func__ is not Rung.load_artifact.__func__, f"{name} has no load_artifact"


def test_every_record_is_a_registered_rung_in_ladder_order():
    assert [f.name for f in LADDER_FACTS] == list(LADDER)
    assert set(LADDER) <= set(RUNGS)
    assert [f.position for f in LADDER_FACTS] == list(range(len(LADDER)))


def test_rung_classes_read_uses_encoder_from_the_record():
    # One source of truth: no rung module declares the attribute its record holds.
    declared = [p.relative_to(SRC).as_posix() for p in (SRC / "rungs").rglob("*.py")
                if any(line.strip().startswith(("uses_encoder = True", "uses_encoder = False"))
                       for line in p.read_text(encoding="utf-8").splitlines())]
    assert not declared, declared
    assert RUNGS["tfidf"].uses_encoder is False and RUNGS["lora"].uses_encoder is True

    class Plugin(Rung):  # a rung outside the catalogue keeps its class's default, or sets its own
        name = "my-plugin"

    class EncoderPlugin(Plugin):
        name = "my-encoder-plugin"
        uses_encoder = True

    assert Plugin.uses_encoder is False and EncoderPlugin.uses_encoder is True


def test_catalogue_tables_are_derived_from_the_records():
    from adaptlab.diagnostics import FINE_TUNED_RUNGS
    from adaptlab.rungs.overfit import TRANSFER_BASELINES as nearest_first

    assert ladder.TRANSFER_BASELINES == ("tfidf", "probe") and nearest_first == ("probe", "tfidf")
    assert set(FINE_TUNED_RUNGS) == {f.name for f in LADDER_FACTS if f.label_trained_encoder}
    assert {"lora", "unfreeze", "finetune", "lpft"} <= set(FINE_TUNED_RUNGS)
    assert ladder.CHANGED_ENCODER[0] == "refit" and "probe" not in ladder.CHANGED_ENCODER
    assert [f.name for f in LADDER_FACTS if f.few_labels_ok] == ["setfit"]


def test_unknown_rungs_get_a_neutral_record():
    f = facts("my-plugin")
    assert not catalogued("my-plugin") and f.kind == "network" and f.label == "my-plugin"
    assert f.position == len(LADDER) and f.needs_engineer


def test_default_rungs_keep_the_ids_of_untimed_studies():
    # An untimed study without --rungs compares tfidf and probe, as every earlier version did.
    assert ladder.default_rungs(timed=False) == [f.name for f in LADDER_FACTS if f.default == "always"]
    assert ladder.default_rungs(timed=False) == ["tfidf", "probe"]


def test_the_tables_the_catalogue_replaced_are_gone():
    gone = ("RUNG_INFO", "_RUNG_WORDS", "_SHIPPABLE", "MAIN_PARAMETERS", "PLANNED_RUNGS", "OPTIMIZER_SHARE")
    found = [(p.relative_to(SRC).as_posix(), name) for p in SRC.rglob("*.py")
             for name in gone if name in p.read_text(encoding="utf-8")]
    assert not found, found


def _rung_literals(path: Path, rel: str) -> int:
    """String constants equal to a rung name (docstrings are prose, not counted)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return sum(1 for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and n.value in LADDER and id(n) not in docs and (rel, n.value) not in HOMONYMS)


def test_rung_names_outside_the_rungs_package_only_become_fewer():
    counts = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if not rel.startswith("rungs/") and rel not in INTENDED:
            counts[rel] = _rung_literals(path, rel)
    total = sum(counts.values())
    worst = sorted(((n, rel) for rel, n in counts.items() if n), reverse=True)[:8]
    assert total <= RUNG_LITERALS_RATCHET, (
        f"{total} rung-name literals outside adaptlab/rungs/ (ratchet {RUNG_LITERALS_RATCHET}); most in {worst}. "
        "Put the rung fact in the catalogue (adaptlab.rungs.ladder) and read it from there.")
