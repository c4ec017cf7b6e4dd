import json

import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from synthetic import topic_corpus

runner = CliRunner()


@pytest.fixture
def csv_file(tmp_path):
    ds = topic_corpus(150, noise=0.6)
    path = tmp_path / "train.csv"
    import pandas as pd

    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_study_run_prints_table_and_json(tmp_path, csv_file):
    home = tmp_path / "home"
    r = invoke("study", "run", "--data", csv_file, "--rungs", "tfidf", "--seeds", 2, "--home", home)
    assert r.exit_code == 0, r.output
    assert "tfidf" in r.output and "±" in r.output and "95% CI" in r.output
    r = invoke("study", "run", "--data", csv_file, "--rungs", "tfidf", "--seeds", 2, "--home", home, "--json")
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["n_from_store"] == 2 and payload["rows"][0]["rung"] == "tfidf"


def test_study_show_and_list(tmp_path, csv_file):
    home = tmp_path / "home"
    assert invoke("study", "run", "--data", csv_file, "--rungs", "tfidf", "--seeds", 2, "--home", home).exit_code == 0
    r = invoke("study", "show", "--home", home, "--json")
    payload = json.loads(r.stdout)
    assert r.exit_code == 0 and payload["rows"][0]["n_seeds"] == 2
    assert payload["decision"]["status"] == "no-decision"  # the decision is shown with the study (2 seeds < 3)
    r = invoke("study", "show", "--home", home)
    assert "decision" in r.output and "not enough seeds" in r.output
    r = invoke("study", "list", "--home", home)
    assert r.exit_code == 0 and "train.csv" in r.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "nope.csv"], "nope.csv"),
        (["--rungs", "tfidf,lorra"], "rungs='lorra' is not valid"),  # every planned rung exists since issue #5
        (["--executor", "nope"], "executor='nope' is not valid"),
        (["--rung-resources", "{bad"], "--rung-resources='{bad' is not valid"),
        (["--precision", "int4"], "int4"),
        (["--seeds", "0"], "seeds=0 is not valid"),
        (["--split", "shuffle"], "split='shuffle' is not valid"),
        (["--text-col", "body"], "body"),
    ],
)
def test_user_mistakes_exit_non_zero_with_one_message(tmp_path, csv_file, args, message):
    base = ["study", "run", "--data", str(csv_file), "--home", str(tmp_path)]
    r = runner.invoke(app, base + args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_show_without_studies_explains_what_to_do(tmp_path):
    r = invoke("study", "show", "--home", tmp_path)
    assert r.exit_code == 2 and "adaptlab study run" in r.output


def test_rungs_lists_available_and_planned(monkeypatch):
    from adaptlab.rungs import ladder

    # Every catalogued rung exists; catalogue a made-up one without registering it to see the "planned" line.
    rec = ladder.RungFacts("distill", "network", "distillation into a small encoder (issue #99)", "distill",
                           "distillation", "-", "-", "-")
    monkeypatch.setitem(ladder._BY_NAME, "distill", rec)
    monkeypatch.setattr(ladder, "LADDER_FACTS", ladder.LADDER_FACTS + (rec,))
    r = invoke("rungs")
    assert r.exit_code == 0 and "tfidf" in r.output and "finetune" in r.output
    assert "not available yet: distillation" in r.output


def test_data_check_reports_near_duplicates_and_inflation(tmp_path):
    import pandas as pd

    ds = topic_corpus(150, noise=0.6)
    texts = list(ds.texts) + [t + " update" for t in ds.texts[:40]]  # planted near-duplicates
    labels = list(ds.labels) + list(ds.labels[:40])
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    r = invoke("data", "check", "--data", path, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["near_dup_clusters"] >= 30 and rep["recommended_split"] == "near-dup"
    assert rep["naive_split"]["n_test_leaked"] > 0


def test_data_check_in_text_mode_lists_every_warning_with_its_fix_once(tmp_path, caplog):
    import logging

    import pandas as pd

    ds = topic_corpus(60, noise=0.0)
    texts, labels = list(ds.texts) + [ds.texts[0]], list(ds.labels) + [ds.labels[0]]  # an exact duplicate
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="adaptlab.data.load"):
        r = invoke("data", "check", "--data", path, "--no-label-issues")
    assert r.exit_code == 0, r.output
    block = r.stdout.split("warnings (", 1)[1]
    assert "[duplicate_text] 1 text(s) appear more than once" in block and "fix: usually harmless" in block
    # the loader's warning is in the report's list, not logged a second time
    assert not [rec for rec in caplog.records if "duplicate" in rec.getMessage()]
    assert "duplicate_text" in {w["code"] for w in json.loads(
        invoke("data", "check", "--data", path, "--no-label-issues", "--json").stdout)["warnings"]}


def test_data_check_samples_the_baseline_and_label_check_above_max_rows(tmp_path):
    """Near-duplicates are searched in every row; the TF-IDF baseline and the label check use a stated sample."""
    import pandas as pd

    ds = topic_corpus(300, noise=0.6)
    texts = list(ds.texts) + [t + " update" for t in ds.texts[:80]]
    labels = list(ds.labels) + list(ds.labels[:80])
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    full = json.loads(invoke("data", "check", "--data", path, "--json", "--max-rows", "0").stdout)
    r = invoke("data", "check", "--data", path, "--json", "--max-rows", "100")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["near_dup_clusters"] == full["near_dup_clusters"] >= 60  # every row searched either way
    assert rep["naive_split"]["n_test_leaked"] == full["naive_split"]["n_test_leaked"]
    smp = rep["naive_split"]["sampled"]
    assert smp["n_test_scored"] == 76 == smp["n_test"] and smp["n_train"] > smp["n_train_fit"] >= 100
    assert full["naive_split"]["sampled"] is None
    assert rep["label_quality"]["n"] == 100 and rep["label_quality"]["n_total"] == 380
    assert full["label_quality"]["n"] == 380
    table = invoke("data", "check", "--data", path, "--max-rows", "100")
    assert "train rows and scored on" in table.output and "stratified sample" in table.output
    bad = invoke("data", "check", "--data", path, "--max-rows", "50")
    assert bad.exit_code == 2 and "--max-rows" in bad.output
