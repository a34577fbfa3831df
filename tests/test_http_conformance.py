"""
HTTP/1.1 conformance of L{edgegw_tx.gateway.http}, over raw sockets.

A real listening port on 127.0.0.1 (the real reactor), the real L{Dispatcher}
and L{RouteTable}, and a fake target that answers deterministic bytes.  The
client side is a small protocol that writes raw bytes and collects what comes
back until the connection closes or enough responses have arrived.
"""

import json
import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from edgegw_tx.gateway.dispatch import Dispatcher
from edgegw_tx.gateway.http import GatewayHTTPFactory
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.paths import parse_pattern
from tests.support.http import WAIT, EchoTarget, RawClient, parse_responses

class _ServerCase(TestCase):
    """A listening gateway front on 127.0.0.1 and raw clients for it."""

    factory_options = {}

    def setUp(self):
        self.target = EchoTarget()
        routes = RouteTable()
        for method in ("GET", "POST", "HEAD", "PUT"):
            for pattern in ("/", "/{p}"):
                routes.add((method, pattern), "*", method, parse_pattern(pattern), self.target)
        self.factory = GatewayHTTPFactory(
            Dispatcher(routes), reactor, **self.factory_options
        )
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.clients = []
        self.addCleanup(self._close_clients)

    def _close_clients(self):
        for client in self.clients:
            if client.transport is not None:
                client.transport.abortConnection()

    @inlineCallbacks
    def connect(self, data=b""):
        client = RawClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        yield connectProtocol(endpoint, client)
        self.clients.append(client)
        if data:
            client.transport.write(data)
        return client

    def closed(self, client):
        return client.closed.addTimeout(WAIT, reactor)


