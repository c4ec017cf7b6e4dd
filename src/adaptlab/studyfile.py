"""Study files: a study's settings (what the `study run` flags hold, plus every rung's parameters) in TOML.

A study file keeps a study next to its data and reruns it exactly::

    rungs = ["tfidf", "probe", "lora"]
    seeds = 3
    budget = "200steps"

    [rung.lora]
    r = 16
    backbone_lr = 5e-5

Top-level keys are the `study run` flags without their dashes (``seeds``, ``test_size``, ``refit_budget``,
``mixed_precision`` ...); ``[rung.<name>]`` tables go to ``StudyConfig.rung_params[<name>]`` and are checked
against that rung's config dataclass; ``[adaptive]`` holds a decision-driven study's settings. Every key
and value is checked like the API checks it, and an error names the file's line. ``--set lora.r=16``
overrides one key (:func:`parse_set_options`); :func:`resolve_settings` layers the file, ``--set`` and
explicit flags; :func:`study_file_text` writes a stored study's configuration back as a study file.

Example:
    >>> s = parse_study_file('rungs = ["tfidf", "probe"]\\nseeds = 3\\n[rung.tfidf]\\nmin_df = 1\\n')
    >>> s.values, s.rung_params
    ({'rungs': ['tfidf', 'probe'], 'seeds': 3}, {'tfidf': {'min_df': 1}})
    >>> study_config(s).rung_params
    {'tfidf': {'min_df': 1}}
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from adaptlab.errors import AdaptlabError, ConfigError
from adaptlab.values import is_int, is_number

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (pyproject: tomli; python_version < "3.11"); tested by hiding tomllib
    import tomli as tomllib

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Key:
    """One top-level key of a study file: the kind of value it takes and what it sets."""

    kind: str  # int | float | bool | str | path | rungs | strlist | budget | duration | memory | table
    help: str
    field: Optional[str] = None  # the StudyConfig field it sets, if any
    choices: tuple[str, ...] = ()


# The `study run` flags (without dashes) and the StudyConfig fields that have no flag.
KEYS: dict[str, Key] = {
    "data": Key("path", "labeled data file (a relative path is read from the study file's folder)"),
    "test": Key("path", "labeled test file, sealed (default: carved from data)"),
    "unlabeled": Key("path", "unlabeled in-domain texts (the refit rung)"),
    "text_col": Key("str", "text column (default: text)"),
    "label_col": Key("str", "label column (default: label)"),
    "group_col": Key("str", "group column: no group crosses splits"),
    "time_col": Key("str", "timestamp column (split = \"time\")"),
    "id_col": Key("str", "id column (default: id, else row number)"),
    "encoding": Key("str", "file encoding when not UTF-8, e.g. cp1252"),
    "on_invalid": Key("str", "what to do with invalid rows", choices=("error", "drop")),
    "rungs": Key("rungs", "rungs of the ladder, e.g. [\"tfidf\", \"probe\"]", "rungs"),
    "seeds": Key("int", "number of seeds", "seeds"),
    "split": Key("str", "split strategy", "split"),
    "test_size": Key("float", "share of the data sealed as test", "test_size"),
    "val_size": Key("float", "share of the train pool used for validation", "val_size"),
    "test_seed": Key("int", "seed of the sealed test draw", "test_seed"),
    "encoder": Key("str", "encoder folder or name (default: the packaged all-MiniLM-L6-v2)", "encoder"),
    "encoders": Key("strlist", "encoders to compare first (names or folders)"),
    "positive_label": Key("str", "positive class of a binary task", "positive_label"),
    "budget": Key("budget", "training budget of the network rungs, e.g. \"500steps\", \"30min\"", "budget"),
    "time": Key("duration", "whole-study time budget, e.g. \"3h\" (a decision-driven study)", "time_budget"),
    "screen_fidelity": Key("float", "with time: share of its budget a network rung gets when screened"),
    "name": Key("str", "a name for the study", "name"),
    "refit_budget": Key("str", "refit length, e.g. \"300steps\" (same as [rung.refit] budget)"),
    "refit_objective": Key("str", "refit objective: mlm | simcse (same as [rung.refit] objective)"),
    "transductive": Key("bool", "let the refit read the test texts, never labels ([rung.refit] transductive)"),
    "mixed_precision": Key("str", "precision of the rungs that train the encoder: auto | no | bf16 | fp16",
                           "mixed_precision"),
    "long_text": Key("str", "how the rungs read texts longer than the encoder's window: truncate | head_tail | "
                            "chunk_mean | chunk_max (the chunks: probe and refit only; [rung.probe] long_text)"),
    "executor": Key("str", "where the jobs run: inprocess | ray"),
    "address": Key("str", "Ray cluster address: auto | ray://host:10001"),
    "max_retries": Key("int", "Ray: resubmit a failed job this many times"),
    "job_cpus": Key("float", "Ray: CPUs per job"),
    "job_gpus": Key("float", "Ray: GPUs per job"),
    "job_memory": Key("memory", "Ray: memory per job, e.g. \"4GB\""),
    "rung_resources": Key("table", "Ray: per-rung requests, e.g. {refit = {gpus = 1}}"),
    "precision": Key("str", "precision of the frozen encoder: fp32 | bf16 | int8 | auto", "encode_precision"),
    "precision_tolerance": Key("float", "largest validation-F1 loss bf16 or int8 may show", "precision_tolerance"),
    "int8_tolerance": Key("float", "deprecated name of precision_tolerance", "int8_tolerance"),
    "near_dup_threshold": Key("float", "Jaccard similarity of near-duplicates", "near_dup_threshold"),
    "n_boot": Key("int", "bootstrap resamples of the bands", "n_boot"),
    "home": Key("path", "folder of the run store and caches"),
}
TABLES = ("rung", "adaptive")
# Names a user may reach for, and what a study file calls them.
ALIASES = {"time_budget": "time", "encode_precision": "precision", "rung_params": "rung", "rung_parameters": "rung"}
# The refit flags: top-level keys that set one parameter of the refit rung.
REFIT_KEYS = {"refit_budget": "budget", "refit_objective": "objective", "transductive": "transductive"}
# Rung parameters whose default is dropped after merging, so a study without them keeps its id. (A rung's
# own mixed_precision="no" is kept: it overrides the study's "auto"; the study id leaves it out.)
_DROP_DEFAULTS = {"transductive": False, "long_text": "truncate"}

Where = Callable[[tuple[str, ...]], str]


@dataclass
class StudySettings:
    """One layer of study settings: a study file, the ``--set`` options or the flags given explicitly.

    ``values`` holds top-level keys (see :data:`KEYS`), ``rung_params`` the ``[rung.<name>]`` tables,
    ``adaptive`` the ``[adaptive]`` table; ``source`` names the layer and ``lines`` maps a key path such
    as ``("rung", "lora", "r")`` to its line in the file.

    Example:
        >>> StudySettings(values={"seeds": 3}, source="flags").values["seeds"]
        3
    """

    values: dict[str, Any] = field(default_factory=dict)
    rung_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    adaptive: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)


@dataclass
class ResolvedSettings:
    """Settings after layering: the effective top-level values, rung parameters and adaptive settings;
    ``origin`` says which layer set each top-level key, ``notes`` what was left out and why."""

    values: dict[str, Any]
    rung_params: dict[str, dict[str, Any]]
    adaptive: dict[str, Any]
    origin: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- reading
def read_study_file(path: "str | Path") -> StudySettings:
    """Read and check a study file; relative paths in it (``data``, ``test`` ...) are read from its folder.

    Example:
        >>> read_study_file("study.toml").rung_params  # doctest: +SKIP
        {'lora': {'r': 16, 'backbone_lr': 5e-05}}
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"study file {p} does not exist. Fix: check the path given to --config.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the study file {p}: {exc}. Fix: save it as UTF-8 text.") from None
    if p.suffix.lower() in YAML_SUFFIXES:
        return parse_study_yaml(text, source=str(p), base=p.parent)
    return parse_study_file(text, source=str(p), base=p.parent)


