"""Release (issue #19): one version source, a changelog entry for it, package data declared for the wheel.

scripts/wheel_check.sh (run by CI) builds the wheel and checks it installed; these are the fast checks on the tree.
"""
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import adaptlab
from adaptlab.cli import app

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_the_version_has_one_source():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "adaptlab.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+|\.dev\d+)?", adaptlab.__version__)
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == adaptlab.__version__


def test_the_changelog_has_this_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text and f"## [{adaptlab.__version__}] - " in text
    # Keep a Changelog section names only.
    sections = set(re.findall(r"^### (\w+)", text, flags=re.M))
    assert sections <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_every_data_file_of_the_package_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["adaptlab"]
    tracked = subprocess.run(["git", "ls-files", "src/adaptlab"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    data = [Path(f).relative_to("src/adaptlab") for f in tracked if not f.endswith(".py")]
    assert data, "the package has templates and static files"
    undeclared = [str(f) for f in data if not any(f.match(p) for p in patterns)]
    assert not undeclared, f"add these to [tool.setuptools.package-data]: {undeclared}"


def test_extras_are_declared():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"gpu", "ray", "docs", "test", "track"} <= set(extras)
    # The test extra carries what the tests import (mlflow for the tracking tests).
    assert any(r.startswith("mlflow") for r in extras["test"]) and extras["track"][0] in extras["test"]
