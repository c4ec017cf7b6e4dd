"""The coordinator's label review in the web app (TestClient): suspicious rows of an uploaded batch before
the retrain, keep / fix / drop with provenance, the retrain on the corrected batch, and held retrains listed."""
import csv
import io

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from adaptlab.data import LabelDecision, TextDataset, apply_label_decisions
from adaptlab.errors import ConfigError
from adaptlab.ship import ModelRegistry, Pipeline, retrain
from adaptlab.ui import UISettings, create_app
from adaptlab.ui.labelfix import DECISIONS_FILE, decisions_from_form, reviewer
from synthetic import topic_corpus

BASE = "http://127.0.0.1:8765"
ROTATE = {"sport": "tech", "tech": "money", "money": "sport"}
FLIPPED = [2, 7, 11, 16, 20, 25, 31, 37, 40, 44, 50, 55]  # 0-based positions in the 60-row batch


@pytest.fixture
def model_ui(tmp_path):
    s = UISettings(home=tmp_path / "home", models_root=tmp_path / "models", n_boot=200, torch_threads=1)
    train, sealed = topic_corpus(150, seed=1), topic_corpus(60, seed=2)
    pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(train.texts, train.labels)
    ModelRegistry.create(s.models_root / "news", pipe, train=train, eval_set=sealed)
    app = create_app(s)
    with TestClient(app, base_url=BASE) as client:
        yield app, client


def flipped_batch():
    """60 new texts, 12 of them with a wrong label; returns (csv bytes, true labels)."""
    ds = topic_corpus(60, seed=7)
    labels = [ROTATE[x] if i in FLIPPED else x for i, x in enumerate(ds.labels)]
    data = pd.DataFrame({"text": ds.texts, "label": labels}).to_csv(index=False).encode()
    return data, ds.labels


def check(client, data: bytes, name="batch.csv"):
    r = client.post("/models/news/labels/check", files={"labels": (name, data, "text/csv")}, follow_redirects=False)
    assert r.status_code == 303, r.text[:600]
    return r.headers["location"]


def flagged_rows(page: str) -> list[int]:
    import re

    return [int(x) for x in re.findall(r'<tr class="suspicious" id="row-(\d+)"', page)]


def test_review_lists_the_flipped_rows_before_anything_is_trained(model_ui):
    app, client = model_ui
    data, _ = flipped_batch()
    url = check(client, data)
    page = client.get(url, headers={"accept": "text/html"})
    assert page.status_code == 200 and "batch.csv" in page.text
    rows = flagged_rows(page.text)
    wrong = {i + 1 for i in FLIPPED}
    assert len(rows) >= 8 and len(set(rows) & wrong) / len(rows) >= 0.8
    assert 'id="would-hold"' in page.text and "would be <b>held</b>" in page.text and 'id="accept"' in page.text
    for r in rows:
        assert f'id="fix-{r}"' in page.text and f'id="drop-{r}"' in page.text and f'id="keep-{r}"' in page.text
    # Nothing trained, no job: the review comes first.
    assert app.state.jobs.list() == [] and len(ModelRegistry(app.state.settings.models_root / "news").versions) == 1


