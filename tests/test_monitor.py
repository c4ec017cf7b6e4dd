"""Monitoring (adaptlab.monitor): reference set persistence, drift, kNN placement, neighbour
stability, embedding age and the bias audit. Synthetic arrays for most, the tiny encoder for text."""
from __future__ import annotations

import doctest
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from adaptlab.data.dataset import text_hash
from adaptlab.errors import ConfigError
from adaptlab.monitor import (
    NeighborIndex, ReferenceSet, bias_audit, drift_from_texts, embedding_age, embedding_drift, encoder_stability,
    neighbor_stability, place_embeddings, place_new_items, refresh,
)
from adaptlab.monitor import age, bias, drift, neighbors, reference, stability
from adaptlab.monitor.reference import JSON_FILE, TENSOR_FILE
from synthetic import topic_corpus
from tiny_models import build_tiny_encoder


class CountingEmbed:
    """A deterministic fake encoder that records how many texts it was asked to embed."""

    def __init__(self, dim: int = 8, salt: str = "") -> None:
        self.dim, self.salt, self.calls, self.texts = dim, salt, 0, []

    def __call__(self, texts):
        self.calls += 1
        self.texts += list(texts)
        rows = []
        for t in texts:
            seed = int(text_hash(self.salt + t)[:8], 16)
            rows.append(np.random.default_rng(seed).normal(size=self.dim))
        return np.asarray(rows, dtype=np.float32)


@pytest.fixture(scope="module")
def topic():
    return topic_corpus(n=120, seed=0)


@pytest.fixture(scope="module")
def tiny_embed(tiny_encoder_dir):
    from adaptlab.encoders import Encoder

    return Encoder.from_pretrained(tiny_encoder_dir, device="cpu")


def test_module_examples_run():
    for mod in (reference, drift, neighbors, stability, age, bias):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, mod.__name__


# ------------------------------------------------------------------------------------------ reference set
def test_reference_build_save_load_round_trip_is_exact(tmp_path, tiny_embed, topic, one_torch_thread):
    texts, labels = topic.texts[:20], topic.labels[:20]
    ids = [f"doc-{i}" for i in range(20)]
    calls = []

    def embed(batch):
        calls.append(len(batch))
        return tiny_embed.encode(batch)

    ref = ReferenceSet.build(ids, texts, embed, tiny_embed.fingerprint, labels=labels, batch_size=8,
                             encoder_name="tiny")
    assert calls == [8, 8, 4]
    assert ref.embeddings.dtype == np.float32 and ref.embeddings.shape == (20, tiny_embed.dim)
    np.testing.assert_allclose(ref.embeddings, tiny_embed.encode(texts), atol=1e-5)
    assert ref.text_hashes == [text_hash(t) for t in texts]
    assert ref.fingerprint_counts() == {tiny_embed.fingerprint: 20}

    ref.save(tmp_path / "ref")
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == [JSON_FILE, TENSOR_FILE]
    back = ReferenceSet.load(tmp_path / "ref")
    assert back.embeddings.tobytes() == ref.embeddings.tobytes()
    assert (back.ids, back.text_hashes, back.labels, back.fingerprints) == (ids, ref.text_hashes, labels,
                                                                           ref.fingerprints)
    assert back.encoders == {tiny_embed.fingerprint: {"name": "tiny"}}
    assert back.position("doc-7") == 7
    assert json.loads(json.dumps(back.summary()))["label_counts"] == {"money": 6, "sport": 7, "tech": 7}


def _rewrite(folder: Path, mutate) -> None:
    doc = json.loads((folder / JSON_FILE).read_text())
    mutate(doc)
    (folder / JSON_FILE).write_text(json.dumps(doc))


def _resign(folder: Path) -> None:
    """Re-record the tensor file's hash, as an attacker who also edits the JSON would."""
    from adaptlab.store.files import sha256_file as _sha256

    _rewrite(folder, lambda d: d.__setitem__("embeddings_sha256", _sha256(folder / TENSOR_FILE)))


