"""Tests for ``edgegw_tx.observability.metrics``: the per-request counters and the collectors reading them."""

from twisted.trial import unittest

from edgegw_tx.observability.metrics import (
    DURATION_BUCKETS,
    SIZE_BUCKETS,
    RequestMetrics,
    merge_snapshots,
)


class RequestMetricsTests(unittest.TestCase):
    def test_series_cached_by_name(self):
        """``series`` makes one object per endpoint name and hands back the same one after."""
        metrics = RequestMetrics()
        hello = metrics.series("hello")
        self.assertIs(metrics.series("hello"), hello)
        self.assertIsNot(metrics.series(""), hello)
        self.assertEqual(sorted(s.name for s in metrics.all()), ["", "hello"])

    def test_record_counts_method_and_status(self):
        """One ``record`` adds exactly one to its (method, status) count; bytes and str methods are the same."""
        series = RequestMetrics().series("hello")
        series.record(b"GET", 200, 0, 5, 0.001)
        series.record("GET", 200, 0, 5, 0.001)
        series.record(b"POST", 404, 10, 0, 0.001)
        self.assertEqual(series.counts, {("GET", 200): 2, ("POST", 404): 1})
        self.assertEqual(series.requests, 3)

    def test_unknown_method_is_other(self):
        """A method outside the fixed set is counted as ``OTHER`` so clients cannot grow the labels."""
        series = RequestMetrics().series("")
        series.record(b"BREW", 405, 0, 0, 0.0)
        series.record(b"get", 405, 0, 0, 0.0)
        self.assertEqual(series.counts, {("OTHER", 405): 2})

    def test_duration_bucket_and_sum(self):
        """A duration lands in the first bucket whose bound is at least it (``le``), and adds to the sum."""
        series = RequestMetrics().series("e")
        series.record(b"GET", 200, 0, 0, 0.0001)  # exactly the first bound
        series.record(b"GET", 200, 0, 0, 0.003)  # between 2.5 ms and 5 ms
        series.record(b"GET", 200, 0, 0, 31.0)  # beyond the last bound
        buckets = series.duration_buckets
        self.assertEqual(buckets[0], 1)
        self.assertEqual(buckets[DURATION_BUCKETS.index(0.005)], 1)
        self.assertEqual(buckets[len(DURATION_BUCKETS)], 1)
        self.assertEqual(sum(buckets), 3)
        self.assertAlmostEqual(series.duration_sum, 31.0031)

    def test_size_buckets_and_sums(self):
        """Request and response sizes go into their own histograms, an empty body into ``le="0"``."""
        series = RequestMetrics().series("e")
        series.record(b"POST", 200, 100, 0, 0.001)
        self.assertEqual(series.request_size_buckets[SIZE_BUCKETS.index(256)], 1)
        self.assertEqual(series.response_size_buckets[0], 1)
        self.assertEqual((series.request_size_sum, series.response_size_sum), (100, 0))

    def test_inflight_is_a_plain_int(self):
        """``inflight`` is a public int the HTTP layer moves up and down."""
        series = RequestMetrics().series("e")
        series.inflight += 1
        series.inflight += 1
        series.inflight -= 1
        self.assertEqual(series.inflight, 1)
        self.assertEqual(RequestMetrics().snapshot(), {})


class MergeSnapshotsTests(unittest.TestCase):
    def test_two_processes_add_up(self):
        """Counts, buckets, sums and inflight of two processes' snapshots add; endpoints in one only stay."""
        one, two = RequestMetrics(), RequestMetrics()
        one.series("a").record(b"GET", 200, 1, 2, 0.001)
        one.series("a").inflight = 2
        two.series("a").record(b"GET", 200, 3, 4, 0.001)
        two.series("a").record(b"PUT", 500, 0, 0, 1.0)
        two.series("b").record(b"GET", 404, 0, 0, 0.0)
        merged = merge_snapshots([one.snapshot(), two.snapshot()])
        a = merged["a"]
        self.assertEqual(sorted(map(tuple, a["counts"])), [("GET", 200, 2), ("PUT", 500, 1)])
        self.assertEqual(a["inflight"], 2)
        self.assertEqual(sum(a["duration"][0]), 3)
        self.assertAlmostEqual(a["duration"][1], 1.002)
        self.assertEqual(a["request_size"][1], 4)
        self.assertEqual(a["response_size"][1], 6)
        self.assertEqual(merged["b"]["counts"], [["GET", 404, 1]])
