"""
The control process's stand-ins for what lives in the data-plane processes
(edgegw_tx/processes/proxies.py): a pool proxy fanning out to a pool per
process and summing what they report, the mirrored route table and the
mirrored service registry; over in-memory data-plane processes running the
real DataPlane (tests/support_processes.py).
"""

from twisted.trial import unittest

from edgegw_tx.errors import PoolStopped
from edgegw_tx.gateway.routes import Match, NoRoute, RouteConflict, RouteTable
from edgegw_tx.paths import parse_pattern
from edgegw_tx.processes.channel import RemoteError
from edgegw_tx.processes.group import ProcessGroup
from edgegw_tx.processes.proxies import MirroredRegistry, MirroredRoutes, PoolProxy
from edgegw_tx.services.config import ConfigError
from edgegw_tx.services.registry import ServiceRegistry
from tests.support.processes import LoopbackReactor


class ProxyTestCase(unittest.TestCase):
    def setUp(self):
        self.reactor = LoopbackReactor()
        self.group = ProcessGroup(2, "tcp:9080", "/data", environ={}, reactor=self.reactor)
        self.group.startService()
        self.addCleanup(self.group.stopService)
        self.lines = []

    def pool(self, name="hello", version="d1", **options):
        options.setdefault("min_instances", 1)
        options.setdefault("max_instances", 4)
        return PoolProxy(
            self.group,
            name,
            ["/artifacts/%s/handler" % version],
            endpoint_id="e1",
            log=lambda stream, line: self.lines.append((stream, line)),
            version=version,
            cwd="/data/sandbox/e1",
            **options,
        )

    def plane_pool(self, process, proxy):
        """The pool a data-plane process runs for ``proxy``."""
        return process.plane._pools.get(proxy.number)


class PoolProxyTests(ProxyTestCase):
    def test_start_starts_one_pool_per_process_with_the_same_spec(self):
        """start() makes the pool in every process, with the binary and WorkerPool options as given."""
        proxy = self.pool(timeout=5.0, env={"A": "1"})
        pids = self.successResultOf(proxy.start())
        self.assertEqual(len(pids), 2)
        for process in self.reactor.processes:
            pool = self.plane_pool(process, proxy)
            self.assertEqual((pool.name, pool.argv), ("hello", ["/artifacts/d1/handler"]))
            self.assertEqual(
                pool.options,
                {"min_instances": 1, "max_instances": 4, "timeout": 5.0, "env": {"A": "1"},
                 "version": "d1", "cwd": "/data/sandbox/e1"},
            )
            self.assertEqual(pool.call_handler({}), {"ok": True, "data": "e1"})

    def test_workers_pids_and_stats_cover_every_process(self):
        """workers() lists each process's workers tagged with its index; stats() sums the counters."""
        proxy = self.pool(min_instances=2)
        pids = self.successResultOf(proxy.start())
        self.assertEqual(len(pids), 4)
        self.assertEqual([w["process"] for w in proxy.workers()], [1, 1, 2, 2])
        self.assertEqual(proxy.pids, [w["pid"] for w in proxy.workers()])
        stats = proxy.stats()
        self.assertEqual(
            {k: stats[k] for k in ("name", "state", "version", "workers", "ready", "processes", "min_instances")},
            {"name": "hello", "state": "running", "version": "d1", "workers": 4, "ready": 4,
             "processes": 2, "min_instances": 2},
        )

    def test_a_failure_in_one_process_fails_the_start(self):
        """If the pool fails to start in a process, start() fails with what that process said."""
        proxy = self.pool(env={"FAIL_START": "1"})
        failure = self.failureResultOf(proxy.start(), RemoteError)
        self.assertIn("status 3 before it was ready", str(failure.value))
        self.successResultOf(proxy.stop())
        self.assertEqual([p.plane._pools for p in self.reactor.processes], [{}, {}])

    def test_a_process_that_goes_away_during_start_is_skipped(self):
        """A process ending before it answered does not fail the start; its respawn gets the pool."""
        first, second = self.reactor.processes
        second.pause()
        proxy = self.pool()
        d = proxy.start()
        self.assertNoResult(d)
        second.exit(signal=9)
        self.successResultOf(d)
        self.assertEqual([w["process"] for w in proxy.workers()], [1])
        self.reactor.advance(self.group.min_restart_delay)
        self.assertEqual([w["process"] for w in proxy.workers()], [1, 2])

    def test_log_lines_of_every_process_reach_the_log(self):
        """The pools' lines from both processes go to the proxy's log."""
        self.successResultOf(self.pool().start())
        self.assertEqual(len([line for stream, line in self.lines if "is ready" in line]), 2)

    def test_stop_drains_the_pool_in_every_process(self):
        """stop() stops the pool everywhere; it is no longer replayed, shown or given log lines."""
        proxy = self.pool()
        self.successResultOf(proxy.start())
        pools = [self.plane_pool(p, proxy) for p in self.reactor.processes]
        self.successResultOf(proxy.stop())
        self.assertEqual([p.state for p in pools], ["stopped", "stopped"])
        self.assertEqual((proxy.workers(), proxy.pids, proxy.stats()["state"]), ([], [], "stopped"))
        self.assertNotIn(proxy.number, self.group.state.pools)
        self.group.worker_log(proxy.number, "stderr", "late")
        self.assertNotIn(("stderr", "late"), self.lines)

    def test_stop_before_start_sends_nothing(self):
        """A proxy never started stops at once."""
        proxy = self.pool()
        self.successResultOf(proxy.stop())
        self.assertEqual([p.command_names() for p in self.reactor.processes], [["listen"], ["listen"]])

    def test_requests_are_not_served_here(self):
        """The control process serves no traffic: request() fails with PoolStopped."""
        self.failureResultOf(self.pool().request({"type": "request"}), PoolStopped)

    def test_started_twice_is_refused(self):
        """Like WorkerPool, a proxy starts once."""
        proxy = self.pool()
        self.successResultOf(proxy.start())
        self.failureResultOf(proxy.start(), RuntimeError)


