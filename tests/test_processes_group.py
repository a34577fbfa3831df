"""
The data-plane processes as the control process runs them
(edgegw_tx/processes/group.py and state.py): one socket bound once, N
processes spawned with it, every change sent to all, replay and respawn,
stop and reap. The processes are in-memory loopbacks running the real
DataPlane (tests/support_processes.py).
"""

import os

from twisted.internet.defer import Deferred
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from edgegw_tx.processes.group import LISTEN_FD, NotSharable, ProcessGroup, check_sharable
from edgegw_tx.processes.proxies import PoolProxy
from edgegw_tx.processes.state import PlaneState
from tests.support.processes import LoopbackReactor


def logged(test_case):
    """Collect the text of every log event during the test."""
    from twisted.logger import formatEvent

    events = []

    def observer(event):
        events.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    test_case.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


class GroupTestCase(unittest.TestCase):
    count = 2

    def setUp(self):
        self.reactor = LoopbackReactor()
        self.group = ProcessGroup(
            self.count,
            "tcp:9080:interface=127.0.0.1",
            "/data",
            http="httptools",
            environ={"PATH": "/usr/bin", "PYTHONPATH": "/elsewhere", "SECRET": "kept"},
            executable="/venv/bin/python",
            reactor=self.reactor,
        )

    def start(self):
        self.group.startService()
        self.addCleanup(self.stop)

    def stop(self):
        if self.group.running:
            return self.group.stopService()

    def pool(self, name="hello", **options):
        options.setdefault("min_instances", 1)
        return PoolProxy(self.group, name, ["/artifacts/d1/handler"], endpoint_id="e1", **options)


class StartTests(GroupTestCase):
    def test_binds_once_and_never_accepts_itself(self):
        """startService listens on --listen once and stops reading: only the data planes accept."""
        self.start()
        [port] = self.reactor.ports
        self.assertEqual(port.port, 9080)
        self.assertFalse(port.reading)
        self.assertIs(self.successResultOf(self.group.when_listening()), port)

    def test_spawns_n_processes_sharing_the_socket(self):
        """Each process runs the child module with its index and gets the socket as fd 3."""
        self.start()
        self.assertEqual(len(self.reactor.processes), 2)
        for index, process in enumerate(self.reactor.processes, 1):
            self.assertEqual(
                process.argv,
                [
                    "/venv/bin/python", "-m", "edgegw_tx.processes.child", "--data-dir", "/data",
                    "--index", str(index), "--listen-fd", "3", "--family", "inet", "--http", "httptools",
                ],
            )
            self.assertEqual(process.childFDs, {0: "w", 1: "r", 2: "r", LISTEN_FD: 7})

    def test_explicit_environment_with_this_source_first(self):
        """The processes get the given environment, with this source tree first on PYTHONPATH."""
        self.start()
        env = self.reactor.processes[0].env
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.assertEqual(env["PYTHONPATH"], os.pathsep.join([root, "/elsewhere"]))
        self.assertEqual((env["PATH"], env["SECRET"]), ("/usr/bin", "kept"))

    def test_a_process_listens_once_it_has_the_state(self):
        """With nothing deployed, a new process is only told to listen; then it counts as serving."""
        self.start()
        for process in self.reactor.processes:
            self.assertEqual(process.command_names(), ["listen"])
        self.assertTrue(all(p.serving for p in self.group.processes()))

    def test_a_taken_port_fails_the_start(self):
        """When the socket cannot be bound, startService raises and nothing is spawned."""
        from twisted.internet.error import CannotListenError

        def taken(*args, **kwargs):
            raise CannotListenError("127.0.0.1", 9080, OSError("in use"))

        self.reactor.listenTCP = taken
        self.assertRaises(CannotListenError, self.group.startService)
        self.assertEqual(self.reactor.processes, [])

    def test_the_count_must_be_positive(self):
        """A group of zero processes is refused."""
        self.assertRaises(ValueError, ProcessGroup, 0, "tcp:9080", "/data", reactor=self.reactor)

    def test_only_tcp_is_shared(self):
        """A unix or TLS --listen cannot be shared: NotSharable names it and says what to do."""
        check_sharable("tcp:9080:interface=127.0.0.1")
        check_sharable("tcp6:9080")
        error = self.assertRaises(NotSharable, check_sharable, "unix:/tmp/edgegw.sock")
        self.assertIn("'unix:/tmp/edgegw.sock'", str(error))
        self.assertIn("tcp: or tcp6:", str(error))
        self.assertRaises(NotSharable, ProcessGroup, 2, "unix:/tmp/x.sock", "/data", reactor=self.reactor)

    def test_stderr_of_a_process_is_logged_with_its_index(self):
        """Lines a process writes to stderr land in the control process's log, prefixed."""
        events = logged(self)
        self.start()
        self.reactor.processes[1].stderr("Traceback (most recent call last):\n  boom\npartial")
        self.assertIn("[data plane 2] Traceback (most recent call last):", events)
        self.assertIn("[data plane 2]   boom", events)
        self.assertNotIn("[data plane 2] partial", events)


