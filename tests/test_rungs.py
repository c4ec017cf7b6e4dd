import numpy as np
import pytest

from adaptlab.errors import ConfigError, UnknownRungError
from adaptlab.rungs import RungContext, available_rungs, get_rung
from synthetic import topic_corpus


def test_registry_lists_the_ladder_in_order():
    assert available_rungs()[:3] == ["tfidf", "static", "probe"]


def test_planned_rung_gets_a_precise_message(monkeypatch):
    # Independent of which rungs exist by now: plan a made-up one.
    from adaptlab.rungs import ladder

    rec = ladder.RungFacts("distill", "network", "distillation into a small encoder (issue #99)", "distill",
                           "distillation", "-", "-", "-")
    monkeypatch.setitem(ladder._BY_NAME, "distill", rec)  # catalogued, not registered
    with pytest.raises(UnknownRungError, match=r"rung 'distill' \(distillation .*\) is not available.*tfidf, static, probe"):
        get_rung("distill")
    with pytest.raises(UnknownRungError, match=r"rungs='tfidff' is not valid: expected one of tfidf, static, probe"):
        get_rung("tfidff")


def test_rung_config_rejects_unknown_and_bad_params():
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['c'\] for rung tfidf"):
        get_rung("tfidf", {"c": 1})
    with pytest.raises(ConfigError, match=r"tfidf.C_grid=\[\] is not valid"):
        get_rung("tfidf", {"C_grid": []})


def test_tfidf_learns_and_reports_cost_and_val_only_selection():
    ds = topic_corpus(150)
    tr, va = ds.subset(range(0, 100)), ds.subset(range(100, 150))
    ctx = RungContext(classes=ds.classes)
    fitted = get_rung("tfidf").fit(tr, va, seed=0, context=ctx)
    assert fitted.val_scores_["f1"] > 0.8
    assert fitted.selected_["C"] in (0.1, 1.0, 10.0, 100.0)
    assert fitted.cost_.fit_seconds > 0 and fitted.cost_.samples_seen > 0
    proba = fitted.predict_proba(va.texts)
    assert proba.shape == (50, 3) and np.allclose(proba.sum(1), 1)
    assert fitted.head.random_state == 0
    assert get_rung("tfidf").fit(tr, va, seed=7, context=ctx).head.random_state == 7


def test_probe_needs_an_encoder():
    ds = topic_corpus(30)
    with pytest.raises(ConfigError, match="probe rung needs an encoder"):
        get_rung("probe").fit(ds, ds, seed=0, context=RungContext(classes=ds.classes))


def test_probe_on_tiny_encoder_embeds_and_predicts(tiny_encoder_dir, tmp_path):
    from adaptlab.encoders import EmbeddingCache, load_encoder

    ds = topic_corpus(120)
    enc = load_encoder(str(tiny_encoder_dir), device="cpu")
    ctx = RungContext(classes=ds.classes, encoder=enc, cache=EmbeddingCache(tmp_path / "c.sqlite"))
    fitted = get_rung("probe").fit(ds.subset(range(80)), ds.subset(range(80, 120)), seed=0, context=ctx)
    assert fitted.embed(ds.texts[:3]).shape == (3, enc.dim)
    assert set(fitted.predict(ds.texts[:10])) <= set(ds.classes)
    assert fitted.cost_.encode_seconds > 0
