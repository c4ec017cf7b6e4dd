"""Diagnostics: MMD (against a plain reference implementation), probe-gap verdict, domain shift,
study integration and the `adaptlab diagnose` CLI."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from adaptlab.diagnostics import (
    DEFAULT_REFERENCE, domain_shift, embedding_movement, median_bandwidth, mmd2_unbiased, mmd_test, probe_gap,
)
from adaptlab.errors import ConfigError
from synthetic import topic_corpus


# ------------------------------------------------------------------------------- reference implementation
def naive_mmd2(X, Y, sigma):
    """Unbiased MMD² written straight from the definition (Gretton et al. 2012, eq. 3), with loops."""
    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / (2 * sigma ** 2))

    m, n = len(X), len(Y)
    xx = sum(k(X[i], X[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(Y[i], Y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(X[i], Y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def naive_median_sigma(Z):
    d = [np.sqrt(np.sum((Z[i] - Z[j]) ** 2)) for i in range(len(Z)) for j in range(i + 1, len(Z))]
    return float(np.median(d))


def naive_permutation_p(X, Y, sigma, n_perm, seed):
    rng = np.random.default_rng(seed + 12345)  # its own permutations, not the library's
    Z, m = np.vstack([X, Y]), len(X)
    obs = naive_mmd2(X, Y, sigma)
    hits = 0
    for _ in range(n_perm):
        p = rng.permutation(len(Z))
        hits += naive_mmd2(Z[p[:m]], Z[p[m:]], sigma) >= obs
    return (1 + hits) / (1 + n_perm)


def test_mmd2_matches_the_definition_and_bandwidth_is_the_median_distance():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(25, 3)), rng.normal(size=(30, 3)) + 0.3
    sigma = naive_median_sigma(np.vstack([X, Y]))
    assert median_bandwidth(np.vstack([X, Y])) == pytest.approx(sigma, rel=1e-10)
    assert mmd2_unbiased(X, Y) == pytest.approx(naive_mmd2(X, Y, sigma), abs=1e-12)
    assert mmd2_unbiased(X, Y, bandwidth=0.7) == pytest.approx(naive_mmd2(X, Y, 0.7), abs=1e-12)
    res = mmd_test(X, Y, n_permutations=50, seed=3)
    assert res.mmd2 == pytest.approx(naive_mmd2(X, Y, sigma), abs=1e-12) and res.bandwidth == pytest.approx(sigma)


def test_permutation_p_values_agree_with_a_plain_loop_implementation():
    rng = np.random.default_rng(1)
    for shift, lo, hi in ((0.0, 0.05, 1.0), (1.0, 0.0, 0.02)):
        X, Y = rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + shift
        ours = mmd_test(X, Y, n_permutations=99, seed=0).p_value
        ref = naive_permutation_p(X, Y, naive_median_sigma(np.vstack([X, Y])), 99, 0)
        assert lo <= ours <= hi and lo <= ref <= hi
        assert abs(ours - ref) < 0.2  # two independent Monte Carlo estimates of the same p-value


def test_same_distribution_is_not_flagged_and_a_shifted_gaussian_is():
    rng = np.random.default_rng(2)
    p_same = [mmd_test(rng.normal(size=(150, 8)), rng.normal(size=(150, 8)), n_permutations=100, seed=s).p_value
              for s in range(20)]
    assert sum(p < 0.05 for p in p_same) <= 3  # a level-0.05 test: about 1 in 20 false alarms
    assert np.median(p_same) > 0.2
    shifted = mmd_test(rng.normal(size=(150, 8)), rng.normal(size=(150, 8)) + 0.4, n_permutations=200, seed=0)
    assert shifted.p_value < 0.01 and shifted.significant() and shifted.mmd2 > 0


def test_1000_vs_1000_with_200_permutations_is_fast_and_seeded():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(1000, 384)), rng.normal(size=(1000, 384))
    t0 = time.perf_counter()
    a = mmd_test(X, Y, n_permutations=200, seed=7)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, f"{elapsed:.2f}s"  # ~0.3-1 s on 2 cores; generous for a shared CI machine
    b = mmd_test(X, Y, n_permutations=200, seed=7)
    assert (a.mmd2, a.p_value) == (b.mmd2, b.p_value) and a.n_permutations == 200


def test_mmd_rejects_bad_input_with_a_clear_message():
    with pytest.raises(ConfigError, match="dimensions"):
        mmd_test(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ConfigError, match="NaN"):
        mmd_test(np.full((5, 2), np.nan), np.zeros((5, 2)))
    with pytest.raises(ConfigError, match="n_permutations"):
        mmd_test(np.zeros((5, 2)), np.ones((5, 2)), n_permutations=0)


# ------------------------------------------------------------------------------- probe gap
def rows(probe=(0.78, 0.77, 0.79), refit=(0.81, 0.80, 0.825), seeds=3):
    return [{"rung": "probe", "mean": probe[0], "ci_low": probe[1], "ci_high": probe[2], "n_seeds": seeds},
            {"rung": "refit", "mean": refit[0], "ci_low": refit[1], "ci_high": refit[2], "n_seeds": seeds}]


def test_probe_gap_ships_only_a_2_point_gap_with_separate_bands_over_3_seeds():
    v = probe_gap(rows(), n_refits=3)
    assert v.ship and v.gap_points == pytest.approx(3.0) and not v.bands_overlap
    assert v.sentence.startswith("Ship the refit encoder") and "+3.0 F1 points" in v.sentence
    small = probe_gap(rows(refit=(0.795, 0.792, 0.80)), n_refits=3)
    assert not small.ship and "below the 2-point bar" in small.sentence and "keep the frozen" in small.sentence
    overlap = probe_gap(rows(refit=(0.81, 0.76, 0.86)), n_refits=3)
    assert not overlap.ship and overlap.bands_overlap and "overlap" in overlap.sentence
    one_seed = probe_gap(rows(seeds=1), n_refits=1)
    assert not one_seed.ship and "not a measurement" in one_seed.sentence
    shared = probe_gap(rows(), n_refits=1)
    assert not shared.ship and "refit_per_seed=True" in shared.sentence
    assert probe_gap(rows(), n_refits=1, min_refit_seeds=1).ship
    assert json.loads(json.dumps(v.to_dict()))["gap_points"] == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="--rungs probe,refit"):
        probe_gap(rows()[:1])


# ------------------------------------------------------------------------------- shift and movement
class BagOfWords:
    """A transparent encoder: counts of topic words (texts about sport land far from texts about money)."""

    words = ["match", "goal", "team", "bank", "market", "price", "software", "phone", "data", "the", "said"]
    dim = len(words)

    def __init__(self, name="bow", scale=1.0):
        self.fingerprint, self.name, self.scale = name, name, scale

    def encode(self, texts, batch_size=32, show_progress=None):
        return np.array([[self.scale * t.lower().split().count(w) + 1.0 for w in self.words] for t in texts], dtype=np.float32)


def test_domain_shift_flags_another_domain_and_recommends_skipping_when_there_is_none():
    sport = topic_corpus(120, seed=1, classes=("sport",)).texts
    money = topic_corpus(120, seed=2, classes=("money",)).texts
    far = domain_shift(BagOfWords(), sport, money, reference_name="money news", n=100, n_permutations=100)
    assert far.shifted and far.mmd.p_value < 0.01 and "has something to learn" in far.recommendation
    near = domain_shift(BagOfWords(), sport[:60], topic_corpus(60, seed=9, classes=("sport",)).texts,
                        n=60, n_permutations=100)
    assert not near.shifted and "skip the domain refit" in near.recommendation
    default = domain_shift(BagOfWords(), sport, n=50, n_permutations=50)
    assert default.reference == DEFAULT_REFERENCE and "BBC" in default.reference and default.n_reference == 50
    assert default.shifted  # synthetic word soup is not news prose


def test_embedding_movement_says_skip_when_the_refit_did_not_move():
    texts = topic_corpus(80, seed=4).texts
    same = embedding_movement(BagOfWords("a"), BagOfWords("b"), texts, n=80, n_permutations=50)
    assert not same.moved and same.mean_cosine == pytest.approx(1.0) and "skip the refit" in same.recommendation
    moved = embedding_movement(BagOfWords("a"), BagOfWords("c", scale=3.0), texts, n=80, n_permutations=50)
    assert moved.moved and "moved the representation" in moved.recommendation
