"""
A short history of the request counters, for the Admin UI's dashboard charts.

The counters are the data plane's own (``observability/metrics.py``
``RequestMetrics``, the ones ``/metrics`` exposes): there is no second
bookkeeping. Every ``interval`` seconds (5 by default) a sample reads every
data plane's ``plane_snapshot()`` (this process's, or one per data-plane
process with ``--processes N``) and keeps, per running endpoint, what happened
since the sample before: requests answered, those answered with a 5xx status
(``failed``), and the mean and median (p50) time of the answers. The median
comes from the duration histogram's buckets (``DURATION_BUCKETS``),
interpolated inside the bucket where it falls, so it is an estimate within
that bucket's bounds. Which endpoints run, and their names, come from the
running pools; an endpoint that is not running has no value (null) in that
sample. The samples of the last ``window`` seconds (15 minutes) are kept.

Counters are cumulative per process and endpoint name, so each data plane's
are compared with its own reading before (by ``pid``): a process that is new
(a respawn) counts whole, one that did not answer counts in the next sample
it answers, and a reading lower than the one before is taken as a restart
whose whole count falls in the interval.

The history survives a restart (:class:`HistoryService`): it is written to
``<data-dir>/stats-history.json`` every minute and at stop (a new file renamed
over the old one, in a thread) and read back at start, less the samples older
than the window; a file that cannot be read is ignored, with a log line.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from edgegw_tx.observability.metrics import DURATION_BUCKETS, merge_snapshots

DEFAULT_INTERVAL = 5.0
DEFAULT_WINDOW = 900.0
DEFAULT_TOP = 10
MAX_TOP = 100
SERIES = ("requests", "failed", "rate", "mean_ms", "p50_ms")
#: The file in the data directory that keeps the history across a restart.
HISTORY_FILE = "stats-history.json"
#: Seconds between two writes of that file while running.
SAVE_INTERVAL = 60.0
_FORMAT = 1

Reading = tuple[int, int, float, list[int]]
"""One endpoint's counters, cumulative: (requests, failed, seconds, duration buckets)."""

Point = tuple[int, int, float | None, float | None, float | None]
"""A stored sample of one endpoint, in the order of ``SERIES``."""

Sample = tuple[float, Point, dict[str, Point]]
"""(time, the gateway's point, {endpoint_id: point})."""

Plane = Mapping[str, Any]
"""``plane_snapshot()`` of one data plane: ``pid`` and ``requests``, ``RequestMetrics.snapshot()``."""

_T = TypeVar("_T")


def median_ms(buckets: Sequence[int], bounds: Sequence[float] = DURATION_BUCKETS) -> float | None:
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


def reading(series: Mapping[str, Any]) -> Reading:
    """(requests, failed, seconds, buckets) of one endpoint's ``EndpointSeries.snapshot()``."""
    requests = failed = 0
    for _method, status, count in series["counts"]:
        requests += count
        if status >= 500:
            failed += count
    buckets, seconds = series["duration"]
    return requests, failed, float(seconds), [int(b) for b in buckets]


def _add(one: Reading, other: Reading) -> Reading:
    """Two readings (or deltas) added up."""
    buckets = [x + y for x, y in zip(one[3], other[3])] if len(one[3]) == len(other[3]) else one[3]
    return one[0] + other[0], one[1] + other[1], one[2] + other[2], buckets


def _numbers(counted: Reading) -> dict[str, Any]:
    """``served``, ``failed`` (5xx), ``mean_ms`` and ``p50_ms`` of a cumulative reading."""
    requests, failed, seconds, buckets = counted
    return {
        "served": requests,
        "failed": failed,
        "mean_ms": round(seconds / requests * 1000.0, 3) if requests else None,
        "p50_ms": median_ms(buckets) if requests else None,
    }


