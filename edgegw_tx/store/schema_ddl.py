"""
The tables of the store's schema, written once for SQLite and PostgreSQL.

Both databases run the same numbered migrations (``sqlite_schema`` and
``postgres_schema``), and their tables differ only in a few words: a 64-bit
integer, a double, a binary, a key counting up, how a name is unique ignoring
case and how versions keep their order.  Those are a ``Words`` each database's
module states; the statements here take them (``$name`` in a template), and
``run`` executes them.  What one database alone has (SQLite's ``COLLATE
NOCASE``, PostgreSQL's index on ``lower(name)``, each one's change-log
triggers) stays in its module.

These are statements of migrations that stores out there have run: like the
migrations, they are never edited; a change of the schema is a new migration.
(The indentation is part of SQLite's copy of a table's statement, so it stays
as the first stores recorded it.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from string import Template
from typing import Any


@dataclass(frozen=True, slots=True)
class Words:
    """How one database says what the shared tables need."""

    #: A 64-bit integer.
    big: str
    #: A double-precision float.
    double: str
    #: Bytes (a binary's).
    binary: str
    #: An integer primary key the database draws, counting up and never reused.
    counter_key: str
    #: After ``NOT NULL``, what makes a name unique ignoring case ("" where an index does it).
    unique_ignoring_case: str
    #: The first column of ``versions`` (with its comma) keeping their order ("" where rowids do).
    versions_order: str


def run(cursor: Any, words: Words, *statements: Template, **names: str) -> None:
    """Execute ``statements`` in one database's ``words`` (and ``names``, such as a ``table``)."""
    for statement in statements:
        cursor.execute(statement.substitute(asdict(words), **names))


# Migration 1: endpoints (one row per route: domain, method and path shape unique) and API keys (hashes only).

ENDPOINTS = Template(
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

API_KEYS = Template(
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

# Migration 2: services, and bindings (an endpoint's name for a service).

SERVICES = Template(
    """
        CREATE TABLE services (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL$unique_ignoring_case,
            service_type TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
)

BINDINGS = Template(
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

BINDINGS_BY_SERVICE = Template("CREATE INDEX bindings_by_service ON bindings (service_id)")

# Migration 3: domains, collections, and when each API key was last used.

DOMAINS = Template(
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

COLLECTIONS = Template(
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

KEY_LAST_USED = Template("ALTER TABLE api_keys ADD COLUMN last_used_at TEXT")

# Migration 4: every successful compile of an endpoint.

VERSIONS = Template(
    """
        CREATE TABLE versions (
            ${versions_order}endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
            digest TEXT NOT NULL,
            code TEXT NOT NULL,
            dependencies TEXT NOT NULL DEFAULT '{}',
            compile_seconds $double NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (endpoint_id, digest)
        )
        """
)

VERSIONS_BY_DIGEST = Template("CREATE INDEX versions_by_digest ON versions (digest)")

# Migration 5: the uid an endpoint's workers run as.

WORKER_UIDS = Template(
    """
        CREATE TABLE worker_uids (
            endpoint_id TEXT PRIMARY KEY REFERENCES endpoints (id) ON DELETE CASCADE,
            uid INTEGER NOT NULL UNIQUE
        )
        """
)

# Migration 6: revisions, the change log (its triggers are each database's), nodes, binaries, compile claims.

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

#: A revisioned ``$table``'s revision (0 for the records of before).
REVISION = Template("ALTER TABLE $table ADD COLUMN revision $big NOT NULL DEFAULT 0")

CHANGES = Template(
    """
        CREATE TABLE changes (
            revision $counter_key,
            kind TEXT NOT NULL,
            record_id TEXT NOT NULL,
            at TEXT NOT NULL
        )
        """
)

NODES = Template(
    """
        CREATE TABLE nodes (
            name TEXT PRIMARY KEY,
            address TEXT,
            admin_address TEXT,
            version TEXT,
            started_at TEXT,
            last_seen $double NOT NULL,
            workers TEXT NOT NULL DEFAULT '{}'
        )
        """
)

ARTIFACTS = Template(
    """
        CREATE TABLE artifacts (
            digest TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            size $big NOT NULL,
            data $binary NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            node TEXT,
            created_at TEXT NOT NULL
        )
        """
)

BUILD_CLAIMS = Template(
    """
        CREATE TABLE build_claims (
            digest TEXT PRIMARY KEY,
            node TEXT NOT NULL,
            claimed_at $double NOT NULL
        )
        """
)

# Migration 7: every route of an endpoint (one row each; domain, method and path shape unique over all).

ENDPOINT_ROUTES = Template(
    """
        CREATE TABLE endpoint_routes (
            endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            method TEXT NOT NULL,
            path TEXT NOT NULL,
            domain TEXT NOT NULL,
            path_shape TEXT NOT NULL,
            PRIMARY KEY (endpoint_id, position),
            UNIQUE (domain, method, path_shape)
        )
        """
)

#: The one route every endpoint of before has: its own columns.
ENDPOINT_ROUTES_OF_BEFORE = Template(
    """
        INSERT INTO endpoint_routes (endpoint_id, position, method, path, domain, path_shape)
        SELECT id, 0, method, path, domain, path_shape FROM endpoints
        """
)

# Migration 8: a traffic policy on domains, collections and endpoints; consumers and their API keys.

#: The tables a ``policy`` (JSON text, ``{}``: none) is set on.
POLICY_TABLES = ("domains", "collections", "endpoints")

POLICY = Template("ALTER TABLE $table ADD COLUMN policy TEXT NOT NULL DEFAULT '{}'")

CONSUMERS = Template(
    """
        CREATE TABLE consumers (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL$unique_ignoring_case,
            enabled INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            revision $big NOT NULL DEFAULT 0
        )
        """
)

CONSUMER_KEYS = Template(
    """
        CREATE TABLE consumer_keys (
            id TEXT PRIMARY KEY,
            consumer_id TEXT NOT NULL REFERENCES consumers (id) ON DELETE CASCADE,
            key_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        )
        """
)

CONSUMER_KEYS_BY_CONSUMER = Template("CREATE INDEX consumer_keys_by_consumer ON consumer_keys (consumer_id)")