def test_reference_load_refuses_tampered_unknown_or_inconsistent_content(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    ref = ReferenceSet.from_embeddings(["a", "b", "c"], ["x", "y", "z"], rng.normal(size=(3, 4)), "fp1")
    good = tmp_path / "good"
    ref.save(good)

    def fresh(name):
        folder = tmp_path / name
        ReferenceSet.load(good).save(folder)
        return folder

    f = fresh("tampered")
    raw = bytearray((f / TENSOR_FILE).read_bytes())
    raw[-1] ^= 0xFF
    (f / TENSOR_FILE).write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="SHA-256"):
        ReferenceSet.load(f)

    f = fresh("unknown-key")
    _rewrite(f, lambda d: d.__setitem__("code", "import os"))
    with pytest.raises(ConfigError, match=r"unknown keys \['code'\]"):
        ReferenceSet.load(f)

    f = fresh("short-ids")
    _rewrite(f, lambda d: d.__setitem__("ids", ["a", "b"]))
    with pytest.raises(ConfigError, match="'ids' must be a list of 3"):
        ReferenceSet.load(f)

    f = fresh("extra-tensor")
    save_file({"embeddings": ref.embeddings, "payload": np.zeros(2, np.float32)}, str(f / TENSOR_FILE))
    _resign(f)
    with pytest.raises(ConfigError, match="expected only 'embeddings'"):
        ReferenceSet.load(f)

    f = fresh("wrong-shape")
    save_file({"embeddings": np.zeros((3, 5), np.float32)}, str(f / TENSOR_FILE))
    _resign(f)
    with pytest.raises(ConfigError, match=r"shape \(3, 5\)"):
        ReferenceSet.load(f)

    f = fresh("dup-ids")
    _rewrite(f, lambda d: d.__setitem__("ids", ["a", "a", "c"]))
    with pytest.raises(ConfigError, match="unique"):
        ReferenceSet.load(f)

    f = fresh("missing")
    (f / TENSOR_FILE).unlink()
    with pytest.raises(ConfigError, match="missing"):
        ReferenceSet.load(f)


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(_Boom.target),))


def test_reference_load_never_unpickles_files_in_the_folder(tmp_path):
    folder = tmp_path / "ref"
    ReferenceSet.from_embeddings(["a", "b"], ["x", "y"], np.eye(2), "fp").save(folder)
    _Boom.target = str(tmp_path / "pwned")
    for name in ("reference.pkl", "reference.pt", "embeddings.npy"):
        (folder / name).write_bytes(pickle.dumps(_Boom()))
    assert ReferenceSet.load(folder).ids == ["a", "b"]
    assert not (tmp_path / "pwned").exists()


def test_reference_rejects_inconsistent_construction():
    E = np.zeros((2, 3))
    with pytest.raises(ConfigError, match="unique"):
        ReferenceSet.from_embeddings(["a", "a"], ["x", "y"], E, "fp")
    with pytest.raises(ConfigError, match="2 rows but there are 3 texts"):
        ReferenceSet.from_embeddings(None, ["x", "y", "z"], E, "fp")
    with pytest.raises(ConfigError, match="text hashes"):
        ReferenceSet(["a", "b"], ["nothex", text_hash("y")], E, "fp")
    with pytest.raises(ConfigError, match="NaN"):
        ReferenceSet.from_embeddings(None, ["x", "y"], np.array([[0.0, np.nan, 1], [0, 0, 0]]), "fp")
    with pytest.raises(ConfigError, match="fingerprint"):
        ReferenceSet.from_embeddings(None, ["x", "y"], E, "")
    with pytest.raises(ConfigError, match="shape"):
        ReferenceSet.build(None, ["x", "y"], lambda t: np.zeros((1, 3)), "fp")


# ------------------------------------------------------------------------------------------ drift
def test_drift_detects_a_shifted_corpus_and_not_an_iid_resample():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(600, 32))
    shifted = rng.normal(size=(400, 32))
    shifted[:, [3, 17]] += 0.6                      # two dimensions move by 0.6 SD
    same = rng.normal(size=(400, 32))

    r = embedding_drift(ref, shifted, n_permutations=200, seed=0)
    assert r.drift and r.mmd.p_value < 0.01
    assert r.verdict.startswith("drift detected")
    assert {t["dim"] for t in r.dims["top"][:2]} == {3, 17}
    assert all(abs(t["shift_sd"] - 0.6) < 0.2 for t in r.dims["top"][:2])

    r0 = embedding_drift(ref, same, n_permutations=200, seed=0)
    assert not r0.drift and r0.mmd.p_value > 0.05
    assert r0.verdict.startswith("no significant drift")
    assert r0.dims["max_abs_shift_sd"] < 0.3
    assert r.mmd.mmd2 > 5 * abs(r0.mmd.mmd2)


