"""
Reconciling one node's pools with the cluster's desired state
(``EndpointManager.reconcile``, ``reconcile_all``, ``workers_by_endpoint``,
``restore(persist=False)``): another node's change is written straight into
a fake store, and the node's pools, routes and store writes are watched.
"""

from typing import Any, Optional

from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.admin.errors import WorkersFailed
from edgegw_tx.admin.logs import LogBook
from edgegw_tx.admin.manager import EndpointManager
from edgegw_tx.gateway.routes import Match
from tests.support.control import DesiredRecords, FakeBinaries, LoggedRoutes, ScriptedPool

Record = dict[str, Any]


def record(endpoint_id: str = "e1", **fields: Any) -> Record:
    """A stored endpoint record, running version ``a`` (the cluster wants it served)."""
    base = {
        "id": endpoint_id,
        "name": "ep-" + endpoint_id,
        "enabled": True,
        "status": "running",
        "deployed": "a",
        "artifact": "a",
        "last_error": None,
        "method": "GET",
        "domain": "*",
        "path": "/" + endpoint_id,
        "collection_id": None,
        "path_shape": "/" + endpoint_id,
        "settings": {"instances": 1},
    }
    base.update(fields)
    return base


class Services:
    """The service manager's seam: which endpoints it was told are deleted."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def endpoint_deleted(self, endpoint_id: str) -> None:
        """Log it."""
        self.deleted.append(endpoint_id)


class ReconcileTests(unittest.TestCase):
    """One node's ``EndpointManager`` following records another node wrote."""

    def setUp(self) -> None:
        self.events: list[tuple[str, Optional[str]]] = []
        self.pools: list[ScriptedPool] = []
        self.next_fail: Optional[Exception] = None
        self.store = DesiredRecords()
        self.binaries = FakeBinaries("a", "b")
        self.routes = LoggedRoutes(self.events)
        self.clock = Clock()
        self.logbook = LogBook(self.clock)
        self.services = Services()
        self.manager = EndpointManager(
            self.store,  # type: ignore[arg-type]
            self.binaries,
            self.routes,
            self.make_pool,
            self.logbook,
            services=self.services,
            reactor=self.clock,
        )

    def make_pool(self, rec: Record, binary: str, log: Any, version: Optional[str] = None) -> ScriptedPool:
        """The pool factory: a scripted pool, failing if ``next_fail`` is set."""
        pool = ScriptedPool(self.events, rec, version)
        pool.fail, self.next_fail = self.next_fail, None
        self.pools.append(pool)
        return pool

    def put(self, **fields: Any) -> Record:
        """Write a record as another node would (no write logged)."""
        rec = record(**fields)
        self.store.records[rec["id"]] = rec
        return rec

    def change(self, endpoint_id: str = "e1", **fields: Any) -> None:
        """Change a stored record as another node would."""
        self.store.records[endpoint_id].update(fields)

    def reconcile(self, endpoint_id: str = "e1") -> str:
        """Reconcile and fire at once."""
        outcome: str = self.successResultOf(self.manager.reconcile(endpoint_id))
        return outcome

    def served(self, path: str = "/e1") -> Any:
        """The pool routed at ``GET path``, or None."""
        found = self.routes.match(None, "GET", path)
        return found.target if isinstance(found, Match) else None

    def start_here(self) -> None:
        """Serve e1 on version ``a`` and forget the events so far."""
        self.put()
        self.assertEqual(self.reconcile(), "started")
        del self.events[:]

    def test_a_running_record_starts_a_pool_without_writing(self) -> None:
        """A record that should run and does not here is started on its deployed version; nothing is stored."""
        self.put()
        self.assertEqual(self.reconcile(), "started")
        self.assertEqual(self.events, [("start", "a"), ("ready", "a"), ("route", "a")])
        self.assertIs(self.served(), self.pools[0])
        self.assertEqual(self.store.writes, [])
        self.assertEqual(self.manager.workers_by_endpoint(), {"e1": 1})

    def test_a_new_deployed_version_switches_with_zero_drop(self) -> None:
        """Another deployed version: the new pool is ready before the route switches, then the old one drains."""
        self.start_here()
        self.change(deployed="b")
        self.assertEqual(self.reconcile(), "replaced")
        self.assertEqual(
            self.events, [("start", "b"), ("ready", "b"), ("route", "b"), ("stop", "a")]
        )
        self.assertIs(self.served(), self.pools[1])
        self.assertEqual(self.store.writes, [])
        self.assertEqual(self.manager.deployments.digest("e1"), "b")

    def test_changed_worker_settings_replace_the_pool_on_the_same_version(self) -> None:
        """A change of a worker setting starts a new pool on the same digest, then drains the old."""
        self.start_here()
        self.change(settings={"instances": 3})
        self.assertEqual(self.reconcile(), "replaced")
        self.assertEqual(
            self.events, [("start", "a"), ("ready", "a"), ("route", "a"), ("stop", "a")]
        )
        self.assertEqual(self.pools[1].record["settings"], {"instances": 3})
        self.assertEqual(self.reconcile(), "unchanged")

    def test_a_moved_route_is_rerouted_without_new_workers(self) -> None:
        """A new path moves the running pool's route; no worker starts or stops."""
        self.start_here()
        self.change(path="/moved", path_shape="/moved")
        self.assertEqual(self.reconcile(), "rerouted")
        self.assertEqual(self.events, [("route", "a")])
        self.assertIsNone(self.served("/e1"))
        self.assertIs(self.served("/moved"), self.pools[0])

    def test_two_endpoints_that_swapped_routes_both_move(self) -> None:
        """Routes swapped by another node move together in one batch (neither is left behind by a clash)."""
        self.put(endpoint_id="e1")
        self.put(endpoint_id="e2")
        self.successResultOf(self.manager.reconcile_all())
        self.change("e1", path="/e2", path_shape="/e2")
        self.change("e2", path="/e1", path_shape="/e1")
        self.assertEqual(self.reconcile("e1"), "rerouted")
        self.assertEqual(self.reconcile("e2"), "unchanged")
        self.assertIs(self.served("/e2"), self.pools[0])
        self.assertIs(self.served("/e1"), self.pools[1])

    def test_a_stopped_record_stops_the_pool_without_writing(self) -> None:
        """A record now ``stopped`` (or disabled) stops this node's pool; the record is not written."""
        self.start_here()
        self.change(status="stopped")
        self.assertEqual(self.reconcile(), "stopped")
        self.assertEqual(self.events, [("stop", "a")])
        self.assertIsNone(self.served())
        self.assertEqual(self.store.writes, [])
        self.assertEqual(self.manager.workers_by_endpoint(), {})
        self.assertEqual(self.reconcile(), "unchanged")

    def test_a_disabled_record_stops_the_pool(self) -> None:
        """Disabled counts as not wanted even while the status says running."""
        self.start_here()
        self.change(enabled=False)
        self.assertEqual(self.reconcile(), "stopped")

    def test_an_unchanged_record_changes_nothing(self) -> None:
        """A record that matches what runs here (or should not run and does not) is left alone."""
        self.start_here()
        self.assertEqual(self.reconcile(), "unchanged")
        self.put(endpoint_id="e2", status="stopped")
        self.assertEqual(self.reconcile("e2"), "unchanged")
        self.assertEqual(self.events, [])

    def test_a_deleted_record_stops_and_forgets_the_endpoint(self) -> None:
        """A record gone: pool stopped, log lines and registry bindings forgotten, its unused binary removed."""
        self.start_here()
        self.logbook.writer("e1")("stderr", "hello")
        del self.store.records["e1"]
        self.assertEqual(self.reconcile(), "gone")
        self.assertEqual(self.events, [("stop", "a")])
        self.assertIsNone(self.served())
        self.assertEqual(self.services.deleted, ["e1"])
        self.assertEqual(self.logbook.lines("e1"), [])
        self.assertEqual(self.binaries.removed, ["a"])
        self.assertEqual(self.store.writes, [])

    def test_a_failed_start_leaves_the_shared_record_untouched(self) -> None:
        """Workers that fail to start here raise; the record (everyone's desired state) is not written."""
        self.put()
        self.next_fail = RuntimeError("boom")
        failure = self.failureResultOf(self.manager.reconcile("e1"), WorkersFailed)
        self.assertIn("failed to start on this node", failure.value.message)
        self.assertEqual(self.store.writes, [])
        self.assertEqual(self.store.records["e1"]["status"], "running")
        self.assertIsNone(self.served())

    def test_a_failed_replace_keeps_the_old_pool(self) -> None:
        """A new version whose workers fail here: the old pool keeps the route, nothing is written."""
        self.start_here()
        self.change(deployed="b")
        self.next_fail = RuntimeError("boom")
        self.failureResultOf(self.manager.reconcile("e1"), WorkersFailed)
        self.assertIs(self.served(), self.pools[0])
        self.assertEqual(self.manager.deployments.digest("e1"), "a")
        self.assertEqual(self.store.writes, [])

    def test_a_binary_another_node_compiled_is_fetched(self) -> None:
        """A deployed digest with no local binary is fetched from the shared store, then started."""
        self.binaries.shared.add("c")
        self.put(deployed="c")
        self.assertEqual(self.reconcile(), "started")
        self.assertEqual(self.binaries.fetched, ["c"])
        self.assertEqual(self.manager.deployments.digest("e1"), "c")

    def test_reconcile_all_logs_failures_and_goes_on(self) -> None:
        """``reconcile_all`` does every stored and every running endpoint; one failure does not stop the rest."""
        self.start_here()
        self.put(endpoint_id="e2", deployed="missing")
        self.put(endpoint_id="e3")
        del self.store.records["e1"]
        outcomes = self.successResultOf(self.manager.reconcile_all())
        self.assertEqual(outcomes, {"e2": "failed", "e3": "started", "e1": "gone"})
        self.assertEqual(self.store.writes, [])

    def test_restore_without_persist_writes_nothing(self) -> None:
        """A shared store's restore starts what should run and, even on a failure, writes nothing."""
        self.put(endpoint_id="e1")
        self.put(endpoint_id="e2")
        self.next_fail = RuntimeError("boom")
        self.successResultOf(self.manager.restore(persist=False))
        self.assertEqual(self.store.writes, [])
        self.assertEqual(self.manager.workers_by_endpoint(), {"e2": 1})

    def test_restore_with_persist_records_a_failure(self) -> None:
        """One node's own store (the default): a failed restore says so in the record, as before."""
        self.put()
        self.next_fail = RuntimeError("boom")
        self.successResultOf(self.manager.restore())
        self.assertEqual(self.store.records["e1"]["status"], "error")

    def test_reconcile_all_raises_a_lost_store(self) -> None:
        """The store unreachable midway: ``StoreUnavailable`` is raised (the follower retries), not logged away."""
        from twisted.internet.defer import fail

        from edgegw_tx.store.errors import StoreUnavailable

        self.put(endpoint_id="e1")
        self.store.get_endpoint = lambda endpoint_id: fail(StoreUnavailable("db", "connection lost"))  # type: ignore[method-assign]
        self.failureResultOf(self.manager.reconcile_all(), StoreUnavailable)
