"""
Tests for ``edgegw_tx.cluster.follower`` (reading the change log batch by
batch) and ``edgegw_tx.cluster.sync`` (applying a batch to the planes), with a
fake change log and fake planes on a Clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from edgegw_tx.cluster.follower import Follower, current_revision
from edgegw_tx.cluster.sync import ChangeApplier
from edgegw_tx.store.errors import StoreUnavailable
from edgegw_tx.store.interface import IChangeLog
from tests.support.interfaces import verify_fake


class FakeChangeLog:
    """``changes_since`` over a list of change rows; ``down`` makes it unreachable; ``pruned`` below which rows are gone."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.down = False
        self.pruned = 0
        self.reads: list[int] = []
        self.hold: Deferred[None] | None = None
        self.pruned_to: list[int] = []

    def prune_changes(self, keep: int) -> "Deferred[int]":
        self.pruned_to.append(keep)
        return succeed(0)

    def changes_since(self, revision: int) -> "Deferred[dict[str, Any]]":
        self.reads.append(revision)
        if self.down:
            return fail(StoreUnavailable("postgresql://u@h/db", "connection refused"))
        result = {
            "revision": len(self.rows),
            "changes": [row for row in self.rows if row["revision"] > revision],
            "complete": revision >= self.pruned,
        }
        if self.hold is not None:
            return self.hold.addCallback(lambda _: result)
        return succeed(result)


def add_change(log: FakeChangeLog, kind: str, record_id: str) -> None:
    """Append a change row to the fake log (the store's triggers would)."""
    log.rows.append({"revision": len(log.rows) + 1, "kind": kind, "record_id": record_id})


