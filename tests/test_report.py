"""The study report: built from a real small study, every number equal to the run store's, self-contained."""
import base64
import html as htmllib
import json
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.config import StudyConfig
from adaptlab.decide import Evidence, decide
from adaptlab.evaluate import Study
from adaptlab.report import build_report, render_decision, save_analysis
from adaptlab.store import RunStore
from synthetic import topic_corpus


@pytest.fixture(scope="module")
def study_home(tmp_path_factory, tiny_encoder_dir):
    """A real study: tfidf + probe on the tiny encoder, 3 seeds, stored in a fresh run store."""
    home = tmp_path_factory.mktemp("report-home")
    cfg = StudyConfig(rungs=["tfidf", "probe"], seeds=3, n_boot=200, encoder=str(tiny_encoder_dir),
                      name="report test study")
    Study(cfg, home=home).run(topic_corpus(240, noise=0.5))
    return home


@pytest.fixture(scope="module")
def built(study_home):
    store = RunStore(study_home / "runs.sqlite")
    rep = build_report(store, "latest", home=study_home)
    out = study_home / "out"
    html_path, md_path = rep.write(out / "report.html", out / "report.md")
    return store, rep, html_path, md_path


def test_report_numbers_equal_the_store(built):
    store, rep, html_path, md_path = built
    html = htmllib.unescape(html_path.read_text(encoding="utf-8"))
    md = md_path.read_text(encoding="utf-8")
    summary = store.get_study("latest")["summary"]
    for row in summary["rows"]:
        for value in [row["mean"], row["std"], row["ci_low"], row["ci_high"], row["val_f1_mean"], *row["f1_by_seed"]]:
            assert f"{value:.4f}" in html, (row["rung"], value)
            assert f"{value:.4f}" in md, (row["rung"], value)
        assert f"{row['n_seeds']}" in html
    # Per-seed F1 in the store's results (not only the summary) are the plotted/listed points.
    for r in store.study_results(summary["study_id"]):
        assert f"{r['metrics']['test']['f1']:.4f}" in html
    assert f"test {summary['split']['n_test']} (sealed)" in html
    # The cost table is the mean of the stored per-seed cost records.
    for cost in rep.context["costs"]:
        runs = [p["cost"] for p in summary["per_seed"] if p["rung"] == cost["rung"]]
        assert cost["fit_seconds"] == pytest.approx(sum(c["fit_seconds"] for c in runs) / len(runs))
        assert cost["n_seeds"] == len(runs) == 3
    assert summary["split"]["leakage_summary"] in html and summary["split"]["leakage_summary"] in md
    # The paired comparison in the report is the decision's, computed from the stored predictions.
    c = rep.decision.comparison("tfidf", "probe")
    assert c.paired and c.n_test == summary["n_test"]
    assert f"{c.diff:+.4f}" in html and f"[{c.ci_low:.4f}, {c.ci_high:.4f}]" in html and f"{c.diff:+.4f}" in md


def test_report_holds_decision_transfer_note_and_defense(built):
    _, rep, html_path, md_path = built
    html = htmllib.unescape(html_path.read_text(encoding="utf-8"))
    md = md_path.read_text(encoding="utf-8")
    d = rep.decision
    for text in (d.headline, d.flip_inspection, "Transfer note", "Six-question defense", "What was frozen",
                 "Would you run end-to-end fine-tuning at all"):
        assert text in html and text in md
    assert html.count('<li><b>') >= 6  # six answers + transfer-note items
    assert d.chosen in ("tfidf", "probe")
    assert "Policy and rules used" in html and "regime.few-labels" in html
    # Rules by what they say; their sources only in the references table under them.
    assert "Under 1,000 labels, keep the encoder frozen" in html and 'id="references"' in html
    refs = html.split('id="references"', 1)[1]
    assert "Clinic 21" in refs and "Clinic 21" not in html.split('id="references"', 1)[0]


def test_html_is_self_contained_with_embedded_plots(built):
    _, rep, html_path, md_path = built
    raw = html_path.read_text(encoding="utf-8")
    imgs = re.findall(r'<img[^>]+src="(data:image/png;base64,[^"]+)"', raw)
    assert len(imgs) >= 2  # F1 per rung + paired differences
    for uri in imgs:
        assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:)?//', raw), "no CDN or remote asset"
    assert "<script" not in raw
    files = md_path.parent / "report_files"
    assert (files / "f1_by_rung.png").read_bytes()[:4] == b"\x89PNG"
    assert "report_files/f1_by_rung.png" in md_path.read_text(encoding="utf-8")
    # Optional sections stay out when their data do not exist.
    assert 'id="mmd"' not in raw and 'id="learning-curve"' not in raw and 'id="slices"' not in raw


