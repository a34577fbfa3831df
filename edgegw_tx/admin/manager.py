"""
The lifecycle of endpoints: stored record, compiled artifact, running workers.

The management API is a thin skin over ``EndpointManager``, which composes
five parts, each owning its own state:

* the records (admin/records.py): create, update and delete of endpoint
  records with their validation, placement and worker uid; they own the
  *routing lock*;
* the deployments (admin/deployments.py): running pools, the digests they
  serve, pools being drained, the zero-drop switch and route moves; no lock;
* the artifact ledger (admin/ledger.py): claims on binaries, version rows,
  pruning beyond ``keep_versions``; it owns the *ledger lock*;
* the builds (admin/builds.py): compiles, recorded as versions through the
  ledger; no lock;
* the views (admin/views.py): what the API shows of a record and its pool.

In a cluster (several nodes sharing one store) an endpoint's record is the
desired state of every node: ``reconcile`` brings this node's pool of an
endpoint in step with it (started, replaced with the zero-drop switch,
re-routed, stopped) without writing to the store, since one node's local
failure must not change what every node should run.

This module owns the *lifecycle locks*, one per endpoint: start, stop,
restart, rollback, update and delete of one endpoint are serialised, so two
operators clicking at once cannot leave two pools behind one route. The store
keeps what must survive a restart (an endpoint whose status is ``running`` is
started again from its deployed binary when the gateway comes back).

Lock order: an endpoint's lifecycle lock, then the routing lock, then the
ledger lock; a lock is never taken while one later in that order is held.
Domains and collections (admin/domains.py) take the routing lock through
``routing_write`` and delete endpoints (taking their lifecycle locks) before
it, never inside it. Compiles take only the ledger lock; the routing and
ledger locks are never held together. ``reconcile`` holds the endpoint's
lifecycle lock and takes the routing lock inside it (a route switch or
move), as a start does; ``CollectionManager.load`` is a routing write of
its own, so a cluster's follower calls it before ``reconcile_all``, never
inside a routing write.
"""

from __future__ import annotations

import builtins
from typing import Any, Callable, Generator, Iterable, Optional, cast

from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from edgegw_tx.admin import validation
from edgegw_tx.admin.builds import Builds
from edgegw_tx.admin.deployments import Deployments, PoolFactory, Routes
from edgegw_tx.admin.errors import BadRequest, Conflict, NotFound, WorkersFailed
from edgegw_tx.admin.ledger import ArtifactLedger
from edgegw_tx.admin.records import ROUTE_COLUMNS, EndpointRecords, Placement, Uids
from edgegw_tx.admin.views import SHORT_DIGEST, effective_settings, endpoint_view, short, version_views
from edgegw_tx.store.errors import Stale, StoreUnavailable
from edgegw_tx.store.interface import IStore, Record

__all__ = ["EndpointManager", "SHORT_DIGEST", "short"]


# Typed here while validation.py is not: whether a settings change needs new
# workers, and the version a rollback body names.
pool_settings_changed: Callable[[dict[str, Any], dict[str, Any]], bool] = validation.pool_settings_changed
rollback_version: Callable[[Any], str] = validation.rollback_version


