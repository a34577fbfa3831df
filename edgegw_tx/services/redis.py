"""
The Redis connector: a small Twisted protocol whose replies are parsed by
hiredis (a C parser), commands pipelined, writes coalesced.

A pool of ``pool_size`` connections (default 10) is opened on the first call;
the calls of one reactor turn all go to one of the connections that are up,
the next turn's to the next one (round-robin), pipelined (many commands in
flight on each; Redis answers in order).  They leave in one write at the end
of the turn, sent straight to the socket when its buffer is empty (no
add/remove of a writer in the reactor per command).  Values are strings: ``GET`` of ``"12"`` is ``"12"``; bulk strings
are decoded as UTF-8 (invalid bytes become U+FFFD).

Actions (docs/ipc.md): ``get``, ``set``, ``setex``, ``del``, ``incr``, ``expire``,
``exists`` and ``command`` (any command as a list of strings; the reply as JSON:
bulk strings as strings, integers as numbers, arrays as lists, nil as null).
``command`` refuses what would block or change the state of a connection other
calls share: blocking pops, ``WAIT``, ``XREAD``/``XREADGROUP`` with ``BLOCK``,
pub/sub, ``MONITOR``, transactions (``MULTI``, ``WATCH``, ...), ``SELECT``,
``AUTH``, ``HELLO``, ``RESET``, ``QUIT``, ``CLIENT REPLY``/``TRACKING``/``CACHING``,
replication commands.

Each connection sends ``AUTH`` (with ``username`` and ``password``) and
``SELECT`` (``database``) when configured, before any call.

Failures: an error reply → ``RedisError`` with Redis's message; a connection
lost under a command → ``ServiceUnavailable``.  While Redis is unreachable a
call waits for a connection and the broker's timeout answers
``ServiceUnavailable`` (the connector remembers the last connection error for
that message).  Each connection reconnects by itself, after a delay growing
from 0.1 s to ``RedisConnector.retry_max_delay`` (2 s), so calls succeed again
soon after Redis is back, without touching the gateway.  While the server
refuses the credentials or the database, calls answer ``ServiceUnavailable``
with its message at once, and the connections keep retrying at that pace.

Everything runs on the injected reactor.  ``use_tls`` verifies the server's
certificate against the system's roots for ``host`` (``optionsForClientTLS``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.tcp import Connection
from twisted.python.failure import Failure

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

REFUSED_CLIENT = frozenset({"REPLY", "TRACKING", "CACHING"})

INITIAL_DELAY = 0.1
"""Seconds before the first reconnection attempt; doubled after each failure."""

Post = Callable[[Any], Any]
"""Turns a (non-error) reply into the call's data."""


def _pack(argv: tuple[str, ...]) -> bytes:
    """One command in RESP, as hiredis writes it."""
    # hiredis's stub types the tuple as having one item
    packed: bytes = hiredis.pack_command(argv)  # type: ignore[arg-type]
    return packed


def _text(value: bytes | bytearray) -> str:
    return value.decode("utf-8", "replace")


def convert_reply(reply: Any) -> Any:
    """A reply as a JSON value."""
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


def _same(reply: Any) -> Any:
    return reply


def _true(reply: Any) -> bool:
    return True


def _is_one(reply: Any) -> bool:
    return bool(reply == 1)


def _positive(reply: Any) -> bool:
    return bool(reply > 0)


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


