"""
``--store``: the URI a gateway is given (``edgegw_tx.store.uri``), the store
it opens, and the blocking check ``twistd`` makes before it starts.
"""

import os

from twisted.trial import unittest

from edgegw_tx.store.errors import StoreRefused, StoreTooNew
from edgegw_tx.store.postgres import PostgresStore
from edgegw_tx.store.sqlite import SCHEMA_VERSION, SQLiteStore
from edgegw_tx.store.uri import StoreSpec, check_store, open_store, parse_store
from tests.support.fakes import SynchronousReactor
from tests.support.pg import fresh_database


class ParseStoreTests(unittest.TestCase):
    """What ``--store`` accepts, and what it refuses naming the problem."""

    def test_default_is_the_data_dirs_file(self):
        """No --store (or an empty one): the SQLite file edgegw.sqlite3 in the data dir, as an absolute path."""
        for text in (None, "", "  "):
            spec = parse_store(text, "var")
            self.assertEqual((spec.kind, spec.path), ("sqlite", os.path.abspath("var/edgegw.sqlite3")))
            self.assertFalse(spec.shared)

    def test_sqlite_path(self):
        """sqlite:PATH (and sqlite://PATH) name a file, relative to the current directory."""
        self.assertEqual(parse_store("sqlite:other/x.db", "var").path, os.path.abspath("other/x.db"))
        self.assertEqual(parse_store("sqlite:///tmp/x.db", "var").path, "/tmp/x.db")
        self.assertEqual(parse_store("sqlite:/tmp/x.db", "var").where, "/tmp/x.db")

    def test_postgresql_uris(self):
        """postgresql:// and postgres:// URIs are kept whole; where has no password."""
        spec = parse_store("postgresql://edge:pw@db.example:5433/edgegw", "var")
        self.assertEqual(
            (spec.kind, spec.uri, spec.where, spec.shared),
            ("postgresql", "postgresql://edge:pw@db.example:5433/edgegw", "postgresql://edge@db.example:5433/edgegw", True),
        )
        self.assertEqual(parse_store("postgres://h/db", "var").where, "postgres://h/db")

    def test_bad_stores_are_refused_by_name(self):
        """A store that is no URI, of an unknown kind, without a host, database or file: ValueError saying which."""
        cases = {
            "edgegw.db": "neither sqlite:PATH nor a postgresql://",
            "mysql://h/db": "unknown kind of store 'mysql'",
            "sqlite:": "needs a file path",
            "postgresql:///db": "names no host",
            "postgresql://h": "names no database",
            "postgresql://h:port/db": "not a valid PostgreSQL URI",
        }
        for text, words in cases.items():
            error = self.assertRaises(ValueError, parse_store, text, "var")
            self.assertIn(words, str(error), text)


class OpenStoreTests(unittest.TestCase):
    def test_each_kind_makes_its_store(self):
        """open_store makes a SQLiteStore or a PostgresStore (with the snapshot path), neither opened yet."""
        clock = SynchronousReactor()
        path = os.path.abspath(os.path.join(self.mktemp(), "s.sqlite3"))
        store = open_store(StoreSpec("sqlite", path=path, where=path), clock)
        self.addCleanup(store.close)
        self.assertIsInstance(store, SQLiteStore)
        self.assertFalse(os.path.exists(path))
        store = open_store(StoreSpec("postgresql", uri="postgresql://u@h/db", where="postgresql://u@h/db"), clock, "/x")
        self.addCleanup(store.close)
        self.assertIsInstance(store, PostgresStore)
        self.assertEqual(store.snapshot_path, "/x")


class CheckStorePostgresIntegrationTests(unittest.TestCase):
    """check_store against a real server."""

    def test_a_usable_database_passes(self):
        """An empty database (the first node migrates it) and no SQLite file yet pass with no notice."""
        uri = fresh_database(self)
        self.assertIsNone(check_store(parse_store(uri, "var")))
        self.assertIsNone(check_store(parse_store(None, self.mktemp())))

    def test_refusals_are_one_line(self):
        """An unknown database is refused naming the store (no password); an absent server without a snapshot too."""
        uri = fresh_database(self)
        error = self.assertRaises(StoreRefused, check_store, parse_store(uri + "_none", "var"))
        self.assertIn("refused the connection", str(error))
        self.assertNotIn("\n", str(error))
        error = self.assertRaises(StoreRefused, check_store, parse_store("postgresql://u:pw@127.0.0.1:1/db", "var"))
        self.assertTrue(str(error).startswith("cannot reach the store postgresql://u@127.0.0.1:1/db: "), str(error))
        self.assertNotIn("pw", str(error))

    def test_an_absent_server_with_a_snapshot_is_a_notice(self):
        """An absent server when the node has its last-known configuration: one line saying it starts from it."""
        snapshot = os.path.abspath(self.mktemp())
        with open(snapshot, "w"):
            pass
        notice = check_store(parse_store("postgresql://u@127.0.0.1:1/db", "var"), snapshot)
        self.assertTrue(notice.startswith("the store postgresql://u@127.0.0.1:1/db is unreachable ("), notice)
        self.assertTrue(notice.endswith(f"; starting from the last-known configuration in {snapshot}"), notice)

    def test_a_newer_sqlite_file_is_refused(self):
        """For SQLite, check_store is check_file: a file with an unknown migration is StoreTooNew."""
        import sqlite3

        path = os.path.abspath(self.mktemp())
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
        newer = range(1, SCHEMA_VERSION + 2)
        connection.executemany("INSERT INTO schema_migrations VALUES (?, 'x', 't')", [(n,) for n in newer])
        connection.commit()
        connection.close()
        self.assertRaises(StoreTooNew, check_store, parse_store("sqlite:" + path, "var"))