def parse_study_file(text: str, source: str = "study file", base: "str | Path | None" = None) -> StudySettings:
    """Parse and check a study file's TOML ``text``; errors name ``source`` and the line.

    Example:
        >>> parse_study_file("seeds = 0", source="s.toml")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: s.toml, line 1: seeds=0 is not valid: expected an integer >= 1 ...
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}. Fix: write key = value lines, strings in quotes "
                          "(e.g. budget = \"500steps\"), rung parameters under [rung.<name>].") from None
    lines = key_lines(text)

    def where(path: tuple[str, ...]) -> str:
        for n in range(len(path), 0, -1):
            if path[:n] in lines:
                return f"{source}, line {lines[path[:n]]}"
        return source

    settings = _from_mapping(raw, where, base=Path(base) if base is not None else None)
    settings.source, settings.lines = source, lines
    return settings


def parse_study_yaml(text: str, source: str = "study file", base: "str | Path | None" = None) -> StudySettings:
    """Parse and check a study file written in YAML (the same keys as TOML); errors name the line.

    ``null`` leaves a top-level key at its default. Numbers such as ``5e-5`` are floats (YAML 1.1 would
    read them as strings without a dot).

    Example:
        >>> s = parse_study_yaml("rungs: [tfidf, lora]\\nseeds: 3\\nrung:\\n  lora:\\n    r: 16\\n    backbone_lr: 5e-5\\n")
        >>> s.values, s.rung_params
        ({'rungs': ['tfidf', 'lora'], 'seeds': 3}, {'lora': {'r': 16, 'backbone_lr': 5e-05}})
    """
    import yaml

    try:
        node = yaml.compose(text, Loader=_yaml_loader())
        raw = yaml.load(text, Loader=_yaml_loader()) if node is not None else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}. Fix: write key: value lines, rung parameters "
                          "under rung: then the rung's name, indented.") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} is not a study file: it holds a {type(raw).__name__}, not key: value lines. "
                          "Fix: write e.g. seeds: 3 on its own line.")
    lines = _yaml_lines(node) if node is not None else {}

    def where(path: tuple[str, ...]) -> str:
        for n in range(len(path), 0, -1):
            if path[:n] in lines:
                return f"{source}, line {lines[path[:n]]}"
        return source

    raw = {k: v for k, v in raw.items() if v is not None}
    settings = _from_mapping(raw, where, base=Path(base) if base is not None else None)
    settings.source, settings.lines = source, lines
    return settings


@functools.lru_cache(maxsize=1)
def _yaml_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that reads 5e-5 as a float (YAML 1.2 does; PyYAML's 1.1 needs a dot)."""

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


