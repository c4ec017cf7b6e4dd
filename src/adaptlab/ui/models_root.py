"""The model folders the web app offers: folders directly under ``settings.models_root`` that hold a
``registry.json`` (no symlink out of the root), named by a safe folder name. The browser names a model,
never a path.
"""
from __future__ import annotations

import re
from pathlib import Path

from starlette.exceptions import HTTPException

from adaptlab.ui.settings import UISettings

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def model_dirs(settings: UISettings) -> dict[str, Path]:
    """The model folders the web app offers, by name."""
    root = settings.models_root
    if not root.is_dir():
        return {}
    base = root.resolve()
    out = {}
    for child in sorted(root.iterdir(), key=lambda p: p.name):
        if not MODEL_NAME.match(child.name) or not child.is_dir():
            continue
        real = child.resolve()
        if real.parent != base or not (real / "registry.json").is_file():
            continue  # symlinks out of the models root are not offered
        out[child.name] = real
    return out


def model_folder(settings: UISettings, name: str) -> tuple[str, Path]:
    """(name, folder) of the model the browser names, else 404."""
    dirs = model_dirs(settings)
    if not MODEL_NAME.match(name or "") or name not in dirs:
        raise HTTPException(404, "model not found.")
    return name, dirs[name]


__all__ = ["MODEL_NAME", "model_dirs", "model_folder"]
