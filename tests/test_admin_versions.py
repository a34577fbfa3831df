"""
Versions, rollback, deploys with drain, the worker pool's settings and what the
endpoint record shows of its workers: the management API over a real Klein app
and a real SQLite store, with a fake builder (content-addressed like the real
one) and fake pools that log when they start, get the route and stop.
"""

import hashlib
import json

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.usage import UsageError
from twisted.trial import unittest

from edgegw_tx.admin.api import AdminAPI
from edgegw_tx.admin.auth import KeyRing
from edgegw_tx.admin.logs import LogBook
from edgegw_tx.admin.manager import EndpointManager
from edgegw_tx.store.sqlite import SCHEMA_VERSION
from edgegw_tx.build.cargo import CompileFailed
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.runtime import pool_options
from edgegw_tx.tap import Options
from tests.support.fakes import SynchronousReactor, make_store

CODE = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"version": "%s"}))
}

handler_loop!(handle);
"""


def code(version):
    return CODE % version


class BuildResult:
    def __init__(self, digest, cached):
        self.digest = digest
        self.cached = cached
        self.seconds = 0.001 if cached else 1.5
        self.dependencies = ["serde", "serde_json"]
        self.binary = "/artifacts/" + digest + "/handler"


class ContentBuilder:
    """Like the real builder: the digest is a sha256 of the inputs, a binary once built is cached."""

    def __init__(self):
        self.stored = set()
        self.removed = []

    @staticmethod
    def digest(source, dependencies=None):
        blob = json.dumps([source, dependencies or {}], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def build(self, endpoint_id, source, extra_dependencies=None):
        digest = self.digest(source, extra_dependencies)
        cached = digest in self.stored
        self.stored.add(digest)
        return succeed(BuildResult(digest, cached))

    def artifact(self, digest):
        return "/artifacts/" + digest + "/handler" if digest in self.stored else None

    def fetch(self, digest):
        """One gateway: no shared store to fetch a binary from."""
        return succeed(None)

    def remove_artifact(self, digest):
        self.removed.append(digest)
        self.stored.discard(digest)
        return succeed(True)


class EventRoutes(RouteTable):
    """A route table that logs which version each route switch points at."""

    def __init__(self, events):
        super().__init__()
        self.events = events

    def place(self, key, routes, target):
        self.events.append(("route", target.version))
        return super().place(key, routes, target)


class LoggingPool:
    """A fake pool that logs start, ready and stop; ``fail_next``/``hold_stop`` script it."""

    events = []
    made = []
    fail_next = None  # an exception: the next pool's start fails with it
    hold_stop = False  # stop() answers a Deferred the test fires (a drain in progress)
    next_pid = 100

    def __init__(self, record, binary, log, version=None):
        self.name = record["name"]
        self.binary = binary
        self.version = version
        self.options = pool_options(record["settings"])
        self.pids = []
        self.stopping = None
        self.queued = 0
        LoggingPool.made.append(self)

    def start(self):
        LoggingPool.events.append(("start", self.version))
        error, LoggingPool.fail_next = LoggingPool.fail_next, None
        if error is not None:
            return fail(error)
        LoggingPool.next_pid += 1
        self.pids = [LoggingPool.next_pid]
        LoggingPool.events.append(("ready", self.version))
        return succeed(self.pids)

    def stop(self):
        LoggingPool.events.append(("stop", self.version))
        if LoggingPool.hold_stop:
            self.stopping = Deferred()
            return self.stopping
        self.pids = []
        return succeed(None)

    def request(self, frame):
        return Deferred()

    def workers(self):
        state = "draining" if self.stopping is not None else "ready"
        return [
            {"pid": pid, "version": self.version, "state": state, "served": 3, "in_flight": 0}
            for pid in self.pids
        ]

    def stats(self):
        return {"name": self.name, "workers": len(self.pids), "queued": self.queued}


class VersionsTestCase(unittest.TestCase):
    keep_versions = 10

    def setUp(self):
        LoggingPool.events = []
        LoggingPool.made = []
        LoggingPool.fail_next = None
        LoggingPool.hold_stop = False
        self.reactor = SynchronousReactor()
        self.reactor.advance(1_000_000)
        self.store = make_store(self, self.reactor)
        self.keys = KeyRing(self.store, reactor=self.reactor)
        self.successResultOf(self.keys.load())
        _, self.key = self.successResultOf(self.keys.create("test", "admin"))
        self.builder = ContentBuilder()
        self.routes = EventRoutes(LoggingPool.events)
        self.manager = EndpointManager(
            self.store,
            self.builder,
            self.routes,
            LoggingPool,
            LogBook(self.reactor),
            keep_versions=self.keep_versions,
            reactor=self.reactor,
        )
        self.client = StubTreq(AdminAPI(self.manager, self.keys, self.reactor).resource())

    def send(self, method, path, body=None):
        """Start a call; fires with (status, document) once it is answered."""
        headers = {"Authorization": "Bearer " + self.key}
        data = json.dumps(body).encode() if body is not None else None
        d = self.client.request(method, "http://admin/api" + path, headers=headers, data=data)
        self.client.flush()

        def read(response):
            content = response.content()
            content.addCallback(lambda raw: (response.code, json.loads(raw)))
            return content

        return d.addCallback(read)

    def call(self, method, path, body=None):
        return self.successResultOf(self.send(method, path, body))

    def ok(self, method, path, body=None, status=200):
        code_, document = self.call(method, path, body)
        self.assertEqual(code_, status, document)
        return document["data"]

    def create(self, version="A", name="hello", path="/hello", **more):
        body = {"name": name, "path": path, "method": "GET", "code": code(version)}
        body.update(more)
        return self.ok("POST", "/endpoints", body, status=201)

    def compile(self, endpoint_id, version=None):
        """PUT the code of ``version`` (if given), compile; returns the digest."""
        if version is not None:
            self.ok("PUT", "/endpoints/" + endpoint_id, {"code": code(version)})
        return self.ok("POST", "/endpoints/%s/compile" % endpoint_id)["build"]["digest"]

    def versions(self, endpoint_id):
        return self.ok("GET", "/endpoints/%s/versions" % endpoint_id)["items"]

    def serving(self):
        """The version the route of /hello points at."""
        return self.routes.match("example.com", "GET", "/hello").target.version

    def digest(self, version):
        return ContentBuilder.digest(code(version))


class VersionListTests(VersionsTestCase):
    def test_compiles_are_listed_newest_first(self):
        """Each successful compile is a version: digest, short, code, dependencies, time, newest first."""
        endpoint = self.create("A", settings={"dependencies": {"anyhow": "1"}})
        a = self.compile(endpoint["id"])
        b = self.compile(endpoint["id"], "B")
        items = self.versions(endpoint["id"])
        self.assertEqual([v["digest"] for v in items], [b, a])
        self.assertEqual(items[1]["code"], code("A"))
        self.assertEqual(items[1]["short"], a[:12])
        self.assertEqual(items[1]["dependencies"], {"anyhow": "1"})
        self.assertEqual(items[1]["compile_seconds"], 1.5)
        self.assertEqual(items[1]["endpoint_id"], endpoint["id"])
        self.assertIn("T", items[1]["created_at"])
        self.assertEqual([v["available"] for v in items], [True, True])

    def test_failed_compile_records_no_version(self):
        """Code that does not compile leaves the version list as it was."""
        endpoint = self.create("A")
        self.compile(endpoint["id"])
        self.builder.build = lambda *args, **kwargs: fail(
            CompileFailed([{"level": "error", "message": "nope", "line": 1, "column": 1, "rendered": "nope"}])
        )
        self.ok("PUT", "/endpoints/" + endpoint["id"], {"code": code("broken")})
        self.assertEqual(self.call("POST", "/endpoints/%s/compile" % endpoint["id"])[0], 422)
        self.assertEqual(len(self.versions(endpoint["id"])), 1)

    def test_live_and_current_flags(self):
        """live marks the deployed version, current the build of the current code; they part after a compile."""
        endpoint = self.create("A")
        a = self.compile(endpoint["id"])
        self.assertEqual(
            [(v["live"], v["current"]) for v in self.versions(endpoint["id"])], [(False, True)]
        )
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        b = self.compile(endpoint["id"], "B")
        flags = {v["digest"]: (v["live"], v["current"]) for v in self.versions(endpoint["id"])}
        self.assertEqual(flags, {a: (True, False), b: (False, True)})
        self.ok("POST", "/endpoints/%s/restart" % endpoint["id"])
        flags = {v["digest"]: (v["live"], v["current"]) for v in self.versions(endpoint["id"])}
        self.assertEqual(flags, {a: (False, False), b: (True, True)})

    def test_compiling_the_same_code_again_refreshes(self):
        """The same code compiled again is one version, moved to the top, keeping its compile time."""
        endpoint = self.create("A")
        a = self.compile(endpoint["id"])
        b = self.compile(endpoint["id"], "B")
        again = self.compile(endpoint["id"], "A")
        self.assertEqual(again, a)
        items = self.versions(endpoint["id"])
        self.assertEqual([v["digest"] for v in items], [a, b])
        self.assertEqual(items[0]["compile_seconds"], 1.5)

    def test_versions_of_an_unknown_endpoint_are_404(self):
        """GET .../versions of an unknown id answers 404."""
        self.assertEqual(self.call("GET", "/endpoints/nope/versions")[0], 404)

    def test_versions_are_paged(self):
        """The list pages like the others: limit and page, with total."""
        endpoint = self.create("A")
        for version in "BCD":
            self.compile(endpoint["id"], version)
        data = self.ok("GET", "/endpoints/%s/versions?limit=2&page=2" % endpoint["id"])
        self.assertEqual((data["total"], data["pages"], len(data["items"])), (3, 2, 1))


class RetentionTests(VersionsTestCase):
    keep_versions = 2

    def test_oldest_versions_and_their_binaries_are_pruned(self):
        """Beyond keep_versions, the oldest version rows go and so do their unused binaries."""
        endpoint = self.create("A")
        digests = [self.compile(endpoint["id"], v) for v in "ABCD"]
        self.assertEqual([v["digest"] for v in self.versions(endpoint["id"])], digests[:1:-1])
        self.assertEqual(self.builder.removed, digests[:2])

    def test_the_live_version_is_never_pruned(self):
        """The deployed version stays listed and its binary stays, however old it gets."""
        endpoint = self.create("A")
        a = self.compile(endpoint["id"])
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        digests = [self.compile(endpoint["id"], v) for v in "BCD"]
        items = self.versions(endpoint["id"])
        self.assertEqual([v["digest"] for v in items], [digests[2], digests[1], a])
        self.assertEqual([v["live"] for v in items], [False, False, True])
        self.assertEqual(self.builder.removed, [digests[0]])
        self.assertIsNotNone(self.builder.artifact(a))

    def test_a_digest_another_endpoint_uses_is_kept(self):
        """An artifact shared with another endpoint's kept version stays; it goes once nobody has it."""
        one = self.create("A")
        two = self.create("A", name="two", path="/two")
        a = self.compile(one["id"])
        self.assertEqual(self.compile(two["id"]), a)
        for version in "BC":
            self.compile(one["id"], version)
        self.assertNotIn(a, [v["digest"] for v in self.versions(one["id"])])
        self.assertEqual(self.builder.removed, [])
        self.assertIsNotNone(self.builder.artifact(a))
        for version in "DE":
            self.compile(two["id"], version)
        self.assertEqual(self.builder.removed, [a])

    def test_delete_removes_binaries_nobody_else_uses(self):
        """Deleting an endpoint removes its versions' binaries, except those another endpoint uses."""
        one = self.create("A")
        two = self.create("A", name="two", path="/two")
        a = self.compile(one["id"])
        b = self.compile(one["id"], "B")
        self.compile(two["id"])
        self.ok("DELETE", "/endpoints/" + one["id"])
        self.assertEqual(self.builder.removed, [b])
        self.assertEqual([v["digest"] for v in self.versions(two["id"])], [a])


