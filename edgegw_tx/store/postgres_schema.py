"""
The PostgreSQL store's schema: the same numbered migrations as SQLite's
(``edgegw_tx.store.sqlite_schema``), same numbers and names, their tables
written once for both (``edgegw_tx.store.schema_ddl``) and said here in
PostgreSQL's ``WORDS``.

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

from edgegw_tx.store import schema_ddl as ddl
from edgegw_tx.store.migrations import CREATE_SCHEMA_MIGRATIONS, Migration, apply, defined_in, plan
from edgegw_tx.store.sql import CHANGES_LOCK

#: Advisory lock keys (``pg_advisory_xact_lock``): the migrations (the change log's revisions: ``CHANGES_LOCK``).
MIGRATIONS_LOCK = 0x6564_6700

#: The channel of ``NOTIFY`` on every change; the payload is the revision.
CHANNEL = "edgegw_changes"

#: What PostgreSQL calls the shared tables' types: versions ordered by a ``seq``
#: column; names unique ignoring case through an index (``SERVICES_NAME_UNIQUE``).
WORDS = ddl.Words(
    big="BIGINT",
    double="DOUBLE PRECISION",
    binary="BYTEA",
    counter_key="BIGSERIAL PRIMARY KEY",
    unique_ignoring_case="",
    versions_order="seq BIGSERIAL NOT NULL, ",
)

SERVICES_NAME_UNIQUE = "CREATE UNIQUE INDEX services_name_unique ON services (lower(name))"


def m0001_endpoints_and_keys(cursor: Any) -> None:
    """Endpoints (one row per route) and API keys (hashes only)."""
    ddl.run(cursor, WORDS, ddl.ENDPOINTS, ddl.API_KEYS)


def m0002_services_and_bindings(cursor: Any) -> None:
    """Services (names unique ignoring case) and bindings."""
    ddl.run(cursor, WORDS, ddl.SERVICES)
    cursor.execute(SERVICES_NAME_UNIQUE)
    ddl.run(cursor, WORDS, ddl.BINDINGS, ddl.BINDINGS_BY_SERVICE)


def m0003_domains_collections_key_use(cursor: Any) -> None:
    """Domains, collections, and when each API key was last used."""
    ddl.run(cursor, WORDS, ddl.DOMAINS, ddl.COLLECTIONS, ddl.KEY_LAST_USED)


def m0004_versions(cursor: Any) -> None:
    """Every successful compile of an endpoint; ``seq`` orders them (recording one again draws a new one)."""
    ddl.run(cursor, WORDS, ddl.VERSIONS, ddl.VERSIONS_BY_DIGEST)


def m0005_worker_uids(cursor: Any) -> None:
    """The uid an endpoint's workers run as, drawn once."""
    ddl.run(cursor, WORDS, ddl.WORKER_UIDS)


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
    for table, _ in ddl.REVISIONED:
        ddl.run(cursor, WORDS, ddl.REVISION, table=table)
    ddl.run(cursor, WORDS, ddl.CHANGES)
    cursor.execute(_CHANGE_FUNCTION)
    for table, kind in ddl.REVISIONED:
        cursor.execute(
            f"CREATE TRIGGER {table}_inserted BEFORE INSERT ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION edgegw_change('{kind}', 'id')"
        )
        when = ""
        if table == "api_keys":
            old, new = (", ".join(f"{row}.{column}" for column in ddl.KEY_DEFINITION) for row in ("OLD", "NEW"))
            when = f" WHEN (({old}) IS DISTINCT FROM ({new}))"
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
    ddl.run(cursor, WORDS, ddl.NODES, ddl.ARTIFACTS, ddl.BUILD_CLAIMS)


def m0007_endpoint_routes(cursor: Any) -> None:
    """
    Endpoints with several routes: one ``endpoint_routes`` row per route, in
    order, with the uniqueness rule of routes (domain, method, path shape)
    over all of them.  Every endpoint of before gets its one route from its
    columns, which keep the first route (for readers of before).
    """
    ddl.run(cursor, WORDS, ddl.ENDPOINT_ROUTES, ddl.ENDPOINT_ROUTES_OF_BEFORE)


CONSUMERS_NAME_UNIQUE = "CREATE UNIQUE INDEX consumers_name_unique ON consumers (lower(name))"


def m0008_policies_and_consumers(cursor: Any) -> None:
    """
    A traffic policy (JSON, ``{}`` for none) on domains, collections and
    endpoints; consumers (names unique ignoring case) and their API keys
    (hashes only); a key's change is its consumer's change in the log.
    """
    for table in ddl.POLICY_TABLES:
        ddl.run(cursor, WORDS, ddl.POLICY, table=table)
    ddl.run(cursor, WORDS, ddl.CONSUMERS)
    cursor.execute(CONSUMERS_NAME_UNIQUE)
    ddl.run(cursor, WORDS, ddl.CONSUMER_KEYS, ddl.CONSUMER_KEYS_BY_CONSUMER)
    cursor.execute(
        "CREATE TRIGGER consumers_inserted BEFORE INSERT ON consumers"
        " FOR EACH ROW EXECUTE FUNCTION edgegw_change('consumer', 'id')"
    )
    cursor.execute(
        "CREATE TRIGGER consumers_updated BEFORE UPDATE ON consumers"
        " FOR EACH ROW EXECUTE FUNCTION edgegw_change('consumer', 'id')"
    )
    cursor.execute(
        "CREATE TRIGGER consumers_deleted AFTER DELETE ON consumers"
        " FOR EACH ROW EXECUTE FUNCTION edgegw_change('consumer', 'id')"
    )
    cursor.execute(
        "CREATE TRIGGER consumer_keys_changed AFTER INSERT OR UPDATE OR DELETE ON consumer_keys"
        " FOR EACH ROW EXECUTE FUNCTION edgegw_change('consumer', 'consumer_id')"
    )


#: This module's ``m<NNNN>_`` functions, in their order.
MIGRATIONS = defined_in(globals())


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
    cursor.execute(CREATE_SCHEMA_MIGRATIONS)
    apply(cursor, where, todo, applied_at, "%s")
    return todo
