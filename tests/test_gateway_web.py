"""Tests for L{edgegw_tx.gateway.web}, end to end through StubTreq."""

import json
from base64 import b64encode
from io import BytesIO

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request, Site
from twisted.web.test.requesthelper import DummyChannel

from edgegw_tx.errors import Overloaded
from edgegw_tx.gateway.dispatch import Dispatcher
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.gateway.web import GatewayResource
from edgegw_tx.paths import parse_pattern


class FakeTarget:
    """A pool stand-in whose Deferreds the test fires."""

    name = "web-endpoint"

    def __init__(self):
        self.frames = []
        self.deferreds = []

    def request(self, frame):
        self.frames.append(frame)
        d = Deferred()
        self.deferreds.append(d)
        return d


class GatewayResourceTests(SynchronousTestCase):
    """Requests through a real twisted.web Site reach the target and come back."""

    def setUp(self):
        self.target = FakeTarget()
        routes = RouteTable()
        routes.add("items", "*", "GET", parse_pattern("/items/{id}"), self.target)
        routes.add("post", "*", "POST", parse_pattern("/items/{id}"), self.target)
        routes.add("head", "*", "HEAD", parse_pattern("/items/{id}"), self.target)
        routes.add("nc", "*", "GET", parse_pattern("/empty"), self.target)
        self.resource = GatewayResource(Dispatcher(routes))
        self.stub = StubTreq(self.resource)

    def respond(self, d, frame):
        """Fire the latest target Deferred with C{frame}; return the response."""
        self.stub.flush()
        self.assertNoResult(d)
        self.target.deferreds[-1].callback(frame)
        self.stub.flush()
        return self.successResultOf(d)

    def content(self, response):
        d = response.content()
        self.stub.flush()
        return self.successResultOf(d)

    def test_round_trip(self):
        """Method, path, query, headers, body and client ip reach the frame; the
        response's status, headers and body reach the client."""
        d = self.stub.post(
            "http://api.example.com:9080/items/a%2Fb?x=1&x=2",
            data=b'{"k": "v"}',
            headers={"X-Thing": ["one", "two"], "X-Request-Id": "req-1"},
        )
        response = self.respond(
            d,
            {
                "status": 201,
                "headers": {
                    "content-type": "application/json",
                    "set-cookie": ["a=1", "b=2"],
                    "connection": "close",
                },
                "body": '{"ok": true}',
            },
        )
        frame = self.target.frames[-1]
        self.assertEqual(frame["method"], "POST")
        self.assertEqual(frame["path"], "/items/a%2Fb")
        self.assertEqual(frame["params"], {"id": "a/b"})
        self.assertEqual(frame["query"], {"x": "1,2"})
        self.assertEqual(frame["headers"]["x-thing"], "one, two")
        self.assertEqual(frame["headers"]["host"], "api.example.com:9080")
        self.assertEqual(frame["body"], '{"k": "v"}')
        self.assertEqual(frame["client_ip"], "127.0.0.1")
        self.assertEqual(frame["request_id"], "req-1")

        self.assertEqual(response.code, 201)
        headers = response.headers
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(headers.getRawHeaders("set-cookie"), ["a=1", "b=2"])
        self.assertEqual(headers.getRawHeaders("x-request-id"), ["req-1"])
        self.assertEqual(headers.getRawHeaders("server"), ["edgegw"])
        # The client moves framing headers out of .headers; a known length
        # means the gateway sent Content-Length rather than chunks.
        self.assertEqual(response.length, 12)
        self.assertEqual(self.content(response), b'{"ok": true}')

    def test_binary_bodies(self):
        """A non-UTF-8 request body goes as base64; a base64 response body comes
        back as bytes."""
        d = self.stub.post("http://h/items/1", data=b"\xff\xfe")
        response = self.respond(
            d, {"status": 200, "body_base64": b64encode(b"\x00\x01").decode()}
        )
        self.assertEqual(self.target.frames[-1]["body_base64"], "//4=")
        self.assertEqual(self.content(response), b"\x00\x01")

    def test_no_default_content_type(self):
        """A handler response without content-type gets none added (no text/html)."""
        d = self.stub.get("http://h/items/1")
        response = self.respond(d, {"status": 200, "body": "x"})
        self.assertIsNone(response.headers.getRawHeaders("content-type"))

    def test_handler_server_header(self):
        """A handler's own server header replaces the default."""
        d = self.stub.get("http://h/items/1")
        response = self.respond(d, {"status": 200, "headers": {"Server": "mine"}})
        self.assertEqual(response.headers.getRawHeaders("server"), ["mine"])

    def test_no_content(self):
        """A 204 has no body and no content-length."""
        d = self.stub.get("http://h/empty")
        response = self.respond(d, {"status": 204, "body": None})
        self.assertEqual(response.code, 204)
        self.assertIsNone(response.headers.getRawHeaders("content-length"))
        self.assertEqual(self.content(response), b"")

    def test_head(self):
        """A HEAD route answers with headers (content-length kept) and no body."""
        d = self.stub.head("http://h/items/1")
        response = self.respond(d, {"status": 200, "body": "12345"})
        self.assertEqual(response.headers.getRawHeaders("content-length"), ["5"])
        self.assertEqual(self.content(response), b"")

    def test_404(self):
        """An unknown path gets the dispatcher's 404 JSON with a request id."""
        d = self.stub.get("http://h/nope")
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 404)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        [request_id] = response.headers.getRawHeaders("x-request-id")
        self.assertEqual(
            json.loads(self.content(response)),
            {"error": "no route for GET /nope", "request_id": request_id},
        )

    def test_405(self):
        """A known path with another method gets 405 with Allow."""
        d = self.stub.delete("http://h/items/1")
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders("allow"), ["GET, HEAD, POST"])
        body = json.loads(self.content(response))
        self.assertEqual(body["allowed"], ["GET", "HEAD", "POST"])
        self.assertTrue(response.headers.getRawHeaders("x-request-id"))

    def test_overloaded(self):
        """A 503 from the pool reaches the client with Retry-After."""
        d = self.stub.get("http://h/items/1")
        self.stub.flush()
        self.target.deferreds[-1].errback(Overloaded("queue full", retry_after=5))
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["5"])
        self.assertEqual(json.loads(self.content(response))["endpoint"], "web-endpoint")

    def test_bad_response(self):
        """An invalid handler response is a 502 for the client."""
        d = self.stub.get("http://h/items/1")
        response = self.respond(d, {"status": "ok"})
        self.assertEqual(response.code, 502)


