"""
The wake-up half of following the change log: PostgreSQL ``LISTEN``.

Each change the store commits sends ``NOTIFY edgegw_changes``; a node keeps
one connection of its own listening on that channel and calls ``wake`` when
something arrives, so other nodes see a change at once rather than at the
next periodic check. The connection is made in a thread (connecting blocks)
and then only its socket is watched by the reactor: reading notifications
never blocks. A lost connection is closed, reported once, and made again
with a growing delay; every (re)connection also calls ``wake``, since
notifications sent while it was down are gone (the follower catches up
from the change log itself, so nothing is lost, only later).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IReadDescriptor
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

CHANNEL = "edgegw_changes"


def _connect(dsn: str, channel: str, timeout: int) -> Any:
    """A new autocommit connection listening on ``channel`` (blocking: runs in a thread)."""
    import psycopg2

    # TCP keepalives: a connection whose peer vanished without a word (a
    # network cut) is noticed within about half a minute, not hours.
    conn = psycopg2.connect(
        dsn, connect_timeout=timeout, keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3
    )
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'LISTEN "{channel}"')
    except BaseException:
        conn.close()
        raise
    return conn


@implementer(IReadDescriptor)
class _Socket:
    """
    The listening connection's socket, as the reactor watches it: through a
    duplicate of libpq's descriptor, since libpq closes its own when the
    connection fails, and a descriptor closed under the reactor cannot be
    unwatched cleanly. The duplicate is ours to close, after unwatching.
    """

    def __init__(self, conn: Any, listener: "ChangeListener") -> None:
        self.conn = conn
        self._listener = listener
        self._fileno: int = os.dup(conn.fileno())

    def close(self) -> None:
        """Close our descriptor and the connection (after the reactor stopped watching it)."""
        os.close(self._fileno)
        try:
            self.conn.close()
        except Exception:
            pass

    def fileno(self) -> int:
        return self._fileno

    def logPrefix(self) -> str:
        return "edgegw-listen"

    def doRead(self) -> None:
        """Take what arrived; any notification wakes the follower (once per read)."""
        self._listener._readable(self)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor dropped the descriptor (its shutdown): nothing to do."""


class ChangeListener:
    """
    Calls ``wake()`` for every batch of ``NOTIFY`` on ``channel`` and after
    each (re)connection; ``start`` connects, ``stop`` closes for good.
    ``reactor`` watches the socket and runs the connecting thread;
    ``clock`` times the reconnections (``first`` seconds, doubling up to
    ``most``).
    """

    log = Logger()

    def __init__(
        self,
        dsn: str,
        wake: Callable[[], object],
        reactor: Any,
        clock: IReactorTime | None = None,
        channel: str = CHANNEL,
        where: str = "the store",
        first: float = 0.5,
        most: float = 10.0,
        connect_timeout: int = 5,
        connect: Callable[[str, str, int], Any] = _connect,
    ) -> None:
        self._dsn = dsn
        self._wake = wake
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        self._channel = channel
        self._where = where
        self._first = first
        self._most = most
        self._delay = first
        self._timeout = connect_timeout
        self._connect = connect
        self._socket: _Socket | None = None
        self._retry: IDelayedCall | None = None
        self._connecting: Deferred[None] | None = None
        self._running = False
        # Whether the current outage was logged already (once per outage).
        self._reported = False
        #: How many times a connection was made (tests wait on it).
        self.connections = 0

    @property
    def connected(self) -> bool:
        return self._socket is not None

    def start(self) -> None:
        """Connect (in a thread); reconnect whenever the connection is lost until ``stop``."""
        self._running = True
        self._open()

    def stop(self) -> Deferred[None]:
        """Close the connection and cancel any retry; fires once a connect in progress has ended too."""
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._drop()
        if self._connecting is not None:
            waiting: Deferred[None] = Deferred()
            self._connecting.addBoth(lambda _: waiting.callback(None))
            return waiting
        return succeed(None)

    def _open(self) -> None:
        self._retry = None
        if not self._running or self._connecting is not None:
            return
        d = self._connecting = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._connect, self._dsn, self._channel, self._timeout
        )
        d.addCallbacks(self._connected, self._failed)

    def _connected(self, conn: Any) -> None:
        self._connecting = None
        if not self._running:
            conn.close()
            return
        self._socket = _Socket(conn, self)
        self._reactor.addReader(self._socket)
        self.connections += 1
        self._delay = self._first
        if self._reported:
            self.log.info("Listening for changes of {where} again", where=self._where)
        self._reported = False
        # Whatever was notified while we were not listening: the follower reads the log.
        self._call_wake()

    def _failed(self, failure: Failure) -> None:
        self._connecting = None
        self._lost(failure.getErrorMessage())

    def _readable(self, socket: _Socket) -> None:
        if socket is not self._socket:
            return
        try:
            socket.conn.poll()
            notified = bool(socket.conn.notifies)
            socket.conn.notifies.clear()
        except Exception as e:
            self._drop()
            self._lost(str(e).strip() or type(e).__name__)
            return
        if notified:
            self._call_wake()

    def _call_wake(self) -> None:
        try:
            self._wake()
        except Exception:
            self.log.failure("Waking the change follower failed")

    def _drop(self) -> None:
        """Stop watching the socket, then close the connection (in that order: the fd goes with it)."""
        socket, self._socket = self._socket, None
        if socket is None:
            return
        self._reactor.removeReader(socket)
        socket.close()

    def _lost(self, reason: str) -> None:
        """Report the first failure of an outage, then try again later."""
        if not self._running:
            return
        if not self._reported:
            self._reported = True
            self.log.warn(
                "Not listening for changes of {where} ({reason}); retrying, and checking the change log"
                " every few seconds meanwhile",
                where=self._where,
                reason=reason.splitlines()[0] if reason else "connection lost",
            )
        self._retry = self._clock.callLater(self._delay, self._open)
        self._delay = min(self._delay * 2, self._most)
