"""
The data plane's HTTP front, chosen by name (``--http``): the one place that
knows both, so the control process (one process) and each data-plane process
(``--processes`` N) build the same thing.
"""

from __future__ import annotations

from typing import Any

from edgegw_tx.gateway.dispatch import Dispatcher
from edgegw_tx.gateway.observe import Observer

DEFAULT_HTTP = "httptools"
"""The data plane's HTTP layer unless ``--http`` says otherwise."""

HTTP_LAYERS = ("httptools", "twisted")


def data_plane_factory(
    http: str | None,
    routes: Any,
    reactor: Any,
    limits: dict[str, Any] | None = None,
    observer: Observer | None = None,
) -> Any:
    """
    The server factory answering public traffic from the route table
    ``routes``: ``"httptools"`` (``edgegw_tx.gateway.http``) or ``"twisted"``
    (the twisted.web resource of ``edgegw_tx.gateway.web``).

    ``limits`` are keyword arguments of ``GatewayHTTPFactory`` (``max_body``,
    ``max_headers``, ``max_head``, ``header_timeout``, ``body_timeout``,
    ``idle_timeout``: the
    ``--max-body`` ... options, docs/limits.md); the twisted.web front keeps
    twisted.web's own.  ``observer`` records every answer (metrics, access
    log, trace context, health path: gateway/observe.py).

    :raises ValueError: an unknown HTTP layer.
    """
    if http is None:
        http = DEFAULT_HTTP
    if http == "httptools":
        from edgegw_tx.gateway.http import GatewayHTTPFactory

        return GatewayHTTPFactory(Dispatcher(routes, observer=observer), reactor=reactor, **(limits or {}))
    if http == "twisted":
        from edgegw_tx.gateway.web import GatewayResource, GatewaySite

        site = GatewaySite(GatewayResource(Dispatcher(routes, observer=observer)), reactor=reactor)
        site.displayTracebacks = False
        site.noisy = False
        # No access log line per request on the data plane: it is the hot path.
        site.log = lambda request: None  # type: ignore[method-assign]  # this site's own, not every Site's
        return site
    raise ValueError(f"unknown HTTP layer {http!r}: httptools or twisted")
