"""Embedding age: which encoder produced each stored vector, and which ones must be re-embedded.

A :class:`~adaptlab.monitor.ReferenceSet` tags every row with the fingerprint of the encoder that
embedded it. After the encoder changes (a refit, an upgrade) or an item's text is edited, some rows
describe an old model or an old text. :func:`embedding_age` lists them; :func:`refresh` re-embeds
exactly those rows and leaves the others untouched.

A row needs re-embedding when

* **stale**: its fingerprint is not the current encoder's (vectors of two encoders live in different
  spaces; mixing them makes drift and neighbour results meaningless), or
* **changed**: the current text of its id (``texts_by_id``) hashes differently from the text it
  was embedded from.

Example:
    >>> import numpy as np
    >>> ref = ReferenceSet.from_embeddings(["a", "b"], ["one", "two"], np.eye(2), "enc-v1")
    >>> report = embedding_age(ref, "enc-v2", texts_by_id={"a": "one", "b": "two, edited"})
    >>> report.needs_reembedding, report.up_to_date
    (['a', 'b'], False)
    >>> fresh = refresh(ref, lambda t: np.ones((len(t), 2)), "enc-v2", {"a": "one", "b": "two, edited"})
    >>> embedding_age(fresh, "enc-v2").up_to_date
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from adaptlab.data.dataset import text_hash
from adaptlab.errors import ConfigError
from adaptlab.monitor._common import EmbedFn, call_embed, check_int
from adaptlab.monitor.reference import ReferenceSet

#: Ids listed per category in ``to_dict`` (counts are always complete).
MAX_LISTED_IDS = 100


def _check_texts_by_id(texts_by_id: Any) -> dict[str, str]:
    if not isinstance(texts_by_id, Mapping):
        raise ConfigError.invalid("texts_by_id", type(texts_by_id).__name__, "a mapping {id: current text}")
    out = {}
    for key, text in texts_by_id.items():
        if not isinstance(text, str):
            raise ConfigError(f"texts_by_id[{key!r}] is {type(text).__name__}, not a text; pass strings only.")
        out[str(key)] = text
    return out


@dataclass
class AgeReport:
    """Which encoder made each stored row, and which rows are out of date.

    Example:
        >>> import numpy as np
        >>> from adaptlab.monitor import AgeReport, ReferenceSet, embedding_age
        >>> ref = ReferenceSet.from_embeddings(["a", "b", "c"], ["one", "two", "three"], np.eye(3), "enc-v1")
        >>> report = embedding_age(ref, "enc-v1", texts_by_id={"a": "one", "b": "two, edited", "c": "three", "d": "four"})
        >>> isinstance(report, AgeReport), report.changed_ids, report.new_ids, report.stale_ids, report.up_to_date
        (True, ['b'], ['d'], [], False)
    """

    current_fingerprint: str
    n_rows: int
    versions: list[dict[str, Any]]
    stale_ids: list[str]
    changed_ids: list[str]
    missing_text_ids: list[str]
    new_ids: list[str]
    texts_checked: bool
    #: Ids in reference order, so ``needs_reembedding`` lists rows the way they are stored.
    _order: tuple[str, ...] = field(default=(), repr=False)

    @property
    def needs_reembedding(self) -> list[str]:
        """Stale or changed ids, in reference order."""
        flagged = set(self.stale_ids) | set(self.changed_ids)
        order = self._order or tuple(dict.fromkeys(self.stale_ids + self.changed_ids))
        return [i for i in order if i in flagged]

    @property
    def up_to_date(self) -> bool:
        """Whether no row is stale or changed."""
        return not self.stale_ids and not self.changed_ids

    @property
    def verdict(self) -> str:
        """The report in one plain sentence."""
        if self.up_to_date:
            text = f"all {self.n_rows} stored embeddings come from the current encoder"
            text += " and match the current texts." if self.texts_checked else " (texts not checked)."
        else:
            n = len(self.needs_reembedding)
            why = []
            if self.stale_ids:
                others = [v for v in self.versions if not v["current"]]
                why.append(f"{len(self.stale_ids)} were embedded by {len(others)} older encoder version(s)")
            if self.changed_ids:
                why.append(f"{len(self.changed_ids)} have a changed text")
            text = (f"{n} of {self.n_rows} stored embeddings need re-embedding ({'; '.join(why)}). "
                    "Until then, drift and neighbour results mix vectors from different encoders or texts; "
                    "run monitor.refresh to re-embed only those rows.")
        if self.missing_text_ids:
            text += f" {len(self.missing_text_ids)} stored item(s) have no current text (deleted?)."
        if self.new_ids:
            text += f" {len(self.new_ids)} current item(s) are not embedded yet."
        return text

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-safe data; each id list is cut at ``MAX_LISTED_IDS``."""
        def listed(ids: list[str]) -> dict[str, Any]:
            return {"n": len(ids), "ids": ids[:MAX_LISTED_IDS], "truncated": len(ids) > MAX_LISTED_IDS}

        return {
            "up_to_date": self.up_to_date,
            "verdict": self.verdict,
            "current_fingerprint": self.current_fingerprint,
            "n_rows": self.n_rows,
            "versions": self.versions,
            "texts_checked": self.texts_checked,
            "needs_reembedding": listed(self.needs_reembedding),
            "stale": listed(self.stale_ids),
            "changed_text": listed(self.changed_ids),
            "missing_text": listed(self.missing_text_ids),
            "not_embedded": listed(self.new_ids),
        }

    def __str__(self) -> str:
        lines = [self.verdict, "encoder versions of the stored rows:"]
        for v in self.versions:
            name = f" ({v['name']})" if v.get("name") else ""
            cur = "  <- current" if v["current"] else ""
            lines.append(f"  {v['fingerprint']}{name}: {v['n_rows']} rows ({100 * v['share']:.1f}%){cur}")
        return "\n".join(lines)