class ChangeTests(GroupTestCase):
    def test_change_reaches_every_process_and_fires_when_all_answered(self):
        """change() records the command and sends it to each live process; it fires once all applied it."""
        self.reactor.auto_boot = False
        self.start()
        d = self.group.change("bind", endpoint_id="e1", pool_id="db", service_id="s1")
        self.assertNoResult(d)
        self.reactor.processes[0].boot()
        self.assertNoResult(d)
        self.reactor.processes[1].boot()
        self.assertIsNone(self.successResultOf(d))
        for process in self.reactor.processes:
            self.assertEqual(process.registry.bound, {("e1", "db"): "s1"})
        self.assertEqual(self.group.state.bindings, {("e1", "db"): "s1"})

    def test_a_failed_change_is_logged_not_raised(self):
        """A process that cannot apply a change is logged; the change still completes."""
        events = logged(self)
        self.start()
        d = self.group.change("route", key="e1", routes=[["*", "GET", "/x"]], pool=99)
        self.assertIsNone(self.successResultOf(d))
        self.assertTrue(any("data plane 1: route failed" in e and "no pool 99" in e for e in events), events)
        # The data planes log the traceback of a command they could not run.
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 2)

    def test_a_change_not_acknowledged_in_time_is_logged(self):
        """A process that does not answer within answer_timeout is logged and not waited for."""
        events = logged(self)
        self.reactor.auto_boot = False
        self.start()
        self.reactor.processes[0].boot()
        d = self.group.change("unbind", endpoint_id="e1", pool_id="db")
        self.assertNoResult(d)
        self.reactor.advance(self.group.answer_timeout)
        self.successResultOf(d)
        self.assertTrue(any("data plane 2 did not acknowledge unbind" in e for e in events), events)

    def test_worker_log_lines_reach_their_pool(self):
        """log notes from any process go to the log of the pool they name."""
        lines = []
        self.start()
        pool = self.pool(log=lambda stream, line: lines.append((stream, line)))
        self.successResultOf(pool.start())
        self.assertEqual(len(lines), 2)
        self.assertTrue(all(stream == "gateway" and "is ready" in line for stream, line in lines))
        self.group.worker_log(12345, "stderr", "for a pool nobody knows")
        self.assertEqual(len(lines), 2)


class PlaneStateTests(unittest.TestCase):
    def test_replay_orders_services_bindings_pools_routes(self):
        """Replay gives services, then bindings, then pools, then routes, each as last set."""
        state = PlaneState()
        state.apply("route", {"key": "e1", "routes": [["*", "GET", "/a"]], "pool": 1})
        state.apply("start_pool", {"pool": 1, "name": "a"})
        state.apply("bind", {"endpoint_id": "e1", "pool_id": "db", "service_id": "s1"})
        state.apply("configure_service", {"service": {"id": "s1", "config": {"path": "a"}}})
        state.apply("start_pool", {"pool": 2, "name": "a"})
        state.apply("route", {"key": "e1", "routes": [["*", "GET", "/a"]], "pool": 2})
        state.apply("stop_pool", {"pool": 1})
        state.apply("configure_service", {"service": {"id": "s1", "config": {"path": "b"}}})
        self.assertEqual(
            state.replay(),
            [
                ("configure_service", {"service": {"id": "s1", "config": {"path": "b"}}}),
                ("bind", {"endpoint_id": "e1", "pool_id": "db", "service_id": "s1"}),
                ("start_pool", {"pool": 2, "name": "a"}),
                ("route", {"key": "e1", "routes": [["*", "GET", "/a"]], "pool": 2}),
            ],
        )

    def test_removals_leave_nothing(self):
        """unroute, unbind, remove_service and stop_pool undo what they name."""
        state = PlaneState()
        state.apply("configure_service", {"service": {"id": "s1"}})
        state.apply("bind", {"endpoint_id": "e1", "pool_id": "db", "service_id": "s1"})
        state.apply("start_pool", {"pool": 1})
        state.apply("route", {"key": "e1", "pool": 1})
        state.apply("unroute", {"key": "e1"})
        state.apply("stop_pool", {"pool": 1})
        state.apply("unbind", {"endpoint_id": "e1", "pool_id": "db"})
        state.apply("remove_service", {"service_id": "s1"})
        self.assertEqual(state.replay(), [])

    def test_health_comes_first_and_only_when_not_serving(self):
        """drain and restoring are replayed before everything else; restoring ended leaves nothing."""
        state = PlaneState()
        state.apply("restoring", {"restoring": True})
        state.apply("start_pool", {"pool": 1})
        self.assertEqual(state.replay(), [("restoring", {"restoring": True}), ("start_pool", {"pool": 1})])
        state.apply("restoring", {"restoring": False})
        self.assertEqual(state.replay(), [("start_pool", {"pool": 1})])
        state.apply("drain", {})
        self.assertEqual(state.replay(), [("drain", {}), ("start_pool", {"pool": 1})])

    def test_queries_are_not_state(self):
        """A command that changes nothing (snapshot, listen) is refused."""
        self.assertRaises(ValueError, PlaneState().apply, "snapshot", {})


