"""Issue #31 in the web app: Ship from the results page (a "do not ship yet" decision needs "ship anyway", recorded
on the model), Predict from the model page, and the planner keeping the user's seeds."""
import html
import io
import re
import shutil

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from adaptlab.ui import create_app
from synthetic import topic_corpus
from test_ui import BASE, HTML, csv_bytes, location_id, make_settings, start_study, upload


@pytest.fixture
def ui(tmp_path, tiny_encoder_dir):
    app = create_app(make_settings(tmp_path, str(tiny_encoder_dir)))
    with TestClient(app, base_url=BASE) as client:
        yield app, client


def weak_study(app, client) -> str:
    """A finished study whose decision is "do not ship yet" (labels mostly noise); its id."""
    jid = start_study(client, csv_bytes(topic_corpus(120, seed=4, noise=0.95)), seeds=3)
    job = app.state.jobs.wait(jid, 180)
    assert job.status == "done", job.error
    sid = client.get(f"/api/jobs/{jid}").json()["study_id"]
    assert client.get(f"/api/studies/{sid}").json()["decision"]["status"] == "do-not-ship"
    return sid


def test_ship_from_the_results_page_needs_ship_anyway_and_the_model_says_forced(ui):
    app, client = ui
    sid = weak_study(app, client)
    page = client.get(f"/studies/{sid}", headers=HTML).text
    assert 'id="ship-form"' in page and 'id="ship-hold"' in page and 'id="ship-force"' in page
    assert 'id="ship-threshold">0.80<' in page and 'id="ship-button"' in page
    # Not ticked: refused, nothing queued, the reason and how to override said on the page.
    r = client.post(f"/studies/{sid}/ship", data={"name": "triage"}, follow_redirects=False)
    text = html.unescape(r.text)
    assert r.status_code == 409 and 'id="ship-error"' in r.text
    assert "says do not ship yet" in text and "below the ship threshold 0.80" in text and 'tick "ship anyway"' in text
    assert not (app.state.settings.models_root / "triage").exists()
    assert not [j for j in client.get("/api/jobs").json() if j["kind"] == "ship"]
    # Bad names are refused before anything runs.
    r = client.post(f"/studies/{sid}/ship", data={"name": "../elsewhere", "force": "1"}, follow_redirects=False)
    assert r.status_code == 400 and "is not a model name" in html.unescape(r.text)
    # Ticked: shipped in a job, then a link to the model page.
    r = client.post(f"/studies/{sid}/ship", data={"name": "triage", "force": "1"}, follow_redirects=False)
    jid = location_id(r)
    job = app.state.jobs.wait(jid, 180)
    assert job.status == "done", job.error
    assert job.result["forced"]["status"] == "do-not-ship" and job.result["model"] == "triage"
    page = client.get(f"/jobs/{jid}", headers=HTML).text
    assert 'id="model-link" href="/models/triage"' in page and 'id="ship-forced"' in page
    model = client.get("/models/triage", headers=HTML).text
    assert 'class="badge forced"' in model and 'id="forced-v0001"' in model and 'id="predict-form"' in model
    api = client.get("/api/models/triage").json()
    assert api["versions"][0]["forced"]["ship_threshold"] == 0.8
    card = (app.state.settings.models_root / "triage" / "versions" / "v0001" / "MODEL_CARD.md").read_text()
    assert "forced: shipped with --force against the study's decision" in card
    # The name is taken now.
    r = client.post(f"/studies/{sid}/ship", data={"name": "triage", "force": "1"}, follow_redirects=False)
    assert r.status_code == 409 and "already exists" in html.unescape(r.text)


def test_predict_from_the_model_page_returns_a_csv(ui):
    app, client = ui
    sid = weak_study(app, client)
    jid = location_id(client.post(f"/studies/{sid}/ship", data={"name": "m1", "force": "1"}, follow_redirects=False))
    assert app.state.jobs.wait(jid, 180).status == "done"
    items = topic_corpus(12, seed=9)
    body = pd.DataFrame({"id": [f"q{i}" for i in range(12)], "text": items.texts}).to_csv(index=False).encode()
    r = client.post("/models/m1/predict", files={"texts": ("new texts.csv", body, "text/csv")})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="new-texts-predictions-m1.csv"' in r.headers["content-disposition"]
    pred = pd.read_csv(io.BytesIO(r.content))
    assert pred["id"].tolist() == [f"q{i}" for i in range(12)] and {"label", "confidence"} <= set(pred.columns)
    assert set(pred["label"]) <= {"sport", "tech", "money"} and r.headers["x-adaptlab-predicted"] == "12"
    # A file without a text column: the page says why, nothing is left behind.
    bad = pd.DataFrame({"words": items.texts}).to_csv(index=False).encode()
    r = client.post("/models/m1/predict", files={"texts": ("bad.csv", bad, "text/csv")})
    assert r.status_code == 422 and "Not predicted" in r.text
    assert not [p for p in app.state.settings.upload_dir.iterdir()
                if p.is_dir() and '"predict"' in (p / "meta.json").read_text()]
    assert client.post("/models/nope/predict", files={"texts": ("a.csv", body, "text/csv")}).status_code == 404


def test_a_study_whose_data_is_gone_offers_no_ship_button(ui):
    app, client = ui
    sid = weak_study(app, client)
    for p in app.state.settings.upload_dir.iterdir():  # the upload is gone (retention, or another server)
        shutil.rmtree(p)
    page = client.get(f"/studies/{sid}", headers=HTML).text
    assert 'id="ship-no-data"' in page and 'id="ship-button"' not in page
    r = client.post(f"/studies/{sid}/ship", data={"name": "x", "force": "1"}, follow_redirects=False)
    assert r.status_code == 409 and f"adaptlab ship DATA --study {sid[:12]}" in r.text


def test_the_planner_keeps_the_users_seeds(ui):
    app, client = ui
    uid = location_id(upload(client, csv_bytes(topic_corpus(90))))
    client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"})
    r = client.post(f"/data/{uid}/plan", data={"rungs": ["tfidf", "probe"], "seeds": "3", "compute_budget": "10 min"})
    assert r.status_code == 200 and 'id="plan-table"' in r.text
    assert 'id="seeds" value="3"' in r.text  # was rewritten to the plan's 5
    seeds = [int(x) for x in re.findall(r"<td>(?:tfidf|probe)</td><td class=\"num\">(\d+)</td>", r.text)]
    assert seeds and max(seeds) <= 3
    r = client.post(f"/data/{uid}/plan", data={"rungs": ["tfidf"], "seeds": "2", "compute_budget": "10 min"})
    assert 'id="seeds" value="2"' in r.text and "at most the 2 seed(s)" in r.text
    r = client.post(f"/data/{uid}/plan", data={"rungs": ["tfidf"], "seeds": "two", "compute_budget": "10 min"})
    assert r.status_code == 400 and "seeds='two' is not valid" in html.unescape(r.text)
