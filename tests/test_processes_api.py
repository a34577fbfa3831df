"""
The management API with two data-plane processes: the real Klein app, store,
endpoint and service managers, wired as ``GatewayRuntime`` wires them for
``--processes 2`` (pool proxies, mirrored routes and registry, the process
group), over in-memory data-plane processes running the real DataPlane
(tests/support_processes.py); the builder is a fake. Then the runtime's own
wiring with ``processes=2``.
"""

import json
import os

from treq.testing import StubTreq
from twisted.trial import unittest

from edgegw_tx.admin.api import AdminAPI
from edgegw_tx.admin.history import StatsHistory, running_endpoints
from edgegw_tx.admin.logs import LogBook
from edgegw_tx.admin.manager import EndpointManager
from edgegw_tx.admin.services import ServiceManager
from edgegw_tx.gateway.routes import Match, NoRoute, RouteTable
from edgegw_tx.processes import MirroredRegistry, MirroredRoutes, PoolProxy, ProcessGroup
from edgegw_tx.runtime import pool_options
from edgegw_tx.services.registry import ServiceRegistry
from tests.support.fakes import keyed_store
from tests.support.processes import LoopbackReactor
from tests.support.handlers import HELLO
from tests.support.fakes import FakeBuilder
from edgegw_tx.store import SQLiteStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TwoProcessTestCase(unittest.TestCase):
    """The API's objects wired for two data-plane processes, as the runtime wires them."""

    def setUp(self):
        keyed_store(self)
        # keyed_store made a SynchronousReactor; the processes need the loopback one.
        reactor = LoopbackReactor()
        reactor.advance(self.reactor.seconds())
        self.reactor = reactor
        self.group = ProcessGroup(2, "tcp:9080", "/data", environ={}, reactor=reactor)
        self.group.startService()
        self.addCleanup(self.group.stopService)
        routes = MirroredRoutes(self.group, RouteTable())
        registry = MirroredRegistry(ServiceRegistry(self.mktemp(), reactor=reactor), self.group)
        self.service_manager = ServiceManager(self.store, registry)
        self.manager = EndpointManager(
            self.store,
            FakeBuilder(),
            routes,
            self._make_pool,
            LogBook(reactor),
            services=self.service_manager,
            reactor=reactor,
        )
        # The stats read the processes' request counters, as the runtime's do (``ProcessGroup.metrics``).
        history = StatsHistory(
            self.group.metrics,
            lambda: running_endpoints(self.manager.pool_stats_by_endpoint()),
            reactor,
            refresh=self.group.refresh,
        )
        self.api = AdminAPI(
            self.manager,
            self.keys,
            reactor,
            services=self.service_manager,
            refresh=self.group.refresh,
            history=history,
        )
        self.client = StubTreq(self.api.resource())

    def _make_pool(self, record, binary, log, version=None):
        return PoolProxy(
            self.group,
            record["name"],
            [binary],
            endpoint_id=record["id"],
            log=log,
            version=version,
            **pool_options(record["settings"]),
        )

    def call(self, method, path, body=None):
        d = self.client.request(
            method,
            "http://admin/api" + path,
            headers={"Authorization": "Bearer " + self.admin_key},
            data=json.dumps(body).encode() if body is not None else None,
        )
        self.client.flush()
        response = self.successResultOf(d)
        return response.code, json.loads(self.successResultOf(response.content()))

    def ok(self, method, path, body=None):
        code, document = self.call(method, path, body)
        self.assertIn(code, (200, 201), document)
        return document["data"]

    def deploy(self, code=HELLO, **settings):
        created = self.ok("POST", "/endpoints", {"name": "hello", "path": "/hello", "method": "GET",
                                                  "code": code, "settings": settings})
        self.ok("POST", "/endpoints/%s/compile" % created["id"])
        return self.ok("POST", "/endpoints/%s/start" % created["id"])

    def served_by(self, process):
        """The pool serving GET /hello in ``process``, or None."""
        found = process.routes.match("example.com", "GET", "/hello")
        return found.target if isinstance(found, Match) else None