def _yaml_lines(node: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """The line (1-based) of each key of a composed YAML mapping, by key path."""
    import yaml

    out: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (str(key.value),)
            out[sub] = key.start_mark.line + 1
            out.update(_yaml_lines(value, sub))
    return out


def parse_set_options(items: "list[str] | tuple[str, ...] | None") -> StudySettings:
    """``--set KEY=VALUE`` options as a layer of settings; values are TOML scalars (a bare word is a string).

    ``lora.r=16`` (or ``rung.lora.r=16``) sets a rung parameter, ``adaptive.margin=0.03`` an adaptive
    setting, ``seeds=3`` a top-level key.

    Example:
        >>> s = parse_set_options(["lora.r=16", "seeds=3", "budget=200steps", "probe.C_grid=[0.1, 1.0]"])
        >>> s.values, s.rung_params
        ({'seeds': 3, 'budget': '200steps'}, {'lora': {'r': 16}, 'probe': {'C_grid': [0.1, 1.0]}})
    """
    from adaptlab.rungs import RUNGS

    raw: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError.invalid("--set", item, "KEY=VALUE, e.g. --set lora.r=16 or --set seeds=3")
        path = tuple(p.strip() for p in key.split("."))
        if path[0] in RUNGS and len(path) == 2:
            path = ("rung", *path)
        value = parse_scalar(text)
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError.invalid("--set", item, "KEY=VALUE with each key set once")
        node[path[-1]] = value
        origin[path] = item

    def where(path: tuple[str, ...]) -> str:
        for n in range(len(path), 0, -1):
            hits = [item for p, item in origin.items() if p[:n] == path[:n]]
            if hits:
                return f"--set {hits[0]}"
        return "--set"

    settings = _from_mapping(raw, where, base=None)
    settings.source = "--set"
    return settings


def parse_scalar(text: str) -> Any:
    """A ``--set`` value as TOML reads it; a bare word that is not TOML is a string.

    Example:
        >>> parse_scalar("16"), parse_scalar("5e-5"), parse_scalar("true"), parse_scalar("500steps"), parse_scalar('"x"')
        (16, 5e-05, True, '500steps', 'x')
    """
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The line (1-based) of each table header and key in TOML ``text``, by key path.

    Good enough for top-level keys, ``[table]`` headers, dotted keys and the keys of a table; a key
    inside a multi-line string or array is not looked for.

    Example:
        >>> key_lines('seeds = 3\\n\\n[rung.lora]\\nr = 16\\n')
        {('seeds',): 1, ('rung', 'lora'): 3, ('rung',): 3, ('rung', 'lora', 'r'): 4}
    """
    out: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.match(r"^\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$", s)
        if m:
            table = _split_key(m.group(1))
            for n in range(len(table), 0, -1):
                out.setdefault(table[:n], i)
            continue
        m = re.match(r"""^((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*=""", s)
        if m:
            path = table + _split_key(m.group(1))
            for n in range(len(path), len(table), -1):
                out.setdefault(path[:n], i)
    return out


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(r"""\s*("[^"]*"|'[^']*'|[^.]+)\s*(?:\.|$)""", text)
    return tuple(p.strip().strip("\"'") for p in parts)


# ----------------------------------------------------------------------------------------- checking
def _from_mapping(raw: dict[str, Any], where: Where, base: Optional[Path]) -> StudySettings:
    settings = StudySettings()
    for key, value in raw.items():
        if key == "rung":
            settings.rung_params = _check_rung_tables(value, where)
        elif key == "adaptive":
            settings.adaptive = _check_adaptive(value, where)
        elif key in KEYS:
            settings.values[key] = _check_value(key, value, where, base)
        elif key in _unmapped_study_fields():  # a StudyConfig field newer than this table: as the API takes it
            try:
                _validate(key, Key("any", "", key), value)
            except ConfigError as exc:
                raise ConfigError(_at(where((key,)), str(exc))) from None
            settings.values[key] = value
        else:
            raise _unknown(where((key,)), key, value, sorted([*KEYS, *TABLES]), "key")
    return settings


def _unmapped_study_fields() -> set[str]:
    from adaptlab.config import StudyConfig

    mapped = {spec.field for spec in KEYS.values()} | {"rung_params", "adaptive"}
    return {f.name for f in dataclasses.fields(StudyConfig)} - mapped


def _unknown(at: str, key: str, value: Any, allowed: list[str], what: str, extra: str = "") -> ConfigError:
    shown = "" if isinstance(value, dict) else f" (= {format_value(value)})"
    hint = ""
    top = ALIASES.get(key, key)
    if what == "key" and key in ALIASES:
        hint = f" A study file calls it {ALIASES[key]!r}."
    elif what != "key" and (top in KEYS or top in TABLES):
        hint = (f" {top!r} is a top-level key: move it above the first [table] (in TOML every key after a "
                "[table] header belongs to that table).")
    else:
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            hint = f" Did you mean {close[0]!r}?"
    return ConfigError(f"{at}: unknown {what} {key!r}{shown}{extra}; allowed: {', '.join(allowed)}.{hint} "
                       "Fix: correct or remove it.")


def _check_value(key: str, value: Any, where: Where, base: Optional[Path]) -> Any:
    spec, at = KEYS[key], where((key,))
    value = _coerce(key, spec, value, at)
    try:
        _validate(key, spec, value)
    except ConfigError as exc:
        raise ConfigError(f"{at}: {exc}") from None
    if spec.kind == "float":
        value = float(value)  # what the flag gives: the same study id from a file and from flags
    if spec.kind == "path" and base is not None and not Path(value).expanduser().is_absolute():
        value = str(base / value)
    return value


def _coerce(key: str, spec: Key, value: Any, at: str) -> Any:
    """Check the TOML type of a top-level value; numbers and lists become what the flag would give."""
    kind = spec.kind
    ok = {
        "int": is_int(value),
        "float": is_number(value, finite=False),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "path": isinstance(value, str) and value.strip() != "",
        "rungs": isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)),
        "strlist": isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)),
        "budget": isinstance(value, str) or is_int(value),
        "duration": isinstance(value, str) or is_number(value, finite=False),
        "memory": isinstance(value, str) or is_int(value),
        "table": isinstance(value, dict),
    }[kind]
    if not ok:
        raise ConfigError(f"{at}: " + str(ConfigError.invalid(key, value, _KIND_WORDS[kind] + _choices(spec))))
    if kind == "rungs" and isinstance(value, str):
        return [r.strip() for r in value.split(",") if r.strip()]
    if kind == "strlist" and isinstance(value, list):
        return ",".join(value)
    if kind in ("budget", "duration") and not isinstance(value, str):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return value


