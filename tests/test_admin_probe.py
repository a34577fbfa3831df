"""
Test requests to the data plane (``edgegw_tx/admin/probe.py``,
``POST /api/test-request``): the checks of the request, the exchange through
an in-memory agent (treq's ``RequestTraversalAgent``) on a ``Clock``, the
errors, and one real exchange over 127.0.0.1.
"""

import base64
import json

from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, fail, inlineCallbacks
from twisted.internet.endpoints import (
    SSL4ClientEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    TCP4ServerEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from edgegw_tx.admin.api import AdminAPI
from edgegw_tx.admin.errors import BadRequest
from edgegw_tx.admin.probe import (
    MAX_RESPONSE_BODY,
    DataPlaneProbe,
    DataPlaneTimeout,
    DataPlaneUnreachable,
    check_test_request,
    client_endpoint,
)
from tests.support.fakes import keyed_store


class Echo(Resource):
    """A stand-in data plane: answers what it got, or a big or binary body."""

    isLeaf = True

    def render(self, request):
        if request.path == b"/big":
            return b"x" * (MAX_RESPONSE_BODY + 10)
        if request.path == b"/binary":
            request.setHeader(b"content-type", b"application/octet-stream")
            return b"\xff\x00\xfe"
        request.setResponseCode(201 if request.method == b"POST" else 200)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-multi", b"one")
        request.responseHeaders.addRawHeader(b"x-multi", b"two")
        return json.dumps(
            {
                "method": request.method.decode(),
                "uri": request.uri.decode(),
                "host": (request.getHeader(b"host") or b"").decode(),
                "x_test": (request.getHeader(b"x-test") or b"").decode("latin-1"),
                "body": request.content.read().decode(),
                "content_length": (request.getHeader(b"content-length") or b"").decode(),
            }
        ).encode()


class CheckTests(unittest.TestCase):
    def test_defaults(self):
        """Only the path is required: GET, no headers, no body, 30 s."""
        self.assertEqual(check_test_request({"path": "/a?b=1"}), ("GET", "/a?b=1", [], None, 30.0))

    def test_post_sends_an_empty_body(self):
        """POST, PUT and PATCH send their body, even an empty one; others send one only when given."""
        self.assertEqual(check_test_request({"path": "/", "method": "POST"})[3], b"")
        self.assertEqual(check_test_request({"path": "/", "method": "DELETE", "body": "é"})[3], "é".encode())

    def test_hop_by_hop_headers_are_ignored(self):
        """Content-Length, Connection and the like are the client's to set."""
        _, _, pairs, _, _ = check_test_request(
            {"path": "/", "headers": {"Content-Length": "5", "connection": "close", "Host": "api.example.com"}}
        )
        self.assertEqual(pairs, [("Host", "api.example.com")])

    def test_refused(self):
        """Each malformed field is a 400 naming it."""
        cases = [
            ({"path": "/", "extra": 1}, "extra"),
            ({}, "path"),
            ({"path": "no-slash"}, "path"),
            ({"path": "/a b"}, "path"),
            ({"path": "/a#frag"}, "path"),
            ({"path": "/é"}, "path"),
            ({"path": "/", "method": "get"}, "method"),
            ({"path": "/", "method": "TRACE"}, "method"),
            ({"path": "/", "headers": []}, "headers"),
            ({"path": "/", "headers": {"Bad Name": "x"}}, "headers"),
            ({"path": "/", "headers": {"X": "line\nbreak"}}, "headers"),
            ({"path": "/", "headers": {"X": "\u20ac"}}, "headers"),
            ({"path": "/", "headers": {"X": 1}}, "headers"),
            ({"path": "/", "headers": {f"H{i}": "v" for i in range(51)}}, "headers"),
            ({"path": "/", "body": 1}, "body"),
            ({"path": "/", "body": "x" * (1024 * 1024 + 1)}, "body"),
            ({"path": "/", "timeout": 0}, "timeout"),
            ({"path": "/", "timeout": 121}, "timeout"),
            ({"path": "/", "timeout": True}, "timeout"),
        ]
        for payload, field in cases:
            with self.assertRaises(BadRequest, msg=repr(payload)) as raised:
                check_test_request(payload)
            self.assertEqual(raised.exception.extra.get("field"), field, payload)


class ProbeTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.agent = RequestTraversalAgent(Echo())
        self.probe = DataPlaneProbe(self.clock, "tcp:9080", None, agent=self.agent, now=lambda: self.clock.seconds())

    def send(self, payload):
        d = self.probe.send(payload)
        self.agent.flush()
        return d

    def test_answer(self):
        """The answer: status, reason, every header in order, the body as text, its size, the time."""
        answer = self.successResultOf(
            self.send({"method": "POST", "path": "/things?x=1", "headers": {"X-Test": "caf\u00e9", "Host": "api.example.com"}, "body": '{"a": 1}'})
        )
        self.assertEqual((answer["status"], answer["reason"]), (201, "Created"))
        self.assertEqual(
            json.loads(answer["body"]),
            {"method": "POST", "uri": "/things?x=1", "host": "api.example.com", "x_test": "caf\u00e9",
             "body": '{"a": 1}', "content_length": "8"},
        )
        self.assertIn(["X-Multi", "one"], answer["headers"])
        self.assertIn(["X-Multi", "two"], answer["headers"])
        self.assertEqual(answer["body_encoding"], "utf-8")
        self.assertEqual(answer["body_bytes"], len(answer["body"]))
        self.assertFalse(answer["truncated"])
        self.assertEqual(answer["elapsed_ms"], 0)

    def test_binary_body_is_base64(self):
        """A body that is not UTF-8 comes back base64-encoded, and says so."""
        answer = self.successResultOf(self.send({"path": "/binary"}))
        self.assertEqual(answer["body_encoding"], "base64")
        self.assertEqual(base64.b64decode(answer["body"]), b"\xff\x00\xfe")

    def test_big_body_is_cut(self):
        """Only the first MAX_RESPONSE_BODY bytes of an answer are kept, and it says so."""
        answer = self.successResultOf(self.send({"path": "/big"}))
        self.assertTrue(answer["truncated"])
        self.assertEqual(len(answer["body"]), MAX_RESPONSE_BODY)

    def test_timeout_is_504(self):
        """No answer within ``timeout``: 504, and the request is given up."""
        cancelled = []

        class Silent:
            def request(self, *args, **kwargs):
                return Deferred(lambda d: cancelled.append(True))

        probe = DataPlaneProbe(self.clock, "tcp:9080", None, agent=Silent())
        d = probe.send({"path": "/slow", "timeout": 2})
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        f = self.failureResultOf(d, DataPlaneTimeout)
        self.assertEqual(f.value.status, 504)
        self.assertIn("within 2 s", f.value.message)
        self.assertEqual(cancelled, [True])

    def test_unreachable_is_502(self):
        """A refused connection is a 502 saying why."""

        class Refusing:
            def request(self, *args, **kwargs):
                return fail(ConnectionRefusedError())

        probe = DataPlaneProbe(self.clock, "tcp:9080", None, agent=Refusing())
        f = self.failureResultOf(probe.send({"path": "/"}), DataPlaneUnreachable)
        self.assertEqual(f.value.status, 502)
        self.assertIn("could not reach the data plane", f.value.message)

    def test_client_endpoints(self):
        """The data plane is reached where it listens; a wildcard interface on loopback."""
        endpoint = client_endpoint(reactor, "tcp:9080", IPv4Address("TCP", "0.0.0.0", 9080))
        self.assertIsInstance(endpoint, TCP4ClientEndpoint)
        self.assertEqual((endpoint._host, endpoint._port), ("127.0.0.1", 9080))
        endpoint = client_endpoint(reactor, "tcp6:9080", IPv6Address("TCP", "::", 9080))
        self.assertIsInstance(endpoint, TCP6ClientEndpoint)
        self.assertEqual(endpoint._host, "::1")
        self.assertIsInstance(client_endpoint(reactor, "ssl:443:privateKey=k.pem", IPv4Address("TCP", "10.1.2.3", 443)), SSL4ClientEndpoint)
        self.assertIsInstance(client_endpoint(reactor, "unix:/run/gw.sock", UNIXAddress(b"/run/gw.sock")), UNIXClientEndpoint)


class RealExchangeTests(unittest.TestCase):
    @inlineCallbacks
    def test_over_loopback(self):
        """The real client reaches a real listener on 127.0.0.1, whatever Host says."""
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(Echo()))
        self.addCleanup(port.stopListening)
        probe = DataPlaneProbe(reactor, "tcp:0:interface=127.0.0.1", lambda: _fired(port))
        answer = yield probe.send({"path": "/hello", "headers": {"Host": "elsewhere.example"}})
        self.assertEqual(answer["status"], 200)
        self.assertEqual(json.loads(answer["body"])["host"], "elsewhere.example")
        self.assertEqual(answer["url"], "http://127.0.0.1:%d/hello" % port.getHost().port)

    @inlineCallbacks
    def test_nothing_listening(self):
        """A data plane that is gone: 502."""
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(Echo()))
        address = port.getHost()
        yield port.stopListening()
        probe = DataPlaneProbe(reactor, "tcp:0", lambda: _fired(_Bound(address)))
        with self.assertRaises(DataPlaneUnreachable):
            yield probe.send({"path": "/"})


