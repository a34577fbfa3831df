"""
Async handlers serve many requests at once on one worker (docs/sdk/async.md):
a real gateway, a real compiled handler, a bound SQLite service.
"""

import json

from twisted.internet.defer import gatherResults, inlineCallbacks

from tests.support.harness import GatewayTestCase

# Each request notes how many requests its worker was serving when it began,
# makes an awaited service call, then sleeps 200 ms.
OVERLAPPING = """use rust_edge_gateway_sdk::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

async fn handle(req: Request) -> Result<Response, HandlerError> {
    if req.path.ends_with("/panic") {
        tokio::task::yield_now().await;
        panic!("one task gave up");
    }
    let began_with = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    let db = DbPool::new("main");
    let row = db.query_async("SELECT ? AS n", &[began_with as i64]).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    let n = row?.first().map(|r| r["n"].clone());
    Ok(Response::ok(json!({ "began_with": began_with, "n": n, "pid": std::process::id() })))
}

handler_loop_async_result!(handle);
"""


class AsyncConcurrencyIntegrationTests(GatewayTestCase):

    @inlineCallbacks
    def test_one_worker_overlaps_requests(self):
        """
        Twenty requests to one async worker, each awaiting a service call and
        a 200 ms sleep, run at the same time: later ones begin while earlier
        ones are in flight; a panic in one answers 500 for it alone.
        """
        code, service = yield self.gateway.call(
            "POST", "/services", {"name": "db", "service_type": "sqlite", "config": {}}
        )
        self.assertEqual(code, 201, service)
        started = yield self.gateway.deploy("overlap", "/o/{what}", OVERLAPPING, instances=1)
        status, bound = yield self.gateway.call(
            "POST",
            "/endpoints/%s/services" % started["id"],
            {"service_id": service["data"]["id"], "pool_id": "main"},
        )
        self.assertIn(status, (200, 201), bound)
        paths = ["/o/%d" % i for i in range(20)] + ["/o/panic"]
        answers = yield gatherResults([self.gateway.get(p) for p in paths])
        codes = [response.code for response, _ in answers]
        self.assertEqual(codes, [200] * 20 + [500])
        bodies = [json.loads(content) for _, content in answers[:20]]
        self.assertEqual(len({b["pid"] for b in bodies}), 1, "one worker served them all")
        self.assertEqual([b["n"] for b in bodies], [b["began_with"] for b in bodies])
        # Served one at a time every request would begin with 1 in flight.
        self.assertGreaterEqual(max(b["began_with"] for b in bodies), 10, bodies)
