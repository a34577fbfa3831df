"""
What a store fails with, whichever database is behind it.

These are part of the store's contract (``edgegw_tx.store.interface.IStore``):
the management API turns them into 404s, 409s and 503s, so every store
raises these, never its driver's own errors.  The last three are about the
store as a whole: one the gateway cannot use refuses to start
(``StoreRefused``), with one line for the operator.
"""

from __future__ import annotations

from typing import Any


class Conflict(Exception):
    """A uniqueness rule of the store was broken (e.g. the same route twice)."""


class ServiceInUse(Conflict):
    """
    A service that endpoints are bound to cannot be deleted. ``bindings`` lists
    them: ``{"endpoint_id", "endpoint_name", "pool_id"}`` each.
    """

    def __init__(self, service_id: str, bindings: list[dict[str, Any]]) -> None:
        super().__init__(f"service {service_id} is bound to {len(bindings)} endpoint(s)")
        self.service_id = service_id
        self.bindings = bindings


class LastAdminKey(Conflict):
    """The last ``admin`` API key cannot be deleted: nobody could manage the gateway."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"key {key_id} is the last admin key")
        self.key_id = key_id


class InUse(Conflict):
    """
    A domain or collection still has records that depend on it; ``counts`` says
    how many of each, e.g. ``{"endpoints": 2, "collections": 1}``.
    """

    def __init__(self, what: str, record_id: str, counts: dict[str, int]) -> None:
        super().__init__(f"{what} {record_id} is still used: {counts}")
        self.counts = counts


class RouteClash(Conflict):
    """
    Moving endpoints (a domain's new host, a collection's new base path or
    domain) would give ``endpoint_id`` a route (its ``position``-th) that
    ``other_id`` (named ``other_name``) already has; nothing was changed.
    """

    def __init__(
        self, endpoint_id: str, other_id: str | None, other_name: str | None, position: int = 0
    ) -> None:
        super().__init__(f"endpoint {endpoint_id} would take the route of endpoint {other_id}")
        self.endpoint_id = endpoint_id
        self.other_id = other_id
        self.other_name = other_name
        self.position = position


class Stale(Exception):
    """
    A write conditional on a record's revision (``If-Match``) found it changed
    since: someone else wrote it first. ``current`` is its revision now.
    """

    def __init__(self, what: str, record_id: str, current: int) -> None:
        super().__init__(f"{what} {record_id} is at revision {current} now")
        self.what = what
        self.record_id = record_id
        self.current = current


class StoreUnavailable(Exception):
    """
    The store cannot be reached (its database is down, the connection was
    cut, or a node serves its last-known configuration offline); ``str()``
    names the store. The management API answers 503 with it.
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"the store {where} is unavailable: {reason}")
        self.where = where
        self.reason = reason


class NoFreeUid(Exception):
    """Every uid of the workers' range is taken (``--worker-uids``)."""


class Missing(LookupError):
    """A record another one refers to does not exist; ``what`` is e.g. ``"endpoint"``."""

    def __init__(self, what: str, record_id: str) -> None:
        super().__init__(f"no {what} with id {record_id!r}")
        self.what = what
        self.record_id = record_id


class StoreRefused(Exception):
    """
    The gateway cannot use this store; ``str()`` is one line for the operator
    (``twistd`` prints it and exits, no traceback).
    """


class StoreTooNew(StoreRefused):
    """
    The store has a migration this code does not know: a newer edgegw wrote
    it, and this one would misread or damage its data.
    """

    def __init__(self, where: str, stored: int, known: int) -> None:
        super().__init__(
            f"the store {where} is at schema version {stored}, newer than this edgegw's {known}:"
            " run the edgegw that wrote it (or a newer one)"
        )
        self.stored = stored
        self.known = known


class MigrationFailed(StoreRefused):
    """A migration failed; the store was left as it was before the first one ran."""

    def __init__(self, where: str, version: int, name: str, error: BaseException) -> None:
        super().__init__(
            f"migration {version:04d}_{name} of the store {where} failed, nothing was changed: {error}"
        )
        self.version = version
        self.name = name
