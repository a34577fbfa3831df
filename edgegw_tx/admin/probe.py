"""
Test requests: the management API sends an HTTP request to the gateway's own
data plane and answers what came back (``POST /api/test-request``), for the
Admin UI's test console. The browser is on the admin origin and cannot call
the data plane itself without CORS; the server-side request needs none, and
it can only ever reach this gateway's public listener: the connection goes to
the address the data plane is bound to, whatever the URL or ``Host`` says.

With several data-plane processes (``--processes N``) the control process
holds the public socket but does not accept on it: the kernel hands the
connection to one of the data-plane processes, as it would a client's.

Caps: the request body (1 MiB of characters), the header fields (50, each up
to 8 KiB), the answer's body (the first 1 MiB is kept, ``truncated`` says
so) and the time (``timeout``, 30 s by default, at most 120 s).
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any, Callable, Generator, Optional, Protocol as Structural, Union, cast

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.interfaces import IConsumer, IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, URI
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from edgegw_tx.admin.errors import ApiError, BadRequest
from edgegw_tx.admin.schema import PROBE_DEFAULT_TIMEOUT, PROBE_MAX_RESPONSE_BODY, TEST_REQUEST_INPUT
from edgegw_tx.admin.validation import check_schema

if TYPE_CHECKING:
    from typing_extensions import TypeIs

# The limits of a test request are the schema's (admin/schema.py).
MAX_RESPONSE_BODY = PROBE_MAX_RESPONSE_BODY
DEFAULT_TIMEOUT = PROBE_DEFAULT_TIMEOUT
# Set by the HTTP client from the request itself; sent ones are ignored.
IGNORED_HEADERS = frozenset(
    ("content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer",
     "proxy-connection")
)

# Where a data plane listens: what its listening port's ``getHost()`` gives.
Address = Union[IPv4Address, IPv6Address, UNIXAddress]
# A checked test request: method, path, header pairs, body (None: send none), timeout.
TestRequest = tuple[str, str, list[tuple[str, str]], Optional[bytes], float]


class BoundPort(Structural):
    """What the probe needs of the data plane's listening port: where it listens."""

    def getHost(self) -> Address:
        """The address the port is bound to."""
        ...


class DataPlaneUnreachable(ApiError):
    """The data plane refused or dropped the connection: 502, like any upstream failure."""

    status = 502


class DataPlaneTimeout(ApiError):
    """The data plane did not answer within the request's ``timeout``."""

    status = 504


def _headers_as_a_whole(path: list[object]) -> None:
    """A bad header is a 400 about the field ``headers`` (as it has always been named)."""
    if path[:1] == ["headers"]:
        raise BadRequest(f"field 'headers' {TEST_REQUEST_INPUT['properties']['headers']['x-error']}", field="headers")


def check_test_request(payload: Any) -> TestRequest:
    """
    The checked fields of a test request: ``(method, path, [(name, value)],
    body bytes or None, timeout)``; 400 naming the field otherwise.
    """
    check_schema(TEST_REQUEST_INPUT, payload, _headers_as_a_whole)
    method, path = payload.get("method", "GET"), payload["path"]
    headers, body = payload.get("headers", {}), payload.get("body", "")
    timeout = payload.get("timeout", DEFAULT_TIMEOUT)
    pairs = [(name, value) for name, value in headers.items() if name.lower() not in IGNORED_HEADERS]
    data = body.encode("utf-8")
    if not data and method not in ("POST", "PUT", "PATCH"):
        data = None
    return method, path, pairs, data, float(timeout)


