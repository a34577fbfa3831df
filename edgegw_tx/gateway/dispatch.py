"""
HTTP ↔ IPC translation, independent of any HTTP server.

An HTTP layer (``edgegw_tx.gateway.http``, ``edgegw_tx.gateway.web``) builds a
``GatewayRequest``, calls ``Dispatcher.dispatch`` (a Deferred) or
``Dispatcher.serve`` (a callback: the hot path) and writes the
``GatewayResponse`` it gets.  It never gets a failure: every failure becomes a
response, and every response carries ``x-request-id``.

A route's target answers ``request(frame) -> Deferred[dict]``; a target that
also has ``submit(frame, answer)`` (``edgegw_tx.workers.pool.WorkerPool``) is
called that way instead, with no Deferred per request.

The ``request`` frame (spec/IPC.md), decisions included:

* ``query``: the query string decoded as ``application/x-www-form-urlencoded``
  (``+`` is a space, UTF-8, blanks kept: ``?a`` → ``{"a": ""}``); a repeated key
  has its values joined with ``,`` in order (``?t=a&t=b`` → ``"a,b"``).
* ``headers``: lower-case names; repeated names joined with ``, `` (``cookie``
  with ``; ``, as RFC 6265 requires).  Byte values are decoded as UTF-8 with
  replacement.
* ``body``: ``null`` when the request has no body, the text when it is UTF-8;
  otherwise ``body`` is ``null`` and ``body_base64`` holds it (the key is only
  present then).
* ``request_id``: the client's ``X-Request-Id`` when it is 1–128 characters of
  ``[A-Za-z0-9._:-]``, else a new uuid4 hex.

* ``path``: the normal form of the request's path (``edgegw_tx.gateway.target``):
  what the route table matches, so handler and routing agree; a path with no
  normal form (``%00``, a malformed escape, a dot-segment) is a 400.
* ``method``: as received; a ``HEAD`` served by a ``GET`` route says ``HEAD``.

The ``response`` frame: ``status`` an int 200–599 (a 1xx is not a final
answer: a handler cannot send interim answers or switch protocols),
``headers`` an object whose values are strings or lists of strings (a list
gives one header line per item, as ``set-cookie`` needs) without control
characters other than HTAB, ``body_base64`` if not null, else ``body`` (string
or null).  Anything else is a 502.  Hop-by-hop headers, the framing headers
(``content-length``, ``transfer-encoding``) and ``date`` are dropped: the HTTP
layer frames the body and dates the answer; a handler's ``x-request-id`` is
replaced by the gateway's.  A 204 or 304 has no body, whatever the handler
gave.

A route's traffic policy (``Match.policy``, a compiled
``edgegw_tx.policy.model.CompiledPolicy``) is checked before the worker is
involved: an early answer (a preflight's 204, 401, 403, 413, 429) is the
gateway's own, with ``x-request-id`` and recorded as a worker's answer is; the
header fields the checks add (CORS, ``RateLimit-*``) go on whichever answer
the client gets.  A check that waits (a cluster rate limit) answers when it
fires; a connection closed meanwhile gets nothing written (the HTTP layer).
A route without a policy pays one attribute read.  Every request, with a
policy or not, has the identity header fields (``x-edgegw-consumer`` ...)
removed: only a policy's ``auth`` sets them.  A CORS preflight (``OPTIONS``
with ``Access-Control-Request-Method``) for a path that has no ``OPTIONS``
route is answered by the ``cors`` part of the route it asks about (a 405
when that route has none).

With an ``Observer`` (``edgegw_tx.gateway.observe``) every answer is counted
in its ``RequestMetrics`` (endpoint ``""`` when no route matched) and written
to its access log; the request frame's ``traceparent`` header is the
gateway's (the client's kept as parent when valid, replaced when not) and the
answer carries it, replacing a handler's; the health path is answered before
routing.
"""

from __future__ import annotations

import binascii
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from random import Random
from typing import Any
from urllib.parse import unquote_plus

