"""
``twistd -n edgegw --processes 2`` as a real process: real cargo, real
data-plane processes sharing one socket, real workers, real HTTP on
127.0.0.1. The processes are found as twistd's children in /proc, the
workers' data-plane process by their parent pid.

Each test starts its own twistd with a fresh data directory whose cargo
target directory is the suite's shared one (``.cache/test-target``), so a
handler compiles in seconds; each stops it and checks that no process it
started is left.
"""

import json
import os
import shutil
import signal
import socket
import sys

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, returnValue
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from tests.support.hardening import alive, proc_stat
from tests.support.hardening import children as proc_children
from tests.support.handlers import HELLO
from tests.support.harness import ROOT, SHARED_TARGET, _cargo_or_skip, _Collect

VERSIONED = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"version": "%s", "pid": std::process::id()}))
}

handler_loop!(handle);
"""


def children(pid):
    """The pids of the live (not zombie) children of ``pid``."""
    return sorted(child for child, state in proc_children(pid).items() if state != "Z")


def _sockets(pid):
    """How many sockets the process has open."""
    count = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def free_ports(count):
    """``count`` different ports free now (each socket kept open until all are chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait(seconds):
    return deferLater(reactor, seconds, lambda: None)


class TwistdGateway:
    """A ``twistd -n edgegw --processes N`` process and HTTP clients for it."""

    def __init__(self, test_case, processes=2):
        self.test_case = test_case
        self.processes = processes
        self.data_dir = os.path.abspath(test_case.mktemp())
        # The suite's cargo target directory: the common crates are built already.
        os.makedirs(os.path.join(self.data_dir, "build"))
        os.symlink(SHARED_TARGET, os.path.join(self.data_dir, "build", "target"))
        # A new connection per request: the kernel hands each to one process.
        self.http = treq.client.HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        self.exit = None

    @inlineCallbacks
    def start(self, cargo):
        """Start twistd; when another program took a port chosen for it meanwhile, again on others."""
        for _ in range(3):
            started = yield self._start(cargo)
            if started:
                return
        self.test_case.fail("twistd could not listen:\n" + self.output())

    @inlineCallbacks
    def _start(self, cargo):
        self.port, self.admin = free_ports(2)
        self.base = "http://127.0.0.1:%d" % self.port
        self.api = "http://127.0.0.1:%d/api" % self.admin
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.path.exists(twistd):
            twistd = shutil.which("twistd")
        self.exit = None
        self.ended = Deferred()
        self.collector = _Collect(self.ended)
        self.ended.addCallback(self._ended)
        self.process = reactor.spawnProcess(
            self.collector,
            twistd,
            [
                twistd, "-n", "--pidfile=", "edgegw", "--data-dir", self.data_dir,
                "--listen", "tcp:%d:interface=127.0.0.1" % self.port,
                "--admin-listen", "tcp:%d:interface=127.0.0.1" % self.admin,
                "--cargo", cargo, "--processes", str(self.processes),
            ],
            env=dict(os.environ),
            path=ROOT,
        )
        self.pid = self.process.pid
        self.test_case.addCleanup(self.kill)
        # Our own twistd saying it listens (not just any server answering on the
        # port), and that it wrote the key of its first start (after it listens).
        listening = "Site starting on %d" % self.admin
        written = "Created the first admin API key"
        for _ in range(300):
            if self.exit is not None:
                if "Address already in use" in self.output():
                    returnValue(False)
                self.test_case.fail("twistd exited:\n" + self.output())
            if listening in self.output() and written in self.output():
                break
            yield wait(0.1)
        else:
            self.test_case.fail("twistd did not start:\n" + self.output())
        with open(os.path.join(self.data_dir, "admin.key")) as f:
            self.key = f.read().strip()
        # "starting" (503) until the store is loaded and the endpoints restored.
        for _ in range(300):
            response = yield self.http.get(self.api + "/health")
            document = yield response.json()
            if document["data"]["status"] != "starting":
                break
            yield wait(0.1)
        self.test_case.assertEqual(document["data"]["status"], "healthy")
        yield self.wait_for(lambda: len(self.data_planes()) == self.processes, "the data planes to start")
        returnValue(True)

    def _ended(self, codes):
        self.exit = codes
        return codes

    def output(self):
        return self.collector.output.decode(errors="replace")

    def data_planes(self):
        """The pids of the data-plane processes (twistd's children that are not cargo)."""
        return [pid for pid in children(self.pid) if b"edgegw_tx.processes.child" in _cmdline(pid)]

    @inlineCallbacks
    def wait_for(self, condition, what, seconds=30.0):
        for _ in range(int(seconds / 0.1)):
            if condition():
                return
            yield wait(0.1)
        self.test_case.fail("timed out waiting for %s\n%s" % (what, self.output()[-4000:]))

    @inlineCallbacks
    def call(self, method, path, body=None):
        response = yield self.http.request(
            method,
            self.api + path,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": "Bearer " + self.key},
        )
        document = yield response.json()
        returnValue((response.code, document))

    @inlineCallbacks
    def ok(self, method, path, body=None):
        code, document = yield self.call(method, path, body)
        self.test_case.assertIn(code, (200, 201), document)
        returnValue(document["data"])

    @inlineCallbacks
    def get(self, path):
        """A data-plane GET: (status, body bytes)."""
        response = yield self.http.get(self.base + path)
        content = yield response.content()
        returnValue((response.code, content))

    def many(self, path, count=64):
        """``count`` concurrent GETs, each on its own connection: [(status, body)]."""
        return gatherResults([self.get(path) for _ in range(count)])

    @inlineCallbacks
    def stop(self):
        """SIGTERM, and wait for twistd to exit."""
        if self.exit is None:
            self.process.signalProcess("TERM")
            yield self.ended

    def kill(self):
        if self.exit is None:
            self.process.signalProcess("KILL")
            return self.ended


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


class TwistdProcessesTestCase(unittest.TestCase):
    """A fresh ``twistd edgegw --processes 2`` per test, and helpers to deploy and load it (no tests)."""

    timeout = 600

    @inlineCallbacks
    def setUp(self):
        self.cargo = _cargo_or_skip()
        os.makedirs(SHARED_TARGET, exist_ok=True)
        self.gateway = TwistdGateway(self)
        yield self.gateway.start(self.cargo)

    @inlineCallbacks
    def deploy(self, code=HELLO, **settings):
        created = yield self.gateway.ok(
            "POST", "/endpoints",
            {"name": "hello", "path": "/hello", "method": "GET", "code": code, "settings": settings},
        )
        yield self.gateway.ok("POST", "/endpoints/%s/compile" % created["id"])
        started = yield self.gateway.ok("POST", "/endpoints/%s/start" % created["id"])
        returnValue(started)

    @inlineCallbacks
    def served_per_process(self, endpoint_id):
        record = yield self.gateway.ok("GET", "/endpoints/" + endpoint_id)
        served = {}
        for worker in record["workers"]:
            served[worker["process"]] = served.get(worker["process"], 0) + worker["served"]
        returnValue(served)

    @inlineCallbacks
    def both_serve(self, endpoint_id, path="/hello"):
        """Send batches of concurrent requests until each process has served some; all must be 200."""
        before = yield self.served_per_process(endpoint_id)
        for _ in range(30):
            answers = yield self.gateway.many(path)
            self.assertEqual({status for status, _ in answers}, {200}, answers[:3])
            served = yield self.served_per_process(endpoint_id)
            if all(served.get(i, 0) > before.get(i, 0) for i in (1, 2)):
                returnValue(served)
        self.fail("one process served everything: %r" % (served,))


class ProcessesIntegrationTests(TwistdProcessesTestCase):
    @inlineCallbacks
    def test_both_processes_serve_and_stop_leaves_nothing(self):
        """A deployed endpoint has workers under both data-plane processes, both answer, and SIGTERM ends every process."""
        planes = self.gateway.data_planes()
        self.assertEqual(len(planes), 2)
        started = yield self.deploy(min_instances=1, max_instances=1)
        self.assertEqual(started["status"], "running")
        self.assertEqual(sorted(w["process"] for w in started["workers"]), [1, 2])
        workers = started["pids"]
        parents = sorted(proc_stat(pid)[1] for pid in workers)
        self.assertEqual(parents, planes, "each data-plane process runs one worker")
        for pid in workers:
            self.assertEqual(_sockets(pid), 0, "a worker must not inherit the listening socket")

        status, content = yield self.gateway.get("/hello")
        self.assertEqual((status, json.loads(content)["message"]), (200, "Hello, World!"))
        yield self.both_serve(started["id"])
        stats = yield self.gateway.ok("GET", "/stats")
        self.assertEqual(stats["workers"], 2)
        self.assertGreater(stats["requests"]["served"], 64)
        code, logs = yield self.gateway.call("GET", "/endpoints/%s/logs" % started["id"])
        ready = [e["line"] for e in logs["data"]["lines"] if "is ready" in e["line"]]
        self.assertEqual(len(ready), 2, logs)

        yield self.gateway.stop()
        # twistd re-raises the signal it stopped on, after a clean shutdown.
        self.assertIn(self.gateway.exit, ((0, None), (None, signal.SIGTERM)), self.gateway.output())
        self.assertIn("Server Shut Down.", self.gateway.output())
        for pid in planes + workers:
            self.assertFalse(alive(pid), "process %d outlived twistd" % pid)

    @inlineCallbacks
    def test_api_changes_reach_every_process(self):
        """Stop, start, a code change compiled and restarted under load, and delete: every process follows at once."""
        started = yield self.deploy(VERSIONED % "one")
        endpoint_id = started["id"]
        yield self.both_serve(endpoint_id)

        yield self.gateway.ok("POST", "/endpoints/%s/stop" % endpoint_id)
        answers = yield self.gateway.many("/hello")
        self.assertEqual({status for status, _ in answers}, {404})

        yield self.gateway.ok("POST", "/endpoints/%s/start" % endpoint_id)
        answers = yield self.gateway.many("/hello")
        self.assertEqual({json.loads(body)["version"] for _, body in answers}, {"one"})

        # Clients on kept-alive connections (spread over both processes) run through the redeploy.
        keep = HTTPConnectionPool(reactor, persistent=True)
        keep.maxPersistentPerHost = 8
        self.addCleanup(keep.closeCachedConnections)
        client = treq.client.HTTPClient(Agent(reactor, pool=keep))
        state = {"stop": False}
        log = []

        @inlineCallbacks
        def loop():
            while not state["stop"]:
                try:
                    response = yield client.get(self.gateway.base + "/hello")
                    body = yield response.content()
                    log.append((response.code, body))
                except Exception as e:
                    log.append((None, repr(e)))

        loops = [loop() for _ in range(8)]
        try:
            yield wait(0.3)
            yield self.gateway.ok("PUT", "/endpoints/" + endpoint_id, {"code": VERSIONED % "two"})
            yield self.gateway.ok("POST", "/endpoints/%s/compile" % endpoint_id)
            restarted = yield self.gateway.ok("POST", "/endpoints/%s/restart" % endpoint_id)
            # Right after the answer, every process serves the new version.
            answers = yield self.gateway.many("/hello", 128)
            yield wait(0.3)
        finally:
            state["stop"] = True
            yield gatherResults(loops)
        self.assertEqual({json.loads(body)["version"] for _, body in answers}, {"two"})
        failures = [entry for entry in log if entry[0] != 200]
        self.assertEqual(failures[:3], [], "%d of %d requests failed during the redeploy" % (len(failures), len(log)))
        self.assertGreater(len(log), 50)
        self.assertEqual(sorted(w["process"] for w in restarted["workers"] if w["state"] != "draining"), [1, 2])

        yield self.gateway.ok("DELETE", "/endpoints/" + endpoint_id)
        answers = yield self.gateway.many("/hello")
        self.assertEqual({status for status, _ in answers}, {404})
        yield self.gateway.stop()

    @inlineCallbacks
    def test_a_killed_process_is_respawned_and_serves(self):
        """kill -9 of a data-plane process: another takes its place with the running endpoint, and both serve."""
        started = yield self.deploy()
        yield self.both_serve(started["id"])
        victim, survivor = self.gateway.data_planes()
        orphaned = [pid for pid in started["pids"] if proc_stat(pid)[1] == victim]
        os.kill(victim, signal.SIGKILL)
        found = []

        def respawned():
            planes = self.gateway.data_planes()
            found[:] = [pid for pid in planes if pid not in (victim, survivor)]
            return len(planes) == 2 and survivor in planes and len(found) == 1

        yield self.gateway.wait_for(respawned, "a new data-plane process")
        [new] = found

        @inlineCallbacks
        def workers_in_both():
            record = yield self.gateway.ok("GET", "/endpoints/" + started["id"])
            returnValue(sorted(proc_stat(w["pid"])[1] for w in record["workers"] if alive(w["pid"])))

        for _ in range(100):
            parents = yield workers_in_both()
            if parents == sorted([new, survivor]):
                break
            yield wait(0.1)
        self.assertEqual(parents, sorted([new, survivor]), self.gateway.output()[-4000:])
        yield self.both_serve(started["id"])
        # The dead process's worker saw its pipe close and exited.
        yield self.gateway.wait_for(lambda: not any(alive(pid) for pid in orphaned), "the orphaned worker to exit")
        self.assertIn("ended unexpectedly", self.gateway.output())
        yield self.gateway.stop()
        for pid in [new, survivor]:
            self.assertFalse(alive(pid))

    @inlineCallbacks
    def test_the_processes_exit_when_twistd_dies(self):
        """SIGKILL of twistd closes the data planes' channels: they drain and exit, and their workers with them."""
        started = yield self.deploy()
        planes = self.gateway.data_planes()
        self.gateway.process.signalProcess("KILL")
        yield self.gateway.ended
        everything = planes + started["pids"]
        yield self.gateway.wait_for(
            lambda: not any(alive(pid) for pid in everything), "the data planes and workers to exit"
        )


class MetricsProcessesIntegrationTests(TwistdProcessesTestCase):
    """``GET /metrics`` of ``twistd edgegw --processes 2``: the control process adds up both data planes."""

    @inlineCallbacks
    def scrape(self):
        """``{(name, sorted labels): value}`` of ``/metrics`` on the admin listener, with the key."""
        from prometheus_client.parser import text_string_to_metric_families

        response = yield self.gateway.http.get(
            "http://127.0.0.1:%d/metrics" % self.gateway.admin,
            headers={"Authorization": "Bearer " + self.gateway.key},
        )
        self.assertEqual(response.code, 200)
        text = yield response.text()
        returnValue({
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        })

    @inlineCallbacks
    def test_requests_and_workers_summed_over_processes(self):
        """
        After requests served by both data-plane processes, ``/metrics`` counts
        exactly the requests sent to hello (both processes' counters added) and
        the two workers, one per process.
        """
        started = yield self.deploy(min_instances=1, max_instances=1)
        before = yield self.served_per_process(started["id"])
        served = yield self.both_serve(started["id"])
        sent = sum(served.values()) - sum(before.values())
        samples = yield self.scrape()
        hello = (("code", "200"), ("endpoint", "hello"), ("method", "GET"))
        self.assertEqual(samples[("edgegw_http_requests_total", hello)], sent)
        ready = samples[("edgegw_workers", (("endpoint", "hello"), ("state", "ready")))]
        busy = samples[("edgegw_workers", (("endpoint", "hello"), ("state", "busy")))]
        self.assertEqual(ready + busy, 2)
        self.assertIn(("edgegw_build_info", (("version", __import__("edgegw_tx").__version__),)), samples)
