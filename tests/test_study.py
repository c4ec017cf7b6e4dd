import numpy as np
import pytest

from adaptlab.config import StudyConfig
from adaptlab.errors import ConfigError, DataError
from adaptlab.evaluate import Study
from adaptlab.rungs import RUNGS, register_rung
from adaptlab.rungs.tfidf import TfidfRung
from adaptlab.store import RunStore
from synthetic import topic_corpus


@pytest.fixture
def corpus():
    return topic_corpus(180, noise=0.6)


def run(home, data, **cfg):
    params = dict(rungs=["tfidf"], seeds=3, n_boot=200)
    params.update(cfg)
    return Study(StudyConfig(**params), home=home).run(data)


def test_study_reports_every_rung_and_seed_with_bands(tmp_path, corpus):
    res = run(tmp_path, corpus)
    row = res.row("tfidf")
    assert row["n_seeds"] == 3 and len(row["f1_by_seed"]) == 3
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert row["std"] == pytest.approx(np.std(row["f1_by_seed"], ddof=1))
    assert res.n_trained == 3 and res.n_from_store == 0
    assert res.metric == "macro-F1"


def test_rerun_reads_from_store_and_trains_nothing(tmp_path, corpus, monkeypatch):
    first = run(tmp_path, corpus)
    monkeypatch.setattr(TfidfRung, "fit", lambda *a, **k: pytest.fail("fit must not run for a stored result"))
    second = run(tmp_path, corpus)
    assert second.n_trained == 0 and second.n_from_store == 3
    assert second.row("tfidf")["f1_by_seed"] == first.row("tfidf")["f1_by_seed"]
    assert second.study_id == first.study_id


def test_interrupted_study_resumes_with_only_missing_runs(tmp_path, corpus, monkeypatch):
    calls = {"n": 0}
    original = TfidfRung.fit

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(TfidfRung, "fit", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, corpus)
    monkeypatch.setattr(TfidfRung, "fit", original)
    res = run(tmp_path, corpus)
    assert res.n_from_store == 2 and res.n_trained == 1


def test_same_seed_same_numbers_in_a_fresh_store(tmp_path, corpus):
    a = run(tmp_path / "a", corpus)
    b = run(tmp_path / "b", corpus)
    assert a.row("tfidf")["f1_by_seed"] == b.row("tfidf")["f1_by_seed"]


def test_seeds_draw_different_validation_and_reseed_the_model_but_share_the_test(tmp_path, corpus):
    run(tmp_path, corpus)
    store = RunStore(tmp_path / "runs.sqlite")
    results = store.study_results(store.get_study("latest")["study_id"])
    assert sorted(r["seed"] for r in results) == [0, 1, 2]
    fps = {r["manifest"]["split"]["fingerprint"] for r in results}
    assert len(fps) == 3, "each seed must re-draw the train/validation split"
    assert len({tuple(r["predictions"]["test_ids"]) for r in results}) == 1, "the sealed test is shared"
    assert {r["manifest"]["seed"] for r in results} == {0, 1, 2}
    assert len({r["metrics"]["val"]["f1"] for r in results} | {r["metrics"]["test"]["f1"] for r in results}) > 1


def test_rungs_never_see_the_test_texts(tmp_path, corpus):
    seen: list[str] = []

    @register_rung
    class Spy(TfidfRung):
        name = "spy"

        def fit(self, train, val, *, seed, context):
            seen.extend(train.texts + val.texts)
            return super().fit(train, val, seed=seed, context=context)

    try:
        Study(StudyConfig(rungs=["spy"], seeds=2, n_boot=200), home=tmp_path).run(corpus)
    finally:
        RUNGS.pop("spy")
    store = RunStore(tmp_path / "runs.sqlite")
    results = store.study_results(store.get_study("latest")["study_id"])
    test_ids = set(results[0]["predictions"]["test_ids"])
    id_of = dict(zip(corpus.texts, corpus.ids))
    assert test_ids and not (test_ids & {id_of[t] for t in seen})
    for r in results:
        assert r["manifest"]["test_reads"] == [f"evaluate spy seed {r['seed']}"]


