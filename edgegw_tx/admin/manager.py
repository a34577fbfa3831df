"""
The lifecycle of endpoints: stored record, compiled artifact, running workers.

The management API is a thin skin over this class. It owns the worker pools of
running endpoints and keeps the route table in step with them; the store keeps
what must survive a restart (an endpoint whose status is ``running`` is started
again from its deployed binary when the gateway comes back).

Lifecycle changes of one endpoint (start, stop, restart, rollback, update,
delete) are serialised by a per-endpoint lock, so two operators clicking at
once cannot leave two pools behind one route.

Versions: every successful compile is recorded in the store (``versions``);
the newest ``keep_versions`` of an endpoint are kept, with its live
(``deployed``) and current (``artifact``) ones, and an artifact goes only when
nothing uses its digest any more (artifacts are content-addressed, so endpoints
with the same code share one). Replacing a running pool (restart, rollback, a
change of the workers' settings) always goes: new pool started and ready →
route switched → old pool drained; if the new one fails to start the old one
keeps serving.
"""

import uuid
from datetime import datetime, timezone

from twisted.internet.defer import DeferredList, DeferredLock, inlineCallbacks, returnValue
from twisted.logger import Logger

from edgegw_tx.admin.errors import (
    BadRequest,
    BuildUnavailable,
    Conflict,
    NotFound,
    Unprocessable,
    WorkersFailed,
)
from edgegw_tx.admin.validation import (
    effective_settings,
    endpoint_fields,
    pool_settings_changed,
    rollback_version,
)
from edgegw_tx.build import BuildError, CompileFailed
from edgegw_tx.paths import parse_pattern
from edgegw_tx.store import Conflict as StoreConflict
from edgegw_tx.store import NoFreeUid

_HIDDEN = ("path_shape",)
SHORT_DIGEST = 12


