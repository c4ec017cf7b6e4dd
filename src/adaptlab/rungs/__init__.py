"""The adaptation ladder. Importing this package registers every rung that exists."""
import importlib

from adaptlab.rungs.base import (
    LADDER_ORDER,
    RUNGS,
    Budget,
    Cost,
    FittedRung,
    Rung,
    RungConfig,
    RungContext,
    available_rungs,
    get_rung,
    register_rung,
    trains_encoder,
)
from adaptlab.rungs import ladder  # noqa: F401  (bound here too when the CLI loaded it first: cli.catalogue)
from adaptlab.rungs.ladder import LADDER, default_rungs
from adaptlab.rungs.probe import ProbeConfig, ProbeRung
from adaptlab.rungs.tfidf import TfidfConfig, TfidfRung
from adaptlab.rungs.refit import RefitConfig, RefitRung  # noqa: E402  (issue #4)
from adaptlab.rungs.lora import FittedLora, LoraConfig, LoraRung  # noqa: E402  (issue #5)
from adaptlab.rungs.unfreeze import UnfreezeConfig, UnfreezeRung  # noqa: E402  (issue #5)
from adaptlab.rungs.finetune import FinetuneConfig, FinetuneRung  # noqa: E402  (issue #5)
from adaptlab.rungs.lpft import LpftConfig, LpftRung  # noqa: E402  (issue #5)
from adaptlab.rungs.training import FittedNetwork, NetworkRung, Trainer, TrainingConfig  # noqa: E402  (issue #5)
from adaptlab.rungs.multitask import MultiTaskModel  # noqa: E402  (issue #9)
from adaptlab.rungs.setfit import FittedSetFit, SetFitConfig, SetFitRung  # noqa: E402  (issue #16)

# Every catalogued rung registers itself: its module is adaptlab.rungs.<name> (a new rung needs no line here).
for _name in LADDER:
    if _name not in RUNGS:
        importlib.import_module(f"adaptlab.rungs.{_name}")

__all__ = [
    "LADDER_ORDER", "RUNGS", "Budget", "Cost", "FittedRung", "Rung", "RungConfig", "RungContext",
    "available_rungs", "default_rungs", "get_rung", "register_rung", "trains_encoder", "ProbeConfig", "ProbeRung", "TfidfConfig", "TfidfRung",
    "RefitConfig", "RefitRung",
    "FittedLora", "LoraConfig", "LoraRung", "UnfreezeConfig", "UnfreezeRung", "FinetuneConfig", "FinetuneRung",
    "LpftConfig", "LpftRung", "FittedNetwork", "NetworkRung", "Trainer", "TrainingConfig", "MultiTaskModel",
    "FittedSetFit", "SetFitConfig", "SetFitRung",
]
