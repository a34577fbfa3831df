"""The data plane's request counters and the Prometheus collectors that read them.

The request path must stay cheap (issue 17: metrics cost at most 5 % of the
gateway's CPU per request), so nothing here calls prometheus_client per
request: an answered request bumps plain ints in a preallocated
:class:`EndpointSeries`, and the collectors turn those ints into metric
families only when Prometheus scrapes. The same counters feed the Admin UI's
charts (admin/history.py), so there is one bookkeeping, not two.

With ``--processes N`` every data-plane process keeps its own
:class:`RequestMetrics`; the main process asks each for :meth:`snapshot` over
the control channel and adds them up with :func:`merge_snapshots`.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import Any, Iterable

#: Upper bounds (seconds) of the request duration histogram: 0.1 ms … 30 s.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)

#: Upper bounds (bytes) of the request and response size histograms: 0 (no
#: body), then ×16 steps to 16 MiB; few, as a scrape carries them per endpoint.
SIZE_BUCKETS: tuple[float, ...] = (0, 256, 4096, 65536, 1048576, 16777216)

#: The methods counted under their own name; any other is counted as "OTHER"
#: so a client cannot grow the label set.
METHODS: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

_METHOD_LABEL: dict[bytes | str, str] = {}
for _name in METHODS:
    _METHOD_LABEL[_name] = _name
    _METHOD_LABEL[_name.encode("ascii")] = _name
del _name


class EndpointSeries:
    """One endpoint's request counters: plain ints bumped once per answered request.

    ``inflight`` is a public int the HTTP layer adds 1 to when a request
    starts and takes 1 from when it ends; :meth:`record` is called once per
    answer (including the gateway's own 404/405/413/431/503).
    """

    __slots__ = (
        "name", "inflight", "counts",
        "duration_buckets", "duration_sum",
        "request_size_buckets", "request_size_sum",
        "response_size_buckets", "response_size_sum",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.inflight = 0
        # (method label, status) -> answered requests
        self.counts: dict[tuple[str, int], int] = {}
        # per-bucket (not cumulative) counts; the last slot is +Inf
        self.duration_buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.request_size_buckets = [0] * (len(SIZE_BUCKETS) + 1)
        self.request_size_sum = 0
        self.response_size_buckets = [0] * (len(SIZE_BUCKETS) + 1)
        self.response_size_sum = 0

    def record(self, method: bytes | str, status: int, bytes_in: int, bytes_out: int, seconds: float) -> None:
        """Count one answered request (its method, status, sizes and duration)."""
        key = (_METHOD_LABEL.get(method, "OTHER"), status)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        self.duration_buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds
        self.request_size_buckets[bisect_left(SIZE_BUCKETS, bytes_in)] += 1
        self.request_size_sum += bytes_in
        self.response_size_buckets[bisect_left(SIZE_BUCKETS, bytes_out)] += 1
        self.response_size_sum += bytes_out

    @property
    def requests(self) -> int:
        """Every request answered so far (all methods and statuses)."""
        return sum(self.duration_buckets)

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain JSON-able data (for the control channel and history)."""
        return {
            "inflight": self.inflight,
            "counts": [[method, status, n] for (method, status), n in self.counts.items()],
            "duration": [list(self.duration_buckets), self.duration_sum],
            "request_size": [list(self.request_size_buckets), self.request_size_sum],
            "response_size": [list(self.response_size_buckets), self.response_size_sum],
        }


RATELIMIT_STORE_ERRORS = "edgegw_ratelimit_store_errors_total"
"""The policies' one metric (``edgegw_tx.policy.ratelimit.STORE_ERRORS_METRIC`` names it too)."""


class RequestMetrics:
    """Every endpoint's :class:`EndpointSeries`, by endpoint name ("" = no route)."""

    def __init__(self) -> None:
        self._series: dict[str, EndpointSeries] = {}
        #: Access-log lines dropped (full disk, unwritable file): :meth:`drop_lines` counts them.
        self.access_log_dropped = 0
        #: Cluster rate-limit checks whose Redis failed, by (service, on_store_error): :meth:`count`.
        self.ratelimit_store_errors: dict[tuple[str, str], int] = {}

    def count(self, metric: str, labels: dict[str, str]) -> None:
        """
        A traffic policy's event (``PolicyContext.count``): the one there is,
        ``edgegw_ratelimit_store_errors_total`` by service and on_store_error.
        """
        if metric == RATELIMIT_STORE_ERRORS:
            key = (labels.get("service", ""), labels.get("on_store_error", ""))
            self.ratelimit_store_errors[key] = self.ratelimit_store_errors.get(key, 0) + 1

    def drop_lines(self, count: int) -> None:
        """The access log's ``on_drop``: ``count`` lines could not be written."""
        self.access_log_dropped += count

    def series(self, endpoint_name: str) -> EndpointSeries:
        """The endpoint's series, made on first use and the same object after."""
        found = self._series.get(endpoint_name)
        if found is None:
            found = self._series[endpoint_name] = EndpointSeries(endpoint_name)
        return found

    def all(self) -> Iterable[EndpointSeries]:
        """Every series made so far."""
        return list(self._series.values())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every endpoint's counters as plain data, keyed by endpoint name."""
        return {name: series.snapshot() for name, series in list(self._series.items())}


def empty_snapshot() -> dict[str, Any]:
    """An endpoint snapshot with nothing counted (the start of a sum)."""
    return EndpointSeries("").snapshot()


def _add_histogram(into: list[Any], other: list[Any]) -> None:
    buckets, total = other
    into[0] = [a + b for a, b in zip(into[0], buckets)]
    into[1] += total


def merge_snapshots(snapshots: Iterable[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Add up :meth:`RequestMetrics.snapshot` results of several processes.

    Counters, histogram buckets and sums add; so does ``inflight`` (a gauge
    whose total over the processes is what the node has in flight).
    """
    merged: dict[str, dict[str, Any]] = {}
    for snapshot in snapshots:
        for name, series in snapshot.items():
            into = merged.get(name)
            if into is None:
                into = merged[name] = empty_snapshot()
            into["inflight"] += series["inflight"]
            into["counts"] = _add_counts(into["counts"], series["counts"])
            for histogram in ("duration", "request_size", "response_size"):
                _add_histogram(into[histogram], series[histogram])
    return merged


def _add_counts(left: list[list[Any]], right: list[list[Any]]) -> list[list[Any]]:
    totals: dict[tuple[str, int], int] = {}
    for method, status, n in list(left) + list(right):
        key = (method, status)
        totals[key] = totals.get(key, 0) + n
    return [[method, status, n] for (method, status), n in totals.items()]


#: Upper bounds (seconds) of the compile duration histogram: cargo takes seconds to minutes.
COMPILE_BUCKETS: tuple[float, ...] = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Timings:
    """
    Events counted by a tuple of labels, timed in a histogram by the first
    ``histogram_labels`` of them: service calls by (service, kind, outcome)
    timed by (service, kind); compiles by (outcome,) timed as one. Plain
    ints, bumped once per event like :class:`EndpointSeries`.
    """

    def __init__(self, buckets: tuple[float, ...], histogram_labels: int) -> None:
        self.buckets = buckets
        self.histogram_labels = histogram_labels
        self.counts: dict[tuple[str, ...], int] = {}
        # histogram labels -> [per-bucket counts (last: +Inf), sum]
        self.histograms: dict[tuple[str, ...], list[Any]] = {}

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        """Count one event with ``labels`` that took ``seconds``."""
        counts = self.counts
        counts[labels] = counts.get(labels, 0) + 1
        key = labels[: self.histogram_labels]
        histogram = self.histograms.get(key)
        if histogram is None:
            histogram = self.histograms[key] = [[0] * (len(self.buckets) + 1), 0.0]
        histogram[0][bisect_left(self.buckets, seconds)] += 1
        histogram[1] += seconds

    def snapshot(self) -> dict[str, Any]:
        """The counts and histograms as plain JSON-able data."""
        return {
            "counts": [[*labels, n] for labels, n in self.counts.items()],
            "histograms": [[*labels, list(h[0]), h[1]] for labels, h in self.histograms.items()],
        }

    @staticmethod
    def merge(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """Add up :meth:`snapshot` results of several processes."""
        counts: dict[tuple[Any, ...], int] = {}
        histograms: dict[tuple[Any, ...], list[Any]] = {}
        for snapshot in snapshots:
            for *labels, n in snapshot.get("counts", ()):
                key = tuple(labels)
                counts[key] = counts.get(key, 0) + n
            for *labels, buckets, total in snapshot.get("histograms", ()):
                key = tuple(labels)
                into = histograms.get(key)
                if into is None:
                    histograms[key] = [list(buckets), total]
                else:
                    into[0] = [a + b for a, b in zip(into[0], buckets)]
                    into[1] += total
        return {
            "counts": [[*labels, n] for labels, n in counts.items()],
            "histograms": [[*labels, h[0], h[1]] for labels, h in histograms.items()],
        }


def service_call_timings() -> Timings:
    """The service registry's calls: counted by (service, kind, outcome), timed by (service, kind)."""
    return Timings(DURATION_BUCKETS, 2)


def compile_timings() -> Timings:
    """The builds: counted by (outcome,), timed as one."""
    return Timings(COMPILE_BUCKETS, 0)


def open_connections(front: Any) -> int:
    """The data-plane factory's open connections (its ``connections`` set; 0 when it keeps none)."""
    connections = getattr(front, "connections", None)
    if connections is None:
        return 0
    if isinstance(connections, int):
        return connections
    return len(connections)


def plane_snapshot(requests: RequestMetrics, service_calls: Timings | None, front: Any) -> dict[str, Any]:
    """
    What one data plane counted: its requests, access-log drops, service
    calls and open connections; ``pid`` tells the process (and a respawned
    one from the one before) to the stats history (admin/history.py).
    """
    return {
        "pid": os.getpid(),
        "requests": requests.snapshot(),
        "access_log_dropped": requests.access_log_dropped,
        "ratelimit_store_errors": [[s, o, n] for (s, o), n in sorted(requests.ratelimit_store_errors.items())],
        "service_calls": service_calls.snapshot() if service_calls is not None else {},
        "connections": open_connections(front),
        **process_usage(),
    }


def _sum_store_errors(planes: list[dict[str, Any]]) -> list[list[Any]]:
    """The planes' ``ratelimit_store_errors`` added up by (service, on_store_error)."""
    total: dict[tuple[str, str], int] = {}
    for plane in planes:
        for service, on_error, n in plane.get("ratelimit_store_errors", ()):
            total[(service, on_error)] = total.get((service, on_error), 0) + n
    return [[s, o, n] for (s, o), n in sorted(total.items())]


def process_usage() -> dict[str, float]:
    """This process's CPU seconds (user + system) and resident memory, for the data planes' sums."""
    times = os.times()
    resident = 0
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass  # not Linux: no resident size
    return {"cpu_seconds": times.user + times.system, "resident_bytes": resident}


def merge_planes(planes: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The sum of several data planes' :func:`plane_snapshot` (``--processes N``)."""
    planes = [p for p in planes if isinstance(p, dict)]
    return {
        "requests": merge_snapshots(p.get("requests", {}) for p in planes),
        "access_log_dropped": sum(p.get("access_log_dropped", 0) for p in planes),
        "ratelimit_store_errors": _sum_store_errors(planes),
        "service_calls": Timings.merge(p.get("service_calls", {}) for p in planes),
        "connections": sum(p.get("connections", 0) for p in planes),
        "processes": len(planes),
        "cpu_seconds": sum(p.get("cpu_seconds", 0.0) for p in planes),
        "resident_bytes": sum(p.get("resident_bytes", 0) for p in planes),
    }
