"""
The data plane's HTTP conformance with its real parts: a real compiled
handler in real workers behind a real gateway, and a raw socket client, so
what the handler answers is what reaches the wire (issue 14, items 2 and 7).
"""

import json

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.support.http import RawClient, parse_responses
from tests.support.harness import GatewayTestCase

# Answers the status in the path with a body naming what it saw; ?date=
# sets a Date header of its own.
STATUS = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    let code = req.path_param_as::<u16>("code").unwrap_or(200);
    let seen = json!({"method": req.method, "path": req.path, "params": req.params}).to_string();
    let mut resp = Response::text(code, seen);
    if let Some(date) = req.query_param("date") {
        resp = resp.with_header("Date", date.clone());
    }
    resp
}

handler_loop!(handle);
"""


class RealHandlerIntegrationTests(GatewayTestCase):
    """One real handler, several raw exchanges with it."""

    @inlineCallbacks
    def connect(self, data):
        """A raw client on the data plane that has sent C{data}."""
        port = int(self.gateway.base.rsplit(":", 1)[1])
        client = RawClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(lambda: client.transport.abortConnection())
        client.transport.write(data)
        return client

    @inlineCallbacks
    def test_handler_statuses_and_paths_on_the_wire(self):
        """
        On one kept-alive connection: a handler's C{Response::text(100, ..)}
        and C{(101, ..)} are 502s and the answers after them are their own;
        its 204 goes without body; its Date does not duplicate the gateway's;
        HEAD on its GET route gets the GET answer's length and no body; and
        C{/s/%32%30%30/%2e..} forms reach it in their normal form.
        """
        yield self.gateway.deploy("status", "/s/{code}", STATUS)
        get = b"GET %s HTTP/1.1\r\nHost: edge.test\r\n\r\n"
        client = yield self.connect(
            get % b"/s/100"
            + get % b"/s/201"
            + get % b"/s/101"
            + get % b"/s/204"
            + get % b"/s/200?date=Mon,%2001%20Jan%202001%2000:00:00%20GMT"
            + b"HEAD /s/200 HTTP/1.1\r\nHost: edge.test\r\n\r\n"
            + get % b"/s/%32%30%30"
        )
        raw = yield client.responses(7, heads=(5,))
        answers = parse_responses(raw, heads=(5,))
        self.assertEqual([a[0] for a in answers], [502, 201, 502, 204, 200, 200, 200])
        (_, _, first), (_, _, second), (_, _, third), (_, no_content, _) = answers[:4]
        self.assertIn("interim (1xx) status", json.loads(first)["error"])
        self.assertEqual(json.loads(second)["path"], "/s/201")
        self.assertIn("status 101", json.loads(third)["error"])
        self.assertNotIn("content-length", no_content)
        self.assertNotIn(b"\r\nupgrade:", raw.lower())
        dated = raw.split(b"HTTP/1.1 ")[5].lower()
        self.assertEqual(dated.count(b"\r\ndate:"), 1)
        self.assertNotIn(b"2001", dated.split(b"\r\n\r\n")[0])
        (_, head_headers, head_body), (_, _, normal) = answers[5:]
        seen = json.loads(normal)
        self.assertEqual(head_body, b"")
        self.assertEqual(head_headers["content-length"], str(len(normal.replace(b'"GET"', b'"HEAD"'))))
        self.assertEqual((seen["path"], seen["params"]), ("/s/200", {"code": "200"}))
        self.assertFalse(client.closed.called)
