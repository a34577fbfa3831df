"""
Policies and consumers with ``--processes N``: the mirrored table sends what
a policy was compiled from, each data-plane process compiles it with its own
context, the consumers' key hashes reach every process (and a respawned one).
Unit tests over the loopback process group and a data plane on fakes.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.policy import model, placing
from edgegw_tx.policy.consumers import ConsumerKeys, generate_key, hash_key
from edgegw_tx.policy.part import PolicyContext, PolicyRequest
from edgegw_tx.processes.dataplane import DataPlane
from edgegw_tx.processes.group import ProcessGroup
from edgegw_tx.processes.proxies import MirroredRoutes, PoolProxy
from edgegw_tx.processes.state import PlaneState
from tests.support.processes import FakeRegistry, FakeWorkerPool, LoopbackReactor

CORS = {"cors": {"allow_origins": ["https://a.example"]}}
OWNERS = {"endpoint": "endpoint:e1", "collection": "collection:None", "domain": "domain:*"}


def effective(parts: dict[str, Any]) -> model.Effective:
    """``parts`` as an endpoint's own policy."""
    return model.Effective(dict(parts), {name: "endpoint" for name in parts})


class TimedPool(FakeWorkerPool):
    """A fake pool with ``WorkerPool``'s ``timeout``."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.timeout = float(options.get("timeout", 30.0))


class DataPlanePolicyTests(unittest.TestCase):
    """A data-plane process compiles a route's policy itself and keeps its consumers' keys."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.routes = RouteTable()
        self.pools: list[TimedPool] = []
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, write)
        self.plane = DataPlane(
            self.routes,
            object(),
            FakeRegistry(),
            listen_fd=read,
            family=socket.AF_INET,
            pool_factory=self.pool,
            reactor=self.reactor,
        )
        self.commands = self.plane.responders()
        self.successResultOf(
            self.commands["start_pool"](pool=1, endpoint_id="e1", name="e", argv=["/h"], options={"timeout": 30.0})
        )

    def pool(self, *args: Any, **options: Any) -> TimedPool:
        """The pool factory."""
        made = TimedPool(*args, **options)
        self.pools.append(made)
        return made

    def route(self, parts: dict[str, Any] | None) -> None:
        """The route command as the control process sends it."""
        policy = None if parts is None else placing.wire(effective(parts), OWNERS)
        self.commands["route"](key="e1", routes=[["*", "GET", "/a"]], pool=1, policy=policy)

    def test_route_compiles_the_policy_here(self) -> None:
        """A route command with a policy places it compiled with this process's context."""
        self.route(CORS)
        placed = self.routes.match("x", "GET", "/a").policy  # type: ignore[union-attr]
        self.assertIsInstance(placed, model.CompiledPolicy)
        self.assertEqual(placed.source["parts"], CORS)

    def test_route_without_policy(self) -> None:
        """A route command without one places None."""
        self.route(None)
        self.assertIsNone(self.routes.match("x", "GET", "/a").policy)  # type: ignore[union-attr]

    def test_consumers_reach_api_key_checks(self) -> None:
        """The consumers command loads this process's keys: an api_key route knows the key afterwards."""
        key = generate_key()
        self.route({"auth": {"type": "api_key"}})
        check = self.routes.match("x", "GET", "/a").policy  # type: ignore[union-attr]
        request = PolicyRequest("GET", "/a", {"x-api-key": key}, "192.0.2.1")
        self.assertEqual(check.check(request, [])[0], 401)
        self.commands["consumers"](records=[{"name": "acme", "enabled": True, "key_hashes": [hash_key(key)]}])
        request = PolicyRequest("GET", "/a", {"x-api-key": key}, "192.0.2.1")
        self.assertIsNone(check.check(request, []))
        self.assertEqual(request.headers["x-edgegw-consumer"], "acme")

    def test_limits_timeout_applies_to_the_local_pool(self) -> None:
        """limits.timeout becomes this process's pool's timeout; a route without it restores the settings'."""
        self.route({"limits": {"timeout": 1.5}})
        self.assertEqual(self.pools[0].timeout, 1.5)
        self.route(None)
        self.assertEqual(self.pools[0].timeout, 30.0)


