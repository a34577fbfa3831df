"""
The data plane's shutdown: L{GatewayHTTPFactory.close_connections} on a
clock, and L{edgegw_tx.gateway.listening} on a real listening socket (what
tests/test_hardening_chaos.py's restart under load relies on).
"""

import socket

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from edgegw_tx.gateway.dispatch import Dispatcher
from edgegw_tx.gateway.http import GatewayHTTPFactory
from edgegw_tx.gateway.listening import DrainingServerService, drain_accept_queue
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.paths import parse_pattern
from tests.support.http import EchoTarget

REQUEST = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"


class CloseConnectionsTests(SynchronousTestCase):
    """close_connections winds every kind of connection down, on a Clock."""

    def setUp(self):
        self.target = EchoTarget()
        routes = RouteTable()
        routes.add("get", "*", "GET", parse_pattern("/{p}"), self.target)
        self.clock = Clock()
        self.factory = GatewayHTTPFactory(Dispatcher(routes), self.clock)

    def connect(self):
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def settle(self, *connections):
        """StringTransport never calls connectionLost: do it for the closed ones."""
        for protocol, transport in connections:
            if transport.disconnecting and not protocol._gone:
                protocol.connectionLost(None)

    def test_idle_keep_alive_closes_at_once(self):
        """A keep-alive connection idle after its answers is closed at once."""
        protocol, transport = self.connect()
        protocol.dataReceived(REQUEST)
        d = self.factory.close_connections(grace=1)
        self.assertTrue(transport.disconnecting)
        self.settle((protocol, transport))
        self.assertIsNone(self.successResultOf(d))

    def test_request_in_flight_is_answered_with_close(self):
        """A request waiting for its handler is answered, with connection: close, then closed."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
        d = self.factory.close_connections(grace=1)
        self.clock.advance(5)
        self.assertFalse(transport.disconnecting)
        self.target.held[0].callback({"status": 200, "body": "late"})
        self.assertIn(b"connection: close", transport.value())
        self.assertTrue(transport.value().endswith(b"late"))
        self.assertTrue(transport.disconnecting)
        self.settle((protocol, transport))
        self.successResultOf(d)

    def test_fresh_connection_gets_the_grace_for_its_request(self):
        """
        A connection that has sent nothing yet (accepted as the listener
        stopped) is served if its request comes within the grace, with
        connection: close.
        """
        protocol, transport = self.connect()
        d = self.factory.close_connections(grace=1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.5)
        protocol.dataReceived(REQUEST)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK"))
        self.assertIn(b"connection: close", transport.value())
        self.assertTrue(transport.disconnecting)
        self.settle((protocol, transport))
        self.successResultOf(d)

    def test_silent_connection_closed_after_the_grace(self):
        """A connection still silent when the grace is over is closed without a word."""
        protocol, transport = self.connect()
        d = self.factory.close_connections(grace=1)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.settle((protocol, transport))
        self.successResultOf(d)

    def test_half_received_request_gets_503_after_the_grace(self):
        """A request still arriving when the grace is over is answered 503."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /x HTTP/1.1\r\nHost:")
        d = self.factory.close_connections(grace=1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 503 "))
        self.assertTrue(transport.disconnecting)
        self.settle((protocol, transport))
        self.successResultOf(d)

    def test_no_connection(self):
        """With no connection open it fires at once and leaves no timer."""
        self.successResultOf(self.factory.close_connections())
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _Accepted(Protocol):
    def connectionMade(self):
        self.factory.accepted.append(self)


class DrainTests(TestCase):
    """drain_accept_queue and DrainingServerService on a real socket."""

    def setUp(self):
        self.factory = Factory.forProtocol(_Accepted)
        self.factory.accepted = []
        self.sockets = []
        self.addCleanup(self._close_sockets)

    def _close_sockets(self):
        for s in self.sockets:
            s.close()
        for protocol in self.factory.accepted:
            protocol.transport.abortConnection()

    def queue(self, port, count):
        """C{count} connections the kernel completed and the reactor has not accepted yet."""
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            self.sockets.append(s)

    def assertRefused(self, port):
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

    def test_queued_connections_are_accepted_then_refused(self):
        """The queued connections are accepted; at once after, a new one is refused."""
        port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        number = port.getHost().port
        self.queue(number, 5)
        self.assertEqual(drain_accept_queue(port), 5)
        self.assertEqual(len(self.factory.accepted), 5)
        self.assertRefused(number)
        return port.stopListening()

    @inlineCallbacks
    def test_service_stop_accepts_the_queue(self):
        """Stopping a DrainingServerService accepts what was queued before it closes."""
        service = DrainingServerService(
            serverFromString(reactor, "tcp:0:interface=127.0.0.1"), self.factory
        )
        service.startService()
        number = self.successResultOf(service.whenListening()).getHost().port
        self.queue(number, 3)
        yield service.stopService()
        self.assertEqual(len(self.factory.accepted), 3)
        self.assertRefused(number)
        for s in self.sockets:
            s.settimeout(0)
            # Accepted and still open (not reset): nothing to read yet.
            with self.assertRaises(BlockingIOError):
                s.recv(1)

    def test_a_port_that_cannot_be_bound_raises_at_start(self):
        """Binding a port in use raises CannotListenError from the start (twistd exits), and whenListening fails with it."""
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        number = busy.getsockname()[1]
        service = DrainingServerService(
            serverFromString(reactor, f"tcp:{number}:interface=127.0.0.1"), self.factory
        )
        self.assertRaises(CannotListenError, service.privilegedStartService)
        self.failureResultOf(service.whenListening(), CannotListenError)
        self.assertEqual(self.flushLoggedErrors(), [])

    @inlineCallbacks
    def test_when_listening_fires_for_a_bind_under_way(self):
        """whenListening asked before the endpoint has bound fires with the port once it has; stop cancels a pending bind."""
        pending = Deferred()
        endpoint = _PendingEndpoint(pending)
        service = DrainingServerService(endpoint, self.factory)
        service.startService()
        waiting = service.whenListening()
        self.assertNoResult(waiting)
        port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        number = port.getHost().port
        pending.callback(port)
        self.assertIs(self.successResultOf(waiting), port)
        yield service.stopService()
        self.assertRefused(number)
        again = DrainingServerService(_PendingEndpoint(Deferred()), self.factory)
        again.startService()
        waiting = again.whenListening()
        yield again.stopService()
        self.failureResultOf(waiting, CancelledError)


class _PendingEndpoint:
    """A server endpoint whose listen() answers with a Deferred the test fires."""

    def __init__(self, pending):
        self.pending = pending

    def listen(self, factory):
        return self.pending
