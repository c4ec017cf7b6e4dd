"""Long texts (issue #34): truncate / head_tail / chunk_mean / chunk_max for the frozen rungs, their cache keys, the
study settings that declare them, and `data check`'s share of texts longer than the encoder's window."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.config import StudyConfig
from adaptlab.data import TextDataset
from adaptlab.encoders import EmbeddingCache, Encoder, embed
from adaptlab.encoders.cache import embedding_key
from adaptlab.encoders.longtext import (LONG_TEXT_STRATEGIES, LongTextEncoder, LongTextStrategy, check_long_text,
                                        long_text_encoder, window_report)
from adaptlab.errors import ConfigError
from adaptlab.evaluate import Study
from adaptlab.rungs import RUNGS, get_rung
from adaptlab.studyfile import parse_set_options, parse_study_file, resolve_settings, study_config
from synthetic import topic_corpus
from tiny_models import tiny_vocab

WORDS = [w for w in tiny_vocab() if w.isalpha() and len(w) > 2][:40]


@pytest.fixture
def enc(mlm_dir):
    """The tiny encoder whose tokenizer knows its words (window: 64 tokens, 62 of them text)."""
    return Encoder.from_pretrained(mlm_dir, device="cpu")


def _text(n_words, shift=0):
    return " ".join(WORDS[(i + shift) % len(WORDS)] for i in range(n_words))


def _windows(enc, text, strategy):
    reader = LongTextEncoder(enc, strategy)
    ids = enc.tokenizer([text], add_special_tokens=False)["input_ids"][0]
    return reader, reader.strategy.windows(ids, reader.room)


# ------------------------------------------------------------------------------------------- strategies
@pytest.mark.parametrize("value, name, size", [("truncate", "truncate", None), ("head_tail:10", "head_tail", 10),
                                               ("chunk-mean", "chunk_mean", None), (" CHUNK_MAX:0 ", "chunk_max", 0)])
def test_strategy_names_parse(value, name, size):
    s = LongTextStrategy.parse(value)
    assert (s.name, s.size) == (name, size)


@pytest.mark.parametrize("bad", ["chunks", "truncate:5", "chunk_mean:x", "head_tail:-1", 3, ""])
def test_a_bad_strategy_names_the_allowed_values(bad):
    with pytest.raises(ConfigError) as e:
        check_long_text(bad)
    for name in LONG_TEXT_STRATEGIES:
        assert name in str(e.value)


def test_windows_cover_the_text_at_full_length_and_end_at_its_end():
    ids = list(range(1000))
    s = LongTextStrategy.parse("chunk_mean:10")
    ws = s.windows(ids, room=100)
    assert all(len(w) == 100 for w in ws) and ws[0][0] == 0 and ws[-1][-1] == 999
    assert sorted(set(i for w in ws for i in w)) == ids  # every token read
    assert ws[1][0] == 90  # consecutive windows overlap by 10 tokens
    assert LongTextStrategy.parse("chunk_max").windows(ids[:100], room=100) == [ids[:100]]
    head, = LongTextStrategy.parse("head_tail:30").windows(ids, room=100)
    assert head == ids[:30] + ids[-70:]
    default, = LongTextStrategy.parse("head_tail").windows(ids, room=100)
    assert default == ids[:25] + ids[-75:]  # a quarter of the window as head
    assert LongTextStrategy.parse("truncate").windows(ids, room=100) == [ids[:100]]


# ------------------------------------------------------------------------------------------- vectors
def test_a_text_shorter_than_the_window_gets_the_same_vector_under_every_strategy(enc):
    texts = [_text(12), _text(30, shift=3), ""]
    base = enc.encode(texts)
    for strategy in ("head_tail", "chunk_mean", "chunk_max", "head_tail:5", "chunk_mean:3"):
        np.testing.assert_allclose(long_text_encoder(enc, strategy).encode(texts), base, atol=1e-5, err_msg=strategy)


def test_chunk_mean_and_chunk_max_pool_the_chunk_vectors(enc):
    long = _text(300)
    for strategy, pool in (("chunk_mean", np.mean), ("chunk_max", np.max)):
        reader, ws = _windows(enc, long, strategy)
        assert len(ws) >= 3
        V = enc.encode_ids([reader.with_specials(w) for w in ws])
        want = pool(V, axis=0)
        want /= np.linalg.norm(want)  # the tiny encoder normalises: so does the pooled vector
        got = reader.encode([_text(5), long])
        np.testing.assert_allclose(got[1], want, atol=1e-5)
        assert not np.allclose(got[1], enc.encode([long])[0], atol=1e-3)  # not the first window alone


def test_head_tail_reads_the_first_and_last_tokens(enc):
    long = _text(300)
    reader, (w,) = _windows(enc, long, "head_tail:20")
    want = enc.encode_ids([reader.with_specials(w)])[0]
    np.testing.assert_allclose(reader.encode([long])[0], want, atol=1e-5)
    ids = enc.tokenizer([long], add_special_tokens=False)["input_ids"][0]
    assert w[:20] == ids[:20] and w[20:] == ids[-(reader.room - 20):]


def test_chunks_are_encoded_a_group_at_a_time(enc, monkeypatch):
    """Memory stays bounded: no call encodes more than one group's windows, whatever the number of texts."""
    import adaptlab.encoders.longtext as lt

    monkeypatch.setattr(lt, "_TEXTS_PER_GROUP", 3)
    sizes = []
    real = Encoder.encode_ids
    monkeypatch.setattr(Encoder, "encode_ids", lambda self, ids, **k: sizes.append(len(ids)) or real(self, ids, **k))
    texts = [_text(200, shift=i) for i in range(7)]
    X = long_text_encoder(enc, "chunk_mean").encode(texts)
    assert X.shape == (7, enc.dim) and len(sizes) == 3 and sizes[2] < sizes[0]  # 3 + 3 + 1 texts' windows
    monkeypatch.setattr(lt, "_TEXTS_PER_GROUP", 512)
    np.testing.assert_allclose(long_text_encoder(enc, "chunk_mean").encode(texts), X, atol=1e-5)


