"""`adaptlab refit` (the study's refit encoder on its own) and `study run --mixed-precision`."""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.cli.diagnose import mixed_precision_rungs, refit_rung_params
from adaptlab.errors import ConfigError

runner = CliRunner()

# Support tickets: three labels, varied enough that the near-duplicate split keeps a real test set.
_TICKETS = {
    "billing": (["I was charged twice for my", "The invoice for my", "Why did the price go up on my",
                 "Please refund the fee on my", "My card was billed again for the"],
                ["monthly plan", "annual subscription", "premium upgrade", "family account", "storage add-on"],
                ["last week", "this morning", "after I cancelled", "even though I downgraded", "on the 3rd"]),
    "shipping": (["My parcel with the", "The courier never delivered my", "Tracking still shows my", "Where is the",
                  "The box with my"],
                 ["running shoes", "coffee grinder", "desk lamp", "winter jacket", "phone case"],
                 ["stuck in the depot", "out for delivery since Monday", "at the wrong address", "two weeks late",
                  "damaged on arrival"]),
    "technical": (["The app crashes when I open the", "I cannot log in to the", "Sync keeps failing for the",
                   "After the update nothing loads in the", "Error 502 appears on the"],
                  ["settings page", "mobile app", "web dashboard", "export tool", "photo gallery"],
                  ["on Android 14", "in Firefox", "since yesterday", "every time I tap save", "with my work account"]),
}
_ENDINGS = ["Thanks.", "Please help.", "Any update?", "This is urgent."]


def _tickets(rng: random.Random, labels: list[str], seen: set[str]) -> list[str]:
    out = []
    for label in labels:
        while True:
            a, b, c = (rng.choice(part) for part in _TICKETS[label])
            text = f"{a} {b} {c}. {rng.choice(_ENDINGS)} Order #{rng.randint(1000, 9999)}."
            if text not in seen:
                seen.add(text)
                out.append(text)
                break
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refit-cli-data")
    rng, seen = random.Random(7), set()
    labels = [label for label in _TICKETS for _ in range(20)]
    pd.DataFrame({"text": _tickets(rng, labels, seen), "label": labels}).to_csv(folder / "labeled.csv", index=False)
    unl = _tickets(rng, [rng.choice(sorted(_TICKETS)) for _ in range(40)], seen)
    pd.DataFrame({"text": unl}).to_csv(folder / "unlabeled.csv", index=False)
    return folder / "labeled.csv", folder / "unlabeled.csv"


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def flags(files, encoder, home, *extra):
    data, unlabeled = files
    return ["--data", data, "--unlabeled", unlabeled, "--encoder", encoder, "--refit-budget", "4steps",
            "--home", home, *extra]


def refits(home):
    return sorted(p.name for p in (home / "refits").iterdir()) if (home / "refits").is_dir() else []


def test_refit_command_stores_the_refit_a_study_with_the_same_flags_reuses(files, tiny_encoder_dir, tmp_path,
                                                                            one_torch_thread):
    home = tmp_path / "home"
    common = flags(files, tiny_encoder_dir, home)
    r = invoke("refit", *common)
    assert r.exit_code == 0, r.output
    (key,) = refits(home)
    assert f"refit {key} (trained now)" in r.output and "4 steps" in r.output and "tokens/s" in r.output
    assert "runtime   no, 1 process(es), " in r.output  # then the device: cpu here, cuda:0 on a GPU machine
    assert "adaptlab study run --data" in r.output and "--refit-budget 4steps" in r.output
    assert not (home / "runs.sqlite").exists(), "adaptlab refit writes nothing to the run store"

    # A non-main process of `accelerate launch` says nothing and writes nothing (here: the refit is stored).
    r = invoke("refit", *common, env={"WORLD_SIZE": "2", "RANK": "1"})
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "" and not (home / "runs.sqlite").exists()

    r = invoke("study", "run", *common, "--rungs", "probe,refit", "--seeds", 2, "--json")
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    diags = [p["diagnostics"] for p in payload["per_seed"] if p["rung"] == "refit"]
    assert [d["refit_key"] for d in diags] == [key, key]
    assert all(d["reused"] for d in diags), "the study trained its own refit instead of reusing the stored one"
    assert refits(home) == [key]

    r = invoke("refit", *common, "--json")
    summary = json.loads(r.stdout)
    assert r.exit_code == 0 and summary["key"] == key and summary["reused"] is True and summary["steps"] == 4