def client_endpoint(reactor: Any, listen: str, address: Address) -> IStreamClientEndpoint:
    """
    A client endpoint that reaches the data plane listening as ``listen`` (its
    server endpoint string) at ``address`` (its port's ``getHost()``):
    a wildcard interface is reached on loopback, an ``ssl:`` listener with TLS
    (the certificate is not checked: it is our own listener).
    """
    from twisted.internet.endpoints import (
        SSL4ClientEndpoint,
        TCP4ClientEndpoint,
        TCP6ClientEndpoint,
        UNIXClientEndpoint,
    )

    kind = listen.split(":", 1)[0].strip().lower()
    if _is_unix(address):
        return UNIXClientEndpoint(reactor, address.name)
    host = _loopback(address.host)
    if kind == "ssl":
        from twisted.internet.ssl import CertificateOptions

        return SSL4ClientEndpoint(reactor, host, address.port, CertificateOptions())
    if ":" in host:
        return TCP6ClientEndpoint(reactor, host, address.port)
    return TCP4ClientEndpoint(reactor, host, address.port)


def display_address(address: Address) -> str:
    """``host:port`` (``[v6]:port``, ``unix:path``) of the data plane as it is reached."""
    if _is_unix(address):
        return "unix:" + str(address.name)
    host = _loopback(address.host)
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


def _is_unix(address: Address) -> TypeIs[UNIXAddress]:
    """A UNIX socket's address: a name and no port (told apart by shape, as any address with them is one)."""
    return getattr(address, "name", None) is not None and not hasattr(address, "port")


def _loopback(host: str) -> str:
    """A wildcard interface is reached on loopback."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


@implementer(IAgentEndpointFactory)
class _OwnDataPlane:
    """Every URL leads to the data plane's own listener."""

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        """``endpoint`` reaches the data plane's listener."""
        self._endpoint = endpoint

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """The data plane's endpoint, whatever ``uri`` names: the probe reaches nothing else."""
        return self._endpoint


@implementer(IBodyProducer)
class _Bytes:
    """A request body known in advance, written at once."""

    def __init__(self, data: bytes) -> None:
        """``data`` is the whole body; its length goes in ``Content-Length``."""
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        """Write the whole body at once: it is at most 1 MiB and already in memory."""
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        """Nothing to pause: the body was written in one go."""

    def resumeProducing(self) -> None:
        """Nothing to resume: the body was written in one go."""

    def stopProducing(self) -> None:
        """Nothing to stop: the body was written in one go."""


