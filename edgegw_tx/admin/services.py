"""
The lifecycle of services and of their bindings to endpoints.

The store keeps what must survive a restart; the service registry (the service
plane) holds the live connectors and resolves a worker's ``call`` to a
connector by the endpoint's binding name (``pool_id``) at call time, so every
change here takes effect at once, without restarting workers.

A body is checked against its schema (``admin/schema.py``: the fields of a
create or an update, then ``config`` against its type's, which is built from
``services.config.FIELDS``); ``services.config.validate_config`` then fills in
the defaults and adds the rules a schema cannot say (a path segment's length in
bytes, the default path a name gives), in its own words where it refuses the
same field as the schema.

Services hold secrets (passwords, keys). They leave this module only through
``view``, which masks them; a client that PUTs back what it read sends the mask,
and ``merge_secrets`` puts the stored secret back in its place.

Writes are serialised by one lock, so a delete can never race a binding to the
service it deletes, nor two updates leave the registry out of step with the
store. Tests of a service's connection do not take the lock.

The manager remembers what it gave the registry (each service's connector,
each endpoint's bindings), so ``sync`` can bring the registry in step with
the store by difference: at start, and in a cluster whenever another node
changed a service or a binding. A connector is remade only when its service
changed, so the others keep their open connections.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Generator
from datetime import datetime, timezone
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks, succeed
from twisted.logger import Logger

from edgegw_tx.admin import schema
from edgegw_tx.admin.errors import ApiError, BadRequest, Conflict, NotFound
from edgegw_tx.admin.validation import check_schema
from edgegw_tx.services import config
from edgegw_tx.store import Conflict as StoreConflict
from edgegw_tx.store import Missing, ServiceInUse
from edgegw_tx.store.errors import Stale
from edgegw_tx.store.interface import IStore, Record


class Registry(Protocol):
    """
    What this module asks of the service plane's ``ServiceRegistry`` (or of
    ``processes.MirroredRegistry``, whose writes return a Deferred).
    """

    def configure(self, service: dict[str, Any]) -> Deferred[None] | None:
        """Make (or remake) the connector of ``service``."""

    def remove(self, service_id: Any) -> Deferred[None]:
        """Close and forget the connector of ``service_id``."""

    def bind(self, endpoint_id: Any, pool_id: str, service_id: Any) -> Deferred[None] | None:
        """Let ``endpoint_id``'s calls to ``pool_id`` reach ``service_id``."""

    def unbind(self, endpoint_id: Any, pool_id: str) -> Deferred[None] | None:
        """Forget the binding ``pool_id`` of ``endpoint_id``."""

    def bindings(self, endpoint_id: Any) -> dict[str, Any]:
        """The registry's own bindings of ``endpoint_id``: ``{pool_id: service_id}``."""

    def test(self, service: dict[str, Any]) -> Deferred[dict[str, float]]:
        """Connect to ``service``'s backend once; fire with the latency."""


class ServiceTestFailed(ApiError):
    """The backend refused or could not be reached: its message, as a 502."""

    status = 502


def _now() -> str:
    """The time stamp of record writes."""
    return datetime.now(timezone.utc).isoformat()


def _settled(result: Deferred[None] | None) -> Deferred[None]:
    """A registry write's Deferred, or a fired one where the write was done at once."""
    return result if result is not None else succeed(None)


def _connector(record: Record) -> dict[str, Any]:
    """What the registry is told about a service: exactly its documented keys."""
    return {k: record[k] for k in ("id", "name", "service_type", "config")}


def _config(service_type: str, given: dict[str, Any], stored: dict[str, Any], name: str) -> dict[str, Any]:
    """
    The config of a create or an update, normalised (defaults filled in): checked
    against the schema of its type (``schema.SERVICE_CONFIG_INPUT``, from
    ``services.config.FIELDS``), then by ``validate_config``, which adds the rules
    a schema cannot say (a segment's length in bytes, the default path a name
    gives). A secret sent as the mask takes its ``stored`` value.
    """
    try:
        check_schema(schema.SERVICE_CONFIG_INPUT[service_type], given, prefix="config")
    except BadRequest as refused:
        # The service plane's words, where it refuses the same field ("'/etc'
        # must be relative ...", "S3 ... is not supported yet" say more).
        try:
            config.validate_config(service_type, given, name=name)
        except config.ConfigError as e:
            if e.field == refused.extra.get("field"):
                raise _bad_config(e)
        raise
    try:
        return config.validate_config(
            service_type, config.merge_secrets(service_type, given, stored), name=name
        )
    except config.ConfigError as e:
        raise _bad_config(e)


