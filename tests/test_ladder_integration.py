"""The whole ladder on real data: every registered rung, 2 seeds, one equal short budget, through `Study`.

The packaged all-MiniLM-L6-v2 (truncating at 64 tokens: the headline and first sentences carry a BBC
topic) on 250 real BBC News articles; 150 other articles are the refit's unlabeled corpus. The budget
(8 optimizer steps of 8 texts) is far too short to rank the rungs; what is checked is that each rung
runs on real weights under the same budget and that the study table reports mean ± std, cost,
trainable parameters, backbone movement, CKA and flags for every rung that trains a network.
About 60 s of one CPU core (one torch thread: on a shared 2-core machine two threads ran 3x slower).
"""
import numpy as np
import pytest
from rich.console import Console

from adaptlab.config import StudyConfig
from adaptlab.data.bundled import load_bbc_news
from adaptlab.encoders import Encoder
from adaptlab.evaluate import Study
from adaptlab.evaluate.report import network_signatures, render_study, rung_table
from adaptlab.rungs import available_rungs

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

NETWORK = {"batch_size": 8, "max_length": 64}
BUDGET_STEPS = 8


def test_every_rung_on_real_minilm_and_bbc_fills_the_study_table(minilm_dir, tmp_path):
    ds = load_bbc_news()
    order = np.random.default_rng(0).permutation(len(ds))
    labeled = ds.subset(order[:250])  # 160 train, 40 validation (re-drawn per seed), 50 sealed test
    unlabeled = ds.subset(order[250:400])
    unlabeled.labels = None
    encoder = Encoder.from_pretrained(minilm_dir, device="cpu")
    encoder.max_seq_length = 64  # every rung reads the study encoder's length: 64 tokens for all
    encoder.refresh_fingerprint()

    rungs = available_rungs()
    assert set(rungs) >= {"tfidf", "probe", "refit", "setfit", "lora", "unfreeze", "finetune", "lpft"}
    params = {name: dict(NETWORK) for name in ("setfit", "lora", "unfreeze", "finetune", "lpft")}
    params["unfreeze"]["top_k"] = 2
    params["refit"] = {"batch_size": 8, "max_seq_length": 64, "estimate_steps": 1}
    cfg = StudyConfig(rungs=rungs, seeds=2, n_boot=200, budget=f"{BUDGET_STEPS}steps", rung_params=params)
    res = Study(cfg, home=tmp_path, encoder=encoder).run(labeled, unlabeled=unlabeled)

    assert [r["rung"] for r in res.rows] == rungs and all(r["n_seeds"] == 2 for r in res.rows)
    network = ("setfit", "lora", "unfreeze", "finetune", "lpft")
    for p in res.per_seed:
        d = p["diagnostics"] or {}
        if p["rung"] in network:
            # One budget for all: every network run stopped at (or before, by early stopping) 8 steps.
            assert d["budget"]["declared"] == {"steps": BUDGET_STEPS, "seconds": None}
            assert 0 < d["budget"]["steps_used"] <= BUDGET_STEPS
        if p["rung"] == "refit":
            assert d["steps"] == BUDGET_STEPS
    for r in res.rows:
        assert 0.0 <= r["mean"] <= 1.0 and r["fit_seconds_mean"] > 0
    assert res.row("probe")["mean"] > 0.6  # real signal on 5 classes (chance 0.2)

    sig = network_signatures(res)
    assert set(sig) == set(network)  # tfidf, probe and refit train no classifier network
    assert sig["finetune"]["trainable_fraction"] == 1.0 and sig["finetune"]["moved_overall"] > 0
    assert sig["lora"]["trainable_fraction"] < 0.05 and sig["lora"]["moved_overall"] > 0
    assert 0 < sig["unfreeze"]["trainable_fraction"] < 1 and sig["unfreeze"]["moved_most_unit"] in ("layer.4", "layer.5", "other")
    assert all(0 < s["cka"] <= 1 + 1e-9 for s in sig.values())

    table = rung_table(res)
    cols = {str(c.header): [str(x) for x in c.cells] for c in table.columns}
    assert cols["rung"] == rungs
    for i, name in enumerate(rungs):
        assert "±" in cols["test mean ± std"][i] and float(cols["fit s"][i]) > 0, name
        filled = [cols[c][i] for c in ("trainable", "moved (max)", "CKA", "flags")]
        if name in network:
            assert "—" not in filled and filled[0].endswith("%)") and "%" in filled[1], (name, filled)
            assert filled[3] == "none" or any(f in filled[3] for f in ("overfit", "neg. transfer", "budget-bound")), filled
        else:
            assert filled == ["—"] * 4, (name, filled)
    console = Console(record=True, width=140)
    console.print(render_study(res))
    text = console.export_text()
    assert "fine-tuning signatures" in text and "lpft: trained" in text
