"""
The PostgreSQL store's schema: the same numbered migrations as SQLite's
(``edgegw_tx.store.sqlite_schema``), same numbers and names, in PostgreSQL's
words.

``migrate`` runs what the database lacks in one transaction that first takes
an advisory lock (``MIGRATIONS_LOCK``): when several nodes start at once, the
first applies the migrations and the others wait for it, then find them done.
A ``seq`` column orders versions (SQLite has its rowids); ``BYTEA`` holds
binaries; a services name is unique ignoring case through an index on
``lower(name)``.

Migration 6's triggers write the change log: one function for every table,
told the record's kind and key column by its arguments. It takes
``CHANGES_LOCK`` before it draws the revision, so revisions are drawn in the
order the transactions commit (a reader that sees revision N sees every
change before it), and it sends ``NOTIFY edgegw_changes`` with the revision,
delivered when the transaction commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgegw_tx.store.errors import MigrationFailed
from edgegw_tx.store.migrations import Migration, numbered, plan
from edgegw_tx.store.sql import CHANGES_LOCK

#: Advisory lock keys (``pg_advisory_xact_lock``): the migrations (the change log's revisions: ``CHANGES_LOCK``).
MIGRATIONS_LOCK = 0x6564_6700

#: The channel of ``NOTIFY`` on every change; the payload is the revision.
CHANNEL = "edgegw_changes"


def m0001_endpoints_and_keys(cursor: Any) -> None:
    """Endpoints (one row per route) and API keys (hashes only)."""
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


def m0002_services_and_bindings(cursor: Any) -> None:
    """Services (names unique ignoring case) and bindings."""
    cursor.execute(
        """
        CREATE TABLE services (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            service_type TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    cursor.execute("CREATE UNIQUE INDEX services_name_unique ON services (lower(name))")
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


def m0003_domains_collections_key_use(cursor: Any) -> None:
    """Domains, collections, and when each API key was last used."""
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


def m0004_versions(cursor: Any) -> None:
    """Every successful compile of an endpoint; ``seq`` orders them (recording one again draws a new one)."""
    cursor.execute(
        """
        CREATE TABLE versions (
            seq BIGSERIAL NOT NULL,
            endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
            digest TEXT NOT NULL,
            code TEXT NOT NULL,
            dependencies TEXT NOT NULL DEFAULT '{}',
            compile_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (endpoint_id, digest)
        )
        """
    )
    cursor.execute("CREATE INDEX versions_by_digest ON versions (digest)")


def m0005_worker_uids(cursor: Any) -> None:
    """The uid an endpoint's workers run as, drawn once."""
    cursor.execute(
        """
        CREATE TABLE worker_uids (
            endpoint_id TEXT PRIMARY KEY REFERENCES endpoints (id) ON DELETE CASCADE,
            uid INTEGER NOT NULL UNIQUE
        )
        """
    )


#: The tables whose records carry a revision, and the kind of their changes.
REVISIONED = (
    ("endpoints", "endpoint"),
    ("services", "service"),
    ("domains", "domain"),
    ("collections", "collection"),
    ("api_keys", "key"),
)

_CHANGE_FUNCTION = f"""
CREATE FUNCTION edgegw_change() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    drawn BIGINT;
    record_key TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock({CHANGES_LOCK});
    IF TG_OP = 'DELETE' THEN
        record_key := to_jsonb(OLD) ->> TG_ARGV[1];
    ELSE
        record_key := to_jsonb(NEW) ->> TG_ARGV[1];
    END IF;
    INSERT INTO changes (kind, record_id, at)
        VALUES (TG_ARGV[0], record_key,
                to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
        RETURNING revision INTO drawn;
    PERFORM pg_notify('{CHANNEL}', drawn::text);
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF TG_WHEN = 'BEFORE' THEN
        NEW.revision := drawn;
    END IF;
    RETURN NEW;
END
$body$
"""


def m0006_cluster(cursor: Any) -> None:
    """
    Revisions on the records an ``If-Match`` may name (0 for those of
    before), the change log and its triggers (BEFORE a write: they give the
    row its revision; an API key's change of ``last_used_at`` alone is no
    change), the nodes, the shared binaries and the claims on compiles.
    """
    for table, _ in REVISIONED:
        cursor.execute(f"ALTER TABLE {table} ADD COLUMN revision BIGINT NOT NULL DEFAULT 0")
    cursor.execute(
        """
        CREATE TABLE changes (
            revision BIGSERIAL PRIMARY KEY,
            kind TEXT NOT NULL,
            record_id TEXT NOT NULL,
            at TEXT NOT NULL
        )
        """
    )
    cursor.execute(_CHANGE_FUNCTION)
    for table, kind in REVISIONED:
        cursor.execute(
            f"CREATE TRIGGER {table}_inserted BEFORE INSERT ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION edgegw_change('{kind}', 'id')"
        )
        when = ""
        if table == "api_keys":
            when = (
                " WHEN ((OLD.id, OLD.name, OLD.scope, OLD.key_hash, OLD.created_at)"
                " IS DISTINCT FROM (NEW.id, NEW.name, NEW.scope, NEW.key_hash, NEW.created_at))"
            )
        cursor.execute(
            f"CREATE TRIGGER {table}_updated BEFORE UPDATE ON {table}"
            f" FOR EACH ROW{when} EXECUTE FUNCTION edgegw_change('{kind}', 'id')"
        )
        cursor.execute(
            f"CREATE TRIGGER {table}_deleted AFTER DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION edgegw_change('{kind}', 'id')"
        )
    cursor.execute(
        "CREATE TRIGGER bindings_changed AFTER INSERT OR UPDATE OR DELETE ON bindings"
        " FOR EACH ROW EXECUTE FUNCTION edgegw_change('binding', 'endpoint_id')"
    )
    cursor.execute(
        """
        CREATE TABLE nodes (
            name TEXT PRIMARY KEY,
            address TEXT,
            admin_address TEXT,
            version TEXT,
            started_at TEXT,
            last_seen DOUBLE PRECISION NOT NULL,
            workers TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    cursor.execute(
        """
        CREATE TABLE artifacts (
            digest TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            size BIGINT NOT NULL,
            data BYTEA NOT NULL,
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
            claimed_at DOUBLE PRECISION NOT NULL
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


def applied(cursor: Any) -> list[int]:
    """The migrations the database has (none when it has no ``schema_migrations``)."""
    cursor.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return []
    cursor.execute("SELECT version FROM schema_migrations ORDER BY version")
    return [version for (version,) in cursor.fetchall()]


def migrate(cursor: Any, where: str, applied_at: str, migrations: Sequence[Migration] = MIGRATIONS) -> list[Migration]:
    """
    Bring the database up to the last of ``migrations`` in the caller's
    transaction (rolled back when this raises), under ``MIGRATIONS_LOCK``.
    ``cursor`` takes ``%s`` placeholders (psycopg2's). Returns what it ran.
    """
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATIONS_LOCK,))
    todo = plan(where, applied(cursor), migrations)
    cursor.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    for migration in todo:
        try:
            migration.apply(cursor)
        except Exception as e:
            raise MigrationFailed(where, migration.version, migration.name, e) from e
        cursor.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
            (migration.version, migration.name, applied_at),
        )
    return todo