# ------------------------------------------------------------------------------------------- cache keys
def test_truncate_is_the_encoder_itself_and_keeps_its_cache_key(enc, tmp_path):
    assert long_text_encoder(enc, "truncate") is enc and long_text_encoder(enc, None) is enc
    keys = {s: embedding_key(long_text_encoder(enc, s)) for s in ("truncate", "head_tail", "chunk_mean", "chunk_max",
                                                                   "chunk_mean:4")}
    assert keys["truncate"] == enc.fingerprint and len(set(keys.values())) == 5
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    texts = [_text(200), _text(10)]
    embed(enc, texts, cache=cache)
    embed(long_text_encoder(enc, "chunk_mean"), texts, cache=cache)
    assert sorted(cache.fingerprints()) == sorted([keys["truncate"], keys["chunk_mean"]])
    assert cache.count(keys["truncate"]) == 2
    # Read back from the cache, the chunked vectors are the chunked ones, not the truncated ones.
    again = embed(long_text_encoder(enc, "chunk_mean"), texts, cache=cache)
    np.testing.assert_allclose(again, long_text_encoder(enc, "chunk_mean").encode(texts), atol=1e-5)


def test_rung_configs_leave_truncate_out_of_their_result_keys():
    for rung in ("probe", "refit"):
        assert "long_text" not in get_rung(rung).config.identity_dict()
        assert get_rung(rung, {"long_text": "chunk-mean"}).config.identity_dict()["long_text"] == "chunk_mean"
        with pytest.raises(ConfigError, match=f"{rung}.long_text='chunks' is not valid.*chunk_max"):
            get_rung(rung, {"long_text": "chunks"})


# ------------------------------------------------------------------------------------------- study settings
def test_study_file_key_and_set_option_declare_it_for_the_frozen_rungs():
    s = parse_study_file('rungs = ["tfidf", "probe", "refit"]\nlong_text = "chunk_mean"\n')
    assert study_config(s).rung_params == {"probe": {"long_text": "chunk_mean"}, "refit": {"long_text": "chunk_mean"}}
    # A rung's own table beats the top-level key; truncate is dropped so the study id stays the plain one.
    s = parse_study_file('rungs = ["probe"]\nlong_text = "chunk_max"\n[rung.probe]\nlong_text = "truncate"\n')
    assert study_config(s).rung_params == {}
    plain = study_config(parse_study_file('rungs = ["tfidf", "probe"]\n'))
    same = study_config(parse_study_file('rungs = ["tfidf", "probe"]\nlong_text = "truncate"\n'))
    assert same.identity("fp32") == plain.identity("fp32")
    r = resolve_settings([parse_set_options(["rungs=probe", "probe.long_text=head_tail:32"])])
    assert r.rung_params == {"probe": {"long_text": "head_tail:32"}}
    with pytest.raises(ConfigError, match="line 2.*long_text='chunks' is not valid.*chunk_mean"):
        parse_study_file('rungs = ["probe"]\nlong_text = "chunks"\n', source="s.toml")
    with pytest.raises(ConfigError, match=r"configures the rungs that read texts that way \(probe, refit\), and none is in rungs"):
        study_config(parse_study_file('rungs = ["tfidf"]\nlong_text = "chunk_mean"\n'))


