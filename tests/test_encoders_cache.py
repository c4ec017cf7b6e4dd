"""`EmbeddingCache` and `embed`: round trips, hits without encoding, deduplication, speed."""
from __future__ import annotations

import pickle
import sqlite3
import time
from unittest import mock

import numpy as np
import pytest

from adaptlab.data.dataset import text_hash
from adaptlab.encoders import EmbeddingCache, Encoder, embed
from adaptlab.errors import ConfigError
from tiny_models import build_tiny_encoder

TEXTS = ["rates rise again", "cup final tonight", "new phone sales", "a", "the market fell after the news"]


@pytest.fixture
def cache(tmp_path):
    with EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite") as c:
        yield c


def _hashes(n):
    return [text_hash(f"text {i}") for i in range(n)]


# ------------------------------------------------------------------ EmbeddingCache
def test_creates_parent_dirs_and_uses_wal(tmp_path):
    path = tmp_path / "a" / "b" / "embeddings.sqlite"
    c = EmbeddingCache(path)
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    c.close()


def test_round_trip_is_exact_and_float32(cache):
    rng = np.random.default_rng(0)
    M = rng.standard_normal((5, 7))  # float64 in: stored as float32
    hashes = _hashes(5)
    cache.put_many("fp", hashes, M)
    got = cache.get_many("fp", hashes)
    assert sorted(got) == sorted(hashes)
    for i, h in enumerate(hashes):
        assert got[h].dtype == np.float32 and got[h].shape == (7,)
        np.testing.assert_array_equal(got[h], M[i].astype(np.float32))


def test_misses_and_stats(cache):
    hashes = _hashes(4)
    cache.put_many("fp", hashes[:2], np.ones((2, 3), dtype=np.float32))
    got = cache.get_many("fp", hashes)
    assert set(got) == set(hashes[:2])
    assert (cache.last_stats.hits, cache.last_stats.misses) == (2, 2)
    cache.get_many("fp", hashes[:1])
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes) == (3, 2, 2)
    assert cache.stats.hit_rate == pytest.approx(0.6)
    cache.reset_stats()
    assert cache.stats.hits == 0


def test_fingerprints_are_separate_namespaces(cache):
    hashes = _hashes(3)
    cache.put_many("fp-a", hashes, np.zeros((3, 4)))
    cache.put_many("fp-b", hashes[:1], np.ones((1, 4)))
    assert cache.get_many("fp-c", hashes) == {}
    np.testing.assert_array_equal(cache.get_many("fp-b", hashes)[hashes[0]], np.ones(4))
    assert len(cache) == 4
    assert (cache.count("fp-a"), cache.count("fp-b"), cache.count("nope")) == (3, 1, 0)
    assert cache.fingerprints() == ["fp-a", "fp-b"]
    assert cache.clear("fp-a") == 3
    assert len(cache) == 1


def test_put_replaces_existing_rows(cache):
    h = _hashes(1)
    cache.put_many("fp", h, np.zeros((1, 2)))
    cache.put_many("fp", h, np.full((1, 2), 5.0))
    assert len(cache) == 1
    np.testing.assert_array_equal(cache.get_many("fp", h)[h[0]], [5.0, 5.0])


def test_many_keys_are_chunked_below_sqlite_parameter_limit(cache):
    hashes = _hashes(2500)
    M = np.arange(2500 * 3, dtype=np.float32).reshape(2500, 3)
    cache.put_many("fp", hashes, M)
    got = cache.get_many("fp", hashes + ["absent"])
    assert len(got) == 2500
    np.testing.assert_array_equal(np.vstack([got[h] for h in hashes]), M)


def test_persists_across_instances_and_pickles(tmp_path):
    path = tmp_path / "emb.sqlite"
    with EmbeddingCache(path) as c:
        c.put_many("fp", _hashes(2), np.eye(2))
    again = pickle.loads(pickle.dumps(EmbeddingCache(path)))
    assert again.count("fp") == 2


def test_put_many_shape_mismatch(cache):
    with pytest.raises(ConfigError, match="one row per hash"):
        cache.put_many("fp", _hashes(3), np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="one row per hash"):
        cache.put_many("fp", _hashes(3), np.zeros(3))


def test_folder_path_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="embeddings.sqlite"):
        EmbeddingCache(tmp_path)


def test_fetching_2000_vectors_is_fast(cache):
    hashes = _hashes(2000)
    cache.put_many("fp", hashes, np.random.default_rng(0).standard_normal((2000, 384)))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        got = cache.get_many("fp", hashes)
        best = min(best, time.perf_counter() - t0)
    assert len(got) == 2000
    assert best < 0.5, f"fetching 2,000 cached vectors took {best:.3f}s"  # typically ~5 ms


