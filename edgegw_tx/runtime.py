"""
The running gateway: the objects of every plane, wired, with start-up and
shut-down in the right order.

Start: open the store, load the API keys (creating the first one if there is
none), give the service registry every stored service and binding, open the
listeners, then restart the endpoints that were running (their workers' service
calls find their bindings from the first request on).
Stop: the health path answers 503 at once, the data plane serves on for
``--shutdown-delay`` seconds (a load balancer notices meanwhile), then close
the listeners, drain every endpoint's workers, close the service connectors,
close the store.

With a store several gateways share (``--store postgresql://...``, see
docs/cluster.md) this gateway is one node of a cluster: the endpoints' status
and live version are the cluster's desired state, which start restores
without writing it back; once started, the node follows the store's change
log (woken by ``LISTEN``, and every 2 s anyway) and reconciles its own planes
to it, sends a heartbeat, and shares the binaries it compiles. A node whose
database cannot be reached at start serves its last-known configuration
(``<data-dir>/last-known.sqlite3``) and catches up when the database answers.

With ``processes`` > 1 the data plane runs in that many processes
(``edgegw_tx.processes``): this one keeps the store, the management API, the
builder and the keys, binds the public socket for them and serves no public
traffic itself; its managers get the stand-ins of ``edgegw_tx.processes.proxies``
in place of the route table, the service registry and the worker pools.
"""

import os
import signal
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from edgegw_tx import compiled
from edgegw_tx.admin.api import AdminAPI
from edgegw_tx.admin.auth import KeyRing
from edgegw_tx.admin.deployments import Pool, PoolFactory
from edgegw_tx.admin.consumers import ConsumerManager
from edgegw_tx.admin.domains import CollectionManager, DomainManager
from edgegw_tx.admin.history import HISTORY_FILE, HistoryService, StatsHistory, running_endpoints
from edgegw_tx.admin.logs import LogBook
from edgegw_tx.admin.limits import BODY_TIMEOUT as ADMIN_BODY_TIMEOUT
from edgegw_tx.admin.limits import HEADER_TIMEOUT as ADMIN_HEADER_TIMEOUT
from edgegw_tx.admin.limits import MAX_BODY as ADMIN_MAX_BODY
from edgegw_tx.admin.limits import admin_site as admin_site_for
from edgegw_tx.admin.manager import EndpointManager
from edgegw_tx.admin.metrics_page import metrics_root
from edgegw_tx.admin.probe import DataPlaneProbe
from edgegw_tx.admin.services import ServiceManager
from edgegw_tx.admin.validation import effective_settings
from edgegw_tx.build.builder import Builder
from edgegw_tx.build.locations import locating_log
from edgegw_tx.build.warmup import WarmUp
from edgegw_tx.build.sandbox import DEFAULT_BUILD_USER
from edgegw_tx.cluster.artifacts import SharedArtifacts
from edgegw_tx.cluster.follower import Follower
from edgegw_tx.cluster.membership import Membership
from edgegw_tx.cluster.nodes import NodeDirectory, default_node_name
from edgegw_tx.cluster.sync import ChangeApplier
from edgegw_tx.datadir_lock import DataDirLock
from edgegw_tx.gateway.front import DEFAULT_HTTP, HTTP_LAYERS, data_plane_factory
from edgegw_tx.gateway.listening import DrainingServerService
from edgegw_tx.gateway.observe import DEFAULT_HEALTH_PATH, DEFAULT_SHUTDOWN_DELAY, Observer
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.observability.accesslog import AccessLog
from edgegw_tx.observability.exposition import Metrics, local_planes
from edgegw_tx.observability.metrics import RequestMetrics, plane_snapshot
from edgegw_tx.policy.consumerload import ConsumerLoader
from edgegw_tx.policy.consumers import ConsumerRecord
from edgegw_tx.policy.placing import context_of
from edgegw_tx.store import IStore, StoreRefused
from edgegw_tx.store.uri import StoreSpec, default_store, open_store
from edgegw_tx.workers.isolation import DEFAULT_WORKER_UIDS, Isolation, UidAllocator
from edgegw_tx.workers.isolation import environment as worker_environment
from edgegw_tx.workers.network import NetworkNamespaces, PoolInNamespace, gateway_tag
from edgegw_tx.workers.pool import WorkerPool

