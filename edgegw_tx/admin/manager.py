"""
The lifecycle of endpoints: stored record, compiled artifact, running workers.

The management API is a thin skin over this class. It owns the worker pools of
running endpoints and keeps the route table in step with them; the store keeps
what must survive a restart (an endpoint whose status is ``running`` is started
again from its deployed binary when the gateway comes back).

Lifecycle changes of one endpoint (start, stop, restart, update, delete) are
serialised by a per-endpoint lock, so two operators clicking at once cannot
leave two pools behind one route.
"""

import uuid
from datetime import datetime, timezone

from twisted.internet.defer import DeferredLock, inlineCallbacks, returnValue
from twisted.logger import Logger

from edgegw_tx.admin.errors import (
    BuildUnavailable,
    Conflict,
    NotFound,
    Unprocessable,
    WorkersFailed,
)
from edgegw_tx.admin.validation import endpoint_fields
from edgegw_tx.build import BuildError, CompileFailed
from edgegw_tx.paths import parse_pattern
from edgegw_tx.store import Conflict as StoreConflict

_HIDDEN = ("path_shape",)


def _now():
    return datetime.now(timezone.utc).isoformat()


def _summary(diagnostics):
    """
    The first error's message, for the record's ``last_error``.  A message from
    cargo's stderr (an unresolvable dependency) is several lines: its first
    ``error:`` line is the summary, and the diagnostic keeps the whole text.
    """
    for diagnostic in diagnostics:
        if diagnostic.get("level") == "error":
            line = diagnostic.get("line")
            where = f" (line {line})" if line else ""
            lines = (diagnostic.get("message") or "error").splitlines() or ["error"]
            first = next((x for x in lines if x.startswith("error")), lines[0])
            return first + where
    return "cargo failed"


def _build_inputs(record):
    """What a build of the endpoint depends on: its code and explicit dependencies."""
    return record["code"], record["settings"].get("dependencies") or {}


