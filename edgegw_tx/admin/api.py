"""
The management API: a Klein app over the endpoint manager.

Every answer is the envelope of spec/API.md, ``{"ok": true, "data": ...}`` or
``{"ok": false, "error": "..."}`` with a matching status; a bug answers 500
with a generic message and the traceback goes to the log only.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any, cast, Callable, Generator, Mapping, Optional, Protocol, Sequence
from urllib.parse import unquote_to_bytes

from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request
from werkzeug.exceptions import MethodNotAllowed as RoutingMethodNotAllowed
from werkzeug.exceptions import NotFound as RoutingNotFound

from edgegw_tx import __version__
from edgegw_tx.admin.openapi import DOCUMENT_JSON as OPENAPI_JSON
from edgegw_tx.admin.auth import check_new_key
from edgegw_tx.admin.consumers import view as consumer_view
from edgegw_tx.admin.domains import gateway_stats
from edgegw_tx.admin.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Starting,
    StoreDown,
    TooManyRequests,
    Unauthorized,
)
from edgegw_tx.admin.history import DEFAULT_TOP, MAX_TOP, StatsHistory, running_endpoints
from edgegw_tx.admin.imports import Importer, bundle_bytes, bundle_options
from edgegw_tx.admin.jsonbody import parse_json_body
from edgegw_tx.admin.limits import IMPORT_MAX_BODY, MAX_BODY
from edgegw_tx.admin.metrics_page import MetricsPage
from edgegw_tx.admin.policies import shown
from edgegw_tx.admin.throttle import AuthThrottle
from edgegw_tx.admin.ui import default_ui, is_ui_path
from edgegw_tx.admin.views import node_workers
from edgegw_tx.services.config import MASK
from edgegw_tx.store.errors import Stale, StoreUnavailable
from edgegw_tx.store.interface import Record

if TYPE_CHECKING:
    from edgegw_tx.admin.auth import KeyRing
    from edgegw_tx.admin.consumers import ConsumerManager
    from edgegw_tx.admin.domains import CollectionManager, DomainManager
    from edgegw_tx.admin.manager import EndpointManager
    from edgegw_tx.admin.probe import DataPlaneProbe
    from edgegw_tx.admin.services import ServiceManager
    from edgegw_tx.observability.exposition import Metrics

_READ_METHODS = (b"GET", b"HEAD")

# An ETag as GET answers it, ``"<revision>"`` (weak ``W/"<revision>"`` too; the
# bare number, a common slip, is taken as well).
_ETAG = re.compile(r'^(?:(?:W/)?"(0|[1-9][0-9]{0,17})"|(0|[1-9][0-9]{0,17}))$')

# How long a client should wait before retrying a call the store could not serve.
STORE_RETRY_AFTER = 5


class Nodes(Protocol):
    """The cluster's nodes as the API shows them (``cluster/nodes.py``'s ``NodeDirectory``)."""

    @property
    def name(self) -> str:
        """This node's name."""

    def list(self) -> "Deferred[list[dict[str, Any]]]":
        """Every node: name, address, version, started_at, last_seen, state, workers, endpoints, self."""