class _Connection(Protocol):
    """
    One connection: the handshake, then pipelined commands answered in order.

    ``_replies`` holds, per command sent, the Deferred to fire and the
    function turning the reply into its data; a handshake step has no
    Deferred and its name instead.
    """

    def __init__(self, slot: _Slot) -> None:
        self._slot = slot
        self._reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self._replies: deque[tuple[Deferred[Any] | None, Any]] = deque()
        self._out: list[bytes] = []
        self._flush_call: IDelayedCall | None = None
        self._handshaking = 0
        self.up = False

    def connectionMade(self) -> None:
        config = self._slot.connector.config
        if config["password"] is not None:
            auth = ["AUTH", config["password"]]
            if config["username"] is not None:
                auth.insert(1, config["username"])
            self._handshake(auth, "could not auth")
        if config["database"]:
            database = config["database"]
            self._handshake(["SELECT", str(database)], f"could not set dbid={database}")
        if not self._handshaking:
            self._ready()

    def _handshake(self, argv: list[str], what: str) -> None:
        self._handshaking += 1
        self._replies.append((None, what))
        self._out.append(_pack(tuple(argv)))
        self._schedule_flush()

    def _ready(self) -> None:
        self.up = True
        self._slot.ready(self)

    def send(self, packed: bytes, d: Deferred[Any], post: Post) -> None:
        """Queue one command (``hiredis.pack_command``'s bytes) for this turn's write."""
        self._replies.append((d, post))
        self._out.append(packed)
        if self._flush_call is None:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_call is None:
            self._flush_call = self._slot.connector.reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        self._slot.connector.flushed(self)
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        transport = self.transport
        if (
            isinstance(transport, Connection)
            and not transport.dataBuffer
            and not transport._tempDataBuffer
            and transport.connected
            and not transport.disconnecting
        ):
            sent = transport.writeSomeData(data)
            if isinstance(sent, int):
                if sent == len(data):
                    return
                data = data[sent:]
        assert transport is not None, "connected"
        transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        replies = self._replies
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as e:
                self._slot.connector.last_error = f"bad reply from redis: {e}"
                assert self.transport is not None, "connected"
                self.transport.loseConnection()
                return
            if reply is False:
                return
            if not replies:
                self._slot.connector.last_error = "redis sent a reply nobody asked for"
                assert self.transport is not None, "connected"
                self.transport.loseConnection()
                return
            d, post = replies.popleft()
            if d is None:
                self._handshake_reply(reply, post)
            elif d.called:
                pass  # its caller gave up (a cancelled Deferred): the reply is nobody's
            elif isinstance(reply, hiredis.ReplyError):
                d.errback(ServiceError(REDIS_ERROR, one_line(str(reply))))
            else:
                try:
                    data = post(reply)
                except Exception:
                    d.errback()
                else:
                    d.callback(data)

    def _handshake_reply(self, reply: Any, what: str) -> None:
        if isinstance(reply, hiredis.ReplyError):
            self._handshaking = -1
            self._slot.refused(f"{what}: {one_line(str(reply))}")
            assert self.transport is not None, "connected"
            self.transport.loseConnection()
            return
        if self._handshaking > 0:
            self._handshaking -= 1
            if not self._handshaking:
                self._ready()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None
        self._out.clear()
        self.up = False
        replies, self._replies = self._replies, deque()
        connector = self._slot.connector
        if replies:
            error = ServiceError(
                SERVICE_UNAVAILABLE,
                f"redis at {connector.where()}: connection lost"
                f" ({one_line(reason.getErrorMessage())})",
            )
            for d, _ in replies:
                if d is not None and not d.called:
                    d.errback(error)
        self._slot.lost(self, reason)


