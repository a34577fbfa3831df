"""
The service broker: connectors by service id, each endpoint's bindings, and
the ``call_handler`` the process plane plugs into its workers.

The public face (the manager and the gateway's wiring code against it)::

    class ServiceError(Exception):    # .kind, .message  (docs/ipc.md kinds)

    class ServiceRegistry:
        __init__(data_dir, *, call_timeout=5.0, reactor=None)
        configure(service) -> None        # {id, name, service_type, config}
        remove(service_id) -> Deferred[None]
        bind(endpoint_id, pool_id, service_id) -> None
        unbind(endpoint_id, pool_id) -> None
        bindings(endpoint_id) -> dict[str, str]     # pool_id -> service_id
        call_handler(endpoint_id) -> Callable[[dict], Deferred[dict]]
        test(service) -> Deferred[dict]   # {"latency_ms": float}
        close() -> Deferred[None]

``configure`` validates the config (``edgegw_tx.services.config.validate_config``,
raising ``ConfigError``) and creates the service's connector, replacing (and
closing in the background) the one it had unless the normalised config is the
same.  Connectors connect on their first call.  ``remove`` closes the
connector; bindings naming the service stay (a call through them answers
``ServiceUnavailable`` until the service is configured again), so the caller
decides whether deleting a bound service is allowed.

``call_handler(endpoint_id)`` returns ``handle(frame) -> Deferred[dict]`` for
``WorkerPool(call_handler=...)``.  For each ``call`` frame, at call time:

1. ``service``, ``action`` and ``args`` are checked: an unknown service or action,
   or ``args`` that is not an object → ``BadRequest``;
2. ``pool`` is looked up in the endpoint's bindings now, so binding changes
   apply to running workers: none → ``ServiceUnavailable`` with the message
   ``no service bound as 'x'``;
3. the bound service must be of the kind asked for (``db`` for sqlite and
   postgres, ``redis``, ``storage``), else ``BadRequest``;
4. the connector runs the action; the call is cancelled after ``call_timeout``
   seconds → ``ServiceUnavailable`` (a backend that is slow or unreachable).
   The calls in flight share one timer (``Deadlines``), not one each.

It fires with ``{"ok": True, "data": ...}`` or ``{"ok": False, "error":
{"kind", "message"}}`` and never fails: an unexpected exception is logged and
answered ``Internal``.  Calls are independent Deferreds, so one slow call
never holds up another (they only queue behind each other where a backend
serialises them: a SQLite service has one connection).

``test(service)`` validates the config (failing with ``ConfigError``), opens a
fresh connection with it (a one-connection pool, a non-reconnecting Redis
connection, the storage folder or bucket), runs ``SELECT 1`` / ``PING`` / a probe
object put, get and delete within ``call_timeout``, closes it, and fires with
``{"latency_ms": float}``, the duration of that ping without the connecting;
it fails with ``ServiceError`` carrying the backend's message.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    TimeoutError,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..observability.metrics import service_call_timings
from .config import validate_config
from .deadlines import Deadlines
from .errors import (
    BAD_REQUEST,
    INTERNAL,
    SERVICE_UNAVAILABLE,
    ServiceError,
)
from .postgres import PostgresConnector
from .redis import RedisConnector
from .s3 import S3StorageConnector
from .sqlite import SQLiteConnector
from .storage import StorageConnector

__all__ = ["KIND_OF", "ServiceError", "ServiceRegistry"]

KIND_OF = {"sqlite": "db", "postgres": "db", "redis": "redis", "storage": "storage"}
"""The ``service`` of a call frame that reaches a service of each type."""

ACTIONS = {
    "db": ("execute", "query"),
    "redis": RedisConnector.actions,
    "storage": StorageConnector.actions,
}

_log = Logger(namespace="edgegw.services")


def storage_connector(config: dict[str, Any], **kwargs: Any) -> Any:
    """The connector of a storage service: its ``backend``'s (a folder, or an S3 bucket)."""
    if config.get("backend") == "s3":
        return S3StorageConnector(config, **kwargs)
    return StorageConnector(config, **kwargs)


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"kind": kind, "message": message}}


