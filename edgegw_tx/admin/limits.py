"""
The management API listener's limits, enforced while the request is read:
the body cap and the header timeout.

twisted.web reads a whole request body (into memory, or a temporary file
above 100 KB) before the API sees it, so a cap checked by the API alone still
lets a client make the gateway store gigabytes.  L{CappedRequest} refuses a
declared ``Content-Length`` over the cap as soon as the header fields are in,
and a chunked body the moment it passes the cap: 413 with a JSON error, and
the connection closed.  Import routes get the larger cap that bundles need.

twisted.web's own C{timeOut} is an idle timeout, reset by every byte, so a
client trickling a request head a byte at a time would hold its connection
(and a request object) forever.  L{AdminChannel} gives each request head a
deadline instead: C{header_timeout} seconds from the connection's start, or
from the first byte of a later request, to the end of its header fields; past
it the answer is 408 with a JSON error and the connection is closed, like the
data plane's C{--header-timeout}.
"""

import json
from http import HTTPStatus
from typing import Any

from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

MAX_BODY = 8 * 1024 * 1024
"""The cap on a management API request body, in bytes."""

IMPORT_MAX_BODY = 64 * 1024 * 1024
"""The cap for ``/api/import/...`` (OpenAPI documents, zip bundles)."""

MAX_JSON_DEPTH = 64
"""The most arrays and objects a JSON request body may nest inside each other (400 above)."""

HEADER_TIMEOUT = 10.0
"""Seconds a request head may take on the management API's listener (408 after)."""

_IMPORT_PREFIX = b"/api/import/"


class CappedRequest(Request):
    """A request whose body may not pass its site's cap (C{max_body}, C{import_max_body})."""

    _refused = False
    _received = 0

    def _cap(self):
        site = self.channel.site
        # The request line is parsed before the headers; twisted.web keeps its
        # target on the channel until the body is in.
        target = getattr(self.channel, "_path", b"") or b""
        if target.startswith(_IMPORT_PREFIX):
            return site.import_max_body
        return site.max_body

    def gotLength(self, length):
        super().gotLength(length)
        if length is not None and length > self._cap():
            self._refuse()

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._cap():
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if self._refused:
            return  # answered already; the connection is closing
        super().requestReceived(command, path, version)

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        """
        The reason phrase from Python's C{http.HTTPStatus}, the one table: twisted.web's
        lacks 422 and 429 (among others) and would send "Unknown Status".
        """
        if message is None:
            message = _reason(code)
        super().setResponseCode(code, message)

    def _refuse(self):
        self._refused = True
        cap = self._cap()
        _refuse(self.channel, 413, f"the request body is larger than {cap} bytes")


class AdminChannel(HTTPChannel):
    """An C{HTTPChannel} whose request heads must be complete within the site's C{header_timeout}."""

    _head_timer = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_head_timer()

    def dataReceived(self, data: bytes) -> None:
        # Between requests (line mode, none being handled) a byte begins a head.
        if self._head_timer is None and self.line_mode and not self._handlingRequest:
            self._start_head_timer()
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._stop_head_timer()
        super().allHeadersReceived()

    def connectionLost(self, reason: Failure) -> None:
        self._stop_head_timer()
        super().connectionLost(reason)

    def _start_head_timer(self) -> None:
        self._head_timer = self.callLater(self.site.header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        timer, self._head_timer = self._head_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        _refuse(self, 408, f"request header not received within {self.site.header_timeout:g} s")


def _reason(code: int) -> bytes:
    """The standard reason phrase of C{code}, or C{b"Unknown Status"} for a code it has none for."""
    try:
        return HTTPStatus(code).phrase.encode("ascii")
    except ValueError:
        return b"Unknown Status"


def _refuse(channel: HTTPChannel, code: int, message: str) -> None:
    """Answer C{code} with the API's JSON error, read nothing more and close the connection."""
    body = json.dumps({"ok": False, "error": message}).encode("utf-8")
    channel.transport.write(
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (code, _reason(code), len(body), body)
    )
    channel.dataReceived = lambda data: None
    channel.loseConnection()


def admin_site(
    resource: Resource,
    reactor: Any,
    max_body: int = MAX_BODY,
    import_max_body: int = IMPORT_MAX_BODY,
    header_timeout: float = HEADER_TIMEOUT,
) -> Site:
    """The management API's L{Site}: capped bodies, timed heads, no tracebacks, no form parsing."""
    # Bodies are the API's to read (a malformed form would get Twisted's bare 400).
    site = Site(resource, reactor=reactor, parsePOSTFormSubmission=False)
    site.requestFactory = CappedRequest
    # No HTTP/2 is offered (the h2 package is not installed), so a plain channel loses nothing.
    site.protocol = AdminChannel
    site.max_body = max_body
    site.import_max_body = max(import_max_body, max_body)
    site.header_timeout = header_timeout
    site.displayTracebacks = False
    site.noisy = False
    return site