_KIND_WORDS = {
    "int": "an integer", "float": "a number", "bool": "true or false", "str": "a string in quotes",
    "path": "a file path in quotes", "rungs": 'a list of rung names, e.g. ["tfidf", "probe"]',
    "strlist": 'a list of names or folders, e.g. ["minilm", "e5-small"]',
    "budget": 'a number of steps or a string such as "500steps" or "30min"',
    "duration": 'a string such as "3h" or "90min", or a number of seconds',
    "memory": 'a size such as "4GB" or a number of bytes', "table": "a table, e.g. {refit = {gpus = 1}}",
}


def _choices(spec: Key) -> str:
    return f" (one of {', '.join(spec.choices)})" if spec.choices else ""


def _validate(key: str, spec: Key, value: Any) -> None:
    """The API's own checks, one key at a time (cross-key checks run when the study is built)."""
    from adaptlab.config import ExecutorConfig, StudyConfig

    if spec.choices and value not in spec.choices:
        raise ConfigError.invalid(key, value, f"one of {', '.join(spec.choices)}")
    if spec.field is not None:
        StudyConfig(**{spec.field: value})
        if key == "rungs":
            from adaptlab.rungs import get_rung

            for name in value:
                get_rung(name)
    elif key in ("refit_budget", "refit_objective"):
        from adaptlab.rungs.refit import RefitConfig

        RefitConfig(**{REFIT_KEYS[key]: value})
    elif key == "long_text":
        from adaptlab.encoders.longtext import check_long_text

        check_long_text(value)
    elif key == "mixed_precision":
        from adaptlab.rungs.runtime import check_mixed_precision

        check_mixed_precision(value, "mixed_precision")
    elif key == "screen_fidelity":
        from adaptlab.evaluate.adaptive import AdaptiveConfig

        AdaptiveConfig(screen_fidelity=value)
    elif key in ("executor", "max_retries", "job_cpus", "job_gpus", "job_memory", "rung_resources"):
        name = {"executor": "kind", "job_cpus": "cpus", "job_gpus": "gpus", "job_memory": "memory"}.get(key, key)
        ExecutorConfig(**{name: value})


def _check_adaptive(table: Any, where: Where) -> dict[str, Any]:
    from adaptlab.evaluate.adaptive import AdaptiveConfig

    if not isinstance(table, dict):
        raise ConfigError(f"{where(('adaptive',))}: adaptive={table!r} is not valid: expected a table "
                          "[adaptive] of settings, e.g. margin = 0.03.")
    hints = _hints(AdaptiveConfig)
    fields = {f.name: f for f in dataclasses.fields(AdaptiveConfig)}
    for key, value in table.items():
        at = where(("adaptive", key))
        if key not in fields:
            raise _unknown(at, key, value, sorted(fields), "adaptive setting")
        _check_field_type(f"adaptive.{key}", value, hints.get(key, Any), fields[key], at)
        try:
            AdaptiveConfig(**{key: value})
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}") from None
    return dict(table)