class RespawnTests(GroupTestCase):
    def deploy(self):
        """A pool and its route, a service and a binding, as the managers would make them."""
        self.start()
        self.successResultOf(self.group.change("configure_service", service={"id": "s1", "name": "db"}))
        self.successResultOf(self.group.change("bind", endpoint_id="e1", pool_id="db", service_id="s1"))
        pool = self.pool()
        self.successResultOf(pool.start())
        self.successResultOf(
            self.group.change("route", key="e1", routes=[["*", "GET", "/hello"]], pool=pool.number)
        )
        return pool

    def test_a_process_that_dies_is_respawned_with_the_current_state(self):
        """After a crash, a new process takes its place and gets services, bindings, pools and routes, then listen."""
        pool = self.deploy()
        first, second = self.reactor.processes
        first.exit(signal=9)
        self.assertEqual(len(self.reactor.processes), 2)
        self.reactor.advance(self.group.min_restart_delay)
        third = self.reactor.processes[2]
        self.assertEqual(third.argv[third.argv.index("--index") + 1], "1")
        self.assertEqual(
            third.command_names(), ["configure_service", "bind", "start_pool", "route", "listen"]
        )
        self.assertEqual(third.registry.bound, {("e1", "db"): "s1"})
        self.assertEqual(type(third.routes.match("any", "GET", "/hello")).__name__, "Match")
        self.assertEqual(sorted(w["process"] for w in pool.workers()), [1, 2])
        self.assertEqual([p.index for p in self.group.processes()], [1, 2])

    def test_a_respawn_while_restoring_or_draining_says_so_first(self):
        """A process respawned while the control process restores, or drains, is told before it listens."""
        self.start()
        self.successResultOf(self.group.change("restoring", restoring=True))
        first, second = self.reactor.processes
        self.assertTrue(first.routes.restoring)
        first.exit(signal=9)
        self.reactor.advance(self.group.min_restart_delay)
        third = self.reactor.processes[2]
        self.assertEqual(third.command_names(), ["restoring", "listen"])
        self.assertTrue(third.routes.restoring)
        self.successResultOf(self.group.change("restoring", restoring=False))
        self.successResultOf(self.group.drain())
        self.assertEqual([p.plane.draining_since for p in (second, third)], [self.reactor.seconds()] * 2)
        third.exit(signal=9)
        self.reactor.advance(self.group.max_restart_delay)  # a second crash of place 1: a longer delay
        fourth = self.reactor.processes[3]
        self.assertEqual(fourth.command_names(), ["drain", "listen"])
        self.assertFalse(fourth.routes.restoring)
        self.assertIsNotNone(fourth.plane.draining_since)

    def test_the_dead_process_workers_disappear_from_the_views(self):
        """The workers of a process that ended are no longer shown."""
        self.start()
        pool = self.pool()
        self.successResultOf(pool.start())
        self.assertEqual(len(pool.pids), 2)
        self.reactor.processes[1].exit(code=1)
        self.assertEqual([w["process"] for w in pool.workers()], [1])

    def test_respawn_waits_until_its_pools_are_started_before_listening(self):
        """A respawned process is told to listen only after its pools answered."""
        self.deploy()
        self.reactor.auto_boot = False
        self.reactor.processes[0].exit(signal=9)
        self.reactor.advance(self.group.min_restart_delay)
        new = self.reactor.processes[-1]
        self.assertFalse(self.group.processes()[0].serving)
        new.boot()
        self.assertEqual(new.command_names()[-1], "listen")
        self.assertTrue(self.group.processes()[0].serving)

    def test_a_pool_that_fails_in_the_respawn_is_logged_and_the_rest_goes_on(self):
        """A replayed command that fails is logged; the process still listens."""
        events = logged(self)
        self.start()
        pool = self.pool(env={"FAIL_START": ""})
        self.successResultOf(pool.start())
        self.group.state.pools[pool.number]["options"]["env"] = {"FAIL_START": "1"}
        self.reactor.processes[0].exit(signal=9)
        self.reactor.advance(self.group.min_restart_delay)
        self.assertEqual(self.reactor.processes[-1].command_names(), ["start_pool", "listen"])
        self.assertTrue(any("data plane 1: start_pool failed" in e for e in events), events)

    def test_restart_delay_doubles_while_crashing_and_resets_once_stable(self):
        """Quick deaths double the delay up to the maximum; a process that lived stable_time resets it."""
        self.start()

        def first():
            [process] = [p for p in self.reactor.live() if p.argv[p.argv.index("--index") + 1] == "1"]
            return process

        delays = []
        for _ in range(10):
            first().exit(code=1)
            [respawn] = self.reactor.getDelayedCalls()
            delay = respawn.getTime() - self.reactor.seconds()
            delays.append(round(delay, 3))
            self.reactor.advance(delay)
        self.assertEqual(delays[:4], [0.1, 0.2, 0.4, 0.8])
        self.assertEqual(delays[-1], self.group.max_restart_delay)
        self.reactor.advance(self.group.stable_time)
        first().exit(code=1)
        self.reactor.advance(self.group.min_restart_delay)
        self.assertEqual(len(self.reactor.live()), 2)

    def test_a_spawn_that_fails_is_retried(self):
        """When spawnProcess raises, the place is retried after the restart delay."""
        self.start()
        self.reactor.spawn_error = OSError("no more processes")
        self.reactor.processes[0].exit(code=1)
        self.reactor.advance(self.group.min_restart_delay)
        self.assertEqual(len(self.group.processes()), 1)
        self.reactor.spawn_error = None
        self.reactor.advance(self.group.min_restart_delay * 2)
        self.assertEqual(len(self.group.processes()), 2)
        self.flushLoggedErrors()