class _CappedBody(Protocol):
    """Collects an answer's body up to ``limit`` bytes, then stops reading it."""

    def __init__(self, limit: int) -> None:
        """Keep at most ``limit`` bytes; ``done`` fires with them."""
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.received = 0
        self.truncated = False
        self.done: Deferred[bytes] = Deferred(self._cancel)

    def _producer(self) -> IPushProducer:
        """The body's transport: ``Agent`` delivers a body through a producer (``TransportProxyProducer``)."""
        return cast(IPushProducer, self.transport)

    def _cancel(self, _: Deferred[bytes]) -> None:
        """A cancelled exchange (the timeout) stops reading the body."""
        if self.transport is not None:
            self._producer().stopProducing()

    def dataReceived(self, data: bytes) -> None:
        """Count every byte, keep those that fit, stop reading at the first that does not."""
        self.received += len(data)
        if self.truncated:
            return
        room = self.limit - self.size
        if len(data) > room:
            self.chunks.append(data[:room])
            self.size = self.limit
            self.truncated = True
            self._producer().stopProducing()
            self.done.callback(b"".join(self.chunks))
            return
        self.chunks.append(data)
        self.size += len(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The body ended: fire ``done`` with what was kept, unless cut short by an error."""
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


class DataPlaneProbe:
    """Sends test requests to the data plane and reports what it answered."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        listen: str,
        data_plane_port: Callable[[], Deferred[BoundPort]],
        agent: Optional[IAgent] = None,
        now: Callable[[], float] = time.perf_counter,
    ) -> None:
        """
        ``listen`` is the data plane's server endpoint string (``--listen``),
        ``data_plane_port()`` -> Deferred firing with its listening port once
        bound. ``agent`` replaces the HTTP client (tests pass treq's
        ``RequestTraversalAgent``); ``now`` times the exchange.
        """
        self._reactor = reactor
        self._listen = listen
        self._data_plane_port = data_plane_port
        self._agent = agent
        self._address: Optional[str] = None
        self._now = now
        self._pool: Optional[HTTPConnectionPool] = None

    @inlineCallbacks
    def _agent_and_base(self) -> Generator[Deferred[Any], Any, tuple[IAgent, str]]:
        """The HTTP client and the base URL of the data plane, once its port is bound."""
        if self._agent is not None:
            return (self._agent, "http://data-plane")
        port: BoundPort = yield self._data_plane_port()
        address = port.getHost()
        if self._pool is None:
            self._pool = HTTPConnectionPool(self._reactor, persistent=False)
        endpoint = client_endpoint(self._reactor, self._listen, address)
        agent = Agent.usingEndpointFactory(self._reactor, _OwnDataPlane(endpoint), pool=self._pool)
        self._address = display_address(address)
        host = self._address if not self._address.startswith("unix:") else "localhost"
        return (agent, "http://" + host)

    @inlineCallbacks
    def send(self, payload: Any) -> Generator[Deferred[Any], Any, dict[str, Any]]:
        """
        Check ``payload`` (``check_test_request``), send it, answer
        ``{status, reason, headers, body, body_encoding, body_bytes,
        truncated, elapsed_ms, url}``; 502 when the data plane cannot be
        reached, 504 when it does not answer within ``timeout``.
        """
        method, path, pairs, data, timeout = check_test_request(payload)
        agent: IAgent
        base: str
        agent, base = yield self._agent_and_base()
        url = base + path
        headers = Headers()
        for name, value in pairs:
            headers.addRawHeader(name.encode("ascii"), value.encode("latin-1"))
        started = self._now()
        exchange = self._exchange(agent, method, url, headers, data)
        timed_out: list[bool] = []

        def on_timeout(result: Any, timeout_: float) -> Any:
            """Remember that the timeout, not the client, cancelled the exchange: a 504, not a 502."""
            timed_out.append(True)
            return result

        exchange.addTimeout(timeout, self._reactor, onTimeoutCancel=on_timeout)
        try:
            response: IResponse
            body: bytes
            protocol: _CappedBody
            response, body, protocol = yield exchange
        except (CancelledError, ConnectTimeout) as e:
            if timed_out or isinstance(e, ConnectTimeout):
                raise DataPlaneTimeout(f"the data plane did not answer within {timeout:g} s ({url})")
            raise
        except ApiError:
            raise
        except Exception as e:
            raise DataPlaneUnreachable(f"could not reach the data plane at {url}: {_reason(e)}")
        elapsed = (self._now() - started) * 1000.0
        try:
            text, encoding = body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode("ascii"), "base64"
        return {
            "status": response.code,
            "reason": response.phrase.decode("latin-1") if response.phrase else "",
            "headers": [
                [name.decode("latin-1"), value.decode("latin-1")]
                for name, values in response.headers.getAllRawHeaders()
                for value in values
            ],
            "body": text,
            "body_encoding": encoding,
            "body_bytes": protocol.received,
            "truncated": protocol.truncated,
            "elapsed_ms": round(elapsed, 3),
            "url": url,
        }

    @inlineCallbacks
    def _exchange(
        self, agent: IAgent, method: str, url: str, headers: Headers, data: Optional[bytes]
    ) -> Generator[Deferred[Any], Any, tuple[IResponse, bytes, _CappedBody]]:
        """One request and its capped answer: ``(response, kept body, the body's protocol)``."""
        producer = _Bytes(data) if data is not None else None
        response = yield agent.request(method.encode("ascii"), url.encode("ascii"), headers, producer)
        protocol = _CappedBody(MAX_RESPONSE_BODY)
        response.deliverBody(protocol)
        body = yield protocol.done
        return (response, body, protocol)


def _reason(error: BaseException) -> str:
    """A short, human reason of a client-side failure (ResponseFailed wraps the real ones)."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(str(r.value) or r.type.__name__ for r in reasons)
    return str(error) or type(error).__name__
