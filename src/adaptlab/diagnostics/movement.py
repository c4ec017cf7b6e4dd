"""Backbone movement and linear CKA (re-exported: they live in `adaptlab.rungs.movement` because the
shared training loop records them, and rungs sit left of diagnostics in the flow)."""
from adaptlab.rungs.movement import (  # noqa: F401
    backbone_movement, effective_state_dict, layer_unit, linear_cka, movement_sentence,
)