def test_fix_and_drop_write_provenance_and_the_retrain_uses_the_corrected_batch(model_ui):
    app, client = model_ui
    data, truth = flipped_batch()
    url = check(client, data)
    uid = url.rstrip("/").split("/")[-1]
    rows = flagged_rows(client.get(url).text)
    wrong = [r for r in rows if r - 1 in FLIPPED]
    fix, drop = wrong[:2], wrong[2:]
    keep = [r for r in rows if r not in wrong][:1]
    form = {"reviewer": "Ana  Lima", **{f"action-{r}": "fix" for r in fix}, **{f"label-{r}": truth[r - 1] for r in fix},
            **{f"action-{r}": "drop" for r in drop}, **{f"action-{r}": "keep" for r in keep}}
    r = client.post(f"/models/news/labels/{uid}/retrain", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/jobs/")
    job = app.state.jobs.wait(r.headers["location"].split("/")[-1], 60)
    assert job.status == "done", job.error
    res = job.result
    # The retrain trained on the corrected batch: the fixes and drops were applied, dropped rows listed.
    assert [d["row"] for d in res["review"]["fixed"]] == sorted(fix)
    assert [d["row"] for d in res["review"]["dropped"]] == sorted(drop)
    assert res["review"]["who"] == "Ana Lima" and res["status"] in ("promoted", "rejected")
    assert "12 flagged" not in res["message"]
    reg = ModelRegistry(app.state.settings.models_root / "news")
    v2 = reg.training_data(res["version"])
    assert len(v2) == 150 + 60 - len(drop)
    by_text = dict(zip(v2.texts, v2.labels))
    batch = pd.read_csv(io.BytesIO(data))
    for row in fix:
        assert by_text[batch["text"][row - 1]] == truth[row - 1]
    for row in drop:
        assert batch["text"][row - 1] not in by_text
    card = (reg.root / "versions" / res["version"] / "MODEL_CARD.md").read_text()
    assert "## Label review (before training)" in card and "reviewed by Ana Lima" in card
    # The decisions file next to the upload: who, when, old and new label, action.
    folder = app.state.uploads.folder(uid)
    dec = list(csv.DictReader((folder / DECISIONS_FILE).open(encoding="utf-8")))
    assert {int(d["row"]): d["action"] for d in dec} == {**{r: "fix" for r in fix}, **{r: "drop" for r in drop},
                                                         **{r: "keep" for r in keep}}
    for d in dec:
        assert d["who"] == "Ana Lima" and d["when"][:2] == "20" and d["labels_file"] == "batch.csv"
        if int(d["row"]) - 1 in FLIPPED:
            assert d["old_label"] == ROTATE[truth[int(d["row"]) - 1]]
        assert d["new_label"] == {"fix": truth[int(d["row"]) - 1], "drop": "", "keep": d["old_label"]}[d["action"]]
    corrected = pd.read_csv(folder / "labels-corrected.csv")
    assert len(corrected) == 60 - len(drop) and not set(drop) & set(corrected["row"])
    # The job page shows the verdict and the review, with the dropped rows and both files.
    page = client.get(f"/jobs/{job.id}", headers={"accept": "text/html"}).text
    assert f'data-status="{res["status"]}"' in page and 'id="review-dropped"' in page
    assert f"{len(drop)} row(s) dropped" in page and f"row {drop[0]} (" in page
    got = client.get(f"/models/news/labels/{uid}/{DECISIONS_FILE}")
    assert got.status_code == 200 and "Ana Lima" in got.text
    assert client.get(f"/models/news/labels/{uid}/meta.json").status_code == 404


def test_an_unreviewed_noisy_batch_is_held_and_listed_on_the_models_pages(model_ui):
    app, client = model_ui
    data, _ = flipped_batch()
    uid = check(client, data, name="quarter.csv").split("/")[-1]
    r = client.post(f"/models/news/labels/{uid}/retrain", data={"reviewer": ""}, follow_redirects=False)
    job = app.state.jobs.wait(r.headers["location"].split("/")[-1], 60)
    assert job.status == "done" and job.result["status"] == "held" and job.result["version"] is None
    assert job.result["review"]["who"] == reviewer("")  # no name typed: the OS user
    assert str(app.state.settings.models_root) not in job.result["message"]  # no server path reaches the page
    page = client.get(f"/jobs/{job.id}").text
    assert 'data-status="held"' in page and "Held: the new labels look wrong" in page
    assert f'href="/models/news/labels/{uid}"' in page  # back to the review, to fix the rows
    listing = client.get("/models").text
    assert 'id="held-news"' in listing and "1 held (nothing trained); last: quarter.csv" in listing
    model = client.get("/models/news").text
    assert 'id="held-retrains"' in model and "quarter.csv" in model and "confident learning flags" in model
    assert client.get("/api/models/news").json()["held"][0]["source"] == "quarter.csv"
    # Reviewed and accepted: the same batch trains, the override is recorded.
    r = client.post(f"/models/news/labels/{uid}/retrain", data={"accept": "yes"}, follow_redirects=False)
    job = app.state.jobs.wait(r.headers["location"].split("/")[-1], 60)
    assert job.result["status"] in ("promoted", "rejected") and job.result["labels"]["accepted"]


def test_bad_review_input_is_refused_with_a_clear_message(model_ui):
    app, client = model_ui
    data, _ = flipped_batch()
    url = check(client, data)
    uid = url.split("/")[-1]
    row = flagged_rows(client.get(url).text)[0]
    r = client.post(f"/models/news/labels/{uid}/retrain", data={f"action-{row}": "fix", f"label-{row}": "weather"},
                    headers={"accept": "text/html"})
    assert r.status_code == 400 and "label of row" in r.text and "weather" in r.text
    r = client.post(f"/models/news/labels/{uid}/retrain", data={"action-999": "drop"})
    assert r.status_code == 400 and "row 999 is not among the flagged rows" in r.text
    r = client.post(f"/models/news/labels/{uid}/retrain", data={f"action-{row}": "burn"})
    assert r.status_code == 400 and "keep, fix or drop" in r.text
    assert app.state.jobs.list() == []
    assert client.get("/models/news/labels/" + "0" * 32).status_code == 404
    assert client.get(f"/models/other/labels/{uid}").status_code == 404
    bad = pd.DataFrame({"text": ["goal", ""], "label": ["sport", "tech"]}).to_csv(index=False).encode()
    r = client.post("/models/news/labels/check", files={"labels": ("bad.csv", bad, "text/csv")})
    assert r.status_code == 422 and 'data-code="empty_text"' in r.text and "Not retrained" in r.text


def test_apply_label_decisions_and_form_parsing():
    ds = TextDataset(["goal team", "chip data", "bank rates", "cup win"], ["sport", "sport", "money", "tech"])
    out, done = apply_label_decisions(ds, [LabelDecision(2, "fix", "sport", "tech"), LabelDecision(3, "drop", "money"),
                                          LabelDecision(4, "keep", "tech")])
    assert out.texts == ["goal team", "chip data", "cup win"] and out.labels == ["sport", "tech", "tech"]
    assert out.rows == [1, 2, 4] and [d["row"] for d in done["dropped"]] == [3] and done["kept"][0]["new"] == "tech"
    with pytest.raises(ConfigError, match="the file changed since the review"):
        apply_label_decisions(ds, [LabelDecision(1, "keep", "tech")])
    with pytest.raises(ConfigError, match="row 9 is not in"):
        apply_label_decisions(ds, [LabelDecision(9, "drop", "x")])
    with pytest.raises(ConfigError, match="'fix' needs the right label"):
        LabelDecision(1, "fix", "sport")
    view = {"rows": [{"row": 2, "given": "sport"}, {"row": 5, "given": "tech"}], "classes": ["sport", "tech"]}
    got = decisions_from_form({"action-2": "fix", "label-2": "sport", "action-5": "", "label-5": "sport",
                               "reviewer": "x"}, view)
    assert [(d.row, d.action, d.new) for d in got] == [(2, "keep", "sport")]  # a "fix" to the same label is a keep
    assert reviewer("  Ana   Lima ") == "Ana Lima" and reviewer("")
