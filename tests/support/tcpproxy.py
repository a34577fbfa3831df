"""
A loopback TCP forwarder in the test's own reactor, standing between the
gateway nodes and PostgreSQL so a test can lose the store on purpose:
``cut()`` aborts every forwarded connection (both sides, as a dead network
would: no goodbye to either) and stops listening, so new connections are
refused; ``restore()`` listens again on the same port.

Nodes are given ``postgresql://...@127.0.0.1:<proxy.port>/<db>`` instead of
the server's own port. Only the connections made through the proxy are cut:
another node connected straight to the server keeps its store.
"""

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import inlineCallbacks, succeed
from twisted.internet.protocol import ClientFactory, Factory, Protocol


class _Upstream(Protocol):
    """The proxy's connection to the real server, paired with one inbound connection."""

    def __init__(self, inbound):
        self.inbound = inbound

    def connectionMade(self):
        self.inbound.upstream_ready(self)

    def dataReceived(self, data):
        self.inbound.transport.write(data)

    def connectionLost(self, reason):
        self.inbound.proxy.connections.discard(self)
        self.inbound.transport.loseConnection()


class _UpstreamFactory(ClientFactory):
    def __init__(self, inbound):
        self.inbound = inbound

    def buildProtocol(self, addr):
        return _Upstream(self.inbound)

    def clientConnectionFailed(self, connector, reason):
        self.inbound.transport.loseConnection()


class _Inbound(Protocol):
    """A client's connection to the proxy: held (not read) until its upstream is connected."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.upstream = None

    def connectionMade(self):
        self.proxy.connections.add(self)
        self.transport.pauseProducing()
        self.proxy.reactor.connectTCP(self.proxy.host, self.proxy.target_port, _UpstreamFactory(self), timeout=5)

    def upstream_ready(self, upstream):
        self.upstream = upstream
        if self.proxy.is_cut:  # cut while this one was still connecting upstream
            upstream.transport.abortConnection()
            self.transport.abortConnection()
            return
        self.proxy.connections.add(upstream)
        self.transport.resumeProducing()

    def dataReceived(self, data):
        self.upstream.transport.write(data)

    def connectionLost(self, reason):
        self.proxy.connections.discard(self)
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


class TCPProxy:
    """
    Forwards ``127.0.0.1:<port>`` to ``host:target_port``. ``port`` is chosen
    by the kernel at the first ``start()`` and kept across cuts.
    ``accepted`` counts the connections it took (tests can see the nodes
    reconnect).
    """

    def __init__(self, target_port, host="127.0.0.1", reactor=None):
        self.reactor = reactor or default_reactor
        self.host = host
        self.target_port = target_port
        self.port = 0
        self.listening = None
        self.connections = set()
        self.accepted = 0

    def start(self):
        """Listen (on a kernel-chosen port the first time, the same one after a cut); fires with the port."""
        factory = Factory.forProtocol(lambda: self._accept())
        self.listening = self.reactor.listenTCP(self.port, factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        return succeed(self.port)

    def _accept(self):
        self.accepted += 1
        return _Inbound(self)

    @property
    def is_cut(self):
        return self.listening is None

    @inlineCallbacks
    def cut(self):
        """Refuse new connections and abort every open one (no FIN, no goodbye)."""
        if self.listening is not None:
            listening, self.listening = self.listening, None
            yield listening.stopListening()
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.abortConnection()
        self.connections.clear()

    def restore(self):
        """Listen again on the same port."""
        if self.listening is None:
            return self.start()
        return succeed(self.port)

    def stop(self):
        """Cut for good (test cleanup): nothing of the proxy is left in the reactor."""
        return self.cut()
