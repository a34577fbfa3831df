"""
The Redis connector, on txredisapi.

A lazy txredisapi pool (its ``RedisFactory``, with ``isLazy=True``) of
``pool_size`` connections (default 10) is created on the first call; commands
are pipelined over those connections (txredisapi's "peek" mode), so many
calls are in flight at once.  Values are strings: txredisapi's number
conversion is off (``GET`` of ``"12"`` is ``"12"``), bulk strings are decoded as
UTF-8 (invalid bytes become U+FFFD).

Actions (docs/ipc.md): ``get``, ``set``, ``setex``, ``del``, ``incr``, ``expire``,
``exists`` and ``command`` (any command as a list of strings; the reply as JSON:
bulk strings as strings, integers as numbers, arrays as lists, nil as null).
``command`` refuses what would block or change the state of a connection other
calls share: blocking pops, ``WAIT``, ``XREAD``/``XREADGROUP`` with ``BLOCK``,
pub/sub, ``MONITOR``, transactions (``MULTI``, ``WATCH``, ...), ``SELECT``,
``AUTH``, ``HELLO``, ``RESET``, ``QUIT``, ``CLIENT REPLY``/``TRACKING``/``CACHING``,
replication commands.

Failures: an error reply → ``RedisError`` with Redis's message; a connection
lost under a command → ``ServiceUnavailable``.  While Redis is unreachable a
call waits for a connection and the broker's timeout answers
``ServiceUnavailable`` (the connector remembers the last connection error for
that message).  txredisapi keeps reconnecting, with a delay growing from 0.1 s
to ``RedisConnector.retry_max_delay`` (2 s), so calls succeed again soon after
Redis is back, without touching the gateway.  If the server refuses the
credentials or the database, txredisapi stops for good; the connector then
starts a fresh pool on a later call (at most every ``retry_max_delay``).

The reactor: txredisapi schedules its timers and reconnections on the global
reactor (it imports it at module level and has no parameter for another).
The connector passes its own reactor to the connection endpoint, so the two
must be the same real reactor; the broker's per-call timeout uses the
injected one.  ``use_tls`` verifies the server's certificate against the
system's roots for ``host`` (``optionsForClientTLS``).
"""

from __future__ import annotations

import time
from typing import Any

import txredisapi
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .args import Args
from .errors import (
    REDIS_ERROR,
    SERVICE_UNAVAILABLE,
    ServiceError,
    bad_request,
    one_line,
)

__all__ = ["RedisConnector", "convert_reply"]

ACTIONS = ("command", "del", "exists", "expire", "get", "incr", "set", "setex")

REFUSED_COMMANDS = frozenset(
    {
        # block the connection
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN",
        "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF",
        # change what the shared connection is
        "SUBSCRIBE", "UNSUBSCRIBE", "PSUBSCRIBE", "PUNSUBSCRIBE", "SSUBSCRIBE",
        "SUNSUBSCRIBE", "MONITOR", "MULTI", "EXEC", "DISCARD", "WATCH",
        "UNWATCH", "SELECT", "AUTH", "HELLO", "RESET", "QUIT",
        # replication
        "SYNC", "PSYNC", "REPLCONF",
    }
)  # fmt: skip

_log = Logger(namespace="edgegw.services.redis")

REFUSED_CLIENT = frozenset({"REPLY", "TRACKING", "CACHING"})


def _text(value: bytes | bytearray) -> str:
    return value.decode("utf-8", "replace")


def convert_reply(reply: Any) -> Any:
    """A txredisapi reply as a JSON value."""
    if reply is None or isinstance(reply, (str, bool, int)):
        return reply
    if isinstance(reply, (bytes, bytearray)):
        return _text(bytes(reply))
    if isinstance(reply, float):
        return reply if reply == reply and abs(reply) != float("inf") else str(reply)
    if isinstance(reply, (list, tuple)):
        return [convert_reply(item) for item in reply]
    if isinstance(reply, Exception):
        return str(reply)
    return str(reply)


def _string(value: Any) -> Any:
    return _text(value) if isinstance(value, (bytes, bytearray)) else value


