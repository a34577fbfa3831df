"""
The workers' log: stderr lines of each endpoint's workers, kept in memory.

A bounded ring per endpoint keeps a chatty handler from growing the gateway
without limit: it holds at most ``max_lines`` lines and ``max_chars``
characters, dropping the oldest lines first, and a line longer than
``max_line`` characters is cut there (with a note of how much was cut).  So an
endpoint's log costs at most about ``max_chars`` characters of memory however
much its workers write (a 10 MB burst on stderr leaves its last lines).  Each
line gets a timestamp from the injected clock so tests can pin ``since``
filtering on a ``Clock``, and the trace id the pool gave it (the request in
flight on the worker that wrote it, see ``WorkerPool``), or None.
"""

from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from twisted.internet.interfaces import IReactorTime

DEFAULT_LINES_PER_ENDPOINT = 2000
DEFAULT_CHARS_PER_ENDPOINT = 1024 * 1024
DEFAULT_LINE_CHARS = 8192


class _Ring:
    """One endpoint's lines, oldest first, and their total length."""

    __slots__ = ("entries", "chars")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, str, str, str | None]] = deque()  # (time, stream, line, trace id)
        self.chars = 0


class LogBook:
    """Every endpoint's ring of worker lines (see the module docstring)."""

    def __init__(
        self,
        clock: IReactorTime,
        max_lines: int = DEFAULT_LINES_PER_ENDPOINT,
        max_chars: int = DEFAULT_CHARS_PER_ENDPOINT,
        max_line: int = DEFAULT_LINE_CHARS,
    ) -> None:
        if max_lines < 1 or max_line < 1 or max_chars < max_line:
            raise ValueError("a log needs max_lines >= 1 and max_chars >= max_line >= 1")
        self._clock = clock
        self._max_lines = max_lines
        self._max_chars = max_chars
        self._max_line = max_line
        self._rings: dict[str, _Ring] = {}

    def writer(self, endpoint_id: str) -> Callable[[str, str, str | None], None]:
        """A ``log(stream, line, trace_id=None)`` callable that records under ``endpoint_id``."""
        ring = self._rings.get(endpoint_id)
        if ring is None:
            ring = self._rings[endpoint_id] = _Ring()
        entries = ring.entries
        max_lines, max_chars, max_line = self._max_lines, self._max_chars, self._max_line

        def log(stream: str, line: str, trace_id: str | None = None) -> None:
            if len(line) > max_line:
                line = "%s [... %d more characters]" % (line[:max_line], len(line) - max_line)
            entries.append((self._clock.seconds(), stream, line, trace_id))
            ring.chars += len(line)
            while len(entries) > max_lines or ring.chars > max_chars:
                ring.chars -= len(entries.popleft()[2])

        return log

    def lines(self, endpoint_id: str, since: float | None = None) -> list[dict[str, Any]]:
        """Entries newer than ``since`` (epoch seconds), oldest first."""
        ring = self._rings.get(endpoint_id)
        return [
            {
                "time": when,
                "timestamp": datetime.fromtimestamp(when, timezone.utc).isoformat(),
                "stream": stream,
                "line": line,
                "trace_id": trace_id,
            }
            for when, stream, line, trace_id in (ring.entries if ring is not None else ())
            if since is None or when > since
        ]

    def forget(self, endpoint_id: str) -> None:
        """Drop ``endpoint_id``'s lines (it was deleted)."""
        self._rings.pop(endpoint_id, None)