class FakeApply:
    """Records each batch; ``fail_with`` makes the next call fail."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[int], bool]] = []
        self.fail_with: Exception | None = None

    def __call__(self, changes: list[dict[str, Any]], complete: bool) -> "Deferred[None]":
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            return fail(error)
        self.batches.append(([c["revision"] for c in changes], complete))
        return succeed(None)


class FollowerTests(TestCase):
    """The follower reads what changed after its revision and applies it once, in order."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.log = FakeChangeLog()
        verify_fake(IChangeLog, self.log)
        self.apply = FakeApply()
        self.snapshots = 0

    def snapshot(self) -> "Deferred[None]":
        self.snapshots += 1
        return succeed(None)

    def follower(self, revision: int = 0) -> Follower:
        follower = Follower(self.log, self.apply, self.clock, revision, interval=2.0, snapshot=self.snapshot)
        self.addCleanup(follower.stop)
        return follower

    def test_current_revision(self) -> None:
        """``current_revision`` is the newest revision of the log."""
        add_change(self.log, "key", "k1")
        add_change(self.log, "endpoint", "e1")
        self.assertEqual(self.successResultOf(current_revision(self.log)), 2)

    def test_wake_applies_new_changes(self) -> None:
        """A wake applies the changes after the revision it has, then only newer ones."""
        add_change(self.log, "key", "k1")
        follower = self.follower(revision=1)
        add_change(self.log, "endpoint", "e1")
        add_change(self.log, "endpoint", "e2")
        self.successResultOf(follower.wake())
        self.assertEqual(self.apply.batches, [([2, 3], True)])
        self.assertEqual(follower.revision, 3)
        self.successResultOf(follower.wake())
        self.assertEqual(self.apply.batches, [([2, 3], True)])

    def test_periodic_check(self) -> None:
        """Started, it checks the log at once and every interval, with no wake needed."""
        follower = self.follower()
        follower.start()
        self.assertEqual(self.log.reads, [0])
        add_change(self.log, "endpoint", "e1")
        self.clock.advance(2.0)
        self.assertEqual(self.apply.batches, [([1], True)])
        self.assertEqual(self.log.reads, [0, 0])

    def test_wakes_during_a_batch_coalesce(self) -> None:
        """Wakes while a batch is read or applied make one more read after it, not one each."""
        follower = self.follower()
        add_change(self.log, "endpoint", "e1")
        self.log.hold = Deferred()
        hold = self.log.hold
        first = follower.wake()
        self.log.hold = None
        add_change(self.log, "endpoint", "e2")
        follower.wake()
        follower.wake()
        self.assertNoResult(first)
        hold.callback(None)
        self.successResultOf(first)
        self.assertEqual(self.log.reads, [0, 1])
        self.assertEqual(self.apply.batches, [([1], True), ([2], True)])

    def test_pruned_log_reloads_everything(self) -> None:
        """When the log no longer has the rows after our revision, the batch says so (incomplete)."""
        for n in range(5):
            add_change(self.log, "endpoint", f"e{n}")
        self.log.pruned = 3
        follower = self.follower(revision=1)
        self.successResultOf(follower.wake())
        self.assertEqual(self.apply.batches, [([2, 3, 4, 5], False)])
        self.assertEqual(follower.revision, 5)

    def test_log_gone_backwards_reloads_everything(self) -> None:
        """A log whose newest revision is below ours (a restored database) is a full reload."""
        add_change(self.log, "endpoint", "e1")
        follower = self.follower(revision=9)
        self.successResultOf(follower.wake())
        self.assertEqual(self.apply.batches, [([], False)])
        self.assertEqual(follower.revision, 1)

    def test_unavailable_store_keeps_revision(self) -> None:
        """
        While the store cannot be reached the revision stays (logged once); the
        next check after it is back applies what was missed.
        """
        events: list[dict[str, Any]] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        follower = self.follower()
        follower.start()
        add_change(self.log, "endpoint", "e1")
        self.log.down = True
        self.clock.advance(2.0)
        self.clock.advance(2.0)
        self.assertEqual(follower.revision, 0)
        self.log.down = False
        self.clock.advance(2.0)
        self.assertEqual(self.apply.batches, [([1], True)])
        mine = [e for e in events if e.get("log_namespace", "").startswith("edgegw_tx.cluster.follower")]
        self.assertEqual([e["log_level"].name for e in mine], ["warn", "info"])

    def test_unavailable_while_applying_retries_the_batch(self) -> None:
        """A batch whose apply could not reach the store is applied again at the next wake."""
        add_change(self.log, "key", "k1")
        follower = self.follower()
        self.apply.fail_with = StoreUnavailable("x", "gone")
        self.successResultOf(follower.wake())
        self.assertEqual(follower.revision, 0)
        self.successResultOf(follower.wake())
        self.assertEqual(self.apply.batches, [([1], True)])
        self.assertEqual(follower.revision, 1)

    def test_other_apply_error_logged(self) -> None:
        """Any other error while applying is logged and the revision stays (tried again at the next wake)."""
        add_change(self.log, "key", "k1")
        follower = self.follower()
        self.apply.fail_with = RuntimeError("bug")
        self.successResultOf(follower.wake())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(follower.revision, 0)

    def test_snapshot_after_batches_at_most_once_a_second(self) -> None:
        """A batch saves the snapshot; batches within a second of it share one more save, later."""
        follower = self.follower()
        add_change(self.log, "endpoint", "e1")
        self.successResultOf(follower.wake())
        self.assertEqual(self.snapshots, 1)
        add_change(self.log, "endpoint", "e2")
        self.successResultOf(follower.wake())
        add_change(self.log, "endpoint", "e3")
        self.successResultOf(follower.wake())
        self.assertEqual(self.snapshots, 1)
        self.clock.advance(1.0)
        self.assertEqual(self.snapshots, 2)
        self.successResultOf(follower.wake())  # nothing new: no snapshot
        self.clock.advance(5.0)
        self.assertEqual(self.snapshots, 2)

    def test_prunes_the_log(self) -> None:
        """Given ``keep``, the follower cuts the log to that many rows every ``prune_every`` seconds."""
        follower = Follower(self.log, self.apply, self.clock, 0, keep=100, prune_every=600.0)
        self.addCleanup(follower.stop)
        follower.start()
        self.clock.advance(599.0)
        self.assertEqual(self.log.pruned_to, [])
        self.clock.advance(1.0)
        self.assertEqual(self.log.pruned_to, [100])
        self.successResultOf(follower.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_ends_checks(self) -> None:
        """After ``stop`` nothing is read any more and no call is left pending."""
        follower = self.follower()
        follower.start()
        add_change(self.log, "endpoint", "e1")
        self.successResultOf(follower.wake())
        self.successResultOf(follower.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        reads = len(self.log.reads)
        self.successResultOf(follower.wake())
        self.assertEqual(len(self.log.reads), reads)


class FakePlanes:
    """The key ring, service manager, collections and endpoint manager as the applier calls them."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.unreachable: set[str] = set()
        self.broken: set[str] = set()
        #: The endpoints ``reconcile_all`` goes through.
        self.known: list[str] = []

    def load(self) -> "Deferred[None]":
        self.calls.append("load")
        return succeed(None)

    def sync(self) -> "Deferred[None]":
        self.calls.append("sync")
        return succeed(None)

    def reconcile(self, endpoint_id: str) -> "Deferred[str]":
        self.calls.append(("reconcile", endpoint_id))
        if endpoint_id in self.unreachable:
            return fail(StoreUnavailable("x", "gone"))
        if endpoint_id in self.broken:
            return fail(RuntimeError("cannot start"))
        return succeed("started")

    def reconcile_all(self) -> "Deferred[dict[str, str]]":
        self.calls.append("reconcile_all")
        return succeed({i: "failed" if i in self.broken else "unchanged" for i in self.known})


class Keys(FakePlanes):
    """The key ring, named apart in the calls."""

    def load(self) -> "Deferred[None]":
        self.calls.append("keys.load")
        return succeed(None)


def change(kind: str, record_id: str, revision: int = 1) -> dict[str, Any]:
    return {"revision": revision, "kind": kind, "record_id": record_id}


class ChangeApplierTests(TestCase):
    """Each kind of change reloads or reconciles the part of the node it concerns."""

    def setUp(self) -> None:
        self.planes = FakePlanes()
        self.keys = Keys()
        self.keys.calls = self.planes.calls
        self.clock = Clock()
        self.applier = ChangeApplier(self.keys, self.planes, self.planes, self.planes, self.clock)

    def apply(self, changes: list[dict[str, Any]], complete: bool = True) -> None:
        self.successResultOf(self.applier.apply(changes, complete))

    def test_keys(self) -> None:
        """A key change reloads the key ring, and nothing else."""
        self.apply([change("key", "k1"), change("key", "k2")])
        self.assertEqual(self.planes.calls, ["keys.load"])

    def test_consumers_reloaded(self) -> None:
        """A consumer change (a consumer's or its keys') reloads the consumers' keys, and nothing else; so does an incomplete batch."""
        reloaded: list[str] = []

        class Consumers:
            def reload(self) -> "Deferred[None]":
                reloaded.append("reload")
                return succeed(None)

        applier = ChangeApplier(self.keys, self.planes, self.planes, self.planes, self.clock, consumers=Consumers())
        self.successResultOf(applier.apply([change("consumer", "c1"), change("consumer", "c2")], True))
        self.assertEqual((reloaded, self.planes.calls), (["reload"], []))
        self.successResultOf(applier.apply([], False))
        self.assertEqual(reloaded, ["reload", "reload"])

    def test_services_and_bindings_before_endpoints(self) -> None:
        """Service and binding changes sync the registry once, before the endpoints of the batch are reconciled."""
        self.apply([change("endpoint", "e1"), change("binding", "e1"), change("service", "s1")])
        self.assertEqual(self.planes.calls, ["sync", ("reconcile", "e1")])

    def test_endpoints_once_each_in_order(self) -> None:
        """Each endpoint changed is reconciled once, in the order of its first change."""
        self.apply([change("endpoint", "e2"), change("endpoint", "e1"), change("endpoint", "e2")])
        self.assertEqual(self.planes.calls, [("reconcile", "e2"), ("reconcile", "e1")])

    def test_routes_reconcile_everything(self) -> None:
        """A domain or collection change reloads the collections and reconciles every endpoint."""
        self.apply([change("endpoint", "e1"), change("domain", "d1")])
        self.assertEqual(self.planes.calls, ["load", "reconcile_all"])

    def test_incomplete_reloads_all(self) -> None:
        """An incomplete batch reloads keys, services and collections and reconciles every endpoint."""
        self.apply([], complete=False)
        self.assertEqual(self.planes.calls, ["keys.load", "sync", "load", "reconcile_all"])

    def test_endpoint_error_logged_others_go_on(self) -> None:
        """An endpoint that cannot be reconciled is logged; the next one still is."""
        self.planes.broken.add("e1")
        self.apply([change("endpoint", "e1"), change("endpoint", "e2")])
        self.assertEqual(self.planes.calls, [("reconcile", "e1"), ("reconcile", "e2")])

    def test_a_failed_endpoint_is_retried_until_it_is_in_line(self) -> None:
        """
        An endpoint that could not be reconciled is tried again after 5 s,
        then 10 s, 20 s (doubling, a minute at most), and no more once it
        succeeded; the others of the batch are not retried.
        """
        self.planes.broken.add("e1")
        self.apply([change("endpoint", "e1"), change("endpoint", "e2")])
        self.flushLoggedErrors()
        del self.planes.calls[:]
        self.clock.advance(4.9)
        self.assertEqual(self.planes.calls, [])
        self.clock.advance(0.1)
        self.assertEqual(self.planes.calls, [("reconcile", "e1")])
        self.clock.advance(9.9)
        self.assertEqual(len(self.planes.calls), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.planes.calls), 2)
        for _ in range(6):
            self.clock.advance(60)
        (pending,) = self.clock.getDelayedCalls()
        self.assertLessEqual(pending.getTime() - self.clock.seconds(), 60)
        self.planes.broken.clear()
        self.clock.advance(60)
        done = len(self.planes.calls)
        self.assertEqual(self.planes.calls[-1], ("reconcile", "e1"))
        self.clock.advance(600)
        self.assertEqual(len(self.planes.calls), done)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_newer_change_that_succeeds_ends_the_retries(self) -> None:
        """A later batch reconciling the endpoint successfully cancels its pending retry."""
        self.planes.broken.add("e1")
        self.apply([change("endpoint", "e1")])
        self.planes.broken.clear()
        self.apply([change("endpoint", "e1", 2)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failed_endpoints_of_a_full_reconcile_are_retried(self) -> None:
        """The endpoints ``reconcile_all`` reports ``failed`` are retried one by one later."""
        self.planes.known = ["e1", "e2"]
        self.planes.broken.add("e2")
        self.apply([change("domain", "d1")])
        del self.planes.calls[:]
        self.clock.advance(5)
        self.assertEqual(self.planes.calls, [("reconcile", "e2")])

    def test_stop_cancels_the_retries(self) -> None:
        """Once stopped (the node leaves), no retry is pending."""
        self.planes.broken.add("e1")
        self.apply([change("endpoint", "e1")])
        self.applier.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unavailable_store_fails_the_batch(self) -> None:
        """``StoreUnavailable`` fails the batch (so the follower applies it again)."""
        self.planes.unreachable.add("e1")
        self.failureResultOf(self.applier.apply([change("endpoint", "e1")], True), StoreUnavailable)


class FollowerIntegrationTests(TestCase):
    """The follower woken by the LISTEN connection when a change is committed in the real PostgreSQL."""

    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        from edgegw_tx.cluster.notify import ChangeListener
        from tests.support.pg import postgres_store

        self.store = postgres_store(self)
        self.waiting: list[Deferred[None]] = []
        self.batches: list[tuple[list[str], bool]] = []
        # No periodic check (not started): only a notification can wake it.
        self.follower = Follower(self.store, self.apply, reactor, 0)
        self.listener = ChangeListener(self.store.uri, self.follower.wake, reactor, first=0.05)
        self.addCleanup(self.follower.stop)
        self.addCleanup(self.listener.stop)

    def apply(self, changes: list[dict[str, Any]], complete: bool) -> "Deferred[None]":
        self.batches.append(([c["kind"] for c in changes], complete))
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)
        return succeed(None)

    def next_batch(self) -> "Deferred[None]":
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d

    @inlineCallbacks
    def test_committed_change_wakes_the_follower(self) -> Any:
        """A key added through the store is applied by a follower that only NOTIFY wakes."""
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        self.listener.start()
        while not self.listener.connected:
            yield deferLater(reactor, 0.01, lambda: None)
        batch = self.next_batch()
        self.store.add_key({"id": "k1", "name": "ops", "scope": "admin", "key_hash": "h" * 64,
                            "created_at": "2026-12-07T00:00:00+00:00"})
        yield batch
        self.assertEqual(self.batches, [(["key"], True)])
        yield self.follower.wake()
        self.assertEqual(self.follower.revision, 1)
