"""
W3C Trace Context for the data plane: one ``traceparent`` per request.

A request that comes with a valid ``traceparent`` keeps its trace id and gets
the gateway's own span id as the new parent id, so the handler, the response
and the access log carry the caller's trace; one without (or with an invalid
one) starts a new trace.  An invalid value is never echoed: it is replaced
whole, since a header the gateway cannot parse may carry anything.

It runs once per request, so it is cheap: one compiled regular expression
checks the header, and new ids are slices of a hex string made from
``os.urandom`` in bulk (a few hundred requests per refill) rather than one
random call per id.
"""

import os
import re
from collections.abc import Callable

VERSION = "00"
NEW_TRACE_FLAGS = "01"
"""Flags of a trace the gateway starts: *sampled*, since the gateway records
it (the access log, the endpoint's log lines)."""

_TRACE_CHARS = 32
_SPAN_CHARS = 16
_ZERO_TRACE = b"0" * _TRACE_CHARS
_ZERO_SPAN = b"0" * _SPAN_CHARS
_ZERO_TRACE_STR = "0" * _TRACE_CHARS
_ZERO_SPAN_STR = "0" * _SPAN_CHARS

# version (not ff) - trace id - parent id - flags, lower-case hex only; a
# version above 00 may carry more fields after a dash (the spec's rule for
# versions this code does not know yet).
_TRACEPARENT = re.compile(
    rb"(?!ff)([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x20-\x7e]*)?"
)


def parse_traceparent(value: bytes) -> tuple[str, str] | None:
    """
    The trace id and flags of a valid ``traceparent`` header value.

    :return: ``(trace_id, flags)``, or None when ``value`` is not a valid
        traceparent (bad version, wrong lengths, upper-case or other non-hex
        characters, an all-zero trace or parent id, extra fields on version 00).
    """
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if rest is not None and version == b"00":
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id.decode(), flags.decode()


class TraceContext:
    """
    Gives each request its trace id and the ``traceparent`` the gateway sends
    on (to the handler, in the response, in the access log).

    One per data-plane process; not thread-safe (the reactor thread uses it).

    :param random_bytes: ``random_bytes(n)`` gives ``n`` random bytes; tests
        pass a deterministic one.
    :param batch: random bytes drawn per refill of the id buffer.
    """

    def __init__(
        self, random_bytes: Callable[[int], bytes] = os.urandom, batch: int = 8192
    ) -> None:
        if batch * 2 < _TRACE_CHARS:
            raise ValueError(f"batch must be at least {_TRACE_CHARS // 2} bytes")
        self._random_bytes = random_bytes
        self._batch = batch
        self._hex = ""
        self._at = 0

    def _draw(self, chars: int, zero: str) -> str:
        """``chars`` new random hex digits, never all zeros."""
        while True:
            at = self._at
            end = at + chars
            if end > len(self._hex):
                self._hex = self._random_bytes(self._batch).hex()
                at, end = 0, chars
            self._at = end
            piece = self._hex[at:end]
            if piece != zero:
                return piece

    def new_trace_id(self) -> str:
        """A new random trace id: 32 lower-case hex digits, not all zero."""
        return self._draw(_TRACE_CHARS, _ZERO_TRACE_STR)

    def new_span_id(self) -> str:
        """A new random span (parent) id: 16 lower-case hex digits, not all zero."""
        return self._draw(_SPAN_CHARS, _ZERO_SPAN_STR)

    def for_request(self, traceparent: bytes | None) -> tuple[str, str]:
        """
        The trace id and the outgoing ``traceparent`` of one request.

        :param traceparent: the request's ``traceparent`` header, None when it
            has none.
        :return: ``(trace_id, traceparent)``: the incoming trace id and flags
            with a new span id when ``traceparent`` is valid, else a new trace
            (the invalid value is dropped, never echoed).
        """
        # Inlined fast paths (this runs once per request): one slice of the
        # id buffer for both new ids; the slow path only on a refill or an
        # all-zero draw.
        if traceparent:
            match = _TRACEPARENT.fullmatch(traceparent)
            if match is not None:
                version, trace, parent, flags, rest = match.groups()
                if (
                    (rest is None or version != b"00")
                    and trace != _ZERO_TRACE
                    and parent != _ZERO_SPAN
                ):
                    at = self._at
                    end = at + _SPAN_CHARS
                    span = self._hex[at:end]
                    if len(span) == _SPAN_CHARS and span != _ZERO_SPAN_STR:
                        self._at = end
                    else:
                        span = self.new_span_id()
                    trace_id = trace.decode()
                    return trace_id, f"00-{trace_id}-{span}-{flags.decode()}"
        at = self._at
        end = at + _TRACE_CHARS + _SPAN_CHARS
        both = self._hex[at:end]
        trace_id, span = both[:_TRACE_CHARS], both[_TRACE_CHARS:]
        if len(span) == _SPAN_CHARS and trace_id != _ZERO_TRACE_STR and span != _ZERO_SPAN_STR:
            self._at = end
        else:
            trace_id, span = self.new_trace_id(), self.new_span_id()
        return trace_id, f"00-{trace_id}-{span}-01"


    def traceparent(self, given: str | None) -> str:
        """
        The outgoing ``traceparent`` of a request whose header is ``given``
        (a ``str`` as the request frame carries it; None: none): as
        ``for_request(...)[1]``, for the dispatcher, which needs no more.
        """
        if given:
            return self.for_request(given.encode("latin-1", "replace"))[1]
        at = self._at
        end = at + _TRACE_CHARS + _SPAN_CHARS
        both = self._hex[at:end]
        if (
            len(both) == _TRACE_CHARS + _SPAN_CHARS
            and both[:_TRACE_CHARS] != _ZERO_TRACE_STR
            and both[_TRACE_CHARS:] != _ZERO_SPAN_STR
        ):
            self._at = end
            return f"00-{both[:_TRACE_CHARS]}-{both[_TRACE_CHARS:]}-01"
        return self.for_request(None)[1]


def trace_id_of(traceparent: str | bytes | None) -> str | None:
    """
    The trace id in a ``traceparent`` the gateway wrote, for readers off the
    request path (the endpoint's log lines); None when there is none or it is
    not valid.
    """
    if not traceparent:
        return None
    if isinstance(traceparent, str):
        try:
            traceparent = traceparent.encode("ascii")
        except UnicodeEncodeError:
            return None
    parsed = parse_traceparent(traceparent)
    return parsed[0] if parsed is not None else None