class StopTests(GroupTestCase):
    def test_stop_closes_stdin_and_fires_when_every_process_is_reaped(self):
        """stopService closes the socket and each process's stdin; they drain and exit; nothing respawns."""
        self.start()
        pool = self.pool()
        self.successResultOf(pool.start())
        processes = list(self.reactor.processes)
        d = self.group.stopService()
        self.successResultOf(d)
        self.assertFalse(self.reactor.ports[0].listening)
        for process in processes:
            self.assertTrue(process.stdin_closed)
            self.assertTrue(process.ended)
            self.assertEqual(process.signals, [])
            # The process drained its pools before it ended.
            self.assertTrue(all(p.state == "stopped" for p in process.pools))
            self.assertTrue(process.registry.closed)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 2)
        self.assertEqual(self.group.processes(), [])

    def test_a_process_that_lingers_gets_term_then_kill(self):
        """A process still running stop_timeout after its stdin closed gets SIGTERM, then SIGKILL."""
        self.reactor.auto_boot = False
        self.start()
        for process in self.reactor.processes:
            process._closed = lambda: None  # hangs instead of draining
        self.reactor.processes[0].boot()
        d = self.group.stopService()
        self.assertNoResult(d)
        self.reactor.advance(self.group.stop_timeout)
        self.assertEqual([p.signals for p in self.reactor.processes], [["TERM"], ["TERM"]])
        self.assertNoResult(d)
        self.reactor.advance(self.group.kill_time)
        self.assertEqual([p.signals for p in self.reactor.processes], [["TERM", "KILL"], ["TERM", "KILL"]])
        self.successResultOf(d)

    def test_a_pending_respawn_is_cancelled(self):
        """A respawn scheduled before the stop never happens."""
        self.start()
        self.reactor.processes[0].exit(signal=9)
        self.successResultOf(self.group.stopService())
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 2)


