"""The exit statuses of the `adaptlab` command, one meaning each (listed in ``adaptlab --help`` and the docs).

A script or a scheduler can tell a finished command from one that did nothing useful without reading its
output; ``--json`` output carries the same number as ``exit_code``.
"""
from __future__ import annotations

#: The command did what was asked.
OK = 0
#: A bug in adaptlab (a one-line message and a crash log), or a result that is damaged / failed to train.
CRASH = 1
#: A user mistake: a bad option, an unreadable file, data that fails validation (the message says the fix).
USAGE = 2
#: `predict` read rows but labeled none: every row went to the reject file.
NO_ROW_PREDICTED = 3
#: `retrain` held the batch: the label check found the new labels far noisier than the old; nothing trained.
RETRAIN_HELD = 4
#: Interrupted (Ctrl-C); finished work is stored and a rerun resumes.
INTERRUPTED = 130

#: One line per status, for ``--help`` and the docs.
EXIT_STATUS_HELP = (
    f"Exit status: {OK} done; {CRASH} a bug (crash log written) or failed runs; {USAGE} a user mistake (bad option, "
    f"file or data: the message says the fix); {NO_ROW_PREDICTED} `predict` labeled no row (all rejected); "
    f"{RETRAIN_HELD} `retrain` held the batch (label check; nothing trained); {INTERRUPTED} interrupted."
)

__all__ = ["OK", "CRASH", "USAGE", "NO_ROW_PREDICTED", "RETRAIN_HELD", "INTERRUPTED", "EXIT_STATUS_HELP"]
