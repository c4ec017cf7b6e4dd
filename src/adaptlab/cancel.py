"""Cooperative cancellation: a cancel reaches a running cell at its next training step or encode batch.

A :class:`CancelToken` is set from another thread (the web app's Cancel button) or by a signal (the
CLI's first Ctrl+C). Whoever runs the work makes it current with :func:`cancel_scope`; the loops that
take long (network rungs' optimizer steps, the refit's MLM steps, SetFit's steps, encode batches, the
study between cells) call :func:`check_cancelled`, which raises :class:`Cancelled` once the token is
set. A training loop saves its checkpoint first, so running the same study again resumes from it.

The current token lives in a context variable: it follows the thread (and asyncio task) that set it,
so a cancel of one web job never stops another job's thread. Shared module: imports no stage.
"""
from __future__ import annotations

import contextlib
import contextvars
import signal
import threading
from typing import Any, Callable, Iterator, Optional


class Cancelled(BaseException):
    """The work was cancelled on request; what finished (and the running run's checkpoint) is kept.

    A ``BaseException``, as ``KeyboardInterrupt`` is: ``except Exception`` clauses (best-effort steps,
    retries) do not swallow it. Not a ``KeyboardInterrupt`` itself, which test runners and doctest treat as
    "stop everything". The CLI answers it as a Ctrl+C (exit 130, "run the same command again to resume").

    Example:
        >>> try:
        ...     raise Cancelled("cancelled at step 12")
        ... except Cancelled as stop:
        ...     print(stop, isinstance(stop, Exception))
        cancelled at step 12 False
    """


class CancelToken:
    """A cancel request that any thread may set and the running work polls (a ``threading.Event``).

    Example:
        >>> token = CancelToken()
        >>> token.cancelled
        False
        >>> token.cancel("stopped by the test")
        >>> token.cancelled, token.reason
        (True, 'stopped by the test')
        >>> token.check()
        Traceback (most recent call last):
        ...
        adaptlab.cancel.Cancelled: stopped by the test
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the work to stop at its next step; safe from any thread and from a signal handler."""
        self.reason = str(reason)
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if a cancel was requested."""
        if self._event.is_set():
            raise Cancelled(self.reason)


_CURRENT: contextvars.ContextVar[Optional[CancelToken]] = contextvars.ContextVar("adaptlab_cancel", default=None)


@contextlib.contextmanager
def cancel_scope(token: Optional[CancelToken]) -> Iterator[Optional[CancelToken]]:
    """Make ``token`` the current one for the work run inside the ``with`` block (None: no change).

    Example:
        >>> token = CancelToken()
        >>> with cancel_scope(token):
        ...     cancel_requested()
        False
        >>> token.cancel()
        >>> with cancel_scope(token):
        ...     cancel_requested()
        True
        >>> cancel_requested()                      # outside the scope nothing is cancelled
        False
    """
    if token is None:
        yield current_token()
        return
    reset = _CURRENT.set(token)
    try:
        yield token
    finally:
        _CURRENT.reset(reset)


def current_token() -> Optional[CancelToken]:
    """The token of the enclosing :func:`cancel_scope`, or None.

    Example:
        >>> token = CancelToken()
        >>> with cancel_scope(token):
        ...     current_token() is token
        True
        >>> current_token() is None
        True
    """
    return _CURRENT.get()


def cancel_requested() -> bool:
    """True when the current token was cancelled: a loop then stops at this step (after its checkpoint).

    Example:
        >>> cancel_requested()
        False
    """
    token = _CURRENT.get()
    return token is not None and token.cancelled


def check_cancelled() -> None:
    """Raise :class:`Cancelled` when the current token was cancelled (one cheap check: call it per batch).

    Example:
        >>> token = CancelToken()
        >>> with cancel_scope(token):
        ...     check_cancelled()                   # not cancelled: returns
        ...     token.cancel("stop")
        ...     check_cancelled()
        Traceback (most recent call last):
        ...
        adaptlab.cancel.Cancelled: stop
    """
    token = _CURRENT.get()
    if token is not None:
        token.check()


@contextlib.contextmanager
def cancel_on_sigint(on_first: Callable[[], Any] = lambda: None,
                     reason: str = "interrupted (Ctrl+C)") -> Iterator[CancelToken]:
    """A token the first Ctrl+C (SIGINT) cancels, current inside the block; a second Ctrl+C stops at once.

    The work then stops at its next step and saves its checkpoint, instead of losing the steps since the
    last one. Outside the main thread (no signal handlers there) the token is only current.

    Example:
        >>> import signal
        >>> with cancel_on_sigint() as token:
        ...     signal.raise_signal(signal.SIGINT)  # the first Ctrl+C: a request, no exception here
        ...     token.cancelled
        True
    """
    token = CancelToken()
    previous: Any = None
    installed = False

    def handle(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel(reason)
        on_first()

    if threading.current_thread() is threading.main_thread():
        try:
            previous = signal.signal(signal.SIGINT, handle)
            installed = True
        except (ValueError, OSError):  # pragma: no cover - embedders without signals
            installed = False
    try:
        with cancel_scope(token):
            yield token
    finally:
        if installed:  # None: the handler was not set from Python; the default one is the nearest
            signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


__all__ = ["CancelToken", "Cancelled", "cancel_on_sigint", "cancel_requested", "cancel_scope", "check_cancelled",
           "current_token"]
