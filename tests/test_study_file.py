"""Study files (issue 16, item 2): `study run --config study.toml`, `--set`, flags over the file, the stored
configuration in `study show`, and `study config` writing it back so the study reruns exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.config import StudyConfig
from adaptlab.errors import ConfigError
from adaptlab.store import RunStore
from adaptlab.studyfile import (
    StudySettings,
    check_rung_param,
    format_value,
    key_lines,
    parse_scalar,
    parse_set_options,
    parse_study_file,
    read_study_file,
    resolve_settings,
    rung_parameters,
    study_config,
    study_file_text,
)
from synthetic import topic_corpus

STUDY = """\
# a study of the synthetic topics
rungs = ["tfidf"]
seeds = 2
test_size = 0.25

[rung.tfidf]
min_df = 1
ngram_max = 1
"""


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def data(tmp_path) -> Path:
    ds = topic_corpus(150, seed=2)
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def stored(home: Path, study: str = "latest") -> dict:
    return RunStore(home / "runs.sqlite").get_study(study)


def result_keys(payload: dict) -> set[str]:
    return {p["result_key"] for p in payload["per_seed"]}


# ------------------------------------------------------------------------------------------- the CLI
def test_a_study_file_sets_the_grid_and_rung_parameters_and_changes_the_result_keys(data, tmp_path):
    home = tmp_path / "h"
    study = write(tmp_path / "study.toml", STUDY)
    r = invoke("study", "run", "--data", data, "--config", study, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    with_file = json.loads(r.stdout)
    cfg = stored(home, with_file["study_id"])["config"]
    assert cfg["rungs"] == ["tfidf"] and cfg["seeds"] == 2 and cfg["test_size"] == 0.25
    assert cfg["rung_params"] == {"tfidf": {"min_df": 1, "ngram_max": 1}}
    manifests = [res["manifest"] for res in RunStore(home / "runs.sqlite").study_results(with_file["study_id"])]
    assert {m["rung"]["config"]["ngram_max"] for m in manifests} == {1}
    # The same grid from flags alone, without the rung parameters: other result keys, another study.
    r = invoke("study", "run", "--data", data, "--rungs", "tfidf", "--seeds", 2, "--test-size", 0.25,
               "--home", home, "--json")
    assert r.exit_code == 0, r.output
    plain = json.loads(r.stdout)
    assert plain["study_id"] != with_file["study_id"]
    assert not result_keys(plain) & result_keys(with_file)
    assert plain["config"]["rung_params"] == {}


def test_study_file_and_flags_give_the_same_study(data, tmp_path):
    """A setting means the same from a file and from a flag: same study id, every result read back."""
    home = tmp_path / "h"
    study = write(tmp_path / "study.toml", 'rungs = "tfidf"\nseeds = 2\ntest_size = 0.25\nbudget = 8\n')
    first = invoke("study", "run", "--data", data, "--rungs", "tfidf", "--seeds", 2, "--test-size", 0.25,
                   "--budget", 8, "--home", home, "--json")
    assert first.exit_code == 0, first.output
    again = invoke("study", "run", "--data", data, "--config", study, "--home", home, "--json")
    assert again.exit_code == 0, again.output
    a, b = json.loads(first.stdout), json.loads(again.stdout)
    assert a["study_id"] == b["study_id"] and b["n_trained"] == 0 and b["n_from_store"] == 2


def test_data_paths_in_the_file_are_read_from_its_folder(data, tmp_path, monkeypatch):
    home = tmp_path / "h"
    write(tmp_path / "study.toml", STUDY + '\n')
    text = 'data = "train.csv"\n' + STUDY
    study = write(tmp_path / "study.toml", text)
    monkeypatch.chdir(tmp_path.parent)  # not the file's folder
    r = invoke("study", "run", "--config", study, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["data"]["source"].endswith("train.csv")
    r = invoke("study", "run", "--config", write(tmp_path / "nodata.toml", STUDY), "--home", home)
    assert r.exit_code == 2 and "no labeled data: give --data FILE" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("text, line, needles", [
    (STUDY.replace("seeds = 2", "sedes = 2"), 3,
     ["unknown key 'sedes' (= 2)", "allowed: ", "seeds", "rungs", "test_size", "Did you mean 'seeds'?"]),
    (STUDY.replace("min_df = 1", "min_dff = 1"), 7,
     ["unknown parameter 'min_dff' (= 1) for rung tfidf", "allowed: C_grid, max_features, min_df, ngram_max",
      "Did you mean 'min_df'?"]),
    (STUDY.replace("ngram_max = 1", "ngram_max = 0"), 8, ["tfidf.ngram_max=0 is not valid: expected an integer >= 1"]),
    (STUDY.replace("min_df = 1", 'min_df = "one"'), 7,
     ["tfidf.min_df='one' is not valid: expected an integer (default 2: drop terms seen in fewer training texts)"]),
    (STUDY.replace("seeds = 2", "seeds = 0"), 3, ["seeds=0 is not valid: expected an integer >= 1"]),
    (STUDY.replace("test_size = 0.25", 'split = "random"'), 4,
     ["split='random' is not valid: expected one of auto, stratified, group, near-dup, time"]),
    (STUDY.replace("[rung.tfidf]", "[rung.tfdf]"), 6,
     ["unknown rung 'tfdf' in [rung.<name>]; allowed: tfidf, static, probe", "Did you mean 'tfidf'?"]),
    (STUDY.replace('rungs = ["tfidf"]', 'rungs = ["tfidf", "prob"]'), 2,
     ["rungs='prob' is not valid: expected one of tfidf, static, probe"]),
    ('time_budget = "3h"\n' + STUDY, 1, ["unknown key 'time_budget'", "A study file calls it 'time'."]),
    (STUDY + "budget = \"8steps\"\n", 9, ["unknown parameter 'budget' (= \"8steps\") for rung tfidf",
                                          "'budget' is a top-level key: move it above the first [table]"]),
])
def test_a_bad_key_or_value_names_the_file_line_and_what_is_allowed(data, tmp_path, text, line, needles):
    study = write(tmp_path / "study.toml", text)
    for json_flag in ([], ["--json"]):
        r = invoke("study", "run", "--data", data, "--config", study, "--home", tmp_path / "h", *json_flag)
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output and f"{study}, line {line}: " in r.output, r.output
        for needle in needles:
            assert needle in r.output, (needle, r.output)
    assert not (tmp_path / "h" / "runs.sqlite").exists() or not RunStore(tmp_path / "h" / "runs.sqlite").list_studies()


def test_a_file_that_is_not_toml_or_missing_fails_clearly(data, tmp_path):
    r = invoke("study", "run", "--data", data, "--config", write(tmp_path / "s.toml", 'rungs = ["tfidf"]\nseeds = = 3\n'),
               "--home", tmp_path / "h")
    assert r.exit_code == 2 and "is not valid TOML" in r.output and "line 2" in r.output and "Traceback" not in r.output
    r = invoke("study", "run", "--data", data, "--config", tmp_path / "missing.toml", "--home", tmp_path / "h")
    assert r.exit_code == 2 and "missing.toml does not exist" in r.output


def test_set_overrides_the_file_and_flags_override_both(data, tmp_path):
    home = tmp_path / "h"
    study = write(tmp_path / "study.toml", STUDY)
    r = invoke("study", "run", "--data", data, "--config", study, "--set", "tfidf.ngram_max=2", "--set",
               "rung.tfidf.C_grid=[1.0, 10.0]", "--set", "seeds=3", "--home", home)
    assert r.exit_code == 0, r.output
    assert "settings: study file" in r.output and "--set tfidf.ngram_max=2" in r.output
    cfg = stored(home)["config"]
    assert cfg["seeds"] == 3 and cfg["rung_params"]["tfidf"] == {"min_df": 1, "ngram_max": 2, "C_grid": [1.0, 10.0]}
    # An explicit flag beats --set and the file; flags left at their default do not.
    r = invoke("study", "run", "--data", data, "--config", study, "--set", "seeds=3", "--seeds", 2, "--test-size",
               0.3, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.stdout)["config"]
    assert cfg["seeds"] == 2 and cfg["test_size"] == 0.3 and cfg["rung_params"]["tfidf"]["ngram_max"] == 1
    # A flag naming other rungs leaves the file's tables of rungs it dropped out (and says so).
    r = invoke("study", "run", "--data", data, "--config", study, "--rungs", "tfidf", "--set", "lora.r=4",
               "--home", home)
    assert r.exit_code == 0, r.output
    assert "[rung.lora] in --set not used: lora is not in rungs (tfidf)" in r.output
    assert "flags override the file: --rungs" in r.output
    r = invoke("study", "run", "--data", data, "--config", study, "--set", "tfidf.mn_df=3", "--home", home)
    assert r.exit_code == 2 and "--set tfidf.mn_df=3: unknown parameter 'mn_df'" in r.output
    assert "allowed: C_grid, max_features, min_df" in r.output and "Traceback" not in r.output
    r = invoke("study", "run", "--data", data, "--set", "seeds", "--home", home)
    assert r.exit_code == 2 and "--set='seeds' is not valid: expected KEY=VALUE" in r.output


def test_study_config_round_trips_and_the_rerun_reads_everything_from_the_store(data, tmp_path):
    home = tmp_path / "h"
    study = write(tmp_path / "study.toml", STUDY + '\n[adaptive]\nmargin = 0.03\n')
    r = invoke("study", "run", "--data", data, "--config", study, "--set", "tfidf.C_grid=[1.0, 10.0]", "--name",
               "topics", "--home", home, "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    # Table mode: the study file on stdout.
    r = invoke("study", "config", first["study_id"][:8], "--home", home)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("# adaptlab study ") and 'name = "topics"' in r.output
    assert "[rung.tfidf]\nmin_df = 1\nngram_max = 1\nC_grid = [1.0, 10.0]\n" in r.output
    assert "[adaptive]\nmargin = 0.03\n" in r.output
    # -o writes it; --json has the text and the configuration.
    back = tmp_path / "back.toml"
    r = invoke("study", "config", "topics", "-o", back, "--home", home)
    assert r.exit_code == 0 and f"wrote {back}" in r.output and "--config" in r.output
    r = invoke("study", "config", "latest", "--home", home, "--json")
    payload = json.loads(r.stdout)
    def body(text):
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert body(payload["toml"]) == body(back.read_text()) and payload["config"] == first["config"]
    assert payload["path"] is None and payload["study_id"] == first["study_id"]
    # The rerun from the written file: same study, every result read from the run store.
    r = invoke("study", "run", "--data", data, "--config", back, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    rerun = json.loads(r.stdout)
    assert rerun["study_id"] == first["study_id"] and rerun["n_trained"] == 0 and rerun["n_from_store"] == 2
    assert result_keys(rerun) == result_keys(first)
    r = invoke("study", "config", "nope", "--home", home)
    assert r.exit_code == 2 and "no study 'nope'" in r.output and "Traceback" not in r.output


def test_study_show_has_the_configuration_in_table_and_json(data, tmp_path):
    home = tmp_path / "h"
    r = invoke("study", "run", "--data", data, "--config", write(tmp_path / "s.toml", STUDY), "--home", home)
    assert r.exit_code == 0, r.output
    r = invoke("study", "show", "--home", home)
    assert r.exit_code == 0, r.output
    assert "configuration\n  rungs tfidf · seeds 2 · split auto · test 0.25 · val 0.2 · test seed 0\n" in r.output
    assert "  tfidf: min_df = 1, ngram_max = 1\n" in r.output and "adaptlab study config" in r.output
    r = invoke("study", "show", "--home", home, "--json")
    assert json.loads(r.stdout)["config"]["rung_params"] == {"tfidf": {"min_df": 1, "ngram_max": 1}}


def test_a_network_rung_takes_its_parameters_from_the_file(data, tmp_path, tiny_encoder_dir):
    home = tmp_path / "h"
    study = write(tmp_path / "study.toml", f"""\
