"""Issue #36 in the web app: a cancel ends a running fine-tuning job within seconds and Resume continues it
from its checkpoint; served beyond loopback, every request needs the access token (or an explicit --no-auth)."""
import json
import threading
import time

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adaptlab.errors import ConfigError
from adaptlab.rungs import training
from adaptlab.store import RunStore
from adaptlab.ui import UISettings, create_app
from synthetic import topic_corpus

BASE = "http://127.0.0.1:8765"
TOKEN = "a-test-token-0123456789abcdef"


def csv_bytes(ds) -> bytes:
    return pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(index=False).encode("utf-8")


def location_id(r) -> str:
    assert r.status_code == 303, r.text[:500]
    return r.headers["location"].split("?")[0].rstrip("/").split("/")[-1]


# ------------------------------------------------------------------------------------------------ cancel
@pytest.fixture
def slow_steps(monkeypatch):
    """Each optimizer step takes 0.16 s more while ``slow`` is set: 400 steps then run over 60 s."""
    real = training._Loop._step
    slow, steps = threading.Event(), []
    slow.set()

    def step(self, idx, trainable):
        real(self, idx, trainable)
        steps.append(self.st.step)
        if slow.is_set():
            time.sleep(0.16)

    monkeypatch.setattr(training._Loop, "_step", step)
    return slow, steps


def test_cancel_ends_a_running_finetune_within_seconds_and_resume_finishes_it(tmp_path, tiny_encoder_dir,
                                                                              slow_steps):
    slow, steps = slow_steps
    settings = UISettings(home=tmp_path / "home", models_root=tmp_path / "models", encoder=str(tiny_encoder_dir),
                          n_boot=200, torch_threads=1)
    with TestClient(create_app(settings), base_url=BASE) as client:
        uid = location_id(client.post("/upload", files={"labeled": ("d.csv", csv_bytes(topic_corpus(90)), "text/csv")},
                                      follow_redirects=False))
        client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"}, follow_redirects=False)
        # 400 steps at >= 0.16 s each: over a minute; patience so high that early stopping never ends it sooner.
        r = client.post(f"/data/{uid}/start", data={"rungs": ["finetune"], "seeds": "1", "train_budget": "400steps",
                                                    "p.finetune.patience": "1000", "p.finetune.batch_size": "8"},
                        follow_redirects=False)
        jid = location_id(r)
        t_end = time.monotonic() + 60
        while len(steps) < 5:  # the cell is training
            assert time.monotonic() < t_end, client.get(f"/api/jobs/{jid}").json()["phase"]
            time.sleep(0.05)
        t0 = time.monotonic()
        snap = client.post(f"/jobs/{jid}/cancel", headers={"accept": "application/json"}).json()
        assert snap["status"] == "cancelled" or "next training step" in snap["phase"]
        while client.get(f"/api/jobs/{jid}").json()["status"] not in ("cancelled", "failed", "done"):
            assert time.monotonic() - t0 < 30, "the cancel did not end the job within 30 s"
            time.sleep(0.05)
        stopped_after = time.monotonic() - t0
        snap = client.get(f"/api/jobs/{jid}").json()
        assert snap["status"] == "cancelled" and snap["resumable"], snap["phase"]
        assert stopped_after < 30 and steps[-1] < 400
        assert "finetune seed 0 stopped mid-run (a training rung keeps its checkpoint)" in snap["phase"]
        assert snap["cells"]["finetune|0"]["state"] == "pending"
        (ckpt,) = list((tmp_path / "home").glob("checkpoints/finetune/*/checkpoint.json"))
        saved = json.loads(ckpt.read_text())["step"]
        assert saved == steps[-1]  # the checkpoint of the step the cancel reached, not the last epoch end

        slow.clear()  # the resumed run at full speed: the test does not wait a minute for it
        assert client.post(f"/jobs/{jid}/resume", follow_redirects=False).status_code == 303
        job = client.app.state.jobs.wait(jid, 180)
        assert job.status == "done" and job.runs == 2 and job.result["n_trained"] == 1, job.phase
        (stored,) = RunStore(tmp_path / "home" / "runs.sqlite").study_results(job.study_id)
        diag = stored["metrics"]["diagnostics"]
        assert diag["resumed_from_step"] == saved and stored["metrics"]["selected"]["steps"] == 400


# ------------------------------------------------------------------------------------------------ the token
def exposed_app(tmp_path, **kw):
    return create_app(UISettings(home=tmp_path / "home", models_root=tmp_path / "models", host="0.0.0.0", **kw))


