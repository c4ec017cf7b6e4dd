"""The refit rung end to end on real data: packaged all-MiniLM-L6-v2, real BBC News articles.

A short MLM refit (20 steps, 64 tokens) -> frozen -> probe head, next to the `probe` row on the same
split; then the diagnostics: MMD of off-the-shelf vs refit embeddings with a p-value, the domain
shift and the probe-gap verdict.
"""
import math

import numpy as np
import pytest

from adaptlab.config import StudyConfig
from adaptlab.data.bundled import load_bbc_news
from adaptlab.diagnostics import run_study_with_diagnostics
from adaptlab.evaluate import Study

pytestmark = pytest.mark.integration


def test_real_mlm_refit_then_probe_row_with_mmd_and_gap_verdict(tmp_path):
    ds = load_bbc_news()
    labeled = ds.subset(range(0, 2225, 20))             # 112 articles, all 5 classes
    unlabeled = ds.subset(range(7, 2225, 55))           # 41 other articles, labels ignored
    assert not set(labeled.texts) & set(unlabeled.texts)
    unlabeled.labels = None
    cfg = StudyConfig(rungs=["probe", "refit"], seeds=2, n_boot=200,
                      rung_params={"refit": {"budget": "20steps", "max_seq_length": 64, "batch_size": 8}})
    study = Study(cfg, home=tmp_path)
    res = run_study_with_diagnostics(study, labeled, unlabeled=unlabeled, n=40, n_permutations=100)

    probe, refit = res.row("probe"), res.row("refit")
    assert probe["mean"] > 0.75 and refit["mean"] > 0.75      # real signal on 5 classes (chance 0.2)
    d = res.per_seed[1]["diagnostics"]                      # per_seed: probe s0, refit s0, probe s1, refit s1
    assert res.per_seed[1]["rung"] == "refit" and d["steps"] == 20 and d["objective"] == "mlm"
    losses = [v for _, v in d["loss_curve"]]
    # The fresh MLM head on MiniLM starts well below uniform guessing (ln 30522 = 10.3) and learns.
    assert all(math.isfinite(v) for v in losses) and losses[0] < 2 * math.log(30522)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert d["tokens_per_second"] > 0 and d["estimated_seconds"] > 0 and d["refit_fingerprint"] != d["base_fingerprint"]
    assert res.per_seed[3]["diagnostics"]["reused"] is True  # one refit shared by both seeds

    diag = res.diagnostics
    (mv,) = diag["refit_movement"]
    assert 0 < mv["mmd"]["p_value"] <= 1 and mv["n_texts"] == min(40, res.n_test) and mv["mean_cosine"] < 1.0
    assert diag["probe_gap"]["sentence"] and diag["probe_gap"]["ship"] is False  # 2 seeds, 1 refit: never ship
    # BBC unlabeled vs the rest of BBC: the same domain, so the clinic's switch rule says skip the refit.
    assert diag["domain_shift"]["shifted"] is False and "skip the domain refit" in diag["domain_shift"]["recommendation"]
