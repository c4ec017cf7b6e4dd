"""The web app in headless Chromium (Playwright driving Debian's `chromium`; no browser download).

One uvicorn server in a thread on a free port, one browser for the module. Each test clicks through a
flow like a user would, then checks the DOM and a screenshot (a PNG that exists and is not blank).
"""
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from adaptlab.ship import ModelRegistry, Pipeline
from adaptlab.ui import UISettings, create_app
from launch import free_port
from synthetic import topic_corpus

ROTATE = {"sport": "tech", "tech": "money", "money": "sport"}
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_encoder_dir):
    import uvicorn

    root = tmp_path_factory.mktemp("ui-browser")
    port = free_port()
    settings = UISettings(home=root / "home", models_root=root / "models", encoder=str(tiny_encoder_dir),
                          max_upload_mb=1.0, n_boot=200, torch_threads=1, port=port)
    # A shipped model for the coordinator: v0001 trained on 9 noisy texts, judged on 150 sealed ones.
    small, sealed = topic_corpus(9, seed=1, noise=0.5), topic_corpus(150, seed=2)
    pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(small.texts, small.labels)
    ModelRegistry.create(settings.models_root / "triage", pipe, train=small, eval_set=sealed)
    app = create_app(settings)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    t_end = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < t_end, "uvicorn did not start"
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}", "root": root, "settings": settings, "app": app}
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: run scripts/dev.sh test (it installs it) or apt-get install chromium"
    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=chromium, headless=True,
                           args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    p = ctx.new_page()
    yield p
    ctx.close()


def shot(page, path: Path) -> Path:
    """Full-page screenshot; asserts it is a real, non-blank PNG."""
    from PIL import Image

    page.screenshot(path=str(path), full_page=True)
    assert path.is_file() and path.stat().st_size > 15_000, f"screenshot {path} is missing or tiny"
    img = Image.open(path).convert("L")
    hist = img.histogram()
    total = img.size[0] * img.size[1]
    assert img.size[0] == 1200 and sum(hist[:100]) > 0.002 * total, "the screenshot is blank"
    return path


def write_csv(path: Path, ds, labels=None) -> Path:
    pd.DataFrame({"text": ds.texts, "label": labels if labels is not None else ds.labels}).to_csv(path, index=False)
    return path


def test_bad_file_shows_problems_and_too_large_file_is_refused(server, page, tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"text": ["match goal team", "", "bank shares", "same text", "same text", "chip phone"],
                  "label": ["sport", "sport", None, "tech", "money", "tech"]}).to_csv(bad, index=False)
    page.goto(server["url"] + "/")
    page.click("#start-new")
    page.set_input_files("#labeled", str(bad))
    page.click("#upload-button")
    page.wait_for_selector("#columns-form")
    assert page.input_value("#text_col") == "text" and page.input_value("#label_col") == "label"
    page.click("#check-button")
    page.wait_for_selector("#problems")
    codes = page.eval_on_selector_all("#problems tr.problem", "rows => rows.map(r => r.dataset.code)")
    assert {"empty_text", "nan_label", "conflicting_duplicates"} <= set(codes)
    rows = page.eval_on_selector_all("#problem-rows tr td.num", "tds => tds.map(td => td.textContent.trim())")
    assert {"2", "3", "4", "5"} <= set(rows)
    assert "nothing has run" in page.inner_text("#check-message")
    shot(page, tmp_path / "problems.png")
    # A file over the limit (1 MiB here) is stopped in the browser with the same clear message.
    big = tmp_path / "big.csv"
    big.write_text("text,label\n" + ("word " * 60 + ",a\n") * 4000)
    page.goto(server["url"] + "/study/new")
    page.set_input_files("#labeled", str(big))
    page.click("#upload-button")
    page.wait_for_selector("#client-error:not([hidden])")
    assert "larger than this app's limit of 1.0 MiB" in page.inner_text("#client-error")
    assert page.url.endswith("/study/new")


