"""Errors a user can cause. Each message says what is wrong and how to fix it.

The CLI prints ``str(error)`` and exits non-zero; no traceback is shown for these.
"""
from __future__ import annotations

from dataclasses import dataclass, field


#: Characters of one user value (a line, a cell, a column name) an error message quotes; the rest is counted.
EXCERPT_CHARS = 200


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``str(value)`` cut to ``limit`` characters, saying how long it was, to quote in a message.

    A 50 MB line or cell prints as its first 200 characters and its length, not as 50 MB of error.

    Example:
        >>> excerpt("x" * 1000, 5)
        'xxxxx… (1,000 characters)'
        >>> excerpt("short")
        'short'
    """
    s = str(value)
    return s if len(s) <= limit else f"{s[:limit]}… ({len(s):,} characters)"


def excerpt_repr(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` of a bounded excerpt: the quoted form messages use for names and values.

    Example:
        >>> excerpt_repr("ab" * 200, 4)
        "'abab'… (400 characters)"
        >>> excerpt_repr(3)
        '3'
    """
    s = value if isinstance(value, str) else repr(value)
    if len(s) <= limit:
        return repr(value)
    head = repr(s[:limit]) if isinstance(value, str) else s[:limit]
    return f"{head}… ({len(s):,} characters)"


class AdaptlabError(Exception):
    """Base class of every error caused by user input or configuration.

    Example:
        >>> from adaptlab.errors import AdaptlabError, ConfigError
        >>> try:
        ...     raise ConfigError.invalid("seeds", 0, "an integer >= 1")
        ... except AdaptlabError as err:              # every user-caused error, one except clause
        ...     print(err, "| exit code", err.exit_code)
        seeds=0 is not valid: expected an integer >= 1. | exit code 2
    """

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
        """The error for ``name=value``: what was expected and, optionally, how to fix it."""
        msg = f"{name}={excerpt_repr(value)} is not valid: expected {allowed}."
        if fix:
            msg += f" {fix}"
        return cls(msg)


class DataError(AdaptlabError):
    """The input data cannot be read (missing file, unknown format, bad encoding, missing column).

    Example:
        >>> from adaptlab.data import load_dataset
        >>> load_dataset("no-such-file.csv")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        adaptlab.errors.DataError: no-such-file.csv does not exist. Fix: check the path (it is relative to ...).
    """


@dataclass
class Problem:
    """One validation finding, with the rows it concerns (1-based data rows as a user sees them).

    Example:
        >>> from adaptlab.errors import Problem
        >>> print(Problem("empty_text", "2 text(s) are empty", "fill them in or drop the rows", rows=[4, 9]))
        [empty_text] 2 text(s) are empty (rows 4, 9). Fix: fill them in or drop the rows
    """

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
    """The data was read but fails validation; ``problems`` lists every finding.

    Example:
        >>> from adaptlab.errors import DataValidationError, Problem
        >>> err = DataValidationError([Problem("empty_text", "1 text(s) are empty", "fill it in", rows=[3])], "labels.csv")
        >>> print(err)
        1 problem(s) in labels.csv:
          - [empty_text] 1 text(s) are empty (rows 3). Fix: fill it in
        >>> [p.code for p in err.problems]
        ['empty_text']
    """

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        where = f" in {source}" if source else ""
        lines = [f"{len([p for p in problems if p.severity == 'error'])} problem(s){where}:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class SealedTestError(AdaptlabError):
    """Code that tunes or selects a model tried to read the sealed test split.

    Example:
        >>> from adaptlab.data import TextDataset, split_dataset
        >>> split = split_dataset(TextDataset([f"text {i}" for i in range(20)], ["a", "b"] * 10), strategy="stratified")
        >>> split.test
        Traceback (most recent call last):
        ...
        adaptlab.errors.SealedTestError: the test split is sealed: tuning code must use validation; evaluation reads it through Split.unseal_test(purpose)
    """


class UnknownRungError(ConfigError):
    """A rung name that is not registered.

    Example:
        >>> from adaptlab.rungs import get_rung
        >>> get_rung("finetuning")
        Traceback (most recent call last):
        ...
        adaptlab.errors.UnknownRungError: rungs='finetuning' is not valid: expected one of tfidf, ..., lpft (comma-separated, e.g. --rungs tfidf,probe).
    """


class DiskFullError(AdaptlabError):
    """A write failed because the disk is full (ENOSPC); what was there before the write is intact.

    The message names the folder, the free space left and what can be deleted safely.

    Example:
        >>> from adaptlab.errors import AdaptlabError, DiskFullError
        >>> err = DiskFullError("no space left to write runs.sqlite in /data (12 MB free): delete old caches")
        >>> isinstance(err, AdaptlabError), err.exit_code
        (True, 2)
    """
