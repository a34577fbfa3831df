"""
What only the PostgreSQL store does, on a real server (a database per test):
its migrations (from an empty database, from the schema before the cluster's,
several nodes at once, a newer schema), a lost connection (``StoreUnavailable``),
the first key when two nodes start at once, the snapshot of the configuration
and the offline start from it.
"""

import os
import stat
import sqlite3

import psycopg2
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.trial import unittest

from edgegw_tx.store.errors import Conflict, MigrationFailed, StoreRefused, StoreTooNew, StoreUnavailable
from edgegw_tx.store.migrations import Migration
from edgegw_tx.store.postgres import PostgresStore, redact
from edgegw_tx.store.postgres_schema import MIGRATIONS
from tests.support.fakes import SynchronousReactor, endpoint
from tests.support.pg import fresh_database, postgres_store, terminate_connections

#: A server that is not there (nothing listens on port 1 of loopback).
NOWHERE = "postgresql://postgres:secret@127.0.0.1:1/edgegw"


def query(uri, sql, args=()):
    """Rows of a query on a connection of the test's own."""
    connection = psycopg2.connect(uri)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else None
    finally:
        connection.close()


def m0007_later(cursor):
    cursor.execute("CREATE TABLE policies (id TEXT PRIMARY KEY)")


def m0007_broken(cursor):
    cursor.execute("CREATE TABLE half_done (id TEXT)")
    cursor.execute("INSERT INTO no_such_table VALUES (1)")


def after(function):
    """A migration numbered after the current ones."""
    return Migration(MIGRATIONS[-1].version + 1, function.__name__.split("_", 1)[1], function)


#: The number of this code's last migration.
LAST = MIGRATIONS[-1].version