class RollbackTests(VersionsTestCase):
    def running_b_after_a(self):
        """An endpoint that ran A and now runs B (PUT code, compile, restart)."""
        endpoint = self.create("A")
        a = self.compile(endpoint["id"])
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        b = self.compile(endpoint["id"], "B")
        self.ok("POST", "/endpoints/%s/restart" % endpoint["id"])
        return endpoint["id"], a, b

    def test_restart_starts_then_switches_then_drains(self):
        """Restart: the new pool starts and is ready, then the route moves to it, then the old one drains."""
        endpoint_id, a, b = self.running_b_after_a()
        self.assertEqual(
            LoggingPool.events,
            [("start", a), ("ready", a), ("route", a), ("start", b), ("ready", b), ("route", b), ("stop", a)],
        )
        self.assertEqual(self.serving(), b)
        self.assertEqual(self.manager.last_switch["digest"], b)
        self.assertEqual(self.manager.last_switch["ready_to_switch_ms"], 0)

    def test_rollback_switches_pool_and_route_and_sets_deployed(self):
        """Rollback to A of an endpoint serving B: new pool on A's binary, route to it, B drained, deployed A."""
        endpoint_id, a, b = self.running_b_after_a()
        del LoggingPool.events[:]
        data = self.ok("POST", "/endpoints/%s/rollback" % endpoint_id, {"version": a})
        self.assertEqual(LoggingPool.events, [("start", a), ("ready", a), ("route", a), ("stop", b)])
        self.assertEqual(LoggingPool.made[-1].binary, "/artifacts/%s/handler" % a)
        self.assertEqual(self.serving(), a)
        self.assertEqual((data["status"], data["deployed"], data["artifact"]), ("running", a, b))
        self.assertEqual(data["version"], a[:12])
        flags = {v["digest"]: (v["live"], v["current"]) for v in self.versions(endpoint_id)}
        self.assertEqual(flags, {a: (True, False), b: (False, True)})
        self.assertEqual(len(self.builder.stored), 2, "rollback compiles nothing")

    def test_rollback_takes_a_digest_prefix(self):
        """The first 7 or more hex digits of a digest name the version, as the record's short form does."""
        endpoint_id, a, b = self.running_b_after_a()
        data = self.ok("POST", "/endpoints/%s/rollback" % endpoint_id, {"version": a[:12].upper()})
        self.assertEqual(data["deployed"], a)

    def test_rollback_to_the_serving_version_changes_nothing(self):
        """Rolling back to what already serves answers the record and starts no pool."""
        endpoint_id, a, b = self.running_b_after_a()
        made = len(LoggingPool.made)
        data = self.ok("POST", "/endpoints/%s/rollback" % endpoint_id, {"version": b})
        self.assertEqual((data["deployed"], len(LoggingPool.made)), (b, made))

    def test_rollback_to_an_unknown_version_is_404(self):
        """A digest that is no version of this endpoint answers 404, and nothing changes."""
        endpoint_id, a, b = self.running_b_after_a()
        other = self.create("Z", name="other", path="/other")
        z = self.compile(other["id"])
        for version in ("0" * 64, z):
            status, document = self.call("POST", "/endpoints/%s/rollback" % endpoint_id, {"version": version})
            self.assertEqual(status, 404)
            self.assertIn("has no version", document["error"])
        self.assertEqual(self.serving(), b)
        self.assertEqual(self.call("POST", "/endpoints/nope/rollback", {"version": a})[0], 404)

    def test_rollback_body_is_checked(self):
        """No version, a non-digest, an unknown field or an ambiguous prefix: 400 naming the field."""
        endpoint_id, a, b = self.running_b_after_a()
        for body, field in (
            ({}, "version"),
            ({"version": 5}, "version"),
            ({"version": "abc"}, "version"),
            ({"version": "not-hex-at-all"}, "version"),
            ({"version": a, "force": True}, "force"),
        ):
            status, document = self.call("POST", "/endpoints/%s/rollback" % endpoint_id, body)
            self.assertEqual((status, document.get("field")), (400, field), body)
            self.assertIn("'%s'" % field, document["error"])

    def test_ambiguous_prefix_is_400(self):
        """A prefix that starts two versions' digests is refused, asking for more digits."""
        endpoint = self.create("A")
        self.compile(endpoint["id"])
        self.compile(endpoint["id"], "B")
        self.successResultOf(
            self.store.record_version(
                {
                    "endpoint_id": endpoint["id"],
                    "digest": "abcdef1" + "0" * 57,
                    "code": "x",
                    "dependencies": {},
                    "compile_seconds": 1.0,
                    "created_at": "2026-01-01T00:00:00+00:00",
                }
            )
        )
        self.successResultOf(
            self.store.record_version(
                {
                    "endpoint_id": endpoint["id"],
                    "digest": "abcdef1" + "1" * 57,
                    "code": "y",
                    "dependencies": {},
                    "compile_seconds": 1.0,
                    "created_at": "2026-01-01T00:00:00+00:00",
                }
            )
        )
        status, document = self.call("POST", "/endpoints/%s/rollback" % endpoint["id"], {"version": "abcdef1"})
        self.assertEqual(status, 400)
        self.assertIn("more digits", document["error"])

    def test_rollback_to_a_pruned_binary_is_409(self):
        """A version whose binary is gone answers 409 saying how to get it back."""
        endpoint_id, a, b = self.running_b_after_a()
        self.builder.stored.discard(a)
        status, document = self.call("POST", "/endpoints/%s/rollback" % endpoint_id, {"version": a})
        self.assertEqual(status, 409)
        self.assertIn("pruned", document["error"])
        available = {v["digest"]: v["available"] for v in self.versions(endpoint_id)}
        self.assertEqual(available, {a: False, b: True})
        self.assertEqual(self.serving(), b)

    def test_rollback_of_a_stopped_endpoint_starts_it_on_that_version(self):
        """A stopped endpoint rolled back starts on the version asked for, not on its current code."""
        endpoint_id, a, b = self.running_b_after_a()
        self.ok("POST", "/endpoints/%s/stop" % endpoint_id)
        data = self.ok("POST", "/endpoints/%s/rollback" % endpoint_id, {"version": a})
        self.assertEqual((data["status"], data["deployed"], data["artifact"]), ("running", a, b))
        self.assertEqual(self.serving(), a)

    def test_failed_start_keeps_the_old_version_serving(self):
        """When the new version's workers fail to start, restart answers 502 with why; the old pool serves on."""
        endpoint = self.create("A")
        a = self.compile(endpoint["id"])
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        old = LoggingPool.made[-1]
        b = self.compile(endpoint["id"], "B")
        LoggingPool.fail_next = RuntimeError(
            "worker exited with status 101 before ready; last stderr: thread 'main' panicked: boom"
        )
        status, document = self.call("POST", "/endpoints/%s/restart" % endpoint["id"])
        self.assertEqual(status, 502)
        self.assertIn("version %s failed to start" % b[:12], document["error"])
        self.assertIn("status 101", document["error"])
        self.assertIn("panicked: boom", document["error"])
        self.assertIn("still serves version %s" % a[:12], document["error"])
        self.assertIn("/logs", document["error"])
        self.assertEqual(self.serving(), a)
        self.assertIsNone(old.stopping)
        self.assertNotIn(("stop", a), LoggingPool.events)
        self.assertIn(("stop", b), LoggingPool.events)
        record = self.ok("GET", "/endpoints/" + endpoint["id"])
        self.assertEqual((record["status"], record["deployed"], record["pids"]), ("running", a, old.pids))
        self.assertIn("status 101", record["last_error"])

    def test_failed_rollback_keeps_the_old_version_serving(self):
        """A rollback whose workers fail to start answers 502 and changes nothing."""
        endpoint_id, a, b = self.running_b_after_a()
        LoggingPool.fail_next = RuntimeError("worker did not send ready within 10s and was killed")
        status, document = self.call("POST", "/endpoints/%s/rollback" % endpoint_id, {"version": a})
        self.assertEqual(status, 502)
        self.assertIn("did not send ready", document["error"])
        self.assertEqual(self.serving(), b)
        self.assertEqual(self.ok("GET", "/endpoints/" + endpoint_id)["deployed"], b)