def _check_rung_tables(tables: Any, where: Where) -> dict[str, dict[str, Any]]:
    from adaptlab.rungs import RUNGS, available_rungs

    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(f"{where(('rung',))}: rung parameters go in one table per rung, e.g. [rung.lora] "
                          "then r = 16 on the next line.")
    out: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        if name not in RUNGS:
            raise _unknown(where(("rung", name)), name, table, available_rungs(), "rung", " in [rung.<name>]")
        check_rung_params(name, table, lambda key, rung=name: where(("rung", rung, key) if key else ("rung", rung)))
        out[name] = dict(table)
    return out


def check_rung_params(rung: str, params: dict[str, Any], where: Callable[[Optional[str]], str] = lambda _k: "") -> None:
    """Check parameters of ``rung`` against its config dataclass: each name and type, then the rung's own
    checks on them together. The error names the parameter, the value, what is allowed (with the default
    and help text) and where it was given (``where(parameter)``; ``where(None)``: the whole table).

    Example:
        >>> check_rung_params("lora", {"r": 0}, lambda key: f"study.toml [rung.lora] {key}")
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: study.toml [rung.lora] r: lora.r=0 is not valid: expected an integer >= 1, e.g. 8.
    """
    from adaptlab.rungs import RUNGS
    from adaptlab.rungs.ladder import facts as rung_facts

    cls = RUNGS[rung].config_class
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    for key, value in params.items():
        if key not in fields:
            raise _unknown(where(key) or rung, key, value, sorted(fields), "parameter", f" for rung {rung}")
        _check_field_type(f"{rung}.{key}", value, hints.get(key, Any), fields[key], where(key))
    try:
        cls.from_dict(dict(params), rung)  # the rung's own checks, on the keys together (cross-field ones too)
    except ConfigError as exc:
        m = re.match(rf"^{re.escape(rung)}\.(\w+)=", str(exc))
        raise ConfigError(_at(where(m.group(1) if m and m.group(1) in params else None), str(exc))) from None
    except (TypeError, ValueError) as exc:  # a rung check that assumed a type: still the user's values
        raise ConfigError(_at(where(None), f"parameters of {rung} {params!r} are not valid: {exc}.")) from None


def check_rung_param(rung: str, key: str, value: Any, at: str = "") -> None:
    """Check one parameter of ``rung`` (see :func:`check_rung_params`); ``at`` says where it was given.

    Example:
        >>> check_rung_param("lora", "r", 0)
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: lora.r=0 is not valid: expected an integer >= 1, e.g. 8.
    """
    check_rung_params(rung, {key: value}, lambda _key: at)


def _at(at: str, message: str) -> str:
    return f"{at}: {message}" if at else message


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation this Python cannot resolve: the rung's own checks still run
        return {}


def _check_field_type(name: str, value: Any, hint: Any, f: dataclasses.Field, at: str) -> None:
    if not _matches(value, hint):
        raise ConfigError((f"{at}: " if at else "") + str(ConfigError.invalid(
            name, value, f"{_type_words(hint)}{_field_words(f)}")))


def _field_words(f: dataclasses.Field) -> str:
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    text = f" (default {format_value(default)}"
    if f.metadata.get("help"):
        text += f": {f.metadata['help']}"
    return text + ")"


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_int(value)
    if hint is float:
        return is_number(value, finite=False)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, list) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in args
    return True


def _type_words(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return " or ".join(_type_words(a) for a in args if a is not type(None))
    if origin in (list, tuple):
        inner = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(args[0] if args else None,
                                                                                        "values")
        return f"a list of {inner}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string in quotes",
            dict: "a table"}.get(hint, "a value")


# ----------------------------------------------------------------------------------------- layering
def resolve_settings(layers: "list[StudySettings]", defaults: Optional[dict[str, Any]] = None) -> ResolvedSettings:
    """Layer settings, later over earlier: e.g. ``[study file, --set, flags given explicitly]``.

    Top-level keys: the last layer that sets a key wins. Rung parameters: within a layer a
    ``[rung.<name>]`` table beats that layer's top-level keys that set the same parameter
    (``refit_budget``, ``mixed_precision`` ...); a later layer beats an earlier one. Parameters of rungs not
    in the effective ``rungs`` are left out (with a note), so the study's configuration holds only what it
    used.

    Example:
        >>> f = StudySettings(values={"rungs": ["probe", "lora"], "mixed_precision": "bf16"},
        ...                   rung_params={"lora": {"r": 16}}, source="study.toml")
        >>> r = resolve_settings([f, parse_set_options(["lora.r=4"])])
        >>> r.rung_params, r.values["mixed_precision"]  # the study's precision: every training rung's default
        ({'lora': {'r': 4}}, 'bf16')
    """
    values: dict[str, Any] = dict(defaults or {})
    origin: dict[str, str] = {k: "default" for k in values}
    for layer in layers:
        for k, v in layer.values.items():
            values[k], origin[k] = v, layer.source
    rungs = values.get("rungs") or default_study_rungs(values)
    rungs = [r.strip() for r in rungs.split(",") if r.strip()] if isinstance(rungs, str) else list(rungs)
    if not values.get("rungs"):
        values["rungs"] = list(rungs)  # the default, written out: the study's configuration names what it ran
    params: dict[str, dict[str, Any]] = {}
    adaptive: dict[str, Any] = {}
    notes: list[str] = []
    for layer in layers:
        if layer.values.get("mixed_precision") is not None:  # a later top-level precision beats earlier rung tables
            for table in params.values():
                table.pop("mixed_precision", None)
        for name, table in _flag_rung_params(layer.values, rungs).items():
            params.setdefault(name, {}).update(table)
        for name, table in layer.rung_params.items():
            if name not in rungs:
                notes.append(f"[rung.{name}] in {layer.source} not used: {name} is not in rungs ({','.join(rungs)})")
                continue
            params.setdefault(name, {}).update(table)
        adaptive.update(layer.adaptive)
    for name in list(params):
        for key, default in _DROP_DEFAULTS.items():
            if key in params[name] and params[name][key] == default:
                del params[name][key]
        if not params[name]:
            del params[name]
    return ResolvedSettings(values=values, rung_params=params, adaptive=adaptive, origin=origin, notes=notes)


