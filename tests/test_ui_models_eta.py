"""The web app's /models page marks forced models, the nav says "Models", and a study without a time budget gets an
ETA from what its rungs cost in the run store (issue #31)."""
import pytest
from fastapi.testclient import TestClient

from adaptlab.config import StudyConfig
from adaptlab.evaluate import Study
from adaptlab.ship import ModelRegistry, Pipeline
from adaptlab.store import RunStore
from adaptlab.ui import create_app
from adaptlab.ui.eta import STORED, job_eta, stored_estimates
from synthetic import topic_corpus
from test_ui import BASE, HTML, csv_bytes, make_settings, start_study

FORCED = {"study_id": "0123456789abcdef", "status": "do-not-ship", "ship_threshold": 0.8,
          "reason": "below the ship threshold 0.80", "when": "2026-12-07T20:00:00"}


def test_models_page_marks_a_forced_model_and_the_nav_says_models(tmp_path):
    s = make_settings(tmp_path)
    small, sealed = topic_corpus(9, seed=1, noise=0.5), topic_corpus(60, seed=2)
    for name, extra in (("plain", None), ("pushed", {"forced": FORCED})):
        pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(small.texts, small.labels)
        ModelRegistry.create(s.models_root / name, pipe, train=small, eval_set=sealed, extra=extra)
    with TestClient(create_app(s), base_url=BASE) as client:
        page = client.get("/models", headers=HTML).text
    assert '<a href="/models" id="nav-models">Models</a>' in page and "coordinator)" not in page
    assert 'id="forced-pushed"' in page and 'id="forced-plain"' not in page
    marker = page.split('id="forced-pushed"', 1)[1].split("</span>", 1)[0]
    assert "do-not-ship" in marker and "below the ship threshold 0.80" in marker and marker.endswith(">forced")


@pytest.fixture
def store_with_runs(tmp_path):
    """A store holding a tfidf study (2 seeds) and one lora run of 50 s (a network rung: taken as it was)."""
    data = topic_corpus(90, seed=0)
    Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=100), home=tmp_path).run(data)
    store = RunStore(tmp_path / "runs.sqlite")
    sid = store.get_study("latest")["study_id"]
    store.put_result("lora-fake", rung="lora", seed=0, metrics={"cost": {"fit_seconds": 48.0, "total_seconds": 50.0}},
                     predictions={}, manifest={})
    store.link_result(sid, "lora-fake")
    return store, len(data)


def test_stored_estimates_time_each_rung_from_the_run_store(store_with_runs):
    store, n = store_with_runs
    sid = store.get_study("latest")["study_id"]
    tfidf_runs = [r["metrics"]["cost"]["total_seconds"] for r in store.study_results(sid) if r["rung"] == "tfidf"]
    est = stored_estimates(store, ["tfidf", "lora", "finetune"], n_labeled=n)
    assert set(est) == {"tfidf", "lora"}  # finetune never ran here: its first run sets the pace
    # same data size: no scaling (the estimate is rounded to the millisecond)
    assert est["tfidf"]["first"] == pytest.approx(sum(tfidf_runs) / 2, rel=0.01, abs=1e-3)
    assert est["lora"] == {"first": 50.0, "next": 50.0, "source": STORED}
    # Twice the texts: a tfidf seed is costed twice as long; a network rung's run is not scaled.
    est2 = stored_estimates(store, ["tfidf", "lora"], n_labeled=2 * n)
    assert est2["tfidf"]["first"] == pytest.approx(2 * est["tfidf"]["first"], rel=0.01, abs=2e-3)
    assert est2["lora"] == est["lora"]
    job = {"status": "running", "started": 0.0, "spec": {"cost_estimates": est},
           "cells": {"lora|0": {"rung": "lora", "state": "pending"}, "lora|1": {"rung": "lora", "state": "pending"}}}
    eta = job_eta(job, now=1.0)
    assert eta["seconds"] == pytest.approx(100.0) and eta["text"] == f"about 100 s left (from {STORED})"


def test_a_web_study_without_a_time_budget_gets_estimates_from_the_store(tmp_path, tiny_encoder_dir):
    app = create_app(make_settings(tmp_path, str(tiny_encoder_dir)))
    with TestClient(app, base_url=BASE) as client:
        data = csv_bytes(topic_corpus(90, seed=0))
        first = app.state.jobs.wait(start_study(client, data, rungs=("tfidf",), seeds=2), 120)
        assert first.status == "done" and first.spec["cost_estimates"] == {}  # an empty store knows nothing yet
        jid = start_study(client, csv_bytes(topic_corpus(90, seed=1)), rungs=("tfidf",), seeds=2)
        job = app.state.jobs.wait(jid, 120)
        assert job.status == "done", job.error
        est = job.spec["cost_estimates"]["tfidf"]
        assert est["source"] == STORED and est["first"] > 0 and not job.spec.get("time_budget")
        # While it ran with both seeds pending, the job page had an ETA from these.
        snap = {"status": "running", "started": 0.0, "spec": job.spec,
                "cells": {k: {**c, "state": "pending"} for k, c in job.cells.items()}}
        assert job_eta(snap, now=0.0)["text"].endswith(f"left (from {STORED})")