class MirroredPolicyTests(unittest.TestCase):
    """The mirrored table sends the policy's source; every process compiles its own."""

    def setUp(self) -> None:
        self.reactor = LoopbackReactor()
        self.group = ProcessGroup(2, "tcp:9080", "/data", environ={}, reactor=self.reactor)
        self.group.startService()
        self.addCleanup(self.group.stopService)
        self.table = RouteTable()
        self.routes = MirroredRoutes(self.group, self.table)

    def proxy(self) -> PoolProxy:
        """A started pool proxy (one pool per process)."""
        proxy = PoolProxy(
            self.group, "hello", ["/h"], endpoint_id="e1", log=lambda *a: None, version="d1",
            cwd="/data/sandbox/e1", min_instances=1, max_instances=1,
        )
        self.successResultOf(proxy.start())
        return proxy

    def test_each_process_compiles_its_own(self) -> None:
        """The policy placed here is compiled anew in each process (own objects: node budgets per process)."""
        compiled = placing.placed(effective({"rate_limit": {"requests": 5, "per_seconds": 1}}), PolicyContext(
            self.reactor.seconds), OWNERS)
        self.successResultOf(self.routes.place("e1", [("*", "GET", "/a")], self.proxy(), compiled))
        self.assertIs(self.table.policy_of("e1"), compiled)
        seen = []
        for process in self.reactor.processes:
            theirs = process.routes.match("x", "GET", "/a").policy
            self.assertEqual(theirs.source, compiled.source)
            seen.append(theirs)
        self.assertEqual(len({id(p) for p in seen} | {id(compiled)}), 3)

    def test_consumers_replayed_to_a_respawn(self) -> None:
        """The last consumers sent are in the state a respawned process is given, before the routes."""
        state = PlaneState()
        state.apply("route", {"key": "e1", "routes": [], "pool": 1})
        state.apply("consumers", {"records": [{"name": "a", "enabled": True, "key_hashes": ["00"]}]})
        names = [command for command, _ in state.replay()]
        self.assertEqual(names, ["consumers", "route"])
        self.assertEqual(state.replay()[0][1]["records"][0]["name"], "a")

    def test_consumers_reach_every_process(self) -> None:
        """The consumers command loads the keys of every data-plane process."""
        key = generate_key()
        self.successResultOf(
            self.group.change("consumers", records=[{"name": "acme", "enabled": True, "key_hashes": [hash_key(key)]}])
        )
        for process in self.reactor.processes:
            keys: ConsumerKeys = process.plane.policy_context.consumers
            self.assertEqual(keys.lookup(key), "acme")


class ConsumerLoaderTests(unittest.TestCase):
    """The consumers' keys loaded from the store's records and handed to the data-plane processes."""

    def test_reload_loads_and_sends(self) -> None:
        """reload() reads the store's consumers (keys with key_hash), loads them here and sends the same records."""
        from twisted.internet.defer import succeed

        from edgegw_tx.policy.consumerload import ConsumerLoader

        key = generate_key()
        stored = [{"id": "c1", "name": "acme", "enabled": True, "keys": [{"id": "k1", "key_hash": hash_key(key)}]},
                  {"id": "c2", "name": "off", "enabled": False, "keys": []}]
        sent: list[Any] = []
        keys = ConsumerKeys()
        self.successResultOf(ConsumerLoader(keys, lambda: succeed(stored), sent.append).reload())
        self.assertEqual(keys.lookup(key), "acme")
        self.assertEqual(sent, [[{"name": "acme", "enabled": True, "key_hashes": [hash_key(key)]},
                                 {"name": "off", "enabled": False, "key_hashes": []}]])

    def test_no_source_loads_nothing(self) -> None:
        """A store without consumers: reload fires at once and the keys stay empty."""
        from edgegw_tx.policy.consumerload import ConsumerLoader

        keys = ConsumerKeys()
        self.successResultOf(ConsumerLoader(keys, None).reload())
        self.assertIsNone(keys.lookup("anything"))