def request_totals(planes: Iterable[Plane], ids: Mapping[str, str] | None = None) -> dict[str, Any]:
    """
    The request numbers of ``GET /api/stats``: every data plane's counters
    added up as ``/metrics`` adds them (``merge_snapshots``), so ``served``
    is the sum of ``edgegw_http_requests_total`` and of ``by_endpoint``'s
    ``served``, the gateway's own answers (endpoint ``""``) included.
    ``by_endpoint`` has one entry per endpoint name counted, by name, with
    the endpoint's id from ``ids`` (``{name: id}``; null when none).
    """
    ids = ids or {}
    merged = merge_snapshots(plane.get("requests") or {} for plane in planes)
    total: Reading = (0, 0, 0.0, [0] * (len(DURATION_BUCKETS) + 1))
    by_endpoint = []
    for name, series in sorted(merged.items()):
        counted = reading(series)
        total = _add(total, counted)
        by_endpoint.append({"endpoint": name, "id": ids.get(name) if name else None, **_numbers(counted)})
    return {**_numbers(total), "by_endpoint": by_endpoint}


def _plane_keys(planes: Sequence[Plane]) -> list[str]:
    """What tells each data plane from the others and from the one before it: its pid (then its place)."""
    seen: dict[str, int] = {}
    keys = []
    for plane in planes:
        base = str(plane.get("pid", "?"))
        n = seen[base] = seen.get(base, -1) + 1
        keys.append(f"{base}#{n}")
    return keys


def _delta(now: Reading, before: Reading | None) -> Reading:
    """What happened between two readings of one endpoint (all of ``now`` after a restart)."""
    requests, failed, seconds, buckets = now
    if before is not None:
        b_requests, b_failed, b_seconds, b_buckets = before
        reset = (
            requests < b_requests
            or failed < b_failed
            or len(buckets) != len(b_buckets)
            or any(x < y for x, y in zip(buckets, b_buckets))
        )
        if not reset:
            return (
                requests - b_requests,
                failed - b_failed,
                max(0.0, seconds - b_seconds),
                [x - y for x, y in zip(buckets, b_buckets)],
            )
    return now


def _point(requests: int, failed: int, seconds: float, buckets: Sequence[int], interval: float) -> Point:
    """The stored sample of one endpoint: (requests, failed, rate, mean_ms, p50_ms)."""
    rate = round(requests / interval, 3) if interval > 0 else None
    mean = round(seconds / requests * 1000.0, 3) if requests else None
    return (requests, failed, rate, mean, median_ms(buckets) if requests else None)