def default_study_rungs(values: dict[str, Any]) -> list[str]:
    """The rungs of settings that name none: :func:`adaptlab.rungs.ladder.default_rungs`, the ladder with a
    time budget (``time``; ``refit`` where ``unlabeled`` texts are given), else ``tfidf`` and ``probe``.

    Example:
        >>> default_study_rungs({"seeds": 3})
        ['tfidf', 'probe']
        >>> rungs = default_study_rungs({"time": "40min", "unlabeled": "unl.csv"})
        >>> rungs[:3], "lora" in rungs
        (['tfidf', 'probe', 'refit'], True)
    """
    from adaptlab.rungs.ladder import default_rungs

    return default_rungs(timed=values.get("time") is not None, unlabeled=values.get("unlabeled") is not None)


def _flag_rung_params(values: dict[str, Any], rungs: list[str]) -> dict[str, dict[str, Any]]:
    """The rung parameters a layer's top-level keys set (the refit keys; ``long_text``, every frozen rung's)."""
    out: dict[str, dict[str, Any]] = {}
    for key, param in REFIT_KEYS.items():
        if values.get(key) is not None and "refit" in rungs:  # without refit: the caller's error (check_refit_keys)
            out.setdefault("refit", {})[param] = values[key]
    if values.get("long_text") is not None:
        from adaptlab.encoders.longtext import check_long_text

        for name in long_text_rungs(rungs, values["long_text"]):
            out.setdefault(name, {})["long_text"] = check_long_text(values["long_text"])
    return out


def long_text_rungs(rungs: "list[str]", value: Optional[str] = None) -> list[str]:
    """The rungs among ``rungs`` that take ``long_text`` and can read texts as ``value`` says: the frozen rungs
    (probe, refit) every strategy, the rungs that train the encoder the one-window ones (truncate, head_tail).

    Example:
        >>> long_text_rungs(["tfidf", "probe", "refit", "lora"], "head_tail")
        ['probe', 'refit', 'lora']
        >>> long_text_rungs(["tfidf", "probe", "refit", "lora"], "chunk_mean")
        ['probe', 'refit']
    """
    from adaptlab.encoders.longtext import ONE_WINDOW_STRATEGIES, LongTextStrategy
    from adaptlab.rungs import RUNGS

    several = value is not None and LongTextStrategy.parse(value).name not in ONE_WINDOW_STRATEGIES
    out = []
    for r in [r for r in rungs if r in RUNGS]:
        field_ = {f.name: f for f in dataclasses.fields(RUNGS[r].config_class)}.get("long_text")
        if field_ is not None and not (several and field_.metadata.get("one_window")):
            out.append(r)
    return out


def check_long_text_key(values: dict[str, Any]) -> None:
    """Fail when ``long_text`` asks for a strategy other than truncate and no rung in ``rungs`` takes it.

    Example:
        >>> check_long_text_key({"rungs": ["tfidf"], "long_text": "chunk_mean"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: long_text = "chunk_mean" configures the rungs that read texts that way (probe, refit), ...
    """
    value = values.get("long_text")
    rungs = values.get("rungs") or []
    rungs = [r.strip() for r in rungs.split(",")] if isinstance(rungs, str) else list(rungs)
    if value in (None, "truncate") or long_text_rungs(rungs, value):
        return
    from adaptlab.rungs import RUNGS

    takers = ", ".join(long_text_rungs(list(RUNGS), value))
    raise ConfigError(f'long_text = "{value}" configures the rungs that read texts that way ({takers}), and none '
                      f"is in rungs ({','.join(rungs)}); add one (e.g. --rungs tfidf,probe) or leave long_text out.")


