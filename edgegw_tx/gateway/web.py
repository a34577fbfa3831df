"""
The lean twisted.web front of the data plane.

One leaf resource takes every path and method, turns the twisted.web request
into a ``GatewayRequest`` and writes the ``GatewayResponse`` back.  All routing,
404/405 and error bodies are the dispatcher's, so a faster HTTP layer can
replace this module without changing behaviour.

Notes:

* twisted.web reads the whole request body (memory, then a temporary file
  above 100 KiB) before ``render`` runs; a body size limit has to live in the
  HTTP layer and is a later issue.
* If the client disconnects before the answer is ready, nothing is written;
  the target's Deferred is not cancelled (the pool owns its requests).
* ``Server: edgegw`` replaces twisted.web's default unless the handler sets
  its own; twisted.web's default ``Content-Type: text/html`` is disabled.
* Reason phrases come from the gateway's one table, ``edgegw_tx.reasons``
  (twisted.web's lacks 422 and 429, and would say "Unknown Status").
* Routing ambiguity is refused as by the httptools front (RFC 9112 §3.2):
  two ``Host`` fields, none on HTTP/1.1 or an invalid one are a 400; an absolute-form target
  is routed by its authority.  (twisted.web itself refuses HTTP versions
  other than 1.0/1.1 and transfer codings other than chunked.)
* Observed (the dispatcher's ``Observer``, gateway/observe.py): this layer's
  own 400s are counted under endpoint ``""`` and logged, with an
  ``x-request-id``; what twisted.web refuses before ``render`` (a malformed
  request line) never reaches this resource and is not.  ``GatewaySite``
  keeps its open connections in ``connections``, as the httptools front
  does, for ``edgegw_http_connections``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from typing import Any

from twisted.internet.interfaces import ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from edgegw_tx.gateway.dispatch import Dispatcher, GatewayRequest, GatewayResponse
from edgegw_tx.gateway.target import valid_host
from edgegw_tx.reasons import reason_phrase

__all__ = ["GatewayResource", "GatewaySite"]

_SERVER = [b"edgegw"]
_NO_LENGTH = frozenset({204, 304})
_INTERNAL = b'{"error": "internal error while writing the response"}'


def _refuse(request: Request, message: str, dispatcher: Dispatcher) -> bytes:
    """Answer a request the front will not dispatch with 400 and ``message``."""
    request.setResponseCode(400, reason_phrase(400))
    headers = request.responseHeaders
    headers.setRawHeaders(b"content-type", [b"application/json"])
    headers.setRawHeaders(b"server", _SERVER)
    body = b'{"error": "%s"}' % message.encode("ascii")
    observer = dispatcher.observer
    if observer is not None:
        request_id = dispatcher.new_request_id()
        headers.setRawHeaders(b"x-request-id", [request_id.encode("ascii")])
        agent = request.requestHeaders.getRawHeaders(b"user-agent")
        content = request.content
        observer.rejected(
            request_id,
            getattr(request.getClientAddress(), "host", None),
            request.method.decode("latin-1"),
            request.path.decode("utf-8", "replace"),
            400,
            content.seek(0, 2) if content is not None else 0,  # its size
            len(body),
            0.0,
            agent[0].decode("utf-8", "replace") if agent else None,
        )
    return body


class GatewayResource(Resource):
    """Every request, whatever its path, goes to the dispatcher."""

    isLeaf = True
    _log = Logger()

    def __init__(self, dispatcher: Dispatcher) -> None:
        Resource.__init__(self)
        self._dispatcher = dispatcher
        self._dispatch = dispatcher.dispatch

    def render(self, request: Request) -> object:
        """Build the ``GatewayRequest``, dispatch it, answer when it fires."""
        uri = request.uri
        mark = uri.find(b"?")
        hosts = request.requestHeaders.getRawHeaders(b"host")
        if hosts is None:
            if request.clientproto == b"HTTP/1.1":
                return _refuse(request, "an HTTP/1.1 request needs a Host header field", self._dispatcher)
            host = None
        elif len(hosts) > 1:
            return _refuse(request, "more than one Host header field", self._dispatcher)
        else:
            host = hosts[0]
            if not valid_host(host):
                return _refuse(request, "the Host header field is not a host name or address with a port", self._dispatcher)
        path = request.path
        headers = [
            (name, value)
            for name, values in request.requestHeaders.getAllRawHeaders()
            for value in values
        ]
        if path[:1] != b"/" and path != b"*":
            # Absolute form: its authority is the host (RFC 9112 §3.2.2).
            target = urlsplit(uri)
            if target.scheme.lower() not in (b"http", b"https") or not target.hostname:
                return _refuse(request, "the request target is neither a path nor an http(s) URL", self._dispatcher)
            if target.username is not None:
                return _refuse(request, "the request target has a userinfo part", self._dispatcher)
            host, path = target.netloc, target.path or b"/"
            headers = [(n, v) for n, v in headers if n.lower() != b"host"] + [(b"host", host)]
        address = request.getClientAddress()
        content = request.content
        gateway_request = GatewayRequest(
            request.method.decode("latin-1"),
            host.decode("latin-1") if host is not None else None,
            path.decode("utf-8", "replace"),
            uri[mark + 1 :] if mark != -1 else b"",
            headers,
            content.read() if content is not None else b"",
            getattr(address, "host", None),
        )
        request.defaultContentType = None
        d = self._dispatch(gateway_request)
        d.addCallbacks(self._respond, self._crashed, callbackArgs=(request,), errbackArgs=(request,))
        return NOT_DONE_YET

    @staticmethod
    def _respond(response: GatewayResponse, request: Request) -> None:
        # A client gone before the answer is ready gets nothing written.  The
        # request's own flag is checked rather than a notifyFinish() Deferred
        # per request: one Deferred fewer on the hot path.
        if request._disconnected:
            return
        status = response.status
        body = response.body
        request.setResponseCode(status, reason_phrase(status))
        headers = request.responseHeaders
        headers.removeHeader(b"server")
        for name, value in response.headers:
            headers.addRawHeader(name, value)
        if not headers.hasHeader(b"server"):
            headers.setRawHeaders(b"server", _SERVER)
        if status >= 200 and status not in _NO_LENGTH:
            headers.setRawHeaders(b"content-length", [b"%d" % len(body)])
        if body:
            request.write(body)
        request.finish()

    def _crashed(self, failure: Failure, request: Request) -> None:
        """Last resort: the dispatcher never fails, so this is a bug here."""
        self._log.failure("writing the response failed", failure)
        if request._disconnected or request.finished:
            return
        if not request.startedWriting:
            request.setResponseCode(500)
            headers = request.responseHeaders
            headers.setRawHeaders(b"content-type", [b"application/json"])
            headers.setRawHeaders(b"content-length", [b"%d" % len(_INTERNAL)])
            request.write(_INTERNAL)
        request.finish()


class _CountedChannel(_GenericHTTPChannelProtocol):
    """
    twisted.web's channel (the proxy ``Site`` builds by default, which would
    switch to HTTP/2 after ALPN) that is in its site's ``connections`` from
    ``makeConnection`` to ``connectionLost``: counted on the proxy, not on
    the HTTP/1.1 channel behind it, so a connection counts once whatever
    protocol it ends up speaking.
    """

    def __init__(self, connections: set[_CountedChannel]) -> None:
        super().__init__(HTTPChannel())
        self._connections = connections

    def makeConnection(self, transport: ITransport) -> None:
        """Counted from here on."""
        self._connections.add(self)
        super().makeConnection(transport)

    def connectionLost(self, reason: Failure) -> None:
        """Counted no more."""
        self._connections.discard(self)
        super().connectionLost(reason)


def _counted_channel(site: GatewaySite) -> _CountedChannel:
    """``GatewaySite.protocol``: what ``Factory.buildProtocol`` calls (as ``Site``'s default is called)."""
    return _CountedChannel(site.connections)


class GatewaySite(Site):
    """
    The twisted.web front's ``Site``: ``connections`` is the set of its open
    connections, read by ``edgegw_http_connections`` as the httptools
    front's ``GatewayHTTPFactory.connections`` is. Everything else is
    ``Site``'s own (its ``buildProtocol`` sets up each channel).
    """

    protocol = _counted_channel  # a factory function, as Site's own default

    def __init__(self, resource: Resource, reactor: Any = None) -> None:
        Site.__init__(self, resource, reactor=reactor)
        self.connections: set[_CountedChannel] = set()
