"""
One node's part in a cluster: joining at the store's current revision,
following its change log once started, beating, and leaving.

The runtime builds the planes; this module is what makes them a node of a
cluster when the store is shared (``--store postgresql://...``): it learns the
revision the node's configuration is loaded at (before loading, so no change
made meanwhile is missed), then follows the change log from there (woken by
``LISTEN``, every ``interval`` seconds anyway), saves the last-known
configuration after each batch, and sends heartbeats once the node's ports are
bound. A node that starts while the database is down says so and catches up
when the store calls it back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from edgegw_tx.cluster.follower import Follower, current_revision
from edgegw_tx.cluster.nodes import NodeDirectory, address_of
from edgegw_tx.cluster.notify import ChangeListener
from edgegw_tx.cluster.sync import ChangeApplier
from edgegw_tx.store.errors import StoreUnavailable

#: How many change rows the log keeps (a node further behind reloads everything).
CHANGES_KEPT = 10_000


class Membership:
    """A node's following of a shared store; see the module docstring."""

    log = Logger()

    def __init__(
        self,
        store: Any,
        nodes: NodeDirectory,
        applier: ChangeApplier,
        reactor: Any,
        uri: str,
        snapshot_path: str,
        interval: float = 2.0,
        listener: Callable[..., ChangeListener] | None = None,
    ) -> None:
        """
        ``store`` is an ``IClusterStore``; ``applier`` applies each batch of
        the change log to this node's planes; ``uri`` is the database's, for the
        ``LISTEN`` connection (``listener`` makes it: a ``ChangeListener`` unless
        given); ``snapshot_path`` is
        where the last-known configuration is saved.
        """
        self._store = store
        self.nodes = nodes
        self._applier = applier
        self._reactor = reactor
        self._uri = uri
        self.snapshot_path = snapshot_path
        self._interval = interval
        self._make_listener = listener
        self.where = str(getattr(store, "where", "the store"))
        self.revision = 0
        self.follower: Follower | None = None
        self.listener: ChangeListener | None = None

    def join(self) -> "Deferred[None]":
        """Learn the revision this node starts from; offline, say so and catch up when the store answers."""
        d = current_revision(self._store)

        def known(revision: int) -> None:
            self.revision = revision
            if getattr(self._store, "online", True):
                self.log.info(
                    "Node {name} joins the cluster of {where} at revision {revision}",
                    name=self.nodes.name,
                    where=self.where,
                    revision=revision,
                )
                return
            self.log.warn(
                "Node {name}: {where} cannot be reached; starting from the last-known configuration"
                " (revision {revision}) in {path}, and catching up when it answers",
                name=self.nodes.name,
                where=self.where,
                revision=revision,
                path=self.snapshot_path,
            )
            self._store.when_online(self._back_online)

        return d.addCallback(known)

    def follow(self, ports: "Deferred[list[Any]]") -> None:
        """
        Started: follow the change log, listen for its notifications, save the
        snapshot, and beat once ``ports`` (data plane first, management API
        last) are bound: they are the node's addresses.
        """
        self.follower = Follower(
            self._store,
            self._applier.apply,
            self._reactor,
            self.revision,
            interval=self._interval,
            snapshot=lambda: self._store.save_snapshot(self.snapshot_path),
            where=self.where,
            keep=CHANGES_KEPT,
        )
        self.follower.start()
        if self._uri:
            make = self._make_listener or ChangeListener
            self.listener = make(self._uri, self.follower.wake, self._reactor, where=self.where)
            self.listener.start()
        if getattr(self._store, "online", True):
            # So that a restart while the database is down has this configuration to serve.
            self.follower.save_snapshot()
        ports.addCallbacks(self._beat, lambda f: self.log.failure("No listening ports", f))

    def _beat(self, ports: list[Any]) -> None:
        try:
            self.nodes.address = address_of(ports[0])
            self.nodes.admin_address = address_of(ports[-1])
        except Exception:
            self.log.failure("Cannot tell this node's addresses")
        self.nodes.start()

    def _back_online(self) -> None:
        """The shared store answers again: catch up on what changed meanwhile."""
        if self.follower is not None:
            self.follower.wake()

    def leave(self) -> "Deferred[None]":
        """
        Stop following, listening and heartbeats (waiting for a batch being
        applied), then take the node's row out of the node list: a node
        stopped on purpose is gone, not "down" (that is for one that died).
        A store that cannot be reached leaves the row, which turns "down".
        """
        waiting = [self.nodes.stop()]
        if self.listener is not None:
            waiting.append(self.listener.stop())
        if self.follower is not None:
            waiting.append(self.follower.stop())
        d = gatherResults(waiting)
        d.addCallback(lambda _: self._applier.stop())
        d.addCallback(lambda _: self._store.remove_node(self.nodes.name))
        d.addErrback(self._not_left)
        return d.addCallback(lambda _: None)

    def _not_left(self, failure: Failure) -> None:
        if failure.check(StoreUnavailable):
            self.log.warn("Node {name} leaves while {error}", name=self.nodes.name, error=failure.value)
            return
        self.log.failure("Leaving the cluster failed", failure)
