"""
The deployments: which worker pool serves each running endpoint, on which
compiled version, and the zero-drop switch between pools.

Replacing a running pool (restart, rollback, a change of the workers'
settings) always goes: new pool started and ready → route switched to it →
old pool drained. If the new pool fails to start, the old one was never
touched and keeps serving. A pool being drained stays visible (its workers
show in the endpoint's view) until it has stopped.

Each pool holds a claim on its digest in the artifact ledger
(admin/ledger.py) from the moment it is started until it has stopped or been
drained, so its binary is never pruned under it.

A deployment remembers what each running pool was started with (its
settings) and routed at, so reconciling with the cluster's desired state
(``EndpointManager.reconcile``) can tell what changed. ``persist=False``
(reconciliation, a shared store's restore) writes nothing to the store: the
record is the cluster's desired state, which one node's local failure must
not overwrite; such a failure is logged and raised.

An endpoint's traffic policy (``policy_of(record)``, its effective policy) is
compiled when its routes are placed and placed with them
(edgegw_tx/policy/placing.py); it is part of where a pool is routed
(``route_of``), so a policy change is a drift that reconciling and
``reroute`` place again, as a move.  ``limits.timeout`` becomes the pool's
``timeout`` while the policy holds (no cost per request).

An endpoint's ``traffic_split`` (``target_of``) adds a pool per version it
names beside the running one, each claimed in the ledger as a running pool
is; once all of them are ready, its routes lead to a split target
(gateway/split.py) over those pools instead of the running pool, placed as
any route change (atomically). Until then, or when a version cannot be
served (no such version, its binary gone, its workers failing), what was
placed before keeps serving and the record's ``last_error`` and log say why.
New weights are a new split target over the same pools (no request
dropped); a pool no longer named is drained after the new target is placed.
A rollback and a redeploy call ``clear_split``: the stored part set to null.

This part owns no lock. Its callers (``EndpointManager``) hold the endpoint's
lifecycle lock around ``start``, ``replace`` and ``stop``; the moment a started
pool takes its route runs as a routing write (``serialise``, the records'
lock), so it cannot interleave with a domain or collection change that moves
routes of running endpoints (``reroute``, called inside such a write).
"""

from __future__ import annotations

import json
import random
from typing import Any, Callable, Generator, Iterable, Optional, Protocol, Sequence

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from edgegw_tx.admin.errors import Conflict, WorkersFailed
from edgegw_tx.admin.ledger import ArtifactLedger
from edgegw_tx.admin.records import now, routes_of
from edgegw_tx.admin.views import Live, short
from edgegw_tx.gateway.split import Choice, Served, SplitTarget
from edgegw_tx.paths import parse_pattern
from edgegw_tx.policy import model, placing
from edgegw_tx.policy.part import PolicyContext
from edgegw_tx.store.interface import IEndpointStore, Record


class Pool(Protocol):
    """What a deployment needs of a worker pool (workers/pool.py ``WorkerPool``)."""

    name: str

    @property
    def pids(self) -> Iterable[int]:
        """The pids of its live workers."""

    def start(self) -> "Deferred[Any]":
        """Start the workers; fires once they are ready."""

    def stop(self) -> "Deferred[Any]":
        """Drain and stop the workers."""

    def workers(self) -> Iterable[dict[str, Any]]:
        """One view per worker, for the endpoint's record."""

    def stats(self) -> dict[str, Any]:
        """Counters; ``queued`` is the requests waiting for a worker."""


class Routes(Protocol):
    """The data plane's route table (gateway/routes.py, or its mirror in processes/proxies.py)."""

    def place(
        self, key: str, routes: Sequence[tuple[str, str, Any]], target: Any, policy: Any = None
    ) -> Optional["Deferred[Any]"]:
        """
        Route ``(domain, method, pattern)`` each to ``target`` under ``policy``
        (a ``CompiledPolicy`` or None), replacing the key's routes at once;
        None or a Deferred firing once in place.
        """

    def remove(self, key: str) -> Any:
        """Remove the key's routes."""


PoolFactory = Callable[..., Pool]
Serialise = Callable[..., "Deferred[Any]"]

