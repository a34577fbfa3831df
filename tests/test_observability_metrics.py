"""Tests for ``edgegw_tx.observability.metrics``: the per-request counters and the collectors reading them."""

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from edgegw_tx.gateway.front import data_plane_factory
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.observability.exposition import Metrics
from edgegw_tx.observability.metrics import (
    DURATION_BUCKETS,
    SIZE_BUCKETS,
    RequestMetrics,
    merge_snapshots,
    plane_snapshot,
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


def scrape(metrics):
    """``{(sample name, sorted labels): value}`` of one ``Metrics.scrape``, parsed back from the text format."""
    from prometheus_client.parser import text_string_to_metric_families

    results = []
    metrics.scrape().addCallback(results.append)
    text = results[0].decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def pool_stats(name="hello", **numbers):
    """One pool's ``stats()`` with the keys the collector reads."""
    stats = {"name": name, "queued": 0, "workers": 0, "starting": 0, "busy": 0, "draining": 0}
    stats.update(numbers)
    return stats


class ExpositionTests(unittest.TestCase):
    def setUp(self):
        from edgegw_tx.observability.exposition import Metrics, local_planes
        from edgegw_tx.observability.metrics import compile_timings, plane_snapshot, service_call_timings

        self.requests = RequestMetrics()
        self.calls = service_call_timings()
        self.compiles = compile_timings()
        self.front = type("Front", (), {"connections": set()})()
        self.pools = {}
        self.metrics = Metrics(
            local_planes(lambda: plane_snapshot(self.requests, self.calls, self.front)),
            lambda: self.pools,
            compiles=self.compiles,
        )

    def test_one_request_changes_exactly_its_samples(self):
        """A recorded request adds 1 to its counter and its buckets, its sizes and time to the sums, nothing else."""
        before = scrape(self.metrics)
        self.requests.series("hello").record(b"POST", 201, 100, 5, 0.003)
        after = scrape(self.metrics)
        changed = {
            key: after[key] - before.get(key, 0)
            for key in after
            # The data-plane processes' CPU and memory are readings of the
            # moment, not request counters: they move between any two scrapes.
            if key[0].startswith("edgegw_")
            and not key[0].startswith(("edgegw_data_plane_cpu", "edgegw_data_plane_resident"))
            and after[key] != before.get(key, 0)
        }
        hello = (("endpoint", "hello"),)
        expected = {
            ("edgegw_http_requests_total", (("code", "201"), ("endpoint", "hello"), ("method", "POST"))): 1,
            ("edgegw_http_request_duration_seconds_count", hello): 1,
            ("edgegw_http_request_duration_seconds_sum", hello): 0.003,
            ("edgegw_http_request_size_bytes_count", hello): 1,
            ("edgegw_http_request_size_bytes_sum", hello): 100,
            ("edgegw_http_response_size_bytes_count", hello): 1,
            ("edgegw_http_response_size_bytes_sum", hello): 5,
        }
        for bound in DURATION_BUCKETS:
            if bound >= 0.003:
                expected[("edgegw_http_request_duration_seconds_bucket", (("endpoint", "hello"), ("le", repr(bound))))] = 1
        expected[("edgegw_http_request_duration_seconds_bucket", (("endpoint", "hello"), ("le", "+Inf")))] = 1
        for bound in SIZE_BUCKETS:
            le = (("endpoint", "hello"), ("le", repr(float(bound))))
            if bound >= 100:
                expected[("edgegw_http_request_size_bytes_bucket", le)] = 1
            if bound >= 5:
                expected[("edgegw_http_response_size_bytes_bucket", le)] = 1
        for histogram in ("request_size_bytes", "response_size_bytes"):
            expected[(f"edgegw_http_{histogram}_bucket", (("endpoint", "hello"), ("le", "+Inf")))] = 1
        self.assertEqual(set(changed), set(expected))
        for key, value in expected.items():
            self.assertAlmostEqual(changed[key], value, msg=str(key))

    def test_unrouted_requests_have_an_empty_endpoint(self):
        """The gateway's own 404 is counted under ``endpoint=""``."""
        self.requests.series("").record(b"GET", 404, 0, 20, 0.0001)
        samples = scrape(self.metrics)
        key = ("edgegw_http_requests_total", (("code", "404"), ("endpoint", ""), ("method", "GET")))
        self.assertEqual(samples[key], 1)

    def test_inflight_and_connections(self):
        """``inflight`` and the factory's open connections are gauges read at scrape time."""
        self.requests.series("hello").inflight = 3
        self.front.connections.update({object(), object()})
        samples = scrape(self.metrics)
        self.assertEqual(samples[("edgegw_inflight_requests", (("endpoint", "hello"),))], 3)
        self.assertEqual(samples[("edgegw_http_connections", ())], 2)

    def test_pools_by_endpoint_name(self):
        """Queue depth, workers by state and restarts by reason come from the pools, labelled by endpoint name."""
        self.pools = {
            "id-1": pool_stats(
                queued=4, workers=5, starting=1, busy=2, draining=1,
                crashed=2, timed_out=1, recycled=3, out_of_memory=1,
            )
        }
        samples = scrape(self.metrics)
        hello = ("endpoint", "hello")
        self.assertEqual(samples[("edgegw_queue_depth", (hello,))], 4)
        workers = {s: samples[("edgegw_workers", (hello, ("state", s)))] for s in ("starting", "ready", "busy", "draining")}
        self.assertEqual(workers, {"starting": 1, "ready": 1, "busy": 2, "draining": 1})
        restarts = {
            r: samples[("edgegw_worker_restarts_total", (hello, ("reason", r)))]
            for r in ("crash", "timeout", "recycle", "memory")
        }
        self.assertEqual(restarts, {"crash": 2, "timeout": 1, "recycle": 3, "memory": 1})
        self.assertNotIn("id-1", repr(samples))

    def test_service_calls_and_compiles(self):
        """A service call and a compile each add one to their counter and their histogram."""
        self.calls.observe(("main-db", "db", "ok"), 0.002)
        self.compiles.observe(("failed",), 4.0)
        samples = scrape(self.metrics)
        call = (("kind", "db"), ("outcome", "ok"), ("service", "main-db"))
        self.assertEqual(samples[("edgegw_service_calls_total", call)], 1)
        self.assertEqual(samples[("edgegw_service_call_duration_seconds_count", (("kind", "db"), ("service", "main-db")))], 1)
        self.assertEqual(samples[("edgegw_compiles_total", (("outcome", "failed"),))], 1)
        self.assertEqual(samples[("edgegw_compile_duration_seconds_count", ())], 1)
        self.assertEqual(samples[("edgegw_compile_duration_seconds_sum", ())], 4.0)

    def test_build_info_drops_and_process(self):
        """``build_info`` carries the version; dropped access-log lines are counted; process metrics are there."""
        from edgegw_tx import __version__

        self.requests.drop_lines(3)
        samples = scrape(self.metrics)
        self.assertEqual(samples[("edgegw_build_info", (("version", __version__),))], 1)
        self.assertEqual(samples[("edgegw_access_log_dropped_lines_total", ())], 3)
        self.assertIn(("process_resident_memory_bytes", ()), samples)

    def test_processes_add_up(self):
        """With several data planes the scrape shows their sum (``--processes N``)."""
        from edgegw_tx.observability.exposition import Metrics
        from edgegw_tx.observability.metrics import plane_snapshot

        one, two = RequestMetrics(), RequestMetrics()
        one.series("hello").record(b"GET", 200, 0, 5, 0.001)
        two.series("hello").record(b"GET", 200, 0, 5, 0.001)
        two.series("hello").record(b"GET", 500, 0, 5, 0.001)
        two.series("hello").inflight = 1
        front = type("Front", (), {"connections": 2})()
        planes = [plane_snapshot(one, None, front), plane_snapshot(two, None, front)]
        from twisted.internet.defer import succeed

        samples = scrape(Metrics(lambda: succeed(planes), dict, process_metrics=False))
        labels = (("code", "200"), ("endpoint", "hello"), ("method", "GET"))
        self.assertEqual(samples[("edgegw_http_requests_total", labels)], 2)
        self.assertEqual(samples[("edgegw_http_request_duration_seconds_count", (("endpoint", "hello"),))], 3)
        self.assertEqual(samples[("edgegw_inflight_requests", (("endpoint", "hello"),))], 1)
        self.assertEqual(samples[("edgegw_http_connections", ())], 4)
        self.assertEqual(samples[("edgegw_data_plane_processes", ())], 2)
        self.assertEqual(
            samples[("edgegw_data_plane_resident_memory_bytes", ())],
            planes[0]["resident_bytes"] + planes[1]["resident_bytes"],
        )
        self.assertGreater(samples[("edgegw_data_plane_cpu_seconds_total", ())], 0)
        self.assertNotIn(("process_resident_memory_bytes", ()), samples)


class ScrapeOrderTests(unittest.TestCase):
    def test_one_scrape_at_a_time(self):
        """A scrape asked while one gathers waits for it: the data planes are asked once at a time."""
        from twisted.internet.defer import Deferred

        from edgegw_tx.observability.exposition import Metrics

        asked = []

        def planes():
            asked.append(Deferred())
            return asked[-1]

        metrics = Metrics(planes, dict, process_metrics=False)
        first, second = metrics.scrape(), metrics.scrape()
        self.assertEqual(len(asked), 1)
        asked[0].callback([])
        self.assertIn(b"edgegw_build_info", self.successResultOf(first))
        self.assertEqual(len(asked), 2)
        asked[1].callback([])
        self.successResultOf(second)

    def test_rendered_in_the_thread_pool(self):
        """With a reactor the text is rendered through its thread pool, not inline."""
        from twisted.internet.defer import succeed

        from edgegw_tx.observability.exposition import Metrics
        from tests.support.fakes import SynchronousReactor

        reactor = SynchronousReactor()
        ran = []
        pool = reactor.getThreadPool()
        original = pool.callInThreadWithCallback

        def recording(*args, **kwargs):
            ran.append(args[1])
            return original(*args, **kwargs)

        pool.callInThreadWithCallback = recording
        metrics = Metrics(lambda: succeed([]), dict, process_metrics=False, reactor=reactor)
        self.assertIn(b"edgegw_build_info", self.successResultOf(metrics.scrape()))
        self.assertEqual(len(ran), 1)


class OpenConnectionsTests(unittest.SynchronousTestCase):
    """``edgegw_http_connections`` is the data plane's open connections, whichever HTTP front (``--http``)."""

    def opened_then_one_closed(self, http):
        """The gauge on a scrape of ``http``'s front with two connections open, then after one closed."""
        front = data_plane_factory(http, RouteTable(), MemoryReactorClock())
        metrics = Metrics(lambda: None, dict, process_metrics=False)

        def gauge():
            text = metrics.render([plane_snapshot(RequestMetrics(), None, front)]).decode()
            [line] = [line for line in text.splitlines() if line.startswith("edgegw_http_connections ")]
            return float(line.split()[1])

        protocols = []
        for port in (40000, 40001):
            address = IPv4Address("TCP", "192.0.2.7", port)
            protocol = front.buildProtocol(address)
            protocol.makeConnection(StringTransport(peerAddress=address))
            protocols.append(protocol)
        opened = gauge()
        protocols[0].connectionLost(Failure(ConnectionDone()))
        return opened, gauge()

    def test_httptools_front(self):
        """The httptools front: two connections open count 2, one closed leaves 1."""
        self.assertEqual(self.opened_then_one_closed("httptools"), (2, 1))

    def test_twisted_front(self):
        """The twisted.web front (``--http twisted``): two connections open count 2, one closed leaves 1."""
        self.assertEqual(self.opened_then_one_closed("twisted"), (2, 1))


class RateLimitStoreErrorsTests(unittest.TestCase):
    """edgegw_ratelimit_store_errors_total: counted per process, added up over processes, exposed."""

    def test_counted_summed_and_rendered(self):
        """A policy's count() per plane, two planes added up by labels, rendered with service and on_store_error."""
        from edgegw_tx.observability.exposition import Metrics
        from edgegw_tx.observability.metrics import plane_snapshot
        from edgegw_tx.policy.ratelimit import STORE_ERRORS_METRIC

        planes = []
        for _ in range(2):
            metrics = RequestMetrics()
            metrics.count(STORE_ERRORS_METRIC, {"service": "cache", "on_store_error": "allow"})
            planes.append(plane_snapshot(metrics, None, None))
        text = Metrics(lambda: None, lambda: {}, process_metrics=False).render(planes).decode()
        self.assertIn('edgegw_ratelimit_store_errors_total{on_store_error="allow",service="cache"} 2.0', text)
