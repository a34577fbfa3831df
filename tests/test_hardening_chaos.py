"""
The gateway under chaos, across restarts, and what it leaves behind (the
"Hardening" issue, cases 17-19), with real worker processes and, for 18 and
19, a real ``twistd edgegw`` process.

Case 17 runs for ``EDGEGW_CHAOS_SECONDS`` seconds (15 by default; the issue's
full run is ``EDGEGW_CHAOS_SECONDS=60``).  Counts go to the test log
(_trial_temp/test.log).
"""

import os
import random
import signal
from collections import Counter

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks, returnValue
from twisted.internet.error import ConnectError, TimeoutError
from twisted.logger import Logger

from tests.support.hardening import ClosedWithoutAnswer, HardeningTestCase, TwistdGateway, alive, children, connect, fds, get_bytes, one_request, pause, port_of, proc_stat, processes_under, wait_for, worker_in
from tests.support.handlers import HELLO

log = Logger(namespace="edgegw.tests.hardening")

CHAOS_SECONDS = float(os.environ.get("EDGEGW_CHAOS_SECONDS") or 15)
CLIENTS = 32
HANG = 20.0
"""Seconds without a complete answer that count as a hang (the endpoints' timeout is 10)."""


def _is_child(pid, parent):
    stat = proc_stat(pid)
    return stat is not None and stat[1] == parent


