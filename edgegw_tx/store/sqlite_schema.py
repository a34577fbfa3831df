"""
The SQLite store's schema, as numbered migrations (``edgegw_tx.store.migrations``).

Each ``m<NNNN>_<name>`` function is one release's change to the schema; a
new change is a new function with the next number (``MIGRATIONS`` gathers
them), never an edit of an old one (stores out there have run it).  ``migrate`` runs what a store
lacks inside one transaction (``BEGIN IMMEDIATE``: SQLite's DDL is
transactional, so a failure leaves the file as it was) and records each in
``schema_migrations``.  The tables' statements are written once for SQLite
and PostgreSQL (``edgegw_tx.store.schema_ddl``), in SQLite's ``WORDS``;
SQLite's own (its triggers) are here.

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

from edgegw_tx.store import schema_ddl as ddl
from edgegw_tx.store.errors import StoreRefused
from edgegw_tx.store.migrations import CREATE_SCHEMA_MIGRATIONS, Migration, apply, defined_in, plan, record

#: What SQLite calls the shared tables' types: names unique ignoring case by
#: ``COLLATE NOCASE``, versions in rowid order.
WORDS = ddl.Words(
    big="INTEGER",
    double="REAL",
    binary="BLOB",
    counter_key="INTEGER PRIMARY KEY AUTOINCREMENT",
    unique_ignoring_case=" UNIQUE COLLATE NOCASE",
    versions_order="",
)


def m0001_endpoints_and_keys(cursor: sqlite3.Cursor) -> None:
    """Endpoints (one row per route: domain, method and path shape unique) and API keys (hashes only)."""
    ddl.run(cursor, WORDS, ddl.ENDPOINTS, ddl.API_KEYS)


def m0002_services_and_bindings(cursor: sqlite3.Cursor) -> None:
    """
    Services, and bindings: the name (``pool_id``) under which an endpoint's
    handlers reach a service.  Deleting the endpoint deletes its bindings; a
    bound service cannot be deleted (the store checks first and says by whom).
    """
    ddl.run(cursor, WORDS, ddl.SERVICES, ddl.BINDINGS, ddl.BINDINGS_BY_SERVICE)


def m0003_domains_collections_key_use(cursor: sqlite3.Cursor) -> None:
    """Domains, collections (a base path and a domain for their endpoints), and when each API key was last used."""
    ddl.run(cursor, WORDS, ddl.DOMAINS, ddl.COLLECTIONS, ddl.KEY_LAST_USED)


def m0004_versions(cursor: sqlite3.Cursor) -> None:
    """
    Every successful compile of an endpoint, newest last (rowid: compiling the
    same code again replaces its row, so it becomes the newest);
    ``dependencies`` is the endpoint's settings.dependencies of that build.
    Endpoint settings written before this (with ``instances``) are read as they
    are and upgraded by the admin plane (``validation.effective_settings``).
    """
    ddl.run(cursor, WORDS, ddl.VERSIONS, ddl.VERSIONS_BY_DIGEST)


def m0005_worker_uids(cursor: sqlite3.Cursor) -> None:
    """
    The uid an endpoint's workers run as (workers/isolation.py), drawn once;
    the row goes with the endpoint, which frees the uid.
    """
    ddl.run(cursor, WORDS, ddl.WORKER_UIDS)


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
    for table, _ in ddl.REVISIONED:
        ddl.run(cursor, WORDS, ddl.REVISION, table=table)
    ddl.run(cursor, WORDS, ddl.CHANGES)
    for table, kind in ddl.REVISIONED:
        cursor.execute(
            f"CREATE TRIGGER {table}_inserted AFTER INSERT ON {table} BEGIN {_change(kind, 'NEW.id', table)} END"
        )
        columns = f" OF {', '.join(ddl.KEY_DEFINITION)}" if table == "api_keys" else ""
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
    ddl.run(cursor, WORDS, ddl.NODES, ddl.ARTIFACTS, ddl.BUILD_CLAIMS)


def m0007_endpoint_routes(cursor: sqlite3.Cursor) -> None:
    """
    Endpoints with several routes: one ``endpoint_routes`` row per route, in
    order, with the uniqueness rule of routes (domain, method, path shape)
    over all of them.  Every endpoint of before gets its one route from its
    columns, which keep the first route (for readers of before).
    """
    ddl.run(cursor, WORDS, ddl.ENDPOINT_ROUTES, ddl.ENDPOINT_ROUTES_OF_BEFORE)


def m0008_policies_and_consumers(cursor: sqlite3.Cursor) -> None:
    """
    A traffic policy (JSON, ``{}`` for none) on every domain, collection and
    endpoint, those of before with none; consumers (names unique ignoring
    case) and their API keys, hashes only, going with their consumer.  A
    consumer's change and any change of its keys is a ``consumer`` change of
    the log (a key's naming its consumer), so other nodes reload them.
    """
    for table in ddl.POLICY_TABLES:
        ddl.run(cursor, WORDS, ddl.POLICY, table=table)
    ddl.run(cursor, WORDS, ddl.CONSUMERS, ddl.CONSUMER_KEYS, ddl.CONSUMER_KEYS_BY_CONSUMER)
    cursor.execute(
        "CREATE TRIGGER consumers_inserted AFTER INSERT ON consumers"
        f" BEGIN {_change('consumer', 'NEW.id', 'consumers')} END"
    )
    cursor.execute(
        "CREATE TRIGGER consumers_updated AFTER UPDATE ON consumers WHEN NEW.revision = OLD.revision"
        f" BEGIN {_change('consumer', 'NEW.id', 'consumers')} END"
    )
    cursor.execute(
        f"CREATE TRIGGER consumers_deleted AFTER DELETE ON consumers BEGIN {_change('consumer', 'OLD.id')} END"
    )
    for event, row in (("INSERT", "NEW"), ("DELETE", "OLD")):
        cursor.execute(
            f"CREATE TRIGGER consumer_keys_{event.lower().rstrip('e')}ed AFTER {event} ON consumer_keys"
            f" BEGIN {_change('consumer', row + '.consumer_id')} END"
        )


#: This module's ``m<NNNN>_`` functions, in their order.
MIGRATIONS = defined_in(globals())


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
    cursor.execute(CREATE_SCHEMA_MIGRATIONS)
    if legacy:
        # Adopted: the old level, as the migrations that made it (same numbers).
        record(cursor, [m for m in migrations if m.version in done], applied_at, "?")
        cursor.execute("DROP TABLE meta")
    apply(cursor, where, todo, applied_at, "?")
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
