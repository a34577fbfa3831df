"""
A data-plane process's side (edgegw_tx/processes/dataplane.py and
accept.py): the commands of the control process on a route table, fake
worker pools and a fake registry; adopting the inherited socket; draining
on shutdown (after the shutdown delay); the health path following the
control process; accepting so that connections spread over the processes.
"""

import json
import os
import socket

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from edgegw_tx.gateway.routes import Match, NoRoute, RouteTable
from edgegw_tx.processes.accept import ACCEPT_PAUSE_MAX, ACCEPT_PAUSE_STEP, BalancedAccept
from edgegw_tx.processes.dataplane import DataPlane
from tests.support.http import parse_responses
from tests.support.observe import ObservedFront
from tests.support.processes import FakeRegistry, FakeWorkerPool


class FakeFront:
    """The HTTP front's factory: builds protocols, records start and stop."""

    def __init__(self):
        self.started = self.stopped = 0

    def doStart(self):
        self.started += 1

    def doStop(self):
        self.stopped += 1

    def buildProtocol(self, addr):
        return _Protocol()


class _Protocol:
    transport = None

    def makeConnection(self, transport):
        self.transport = transport


class _Transport:
    def __init__(self):
        self.connected = True


class DataPlaneTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.routes = RouteTable()
        self.registry = FakeRegistry()
        self.front = FakeFront()
        self.notes = []
        self.pools = []
        self.listen_fd, self.other_end = os.pipe()
        self.addCleanup(self._close_fds)
        self.plane = DataPlane(
            self.routes,
            self.front,
            self.registry,
            listen_fd=self.listen_fd,
            family=socket.AF_INET6,
            index=2,
            pool_factory=self._pool,
            reactor=self.reactor,
        )
        self.plane.attach(lambda command, **args: self.notes.append((command, args)))
        self.commands = self.plane.responders()

    def _close_fds(self):
        for fd in (self.listen_fd, self.other_end):
            try:
                os.close(fd)
            except OSError:
                pass

    def _pool(self, *args, **kwargs):
        pool = FakeWorkerPool(*args, **kwargs)
        self.pools.append(pool)
        return pool

    def start(self, number=1, endpoint_id="e1", **options):
        options.setdefault("min_instances", 1)
        return self.commands["start_pool"](
            pool=number, endpoint_id=endpoint_id, name="hello", argv=["/bin/handler"], options=options
        )

    def test_start_pool_makes_a_pool_with_the_endpoint_call_handler(self):
        """start_pool makes a WorkerPool-like pool with the options, the endpoint's call handler and this reactor."""
        view = self.successResultOf(self.start(timeout=3.0, version="d1"))
        [pool] = self.pools
        self.assertEqual((pool.name, pool.argv), ("hello", ["/bin/handler"]))
        self.assertEqual(pool.options, {"min_instances": 1, "timeout": 3.0, "version": "d1"})
        self.assertEqual(pool.call_handler({}), {"ok": True, "data": "e1"})
        self.assertEqual(view["pool"], 1)
        self.assertEqual([w["pid"] for w in view["workers"]], pool._pids)
        self.assertEqual(view["stats"]["workers"], 1)

    def test_pool_log_lines_go_back_as_notes(self):
        """What a pool logs about its workers is sent to the control process as log notes."""
        self.successResultOf(self.start(number=3))
        [(command, args)] = self.notes
        self.assertEqual(command, "log")
        self.assertEqual((args["pool"], args["stream"]), (3, "gateway"))
        self.assertIn("is ready", args["line"])

    def test_a_pool_number_is_used_once(self):
        """Starting pool number n twice is an error."""
        self.successResultOf(self.start())
        self.assertRaises(ValueError, self.start)

    def test_route_points_at_the_local_pool(self):
        """route adds (domain, method, pattern) to the pool of that number; unroute removes it."""
        self.successResultOf(self.start())
        self.commands["route"](key="e1", routes=[["*", "GET", "/users/{id}"]], pool=1)
        found = self.routes.match("example.com", "GET", "/users/9")
        self.assertIsInstance(found, Match)
        self.assertIs(found.target, self.pools[0])
        self.commands["unroute"](key="e1")
        self.assertIsInstance(self.routes.match("example.com", "GET", "/users/9"), NoRoute)

    def test_route_to_an_unknown_pool_fails(self):
        """A route naming a pool this process does not have fails and changes nothing."""
        self.assertRaises(KeyError, self.commands["route"], key="e1", routes=[["*", "GET", "/a"]], pool=9)
        self.assertIsInstance(self.routes.match("x", "GET", "/a"), NoRoute)

    def test_stop_pool_drains_and_forgets_it(self):
        """stop_pool stops the pool and drops it from the snapshot; an unknown number is fine."""
        self.successResultOf(self.start(number=1))
        self.successResultOf(self.start(number=2))
        self.successResultOf(self.commands["stop_pool"](pool=1))
        self.assertEqual(self.pools[0].state, "stopped")
        self.assertEqual([v["pool"] for v in self.commands["snapshot"]()], [2])
        self.assertIsNone(self.commands["stop_pool"](pool=1))

    def test_services_and_bindings_go_to_the_registry(self):
        """configure_service, bind, unbind and remove_service are the registry's calls."""
        self.commands["configure_service"](service={"id": "s1", "service_type": "sqlite"})
        self.commands["bind"](endpoint_id="e1", pool_id="db", service_id="s1")
        self.assertEqual(self.registry.bound, {("e1", "db"): "s1"})
        self.commands["unbind"](endpoint_id="e1", pool_id="db")
        self.successResultOf(self.commands["remove_service"](service_id="s1"))
        self.assertEqual((self.registry.services, self.registry.bound), ({}, {}))

    def test_listen_adopts_the_inherited_socket_once(self):
        """listen adopts the fd with its family, behind the balancing factory, and closes its own copy."""
        answer = self.commands["listen"]()
        self.assertEqual(answer, {"pid": os.getpid()})
        [(fd, family, factory)] = self.reactor.adoptedPorts
        self.assertEqual((fd, family), (self.listen_fd, socket.AF_INET6))
        self.assertIsInstance(factory, BalancedAccept)
        self.assertIs(factory.factory, self.front)
        self.assertRaises(OSError, os.fstat, self.listen_fd)
        self.commands["listen"]()
        self.assertEqual(len(self.reactor.adoptedPorts), 1)

    def test_shutdown_stops_listening_drains_and_closes(self):
        """shutdown stops accepting, stops every pool and closes the registry; a second call waits for the same."""
        self.successResultOf(self.start(number=1))
        self.commands["listen"]()
        first = self.plane.shutdown()
        second = self.plane.shutdown()
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual([p.state for p in self.pools], ["stopped"])
        self.assertTrue(self.registry.closed)
        self.assertEqual(self.commands["snapshot"](), [])

    def test_shutdown_waits_for_the_pools(self):
        """shutdown fires only once every pool has stopped."""
        self.successResultOf(self.start())
        draining = Deferred()
        self.pools[0].stop = lambda: draining
        d = self.plane.shutdown()
        self.assertNoResult(d)
        draining.callback(None)
        self.successResultOf(d)

    def test_shutdown_before_listen_closes_the_socket(self):
        """A process stopped before it listened closes the inherited socket."""
        self.successResultOf(self.plane.shutdown())
        self.assertRaises(OSError, os.fstat, self.listen_fd)
        self.commands["listen"]()
        self.assertEqual(self.reactor.adoptedPorts, [])


