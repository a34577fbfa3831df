"""
A route target that serves an endpoint by pools of several of its versions
(the ``traffic_split`` policy part: a canary).

``SplitTarget`` has the pool's face the dispatcher calls (``submit(frame,
answer)`` and ``request(frame)``), so a route holds it as it would a pool and
the dispatcher does not know the difference.  Each request goes to one
version's pool:

* drawn by weight, with an injected random source (tests seed it), or
* with ``sticky`` (``header:<Name>`` / ``cookie:<name>``), by a hash of that
  header field's or cookie's value, so one client stays on one version for as
  long as the weights stay.  The hash is CRC-32, stable across processes and
  restarts (Python's ``hash`` of a string is not), salted with the endpoint's
  name so a client is not the first of every endpoint's canary.  A request
  without the field or cookie is drawn by weight.

Requests are counted per version in a ``Served`` the deployments keep per
endpoint, so a new target for new weights (placed atomically over the same
pools) goes on counting.  A target is immutable: weights change by placing a
new one.
"""

from __future__ import annotations

import bisect
import random as _random
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["Choice", "Served", "SplitTarget", "cookie_value", "sticky_reader"]

#: ``(version digest, weight, pool)``: one version's share of the requests.
Choice = tuple[str, int, Any]

_SPAN = 1 << 32
"""CRC-32 values are below this: a hash maps onto the weights as ``crc * total // _SPAN``."""


class Served:
    """Requests sent to each version of one endpoint while it is split (``{digest: count}``)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def get(self, version: str) -> int:
        """How many requests ``version`` was given."""
        return self.counts.get(version, 0)

    def keep_only(self, versions: Sequence[str]) -> None:
        """Forget the counts of versions no longer in the split."""
        for version in [v for v in self.counts if v not in versions]:
            del self.counts[version]


class _Pool(Protocol):
    """A worker pool as the dispatcher calls it (``request``; ``submit`` when it has one)."""

    def request(self, frame: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Serve ``frame``."""


def cookie_value(header: str | None, name: str) -> str | None:
    """
    The value of cookie ``name`` in a request's ``Cookie`` field (its
    ``name=value`` pairs joined by ``; ``), or None; the first one wins.
    """
    if not header:
        return None
    for pair in header.split(";"):
        key, eq, value = pair.strip().partition("=")
        if eq and key == name:
            return value.strip().strip('"')
    return None


def sticky_reader(sticky: str | None) -> Callable[[dict[str, str]], str | None] | None:
    """
    What reads a request's sticky value from the frame's headers (lower-case
    names), for ``header:<Name>`` or ``cookie:<name>``; None without ``sticky``.
    """
    if not sticky:
        return None
    kind, _, name = sticky.partition(":")
    if kind == "header":
        field = name.lower()
        return lambda headers: headers.get(field) or None
    if kind == "cookie":
        return lambda headers: cookie_value(headers.get("cookie"), name)
    raise ValueError(f"sticky must be 'header:<Name>' or 'cookie:<name>', not {sticky!r}")


class SplitTarget:
    """
    One endpoint's pools by version, each chosen per request by weight or
    sticky hash; see the module docstring.

    :ivar name: the endpoint's name (the observer's series, as a pool's).
    :ivar version: None: the version serving a request is its pool's.
    """

    def __init__(
        self,
        name: str,
        choices: Sequence[Choice],
        served: Served,
        sticky: str | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        """
        :param choices: the versions, their weights (any non-negative
            integers, at least one above 0) and their pools.
        :param served: where requests are counted per version.
        :param sticky: ``header:<Name>``, ``cookie:<name>`` or None.
        :param random: a float in [0, 1) per call (``random.Random(seed).random`` in tests).
        """
        if not choices:
            raise ValueError("a split needs at least one version")
        if any(weight < 0 for _, weight, _ in choices):
            raise ValueError("weights must not be negative")
        self.name = name
        self.version: str | None = None
        self.sticky = sticky
        self.served = served
        self._versions = [version for version, _, _ in choices]
        self._pools = [pool for _, _, pool in choices]
        self._weights = [weight for _, weight, _ in choices]
        self._submits = [getattr(pool, "submit", None) for pool in self._pools]
        # Running totals of the weights: a point in [0, total) picks the first bound above it.
        self._bounds: list[int] = []
        total = 0
        for weight in self._weights:
            total += weight
            self._bounds.append(total)
        if total <= 0:
            raise ValueError("at least one version needs a weight above 0")
        self._total = total
        self._random = random if random is not None else _random.Random().random
        self._read = sticky_reader(sticky)
        self._salt = zlib.crc32(name.encode("utf-8"))

    def choices(self) -> list[tuple[str, int]]:
        """``(version, weight)`` of each version, in order."""
        return list(zip(self._versions, self._weights))

    def pools(self) -> list[Any]:
        """The pools, in the order of the versions."""
        return list(self._pools)

    def wire(self) -> dict[str, Any]:
        """
        The split as data-plane processes are sent it (``--processes N``):
        each version's weight and its pool's ``number`` (a ``PoolProxy``'s),
        and ``sticky``; a process builds its own target over its own pools.
        """
        return {
            "versions": [[version, weight, pool.number] for version, weight, pool in zip(
                self._versions, self._weights, self._pools)],
            "sticky": self.sticky,
        }

    def pick(self, headers: dict[str, str]) -> int:
        """The index of the version that serves a request with these header fields."""
        point: int | None = None
        read = self._read
        if read is not None:
            value = read(headers)
            if value is not None:
                point = zlib.crc32(value.encode("utf-8", "surrogatepass"), self._salt) * self._total // _SPAN
        if point is None:
            point = int(self._random() * self._total)
        return bisect.bisect_right(self._bounds, point)

    def _choose(self, frame: dict[str, Any]) -> int:
        """Pick the version for ``frame`` and count it."""
        index = self.pick(frame.get("headers") or {})
        counts = self.served.counts
        version = self._versions[index]
        counts[version] = counts.get(version, 0) + 1
        return index

    def submit(self, frame: dict[str, Any], answer: Callable[[Any], object]) -> None:
        """Hand ``frame`` to the chosen version's pool; ``answer`` is called once, as a pool's ``submit`` does."""
        index = self._choose(frame)
        submit = self._submits[index]
        if submit is not None:
            submit(frame, answer)
            return
        try:
            d = self._pools[index].request(frame)
        except Exception:
            answer(Failure())
            return
        d.addBoth(answer)

    def request(self, frame: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Serve ``frame`` by the chosen version's pool."""
        result: Deferred[dict[str, Any]] = self._pools[self._choose(frame)].request(frame)
        return result