rungs = ["tfidf", "lora"]
seeds = 1
budget = "4steps"
encoder = "{tiny_encoder_dir}"
mixed_precision = "bf16"

[rung.lora]
r = 2
mixed_precision = "no"
batch_size = 8
""")
    r = invoke("study", "run", "--data", data, "--config", study, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    # The table beats the same layer's top-level key (the study's precision).
    assert payload["config"]["rung_params"] == {"lora": {"r": 2, "mixed_precision": "no", "batch_size": 8}}
    assert payload["config"]["mixed_precision"] == "bf16"
    lora = [res for res in RunStore(home / "runs.sqlite").study_results(payload["study_id"]) if res["rung"] == "lora"]
    assert lora and lora[0]["manifest"]["rung"]["config"]["r"] == 2
    # A flag beats the file's table.
    r = invoke("study", "run", "--data", data, "--config", study, "--mixed-precision", "bf16", "--set", "lora.r=3",
               "--rungs", "lora", "--home", home, "--json")
    assert r.exit_code == 0, r.output
    config = json.loads(r.stdout)["config"]
    assert config["rung_params"] == {"lora": {"r": 3, "batch_size": 8}} and config["mixed_precision"] == "bf16"


# ------------------------------------------------------------------------------------------ the module
def test_key_lines_finds_top_level_keys_tables_and_dotted_keys():
    text = '# c\nseeds = 3\n\n[rung.lora]\nr = 16  # rank\n"backbone_lr" = 5e-5\n[adaptive]\nmargin=0.03\n' \
           'rung.probe.batch_size = 8\n'
    lines = key_lines(text)
    assert lines[("seeds",)] == 2 and lines[("rung", "lora")] == 4 and lines[("rung", "lora", "r")] == 5
    assert lines[("rung", "lora", "backbone_lr")] == 6 and lines[("adaptive", "margin")] == 8
    assert lines[("adaptive", "rung", "probe", "batch_size")] == 9


def test_parse_study_file_checks_against_the_rung_dataclasses():
    s = parse_study_file('rungs = "tfidf,lora"\n[rung.lora]\nr = 16\nbackbone_lr = 5e-5\ntarget_modules = ["query"]\n')
    assert s.values == {"rungs": ["tfidf", "lora"]}
    assert s.rung_params == {"lora": {"r": 16, "backbone_lr": 5e-5, "target_modules": ["query"]}}
    with pytest.raises(ConfigError, match=r"study file, line 3: lora.r=1.5 is not valid: expected an integer \(default 8"):
        parse_study_file('rungs = "lora"\n[rung.lora]\nr = 1.5\n')
    with pytest.raises(ConfigError, match="line 2: lora.target_modules='query' is not valid: expected a list of strings"):
        parse_study_file('[rung.lora]\ntarget_modules = "query"\n')
    with pytest.raises(ConfigError, match="unknown adaptive setting 'margn'.*Did you mean 'margin'"):
        parse_study_file("[adaptive]\nmargn = 0.1\n")
    with pytest.raises(ConfigError, match="line 1: rung parameters go in one table per rung"):
        parse_study_file("rung = 3\n")
    with pytest.raises(ConfigError, match="lora.r=0 is not valid"):
        check_rung_param("lora", "r", 0)


def test_parse_set_options_and_scalars():
    s = parse_set_options(["lora.r=16", "rung.probe.C_grid=[0.1, 1]", "seeds=3", "budget=500steps", "adaptive.margin=0.03",
                           'name="a b"'])
    assert s.values == {"seeds": 3, "budget": "500steps", "name": "a b"}
    assert s.rung_params == {"lora": {"r": 16}, "probe": {"C_grid": [0.1, 1]}} and s.adaptive == {"margin": 0.03}
    assert parse_scalar("true") is True and parse_scalar("5e-5") == 5e-5 and parse_scalar("fp16") == "fp16"
    with pytest.raises(ConfigError, match=r"--set lora.r=x: lora.r='x' is not valid"):
        parse_set_options(["lora.r=x"])


def test_resolve_settings_layers_and_drops_defaults_that_keep_the_study_id():
    file = StudySettings(values={"rungs": ["probe", "lora", "refit"], "mixed_precision": "bf16", "refit_budget": "9steps"},
                         rung_params={"lora": {"r": 16, "mixed_precision": "no"}, "tfidf": {"min_df": 1}},
                         source="study.toml")
    flags = StudySettings(values={"refit_budget": "4steps"}, source="flags")
    r = resolve_settings([file, parse_set_options(["lora.r=4"]), flags], defaults={"seeds": 5})
    assert r.rung_params == {"lora": {"r": 4, "mixed_precision": "no"}, "refit": {"budget": "4steps"}}
    assert r.values["mixed_precision"] == "bf16"
    # A later layer's top-level precision beats an earlier layer's rung table.
    later = resolve_settings([file, StudySettings(values={"mixed_precision": "auto"}, source="flags")])
    assert later.rung_params["lora"] == {"r": 16} and later.values["mixed_precision"] == "auto"
    assert r.values["seeds"] == 5 and r.origin["refit_budget"] == "flags" and r.origin["rungs"] == "study.toml"
    assert r.notes == ["[rung.tfidf] in study.toml not used: tfidf is not in rungs (probe,lora,refit)"]
    with pytest.raises(ConfigError, match="refit_budget configures the refit rung, which is not in rungs"):
        study_config(StudySettings(values={"rungs": ["tfidf"], "refit_budget": "4steps"}))


@pytest.mark.parametrize("cfg", [
    StudyConfig(),
    StudyConfig(rungs=["tfidf", "probe", "lora"], seeds=3, split="stratified", test_size=0.3, encoder="/models/x y",
                positive_label='it"s', budget="500steps", name="ünïcode name", encode_precision="int8",
                int8_tolerance=0.01, n_boot=200, time_budget="3h", adaptive={"margin": 0.03, "min_seeds": 2},
                mixed_precision="bf16",
                rung_params={"lora": {"r": 16, "backbone_lr": 5e-5, "target_modules": ["query", "value"]},
                             "probe": {"C_grid": [0.1, 1.0]}}),
])
def test_study_file_text_round_trips_every_setting(cfg):
    text = study_file_text(cfg.to_dict(), header="first line\nsecond")
    assert text.startswith("# first line\n# second\n")
    assert study_config(parse_study_file(text)).to_dict() == cfg.to_dict()


def test_a_config_stored_before_the_study_precision_reruns_in_float32():
    """Training rungs ran in float32 before ``mixed_precision="auto"`` became the study's default."""
    old = StudyConfig(rungs=["probe", "finetune"]).to_dict()
    del old["mixed_precision"]
    text = study_file_text(old)
    assert '\nmixed_precision = "no"\n' in text
    assert study_config(parse_study_file(text)).mixed_precision == "no"
    probe_only = StudyConfig(rungs=["probe"]).to_dict()
    del probe_only["mixed_precision"]
    assert "mixed_precision" not in study_file_text(probe_only)


