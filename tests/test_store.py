import pytest

from adaptlab.store import RunStore, StoreError, content_key


def test_content_key_is_stable_and_order_independent_for_dicts():
    assert content_key({"a": 1, "b": 2}, 3) == content_key({"b": 2, "a": 1}, 3)
    assert content_key({"a": 1}, 3) != content_key({"a": 1}, 4)


def test_results_round_trip_and_survive_reopen(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    store.put_result("k", rung="probe", seed=2, metrics={"f1": 0.5}, predictions={"y": ["a"]}, manifest={"v": 1})
    again = RunStore(path).get_result("k")
    assert again["rung"] == "probe" and again["seed"] == 2 and again["predictions"] == {"y": ["a"]}
    assert RunStore(path).get_result("missing") is None


def test_study_lookup_by_prefix_name_and_latest(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    store.put_study("abc123", name="first", config={}, data_hash="h")
    store.set_summary("abc123", {"x": 1})
    store.put_study("def456", name="second", config={}, data_hash="h")
    assert store.get_study("abc")["name"] == "first"
    assert store.get_study("second")["study_id"] == "def456"
    assert store.get_study("latest")["study_id"] == "abc123"  # the only one with a summary
    with pytest.raises(StoreError, match="no study 'zzz'.*Known studies"):
        store.get_study("zzz")


def test_unwritable_store_gives_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open the run store.*--home"):
        RunStore(blocker / "runs.sqlite")
