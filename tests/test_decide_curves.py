"""Learning curve and per-slice F1 on a real small study (tiny encoder), and their effect on the decision."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.config import StudyConfig
from adaptlab.decide import Evidence, decide
from adaptlab.decide.curves import curve_verdict, learning_curve, nested_fractions
from adaptlab.decide.slices import slice_report, slice_table
from adaptlab.evaluate import Study
from adaptlab.store import RunStore
from synthetic import topic_corpus


def test_nested_fractions_are_nested_and_stratified():
    labels = ["a"] * 40 + ["b"] * 20
    subs = nested_fractions(labels, [0.1, 0.25, 0.5, 1.0], seed=3)
    assert len(subs[1.0]) == 60
    for small, big in ((0.1, 0.25), (0.25, 0.5), (0.5, 1.0)):
        assert set(subs[small]) <= set(subs[big])
    sub = np.asarray(labels)[subs[0.5]]
    assert (sub == "a").sum() == 20 and (sub == "b").sum() == 10


@pytest.mark.parametrize("gains,adapt,verdict", [
    ((0.70, 0.76), None, "more-labels"), ((0.75, 0.76), None, "neither"),
    ((0.75, 0.76), 0.05, "more-adaptation"), ((0.70, 0.76), 0.05, "both"),
])
def test_curve_verdict(gains, adapt, verdict):
    pts = [{"rung": "probe", "fraction": f, "n_labels": int(1000 * f), "mean": m} for f, m in zip((0.5, 1.0), gains)]
    if adapt is not None:
        pts.append({"rung": "lora", "fraction": 1.0, "n_labels": 1000, "mean": gains[-1] + adapt})
    out = curve_verdict(pts)
    assert out["verdict"] == verdict and "probe gains" in out["summary"]


def test_learning_curve_runs_each_fraction_against_the_same_sealed_test(tmp_path, tiny_encoder_dir):
    ds = topic_corpus(200, noise=0.4)
    cfg = StudyConfig(rungs=["tfidf", "probe"], seeds=2, n_boot=200, encoder=str(tiny_encoder_dir))
    curve = learning_curve(ds, cfg, rungs=["tfidf"], fractions=[0.25, 1.0], seeds=2, home=tmp_path)
    pts = curve["points"]
    assert [p["fraction"] for p in pts] == [0.25, 1.0] and pts[0]["n_labels"] < pts[1]["n_labels"] == curve["n_pool"]
    assert curve["n_test"] == 40 and curve["verdict"] in ("more-labels", "neither")
    store = RunStore(tmp_path / "runs.sqlite")
    tests = {tuple(store.study_results(p["study_id"])[0]["predictions"]["test_ids"]) for p in pts}
    assert len(tests) == 1  # every point is scored on the same sealed test items
    json.dumps(curve)


def test_slice_table_counts_errors_and_shares():
    y = ["a"] * 8 + ["b"] * 2
    pred = ["a"] * 8 + ["a", "a"]  # every error is in slice "rare"
    rows, overall = slice_table(y, [pred], ["common"] * 8 + ["rare"] * 2, ["a", "b"], None)
    rare = next(r for r in rows if r["slice"] == "rare")
    assert rare["errors"] == 2 and rare["error_share"] == 1.0 and rare["share"] == 0.2 and rows[0]["slice"] == "rare"
    assert 0 < overall < 1
    # A one-class slice predicted perfectly is not a failing slice (absent classes do not count as F1 0).
    rows, _ = slice_table(y, [pred], ["common"] * 8 + ["rare"] * 2, ["a", "b"], None)
    assert next(r for r in rows if r["slice"] == "common")["f1"] == 1.0
    assert next(r for r in rows if r["slice"] == "rare")["f1"] == 0.0


@pytest.fixture(scope="module")
def sliced_study(tmp_path_factory, tiny_encoder_dir):
    home = tmp_path_factory.mktemp("slices")
    ds = topic_corpus(200, noise=0.4)
    Study(StudyConfig(rungs=["tfidf", "probe"], seeds=3, n_boot=200, encoder=str(tiny_encoder_dir)), home=home).run(ds)
    return home, ds


def test_slice_report_with_a_column_and_with_kmeans(sliced_study, tiny_encoder_dir):
    from adaptlab.encoders import Encoder

    home, ds = sliced_study
    store = RunStore(home / "runs.sqlite")
    values = ["rare" if i % 17 == 0 else "common" for i in range(len(ds))]
    rep = slice_report(store, "latest", ds, rung="tfidf", slice_values=values)
    assert rep["source"] == "column" and {s["slice"] for s in rep["slices"]} == {"rare", "common"}
    assert sum(s["n"] for s in rep["slices"]) == rep["n_test"] == 40
    assert rep["overall_f1"] == pytest.approx(Evidence.from_store(store, "latest").rungs["tfidf"].mean)
    rep = slice_report(store, "latest", ds, rung="probe", encoder=Encoder.from_pretrained(tiny_encoder_dir),
                       n_clusters=3)
    assert rep["source"] == "kmeans" and all(s["slice"].startswith("cluster ") for s in rep["slices"])
    with pytest.raises(Exception, match="rung='lora' is not valid"):
        slice_report(store, "latest", ds, rung="lora", slice_values=values)


def test_slices_and_curve_cli_feed_the_decision_and_report(sliced_study, tmp_path):
    import shutil

    home = tmp_path / "h"
    shutil.copytree(sliced_study[0], home)
    ds = sliced_study[1]
    # A slice column where one rare slice holds the items a model finds hardest: the noisy ones.
    csv = tmp_path / "data.csv"
    pd.DataFrame({"text": ds.texts, "label": ds.labels, "id": ds.ids,
                  "topic": ["rare" if i % 17 == 0 else "common" for i in range(len(ds))]}).to_csv(csv, index=False)
    runner = CliRunner()
    r = runner.invoke(app, ["slices", "--data", str(csv), "--slice-col", "topic", "--id-col", "id", "--rung", "tfidf",
                            "--home", str(home), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["rung"] == "tfidf" and (home / "analyses").is_dir()
    ev = Evidence.from_store(RunStore(home / "runs.sqlite"), "latest")
    assert ev.slices and ev.slice_rung == "tfidf" and ev.overall_f1 == pytest.approx(rep["overall_f1"])
    r = runner.invoke(app, ["curve", "--data", str(csv), "--id-col", "id", "--rungs", "tfidf", "--fractions", "0.5,1",
                            "--home", str(home), "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["points"]) == 2
    r = runner.invoke(app, ["report", "--home", str(home), "-o", str(tmp_path / "rep.html")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep.html").read_text(encoding="utf-8")
    assert 'id="slices"' in html and 'id="learning-curve"' in html
    assert decide(ev).to_dict()  # slices reach the decision without error


def test_a_weak_rare_slice_whose_rows_are_flagged_is_called_noisy(tmp_path):
    from adaptlab.data import TextDataset

    # 600 texts; the rare slice (every 12th) had half its labels moved to another class.
    ds = topic_corpus(600, seed=4, noise=0.2)
    rotate = {"sport": "tech", "tech": "money", "money": "sport"}
    rare = [i % 12 == 0 for i in range(600)]
    labels = [rotate[x] if r and i % 24 == 0 else x for i, (x, r) in enumerate(zip(ds.labels, rare))]
    data = TextDataset(texts=ds.texts, labels=labels, source="rare-noisy")
    Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home=tmp_path).run(data)
    store = RunStore(tmp_path / "runs.sqlite")
    lq = store.get_study("latest")["summary"]["data"]["label_quality"]
    assert len(lq["flagged_ids"]) == lq["n_flagged"] > len(lq["rows"])  # every flagged id is kept
    values = ["rare" if r else "common" for r in rare]
    rep = slice_report(store, "latest", data, rung="tfidf", slice_values=values)
    by = {s["slice"]: s for s in rep["slices"]}
    # The flagged train-pool rows fall in the rare slice: its estimated label noise is far above the common one's.
    assert by["rare"]["label_flagged"] >= 8 and by["rare"]["label_noise"] >= 0.2 > 0.05 >= by["common"]["label_noise"]
    assert by["rare"]["label_checked"] == pytest.approx(sum(rare) - sum(
        1 for i in store.study_results(store.get_study("latest")["study_id"])[0]["predictions"]["test_ids"]
        if values[data.ids.index(i)] == "rare"))
    assert rep["rare_failing"] == ["rare"] and "but rare: it is also a noisy slice" in rep["summary"]
    ev = Evidence.from_store(store, "latest", analyses=False)
    ev.slices, ev.overall_f1, ev.slice_rung = rep["slices"], rep["overall_f1"], "tfidf"
    msg = decide(ev).flags_for("switch.rare-slice")[0].message
    assert (f"it is also a noisy slice: an estimated {by['rare']['label_noise']:.0%} of its labels are wrong "
            f"({by['rare']['label_flagged']} of its ~{by['rare']['label_checked']:,.0f} train-pool labels flagged") in msg
    # The report's slice table gets the estimate, and its decision section the rule's words.
    from adaptlab.decide.analyses import save_analysis
    from adaptlab.report import build_report

    save_analysis(tmp_path, store.get_study("latest")["study_id"], "slices", rep)
    html_path, md_path = build_report(store, "latest", home=tmp_path).write(tmp_path / "r.html", tmp_path / "r.md")
    md, html = md_path.read_text(), html_path.read_text()
    assert "| slice | test items | share of items | F1 | share of errors | label noise (est.) |" in md
    assert f"| {by['rare']['label_noise']:.0%} |\n| common |" in md and "<th>label noise (est.)</th>" in html
    assert "it is also a noisy slice" in " ".join(html.split())


def _power_points(ns, a=0.9, b=0.5, c=0.0, std=0.0, seeds=3, rung="probe"):
    return [{"rung": rung, "fraction": n / ns[-1], "n_labels": n, "n_seeds": seeds, "std": std,
             "mean": 1 - (a * n ** -b + c)} for n in ns]


def test_extrapolation_recovers_a_power_law_and_its_band_covers_the_truth():
    from adaptlab.decide.curves import extrapolate_curve

    pts = _power_points([100, 200, 400, 800], c=0.02, std=0.003)
    ex = extrapolate_curve(pts, 0.95, seed=1)
    truth = (0.03 / 0.9) ** -2  # 1 - 0.95 - 0.02 = 0.9 n^-0.5  ->  n = 900
    assert ex["band"][0] <= truth <= ex["band"][1] and abs(ex["labels_needed"] - truth) < 0.1 * truth
    assert ex["more_labels"] == ex["labels_needed"] - 800 and "more labels" in ex["summary"]
    assert ex["ceiling"] == pytest.approx(0.98, abs=0.01)
    # The target is above the curve's ceiling (0.98): no number of labels gets there.
    far = extrapolate_curve(pts, 0.99)
    assert far["labels_needed"] is None and "levels off" in far["summary"]
    # A curve that does not rise has nothing to extrapolate; a wider seed spread widens the band.
    assert extrapolate_curve(_power_points([100, 200], b=-0.1)) is None
    wide = extrapolate_curve(_power_points([100, 200, 400, 800], c=0.02, std=0.02), 0.95, seed=1)
    assert wide["band"][1] is None or wide["band"][1] - wide["band"][0] > ex["band"][1] - ex["band"][0]


def test_the_decisions_next_experiment_names_how_many_labels():
    from adaptlab.decide import Evidence, decide

    lc = {"verdict": "more-labels", "summary": "probe gains +0.04 from 50% to 100%: more labels pay.",
          "points": _power_points([50, 100, 200, 400], a=3.0, b=0.5)}  # F1 0.85 at 400 labels, still rising
    # Nothing ships (0.70 < 0.80): the curve says how many labels reach the ship threshold.
    d = decide(Evidence.from_tables({"probe": [0.69, 0.70, 0.71]}, learning_curve=lc, n_labels=400))
    assert d.next_experiment.rule == "curve.more-labels"
    assert "collect ~" in d.next_experiment.what and "more labels" in d.next_experiment.what
    assert "adaptlab suggest" in d.next_experiment.what and "power law" in d.next_experiment.why
    # It ships and the curve still rises: labels are still the next experiment, sized.
    d = decide(Evidence.from_tables({"probe": [0.84, 0.85, 0.86]}, learning_curve=lc, n_labels=2000))
    assert d.ship and d.next_experiment.rule == "curve.more-labels" and "collect ~" in d.next_experiment.what
