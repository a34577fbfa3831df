"""
The control process's stand-ins for what lives in the data-plane processes.

With ``--processes`` N > 1 the endpoint manager and the service manager run
unchanged in the control process; they are given these instead of the real
objects, which live (once per process) in the data planes:

* ``PoolProxy`` has ``WorkerPool``'s face (``start``, ``stop``, ``pids``,
  ``workers()``, ``stats()``, ``name``): starting it starts one pool of the
  version in every data-plane process, and what it tells of its workers is
  summed over them (each worker tagged with its ``process``, 1..N), as of
  the last ``ProcessGroup.refresh`` or start.
* ``MirroredRoutes`` has ``RouteTable``'s ``add``, ``remove`` and ``restoring``:
  a local table decides conflicts, and each change is sent to every process;
  ``add`` returns a Deferred firing once every process has the route.  A
  route's policy travels as what it was compiled from (JSON, secrets
  included: an internal pipe) and each process compiles its own
  (edgegw_tx/policy/placing.py).
* ``MirroredRegistry`` has ``ServiceRegistry``'s face for the service manager:
  a local registry validates configs and runs the connection tests, and
  every service and binding is sent to every process, whose own registry
  answers its workers' calls.

Commands travel on each process's one channel in the order they are made,
so a process starts a new pool before it routes to it, and switches the
route before it drains the old pool: a redeploy drops no request in any
process, as with one process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList, fail, gatherResults, succeed
from twisted.python.failure import Failure

from edgegw_tx.errors import PoolStopped
from edgegw_tx.processes.channel import ChannelClosed
from edgegw_tx.workers.pool import traced_log
from edgegw_tx.workers.process import twisted_log

if TYPE_CHECKING:
    from edgegw_tx.gateway.routes import RouteSpec, RouteTable
    from edgegw_tx.processes.group import ProcessGroup
    from edgegw_tx.services.registry import ServiceRegistry

_SUMMED = (
    "workers",
    "starting",
    "ready",
    "busy",
    "draining",
    "queued",
    "served",
    "failed",
    "rejected",
    "spawned",
    "restarts",
    "recycled",
    "scaled_down",
    "crashed",
    "timed_out",
    "out_of_memory",
)

_NEW, _STARTING, _RUNNING, _STOPPING, _STOPPED = "new", "starting", "running", "stopping", "stopped"


def _skip_gone(failure: Failure) -> None:
    """A process that went away has nothing to answer; its respawn gets the state."""
    failure.trap(ChannelClosed)


def gather_answers(
    answers: list[tuple[int, Deferred[Any]]], on_answer: Callable[[Any, int], Any]
) -> Deferred[None]:
    """
    Wait for every answer of ``ProcessGroup.apply``: ``on_answer(data, index)``
    for each one; a process that went away is skipped. Fails with the first
    other failure, once every answer came.
    """
    waits = []
    for index, d in answers:
        d.addCallback(on_answer, index)
        d.addErrback(_skip_gone)
        waits.append(d)

    def done(results: list[tuple[bool, Any]]) -> Any:
        for ok, value in results:
            if not ok:
                return value
        return None

    return DeferredList(waits, consumeErrors=True).addCallback(done)


class PoolProxy:
    """
    One deployed version of an endpoint, served by a pool in every
    data-plane process.

    :ivar number: the pool's number in the data planes' commands.
    :ivar log: ``log(stream, line)`` for the workers' lines from every process.
    :ivar traced_log: ``log`` taking the trace id of a line too (``traced_log``).
    """

    def __init__(
        self,
        group: ProcessGroup,
        name: str,
        argv: list[str],
        *,
        endpoint_id: Any,
        log: Callable[[str, str], object] | None = None,
        **options: Any,
    ):
        """
        :param group: the ``ProcessGroup``.
        :param options: ``WorkerPool``'s keyword arguments (``cwd``,
            ``max_frame``, ``version``, ``min_instances``, ...), given to the
            pool in each process as they are.
        """
        self._group = group
        self.name = name
        self.argv = list(argv)
        self.endpoint_id = endpoint_id
        self.options = options
        self.version = options.get("version")
        self.log = log or twisted_log
        self.traced_log = traced_log(self.log)
        self.number = group.new_pool_number()
        self._state = _NEW
        # index of a data-plane process -> its pool's {stats, workers}
        self._views: dict[int, dict[str, Any]] = {}

    # -- WorkerPool's face -------------------------------------------------

    def start(self) -> Deferred[list[int]]:
        """
        Start a pool in every data-plane process (and in any that starts
        later); fires with all their workers' pids once every process
        answered, or fails with the first process's error.
        """
        if self._state != _NEW:
            return fail(RuntimeError(f"pool {self.name} was already started"))
        self._state = _STARTING
        self._group.register(self)
        answers = self._group.apply(
            "start_pool",
            pool=self.number,
            endpoint_id=self.endpoint_id,
            name=self.name,
            argv=self.argv,
            options=self.options,
        )
        return gather_answers(answers, self.update_view).addCallback(self._started)

    def _started(self, _: Any) -> list[int]:
        if self._state == _STARTING:
            self._state = _RUNNING
        return self.pids

    def stop(self) -> Deferred[None]:
        """Drain and stop the pool in every process; fires once all their workers ended."""
        if self._state in (_NEW, _STOPPED):
            self._state = _STOPPED
            return succeed(None)
        self._state = _STOPPING
        d = gather_answers(self._group.apply("stop_pool", pool=self.number), lambda _, index: None)
        d.addBoth(self._stopped)
        return d

    def _stopped(self, result: Any) -> Any:
        self._state = _STOPPED
        self._group.unregister(self)
        self._views.clear()
        return result

    def request(self, frame: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """The control process serves no traffic: the data-plane processes do."""
        return fail(PoolStopped(f"{self.name}: requests are served by the data-plane processes"))

    def refresh(self) -> Deferred[None]:
        """Bring ``pids``, ``workers()`` and ``stats()`` up to date (one snapshot per process)."""
        return self._group.refresh()

    @property
    def pids(self) -> list[int]:
        return [w["pid"] for w in self.workers() if w.get("pid") is not None]

    def workers(self) -> list[dict[str, Any]]:
        """``WorkerPool.workers()`` of every process, in process order, each with its ``process``."""
        return [
            dict(worker, process=index)
            for index in sorted(self._views)
            for worker in self._views[index].get("workers", ())
        ]

    def stats(self) -> dict[str, Any]:
        """``WorkerPool.stats()`` summed over the processes; ``processes``: how many reported."""
        views = [v.get("stats", {}) for v in self._views.values()]
        stats = {
            "name": self.name,
            "state": self._state,
            "version": self.version,
            "min_instances": self.options.get("min_instances", 1),
            "max_instances": self.options.get("max_instances", 1),
            "processes": len(views),
        }
        for key in _SUMMED:
            stats[key] = sum(s.get(key, 0) for s in views)
        if any("split_served" in s for s in views):
            # requests the processes' traffic splits gave this pool (DataPlane.view)
            stats["split_served"] = sum(s.get("split_served", 0) for s in views)
        return stats

    # -- from the group ------------------------------------------------------

    def update_view(self, view: Any, index: int) -> Any:
        """The pool of process ``index`` is as ``view`` (``{stats, workers}``) says."""
        if isinstance(view, dict) and self._state != _STOPPED:
            self._views[index] = view
        return view

    def forget_process(self, index: int) -> None:
        """Process ``index`` ended (its workers with it) or no longer has this pool."""
        self._views.pop(index, None)


class MirroredRoutes:
    """``RouteTable``'s ``add`` and ``remove``, applied here and in every data-plane process."""

    def __init__(self, group: ProcessGroup, table: RouteTable):
        """
        :param table: the local route table (a ``RouteTable``) that checks
            every change and answers ``match``.
        """
        self._group = group
        self._table = table

    @property
    def restoring(self) -> bool:
        """The local table's ``restoring``: unrouted requests and the health path answer 503."""
        return self._table.restoring

    @restoring.setter
    def restoring(self, restoring: bool) -> None:
        """Set here and in every data-plane process (the ``restoring`` command, replayed to a respawn)."""
        self._table.restoring = restoring
        self._group.change("restoring", restoring=restoring)

    def add(
        self, key: Any, domain: str, method: str, pattern: Any, target: PoolProxy, policy: Any = None
    ) -> Deferred[None]:
        """``place`` with the one route (domain, method, pattern)."""
        return self.place(key, ((domain, method, pattern),), target, policy)

    def place(
        self, key: Any, routes: Sequence[RouteSpec], target: PoolProxy, policy: Any = None
    ) -> Deferred[None]:
        """
        ``RouteTable.place`` (raising its ``RouteConflict`` or ``ValueError`` at
        once, changing nothing), then the same routes to ``target``'s pool in
        every process, as one command; fires once every process has them.
        ``policy`` (a ``CompiledPolicy``) travels as what it was compiled from
        (``placing.wire``): each process compiles it with its own context.
        """
        self._table.place(key, routes, target, policy)
        texts = [[d, m, p if isinstance(p, str) else p.text] for d, m, p in routes]
        source = getattr(policy, "source", None)
        args: dict[str, Any] = {}
        if source is not None:
            args["policy"] = source
        wire = getattr(target, "wire", None)
        if wire is not None:
            # A traffic split (gateway/split.py): each process splits over its own pools of the versions.
            args["split"] = split = wire()
            return self._group.change("route", key=key, routes=texts, pool=split["versions"][0][2], **args)
        return self._group.change("route", key=key, routes=texts, pool=target.number, **args)

    def remove(self, key: Any) -> bool:
        """``RouteTable.remove``; the processes drop the route before any later command."""
        removed = self._table.remove(key)
        if removed:
            self._group.change("unroute", key=key)
        return removed

    def match(self, host: str | None, method: str, path: str) -> Any:
        return self._table.match(host, method, path)


