"""
Domains and collections: where endpoints are served.

A *domain* is a host (``api.example.com``, or ``*`` for any host). Endpoints
refer to domains by host: an endpoint's ``domain`` must be ``*`` or the host of
a domain record, and the endpoints "of" a domain are those whose ``domain`` is
its host. ``*`` needs no record (it is every endpoint's default); a ``*``
record may exist and then owns the ``*`` endpoints like any other domain.
Endpoints created before domains existed keep working: at startup ``load``
creates a record for every host an endpoint uses that has none, so the rule
holds for every stored endpoint.

A *collection* groups endpoints under a ``base_path`` (``''``, ``/v1``,
``/shops/{shop}``) and optionally a domain. An endpoint in a collection is
served at ``base_path + path`` (``path`` ``/`` adds nothing: ``/v1``), on the
collection's domain when it has one, else on the endpoint's own ``domain``.
The store keeps each endpoint's *effective* route: ``domain`` is the host it is
served on (for a collection with a domain, that domain's host) and each of
its routes has the ``path_shape`` of ``base_path + path``, so the store's
uniqueness rule is over what is really served. Everything that changes an
effective route (a domain's host, a collection's base path or domain, an
endpoint's routes, domain or collection) recomputes those in one transaction
and moves all the routes of running endpoints at once (``RouteTable.place``
under the same key).

All of these writes, and endpoint creates and updates, are *routing writes*:
they run one at a time through the endpoint manager's ``routing_write`` (the
routing lock of admin/records.py, the one serialiser of everything that
decides routes), so a check ("this domain exists", "no endpoint takes this
route") and the write it guards cannot be split by another write.
Cascading deletes stop and delete endpoints through the endpoint manager
*before* taking that lock (an endpoint's own lifecycle lock comes first).
"""

from __future__ import annotations

import builtins
import uuid
from functools import partial
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generator, Iterable, Mapping, Optional

from twisted.internet.defer import Deferred, inlineCallbacks

from edgegw_tx import __version__
from edgegw_tx.admin.errors import BadRequest, Conflict, NotFound
from edgegw_tx.admin.history import request_totals
from edgegw_tx.admin import schema
from edgegw_tx.admin.policies import checked, unmasked
from edgegw_tx.admin.records import shaped
from edgegw_tx.admin.validation import check_schema, routes_of
from edgegw_tx.paths import PatternError, parse_pattern
from edgegw_tx.policy import model
from edgegw_tx.store import Conflict as StoreConflict
from edgegw_tx.store import InUse, Missing, RouteClash
from edgegw_tx.store.errors import Stale
from edgegw_tx.store.interface import IStore, Move, Record

if TYPE_CHECKING:
    from edgegw_tx.admin.manager import EndpointManager


STATUSES = ("created", "compiled", "running", "stopped", "error")
_DOMAIN_FIELDS = {"host", "description", "policy"}
_COLLECTION_FIELDS = {"name", "domain_id", "base_path", "description", "policy"}


def _now() -> str:
    """The time stamp of record writes."""
    return datetime.now(timezone.utc).isoformat()


def join_path(base_path: str, path: str) -> str:
    """The effective path of ``path`` under ``base_path``: ``/v1`` + ``/`` is ``/v1``."""
    if not base_path:
        return path
    return base_path if path == "/" else base_path + path


def route_text(method: str, domain: str, path: str) -> str:
    """An endpoint's ``route`` field: ``GET api.example.com/v1/users/{id}``."""
    return f"{method} {domain}{path}"


def _fields(payload: Any, body: "schema.Schema", writable: set[str]) -> Record:
    """The writable fields of a body its schema (``admin/schema.py``) accepts; else the 400 naming the field."""
    check_schema(body, payload)
    return {k: v for k, v in payload.items() if k in writable}


