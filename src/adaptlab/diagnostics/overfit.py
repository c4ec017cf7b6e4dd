"""Overfitting and negative-transfer signatures (re-exported from `adaptlab.rungs.overfit`, where the
shared training loop uses them; rungs sit left of diagnostics in the flow)."""
from adaptlab.rungs.overfit import (  # noqa: F401
    FINE_TUNED_RUNGS, TRANSFER_BASELINES, overfitting_signature, transfer_signatures,
)
