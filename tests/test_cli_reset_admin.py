"""
``edgegw keys reset-admin`` (edgegw_tx/cli/reset_admin.py): a lost admin key
is replaced from the data directory, on a real store, never under a running
gateway.
"""

import io
import os
import socket
import stat

import psycopg2

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from edgegw_tx.admin.auth import KeyRing
from edgegw_tx.cli import commands as cli
from edgegw_tx.datadir_lock import DataDirLock
from edgegw_tx.store import SQLiteStore
from edgegw_tx.store.postgres import PostgresStore, redact
from tests.support.pg import fresh_database


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


def closed_port():
    """A loopback TCP port nothing listens on (bound by the kernel, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ResetAdminPostgresIntegrationTests(unittest.TestCase):
    """
    The command against a cluster's store in the real PostgreSQL (``--store``):
    no data-dir lock, the key file in the data dir given, the other nodes see
    the change through the shared database.
    """

    @inlineCallbacks
    def setUp(self):
        self.uri = fresh_database(self)
        self.node_dir = os.path.abspath(self.mktemp())
        store = PostgresStore(self.uri, reactor=reactor)
        try:
            yield store.open()
            keys = KeyRing(store, reactor=reactor)
            yield keys.load()
            yield keys.bootstrap(os.path.join(self.node_dir, "admin.key"))
            _, self.second_admin = yield keys.create("ops", "admin")
            _, self.reader = yield keys.create("dashboard", "read")
            yield keys.flush()
        finally:
            store.close()
        with open(os.path.join(self.node_dir, "admin.key")) as f:
            self.lost = f.read().strip()

    @inlineCallbacks
    def cli(self, *argv, environ=None):
        out, err = io.StringIO(), io.StringIO()
        code = yield cli.run(list(argv), reactor=reactor, environ=environ or {}, stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    @inlineCallbacks
    def other_node(self):
        """The keys as another node of the cluster loads them: its own PostgresStore on the same database."""
        store = PostgresStore(self.uri, reactor=reactor)
        self.addCleanup(store.close)
        yield store.open()
        keys = KeyRing(store, reactor=reactor)
        yield keys.load()
        return keys

    @inlineCallbacks
    def test_reset_while_a_node_runs(self):
        """With the node's data dir locked (it runs): a new admin key in its admin.key (0600) that another
        node's KeyRing accepts, the old admin keys refused, the read key kept, and the output says the
        nodes take it through the change log."""
        lock = DataDirLock(self.node_dir)
        lock.acquire()
        self.addCleanup(lock.release)
        os.unlink(os.path.join(self.node_dir, "admin.key"))
        code, out, err = yield self.cli("keys", "reset-admin", "--data-dir", self.node_dir, "--store", self.uri)
        self.assertEqual((code, err), (0, ""))
        path = os.path.join(self.node_dir, "admin.key")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            new = f.read().strip()
        self.assertNotIn(new, out)
        self.assertIn(f"written to {path} (mode 0600)", out)
        self.assertIn("revoked admin key 'bootstrap'", out)
        self.assertIn("revoked admin key 'ops'", out)
        self.assertIn(f"the store {redact(self.uri)} is shared", out)
        self.assertIn("within seconds (through the store's change log)", out)
        keys = yield self.other_node()
        self.assertEqual(keys.authenticate(new)["scope"], "admin")
        self.assertIsNone(keys.authenticate(self.lost))
        self.assertIsNone(keys.authenticate(self.second_admin))
        self.assertEqual(keys.authenticate(self.reader)["scope"], "read")
        self.assertEqual(sorted(k["scope"] for k in keys.list()), ["admin", "read"])

    @inlineCallbacks
    def test_key_file_in_a_directory_that_is_not_a_node(self):
        """A data dir that does not exist (an operator's machine, not a node): created 0700, admin.key in it
        (taken from EDGEGW_DATA_DIR), and that key is the cluster's admin key."""
        elsewhere = os.path.join(os.path.abspath(self.mktemp()), "keys")
        code, out, err = yield self.cli(
            "keys", "reset-admin", "--store", self.uri, environ={"EDGEGW_DATA_DIR": elsewhere}
        )
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"created {elsewhere} (mode 0700)", out)
        self.assertEqual(stat.S_IMODE(os.stat(elsewhere).st_mode), 0o700)
        path = os.path.join(elsewhere, "admin.key")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            new = f.read().strip()
        keys = yield self.other_node()
        self.assertEqual(keys.authenticate(new)["scope"], "admin")
        self.assertIsNone(keys.authenticate(self.lost))

    @inlineCallbacks
    def test_unreachable_store_is_one_line(self):
        """A PostgreSQL nobody listens for: exit 1, one line naming the store (no password), no traceback,
        and no data dir made."""
        target = os.path.abspath(self.mktemp())
        uri = f"postgresql://edgegw:secret@127.0.0.1:{closed_port()}/edgegw"
        code, out, err = yield self.cli("keys", "reset-admin", "--data-dir", target, "--store", uri)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertTrue(err.startswith("error: cannot reach the store postgresql://edgegw@127.0.0.1:"), err)
        self.assertNotIn("secret", err)
        self.assertFalse(os.path.exists(target))

    @inlineCallbacks
    def test_unknown_database_is_one_line(self):
        """A database the server does not have (a refused connection): exit 1, one line saying so."""
        uri = self.uri + "_missing"
        code, out, err = yield self.cli("keys", "reset-admin", "--data-dir", self.node_dir, "--store", uri)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(f"error: the store {redact(uri)} refused the connection", err)

    @inlineCallbacks
    def test_newer_schema_is_refused_untouched(self):
        """A store a newer edgegw wrote (an unknown migration): exit 1, one line naming both versions,
        and its keys unchanged."""
        connection = psycopg2.connect(self.uri)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'later', 'now')"
                )
        finally:
            connection.close()
        code, out, err = yield self.cli("keys", "reset-admin", "--data-dir", self.node_dir, "--store", self.uri)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("is at schema version 99, newer than this edgegw's", err)
        with open(os.path.join(self.node_dir, "admin.key")) as f:
            self.assertEqual(f.read().strip(), self.lost)

    @inlineCallbacks
    def test_a_store_without_the_current_schema_is_not_migrated(self):
        """
        The command never migrates a shared store under its running nodes,
        nor gives an empty database a schema: an empty database and one at an
        older schema are refused in one line, and left as they were.
        """
        empty = fresh_database(self)
        code, out, err = yield self.cli("keys", "reset-admin", "--data-dir", self.node_dir, "--store", empty)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err.splitlines(), [f"error: the store {redact(empty)} has no edgegw schema: start a node on it first"])
        connection = psycopg2.connect(empty)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute("SELECT to_regclass('schema_migrations') IS NULL")
                self.assertTrue(cursor.fetchone()[0])
        finally:
            connection.close()
        connection = psycopg2.connect(self.uri)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
        finally:
            connection.close()
        code, out, err = yield self.cli("keys", "reset-admin", "--data-dir", self.node_dir, "--store", self.uri)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("older than this edgegw's", err)
        self.assertIn("start a node of this edgegw on it first", err)
        with open(os.path.join(self.node_dir, "admin.key")) as f:
            self.assertEqual(f.read().strip(), self.lost)

    @inlineCallbacks
    def test_malformed_store_is_a_usage_error(self):
        """A --store that is no store URI: exit 2 naming the problem."""
        code, out, err = yield self.cli("keys", "reset-admin", "--store", "mysql://db/x")
        self.assertEqual((code, out), (2, ""))
        self.assertIn("unknown kind of store 'mysql'", err)
