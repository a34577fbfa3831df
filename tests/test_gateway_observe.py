"""
What the data plane records of each answer (gateway/observe.py wired into
the dispatcher and both HTTP layers): the request counters, the access log,
the trace context and the health path.  Unit tests on StringTransport and
Clock.
"""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from edgegw_tx.gateway.dispatch import Dispatcher
from edgegw_tx.gateway.observe import Observer, health_path_option
from edgegw_tx.gateway.web import GatewayResource
from edgegw_tx.observability.accesslog import FIELDS
from edgegw_tx.observability.metrics import RequestMetrics
from edgegw_tx.observability.trace import parse_traceparent
from tests.support.http import parse_responses
from tests.support.observe import MemoryAccessLog, ObservedFront

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def headers_of(raw):
    """The header fields of the one response in ``raw``, lower-case names."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return dict((n.lower(), v.strip()) for n, v in (line.split(":", 1) for line in head))


class CountingTests(SynchronousTestCase):
    """Every answer changes the counters by exactly one request."""

    def setUp(self):
        self.front = ObservedFront(max_body=100)

    def test_routed_request(self):
        """A routed GET counts once under its endpoint, with its sizes, and leaves nothing in flight."""
        raw = self.front.exchange(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        self.assertIn(b" 200 ", raw)
        series = self.front.metrics.series("echo")
        self.assertEqual(series.counts, {("POST", 200): 1})
        self.assertEqual(series.requests, 1)
        self.assertEqual(series.request_size_sum, 3)
        self.assertEqual(series.response_size_sum, len(b"POST /a {} abc"))
        self.assertEqual(series.inflight, 0)
        self.assertEqual(self.front.counts(""), {})

    def test_inflight_while_the_handler_works(self):
        """A request counts in flight until its answer, then once as answered."""
        protocol, transport = self.front.connect()
        protocol.dataReceived(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        series = self.front.metrics.series("echo")
        self.assertEqual((series.inflight, series.requests), (1, 0))
        self.front.target.held[0].callback({"status": 201, "headers": {}, "body": "ok"})
        self.assertEqual((series.inflight, series.requests), (0, 1))
        self.assertEqual(series.counts, {("GET", 201): 1})

    def test_unrouted_404(self):
        """A 404 counts once under endpoint "" (no route), with its method."""
        self.front.routes.remove(("GET", "/{p}"))
        raw = self.front.exchange(b"GET /nothing/here HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b" 404 ", raw)
        self.assertEqual(self.front.counts(""), {("GET", 404): 1})
        self.assertEqual(self.front.metrics.series("echo").requests, 0)

    def test_gateway_413(self):
        """The HTTP layer's own 413 counts once under endpoint "", with the request's method."""
        raw = self.front.exchange(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
        self.assertIn(b" 413 ", raw)
        self.assertEqual(self.front.counts(""), {("POST", 413): 1})
        self.assertEqual(self.front.metrics.series("echo").requests, 0)

    def test_malformed_400(self):
        """A request llhttp refuses is answered 400 and counted once."""
        raw = self.front.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        self.assertIn(b" 400 ", raw)
        self.assertEqual(sum(self.front.counts("").values()), 1)

    def test_408_after_the_header_timeout(self):
        """A head that does not arrive in time gets 408, counted once with the time it took."""
        protocol, transport = self.front.connect()
        protocol.dataReceived(b"GET /a HTTP/1.1\r\nHo")
        self.front.clock.advance(self.front.factory.header_timeout + 1)
        self.assertIn(b" 408 ", transport.value())
        series = self.front.metrics.series("")
        self.assertEqual(series.counts, {("GET", 408): 1})
        self.assertGreaterEqual(series.duration_sum, self.front.factory.header_timeout)

    def test_pipelined_requests(self):
        """Three pipelined requests count as three."""
        self.front.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        self.assertEqual(self.front.counts("echo"), {("GET", 200): 3})


class AccessLogTests(SynchronousTestCase):
    """One access-log line per request, with the X-Request-Id the client saw."""

    def setUp(self):
        self.front = ObservedFront(max_body=100)

    def test_one_line_with_the_client_request_id(self):
        """The client's own X-Request-Id is in the answer and in the line, with every field."""
        raw = self.front.exchange(
            b"GET /a?secret=1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-1\r\nUser-Agent: probe/1\r\n\r\n"
        )
        self.assertEqual(headers_of(raw)["x-request-id"], "abc-1")
        [line] = self.front.log.lines
        self.assertEqual(tuple(line), FIELDS)
        self.assertEqual(line["request_id"], "abc-1")
        self.assertEqual(line["client"], "192.0.2.7")
        self.assertEqual((line["method"], line["path"], line["status"]), ("GET", "/a", 200))
        self.assertEqual(line["endpoint"], "echo")
        self.assertEqual(line["user_agent"], "probe/1")
        self.assertEqual(line["bytes_in"], 0)
        self.assertEqual(line["time"], self.front.clock.seconds())

    def test_new_request_id_is_the_one_answered(self):
        """Without one, the id the gateway made is both in the answer and in the line."""
        raw = self.front.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        answered = [r[1]["x-request-id"] for r in parse_responses(raw)]
        self.assertEqual([line["request_id"] for line in self.front.log.lines], answered)
        self.assertEqual(len(set(answered)), 2)

    def test_gateway_rejection_logged_with_its_request_id(self):
        """The HTTP layer's 413 carries an X-Request-Id, and the one line has it."""
        raw = self.front.exchange(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
        [line] = self.front.log.lines
        self.assertEqual(line["request_id"], headers_of(raw)["x-request-id"])
        self.assertEqual((line["status"], line["endpoint"], line["path"]), (413, "", "/a"))

    def test_404_logged(self):
        """An unrouted request is logged once, endpoint ""."""
        self.front.routes.remove(("GET", "/{p}"))
        self.front.exchange(b"GET /x/y HTTP/1.1\r\nHost: x\r\n\r\n")
        [line] = self.front.log.lines
        self.assertEqual((line["status"], line["endpoint"]), (404, ""))


class TraceContextTests(SynchronousTestCase):
    """The handler, the answer and the access log share one valid traceparent."""

    def setUp(self):
        self.front = ObservedFront()

    def traced(self, value):
        header = b"traceparent: %s\r\n" % value if value is not None else b""
        raw = self.front.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
        [frame] = self.front.target.frames
        [line] = self.front.log.lines
        return raw, frame["headers"]["traceparent"], headers_of(raw)["traceparent"], line["traceparent"]

    def test_bad_traceparent_replaced(self):
        """An invalid traceparent is replaced by a new valid one, never echoed."""
        bad = b"00-XYZ-not-a-trace"
        raw, to_handler, answered, logged = self.traced(bad)
        self.assertNotIn(bad, raw)
        self.assertIsNotNone(parse_traceparent(to_handler.encode()))
        self.assertEqual({to_handler}, {answered, logged})

    def test_valid_traceparent_continued(self):
        """A valid traceparent keeps its trace id and flags, with the gateway's span id."""
        raw, to_handler, answered, logged = self.traced(VALID.encode())
        self.assertEqual(to_handler.split("-")[1], VALID.split("-")[1])
        self.assertNotEqual(to_handler, VALID)
        self.assertEqual({to_handler}, {answered, logged})

    def test_missing_traceparent_started(self):
        """Without a traceparent the gateway starts a trace."""
        raw, to_handler, answered, logged = self.traced(None)
        self.assertIsNotNone(parse_traceparent(to_handler.encode()))
        self.assertEqual({to_handler}, {answered, logged})

    def test_handler_traceparent_replaced(self):
        """A handler's own traceparent does not reach the client beside the gateway's."""
        self.front.target._answer = lambda frame: {
            "status": 200, "headers": {"traceparent": VALID}, "body": "x"
        }
        raw = self.front.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(raw.count(b"traceparent:"), 1)
        self.assertNotIn(VALID.encode(), raw)


class HealthTests(SynchronousTestCase):
    """The health path is answered before routing: 200 serving, 503 starting or draining."""

    def setUp(self):
        self.front = ObservedFront()

    def health(self):
        raw = self.front.exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        [(status, headers, body)] = [(r[0], r[1], r[2]) for r in parse_responses(raw)]
        return status, json.loads(body)["status"]

    def test_serving(self):
        """200 while the node serves; the user route of the same path is not called."""
        self.assertEqual(self.health(), (200, "serving"))
        self.assertEqual(self.front.target.frames, [])

    def test_starting(self):
        """503 while the route table is being restored."""
        self.front.routes.restoring = True
        self.assertEqual(self.health(), (503, "starting"))

    def test_draining(self):
        """503 once shutdown has begun."""
        self.front.observer.draining = True
        self.assertEqual(self.health(), (503, "draining"))

    def test_counted_and_logged(self):
        """A health check is an answer like any other: counted under "" and logged."""
        self.health()
        self.assertEqual(self.front.counts(""), {("GET", 200): 1})
        self.assertEqual(len(self.front.log.lines), 1)

    def test_none(self):
        """With no health path, /healthz is routed like any path."""
        self.front = ObservedFront(health_path=None)
        raw = self.front.exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"GET /healthz", raw)

    def test_option(self):
        """--health-path: none disables it, a path is kept, anything else is refused clearly."""
        self.assertIsNone(health_path_option("none"))
        self.assertEqual(health_path_option("/-/health"), "/-/health")
        for bad in ("healthz", "/a?b", ""):
            with self.assertRaises(ValueError) as caught:
                health_path_option(bad)
            self.assertIn("--health-path", str(caught.exception))