def _long_corpus():
    """Topic texts made long: each is its own words and then 150 filler words, so the topic is at the start."""
    ds = topic_corpus(60, noise=0.2)
    texts = [t + " " + _text(150, shift=i) for i, t in enumerate(ds.texts)]
    return TextDataset(texts, list(ds.labels))


def test_a_study_with_truncate_keeps_its_id_and_results_and_chunk_mean_adds_its_own(tmp_path, mlm_dir, monkeypatch):
    data = _long_corpus()
    base = dict(rungs=["probe"], seeds=2, n_boot=200, encoder=str(mlm_dir), encode_precision="fp32")
    plain = Study(StudyConfig(**base), home=tmp_path).run(data)
    same = Study(StudyConfig(**base, rung_params={"probe": {"long_text": "truncate"}}), home=tmp_path)
    # The configured truncate changes the stored config, never a result key: every cell is read back.
    monkeypatch.setattr(Encoder, "encode_ids", lambda *a, **k: pytest.fail("re-encoded despite the cache"))
    again = same.run(data)
    assert again.n_from_store == 2 and again.n_trained == 0 and again.study_id == plain.study_id
    assert [p["result_key"] for p in again.per_seed] == [p["result_key"] for p in plain.per_seed]
    monkeypatch.undo()
    chunked = Study(StudyConfig(**base, rung_params={"probe": {"long_text": "chunk_mean"}}), home=tmp_path).run(data)
    assert chunked.study_id != plain.study_id and chunked.n_trained == 2
    assert not set(p["result_key"] for p in chunked.per_seed) & set(p["result_key"] for p in plain.per_seed)
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    enc = Encoder.from_pretrained(mlm_dir, device="cpu")
    assert cache.count(enc.fingerprint) == len(data)  # the truncated vectors, as before
    assert cache.count(LongTextEncoder(enc, "chunk_mean").fingerprint) == len(data)
    # The study says it: the share longer than the window, by class, and how the probe read them.
    win = chunked.data["window"]
    assert win["window_tokens"] == 64 and win["share_longer"] == 1.0 and len(win["by_class"]) == 3
    assert chunked.data["long_text"] == {"probe": "chunk_mean"} and plain.data["long_text"] == {"probe": "truncate"}
    from adaptlab.evaluate.report import window_lines
    from adaptlab.report import build_report
    from adaptlab.store import RunStore

    assert "100.0% of the labeled texts are longer than the 64-token window" in window_lines(chunked)[0]
    assert "probe: chunk_mean" in window_lines(chunked)[0]
    html, md = build_report(RunStore(tmp_path / "runs.sqlite"), chunked.study_id, home=tmp_path).write(
        tmp_path / "r.html", tmp_path / "r.md")
    row = html.read_text().split('id="long-texts"', 1)[1].split("</tr>", 1)[0]
    assert "100.0% of the 60 labeled texts" in row and "probe: chunk_mean" in row
    assert "probe: chunk_mean" in md.read_text()


# ------------------------------------------------------------------------------------------- the CLI
runner = CliRunner()


def test_study_run_long_text_flag_errors_name_the_values(tmp_path):
    path = tmp_path / "d.csv"
    ds = topic_corpus(60)
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    r = runner.invoke(app, ["study", "run", "--data", str(path), "--rungs", "probe", "--long-text", "chunks",
                            "--home", str(tmp_path / "h")])
    assert r.exit_code != 0 and "'chunks' is not valid" in r.output and "chunk_mean" in r.output, r.output
    r = runner.invoke(app, ["study", "run", "--data", str(path), "--rungs", "tfidf", "--long-text", "chunk_mean",
                            "--home", str(tmp_path / "h"), "--json"])
    assert r.exit_code != 0 and "none is in rungs" in r.output, r.output