def test_mixed_precision_changes_the_refit_key_and_the_study_reuses_the_bf16_refit(files, tiny_encoder_dir, tmp_path,
                                                                                   one_torch_thread):
    home = tmp_path / "home"
    common = flags(files, tiny_encoder_dir, home, "--transductive")  # the refit also reads the sealed test texts
    r32 = invoke("refit", *common, "--json")
    r16 = invoke("refit", *common, "--mixed-precision", "bf16", "--json")
    assert r32.exit_code == 0 and r16.exit_code == 0, r32.output + r16.output
    plain, bf16 = json.loads(r32.stdout), json.loads(r16.stdout)
    assert plain["key"] != bf16["key"] and sorted(refits(home)) == sorted([plain["key"], bf16["key"]])
    assert plain["runtime"]["mixed_precision"] == "no" and bf16["runtime"]["mixed_precision"] == "bf16"
    assert bf16["config"]["mixed_precision"] == "bf16" and "--mixed-precision bf16" in bf16["study_command"]
    assert bf16["corpus"]["n_test_texts"] > 0 and "--transductive" in bf16["study_command"]

    r = invoke("study", "run", *common, "--rungs", "refit", "--seeds", 1, "--mixed-precision", "bf16", "--json")
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["config"]["rung_params"]["refit"] == {"budget": "4steps", "transductive": True}
    assert payload["config"]["mixed_precision"] == "bf16"  # the study's, which the refit rung takes
    (d,) = [p["diagnostics"] for p in payload["per_seed"]]
    assert d["refit_key"] == bf16["key"] and d["reused"] is True


def test_mixed_precision_without_a_network_rung_fails_clearly(files, tmp_path):
    r = invoke("study", "run", "--data", files[0], "--rungs", "tfidf", "--mixed-precision", "bf16", "--home", tmp_path)
    assert r.exit_code == 2, r.output
    assert "--mixed-precision applies to rungs that train the encoder" in r.output
    assert "lora" in r.output and "refit" in r.output and "Traceback" not in r.output
    r = invoke("study", "run", "--data", files[0], "--rungs", "tfidf,finetune", "--mixed-precision", "fp8",
               "--home", tmp_path)
    assert r.exit_code == 2 and "--mixed-precision='fp8' is not valid" in r.output, r.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused only where no CUDA GPU is present")
@pytest.mark.parametrize("command", [["refit"], ["study", "run", "--rungs", "probe,lora"]])
def test_fp16_without_a_gpu_fails_before_any_work(files, tiny_encoder_dir, tmp_path, command):
    home = tmp_path / "home"
    r = invoke(*command, *flags(files, tiny_encoder_dir, home)[:6], "--home", home, "--mixed-precision", "fp16")
    assert r.exit_code == 2, r.output
    assert "--mixed-precision='fp16' is not valid" in r.output and "CUDA GPU" in r.output and "bf16" in r.output
    assert "Traceback" not in r.output and refits(home) == []


def test_mixed_precision_is_the_studys_and_checked_against_the_rungs():
    # --mixed-precision is the study's own setting (every training rung without one of its own takes it).
    params = refit_rung_params("tfidf,probe,refit,finetune,lpft", "4steps", None, False, "bf16")
    assert params == {"refit": {"budget": "4steps"}}
    assert refit_rung_params("probe,lora", None, None, False, "no") == {}
    assert mixed_precision_rungs(["tfidf", "refit", "finetune", "lpft"], "no") == ["refit", "finetune", "lpft"]
    with pytest.raises(ConfigError, match="none is in --rungs 'tfidf,probe'"):
        refit_rung_params("tfidf,probe", None, None, False, "no")


