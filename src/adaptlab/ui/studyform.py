"""The configure page's rung parameters and study-file upload (issue 16): form fields <-> study settings.

Each rung parameter is a text field named ``p.<rung>.<parameter>`` holding a TOML value (``16``, ``5e-5``,
``[0.1, 1.0]``; a bare word is a string); empty means the rung's default. An uploaded study file fills
the same form: rungs, seeds, split, budgets, every ``[rung.<name>]`` parameter, and the study settings
the form has no field for (``extra``: test_size, n_boot, [adaptive] ...), which go to the study as they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from adaptlab.errors import ConfigError

PARAM_PREFIX = "p."
# Rung parameters the form sets elsewhere (the training and refit budgets): not repeated per rung.
_FORM_LEVEL = ("budget", "allow_unequal_budgets")
# Study-file keys the web app takes from its own settings or the upload, never from a study file.
IGNORED_KEYS = ("data", "test", "unlabeled", "text_col", "label_col", "group_col", "time_col", "id_col", "encoding",
                "on_invalid", "encoder", "encoders", "executor", "address", "max_retries", "job_cpus", "job_gpus",
                "job_memory", "rung_resources", "home")
MAX_STUDY_FILE_BYTES = 256 * 1024


def form_parameters(rung: str) -> dict[str, list[dict[str, Any]]]:
    """The parameters of ``rung`` the configure page shows: ``main`` up front, ``more`` folded.

    Example:
        >>> [p["name"] for p in form_parameters("tfidf")["main"]]
        ['ngram_max', 'min_df', 'C_grid']
        >>> [p["default_text"] for p in form_parameters("lora")["more"] if p["name"] == "mixed_precision"]
        ["auto (the study's)"]
    """
    from adaptlab.studyfile import rung_parameters

    shown = [p for p in rung_parameters(rung) if p["identity"] and p["name"] not in _FORM_LEVEL]
    # Left empty, a training rung takes the study's precision (auto), not its own dataclass default.
    shown = [{**p, "default_text": "auto (the study's)"} if p["name"] == "mixed_precision" else p for p in shown]
    return {"main": [p for p in shown if p["main"]], "more": [p for p in shown if not p["main"]]}


def param_fields(fields: "dict[str, Any]") -> dict[str, dict[str, str]]:
    """The non-empty ``p.<rung>.<parameter>`` fields of a posted form, as ``{rung: {parameter: text}}``.

    Example:
        >>> param_fields({"p.lora.r": "16", "p.lora.alpha": " ", "seeds": "3"})
        {'lora': {'r': '16'}}
    """
    out: dict[str, dict[str, str]] = {}
    for name, value in fields.items():
        if not name.startswith(PARAM_PREFIX) or not isinstance(value, str) or not value.strip():
            continue
        rung, _, key = name[len(PARAM_PREFIX):].partition(".")
        if rung and key:
            out.setdefault(rung, {})[key] = value.strip()
    return out


def rung_params_from_form(texts: dict[str, dict[str, str]], chosen: list[str]) -> dict[str, dict[str, Any]]:
    """Parse and check the parameter fields of the ticked rungs (others are kept in the form, not used).

    Example:
        >>> rung_params_from_form({"lora": {"r": "16"}, "tfidf": {"min_df": "1"}}, ["tfidf"])
        {'tfidf': {'min_df': 1}}
        >>> rung_params_from_form({"tfidf": {"min_df": "0"}}, ["tfidf"])
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: parameter tfidf.min_df: tfidf.min_df=0 is not valid: expected an integer >= 1.
    """
    from adaptlab.rungs import RUNGS
    from adaptlab.studyfile import check_rung_params, parse_scalar

    out: dict[str, dict[str, Any]] = {}
    for rung in chosen:
        params = {key: parse_scalar(text) for key, text in texts.get(rung, {}).items()}
        if params and rung in RUNGS:
            check_rung_params(rung, params, lambda key, r=rung: f"parameter {r}.{key}" if key else f"parameters of {r}")
            out[rung] = params
    return out


def form_from_study_file(data: bytes, name: str, form: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The configure form filled from an uploaded study file, and notes on what it did not take.

    A ``.yaml`` / ``.yml`` name is read as YAML. Errors (not TOML or YAML, an unknown key, a bad value) name the file and the line, like ``study run --config``.

    Example:
        >>> f, notes = form_from_study_file(b'rungs = ["tfidf"]\\nseeds = 4\\ntest_size = 0.3\\n[rung.tfidf]\\n'
        ...                                 b'min_df = 1\\n', "s.toml", {"rungs": ["probe"]})
        >>> f["rungs"], f["seeds"], f["params"], f["extra"]
        (['tfidf'], 4, {'tfidf': {'min_df': '1'}}, {'test_size': 0.3})
    """
    from adaptlab.studyfile import (YAML_SUFFIXES, KEYS, format_value, parse_study_file, parse_study_yaml,
                                    resolve_settings)

    if len(data) > MAX_STUDY_FILE_BYTES:
        raise ConfigError(f"{name} is {len(data) / 1024:.0f} KiB; a study file is a few lines of TOML (at most "
                          f"{MAX_STUDY_FILE_BYTES // 1024} KiB). Fix: upload the study.toml, not the data.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{name} is not UTF-8 text. Fix: upload a study file (TOML), e.g. one written by "
                          "`adaptlab study config STUDY -o study.toml`.") from None
    yaml_file = Path(name).suffix.lower() in YAML_SUFFIXES
    settings = parse_study_yaml(text, source=name) if yaml_file else parse_study_file(text, source=name)
    resolved = resolve_settings([settings])
    v = settings.values
    out = dict(form)
    notes = list(resolved.notes)
    if "rungs" in v:
        out["rungs"] = list(v["rungs"])
    for key, field in (("seeds", "seeds"), ("split", "split"), ("time", "time_budget"), ("budget", "train_budget")):
        if key in v:
            out[field] = v[key]
    params = {r: dict(p) for r, p in resolved.rung_params.items()}
    refit_budget = params.get("refit", {}).pop("budget", None)
    if refit_budget is not None:
        out["refit_budget"] = refit_budget
    out["params"] = {r: {k: format_value(x) for k, x in p.items() if x is not None} for r, p in params.items() if p}
    extra = {KEYS[k].field: x for k, x in v.items()
             if KEYS[k].field and k not in ("rungs", "seeds", "split", "time", "budget", "encoder")}
    if resolved.adaptive:
        extra["adaptive"] = dict(resolved.adaptive)
    if v.get("screen_fidelity") is not None and v.get("time") is not None:
        extra.setdefault("adaptive", {})["screen_fidelity"] = v["screen_fidelity"]
    out["extra"] = extra
    ignored = [k for k in v if k in IGNORED_KEYS]
    if ignored:
        notes.append(f"not used by the web app (it takes these from the upload and its own settings): "
                     f"{', '.join(ignored)}")
    out["file_notes"] = notes
    out["study_file"] = name
    return out, notes
