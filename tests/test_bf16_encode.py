"""The bf16 encoding path: its own cache key, `auto` by hardware, the validation gate, the CLI and the model card."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import adaptlab.encoders.fast as fast_mod
from adaptlab.cli import app
from adaptlab.errors import ConfigError
from adaptlab.config import StudyConfig
from adaptlab.encoders import EmbeddingCache, embed
from adaptlab.encoders.cache import embedding_key
from adaptlab.encoders.fast import BF16_METHOD, Bf16Encoder, Int8Encoder, choose_precision, make_encoder, native_bf16, \
    resolve_precision
from adaptlab.evaluate import Study
from adaptlab.store import RunStore
from adaptlab.studyfile import parse_study_file, study_config, study_file_text
from synthetic import topic_corpus
from test_fast_encode import degrade

TEXTS = ["the market fell after the news", "cup final tonight", "new phone sales rise", "rates rise again"]
runner = CliRunner()


@pytest.fixture
def no_native_bf16(monkeypatch):
    """A CPU without AVX-512-BF16 or AMX (flags of an older Xeon)."""
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"sse4_2", "avx2", "avx512f"}))


@pytest.fixture(autouse=True)
def detected(monkeypatch):
    """These tests simulate the CPU's flags, so the detection runs (conftest pins it off for the suite)."""
    monkeypatch.delenv(fast_mod.NATIVE_BF16_ENV, raising=False)


@pytest.fixture
def native(monkeypatch):
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))


def test_bf16_vectors_are_close_to_fp32_float32_and_never_mix_in_the_cache(tiny_encoder, tmp_path):
    fast = Bf16Encoder(tiny_encoder)
    assert fast.precision == "bf16" and fast.fingerprint != tiny_encoder.fingerprint
    assert next(fast.model.parameters()).dtype == torch.bfloat16
    assert next(tiny_encoder.model.parameters()).dtype == torch.float32, "the base must not be cast"
    assert embedding_key(fast) == f"{fast.fingerprint}@bf16"
    assert fast.info["precision"] == "bf16" and fast.info["conversion"] == BF16_METHOD
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    X16 = embed(fast, TEXTS, cache=cache)
    X32 = embed(tiny_encoder, TEXTS, cache=cache)
    X8 = embed(Int8Encoder(tiny_encoder), TEXTS, cache=cache)
    assert X16.dtype == np.float32 and X16.shape == X32.shape
    assert len(set(cache.fingerprints())) == 3, "fp32, bf16 and int8 vectors are stored apart"
    assert np.array_equal(embed(tiny_encoder, TEXTS, cache=cache), tiny_encoder.encode(TEXTS))
    assert np.array_equal(embed(fast, TEXTS, cache=cache), X16)
    assert not np.array_equal(X16, X8)
    cos = (X16 * X32).sum(1)  # both L2-normalised: pooling and normalisation stay fp32
    assert np.allclose(np.linalg.norm(X16, axis=1), 1.0, atol=1e-5)
    assert 0 < np.abs(X16 - X32).max() and cos.min() > 0.99  # close, not equal: really bf16


def test_bf16_encoder_travels_as_its_base(tiny_encoder):
    fast = Bf16Encoder(tiny_encoder)
    back = pickle.loads(pickle.dumps(fast))
    assert back.fingerprint == fast.fingerprint and np.array_equal(back.encode(TEXTS), fast.encode(TEXTS))
    assert make_encoder(tiny_encoder, "bf16").fingerprint == fast.fingerprint


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"avx512f"}))
    assert native_bf16("cpu") is False
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"amx_bf16", "amx_tile"}))
    assert native_bf16("cpu") is True


def test_the_environment_overrides_the_detection(monkeypatch):
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"amx_bf16", "amx_tile"}))
    monkeypatch.setenv(fast_mod.NATIVE_BF16_ENV, "0")
    assert native_bf16("cpu") is False and resolve_precision("auto")[0] == "fp32"
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setenv(fast_mod.NATIVE_BF16_ENV, "1")
    assert native_bf16("cpu") is True and resolve_precision("auto")[0] == "bf16"
    monkeypatch.setenv(fast_mod.NATIVE_BF16_ENV, "yes")
    with pytest.raises(ConfigError, match="ADAPTLAB_NATIVE_BF16.*0 \\(no native bf16\\) or 1"):
        native_bf16("cpu")


def test_auto_is_fp32_without_native_bf16_and_runs_no_gate(tiny_encoder, no_native_bf16):
    used, choice = choose_precision(tiny_encoder, "auto", validation_f1=lambda e: pytest.fail("no gate without bf16"))
    assert used is tiny_encoder and choice.used == "fp32" and not choice.fell_back
    assert "no native bf16" in choice.message
    assert make_encoder(tiny_encoder, "auto") is tiny_encoder