def test_format_value_and_rung_parameters():
    assert format_value(1e-5) == "1e-05" and format_value(True) == "true" and format_value([1, 2.5]) == "[1, 2.5]"
    assert format_value(float("inf")) == "inf" and format_value({"a b": 1}) == '{"a b" = 1}'
    params = {p["name"]: p for p in rung_parameters("lora")}
    assert params["r"]["default"] == 8 and params["r"]["help"] == "LoRA rank" and params["r"]["type"] == "an integer"
    assert params["checkpoint_every"]["identity"] is False


def test_read_study_file_names_the_file(tmp_path):
    p = write(tmp_path / "x.toml", "seeds = -1\n")
    with pytest.raises(ConfigError, match=r"x.toml, line 1: seeds=-1 is not valid"):
        read_study_file(p)


# ------------------------------------------------------------------------------------------- the web app
@pytest.fixture
def web(tmp_path, tiny_encoder_dir):
    from fastapi.testclient import TestClient

    from adaptlab.ui import create_app
    from test_ui import BASE, make_settings

    app = create_app(make_settings(tmp_path, str(tiny_encoder_dir)))
    with TestClient(app, base_url=BASE) as client:
        yield app, client


def checked_upload(client) -> str:
    from test_ui import csv_bytes, location_id, upload

    uid = location_id(upload(client, csv_bytes(topic_corpus(120, seed=0, noise=0.5))))
    r = client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"}, follow_redirects=False)
    assert r.status_code == 303
    return uid


