"""
The lifecycle of services and of their bindings to endpoints.

The store keeps what must survive a restart; the service registry (the service
plane) holds the live connectors and resolves a worker's ``call`` to a
connector by the endpoint's binding name (``pool_id``) at call time, so every
change here takes effect at once, without restarting workers.

Services hold secrets (passwords, keys). They leave this module only through
``view``, which masks them; a client that PUTs back what it read sends the mask,
and ``merge_secrets`` puts the stored secret back in its place.

Writes are serialised by one lock, so a delete can never race a binding to the
service it deletes, nor two updates leave the registry out of step with the
store. Tests of a service's connection do not take the lock.
"""

import re
import uuid
from datetime import datetime, timezone

from twisted.internet.defer import DeferredLock, inlineCallbacks, returnValue
from twisted.logger import Logger

from edgegw_tx.admin import schema
from edgegw_tx.admin.errors import ApiError, BadRequest, Conflict, NotFound
from edgegw_tx.admin.schema import ecma_regex
from edgegw_tx.admin.validation import check_schema
from edgegw_tx.store import Conflict as StoreConflict
from edgegw_tx.store import Missing, ServiceInUse

SERVICE_NAME = ecma_regex(schema.SERVICE_NAME)

_WRITABLE = {"name", "service_type", "config"}
_READ_ONLY = {"id", "created_at", "updated_at"}


class ServiceTestFailed(ApiError):
    """The backend refused or could not be reached: its message, as a 502."""

    status = 502


def _now():
    return datetime.now(timezone.utc).isoformat()


def _config_module():
    # Imported on use: the admin plane works (endpoints, keys) even where the
    # service plane's optional drivers are missing.
    from edgegw_tx.services import config

    return config


def _connector(record):
    """What the registry is told about a service: exactly its documented keys."""
    return {k: record[k] for k in ("id", "name", "service_type", "config")}


def _string(payload, field, pattern, rule):
    value = payload[field]
    if not isinstance(value, str):
        raise BadRequest(f"field '{field}' must be a string", field=field)
    if not pattern.match(value):
        raise BadRequest(f"field '{field}' must be {rule}", field=field)
    return value


def _name(payload):
    return _string(
        payload,
        "name",
        SERVICE_NAME,
        f"1 to {schema.MAX_SERVICE_NAME} letters, digits, '_', '-' or '.', starting with a letter or digit",
    )


