"""
The whole gateway with its real parts: real cargo compiling real handlers,
real worker processes, real HTTP over 127.0.0.1 on ports chosen by the kernel.

The cargo target directory is shared between tests (and runs) in
``.cache/test-target`` so the suite pays the cold build of the common crates once.
"""

import json
import os
import shutil
import signal
import stat
import sys

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, returnValue
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from edgegw_tx.runtime import GatewayRuntime
from tests.support.harness import ROOT, SDK, SHARED_TARGET, GatewayHarness, GatewayTestCase, _Collect, _free_port
from tests.support.handlers import HELLO

MISBEHAVING = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    let what = req.path_param("what").cloned().unwrap_or_default();
    match what.as_str() {
        "crash" => std::process::exit(3),
        "spin" => loop { std::hint::spin_loop() },
        "print" => {
            println!("debug line from {}", req.path);
            Response::ok(json!({"printed": true}))
        }
        _ => Response::ok(json!({"what": what, "pid": std::process::id()})),
    }
}

handler_loop!(handle);
"""


PANICKY = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    if req.path.ends_with("/panic") {
        panic!("the handler gave up on {}", req.path);
    }
    if req.is_method("POST") {
        // Echo the body byte for byte, whatever it is.
        return Response::binary(200, req.body_bytes(), "application/octet-stream");
    }
    Response::ok(json!({"pid": std::process::id()}))
}

handler_loop!(handle);
"""

ASYNC_PANICKY = """use rust_edge_gateway_sdk::prelude::*;

async fn handle(req: Request) -> Response {
    tokio::task::yield_now().await;
    if req.path.ends_with("/panic") {
        panic!("the async handler gave up on {}", req.path);
    }
    Response::ok(json!({"pid": std::process::id()}))
}

handler_loop_async!(handle);
"""


