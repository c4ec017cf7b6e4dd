"""The run store: every study and every (rung, seed) result in one SQLite file.

Results are content-addressed: the key hashes everything that determines the number (data hash, split
fingerprint, encoder fingerprint, rung config, seed), so re-running an identical study reads the stored
results instead of training again. Each result carries a JSON manifest (code version, hashes, config,
seed, metrics) so a number in a report can be traced back and reproduced, and a SHA-256 of what was stored:
a result whose bytes changed on disk is never read back (it is trained again, with a warning).
"""
from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from adaptlab.errors import AdaptlabError

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_id   TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    config     TEXT NOT NULL,
    data_hash  TEXT NOT NULL,
    summary    TEXT,
    summary_checksum TEXT
);
CREATE TABLE IF NOT EXISTS results (
    result_key TEXT PRIMARY KEY,
    rung       TEXT NOT NULL,
    seed       INTEGER NOT NULL,
    metrics    TEXT NOT NULL,
    predictions TEXT NOT NULL,
    manifest   TEXT NOT NULL,
    created_at REAL NOT NULL,
    checksum   TEXT
);
CREATE TABLE IF NOT EXISTS study_results (
    study_id   TEXT NOT NULL,
    result_key TEXT NOT NULL,
    PRIMARY KEY (study_id, result_key)
);
CREATE TABLE IF NOT EXISTS leases (
    result_key   TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    acquired_at  REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    expires_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS learned_costs (
    machine    TEXT NOT NULL,
    key        TEXT NOT NULL,
    log_ratio  REAL NOT NULL,
    n          INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (machine, key)
);
"""
# Runs a learned cost correction remembers: older runs fade out, so a faster library or a new machine
# setting shows within a few studies.
LEARNED_COST_MEMORY = 10
# The checksum of a result stored before results had checksums starts with this once it has been read: it is
# marked unverified for good (a study lists it; ``store check`` counts it) and checked against that seal.
UNVERIFIED = "unverified:"


def json_safe(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays as Python values, NaN/inf as None, paths and anything else
    JSON cannot hold as strings: what manifests and stored diagnostics may contain.

    Example:
        >>> import numpy as np
        >>> json_safe({"f1": np.float32(0.5), "n": np.int64(3), "bad": float("nan"), "v": np.arange(2)})
        {'f1': 0.5, 'n': 3, 'bad': None, 'v': [0, 1]}
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, str) or obj is None:
        return obj
    return str(obj)


def content_key(*parts: Any) -> str:
    """Stable hash of JSON-serialisable parts (dict keys sorted)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class StoreError(AdaptlabError):
    """The run store cannot be opened or does not hold what was asked for."""


class RunStore:
    """SQLite-backed store of studies and results.

    Example:
        >>> import tempfile, os
        >>> store = RunStore(os.path.join(tempfile.mkdtemp(), "runs.sqlite"))
        >>> store.put_result("k1", rung="probe", seed=0, metrics={"f1": 0.9}, predictions={}, manifest={})
        >>> store.get_result("k1")["metrics"]["f1"]
        0.9
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._create()
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StoreError(
                f"cannot open the run store at {self.path}: {exc}. "
                "Pass another location with --home DIR (or ADAPTLAB_HOME)."
            ) from exc

    def _create(self, attempts: int = 6) -> None:
        """The schema, and the columns older stores lack. Two studies opening one new store at once (threads of
        one process, or two processes) can meet SQLite's "database is locked" while one of them switches the
        file to WAL or adds a column; the busy timeout does not cover those, so the opener retries."""
        for attempt in range(attempts):
            try:
                with self._connect() as con:
                    con.executescript(SCHEMA)
                    _add_column(con, "results", "checksum", "TEXT")
                    _add_column(con, "studies", "summary_checksum", "TEXT")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.1 * 2 ** attempt)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            yield con
            con.commit()
        except sqlite3.DatabaseError as exc:
            # Not committed: SQLite rolls the transaction back on close, so the file is as before this write.
            failure = store_failure(self.path, exc)
            if failure is None:
                raise
            raise failure from exc
        finally:
            con.close()

    def backup(self, dest: str | Path) -> dict:
        """Copy the store to ``dest`` (a file, or a folder -- existing or a name without suffix -- for
        ``runs-<time>.sqlite``) with SQLite's online
        backup API: consistent even while studies write to it. Returns what was copied (and its check).

        Example:
            >>> import tempfile, os
            >>> d = tempfile.mkdtemp(); store = RunStore(os.path.join(d, "runs.sqlite"))
            >>> info = store.backup(os.path.join(d, "copy.sqlite"))
            >>> info["ok"], info["studies"]
            (True, 0)
        """
        return backup_store(self.path, dest)

    def check(self) -> dict:
        """``PRAGMA integrity_check`` of the store file plus its row counts (see :func:`check_store`)."""
        return check_store(self.path)

    # results ------------------------------------------------------------------------------------
    def get_result(self, key: str) -> Optional[dict]:
        """The stored result ``key``, or None when absent or damaged (its checksum does not match: then a
        :class:`~adaptlab.store.files.MovedAsideWarning` names the store and the result, and the caller trains
        it again, which replaces it).

        ``verified`` says whether the result matched a checksum written with it. A result stored before results
        had checksums cannot be verified: its first read seals it as unverified (:func:`seal_unverified`), so it
        stays marked ``verified: False`` (a study lists it, ``store check`` counts it) and bytes that change
        after that read are caught like any other damage. ``study run --recompute RUNG`` replaces it.

        Example:
            >>> import tempfile, os
            >>> store = RunStore(os.path.join(tempfile.mkdtemp(), "runs.sqlite"))
            >>> store.put_result("k1", rung="probe", seed=0, metrics={}, predictions={}, manifest={})
            >>> store.get_result("k1")["verified"]
            True
        """
        with self._connect() as con:
            row = con.execute(
                "SELECT rung, seed, metrics, predictions, manifest, created_at, checksum FROM results "
                "WHERE result_key=?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        problem = result_problem(key, row)
        if problem is not None:
            import warnings

            from adaptlab.store.files import MovedAsideWarning

            warnings.warn(MovedAsideWarning(
                f"{self.path}: the stored result {key[:12]} ({row[0]} seed {row[1]}) is damaged ({problem}); it is "
                "not used and is trained again (the new result replaces it)."), stacklevel=2)
            return None
        if row[6] is None:
            self._seal_unverified(key, row)
        return {
            "result_key": key,
            "rung": row[0],
            "seed": row[1],
            "metrics": json.loads(row[2]),
            "predictions": json.loads(row[3]),
            "manifest": json.loads(row[4]),
            "created_at": row[5],
            "verified": not is_unverified(row[6]),
        }

    def _seal_unverified(self, key: str, row: tuple) -> None:
        """Mark a result from before checksums as unverified, with the checksum of what it holds now."""
        try:
            with self._connect() as con:
                con.execute("UPDATE results SET checksum=? WHERE result_key=? AND checksum IS NULL",
                            (seal_unverified(key, *row[:5]), key))
        except StoreError:  # a read-only or full store: the row stays NULL, which reads as unverified too
            pass

    def put_result(
        self, key: str, *, rung: str, seed: int, metrics: dict, predictions: dict, manifest: dict
    ) -> None:
        texts = (json.dumps(metrics), json.dumps(predictions), json.dumps(manifest))
        with self._connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO results (result_key, rung, seed, metrics, predictions, manifest, created_at, "
                "checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, rung, seed, *texts, time.time(), result_checksum(key, rung, seed, *texts)),
            )

    def count_results(self, rungs: Optional[list[str]] = None) -> int:
        """How many results (of ``rungs``, default every rung) the store holds.

        Example:
            >>> import tempfile, os
            >>> store = RunStore(os.path.join(tempfile.mkdtemp(), "runs.sqlite"))
            >>> store.put_result("k1", rung="probe", seed=0, metrics={}, predictions={}, manifest={})
            >>> store.count_results(["probe"]), store.count_results(["tfidf"])
            (1, 0)
        """
        with self._connect() as con:
            if rungs is None:
                return int(con.execute("SELECT COUNT(*) FROM results").fetchone()[0])
            marks = ",".join("?" * len(rungs))
            return int(con.execute(f"SELECT COUNT(*) FROM results WHERE rung IN ({marks})", rungs).fetchone()[0])

    # leases -------------------------------------------------------------------------------------
    # A lease says "this process is training this cell": studies on the same home that find a live lease wait
    # for the result instead of training the cell again. The owner renews it (heartbeat) while it trains; a lease
    # whose owner stopped renewing (killed) expires and is taken over.
    def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Take the lease on ``key`` for ``ttl`` seconds if it is free, expired or already ``owner``'s.

        One SQL statement (an upsert whose update is conditional), so two processes can never both get it.

        Example:
            >>> import tempfile, os
            >>> store = RunStore(os.path.join(tempfile.mkdtemp(), "runs.sqlite"))
            >>> store.acquire_lease("k", "a", ttl=60), store.acquire_lease("k", "b", ttl=60)
            (True, False)
            >>> store.release_lease("k", "a"); store.acquire_lease("k", "b", ttl=60)
            True
        """
        now = time.time()
        with self._connect() as con:
            cur = con.execute(
                "INSERT INTO leases (result_key, owner, acquired_at, heartbeat_at, expires_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(result_key) DO UPDATE SET owner=excluded.owner, acquired_at=excluded.acquired_at, "
                "heartbeat_at=excluded.heartbeat_at, expires_at=excluded.expires_at "
                "WHERE leases.expires_at < ? OR leases.owner = excluded.owner",
                (key, owner, now, now, now + ttl, now),
            )
            return cur.rowcount == 1

    def renew_leases(self, owner: str, ttl: float) -> int:
        """Push the expiry of every lease ``owner`` holds ``ttl`` seconds ahead (the heartbeat); returns how many."""
        now = time.time()
        with self._connect() as con:
            cur = con.execute("UPDATE leases SET heartbeat_at=?, expires_at=? WHERE owner=?", (now, now + ttl, owner))
            return int(cur.rowcount)

    def release_lease(self, key: str, owner: str) -> None:
        """Give the lease on ``key`` back (only if ``owner`` still holds it)."""
        with self._connect() as con:
            con.execute("DELETE FROM leases WHERE result_key=? AND owner=?", (key, owner))

    def lease(self, key: str) -> Optional[dict]:
        """The lease on ``key`` (``owner``, ``acquired_at``, ``heartbeat_at``, ``expires_at``, ``live``) or None."""
        with self._connect() as con:
            row = con.execute("SELECT owner, acquired_at, heartbeat_at, expires_at FROM leases WHERE result_key=?",
                              (key,)).fetchone()
        if row is None:
            return None
        return {"owner": row[0], "acquired_at": row[1], "heartbeat_at": row[2], "expires_at": row[3],
                "live": row[3] >= time.time()}

    # studies ------------------------------------------------------------------------------------
    def put_study(self, study_id: str, *, name: str, config: dict, data_hash: str) -> None:
        now = time.time()
        with self._connect() as con:
            con.execute(
                "INSERT INTO studies (study_id, name, created_at, updated_at, config, data_hash) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(study_id) DO UPDATE SET updated_at=excluded.updated_at, name=excluded.name",
                (study_id, name, now, now, json.dumps(config), data_hash),
            )

    def link_result(self, study_id: str, key: str) -> None:
        with self._connect() as con:
            con.execute("INSERT OR IGNORE INTO study_results VALUES (?, ?)", (study_id, key))

    def set_summary(self, study_id: str, summary: dict) -> None:
        text = json.dumps(summary)
        with self._connect() as con:
            con.execute(
                "UPDATE studies SET summary=?, summary_checksum=?, updated_at=? WHERE study_id=?",
                (text, hashlib.sha256(text.encode("utf-8")).hexdigest(), time.time(), study_id),
            )

    def learn_cost(self, machine: str, key: str, ratio: float) -> dict:
        """Fold one measured ÷ estimated cost ``ratio`` of a trained run into the correction learned for
        (``machine``, ``key``: encoder, precision, device); returns the correction now.

        Example:
            >>> store.learn_cost("cpu-x", "minilm|no|cpu", 0.5)["ratio"]
            0.5
        """
        if not (ratio > 0 and math.isfinite(ratio)):
            return self.learned_cost(machine, key) or {}
        with self._connect() as con:
            row = con.execute("SELECT log_ratio, n FROM learned_costs WHERE machine=? AND key=?",
                              (machine, key)).fetchone()
            mean, n = (row[0], row[1]) if row else (0.0, 0)
            w = min(n, LEARNED_COST_MEMORY - 1)
            mean = (mean * w + math.log(ratio)) / (w + 1)
            con.execute("INSERT OR REPLACE INTO learned_costs VALUES (?, ?, ?, ?, ?)",
                        (machine, key, mean, n + 1, time.time()))
        return {"ratio": math.exp(mean), "runs": n + 1}

    def learned_cost(self, machine: str, key: str) -> Optional[dict]:
        """The cost correction learned for (``machine``, ``key``): ``{"ratio", "runs"}``, or None."""
        with self._connect() as con:
            row = con.execute("SELECT log_ratio, n FROM learned_costs WHERE machine=? AND key=?",
                              (machine, key)).fetchone()
        return None if row is None else {"ratio": math.exp(row[0]), "runs": int(row[1])}

    def list_studies(self) -> list[dict]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT study_id, name, created_at, updated_at, data_hash, summary IS NOT NULL "
                "FROM studies ORDER BY updated_at DESC"
            ).fetchall()
        return [
            {"study_id": r[0], "name": r[1], "created_at": r[2], "updated_at": r[3], "data_hash": r[4], "complete": bool(r[5])}
            for r in rows
        ]

    def get_study(self, study_id: str = "latest") -> dict:
        with self._connect() as con:
            if study_id == "latest":
                row = con.execute(
                    "SELECT study_id, name, created_at, updated_at, config, data_hash, summary, summary_checksum "
                    "FROM studies WHERE summary IS NOT NULL ORDER BY updated_at DESC LIMIT 1"
                ).fetchone()
            else:
                rows = con.execute(
                    "SELECT study_id, name, created_at, updated_at, config, data_hash, summary, summary_checksum "
                    "FROM studies WHERE study_id LIKE ? OR name = ?",
                    (study_id + "%", study_id),
                ).fetchall()
                if len(rows) > 1:
                    raise StoreError(
                        f"study {study_id!r} is ambiguous ({len(rows)} studies match); give more characters of the id."
                    )
                row = rows[0] if rows else None
        if row is None:
            known = ", ".join(s["study_id"][:12] + f" ({s['name']})" for s in self.list_studies()[:10]) or "none"
            raise StoreError(
                f"no study {study_id!r} in {self.path}. Known studies: {known}. "
                "Run `adaptlab study run` (or `adaptlab demo`) first, or pass --home to the store you used."
            )
        return {
            "study_id": row[0],
            "name": row[1],
            "created_at": row[2],
            "updated_at": row[3],
            "config": json.loads(row[4]),
            "data_hash": row[5],
            "summary": self._read_summary(row),
        }

    def _read_summary(self, row: tuple) -> Optional[dict]:
        """A study's stored summary after checking it against its checksum (a flipped F1 is never reported)."""
        study_id, name, text, checksum = row[0], row[1], row[6], row[7]
        if not text:
            return None
        try:
            if checksum is not None and hashlib.sha256(text.encode("utf-8")).hexdigest() != checksum:
                raise ValueError("its checksum does not match: bytes changed on disk")
            return json.loads(text)
        except (ValueError, UnicodeError) as exc:
            raise StoreError(
                f"{self.path}: the stored summary of study {study_id[:12]} ({name}) is damaged ({exc}). Run the "
                "same `adaptlab study run` again: it reads the study's results back from the store (training again "
                "only results that are damaged too) and writes the summary anew.") from exc

    def study_results(self, study_id: str) -> list[dict]:
        with self._connect() as con:
            keys = [r[0] for r in con.execute("SELECT result_key FROM study_results WHERE study_id=?", (study_id,))]
        return [r for r in (self.get_result(k) for k in keys) if r is not None]