def test_auto_checks_bf16_where_native(tiny_encoder, native):
    used, choice = choose_precision(tiny_encoder, "auto", validation_f1=lambda e: 0.9)
    assert choice.requested == "auto" and choice.used == "bf16" and used.precision == "bf16"
    assert choice.to_dict()["bf16_f1"] == 0.9 and "runs bf16 natively" in choice.message


def test_gate_refuses_bf16_beyond_tolerance(tiny_encoder):
    scores = lambda enc: 0.80 if getattr(enc, "precision", "fp32") == "bf16" else 0.90  # noqa: E731
    used, choice = choose_precision(tiny_encoder, "bf16", validation_f1=scores, tolerance=0.05)
    assert used is tiny_encoder and choice.used == "fp32" and choice.fell_back
    assert "bf16 rejected" in choice.message and "--precision-tolerance" in choice.message
    used, choice = choose_precision(tiny_encoder, "bf16", validation_f1=scores, tolerance=0.1)
    assert choice.used == "bf16"


@pytest.fixture
def corpus():
    return topic_corpus(150, seed=7, noise=0.5)


def run(home, enc, data, **cfg):
    return Study(StudyConfig(rungs=["tfidf", "probe"], seeds=2, n_boot=200, **cfg), home=home, encoder=enc).run(data)


def test_study_auto_refuses_a_degraded_bf16_path_and_falls_back(tiny_encoder, tmp_path, corpus, monkeypatch, native):
    base = run(tmp_path, tiny_encoder, corpus, encode_precision="fp32", precision_tolerance=0.0)
    monkeypatch.setattr(fast_mod, "cast_bf16", degrade)  # forced: every text collapses onto one vector
    res = run(tmp_path, tiny_encoder, corpus, encode_precision="auto", precision_tolerance=0.0)
    gate = res.data["encode_precision"]
    assert gate["requested"] == "auto" and gate["candidate"] == "bf16" and gate["used"] == "fp32" and gate["fell_back"]
    assert gate["bf16_f1"] < gate["fp32_f1"]
    assert any("bf16 rejected" in w for w in res.warnings)
    assert res.n_trained == 0 and res.row("probe")["f1_by_seed"] == base.row("probe")["f1_by_seed"]
    assert res.study_id == base.study_id  # what ran is the fp32 study


def test_study_auto_without_native_bf16_is_the_fp32_study(tiny_encoder, tmp_path, corpus, no_native_bf16):
    base = run(tmp_path, tiny_encoder, corpus)
    res = run(tmp_path, tiny_encoder, corpus, encode_precision="auto")
    gate = res.data["encode_precision"]
    assert gate["used"] == "fp32" and not gate["fell_back"] and not any("bf16" in w for w in res.warnings)
    assert res.n_trained == 0 and res.row("probe")["f1_by_seed"] == base.row("probe")["f1_by_seed"]


def test_study_bf16_records_the_path_in_result_keys(tiny_encoder, tmp_path, corpus):
    base = run(tmp_path, tiny_encoder, corpus)
    res = run(tmp_path, tiny_encoder, corpus, encode_precision="bf16", precision_tolerance=0.5)
    assert res.data["encode_precision"]["used"] == "bf16"
    assert res.n_trained == 2 and res.n_from_store == 2  # new probe results (tfidf is read back)
    stored = RunStore(tmp_path / "runs.sqlite")
    precisions = {r["rung"]: (r["manifest"]["encoder"] or {}).get("precision") for r in stored.study_results(res.study_id)}
    assert precisions == {"tfidf": None, "probe": "bf16"}
    probe_keys = lambda r: {p["result_key"] for p in r.per_seed if p["rung"] == "probe"}  # noqa: E731
    assert probe_keys(res).isdisjoint(probe_keys(base)), "bf16 results have keys of their own"
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    assert any(fp.endswith("@bf16") for fp in cache.fingerprints())


def test_the_default_is_auto_and_the_id_names_what_it_became(tiny_encoder, tmp_path, corpus, monkeypatch):
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"avx2"}))
    default = run(tmp_path / "a", tiny_encoder, corpus)
    assert default.data["encode_precision"]["requested"] == "auto" and default.data["encode_precision"]["used"] == "fp32"
    assert default.study_id == run(tmp_path / "a", tiny_encoder, corpus, encode_precision="fp32").study_id
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    on_bf16 = run(tmp_path / "b", tiny_encoder, corpus, precision_tolerance=0.5)
    assert on_bf16.data["encode_precision"]["used"] == "bf16" and on_bf16.study_id != default.study_id
    assert not on_bf16.data["encode_precision"]["fell_back"] and not any("bf16" in w for w in on_bf16.warnings)
    explicit = run(tmp_path / "b", tiny_encoder, corpus, encode_precision="bf16", precision_tolerance=0.5)
    assert explicit.study_id == on_bf16.study_id and explicit.n_trained == 0  # the same vectors, the same cells


