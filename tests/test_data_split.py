"""split_dataset: guarantees per strategy, sealed test, seeds, leakage report, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptlab.data import (
    LeakageReport,
    Split,
    TextDataset,
    describe_split,
    find_near_duplicates,
    split_dataset,
)
from adaptlab.errors import ConfigError, DataError, SealedTestError

VOCAB = [f"w{i}" for i in range(5000)]


def random_texts(n: int, seed: int = 0, words: int = 40) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(VOCAB, size=words)) for _ in range(n)]


def make_ds(n=100, n_classes=2, seed=0, groups=None, timestamps=None, texts=None) -> TextDataset:
    rng = np.random.default_rng(seed + 1000)
    labels = [f"c{k}" for k in rng.integers(0, n_classes, size=n)]
    for k in range(n_classes):  # every class at least twice
        labels[2 * k] = labels[2 * k + 1] = f"c{k}"
    return TextDataset(
        texts=texts if texts is not None else random_texts(n, seed),
        labels=labels,
        groups=groups,
        timestamps=timestamps,
    )


def parts(split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return split.train, split.val, split.unseal_test("test")


def assert_partition(split: Split, n: int) -> None:
    train, val, test = parts(split)
    assert len(train) and len(val) and len(test)
    all_idx = np.concatenate([train, val, test])
    assert len(all_idx) == n and set(all_idx.tolist()) == set(range(n))


def edit(text: str, k: int) -> str:
    w = text.split()
    w[len(w) // 2] = f"edited{k}"
    return " ".join(w)


def with_planted_duplicates(n=200, n_exact=15, n_near=15, seed=0) -> tuple[TextDataset, list[tuple[int, int]]]:
    """Random texts plus exact copies (case/punctuation changed) and one-word edits of earlier texts."""
    base = random_texts(n, seed, words=60)
    texts = list(base)
    pairs = []
    for k in range(n_exact):
        texts.append(base[k].upper() + ".")
        pairs.append((k, len(texts) - 1))
    for k in range(n_exact, n_exact + n_near):
        texts.append(edit(base[k], k))
        pairs.append((k, len(texts) - 1))
    ds = make_ds(len(texts), n_classes=2, seed=seed, texts=texts)
    for a, b in pairs:  # copies keep their label, as in real data
        ds.labels[b] = ds.labels[a]
    return ds, pairs


# --------------------------------------------------------------------------------------- sealing


def test_test_split_is_sealed_and_reads_are_audited():
    split = split_dataset(make_ds(), strategy="stratified")
    with pytest.raises(SealedTestError) as e:
        split.test
    assert str(e.value) == (
        "the test split is sealed: tuning code must use validation; evaluation reads it through "
        "Split.unseal_test(purpose)"
    )
    assert split.n_test == 20 and split.test_reads == []
    test = split.unseal_test("final evaluation")
    assert len(test) == 20 and split.test_reads == ["final evaluation"]
    split.unseal_test("leakage ablation")
    assert split.test_reads == ["final evaluation", "leakage ablation"]
    with pytest.raises(ConfigError, match="purpose"):
        split.unseal_test("  ")
    assert "sealed" in repr(split) and str(test[0]) not in repr(split).split("fingerprint")[0]


def test_unsealed_indices_are_a_copy_and_train_is_read_only():
    split = split_dataset(make_ds(), strategy="stratified")
    test = split.unseal_test("x")
    test[:] = 0
    assert not np.array_equal(split.unseal_test("y"), test)
    with pytest.raises(ValueError):
        split.train[0] = 5


# --------------------------------------------------------------------------------------- sizes


def test_sizes_and_stratification():
    data = make_ds(1000, n_classes=3)
    split = split_dataset(data, strategy="stratified")
    assert_partition(split, 1000)
    assert split.n_test == 200 and split.n_val == 160 and split.n_train == 640
    y = np.asarray(data.labels)
    overall = {c: np.mean(y == c) for c in data.classes}
    for idx in parts(split):
        for c in data.classes:
            assert abs(np.mean(y[idx] == c) - overall[c]) < 0.02


def test_every_class_keeps_a_training_example():
    data = make_ds(40, n_classes=10)  # classes with 2-4 examples
    split = split_dataset(data, strategy="stratified", test_size=0.5, val_size=0.5)
    assert set(np.asarray(data.labels)[split.train]) == set(data.classes)


# --------------------------------------------------------------------------------------- seeds


def test_same_arguments_give_identical_split():
    data, _ = with_planted_duplicates()
    a = split_dataset(data, seed=3, test_seed=4)
    b = split_dataset(data, seed=3, test_seed=4)
    for x, y in zip(parts(a), parts(b)):
        assert np.array_equal(x, y)
    assert a.fingerprint == b.fingerprint


@pytest.mark.parametrize("strategy", ["stratified", "near-dup", "group"])
def test_seed_redraws_validation_but_keeps_test(strategy):
    groups = [f"g{i % 60}" for i in range(300)]
    data = make_ds(300, groups=groups)
    splits = [split_dataset(data, strategy=strategy, seed=s, test_seed=0) for s in range(4)]
    tests = [s.unseal_test("compare") for s in splits]
    assert all(np.array_equal(tests[0], t) for t in tests[1:])
    vals = {tuple(s.val.tolist()) for s in splits}
    assert len(vals) == 4, "every seed draws a different validation set"
    assert len({s.fingerprint for s in splits}) == 4
    other = split_dataset(data, strategy=strategy, seed=0, test_seed=1)
    assert not np.array_equal(other.unseal_test("compare"), tests[0])


def test_test_set_does_not_depend_on_val_size():
    data = make_ds(200)
    a = split_dataset(data, strategy="stratified", val_size=0.1)
    b = split_dataset(data, strategy="stratified", val_size=0.3)
    assert np.array_equal(a.unseal_test("x"), b.unseal_test("x"))


# --------------------------------------------------------------------------------------- group


def test_group_split_keeps_groups_whole():
    rng = np.random.default_rng(0)
    groups = [f"author{k}" for k in rng.integers(0, 40, size=400)]
    data = make_ds(400, n_classes=3, groups=groups)
    split = split_dataset(data, strategy="group", seed=1)
    assert_partition(split, 400)
    g = np.asarray(groups)
    train, val, test = parts(split)
    assert not set(g[train]) & set(g[val])
    assert not set(g[train]) & set(g[test])
    assert not set(g[val]) & set(g[test])
    assert split.leakage.n_groups_crossing == 0
    assert 0.1 < len(test) / 400 < 0.3


def test_auto_uses_groups_when_present():
    data = make_ds(60, groups=[f"g{i % 10}" for i in range(60)])
    split = split_dataset(data)
    assert split.strategy == "group" and split.requested_strategy == "auto"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(12, 80),
    n_groups=st.integers(3, 20),
    n_classes=st.integers(2, 4),
    test_size=st.floats(0.05, 0.6),
    val_size=st.floats(0.05, 0.6),
    seed=st.integers(0, 2**16),
    test_seed=st.integers(0, 2**16),
)
def test_group_split_properties(n, n_groups, n_classes, test_size, val_size, seed, test_seed):
    rng = np.random.default_rng(seed)
    groups = [f"g{k}" for k in rng.integers(0, n_groups, size=n)]
    groups[:3] = ["g0", "g1", "g2"]  # at least 3 distinct groups
    data = make_ds(n, n_classes=n_classes, seed=seed, groups=groups,
                   texts=[f"text {i}" for i in range(n)])
    try:
        split = split_dataset(data, strategy="group", test_size=test_size, val_size=val_size,
                              seed=seed, test_seed=test_seed, clusters=find_near_duplicates(data.texts))
    except DataError as e:  # allowed only when every split has a single class in training
        assert "single class" in str(e)
        return
    assert_partition(split, n)
    g = np.asarray(groups)
    train, val, test = parts(split)
    assert not set(g[train]) & set(g[val]) and not set(g[train]) & set(g[test]) and not set(g[val]) & set(g[test])
    again = split_dataset(data, strategy="group", test_size=test_size, val_size=val_size,
                          seed=seed, test_seed=test_seed)
    assert again.fingerprint == split.fingerprint


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(10, 120),
    n_classes=st.integers(2, 5),
    test_size=st.floats(0.05, 0.5),
    val_size=st.floats(0.05, 0.5),
    seed=st.integers(0, 1000),
)
def test_stratified_split_properties(n, n_classes, test_size, val_size, seed):
    data = make_ds(n, n_classes=min(n_classes, n // 2), seed=seed, texts=[f"t{i}" for i in range(n)])
    split = split_dataset(data, strategy="stratified", test_size=test_size, val_size=val_size, seed=seed)
    assert_partition(split, n)
    assert abs(split.n_test - test_size * n) <= 1.5  # sizes follow the request closely
    in_train = set(np.asarray(data.labels)[split.train].tolist())
    if min(data.label_counts().values()) >= 3:
        assert in_train == set(data.classes)
    else:  # with 2 examples a class may end up in test and validation; the split says so
        missing = set(data.classes) - in_train
        assert not missing or any(all(repr(c) in note for c in missing) for note in split.notes)


def test_class_missing_from_training_is_noted():
    data = make_ds(10, n_classes=5, texts=[f"t{i}" for i in range(10)])  # 2 examples per class
    split = split_dataset(data, strategy="stratified", test_size=0.5, val_size=0.1)
    # test takes one example of each class, validation must take one of the 5 left
    missing = set(data.classes) - set(np.asarray(data.labels)[split.train].tolist())
    assert len(missing) == 1
    assert split.notes == [f"class(es) {missing.pop()!r} have no training example in this split"]


# --------------------------------------------------------------------------------------- near-dup


def test_near_dup_split_keeps_clusters_whole_and_has_no_leakage():
    data, pairs = with_planted_duplicates()
    split = split_dataset(data, strategy="near-dup")
    assert_partition(split, len(data))
    side = np.empty(len(data), dtype=int)
    for k, idx in enumerate(parts(split)):
        side[idx] = k
    assert all(side[a] == side[b] for a, b in pairs)
    report = split.leakage
    assert report.n_test_exact_dup == 0 and report.n_test_near_dup == 0 and report.n_clusters_crossing == 0
    assert not report.test_leaked.any() and not report.has_leakage
    assert "No leakage found" in report.summary()


def test_auto_picks_near_dup_when_clusters_exist_and_stratified_otherwise():
    planted, _ = with_planted_duplicates()
    assert split_dataset(planted).strategy == "near-dup"
    clean = make_ds(200)
    split = split_dataset(clean)
    assert split.strategy == "stratified" and split.requested_strategy == "auto"


def test_precomputed_clusters_are_used():
    data, pairs = with_planted_duplicates()
    clusters = find_near_duplicates(data.texts)
    a = split_dataset(data, clusters=clusters)
    b = split_dataset(data)
    assert a.fingerprint == b.fingerprint
    with pytest.raises(ConfigError, match="clusters="):
        split_dataset(data, clusters=find_near_duplicates(data.texts[:-1]))


# --------------------------------------------------------------------------------------- leakage


def test_leakage_report_finds_planted_exact_and_near_duplicates():
    data, pairs = with_planted_duplicates(n=200, n_exact=30, n_near=30)
    split = split_dataset(data, strategy="stratified", seed=0, test_seed=0)
    test = split.unseal_test("check leakage")
    train, val = split.train, split.val
    pool = set(train.tolist()) | set(val.tolist())
    partner = {}
    for a, b in pairs:
        partner.setdefault(a, []).append(b)
        partner.setdefault(b, []).append(a)
    exact_pairs = set(map(frozenset, pairs[:30]))
    expected_leaked = [i for i in test if any(j in pool for j in partner.get(int(i), []))]
    expected_exact = [i for i in test if any(j in pool and frozenset((int(i), j)) in exact_pairs
                                             for j in partner.get(int(i), []))]
    report = split.leakage
    assert len(expected_leaked) > 0 and len(expected_exact) > 0  # the random draw did plant leaks
    assert report.n_test_exact_dup == len(expected_exact)
    assert report.n_test_near_dup == len(expected_leaked)
    assert test[report.test_leaked].tolist() == expected_leaked
    assert test[report.test_leaked_positions(test)].tolist() == expected_leaked
    with pytest.raises(ConfigError, match="test_indices="):
        report.test_leaked_positions(test[:-1])
    assert report.n_test_leaked == len(expected_leaked)
    side = np.empty(len(data), dtype=int)
    side[train], side[val], side[test] = 0, 1, 2
    crossing = sum(1 for a, b in pairs if side[a] != side[b])
    assert report.n_clusters_crossing == crossing
    # Examples point at source rows of a real test/pool pair.
    t_row, p_row = report.exact_dup_examples[0]
    assert frozenset((t_row - 1, p_row - 1)) in exact_pairs
    summary = report.summary()
    assert f"{report.n_test_leaked} of {split.n_test} test items" in summary
    assert "inflated" in summary
    d = json.loads(json.dumps(report.to_dict()))
    assert d["test_leaked_positions"] == np.flatnonzero(report.test_leaked).tolist()


def test_leakage_counts_validation_copies_of_training_items():
    base = random_texts(100, seed=3)
    texts = base + base[:40]  # 40 exact copies
    data = make_ds(140, texts=texts)
    for k in range(40):
        data.labels[100 + k] = data.labels[k]
    split = split_dataset(data, strategy="stratified")
    train, val = set(split.train.tolist()), set(split.val.tolist())
    expected = sum(1 for k in range(40) if (k in val and 100 + k in train) or (100 + k in val and k in train))
    assert split.leakage.n_val_exact_dup == expected > 0


def test_leakage_report_is_computed_for_time_splits_too():
    data, _ = with_planted_duplicates()
    n = len(data)
    data.timestamps = np.arange(n).astype("datetime64[D]").astype("datetime64[ns]")
    split = split_dataset(data, strategy="time")
    assert isinstance(split.leakage, LeakageReport)
    assert split.leakage.n_test == split.n_test and split.leakage.test_leaked.shape == (split.n_test,)


# --------------------------------------------------------------------------------------- time


def test_time_split_orders_train_val_test():
    rng = np.random.default_rng(0)
    n = 250
    days = rng.integers(0, 60, size=n)  # many ties
    ts = (np.datetime64("2024-01-01") + days.astype("timedelta64[D]")).astype("datetime64[ns]")
    data = make_ds(n, timestamps=ts)
    split = split_dataset(data, strategy="time", test_size=0.2, val_size=0.25)
    assert_partition(split, n)
    train, val, test = parts(split)
    assert ts[train].max() <= ts[val].min()
    assert max(ts[train].max(), ts[val].max()) <= ts[test].min()
    assert len(test) == 50 and len(val) == 50
    again = split_dataset(data, strategy="time", test_size=0.2, val_size=0.25, seed=9, test_seed=9)
    assert np.array_equal(again.val, split.val) and np.array_equal(again.unseal_test("x"), test)
    assert any("seed and test_seed do not change it" in note for note in split.notes)


def test_time_split_rejects_missing_timestamps():
    ts = np.array(["2024-01-01", "NaT", "2024-01-03", "2024-01-04"] * 5, dtype="datetime64[ns]")
    with pytest.raises(DataError, match=r"needs a timestamp on every item; 5 are missing.*rows 2, 6"):
        split_dataset(make_ds(20, timestamps=ts), strategy="time")


# --------------------------------------------------------------------------------------- given test


def test_given_test_indices_are_the_test_set():
    train_part = make_ds(80, seed=1)
    test_part = make_ds(20, seed=2)
    data = TextDataset.concat([train_part, test_part])
    test_idx = list(range(80, 100))
    splits = [split_dataset(data, test_indices=test_idx, seed=s) for s in range(3)]
    for s in splits:
        assert s.unseal_test("x").tolist() == test_idx
        assert set(s.train.tolist()) | set(s.val.tolist()) == set(range(80))
        assert s.test_size is None
    assert len({tuple(s.val.tolist()) for s in splits}) == 3


def test_given_test_indices_with_time_and_group_strategies():
    n = 60
    ts = (np.datetime64("2024-01-01") + np.arange(n).astype("timedelta64[D]")).astype("datetime64[ns]")
    groups = [f"g{i // 5}" for i in range(n)]
    data = make_ds(n, timestamps=ts, groups=groups)
    split = split_dataset(data, strategy="time", test_indices=[0, 1, 2])
    assert split.unseal_test("x").tolist() == [0, 1, 2] and split.val.min() > split.train.max()
    split = split_dataset(data, strategy="group", test_indices=[0, 1])  # cuts group g0 in two
    assert split.leakage.n_groups_crossing == 1


@pytest.mark.parametrize(
    "bad, match",
    [([], "test_indices="), ([0, 0, 1], "repeated"), ([0, 100], "positions in"), ([0.5], "integer"),
     ([[0, 1]], "1-D")],
)
def test_bad_test_indices(bad, match):
    with pytest.raises(ConfigError, match=match):
        split_dataset(make_ds(50), test_indices=bad)


def test_given_test_indices_leaving_no_pool():
    with pytest.raises(DataError, match="train and validation need at least one each"):
        split_dataset(make_ds(10), test_indices=list(range(9)))


# --------------------------------------------------------------------------------------- errors


def test_bad_strategy():
    with pytest.raises(ConfigError) as e:
        split_dataset(make_ds(), strategy="random")
    assert str(e.value) == (
        "strategy='random' is not valid: expected one of 'auto', 'stratified', 'group', 'near-dup', 'time'."
    )


@pytest.mark.parametrize("name", ["test_size", "val_size"])
@pytest.mark.parametrize("value", [0, 1, -0.1, 1.5, True, "0.2", None])
def test_bad_sizes(name, value):
    with pytest.raises(ConfigError, match=f"{name}=.* is not valid: expected a fraction strictly between 0 and 1"):
        split_dataset(make_ds(), **{name: value})


@pytest.mark.parametrize("name, value", [("seed", -1), ("test_seed", 1.5), ("seed", "1")])
def test_bad_seeds(name, value):
    with pytest.raises(ConfigError, match=f"{name}=.*non-negative integer"):
        split_dataset(make_ds(), **{name: value})


def test_group_strategy_without_groups():
    with pytest.raises(ConfigError) as e:
        split_dataset(make_ds(), strategy="group")
    msg = str(e.value)
    assert msg.startswith("strategy='group' is not valid") and "no groups" in msg and "--group-col" in msg


def test_time_strategy_without_timestamps():
    with pytest.raises(ConfigError) as e:
        split_dataset(make_ds(), strategy="time")
    msg = str(e.value)
    assert msg.startswith("strategy='time' is not valid") and "no timestamps" in msg and "--time-col" in msg


def test_unlabeled_dataset_cannot_be_split():
    with pytest.raises(DataError, match="needs a labeled dataset.*label_col=NAME"):
        split_dataset(TextDataset(texts=random_texts(20)))


def test_missing_labels_cannot_be_split():
    data = make_ds(20)
    data.labels[5] = None
    with pytest.raises(DataError, match=r"1 item\(s\) have no label \(rows 6\)"):
        split_dataset(data)


def test_too_few_groups():
    data = make_ds(30, groups=["a", "b"] * 15)
    with pytest.raises(DataError, match="needs at least 3 distinct groups.*has 2"):
        split_dataset(data, strategy="group")


def test_too_few_near_dup_clusters():
    data = make_ds(12, texts=["the same text"] * 6 + ["another one"] * 6)
    with pytest.raises(DataError, match="needs at least 3 distinct near-duplicate clusters"):
        split_dataset(data, strategy="near-dup")


def test_too_few_items():
    with pytest.raises(DataError, match="at least 3 items.*has 2"):
        split_dataset(make_ds(2, n_classes=1), strategy="stratified")


def test_bad_near_dup_threshold():
    with pytest.raises(ConfigError, match="near_dup_threshold=2"):
        split_dataset(make_ds(), near_dup_threshold=2)


# --------------------------------------------------------------------------------------- describe


def test_describe_split_hides_test_labels_unless_asked():
    data = make_ds(100, n_classes=2)
    split = split_dataset(data, strategy="stratified")
    d = describe_split(split, data)
    assert d["sizes"] == {"train": split.n_train, "val": split.n_val, "test": split.n_test}
    assert sum(d["labels"]["train"].values()) == split.n_train
    assert "test" not in d["labels"] and split.test_reads == []
    d = describe_split(split, data, include_test_labels=True)
    assert sum(d["labels"]["test"].values()) == split.n_test
    assert split.test_reads == ["describe_split"]
    json.dumps(d)
    assert json.loads(json.dumps(split.to_dict()))["n_test"] == split.n_test


def test_rejects_non_dataset():
    with pytest.raises(ConfigError, match="dataset='<list>' is not valid: expected a TextDataset"):
        split_dataset(["a", "b", "c"])