class TwoProcessAPITests(TwoProcessTestCase):
    def test_start_runs_workers_in_every_process(self):
        """Starting an endpoint starts a pool in each process; its record lists the workers of both."""
        started = self.deploy(min_instances=2, max_instances=2)
        self.assertEqual(started["status"], "running")
        self.assertEqual([w["process"] for w in started["workers"]], [1, 1, 2, 2])
        self.assertEqual(started["pids"], [w["pid"] for w in started["workers"]])
        for process in self.reactor.processes:
            pool = self.served_by(process)
            self.assertEqual(pool.argv, ["/artifacts/d1/handler"])
            self.assertEqual(pool.options["min_instances"], 2)

    def test_views_and_stats_are_read_from_the_processes(self):
        """
        GET of an endpoint and /api/stats show the processes' counters as they
        are now: the workers from their pools, the requests from their request
        counters (those of /metrics) added up.
        """
        started = self.deploy()
        for process in self.reactor.processes:
            self.served_by(process).served = 3
            series = process.plane.request_metrics.series("hello")
            for status in (200, 200, 502):
                series.record(b"GET", status, 0, 5, 0.001)
        record = self.ok("GET", "/endpoints/" + started["id"])
        self.assertEqual([w["served"] for w in record["workers"]], [3, 3])
        stats = self.ok("GET", "/stats")
        self.assertEqual((stats["workers"], stats["requests"]["served"], stats["requests"]["failed"]), (2, 6, 2))
        [hello] = [e for e in stats["requests"]["by_endpoint"] if e["endpoint"] == "hello"]
        self.assertEqual((hello["id"], hello["served"], hello["failed"]), (started["id"], 6, 2))
        listed = self.ok("GET", "/endpoints")["items"]
        self.assertEqual(len(listed[0]["workers"]), 2)

    def test_logs_of_every_process_reach_the_endpoint_log(self):
        """GET .../logs has the lines of the workers of both processes."""
        started = self.deploy()
        lines = self.ok("GET", "/endpoints/%s/logs" % started["id"])["lines"]
        ready = [entry["line"] for entry in lines if "is ready" in entry["line"]]
        self.assertEqual(len(ready), 2)

    def test_restart_switches_every_process_to_the_new_version(self):
        """A code change, compile and restart: every process routes to the new version and drains the old."""
        started = self.deploy()
        old = [self.served_by(p) for p in self.reactor.processes]
        self.ok("PUT", "/endpoints/" + started["id"], {"code": HELLO + "// v2\n"})
        self.ok("POST", "/endpoints/%s/compile" % started["id"])
        restarted = self.ok("POST", "/endpoints/%s/restart" % started["id"])
        self.assertEqual(restarted["version"], "d2")
        for process, before in zip(self.reactor.processes, old):
            now = self.served_by(process)
            self.assertEqual(now.argv, ["/artifacts/d2/handler"])
            self.assertEqual(before.state, "stopped")
            names = [name for name, _ in process.commands if name != "snapshot"]
            self.assertEqual(names[-3:], ["start_pool", "route", "stop_pool"])

    def test_stop_and_delete_reach_every_process(self):
        """Stopping unroutes and drains in every process; deleting leaves nothing to replay."""
        started = self.deploy()
        pools = [self.served_by(p) for p in self.reactor.processes]
        stopped = self.ok("POST", "/endpoints/%s/stop" % started["id"])
        self.assertEqual((stopped["status"], stopped["pids"], stopped["workers"]), ("stopped", [], []))
        for process, pool in zip(self.reactor.processes, pools):
            self.assertIsInstance(process.routes.match("x", "GET", "/hello"), NoRoute)
            self.assertEqual(pool.state, "stopped")
        self.ok("DELETE", "/endpoints/" + started["id"])
        self.assertEqual(self.group.state.replay(), [])

    def test_a_respawned_process_serves_the_running_endpoints(self):
        """A process that dies is replaced; the new one gets the running endpoint and its workers show."""
        started = self.deploy()
        self.reactor.processes[0].exit(signal=9)
        record = self.ok("GET", "/endpoints/" + started["id"])
        self.assertEqual([w["process"] for w in record["workers"]], [2])
        self.reactor.advance(self.group.min_restart_delay)
        new = self.reactor.processes[-1]
        self.assertIsNotNone(self.served_by(new))
        record = self.ok("GET", "/endpoints/" + started["id"])
        self.assertEqual(sorted(w["process"] for w in record["workers"]), [1, 2])

    def test_services_and_bindings_reach_every_process_before_the_answer(self):
        """Creating a service and binding it: every process's registry has both when the API answers."""
        late = self.reactor.processes[1]
        endpoint = self.ok("POST", "/endpoints", {"name": "n", "path": "/n", "method": "GET", "code": HELLO})
        late.pause()
        d = self.client.request(
            "POST",
            "http://admin/api/services",
            headers={"Authorization": "Bearer " + self.admin_key},
            data=json.dumps({"name": "notes", "service_type": "sqlite"}).encode(),
        )
        self.client.flush()
        self.assertNoResult(d)  # the second process has not applied it yet
        late.resume()
        self.client.flush()
        service = json.loads(self.successResultOf(self.successResultOf(d).content()))["data"]
        self.ok("POST", "/endpoints/%s/services" % endpoint["id"], {"service_id": service["id"], "pool_id": "db"})
        for process in self.reactor.processes:
            self.assertEqual(process.registry.services[service["id"]]["name"], "notes")
            self.assertEqual(process.registry.bound, {(endpoint["id"], "db"): service["id"]})


