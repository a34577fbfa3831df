"""
Hardening cases 14–16 with real processes: the data plane's limits against a
real ``twistd edgegw`` over raw sockets, hostile names and storage keys
through the API and a real worker, and the management API's key checks.
"""

import json
import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests.support.hardening import TwistdGateway
from tests.support.http import RawClient, parse_responses
from tests.support.harness import GatewayTestCase

WAIT = 20


def _files_under(folder):
    found = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            found.add(os.path.join(root, name))
    return found


class DataPlaneLimitTests(unittest.TestCase):
    """Case 14 against a real twistd with small, explicit limits."""

    timeout = 120

    @inlineCallbacks
    def setUp(self):
        self.gateway = TwistdGateway(
            self, os.path.abspath(self.mktemp()),
            extra=["--header-timeout", "2", "--max-body", "1000", "--admin-max-body", "2000"],
        )
        os.makedirs(self.gateway.data_dir)
        yield self.gateway.start()
        self.addCleanup(self.gateway.stop)

    @inlineCallbacks
    def raw(self, port, data, trickle=None):
        """Send C{data} (C{trickle}: one byte every that many seconds); the bytes answered until close."""
        client = RawClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.addCleanup(client.transport.abortConnection)
        if trickle is None:
            client.transport.write(data)
        else:
            for byte in data:
                if client.closed.called:
                    break
                client.transport.write(bytes([byte]))
                yield deferLater(reactor, trickle, lambda: None)
        raw = yield client.closed.addTimeout(WAIT, reactor)
        return parse_responses(raw)

    @inlineCallbacks
    def test_14_thousand_header_lines_is_431(self):
        """1,000 header lines → 431, connection closed."""
        head = b"GET /x HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(1000)) + b"\r\n"
        responses = yield self.raw(self.gateway.port, head)
        self.assertEqual([r[0] for r in responses], [431])
        self.assertEqual(responses[0][1]["connection"], "close")
        self.assertIn(b"too many request header fields", responses[0][2])

    @inlineCallbacks
    def test_14_64_kib_of_headers_is_431(self):
        """64 KiB in a few header fields → 431."""
        head = b"GET /x HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-Big%d: %s\r\n" % (i, b"v" * 16384) for i in range(4)) + b"\r\n"
        responses = yield self.raw(self.gateway.port, head)
        self.assertEqual([r[0] for r in responses], [431])
        self.assertIn(b"request header fields too large", responses[0][2])

    @inlineCallbacks
    def test_14_body_over_the_cap_is_413(self):
        """A body over --max-body → 413 before it is read (none of it sent)."""
        responses = yield self.raw(
            self.gateway.port, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n"
        )
        self.assertEqual([r[0] for r in responses], [413])
        self.assertIn(b"request body too large", responses[0][2])

    @inlineCallbacks
    def test_14_one_byte_per_second_of_headers_is_408(self):
        """Headers at 1 byte/s → 408 once --header-timeout (2 s) has passed, closed."""
        responses = yield self.raw(
            self.gateway.port, b"GET /x HTTP/1.1\r\nHost: a\r\nX-Slow: abcdefghij\r\n\r\n", trickle=1.0
        )
        self.assertEqual([r[0] for r in responses], [408])
        self.assertEqual(responses[0][1]["connection"], "close")

    @inlineCallbacks
    def test_14_control_plane_has_its_own_smaller_cap(self):
        """The management API refuses a body over --admin-max-body (2,000) that the data plane's cap would not."""
        responses = yield self.raw(
            self.gateway.admin_port,
            b"POST /api/endpoints HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n",
        )
        self.assertEqual([r[0] for r in responses], [413])
        self.assertEqual(
            json.loads(responses[0][2])["error"], "the request body is larger than 2000 bytes"
        )


STORAGE_PROBE = r"""use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    let files = Storage::new("files");
    let mut answers = Vec::new();
    for key in ["../escape", "/etc/edgegw-escape", "a\u{0}b", "ok/inside"] {
        answers.push(match files.put_object(key, b"x", "text/plain") {
            Ok(()) => "stored".to_string(),
            Err(e) => e.to_string(),
        });
    }
    Response::ok(json!({"answers": answers}))
}

handler_loop!(handle);
"""


