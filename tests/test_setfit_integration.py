"""The `setfit` rung on real weights and real texts: the packaged all-MiniLM-L6-v2 on BBC News articles.

A study with `probe` and `setfit` (2 seeds, one 8-step budget of 8 pairs), then the shipped pipeline:
saved, reloaded in a fresh process, predictions bit-identical, nothing pickled in the model folder.
Texts are cut to 400 characters and 48 tokens (the headline and first sentence name the topic) so it
stays under about a minute on one CPU core.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from adaptlab.config import StudyConfig
from adaptlab.data.bundled import load_bbc_news
from adaptlab.encoders import Encoder
from adaptlab.evaluate import Study
from adaptlab.ship import Pipeline, load_pipeline, read_manifest
from adaptlab.store import RunStore

pytest.importorskip("setfit")
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

SETFIT = {"batch_size": 8, "max_length": 48, "body_lr": 2e-5}
BUDGET = "8steps"


@pytest.fixture(scope="module")
def bbc():
    ds = load_bbc_news()
    cut = ds.subset(np.random.default_rng(0).permutation(len(ds))[:150])
    cut.texts = [t[:400] for t in cut.texts]
    return cut


def test_setfit_with_probe_on_bbc_then_ship_and_reload_bit_identical(bbc, minilm_dir, tmp_path):
    encoder = Encoder.from_pretrained(minilm_dir, device="cpu")
    cfg = StudyConfig(rungs=["probe", "setfit"], seeds=2, n_boot=200, budget=BUDGET, rung_params={"setfit": SETFIT})
    res = Study(cfg, home=tmp_path / "home", encoder=encoder).run(bbc)
    assert [r["rung"] for r in res.rows] == ["probe", "setfit"] and all(r["n_seeds"] == 2 for r in res.rows)
    assert res.row("probe")["mean"] > 0.6 and res.row("setfit")["mean"] > 0.6  # 5 classes, chance 0.2
    stored = [r for r in RunStore(tmp_path / "home" / "runs.sqlite").study_results(res.study_id)
              if r["rung"] == "setfit"]
    assert len(stored) == 2
    for r in stored:
        d = r["metrics"]["diagnostics"]
        assert d["budget"]["steps_used"] == 8 and d["budget"]["samples_seen"] == 64
        assert d["movement"]["overall"] > 0 and 0 < d["cka_pretrained_vs_tuned"] <= 1 + 1e-9

    train = bbc.subset(range(100))
    texts = bbc.subset(range(100, 150)).texts
    pipe = Pipeline(rung="setfit", encoder=encoder, rung_params=dict(SETFIT), budget=BUDGET,
                    home=tmp_path / "home").fit(train.texts, train.labels)
    folder = pipe.save(tmp_path / "model")
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin")]
    assert not [p for p in files if p.read_bytes()[:1] == b"\x80"]  # no pickle stream, whatever its name
    state = read_manifest(folder)["state"]
    assert state["encoder"]["stored"] and state["base_encoder"]["name"] == "all-MiniLM-L6-v2"
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    code = ("import json,sys,numpy as np,torch; torch.set_num_threads(1); from adaptlab.ship import load_pipeline;"
            "p=load_pipeline(sys.argv[1]); t=json.load(open(sys.argv[2]));"
            "np.save(sys.argv[3], p.predict_proba(t)); np.save(sys.argv[4], p.predict(t).astype(str))")
    subprocess.run([sys.executable, "-c", code, str(folder), str(tmp_path / "texts.json"), str(tmp_path / "p.npy"),
                    str(tmp_path / "y.npy")], check=True)
    assert np.array_equal(np.load(tmp_path / "p.npy"), pipe.predict_proba(texts))
    assert (np.load(tmp_path / "y.npy") == pipe.predict(texts).astype(str)).all()
    assert np.array_equal(load_pipeline(folder).predict_proba(texts), pipe.predict_proba(texts))
