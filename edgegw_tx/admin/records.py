"""
The endpoint records: create, read, update and delete of what the store keeps
of an endpoint, with their validation and placement.

The records own the *routing lock*: one write at a time of everything that
decides routes: endpoint creates and updates (here), domain and collection
writes (admin/domains.py, through ``routing_write``) and the moment a started
pool takes its route (admin/deployments.py). So a check ("this domain exists",
"no endpoint takes this route") and the write it guards cannot be split by
another write. Where an endpoint goes (its collection's base path and domain)
is asked of the *placement*, the ``CollectionManager``, once it is set.

Each endpoint gets its own worker uid at create (from the ``UidAllocator``;
older endpoints at their first start) and the store frees it with the record.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
import builtins
from typing import Any, Callable, Generator, Optional, Protocol

from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks

from edgegw_tx.admin.errors import Conflict, NotFound
from edgegw_tx.admin import validation
from edgegw_tx.admin.policies import resolve_versions
from edgegw_tx.paths import parse_pattern
from edgegw_tx.store import Conflict as StoreConflict
from edgegw_tx.store import NoFreeUid
from edgegw_tx.store.errors import Stale
from edgegw_tx.store.interface import IEndpointStore, Record


# The checked fields of a create or update body (typed here while validation.py is not).
endpoint_fields: Callable[..., dict[str, Any]] = validation.endpoint_fields

#: A record's routes, ``[{method, path, ...}]`` (validation.py's, said once).
routes_of: Callable[[Record], list[Record]] = validation.routes_of

# The columns that make an endpoint's route: a change of one moves a running route.
ROUTE_COLUMNS = ("path", "method", "routes", "domain", "collection_id", "path_shape")


def shaped(routes: list[Record], full_path: Callable[[str], str]) -> list[Record]:
    """``routes`` each with the ``path_shape`` of its served path (``full_path(path)``), which the store keeps unique."""
    return [dict(r, path_shape=parse_pattern(full_path(r["path"])).shape) for r in routes]


class Placement(Protocol):
    """Where endpoints are served (admin/domains.py ``CollectionManager``)."""

    def place(self, payload: Any, fields: Record, current: Optional[Record]) -> "Deferred[Record]":
        """Check a create or update; fire with its effective ``domain``, ``routes`` (shaped) and first ``path_shape``."""

    def holder(self, record: Record) -> "Deferred[Optional[Record]]":
        """The other endpoint serving ``record``'s route, or None."""

    def full_path(self, record: Record) -> str:
        """The endpoint's path with its collection's base path."""


class Uids(Protocol):
    """The per-endpoint worker uids (workers/isolation.py ``UidAllocator``)."""

    def allocate(self, endpoint_id: str) -> "Deferred[Optional[int]]":
        """The endpoint's uid (the one it has, else a free one), or None outside that mode."""


def now() -> str:
    """The time stamp of record writes (``created_at``, ``updated_at``)."""
    return datetime.now(timezone.utc).isoformat()


def build_inputs(record: Record) -> tuple[str, dict[str, Any]]:
    """What a build of the endpoint depends on: its code and explicit dependencies."""
    return record["code"], record["settings"].get("dependencies") or {}


