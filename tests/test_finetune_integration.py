"""The fine-tuning path on the real packaged all-MiniLM-L6-v2 and real BBC News texts (small budget)."""
import numpy as np
import pytest
import torch

from adaptlab.config import Budget
from adaptlab.data.bundled import load_bbc_news
from adaptlab.encoders import Encoder
from adaptlab.metrics import score
from adaptlab.rungs import RungContext, get_rung

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]



def test_finetune_minilm_20_steps_on_bbc(minilm_dir):
    ds = load_bbc_news()
    idx = np.random.default_rng(0).permutation(len(ds))[:150]
    tr, va, te = ds.subset(idx[:100]), ds.subset(idx[100:125]), ds.subset(idx[125:150])
    enc = Encoder.from_pretrained(minilm_dir, device="cpu")
    before = enc.fingerprint
    context = RungContext(classes=ds.classes, encoder=enc, budget=Budget.parse("20steps"))
    # 64 tokens: the headline and first sentences carry the topic; keeps 20 CPU steps within seconds.
    fitted = get_rung("finetune", {"batch_size": 8, "max_length": 64, "head_lr": 2e-3, "backbone_lr": 5e-5}).fit(
        tr, va, seed=0, context=context)
    d = fitted.diagnostics_
    assert d["budget"]["steps_used"] == 20 and d["stopped_by"] in ("budget_steps", "early_stopping")
    test_f1 = score(te.labels, fitted.predict(te.texts), None, ds.classes, None)["f1"]
    assert fitted.val_scores_["f1"] > 0.6 and test_f1 > 0.5, (fitted.val_scores_, test_f1)  # chance is 0.2
    assert [h["step"] for h in d["history"]] == [13, 20]  # 100 texts / 8 = 13 steps an epoch, then the budget
    move = d["movement"]["per_layer"]
    assert all(move[f"layer.{i}"] > 0 for i in range(6)) and d["movement"]["overall"] < 0.05
    assert d["total_parameters"] > 22_000_000 and d["trainable_parameters"] == d["total_parameters"]
    emb = fitted.embed(te.texts[:3])
    assert emb.shape == (3, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert enc.refresh_fingerprint() == before  # the shared encoder is untouched
