"""Tests for ``edgegw_tx.cluster.nodes``: heartbeats and the node list, with a fake node store on a Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from edgegw_tx import __version__
from edgegw_tx.cluster.nodes import NodeDirectory, address_of, default_node_name
from edgegw_tx.store.errors import StoreUnavailable
from edgegw_tx.store.interface import INodeStore
from tests.support.interfaces import verify_fake


class FakeNodeStore:
    """Node rows in memory; ``ages`` sets a row's seconds since seen; ``down`` fails heartbeats."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.ages: dict[str, float] = {}
        self.beats = 0
        self.down = False

    def heartbeat(self, node: dict[str, Any]) -> "Deferred[None]":
        if self.down:
            return fail(StoreUnavailable("postgresql://u@h/db", "connection refused"))
        self.beats += 1
        self.rows[node["name"]] = dict(node, last_seen="2026-12-07T19:00:00Z")
        return succeed(None)

    def list_nodes(self) -> "Deferred[list[dict[str, Any]]]":
        return succeed([dict(row, seconds_since_seen=self.ages.get(name, 0.5))
                        for name, row in sorted(self.rows.items())])


class NodeDirectoryTests(TestCase):
    """Each node writes its heartbeat; the list says which are up and what they run."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = FakeNodeStore()
        verify_fake(INodeStore, self.store)
        self.workers = {"e1": 2, "e2": 0}

    def directory(self, shared: bool = True) -> NodeDirectory:
        nodes = NodeDirectory(self.store, "n1", lambda: dict(self.workers), self.clock, shared,
                              address="127.0.0.1:9080", admin_address="127.0.0.1:9081", started_at="T0")
        self.addCleanup(nodes.stop)
        return nodes

    def test_default_name(self) -> None:
        """The default node name is the host name and the data plane's port."""
        self.assertEqual(default_node_name("tcp:9080:interface=127.0.0.1", host="gw"), "gw:9080")
        self.assertEqual(default_node_name("9090", host="gw"), "gw:9090")
        self.assertEqual(default_node_name("unix:/run/gw.sock", host="gw"), "gw:unix:/run/gw.sock")

    def test_address_of(self) -> None:
        """A bound port's address: its interface, or the host name when it listens on every interface."""

        class Port:
            def __init__(self, host: str, port: int) -> None:
                self.host, self.port = host, port

            def getHost(self) -> "Port":
                return self

        self.assertEqual(address_of(Port("127.0.0.1", 9080)), "127.0.0.1:9080")
        self.assertEqual(address_of(Port("0.0.0.0", 9080), host="gw"), "gw:9080")
        self.assertEqual(address_of(Port("::1", 9080)), "[::1]:9080")

    def test_heartbeat_every_interval(self) -> None:
        """Started, a node writes its row at once and every 2 s, with its live workers per endpoint."""
        nodes = self.directory()
        nodes.start()
        self.assertEqual(self.store.beats, 1)
        self.assertEqual(self.store.rows["n1"]["workers"], {"e1": 2})
        self.assertEqual(self.store.rows["n1"]["version"], __version__)
        self.workers["e2"] = 1
        self.clock.advance(2.0)
        self.assertEqual(self.store.beats, 2)
        self.assertEqual(self.store.rows["n1"]["workers"], {"e1": 2, "e2": 1})

    def test_heartbeat_failures_keep_beating(self) -> None:
        """A store that cannot be reached is logged once; heartbeats go on and resume writing."""
        nodes = self.directory()
        self.store.down = True
        nodes.start()
        self.clock.advance(2.0)
        self.store.down = False
        self.clock.advance(2.0)
        self.assertEqual(self.store.beats, 1)

    def test_list(self) -> None:
        """
        The list has every node by name with its state (down after 3 missed
        heartbeats), worker total and per-endpoint counts, and marks this node.
        """
        nodes = self.directory()
        nodes.start()
        self.store.rows["n0"] = {"name": "n0", "address": "10.0.0.2:9080", "admin_address": "", "version": "0.1.0",
                                 "started_at": "T", "last_seen": "L", "workers": {"e1": 3}}
        self.store.rows["n2"] = dict(self.store.rows["n0"], name="n2", workers={})
        self.store.ages = {"n0": 6.5, "n2": 5.0}
        listed = self.successResultOf(nodes.list())
        self.assertEqual([(n["name"], n["state"], n["workers"], n["self"]) for n in listed],
                         [("n0", "down", 3, False), ("n1", "up", 2, True), ("n2", "up", 0, False)])
        self.assertEqual(listed[1]["endpoints"], {"e1": 2})
        self.assertEqual(listed[1]["address"], "127.0.0.1:9080")
        self.assertEqual(set(listed[1]), {"name", "address", "admin_address", "version", "started_at",
                                          "last_seen", "state", "workers", "endpoints", "self"})

    def test_list_before_first_heartbeat(self) -> None:
        """This node is listed even before its first heartbeat is written."""
        listed = self.successResultOf(self.directory().list())
        self.assertEqual([(n["name"], n["self"], n["last_seen"]) for n in listed], [("n1", True, None)])

    def test_not_shared(self) -> None:
        """With a store that is not shared: no heartbeat, and the list is this node from memory."""
        nodes = self.directory(shared=False)
        nodes.start()
        self.assertEqual(self.store.beats, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        (node,) = self.successResultOf(nodes.list())
        self.assertEqual((node["name"], node["state"], node["workers"], node["self"]), ("n1", "up", 2, True))