def test_full_small_study_to_results_in_two_tabs(server, page, tmp_path):
    data = write_csv(tmp_path / "topics.csv", topic_corpus(120, seed=3))
    page.goto(server["url"] + "/study/new")
    page.set_input_files("#labeled", str(data))
    page.click("#upload-button")
    page.click("#check-button")
    page.wait_for_selector("#study-form")
    assert "120" in page.inner_text("#data-ok")
    # Nothing ticked: the study runs the default rungs (tfidf, probe without a time budget), as `study run`.
    assert not any(page.is_checked(f"#rung-{rung}") for rung in ("tfidf", "probe", "finetune"))
    assert "None ticked: the study runs tfidf, probe" in page.inner_text("#default-rungs")
    for rung in ("tfidf", "probe"):
        page.check(f"#rung-{rung}")
    page.fill("#compute_budget", "5 min")
    page.click("#plan-button")
    page.wait_for_selector("#plan-table")
    assert "Planned" in page.inner_text("#plan-total")
    page.fill("#seeds", "3")
    page.click("#start-button")
    page.wait_for_selector("#job")
    job_url = page.url
    # A second tab on the same job sees the same state while it runs and when it ends.
    tab2 = page.context.new_page()
    tab2.goto(job_url)
    for p in (page, tab2):
        p.wait_for_selector("#results-link")
    for p in (page, tab2):
        assert p.inner_text("#job-status") == "done"
        states = p.eval_on_selector_all("#grid td.cell", "tds => tds.map(td => td.dataset.state)")
        assert states == ["done"] * 6
        assert p.inner_text("#job-count") == "6 of 6 runs finished"
    assert tab2.inner_text("#grid") == page.inner_text("#grid")
    shot(tab2, tmp_path / "job.png")
    page.click("#results-link")
    page.wait_for_selector("#decision-headline")
    rungs = page.eval_on_selector_all("#rung-table tr[data-rung]", "rows => rows.map(r => r.dataset.rung)")
    assert rungs == ["tfidf", "probe"]
    bands = page.eval_on_selector_all("#rung-table td.band", "tds => tds.map(td => td.textContent)")
    assert all(b.startswith("[0.") or b.startswith("[1.") for b in bands)
    assert page.eval_on_selector("#f1-plot", "img => img.complete && img.naturalWidth > 300")
    assert page.locator("#defense li").count() == 6 and page.locator("#transfer-note li").count() >= 5
    assert page.inner_text("#decision-headline").strip()
    shot(page, tmp_path / "results.png")
    with page.expect_download() as dl:
        page.click("#report-link")
    report = Path(dl.value.path())
    text = report.read_text(encoding="utf-8")
    assert dl.value.suggested_filename.startswith("adaptlab-report-") and "Six-question defense" in text
    # The coordinator's coverage vs accuracy table and curve for the chosen rung (#34: pick --min-confidence).
    assert 'id="coverage-table"' in text and 'id="coverage-curve"' in text and "--min-confidence P" in text


def test_retrain_flow_promotes_then_refuses_then_rolls_back(server, page, tmp_path):
    good = write_csv(tmp_path / "new_labels.csv", topic_corpus(150, seed=5))
    wrong = topic_corpus(300, seed=6)
    bad = write_csv(tmp_path / "relabelled.csv", wrong, [ROTATE[label] for label in wrong.labels])
    page.goto(server["url"] + "/models")
    page.click("a[href='/models/triage']")
    assert page.inner_text("#in-use") == "v0001"
    # 1. Better labels: the gate promotes the retrained model.
    page.set_input_files("#labels", str(good))
    page.click("#retrain-button")
    page.wait_for_selector("#verdict")
    assert page.get_attribute("#verdict", "data-promoted") == "yes"
    assert page.inner_text("#verdict-headline") == "Promoted: v0002 is now in use."
    assert "150 new label(s): 150 added" in page.inner_text("#merge-lines")
    shot(page, tmp_path / "promoted.png")
    # 2. Relabelled (wrong) labels: the gate refuses, in plain words, and keeps v0002.
    page.click("#model-link")
    assert page.inner_text("#in-use") == "v0002"
    page.set_input_files("#labels", str(bad))
    page.click("#retrain-button")
    page.wait_for_selector("#verdict")
    assert page.get_attribute("#verdict", "data-promoted") == "no"
    assert "v0002 stays in use" in page.inner_text("#verdict-headline")
    assert "worse" in page.inner_text("#verdict-message")
    shot(page, tmp_path / "refused.png")
    # 3. The model list shows both outcomes; roll back to v0001.
    page.click("#model-link")
    assert "rejected" in page.inner_text("#version-v0003") and "in use" in page.inner_text("#version-v0002")
    assert page.locator("#rollback-v0003").count() == 0
    page.click("#rollback-v0001")
    page.wait_for_selector("#notice")
    assert page.inner_text("#notice") == "v0001 is in use again (was v0002)."
    assert page.inner_text("#in-use") == "v0001"
    shot(page, tmp_path / "models.png")
    assert ModelRegistry(server["settings"].models_root / "triage").current.id == "v0001"


