"""
The fast HTTP/1.1 front of the data plane: a Twisted ``Protocol`` on httptools
(llhttp), behind the same ``Dispatcher`` as ``edgegw_tx.gateway.web``.

Behaviour:

* Keep-alive by default for HTTP/1.1; HTTP/1.0 closes after the response
  unless the request says ``Connection: keep-alive``; ``Connection: close`` is
  honoured (llhttp's ``should_keep_alive``).
* Pipelining: every complete request is dispatched at once (the worker pools
  pipeline too); answers are buffered and written strictly in request order.
* Request bodies: ``Content-Length`` or chunked; at most ``max_body`` bytes
  (413 and close; a declared ``Content-Length`` over the cap is refused before
  the body is read).  ``Expect: 100-continue`` gets ``HTTP/1.1 100 Continue``
  once every earlier response on the connection has been written.
* Responses are complete bytes, so they are always framed with
  ``Content-Length`` (never chunked); none for 1xx, 204 and 304.  HEAD gets the
  headers, ``Content-Length`` included, without the body.  Every response has
  ``Date`` (formatted once per second), ``Server: edgegw`` (unless the handler
  set one) and the dispatcher's ``x-request-id``.
* Malformed requests and request-smuggling shapes (Content-Length with
  Transfer-Encoding, duplicate Content-Length, obsolete line folding, unknown
  transfer codings: llhttp's strict mode rejects each; a Transfer-Encoding
  other than exactly ``chunked``, such as ``identity, chunked``, and any
  Transfer-Encoding on HTTP/1.0, RFC 9112 §6.1) → 400 and close.
* Routing ambiguity (RFC 9112 §3.2): two ``Host`` fields, none on HTTP/1.1,
  or one that is not ``host [":" port]`` → 400 and close (valid values are
  remembered per factory, so a repeated Host costs one set lookup).  An absolute-form target
  (``GET http://a.example/x``) is routed by its authority, which replaces the
  ``Host`` the handler sees; a scheme other than http(s) or a userinfo in it
  → 400 and close.
* A request line of a version other than HTTP/1.0 or 1.1 (``HTTP/2.0``,
  ``HTTP/0.9``; llhttp refuses ``HTTP/1.2`` as malformed) → 505 and close
  (RFC 9110 §15.6.6: the major version is not supported).
  Too many headers or too large a head → 431, too long a URL → 414, both
  closing the connection.  Upgrade/CONNECT is not supported: the request is
  answered and the connection closed.
* Writing: the answers ready in order go out in one write; on a plain TCP
  connection with nothing queued, straight to the socket (see ``_write``).
* Flow control: the protocol registers as the transport's streaming producer.
  Reading from the client stops while the transport's write buffer is full
  (a client that does not read) or while more than ``max_pending`` answers are
  unwritten, so a client pipelining without reading cannot make the gateway
  buffer without bound.
* A client gone before its answer is ready gets nothing written (the target's
  Deferred is not cancelled: the pool owns its requests).
* A connection with no request in progress closes after ``idle_timeout``
  seconds without traffic (one lazy timer per connection, not one per read).
  A request whose header fields have not all arrived ``header_timeout``
  seconds after its first byte gets 408 and the connection is closed
  (slowloris), however steadily the bytes trickle in.  Likewise a request
  whose body has not all arrived ``body_timeout`` seconds after its head gets
  408 and the connection is closed.
* Shutting down (``GatewayHTTPFactory.close_connections``): every request
  begun is answered, with ``connection: close``, and its connection closed
  after the answer; an idle keep-alive connection is closed at once; one that
  has not sent its first request yet (accepted as the listener stopped: its
  request is on its way) gets a grace to send it.  Once the grace is over, a
  request still being received is answered 503.  So no client whose
  connection was accepted sees it closed without an answer.
* Observed (the dispatcher's ``Observer``, gateway/observe.py): an answer this
  layer gives itself (400, 408, 413, 414, 431, 505, 503) is counted under
  endpoint ``""`` and logged like the dispatcher's, with an ``x-request-id``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial
from email.utils import formatdate
from typing import Any, cast
from typing import Protocol as Structural

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
    parse_url,
)
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer
from twisted.internet.tcp import Server as TCPServer
from twisted.logger import Logger
from twisted.python.failure import Failure

from edgegw_tx.gateway.dispatch import (
    Dispatcher,
    GatewayRequest,
    GatewayResponse,
    add_header_field,
)
from edgegw_tx.gateway.target import valid_host
from edgegw_tx.reasons import reason_phrase

__all__ = ["BODY_TIMEOUT", "GatewayHTTPFactory", "GatewayHTTPProtocol"]

_log = Logger()

BODY_TIMEOUT = 60.0
"""Default seconds for a request body to arrive once its head is in (``--body-timeout``)."""

_NO_BODY = frozenset({204, 304})
_INTERNAL = b'{"error": "internal error while writing the response"}'
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HOSTS_REMEMBERED = 1024  # valid Host values a factory remembers (then starts over)
_HOST_REMEMBERED_MAX = 255  # the longest one remembered

_status_lines: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _status_lines.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))
        _status_lines[status] = line
    return line


class _DateCache:
    """``Date: ...\\r\\n`` formatted once per second of the given clock."""

    __slots__ = ("_second", "_line")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self, now: float) -> bytes:
        second = int(now)
        if second != self._second:
            self._second = second
            self._line = b"date: %s\r\n" % formatdate(second, usegmt=True).encode("ascii")
        return self._line


class _Reject(Exception):
    """Raised inside a parser callback: answer ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Slot:
    """One request's place in the connection's answer order."""

    __slots__ = ("data", "close", "head", "expect", "complete", "http10")

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.close = False
        self.head = False
        self.expect = False
        self.complete = False
        self.http10 = False