class SettingsTests(VersionsTestCase):
    def test_defaults(self):
        """A new endpoint gets min 1, max 4, queue 1000, no request limit, 60 s idle timeout."""
        settings = self.create()["settings"]
        self.assertEqual(
            settings,
            {
                "min_instances": 1,
                "max_instances": 4,
                "max_queue": 1000,
                "timeout": 30.0,
                "max_requests": 0,
                "idle_timeout": 60.0,
                "env": {},
                "pipeline": 16,
                "concurrency": 64,
                "limits": {
                    "memory_mb": 1024,
                    "cpu_seconds": 3600,
                    "open_files": 256,
                    "processes": 1024,
                    "file_size_mb": 64,
                },
                "network": "none",
                "dependencies": {},
            },
        )

    def test_bad_settings_are_400_naming_the_field(self):
        """Each setting out of its range or of the wrong type answers 400 naming it, also at the top level."""
        for settings, field in (
            ({"min_instances": -1}, "settings.min_instances"),
            ({"min_instances": 65}, "settings.min_instances"),
            ({"min_instances": "1"}, "settings.min_instances"),
            ({"max_instances": 0}, "settings.max_instances"),
            ({"max_instances": 65}, "settings.max_instances"),
            ({"max_instances": 1.5}, "settings.max_instances"),
            ({"max_queue": -1}, "settings.max_queue"),
            ({"max_queue": 100_001}, "settings.max_queue"),
            ({"max_requests": -1}, "settings.max_requests"),
            ({"max_requests": True}, "settings.max_requests"),
            ({"idle_timeout": 0}, "settings.idle_timeout"),
            ({"idle_timeout": -5}, "settings.idle_timeout"),
            ({"idle_timeout": "60"}, "settings.idle_timeout"),
            ({"idle_timeout": 86_401}, "settings.idle_timeout"),
            ({"instances": 0}, "settings.instances"),
            ({"timeout": 0}, "settings.timeout"),
            ({"pipeline": 257}, "settings.pipeline"),
            ({"concurrency": 0}, "settings.concurrency"),
            ({"concurrency": 1025}, "settings.concurrency"),
            ({"max_instance": 2}, "settings"),
        ):
            status, document = self.call(
                "POST", "/endpoints", {"name": "x", "path": "/x", "method": "GET", "settings": settings}
            )
            self.assertEqual((status, document.get("field")), (400, field), settings)
            self.assertIn(field.replace("settings.", ""), document["error"])
        status, document = self.call(
            "POST", "/endpoints", {"name": "x", "path": "/x", "method": "GET", "max_queue": -1}
        )
        self.assertEqual((status, document["field"]), (400, "max_queue"))
        self.assertEqual(self.ok("GET", "/endpoints")["total"], 0)

    def test_min_above_max_is_400(self):
        """min_instances above max_instances is refused on create and on update, naming the field."""
        status, document = self.call(
            "POST",
            "/endpoints",
            {"name": "x", "path": "/x", "method": "GET", "settings": {"min_instances": 3, "max_instances": 2}},
        )
        self.assertEqual((status, document["field"]), (400, "settings.min_instances"))
        self.assertIn("min_instances (3) must not be above max_instances (2)", document["error"])
        endpoint = self.create()
        status, document = self.call("PUT", "/endpoints/" + endpoint["id"], {"settings": {"min_instances": 5}})
        self.assertEqual((status, document["field"]), (400, "settings.min_instances"))
        status, document = self.call("PUT", "/endpoints/" + endpoint["id"], {"max_instances": 0})
        self.assertEqual((status, document["field"]), (400, "max_instances"))
        status, document = self.call(
            "PUT", "/endpoints/" + endpoint["id"], {"settings": {"min_instances": 2, "max_instances": 1}}
        )
        self.assertEqual(status, 400)

    def test_max_instances_defaults_to_min_when_higher(self):
        """On create, min_instances above 4 without max_instances makes max equal to min."""
        settings = self.create(settings={"min_instances": 8})["settings"]
        self.assertEqual((settings["min_instances"], settings["max_instances"]), (8, 8))
        settings = self.create(name="z", path="/z", settings={"min_instances": 0})["settings"]
        self.assertEqual((settings["min_instances"], settings["max_instances"]), (0, 4))

    def test_instances_is_shorthand_for_min_and_max(self):
        """instances: N sets min and max to N, under settings or at the top level, and wins over both."""
        settings = self.create(settings={"instances": 3})["settings"]
        self.assertEqual((settings["min_instances"], settings["max_instances"]), (3, 3))
        self.assertNotIn("instances", settings)
        endpoint = self.create(name="b", path="/b", instances=2)
        self.assertEqual(
            (endpoint["settings"]["min_instances"], endpoint["settings"]["max_instances"]), (2, 2)
        )
        # An old client edits instances in the record it read and PUTs it all back.
        endpoint["settings"]["instances"] = 5
        data = self.ok("PUT", "/endpoints/" + endpoint["id"], endpoint)
        self.assertEqual((data["settings"]["min_instances"], data["settings"]["max_instances"]), (5, 5))

    def test_records_stored_with_instances_read_as_min_and_max(self):
        """A record stored before min/max_instances (instances: 2) reads as min = max = 2, defaults filled."""
        endpoint = self.create()
        self.successResultOf(
            self.store.update_endpoint(
                endpoint["id"], {"settings": {"instances": 2, "timeout": 5.0, "env": {"A": "1"}, "pipeline": 4}}
            )
        )
        settings = self.ok("GET", "/endpoints/" + endpoint["id"])["settings"]
        self.assertEqual(
            settings,
            {
                "min_instances": 2,
                "max_instances": 2,
                "max_queue": 1000,
                "timeout": 5.0,
                "max_requests": 0,
                "idle_timeout": 60.0,
                "env": {"A": "1"},
                "pipeline": 4,
                "concurrency": 64,
                "limits": {
                    "memory_mb": 1024,
                    "cpu_seconds": 3600,
                    "open_files": 256,
                    "processes": 1024,
                    "file_size_mb": 64,
                },
                "network": "none",
                "dependencies": {},
            },
        )
        self.ok("POST", "/endpoints/%s/compile" % endpoint["id"])
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        self.assertEqual(
            LoggingPool.made[-1].options,
            {
                "min_instances": 2,
                "max_instances": 2,
                "max_queue": 1000,
                "timeout": 5.0,
                "max_requests": 0,
                "idle_timeout": 60.0,
                "env": {"A": "1"},
                "pipeline": 4,
                "concurrency": 64,
            },
        )
        # Reading it did not count as a change: no new pool.
        made = len(LoggingPool.made)
        self.ok("PUT", "/endpoints/" + endpoint["id"], {"description": "still two"})
        self.assertEqual(len(LoggingPool.made), made)

    def test_settings_reach_the_pool_with_the_version(self):
        """The pool factory gets every pool setting and the digest it runs as version."""
        endpoint = self.create(
            settings={"min_instances": 0, "max_instances": 3, "max_queue": 7, "max_requests": 5, "idle_timeout": 1}
        )
        a = self.compile(endpoint["id"])
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        pool = LoggingPool.made[-1]
        self.assertEqual(pool.version, a)
        self.assertEqual(
            {k: pool.options[k] for k in ("min_instances", "max_instances", "max_queue", "max_requests")},
            {"min_instances": 0, "max_instances": 3, "max_queue": 7, "max_requests": 5},
        )
        self.assertEqual(pool.options["idle_timeout"], 1.0)

    def test_settings_change_of_a_running_endpoint_swaps_pools(self):
        """A changed pool setting: new pool on the same version ready, route switched, old one drained."""
        endpoint = self.create()
        a = self.compile(endpoint["id"])
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        old = LoggingPool.made[-1]
        del LoggingPool.events[:]
        data = self.ok("PUT", "/endpoints/" + endpoint["id"], {"settings": {"max_queue": 5, "max_instances": 2}})
        new = LoggingPool.made[-1]
        self.assertIsNot(new, old)
        self.assertEqual(LoggingPool.events, [("start", a), ("ready", a), ("route", a), ("stop", a)])
        self.assertEqual((new.options["max_queue"], new.options["max_instances"]), (5, 2))
        self.assertIs(self.routes.match("h", "GET", "/hello").target, new)
        self.assertEqual((data["status"], data["pids"]), ("running", new.pids))

    def test_other_changes_keep_the_pool(self):
        """A change of description or dependencies, or of nothing, leaves the running pool alone."""
        endpoint = self.create()
        self.compile(endpoint["id"])
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        for change in ({"description": "new words"}, {"settings": {"dependencies": {"anyhow": "1"}}}, {}):
            self.ok("PUT", "/endpoints/" + endpoint["id"], dict(change, name="hello"))
        self.assertEqual(len(LoggingPool.made), 1)

    def test_settings_change_that_fails_to_start_is_undone(self):
        """New settings whose workers fail to start: 502, the old pool serves on, the settings stay as they were."""
        endpoint = self.create(settings={"env": {"MODE": "good"}})
        self.compile(endpoint["id"])
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        old = LoggingPool.made[-1]
        LoggingPool.fail_next = RuntimeError("worker exited with status 1 before ready; last stderr: bad MODE")
        status, document = self.call(
            "PUT", "/endpoints/" + endpoint["id"], {"description": "d", "settings": {"env": {"MODE": "bad"}}}
        )
        self.assertEqual(status, 502)
        self.assertIn("bad MODE", document["error"])
        self.assertIn("was undone", document["error"])
        self.assertIs(self.routes.match("h", "GET", "/hello").target, old)
        record = self.ok("GET", "/endpoints/" + endpoint["id"])
        self.assertEqual((record["settings"]["env"], record["description"]), ({"MODE": "good"}, "d"))
        self.assertEqual(record["status"], "running")

    def test_settings_change_of_a_stopped_endpoint_starts_nothing(self):
        """Settings of an endpoint that is not running are just stored."""
        endpoint = self.create()
        self.ok("PUT", "/endpoints/" + endpoint["id"], {"settings": {"max_queue": 3}})
        self.assertEqual(LoggingPool.made, [])

    def test_pool_options(self):
        """runtime.pool_options maps stored settings, old or new, to WorkerPool keyword arguments."""
        self.assertEqual(
            pool_options({"instances": 3, "timeout": 2.0, "env": {}}),
            {
                "min_instances": 3,
                "max_instances": 3,
                "max_queue": 1000,
                "timeout": 2.0,
                "max_requests": 0,
                "idle_timeout": 60.0,
                "env": {},
                "pipeline": 16,
                "concurrency": 64,
            },
        )

    def test_pool_options_fit_the_worker_pool(self):
        """WorkerPool takes the mapped settings and the version as they are."""
        from edgegw_tx.workers.pool import WorkerPool

        options = pool_options({"min_instances": 0, "max_instances": 2, "max_requests": 5, "idle_timeout": 1.0})
        pool = WorkerPool("x", ["/bin/true"], version="d" * 64, reactor=self.reactor, **options)
        stats = pool.stats()
        self.assertEqual((stats["min_instances"], stats["max_instances"], stats["version"]), (0, 2, "d" * 64))
        self.assertEqual((pool.max_requests, pool.idle_timeout, pool.max_queue), (5, 1.0, 1000))