class EndpointRecords:
    """Endpoint records in the store, and the routing lock; see the module docstring."""

    def __init__(self, store: IEndpointStore, uids: Optional[Uids] = None) -> None:
        """``uids`` gives each endpoint its own worker uid (None: workers share the gateway's choice)."""
        self._store = store
        self._uids = uids
        self._placement: Optional[Placement] = None
        self._lock = DeferredLock()

    def set_placement(self, placement: Placement) -> None:
        """Place endpoints with ``placement`` (the ``CollectionManager``) from now on."""
        self._placement = placement

    def routing_write(self, work: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        """
        Run ``work(*args)`` as the one write that decides routes at this moment
        (the routing lock). Domains, collections and deployments serialise
        with endpoint writes through this.
        """
        return self._lock.run(work, *args)

    def full_path(self, record: Record) -> str:
        """The path the endpoint is served at: its collection's base path applied."""
        if self._placement is None:
            return str(record["path"])
        return self._placement.full_path(record)

    # reading

    @inlineCallbacks
    def get(self, endpoint_id: str) -> Generator["Deferred[Any]", Any, Record]:
        """The endpoint's record; 404 when there is none."""
        record = yield self._store.get_endpoint(endpoint_id)
        if record is None:
            raise NotFound(f"no endpoint with id '{endpoint_id}'")
        found: Record = record
        return found

    def find(self, endpoint_id: str) -> "Deferred[Optional[Record]]":
        """The endpoint's record, or None when there is none."""
        return self._store.get_endpoint(endpoint_id)

    def list(self) -> "Deferred[builtins.list[Record]]":
        """Every endpoint record."""
        return self._store.list_endpoints()

    # writing

    def create(self, payload: Any) -> "Deferred[Record]":
        """Validate, place and store a new endpoint (status ``created``) with its worker uid."""
        return self.routing_write(self._create, payload)

    @inlineCallbacks
    def _create(self, payload: Any) -> Generator["Deferred[Any]", Any, Record]:
        fields = endpoint_fields(payload)
        # A new endpoint has no versions yet: any split names an unknown one.
        if "policy" in fields:
            fields["policy"] = resolve_versions(fields["policy"], [])
        routes = shaped(fields["routes"], lambda path: path)
        stamp = now()
        record = dict(fields)
        record.update(
            id=uuid.uuid4().hex,
            routes=routes,
            path_shape=routes[0]["path_shape"],
            status="created",
            created_at=stamp,
            updated_at=stamp,
        )
        if self._placement is not None:
            placed = yield self._placement.place(payload, fields, None)
            record.update(placed)
        try:
            stored = yield self._store.create_endpoint(record)
        except StoreConflict:
            error = yield self._route_taken(record)
            raise error
        yield self.worker_uid(stored, undo=True)
        created: Record = stored
        return created

    @inlineCallbacks
    def worker_uid(self, record: Record, undo: bool = False) -> Generator["Deferred[Any]", Any, Optional[int]]:
        """
        The endpoint's own worker uid (None without an allocator or outside
        that mode); 409 when none is free, the record deleted first if
        ``undo`` (its create fails whole).
        """
        if self._uids is None:
            return None
        try:
            uid = yield self._uids.allocate(record["id"])
        except NoFreeUid as e:
            if undo:
                yield self._store.delete_endpoint(record["id"])
            raise Conflict(f"endpoint '{record['name']}' cannot get a worker uid: {e}")
        allocated: Optional[int] = uid
        return allocated

    def update(
        self,
        endpoint_id: str,
        payload: Any,
        moved: Callable[[Record, Record], "Deferred[Record]"],
        revision: Optional[int] = None,
    ) -> "Deferred[Record]":
        """
        Validate, place and store a change; then, still as the same routing
        write, ``moved(current, record)`` brings what runs in step with the
        stored record (stops a disabled endpoint, moves a changed route) and
        fires with the record. A change of the code or dependencies drops
        the compiled ``artifact`` (and status ``created`` unless it runs).
        With ``revision`` (an ``If-Match``) only if the record is still at
        it, else the store's ``Stale`` and nothing changes.
        """
        return self.routing_write(self._update, endpoint_id, payload, moved, revision)

    @inlineCallbacks
    def _update(
        self,
        endpoint_id: str,
        payload: Any,
        moved: Callable[[Record, Record], "Deferred[Record]"],
        revision: Optional[int] = None,
    ) -> Generator["Deferred[Any]", Any, Record]:
        current = yield self.get(endpoint_id)
        if revision is not None and current.get("revision") != revision:
            raise Stale("endpoint", endpoint_id, current.get("revision", 0))
        fields = endpoint_fields(payload, current)
        if (fields.get("policy") or {}).get("traffic_split"):
            # The split's versions: the endpoint's own (a digest or a unique prefix), stored as full digests.
            versions = yield self._store.list_versions(endpoint_id)  # type: ignore[attr-defined]
            fields["policy"] = resolve_versions(fields["policy"], versions)
        merged = dict(current, **fields)
        if "routes" in fields:
            fields["routes"] = shaped(fields["routes"], lambda path: path)
            fields["path_shape"] = fields["routes"][0]["path_shape"]
            merged.update(routes=fields["routes"], path_shape=fields["path_shape"])
        if self._placement is not None:
            placed = yield self._placement.place(payload, fields, current)
            fields.update(placed)
            merged.update(placed)
        if build_inputs(merged) != build_inputs(current):
            fields["artifact"] = None
            if current["status"] != "running":
                fields["status"] = "created"
        fields["updated_at"] = now()
        try:
            record = yield self._store.update_endpoint(endpoint_id, fields, revision=revision)
        except StoreConflict:
            error = yield self._route_taken(merged)
            raise error
        if record is None:
            raise NotFound(f"no endpoint with id '{endpoint_id}'")
        record = yield moved(current, record)
        updated: Record = record
        return updated

    def write(self, endpoint_id: str, fields: Record) -> "Deferred[Optional[Record]]":
        """Change some columns of the record, stamping ``updated_at``; fires with the new record (None if gone)."""
        return self._store.update_endpoint(endpoint_id, dict(fields, updated_at=now()))

    def delete(self, endpoint_id: str, revision: Optional[int] = None) -> "Deferred[bool]":
        """
        Delete the record, its versions, bindings and worker uid (the caller
        stopped its pool); with ``revision`` only if it is still at it, else ``Stale``.
        """
        return self._store.delete_endpoint(endpoint_id, revision=revision)

    @inlineCallbacks
    def _route_taken(self, record: Record) -> Generator["Deferred[Any]", Any, Conflict]:
        """The 409 for a create or update whose route another endpoint serves."""
        other = None
        if self._placement is not None:
            other = yield self._placement.holder(record)
        route = routes_of(record)[0]
        if other is not None:
            # The route of ``record`` that ``other`` holds.
            theirs = {(r["method"], r.get("path_shape")) for r in routes_of(other)}
            route = next(
                (r for r in routes_of(record) if (r["method"], r.get("path_shape")) in theirs), route
            )
        return Conflict(
            "another endpoint {}already serves {} {} on domain '{}'".format(
                f"('{other['name']}', id {other['id']}) " if other else "",
                route["method"],
                self.full_path(dict(record, path=route["path"])),
                record["domain"],
            ),
            **({"conflicts_with": other["id"]} if other else {}),
        )