def test_the_configure_page_shows_rung_parameters_and_a_changed_one_reaches_the_stored_study(web):
    import html

    from test_ui import location_id

    app, client = web
    uid = checked_upload(client)
    page = client.get(f"/data/{uid}/configure").text
    # Each available rung's main parameters, with the default as placeholder and the dataclass help text.
    assert 'id="params-lora"' in page and 'name="p.lora.r"' in page and "LoRA rank" in page
    assert 'id="param-lora-r" value="" placeholder="8"' in page and "an integer; default 8" in page
    assert 'id="param-tfidf-min_df" value="" placeholder="2"' in page and "drop terms seen in fewer" in page
    assert 'id="params-more-lora"' in page and 'name="p.lora.dropout"' in page
    assert 'name="p.lora.checkpoint_every"' not in page  # changes no number: not offered
    # A bad value comes back with the parameter named and marked.
    r = client.post(f"/data/{uid}/start", data={"rungs": ["tfidf"], "seeds": "2", "p.tfidf.min_df": "0"})
    assert r.status_code == 400
    text = html.unescape(r.text)
    assert "parameter tfidf.min_df: tfidf.min_df=0 is not valid: expected an integer >= 1" in text
    assert 'id="param-tfidf-min_df" value="0"' in r.text and 'class="invalid"' in r.text
    # One parameter edited (and one of an unticked rung, which is kept in the form but not used).
    r = client.post(f"/data/{uid}/start", data={"rungs": ["tfidf"], "seeds": "2", "p.tfidf.min_df": "1",
                                                 "p.lora.r": "4"}, follow_redirects=False)
    job = app.state.jobs.wait(location_id(r), 120)
    assert job.status == "done", job.error
    sid = client.get(f"/api/jobs/{job.id}").json()["study_id"]
    rec = RunStore(app.state.settings.home / "runs.sqlite").get_study(sid)
    assert rec["config"]["rung_params"] == {"tfidf": {"min_df": 1}}
    res = client.get(f"/studies/{sid}")
    assert 'id="study-config"' in res.text and "tfidf: min_df = 1" in res.text
    toml_file = client.get(f"/studies/{sid}/study.toml")
    assert toml_file.status_code == 200 and "attachment" in toml_file.headers["content-disposition"]
    assert study_config(parse_study_file(toml_file.text)).to_dict() == rec["config"]
    conf = client.get(f"/data/{uid}/configure").text  # the form remembers the edit
    assert 'id="param-tfidf-min_df" value="1"' in conf and 'id="param-lora-r" value="4"' in conf


