"""
Deploys with drain, rollback and the worker pool's settings, end to end: real
cargo, real worker processes, real HTTP on 127.0.0.1 (``GatewayHarness``).

The central test redeploys a handler ten times (PUT code → compile → restart,
alternating two versions) while 16 clients send requests without pause, and
checks that none fails, none is garbled, and that a request started after a
route switch and answered before the next one never reaches the old version.
Every wait is a Deferred (``deferLater`` for time), never a sleep; the client
loops stop by themselves after a bounded count or time.
"""

import json
import os

import treq
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks, returnValue
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from tests.support.harness import SHARED_TARGET, GatewayHarness, _cargo_or_skip

VERSIONED = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"version": "%s"}))
}

handler_loop!(handle);
"""

# Panics in main, before the SDK's loop sends ready.
PANICS_AT_START = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"version": "never"}))
}

fn main() {
    if std::env::args().count() < 1000 {
        panic!("boom: this version refuses to start");
    }
    rust_edge_gateway_sdk::run(handle)
}
"""

# Never reaches the SDK's loop, so never sends ready: the pool's start
# timeout (10 s, not an endpoint setting) kills it.
NEVER_READY = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"version": "never"}))
}

fn main() {
    while std::env::args().count() < 1000 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    rust_edge_gateway_sdk::run(handle)
}
"""

SLOW = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    if req.path.ends_with("/slow") {
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    // Which worker answered: its pid namespace (its pid in there is always 2, docs/isolation.md).
    let worker = std::fs::read_link("/proc/self/ns/pid").unwrap().to_string_lossy().into_owned();
    Response::ok(json!({"pid": worker}))
}

handler_loop!(handle);
"""

CLIENTS = 16
REDEPLOYS = 10
MAX_REQUESTS_PER_CLIENT = 20_000
CLIENT_DEADLINE = 300.0  # seconds: the loops stop by themselves after this


def versioned(name):
    return VERSIONED % name