def result_checksum(key: str, rung: str, seed: int, metrics: str, predictions: str, manifest: str) -> str:
    """SHA-256 of a stored result's row as written (its key, rung, seed and the three JSON texts).

    Example:
        >>> result_checksum("k", "probe", 0, "{}", "{}", "{}") == result_checksum("k", "probe", 1, "{}", "{}", "{}")
        False
    """
    blob = json.dumps([key, rung, int(seed), metrics, predictions, manifest])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def seal_unverified(key: str, rung: str, seed: int, metrics: str, predictions: str, manifest: str) -> str:
    """The checksum a result stored before checksums gets on its first read: :data:`UNVERIFIED` and the SHA-256 of
    what it holds then. It stays marked unverified (nothing proves it was whole when it was sealed); later changes
    are caught.

    Example:
        >>> seal_unverified("k", "probe", 0, "{}", "{}", "{}").startswith(UNVERIFIED), is_unverified(None)
        (True, True)
    """
    return UNVERIFIED + result_checksum(key, rung, seed, metrics, predictions, manifest)


def is_unverified(checksum: Optional[str]) -> bool:
    """Whether a results row's ``checksum`` marks a result stored before checksums (NULL, or sealed on first read).

    Example:
        >>> is_unverified(None), is_unverified(UNVERIFIED + "ab"), is_unverified("ab")
        (True, True, False)
    """
    return checksum is None or str(checksum).startswith(UNVERIFIED)