#: Where a pool is routed: ``(domain, method, served path)`` for each route of its endpoint, in order,
#: then ``("policy", identity)`` when a policy applies (``placing.identity``).
Route = tuple[tuple[str, ...], ...]


class Deployments:
    """Running pools, their digests, pools being drained and the switch; see the module docstring."""

    log = Logger()

    def __init__(
        self,
        store: IEndpointStore,
        routes: Routes,
        pool_factory: PoolFactory,
        ledger: ArtifactLedger,
        log_writer: Callable[[str], Any],
        worker_uid: Callable[[Record], "Deferred[Optional[int]]"],
        full_path: Callable[[Record], str],
        serialise: Serialise,
        clock: IReactorTime,
        policy_of: Optional[Callable[[Record], model.Effective]] = None,
        policy_context: Optional[PolicyContext] = None,
    ) -> None:
        """
        ``pool_factory(record, binary, log, version=digest)`` makes an unstarted
        pool; ``log_writer(endpoint_id)`` is the log its workers write to;
        ``worker_uid(record)`` fires with the endpoint's worker uid;
        ``full_path(record)`` is its served path; ``serialise(work, *args)``
        runs ``work`` as a routing write; ``clock`` times the switch.
        ``policy_of(record)`` is an endpoint's effective policy (None: no
        endpoint has one), compiled with ``policy_context`` (this process's
        clock, consumers, Redis services, metrics).
        """
        #: record -> its effective policy; None: no policies (set by whoever wires them)
        self.policy_of = policy_of
        #: what policies are compiled with here (placing.py)
        self.policy_context = policy_context if policy_context is not None else PolicyContext(clock.seconds, clock)
        self._store = store
        self._routes = routes
        self._pool_factory = pool_factory
        self._ledger = ledger
        self._log_writer = log_writer
        self._worker_uid = worker_uid
        self._full_path = full_path
        self._serialise = serialise
        self._clock = clock
        self._pools: dict[str, Pool] = {}
        # endpoint id -> the digest its running pool serves
        self._digests: dict[str, str] = {}
        # endpoint id -> [(pool, digest)] being drained after a switch
        self._draining: dict[str, list[tuple[Pool, str]]] = {}
        # endpoint id -> the settings its running pool was started with
        self._settings: dict[str, dict[str, Any]] = {}
        # endpoint id -> the (domain, method, path) routes its running pool is routed at
        self._routed: dict[str, Route] = {}
        # endpoint id -> its pool's timeout from its settings (a policy's limits.timeout replaces it)
        self._timeouts: dict[str, Any] = {}
        # The last route switch: {endpoint_id, digest, ready_to_switch_ms}.
        self.last_switch: Optional[dict[str, Any]] = None
        # endpoint id -> {digest: pool} of the versions its traffic split adds to its running pool
        self._split_pools: dict[str, dict[str, Pool]] = {}
        # endpoint id -> the split target its routes lead to (absent: its running pool)
        self._splits: dict[str, SplitTarget] = {}
        # endpoint id -> requests per version while it is split
        self._served: dict[str, Served] = {}
        # endpoint id -> the traffic_split (as ``_split_key``) whose pools are starting / that could not be served
        self._preparing: dict[str, str] = {}
        self._split_failed: dict[str, tuple[str, str]] = {}
        #: what split targets draw requests with (tests seed it)
        self.random: Callable[[], float] = random.Random().random

    # reading

    def serving(self, endpoint_id: str) -> bool:
        """Whether a pool of the endpoint has its route."""
        return endpoint_id in self._pools

    def digest(self, endpoint_id: str) -> Optional[str]:
        """The digest the endpoint's running pool serves, or None."""
        return self._digests.get(endpoint_id)

    def live(self, endpoint_id: str) -> Live:
        """What runs for the endpoint, for its view."""
        pool = self._pools.get(endpoint_id)
        workers = list(pool.workers()) if pool is not None else []
        for extra in self._split_pools.get(endpoint_id, {}).values():
            workers.extend(extra.workers())
        for old, _ in self._draining.get(endpoint_id, ()):
            workers.extend(old.workers())
        return Live(
            pids=list(pool.pids) if pool is not None else [],
            workers=workers,
            queue=pool.stats().get("queued", 0) if pool is not None else 0,
            digest=self._digests.get(endpoint_id),
            traffic=self.traffic(endpoint_id),
        )

    def traffic(self, endpoint_id: str) -> list[dict[str, Any]]:
        """``[{version, weight, served}]`` of the split the endpoint's routes lead to; empty when not split."""
        target = self._splits.get(endpoint_id)
        if target is None:
            return []
        # Requests pass the split target here, or (--processes N) each data-plane process's,
        # which the pool's stats add up as ``split_served``.
        return [
            {
                "version": short(version),
                "weight": weight,
                "served": target.served.get(version) + int(pool.stats().get("split_served", 0)),
            }
            for (version, weight), pool in zip(target.choices(), target.pools())
        ]

    def pool_stats(self) -> list[dict[str, Any]]:
        """``stats()`` of every running endpoint's worker pool, and of the pools its traffic split adds."""
        extras = [pool.stats() for pools in self._split_pools.values() for pool in pools.values()]
        return [pool.stats() for pool in self._pools.values()] + extras

    def pool_stats_by_endpoint(self) -> dict[str, dict[str, Any]]:
        """``{endpoint_id: stats()}`` of every running endpoint's worker pool (admin/history.py)."""
        return {endpoint_id: pool.stats() for endpoint_id, pool in self._pools.items()}

    def running_count(self) -> int:
        """How many endpoints have a running pool."""
        return len(self._pools)

    def serving_ids(self) -> list[str]:
        """The ids of the endpoints that have a running pool."""
        return list(self._pools)

    def workers_by_endpoint(self) -> dict[str, int]:
        """``{endpoint_id: live workers}`` of every running pool (a node's heartbeat)."""
        return {endpoint_id: len(list(pool.pids)) for endpoint_id, pool in self._pools.items()}

    def started_settings(self, endpoint_id: str) -> Optional[dict[str, Any]]:
        """The settings the endpoint's running pool was started with, or None."""
        return self._settings.get(endpoint_id)

    def routed(self, endpoint_id: str) -> Optional[Route]:
        """Where the endpoint's running pool is routed, or None."""
        return self._routed.get(endpoint_id)

    def route_of(self, record: Record) -> Route:
        """
        Where ``record`` (as stored) should be routed: each of its routes, its
        collection's base path applied, and the policy it is placed with.
        """
        paths = self._paths_of(record)
        policy = self._policy(record)
        if not policy.parts:
            return paths
        return (*paths, ("policy", placing.identity(policy, placing.owners_of(record))))

    def _paths_of(self, record: Record) -> tuple[tuple[str, str, str], ...]:
        """``(domain, method, served path)`` of each of ``record``'s routes."""
        return tuple(
            (record["domain"], route["method"], self._full_path(dict(record, path=route["path"])))
            for route in routes_of(record)
        )

    def _policy(self, record: Record) -> model.Effective:
        """The endpoint's effective policy (empty when policies are not wired)."""
        if self.policy_of is None:
            return model.Effective()
        return self.policy_of(record)

    # starting, switching, stopping (under the endpoint's lifecycle lock)

    @inlineCallbacks
    def replace(
        self, record: Record, digest: Optional[str], persist: bool = True
    ) -> Generator["Deferred[Any]", Any, Record]:
        """
        Serve ``digest``: new pool started and ready, then the route switched to
        it, then the old pool (if any) drained. When the new pool fails to
        start, the old one was never touched and keeps serving. ``persist``
        as for ``start``.
        """
        endpoint_id = record["id"]
        # The old pool stays registered until the new one takes its place
        # (_register), so a domain or collection change meanwhile moves its route.
        old = self._pools.get(endpoint_id)
        old_digest = self._digests.get(endpoint_id)
        old_settings = self._settings.get(endpoint_id)
        record = yield self.start(record, digest, persist)
        if old is not None and old_digest is not None:
            yield self._drain(endpoint_id, old, old_digest)
        if old_settings is not None and old_settings != self._settings.get(endpoint_id):
            yield self._renew_split_pools(endpoint_id)
        return record

    @inlineCallbacks
    def _renew_split_pools(self, endpoint_id: str) -> Generator["Deferred[Any]", Any, None]:
        """
        After a change of the workers' settings: each pool a traffic split
        adds is replaced as the running one was (new pool ready, the split
        moved to it, the old drained); one that fails to start leaves the old
        serving, logged.
        """
        fresh = yield self._store.get_endpoint(endpoint_id)
        for digest, old in list(self._split_pools.get(endpoint_id, {}).items()):
            if fresh is None or endpoint_id not in self._pools:
                return
            binary = yield self._ledger.claim(digest)
            if binary is None:
                continue
            _, pool = yield self._new_pool(fresh, digest, binary)
            try:
                yield pool.start()
            except Exception as e:
                self.log.error(
                    "Endpoint {name}: new workers of version {version} failed to start: {e}; the old ones serve on",
                    name=fresh["name"],
                    version=short(digest),
                    e=e,
                )
                yield self._drain(endpoint_id, pool, digest)
                continue
            pools = self._split_pools.get(endpoint_id, {})
            if pools.get(digest) is not old:  # the split changed meanwhile
                yield self._drain(endpoint_id, pool, digest)
                continue
            pools[digest] = pool
            yield self._serialise(self._route_again, endpoint_id)
            yield self._drain(endpoint_id, old, digest)

    @inlineCallbacks
    def _new_pool(
        self, record: Record, digest: str, binary: Any
    ) -> Generator["Deferred[Any]", Any, tuple[Record, Pool]]:
        """
        A pool (not started) of version ``digest``'s workers for ``record``,
        and the record with its worker uid; if it cannot be made, the ledger's
        claim on ``digest`` (the caller's) is released.
        """
        try:
            uid = yield self._worker_uid(record)
            record = dict(record, worker_uid=uid)
            pool = self._pool_factory(record, binary, self._log_writer(record["id"]), version=digest)
        except BaseException:
            self._ledger.release(digest)
            raise
        return record, pool

    @inlineCallbacks
    def start(
        self, record: Record, digest: Optional[str], persist: bool = True
    ) -> Generator["Deferred[Any]", Any, Record]:
        """
        Start a pool on ``digest`` and, once it is ready, give it the route
        (replacing the endpoint's running pool there, which the caller drains).
        When it fails to start, a running pool keeps the route: the record
        keeps status ``running`` and says why in ``last_error``. Without
        ``persist`` nothing is written: a failure is logged and raised, and
        it fires with ``record`` as given (plus its ``worker_uid``).
        """
        endpoint_id = record["id"]
        if not record["enabled"]:
            raise Conflict(f"endpoint '{record['name']}' is disabled; enable it before starting")
        binary = (yield self._ledger.claim(digest)) if digest else None
        if binary is None and digest is not None and not persist:
            raise Conflict(
                f"the binary of version {short(digest)} of endpoint '{record['name']}' is not on "
                "this node and could not be fetched from the store"
            )
        if binary is None or digest is None:
            raise Conflict(
                f"endpoint '{record['name']}' is not compiled; "
                f"POST /api/endpoints/{endpoint_id}/compile first"
            )
        serving = self._digests.get(endpoint_id) if endpoint_id in self._pools else None
        record, pool = yield self._new_pool(record, digest, binary)
        try:
            yield pool.start()
        except Exception as e:
            try:
                yield pool.stop()
                if not persist:
                    self.log.error(
                        "The workers of endpoint {name} (version {version}) failed to start here: {e}",
                        name=record["name"],
                        version=short(digest),
                        e=e,
                    )
                    raise WorkersFailed(
                        f"the workers of version {short(digest)} of endpoint '{record['name']}' "
                        f"failed to start on this node: {e}; see GET /api/endpoints/{endpoint_id}/logs"
                    )
                if serving is None:
                    yield self._store.update_endpoint(
                        endpoint_id,
                        {"status": "error", "last_error": f"workers failed to start: {e}", "updated_at": now()},
                    )
                    raise WorkersFailed(
                        f"the workers of endpoint '{record['name']}' failed to start: {e}; "
                        f"see GET /api/endpoints/{endpoint_id}/logs"
                    )
                problem = f"the workers of version {short(digest)} failed to start: {e}"
                yield self._store.update_endpoint(endpoint_id, {"last_error": problem, "updated_at": now()})
                raise WorkersFailed(
                    f"{problem}; endpoint '{record['name']}' still serves version {short(serving)}; "
                    f"see GET /api/endpoints/{endpoint_id}/logs"
                )
            finally:
                self._ledger.release(digest)
        ready = self._clock.seconds()
        try:
            yield self._serialise(self._register, endpoint_id, record, pool, digest)
        finally:
            # Once registered, the claim is the serving pool's until it stops or is drained.
            if self._pools.get(endpoint_id) is not pool:
                self._ledger.release(digest)
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
        if persist:
            record = yield self._store.update_endpoint(
                endpoint_id,
                {
                    "status": "running",
                    "deployed": digest,
                    # A split refused while this pool took its route said why (``_split_refused``).
                    "last_error": self._split_failed.get(endpoint_id, (None, None))[1],
                    "updated_at": now(),
                },
            )
        return record

    @inlineCallbacks
    def _register(
        self, endpoint_id: str, record: Record, pool: Pool, digest: str
    ) -> Generator["Deferred[Any]", Any, None]:
        """
        As a routing write: put a started pool in service, at the endpoint's
        route as stored now (a domain or collection may have moved it while
        the workers started).
        """
        fresh = yield self._store.get_endpoint(endpoint_id)
        self._pools[endpoint_id] = pool
        self._digests[endpoint_id] = digest
        self._settings[endpoint_id] = record["settings"]
        self._timeouts[endpoint_id] = getattr(pool, "timeout", None)
        placed = self.route(fresh or record)
        if placed is not None:
            yield placed

    @inlineCallbacks
    def _drain(self, endpoint_id: str, pool: Pool, digest: str) -> Generator["Deferred[Any]", Any, None]:
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
            self._ledger.release(digest)

    @inlineCallbacks
    def stop(self, record: Record, persist: bool = True) -> Generator["Deferred[Any]", Any, Record]:
        """
        Take the endpoint's route away and stop its pool; the record says
        ``stopped`` (if it ran). Without ``persist`` nothing is written (only
        ``record["id"]`` is read) and ``record`` fires as given.
        """
        endpoint_id = record["id"]
        pool = self._pools.pop(endpoint_id, None)
        digest = self._digests.pop(endpoint_id, None)
        self._settings.pop(endpoint_id, None)
        self._routed.pop(endpoint_id, None)
        self._timeouts.pop(endpoint_id, None)
        extras = self._forget_split(endpoint_id)
        if digest is not None:
            self._ledger.release(digest)
        self._routes.remove(endpoint_id)
        for extra, extra_digest in extras:
            yield self._drain(endpoint_id, extra, extra_digest)
        if pool is not None:
            yield pool.stop()
        if not persist:
            return record
        status = "stopped" if record["deployed"] else record["status"]
        if record["status"] == "running" or pool is not None:
            record = yield self._store.update_endpoint(endpoint_id, {"status": status, "updated_at": now()})
        return record

    @inlineCallbacks
    def stop_all(self) -> Generator["Deferred[Any]", Any, None]:
        """
        Stop all workers without changing what the store says should run.

        It is the gateway's shutdown, so the routes stay: a request that
        comes meanwhile (on a connection accepted as the gateway stopped
        listening) reaches its pool, which serves it while draining or
        answers 503 (PoolStopped) once stopping, never 404 as if there were
        no such endpoint.
        """
        pools = list(self._pools.values())
        for digest in self._digests.values():
            self._ledger.release(digest)
        for endpoint_id in list(self._split_pools):
            for extra, extra_digest in self._forget_split(endpoint_id):
                self._ledger.release(extra_digest)
                pools.append(extra)
        self._pools.clear()
        self._digests.clear()
        self._settings.clear()
        self._routed.clear()
        self._timeouts.clear()
        for pool in pools:
            try:
                yield pool.stop()
            except Exception as e:
                self.log.error("Stopping workers of {name} failed: {e}", name=pool.name, e=e)

    # routes

    def route(self, record: Record) -> Optional["Deferred[Any]"]:
        """
        Route the endpoint to its running pool, at ``record``'s routes (the
        route table's ``place`` under the same key replaces the old set at
        once, or refuses the whole set). Answers what ``place`` does: None, or
        a Deferred firing once the routes are in place everywhere (the mirrored table of several
        data-plane processes, processes/proxies.py), which callers wait for.
        The routes carry the endpoint's policy, compiled here.
        """
        endpoint_id = record["id"]
        paths = self._paths_of(record)
        effective = self._policy(record)
        owners = placing.owners_of(record)
        compiled = placing.placed(effective, self.policy_context, owners, f"endpoint {record.get('name', endpoint_id)}")
        target = self.target_of(record, effective)
        specs = [(d, m, parse_pattern(p)) for d, m, p in paths]
        if compiled is None:
            placed = self._routes.place(endpoint_id, specs, target)
        else:
            placed = self._routes.place(endpoint_id, specs, target, compiled)
        # Placed: only now the pool's time per request follows the policy (limits.timeout).
        base = self._timeouts.get(endpoint_id)
        if base is not None:
            timeout = compiled.timeout if compiled is not None else None
            for pool in (self._pools[endpoint_id], *self._split_pools.get(endpoint_id, {}).values()):
                pool.timeout = timeout if timeout is not None else base  # type: ignore[attr-defined]
        self._retire_split_pools(endpoint_id, target, placed, effective.parts.get("traffic_split"))
        self._routed[endpoint_id] = paths if not effective.parts else (
            *paths,
            ("policy", placing.identity(effective, owners)),
        )
        return placed

    # traffic split

    def target_of(self, record: Record, effective: Optional[model.Effective] = None) -> Any:
        """
        What the endpoint's routes lead to: its running pool, or a split
        target over the pools of its ``traffic_split``'s versions once they
        all run. A split whose pools are not all running starts them
        (``_start_split``) and keeps what was placed meanwhile; they take the
        route when ready. ``effective`` is ``record``'s policy when known.
        """
        endpoint_id = record["id"]
        pool = self._pools[endpoint_id]
        policy = effective if effective is not None else self._policy(record)
        split = policy.parts.get("traffic_split")
        if not split:
            self._splits.pop(endpoint_id, None)
            self._served.pop(endpoint_id, None)
            self._split_failed.pop(endpoint_id, None)
            self._preparing.pop(endpoint_id, None)
            return pool
        key = _split_key(split)
        if self._split_failed.get(endpoint_id, ("", ""))[0] == key:
            self._splits.pop(endpoint_id, None)
            return pool
        choices = self._split_choices(endpoint_id, split)
        if choices is None:
            if self._preparing.get(endpoint_id) != key:
                self._preparing[endpoint_id] = key
                d = self._start_split(record, split, key)
                d.addErrback(lambda f: self.log.failure("Splitting endpoint {id}", f, id=endpoint_id))
            return self._splits.get(endpoint_id) or pool
        self._preparing.pop(endpoint_id, None)
        served = self._served.setdefault(endpoint_id, Served())
        served.keep_only([version for version, _, _ in choices])
        target = SplitTarget(str(record.get("name") or endpoint_id), choices, served, split.get("sticky"), self.random)
        self._splits[endpoint_id] = target
        return target

    def _split_choices(self, endpoint_id: str, split: dict[str, Any]) -> Optional[list[Choice]]:
        """The split's versions with their running pools; None unless every one resolves to one running pool."""
        running: dict[str, Pool] = dict(self._split_pools.get(endpoint_id, {}))
        main = self._digests.get(endpoint_id)
        if main is not None:
            running[main] = self._pools[endpoint_id]
        choices: list[Choice] = []
        for entry in split["versions"]:
            prefix = entry["version"].lower()
            found = [digest for digest in running if digest.startswith(prefix)]
            if len(found) != 1:
                return None
            choices.append((found[0], entry["weight"], running[found[0]]))
        return choices

    @inlineCallbacks
    def _start_split(self, record: Record, split: dict[str, Any], key: str) -> Generator["Deferred[Any]", Any, None]:
        """
        Start a pool for each version of ``split`` that has none running, then
        route the endpoint again (as a routing write) so the split takes its
        routes. A version that cannot be served: the split is not applied (the
        running pool serves), the record's ``last_error`` and log say why.
        """
        endpoint_id = record["id"]
        started: list[tuple[str, Pool]] = []
        try:
            digests = yield self._split_digests(endpoint_id, split)
            for digest in digests:
                if digest == self._digests.get(endpoint_id) or digest in self._split_pools.get(endpoint_id, {}):
                    continue
                if any(digest == d for d, _ in started):
                    continue
                binary = yield self._ledger.claim(digest)
                if binary is None:
                    raise _SplitProblem(
                        f"the binary of version {short(digest)} is gone (pruned, and not in the cluster's store)"
                    )
                _, pool = yield self._new_pool(record, digest, binary)
                started.append((digest, pool))
                try:
                    yield pool.start()
                except Exception as e:
                    raise _SplitProblem(f"the workers of version {short(digest)} failed to start: {e}")
        except _SplitProblem as problem:
            yield self._stop_started(endpoint_id, started)
            if self._preparing.get(endpoint_id) == key:
                del self._preparing[endpoint_id]
                yield self._split_refused(record, key, str(problem))
            return
        except BaseException:
            yield self._stop_started(endpoint_id, started)
            if self._preparing.get(endpoint_id) == key:
                del self._preparing[endpoint_id]
            raise
        if self._preparing.get(endpoint_id) != key or endpoint_id not in self._pools:
            # Stopped, or the split changed, while these started: not needed.
            yield self._stop_started(endpoint_id, started)
            return
        self._split_pools.setdefault(endpoint_id, {}).update(started)
        yield self._serialise(self._route_again, endpoint_id)

    @inlineCallbacks
    def _split_digests(self, endpoint_id: str, split: dict[str, Any]) -> Generator["Deferred[Any]", Any, list[str]]:
        """The digest each version of ``split`` names among the endpoint's versions; ``_SplitProblem`` if one names none or several."""
        rows = yield self._ledger.versions(endpoint_id)
        known = {row["digest"] for row in rows}
        main = self._digests.get(endpoint_id)
        if main is not None:
            known.add(main)
        digests = []
        for entry in split["versions"]:
            found = sorted(d for d in known if d.startswith(entry["version"].lower()))
            if not found:
                raise _SplitProblem(
                    f"version {entry['version']} is not one of this endpoint's versions"
                    f" (GET /api/endpoints/{endpoint_id}/versions lists them)"
                )
            if len(found) > 1:
                raise _SplitProblem(f"version {entry['version']} is the start of {len(found)} versions; give more digits")
            digests.append(found[0])
        return digests

    @inlineCallbacks
    def _stop_started(self, endpoint_id: str, started: list[tuple[str, Pool]]) -> Generator["Deferred[Any]", Any, None]:
        """Stop pools a split started and will not use, giving back their claims."""
        for digest, pool in started:
            yield self._drain(endpoint_id, pool, digest)

    @inlineCallbacks
    def _split_refused(self, record: Record, key: str, problem: str) -> Generator["Deferred[Any]", Any, None]:
        """Say in the record and its log that its split is not applied, and route it to its running pool."""
        endpoint_id = record["id"]
        serving = self._digests.get(endpoint_id)
        message = f"traffic_split not applied: {problem}; version {short(serving)} serves every request"
        self._split_failed[endpoint_id] = (key, message)
        self.log.error("Endpoint {name}: {message}", name=record.get("name", endpoint_id), message=message)
        self._log_writer(endpoint_id)("gateway", message)
        if endpoint_id in self._pools:
            yield self._store.update_endpoint(endpoint_id, {"last_error": message, "updated_at": now()})
            yield self._serialise(self._route_again, endpoint_id)

    @inlineCallbacks
    def _route_again(self, endpoint_id: str) -> Generator["Deferred[Any]", Any, None]:
        """As a routing write: place a running endpoint's routes again, as stored now."""
        fresh = yield self._store.get_endpoint(endpoint_id)
        if fresh is None or endpoint_id not in self._pools:
            return
        try:
            placed = self.route(fresh)
        except ValueError as e:  # the route table's RouteConflict
            self.log.error("Could not route endpoint {id} again: {e}", id=endpoint_id, e=e)
            return
        if placed is not None:
            yield placed

    def _retire_split_pools(
        self, endpoint_id: str, target: Any, placed: Optional["Deferred[Any]"], split: Optional[dict[str, Any]]
    ) -> None:
        """
        Drain the split pools that neither ``target`` (just placed) nor the
        ``split`` wanted now (its pools may be starting) use, once ``target``
        is in place everywhere.
        """
        pools = self._split_pools.get(endpoint_id)
        if not pools:
            return
        used = {id(pool) for pool in target.pools()} if isinstance(target, SplitTarget) else set()
        failed = split is not None and self._split_failed.get(endpoint_id, ("", ""))[0] == _split_key(split)
        prefixes = [] if split is None or failed else [e["version"].lower() for e in split["versions"]]
        retired = [
            (pool, digest)
            for digest, pool in pools.items()
            if id(pool) not in used and not any(digest.startswith(p) for p in prefixes)
        ]
        if not retired:
            return
        for _, digest in retired:
            del pools[digest]
        if not pools:
            del self._split_pools[endpoint_id]

        def drain(result: Any) -> Any:
            for pool, digest in retired:
                self._drain(endpoint_id, pool, digest)
            return result

        if placed is None:
            drain(None)
        else:
            placed.addCallback(drain)

    def _forget_split(self, endpoint_id: str) -> list[tuple[Pool, str]]:
        """Forget the endpoint's split; its extra pools (still to be stopped, their claims held)."""
        self._splits.pop(endpoint_id, None)
        self._served.pop(endpoint_id, None)
        self._preparing.pop(endpoint_id, None)
        self._split_failed.pop(endpoint_id, None)
        return [(pool, digest) for digest, pool in self._split_pools.pop(endpoint_id, {}).items()]

    @inlineCallbacks
    def clear_split(self, record: Record) -> Generator["Deferred[Any]", Any, Record]:
        """
        A rollback's or a redeploy's first step: the endpoint's stored
        ``traffic_split`` set to null and, when it runs, its routes placed
        again (its extra pools drained). Fires with the record as stored.
        """
        # The policy as stored now (secrets unmasked, any later change kept), not as ``record`` had it.
        fresh = yield self._store.get_endpoint(record["id"])
        policy = (fresh or record).get("policy")
        if not isinstance(policy, dict) or policy.get("traffic_split") is None:
            return fresh or record
        kept = {name: part for name, part in policy.items() if name != "traffic_split"}
        record = yield self._store.update_endpoint(record["id"], {"policy": kept, "updated_at": now()})
        if record["id"] in self._pools:
            yield self._serialise(self._route_again, record["id"])
        return record

    def reroute(self, records: Iterable[Record]) -> "Deferred[None]":
        """
        Move the routes of those endpoint ``records`` (as now stored) that run,
        each atomically. Call as a routing write. A batch may move one
        endpoint onto the route another is leaving, so a clash is retried
        after the others; when only clashes are left (endpoints that swapped
        routes, which another node of a cluster may have done in one batch of
        changes) their old routes are taken away first, then they are placed
        again. Fires once every moved route is in place (at once with one
        process).
        """
        placed = []
        pending = [r for r in records if r["id"] in self._pools]
        unrouted = False
        while pending:
            left = []
            for record in pending:
                try:
                    placed.append(self.route(record))
                except ValueError:  # the route table's RouteConflict
                    left.append(record)
            if len(left) == len(pending):
                if not unrouted:
                    unrouted = True
                    for record in left:
                        self._routes.remove(record["id"])
                        self._routed.pop(record["id"], None)
                    continue
                for record in left:
                    self.log.error("Could not move the route of endpoint {id}", id=record["id"])
                break
            pending = left
        done: Deferred[Any] = DeferredList([d for d in placed if d is not None])
        return done.addCallback(lambda _: None)


class _SplitProblem(Exception):
    """Why an endpoint's traffic_split cannot be served here (its record's ``last_error`` says it)."""


def _split_key(split: dict[str, Any]) -> str:
    """A text naming one traffic_split configuration (to tell whether it changed)."""
    return json.dumps(split, sort_keys=True, separators=(",", ":"))
