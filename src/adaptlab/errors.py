"""Errors a user can cause. Each message says what is wrong and how to fix it.

The CLI prints ``str(error)`` and exits non-zero; no traceback is shown for these.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class AdaptlabError(Exception):
    """Base class of every error caused by user input or configuration."""

    exit_code = 2


class ConfigError(AdaptlabError, ValueError):
    """A parameter has a value that is not allowed.

    Example:
        >>> raise ConfigError.invalid("seeds", 0, "an integer >= 1")
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: seeds=0 is not valid: expected an integer >= 1.
    """

    @classmethod
    def invalid(cls, name: str, value: object, allowed: str, fix: str = "") -> "ConfigError":
        msg = f"{name}={value!r} is not valid: expected {allowed}."
        if fix:
            msg += f" {fix}"
        return cls(msg)


class DataError(AdaptlabError):
    """The input data cannot be read (missing file, unknown format, bad encoding, missing column)."""


@dataclass
class Problem:
    """One validation finding, with the rows it concerns (1-based data rows as a user sees them)."""

    code: str
    message: str
    fix: str
    rows: list[int] = field(default_factory=list)
    severity: str = "error"  # "error" stops the run, "warning" is reported

    def __str__(self) -> str:
        rows = ""
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:10])
            more = f" and {len(self.rows) - 10} more" if len(self.rows) > 10 else ""
            rows = f" (rows {shown}{more})"
        return f"[{self.code}] {self.message}{rows}. Fix: {self.fix}"


class DataValidationError(DataError):
    """The data was read but fails validation; ``problems`` lists every finding."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        where = f" in {source}" if source else ""
        lines = [f"{len([p for p in problems if p.severity == 'error'])} problem(s){where}:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class SealedTestError(AdaptlabError):
    """Code that tunes or selects a model tried to read the sealed test split."""


class UnknownRungError(ConfigError):
    """A rung name that is not registered."""


class DiskFullError(AdaptlabError):
    """A write failed because the disk is full (ENOSPC); what was there before the write is intact.

    The message names the folder, the free space left and what can be deleted safely.
    """
