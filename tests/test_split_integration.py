"""
A traffic split end to end: one endpoint with two compiled versions of a real
handler (each answers its version), ``policy.traffic_split`` set over the
management API, requests over real HTTP answered by both in their shares,
sticky clients kept on one version, and a rollback and a redeploy (restart)
that clear the split.
"""

import json

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks, returnValue
from twisted.internet.task import deferLater

from tests.support.harness import GatewayTestCase

VERSIONED = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"version": "%s"}))
}

handler_loop!(handle);
"""

REQUESTS = 10_000
CLIENTS = 32


class TrafficSplitIntegrationTests(GatewayTestCase):
    """An endpoint split 90/10 between two of its versions."""

    @inlineCallbacks
    def ok(self, method, path, body=None):
        """A management API call that must answer 200; its data."""
        status, document = yield self.gateway.call(method, path, body)
        self.assertEqual(status, 200, document)
        returnValue(document["data"])

    @inlineCallbacks
    def version(self, headers=None):
        """The version that answered one GET /split."""
        response, content = yield self.gateway.request("GET", "/split", headers=headers or {})
        self.assertEqual(response.code, 200, content)
        returnValue(json.loads(content)["version"])

    @inlineCallbacks
    def until_traffic(self, endpoint_id, split):
        """The endpoint's record once its traffic shows ``split`` or not (a bounded wait for the pools to start)."""
        for _ in range(600):
            record = yield self.ok("GET", "/endpoints/" + endpoint_id)
            if bool(record["traffic"]) == split:
                returnValue(record)
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail(f"traffic of the endpoint never became {'split' if split else 'unsplit'}: {record}")

    @inlineCallbacks
    def until_serving(self, endpoint_id, version):
        """
        The endpoint's record once only ``version``'s workers are serving (not
        draining): with several data-plane processes the workers' states reach
        the record from their processes a moment after the route changed.
        """
        for _ in range(600):
            record = yield self.ok("GET", "/endpoints/" + endpoint_id)
            if {w["version"][:12] for w in record["workers"] if w["state"] != "draining"} == {version}:
                returnValue(record)
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail(f"workers other than version {version}'s kept serving: {record['workers']}")

    @inlineCallbacks
    def test_split_serves_both_versions_by_weight_and_rollback_clears_it(self):
        """90/10 over 10,000 requests within ±2 points, one sticky client on one version; rollback and restart end it."""
        started = yield self.gateway.deploy("split", "/split", VERSIONED % "A")
        endpoint_id = started["id"]
        yield self.ok("PUT", "/endpoints/" + endpoint_id, {"code": VERSIONED % "B"})
        yield self.ok("POST", "/endpoints/%s/compile" % endpoint_id)
        versions = yield self.ok("GET", "/endpoints/%s/versions" % endpoint_id)
        short = {v["code"]: v["short"] for v in versions["items"]}
        a, b = short[VERSIONED % "A"], short[VERSIONED % "B"]
        self.assertEqual((yield self.version()), "A")  # compiled, not started: A serves alone

        split = {"versions": [{"version": a, "weight": 90}, {"version": b, "weight": 10}], "sticky": "header:X-User"}
        yield self.ok("PUT", "/endpoints/" + endpoint_id, {"policy": {"traffic_split": split}})
        record = yield self.until_traffic(endpoint_id, True)
        self.assertEqual([(t["version"], t["weight"]) for t in record["traffic"]], [(a, 90), (b, 10)])

        counts = {"A": 0, "B": 0}

        @inlineCallbacks
        def client(n):
            for _ in range(n):
                counts[(yield self.version())] += 1

        yield gatherResults([client(REQUESTS // CLIENTS) for _ in range(CLIENTS)])
        total = counts["A"] + counts["B"]
        self.assertEqual(total, REQUESTS // CLIENTS * CLIENTS)
        self.assertLessEqual(abs(counts["B"] * 100 / total - 10), 2, counts)
        record = yield self.ok("GET", "/endpoints/" + endpoint_id)
        served = {t["version"]: t["served"] for t in record["traffic"]}
        self.assertEqual((served[a], served[b]), (counts["A"], counts["B"]))

        for user in range(20):
            seen = set()
            for _ in range(5):
                seen.add((yield self.version({"X-User": [f"user-{user}"]})))
            self.assertEqual(len(seen), 1, f"user-{user} was answered by {seen}")

        yield self.ok("POST", "/endpoints/%s/rollback" % endpoint_id, {"version": a})
        record = yield self.until_traffic(endpoint_id, False)
        self.assertIsNone((record["policy"] or {}).get("traffic_split"))
        answered = set()
        for _ in range(50):
            answered.add((yield self.version()))
        self.assertEqual(answered, {"A"})
        yield self.until_serving(endpoint_id, a)

        # Split again, then a redeploy (restart on the compiled code, B) ends it too.
        yield self.ok("PUT", "/endpoints/" + endpoint_id, {"policy": {"traffic_split": split}})
        yield self.until_traffic(endpoint_id, True)
        yield self.ok("POST", "/endpoints/%s/restart" % endpoint_id)
        record = yield self.until_traffic(endpoint_id, False)
        self.assertIsNone((record["policy"] or {}).get("traffic_split"))
        answered = set()
        for _ in range(50):
            answered.add((yield self.version()))
        self.assertEqual(answered, {"B"})


class TrafficSplitProcessesIntegrationTests(TrafficSplitIntegrationTests):
    """The same with two data-plane processes: each splits over its own pools; served counts add up over both."""

    runtime_options = {"processes": 2}