def test_separate_test_file_is_the_sealed_test(tmp_path, corpus):
    train, test = corpus.subset(range(150)), corpus.subset(range(150, 180))
    res = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home=tmp_path).run(train, test=test)
    assert res.n_test == 30 and res.data["n_test_file"] == 30


def test_test_file_with_unseen_class_is_refused(tmp_path, corpus):
    train = corpus.subset([i for i, l in enumerate(corpus.labels) if l != "money"])
    with pytest.raises(DataError, match=r"label\(s\) \['money'\] that never occur in --data"):
        Study(StudyConfig(rungs=["tfidf"], seeds=1, n_boot=200), home=tmp_path).run(train, test=corpus.subset(range(30)))


def test_unknown_rung_fails_before_training(tmp_path):
    # (was "refit", which exists since issue #4; any unregistered name must fail before training)
    with pytest.raises(ConfigError, match="distill"):
        Study(StudyConfig(rungs=["tfidf", "distill"]), home=tmp_path)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"seeds": 0}, "seeds=0 is not valid"), ({"split": "random"}, "split='random' is not valid: expected one of auto"),
     ({"test_size": 1.5}, "test_size=1.5 is not valid"), ({"rungs": []}, "rungs=\\[\\] is not valid")],
)
def test_config_errors_name_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        StudyConfig(**kwargs)


def test_binary_study_reports_positive_f1_and_auprc(tmp_path):
    ds = topic_corpus(160, classes=("sport", "tech"), noise=0.7)
    res = run(tmp_path, ds, positive_label="tech")
    assert res.positive_label == "tech" and "auprc_mean" in res.row("tfidf")
    assert res.metric == "F1 of class 'tech'"


def test_probe_and_tfidf_with_tiny_encoder_and_embedding_cache(tmp_path, corpus, tiny_encoder_dir, monkeypatch):
    from adaptlab.encoders import Encoder

    cfg = dict(rungs=["tfidf", "probe"], seeds=2, encoder=str(tiny_encoder_dir))
    res = run(tmp_path, corpus, **cfg)
    assert [r["rung"] for r in res.rows] == ["tfidf", "probe"]
    assert res.data["encoder"]["dim"] > 0
    assert len(res.overlaps) == 1 and res.overlaps[0]["a"] == "tfidf"
    # A second study with a different seed count re-trains heads but must not re-encode any text.
    monkeypatch.setattr(Encoder, "encode", lambda *a, **k: pytest.fail("encoder called despite the cache"))
    res3 = run(tmp_path, corpus, **{**cfg, "seeds": 3})
    assert res3.n_from_store == 4 and res3.n_trained == 2


def test_small_sealed_test_is_flagged(tmp_path):
    ds = topic_corpus(40, noise=0.6)
    res = run(tmp_path, ds, seeds=1)
    assert res.n_test < 50
    assert any("only" in w and "items" in w for w in res.warnings)
    big = run(tmp_path / "big", topic_corpus(300, noise=0.6), seeds=1)
    assert big.warnings == []


def test_study_events_follow_every_cell(tmp_path):
    from adaptlab.config import StudyConfig
    from adaptlab.evaluate import Study, StudyEvent
    from synthetic import topic_corpus

    data = topic_corpus(90, seed=0)
    events: list[StudyEvent] = []
    res = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home=tmp_path).run(data, on_event=events.append)
    assert [(e.kind, e.rung, e.seed) for e in events] == [
        ("study", None, None), ("start", "tfidf", 0), ("done", "tfidf", 0), ("start", "tfidf", 1), ("done", "tfidf", 1)]
    assert {e.study_id for e in events} == {res.study_id}
    done = [e for e in events if e.kind == "done"]
    assert [e.f1 for e in done] == [p["test"]["f1"] for p in res.per_seed] and all(e.seconds > 0 for e in done)
    assert events[1].n_train > 0
    again: list[StudyEvent] = []
    Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home=tmp_path).run(data, on_event=again.append)
    assert [(e.kind, e.seed) for e in again] == [("study", None), ("stored", 0), ("stored", 1)]