def result_problem(key: str, row: tuple) -> Optional[str]:
    """What is wrong with a results row ``(rung, seed, metrics, predictions, manifest, created_at, checksum)``,
    or None. A row from before checksums (NULL) is accepted as long as its JSON reads; one sealed on its first
    read (:func:`seal_unverified`) is checked against that seal."""
    rung, seed, metrics, predictions, manifest, _created, checksum = row
    try:
        if checksum is not None:  # a match means the JSON is what was written: no need to parse it here
            sealed = str(checksum)[len(UNVERIFIED):] if is_unverified(checksum) else checksum
            if sealed != result_checksum(key, rung, seed, metrics, predictions, manifest):
                return "its checksum does not match: bytes changed on disk"
            return None
        for text in (metrics, predictions, manifest):
            json.loads(text)
    except (TypeError, ValueError) as exc:
        return f"unreadable: {type(exc).__name__}: {exc}"[:200]
    return None


def _add_column(con: sqlite3.Connection, table: str, column: str, kind: str) -> None:
    """Add ``column`` to a ``table`` created by an older adaptlab (its old rows get NULL)."""
    if column in {r[1] for r in con.execute(f"PRAGMA table_info({table})")}:
        return
    try:
        con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    except sqlite3.OperationalError as exc:  # another process added it first
        if "duplicate column" not in str(exc):
            raise