class RerouteTests(TwoProcessTestCase):
    """A route moved by a domain change reaches every process before the API answers."""

    def setUp(self):
        super().setUp()
        from edgegw_tx.admin.domains import CollectionManager, DomainManager

        self.collections = CollectionManager(self.store, self.manager)
        self.domains = DomainManager(self.store, self.manager, self.collections)
        self.successResultOf(self.collections.load())
        self.successResultOf(self.domains.load())
        self.api = AdminAPI(
            self.manager, self.keys, self.reactor, services=self.service_manager,
            domains=self.domains, collections=self.collections, refresh=self.group.refresh,
        )
        self.client = StubTreq(self.api.resource())

    def test_a_collection_base_path_change_moves_the_route_in_every_process(self):
        """PUT of a collection's base_path moves its running endpoint's route in every process."""
        collection = self.ok("POST", "/collections", {"name": "v1", "base_path": "/v1"})
        created = self.ok("POST", "/endpoints", {"name": "hello", "path": "/hello", "method": "GET",
                                                  "code": HELLO, "collection_id": collection["id"]})
        self.ok("POST", "/endpoints/%s/compile" % created["id"])
        self.ok("POST", "/endpoints/%s/start" % created["id"])
        for process in self.reactor.processes:
            self.assertIsInstance(process.routes.match("x", "GET", "/v1/hello"), Match)
        for process in self.reactor.processes:
            process.pause()
        d = self.client.request(
            "PUT", "http://admin/api/collections/" + collection["id"],
            headers={"Authorization": "Bearer " + self.admin_key},
            data=json.dumps({"base_path": "/v2"}).encode(),
        )
        self.client.flush()
        self.assertNoResult(d)  # the API waits for every process to move the route
        for process in self.reactor.processes:
            process.resume()
        self.client.flush()
        self.assertEqual(self.successResultOf(d).code, 200)
        for process in self.reactor.processes:
            self.assertIsInstance(process.routes.match("x", "GET", "/v2/hello"), Match)
            self.assertIsInstance(process.routes.match("x", "GET", "/v1/hello"), NoRoute)