# ------------------------------------------------------------------ embed
def test_embed_without_cache_equals_encode(tiny_encoder):
    np.testing.assert_array_equal(embed(tiny_encoder, TEXTS), tiny_encoder.encode(TEXTS))
    assert embed(tiny_encoder, []).shape == (0, tiny_encoder.dim)


def test_second_call_is_served_from_cache_without_encoding(tiny_encoder, cache):
    first = embed(tiny_encoder, TEXTS, cache=cache, batch_size=2)
    assert cache.count(tiny_encoder.fingerprint) == len(TEXTS)
    with mock.patch.object(tiny_encoder, "encode", wraps=tiny_encoder.encode) as spy:
        second = embed(tiny_encoder, TEXTS, cache=cache)
        spy.assert_not_called()
    np.testing.assert_array_equal(first, second)
    assert cache.last_stats.hits == len(TEXTS) and cache.last_stats.misses == 0
    # A fresh process (new cache object, new encoder object on the same weights) hits too.
    other = Encoder.from_pretrained(tiny_encoder.path, device="cpu")
    with mock.patch.object(other, "encode") as spy:
        third = embed(other, list(reversed(TEXTS)), cache=EmbeddingCache(cache.path))
        spy.assert_not_called()
    np.testing.assert_array_equal(third, first[::-1])


def test_duplicates_are_encoded_once(tiny_encoder, cache):
    texts = ["b", "a", "b", "c", "a", "b"]
    with mock.patch.object(tiny_encoder, "encode", wraps=tiny_encoder.encode) as spy:
        X = embed(tiny_encoder, texts, cache=cache)
    spy.assert_called_once()
    assert spy.call_args.args[0] == ["b", "a", "c"]
    np.testing.assert_allclose(X, tiny_encoder.encode(texts), atol=1e-6)
    np.testing.assert_array_equal(X[0], X[2])  # duplicates share one vector
    assert cache.count() == 3
    with mock.patch.object(tiny_encoder, "encode", wraps=tiny_encoder.encode) as spy:
        embed(tiny_encoder, ["a", "a"])  # no cache: still deduplicated
    assert spy.call_args.args[0] == ["a"]


def test_only_misses_are_encoded(tiny_encoder, cache):
    embed(tiny_encoder, TEXTS[:3], cache=cache)
    with mock.patch.object(tiny_encoder, "encode", wraps=tiny_encoder.encode) as spy:
        X = embed(tiny_encoder, TEXTS, cache=cache, batch_size=7, show_progress=False)
    spy.assert_called_once_with(TEXTS[3:], batch_size=7, show_progress=False)
    np.testing.assert_allclose(X, tiny_encoder.encode(TEXTS), atol=1e-6)


def test_changed_weights_do_not_reuse_cached_vectors(tiny_encoder, cache, tmp_path):
    embed(tiny_encoder, TEXTS, cache=cache)
    other = Encoder.from_pretrained(build_tiny_encoder(tmp_path / "seed7", seed=7), device="cpu")
    with mock.patch.object(other, "encode", wraps=other.encode) as spy:
        X = embed(other, TEXTS, cache=cache)
    spy.assert_called_once()
    np.testing.assert_allclose(X, other.encode(TEXTS), atol=1e-6)
    assert cache.fingerprints() == sorted([tiny_encoder.fingerprint, other.fingerprint])


def test_embed_rejects_a_single_string(tiny_encoder):
    with pytest.raises(ConfigError, match="wrap it in a list"):
        embed(tiny_encoder, "one text")


def test_interrupted_embed_resumes_from_stored_chunks(tiny_encoder, cache, monkeypatch):
    import adaptlab.encoders.cache as cache_module

    monkeypatch.setattr(cache_module, "_WRITE_EVERY", 2)
    real_encode = tiny_encoder.encode
    calls = []

    def flaky_encode(texts, **kwargs):
        calls.append(list(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user stops the run during the second chunk
        return real_encode(texts, **kwargs)

    with mock.patch.object(tiny_encoder, "encode", side_effect=flaky_encode):
        with pytest.raises(KeyboardInterrupt):
            embed(tiny_encoder, TEXTS, cache=cache)
    assert cache.count(tiny_encoder.fingerprint) == 2  # the first chunk was kept
    with mock.patch.object(tiny_encoder, "encode", wraps=real_encode) as spy:
        X = embed(tiny_encoder, TEXTS, cache=cache, show_progress=True)
    assert [c.args[0] for c in spy.call_args_list] == [TEXTS[2:4], TEXTS[4:]]
    np.testing.assert_allclose(X, real_encode(TEXTS), atol=1e-6)


def test_the_module_examples_write_nothing_in_the_current_folder(tmp_path, monkeypatch):
    """`pytest --doctest-modules` runs them from the checkout: their cache files go to a temp folder."""
    import doctest

    import adaptlab.encoders.cache as module

    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0
    assert list(tmp_path.iterdir()) == []