def test_study_with_a_time_budget_shows_screens_and_the_allocation(server, page, tmp_path):
    data = write_csv(tmp_path / "budgeted.csv", topic_corpus(120, seed=1))
    page.goto(server["url"] + "/study/new")
    page.set_input_files("#labeled", str(data))
    page.click("#upload-button")
    page.click("#check-button")
    page.wait_for_selector("#study-form")
    assert "spends it where the decision can still change" in page.inner_text("#time-budget-help")
    for rung in ("tfidf", "probe", "finetune"):
        page.check(f"#rung-{rung}")
    page.fill("#seeds", "3")
    page.fill("#train_budget", "40steps")
    page.fill("#time_budget", "in a while")
    page.click("#start-button")
    page.wait_for_selector("#config-error")
    assert "time budget='in a while' is not valid" in page.inner_text("#config-error")
    assert page.get_attribute("#time_budget", "aria-invalid") == "true"
    page.fill("#time_budget", "60s")
    page.click("#start-button")
    page.wait_for_selector("#job")
    assert "60s" in page.inner_text("#job-adaptive")
    page.wait_for_selector("#results-link")
    assert page.inner_text("#job-status") == "done" and page.is_visible("#job-allocation")
    cells = page.eval_on_selector_all(
        "#grid td.cell", "tds => tds.map(td => [td.id, td.dataset.state, td.dataset.fidelity, td.textContent])")
    assert all(state in ("done", "skipped") for _, state, _, _ in cells)
    # finetune's screen shows its share of the budget ("@25%") unless the allocation promoted it to the full budget.
    finetune = [(fid, text) for cid, state, fid, text in cells if cid.startswith("cell-finetune-") and state == "done"]
    assert finetune and all(("@25%" in text) == (fid == "0.25") for fid, text in finetune)
    assert all(text.startswith("not run (") for _, state, _, text in cells if state == "skipped")
    shot(page, tmp_path / "job-budgeted.png")
    page.click("#results-link")
    page.wait_for_selector("#allocation")
    assert page.inner_text("#allocation-stop").startswith("Why it stopped (")
    assert "of the budget 60.0 s" in page.inner_text("#allocation-compute")
    phases = page.eval_on_selector_all("#allocation-timeline tr[data-rung]", "rows => rows.map(r => r.cells[1].textContent)")
    assert phases[0] == "cheap" and "screen" in phases
    shot(page, tmp_path / "results-budgeted.png")


def test_label_review_flags_flipped_rows_fix_two_then_retrain_shows_the_verdict(server, page, tmp_path):
    flipped = [2, 7, 11, 16, 20, 25, 31, 37, 40, 44, 50, 55]  # 12 wrong labels among 60
    # A model of its own, so the other retrain test's versions do not matter.
    train, sealed = topic_corpus(150, seed=1), topic_corpus(60, seed=2)
    pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(train.texts, train.labels)
    ModelRegistry.create(server["settings"].models_root / "review", pipe, train=train, eval_set=sealed)
    batch = topic_corpus(60, seed=7)
    labels = [ROTATE[x] if i in flipped else x for i, x in enumerate(batch.labels)]
    data = write_csv(tmp_path / "quarter.csv", batch, labels)
    page.goto(server["url"] + "/models/review")
    page.set_input_files("#labels", str(data))
    page.click("#review-button")
    page.wait_for_selector("#suspicious")
    # The flipped rows are flagged before anything is trained.
    rows = [int(r) for r in page.eval_on_selector_all("#suspicious tr.suspicious", "trs => trs.map(t => t.dataset.row)")]
    wrong = [r for r in rows if r - 1 in flipped]
    assert len(rows) >= 8 and len(wrong) / len(rows) >= 0.8
    assert "would be held" in " ".join(page.inner_text("#would-hold").split())
    shot(page, tmp_path / "review.png")
    # Fix two: picking the right label ticks "fix" (app.js); type a name for the record.
    for r in wrong[:2]:
        page.select_option(f"#label-{r}", batch.labels[r - 1])
        assert page.is_checked(f"#fix-{r}")
    page.fill("#reviewer", "Ana")
    page.click("#review-retrain-button")
    page.wait_for_selector("#verdict")
    # The other flipped rows were left as they are: the label check holds the batch, nothing is trained.
    assert page.get_attribute("#verdict", "data-status") == "held"
    assert page.inner_text("#verdict-headline").startswith("Held: the new labels look wrong")
    assert "Label review by Ana" in page.inner_text("#review-record") and "2 label(s) fixed" in page.inner_text(
        "#review-fixed")
    fixed = page.inner_text("#review-fixed-rows")
    assert all(f"row {r}: {labels[r - 1]} → {batch.labels[r - 1]}" in fixed for r in wrong[:2])
    shot(page, tmp_path / "review-verdict.png")
    page.click("#model-link")
    assert "quarter.csv" in page.inner_text("#held-retrains") and page.inner_text("#in-use") == "v0001"
