"""The task metrics, re-exported where they lived before :mod:`adaptlab.metrics` (a leaf module every stage
may use: the rungs score validation with them, so they cannot sit in ``evaluate``, right of ``rungs``)."""
from adaptlab.metrics import *  # noqa: F401,F403