class _Slot:
    """One of the pool's connections: connects, and reconnects after a delay growing to the connector's cap."""

    def __init__(self, connector: RedisConnector, reconnect: bool) -> None:
        self.connector = connector
        self._reconnect = reconnect
        self.connection: _Connection | None = None
        self._delay = INITIAL_DELAY
        self._retry: IDelayedCall | None = None
        self._connecting: Deferred[Any] | None = None
        self._stopped = False
        self._gone: Deferred[None] | None = None
        self.failed: Deferred[None] | None = None
        """For a probe: fires with the first connection that is up, or fails."""

    def start(self) -> None:
        self._retry = None
        if self._stopped:
            return
        factory = Factory.forProtocol(lambda: _Connection(self))
        connecting: Deferred[Any] = self.connector.endpoint().connect(factory)
        self._connecting = connecting
        connecting.addCallbacks(self._connected, self._failed)

    def _connected(self, connection: _Connection) -> None:
        self._connecting = None
        self.connection = connection

    def _failed(self, failure: Failure) -> None:
        self._connecting = None
        if self._stopped:
            return
        message = one_line(failure.getErrorMessage())
        self.connector.last_error = message
        self.connector.slot_failed(self, message)
        self._again()

    def _again(self) -> None:
        if self._stopped or not self._reconnect:
            return
        delay, self._delay = self._delay, min(self._delay * 2, self.connector.retry_max_delay)
        self._retry = self.connector.reactor.callLater(
            min(delay, self.connector.retry_max_delay), self.start
        )

    def ready(self, connection: _Connection) -> None:
        self._delay = INITIAL_DELAY
        self.connector.connection_ready(connection)

    def refused(self, message: str) -> None:
        self.connector.last_error = message
        self.connector.refused(self, message)

    def lost(self, connection: _Connection, reason: Failure) -> None:
        self.connection = None
        self.connector.connection_lost(connection)
        gone, self._gone = self._gone, None
        if gone is not None:
            gone.callback(None)
        if not self._stopped:
            if connection.up:
                self.connector.last_error = one_line(reason.getErrorMessage())
            else:
                self.connector.slot_failed(self, one_line(reason.getErrorMessage()))
            self._again()

    def stop(self) -> Deferred[None]:
        """No more reconnecting; close the connection; fires once it is closed."""
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
        connection = self.connection
        if connection is None or connection.transport is None:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        self._gone = Deferred()
        connection.transport.loseConnection()
        return self._gone


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
        self.reactor = reactor
        self._probe = probe
        self._slots: list[_Slot] = []
        self._up: list[_Connection] = []
        self._next = 0
        self._turn: _Connection | None = None
        self._waiting: deque[tuple[bytes, Deferred[Any], Post]] = deque()
        self._refused: str | None = None
        self._probe_ready: Deferred[_Connection] | None = None
        self._closed = False
        self.last_error: str | None = None

    # -- the connector interface --------------------------------------------

    def call(self, action: str, args: object) -> Deferred[Any]:
        if action == "get" and type(args) is dict:
            key = args.get("key")
            if type(key) is str:  # the usual call, without building an Args
                return self._command(("GET", key), _same)
        a = Args(f"redis {action}", args)
        if action == "get":
            return self._command(("GET", a.string("key")), _same)
        if action == "set":
            key, value = a.string("key"), a.string("value")
            return self._command(("SET", key, value), _true)
        if action == "setex":
            key = a.string("key")
            seconds = a.integer("seconds", minimum=1)
            value = a.string("value")
            return self._command(("SETEX", key, str(seconds), value), _true)
        if action == "del":
            keys = a.strings("keys", nonempty=True)
            return self._command(("DEL", *keys), int)
        if action == "incr":
            return self._command(("INCR", a.string("key")), int)
        if action == "expire":
            key, seconds = a.string("key"), a.integer("seconds")
            return self._command(("EXPIRE", key, str(seconds)), _is_one)
        if action == "exists":
            return self._command(("EXISTS", a.string("key")), _positive)
        if action == "command":
            argv = a.strings("args", nonempty=True)
            _check_command(a, argv)
            return self._command(tuple(argv), convert_reply)
        raise bad_request(
            f"unknown redis action {action!r} (expected one of {', '.join(ACTIONS)})"
        )

    def command(self, args: list[str]) -> Deferred[Any]:
        """
        One command the gateway sends itself (a cluster-scope rate limit's
        script, edgegw_tx/policy/ratelimit.py), not a handler's: none of the
        handlers' checks; fires with the raw reply, fails with Redis's error.
        """
        return self._command(tuple(args), _same)

    def ping(self) -> Deferred[float]:
        """``PING`` on a fresh connection; fires with its round trip in milliseconds (connecting excluded)."""
        ready: Deferred[_Connection] = Deferred()
        self._probe_ready = ready
        self._start()

        def ping(connection: _Connection) -> Deferred[float]:
            start = time.perf_counter()
            d: Deferred[Any] = Deferred()
            connection.send(_pack(("PING",)), d, _same)
            return d.addCallback(lambda _: (time.perf_counter() - start) * 1000.0)

        return ready.addCallback(ping)

    def unavailable_reason(self) -> str | None:
        """The last connection error, for the broker's timeout message."""
        return self.last_error

    def close(self) -> Deferred[None]:
        """Stop reconnecting and close every connection; fires once all are closed."""
        self._closed = True
        self._up, self._turn = [], None
        closing = [slot.stop() for slot in self._slots]
        self._slots = []
        self._fail_waiting("the redis service is closed")
        done: Deferred[None] = Deferred()
        gatherResults(closing, consumeErrors=True).addBoth(lambda _: done.callback(None))
        return done

    # -- the pool ------------------------------------------------------------

    def where(self) -> str:
        """``host:port``, for messages."""
        return f"{self.config['host']}:{self.config['port']}"

    def endpoint(self) -> Any:
        """Where a connection connects to (TLS-wrapped when asked for)."""
        host, port = self.config["host"], self.config["port"]
        endpoint: Any = HostnameEndpoint(
            self.reactor, host, port, timeout=max(1, int(round(self.call_timeout)))
        )
        if self.config["use_tls"]:
            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
        return endpoint

    def _start(self) -> None:
        size = 1 if self._probe else self.config["pool_size"]
        self._slots = [_Slot(self, reconnect=not self._probe) for _ in range(size)]
        for slot in self._slots:
            slot.start()

    def connection_ready(self, connection: _Connection) -> None:
        """A connection finished its handshake: it takes calls, first the waiting ones."""
        self._refused = None
        self.last_error = None
        probe, self._probe_ready = self._probe_ready, None
        if probe is not None:
            probe.callback(connection)
            return
        self._up.append(connection)
        waiting, self._waiting = self._waiting, deque()
        for packed, d, post in waiting:
            if not d.called:
                connection.send(packed, d, post)

    def connection_lost(self, connection: _Connection) -> None:
        """A connection closed: no more calls to it."""
        if connection in self._up:
            self._up.remove(connection)

    def slot_failed(self, slot: _Slot, message: str) -> None:
        """A connection attempt failed (a probe reports it)."""
        self._fail_probe(message)

    def refused(self, slot: _Slot, message: str) -> None:
        """The server refused the credentials or the database: the waiting calls fail now."""
        self._refused = message
        self._fail_probe(message)
        self._fail_waiting(message)

    def _fail_probe(self, message: str) -> None:
        probe, self._probe_ready = self._probe_ready, None
        if probe is not None:
            probe.errback(ServiceError(SERVICE_UNAVAILABLE, f"redis at {self.where()}: {message}"))

    def _fail_waiting(self, message: str) -> None:
        waiting, self._waiting = self._waiting, deque()
        if waiting:
            error = ServiceError(SERVICE_UNAVAILABLE, f"redis at {self.where()}: {message}")
            for _, d, _ in waiting:
                if not d.called:
                    d.errback(error)

    def _pick(self) -> _Connection | None:
        """The next connection that is up (round-robin), which takes this turn's calls; None when none is."""
        up = self._up
        if not up:
            return None
        index = self._next
        if index >= len(up):
            index = 0
        self._next = index + 1
        self._turn = connection = up[index]
        return connection

    def flushed(self, connection: _Connection) -> None:
        """``connection`` wrote this turn's calls: the next call starts a new turn on the next connection."""
        if self._turn is connection:
            self._turn = None

    def _command(self, argv: tuple[str, ...], post: Post) -> Deferred[Any]:
        packed = _pack(argv)
        connection = self._turn
        if connection is None or not connection.up:
            connection = self._pick()
        if connection is not None:
            d: Deferred[Any] = Deferred()
            connection.send(packed, d, post)
            return d
        if self._closed:
            raise ServiceError(SERVICE_UNAVAILABLE, "the redis service is closed")
        if self._refused is not None:
            raise ServiceError(SERVICE_UNAVAILABLE, f"redis at {self.where()}: {self._refused}")
        if not self._slots:
            self._start()
            connection = self._pick()  # an endpoint may connect at once
            if connection is not None:
                d = Deferred()
                connection.send(packed, d, post)
                return d
        waiting = self._waiting
        entry: tuple[bytes, Deferred[Any], Post]

        def forget(d: Deferred[Any]) -> None:
            try:
                waiting.remove(entry)
            except ValueError:
                pass  # already sent, or the queue was replaced

        d = Deferred(forget)
        entry = (packed, d, post)
        waiting.append(entry)
        return d
