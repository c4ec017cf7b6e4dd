"""Diagnostics: why one rung beats another (MMD, domain shift, linear-probe gap).

Example:
    >>> import numpy as np
    >>> from adaptlab.diagnostics import mmd_test
    >>> rng = np.random.default_rng(0)
    >>> mmd_test(rng.normal(size=(200, 3)), rng.normal(size=(200, 3)) + 1.0).p_value < 0.01
    True
"""
from adaptlab.diagnostics.mmd import MMDResult, median_bandwidth, mmd2_unbiased, mmd_test, rbf_kernel
from adaptlab.diagnostics.probe_gap import GapVerdict, probe_gap
from adaptlab.diagnostics.shift import (
    DEFAULT_REFERENCE, MovementResult, ShiftResult, domain_shift, embedding_movement, sample_texts,
)
from adaptlab.diagnostics.study import diagnose_study, run_study_with_diagnostics
from adaptlab.diagnostics.movement import (  # issue #5
    backbone_movement, effective_state_dict, layer_unit, movement_sentence,
)
from adaptlab.diagnostics.overfit import FINE_TUNED_RUNGS, overfitting_signature, transfer_signatures  # issue #5

__all__ = [
    "DEFAULT_REFERENCE", "GapVerdict", "MMDResult", "MovementResult", "ShiftResult", "diagnose_study",
    "domain_shift", "embedding_movement", "median_bandwidth", "mmd2_unbiased", "mmd_test", "probe_gap",
    "rbf_kernel", "run_study_with_diagnostics", "sample_texts",
    "FINE_TUNED_RUNGS", "backbone_movement", "effective_state_dict", "layer_unit", "movement_sentence",
    "overfitting_signature", "transfer_signatures",
]