def test_beyond_loopback_every_request_needs_the_token(tmp_path):
    with TestClient(exposed_app(tmp_path, token=TOKEN), base_url="http://192.168.1.20:8765") as client:
        for url in ("/", "/api/jobs", "/static/app.css", "/healthz"):
            r = client.get(url)
            assert r.status_code == 401 and "access token" in r.json()["detail"], url
            assert r.headers["www-authenticate"].startswith("Bearer")
        page = client.get("/", headers={"accept": "text/html"})
        assert page.status_code == 401 and "Access token needed" in page.text and TOKEN not in page.text
        assert "name='token'" in page.text  # a form for whoever was told the token
        assert client.get("/", headers={"authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        assert client.get("/?token=wrong-token-0123456789").status_code == 401
        assert client.post("/sketch/start", follow_redirects=False).status_code == 401
        ok = client.get("/api/jobs", headers={"authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json() == []
        assert "set-cookie" not in ok.headers  # a script's header is not turned into a cookie


def test_a_browser_opens_the_token_link_once_and_then_keeps_a_cookie(tmp_path):
    with TestClient(exposed_app(tmp_path, token=TOKEN), base_url="http://192.168.1.20:8765") as client:
        r = client.get(f"/jobs?token={TOKEN}&x=1", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/jobs?x=1"  # the token leaves the address bar
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"adaptlab_token_8765={TOKEN}") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert client.get("/", headers={"accept": "text/html"}).status_code == 200  # the cookie now
        assert client.get("/api/jobs").status_code == 200
        # Writes pass too (same origin): the job does not exist, so 404 rather than 401.
        assert client.post("/jobs/" + "0" * 16 + "/cancel", headers={"origin": "http://192.168.1.20:8765"}
                           ).status_code == 404
        client.cookies.clear()
        assert client.get("/api/jobs").status_code == 401


def test_no_auth_and_loopback_serve_without_a_token_and_bad_settings_are_refused(tmp_path):
    with TestClient(exposed_app(tmp_path, no_auth=True), base_url="http://192.168.1.20:8765") as client:
        assert client.get("/api/jobs").status_code == 200
    loopback = create_app(UISettings(home=tmp_path / "home", models_root=tmp_path / "models"))
    with TestClient(loopback, base_url=BASE) as client:
        assert client.get("/api/jobs").status_code == 200
    with pytest.raises(ConfigError, match="need an access token.*--no-auth"):
        UISettings(home=tmp_path, host="0.0.0.0")
    with pytest.raises(ConfigError, match="not valid: expected 16 to 256") as bad:
        UISettings(home=tmp_path, host="0.0.0.0", token="short")
    assert "short" not in str(bad.value)  # a secret is never repeated in a message
    with pytest.raises(ConfigError, match="contradict"):
        UISettings(home=tmp_path, host="0.0.0.0", token=TOKEN, no_auth=True)


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.fixture
def served(monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: seen.update(app=app, host=host, port=port))
    monkeypatch.delenv("ADAPTLAB_UI_TOKEN", raising=False)
    return seen


def test_cli_ui_generates_or_takes_a_token_beyond_loopback(tmp_path, served, monkeypatch):
    from adaptlab.cli import app as cli_app

    base = ["ui", "--home", str(tmp_path / "h"), "--models", str(tmp_path / "m")]
    r = CliRunner().invoke(cli_app, base + ["--host", "0.0.0.0"])
    assert r.exit_code == 0, r.output
    token = served["app"].state.settings.token
    assert token and len(token) >= 32 and f"/?token={token}" in r.output.replace("\n", "")
    r = CliRunner().invoke(cli_app, base + ["--host", "0.0.0.0", "--token", TOKEN])
    assert r.exit_code == 0 and served["app"].state.settings.token == TOKEN and TOKEN not in r.output
    monkeypatch.setenv("ADAPTLAB_UI_TOKEN", TOKEN[::-1])
    r = CliRunner().invoke(cli_app, base + ["--host", "0.0.0.0"])
    assert r.exit_code == 0 and served["app"].state.settings.token == TOKEN[::-1]
    monkeypatch.delenv("ADAPTLAB_UI_TOKEN")
    r = CliRunner().invoke(cli_app, base + ["--host", "0.0.0.0", "--no-auth"])
    assert r.exit_code == 0 and served["app"].state.settings.token is None and "--no-auth" in r.output
    r = CliRunner().invoke(cli_app, base + ["--host", "0.0.0.0", "--no-auth", "--token", TOKEN])
    assert r.exit_code == 2 and "contradict" in r.output
    r = CliRunner().invoke(cli_app, base)  # loopback: no token asked, none printed
    assert r.exit_code == 0 and served["app"].state.settings.token is None and "?token=" not in r.output


def test_cli_ui_help_documents_the_token(served):
    from adaptlab.cli import app as cli_app

    r = CliRunner().invoke(cli_app, ["ui", "--help"])
    text = " ".join(r.output.replace("│", " ").split())  # rich's help box, unwrapped
    assert r.exit_code == 0
    for words in ("--token", "--no-auth", "ADAPTLAB_UI_TOKEN", "Authorization: Bearer"):
        assert words in text, words
