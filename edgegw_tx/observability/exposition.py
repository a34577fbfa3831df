"""
The gateway's Prometheus metrics: one registry whose collector turns the
plain counters (observability/metrics.py, the worker pools' stats, the
builds') into metric families when scraped, and the text it answers.

Nothing is computed per request here: :meth:`Metrics.scrape` gathers the data
planes' snapshots (this process's, or with ``--processes N`` every data-plane
process's over the control channel, added up), refreshes the pools' views,
reads the pools' stats, then renders the registry once. The rendering (tens
of thousands of lines with 1,000 endpoints) runs in the reactor's thread pool
when a reactor is given, on copies taken on the reactor thread, one scrape at
a time.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred, DeferredLock, gatherResults, succeed
from twisted.internet.threads import deferToThreadPool

from edgegw_tx import __version__
from edgegw_tx.observability.metrics import (
    COMPILE_BUCKETS,
    DURATION_BUCKETS,
    SIZE_BUCKETS,
    Timings,
    merge_planes,
)

__all__ = ["CONTENT_TYPE", "Metrics", "RESTART_REASONS", "WORKER_STATES", "local_planes"]

#: The Content-Type of the text format the scrape answers.
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: ``edgegw_workers{state}``: the states of ``WorkerPool.workers()``.
WORKER_STATES = ("starting", "ready", "busy", "draining")

#: ``edgegw_worker_restarts_total{reason}`` -> the pool stats key that counts it (workers/pool.py).
RESTART_REASONS = {
    "crash": "crashed",
    "timeout": "timed_out",
    "recycle": "recycled",
    "memory": "out_of_memory",
}


def _buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (last: +Inf) as the cumulative ``(le, count)`` pairs of the text format."""
    pairs = []
    total = 0
    for bound, count in zip(bounds, counts):
        total += count
        pairs.append((repr(float(bound)), float(total)))
    total += sum(counts[len(bounds):])
    pairs.append(("+Inf", float(total)))
    return pairs