def _check_command(a: Args, argv: list[str]) -> None:
    name = argv[0].upper()
    refused = name in REFUSED_COMMANDS
    if name == "CLIENT" and len(argv) > 1 and argv[1].upper() in REFUSED_CLIENT:
        refused, name = True, f"CLIENT {argv[1].upper()}"
    if name in ("XREAD", "XREADGROUP") and any(x.upper() == "BLOCK" for x in argv[1:]):
        refused, name = True, f"{name} BLOCK"
    if refused:
        raise a.error(
            f"{name} is not allowed through the gateway (it would block or change"
            " the state of a connection other calls share)"
        )


@implementer(IStreamClientEndpoint)
class _WatchedEndpoint:
    """Remembers the last connection failure for the unavailable message."""

    def __init__(self, endpoint: Any, connector: RedisConnector):
        self._endpoint = endpoint
        self._connector = connector

    def connect(self, factory: Any) -> Deferred[Any]:
        def connected(protocol: Any) -> Any:
            self._connector.last_error = None
            return protocol

        def failed(failure: Failure) -> Failure:
            self._connector.last_error = one_line(failure.getErrorMessage())
            return failure

        connecting: Deferred[Any] = self._endpoint.connect(factory).addCallbacks(connected, failed)
        return connecting


class _Factory(txredisapi.RedisFactory):  # type: ignore[misc]  # txredisapi is unannotated
    """txredisapi's factory with the gateway's reconnection delays."""

    initialDelay = 0.1
    maxDelay = 2.0
    connector: RedisConnector | None = None

    def connectionError(self, why: str) -> None:
        if self.connector is not None:
            self.connector.last_error = why.removeprefix("Redis error: ")
        super().connectionError(why)


