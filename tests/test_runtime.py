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


class SharedStore:
    """
    A real SQLite store (its change log, node rows) standing in for a shared
    one: ``shared``, ``online``, ``when_online``, and ``save_snapshot`` counted.
    """

    shared = True

    def __init__(self, store, online=True, snapshot_revision=None):
        self._store = store
        self.where = "postgresql://gw@db:5432/edgegw"
        self.online = online
        self._snapshot_revision = snapshot_revision
        self.callbacks = []
        self.snapshots = []

    def __getattr__(self, name):
        return getattr(self._store, name)

    def when_online(self, callback):
        self.callbacks.append(callback)

    def snapshot_revision(self):
        return None if self.online else self._snapshot_revision

    def save_snapshot(self, path):
        from twisted.internet.defer import succeed

        self.snapshots.append(path)
        return succeed(0)


class FakeListener:
    """Stands in for ``cluster.notify.ChangeListener``: records what it was made with, started and stopped."""

    made = []

    def __init__(self, dsn, wake, reactor, where=""):
        self.dsn, self.wake, self.where = dsn, wake, where
        self.running = False
        FakeListener.made.append(self)

    def start(self):
        self.running = True

    def stop(self):
        from twisted.internet.defer import succeed

        self.running = False
        return succeed(None)


class ClusterNodeTests(unittest.TestCase):
    """With a shared store the runtime is a node: it follows the change log, beats, and restores without writing."""

    def setUp(self):
        from edgegw_tx.cluster import membership as membership_module
        from edgegw_tx.admin.auth import KeyRing
        from edgegw_tx.store.uri import StoreSpec
        from tests.support.fakes import keyed_store

        keyed_store(self)
        FakeListener.made = []
        self.patch(membership_module, "ChangeListener", FakeListener)
        self.shared = SharedStore(self.store)
        self.spec = StoreSpec("postgresql", uri="postgresql://gw:pw@db:5432/edgegw", where=self.shared.where)
        self.keys = KeyRing(self.shared, reactor=self.reactor)

    def runtime(self, **options):
        return fake_runtime(self, store=self.shared, reactor=self.reactor, keys=self.keys, store_spec=self.spec,
                            node_name="n1", **options)

    def test_started_node_follows_and_beats(self):
        """
        Started: the follower reads the change log every 2 s (a key added
        elsewhere is known within one check), the LISTEN connection uses the
        store's URI, the node's heartbeat carries its bound addresses, and the
        last-known configuration is saved.
        """
        runtime = self.runtime()
        self.successResultOf(runtime.startService())
        (listener,) = FakeListener.made
        self.assertEqual(listener.dsn, "postgresql://gw:pw@db:5432/edgegw")
        self.assertTrue(listener.running)
        self.assertEqual(self.shared.snapshots, [runtime.snapshot_path])
        (node,) = self.successResultOf(self.store.list_nodes())
        self.assertEqual(node["name"], "n1")
        from edgegw_tx.cluster.nodes import address_of

        ports = self.successResultOf(runtime.ports())
        self.assertEqual((node["address"], node["admin_address"]), (address_of(ports[0]), address_of(ports[1])))
        from edgegw_tx.admin.auth import KeyRing

        other_node = KeyRing(self.store, reactor=self.reactor)
        self.successResultOf(other_node.load())
        self.successResultOf(other_node.create("made-elsewhere", "read"))
        known = self.store.list_keys
        reads = []
        self.patch(self.store, "list_keys", lambda: reads.append(1) or known())
        self.reactor.advance(2.0)
        self.assertEqual(reads, [1])
        self.assertGreater(runtime.follower.revision, 0)
        self.successResultOf(runtime.stopService())
        self.assertFalse(listener.running)
        # Stopped on purpose: gone from the node list (one that dies turns "down").
        self.assertEqual(self.successResultOf(self.store.list_nodes()), [])

    def test_restore_writes_nothing(self):
        """A node restores the endpoints with ``persist=False``: their status is the cluster's, not its own."""
        runtime = self.runtime()
        calls = []
        from twisted.internet.defer import succeed

        self.patch(runtime.manager, "restore", lambda **kw: calls.append(kw) or succeed(None))
        self.successResultOf(runtime.startService())
        self.assertEqual(calls, [{"persist": False}])
        self.successResultOf(runtime.stopService())

    def test_stop_leaves_no_timer(self):
        """After stopping, no follower check, heartbeat or snapshot is left pending."""
        runtime = self.runtime()
        self.successResultOf(runtime.startService())
        self.successResultOf(runtime.stopService())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_offline_start(self):
        """
        Started while the database is down: the node says it starts from the
        last-known configuration and its revision, saves no snapshot over it,
        and catches up from the change log when the store calls it back.
        """
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.shared.online = False
        self.shared._snapshot_revision = 7
        runtime = self.runtime()
        self.successResultOf(runtime.startService())
        self.assertEqual(self.shared.snapshots, [])
        (callback,) = self.shared.callbacks
        said = [e for e in events if "last-known configuration" in e.get("log_format", "")]
        self.assertEqual(len(said), 1)
        reads = []
        original = self.store.changes_since
        self.patch(self.store, "changes_since", lambda revision: reads.append(revision) or original(revision))
        self.shared.online = True
        callback()
        self.assertEqual(len(reads), 1)
        self.successResultOf(runtime.stopService())

    def test_sqlite_is_one_node(self):
        """With a store that is not shared there is no follower, listener or heartbeat; the node list is this node."""
        runtime = fake_runtime(self, node_name="solo")
        self.successResultOf(runtime.startService())
        self.assertIsNone(runtime.follower)
        self.assertEqual(FakeListener.made, [])
        self.assertEqual(self.successResultOf(self.store.list_nodes()), [])
        (node,) = self.successResultOf(runtime.nodes.list())
        self.assertEqual((node["name"], node["self"]), ("solo", True))
        self.successResultOf(runtime.stopService())
