"""
A short history of the request counters, for the Admin UI's dashboard charts.

Every ``interval`` seconds (5 by default; the runtime's ``TimerService``) a
sample reads the running endpoints' worker-pool counters (``WorkerPool.stats()``)
and keeps, per endpoint, what happened since the sample before: requests
served and failed, and the mean and median (p50) time of the served ones. The
median comes from the pools' latency buckets (``workers.pool.LATENCY_BOUNDS``),
interpolated inside the bucket where it falls, so it is an estimate within
that bucket's bounds. The samples of the last ``window`` seconds (15 minutes)
are kept, in memory only: a gateway restart starts an empty history.

Counters are cumulative per pool and start at zero with a new pool (a start,
restart, rollback or settings change): a reading lower than the one before is
taken as a new pool, whose whole count falls in the interval.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from edgegw_tx.workers.pool import LATENCY_BOUNDS

DEFAULT_INTERVAL = 5.0
DEFAULT_WINDOW = 900.0
DEFAULT_TOP = 10
MAX_TOP = 100
SERIES = ("requests", "failed", "rate", "mean_ms", "p50_ms")

Reading = tuple[int, int, float, list[int], Any]
"""One pool's counters: (served, failed, latency_seconds, buckets, version)."""

Delta = tuple[int, int, float, list[int]]
"""What happened between two readings: (requests, failed, latency_seconds, buckets)."""

Point = tuple[int, int, float | None, float | None, float | None]
"""A stored sample of one endpoint, in the order of ``SERIES``."""


def median_ms(buckets: Sequence[int], bounds: Sequence[float] = LATENCY_BOUNDS) -> float | None:
    """
    The p50, in milliseconds, of requests counted per bucket (``bounds`` are
    the buckets' upper bounds in seconds, one more bucket for the rest); None
    when there are none. Linear inside the bucket where the median falls.
    """
    total = sum(buckets)
    if total <= 0:
        return None
    half = total / 2.0
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= half:
            lower = bounds[index - 1] if index > 0 else 0.0
            if index >= len(bounds):
                return round(lower * 1000.0, 3)  # beyond the last bound: at least that
            upper = bounds[index]
            fraction = (half - seen) / count
            return round((lower + (upper - lower) * fraction) * 1000.0, 3)
        seen += count
    return None


def _reading(stats: Mapping[str, Any]) -> Reading:
    """(served, failed, latency_seconds, buckets) of one pool's ``stats()``."""
    buckets = stats.get("latency_buckets") or []
    return (
        int(stats.get("served", 0)),
        int(stats.get("failed", 0)),
        float(stats.get("latency_seconds", 0.0)),
        [int(b) for b in buckets],
        stats.get("version"),
    )


def _delta(now: Reading, before: Reading | None) -> Delta:
    """What happened between two readings of one endpoint's pool (all of ``now`` after a reset)."""
    served, failed, latency, buckets, version = now
    if before is not None:
        b_served, b_failed, b_latency, b_buckets, b_version = before
        reset = (
            version != b_version
            or served < b_served
            or failed < b_failed
            or len(buckets) != len(b_buckets)
            or any(x < y for x, y in zip(buckets, b_buckets))
        )
        if not reset:
            return (
                served - b_served,
                failed - b_failed,
                max(0.0, latency - b_latency),
                [x - y for x, y in zip(buckets, b_buckets)],
            )
    return served, failed, latency, buckets


def _point(requests: int, failed: int, latency: float, buckets: Sequence[int], seconds: float) -> Point:
    """The stored sample of one endpoint: (requests, failed, rate, mean_ms, p50_ms)."""
    rate = round(requests / seconds, 3) if seconds > 0 else None
    mean = round(latency / requests * 1000.0, 3) if requests else None
    return (requests, failed, rate, mean, median_ms(buckets) if requests else None)