def _bad_config(e: config.ConfigError) -> BadRequest:
    """The 400 of a ``ConfigError``, naming its field."""
    field = e.field or "config"
    return BadRequest(f"field '{field}': {e.message}", field=field)


def _check_revision(record: Record, revision: int | None) -> None:
    """``Stale`` when an ``If-Match`` ``revision`` is not the service's (the store's write checks it again)."""
    if revision is not None and record.get("revision") != revision:
        raise Stale("service", record["id"], record.get("revision", 0))


class ServiceManager:
    """Service records and bindings, kept in step between the store and the registry."""

    log = Logger()

    def __init__(self, store: IStore, registry: Registry) -> None:
        """
        ``registry`` is the service plane's ``ServiceRegistry`` (or a fake);
        where its ``configure``, ``bind`` and ``unbind`` return a Deferred
        (mirrored to the data-plane processes, processes/proxies.py) the
        write answers once it fired.
        """
        self._store = store
        self._registry = registry
        self._lock = DeferredLock()
        # service id -> the connector the registry was given
        self._configured: dict[str, dict[str, Any]] = {}
        # endpoints this manager gave the registry bindings of
        self._bound: set[str] = set()

    # reading

    def view(self, record: Record) -> Record:
        """
        The public shape of a service record: its config normalised (a record
        stored before a field was added, such as storage's ``backend``, shows
        it with its default) and with secrets masked.
        """
        public = dict(record)
        stored = record["config"]
        try:
            stored = config.validate_config(record["service_type"], stored, name=record.get("name") or "")
        except config.ConfigError:
            pass  # answered as stored: the registry reports it where it is configured
        public["config"] = config.mask(record["service_type"], stored)
        return public

    @inlineCallbacks
    def get(self, service_id: str) -> Generator[Deferred[Any], Any, Record]:
        """The service record; 404 when there is none."""
        record: Record | None = yield self._store.get_service(service_id)
        if record is None:
            raise NotFound(f"no service with id '{service_id}'")
        return record

    def list(self) -> Deferred[builtins.list[Record]]:
        """Every service record (secrets unmasked: ``view`` each before answering)."""
        services: Deferred[builtins.list[Record]] = self._store.list_services()
        return services

    @inlineCallbacks
    def bindings(self, endpoint_id: str) -> Generator[Deferred[Any], Any, dict[str, str]]:
        """The endpoint's bindings ``{pool_id: service_id}``; 404 for an unknown endpoint."""
        endpoint: Record | None = yield self._store.get_endpoint(endpoint_id)
        if endpoint is None:
            raise NotFound(f"no endpoint with id '{endpoint_id}'")
        bound: dict[str, str] = endpoint["services"]
        return bound

    # writing services

    def create(self, payload: Any) -> Deferred[Record]:
        """Fire with the new service record, made from ``payload`` (a POST body)."""
        return self._lock.run(self._create, payload)

    @inlineCallbacks
    def _create(self, payload: Any) -> Generator[Deferred[Any], Any, Record]:
        check_schema(schema.SERVICE_CREATE_FIELDS, payload)
        name: str = payload["name"]
        service_type: str = payload["service_type"]
        # A secret sent as the mask (a record copied from a GET) counts as not given.
        service_config = _config(service_type, payload.get("config", {}), {}, name)
        now = _now()
        record = {
            "id": uuid.uuid4().hex,
            "name": name,
            "service_type": service_type,
            "config": service_config,
            "created_at": now,
            "updated_at": now,
        }
        try:
            stored: Record = yield self._store.create_service(record)
        except StoreConflict:
            raise self._name_taken(name)
        yield self._configure(stored)
        return stored

    def update(self, service_id: str, payload: Any, revision: int | None = None) -> Deferred[Record]:
        """
        Fire with the record after ``payload`` (a PUT body) changed it; with
        ``revision`` (an ``If-Match``) only if it is still at it, else ``Stale``.
        """
        return self._lock.run(self._update, service_id, payload, revision)

    @inlineCallbacks
    def _update(self, service_id: str, payload: Any, revision: int | None = None) -> Generator[Deferred[Any], Any, Record]:
        current: Record = yield self.get(service_id)
        _check_revision(current, revision)
        check_schema(schema.SERVICE_UPDATE_FIELDS, payload)
        service_type = current["service_type"]
        if "service_type" in payload and payload["service_type"] != service_type:
            raise BadRequest(
                f"field 'service_type' cannot change (it is '{service_type}'); "
                "create a new service instead",
                field="service_type",
            )
        fields: dict[str, Any] = {}
        name = current["name"]
        if "name" in payload:
            name = fields["name"] = payload["name"]
        if "config" in payload:
            fields["config"] = _config(service_type, payload["config"], current["config"], name)
        # A record PUT back unchanged keeps its connector (and its open connections).
        fields = {k: v for k, v in fields.items() if v != current[k]}
        if not fields:
            return current
        fields["updated_at"] = _now()
        try:
            record: Record | None = yield self._store.update_service(service_id, fields, revision=revision)
        except StoreConflict:
            raise self._name_taken(name)
        if record is None:
            raise NotFound(f"no service with id '{service_id}'")
        yield self._configure(record)
        return record

    def delete(self, service_id: str, revision: int | None = None) -> Deferred[Record]:
        """
        Fire with the deleted record; 409 while an endpoint is bound to it;
        with ``revision`` (an ``If-Match``) only if it is still at it, else ``Stale``.
        """
        return self._lock.run(self._delete, service_id, revision)

    @inlineCallbacks
    def _delete(self, service_id: str, revision: int | None = None) -> Generator[Deferred[Any], Any, Record]:
        record: Record = yield self.get(service_id)
        _check_revision(record, revision)
        try:
            yield self._store.delete_service(service_id, revision=revision)
        except ServiceInUse as e:
            names = ", ".join(
                "'{}' as '{}'".format(b["endpoint_name"], b["pool_id"]) for b in e.bindings
            )
            raise Conflict(
                f"service '{record['name']}' is bound to endpoint {names}; unbind it "
                "(DELETE /api/endpoints/{id}/services/{pool_id}) before deleting it",
                bindings=e.bindings,
            )
        yield self._remove(service_id, record["name"])
        return record

    # bindings

    def bind(self, endpoint_id: str, payload: Any) -> Deferred[tuple[Record, str | None]]:
        """Bind a service to the endpoint under ``payload['pool_id']``."""
        return self._lock.run(self._bind, endpoint_id, payload)

    @inlineCallbacks
    def _bind(self, endpoint_id: str, payload: Any) -> Generator[Deferred[Any], Any, tuple[Record, str | None]]:
        """Fire with ``(binding, replaced service id or None)``."""
        check_schema(schema.BINDING_INPUT, payload)
        pool_id = payload["pool_id"]
        service_id = payload["service_id"]
        now = _now()
        binding = {
            "endpoint_id": endpoint_id,
            "pool_id": pool_id,
            "service_id": service_id,
            "created_at": now,
        }
        try:
            replaced = yield self._store.bind(endpoint_id, pool_id, service_id, now)
        except Missing as e:
            raise NotFound(f"no {e.what} with id '{e.record_id}'")
        self._bound.add(endpoint_id)
        yield _settled(self._registry.bind(endpoint_id, pool_id, service_id))
        return (binding, replaced)

    def unbind(self, endpoint_id: str, pool_id: str) -> Deferred[Record]:
        """Remove the endpoint's binding named ``pool_id``."""
        return self._lock.run(self._unbind, endpoint_id, pool_id)

    @inlineCallbacks
    def _unbind(self, endpoint_id: str, pool_id: str) -> Generator[Deferred[Any], Any, Record]:
        """Fire with the binding removed."""
        bound = yield self.bindings(endpoint_id)
        if pool_id not in bound:
            pools = sorted(p for p, s in bound.items() if s == pool_id)
            hint = ""
            if pools:
                hint = (
                    f"; '{pool_id}' is a service id, bound here as "
                    + ", ".join(f"'{p}'" for p in pools)
                    + ": unbind by that name"
                )
            raise NotFound(f"endpoint '{endpoint_id}' has no service bound as '{pool_id}'{hint}")
        service_id = yield self._store.unbind(endpoint_id, pool_id)
        yield _settled(self._registry.unbind(endpoint_id, pool_id))
        return {"endpoint_id": endpoint_id, "pool_id": pool_id, "service_id": service_id}

    def endpoint_deleted(self, endpoint_id: str) -> None:
        """
        The endpoint is gone from the store (with its bindings): forget them in
        the registry too. Reads the registry's own view, so a binding made while
        the delete was under way is forgotten as well.
        """
        for pool_id in list(self._registry.bindings(endpoint_id)):
            self._registry.unbind(endpoint_id, pool_id)
        self._bound.discard(endpoint_id)

    # gateway start, and the cluster's changes

    @inlineCallbacks
    def load(self) -> Generator[Deferred[Any], Any, tuple[int, int]]:
        """
        At start: give the registry every stored service, then every binding
        (``sync``). Fires with ``(services, bindings)`` stored.
        """
        yield self.sync()
        services = yield self._store.list_services()
        bindings = yield self._store.list_bindings()
        return (len(services), len(bindings))

    def sync(self) -> Deferred[dict[str, int]]:
        """
        Bring the registry in step with the store: configure the services that
        are new or changed (type, name or config), remove those gone, then
        unbind the bindings gone and bind the new or re-pointed ones. One
        service whose connector cannot be made (or binding refused) is logged
        and skipped: the others, and the endpoints, go on (its calls answer
        ``ServiceUnavailable``). Fires with how many of each were done:
        ``{"configured", "removed", "bound", "unbound"}``.
        """
        return self._lock.run(self._sync)

    @inlineCallbacks
    def _sync(self) -> Generator[Deferred[Any], Any, dict[str, int]]:
        services = yield self._store.list_services()
        rows = yield self._store.list_bindings()
        done = {"configured": 0, "removed": 0, "bound": 0, "unbound": 0}
        stored = {record["id"]: record for record in services}
        for record in services:
            if self._configured.get(record["id"]) != _connector(record):
                configured = yield self._configure(record, quiet=True)
                done["configured"] += configured
        for service_id in [i for i in self._configured if i not in stored]:
            yield self._remove(service_id, self._configured[service_id]["name"])
            done["removed"] += 1
        wanted: dict[str, dict[str, str]] = {}
        for row in rows:
            wanted.setdefault(row["endpoint_id"], {})[row["pool_id"]] = row["service_id"]
        for endpoint_id in sorted(self._bound | set(wanted)):
            have = self._registry.bindings(endpoint_id)
            want = wanted.get(endpoint_id, {})
            for pool_id in sorted(set(have) - set(want)):
                done["unbound"] += yield self._registry_write(self._registry.unbind, endpoint_id, pool_id)
            for pool_id, service_id in sorted(want.items()):
                if have.get(pool_id) != service_id:
                    done["bound"] += yield self._registry_write(self._registry.bind, endpoint_id, pool_id, service_id)
            if want:
                self._bound.add(endpoint_id)
            else:
                self._bound.discard(endpoint_id)
        return done

    # test

    @inlineCallbacks
    def test(self, service_id: str) -> Generator[Deferred[Any], Any, dict[str, float]]:
        """Fire with ``{"latency_ms": ...}``, or fail with a 502 carrying the backend's message."""
        from edgegw_tx.services.errors import ServiceError

        record = yield self.get(service_id)
        try:
            result: dict[str, float] = yield self._registry.test(_connector(record))
        except ServiceError as e:
            raise ServiceTestFailed(e.message, kind=e.kind)
        return result

    # internals

    @inlineCallbacks
    def _configure(self, record: Record, quiet: bool = False) -> Generator[Deferred[Any], Any, int]:
        """
        Give the registry the service's connector and remember it. ``quiet``
        (a load or sync): a failure is logged and fires 0, else it is raised.
        """
        connector = _connector(record)
        try:
            yield _settled(self._registry.configure(connector))
        except Exception as e:
            if not quiet:
                raise
            self.log.error(
                "Could not configure service {name} ({id}): {error}", name=record["name"], id=record["id"], error=e
            )
            return 0
        self._configured[record["id"]] = connector
        return 1

    @inlineCallbacks
    def _remove(self, service_id: str, name: str) -> Generator[Deferred[Any], Any, None]:
        """Close and forget the service's connector; a failure is only worth a log line (the record is gone)."""
        self._configured.pop(service_id, None)
        try:
            yield self._registry.remove(service_id)
        except Exception as e:
            self.log.error("Closing service {name} failed: {e}", name=name, e=e)

    @inlineCallbacks
    def _registry_write(self, write: Any, *args: Any) -> Generator[Deferred[Any], Any, int]:
        """A ``bind`` or ``unbind`` of ``sync``: fires 1 once done, or 0 when it failed (logged)."""
        try:
            yield _settled(write(*args))
        except Exception as e:
            self.log.error("Could not update the binding {args} of the service registry: {error}", args=args, error=e)
            return 0
        return 1

    def _name_taken(self, name: str) -> Conflict:
        """The 409 of a name another service has."""
        return Conflict(f"a service named '{name}' already exists (names ignore case)")
