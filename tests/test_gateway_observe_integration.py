"""
The access log and trace context of a real gateway: a handler compiled by
real cargo, real HTTP, ``--access-log`` to a real file; and the health path
of a real ``twistd edgegw --processes 2 --shutdown-delay 2`` on SIGTERM.
"""

import json
import os
import signal

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from edgegw_tx.observability.accesslog import FIELDS
from edgegw_tx.observability.trace import parse_traceparent
from tests.support.handlers import HELLO
from tests.support.hardening import HardeningTestCase, TwistdGateway, reachable_data_dir, wait_for
from tests.support.harness import GatewayTestCase

TRACED = r"""use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"traceparent": req.traceparent()}))
}

handler_loop!(handle);
"""


class AccessLogIntegrationTests(GatewayTestCase):
    """--access-log PATH: one line per request, what the client saw."""

    @inlineCallbacks
    def setUp(self):
        self.path = os.path.abspath(self.mktemp())
        self.runtime_options = {"access_log": self.path}
        yield super().setUp()

    @inlineCallbacks
    def test_one_line_per_request(self):
        """
        Each request (a routed one with a bad traceparent, one with the
        client's X-Request-Id, a 404, the health path) is one JSON line with
        the request id and traceparent the client got; the handler saw that
        same traceparent, never the bad one.
        """
        yield self.gateway.deploy("traced", "/traced", TRACED)
        sent = [
            ("/traced", {"traceparent": ["not-a-traceparent"]}),
            ("/traced", {"X-Request-Id": ["client-id-1"]}),
            ("/missing", {}),
            ("/healthz", {}),
        ]
        answers = []
        for path, headers in sent:
            response, content = yield self.gateway.request("GET", path, headers=headers)
            answers.append((response, content))
        yield self.gateway.runtime.observer.access_log.close()  # flushed to the file
        with open(self.path, "rb") as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual(len(lines), len(sent))
        for line, (path, _), (response, content) in zip(lines, sent, answers):
            self.assertEqual(list(line), list(FIELDS))
            self.assertEqual(line["path"], path)
            self.assertEqual(line["status"], response.code)
            self.assertEqual(line["request_id"], response.headers.getRawHeaders("x-request-id")[0])
            self.assertEqual(line["traceparent"], response.headers.getRawHeaders("traceparent")[0])
            self.assertIsNotNone(parse_traceparent(line["traceparent"].encode()))
        self.assertEqual(lines[1]["request_id"], "client-id-1")
        self.assertEqual([line["endpoint"] for line in lines], ["traced", "traced", "", ""])
        self.assertEqual([line["status"] for line in lines], [200, 200, 404, 200])
        self.assertEqual(json.loads(answers[0][1])["traceparent"], lines[0]["traceparent"])
        self.assertIsNotNone(lines[0]["version"])
        series = self.gateway.runtime.request_metrics.series("traced")
        self.assertEqual(series.counts, {("GET", 200): 2})


class ShutdownDelayIntegrationTests(HardeningTestCase):
    """--shutdown-delay on a real twistd with two data-plane processes: SIGTERM, then draining while serving."""

    DELAY = 2

    @inlineCallbacks
    def status(self, gateway, path):
        """The status of GET ``path`` on ``gateway``'s data plane (a new connection each time)."""
        response, _ = yield gateway.request("GET", path)
        return response.code

    @inlineCallbacks
    def test_sigterm_health_503_while_routes_serve_for_the_delay(self):
        """
        After SIGTERM the health path answers 503 while /hello still answers
        200 and the gateway runs on; it ends cleanly no sooner than the delay.
        """
        data_dir = reachable_data_dir(self)
        # hello compiled by a gateway in this process; twistd serves it, compiling nothing.
        harness = yield self.start_gateway(data_dir)
        yield harness.deploy("hello", "/hello", HELLO)
        yield harness.stop_once()
        twistd = TwistdGateway(self, data_dir, extra=["--processes", "2", "--shutdown-delay", str(self.DELAY)])
        yield twistd.start()
        gateway = twistd.harness
        for path in ("/hello", "/healthz"):
            yield wait_for(
                lambda: self.status(gateway, path).addCallback(lambda code: code == 200),
                30,
                message=f"GET {path} to answer 200",
            )

        sent = reactor.seconds()
        twistd.process.signalProcess("TERM")
        yield wait_for(
            lambda: self.status(gateway, "/healthz").addCallback(lambda code: code == 503),
            self.DELAY / 2,
            message="the health path to answer 503 after SIGTERM",
        )
        self.assertEqual((yield self.status(gateway, "/hello")), 200)
        self.assertEqual(twistd.exit, [])
        status = yield twistd.ended
        self.assertGreaterEqual(reactor.seconds() - sent, self.DELAY)
        self.assertIn(status, ((0, None), (None, signal.SIGTERM)), twistd.output())
