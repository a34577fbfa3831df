"""
Tests for ``edgegw_tx.cluster.notify``: the LISTEN connection that wakes the
change follower, with a fake connection (reconnection timing) and against the
real PostgreSQL (notifications, and a connection the server terminates).
"""

from __future__ import annotations

import os
from typing import Any

import psycopg2
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from edgegw_tx.cluster.notify import CHANNEL, ChangeListener
from tests.support.fakes import SynchronousReactor
from tests.support.pg import fresh_database, terminate_connections


class FakeConnection:
    """A psycopg2 connection as the listener uses it: fileno, poll, notifies, close."""

    def __init__(self, test_case: TestCase) -> None:
        read, write = os.pipe()
        test_case.addCleanup(os.close, read)
        test_case.addCleanup(os.close, write)
        self.fd = read
        self.notifies: list[Any] = []
        self.closed = False
        self.broken = False

    def fileno(self) -> int:
        return self.fd

    def poll(self) -> None:
        if self.broken:
            raise psycopg2.OperationalError("terminating connection due to administrator command\n")

    def close(self) -> None:
        self.closed = True


class ChangeListenerTests(TestCase):
    """The listener's connection handling, on a memory reactor and clock."""

    def setUp(self) -> None:
        self.reactor = SynchronousReactor()
        self.wakes = 0
        self.connections: list[FakeConnection] = []
        self.refuse = 0

    def connect(self, dsn: str, channel: str, timeout: int) -> FakeConnection:
        if self.refuse:
            self.refuse -= 1
            raise psycopg2.OperationalError("could not connect to server: Connection refused")
        conn = FakeConnection(self)
        self.connections.append(conn)
        return conn

    def wake(self) -> None:
        self.wakes += 1

    def listener(self) -> ChangeListener:
        listener = ChangeListener("postgresql://x@h/db", self.wake, self.reactor, first=1.0, most=4.0,
                                  connect=self.connect)
        self.addCleanup(listener.stop)
        return listener

    def reader(self) -> Any:
        (reader,) = self.reactor.readers
        return reader

    def test_connect_wakes_and_watches(self) -> None:
        """
        Once connected, the connection's socket is watched by the reactor and
        the follower is woken (to catch up on what was missed before).
        """
        listener = self.listener()
        listener.start()
        self.assertEqual(self.wakes, 1)
        self.assertTrue(os.path.samestat(os.fstat(self.reader().fileno()), os.fstat(self.connections[0].fd)))
        self.assertTrue(listener.connected)

    def test_notification_wakes(self) -> None:
        """A read with notifications wakes once and clears them; a read without any does not wake."""
        listener = self.listener()
        listener.start()
        self.reader().doRead()
        self.assertEqual(self.wakes, 1)
        self.connections[0].notifies.extend(["n1", "n2"])
        self.reader().doRead()
        self.assertEqual(self.wakes, 2)
        self.assertEqual(self.connections[0].notifies, [])

    def test_lost_connection_reconnects_with_backoff(self) -> None:
        """
        A failing read closes the connection, stops watching it, and connects
        again after the backoff, which doubles while connecting fails and is
        reset by a success; the reconnection wakes the follower.
        """
        listener = self.listener()
        listener.start()
        self.connections[0].broken = True
        self.refuse = 2
        self.reader().doRead()
        self.assertTrue(self.connections[0].closed)
        self.assertEqual(self.reactor.readers, set())
        self.assertFalse(listener.connected)
        self.reactor.advance(1.0)  # refused
        self.assertEqual(len(self.connections), 1)
        self.reactor.advance(1.9)  # the next try is 2 s later
        self.assertEqual(len(self.connections), 1)
        self.reactor.advance(0.1)  # refused again; next in 4 s
        self.reactor.advance(4.0)
        self.assertEqual(len(self.connections), 2)
        self.assertEqual(self.wakes, 2)
        self.assertTrue(os.path.samestat(os.fstat(self.reader().fileno()), os.fstat(self.connections[1].fd)))
        self.connections[1].broken = True
        self.reader().doRead()
        self.reactor.advance(1.0)  # back to the first delay
        self.assertEqual(len(self.connections), 3)

    def test_lost_is_logged_once(self) -> None:
        """An outage is logged once however many reconnections fail, and its end once."""
        events: list[dict[str, Any]] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        listener = self.listener()
        listener.start()
        self.connections[0].broken = True
        self.refuse = 3
        self.reactor.readers.copy().pop().doRead()
        self.reactor.advance(1.0)
        self.reactor.advance(2.0)
        self.reactor.advance(4.0)
        self.reactor.advance(4.0)
        mine = [e for e in events if e.get("log_namespace", "").startswith("edgegw_tx.cluster.notify")]
        self.assertEqual([e["log_level"].name for e in mine], ["warn", "info"])
        self.assertIn("administrator command", mine[0]["reason"])

    def test_stop_cancels_retry(self) -> None:
        """``stop`` cancels a pending reconnection and closes the connection."""
        listener = self.listener()
        listener.start()
        self.connections[0].broken = True
        self.reader().doRead()
        self.successResultOf(listener.stop())
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        listener.start()
        self.successResultOf(listener.stop())
        self.assertTrue(self.connections[1].closed)
        self.assertEqual(self.reactor.readers, set())


class ChangeListenerIntegrationTests(TestCase):
    """The listener on the real PostgreSQL server."""

    timeout = 60

    def setUp(self) -> None:
        self.uri = fresh_database(self)
        self.waiting: list[Deferred[None]] = []
        self.listener = ChangeListener(self.uri, self.wake, reactor, first=0.05, most=0.2)
        self.addCleanup(self.listener.stop)

    def wake(self) -> None:
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)

    def next_wake(self) -> "Deferred[None]":
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d

    def notify(self) -> "Deferred[None]":
        def send() -> None:
            conn = psycopg2.connect(self.uri)
            try:
                conn.autocommit = True
                with conn.cursor() as cursor:
                    cursor.execute("SELECT pg_notify(%s, '7')", (CHANNEL,))
            finally:
                conn.close()

        return deferToThread(send)

    @inlineCallbacks
    def test_wakes_on_notify_and_after_terminate(self) -> Any:
        """
        A NOTIFY on the channel wakes the follower; when the server terminates
        the listening connection, the listener connects again (a wake) and
        the next NOTIFY wakes it again.
        """
        connected = self.next_wake()
        self.listener.start()
        yield connected
        woken = self.next_wake()
        yield self.notify()
        yield woken
        self.assertEqual(self.listener.connections, 1)
        reconnected = self.next_wake()
        ended = yield deferToThread(terminate_connections, self.uri)
        self.assertEqual(ended, 1)
        yield reconnected
        self.assertEqual(self.listener.connections, 2)
        woken = self.next_wake()
        yield self.notify()
        yield woken
