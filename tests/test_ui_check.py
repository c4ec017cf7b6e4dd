"""The web app's check page: every warning `adaptlab data check` gives, the first rows (escaped), real sizes."""
import html
import json

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from adaptlab.cli import app as cli_app
from adaptlab.ui import UISettings, create_app
from adaptlab.ui.uploads import file_size
from synthetic import topic_corpus

BASE = "http://127.0.0.1:8765"
ROTATE = {"sport": "tech", "tech": "money", "money": "sport"}


@pytest.fixture
def client(tmp_path):
    settings = UISettings(home=tmp_path / "home", models_root=tmp_path / "models", n_boot=100, torch_threads=1)
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


@pytest.fixture
def noisy_csv(tmp_path):
    """150 texts, 30% of the labels rotated (label noise), a repeated text and a script tag in the first row."""
    ds = topic_corpus(150, seed=2, noise=0.2)
    labels = [ROTATE[lab] if i % 10 < 3 else lab for i, lab in enumerate(ds.labels)]
    texts = list(ds.texts)
    texts[0] = "<script>alert(1)</script> goal match team | " + texts[0]
    texts[5] = texts[4]  # a near-duplicate pair
    labels[5] = labels[4]
    path = tmp_path / "noisy.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


def _web_check(client, path):
    r = client.post("/upload", files={"labeled": (path.name, path.read_bytes(), "text/csv")}, follow_redirects=False)
    uid = r.headers["location"].rstrip("/").split("/")[-1]
    columns = client.get(f"/data/{uid}")
    r = client.post(f"/data/{uid}/check", data={"text_col": "text", "label_col": "label"}, follow_redirects=False)
    assert r.headers["location"] == f"/data/{uid}/configure", r.text[:500]
    return columns.text, client.get(f"/data/{uid}/configure").text


def test_web_check_shows_every_warning_the_cli_gives(client, noisy_csv):
    r = CliRunner().invoke(cli_app, ["data", "check", "--data", str(noisy_csv), "--json"])
    assert r.exit_code == 0, r.output
    cli = json.loads(r.stdout)["warnings"]
    codes = [w["code"] for w in cli]
    assert "label_noise" in codes and "near_duplicates" in codes
    _, page = _web_check(client, noisy_csv)
    text = html.unescape(page)
    assert "passed every check" not in text and "passed validation" not in text
    assert f"can be used, with <b>{len(cli)} warnings</b> below" in text
    shown = text.split('id="data-warnings"', 1)[1].split("</div>", 1)[0]
    for w in cli:
        assert f'id="warning-{w["code"]}"' in shown and w["message"] in shown and w["fix"] in shown, w["code"]
    assert shown.count("<li ") == len(cli)  # no more, no fewer than the CLI's


def test_check_page_previews_rows_escaped_with_real_sizes(client, noisy_csv):
    columns, page = _web_check(client, noisy_csv)
    size = noisy_csv.stat().st_size
    assert size < 1_000_000 and file_size(size) == f"{size / 1000:.1f} KB"
    for p in (columns, page):
        assert file_size(size) in p and "(0.0 MiB)" not in p and "MiB)" not in p
        assert "<script>alert(1)" not in p and "&lt;script&gt;alert(1)&lt;/script&gt; goal match team |" in p
    # The columns page: the file's first rows under its own header; the check page: rows, sizes, the first rows.
    preview = columns.split('id="file-preview"', 1)[1].split("</details>", 1)[0]
    assert "<th>text</th><th>label</th>" in preview and preview.count("<tr>") == 6
    assert '<b id="data-rows">150</b>' in page and f'<span id="data-size">{file_size(size)}</span>' in page
    checked = page.split('id="data-preview"', 1)[1].split("</details>", 1)[0]
    assert "The first 10 of 150 rows" in checked and checked.count("<tr>") == 11


def test_a_clean_file_passes_every_check(client, tmp_path):
    ds = topic_corpus(60, seed=1, noise=0.0)
    path = tmp_path / "clean.csv"
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    r = CliRunner().invoke(cli_app, ["data", "check", "--data", str(path), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["warnings"] == []
    _, page = _web_check(client, path)
    assert "The data passed every check" in page and 'id="data-warnings"' not in page


@pytest.mark.parametrize("n, text", [(0, "0 bytes"), (1, "1 byte"), (999, "999 bytes"), (1000, "1.0 KB"),
                                     (5432, "5.4 KB"), (999_949, "999.9 KB"), (999_960, "1.0 MB"),
                                     (2_500_000, "2.5 MB"), (3_200_000_000, "3.2 GB")])
def test_file_size_words(n, text):
    assert file_size(n) == text
