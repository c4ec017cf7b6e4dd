"""One settings schema, a start (issue #32 item 2): the study file's keys and the options of `study run` name
the same settings.

`adaptlab.studyfile.KEYS` is the declared list of study settings (type, help, choices); every `study run`
option is one of them under the same name (`--text-col` is the key `text_col`), except the options listed
here with why. A setting added to the command and not the file (or the reverse) fails here, with its name.
Not yet generated from one declaration: the CLI options, the web form and the docs table still restate it.
"""
from __future__ import annotations

import click
import typer.main

from adaptlab import studyfile
from adaptlab.cli import app

# `study run` options that are not settings of a study, so not study-file keys.
FLAG_ONLY = {
    "config": "the study file itself",
    "set": "KEY=VALUE overrides of the study file's keys",
    "json": "how the command prints, not what the study runs",
    "recompute": "an action on the stored results of this run, not a setting kept with the study",
    "track": "where this run is also logged (MLflow), not part of the study",
    "tracking_uri": "where this run is also logged (MLflow), not part of the study",
}
# Study-file keys with no flag of their own: set with `--set KEY=VALUE`.
KEY_ONLY = {
    "n_boot": "bootstrap resamples of the bands (--set n_boot=2000)",
    "near_dup_threshold": "near-duplicate cut of the split (--set near_dup_threshold=0.9)",
}


def _study_run_options() -> dict[str, click.Parameter]:
    root = typer.main.get_command(app)
    ctx = click.Context(root)
    run = root.get_command(ctx, "study").get_command(ctx, "run")
    return {o[2:].replace("-", "_"): p for p in run.params for o in p.opts if o.startswith("--")}


def test_study_run_options_and_study_file_keys_are_the_same_settings():
    options, keys = set(_study_run_options()), set(studyfile.KEYS)
    assert options - keys == set(FLAG_ONLY), (
        f"`study run` options without a study-file key: {sorted(options - keys - set(FLAG_ONLY))}; declare the "
        "setting in adaptlab.studyfile.KEYS (or list it in FLAG_ONLY with why it is not a setting)")
    assert keys - options == set(KEY_ONLY), (
        f"study-file keys without a `study run` option: {sorted(keys - options - set(KEY_ONLY))}")


# `study run` options whose help is still missing (the key's help is the one to reuse): may only shrink.
NO_HELP_YET = {"test_size", "val_size"}


def test_every_shared_setting_has_help_in_both_places():
    options = _study_run_options()
    assert all(key.help.strip() for key in studyfile.KEYS.values())
    missing = {name for name in studyfile.KEYS if name in options and not (options[name].help or "").strip()}
    assert missing <= NO_HELP_YET, f"`study run` options without help: {sorted(missing - NO_HELP_YET)}"


def test_aliases_point_at_declared_settings():
    # Old or alternative spellings of a key are accepted in a file; each names a declared setting.
    assert set(studyfile.ALIASES.values()) <= set(studyfile.KEYS) | {"rung"}
    assert set(studyfile.REFIT_KEYS) <= set(studyfile.KEYS)
