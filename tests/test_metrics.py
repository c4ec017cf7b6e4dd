import numpy as np
import pytest
from sklearn.metrics import f1_score

from adaptlab.errors import ConfigError
from adaptlab.metrics import (
    bands_overlap,
    resolve_positive_label,
    score,
    seed_and_test_bootstrap,
    weighted_f1,
)


def test_positive_label_prefers_conventional_name_then_minority():
    assert resolve_positive_label(["0", "1"], ["1", "1", "0"]) == "1"
    assert resolve_positive_label(["irrelevant", "relevant"], ["irrelevant"] * 9 + ["relevant"]) == "relevant"
    assert resolve_positive_label(["a", "b"], ["a"] * 3 + ["b"]) == "b"
    assert resolve_positive_label(["a", "b", "c"], ["a", "b", "c"]) is None


def test_positive_label_must_be_a_class():
    with pytest.raises(ConfigError, match=r"positive_label='x' is not valid: expected one of \['a', 'b'\]"):
        resolve_positive_label(["a", "b"], ["a", "b"], "x")


def test_binary_scores_positive_f1_and_auprc():
    y = ["p", "n", "p", "n", "n"]
    pred = ["p", "n", "n", "n", "p"]
    proba = np.array([[0.1, 0.9], [0.8, 0.2], [0.6, 0.4], [0.9, 0.1], [0.3, 0.7]])
    s = score(y, pred, proba, ["n", "p"], "p")
    assert s["f1"] == pytest.approx(f1_score(y, pred, pos_label="p"))
    assert 0 < s["auprc"] <= 1
    assert s["macro_f1"] != s["f1"]


def test_multiclass_headline_is_macro_f1():
    y = ["a", "b", "c", "a"]
    pred = ["a", "b", "b", "a"]
    s = score(y, pred, None, ["a", "b", "c"], None)
    assert s["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert "auprc" not in s


def test_weighted_f1_with_unit_weights_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.choice(["a", "b", "c"], 200).astype(object)
    p = np.where(rng.random(200) < 0.7, y, rng.choice(["a", "b", "c"], 200)).astype(object)
    got = weighted_f1(np.ones((1, 200)), y, p, ["a", "b", "c"], None)[0]
    assert got == pytest.approx(f1_score(y, p, average="macro"))
    got_bin = weighted_f1(np.ones((1, 200)), y, p, ["a", "b", "c"], "a")[0]
    assert got_bin == pytest.approx(f1_score(y, p, labels=["a"], average="macro"))


def test_band_carries_test_sampling_noise_even_when_seeds_agree():
    # Identical predictions for every seed: seed std is 0, yet a 100-item test set is uncertain by points.
    rng = np.random.default_rng(1)
    y = rng.choice(["n", "p"], 100, p=[0.7, 0.3])
    pred = np.where(rng.random(100) < 0.8, y, np.where(y == "p", "n", "p"))
    lo, hi = seed_and_test_bootstrap(y, [pred] * 5, ["n", "p"], "p", n_boot=500)
    assert hi - lo > 0.05


def test_band_widens_with_seed_disagreement():
    rng = np.random.default_rng(2)
    y = rng.choice(["n", "p"], 400)
    good = np.where(rng.random(400) < 0.95, y, np.where(y == "p", "n", "p"))
    bad = np.where(rng.random(400) < 0.6, y, np.where(y == "p", "n", "p"))
    lo1, hi1 = seed_and_test_bootstrap(y, [good] * 4, ["n", "p"], "p", n_boot=500)
    lo2, hi2 = seed_and_test_bootstrap(y, [good, bad, good, bad], ["n", "p"], "p", n_boot=500)
    assert (hi2 - lo2) > 2 * (hi1 - lo1)


def test_bands_overlap():
    assert bands_overlap((0.7, 0.8), (0.79, 0.9))
    assert not bands_overlap((0.7, 0.8), (0.81, 0.9))
