"""Evaluation: metrics with honest bands, the multi-seed study, leakage measurement and rendering."""
from adaptlab.evaluate.metrics import bands_overlap, resolve_positive_label, score, seed_and_test_bootstrap
from adaptlab.evaluate.study import Study, StudyResult

__all__ = ["Study", "StudyResult", "bands_overlap", "resolve_positive_label", "score", "seed_and_test_bootstrap"]