class MigrationsPostgresIntegrationTests(unittest.TestCase):
    """The numbered migrations on PostgreSQL."""

    def test_an_empty_database_gets_every_migration(self):
        """open() on an empty database records every migration with the same names as SQLite's."""
        from edgegw_tx.store.sqlite_schema import MIGRATIONS as SQLITE

        store = postgres_store(self)
        self.assertEqual(
            query(store.uri, "SELECT version, name FROM schema_migrations ORDER BY version"),
            [(m.version, m.name) for m in SQLITE],
        )

    def test_the_schema_before_the_cluster_is_upgraded(self):
        """A database at migration 5 with records gets 6: old records at revision 0, and new writes are logged."""
        uri = fresh_database(self)
        old = postgres_store(self, uri=uri, migrations=MIGRATIONS[:5])
        old.close()
        query(
            uri,
            "INSERT INTO endpoints (id, name, path, path_shape, method, domain, settings, status, created_at,"
            " updated_at) VALUES ('e1', 'hello', '/hello', '/hello', 'GET', '*', '{}', 'created', 't0', 't0')",
        )
        query(uri, "INSERT INTO api_keys (id, name, scope, key_hash, created_at) VALUES ('k1', 'a', 'admin', 'h', 't0')")
        store = postgres_store(self, uri=uri)
        self.assertEqual(self.successResultOf(store.get_endpoint("e1"))["revision"], 0)
        self.assertEqual(self.successResultOf(store.get_key("k1"))["revision"], 0)
        self.assertEqual(self.successResultOf(store.changes_since(0))["changes"], [])
        updated = self.successResultOf(store.update_endpoint("e1", {"status": "running"}, revision=0))
        self.assertEqual(self.successResultOf(store.changes_since(0))["revision"], updated["revision"])
        self.assertEqual(query(uri, "SELECT max(version) FROM schema_migrations"), [(LAST,)])

    def test_endpoints_of_before_get_their_route_rows(self):
        """A database at migration 6 with an endpoint gets 7: the endpoint reads back with its one route, which stays unique."""
        uri = fresh_database(self)
        postgres_store(self, uri=uri, migrations=MIGRATIONS[:6]).close()
        query(
            uri,
            "INSERT INTO endpoints (id, name, path, path_shape, method, domain, settings, status, created_at,"
            " updated_at) VALUES ('e1', 'hello', '/hello/{n}', '/hello/{}', 'GET', '*', '{}', 'created', 't0', 't0')",
        )
        store = postgres_store(self, uri=uri)
        self.assertEqual(
            self.successResultOf(store.get_endpoint("e1"))["routes"],
            [{"method": "GET", "path": "/hello/{n}", "path_shape": "/hello/{}"}],
        )
        other = {
            "id": "e2", "name": "two", "domain": "*", "settings": {}, "status": "created",
            "created_at": "t1", "updated_at": "t1",
            "routes": [
                {"method": "POST", "path": "/hello", "path_shape": "/hello"},
                {"method": "GET", "path": "/hello/{x}", "path_shape": "/hello/{}"},
            ],
        }
        self.failureResultOf(store.create_endpoint(other), Conflict)

    def test_records_of_before_get_an_empty_policy(self):
        """A database at migration 7 with an endpoint gets 8: its policy is {}, it takes one, and consumers work."""
        uri = fresh_database(self)
        postgres_store(self, uri=uri, migrations=MIGRATIONS[:7]).close()
        query(
            uri,
            "INSERT INTO endpoints (id, name, path, path_shape, method, domain, settings, status, created_at,"
            " updated_at) VALUES ('e1', 'hello', '/hello', '/hello', 'GET', '*', '{}', 'created', 't0', 't0')",
        )
        store = postgres_store(self, uri=uri)
        self.assertEqual(self.successResultOf(store.get_endpoint("e1"))["policy"], {})
        updated = self.successResultOf(store.update_endpoint("e1", {"policy": {"limits": {"timeout": 3}}}))
        self.assertEqual(updated["policy"], {"limits": {"timeout": 3}})
        created = self.successResultOf(store.create_consumer(
            {"id": "u1", "name": "app", "enabled": True, "created_at": "t0", "updated_at": "t0"}
        ))
        self.assertEqual((created["enabled"], created["keys"]), (True, []))

    def test_a_newer_schema_is_refused(self):
        """A database with a migration this code does not know: open() and check_store fail with StoreTooNew."""
        from edgegw_tx.store.uri import StoreSpec, check_store

        uri = fresh_database(self)
        postgres_store(self, uri=uri, migrations=MIGRATIONS + (after(m0007_later),)).close()
        store = PostgresStore(uri, reactor=SynchronousReactor(), threadpool=SynchronousReactor().getThreadPool())
        self.addCleanup(store.close)
        failure = self.failureResultOf(store.open(), StoreTooNew)
        self.assertEqual((failure.value.stored, failure.value.known), (LAST + 1, LAST))
        self.assertIn(redact(uri), str(failure.value))
        self.assertRaises(StoreTooNew, check_store, StoreSpec("postgresql", uri=uri, where=redact(uri)))

    def test_a_failed_migration_changes_nothing(self):
        """When the migration after the last fails, the database keeps its migrations and nothing of the new one."""
        uri = fresh_database(self)
        postgres_store(self, uri=uri).close()
        clock = SynchronousReactor()
        store = PostgresStore(
            uri, reactor=clock, threadpool=clock.getThreadPool(), migrations=MIGRATIONS + (after(m0007_broken),)
        )
        self.addCleanup(store.close)
        failure = self.failureResultOf(store.open(), MigrationFailed)
        self.assertEqual(failure.value.version, LAST + 1)
        self.assertEqual(query(uri, "SELECT max(version) FROM schema_migrations"), [(LAST,)])
        self.assertEqual(query(uri, "SELECT to_regclass('half_done') IS NULL"), [(True,)])

    @inlineCallbacks
    def test_nodes_starting_at_once_migrate_once(self):
        """Three stores opened at once on an empty database (real threads): all open, each migration recorded once."""
        uri = fresh_database(self)
        stores = [PostgresStore(uri, reactor=reactor) for _ in range(3)]
        for store in stores:
            self.addCleanup(store.close)
        results = yield DeferredList([s.open() for s in stores], consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, True, True], results)
        self.assertEqual(
            query(uri, "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version"),
            [(m.version, 1) for m in MIGRATIONS],
        )