class _AnswersThenRaises:
    """A pool-like target that answers and then raises (a bug the dispatcher survives)."""

    name = "twice"

    def submit(self, frame, answer):
        answer({"status": 200, "headers": {}, "body": "ok"})
        raise RuntimeError("after answering")


class DispatcherRecordingTests(SynchronousTestCase):
    """The dispatcher records each routed answer once, in its own observer's series."""

    def dispatcher(self, target):
        from edgegw_tx.gateway.dispatch import GatewayRequest
        from edgegw_tx.gateway.routes import RouteTable
        from edgegw_tx.paths import parse_pattern

        routes = RouteTable()
        routes.add(("GET", "/t"), "*", "GET", parse_pattern("/t"), target)
        metrics = RequestMetrics()
        dispatcher = Dispatcher(routes, observer=Observer(metrics, Clock().seconds))
        request = GatewayRequest("GET", "x", "/t", b"", [], b"", "192.0.2.9")
        return dispatcher, metrics, request

    def test_answer_then_raise_counted_once(self):
        """A target that answers and then raises is counted once, and nothing stays in flight."""
        dispatcher, metrics, request = self.dispatcher(_AnswersThenRaises())
        answers = []
        dispatcher.serve(request, answers.append)
        self.assertEqual([r.status for r in answers], [200, 500])
        series = metrics.series("twice")
        self.assertEqual((series.counts, series.inflight), ({("GET", 200): 1}, 0))
        self.assertEqual(self.flushLoggedErrors(RuntimeError)[0].value.args, ("after answering",))

    def test_target_served_by_two_observers(self):
        """The series remembered on a target is its own observer's: a second observer counts in its own metrics."""
        target = _AnswersThenRaises()
        target.submit = lambda frame, answer: answer({"status": 200, "headers": {}, "body": "ok"})
        first, first_metrics, request = self.dispatcher(target)
        second, second_metrics, _ = self.dispatcher(target)
        for dispatcher in (first, second, second):
            dispatcher.serve(request, lambda response: None)
        self.assertEqual(first_metrics.series("twice").counts, {("GET", 200): 1})
        self.assertEqual(second_metrics.series("twice").counts, {("GET", 200): 2})


