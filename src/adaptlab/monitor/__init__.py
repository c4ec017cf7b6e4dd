"""Monitoring a shipped model: drift, neighbour stability, embedding age, cold start, bias audit.

Everything here takes plain arrays, texts and an ``embed`` callable (``list[str] -> (n, d)``, e.g.
``Encoder.encode``), so it works with any shipped pipeline.

* :class:`ReferenceSet` — the training items' embeddings, each row tagged with its encoder
  fingerprint; saved as safetensors + JSON.
* :func:`embedding_drift` — MMD permutation test plus per-dimension, PCA and out-of-distribution views;
  :func:`drift_from_texts` runs it on new texts against a ReferenceSet.
* :class:`NeighborIndex`, :func:`place_new_items` — kNN over the reference (numpy or faiss) for cold start.
* :func:`neighbor_stability`, :func:`encoder_stability` — overlap@k of neighbourhoods between two encoders.
* :func:`embedding_age`, :func:`refresh` — which rows are stale, and re-embedding only those.
* :func:`bias_audit` — per-group metrics with CIs and embedding-association gaps.

Example:
    >>> from adaptlab.encoders import load_encoder
    >>> from adaptlab.monitor import ReferenceSet, embedding_drift, place_new_items
    >>> enc = load_encoder()                                                      # doctest: +SKIP
    >>> ref = ReferenceSet.build(train_ids, train_texts, enc.encode, enc.fingerprint, train_labels)  # doctest: +SKIP
    >>> report = embedding_drift(ref.embeddings, enc.encode(new_texts), seed=0)   # doctest: +SKIP
    >>> print(report.verdict)                                                     # doctest: +SKIP
    drift detected: the new texts are distributed differently from the training texts (...)
    >>> rows = place_new_items(ref.neighbor_index(), new_texts, enc.encode, k=5)  # doctest: +SKIP
"""
from adaptlab.monitor.age import AgeReport, embedding_age, refresh
from adaptlab.monitor.bias import BiasReport, bias_audit
from adaptlab.monitor.drift import DriftReport, drift_from_texts, embedding_drift
from adaptlab.monitor.neighbors import NeighborIndex, Placement, place_embeddings, place_new_items
from adaptlab.monitor.reference import ReferenceSet
from adaptlab.monitor.stability import StabilityReport, encoder_stability, neighbor_stability

__all__ = [
    "AgeReport", "BiasReport", "DriftReport", "NeighborIndex", "Placement", "ReferenceSet", "StabilityReport",
    "bias_audit", "drift_from_texts", "embedding_age", "embedding_drift", "encoder_stability", "neighbor_stability",
    "place_embeddings", "place_new_items", "refresh",
]
