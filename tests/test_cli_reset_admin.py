"""
``edgegw keys reset-admin`` (edgegw_tx/cli/reset_admin.py): a lost admin key
is replaced from the data directory, on a real store, never under a running
gateway.
"""

import io
import os
import stat

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from edgegw_tx.admin.auth import KeyRing
from edgegw_tx.cli import commands as cli
from edgegw_tx.datadir_lock import DataDirLock
from edgegw_tx.store import SQLiteStore


class ResetAdminTests(unittest.TestCase):
    """The command against a data dir made by a gateway's store: admin, second admin and read keys."""

    @inlineCallbacks
    def setUp(self):
        self.data_dir = os.path.abspath(self.mktemp())
        store = SQLiteStore(os.path.join(self.data_dir, "edgegw.sqlite3"), reactor=reactor)
        yield store.open()
        keys = KeyRing(store, reactor=reactor)
        yield keys.load()
        yield keys.bootstrap(os.path.join(self.data_dir, "admin.key"))
        _, self.second_admin = yield keys.create("ops", "admin")
        _, self.reader = yield keys.create("dashboard", "read")
        with open(os.path.join(self.data_dir, "admin.key")) as f:
            self.lost = f.read().strip()
        yield keys.flush()
        store.close()

    @inlineCallbacks
    def cli(self, *argv, environ=None):
        out, err = io.StringIO(), io.StringIO()
        code = yield cli.run(list(argv), reactor=reactor, environ=environ or {}, stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    @inlineCallbacks
    def stored(self):
        store = SQLiteStore(os.path.join(self.data_dir, "edgegw.sqlite3"), reactor=reactor)
        keys = KeyRing(store, reactor=reactor)
        try:
            yield keys.load()
        finally:
            store.close()
        return keys

    @inlineCallbacks
    def test_reset_mints_a_new_admin_key_and_revokes_the_old(self):
        """With no key at all (admin.key gone): a new admin key in admin.key (0600), every old
        admin key revoked, read keys kept, and what was done said on stdout."""
        os.unlink(os.path.join(self.data_dir, "admin.key"))
        code, out, err = yield self.cli("keys", "reset-admin", "--data-dir", self.data_dir)
        self.assertEqual((code, err), (0, ""))
        path = os.path.join(self.data_dir, "admin.key")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            new = f.read().strip()
        self.assertIn(f"written to {path} (mode 0600)", out)
        self.assertIn("revoked admin key 'bootstrap'", out)
        self.assertIn("revoked admin key 'ops'", out)
        self.assertNotIn(new, out)
        keys = yield self.stored()
        self.assertEqual(keys.authenticate(new)["scope"], "admin")
        self.assertIsNone(keys.authenticate(self.lost))
        self.assertIsNone(keys.authenticate(self.second_admin))
        self.assertEqual(keys.authenticate(self.reader)["scope"], "read")
        self.assertEqual([k["scope"] for k in keys.list()], ["read", "admin"])

    @inlineCallbacks
    def test_refused_while_a_gateway_holds_the_data_dir(self):
        """With the data dir locked (a running gateway) nothing changes and the error names the pid."""
        lock = DataDirLock(self.data_dir)
        lock.acquire()
        self.addCleanup(lock.release)
        code, out, err = yield self.cli("keys", "reset-admin", "--data-dir", self.data_dir)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(
            err,
            f"error: stop the gateway first (pid {os.getpid()} holds {self.data_dir},"
            f" lock {self.data_dir}/edgegw.lock)\n",
        )
        keys = yield self.stored()
        self.assertEqual(keys.authenticate(self.lost)["name"], "bootstrap")

    @inlineCallbacks
    def test_not_a_data_dir(self):
        """A directory without a store is a usage error (exit 2), and nothing is created there."""
        empty = os.path.abspath(self.mktemp())
        code, out, err = yield self.cli("keys", "reset-admin", "--data-dir", empty)
        self.assertEqual((code, out), (2, ""))
        self.assertIn(f"error: {empty} is not a gateway's data directory (no edgegw.sqlite3 in it)", err)
        self.assertFalse(os.path.exists(empty))

    @inlineCallbacks
    def test_needs_no_key_and_takes_the_data_dir_from_the_environment(self):
        """No --key, no admin.key, EDGEGW_DATA_DIR naming the directory: it still runs."""
        os.unlink(os.path.join(self.data_dir, "admin.key"))
        code, _, err = yield self.cli("keys", "reset-admin", environ={"EDGEGW_DATA_DIR": self.data_dir})
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(os.path.exists(os.path.join(self.data_dir, "admin.key")))

    @inlineCallbacks
    def test_unwritable_key_file_changes_nothing(self):
        """When admin.key cannot be written (a directory is in its place) the old keys stay valid and the new one is gone."""
        os.unlink(os.path.join(self.data_dir, "admin.key"))
        os.mkdir(os.path.join(self.data_dir, "admin.key"))
        code, out, err = yield self.cli("keys", "reset-admin", "--data-dir", self.data_dir)
        self.assertEqual(code, 1)
        self.assertIn("cannot write", err)
        self.assertIn("nothing was changed", err)
        self.assertEqual(sorted(os.listdir(self.data_dir)), ["admin.key", "edgegw.lock", "edgegw.sqlite3"])
        keys = yield self.stored()
        self.assertEqual(sorted(k["name"] for k in keys.list()), ["bootstrap", "dashboard", "ops"])

    @inlineCallbacks
    def test_the_lock_is_released(self):
        """After a reset the data dir is free again: a gateway can start on it."""
        yield self.cli("keys", "reset-admin", "--data-dir", self.data_dir)
        lock = DataDirLock(self.data_dir)
        lock.acquire()
        lock.release()