def test_optional_sections_appear_with_their_data(study_home, tmp_path):
    home = tmp_path / "h"
    shutil.copytree(study_home, home, ignore=shutil.ignore_patterns("out"))
    store = RunStore(home / "runs.sqlite")
    rec = store.get_study("latest")
    # Diagnostics as the diagnostics stage stores them: study-level MMD (pretrained vs refit) and per-result curves.
    summary = rec["summary"]
    summary["diagnostics"] = {
        "refit_movement": [{"mmd": {"mmd2": 0.00012, "p_value": 0.43, "bandwidth": 1.0, "n_x": 200, "n_y": 200,
                                    "n_permutations": 200, "seed": 0}, "mean_cosine": 0.999, "n_texts": 200,
                            "moved": False}],
        "domain_shift": {"mmd": {"mmd2": 0.31, "p_value": 0.005}, "reference": "BBC News", "shifted": True},
        "refit_cost": {"wall_seconds": 180000.0}}
    store.set_summary(rec["study_id"], summary)
    for r in store.study_results(rec["study_id"]):
        if r["rung"] == "probe":
            # the shape the training rungs store: per-evaluation history, movement per layer, sentences
            r["metrics"]["diagnostics"] = {
                "history": [{"step": s, "train_loss": tl, "val_loss": vl, "val_f1": vf}
                            for s, tl, vl, vf in ((0, None, 1.1, 0.3), (10, 0.9, 0.95, 0.5), (20, 0.6, 0.9, 0.55))],
                "movement": {"overall": 0.0123, "per_layer": {"embeddings": 0.001, "layer.0": 0.02},
                             "most_moved": {"unit": "layer.0", "ratio": 0.02}},
                "movement_sentence": "The backbone moved 1.23% overall from its pretrained weights.",
                "trainable_parameters": 1234}
            store.put_result(r["result_key"], rung=r["rung"], seed=r["seed"], metrics=r["metrics"],
                             predictions=r["predictions"], manifest=r["manifest"])
    save_analysis(home, rec["study_id"], "learning_curve", {
        "summary": "probe gains +0.050 from 50% to 100% of the labels: more labels pay.", "verdict": "more-labels",
        "points": [{"rung": "probe", "fraction": f, "n_labels": int(144 * f), "n_seeds": 2, "mean": m,
                    "ci_low": m - 0.05, "ci_high": m + 0.05} for f, m in ((0.25, 0.31), (0.5, 0.35), (1.0, 0.40))]})
    save_analysis(home, rec["study_id"], "slices", {
        "rung": "probe", "overall_f1": 0.84,
        "slices": [{"slice": "pediatric", "n": 6, "share": 0.05, "f1": 0.41, "error_share": 0.3},
                   {"slice": "adult", "n": 42, "share": 0.95, "f1": 0.86, "error_share": 0.7}]})
    rep = build_report(store, "latest", home=home)
    raw = rep.html
    for anchor in ('id="mmd"', 'id="diagnostics"', 'id="learning-curve"', 'id="slices"'):
        assert anchor in raw, anchor
    assert "0.4300" in raw or "0.430" in raw  # the MMD p-value from the store
    assert "pediatric" in raw and "more labels pay" in raw and "0.0123" in raw
    assert "The backbone moved 1.23% overall" in raw and "In-domain texts vs BBC News" in raw
    for name in ("training_curves", "backbone_movement", "learning_curve", "slices"):
        assert name in rep.images, name
    assert "report_files/backbone_movement.png" in rep.markdown.replace("{{FILES}}", "report_files")
    assert rep.evidence.mmd_p_value == 0.43 and rep.evidence.refit_hours == pytest.approx(50.0)
    assert rep.decision.flags_for("switch.rare-slice")  # the slice analysis reached the decision


def test_render_decision_is_a_rich_panel():
    from rich.console import Console

    d = decide(Evidence.from_tables({"probe": [0.77, 0.78, 0.79], "refit": [0.82]}, n_labels=5200,
                                    n_unlabeled=80000))
    console = Console(width=120, record=True)
    console.print(render_decision(d))
    text = console.export_text()
    assert "not enough seeds: run ≥ 3" in text and "flip inspection" in text and d.headline[:40] in text