def running_endpoints(pool_stats: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{endpoint_id: name}`` of ``EndpointManager.pool_stats_by_endpoint()`` (the running pools)."""
    return {endpoint_id: str(stats.get("name", "")) for endpoint_id, stats in pool_stats.items()}


class StatsHistory:
    """The samples of the last ``window`` seconds (see the module docstring)."""

    log = Logger()

    def __init__(
        self,
        planes: Callable[[], Sequence[Plane] | Deferred[Any]],
        running: Callable[[], Mapping[str, str]],
        clock: IReactorTime,
        refresh: Callable[[], object] | None = None,
        interval: float = DEFAULT_INTERVAL,
        window: float = DEFAULT_WINDOW,
    ) -> None:
        """
        ``planes()`` answers (or fires with) every data plane's
        ``plane_snapshot()``; ``running()`` answers ``{endpoint_id: name}`` of
        the running endpoints (see ``running_endpoints``); ``refresh()`` ->
        Deferred brings those up to date first (several data-plane
        processes); ``clock`` gives the time of each sample.
        """
        self._planes = planes
        self._running = running
        self._refresh = refresh
        self._clock = clock
        self.interval = interval
        self.window = window
        self._samples: deque[Sample] = deque(maxlen=max(1, int(round(window / interval))))
        # plane key -> (when it last answered, {endpoint name: its reading then})
        self._last: dict[str, tuple[float, dict[str, Reading]]] = {}
        self._last_time: float | None = None

    def sample(self) -> Deferred[float | None]:
        """
        Take one sample (after ``refresh``); a Deferred that never fails: an
        error is logged and the sample skipped, so a timer goes on.
        """
        d: Deferred[Any] = maybeDeferred(self._refresh) if self._refresh is not None else succeed(None)
        d.addCallback(lambda _: maybeDeferred(self._planes))
        taken = d.addCallback(self._take)
        return taken.addErrback(lambda f: self.log.failure("Taking a stats sample failed", f))

    def _take(self, planes: Sequence[Plane]) -> float:
        now = self._clock.seconds()
        seconds = now - self._last_time if self._last_time is not None else self.interval
        running = self._running()
        empty = [0] * (len(DURATION_BUCKETS) + 1)
        sums: dict[str, Reading] = {eid: (0, 0, 0.0, empty) for eid in running}
        for key, plane in zip(_plane_keys(planes), planes):
            before = self._last.get(key, (now, {}))[1]
            readings = {name: reading(series) for name, series in (plane.get("requests") or {}).items()}
            for endpoint_id, name in running.items():
                found = readings.get(name)
                if found is not None:
                    sums[endpoint_id] = _add(sums[endpoint_id], _delta(found, before.get(name)))
            self._last[key] = (now, readings)
        # Planes gone for a window (respawned processes) are forgotten.
        for key in [k for k, (when, _) in self._last.items() if when < now - self.window]:
            del self._last[key]
        points: dict[str, Point] = {}
        total: Reading = (0, 0, 0.0, empty)
        for endpoint_id, counted in sums.items():
            points[endpoint_id] = _point(*counted, seconds)
            total = _add(total, counted)
        self._samples.append((now, _point(*total, seconds), points))
        self._last_time = now
        return now

    def planes(self) -> Deferred[Sequence[Plane]]:
        """Every data plane's ``plane_snapshot()`` now, as a sample reads them (``GET /api/stats``)."""
        d: Deferred[Any] = succeed(None)  # _planes may answer a list or a Deferred of one
        return d.addCallback(lambda _: self._planes())

    def samples(self) -> list[Sample]:
        """The samples kept, oldest first (each one is never changed once taken)."""
        return list(self._samples)

    def restore(self, samples: Iterable[Sample]) -> int:
        """
        Put back ``samples`` saved by an earlier run, before those taken since,
        less those older than the window; how many were kept.
        """
        taken = list(self._samples)
        oldest_kept = self._clock.seconds() - self.window
        first_taken = taken[0][0] if taken else float("inf")
        older = [s for s in samples if oldest_kept <= s[0] < first_taken]
        older.sort(key=lambda s: s[0])
        self._samples.clear()
        self._samples.extend(older + taken)  # the deque keeps the newest
        return max(0, len(self._samples) - len(taken))

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


def encode(samples: Iterable[Sample], interval: float) -> bytes:
    """The history file's content: JSON, one ``[time, total, {endpoint_id: point}]`` per sample."""
    document = {
        "format": _FORMAT,
        "interval": interval,
        "samples": [[when, list(total), {eid: list(p) for eid, p in points.items()}] for when, total, points in samples],
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 and value != float("inf")


def _decode_point(value: Any) -> Point:
    """One point of the file, checked: two counts, then three measures or nulls."""
    if not isinstance(value, list) or len(value) != len(SERIES):
        raise ValueError(f"a point is not a list of {len(SERIES)} values")
    requests, failed, rate, mean, p50 = value
    if not (isinstance(requests, int) and isinstance(failed, int) and _number(requests) and _number(failed)):
        raise ValueError("a point's requests and failed are not counts")
    for measure in (rate, mean, p50):
        if measure is not None and not _number(measure):
            raise ValueError("a point's rate, mean_ms and p50_ms are not numbers or null")
    return (requests, failed, rate, mean, p50)


def decode(data: bytes) -> list[Sample]:
    """The samples of a history file; ValueError when it is not one (bad JSON, another format, a bad value)."""
    document = json.loads(data)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise ValueError(f"not a stats history of format {_FORMAT}")
    samples = document.get("samples")
    if not isinstance(samples, list):
        raise ValueError("no list of samples")
    out: list[Sample] = []
    for sample in samples:
        if not isinstance(sample, list) or len(sample) != 3:
            raise ValueError("a sample is not [time, total, endpoints]")
        when, total, points = sample
        if not _number(when) or not isinstance(points, dict):
            raise ValueError("a sample has no time or no endpoints")
        if not all(isinstance(eid, str) for eid in points):
            raise ValueError("an endpoint id is not a string")
        out.append((float(when), _decode_point(total), {eid: _decode_point(p) for eid, p in points.items()}))
    return out


def read_file(path: str) -> list[Sample] | None:
    """The samples saved at ``path``; None when there is no file; ValueError or OSError when unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return decode(data)


def write_file(path: str, samples: list[Sample], interval: float) -> None:
    """
    Write ``samples`` to ``path`` whole or not at all: a new file beside it,
    flushed to disk, renamed over it (readable by its owner only).
    """
    data = encode(samples, interval)
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


class HistoryService(Service):
    """
    Takes ``history``'s samples every ``history.interval`` seconds, and keeps
    them across a restart in the file ``path``: read back at start, written
    every ``save_interval`` seconds and at stop (after a last sample). File
    work runs in the reactor's thread pool (inline on a reactor without
    one, as in unit tests); its errors are logged, never raised.
    """

    log = Logger()

    def __init__(self, history: StatsHistory, path: str, reactor: Any, save_interval: float = SAVE_INTERVAL) -> None:
        self.history = history
        self.path = path
        self.save_interval = save_interval
        self._reactor = reactor
        self._lock = DeferredLock()  # one write at a time, in the order asked
        self._loading: Deferred[None] = succeed(None)
        self._sampling = LoopingCall(history.sample)
        self._sampling.clock = reactor
        self._saving = LoopingCall(self.save)
        self._saving.clock = reactor

    def _in_thread(self, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        pool = getattr(self._reactor, "getThreadPool", None)
        if pool is None:
            return maybeDeferred(f, *args)
        return deferToThreadPool(self._reactor, pool(), f, *args)

    def startService(self) -> None:
        """Read the saved history back (in a thread), start sampling and saving."""
        Service.startService(self)
        self._loading = self._in_thread(read_file, self.path).addCallbacks(self._loaded, self._unreadable)
        self._sampling.start(self.history.interval, now=False)
        self._saving.start(self.save_interval, now=False)

    def _loaded(self, samples: list[Sample] | None) -> None:
        if samples is not None:
            kept = self.history.restore(samples)
            self.log.info("Stats history: {kept} samples read back from {path}", kept=kept, path=self.path)

    def _unreadable(self, failure: Any) -> None:
        """A file that cannot be read or is not a history: start empty, say so (it is overwritten at the next save)."""
        self.log.warn(
            "Ignoring the stats history in {path}, which cannot be read: {why}", path=self.path, why=failure.getErrorMessage()
        )

    def save(self) -> Deferred[None]:
        """Write the samples now (in a thread, after any write under way); never fails, errors are logged."""
        samples = self.history.samples()
        d: Deferred[None] = self._lock.run(self._in_thread, write_file, self.path, samples, self.history.interval)
        d.addErrback(lambda f: self.log.failure("Saving the stats history to {path} failed", f, path=self.path))
        return d

    def stopService(self) -> Deferred[None]:
        """Stop the timers, take a last sample and write the file."""
        Service.stopService(self)
        for loop in (self._sampling, self._saving):
            if loop.running:
                loop.stop()
        d = self._loading
        d.addCallback(lambda _: self.history.sample())
        d.addCallback(lambda _: self.save())
        return d
