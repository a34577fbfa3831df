"""
The deadlines of the service calls in flight, on one timer.

A ``DelayedCall`` per call (``Deferred.addTimeout``) costs a heap push, a
cancel and two more Deferred callbacks per call, for a timer that almost
never fires.  Every call of a broker has the same timeout, so deadlines come
in the order calls start: they are kept in a dict in that order, and a single
``DelayedCall`` waits for the oldest one.  When it fires, the calls past their
deadline are cancelled (their Deferreds fail with ``CancelledError``) and it
waits again for the oldest left; a call that is answered just leaves the dict.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

__all__ = ["Deadlines"]


class Deadlines:
    """Deferreds to cancel at their deadline; deadlines must be added in increasing order."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._calls: dict[int, tuple[float, Deferred[Any]]] = {}
        self._last = 0
        self._timer: IDelayedCall | None = None
        self._expiring = False

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, d: Deferred[Any], deadline: float) -> int:
        """Cancel ``d`` at ``deadline`` (reactor seconds) unless discarded first; its token."""
        self._last = token = self._last + 1
        self._calls[token] = (deadline, d)
        if self._timer is None and not self._expiring:
            self._timer = self._reactor.callLater(
                max(0.0, deadline - self._reactor.seconds()), self._expire
            )
        return token

    def discard(self, token: int) -> None:
        """The call of ``token`` was answered: no deadline any more."""
        self._calls.pop(token, None)

    def _expire(self) -> None:
        self._timer = None
        calls = self._calls
        now = self._reactor.seconds()
        # a cancelled call's callbacks may add calls: they wait for this loop's timer
        self._expiring = True
        try:
            while calls:
                token = next(iter(calls))
                deadline, d = calls[token]
                if deadline > now:
                    self._timer = self._reactor.callLater(deadline - now, self._expire)
                    return
                del calls[token]
                d.cancel()
        finally:
            self._expiring = False

    def stop(self) -> None:
        """Forget every deadline (shutdown)."""
        self._calls.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
