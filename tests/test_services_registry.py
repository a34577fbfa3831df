"""
Tests for L{edgegw_tx.services.registry}: the broker's rules (bindings at call
time, kinds, malformed calls, timeouts, internal errors) on a L{Clock} with
fake connectors, and the connector lifecycle (configure, replace, remove,
test, close).
"""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.services.config import ConfigError
from edgegw_tx.services.errors import ServiceError
from edgegw_tx.services.registry import ServiceRegistry


class FakeConnector:
    """Records calls; answers with what the test queued, or a pending Deferred."""

    instances = []

    def __init__(self, config, *, name, call_timeout, reactor, data_dir=None, probe=False,
                 service_type=None):
        self.config = config
        self.name = name
        self.service_type = service_type
        self.probe = probe
        self.calls = []
        self.pending = []
        self.answer = None
        self.closed = False
        self.close_result = succeed(None)
        self.ping_result = None
        FakeConnector.instances.append(self)

    def call(self, action, args):
        self.calls.append((action, args))
        if isinstance(self.answer, BaseException):
            raise self.answer
        if self.answer is not None:
            return self.answer(action, args)
        d = Deferred(lambda d: self.pending.remove(d))
        self.pending.append(d)
        return d

    def ping(self):
        if self.ping_result is None:
            return Deferred()
        return self.ping_result

    def close(self):
        self.closed = True
        return self.close_result


def fake(service_type):
    def make(config, **kwargs):
        return FakeConnector(config, service_type=service_type, **kwargs)

    return make


SQLITE = {"id": "s1", "name": "notes", "service_type": "sqlite", "config": {}}
REDIS = {"id": "r1", "name": "cache", "service_type": "redis", "config": {"host": "h"}}
STORAGE = {"id": "f1", "name": "files", "service_type": "storage", "config": {}}


def frame(service="db", pool="main", action="query", args=None, **extra):
    f = {"type": "call", "id": 1, "request": "req-1", "service": service,
         "pool": pool, "action": action, "args": {"sql": "SELECT 1"} if args is None else args}
    f.update(extra)
    return f


class RegistryTestCase(unittest.TestCase):
    def setUp(self):
        FakeConnector.instances = []
        self.clock = Clock()
        self.registry = ServiceRegistry(self.mktemp(), call_timeout=2.0, reactor=self.clock)
        self.registry.connector_types = {t: fake(t) for t in ("sqlite", "postgres", "redis", "storage")}

    def connector(self, service_id):
        return self.registry._services[service_id].connector

    def answer(self, handler, f):
        return self.successResultOf(handler(f))


