"""Embeddings streamed to a .npy file one chunk at a time (issue #18: bounded memory whatever the corpus)."""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptlab.cli import app
from adaptlab.encoders import EmbeddingCache, embed, embed_chunks, embed_to_file, load_encoder
from adaptlab.encoders.stream import _NPY_PREAMBLE
from adaptlab.errors import ConfigError
from tiny_models import build_tiny_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CountingEncoder:
    """Deterministic vectors (a hash of each text); records how many texts each `encode` call got."""

    fingerprint, name, precision = "counting-v1", "counting", "fp32"

    def __init__(self, dim: int = 384, fail_after: int | None = None) -> None:
        self.dim, self.calls, self.fail_after = dim, [], fail_after

    def encode(self, texts, batch_size=32, show_progress=None):
        if self.fail_after is not None and sum(self.calls) >= self.fail_after:
            raise RuntimeError("killed")
        self.calls.append(len(texts))
        seeds = [abs(hash(t)) % 2**32 for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(self.dim, dtype=np.float32) for s in seeds])


def test_file_matches_embed_and_is_written_chunk_by_chunk(tmp_path):
    texts = [f"text number {i % 700}" for i in range(1000)]  # repeats: each chunk encodes its distinct texts once
    enc = CountingEncoder(dim=8)
    sizes = []
    out = tmp_path / "v.npy"

    def on_chunk(done, n):
        partial = list(tmp_path.glob(".v.npy.*.partial"))
        sizes.append((done, partial[0].stat().st_size, out.exists()))

    embed_to_file(enc, texts, out, chunk_size=300, on_chunk=on_chunk)
    assert np.array_equal(np.load(out), embed(CountingEncoder(dim=8), texts))
    # Each chunk is on disk before the next is encoded; the final name appears only once the file is complete.
    assert sizes == [(d, _NPY_PREAMBLE + d * 8 * 4, False) for d in (300, 600, 900, 1000)]
    assert max(enc.calls) <= 300 and len(enc.calls) == 4
    assert not list(tmp_path.glob("*.partial"))
    assert np.load(out, mmap_mode="r").shape == (1000, 8)


def test_memory_holds_one_chunk_not_the_matrix():
    n, dim, chunk = 20_000, 384, 512
    texts = [f"document {i}" for i in range(n)]
    enc = CountingEncoder(dim=dim)
    tracemalloc.start()
    try:
        peak_rows = 0
        for block in embed_chunks(enc, texts, chunk_size=chunk):
            peak_rows = max(peak_rows, len(block))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_rows == chunk and sum(enc.calls) == n
    matrix = n * dim * 4  # 30 MB: what `embed` would hold
    assert peak < matrix / 5, f"peak {peak / 2**20:.1f} MiB"


def test_streamed_file_uses_and_fills_the_cache(tmp_path):
    texts = [f"row {i}" for i in range(50)]
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        embed_to_file(CountingEncoder(dim=4), texts, tmp_path / "a.npy", cache=cache, chunk_size=16)
        again = CountingEncoder(dim=4)
        embed_to_file(again, texts, tmp_path / "b.npy", cache=cache, chunk_size=16)
    assert again.calls == [] and np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_interrupted_run_leaves_no_file(tmp_path):
    out = tmp_path / "v.npy"
    with pytest.raises(RuntimeError):
        embed_to_file(CountingEncoder(dim=4, fail_after=20), [f"t{i}" for i in range(100)], out, chunk_size=10)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=".npy"):
        embed_to_file(CountingEncoder(dim=4), ["a"], tmp_path / "v.csv")
    with pytest.raises(ConfigError, match="chunk_size"):
        next(embed_chunks(CountingEncoder(dim=4), ["a"], chunk_size=0))


def test_cli_embed_table_and_json(tmp_path):
    folder = build_tiny_encoder(tmp_path / "enc")
    texts = [f"the match ended {i} goals" for i in range(30)] + [""]
    data = tmp_path / "texts.csv"
    pd.DataFrame({"text": texts}).to_csv(data, index=False)
    runner = CliRunner()
    base = ["encoders", "embed", "--data", str(data), "--encoder", str(folder), "--home", str(tmp_path / "home"),
            "--on-invalid", "drop"]
    r = runner.invoke(app, base + ["-o", str(tmp_path / "a.npy"), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["n"] == 30 and rep["dropped_rows"] == [31] and rep["cache"] == {"hits": 0, "misses": 30}
    X = np.load(tmp_path / "a.npy")
    assert np.allclose(X, embed(load_encoder(folder), texts[:30]), atol=1e-6)
    r = runner.invoke(app, base + ["-o", str(tmp_path / "b.npy")])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # the console wraps long lines
    assert "wrote 30 x 32 float32 vectors" in text and "30 read, 0 encoded" in text and "dropped 1 row(s)" in text
    assert rep["precision"] == "fp32" and "fp32)" in text  # auto, on a machine without native bf16 (conftest)
    bad = runner.invoke(app, base + ["-o", str(tmp_path / "c.csv")])
    assert bad.exit_code == 2 and ".npy" in bad.output


def test_cli_embed_precision_bf16_has_its_own_cache_entries(tmp_path):
    folder = build_tiny_encoder(tmp_path / "enc")
    texts = [f"the match ended {i} goals" for i in range(12)]
    data = tmp_path / "texts.csv"
    pd.DataFrame({"text": texts}).to_csv(data, index=False)
    runner = CliRunner()
    base = ["encoders", "embed", "--data", str(data), "--encoder", str(folder), "--home", str(tmp_path / "home")]
    assert runner.invoke(app, base + ["-o", str(tmp_path / "fp32.npy")]).exit_code == 0
    r = runner.invoke(app, base + ["-o", str(tmp_path / "bf16.npy"), "--precision", "bf16", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["precision"] == "bf16" and rep["cache"] == {"hits": 0, "misses": 12}  # never the fp32 vectors
    X32, X16 = np.load(tmp_path / "fp32.npy"), np.load(tmp_path / "bf16.npy")
    assert not np.array_equal(X32, X16) and (X32 * X16).sum(1).min() > 0.99
    r = runner.invoke(app, base + ["-o", str(tmp_path / "x.npy"), "--precision", "fp8"])
    assert r.exit_code == 2 and "fp8" in r.output and "Traceback" not in r.output
