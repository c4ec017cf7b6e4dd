"""The `refit` rung, peft-style: ``config.py`` (parameters), ``objectives.py`` (MLM / SimCSE heads),
``train.py`` (loop, checkpoint/resume, estimate), ``core.py`` (content-addressed refit store) and
``rung.py`` (refit -> freeze -> probe head)."""
from adaptlab.rungs.refit.config import OBJECTIVES, RefitBudget, RefitConfig
from adaptlab.rungs.refit.core import RefitOutcome, canonical_corpus, load_stored_refit, refit_encoder, refit_key
from adaptlab.rungs.refit.objectives import MLMObjective, SimCSEObjective, mask_tokens
from adaptlab.rungs.refit.rung import FittedRefit, RefitRung
from adaptlab.rungs.refit.train import RefitDivergedError, RefitTimeWarning, TokenizedCorpus

__all__ = [
    "OBJECTIVES", "FittedRefit", "MLMObjective", "RefitBudget", "RefitConfig", "RefitDivergedError", "RefitOutcome",
    "RefitRung", "RefitTimeWarning", "SimCSEObjective", "TokenizedCorpus", "canonical_corpus", "load_stored_refit",
    "mask_tokens", "refit_encoder", "refit_key",
]
