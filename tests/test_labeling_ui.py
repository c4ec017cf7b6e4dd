"""The coordinator's labeling page: routes through TestClient, then the keyboard flow in headless Chromium."""
import os
import shutil
import threading
import time

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from adaptlab.ship import ModelRegistry, Pipeline
from adaptlab.ui import UISettings, create_app
from synthetic import topic_corpus

BASE = "http://127.0.0.1:8765"
TIMEOUT_MS = 60_000


def make_model(root, tiny_encoder_dir):
    """A probe on the tiny encoder, trained on 24 texts and judged on 120 sealed ones."""
    train, sealed = topic_corpus(24, seed=1, noise=0.5), topic_corpus(120, seed=2)
    pipe = Pipeline(rung="probe", encoder=str(tiny_encoder_dir)).fit(train.texts, train.labels)
    ModelRegistry.create(root / "models" / "triage", pipe, train=train, eval_set=sealed)


def pool_csv(path, n=40, seed=9):
    pool = topic_corpus(n, seed=seed)
    pd.DataFrame({"id": [f"in-{i}" for i in range(n)], "text": pool.texts}).to_csv(path, index=False)
    return dict(zip(pool.texts, pool.labels))


def wait_pick(client):
    """Wait for the background pick jobs (the upload request only queues the pick)."""
    jobs = client.app.state.jobs
    for j in jobs.list():
        if j["kind"] == "label-pick":
            assert jobs.wait(j["id"], timeout=120).status == "done" or j["status"] == "failed"


@pytest.fixture
def client(tmp_path, tiny_encoder_dir, one_torch_thread):
    make_model(tmp_path, tiny_encoder_dir)
    app = create_app(UISettings(home=tmp_path / "home", models_root=tmp_path / "models",
                                encoder=str(tiny_encoder_dir), n_boot=200, torch_threads=1))
    with TestClient(app, base_url=BASE) as c:
        yield c


def test_label_routes_save_every_key_and_refuse_bad_input(client, tmp_path):
    truth = pool_csv(tmp_path / "pool.csv")
    assert client.get("/api/models/triage/label").status_code == 404  # no batch yet
    assert client.get("/models/nope/label").status_code == 404
    with open(tmp_path / "pool.csv", "rb") as fh:
        r = client.post("/models/triage/label/suggest", files={"pool": ("pool.csv", fh, "text/csv")},
                        data={"n": "6"}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    wait_pick(client)
    state = client.get("/api/models/triage/label").json()
    assert state["total"] == 6 and state["next"] == 0 and state["classes"] == ["money", "sport", "tech"]
    page = client.get("/models/triage/label").text
    assert str(tmp_path) not in page.split("<footer>")[0]  # no server path in the page (the footer names the home)
    rows = [line for line in page.splitlines() if 'class="text"' in line]
    first = rows[0].split('class="text">')[1].split("</td>")[0]
    s = client.post("/api/models/triage/label", json={"action": "label", "row": 0, "label": truth[first]}).json()
    assert s["labeled"] == 1 and s["next"] == 1
    s = client.post("/api/models/triage/label", json={"action": "skip", "row": 1}).json()
    assert s["skipped"] == 1 and s["next"] == 2
    s = client.post("/api/models/triage/label", json={"action": "undo"}).json()
    assert s["skipped"] == 0 and s["next"] == 1 and s["decisions"] == {"0": truth[first]}
    for body, words in [({"action": "label", "row": 2, "label": "weather"}, "not one of the model's classes"),
                        ({"action": "label", "row": 99, "label": "sport"}, "not a row"),
                        ({"action": "jump"}, "not one of label, skip, undo")]:
        r = client.post("/api/models/triage/label", json=body)
        assert r.status_code == 400 and words in r.json()["detail"]
    with open(tmp_path / "pool.csv", "rb") as fh:
        r = client.post("/models/triage/label/suggest", files={"pool": ("pool.csv", fh, "text/csv")},
                        data={"n": "0"})
    assert r.status_code == 400 and "not a number from 1" in r.text
    # The labeled text stays out of the next batch.
    with open(tmp_path / "pool.csv", "rb") as fh:
        client.post("/models/triage/label/suggest", files={"pool": ("pool.csv", fh, "text/csv")}, data={"n": "39"})
    wait_pick(client)
    page = client.get("/models/triage/label").text
    assert first not in page and client.get("/api/models/triage/label").json()["total"] == 39
    r = client.post("/models/triage/label/retrain")
    assert r.status_code == 400 and "Label at least one text" in r.text
    # One label of one class: the retrain would refuse the file; the page says why and nothing is submitted.
    client.post("/api/models/triage/label", json={"action": "label", "row": 0, "label": "sport"})
    r = client.post("/models/triage/label/retrain")
    assert r.status_code == 422 and "Not retrained yet" in r.text and "at least two classes" in r.text
    assert client.get("/api/models/triage/label").json()["retrain_job"] is None


def test_the_pick_runs_in_the_background_with_a_picking_page_and_a_failed_pick_says_why(client, tmp_path):
    jobs = client.app.state.jobs
    gate, real = threading.Event(), jobs.runners["label-pick"]
    jobs.runners["label-pick"] = lambda ctx: (gate.wait(60), real(ctx))
    pool_csv(tmp_path / "pool.csv")
    with open(tmp_path / "pool.csv", "rb") as fh:
        t0 = time.monotonic()
        r = client.post("/models/triage/label/suggest", files={"pool": ("pool.csv", fh, "text/csv")},
                        data={"n": "5"}, follow_redirects=False)
    assert r.status_code == 303 and time.monotonic() - t0 < 30  # answered while the pick waits
    page = client.get("/models/triage/label").text
    assert 'id="picking"' in page and "Picking 5 texts to label" in page and 'id="suggest-form"' not in page
    assert str(tmp_path) not in page.split("<footer>")[0]
    with open(tmp_path / "pool.csv", "rb") as fh:  # a second pick while one runs is refused
        r = client.post("/models/triage/label/suggest", files={"pool": ("pool.csv", fh, "text/csv")}, data={"n": "5"})
    assert r.status_code == 409 and "being picked" in r.text
    assert client.get("/api/models/triage/label").status_code == 404  # no batch yet
    gate.set()
    wait_pick(client)
    page = client.get("/models/triage/label").text
    assert 'id="picking"' not in page and client.get("/api/models/triage/label").json()["total"] == 5
    job = next(j for j in jobs.list() if j["kind"] == "label-pick")
    assert "Back to labeling triage" in client.get(f"/jobs/{job['id']}").text
    # A pool holding only the model's training texts: nothing can be suggested; the page says why, once.
    train = topic_corpus(24, seed=1, noise=0.5)
    pd.DataFrame({"text": train.texts}).to_csv(tmp_path / "seen.csv", index=False)
    with open(tmp_path / "seen.csv", "rb") as fh:
        client.post("/models/triage/label/suggest", files={"pool": ("seen.csv", fh, "text/csv")}, data={"n": "5"})
    for j in jobs.list():
        jobs.wait(j["id"], timeout=120)
    page = client.get("/models/triage/label").text
    assert "Picking texts did not finish (failed)" in page and "near-duplicate of a labeled text" in page
    assert str(tmp_path) not in page.split("<footer>")[0]
    assert "did not finish" not in client.get("/models/triage/label").text  # shown once
    assert client.get("/api/models/triage/label").json()["total"] == 5  # the batch before is kept


# ------------------------------------------------------------------------------------------ browser


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_encoder_dir):
    import uvicorn

    from launch import free_port

    root = tmp_path_factory.mktemp("labeling-browser")
    make_model(root, tiny_encoder_dir)
    port = free_port()
    settings = UISettings(home=root / "home", models_root=root / "models", encoder=str(tiny_encoder_dir),
                          n_boot=200, torch_threads=1, port=port)
    srv = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    t_end = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < t_end, "uvicorn did not start"
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}", "root": root}
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(server):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: run scripts/dev.sh test (it installs it) or apt-get install chromium"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True,
                               args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        ctx = b.new_context(viewport={"width": 1200, "height": 900})
        ctx.set_default_timeout(TIMEOUT_MS)
        yield ctx.new_page()
        b.close()


