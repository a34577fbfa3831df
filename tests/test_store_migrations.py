"""
The store's numbered migrations (edgegw_tx/store/migrations.py and
sqlite_schema.py) on real SQLite files: a fresh store, stores written by
every earlier release (built here with the statements those releases ran),
a failing migration, and a store from a newer edgegw, down to ``twistd``.
"""

from __future__ import annotations

import io
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial import unittest

from edgegw_tx.store import Conflict, MigrationFailed, SQLiteStore, StoreRefused, StoreTooNew
from edgegw_tx.store.migrations import Migration, defined_in, numbered, plan
from edgegw_tx.store.sqlite import SCHEMA_VERSION
from edgegw_tx.store.sqlite_schema import MIGRATIONS, check_file
from tests.support.fakes import SynchronousReactor
from tests.support.harness import run_twistd_until_it_ends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What the releases before numbered migrations ran at every start, level by
# level (each ran those of its own level and all below, then wrote its level
# in meta): the fixtures below are built from these, not from the migrations.
LEGACY: dict[int, list[str]] = {
    1: [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS endpoints (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL,
            path_shape TEXT NOT NULL, method TEXT NOT NULL, domain TEXT NOT NULL,
            collection_id TEXT, description TEXT NOT NULL DEFAULT '',
            code TEXT NOT NULL DEFAULT '', enabled INTEGER NOT NULL DEFAULT 1,
            settings TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL, artifact TEXT,
            deployed TEXT, last_error TEXT, created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL, UNIQUE (domain, method, path_shape))""",
        """CREATE TABLE IF NOT EXISTS api_keys (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL)""",
    ],
    2: [
        """CREATE TABLE IF NOT EXISTS services (
            id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            service_type TEXT NOT NULL, config TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS bindings (
            endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
            pool_id TEXT NOT NULL,
            service_id TEXT NOT NULL REFERENCES services (id) ON DELETE RESTRICT,
            created_at TEXT NOT NULL, PRIMARY KEY (endpoint_id, pool_id))""",
        "CREATE INDEX IF NOT EXISTS bindings_by_service ON bindings (service_id)",
    ],
    3: [
        """CREATE TABLE IF NOT EXISTS domains (
            id TEXT PRIMARY KEY, host TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS collections (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, domain_id TEXT REFERENCES domains (id),
            base_path TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        # Level 3 added this column to a table of level 1 when it was missing.
        "ALTER TABLE api_keys ADD COLUMN last_used_at TEXT",
    ],
    4: [
        """CREATE TABLE IF NOT EXISTS versions (
            endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
            digest TEXT NOT NULL, code TEXT NOT NULL,
            dependencies TEXT NOT NULL DEFAULT '{}',
            compile_seconds REAL NOT NULL DEFAULT 0, created_at TEXT NOT NULL,
            UNIQUE (endpoint_id, digest))""",
        "CREATE INDEX IF NOT EXISTS versions_by_digest ON versions (digest)",
    ],
    5: [
        """CREATE TABLE IF NOT EXISTS worker_uids (
            endpoint_id TEXT PRIMARY KEY REFERENCES endpoints (id) ON DELETE CASCADE,
            uid INTEGER NOT NULL UNIQUE)""",
    ],
}

# Records as each level could hold them, written with that level's columns.
LEGACY_DATA: dict[int, list[str]] = {
    1: [
        "INSERT INTO endpoints (id, name, path, path_shape, method, domain, settings, status,"
        " created_at, updated_at) VALUES ('e1', 'hello', '/hello', '/hello', 'GET', '*',"
        ' \'{"timeout": 5.0}\', \'created\', \'t0\', \'t0\')',
        "INSERT INTO api_keys (id, name, scope, key_hash, created_at)"
        " VALUES ('k1', 'first', 'admin', 'hash1', 't0')",
    ],
    2: [
        "INSERT INTO services (id, name, service_type, config, created_at, updated_at)"
        ' VALUES (\'s1\', \'main-db\', \'postgres\', \'{"host": "db"}\', \'t0\', \'t0\')',
        "INSERT INTO bindings (endpoint_id, pool_id, service_id, created_at) VALUES ('e1', 'main', 's1', 't0')",
    ],
    3: [
        "INSERT INTO domains (id, host, created_at, updated_at) VALUES ('d1', 'api.example.com', 't0', 't0')",
        "INSERT INTO collections (id, name, domain_id, base_path, created_at, updated_at)"
        " VALUES ('c1', 'users', 'd1', '/users', 't0', 't0')",
        "UPDATE api_keys SET last_used_at = 't1' WHERE id = 'k1'",
    ],
    4: [
        "INSERT INTO versions (endpoint_id, digest, code, dependencies, compile_seconds, created_at)"
        ' VALUES (\'e1\', \'abc\', \'fn main() {}\', \'{"anyhow": "1"}\', 1.5, \'t0\')',
    ],
    5: ["INSERT INTO worker_uids (endpoint_id, uid) VALUES ('e1', 61184)"],
}


def legacy_file(path: str, level: int, schema: str | None = None) -> None:
    """A store as the release of ``level`` left it, with records of every level up to it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    connection = sqlite3.connect(path)
    try:
        for n in range(1, level + 1):
            for statement in LEGACY[n] + LEGACY_DATA[n]:
                connection.execute(statement)
        connection.execute(
            "INSERT INTO meta (key, value) VALUES ('schema', ?)", (schema or str(level),)
        )
        connection.commit()
    finally:
        connection.close()


def read(path: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query on the file, with a connection of the test's own."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


def tables(path: str) -> set[str]:
    return {name for (name,) in read(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def shape(path: str) -> dict[str, Any]:
    """
    The schema of a file as SQLite understands it, whatever text made it:
    each table's columns, foreign keys and indexes (with their columns and
    collations).
    """
    connection = sqlite3.connect(path)
    try:
        result: dict[str, Any] = {}
        for (table,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall():
            indexes = []
            for _, name, unique, origin, partial in connection.execute(f"PRAGMA index_list({table})"):
                columns = connection.execute(f"PRAGMA index_xinfo({name})").fetchall()
                key = name if origin == "c" else origin
                indexes.append((key, unique, partial, [c[2:] for c in columns]))
            result[table] = {
                "columns": connection.execute(f"PRAGMA table_info({table})").fetchall(),
                "foreign_keys": connection.execute(f"PRAGMA foreign_key_list({table})").fetchall(),
                "indexes": sorted(indexes, key=repr),
            }
        return result
    finally:
        connection.close()


#: The number of this code's last migration.
LAST = MIGRATIONS[-1].version

def store_at(
    test: unittest.TestCase,
    path: str,
    migrations: Sequence[Migration] = MIGRATIONS,
    clock: SynchronousReactor | None = None,
) -> tuple[SQLiteStore, Deferred[None]]:
    """A store on ``path`` running synchronously, and its ``open()``; closed at the end of the test."""
    clock = clock or SynchronousReactor()
    store = SQLiteStore(path, reactor=clock, threadpool=clock.getThreadPool(), migrations=migrations)
    test.addCleanup(store.close)
    return store, store.open()


def broken(cursor: sqlite3.Cursor) -> None:
    """Creates a table, then fails: nothing of it may stay."""
    cursor.execute("CREATE TABLE half_done (id TEXT)")
    cursor.execute("INSERT INTO no_such_table VALUES (1)")


def mNEXT_later(cursor: sqlite3.Cursor) -> None:
    """A migration of a release after this one."""
    cursor.execute("CREATE TABLE policies (id TEXT PRIMARY KEY)")


def mNEXT_broken(cursor: sqlite3.Cursor) -> None:
    broken(cursor)


def m0001_a(cursor: Any) -> None:
    pass


def m0002_b(cursor: Any) -> None:
    pass


def m0003_c(cursor: Any) -> None:
    pass


def create_things(cursor: Any) -> None:
    pass


class MigrationListTests(unittest.TestCase):
    """The list's rules: numbers read from names, no holes; the plan of what a store lacks."""

    def test_numbers_are_read_from_names_and_follow_on(self) -> None:
        """numbered() takes m0001_x, m0002_y in order and refuses a hole, a wrong order or another name."""
        self.assertEqual(
            [(m.version, m.name) for m in numbered(m0001_a, m0002_b)], [(1, "a"), (2, "b")]
        )
        for functions in ((m0001_a, m0003_c), (m0002_b, m0001_a), (m0001_a, create_things)):
            self.assertRaises(ValueError, numbered, *functions)

    def test_a_modules_migrations_are_its_numbered_functions(self) -> None:
        """defined_in() gathers a namespace's m<NNNN>_ functions in number order, and only those; a hole is refused."""
        namespace = {"m0002_b": m0002_b, "create_things": create_things, "m0001_a": m0001_a, "m0003_not_a_function": 3}
        self.assertEqual(
            [(m.version, m.name, m.apply) for m in defined_in(namespace)], [(1, "a", m0001_a), (2, "b", m0002_b)]
        )
        self.assertRaises(ValueError, defined_in, {"m0001_a": m0001_a, "m0003_c": m0003_c})

    def test_schema_version_is_the_last_migration(self) -> None:
        """SCHEMA_VERSION is the number of the last migration, and the SQLite store's migrations are 1..LAST by name."""
        self.assertEqual(SCHEMA_VERSION, MIGRATIONS[-1].version)
        self.assertEqual(
            [(m.version, m.name) for m in MIGRATIONS],
            [
                (1, "endpoints_and_keys"),
                (2, "services_and_bindings"),
                (3, "domains_collections_key_use"),
                (4, "versions"),
                (5, "worker_uids"),
                (6, "cluster"),
                (7, "endpoint_routes"),
                (8, "policies_and_consumers"),
            ],
        )

    def test_plan(self) -> None:
        """The plan is what is missing, in order; an unknown number is StoreTooNew, a hole StoreRefused."""
        self.assertEqual([m.version for m in plan("f", [], MIGRATIONS)], list(range(1, LAST + 1)))
        self.assertEqual([m.version for m in plan("f", [1, 2, 3], MIGRATIONS)], list(range(4, LAST + 1)))
        self.assertEqual(plan("f", list(range(1, LAST + 1)), MIGRATIONS), [])
        error = self.assertRaises(StoreTooNew, plan, "f", list(range(1, LAST + 2)), MIGRATIONS)
        self.assertEqual((error.stored, error.known), (LAST + 1, LAST))
        error = self.assertRaises(StoreRefused, plan, "f", [1, 2, 4], MIGRATIONS)
        self.assertEqual(str(error), "the store f has migration 4 but not 3: it was not written by edgegw's migrations")


class FreshStoreTests(unittest.TestCase):
    """A new file gets every migration, in order, recorded once."""

    def test_a_fresh_store_applies_all_in_order(self) -> None:
        """open() runs migrations 1..LAST in order, records each with its name and time, and leaves no meta table."""
        ran: list[int] = []

        def recording(migration: Migration) -> Migration:
            def apply(cursor: Any) -> None:
                ran.append(migration.version)
                migration.apply(cursor)

            return Migration(migration.version, migration.name, apply)

        path = os.path.join(self.mktemp(), "store.sqlite3")
        clock = SynchronousReactor()
        clock.advance(1_800_000_000)
        store, opened = store_at(self, path, [recording(m) for m in MIGRATIONS], clock)
        self.successResultOf(opened)
        self.assertEqual(ran, list(range(1, LAST + 1)))
        self.assertEqual(
            self.successResultOf(store._pool.runQuery("SELECT * FROM schema_migrations ORDER BY version")),
            [(m.version, m.name, "2027-01-15T08:00:00+00:00") for m in MIGRATIONS],
        )
        store.close()
        self.assertEqual(
            tables(path),
            {"schema_migrations", "endpoints", "api_keys", "services", "bindings", "domains",
             "collections", "versions", "worker_uids", "changes", "sqlite_sequence", "nodes", "artifacts",
             "build_claims", "endpoint_routes", "consumers", "consumer_keys"},
        )

    def test_opening_again_runs_nothing(self) -> None:
        """A store at the current schema opens without running or recording anything again."""
        path = os.path.join(self.mktemp(), "store.sqlite3")
        store, opened = store_at(self, path)
        self.successResultOf(opened)
        store.close()
        before = read(path, "SELECT * FROM schema_migrations")

        def refuse(cursor: Any) -> None:
            raise AssertionError("ran again")

        clock = SynchronousReactor()
        clock.advance(60)
        again, opened = store_at(self, path, [Migration(m.version, m.name, refuse) for m in MIGRATIONS], clock)
        self.successResultOf(opened)
        again.close()
        self.assertEqual(read(path, "SELECT * FROM schema_migrations"), before)


class LegacyStoreTests(unittest.TestCase):
    """A store written before numbered migrations (meta 'schema' 1..5) is adopted and upgraded, its data kept."""

    def check_level(self, level: int) -> None:
        path = os.path.join(self.mktemp(), "old.sqlite3")
        legacy_file(path, level)
        fresh = os.path.join(self.mktemp(), "fresh.sqlite3")
        fresh_store, opened = store_at(self, fresh)
        self.successResultOf(opened)
        fresh_store.close()

        store, opened = store_at(self, path)
        self.successResultOf(opened)
        migrated = self.successResultOf(store._pool.runQuery("SELECT version, name FROM schema_migrations"))
        self.assertEqual(migrated, [(m.version, m.name) for m in MIGRATIONS])

        # Every record of the old file reads back through the store.
        endpoint = self.successResultOf(store.get_endpoint("e1"))
        self.assertEqual((endpoint["name"], endpoint["settings"]), ("hello", {"timeout": 5.0}))
        [key] = self.successResultOf(store.list_keys())
        self.assertEqual((key["id"], key["last_used_at"]), ("k1", "t1" if level >= 3 else None))
        if level >= 2:
            self.assertEqual(endpoint["services"], {"main": "s1"})
            [service] = self.successResultOf(store.list_services())
            self.assertEqual(service["config"], {"host": "db"})
        if level >= 3:
            self.assertEqual(self.successResultOf(store.get_domain_by_host("api.example.com"))["id"], "d1")
            self.assertEqual([c["id"] for c in self.successResultOf(store.list_collections("d1"))], ["c1"])
        if level >= 4:
            [version] = self.successResultOf(store.list_versions("e1"))
            self.assertEqual((version["digest"], version["dependencies"]), ("abc", {"anyhow": "1"}))
        if level >= 5:
            self.assertEqual(self.successResultOf(store.worker_uids()), {"e1": 61184})
        # What the migrations added works.
        self.assertEqual(self.successResultOf(store.allocate_worker_uid("e1", 61184, 61190)), 61184)
        self.successResultOf(
            store.create_service({"id": "s2", "name": "cache", "service_type": "redis", "config": {},
                                  "created_at": "t2", "updated_at": "t2"})
        )
        self.assertIsNone(self.successResultOf(store.bind("e1", "cache", "s2", "t2")))
        self.successResultOf(store.touch_keys({"k1": "t2"}))
        self.assertEqual(self.successResultOf(store.get_key("k1"))["last_used_at"], "t2")
        store.close()
        # And the file now has the very schema of a new one (meta gone).
        self.assertEqual(shape(path), shape(fresh))

    def test_level_1_is_upgraded(self) -> None:
        """A level-1 store (endpoints and keys) gets services, domains, versions, uids and last_used_at, data kept."""
        self.check_level(1)

    def test_level_2_is_upgraded(self) -> None:
        """A level-2 store (with services and bindings) is upgraded, bindings kept."""
        self.check_level(2)

    def test_level_3_is_upgraded(self) -> None:
        """A level-3 store (domains, collections, last_used_at) is upgraded, its key use times kept."""
        self.check_level(3)

    def test_level_4_is_upgraded(self) -> None:
        """A level-4 store (versions) gets worker_uids, versions kept."""
        self.check_level(4)

    def test_level_5_is_adopted(self) -> None:
        """A level-5 store is recorded as having 1..5 and gets migration 6, uids kept."""
        self.check_level(5)

    def test_a_level_from_the_future_is_refused(self) -> None:
        """A meta level above the last migration is StoreTooNew, and the file is left as it was."""
        path = os.path.join(self.mktemp(), "old.sqlite3")
        legacy_file(path, 5, schema="9")
        _, opened = store_at(self, path)
        failure = self.failureResultOf(opened, StoreTooNew)
        self.assertEqual((failure.value.stored, failure.value.known), (9, LAST))
        self.assertEqual(read(path, "SELECT value FROM meta"), [("9",)])
        self.assertNotIn("schema_migrations", tables(path))

    def test_a_level_that_is_no_number_is_refused(self) -> None:
        """A meta level that is not a number is refused naming it, not a traceback."""
        path = os.path.join(self.mktemp(), "old.sqlite3")
        legacy_file(path, 2, schema="two")
        _, opened = store_at(self, path)
        failure = self.failureResultOf(opened, StoreRefused)
        self.assertEqual(str(failure.value), f"the store {path} has a schema level that is not a number: 'two'")


class RollbackTests(unittest.TestCase):
    """A migration that fails leaves the store exactly as it was: all run in one transaction."""

    def test_a_failed_migration_on_a_new_file_leaves_nothing(self) -> None:
        """When the migration after the last fails, neither its table nor migrations 1..LAST nor their records remain."""
        path = os.path.join(self.mktemp(), "store.sqlite3")
        _, opened = store_at(self, path, MIGRATIONS + numbered_after(mNEXT_broken))
        failure = self.failureResultOf(opened, MigrationFailed)
        self.assertEqual((failure.value.version, failure.value.name), (LAST + 1, "broken"))
        self.assertEqual(
            str(failure.value),
            f"migration {LAST + 1:04d}_broken of the store {path} failed, nothing was changed: no such table: no_such_table",
        )
        self.assertEqual(tables(path), set())

    def test_a_failed_migration_on_an_old_file_keeps_it_as_it_was(self) -> None:
        """A level-3 store whose migration 7 fails keeps its meta level, tables and data; no migration stays."""
        path = os.path.join(self.mktemp(), "old.sqlite3")
        legacy_file(path, 3)
        before = shape(path)
        _, opened = store_at(self, path, MIGRATIONS + numbered_after(mNEXT_broken))
        self.failureResultOf(opened, MigrationFailed)
        self.assertEqual(shape(path), before)
        self.assertEqual(read(path, "SELECT value FROM meta WHERE key = 'schema'"), [("3",)])
        self.assertEqual(read(path, "SELECT id, last_used_at FROM api_keys"), [("k1", "t1")])
        # The code of the day still opens it.
        store, opened = store_at(self, path)
        self.successResultOf(opened)
        self.assertEqual(self.successResultOf(store.get_endpoint("e1"))["services"], {"main": "s1"})


def numbered_after(*functions: Callable[[Any], None]) -> tuple[Migration, ...]:
    """Migrations that would follow the current ones (named m0006_… on)."""
    return tuple(
        Migration(MIGRATIONS[-1].version + i, f.__name__.split("_", 1)[1], f)
        for i, f in enumerate(functions, start=1)
    )


def future_store(test: unittest.TestCase) -> str:
    """A gateway's store file (in a data dir of its own) that a release with a migration 7 wrote."""
    path = os.path.abspath(os.path.join(test.mktemp(), "edgegw.sqlite3"))
    store, opened = store_at(test, path, MIGRATIONS + numbered_after(mNEXT_later))
    test.successResultOf(opened)
    store.close()
    return path


class FutureStoreTests(unittest.TestCase):
    """A store with a migration this code does not know is refused, with both versions named."""

    def test_open_refuses_a_store_from_the_future(self) -> None:
        """open() fails with StoreTooNew naming the store's version and the code's; the file is untouched."""
        path = future_store(self)
        before = shape(path), read(path, "SELECT * FROM schema_migrations")
        _, opened = store_at(self, path)
        failure = self.failureResultOf(opened, StoreTooNew)
        self.assertEqual(
            str(failure.value),
            f"the store {path} is at schema version {LAST + 1}, newer than this edgegw's {LAST}:"
            " run the edgegw that wrote it (or a newer one)",
        )
        self.assertEqual((shape(path), read(path, "SELECT * FROM schema_migrations")), before)

    def test_check_file(self) -> None:
        """check_file passes no file and a current one, refuses a future one and one that is no database, and writes nothing."""
        missing = os.path.join(self.mktemp(), "none.sqlite3")
        check_file(missing)
        self.assertFalse(os.path.exists(missing))
        current = os.path.join(self.mktemp(), "store.sqlite3")
        store, opened = store_at(self, current)
        self.successResultOf(opened)
        store.close()
        check_file(current)
        future = future_store(self)
        error = self.assertRaises(StoreTooNew, check_file, future)
        self.assertEqual((error.stored, error.known), (LAST + 1, LAST))
        garbage = os.path.join(self.mktemp(), "garbage.sqlite3")
        os.makedirs(os.path.dirname(garbage))
        with open(garbage, "wb") as f:
            f.write(b"not a database, not at all" * 100)
        error = self.assertRaises(StoreRefused, check_file, garbage)
        self.assertEqual(str(error), f"cannot read the store {garbage}: file is not a database")

    def test_make_service_refuses_a_store_from_the_future(self) -> None:
        """twistd's makeService exits with the one line, makes no runtime and lets go of the data dir's lock."""
        from edgegw_tx import tap
        from edgegw_tx.datadir_lock import DataDirLock

        made: list[dict[str, Any]] = []
        self.patch(tap, "GatewayRuntime", lambda **kwargs: made.append(kwargs))
        path = future_store(self)
        data_dir = os.path.dirname(path)
        options = tap.Options()
        options.parseOptions(["--data-dir", data_dir])
        error = self.assertRaises(SystemExit, tap.makeService, options)
        self.assertEqual(str(error.code), str(StoreTooNew(path, LAST + 1, LAST)))
        self.assertEqual(made, [])
        lock = DataDirLock(data_dir)
        lock.acquire()
        lock.release()


class RuntimeStartTests(unittest.TestCase):
    """A gateway whose store cannot be brought up to date says so in one line."""

    def test_a_failed_migration_at_start_is_one_error_line(self) -> None:
        """The runtime logs one error naming the migration (no traceback), then stops the reactor."""
        from twisted.logger import Logger, LogLevel, formatEvent

        from edgegw_tx.admin.auth import KeyRing
        from tests.support.fakes import fake_runtime

        clock = SynchronousReactor()
        path = os.path.join(self.mktemp(), "edgegw.sqlite3")
        store = SQLiteStore(
            path, reactor=clock, threadpool=clock.getThreadPool(), migrations=MIGRATIONS + numbered_after(mNEXT_broken)
        )
        self.addCleanup(store.close)
        runtime = fake_runtime(self, store=store, reactor=clock, keys=KeyRing(store, reactor=clock))
        self.addCleanup(runtime.data_dir_lock.release)
        events: list[dict[str, Any]] = []
        runtime.log = Logger(observer=events.append)
        self.successResultOf(runtime.startService())
        self.assertTrue(clock.hasStopped)
        [error] = [e for e in events if e["log_level"] >= LogLevel.error]
        self.assertNotIn("log_failure", error)
        self.assertEqual(
            formatEvent(error),
            f"edgegw could not start: migration {LAST + 1:04d}_broken of the store {path} failed, nothing was changed:"
            " no such table: no_such_table",
        )


class DocsTests(unittest.TestCase):
    """What users read about upgrades quotes the refusal as the code words it."""

    def test_the_docs_quote_the_refusal(self) -> None:
        """README.md and docs/cli.md show StoreTooNew's line, word for word."""
        line = str(StoreTooNew("./var/edgegw.sqlite3", 6, 5))
        for name in ("README.md", "docs/cli.md"):
            with open(os.path.join(ROOT, name)) as f:
                self.assertIn(line, " ".join(f.read().split()), name)


class ResetAdminFutureStoreTests(unittest.TestCase):
    """``edgegw keys reset-admin`` works on the store itself: a newer edgegw's store is left alone."""

    @inlineCallbacks
    def test_reset_admin_refuses_a_store_from_the_future(self) -> Any:
        """The command exits 1 with the one line naming both versions; no key is written, the store is untouched."""
        from edgegw_tx.cli import commands as cli

        path = future_store(self)
        data_dir = os.path.dirname(path)
        before = shape(path), read(path, "SELECT * FROM schema_migrations")
        out, err = io.StringIO(), io.StringIO()
        code = yield cli.run(
            ["keys", "reset-admin", "--data-dir", data_dir], reactor=reactor, environ={}, stdout=out, stderr=err
        )
        self.assertEqual((code, out.getvalue()), (1, ""))
        self.assertEqual(err.getvalue(), f"error: {StoreTooNew(path, LAST + 1, LAST)}\n")
        self.assertFalse(os.path.exists(os.path.join(data_dir, "admin.key")))
        self.assertEqual((shape(path), read(path, "SELECT * FROM schema_migrations")), before)


class TwistdFutureStoreTests(unittest.TestCase):
    """A real ``twistd edgegw`` on a store from the future."""

    timeout = 60

    @inlineCallbacks
    def test_twistd_refuses_with_one_line(self) -> Any:
        """twistd exits 1 printing only the line naming both schema versions, no traceback, before it listens."""
        path = future_store(self)
        data_dir = os.path.dirname(path)
        status, output = yield run_twistd_until_it_ends(data_dir)
        self.assertEqual(status, (1, None), output)
        self.assertEqual(output.strip(), str(StoreTooNew(path, LAST + 1, LAST)))


class ClusterMigrationTests(unittest.TestCase):
    """Migration 6 (the cluster's) on a store of the schema before it."""

    def test_a_store_at_5_gets_revisions_and_the_change_log(self) -> None:
        """Records of before read back at revision 0 with an empty change log; a write after it is logged and revised."""
        path = os.path.join(self.mktemp(), "store.sqlite3")
        old, opened = store_at(self, path, MIGRATIONS[:5])
        self.successResultOf(opened)
        old.close()
        connection = sqlite3.connect(path)
        for n in (1, 2, 3):
            for statement in LEGACY_DATA[n]:
                connection.execute(statement)
        connection.commit()
        connection.close()
        store, opened = store_at(self, path)
        self.successResultOf(opened)
        self.assertEqual(self.successResultOf(store.get_endpoint("e1"))["revision"], 0)
        self.assertEqual(
            [r["revision"] for r in self.successResultOf(store.list_services())]
            + [r["revision"] for r in self.successResultOf(store.list_domains())]
            + [r["revision"] for r in self.successResultOf(store.list_collections())]
            + [r["revision"] for r in self.successResultOf(store.list_keys())],
            [0, 0, 0, 0],
        )
        self.assertEqual(self.successResultOf(store.changes_since(0)), {"revision": 0, "changes": [], "complete": True})
        updated = self.successResultOf(store.update_endpoint("e1", {"status": "running"}, revision=0))
        log = self.successResultOf(store.changes_since(0))
        self.assertEqual(log["changes"], [{"revision": updated["revision"], "kind": "endpoint", "record_id": "e1"}])


class EndpointRoutesMigrationTests(unittest.TestCase):
    """Migration 7 (several routes per endpoint) on a store of the schema before it."""

    def test_an_endpoint_of_before_keeps_its_one_route(self) -> None:
        """An endpoint stored at 6 reads back with its route as its one ``routes`` entry, whose uniqueness holds."""
        path = os.path.join(self.mktemp(), "store.sqlite3")
        old, opened = store_at(self, path, MIGRATIONS[:6])
        self.successResultOf(opened)
        old.close()
        connection = sqlite3.connect(path)
        for statement in LEGACY_DATA[1]:
            connection.execute(statement)
        connection.commit()
        connection.close()
        store, opened = store_at(self, path)
        self.successResultOf(opened)
        endpoint = self.successResultOf(store.get_endpoint("e1"))
        self.assertEqual(
            (endpoint["method"], endpoint["path"], endpoint["routes"]),
            ("GET", "/hello", [{"method": "GET", "path": "/hello", "path_shape": "/hello"}]),
        )
        # Its route is taken, even as another endpoint's second route.
        other = {
            "id": "e2", "name": "other", "domain": "*", "settings": {}, "status": "created",
            "created_at": "t1", "updated_at": "t1",
            "routes": [
                {"method": "POST", "path": "/hello", "path_shape": "/hello"},
                {"method": "GET", "path": "/hello", "path_shape": "/hello"},
            ],
        }
        self.failureResultOf(store.create_endpoint(other), Conflict)


class PoliciesMigrationTests(unittest.TestCase):
    """Migration 8 (policies and consumers) on a store of the schema before it."""

    def test_records_of_before_get_no_policy_and_consumers_start_empty(self) -> None:
        """A domain, collection and endpoint stored at 7 read back with policy {}, can take one, and consumers are usable."""
        path = os.path.join(self.mktemp(), "store.sqlite3")
        old, opened = store_at(self, path, MIGRATIONS[:7])
        self.successResultOf(opened)
        old.close()
        connection = sqlite3.connect(path)
        for n in (1, 3):
            for statement in LEGACY_DATA[n]:
                connection.execute(statement)
        connection.commit()
        connection.close()
        store, opened = store_at(self, path)
        self.successResultOf(opened)
        self.assertEqual(self.successResultOf(store.get_endpoint("e1"))["policy"], {})
        self.assertEqual([d["policy"] for d in self.successResultOf(store.list_domains())], [{}])
        self.assertEqual([c["policy"] for c in self.successResultOf(store.list_collections())], [{}])
        updated = self.successResultOf(store.update_endpoint("e1", {"policy": {"limits": {"timeout": 3}}}))
        self.assertEqual(updated["policy"], {"limits": {"timeout": 3}})
        self.assertEqual(self.successResultOf(store.list_consumers()), [])
        self.successResultOf(store.create_consumer(
            {"id": "u1", "name": "app", "enabled": True, "created_at": "t0", "updated_at": "t0"}
        ))
        self.assertEqual(self.successResultOf(store.get_consumer("u1"))["keys"], [])
