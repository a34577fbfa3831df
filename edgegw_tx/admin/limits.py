"""
The management API listener's limits, enforced while the request is read:
the body cap, the header and body timeouts, and reason phrases that name
every status.

twisted.web reads a whole request body (into memory, or a temporary file
above 100 KB) before the API sees it, so a cap checked by the API alone still
lets a client make the gateway store gigabytes.  ``CappedRequest`` refuses a
declared ``Content-Length`` over the cap as soon as the header fields are in,
and a chunked body the moment it passes the cap: 413 with a JSON error, and
the connection closed.  Import routes get the larger cap that bundles need.

twisted.web's own ``timeOut`` is an idle timeout, reset by every byte, so a
client trickling a request a byte at a time would hold its connection (and a
request object) forever.  ``AdminChannel`` gives each request head a deadline
instead: ``header_timeout`` seconds from the connection's start, or from the
first byte of a later request, to the end of its header fields; and each body
``body_timeout`` seconds from the end of its head to its last byte.  Past
either the answer is 408 with a JSON error and the connection is closed, like
the data plane's ``--header-timeout`` and ``--body-timeout``.  The time the API
takes to answer (a compile) does not count.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from edgegw_tx.reasons import reason_phrase

MAX_BODY = 8 * 1024 * 1024
"""The cap on a management API request body, in bytes."""

IMPORT_MAX_BODY = 64 * 1024 * 1024
"""The cap for ``/api/import/...`` (OpenAPI documents, zip bundles)."""

MAX_JSON_DEPTH = 64
"""The most arrays and objects a JSON request body may nest inside each other (400 above)."""

HEADER_TIMEOUT = 10.0
"""Seconds a request head may take on the management API's listener (408 after)."""

BODY_TIMEOUT = 300.0
"""
Seconds a request body may take once its head is in (408 after): generous,
since an import may upload 64 MiB over a slow link.
"""

_IMPORT_PREFIX = b"/api/import/"


class AdminSite(Site):
    """A ``Site`` that carries the limits its channels and requests read (``admin_site``)."""

    def __init__(
        self,
        resource: Resource,
        reactor: Any,
        *,
        max_body: int,
        import_max_body: int,
        header_timeout: float,
        body_timeout: float,
    ) -> None:
        # Bodies are the API's to read (a malformed form would get Twisted's bare 400).
        Site.__init__(self, resource, reactor=reactor, parsePOSTFormSubmission=False)
        self.max_body = max_body
        self.import_max_body = import_max_body
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout


class CappedRequest(Request):
    """A request whose body may not pass its site's cap (``max_body``, ``import_max_body``)."""

    channel: AdminChannel
    _refused = False
    _received = 0

    def _cap(self) -> int:
        site = self.channel.site
        # The request line is parsed before the headers; twisted.web keeps its
        # target on the channel until the body is in.
        target = getattr(self.channel, "_path", b"") or b""
        if target.startswith(_IMPORT_PREFIX):
            return site.import_max_body
        return site.max_body

    def gotLength(self, length: int | None) -> None:
        Request.gotLength(self, length)
        if length is not None and length > self._cap():
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._cap():
            self._refuse()
            return
        Request.handleContentChunk(self, data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return  # answered already; the connection is closing
        Request.requestReceived(self, command, path, version)

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        """
        The reason phrase from the gateway's one table (``edgegw_tx.reasons``): twisted.web's
        lacks 422 and 429 (among others) and would send "Unknown Status".
        """
        if message is None:
            message = reason_phrase(code)
        super().setResponseCode(code, message)

    def _refuse(self) -> None:
        self._refused = True
        cap = self._cap()
        _refuse(self.channel, 413, f"the request body is larger than {cap} bytes")


class AdminChannel(HTTPChannel):
    """
    An ``HTTPChannel`` whose request heads must be complete within the site's
    ``header_timeout``, and bodies within its ``body_timeout`` once the head is in.
    """

    site: AdminSite  # set by the site's buildProtocol
    _deadline: IDelayedCall | None = None  # the DelayedCall of the part being received, if any

    def connectionMade(self) -> None:
        HTTPChannel.connectionMade(self)
        self._start("header")

    def dataReceived(self, data: bytes) -> None:
        # Between requests (line mode, none being handled) a byte begins a head.
        if self._deadline is None and self.line_mode and not self._handlingRequest:
            self._start("header")
        HTTPChannel.dataReceived(self, data)

    def allHeadersReceived(self) -> None:
        self._stop()
        HTTPChannel.allHeadersReceived(self)
        if self.length != 0:  # a Content-Length above 0, or chunked (None)
            self._start("body")

    def allContentReceived(self) -> None:
        self._stop()
        HTTPChannel.allContentReceived(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._stop()
        HTTPChannel.connectionLost(self, reason)

    def _start(self, part: str) -> None:
        timeout = self.site.header_timeout if part == "header" else self.site.body_timeout
        # Site.buildProtocol sets callLater to its reactor's, which takes arguments.
        self._deadline = self.callLater(timeout, self._timed_out, part, timeout)  # type: ignore[call-arg, no-untyped-call]

    def _stop(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _timed_out(self, part: str, timeout: float) -> None:
        self._deadline = None
        _refuse(self, 408, f"request {part} not received within {timeout:g} s")


def _refuse(channel: HTTPChannel, code: int, message: str) -> None:
    """Answer ``code`` with the API's JSON error, read nothing more and close the connection."""
    body = json.dumps({"ok": False, "error": message}).encode("utf-8")
    transport = channel.transport
    assert transport is not None, "refused while connected"
    transport.write(
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (code, reason_phrase(code), len(body), body)
    )
    channel.dataReceived = lambda data: None  # type: ignore[method-assign]  # this channel's only
    channel.loseConnection()


def admin_site(
    resource: Resource,
    reactor: Any,
    max_body: int = MAX_BODY,
    import_max_body: int = IMPORT_MAX_BODY,
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
) -> AdminSite:
    """The management API's ``Site``: capped bodies, timed heads, no tracebacks, no form parsing."""
    site = AdminSite(
        resource,
        reactor,
        max_body=max_body,
        import_max_body=max(import_max_body, max_body),
        header_timeout=header_timeout,
        body_timeout=body_timeout,
    )
    site.requestFactory = CappedRequest
    # No HTTP/2 is offered (the h2 package is not installed), so a plain channel loses nothing.
    site.protocol = AdminChannel  # type: ignore[assignment, method-assign]  # a channel class is its factory
    site.displayTracebacks = False
    site.noisy = False
    return site