class EndpointManager:
    """Endpoints' records, builds and pools, composed; see the module docstring."""

    log = Logger()

    def __init__(
        self,
        store: IStore,
        builder: Any,
        routes: Routes,
        pool_factory: PoolFactory,
        logbook: Any,
        services: Any = None,
        keep_versions: int = 10,
        uids: Optional[Uids] = None,
        reactor: Optional[IReactorTime] = None,
    ) -> None:
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
            from twisted.internet import reactor as default

            reactor = cast(IReactorTime, default)
        self._logbook = logbook
        self._services = services
        self.records = EndpointRecords(store, uids)
        self.ledger = ArtifactLedger(store, builder, keep_versions)
        self.deployments = Deployments(
            store,
            routes,
            pool_factory,
            self.ledger,
            logbook.writer,
            self.records.worker_uid,
            self.records.full_path,
            self.records.routing_write,
            reactor,
        )
        self.builds = Builds(self.records, self.ledger, builder, self.deployments.serving)
        self._locks: dict[str, DeferredLock] = {}

    def set_routing(self, routing: Placement) -> None:
        """
        Use ``routing`` (a ``CollectionManager``) to place endpoints, and its
        ``policy_of`` for their traffic policies (when it has one); see admin/domains.py.
        """
        self.records.set_placement(routing)
        policy_of = getattr(routing, "policy_of", None)
        if policy_of is not None:
            self.deployments.policy_of = policy_of

    def routing_write(self, work: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        """Run ``work(*args)`` under the routing lock (domain and collection writes); see admin/records.py."""
        return self.records.routing_write(work, *args)

    def reroute(self, records: Iterable[Record]) -> "Deferred[None]":
        """Move the routes of the running ones of ``records``; call inside ``routing_write``."""
        return self.deployments.reroute(records)

    @property
    def last_switch(self) -> Optional[dict[str, Any]]:
        """The last route switch: ``{endpoint_id, digest, ready_to_switch_ms}`` (None before one)."""
        return self.deployments.last_switch

    # reading

    def view(self, record: Record) -> Record:
        """The public shape of an endpoint record."""
        return endpoint_view(record, self.deployments.live(record["id"]), self.records.full_path(record))

    def pool_stats(self) -> list[dict[str, Any]]:
        """``stats()`` of every running endpoint's worker pool."""
        return self.deployments.pool_stats()

    def pool_stats_by_endpoint(self) -> dict[str, dict[str, Any]]:
        """``{endpoint_id: stats()}`` of every running endpoint's worker pool (admin/history.py)."""
        return self.deployments.pool_stats_by_endpoint()

    def get(self, endpoint_id: str) -> "Deferred[Record]":
        """The endpoint's record; 404 when there is none."""
        return self.records.get(endpoint_id)

    def list(self) -> "Deferred[builtins.list[Record]]":
        """Every endpoint record."""
        return self.records.list()

    def logs(self, endpoint_id: str, since: Any = None) -> Any:
        """The endpoint's log lines (after ``since``)."""
        return self._logbook.lines(endpoint_id, since)

    def running_count(self) -> int:
        """How many endpoints have running workers."""
        return self.deployments.running_count()

    @inlineCallbacks
    def versions(self, endpoint_id: str) -> Generator["Deferred[Any]", Any, builtins.list[Record]]:
        """
        The endpoint's versions, newest first, each with ``live`` (it is the
        deployed one), ``current`` (the build of the current code) and
        ``available`` (its binary is still stored, so a rollback can use it).
        """
        record = yield self.get(endpoint_id)
        rows = yield self.ledger.versions(endpoint_id)
        return version_views(rows, record, self.deployments.digest(endpoint_id), self.ledger.stored)

    # writing

    def create(self, payload: Any) -> "Deferred[Record]":
        """A new endpoint record (status ``created``)."""
        return self.records.create(payload)

    def update(self, endpoint_id: str, payload: Any, revision: Optional[int] = None) -> "Deferred[Record]":
        """
        Change an endpoint; see ``_update``. With ``revision`` (an ``If-Match``)
        only if the record is still at that revision, else ``Stale``.
        """
        return self._locked(endpoint_id, self._update, endpoint_id, payload, revision)

    @inlineCallbacks
    def _update(
        self, endpoint_id: str, payload: Any, revision: Optional[int] = None
    ) -> Generator["Deferred[Any]", Any, Record]:
        """
        Store the change (as a routing write), then, when it changed a
        setting of the workers of a running endpoint, replace its pool with
        one on the same version and the new settings: started and ready, route
        switched, old one drained, so no request is dropped. If the new workers
        fail to start, the old ones keep serving and the workers' settings go
        back to what they were (the rest of the change stays): 502.
        """
        before = yield self.get(endpoint_id)
        record = yield self.records.update(endpoint_id, payload, self._follow, revision)
        if self.deployments.serving(endpoint_id) and pool_settings_changed(before["settings"], record["settings"]):
            try:
                record = yield self.deployments.replace(record, self.deployments.digest(endpoint_id))
            except WorkersFailed as e:
                kept = effective_settings(record["settings"])
                kept.update(
                    (k, v) for k, v in effective_settings(before["settings"]).items() if k != "dependencies"
                )
                yield self.records.write(endpoint_id, {"settings": kept})
                raise WorkersFailed(e.message + "; the change of the workers' settings was undone")
        updated: Record = record
        return updated

    @inlineCallbacks
    def _follow(self, current: Record, record: Record) -> Generator["Deferred[Any]", Any, Record]:
        """Inside the update's routing write: stop a running endpoint now disabled, or move its route."""
        if self.deployments.serving(record["id"]):
            if not record["enabled"]:
                record = yield self.deployments.stop(record)
            elif any(record.get(k) != current.get(k) for k in ROUTE_COLUMNS + ("policy",)):
                # RouteTable.add under the same key: the new route replaces the old at once.
                placed = self.deployments.route(record)
                if placed is not None:
                    yield placed
        followed: Record = record
        return followed

    def delete(self, endpoint_id: str, revision: Optional[int] = None) -> "Deferred[Record]":
        """
        Stop and delete an endpoint, and the binaries only it used. With
        ``revision`` only if the record is still at that revision, else
        ``Stale`` (and it keeps running).
        """
        d = self._locked(endpoint_id, self._delete, endpoint_id, revision)
        d.addBoth(self._forget_lock, endpoint_id)
        return d

    @inlineCallbacks
    def _delete(self, endpoint_id: str, revision: Optional[int] = None) -> Generator["Deferred[Any]", Any, Record]:
        record = yield self.get(endpoint_id)
        if revision is not None and record.get("revision") != revision:
            raise Stale("endpoint", endpoint_id, record.get("revision", 0))
        serving = self.deployments.digest(endpoint_id)
        if serving is not None:
            # Nothing written: the record goes (and a written status would change its revision).
            yield self.deployments.stop(record, persist=False)
        versions = yield self.ledger.versions(endpoint_id)
        try:
            yield self.records.delete(endpoint_id, revision)
        except Exception:
            # Not deleted (changed elsewhere since it was read: Stale; the store
            # unreachable): it stays, and so does its pool.
            if serving is not None:
                try:
                    yield self.deployments.start(record, serving, persist=False)
                except Exception as e:
                    self.log.error("Could not restart endpoint {id}: {error}", id=endpoint_id, error=e)
            raise
        self._forget_local(endpoint_id)
        # Its binaries go too, but only those no other endpoint uses.
        yield self.ledger.forget([v["digest"] for v in versions] + [record["artifact"], record["deployed"]])
        deleted: Record = record
        return deleted

    def _forget_local(self, endpoint_id: str) -> None:
        """The endpoint is gone from the store: forget its log lines and its bindings in the registry."""
        if self._services is not None:
            self._services.endpoint_deleted(endpoint_id)
        self._logbook.forget(endpoint_id)

    def _forget_lock(self, result: Any, endpoint_id: str) -> Any:
        lock = self._locks.get(endpoint_id)
        if lock is not None and not lock.locked and not lock.waiting:
            del self._locks[endpoint_id]
        return result

    def compile(self, endpoint_id: str) -> "Deferred[tuple[Record, Any]]":
        """Build the endpoint's current code; fires with (record, build result). See admin/builds.py."""
        return self.builds.compile(endpoint_id)

    def start(self, endpoint_id: str) -> "Deferred[Record]":
        """Start the endpoint's compiled artifact (nothing when it runs already)."""
        return self._locked(endpoint_id, self._start, endpoint_id)

    @inlineCallbacks
    def _start(self, endpoint_id: str) -> Generator["Deferred[Any]", Any, Record]:
        record = yield self.get(endpoint_id)
        if not self.deployments.serving(endpoint_id):
            record = yield self.deployments.start(record, record["artifact"])
        started: Record = record
        return started

    def stop(self, endpoint_id: str) -> "Deferred[Record]":
        """Stop the endpoint's workers; it stays stopped across gateway restarts."""
        return self._locked(endpoint_id, self._stop, endpoint_id)

    @inlineCallbacks
    def _stop(self, endpoint_id: str) -> Generator["Deferred[Any]", Any, Record]:
        record = yield self.get(endpoint_id)
        record = yield self.deployments.stop(record)
        stopped: Record = record
        return stopped

    def restart(self, endpoint_id: str) -> "Deferred[Record]":
        """
        Start fresh workers on the latest compiled binary, switch the route to
        them, then drain the old ones: no request finds the endpoint missing.
        """
        return self._locked(endpoint_id, self._restart, endpoint_id)

    @inlineCallbacks
    def _restart(self, endpoint_id: str) -> Generator["Deferred[Any]", Any, Record]:
        record = yield self.get(endpoint_id)
        # A redeploy serves one version: a traffic split ends (docs/policies.md).
        record = yield self.deployments.clear_split(record)
        record = yield self.deployments.replace(record, record["artifact"] or record["deployed"])
        restarted: Record = record
        return restarted

    def rollback(self, endpoint_id: str, payload: Any) -> "Deferred[Record]":
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
    def _rollback(self, endpoint_id: str, version: str) -> Generator["Deferred[Any]", Any, Record]:
        record = yield self.get(endpoint_id)
        rows = yield self.ledger.versions(endpoint_id)
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
        available = yield self.ledger.available(digest)
        if not available:
            raise Conflict(
                f"the binary of version {short(digest)} of endpoint '{record['name']}' was pruned; "
                "to serve it again, PUT its code (GET .../versions shows it), compile and restart"
            )
        # A rollback serves one version: a traffic split ends (docs/policies.md).
        record = yield self.deployments.clear_split(record)
        if self.deployments.digest(endpoint_id) != digest:  # else it is serving already
            record = yield self.deployments.replace(record, digest)
        rolled: Record = record
        return rolled

    # the cluster's desired state

    def reconcile(self, endpoint_id: str) -> "Deferred[str]":
        """
        Bring this node's pool of the endpoint in step with its stored record
        (the cluster's desired state), writing nothing to the store; see
        ``_reconcile``. Fires with what it did: ``started``, ``replaced``,
        ``rerouted``, ``stopped``, ``gone`` or ``unchanged``; fails as the
        start or switch failed (the old pool, if any, still serving).
        """
        d = self._locked(endpoint_id, self._reconcile, endpoint_id)
        d.addBoth(self._forget_lock, endpoint_id)
        return d

    @inlineCallbacks
    def _reconcile(self, endpoint_id: str) -> Generator["Deferred[Any]", Any, str]:
        """
        It should run when its record exists, is enabled, says ``running``
        and has a ``deployed`` version. Then: started when not running here;
        replaced (new pool ready, route switched, old drained) when it runs
        another version or its workers' settings changed; re-routed when its
        route moved. Otherwise it is stopped if running here, and a record
        gone also takes its log lines, registry bindings and the binaries
        nothing else uses here.
        """
        record: Optional[Record] = yield self.records.find(endpoint_id)
        digest = self.deployments.digest(endpoint_id)
        wanted = (
            record is not None and record["enabled"] and record["status"] == "running" and bool(record["deployed"])
        )
        if record is None or not wanted:
            if digest is not None:
                yield self.deployments.stop(record or {"id": endpoint_id}, persist=False)
            if record is None:
                self._forget_local(endpoint_id)
                if digest is not None:
                    yield self.ledger.forget([digest])
                return "gone"
            return "stopped" if digest is not None else "unchanged"
        if digest is None:
            yield self.deployments.start(record, record["deployed"], persist=False)
            return "started"
        started = self.deployments.started_settings(endpoint_id) or {}
        if digest != record["deployed"] or pool_settings_changed(started, record["settings"]):
            yield self.deployments.replace(record, record["deployed"], persist=False)
            return "replaced"
        if self.deployments.routed(endpoint_id) != self.deployments.route_of(record):
            yield self.records.routing_write(self._reroute_drifted, endpoint_id)
            return "rerouted"
        return "unchanged"

    @inlineCallbacks
    def _reroute_drifted(self, endpoint_id: str) -> Generator["Deferred[Any]", Any, None]:
        """
        As a routing write: move every running route that is not where its
        record (as stored now) says, in one batch (two endpoints that swapped
        routes move together); fails when ``endpoint_id``'s could not move.
        """
        records = yield self.records.list()
        drifted = [
            r
            for r in records
            if self.deployments.serving(r["id"]) and self.deployments.routed(r["id"]) != self.deployments.route_of(r)
        ]
        yield self.deployments.reroute(drifted)
        for record in drifted:
            if record["id"] == endpoint_id and self.deployments.routed(endpoint_id) != self.deployments.route_of(
                record
            ):
                raise Conflict(f"the route of endpoint '{record['name']}' could not move: another endpoint has it here")

    @inlineCallbacks
    def reconcile_all(self) -> Generator["Deferred[Any]", Any, dict[str, str]]:
        """
        ``reconcile`` every stored endpoint and every one running here (a
        full catch-up, or after a domain or collection change). A failure is
        logged, not raised: the others go on. Fires with ``{endpoint_id:
        outcome}``, ``failed`` for those that failed. ``StoreUnavailable``
        is raised at once, so the caller tries the whole catch-up again.
        """
        records = yield self.records.list()
        ids = [r["id"] for r in records]
        ids += [i for i in self.deployments.serving_ids() if i not in set(ids)]
        outcomes: dict[str, str] = {}
        for endpoint_id in ids:
            try:
                outcomes[endpoint_id] = yield self.reconcile(endpoint_id)
            except StoreUnavailable:
                raise
            except Exception as e:
                self.log.error("Could not reconcile endpoint {id}: {error}", id=endpoint_id, error=e)
                outcomes[endpoint_id] = "failed"
        return outcomes

    def workers_by_endpoint(self) -> dict[str, int]:
        """``{endpoint_id: live workers}`` of every endpoint running here (a node's heartbeat)."""
        return self.deployments.workers_by_endpoint()

    # gateway start and stop

    @inlineCallbacks
    def restore(self, persist: bool = True) -> Generator["Deferred[Any]", Any, None]:
        """
        Start every endpoint that was running when the gateway stopped.
        ``persist=False`` (a shared store: the records are the cluster's
        desired state) writes nothing, not even a failure.
        """
        records = yield self.records.list()
        for record in records:
            if record["status"] != "running" or not record["deployed"]:
                continue
            try:
                yield self.start_deployed(record, persist)
            except Exception as e:
                self.log.error("Could not restore endpoint {id}: {error}", id=record["id"], error=e)

    def start_deployed(self, record: Record, persist: bool = True) -> "Deferred[Record]":
        """Start the endpoint's ``deployed`` version (at gateway start); ``persist`` as for ``restore``."""
        return self._locked(record["id"], self.deployments.start, record, record["deployed"], persist)

    def stop_all(self) -> "Deferred[None]":
        """Stop all workers without changing what the store says should run (see ``Deployments.stop_all``)."""
        return self.deployments.stop_all()

    # internals

    def _locked(self, endpoint_id: str, work: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        """Run ``work(*args)`` while holding the endpoint's lifecycle lock."""
        return self._locks.setdefault(endpoint_id, DeferredLock()).run(work, *args)