class _Bound:
    """A port that was listening at ``address``."""

    def __init__(self, address):
        self._address = address

    def getHost(self):
        return self._address


def _fired(value):
    d = Deferred()
    d.callback(value)
    return d


class RouteTests(unittest.TestCase):
    """POST /api/test-request through the API: key, checks, probe."""

    def setUp(self):
        keyed_store(self)

    def call(self, api, body, key=None):
        client = StubTreq(api.resource())
        d = client.request(
            "POST", "http://admin/api/test-request",
            headers={"Authorization": "Bearer " + (key or self.admin_key)},
            data=json.dumps(body).encode(),
        )
        client.flush()
        response = self.successResultOf(d)
        return response.code, json.loads(self.successResultOf(response.content()))

    def test_without_a_probe_404(self):
        """A gateway built without a probe answers 404 saying so."""
        api = AdminAPI(None, self.keys, self.reactor)
        code, document = self.call(api, {"path": "/"})
        self.assertEqual((code, document["ok"]), (404, False))
        self.assertIn("not available", document["error"])

    def test_answers_in_the_envelope(self):
        """The probe's answer comes in the envelope; a bad field is a 400; a read key a 403."""
        agent = RequestTraversalAgent(Echo())

        class Flushing(DataPlaneProbe):
            def send(self, payload):
                d = DataPlaneProbe.send(self, payload)
                agent.flush()
                return d

        api = AdminAPI(None, self.keys, self.reactor, probe=Flushing(Clock(), "tcp:9080", None, agent=agent))
        code, document = self.call(api, {"path": "/x"})
        self.assertEqual((code, document["data"]["status"]), (200, 200))
        code, document = self.call(api, {"path": "x"})
        self.assertEqual((code, document.get("field")), (400, "path"))
        code, _ = self.call(api, {"path": "/x"}, key=self.read_key)
        self.assertEqual(code, 403)