def test_drift_pca_and_out_of_distribution_views():
    rng = np.random.default_rng(1)
    scales = np.array([5.0, 2.0] + [0.5] * 14)           # PC1 = dim 0, PC2 = dim 1
    ref = rng.normal(size=(500, 16)) * scales + 3.0       # offset: cosine geometry is not degenerate
    new = rng.normal(size=(300, 16)) * scales + 3.0
    new[:, 0] += 5.0                                      # one reference SD along PC1
    r = embedding_drift(ref, new, n_permutations=100, seed=0, n_components=3)
    pc1 = r.pca["components"][0]
    assert pc1["explained_variance_share"] > 0.7
    assert 0.8 < abs(pc1["mean_shift_sd"]) < 1.2
    assert abs(r.pca["components"][2]["mean_shift_sd"]) < 0.3
    assert "principal component 1" in r.verdict

    iid = embedding_drift(ref, rng.normal(size=(300, 16)) * scales + 3.0, n_permutations=100, seed=0)
    assert iid.ood["share"] < 0.12
    outliers = rng.normal(size=(300, 16)) * scales + 3.0
    far = rng.choice(300, 60, replace=False)
    outliers[far] = rng.normal(size=(60, 16)) * 0.5 - 3.0   # a cluster pointing the other way
    o = embedding_drift(ref, outliers, n_permutations=100, seed=0)
    assert o.ood["share"] >= 0.2
    assert set(np.flatnonzero(o.ood_flags)) >= set(far.tolist())
    assert {item["new_row"] for item in o.ood["items"]} <= set(far.tolist())


def test_drift_report_is_deterministic_json_safe_and_subsampled():
    rng = np.random.default_rng(2)
    ref, new = rng.normal(size=(700, 8)), rng.normal(size=(500, 8)) + 0.2
    a = embedding_drift(ref, new, n_permutations=50, max_points=300, seed=3)
    b = embedding_drift(ref, new, n_permutations=50, max_points=300, seed=3)
    c = embedding_drift(ref, new, n_permutations=50, max_points=300, seed=4)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict()["mmd"] != c.to_dict()["mmd"]
    assert (a.mmd.n_x, a.mmd.n_y) == (300, 300)
    assert (a.n_reference, a.n_new, a.ood["n_scored"]) == (700, 500, 500)
    json.dumps(a.to_dict(), allow_nan=False)
    text = str(a)
    assert "PC1" in text and "out of distribution" in text


def test_drift_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="different encoders"):
        embedding_drift(rng.normal(size=(10, 4)), rng.normal(size=(10, 5)))
    with pytest.raises(ConfigError, match="at least 2 row"):
        embedding_drift(rng.normal(size=(10, 4)), rng.normal(size=(1, 4)))
    with pytest.raises(ConfigError, match="max_points"):
        embedding_drift(rng.normal(size=(10, 4)), rng.normal(size=(10, 4)), max_points=1)


def test_drift_from_texts_embeds_new_texts_and_refuses_mixed_encoders():
    v1 = CountingEmbed(dim=6, salt="b")   # (salt "v1" happens to draw a borderline p = 0.05 sample)
    ref = ReferenceSet.build(None, [f"old text {i}" for i in range(300)], v1, "fp-v1")
    new_texts = [f"new text {i}" for i in range(200)]
    same = drift_from_texts(ref, new_texts, v1, "fp-v1", n_permutations=100, seed=0)
    assert not same.drift and v1.texts[-200:] == new_texts
    moved = drift_from_texts(ref, new_texts, lambda t: v1(t) + 0.5, "fp-v1", n_permutations=100, seed=0)
    assert moved.drift
    mixed = refresh(ref, CountingEmbed(dim=6, salt="v2"), "fp-v2", {"0": "old text 0"}, only_ids=["0"])
    with pytest.raises(ConfigError, match="299 of 300 reference rows"):
        drift_from_texts(mixed, new_texts, v1, "fp-v2")