class _Connection(Structural):
    """
    What a connection needs of its transport (TCP's or TLS's): a consumer
    of this protocol's answers, and a push producer of the request bytes.
    What they return is ignored (``object``: compiled, a declared ``None``
    would be checked, and some transports return something).
    """

    def write(self, data: bytes) -> object: ...
    def loseConnection(self) -> object: ...
    def getPeer(self) -> IAddress: ...
    def registerProducer(self, producer: IPushProducer, streaming: bool) -> object: ...
    def unregisterProducer(self) -> object: ...
    def pauseProducing(self) -> object: ...
    def resumeProducing(self) -> object: ...


class GatewayHTTPProtocol:
    """
    One client connection.

    Not a subclass of Twisted's ``Protocol``, though it is one to the
    transports (``makeConnection``, ``dataReceived``, ``connectionLost``) and
    their push producer: without a Python base class the compiled module
    (edgegw_tx/compiled.py) makes it a native class, whose attributes are
    fields rather than dict entries (about 1 µs less per request).
    """

    # Set by makeConnection, before any other method runs.
    transport: _Connection

    def __init__(self, factory: "GatewayHTTPFactory") -> None:
        self.factory = factory
        self.connected = 0
        self._factory = factory
        self._serve = factory.dispatcher.serve
        self._hosts_ok = factory.hosts_ok
        self._seconds = factory.reactor.seconds
        self._parser = HttpRequestParser(self)
        self._slots: deque[_Slot] = deque()
        self._current: _Slot | None = None
        self._url = b""
        self._headers: dict[str, str] = {}  # in the request frame's form
        self._fields = 0  # header fields received
        self._head_size = 0
        self._raw_head = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._host: bytes | None = None
        self._expect = False
        self._in_head = True
        self._client_ip: str | None = None
        self._send: Callable[[bytes], int] | None = None
        self._gone = False
        self._stopped = False  # no more requests read: closing or rejected
        self._write_paused = False
        self._read_paused = False
        self._last = 0.0
        self._head_since: float | None = None  # a request head is being read since
        self._body_since: float | None = None  # a request body is being read since
        self._te: bytes | None = None  # the request's Transfer-Encoding
        self._timer: IDelayedCall | None = None
        self._begun = False  # a request was begun on this connection

    # -- connection ---------------------------------------------------------

    def makeConnection(self, transport: _Connection) -> None:
        """The transport is ready (as ``Protocol.makeConnection``)."""
        self.connected = 1
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:
        self._factory.connections.add(self)
        transport: Any = self.transport
        # Only a plain TCP connection is written to directly (see _write).
        self._send = transport.socket.send if type(transport) is TCPServer else None
        self._client_ip = getattr(self.transport.getPeer(), "host", None)
        # A push producer by its methods (a native class declares no interfaces).
        self.transport.registerProducer(cast(IPushProducer, self), True)
        self._last = self._seconds()
        factory = self._factory
        self._timer = factory.reactor.callLater(
            min(factory.idle_timeout, factory.header_timeout, factory.body_timeout),
            self._check_idle,
        )

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = 0
        self._gone = True
        self._slots.clear()
        self._current = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._factory.connection_closed(self)

    def wind_down(self, grace_over: bool) -> None:
        """
        The gateway is stopping: read no request after those begun and close
        once their answers are written.  Idle after a request: close now.
        Nothing sent yet: wait until ``grace_over``, then close.  Still
        receiving a request once ``grace_over``: answer it 503.
        """
        if self._gone:
            return
        if self._current is not None or self._head_since is not None:
            if grace_over:
                self._reject(503, "the gateway is shutting down")
            # Otherwise its answer closes the connection (on_message_complete).
        elif self._slots:
            self._stopped = True
            self._slots[-1].close = True
        elif self._begun or grace_over:
            self._stopped = True
            self._close()

    def _check_idle(self) -> None:
        """
        The connection's one lazy timer: 408 for a request head that takes
        longer than ``header_timeout`` (slowloris) or a body that takes longer
        than ``body_timeout``, close after ``idle_timeout`` without traffic.  It
        never sleeps longer than the shorter of the two deadlines, so a head
        or body that begins meanwhile is caught on time without re-arming the
        timer per request.
        """
        self._timer = None
        if self._gone:
            return
        factory = self._factory
        now = self._seconds()
        wake = min(factory.header_timeout, factory.body_timeout)
        if self._head_since is not None and not self._stopped:
            head_left = self._head_since + factory.header_timeout - now
            if head_left <= 0:
                self._reject(
                    408, f"request header not received within {factory.header_timeout:g} s"
                )
                return
            wake = head_left
        elif (
            self._body_since is not None
            and not self._stopped
            and self._current is not None
            and not self._current.expect
        ):
            # (A client expecting 100-continue waits for it: its time starts then.)
            body_left = self._body_since + factory.body_timeout - now
            if body_left <= 0:
                self._reject(
                    408, f"request body not received within {factory.body_timeout:g} s"
                )
                return
            wake = body_left
        timeout = factory.idle_timeout
        left = self._last + timeout - now
        if left > 0 or self._slots and self._current is None:
            # Traffic since, or answers still on their way: look again later.
            self._timer = factory.reactor.callLater(
                min(left if left > 0 else timeout, wake), self._check_idle
            )
            return
        # Idle keep-alive, or a request that stopped arriving half-way.
        self._stopped = True
        self._close()

    def _close(self) -> None:
        # TLS transports wait for the producer to go before they close.
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    # -- producer (the transport calls these) ---------------------------------

    def pauseProducing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def stopProducing(self) -> None:
        self._gone = True

    def _update_reading(self) -> None:
        want_paused = (
            self._write_paused or len(self._slots) > self._factory.max_pending
        ) and not self._gone
        if want_paused != self._read_paused:
            self._read_paused = want_paused
            if want_paused:
                self.transport.pauseProducing()
            elif not self._gone:
                self.transport.resumeProducing()

    # -- reading --------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._stopped:
            return
        self._last = self._seconds()
        try:
            self._parser.feed_data(data)
        except HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Reject):
                self._reject(cause.status, cause.message)
            else:
                _log.failure(
                    "HTTP parser callback failed",
                    Failure(cause) if cause is not None else None,
                )
                self._reject(500, "internal error while reading the request")
            return
        except HttpParserUpgrade:
            # Upgrade and CONNECT are not supported: answer what was read, close.
            self._stop_after_current()
            return
        except HttpParserError as e:
            self._reject(400, f"malformed request: {e}")
            return
        if self._in_head:
            # httptools buffers a header until its end: bound what it may hold.
            self._raw_head += len(data)
            if self._raw_head > 2 * self._factory.max_head + 65536:
                self._reject(431, "request header fields too large")
                return
        if len(self._slots) > self._factory.max_pending:
            self._update_reading()

    def on_message_begin(self) -> None:
        self._begun = True
        self._head_since = self._last  # llhttp calls this from dataReceived: just read
        self._url = b""
        self._headers = {}
        self._fields = 0
        self._head_size = 0
        self._raw_head = 0
        self._body = []
        self._body_size = 0
        self._host = None
        self._te = None
        self._expect = False
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._factory.max_url:
            raise _Reject(414, "request URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._head_size += len(name) + len(value) + 4
        if self._fields > self._factory.max_headers:
            raise _Reject(431, "too many request header fields")
        if self._head_size > self._factory.max_head:
            raise _Reject(431, "request header fields too large")
        lower = name.lower()
        if lower == b"host":
            if self._host is not None:
                raise _Reject(400, "more than one Host header field")
            if value not in self._hosts_ok:
                self._check_host(value)
            self._host = value
        elif lower == b"transfer-encoding":
            # llhttp refuses a second one, and Content-Length beside it.
            self._te = value
        elif lower == b"expect":
            if value.lower() == b"100-continue":
                self._expect = True
        elif lower == b"content-length":
            # llhttp has checked the digits and refused a second one.
            if int(value) > self._factory.max_body:
                raise _Reject(413, "request body too large")
        # The dispatcher's form, built here so the fields are walked once
        # (llhttp accepts only token characters in a name: ASCII, so the bytes'
        # lower() is the str's).
        add_header_field(
            self._headers, lower.decode("latin-1"), value.decode("utf-8", "replace")
        )

    def _check_host(self, value: bytes) -> None:
        """Refuse a Host value that is not ``host [":" port]``; remember a good one."""
        if not valid_host(value):
            raise _Reject(400, "the Host header field is not a host name or address with a port")
        hosts = self._hosts_ok
        if len(value) <= _HOST_REMEMBERED_MAX:
            if len(hosts) >= _HOSTS_REMEMBERED:
                hosts.clear()
            hosts.add(value)

    def on_headers_complete(self) -> None:
        if self._stopped:
            return  # pipelined after a request that closes the connection
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1":
            if version != "1.0":
                raise _Reject(505, f"HTTP/{version} is not supported: HTTP/1.1 or 1.0")
            if self._te is not None:
                raise _Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        elif self._host is None:
            raise _Reject(400, "an HTTP/1.1 request needs a Host header field")
        if self._te is not None and self._te.lower() != b"chunked":
            raise _Reject(400, "Transfer-Encoding must be chunked, and only chunked")
        self._in_head = False
        self._head_since = None
        self._body_since = self._last
        slot = _Slot()
        slot.head = parser.get_method() == b"HEAD"
        slot.http10 = version == "1.0"
        self._current = slot
        self._slots.append(slot)
        if self._expect and not slot.http10:
            slot.expect = True
            if self._slots[0] is slot:
                slot.expect = False
                self._write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._stopped:
            return
        self._body_size += len(body)
        if self._body_size > self._factory.max_body:
            raise _Reject(413, "request body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._stopped:
            return
        self._body_since = None
        url = self._url
        host = self._host
        headers = self._headers
        if url[:1] == b"/":
            path, _, query = url.partition(b"?")
            path = path.partition(b"#")[0]
        elif url == b"*":
            path, query = url, b""
        else:
            path, query, host = self._absolute_form(url)
            headers["host"] = host.decode("utf-8", "replace")
        self._in_head = True
        self._raw_head = 0
        # on_headers_complete made this request's slot (on_message_complete follows it).
        slot: _Slot = self._current  # type: ignore[assignment]
        self._current = None
        parser = self._parser
        slot.complete = True
        slot.expect = False
        if not parser.should_keep_alive() or self._factory.closing:
            slot.close = True
            self._stopped = True
        body = self._body
        request = GatewayRequest(
            parser.get_method().decode("latin-1"),
            host.decode("latin-1") if host is not None else None,
            path.decode("utf-8", "replace"),
            query,
            headers,
            body[0] if len(body) == 1 else b"".join(body),
            self._client_ip,
        )
        self._body = []
        # (A partial, not a lambda: mypyc cannot compile a closure here.)
        self._serve(request, partial(self._answer, slot=slot))

    @staticmethod
    def _absolute_form(url: bytes) -> tuple[bytes, bytes, bytes]:
        """
        Path, query and authority of an absolute-form target: the authority
        is the request's host (RFC 9112 §3.2.2), whatever ``Host`` says.
        """
        try:
            # Any: httptools' stub says bytes where a missing part is None.
            parsed: Any = parse_url(url)
        except HttpParserError:
            raise _Reject(400, "malformed request target") from None
        schema: bytes | None = parsed.schema
        if schema is None or schema.lower() not in (b"http", b"https") or not parsed.host:
            raise _Reject(400, "the request target is neither a path nor an http(s) URL")
        userinfo: bytes | None = parsed.userinfo
        if userinfo is not None:
            raise _Reject(400, "the request target has a userinfo part")
        host: bytes = parsed.host
        if b":" in host:
            host = b"[%s]" % host
        port: int | None = parsed.port
        if port is not None:
            host += b":%d" % port
        path: bytes | None = parsed.path
        query: bytes | None = parsed.query
        return path or b"/", query or b"", host

    # -- writing --------------------------------------------------------------

    def _answer(self, response: GatewayResponse, slot: _Slot) -> None:
        if self._gone or slot.data is not None:
            return
        try:
            self._render(response, slot)
        except Exception:
            self._crashed(Failure(), slot)
            return
        self._flush()

    def _render(self, response: GatewayResponse, slot: _Slot) -> None:
        status = response.status
        body = response.body
        lines = ""
        server = False
        for name, value in response.headers:
            if name == "server":
                server = True
            lines += name + ": " + value + "\r\n"
        # One encode for all the fields (0.1 us less than one per field for
        # hello's two): names are ASCII tokens (checked by the dispatcher),
        # values UTF-8.
        parts = [
            _status_line(status),
            self._factory.dates.line(self._seconds()),
            lines.encode("utf-8"),
        ]
        if not server:
            parts.append(b"server: edgegw\r\n")
        if status >= 200 and status not in _NO_BODY:
            parts.append(b"content-length: %d\r\n" % len(body))
        else:
            body = b""
        if slot.close:
            parts.append(b"connection: close\r\n")
        elif slot.http10:
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        if body and not slot.head:
            parts.append(body)
        slot.data = b"".join(parts)

    def _crashed(self, failure: Failure, slot: _Slot) -> None:
        """Last resort: the response could not be rendered, a bug here."""
        _log.failure("writing the response failed", failure)
        if not self._gone:
            slot.close = True
            self._error_bytes(slot, 500, _INTERNAL)
            self._flush()

    def _error_bytes(
        self, slot: _Slot, status: int, body: bytes, request_id: str | None = None
    ) -> None:
        slot.data = b"".join(
            [
                _status_line(status),
                self._factory.dates.line(self._seconds()),
                b"content-type: application/json\r\nserver: edgegw\r\n",
                b"x-request-id: %s\r\n" % request_id.encode("ascii") if request_id else b"",
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body),
                body,
            ]
        )

    def _flush(self) -> None:
        """Write the answers that are next in order, in one write."""
        slots = self._slots
        if not slots or slots[0].data is None:
            return
        ready: list[bytes] = []
        while slots:
            # Through a name, not slots[0].data again: mypy narrowed that
            # expression to bytes above, and the compiled code would then
            # refuse a later slot's None.
            slot = slots[0]
            data = slot.data
            if data is None:
                break
            slots.popleft()
            ready.append(data)
            if slot.close:
                slots.clear()
                self._stopped = True
                self._write(ready[0] if len(ready) == 1 else b"".join(ready))
                self._close()
                return
        if slots and slots[0].expect:
            slots[0].expect = False
            self._body_since = self._seconds()  # the body's time starts now
            ready.append(_CONTINUE)
        self._write(ready[0] if len(ready) == 1 else b"".join(ready))
        self._last = self._seconds()
        if self._read_paused:
            self._update_reading()

    def _write(self, data: bytes) -> None:
        """
        Send ``data`` now when nothing is queued before it, else queue it.

        Twisted's ``transport.write`` only queues: the bytes go out on the
        reactor's next turn, after registering the socket for writability
        and before unregistering it, two ``epoll_ctl`` calls and a reactor
        event per response (docs/performance.md, "The hot path, second
        pass").  On a plain TCP connection whose
        buffer is empty, one ``send`` usually takes it all; whatever the
        kernel does not take (or an error) goes through ``transport.write``,
        so ordering, flow control and error handling stay Twisted's.
        """
        send = self._send
        if send is not None:
            # connectionMade sets _send for a TCPServer transport only.
            transport: TCPServer = self.transport  # type: ignore[assignment]
            if (
                not transport.dataBuffer
                and not transport._tempDataBuffer
                and transport.connected
                and not transport.disconnecting
            ):
                try:
                    sent = send(data)
                except OSError:
                    sent = 0  # EAGAIN, or an error Twisted's write path reports
                if sent == len(data):
                    return
                data = data[sent:]
        self.transport.write(data)

    def _reject(self, status: int, message: str) -> None:
        """Answer ``status`` after every earlier answer, then close."""
        if self._stopped and self._current is None:
            # Already closing after an earlier answer (e.g. llhttp's "data
            # after Connection: close"): what follows is not answered.
            return
        self._stopped = True
        since = self._head_since if self._head_since is not None else self._body_since
        self._body_since = None
        slot = self._current
        if slot is None:
            slot = _Slot()
            self._slots.append(slot)
        self._current = None
        slot.expect = False
        slot.close = True
        body = b'{"error": "%s"}' % message.replace('"', "'").encode("ascii", "replace")
        dispatcher = self._factory.dispatcher
        observer = dispatcher.observer
        if observer is None:
            self._error_bytes(slot, status, body)
        else:
            request_id = dispatcher.new_request_id()
            self._error_bytes(slot, status, body, request_id)
            observer.rejected(
                request_id,
                self._client_ip,
                # llhttp knows the method once the target began.
                self._parser.get_method().decode("latin-1") if self._url else "",
                self._url.partition(b"?")[0].decode("utf-8", "replace"),
                status,
                self._body_size,
                len(body),
                self._seconds() - since if since is not None else 0.0,
                self._headers.get("user-agent"),
            )
        self._flush()

    def _stop_after_current(self) -> None:
        self._stopped = True
        if self._current is not None:
            self._reject(400, "upgrade is not supported")
        elif self._slots:
            self._slots[-1].close = True
            self._flush()
        else:
            self._close()


class GatewayHTTPFactory:
    """
    Builds ``GatewayHTTPProtocol``s for one ``Dispatcher``.

    A protocol factory to the ports (``doStart``, ``doStop``,
    ``buildProtocol``, ``logPrefix``) without Twisted's ``ServerFactory`` as
    its base: compiled, a native class, so the limits every request reads are
    fields rather than dict entries.

    :param reactor: the reactor for the idle timers and the clock of ``Date``.
    :param max_body: the largest request body, in bytes (413 above).
    :param max_headers: the most header fields in a request (431 above).
    :param max_head: the most bytes of header fields (431 above).
    :param max_url: the longest request target (414 above).
    :param max_pending: answers a connection may have unwritten before
        reading from it stops.
    :param idle_timeout: seconds a connection may sit without a request.
    :param header_timeout: seconds from the first byte of a request to the end
        of its header fields (408 and close above: slowloris).
    :param body_timeout: seconds from the end of a request's header fields to
        the end of its body (408 and close above).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        reactor: Any = None,
        *,
        max_body: int = 16 * 1024 * 1024,
        max_headers: int = 100,
        max_head: int = 64 * 1024,
        max_url: int = 16 * 1024,
        max_pending: int = 32,
        idle_timeout: float = 60.0,
        header_timeout: float = 10.0,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        if reactor is None:
            # Imported under another name: compiled (edgegw_tx/compiled.py), an import
            # inside a function binds a module global, not the parameter.
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.dispatcher = dispatcher
        self.reactor = reactor
        self.max_body = max_body
        self.max_headers = max_headers
        self.max_head = max_head
        self.max_url = max_url
        self.max_pending = max_pending
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.dates = _DateCache()
        self.hosts_ok: set[bytes] = set()
        self.connections: set[GatewayHTTPProtocol] = set()
        self.closing = False
        self._closed_waiters: list[Deferred[None]] = []
        self._grace_call: IDelayedCall | None = None

    def close_connections(self, grace: float = 1.0) -> Deferred[None]:
        """
        Wind every connection down for shutdown (see the module's docstring),
        giving those that have sent nothing yet ``grace`` seconds.

        :return: fires once every connection is closed.
        """
        self.closing = True
        d: Deferred[None] = Deferred()
        self._closed_waiters.append(d)
        for protocol in list(self.connections):
            protocol.wind_down(False)
        if self._grace_call is None and self.connections:
            self._grace_call = self.reactor.callLater(grace, self._grace_over)
        self._check_closed()
        return d

    def _grace_over(self) -> None:
        for protocol in list(self.connections):
            protocol.wind_down(True)

    def connection_closed(self, protocol: GatewayHTTPProtocol) -> None:
        self.connections.discard(protocol)
        if self.closing:
            self._check_closed()

    def _check_closed(self) -> None:
        if self.connections:
            return
        if self._grace_call is not None and self._grace_call.active():
            self._grace_call.cancel()
        self._grace_call = None
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(None)

    def doStart(self) -> None:
        """A port begins listening with this factory: nothing to prepare."""

    def doStop(self) -> None:
        """A port stopped listening with this factory: nothing to release."""

    def logPrefix(self) -> str:
        """What the port's log lines are prefixed with."""
        return "GatewayHTTPFactory"

    def buildProtocol(self, addr: IAddress | None) -> GatewayHTTPProtocol:
        """The protocol of one accepted connection."""
        return GatewayHTTPProtocol(self)