class CallTests(RegistryTestCase):
    def setUp(self):
        super().setUp()
        for record in (SQLITE, REDIS, STORAGE):
            self.registry.configure(record)
        self.handler = self.registry.call_handler("e1")

    def test_unbound(self):
        """A pool name the endpoint did not bind: ServiceUnavailable, exact message."""
        self.assertEqual(
            self.answer(self.handler, frame(pool="x")),
            {"ok": False, "error": {"kind": "ServiceUnavailable",
                                    "message": "no service bound as 'x'"}},
        )

    def test_success(self):
        """A bound call reaches its connector with action and args; data is relayed."""
        self.registry.bind("e1", "main", "s1")
        self.connector("s1").answer = lambda action, args: succeed({"rows": []})
        self.assertEqual(self.answer(self.handler, frame()), {"ok": True, "data": {"rows": []}})
        self.assertEqual(self.connector("s1").calls, [("query", {"sql": "SELECT 1"})])

    def test_bindings_resolved_at_call_time(self):
        """A handler made before bind/rebind/unbind follows the bindings of the moment."""
        handler = self.registry.call_handler("e1")
        self.assertFalse(self.answer(handler, frame())["ok"])
        self.registry.bind("e1", "main", "s1")
        self.connector("s1").answer = lambda a, b: succeed("one")
        self.assertEqual(self.answer(handler, frame())["data"], "one")
        self.registry.configure({"id": "s2", "name": "other", "service_type": "sqlite",
                                 "config": {}})
        self.connector("s2").answer = lambda a, b: succeed("two")
        self.registry.bind("e1", "main", "s2")
        self.assertEqual(self.answer(handler, frame())["data"], "two")
        self.registry.unbind("e1", "main")
        self.assertEqual(self.answer(handler, frame())["error"]["message"],
                         "no service bound as 'main'")

    def test_bindings_per_endpoint(self):
        """Bindings belong to one endpoint; bindings() returns a copy."""
        self.registry.bind("e1", "main", "s1")
        self.registry.bind("e1", "cache", "r1")
        self.assertEqual(self.registry.bindings("e1"), {"main": "s1", "cache": "r1"})
        self.assertEqual(self.registry.bindings("e2"), {})
        self.registry.bindings("e1")["x"] = "y"
        self.assertNotIn("x", self.registry.bindings("e1"))
        other = self.registry.call_handler("e2")
        self.assertEqual(self.answer(other, frame())["error"]["kind"], "ServiceUnavailable")
        self.registry.unbind("e2", "nothing")

    def test_kind_mismatch(self):
        """Calling a redis binding as db is a BadRequest saying what it is."""
        self.registry.bind("e1", "main", "r1")
        error = self.answer(self.handler, frame())["error"]
        self.assertEqual(error["kind"], "BadRequest")
        self.assertIn("redis service", error["message"])
        self.assertEqual(self.connector("r1").calls, [])

    def test_each_kind(self):
        """db reaches sqlite, redis reaches redis, storage reaches storage."""
        for pool, service_id, kind, action in (("d", "s1", "db", "execute"),
                                               ("r", "r1", "redis", "get"),
                                               ("s", "f1", "storage", "list")):
            self.registry.bind("e1", pool, service_id)
            self.connector(service_id).answer = lambda a, b: succeed(None)
            result = self.answer(self.handler, frame(service=kind, pool=pool, action=action,
                                                     args={}))
            self.assertTrue(result["ok"], (kind, result))

    def test_malformed(self):
        """Unknown service or action, args not an object, no pool: BadRequest naming it."""
        self.registry.bind("e1", "main", "s1")
        cases = [
            (frame(service="mongo"), "unknown service 'mongo'"),
            (frame(action="drop"), "unknown db action 'drop'"),
            (frame(args=[1]), "args must be an object"),
            (frame(pool=None), "no pool name"),
            (frame(service="redis", action="query"), "unknown redis action 'query'"),
        ]
        for f, text in cases:
            result = self.answer(self.handler, f)
            self.assertEqual(result["error"]["kind"], "BadRequest", f)
            self.assertIn(text, result["error"]["message"])
        self.assertEqual(self.connector("s1").calls, [])

    def test_not_a_dict(self):
        """A frame that is not an object is a BadRequest, not an exception."""
        self.assertEqual(self.answer(self.handler, ["call"])["error"]["kind"], "BadRequest")

    def test_missing_args_default_empty(self):
        """A call without args passes an empty object to the connector."""
        self.registry.bind("e1", "main", "s1")
        self.connector("s1").answer = lambda a, b: succeed(b)
        f = frame()
        del f["args"]
        self.assertEqual(self.answer(self.handler, f), {"ok": True, "data": {}})

    def test_connector_service_error(self):
        """A ServiceError raised or failed by the connector becomes the error."""
        self.registry.bind("e1", "main", "s1")
        self.connector("s1").answer = ServiceError("BadRequest", "db query: missing argument 'sql'")
        self.assertEqual(self.answer(self.handler, frame())["error"],
                         {"kind": "BadRequest", "message": "db query: missing argument 'sql'"})
        self.connector("s1").answer = lambda a, b: fail(ServiceError("DatabaseError", "boom"))
        self.assertEqual(self.answer(self.handler, frame())["error"],
                         {"kind": "DatabaseError", "message": "boom"})

    def test_internal(self):
        """An unexpected exception is logged and answered Internal, never raised."""
        self.registry.bind("e1", "main", "s1")
        self.connector("s1").answer = ZeroDivisionError("oops")
        result = self.answer(self.handler, frame())
        self.assertEqual(result["error"]["kind"], "Internal")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.connector("s1").answer = lambda a, b: fail(KeyError("k"))
        self.assertEqual(self.answer(self.handler, frame())["error"]["kind"], "Internal")
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_timeout(self):
        """A call not answered within call_timeout: ServiceUnavailable, call cancelled."""
        self.registry.bind("e1", "main", "s1")
        d = self.handler(frame())
        self.assertNoResult(d)
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(
            self.successResultOf(d)["error"],
            {"kind": "ServiceUnavailable",
             "message": "the sqlite service 'notes' did not answer within 2s"},
        )
        self.assertEqual(self.connector("s1").pending, [])

    def test_timeout_reason(self):
        """The connector's last connection error is added to the timeout message."""
        self.registry.bind("e1", "c", "r1")
        self.connector("r1").unavailable_reason = lambda: "Connection refused"
        d = self.handler(frame(service="redis", pool="c", action="get", args={"key": "k"}))
        self.clock.advance(2)
        self.assertIn("(Connection refused)", self.successResultOf(d)["error"]["message"])

    def test_slow_call_does_not_block(self):
        """One call waiting on a slow backend does not hold up another."""
        self.registry.bind("e1", "main", "s1")
        self.registry.bind("e1", "c", "r1")
        slow = self.handler(frame())
        self.connector("r1").answer = lambda a, b: succeed("v")
        fast = self.handler(frame(service="redis", pool="c", action="get", args={"key": "k"}))
        self.assertEqual(self.successResultOf(fast)["data"], "v")
        self.assertNoResult(slow)
        self.connector("s1").pending[0].callback("late")
        self.assertEqual(self.successResultOf(slow)["data"], "late")

    def test_removed_service(self):
        """A binding to a removed service answers ServiceUnavailable."""
        self.registry.bind("e1", "main", "s1")
        self.successResultOf(self.registry.remove("s1"))
        error = self.answer(self.handler, frame())["error"]
        self.assertEqual(error["kind"], "ServiceUnavailable")
        self.assertIn("not configured", error["message"])


