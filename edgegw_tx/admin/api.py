"""
The management API: a Klein app over the endpoint manager.

Every answer is the envelope of spec/API.md, ``{"ok": true, "data": ...}`` or
``{"ok": false, "error": "..."}`` with a matching status; a bug answers 500
with a generic message and the traceback goes to the log only.
"""

import json
import math

from klein import Klein
from twisted.internet.defer import inlineCallbacks, returnValue
from twisted.logger import Logger
from werkzeug.exceptions import MethodNotAllowed as RoutingMethodNotAllowed
from werkzeug.exceptions import NotFound as RoutingNotFound

from edgegw_tx import __version__
from edgegw_tx.admin.errors import ApiError, BadRequest, Forbidden, NotFound, Unauthorized

MAX_BODY = 8 * 1024 * 1024
_READ_METHODS = (b"GET", b"HEAD")


def _json(request, status, document):
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(document).encode("utf-8")


def ok(request, data, status=200):
    return _json(request, status, {"ok": True, "data": data})


class AdminAPI:
    """The ``/api/*`` routes; state lives on the instance, not in globals."""

    app = Klein()
    log = Logger()

    def __init__(self, manager, keys, clock, services=None):
        """``services`` is the ``ServiceManager``; without one the service routes answer 404."""
        self._manager = manager
        self._services = services
        self._keys = keys
        self._clock = clock
        self._started = clock.seconds()

    def resource(self):
        return self.app.resource()

    # plumbing

    def _authorize(self, request):
        header = request.getHeader(b"authorization") or ""
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        record = self._keys.authenticate(token.strip())
        if record is None:
            raise Unauthorized("invalid API key")
        if record["scope"] != "admin" and request.method not in _READ_METHODS:
            raise Forbidden(f"the key '{record['name']}' has scope '{record['scope']}' and may only read")
        return record

    def _service_manager(self):
        if self._services is None:
            raise NotFound("services are not available in this gateway")
        return self._services

    def _body(self, request):
        data = request.content.read(MAX_BODY + 1)
        if len(data) > MAX_BODY:
            raise BadRequest(f"the request body is larger than {MAX_BODY} bytes")
        if not data.strip():
            raise BadRequest("the request body is empty; send a JSON object")
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"the request body is not valid JSON: {e}")

    @app.handle_errors(ApiError)
    def _api_error(self, request, failure):
        error = failure.value
        document = {"ok": False, "error": error.message}
        document.update(error.extra)
        return _json(request, error.status, document)

    @app.handle_errors(RoutingNotFound)
    def _not_found(self, request, failure):
        path = request.path.decode("utf-8", "replace")
        return _json(request, 404, {"ok": False, "error": f"no such API route: {path}"})

    @app.handle_errors(RoutingMethodNotAllowed)
    def _method_not_allowed(self, request, failure):
        allowed = sorted(failure.value.valid_methods or ())
        request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        return _json(request, 405, {"ok": False, "error": f"{method} is not allowed on {path}"})

    @app.handle_errors(Exception)
    def _bug(self, request, failure):
        self.log.failure("Unhandled error in {path}", failure, path=request.path)
        return _json(request, 500, {"ok": False, "error": "internal error; see the gateway log"})

    # routes

    @app.route("/api/health", methods=["GET"])
    def health(self, request):
        return ok(request, {"status": "healthy", "version": __version__})

    @app.route("/api/endpoints", methods=["GET"])
    @inlineCallbacks
    def list_endpoints(self, request):
        self._authorize(request)
        records = yield self._manager.list()
        args = _query(request)
        for field in ("domain", "collection_id"):
            if args.get(field):
                records = [r for r in records if r[field] == args[field]]
        if args.get("enabled"):
            if args["enabled"] not in ("true", "false"):
                raise BadRequest("query parameter 'enabled' must be true or false")
            wanted = args["enabled"] == "true"
            records = [r for r in records if r["enabled"] == wanted]
        returnValue(ok(request, _paged(args, records, self._manager.view)))

    @app.route("/api/endpoints", methods=["POST"])
    @inlineCallbacks
    def create_endpoint(self, request):
        self._authorize(request)
        record = yield self._manager.create(self._body(request))
        returnValue(ok(request, self._manager.view(record), status=201))

    @app.route("/api/endpoints/<endpoint_id>", methods=["GET"])
    @inlineCallbacks
    def get_endpoint(self, request, endpoint_id):
        self._authorize(request)
        record = yield self._manager.get(endpoint_id)
        returnValue(ok(request, self._manager.view(record)))

    @app.route("/api/endpoints/<endpoint_id>", methods=["PUT"])
    @inlineCallbacks
    def update_endpoint(self, request, endpoint_id):
        self._authorize(request)
        record = yield self._manager.update(endpoint_id, self._body(request))
        returnValue(ok(request, self._manager.view(record)))

    @app.route("/api/endpoints/<endpoint_id>", methods=["DELETE"])
    @inlineCallbacks
    def delete_endpoint(self, request, endpoint_id):
        self._authorize(request)
        record = yield self._manager.delete(endpoint_id)
        returnValue(ok(request, {"id": record["id"], "deleted": True}))

    @app.route("/api/endpoints/<endpoint_id>/compile", methods=["POST"])
    @inlineCallbacks
    def compile_endpoint(self, request, endpoint_id):
        self._authorize(request)
        record, build = yield self._manager.compile(endpoint_id)
        data = self._manager.view(record)
        data["build"] = {
            "digest": build.digest,
            "cached": build.cached,
            "seconds": round(build.seconds, 3),
            "dependencies": list(build.dependencies),
        }
        returnValue(ok(request, data))

    @app.route("/api/endpoints/<endpoint_id>/<any(start, stop, restart):action>", methods=["POST"])
    @inlineCallbacks
    def endpoint_lifecycle(self, request, endpoint_id, action):
        """start, stop and restart: each answers the record with its status and pids."""
        self._authorize(request)
        change = {
            "start": self._manager.start,
            "stop": self._manager.stop,
            "restart": self._manager.restart,
        }[action]
        record = yield change(endpoint_id)
        returnValue(ok(request, self._manager.view(record)))

    @app.route("/api/endpoints/<endpoint_id>/logs", methods=["GET"])
    @inlineCallbacks
    def endpoint_logs(self, request, endpoint_id):
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
        returnValue(ok(request, {"lines": self._manager.logs(endpoint_id, since)}))

    # bindings: the names under which an endpoint's handlers reach services

    @app.route("/api/endpoints/<endpoint_id>/services", methods=["GET"])
    @inlineCallbacks
    def endpoint_services(self, request, endpoint_id):
        self._authorize(request)
        bindings = yield self._service_manager().bindings(endpoint_id)
        returnValue(ok(request, bindings))

    @app.route("/api/endpoints/<endpoint_id>/services", methods=["POST"])
    @inlineCallbacks
    def bind_service(self, request, endpoint_id):
        """201 for a new name, 200 when the name was bound and now points elsewhere."""
        self._authorize(request)
        services = self._service_manager()
        binding, replaced = yield services.bind(endpoint_id, self._body(request))
        data = dict(binding, replaced=replaced)
        returnValue(ok(request, data, status=200 if replaced is not None else 201))

    @app.route("/api/endpoints/<endpoint_id>/services/<pool_id>", methods=["DELETE"])
    @inlineCallbacks
    def unbind_service(self, request, endpoint_id, pool_id):
        """By the binding's name, not the service id: one service may be bound under two names."""
        self._authorize(request)
        binding = yield self._service_manager().unbind(endpoint_id, pool_id)
        returnValue(ok(request, dict(binding, deleted=True)))

    # services

    @app.route("/api/services", methods=["GET"])
    @inlineCallbacks
    def list_services(self, request):
        self._authorize(request)
        services = self._service_manager()
        records = yield services.list()
        args = _query(request)
        if args.get("service_type"):
            records = [r for r in records if r["service_type"] == args["service_type"]]
        returnValue(ok(request, _paged(args, records, services.view)))

    @app.route("/api/services", methods=["POST"])
    @inlineCallbacks
    def create_service(self, request):
        self._authorize(request)
        services = self._service_manager()
        record = yield services.create(self._body(request))
        returnValue(ok(request, services.view(record), status=201))

    @app.route("/api/services/<service_id>", methods=["GET"])
    @inlineCallbacks
    def get_service(self, request, service_id):
        self._authorize(request)
        services = self._service_manager()
        record = yield services.get(service_id)
        returnValue(ok(request, services.view(record)))

    @app.route("/api/services/<service_id>", methods=["PUT"])
    @inlineCallbacks
    def update_service(self, request, service_id):
        self._authorize(request)
        services = self._service_manager()
        record = yield services.update(service_id, self._body(request))
        returnValue(ok(request, services.view(record)))

    @app.route("/api/services/<service_id>", methods=["DELETE"])
    @inlineCallbacks
    def delete_service(self, request, service_id):
        self._authorize(request)
        record = yield self._service_manager().delete(service_id)
        returnValue(ok(request, {"id": record["id"], "deleted": True}))

    @app.route("/api/services/<service_id>/test", methods=["POST"])
    @inlineCallbacks
    def test_service(self, request, service_id):
        """200 with ``latency_ms``, or 502 with the backend's message (and its ``kind``)."""
        self._authorize(request)
        result = yield self._service_manager().test(service_id)
        returnValue(ok(request, result))


def _query(request):
    return {k.decode(): v[-1].decode("utf-8", "replace") for k, v in request.args.items()}


def _paged(args, records, view):
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


def _positive_int(args, name, default):
    if not args.get(name):
        return default
    try:
        value = int(args[name])
    except ValueError:
        value = 0
    if value < 1:
        raise BadRequest(f"query parameter '{name}' must be a positive integer")
    return value