class _Service:
    """A configured service: its record and its connector."""

    def __init__(self, record: dict[str, Any], config: dict[str, Any], connector: Any):
        self.id = record["id"]
        self.name = record.get("name") or str(record["id"])
        self.service_type = record["service_type"]
        self.config = config
        self.connector = connector


class _Call:
    """One call in flight: what its answer is counted under, and its deadline's token."""

    __slots__ = ("frame", "kind", "service", "started", "token")

    def __init__(self, service: _Service, kind: str, frame: dict[str, Any], started: float):
        self.service = service
        self.kind = kind
        self.frame = frame
        self.started = started
        self.token = 0


class ServiceRegistry:
    """Connectors by service id, bindings by endpoint, and the call broker."""

    connector_types: dict[str, Callable[..., Any]] = {
        "sqlite": SQLiteConnector,
        "postgres": PostgresConnector,
        "redis": RedisConnector,
        "storage": storage_connector,
    }
    """Connector class (or factory) by service type; tests replace it on an instance."""

    def __init__(self, data_dir: str, *, call_timeout: float = 5.0, reactor: Any = None):
        if reactor is None:
            from twisted.internet import reactor
        self.data_dir = os.path.abspath(data_dir)
        self.call_timeout = call_timeout
        self._reactor = reactor
        self._services: dict[Any, _Service] = {}
        self._bindings: dict[Any, dict[str, Any]] = {}
        self._closing: set[Deferred[Any]] = set()
        #: Calls by (service name, kind, outcome), timed by (service name, kind): edgegw_service_calls_total.
        self.calls = service_call_timings()
        #: The calls not answered yet, cancelled at their deadline.
        self._in_flight = Deadlines(reactor)

    # -- services ---------------------------------------------------------

    def _connector(self, service_type: str, config: dict[str, Any], name: str, **extra: Any) -> Any:
        factory = self.connector_types[service_type]
        kwargs: dict[str, Any] = {
            "name": name,
            "call_timeout": self.call_timeout,
            "reactor": self._reactor,
        }
        if service_type in ("sqlite", "storage"):
            kwargs["data_dir"] = self.data_dir
        kwargs.update(extra)
        return factory(config, **kwargs)

    def configure(self, service: dict[str, Any]) -> None:
        """
        Create or replace the connector of ``service`` (``{id, name,
        service_type, config}``).

        :raises ConfigError: the config is invalid; nothing changes.
        """
        service_type = service.get("service_type")
        name = service.get("name") or str(service["id"])
        config = validate_config(service_type, service.get("config") or {}, name=name)
        assert isinstance(service_type, str), "validate_config checked it"
        old = self._services.get(service["id"])
        if old is not None and old.service_type == service_type and old.config == config:
            old.name = name
            return
        connector = self._connector(service_type, config, name)
        self._services[service["id"]] = _Service(service, config, connector)
        if old is not None:
            self._close_in_background(old.connector)

    def redis(self, name: str) -> Any:
        """
        The connector of the Redis service named ``name``, or None: what a
        cluster-scope rate limit counts in (``PolicyContext.redis``).
        """
        for service in self._services.values():
            if service.name == name and service.service_type == "redis":
                return service.connector
        return None

    def remove(self, service_id: Any) -> Deferred[None]:
        """Forget the service and close its connector."""
        service = self._services.pop(service_id, None)
        if service is None:
            return succeed(None)
        return self._close_in_background(service.connector)

    def service_ids(self) -> list[Any]:
        """The ids of the configured services."""
        return list(self._services)

    def _close_in_background(self, connector: Any) -> Deferred[None]:
        d = maybeDeferred(connector.close)
        self._closing.add(d)

        def done(result: Any) -> None:
            self._closing.discard(d)
            if isinstance(result, Failure):
                _log.failure("closing a {type} connector failed", result,
                             type=connector.service_type)

        result: Deferred[None] = Deferred()
        d.addBoth(done)
        d.addBoth(lambda _: result.callback(None))
        return result

    # -- bindings ---------------------------------------------------------

    def bind(self, endpoint_id: Any, pool_id: str, service_id: Any) -> None:
        """Calls of ``endpoint_id``'s workers to ``pool_id`` go to ``service_id``."""
        self._bindings.setdefault(endpoint_id, {})[pool_id] = service_id

    def unbind(self, endpoint_id: Any, pool_id: str) -> None:
        """Remove one binding (no error when there is none)."""
        pools = self._bindings.get(endpoint_id)
        if pools is not None:
            pools.pop(pool_id, None)
            if not pools:
                del self._bindings[endpoint_id]

    def bindings(self, endpoint_id: Any) -> dict[str, Any]:
        """A copy of ``endpoint_id``'s bindings, ``pool_id -> service_id``."""
        return dict(self._bindings.get(endpoint_id, {}))

    # -- calls ------------------------------------------------------------

    def call_handler(self, endpoint_id: Any) -> Callable[[dict[str, Any]], Deferred[dict[str, Any]]]:
        """The ``call_handler`` for the workers of ``endpoint_id``."""
        return partial(self.call, endpoint_id)  # no Python frame of its own per call

    def call(self, endpoint_id: Any, frame: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Answer one ``call`` frame of ``endpoint_id``'s workers (never fails)."""
        if not isinstance(frame, dict):
            answer = _error(BAD_REQUEST, "a call frame must be an object")
            self.calls.observe(("", "", BAD_REQUEST), 0.0)
            return succeed(answer)
        started = self._reactor.seconds()
        try:
            service, kind = self._route(endpoint_id, frame)
            d: Deferred[Any] = service.connector.call(frame["action"], frame.get("args") or {})
        except Exception:
            answer = self._failed(Failure(), frame)
            return succeed(self._count(answer, self._call_labels(endpoint_id, frame), started))
        call = _Call(service, kind, frame, started)
        call.token = self._in_flight.add(d, started + self.call_timeout)
        answered: Deferred[dict[str, Any]] = d.addCallbacks(
            self._answered, self._answered_failure, callbackArgs=(call,), errbackArgs=(call,)
        )
        return answered

    def _answered(self, data: Any, call: _Call) -> dict[str, Any]:
        """The success path: the answer, counted and timed, its deadline dropped."""
        self._in_flight.discard(call.token)
        self.calls.observe((call.service.name, call.kind, "ok"), self._reactor.seconds() - call.started)
        return {"ok": True, "data": data}

    def _answered_failure(self, failure: Failure, call: _Call) -> dict[str, Any]:
        self._in_flight.discard(call.token)
        if failure.check(TimeoutError, CancelledError):
            failure = Failure(self._late(call.service, "did not answer"))
        return self._count(
            self._failed(failure, call.frame), (call.service.name, call.kind), call.started
        )

    def _call_labels(self, endpoint_id: Any, frame: dict[str, Any]) -> tuple[str, str]:
        """(service name, kind) of a call, "" where the call named none that exists (bounded labels)."""
        kind = frame.get("service")
        pool = frame.get("pool")
        service_id = self._bindings.get(endpoint_id, {}).get(pool) if isinstance(pool, str) else None
        service = self._services.get(service_id) if service_id is not None else None
        return (
            service.name if service is not None else "",
            kind if isinstance(kind, str) and kind in ACTIONS else "",
        )

    def _count(self, answer: dict[str, Any], labels: tuple[str, str], started: float) -> dict[str, Any]:
        """Count one answered call: ``ok`` or its error kind (docs/ipc.md)."""
        outcome = "ok" if answer.get("ok") else str(answer.get("error", {}).get("kind", INTERNAL))
        self.calls.observe((*labels, outcome), self._reactor.seconds() - started)
        return answer

    def _failed(self, failure: Failure, frame: dict[str, Any]) -> dict[str, Any]:
        error = failure.value
        if isinstance(error, ServiceError):
            return {"ok": False, "error": error.as_error()}
        _log.failure(
            "service call {service}/{pool}/{action} failed",
            failure,
            service=frame.get("service"),
            pool=frame.get("pool"),
            action=frame.get("action"),
        )
        return _error(INTERNAL, f"the gateway failed to run the call: {failure.getErrorMessage()}")

    def _route(self, endpoint_id: Any, frame: dict[str, Any]) -> tuple[_Service, str]:
        """The service a call goes to, and its kind; ``ServiceError`` when it goes nowhere."""
        kind = frame.get("service")
        action = frame.get("action")
        pool = frame.get("pool")
        if kind not in ACTIONS:
            expected = ", ".join(sorted(ACTIONS))
            raise ServiceError(BAD_REQUEST, f"unknown service {kind!r} (expected one of {expected})")
        assert isinstance(kind, str), "one of ACTIONS"
        if action not in ACTIONS[kind]:
            expected = ", ".join(ACTIONS[kind])
            raise ServiceError(
                BAD_REQUEST, f"unknown {kind} action {action!r} (expected one of {expected})"
            )
        args = frame.get("args")
        if args is not None and not isinstance(args, dict):
            raise ServiceError(BAD_REQUEST, f"{kind} {action}: args must be an object")
        if not isinstance(pool, str):
            raise ServiceError(BAD_REQUEST, "the call has no pool name (a string)")
        service_id = self._bindings.get(endpoint_id, {}).get(pool)
        if service_id is None:
            raise ServiceError(SERVICE_UNAVAILABLE, f"no service bound as {pool!r}")
        service = self._services.get(service_id)
        if service is None:
            raise ServiceError(
                SERVICE_UNAVAILABLE,
                f"the service bound as {pool!r} is not configured (deleted?)",
            )
        if KIND_OF[service.service_type] != kind:
            raise ServiceError(
                BAD_REQUEST,
                f"{pool!r} is a {service.service_type} service, called as {kind!r}"
                f" (use {KIND_OF[service.service_type]!r})",
            )
        return service, kind

    def _late(self, service: _Service, what: str) -> ServiceError:
        """The ``ServiceUnavailable`` of a call past ``call_timeout``, with the connector's last connection error."""
        message = f"the {service.service_type} service {service.name!r} {what} within {self.call_timeout:g}s"
        reason = getattr(service.connector, "unavailable_reason", None)
        detail = reason() if reason is not None else None
        if detail:
            message += f" ({detail})"
        return ServiceError(SERVICE_UNAVAILABLE, message)

    def _deadline(self, d: Deferred[Any], service: _Service, what: str) -> Deferred[Any]:
        def timed_out(failure: Failure) -> Failure:
            if failure.check(TimeoutError, CancelledError):
                return Failure(self._late(service, what))
            return failure

        d.addTimeout(self.call_timeout, self._reactor)
        return d.addErrback(timed_out)

    # -- test and shutdown ------------------------------------------------

    def test(self, service: dict[str, Any]) -> Deferred[dict[str, float]]:
        """
        Connect with ``service``'s config, ping, disconnect.

        :return: fires with ``{"latency_ms": float}``; fails with ``ServiceError``
            (the backend's message) or ``ConfigError``.
        """
        try:
            service_type = service.get("service_type")
            name = service.get("name") or str(service.get("id", "test"))
            config = validate_config(service_type, service.get("config") or {}, name=name)
            assert isinstance(service_type, str), "validate_config checked it"
            extra: dict[str, Any] = {}
            if service_type == "postgres":
                config = dict(config, pool_size=1)
            if service_type == "redis":
                extra["probe"] = True
            connector = self._connector(service_type, config, name, **extra)
        except Exception:
            return fail()
        record = _Service(
            {"id": service.get("id"), "name": name, "service_type": service_type},
            config,
            connector,
        )
        try:
            d = connector.ping()
        except Exception:
            d = fail()
        d = self._deadline(d, record, "did not answer the test")
        d.addCallback(lambda ms: {"latency_ms": round(float(ms), 3)})
        result: Deferred[dict[str, float]] = Deferred()

        def closed(_: Any, outcome: Any) -> None:
            result.callback(outcome)

        def finish(outcome: Any) -> None:
            if isinstance(outcome, Failure) and not outcome.check(ServiceError):
                _log.failure("testing a {type} service failed", outcome, type=service_type)
                outcome = Failure(ServiceError(INTERNAL, outcome.getErrorMessage()))
            self._close_in_background(connector).addCallback(closed, outcome)

        d.addBoth(finish)
        return result

    def close(self) -> Deferred[None]:
        """Close every connector (gateway shutdown); fires when all are closed."""
        services, self._services = self._services, {}
        self._in_flight.stop()
        for service in services.values():
            self._close_in_background(service.connector)
        closing = list(self._closing)
        return DeferredList(closing, consumeErrors=True).addCallback(lambda _: None)
