"""Per-cell leases in the run store, so studies that share a home never train the same (rung, seed) cell twice.

Before it trains a cell, a study takes the cell's lease (``RunStore.acquire_lease``). A second study on the
same home that needs the cell finds the live lease, trains its other cells, then waits for the first one's
result and reads it from the store. The owner renews its leases from a background thread (the heartbeat);
when it is killed the heartbeat stops, the lease expires after ``ttl`` seconds and the waiting study takes the
cell over. Leases are taken by the driver (the process that writes the run store), whichever executor
(in-process, Ray) trains the cell.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Optional

from adaptlab.errors import AdaptlabError

#: Seconds a lease stays live without a heartbeat. A killed study's cells are taken over after this long.
LEASE_TTL = 90.0
#: Seconds between two looks at the store while waiting for another study's cell.
LEASE_POLL = 1.0

logger = logging.getLogger(__name__)


def owner_is_dead(owner: str) -> bool:
    """True when a lease ``owner`` (``host:pid:tag``) names a process of this machine that no longer runs.

    Only a process of this host can be checked (POSIX, signal 0); any doubt (another host, another user's
    process, a reused pid, Windows) says False, and the lease then expires after its ttl as before.

    Example:
        >>> owner_is_dead(f"{socket.gethostname()}:{os.getpid()}:abc"), owner_is_dead("elsewhere:1:abc")
        (False, False)
    """
    host, _, rest = owner.partition(":")
    pid = rest.split(":", 1)[0]
    if os.name != "posix" or host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: nothing is sent, only whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it runs, as another user
        return False
    return False


class LeaseWaitTimeout(AdaptlabError):
    """Waited longer than ``max_wait`` for cells another study is training (and still renewing)."""


class CellLeases:
    """The leases one study run holds, renewed by a heartbeat thread while the ``with`` block runs.

    Example:
        >>> import tempfile, os
        >>> from adaptlab.store import RunStore
        >>> store = RunStore(os.path.join(tempfile.mkdtemp(), "runs.sqlite"))
        >>> with CellLeases(store) as mine, CellLeases(store) as theirs:
        ...     mine.claim("cell-1"), theirs.claim("cell-1")
        (True, False)
        >>> store.lease("cell-1") is None   # released when the block ends
        True
    """

    def __init__(self, store: Any, *, ttl: float = LEASE_TTL, poll: float = LEASE_POLL,
                 max_wait: Optional[float] = None) -> None:
        self.store = store
        self.ttl, self.poll, self.max_wait = float(ttl), float(poll), max_wait
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held: set[str] = set()
        self._dead_owners: set[str] = set()  # owners whose leases were taken over (said once each)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "CellLeases":
        self._thread = threading.Thread(target=self._heartbeat, name="adaptlab-lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for key in list(self.held):
            self.release(key)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            if self.held:
                try:
                    self.store.renew_leases(self.owner, self.ttl)
                except Exception:  # noqa: BLE001 -- a missed beat is retried; the lease has 3 more before expiry
                    pass

    def claim(self, key: str) -> bool:
        """Take the lease on ``key``; False while another live study holds it."""
        if self.store.acquire_lease(key, self.owner, self.ttl):
            self.held.add(key)
            return True
        return False

    def release(self, key: str) -> None:
        self.held.discard(key)
        self.store.release_lease(key, self.owner)

    def await_cells(self, keys: Iterable[str], say: Optional[Callable[[str], None]] = None,
                    ) -> tuple[dict[str, dict], list[str]]:
        """Wait until each of ``keys`` is stored by its owner, or its lease is free (released without a result,
        or expired: the owner was killed) and so taken here. Returns (results read from the store, keys now
        leased to this study to train). Polls every ``poll`` seconds; gives up after ``max_wait`` if set.

        The wait is always said, with how long it can last (:meth:`wait_message`): through ``say``, or, without
        one (``--json``: no progress lines), as a warning on the ``adaptlab.store.leases`` logger, which prints
        on stderr when logging is not configured, so a silent pause of up to ``ttl`` seconds never happens."""
        tell = say if say is not None else logger.warning
        pending = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        claimed: list[str] = []
        start = time.monotonic()
        told = False
        while pending:
            for key in list(pending):
                stored = self.store.get_result(key)
                if stored is None and (self._take_from_dead_owner(key, tell) or self.claim(key)):
                    stored = self.store.get_result(key)  # stored between the two reads: nothing to train
                    if stored is None:
                        claimed.append(key)
                    else:
                        self.release(key)
                if stored is not None:
                    found[key] = stored
                if stored is not None or key in claimed:
                    pending.remove(key)
            if not pending:
                break
            if not told:
                tell(self.wait_message(pending))
                told = True
            if self.max_wait is not None and time.monotonic() - start > self.max_wait:
                raise LeaseWaitTimeout(
                    f"waited {self.max_wait:.0f}s for {len(pending)} cell(s) another study on this home is still "
                    "training; run the same command again later (finished cells are stored and read back).")
            time.sleep(self.poll)
        return found, claimed

    def _take_from_dead_owner(self, key: str, tell: Callable[[str], None]) -> bool:
        """Take ``key``'s lease at once when its owner was a process of this machine that no longer runs (a
        study killed a moment ago, rerun now), instead of waiting up to ``ttl`` for the lease to expire."""
        owner = (self.store.lease(key) or {}).get("owner")
        if not owner or not owner_is_dead(owner):
            return False
        self.store.release_lease(key, owner)  # only if that owner still holds it
        if not self.claim(key):
            return False
        if owner not in self._dead_owners:
            self._dead_owners.add(owner)
            tell(f"the study that held cells here ({owner}) no longer runs on this machine; its leases are taken "
                 "over now, without waiting for them to expire")
        return True

    def wait_message(self, pending: list[str]) -> str:
        """What a wait for ``pending`` cells is, and how long it lasts at most if their owner was stopped.

        Example:
            >>> import tempfile, os
            >>> from adaptlab.store import RunStore
            >>> store = RunStore(os.path.join(tempfile.mkdtemp(), "runs.sqlite"))
            >>> with CellLeases(store, ttl=90) as theirs, CellLeases(store) as mine:
            ...     _ = theirs.claim("cell-1")
            ...     print(mine.wait_message(["cell-1"]))  # doctest: +ELLIPSIS
            waiting for 1 cell(s) another study on this home is training (...); ... in at most 90s ...
        """
        lease = self.store.lease(pending[0]) or {}
        now = time.time()
        left = max(0.0, float(lease.get("expires_at", now)) - now)
        beat = now - float(lease.get("heartbeat_at", now))
        limit = f"; this run gives up after {self.max_wait:.0f}s" if self.max_wait is not None else ""
        return (f"waiting for {len(pending)} cell(s) another study on this home is training "
                f"({lease.get('owner', 'another process')}); their results will be read, not trained again. "
                f"Its last heartbeat was {beat:.0f}s ago: if that study was stopped, its lease expires and the "
                f"cells are trained here in at most {left:.0f}s (leases live {self.ttl:.0f}s without a heartbeat)"
                f"{limit}.")
