"""
The SQLite store's schema, as numbered migrations (``edgegw_tx.store.migrations``).

Each ``m<NNNN>_<name>`` function is one release's change to the schema; a
new change is a new function at the end of ``MIGRATIONS``, never an edit of
an old one (stores out there have run it).  ``migrate`` runs what a store
lacks inside one transaction (``BEGIN IMMEDIATE``: SQLite's DDL is
transactional, so a failure leaves the file as it was) and records each in
``schema_migrations``.

Stores written before numbered migrations kept their level in a ``meta`` table
(key ``'schema'``, 1 to 5), and each level had exactly the tables of the
migrations of the same numbers; such a store is adopted: its level becomes the
rows 1..level of ``schema_migrations``, ``meta`` goes, and the rest run, all
in the same transaction.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from urllib.parse import quote

from edgegw_tx.store.errors import MigrationFailed, StoreRefused
from edgegw_tx.store.migrations import Migration, numbered, plan


def m0001_endpoints_and_keys(cursor: sqlite3.Cursor) -> None:
    """Endpoints (one row per route: domain, method and path shape unique) and API keys (hashes only)."""
    cursor.execute(
        """
        CREATE TABLE endpoints (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            path_shape TEXT NOT NULL,
            method TEXT NOT NULL,
            domain TEXT NOT NULL,
            collection_id TEXT,
            description TEXT NOT NULL DEFAULT '',
            code TEXT NOT NULL DEFAULT '',
            enabled INTEGER NOT NULL DEFAULT 1,
            settings TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL,
            artifact TEXT,
            deployed TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (domain, method, path_shape)
        )
        """
    )
    cursor.execute(
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            scope TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        )
        """
    )


