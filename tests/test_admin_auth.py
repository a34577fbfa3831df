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
