"""
The deployments serving an endpoint's ``traffic_split`` (admin/deployments.py):
a pool per version beside the running one, the split target placed once they
are ready, new weights over the same pools, pools no longer named drained,
a version that cannot be served refused in the record, ``clear_split``; with
scripted pools, a dict store and the real route table and ledger.
"""

from typing import Any, Optional

from twisted.internet.defer import DeferredLock, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.admin.deployments import Deployments
from edgegw_tx.admin.ledger import ArtifactLedger
from edgegw_tx.gateway.routes import Match
from edgegw_tx.gateway.split import SplitTarget
from edgegw_tx.policy import model
from tests.support.control import DesiredRecords, FakeBinaries, LoggedRoutes, ScriptedPool
from tests.test_admin_deployments import record

Record = dict[str, Any]

A, B, C = "aaaa1111", "bbbb2222", "cccc3333"


def split(*weights: tuple[str, int], sticky: Optional[str] = None) -> dict[str, Any]:
    """A traffic_split part over these (version prefix, weight) pairs."""
    part: dict[str, Any] = {"versions": [{"version": v, "weight": w} for v, w in weights]}
    if sticky:
        part["sticky"] = sticky
    return part


class SplitDeploymentTests(unittest.TestCase):
    """An endpoint whose effective policy has a traffic_split."""

    def setUp(self) -> None:
        self.events: list[tuple[str, Optional[str]]] = []
        self.store = DesiredRecords()
        self.binaries = FakeBinaries(A, B, C)
        self.ledger = ArtifactLedger(self.store, self.binaries, keep_versions=10)
        self.routes = LoggedRoutes(self.events)
        self.pools: list[ScriptedPool] = []
        self.fail_version: Optional[str] = None
        self.logged: list[tuple[str, str]] = []
        self.lock = DeferredLock()
        self.deployments = Deployments(
            self.store,
            self.routes,
            self.make_pool,
            self.ledger,
            lambda endpoint_id: lambda stream, line, trace_id=None: self.logged.append((stream, line)),
            lambda rec: succeed(None),
            lambda r: str(r["path"]),
            self.lock.run,
            Clock(),
            policy_of=self.policy_of,
        )
        self.store.rows["e1"] = [A, B, C]

    def make_pool(self, rec: Record, binary: str, log: Any, version: Optional[str] = None) -> ScriptedPool:
        """A scripted pool; the version ``fail_version`` fails to start."""
        pool = ScriptedPool(self.events, rec, version)
        if version == self.fail_version:
            pool.fail = RuntimeError("exit status 101")
        self.pools.append(pool)
        return pool

    def policy_of(self, rec: Record) -> model.Effective:
        """The endpoint's stored policy, all its own."""
        parts = {k: v for k, v in (rec.get("policy") or {}).items() if v is not None}
        return model.Effective(parts, {name: "endpoint" for name in parts})

    def start(self, part: Optional[dict[str, Any]] = None) -> None:
        """Start e1 on A with this traffic_split stored."""
        self.store.records["e1"] = record("e1", policy={"traffic_split": part} if part else {})
        self.successResultOf(self.deployments.start(dict(self.store.records["e1"]), A))

    def change(self, part: Optional[dict[str, Any]]) -> None:
        """Store a new traffic_split for e1 and reroute it as a routing write, as a policy write does."""
        self.store.records["e1"]["policy"] = {"traffic_split": part} if part else {}
        self.successResultOf(self.lock.run(self.deployments.reroute, [dict(self.store.records["e1"])]))

    def target(self) -> Any:
        """What the route of e1 leads to."""
        found = self.routes.match("example.com", "GET", "/e1")
        assert isinstance(found, Match)
        return found.target

    def pool(self, version: str) -> ScriptedPool:
        """The last pool made for ``version``."""
        return [p for p in self.pools if p.version == version][-1]

    def test_a_split_starts_a_pool_per_version_then_takes_the_route(self) -> None:
        """Each version gets its pool; the route leads to a split target over them once all are ready."""
        self.start(split(("aaaa111", 90), ("bbbb222", 10)))
        # (The scripted pools are ready at once, so B is ready before A's first route is placed.)
        self.assertEqual(
            self.events, [("start", A), ("ready", A), ("start", B), ("ready", B), ("route", A), ("route", None)]
        )
        target = self.target()
        self.assertIsInstance(target, SplitTarget)
        self.assertEqual(target.choices(), [(A, 90), (B, 10)])
        self.assertEqual(target.pools(), [self.pool(A), self.pool(B)])
        self.assertEqual(self.ledger.in_use(), {A, B})

    def test_the_view_shows_traffic_and_every_pools_workers(self) -> None:
        """``live`` shows each version's weight and requests served, and the workers of all the split's pools."""
        self.start(split((A, 90), (B, 10)))
        self.target().submit({"headers": {}}, lambda _: None)  # ScriptedPool has no submit: request is used
        live = self.deployments.live("e1")
        self.assertEqual(sum(t["served"] for t in live.traffic), 1)
        self.assertEqual([(t["version"], t["weight"]) for t in live.traffic], [(A[:12], 90), (B[:12], 10)])
        self.assertEqual({w["version"] for w in live.workers}, {A, B})

    def test_pool_stats_cover_the_splits_pools(self) -> None:
        """The gateway's worker totals (``pool_stats``) count the pools a split adds, as they run workers."""
        self.start(split((A, 90), (B, 10)))
        self.assertEqual(len(self.deployments.pool_stats()), 2)

    def test_new_weights_are_a_new_target_over_the_same_pools(self) -> None:
        """Changed weights place a new split target; no pool starts or stops; counts go on."""
        self.start(split((A, 90), (B, 10)))
        old = self.target()
        old.submit({"headers": {}}, lambda _: None)
        del self.events[:]
        self.change(split((A, 50), (B, 50)))
        new = self.target()
        self.assertIsNot(new, old)
        self.assertEqual(new.choices(), [(A, 50), (B, 50)])
        self.assertEqual(new.pools(), old.pools())
        self.assertEqual(self.events, [("route", None)])
        self.assertEqual(sum(t["served"] for t in self.deployments.traffic("e1")), 1)

    def test_a_version_left_out_is_drained_after_the_new_target_is_placed(self) -> None:
        """B replaced by C: C's pool starts, the split takes the route, then B's pool stops and its claim goes."""
        self.start(split((A, 90), (B, 10)))
        del self.events[:]
        self.change(split((A, 80), (C, 20)))
        # The A/B split is placed again while C starts (B is not drained), then A/C, then B stops.
        self.assertEqual(
            self.events, [("start", C), ("ready", C), ("route", None), ("route", None), ("stop", B)]
        )
        self.assertEqual(self.target().choices(), [(A, 80), (C, 20)])
        self.assertEqual(self.ledger.in_use(), {A, C})

    def test_a_split_cleared_routes_the_running_pool_and_stops_the_others(self) -> None:
        """Without traffic_split the route leads to the running pool again and the extra pools are drained."""
        self.start(split((A, 90), (B, 10)))
        self.change(None)
        self.assertIs(self.target(), self.pool(A))
        self.assertEqual(self.events[-2:], [("route", A), ("stop", B)])
        self.assertEqual(self.ledger.in_use(), {A})
        self.assertEqual(self.deployments.traffic("e1"), [])

    def test_a_missing_binary_is_said_and_the_running_version_serves(self) -> None:
        """A version whose binary is gone: not applied, last_error and the log say so, A serves everything."""
        self.binaries.stored.discard(B)
        self.start(split((A, 90), (B, 10)))
        self.assertIs(self.target(), self.pool(A))
        error = self.store.records["e1"]["last_error"]
        self.assertIn("traffic_split not applied", error)
        self.assertIn("bbbb2222", error)
        self.assertIn(("gateway", error), self.logged)
        self.assertEqual(self.ledger.in_use(), {A})
        self.assertEqual(self.deployments.traffic("e1"), [])
        self.flushLoggedErrors()

    def test_an_unknown_version_is_said(self) -> None:
        """A version that is none of the endpoint's: not applied, last_error names it and where versions are listed."""
        self.start(split((A, 90), ("dddd444", 10)))
        self.assertIs(self.target(), self.pool(A))
        error = self.store.records["e1"]["last_error"]
        self.assertIn("dddd444 is not one of this endpoint's versions", error)
        self.assertIn("/api/endpoints/e1/versions", error)
        self.flushLoggedErrors()

    def test_workers_failing_to_start_are_said_and_stopped(self) -> None:
        """A version whose workers fail to start: its pool is stopped, its claim released, the error said."""
        self.fail_version = B
        self.start(split((A, 90), (B, 10)))
        self.assertIs(self.target(), self.pool(A))
        self.assertIn(("stop", B), self.events)
        self.assertIn("exit status 101", self.store.records["e1"]["last_error"])
        self.assertEqual(self.ledger.in_use(), {A})
        self.flushLoggedErrors()

    def test_stop_stops_every_pool_of_the_split(self) -> None:
        """Stopping the endpoint stops the running pool and the split's, and releases every claim."""
        self.start(split((A, 90), (B, 10)))
        self.successResultOf(self.deployments.stop(dict(self.store.records["e1"])))
        self.assertIn(("stop", A), self.events)
        self.assertIn(("stop", B), self.events)
        self.assertEqual(self.ledger.in_use(), set())
        self.assertEqual(self.deployments.traffic("e1"), [])

    def test_a_switch_of_the_running_version_keeps_the_split(self) -> None:
        """replace() on the same version (a settings change) puts the new pool in the split, the old drained."""
        self.start(split((A, 90), (B, 10)))
        before = self.pool(A)
        self.successResultOf(self.deployments.replace(dict(self.store.records["e1"]), A))
        self.assertEqual(self.target().pools(), [self.pool(A), self.pool(B)])
        self.assertIsNot(self.pool(A), before)

    def test_new_settings_renew_every_pool_of_the_split(self) -> None:
        """replace() for new settings starts a new pool of each split version too, moves the split to it, drains the old."""
        self.start(split((A, 90), (B, 10)))
        old_a, old_b = self.pool(A), self.pool(B)
        self.store.records["e1"]["settings"] = {"max_instances": 2}
        self.successResultOf(self.deployments.replace(dict(self.store.records["e1"]), A))
        self.assertEqual(self.target().pools(), [self.pool(A), self.pool(B)])
        self.assertIsNot(self.pool(B), old_b)
        self.assertEqual(self.pool(B).record["settings"], {"max_instances": 2})
        self.assertEqual(self.events[-2:], [("route", None), ("stop", B)])
        self.assertIn(("stop", A), self.events)
        self.assertIsNot(self.pool(A), old_a)
        self.assertEqual(self.ledger.in_use(), {A, B})

    def test_new_settings_that_fail_leave_the_split_pool_serving(self) -> None:
        """A split version's new workers failing to start: its old pool stays in the split, the new one stopped."""
        self.start(split((A, 90), (B, 10)))
        old_b = self.pool(B)
        self.fail_version = B
        self.store.records["e1"]["settings"] = {"max_instances": 2}
        self.successResultOf(self.deployments.replace(dict(self.store.records["e1"]), A))
        self.assertIn(old_b, self.target().pools())
        self.assertEqual(self.events[-1], ("stop", B))
        self.assertEqual(self.ledger.in_use(), {A, B})
        self.flushLoggedErrors()

    def test_clear_split_stores_null_and_reroutes(self) -> None:
        """clear_split drops traffic_split from the stored policy (other parts kept) and routes the running pool."""
        self.start(split((A, 90), (B, 10)))
        self.store.records["e1"]["policy"]["limits"] = {"timeout": 5}
        rec = self.successResultOf(self.deployments.clear_split(dict(self.store.records["e1"])))
        self.assertEqual(rec["policy"], {"limits": {"timeout": 5}})
        self.assertIs(self.target(), self.pool(A))
        self.assertEqual(self.ledger.in_use(), {A})

    def test_clear_split_keeps_the_stored_parts_not_the_ones_passed(self) -> None:
        """clear_split rewrites the policy as stored (a secret masked in the record passed stays unmasked)."""
        self.start(split((A, 90), (B, 10)))
        self.store.records["e1"]["policy"]["auth"] = {"type": "jwt", "secret": "s3cret"}
        passed = dict(self.store.records["e1"], policy={"traffic_split": split((A, 100)), "auth": {"secret": "********"}})
        rec = self.successResultOf(self.deployments.clear_split(passed))
        self.assertEqual(rec["policy"], {"auth": {"type": "jwt", "secret": "s3cret"}})

    def test_clear_split_without_a_split_writes_nothing(self) -> None:
        """An endpoint with no traffic_split is not written by clear_split."""
        self.start()
        writes = len(self.store.writes)
        self.successResultOf(self.deployments.clear_split(dict(self.store.records["e1"])))
        self.assertEqual(len(self.store.writes), writes)
