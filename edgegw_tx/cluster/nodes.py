"""
The nodes of a cluster: each one's heartbeat, and the list ``GET /api/nodes`` shows.

Every ``interval`` seconds a node writes its row (address, version, when it
started, how many workers it runs per endpoint); the store stamps it with
its own clock, so a node is "down" when its row is more than ``missed``
heartbeats old by the store's clock, whatever the nodes' clocks say. With a
store that is not shared there is no row: the list is this node, from memory.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Generator

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from edgegw_tx import __version__
from edgegw_tx.store.errors import StoreUnavailable
from edgegw_tx.store.interface import INodeStore, Record


def default_node_name(listen: str, host: str | None = None) -> str:
    """``<host name>:<data-plane port>`` (the port of a ``tcp:PORT...`` endpoint string; else the string)."""
    host = host or socket.gethostname()
    parts = listen.split(":")
    if len(parts) >= 2 and parts[0] in ("tcp", "tcp6", "ssl") and parts[1].isdigit():
        return f"{host}:{parts[1]}"
    if parts[0].isdigit():
        return f"{host}:{parts[0]}"
    return f"{host}:{listen}"


def address_of(port: Any, host: str | None = None) -> str:
    """``host:port`` of a listening port (its interface, or the host name when it listens on all)."""
    bound = port.getHost()
    interface = getattr(bound, "host", None)
    number = getattr(bound, "port", None)
    if number is None:
        return str(bound)
    if interface in (None, "", "0.0.0.0", "::"):
        interface = host or socket.gethostname()
    if ":" in interface:
        return f"[{interface}]:{number}"
    return f"{interface}:{number}"


def _now() -> str:
    """Now, as the store writes times (ISO 8601, UTC, to the second)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class NodeDirectory:
    """
    This node (``name``) and, with a shared ``store``, the others. ``workers()``
    is ``{endpoint_id: live worker count}`` (``EndpointManager.workers_by_endpoint``).
    ``address`` and ``admin_address`` may be set once the listeners are bound.
    """

    log = Logger()

    def __init__(
        self,
        store: INodeStore,
        name: str,
        workers: Callable[[], dict[str, int]],
        clock: IReactorTime,
        shared: bool,
        address: str = "",
        admin_address: str = "",
        version: str = __version__,
        interval: float = 2.0,
        missed: int = 3,
        started_at: str | None = None,
        where: str = "the store",
    ) -> None:
        self._store = store
        self.name = name
        self._workers = workers
        self._clock = clock
        self.shared = shared
        self.address = address
        self.admin_address = admin_address
        self.version = version
        self.interval = interval
        self.missed = missed
        self.started_at = started_at or _now()
        self._where = where
        self._loop: LoopingCall | None = None
        self._beating: Deferred[None] | None = None
        self._reported = False

    def start(self) -> None:
        """Send a heartbeat now and every ``interval`` seconds (shared stores only)."""
        if not self.shared:
            return
        loop = self._loop = LoopingCall(self._beat)
        loop.clock = self._clock
        loop.start(self.interval, now=True)

    def stop(self) -> "Deferred[None]":
        """No more heartbeats; fires when the one being written is done."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._beating is None:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._beating.addBoth(lambda _: waiting.callback(None))
        return waiting

    def row(self) -> Record:
        """This node's row as a heartbeat writes it."""
        return {
            "name": self.name,
            "address": self.address,
            "admin_address": self.admin_address,
            "version": self.version,
            "started_at": self.started_at,
            "workers": self._live_workers(),
        }

    def heartbeat(self) -> "Deferred[None]":
        """Write this node's row now."""
        return self._store.heartbeat(self.row())

    def _beat(self) -> None:
        """One heartbeat of the loop; never fails the loop (a failure is logged once per outage)."""
        if self._beating is not None:
            return
        d = self._beating = self.heartbeat()

        def ok(_: object) -> None:
            if self._reported:
                self._reported = False
                self.log.info("Heartbeats of node {name} are written again", name=self.name)

        def failed(failure: Any) -> None:
            if not self._reported:
                self._reported = True
                if failure.check(StoreUnavailable):
                    self.log.warn("Cannot write the heartbeat of node {name}: {error}", name=self.name,
                                  error=failure.value)
                else:
                    self.log.failure("Writing the heartbeat of node {name} failed", failure, name=self.name)

        def done(_: object) -> None:
            self._beating = None

        d.addCallbacks(ok, failed)
        d.addBoth(done)

    def _live_workers(self) -> dict[str, int]:
        try:
            return {endpoint: int(count) for endpoint, count in self._workers().items() if count}
        except Exception:
            self.log.failure("Counting this node's workers failed")
            return {}

    @inlineCallbacks
    def list(self) -> Generator["Deferred[Any]", Any, list[Record]]:
        """
        Every node: ``name``, ``address``, ``admin_address``, ``version``,
        ``started_at``, ``last_seen``, ``state`` ("up" or "down"),
        ``workers`` (total), ``endpoints`` (``{endpoint_id: workers}``) and
        ``self``. This node's own workers are counted live.
        """
        if not self.shared:
            return [self._describe(dict(self.row(), last_seen=_now(), seconds_since_seen=0.0))]
        rows = yield self._store.list_nodes()
        found = [self._describe(row) for row in rows]
        if not any(node["self"] for node in found):
            # Before the first heartbeat is written (or while the store is not written to).
            found.append(self._describe(dict(self.row(), last_seen=None, seconds_since_seen=0.0)))
            found.sort(key=lambda node: node["name"])
        return found

    def _describe(self, row: Record) -> Record:
        mine = row["name"] == self.name
        endpoints = self._live_workers() if mine else dict(row.get("workers") or {})
        since = row.get("seconds_since_seen")
        down = since is not None and float(since) > self.missed * self.interval
        return {
            "name": row["name"],
            "address": row.get("address") or "",
            "admin_address": row.get("admin_address") or "",
            "version": row.get("version") or "",
            "started_at": row.get("started_at"),
            "last_seen": row.get("last_seen"),
            "state": "up" if mine or not down else "down",
            "workers": sum(int(n) for n in endpoints.values()),
            "endpoints": endpoints,
            "self": mine,
        }