# -- the CLI ----------------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_report_decide_and_study_run_print_the_decision(study_home, tmp_path):
    out_html = tmp_path / "r.html"
    r = runner.invoke(app, ["report", "--home", str(study_home), "-o", str(out_html)])
    assert r.exit_code == 0, r.output
    assert out_html.is_file() and (tmp_path / "r.md").is_file() and "decision" in r.output
    r = runner.invoke(app, ["decide", "--home", str(study_home), "--json", "--margin", "0.05"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["decision"]["policy"]["margin"] == 0.05 and len(payload["defense"]) == 6
    r = runner.invoke(app, ["decide", "--home", str(study_home), "--defense"])
    assert r.exit_code == 0 and "Six-question defense" in r.output
    r = runner.invoke(app, ["report", "nope", "--home", str(study_home), "-o", str(out_html)])
    assert r.exit_code != 0 and "no study 'nope'" in r.output


def test_study_run_and_json_carry_the_decision(tmp_path):
    import pandas as pd

    ds = topic_corpus(150, noise=0.6)
    csv = tmp_path / "train.csv"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(csv, index=False)
    home = tmp_path / "home"
    r = runner.invoke(app, ["study", "run", "--data", str(csv), "--rungs", "tfidf", "--seeds", "3", "--home", str(home)])
    assert r.exit_code == 0, r.output
    assert "decision: tfidf" in r.output and "flip inspection" in r.output
    r = runner.invoke(app, ["study", "run", "--data", str(csv), "--rungs", "tfidf", "--seeds", "3", "--home", str(home),
                            "--json"])
    payload = json.loads(r.stdout)
    assert payload["decision"]["chosen"] == "tfidf" and payload["rows"][0]["rung"] == "tfidf"


# -- the browser ----------------------------------------------------------------------------------------
def test_report_renders_in_headless_chromium(built, tmp_path):
    from PIL import Image

    _, rep, html_path, _ = built
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: run scripts/dev.sh test (it installs it) or apt-get install chromium"
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1200,2400", html_path.resolve().as_uri()],
        capture_output=True, text=True, timeout=60)
    assert shot.is_file(), proc.stderr[-2000:]
    img = Image.open(shot).convert("L")
    assert img.size == (1200, 2400)
    hist = img.histogram()
    white = sum(hist[250:])
    dark = sum(hist[:100])  # text and plot lines
    total = img.size[0] * img.size[1]
    assert white < 0.97 * total and dark > 0.003 * total, "the screenshot is blank"
    raw = html_path.read_text(encoding="utf-8")
    assert raw.count('<img class="plot"') >= 2
    assert htmllib.escape(rep.decision.headline, quote=False)[:60] in raw


def test_report_shows_coverage_vs_accuracy_of_the_rung_from_its_stored_probabilities(built):
    import numpy as np

    store, rep, html_path, md_path = built
    cov = rep.context["coverage"]
    rung = cov["rung"]
    # Recomputed by hand from the store: pooled over seeds, confidence = the top stored probability.
    conf, ok = [], []
    for r in store.study_results(store.get_study("latest")["study_id"]):
        if r["rung"] == rung:
            P = np.asarray(r["predictions"]["proba"])
            conf += P.max(axis=1).tolist()
            ok += [a == b for a, b in zip(r["predictions"]["y_pred"], r["predictions"]["y_true"])]
    conf, ok = np.asarray(conf), np.asarray(ok)
    assert cov["n"] == len(conf) and len(cov["seeds"]) == 3
    for row in cov["rows"]:
        m = conf >= row["min_confidence"]
        assert row["answered"] == m.sum() and row["to_review"] == (~m).sum()
        if m.any():
            assert row["accuracy"] == pytest.approx(ok[m].mean())
    html, md = html_path.read_text(encoding="utf-8"), md_path.read_text(encoding="utf-8")
    assert 'id="coverage-table"' in html and "<svg" in html and "--min-confidence P" in html
    assert "## Coverage vs accuracy" in md and "| 0.90 |" in md


def test_the_studys_warnings_head_the_report(built):
    store, rep, html_path, md_path = built
    warnings = store.get_study(store.list_studies()[0]["study_id"])["summary"]["warnings"]
    assert any("sealed test has only" in w for w in warnings)  # 240 texts: a small sealed test
    html, md = html_path.read_text(), md_path.read_text()
    block = html.split('id="study-warnings"', 1)[1].split("</div>", 1)[0]
    assert "sealed test has only" in block and html.index('id="study-warnings"') < html.index('id="f1"')
    assert "Warnings from the study" in md and "sealed test has only" in md.split("Warnings from the study", 1)[1]
