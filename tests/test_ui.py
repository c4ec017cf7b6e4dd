"""The web app through FastAPI's TestClient: pages, JSON endpoints, jobs, upload limits, and refusals."""
import html
import json
import re
import threading
import time

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adaptlab.ship import ModelRegistry, Pipeline
from adaptlab.store import RunStore
from adaptlab.ui import UISettings, create_app
from adaptlab.ui.jobs import Job, JobManager, loss_series
from adaptlab.ui.settings import SketchSettings
from synthetic import topic_corpus

BASE = "http://127.0.0.1:8765"
HTML = {"accept": "text/html"}
ROTATE = {"sport": "tech", "tech": "money", "money": "sport"}


def csv_bytes(ds, labels=None) -> bytes:
    return pd.DataFrame({"text": ds.texts, "label": labels if labels is not None else ds.labels}).to_csv(
        index=False).encode("utf-8")


def make_settings(tmp_path, encoder=None, **kw) -> UISettings:
    return UISettings(home=tmp_path / "home", models_root=tmp_path / "models", encoder=encoder, n_boot=200,
                      torch_threads=1, **kw)


@pytest.fixture
def ui(tmp_path, tiny_encoder_dir):
    app = create_app(make_settings(tmp_path, str(tiny_encoder_dir), max_upload_mb=0.25))
    with TestClient(app, base_url=BASE) as client:
        yield app, client


def upload(client, data: bytes, name="data.csv", unlabeled=None):
    files = {"labeled": (name, data, "text/csv")}
    if unlabeled is not None:
        files["unlabeled"] = ("unl.csv", unlabeled, "text/csv")
    return client.post("/upload", files=files, follow_redirects=False)


def location_id(r) -> str:
    assert r.status_code == 303, r.text[:500]
    return r.headers["location"].split("?")[0].split("#")[0].rstrip("/").split("/")[-1]


def start_study(client, data: bytes, rungs=("tfidf", "probe"), seeds=2, **fields) -> str:
    uid = location_id(upload(client, data))
    r = client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"}, follow_redirects=False)
    assert r.headers["location"] == f"/data/{uid}/configure"
    r = client.post(f"/data/{uid}/start", data={"rungs": list(rungs), "seeds": str(seeds), **fields},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/jobs/"), r.text[:800]
    return location_id(r)


# ---------------------------------------------------------------------------------------- studies
def test_static_files_are_served(ui):
    """The page's stylesheet and script come from the package (data files a wheel must carry)."""
    _app, client = ui
    home = client.get("/")
    assert home.status_code == 200 and "/static/app.css" in home.text
    for name, kind in (("app.css", "text/css"), ("app.js", "javascript")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.content) > 100


def test_upload_check_study_progress_results_and_report(ui):
    app, client = ui
    data = csv_bytes(topic_corpus(120, seed=0, noise=0.5))
    uid = location_id(upload(client, data, name="my data.csv"))
    page = client.get(f"/data/{uid}")
    assert page.status_code == 200 and "my data.csv" in page.text
    # The column pickers offer the file's columns and preselect the detected ones.
    assert re.search(r'<option value="text"\s+selected', page.text) and re.search(r'<option value="label"\s+selected',
                                                                                     page.text)
    r = client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"}, follow_redirects=False)
    assert r.status_code == 303
    conf = client.get(f"/data/{uid}/configure")
    assert 'id="data-ok"' in conf.text and '<b id="data-rows">120</b> labeled texts' in conf.text
    for rung in ("tfidf", "probe", "refit", "lora", "finetune", "lpft", "unfreeze"):
        assert f'id="rung-{rung}"' in conf.text
    r = client.post(f"/data/{uid}/start", data={"rungs": ["tfidf", "probe"], "seeds": "2"}, follow_redirects=False)
    jid = location_id(r)
    job = app.state.jobs.wait(jid, 120)
    assert job.status == "done", job.error
    # The live grid holds every (rung, seed) with the score the run store holds.
    snap = client.get(f"/api/jobs/{jid}").json()
    assert snap["n_done"] == snap["n_cells"] == 4 and snap["study_id"] == snap["expected_study_id"]
    stored = {(r["rung"], r["seed"]): r["metrics"]["test"]["f1"]
              for r in RunStore(app.state.settings.home / "runs.sqlite").study_results(snap["study_id"])}
    assert {(c["rung"], c["seed"]): round(c["f1"], 4) for c in snap["cells"].values()} == {
        k: round(v, 4) for k, v in stored.items()}
    assert "data_path" not in snap["spec"] and str(app.state.settings.upload_dir) not in json.dumps(snap)
    # Results page: the table, the bands plot, the decision with its transfer note and defense.
    res = client.get(f"/studies/{snap['study_id']}", headers=HTML)
    assert res.status_code == 200
    summary = RunStore(app.state.settings.home / "runs.sqlite").get_study(snap["study_id"])["summary"]
    for row in summary["rows"]:
        assert f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]" in res.text and f"{row['mean']:.4f}" in res.text
    assert 'id="f1-plot"' in res.text and "data:image/png;base64," in res.text
    assert 'id="decision-headline"' in res.text and 'id="transfer-note"' in res.text
    assert res.text.count("<li><b>") >= 6  # the six questions (and the transfer note items)
    api = client.get(f"/api/studies/{snap['study_id']}").json()
    assert api["decision"]["headline"] in res.text.replace("&#39;", "'").replace("&amp;", "&")
    rep = client.get(f"/studies/{snap['study_id']}/report.html")
    assert rep.status_code == 200 and "attachment" in rep.headers["content-disposition"]
    assert "<html" in rep.text and "Six-question defense" in rep.text
    # The home page lists the study and the job.
    home = client.get("/")
    assert snap["study_id"][:12] in home.text and jid in home.text