# SIMD base64: about 25 times faster than the standard library's on 16 KiB bodies.
from pybase64 import b64decode, b64encode
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

# InvalidResponse lives with the other errors (a class attribute of an error
# class defined in a compiled module is lost: edgegw_tx/compiled.py).
from edgegw_tx.errors import GatewayError, InvalidResponse
from edgegw_tx.gateway.observe import Observer
from edgegw_tx.gateway.routes import Match, MethodNotAllowed, RouteTable
from edgegw_tx.gateway.target import BadPath, normal_path
from edgegw_tx.observability.accesslog import duration_ms
from edgegw_tx.policy.auth import strip_identity
from edgegw_tx.policy.cors import CORS
from edgegw_tx.policy.part import PolicyRequest

__all__ = [
    "Dispatcher",
    "add_header_field",
    "GatewayRequest",
    "GatewayResponse",
    "InvalidResponse",
]


@dataclass(slots=True)
class GatewayRequest:
    """
    One HTTP request as the HTTP layer saw it.

    ``path`` is the raw path (percent-encoded, no query); the dispatcher
    brings it to its normal form.  ``headers`` are the fields as received,
    names and values ``bytes`` (as parsers produce them) or ``str``; or,
    from an HTTP layer that builds it while parsing, a ``dict`` already in
    the request frame's form (see ``add_header_field``).
    """

    method: str
    host: str | None
    path: str
    query_string: bytes | str
    headers: Sequence[tuple[bytes | str, bytes | str]] | dict[str, str]
    body: bytes
    client_ip: str | None