def store_failure(path: Path, exc: BaseException) -> Optional[AdaptlabError]:
    """The user-facing error for a SQLite failure of the run store, or None for other failures (e.g. locked).

    A damaged store is never moved or deleted automatically (it is not recomputable): the error lists the
    recovery steps. A full disk says what to free; the write was rolled back.
    """
    from adaptlab.store.files import disk_full_error, is_corrupt, is_disk_full

    home = Path(path).parent
    if is_disk_full(exc):
        return disk_full_error(path, "a run store write", "the store holds what it held before this write",
                               f"refits you no longer need under {home / 'refits'}, the embedding cache "
                               f"{home / 'cache' / 'embeddings.sqlite'} (recomputable), or finished runs' "
                               f"checkpoints under {home / 'checkpoints'}")
    if is_corrupt(exc):
        return StoreError(recovery_steps(Path(path), str(exc)))
    return None


def recovery_steps(path: Path, problem: str) -> str:
    """What to do about a damaged run store, step by step (nothing here deletes it)."""
    home = path.parent
    return (f"the run store {path} is damaged ({problem}). It holds every stored result and is never deleted or "
            f"replaced automatically. To recover: (1) `adaptlab store check --home {home}` shows the damage; "
            f"(2) keep the damaged file: `mv {path} {path}.damaged`; (3) put back your last copy from "
            f"`adaptlab store backup` as {path}, or salvage what is readable with "
            f"`sqlite3 {path}.damaged .recover | sqlite3 {path}`; (4) run the same command again (results that "
            "were lost are trained again).")