class EndpointManager:
    log = Logger()

    def __init__(self, store, builder, routes, pool_factory, logbook, services=None):
        """
        ``pool_factory(record, binary, log)`` makes an unstarted worker pool for
        an endpoint record; ``routes`` is the data plane's route table;
        ``services`` (a ``ServiceManager``) is told when an endpoint is deleted,
        so its bindings leave the service registry with it.
        """
        self._store = store
        self._builder = builder
        self._routes = routes
        self._pool_factory = pool_factory
        self._logbook = logbook
        self._services = services
        self._pools = {}
        self._locks = {}
        # Domains and collections (admin/domains.py): ``_routing`` resolves an
        # endpoint's effective route; ``routing_lock`` serialises every write
        # that decides routes (endpoint create/update, domain and collection
        # writes) and the moment a started pool takes its route.
        self._routing = None
        self.routing_lock = DeferredLock()

    def set_routing(self, routing):
        """Use ``routing`` (a ``CollectionManager``) to place endpoints; see admin/domains.py."""
        self._routing = routing

    # reading

    def view(self, record):
        """The public shape of an endpoint record."""
        public = {k: v for k, v in record.items() if k not in _HIDDEN}
        pool = self._pools.get(record["id"])
        public["pids"] = list(pool.pids) if pool is not None else []
        public["route"] = "{} {}{}".format(record["method"], record["domain"], self._full_path(record))
        return public

    def pool_stats(self):
        """``stats()`` of every running endpoint's worker pool."""
        return [pool.stats() for pool in self._pools.values()]

    @inlineCallbacks
    def get(self, endpoint_id):
        record = yield self._store.get_endpoint(endpoint_id)
        if record is None:
            raise NotFound(f"no endpoint with id '{endpoint_id}'")
        returnValue(record)

    @inlineCallbacks
    def list(self):
        records = yield self._store.list_endpoints()
        returnValue(records)

    def logs(self, endpoint_id, since=None):
        return self._logbook.lines(endpoint_id, since)

    def running_count(self):
        return len(self._pools)

    # writing

    def create(self, payload):
        return self.routing_lock.run(self._create, payload)

    @inlineCallbacks
    def _create(self, payload):
        fields = endpoint_fields(payload)
        pattern = parse_pattern(fields["path"])
        now = _now()
        record = dict(fields)
        record.update(
            id=uuid.uuid4().hex,
            path_shape=pattern.shape,
            status="created",
            created_at=now,
            updated_at=now,
        )
        if self._routing is not None:
            placed = yield self._routing.place(payload, fields, None)
            record.update(placed)
        try:
            stored = yield self._store.create_endpoint(record)
        except StoreConflict:
            error = yield self._route_taken(record)
            raise error
        returnValue(stored)

    def update(self, endpoint_id, payload):
        return self._locked(endpoint_id, self.routing_lock.run, self._update, endpoint_id, payload)

    @inlineCallbacks
    def _update(self, endpoint_id, payload):
        current = yield self.get(endpoint_id)
        fields = endpoint_fields(payload, current)
        merged = dict(current, **fields)
        if "path" in fields:
            fields["path_shape"] = parse_pattern(fields["path"]).shape
            merged["path_shape"] = fields["path_shape"]
        if self._routing is not None:
            placed = yield self._routing.place(payload, fields, current)
            fields.update(placed)
            merged.update(placed)
        if _build_inputs(merged) != _build_inputs(current):
            fields["artifact"] = None
            if current["status"] != "running":
                fields["status"] = "created"
        fields["updated_at"] = _now()
        try:
            record = yield self._store.update_endpoint(endpoint_id, fields)
        except StoreConflict:
            error = yield self._route_taken(merged)
            raise error
        pool = self._pools.get(endpoint_id)
        if pool is not None:
            if not record["enabled"]:
                record = yield self._stop_locked(record)
            elif any(
                record[k] != current[k]
                for k in ("path", "method", "domain", "collection_id", "path_shape")
            ):
                # RouteTable.add under the same key: the new route replaces the old at once.
                self._route(record, pool)
        returnValue(record)

    def delete(self, endpoint_id):
        d = self._locked(endpoint_id, self._delete, endpoint_id)
        d.addBoth(self._forget_lock, endpoint_id)
        return d

    @inlineCallbacks
    def _delete(self, endpoint_id):
        record = yield self.get(endpoint_id)
        if endpoint_id in self._pools:
            yield self._stop_locked(record)
        yield self._store.delete_endpoint(endpoint_id)
        if self._services is not None:
            self._services.endpoint_deleted(endpoint_id)
        self._logbook.forget(endpoint_id)
        returnValue(record)

    def _forget_lock(self, result, endpoint_id):
        lock = self._locks.get(endpoint_id)
        if lock is not None and not lock.locked and not lock.waiting:
            del self._locks[endpoint_id]
        return result

    @inlineCallbacks
    def compile(self, endpoint_id):
        """
        Build the endpoint's current code with its ``settings.dependencies``;
        fires with (record, build result).
        """
        record = yield self.get(endpoint_id)
        inputs = _build_inputs(record)
        code, extra = inputs
        try:
            result = yield self._builder.build(endpoint_id, code, extra_dependencies=extra)
        except CompileFailed as failure:
            latest = yield self.get(endpoint_id)
            if _build_inputs(latest) == inputs:
                yield self._store.update_endpoint(
                    endpoint_id,
                    {
                        "status": "running" if endpoint_id in self._pools else "error",
                        "artifact": None,
                        "last_error": _summary(failure.diagnostics),
                        "updated_at": _now(),
                    },
                )
            raise Unprocessable(
                "compilation failed: " + _summary(failure.diagnostics), diagnostics=failure.diagnostics
            )
        except BuildError as e:
            raise BuildUnavailable(f"cannot compile: {e}")
        latest = yield self.get(endpoint_id)
        if _build_inputs(latest) != inputs:
            # The code or dependencies changed while cargo ran: this binary is not the endpoint's.
            returnValue((latest, result))
        record = yield self._store.update_endpoint(
            endpoint_id,
            {
                "artifact": result.digest,
                "status": "running" if endpoint_id in self._pools else "compiled",
                "last_error": None,
                "updated_at": _now(),
            },
        )
        returnValue((record, result))

    def start(self, endpoint_id):
        return self._locked(endpoint_id, self._start, endpoint_id)

    @inlineCallbacks
    def _start(self, endpoint_id):
        record = yield self.get(endpoint_id)
        if endpoint_id not in self._pools:
            record = yield self._start_locked(record, record["artifact"])
        returnValue(record)

    def stop(self, endpoint_id):
        return self._locked(endpoint_id, self._stop, endpoint_id)

    @inlineCallbacks
    def _stop(self, endpoint_id):
        record = yield self.get(endpoint_id)
        record = yield self._stop_locked(record)
        returnValue(record)

    def restart(self, endpoint_id):
        """
        Start fresh workers on the latest compiled binary, switch the route to
        them, then drain the old ones: no request finds the endpoint missing.
        """
        return self._locked(endpoint_id, self._restart, endpoint_id)

    @inlineCallbacks
    def _restart(self, endpoint_id):
        record = yield self.get(endpoint_id)
        # The old pool stays registered until the new one takes its place
        # (_register), so a domain or collection change meanwhile moves its route.
        old = self._pools.get(endpoint_id)
        try:
            record = yield self._start_locked(record, record["artifact"] or record["deployed"])
        except Exception:
            if old is not None:
                self._pools[endpoint_id] = old
            raise
        if old is not None:
            yield old.stop()
        returnValue(record)

    # gateway start and stop

    @inlineCallbacks
    def restore(self):
        """Start every endpoint that was running when the gateway stopped."""
        records = yield self._store.list_endpoints()
        for record in records:
            if record["status"] != "running" or not record["deployed"]:
                continue
            try:
                yield self.start_deployed(record)
            except Exception as e:
                self.log.error("Could not restore endpoint {id}: {error}", id=record["id"], error=e)

    def start_deployed(self, record):
        return self._locked(record["id"], self._start_locked, record, record["deployed"])

    @inlineCallbacks
    def stop_all(self):
        """Stop all workers without changing what the store says should run."""
        pools = list(self._pools.items())
        self._pools.clear()
        for endpoint_id, _ in pools:
            self._routes.remove(endpoint_id)
        for _, pool in pools:
            try:
                yield pool.stop()
            except Exception as e:
                self.log.error("Stopping workers of {name} failed: {e}", name=pool.name, e=e)

    # internals

    def _locked(self, endpoint_id, work, *args):
        """Run ``work(*args)`` while holding the endpoint's lifecycle lock."""
        return self._locks.setdefault(endpoint_id, DeferredLock()).run(work, *args)

    def _route(self, record, pool):
        self._routes.add(
            record["id"],
            record["domain"],
            record["method"],
            parse_pattern(self._full_path(record)),
            pool,
        )

    def _full_path(self, record):
        """The path the endpoint is served at: its collection's base path applied."""
        if self._routing is None:
            return record["path"]
        return self._routing.full_path(record)

    def reroute(self, records):
        """
        Move the routes of those endpoint ``records`` (as now stored) that run,
        each atomically: ``RouteTable.add`` under the same key replaces the old
        route. Call under ``routing_lock``. A batch may move one endpoint onto
        the route another is leaving, so a clash is retried after the others.
        """
        pending = [r for r in records if r["id"] in self._pools]
        while pending:
            left = []
            for record in pending:
                try:
                    self._route(record, self._pools[record["id"]])
                except ValueError:  # the route table's RouteConflict
                    left.append(record)
            if len(left) == len(pending):
                for record in left:
                    self.log.error("Could not move the route of endpoint {id}", id=record["id"])
                return
            pending = left

    @inlineCallbacks
    def _route_taken(self, record):
        other = None
        if self._routing is not None:
            other = yield self._routing.holder(record)
        returnValue(
            Conflict(
                "another endpoint {}already serves {} {} on domain '{}'".format(
                    f"('{other['name']}', id {other['id']}) " if other else "",
                    record["method"],
                    self._full_path(record),
                    record["domain"],
                )
            )
        )

    @inlineCallbacks
    def _register(self, endpoint_id, record, pool):
        """
        Put a started pool in service, at the endpoint's route as stored now: a
        domain or collection may have moved it while the workers started.
        """
        fresh = yield self._store.get_endpoint(endpoint_id)
        self._pools[endpoint_id] = pool
        self._route(fresh or record, pool)

    @inlineCallbacks
    def _start_locked(self, record, digest):
        endpoint_id = record["id"]
        if not record["enabled"]:
            raise Conflict(f"endpoint '{record['name']}' is disabled; enable it before starting")
        binary = self._builder.artifact(digest) if digest else None
        if binary is None:
            raise Conflict(
                f"endpoint '{record['name']}' is not compiled; "
                f"POST /api/endpoints/{endpoint_id}/compile first"
            )
        pool = self._pool_factory(record, binary, self._logbook.writer(endpoint_id))
        try:
            yield pool.start()
        except Exception as e:
            yield pool.stop()
            yield self._store.update_endpoint(
                endpoint_id,
                {"status": "error", "last_error": f"workers failed to start: {e}", "updated_at": _now()},
            )
            raise WorkersFailed(
                f"the workers of endpoint '{record['name']}' failed to start: {e}; "
                f"see GET /api/endpoints/{endpoint_id}/logs"
            )
        yield self.routing_lock.run(self._register, endpoint_id, record, pool)
        record = yield self._store.update_endpoint(
            endpoint_id,
            {"status": "running", "deployed": digest, "last_error": None, "updated_at": _now()},
        )
        returnValue(record)

    @inlineCallbacks
    def _stop_locked(self, record):
        endpoint_id = record["id"]
        pool = self._pools.pop(endpoint_id, None)
        self._routes.remove(endpoint_id)
        if pool is not None:
            yield pool.stop()
        status = "stopped" if record["deployed"] else record["status"]
        if record["status"] == "running" or pool is not None:
            record = yield self._store.update_endpoint(
                endpoint_id, {"status": status, "updated_at": _now()}
            )
        returnValue(record)
