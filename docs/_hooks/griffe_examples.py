"""griffe extension: read adaptlab's ``Example:`` docstring sections as Google-style ``Examples:``.

The code's docstrings say ``Example:`` (singular); griffe's Google parser would take that for an
admonition and render the ``>>>`` lines as prose. As ``Examples:`` they become code blocks.
"""
from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.M)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and "Example:" in obj.docstring.value:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
