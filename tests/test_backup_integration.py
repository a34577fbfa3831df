"""
``edgegw backup`` of a real gateway while it serves requests and takes edits,
restored into an empty data directory: the gateway started there serves the
same endpoints with the same answers, from the backed-up binaries (it compiles
nothing).
"""

import json
import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.trial import unittest

from edgegw_tx.cli import backup
from tests.support.handlers import HELLO
from tests.support.harness import SHARED_TARGET, GatewayHarness, _cargo_or_skip

SECOND = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"second": true}))
}

handler_loop!(handle);
"""


class BackupOfARunningGateway(unittest.TestCase):
    """One gateway backed up under load, then another started on the restored data dir."""

    timeout = 600

    @inlineCallbacks
    def test_restored_gateway_serves_the_same_endpoints(self):
        """
        A backup taken while requests are served and endpoints are created and
        changed restores into an empty data dir; the gateway started there
        lists the endpoints the backup counted, serves the running ones with
        the same answers, and compiled nothing (no cargo project in build/).
        """
        cargo = _cargo_or_skip()
        os.makedirs(SHARED_TARGET, exist_ok=True)
        first = GatewayHarness(self, os.path.abspath(self.mktemp()), cargo)
        yield first.start()
        running = [True]
        try:
            yield first.deploy("hello", "/hello", HELLO)
            yield first.deploy("second", "/second", SECOND)
            expected = {}
            for path in ("/hello", "/second"):
                response, body = yield first.get(path)
                self.assertEqual(response.code, 200)
                expected[path] = json.loads(body)

            served = [0]
            edits = [0]

            @inlineCallbacks
            def requests():
                while running[0]:
                    response, _ = yield first.get("/hello")
                    self.assertEqual(response.code, 200)
                    served[0] += 1

            @inlineCallbacks
            def changes():
                while running[0]:
                    n = edits[0]
                    status, created = yield first.call(
                        "POST", "/endpoints", {"name": f"edit{n}", "path": f"/edit{n}", "method": "GET", "code": HELLO}
                    )
                    self.assertEqual(status, 201, created)
                    status, changed = yield first.call(
                        "PUT", f"/endpoints/{created['data']['id']}", {"description": f"change {n}"}
                    )
                    self.assertEqual(status, 200, changed)
                    edits[0] += 1

            loads = [requests(), requests(), changes()]
            # Let the load start before the backup begins.
            while edits[0] < 2 and not any(load.called for load in loads):
                yield deferLater(reactor, 0.01, lambda: None)
            target = os.path.abspath(self.mktemp()) + ".tar.gz"
            summary = yield deferToThreadPool(
                reactor, reactor.getThreadPool(), backup.make_backup, first.data_dir, target
            )
            during = (served[0], edits[0])
            running[0] = False
            for load in loads:
                yield load
        finally:
            running[0] = False
            yield first.stop()
        self.assertGreater(summary.endpoints, 2, "edits were made before the backup")
        self.assertEqual(summary.artifacts, 2)
        self.assertGreater(during[0], 0)

        restored = os.path.abspath(self.mktemp())
        yield deferToThreadPool(reactor, reactor.getThreadPool(), backup.restore_backup, target, restored)
        second = GatewayHarness(self, restored, cargo)
        yield second.start()
        try:
            for path, answer in expected.items():
                response, body = yield second.get(path)
                self.assertEqual((response.code, json.loads(body)), (200, answer), path)
            status, listed = yield second.call("GET", "/endpoints?limit=100")
            self.assertEqual(status, 200, listed)
            names = {e["name"]: e["status"] for e in listed["data"]["items"]}
            self.assertEqual(listed["data"]["total"], summary.endpoints)
            self.assertEqual((names["hello"], names["second"]), ("running", "running"))
            self.assertFalse(
                os.path.exists(os.path.join(restored, "build", "endpoints")),
                "the restored gateway started its endpoints from the backed-up binaries",
            )
            # The restored admin key is the one the backup holds.
            with open(os.path.join(first.data_dir, "admin.key")) as f:
                self.assertEqual(second.key, f.read().strip())
        finally:
            yield second.stop()
