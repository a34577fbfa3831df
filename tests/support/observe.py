"""
Fakes for the data plane's per-request bookkeeping (gateway/observe.py): an
access log that keeps its lines in memory, and a gateway front on a
StringTransport and a Clock with an ``Observer`` wired in.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from edgegw_tx.gateway.dispatch import Dispatcher
from edgegw_tx.gateway.http import GatewayHTTPFactory
from edgegw_tx.gateway.observe import Observer
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.observability.metrics import RequestMetrics
from edgegw_tx.observability.trace import TraceContext
from edgegw_tx.paths import parse_pattern
from tests.support.http import EchoTarget


class MemoryAccessLog:
    """An ``AccessLog`` stand-in: ``write`` keeps each line."""

    def __init__(self):
        self.lines = []

    def write(self, line):
        self.lines.append(line)


class ObservedFront:
    """
    A ``GatewayHTTPFactory`` whose dispatcher has an ``Observer`` with a
    memory access log; ``EchoTarget`` (named ``echo``) serves GET and POST
    ``/`` and ``/{p}``.
    """

    def __init__(self, health_path="/healthz", **factory_options):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.metrics = RequestMetrics()
        self.log = MemoryAccessLog()
        self.routes = RouteTable()
        self.target = EchoTarget()
        for method in ("GET", "POST"):
            for pattern in ("/", "/{p}"):
                self.routes.add((method, pattern), "*", method, parse_pattern(pattern), self.target)
        self.observer = Observer(
            self.metrics,
            self.clock.seconds,
            access_log=self.log,
            trace=TraceContext(),
            health_path=health_path,
            restoring=lambda: self.routes.restoring,
        )
        self.factory = GatewayHTTPFactory(
            Dispatcher(self.routes, observer=self.observer), self.clock, **factory_options
        )

    def connect(self):
        """A new connection from 192.0.2.7: (protocol, transport)."""
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        protocol.makeConnection(transport)
        return protocol, transport

    def exchange(self, data):
        """Send ``data`` on a new connection; what the gateway wrote back."""
        protocol, transport = self.connect()
        protocol.dataReceived(data)
        return transport.value()

    def counts(self, endpoint):
        """The (method, status) -> requests counts of ``endpoint``'s series."""
        return dict(self.metrics.series(endpoint).counts)
