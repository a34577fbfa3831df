"""
Integration tests of the Redis connector through
L{ServiceRegistry.call_handler}: the machine's real Redis (127.0.0.1:6379),
every key under a prefix of the test's own, deleted in cleanup; and a tiny
fake Redis server on 127.0.0.1 port 0 that the tests stop and restart to
watch the connector fail fast and recover.

The connector runs on the reactor it is given; these tests give it the
global one (real sockets).
"""

import socket
import uuid

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial import unittest

from edgegw_tx.services.errors import ServiceError
from edgegw_tx.services.redis import convert_reply
from edgegw_tx.services.registry import ServiceRegistry

REDIS = {"host": "127.0.0.1", "port": 6379}


def _redis_available():
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as s:
            s.sendall(b"PING\r\n")
            if not s.recv(16).startswith(b"+PONG"):
                return "it did not answer PING"
    except OSError as e:
        return str(e)
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_UNAVAILABLE = _redis_available()


class RedisTestCase(unittest.TestCase):
    call_timeout = 2.0
    config = REDIS

    def setUp(self):
        self.registry = ServiceRegistry(self.mktemp(), call_timeout=self.call_timeout,
                                        reactor=reactor)
        self.addCleanup(self.registry.close)
        self.handler = self.registry.call_handler("e1")

    def configure(self, service_id="r1", pool="cache", **config):
        self.registry.configure({"id": service_id, "name": pool, "service_type": "redis",
                                 "config": dict(self.config, **config)})
        self.registry.bind("e1", pool, service_id)

    def call(self, action, pool="cache", **args):
        return self.handler({"type": "call", "id": 1, "request": "r", "service": "redis",
                             "pool": pool, "action": action, "args": args})

    @inlineCallbacks
    def ok(self, action, **args):
        result = yield self.call(action, **args)
        self.assertTrue(result["ok"], result)
        return result["data"]

    @inlineCallbacks
    def error(self, action, **args):
        result = yield self.call(action, **args)
        self.assertFalse(result["ok"], result)
        return result["error"]


