"""
The stats history behind the dashboard's charts (``edgegw_tx/admin/history.py``,
``GET /api/stats/history``) and the latency counters of the worker pools it
reads (``WorkerPool.stats()``): on a ``Clock`` and fake pools, no real time.
"""

import json

from treq.testing import StubTreq
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.admin.api import AdminAPI
from edgegw_tx.admin.history import StatsHistory, median_ms
from edgegw_tx.workers.pool import LATENCY_BOUNDS

from tests.support.workers import PoolTestCase


def buckets(**counts):
    """Latency buckets with ``counts`` by bucket index (``b3=2``)."""
    out = [0] * (len(LATENCY_BOUNDS) + 1)
    for name, count in counts.items():
        out[int(name[1:])] = count
    return out


def stats(served=0, failed=0, latency=0.0, bucket_counts=None, version="d1"):
    return {
        "served": served,
        "failed": failed,
        "latency_seconds": latency,
        "latency_buckets": bucket_counts if bucket_counts is not None else buckets(),
        "version": version,
    }


class MedianTests(unittest.TestCase):
    def test_no_requests(self):
        """No requests, no median."""
        self.assertIsNone(median_ms(buckets()))

    def test_interpolated_inside_the_bucket(self):
        """The median falls inside the bucket holding the middle request, linearly."""
        # Bucket 2 is (1 ms, 2 ms]: four requests there, the median half-way in.
        self.assertEqual(median_ms(buckets(b2=4)), 1.5)
        # Two fast ones and two in (1, 2]: the median is at the bucket's bottom.
        self.assertEqual(median_ms(buckets(b0=2, b2=2)), 0.5)

    def test_beyond_the_last_bound(self):
        """Requests slower than the last bound report that bound (at least that)."""
        self.assertEqual(median_ms(buckets(**{f"b{len(LATENCY_BOUNDS)}": 3})), LATENCY_BOUNDS[-1] * 1000)


class HistoryTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.pools = {}
        self.refreshed = 0
        self.history = StatsHistory(lambda: dict(self.pools), self.clock, refresh=self.refresh, window=30, interval=5)

    def refresh(self):
        self.refreshed += 1
        return succeed(None)

    def sample(self, advance=5):
        self.clock.advance(advance)
        self.successResultOf(self.history.sample())

    def test_deltas_rates_and_latency(self):
        """Each sample holds what happened since the one before: requests, rate, mean and p50."""
        self.pools["e1"] = stats(served=10, latency=0.015, bucket_counts=buckets(b2=10))
        self.sample()
        self.pools["e1"] = stats(served=30, failed=1, latency=0.055, bucket_counts=buckets(b2=10, b4=20))
        self.sample()
        view = self.history.view({"e1": "hello"})
        self.assertEqual(view["times"], [1005.0, 1010.0])
        [e1] = view["endpoints"]
        self.assertEqual((e1["id"], e1["name"], e1["window_requests"]), ("e1", "hello", 30))
        self.assertEqual(e1["requests"], [10, 20])
        self.assertEqual(e1["failed"], [0, 1])
        self.assertEqual(e1["rate"], [2.0, 4.0])
        self.assertEqual(e1["mean_ms"], [1.5, 2.0])
        # 20 requests in (3 ms, 5 ms]: the median is in the middle of it.
        self.assertEqual(e1["p50_ms"], [1.5, 4.0])
        self.assertEqual(view["total"]["requests"], [10, 20])
        self.assertEqual(self.refreshed, 2)

    def test_a_new_pool_counts_from_zero(self):
        """A counter lower than before, or another version, is a new pool: all its count is new."""
        self.pools["e1"] = stats(served=50, latency=0.05, bucket_counts=buckets(b1=50))
        self.sample()
        self.pools["e1"] = stats(served=3, latency=0.003, bucket_counts=buckets(b1=3))
        self.sample()
        self.pools["e1"] = stats(served=60, latency=0.06, bucket_counts=buckets(b1=60), version="d2")
        self.sample()
        [e1] = self.history.view()["endpoints"]
        self.assertEqual(e1["requests"], [50, 3, 60])

    def test_not_running_is_null(self):
        """An endpoint has nulls where it had no pool; no requests means no latency."""
        self.sample()
        self.pools["e1"] = stats()
        self.sample()
        del self.pools["e1"]
        self.sample()
        [e1] = self.history.view()["endpoints"]
        self.assertEqual(e1["requests"], [None, 0, None])
        self.assertEqual(e1["p50_ms"], [None, None, None])
        self.assertEqual(self.history.view()["total"]["requests"], [0, 0, 0])

    def test_window(self):
        """Only the samples of the window are kept (30 s of 5 s samples: 6)."""
        for _ in range(10):
            self.sample()
        self.assertEqual(len(self.history.view()["times"]), 6)

    def test_top_and_one_endpoint(self):
        """The view names the busiest endpoints first, or the one asked for."""
        self.pools = {"a": stats(served=1), "b": stats(served=9), "c": stats(served=5)}
        self.sample()
        self.assertEqual([e["id"] for e in self.history.view(top=2)["endpoints"]], ["b", "c"])
        self.assertEqual([e["id"] for e in self.history.view(endpoint_ids=["a"])["endpoints"]], ["a"])
        # An endpoint that exists but never ran in the window: all nulls.
        [quiet] = self.history.view({"q": "quiet"}, endpoint_ids=["q"])["endpoints"]
        self.assertEqual(quiet["requests"], [None])

    def test_a_failed_refresh_skips_the_sample(self):
        """A sample whose refresh fails is logged and skipped; sample() itself never fails."""
        self.history = StatsHistory(dict, self.clock, refresh=lambda: fail(RuntimeError("no answer")))
        self.successResultOf(self.history.sample())
        self.assertEqual(self.history.view()["times"], [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class PoolLatencyTests(PoolTestCase):
    def test_served_requests_are_timed(self):
        """A pool times each served request, from acceptance to answer, into its buckets."""
        pool = self.started()
        [process] = self.reactor.processes
        d = pool.request({"method": "GET", "path": "/a"})
        self.reactor.advance(0.004)
        self.respond(process)
        self.successResultOf(d)
        stats = pool.stats()
        self.assertAlmostEqual(stats["latency_seconds"], 0.004)
        self.assertEqual(len(stats["latency_buckets"]), len(LATENCY_BOUNDS) + 1)
        self.assertEqual(stats["latency_buckets"][LATENCY_BOUNDS.index(0.005)], 1)
        self.assertEqual(sum(stats["latency_buckets"]), 1)


class FakeManager:
    def __init__(self, pools):
        self.pools = pools

    def list(self):
        return succeed([{"id": "e1", "name": "hello"}, {"id": "e2", "name": "quiet"}])

    def pool_stats_by_endpoint(self):
        return dict(self.pools)


class RouteTests(unittest.TestCase):
    """GET /api/stats/history through the API."""

    def setUp(self):
        from tests.support.fakes import keyed_store

        keyed_store(self)
        self.manager = FakeManager({"e1": stats(served=4, latency=0.004, bucket_counts=buckets(b1=4))})
        self.api = AdminAPI(self.manager, self.keys, self.reactor)
        self.successResultOf(self.api.history.sample())

    def get(self, query="", key=None):
        client = StubTreq(self.api.resource())
        d = client.get("http://admin/api/stats/history" + query, headers={"Authorization": "Bearer " + (key or self.read_key)})
        client.flush()
        response = self.successResultOf(d)
        return response.code, json.loads(self.successResultOf(response.content()))

    def test_history(self):
        """A read key gets the columns, endpoints named."""
        code, document = self.get()
        self.assertEqual(code, 200)
        data = document["data"]
        self.assertEqual((data["interval"], data["window"], len(data["times"])), (5.0, 900.0, 1))
        [e1] = data["endpoints"]
        self.assertEqual((e1["name"], e1["requests"], e1["mean_ms"]), ("hello", [4], [1.0]))

    def test_one_endpoint(self):
        """endpoint_id picks one (all nulls when it did not run); an unknown one is a 404."""
        code, document = self.get("?endpoint_id=e2")
        self.assertEqual((code, [e["name"] for e in document["data"]["endpoints"]]), (200, ["quiet"]))
        code, document = self.get("?endpoint_id=nope")
        self.assertEqual(code, 404)

    def test_top_is_checked(self):
        """top is 1 to 100."""
        for query in ("?top=0", "?top=101", "?top=x"):
            self.assertEqual(self.get(query)[0], 400, query)
        self.assertEqual(self.get("?top=100")[0], 200)
