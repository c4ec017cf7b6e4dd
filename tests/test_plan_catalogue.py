"""The planner and the `--rungs` help read the rung catalogue (issue #32): `static` is costed by its record's
cost shape (a one-time distillation, then texts encoded ~100x faster than by the encoder, and a head), and
`study run --help` / `plan --help` list every catalogued rung."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.decide.calibrate import Calibration
from adaptlab.decide.plan import (
    DEFAULT_VOCABULARY, DISTIL_TOKENS_PER_ENTRY, estimate_rung_costs, make_plan, planned_by_default,
)
from adaptlab.rungs.ladder import LADDER, facts, rungs_help
from synthetic import topic_csv

# A hand-made calibration: 10 ms to encode a text, no token-level units (64 tokens a text assumed).
CAL = Calibration("cpu", 0.01, 0.5, 16, 1e-4, 1e-4, 1.0)


def test_static_is_costed_by_its_distil_cost_shape():
    f = facts("static")
    assert f.cost_shape == "distil" and f.encode_speedup == 100.0
    costs = estimate_rung_costs(CAL, n_labeled=5000)
    st, probe = costs["static"], costs["probe"]
    assert st.kind == "cheap" and "distillation" in st.basis
    # Once: every vocabulary entry, three tokens each, through the encoder at 10 ms / 64 tokens.
    assert st.one_time == pytest.approx(DEFAULT_VOCABULARY * DISTIL_TOKENS_PER_ENTRY * 0.01 / 64)
    # A seed: the 5,000 labeled texts encoded 100x faster than 10 ms, and a head on the 3,200 training texts.
    assert st.per_seed == pytest.approx(5000 * 0.01 / 100 + 1e-4 * 3200)
    assert st.per_seed < probe.one_time / 20  # a seed of static costs far less than the probe's encoding pass


def test_static_cost_follows_the_vocabulary_the_token_cost_and_the_gpu():
    base = estimate_rung_costs(CAL, n_labeled=5000)["static"]
    multilingual = estimate_rung_costs(CAL, n_labeled=5000, vocabulary=250_002)["static"]
    assert multilingual.one_time == pytest.approx(base.one_time * 250_002 / DEFAULT_VOCABULARY)
    token = Calibration("cpu", 0.01, 0.5, 16, 1e-4, 1e-4, 1.0, forward_token_seconds=2e-5)
    assert estimate_rung_costs(token, n_labeled=5000)["static"].one_time == pytest.approx(
        DEFAULT_VOCABULARY * DISTIL_TOKENS_PER_ENTRY * 2e-5)
    # On a GPU the distillation runs on the encoder's device; the static vectors still encode on the CPU.
    gpu = estimate_rung_costs(CAL, n_labeled=5000, speedup=25.0)["static"]
    assert gpu.one_time == pytest.approx(base.one_time / 25) and gpu.per_seed == pytest.approx(base.per_seed)


def test_make_plan_gives_static_its_seeds_like_the_other_cheap_rungs():
    costs = estimate_rung_costs(CAL, n_labeled=5000)
    assert "static" not in make_plan(costs, 600, device="cpu", n_labels=5000).rungs  # only when named
    plan = make_plan(costs, 600, device="cpu", n_labels=5000, rungs=["tfidf", "static", "probe"])
    items = {i.rung: i for i in plan.items}
    assert list(items) == ["tfidf", "static", "probe"]
    assert items["static"].included and items["static"].full_seeds == 5
    assert items["static"].one_time_seconds == pytest.approx(costs["static"].one_time)


def test_the_plan_default_leaves_out_only_the_rungs_offered_when_named():
    assert planned_by_default() == [r for r in LADDER if facts(r).default != "never"]
    assert "static" not in planned_by_default() and {"tfidf", "probe", "lora"} <= set(planned_by_default())


def _flat(text: str) -> str:
    """Help text with rich's box borders and line wrapping removed."""
    return re.sub(r"[\s│]+", " ", text)


@pytest.mark.parametrize("path", [["study", "run"], ["plan"]])
def test_rungs_help_lists_every_catalogued_rung(path):
    r = CliRunner().invoke(app, [*path, "--help"], terminal_width=160, env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    text = _flat(r.output)
    assert ", ".join(LADDER) in text  # generated from the catalogue: a new rung's record adds it here
    assert _flat(rungs_help(planner=path == ["plan"])).split(" (")[0] in text
    if path == ["plan"]:
        assert "every rung but static" in text
    else:
        assert "Default: tfidf,probe;" in text and "static only when named" in text


def test_the_cli_reads_the_catalogue_without_importing_the_rungs():
    # `adaptlab --help` stays torch-free; the rungs imported later use the very catalogue module the CLI loaded.
    code = ("import sys, adaptlab.cli; assert 'torch' not in sys.modules and 'adaptlab.rungs' not in sys.modules;"
            "cat = sys.modules['adaptlab.rungs.ladder']; import adaptlab.rungs as R; from adaptlab.rungs import ladder;"
            "import adaptlab.rungs.ladder as L; assert ladder is cat and L is cat and R.ladder is cat;"
            "assert R.RUNGS['tfidf'].uses_encoder is False; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.fixture
def labeled_csv(tmp_path):
    return topic_csv(tmp_path / "train.csv", 120, noise=0.6)


def test_plan_costs_static_when_named_in_table_and_json(labeled_csv, tiny_encoder_dir, tmp_path):
    flags = ["plan", "--data", str(labeled_csv), "--encoder", str(tiny_encoder_dir), "--budget", "2 hours",
             "--rungs", "tfidf,static,probe", "--home", str(tmp_path / "home")]
    r = CliRunner().invoke(app, [*flags, "--json"])
    assert r.exit_code == 0, r.output
    items = {i["rung"]: i for i in json.loads(r.stdout)["items"]}
    assert list(items) == ["tfidf", "static", "probe"]
    static = items["static"]
    assert static["included"] and static["one_time_seconds"] > 0 and "distillation" in static["cost_basis"]
    table = CliRunner().invoke(app, flags, terminal_width=200)
    assert table.exit_code == 0, table.output
    assert re.search(r"static\s", table.output) and "--rungs tfidf,static,probe" in _flat(table.output)