def check_base_path(value: Any) -> str:
    """``''`` or a path pattern without a trailing ``/``; BadRequest naming ``base_path``."""
    if not isinstance(value, str):
        raise BadRequest("field 'base_path' must be a string", field="base_path")
    if value == "":
        return ""
    if value == "/":
        raise BadRequest(
            "field 'base_path' must be '' (none) or a prefix such as /v1, not '/'", field="base_path"
        )
    try:
        return parse_pattern(value).text
    except PatternError as e:
        raise BadRequest(f"field 'base_path' is not a valid path prefix: {e}", field="base_path")


class DomainManager:
    """``domains`` records; see the module docstring for what they mean to endpoints."""

    def __init__(self, store: IStore, endpoints: EndpointManager, collections: CollectionManager) -> None:
        """``endpoints`` is the ``EndpointManager``, ``collections`` the ``CollectionManager``."""
        self._store = store
        self._endpoints = endpoints
        self._collections = collections
        # Domain writes serialise with endpoint writes as routing writes.
        self._serialise = endpoints.routing_write

    # reading

    @inlineCallbacks
    def get(self, domain_id: str) -> Generator["Deferred[Any]", Any, Record]:
        """The domain record; 404 when there is none."""
        record: Optional[Record] = yield self._store.get_domain(domain_id)
        if record is None:
            raise NotFound(f"no domain with id '{domain_id}'")
        return record

    def list(self) -> "Deferred[builtins.list[Record]]":
        """Every domain record."""
        domains: Deferred[builtins.list[Record]] = self._store.list_domains()
        return domains

    def by_host(self, host: str) -> "Deferred[Optional[Record]]":
        """Fire with the domain record of ``host`` (any case), or None."""
        found: Deferred[Optional[Record]] = self._store.get_domain_by_host(host.strip().lower().rstrip("."))
        return found

    @inlineCallbacks
    def usage(
        self, domain_id: str
    ) -> Generator["Deferred[Any]", Any, tuple[Record, builtins.list[Record], builtins.list[Record]]]:
        """``(domain, endpoints on its host, its collections)``."""
        record = yield self.get(domain_id)
        endpoints = yield self._endpoints.list()
        collections = yield self._store.list_collections(domain_id)
        return (record, [e for e in endpoints if e["domain"] == record["host"]], collections)

    # writing

    def create(self, payload: Any) -> "Deferred[Record]":
        """A new domain record; 409 when its host is taken."""
        return self._serialise(self._create, payload)

    @inlineCallbacks
    def _create(self, payload: Any) -> Generator["Deferred[Any]", Any, Record]:
        given = _fields(payload, schema.DOMAIN_CREATE, _DOMAIN_FIELDS)
        now = _now()
        record = {
            "id": uuid.uuid4().hex,
            "host": given["host"].strip().lower(),
            "description": given.get("description", ""),
            "policy": checked(given.get("policy"), "domain"),
            "created_at": now,
            "updated_at": now,
        }
        try:
            stored: Record = yield self._store.create_domain(record)
        except StoreConflict:
            raise self._host_taken(record["host"])
        self._collections.learn_domain(stored)
        if stored.get("policy"):
            # Endpoints on ``*`` need no record: a new ``*`` domain's policy is theirs at once.
            endpoints = yield self._endpoints.list()
            yield self._endpoints.reroute([e for e in endpoints if e["domain"] == stored["host"]])
        return stored

    def update(self, domain_id: str, payload: Any, revision: Optional[int] = None) -> "Deferred[Record]":
        """Change a domain; see ``_update``. ``revision``: an ``If-Match`` (else ``Stale``)."""
        return self._serialise(self._update, domain_id, payload, revision)

    @inlineCallbacks
    def _update(
        self, domain_id: str, payload: Any, revision: Optional[int] = None
    ) -> Generator["Deferred[Any]", Any, Record]:
        """A new host moves every endpoint on the old one, running ones at once."""
        current: Record = yield self.get(domain_id)
        _check_revision("domain", current, revision)
        given = _fields(unmasked(payload, current), schema.DOMAIN_UPDATE, _DOMAIN_FIELDS)
        fields = {}
        if "host" in given:
            fields["host"] = given["host"].strip().lower()
        if "description" in given:
            fields["description"] = given["description"]
        if "policy" in given:
            fields["policy"] = checked(given["policy"], "domain")
        fields = {k: v for k, v in fields.items() if v != current[k]}
        if not fields:
            return current
        fields["updated_at"] = _now()
        moved = []
        if "host" in fields or "policy" in fields:
            endpoints = yield self._endpoints.list()
            moved = [dict(e, domain=fields.get("host", e["domain"])) for e in endpoints if e["domain"] == current["host"]]
        try:
            record: Record = yield self._store.update_domain(
                domain_id, fields, [_move(e) for e in moved] if "host" in fields else [], revision=revision
            )
        except RouteClash as e:
            raise _clash(e, moved, self._collections)
        except StoreConflict:
            raise self._host_taken(fields["host"])
        self._collections.forget_domain(current["host"])
        self._collections.learn_domain(record)
        # Moved, or under another policy: the running ones are placed again.
        yield self._endpoints.reroute(moved)
        return record

    @inlineCallbacks
    def delete(
        self, domain_id: str, cascade: bool = False, revision: Optional[int] = None
    ) -> Generator["Deferred[Any]", Any, Record]:
        """
        Refused (409 with the counts) while endpoints use the host or collections
        belong to the domain, unless ``cascade``: then its collections and their
        endpoints, and the endpoints on its host, are deleted first (running
        ones stopped). Fires with the record plus ``cascaded``, the counts deleted.
        ``revision`` (an ``If-Match``): ``Stale``, before anything is deleted,
        when the domain is no longer at it.
        """
        record, endpoints, collections = yield self.usage(domain_id)
        _check_revision("domain", record, revision)
        cascaded = {"endpoints": 0, "collections": 0}
        if cascade:
            for collection in collections:
                deleted = yield self._collections.delete(collection["id"], cascade=True)
                cascaded["endpoints"] += deleted["cascaded"]["endpoints"]
                cascaded["collections"] += 1
            cascaded["endpoints"] += yield _delete_endpoints(self._endpoints, endpoints)
        try:
            yield self._serialise(partial(self._store.delete_domain, domain_id, revision=revision))
        except InUse as e:
            raise Conflict(
                "domain '{}' still has {} endpoint(s) and {} collection(s); delete or move them, "
                "or pass ?cascade=true to delete them with it".format(
                    record["host"], e.counts["endpoints"], e.counts["collections"]
                ),
                **e.counts,
            )
        self._collections.forget_domain(record["host"])
        return dict(record, cascaded=cascaded)

    @inlineCallbacks
    def load(self) -> Generator["Deferred[Any]", Any, builtins.list[str]]:
        """
        At startup: a domain record for every host that endpoints use and that
        has none (endpoints made before domains existed). Fires with the hosts added.
        """
        endpoints = yield self._endpoints.list()
        domains = yield self._store.list_domains()
        known = {d["host"] for d in domains}
        added = []
        for host in sorted({e["domain"] for e in endpoints} - known - {"*"}):
            now = _now()
            try:
                yield self._store.create_domain(
                    {
                        "id": uuid.uuid4().hex,
                        "host": host,
                        "description": "created at startup for the endpoints already using this host",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            except StoreConflict:
                continue  # another node of the cluster, starting at the same time, made it
            added.append(host)
        return added

    def _host_taken(self, host: str) -> Conflict:
        """409 for a host another domain has."""
        return Conflict(f"a domain with host '{host}' already exists", field="host")


class CollectionManager:
    """
    ``collections`` records, and the endpoint manager's route resolver: it
    places endpoints (``place``) and gives their effective pattern (``pattern``).
    Constructing one over an ``EndpointManager`` makes it that manager's resolver.
    It has no lock of its own: its writes are the manager's routing writes.
    """

    def __init__(self, store: IStore, endpoints: EndpointManager) -> None:
        """Becomes ``endpoints``' placement: see the class docstring."""
        self._store = store
        self._endpoints = endpoints
        # Collection writes serialise with endpoint writes as routing writes.
        self._serialise = endpoints.routing_write
        # collection id → base_path, for the synchronous reads of the data
        # plane's routes and of ``view``; kept in step under the routing lock.
        self._base_paths: dict[Optional[str], str] = {}
        # collection id → its policy, and domain host → its domain's policy:
        # ``policy_of`` reads them synchronously (deployments, ``view``); kept
        # in step as the base paths are.
        self._policies: dict[Optional[str], dict[str, Any]] = {}
        self._domain_policies: dict[str, dict[str, Any]] = {}
        endpoints.set_routing(self)

    # reading

    @inlineCallbacks
    def get(self, collection_id: str) -> Generator["Deferred[Any]", Any, Record]:
        """The collection record; 404 when there is none."""
        record: Optional[Record] = yield self._store.get_collection(collection_id)
        if record is None:
            raise NotFound(f"no collection with id '{collection_id}'")
        return record

    def list(self, domain_id: Optional[str] = None) -> "Deferred[builtins.list[Record]]":
        """Every collection record (of one domain)."""
        collections: Deferred[builtins.list[Record]] = self._store.list_collections(domain_id)
        return collections

    @inlineCallbacks
    def endpoints(self, collection_id: str) -> Generator["Deferred[Any]", Any, builtins.list[Record]]:
        """The collection's endpoint records; 404 for an unknown collection."""
        yield self.get(collection_id)
        records = yield self._endpoints.list()
        return [r for r in records if r["collection_id"] == collection_id]

    # writing

    def create(self, payload: Any) -> "Deferred[Record]":
        """A new collection record."""
        return self._serialise(self._create, payload)

    @inlineCallbacks
    def _create(self, payload: Any) -> Generator["Deferred[Any]", Any, Record]:
        given = _fields(payload, schema.COLLECTION_CREATE, _COLLECTION_FIELDS)
        now = _now()
        record: Record = {
            "id": uuid.uuid4().hex,
            "name": "",
            "domain_id": None,
            "base_path": "",
            "description": "",
            "policy": {},
            "created_at": now,
            "updated_at": now,
        }
        record.update(self._check(given))
        try:
            stored: Record = yield self._store.create_collection(record)
        except Missing as e:
            raise _no_domain(e)
        self._base_paths[stored["id"]] = stored["base_path"]
        self._policies[stored["id"]] = stored.get("policy") or {}
        return stored

    def update(self, collection_id: str, payload: Any, revision: Optional[int] = None) -> "Deferred[Record]":
        """Change a collection; see ``_update``. ``revision``: an ``If-Match`` (else ``Stale``)."""
        return self._serialise(self._update, collection_id, payload, revision)

    @inlineCallbacks
    def _update(
        self, collection_id: str, payload: Any, revision: Optional[int] = None
    ) -> Generator["Deferred[Any]", Any, Record]:
        """A new base path or domain moves the collection's endpoints, running ones at once."""
        current: Record = yield self.get(collection_id)
        _check_revision("collection", current, revision)
        fields = self._check(_fields(unmasked(payload, current), schema.COLLECTION_UPDATE, _COLLECTION_FIELDS))
        fields = {k: v for k, v in fields.items() if v != current[k]}
        if not fields:
            return current
        fields["updated_at"] = _now()
        merged = dict(current, **fields)
        moved = []
        if "base_path" in fields or "domain_id" in fields:
            host = None
            if merged["domain_id"] is not None:
                domain = yield self._store.get_domain(merged["domain_id"])
                if domain is None:
                    raise _no_domain(Missing("domain", merged["domain_id"]))
                host = domain["host"]
            members = yield self.endpoints(collection_id)
            for endpoint in members:
                routes = []
                for route in routes_of(endpoint):
                    path = join_path(merged["base_path"], route["path"])
                    try:
                        routes.append(dict(route, path_shape=parse_pattern(path).shape))
                    except PatternError as e:
                        raise Conflict(
                            f"with base_path '{merged['base_path']}' endpoint '{endpoint['name']}' "
                            f"would be served at {path}, which is not a valid pattern: {e}",
                            field="base_path",
                            endpoint_id=endpoint["id"],
                        )
                moved.append(
                    dict(endpoint, domain=host or endpoint["domain"], routes=routes, path_shape=routes[0]["path_shape"])
                )
        try:
            record: Record = yield self._store.update_collection(
                collection_id, fields, [_move(e) for e in moved], revision=revision
            )
        except Missing as e:
            raise _no_domain(e)
        except RouteClash as e:
            # The route text of the moved endpoint needs the new base path.
            raise _clash(e, moved, self, {collection_id: merged["base_path"]})
        self._base_paths[collection_id] = record["base_path"]
        self._policies[collection_id] = record.get("policy") or {}
        if not moved and "policy" in fields:
            # Under another policy: the running ones are placed again.
            moved = yield self.endpoints(collection_id)
        yield self._endpoints.reroute(moved)
        return record

    @inlineCallbacks
    def delete(
        self, collection_id: str, cascade: bool = False, revision: Optional[int] = None
    ) -> Generator["Deferred[Any]", Any, Record]:
        """
        Refused (409 with the count) while endpoints are in it, unless
        ``cascade``: then they are deleted first (running ones stopped). Fires
        with the record plus ``cascaded``, the counts deleted. ``revision``
        (an ``If-Match``): ``Stale``, before anything is deleted, when the
        collection is no longer at it.
        """
        members = yield self.endpoints(collection_id)
        record = yield self.get(collection_id)
        _check_revision("collection", record, revision)
        cascaded = {"endpoints": 0, "collections": 0}
        if cascade:
            cascaded["endpoints"] = yield _delete_endpoints(self._endpoints, members)
        try:
            yield self._serialise(partial(self._store.delete_collection, collection_id, revision=revision))
        except InUse as e:
            raise Conflict(
                "collection '{}' still has {} endpoint(s); delete or move them, "
                "or pass ?cascade=true to delete them with it".format(
                    record["name"], e.counts["endpoints"]
                ),
                **e.counts,
            )
        self._base_paths.pop(collection_id, None)
        self._policies.pop(collection_id, None)
        return dict(record, cascaded=cascaded)

    def load(self) -> "Deferred[builtins.list[str]]":
        """
        At startup, before endpoints are restored, and in a cluster after
        another node changed a collection or domain (then
        ``EndpointManager.reconcile_all`` moves the routes): learn every base
        path anew, and make a collection record (no domain, no base path,
        named by its id) for every ``collection_id`` endpoints name that has
        none (endpoints made before collections existed). A routing write, so
        the base paths cannot be read between a local collection write and
        its store. Fires with the ids added.
        """
        loaded: Deferred[builtins.list[str]] = self._serialise(self._load)
        return loaded

    @inlineCallbacks
    def _load(self) -> Generator["Deferred[Any]", Any, builtins.list[str]]:
        collections = yield self._store.list_collections()
        self._base_paths = {c["id"]: c["base_path"] for c in collections}
        self._policies = {c["id"]: c.get("policy") or {} for c in collections}
        domains = yield self._store.list_domains()
        self._domain_policies = {d["host"]: d.get("policy") or {} for d in domains}
        endpoints = yield self._endpoints.list()
        added = []
        for collection_id in sorted({e["collection_id"] for e in endpoints if e["collection_id"]}):
            if collection_id in self._base_paths:
                continue
            now = _now()
            try:
                yield self._store.create_collection(
                    {
                        "id": collection_id,
                        "name": collection_id,
                        "domain_id": None,
                        "base_path": "",
                        "description": "created at startup for the endpoints already naming this id",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            except StoreConflict:
                pass  # another node of the cluster, starting at the same time, made it
            self._base_paths[collection_id] = ""
            added.append(collection_id)
        return added

    # the endpoint manager's resolver

    def policy_of(self, record: Record) -> model.Effective:
        """
        The effective policy of an endpoint ``record`` (as stored): each part
        from it, else its collection, else the domain of its host, with
        where each came from (policy/model.py ``effective``).
        """
        return model.effective(
            record.get("policy"),
            self._policies.get(record.get("collection_id")),
            self._domain_policies.get(record.get("domain", "")),
        )

    def learn_domain(self, record: Record) -> None:
        """A domain written: its host's policy, for ``policy_of``."""
        self._domain_policies[record["host"]] = record.get("policy") or {}

    def forget_domain(self, host: str) -> None:
        """A domain's host gone (deleted, or changed to another)."""
        self._domain_policies.pop(host, None)

    def full_path(self, record: Record) -> str:
        """The endpoint's effective path pattern text (base path applied)."""
        return join_path(self._base_paths.get(record.get("collection_id"), ""), record["path"])

    def pattern(self, record: Record) -> Any:
        """The endpoint's effective ``PathPattern``, for the route table."""
        return parse_pattern(self.full_path(record))

    @inlineCallbacks
    def place(self, payload: Any, fields: Record, current: Optional[Record]) -> Generator["Deferred[Any]", Any, Record]:
        """
        Check an endpoint create (``current`` None) or update whose validated
        ``fields`` came from ``payload``; fire with its effective ``domain`` and
        ``path_shape``. Called under the routing lock.

        * ``collection_id``: null or an existing collection (400 naming it).
        * In a collection with a domain, that domain's host is the endpoint's
          ``domain``; a ``domain`` sent that differs from it (and from the
          endpoint's current one, so a record read with GET can be PUT back
          with only its collection changed) is a 400.
        * Otherwise a new ``domain`` must be ``*`` or a domain's host (400).
        * ``base_path + path`` must be a valid pattern (400 naming ``path``).
        """
        merged = dict(current or {}, **fields)
        collection = None
        if merged.get("collection_id") is not None:
            collection = yield self._store.get_collection(merged["collection_id"])
            if collection is None and "collection_id" in fields:
                raise BadRequest(
                    f"field 'collection_id': no collection with id '{merged['collection_id']}'",
                    field="collection_id",
                )
        sent = fields.get("domain") if "domain" in payload else None
        changed = sent is not None and (current is None or sent != current["domain"])
        if collection is not None and collection["domain_id"] is not None:
            domain = yield self._store.get_domain(collection["domain_id"])
            host = domain["host"]
            if changed and sent != host:
                raise BadRequest(
                    f"field 'domain': the endpoint is in collection '{collection['name']}', "
                    f"which serves on '{host}'; leave 'domain' out or send '{host}'",
                    field="domain",
                )
        else:
            host = merged["domain"]
            if changed and host != "*":
                domain = yield self._store.get_domain_by_host(host)
                if domain is None:
                    raise BadRequest(
                        f"field 'domain': no domain '{host}'; create it (POST /api/domains) "
                        "or use '*'",
                        field="domain",
                    )
        base_path = collection["base_path"] if collection is not None else ""
        routes = routes_of(merged)
        for i, route in enumerate(routes):
            path = join_path(base_path, route["path"])
            try:
                parse_pattern(path)
            except PatternError as e:
                field = "path" if len(routes) == 1 and "routes" not in payload else f"routes[{i}].path"
                raise BadRequest(
                    f"field '{field}': under the collection's base_path '{base_path}' it makes {path}, "
                    f"which is not a valid pattern: {e}",
                    field=field,
                )
        routes = shaped(routes, lambda path: join_path(base_path, path))
        return {"domain": host, "routes": routes, "path_shape": routes[0]["path_shape"]}

    @inlineCallbacks
    def holder(self, record: Record) -> Generator["Deferred[Any]", Any, Optional[Record]]:
        """The other endpoint serving ``record``'s effective route, or None."""
        others: builtins.list[Record] = yield self._endpoints.list()
        mine = {(record["domain"], r["method"], r["path_shape"]) for r in routes_of(record)}
        for other in others:
            if other["id"] != record.get("id") and any(
                (other["domain"], r["method"], r["path_shape"]) in mine for r in routes_of(other)
            ):
                return other
        return None

    # internals

    def _check(self, given: Record) -> Record:
        """The checked writable fields of a collection body."""
        fields: Record = {}
        if "name" in given:
            fields["name"] = given["name"].strip()
        if "domain_id" in given:
            fields["domain_id"] = given["domain_id"]
        if "base_path" in given:
            fields["base_path"] = check_base_path(given["base_path"])
        if "description" in given:
            fields["description"] = given["description"]
        if "policy" in given:
            fields["policy"] = checked(given["policy"], "collection")
        return fields


def _check_revision(what: str, record: Record, revision: Optional[int]) -> None:
    """``Stale`` when an ``If-Match`` ``revision`` is not the record's (checked again by the store's write)."""
    if revision is not None and record.get("revision") != revision:
        raise Stale(what, record["id"], record.get("revision", 0))


@inlineCallbacks
def _delete_endpoints(manager: EndpointManager, records: Iterable[Record]) -> Generator["Deferred[Any]", Any, int]:
    """Delete (stopping) each endpoint; one deleted meanwhile is not an error. Fires with the count."""
    count = 0
    for record in records:
        try:
            yield manager.delete(record["id"])
        except NotFound:
            continue
        count += 1
    return count


def _move(endpoint: Record) -> Move:
    """The store's ``Move`` of an endpoint record as it is to be: its domain and each route's shape."""
    return (endpoint["id"], endpoint["domain"], tuple(r["path_shape"] for r in routes_of(endpoint)))


def _no_domain(missing: Missing) -> BadRequest:
    """400 for a ``domain_id`` naming no domain."""
    return BadRequest(f"field 'domain_id': no domain with id '{missing.record_id}'", field="domain_id")


def _clash(
    error: RouteClash,
    moved: Iterable[Record],
    collections: CollectionManager,
    base_paths: Optional[dict[str, str]] = None,
) -> Conflict:
    """409 for a ``RouteClash``: which endpoint would take whose route."""
    endpoint = next(e for e in moved if e["id"] == error.endpoint_id)
    routes = routes_of(endpoint)
    taken = routes[error.position] if error.position < len(routes) else routes[0]
    base_paths = base_paths or {}
    if endpoint.get("collection_id") in base_paths:
        path = join_path(base_paths[endpoint["collection_id"]], taken["path"])
    else:
        path = collections.full_path(dict(endpoint, path=taken["path"]))
    route = route_text(taken["method"], endpoint["domain"], path)
    return Conflict(
        f"endpoint '{endpoint['name']}' would be served at {route}, "
        f"which endpoint '{error.other_name}' already serves",
        endpoint_id=endpoint["id"],
        conflicts_with=error.other_id,
    )


def gateway_stats(
    records: list[Record],
    pool_stats: Iterable[dict[str, Any]],
    planes: Iterable[Mapping[str, Any]],
    uptime_seconds: float,
) -> Record:
    """
    ``GET /api/stats``: endpoint counts by status (over the store); the
    request numbers from the data planes' counters, the ones ``/metrics``
    exposes (``request_totals``: every answer, the gateway's own included);
    ``rejected`` and ``workers`` from the running pools, which alone know them.
    """
    by_status = dict.fromkeys(STATUSES, 0)
    for record in records:
        by_status[record["status"]] = by_status.get(record["status"], 0) + 1
    pool_stats = list(pool_stats)
    requests = request_totals(planes, {r["name"]: r["id"] for r in records})
    return {
        "endpoints": {"total": len(records), "by_status": by_status},
        "requests": {
            "served": requests["served"],
            "failed": requests["failed"],
            "rejected": sum(s.get("rejected", 0) for s in pool_stats),
            "mean_ms": requests["mean_ms"],
            "p50_ms": requests["p50_ms"],
            "by_endpoint": requests["by_endpoint"],
        },
        "workers": sum(s.get("workers", 0) for s in pool_stats),
        "uptime_seconds": round(uptime_seconds, 3),
        "version": __version__,
    }