class FakeTCPPort:
    """The parts of tcp.Port the balancing uses: accept up to numberAccepts from what is pending."""

    def __init__(self, factory):
        self.factory = factory
        self.numberAccepts = 100
        self.pending = 0
        self.reading = True
        self.connected = True
        self.transports = []

    def doRead(self):
        for _ in range(min(self.numberAccepts, self.pending)):
            self.pending -= 1
            protocol = self.factory.buildProtocol(None)
            transport = _Transport()
            transport.protocol = protocol  # as a real transport holds its protocol
            self.transports.append(transport)
            protocol.makeConnection(transport)
        self.numberAccepts += 20

    def stopReading(self):
        self.reading = False

    def startReading(self):
        self.reading = True


class BalancedAcceptTests(unittest.TestCase):
    def setUp(self):
        self.clock = MemoryReactorClock()
        self.front = FakeFront()
        self.factory = BalancedAccept(self.front, self.clock)
        self.port = FakeTCPPort(self.factory)
        self.factory.balance(self.port)

    def test_one_accept_per_wakeup(self):
        """However many connections wait, one wake-up accepts one."""
        self.port.pending = 10
        self.port.doRead()
        self.assertEqual((len(self.port.transports), self.factory.held), (1, 1))

    def test_pause_grows_with_the_connections_held(self):
        """After an accept the port stops reading for held x step, then reads again."""
        self.port.pending = 10
        self.port.doRead()
        self.assertFalse(self.port.reading)
        self.clock.advance(ACCEPT_PAUSE_STEP)
        self.assertTrue(self.port.reading)
        self.port.doRead()
        self.clock.advance(ACCEPT_PAUSE_STEP)
        self.assertFalse(self.port.reading)
        self.clock.advance(ACCEPT_PAUSE_STEP)
        self.assertTrue(self.port.reading)

    def test_pause_is_capped(self):
        """The pause never exceeds ACCEPT_PAUSE_MAX, however many connections are held."""
        self.port.pending = 1000
        for _ in range(200):
            self.port.doRead()
            self.clock.advance(ACCEPT_PAUSE_MAX)
        self.assertEqual(self.factory.held, 200)
        self.port.doRead()
        self.clock.advance(ACCEPT_PAUSE_MAX)
        self.assertTrue(self.port.reading)

    def test_closed_connections_are_not_held(self):
        """Only connections still open count, and closed ones are forgotten."""
        self.port.pending = 3
        self.port.doRead()
        self.clock.advance(ACCEPT_PAUSE_STEP)
        self.port.transports[0].connected = False
        self.assertEqual(self.factory.held, 0)
        self.assertEqual(self.factory._held, set())

    def test_a_closed_port_is_not_read_again(self):
        """A port closed during a pause stays closed; doStop cancels the pause."""
        self.port.pending = 2
        self.port.doRead()
        self.port.connected = False
        self.factory.doStop()
        self.clock.advance(ACCEPT_PAUSE_MAX)
        self.assertFalse(self.port.reading)
        self.assertEqual(self.front.stopped, 1)

    def test_factory_face(self):
        """The port logs under the real factory's name and starts and stops it."""
        self.factory.doStart()
        self.assertEqual((self.front.started, self.factory.logPrefix()), (1, "FakeFront"))

    def test_other_ports_are_left_alone(self):
        """A port without accept batching (not a tcp.Port) is not changed."""

        class Plain:
            def doRead(self):
                return "plain"

        port = Plain()
        self.factory.balance(port)
        self.assertEqual(port.doRead(), "plain")
        self.assertNotIn("doRead", vars(port))


