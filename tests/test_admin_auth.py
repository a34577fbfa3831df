"""API keys: creation, hashing, constant-time check, first-start bootstrap."""

import os
import stat

from twisted.trial import unittest

from edgegw_tx.admin.auth import KeyRing, hash_key
from tests.support.fakes import SynchronousReactor, make_store


class KeyRingTests(unittest.TestCase):
    def setUp(self):
        self.reactor = SynchronousReactor()
        self.store = make_store(self, self.reactor)
        self.keys = KeyRing(self.store, reactor=self.reactor)
        self.successResultOf(self.keys.load())

    def test_created_key_authenticates(self):
        """A new key's plaintext authenticates and maps to its record."""
        record, plaintext = self.successResultOf(self.keys.create("ci", "read"))
        self.assertEqual(self.keys.authenticate(plaintext)["id"], record["id"])

    def test_store_keeps_only_the_hash(self):
        """The plaintext is not stored anywhere, only its SHA-256."""
        _, plaintext = self.successResultOf(self.keys.create("ci", "admin"))
        stored = self.successResultOf(self.store.list_keys())
        self.assertEqual([k["key_hash"] for k in stored], [hash_key(plaintext)])
        self.assertNotIn(plaintext, repr(stored))

    def test_wrong_or_empty_key_is_rejected(self):
        """Unknown tokens and empty tokens authenticate nobody."""
        self.successResultOf(self.keys.create("ci", "admin"))
        self.assertIsNone(self.keys.authenticate("egw_wrong"))
        self.assertIsNone(self.keys.authenticate(""))

    def test_bad_scope_is_refused(self):
        """Only the scopes read and admin exist."""
        self.assertRaises(ValueError, self.keys.create, "x", "root")

    def test_bootstrap_writes_a_private_key_file(self):
        """On first start an admin key is created and written 0600 to the given path."""
        path = os.path.join(self.mktemp(), "admin.key")
        self.assertEqual(self.successResultOf(self.keys.bootstrap(path)), path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            plaintext = f.read().strip()
        self.assertEqual(self.keys.authenticate(plaintext)["scope"], "admin")

    def test_bootstrap_does_nothing_when_keys_exist(self):
        """A second start with keys in the store writes no new key."""
        self.successResultOf(self.keys.create("ci", "admin"))
        path = os.path.join(self.mktemp(), "admin.key")
        self.assertIsNone(self.successResultOf(self.keys.bootstrap(path)))
        self.assertFalse(os.path.exists(path))

    def test_key_file_replaces_a_planted_symlink(self):
        """A symlink at admin.key's place is replaced by the key file, never followed to its target."""
        folder = self.mktemp()
        os.makedirs(folder)
        target = os.path.abspath(os.path.join(folder, "elsewhere"))
        path = os.path.join(folder, "admin.key")
        os.symlink(target, path)
        self.successResultOf(self.keys.bootstrap(path))
        self.assertFalse(os.path.islink(path))
        self.assertFalse(os.path.exists(target))
        self.assertEqual(sorted(os.listdir(folder)), ["admin.key"])


class SharedKeyRingTests(unittest.TestCase):
    """Two key rings on one store: two nodes of a cluster sharing their keys."""

    def setUp(self):
        from edgegw_tx.admin.auth import FLUSH_INTERVAL

        self.interval = FLUSH_INTERVAL
        self.reactor = SynchronousReactor()
        self.reactor.advance(1_800_000_000)
        self.store = make_store(self, self.reactor)
        self.here = KeyRing(self.store, reactor=self.reactor)
        self.there = KeyRing(self.store, reactor=self.reactor)
        self.successResultOf(self.here.load())
        self.successResultOf(self.there.load())

    def test_bootstrap_when_another_node_made_the_first_key(self):
        """Both nodes saw no key; only one mints it: the other writes no file, loads and accepts that key."""
        first = os.path.join(self.mktemp(), "admin.key")
        second = os.path.join(self.mktemp(), "admin.key")
        self.assertEqual(self.successResultOf(self.there.bootstrap(first)), first)
        self.assertIsNone(self.successResultOf(self.here.bootstrap(second)))
        self.assertFalse(os.path.exists(second))
        with open(first) as f:
            plaintext = f.read().strip()
        self.assertEqual(self.here.authenticate(plaintext)["name"], "bootstrap")
        self.assertEqual(len(self.successResultOf(self.store.list_keys())), 1)

    def test_load_follows_keys_made_and_revoked_elsewhere(self):
        """A reload replaces the keys: one revoked on the other node stops working here, a new one works."""
        revoked, old = self.successResultOf(self.there.create("old", "admin"))
        self.successResultOf(self.there.create("keeper", "admin"))
        self.successResultOf(self.here.load())
        self.assertIsNotNone(self.here.authenticate(old))
        self.successResultOf(self.there.revoke(revoked["id"]))
        _, new = self.successResultOf(self.there.create("new", "read"))
        self.successResultOf(self.here.load())
        self.assertIsNone(self.here.authenticate(old))
        self.assertEqual(self.here.authenticate(new)["name"], "new")

    def test_load_keeps_a_use_not_written_yet(self):
        """A held-back ``last_used_at`` is still written after a reload, with the newest time."""
        record, plaintext = self.successResultOf(self.here.create("ci", "admin"))
        self.here.authenticate(plaintext)
        self.reactor.advance(5)
        self.here.authenticate(plaintext)
        self.successResultOf(self.here.load())
        self.reactor.advance(self.interval)
        stored = self.successResultOf(self.store.get_key(record["id"]))
        self.assertEqual(stored["last_used_at"], self.here.view(record)["last_used_at"])
        self.assertTrue(stored["last_used_at"].startswith("2027-01-15T08:00:05"))

    def test_load_drops_the_pending_use_of_a_key_deleted_elsewhere(self):
        """A key revoked on another node leaves no write due here."""
        record, plaintext = self.successResultOf(self.here.create("ci", "admin"))
        self.successResultOf(self.here.create("keeper", "admin"))
        self.here.authenticate(plaintext)
        self.reactor.advance(5)
        self.here.authenticate(plaintext)
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.successResultOf(self.there.revoke(record["id"]))
        self.successResultOf(self.here.load())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_view_shows_the_newer_use_of_the_two_nodes(self):
        """A key used later on another node shows that time here after a reload."""
        record, plaintext = self.successResultOf(self.here.create("ci", "admin"))
        self.successResultOf(self.there.load())
        self.here.authenticate(plaintext)
        self.reactor.advance(30)
        self.there.authenticate(plaintext)
        self.successResultOf(self.here.load())
        [listed] = self.here.list()
        self.assertTrue(listed["last_used_at"].startswith("2027-01-15T08:00:30"))

    def test_revoke_with_a_stale_revision_keeps_the_key(self):
        """``revoke(revision=)`` of a key changed since: the store's ``Stale``, and the key still works."""
        from edgegw_tx.store.errors import Stale

        record, plaintext = self.successResultOf(self.here.create("ci", "admin"))
        self.successResultOf(self.here.create("keeper", "admin"))
        current = self.successResultOf(self.store.get_key(record["id"]))["revision"]
        self.failureResultOf(self.here.revoke(record["id"], revision=current + 1000), Stale)
        self.assertIsNotNone(self.here.authenticate(plaintext))
        self.successResultOf(self.here.revoke(record["id"], revision=current))
        self.assertIsNone(self.here.authenticate(plaintext))


class UnreachableStoreTests(unittest.TestCase):
    """Recording key uses while the store cannot be reached (a cluster's database is down)."""

    def test_an_outage_is_said_once_without_a_traceback(self):
        """
        Failed writes of ``last_used_at`` for StoreUnavailable log one warning
        per outage and no error; after a write succeeds, the next outage is
        said again. Any other failure is still logged as an error.
        """
        from twisted.internet.defer import fail, succeed
        from twisted.logger import globalLogPublisher

        from edgegw_tx.store import StoreUnavailable

        class Store:
            def __init__(self):
                self.answer = None

            def touch_keys(self, last_used):
                return self.answer()

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        store = Store()
        keys = KeyRing(store, reactor=SynchronousReactor())
        keys._used = {"k": "2026-12-07T00:00:00+00:00"}
        down = lambda: fail(StoreUnavailable("postgresql://u@h/db", "connection refused"))  # noqa: E731
        store.answer = down
        self.successResultOf(keys._write(["k"]))
        self.successResultOf(keys._write(["k"]))
        warnings = [e for e in events if e.get("log_format", "").startswith("Could not record")]
        self.assertEqual(len(warnings), 1)
        self.assertFalse([e for e in events if e.get("log_failure") is not None])
        store.answer = lambda: succeed(None)
        self.successResultOf(keys._write(["k"]))
        store.answer = down
        self.successResultOf(keys._write(["k"]))
        self.assertEqual(len([e for e in events if e.get("log_format", "").startswith("Could not record")]), 2)
        store.answer = lambda: fail(RuntimeError("a bug"))
        self.successResultOf(keys._write(["k"]))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