class ActionIntegrationTests(RedisTestCase):
    if _UNAVAILABLE:
        skip = f"no Redis at 127.0.0.1:6379: {_UNAVAILABLE}"

    def setUp(self):
        super().setUp()
        self.configure(pool_size=2)
        self.prefix = f"edgegw:test:{uuid.uuid4().hex[:12]}:"
        self.addCleanup(self._delete_keys)

    @inlineCallbacks
    def _delete_keys(self):
        keys = yield self.ok("command", args=["KEYS", self.prefix + "*"])
        if keys:
            yield self.ok("del", keys=keys)

    def k(self, name):
        return self.prefix + name

    @inlineCallbacks
    def test_get_set(self):
        """set then get returns the string; numbers stay strings; missing is null."""
        self.assertIs((yield self.ok("set", key=self.k("a"), value="hello")), True)
        self.assertEqual((yield self.ok("get", key=self.k("a"))), "hello")
        yield self.ok("set", key=self.k("n"), value="12")
        self.assertEqual((yield self.ok("get", key=self.k("n"))), "12")
        yield self.ok("set", key=self.k("u"), value="ünïcødé ✓")
        self.assertEqual((yield self.ok("get", key=self.k("u"))), "ünïcødé ✓")
        self.assertIsNone((yield self.ok("get", key=self.k("missing"))))

    @inlineCallbacks
    def test_setex_expire_exists(self):
        """setex sets a TTL; expire says whether the key exists; exists is a bool."""
        self.assertIs((yield self.ok("setex", key=self.k("t"), seconds=100, value="v")), True)
        ttl = yield self.ok("command", args=["TTL", self.k("t")])
        self.assertTrue(0 < ttl <= 100, ttl)
        self.assertIs((yield self.ok("exists", key=self.k("t"))), True)
        self.assertIs((yield self.ok("exists", key=self.k("none"))), False)
        self.assertIs((yield self.ok("expire", key=self.k("t"), seconds=50)), True)
        self.assertIs((yield self.ok("expire", key=self.k("none"), seconds=50)), False)

    @inlineCallbacks
    def test_incr_del(self):
        """incr returns the new number; del returns how many keys it removed."""
        self.assertEqual((yield self.ok("incr", key=self.k("c"))), 1)
        self.assertEqual((yield self.ok("incr", key=self.k("c"))), 2)
        self.assertEqual((yield self.ok("get", key=self.k("c"))), "2")
        yield self.ok("set", key=self.k("d"), value="x")
        self.assertEqual((yield self.ok("del", keys=[self.k("c"), self.k("d"), self.k("z")])), 2)

    @inlineCallbacks
    def test_command(self):
        """command runs any command; replies become JSON (lists, numbers, null)."""
        h = self.k("h")
        self.assertEqual((yield self.ok("command", args=["HSET", h, "f", "1", "g", "2"])), 2)
        self.assertEqual(sorted((yield self.ok("command", args=["HGETALL", h]))),
                         ["1", "2", "f", "g"])
        self.assertEqual((yield self.ok("command", args=["HMGET", h, "f", "nope"])), ["1", None])
        yield self.ok("command", args=["RPUSH", self.k("l"), "a", "b"])
        self.assertEqual((yield self.ok("command", args=["LRANGE", self.k("l"), "0", "-1"])),
                         ["a", "b"])
        self.assertEqual((yield self.ok("command", args=["PING"])), "PONG")
        self.assertEqual((yield self.ok("command", args=["ping", "x"])), "x")

    @inlineCallbacks
    def test_redis_errors(self):
        """Error replies are RedisError with Redis's message; the connection lives on."""
        yield self.ok("set", key=self.k("s"), value="abc")
        error = yield self.error("incr", key=self.k("s"))
        self.assertEqual(error["kind"], "RedisError")
        self.assertIn("not an integer", error["message"])
        yield self.ok("command", args=["RPUSH", self.k("list"), "x"])
        error = yield self.error("get", key=self.k("list"))
        self.assertIn("WRONGTYPE", error["message"])
        error = yield self.error("command", args=["NOSUCHCOMMAND"])
        self.assertEqual(error["kind"], "RedisError")
        self.assertIn("unknown command", error["message"])
        self.assertEqual((yield self.ok("get", key=self.k("s"))), "abc")

    @inlineCallbacks
    def test_refused_commands(self):
        """Commands that block or change a shared connection are BadRequest."""
        for argv in (["SUBSCRIBE", "x"], ["blpop", "x", "0"], ["SELECT", "1"], ["MULTI"],
                     ["XREAD", "BLOCK", "0", "STREAMS", "s", "$"], ["CLIENT", "REPLY", "OFF"],
                     ["MONITOR"], ["QUIT"]):
            error = yield self.error("command", args=argv)
            self.assertEqual(error["kind"], "BadRequest", argv)
            self.assertIn("not allowed", error["message"])
        self.assertEqual((yield self.ok("command", args=["CLIENT", "ID"])) > 0, True)

    @inlineCallbacks
    def test_bad_args(self):
        """Missing or ill-typed arguments are BadRequest naming them."""
        cases = [
            ("get", {}, "redis get: missing argument 'key'"),
            ("set", {"key": "k", "value": 5},
             "redis set: argument 'value' must be a string, not an integer"),
            ("setex", {"key": "k", "seconds": "10", "value": "v"},
             "redis setex: argument 'seconds' must be an integer, not a string"),
            ("setex", {"key": "k", "seconds": 0, "value": "v"},
             "redis setex: argument 'seconds' must be at least 1, not 0"),
            ("del", {"keys": []}, "redis del: argument 'keys' must not be an empty list"),
            ("del", {"keys": ["a", 1]},
             "redis del: argument 'keys' must be a list of strings; item 1 is an integer"),
            ("command", {"args": "GET k"},
             "redis command: argument 'args' must be a list, not a string"),
        ]
        for action, args, message in cases:
            error = yield self.error(action, **args)
            self.assertEqual(error, {"kind": "BadRequest", "message": message})

    @inlineCallbacks
    def test_many_in_flight(self):
        """Many calls at once all complete (pipelined over the pool)."""
        results = yield gatherResults(
            [self.call("incr", key=self.k("many")) for _ in range(200)])
        self.assertTrue(all(r["ok"] for r in results))
        self.assertEqual(sorted(r["data"] for r in results), list(range(1, 201)))

    @inlineCallbacks
    def test_test(self):
        """test() of the real server fires with a latency."""
        result = yield self.registry.test({"id": "t", "name": "t", "service_type": "redis",
                                           "config": REDIS})
        self.assertIsInstance(result["latency_ms"], float)

    @inlineCallbacks
    def test_test_failures(self):
        """test() fails with the server's message: refused credentials, bad database."""
        for config, text in ((dict(REDIS, password="wrong"), "could not auth"),
                             (dict(REDIS, database=999999), "could not set dbid")):
            try:
                yield self.registry.test({"id": "t", "name": "t", "service_type": "redis",
                                          "config": config})
            except ServiceError as e:
                self.assertEqual(e.kind, "ServiceUnavailable")
                self.assertIn(text, e.message)
            else:
                self.fail(f"test() succeeded with {config}")


class UnreachableIntegrationTests(RedisTestCase):
    call_timeout = 0.5

    @inlineCallbacks
    def test_unreachable(self):
        """Nothing listening: each call answers ServiceUnavailable within the timeout."""
        port = _free_port()
        self.configure(port=port)
        for _ in range(2):
            started = reactor.seconds()
            error = yield self.error("get", key="k")
            elapsed = reactor.seconds() - started
            self.assertEqual(error["kind"], "ServiceUnavailable")
            self.assertIn("did not answer within 0.5s", error["message"])
            self.assertIn("refused", error["message"])
            self.assertLess(elapsed, 1.0)

    @inlineCallbacks
    def test_test_refused(self):
        """test() against nothing fails at once with the connection error."""
        try:
            yield self.registry.test({"id": "t", "name": "t", "service_type": "redis",
                                      "config": dict(REDIS, port=_free_port())})
        except ServiceError as e:
            self.assertEqual(e.kind, "ServiceUnavailable")
            self.assertIn("refused", e.message)
        else:
            self.fail("test() succeeded against a closed port")