class LifecycleTests(RegistryTestCase):
    def test_configure_validates(self):
        """configure raises ConfigError for a bad config and keeps the old connector."""
        self.registry.configure(REDIS)
        old = self.connector("r1")
        self.assertRaises(ConfigError, self.registry.configure,
                          dict(REDIS, config={"host": "h", "port": "x"}))
        self.assertIs(self.connector("r1"), old)
        self.assertEqual(old.config["port"], 6379)

    def test_configure_same_keeps(self):
        """configure with an equivalent config keeps the connector (and its connections)."""
        self.registry.configure(REDIS)
        old = self.connector("r1")
        self.registry.configure(dict(REDIS, config={"host": "h", "port": 6379}))
        self.assertIs(self.connector("r1"), old)
        self.assertFalse(old.closed)

    def test_configure_replaces(self):
        """configure with a new config makes a new connector and closes the old one."""
        self.registry.configure(REDIS)
        old = self.connector("r1")
        self.registry.configure(dict(REDIS, config={"host": "other"}))
        self.assertIsNot(self.connector("r1"), old)
        self.assertTrue(old.closed)
        self.assertEqual(self.connector("r1").config["host"], "other")

    def test_configure_normalises(self):
        """Connectors get the normalised config; sqlite and storage get the data dir."""
        self.registry.configure(SQLITE)
        self.assertEqual(self.connector("s1").config,
                         {"path": "notes.sqlite3", "create_if_missing": True})

    def test_remove(self):
        """remove closes the connector and forgets the service."""
        self.registry.configure(REDIS)
        connector = self.connector("r1")
        self.successResultOf(self.registry.remove("r1"))
        self.assertTrue(connector.closed)
        self.assertEqual(self.registry.service_ids(), [])
        self.successResultOf(self.registry.remove("unknown"))

    def test_close_waits_for_all(self):
        """close fires once every connector, including replaced ones, is closed."""
        self.registry.configure(REDIS)
        first = self.connector("r1")
        first.close_result = Deferred()
        self.registry.configure(dict(REDIS, config={"host": "other"}))
        self.registry.configure(SQLITE)
        closed = self.registry.close()
        self.assertNoResult(closed)
        self.assertTrue(all(c.closed for c in FakeConnector.instances))
        first.close_result.callback(None)
        self.successResultOf(closed)
        self.assertEqual(self.registry.service_ids(), [])

    def test_close_failure_logged(self):
        """A connector whose close fails is logged; close still fires."""
        self.registry.configure(REDIS)
        self.connector("r1").close_result = fail(OSError("gone"))
        self.successResultOf(self.registry.close())
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class TestTests(RegistryTestCase):
    def test_not_registered(self):
        """test() uses a connector of its own: the service is not configured by it."""
        d = self.registry.test(REDIS)
        self.assertNoResult(d)
        self.assertEqual(self.registry.service_ids(), [])

    def test_result(self):
        """test() fires with latency_ms (rounded) once the fresh connector closed."""
        self.registry.connector_types["redis"] = self.with_ping(succeed(1.23456))
        self.assertEqual(self.successResultOf(self.registry.test(REDIS)), {"latency_ms": 1.235})
        self.assertTrue(FakeConnector.instances[-1].closed)

    def with_ping(self, result):
        def make(config, **kwargs):
            connector = FakeConnector(config, service_type="redis", **kwargs)
            connector.ping_result = result
            return connector

        return make

    def test_failure(self):
        """test() fails with the connector's ServiceError, after closing it."""
        self.registry.connector_types["redis"] = self.with_ping(
            fail(ServiceError("ServiceUnavailable", "could not connect: refused")))
        failure = self.failureResultOf(self.registry.test(REDIS), ServiceError)
        self.assertEqual(failure.value.message, "could not connect: refused")
        self.assertTrue(FakeConnector.instances[-1].closed)

    def test_timeout(self):
        """test() of a backend that never answers fails within call_timeout."""
        d = self.registry.test(REDIS)
        self.clock.advance(2)
        failure = self.failureResultOf(d, ServiceError)
        self.assertEqual(failure.value.kind, "ServiceUnavailable")
        self.assertIn("did not answer the test within 2s", failure.value.message)
        self.assertTrue(FakeConnector.instances[-1].closed)

    def test_bad_config(self):
        """test() of an invalid config fails with ConfigError naming the field."""
        failure = self.failureResultOf(
            self.registry.test(dict(REDIS, config={})), ConfigError)
        self.assertEqual(failure.value.field, "config.host")

    def test_probe_options(self):
        """test() asks for a probe Redis connection and a one-connection postgres pool."""
        self.registry.test(REDIS)
        self.assertTrue(FakeConnector.instances[-1].probe)
        self.registry.test({"service_type": "postgres", "name": "pg",
                            "config": {"host": "h", "database": "d", "username": "u"}})
        self.assertEqual(FakeConnector.instances[-1].config["pool_size"], 1)

    def test_unexpected(self):
        """An unexpected exception in test() is logged and becomes Internal."""
        self.registry.connector_types["redis"] = self.with_ping(fail(ZeroDivisionError()))
        failure = self.failureResultOf(self.registry.test(REDIS), ServiceError)
        self.assertEqual(failure.value.kind, "Internal")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class CallMetricsTests(RegistryTestCase):
    """``registry.calls``: each answered call counted once by (service, kind, outcome) and timed."""

    def setUp(self):
        super().setUp()
        self.registry.configure(SQLITE)
        self.handler = self.registry.call_handler("e1")

    def test_ok_call_counted_and_timed(self):
        """A call answered after 0.25 s adds 1 to (notes, db, ok) and 0.25 s to (notes, db)."""
        self.registry.bind("e1", "main", "s1")
        d = self.handler(frame())
        self.clock.advance(0.25)
        self.connector("s1").pending[0].callback({"rows": []})
        self.successResultOf(d)
        self.assertEqual(self.registry.calls.counts, {("notes", "db", "ok"): 1})
        [(labels, (buckets, seconds))] = self.registry.calls.histograms.items()
        self.assertEqual((labels, sum(buckets), seconds), (("notes", "db"), 1, 0.25))

    def test_errors_by_kind_with_bounded_labels(self):
        """A failed call counts under its error kind; a pool or kind that names nothing is ``""``."""
        self.answer(self.handler, frame(pool="no-such-pool"))
        self.answer(self.handler, frame(service="made-up"))
        self.answer(self.handler, "not a frame")
        self.assertEqual(
            self.registry.calls.counts,
            {("", "db", "ServiceUnavailable"): 1, ("", "", "BadRequest"): 2},
        )
