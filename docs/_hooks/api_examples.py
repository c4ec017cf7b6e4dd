"""mkdocs hook: every public name of the API reference has a docstring with an example (issue #19).

The public names are the ones the API reference page renders: for each ``::: module`` of
``docs/reference/api.md``, the classes and functions of the module's ``__all__`` or, for a module without
one, those it defines itself (mkdocstrings renders exactly these). Each must have a docstring with at least
one ``>>>`` example that runs in full: only the few names of :data:`MAY_SKIP` (a trained network, a refit,
a cluster) may mark lines ``# doctest: +SKIP``. Their public methods and properties need a docstring (no
example). A name that breaks a rule is a warning, so ``mkdocs build --strict`` (CI's build) fails and
names it; ``mkdocs serve`` only warns. Constants (``RUNGS``, ``DEFAULT_ENCODER``, ...) are data, not calls:
they are rendered with their value and need no example.

The examples themselves run as tests: :func:`doctests` collects them (tests/test_docs.py runs each one).
"""
from __future__ import annotations

import doctest
import importlib
import inspect
import logging
import re
import sys
from pathlib import Path
from typing import Any, Iterator

DOCS = Path(__file__).resolve().parents[1]
SRC = DOCS.parent / "src"
if str(SRC) not in sys.path:  # the tree being documented, not an installed adaptlab
    sys.path.insert(0, str(SRC))
API_PAGE = DOCS / "reference" / "api.md"
DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.M)
log = logging.getLogger("mkdocs.hooks.api_examples")
# The only public names whose examples may skip lines (``# doctest: +SKIP``): what they show needs a trained
# network, a domain refit, a Ray cluster or several real encoders. Every other example runs in full.
MAY_SKIP = {
    "adaptlab.rungs.FittedNetwork": "a fine-tuned network",
    "adaptlab.rungs.FittedLora": "trained LoRA adapters",
    "adaptlab.rungs.FittedSetFit": "a contrastively tuned encoder",
    "adaptlab.rungs.Trainer": "a training run",
    "adaptlab.rungs.MultiTaskModel": "a training run",
    "adaptlab.evaluate.Study": "a Ray cluster (the in-process study runs)",
    "adaptlab.evaluate.compare_encoders": "two real encoders",
    "adaptlab.diagnostics.diagnose_study": "a domain refit",
    "adaptlab.diagnostics.run_study_with_diagnostics": "a domain refit",
    "adaptlab.decide.plan_study": "timing the real encoder",
}


def api_modules(page: Path = API_PAGE) -> list[str]:
    """The modules the API reference renders, in page order."""
    return DIRECTIVE.findall(page.read_text(encoding="utf-8"))


def public_names(page: Path = API_PAGE) -> Iterator[tuple[str, Any]]:
    """``(dotted name, object)`` for every class and function the API reference renders."""
    for modname in api_modules(page):
        module = importlib.import_module(modname)
        names = getattr(module, "__all__", None)
        if names is None:
            names = [n for n, o in vars(module).items()
                     if not n.startswith("_") and getattr(o, "__module__", None) == modname]
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{modname}.{name}", obj


def has_example(obj: Any) -> bool:
    # obj.__doc__, not inspect.getdoc: a class would inherit its base's docstring (and its example).
    return ">>>" in (obj.__doc__ or "")


def without_example(page: Path = API_PAGE) -> list[str]:
    """The public names whose docstring is missing or has no ``>>>`` example."""
    return [name for name, obj in public_names(page) if not has_example(obj)]


def methods_without_docstring(page: Path = API_PAGE) -> list[str]:
    """The public methods and properties of the rendered classes that have no docstring of their own.

    mkdocstrings would render them with their signature only; each needs a docstring (no example).
    """
    import dataclasses

    out = []
    for name, obj in public_names(page):
        if not inspect.isclass(obj):
            continue
        fields = {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
        for attr, value in vars(obj).items():
            if attr.startswith("_") or attr in fields:
                continue
            func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
            if (inspect.isfunction(func) or isinstance(value, property)) and not (func.__doc__ or "").strip():
                out.append(f"{name}.{attr}")
    return out


def with_skipped_lines(page: Path = API_PAGE) -> list[str]:
    """The public names whose own docstring example has ``# doctest: +SKIP`` lines."""
    finder = doctest.DocTestFinder(recurse=False)
    return [name for name, obj in public_names(page)
            if any(ex.options.get(doctest.SKIP) for t in finder.find(obj, name) for ex in t.examples)]


def doctests(page: Path = API_PAGE) -> list[doctest.DocTest]:
    """The examples of every public name (and of its methods), each a :class:`doctest.DocTest` with examples.

    A name's examples run in the namespace of the module that defines it (as ``python -m doctest`` would)
    plus the names its reference section exports (``from adaptlab.encoders import *``, as the page reads).
    """
    finder = doctest.DocTestFinder(exclude_empty=True)
    seen: set[tuple[str, int | None]] = set()
    tests = []
    for name, obj in public_names(page):
        home = sys.modules[obj.__module__]
        section = sys.modules[name.rsplit(".", 1)[0]]
        exported = {n: getattr(section, n) for n in getattr(section, "__all__", [])}
        for test in finder.find(obj, name, module=home, globs={**vars(home), **exported}):
            key = (test.filename or "", test.lineno)
            if key not in seen and any(not ex.options.get(doctest.SKIP) for ex in test.examples):
                seen.add(key)
                tests.append(test)
    return sorted(tests, key=lambda t: t.name)


def on_pre_build(config: Any, **kwargs: Any) -> None:  # mkdocs hook
    page = Path(config["docs_dir"]) / "reference" / "api.md"
    if not page.is_file():
        return
    for name in without_example(page):
        log.warning(f"API reference: {name} has no example (a docstring section 'Example:' with >>> lines)")
    for name in methods_without_docstring(page):
        log.warning(f"API reference: {name} has no docstring (a public method or property)")
    for name in with_skipped_lines(page):
        if name not in MAY_SKIP:
            log.warning(f"API reference: the example of {name} skips lines (doctest: +SKIP); make it run on "
                        "tiny inputs (or add it to MAY_SKIP in docs/_hooks/api_examples.py, with the reason)")