class TwistedWebLayerTests(SynchronousTestCase):
    """The twisted.web layer records through the same dispatcher."""

    def setUp(self):
        self.front = ObservedFront()
        self.log = MemoryAccessLog()
        self.metrics = RequestMetrics()
        clock = Clock()
        observer = Observer(self.metrics, clock.seconds, access_log=self.log)
        site = Site(GatewayResource(Dispatcher(self.front.routes, observer=observer)), reactor=clock)
        site.log = lambda request: None
        self.site = site

    def exchange(self, data):
        protocol = self.site.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.8", 40000))
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        return transport.value()

    def test_routed_counted_logged_traced(self):
        """A routed request: counted once, one line with its id, a valid traceparent returned."""
        raw = self.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\nX-Request-Id: r1\r\ntraceparent: junk\r\n\r\n")
        self.assertEqual(self.metrics.series("echo").counts, {("GET", 200): 1})
        [line] = self.log.lines
        self.assertEqual((line["request_id"], line["client"]), ("r1", "192.0.2.8"))
        answered = headers_of(raw)["traceparent"]
        self.assertIsNotNone(parse_traceparent(answered.encode()))
        self.assertEqual(line["traceparent"], answered)
        self.assertNotIn(b"junk", raw)

    def test_refusal_counted(self):
        """The layer's own 400 (no Host on HTTP/1.1) is counted once and logged with its request id."""
        raw = self.exchange(b"GET /a HTTP/1.1\r\n\r\n")
        self.assertIn(b" 400 ", raw)
        self.assertEqual(self.metrics.series("").counts, {("GET", 400): 1})
        [line] = self.log.lines
        self.assertEqual(line["request_id"], headers_of(raw)["x-request-id"])
