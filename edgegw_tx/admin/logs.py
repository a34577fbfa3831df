"""
The workers' log: stderr lines of each endpoint's workers, kept in memory.

A bounded ring per endpoint keeps a chatty handler from growing the gateway
without limit; each line gets a timestamp from the injected clock so tests can
pin ``since`` filtering on a ``Clock``.
"""

from collections import deque
from datetime import datetime, timezone

DEFAULT_LINES_PER_ENDPOINT = 2000


class LogBook:
    def __init__(self, clock, max_lines=DEFAULT_LINES_PER_ENDPOINT):
        self._clock = clock
        self._max_lines = max_lines
        self._rings = {}

    def writer(self, endpoint_id):
        """A ``log(stream, line)`` callable that records under ``endpoint_id``."""
        ring = self._rings.setdefault(endpoint_id, deque(maxlen=self._max_lines))

        def log(stream, line):
            ring.append((self._clock.seconds(), stream, line))

        return log

    def lines(self, endpoint_id, since=None):
        """Entries newer than ``since`` (epoch seconds), oldest first."""
        ring = self._rings.get(endpoint_id, ())
        return [
            {
                "time": when,
                "timestamp": datetime.fromtimestamp(when, timezone.utc).isoformat(),
                "stream": stream,
                "line": line,
            }
            for when, stream, line in ring
            if since is None or when > since
        ]

    def forget(self, endpoint_id):
        self._rings.pop(endpoint_id, None)