def test_label_ten_texts_with_the_keyboard_reload_midway_and_retrain(server, page, tmp_path):
    truth = pool_csv(tmp_path / "pool.csv")
    page.goto(server["url"] + "/models/triage")
    page.click("#label-link")
    page.set_input_files("#pool", str(tmp_path / "pool.csv"))
    page.fill("#suggest-n", "12")
    page.click("#suggest-button")
    # The pick runs in the background: the page shows "picking" and reloads itself until the batch is there.
    page.wait_for_selector("#labeling[data-ready='yes']")
    classes = ["money", "sport", "tech"]
    assert page.inner_text("#n-total") == "12"

    def press_truth(k: int, saved: int) -> None:
        text = page.inner_text(f"#row-{k} td.text")
        page.keyboard.press(str(classes.index(truth[text]) + 1))
        page.wait_for_selector(f"#labeling[data-saved='{saved}']")

    for k in range(5):
        press_truth(k, k + 1)
    assert page.inner_text("#n-labeled") == "5"
    # Reload mid-way: the five labels were saved on the server, the sixth text is the current one.
    page.reload()
    page.wait_for_selector("#labeling[data-ready='yes']")
    assert page.inner_text("#n-labeled") == "5" and "current" in page.get_attribute("#row-5", "class")
    assert page.inner_text("#label-0") == truth[page.inner_text("#row-0 td.text")]
    # Skip, then undo the skip: the sixth text is current again.
    page.keyboard.press("s")
    page.wait_for_selector("#labeling[data-saved='6']")
    assert page.inner_text("#label-5") == "skipped"
    page.keyboard.press("u")
    page.wait_for_selector("#labeling[data-saved='5']")
    assert page.inner_text("#label-5") == ""
    for k in range(5, 10):
        press_truth(k, k + 1)
    assert page.inner_text("#n-labeled") == "10"
    page.screenshot(path=str(tmp_path / "labeling.png"), full_page=True)
    assert (tmp_path / "labeling.png").stat().st_size > 15_000  # a real page, not a blank one
    if os.environ.get("ADAPTLAB_SHOTS"):
        shutil.copy(tmp_path / "labeling.png", os.environ["ADAPTLAB_SHOTS"])
    page.click("#label-retrain-button")
    page.wait_for_selector("#verdict")
    headline = page.inner_text("#verdict-headline")
    assert "10 new label(s): 10 added" in page.inner_text("#merge-lines")
    reg = ModelRegistry(server["root"] / "models" / "triage")
    assert reg.versions[-1].id == "v0002" and reg.versions[-1].n_train == 24 + 10
    assert headline.startswith("Promoted") == (reg.current.id == "v0002")
    # Back on the labeling page the batch is closed and points at the verdict.
    page.goto(server["url"] + "/models/triage/label")
    assert page.locator("#retrain-job-link").count() == 1 and page.locator("#label-retrain-button").count() == 0