class HTTPConformanceTests(_ServerCase):
    """Each test sends raw bytes to a listening gateway front."""

    @inlineCallbacks
    def test_keep_alive(self):
        """HTTP/1.1 keeps the connection open: two requests in turn on one
        connection both get answers, and no ``Connection: close``."""
        client = yield self.connect(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n")
        yield client.responses(1)
        client.transport.write(b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
        raw = yield client.responses(2)
        (s1, h1, b1), (s2, h2, b2) = parse_responses(raw)
        self.assertEqual((s1, b1), (200, b"GET /one {} "))
        self.assertEqual((s2, b2), (200, b"GET /two {} "))
        self.assertNotIn("connection", h1)
        self.assertFalse(client.closed.called)

    @inlineCallbacks
    def test_http10_closes(self):
        """HTTP/1.0 without keep-alive: the server closes after the response."""
        client = yield self.connect(b"GET /old HTTP/1.0\r\n\r\n")
        raw = yield self.closed(client)
        [(status, headers, body)] = parse_responses(raw)
        self.assertEqual((status, body), (200, b"GET /old {} "))
        self.assertEqual(headers["connection"], "close")

    @inlineCallbacks
    def test_http10_keep_alive(self):
        """HTTP/1.0 with ``Connection: keep-alive`` keeps the connection and
        says so in the response."""
        client = yield self.connect(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        yield client.responses(1)
        client.transport.write(b"GET /b HTTP/1.0\r\n\r\n")
        raw = yield self.closed(client)
        (_, h1, b1), (_, h2, b2) = parse_responses(raw)
        self.assertEqual(h1["connection"], "keep-alive")
        self.assertEqual((b1, b2), (b"GET /a {} ", b"GET /b {} "))
        self.assertEqual(h2["connection"], "close")

    @inlineCallbacks
    def test_connection_close(self):
        """``Connection: close`` from an HTTP/1.1 client closes after the answer;
        requests pipelined after it are not served."""
        client = yield self.connect(
            b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        raw = yield self.closed(client)
        [(status, headers, body)] = parse_responses(raw)
        self.assertEqual((status, body, headers["connection"]), (200, b"GET /x {} ", "close"))
        self.assertEqual(len(self.target.frames), 1)

    @inlineCallbacks
    def test_pipelined_in_order(self):
        """Pipelined requests are answered in request order even when a later
        one is ready first (a slow one first, then fast ones)."""
        client = yield self.connect(
            b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /fast1?q=1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /fast2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        )
        raw = yield client.responses(3)
        bodies = [body for _, _, body in parse_responses(raw)]
        self.assertEqual(
            bodies, [b"GET /slow {} ", b'GET /fast1 {"q": "1"} ', b"POST /fast2 {} hi"]
        )

    @inlineCallbacks
    def test_chunked_request_body(self):
        """A chunked request body is reassembled and dispatched whole."""
        client = yield self.connect(
            b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        )
        raw = yield client.responses(1)
        [(status, headers, body)] = parse_responses(raw)
        self.assertEqual(body, b"POST /c {} abcdefg")
        self.assertEqual(headers["content-length"], str(len(body)))
        self.assertNotIn("transfer-encoding", headers)

    @inlineCallbacks
    def test_head_has_length_no_body(self):
        """HEAD gets the headers, with the GET answer's Content-Length, and no
        body; the next response on the connection is not corrupted."""
        client = yield self.connect(
            b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        raw = yield client.responses(2, heads=(0,))
        (s1, h1, b1), (s2, h2, b2) = parse_responses(raw, heads=(0,))
        self.assertEqual(h1["content-length"], str(len(b"HEAD /h {} ")))
        self.assertEqual(b1, b"")
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertEqual(b2, b"GET /g {} ")
        self.assertEqual(raw.count(b"HTTP/1.1 200"), 2)

    @inlineCallbacks
    def test_expect_100_continue(self):
        """``Expect: 100-continue``: ``HTTP/1.1 100 Continue`` comes before the
        client has sent the body; then the final answer."""
        client = yield self.connect(
            b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        raw = yield client.responses(1)
        self.assertEqual(raw, b"HTTP/1.1 100 Continue\r\n\r\n")
        client.transport.write(b"hello")
        raw = yield client.responses(2)
        [(s1, _, _), (s2, _, body)] = parse_responses(raw)
        self.assertEqual((s1, s2, body), (100, 200, b"POST /e {} hello"))

    @inlineCallbacks
    def test_expect_too_large_no_continue(self):
        """A request expecting 100-continue with too large a declared body gets
        413 instead and the connection closes."""
        self.factory.max_body = 10
        client = yield self.connect(
            b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
        )
        raw = yield self.closed(client)
        [(status, _, _)] = parse_responses(raw)
        self.assertEqual(status, 413)
        self.assertNotIn(b"100 Continue", raw)

    @inlineCallbacks
    def test_standard_headers(self):
        """Every response has Date, ``Server: edgegw``, the dispatcher's
        X-Request-Id (the client's when valid) and Content-Length."""
        client = yield self.connect(
            b"GET /d HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-1\r\n\r\n"
            b"GET /nothing-here-for-put HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        raw = yield client.responses(2)
        for status, headers, body in parse_responses(raw):
            self.assertRegex(headers["date"], r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$")
            self.assertEqual(headers["server"], "edgegw")
            self.assertEqual(headers["content-length"], str(len(body)))
            self.assertIn("x-request-id", headers)
        self.assertEqual(parse_responses(raw)[0][1]["x-request-id"], "abc-1")

    @inlineCallbacks
    def test_not_found_and_405(self):
        """Routing answers (404, 405 with Allow) come from the dispatcher."""
        client = yield self.connect(
            b"DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        raw = yield client.responses(1)
        [(status, headers, body)] = parse_responses(raw)
        self.assertEqual(status, 405)
        self.assertIn("allow", headers)
        self.assertEqual(json.loads(body)["request_id"], headers["x-request-id"])

    @inlineCallbacks
    def assertRejected(self, data, status=400):
        """C{data} gets C{status} and the connection closes; nothing dispatched."""
        client = yield self.connect(data)
        raw = yield self.closed(client)
        responses = parse_responses(raw)
        self.assertEqual([r[0] for r in responses], [status], raw)
        self.assertEqual(responses[0][1]["connection"], "close")
        self.assertEqual(self.target.frames, [])

    def test_malformed(self):
        """A malformed request line gets 400 and the connection closes."""
        return self.assertRejected(b"HELLO THERE\r\n\r\n")

    def test_bare_lf(self):
        """Bare LF line endings are malformed: 400 and close."""
        return self.assertRejected(b"GET / HTTP/1.1\nHost: a\n\n")

    def test_content_length_and_transfer_encoding(self):
        """Smuggling shape: Content-Length together with Transfer-Encoding → 400, close."""
        return self.assertRejected(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )

    def test_transfer_encoding_and_content_length(self):
        """Smuggling shape: Transfer-Encoding then Content-Length → 400, close."""
        return self.assertRejected(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 4\r\n\r\n0\r\n\r\n"
        )

    def test_two_content_lengths(self):
        """Smuggling shape: two different Content-Lengths → 400, close."""
        return self.assertRejected(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
        )

    def test_unknown_transfer_coding(self):
        """Smuggling shape: a transfer coding other than chunked last → 400, close."""
        return self.assertRejected(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc"
        )

    def test_obsolete_line_folding(self):
        """Obsolete line folding (a header continued on an indented line) → 400, close."""
        return self.assertRejected(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n"
        )

    def test_body_too_large_declared(self):
        """A declared Content-Length above the cap → 413 and close, body unread."""
        self.factory.max_body = 10
        return self.assertRejected(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", 413
        )

    def test_body_too_large_chunked(self):
        """A chunked body growing over the cap → 413 and close."""
        self.factory.max_body = 10
        return self.assertRejected(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n",
            413,
        )

    def test_too_many_headers(self):
        """More header fields than the cap → 431 and close."""
        self.factory.max_headers = 10
        headers = b"".join(b"X-H%d: v\r\n" % i for i in range(11))
        return self.assertRejected(b"GET / HTTP/1.1\r\n" + headers + b"\r\n", 431)

    def test_headers_too_large(self):
        """Header fields larger than the cap → 431 and close."""
        self.factory.max_head = 1024
        return self.assertRejected(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 2000 + b"\r\n\r\n", 431
        )

    def test_unterminated_huge_header(self):
        """A header that never ends is not buffered without bound: 431 and close."""
        self.factory.max_head = 1024
        return self.assertRejected(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 200000, 431
        )

    def test_url_too_long(self):
        """A request target longer than the cap → 414 and close."""
        self.factory.max_url = 100
        return self.assertRejected(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)

    @inlineCallbacks
    def test_error_after_pipelined_answers(self):
        """A malformed request pipelined after a good one: the good answer first,
        then the 400, then close."""
        client = yield self.connect(
            b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nBAD REQUEST\r\n\r\n"
        )
        raw = yield self.closed(client)
        self.assertEqual([r[0] for r in parse_responses(raw)], [200, 400])

    @inlineCallbacks
    def test_disconnect_mid_request(self):
        """A client gone before its answer: nothing is written, no error logged."""
        client = yield self.connect(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
        while not self.target.held:
            yield deferLater(reactor, 0.005, lambda: None)
        client.transport.loseConnection()
        yield self.closed(client)
        yield deferLater(reactor, 0.01, lambda: None)  # the server sees the close
        self.target.held[0].callback({"status": 200, "body": "late"})
        self.assertEqual(client.data, b"")

    @inlineCallbacks
    def test_disconnect_mid_body(self):
        """A client gone half-way through its body: nothing is dispatched."""
        client = yield self.connect(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        client.transport.loseConnection()
        yield self.closed(client)
        self.assertEqual(self.target.frames, [])


class DirectWriteTests(_ServerCase):
    """Answers go straight to a plain TCP socket when nothing is queued."""

    def server_side(self):
        [protocol] = self.factory.connections
        return protocol

    @inlineCallbacks
    def test_small_answer_bypasses_the_write_queue(self):
        """
        With nothing queued, a small answer is sent without
        C{transport.write} (no writability round trip through the reactor).
        """
        client = yield self.connect()
        server = self.server_side()
        queued = []
        write = server.transport.write
        server.transport.write = lambda data: (queued.append(data), write(data))
        client.transport.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = yield client.responses(1)
        [(status, _, body)] = parse_responses(raw)
        self.assertEqual((status, body), (200, b"GET /a {} "))
        self.assertEqual(queued, [])

    @inlineCallbacks
    def test_large_answers_stay_whole_and_in_order(self):
        """
        Answers larger than the socket takes at once (Linux's largest send
        buffer is 4 MiB): the rest is queued through the transport, and a
        later answer waits behind it, so two pipelined 8 MiB answers arrive
        whole and in order.
        """
        first, second = b"a" * (8 << 20), b"b" * (8 << 20)
        request = b"POST /%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        client = yield self.connect()
        server = self.server_side()
        queued = []
        write = server.transport.write
        server.transport.write = lambda data: (queued.append(len(data)), write(data))
        client.transport.write(
            request % (b"one", len(first), first) + request % (b"two", len(second), second)
        )
        raw = yield client.responses(2)
        self.assertTrue(queued, "the kernel took 8 MiB at once: nothing was queued")
        [(s1, _, b1), (s2, _, b2)] = parse_responses(raw)
        self.assertEqual((s1, s2), (200, 200))
        self.assertEqual(b1, b"POST /one {} " + first)
        self.assertEqual(b2, b"POST /two {} " + second)


class IdleTimeoutTests(_ServerCase):
    """Idle keep-alive connections close after the idle timeout."""

    factory_options = {"idle_timeout": 0.1}

    @inlineCallbacks
    def test_idle_keep_alive_times_out(self):
        """After an answer, a keep-alive connection with no new request closes
        once the idle timeout passes."""
        client = yield self.connect(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        raw = yield self.closed(client)
        self.assertEqual([r[0] for r in parse_responses(raw)], [200])

    @inlineCallbacks
    def test_half_sent_request_times_out(self):
        """A request whose head never completes is dropped after the timeout."""
        client = yield self.connect(b"GET / HTTP/1.1\r\nHost: a\r\n")
        raw = yield self.closed(client)
        self.assertEqual(raw, b"")

    @inlineCallbacks
    def test_slow_answer_not_timed_out(self):
        """A request waiting on its handler is not an idle connection."""
        client = yield self.connect(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
        yield deferLater(reactor, 0.25, lambda: None)
        self.assertFalse(client.closed.called)
        self.target.held[0].callback({"status": 204})
        raw = yield client.responses(1)
        self.assertEqual(parse_responses(raw)[0][0], 204)
        self.assertNotIn(b"content-length", raw)


class HeaderTimeoutTests(_ServerCase):
    """Slowloris: a head trickling in byte by byte gets 408 and is closed."""

    factory_options = {"header_timeout": 0.5, "idle_timeout": 30}

    @inlineCallbacks
    def test_one_byte_at_a_time_gets_408(self):
        """Bytes keep arriving (so the idle timeout never fires), but the
        header fields are not complete after header_timeout: 408, closed."""
        client = yield self.connect(b"G")
        trickle = b"ET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 200
        for byte in trickle:
            if client.closed.called:
                break
            client.transport.write(bytes([byte]))
            yield deferLater(reactor, 0.02, lambda: None)
        raw = yield self.closed(client)
        responses = parse_responses(raw)
        self.assertEqual([r[0] for r in responses], [408])
        self.assertEqual(responses[0][1]["connection"], "close")
        self.assertIn(b"request header not received within 0.5 s", responses[0][2])
        self.assertEqual(self.target.frames, [])


class FlowControlTests(SynchronousTestCase):
    """Slow readers: the protocol stops reading when answers pile up."""

    def setUp(self):
        self.target = EchoTarget()
        routes = RouteTable()
        routes.add("get", "*", "GET", parse_pattern("/{p}"), self.target)
        routes.add("root", "*", "GET", parse_pattern("/"), self.target)
        self.clock = Clock()
        self.factory = GatewayHTTPFactory(Dispatcher(routes), self.clock, max_pending=4)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_registered_as_producer(self):
        """The protocol is the transport's streaming producer."""
        self.assertIs(self.transport.producer, self.protocol)
        self.assertTrue(self.transport.streaming)

    def test_pipelining_without_answers_pauses_reading(self):
        """More unanswered requests than the bound pause reading; writing the
        answers resumes it."""
        self.protocol.dataReceived(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n" * 6)
        self.assertEqual(self.transport.producerState, "paused")
        for d in self.target.held:
            d.callback({"status": 200, "body": "x"})
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.transport.value().count(b"HTTP/1.1 200 OK"), 6)

    def test_full_write_buffer_pauses_reading(self):
        """A client that does not read (the transport pauses its producer) stops
        the gateway reading from it until the transport resumes."""
        self.protocol.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.protocol.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")

    def test_date_cached_per_second(self):
        """The Date line is formatted once per second of the clock."""
        dates = self.factory.dates
        first = dates.line(0.1)
        self.assertIs(dates.line(0.9), first)
        self.assertIsNot(dates.line(1.0), first)
        self.assertEqual(first, b"date: Thu, 01 Jan 1970 00:00:00 GMT\r\n")

    def test_idle_timeout_on_clock(self):
        """The idle timer runs on the injected clock; traffic postpones it."""
        self.clock.advance(59)
        self.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.clock.advance(2)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(59)
        self.assertTrue(self.transport.disconnecting)


class RenderFailureTests(SynchronousTestCase):
    """A response that cannot be written is a 500, not a silent hang."""

    def test_unwritable_header_is_a_500_and_close(self):
        """
        A header value that cannot be encoded (a lone surrogate) gets a 500
        and the connection closed; the error is logged, and an answer in the
        same pipeline before it is written as usual.
        """
        target = EchoTarget()
        routes = RouteTable()
        routes.add("get", "*", "GET", parse_pattern("/{p}"), target)

        class Bad:
            def request(self, frame):
                return succeed({"status": 200, "headers": {"x-bad": "\ud800"}, "body": "x"})

        routes.add("bad", "*", "GET", parse_pattern("/bad/{p}"), Bad())
        factory = GatewayHTTPFactory(Dispatcher(routes), Clock())
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\nGET /bad/x HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        [(ok, _, body), (failed, headers, error)] = parse_responses(transport.value())
        self.assertEqual((ok, body), (200, b"GET /fine {} "))
        self.assertEqual(failed, 500)
        self.assertEqual(headers["connection"], "close")
        self.assertIn(b"internal error while writing the response", error)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(UnicodeEncodeError)), 1)


class HeaderTimeoutClockTests(SynchronousTestCase):
    """The header timeout on an injected clock."""

    def setUp(self):
        self.target = EchoTarget()
        routes = RouteTable()
        routes.add("root", "*", "GET", parse_pattern("/"), self.target)
        self.clock = Clock()
        self.factory = GatewayHTTPFactory(Dispatcher(routes), self.clock, header_timeout=10)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_trickling_head_gets_408(self):
        """One byte a second: 408 and close 10 s after the first byte."""
        for byte in b"GET / HTTP/1.1\r\nHost: a\r\n":
            self.protocol.dataReceived(bytes([byte]))
            self.clock.advance(1)
            if self.transport.disconnecting:
                break
        self.assertTrue(self.transport.disconnecting)
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertEqual(self.clock.seconds(), 10)

    def test_idle_between_requests_is_not_a_slow_head(self):
        """A keep-alive connection quiet for longer than header_timeout
        between requests is idle, not slow: the next request is served."""
        self.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.clock.advance(30)
        self.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.transport.value().count(b"HTTP/1.1 200 OK"), 2)
        self.assertNotIn(b" 408 ", self.transport.value())

    def test_head_completed_in_time_is_served(self):
        """A head that takes 9 s in all is served; the timer does not reset per request."""
        for piece in (b"GET / HTTP/1.1\r\n", b"Host: a\r\n", b"\r\n"):
            self.protocol.dataReceived(piece)
            self.clock.advance(4.5)
        self.assertEqual(self.transport.value().count(b"HTTP/1.1 200 OK"), 1)
        self.assertFalse(self.transport.disconnecting)


class HTTPOptionTests(SynchronousTestCase):
    """``--http`` chooses the data plane's HTTP layer."""

    def test_choices(self):
        """httptools and twisted are accepted; anything else is a usage error."""
        from twisted.python.usage import UsageError

        from edgegw_tx.runtime import DEFAULT_HTTP
        from edgegw_tx.tap import Options

        options = Options()
        options.parseOptions([])
        self.assertEqual(options["http"], DEFAULT_HTTP)
        for layer in ("httptools", "twisted"):
            options = Options()
            options.parseOptions(["--http", layer])
            self.assertEqual(options["http"], layer)
        error = self.assertRaises(UsageError, Options().parseOptions, ["--http", "nginx"])
        self.assertIn("--http must be one of", str(error))


class TLSTests(_ServerCase):
    """The same factory behind a TLS endpoint string."""

    def setUp(self):
        import twisted.test
        from twisted.internet.endpoints import serverFromString

        pem = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
        self.target = EchoTarget()
        routes = RouteTable()
        routes.add("get", "*", "GET", parse_pattern("/{p}"), self.target)
        self.factory = GatewayHTTPFactory(Dispatcher(routes), reactor)
        endpoint = serverFromString(reactor, f"ssl:0:interface=127.0.0.1:privateKey={pem}")
        d = endpoint.listen(self.factory)
        d.addCallback(self._listening)
        return d

    def _listening(self, port):
        self.port = port
        self.addCleanup(port.stopListening)
        self.clients = []
        self.addCleanup(self._close_clients)

    @inlineCallbacks
    def test_tls_keep_alive_then_close(self):
        """Over TLS: a keep-alive answer, then ``Connection: close`` closes."""
        from twisted.internet.endpoints import SSL4ClientEndpoint
        from twisted.internet.ssl import CertificateOptions

        client = RawClient()
        endpoint = SSL4ClientEndpoint(
            reactor, "127.0.0.1", self.port.getHost().port, CertificateOptions()
        )
        yield connectProtocol(endpoint, client)
        self.clients.append(client)
        client.transport.write(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        yield client.responses(1)
        client.transport.write(b"GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        raw = yield self.closed(client)
        bodies = [body for _, _, body in parse_responses(raw)]
        self.assertEqual(bodies, [b"GET /a {} ", b"GET /b {} "])


class StatusTarget:
    """Answers C{/status/N} with status N, a body, and the headers the
    query asks for (``?h=name:value;name:value``)."""

    name = "status"

    def __init__(self):
        self.frames = []

    def request(self, frame):
        self.frames.append(frame)
        headers = dict(h.split(":", 1) for h in frame["query"].get("h", "").split(";") if h)
        return succeed(
            {"status": int(frame["params"]["code"]), "headers": headers, "body": "body of " + frame["path"]}
        )


class HandlerStatusTests(_ServerCase):
    """What a handler answers cannot break the connection's framing (issue 14,
    item 2), over a raw socket."""

    def setUp(self):
        super().setUp()
        self.status = StatusTarget()
        self.factory.dispatcher._routes.add(
            "status", "*", "GET", parse_pattern("/status/{code}"), self.status
        )

    @inlineCallbacks
    def test_interim_status_is_502_and_next_answer_framed(self):
        """A handler answering 100 (or 101) gets 502 instead; on the same
        kept-alive connection the next request's answer is its own, whole,
        and the connection stays open.  Without the check the 1xx line would
        be read as an interim answer and the 200 as the first request's."""
        for code in (b"100", b"101"):
            client = yield self.connect(
                b"GET /status/" + code + b" HTTP/1.1\r\nHost: a\r\n\r\n"
                b"GET /status/200 HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            raw = yield client.responses(2)
            (s1, h1, b1), (s2, h2, b2) = parse_responses(raw)
            self.assertEqual((s1, s2), (502, 200))
            self.assertIn(b"interim (1xx) status", b1)
            self.assertEqual(h1["content-length"], str(len(b1)))
            self.assertEqual(b2, b"body of /status/200")
            self.assertNotIn(b"HTTP/1.1 1", raw)
            self.assertNotIn(b"upgrade", raw.lower())
            self.assertFalse(client.closed.called)

    @inlineCallbacks
    def test_no_body_statuses_send_no_body(self):
        """204 and 304 from a handler that gave a body: no body and no
        Content-Length on the wire, and the next answer is framed right."""
        client = yield self.connect(
            b"GET /status/204 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /status/304 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /status/200 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        raw = yield client.responses(3)
        [(s1, h1, b1), (s2, h2, b2), (s3, _, b3)] = parse_responses(raw)
        self.assertEqual((s1, s2, s3), (204, 304, 200))
        self.assertNotIn("content-length", h1)
        self.assertNotIn("content-length", h2)
        self.assertEqual(b3, b"body of /status/200")
        self.assertEqual(raw.count(b"body of"), 1)

    @inlineCallbacks
    def test_one_date_and_gateway_framing(self):
        """A handler's Date, Content-Length, Transfer-Encoding and Connection
        do not reach the wire: one Date (the gateway's) and the gateway's own
        Content-Length."""
        client = yield self.connect(
            b"GET /status/200?h=Date:Mon%2C%2001%20Jan%202001%2000%3A00%3A00%20GMT;"
            b"Content-Length:1;Transfer-Encoding:chunked;Connection:close HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        raw = yield client.responses(1)
        [(status, headers, body)] = parse_responses(raw)
        self.assertEqual((status, body), (200, b"body of /status/200"))
        head = raw.split(b"\r\n\r\n")[0].lower()
        self.assertEqual(head.count(b"\r\ndate:"), 1)
        self.assertNotIn(b"2001", head)
        self.assertEqual(head.count(b"\r\ncontent-length:"), 1)
        self.assertNotIn(b"transfer-encoding", head)
        self.assertNotIn(b"connection", head)
        self.assertEqual(headers["content-length"], str(len(body)))

    @inlineCallbacks
    def test_reason_phrases(self):
        """422 and 429 carry RFC 9110's reason phrases, not "Unknown Status" (nor the older "Unprocessable Entity")."""
        client = yield self.connect(
            b"GET /status/422 HTTP/1.1\r\nHost: a\r\n\r\nGET /status/429 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        raw = yield client.responses(2)
        self.assertIn(b"HTTP/1.1 422 Unprocessable Content\r\n", raw)
        self.assertIn(b"HTTP/1.1 429 Too Many Requests\r\n", raw)


class RequestShapeTests(SynchronousTestCase):
    """Request shapes refused or routed by RFC 9112 (issue 14, item 7 and the
    data plane's Low items), on a StringTransport."""

    def setUp(self):
        self.a = EchoTarget()
        self.b = EchoTarget()
        routes = RouteTable()
        routes.add("a", "a.example", "GET", parse_pattern("/{p}"), self.a)
        routes.add("b", "b.example", "GET", parse_pattern("/{p}"), self.b)
        routes.add("any", "*", "POST", parse_pattern("/{p}"), self.b)
        self.factory = GatewayHTTPFactory(Dispatcher(routes), Clock())

    def send(self, data):
        """Feed C{data} to a new connection; return its transport."""
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        return transport

    def assertRefused(self, data, status, fragment):
        """C{data} gets C{status} with C{fragment} in the body, the connection
        closes and nothing is dispatched."""
        transport = self.send(data)
        [(got, headers, body)] = parse_responses(transport.value())
        self.assertEqual(got, status, transport.value())
        self.assertIn(fragment, json.loads(body)["error"])
        self.assertEqual(headers["connection"], "close")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.a.frames + self.b.frames, [])

    def test_two_host_fields(self):
        """Two Host header fields: 400 and close (the last no longer wins)."""
        self.assertRefused(
            b"GET /x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            400,
            "more than one Host header field",
        )

    def test_invalid_host_field(self):
        """A Host value that is not C{host [":" port]} (one a proxy could
        read as another host) is a 400 and close; IP literals and ports pass."""
        for value in (b"a.example:80@b.example", b"a.example, b.example", b"a/b", b"[::1"):
            self.assertRefused(
                b"GET /x HTTP/1.1\r\nHost: " + value + b"\r\n\r\n", 400, "the Host header field is not"
            )
        for value in (b"b.example:8080", b"[::1]:80", b"B.EXAMPLE."):
            transport = self.send(b"GET /x HTTP/1.1\r\nHost: " + value + b"\r\n\r\n")
            # Routed: b.example's GET route, or the any-host POST route (405).
            self.assertEqual(parse_responses(transport.value())[0][0], 405 if b"[" in value else 200)

    def test_valid_hosts_remembered_within_bounds(self):
        """Valid Host values are remembered (one set lookup for a repeated
        one), at most 1,024 of them and none longer than 255 bytes."""
        for i in range(1500):
            self.send(b"GET /x HTTP/1.1\r\nHost: h%d.example\r\n\r\n" % i)
        self.send(b"GET /x HTTP/1.1\r\nHost: " + b"a" * 300 + b"\r\n\r\n")
        self.assertLessEqual(len(self.factory.hosts_ok), 1024)
        self.assertIn(b"h1499.example", self.factory.hosts_ok)
        self.assertNotIn(b"a" * 300, self.factory.hosts_ok)

    def test_missing_host_on_http11(self):
        """No Host on HTTP/1.1: 400 and close; HTTP/1.0 without Host is fine."""
        self.assertRefused(b"GET /x HTTP/1.1\r\n\r\n", 400, "needs a Host header field")
        transport = self.send(b"POST /x HTTP/1.0\r\n\r\n")
        self.assertEqual(parse_responses(transport.value())[0][0], 200)

    def test_absolute_form_authority_wins(self):
        """C{GET http://a.example/x} with C{Host: b.example} is routed to
        a.example, and the handler sees that host (RFC 9112 §3.2.2)."""
        transport = self.send(
            b"GET http://A.example:8080/x?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n"
        )
        [(status, _, body)] = parse_responses(transport.value())
        self.assertEqual((status, body), (200, b'GET /x {"q": "1"} '))
        self.assertEqual(self.b.frames, [])
        [frame] = self.a.frames
        self.assertEqual(frame["headers"]["host"], "A.example:8080")

    def test_absolute_form_refused_shapes(self):
        """An absolute-form target with another scheme or a userinfo: 400."""
        self.assertRefused(
            b"GET ftp://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "http(s) URL"
        )
        self.assertRefused(
            b"GET http://u:p@a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "userinfo"
        )

    def test_transfer_encoding_other_than_chunked(self):
        """C{Transfer-Encoding: identity, chunked} (any coding but chunked
        alone): 400 and close."""
        self.assertRefused(
            b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
            400,
            "Transfer-Encoding must be chunked",
        )

    def test_transfer_encoding_on_http10(self):
        """Any Transfer-Encoding on HTTP/1.0 is faulty framing (RFC 9112
        §6.1): 400 and close."""
        self.assertRefused(
            b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "Transfer-Encoding in an HTTP/1.0 request",
        )

    def test_chunked_still_served(self):
        """C{Transfer-Encoding: Chunked} on HTTP/1.1 is served as before."""
        transport = self.send(
            b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
        )
        self.assertEqual(parse_responses(transport.value())[0][2], b"POST /x {} hi")

    def test_other_http_versions(self):
        """HTTP/2.0 and HTTP/0.9 request lines: 505 and close."""
        for version in (b"2.0", b"0.9"):
            self.assertRefused(
                b"GET /x HTTP/" + version + b"\r\nHost: a.example\r\n\r\n",
                505,
                "HTTP/" + version.decode() + " is not supported",
            )

    def test_path_normal_form_reaches_handler(self):
        """The handler's C{path} is the normal form the route matched."""
        transport = self.send(b"GET /%78%2f%2e HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertEqual(parse_responses(transport.value())[0][2], b"GET /x%2F. {} ")
        transport = self.send(b"GET /%2e%2e HTTP/1.1\r\nHost: a.example\r\n\r\n")
        [(status, headers, body)] = parse_responses(transport.value())
        self.assertEqual(status, 400)
        self.assertIn(b"dot-segment", body)
        self.assertFalse(transport.disconnecting)


class HeadOnGetTests(_ServerCase):
    """HEAD on a route that only has GET, over a raw socket."""

    def setUp(self):
        super().setUp()
        routes = self.factory.dispatcher._routes
        routes.remove(("HEAD", "/{p}"))

    @inlineCallbacks
    def test_head_served_as_get_without_body(self):
        """HEAD gets 200 with the Content-Length of the answer, no body, and
        the next answer on the connection is framed right."""
        client = yield self.connect(
            b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /g HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        raw = yield client.responses(2, heads=(0,))
        (s1, h1, b1), (s2, _, b2) = parse_responses(raw, heads=(0,))
        self.assertEqual((s1, b1, h1["content-length"]), (200, b"", str(len(b"HEAD /h {} "))))
        self.assertEqual((s2, b2), (200, b"GET /g {} "))


class BodyTimeoutTests(SynchronousTestCase):
    """A request body that drips: 408 and close after C{body_timeout}."""

    def setUp(self):
        self.target = EchoTarget()
        routes = RouteTable()
        routes.add("post", "*", "POST", parse_pattern("/"), self.target)
        self.clock = Clock()
        self.factory = GatewayHTTPFactory(
            Dispatcher(routes), self.clock, header_timeout=10, body_timeout=30, idle_timeout=60
        )
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_dripping_body_gets_408(self):
        """One body byte a second (so neither the idle nor the header timeout
        fires): 408 naming the body and close, 30 s after the head."""
        self.protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):
            if self.transport.disconnecting:
                break
            self.protocol.dataReceived(b"x")
            self.clock.advance(1)
        self.assertEqual(self.clock.seconds(), 30)
        [(status, headers, body)] = parse_responses(self.transport.value())
        self.assertEqual(status, 408)
        self.assertEqual(headers["connection"], "close")
        self.assertIn(b"request body not received within 30 s", body)
        self.assertEqual(self.target.frames, [])

    def test_dripping_chunked_body_gets_408(self):
        """The same for a chunked body whose chunks keep coming."""
        self.protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(100):
            if self.transport.disconnecting:
                break
            self.protocol.dataReceived(b"1\r\nx\r\n")
            self.clock.advance(1)
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertEqual(self.clock.seconds(), 30)

    def test_body_in_time_is_served_and_deadline_is_per_request(self):
        """A body complete in 29 s is served; the next request on the
        connection has its own 30 s."""
        for _ in range(2):
            self.protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\na")
            self.clock.advance(29)
            self.protocol.dataReceived(b"b")
        self.assertEqual(self.transport.value().count(b"HTTP/1.1 200 OK"), 2)
        self.assertFalse(self.transport.disconnecting)

    def test_body_time_starts_with_100_continue(self):
        """A client expecting 100-continue behind a slow earlier answer waits
        for the Continue: its body's 30 s start when the Continue is sent."""
        held = Deferred()
        self.target.request = lambda frame: held
        self.protocol.dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx"
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n"
        )
        self.clock.advance(45)
        self.assertFalse(self.transport.disconnecting)
        self.target.request = EchoTarget().request
        held.callback({"status": 200, "body": "first"})
        self.assertTrue(self.transport.value().endswith(b"HTTP/1.1 100 Continue\r\n\r\n"))
        self.clock.advance(29)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.transport.disconnecting)
        self.assertIn(b"HTTP/1.1 408 ", self.transport.value())

    def test_waiting_for_the_answer_is_not_a_slow_body(self):
        """Once the body is in, a slow handler does not trigger the deadline."""
        held = Deferred()
        self.target.request = lambda frame: held
        self.protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
        self.clock.advance(45)
        self.assertFalse(self.transport.disconnecting)
        held.callback({"status": 200, "body": "late"})
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 200 OK"))


class BodyTimeoutOptionTests(SynchronousTestCase):
    """``--body-timeout``: one default, the factory's, shown in docs/limits.md."""

    def test_default_is_the_factorys_and_documented(self):
        """The option's default is L{BODY_TIMEOUT}, the factory's default, and
        docs/limits.md shows that number in the option's row."""
        from edgegw_tx.gateway.http import BODY_TIMEOUT
        from edgegw_tx.tap import LIMITS

        [default] = [default for name, default, _, _ in LIMITS if name == "body-timeout"]
        self.assertEqual(float(default), BODY_TIMEOUT)
        # (A compiled factory has no inspectable signature: ask an instance.)
        self.assertEqual(GatewayHTTPFactory(Dispatcher(RouteTable())).body_timeout, BODY_TIMEOUT)
        docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "limits.md")
        with open(docs) as f:
            [row] = [line for line in f if "`--body-timeout SECONDS`" in line]
        self.assertIn(f"| {BODY_TIMEOUT:g} s |", row)