class RedeployIntegrationTests(unittest.TestCase):
    timeout = 600

    @inlineCallbacks
    def setUp(self):
        cargo = _cargo_or_skip()
        os.makedirs(SHARED_TARGET, exist_ok=True)
        self.gateway = GatewayHarness(self, os.path.abspath(self.mktemp()), cargo)
        yield self.gateway.start()
        self.addCleanup(lambda: self.gateway.stop())
        # Clients of the data plane keep their connections, as real ones do.
        self.client_pool = HTTPConnectionPool(reactor, persistent=True)
        self.client_pool.maxPersistentPerHost = CLIENTS
        self.addCleanup(self.client_pool.closeCachedConnections)
        self.http = treq.client.HTTPClient(Agent(reactor, pool=self.client_pool))

    @inlineCallbacks
    def ok(self, method, path, body=None):
        status, document = yield self.gateway.call(method, path, body)
        self.assertEqual(status, 200, document)
        returnValue(document["data"])

    @inlineCallbacks
    def redeploy(self, endpoint_id, code):
        """PUT code → compile → restart; fires with (compile data, restart status, restart document)."""
        yield self.ok("PUT", "/endpoints/" + endpoint_id, {"code": code})
        compiled = yield self.ok("POST", "/endpoints/%s/compile" % endpoint_id)
        status, document = yield self.gateway.call("POST", "/endpoints/%s/restart" % endpoint_id)
        returnValue((compiled, status, document))

    @inlineCallbacks
    def get_json(self, path):
        response, content = yield self.gateway.get(path)
        self.assertEqual(response.code, 200, content)
        returnValue(json.loads(content))

    def record_switches(self):
        """Log (time, digest) each time the route table points a route at a pool."""
        switches = []
        deployments = self.gateway.runtime.manager.deployments
        routes = deployments._routes

        class LoggedRoutes:
            """The route table, with each ``place`` logged (the compiled table's methods cannot be replaced)."""

            def __getattr__(self, name):
                return getattr(routes, name)

            def place(self, key, routes_, target):
                result = routes.place(key, routes_, target)
                switches.append((reactor.seconds(), target.version))
                return result

        deployments._routes = LoggedRoutes()
        self.addCleanup(setattr, deployments, "_routes", routes)
        return switches

    @inlineCallbacks
    def client(self, url, log, state):
        """Send requests one after the other until told to stop (or a bound is reached)."""
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if state["stop"] or reactor.seconds() > state["deadline"]:
                break
            started = reactor.seconds()
            try:
                response = yield self.http.get(url)
                body = yield response.content()
                outcome = (response.code, body)
            except Exception as e:
                outcome = (None, repr(e).encode())
            log.append((started, reactor.seconds(), outcome))

    @inlineCallbacks
    def test_ten_redeploys_under_load_drop_nothing(self):
        """16 clients send without pause through 10 redeploys: no failure, A or B only, never old after a switch."""
        switches = self.record_switches()
        started = yield self.gateway.deploy("versioned", "/v", versioned("A"))
        endpoint_id = started["id"]
        status, versions = yield self.gateway.call("GET", "/endpoints/%s/versions" % endpoint_id)
        digests = {versions["data"]["items"][0]["digest"]: "A"}

        log = []
        state = {"stop": False, "deadline": reactor.seconds() + CLIENT_DEADLINE}
        clients = [self.client(self.gateway.base + "/v", log, state) for _ in range(CLIENTS)]
        try:
            yield deferLater(reactor, 0.3, lambda: None)
            for i in range(REDEPLOYS):
                name = "B" if i % 2 == 0 else "A"
                compiled, status, document = yield self.redeploy(endpoint_id, versioned(name))
                self.assertEqual(status, 200, document)
                digest = compiled["build"]["digest"]
                digests[digest] = name
                self.assertEqual(document["data"]["deployed"], digest)
                if i >= 1:
                    self.assertTrue(compiled["build"]["cached"], "only the first two versions compile")
                # Let the clients get some requests in on this version.
                yield deferLater(reactor, 0.3, lambda: None)
        finally:
            state["stop"] = True
            yield gatherResults(clients)

        failures = [entry for entry in log if entry[2][0] != 200]
        self.assertEqual(failures[:5], [], "%d of %d requests failed" % (len(failures), len(log)))
        answers, garbled = [], []
        for start, end, (_, body) in log:
            try:
                document = json.loads(body)
            except ValueError:
                document = None
            if document in ({"version": "A"}, {"version": "B"}):
                answers.append((start, end, document["version"]))
            else:
                garbled.append(body)
        self.assertEqual(garbled[:5], [], "%d garbled answers" % len(garbled))
        self.assertGreater(len(answers), 200, "the clients must have been busy")

        # Per switch k: a request started after it and answered before switch k+1 is version k's.
        times = [t for t, _ in switches]
        served = [digests[d] for _, d in switches]
        self.assertEqual(len(switches), REDEPLOYS + 1)
        checked = 0
        for start, end, version in answers:
            k = max(i for i, t in enumerate(times) if t <= start)
            following = times[k + 1] if k + 1 < len(times) else float("inf")
            if end < following:
                checked += 1
                self.assertEqual(version, served[k], "a request started after the switch reached the old version")
        self.assertGreater(checked, 100)
        switch_ms = self.gateway.runtime.manager.last_switch["ready_to_switch_ms"]
        self.assertLess(switch_ms, 1000)

    @inlineCallbacks
    def test_versions_that_fail_to_start_leave_the_old_one_serving(self):
        """A version that panics at start: restart answers 502 with its exit status and message; the old serves; rollback restores."""
        started = yield self.gateway.deploy("versioned", "/v", versioned("A"))
        endpoint_id = started["id"]
        compiled, status, document = yield self.redeploy(endpoint_id, versioned("B"))
        self.assertEqual(status, 200, document)
        self.assertEqual((yield self.get_json("/v")), {"version": "B"})

        compiled, status, document = yield self.redeploy(endpoint_id, PANICS_AT_START)
        self.assertEqual(status, 502, document)
        self.assertIn("exited with status 101", document["error"])
        self.assertIn("boom: this version refuses to start", document["error"])
        self.assertIn("still serves version", document["error"])
        self.assertEqual((yield self.get_json("/v")), {"version": "B"})
        record = yield self.ok("GET", "/endpoints/" + endpoint_id)
        self.assertEqual(record["status"], "running")
        self.assertIn("status 101", record["last_error"])

        versions = yield self.ok("GET", "/endpoints/%s/versions" % endpoint_id)
        by_code = {v["code"]: v for v in versions["items"]}
        self.assertTrue(by_code[versioned("B")]["live"])
        self.assertTrue(by_code[PANICS_AT_START]["current"])
        data = yield self.ok(
            "POST", "/endpoints/%s/rollback" % endpoint_id, {"version": by_code[versioned("A")]["short"]}
        )
        self.assertEqual(data["deployed"], by_code[versioned("A")]["digest"])
        self.assertEqual((yield self.get_json("/v")), {"version": "A"})

    @inlineCallbacks
    def test_version_that_never_sends_ready_leaves_the_old_one_serving(self):
        """A version that never sends ready is killed after the start timeout; 502 says so; the old serves on."""
        started = yield self.gateway.deploy("versioned", "/v", versioned("A"))
        compiled, status, document = yield self.redeploy(started["id"], NEVER_READY)
        self.assertEqual(status, 502, document)
        self.assertIn("sent no ready within 10s", document["error"])
        self.assertEqual((yield self.get_json("/v")), {"version": "A"})

    @inlineCallbacks
    def test_scale_from_zero(self):
        """min_instances 0: no worker until the first request, which succeeds; idle_timeout later, none again."""
        started = yield self.gateway.deploy(
            "lazy", "/lazy", versioned("A"), min_instances=0, max_instances=1, idle_timeout=1
        )
        self.assertEqual((started["pids"], started["workers"]), ([], []))
        self.assertEqual((yield self.get_json("/lazy")), {"version": "A"})
        record = yield self.ok("GET", "/endpoints/" + started["id"])
        self.assertEqual(len(record["pids"]), 1)
        for _ in range(100):  # at most 10 s
            yield deferLater(reactor, 0.1, lambda: None)
            record = yield self.ok("GET", "/endpoints/" + started["id"])
            if not record["pids"]:
                break
        self.assertEqual(record["pids"], [], "the idle worker must stop after idle_timeout")
        self.assertEqual((yield self.get_json("/lazy")), {"version": "A"})

    @inlineCallbacks
    def test_full_queue_is_503_with_retry_after(self):
        """One worker, pipeline 1, max_queue 0: of two requests at once to a slow handler one gets 503 + Retry-After."""
        yield self.gateway.deploy(
            "slow", "/s/{what}", SLOW, min_instances=1, max_instances=1, pipeline=1, max_queue=0
        )
        first = self.http.get(self.gateway.base + "/s/slow")
        second = self.http.get(self.gateway.base + "/s/slow")
        responses = yield gatherResults([first, second])
        yield gatherResults([r.content() for r in responses])
        codes = sorted(r.code for r in responses)
        self.assertEqual(codes, [200, 503])
        [refused] = [r for r in responses if r.code == 503]
        self.assertEqual(refused.headers.getRawHeaders("retry-after"), ["1"])

    @inlineCallbacks
    def test_max_requests_recycles_workers_without_failures(self):
        """max_requests 5: workers are replaced as they reach it, and every request succeeds."""
        yield self.gateway.deploy("recycled", "/r/{what}", SLOW, min_instances=1, max_instances=1, max_requests=5)
        pids = []

        @inlineCallbacks
        def sender():
            for _ in range(10):
                answer = yield self.get_json("/r/fast")
                pids.append(answer["pid"])

        yield gatherResults([sender() for _ in range(4)])
        self.assertEqual(len(pids), 40)
        self.assertGreaterEqual(len(set(pids)), 4)
