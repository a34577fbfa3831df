"""
Trace context through a real worker: a handler compiled by real cargo reads
``req.trace_id()`` from the request frame's ``traceparent``, and the line it
writes to stderr while serving is kept in the endpoint's log with that trace
id (the pool's attribution).
"""

import json
import os
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from edgegw_tx.admin.logs import LogBook
from edgegw_tx.build import Builder, CargoNotFound
from edgegw_tx.build.cargo import find_cargo
from edgegw_tx.observability.trace import TraceContext
from edgegw_tx.workers.pool import WorkerPool

REPO = Path(__file__).resolve().parents[1]
SDK = REPO / "rust_sdk"
SHARED_TARGET = REPO / ".cache" / "test-target"

TRACED_HANDLER = r"""use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    eprintln!("serving {}", req.path);
    Response::ok(json!({
        "trace_id": req.trace_id(),
        "traceparent": req.traceparent(),
    }))
}

handler_loop!(handle);
"""


def _request(path, traceparent):
    headers = {"traceparent": traceparent} if traceparent is not None else {}
    return {
        "type": "request",
        "method": "GET",
        "path": path,
        "query": {},
        "headers": headers,
        "params": {},
        "body": None,
        "client_ip": "127.0.0.1",
        "request_id": "trace-1",
    }


def _skip_reason():
    try:
        find_cargo()
    except CargoNotFound as e:
        return f"needs cargo: {e}"
    return None


class TraceIntegrationTests(TestCase):
    """The gateway's traceparent, a real handler and the endpoint's log."""

    skip = _skip_reason()
    timeout = 900

    @inlineCallbacks
    def test_handler_and_log_see_the_trace(self):
        """The handler's ``trace_id()`` is the gateway's trace id, and its stderr line carries it in the log."""
        builder = Builder(os.path.abspath(self.mktemp()), SDK, target_dir=SHARED_TARGET)
        result = yield builder.build("traced", TRACED_HANDLER)
        book = LogBook(reactor)
        pool = WorkerPool("traced", [result.binary], timeout=30.0, log=book.writer("e"))
        self.addCleanup(pool.stop)
        yield pool.start()

        trace = TraceContext()
        incoming = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        trace_id, traceparent = trace.for_request(incoming)
        response = yield pool.request(_request("/one", traceparent))
        self.assertEqual(
            json.loads(response["body"]), {"trace_id": trace_id, "traceparent": traceparent}
        )
        self.assertEqual(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736")

        response = yield pool.request(_request("/two", None))
        self.assertEqual(json.loads(response["body"]), {"trace_id": None, "traceparent": None})

        yield pool.stop()  # every stderr line is read once the worker ended
        lines = {entry["line"]: entry["trace_id"] for entry in book.lines("e") if entry["stream"] == "stderr"}
        self.assertEqual(lines.get("serving /one"), trace_id, lines)
        self.assertIn("serving /two", lines)
        self.assertIsNone(lines["serving /two"])