class RefreshTests(GroupTestCase):
    def test_refresh_gives_each_pool_the_views_of_every_process(self):
        """refresh() asks each process for a snapshot; the pools then show what the processes have now."""
        self.start()
        pool = self.pool()
        self.successResultOf(pool.start())
        for process in self.reactor.processes:
            process.plane._pools[pool.number].served = 5
        self.assertEqual(pool.stats()["served"], 0)
        self.successResultOf(self.group.refresh())
        self.assertEqual(pool.stats()["served"], 10)
        self.assertEqual([w["served"] for w in pool.workers()], [5, 5])

    def test_refresh_waits_for_no_process_that_is_not_up(self):
        """A process that has not said hello yet is not asked (it would answer late)."""
        self.reactor.auto_boot = False
        self.start()
        self.reactor.processes[0].boot()
        self.successResultOf(self.group.refresh())

    def test_a_process_that_does_not_answer_keeps_its_last_view(self):
        """A snapshot not given within refresh_timeout leaves the last view; refresh still fires."""
        self.start()
        pool = self.pool()
        self.successResultOf(pool.start())
        stuck = self.reactor.processes[1]
        stuck.plane.snapshot = lambda: Deferred()
        stuck.channel._responders["snapshot"] = lambda: Deferred()
        d = self.group.refresh()
        self.assertNoResult(d)
        self.reactor.advance(self.group.refresh_timeout)
        self.successResultOf(d)
        self.assertEqual(sorted(w["process"] for w in pool.workers()), [1, 2])

    def test_calls_during_a_refresh_share_it(self):
        """A refresh asked for while one runs waits for that one: one snapshot per process."""
        self.start()
        stuck = self.reactor.processes[1]
        answer = Deferred()
        stuck.channel._responders["snapshot"] = lambda: answer
        first = self.group.refresh()
        second = self.group.refresh()
        answer.callback([])
        self.successResultOf(first)
        self.successResultOf(second)

    def test_a_snapshot_asked_before_a_pool_started_keeps_its_view(self):
        """A snapshot that does not have a pool yet (asked before its start) does not erase what the start said."""
        self.start()
        asked = [Deferred(), Deferred()]
        for process, answer in zip(self.reactor.processes, asked):
            process.channel._responders["snapshot"] = lambda answer=answer: answer
        d = self.group.refresh()
        pool = self.pool()
        self.successResultOf(pool.start())
        for answer in asked:
            answer.callback([])
        self.successResultOf(d)
        self.assertEqual(sorted(w["process"] for w in pool.workers()), [1, 2])


class PrivilegedStartTests(GroupTestCase):
    def test_the_socket_is_bound_before_privileges_are_dropped(self):
        """privilegedStartService binds (so twistd --uid may use port 80); startService then only spawns."""
        self.group.privilegedStartService()
        self.assertEqual(len(self.reactor.ports), 1)
        self.assertEqual(self.reactor.processes, [])
        self.start()
        self.assertEqual(len(self.reactor.ports), 1)
        self.assertEqual(len(self.reactor.processes), 2)


class MetricsTests(GroupTestCase):
    """``ProcessGroup.metrics``: every data-plane process's counters, for ``GET /metrics`` to add up."""

    def test_two_processes_sum(self):
        """Requests counted in two processes come back as two snapshots that add up to the sum."""
        from edgegw_tx.observability.metrics import merge_planes

        self.start()
        first, second = (process.plane.request_metrics for process in self.reactor.processes)
        first.series("hello").record(b"GET", 200, 0, 5, 0.001)
        second.series("hello").record(b"GET", 200, 0, 5, 0.001)
        second.series("hello").record(b"GET", 200, 0, 5, 0.001)
        planes = self.successResultOf(self.group.metrics())
        self.assertEqual(len(planes), 2)
        merged = merge_planes(planes)
        self.assertEqual(merged["requests"]["hello"]["counts"], [["GET", 200, 3]])

    def test_a_process_that_does_not_answer_is_left_out(self):
        """A process silent for ``refresh_timeout`` is left out; the others' counters still come back."""
        self.start()
        self.reactor.processes[1].channel._responders["metrics"] = lambda: Deferred()
        self.reactor.processes[0].plane.request_metrics.series("hello").record(b"GET", 200, 0, 5, 0.001)
        d = self.group.metrics()
        self.assertNoResult(d)
        self.reactor.advance(self.group.refresh_timeout)
        [plane] = self.successResultOf(d)
        self.assertEqual(plane["requests"]["hello"]["counts"], [["GET", 200, 1]])
