"""Small labeled corpora made in the test itself (no downloads)."""
from __future__ import annotations

import numpy as np

from adaptlab.data.dataset import TextDataset

TOPIC_WORDS = {
    "sport": "match goal team coach league season player score win cup".split(),
    "tech": "software chip phone internet computer data network code app robot".split(),
    "money": "bank market price shares profit economy trade tax invest fund".split(),
}
FILLER = "the a of and to in is was for on with as by at from it this that".split()


def topic_corpus(n: int = 150, seed: int = 0, classes=("sport", "tech", "money"), noise: float = 0.3) -> TextDataset:
    """Texts of 12-30 words; each mostly draws from its class's words, with `noise` off-topic words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    all_topic = [w for c in classes for w in TOPIC_WORDS[c]]
    for i in range(n):
        c = classes[i % len(classes)]
        k = int(rng.integers(12, 30))
        words = []
        for _ in range(k):
            r = rng.random()
            if r < 0.4:
                words.append(str(rng.choice(FILLER)))
            elif r < 0.4 + noise:
                words.append(str(rng.choice(all_topic)))
            else:
                words.append(str(rng.choice(TOPIC_WORDS[c])))
        texts.append(" ".join(words) + f" item{i}")
        labels.append(c)
    return TextDataset(texts=texts, labels=labels, source="synthetic")


def topic_csv(path, n: int = 150, noise: float = 0.3, seed: int = 0):
    """:func:`topic_corpus` written as a ``text,label`` CSV at ``path`` (what a user passes to ``--data``)."""
    import pandas as pd

    ds = topic_corpus(n, seed=seed, noise=noise)
    pd.DataFrame({"text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    return path