def test_a_web_study_records_its_upload_path_so_the_stored_study_finds_its_file(ui):
    from adaptlab.cli import app as cli_app

    app, client = ui
    data = csv_bytes(topic_corpus(90, seed=1))
    unl = pd.DataFrame({"text": topic_corpus(30, seed=2).texts}).to_csv(index=False).encode()
    uid = location_id(upload(client, data, name="my data.csv", unlabeled=unl))
    client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"}, follow_redirects=False)
    jid = location_id(client.post(f"/data/{uid}/start", data={"rungs": ["tfidf"], "seeds": "2"},
                                  follow_redirects=False))
    job = app.state.jobs.wait(jid, 120)
    assert job.status == "done", job.error
    home = app.state.settings.home
    rec = RunStore(home / "runs.sqlite").get_study(job.study_id)
    data_info = rec["summary"]["data"]
    folder = (app.state.settings.upload_dir / uid).resolve()
    assert data_info["source"] == "my data.csv"  # what the report shows: the user's name
    assert data_info["inputs"]["data"] == str(folder / "labeled.csv")  # where the file is: the upload's path
    assert data_info["inputs"]["unlabeled"] == str(folder / "unlabeled.csv")
    assert data_info["inputs"]["text_col"] == "text" and data_info["inputs"]["label_col"] == "label"
    page = client.get(f"/studies/{job.study_id}", headers=HTML).text
    assert "my data.csv" in page and str(app.state.settings.upload_dir) not in page  # still no server path shown
    # The command line finds the file: the study file it writes reruns the study from its data alone.
    r = CliRunner().invoke(cli_app, ["study", "config", job.study_id[:12], "--home", str(home), "--json"])
    assert r.exit_code == 0, r.output
    written = json.loads(r.stdout)
    assert written["inputs"]["data"] == str(folder / "labeled.csv") and str(folder / "labeled.csv") in written["text"]


def test_bad_file_lists_problems_row_by_row_and_nothing_runs(ui):
    app, client = ui
    rows = [("good text about football", "sport"), ("", "sport"), ("another text on markets", None),
            ("same words here", "tech"), ("same words here", "money"), ("lonely class text", "rare"),
            ("chips and phones", "tech"), ("bank and shares", "money"), ("match and goal", "sport")]
    df = pd.DataFrame(rows, columns=["text", "label"])
    uid = location_id(upload(client, df.to_csv(index=False).encode()))
    r = client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"}, headers=HTML)
    assert r.status_code == 422
    assert 'id="problems"' in r.text and 'id="problem-rows"' in r.text and "nothing has run" in r.text
    for code in ("empty_text", "nan_label", "conflicting_duplicates", "rare_class"):
        assert f'data-code="{code}"' in r.text, code
    # Row by row: row 2 (the empty text) and row 3 (the missing label) are listed with their codes.
    by_row = dict(re.findall(r'<tr><td class="num">(\d+)</td><td>(.*?)</td></tr>', r.text))
    assert "empty_text" in by_row["2"] and "nan_label" in by_row["3"]
    assert str(app.state.settings.upload_dir) not in r.text  # no server path on the page
    assert client.get(f"/data/{uid}/configure", follow_redirects=False).headers["location"] == f"/data/{uid}"
    assert client.get("/api/jobs").json() == []


