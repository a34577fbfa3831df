"""
Applying a batch of the change log to this node's planes.

The change log says which records changed, not how: each kind is applied
by reloading or reconciling from the store, which is idempotent, so a
change seen twice (a notification and the periodic check) does no harm.
Order matters once: services and bindings before endpoints, so an endpoint
started by this batch finds its bindings; collections and domains move
routes, so they reconcile every endpoint.
"""

from __future__ import annotations

from typing import Any, Generator, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from edgegw_tx.store.errors import StoreUnavailable
from edgegw_tx.store.interface import Record


class Keys(Protocol):
    def load(self) -> "Deferred[Any]": ...


class Services(Protocol):
    def sync(self) -> "Deferred[Any]": ...


class Collections(Protocol):
    def load(self) -> "Deferred[Any]": ...


class Endpoints(Protocol):
    def reconcile(self, endpoint_id: str) -> "Deferred[str]": ...

    def reconcile_all(self) -> "Deferred[Any]": ...


class ChangeApplier:
    """``apply(changes, complete)`` for the ``Follower``: the key ring, services, collections and endpoints."""

    log = Logger()

    def __init__(self, keys: Keys, services: Services, collections: Collections, endpoints: Endpoints) -> None:
        self._keys = keys
        self._services = services
        self._collections = collections
        self._endpoints = endpoints

    @inlineCallbacks
    def apply(self, changes: list[Record], complete: bool) -> Generator["Deferred[Any]", Any, None]:
        """
        Bring this node up to the changes; ``complete`` False: some were
        pruned, reload everything. ``StoreUnavailable`` goes to the caller
        (the batch is tried again); an endpoint that cannot be reconciled is
        logged, the others go on.
        """
        kinds = {change["kind"] for change in changes}
        everything = not complete
        if everything or "key" in kinds:
            yield self._keys.load()
        if everything or kinds & {"service", "binding"}:
            yield self._services.sync()
        if everything or kinds & {"collection", "domain"}:
            yield self._collections.load()
            yield self._endpoints.reconcile_all()
            return
        endpoints = list(dict.fromkeys(c["record_id"] for c in changes if c["kind"] == "endpoint"))
        for endpoint_id in endpoints:
            try:
                outcome = yield self._endpoints.reconcile(endpoint_id)
            except StoreUnavailable:
                raise
            except Exception as e:
                self.log.error("Could not apply the change of endpoint {id}: {error}", id=endpoint_id, error=e)
            else:
                if outcome != "unchanged":
                    self.log.info("Endpoint {id}: {outcome} (a change from the cluster)", id=endpoint_id,
                                  outcome=outcome)