def test_a_study_file_uploaded_on_the_configure_page_fills_the_form_and_the_study(web):
    from test_ui import location_id

    app, client = web
    uid = checked_upload(client)
    bad = client.post(f"/data/{uid}/studyfile", files={"study_file": ("mine.toml", STUDY.replace("min_df", "min_dff"))})
    assert bad.status_code == 400 and "mine.toml, line 7: unknown parameter &#39;min_dff&#39;" in bad.text
    r = client.post(f"/data/{uid}/studyfile", files={"study_file": ("mine.toml", 'encoder = "x"\n' + STUDY)},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/data/{uid}/configure"
    page = client.get(f"/data/{uid}/configure").text
    assert 'id="study-file-loaded"' in page and "mine.toml" in page and "<code>test_size = 0.25</code>" in page
    assert "not used by the web app" in page and "encoder" in page
    assert 'id="param-tfidf-min_df" value="1"' in page and 'id="param-tfidf-ngram_max" value="1"' in page
    assert 'id="seeds" value="2"' in page and 'value="tfidf" id="rung-tfidf"\n    checked' in page
    # The browser posts the form as filled; the settings the form has no field for come from the file.
    r = client.post(f"/data/{uid}/start", data={"rungs": ["tfidf"], "seeds": "2", "p.tfidf.min_df": "1",
                                                 "p.tfidf.ngram_max": "1"}, follow_redirects=False)
    job = app.state.jobs.wait(location_id(r), 120)
    assert job.status == "done", job.error
    cfg = RunStore(app.state.settings.home / "runs.sqlite").get_study(
        client.get(f"/api/jobs/{job.id}").json()["study_id"])["config"]
    assert cfg["test_size"] == 0.25 and cfg["seeds"] == 2
    assert cfg["rung_params"] == {"tfidf": {"min_df": 1, "ngram_max": 1}}


def test_a_study_setting_newer_than_the_key_table_still_round_trips(monkeypatch):
    """A StudyConfig field with no study-file key yet is written and read under its own name."""
    import adaptlab.studyfile as sf

    monkeypatch.setattr(sf, "KEYS", {k: v for k, v in sf.KEYS.items() if k != "n_boot"})
    cfg = StudyConfig(rungs=["tfidf"], n_boot=300)
    text = study_file_text(cfg.to_dict())
    assert "\nn_boot = 300\n" in text
    assert study_config(parse_study_file(text)).to_dict() == cfg.to_dict()
    with pytest.raises(ConfigError, match="line 1: n_boot=5 is not valid"):
        parse_study_file("n_boot = 5\n")


def test_study_config_names_the_data_and_reruns_from_the_file_alone(tmp_path):
    home = tmp_path / "h"
    ds = topic_corpus(60, seed=1)
    renamed = tmp_path / "renamed.csv"
    pd.DataFrame({"body": ds.texts, "topic": ds.labels}).to_csv(renamed, index=False)
    r = invoke("study", "run", "--data", renamed, "--text-col", "body", "--label-col", "topic", "--rungs", "tfidf",
               "--seeds", 2, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    r = invoke("study", "config", "latest", "--home", home, "--json")
    payload = json.loads(r.stdout)
    assert payload["inputs"] == {"data": str(renamed.resolve()), "text_col": "body", "label_col": "topic"}
    text = payload["text"]
    assert f'data = "{renamed.resolve()}"\ntext_col = "body"\nlabel_col = "topic"\n' in text
    assert "rerun it exactly: adaptlab study run --config study.toml" in text
    (tmp_path / "elsewhere").mkdir()
    back = write(tmp_path / "elsewhere" / "s.toml", text)
    # No --data and no column flags: the file holds them; same study, read from the store.
    r = invoke("study", "run", "--config", back, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    rerun = json.loads(r.stdout)
    assert rerun["study_id"] == first["study_id"] and rerun["n_trained"] == 0


def test_yaml_study_files_read_write_and_name_the_line(data, tmp_path):
    home = tmp_path / "h"
    y = write(tmp_path / "study.yaml", "rungs: [tfidf]\nseeds: 2\ntest_size: 0.25\nrung:\n  tfidf:\n"
                                      "    min_df: 1\n    C_grid: [1.0, 1e1]\n")
    r = invoke("study", "run", "--data", data, "--config", y, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert first["config"]["rung_params"]["tfidf"] == {"min_df": 1, "C_grid": [1.0, 10.0]}
    # Written back as YAML (by the -o name or --format), it reruns the same study.
    back = tmp_path / "back.yml"
    r = invoke("study", "config", "latest", "-o", back, "--home", home)
    assert r.exit_code == 0 and f"wrote {back}" in r.output
    assert "rung:\n  tfidf:\n    min_df: 1\n" in back.read_text() and "rungs: [tfidf]\n" in back.read_text()
    r = invoke("study", "config", "latest", "--format", "yaml", "--home", home, "--json")
    assert json.loads(r.stdout)["format"] == "yaml" and json.loads(r.stdout)["toml"] is None
    r = invoke("study", "run", "--config", back, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["study_id"] == first["study_id"]
    # Errors name the YAML line, as for TOML.
    bad = write(tmp_path / "bad.yaml", "seeds: 2\nrung:\n  tfidf:\n    mn_df: 3\n")
    r = invoke("study", "run", "--data", data, "--config", bad, "--home", home)
    assert r.exit_code == 2 and f"{bad}, line 4: unknown parameter 'mn_df'" in r.output and "Traceback" not in r.output
    broken = write(tmp_path / "broken.yaml", "seeds: [2\n")
    r = invoke("study", "run", "--data", data, "--config", broken, "--home", home)
    assert r.exit_code == 2 and "is not valid YAML" in r.output
    r = invoke("study", "config", "latest", "--format", "xml", "--home", home)
    assert r.exit_code == 2 and "--format" in r.output and "toml or yaml" in r.output


def test_python_310_reads_study_files_with_tomli(tmp_path):
    """Without tomllib (Python 3.10) the module falls back to tomli, the same parser's backport."""
    import subprocess
    import sys

    pytest.importorskip("tomli")
    code = ("import sys; sys.modules['tomllib'] = None\n"
            "import adaptlab.studyfile as sf\n"
            "assert sf.tomllib.__name__ == 'tomli', sf.tomllib\n"
            "print(sf.parse_study_file('seeds = 3\\n[rung.lora]\\nr = 16\\n').rung_params)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "{'lora': {'r': 16}}"


def test_the_web_configure_form_takes_a_yaml_study_file():
    from adaptlab.ui.studyform import form_from_study_file

    form, _ = form_from_study_file(b"rungs: [tfidf]\nseeds: 4\nrung:\n  tfidf:\n    min_df: 1\n", "s.yaml", {})
    assert form["rungs"] == ["tfidf"] and form["seeds"] == 4 and form["params"] == {"tfidf": {"min_df": "1"}}
    with pytest.raises(ConfigError, match=r"s.yml, line 2: unknown key 'seedz'"):
        form_from_study_file(b"rungs: [tfidf]\nseedz: 4\n", "s.yml", {})