class ServiceManager:
    log = Logger()

    def __init__(self, store, registry):
        """
        ``registry`` is the service plane's ``ServiceRegistry`` (or a fake);
        where its ``configure``, ``bind`` and ``unbind`` return a Deferred
        (mirrored to the data-plane processes, processes/proxies.py) the
        write answers once it fired.
        """
        self._store = store
        self._registry = registry
        self._lock = DeferredLock()

    # reading

    def view(self, record):
        """The public shape of a service record: its config with secrets masked."""
        public = dict(record)
        public["config"] = _config_module().mask(record["service_type"], record["config"])
        return public

    @inlineCallbacks
    def get(self, service_id):
        record = yield self._store.get_service(service_id)
        if record is None:
            raise NotFound(f"no service with id '{service_id}'")
        returnValue(record)

    def list(self):
        return self._store.list_services()

    @inlineCallbacks
    def bindings(self, endpoint_id):
        """The endpoint's bindings ``{pool_id: service_id}``; 404 for an unknown endpoint."""
        endpoint = yield self._store.get_endpoint(endpoint_id)
        if endpoint is None:
            raise NotFound(f"no endpoint with id '{endpoint_id}'")
        returnValue(endpoint["services"])

    # writing services

    def create(self, payload):
        return self._lock.run(self._create, payload)

    @inlineCallbacks
    def _create(self, payload):
        config = _config_module()
        self._check_fields(payload)
        for field in ("name", "service_type"):
            if field not in payload:
                raise BadRequest(f"missing field '{field}'", field=field)
        name = _name(payload)
        service_type = payload["service_type"]
        if service_type not in config.SERVICE_TYPES:
            raise BadRequest(
                "field 'service_type' must be one of: " + ", ".join(config.SERVICE_TYPES),
                field="service_type",
            )
        given = payload.get("config", {})
        if isinstance(given, dict):
            # A secret sent as the mask (a record copied from a GET) counts as not given.
            given = config.merge_secrets(service_type, given, {})
        now = _now()
        record = {
            "id": uuid.uuid4().hex,
            "name": name,
            "service_type": service_type,
            "config": self._validate(service_type, given, name),
            "created_at": now,
            "updated_at": now,
        }
        try:
            stored = yield self._store.create_service(record)
        except StoreConflict:
            raise self._name_taken(name)
        yield self._registry.configure(_connector(stored))
        returnValue(stored)

    def update(self, service_id, payload):
        return self._lock.run(self._update, service_id, payload)

    @inlineCallbacks
    def _update(self, service_id, payload):
        current = yield self.get(service_id)
        self._check_fields(payload)
        service_type = current["service_type"]
        if "service_type" in payload and payload["service_type"] != service_type:
            raise BadRequest(
                f"field 'service_type' cannot change (it is '{service_type}'); "
                "create a new service instead",
                field="service_type",
            )
        fields = {}
        name = current["name"]
        if "name" in payload:
            name = fields["name"] = _name(payload)
        if "config" in payload:
            given = payload["config"]
            if isinstance(given, dict):
                given = _config_module().merge_secrets(service_type, given, current["config"])
            fields["config"] = self._validate(service_type, given, name)
        # A record PUT back unchanged keeps its connector (and its open connections).
        fields = {k: v for k, v in fields.items() if v != current[k]}
        if not fields:
            returnValue(current)
        fields["updated_at"] = _now()
        try:
            record = yield self._store.update_service(service_id, fields)
        except StoreConflict:
            raise self._name_taken(name)
        yield self._registry.configure(_connector(record))
        returnValue(record)

    def delete(self, service_id):
        return self._lock.run(self._delete, service_id)

    @inlineCallbacks
    def _delete(self, service_id):
        record = yield self.get(service_id)
        try:
            yield self._store.delete_service(service_id)
        except ServiceInUse as e:
            names = ", ".join(
                "'{}' as '{}'".format(b["endpoint_name"], b["pool_id"]) for b in e.bindings
            )
            raise Conflict(
                f"service '{record['name']}' is bound to endpoint {names}; unbind it "
                "(DELETE /api/endpoints/{id}/services/{pool_id}) before deleting it",
                bindings=e.bindings,
            )
        try:
            yield self._registry.remove(service_id)
        except Exception as e:
            # The record is gone; a connector that closed badly is only worth a log line.
            self.log.error("Closing service {name} failed: {e}", name=record["name"], e=e)
        returnValue(record)

    # bindings

    def bind(self, endpoint_id, payload):
        return self._lock.run(self._bind, endpoint_id, payload)

    @inlineCallbacks
    def _bind(self, endpoint_id, payload):
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
        yield self._registry.bind(endpoint_id, pool_id, service_id)
        returnValue((binding, replaced))

    def unbind(self, endpoint_id, pool_id):
        return self._lock.run(self._unbind, endpoint_id, pool_id)

    @inlineCallbacks
    def _unbind(self, endpoint_id, pool_id):
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
        yield self._registry.unbind(endpoint_id, pool_id)
        returnValue({"endpoint_id": endpoint_id, "pool_id": pool_id, "service_id": service_id})

    def endpoint_deleted(self, endpoint_id):
        """
        The endpoint is gone from the store (with its bindings): forget them in
        the registry too. Reads the registry's own view, so a binding made while
        the delete was under way is forgotten as well.
        """
        for pool_id in list(self._registry.bindings(endpoint_id)):
            self._registry.unbind(endpoint_id, pool_id)

    # gateway start

    @inlineCallbacks
    def load(self):
        """
        Give the registry every stored service, then every binding. One service
        whose connector cannot be made is logged and skipped: the others, and
        the endpoints, still start (its calls answer ``ServiceUnavailable``).
        """
        services = yield self._store.list_services()
        for record in services:
            try:
                self._registry.configure(_connector(record))
            except Exception as e:
                self.log.error(
                    "Could not configure service {name} ({id}): {error}",
                    name=record["name"],
                    id=record["id"],
                    error=e,
                )
        bindings = yield self._store.list_bindings()
        for binding in bindings:
            self._registry.bind(binding["endpoint_id"], binding["pool_id"], binding["service_id"])
        returnValue((len(services), len(bindings)))

    # test

    @inlineCallbacks
    def test(self, service_id):
        """Fire with ``{"latency_ms": ...}``, or fail with a 502 carrying the backend's message."""
        from edgegw_tx.services.errors import ServiceError

        record = yield self.get(service_id)
        try:
            result = yield self._registry.test(_connector(record))
        except ServiceError as e:
            raise ServiceTestFailed(e.message, kind=e.kind)
        returnValue(result)

    # internals

    def _check_fields(self, payload):
        if not isinstance(payload, dict):
            raise BadRequest("the request body must be a JSON object")
        unknown = sorted(set(payload) - _WRITABLE - _READ_ONLY)
        if unknown:
            raise BadRequest(f"unknown field '{unknown[0]}'", field=unknown[0])

    def _validate(self, service_type, given, name):
        config = _config_module()
        if not isinstance(given, dict):
            raise BadRequest("field 'config' must be an object", field="config")
        try:
            return config.validate_config(service_type, given, name=name)
        except config.ConfigError as e:
            field = e.field or "config"
            raise BadRequest(f"field '{field}': {e.message}", field=field)

    def _name_taken(self, name):
        return Conflict(f"a service named '{name}' already exists (names ignore case)")