if TYPE_CHECKING:
    from edgegw_tx.processes import MirroredRoutes

__all__ = ["DEFAULT_HTTP", "GatewayRuntime", "pool_options", "snapshot_path"]

#: A node's last-known configuration in its data dir (a shared store's snapshot).
SNAPSHOT_FILE = "last-known.sqlite3"


def snapshot_path(data_dir: str) -> str:
    """Where a node keeps the last-known configuration of its shared store."""
    return os.path.join(os.path.abspath(data_dir), SNAPSHOT_FILE)


def pool_options(settings: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's stored settings as ``WorkerPool`` keyword arguments."""
    settings = effective_settings(settings)
    return {
        "min_instances": settings["min_instances"],
        "max_instances": settings["max_instances"],
        "max_queue": settings["max_queue"],
        "timeout": settings["timeout"],
        "max_requests": settings["max_requests"],
        "idle_timeout": settings["idle_timeout"],
        "env": dict(settings["env"]),
        "pipeline": settings["pipeline"],
        "concurrency": settings["concurrency"],
    }


class GatewayRuntime(MultiService):
    """Every plane of one gateway as one service tree, so ``twistd`` starts and stops them in order."""

    log = Logger()

    def __init__(
        self,
        data_dir: str,
        listen: str,
        admin_listen: str,
        sdk_path: str,
        cargo: str | None = None,
        crate_source: str = "auto",
        max_frame: int = 16 * 1024 * 1024,
        build_target_dir: str | None = None,
        reactor: Any = None,
        registry: Any = None,
        keep_versions: int = 10,
        http: str | None = None,
        processes: int = 1,
        process_environ: dict[str, str] | None = None,
        worker_user: str | None = None,
        worker_uids: str | tuple[int, int] = DEFAULT_WORKER_UIDS,
        build_user: str = DEFAULT_BUILD_USER,
        http_limits: dict[str, Any] | None = None,
        admin_max_body: int = ADMIN_MAX_BODY,
        data_dir_lock: DataDirLock | None = None,
        admin_header_timeout: float = ADMIN_HEADER_TIMEOUT,
        admin_body_timeout: float = ADMIN_BODY_TIMEOUT,
        store: IStore | None = None,
        keys: KeyRing | None = None,
        builder: Any = None,
        isolation: Isolation | None = None,
        network: NetworkNamespaces | None = None,
        pool_factory: PoolFactory | None = None,
        store_spec: StoreSpec | None = None,
        node_name: str | None = None,
        follow_interval: float = 2.0,
        metrics_listen: str | None = None,
        access_log: str | None = None,
        access_log_max_bytes: int | None = None,
        health_path: str | None = DEFAULT_HEALTH_PATH,
        shutdown_delay: float = DEFAULT_SHUTDOWN_DELAY,
        warm_up: bool = False,
    ) -> None:
        """
        ``registry`` replaces the service plane's ``ServiceRegistry`` (tests pass
        a fake); ``keep_versions`` is how many compiled versions of an endpoint
        are kept (``--keep-versions``); ``http`` is the data plane's HTTP layer
        (``--http``): ``"httptools"`` (``edgegw_tx.gateway.http``) or
        ``"twisted"`` (the twisted.web resource of ``edgegw_tx.gateway.web``);
        ``processes`` is how many data-plane processes serve ``listen``
        (``--processes``; 1: this one), ``process_environ`` the environment
        they start from (this process's by default); as root, each endpoint's
        workers run as a uid of their own from ``worker_uids``
        (``--worker-uids``, ``"FIRST-LAST"`` or a pair), unless ``worker_user``
        names one user all share (``--worker-user``: a name, ``uid`` or
        ``uid:gid``), see docs/isolation.md.
        Raises ``edgegw_tx.workers.isolation.IsolationError`` when util-linux's
        setsid, prlimit or setpriv or (as root) bubblewrap is missing, the user
        is unknown or the range malformed.  ``build_user`` (``--build-user``)
        is who cargo and rustc run as in the build sandbox when root;
        ``edgegw_tx.build.sandbox.SandboxError`` when that sandbox's tools are missing.
        ``http_limits`` are the data plane's limits (``--max-body``,
        ``--header-timeout`` ...: ``edgegw_tx.gateway.front.data_plane_factory``),
        ``admin_max_body`` the management API's body cap and
        ``admin_header_timeout`` and ``admin_body_timeout`` the seconds its
        request heads and bodies may take; docs/limits.md.
        ``data_dir_lock`` is the ``DataDirLock`` of ``data_dir`` when the
        caller took it already (``twistd``, so that a second gateway is
        refused before it daemonises); otherwise start takes it first thing.
        The collaborators are built from the options above unless given (a
        test passes fakes): ``store`` (opened at start), ``keys`` (a
        ``KeyRing`` of that store), ``builder`` (the build plane),
        ``isolation`` (an ``Isolation``), ``network`` (the endpoints'
        ``NetworkNamespaces``) and ``pool_factory`` (``(record, binary, log,
        version=None)`` to an unstarted worker pool, for the endpoint manager).
        ``store_spec`` is the store to open when no ``store`` is given
        (``--store``, ``store.uri.parse_store``; default: the SQLite file of
        the data dir); ``node_name`` this node's name in a cluster
        (``--node-name``; default ``<host name>:<data-plane port>``);
        ``follow_interval`` the seconds between the periodic checks of the
        change log and between heartbeats. ``metrics_listen`` is an endpoint
        serving ``GET /metrics`` without a key (``--metrics-listen``); the
        admin listener serves it with one. ``access_log`` is the data plane's
        access log (``--access-log``: a path, ``-`` for stdout; None: off),
        rotated at ``access_log_max_bytes`` (``--access-log-max-bytes``) and
        reopened on SIGHUP; with ``processes`` > 1 each data-plane process
        writes its own, ``PATH.N`` when rotated by size (a rotation is one
        process's). ``health_path`` is answered by the data plane before
        routing (``--health-path``; None: none), gateway/observe.py;
        ``shutdown_delay`` the seconds the data plane serves on once a stop
        began, the health path answering 503, before the listeners close
        (``--shutdown-delay``; in every data-plane process too).
        ``warm_up`` builds the common crates into the shared cargo target in
        the background at start (``edgegw_tx.build.warmup``; ``twistd edgegw``
        turns it on; off by default so a test's gateway runs no cargo unasked).
        """
        if processes < 1:
            raise ValueError("processes must be at least 1")
        MultiService.__init__(self)
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.data_dir = os.path.abspath(data_dir)
        self.data_dir_lock = data_dir_lock or DataDirLock(self.data_dir)
        self._max_frame = max_frame
        if isolation is None:
            isolation = Isolation.for_gateway(worker_user, worker_uids)
        self.isolation = isolation
        if network is None:
            # The endpoints' network namespaces (settings.network), named after this data dir.
            network = NetworkNamespaces(gateway_tag(self.data_dir), reactor)
        self.network = network
        self.snapshot_path = snapshot_path(self.data_dir)
        #: The store's ``--store`` (None when a ``store`` object was given).
        self.store_spec: StoreSpec | None = None
        if store is None:
            self.store_spec = store_spec or default_store(self.data_dir)
            store = open_store(self.store_spec, reactor, snapshot_path=self.snapshot_path)
        else:
            self.store_spec = store_spec
        self.store = store
        #: Whether this gateway is one node of a cluster (its store is shared).
        self.shared = bool(getattr(store, "shared", False))
        self.node_name = node_name or default_node_name(listen)
        self.keys = keys if keys is not None else KeyRing(self.store, reactor=reactor)
        if registry is None:
            from edgegw_tx.services.registry import ServiceRegistry

            registry = ServiceRegistry(self.data_dir, reactor=reactor)
        self.routes: RouteTable | MirroredRoutes = RouteTable()
        # The data-plane processes when there are several (None: this one serves).
        self.processes = None
        if processes > 1:
            from edgegw_tx.processes import MirroredRegistry, MirroredRoutes, ProcessGroup

            self.processes = ProcessGroup(
                processes,
                listen,
                self.data_dir,
                http=http,
                http_limits=http_limits,
                observe={
                    "access_log": access_log,
                    "access_log_max_bytes": access_log_max_bytes,
                    "health_path": health_path,
                    "shutdown_delay": shutdown_delay,
                },
                environ=process_environ,
                reactor=reactor,
            )
            registry = MirroredRegistry(registry, self.processes)
            self.routes = MirroredRoutes(self.processes, self.routes)
        self.registry = registry
        #: The data plane's per-request counters when this process serves it
        #: (each data-plane process keeps its own with ``processes`` > 1).
        self.request_metrics = RequestMetrics()
        #: What the data plane records of each answer when this process serves
        #: it (metrics, access log once started, trace context, health path).
        self.observer = Observer(
            self.request_metrics,
            reactor.seconds,
            health_path=health_path,
            restoring=lambda: bool(getattr(self.routes, "restoring", False)),
        )
        self.shutdown_delay = shutdown_delay
        self._access_log_path = access_log
        self._access_log_max_bytes = access_log_max_bytes
        self._previous_hup: Any = None
        self._hup_installed = False
        # Not ``services``: MultiService keeps its children there.
        self.service_manager = ServiceManager(self.store, self.registry)
        if builder is None:
            builder = Builder(
                self.data_dir,
                sdk_path,
                cargo=cargo,
                crate_source=crate_source,
                target_dir=build_target_dir,
                reactor=reactor,
                build_user=build_user,
                # Compile once in a cluster: the binaries go through the shared store.
                shared=SharedArtifacts(self.store, self.node_name, reactor) if self.shared else None,
            )
        self.builder = builder
        # A background build of the common crates at start, so the first compile is quick (build/warmup.py).
        self.warm_up = WarmUp(builder, reactor) if warm_up and isinstance(builder, Builder) else None
        # The workers' stderr lines by endpoint (GET /api/endpoints/{id}/logs).
        self.logbook = LogBook(reactor)
        self.manager = EndpointManager(
            self.store,
            self.builder,
            self.routes,
            pool_factory if pool_factory is not None else self._make_pool,
            self.logbook,
            services=self.service_manager,
            keep_versions=keep_versions,
            uids=UidAllocator(self.store, self.isolation),
            reactor=reactor,
        )
        # Routes' traffic policies compile with this process's clock, consumers,
        # Redis services and counters (each data-plane process has its own).
        self.policy_context = context_of(reactor, registry, self.request_metrics.count)
        self.manager.deployments.policy_context = self.policy_context
        #: The consumers' keys (api_key policies): loaded at start, ``reload()`` after any consumer change.
        self.consumers = ConsumerLoader(
            self.policy_context.consumers,
            getattr(self.store, "list_consumers", None),
            None if self.processes is None else self._send_consumers,
        )
        # Not ``services``/``namedServices`` either: plain names MultiService does not use.
        self.collections = CollectionManager(self.store, self.manager)
        self.domains = DomainManager(self.store, self.manager, self.collections)
        # This node, and with a shared store the others (GET /api/nodes); heartbeats once started.
        self.nodes = NodeDirectory(
            self.store,
            self.node_name,
            self.manager.workers_by_endpoint,
            reactor,
            self.shared,
            interval=follow_interval,
            where=str(getattr(self.store, "where", "the store")),
        )
        # With a shared store: joining at its revision, then following its change log.
        self.membership: Membership | None = None
        if self.shared:
            self.membership = Membership(
                self.store,
                self.nodes,
                ChangeApplier(
                    self.keys, self.service_manager, self.collections, self.manager, reactor, consumers=self.consumers
                ),
                reactor,
                self.store_spec.uri if self.store_spec is not None else str(getattr(self.store, "uri", "")),
                self.snapshot_path,
                interval=follow_interval,
            )
        # GET /metrics: the data planes' counters (this process's, or every
        # data-plane process's added up), the pools', the builds'.
        self.metrics = Metrics(
            self.processes.metrics if self.processes is not None else local_planes(self._plane_snapshot),
            self.manager.pool_stats_by_endpoint,
            compiles=self.manager.builds.compiles,
            refresh=self.processes.refresh if self.processes is not None else None,
            reactor=reactor,
        )
        # The dashboard's charts (GET /api/stats/history): samples of the same
        # counters as /metrics, with the running endpoints' names (admin/history.py).
        history = StatsHistory(
            self.processes.metrics if self.processes is not None else local_planes(self._plane_snapshot),
            lambda: running_endpoints(self.manager.pool_stats_by_endpoint()),
            reactor,
            refresh=self.processes.refresh if self.processes is not None else None,
        )
        self.api = AdminAPI(
            self.manager,
            self.keys,
            reactor,
            services=self.service_manager,
            domains=self.domains,
            collections=self.collections,
            refresh=self.processes.refresh if self.processes is not None else None,
            # The Admin UI's test console (POST /api/test-request) calls the data plane's own socket.
            probe=DataPlaneProbe(reactor, listen, lambda: self.ports().addCallback(lambda ports: ports[0])),
            isolation=self.isolation.health(),
            nodes=self.nodes,
            metrics=self.metrics,
            history=history,
            # /api/consumers: each change reloads every process's consumer keys.
            consumers=ConsumerManager(self.store, self.consumers.reload),
        )

        admin_site = admin_site_for(
            self.api.resource(),
            reactor,
            max_body=admin_max_body,
            header_timeout=admin_header_timeout,
            body_timeout=admin_body_timeout,
        )
        # The data plane's factory when this process serves it (for its shutdown).
        self._data_site = None
        if self.processes is None:
            data_site = self._data_site = data_plane_factory(http, self.routes, reactor, http_limits, self.observer)
            sites = [(listen, data_site), (admin_listen, admin_site)]
        else:
            # The data-plane processes' socket is bound by the group, which starts first.
            Service.setServiceParent(self.processes, self)
            if http not in (None,) + HTTP_LAYERS:  # here, not in N data-plane processes
                raise ValueError(f"unknown HTTP layer {http!r}: httptools or twisted")
            sites = [(admin_listen, admin_site)]
        if metrics_listen is not None:
            sites.append((metrics_listen, admin_site_for(metrics_root(self.metrics), reactor)))
        self.listeners = []
        for description, site in sites:
            # Stopping accepts what the kernel queued before closing (gateway/listening.py).
            # A port that cannot be bound raises from the start (DrainingServerService).
            service = DrainingServerService(serverFromString(reactor, description), site)
            Service.setServiceParent(service, self)
            self.listeners.append(service)
        # A sample every 5 s, kept in <data-dir>/stats-history.json across a
        # restart. Added last so it stops first: its last sample is taken
        # while the data plane still answers.
        self.history = HistoryService(history, os.path.join(self.data_dir, HISTORY_FILE), reactor)
        Service.setServiceParent(self.history, self)

    def _send_consumers(self, records: list[ConsumerRecord]) -> object:
        """The consumers' key hashes to every data-plane process (replayed to a respawned one)."""
        assert self.processes is not None, "only with data-plane processes"
        return self.processes.change("consumers", records=records)

    def _plane_snapshot(self) -> dict[str, Any]:
        """This process's data-plane counters (when it serves the data plane itself)."""
        return plane_snapshot(self.request_metrics, getattr(self.registry, "calls", None), self._data_site)

    def ports(self) -> "Deferred[list[Any]]":
        """Fire with the listening ports (data plane, control plane) once bound."""
        waiting = [service.whenListening() for service in self.listeners]
        if self.processes is not None:
            waiting.insert(0, self.processes.when_listening())
        return gatherResults(waiting)

    def _make_pool(
        self, record: Mapping[str, Any], binary: str, log: Callable[[str, str], None], version: str | None = None
    ) -> Pool:
        """The default ``pool_factory``: an endpoint's workers under its isolation and network policy."""
        sandbox = os.path.join(self.data_dir, "sandbox", record["id"])
        # The manager puts the endpoint's own uid in the record (UidAllocator).
        identity = self.isolation.identity(record.get("worker_uid"))
        # A few metadata calls on our own data directory, not worth a thread.
        self.isolation.prepare_sandbox(sandbox, identity)
        options = dict(
            cwd=sandbox,
            max_frame=self._max_frame,
            version=version,
            **pool_options(record["settings"]),
        )
        # Isolation (docs/isolation.md): a launcher applies the limits, the
        # namespaces, no_new_privs and the endpoint's uid; each worker leads its
        # own process group.
        options["env"] = worker_environment(options["env"])
        settings = effective_settings(record["settings"])
        # Network policy (workers/network.py): "none" unshares in the launcher;
        # others enter the endpoint's namespace, held while the pool runs.
        network_prefix = self.network.prefix(record["id"], settings["network"])
        options["launcher"] = self.isolation.launcher(
            settings["limits"], identity, network_prefix, binary=binary, sandbox=sandbox
        )
        options["process_group"] = True
        options["frame_fds"] = self.isolation.frame_fds
        # A panic's `src/main.rs:4:37` in the log as `<name>.rs:4:37` (build/locations.py).
        located = locating_log(log, record["name"])
        if self.processes is not None:
            from edgegw_tx.processes import PoolProxy

            pool: Pool = PoolProxy(
                self.processes, record["name"], [binary], endpoint_id=record["id"], log=located, **options
            )
        else:
            pool = WorkerPool(
                record["name"],
                [binary],
                log=located,
                call_handler=self.registry.call_handler(record["id"]),
                reactor=self._reactor,
                **options,
            )
        if network_prefix:
            pool = PoolInNamespace(pool, self.network, record["id"], settings["network"])
        return pool

    def startService(self) -> "Deferred[None]":
        """Load the store, keys, services and domains, open the listeners, restore the endpoints."""
        # The listeners may be bound already (twistd's privilegedStartService):
        # until the keys and endpoints are loaded the API says it is starting.
        self.api.starting = True
        self._restoring(True)
        self._open_access_log()
        self.log.info("{isolation}", isolation=self.isolation.describe())
        self.log.info("request path: {state}", state=compiled.state)
        if self.builder.sandbox is not None:
            self.log.info("{sandbox}", sandbox=self.builder.sandbox.describe())
        # One gateway per data dir (datadir_lock.py): before anything touches the store.
        d = maybeDeferred(self.data_dir_lock.acquire)
        # Held since makeService, maybe by the process twistd forked: its pid now.
        d.addCallback(lambda _: self.data_dir_lock.record_pid())
        d.addCallback(lambda _: self.isolation.prepare_data_dir(self.data_dir))
        d.addCallback(self._begin_warm_up)
        d.addCallback(lambda _: self.store.open())
        # A new store file is created with the umask's mode: the workers' user must not read it.
        d.addCallback(lambda _: self.isolation.protect_files(self.data_dir))
        membership = self.membership
        if membership is not None:
            # Before anything is loaded, so that no change made meanwhile is missed.
            d.addCallback(lambda _: membership.join())
        d.addCallback(lambda _: self.keys.load())
        d.addCallback(lambda _: self.keys.bootstrap(os.path.join(self.data_dir, "admin.key")))
        d.addCallback(lambda _: self.service_manager.load())
        # Before restore: an api_key route checks the keys from its first request.
        d.addCallback(lambda _: self.consumers.reload())
        # Before restore: routes of endpoints in collections need the base paths.
        d.addCallback(lambda _: self.collections.load())
        d.addCallback(lambda _: self.domains.load())
        d.addCallback(lambda _: MultiService.startService(self))
        # What a crashed run left of the endpoints' network namespaces.
        d.addCallback(lambda _: self.network.clear_leftovers())
        # A shared store's statuses are the cluster's desired state: this node starts its pools, writes nothing.
        if self.shared:
            d.addCallback(lambda _: self.manager.restore(persist=False))
        else:
            d.addCallback(lambda _: self.manager.restore())
        d.addCallback(self._started)
        if membership is not None:
            d.addCallback(lambda _: membership.follow(self.ports()))
        d.addErrback(self._failed_to_start)
        return d

    @property
    def follower(self) -> Follower | None:
        """The change log's follower of a node of a cluster, once started (None otherwise)."""
        return self.membership.follower if self.membership is not None else None

    def _leave_cluster(self) -> "Deferred[None]":
        """A node of a cluster stops following, listening and beating first."""
        if self.membership is None:
            return succeed(None)
        return self.membership.leave()

    def _restoring(self, restoring: bool) -> None:
        """The route table answers "starting" while endpoints are restored (``MirroredRoutes``: in every data-plane process)."""
        self.routes.restoring = restoring

    def _started(self, _: object) -> None:
        """Everything is loaded: the API and the route table stop answering "starting"."""
        self.api.starting = False
        self._restoring(False)

    def _failed_to_start(self, failure: Failure) -> None:
        """Log why and stop the reactor: a gateway half started serves nothing right."""
        if failure.check(StoreRefused):
            # A store it cannot use (a failed migration ...): the operator's one line, no traceback.
            self.log.error("edgegw could not start: {reason}", reason=str(failure.value))
        else:
            self.log.failure("edgegw could not start", failure)
        self._reactor.stop()

    def stopService(self) -> "Deferred[None]":
        """
        Drain (health 503) and serve on for the shutdown delay; then close the
        listeners, drain the workers, close connectors, keys, store and lock.
        """
        # Load balancers see the health path answer 503 from now on.
        self.observer.draining = True
        if self.processes is not None:
            self.processes.drain()
        d: Deferred[Any] = self._serve_on()
        d.addCallback(lambda _: self._leave_cluster())
        d.addCallback(lambda _: MultiService.stopService(self))
        d.addCallback(lambda _: gatherResults([self.manager.stop_all(), self._close_connections()]))
        # Builds still running (and whatever they left holding their pipes) end with the gateway, the store still open.
        d.addBoth(lambda result: self.builder.stop().addBoth(lambda _: result) if isinstance(self.builder, Builder) else result)
        d.addBoth(self._close_access_log)
        d.addBoth(lambda result: self.network.close().addBoth(lambda _: result))
        d.addBoth(self._close_registry)
        # The keys' held-back last_used_at times (auth.py); errors are logged there.
        d.addBoth(lambda _: self.keys.flush())
        d.addBoth(lambda _: self.store.close())
        d.addBoth(lambda _: self.warm_up.stop() if self.warm_up is not None else None)
        d.addBoth(lambda _: self.data_dir_lock.release())
        return d

    def _begin_warm_up(self, _: object) -> None:
        """Start warming the build target (the data dir is ours now); start does not wait for it."""
        if self.warm_up is not None:
            self.warm_up.start()

    def _serve_on(self) -> "Deferred[None]":
        """Fires after ``shutdown_delay`` seconds (at once for 0): the data plane serves as before meanwhile."""
        if self.shutdown_delay <= 0:
            return succeed(None)
        self.log.info(
            "stopping: the health path answers 503; serving {seconds:g} s more before closing the listeners",
            seconds=self.shutdown_delay,
        )
        return deferLater(self._reactor, self.shutdown_delay, lambda: None)

    def _open_access_log(self) -> None:
        """
        Start the access log (its writer thread starts here, after twistd
        daemonised) and reopen it on SIGHUP; with several data-plane
        processes, SIGHUP is passed on to them (each writes its own).
        """
        if self._access_log_path is None:
            return
        if self.processes is None and self.observer.access_log is None:
            self.observer.access_log = AccessLog(
                self._access_log_path,
                self._reactor,
                self._access_log_max_bytes,
                self.request_metrics.drop_lines,
            )
        if not self._hup_installed and hasattr(signal, "SIGHUP"):
            self._previous_hup = signal.signal(signal.SIGHUP, self._hangup)
            self._hup_installed = True

    def _hangup(self, number: int, frame: Any) -> None:
        """SIGHUP: reopen the access log on the reactor's next turn; the previous handler too."""
        self._reactor.callFromThread(self.reopen_access_log)
        previous = self._previous_hup
        if callable(previous):
            previous(number, frame)

    def reopen_access_log(self) -> None:
        """Reopen the access log under its path (logrotate moved it): this process's or the data planes'."""
        if self.observer.access_log is not None:
            self.observer.access_log.reopen()
        if self.processes is not None:
            self.processes.signal_all("HUP")

    def _close_access_log(self, result: object) -> "Deferred[object]":
        """After the last answer: write what waits, close the file, end its thread, give SIGHUP back."""
        if self._hup_installed:
            self._hup_installed = False
            # None: a handler not installed from Python, which cannot be put back.
            if self._previous_hup is not None:
                signal.signal(signal.SIGHUP, self._previous_hup)
            self._previous_hup = None
        access_log, self.observer.access_log = self.observer.access_log, None
        if access_log is None:
            return succeed(result)
        d: Deferred[Any] = access_log.close()
        d.addErrback(lambda f: self.log.failure("Closing the access log failed", f))
        d.addCallback(lambda _: result)
        return d

    def _close_connections(self) -> "Deferred[None]":
        """
        Once the listeners stopped: answer what the data plane's connections
        have begun and close them (gateway/http.py), while the pools drain.
        """
        close = getattr(self._data_site, "close_connections", None)
        if close is None:
            return succeed(None)
        d: Deferred[None] = close()
        d.addErrback(lambda f: self.log.failure("Closing the data plane's connections failed", f))
        return d

    def _close_registry(self, result: object) -> "Deferred[object]":
        """After the workers drained: no call can reach a connector any more."""
        d = maybeDeferred(self.registry.close)
        d.addErrback(lambda f: self.log.failure("Closing the service connectors failed", f))
        d.addCallback(lambda _: result)
        return d
