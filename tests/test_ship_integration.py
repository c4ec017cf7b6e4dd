"""The shipped model on real data: the packaged MiniLM, real BBC News articles."""
import numpy as np
import pytest

from adaptlab.data.bundled import load_bbc_news
from adaptlab.ship import ModelRegistry, Pipeline, load_model, retrain

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("minilm_dir")]


def test_ship_retrain_and_reload_a_probe_on_bbc_news(tmp_path):
    ds = load_bbc_news()
    idx = np.random.default_rng(0).permutation(len(ds))
    # Short texts keep this test quick; the first 400 characters name the topic well enough.
    cut = ds.subset(idx[:260])
    cut.texts = [t[:400] for t in cut.texts]
    first, new, sealed = cut.subset(range(0, 40)), cut.subset(range(40, 160)), cut.subset(range(160, 260))
    pipe = Pipeline(rung="probe", device="cpu", cache=tmp_path / "emb.sqlite").fit(first.texts, first.labels)
    reg = ModelRegistry.create(tmp_path / "model", pipe, train=first, eval_set=sealed)
    v1 = reg.current.evaluation["f1"]
    assert v1 > 0.7  # 40 labels already give a usable frozen-encoder classifier
    out = retrain(reg.root, new)
    assert out.promoted, out.message
    reg = ModelRegistry(reg.root)
    assert reg.current.id == "v0002" and reg.current.evaluation["f1"] >= v1 - 0.02
    loaded = load_model(reg.root)
    texts = sealed.texts[:30]
    # A fresh load predicts exactly what the model that was evaluated predicted.
    assert np.array_equal(loaded.predict_proba(texts), load_model(reg.root, "v0002").predict_proba(texts))
    card = (reg.root / "versions" / "v0002" / "MODEL_CARD.md").read_text()
    assert "all-MiniLM-L6-v2" in card and "apache-2.0" in card and "Retrain gate" in card
    assert not list((reg.root / "blobs").glob("encoders/*"))  # the packaged encoder is referenced, not copied