class MirroredRoutesTests(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.table = RouteTable()
        self.routes = MirroredRoutes(self.group, self.table)

    def test_add_routes_every_process_to_its_own_pool(self):
        """add() routes here and in every process, to that process's pool; it fires once all have it."""
        proxy = self.pool()
        self.successResultOf(proxy.start())
        d = self.routes.add("e1", "*", "GET", parse_pattern("/users/{id}"), proxy)
        self.successResultOf(d)
        self.assertIsInstance(self.routes.match("x", "GET", "/users/7"), Match)
        for process in self.reactor.processes:
            found = process.routes.match("x", "GET", "/users/7")
            self.assertIs(found.target, self.plane_pool(process, proxy))
            self.assertEqual(found.params, {"id": "7"})

    def test_place_sends_a_keys_routes_as_one_command(self):
        """place() gives every process the key's whole set in one route command; a new set replaces it whole."""
        proxy = self.pool()
        self.successResultOf(proxy.start())
        crud = [("*", "GET", "/notes"), ("*", "POST", "/notes"), ("*", "DELETE", parse_pattern("/notes/{id}"))]
        self.successResultOf(self.routes.place("e1", crud, proxy))
        for process in self.reactor.processes:
            self.assertEqual(process.command_names().count("route"), 1)
            for method, path in (("GET", "/notes"), ("POST", "/notes"), ("DELETE", "/notes/4")):
                self.assertIs(process.routes.match("x", method, path).target, self.plane_pool(process, proxy))
        self.successResultOf(self.routes.place("e1", crud[:1], proxy))
        for process in self.reactor.processes:
            self.assertNotIsInstance(process.routes.match("x", "DELETE", "/notes/4"), Match)
            self.assertIsInstance(process.routes.match("x", "GET", "/notes"), Match)

    def test_restoring_is_set_here_and_in_every_process(self):
        """Setting restoring sets the local table's and every process's (503 for unrouted requests there)."""
        self.routes.restoring = True
        self.assertTrue(self.table.restoring)
        self.assertTrue(self.routes.restoring)
        self.assertEqual([p.routes.restoring for p in self.reactor.processes], [True, True])
        self.routes.restoring = False
        self.assertFalse(self.routes.restoring)
        self.assertEqual([p.routes.restoring for p in self.reactor.processes], [False, False])

    def test_a_conflict_raises_here_and_sends_nothing(self):
        """A route clash raises RouteConflict at once; no process hears of it."""
        first, second = self.pool(), self.pool("other")
        self.successResultOf(first.start())
        self.successResultOf(second.start())
        self.successResultOf(self.routes.add("e1", "*", "GET", parse_pattern("/a/{x}"), first))
        before = [len(p.commands) for p in self.reactor.processes]
        self.assertRaises(RouteConflict, self.routes.add, "e2", "*", "GET", parse_pattern("/a/{y}"), second)
        self.assertEqual([len(p.commands) for p in self.reactor.processes], before)

    def test_remove_unroutes_every_process(self):
        """remove() answers as RouteTable.remove does and unroutes every process."""
        proxy = self.pool()
        self.successResultOf(proxy.start())
        self.successResultOf(self.routes.add("e1", "*", "GET", "/a", proxy))
        self.assertTrue(self.routes.remove("e1"))
        self.assertFalse(self.routes.remove("e1"))
        for process in self.reactor.processes:
            self.assertIsInstance(process.routes.match("x", "GET", "/a"), NoRoute)
            self.assertEqual(process.command_names().count("unroute"), 1)

    def test_a_switch_starts_routes_then_drains_in_every_process(self):
        """A redeploy: each process starts the new pool, then routes to it, then drains the old one."""
        old, new = self.pool(version="d1"), self.pool(version="d2")
        self.successResultOf(old.start())
        self.successResultOf(self.routes.add("e1", "*", "GET", "/a", old))
        self.successResultOf(new.start())
        self.successResultOf(self.routes.add("e1", "*", "GET", "/a", new))
        self.successResultOf(old.stop())
        for process in self.reactor.processes:
            self.assertEqual(
                [(name, args.get("pool")) for name, args in process.commands],
                [("listen", None), ("start_pool", old.number), ("route", old.number),
                 ("start_pool", new.number), ("route", new.number), ("stop_pool", old.number)],
            )
            self.assertIs(process.routes.match("x", "GET", "/a").target, self.plane_pool(process, new))


class MirroredRegistryTests(ProxyTestCase):
    def setUp(self):
        super().setUp()
        self.local = ServiceRegistry(self.mktemp(), reactor=self.reactor)
        self.registry = MirroredRegistry(self.local, self.group)

    def service(self, **config):
        return {"id": "s1", "name": "notes", "service_type": "sqlite", "config": config}

    def test_configure_and_bind_reach_every_process(self):
        """A service and a binding are checked here, then given to every process's registry."""
        self.successResultOf(self.registry.configure(self.service()))
        self.successResultOf(self.registry.bind("e1", "db", "s1"))
        self.assertEqual(self.registry.service_ids(), ["s1"])
        self.assertEqual(self.registry.bindings("e1"), {"db": "s1"})
        for process in self.reactor.processes:
            self.assertEqual(process.registry.services["s1"]["service_type"], "sqlite")
            self.assertEqual(process.registry.bound, {("e1", "db"): "s1"})

    def test_an_invalid_config_raises_and_sends_nothing(self):
        """ConfigError is raised here and no process hears of the service."""
        self.assertRaises(ConfigError, self.registry.configure, self.service(path="/etc/passwd"))
        self.assertEqual([p.registry.services for p in self.reactor.processes], [{}, {}])

    def test_unbind_and_remove_reach_every_process(self):
        """unbind and remove undo the binding and the service everywhere."""
        self.successResultOf(self.registry.configure(self.service()))
        self.successResultOf(self.registry.bind("e1", "db", "s1"))
        self.successResultOf(self.registry.unbind("e1", "db"))
        self.successResultOf(self.registry.remove("s1"))
        for process in self.reactor.processes:
            self.assertEqual((process.registry.services, process.registry.bound), ({}, {}))
        self.assertEqual(self.group.state.replay(), [])

    def test_a_respawned_process_gets_the_services_and_bindings(self):
        """A process that starts later is given every service and binding first."""
        self.successResultOf(self.registry.configure(self.service()))
        self.successResultOf(self.registry.bind("e1", "db", "s1"))
        self.reactor.processes[0].exit(signal=9)
        self.reactor.advance(self.group.min_restart_delay)
        new = self.reactor.processes[-1]
        self.assertEqual(new.command_names(), ["configure_service", "bind", "listen"])
        self.assertEqual(new.registry.bound, {("e1", "db"): "s1"})
