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

from collections import deque

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from edgegw_tx.workers.pool import LATENCY_BOUNDS

DEFAULT_INTERVAL = 5.0
DEFAULT_WINDOW = 900.0
DEFAULT_TOP = 10
MAX_TOP = 100
SERIES = ("requests", "failed", "rate", "mean_ms", "p50_ms")


def median_ms(buckets, bounds=LATENCY_BOUNDS):
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


def _reading(stats):
    """(served, failed, latency_seconds, buckets) of one pool's ``stats()``."""
    buckets = stats.get("latency_buckets") or []
    return (
        int(stats.get("served", 0)),
        int(stats.get("failed", 0)),
        float(stats.get("latency_seconds", 0.0)),
        [int(b) for b in buckets],
        stats.get("version"),
    )


def _delta(now, before):
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


def _point(requests, failed, latency, buckets, seconds):
    """The stored sample of one endpoint: (requests, failed, rate, mean_ms, p50_ms)."""
    rate = round(requests / seconds, 3) if seconds > 0 else None
    mean = round(latency / requests * 1000.0, 3) if requests else None
    return (requests, failed, rate, mean, median_ms(buckets) if requests else None)


class StatsHistory:
    log = Logger()

    def __init__(self, source, clock, refresh=None, interval=DEFAULT_INTERVAL, window=DEFAULT_WINDOW):
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
        self._samples = deque(maxlen=max(1, int(round(window / interval))))
        self._last = {}  # endpoint_id -> its pool's reading at the last sample
        self._last_time = None

    def sample(self):
        """
        Take one sample (after ``refresh``); a Deferred that never fails: an
        error is logged and the sample skipped, so a ``TimerService`` goes on.
        """
        d = maybeDeferred(self._refresh) if self._refresh is not None else maybeDeferred(lambda: None)
        d.addCallback(lambda _: self._take())
        d.addErrback(lambda f: self.log.failure("Taking a stats sample failed", f))
        return d

    def _take(self):
        now = self._clock.seconds()
        seconds = now - self._last_time if self._last_time is not None else self.interval
        readings = {eid: _reading(stats) for eid, stats in self._source().items()}
        points = {}
        total = [0, 0, 0.0, [0] * (len(LATENCY_BOUNDS) + 1)]
        for endpoint_id, reading in readings.items():
            requests, failed, latency, buckets = _delta(reading, self._last.get(endpoint_id))
            points[endpoint_id] = _point(requests, failed, latency, buckets, seconds)
            total[0] += requests
            total[1] += failed
            total[2] += latency
            if len(buckets) == len(total[3]):
                total[3] = [x + y for x, y in zip(total[3], buckets)]
        self._samples.append((now, _point(*total, seconds), points))
        self._last = readings
        self._last_time = now
        return now

    def view(self, names=None, endpoint_ids=None, top=DEFAULT_TOP):
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
        seen = {}
        for _, _, points in samples:
            for endpoint_id, point in points.items():
                seen[endpoint_id] = seen.get(endpoint_id, 0) + point[0]
        if endpoint_ids is not None:
            chosen = [eid for eid in endpoint_ids if eid in seen or eid in names]
        else:
            chosen = sorted(seen, key=lambda eid: (-seen[eid], eid))[:top]
        endpoints = []
        for endpoint_id in chosen:
            series = {name: [] for name in SERIES}
            for _, _, points in samples:
                point = points.get(endpoint_id)
                for i, name in enumerate(SERIES):
                    series[name].append(point[i] if point is not None else None)
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