def test_drift_on_texts_with_the_tiny_encoder(tiny_embed, one_torch_thread):
    ds = topic_corpus(n=240, seed=3)
    E = tiny_embed.encode(ds.texts)
    lab = np.asarray(ds.labels)
    shifted = embedding_drift(E[lab != "money"], E[lab == "money"], n_permutations=200, seed=0)
    assert shifted.drift and shifted.mmd.p_value < 0.01
    perm = np.random.default_rng(0).permutation(len(E))
    halves = embedding_drift(E[perm[:120]], E[perm[120:]], n_permutations=200, seed=0)
    assert not halves.drift and halves.mmd.p_value > 0.05


# ------------------------------------------------------------------------------------------ neighbours
def test_place_new_items_returns_the_planted_near_duplicate_first(tiny_embed, topic, one_torch_thread):
    ref = ReferenceSet.build([f"r{i}" for i in range(len(topic))], topic.texts, tiny_embed.encode,
                             tiny_embed.fingerprint, labels=topic.labels)
    src = 37
    words = topic.texts[src].split()
    edited = " ".join(words[:3] + ["quite"] + words[3:-2] + words[-1:])     # one word in, one word out
    others = topic_corpus(n=9, seed=99).texts
    new_texts = others[:4] + [edited] + others[4:]
    rows = place_new_items(ref.neighbor_index(), new_texts, tiny_embed.encode, k=3,
                           new_ids=[f"n{i}" for i in range(len(new_texts))])
    assert len(rows) == 3 * len(new_texts)
    planted = [r for r in rows if r.new_id == "n4"]
    assert [r.rank for r in planted] == [1, 2, 3]
    assert planted[0].neighbor_id == f"r{src}"
    assert planted[0].neighbor_label == topic.labels[src]
    assert planted[0].score > planted[1].score
    # A random tiny encoder puts every text above 0.9 cosine, so compare margins, not the absolute cut.
    top1 = {r.new_id: r.score for r in rows if r.rank == 1}
    assert max(top1, key=top1.get) == "n4"
    json.dumps([r.to_dict() for r in rows], allow_nan=False)


def test_faiss_and_exact_backends_agree():
    rng = np.random.default_rng(0)
    X, Q = rng.normal(size=(3000, 48)), rng.normal(size=(50, 48))
    ids = [f"id{i}" for i in range(3000)]
    for metric in ("cosine", "ip", "l2"):
        exact = NeighborIndex(X, ids, metric=metric, backend="exact")
        flat = NeighborIndex(X, ids, metric=metric, backend="faiss", faiss_index="flat")
        assert (exact.backend_, flat.backend_) == ("exact", "faiss-flat")
        (ie, se), (iff, sf) = exact.query(Q, 10), flat.query(Q, 10)
        assert (ie == iff).all(), metric
        np.testing.assert_allclose(se, sf, rtol=1e-4, atol=1e-4)
        ordered = np.diff(se, axis=1)
        assert (ordered >= -1e-9).all() if metric == "l2" else (ordered <= 1e-9).all()

    # HNSW is approximate: on clustered data (like real embeddings) it should find nearly all.
    centers = rng.normal(size=(40, 48))
    Xc = centers[rng.integers(0, 40, 4000)] + 0.5 * rng.normal(size=(4000, 48))
    Qc = centers[rng.integers(0, 40, 100)] + 0.5 * rng.normal(size=(100, 48))
    exact_ids, _ = NeighborIndex(Xc, backend="exact").query(Qc, 10)
    hnsw = NeighborIndex(Xc, backend="auto", faiss_threshold=1000, hnsw_threshold=1000)
    assert hnsw.backend_ == "faiss-hnsw"
    hnsw_ids, _ = hnsw.query(Qc, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_ids, hnsw_ids)])
    assert recall > 0.95
    again, _ = NeighborIndex(Xc, backend="faiss", faiss_index="hnsw").query(Qc, 10)
    assert (again == hnsw_ids).all()                  # deterministic single-threaded build


