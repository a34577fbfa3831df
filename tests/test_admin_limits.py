"""
Tests for L{edgegw_tx.admin.limits}: the management API's body cap holds
while the body is read, over a real socket.
"""

import json

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from edgegw_tx.admin.limits import admin_site
from tests.support.http import WAIT, RawClient, parse_responses


class _Length(Resource):
    """Answers the length of the body it was given, and counts its calls."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.calls = 0

    def render_POST(self, request):
        self.calls += 1
        return json.dumps({"length": len(request.content.read())}).encode()


class AdminBodyCapTests(TestCase):
    def setUp(self):
        self.resource = _Length()
        site = admin_site(self.resource, reactor, max_body=1000, import_max_body=5000)
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    @inlineCallbacks
    def send(self, data):
        client = RawClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        yield connectProtocol(endpoint, client)
        self.addCleanup(client.transport.abortConnection)
        client.transport.write(data)
        raw = yield client.closed.addTimeout(WAIT, reactor)
        return parse_responses(raw)

    @inlineCallbacks
    def test_declared_length_over_cap_refused_before_the_body(self):
        """A Content-Length over the cap gets 413 at once, with none of the body sent."""
        responses = yield self.send(
            b"POST /api/endpoints HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\n\r\n"
        )
        self.assertEqual([r[0] for r in responses], [413])
        self.assertEqual(
            json.loads(responses[0][2]),
            {"ok": False, "error": "the request body is larger than 1000 bytes"},
        )
        self.assertEqual(self.resource.calls, 0)

    @inlineCallbacks
    def test_whole_body_over_cap_not_processed(self):
        """Even when the whole body arrives in one read, the API never sees it."""
        responses = yield self.send(
            b"POST /api/endpoints HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n" + b"x" * 1001
        )
        self.assertEqual([r[0] for r in responses], [413])
        self.assertEqual(self.resource.calls, 0)

    @inlineCallbacks
    def test_chunked_body_over_cap_refused(self):
        """A chunked body is refused the moment it passes the cap."""
        chunk = b"%x\r\n%s\r\n" % (600, b"y" * 600)
        responses = yield self.send(
            b"POST /api/endpoints HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk * 2
        )
        self.assertEqual([r[0] for r in responses], [413])
        self.assertEqual(self.resource.calls, 0)

    @inlineCallbacks
    def test_body_within_cap_served(self):
        """A body at the cap is served as usual."""
        responses = yield self.send(
            b"POST /api/endpoints HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n"
            b"Connection: close\r\n\r\n" + b"z" * 1000
        )
        self.assertEqual([r[0] for r in responses], [200])
        self.assertEqual(json.loads(responses[0][2]), {"length": 1000})

    @inlineCallbacks
    def test_import_routes_get_the_larger_cap(self):
        """/api/import/... may send up to import_max_body; others may not."""
        body = b"b" * 3000
        head = b"HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\nConnection: close\r\n\r\n"
        responses = yield self.send(b"POST /api/import/bundle " + head + body)
        self.assertEqual([r[0] for r in responses], [200])
        responses = yield self.send(b"POST /api/import/bundle HTTP/1.1\r\nHost: a\r\nContent-Length: 5001\r\n\r\n")
        self.assertEqual([r[0] for r in responses], [413])
        self.assertIn(b"5000 bytes", responses[0][2])