class RuntimeWiringTests(unittest.TestCase):
    """GatewayRuntime(processes=2): what it builds and how it starts and stops."""

    def setUp(self):
        self.reactor = LoopbackReactor()
        self.runtime = self.make()

    def make(self, **options):
        """A runtime with two data-plane processes on this test's reactor, with more ``options``."""
        from edgegw_tx.runtime import GatewayRuntime

        data_dir = os.path.abspath(self.mktemp())
        # adbapi's own thread pool would need a running reactor; run the store inline.
        store = SQLiteStore(
            os.path.join(data_dir, "edgegw.sqlite3"), reactor=self.reactor, threadpool=self.reactor.getThreadPool()
        )
        return GatewayRuntime(
            data_dir,
            "tcp:9080:interface=127.0.0.1",
            "tcp:9081:interface=127.0.0.1",
            sdk_path=os.path.join(ROOT, "rust_sdk"),
            reactor=self.reactor,
            processes=2,
            process_environ={"PATH": "/usr/bin"},
            store=store,
            **options,
        )

    def test_one_process_is_the_default_and_spawns_nothing(self):
        """Without processes, the runtime serves the data plane itself: no group, no children."""
        from edgegw_tx.runtime import GatewayRuntime

        runtime = GatewayRuntime(
            os.path.abspath(self.mktemp()), "tcp:0", "tcp:0", sdk_path=os.path.join(ROOT, "rust_sdk"),
            reactor=self.reactor,
        )
        self.assertIsNone(runtime.processes)
        self.assertIsInstance(runtime.routes, RouteTable)
        self.assertEqual(len(runtime.listeners), 2)

    def test_processes_must_be_positive(self):
        """processes=0 is refused."""
        from edgegw_tx.runtime import GatewayRuntime

        self.assertRaises(
            ValueError, GatewayRuntime, self.mktemp(), "tcp:0", "tcp:0", sdk_path=ROOT, processes=0,
            reactor=self.reactor,
        )

    def test_start_binds_the_data_socket_for_the_processes_and_stop_reaps_them(self):
        """On start the group binds --listen, the API listens, two processes run; stop reaps them."""
        self.successResultOf(self.runtime.startService())
        data, admin = self.successResultOf(self.runtime.ports())
        self.assertEqual((data.port, data.reading), (9080, False))
        self.assertEqual(admin.port, 9081)
        self.assertEqual(len(self.reactor.live()), 2)
        self.assertEqual(self.reactor.processes[0].env["PATH"], "/usr/bin")
        self.successResultOf(self.runtime.stopService())
        self.assertEqual(self.reactor.live(), [])
        self.assertFalse(data.listening)

    def test_the_processes_say_starting_until_the_endpoints_are_restored(self):
        """Every data-plane process is told restoring before anything else at start, and no longer once restored."""
        self.successResultOf(self.runtime.startService())
        self.addCleanup(self.runtime.stopService)
        for process in self.reactor.processes:
            self.assertEqual(process.commands[0], ("restoring", {"restoring": True}))
            self.assertEqual(process.commands[-1], ("restoring", {"restoring": False}))
            self.assertFalse(process.routes.restoring)

    def test_shutdown_delay_drains_every_process_then_stops_them(self):
        """
        With a shutdown delay, stop tells every process to drain at once,
        leaves them serving for the delay, then stops them; the delay reaches
        each process too (its own SIGTERM waits it).
        """
        self.runtime = self.make(shutdown_delay=3)
        self.assertEqual(self.runtime.processes.observe["shutdown_delay"], 3)
        self.successResultOf(self.runtime.startService())
        d = self.runtime.stopService()
        for process in self.reactor.processes:
            self.assertEqual(process.plane.draining_since, self.reactor.seconds())
        self.reactor.advance(2.9)
        self.assertNoResult(d)
        self.assertEqual(len(self.reactor.live()), 2)
        self.reactor.advance(0.1)
        self.successResultOf(d)
        self.assertEqual(self.reactor.live(), [])

    def test_pools_are_proxies_and_the_registry_is_mirrored(self):
        """The manager's pools are PoolProxy objects with the endpoint's settings; services go to the group."""
        self.successResultOf(self.runtime.startService())
        self.addCleanup(self.runtime.stopService)
        record = {
            "id": "e1",
            "name": "hello",
            "worker_uid": 61184,
            "settings": {"min_instances": 2, "max_instances": 3},
        }
        pool = self.runtime._make_pool(record, "/bin/handler", lambda s, l: None, version="d1")
        self.assertIsInstance(pool, PoolProxy)
        self.assertEqual((pool.options["min_instances"], pool.options["cwd"]),
                         (2, os.path.join(self.runtime.data_dir, "sandbox", "e1")))
        self.assertIsInstance(self.runtime.registry, MirroredRegistry)
        self.assertIsInstance(self.runtime.routes, MirroredRoutes)