def embedding_age(
    reference: ReferenceSet,
    current_fingerprint: str,
    texts_by_id: Optional[Mapping[str, str]] = None,
) -> AgeReport:
    """Report which encoder version produced each row of ``reference`` and which rows are out of date.

    Args:
        reference: The stored reference set.
        current_fingerprint: Fingerprint of the encoder in use now (``Encoder.fingerprint``).
        texts_by_id: Optional current text of each item; enables the changed-text, deleted and
            not-yet-embedded checks.

    Example:
        >>> import numpy as np
        >>> from adaptlab.monitor import ReferenceSet, embedding_age
        >>> ref = ReferenceSet.from_embeddings(["a", "b"], ["one", "two"], np.eye(2), "enc-v1")
        >>> embedding_age(ref, "enc-v1").up_to_date
        True
        >>> embedding_age(ref, "enc-v2").needs_reembedding           # a new encoder: every row is stale
        ['a', 'b']
    """
    if not isinstance(reference, ReferenceSet):
        raise ConfigError.invalid("reference", type(reference).__name__, "a ReferenceSet")
    if not isinstance(current_fingerprint, str) or not current_fingerprint.strip():
        raise ConfigError.invalid("current_fingerprint", current_fingerprint, "the encoder's fingerprint string")
    n = len(reference)
    counts = reference.fingerprint_counts()
    versions = [{"fingerprint": fp, "name": reference.encoders.get(fp, {}).get("name"), "n_rows": c,
                 "share": round(c / n, 6), "current": fp == current_fingerprint} for fp, c in counts.items()]
    stale = [i for i, fp in zip(reference.ids, reference.fingerprints) if fp != current_fingerprint]
    changed: list[str] = []
    missing: list[str] = []
    new: list[str] = []
    if texts_by_id is not None:
        current = _check_texts_by_id(texts_by_id)
        for i, h in zip(reference.ids, reference.text_hashes):
            if i not in current:
                missing.append(i)
            elif text_hash(current[i]) != h:
                changed.append(i)
        known = set(reference.ids)
        new = [i for i in current if i not in known]
    report = AgeReport(current_fingerprint=current_fingerprint, n_rows=n, versions=versions, stale_ids=stale,
                       changed_ids=changed, missing_text_ids=missing, new_ids=new,
                       texts_checked=texts_by_id is not None, _order=tuple(reference.ids))
    return report


