"""Suggestions from a stored study's decided rung, before anything is shipped.

The study's chosen rung (:func:`adaptlab.ship.from_study.study_choice`, the same one `adaptlab ship
--study` uses) is trained on the study's own data file, with the study's split settings, into a model
folder under the home (``<home>/acquire/<study id>-<rung>``, reused on the next call). Its sealed
evaluation set is drawn as the study draws its test set (same split strategy, ``test_size`` and
``test_seed``), so the study's sealed test texts are never suggested, nor their near-duplicates; nor
are the labeled texts the rung was trained on. A study that had a separate test file gets that file's
texts excluded too.

Example:
    >>> s = suggest_for_study("latest", load_dataset("inbox.csv", require_labels=False), 50)  # doctest: +SKIP
    >>> s.notes[-1]                                                                            # doctest: +SKIP
    "model: study 3f2a9c0b1d4e's decided rung probe, trained on news.csv (...)"
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from adaptlab.acquire.shipped import suggest_for_model
from adaptlab.acquire.suggest import Suggestions
from adaptlab.data import TextDataset
from adaptlab.errors import ConfigError

_COLUMN_ARGS = ("text_col", "label_col", "id_col", "group_col", "time_col")


def _study_data(rec: dict[str, Any], data: Optional[Union[str, Path]]) -> tuple[TextDataset, Optional[TextDataset]]:
    """The study's labeled file (and test file, if it had one), loaded with the columns it used."""
    from adaptlab.data import load_dataset

    inputs = ((rec.get("summary") or {}).get("data") or {}).get("inputs") or {}
    path = Path(data) if data is not None else (Path(inputs["data"]) if inputs.get("data") else None)
    if path is None or not path.is_file():
        where = f" (it ran on {str(path)!r}, which is gone)" if path is not None else ""
        raise ConfigError(f"the data file of study {rec['study_id'][:12]} is not available{where}; pass --data FILE, "
                          "the labeled file the study ran on.")
    cols = {k: inputs[k] for k in _COLUMN_ARGS if inputs.get(k)}
    ds = load_dataset(path, **cols)
    test = load_dataset(inputs["test"], **cols) if inputs.get("test") and Path(inputs["test"]).is_file() else None
    return ds, test


def study_model(study: str, *, home: Optional[Union[str, Path]] = None, data: Optional[Union[str, Path]] = None,
                progress: Optional[Callable[[str], None]] = None) -> tuple[Any, list[str], str]:
    """The model folder of a study's decided rung (trained on first use) and the test-file texts to keep out.

    Returns ``(registry, also_sealed, description)``.
    """
    from adaptlab.config import StudyConfig, default_home
    from adaptlab.ship import ModelRegistry, ship_model
    from adaptlab.ship.from_study import study_choice
    from adaptlab.store import RunStore

    say = progress or (lambda _m: None)
    h = Path(home).expanduser() if home is not None else default_home()
    rung, extra = study_choice(study, h, fix="until it does, ship a rung yourself (`adaptlab ship DATA --rung probe "
                                            "-o FOLDER`) and pass --model FOLDER.")
    rec = RunStore(h / "runs.sqlite").get_study(extra.get("study_id") or study)
    cfg = StudyConfig(**rec["config"])
    ds, test = _study_data(rec, data)
    folder = h / "acquire" / f"{rec['study_id'][:12]}-{rung}"
    if folder.exists() and any(folder.iterdir()):
        reg = ModelRegistry(folder)  # trained by an earlier call: the same study, rung and split
    else:
        say(f"training study {rec['study_id'][:12]}'s decided rung {rung} on {len(ds)} labeled texts ...")
        precision = extra.pop("encode_precision", None) or "fp32"
        reg = ship_model(ds, folder, rung=rung, encoder=cfg.encoder, split=cfg.split, test_size=cfg.test_size,
                         test_seed=cfg.test_seed, home=h, extra=extra, progress=say, precision=precision)
    what = (f"study {rec['study_id'][:12]}'s decided rung {rung}, trained on {Path(ds.source).name or 'its data'} "
            f"(model folder {folder})")
    return reg, list(test.texts) if test is not None else [], what


def suggest_for_study(study: str, pool: TextDataset, n: int, *, home: Optional[Union[str, Path]] = None,
                      data: Optional[Union[str, Path]] = None, strategy: str = "default",
                      also_labeled: Sequence[str] = (), seed: int = 0, uncertainty: str = "margin",
                      progress: Optional[Callable[[str], None]] = None) -> Suggestions:
    """Suggest ``n`` texts of ``pool`` to label for a stored study's decided rung (see the module docstring).

    Example:
        >>> s = suggest_for_study("latest", pool, 20, home="adaptlab-runs")   # doctest: +SKIP
        >>> s.counts                                                           # doctest: +SKIP
        {'uncertainty': 20}
    """
    reg, also_sealed, what = study_model(study, home=home, data=data, progress=progress)
    out = suggest_for_model(reg, pool, n, strategy=strategy, also_labeled=also_labeled, seed=seed,
                            uncertainty=uncertainty, progress=progress, also_sealed=also_sealed)
    out.notes.append(f"model: {what}; its sealed evaluation set is the study's test set"
                     + (f", and the study's {len(also_sealed)} test-file texts are kept out too." if also_sealed
                        else "."))
    return out


__all__ = ["study_model", "suggest_for_study"]
