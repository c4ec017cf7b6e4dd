"""The int8 encoding path: its own cache key, and the validation-F1 gate that accepts it or falls back."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch

import adaptlab.encoders.fast as fast_mod
from adaptlab.config import StudyConfig
from adaptlab.encoders import EmbeddingCache, embed
from adaptlab.encoders.cache import PrimedCache, embedding_key
from adaptlab.encoders.fast import INT8_METHOD, Int8Encoder, choose_precision
from adaptlab.errors import ConfigError
from adaptlab.evaluate import Study
from adaptlab.store import RunStore
from synthetic import topic_corpus

TEXTS = ["the market fell after the news", "cup final tonight", "new phone sales rise", "rates rise again"]


class _Collapsed(torch.nn.Module):
    """Every text gets the same token states: the worst possible 'quantisation'."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.config = model.config

    def forward(self, input_ids, attention_mask):
        from types import SimpleNamespace

        return SimpleNamespace(last_hidden_state=torch.ones(*input_ids.shape, self.config.hidden_size))


def degrade(model: torch.nn.Module) -> torch.nn.Module:
    """A 'quantizer' that ruins the model: all texts collapse onto one vector."""
    return _Collapsed(model)


def keep(model: torch.nn.Module) -> torch.nn.Module:
    """A 'quantizer' that changes nothing: the int8 path then scores exactly like fp32."""
    return copy.deepcopy(model)


def test_int8_vectors_have_their_own_cache_key_and_never_mix_with_fp32(tiny_encoder, tmp_path):
    fast = Int8Encoder(tiny_encoder)
    assert fast.fingerprint != tiny_encoder.fingerprint and fast.precision == "int8"
    assert embedding_key(fast) == f"{fast.fingerprint}@int8" and embedding_key(tiny_encoder) == tiny_encoder.fingerprint
    assert fast.info["precision"] == "int8" and fast.info["quantization"] == INT8_METHOD
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    X8 = embed(fast, TEXTS, cache=cache)
    X32 = embed(tiny_encoder, TEXTS, cache=cache)
    assert sorted(cache.fingerprints()) == sorted([embedding_key(fast), embedding_key(tiny_encoder)])
    assert np.array_equal(X32, tiny_encoder.encode(TEXTS)), "fp32 reads must never return int8 vectors"
    assert np.array_equal(embed(fast, TEXTS, cache=cache), X8)
    assert 0 < np.abs(X8 - X32).max() and (X8 * X32).sum(1).min() > 0.9  # close, not equal: really int8
    # A custom quantizer is another path again.
    assert Int8Encoder(tiny_encoder, quantizer=keep).fingerprint != fast.fingerprint


def test_int8_encoder_travels_as_its_base_and_quantises_to_the_same_vectors(tiny_encoder):
    fast = Int8Encoder(tiny_encoder)
    blob = pickle.dumps(fast)
    back = pickle.loads(blob)
    assert back.fingerprint == fast.fingerprint
    assert np.array_equal(back.encode(TEXTS), fast.encode(TEXTS))


def test_primed_cache_serves_handed_over_vectors_and_falls_through_to_disk(tiny_encoder, tmp_path):
    disk = EmbeddingCache(tmp_path / "embeddings.sqlite")
    embed(tiny_encoder, TEXTS[2:], cache=disk)
    from adaptlab.data.dataset import text_hash

    handed = np.full((2, tiny_encoder.dim), 7.0, dtype=np.float32)  # recognisable: not what the encoder gives
    primed = PrimedCache({embedding_key(tiny_encoder): ([text_hash(t) for t in TEXTS[:2]], handed)}, backing=disk)
    X = embed(tiny_encoder, TEXTS, cache=primed)
    assert np.array_equal(X[:2], handed) and np.array_equal(X[2:], tiny_encoder.encode(TEXTS[2:]))
    assert primed.last_stats.hits == 4