def refresh(
    reference: ReferenceSet,
    embed_fn: EmbedFn,
    fingerprint: str,
    texts_by_id: Mapping[str, str],
    *,
    batch_size: int = 256,
    add_new: bool = False,
    drop_missing: bool = False,
    only_ids: Optional[Sequence[str]] = None,
    encoder_name: Optional[str] = None,
) -> ReferenceSet:
    """A new reference set in which only the stale or changed rows are re-embedded with ``embed_fn``.

    Rows already embedded by ``fingerprint`` from their current text are copied as they are.
    ``add_new`` also embeds ids of ``texts_by_id`` that are not in the reference (appended, no
    label); ``drop_missing`` removes rows whose id has no current text. ``only_ids`` limits the
    re-embedding to those ids (a large set can be refreshed in chunks; the rest stay as they are and
    :func:`embedding_age` keeps reporting them). A stale row without a current text cannot be
    re-embedded: that is an error unless ``drop_missing`` is on. The input is not modified.

    Example:
        >>> import numpy as np
        >>> from adaptlab.monitor import ReferenceSet, embedding_age, refresh
        >>> ref = ReferenceSet.from_embeddings(["a", "b"], ["one", "two"], np.eye(2), "enc-v1")
        >>> calls = []
        >>> def embed_fn(texts):
        ...     calls.append(list(texts))
        ...     return np.ones((len(texts), 2))
        >>> fresh = refresh(ref, embed_fn, "enc-v1", {"a": "one", "b": "two, edited"})
        >>> calls, embedding_age(fresh, "enc-v1").up_to_date          # only the changed row was re-embedded
        ([['two, edited']], True)
    """
    report = embedding_age(reference, fingerprint, texts_by_id)
    current = _check_texts_by_id(texts_by_id)
    check_int("batch_size", batch_size, 1)
    missing = set(report.missing_text_ids)
    redo_ids = set(report.needs_reembedding)
    if only_ids is not None:
        if isinstance(only_ids, str):
            raise ConfigError.invalid("only_ids", only_ids, "a list of ids", "Wrap a single id in a list.")
        wanted = {str(i) for i in only_ids}
        unknown = sorted(wanted - set(reference.ids))
        if unknown:
            raise ConfigError.invalid("only_ids", unknown[:5], "ids of the reference set")
        redo_ids &= wanted
    stuck = [i for i in report.stale_ids if i in missing and (only_ids is None or i in redo_ids)]
    if stuck and not drop_missing:
        raise ConfigError(
            f"{len(stuck)} stale row(s) have no current text to re-embed (e.g. {stuck[:5]}); add their texts to "
            "texts_by_id, or pass drop_missing=True to remove them from the reference set."
        )
    keep = [p for p, i in enumerate(reference.ids) if not (drop_missing and i in missing)]
    redo = [p for p in keep if reference.ids[p] in redo_ids and reference.ids[p] not in missing]
    added = report.new_ids if add_new else []
    texts = [current[reference.ids[p]] for p in redo] + [current[i] for i in added]
    if not keep and not added:
        raise ConfigError("refresh would leave the reference set empty (every row dropped); keep some rows.")

    E = reference.embeddings[keep].copy()
    hashes = [reference.text_hashes[p] for p in keep]
    fps = [reference.fingerprints[p] for p in keep]
    labels = None if reference.labels is None else [reference.labels[p] for p in keep]
    ids = [reference.ids[p] for p in keep]
    if texts:
        V = call_embed(embed_fn, texts, batch_size=batch_size)
        all_redone = len(redo) == len(keep)
        if V.shape[1] != E.shape[1] and not all_redone:
            raise ConfigError(
                f"the new encoder makes {V.shape[1]}-dim vectors but {len(keep) - len(redo)} rows kept from the "
                f"reference are {E.shape[1]}-dim; vectors of one set must share a space. Re-embed every row "
                "(they all need it when the encoder changed) or use the encoder that made the kept rows."
            )
        if V.shape[1] != E.shape[1]:
            E = np.empty((len(keep), V.shape[1]), dtype=np.float32)
        where = {p: j for j, p in enumerate(keep)}
        for j, p in enumerate(redo):
            row = where[p]
            E[row] = V[j]
            hashes[row] = text_hash(texts[j])
            fps[row] = fingerprint
        if added:
            E = np.vstack([E, V[len(redo):]])
            ids += added
            hashes += [text_hash(current[i]) for i in added]
            fps += [fingerprint] * len(added)
            if labels is not None:
                labels += [None] * len(added)
    encoders = {fp: info for fp, info in reference.encoders.items() if fp in set(fps)}
    if encoder_name:
        encoders[fingerprint] = {"name": encoder_name}
    return ReferenceSet(ids, hashes, E, fps, labels, encoders)


__all__ = ["AgeReport", "MAX_LISTED_IDS", "embedding_age", "refresh"]