class StatsHistory:
    """The samples of the last ``window`` seconds (see the module docstring)."""

    log = Logger()

    def __init__(
        self,
        source: Callable[[], Mapping[str, Mapping[str, Any]]],
        clock: IReactorTime,
        refresh: Callable[[], object] | None = None,
        interval: float = DEFAULT_INTERVAL,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        """
        ``source()`` answers ``{endpoint_id: stats()}`` of the running pools
        (``EndpointManager.pool_stats_by_endpoint``); ``refresh()`` -> Deferred
        brings those up to date first (several data-plane processes); ``clock``
        gives the time of each sample.
        """
        self._source = source
        self._refresh = refresh
        self._clock = clock
        self.interval = interval
        self.window = window
        # (time, the gateway's point, {endpoint_id: point})
        self._samples: deque[tuple[float, Point, dict[str, Point]]] = deque(
            maxlen=max(1, int(round(window / interval)))
        )
        self._last: dict[str, Reading] = {}  # endpoint_id -> its pool's reading at the last sample
        self._last_time: float | None = None

    def sample(self) -> Deferred[float | None]:
        """
        Take one sample (after ``refresh``); a Deferred that never fails: an
        error is logged and the sample skipped, so a ``TimerService`` goes on.
        """
        d = maybeDeferred(self._refresh) if self._refresh is not None else maybeDeferred(lambda: None)
        taken = d.addCallback(lambda _: self._take())
        return taken.addErrback(lambda f: self.log.failure("Taking a stats sample failed", f))

    def _take(self) -> float:
        now = self._clock.seconds()
        seconds = now - self._last_time if self._last_time is not None else self.interval
        readings = {eid: _reading(stats) for eid, stats in self._source().items()}
        points: dict[str, Point] = {}
        all_requests, all_failed, all_latency = 0, 0, 0.0
        all_buckets = [0] * (len(LATENCY_BOUNDS) + 1)
        for endpoint_id, reading in readings.items():
            requests, failed, latency, buckets = _delta(reading, self._last.get(endpoint_id))
            points[endpoint_id] = _point(requests, failed, latency, buckets, seconds)
            all_requests += requests
            all_failed += failed
            all_latency += latency
            if len(buckets) == len(all_buckets):
                all_buckets = [x + y for x, y in zip(all_buckets, buckets)]
        total = _point(all_requests, all_failed, all_latency, all_buckets, seconds)
        self._samples.append((now, total, points))
        self._last = readings
        self._last_time = now
        return now

    def view(
        self,
        names: Mapping[str, str] | None = None,
        endpoint_ids: Iterable[str] | None = None,
        top: int = DEFAULT_TOP,
    ) -> dict[str, Any]:
        """
        The history as columns, oldest sample first: ``times`` and, for the
        whole gateway (``total``) and per endpoint, one list per series of
        ``SERIES``, null where the endpoint was not running. Endpoints are
        those named in ``endpoint_ids`` or else the ``top`` with the most
        requests over the window (then by id), among those that ran in it;
        ``names`` maps ids to names for the answer.
        """
        names = names or {}
        samples = list(self._samples)
        times = [round(when, 3) for when, _, _ in samples]
        total = {name: [point[i] for _, point, _ in samples] for i, name in enumerate(SERIES)}
        seen: dict[str, int] = {}
        for _, _, points in samples:
            for endpoint_id, point in points.items():
                seen[endpoint_id] = seen.get(endpoint_id, 0) + point[0]
        if endpoint_ids is not None:
            chosen = [eid for eid in endpoint_ids if eid in seen or eid in names]
        else:
            chosen = sorted(seen, key=lambda eid: (-seen[eid], eid))[:top]
        endpoints = []
        for endpoint_id in chosen:
            series: dict[str, list[float | None]] = {name: [] for name in SERIES}
            for _, _, points in samples:
                found = points.get(endpoint_id)
                for i, name in enumerate(SERIES):
                    series[name].append(found[i] if found is not None else None)
            endpoints.append(
                dict(
                    id=endpoint_id,
                    name=names.get(endpoint_id),
                    window_requests=seen.get(endpoint_id, 0),
                    **series,
                )
            )
        return {
            "interval": self.interval,
            "window": self.window,
            "times": times,
            "total": total,
            "endpoints": endpoints,
        }
