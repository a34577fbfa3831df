"""
The management API's listener (edgegw_tx/admin/limits.py): request heads and
bodies must be complete within their timeouts (408, like the data plane), and
every status goes out with its standard reason phrase.
"""

import json

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from edgegw_tx.admin.limits import BODY_TIMEOUT, HEADER_TIMEOUT, admin_site
from edgegw_tx.reasons import reason_phrase
from tests.support.http import WAIT, RawClient, parse_responses

HEAD = b"GET /api/x HTTP/1.1\r\nHost: admin\r\n"


class _Slow(Resource):
    """Answers ``/status/<code>`` with that code at once, anything else when the test says so."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.waiting = []

    def render(self, request):
        parts = request.path.split(b"/")
        if len(parts) == 3 and parts[1] == b"status":
            request.setResponseCode(int(parts[2]))
            return b"{}"
        self.waiting.append(request)
        return NOT_DONE_YET


class HeaderTimeoutTests(TestCase):
    """The head and body deadlines on a fake clock and a StringTransport."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.resource = _Slow()
        self.site = admin_site(self.resource, self.clock, header_timeout=2.0, body_timeout=3.0)

    def connect(self):
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def assert_408(self, transport) -> None:
        responses = parse_responses(transport.value())
        self.assertEqual([r[0] for r in responses], [408])
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n"))
        self.assertEqual(
            json.loads(responses[0][2]),
            {"ok": False, "error": "request header not received within 2 s"},
        )
        self.assertEqual(responses[0][1]["connection"], "close")
        self.assertTrue(transport.disconnecting)

    def test_trickled_head_gets_408(self) -> None:
        """A head trickled a byte a second (which resets an idle timeout) gets 408 two seconds after it began."""
        channel, transport = self.connect()
        for byte in HEAD[:10]:
            channel.dataReceived(bytes([byte]))
            self.clock.advance(0.19)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.2)
        self.assert_408(transport)
        channel.dataReceived(b"\r\n")  # the rest of the head, too late: ignored
        self.assertEqual(self.resource.waiting, [])

    def test_silent_connection_gets_408(self) -> None:
        """A connection that sends nothing is answered 408 and closed after the header timeout."""
        _, transport = self.connect()
        self.clock.advance(1.9)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.1)
        self.assert_408(transport)

    def test_complete_head_is_not_timed(self) -> None:
        """Once the head is in, a slow answer (a compile) is not cut by the header timeout."""
        channel, transport = self.connect()
        channel.dataReceived(HEAD + b"\r\n")
        self.clock.advance(60)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)
        self.resource.waiting[0].finish()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))

    def test_next_request_on_a_kept_alive_connection_is_timed_from_its_first_byte(self) -> None:
        """After an answer, an idle keep-alive connection is left to twisted.web's idle
        timeout (60 s); the next head gets its own deadline from its first byte."""
        channel, transport = self.connect()
        channel.dataReceived(HEAD + b"\r\n")
        self.resource.waiting[0].finish()
        self.clock.advance(50)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(HEAD)
        self.clock.advance(1.9)
        self.assertFalse(transport.disconnecting)
        transport.clear()
        self.clock.advance(0.1)
        self.assert_408(transport)

    def test_pipelined_head_waits_for_the_answer_before_it(self) -> None:
        """A head that arrived while the request before it is answered is timed only from then on."""
        channel, transport = self.connect()
        channel.dataReceived(HEAD + b"\r\n" + HEAD)
        self.clock.advance(30)
        self.assertFalse(transport.disconnecting)
        self.resource.waiting[0].finish()
        transport.clear()
        self.clock.advance(2)
        self.assert_408(transport)

    def test_timer_gone_with_the_connection(self) -> None:
        """A connection closed by the client, mid-head or mid-body, leaves no timer behind."""
        for data in (HEAD[:5], b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nab"):
            channel, _ = self.connect()
            channel.dataReceived(data)
            channel.connectionLost(Failure(ConnectionDone()))
            self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_trickled_body_gets_408(self) -> None:
        """A body trickled a byte at a time after a complete head gets 408 once body_timeout is over."""
        channel, transport = self.connect()
        channel.dataReceived(b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
        for _ in range(5):
            channel.dataReceived(b"x")
            self.clock.advance(0.59)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.1)
        responses = parse_responses(transport.value())
        self.assertEqual([r[0] for r in responses], [408])
        self.assertEqual(json.loads(responses[0][2])["error"], "request body not received within 3 s")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.resource.waiting, [])

    def test_trickled_chunked_body_gets_408(self) -> None:
        """A chunked body that never ends is timed the same way."""
        channel, transport = self.connect()
        channel.dataReceived(b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
        self.clock.advance(3)
        self.assertEqual([r[0] for r in parse_responses(transport.value())], [408])

    def test_body_in_time_and_a_slow_answer(self) -> None:
        """A body complete within body_timeout is served; the answer may then take as long as it takes."""
        channel, transport = self.connect()
        channel.dataReceived(b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        self.clock.advance(2.9)
        channel.dataReceived(b"cd")
        self.clock.advance(600)
        self.assertEqual(transport.value(), b"")
        self.resource.waiting[0].finish()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))

    def test_default_is_the_documented_one(self) -> None:
        """Without timeouts the admin site uses HEADER_TIMEOUT (10 s) and BODY_TIMEOUT (300 s) of docs/limits.md."""
        self.assertEqual((HEADER_TIMEOUT, BODY_TIMEOUT), (10.0, 300.0))
        site = admin_site(self.resource, self.clock)
        self.assertEqual((site.header_timeout, site.body_timeout), (HEADER_TIMEOUT, BODY_TIMEOUT))


class ReasonPhraseTests(TestCase):
    """Every status of the admin listener carries its standard reason phrase (edgegw_tx.reasons)."""

    def test_statuses_twisted_does_not_name(self) -> None:
        """422 and 429 (and the other codes the API answers) go out with their phrase, never "Unknown Status"."""
        site = admin_site(_Slow(), MemoryReactorClock())
        for code in (400, 401, 403, 404, 405, 408, 409, 413, 422, 429, 500, 502, 503, 504):
            channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
            transport = StringTransport()
            channel.makeConnection(transport)
            channel.dataReceived(b"GET /status/%d HTTP/1.1\r\nHost: admin\r\n\r\n" % code)
            status_line = transport.value().split(b"\r\n", 1)[0]
            self.assertEqual(status_line, b"HTTP/1.1 %d %s" % (code, reason_phrase(code)))
            self.assertNotIn(b"Unknown", status_line)

    def test_compile_failure_is_unprocessable_content(self) -> None:
        """A compile failure's answer (422) says ``HTTP/1.1 422 Unprocessable Content``, RFC 9110's phrase."""
        site = admin_site(_Slow(), MemoryReactorClock())
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /status/422 HTTP/1.1\r\nHost: admin\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 422 Unprocessable Content\r\n"))


class RealListenerTests(TestCase):
    """The header timeout on a real socket."""

    @inlineCallbacks
    def test_partial_head_over_a_socket_gets_408(self):
        """A client that sends half a head and waits is answered 408 and disconnected."""
        site = admin_site(_Slow(), reactor, header_timeout=0.2)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = RawClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        self.addCleanup(client.transport.abortConnection)
        client.transport.write(HEAD)
        raw = yield client.closed.addTimeout(WAIT, reactor)
        self.assertEqual([r[0] for r in parse_responses(raw)], [408])