class ConnectionPostgresIntegrationTests(unittest.TestCase):
    """A connection the server ends (pg_terminate_backend) or a server that is not there."""

    def test_a_lost_connection(self):
        """
        A read after the server ended the connection is retried on a new one;
        a write fails with StoreUnavailable naming the store, and the next
        works; the pool logs no traceback of it.
        """
        store = postgres_store(self)
        self.successResultOf(store.create_endpoint(endpoint()))
        self.assertGreater(terminate_connections(store.uri), 0)
        self.assertEqual(self.successResultOf(store.get_endpoint("e1"))["name"], "hello")
        terminate_connections(store.uri)
        failure = self.failureResultOf(store.update_endpoint("e1", {"status": "running"}), StoreUnavailable)
        self.assertEqual(failure.value.where, redact(store.uri))
        self.assertIn(f"the store {redact(store.uri)} is unavailable", str(failure.value))
        self.assertEqual(self.successResultOf(store.get_endpoint("e1"))["status"], "created")
        self.assertEqual(self.successResultOf(store.update_endpoint("e1", {"status": "running"}))["status"], "running")
        self.assertEqual(self.flushLoggedErrors(), [], "the pool logged the lost connection")

    def test_a_server_gone_while_running(self):
        """Reads and writes on a server that went away fail with StoreUnavailable (no traceback of the driver's)."""
        store = postgres_store(self)
        self.successResultOf(store.create_endpoint(endpoint()))
        store._pool.connargs = (NOWHERE,)  # the server is not at its address any more
        terminate_connections(store.uri)
        failure = self.failureResultOf(store.get_endpoint("e1"), StoreUnavailable)
        self.assertIn("Connection refused", failure.value.reason)
        self.failureResultOf(store.create_endpoint(endpoint(id="e2")), StoreUnavailable)
        self.assertEqual(self.flushLoggedErrors(), [], "the pool logged the lost connection")

    def test_an_absent_server_without_a_snapshot_is_refused(self):
        """open() on a server that is not there, with no last-known configuration: StoreRefused, one line, no password."""
        clock = SynchronousReactor()
        store = PostgresStore(NOWHERE, reactor=clock, threadpool=clock.getThreadPool())
        self.addCleanup(store.close)
        failure = self.failureResultOf(store.open(), StoreRefused)
        message = str(failure.value)
        self.assertTrue(message.startswith("cannot reach the store postgresql://postgres@127.0.0.1:1/edgegw: "), message)
        self.assertNotIn("secret", message)
        self.assertNotIn("\n", message)
        self.flushLoggedErrors()

    def test_a_refused_login_is_refused(self):
        """An unknown database is StoreRefused saying the server refused, not an offline start."""
        uri = fresh_database(self) + "_none"
        clock = SynchronousReactor()
        store = PostgresStore(uri, reactor=clock, threadpool=clock.getThreadPool(), snapshot_path=__file__)
        self.addCleanup(store.close)
        failure = self.failureResultOf(store.open(), StoreRefused)
        self.assertIn("refused the connection", str(failure.value))
        self.assertIn("does not exist", str(failure.value))
        self.flushLoggedErrors()


class FirstKeyPostgresIntegrationTests(unittest.TestCase):
    """The bootstrap key when nodes start at once."""

    @inlineCallbacks
    def test_two_nodes_at_once_make_one_first_key(self):
        """Two stores (real threads) adding a first key at once, five rounds: one wins each time, one key stays."""
        uri = fresh_database(self)
        stores = [PostgresStore(uri, reactor=reactor) for _ in range(2)]
        for store in stores:
            self.addCleanup(store.close)
        yield stores[0].open()
        yield stores[1].open()
        for round_ in range(5):
            results = yield DeferredList(
                [
                    s.add_first_key(
                        {"id": f"k{round_}{n}", "name": "first", "scope": "admin", "key_hash": f"h{round_}{n}",
                         "created_at": "t0"}
                    )
                    for n, s in enumerate(stores)
                ],
                consumeErrors=True,
            )
            self.assertEqual(sorted(value for _, value in results), [False, True], results)
            self.assertEqual(query(uri, "SELECT count(*) FROM api_keys"), [(1,)])
            query(uri, "DELETE FROM api_keys")


