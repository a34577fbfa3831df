"""
The deployments on their own (edgegw_tx/admin/deployments.py): the zero-drop
switch order, a failed start that leaves the old pool serving, drains, claims
on the artifact ledger and route moves, with a fake pool, a fake store and
the real route table and ledger (over fake binaries).
"""

from typing import Any, Optional

from twisted.internet.defer import DeferredLock, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.admin.deployments import Deployments
from edgegw_tx.admin.errors import Conflict, WorkersFailed
from edgegw_tx.admin.ledger import ArtifactLedger
from edgegw_tx.gateway.routes import Match
from tests.support.control import FakeBinaries, FakeVersionStore, LoggedRoutes, RecordStore, ScriptedPool

Record = dict[str, Any]


def record(endpoint_id: str = "e1", **fields: Any) -> Record:
    """A stored endpoint record with what a deployment reads."""
    base = {
        "id": endpoint_id,
        "name": "ep-" + endpoint_id,
        "enabled": True,
        "status": "compiled",
        "deployed": None,
        "last_error": None,
        "method": "GET",
        "domain": "*",
        "path": "/" + endpoint_id,
        "settings": {},
    }
    base.update(fields)
    return base


class DeploymentsTests(unittest.TestCase):
    """Starting, switching, draining and stopping pools of endpoints."""

    def setUp(self) -> None:
        self.events: list[tuple[str, Optional[str]]] = []
        self.pools: list[ScriptedPool] = []
        self.next_fail: Optional[Exception] = None
        self.hold_stop = False
        self.store = RecordStore()
        self.binaries = FakeBinaries("a", "b")
        self.ledger = ArtifactLedger(FakeVersionStore(), self.binaries, keep_versions=10)
        self.routes = LoggedRoutes(self.events)
        self.routing_lock = DeferredLock()
        self.clock = Clock()
        self.uids: list[str] = []
        self.deployments = Deployments(
            self.store,
            self.routes,
            self.make_pool,
            self.ledger,
            lambda endpoint_id: None,
            self.worker_uid,
            lambda r: str(r["path"]),
            self.routing_lock.run,
            self.clock,
        )

    def make_pool(self, rec: Record, binary: str, log: Any, version: Optional[str] = None) -> ScriptedPool:
        """The pool factory: a scripted pool, failing if ``next_fail`` is set."""
        pool = ScriptedPool(self.events, rec, version)
        pool.fail, self.next_fail = self.next_fail, None
        pool.hold_stop = self.hold_stop
        self.pools.append(pool)
        return pool

    def worker_uid(self, rec: Record) -> "Deferred[Optional[int]]":
        """The uid seam: logs who asked, answers 61001."""
        self.uids.append(rec["id"])
        return succeed(61001)

    def stored(self, endpoint_id: str = "e1", **fields: Any) -> Record:
        """Put a record in the store and answer it."""
        self.store.records[endpoint_id] = record(endpoint_id, **fields)
        return dict(self.store.records[endpoint_id])

    def target(self, path: str) -> Any:
        """The pool the route table sends ``GET path`` to, or None."""
        found = self.routes.match("example.com", "GET", path)
        return found.target if isinstance(found, Match) else None

    def test_a_switch_starts_the_new_pool_then_routes_then_drains_the_old(self) -> None:
        """replace(): new pool started and ready, route switched, old pool stopped, in that order."""
        self.successResultOf(self.deployments.start(self.stored(), "a"))
        del self.events[:]
        rec = self.successResultOf(self.deployments.replace(self.store.records["e1"], "b"))
        self.assertEqual(self.events, [("start", "b"), ("ready", "b"), ("route", "b"), ("stop", "a")])
        self.assertEqual((rec["status"], rec["deployed"]), ("running", "b"))
        self.assertEqual(self.deployments.digest("e1"), "b")
        self.assertEqual(self.ledger.in_use(), {"b"})

    def test_a_failed_start_leaves_the_old_pool_serving(self) -> None:
        """When the new pool fails, the old one keeps route and claim; the record says why."""
        self.successResultOf(self.deployments.start(self.stored(), "a"))
        old = self.pools[0]
        del self.events[:]
        self.next_fail = RuntimeError("boom")
        failure = self.failureResultOf(self.deployments.replace(self.store.records["e1"], "b"), WorkersFailed)
        self.assertIn("still serves version a", failure.value.message)
        self.assertEqual(self.events, [("start", "b"), ("stop", "b")])
        self.assertIs(self.target("/e1"), old)
        self.assertEqual(self.deployments.pool_stats(), [old.stats()])
        self.assertEqual(self.deployments.digest("e1"), "a")
        self.assertEqual(self.ledger.in_use(), {"a"})
        stored = self.store.records["e1"]
        self.assertEqual((stored["status"], stored["deployed"]), ("running", "a"))
        self.assertIn("boom", stored["last_error"])

    def test_a_first_start_that_fails_marks_the_record_error(self) -> None:
        """With nothing serving, a failed start sets status error and releases its claim."""
        self.next_fail = RuntimeError("no exec")
        self.failureResultOf(self.deployments.start(self.stored(), "a"), WorkersFailed)
        self.assertEqual(self.store.records["e1"]["status"], "error")
        self.assertFalse(self.deployments.serving("e1"))
        self.assertEqual(self.ledger.in_use(), set())

    def test_a_draining_pool_keeps_its_claim_and_shows_its_workers(self) -> None:
        """Until a drained pool has stopped, its digest stays claimed and its workers stay visible."""
        self.successResultOf(self.deployments.start(self.stored(), "a"))
        self.pools[0].hold_stop = True
        switching = self.deployments.replace(self.store.records["e1"], "b")
        self.assertNoResult(switching)
        self.assertEqual(self.ledger.in_use(), {"a", "b"})
        versions = [w["version"] for w in self.deployments.live("e1").workers]
        self.assertEqual(versions, ["b", "a"])
        stopping = self.pools[0].stopping
        assert stopping is not None
        stopping.callback(None)
        self.successResultOf(switching)
        self.assertEqual(self.ledger.in_use(), {"b"})
        self.assertEqual([w["version"] for w in self.deployments.live("e1").workers], ["b"])

    def test_the_route_switch_is_a_routing_write(self) -> None:
        """A started pool takes its route only once the routing lock is free, at the route stored then."""
        self.successResultOf(self.routing_lock.acquire())
        starting = self.deployments.start(self.stored(), "a")
        self.assertEqual(self.events, [("start", "a"), ("ready", "a")])
        self.store.records["e1"]["path"] = "/moved"
        self.routing_lock.release()
        self.successResultOf(starting)
        self.assertIsNotNone(self.target("/moved"))
        self.assertIsNone(self.target("/e1"))

    def test_start_refuses_a_disabled_or_uncompiled_endpoint(self) -> None:
        """A disabled endpoint, or a digest whose binary is gone, is a 409 and claims nothing."""
        self.failureResultOf(self.deployments.start(self.stored(enabled=False), "a"), Conflict)
        self.failureResultOf(self.deployments.start(self.stored(), "gone"), Conflict)
        self.failureResultOf(self.deployments.start(self.stored(), None), Conflict)
        self.assertEqual((self.pools, self.ledger.in_use()), ([], set()))

    def test_stop_takes_the_route_and_releases_the_claim(self) -> None:
        """stop(): no route, no pool, the digest no longer claimed, the record stopped."""
        self.successResultOf(self.deployments.start(self.stored(), "a"))
        rec = self.successResultOf(self.deployments.stop(self.store.records["e1"]))
        self.assertEqual(rec["status"], "stopped")
        self.assertIsNone(self.target("/e1"))
        self.assertEqual((self.deployments.running_count(), self.ledger.in_use()), (0, set()))

    def test_stop_all_keeps_the_routes_and_the_records(self) -> None:
        """At shutdown every pool stops and its claim goes, but routes and stored status stay."""
        self.successResultOf(self.deployments.start(self.stored("e1"), "a"))
        self.successResultOf(self.deployments.start(self.stored("e2"), "b"))
        self.successResultOf(self.deployments.stop_all())
        self.assertEqual([e for e in self.events if e[0] == "stop"], [("stop", "a"), ("stop", "b")])
        self.assertIsNotNone(self.target("/e1"))
        self.assertEqual(self.store.records["e1"]["status"], "running")
        self.assertEqual(self.ledger.in_use(), set())

    def test_reroute_lets_two_endpoints_swap_routes(self) -> None:
        """A batch moving one endpoint onto the route the other leaves is placed in a second round."""
        self.successResultOf(self.deployments.start(self.stored("e1"), "a"))
        self.successResultOf(self.deployments.start(self.stored("e2"), "b"))
        first = self.pools[0]
        second = self.pools[1]
        moved = [record("e1", path="/e2"), record("e2", path="/e3")]
        self.successResultOf(self.deployments.reroute(moved))
        self.assertIs(self.target("/e2"), first)
        self.assertIs(self.target("/e3"), second)

    def test_the_worker_uid_is_asked_at_each_start(self) -> None:
        """The pool's record carries the endpoint's worker uid from the records' seam."""
        self.successResultOf(self.deployments.start(self.stored(), "a"))
        self.assertEqual((self.uids, self.pools[0].record["worker_uid"]), (["e1"], 61001))

    def test_without_persist_start_replace_and_stop_write_nothing(self) -> None:
        """``persist=False`` (a cluster's reconciliation) starts, switches and stops pools without a store write."""
        stored = self.stored()
        before = dict(stored)
        rec = self.successResultOf(self.deployments.start(stored, "a", persist=False))
        self.assertEqual(rec["status"], "compiled")
        self.successResultOf(self.deployments.replace(stored, "b", persist=False))
        self.assertEqual(self.deployments.digest("e1"), "b")
        self.successResultOf(self.deployments.stop({"id": "e1"}, persist=False))
        self.assertFalse(self.deployments.serving("e1"))
        self.assertEqual(self.store.records["e1"], before)

    def test_a_failed_start_without_persist_is_raised_not_written(self) -> None:
        """A failed start with ``persist=False`` raises ``WorkersFailed`` and leaves the record as it was."""
        stored = self.stored()
        self.next_fail = RuntimeError("no exec")
        failure = self.failureResultOf(self.deployments.start(stored, "a", persist=False), WorkersFailed)
        self.assertIn("no exec", failure.value.message)
        self.assertEqual(self.store.records["e1"], stored)
        self.assertEqual(self.ledger.in_use(), set())

    def test_what_a_pool_started_with_and_is_routed_at_is_remembered(self) -> None:
        """The settings a pool started with and the route it has are kept until it stops."""
        self.successResultOf(self.deployments.start(self.stored(settings={"instances": 2}), "a"))
        self.assertEqual(self.deployments.started_settings("e1"), {"instances": 2})
        self.assertEqual(self.deployments.routed("e1"), (("*", "GET", "/e1"),))
        self.successResultOf(self.deployments.reroute([record("e1", path="/moved")]))
        self.assertEqual(self.deployments.routed("e1"), (("*", "GET", "/moved"),))
        self.assertEqual(self.deployments.workers_by_endpoint(), {"e1": 1})
        self.successResultOf(self.deployments.stop(self.store.records["e1"]))
        self.assertEqual((self.deployments.started_settings("e1"), self.deployments.routed("e1")), (None, None))

    def test_reroute_untangles_two_endpoints_that_swapped_routes(self) -> None:
        """Two routes exchanged in one batch (a clash either way round) both end up where their records say."""
        self.successResultOf(self.deployments.start(self.stored("e1"), "a"))
        self.successResultOf(self.deployments.start(self.stored("e2"), "b"))
        first, second = self.pools
        self.successResultOf(self.deployments.reroute([record("e1", path="/e2"), record("e2", path="/e1")]))
        self.assertIs(self.target("/e2"), first)
        self.assertIs(self.target("/e1"), second)


