"""Monitoring a shipped model folder: its embedding function and its stored reference set.

A model folder made by ``adaptlab ship`` keeps its training texts, so the reference set (the training
items' embeddings, each row tagged with the encoder fingerprint that produced it) is built on first
use and kept in ``MODEL/reference/``. Each later call checks its age against the model in use: rows
embedded by another encoder version, rows whose text changed and labels added by a retrain are
re-embedded (only those); rows no longer in the training data are dropped.

TF-IDF models have no embedding; they are monitored in the packaged encoder's embedding space, which
is what "are the new texts like the training texts" needs anyway.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from adaptlab.monitor.age import AgeReport, embedding_age, refresh
from adaptlab.monitor.reference import ReferenceSet
from adaptlab.store.files import write_folder_atomically

REFERENCE_DIR = "reference"


@dataclass
class ModelSpace:
    """How a shipped model embeds texts: the function, the fingerprint of its weights, a display name."""

    embed: Callable[[list[str]], np.ndarray]
    fingerprint: str
    name: str
    note: str = ""


def model_space(pipe: Any, *, device: str = "cpu") -> ModelSpace:
    """The embedding space of a fitted/loaded :class:`~adaptlab.ship.Pipeline`."""
    if pipe.rung == "tfidf":
        from adaptlab.encoders import Encoder

        enc = Encoder.from_pretrained(None, device=device)
        return ModelSpace(enc.encode, enc.fingerprint, enc.name,
                          note=f"TF-IDF model: texts compared in the {enc.name} embedding space")
    fp = pipe.embedding_fingerprint_
    enc = getattr(pipe.fitted_, "encoder", None)
    name = getattr(enc, "name", None) or f"{pipe.rung} encoder"
    return ModelSpace(lambda texts: np.asarray(pipe.embed(list(texts)), dtype=np.float32), str(fp), name)


def reference_for(registry: Any, pipe: Any, space: Optional[ModelSpace] = None, *, update: bool = True
                  ) -> tuple[ReferenceSet, Optional[AgeReport]]:
    """The registry's reference set, brought up to date with the model in use (see the module docstring).

    Returns the set and the age report *before* the update (None when the set was built just now).
    """
    space = space or model_space(pipe)
    train = registry.training_data()
    texts_by_id = dict(zip(train.ids, train.texts))
    folder = Path(registry.root) / REFERENCE_DIR
    if (folder / "reference.json").is_file():
        ref = ReferenceSet.load(folder)
        age = embedding_age(ref, space.fingerprint, texts_by_id)
        if update and not (age.up_to_date and not age.new_ids and not age.missing_text_ids):
            ref = refresh(ref, space.embed, space.fingerprint, texts_by_id, add_new=True, drop_missing=True,
                          encoder_name=space.name)
            labels = dict(zip(train.ids, train.labels or [None] * len(train)))
            ref = ReferenceSet(ref.ids, ref.text_hashes, ref.embeddings, ref.fingerprints,
                               labels=[labels.get(i) for i in ref.ids], encoders=ref.encoders)
            _save(ref, folder)
        return ref, age
    ref = ReferenceSet.build(train.ids, train.texts, space.embed, space.fingerprint, train.labels,
                             encoder_name=space.name)
    _save(ref, folder)
    return ref, None


def _save(ref: ReferenceSet, folder: Path) -> None:
    write_folder_atomically(folder, ref.save)