def test_neighbor_index_choices_and_errors(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    assert NeighborIndex(X).backend_ == "exact"            # below the faiss threshold
    assert NeighborIndex(X, faiss_threshold=10).backend_ == "faiss-flat"

    def no_faiss():
        raise ImportError("No module named 'faiss'")

    monkeypatch.setattr(neighbors, "_import_faiss", no_faiss)
    with pytest.warns(UserWarning, match="pip install faiss-cpu"):
        assert NeighborIndex(X, faiss_threshold=10).backend_ == "exact"
    with pytest.raises(ConfigError, match="faiss-cpu is not installed"):
        NeighborIndex(X, backend="faiss")
    monkeypatch.undo()
    idx = NeighborIndex(np.array([[1.0, 0], [1, 0], [0, 1]]), ["a", "b", "c"], backend="exact")
    ids, scores = idx.query(np.array([[1.0, 0.0]]), k=5)   # k above the size is reduced; ties by row order
    assert ids.tolist() == [["a", "b", "c"]] and scores.shape == (1, 3)
    with pytest.raises(ConfigError, match="dimensions"):
        idx.query(np.ones((1, 3)), k=1)
    with pytest.raises(ConfigError, match="backend"):
        NeighborIndex(X, backend="annoy")
    with pytest.raises(ConfigError, match="metric"):
        NeighborIndex(X, metric="manhattan")
    with pytest.raises(ConfigError, match="k=0"):
        idx.query(np.ones((1, 2)), k=0)
    with pytest.raises(ConfigError, match="NeighborIndex"):
        place_embeddings("not an index", X)


# ------------------------------------------------------------------------------------------ stability
def test_stability_is_one_for_identical_encoders_and_low_for_random_weights(tiny_embed, topic, tmp_path,
                                                                           one_torch_thread):
    from adaptlab.encoders import Encoder

    texts = topic.texts
    same = encoder_stability(texts, tiny_embed.encode, tiny_embed.encode, n_probes=40, k=5, seed=0)
    assert same.mean == 1.0 and same.stable
    assert same.verdict.startswith("neighbourhoods are stable")

    other = Encoder.from_pretrained(build_tiny_encoder(tmp_path / "other", seed=1), device="cpu")
    assert other.fingerprint != tiny_embed.fingerprint
    changed = encoder_stability(texts, tiny_embed.encode, other.encode, n_probes=40, k=5, seed=0,
                                old_reference_emb=tiny_embed.encode(texts))
    assert changed.mean < 0.6 and not changed.stable
    assert changed.mean > changed.chance                # both encoders see the same words
    d = changed.to_dict()
    json.dumps(d, allow_nan=False)
    assert sum(d["histogram"].values()) == 40
    worst = d["most_changed"][0]
    assert worst["overlap"] == min(changed.overlaps)
    assert len(worst["lost"]) == len(worst["gained"]) == round(5 * (1 - worst["overlap"]))
    # a probe never counts itself as its own neighbour
    assert all(item["probe_id"] not in item["old_neighbors"] for item in d["most_changed"])


def test_stability_on_arrays_tracks_how_far_the_space_moved():
    rng = np.random.default_rng(0)
    R, P = rng.normal(size=(500, 16)), rng.normal(size=(60, 16))
    small = neighbor_stability(R, R + 0.05 * rng.normal(size=R.shape), P, P, k=10)
    large = neighbor_stability(R, R + 0.8 * rng.normal(size=R.shape), P, P, k=10)
    random = neighbor_stability(R, rng.normal(size=R.shape), P, P, k=10)
    assert 1.0 > small.mean > 0.8 > large.mean > random.mean
    assert random.mean < 0.1 and abs(random.mean - random.chance) < 0.05
    jac = neighbor_stability(R, R + 0.8 * rng.normal(size=R.shape), P, P, k=10, overlap="jaccard")
    assert jac.mean < large.mean + 0.05                  # Jaccard <= fraction for equal-size sets
    with pytest.raises(ConfigError, match="same reference item"):
        neighbor_stability(R, R[:10], P, P)
    with pytest.raises(ConfigError, match="overlap"):
        neighbor_stability(R, R, P, P, overlap="dice")


# ------------------------------------------------------------------------------------------ embedding age
def test_embedding_age_and_refresh_reembed_only_what_changed():
    texts = {f"i{k}": f"text number {k}" for k in range(10)}
    v1 = CountingEmbed(salt="v1")
    ref = ReferenceSet.build(list(texts), list(texts.values()), v1, "fp-v1", labels=["a", "b"] * 5,
                             encoder_name="enc v1")
    report = embedding_age(ref, "fp-v1")
    assert report.up_to_date and not report.texts_checked

    current = dict(texts, i3="text number 3, edited", i7="text number 7, edited")
    del current["i9"]
    current["i10"] = "a brand new item"
    report = embedding_age(ref, "fp-v1", current)
    assert report.changed_ids == ["i3", "i7"] and report.stale_ids == []
    assert report.missing_text_ids == ["i9"] and report.new_ids == ["i10"]
    assert report.needs_reembedding == ["i3", "i7"] and not report.up_to_date
    json.dumps(report.to_dict(), allow_nan=False)

    v1b = CountingEmbed(salt="v1")
    fresh = refresh(ref, v1b, "fp-v1", current, add_new=True)
    assert v1b.texts == ["text number 3, edited", "text number 7, edited", "a brand new item"]
    assert fresh.ids == ref.ids + ["i10"] and fresh.labels[-1] is None
    unchanged = [p for p, i in enumerate(ref.ids) if i not in ("i3", "i7")]
    assert (fresh.embeddings[unchanged] == ref.embeddings[unchanged]).all()
    assert fresh.text_hashes[3] == text_hash(current["i3"])
    assert embedding_age(fresh, "fp-v1", current).changed_ids == []
    assert ref.text_hashes[3] == text_hash(texts["i3"])       # the input is not modified

    # A new encoder: every row is stale. Refreshing in chunks leaves a mixed set that age reports.
    mixed = refresh(ref, CountingEmbed(salt="v2"), "fp-v2", current, only_ids=["i0", "i1"], encoder_name="enc v2")
    assert mixed.fingerprint_counts() == {"fp-v1": 8, "fp-v2": 2}
    age = embedding_age(mixed, "fp-v2")
    assert len(age.stale_ids) == 8 and "8 of 10 stored embeddings need re-embedding" in age.verdict
    assert "8 were embedded by 1 older encoder version" in age.verdict
    assert {v["name"] for v in age.versions} == {"enc v1", "enc v2"}
    with pytest.raises(ConfigError, match="no current text"):
        refresh(ref, CountingEmbed(salt="v2"), "fp-v2", current)
    full = refresh(ref, CountingEmbed(dim=4, salt="v2"), "fp-v2", current, drop_missing=True)
    assert full.dim == 4 and "i9" not in full.ids and full.fingerprint_counts() == {"fp-v2": 9}
    with pytest.raises(ConfigError, match="share a space"):
        refresh(ref, CountingEmbed(dim=4, salt="v2"), "fp-v2", current, only_ids=["i0", "i1"])
    with pytest.raises(ConfigError, match="only_ids"):
        refresh(ref, CountingEmbed(salt="v2"), "fp-v2", current, only_ids=["nope"])


# ------------------------------------------------------------------------------------------ bias audit
def _biased_case(seed: int = 0, biased: bool = True):
    """Three groups, binary labels; in group C, positives are mostly predicted negative and C's texts
    lean toward the negative centroid even when positive (the encoder ties C to 'neg')."""
    rng = np.random.default_rng(seed)
    n = 600
    groups = np.array(["A"] * 250 + ["B"] * 250 + ["C"] * 100)
    y = np.where(rng.random(n) < 0.5, "pos", "neg").astype(object)
    pred = y.copy()
    flip = rng.random(n) < 0.08                          # 8% random errors everywhere
    pred[flip] = np.where(y[flip] == "pos", "neg", "pos")
    if biased:
        miss = (groups == "C") & (y == "pos") & (rng.random(n) < 0.7)
        pred[miss] = "neg"
    mu = {"pos": np.r_[2.0, 0.0, np.zeros(14)], "neg": np.r_[0.0, 2.0, np.zeros(14)]}
    E = np.stack([mu[c] for c in y]) + rng.normal(size=(n, 16))
    if biased:
        E[(groups == "C") & (y == "pos")] += np.r_[-0.8, 0.8, np.zeros(14)]
    return y.tolist(), pred.tolist(), groups.tolist(), E


def test_bias_audit_names_the_systematically_misclassified_group():
    y, pred, groups, E = _biased_case()
    r = bias_audit(y, pred, groups, embeddings=E, n_boot=300, n_permutations=300, seed=0)
    assert r.positive == "pos" and r.worst_group == "C"
    assert r.significantly_worse == ["C"]
    c = r.group("C")
    assert c["f1"] < r.overall["f1"] - 0.2 and c["f1_ci"][1] < r.overall["f1"]
    assert c["largest_gap"]["metric"] == "recall of 'pos'" and c["largest_gap"]["gap"] < -0.3
    assert c["classes"]["pos"]["predicted_rate"] < c["classes"]["pos"]["true_rate"]
    for name in ("A", "B"):
        g = r.group(name)
        assert g["f1_ci"][0] < g["f1"] < g["f1_ci"][1] and not g["significantly_worse"]

    assoc = {(a["group"], a["class"]): a for a in r.associations}
    assert assoc[("C", "neg")]["significant"] and assoc[("C", "neg")]["adjusted_effect_size"] > 0.3
    assert not any(a["significant"] for (g, _), a in assoc.items() if g != "C")
    assert "Worst group: 'C'" in r.summary and "'neg' centroid" in r.summary
    json.dumps(r.to_dict(), allow_nan=False)
    assert "significantly worse" in str(r)
    again = bias_audit(y, pred, groups, embeddings=E, n_boot=300, n_permutations=300, seed=0)
    assert again.to_dict() == r.to_dict()


def test_bias_audit_on_an_unbiased_model_flags_nothing_and_adjusts_for_base_rates():
    y, pred, groups, E = _biased_case(seed=1, biased=False)
    # Group B gets mostly positives: its raw association with 'pos' is large, but only the label mix explains it.
    rng = np.random.default_rng(5)
    y, pred = np.array(y, dtype=object), np.array(pred, dtype=object)
    b = np.flatnonzero(np.array(groups) == "B")
    to_pos = b[rng.random(len(b)) < 0.6]
    mu = {"pos": np.r_[2.0, 0.0, np.zeros(14)], "neg": np.r_[0.0, 2.0, np.zeros(14)]}
    for i in to_pos:
        if y[i] == "neg":
            y[i], pred[i] = "pos", "pos"
            E[i] = mu["pos"] + rng.normal(size=16)
    r = bias_audit(y.tolist(), pred.tolist(), groups, embeddings=E, n_boot=300, n_permutations=300, seed=0)
    assert r.significantly_worse == []
    assert "No group is significantly below" in r.summary
    raw = {(a["group"], a["class"]): a for a in r.associations}
    assert raw[("B", "pos")]["effect_size"] > 0.3 and raw[("B", "pos")]["p_value"] < 0.01
    assert not any(a["significant"] for a in r.associations)
    assert "no group's texts lean" in r.summary


def test_bias_audit_multiclass_small_groups_and_errors():
    rng = np.random.default_rng(0)
    y = rng.choice(["a", "b", "c"], size=200).tolist()
    pred = [t if rng.random() < 0.8 else "a" for t in y]
    groups = ["big"] * 190 + ["tiny"] * 10
    r = bias_audit(y, pred, groups, n_boot=100, min_group_size=20)
    assert r.positive is None and r.metric_name == "macro-F1"
    assert r.group("tiny")["small"] and r.worst_group == "big"
    assert "too small to judge" in r.summary and r.associations is None
    with pytest.raises(ConfigError, match="one group value per item"):
        bias_audit(y, pred, groups[:-1])
    with pytest.raises(ConfigError, match="missing value"):
        bias_audit(y[:-1] + [None], pred, groups)
    with pytest.raises(ConfigError, match="one embedding per item"):
        bias_audit(y, pred, groups, embeddings=np.zeros((5, 3)))
