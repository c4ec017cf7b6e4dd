"""The adaptation ladder. Importing this package registers every rung that exists."""
from adaptlab.rungs.base import (
    LADDER_ORDER,
    PLANNED_RUNGS,
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
)
from adaptlab.rungs.probe import ProbeConfig, ProbeRung
from adaptlab.rungs.tfidf import TfidfConfig, TfidfRung

__all__ = [
    "LADDER_ORDER", "PLANNED_RUNGS", "RUNGS", "Budget", "Cost", "FittedRung", "Rung", "RungConfig", "RungContext",
    "available_rungs", "get_rung", "register_rung", "ProbeConfig", "ProbeRung", "TfidfConfig", "TfidfRung",
]
