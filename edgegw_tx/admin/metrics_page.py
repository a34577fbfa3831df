"""
``GET /metrics``: the Prometheus text format of the gateway's metrics
(observability/exposition.py).

On the admin listener it is protected like the API (any key scope, sent as
``Authorization: Bearer <key>``, which is how Prometheus sends its
``authorization`` credentials); ``--metrics-listen`` serves the same page
without a key on an endpoint of its own for scrapers that cannot send one.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from edgegw_tx.observability.exposition import CONTENT_TYPE, Metrics

#: ``authorize(request)``: None to serve, or the bytes of the refusal it already answered (401 ...).
Authorize = Callable[[Request], Optional[bytes]]


class MetricsPage(Resource):
    """The scrape: gathers the counters (maybe from the data-plane processes) and renders them."""

    isLeaf = True
    log = Logger()

    def __init__(self, metrics: Metrics, authorize: Optional[Authorize] = None) -> None:
        """``authorize`` checks the request's key (None: anyone may read, ``--metrics-listen``)."""
        Resource.__init__(self)
        self._metrics = metrics
        self._authorize = authorize

    def render_GET(self, request: Request) -> bytes | int:
        """The text format, or the refusal of ``authorize``."""
        if self._authorize is not None:
            refused = self._authorize(request)
            if refused is not None:
                return refused
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = self._metrics.scrape()
        d.addCallbacks(self._answer, self._failed, callbackArgs=(request, gone), errbackArgs=(request, gone))
        return NOT_DONE_YET

    def _answer(self, text: bytes, request: Request, gone: list[bool]) -> None:
        if gone:
            return
        request.setHeader(b"content-type", CONTENT_TYPE.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        request.write(text)
        request.finish()

    def _failed(self, failure: Failure, request: Request, gone: list[bool]) -> None:
        self.log.failure("rendering /metrics failed", failure)
        if gone:
            return
        request.setResponseCode(500)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.write(b"the gateway failed to render its metrics; see its log\n")
        request.finish()


def metrics_root(metrics: Metrics) -> Resource:
    """The root of ``--metrics-listen``: ``/metrics`` without a key, 404 elsewhere."""
    root = Resource()
    page: Any = MetricsPage(metrics)
    root.putChild(b"metrics", page)
    return root
