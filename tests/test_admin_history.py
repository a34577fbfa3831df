"""
The stats history behind the dashboard's charts (``edgegw_tx/admin/history.py``,
``GET /api/stats/history``): samples of the data plane's own request counters
(``RequestMetrics``, those of ``/metrics``), and the file that keeps them
across a restart; on a ``Clock``, no real time. Also the worker pools' latency
counters (``WorkerPool.stats()``).
"""

import json
import os
import stat

from treq.testing import StubTreq
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial import unittest

from edgegw_tx.admin.api import AdminAPI
from edgegw_tx.admin.history import (
    HISTORY_FILE,
    HistoryService,
    StatsHistory,
    median_ms,
    running_endpoints,
)
from edgegw_tx.observability.metrics import DURATION_BUCKETS, RequestMetrics, plane_snapshot



def buckets(**counts):
    """Duration buckets with ``counts`` by bucket index (``b3=2``)."""
    out = [0] * (len(DURATION_BUCKETS) + 1)
    for name, count in counts.items():
        out[int(name[1:])] = count
    return out


def planes(*metrics):
    """``planes()`` of data planes keeping ``metrics``: the first is pid 1, the next pid 2, ..."""
    return lambda: [dict(plane_snapshot(m, None, None), pid=pid) for pid, m in enumerate(metrics, 1)]


def record(metrics, name, count, seconds, status=200):
    """``count`` answers of ``status`` that took ``seconds`` each, on the endpoint ``name``."""
    series = metrics.series(name)
    for _ in range(count):
        series.record(b"GET", status, 10, 20, seconds)


class MedianTests(unittest.TestCase):
    def test_no_requests(self):
        """No requests, no median."""
        self.assertIsNone(median_ms(buckets()))

    def test_interpolated_inside_the_bucket(self):
        """The median falls inside the bucket holding the middle request, linearly."""
        # Bucket 4 is (1 ms, 2.5 ms]: four requests there, the median half-way in.
        self.assertEqual(median_ms(buckets(b4=4)), 1.75)
        # Two fast ones and two in (1, 2.5]: the median is at the first bucket's top.
        self.assertEqual(median_ms(buckets(b0=2, b4=2)), 0.1)

    def test_beyond_the_last_bound(self):
        """Requests slower than the last bound report that bound (at least that)."""
        self.assertEqual(median_ms(buckets(**{f"b{len(DURATION_BUCKETS)}": 3})), DURATION_BUCKETS[-1] * 1000)


class HistoryTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.metrics = RequestMetrics()
        self.running = {"e1": "hello"}
        self.refreshed = 0
        self.history = StatsHistory(
            planes(self.metrics), lambda: dict(self.running), self.clock, refresh=self.refresh, window=30, interval=5
        )

    def refresh(self):
        self.refreshed += 1
        return succeed(None)

    def sample(self, advance=5):
        self.clock.advance(advance)
        self.successResultOf(self.history.sample())

    def test_deltas_rates_and_latency(self):
        """Each sample holds what the data plane's counters saw since the one before: requests, 5xx, rate, mean and p50."""
        record(self.metrics, "hello", 10, 0.0015)
        self.sample()
        record(self.metrics, "hello", 19, 0.004)
        record(self.metrics, "hello", 1, 0.004, status=502)
        self.sample()
        view = self.history.view({"e1": "hello"})
        self.assertEqual(view["times"], [1005.0, 1010.0])
        [e1] = view["endpoints"]
        self.assertEqual((e1["id"], e1["name"], e1["window_requests"]), ("e1", "hello", 30))
        self.assertEqual(e1["requests"], [10, 20])
        self.assertEqual(e1["failed"], [0, 1])
        self.assertEqual(e1["rate"], [2.0, 4.0])
        self.assertEqual(e1["mean_ms"], [1.5, 4.0])
        # 10 in (1 ms, 2.5 ms], then 20 in (2.5 ms, 5 ms]: each median half-way in its bucket.
        self.assertEqual(e1["p50_ms"], [1.75, 3.75])
        self.assertEqual(view["total"]["requests"], [10, 20])
        self.assertEqual(self.refreshed, 2)

    def test_every_status_counts_and_only_5xx_fail(self):
        """Every answer is a request (a handler's 404 too); 5xx answers are the failed ones."""
        for status in (200, 404, 500, 503):
            record(self.metrics, "hello", 1, 0.001, status=status)
        self.sample()
        [e1] = self.history.view()["endpoints"]
        self.assertEqual((e1["requests"], e1["failed"]), ([4], [2]))

    def test_a_restart_counts_from_zero(self):
        """A counter lower than before (a data-plane process restarted) is new: all its count is new."""
        record(self.metrics, "hello", 50, 0.001)
        self.sample()
        self.metrics._series.clear()
        record(self.metrics, "hello", 3, 0.001)
        self.sample()
        record(self.metrics, "hello", 57, 0.001)
        self.sample()
        [e1] = self.history.view()["endpoints"]
        self.assertEqual(e1["requests"], [50, 3, 57])

    def test_not_running_is_null(self):
        """An endpoint has nulls where it was not running; what it answered meanwhile is not counted when it runs again."""
        self.running = {}
        record(self.metrics, "hello", 5, 0.001)
        self.sample()
        self.running = {"e1": "hello"}
        record(self.metrics, "hello", 2, 0.001)
        self.sample()
        self.running = {}
        record(self.metrics, "hello", 4, 0.001)
        self.sample()
        self.running = {"e1": "hello"}
        self.sample()
        [e1] = self.history.view()["endpoints"]
        self.assertEqual(e1["requests"], [None, 2, None, 0])
        self.assertEqual(e1["p50_ms"], [None, 0.75, None, None])
        self.assertEqual(self.history.view()["total"]["requests"], [0, 2, 0, 0])

    def test_a_running_endpoint_without_counters(self):
        """A running endpoint the data plane has not counted anything for yet has zeros, no latency."""
        self.sample()
        [e1] = self.history.view()["endpoints"]
        self.assertEqual((e1["requests"], e1["mean_ms"], e1["p50_ms"]), ([0], [None], [None]))

    def test_unrouted_requests_are_no_endpoints(self):
        """The gateway's answers without a route (endpoint "") are in no endpoint's series nor the total."""
        record(self.metrics, "", 7, 0.001, status=404)
        self.sample()
        view = self.history.view()
        self.assertEqual([e["id"] for e in view["endpoints"]], ["e1"])
        self.assertEqual(view["total"]["requests"], [0])

    def test_counters_summed_over_processes(self):
        """With several data planes (a Deferred of them) each one's counts are added up."""
        one, two = RequestMetrics(), RequestMetrics()
        record(one, "hello", 2, 0.001)
        record(two, "hello", 3, 0.001, status=500)
        self.history = StatsHistory(lambda: succeed(planes(one, two)()), lambda: {"e1": "hello"}, self.clock)
        self.sample()
        [e1] = self.history.view()["endpoints"]
        self.assertEqual((e1["requests"], e1["failed"]), ([5], [3]))

    def test_each_process_against_its_own_reading(self):
        """
        A data plane that did not answer counts in the next sample it does; a
        respawned one (another pid) counts whole, without the others counted again.
        """
        one, two = RequestMetrics(), RequestMetrics()
        answering = [(1, one), (2, two)]
        self.history = StatsHistory(
            lambda: [dict(plane_snapshot(m, None, None), pid=pid) for pid, m in answering],
            lambda: {"e1": "hello"},
            self.clock,
        )
        record(one, "hello", 10, 0.001)
        record(two, "hello", 20, 0.001)
        self.sample()
        answering = [(1, one)]  # the second is late
        record(one, "hello", 1, 0.001)
        record(two, "hello", 2, 0.001)
        self.sample()
        answering = [(1, one), (2, two)]
        self.sample()
        answering = [(1, one), (3, RequestMetrics())]  # the second respawned: pid 3, from zero
        record(one, "hello", 4, 0.001)
        record(answering[1][1], "hello", 5, 0.001)
        self.sample()
        [e1] = self.history.view()["endpoints"]
        self.assertEqual(e1["requests"], [30, 1, 2, 9])

    def test_window(self):
        """Only the samples of the window are kept (30 s of 5 s samples: 6)."""
        for _ in range(10):
            self.sample()
        self.assertEqual(len(self.history.view()["times"]), 6)

    def test_top_and_one_endpoint(self):
        """The view names the busiest endpoints first, or the one asked for."""
        self.running = {"a": "a", "b": "b", "c": "c"}
        record(self.metrics, "a", 1, 0.001)
        record(self.metrics, "b", 9, 0.001)
        record(self.metrics, "c", 5, 0.001)
        self.sample()
        self.assertEqual([e["id"] for e in self.history.view(top=2)["endpoints"]], ["b", "c"])
        self.assertEqual([e["id"] for e in self.history.view(endpoint_ids=["a"])["endpoints"]], ["a"])
        # An endpoint that exists but never ran in the window: all nulls.
        [quiet] = self.history.view({"q": "quiet"}, endpoint_ids=["q"])["endpoints"]
        self.assertEqual(quiet["requests"], [None])

    def test_a_failed_refresh_skips_the_sample(self):
        """A sample whose refresh or counters fail is logged and skipped; sample() itself never fails."""
        self.history = StatsHistory(list, dict, self.clock, refresh=lambda: fail(RuntimeError("no answer")))
        self.successResultOf(self.history.sample())
        self.history = StatsHistory(lambda: fail(RuntimeError("no counters")), dict, self.clock)
        self.successResultOf(self.history.sample())
        self.assertEqual(self.history.view()["times"], [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_running_endpoints(self):
        """The running endpoints' ids and names come from the pools' stats."""
        self.assertEqual(running_endpoints({"e1": {"name": "hello", "served": 3}}), {"e1": "hello"})


class PersistenceTests(unittest.TestCase):
    """``HistoryService``: sampling on a timer, and the history kept across a restart in a file."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(10_000)
        self.metrics = RequestMetrics()
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, HISTORY_FILE)

    def service(self, metrics=None, window=60):
        """A started service on a new history (a new gateway process)."""
        metrics = metrics or self.metrics
        history = StatsHistory(planes(metrics), lambda: {"e1": "hello"}, self.clock, interval=5, window=window)
        service = HistoryService(history, self.path, self.clock, save_interval=60)
        service.startService()
        return service

    def stop(self, service):
        self.assertIsNone(self.successResultOf(service.stopService()))

    def test_samples_on_its_interval(self):
        """Started, it takes a sample every interval."""
        service = self.service()
        record(self.metrics, "hello", 4, 0.001)
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual(service.history.view()["endpoints"][0]["requests"], [4, 0])
        self.stop(service)

    def test_survives_a_restart(self):
        """Stopped, it writes a last sample to the file; the next start reads it back and goes on."""
        service = self.service()
        record(self.metrics, "hello", 4, 0.001)
        self.clock.advance(5)
        record(self.metrics, "hello", 6, 0.001)
        self.clock.advance(2)
        self.stop(service)
        before = service.history.view({"e1": "hello"})
        self.assertEqual(before["endpoints"][0]["requests"], [4, 6])

        self.clock.advance(10)
        restarted = self.service(RequestMetrics())
        self.assertEqual(restarted.history.view({"e1": "hello"}), before)
        self.clock.advance(5)
        after = restarted.history.view({"e1": "hello"})
        self.assertEqual(after["times"], before["times"] + [10_022.0])
        self.assertEqual(after["endpoints"][0]["requests"], [4, 6, 0])
        self.stop(restarted)

    def test_written_every_minute_whole(self):
        """While running, the file is written every minute, whole (renamed into place), for its owner only."""
        service = self.service()
        for _ in range(11):
            self.clock.advance(5)
        self.assertFalse(os.path.exists(self.path))
        self.clock.advance(5)
        with open(self.path, "rb") as f:
            document = json.load(f)
        # The sample due at the same time may be taken just before or after.
        self.assertIn(len(document["samples"]), (11, 12))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(os.listdir(self.directory), [HISTORY_FILE])
        self.stop(service)

    def test_old_samples_dropped(self):
        """Samples older than the window are not read back."""
        service = self.service()
        for _ in range(4):
            self.clock.advance(5)
        self.stop(service)  # samples at 10005 .. 10020 and a last one at 10020
        self.clock.advance(49)  # the window (60 s) now begins at 10009
        restarted = self.service()
        self.assertEqual(restarted.history.view()["times"], [10_010.0, 10_015.0, 10_020.0, 10_020.0])
        self.stop(restarted)

    def test_a_corrupt_file_is_ignored(self):
        """A file that is not a history is ignored with a log line; the history starts empty and overwrites it."""
        for content in (b"{not json", b'{"format": 1, "samples": [[1, [1, 0, null, null], {}]]}', b"\xff\xfe"):
            with open(self.path, "wb") as f:
                f.write(content)
            with capturedLogs() as events:
                service = self.service()
            self.assertEqual(service.history.view()["times"], [])
            [event] = [e for e in events if "Ignoring the stats history" in e["log_format"]]
            self.assertEqual(event["path"], self.path)
            self.stop(service)
            with open(self.path, "rb") as f:
                self.assertEqual(len(json.load(f)["samples"]), 1)

    def test_no_file(self):
        """Without a file (a first start) the history starts empty, with no complaint."""
        with capturedLogs() as events:
            service = self.service()
        self.assertEqual(service.history.view()["times"], [])
        self.assertEqual([e for e in events if "Ignoring" in e["log_format"]], [])
        self.stop(service)

    def test_a_failed_write_is_logged(self):
        """A write that fails (its directory gone) is logged; stopping still succeeds."""
        service = self.service()
        os.rmdir(self.directory)
        self.stop(service)
        self.assertEqual(len(self.flushLoggedErrors(FileNotFoundError)), 1)


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
        self.manager = FakeManager({"e1": {"name": "hello"}})
        metrics = RequestMetrics()
        record(metrics, "hello", 4, 0.001)
        history = StatsHistory(
            planes(metrics), lambda: running_endpoints(self.manager.pool_stats_by_endpoint()), self.reactor
        )
        self.api = AdminAPI(self.manager, self.keys, self.reactor, history=history)
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

    def test_without_a_history_the_running_endpoints_count_nothing(self):
        """An API given no history lists the running endpoints with zero requests."""
        api = AdminAPI(self.manager, self.keys, self.reactor)
        self.successResultOf(api.history.sample())
        [e1] = api.history.view()["endpoints"]
        self.assertEqual((e1["id"], e1["requests"]), ("e1", [0]))


class RuntimeHistoryTests(unittest.TestCase):
    """The runtime's history: its own data plane's counters, kept in the data dir across a restart."""

    def started(self, data_dir):
        from tests.support.fakes import fake_runtime

        runtime = fake_runtime(self, data_dir=data_dir)
        self.successResultOf(runtime.startService())
        return runtime

    def test_charts_count_the_data_plane_and_survive_a_restart(self):
        """
        A sample counts what the data plane's RequestMetrics recorded; stopped,
        the runtime writes <data-dir>/stats-history.json, and the next runtime
        on that data dir answers the same samples.
        """
        from tests.support.handlers import HELLO

        data_dir = os.path.abspath(self.mktemp())
        runtime = self.started(data_dir)
        created = self.successResultOf(
            runtime.manager.create({"name": "hello", "path": "/hello", "method": "GET", "code": HELLO})
        )
        self.successResultOf(runtime.manager.compile(created["id"]))
        self.successResultOf(runtime.manager.start(created["id"]))
        record(runtime.request_metrics, "hello", 3, 0.001)
        self.reactor.advance(5)
        self.successResultOf(runtime.stopService())
        before = runtime.api.history.view({created["id"]: "hello"})
        self.assertEqual(before["endpoints"][0]["requests"][0], 3)
        self.assertTrue(os.path.exists(os.path.join(data_dir, HISTORY_FILE)))

        again = self.started(data_dir)
        self.assertEqual(again.api.history.view({created["id"]: "hello"}), before)
        self.successResultOf(again.stopService())