def check_refit_keys(values: dict[str, Any]) -> None:
    """Fail when a refit key (``refit_budget``, ``refit_objective``, ``transductive = true``) is set and the
    refit rung is not in ``rungs``: it would configure nothing.

    Example:
        >>> check_refit_keys({"rungs": ["tfidf"], "refit_budget": "300steps"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        adaptlab.errors.ConfigError: refit_budget configures the refit rung, which is not in rungs (tfidf); add it ...
    """
    rungs = values.get("rungs") or []
    rungs = [r.strip() for r in rungs.split(",")] if isinstance(rungs, str) else list(rungs)
    keys = [k for k in REFIT_KEYS if values.get(k) not in (None, False)]
    if keys and "refit" not in rungs:
        raise ConfigError(f"{', '.join(keys)} configure{'s' if len(keys) == 1 else ''} the refit rung, which is not in "
                          f"rungs ({','.join(rungs)}); add it (e.g. rungs = [\"tfidf\", \"probe\", \"refit\"]) or "
                          f"remove {', '.join(keys)}.")


def study_config(settings: "StudySettings | ResolvedSettings") -> Any:
    """The :class:`~adaptlab.config.StudyConfig` a study file (or resolved settings) describes.

    Keys that are not the study's (data columns, executor, home) are left to the caller.

    Example:
        >>> study_config(parse_study_file('rungs = ["tfidf"]\\nseeds = 2')).seeds
        2
    """
    from adaptlab.config import StudyConfig

    if isinstance(settings, StudySettings):
        settings = resolve_settings([settings])
    check_refit_keys(settings.values)
    check_long_text_key(settings.values)
    kw = {KEYS[k].field: v for k, v in settings.values.items() if k in KEYS and KEYS[k].field and v is not None}
    kw.update({k: v for k, v in settings.values.items() if k in _unmapped_study_fields()})
    adaptive = dict(settings.adaptive)
    fidelity = settings.values.get("screen_fidelity")
    if fidelity is not None and settings.values.get("time") is not None and fidelity != 0.25:
        adaptive["screen_fidelity"] = fidelity
    return StudyConfig(**kw, rung_params=settings.rung_params, adaptive=adaptive)


# ------------------------------------------------------------------------------------------ writing
# StudyConfig field -> study-file key, in the order a study file lists them.
_WRITE_ORDER = ["name", "rungs", "seeds", "split", "test_size", "val_size", "test_seed", "encoder", "positive_label",
                "budget", "time_budget", "encode_precision", "mixed_precision", "int8_tolerance", "near_dup_threshold", "n_boot"]
# A stored config's field -> the study-file key written for it, where the key was renamed since.
_RENAMED_ON_WRITE = {"int8_tolerance": "precision_tolerance"}


# Where the data came from (StudyResult.data["inputs"]), written first so the file reruns from its data alone.
_INPUT_ORDER = ["data", "test", "unlabeled", "text_col", "label_col", "group_col", "time_col", "id_col"]


def study_file_text(config: dict[str, Any], *, header: str = "", inputs: Optional[dict[str, str]] = None) -> str:
    """A study's configuration (``StudyConfig.to_dict()``, as stored with the study) as a study file.

    Every setting is written, defaults included, so the file reruns the study exactly (same study id,
    same result keys) even if a later version changes a default.

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> cfg = StudyConfig(rungs=["tfidf", "lora"], seeds=3, rung_params={"lora": {"r": 16}})
        >>> text = study_file_text(cfg.to_dict())
        >>> print(text)
        rungs = ["tfidf", "lora"]
        seeds = 3
        split = "auto"
        test_size = 0.2
        val_size = 0.2
        test_seed = 0
        precision = "auto"
        mixed_precision = "auto"
        precision_tolerance = 0.005
        near_dup_threshold = 0.8
        n_boot = 1000
        <BLANKLINE>
        [rung.lora]
        r = 16
        <BLANKLINE>
        >>> study_config(parse_study_file(text)).to_dict() == cfg.to_dict()
        True
    """
    by_field = {spec.field: key for key, spec in KEYS.items() if spec.field}
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []
    lines += [f"{key} = {format_value(inputs[key])}" for key in _INPUT_ORDER if (inputs or {}).get(key)]
    skipped: list[str] = []
    from adaptlab.rungs import trains_encoder

    if "mixed_precision" not in config and any(trains_encoder(r) for r in config.get("rungs") or []):
        # Stored before the study had a precision of its own: its training rungs ran in float32 then.
        config = {**config, "mixed_precision": "no"}
    order = _WRITE_ORDER + [k for k in config if k not in _WRITE_ORDER]
    for name in order:
        if name not in config or name in ("rung_params", "adaptive"):
            continue
        value = config[name]
        if value is None or (name == "name" and value == ""):
            continue  # TOML has no null: an absent key is the default (None / "")
        key = _RENAMED_ON_WRITE.get(name) or by_field.get(name, name)
        if isinstance(value, dict):
            skipped.append(name)
            continue
        lines.append(f"{_bare(key)} = {format_value(value)}")
    if config.get("adaptive"):
        lines += ["", "[adaptive]", *_table_lines(config["adaptive"])]
    for rung, params in (config.get("rung_params") or {}).items():
        lines += ["", f"[rung.{_bare(rung)}]", *_table_lines(params or {})]
    if skipped:
        lines += ["", f"# not written (tables this version cannot read back): {', '.join(skipped)}"]
    return "\n".join(lines) + "\n"