class PolicyPlacementTests(unittest.TestCase):
    """The deployments place an endpoint's effective policy with its routes (interface 3)."""

    def setUp(self) -> None:
        from edgegw_tx.policy import model

        self.model = model
        self.events: list[tuple[str, Optional[str]]] = []
        self.store = RecordStore()
        self.ledger = ArtifactLedger(FakeVersionStore(), FakeBinaries("a"), keep_versions=10)
        self.routes = LoggedRoutes(self.events)
        self.policies: dict[str, dict[str, Any]] = {}
        self.pools: list[ScriptedPool] = []
        self.deployments = Deployments(
            self.store,
            self.routes,
            self.make_pool,
            self.ledger,
            lambda endpoint_id: None,
            lambda rec: succeed(None),
            lambda r: str(r["path"]),
            DeferredLock().run,
            Clock(),
            policy_of=self.policy_of,
        )

    def make_pool(self, rec: Record, binary: str, log: Any, version: Optional[str] = None) -> ScriptedPool:
        """A scripted pool with a settings timeout of 30 s, as a WorkerPool has."""
        pool = ScriptedPool(self.events, rec, version)
        pool.timeout = 30.0  # type: ignore[attr-defined]
        self.pools.append(pool)
        return pool

    def policy_of(self, rec: Record) -> Any:
        """The effective policy the test set for the endpoint, all from the endpoint."""
        parts = self.policies.get(rec["id"], {})
        return self.model.Effective(dict(parts), {name: "endpoint" for name in parts})

    def start(self) -> None:
        """Start endpoint e1 on version a."""
        self.store.records["e1"] = record("e1")
        self.successResultOf(self.deployments.start(dict(self.store.records["e1"]), "a"))

    def placed(self) -> Any:
        """The policy e1's routes carry in the table."""
        return self.routes.policy_of("e1")

    def test_no_policy_places_none(self) -> None:
        """An endpoint without a policy is placed with None and routed as before (no policy in route_of)."""
        self.start()
        self.assertIsNone(self.placed())
        self.assertEqual(self.deployments.routed("e1"), (("*", "GET", "/e1"),))

    def test_policy_compiled_and_placed(self) -> None:
        """An effective policy is compiled once and placed with the routes; the source travels with it."""
        self.policies["e1"] = {"cors": {"allow_origins": ["https://a.example"]}}
        self.start()
        compiled = self.placed()
        self.assertIsInstance(compiled, self.model.CompiledPolicy)
        self.assertEqual(compiled.source["parts"], self.policies["e1"])
        self.assertEqual(compiled.source["owners"]["endpoint"], "endpoint:e1")

    def test_policy_change_is_a_drift(self) -> None:
        """A changed policy makes route_of differ from routed (reconcile notices); reroute places the new one."""
        self.start()
        self.policies["e1"] = {"ip": {"deny": ["192.0.2.0/24"]}}
        rec = self.store.records["e1"]
        self.assertNotEqual(self.deployments.routed("e1"), self.deployments.route_of(rec))
        self.successResultOf(self.deployments.reroute([rec]))
        self.assertEqual(self.deployments.routed("e1"), self.deployments.route_of(rec))
        self.assertIsNotNone(self.placed())

    def test_limits_timeout_is_the_pools_while_it_holds(self) -> None:
        """limits.timeout replaces the pool's timeout when placed; without it the settings' timeout is back."""
        self.policies["e1"] = {"limits": {"timeout": 2.5}}
        self.start()
        self.assertEqual(self.pools[0].timeout, 2.5)  # type: ignore[attr-defined]
        self.policies["e1"] = {}
        self.successResultOf(self.deployments.reroute([self.store.records["e1"]]))
        self.assertEqual(self.pools[0].timeout, 30.0)  # type: ignore[attr-defined]

    def test_a_policy_that_cannot_be_built_refuses(self) -> None:
        """An api_key policy without consumers here is placed as a 503 for every request, never as no policy."""
        self.policies["e1"] = {"auth": {"type": "api_key"}}
        self.start()
        from edgegw_tx.policy.part import PolicyRequest

        verdict = self.placed().check(PolicyRequest("GET", "/e1", {}, "192.0.2.1"), [])
        self.assertEqual(verdict[0], 503)
        self.assertIn(b"consumers", verdict[2])
        self.flushLoggedErrors()