class VisibilityTests(VersionsTestCase):
    def test_record_shows_version_workers_and_queue(self):
        """GET and the list show the live version (12 digits), the pool's workers and its queue."""
        endpoint = self.create()
        fresh = self.ok("GET", "/endpoints/" + endpoint["id"])
        self.assertEqual((fresh["version"], fresh["workers"], fresh["queue"]), (None, [], 0))
        a = self.compile(endpoint["id"])
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        pool = LoggingPool.made[-1]
        pool.queued = 7
        record = self.ok("GET", "/endpoints/" + endpoint["id"])
        self.assertEqual(record["version"], a[:12])
        self.assertEqual(
            record["workers"],
            [{"pid": pool.pids[0], "version": a, "state": "ready", "served": 3, "in_flight": 0}],
        )
        self.assertEqual(record["queue"], 7)
        [listed] = self.ok("GET", "/endpoints")["items"]
        self.assertEqual((listed["version"], listed["workers"], listed["queue"]), (a[:12], record["workers"], 7))
        # A record read with GET, these fields included, can be PUT back.
        self.ok("PUT", "/endpoints/" + endpoint["id"], record)

    def test_draining_workers_are_shown_until_gone(self):
        """During a restart's drain the record lists the new workers and the old ones draining."""
        endpoint = self.create()
        a = self.compile(endpoint["id"])
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        b = self.compile(endpoint["id"], "B")
        old = LoggingPool.made[-1]
        LoggingPool.hold_stop = True
        answer = self.send("POST", "/endpoints/%s/restart" % endpoint["id"])
        self.assertNoResult(answer)
        record = self.ok("GET", "/endpoints/" + endpoint["id"])
        self.assertEqual(record["version"], b[:12])
        self.assertEqual(
            [(w["version"], w["state"]) for w in record["workers"]], [(b, "ready"), (a, "draining")]
        )
        old.pids = []
        old.stopping.callback(None)
        self.client.flush()
        status, document = self.successResultOf(answer)
        self.assertEqual(status, 200)
        record = self.ok("GET", "/endpoints/" + endpoint["id"])
        self.assertEqual([w["version"] for w in record["workers"]], [b])

    def test_switch_time_is_recorded(self):
        """The manager keeps how long the route switch took after the new workers were ready."""
        endpoint = self.create()
        a = self.compile(endpoint["id"])
        self.ok("POST", "/endpoints/%s/start" % endpoint["id"])
        self.assertEqual(
            self.manager.last_switch, {"endpoint_id": endpoint["id"], "digest": a, "ready_to_switch_ms": 0}
        )


