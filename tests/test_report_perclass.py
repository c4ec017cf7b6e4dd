"""The report's per-class table and confusion matrix, contents list, escaping, words and charts (issue #31 item 8)."""
import base64
import html as htmllib
import re

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from adaptlab.config import StudyConfig
from adaptlab.data import TextDataset
from adaptlab.evaluate import Study
from adaptlab.report import build_report, plots
from adaptlab.store import RunStore
from synthetic import topic_corpus

XSS = {"sport": "<script>alert(1)</script>", "tech": "a|b", "money": "money"}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A small stored study (tfidf, 3 seeds) whose labels hold a pipe and a script tag."""
    h = tmp_path_factory.mktemp("perclass")
    ds = topic_corpus(150, seed=5, noise=0.6)
    Study(StudyConfig(rungs=["tfidf"], seeds=3, n_boot=100, name="per-class"), home=h).run(
        TextDataset(ds.texts, [XSS[lab] for lab in ds.labels]))
    return h


@pytest.fixture(scope="module")
def rep(home):
    return build_report(RunStore(home / "runs.sqlite"), "latest", home=home)


def _expected(home):
    """Per-class scores (mean over seeds) and the summed confusion matrix, from the stored predictions."""
    store = RunStore(home / "runs.sqlite")
    results = [r for r in store.study_results(store.get_study("latest")["study_id"]) if r["rung"] == "tfidf"]
    labels = sorted(XSS.values())
    scores, matrix, seeds = [], 0, []
    for r in sorted(results, key=lambda r: r["seed"]):
        yt, yp = r["predictions"]["y_true"], r["predictions"]["y_pred"]
        scores.append(precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0)[:3])
        matrix = matrix + confusion_matrix(yt, yp, labels=labels)
        seeds.append(r["seed"])
    support = [sum(1 for y in results[0]["predictions"]["y_true"] if y == c) for c in labels]
    return labels, np.mean(scores, axis=0), support, matrix, seeds


def _html_rows(raw, table_id):
    table = raw.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]


def test_per_class_table_and_confusion_matrix_match_sklearn(home, rep):
    labels, mean, support, matrix, seeds = _expected(home)
    view = rep.context["per_class"]
    assert view["rung"] == "tfidf" and view["seeds"] == seeds and len(seeds) == 3
    rows = _html_rows(rep.html, "per-class-table")
    assert rows[0] == ["class", "precision", "recall", "F1", "support"]
    got = {htmllib.unescape(r[0]): r[1:] for r in rows[1:]}
    assert set(got) == set(labels)
    for i, c in enumerate(labels):
        assert got[c] == [f"{mean[0, i]:.4f}", f"{mean[1, i]:.4f}", f"{mean[2, i]:.4f}", str(support[i])], c
    cm = _html_rows(rep.html, "confusion-table")
    assert [htmllib.unescape(x) for x in cm[0][1:]] == view["labels"]
    order = [labels.index(lab) for lab in view["labels"]]
    for k, row in enumerate(cm[1:]):
        assert htmllib.unescape(row[0]) == view["labels"][k]
        assert [int(x) for x in row[1:]] == [int(matrix[order[k], j]) for j in order]
    assert int(matrix.sum()) == 3 * sum(support)  # every test item once per seed
    assert 'id="per-class-seeds">0, 1, 2<' in rep.html
    # The Markdown has the same numbers, in a table of its own.
    md = rep.markdown
    assert "| class | precision | recall | F1 | support |" in md
    i = labels.index("money")
    assert f"| money | {mean[0, i]:.4f} | {mean[1, i]:.4f} | {mean[2, i]:.4f} | {support[i]} |" in md
    assert "| true ↓ predicted → |" in md


def test_labels_are_escaped_in_both_formats(rep):
    assert "<script>alert" not in rep.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in rep.html
    assert "<script>" not in rep.markdown
    assert "| &lt;script>alert(1)&lt;/script> |" in rep.markdown  # a class row of the per-class table
    assert "| a\\|b |" in rep.markdown  # the pipe cannot split the row
    header = next(line for line in rep.markdown.splitlines() if line.startswith("| true ↓ predicted →"))
    assert header.count(" |") == 4 and "a\\|b" in header  # 1 + 3 classes, the pipe escaped


def test_contents_list_links_every_section(rep):
    nav = rep.html.split('<nav id="contents"', 1)[1].split("</nav>", 1)[0]
    targets = re.findall(r'href="#([\w-]+)"', nav)
    assert targets[:3] == ["decision", "f1", "per-class"] and "references" in targets
    for t in targets:
        assert f'id="{t}"' in rep.html, t
        assert f'<a id="{t}"></a>' in rep.markdown, t
    # Sections without data are not listed (no learning curve, no slices in this study).
    assert "learning-curve" not in targets and "slices" not in targets
    assert "**Contents**" in rep.markdown and "[Per class and confusion matrix](#per-class)" in rep.markdown


def test_no_empty_chart_and_a_line_saying_why(rep):
    imgs = re.findall(r'<img class="plot"[^>]+src="data:image/png;base64,([^"]+)"', rep.html)
    assert len(imgs) == len(rep.images) == 1  # F1 per rung only: one rung has no paired comparison
    assert base64.b64decode(imgs[0])[:4] == b"\x89PNG"
    assert "No chart of paired differences: the study has no comparison" in rep.html
    assert "*No chart of paired differences" in rep.markdown
    assert "paired_differences.png" not in rep.markdown


def test_training_diagnostics_in_words_one_metric_per_panel(home, tmp_path, monkeypatch):
    import shutil

    h = tmp_path / "h"
    shutil.copytree(home, h)
    store = RunStore(h / "runs.sqlite")
    for r in store.study_results(store.get_study("latest")["study_id"]):
        r["metrics"]["diagnostics"] = {
            "history": [{"epoch": 1.0, "step": s, "train_loss": tl, "val_f1": vf, "f1_gap": g}
                        for s, tl, vf, g in ((0, 1.2, 0.3, 0.1), (1, 0.9, 0.5, 0.2), (2, 0.6, 0.55, 0.3))],
            "movement": {"overall": 0.0, "per_layer": {"layer.0": 0.0, "layer.1": 0.0}},
            "movement_sentence": "The backbone did not move."}
        store.put_result(r["result_key"], rung=r["rung"], seed=r["seed"], metrics=r["metrics"],
                         predictions=r["predictions"], manifest=r["manifest"])
    panels = []
    real = plots.to_png

    def spy(fig):
        panels.append([ax.get_ylabel() for ax in fig.axes])
        return real(fig)

    monkeypatch.setattr(plots, "to_png", spy)
    rep = build_report(store, "latest", home=h)
    assert "training_curves" in rep.images and "backbone_movement" not in rep.images  # all-zero movement: no chart
    assert ["F1", "gap", "loss"] in [sorted(p) for p in panels]  # one metric per axis, not F1, loss and gap on one
    assert "No chart of backbone movement per layer: no rung stored a non-zero weight change" in rep.html
    for key in ("movement_sentence", "movement.overall", "train_loss"):
        assert key not in rep.html and key not in rep.markdown, key
    assert "<b>scratch TF-IDF (tfidf)</b>: The backbone did not move." in rep.html
    assert "backbone movement, overall" in rep.html


def test_series_plot_ticks_whole_steps_and_movement_plot_skips_zeros(monkeypatch):
    ticks = []
    real = plots.to_png

    def spy(fig):
        ticks.append(list(fig.axes[0].get_xticks()))
        return real(fig)

    monkeypatch.setattr(plots, "to_png", spy)
    assert plots.series_plot({"lora": {"val_loss": [0.9, 0.8]}}, "t")[:4] == b"\x89PNG"
    assert all(float(t).is_integer() for t in ticks[0])  # no tick at 1.5 epochs
    assert plots.movement_plot({"lora": {"layer.0": 0.0}}) is None
    assert plots.series_plot({}, "t") is None