class GatewayIntegrationTests(GatewayTestCase):

    @inlineCallbacks
    def test_quick_start(self):
        """The README's quick start: create, compile, start, then GET /hello answers JSON."""
        code, created = yield self.gateway.call(
            "POST", "/endpoints", {"name": "hello", "path": "/hello", "method": "GET", "code": HELLO}
        )
        self.assertEqual((code, created["ok"], created["data"]["status"]), (201, True, "created"))
        endpoint_id = created["data"]["id"]
        code, compiled = yield self.gateway.call("POST", "/endpoints/%s/compile" % endpoint_id)
        self.assertEqual((code, compiled["data"]["status"]), (200, "compiled"))
        code, started = yield self.gateway.call("POST", "/endpoints/%s/start" % endpoint_id)
        self.assertEqual((code, started["data"]["status"]), (200, "running"))
        [pid] = started["data"]["pids"]
        self.assertGreater(pid, 0)

        response, content = yield self.gateway.get("/hello")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            json.loads(content), {"message": "Hello, World!", "path": "/hello", "method": "GET"}
        )
        self.assertTrue(response.headers.getRawHeaders("x-request-id"))
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])

        code, again = yield self.gateway.call("POST", "/endpoints/%s/compile" % endpoint_id)
        self.assertTrue(again["data"]["build"]["cached"], "unchanged code must not compile again")

    @inlineCallbacks
    def test_compile_error_points_at_the_users_line(self):
        """A type error on line 4 of the handler answers 422 with a diagnostic on line 4."""
        broken = HELLO.replace(
            "    Response::ok(", '    let n: u32 = "text";\n    Response::ok('
        )
        code, created = yield self.gateway.call(
            "POST", "/endpoints", {"name": "broken", "path": "/broken", "method": "GET", "code": broken}
        )
        code, document = yield self.gateway.call(
            "POST", "/endpoints/%s/compile" % created["data"]["id"]
        )
        self.assertEqual(code, 422)
        errors = [d for d in document["diagnostics"] if d["level"] == "error"]
        self.assertEqual(errors[0]["line"], 4)
        self.assertIn("mismatched types", errors[0]["message"])
        self.assertIn("mismatched types", document["error"])

    @inlineCallbacks
    def test_empty_code_is_422(self):
        """Compiling an endpoint with no code answers 422 with a diagnostic."""
        code, created = yield self.gateway.call(
            "POST", "/endpoints", {"name": "empty", "path": "/empty", "method": "GET", "code": ""}
        )
        code, document = yield self.gateway.call(
            "POST", "/endpoints/%s/compile" % created["data"]["id"]
        )
        self.assertEqual(code, 422)
        self.assertTrue(document["diagnostics"])

    @inlineCallbacks
    def test_crash_answers_502_then_serves_again(self):
        """A handler that exits mid-request gives 502 naming it; the next request succeeds."""
        yield self.gateway.deploy("misbehaving", "/m/{what}", MISBEHAVING)
        response, content = yield self.gateway.get("/m/crash")
        self.assertEqual(response.code, 502)
        error = json.loads(content)
        self.assertEqual(error["endpoint"], "misbehaving")
        self.assertEqual(error["request_id"], response.headers.getRawHeaders("x-request-id")[0])
        self.assertIn("status 3", error["error"])
        response, content = yield self.gateway.get("/m/fine")
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(content)["what"], "fine")

    @inlineCallbacks
    def test_runaway_handler_answers_504_and_is_replaced(self):
        """A handler that loops forever gives 504 after the timeout; a new worker serves next."""
        started = yield self.gateway.deploy("spinner", "/s/{what}", MISBEHAVING, timeout=1)
        response, content = yield self.gateway.get("/s/spin")
        self.assertEqual(response.code, 504)
        self.assertIn("within 1s", json.loads(content)["error"])
        response, content = yield self.gateway.get("/s/after")
        self.assertEqual(response.code, 200)
        code, view = yield self.gateway.call("GET", "/endpoints/%s" % started["id"])
        self.assertNotIn(started["pids"][0], view["data"]["pids"])

    @inlineCallbacks
    def test_println_goes_to_the_log_not_the_response(self):
        """println! in a handler lands in the endpoint's logs and the response stays intact."""
        started = yield self.gateway.deploy("printer", "/p/{what}", MISBEHAVING)
        response, content = yield self.gateway.get("/p/print")
        self.assertEqual((response.code, json.loads(content)), (200, {"printed": True}))
        code, logs = yield self.gateway.call("GET", "/endpoints/%s/logs" % started["id"])
        lines = [entry["line"] for entry in logs["data"]["lines"]]
        self.assertIn("debug line from /p/print", lines)

    @inlineCallbacks
    def _check_panic_survives(self, code, prefix):
        started = yield self.gateway.deploy("panicky", prefix + "/{what}", code)
        response, content = yield self.gateway.get(prefix + "/panic")
        self.assertEqual(response.code, 500)
        body = json.loads(content)
        self.assertEqual(body["request_id"], response.headers.getRawHeaders("x-request-id")[0])
        response, content = yield self.gateway.get(prefix + "/fine")
        self.assertEqual(response.code, 200)
        # The handler's own pid is that of its pid namespace (docs/isolation.md): ask the gateway.
        code_, view = yield self.gateway.call("GET", "/endpoints/%s" % started["id"])
        self.assertEqual(view["data"]["pids"], started["pids"], "the worker must live on")
        code_, logs = yield self.gateway.call("GET", "/endpoints/%s/logs" % started["id"])
        text = "\n".join(entry["line"] for entry in logs["data"]["lines"])
        self.assertIn("gave up on %s/panic" % prefix, text)

    def test_panic_answers_500_and_the_worker_lives_on(self):
        """A panicking handler answers 500 with the request id; the same worker serves next; the message is logged."""
        return self._check_panic_survives(PANICKY, "/sync")

    def test_async_panic_answers_500_and_the_worker_lives_on(self):
        """The same holds for a handler_loop_async! handler."""
        return self._check_panic_survives(ASYNC_PANICKY, "/async")

    @inlineCallbacks
    def test_binary_request_body_reaches_the_handler_intact(self):
        """A body that is not UTF-8 reaches body_bytes() byte for byte and comes back the same."""
        yield self.gateway.deploy("echo", "/echo", PANICKY, method="POST")
        data = bytes(range(256)) * 3 + b"\xff\xfe\x00"
        response, content = yield self.gateway.request("POST", "/echo", data=data)
        self.assertEqual(response.code, 200)
        self.assertEqual(content, data)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/octet-stream"]
        )

    @inlineCallbacks
    def test_gateway_restart_keeps_the_endpoint_serving(self):
        """After the gateway restarts, a running endpoint serves again without compiling."""
        yield self.gateway.deploy("hello", "/hello", HELLO)
        yield self.gateway.stop()
        # No cargo at all for the second life: serving proves nothing was compiled.
        self.gateway = GatewayHarness(self, self.gateway.data_dir, "/bin/false")
        yield self.gateway.start()
        response, content = yield self.gateway.get("/hello")
        self.assertEqual(response.code, 200)
        self.assertEqual(json.loads(content)["message"], "Hello, World!")


