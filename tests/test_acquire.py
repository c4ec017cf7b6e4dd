"""Which texts to label next: the strategies on small models built here, the exclusions, and `adaptlab suggest`."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from adaptlab.acquire import DEFAULT_MIX, offerable, select, suggest
from adaptlab.acquire import strategies as st
from adaptlab.cli import app
from adaptlab.errors import ConfigError
from synthetic import topic_corpus

runner = CliRunner()


def blobs(n_per=40, k=5, dim=8, seed=0):
    """k tight clusters in cosine space (each around its own axis), the first one the largest."""
    rng = np.random.default_rng(seed)
    sizes = [2 * n_per] + [n_per] * (k - 1)
    X = np.vstack([rng.normal(0, 0.15, size=(m, dim)) + 3 * np.eye(dim)[c] + 0.5 for c, m in enumerate(sizes)])
    return X, np.repeat(np.arange(k), sizes)


def test_uncertainty_picks_the_texts_at_the_decision_boundary():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(400, 2))
    y = (X[:, 0] > 0).astype(int)
    clf = LogisticRegression().fit(X, y)
    proba = clf.predict_proba(X)
    for kind in ("margin", "entropy"):
        picked = st.uncertainty_order(proba, 20, kind)
        far = np.abs(X[:, 0])
        assert far[picked].max() < np.quantile(far, 0.1)  # all 20 within the 10% closest to x0 = 0
        assert np.all(np.diff(st.uncertainty_scores(proba, kind)[picked]) <= 1e-12)  # least confident first


def test_temperature_scaling_cools_an_over_confident_head_and_the_reason_says_so():
    from adaptlab.acquire.calibration import calibrate_on, fit_temperature, scale

    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 4))
    y = np.argmax(X[:, :3] + rng.normal(0, 1.2, size=(600, 3)), axis=1)  # noisy labels: no head can be sure
    clf = LogisticRegression().fit(X[:300], y[:300])
    z = clf.decision_function(X[300:]) * 8.0  # the same head, deliberately over-confident
    proba = np.exp(z - z.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    cal = fit_temperature(proba, y[300:])
    assert cal.temperature > 2 and cal.nll_after < 0.8 * cal.nll_before
    assert np.array_equal(scale(proba, cal.temperature).argmax(1), proba.argmax(1))  # predictions unchanged
    # A calibrated head is left (nearly) alone: T close to 1.
    assert 0.7 < fit_temperature(clf.predict_proba(X[300:]), y[300:]).temperature < 1.4
    none, why = calibrate_on(proba[:5], [str(v) for v in y[300:305]], ["0", "1", "2"])
    assert none is None and "no calibration" in why
    fitted, line = calibrate_on(proba, [str(v) for v in y[300:]], ["0", "1", "2"], fitted_on="sealed texts")
    assert "temperature scaling" in line and fitted.temperature == pytest.approx(cal.temperature)
    texts = [f"text number {i} about {w}" for i, w in enumerate(rng.choice(["a b", "c d", "e f g"], 300))]
    s = suggest(texts, 5, proba=scale(proba, cal.temperature), classes=["0", "1", "2"], embeddings=X[300:],
                strategy="uncertainty", calibration=cal.to_dict())
    assert all(f"calibrated probabilities, temperature {cal.temperature:.2f}" in r["reason"] for r in s.rows)
    assert s.to_dict()["calibration"]["temperature"] == cal.temperature


def test_diversity_and_cold_start_spread_over_every_cluster():
    X, cluster = blobs()
    for picked in (st.kcenter_greedy(X, 5), st.kmedoids(X, 5, seed=1)):
        assert sorted(cluster[picked].tolist()) == [0, 1, 2, 3, 4]
    # Core-set goes where nothing is labeled yet: with blobs 0-3 labeled, the first pick is in blob 4.
    labeled = X[cluster < 4][::10]
    assert cluster[st.kcenter_greedy(X, 1, labeled=labeled)[0]] == 4
    # Uncertainty thinned by k-center: a batch of 4 from a boundary shared by two blobs is not one blob.
    proba = np.tile([0.99, 0.01], (len(X), 1))
    boundary = np.r_[np.flatnonzero(cluster == 0)[:10], np.flatnonzero(cluster == 1)[:10]]
    proba[boundary] = [0.5, 0.5]  # ten texts of blob 0 and ten of blob 1 sit on the boundary
    assert set(cluster[st.uncertainty_order(proba, 4)].tolist()) == {0}  # plain uncertainty: one blob
    picked = st.diverse_uncertain(proba, X, 4)
    assert set(cluster[picked].tolist()) == {0, 1} and set(picked) <= set(boundary)
    # The default's clump breaker: one text per near-copy clump first, and never a confident text while
    # uncertain ones are left (the batch is filled from the skipped boundary texts).
    picked = st.distinct_uncertain(proba, X, 4)
    assert set(cluster[picked].tolist()) == {0, 1} and set(picked) <= set(boundary)
    proba[boundary[3:10]] = [0.99, 0.01]  # three boundary texts left in blob 0 ...
    proba[boundary[10:]] = [0.55, 0.45]  # ... and blob 1's a little less uncertain
    picked = st.distinct_uncertain(proba, X, 2)
    assert cluster[picked].tolist() == [0, 1]  # not the two most uncertain, near-copies in blob 0


def test_slice_targeting_picks_near_the_slice():
    X, cluster = blobs()
    anchor = X[cluster == 3][:5]
    picked = st.nearest_to(X, anchor, 15, candidates=np.flatnonzero(np.arange(len(X)) % 2 == 0))
    assert set(cluster[picked].tolist()) == {3} and np.all(picked % 2 == 0)
    proba = np.tile([0.5, 0.5], (len(X), 1))
    mixed = select("default", 10, proba=proba, embeddings=X, slice_anchor=anchor, slice_info={"rare": True})
    by = {name: [i for i, s in mixed if s == name] for name in ("slice", "uncertainty", "diversity")}
    assert {k: len(v) for k, v in by.items()} == {k: round(10 * v) for k, v in DEFAULT_MIX.items()}
    assert by["slice"] and by["uncertainty"]  # uncertainty-led, a share near the rare failing slice
    assert set(cluster[by["slice"]].tolist()) == {3} and len({i for i, _ in mixed}) == 10
    # The lowest slice that does not fire the rare-slice rule gets no share: all ten by uncertainty.
    plain = select("default", 10, proba=proba, embeddings=X, slice_anchor=anchor, slice_info={"rare": False})
    assert [s for _, s in plain] == ["uncertainty"] * 10
    # A caller's own mix still gets its k-center share.
    own = select("default", 10, proba=proba, embeddings=X, mix={"uncertainty": 0.5, "diversity": 0.5})
    assert sorted(s for _, s in own) == ["diversity"] * 5 + ["uncertainty"] * 5


def test_worst_slice_of_a_labeled_set_is_where_the_model_fails():
    from adaptlab.acquire import worst_slice

    X, cluster = blobs()
    texts = topic_corpus(len(X), seed=5).texts
    labels = np.where(cluster % 2 == 0, "a", "b")
    predicted = labels.copy()
    predicted[cluster == 3] = "a"  # the model gets every text of blob 3 wrong
    info = worst_slice(texts, labels, X, predicted, ["a", "b"])
    assert info["accuracy"] == 0.0 and info["overall_accuracy"] > 0.8 and set(cluster[info["positions"]].tolist()) == {3}
    assert worst_slice(texts, labels, X, labels, ["a", "b"]) is None  # nothing fails: no slice to chase


def test_no_near_duplicate_of_a_labeled_text_and_no_sealed_text_is_ever_suggested():
    data = topic_corpus(60, seed=3)
    labeled, sealed = data.texts[:10], data.texts[10:20]
    copies = [t + " indeed" for t in labeled[:5]] + [t.upper() for t in sealed[:5]]
    pool = copies + data.texts[20:] + [data.texts[30] + " ok"]  # the last is a near-copy inside the pool
    ids = [f"p{i}" for i in range(len(pool))]
    rng = np.random.default_rng(0)
    E = rng.normal(size=(len(pool), 8))
    proba = np.tile([0.5, 0.5], (len(pool), 1))
    proba[len(copies):] = [0.9, 0.1]  # the copies are the most uncertain, and the farthest
    E[:len(copies)] *= 50
    keep, why = offerable(pool, labeled, sealed)
    assert why["near-duplicate of a labeled text"] == 5 and why["near-duplicate of a sealed evaluation text"] == 5
    assert why["near-copy of another pool text"] == 1
    for strategy in ("default", "uncertainty", "diversity", "cold-start"):
        s = suggest(pool, 30, embeddings=E, ids=ids, proba=proba, classes=["a", "b"], labeled_texts=labeled,
                    sealed_texts=sealed, strategy=strategy)
        got = {r["id"] for r in s.rows}
        assert len(got) == 30 and not got & {f"p{i}" for i in range(len(copies))} and f"p{len(pool) - 1}" not in got
        assert all(r["text"] == pool[int(r["id"][1:])] for r in s.rows)  # ids stay with their texts
        assert sum(s.counts.values()) == 30 and all(r["label"] == "" for r in s.rows)


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ConfigError, match="n=0"):
        suggest(["a"], 0, embeddings=np.ones((1, 2)))
    with pytest.raises(ConfigError, match="pool of unlabeled texts is empty"):
        suggest([], 3, embeddings=np.ones((0, 2)))
    with pytest.raises(ConfigError, match="cold-start"):
        suggest(["a b"], 1, embeddings=np.ones((1, 2)), strategy="uncertainty")
    with pytest.raises(ConfigError, match="strategy='best'"):
        suggest(["a b"], 1, embeddings=np.ones((1, 2)), strategy="best")


# ------------------------------------------------------------------------------------------ CLI


def invoke(*args, code=0):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == code, r.output
    # With --json, stdout is the one JSON document; the progress lines are on stderr.
    return r.stdout if "--json" in args else r.output


@pytest.fixture
def shipped(tmp_path, tiny_encoder_dir, one_torch_thread):
    data = topic_corpus(150, seed=21)
    pd.DataFrame({"id": [f"t{i}" for i in range(150)], "text": data.texts, "label": data.labels}).to_csv(
        tmp_path / "train.csv", index=False)
    invoke("ship", tmp_path / "train.csv", "-o", tmp_path / "model", "--rung", "probe", "--encoder", tiny_encoder_dir,
           "--home", tmp_path / "home", "--json")
    fresh = topic_corpus(80, seed=77, noise=0.6)
    pool = pd.DataFrame({"id": [f"u{i}" for i in range(80)], "text": fresh.texts})
    pool = pd.concat([pool, pd.DataFrame({"id": ["dup"], "text": [data.texts[3] + " again"]})])
    pool.to_csv(tmp_path / "pool.csv", index=False)
    return tmp_path / "model", tmp_path / "pool.csv", data


def test_suggest_cli_table_and_json_write_a_file_to_label(shipped, tmp_path):
    model, pool, data = shipped
    res = json.loads(invoke("suggest", pool, "--model", model, "-n", "12", "-o", tmp_path / "s.jsonl", "--json"))
    assert res["n_suggested"] == 12 and sum(res["counts"].values()) == 12
    assert res["excluded"]["near-duplicate of a labeled text"] >= 1
    ids = [r["id"] for r in res["rows"]]
    assert "dup" not in ids and all(i.startswith("u") for i in ids)
    # The probabilities were temperature-scaled on the sealed set; the fit is stored for the next call.
    assert res["calibration"]["method"] == "temperature" and res["calibration"]["n"] == 30
    assert any(n.startswith("calibration: temperature scaling") for n in res["notes"])
    stored = json.loads((model / "acquire" / "calibration.json").read_text())
    assert stored["version"] == "v0001" and stored["calibration"]["temperature"] == res["calibration"]["temperature"]
    written = pd.read_json(tmp_path / "s.jsonl", lines=True)
    assert list(written.columns) == ["id", "text", "predicted_label", "score", "strategy", "reason", "label"]
    assert written["id"].tolist() == ids and written["label"].eq("").all()
    table = " ".join(invoke("suggest", pool, "--model", model, "-n", "5", "--strategy", "uncertainty",
                            "-o", tmp_path / "s.csv").split())
    assert "5 of 81 pool texts suggested (5 by uncertainty)" in table and "hesitates between" in table
    assert "note: calibration: temperature scaling" in table, table
    assert "calibrated probabilities" in table, table  # the reason (folded in its column)
    assert len(pd.read_csv(tmp_path / "s.csv")) == 5
    # A calibration file written by another version (a field missing) is fitted again, not a traceback.
    path = model / "acquire" / "calibration.json"
    stale = json.loads(path.read_text())
    del stale["calibration"]["temperature"]
    path.write_text(json.dumps(stale))
    again = json.loads(invoke("suggest", pool, "--model", model, "-n", "3", "-o", tmp_path / "s2.csv", "--json"))
    assert again["calibration"]["temperature"] == res["calibration"]["temperature"]
    assert "temperature" in json.loads(path.read_text())["calibration"]


def test_suggest_cli_cold_start_without_a_model(shipped, tmp_path, tiny_encoder_dir):
    _, pool, _ = shipped
    res = json.loads(invoke("suggest", pool, "-n", "4", "--encoder", tiny_encoder_dir, "--json"))
    assert res["strategy"] == "cold-start" and res["counts"] == {"cold-start": 4}
    assert all(r["predicted_label"] == "" for r in res["rows"])
    assert "representative of" in " ".join(invoke("suggest", pool, "-n", "3", "--encoder", tiny_encoder_dir).split())
    assert not any("[bf16]" in note for note in res["notes"])  # auto is fp32 here (conftest: no native bf16)
    fast = json.loads(invoke("suggest", pool, "-n", "4", "--encoder", tiny_encoder_dir, "--precision", "bf16", "--json"))
    assert any("[bf16]" in note for note in fast["notes"]) and fast["counts"] == {"cold-start": 4}


def test_suggest_cli_errors_name_the_problem(shipped, tmp_path):
    model, pool, _ = shipped
    pd.DataFrame({"text": []}).to_csv(tmp_path / "empty.csv", index=False)
    for args, words in [
        (["suggest", pool, "--model", tmp_path / "nope"], "does not exist"),
        (["suggest", pool, "--model", model, "-n", "0"], "-n=0"),
        (["suggest", pool, "--strategy", "uncertainty"], "needs a model"),
        (["suggest", pool, "--model", model, "-o", tmp_path / "x.txt"], "--output"),
        (["suggest", tmp_path / "empty.csv", "--model", model], "empty"),
    ]:
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code != 0 and words in " ".join(r.output.split()), r.output
        assert "Traceback" not in r.output


@pytest.fixture
def study_home(tmp_path, tiny_encoder_dir, one_torch_thread):
    """A tiny stored study (tfidf and probe on the tiny encoder) whose data file stays where it ran."""
    data = topic_corpus(150, seed=21)
    pd.DataFrame({"id": [f"t{i}" for i in range(150)], "text": data.texts, "label": data.labels}).to_csv(
        tmp_path / "train.csv", index=False)
    home = tmp_path / "home"
    r = runner.invoke(app, [str(a) for a in ("study", "run", "--data", tmp_path / "train.csv", "--rungs", "tfidf,probe",
                                             "--seeds", "3", "--encoder", tiny_encoder_dir, "--home", home, "--json")])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)  # stdout: the JSON; stderr: a line per cell
    fresh = topic_corpus(60, seed=77, noise=0.6)
    # The pool holds fresh texts, a near-copy of a labeled text and of every sealed test text of the study.
    from adaptlab.data import load_dataset, split_dataset

    ds = load_dataset(tmp_path / "train.csv")
    test_ids = [ds.ids[i] for i in split_dataset(ds, test_seed=0).unseal_test("test: the study's sealed texts")]
    sealed = [t for i, t in zip(ds.ids, ds.texts) if i in set(test_ids)]
    labeled = [t for i, t in zip(ds.ids, ds.texts) if i not in set(test_ids)]
    pool = pd.DataFrame({"id": [f"u{i}" for i in range(60)] + [f"seal{i}" for i in range(len(sealed))] + ["lab"],
                         "text": fresh.texts + [t + " again" for t in sealed] + [labeled[0] + " again"]})
    pool.to_csv(tmp_path / "pool.csv", index=False)
    return home, res["study_id"], tmp_path / "pool.csv", len(sealed)


def test_suggest_cli_from_a_studys_decided_rung_table_and_json(study_home, tmp_path):
    from adaptlab.report import decision_for
    from adaptlab.store import RunStore

    home, study_id, pool, n_sealed = study_home
    chosen = decision_for(RunStore(home / "runs.sqlite"), study_id, None, home)[0].chosen
    res = json.loads(invoke("suggest", pool, "--study", study_id, "--home", home, "-n", "10", "--json"))
    assert res["n_suggested"] == 10 and all(r["id"].startswith("u") for r in res["rows"])
    assert res["excluded"]["near-duplicate of a sealed evaluation text"] == n_sealed
    assert res["excluded"]["near-duplicate of a labeled text"] == 1
    assert any(f"decided rung {chosen}" in note for note in res["notes"])
    folder = home / "acquire" / f"{study_id[:12]}-{chosen}"
    assert (folder / "versions").is_dir()
    # Table mode reuses the trained folder; the same suggestions come back.
    table = " ".join(invoke("suggest", pool, "--study", study_id, "--home", home, "-n", "10", "-o",
                            tmp_path / "s.csv").split())
    assert "training study" not in table and f"decided rung {chosen}" in table
    assert pd.read_csv(tmp_path / "s.csv")["id"].tolist() == [r["id"] for r in res["rows"]]
    for args, words in [(["--study", study_id, "--model", folder], "not both"),
                        (["--study", "nope", "--home", home], "nope"),
                        (["--study", study_id, "--home", home, "--data", tmp_path / "gone.csv"], "gone.csv")]:
        r = runner.invoke(app, ["suggest", str(pool), *[str(a) for a in args]])
        assert r.exit_code != 0 and words in " ".join(r.output.split()) and "Traceback" not in r.output, r.output