class DisconnectTests(SynchronousTestCase):
    """A client that goes away before the answer is not written to."""

    def test_no_write_after_disconnect(self):
        """Firing the target after the connection is lost writes nothing and
        raises nothing."""
        target = FakeTarget()
        routes = RouteTable()
        routes.add("items", "*", "GET", parse_pattern("/items/{id}"), target)
        channel = DummyChannel()
        channel.site = Site(GatewayResource(Dispatcher(routes)))
        request = Request(channel, False)
        request.content = BytesIO()
        request.requestHeaders.setRawHeaders(b"host", [b"h"])
        request.requestReceived(b"GET", b"/items/1", b"HTTP/1.1")
        self.assertEqual(len(target.deferreds), 1)
        request.connectionLost(Failure(ConnectionDone()))
        target.deferreds[0].callback({"status": 200, "body": "late"})
        self.assertEqual(channel.transport.written.getvalue(), b"")
        self.assertFalse(request.finished)


class RawRequestTests(SynchronousTestCase):
    """Raw bytes through a real Site on a StringTransport: what a client
    library would not send."""

    def setUp(self):
        self.a = FakeTarget()
        self.b = FakeTarget()
        routes = RouteTable()
        routes.add("a", "a.example", "GET", parse_pattern("/{p}"), self.a)
        routes.add("b", "b.example", "GET", parse_pattern("/{p}"), self.b)
        # A clock of its own: the channels' timeouts stay off the global reactor.
        from twisted.internet.task import Clock

        self.site = Site(GatewayResource(Dispatcher(routes)), reactor=Clock())

    def send(self, data):
        """Feed C{data} to a new connection; return its transport."""
        from twisted.internet.testing import StringTransport

        protocol = self.site.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        return transport

    def assertRefused(self, data, fragment):
        """C{data} gets a 400 naming the problem; nothing is dispatched."""
        raw = self.send(data).value()
        self.assertTrue(raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), raw)
        self.assertIn(fragment, raw.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(self.a.frames + self.b.frames, [])

    def test_two_host_fields(self):
        """Two Host fields: 400, not the last one winning."""
        self.assertRefused(
            b"GET /x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            b"more than one Host header field",
        )

    def test_invalid_host_field(self):
        """A Host value that is not C{host [":" port]}: 400."""
        self.assertRefused(
            b"GET /x HTTP/1.1\r\nHost: a.example:80@b.example\r\n\r\n",
            b"the Host header field is not",
        )

    def test_missing_host_on_http11(self):
        """No Host on HTTP/1.1: 400."""
        self.assertRefused(b"GET /x HTTP/1.1\r\n\r\n", b"needs a Host header field")

    def test_absolute_form_authority_wins(self):
        """An absolute-form target is routed by its authority, which the
        handler also sees as its host; the path is the target's."""
        self.send(b"GET http://a.example/x?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n")
        self.assertEqual(self.b.frames, [])
        [frame] = self.a.frames
        self.assertEqual((frame["path"], frame["query"]), ("/x", {"q": "1"}))
        self.assertEqual(frame["headers"]["host"], "a.example")

    def test_reason_phrases(self):
        """422 and 429 from a handler carry RFC 9110's reason phrases, not
        twisted.web's "Unknown Status" (nor Python 3.11's older "Unprocessable Entity")."""
        for status, phrase in ((422, b"Unprocessable Content\r\n"), (429, b"Too Many Requests\r\n")):
            transport = self.send(b"GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n")
            self.a.deferreds[-1].callback({"status": status})
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 %d %s" % (status, phrase)))

    def test_one_date(self):
        """A handler's Date does not duplicate twisted.web's."""
        transport = self.send(b"GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.a.deferreds[-1].callback(
            {"status": 200, "headers": {"Date": "Mon, 01 Jan 2001 00:00:00 GMT"}, "body": "x"}
        )
        head = transport.value().split(b"\r\n\r\n")[0].lower()
        self.assertEqual(head.count(b"\r\ndate:"), 1)
        self.assertNotIn(b"2001", head)