class RedisConnector:
    """``redis`` calls on one Redis server (or a fresh probe connection)."""

    kind = "redis"
    service_type = "redis"
    actions = ACTIONS
    retry_max_delay = 2.0

    def __init__(
        self,
        config: dict[str, Any],
        *,
        name: str,
        call_timeout: float,
        reactor: Any,
        probe: bool = False,
    ):
        """
        :param probe: one connection, no reconnection: for ``ping`` by
            ``ServiceRegistry.test``, so a failure is reported at once.
        """
        self.config = config
        self.name = name
        self.call_timeout = call_timeout
        self._reactor = reactor
        self._probe = probe
        self._factory: _Factory | None = None
        self._ready: Deferred[Any] | None = None
        self._created_at = 0.0
        self._closing: set[Deferred[Any]] = set()
        self._closed = False
        self.last_error: str | None = None

    # -- the connector interface --------------------------------------------

    def call(self, action: str, args: object) -> Deferred[Any]:
        a = Args(f"redis {action}", args)
        if action == "get":
            return self._command(["GET", a.string("key")], _string)
        if action == "set":
            key, value = a.string("key"), a.string("value")
            return self._command(["SET", key, value], lambda r: True)
        if action == "setex":
            key = a.string("key")
            seconds = a.integer("seconds", minimum=1)
            value = a.string("value")
            return self._command(["SETEX", key, str(seconds), value], lambda r: True)
        if action == "del":
            keys = a.strings("keys", nonempty=True)
            return self._command(["DEL", *keys], int)
        if action == "incr":
            return self._command(["INCR", a.string("key")], int)
        if action == "expire":
            key, seconds = a.string("key"), a.integer("seconds")
            return self._command(["EXPIRE", key, str(seconds)], lambda r: r == 1)
        if action == "exists":
            return self._command(["EXISTS", a.string("key")], lambda r: r > 0)
        if action == "command":
            argv = a.strings("args", nonempty=True)
            _check_command(a, argv)
            return self._command(argv, convert_reply)
        raise bad_request(
            f"unknown redis action {action!r} (expected one of {', '.join(ACTIONS)})"
        )

    def ping(self) -> Deferred[float]:
        """``PING``; fires with its round trip in milliseconds (connecting excluded)."""
        ready = self._connect()

        def ping(handler: Any) -> Deferred[float]:
            start = time.perf_counter()
            d: Deferred[Any] = handler.execute_command("PING")
            return d.addCallback(lambda _: (time.perf_counter() - start) * 1000.0)

        return ready.addCallback(ping).addErrback(self._translate)

    def unavailable_reason(self) -> str | None:
        """The last connection error, for the broker's timeout message."""
        return self.last_error

    def close(self) -> Deferred[None]:
        """Stop reconnecting and close every connection."""
        self._closed = True
        self._drop()
        d: Deferred[None] = Deferred()
        gathered = gatherResults(list(self._closing), consumeErrors=True)

        def settle(_: Any) -> None:
            # txredisapi finishes some bookkeeping one reactor turn later
            self._reactor.callLater(0, d.callback, None)

        gathered.addBoth(settle)
        return d

    # -- internals ----------------------------------------------------------

    def _endpoint(self) -> Any:
        host, port = self.config["host"], self.config["port"]
        endpoint: Any = HostnameEndpoint(
            self._reactor, host, port, timeout=max(1, int(round(self.call_timeout)))
        )
        if self.config["use_tls"]:
            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
        return _WatchedEndpoint(endpoint, self)

    def _start(self) -> None:
        config = self.config
        factory = _Factory(
            f"{config['host']}:{config['port']}",
            config["database"] or None,
            1 if self._probe else config["pool_size"],
            isLazy=not self._probe,
            handler=txredisapi.ConnectionHandler,
            charset="utf-8",
            password=config["password"],
            convertNumbers=False,
            username=config["username"],
        )
        factory.connector = self
        factory.maxDelay = self.retry_max_delay
        factory.reconnect = not self._probe
        self._factory = factory
        self._created_at = time.monotonic()
        if self._probe:
            self._ready = factory.deferred
        else:
            # a lazy pool reports through calls; nobody waits on this one
            factory.deferred.addErrback(lambda failure: None)
        factory.startConnecting(self._endpoint())

    def _drop(self) -> None:
        """Forget the current pool, closing it in the background."""
        factory, self._factory = self._factory, None
        if factory is not None:
            d = factory.disconnect()
            self._closing.add(d)
            d.addBoth(self._closed_one, d)

    def _closed_one(self, result: Any, d: Deferred[Any]) -> None:
        self._closing.discard(d)
        if isinstance(result, Failure):
            _log.failure("closing a redis pool failed", result)

    def _connect(self) -> Deferred[Any]:
        """Fires with the txredisapi handler (once connected, for a probe)."""
        handler = self._handler()
        if self._probe:
            ready, self._ready = self._ready, None
            if ready is not None:
                return ready
        return succeed(handler)

    def _handler(self) -> Any:
        """The txredisapi handler of the current pool, started if need be."""
        if self._closed:
            raise ServiceError(SERVICE_UNAVAILABLE, "the redis service is closed")
        factory = self._factory
        if factory is not None and factory.stopped and not factory.size:
            # txredisapi gave up (credentials or database refused)
            if time.monotonic() - self._created_at < self.retry_max_delay:
                raise ServiceError(
                    SERVICE_UNAVAILABLE,
                    f"redis at {self._where()}: {self.last_error or 'not connected'}",
                )
            self._drop()
            factory = None
        if factory is None:
            self._start()
            factory = self._factory
            assert factory is not None, "_start made one"
        return factory.handler

    def _command(self, argv: list[str], post: Any) -> Deferred[Any]:
        if self._probe:
            d = self._connect().addCallback(lambda h: h.execute_command(*argv))
        else:
            d = self._handler().execute_command(*argv)
        return d.addCallbacks(post, self._translate).addErrback(self._translate)

    def _where(self) -> str:
        return f"{self.config['host']}:{self.config['port']}"

    def _translate(self, failure: Failure) -> Failure:
        error = failure.value
        if isinstance(error, ServiceError):
            return failure
        if isinstance(error, txredisapi.ConnectionError):
            detail = self.last_error if str(error) == "Not connected" else None
            return Failure(
                ServiceError(
                    SERVICE_UNAVAILABLE,
                    f"redis at {self._where()}: {detail or one_line(str(error))}",
                )
            )
        if isinstance(error, txredisapi.InvalidData):
            return Failure(bad_request(one_line(str(error))))
        if isinstance(error, txredisapi.RedisError):
            return Failure(ServiceError(REDIS_ERROR, one_line(str(error))))
        if isinstance(error, ValueError) and str(error).startswith("Redis error:"):
            # the probe's connection failed
            return Failure(
                ServiceError(SERVICE_UNAVAILABLE, str(error).removeprefix("Redis error: "))
            )
        return failure