def short(digest):
    """The first hex digits of a digest, enough to tell versions apart (None stays None)."""
    return digest[:SHORT_DIGEST] if digest else None


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

    def __init__(
        self,
        store,
        builder,
        routes,
        pool_factory,
        logbook,
        services=None,
        keep_versions=10,
        uids=None,
        reactor=None,
    ):
        """
        ``pool_factory(record, binary, log, version=digest)`` makes an unstarted
        worker pool for an endpoint record; ``routes`` is the data plane's route
        table; ``services`` (a ``ServiceManager``) is told when an endpoint is
        deleted, so its bindings leave the service registry with it;
        ``keep_versions`` is how many versions of an endpoint are kept;
        ``uids`` (a ``workers.isolation.UidAllocator``) gives each endpoint its
        own worker uid, at create (and at start for older endpoints); the
        store frees it with the endpoint;
        ``reactor`` is the clock of the switch timings.
        """
        if reactor is None:
            from twisted.internet import reactor
        self._store = store
        self._builder = builder
        self._routes = routes
        self._pool_factory = pool_factory
        self._logbook = logbook
        self._services = services
        self._keep_versions = keep_versions
        self._uids = uids
        self._clock = reactor
        self._pools = {}
        # endpoint id -> the digest its running pool serves
        self._digests = {}
        # endpoint id -> [(pool, digest)] being drained after a switch
        self._draining = {}
        # digest -> how many pools are being started on it
        self._claims = {}
        # Serialises pruning (which deletes artifacts) with taking a digest into
        # use (starting a pool on it, recording a compile of it).
        self._versions_lock = DeferredLock()
        # The last route switch: {endpoint_id, digest, ready_to_switch_ms}.
        self.last_switch = None
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
        public["settings"] = effective_settings(record["settings"])
        endpoint_id = record["id"]
        pool = self._pools.get(endpoint_id)
        public["pids"] = list(pool.pids) if pool is not None else []
        public["route"] = "{} {}{}".format(record["method"], record["domain"], self._full_path(record))
        # The live version: what the running pool serves (else what last ran).
        public["version"] = short(self._digests.get(endpoint_id) or record["deployed"])
        workers = list(pool.workers()) if pool is not None else []
        for old, _ in self._draining.get(endpoint_id, ()):
            workers.extend(old.workers())
        public["workers"] = workers
        public["queue"] = pool.stats().get("queued", 0) if pool is not None else 0
        return public

    def pool_stats(self):
        """``stats()`` of every running endpoint's worker pool."""
        return [pool.stats() for pool in self._pools.values()]

    def pool_stats_by_endpoint(self):
        """``{endpoint_id: stats()}`` of every running endpoint's worker pool (admin/history.py)."""
        return {endpoint_id: pool.stats() for endpoint_id, pool in self._pools.items()}

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
        yield self._worker_uid(stored, undo=True)
        returnValue(stored)

    @inlineCallbacks
    def _worker_uid(self, record, undo=False):
        """The endpoint's own worker uid (None without an allocator or outside that mode)."""
        if self._uids is None:
            returnValue(None)
        try:
            uid = yield self._uids.allocate(record["id"])
        except NoFreeUid as e:
            if undo:
                yield self._store.delete_endpoint(record["id"])
            raise Conflict(f"endpoint '{record['name']}' cannot get a worker uid: {e}")
        returnValue(uid)

    def update(self, endpoint_id, payload):
        return self._locked(endpoint_id, self._update_and_apply, endpoint_id, payload)

    @inlineCallbacks
    def _update_and_apply(self, endpoint_id, payload):
        """
        Store the change (under ``routing_lock``), then, when it changed a
        setting of the workers of a running endpoint, replace its pool with
        one on the same version and the new settings: started and ready, route
        switched, old one drained, so no request is dropped. If the new workers
        fail to start, the old ones keep serving and the workers' settings go
        back to what they were (the rest of the change stays): 502.
        """
        before = yield self.get(endpoint_id)
        record = yield self.routing_lock.run(self._update, endpoint_id, payload)
        if endpoint_id in self._pools and pool_settings_changed(before["settings"], record["settings"]):
            try:
                record = yield self._replace(record, self._digests[endpoint_id])
            except WorkersFailed as e:
                kept = effective_settings(record["settings"])
                kept.update(
                    (k, v) for k, v in effective_settings(before["settings"]).items() if k != "dependencies"
                )
                yield self._store.update_endpoint(endpoint_id, {"settings": kept, "updated_at": _now()})
                raise WorkersFailed(e.message + "; the change of the workers' settings was undone")
        returnValue(record)

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
                yield self._route(record, pool)
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
        versions = yield self._store.list_versions(endpoint_id)
        yield self._store.delete_endpoint(endpoint_id)
        if self._services is not None:
            self._services.endpoint_deleted(endpoint_id)
        self._logbook.forget(endpoint_id)
        # Its binaries go too, but only those no other endpoint uses.
        digests = [v["digest"] for v in versions] + [record["artifact"], record["deployed"]]
        yield self._versions_lock.run(self._remove_unused, [d for d in digests if d])
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
        fires with (record, build result). A successful build is recorded as a
        version of the endpoint (its oldest versions beyond ``keep_versions``
        pruned).
        """
        record = yield self.get(endpoint_id)
        inputs = _build_inputs(record)
        # Twice at most: a binary found cached may be pruned (as another
        # endpoint's old version) before it is recorded as this one's.
        for _ in range(2):
            result = yield self._build(endpoint_id, inputs)
            done = yield self._versions_lock.run(self._compiled, endpoint_id, inputs, result)
            if done is not None:
                returnValue(done)
        raise BuildUnavailable(f"cannot compile: the binary {result.digest} vanished twice after its build")

    @inlineCallbacks
    def _compiled(self, endpoint_id, inputs, result):
        """
        Under ``_versions_lock``: make the build the endpoint's artifact and a
        version of it, and prune. None when its binary is gone (build again).
        """
        if self._builder.artifact(result.digest) is None:
            returnValue(None)
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
        code, extra = inputs
        yield self._store.record_version(
            {
                "endpoint_id": endpoint_id,
                "digest": result.digest,
                "code": code,
                "dependencies": extra,
                "compile_seconds": round(result.seconds, 3),
                "created_at": _now(),
            },
            cached=result.cached,
        )
        unused = yield self._store.prune_versions(endpoint_id, self._keep_versions, self._in_use())
        yield self._remove_artifacts(unused)
        returnValue((record, result))

    @inlineCallbacks
    def _build(self, endpoint_id, inputs):
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
        returnValue(result)

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
        record = yield self._replace(record, record["artifact"] or record["deployed"])
        returnValue(record)

    @inlineCallbacks
    def versions(self, endpoint_id):
        """
        The endpoint's versions, newest first, each with ``live`` (it is the
        deployed one), ``current`` (the build of the current code) and
        ``available`` (its binary is still stored, so a rollback can use it).
        """
        record = yield self.get(endpoint_id)
        rows = yield self._store.list_versions(endpoint_id)
        live = self._digests.get(endpoint_id) or record["deployed"]
        returnValue(
            [
                dict(
                    row,
                    short=short(row["digest"]),
                    live=row["digest"] == live,
                    current=row["digest"] == record["artifact"],
                    available=self._builder.artifact(row["digest"]) is not None,
                )
                for row in rows
            ]
        )

    def rollback(self, endpoint_id, payload):
        """
        Serve an earlier version (``{"version": digest}``) without compiling:
        a running endpoint switches to it as a restart does (new workers ready,
        route switched, old ones drained); a stopped one starts on it. It
        becomes the ``deployed`` version; the code and ``artifact`` stay, so a
        later restart (or start) runs the current code again.
        """
        version = rollback_version(payload)
        return self._locked(endpoint_id, self._rollback, endpoint_id, version)

    @inlineCallbacks
    def _rollback(self, endpoint_id, version):
        record = yield self.get(endpoint_id)
        rows = yield self._store.list_versions(endpoint_id)
        found = [r["digest"] for r in rows if r["digest"].startswith(version)]
        if not found:
            raise NotFound(
                f"endpoint '{record['name']}' has no version '{version}'; "
                f"GET /api/endpoints/{endpoint_id}/versions lists them"
            )
        if len(found) > 1:
            raise BadRequest(
                f"field 'version': '{version}' is the start of {len(found)} versions; give more digits",
                field="version",
            )
        [digest] = found
        if self._builder.artifact(digest) is None:
            raise Conflict(
                f"the binary of version {short(digest)} of endpoint '{record['name']}' was pruned; "
                "to serve it again, PUT its code (GET .../versions shows it), compile and restart"
            )
        if self._digests.get(endpoint_id) == digest:
            returnValue(record)  # it is serving already
        record = yield self._replace(record, digest)
        returnValue(record)

    @inlineCallbacks
    def _replace(self, record, digest):
        """
        Serve ``digest``: new pool started and ready, then the route switched to
        it, then the old pool (if any) drained. When the new pool fails to
        start, the old one was never touched and keeps serving.
        """
        endpoint_id = record["id"]
        # The old pool stays registered until the new one takes its place
        # (_register), so a domain or collection change meanwhile moves its route.
        old = self._pools.get(endpoint_id)
        old_digest = self._digests.get(endpoint_id)
        record = yield self._start_locked(record, digest)
        if old is not None:
            yield self._drain(endpoint_id, old, old_digest)
        returnValue(record)

    @inlineCallbacks
    def _drain(self, endpoint_id, pool, digest):
        """Stop a pool that no longer has the route; its workers stay visible meanwhile."""
        entry = (pool, digest)
        self._draining.setdefault(endpoint_id, []).append(entry)
        try:
            yield pool.stop()
        except Exception as e:
            self.log.error("Draining workers of {name} failed: {e}", name=pool.name, e=e)
        finally:
            draining = self._draining.get(endpoint_id, [])
            if entry in draining:
                draining.remove(entry)
            if not draining:
                self._draining.pop(endpoint_id, None)

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
        """
        Stop all workers without changing what the store says should run.

        It is the gateway's shutdown, so the routes stay: a request that
        comes meanwhile (on a connection accepted as the gateway stopped
        listening) reaches its pool, which serves it while draining or
        answers 503 (PoolStopped) once stopping, never 404 as if there were
        no such endpoint.
        """
        pools = list(self._pools.values())
        self._pools.clear()
        self._digests.clear()
        for pool in pools:
            try:
                yield pool.stop()
            except Exception as e:
                self.log.error("Stopping workers of {name} failed: {e}", name=pool.name, e=e)

    # internals

    def _locked(self, endpoint_id, work, *args):
        """Run ``work(*args)`` while holding the endpoint's lifecycle lock."""
        return self._locks.setdefault(endpoint_id, DeferredLock()).run(work, *args)

    def _route(self, record, pool):
        """
        Route the endpoint to ``pool``. Answers what the route table's ``add``
        does: None, or a Deferred firing once the route is in place
        everywhere (the mirrored table of several data-plane processes,
        processes/proxies.py), which the callers wait for.
        """
        return self._routes.add(
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
        Fires once every moved route is in place (at once with one process).
        """
        placed = []
        pending = [r for r in records if r["id"] in self._pools]
        while pending:
            left = []
            for record in pending:
                try:
                    placed.append(self._route(record, self._pools[record["id"]]))
                except ValueError:  # the route table's RouteConflict
                    left.append(record)
            if len(left) == len(pending):
                for record in left:
                    self.log.error("Could not move the route of endpoint {id}", id=record["id"])
                break
            pending = left
        return DeferredList([d for d in placed if d is not None]).addCallback(lambda _: None)

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
    def _register(self, endpoint_id, record, pool, digest):
        """
        Put a started pool in service, at the endpoint's route as stored now: a
        domain or collection may have moved it while the workers started.
        """
        fresh = yield self._store.get_endpoint(endpoint_id)
        self._pools[endpoint_id] = pool
        self._digests[endpoint_id] = digest
        yield self._route(fresh or record, pool)

    @inlineCallbacks
    def _start_locked(self, record, digest):
        """
        Start a pool on ``digest`` and, once it is ready, give it the route
        (replacing the endpoint's running pool there, which the caller drains).
        When it fails to start, a running pool keeps the route: the record
        keeps status ``running`` and says why in ``last_error``.
        """
        endpoint_id = record["id"]
        if not record["enabled"]:
            raise Conflict(f"endpoint '{record['name']}' is disabled; enable it before starting")
        binary = (yield self._versions_lock.run(self._claim, digest)) if digest else None
        if binary is None:
            raise Conflict(
                f"endpoint '{record['name']}' is not compiled; "
                f"POST /api/endpoints/{endpoint_id}/compile first"
            )
        try:
            record = yield self._start_claimed(record, digest, binary)
        finally:
            self._release(digest)
        returnValue(record)

    @inlineCallbacks
    def _start_claimed(self, record, digest, binary):
        endpoint_id = record["id"]
        serving = self._digests.get(endpoint_id) if endpoint_id in self._pools else None
        uid = yield self._worker_uid(record)
        record = dict(record, worker_uid=uid)
        pool = self._pool_factory(record, binary, self._logbook.writer(endpoint_id), version=digest)
        try:
            yield pool.start()
        except Exception as e:
            yield pool.stop()
            if serving is None:
                yield self._store.update_endpoint(
                    endpoint_id,
                    {"status": "error", "last_error": f"workers failed to start: {e}", "updated_at": _now()},
                )
                raise WorkersFailed(
                    f"the workers of endpoint '{record['name']}' failed to start: {e}; "
                    f"see GET /api/endpoints/{endpoint_id}/logs"
                )
            problem = f"the workers of version {short(digest)} failed to start: {e}"
            yield self._store.update_endpoint(endpoint_id, {"last_error": problem, "updated_at": _now()})
            raise WorkersFailed(
                f"{problem}; endpoint '{record['name']}' still serves version {short(serving)}; "
                f"see GET /api/endpoints/{endpoint_id}/logs"
            )
        ready = self._clock.seconds()
        yield self.routing_lock.run(self._register, endpoint_id, record, pool, digest)
        switched = self._clock.seconds()
        self.last_switch = {
            "endpoint_id": endpoint_id,
            "digest": digest,
            "ready_to_switch_ms": round((switched - ready) * 1000, 3),
        }
        self.log.info(
            "Endpoint {name}: version {version} ready, route switched in {ms} ms",
            name=record["name"],
            version=short(digest),
            ms=self.last_switch["ready_to_switch_ms"],
        )
        record = yield self._store.update_endpoint(
            endpoint_id,
            {"status": "running", "deployed": digest, "last_error": None, "updated_at": _now()},
        )
        returnValue(record)

    # versions and their binaries

    def _in_use(self):
        """Digests whose binaries must stay: served, being drained, or being started."""
        used = set(self._digests.values()) | set(self._claims)
        for draining in self._draining.values():
            used.update(digest for _, digest in draining)
        used.discard(None)
        return used

    def _claim(self, digest):
        """Under ``_versions_lock``: the binary of ``digest``, kept from pruning until released; or None."""
        binary = self._builder.artifact(digest)
        if binary is not None:
            self._claims[digest] = self._claims.get(digest, 0) + 1
        return binary

    def _release(self, digest):
        count = self._claims.get(digest, 0) - 1
        if count > 0:
            self._claims[digest] = count
        else:
            self._claims.pop(digest, None)

    @inlineCallbacks
    def _remove_unused(self, digests):
        """Under ``_versions_lock``: remove the binaries of those ``digests`` nothing uses."""
        unused = yield self._store.unused_digests(digests, self._in_use())
        yield self._remove_artifacts(unused)

    @inlineCallbacks
    def _remove_artifacts(self, digests):
        """Under ``_versions_lock``: delete binaries (in a thread), never one in use."""
        in_use = self._in_use()
        for digest in digests:
            if digest in in_use:
                continue
            try:
                yield self._builder.remove_artifact(digest)
                self.log.info("Removed the unused binary {digest}", digest=digest)
            except Exception as e:
                self.log.error("Could not remove the binary {digest}: {e}", digest=digest, e=e)

    @inlineCallbacks
    def _stop_locked(self, record):
        endpoint_id = record["id"]
        pool = self._pools.pop(endpoint_id, None)
        self._digests.pop(endpoint_id, None)
        self._routes.remove(endpoint_id)
        if pool is not None:
            yield pool.stop()
        status = "stopped" if record["deployed"] else record["status"]
        if record["status"] == "running" or pool is not None:
            record = yield self._store.update_endpoint(
                endpoint_id, {"status": status, "updated_at": _now()}
            )
        returnValue(record)
