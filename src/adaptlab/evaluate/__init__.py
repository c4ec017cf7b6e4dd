"""Evaluation: metrics with honest bands, the multi-seed study, leakage measurement and rendering."""
from adaptlab.metrics import bands_overlap, resolve_positive_label, score, seed_and_test_bootstrap
from adaptlab.evaluate.study import Study, StudyEvent, StudyResult
from adaptlab.evaluate.encoders import EncoderComparison, compare_encoders  # issue #9

__all__ = ["EncoderComparison", "Study", "StudyEvent", "StudyResult", "compare_encoders", "bands_overlap", "resolve_positive_label", "score", "seed_and_test_bootstrap"]