def test_the_gate_encodes_a_sample_in_fp32_not_the_whole_train_split(tiny_encoder, tmp_path, corpus, monkeypatch):
    monkeypatch.setattr(fast_mod, "GATE_MAX_TEXTS", 20)
    res = run(tmp_path, tiny_encoder, corpus, encode_precision="bf16", precision_tolerance=0.5)
    assert res.data["encode_precision"]["used"] == "bf16"
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    bf16 = next(fp for fp in cache.fingerprints() if fp.endswith("@bf16"))
    assert cache.count(embedding_key(tiny_encoder)) == 40  # 20 train + 20 validation texts, stratified
    assert cache.count(bf16) == len(corpus)  # the study itself encodes everything once, in bf16


def test_precision_tolerance_keeps_the_old_name_and_the_study_id():
    assert StudyConfig(precision_tolerance=0.02).to_dict() == StudyConfig(int8_tolerance=0.02).to_dict()
    d = StudyConfig().identity("fp32")  # what the id hashes: auto (the default) that ran in fp32 is the fp32 study
    assert d["int8_tolerance"] == 0.005 and "precision_tolerance" not in d and d["encode_precision"] == "fp32"
    assert StudyConfig(**d).precision_tolerance == 0.005 and StudyConfig().to_dict()["encode_precision"] == "auto"
    text = study_file_text(StudyConfig(encode_precision="auto", precision_tolerance=0.01).to_dict())
    assert 'precision = "auto"' in text and "precision_tolerance = 0.01" in text and "int8_tolerance" not in text
    assert study_config(parse_study_file(text)).precision_tolerance == 0.01
    assert study_config(parse_study_file("int8_tolerance = 0.03\n")).precision_tolerance == 0.03


@pytest.fixture
def csv_file(tmp_path):
    import pandas as pd

    ds = topic_corpus(120, noise=0.6)
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    return path