def check_store(path: str | Path) -> dict:
    """``PRAGMA integrity_check`` of a run store file and its row counts; never modifies the file.

    Returns ``{"path", "ok", "problems" (list of messages, empty when ok), "studies", "results", "bytes",
    "damaged_results" (results whose checksum does not match: trained again when asked for), "unverified_results"
    (stored before results had checksums)}``; counts are None when the tables cannot be read. A missing file is a
    :class:`StoreError`.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "runs.sqlite"); _ = RunStore(p)
        >>> check_store(p)["ok"]
        True
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"no run store at {path}: pass the --home of your studies (or set ADAPTLAB_HOME).")
    report: dict[str, Any] = {"path": str(path), "ok": False, "problems": [], "studies": None, "results": None,
                              "damaged_results": [], "unverified_results": None, "bytes": path.stat().st_size}
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        report["problems"] = [str(exc)]
        return report
    try:
        rows = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
        report["problems"] = [] if rows == ["ok"] else rows
        for table in ("studies", "results"):
            try:
                report[table] = con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                report["problems"].append(f"table {table}: {exc}")
        if report["results"] is not None:
            _check_results(con, report)
    except sqlite3.DatabaseError as exc:
        report["problems"].append(str(exc))
    finally:
        con.close()
    report["ok"] = not report["problems"]
    return report


def _check_results(con: sqlite3.Connection, report: dict[str, Any]) -> None:
    """Every result row against its checksum: damaged ones are listed in ``damaged_results`` (the file itself is
    fine; a study that needs one trains it again), rows from before checksums are counted as ``unverified_results``."""
    columns = {r[1] for r in con.execute("PRAGMA table_info(results)")}
    checksum = "checksum" if "checksum" in columns else "NULL"
    cur = con.execute(f"SELECT result_key, rung, seed, metrics, predictions, manifest, created_at, {checksum} "
                      "FROM results")
    unverified = 0
    for key, *row in cur:
        unverified += is_unverified(row[-1])
        problem = result_problem(key, tuple(row))
        if problem is not None:
            report["damaged_results"].append(f"result {key[:12]} ({row[0]} seed {row[1]}): {problem}; the next study "
                                      f"that needs it trains it again (or `study run --recompute {row[0]}`)")
    report["unverified_results"] = unverified
    columns = {r[1] for r in con.execute("PRAGMA table_info(studies)")}
    if "summary_checksum" in columns:
        rows = con.execute("SELECT study_id, name, summary, summary_checksum FROM studies "
                           "WHERE summary IS NOT NULL AND summary_checksum IS NOT NULL")
        for study_id, name, text, checksum in rows:
            if hashlib.sha256(text.encode("utf-8")).hexdigest() != checksum:
                report["damaged_results"].append(f"summary of study {study_id[:12]} ({name}): its checksum does not "
                                                 "match; run the same `adaptlab study run` again to rewrite it")


def backup_store(path: str | Path, dest: str | Path) -> dict:
    """Copy the run store at ``path`` to ``dest`` with the SQLite online backup API (see :meth:`RunStore.backup`).

    The copy is written beside ``dest`` and renamed into place, so ``dest`` is either absent or complete;
    an existing ``dest`` file is never overwritten.
    """
    import datetime as dt
    import os

    from adaptlab.store.files import disk_full_error, is_disk_full

    path, dest = Path(path), Path(dest)
    if not path.is_file():
        raise StoreError(f"no run store at {path}: pass the --home of your studies (or set ADAPTLAB_HOME).")
    if dest.is_dir() or not dest.suffix:  # a folder (existing, or a name without a file suffix)
        dest = dest / f"runs-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.sqlite"
    if dest.exists():
        raise StoreError(f"{dest} already exists; backups never overwrite a file. Give a new file name or a folder.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    src = sqlite3.connect(path, timeout=30)
    try:
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
        finally:
            out.close()
        os.replace(tmp, dest)
    except sqlite3.DatabaseError as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full_error(dest, "the backup", "the run store is untouched and no partial copy is left",
                                  "older backups, or choose a folder on another disk") from exc
        raise StoreError(recovery_steps(path, str(exc)) if "malformed" in str(exc) or "not a database" in str(exc)
                         else f"cannot back up {path} to {dest}: {exc}") from exc
    finally:
        src.close()
    info = check_store(dest)
    return {"source": str(path), "dest": str(dest), "bytes": info["bytes"], "ok": info["ok"],
            "studies": info["studies"], "results": info["results"], "problems": info["problems"]}