def study_file_yaml(config: dict[str, Any], *, header: str = "", inputs: Optional[dict[str, str]] = None) -> str:
    """The same study file as :func:`study_file_text`, written as YAML (``null`` where TOML has no value).

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> cfg = StudyConfig(rungs=["tfidf", "lora"], seeds=3, rung_params={"lora": {"r": 16, "backbone_lr": 5e-5}})
        >>> text = study_file_yaml(cfg.to_dict())
        >>> print(text.splitlines()[0], "|", text.splitlines()[-3:])
        rungs: [tfidf, lora] | ['  lora:', '    r: 16', '    backbone_lr: 5.0e-05']
        >>> study_config(parse_study_yaml(text)).to_dict() == cfg.to_dict()
        True
    """
    import yaml

    mapping = tomllib.loads(study_file_text(config, inputs=inputs))
    for rung, params in (config.get("rung_params") or {}).items():  # keep the nulls TOML cannot hold
        mapping.setdefault("rung", {}).setdefault(rung, {}).update({k: v for k, v in (params or {}).items() if v is None})
    class Dumper(yaml.SafeDumper):
        """Block mappings, lists on one line (rungs: [tfidf, lora])."""

    Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
    body = yaml.dump(mapping, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=120)
    # PyYAML writes 5e-05 as 5.0e-05 so that it reads back as a float; keep it.
    comments = "".join(f"# {h}\n" if h else "#\n" for h in header.splitlines()) if header else ""
    return comments + body


def _table_lines(table: dict[str, Any]) -> list[str]:
    out = []
    for k, v in table.items():
        if v is None:
            out.append(f"# {_bare(k)} = None  (TOML has no null; set in Python only)")
        else:
            out.append(f"{_bare(k)} = {format_value(v)}")
    return out


def _bare(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_\-]+", key) else json.dumps(key)


def format_value(value: Any) -> str:
    """A Python value as a TOML value (str, int, float, bool, lists and tables of them).

    Example:
        >>> format_value(5e-05), format_value([0.1, 1.0]), format_value("a\\"b"), format_value({"gpus": 1})
        ('5e-05', '[0.1, 1.0]', '"a\\\\"b"', '{gpus = 1}')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_bare(str(k))} = {format_value(v)}" for k, v in value.items() if v is not None) + "}"
    if value is None:
        raise AdaptlabError("None has no TOML form")
    return json.dumps(str(value))


def describe_config(config: dict[str, Any]) -> list[str]:
    """Short lines of a stored study configuration for ``study show``: the grid, then each rung's parameters.

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> describe_config(StudyConfig(rungs=["tfidf", "lora"], seeds=3, rung_params={"lora": {"r": 16}}).to_dict())
        ['rungs tfidf, lora · seeds 3 · split auto · test 0.2 · val 0.2 · test seed 0', 'lora: r = 16']
    """
    grid = [f"rungs {', '.join(config.get('rungs', []))}", f"seeds {config.get('seeds')}",
            f"split {config.get('split')}", f"test {config.get('test_size')}", f"val {config.get('val_size')}",
            f"test seed {config.get('test_seed')}"]
    for name, label in (("budget", "budget"), ("time_budget", "time"), ("encoder", "encoder"),
                        ("positive_label", "positive"), ("name", "name")):
        if config.get(name):
            grid.append(f"{label} {config[name]}")
    if config.get("encode_precision", "fp32") not in ("fp32", "auto"):  # the defaults, then and now
        grid.append(f"precision {config['encode_precision']}")
    out = [" · ".join(grid)]
    if config.get("adaptive"):
        out.append("adaptive: " + ", ".join(f"{k} = {format_value(v)}" for k, v in config["adaptive"].items()))
    for rung, params in (config.get("rung_params") or {}).items():
        if params:
            out.append(f"{rung}: " + ", ".join(f"{k} = {format_value(v) if v is not None else 'None'}"
                                               for k, v in params.items()))
    return out


def rung_parameters(rung: str) -> list[dict[str, Any]]:
    """Each parameter of ``rung``: name, default (and as TOML text), type in words, help (from the config
    dataclass metadata), whether it changes the rung's numbers (``identity``) and whether it is one of the
    rung's main parameters (its record in the rung catalogue, ``main_parameters``; a rung without: its
    first five).

    Example:
        >>> [p["name"] for p in rung_parameters("tfidf")][:2], rung_parameters("tfidf")[1]["default"]
        (['ngram_max', 'min_df'], 2)
        >>> [p["name"] for p in rung_parameters("lora") if p["main"]]
        ['head_lr', 'backbone_lr', 'head', 'max_length', 'r', 'alpha']
    """
    from adaptlab.rungs import RUNGS
    from adaptlab.rungs.ladder import facts as rung_facts

    cls = RUNGS[rung].config_class
    hints = _hints(cls)
    fields = dataclasses.fields(cls)
    main = rung_facts(rung).main_parameters or tuple(f.name for f in fields[:5])
    out = []
    for f in fields:
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out.append({"name": f.name, "default": default,
                    "default_text": format_value(default) if default is not None else "none",
                    "type": _type_words(hints.get(f.name, Any)), "help": f.metadata.get("help", ""),
                    "identity": f.metadata.get("identity", True) is not False, "main": f.name in main})
    return out