def test_wrong_column_names_the_fix(ui):
    _, client = ui
    uid = location_id(upload(client, csv_bytes(topic_corpus(30))))
    r = client.post(f"/data/{uid}/check", data={"text_col": "txt", "label_col": "label"})
    assert r.status_code == 422 and "is not a column" in r.text and "Did you mean" in r.text
    assert "data.csv: text_col=" in html.unescape(r.text) and "uploads" not in r.text  # the user's name, not ours


def test_unsupported_and_empty_uploads_are_refused(ui):
    app, client = ui
    r = client.post("/upload", files={"labeled": ("sheet.xlsx", b"PK\x03\x04", "application/octet-stream")})
    assert r.status_code == 400 and "cannot read files of type '.xlsx'" in html.unescape(r.text)
    assert "CSV UTF-8" in r.text
    r = client.post("/upload", files={"labeled": ("empty.csv", b"", "text/csv")})
    assert r.status_code == 400 and "is empty" in r.text
    assert not any(app.state.settings.upload_dir.iterdir())


def test_upload_size_limit_has_a_clear_message(ui):
    app, client = ui
    big = b"text,label\n" + b"x" * (300 * 1024) + b",a\n"
    r = client.post("/upload", files={"labeled": ("big.csv", big, "text/csv")}, headers=HTML)
    assert r.status_code == 413
    assert "larger than this app's limit of 0.2 MiB" in html.unescape(r.text) and "--max-upload-mb" in r.text
    r = client.post("/upload", files={"labeled": ("big.csv", big, "text/csv")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        yield b"--b\r\nContent-Disposition: form-data; name=\"labeled\"; filename=\"x.csv\"\r\n\r\n"
        for _ in range(40):
            yield b"y" * 10240
        yield b"\r\n--b--\r\n"

    r = client.post("/upload", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413
    assert not any(app.state.settings.upload_dir.iterdir())


def test_client_paths_are_never_trusted(ui, tmp_path):
    app, client = ui
    s = app.state.settings
    r = upload(client, csv_bytes(topic_corpus(30)), name="../../../../outside/evil.csv")
    uid = location_id(r)
    stored = sorted(p.name for p in (s.upload_dir / uid).iterdir())
    assert stored == ["labeled.csv", "meta.json"] and not (tmp_path / "outside").exists()
    assert "evil.csv" in client.get(f"/data/{uid}").text and "../" not in client.get(f"/data/{uid}").text
    for url in ("/data/..%2F..%2Fetc", "/data/" + "0" * 32, "/data/../../etc/passwd", "/jobs/..%2Fx",
                "/api/jobs/not-a-job", "/studies/..%2F..%2Fruns.sqlite", "/studies/zz", "/models/..%2Fhome",
                "/models/.hidden", "/api/models/..", "/studies/" + "a" * 12 + "/report.html"):
        assert client.get(url).status_code == 404, url
    # A model folder reached through a symlink out of the models root is neither listed nor served.
    outside = tmp_path / "elsewhere" / "m"
    ds = topic_corpus(30, seed=1)
    ModelRegistry.create(outside, Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(ds.texts, ds.labels),
                         train=ds, eval_set=topic_corpus(30, seed=2))
    s.models_root.mkdir(parents=True, exist_ok=True)
    (s.models_root / "sneaky").symlink_to(outside, target_is_directory=True)
    assert "sneaky" not in client.get("/models").text and client.get("/api/models").json() == []
    assert client.get("/models/sneaky").status_code == 404
    r = client.post("/models/sneaky/retrain", files={"labels": ("l.csv", csv_bytes(ds), "text/csv")})
    assert r.status_code == 404
    assert client.post("/models/..%2Felsewhere%2Fm/rollback", data={"version": "v0001"}).status_code == 404


def test_host_and_cross_site_requests_are_refused(ui):
    _, client = ui
    csp = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp  # no inline script, no framing
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    r = client.post("/sketch/start", headers={"origin": "http://evil.example"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/sketch/start", headers={"sec-fetch-site": "cross-site"}, follow_redirects=False)
    assert r.status_code == 403
    ok = client.post("/jobs/" + "0" * 16 + "/cancel", headers={"origin": BASE})
    assert ok.status_code == 404  # same origin passes the guard (and the job does not exist)


def test_planner_estimate_and_bad_budget(ui):
    _, client = ui
    uid = location_id(upload(client, csv_bytes(topic_corpus(90))))
    client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"})
    r = client.post(f"/data/{uid}/plan", data={"rungs": ["tfidf", "probe"], "compute_budget": "10 min"})
    assert r.status_code == 200 and 'id="plan-table"' in r.text
    assert re.search(r"<td>tfidf</td><td class=\"num\">\d+</td>", r.text) and "Planned <b>" in r.text
    r = client.post(f"/data/{uid}/plan", data={"rungs": ["tfidf"], "compute_budget": "soon"})
    assert r.status_code == 400 and "budget='soon' is not valid" in html.unescape(r.text)
    r = client.post(f"/data/{uid}/start", data={"rungs": ["tfidf"], "seeds": "0"})
    assert r.status_code == 400 and "seeds=0 is not valid" in r.text
    r = client.post(f"/data/{uid}/start", data={"rungs": ["nonsense"], "seeds": "2"})
    assert r.status_code == 400 and "at least one available rung" in r.text


def test_time_budget_field_is_distinct_from_the_planner_budget_and_validated(ui):
    app, client = ui
    uid = location_id(upload(client, csv_bytes(topic_corpus(90))))
    client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"})
    conf = client.get(f"/data/{uid}/configure").text
    assert 'name="time_budget"' in conf and "time budget for the whole study" in conf
    assert "spends it where the decision can still change" in conf and "exhaustive grid" in conf
    assert "compute budget for the planner's estimate (runs nothing)" in html.unescape(conf)  # told apart
    r = client.post(f"/data/{uid}/start", data={"rungs": ["tfidf"], "seeds": "3", "time_budget": "soon"})
    text = html.unescape(r.text)
    assert r.status_code == 400 and 'id="config-error"' in r.text
    assert "time budget='soon' is not valid: expected a positive duration" in text
    assert re.search(r'id="time_budget" value="soon" class="invalid" aria-invalid="true"', r.text)
    r = client.post(f"/data/{uid}/start", data={"rungs": ["tfidf"], "seeds": "3", "time_budget": "-5min"})
    assert r.status_code == 400 and "time budget='-5min' is not valid" in html.unescape(r.text)
    r = client.post(f"/data/{uid}/start", data={"rungs": ["tfidf"], "seeds": "2", "time_budget": "20min"})
    assert r.status_code == 400 and "seeds=2 is not valid: expected at least 3 with a time budget" in r.text
    # The planner keeps the time budget the user typed.
    client.post(f"/data/{uid}/plan", data={"rungs": ["tfidf"], "compute_budget": "5 min", "time_budget": "20min"})
    assert 'id="time_budget" value="20min"' in client.get(f"/data/{uid}/configure").text
    assert client.get("/api/jobs").json() == []


def test_a_fresh_form_ticks_nothing_and_a_time_budget_alone_tries_the_ladder(ui):
    """Issue #30 in the web app: the user types a time budget and ticks nothing; the study tries the ladder."""
    from adaptlab.rungs.ladder import default_rungs

    app, client = ui
    uid = location_id(upload(client, csv_bytes(topic_corpus(120, seed=2))))
    client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"})
    conf = client.get(f"/data/{uid}/configure").text
    assert not re.search(r'name="rungs" value="\w+" id="rung-\w+"\s*checked', conf)
    r = client.post(f"/data/{uid}/start", data={"seeds": "3", "time_budget": "20s", "train_budget": "20steps"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text[:800]
    jid = location_id(r)
    spec = client.get(f"/api/jobs/{jid}").json()["spec"]
    ladder = default_rungs(timed=True, unlabeled=False)
    assert spec["rungs"] == ladder and len(ladder) > 2 and {"finetune", "lora"} <= set(ladder)
    job = app.state.jobs.wait(jid, 240)
    assert job.status == "done", job.error


def test_study_with_a_time_budget_screens_and_shows_its_allocation(ui):
    app, client = ui
    jid = start_study(client, csv_bytes(topic_corpus(120, seed=1)), rungs=("tfidf", "probe", "finetune"), seeds=3,
                      time_budget="60s", train_budget="40steps")
    job = app.state.jobs.wait(jid, 120)
    assert job.status == "done", job.error
    snap = client.get(f"/api/jobs/{jid}").json()
    assert snap["spec"]["time_budget"] == "60s" and snap["spec"]["config"]["time_budget"] == "60s"
    # The study's cost estimates stay with the job: its page's time left starts from them (issue #31).
    est = snap["spec"]["cost_estimates"]
    assert {"tfidf", "probe", "finetune"} <= set(est) and est["finetune"]["first"] > 0
    assert any("time budget: costing the rungs" in line for line in app.state.jobs.snapshot(jid, None)["log"])
    summary = RunStore(app.state.settings.home / "runs.sqlite").get_study(snap["study_id"])["summary"]
    alloc = summary["allocation"]
    assert alloc["stop"]["kind"] in ("settled", "budget")
    # The live grid: the finetune screen ran at 25% of its budget; cells the allocation never needed say so.
    screens = [c for c in alloc["cells"] if c["phase"] == "screen"]
    assert screens and all(c["fidelity"] == 0.25 for c in screens)
    cell = snap["cells"][f"finetune|{screens[0]['seed']}"]
    promoted = any(c["rung"] == "finetune" and c["seed"] == screens[0]["seed"] and c["fidelity"] == 1.0
                   for c in alloc["cells"])
    assert cell["fidelity"] == (1.0 if promoted else 0.25)
    n_runs = len({(c["rung"], c["seed"]) for c in alloc["cells"]})
    assert snap["n_done"] == n_runs and snap["n_skipped"] == 9 - n_runs
    page = client.get(f"/jobs/{jid}").text
    assert 'id="job-adaptive"' in page and 'id="job-allocation"' in page
    if not promoted:
        assert f"@25%" in page and f'data-fidelity="0.25"' in page
    if snap["n_skipped"]:
        assert "not run (" in page and f"; {snap['n_skipped']} not needed" in page
    # The results page: the allocation's timeline, drops, stop reason and compute against the budget.
    res = client.get(f"/studies/{snap['study_id']}", headers=HTML)
    assert res.status_code == 200
    text = html.unescape(res.text)
    assert 'id="allocation"' in res.text and 'id="allocation-timeline"' in res.text
    kind, reason = alloc["stop"]["kind"], alloc["stop"]["reason"]
    reason = reason[len(kind) + 1:].strip() if reason.startswith(f"{kind}:") else reason  # the kind is shown once
    assert f'data-kind="{kind}"' in res.text and f"Why it stopped ({kind}):</b> {reason.rstrip('.')}." in text
    assert re.search(r"Wall clock used \(everything the study did: encoding, checks, runs\) <b>[\d.]+ s</b> of the "
                     r"budget <b>60\.0 s</b> \([\d.]+ s unspent\)", text)
    assert "measured ÷ estimate" in text  # each run's estimate against what it took
    assert "the exhaustive grid" in text and "(ratio " in text
    assert res.text.count('<tr class="phase-') == len(alloc["cells"])
    for d in alloc["drops"]:
        assert d["reason"] in text
    for row in summary["rows"]:
        tr = re.search(rf'<tr class="[^"]*" data-rung="{row["rung"]}">.*?</tr>', res.text, re.S).group(0)
        assert ("screened at 25% of budget" in tr) == (row.get("fidelity") == 0.25)
    assert client.get(f"/api/studies/{snap['study_id']}").json()["allocation"]["stop"] == alloc["stop"]


def test_cancel_between_runs_then_resume_reads_the_store(ui, monkeypatch):
    app, client = ui
    manager = app.state.jobs
    real = manager._progress

    cancelled = []

    def cancel_after_first_run(job, msg):
        real(job, msg)
        if "test macro-F1=" in msg and not cancelled:
            cancelled.append(job.id)
            manager.cancel(job.id)

    monkeypatch.setattr(manager, "_progress", cancel_after_first_run)
    jid = start_study(client, csv_bytes(topic_corpus(90, noise=0.5)), rungs=("tfidf",), seeds=3)
    job = manager.wait(jid, 60)
    assert job.status == "cancelled" and "after 1 of 3 runs" in job.phase
    snap = client.get(f"/api/jobs/{jid}").json()
    assert [c["state"] for c in snap["cells"].values()] == ["done", "pending", "pending"] and snap["resumable"]
    page = client.get(f"/jobs/{jid}")
    assert 'id="resume-form"' in page.text and "cancelled" in page.text
    monkeypatch.setattr(manager, "_progress", real)
    r = client.post(f"/jobs/{jid}/resume", follow_redirects=False)
    assert r.status_code == 303
    job = manager.wait(jid, 60)
    assert job.status == "done" and job.runs == 2
    assert job.result["n_from_store"] == 1 and job.result["n_trained"] == 2
    assert [c["state"] for c in client.get(f"/api/jobs/{jid}").json()["cells"].values()] == ["stored", "done", "done"]
    assert client.post(f"/jobs/{jid}/resume", headers=HTML).status_code == 400  # a finished job cannot be resumed


def test_a_long_job_does_not_block_the_server_and_cancels_between_steps(ui):
    app, client = ui
    manager = app.state.jobs
    started = threading.Event()

    def slow(ctx):  # stands in for a long study: reports progress between steps, as Study.run does
        started.set()
        for step in range(600):
            ctx.say(f"step {step}")
            time.sleep(0.05)

    manager.runners["study"] = slow
    job = manager.submit("study", {"rungs": [], "seeds": 0}, title="slow")
    assert started.wait(10)
    t0 = time.perf_counter()
    for url in ("/healthz", f"/api/jobs/{job.id}", "/", f"/jobs/{job.id}"):
        assert client.get(url).status_code == 200
    assert time.perf_counter() - t0 < 5 and manager.get(job.id).status == "running"
    r = client.post(f"/jobs/{job.id}/cancel", headers={"accept": "application/json"})
    snap = r.json()  # the worker may already have stopped by the time the answer is built
    assert (snap["cancel_requested"] and "cancelling" in snap["phase"]) or snap["status"] == "cancelled"
    assert manager.wait(job.id, 10).status == "cancelled"
    assert len(manager.get(job.id).log) < 600  # it stopped at the next step, not at the end


def test_two_clients_and_a_restarted_server_see_the_same_job(ui, tmp_path, tiny_encoder_dir):
    app, client = ui
    jid = start_study(client, csv_bytes(topic_corpus(60)), rungs=("tfidf",), seeds=2)
    app.state.jobs.wait(jid, 60)
    with TestClient(app, base_url=BASE) as other:
        assert other.get(f"/api/jobs/{jid}").json() == client.get(f"/api/jobs/{jid}").json()
    # A job that was running when the server stopped comes back as interrupted, and resumes.
    path = app.state.settings.jobs_dir / f"{jid}.json"
    state = json.loads(path.read_text())
    state["status"] = "running"
    state["cells"]["tfidf|1"]["state"] = "running"
    path.write_text(json.dumps(state))
    app2 = create_app(make_settings(tmp_path, str(tiny_encoder_dir)))
    with TestClient(app2, base_url=BASE) as client2:
        snap = client2.get(f"/api/jobs/{jid}").json()
        assert snap["status"] == "interrupted" and snap["resumable"]
        assert snap["cells"]["tfidf|1"]["state"] == "pending"
        client2.post(f"/jobs/{jid}/resume")
        job = app2.state.jobs.wait(jid, 60)
        assert job.status == "done" and job.result["n_from_store"] == 2 and job.result["n_trained"] == 0


def test_sketch_runs_probe_vs_refit_with_mmd(tmp_path, tiny_encoder_dir):
    sk = SketchSettings(n_labeled=100, n_unlabeled=40, n_reference=30, words=24, seeds=2, refit_budget="3steps",
                        refit_batch_size=8, refit_max_seq_length=32, mmd_n=40, mmd_permutations=50)
    app = create_app(make_settings(tmp_path, str(tiny_encoder_dir), sketch=sk))
    with TestClient(app, base_url=BASE) as client:
        assert "Run the sketch" in client.get("/sketch").text
        jid = location_id(client.post("/sketch/start", follow_redirects=False))
        job = app.state.jobs.wait(jid, 120)
        assert job.status == "done", job.error
        assert [c["state"] for c in job.cells.values()] == ["done"] * 4
        # The refit's MLM loss curve, read back as soon as the run finished; shown once (one shared refit).
        assert [c["rung"] for c in job.curves] == ["refit"] and job.curves[0]["series"][0]["name"] == "mlm loss"
        api = client.get(f"/api/studies/{job.study_id}").json()
        assert [r["rung"] for r in api["rows"]] == ["probe", "refit"]
        diag = api["diagnostics"]
        assert diag["refit_movement"] and 0 <= diag["refit_movement"][0]["mmd"]["p_value"] <= 1
        assert "probe_gap" in diag and diag["domain_shift"]["reference"].startswith("BBC News")
        page = client.get(f"/studies/{job.study_id}")
        assert 'id="mmd-line"' in page.text and 'id="probe-gap-line"' in page.text


# ---------------------------------------------------------------------------------------- models
@pytest.fixture
def model_ui(tmp_path):
    s = make_settings(tmp_path)
    small, sealed = topic_corpus(9, seed=1, noise=0.5), topic_corpus(150, seed=2)
    pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(small.texts, small.labels)
    ModelRegistry.create(s.models_root / "news", pipe, train=small, eval_set=sealed)
    app = create_app(s)
    with TestClient(app, base_url=BASE) as client:
        yield app, client


def test_retrain_gate_verdicts_and_rollback(model_ui):
    app, client = model_ui
    listing = client.get("/models")
    assert 'href="/models/news"' in listing.text
    good = csv_bytes(topic_corpus(150, seed=5))
    r = client.post("/models/news/retrain", files={"labels": ("new.csv", good, "text/csv")}, follow_redirects=False)
    job = app.state.jobs.wait(location_id(r), 60)
    assert job.status == "done" and job.result["promoted"] and job.result["version"] == "v0002"
    page = client.get(f"/jobs/{job.id}")
    assert 'data-promoted="yes"' in page.text and "Promoted: v0002 is now in use." in page.text
    wrong = topic_corpus(300, seed=6)
    bad = csv_bytes(wrong, [ROTATE[x] for x in wrong.labels])
    r = client.post("/models/news/retrain", files={"labels": ("bad.csv", bad, "text/csv")}, follow_redirects=False)
    job = app.state.jobs.wait(location_id(r), 60)
    assert job.status == "done" and not job.result["promoted"] and job.result["verdict"] == "regression"
    page = client.get(f"/jobs/{job.id}")
    assert 'data-promoted="no"' in page.text and "v0002 stays in use" in page.text and "worse" in page.text
    api = client.get("/api/models/news").json()
    assert api["current"] == "v0002" and [v["status"] for v in api["versions"]] == ["promoted", "promoted", "rejected"]
    model = client.get("/models/news")
    assert 'id="rollback-v0001"' in model.text and 'id="rollback-v0003"' not in model.text
    r = client.post("/models/news/rollback", data={"version": "v0003"})
    assert r.status_code == 400 and "rejected by the gate" in r.text
    r = client.post("/models/news/rollback", data={"version": "v0001"}, follow_redirects=False)
    assert r.status_code == 303
    assert "v0001 is in use again (was v0002)." in client.get(r.headers["location"]).text
    assert ModelRegistry(app.state.settings.models_root / "news").current.id == "v0001"


def test_bad_new_labels_are_listed_and_nothing_is_retrained(model_ui):
    app, client = model_ui
    bad = pd.DataFrame({"text": ["match goal", "", "bank profit"], "label": ["sport", "sport", None]})
    r = client.post("/models/news/retrain", files={"labels": ("bad.csv", bad.to_csv(index=False).encode(), "text/csv")})
    assert r.status_code == 422 and 'data-code="empty_text"' in r.text and "Not retrained" in r.text
    assert app.state.jobs.list() == [] and len(ModelRegistry(app.state.settings.models_root / "news").versions) == 1


# ---------------------------------------------------------------------------------------- units
def test_study_events_fill_the_grid(tmp_path):
    from adaptlab.evaluate import StudyEvent

    manager = JobManager(tmp_path / "jobs", make_settings(tmp_path), runners={"study": lambda ctx: None})
    job = Job(id="0123456789abcdef", kind="study", spec={}, title="t")
    job.init_grid(["tfidf", "probe"], [0, 1])
    manager._study_event(job, StudyEvent("study", "f" * 32))
    assert job.expected_study_id == "f" * 32
    manager._study_event(job, StudyEvent("start", "f" * 32, "tfidf", 0, n_train=80))
    assert job.cells["tfidf|0"]["state"] == "running" and "training tfidf seed 0 on 80" in job.phase
    manager._study_event(job, StudyEvent("done", "f" * 32, "tfidf", 0, f1=0.9123, seconds=1.5))
    manager._study_event(job, StudyEvent("stored", "f" * 32, "probe", 1))
    assert job.cells["tfidf|0"]["f1"] == 0.9123 and job.cells["tfidf|0"]["seconds"] == 1.5
    assert job.cells["probe|1"]["state"] == "stored" and job.to_dict()["n_done"] == 2
    manager._study_event(job, StudyEvent("done", "f" * 32, "probe", 0, f1=float("nan"), seconds=2.0))
    assert job.cells["probe|0"]["f1"] is None  # NaN never reaches the browser's JSON
    # Progress lines are log and phase only: the grid follows the events, not the wording of a line.
    manager._progress(job, "   tfidf seed 1: test macro-F1=0.5 (1.0s)")
    assert job.cells["tfidf|1"]["state"] == "pending" and job.log[-1].endswith("tfidf seed 1: test macro-F1=0.5 (1.0s)")
    # A decision-driven study's screen at 25% of the training budget, then the promoted full run.
    job.init_grid(["tfidf", "finetune"], [0, 1])
    manager._study_event(job, StudyEvent("start", "f" * 32, "finetune", 1, n_train=80, fidelity=0.25))
    assert "training finetune seed 1 @25% on 80 texts" in job.phase and job.cells["finetune|1"]["fidelity"] == 0.25
    manager._study_event(job, StudyEvent("done", "f" * 32, "finetune", 1, f1=0.5, seconds=1.0, fidelity=0.25))
    assert job.phase == "finetune seed 1 @25% finished" and job.cells["finetune|1"]["f1"] == 0.5
    manager._study_event(job, StudyEvent("start", "f" * 32, "finetune", 1, n_train=80, fidelity=1.0))
    manager._study_event(job, StudyEvent("done", "f" * 32, "finetune", 1, f1=0.7, seconds=4.0, fidelity=1.0))
    assert job.cells["finetune|1"]["fidelity"] == 1.0 and job.cells["finetune|1"]["f1"] == 0.7
    manager._skip_unrun(job, {"drops": [{"rung": "finetune", "kind": "eliminated"}]})
    assert job.cells["finetune|0"] == {"rung": "finetune", "seed": 0, "state": "skipped", "why": "eliminated"}
    assert job.cells["tfidf|1"]["why"] == "not needed" and job.cells["tfidf|0"]["state"] == "done"
    assert job.to_dict()["n_skipped"] == 2
    manager.shutdown()


def test_loss_series_reads_refit_and_training_diagnostics():
    refit = {"objective": "mlm", "loss_curve": [[1, 9.0], [2, 8.5], [3, 8.1]]}
    net = {"history": [{"step": 0, "train_loss": None, "val_loss": 1.2},
                       {"step": 10, "train_loss": 0.9, "val_loss": 1.0},
                       {"step": 20, "train_loss": 0.5, "val_loss": 0.8}]}
    assert loss_series(refit) == [{"name": "mlm loss", "x": [1.0, 2.0, 3.0], "y": [9.0, 8.5, 8.1]}]
    names = {s["name"]: s for s in loss_series(net)}
    assert names["val loss"]["x"] == [0.0, 10.0, 20.0] and names["train loss"]["y"] == [0.9, 0.5]
    assert loss_series(None) == [] and loss_series({"loss_curve": [[1, 2.0]]}) == []


def test_cli_ui_starts_uvicorn_on_loopback(tmp_path, monkeypatch):
    import uvicorn

    from adaptlab.cli import app as cli_app

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: seen.update(app=app, host=host, port=port))
    r = CliRunner().invoke(cli_app, ["ui", "--home", str(tmp_path / "h"), "--models", str(tmp_path / "m"),
                                     "--port", "8799", "--max-upload-mb", "5"])
    assert r.exit_code == 0, r.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8799 and "http://127.0.0.1:8799/" in r.output
    assert seen["app"].state.settings.max_upload_bytes == 5 * 1024 * 1024
    r = CliRunner().invoke(cli_app, ["ui", "--home", str(tmp_path / "h"), "--host", "0.0.0.0", "--no-auth"])
    assert r.exit_code == 0 and "with --no-auth: anyone" in r.output.replace("\n", " ")  # tests/test_ui_access.py
    r = CliRunner().invoke(cli_app, ["ui", "--home", str(tmp_path / "h"), "--max-upload-mb", "0"])
    assert r.exit_code == 2 and "max_upload_mb=0.0 is not valid" in r.output
