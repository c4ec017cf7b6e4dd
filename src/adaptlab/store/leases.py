"""Per-cell leases in the run store, so studies that share a home never train the same (rung, seed) cell twice.

Before it trains a cell, a study takes the cell's lease (``RunStore.acquire_lease``). A second study on the
same home that needs the cell finds the live lease, trains its other cells, then waits for the first one's
result and reads it from the store. The owner renews its leases from a background thread (the heartbeat);
when it is killed the heartbeat stops, the lease expires after ``ttl`` seconds and the waiting study takes the
cell over. Leases are taken by the driver (the process that writes the run store), whichever executor
(in-process, Ray) trains the cell.
"""
from __future__ import annotations

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

    def await_cells(self, keys: Iterable[str], say: Callable[[str], None] = lambda _m: None,
                    ) -> tuple[dict[str, dict], list[str]]:
        """Wait until each of ``keys`` is stored by its owner, or its lease is free (released without a result,
        or expired: the owner was killed) and so taken here. Returns (results read from the store, keys now
        leased to this study to train). Polls every ``poll`` seconds; gives up after ``max_wait`` if set."""
        pending = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        claimed: list[str] = []
        start = time.monotonic()
        told = False
        while pending:
            for key in list(pending):
                stored = self.store.get_result(key)
                if stored is None and self.claim(key):
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
                lease = self.store.lease(pending[0]) or {}
                say(f"waiting for {len(pending)} cell(s) another study on this home is training "
                    f"({lease.get('owner', 'another process')}); their results will be read, not trained again")
                told = True
            if self.max_wait is not None and time.monotonic() - start > self.max_wait:
                raise LeaseWaitTimeout(
                    f"waited {self.max_wait:.0f}s for {len(pending)} cell(s) another study on this home is still "
                    "training; run the same command again later (finished cells are stored and read back).")
            time.sleep(self.poll)
        return found, claimed