class FakeRedis(Protocol):
    """Enough RESP for PING, GET, SET and SELECT."""

    def connectionMade(self):
        self.buffer = b""
        self.factory.clients.add(self)

    def connectionLost(self, reason):
        self.factory.clients.discard(self)

    def dataReceived(self, data):
        self.buffer += data
        while True:
            command = self._parse()
            if command is None:
                return
            self.transport.write(self._answer(command))

    def _parse(self):
        if not self.buffer.startswith(b"*") or b"\r\n" not in self.buffer:
            return None
        header, rest = self.buffer.split(b"\r\n", 1)
        args = []
        for _ in range(int(header[1:])):
            if b"\r\n" not in rest:
                return None
            length, rest = rest.split(b"\r\n", 1)
            size = int(length[1:])
            if len(rest) < size + 2:
                return None
            args.append(rest[:size])
            rest = rest[size + 2:]
        self.buffer = rest
        return args

    def _answer(self, command):
        name = command[0].upper()
        store = self.factory.store
        if name == b"PING":
            return b"+PONG\r\n"
        if name == b"SELECT":
            return b"+OK\r\n"
        if name == b"AUTH":
            if self.factory.auth_ok:
                return b"+OK\r\n"
            return b"-WRONGPASS invalid username-password pair\r\n"
        if name == b"SET":
            store[command[1]] = command[2]
            return b"+OK\r\n"
        if name == b"GET":
            value = store.get(command[1])
            if value is None:
                return b"$-1\r\n"
            return b"$%d\r\n%s\r\n" % (len(value), value)
        return b"-ERR unknown command\r\n"


class FakeRedisServer:
    def __init__(self):
        self.factory = Factory.forProtocol(FakeRedis)
        self.factory.clients = set()
        self.factory.store = {}
        self.factory.auth_ok = True
        self.listening = None
        self.port = 0

    def start(self):
        self.listening = reactor.listenTCP(self.port, self.factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port

    def stop(self):
        for client in list(self.factory.clients):
            client.transport.abortConnection()
        listening, self.listening = self.listening, None
        if listening is not None:
            return listening.stopListening()


class RecoveryIntegrationTests(RedisTestCase):
    call_timeout = 0.5

    def setUp(self):
        super().setUp()
        self.server = FakeRedisServer()
        self.server.start()
        self.addCleanup(self.server.stop)
        self.configure(port=self.server.port, pool_size=2)

    @inlineCallbacks
    def test_down_then_back(self):
        """
        With the server gone a call answers ServiceUnavailable within the
        timeout; once it listens again on the same port, calls succeed without
        reconfiguring anything.
        """
        yield self.ok("set", key="k", value="before")
        self.assertEqual((yield self.ok("get", key="k")), "before")

        yield self.server.stop()
        started = reactor.seconds()
        error = yield self.error("get", key="k")
        self.assertEqual(error["kind"], "ServiceUnavailable")
        self.assertLess(reactor.seconds() - started, 1.0)

        self.server.start()
        deadline = reactor.seconds() + 6
        while True:
            result = yield self.call("get", key="k")
            if result["ok"] or reactor.seconds() > deadline:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(result, {"ok": True, "data": "before"})


class AuthRecoveryIntegrationTests(RedisTestCase):
    call_timeout = 0.5

    def setUp(self):
        super().setUp()
        self.server = FakeRedisServer()
        self.server.factory.auth_ok = False
        self.server.start()
        self.addCleanup(self.server.stop)
        self.configure(port=self.server.port, pool_size=1, password="pw")
        self.registry._services["r1"].connector.retry_max_delay = 0.2

    @inlineCallbacks
    def test_refused_then_accepted(self):
        """
        Refused credentials answer ServiceUnavailable with the server's
        message; the connections keep retrying, and calls succeed once the
        server accepts them.
        """
        error = yield self.error("get", key="k")
        self.assertEqual(error["kind"], "ServiceUnavailable")
        self.assertIn("WRONGPASS", error["message"])
        self.server.factory.auth_ok = True
        deadline = reactor.seconds() + 5
        while True:
            result = yield self.call("get", key="k")
            if result["ok"] or reactor.seconds() > deadline:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(result, {"ok": True, "data": None})


class ConvertReplyTests(unittest.TestCase):
    def test_convert(self):
        """Replies become JSON: bytes decoded (invalid UTF-8 replaced), nested lists, errors as text."""
        self.assertEqual(convert_reply([b"a\xff", 1, None, [b"x"], "s"]),
                         ["a\ufffd", 1, None, ["x"], "s"])
        self.assertEqual(convert_reply(ValueError("boom")), "boom")