class HostileNameIntegrationTests(GatewayTestCase):
    """Case 15: names and keys that try to leave the data dir."""

    @inlineCallbacks
    def test_15_endpoint_and_service_names_with_paths_are_400(self):
        """Names with ../, NUL or an absolute path → 400 naming the field; nothing written outside."""
        outside = os.path.dirname(self.gateway.data_dir)
        before = _files_under(outside) - _files_under(self.gateway.data_dir)
        for name in ("../x", "a\x00b", "/etc/passwd", "..", "a/../../b"):
            code, document = yield self.gateway.call(
                "POST", "/endpoints", {"name": name, "path": "/x", "method": "GET", "code": "fn main() {}"}
            )
            self.assertEqual(code, 400, (name, document))
            self.assertIn("name", document["error"])
            code, document = yield self.gateway.call(
                "POST", "/services", {"name": name, "service_type": "sqlite", "config": {}}
            )
            self.assertEqual(code, 400, (name, document))
        for path in ("../../escape.sqlite3", "/tmp/escape.sqlite3", "a\x00b"):
            code, document = yield self.gateway.call(
                "POST", "/services", {"name": "db", "service_type": "sqlite", "config": {"path": path}}
            )
            self.assertEqual(code, 400, (path, document))
            self.assertIn("config.path", document["error"])
        after = _files_under(outside) - _files_under(self.gateway.data_dir)
        self.assertEqual(after, before)

    @inlineCallbacks
    def test_15_storage_keys_with_paths_are_refused(self):
        """A real worker's Storage.put with ../, an absolute key or NUL gets an error; only the plain key is written."""
        code, service = yield self.gateway.call(
            "POST", "/services", {"name": "files", "service_type": "storage", "config": {}}
        )
        self.assertEqual(code, 201, service)
        started = yield self.gateway.deploy("storage-probe", "/probe", STORAGE_PROBE)
        code, bound = yield self.gateway.call(
            "POST", "/endpoints/%s/services" % started["id"],
            {"service_id": service["data"]["id"], "pool_id": "files"},
        )
        self.assertIn(code, (200, 201), bound)
        outside = os.path.dirname(self.gateway.data_dir)
        before = _files_under(outside) - _files_under(self.gateway.data_dir)
        response, body = yield self.json_request("GET", "/probe")
        self.assertEqual(response.code, 200, body)
        answers = body["answers"]
        self.assertEqual(answers[3], "stored")
        for answer in answers[:3]:
            self.assertNotEqual(answer, "stored")
            self.assertIn("key", answer.lower())
        self.assertEqual(_files_under(outside) - _files_under(self.gateway.data_dir), before)
        self.assertFalse(os.path.exists("/etc/edgegw-escape"))


class ManagementAuthIntegrationTests(GatewayTestCase):
    """Case 16 over real HTTP against a running gateway."""

    @inlineCallbacks
    def status(self, method, path, key=None, headers=None, body=None):
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = "Bearer " + key
        response = yield self.gateway.http.request(
            method, self.gateway.api + path, headers=all_headers,
            data=json.dumps(body).encode() if body is not None else None,
        )
        document = yield response.json()
        return response.code, document

    @inlineCallbacks
    def test_16_keys_scopes_and_cross_site_requests(self):
        """No key, a wrong key, a revoked key → 401; a read key cannot write → 403;
        a cross-site browser POST (Sec-Fetch-Site or a foreign Origin) → 403 even with the admin key."""
        admin = self.gateway.key
        code, _ = yield self.status("GET", "/endpoints")
        self.assertEqual(code, 401)
        code, _ = yield self.status("GET", "/endpoints", key="egw_wrong")
        self.assertEqual(code, 401)
        code, created = yield self.status("POST", "/keys", admin, body={"name": "reader", "scope": "read"})
        self.assertEqual(code, 201, created)
        reader = created["data"]["key"]
        code, _ = yield self.status("GET", "/endpoints", reader)
        self.assertEqual(code, 200)
        code, refused = yield self.status("POST", "/keys", reader, body={"name": "x", "scope": "admin"})
        self.assertEqual(code, 403)
        self.assertIn("may only read", refused["error"])
        code, _ = yield self.status("DELETE", "/keys/%s" % created["data"]["id"], admin)
        self.assertIn(code, (200, 204))
        code, _ = yield self.status("GET", "/endpoints", reader)
        self.assertEqual(code, 401)
        new = {"name": "x", "path": "/x", "method": "GET", "code": "fn main() {}"}
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
            code, refused = yield self.status("POST", "/endpoints", admin, headers=headers, body=new)
            self.assertEqual(code, 403, headers)
            self.assertIn("cross-site requests may not change anything", refused["error"])
        code, listed = yield self.status("GET", "/endpoints", admin)
        self.assertEqual(listed["data"]["total"], 0)
