"""
The management API's body cap, enforced while the request is read.

twisted.web reads a whole request body (into memory, or a temporary file
above 100 KB) before the API sees it, so a cap checked by the API alone still
lets a client make the gateway store gigabytes.  L{CappedRequest} refuses a
declared ``Content-Length`` over the cap as soon as the header fields are in,
and a chunked body the moment it passes the cap: 413 with a JSON error, and
the connection closed.  Import routes get the larger cap that bundles need.
"""

import json

from twisted.web.server import Request, Site

MAX_BODY = 8 * 1024 * 1024
"""The cap on a management API request body, in bytes."""

IMPORT_MAX_BODY = 64 * 1024 * 1024
"""The cap for ``/api/import/...`` (OpenAPI documents, zip bundles)."""

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

    def _refuse(self):
        self._refused = True
        cap = self._cap()
        body = json.dumps(
            {"ok": False, "error": f"the request body is larger than {cap} bytes"}
        ).encode("utf-8")
        self.channel.transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.channel.loseConnection()


def admin_site(resource, reactor, max_body=MAX_BODY, import_max_body=IMPORT_MAX_BODY):
    """The management API's L{Site}: capped bodies, no tracebacks, no form parsing."""
    # Bodies are the API's to read (a malformed form would get Twisted's bare 400).
    site = Site(resource, reactor=reactor, parsePOSTFormSubmission=False)
    site.requestFactory = CappedRequest
    site.max_body = max_body
    site.import_max_body = max(import_max_body, max_body)
    site.displayTracebacks = False
    site.noisy = False
    return site