def test_gate_accepts_within_tolerance_and_falls_back_beyond_it(tiny_encoder):
    def scores(f32, f8):
        return lambda enc: f8 if getattr(enc, "precision", "fp32") == "int8" else f32

    used, choice = choose_precision(tiny_encoder, "int8", validation_f1=scores(0.900, 0.895), tolerance=0.005)
    assert choice.used == "int8" and used.precision == "int8" and not choice.fell_back
    assert "int8 accepted" in choice.message and "-0.50 points" in choice.message
    used, choice = choose_precision(tiny_encoder, "int8", validation_f1=scores(0.900, 0.8949), tolerance=0.005)
    assert choice.used == "fp32" and used is tiny_encoder and choice.fell_back
    assert "int8 rejected, falling back to fp32" in choice.message and "tolerance 0.50 points" in choice.message
    _, choice = choose_precision(tiny_encoder, "int8", validation_f1=scores(0.9, 0.9001), tolerance=0.0)
    assert choice.used == "int8", "an int8 path that scores higher is accepted even at tolerance 0"
    used, choice = choose_precision(tiny_encoder, "fp32", validation_f1=lambda e: pytest.fail("no gate for fp32"))
    assert used is tiny_encoder and choice.used == "fp32"


def test_precision_settings_are_validated():
    with pytest.raises(ConfigError, match="encode_precision='fp16'.*fp32, bf16, int8, auto"):
        StudyConfig(encode_precision="fp16")
    with pytest.raises(ConfigError, match="int8_tolerance=1.5"):
        StudyConfig(int8_tolerance=1.5)
    with pytest.raises(ConfigError, match="precision_tolerance=-0.1"):
        StudyConfig(precision_tolerance=-0.1)
    with pytest.raises(ConfigError, match="int8_tolerance=0.02.*precision_tolerance=0.01 is its new name"):
        StudyConfig(precision_tolerance=0.01, int8_tolerance=0.02)


@pytest.fixture
def corpus():
    return topic_corpus(150, seed=7, noise=0.5)


def study(home, enc, data, **cfg):
    return Study(StudyConfig(rungs=["tfidf", "probe"], seeds=2, n_boot=200, **cfg), home=home, encoder=enc).run(data)


def test_study_falls_back_to_fp32_when_int8_loses_f1_and_says_so(tiny_encoder, tmp_path, corpus, monkeypatch):
    base = study(tmp_path, tiny_encoder, corpus)
    monkeypatch.setattr(fast_mod, "quantize_dynamic_int8", degrade)
    msgs: list[str] = []
    res = Study(StudyConfig(rungs=["tfidf", "probe"], seeds=2, n_boot=200, encode_precision="int8",
                            int8_tolerance=0.0), home=tmp_path, encoder=tiny_encoder).run(corpus, progress=msgs.append)
    gate = res.data["encode_precision"]
    assert gate["requested"] == "int8" and gate["used"] == "fp32" and gate["fell_back"]
    assert gate["int8_f1"] < gate["fp32_f1"]
    assert any("int8 rejected" in m for m in msgs) and any("int8 rejected" in w for w in res.warnings)
    # The fallback is the fp32 study: the same results, read from the store rather than trained again.
    assert res.n_trained == 0 and res.row("probe")["f1_by_seed"] == base.row("probe")["f1_by_seed"]
    assert res.study_id != base.study_id


def test_study_uses_int8_within_tolerance_and_records_the_path(tiny_encoder, tmp_path, corpus, monkeypatch):
    base = study(tmp_path, tiny_encoder, corpus)
    monkeypatch.setattr(fast_mod, "quantize_dynamic_int8", keep)
    res = study(tmp_path, tiny_encoder, corpus, encode_precision="int8")
    gate = res.data["encode_precision"]
    assert gate["used"] == "int8" and gate["int8_f1"] == gate["fp32_f1"]
    # New embeddings, so new probe results (tfidf is read back); the numbers match fp32 because the
    # injected quantizer changes nothing.
    assert res.n_trained == 2 and res.n_from_store == 2
    assert res.row("probe")["f1_by_seed"] == base.row("probe")["f1_by_seed"]
    results = RunStore(tmp_path / "runs.sqlite").study_results(res.study_id)
    precisions = {r["rung"]: (r["manifest"]["encoder"] or {}).get("precision") for r in results}
    assert precisions == {"tfidf": None, "probe": "int8"}
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    assert any(fp.endswith("@int8") for fp in cache.fingerprints())


def test_study_gate_with_the_real_quantizer_follows_the_rule(tiny_encoder, tmp_path, corpus):
    res = study(tmp_path, tiny_encoder, corpus, encode_precision="int8", int8_tolerance=0.02)
    gate = res.data["encode_precision"]
    expected = "int8" if gate["fp32_f1"] - gate["int8_f1"] <= 0.02 + 1e-12 else "fp32"
    assert gate["used"] == expected and gate["method"] == INT8_METHOD