@dataclass(slots=True)
class GatewayResponse:
    """What to write back: lower-case header names, body without framing."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z").match
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match
# Control characters other than HTAB (RFC 9110 §5.5): CR, LF, NUL, VT, DEL ...
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search
_DROPPED = frozenset(
    {
        "date",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "x-request-id",
        "traceparent",
    }
)
_JSON = ("content-type", "application/json")


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


# Request ids are labels, not secrets: a Mersenne Twister seeded from the OS
# draws them without a getrandom() system call per request.
_bits = Random().getrandbits


def _new_request_id() -> str:
    """A random uuid4 as 32 hex digits; ``uuid4().hex`` costs 10× as much."""
    return (_bits(128) & _V4_CLEAR | _V4_SET).to_bytes(16).hex()


def add_header_field(headers: dict[str, str], name: str, value: str) -> None:
    """
    Add one request header field to the frame's ``headers``: ``name`` in
    lower case; a repeated name's values joined with ``, `` (``cookie``
    with ``; ``).
    """
    previous = headers.get(name)
    if previous is None:
        headers[name] = value
    else:
        headers[name] = previous + ("; " if name == "cookie" else ", ") + value


def _header_map(raw: Sequence[tuple[bytes | str, bytes | str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        add_header_field(headers, name.lower(), value)
    return headers


def _query_map(query: bytes | str) -> dict[str, str]:
    if not query:
        return {}
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    result: dict[str, str] = {}
    # parse_qsl(keep_blank_values=True) semantics at a third of its cost.
    for piece in query.split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        if "%" in piece or "+" in piece:
            key = unquote_plus(key)
            value = unquote_plus(value)
        previous = result.get(key)
        result[key] = value if previous is None else previous + "," + value
    return result


# A handler sends the same few header names with every answer: each name's
# check (a token?) and lower-case form are remembered, so a request pays one
# dict lookup per header instead of lower() + a set lookup + a regex match
# (0.21 µs against 0.06 µs per header, `python -m timeit`).
_DROP = ""
_header_names: dict[str, str] = {}
_HEADER_NAMES_REMEMBERED = 1024  # distinct names remembered (then starts over)


def _header_name(name: str) -> str:
    """The lower-case form of a valid response header name, or ``_DROP``."""
    lower = name.lower()
    if lower in _DROPPED:
        lower = _DROP
    elif not _TOKEN(name):
        raise _invalid(f"bad header name {name!r}")
    if len(_header_names) >= _HEADER_NAMES_REMEMBERED:
        _header_names.clear()
    _header_names[name] = lower
    return lower


def _invalid(problem: str) -> InvalidResponse:
    return InvalidResponse(f"invalid response from handler: {problem}")


def _control(name: str, value: str) -> InvalidResponse:
    """The error for a header value holding a control character."""
    found = _BAD_VALUE(value)
    assert found is not None, "called only for a value that holds one"
    char = found.group()
    return _invalid(f"header {name!r} contains the control character U+{ord(char):04X}")


def _translate(frame: object, request_id: str) -> GatewayResponse:
    """A ``response`` frame → ``GatewayResponse``; raises ``InvalidResponse``."""
    if not isinstance(frame, dict):
        raise _invalid(f"expected an object, got {type(frame).__name__}")
    status = frame.get("status")
    if status.__class__ is not int or not 200 <= status <= 599:
        if status.__class__ is int and 100 <= status <= 199:
            raise _invalid(
                f"status {status} is an interim (1xx) status; a handler's answer is final: 200 to 599"
            )
        raise _invalid(f"status {status!r} is not an integer from 200 to 599")

    headers: list[tuple[str, str]] = []
    given = frame.get("headers")
    if given:
        if not isinstance(given, dict):
            raise _invalid("headers must be an object")
        for name, value in given.items():
            lower = _header_names.get(name)
            if lower is None:
                lower = _header_name(name)
            if lower == _DROP:
                continue
            if value.__class__ is str:
                if _BAD_VALUE(value):
                    raise _control(name, value)
                headers.append((lower, value))
            elif value.__class__ is list:
                for item in value:
                    if item.__class__ is not str:
                        raise _invalid(f"header {name!r} has a non-string value")
                    if _BAD_VALUE(item):
                        raise _control(name, item)
                    headers.append((lower, item))
            else:
                raise _invalid(
                    f"header {name!r} must be a string or a list of strings"
                )
    headers.append(("x-request-id", request_id))

    encoded = frame.get("body_base64")
    if encoded is not None:
        if encoded.__class__ is not str:
            raise _invalid("body_base64 must be a string")
        try:
            body = b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("body_base64 is not valid base64") from None
    else:
        text = frame.get("body")
        if text is None:
            body = b""
        elif text.__class__ is str:
            try:
                body = text.encode("utf-8")
            except UnicodeEncodeError:
                raise _invalid("body is not encodable as UTF-8") from None
        else:
            raise _invalid("body must be a string or null")
    if status == 204 or status == 304:
        body = b""  # RFC 9110 §15.3.5, §15.4.5: no content
    return GatewayResponse(status, headers, body)


def _error(
    status: int,
    request_id: str,
    payload: dict[str, Any],
    extra: Sequence[tuple[str, str]] = (),
) -> GatewayResponse:
    """The gateway's own JSON error response."""
    payload["request_id"] = request_id
    headers = [_JSON, ("x-request-id", request_id), *extra]
    return GatewayResponse(status, headers, json.dumps(payload).encode("utf-8"))


