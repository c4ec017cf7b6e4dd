"""The rung catalogue for the command line's help texts, read without importing the rungs.

``--rungs`` help is built from `adaptlab.rungs.ladder` (every catalogued rung and the default sets), so a new
rung appears in ``study run --help`` and ``plan --help`` by its record alone. Importing `adaptlab.rungs`
registers every rung, which imports torch and scikit-learn; `adaptlab --help` and the light commands must not
pay that. The catalogue module itself imports nothing of adaptlab, so it is loaded here by itself, under its
own name: the rungs, imported later, find it in ``sys.modules`` and use this very module.

Example:
    >>> ladder = rung_catalogue()
    >>> ladder.LADDER[0], ladder is rung_catalogue()
    ('tfidf', True)
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_NAME = "adaptlab.rungs.ladder"


def rung_catalogue() -> ModuleType:
    """`adaptlab.rungs.ladder`, imported without running `adaptlab.rungs` (no torch); the module the rungs use."""
    loaded = sys.modules.get(_NAME)
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("adaptlab.rungs")  # finds the folder; runs nothing of the package
    assert package is not None and package.submodule_search_locations
    spec = importlib.util.spec_from_file_location(_NAME, Path(package.submodule_search_locations[0]) / "ladder.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_NAME]
        raise
    return module
