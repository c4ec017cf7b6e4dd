"""Issue 16 in headless Chromium: the configure page edits one rung parameter and the stored study shows it."""
from adaptlab.store import RunStore
from synthetic import topic_corpus
from test_ui_browser import browser, page, server, shot, write_csv  # noqa: F401  (fixtures and helpers)


def test_the_configure_page_edits_a_rung_parameter_and_the_stored_study_shows_it(server, page, tmp_path):  # noqa: F811
    data = write_csv(tmp_path / "topics.csv", topic_corpus(120, seed=4))
    page.goto(server["url"] + "/study/new")
    page.set_input_files("#labeled", str(data))
    page.click("#upload-button")
    page.click("#check-button")
    page.wait_for_selector("#study-form")
    # Nothing is ticked on a fresh form (the default rungs depend on the time field); tick tfidf alone.
    assert not page.is_checked("#rung-tfidf") and not page.is_checked("#rung-probe")
    page.check("#rung-tfidf")
    # Only the ticked rungs' parameters are shown; each has its default as placeholder and its help text.
    assert page.is_visible("#params-tfidf") and not page.is_visible("#params-probe")
    page.check("#rung-lora")
    assert page.is_visible("#params-lora")
    page.click("#params-lora summary")
    assert page.get_attribute("#param-lora-r", "placeholder") == "8" and "LoRA rank" in page.inner_text("#params-lora")
    page.uncheck("#rung-lora")
    page.click("#params-tfidf summary")
    page.fill("#param-tfidf-min_df", "1")
    page.fill("#seeds", "2")
    shot(page, tmp_path / "configure.png")
    page.click("#start-button")
    page.wait_for_selector("#results-link")
    page.click("#results-link")
    page.wait_for_selector("#study-config")
    assert "tfidf: min_df = 1" in page.inner_text("#study-config")
    sid = page.url.rstrip("/").split("/")[-1]
    config = RunStore(server["settings"].home / "runs.sqlite").get_study(sid)["config"]
    assert config["rungs"] == ["tfidf"] and config["rung_params"] == {"tfidf": {"min_df": 1}}
    with page.expect_download() as dl:
        page.click("#study-file-link")
    assert "[rung.tfidf]\nmin_df = 1\n" in open(dl.value.path(), encoding="utf-8").read()
