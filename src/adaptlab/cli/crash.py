"""What a user sees when a command fails in a way nobody planned for: one line, and a log file with the traceback.

Errors a user can cause (``AdaptlabError``) print their own message (see ``adaptlab.cli.user_errors``). Anything
else is a bug in adaptlab or in a library under it; a rich traceback of 60 lines helps nobody at a terminal, so
the traceback goes to a log file and the line says where it is and how to report it. ``ADAPTLAB_DEBUG=1``
raises the exception as before (the traceback on the terminal, for developers and bug reports).
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Optional

# No public tracker URL is configured in pyproject.toml; say where, not a made-up link.
REPORT_TO = "adaptlab's issue tracker"


def debug_enabled() -> bool:
    """True when ``ADAPTLAB_DEBUG`` asks for tracebacks (any value but empty, 0, false, no)."""
    return os.environ.get("ADAPTLAB_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def log_dir() -> Path:
    """Where crash logs go: ``$ADAPTLAB_LOG_DIR``, else ``$XDG_STATE_HOME/adaptlab/logs`` (``~/.local/state``).

    Not the run home: a crash may come before (or because of) the home, and a command may have none.
    """
    if os.environ.get("ADAPTLAB_LOG_DIR"):
        return Path(os.environ["ADAPTLAB_LOG_DIR"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "adaptlab" / "logs"


def write_crash_log(exc: BaseException, command: str, argv: Optional[list[str]] = None) -> Optional[Path]:
    """Write the traceback of ``exc`` (and what ran: command line, versions) to a new log file; return its path.

    Falls back to the temp folder when the log folder cannot be written, and returns None only when no file
    can be written at all (a full disk): the one-line message then says so instead of naming a file.

    Example:
        >>> import tempfile, os
        >>> os.environ["ADAPTLAB_LOG_DIR"] = tempfile.mkdtemp()
        >>> p = write_crash_log(ValueError("boom"), "plan")
        >>> "ValueError: boom" in p.read_text()
        True
        >>> del os.environ["ADAPTLAB_LOG_DIR"]
    """
    import adaptlab

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    body = "".join([
        f"adaptlab {adaptlab.__version__} crashed in `adaptlab {command}` at {dt.datetime.now().isoformat()}\n",
        f"command line: {' '.join(argv if argv is not None else sys.argv)}\n",
        f"python {platform.python_version()} on {platform.platform()}\n\n",
        *traceback.format_exception(type(exc), exc, exc.__traceback__),
    ])
    for folder in (log_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"crash-{stamp}-", suffix=".log", dir=folder)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body)
            return Path(name)
        except OSError:
            continue
    return None


def crash_message(exc: BaseException, command: str, log: Optional[Path]) -> str:
    """The one line a user sees: what failed, where the traceback is, how to report it."""
    what = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
    where = f"the traceback is in {log}" if log else "no log file could be written (is the disk full?)"
    return (f"`adaptlab {command}` failed unexpectedly ({what}). This is a bug in adaptlab, not in your input: "
            f"{where}; please report it in {REPORT_TO} with that file attached. "
            "Set ADAPTLAB_DEBUG=1 to see the traceback here.")