def _by_name(pools: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The pools' stats keyed by endpoint name (the label), numbers added if two share one."""
    wanted = ("queued", "workers", "starting", "busy", "draining", *RESTART_REASONS.values())
    named: dict[str, dict[str, float]] = {}
    for stats in pools.values():
        name = str(stats.get("name") or "")
        into = named.setdefault(name, dict.fromkeys(wanted, 0))
        for key in wanted:
            value = stats.get(key, 0)
            if isinstance(value, (int, float)):
                into[key] += value
    return named


class Metrics:
    """
    The registry ``GET /metrics`` and ``--metrics-listen`` render.

    ``planes()`` fires with the data planes' ``plane_snapshot`` list (one
    here, or one per data-plane process); ``pools()`` is the endpoints'
    pool stats by endpoint id (``EndpointManager.pool_stats_by_endpoint``),
    brought up to date by ``refresh()`` first when given (the data-plane
    processes' views); ``compiles`` the builds' timings. With a ``reactor``
    the text is rendered in its thread pool, otherwise inline.
    """

    def __init__(
        self,
        planes: Callable[[], "Deferred[list[dict[str, Any]]]"],
        pools: Callable[[], Mapping[str, Mapping[str, Any]]],
        *,
        compiles: Timings | None = None,
        refresh: Callable[[], "Deferred[Any]"] | None = None,
        version: str = __version__,
        process_metrics: bool = True,
        reactor: Any = None,
    ) -> None:
        self._planes = planes
        self._pools = pools
        self._refresh = refresh
        self._reactor = reactor
        self.compiles = compiles
        self.version = version
        self.registry = CollectorRegistry(auto_describe=False)
        # What the collector renders: copies taken on the reactor thread before rendering.
        self._plane: dict[str, Any] = merge_planes([])
        self._pool_stats: dict[str, dict[str, float]] = {}
        self._compiles: dict[str, Any] = {"counts": [], "histograms": []}
        self._lock = DeferredLock()
        self.registry.register(_GatewayCollector(self))
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    def scrape(self) -> "Deferred[bytes]":
        """Gather the data planes' counters and the pools' views, then render the text format."""
        return self._lock.run(self._scrape)

    def _scrape(self) -> "Deferred[bytes]":
        waits: list[Deferred[Any]] = [self._planes()]
        if self._refresh is not None:
            waits.append(self._refresh())
        d = gatherResults(waits, consumeErrors=True)

        def rendered(results: list[Any]) -> "Deferred[bytes]":
            self._take(results[0])
            if self._reactor is None:
                return succeed(generate_latest(self.registry))
            rendering: Deferred[bytes] = deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), generate_latest, self.registry
            )
            return rendering

        return d.addCallback(rendered)

    def render(self, planes: list[dict[str, Any]]) -> bytes:
        """The text format of the registry with ``planes`` (their sum) as the data planes' counters, inline."""
        self._take(planes)
        return generate_latest(self.registry)

    def _take(self, planes: list[dict[str, Any]]) -> None:
        """On the reactor thread: what the next rendering shows (sums and copies, nothing shared)."""
        self._plane = merge_planes(planes)
        self._pool_stats = _by_name(self._pools())
        self._compiles = self.compiles.snapshot() if self.compiles is not None else {"counts": [], "histograms": []}

    def families(self) -> Iterator[Metric]:
        """Every edgegw metric family, from what the last scrape took (``_take``)."""
        plane = self._plane
        requests: dict[str, dict[str, Any]] = plane["requests"]

        total = CounterMetricFamily(
            "edgegw_http_requests", "Data-plane requests answered", labels=["endpoint", "method", "code"]
        )
        duration = HistogramMetricFamily(
            "edgegw_http_request_duration_seconds",
            "Time from a request's head to its answer",
            labels=["endpoint"],
        )
        request_size = HistogramMetricFamily(
            "edgegw_http_request_size_bytes", "Request body sizes", labels=["endpoint"]
        )
        response_size = HistogramMetricFamily(
            "edgegw_http_response_size_bytes", "Response body sizes", labels=["endpoint"]
        )
        inflight = GaugeMetricFamily(
            "edgegw_inflight_requests", "Requests received and not yet answered", labels=["endpoint"]
        )
        for name, series in sorted(requests.items()):
            for method, status, n in series["counts"]:
                total.add_metric([name, method, str(status)], n)
            counts, seconds = series["duration"]
            duration.add_metric([name], _buckets(DURATION_BUCKETS, counts), seconds)
            counts, size = series["request_size"]
            request_size.add_metric([name], _buckets(SIZE_BUCKETS, counts), size)
            counts, size = series["response_size"]
            response_size.add_metric([name], _buckets(SIZE_BUCKETS, counts), size)
            inflight.add_metric([name], series["inflight"])
        yield from (total, duration, request_size, response_size, inflight)

        queue = GaugeMetricFamily(
            "edgegw_queue_depth", "Requests waiting in the endpoint's pool for a worker", labels=["endpoint"]
        )
        workers = GaugeMetricFamily(
            "edgegw_workers", "Live worker processes by state", labels=["endpoint", "state"]
        )
        restarts = CounterMetricFamily(
            "edgegw_worker_restarts",
            "Workers that ended and were replaced, by why (since the endpoint's pool started)",
            labels=["endpoint", "reason"],
        )
        for name, stats in sorted(self._pool_stats.items()):
            queue.add_metric([name], stats["queued"])
            ready = stats["workers"] - stats["starting"] - stats["busy"] - stats["draining"]
            for state, value in zip(
                WORKER_STATES, (stats["starting"], max(0, ready), stats["busy"], stats["draining"])
            ):
                workers.add_metric([name, state], value)
            for reason, key in RESTART_REASONS.items():
                restarts.add_metric([name, reason], stats[key])
        yield from (queue, workers, restarts)

        calls = CounterMetricFamily(
            "edgegw_service_calls", "Handlers' service calls", labels=["service", "kind", "outcome"]
        )
        call_duration = HistogramMetricFamily(
            "edgegw_service_call_duration_seconds", "Time a service call took", labels=["service", "kind"]
        )
        service_calls = plane["service_calls"]
        for service, kind, outcome, n in sorted(service_calls.get("counts", ())):
            calls.add_metric([service, kind, outcome], n)
        for service, kind, counts, seconds in sorted(service_calls.get("histograms", ())):
            call_duration.add_metric([service, kind], _buckets(DURATION_BUCKETS, counts), seconds)
        yield from (calls, call_duration)

        store_errors = CounterMetricFamily(
            "edgegw_ratelimit_store_errors",
            "Cluster-scope rate-limit checks whose Redis failed or was too slow, so the request was let"
            " through (on_store_error allow) or answered 503 (deny)",
            labels=["service", "on_store_error"],
        )
        for service, on_error, n in plane.get("ratelimit_store_errors", ()):
            store_errors.add_metric([service, on_error], n)
        yield store_errors

        compiles = CounterMetricFamily("edgegw_compiles", "Compiles of endpoints by outcome", labels=["outcome"])
        compile_duration = HistogramMetricFamily("edgegw_compile_duration_seconds", "Time a compile took")
        for outcome, n in sorted(self._compiles["counts"]):
            compiles.add_metric([outcome], n)
        for counts, seconds in self._compiles["histograms"]:
            compile_duration.add_metric([], _buckets(COMPILE_BUCKETS, counts), seconds)
        yield from (compiles, compile_duration)

        yield GaugeMetricFamily(
            "edgegw_http_connections", "Open data-plane HTTP connections", value=plane["connections"]
        )
        yield GaugeMetricFamily(
            "edgegw_data_plane_processes",
            "Data-plane processes whose counters this scrape added up (--processes N; 1: this process)",
            value=plane["processes"],
        )
        yield CounterMetricFamily(
            "edgegw_data_plane_cpu_seconds",
            "CPU seconds (user and system) of the data-plane processes, summed",
            value=plane["cpu_seconds"],
        )
        yield GaugeMetricFamily(
            "edgegw_data_plane_resident_memory_bytes",
            "Resident memory of the data-plane processes, summed (their workers not included)",
            value=plane["resident_bytes"],
        )
        yield CounterMetricFamily(
            "edgegw_access_log_dropped_lines",
            "Access-log lines dropped because they could not be written",
            value=plane["access_log_dropped"],
        )
        info = GaugeMetricFamily("edgegw_build_info", "The gateway's version (always 1)", labels=["version"])
        info.add_metric([self.version], 1)
        yield info


class _GatewayCollector(Collector):
    """The registry's view of :meth:`Metrics.families`."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()


def local_planes(plane: Callable[[], dict[str, Any]]) -> Callable[[], "Deferred[list[dict[str, Any]]]"]:
    """``planes`` for a gateway whose data plane is this process: its one snapshot."""
    return lambda: succeed([plane()])
