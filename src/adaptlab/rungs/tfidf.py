"""`tfidf`: the scratch baseline. TF-IDF n-grams + class-weighted logistic regression, no pretraining.

Every adapted rung must beat this; when it does not, the pretrained representation is not earning its
keep (or transfer is negative).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from adaptlab.data.dataset import TextDataset
from adaptlab.errors import ConfigError
from adaptlab.rungs.base import Cost, FittedRung, Rung, RungConfig, RungContext, register_rung
from adaptlab.rungs.head import check_state_kind, export_head, head_proba
from adaptlab.rungs.multilabel import export_multilabel_head, fit_head, import_any_head, task_of


@dataclass
class TfidfConfig(RungConfig):
    """Parameters of the `tfidf` rung: the TF-IDF features (n-grams, minimum document frequency, size) and the ``C`` grid.

    Example:
        >>> from adaptlab.rungs import TfidfConfig, get_rung
        >>> TfidfConfig().ngram_max, TfidfConfig().min_df
        (2, 2)
        >>> get_rung("tfidf", {"ngram_max": 1}).config.ngram_max
        1
    """
    ngram_max: int = field(default=2, metadata={"help": "largest word n-gram (1 = unigrams only)"})
    min_df: int = field(default=2, metadata={"help": "drop terms seen in fewer training texts"})
    max_features: int = field(default=200_000, metadata={"help": "vocabulary cap"})
    sublinear_tf: bool = field(default=True, metadata={"help": "use 1 + log(tf)"})
    C_grid: list[float] = field(
        default_factory=lambda: [0.1, 1.0, 10.0, 100.0],
        metadata={"help": "inverse regularisation strengths tried; chosen on validation F1"},
    )

    def __post_init__(self) -> None:
        if self.ngram_max < 1:
            raise ConfigError.invalid("tfidf.ngram_max", self.ngram_max, "an integer >= 1")
        if self.min_df < 1:
            raise ConfigError.invalid("tfidf.min_df", self.min_df, "an integer >= 1")
        if not self.C_grid or any(c <= 0 for c in self.C_grid):
            raise ConfigError.invalid("tfidf.C_grid", self.C_grid, "a non-empty list of positive numbers")


class FittedTfidf(FittedRung):
    def __init__(self, vectorizer: TfidfVectorizer, head: Any, classes: Sequence[str]) -> None:
        self.rung = "tfidf"
        self.vectorizer = vectorizer
        self.head = head
        self.task, self.thresholds_ = task_of(head)
        self.classes_ = np.asarray(classes, dtype=object)

    def embed(self, texts: Sequence[str]) -> Any:
        return self.vectorizer.transform(texts)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.task == "multilabel":
            return self.head.predict_proba(self.embed(texts))
        return head_proba(self.head, self.embed(texts), list(self.classes_))

    def export_artifact(self, kit: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The vectorizer's settings and vocabulary (JSON), its idf weights and the head (tensors)."""
        vec = self.vectorizer
        vstate = {"ngram_range": list(vec.ngram_range), "min_df": vec.min_df, "max_features": vec.max_features,
                  "sublinear_tf": bool(vec.sublinear_tf), "lowercase": bool(vec.lowercase),
                  "vocabulary": {str(k): int(v) for k, v in vec.vocabulary_.items()}}
        hstate, htensors = (export_multilabel_head if self.task == "multilabel" else export_head)(self.head, "head")
        return {"kind": "tfidf", "vectorizer": vstate, "head": hstate}, {"tfidf.idf": np.ascontiguousarray(vec.idf_),
                                                                          **htensors}


def _import_vectorizer(state: dict[str, Any], tensors: dict[str, np.ndarray]) -> TfidfVectorizer:
    from sklearn.feature_extraction.text import TfidfTransformer

    vocab = {str(k): int(v) for k, v in state["vocabulary"].items()}
    idf = tensors["tfidf.idf"]
    if idf.shape != (len(vocab),) or sorted(vocab.values()) != list(range(len(vocab))):
        raise ConfigError(f"the TF-IDF vocabulary ({len(vocab)} terms) does not match its idf weights "
                          f"(shape {idf.shape}): the artifact is corrupted. Re-save the model.")
    vec = TfidfVectorizer(ngram_range=tuple(state["ngram_range"]), min_df=state["min_df"],
                          max_features=state["max_features"], sublinear_tf=state["sublinear_tf"],
                          lowercase=state["lowercase"], dtype=np.float32)
    vec.vocabulary_ = vocab
    vec.fixed_vocabulary_ = False
    # TfidfVectorizer keeps its weights in a TfidfTransformer created by fit; rebuild it from idf_.
    vec._tfidf = TfidfTransformer(sublinear_tf=state["sublinear_tf"])
    vec.idf_ = idf
    return vec


@register_rung
class TfidfRung(Rung):
    """Scratch baseline: TF-IDF features fitted on the training texts only.

    Example:
        >>> from adaptlab.data.dataset import TextDataset
        >>> from adaptlab.rungs.base import RungContext
        >>> tr = TextDataset(["good film", "great film", "bad film", "awful film"] * 3, ["p", "p", "n", "n"] * 3)
        >>> fitted = TfidfRung(min_df=1).fit(tr, tr, seed=0, context=RungContext(classes=["n", "p"]))
        >>> list(fitted.predict(["great", "awful"]))
        ['p', 'n']
    """

    name = "tfidf"
    config_class = TfidfConfig
    supports_multilabel = True
    summary = "TF-IDF n-grams + logistic regression (scratch baseline, no pretraining)"

    @classmethod
    def load_artifact(cls, state: dict[str, Any], tensors: dict[str, np.ndarray], classes: list[str],
                      kit: Any) -> FittedTfidf:
        """The model :meth:`FittedTfidf.export_artifact` wrote."""
        check_state_kind(state, "tfidf")
        return FittedTfidf(_import_vectorizer(state["vectorizer"], tensors), import_any_head(state["head"], tensors),
                           classes)

    def fit(self, train: TextDataset, val: TextDataset, *, seed: int, context: RungContext) -> FittedTfidf:
        """Fit TF-IDF features on train, then select the logistic head's ``C`` on validation F1."""
        cfg: TfidfConfig = self.config  # type: ignore[assignment]
        t0 = time.perf_counter()
        # min_df larger than the corpus would empty the vocabulary on tiny data; keep at least one term.
        min_df = min(cfg.min_df, max(1, len(train) // 2))
        vec = TfidfVectorizer(
            ngram_range=(1, cfg.ngram_max), min_df=min_df, max_features=cfg.max_features,
            sublinear_tf=cfg.sublinear_tf, dtype=np.float32,
        )
        X_train = vec.fit_transform(train.texts)
        X_val = vec.transform(val.texts)
        head, C, val_scores = fit_head(X_train, train, X_val, val, C_grid=cfg.C_grid, seed=seed, context=context)
        fitted = FittedTfidf(vec, head, context.classes)
        fitted.selected_ = {"C": C, "vocabulary": len(vec.vocabulary_)}
        fitted.val_scores_ = val_scores
        fitted.cost_ = Cost(fit_seconds=time.perf_counter() - t0, samples_seen=len(train) * len(cfg.C_grid))
        return fitted