def test_cli_precision_bf16_and_auto_in_table_and_json(tmp_path, csv_file, tiny_encoder_dir, no_native_bf16):
    home = tmp_path / "home"
    base = ["study", "run", "--data", str(csv_file), "--rungs", "tfidf,probe", "--seeds", "2", "--home", str(home),
            "--encoder", str(tiny_encoder_dir)]
    r = runner.invoke(app, base + ["--precision", "bf16", "--precision-tolerance", "0.5"])
    assert r.exit_code == 0, r.output
    assert "bf16 accepted" in r.output
    r = runner.invoke(app, base + ["--precision", "auto", "--json"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["data"]["encode_precision"]["used"] == "fp32" and payload["config"]["encode_precision"] == "auto"
    r = runner.invoke(app, base + ["--precision", "bf16", "--int8-tolerance", "0.5"])  # the old flag still works
    assert r.exit_code == 0, r.output
    assert "old name of precision_tolerance" in r.output and "bf16 accepted" in r.output
    r = runner.invoke(app, base + ["--precision", "fp16"])
    assert r.exit_code == 2 and "encode_precision='fp16'" in r.output and "Traceback" not in r.output


def test_shipped_probe_keeps_its_precision_and_the_card_names_it(tmp_path, tiny_encoder_dir, native):
    from adaptlab.ship import Pipeline, load_pipeline

    ds = topic_corpus(80, seed=3, noise=0.3)
    pipe = Pipeline(rung="probe", encoder=str(tiny_encoder_dir), device="cpu", precision="bf16").fit(ds.texts, ds.labels)
    assert pipe.encoder_.precision == "bf16"
    folder = pipe.save(tmp_path / "model")
    card = (folder / "MODEL_CARD.md").read_text()
    assert "encoding precision: bf16" in card and BF16_METHOD in card
    back = load_pipeline(folder)
    assert back.fitted_.encoder.precision == "bf16"
    assert np.array_equal(back.predict_proba(ds.texts[:10]), pipe.predict_proba(ds.texts[:10]))
    fp32 = Pipeline(rung="probe", encoder=str(tiny_encoder_dir), device="cpu").fit(ds.texts, ds.labels)
    assert "encoding precision: fp32" in (fp32.save(tmp_path / "m32") / "MODEL_CARD.md").read_text()


def test_planner_calibrates_with_the_studys_precision(tiny_encoder, no_native_bf16, monkeypatch):
    import adaptlab.decide.plan as plan_mod

    ds = topic_corpus(60, seed=1, noise=0.3)
    assert plan_mod.calibrate(tiny_encoder, ds.texts, ds.labels, n=8, precision="bf16").precision == "bf16"
    assert plan_mod.calibrate(tiny_encoder, ds.texts, ds.labels, n=8, precision="auto").precision == "fp32"
    seen: dict = {}
    real = plan_mod.calibrate

    def spy(*args, **kw):
        seen.update(kw)
        return real(*args, **{**kw, "n": 8})

    monkeypatch.setattr(plan_mod, "calibrate", spy)
    cfg = StudyConfig(rungs=["tfidf", "probe", "lora"], encode_precision="bf16",
                      rung_params={"lora": {"mixed_precision": "bf16"}})
    plan_mod.study_cost_estimates(cfg, ds.texts, ds.labels, encoder=tiny_encoder)
    assert seen == {"precision": "bf16", "mixed_precision": "bf16"}
    plan_mod.study_cost_estimates(StudyConfig(rungs=["tfidf", "probe"]), ds.texts, ds.labels, encoder=tiny_encoder)
    assert seen == {"precision": "auto", "mixed_precision": "no"}  # the default; calibrate resolves it


def test_ship_cli_precision_in_table_and_json(tmp_path, csv_file, tiny_encoder_dir):
    home = tmp_path / "home"
    args = ["ship", str(csv_file), "--rung", "probe", "--encoder", str(tiny_encoder_dir), "--precision", "bf16",
            "--home", str(home)]
    r = runner.invoke(app, args + ["-o", str(tmp_path / "m1")])
    assert r.exit_code == 0, r.output
    card = next((tmp_path / "m1" / "versions").glob("*/MODEL_CARD.md")).read_text()
    assert "encoding precision: bf16" in card
    r = runner.invoke(app, args + ["-o", str(tmp_path / "m2"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["model"] == str(tmp_path / "m2")
    r = runner.invoke(app, args[:-4] + ["--precision", "fp8", "-o", str(tmp_path / "m3"), "--home", str(home)])
    assert r.exit_code == 2 and "precision='fp8'" in r.output and "Traceback" not in r.output


def test_packed_onednn_path_gives_the_plain_bf16_vectors(tiny_encoder, monkeypatch):
    if not hasattr(torch.ops.mkldnn, "_linear_pointwise") or not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN linear ops")
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    packed = Bf16Encoder(tiny_encoder)
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"avx2"}))
    plain = Bf16Encoder(tiny_encoder)
    kinds = lambda enc: {type(m).__name__ for m in enc.model.modules()}  # noqa: E731
    assert "_PackedLinear" in kinds(packed) and "_PackedLinear" not in kinds(plain)
    assert packed.fingerprint == plain.fingerprint  # the same bf16 computation, kernels aside
    Xp, Xq = packed.encode(TEXTS), plain.encode(TEXTS)
    assert (Xp * Xq).sum(1).min() > 0.999


def test_ship_from_a_study_takes_the_precision_its_gate_accepted(tmp_path, csv_file, tiny_encoder_dir):
    home = tmp_path / "home"
    r = runner.invoke(app, ["study", "run", "--data", str(csv_file), "--rungs", "tfidf,probe", "--seeds", "3",
                            "--encoder", str(tiny_encoder_dir), "--precision", "bf16", "--precision-tolerance", "0.5",
                            "--home", str(home), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["data"]["encode_precision"]["used"] == "bf16"
    # --force: the noisy labels leave the study below the ship threshold (issue #31: ship honours it).
    r = runner.invoke(app, ["ship", str(csv_file), "--study", "latest", "--rung", "probe", "--force", "--encoder",
                            str(tiny_encoder_dir), "-o", str(tmp_path / "m"), "--home", str(home), "--json"])
    assert r.exit_code == 0, r.output
    card = next((tmp_path / "m" / "versions").glob("*/MODEL_CARD.md")).read_text()
    assert "encoding precision: bf16" in card


def _bf16_probe(tmp_path, tiny_encoder_dir):
    from adaptlab.ship import Pipeline

    ds = topic_corpus(80, seed=3, noise=0.3)
    pipe = Pipeline(rung="probe", encoder=str(tiny_encoder_dir), device="cpu", precision="bf16").fit(ds.texts, ds.labels)
    return pipe.save(tmp_path / "model"), ds


def test_a_bf16_model_loads_in_fp32_where_bf16_is_not_native(tmp_path, tiny_encoder_dir, native, monkeypatch):
    from adaptlab.ship import load_pipeline

    folder, ds = _bf16_probe(tmp_path, tiny_encoder_dir)
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))  # now an older CPU
    back = load_pipeline(folder)
    assert getattr(back.fitted_.encoder, "precision", "fp32") == "fp32" and back.precision_used_ == "fp32"
    assert "does not run natively" in back.precision_note_
    forced = load_pipeline(folder, precision="bf16")  # asked for: used as asked, emulated or not
    assert forced.fitted_.encoder.precision == "bf16" and forced.precision_note_ == "bf16, as shipped"
    # The fp32 path agrees with the bf16 one it was gated against.
    assert (back.predict(ds.texts) == forced.predict(ds.texts)).mean() > 0.95
    with pytest.raises(ConfigError, match="precision='fp8' is not valid"):
        load_pipeline(folder, precision="fp8")


def test_an_fp32_model_runs_in_bf16_only_when_asked(tmp_path, tiny_encoder_dir, native):
    from adaptlab.ship import Pipeline, load_pipeline

    ds = topic_corpus(80, seed=3, noise=0.3)
    folder = Pipeline(rung="probe", encoder=str(tiny_encoder_dir), device="cpu").fit(ds.texts, ds.labels).save(
        tmp_path / "m32")
    assert load_pipeline(folder).precision_used_ == "fp32"  # auto keeps what was evaluated
    fast = load_pipeline(folder, precision="bf16")
    assert fast.fitted_.encoder.precision == "bf16" and fast.precision_note_ == "bf16 requested (shipped in fp32)"


def test_predict_drift_and_neighbors_take_precision_in_table_and_json(tmp_path, csv_file, tiny_encoder_dir, native):
    import pandas as pd

    model = tmp_path / "m"
    r = runner.invoke(app, ["ship", str(csv_file), "--rung", "probe", "--encoder", str(tiny_encoder_dir), "-o",
                            str(model), "--home", str(tmp_path / "home"), "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    new = tmp_path / "new.csv"
    pd.DataFrame({"text": TEXTS * 3}).to_csv(new, index=False)
    r = runner.invoke(app, ["predict", str(model), str(new), "-o", str(tmp_path / "p.csv"), "--precision", "bf16",
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["precision"] == "bf16 requested (shipped in fp32)"
    r = runner.invoke(app, ["predict", str(model), str(new), "-o", str(tmp_path / "p2.csv")])
    assert r.exit_code == 0 and "Encoder precision: fp32, as shipped." in r.output, r.output
    r = runner.invoke(app, ["drift", str(model), str(new), "--precision", "bf16", "--permutations", "20", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["precision"] == "bf16"
    r = runner.invoke(app, ["drift", str(model), str(new), "--permutations", "20"])
    assert r.exit_code == 0 and "encoder precision: fp32, as shipped" in r.output, r.output
    r = runner.invoke(app, ["neighbors", str(model), str(new), "--precision", "bf16", "--json"])
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 5 * len(TEXTS) * 3, r.output
    r = runner.invoke(app, ["neighbors", str(model), str(new), "--precision", "bf16"])
    assert r.exit_code == 0 and "encoder precision: bf16 requested (shipped in fp32)" in r.output, r.output
    r = runner.invoke(app, ["predict", str(model), str(new), "-o", str(tmp_path / "p3.csv"), "--precision", "fp8"])
    assert r.exit_code == 2 and "precision='fp8' is not valid" in r.output and "Traceback" not in r.output


def test_a_retrain_keeps_bf16_where_native_and_runs_fp32_where_not(tmp_path, tiny_encoder_dir, native, monkeypatch):
    from types import SimpleNamespace

    from adaptlab.ship import Pipeline, load_pipeline
    from adaptlab.ship.retrain import retrain_pipeline

    folder, _ = _bf16_probe(tmp_path, tiny_encoder_dir)
    assert retrain_pipeline(load_pipeline(folder)).precision == "bf16"
    network = Pipeline(rung="finetune", rung_params={"mixed_precision": "bf16"})
    old = SimpleNamespace(rung="finetune", get_params=network.get_params, precision_used_="fp32")
    assert retrain_pipeline(old).rung_params["mixed_precision"] == "bf16"
    monkeypatch.setattr(fast_mod, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))  # an older CPU
    assert retrain_pipeline(load_pipeline(folder)).precision == "fp32"
    assert retrain_pipeline(old).rung_params == {"mixed_precision": "no"}
