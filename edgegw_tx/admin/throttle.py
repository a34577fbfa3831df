"""
Brute-force protection for the management API's keys.

Failed authentications (no key, another scheme, an unknown key) are counted per
client address in a token bucket: a client starts with ``burst`` attempts and
earns ``rate`` more per second, up to ``burst``. A failure from a client with
no token left is refused with 429 and takes nothing more. Successful
authentications take no token and are never refused: the API checks the key
first (admin/api.py), because other clients may share the operator's address
(a proxy, or handler code on the same host) and failing from it in a loop must
not lock the operator out.

Why per address and not per presented key: a guesser sends a new key every
time, so buckets per key would never run dry; an address is what the guesser
cannot change for free. With 256-bit keys guessing is hopeless anyway; the
throttle keeps a guessing loop cheap for the gateway and visible in its log.

Memory stays bounded: only clients that failed have a bucket, a bucket that has
refilled completely says nothing and is dropped, and the table never holds more
than ``max_clients`` (the least recently failing client goes first).
"""

import math
from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime

BURST = 5
RATE = 2.0
MAX_CLIENTS = 10_000


class AuthThrottle:
    """Token buckets of failed authentications, per client address (see the module docstring)."""

    def __init__(
        self,
        clock: IReactorTime,
        burst: float = BURST,
        rate: float = RATE,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self._clock = clock
        self.burst = float(burst)
        self.rate = float(rate)
        self.max_clients = max_clients
        # address -> (tokens, time of that count); oldest failure first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, bucket: tuple[float, float], now: float) -> float:
        tokens, since = bucket
        return min(self.burst, tokens + (now - since) * self.rate)

    def _evict_idle(self, now: float) -> None:
        """
        Drop full buckets from the front (least recent failure first) up to the
        first one still refilling: amortised O(1), and every bucket is full
        ``burst / rate`` seconds after its last failure at the latest.
        """
        while self._buckets:
            address, bucket = next(iter(self._buckets.items()))
            if self._tokens(bucket, now) < self.burst:
                break
            del self._buckets[address]

    def retry_after(self, address: str) -> int:
        """Seconds until ``address`` may try again (an int ≥ 1), or 0 when it may now."""
        now = self._clock.seconds()
        self._evict_idle(now)
        bucket = self._buckets.get(address)
        if bucket is None:
            return 0
        tokens = self._tokens(bucket, now)
        if tokens >= 1:
            return 0
        return max(1, math.ceil((1 - tokens) / self.rate))

    def failed(self, address: str) -> None:
        """Take a token from ``address`` for a failed authentication."""
        now = self._clock.seconds()
        self._evict_idle(now)
        bucket = self._buckets.pop(address, None)
        tokens = self.burst if bucket is None else self._tokens(bucket, now)
        self._buckets[address] = (max(0.0, tokens - 1), now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