class DataPlaneMetricsTests(unittest.TestCase):
    def test_metrics_command(self):
        """``metrics`` answers the process's request counters, service calls and open connections."""
        from edgegw_tx.observability.metrics import RequestMetrics, service_call_timings

        requests = RequestMetrics()
        requests.series("hello").record(b"GET", 200, 0, 5, 0.001)
        registry = FakeRegistry()
        registry.calls = service_call_timings()
        registry.calls.observe(("db1", "db", "ok"), 0.01)
        front = FakeFront()
        front.connections = {object()}
        plane = DataPlane(RouteTable(), front, registry, reactor=MemoryReactorClock(), request_metrics=requests)
        answer = plane.responders()["metrics"]()
        self.assertEqual(answer["requests"]["hello"]["counts"], [["GET", 200, 1]])
        self.assertEqual(answer["service_calls"]["counts"], [["db1", "db", "ok", 1]])
        self.assertEqual(answer["connections"], 1)


class DataPlaneHealthTests(unittest.TestCase):
    """
    The health path and unrouted answers of a data-plane process follow the
    control process (``restoring``, ``drain``), and ``shutdown`` serves on
    for the shutdown delay, on a Clock.
    """

    def setUp(self):
        self.front = ObservedFront()
        self.registry = FakeRegistry()
        self.pools = []
        self.plane = DataPlane(
            self.front.routes,
            self.front.factory,
            self.registry,
            pool_factory=self._pool,
            reactor=self.front.clock,
            observer=self.front.observer,
            shutdown_delay=5,
        )
        self.commands = self.plane.responders()

    def _pool(self, *args, **kwargs):
        pool = FakeWorkerPool(*args, **kwargs)
        self.pools.append(pool)
        return pool

    def get(self, path):
        """The status and body of GET ``path`` through this process's front (the body decoded when JSON)."""
        raw = self.front.exchange(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        [(status, _headers, body)] = [(r[0], r[1], r[2]) for r in parse_responses(raw)]
        return status, (json.loads(body) if body.startswith(b"{") else body)

    def test_restoring_answers_503_until_the_control_process_restored(self):
        """While ``restoring``: the health path says starting and an unrouted request gets the starting 503; then 200 and 404."""
        self.commands["restoring"](restoring=True)
        self.assertEqual(self.get("/healthz"), (503, {"status": "starting"}))
        status, body = self.get("/no/such")
        self.assertEqual((status, body["error"]), (503, "the gateway is starting; retry in a moment"))
        self.assertEqual(self.get("/a")[0], 200)
        self.commands["restoring"](restoring=False)
        self.assertEqual(self.get("/healthz"), (200, {"status": "serving"}))
        self.assertEqual(self.get("/no/such")[0], 404)

    def test_drain_turns_health_to_503_and_requests_go_on(self):
        """``drain``: the health path says draining at once; a routed request is still served."""
        self.commands["drain"]()
        self.assertEqual(self.get("/healthz"), (503, {"status": "draining"}))
        self.assertEqual(self.get("/a")[0], 200)

    def test_shutdown_serves_on_for_the_delay(self):
        """shutdown drains at once but stops the pools and registry only after the delay."""
        self.successResultOf(self.commands["start_pool"](pool=1, endpoint_id="e1", name="hello", argv=["/h"], options={}))
        d = self.plane.shutdown()
        self.assertEqual(self.get("/healthz")[0], 503)
        self.front.clock.advance(4.9)
        self.assertNoResult(d)
        self.assertEqual([p.state for p in self.pools], ["running"])
        self.assertFalse(self.registry.closed)
        self.assertEqual(self.get("/a")[0], 200)
        self.front.clock.advance(0.1)
        self.successResultOf(d)
        self.assertEqual([p.state for p in self.pools], ["stopped"])
        self.assertTrue(self.registry.closed)

    def test_shutdown_after_drain_waits_only_what_is_left(self):
        """After ``drain`` (the control process waited meanwhile), shutdown waits the rest of the delay only."""
        self.commands["drain"]()
        self.front.clock.advance(4)
        d = self.plane.shutdown()
        self.front.clock.advance(0.5)
        self.assertNoResult(d)
        self.front.clock.advance(0.5)
        self.successResultOf(d)
        self.front.clock.advance(60)
        d = self.plane.shutdown()
        self.successResultOf(d)

    def test_no_delay_stops_at_once(self):
        """With a delay of 0 (the default) shutdown does not wait for the clock."""
        plane = DataPlane(self.front.routes, self.front.factory, FakeRegistry(), reactor=self.front.clock,
                          observer=self.front.observer)
        self.successResultOf(plane.shutdown())
        self.assertTrue(self.front.observer.draining)
