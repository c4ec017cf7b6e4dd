"""Analyses of a study kept next to its run store (learning curve, slices), as JSON files.

They live in ``<home>/analyses/<study_id>/<name>.json``; :meth:`Evidence.from_store` and the report read
them back, so a decision and its report use the same numbers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

ANALYSES_DIR = "analyses"


def analyses_dir(home: str | Path, study_id: str) -> Path:
    """Where the analyses of a study are kept, next to the run store."""
    return Path(home) / ANALYSES_DIR / study_id


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def save_analysis(home: str | Path, study_id: str, name: str, payload: dict[str, Any]) -> Path:
    """Save one analysis of a study as JSON; returns the file.

    Example:
        >>> import tempfile
        >>> p = save_analysis(tempfile.mkdtemp(), "abc", "slices", {"slices": []})
        >>> load_analysis(p.parent.parent.parent, "abc", "slices")
        {'slices': []}
    """
    d = analyses_dir(home, study_id)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_jsonable), encoding="utf-8")
    return path


def load_analysis(home: str | Path, study_id: str, name: str) -> Optional[dict[str, Any]]:
    """An analysis saved beside the run store for a study (``"learning_curve"``, ``"slices"``), or None.

    Example:
        >>> load_analysis("/nonexistent-home", "abc123", "slices") is None
        True
    """
    path = analyses_dir(home, study_id) / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
