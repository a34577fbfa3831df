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

import base64
import time

from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, returnValue, succeed
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool, PotentialDataLoss, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from edgegw_tx.admin.errors import ApiError, BadRequest
from edgegw_tx.admin.schema import PROBE_DEFAULT_TIMEOUT, PROBE_MAX_RESPONSE_BODY, TEST_REQUEST_INPUT
from edgegw_tx.admin.validation import check_schema

# The limits of a test request are the schema's (admin/schema.py).
MAX_RESPONSE_BODY = PROBE_MAX_RESPONSE_BODY
DEFAULT_TIMEOUT = PROBE_DEFAULT_TIMEOUT
# Set by the HTTP client from the request itself; sent ones are ignored.
IGNORED_HEADERS = frozenset(
    ("content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer",
     "proxy-connection")
)

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


def check_test_request(payload):
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


def client_endpoint(reactor, listen, address):
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


def display_address(address):
    """``host:port`` (``[v6]:port``, ``unix:path``) of the data plane as it is reached."""
    if _is_unix(address):
        return "unix:" + str(address.name)
    host = _loopback(address.host)
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


def _is_unix(address):
    return getattr(address, "name", None) is not None and not hasattr(address, "port")


def _loopback(host):
    """A wildcard interface is reached on loopback."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


@implementer(IAgentEndpointFactory)
class _OwnDataPlane:
    """Every URL leads to the data plane's own listener."""

    def __init__(self, endpoint):
        self._endpoint = endpoint

    def endpointForURI(self, uri):
        return self._endpoint


@implementer(IBodyProducer)
class _Bytes:
    """A request body known in advance, written at once."""

    def __init__(self, data):
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class _CappedBody(Protocol):
    """Collects an answer's body up to ``limit`` bytes, then stops reading it."""

    def __init__(self, limit):
        self.limit = limit
        self.chunks = []
        self.size = 0
        self.received = 0
        self.truncated = False
        self.done = Deferred(self._cancel)

    def _cancel(self, _):
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data):
        self.received += len(data)
        if self.truncated:
            return
        room = self.limit - self.size
        if len(data) > room:
            self.chunks.append(data[:room])
            self.size = self.limit
            self.truncated = True
            self.transport.stopProducing()
            self.done.callback(b"".join(self.chunks))
            return
        self.chunks.append(data)
        self.size += len(data)

    def connectionLost(self, reason):
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


class DataPlaneProbe:
    """Sends test requests to the data plane and reports what it answered."""

    log = Logger()

    def __init__(self, reactor, listen, data_plane_port, agent=None, now=time.perf_counter):
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
        self._address = None
        self._now = now
        self._pool = None

    @inlineCallbacks
    def _agent_and_base(self):
        if self._agent is not None:
            returnValue((self._agent, "http://data-plane"))
        port = yield self._data_plane_port()
        address = port.getHost()
        if self._pool is None:
            self._pool = HTTPConnectionPool(self._reactor, persistent=False)
        endpoint = client_endpoint(self._reactor, self._listen, address)
        agent = Agent.usingEndpointFactory(self._reactor, _OwnDataPlane(endpoint), pool=self._pool)
        self._address = display_address(address)
        host = self._address if not self._address.startswith("unix:") else "localhost"
        returnValue((agent, "http://" + host))

    @inlineCallbacks
    def send(self, payload):
        """
        Check ``payload`` (``check_test_request``), send it, answer
        ``{status, reason, headers, body, body_encoding, body_bytes,
        truncated, elapsed_ms, url}``; 502 when the data plane cannot be
        reached, 504 when it does not answer within ``timeout``.
        """
        method, path, pairs, data, timeout = check_test_request(payload)
        agent, base = yield self._agent_and_base()
        url = base + path
        headers = Headers()
        for name, value in pairs:
            headers.addRawHeader(name.encode("ascii"), value.encode("latin-1"))
        started = self._now()
        exchange = self._exchange(agent, method, url, headers, data)
        timed_out = []

        def on_timeout(result, timeout_):
            timed_out.append(True)
            return result

        exchange.addTimeout(timeout, self._reactor, onTimeoutCancel=on_timeout)
        try:
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
        returnValue(
            {
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
        )

    @inlineCallbacks
    def _exchange(self, agent, method, url, headers, data):
        producer = _Bytes(data) if data is not None else None
        response = yield agent.request(method.encode("ascii"), url.encode("ascii"), headers, producer)
        protocol = _CappedBody(MAX_RESPONSE_BODY)
        response.deliverBody(protocol)
        body = yield protocol.done
        returnValue((response, body, protocol))


def _reason(error):
    """A short, human reason of a client-side failure (ResponseFailed wraps the real ones)."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(str(r.value) or r.type.__name__ for r in reasons)
    return str(error) or type(error).__name__