def m0002_services_and_bindings(cursor: sqlite3.Cursor) -> None:
    """
    Services, and bindings: the name (``pool_id``) under which an endpoint's
    handlers reach a service.  Deleting the endpoint deletes its bindings; a
    bound service cannot be deleted (the store checks first and says by whom).
    """
    cursor.execute(
        """
        CREATE TABLE services (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            service_type TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    cursor.execute(
        """
        CREATE TABLE bindings (
            endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
            pool_id TEXT NOT NULL,
            service_id TEXT NOT NULL REFERENCES services (id) ON DELETE RESTRICT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (endpoint_id, pool_id)
        )
        """
    )
    cursor.execute("CREATE INDEX bindings_by_service ON bindings (service_id)")


def m0003_domains_collections_key_use(cursor: sqlite3.Cursor) -> None:
    """Domains, collections (a base path and a domain for their endpoints), and when each API key was last used."""
    cursor.execute(
        """
        CREATE TABLE domains (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    cursor.execute(
        """
        CREATE TABLE collections (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            domain_id TEXT REFERENCES domains (id),
            base_path TEXT NOT NULL DEFAULT '',
            description TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    cursor.execute("ALTER TABLE api_keys ADD COLUMN last_used_at TEXT")


def m0004_versions(cursor: sqlite3.Cursor) -> None:
    """
    Every successful compile of an endpoint, newest last (rowid: compiling the
    same code again replaces its row, so it becomes the newest);
    ``dependencies`` is the endpoint's settings.dependencies of that build.
    Endpoint settings written before this (with ``instances``) are read as they
    are and upgraded by the admin plane (``validation.effective_settings``).
    """
    cursor.execute(
        """
        CREATE TABLE versions (
            endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
            digest TEXT NOT NULL,
            code TEXT NOT NULL,
            dependencies TEXT NOT NULL DEFAULT '{}',
            compile_seconds REAL NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (endpoint_id, digest)
        )
        """
    )
    cursor.execute("CREATE INDEX versions_by_digest ON versions (digest)")


def m0005_worker_uids(cursor: sqlite3.Cursor) -> None:
    """
    The uid an endpoint's workers run as (workers/isolation.py), drawn once;
    the row goes with the endpoint, which frees the uid.
    """
    cursor.execute(
        """
        CREATE TABLE worker_uids (
            endpoint_id TEXT PRIMARY KEY REFERENCES endpoints (id) ON DELETE CASCADE,
            uid INTEGER NOT NULL UNIQUE
        )
        """
    )


#: The tables whose records carry a revision, and the kind their changes have.
REVISIONED = (
    ("endpoints", "endpoint"),
    ("services", "service"),
    ("domains", "domain"),
    ("collections", "collection"),
    ("api_keys", "key"),
)

#: The columns of an API key whose change is a change of the configuration (``last_used_at`` is not).
KEY_DEFINITION = ("id", "name", "scope", "key_hash", "created_at")

_AT = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')"


def _change(kind: str, record_id: str, table: str | None = None) -> str:
    """A trigger's body: append a change row, and (``table``) give the record its revision."""
    body = f"INSERT INTO changes (kind, record_id, at) VALUES ('{kind}', {record_id}, {_AT});"
    if table is not None:
        body += f" UPDATE {table} SET revision = (SELECT max(revision) FROM changes) WHERE id = {record_id};"
    return body


def m0006_cluster(cursor: sqlite3.Cursor) -> None:
    """
    What a cluster of gateways needs (the same schema as PostgreSQL's, where
    it is used): a revision on every record an ``If-Match`` may name, the
    change log that triggers write (no write path can forget it; records of
    before have revision 0), the nodes, the shared binaries and the claims on
    their compiles.  Times of nodes and claims are the database's clock, in
    seconds since the epoch.  SQLite's triggers run AFTER the write: they do
    not fire themselves again (recursive triggers are off), and an update
    trigger fires only for a write that leaves ``revision`` alone, so the
    triggers' own UPDATE of ``revision`` makes no second change.
    """
    for table, _ in REVISIONED:
        cursor.execute(f"ALTER TABLE {table} ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")
    cursor.execute(
        """
        CREATE TABLE changes (
            revision INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            record_id TEXT NOT NULL,
            at TEXT NOT NULL
        )
        """
    )
    for table, kind in REVISIONED:
        cursor.execute(
            f"CREATE TRIGGER {table}_inserted AFTER INSERT ON {table} BEGIN {_change(kind, 'NEW.id', table)} END"
        )
        columns = f" OF {', '.join(KEY_DEFINITION)}" if table == "api_keys" else ""
        cursor.execute(
            f"CREATE TRIGGER {table}_updated AFTER UPDATE{columns} ON {table}"
            " WHEN NEW.revision = OLD.revision"
            f" BEGIN {_change(kind, 'NEW.id', table)} END"
        )
        cursor.execute(f"CREATE TRIGGER {table}_deleted AFTER DELETE ON {table} BEGIN {_change(kind, 'OLD.id')} END")
    for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        cursor.execute(
            f"CREATE TRIGGER bindings_{event.lower().rstrip('e')}ed AFTER {event} ON bindings"
            f" BEGIN {_change('binding', row + '.endpoint_id')} END"
        )
    cursor.execute(
        """
        CREATE TABLE nodes (
            name TEXT PRIMARY KEY,
            address TEXT,
            admin_address TEXT,
            version TEXT,
            started_at TEXT,
            last_seen REAL NOT NULL,
            workers TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    cursor.execute(
        """
        CREATE TABLE artifacts (
            digest TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            data BLOB NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            node TEXT,
            created_at TEXT NOT NULL
        )
        """
    )
    cursor.execute(
        """
        CREATE TABLE build_claims (
            digest TEXT PRIMARY KEY,
            node TEXT NOT NULL,
            claimed_at REAL NOT NULL
        )
        """
    )


MIGRATIONS: tuple[Migration, ...] = numbered(
    m0001_endpoints_and_keys,
    m0002_services_and_bindings,
    m0003_domains_collections_key_use,
    m0004_versions,
    m0005_worker_uids,
    m0006_cluster,
)


def _has_table(cursor: sqlite3.Cursor, name: str) -> bool:
    cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return cursor.fetchone() is not None


def _applied(cursor: sqlite3.Cursor, where: str) -> tuple[list[int], bool]:
    """
    The migrations the store has, and whether they are a level in the old
    ``meta`` table still to be adopted (no ``schema_migrations`` yet).
    """
    if _has_table(cursor, "schema_migrations"):
        cursor.execute("SELECT version FROM schema_migrations ORDER BY version")
        return [version for (version,) in cursor.fetchall()], False
    if not _has_table(cursor, "meta"):
        return [], False
    cursor.execute("SELECT value FROM meta WHERE key = 'schema'")
    row = cursor.fetchone()
    try:
        level = int(row[0]) if row is not None else 0
    except ValueError:
        raise StoreRefused(f"the store {where} has a schema level that is not a number: {row[0]!r}") from None
    return list(range(1, level + 1)), True


def migrate(
    cursor: sqlite3.Cursor, where: str, applied_at: str, migrations: Sequence[Migration] = MIGRATIONS
) -> list[Migration]:
    """
    Bring the store of ``cursor`` up to the last of ``migrations``, in one
    transaction that the caller commits (adbapi's ``runInteraction``: it rolls
    back when this raises).  Returns the migrations it ran, in order.
    ``StoreTooNew`` before anything changes when the store is newer than the
    code; ``MigrationFailed`` naming the migration when one fails.
    """
    cursor.execute("BEGIN IMMEDIATE")
    done, legacy = _applied(cursor, where)
    todo = plan(where, done, migrations)
    if not _has_table(cursor, "schema_migrations"):
        cursor.execute(
            "CREATE TABLE schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
    if legacy:
        # Adopted: the old level, as the migrations that made it (same numbers).
        cursor.executemany(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            [(m.version, m.name, applied_at) for m in migrations if m.version in done],
        )
        cursor.execute("DROP TABLE meta")
    for migration in todo:
        try:
            migration.apply(cursor)
        except Exception as e:
            raise MigrationFailed(where, migration.version, migration.name, e) from e
        cursor.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, applied_at),
        )
    return todo


def check_file(path: str, migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """
    Refuse, before the gateway starts, a store file this code cannot use
    (``StoreTooNew``, or ``StoreRefused`` when it cannot be read). Reads only;
    no file is no store yet, which is fine. Blocking: for ``twistd``'s
    ``makeService``, before the reactor runs.
    """
    if not os.path.exists(path):
        return
    try:
        connection = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            done, _ = _applied(connection.cursor(), path)
        finally:
            connection.close()
    except sqlite3.Error as e:
        raise StoreRefused(f"cannot read the store {path}: {e}") from None
    plan(path, done, migrations)
