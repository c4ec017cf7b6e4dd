"""What lies under a study home besides the run store, whether it is whole, and what can go.

``check_home`` verifies the embedding cache (every row against its checksum), the training checkpoints
(``checkpoints/<rung>/<key>``), the refits (``refits/<key>``: the finished encoder and any checkpoint) and lists
what was moved aside as damaged (``*.corrupt-*``) and what could be deleted. ``collect_garbage`` deletes the
checkpoints of finished or abandoned runs, damaged checkpoints, leftovers of interrupted writes and what was moved
aside; it never touches the run store, the embedding cache or a finished refit. It also lists the web app's
uploads (``ui/uploads/<id>``) and deletes those no stored study and no web job names any more. Nothing here
imports a stage: the formats are read with the helpers of :mod:`adaptlab.store.integrity`.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from adaptlab.store.integrity import json_checksum, scan_embedding_rows, verify_folder, verify_listed

PathLike = Union[str, Path]
# A checkpoint not written to for this many days belongs to an abandoned run (killed and never run again).
GC_DAYS = 7.0
# Studies prune abandoned checkpoints this old by themselves when they start.
AUTO_PRUNE_DAYS = 30.0
# Files that mark a shipped model folder (as adaptlab.ui.retention keeps them): an upload holding one is kept.
_MODEL_MARKERS = ("registry.json", "adaptlab.json")
# The checkpoint kept before the newest one (adaptlab.rungs.training.PREVIOUS_CHECKPOINT; store imports no stage).
_PREVIOUS_CHECKPOINT = "checkpoint.prev.json"
_LEFTOVERS = ("checkpoint.tmp", "checkpoint.old", "encoder.tmp", "manifest.json.tmp", "checkpoint.json.tmp")


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 when it vanished meanwhile).

    Example:
        >>> size_of(Path("/no/such/file"))
        0
    """
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


def _age_days(path: Path) -> float:
    try:
        return max(0.0, (time.time() - path.stat().st_mtime) / 86400.0)
    except OSError:
        return 0.0


def check_cache(path: Path) -> dict[str, Any]:
    """Every row of the embedding cache at ``path`` against its checksum, read-only.

    Returns ``{"path", "rows", "damaged", "unverified", "bytes", "problem"}`` (``problem``: None, or why the file
    cannot be read at all). Damaged and unverified rows are recomputed by the next study that asks for them.

    Example:
        >>> check_cache(Path("/no/such/embeddings.sqlite"))["rows"]
        0
    """
    out: dict[str, Any] = {"path": str(path), "rows": 0, "damaged": 0, "unverified": 0,
                           "bytes": size_of(path), "problem": None}
    if not path.is_file():
        return out
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            columns = {r[1] for r in con.execute("PRAGMA table_info(embeddings)")}
            out.update(scan_embedding_rows(con, has_checksums="checksum" in columns))
        finally:
            con.close()
    except sqlite3.Error as exc:
        out["problem"] = f"the file cannot be read ({exc}); the next study moves it aside and recomputes it"
    return out


def check_training_checkpoint(folder: Path, name: str = "checkpoint.json") -> Optional[str]:
    """What is wrong with a training checkpoint folder (``checkpoint.json`` + the files it names), or None.

    ``name="checkpoint.prev.json"`` checks the previous checkpoint kept beside the newest (the one a resume goes
    on from when the newest is damaged; ``adaptlab.rungs.training.PREVIOUS_CHECKPOINT``).

    Example:
        >>> check_training_checkpoint(Path("/no/such/folder"))
        '/no/such/folder/checkpoint.json is missing (an interrupted first write)'
    """
    meta_file = folder / name
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{meta_file} is missing (an interrupted first write)"
    except (OSError, ValueError) as exc:
        return f"{meta_file} is unreadable ({exc})"
    if not isinstance(meta, dict):
        return f"{meta_file} is not a JSON object"
    if "files" not in meta:
        return None  # an older adaptlab's checkpoint (no checksums): resumed only if its files parse
    if meta.get("checksum") != json_checksum(meta):
        return f"{meta_file}: its checksum does not match its contents"
    problems = verify_listed(folder, meta["files"])
    return problems[0] if problems else None


def _training_checkpoints(home: Path) -> Iterator[Path]:
    root = home / "checkpoints"
    if root.is_dir():
        for rung in sorted(p for p in root.iterdir() if p.is_dir()):
            yield from sorted(p for p in rung.iterdir() if p.is_dir() and ".corrupt-" not in p.name)


