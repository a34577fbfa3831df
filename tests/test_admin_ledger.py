"""
The artifact ledger on its own (edgegw_tx/admin/ledger.py): claims on digests,
version rows, pruning beyond ``keep_versions`` and deleting unused binaries,
with fakes of its two seams (the builder's binaries and the store's versions).
"""

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial import unittest

from edgegw_tx.admin.ledger import ArtifactLedger
from tests.support.control import FakeBinaries, FakeVersionStore


def version(endpoint_id: str, digest: str) -> dict[str, Any]:
    """A version row as the manager records it."""
    return {
        "endpoint_id": endpoint_id,
        "digest": digest,
        "code": "",
        "dependencies": {},
        "compile_seconds": 1.0,
        "created_at": "now",
    }


def adopted(outcome: Any = "record") -> "Deferred[tuple[Any, bool]]":
    """An ``adopt`` answer: the build became the endpoint's artifact."""
    return succeed((outcome, True))


class LedgerTests(unittest.TestCase):
    """Claims, recording and pruning of one ``ArtifactLedger``."""

    def setUp(self) -> None:
        self.binaries = FakeBinaries("a", "b", "c")
        self.store = FakeVersionStore()
        self.ledger = ArtifactLedger(self.store, self.binaries, keep_versions=2)

    def test_claims_are_counted_until_each_is_released(self) -> None:
        """Two claims on a digest keep it in use until both are released."""
        self.assertEqual(self.successResultOf(self.ledger.claim("a")), "/artifacts/a/handler")
        self.successResultOf(self.ledger.claim("a"))
        self.ledger.release("a")
        self.assertEqual(self.ledger.in_use(), {"a"})
        self.ledger.release("a")
        self.assertEqual(self.ledger.in_use(), set())

    def test_claim_of_a_missing_binary_counts_nothing(self) -> None:
        """A claim on a digest whose binary is gone fires None and counts nothing."""
        self.assertIsNone(self.successResultOf(self.ledger.claim("zz")))
        self.assertEqual(self.ledger.in_use(), set())

    def test_claim_of_a_binary_another_node_compiled_fetches_it(self) -> None:
        """A digest missing here is fetched from the shared store (``Binaries.fetch``), then claimed."""
        self.binaries.shared.add("zz")
        self.assertEqual(self.successResultOf(self.ledger.claim("zz")), "/artifacts/zz/handler")
        self.assertEqual(self.binaries.fetched, ["zz"])
        self.assertEqual(self.ledger.in_use(), {"zz"})

    def test_claim_fetches_only_what_is_missing(self) -> None:
        """A binary stored here is claimed without asking the shared store."""
        self.successResultOf(self.ledger.claim("a"))
        self.assertEqual(self.binaries.fetched, [])

    def test_claim_of_a_binary_nobody_has_tries_a_fetch_then_counts_nothing(self) -> None:
        """A digest neither here nor in the shared store fires None after one fetch attempt."""
        self.assertIsNone(self.successResultOf(self.ledger.claim("zz")))
        self.assertEqual(self.binaries.fetched, ["zz"])
        self.assertEqual(self.ledger.in_use(), set())

    def test_forget_spares_claimed_and_named_binaries(self) -> None:
        """``forget`` deletes only binaries no pool claims and no record names."""
        self.successResultOf(self.ledger.claim("a"))
        self.store.named.add("b")
        self.successResultOf(self.ledger.forget(["a", "b", "c", ""]))
        self.assertEqual(self.binaries.removed, ["c"])

    def test_record_prunes_versions_beyond_keep(self) -> None:
        """Recording a third version with keep_versions 2 deletes the oldest one's binary."""
        for digest in ("a", "b", "c"):
            outcome = self.successResultOf(self.ledger.record(version("e1", digest), False, adopted))
            self.assertEqual(outcome, "record")
        self.assertEqual(self.store.rows["e1"], ["b", "c"])
        self.assertEqual(self.binaries.removed, ["a"])

    def test_pruning_spares_a_claimed_binary(self) -> None:
        """An old version whose digest a pool claims loses its row but keeps its binary."""
        self.successResultOf(self.ledger.claim("a"))
        for digest in ("a", "b", "c"):
            self.successResultOf(self.ledger.record(version("e1", digest), False, adopted))
        self.assertEqual(self.binaries.removed, [])
        self.assertIn("a", self.binaries.stored)

    def test_record_of_a_vanished_binary_is_none_and_adopts_nothing(self) -> None:
        """A build whose binary was deleted meanwhile is not adopted: None, so the caller builds again."""
        calls = []

        def adopt() -> "Deferred[tuple[Any, bool]]":
            calls.append(True)
            return adopted()

        self.assertIsNone(self.successResultOf(self.ledger.record(version("e1", "zz"), False, adopt)))
        self.assertEqual((calls, self.store.rows), ([], {}))

    def test_a_build_not_adopted_records_no_version(self) -> None:
        """When the endpoint's code changed while cargo ran, no version row is written."""
        outcome = self.successResultOf(
            self.ledger.record(version("e1", "a"), False, lambda: succeed(("latest", False)))
        )
        self.assertEqual((outcome, self.store.rows), ("latest", {}))

    def test_a_claim_waits_for_a_removal_in_progress(self) -> None:
        """A claim asked while a binary is being deleted waits for it, then finds it gone."""
        gate: Deferred[None] = Deferred()
        self.binaries.gate = gate
        forgetting = self.ledger.forget(["a"])
        claimed = self.ledger.claim("a")
        self.assertNoResult(claimed)
        gate.callback(None)
        self.successResultOf(forgetting)
        self.assertIsNone(self.successResultOf(claimed))
        self.assertEqual(self.ledger.in_use(), set())

    def test_a_failed_removal_does_not_fail_the_forget(self) -> None:
        """A binary that cannot be deleted is logged; the others still go."""
        self.binaries.broken.add("a")
        self.successResultOf(self.ledger.forget(["a", "b"]))
        self.assertEqual(self.binaries.removed, ["b"])

    def test_available_is_here_or_fetchable(self) -> None:
        """A binary is available when stored here or in the shared store (then fetched); else not."""
        self.binaries.shared.add("zz")
        self.assertTrue(self.successResultOf(self.ledger.available("a")))
        self.assertTrue(self.successResultOf(self.ledger.available("zz")))
        self.assertFalse(self.successResultOf(self.ledger.available("nowhere")))
        self.assertEqual(self.binaries.fetched, ["zz", "nowhere"])