class Dispatcher:
    """
    Routes ``GatewayRequest``s to targets and translates the frames.

    :param routes: a ``RouteTable``.
    :param request_ids: a no-argument callable returning a fresh request id
        (default: uuid4 hex); tests pass a deterministic one.
    :param observer: what records each answer (metrics, access log, trace
        context, health path); None: nothing is recorded.
    """

    _log = Logger()

    def __init__(
        self,
        routes: RouteTable,
        *,
        request_ids: Callable[[], str] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self._match = routes.match
        self._routes = routes
        self._new_id = request_ids if request_ids is not None else _new_request_id
        #: A fresh request id (for an answer an HTTP layer gives itself).
        self.new_request_id = self._new_id
        self.observer = observer

    def dispatch(self, request: GatewayRequest) -> Deferred[GatewayResponse]:
        """Serve ``request``; the Deferred always fires with a response."""
        d: Deferred[GatewayResponse] = Deferred()

        def respond(response: GatewayResponse) -> None:
            if not d.called:
                d.callback(response)

        self.serve(request, respond)
        return d

    def serve(
        self, request: GatewayRequest, respond: Callable[[GatewayResponse], object]
    ) -> None:
        """
        ``dispatch`` without a Deferred, for the HTTP layer's hot path:
        ``respond`` is called with the ``GatewayResponse`` (possibly before this
        returns), once; in the unexpected case of a target that both answers
        and raises, a second time, which the caller ignores.
        """
        raw = request.headers
        # The httptools layer hands a dict it built while parsing (one walk
        # over the fields instead of two).
        headers = raw if raw.__class__ is dict else _header_map(raw)  # type: ignore[arg-type]
        request_id = headers.get("x-request-id")
        if request_id is None or not _REQUEST_ID(request_id):
            request_id = self._new_id()

        observer = self.observer
        start = 0.0
        traceparent = ""
        if observer is not None:
            start = observer.seconds()
            given = headers.get("traceparent")
            # An HTTP layer's dict is the frame's: the handler sees the gateway's.
            traceparent = headers["traceparent"] = observer.traceparent(given)
            if request.path == observer.health_path:
                status, extra, text = observer.health()
                extra.append(("x-request-id", request_id))
                _Recorder(observer, request, headers, request_id, traceparent, respond, start)(
                    GatewayResponse(status, extra, text)
                )
                return

        # Only the gateway sets who the client is (edgegw_tx/policy/auth.py).
        strip_identity(headers)
        method = request.method
        response: GatewayResponse | None
        try:
            path = normal_path(request.path)
        except BadPath as e:
            response = _error(400, request_id, {"error": str(e)})
        else:
            found = self._match(request.host, method, path)
            if found.__class__ is Match:
                response = None
            else:
                if method == "OPTIONS" and found.__class__ is MethodNotAllowed:
                    asked = headers.get("access-control-request-method")
                    if asked is not None and self._preflight(
                        request, headers, asked, request_id, path, respond, start, traceparent
                    ):
                        return
                response = self._unrouted(found, request_id, method, path)
        if response is not None:
            if observer is not None:
                respond = _Recorder(observer, request, headers, request_id, traceparent, respond, start)
            respond(response)
            return

        match: Match = found  # type: ignore[assignment]
        policy = match.policy
        if policy is None:
            self._forward(request, headers, match, request_id, method, path, respond, start, traceparent, None, None)
            return
        added: list[tuple[str, str]] = []
        checked = PolicyRequest(method, path, headers, request.client_ip, len(request.body))
        try:
            verdict = policy.check(checked, added)
        except Exception:
            verdict = self._check_failed(Failure(), request_id, request)
        if isinstance(verdict, Deferred):
            # A part waits (the cluster rate limit's round trip to Redis).
            verdict.addErrback(self._check_failed, request_id, request)
            verdict.addCallback(
                self._checked, request, headers, match, request_id, method, path, respond, start, traceparent, added
            )
            return
        self._forward(request, headers, match, request_id, method, path, respond, start, traceparent, added, verdict)

    def _preflight(
        self,
        request: GatewayRequest,
        headers: dict[str, str],
        asked: str,
        request_id: str,
        path: str,
        respond: Callable[[GatewayResponse], object],
        start: float,
        traceparent: str,
    ) -> bool:
        """
        A CORS preflight for a path with no OPTIONS route: answered (True) by
        the ``cors`` part of the route the browser asks about, when it has
        one; False otherwise (a 405 as for any other method not routed).
        """
        match = self._match(request.host, asked, path)
        if not isinstance(match, Match):
            return False
        policy = match.policy
        checks = getattr(policy, "checks", ())
        if not checks or not isinstance(checks[0], CORS):
            return False
        added: list[tuple[str, str]] = []
        checked = PolicyRequest("OPTIONS", path, headers, request.client_ip, len(request.body))
        verdict = checks[0].check(checked, added)
        if verdict is None:
            return False
        self._forward(request, headers, match, request_id, "OPTIONS", path, respond, start, traceparent, added, verdict)
        return True

    def _checked(
        self,
        verdict: Any,
        request: GatewayRequest,
        headers: dict[str, str],
        match: Match,
        request_id: str,
        method: str,
        path: str,
        respond: Callable[[GatewayResponse], object],
        start: float,
        traceparent: str,
        extra: list[tuple[str, str]],
    ) -> None:
        """A policy's check that waited has decided: answer early or go on to the worker."""
        self._forward(request, headers, match, request_id, method, path, respond, start, traceparent, extra, verdict)

    def _check_failed(self, failure: Failure, request_id: str, request: GatewayRequest) -> Any:
        """A policy check that raised: logged, and a 500 given in its place (never a traceback)."""
        self._log.failure(
            "{method} {path} (request {request_id}): the route's policy check failed",
            failure,
            method=request.method,
            path=request.path,
            request_id=request_id,
        )
        return (500, [], b'{"error": "internal error while checking the request"}')

    def _forward(
        self,
        request: GatewayRequest,
        headers: dict[str, str],
        found: Match,
        request_id: str,
        method: str,
        path: str,
        respond: Callable[[GatewayResponse], object],
        start: float,
        traceparent: str,
        extra: list[tuple[str, str]] | None,
        early: Any,
    ) -> None:
        """
        Hand the request to its route's target, or answer with ``early`` (a
        policy's ``(status, headers, body)``) instead; either answer gets
        ``extra`` (a policy's header fields) and is recorded.
        """
        target = found.target
        observer = self.observer
        if observer is not None:
            # In flight for its endpoint until answered; the answer is
            # recorded in ``answer`` (no per-request object: this is the
            # hot path). The series is remembered on the target.
            remembered = getattr(target, "_edgegw_series", None)
            if remembered is not None and remembered[0] is observer:
                series = remembered[1]
            else:
                series = observer.series_of(target)
            series.inflight += 1
            recorded = False

        def answer(result: Any) -> None:
            # One callback for both outcomes: the response frame (any JSON
            # value: _translate checks it) or a Failure; or the early answer.
            nonlocal recorded
            if result.__class__ is GatewayResponse:
                response = result
            elif not isinstance(result, Failure):
                try:
                    response = _translate(result, request_id)
                except Exception:
                    response = self._failed(Failure(), request_id, target, request)
            else:
                response = self._failed(result, request_id, target, request)
            if extra:
                response.headers.extend(extra)
            if observer is not None and not recorded:
                recorded = True
                response.headers.append(("traceparent", traceparent))
                now = observer.seconds()
                seconds = now - start
                bytes_in = len(request.body)
                bytes_out = len(response.body)
                series.inflight -= 1
                series.record(request.method, response.status, bytes_in, bytes_out, seconds)
                access_log = observer.access_log
                if access_log is not None:
                    # The line built here: no call between (accesslog.FIELDS order).
                    version = getattr(target, "version", None)
                    access_log.write(
                        {
                            "time": now,
                            "request_id": request_id,
                            "client": request.client_ip,
                            "method": request.method,
                            "path": request.path,
                            "status": response.status,
                            "endpoint": series.name,
                            "version": version[:12] if version else None,
                            "bytes_in": bytes_in,
                            "bytes_out": bytes_out,
                            "duration_ms": duration_ms(seconds),
                            "user_agent": headers.get("user-agent"),
                            "traceparent": traceparent,
                        }
                    )
            respond(response)

        if early is not None:
            status, fields, body = early
            answer(GatewayResponse(status, [*fields, ("x-request-id", request_id)], body))
            return

        frame = {
            "type": "request",
            "method": method,
            "path": path,
            "query": _query_map(request.query_string),
            "headers": headers,
            "params": found.params,
            "body": None,
            "client_ip": request.client_ip,
            "request_id": request_id,
        }
        body = request.body
        if body:
            try:
                frame["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                frame["body_base64"] = b64encode(body).decode("ascii")

        try:
            submit = getattr(target, "submit", None)
            if submit is not None:
                submit(frame, answer)  # a worker pool: no Deferred at all
            else:
                d = target.request(frame)
                if isinstance(d, Deferred):
                    d.addBoth(answer)
                else:
                    answer(d)
        except Exception:
            answer(Failure())

    def _unrouted(
        self, found: object, request_id: str, method: str, path: str
    ) -> GatewayResponse:
        """405, 503 while the routes are being restored, else 404."""
        if isinstance(found, MethodNotAllowed):
            allowed = found.allowed
            return _error(
                405,
                request_id,
                {"error": f"method {method} not allowed for {path}", "allowed": allowed},
                [("allow", ", ".join(allowed))],
            )
        if self._routes.restoring:
            return _error(
                503,
                request_id,
                {"error": "the gateway is starting; retry in a moment"},
                [("retry-after", "1")],
            )
        return _error(404, request_id, {"error": f"no route for {method} {path}"})

    def _failed(
        self,
        failure: Failure,
        request_id: str,
        target: object,
        request: GatewayRequest,
    ) -> GatewayResponse:
        """Map a failure to a JSON error; unexpected ones are logged, not shown."""
        error = failure.value
        payload: dict[str, Any] = {}
        extra: list[tuple[str, str]] = []
        if isinstance(error, GatewayError):
            status = error.status
            payload["error"] = getattr(error, "message", None) or str(error)
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                try:
                    seconds = max(0, math.ceil(retry_after))
                except (TypeError, ValueError, OverflowError):
                    pass
                else:
                    extra.append(("retry-after", str(seconds)))
            if isinstance(error, InvalidResponse):
                self._log.warn(
                    "{method} {path} (request {request_id}): {message}",
                    method=request.method,
                    path=request.path,
                    request_id=request_id,
                    message=payload["error"],
                )
        else:
            status = 500
            payload["error"] = "internal error while serving the request"
            self._log.failure(
                "{method} {path} (request {request_id}) failed unexpectedly",
                failure,
                method=request.method,
                path=request.path,
                request_id=request_id,
            )
        name = getattr(target, "name", None)
        if name is not None:
            payload["endpoint"] = name
        return _error(status, request_id, payload, extra)


class _Recorder:
    """
    Records an answer the dispatcher gives without a route (health path, 400,
    404, 405, 503) under endpoint ``""``, adds the gateway's ``traceparent``
    and hands it on; a routed answer is recorded in ``Dispatcher.serve``'s
    ``answer`` instead (no object per request on the hot path).
    """

    __slots__ = ("observer", "request", "headers", "request_id", "traceparent", "deliver", "start")

    def __init__(
        self,
        observer: Observer,
        request: GatewayRequest,
        headers: dict[str, str],
        request_id: str,
        traceparent: str,
        deliver: Callable[[GatewayResponse], object],
        start: float,
    ) -> None:
        self.observer = observer
        self.request = request
        self.headers = headers
        self.request_id = request_id
        self.traceparent = traceparent
        self.deliver = deliver
        self.start = start

    def __call__(self, response: GatewayResponse) -> None:
        """Record ``response``, then hand it on."""
        response.headers.append(("traceparent", self.traceparent))
        observer = self.observer
        now = observer.seconds()
        seconds = now - self.start
        request = self.request
        series = observer.unrouted
        bytes_in = len(request.body)
        bytes_out = len(response.body)
        series.record(request.method, response.status, bytes_in, bytes_out, seconds)
        if observer.access_log is not None:
            observer.log(
                now, self.request_id, request.client_ip, request.method, request.path,
                response.status, "", None, bytes_in, bytes_out, seconds,
                self.headers.get("user-agent"), self.traceparent,
            )
        self.deliver(response)
