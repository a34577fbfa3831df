"""
A traffic split with ``--processes N`` (processes/proxies.py, dataplane.py):
the mirrored route table sends a split target as its versions' pool numbers,
weights and sticky; each data-plane process splits over its own pools,
counts what it gave each pool, and the control process's pool proxies add
those counts up; over in-memory data-plane processes running the real DataPlane.
"""

import random

from twisted.trial import unittest

from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.gateway.split import Served, SplitTarget
from edgegw_tx.processes.group import ProcessGroup
from edgegw_tx.processes.proxies import MirroredRoutes, PoolProxy
from tests.support.processes import LoopbackReactor


class SplitAcrossProcessesTests(unittest.TestCase):
    def setUp(self):
        self.reactor = LoopbackReactor()
        self.group = ProcessGroup(2, "tcp:9080", "/data", environ={}, reactor=self.reactor)
        self.group.startService()
        self.addCleanup(self.group.stopService)
        self.routes = MirroredRoutes(self.group, RouteTable())
        self.a, self.b = self.proxy("aaaa1111"), self.proxy("bbbb2222")

    def proxy(self, version):
        """A started pool proxy of ``version``."""
        proxy = PoolProxy(
            self.group, "hello", ["/artifacts/%s/handler" % version], endpoint_id="e1", version=version, min_instances=1
        )
        self.successResultOf(proxy.start())
        return proxy

    def split(self, weights, sticky=None):
        """A split target over the two proxies, as the deployments make it."""
        choices = [("aaaa1111", weights[0], self.a), ("bbbb2222", weights[1], self.b)]
        return SplitTarget("hello", choices, Served(), sticky, random.Random(1).random)

    def targets(self):
        """What GET /s leads to in each data-plane process."""
        return [process.routes.match("x", "GET", "/s").target for process in self.reactor.processes]

    def test_each_process_splits_over_its_own_pools(self):
        """A split placed here is, in every process, a split target over that process's pools with the weights and sticky."""
        self.successResultOf(self.routes.place("e1", [("*", "GET", "/s")], self.split((90, 10), "cookie:sid")))
        for process, target in zip(self.reactor.processes, self.targets()):
            self.assertIsInstance(target, SplitTarget)
            pools = process.plane._pools
            self.assertEqual(target.pools(), [pools[self.a.number], pools[self.b.number]])
            self.assertEqual([w for _, w in target.choices()], [90, 10])
            self.assertEqual(target.sticky, "cookie:sid")

    def test_served_counts_add_up_over_processes(self):
        """Requests each process's split gave a pool reach the control process as that proxy's split_served."""
        self.successResultOf(self.routes.place("e1", [("*", "GET", "/s")], self.split((50, 50))))
        given = 0
        for target in self.targets():
            for _ in range(100):
                self.successResultOf(target.request({"headers": {}}))
                given += 1
        self.successResultOf(self.a.refresh())
        self.assertEqual(self.a.stats()["split_served"] + self.b.stats()["split_served"], given)
        self.assertGreater(self.b.stats()["split_served"], 0)

    def test_placing_the_pool_alone_ends_the_split_and_its_counts(self):
        """The route placed at one pool again leads there in every process, and the pools' split counts are dropped."""
        self.successResultOf(self.routes.place("e1", [("*", "GET", "/s")], self.split((50, 50))))
        for target in self.targets():
            self.successResultOf(target.request({"headers": {}}))
        self.successResultOf(self.routes.place("e1", [("*", "GET", "/s")], self.a))
        for process, target in zip(self.reactor.processes, self.targets()):
            self.assertIs(target, process.plane._pools[self.a.number])
        self.successResultOf(self.a.refresh())
        self.assertNotIn("split_served", self.a.stats())
        self.assertNotIn("split_served", self.b.stats())
