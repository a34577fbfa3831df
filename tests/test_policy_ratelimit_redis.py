"""
Integration tests of the cluster-scope rate limit (edgegw_tx/policy/ratelimit.py)
against the machine's real Redis (127.0.0.1:6379), through the gateway's own
Redis connector (``RedisConnector.command``, the ``RedisLink`` a data-plane
process gives the limiter); and against a Redis that is not there or never
answers.  Every key a test makes is under its own identity's
``edgegw:rl:<hash>:`` prefix and deleted at cleanup.
"""

import uuid

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from edgegw_tx.policy import ratelimit
from edgegw_tx.policy.part import PolicyContext, PolicyRequest
from edgegw_tx.policy.ratelimit import REDIS_PREFIX, STORE_ERRORS_METRIC, build
from edgegw_tx.services.config import validate_config
from edgegw_tx.services.redis import RedisConnector


class Silent(Protocol):
    """A server that accepts a connection and never answers."""


def request(client_ip="192.0.2.1"):
    """A GET from ``client_ip``."""
    return PolicyRequest(method="GET", path="/", headers={}, client_ip=client_ip)


class ClusterLimitIntegrationTests(unittest.TestCase):
    """Cluster-scope limits counting in the real Redis."""

    config = {"requests": 3, "per_seconds": 60, "scope": "cluster", "redis_service": "cache"}

    def setUp(self):
        self.identity = f"test-{uuid.uuid4()}"
        self.prefix = REDIS_PREFIX + ratelimit.policy_hash(self.config, self.identity) + ":"
        self.counted = []
        self.admin = self.connect()
        self.addCleanup(self.delete_keys)

    def connect(self, port=6379):
        """The gateway's Redis connector for ``port``, closed at cleanup."""
        config = validate_config("redis", {"host": "127.0.0.1", "port": port, "pool_size": 1}, name="cache")
        connector = RedisConnector(config, name="cache", call_timeout=5.0, reactor=reactor)
        self.addCleanup(connector.close)
        return connector

    @inlineCallbacks
    def delete_keys(self):
        """Delete every key this test's limits made."""
        keys = yield self.admin.command(["KEYS", self.prefix + "*"])
        if keys:
            yield self.admin.command(["DEL", *keys])

    def limiter(self, link, **config):
        """A cluster-scope check whose service ``cache`` is ``link``, on the global reactor."""
        context = PolicyContext(seconds=reactor.seconds, reactor=reactor, redis={"cache": link}.get,
                                count=lambda name, labels: self.counted.append((name, labels)))
        return build(dict(self.config, **config), context, self.identity)

    @inlineCallbacks
    def test_nodes_share_one_budget(self):
        """Two limiters with the same identity (two nodes) on their own connections spend one budget."""
        nodes = []
        for _ in range(2):
            nodes.append(self.limiter(self.connect()))
        remaining = []
        for n in range(3):
            extra = []
            verdict = yield nodes[n % 2].check(request(), extra)
            self.assertIsNone(verdict)
            remaining.append(dict(extra)["ratelimit-remaining"])
        self.assertEqual(remaining, ["2", "1", "0"])
        extra = []
        status, headers, _ = yield nodes[1].check(request(), extra)
        self.assertEqual(status, 429)
        self.assertTrue(19 <= int(dict(headers)["retry-after"]) <= 20, headers)
        self.assertEqual(dict(extra)["ratelimit-limit"], "3")
        other = yield nodes[0].check(request("192.0.2.2"), [])
        self.assertIsNone(other)
        self.assertEqual(self.counted, [])

    @inlineCallbacks
    def test_key_expires_with_full_bucket(self):
        """The Redis key is the prefixed client key and expires no later than a full period from now."""
        yield self.limiter(self.admin).check(request(), [])
        key = self.prefix + "a:192.0.2.1"
        ttl = yield self.admin.command(["PTTL", key])
        self.assertTrue(0 < ttl <= 20_000, ttl)
        loaded = yield self.admin.command(["SCRIPT", "EXISTS", ratelimit._SCRIPT_SHA])
        self.assertEqual(loaded, [1])

    @inlineCallbacks
    def test_unreachable_redis_allows_or_denies(self):
        """A Redis that refuses connections: allowed by default, 503 with deny, each counted."""
        listening = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
        port = listening.getHost().port
        yield listening.stopListening()

        class Unreachable:
            def command(self, args):
                """Connect to the closed port (refused) as a client would before sending ``args``."""
                return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Protocol())

        allowed = yield self.limiter(Unreachable()).check(request(), [])
        self.assertIsNone(allowed)
        denied = yield self.limiter(Unreachable(), on_store_error="deny").check(request(), [])
        self.assertEqual(denied[0], 503)
        self.assertEqual([labels["on_store_error"] for _, labels in self.counted], ["allow", "deny"])
        self.assertEqual({name for name, _ in self.counted}, {STORE_ERRORS_METRIC})

    @inlineCallbacks
    def test_silent_redis_times_out(self):
        """A Redis that takes the connection but never answers is a store error after STORE_TIMEOUT."""
        listening = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        connection = self.connect(listening.getHost().port)
        denied = yield self.limiter(connection, on_store_error="deny").check(request(), [])
        self.assertEqual(denied[0], 503)
        self.assertEqual(len(self.counted), 1)
