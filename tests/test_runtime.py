"""
``edgegw_tx.runtime.GatewayRuntime`` built from fakes: it uses the
collaborators it is given instead of building its own, and a listener that
cannot bind stops the start with the reason.
"""

from twisted.internet.error import CannotListenError
from twisted.trial import unittest

from tests.support.fakes import FakeBuilder, FakePool, FakeRegistry, SynchronousReactor, fake_runtime
from tests.support.handlers import HELLO


class BusyPortReactor(SynchronousReactor):
    """Every TCP port is in use."""

    def listenTCP(self, port, factory, backlog=50, interface=""):
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


class CollaboratorTests(unittest.TestCase):
    """What a test passes to GatewayRuntime is what the runtime uses."""

    def test_given_collaborators_are_the_ones_used(self):
        """The store, keys, builder, registry and pool factory given are the runtime's and its managers'."""
        builder, registry = FakeBuilder(), FakeRegistry()
        runtime = fake_runtime(self, builder=builder, registry=registry)
        self.assertIs(runtime.store, self.store)
        self.assertIs(runtime.keys, self.keys)
        self.assertIs(runtime.builder, builder)
        self.assertIs(runtime.registry, registry)
        created = self.successResultOf(
            runtime.manager.create({"name": "hello", "path": "/hello", "method": "GET", "code": HELLO})
        )
        self.successResultOf(runtime.manager.compile(created["id"]))
        self.successResultOf(runtime.manager.start(created["id"]))
        self.assertEqual([code for _, code, _ in builder.builds], [HELLO])
        self.assertEqual([pool.name for pool in FakePool.instances], ["hello"])
        self.assertTrue(FakePool.instances[0].started)

    def test_start_and_stop_on_fakes(self):
        """A runtime of fakes starts (listeners bound on the memory reactor) and stops, closing the registry."""
        runtime = fake_runtime(self)
        self.successResultOf(runtime.startService())
        self.assertEqual(len(self.successResultOf(runtime.ports())), 2)
        self.assertEqual(len(self.reactor.tcpServers), 2)
        self.successResultOf(runtime.stopService())
        self.assertTrue(runtime.registry.closed)


class ListenFailureTests(unittest.TestCase):
    """A port in use is refused at start, not logged and forgotten."""

    def test_port_in_use_raises_from_the_privileged_start(self):
        """privilegedStartService (what twistd calls first) raises CannotListenError when a port is taken."""
        runtime = fake_runtime(self, reactor=BusyPortReactor())
        self.assertRaises(CannotListenError, runtime.privilegedStartService)
        self.assertEqual(self.flushLoggedErrors(), [])