class ChaosIntegrationTests(HardeningTestCase):

    @inlineCallbacks
    def test_17_chaos_kill_a_random_worker_every_second(self):
        """
        32 keep-alive clients hammer an endpoint of 4 workers while one random
        worker is SIGKILLed every second: every request gets a complete
        answer, 200 or 502 (the ones in flight on a killed worker), never a
        hang nor a connection closed without an answer; afterwards the pool
        is back to 4 ready workers, with no zombie and no stray process.
        """
        yield self.start_gateway()
        yield self.deploy_hostile("/chaos", instances=4, timeout=10)
        port = port_of(self.gateway.base)
        seed = int(os.environ.get("EDGEGW_CHAOS_SEED") or random.randrange(2**32))
        chooser = random.Random(seed)
        counts = Counter()
        problems = []
        kills = []
        deadline = reactor.seconds() + CHAOS_SECONDS
        request = get_bytes("/chaos/fine")

        @inlineCallbacks
        def client():
            connection = None
            while reactor.seconds() < deadline:
                if connection is None:
                    try:
                        connection = yield connect(port)
                    except ConnectError as e:
                        counts["refused"] += 1
                        problems.append("refused: %s" % e)
                        return
                try:
                    status, _, keep_alive = yield connection.request(request, HANG)
                except ClosedWithoutAnswer as e:
                    counts["reset"] += 1
                    problems.append("closed without an answer: %s" % e)
                    connection = None
                    continue
                except TimeoutError:
                    counts["hang"] += 1
                    problems.append("no answer within %gs" % HANG)
                    connection = None
                    continue
                counts["requests"] += 1
                counts[status] += 1
                if not keep_alive:
                    connection.transport.loseConnection()
                    connection = None
            if connection is not None:
                connection.transport.loseConnection()

        @inlineCallbacks
        def killer():
            while reactor.seconds() + 1 < deadline:
                yield pause(1)
                view = yield self.view()
                live = [w["pid"] for w in view["workers"] if w["state"] in ("ready", "busy")]
                if not live:
                    continue
                victim = chooser.choice(live)
                if _is_child(victim, os.getpid()):  # never a recycled pid of someone else
                    os.kill(victim, signal.SIGKILL)
                    kills.append(victim)

        yield gatherResults([client() for _ in range(CLIENTS)] + [killer()], consumeErrors=True)
        log.info(
            "case 17: {seconds:g}s, {clients} clients, seed {seed}: {requests} requests,"
            " {ok} answered 200, {bad} answered 502, {hang} hangs, {reset} closed without"
            " an answer, {kills} workers killed",
            seconds=CHAOS_SECONDS,
            clients=CLIENTS,
            seed=seed,
            requests=counts["requests"],
            ok=counts[200],
            bad=counts[502],
            hang=counts["hang"],
            reset=counts["reset"],
            kills=len(kills),
        )
        self.assertEqual(problems, [])
        self.assertEqual(counts["requests"], counts[200] + counts[502], counts)
        self.assertGreater(counts[200], counts[502])
        self.assertGreaterEqual(len(kills), CHAOS_SECONDS // 2)
        pids = yield self.ready_pool(4)
        self.assertFalse(set(pids) & set(kills))
        for pid in kills:
            self.assertGone(pid)
        self.assertEqual(sorted(processes_under(self.gateway.data_dir)), sorted(worker_in(p) for p in pids))
        self.assertNoZombies()
        for _ in range(8):
            status, _, _ = yield self.hit("fine")
            self.assertEqual(status, 200)


class RestartUnderLoadIntegrationTests(HardeningTestCase):

    def assertSameStore(self, now, before):
        """Equal snapshots; else the paths that differ (the whole diff is huge)."""

        def walk(a, b, path):
            if isinstance(a, dict) and isinstance(b, dict):
                for key in set(a) | set(b):
                    yield from walk(a.get(key), b.get(key), path + [key])
            elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
                for i, (x, y) in enumerate(zip(a, b)):
                    yield from walk(x, y, path + [i])
            elif a != b:
                yield "/".join(map(str, path)), a, b

        self.assertEqual(list(walk(now, before, [])), [])

    def restored(self, *endpoint_ids):
        """
        Wait until each endpoint has its workers ready: a gateway restores
        running endpoints one by one after it started listening (until then
        their routes answer 404).
        """

        @inlineCallbacks
        def ready():
            for endpoint_id in endpoint_ids:
                _, document = yield self.gateway.call("GET", "/endpoints/%s" % endpoint_id)
                workers = document["data"]["workers"]
                if not workers or any(w["state"] != "ready" for w in workers):
                    returnValue(False)
            returnValue(True)

        return wait_for(ready, 30, message="the running endpoints to be restored")

    @inlineCallbacks
    def snapshot(self):
        """What the store holds, as the API shows it, less what lives only in memory."""
        api = self.gateway.call
        _, endpoints = yield api("GET", "/endpoints")
        items = endpoints["data"]
        items = items["items"] if isinstance(items, dict) else items
        state = {"endpoints": {}}
        for endpoint in items:
            # A restart restores a running endpoint: that (re)writes its updated_at
            # and so its revision; workers per node are this run's (the node's name has its port).
            volatile = ("pids", "workers", "queue", "nodes") + (
                ("updated_at", "revision") if endpoint["status"] == "running" else ()
            )
            record = {k: v for k, v in endpoint.items() if k not in volatile}
            _, versions = yield api("GET", "/endpoints/%s/versions" % endpoint["id"])
            _, bindings = yield api("GET", "/endpoints/%s/services" % endpoint["id"])
            record["versions"] = versions["data"]
            record["bindings"] = bindings["data"]
            state["endpoints"][endpoint["id"]] = record
        for name in ("services", "domains", "collections", "keys"):
            _, document = yield api("GET", "/" + name)
            data = document["data"]
            data = data["items"] if isinstance(data, dict) and "items" in data else data
            state[name] = [
                {k: v for k, v in item.items() if k != "last_used_at"} for item in data
            ]
        returnValue(state)

    @inlineCallbacks
    def test_18_gateway_restart_under_load(self):
        """
        A real twistd gateway gets SIGTERM while 16 clients send requests,
        each on a connection of its own: every connection is either refused
        or gets a complete answer (200, or 503 for one that arrived while the
        pools were draining), none is dropped or left hanging; the gateway
        exits cleanly and takes its workers with it.  Started again on the
        same data directory, every endpoint that was running serves, the
        others are as they were, and the store (endpoints, versions,
        bindings, services, domains, keys) is exactly what it was.
        """
        yield self.start_gateway()
        data_dir = self.gateway.data_dir
        yield self.deploy_hostile("/a", instances=2, timeout=10)
        a_id = self.endpoint_id
        hello = yield self.gateway.deploy("hello", "/b", HELLO)
        # A compiled endpoint never started, and one started then stopped.
        resting = yield self.gateway.deploy("resting", "/c", HELLO, instances=1)
        code, _ = yield self.gateway.call("POST", "/endpoints/%s/stop" % resting["id"])
        self.assertEqual(code, 200)
        code, compiled = yield self.gateway.call(
            "POST", "/endpoints", {"name": "compiled", "path": "/d", "method": "GET", "code": HELLO}
        )
        self.assertEqual(code, 201)
        code, _ = yield self.gateway.call("POST", "/endpoints/%s/compile" % compiled["data"]["id"])
        self.assertEqual(code, 200)
        code, service = yield self.gateway.call(
            "POST", "/services", {"name": "notes", "service_type": "sqlite"}
        )
        self.assertEqual(code, 201, service)
        code, _ = yield self.gateway.call(
            "POST", "/endpoints/%s/services" % a_id,
            {"service_id": service["data"]["id"], "pool_id": "main"},
        )
        self.assertEqual(code, 201)
        code, _ = yield self.gateway.call(
            "POST", "/domains", {"host": "restart.example.test", "description": "kept"}
        )
        self.assertEqual(code, 201)
        code, _ = yield self.gateway.call("POST", "/keys", {"name": "reader", "scope": "read"})
        self.assertEqual(code, 201)
        before = yield self.snapshot()
        yield self.gateway.stop_once()

        first = TwistdGateway(self, data_dir)
        yield first.start()
        self.gateway = first.harness
        yield self.restored(a_id, hello["id"])
        self.assertSameStore((yield self.snapshot()), before)

        port = first.port
        outcomes = Counter()
        problems = []
        exited = []
        moments = {}

        @inlineCallbacks
        def client(n):
            path = "/a/fine" if n % 2 else "/b"
            # Until the gateway is gone for half a second: its last moments are the point.
            while not exited or reactor.seconds() < exited[0] + 0.5:
                sent_at = reactor.seconds()
                kind, detail = yield one_request(port, path, HANG)
                outcomes[(kind, detail) if kind == "answered" else kind] += 1
                if kind == "refused" and "first refused" not in moments:
                    moments["first refused"] = sent_at
                if kind in ("dropped", "hang") or (kind == "answered" and detail not in (200, 503)):
                    problems.append((kind, detail, sent_at, reactor.seconds()))
                if kind == "refused":
                    yield pause(0.01)

        clients = [client(n) for n in range(16)]
        yield pause(1.5)
        sent_before = sum(outcomes.values())
        workers = [w["pid"] for w in (yield self.view())["workers"]]
        moments["SIGTERM"] = reactor.seconds()
        status = yield first.stop()
        exited.append(reactor.seconds())
        moments["exit"] = exited[0]
        yield gatherResults(clients, consumeErrors=True)
        # Times relative to the SIGTERM, for the log.
        term = moments["SIGTERM"]
        moments = {k: round(v - term, 4) for k, v in moments.items()}
        problems = [(k, d, round(a - term, 4), round(b - term, 4)) for k, d, a, b in problems]
        log.info(
            "case 18: {sent} requests before SIGTERM; outcomes {outcomes}; exit {status};"
            " moments {moments}; problems {problems}",
            sent=sent_before,
            moments=moments,
            problems=problems,
            outcomes=dict(outcomes),
            status=status,
        )
        self.assertEqual(problems, [])
        self.assertGreater(outcomes[("answered", 200)], 0)
        self.assertGreater(outcomes["refused"], 0)
        output = first.output()
        self.assertIn(status, ((0, None), (None, signal.SIGTERM)), output)
        self.assertIn("Server Shut Down.", output)
        self.assertEqual(processes_under(data_dir), [])
        for pid in workers:
            self.assertFalse(alive(pid))

        second = TwistdGateway(self, data_dir)
        yield second.start()
        self.gateway = second.harness
        yield self.restored(a_id, hello["id"])
        status, body, _ = yield self.hit("fine")
        self.assertEqual(status, 200)
        response, content = yield self.gateway.get("/b")
        self.assertEqual(response.code, 200, content)
        for path in ("/c", "/d"):
            response, _ = yield self.gateway.get(path)
            self.assertEqual(response.code, 404, path)
        self.assertSameStore((yield self.snapshot()), before)
        yield second.stop()
        self.assertEqual(processes_under(data_dir), [])


class LeakIntegrationTests(HardeningTestCase):

    @inlineCallbacks
    def cycle(self):
        """Start a gateway, deploy, kill workers thrice, stop it; fire with its data dir."""
        yield self.start_gateway()
        yield self.deploy_hostile("/leak", instances=2)
        for _ in range(3):
            yield self.kill_served_worker(2)
        status, _, _ = yield self.hit("exit")  # one more death, mid-request
        self.assertEqual(status, 502)
        yield self.ready_pool(2)
        yield self.gateway.stop_once()
        returnValue(self.gateway.data_dir)

    @inlineCallbacks
    def test_19_gateway_cycle_leaks_no_descriptor_or_process(self):
        """
        A gateway started, serving, losing workers and stopped leaves this
        process as it found it: the same open descriptors, no child process
        (so no zombie), no worker of its data directory running.  (A first
        cycle warms up what the process creates once, like the reactor's
        thread pool.)
        """
        yield self.cycle()
        me = os.getpid()

        def settled(expected):
            return lambda: set(fds()) == expected

        before = set(fds())
        children_before = children(me)
        data_dir = yield self.cycle()
        yield wait_for(settled(before), 10, message="the descriptors to settle").addErrback(lambda _: None)
        after = fds()
        self.assertEqual(
            set(after), before, "new: %r" % {fd: after[fd] for fd in set(after) - before}
        )
        self.assertEqual(children(me), children_before)
        self.assertEqual(processes_under(data_dir), [])

    @inlineCallbacks
    def test_19_twistd_descriptors_stable_across_worker_restarts(self):
        """
        A real twistd gateway whose workers are killed 20 times has the same
        number of open descriptors afterwards, exactly its two live workers
        as children (no zombie), and none left once it exited.
        """
        yield self.start_gateway()
        data_dir = self.gateway.data_dir
        yield self.deploy_hostile("/leak", instances=2)
        yield self.gateway.stop_once()
        twistd = TwistdGateway(self, data_dir)
        yield twistd.start()
        self.gateway = twistd.harness
        yield self.ready_pool(2)
        yield self.kill_served_worker(2)  # warm up

        def count():
            return len(fds(twistd.pid))

        before = count()
        for _ in range(20):
            yield self.kill_served_worker(2)
        pids = yield self.ready_pool(2)
        # The API calls' connections may still be closing: give them a moment.
        yield wait_for(lambda: count() <= before, 5, message="the descriptors to settle").addErrback(
            lambda _: None
        )
        after = count()
        log.info("case 19: twistd has {before} descriptors, {after} after 20 worker restarts",
                 before=before, after=after)
        self.assertLessEqual(after, before, fds(twistd.pid))
        self.assertEqual(set(children(twistd.pid)), set(pids))
        self.assertNotIn("Z", children(twistd.pid).values())
        yield twistd.stop()
        self.assertEqual(processes_under(data_dir), [])
