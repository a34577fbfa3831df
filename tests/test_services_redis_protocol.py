"""
Unit tests of the Redis connector's own protocol on a L{Clock} and
L{StringTransport}s: the calls of one reactor turn leave in one write on one
connection, the next turn's on the next connection, replies answer calls in
order, and a lost connection answers its calls at once.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from edgegw_tx.services.config import validate_config
from edgegw_tx.services.errors import ServiceError
from edgegw_tx.services.redis import RedisConnector


class CountingTransport(StringTransport):
    """A StringTransport that counts its writes."""

    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, data):
        self.writes += 1
        super().write(data)


class FakeEndpoint:
    """Connects every protocol at once to a fresh CountingTransport."""

    def __init__(self):
        self.protocols = []

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(CountingTransport())
        self.protocols.append(protocol)
        return succeed(protocol)


class ProtocolTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.endpoint = FakeEndpoint()

    def connector(self, **config):
        config = validate_config("redis", dict({"host": "127.0.0.1", "pool_size": 2}, **config),
                                 name="cache")
        connector = RedisConnector(config, name="cache", call_timeout=2.0, reactor=self.clock)
        connector.endpoint = lambda: self.endpoint
        return connector

    def test_one_write_per_turn(self):
        """Three calls in one turn: nothing is written until the turn ends, then one write on one connection."""
        connector = self.connector()
        warm = connector.call("get", {"key": "warm"})  # opens the pool
        self.clock.advance(0)
        first, second = self.endpoint.protocols
        first.dataReceived(b"$-1\r\n")
        self.assertIsNone(self.successResultOf(warm))
        written = first.transport.writes
        d1 = connector.call("get", {"key": "a"})
        d2 = connector.call("set", {"key": "b", "value": "ü"})
        d3 = connector.call("incr", {"key": "c"})
        self.assertEqual(second.transport.writes + first.transport.writes, written)
        self.clock.advance(0)
        turn = second if second.transport.writes else first
        self.assertEqual(turn.transport.writes, 1 if turn is second else written + 1)
        self.assertTrue(turn.transport.value().endswith(
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
            b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$2\r\n\xc3\xbc\r\n"
            b"*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n"))
        turn.dataReceived(b"$2\r\n12\r\n+OK\r\n:")
        self.assertEqual(self.successResultOf(d1), "12")
        self.assertIs(self.successResultOf(d2), True)
        self.assertNoResult(d3)
        turn.dataReceived(b"7\r\n")
        self.assertEqual(self.successResultOf(d3), 7)

    def test_turns_round_robin(self):
        """The next turn's calls go to the next connection that is up."""
        connector = self.connector()
        connector.call("get", {"key": "warm"})
        self.clock.advance(0)
        first, second = self.endpoint.protocols
        before = first.transport.writes, second.transport.writes
        connector.call("get", {"key": "x"})
        self.clock.advance(0)
        connector.call("get", {"key": "y"})
        self.clock.advance(0)
        self.assertEqual((first.transport.writes - before[0], second.transport.writes - before[1]),
                         (1, 1))

    def test_error_reply_and_lost_connection(self):
        """An error reply is RedisError; a connection lost under calls answers them ServiceUnavailable at once."""
        connector = self.connector(pool_size=1)
        d = connector.call("get", {"key": "a"})
        self.clock.advance(0)
        [connection] = self.endpoint.protocols
        connection.dataReceived(b"-WRONGTYPE Operation against a key\r\n")
        error = self.failureResultOf(d, ServiceError).value
        self.assertEqual((error.kind, error.message),
                         ("RedisError", "WRONGTYPE Operation against a key"))
        d = connector.call("get", {"key": "b"})
        self.clock.advance(0)
        connection.connectionLost(Failure(ConnectionResetError("reset by peer")))
        error = self.failureResultOf(d, ServiceError).value
        self.assertEqual(error.kind, "ServiceUnavailable")
        self.assertIn("connection lost", error.message)
        self.assertIn("reset by peer", error.message)

    def test_handshake_before_calls(self):
        """AUTH and SELECT go first; a refused AUTH fails the waiting calls with the server's message."""
        connector = self.connector(pool_size=1, password="pw", username="u", database=3)
        d = connector.call("get", {"key": "a"})
        self.clock.advance(0)
        [connection] = self.endpoint.protocols
        self.assertEqual(connection.transport.value(),
                         b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n")
        connection.dataReceived(b"-WRONGPASS invalid username-password pair\r\n")
        error = self.failureResultOf(d, ServiceError).value
        self.assertEqual(error.kind, "ServiceUnavailable")
        self.assertIn("could not auth: WRONGPASS", error.message)
        self.assertTrue(connection.transport.disconnecting)

    def test_a_call_its_caller_cancelled(self):
        """
        A call made before the connection is up and cancelled by its caller (a
        rate limit's own deadline) after it was sent is not answered again:
        neither by its late reply, which still keeps the next call's reply in
        step, nor by the connection's loss.
        """
        connecting = []

        class LaterEndpoint:
            """Connects when the test says so."""

            def connect(self, factory):
                d = Deferred()
                connecting.append((factory, d))
                return d

        connector = self.connector(pool_size=1)
        connector.endpoint = lambda: LaterEndpoint()
        given_up = connector.command(["GET", "slow"])
        lost = connector.command(["GET", "lost"])
        [(factory, d)] = connecting
        connection = factory.buildProtocol(None)
        connection.makeConnection(CountingTransport())
        d.callback(connection)
        self.clock.advance(0)
        self.assertIn(b"slow", connection.transport.value())
        given_up.cancel()
        lost.cancel()
        self.failureResultOf(given_up)
        self.failureResultOf(lost)
        later = connector.call("get", {"key": "next"})
        self.clock.advance(0)
        connection.dataReceived(b"$4\r\nlate\r\n$4\r\nlost\r\n$4\r\nmine\r\n")
        self.assertEqual(self.successResultOf(later), "mine")
        again = connector.command(["GET", "again"])
        self.clock.advance(0)
        again.cancel()
        self.failureResultOf(again)
        connection.connectionLost(Failure(ConnectionResetError("reset by peer")))