class MirroredRegistry:
    """``ServiceRegistry``'s face for the service manager, mirrored to every data-plane process."""

    def __init__(self, registry: ServiceRegistry, group: ProcessGroup):
        """
        :param registry: the control process's own ``ServiceRegistry``: it
            validates configs and tests connections; its connectors are never
            called (they connect on first use).
        """
        self._registry = registry
        self._group = group

    def configure(self, service: dict[str, Any]) -> Deferred[None]:
        """Validate (raising ``ConfigError``, changing nothing), then configure every process."""
        self._registry.configure(service)
        return self._group.change("configure_service", service=service)

    def remove(self, service_id: Any) -> Deferred[None]:
        local = self._registry.remove(service_id)
        everywhere = self._group.change("remove_service", service_id=service_id)
        return gatherResults([local, everywhere]).addCallback(lambda _: None)

    def bind(self, endpoint_id: Any, pool_id: str, service_id: Any) -> Deferred[None]:
        self._registry.bind(endpoint_id, pool_id, service_id)
        return self._group.change(
            "bind", endpoint_id=endpoint_id, pool_id=pool_id, service_id=service_id
        )

    def unbind(self, endpoint_id: Any, pool_id: str) -> Deferred[None]:
        self._registry.unbind(endpoint_id, pool_id)
        return self._group.change("unbind", endpoint_id=endpoint_id, pool_id=pool_id)

    def bindings(self, endpoint_id: Any) -> dict[str, Any]:
        return self._registry.bindings(endpoint_id)

    def service_ids(self) -> list[Any]:
        return self._registry.service_ids()

    def call_handler(self, endpoint_id: Any) -> Any:
        return self._registry.call_handler(endpoint_id)

    def test(self, service: dict[str, Any]) -> Deferred[dict[str, float]]:
        return self._registry.test(service)

    def close(self) -> Deferred[None]:
        return self._registry.close()
