"""
Applying a batch of the change log to this node's planes.

The change log says which records changed, not how: each kind is applied
by reloading or reconciling from the store, which is idempotent, so a
change seen twice (a notification and the periodic check) does no harm.
Order matters once: services and bindings before endpoints, so an endpoint
started by this batch finds its bindings; collections and domains move
routes, so they reconcile every endpoint.

An endpoint this node could not bring in line (its workers failed to start,
its binary could not be fetched) is tried again later, after 5 s, then 10 s,
up to a minute apart, until it succeeds or a newer change reconciles it:
the change that asked for it is not repeated, so without the retry the node
would stay behind until the next change of that endpoint.
"""

from __future__ import annotations

from typing import Any, Generator, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from edgegw_tx.store.errors import StoreUnavailable
from edgegw_tx.store.interface import Record


class Keys(Protocol):
    def load(self) -> "Deferred[Any]": ...


class Services(Protocol):
    def sync(self) -> "Deferred[Any]": ...


class Collections(Protocol):
    def load(self) -> "Deferred[Any]": ...


class Consumers(Protocol):
    def reload(self) -> "Deferred[Any]": ...


class Endpoints(Protocol):
    def reconcile(self, endpoint_id: str) -> "Deferred[str]": ...

    def reconcile_all(self) -> "Deferred[dict[str, str]]": ...

#: Seconds before the first retry of an endpoint that failed, and the most between two.
RETRY_FIRST = 5.0
RETRY_MOST = 60.0


class ChangeApplier:
    """``apply(changes, complete)`` for the ``Follower``: the key ring, consumers, services, collections and endpoints."""

    log = Logger()

    def __init__(
        self,
        keys: Keys,
        services: Services,
        collections: Collections,
        endpoints: Endpoints,
        clock: IReactorTime,
        consumers: Consumers | None = None,
    ) -> None:
        """
        ``clock`` times the retries of endpoints that could not be reconciled;
        ``consumers`` reloads the consumers' keys (policy/consumerload.py).
        """
        self._consumers = consumers
        self._keys = keys
        self._services = services
        self._collections = collections
        self._endpoints = endpoints
        self._clock = clock
        # endpoint id -> (the retry's call, the delay it waited)
        self._retries: dict[str, tuple[IDelayedCall, float]] = {}

    @inlineCallbacks
    def apply(self, changes: list[Record], complete: bool) -> Generator["Deferred[Any]", Any, None]:
        """
        Bring this node up to the changes; ``complete`` False: some were
        pruned, reload everything. ``StoreUnavailable`` goes to the caller
        (the batch is tried again); an endpoint that cannot be reconciled is
        logged and retried later, the others go on.
        """
        kinds = {change["kind"] for change in changes}
        everything = not complete
        if everything or "key" in kinds:
            yield self._keys.load()
        if self._consumers is not None and (everything or "consumer" in kinds):
            yield self._consumers.reload()
        if everything or kinds & {"service", "binding"}:
            yield self._services.sync()
        if everything or kinds & {"collection", "domain"}:
            yield self._collections.load()
            outcomes = yield self._endpoints.reconcile_all()
            for endpoint_id, outcome in outcomes.items():
                if outcome == "failed":
                    self._retry_later(endpoint_id)
                else:
                    self._retried(endpoint_id)
            return
        endpoints = list(dict.fromkeys(c["record_id"] for c in changes if c["kind"] == "endpoint"))
        for endpoint_id in endpoints:
            yield self._reconcile(endpoint_id)

    @inlineCallbacks
    def _reconcile(self, endpoint_id: str) -> Generator["Deferred[Any]", Any, None]:
        """Reconcile one endpoint; a failure (but the store's) is logged and retried later."""
        try:
            outcome = yield self._endpoints.reconcile(endpoint_id)
        except StoreUnavailable:
            raise
        except Exception as e:
            self.log.error("Could not apply the change of endpoint {id}: {error}", id=endpoint_id, error=e)
            self._retry_later(endpoint_id)
            return
        self._retried(endpoint_id)
        if outcome != "unchanged":
            self.log.info("Endpoint {id}: {outcome} (a change from the cluster)", id=endpoint_id, outcome=outcome)

    def _retry_later(self, endpoint_id: str) -> None:
        """Try the endpoint again after twice the last wait (the first: ``RETRY_FIRST``), at most ``RETRY_MOST``."""
        pending = self._retries.pop(endpoint_id, None)
        delay = RETRY_FIRST
        if pending is not None:
            call, waited = pending
            if call.active():
                call.cancel()
            delay = min(waited * 2, RETRY_MOST)
        call = self._clock.callLater(delay, self._retry, endpoint_id)
        self._retries[endpoint_id] = (call, delay)

    def _retry(self, endpoint_id: str) -> None:
        d = self._reconcile(endpoint_id)
        # The store gone meanwhile: the follower catches up (and reconciles) when it is back.
        d.addErrback(lambda f: self._retry_later(endpoint_id) if f.check(StoreUnavailable) else f)
        d.addErrback(lambda f: self.log.failure("Retrying endpoint {id} failed", f, id=endpoint_id))

    def _retried(self, endpoint_id: str) -> None:
        """The endpoint is in line: no retry of it is due any more."""
        pending = self._retries.pop(endpoint_id, None)
        if pending is not None and pending[0].active():
            pending[0].cancel()

    def stop(self) -> None:
        """No more retries (the node leaves the cluster)."""
        for call, _ in self._retries.values():
            if call.active():
                call.cancel()
        self._retries.clear()