def _quarantined(home: Path) -> list[Path]:
    roots = [home / "cache", home / "refits", *(p for p in (home / "checkpoints").glob("*") if p.is_dir()),
             *(p for p in (home / "refits").glob("*") if p.is_dir() and ".corrupt-" not in p.name)]
    return sorted(p for r in roots if r.is_dir() for p in r.iterdir()
                  if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm", "-journal")))


def _lock_alive(folder: Path) -> bool:
    lock = folder / "training.lock"
    try:
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _item(kind: str, path: Path, status: str, detail: str, removable: bool) -> dict[str, Any]:
    return {"kind": kind, "path": str(path), "status": status, "detail": detail, "bytes": size_of(path),
            "age_days": round(_age_days(path), 1), "removable": removable}


def _refit_items(home: Path, days: float, verify: bool) -> list[dict[str, Any]]:
    items = []
    root = home / "refits"
    folders = sorted(p for p in root.iterdir() if p.is_dir() and ".corrupt-" not in p.name) if root.is_dir() else []
    for folder in folders:
        finished = (folder / "manifest.json").is_file()
        if finished and verify:
            problems = verify_folder(folder)
            items.append(_item("refit", folder, "damaged" if problems else "ok",
                               problems[0] if problems else "finished refit, checksums match", False))
        ckpt = folder / "checkpoint"
        if not ckpt.is_dir():
            continue
        problems = ((verify_folder(ckpt) if verify else []) if (ckpt / "state.json").is_file()
                    else ["no state.json (incomplete)"])
        busy = _lock_alive(folder)
        if finished:
            status, detail = "finished", "checkpoint of a finished refit (kept with keep_checkpoint)"
        elif busy:  # its checkpoints are swapped in whole while it trains; never a candidate for deletion
            status, detail = "running", "a live process is training this refit"
        elif problems:
            status, detail = "damaged", problems[0]
        else:
            age = _age_days(ckpt)
            status = "abandoned" if age >= days else "resumable"
            detail = f"unfinished refit, last checkpoint {age:.1f} days ago"
        items.append(_item("refit checkpoint", ckpt, status, detail, status in ("finished", "damaged", "abandoned")))
    return items


def stored_study_inputs(home: PathLike) -> dict[Path, str]:
    """The files the stored studies of ``home`` ran on (their summary's ``data.inputs``), each with the study
    that names it. The run store is opened read-only; a home without one names no file.

    Example:
        >>> import tempfile
        >>> stored_study_inputs(tempfile.mkdtemp())
        {}
    """
    path = Path(home) / "runs.sqlite"
    if not path.is_file():
        return {}
    named: dict[Path, str] = {}
    try:  # read-only: gc never writes the run store
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT study_id, summary FROM studies WHERE summary IS NOT NULL").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        rows = []
    for study_id, text in rows:
        try:
            inputs = (json.loads(text).get("data") or {}).get("inputs") or {}
        except (ValueError, AttributeError):
            continue
        for key in ("data", "test", "unlabeled"):
            if isinstance(inputs.get(key), str):
                named[Path(inputs[key])] = f"the data of stored study {study_id[:12]}"
    return named


def stored_study_using(folder: PathLike, studies: dict[Path, str]) -> Optional[str]:
    """Which stored study (of :func:`stored_study_inputs`) ran on a file inside ``folder``, or None.

    The one rule both ``store gc`` and the web app's retention keep an upload by: a stored study can be
    resumed, extended or shipped only while its data file is there.

    Example:
        >>> stored_study_using("/up/1", {Path("/up/1/labeled.csv"): "the data of stored study abc"})
        'the data of stored study abc'
        >>> stored_study_using("/up/2", {Path("/up/1/labeled.csv"): "the data of stored study abc"}) is None
        True
    """
    real = Path(folder).resolve()
    return next((who for f, who in studies.items() if real in f.resolve().parents), None)


def _upload_items(home: Path, days: float) -> list[dict[str, Any]]:
    """The web app's upload folders: in use (a stored study or a web job names it, or it holds a shipped
    model), recent (newer than ``days``) or unused (removable)."""
    root = home / "ui" / "uploads"
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        return []
    studies = stored_study_inputs(home)
    # A web job names its upload by id (and by path) in its spec: queued, running, resumable or shippable.
    jobs = {p.stem: p.read_text(encoding="utf-8", errors="replace")
            for p in sorted((home / "ui" / "jobs").glob("*.json"))}
    items = []
    for folder in folders:
        user = stored_study_using(folder, studies)
        user = user or next((f"read by web job {jid}" for jid, text in jobs.items() if folder.name in text), None)
        if user is None and any(next(folder.rglob(m), None) is not None for m in _MODEL_MARKERS):
            user = "holds a shipped model"
        age = min([_age_days(folder), *(_age_days(p) for p in folder.rglob("*"))])  # its newest file
        if user is not None:
            status, detail = "in use", f"web upload: {user}"
        elif age < days:
            status, detail = "recent", f"web upload no stored study names yet, {age:.1f} days old"
        else:
            status, detail = "unused", f"web upload no stored study or web job names, {age:.1f} days old"
        items.append(_item("upload", folder, status, detail, status == "unused"))
    return items


def check_home(home: PathLike, days: float = GC_DAYS, *, verify: bool = True, uploads: bool = True) -> dict[str, Any]:
    """Verify everything under ``home`` a study trusts besides the run store (read-only).

    Returns ``{"home", "cache", "items", "damaged", "removable_bytes"}``: ``items`` has one entry per training
    checkpoint, refit, refit checkpoint, moved-aside file, leftover and web upload, each with ``status`` (ok,
    resumable, running, finished, abandoned, damaged, moved-aside, leftover; an upload: in use, recent, unused),
    ``detail``, ``bytes``, ``age_days`` and ``removable`` (what :func:`collect_garbage` with the same ``days``
    deletes). ``verify=False`` skips the checksums (the cache, refits and checkpoints are then only listed, by
    age): what a study does when it starts. ``uploads=False`` leaves the web app's uploads out.

    Example:
        >>> import tempfile
        >>> check_home(tempfile.mkdtemp())["damaged"]
        0
    """
    home = Path(home)
    cache = check_cache(home / "cache" / "embeddings.sqlite") if verify else None
    items = []
    for folder in _training_checkpoints(home):
        problem = check_training_checkpoint(folder) if verify else None
        age = _age_days(folder / "checkpoint.json") if (folder / "checkpoint.json").exists() else _age_days(folder)
        if problem is not None and check_training_checkpoint(folder, _PREVIOUS_CHECKPOINT) is None:
            status = "abandoned" if age >= days else "resumable"
            detail = f"the newest checkpoint is damaged ({problem}); a resume goes on from the previous one"
        elif problem is not None:
            status, detail = "damaged", problem
        elif (folder / "finished").exists():
            status, detail = "finished", "checkpoint of a finished run (kept with keep_checkpoints)"
        else:
            status = "abandoned" if age >= days else "resumable"
            detail = f"training checkpoint of an unfinished run, written {age:.1f} days ago"
        items.append(_item("training checkpoint", folder, status, detail,
                           status in ("damaged", "abandoned", "finished")))
    items += _refit_items(home, days, verify)
    items += [_item("moved aside", p, "moved-aside", "damaged, kept for inspection", True) for p in _quarantined(home)]
    # A refit being trained right now (live lock) is writing its leftovers-to-be: never listed.
    leftovers = [p for r in [home / "refits", *(home / "refits").glob("*")] if r.is_dir() and not _lock_alive(r)
                 for p in r.iterdir() if p.name in _LEFTOVERS]
    items += [_item("leftover", p, "leftover", "left by an interrupted write", True) for p in sorted(leftovers)]
    if uploads:
        items += _upload_items(home, days)
    damaged = sum(i["status"] == "damaged" for i in items) + bool(cache and (cache["damaged"] or cache["problem"]))
    return {"home": str(home), "cache": cache, "items": items, "damaged": damaged,
            "removable_bytes": sum(i["bytes"] for i in items if i["removable"])}


def collect_garbage(home: PathLike, days: float = GC_DAYS, *, dry_run: bool = False,
                    kinds: Optional[set[str]] = None) -> dict[str, Any]:
    """Delete what :func:`check_home` marks removable: checkpoints of finished refits, checkpoints not written to
    for ``days`` days (abandoned runs), damaged checkpoints, leftovers, what was moved aside as damaged, and the
    web app's uploads (``ui/uploads/<id>``) that no stored study and no web job names and that are ``days`` old.

    ``kinds`` limits it to some statuses (e.g. ``{"abandoned"}``: uploads are then left alone unless ``"unused"``
    is among them). The run store, the embedding cache, finished refits, checkpoints of runs still in progress
    and the uploads a stored study ran on are never deleted. Returns ``{"removed": [items],
    "freed_bytes", "dry_run"}``.

    Example:
        >>> import tempfile
        >>> collect_garbage(tempfile.mkdtemp())["freed_bytes"]
        0
    """
    # Only what the statuses asked for need the checksums (a study prunes abandoned checkpoints by age alone).
    report = check_home(home, days, verify=kinds is None or bool(kinds & {"damaged"}),
                        uploads=kinds is None or "unused" in kinds)
    removed = []
    for item in report["items"]:
        if not item["removable"] or (kinds is not None and item["status"] not in kinds):
            continue
        path = Path(item["path"])
        if not dry_run:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                for side in ("", "-wal", "-shm", "-journal"):
                    Path(str(path) + side).unlink(missing_ok=True)
        removed.append(item)
    return {"removed": removed, "freed_bytes": sum(i["bytes"] for i in removed), "dry_run": dry_run}


__all__ = ["AUTO_PRUNE_DAYS", "GC_DAYS", "check_cache", "check_home", "check_training_checkpoint",
           "collect_garbage", "size_of", "stored_study_inputs", "stored_study_using"]