def test_refit_launched_on_two_processes_is_the_one_a_study_reuses(files, tiny_encoder_dir, tmp_path,
                                                                    one_torch_thread):
    """`torchrun --nproc_per_node 2 -m adaptlab.cli refit ...` (what `accelerate launch` does on GPUs):
    one stored refit, trained by two processes, printed once, then reused by the study."""
    from launch import run_processes

    home = tmp_path / "home"
    common = [str(a) for a in flags(files, tiny_encoder_dir, home, "--mixed-precision", "bf16")]
    proc = run_processes(["-m", "adaptlab.cli", "refit", *common, "--json"], nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # one JSON document: only the main process printed
    assert summary["runtime"]["num_processes"] == 2 and summary["runtime"]["mixed_precision"] == "bf16"
    assert refits(home) == [summary["key"]]
    r = invoke("study", "run", *common, "--rungs", "probe,refit", "--seeds", "2", "--json")
    assert r.exit_code == 0, r.output
    rows = [s for s in json.loads(r.stdout)["per_seed"] if s["rung"] == "refit"]
    assert rows and all(s["diagnostics"]["reused"] and s["diagnostics"]["refit_key"] == summary["key"] for s in rows)
    assert refits(home) == [summary["key"]]


def test_auto_mixed_precision_gates_once_and_the_study_reuses_the_refit_it_chose(files, tiny_encoder_dir, tmp_path,
                                                                                 one_torch_thread, monkeypatch):
    from adaptlab.encoders import fast
    from adaptlab.evaluate import training_precision

    monkeypatch.setattr(fast, "native_bf16", lambda device="cpu": True)  # a bf16 machine, whatever runs the test
    monkeypatch.setattr(training_precision, "GATE_STEPS", 2)
    home = tmp_path / "home"
    common = flags(files, tiny_encoder_dir, home)
    r = invoke("refit", *common, "--mixed-precision", "auto", "--json")
    assert r.exit_code == 0, r.output
    refit = json.loads(r.stdout)
    assert refit["runtime"]["mixed_precision"] in ("bf16", "no") and refits(home) == [refit["key"]]
    (gate,) = (home / "precision_gates").glob("*.json")

    r = invoke("study", "run", *common, "--rungs", "refit", "--seeds", 1, "--mixed-precision", "auto", "--json")
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    choice = payload["data"]["training_precision"]["refit"]
    assert choice["used"] == refit["runtime"]["mixed_precision"] and choice["steps"] == 2
    assert "validation F1" in choice["message"] and "float32" in choice["message"]
    (d,) = [p["diagnostics"] for p in payload["per_seed"]]
    assert d["refit_key"] == refit["key"] and d["reused"] is True  # the same decision, the same refit
    r = invoke("study", "show", "--home", home)
    assert r.exit_code == 0 and "training precision: refit: auto: this CPU runs bf16 natively" in r.output, r.output


def test_refit_precision_tolerance_reaches_the_gate_and_the_study_command(files, tiny_encoder_dir, tmp_path,
                                                                         one_torch_thread, monkeypatch):
    from adaptlab.encoders import fast
    from adaptlab.evaluate import training_precision

    monkeypatch.setattr(fast, "native_bf16", lambda device="cpu": True)
    monkeypatch.setattr(training_precision, "GATE_STEPS", 2)
    home = tmp_path / "home"
    common = flags(files, tiny_encoder_dir, home)
    r = invoke("refit", *common, "--mixed-precision", "auto", "--precision-tolerance", "1.5", "--json")
    assert r.exit_code == 2 and "precision_tolerance" in r.output and "Traceback" not in r.output, r.output
    assert not (home / "precision_gates").exists()

    r = invoke("refit", *common, "--mixed-precision", "auto", "--precision-tolerance", "0.9", "--json")
    assert r.exit_code == 0, r.output
    refit = json.loads(r.stdout)
    assert refit["runtime"]["mixed_precision"] == "bf16"  # no tiny model loses 90 F1 points to bf16
    assert "--precision-tolerance 0.9" in refit["study_command"]
    (gate,) = (home / "precision_gates").glob("*.json")
    assert json.loads(gate.read_text())["tolerance"] == 0.9