def _json(request: IRequest, status: int, document: Mapping[str, Any]) -> bytes:
    """``document`` as the JSON answer with ``status``; never cached, it may hold secrets."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document).encode("utf-8")


def _error_answer(request: IRequest, error: ApiError) -> bytes:
    """``error`` as its status and envelope, with its extra fields (``retry_after`` ...)."""
    document = {"ok": False, "error": error.message}
    document.update(error.extra)
    return _json(request, error.status, document)


def ok(request: IRequest, data: Any, status: int = 200) -> bytes:
    """The success envelope ``{"ok": true, "data": ...}``."""
    return _json(request, status, {"ok": True, "data": data})


class AdminAPI:
    """The ``/api/*`` routes; state lives on the instance, not in globals."""

    app = Klein()
    log = Logger()

    def __init__(
        self,
        manager: EndpointManager,
        keys: KeyRing,
        clock: IReactorTime,
        services: Optional[ServiceManager] = None,
        domains: Optional[DomainManager] = None,
        collections: Optional[CollectionManager] = None,
        refresh: Optional[Callable[[], "Deferred[Any]"]] = None,
        probe: Optional[DataPlaneProbe] = None,
        history: Optional[StatsHistory] = None,
        ui: Optional[IResource] = None,
        isolation: Optional[dict[str, Any]] = None,
        nodes: Optional[Nodes] = None,
        metrics: Optional[Metrics] = None,
        consumers: Optional[ConsumerManager] = None,
    ) -> None:
        """
        ``services`` is the ``ServiceManager``, ``domains`` and ``collections``
        the ``DomainManager`` and ``CollectionManager`` (admin/domains.py);
        without one its routes answer 404. ``refresh()`` -> Deferred brings
        the live worker state the endpoint views and stats show (pids,
        workers, queue, counters) up to date before they are read: with
        several data-plane processes it asks them (``processes/group.py``);
        with one, the pools are here and nothing is needed. ``probe`` is the
        ``DataPlaneProbe`` of ``POST /api/test-request`` (admin/probe.py;
        without one that route answers 404), ``history`` the ``StatsHistory``
        of ``GET /api/stats/history`` (the runtime's reads its
        ``RequestMetrics``; without one, one that lists the running endpoints
        and counts nothing; its samples are the caller's to take), ``ui`` the resource of the Admin
        UI at ``/admin/`` (admin/ui.py; ``admin_ui/`` by default).
        ``isolation`` is the workers' isolation mode that ``GET /api/health``
        shows (``Isolation.health()``, workers/isolation.py). ``nodes`` lists
        the cluster's nodes for ``GET /api/nodes`` and the endpoints' ``nodes``
        (workers per node); without it that route answers 404 and an endpoint
        shows no ``nodes``. ``metrics`` is what ``GET /metrics`` renders
        (observability/exposition.py; any key may read it); without it, 404.
        """
        # Public: the runtime may set it once its node directory exists.
        self.nodes = nodes
        #: /api/consumers (admin/consumers.py); None: those routes answer 404
        self.consumers = consumers
        self._isolation = isolation
        self._manager = manager
        self._probe = probe
        self.history = history or StatsHistory(
            list, lambda: running_endpoints(manager.pool_stats_by_endpoint()), clock, refresh=refresh
        )
        self._ui = ui
        self._refresh = refresh or (lambda: succeed(None))
        self._services = services
        self._domains = domains
        self._collections = collections
        self._keys = keys
        self._clock = clock
        self._throttle = AuthThrottle(clock)
        self._started = clock.seconds()
        self._metrics_page = MetricsPage(metrics, self._metrics_authorized) if metrics is not None else None

    def resource(self) -> Resource:
        """The control plane's root: the API under ``/api/``, the Admin UI under ``/admin/``."""
        return _Utf8Paths(
            self.app.resource(), self._ui if self._ui is not None else default_ui(), metrics=self._metrics_page
        )

    # plumbing

    def _metrics_authorized(self, request: Request) -> Optional[bytes]:
        """``GET /metrics`` is read like the API: None for a valid key of any scope, else the refusal."""
        try:
            self._authorize(request)
        except ApiError as error:
            return _error_answer(request, error)
        return None

    def _authorize(self, request: Request) -> Record:
        """
        The key record of the request, or 401/403/429. The key is checked
        first, so a valid key always gets in, even from an address that others
        (a handler's worker on the same host, say) have throttled: failing
        there must never lock the operator out. Only a failure is throttled:
        from an address with no attempt left it is a 429, otherwise a 401
        that takes one of its attempts (``throttle.py``).
        """
        if request.method not in _READ_METHODS:
            foreign = _cross_site(request)
            if foreign:
                raise Forbidden(f"cross-site requests may not change anything ({foreign})")
        if self.starting:
            request.setHeader(b"retry-after", b"1")
            raise Starting("the gateway is starting (loading its store and endpoints); retry in a moment")
        try:
            record = self._keys.authenticate(_bearer_token(request))
            if record is None:
                raise Unauthorized("invalid API key")
        except Unauthorized:
            address = _client_address(request)
            wait = self._throttle.retry_after(address)
            if wait:
                request.setHeader(b"retry-after", str(wait).encode("ascii"))
                raise TooManyRequests(
                    f"too many failed authentications from this address; retry in {wait} s",
                    retry_after=wait,
                )
            self._throttle.failed(address)
            request.setHeader(b"www-authenticate", b'Bearer realm="edgegw"')
            raise
        if record["scope"] != "admin" and request.method not in _READ_METHODS:
            raise Forbidden(f"the key '{record['name']}' has scope '{record['scope']}' and may only read")
        return record

    def _endpoint_view(self, key: Record) -> Callable[[Record], Record]:
        """
        How ``key`` sees endpoints: with an admin key as they are; with a read
        key every set ``settings.env`` value is shown as the services' mask
        (``services.config.MASK``), since env is where handlers get secrets.
        """
        if key["scope"] == "admin":
            return self._manager.view
        def masked(record: Record) -> Record:
            """The endpoint's view with every set env value replaced by the mask."""
            view = self._manager.view(record)
            env = view["settings"].get("env") or {}
            view["settings"] = dict(view["settings"], env={k: MASK if v else v for k, v in env.items()})
            return view

        return masked

    @inlineCallbacks
    def _endpoint_views(
        self, key: Optional[Record] = None
    ) -> Generator["Deferred[Any]", Any, Callable[[Record], Record]]:
        """
        How the caller sees endpoints (``_endpoint_view``; no ``key``: as an
        admin does), with ``nodes``, their workers per node, when this gateway
        knows its nodes: one look at the nodes for a whole page of endpoints.
        """
        base = self._endpoint_view(key) if key is not None else self._manager.view
        if self.nodes is None:
            return base
        nodes = yield self._node_list()
        own = self.nodes.name

        def view(record: Record) -> Record:
            """The endpoint's view with ``nodes``; this node's count is its live one."""
            public = base(record)
            public["nodes"] = node_workers(record["id"], nodes, own, len(public["pids"]))
            return public

        return view

    @inlineCallbacks
    def _node_list(self) -> Generator["Deferred[Any]", Any, list[dict[str, Any]]]:
        """The nodes, or none while the store is unreachable: an endpoint's view must not need them."""
        assert self.nodes is not None
        try:
            nodes = yield self.nodes.list()
        except StoreUnavailable:
            return []
        return cast(list[dict[str, Any]], nodes)

    def _service_manager(self) -> ServiceManager:
        """The ``ServiceManager``, or 404 in a gateway without the service plane."""
        if self._services is None:
            raise NotFound("services are not available in this gateway")
        return self._services

    def _body(self, request: Request, limit: Optional[int] = None) -> Any:
        """The request's JSON body, at most ``limit`` bytes (413 beyond it, 400 when not JSON)."""
        if limit is None:
            # The cap of the site (--admin-max-body), which has refused larger bodies already.
            limit = getattr(getattr(request.channel, "site", None), "max_body", MAX_BODY)
        # Twisted sets ``content`` before it renders, so it is never None here.
        assert request.content is not None
        data = request.content.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        return parse_json_body(data)

    @app.handle_errors(ApiError)
    def _api_error(self, request: IRequest, failure: Failure) -> bytes:
        """An ``ApiError`` as its status and envelope, with its extra fields (``retry_after`` ...)."""
        return _error_answer(request, cast(ApiError, failure.value))

    @app.handle_errors(RoutingNotFound)
    def _not_found(self, request: IRequest, failure: Failure) -> bytes:
        """No route has this path: 404 in the envelope, naming the path."""
        path = request.path.decode("utf-8", "replace")
        return _json(request, 404, {"ok": False, "error": f"no such API route: {path}"})

    @app.handle_errors(RoutingMethodNotAllowed)
    def _method_not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        """A route has this path but not this method: 405 with ``Allow``."""
        allowed = sorted(cast(RoutingMethodNotAllowed, failure.value).valid_methods or ())
        request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        return _json(request, 405, {"ok": False, "error": f"{method} is not allowed on {path}"})

    @app.handle_errors(Stale)
    def _stale(self, request: IRequest, failure: Failure) -> bytes:
        """A write whose ``If-Match`` no longer held: 412 with the record's revision now."""
        stale = cast(Stale, failure.value)
        error = PreconditionFailed(
            f"{stale.what} '{stale.record_id}' was changed by someone else (now at revision {stale.current});"
            " GET it again and retry",
            revision=stale.current,
        )
        return _error_answer(request, error)

    @app.handle_errors(StoreUnavailable)
    def _store_unavailable(self, request: IRequest, failure: Failure) -> bytes:
        """The store cannot be reached: 503 naming it, with ``Retry-After``; the data plane is not affected."""
        request.setHeader(b"retry-after", str(STORE_RETRY_AFTER).encode("ascii"))
        error = StoreDown(str(failure.value), retry_after=STORE_RETRY_AFTER)
        return _error_answer(request, error)

    @app.handle_errors(Exception)
    def _bug(self, request: IRequest, failure: Failure) -> bytes:
        """Anything else is a bug: 500 with a generic message, the traceback to the log only."""
        self.log.failure("Unhandled error in {path}", failure, path=request.path)
        return _json(request, 500, {"ok": False, "error": "internal error; see the gateway log"})

    # routes

    # True while the runtime loads the store and restarts endpoints (runtime.py):
    # health says so and every other call answers 503 instead of a wrong 401.
    starting = False

    @app.route("/api/health", methods=["GET"])
    def health(self, request: IRequest) -> bytes:
        """Up, or 503 while starting; no key needed (a load balancer's probe)."""
        if self.starting:
            request.setHeader(b"retry-after", b"1")
            return _json(request, 503, {"ok": False, "data": {"status": "starting", "version": __version__},
                                        "error": "the gateway is starting"})
        health: dict[str, Any] = {"status": "healthy", "version": __version__}
        if self._isolation is not None:
            health["isolation"] = self._isolation
        return ok(request, health)

    @app.route("/api/openapi.json", methods=["GET"])
    def openapi_document(self, request: IRequest) -> bytes:
        """The OpenAPI 3.1 document of this API (``openapi.py``), bare; like health, no key needed."""
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return OPENAPI_JSON

    @app.route("/api/endpoints", methods=["GET"])
    @inlineCallbacks
    def list_endpoints(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """One page of endpoints, filtered by ``domain``, ``collection_id`` and ``enabled``; env masked for read keys."""
        key = self._authorize(request)
        records = yield self._manager.list()
        args = _query(request)
        if args.get("domain"):
            # Stored lower-case; the domain an endpoint is served on (its collection's, if any).
            records = [r for r in records if r["domain"] == args["domain"].strip().lower()]
        if args.get("collection_id"):
            records = [r for r in records if r["collection_id"] == args["collection_id"]]
        if args.get("enabled"):
            if args["enabled"] not in ("true", "false"):
                raise BadRequest("query parameter 'enabled' must be true or false")
            wanted = args["enabled"] == "true"
            records = [r for r in records if r["enabled"] == wanted]
        yield self._refresh()
        view = yield self._endpoint_views(key)
        return ok(request, _paged(args, records, view))

    @app.route("/api/endpoints", methods=["POST"])
    @inlineCallbacks
    def create_endpoint(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """A new endpoint from its JSON body (201); it is compiled and started by its own calls."""
        self._authorize(request)
        record = yield self._manager.create(self._body(request))
        view = yield self._endpoint_views()
        return tagged(request, view(record), status=201)

    @app.route("/api/endpoints/<endpoint_id>", methods=["GET"])
    @inlineCallbacks
    def get_endpoint(self, request: Request, endpoint_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """One endpoint with its live workers; env masked for read keys."""
        key = self._authorize(request)
        record = yield self._manager.get(endpoint_id)
        yield self._refresh()
        view = yield self._endpoint_views(key)
        public = view(record)
        if self._collections is not None:
            effective = self._collections.policy_of(record)
            public["effective_policy"] = shown({"policy": effective.parts})["policy"]
            public["policy_sources"] = dict(effective.sources)
        return tagged(request, public)

    @app.route("/api/endpoints/<endpoint_id>", methods=["PUT"])
    @inlineCallbacks
    def update_endpoint(self, request: Request, endpoint_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Change an endpoint; a running one follows the change (admin/manager.py)."""
        self._authorize(request)
        revision = if_match(request)
        record = yield self._manager.update(endpoint_id, self._body(request), revision=revision)
        yield self._refresh()
        view = yield self._endpoint_views()
        return tagged(request, view(record))

    @app.route("/api/endpoints/<endpoint_id>", methods=["DELETE"])
    @inlineCallbacks
    def delete_endpoint(self, request: Request, endpoint_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Stop and forget an endpoint, its bindings and the binaries no other endpoint uses."""
        self._authorize(request)
        record = yield self._manager.delete(endpoint_id, revision=if_match(request))
        return ok(request, {"id": record["id"], "deleted": True})

    @app.route("/api/endpoints/<endpoint_id>/compile", methods=["POST"])
    @inlineCallbacks
    def compile_endpoint(self, request: Request, endpoint_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Build the endpoint's code with cargo and answer the record with the build's digest and time."""
        self._authorize(request)
        record, build = yield self._manager.compile(endpoint_id)
        yield self._refresh()
        view = yield self._endpoint_views()
        data = view(record)
        data["build"] = {
            "digest": build.digest,
            "cached": build.cached,
            "seconds": round(build.seconds, 3),
            "dependencies": list(build.dependencies),
            # cargo's warnings about the handler's own code, rendered as cargo prints them
            "warnings": list(getattr(build, "warnings", [])),
        }
        return tagged(request, data)

    @app.route("/api/endpoints/<endpoint_id>/<any(start, stop, restart):action>", methods=["POST"])
    @inlineCallbacks
    def endpoint_lifecycle(self, request: Request, endpoint_id: str, action: str) -> Generator["Deferred[Any]", Any, bytes]:
        """start, stop and restart: each answers the record with its status and pids."""
        self._authorize(request)
        change = {
            "start": self._manager.start,
            "stop": self._manager.stop,
            "restart": self._manager.restart,
        }[action]
        record = yield change(endpoint_id)
        yield self._refresh()
        view = yield self._endpoint_views()
        return tagged(request, view(record))

    @app.route("/api/endpoints/<endpoint_id>/versions", methods=["GET"])
    @inlineCallbacks
    def endpoint_versions(self, request: Request, endpoint_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Its compiled versions, newest first, with ``live`` and ``current`` flags."""
        self._authorize(request)
        versions = yield self._manager.versions(endpoint_id)
        return ok(request, _paged(_query(request), versions, dict))

    @app.route("/api/endpoints/<endpoint_id>/rollback", methods=["POST"])
    @inlineCallbacks
    def rollback_endpoint(self, request: Request, endpoint_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Serve an earlier version, ``{"version": digest}``, without compiling."""
        self._authorize(request)
        record = yield self._manager.rollback(endpoint_id, self._body(request))
        yield self._refresh()
        view = yield self._endpoint_views()
        return tagged(request, view(record))

    @app.route("/api/endpoints/<endpoint_id>/logs", methods=["GET"])
    @inlineCallbacks
    def endpoint_logs(self, request: Request, endpoint_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """The workers' stderr lines, those after ``?since=`` (seconds since the epoch) when given."""
        self._authorize(request)
        yield self._manager.get(endpoint_id)
        since = None
        raw = request.args.get(b"since")
        if raw:
            try:
                since = float(raw[-1])
            except ValueError:
                raise BadRequest("query parameter 'since' must be a time in seconds since the epoch")
            if not math.isfinite(since):
                raise BadRequest("query parameter 'since' must be a finite number")
        return ok(request, {"lines": self._manager.logs(endpoint_id, since)})

    # domains, collections and stats (admin/domains.py)

    def _domain_manager(self) -> DomainManager:
        """The ``DomainManager``, or 404 in a gateway without one."""
        if self._domains is None:
            raise NotFound("domains are not available in this gateway")
        return self._domains

    def _collection_manager(self) -> CollectionManager:
        """The ``CollectionManager``, or 404 in a gateway without one."""
        if self._collections is None:
            raise NotFound("collections are not available in this gateway")
        return self._collections

    @app.route("/api/stats", methods=["GET"])
    @inlineCallbacks
    def stats(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """
        Endpoints by status, the data planes' request counters (those of
        ``/metrics``, read now) and the running pools' workers (``gateway_stats``).
        """
        self._authorize(request)
        records = yield self._manager.list()
        uptime = self._clock.seconds() - self._started
        yield self._refresh()
        planes = yield self.history.planes()
        return ok(request, gateway_stats(records, self._manager.pool_stats(), planes, uptime))

    @app.route("/api/nodes", methods=["GET"])
    @inlineCallbacks
    def list_nodes(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """
        One page of the cluster's nodes from their heartbeats (``cluster/nodes.py``):
        up or down, their workers per endpoint, ``self`` for this one. With a
        store of one node, this node alone. 503 while the store is unreachable.
        """
        self._authorize(request)
        if self.nodes is None:
            raise NotFound("nodes are not available in this gateway")
        nodes = yield self.nodes.list()
        return ok(request, _paged(_query(request), nodes, dict))

    @app.route("/api/stats/history", methods=["GET"])
    @inlineCallbacks
    def stats_history(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """The last minutes of request counts and latencies, per endpoint and in all (admin/history.py)."""
        self._authorize(request)
        args = _query(request)
        top = _positive_int(args, "top", DEFAULT_TOP)
        if top > MAX_TOP:
            raise BadRequest(f"query parameter 'top' must be at most {MAX_TOP}")
        records = yield self._manager.list()
        names = {r["id"]: r["name"] for r in records}
        wanted = None
        if args.get("endpoint_id"):
            wanted = [args["endpoint_id"]]
            if wanted[0] not in names:
                raise NotFound(f"no endpoint with id '{wanted[0]}'")
        return ok(request, self.history.view(names, wanted, top))

    @app.route("/api/test-request", methods=["POST"])
    @inlineCallbacks
    def test_request(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """Send a request to this gateway's data plane and answer what it answered (admin/probe.py)."""
        self._authorize(request)
        if self._probe is None:
            raise NotFound("test requests are not available in this gateway")
        result = yield self._probe.send(self._body(request))
        return ok(request, result)

    @app.route("/api/domains", methods=["GET"])
    @inlineCallbacks
    def list_domains(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """One page of domains."""
        self._authorize(request)
        records = yield self._domain_manager().list()
        return ok(request, _paged(_query(request), records, shown))

    @app.route("/api/domains", methods=["POST"])
    @inlineCallbacks
    def create_domain(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """A new domain (201)."""
        self._authorize(request)
        record = yield self._domain_manager().create(self._body(request))
        return tagged(request, shown(record), status=201)

    @app.route("/api/domains/<domain_id>", methods=["GET"])
    @inlineCallbacks
    def get_domain(self, request: Request, domain_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """One domain."""
        self._authorize(request)
        record = yield self._domain_manager().get(domain_id)
        return tagged(request, shown(record))

    @app.route("/api/domains/<domain_id>", methods=["PUT"])
    @inlineCallbacks
    def update_domain(self, request: Request, domain_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Change a domain; its endpoints' routes follow."""
        self._authorize(request)
        revision = if_match(request)
        record = yield self._domain_manager().update(domain_id, self._body(request), revision=revision)
        return tagged(request, shown(record))

    @app.route("/api/domains/<domain_id>", methods=["DELETE"])
    @inlineCallbacks
    def delete_domain(self, request: Request, domain_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """409 while it has endpoints or collections, unless ``?cascade=true``."""
        self._authorize(request)
        cascade = _flag(_query(request), "cascade")
        record = yield self._domain_manager().delete(domain_id, cascade=cascade, revision=if_match(request))
        return ok(request, {"id": record["id"], "deleted": True, "cascaded": record["cascaded"]})

    @app.route("/api/domains/<domain_id>/collections", methods=["GET"])
    @inlineCallbacks
    def domain_collections(self, request: Request, domain_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """One page of a domain's collections (404 for an unknown domain)."""
        self._authorize(request)
        yield self._domain_manager().get(domain_id)
        records = yield self._collection_manager().list(domain_id)
        return ok(request, _paged(_query(request), records, shown))

    @app.route("/api/collections", methods=["GET"])
    @inlineCallbacks
    def list_collections(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """One page of collections, those of ``?domain_id=`` when given."""
        self._authorize(request)
        records = yield self._collection_manager().list(_query(request).get("domain_id") or None)
        return ok(request, _paged(_query(request), records, shown))

    @app.route("/api/collections", methods=["POST"])
    @inlineCallbacks
    def create_collection(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """A new collection (201)."""
        self._authorize(request)
        record = yield self._collection_manager().create(self._body(request))
        return tagged(request, shown(record), status=201)

    @app.route("/api/collections/<collection_id>", methods=["GET"])
    @inlineCallbacks
    def get_collection(self, request: Request, collection_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """One collection."""
        self._authorize(request)
        record = yield self._collection_manager().get(collection_id)
        return tagged(request, shown(record))

    @app.route("/api/collections/<collection_id>", methods=["PUT"])
    @inlineCallbacks
    def update_collection(self, request: Request, collection_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Change a collection; its endpoints' routes follow."""
        self._authorize(request)
        revision = if_match(request)
        record = yield self._collection_manager().update(collection_id, self._body(request), revision=revision)
        return tagged(request, shown(record))

    @app.route("/api/collections/<collection_id>", methods=["DELETE"])
    @inlineCallbacks
    def delete_collection(self, request: Request, collection_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """409 while it has endpoints, unless ``?cascade=true``."""
        self._authorize(request)
        cascade = _flag(_query(request), "cascade")
        record = yield self._collection_manager().delete(collection_id, cascade=cascade, revision=if_match(request))
        return ok(request, {"id": record["id"], "deleted": True, "cascaded": record["cascaded"]})

    @app.route("/api/collections/<collection_id>/endpoints", methods=["GET"])
    @inlineCallbacks
    def collection_endpoints(self, request: Request, collection_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """One page of a collection's endpoints; env masked for read keys."""
        key = self._authorize(request)
        records = yield self._collection_manager().endpoints(collection_id)
        yield self._refresh()
        view = yield self._endpoint_views(key)
        return ok(request, _paged(_query(request), records, view))

    # bindings: the names under which an endpoint's handlers reach services

    @app.route("/api/endpoints/<endpoint_id>/services", methods=["GET"])
    @inlineCallbacks
    def endpoint_services(self, request: Request, endpoint_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """The names under which the endpoint's handlers reach services."""
        self._authorize(request)
        bindings = yield self._service_manager().bindings(endpoint_id)
        return ok(request, bindings)

    @app.route("/api/endpoints/<endpoint_id>/services", methods=["POST"])
    @inlineCallbacks
    def bind_service(self, request: Request, endpoint_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """201 for a new name, 200 when the name was bound and now points elsewhere."""
        self._authorize(request)
        services = self._service_manager()
        binding, replaced = yield services.bind(endpoint_id, self._body(request))
        data = dict(binding, replaced=replaced)
        return ok(request, data, status=200 if replaced is not None else 201)

    @app.route("/api/endpoints/<endpoint_id>/services/<pool_id>", methods=["DELETE"])
    @inlineCallbacks
    def unbind_service(self, request: Request, endpoint_id: str, pool_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """By the binding's name, not the service id: one service may be bound under two names."""
        self._authorize(request)
        binding = yield self._service_manager().unbind(endpoint_id, pool_id)
        return ok(request, dict(binding, deleted=True))

    # API keys: the plaintext is in the POST answer only; lists never show it

    @app.route("/api/keys", methods=["GET"])
    def list_keys(self, request: Request) -> bytes:
        """One page of API keys without their secrets; ``current`` marks the caller's own."""
        current = self._authorize(request)
        items = [dict(view, current=view["id"] == current["id"]) for view in self._keys.list()]
        return ok(request, _paged(_query(request), items, lambda item: item))

    @app.route("/api/keys", methods=["POST"])
    @inlineCallbacks
    def create_key(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """A new key (201): its plaintext is in this answer only."""
        self._authorize(request)
        name, scope = check_new_key(self._body(request))
        record, plaintext = yield self._keys.create(name, scope)
        return tagged(request, dict(self._keys.view(record), key=plaintext), status=201)

    @app.route("/api/keys/<key_id>", methods=["DELETE"])
    @inlineCallbacks
    def delete_key(self, request: Request, key_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """The key is refused from the next request on; never the last admin key (409)."""
        self._authorize(request)
        view = yield self._keys.revoke(key_id, revision=if_match(request))
        return ok(request, dict(view, deleted=True))

    # consumers: the clients of api_key policies (admin/consumers.py)

    def _consumer_manager(self) -> ConsumerManager:
        """The consumers, or 404 in a gateway without them."""
        if self.consumers is None:
            raise NotFound("consumers are not available in this gateway")
        return self.consumers

    @app.route("/api/consumers", methods=["GET"])
    @inlineCallbacks
    def list_consumers(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """One page of consumers with their keys' ids (never the keys)."""
        self._authorize(request)
        records = yield self._consumer_manager().list()
        return ok(request, _paged(_query(request), records, consumer_view))

    @app.route("/api/consumers", methods=["POST"])
    @inlineCallbacks
    def create_consumer(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """A new consumer (201), with no key yet."""
        self._authorize(request)
        record = yield self._consumer_manager().create(self._body(request))
        return tagged(request, consumer_view(record), status=201)

    @app.route("/api/consumers/<consumer_id>", methods=["GET"])
    @inlineCallbacks
    def get_consumer(self, request: Request, consumer_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """One consumer."""
        self._authorize(request)
        record = yield self._consumer_manager().get(consumer_id)
        return tagged(request, consumer_view(record))

    @app.route("/api/consumers/<consumer_id>", methods=["PUT"])
    @inlineCallbacks
    def update_consumer(self, request: Request, consumer_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Rename, enable or disable a consumer; its keys follow at once."""
        self._authorize(request)
        revision = if_match(request)
        record = yield self._consumer_manager().update(consumer_id, self._body(request), revision=revision)
        return tagged(request, consumer_view(record))

    @app.route("/api/consumers/<consumer_id>", methods=["DELETE"])
    @inlineCallbacks
    def delete_consumer(self, request: Request, consumer_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Delete a consumer with its keys (refused from the next request on)."""
        self._authorize(request)
        record = yield self._consumer_manager().delete(consumer_id, revision=if_match(request))
        return ok(request, {"id": record["id"], "deleted": True})

    @app.route("/api/consumers/<consumer_id>/keys", methods=["POST"])
    @inlineCallbacks
    def create_consumer_key(self, request: Request, consumer_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """A new key of the consumer (201): the key is in this answer only."""
        self._authorize(request)
        created = yield self._consumer_manager().add_key(consumer_id)
        return ok(request, created, status=201)

    @app.route("/api/consumers/<consumer_id>/keys/<key_id>", methods=["DELETE"])
    @inlineCallbacks
    def delete_consumer_key(self, request: Request, consumer_id: str, key_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Delete one key of the consumer (refused from the next request on)."""
        self._authorize(request)
        deleted = yield self._consumer_manager().delete_key(consumer_id, key_id)
        return ok(request, deleted)

    # services

    @app.route("/api/services", methods=["GET"])
    @inlineCallbacks
    def list_services(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """One page of services, those of ``?service_type=`` when given; secrets masked."""
        self._authorize(request)
        services = self._service_manager()
        records = yield services.list()
        args = _query(request)
        if args.get("service_type"):
            records = [r for r in records if r["service_type"] == args["service_type"]]
        return ok(request, _paged(args, records, services.view))

    @app.route("/api/services", methods=["POST"])
    @inlineCallbacks
    def create_service(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """A new service (201); secrets masked in the answer."""
        self._authorize(request)
        services = self._service_manager()
        record = yield services.create(self._body(request))
        return tagged(request, services.view(record), status=201)

    @app.route("/api/services/<service_id>", methods=["GET"])
    @inlineCallbacks
    def get_service(self, request: Request, service_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """One service; secrets masked."""
        self._authorize(request)
        services = self._service_manager()
        record = yield services.get(service_id)
        return tagged(request, services.view(record))

    @app.route("/api/services/<service_id>", methods=["PUT"])
    @inlineCallbacks
    def update_service(self, request: Request, service_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Change a service (never its ``service_type``); its connector is configured anew."""
        self._authorize(request)
        services = self._service_manager()
        revision = if_match(request)
        record = yield services.update(service_id, self._body(request), revision=revision)
        return tagged(request, services.view(record))

    @app.route("/api/services/<service_id>", methods=["DELETE"])
    @inlineCallbacks
    def delete_service(self, request: Request, service_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """Forget a service (409 while it is bound)."""
        self._authorize(request)
        record = yield self._service_manager().delete(service_id, revision=if_match(request))
        return ok(request, {"id": record["id"], "deleted": True})

    @app.route("/api/services/<service_id>/test", methods=["POST"])
    @inlineCallbacks
    def test_service(self, request: Request, service_id: str) -> Generator["Deferred[Any]", Any, bytes]:
        """200 with ``latency_ms``, or 502 with the backend's message (and its ``kind``)."""
        self._authorize(request)
        result = yield self._service_manager().test(service_id)
        return ok(request, result)

    # imports (admin/imports.py): bodies up to IMPORT_MAX_BODY

    def _importer(self) -> Importer:
        """One ``Importer`` per API, made on first use: its lock serialises imports."""
        importer = self.__dict__.get("_imports")
        if importer is None:
            importer = self._imports = Importer(
                self._manager, domains=self._domains, collections=self._collections, reactor=self._clock
            )
        return importer

    @app.route("/api/import/openapi", methods=["POST"])
    @inlineCallbacks
    def import_openapi(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """Endpoints from an OpenAPI document (admin/imports.py), bodies up to ``IMPORT_MAX_BODY``."""
        self._authorize(request)
        result = yield self._importer().openapi(self._body(request, IMPORT_MAX_BODY))
        return ok(request, result)

    @app.route("/api/import/bundle", methods=["POST"])
    @inlineCallbacks
    def import_bundle(self, request: Request) -> Generator["Deferred[Any]", Any, bytes]:
        """Endpoints from a zip bundle of a spec and Rust handlers (admin/imports.py)."""
        self._authorize(request)
        options = bundle_options(request)
        data = bundle_bytes(request, IMPORT_MAX_BODY)
        result = yield self._importer().bundle(data, options)
        return ok(request, result)


def tagged(request: IRequest, data: Record, status: int = 200) -> bytes:
    """
    The success envelope of one record, with ``ETag: "<revision>"`` when it
    has a revision: the ``If-Match`` that changes it only if nobody else did first.
    """
    revision = data.get("revision")
    if isinstance(revision, int) and not isinstance(revision, bool):
        request.setHeader(b"etag", f'"{revision}"'.encode("ascii"))
    return ok(request, data, status)


def if_match(request: IRequest) -> Optional[int]:
    """
    The revision an ``If-Match`` asks for (``"3"``, ``W/"3"`` or ``3``), or None
    without one or with ``*`` (any: the record must only exist, which every
    write checks anyway): a PUT or DELETE then wins whatever it finds. 400
    for anything else, a list of several ETags included.
    """
    raw = request.getHeader(b"if-match")
    if raw is None:
        return None
    text = (raw.decode("latin-1") if isinstance(raw, bytes) else raw).strip()
    if text == "*":
        return None
    match = _ETAG.match(text)
    if match is None:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise BadRequest(
            f'header If-Match must be one ETag as GET answers it (e.g. "3") or *, not {shown!r}',
            field="If-Match",
        )
    return int(match.group(1) or match.group(2))


def _client_address(request: Request) -> str:
    """The peer's IP (never a forwarded header: it is the client's to forge); one bucket for UNIX sockets."""
    return getattr(request.getClientAddress(), "host", None) or "local"


def _bearer_token(request: Request) -> str:
    """The key of ``Authorization: Bearer <key>``, trimmed; 401 when there is none."""
    header = request.getHeader(b"authorization") or ""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    parts = header.strip().split(None, 1)
    if not parts:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    if parts[0].lower() != "bearer":
        # Not echoed: a key sent without "Bearer " would be the "scheme".
        raise Unauthorized(
            "unsupported authorization scheme: use Bearer, 'Authorization: Bearer <key>'"
        )
    token = parts[1].strip() if len(parts) > 1 else ""
    if not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return token


def _flag(args: Mapping[str, str], name: str) -> bool:
    """A ``true``/``false`` query parameter (absent: false); 400 for anything else."""
    value = args.get(name, "false") or "false"
    if value not in ("true", "false"):
        raise BadRequest(f"query parameter '{name}' must be true or false")
    return value == "true"


def _query(request: Request) -> dict[str, str]:
    """The query's last value of each name, as text."""
    # Names too may be any bytes (?%ff=1): replaced, never a 500.
    return {k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace") for k, v in request.args.items()}


def _cross_site(request: Request) -> Optional[str]:
    """
    Why a browser sent this request from another site, or None: a
    ``Sec-Fetch-Site`` other than same-origin/none, or an ``Origin`` that is
    not this API's own. Clients that are not browsers send neither header.
    """
    fetch_site = request.getHeader(b"sec-fetch-site")
    if fetch_site is not None and fetch_site.strip().lower() not in (b"same-origin", b"none"):
        return "Sec-Fetch-Site: " + fetch_site.decode("latin-1")
    origin = request.getHeader(b"origin")
    if origin is not None:
        scheme = b"https" if request.isSecure() else b"http"
        own = scheme + b"://" + (request.getHeader(b"host") or b"").strip().lower()
        if origin.strip().lower() != own:
            return "Origin: " + origin.decode("latin-1")
    return None


def _paged(args: Mapping[str, str], records: Sequence[Any], view: Callable[[Any], Any]) -> dict[str, Any]:
    """One page of ``records`` as ``{items, total, page, limit, pages}``."""
    page = _positive_int(args, "page", 1)
    limit = _positive_int(args, "limit", 100)
    total = len(records)
    records = records[(page - 1) * limit : page * limit]
    return {
        "items": [view(r) for r in records],
        "total": total,
        "page": page,
        "limit": limit,
        "pages": max(1, math.ceil(total / limit)),
    }


def _positive_int(args: Mapping[str, str], name: str, default: int) -> int:
    """A query parameter that must be a whole number >= 1 (absent: ``default``); 400 otherwise."""
    if not args.get(name):
        return default
    try:
        value = int(args[name])
    except ValueError:
        value = 0
    if value < 1:
        raise BadRequest(f"query parameter '{name}' must be a positive integer")
    return value


class _Utf8Paths(Resource):
    """
    Klein answers a path that is not UTF-8 once percent-decoded (``/api/x/%ff``)
    with a bare HTML 400 before any route runs; answer it in the API's envelope.
    ``/``, ``/admin`` and ``/admin/...`` go to the Admin UI (admin/ui.py),
    ``/metrics`` to the Prometheus page (admin/metrics_page.py).
    """

    isLeaf = True

    def __init__(
        self, api_resource: IResource, ui: Optional[IResource] = None, metrics: Optional[IResource] = None
    ) -> None:
        """``api_resource`` is Klein's, ``ui`` the Admin UI's (None: no UI), ``metrics`` that of ``/metrics``."""
        Resource.__init__(self)
        self._api = api_resource
        self._ui = ui
        self._metrics = metrics

    def render(self, request: Request) -> bytes | int:
        """The API's or the UI's answer, or the envelope's 400 for a path that is not UTF-8."""
        try:
            unquote_to_bytes(request.path).decode("utf-8")
        except UnicodeDecodeError:
            return _json(request, 400, {"ok": False, "error": "the request path is not UTF-8"})
        if self._metrics is not None and request.path == b"/metrics":
            answer: bytes | int = self._metrics.render(request)
        elif self._ui is not None and is_ui_path(request.path):
            answer = self._ui.render(request)
        else:
            # ``NOT_DONE_YET`` (an int) from Klein when a route answers later.
            answer = self._api.render(request)
        return answer
