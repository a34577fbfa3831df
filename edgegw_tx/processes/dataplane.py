"""
One data-plane process's serving state, driven by the control process.

A data-plane process (``--processes`` N > 1) holds a route table and its HTTP
front, a worker pool per deployed version of each running endpoint, and a
service registry whose connectors answer its own workers' calls. It owns no
store and makes no decisions: ``DataPlane.responders`` are the commands the
control process sends over the control channel (``channel.py``), and
everything a pool says about its workers (``log(stream, line)``) goes back as
a ``log`` note.

It serves nothing until ``listen``: then it adopts the listening socket the
control process bound and passed down (an inherited file descriptor), so the
kernel spreads the connections over every data-plane process accepting on it.
The control process sends ``listen`` once this process has its pools started,
so a respawned process does not take connections it cannot serve yet.

Its health path follows the control process: 503 "starting" while the
control process restores its endpoints at start (``restoring``), 503
"draining" once a stop has begun (``drain``, sent when the control process
starts stopping, before its ``--shutdown-delay``).

When the control channel closes (the control process stopped or died), or on
SIGTERM, ``DataPlane.shutdown`` drains (health 503), goes on serving what is
left of ``shutdown_delay`` since draining began (the control process waited
it already when it closed the channel; a SIGTERM of the process alone waits
it all), then stops accepting, drains every pool and closes the service
connectors; the process then exits.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger

from edgegw_tx.gateway.split import Served, SplitTarget
from edgegw_tx.observability.metrics import RequestMetrics, plane_snapshot
from edgegw_tx.policy.consumers import ConsumerKeys, ConsumerRecord
from edgegw_tx.policy.part import PolicyContext
from edgegw_tx.policy.placing import from_wire
from edgegw_tx.processes.accept import BalancedAccept
from edgegw_tx.workers.pool import WorkerPool

_log = Logger(namespace="edgegw.processes")


class DataPlane:
    """
    Routes, pools, services and the adopted listening socket of one process.

    :ivar index: which data-plane process this is (1..N), for log lines.
    """

    def __init__(
        self,
        routes: Any,
        front: Any,
        registry: Any,
        *,
        listen_fd: int | None = None,
        family: int = socket.AF_INET,
        index: int = 1,
        pool_factory: Callable[..., Any] | None = None,
        reactor: Any = None,
        request_metrics: RequestMetrics | None = None,
        observer: Any = None,
        shutdown_delay: float = 0.0,
        policy_context: PolicyContext | None = None,
    ):
        """
        :param routes: the route table (``edgegw_tx.gateway.routes.RouteTable``)
            that ``front`` dispatches from.
        :param front: the server factory of public traffic
            (``edgegw_tx.gateway.front.data_plane_factory``).
        :param registry: the service registry (a ``ServiceRegistry``).
        :param listen_fd: the inherited listening socket, adopted on ``listen``.
        :param family: its address family.
        :param pool_factory: makes worker pools (``WorkerPool``'s signature).
        :param request_metrics: the counters ``front`` bumps per request
            (observability/metrics.py), for the ``metrics`` command.
        :param observer: the front's ``Observer`` (gateway/observe.py), whose
            health path ``drain`` turns to 503; None: none.
        :param shutdown_delay: seconds to go on serving once draining began
            before ``shutdown`` stops accepting (``--shutdown-delay``).
        :param policy_context: what routes' policies are compiled with in
            this process (its clock, its ``ConsumerKeys``, its Redis services,
            its metrics); its ``consumers`` is reloaded by ``consumers``.
        """
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._routes = routes
        self._front = front
        self._registry = registry
        self._listen_fd = listen_fd
        self._family = family
        self.index = index
        self._pool_factory = pool_factory or WorkerPool
        self.request_metrics = request_metrics if request_metrics is not None else RequestMetrics()
        self._pools: dict[int, Any] = {}
        self._port: Any = None
        self._notify: Callable[..., object] = lambda command, **args: None
        self._shutdown_d: Any = None
        self._observer = observer
        self._shutdown_delay = shutdown_delay
        #: When draining began (``reactor.seconds()``); None: not draining.
        self.draining_since: float | None = None
        self.policy_context = policy_context or PolicyContext(reactor.seconds, reactor, consumers=ConsumerKeys())
        # pool number -> its timeout from the endpoint's settings (a policy's limits.timeout replaces it)
        self._timeouts: dict[int, Any] = {}
        # requests traffic splits gave each pool here, by pool number (as text)
        self._split_served = Served()
        # route key -> the pool numbers (as text) of its split
        self._split_of: dict[Any, list[str]] = {}

    def attach(self, notify: Callable[..., object]) -> None:
        """Send notes (the workers' log lines) with ``notify(command, **args)``."""
        self._notify = notify

    def responders(self) -> dict[str, Callable[..., Any]]:
        """The commands of the control channel."""
        return {
            "configure_service": self.configure_service,
            "remove_service": self.remove_service,
            "bind": self.bind,
            "unbind": self.unbind,
            "start_pool": self.start_pool,
            "stop_pool": self.stop_pool,
            "route": self.route,
            "unroute": self.unroute,
            "consumers": self.consumers,
            "snapshot": self.snapshot,
            "metrics": self.metrics,
            "listen": self.listen,
            "restoring": self.restoring,
            "drain": self.drain,
        }

    # -- health ----------------------------------------------------------------

    def restoring(self, restoring: bool) -> None:
        """The control process is (or no longer is) restoring its endpoints: health and unrouted answers 503."""
        self._routes.restoring = bool(restoring)

    def drain(self) -> None:
        """A stop has begun: the health path answers 503 from now on (the first call counts)."""
        if self.draining_since is None:
            self.draining_since = self._reactor.seconds()
        if self._observer is not None:
            self._observer.draining = True

    # -- services ------------------------------------------------------------

    def configure_service(self, service: dict[str, Any]) -> None:
        self._registry.configure(service)

    def remove_service(self, service_id: Any) -> Any:
        return self._registry.remove(service_id)

    def bind(self, endpoint_id: Any, pool_id: str, service_id: Any) -> None:
        self._registry.bind(endpoint_id, pool_id, service_id)

    def unbind(self, endpoint_id: Any, pool_id: str) -> None:
        self._registry.unbind(endpoint_id, pool_id)

    # -- pools and routes ----------------------------------------------------

    def start_pool(
        self,
        pool: int,
        endpoint_id: Any,
        name: str,
        argv: list[str],
        options: dict[str, Any],
    ) -> Any:
        """
        Make and start pool number ``pool``; fires with its ``view`` once its
        workers are ready, fails as ``WorkerPool.start`` does. A pool that
        failed to start stays known (its requests answer 503) until
        ``stop_pool``, so a route naming it still resolves.
        """
        if pool in self._pools:
            raise ValueError(f"pool {pool} exists already")

        def log(stream: str, line: str, trace_id: str | None = None) -> None:
            if trace_id is None:
                self._notify("log", pool=pool, stream=stream, line=line)
            else:
                self._notify("log", pool=pool, stream=stream, line=line, trace_id=trace_id)

        worker_pool = self._pool_factory(
            name,
            argv,
            log=log,
            call_handler=self._registry.call_handler(endpoint_id),
            reactor=self._reactor,
            **options,
        )
        self._pools[pool] = worker_pool
        self._timeouts[pool] = getattr(worker_pool, "timeout", None)
        d = worker_pool.start()
        d.addCallback(lambda _: self.view(pool, worker_pool))
        return d

    def stop_pool(self, pool: int) -> Any:
        """Drain and stop pool number ``pool``; fires once its workers ended."""
        worker_pool = self._pools.pop(pool, None)
        self._timeouts.pop(pool, None)
        self._split_served.counts.pop(str(pool), None)
        if worker_pool is None:
            return None
        return worker_pool.stop().addCallback(lambda _: None)

    def route(
        self,
        key: Any,
        routes: list[list[str]],
        pool: int,
        policy: dict[str, Any] | None = None,
        split: dict[str, Any] | None = None,
    ) -> None:
        """
        Route ``routes`` (``[domain, method, pattern]`` each) to pool ``pool``,
        replacing ``key``'s at once, under ``policy`` (``placing.wire``'s form,
        compiled here with this process's context; None: none); with
        ``split`` (``SplitTarget.wire``'s form) to a split target over this
        process's pools of its versions instead.
        """
        worker_pool = self._pools.get(pool)
        if worker_pool is None:
            raise KeyError(f"no pool {pool} in data-plane process {self.index}")
        compiled = from_wire(policy, self.policy_context, f"endpoint {key}")
        target = worker_pool if split is None else self._split_target(key, worker_pool, split)
        self._routes.place(key, [(d, m, p) for d, m, p in routes], target, compiled)
        # A pool leaving the key's split starts counting afresh if split again (as the control process's view does).
        numbers = [str(n) for _, _, n in split["versions"]] if split is not None else []
        for number in self._split_of.pop(key, []):
            if number not in numbers:
                self._split_served.counts.pop(number, None)
        if numbers:
            self._split_of[key] = numbers
        base = self._timeouts.get(pool)
        if base is not None:
            timeout = compiled.timeout if compiled is not None else None
            for each in target.pools() if isinstance(target, SplitTarget) else [worker_pool]:
                each.timeout = timeout if timeout is not None else base

    def _split_target(self, key: Any, main: Any, split: dict[str, Any]) -> SplitTarget:
        """A split over this process's pools; requests counted per pool number (``view``'s ``split_served``)."""
        choices = []
        for version, weight, number in split["versions"]:
            pool = self._pools.get(number)
            if pool is None:
                raise KeyError(f"no pool {number} in data-plane process {self.index}")
            choices.append((str(number), int(weight), pool))
        return SplitTarget(str(getattr(main, "name", key)), choices, self._split_served, split.get("sticky"))

    def consumers(self, records: list[ConsumerRecord]) -> None:
        """Replace the consumers' keys (``ConsumerKeys.load``'s records: names, enabled, key hashes)."""
        consumers = self.policy_context.consumers
        if consumers is not None:
            consumers.load(records)

    def unroute(self, key: Any) -> None:
        self._routes.remove(key)

    def view(self, pool: int, worker_pool: Any) -> dict[str, Any]:
        """
        What the control process shows of one pool: its stats (with
        ``split_served``, the requests traffic splits gave it here, once
        one did) and workers.
        """
        stats = worker_pool.stats()
        served = self._split_served.counts.get(str(pool))
        if served is not None:
            stats = dict(stats, split_served=served)
        return {"pool": pool, "stats": stats, "workers": worker_pool.workers()}

    def snapshot(self) -> list[dict[str, Any]]:
        """The ``view`` of every pool."""
        return [self.view(n, p) for n, p in self._pools.items()]

    def metrics(self) -> dict[str, Any]:
        """This process's counters for ``GET /metrics`` (``plane_snapshot``); the control process adds them up."""
        return plane_snapshot(self.request_metrics, getattr(self._registry, "calls", None), self._front)

    # -- serving ---------------------------------------------------------------

    def listen(self) -> dict[str, Any]:
        """Adopt the listening socket (once) and start accepting connections."""
        if self._port is None and self._listen_fd is not None:
            front = BalancedAccept(self._front, self._reactor)
            self._port = self._reactor.adoptStreamPort(self._listen_fd, self._family, front)
            front.balance(self._port)
            # The reactor serves a duplicate; this copy is no longer needed.
            os.close(self._listen_fd)
            self._listen_fd = None
            _log.info("data-plane process {index} accepts connections", index=self.index)
        return {"pid": os.getpid()}

    def shutdown(self) -> Any:
        """
        Drain (health 503) and serve on for what is left of the shutdown
        delay, then stop accepting, drain every pool, close the service
        connectors; fires (never fails) when done. Every call waits for the
        same one shutdown.
        """
        if self._shutdown_d is None:
            now = self._reactor.seconds()
            self.drain()
            since = self.draining_since if self.draining_since is not None else now
            left = self._shutdown_delay - (now - since)
            d = deferLater(self._reactor, left, lambda: None) if left > 0 else succeed(None)
            self._shutdown_d = d.addCallback(lambda _: self._stop_everything())
        waiter: Deferred[None] = Deferred()

        def done(result: Any) -> Any:
            waiter.callback(None)
            return result

        self._shutdown_d.addBoth(done)
        return waiter

    def _stop_everything(self) -> Any:
        port, self._port = self._port, None
        d = maybeDeferred(port.stopListening) if port is not None else succeed(None)
        if self._listen_fd is not None:
            os.close(self._listen_fd)
            self._listen_fd = None

        def stop_pools(_: Any) -> Any:
            pools, self._pools = list(self._pools.values()), {}
            return DeferredList([maybeDeferred(p.stop) for p in pools], consumeErrors=True)

        d.addBoth(stop_pools)
        d.addBoth(lambda _: maybeDeferred(self._registry.close))
        d.addErrback(lambda f: _log.failure("shutting down data-plane process failed", f))
        d.addCallback(lambda _: None)
        return d