def test_study_run_long_text_flag_reaches_the_probe(tmp_path, mlm_dir):
    path = tmp_path / "d.csv"
    data = _long_corpus()
    pd.DataFrame({"text": data.texts, "label": data.labels}).to_csv(path, index=False)
    args = ["study", "run", "--data", str(path), "--rungs", "tfidf,probe", "--seeds", "1", "--encoder", str(mlm_dir),
            "--precision", "fp32", "--home", str(tmp_path / "h")]
    r = runner.invoke(app, args + ["--long-text", "head_tail", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["config"]["rung_params"] == {"probe": {"long_text": "head_tail"}}
    table = runner.invoke(app, args + ["--long-text", "head_tail"])
    assert table.exit_code == 0 and "probe" in table.output, table.output


def test_data_check_reports_texts_longer_than_the_window_by_class(tmp_path, mlm_dir):
    texts = ([_text(10, shift=i) for i in range(20)] + [_text(100, shift=i) for i in range(5)]
             + [_text(10, shift=20 + i) for i in range(15)])  # every text once: the file's checks pass
    labels = ["a"] * 20 + ["b"] * 20
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    r = runner.invoke(app, ["data", "check", "--data", str(path), "--encoder", str(mlm_dir), "--no-label-issues",
                            "--json"])
    assert r.exit_code == 0, r.output
    win = json.loads(r.stdout)["window"]
    assert win["window_tokens"] == 64 and win["n_longer"] == 5 and win["share_longer"] == 5 / 40
    assert {c["label"]: c["share_longer"] for c in win["by_class"]} == {"a": 0.0, "b": 0.25}
    assert win["windows_per_text"] > 1
    codes = [w["code"] for w in json.loads(r.stdout)["warnings"]]
    assert "longer_than_window" in codes
    table = runner.invoke(app, ["data", "check", "--data", str(path), "--encoder", str(mlm_dir), "--no-label-issues"])
    assert table.exit_code == 0, table.output
    assert "12.5% of the texts (5 of 40)" in table.output and "25.0%" in table.output
    assert "--long-text" in table.output
    short = tmp_path / "s.csv"
    pd.DataFrame({"text": [_text(10, shift=i) for i in range(40)], "label": labels}).to_csv(short, index=False)
    r = runner.invoke(app, ["data", "check", "--data", str(short), "--encoder", str(mlm_dir), "--no-label-issues",
                            "--json"])
    rep = json.loads(r.stdout)
    assert rep["window"]["n_longer"] == 0 and "longer_than_window" not in [w["code"] for w in rep["warnings"]]


def test_window_report_samples_above_max_rows(mlm_dir):
    texts = [_text(100 if i % 4 == 0 else 10) for i in range(400)]
    full = window_report(texts, ["x"] * 400, encoder=mlm_dir)
    part = window_report(texts, ["x"] * 400, encoder=mlm_dir, max_rows=100)
    assert full["share_longer"] == 0.25 and not full["sampled"]
    assert part["sampled"] and part["n"] == 100 and 0.1 < part["share_longer"] < 0.4


def test_every_strategy_reaches_the_frozen_rungs_and_one_window_ones_the_training_rungs():
    from adaptlab.studyfile import long_text_rungs

    trained = ("lora", "unfreeze", "finetune", "lpft")
    assert long_text_rungs(list(RUNGS), "chunk_mean") == [r for r in RUNGS if r in ("probe", "refit")]
    assert long_text_rungs(list(RUNGS), "head_tail:32") == [r for r in RUNGS if r in ("probe", "refit") + trained]
    s = parse_study_file('rungs = ["tfidf", "probe", "finetune"]\nlong_text = "head_tail"\n')
    assert study_config(s).rung_params == {"probe": {"long_text": "head_tail"}, "finetune": {"long_text": "head_tail"}}
    s = parse_study_file('rungs = ["tfidf", "probe", "finetune"]\nlong_text = "chunk_max"\n')
    assert study_config(s).rung_params == {"probe": {"long_text": "chunk_max"}}  # finetune keeps its first window
    with pytest.raises(ConfigError, match=r"configures the rungs that read texts that way \(probe, refit\), and none is in rungs"):
        study_config(parse_study_file('rungs = ["finetune"]\nlong_text = "chunk_mean"\n'))


@pytest.mark.parametrize("rung", ["lora", "unfreeze", "finetune", "lpft"])
def test_training_rungs_take_head_tail_in_their_key_and_refuse_chunks(rung):
    assert "long_text" not in get_rung(rung).config.identity_dict()  # results stored before keep their keys
    assert get_rung(rung, {"long_text": "head-tail:16"}).config.identity_dict()["long_text"] == "head_tail:16"
    with pytest.raises(ConfigError, match=f"{rung}.long_text='chunk_mean' is not valid.*probe, refit"):
        get_rung(rung, {"long_text": "chunk_mean"})


def test_head_tail_token_ids_keep_the_start_and_the_end_between_the_special_tokens(enc):
    from adaptlab.rungs.training import encode_texts

    long, short = _text(120), _text(10)
    content = enc.tokenizer([long], add_special_tokens=False)["input_ids"][0]
    cut = encode_texts(enc.tokenizer, [long, short], 64)
    ht = encode_texts(enc.tokenizer, [long, short], 64, "head_tail:16")
    cls, sep = cut[0][0], cut[0][-1]
    assert len(ht[0]) == 64 and ht[0][0] == cls and ht[0][-1] == sep
    assert ht[0][1:17] == content[:16] and ht[0][17:-1] == content[-46:]  # 16 head + 46 tail = 62 of text
    assert cut[0][1:-1] == content[:62]
    assert ht[1] == cut[1]  # a text that fits is read whole either way


def test_a_trained_model_reads_long_texts_as_it_was_trained_and_ships_that_way(enc):
    """The tail decides the class: head_tail sees it, and the shipped state keeps the strategy for predict."""
    from adaptlab.rungs.base import RungContext
    from adaptlab.rungs.training import load_network

    data = _long_corpus()
    tail_first = TextDataset([_text(150, shift=i) + " " + t.split(" " + _text(150, shift=i))[0]
                              for i, t in enumerate(data.texts)], list(data.labels))
    from adaptlab.config import Budget

    context = RungContext(classes=sorted(set(data.labels)), encoder=enc, budget=Budget.parse("6steps"))
    fitted = get_rung("finetune", {"long_text": "head_tail:8", "batch_size": 8}).fit(
        tail_first, tail_first, seed=0, context=context)
    assert fitted.long_text == "head_tail:8"

    class Kit:
        base_encoder, rung_config = enc, {}

        def encoder_reference(self, encoder, store=True):
            return {"name": encoder.name}

    state, tensors = fitted.export_artifact(Kit())
    assert state["long_text"] == "head_tail:8"
    loaded = load_network("finetune", enc, fitted.model.backbone, state, tensors, context.classes)
    assert loaded.long_text == "head_tail:8"
    texts = tail_first.texts[:6]
    np.testing.assert_allclose(loaded.predict_proba(texts), fitted.predict_proba(texts), atol=1e-5)
    fitted.long_text = "truncate"  # the same weights reading the first window only: other numbers
    assert not np.allclose(fitted.predict_proba(texts), loaded.predict_proba(texts), atol=1e-4)


def test_a_shipped_probe_keeps_its_long_text(enc):
    """The artifact state names the strategy (absent for truncate, as before) and the loaded model reads that way."""
    from adaptlab.rungs.base import RungContext
    from adaptlab.rungs.probe import load_frozen

    class Kit:  # what export/load ask of adaptlab.ship.artifact.ArtifactKit
        def encoder_reference(self, encoder, store=True):
            return {"fingerprint": encoder.fingerprint}

        def load_encoder(self, ref, frozen=True):
            assert ref["fingerprint"] == enc.fingerprint
            return enc

    data = _long_corpus()
    context = RungContext(classes=sorted(set(data.labels)), encoder=enc)
    for strategy in ("truncate", "chunk_max"):
        fitted = get_rung("probe", {"long_text": strategy, "C_grid": [1.0]}).fit(data, data, seed=0, context=context)
        state, tensors = fitted.export_artifact(Kit())
        assert state.get("long_text") == (None if strategy == "truncate" else strategy)
        assert state["encoder"]["fingerprint"] == enc.fingerprint  # the encoder itself, not a wrapper
        loaded = load_frozen("probe", state, tensors, context.classes, Kit())
        assert loaded.long_text == strategy
        np.testing.assert_allclose(loaded.predict_proba(data.texts[:5]), fitted.predict_proba(data.texts[:5]),
                                   atol=1e-5)