class StartingTests(unittest.TestCase):
    """Until the endpoints are restored the gateway says it is starting, on both planes."""

    @inlineCallbacks
    def test_api_and_data_plane_answer_503_until_restored(self):
        """While restore runs: health 503 "starting", a keyed call 503, an
        unrouted request 503 with Retry-After; afterwards 200, 200 and 404."""
        data_dir = os.path.abspath(self.mktemp())
        runtime = GatewayRuntime(
            data_dir, "tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1",
            sdk_path=SDK, cargo="/bin/false", build_target_dir=SHARED_TARGET,
        )
        restoring, restored = Deferred(), Deferred()

        def restore():
            restoring.callback(None)  # keys loaded, listeners started
            return restored

        runtime.manager.restore = restore
        started = runtime.startService()
        self.addCleanup(runtime.stopService)
        yield restoring
        data, admin = yield runtime.ports()
        pool = HTTPConnectionPool(reactor, persistent=False)
        http = treq.client.HTTPClient(Agent(reactor, pool=pool))
        api = "http://127.0.0.1:%d/api" % admin.getHost().port
        base = "http://127.0.0.1:%d" % data.getHost().port

        @inlineCallbacks
        def statuses():
            health = yield http.get(api + "/health")
            yield health.content()
            with open(os.path.join(data_dir, "admin.key")) as f:
                key = f.read().strip()
            listed = yield http.get(api + "/endpoints", headers={"Authorization": "Bearer " + key})
            yield listed.content()
            routed = yield http.get(base + "/nothing-here")
            yield routed.content()
            returnValue((health.code, listed.code, routed.code, routed.headers.getRawHeaders("retry-after")))

        got = yield statuses()
        self.assertEqual(got, (503, 503, 503, ["1"]))
        restored.callback(None)
        yield started
        got = yield statuses()
        self.assertEqual(got, (200, 200, 404, None))


class TwistdPluginTests(unittest.TestCase):
    timeout = 120

    @inlineCallbacks
    def test_twistd_edgegw_starts_and_writes_the_admin_key(self):
        """`twistd -n edgegw` finds the plugin, serves /api/health and writes admin.key 0600."""
        from twisted.internet.defer import Deferred

        data_dir = os.path.abspath(self.mktemp())
        port, admin = _free_port(), _free_port()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.path.exists(twistd):
            twistd = shutil.which("twistd")
        ended = Deferred()
        collector = _Collect(ended)
        process = reactor.spawnProcess(
            collector,
            twistd,
            [
                twistd, "-n", "--pidfile=", "edgegw", "--data-dir", data_dir,
                "--listen", "tcp:%d:interface=127.0.0.1" % port,
                "--admin-listen", "tcp:%d:interface=127.0.0.1" % admin,
            ],
            env=dict(os.environ),
            path=ROOT,
        )

        exit_codes = []
        ended.addCallback(exit_codes.append)

        def stop():
            if not exit_codes:
                process.signalProcess("KILL")
                return ended

        self.addCleanup(stop)
        pool = HTTPConnectionPool(reactor, persistent=False)
        http = treq.client.HTTPClient(Agent(reactor, pool=pool))
        document = None
        for _ in range(300):
            try:
                response = yield http.get("http://127.0.0.1:%d/api/health" % admin)
                document = yield response.json()
                if document["data"]["status"] != "starting":  # 503 until loaded
                    break
                yield deferLater(reactor, 0.1, lambda: None)
            except Exception:
                yield deferLater(reactor, 0.1, lambda: None)
        self.assertIsNotNone(document, collector.output.decode(errors="replace"))
        self.assertEqual(document["data"]["status"], "healthy")
        key_path = os.path.join(data_dir, "admin.key")
        self.assertEqual(stat.S_IMODE(os.stat(key_path).st_mode), 0o600)
        process.signalProcess("TERM")
        yield ended
        output = collector.output.decode(errors="replace")
        # twistd re-raises the signal it stopped on, after a clean shutdown.
        self.assertIn(exit_codes, ([(0, None)], [(None, signal.SIGTERM)]), output)
        self.assertIn("Server Shut Down.", output)
        self.assertIn(key_path, output)
