"""Likely label errors (confident learning on out-of-fold TF-IDF probabilities) and `adaptlab data check`."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.data import TextDataset, check_labels, load_dataset, out_of_fold_probabilities
from adaptlab.errors import ConfigError
from synthetic import topic_corpus

runner = CliRunner()
OTHER = {"sport": ("tech", "money"), "tech": ("money", "sport"), "money": ("sport", "tech")}


def flipped(n: int, rate: float, seed: int) -> tuple[TextDataset, set[int]]:
    """``topic_corpus`` with ``rate`` of its labels moved to another class (known positions)."""
    ds = topic_corpus(n, seed=seed)
    rng = np.random.default_rng(seed)
    flips = set(rng.choice(n, int(round(rate * n)), replace=False).tolist())
    labels = [OTHER[lab][int(rng.integers(2))] if i in flips else lab for i, lab in enumerate(ds.labels)]
    return TextDataset(texts=ds.texts, labels=labels, source="flipped"), flips


def flat(s: str) -> str:
    return " ".join(s.split())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flipped_labels_are_found_with_precision_and_recall_far_above_chance(seed):
    ds, flips = flipped(300, 0.10, seed)
    issues = check_labels(ds)
    found = set(issues.flagged_indices)
    precision, recall = len(found & flips) / len(found), len(found & flips) / len(flips)
    assert precision >= 0.6 and recall >= 0.6, (precision, recall)  # chance precision is 0.10
    # Ranked by self-confidence: the out-of-fold probability of the given label rises down the list.
    scores = [r.score for r in issues.rows]
    assert scores == sorted(scores) and all(0 <= s <= 1 for s in scores)
    top = issues.rows[0]
    assert top.given != top.suggested and top.suggested_probability > top.score
    assert top.row == top.index + 1 and top.text == ds.texts[top.index]


@pytest.mark.parametrize("rate", [0.10, 0.20])
def test_the_estimated_noise_rate_is_near_the_flip_rate(rate):
    ds, _ = flipped(300, rate, 0)
    issues = check_labels(ds)
    assert abs(issues.noise_rate - rate) <= 0.07, issues.noise_rate
    assert set(issues.per_class) == {"money", "sport", "tech"}
    assert sum(v["n"] for v in issues.per_class.values()) == 300
    assert all(0 <= v["noise_rate"] <= 0.5 for v in issues.per_class.values())
    weighted = sum(v["noise_rate"] * v["n"] for v in issues.per_class.values()) / 300
    assert issues.noise_rate == pytest.approx(weighted)
    assert sum(v["flagged"] for v in issues.per_class.values()) == issues.n_flagged


def test_clean_labels_give_a_low_noise_rate_and_few_flags():
    issues = check_labels(topic_corpus(300, seed=3))
    assert issues.noise_rate < 0.05 and issues.n_flagged <= 10
    assert "cleanlab 2.9.0" in issues.method and "5-fold" in issues.method and issues.n_folds == 5


def test_wrapping_cleanlab_gives_its_own_flags_on_the_same_probabilities():
    from cleanlab.filter import find_label_issues

    ds, _ = flipped(200, 0.15, 4)
    proba, classes, k, _ = out_of_fold_probabilities(ds)
    y = np.asarray([classes.index(c) for c in ds.labels])
    theirs = find_label_issues(y, proba, return_indices_ranked_by="self_confidence")
    ours = check_labels(ds, probabilities=proba)
    assert ours.flagged_indices == theirs.tolist()
    assert "given by the caller" in ours.method
    # The default path computes exactly these probabilities (same folds and seed).
    assert check_labels(ds).flagged_indices == theirs.tolist()


def test_features_replace_tfidf_and_are_named_in_the_method():
    ds, flips = flipped(240, 0.10, 5)
    vocab = sorted({w for t in ds.texts for w in t.split() if not w.startswith("item")})
    X = np.asarray([[t.split().count(w) for w in vocab] for t in ds.texts], dtype=float)
    issues = check_labels(ds, features=X, feature_name="word counts")
    found = set(issues.flagged_indices)
    assert len(found & flips) / len(flips) >= 0.5
    assert "word counts + logistic regression" in issues.method
    with pytest.raises(ConfigError, match="features has 3 rows but the data has 240 texts"):
        check_labels(ds, features=X[:3])


def test_rows_and_ids_follow_the_loader(tmp_path):
    ds, flips = flipped(150, 0.10, 6)
    path = tmp_path / "labels.csv"
    frame = pd.DataFrame({"id": [f"doc-{i}" for i in range(150)], "text": ds.texts, "label": ds.labels})
    frame.to_csv(path, index=False)
    loaded = load_dataset(path)
    issues = check_labels(loaded)
    for r in issues.rows:
        assert r.row == r.index + 1 and r.id == f"doc-{r.index}" and r.given == ds.labels[r.index]
    d = issues.to_dict()
    json.dumps(d)
    assert d["n"] == 150 and d["n_flagged"] == len(d["rows"]) == issues.n_flagged
    assert set(d["rows"][0]) == {"index", "row", "id", "text", "given", "suggested", "score", "suggested_probability"}
    assert len(issues.to_dict(limit=2)["rows"]) == min(2, issues.n_flagged)


@pytest.mark.parametrize("name", ["issues.csv", "issues.tsv", "issues.jsonl", "issues.parquet"])
def test_every_flagged_row_is_written_in_the_format_of_the_suffix(tmp_path, name):
    ds, _ = flipped(150, 0.10, 7)
    issues = check_labels(ds)
    path = issues.write(tmp_path / name)
    if name.endswith(".csv"):
        back = pd.read_csv(path)
    elif name.endswith(".tsv"):
        back = pd.read_csv(path, sep="\t")
    elif name.endswith(".jsonl"):
        back = pd.read_json(path, lines=True)
    else:
        back = pd.read_parquet(path)
    assert list(back.columns) == ["rank", "row", "id", "text", "given_label", "suggested_label", "score",
                                  "suggested_probability"]
    assert len(back) == issues.n_flagged and back["rank"].tolist() == list(range(1, issues.n_flagged + 1))
    assert back["row"].tolist() == [r.row for r in issues.rows]


def test_bad_output_names_are_refused_with_the_fix(tmp_path):
    issues = check_labels(topic_corpus(60, seed=8))
    with pytest.raises(ConfigError, match=r"\.csv, \.tsv, \.jsonl, \.ndjson or \.parquet.*Rename it, e\.g\. out\.csv"):
        issues.write(tmp_path / "out.xlsx")
    with pytest.raises(ConfigError, match="does not exist. Create it"):
        issues.write(tmp_path / "nowhere" / "out.csv")


def test_a_class_smaller_than_the_folds_uses_fewer_folds_and_says_so():
    ds = topic_corpus(120, seed=9)
    texts = ds.texts + ["robot chip data robot", "code app robot data", "robot robot chip network"]
    labels = ds.labels + ["robots"] * 3
    issues = check_labels(TextDataset(texts, labels))
    assert issues.n_folds == 3 and "3-fold" in issues.method
    assert any("'robots' has only 3 examples" in n and "3-fold" in n for n in issues.notes)
    assert issues.per_class["robots"]["n"] == 3


def test_bad_input_errors_name_the_problem_and_the_fix():
    one = TextDataset(["a b", "c d", "e f"], ["x", "x", "x"])
    with pytest.raises(ConfigError, match="single class .*Add labeled examples of at least one more class"):
        check_labels(one)
    lonely = TextDataset(["a b", "c d", "e f", "g h"], ["x", "x", "x", "y"])
    with pytest.raises(ConfigError, match=r"\['y'\] have a single labeled example.*Add at least one more"):
        check_labels(lonely)
    with pytest.raises(ConfigError, match="no labels to check"):
        check_labels(TextDataset(["a", "b"]))
    ds = topic_corpus(30, seed=1)
    with pytest.raises(ConfigError, match=r"shape \(30, 2\), expected \(30, 3\)"):
        check_labels(ds, probabilities=np.full((30, 2), 0.5))
    with pytest.raises(ConfigError, match="sum to 1"):
        check_labels(ds, probabilities=np.full((30, 3), 0.5))
    with pytest.raises(ConfigError, match="n_folds=1 is not valid"):
        check_labels(ds, n_folds=1)


# ---------------------------------------------------------------- adaptlab data check
@pytest.fixture
def flipped_csv(tmp_path):
    ds, flips = flipped(300, 0.10, 0)
    path = tmp_path / "labels.csv"
    pd.DataFrame({"id": [f"t{i}" for i in range(300)], "text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    return path, flips


def test_data_check_table_shows_the_noise_rate_and_the_top_rows(flipped_csv, tmp_path):
    path, flips = flipped_csv
    r = runner.invoke(app, ["data", "check", "--data", str(path)])
    assert r.exit_code == 0, r.output
    text = flat(r.output)
    assert "labels: estimated label noise" in text and "flagged as likely mislabeled" in text
    assert "most likely mislabeled (top 10 of" in text and "--label-issues FILE" in text
    shown_rows = [int(line.split("│")[1]) for line in r.output.splitlines() if line.startswith("│")]
    assert len(shown_rows) == 10 and sum(row - 1 in flips for row in shown_rows) >= 7


def test_data_check_json_has_every_flagged_row_and_writes_the_file(flipped_csv, tmp_path):
    path, flips = flipped_csv
    out = tmp_path / "out.csv"
    r = runner.invoke(app, ["data", "check", "--data", str(path), "--json", "--label-issues", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    lq = rep["label_quality"]
    assert lq["n"] == 300 and lq["n_flagged"] == len(lq["rows"]) > 10 and 0.05 < lq["noise_rate"] < 0.2
    assert rep["label_issues_file"] == str(out)
    written = pd.read_csv(out)
    assert written["row"].tolist() == [row["row"] for row in lq["rows"]]
    assert written["id"].tolist() == [f"t{row - 1}" for row in written["row"]]
    assert len(set(written["row"] - 1) & flips) / len(flips) >= 0.6
    r = runner.invoke(app, ["data", "check", "--data", str(path), "--label-issues", str(tmp_path / "t.parquet")])
    assert r.exit_code == 0 and f"written to {tmp_path / 't.parquet'}" in flat(r.output)


def test_data_check_can_skip_the_label_check_and_refuses_bad_flags(flipped_csv, tmp_path):
    path, _ = flipped_csv
    r = runner.invoke(app, ["data", "check", "--data", str(path), "--json", "--no-label-issues"])
    assert r.exit_code == 0 and json.loads(r.stdout)["label_quality"] is None
    r = runner.invoke(app, ["data", "check", "--data", str(path), "--no-label-issues", "--label-issues", "x.csv"])
    assert r.exit_code == 2 and "not both" in flat(r.output) and "Traceback" not in r.output
    r = runner.invoke(app, ["data", "check", "--data", str(path), "--label-issues", str(tmp_path / "x.xlsx")])
    assert r.exit_code == 2 and "Rename it, e.g. x.csv" in flat(r.output)


# ---------------------------------------------------------------- the study stores it, the report shows it
def test_a_study_stores_the_label_noise_of_its_train_pool_and_the_report_shows_it(tmp_path):
    from adaptlab.config import StudyConfig
    from adaptlab.evaluate import Study
    from adaptlab.report import build_report
    from adaptlab.store import RunStore

    ds, _ = flipped(240, 0.15, 11)
    cfg = StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200, name="noisy labels")
    said: list[str] = []
    result = Study(cfg, home=tmp_path).run(ds, progress=said.append)
    lq = result.data["label_quality"]
    assert lq["n"] == result.n_train_pool == 240 - result.n_test  # the sealed test is not part of it
    assert 0.05 < lq["noise_rate"] < 0.3 and set(lq["per_class"]) == {"money", "sport", "tech"}
    assert len(lq["rows"]) <= 10 and any("estimating label noise" in m for m in said)
    said.clear()
    again = Study(cfg, home=tmp_path).run(ds, progress=said.append)
    assert again.data["label_quality"] == lq and not any("estimating label noise" in m for m in said)
    rep = build_report(RunStore(tmp_path / "runs.sqlite"), "latest", home=tmp_path)
    html_path, md_path = rep.write(tmp_path / "r.html", tmp_path / "r.md")
    html, md = html_path.read_text(), md_path.read_text()
    assert 'id="label-noise"' in html and f"{lq['noise_rate']:.1%} of the {lq['n']} train-pool labels" in html
    assert f"sport {lq['per_class']['sport']['noise_rate']:.1%}" in md and "label noise (estimated)" in md


# ---------------------------------------------------------------- the size cap (a stratified sample above it)
def test_above_max_rows_a_stratified_seeded_sample_is_checked_and_rows_map_back():
    ds, flips = flipped(600, 0.10, 3)
    issues = check_labels(ds, max_rows=200, seed=5)
    assert issues.n == 200 and issues.n_total == 600 and issues.sampled
    assert sum(v["n"] for v in issues.per_class.values()) == 200
    counts = pd.Series(ds.labels).value_counts()
    assert all(abs(v["n"] - 200 * counts[c] / 600) < 1 for c, v in issues.per_class.items())  # shares kept
    for r in issues.rows:  # positions and row numbers are those of the whole data
        assert ds.texts[r.index] == r.text and ds.labels[r.index] == r.given and r.row == r.index + 1
    found = set(issues.flagged_indices)
    assert found and len(found & flips) / len(found) >= 0.6
    assert "a stratified sample of the 600" in issues.summary() and "200 of the 600" in issues.notes[-1]
    d = issues.to_dict()
    assert d["sampled"] and d["n_total"] == 600
    again = check_labels(ds, max_rows=200, seed=5)
    assert again.flagged_indices == issues.flagged_indices  # a fixed seed: the same sample, the same flags
    full = check_labels(ds, max_rows=600)
    assert not full.sampled and full.n_total is None and "sampled" not in full.to_dict()
    with pytest.raises(ConfigError, match="an integer >= 100"):
        check_labels(ds, max_rows=10)


def test_a_study_caps_its_label_check_and_the_report_says_it_was_sampled(tmp_path):
    from adaptlab.config import StudyConfig
    from adaptlab.evaluate import Study
    from adaptlab.report import build_report
    from adaptlab.store import RunStore

    ds, _ = flipped(400, 0.10, 12)
    assert "label_check_max_rows" not in StudyConfig(rungs=["tfidf"]).to_dict()  # earlier study ids hold
    with pytest.raises(ConfigError, match="label_check_max_rows"):
        StudyConfig(rungs=["tfidf"], label_check_max_rows=5)
    cfg = StudyConfig(rungs=["tfidf"], seeds=1, n_boot=200, label_check_max_rows=150)
    from adaptlab.studyfile import parse_study_file, study_config, study_file_text

    text = study_file_text(cfg.to_dict())  # a study file carries the cap and reads it back
    assert "label_check_max_rows = 150" in text and study_config(parse_study_file(text)).to_dict() == cfg.to_dict()
    said: list[str] = []
    result = Study(cfg, home=tmp_path).run(ds, progress=said.append)
    lq = result.data["label_quality"]
    assert lq["sampled"] and lq["n"] == 150 and lq["n_total"] == result.n_train_pool
    assert any(f"a stratified sample of 150 of its {result.n_train_pool} rows" in m for m in said)
    rep = build_report(RunStore(tmp_path / "runs.sqlite"), "latest", home=tmp_path)
    html_path, md_path = rep.write(tmp_path / "r.html", tmp_path / "r.md")
    for text in (html_path.read_text(), md_path.read_text()):
        text = " ".join(text.split())
        assert f"{lq['noise_rate']:.1%} of the 150 sampled train-pool labels" in text
        assert (f"Sampled: a stratified sample of 150 of the {result.n_train_pool} train-pool labels was checked "
                "(size cap label_check_max_rows, seeded by test_seed)") in text
