"""Multi-label classification (issue #33): loading, checks, splits, metrics, the tfidf/probe rungs, and the
clear refusal of every single-label-only path."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from adaptlab.data import TextDataset, describe_split, load_dataset, split_dataset
from adaptlab.data.multilabel import detect_task, multilabel_summary, parse_label_sets
from adaptlab.errors import AdaptlabError, ConfigError, DataError
from adaptlab.metrics import (multilabel_replicates, multilabel_seed_and_test_bootstrap, score_multilabel,
                              weighted_multilabel_f1)
from adaptlab.rungs import RungContext, get_rung

LABELS = ["health", "politics", "sport", "tech"]


def _sets(n: int = 120, seed: int = 0) -> list[tuple[str, ...]]:
    rng = np.random.default_rng(seed)
    return [tuple(lab for lab in LABELS if rng.random() < 0.35) for _ in range(n)]


def _texts(sets) -> list[str]:
    # Each label brings its own words, so a linear model can learn every label.
    return [f"item {i} " + " ".join(f"{lab} {lab}ish" for lab in s) for i, s in enumerate(sets)]


@pytest.fixture
def ml_csv(tmp_path):
    sets = _sets()
    p = tmp_path / "ml.csv"
    pd.DataFrame({"text": _texts(sets), "label": ["|".join(s) for s in sets]}).to_csv(p, index=False)
    return p


@pytest.fixture
def ml_ds():
    sets = _sets()
    return TextDataset(_texts(sets), label_sets=sets)


# ------------------------------------------------------------------------------------------------ data


def test_separator_column_is_detected_and_said(ml_csv):
    ds, report = load_dataset(ml_csv, return_report=True)
    assert ds.task == "multilabel" and ds.labels is None
    assert ds.classes == LABELS
    assert report.task == "multilabel" and report.task_note.startswith("detected: label cells hold '|'-separated")
    assert "Task: multilabel (detected" in report.summary()


def test_json_lists_label_cols_and_custom_separator(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps({"text": f"t {i}", "label": lab}) for i, lab in
                           enumerate([["a", "b"], ["b"], [], ["a"]] * 2)) + "\n", encoding="utf-8")
    ds = load_dataset(p)
    assert ds.label_sets[:4] == [("a", "b"), ("b",), (), ("a",)]
    df = pd.DataFrame({"text": [f"t {i}" for i in range(6)], "a": [1, 0, 1, 0, 1, 1], "b": ["true", "1", "0", "no", "", "yes"]})
    ds2, rep = load_dataset(df, label_cols=["a", "b"], return_report=True)
    assert ds2.label_sets == [("a", "b"), ("b",), ("a",), (), ("a",), ("a", "b")]
    assert rep.columns["label"] == "a,b" and rep.task_note.startswith("one 0/1 column per label")
    df3 = pd.DataFrame({"text": ["x", "y", "z", "w"], "tags": ["a;b", "b", "a", "a;c"]})
    assert load_dataset(df3, label_col="tags", label_sep=";", task="multilabel").label_sets[0] == ("a", "b")


def test_label_cols_refuse_values_that_are_not_0_1():
    df = pd.DataFrame({"text": ["x", "y"], "a": [1, 2], "b": [0, 1]})
    with pytest.raises(DataError, match=r"label column 'a' holds 2 on row 2.*0/1"):
        load_dataset(df, label_cols=["a", "b"])
    with pytest.raises(ConfigError, match="task"):
        load_dataset(df, task="multi")


def test_single_label_is_unchanged_and_task_single_refuses_lists(tmp_path):
    df = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"]})
    ds, rep = load_dataset(df, return_report=True)
    assert ds.task == "single" and ds.labels == ["x", "y", "x", "y"] and rep.task_note == ""
    assert "task" not in rep.to_dict()  # single-label manifests stay as they were
    # The content hash (part of every study id) of single-label data does not move.
    assert ds.content_hash == TextDataset(["a", "b", "c", "d"], ["x", "y", "x", "y"]).content_hash
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "label": ["x", "y"]}\n{"text": "b", "label": ["y"]}\n', encoding="utf-8")
    with pytest.raises(DataError, match="holds list values.*drop --task single"):
        load_dataset(p, task="single")


def test_validation_lists_unlabeled_rows_rare_labels_and_pairs():
    ds = TextDataset([f"t {i}" for i in range(8)],
                     label_sets=[("a", "b"), ("a",), (), ("a", "b"), ("a",), ("b",), ("c",), ("a", "b")])
    s = multilabel_summary(ds, min_count=2)
    assert s["rows_without_label"] == {"n": 1, "rows": [3]}
    assert s["rare_labels"] == {"c": 1}
    assert s["cardinality"] == pytest.approx(10 / 8)
    assert s["pairs"][0] == {"labels": ["a", "b"], "rows": 3, "jaccard": 0.5}
    df = pd.DataFrame({"text": ds.texts, "label": ["|".join(x) for x in ds.label_sets]})
    _, rep = load_dataset(df, return_report=True)
    codes = {p.code: p for p in rep.warnings}
    assert codes["no_labels"].rows == [3] and "'c' (1)" in codes["rare_label"].message
    with pytest.raises(DataError, match="1 distinct label"):
        load_dataset(pd.DataFrame({"text": ["x", "y", "z"], "label": ["a|a", "a", "a"]}))


def test_parse_and_detect():
    assert parse_label_sets(['["b", "a"]', "a|b|a", None]) == [("a", "b"), ("a", "b"), ()]
    assert detect_task(["x", "y"]) == ("single", "one label per cell")


def test_data_check_cli_table_and_json(ml_csv):
    from adaptlab.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["data", "check", "--data", str(ml_csv)])
    assert res.exit_code == 0, res.output
    assert "multi-label (detected" in res.output and "4 labels" in res.output
    assert "rows without any label" in res.output and "most frequent label pairs" in res.output
    res = runner.invoke(app, ["data", "check", "--data", str(ml_csv), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["task"] == "multilabel" and report["multilabel"]["n_labels"] == 4
    assert report["task_note"].startswith("detected") and report["label_quality"] is None
    assert {"naive-split inflation"} <= set(report["not_yet"])


# ---------------------------------------------------------------------------------------------- splits


def test_iterative_stratification_keeps_label_shares_and_a_fixed_sealed_test(ml_ds):
    s0, s1 = split_dataset(ml_ds, seed=0), split_dataset(ml_ds, seed=1)
    assert s0.strategy == "stratified" and any("iterative stratification" in n for n in s0.notes)
    assert np.array_equal(s0.unseal_test("t"), s1.unseal_test("t"))  # seeds re-draw validation only
    assert not np.array_equal(s0.val, s1.val)
    Y = ml_ds.label_matrix()
    share_all = Y.mean(axis=0)
    for part in (s0.train, s0.unseal_test("t")):
        assert np.abs(Y[part].mean(axis=0) - share_all).max() < 0.06
    with pytest.raises(AdaptlabError, match="sealed"):
        _ = s0.test
    d = describe_split(s0, ml_ds)
    assert set(d["labels"]["train"]) == set(LABELS) and "test" not in d["labels"]


def test_group_split_keeps_groups_whole(ml_ds):
    ds = TextDataset(ml_ds.texts, groups=[str(i // 4) for i in range(len(ml_ds))], label_sets=ml_ds.label_sets)
    s = split_dataset(ds, strategy="group", seed=0)
    g = np.asarray(ds.groups)
    assert not set(g[s.train]) & set(g[s.unseal_test("t")])


# --------------------------------------------------------------------------------------------- metrics


def test_micro_macro_samples_agree_with_sklearn():
    rng = np.random.default_rng(3)
    Y, P = (rng.random((80, 5)) < 0.3).astype(int), (rng.random((80, 5)) < 0.3).astype(int)
    s = score_multilabel(Y, P, list("abcde"))
    assert s["micro_f1"] == pytest.approx(f1_score(Y, P, average="micro", zero_division=0))
    assert s["macro_f1"] == pytest.approx(f1_score(Y, P, average="macro", zero_division=0))
    assert s["samples_f1"] == pytest.approx(f1_score(Y, P, average="samples", zero_division=1))
    per = f1_score(Y, P, average=None, zero_division=0)
    assert list(s["per_label_f1"].values()) == pytest.approx(per, abs=1e-4)
    assert s["f1"] == s["micro_f1"] and score_multilabel(Y, P, list("abcde"), "macro_f1")["f1"] == s["macro_f1"]
    # Weights are item counts: duplicating rows equals weighting them.
    w = np.ones(80)
    w[:10] = 2
    dup = np.r_[np.arange(80), np.arange(10)]
    assert weighted_multilabel_f1(w[None, :], Y, P, "macro_f1")[0] == pytest.approx(
        f1_score(Y[dup], P[dup], average="macro", zero_division=0))


def test_bootstrap_bands_and_paired_comparison_work_on_multilabel():
    from adaptlab.decide.stats import paired_bootstrap

    rng = np.random.default_rng(0)
    Y = (rng.random((200, 4)) < 0.3).astype(int)
    good = [np.where(rng.random(Y.shape) < 0.9, Y, 1 - Y) for _ in range(3)]
    bad = [np.where(rng.random(Y.shape) < 0.6, Y, 1 - Y) for _ in range(3)]
    lo, hi = multilabel_seed_and_test_bootstrap(Y, good, "micro_f1", n_boot=300)
    point = np.mean([score_multilabel(Y, p, LABELS)["micro_f1"] for p in good])
    assert lo < point < hi
    rep_a = multilabel_replicates(Y, bad, "micro_f1", n_boot=300, seed=1)
    rep_b = multilabel_replicates(Y, good, "micro_f1", n_boot=300, seed=1)
    pa = np.array([score_multilabel(Y, p, LABELS)["micro_f1"] for p in bad])
    pb = np.array([score_multilabel(Y, p, LABELS)["micro_f1"] for p in good])
    res = paired_bootstrap(rep_a, rep_b, pa, pb, paired_seeds=True, alpha=0.05, seed=0)
    assert res.diff > 0 and res.ci_low > 0 and res.p_value < 0.05
    with pytest.raises(ConfigError, match="primary_metric"):
        score_multilabel(Y, Y, LABELS, "accuracy")


# ----------------------------------------------------------------------------------------------- rungs


def _fit(rung, ds, seed=0, **ctx):
    split = split_dataset(ds, seed=seed)
    tr, va = ds.subset(split.train), ds.subset(split.val)
    fitted = rung.fit(tr, va, seed=seed, context=RungContext(classes=ds.classes, **ctx))
    return fitted, split


def test_tfidf_one_vs_rest_with_validation_thresholds(ml_ds):
    fitted, split = _fit(get_rung("tfidf", {"min_df": 1}), ml_ds)
    assert fitted.task == "multilabel" and fitted.thresholds_.shape == (4,)
    assert ((fitted.thresholds_ > 0) & (fitted.thresholds_ < 1)).all()
    test = ml_ds.subset(split.unseal_test("score"))
    pred = fitted.predict(test.texts)
    assert pred.shape == (len(test), 4) and set(np.unique(pred)) <= {0, 1}
    assert score_multilabel(test.label_matrix(ml_ds.classes), pred, ml_ds.classes)["micro_f1"] > 0.8
    proba = fitted.predict_proba(test.texts)
    assert proba.shape == (len(test), 4) and np.array_equal(pred, (proba >= fitted.thresholds_).astype(np.int8))
    assert fitted.val_scores_["f1"] == fitted.val_scores_["micro_f1"]


def test_thresholds_never_read_the_sealed_test(ml_ds):
    """Poisoning every test label (the rung gets train and validation only) changes nothing it chose."""
    split = split_dataset(ml_ds, seed=0)
    test_pos = set(split.unseal_test("poison").tolist())
    poisoned = TextDataset(ml_ds.texts, label_sets=[(LABELS[0],) if i in test_pos else s
                                                    for i, s in enumerate(ml_ds.label_sets)])
    a = get_rung("tfidf", {"min_df": 1}).fit(ml_ds.subset(split.train), ml_ds.subset(split.val), seed=0,
                                              context=RungContext(classes=LABELS))
    b = get_rung("tfidf", {"min_df": 1}).fit(poisoned.subset(split.train), poisoned.subset(split.val), seed=0,
                                              context=RungContext(classes=LABELS))
    assert np.array_equal(a.thresholds_, b.thresholds_) and a.selected_ == b.selected_
    # ...while poisoning validation does move them: thresholds are chosen there.
    val_pos = set(split.val.tolist())
    pv = TextDataset(ml_ds.texts, label_sets=[tuple(LABELS) if i in val_pos else s
                                              for i, s in enumerate(ml_ds.label_sets)])
    c = get_rung("tfidf", {"min_df": 1}).fit(pv.subset(split.train), pv.subset(split.val), seed=0,
                                              context=RungContext(classes=LABELS))
    assert not np.array_equal(a.thresholds_, c.thresholds_)


def test_probe_multilabel_and_its_artifact_round_trip(ml_ds, tiny_encoder):
    from adaptlab.rungs.multilabel import export_multilabel_head, import_any_head

    fitted, split = _fit(get_rung("probe", {"C_grid": [1.0]}), ml_ds, encoder=tiny_encoder)
    assert fitted.task == "multilabel" and fitted.predict(ml_ds.texts[:3]).shape == (3, 4)
    state, tensors = export_multilabel_head(fitted.head)
    head = import_any_head(state, tensors)
    assert np.array_equal(head.thresholds_, fitted.thresholds_)
    X = fitted.embed(ml_ds.texts[:5])
    assert np.array_equal(head.predict(X), fitted.head.predict(X))


# ------------------------------------------------------------------- single-label paths refuse clearly


def test_unconverted_rungs_and_study_refuse_multilabel(ml_ds, tmp_path):
    from adaptlab.config import StudyConfig
    from adaptlab.evaluate import Study

    with pytest.raises(DataError, match=r"the finetune rung handles one label per text.*tfidf, probe"):
        get_rung("finetune").fit(ml_ds, ml_ds, seed=0, context=RungContext(classes=LABELS))
    with pytest.raises(DataError, match="a study .* handles one label per text, but this data is multi-label"):
        Study(StudyConfig(rungs=["tfidf"], seeds=1), home=tmp_path).run(ml_ds)
    with pytest.raises(DataError, match="multi-label"):
        _ = ml_ds.y


def test_shipping_and_retrain_refuse_multilabel(ml_ds, tmp_path):
    from adaptlab.ship.artifact import export_fitted, import_fitted
    from adaptlab.ship.pipeline import Pipeline
    from adaptlab.ship.retrain import retrain

    fitted, _ = _fit(get_rung("tfidf", {"min_df": 1}), ml_ds)
    with pytest.raises(DataError, match="shipping a multi-label model .* not available yet"):
        export_fitted(fitted, {}, blobs=None)
    state, tensors = fitted.export_artifact(None)
    with pytest.raises(DataError, match="multi-label head"):
        import_fitted("tfidf", state, tensors, LABELS, blobs=None, device="cpu")
    # An older shipped (single-label) model given a multi-label file: refused, not read as "no labels".
    from adaptlab.ship import ModelRegistry

    single = TextDataset([f"goal match {i}" for i in range(12)] + [f"chip server {i}" for i in range(12)],
                         ["sport"] * 12 + ["tech"] * 12)
    pipe = Pipeline(rung="tfidf", rung_params={"min_df": 1}).fit(single.texts, single.labels)
    reg = ModelRegistry.create(tmp_path / "model", pipe, train=single, eval_set=single)
    path = tmp_path / "new.csv"
    pd.DataFrame({"text": ml_ds.texts, "label": ["|".join(s) for s in ml_ds.label_sets]}).to_csv(path, index=False)
    for new in (path, ml_ds):
        with pytest.raises(DataError, match="retrain .* handles one label per text"):
            retrain(reg, new)
    with pytest.raises(ConfigError, match="2-D y is multi-label"):
        Pipeline(rung="tfidf").fit(ml_ds.texts, ml_ds.label_matrix())


def test_multilabel_cli_refusal_is_an_error_not_a_traceback(ml_csv, tmp_path):
    from adaptlab.cli import app

    res = CliRunner().invoke(app, ["study", "run", "--data", str(ml_csv), "--rungs", "tfidf", "--seeds", "1",
                                   "--home", str(tmp_path / "h")])
    assert res.exit_code != 0 and "multi-label" in res.output and "Traceback" not in res.output


def test_a_class_name_holding_the_separator_keeps_a_file_single_label():
    from adaptlab.data.multilabel import detect_task

    assert detect_task(["A|B", "C", "C", "D"])[0] == "single"  # "A" and "B" never stand alone
    assert "contain '|'" in detect_task(["A|B", "C", "C", "D"])[1]
    assert detect_task(["a|b", "a", "b", "c"])[0] == "multilabel"  # parts that are labels on their own
    assert detect_task(["x|y", "y|z", "x|z", "w"])[0] == "multilabel"  # most rows hold sets
