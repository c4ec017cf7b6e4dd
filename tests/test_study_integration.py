"""The study end to end on real data (BBC News) with the real packaged all-MiniLM-L6-v2."""
import pytest

from adaptlab.config import StudyConfig
from adaptlab.data.bundled import BBC_CLASSES, load_bbc_news
from adaptlab.encoders import Encoder
from adaptlab.evaluate import Study

pytestmark = pytest.mark.integration


def test_bundled_bbc_news_is_complete():
    ds = load_bbc_news()
    assert len(ds) == 2225 and tuple(ds.classes) == BBC_CLASSES
    assert ds.label_counts()["sport"] == 511 and "£" in " ".join(ds.texts[:50])


def test_real_study_probe_vs_tfidf_and_cached_rerun(tmp_path, monkeypatch):
    ds = load_bbc_news()
    small = ds.subset(list(range(0, 2225, 9)))  # 248 articles across all 5 classes
    cfg = StudyConfig(rungs=["tfidf", "probe"], seeds=2, n_boot=300)
    res = Study(cfg, home=tmp_path).run(small)
    probe, tfidf = res.row("probe"), res.row("tfidf")
    assert probe["mean"] > 0.8 and tfidf["mean"] > 0.6  # real signal, not chance (0.2)
    assert probe["ci_low"] < probe["mean"] < probe["ci_high"]
    assert res.data["encoder"]["name"] == "all-MiniLM-L6-v2" and res.data["encoder"]["dim"] == 384
    monkeypatch.setattr(Encoder, "encode", lambda *a, **k: pytest.fail("re-encoded despite the cache"))
    again = Study(cfg, home=tmp_path).run(small)
    assert again.n_trained == 0 and again.row("probe")["f1_by_seed"] == probe["f1_by_seed"]
