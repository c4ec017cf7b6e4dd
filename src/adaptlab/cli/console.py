"""The CLI's rich consoles: user text (labels, texts, file and column names) can never crash a print.

Rich reads ``[...]`` in a printed string as markup, so a label such as ``[/]`` raises ``MarkupError`` and a
label ``[red]x`` would print as a red ``x``. Every print of user text escapes it (``rich.markup.escape``,
:func:`plain`) or prints with ``markup=False``; :class:`SafeConsole` is the net under a print that forgot:
it prints the same objects again without markup instead of failing the command.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape

__all__ = ["SafeConsole", "plain"]


def plain(value: Any) -> str:
    """``str(value)`` escaped for a rich console: shown exactly as typed, never read as markup.

    Example:
        >>> plain("[/]"), plain(None)
        ('\\\\[/]', 'None')
    """
    return escape(str(value))


class SafeConsole(Console):
    """A :class:`rich.console.Console` whose ``print`` never fails on markup in the text it is given.

    A print that raises ``MarkupError`` (a string with user text that was not escaped) is printed again
    with markup off, the console's default included, so tables' cells print as typed too. Rich renders
    everything before it writes, so nothing of the failed attempt was written.

    Example:
        >>> SafeConsole(width=40).print("label [/] and [bold]x[/bold]")
        label [/] and [bold]x[/bold]
    """

    def print(self, *objects: Any, **kwargs: Any) -> None:  # noqa: D102 -- Console.print's own
        try:
            super().print(*objects, **kwargs)
        except MarkupError:
            saved, self._markup = self._markup, False
            try:
                super().print(*objects, **{**kwargs, "markup": False})
            finally:
                self._markup = saved