class SnapshotPostgresIntegrationTests(unittest.TestCase):
    """The last-known configuration a node keeps, and a start from it while the database is away."""

    def setUp(self):
        self.store = postgres_store(self)
        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.successResultOf(self.store.create_endpoint(endpoint(id="e2", path="/b", path_shape="/b")))
        self.successResultOf(
            self.store.create_service(
                {"id": "s1", "name": "db", "service_type": "postgres", "config": {"host": "h"},
                 "created_at": "t0", "updated_at": "t0"}
            )
        )
        self.successResultOf(self.store.bind("e1", "main", "s1", "t0"))
        self.successResultOf(self.store.add_key({"id": "k1", "name": "a", "scope": "admin", "key_hash": "h",
                                                 "created_at": "t0"}))
        self.successResultOf(self.store.record_version({"endpoint_id": "e1", "digest": "d1", "code": "a",
                                                        "dependencies": {}, "compile_seconds": 1.0, "created_at": "t0"}))
        self.successResultOf(self.store.record_version({"endpoint_id": "e1", "digest": "d2", "code": "b",
                                                        "dependencies": {}, "compile_seconds": 2.0, "created_at": "t0"}))
        self.revision = self.successResultOf(self.store.changes_since(0))["revision"]
        self.path = os.path.join(self.mktemp(), "last-known.sqlite3")

    def offline_store(self, clock):
        store = PostgresStore(NOWHERE, reactor=clock, threadpool=clock.getThreadPool(), snapshot_path=self.path,
                              retry_every=5)
        self.addCleanup(store.close)
        return store

    def test_save_snapshot(self):
        """save_snapshot writes the configuration and its revision to a SQLite file only its owner reads."""
        self.assertEqual(self.successResultOf(self.store.save_snapshot(self.path)), self.revision)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        connection = sqlite3.connect(self.path)
        try:
            self.assertEqual(connection.execute("SELECT id FROM endpoints ORDER BY id").fetchall(), [("e1",), ("e2",)])
            self.assertEqual(connection.execute("SELECT max(revision) FROM changes").fetchall(), [(self.revision,)])
        finally:
            connection.close()
        self.assertEqual([n for n in os.listdir(os.path.dirname(self.path))], ["last-known.sqlite3"])
        # Saved again over the old one.
        self.successResultOf(self.store.delete_endpoint("e2"))
        self.successResultOf(self.store.save_snapshot(self.path))
        connection = sqlite3.connect(self.path)
        try:
            self.assertEqual(connection.execute("SELECT id FROM endpoints").fetchall(), [("e1",)])
        finally:
            connection.close()

    def test_offline_start_serves_the_snapshot_then_catches_up(self):
        """
        Unreachable at start with a snapshot: open() succeeds offline, reads
        come from it (records, bindings, versions in order, revisions), writes
        are StoreUnavailable naming the revision served; retries on the clock,
        and when the database answers: online, when_online callbacks called,
        reads and writes on the database.
        """
        self.successResultOf(self.store.save_snapshot(self.path))
        expected = self.successResultOf(self.store.list_endpoints())
        clock = SynchronousReactor()
        store = self.offline_store(clock)
        self.successResultOf(store.open())
        self.assertFalse(store.online)
        self.assertEqual(store.snapshot_revision(), self.revision)
        self.assertEqual(self.successResultOf(store.list_endpoints()), expected)
        self.assertEqual([v["digest"] for v in self.successResultOf(store.list_versions("e1"))], ["d2", "d1"])
        self.assertEqual([k["id"] for k in self.successResultOf(store.list_keys())], ["k1"])
        self.assertEqual(self.successResultOf(store.changes_since(self.revision))["changes"], [])
        failure = self.failureResultOf(store.update_endpoint("e1", {"status": "x"}), StoreUnavailable)
        self.assertIn(f"last-known configuration of revision {self.revision}", str(failure.value))
        self.failureResultOf(store.save_snapshot(self.path), StoreUnavailable)
        back = []
        store.when_online(lambda: back.append(store.online))
        clock.advance(5)  # still not there
        self.assertFalse(store.online)
        # The server comes back at the store's address.
        store._pool.connargs = (self.store.uri,)
        clock.advance(5)
        self.assertEqual(back, [True])
        self.assertIsNone(store.snapshot_revision())
        self.successResultOf(self.store.update_endpoint("e1", {"status": "running"}))
        self.assertEqual(self.successResultOf(store.get_endpoint("e1"))["status"], "running")
        self.assertGreater(self.successResultOf(store.changes_since(self.revision))["revision"], self.revision)
        self.successResultOf(store.update_endpoint("e2", {"status": "running"}))
        self.flushLoggedErrors()

    def test_an_unreadable_snapshot_is_refused(self):
        """A snapshot that is no database: StoreRefused naming both the store and the file."""
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "wb") as f:
            f.write(b"garbage" * 1000)
        store = self.offline_store(SynchronousReactor())
        failure = self.failureResultOf(store.open(), StoreRefused)
        self.assertIn(self.path, str(failure.value))
        self.flushLoggedErrors()
