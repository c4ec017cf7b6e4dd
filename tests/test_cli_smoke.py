"""Every CLI command and sub-command, run on one tiny real study home in table and JSON mode.

The commands are enumerated from the typer app itself, so a new command without a line in ``SMOKE`` fails
``test_every_command_has_a_smoke_entry``. An unexpected exception prints one line and a log path (never a
traceback); ``ADAPTLAB_DEBUG=1`` shows the traceback.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from adaptlab.cli import app
from synthetic import topic_corpus
from tiny_models import build_tiny_encoder

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Per command: its arguments ({name} = a path from the `world` fixture, {mode} = table or json). Commands without
# --json run once. Every one must exit 0: a clean error here would hide a command that no longer works.
SMOKE: dict[str, list[str]] = {
    "rungs": [],
    "demo": ["--rungs", "tfidf", "--seeds", "1", "--no-ship", "--home", "{demo_home}"],
    "decide": ["--home", "{home}"],
    "report": ["--home", "{home}", "-o", "{tmp}/report.html"],
    "curve": ["--data", "{data}", "--rungs", "tfidf", "--fractions", "0.5,1", "--seeds", "1", "--home", "{home}"],
    "slices": ["--data", "{data}", "--slice-col", "group", "--rung", "probe", "--home", "{home}"],
    "plan": ["--data", "{data}", "--budget", "3 CPU hours", "--encoder", "{encoder}", "--home", "{home}"],
    "ship": ["{data}", "-o", "{tmp}/shipped-{mode}", "--rung", "tfidf", "--home", "{home}"],
    "predict": ["{model}", "{texts}", "-o", "{tmp}/predictions.csv"],
    "suggest": ["{texts}", "--model", "{model}", "-n", "5", "-o", "{tmp}/suggested-{mode}.csv"],
    "retrain": ["{model}", "{new}", "--max-drop", "0.5", "--accept-labels"],
    "ui": ["--home", "{home}", "--models", "{tmp}", "--port", "0"],
    "drift": ["{model}", "{texts}"],
    "neighbors": ["{model}", "{texts}", "-k", "2"],
    "bias": ["{model}", "{data}", "--group-col", "group", "--min-group-size", "10"],
    "stability": ["{model}", "v0001", "v0002", "--probes", "20"],
    "embeddings": ["{model}"],
    "refit": ["--data", "{data}", "--unlabeled", "{texts}", "--encoder", "{encoder}", "--refit-budget", "2steps",
              "--home", "{home}"],
    "study run": ["--data", "{data}", "--rungs", "tfidf,probe", "--seeds", "2", "--encoder", "{encoder}",
                  "--home", "{home}"],
    "study show": ["--home", "{home}"],
    "study list": ["--home", "{home}"],
    "study config": ["--home", "{home}"],
    "data check": ["--data", "{data}"],
    "diagnose mmd": ["{texts}", "{data}", "--encoder", "{encoder}", "--n", "30", "--permutations", "20",
                     "--home", "{home}"],
    "diagnose shift": ["{texts}", "--reference", "{data}", "--encoder", "{encoder}", "--n", "30",
                       "--permutations", "20", "--home", "{home}"],
    "models list": ["{model}"],
    "models rollback": ["{model}"],
    "store backup": ["{tmp}/backup-{mode}.sqlite", "--home", "{home}"],
    "store check": ["--home", "{home}"],
    "store gc": ["--home", "{home}", "--dry-run"],
    "encoders list": ["--folder", "{encoder}", "--no-fingerprint"],
    "encoders embed": ["--data", "{texts}", "-o", "{tmp}/vectors-{mode}.npy", "--encoder", "{encoder}",
                       "--home", "{home}"],
    "encoders compare": ["--data", "{data}", "--encoders", "{encoder},{encoder2}", "--seeds", "2", "--home", "{home}"],
}


def _commands(group: typer.Typer) -> dict[str, bool]:
    """Every leaf command of the app, by its full name, and whether it takes --json."""
    found: dict[str, bool] = {}

    def walk(cmd, prefix):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, prefix + [name])
        else:
            found[" ".join(prefix)] = any("--json" in p.opts for p in cmd.params)

    walk(typer.main.get_command(group), [])
    return found


COMMANDS = _commands(app)


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def world(tmp_path_factory, mlm_dir):
    """A study home with a finished tfidf+probe study, and a shipped model with two versions."""
    tmp = tmp_path_factory.mktemp("smoke")
    ds = topic_corpus(120, seed=3)
    groups = np.random.default_rng(0).permutation(np.array(["a", "b", "c"] * 40))
    pd.DataFrame({"id": [f"r{i}" for i in range(120)], "text": ds.texts, "label": ds.labels, "group": groups}
                 ).to_csv(tmp / "data.csv", index=False)
    pd.DataFrame({"text": topic_corpus(60, seed=4).texts}).to_csv(tmp / "texts.csv", index=False)
    more = topic_corpus(40, seed=5)
    pd.DataFrame({"text": more.texts, "label": more.labels}).to_csv(tmp / "new.csv", index=False)
    paths = {"tmp": tmp, "data": tmp / "data.csv", "texts": tmp / "texts.csv", "new": tmp / "new.csv",
             "home": tmp / "home", "demo_home": tmp / "demo-home", "model": tmp / "model", "encoder": mlm_dir,
             "encoder2": build_tiny_encoder(tmp / "other-encoder", seed=1)}  # other weights than mlm_dir
    r = invoke("study", "run", "--data", paths["data"], "--rungs", "tfidf,probe", "--seeds", 2, "--encoder", mlm_dir,
               "--home", paths["home"], "--json")
    assert r.exit_code == 0, r.output
    r = invoke("ship", paths["data"], "-o", paths["model"], "--rung", "probe", "--encoder", mlm_dir,
               "--home", paths["home"], "--json")
    assert r.exit_code == 0, r.output
    r = invoke("retrain", paths["model"], paths["new"], "--max-drop", "0.5", "--accept-labels", "--json")
    assert r.exit_code == 0, r.output
    return paths


def test_every_command_has_a_smoke_entry():
    assert set(COMMANDS) - set(SMOKE) == set(), "add these commands to SMOKE (tests/test_cli_smoke.py)"
    assert set(SMOKE) - set(COMMANDS) == set(), "SMOKE names commands the app no longer has"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_runs_in_table_and_json_mode(command, world, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # `ui` builds the app; serving it would block
    modes = [[], ["--json"]] if COMMANDS[command] else [[]]
    for mode in modes:
        args = [a.format(**world, mode="json" if mode else "table") for a in SMOKE[command]]
        r = invoke(*command.split(), *args, *mode)
        # An unexpected exception would be exit 1 with "failed unexpectedly"; a traceback, a missing guard.
        assert r.exit_code == 0, f"{command} {mode}: {r.output}"
        assert "Traceback" not in r.output and "failed unexpectedly" not in r.output, r.output
        assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
        if mode and r.exit_code == 0:
            json.loads(r.stdout)  # JSON mode prints JSON only


def test_an_unexpected_exception_prints_one_line_with_a_log_path(monkeypatch, tmp_path):
    from adaptlab import rungs

    def broken():
        raise ImportError("cannot import name '_fmt'")

    monkeypatch.setenv("ADAPTLAB_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(rungs, "available_rungs", broken)
    r = invoke("rungs")
    assert r.exit_code == 1 and "Traceback" not in r.output
    line = " ".join(r.output.split())
    assert "`adaptlab rungs` failed unexpectedly (ImportError: cannot import name '_fmt')" in line
    assert "report it" in line and "ADAPTLAB_DEBUG=1" in line
    logs = list((tmp_path / "logs").iterdir())
    assert len(logs) == 1 and str(logs[0]) in r.output
    text = logs[0].read_text()
    assert "Traceback" in text and "_fmt" in text and "in broken" in text


def test_adaptlab_debug_shows_the_traceback(monkeypatch, tmp_path):
    from adaptlab import rungs

    monkeypatch.setattr(rungs, "available_rungs", lambda: 1 / 0)
    r = invoke("rungs", env={"ADAPTLAB_DEBUG": "1", "ADAPTLAB_LOG_DIR": str(tmp_path)})
    assert r.exit_code == 1 and isinstance(r.exception, ZeroDivisionError)  # raised, so the traceback prints
    assert not list(tmp_path.iterdir())


def test_a_subcommand_without_the_decorator_is_guarded_too(monkeypatch, tmp_path):
    from adaptlab.cli import _guard_commands

    extra = typer.Typer()
    sub = typer.Typer()
    extra.add_typer(sub, name="grp")

    @sub.command("boom")
    def boom() -> None:
        raise KeyError("x")

    @sub.command("other")
    def other() -> None:
        pass

    _guard_commands(extra)
    monkeypatch.setenv("ADAPTLAB_LOG_DIR", str(tmp_path))
    r = runner.invoke(extra, ["grp", "boom"])
    assert r.exit_code == 1 and "`adaptlab grp boom` failed unexpectedly (KeyError: 'x')" in " ".join(r.output.split())