class StoreAndOptionsTests(unittest.TestCase):
    def test_schema_is_current_with_versions(self):
        """The store is at the current schema and has the versions table, unique per endpoint and digest."""
        store = make_store(self)
        rows = self.successResultOf(store._pool.runQuery("SELECT MAX(version) FROM schema_migrations"))
        self.assertEqual(rows, [(SCHEMA_VERSION,)])
        rows = self.successResultOf(
            store._pool.runQuery("SELECT sql FROM sqlite_master WHERE name = 'versions'")
        )
        self.assertIn("UNIQUE (endpoint_id, digest)", rows[0][0])

    def test_a_schema_3_file_is_upgraded(self):
        """Opening a store written at schema 3 (no versions table) adds the table and says the current schema."""
        import os

        from edgegw_tx.store import SQLiteStore
        from edgegw_tx.store.sqlite_schema import MIGRATIONS
        from tests.support.fakes import SynchronousReactor

        reactor = SynchronousReactor()
        store = SQLiteStore(
            os.path.join(self.mktemp(), "store.sqlite3"),
            reactor=reactor,
            threadpool=reactor.getThreadPool(),
            migrations=MIGRATIONS[:3],
        )
        self.addCleanup(store.close)
        self.successResultOf(store.open())
        store._migrations = MIGRATIONS
        # Schema 3 as its release wrote it: no versions or worker_uids, its level in meta.
        for statement in (
            "DROP TABLE schema_migrations",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "INSERT INTO meta (key, value) VALUES ('schema', '3')",
        ):
            self.successResultOf(store._pool.runOperation(statement))
        self.successResultOf(store.open())
        rows = self.successResultOf(store._pool.runQuery("SELECT MAX(version) FROM schema_migrations"))
        self.assertEqual(rows, [(SCHEMA_VERSION,)])
        self.assertEqual(self.successResultOf(store.list_versions("any")), [])

    def test_keep_versions_option(self):
        """--keep-versions defaults to 10 and must be a whole number of at least 1."""
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["keep-versions"], 10)
        options = Options()
        options.parseOptions(["--keep-versions", "3"])
        self.assertEqual(options["keep-versions"], 3)
        self.assertRaises(UsageError, Options().parseOptions, ["--keep-versions", "0"])
        self.assertRaises(UsageError, Options().parseOptions, ["--keep-versions", "many"])
