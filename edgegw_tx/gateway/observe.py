"""
What the data plane records of each request it answers (issue 17): the
request counters (``RequestMetrics``), the access log (``AccessLog``), the
trace context (``TraceContext``) and the health path, for both HTTP layers.

One ``Observer`` per data-plane process, handed to its ``Dispatcher`` (which
sees every routed answer) and to its HTTP layer (which answers a malformed or
oversized request itself, without the dispatcher).  Per request this costs a
few attribute and int operations plus, when the access log is on, one dict
appended to a list: everything else happens at scrape time or in the access
log's writer thread.

The health path (``--health-path``, default ``/healthz``) is answered before
routing, so it wins over a user route of the same path: 200 while the node
serves, 503 while its routes are being restored (starting) or once shutdown
has begun (draining), so a load balancer takes the node out first. With
``--shutdown-delay SECONDS`` the data plane goes on serving requests for that
long after draining begins, so the balancer has time to notice the 503s
before the listeners close.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from edgegw_tx.observability.accesslog import LineWriter, duration_ms
from edgegw_tx.observability.metrics import EndpointSeries, RequestMetrics
from edgegw_tx.observability.trace import TraceContext

__all__ = [
    "DEFAULT_HEALTH_PATH",
    "DEFAULT_SHUTDOWN_DELAY",
    "Observer",
    "health_path_option",
    "shutdown_delay_option",
]

DEFAULT_HEALTH_PATH = "/healthz"
"""The data plane's health path unless ``--health-path`` says otherwise."""

DEFAULT_SHUTDOWN_DELAY = 0.0
"""Seconds the data plane serves on after draining begins unless ``--shutdown-delay`` says otherwise."""

_JSON = ("content-type", "application/json")


def health_path_option(value: str) -> str | None:
    """
    The ``--health-path`` value as the data plane uses it: None for ``none``
    (no health path), else an absolute path.

    :raises ValueError: a value that is not ``none`` and not a path.
    """
    if value.strip().lower() == "none":
        return None
    if not value.startswith("/") or any(c in value for c in "?# \t\r\n"):
        raise ValueError(
            f"--health-path must be an absolute path such as /healthz, or none; got {value!r}"
        )
    return value


def shutdown_delay_option(value: str) -> float:
    """
    The ``--shutdown-delay`` value in seconds: a finite number, 0 or more.

    :raises ValueError: anything else, naming the option.
    """
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"--shutdown-delay must be a number of seconds, 0 or more; got {value!r}")
    return seconds


class Observer:
    """
    The per-request bookkeeping of one data plane.

    :param metrics: the counters every answer is recorded in.
    :param seconds: the clock of durations and log times (``reactor.seconds``).
    :param access_log: where one line per answer goes; None: no access log.
    :param trace: the trace context (a new ``TraceContext`` by default).
    :param health_path: the path answered with the node's health; None: none.
    :param restoring: tells whether the routes are still being restored
        (the route table's ``restoring``).

    :ivar draining: set once shutdown has begun: the health path answers 503.
    """

    def __init__(
        self,
        metrics: RequestMetrics,
        seconds: Callable[[], float],
        *,
        access_log: LineWriter | None = None,
        trace: TraceContext | None = None,
        health_path: str | None = DEFAULT_HEALTH_PATH,
        restoring: Callable[[], bool] = lambda: False,
    ) -> None:
        self.metrics = metrics
        self.seconds = seconds
        self.access_log = access_log
        trace = trace if trace is not None else TraceContext()
        self.for_request = trace.for_request
        #: ``traceparent(header or None) -> str``: the outgoing traceparent.
        self.traceparent = trace.traceparent
        self.health_path = health_path
        self.restoring = restoring
        self.draining = False
        #: The series of answers that matched no route (endpoint ``""``).
        self.unrouted: EndpointSeries = metrics.series("")

    def series_of(self, target: object) -> EndpointSeries:
        """
        The series of the endpoint ``target`` (a worker pool) serves, by its
        ``name``; remembered on the target as ``_edgegw_series`` (this
        observer, the series) so the dispatcher finds it with one attribute
        read per request.
        """
        series = self.metrics.series(getattr(target, "name", None) or "")
        try:
            target._edgegw_series = (self, series)  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            pass  # a target with __slots__: looked up by name each time
        return series

    def health(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """The health path's status, header fields and body right now."""
        if self.draining:
            state, status = "draining", 503
        elif self.restoring():
            state, status = "starting", 503
        else:
            state, status = "serving", 200
        headers = [_JSON, ("cache-control", "no-store")]
        if status == 503:
            headers.append(("retry-after", "1"))
        return status, headers, json.dumps({"status": state}).encode("ascii")

    def log(
        self,
        now: float,
        request_id: str | None,
        client: str | None,
        method: str,
        path: str,
        status: int,
        endpoint: str,
        version: str | None,
        bytes_in: int,
        bytes_out: int,
        seconds: float,
        user_agent: str | None,
        traceparent: str | None,
    ) -> None:
        """One access-log line (when the access log is on), fields as ``accesslog.FIELDS``."""
        access_log = self.access_log
        if access_log is not None:
            access_log.write(
                {
                    "time": now,
                    "request_id": request_id,
                    "client": client,
                    "method": method,
                    "path": path,
                    "status": status,
                    "endpoint": endpoint,
                    "version": version[:12] if version else None,
                    "bytes_in": bytes_in,
                    "bytes_out": bytes_out,
                    "duration_ms": duration_ms(seconds),
                    "user_agent": user_agent,
                    "traceparent": traceparent,
                }
            )

    def rejected(
        self,
        request_id: str,
        client: str | None,
        method: str,
        path: str,
        status: int,
        bytes_in: int,
        bytes_out: int,
        seconds: float,
        user_agent: str | None,
    ) -> None:
        """
        Record an answer the HTTP layer gave itself (400, 408, 413, 431, 503
        while shutting down ...): endpoint ``""``, no trace.
        """
        self.unrouted.record(method, status, bytes_in, bytes_out, seconds)
        if self.access_log is not None:
            self.log(
                self.seconds(), request_id, client, method, path, status, "", None,
                bytes_in, bytes_out, seconds, user_agent, None,
            )

