"""
The gateway's own configuration store on SQLite, through ``adbapi``.

Every call runs on the pool's single worker thread, so the reactor never waits
on the disk and statements run in the order they were issued. Records are plain
dicts; JSON-valued columns (``settings``, ``config``) are decoded here so callers
never see SQL types.

Schema versions: 1 endpoints and API keys; 2 adds ``services`` and
``bindings``; 3 adds ``domains``, ``collections`` and ``api_keys.last_used_at``;
4 adds ``versions`` (each compiled version of an endpoint; an endpoint's
``settings`` as written before it, with ``instances``, are read as they are and
upgraded by the admin plane, ``validation.effective_settings``); 5 adds
``worker_uids`` (each endpoint's own worker uid, docs/isolation.md).
Upgrades are additive (``CREATE TABLE IF NOT EXISTS``, ``ADD COLUMN`` when
missing), so an older file is upgraded in place by ``open``.
"""

import json
import os

from twisted.enterprise import adbapi
from twisted.internet.threads import deferToThreadPool

SCHEMA_VERSION = 5

_SCHEMA = [
    """
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS endpoints (
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
    """,
    """
    CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    )
    """,
    # version 2
    """
    CREATE TABLE IF NOT EXISTS services (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        service_type TEXT NOT NULL,
        config TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    # A binding is the name (pool_id) under which an endpoint's handlers reach
    # a service. Deleting the endpoint deletes its bindings; a bound service
    # cannot be deleted (delete_service checks first and says by whom).
    """
    CREATE TABLE IF NOT EXISTS bindings (
        endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
        pool_id TEXT NOT NULL,
        service_id TEXT NOT NULL REFERENCES services (id) ON DELETE RESTRICT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (endpoint_id, pool_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS bindings_by_service ON bindings (service_id)",
    # version 3
    """
    CREATE TABLE IF NOT EXISTS domains (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS collections (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        domain_id TEXT REFERENCES domains (id),
        base_path TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    # version 4: every successful compile of an endpoint, newest last (rowid:
    # compiling the same code again replaces its row, so it becomes the newest).
    # ``dependencies`` is the endpoint's settings.dependencies of that build.
    """
    CREATE TABLE IF NOT EXISTS versions (
        endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        code TEXT NOT NULL,
        dependencies TEXT NOT NULL DEFAULT '{}',
        compile_seconds REAL NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        UNIQUE (endpoint_id, digest)
    )
    """,
    "CREATE INDEX IF NOT EXISTS versions_by_digest ON versions (digest)",
    # version 5: the uid an endpoint's workers run as (workers/isolation.py),
    # drawn once; the row goes with the endpoint, which frees the uid.
    """
    CREATE TABLE IF NOT EXISTS worker_uids (
        endpoint_id TEXT PRIMARY KEY REFERENCES endpoints (id) ON DELETE CASCADE,
        uid INTEGER NOT NULL UNIQUE
    )
    """,
]

# Columns added to existing tables by later versions: (table, column, definition).
_ADDED_COLUMNS = [
    ("api_keys", "last_used_at", "TEXT"),
]

ENDPOINT_COLUMNS = (
    "id",
    "name",
    "path",
    "path_shape",
    "method",
    "domain",
    "collection_id",
    "description",
    "code",
    "enabled",
    "settings",
    "status",
    "artifact",
    "deployed",
    "last_error",
    "created_at",
    "updated_at",
)

KEY_COLUMNS = ("id", "name", "scope", "key_hash", "created_at", "last_used_at")

SERVICE_COLUMNS = ("id", "name", "service_type", "config", "created_at", "updated_at")

BINDING_COLUMNS = ("endpoint_id", "pool_id", "service_id", "created_at")

DOMAIN_COLUMNS = ("id", "host", "description", "created_at", "updated_at")

VERSION_COLUMNS = ("endpoint_id", "digest", "code", "dependencies", "compile_seconds", "created_at")

COLLECTION_COLUMNS = (
    "id",
    "name",
    "domain_id",
    "base_path",
    "description",
    "created_at",
    "updated_at",
)


class Conflict(Exception):
    """A uniqueness rule of the store was broken (e.g. the same route twice)."""


class ServiceInUse(Conflict):
    """
    A service that endpoints are bound to cannot be deleted. ``bindings`` lists
    them: ``{"endpoint_id", "endpoint_name", "pool_id"}`` each.
    """

    def __init__(self, service_id, bindings):
        super().__init__(f"service {service_id} is bound to {len(bindings)} endpoint(s)")
        self.service_id = service_id
        self.bindings = bindings


class LastAdminKey(Conflict):
    """The last ``admin`` API key cannot be deleted: nobody could manage the gateway."""

    def __init__(self, key_id):
        super().__init__(f"key {key_id} is the last admin key")
        self.key_id = key_id


class InUse(Conflict):
    """
    A domain or collection still has records that depend on it; ``counts`` says
    how many of each, e.g. ``{"endpoints": 2, "collections": 1}``.
    """

    def __init__(self, what, record_id, counts):
        super().__init__(f"{what} {record_id} is still used: {counts}")
        self.counts = counts


class RouteClash(Conflict):
    """
    Moving endpoints (a domain's new host, a collection's new base path or
    domain) would give ``endpoint_id`` the route ``other_id`` (named
    ``other_name``) already has; nothing was changed.
    """

    def __init__(self, endpoint_id, other_id, other_name):
        super().__init__(f"endpoint {endpoint_id} would take the route of endpoint {other_id}")
        self.endpoint_id = endpoint_id
        self.other_id = other_id
        self.other_name = other_name


class NoFreeUid(Exception):
    """Every uid of the workers' range is taken (``--worker-uids``)."""


class Missing(LookupError):
    """A record another one refers to does not exist; ``what`` is e.g. ``"endpoint"``."""

    def __init__(self, what, record_id):
        super().__init__(f"no {what} with id {record_id!r}")
        self.what = what
        self.record_id = record_id


def _connect(connection):
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")


def _decode_endpoint(row):
    record = dict(zip(ENDPOINT_COLUMNS, row))
    record["enabled"] = bool(record["enabled"])
    record["settings"] = json.loads(record["settings"])
    return record


def _decode_version(row):
    record = dict(zip(VERSION_COLUMNS, row))
    record["dependencies"] = json.loads(record["dependencies"])
    return record


def _unused(cursor, digests, protected=()):
    """
    Those of ``digests`` (in their order, once each) not in ``protected`` and
    not any endpoint's ``deployed`` or ``artifact`` nor any endpoint's kept
    version: artifacts are content-addressed, so one may serve several endpoints.
    """
    unused = []
    for digest in dict.fromkeys(digests):
        if digest in protected:
            continue
        cursor.execute(
            "SELECT 1 FROM endpoints WHERE deployed = ? OR artifact = ? "
            "UNION ALL SELECT 1 FROM versions WHERE digest = ? LIMIT 1",
            (digest, digest, digest),
        )
        if cursor.fetchone() is None:
            unused.append(digest)
    return unused


def _decode_service(row):
    record = dict(zip(SERVICE_COLUMNS, row))
    record["config"] = json.loads(record["config"])
    return record


def _services_of(cursor, endpoint_id):
    """The endpoint's bindings as ``{pool_id: service_id}``."""
    cursor.execute(
        "SELECT pool_id, service_id FROM bindings WHERE endpoint_id = ? ORDER BY pool_id",
        (endpoint_id,),
    )
    return dict(cursor.fetchall())


def _encode(column, value):
    if column in ("settings", "config"):
        return json.dumps(value, sort_keys=True)
    if column == "enabled":
        return int(bool(value))
    return value


class SQLiteStore:
    """Endpoints, services and their bindings, and API keys in one SQLite file."""

    def __init__(self, path, reactor=None, threadpool=None):
        """``threadpool`` replaces adbapi's own (tests pass a synchronous one)."""
        if reactor is None:
            from twisted.internet import reactor
        self.path = path
        self._reactor = reactor
        self._pool = adbapi.ConnectionPool(
            "sqlite3",
            path,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=_connect,
            cp_reactor=reactor,
        )
        if threadpool is not None:
            self._pool.threadpool = threadpool

    def open(self):
        """Create or upgrade the schema if needed; fires when the store is usable."""
        directory = os.path.dirname(os.path.abspath(self.path))

        def create(cursor):
            for statement in _SCHEMA:
                cursor.execute(statement)
            for table, column, definition in _ADDED_COLUMNS:
                cursor.execute(f"PRAGMA table_info({table})")
                if column not in {row[1] for row in cursor.fetchall()}:
                    cursor.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            cursor.execute("SELECT value FROM meta WHERE key = 'schema'")
            row = cursor.fetchone()
            if row is None or int(row[0]) < SCHEMA_VERSION:
                cursor.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                    (str(SCHEMA_VERSION),),
                )

        d = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), os.makedirs, directory, exist_ok=True
        )
        d.addCallback(lambda _: self._pool.runInteraction(create))
        return d

    def close(self):
        self._pool.close()

    # endpoints

    def create_endpoint(self, record):
        columns = [c for c in ENDPOINT_COLUMNS if c in record]
        sql = "INSERT INTO endpoints ({}) VALUES ({})".format(
            ", ".join(columns), ", ".join("?" for _ in columns)
        )
        values = tuple(_encode(c, record[c]) for c in columns)
        d = self._pool.runOperation(sql, values)
        d.addErrback(_translate_integrity_error)
        d.addCallback(lambda _: self.get_endpoint(record["id"]))
        return d

    def get_endpoint(self, endpoint_id):
        """
        Fire with the endpoint's record, or None when there is none. The record's
        ``services`` is its bindings, ``{pool_id: service_id}``.
        """

        def get(cursor):
            cursor.execute(
                "SELECT {} FROM endpoints WHERE id = ?".format(", ".join(ENDPOINT_COLUMNS)),
                (endpoint_id,),
            )
            row = cursor.fetchone()
            if row is None:
                return None
            record = _decode_endpoint(row)
            record["services"] = _services_of(cursor, endpoint_id)
            return record

        return self._pool.runInteraction(get)

    def list_endpoints(self):
        def list_(cursor):
            cursor.execute(
                "SELECT {} FROM endpoints ORDER BY created_at, id".format(
                    ", ".join(ENDPOINT_COLUMNS)
                )
            )
            records = [_decode_endpoint(r) for r in cursor.fetchall()]
            cursor.execute("SELECT endpoint_id, pool_id, service_id FROM bindings ORDER BY pool_id")
            services = {}
            for endpoint_id, pool_id, service_id in cursor.fetchall():
                services.setdefault(endpoint_id, {})[pool_id] = service_id
            for record in records:
                record["services"] = services.get(record["id"], {})
            return records

        return self._pool.runInteraction(list_)

    def update_endpoint(self, endpoint_id, fields):
        """Change some columns; fires with the new record (None if gone)."""
        unknown = set(fields) - set(ENDPOINT_COLUMNS) - {"id"}
        if unknown:
            raise ValueError("unknown endpoint columns: " + ", ".join(sorted(unknown)))
        columns = [c for c in ENDPOINT_COLUMNS if c in fields and c != "id"]
        if not columns:
            return self.get_endpoint(endpoint_id)
        sql = "UPDATE endpoints SET {} WHERE id = ?".format(
            ", ".join(c + " = ?" for c in columns)
        )
        values = tuple(_encode(c, fields[c]) for c in columns) + (endpoint_id,)
        d = self._pool.runOperation(sql, values)
        d.addErrback(_translate_integrity_error)
        d.addCallback(lambda _: self.get_endpoint(endpoint_id))
        return d

    def delete_endpoint(self, endpoint_id):
        """Fire with True when a row was deleted. Its bindings go with it."""

        def delete(cursor):
            # The foreign key cascades too; this keeps it true without the pragma.
            cursor.execute("DELETE FROM bindings WHERE endpoint_id = ?", (endpoint_id,))
            cursor.execute("DELETE FROM versions WHERE endpoint_id = ?", (endpoint_id,))
            cursor.execute("DELETE FROM worker_uids WHERE endpoint_id = ?", (endpoint_id,))
            cursor.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))
            return cursor.rowcount > 0

        return self._pool.runInteraction(delete)

    # worker uids (schema 5)

    def allocate_worker_uid(self, endpoint_id, first, last, busy=lambda: ()):
        """
        Fire with the endpoint's worker uid: the recorded one, else the lowest
        of ``first``..``last`` that no endpoint has and ``busy()`` (called in
        the store's thread) does not name, now recorded.  Fails with
        ``NoFreeUid`` when none is left, ``Missing`` for an unknown endpoint.
        """

        def allocate(cursor):
            cursor.execute("SELECT uid FROM worker_uids WHERE endpoint_id = ?", (endpoint_id,))
            row = cursor.fetchone()
            if row is not None:
                return row[0]
            cursor.execute("SELECT 1 FROM endpoints WHERE id = ?", (endpoint_id,))
            if cursor.fetchone() is None:
                raise Missing("endpoint", endpoint_id)
            cursor.execute("SELECT uid FROM worker_uids WHERE uid BETWEEN ? AND ?", (first, last))
            taken = {uid for (uid,) in cursor.fetchall()} | set(busy())
            for uid in range(first, last + 1):
                if uid not in taken:
                    cursor.execute(
                        "INSERT INTO worker_uids (endpoint_id, uid) VALUES (?, ?)", (endpoint_id, uid)
                    )
                    return uid
            raise NoFreeUid(f"no free worker uid left in {first}-{last} (--worker-uids)")

        return self._pool.runInteraction(allocate)

    def worker_uids(self):
        """Fire with ``{endpoint_id: uid}`` of every endpoint that has one."""
        d = self._pool.runQuery("SELECT endpoint_id, uid FROM worker_uids")
        d.addCallback(dict)
        return d

    # versions (schema 4): one row per (endpoint, digest) it compiled

    def record_version(self, record, cached=False):
        """
        Record a successful compile, ``record`` having ``VERSION_COLUMNS``
        (``dependencies`` a dict). The same digest again replaces the row, so it
        is the newest; a ``cached`` build (no cargo run) keeps the row's
        ``compile_seconds``, the time the binary really took.
        """

        def record_(cursor):
            values = dict(record)
            if cached:
                cursor.execute(
                    "SELECT compile_seconds FROM versions WHERE endpoint_id = ? AND digest = ?",
                    (record["endpoint_id"], record["digest"]),
                )
                row = cursor.fetchone()
                if row is not None:
                    values["compile_seconds"] = row[0]
            values["dependencies"] = json.dumps(values.get("dependencies") or {}, sort_keys=True)
            cursor.execute(
                "INSERT OR REPLACE INTO versions ({}) VALUES ({})".format(
                    ", ".join(VERSION_COLUMNS), ", ".join("?" for _ in VERSION_COLUMNS)
                ),
                tuple(values[c] for c in VERSION_COLUMNS),
            )

        return self._pool.runInteraction(record_)

    def list_versions(self, endpoint_id):
        """The endpoint's versions, newest first (``dependencies`` decoded)."""
        sql = "SELECT {} FROM versions WHERE endpoint_id = ? ORDER BY rowid DESC".format(
            ", ".join(VERSION_COLUMNS)
        )
        d = self._pool.runQuery(sql, (endpoint_id,))
        d.addCallback(lambda rows: [_decode_version(r) for r in rows])
        return d

    def prune_versions(self, endpoint_id, keep, protected=()):
        """
        Keep the endpoint's ``keep`` newest versions, and any whose digest is
        its ``deployed`` or ``artifact`` or in ``protected``; delete the other
        rows. Fires with the deleted digests no longer used anywhere (see
        ``_unused``): those whose artifacts may go.
        """

        def prune(cursor):
            cursor.execute("SELECT deployed, artifact FROM endpoints WHERE id = ?", (endpoint_id,))
            row = cursor.fetchone() or (None, None)
            spared = set(protected) | {d for d in row if d}
            cursor.execute(
                "SELECT digest FROM versions WHERE endpoint_id = ? ORDER BY rowid DESC",
                (endpoint_id,),
            )
            digests = [r[0] for r in cursor.fetchall()]
            doomed = [d for d in digests[max(keep, 0):] if d not in spared]
            cursor.executemany(
                "DELETE FROM versions WHERE endpoint_id = ? AND digest = ?",
                [(endpoint_id, d) for d in doomed],
            )
            return _unused(cursor, doomed, protected)

        return self._pool.runInteraction(prune)

    def unused_digests(self, digests, protected=()):
        """Those of ``digests`` that no endpoint deploys, has compiled or keeps as a version."""
        return self._pool.runInteraction(_unused, list(digests), protected)

    # services

    def create_service(self, record):
        """Insert a service; ``Conflict`` when its name is taken (ignoring case)."""
        columns = list(SERVICE_COLUMNS)
        sql = "INSERT INTO services ({}) VALUES ({})".format(
            ", ".join(columns), ", ".join("?" for _ in columns)
        )
        d = self._pool.runOperation(sql, tuple(_encode(c, record[c]) for c in columns))
        d.addErrback(_translate_integrity_error)
        d.addCallback(lambda _: self.get_service(record["id"]))
        return d

    def get_service(self, service_id):
        """Fire with the service's record (config decoded, secrets in clear), or None."""
        sql = "SELECT {} FROM services WHERE id = ?".format(", ".join(SERVICE_COLUMNS))
        d = self._pool.runQuery(sql, (service_id,))
        d.addCallback(lambda rows: _decode_service(rows[0]) if rows else None)
        return d

    def list_services(self):
        sql = "SELECT {} FROM services ORDER BY created_at, id".format(", ".join(SERVICE_COLUMNS))
        d = self._pool.runQuery(sql)
        d.addCallback(lambda rows: [_decode_service(r) for r in rows])
        return d

    def update_service(self, service_id, fields):
        """Change some columns; fires with the new record (None if gone)."""
        unknown = set(fields) - set(SERVICE_COLUMNS) - {"id"}
        if unknown:
            raise ValueError("unknown service columns: " + ", ".join(sorted(unknown)))
        columns = [c for c in SERVICE_COLUMNS if c in fields and c != "id"]
        if not columns:
            return self.get_service(service_id)
        sql = "UPDATE services SET {} WHERE id = ?".format(", ".join(c + " = ?" for c in columns))
        values = tuple(_encode(c, fields[c]) for c in columns) + (service_id,)
        d = self._pool.runOperation(sql, values)
        d.addErrback(_translate_integrity_error)
        d.addCallback(lambda _: self.get_service(service_id))
        return d

    def delete_service(self, service_id):
        """
        Fire with True when a row was deleted, False when there was none; fail
        with ``ServiceInUse`` (a ``Conflict``) while endpoints are bound to it.
        """

        def delete(cursor):
            cursor.execute(
                "SELECT b.endpoint_id, e.name, b.pool_id FROM bindings b "
                "JOIN endpoints e ON e.id = b.endpoint_id "
                "WHERE b.service_id = ? ORDER BY e.name, b.pool_id",
                (service_id,),
            )
            bound = [
                {"endpoint_id": endpoint_id, "endpoint_name": name, "pool_id": pool_id}
                for endpoint_id, name, pool_id in cursor.fetchall()
            ]
            if bound:
                raise ServiceInUse(service_id, bound)
            cursor.execute("DELETE FROM services WHERE id = ?", (service_id,))
            return cursor.rowcount > 0

        return self._pool.runInteraction(delete)

    # bindings

    def bind(self, endpoint_id, pool_id, service_id, created_at):
        """
        Bind the service to the endpoint under ``pool_id``, replacing what that
        name was bound to. Fires with the service id it replaced, or None; fails
        with ``Missing`` when the endpoint or the service does not exist.
        """

        def bind(cursor):
            for table, what, record_id in (
                ("endpoints", "endpoint", endpoint_id),
                ("services", "service", service_id),
            ):
                cursor.execute(f"SELECT 1 FROM {table} WHERE id = ?", (record_id,))
                if cursor.fetchone() is None:
                    raise Missing(what, record_id)
            cursor.execute(
                "SELECT service_id FROM bindings WHERE endpoint_id = ? AND pool_id = ?",
                (endpoint_id, pool_id),
            )
            row = cursor.fetchone()
            cursor.execute(
                "INSERT OR REPLACE INTO bindings (endpoint_id, pool_id, service_id, created_at) "
                "VALUES (?, ?, ?, ?)",
                (endpoint_id, pool_id, service_id, created_at),
            )
            return row[0] if row else None

        return self._pool.runInteraction(bind)

    def unbind(self, endpoint_id, pool_id):
        """Remove a binding; fires with the service id it was bound to, or None."""

        def unbind(cursor):
            cursor.execute(
                "SELECT service_id FROM bindings WHERE endpoint_id = ? AND pool_id = ?",
                (endpoint_id, pool_id),
            )
            row = cursor.fetchone()
            if row is None:
                return None
            cursor.execute(
                "DELETE FROM bindings WHERE endpoint_id = ? AND pool_id = ?",
                (endpoint_id, pool_id),
            )
            return row[0]

        return self._pool.runInteraction(unbind)

    def list_bindings(self):
        """Every binding, ``{endpoint_id, pool_id, service_id, created_at}``."""
        sql = "SELECT {} FROM bindings ORDER BY endpoint_id, pool_id".format(
            ", ".join(BINDING_COLUMNS)
        )
        d = self._pool.runQuery(sql)
        d.addCallback(lambda rows: [dict(zip(BINDING_COLUMNS, r)) for r in rows])
        return d

    # domains and collections (schema 3)
    #
    # An endpoint refers to its domain by host (``endpoints.domain``) and to its
    # collection by id; its ``domain`` and ``path_shape`` are those of the route
    # it is served at (the collection's base path and domain applied), so the
    # UNIQUE rule on endpoints holds over effective routes. ``moves`` below are
    # ``(endpoint_id, domain, path_shape)`` changes applied in the same
    # transaction as the domain or collection change that causes them.

    def create_domain(self, record):
        """Insert a domain; ``Conflict`` when its host is taken."""
        return self._insert("domains", DOMAIN_COLUMNS, record, self.get_domain)

    def get_domain(self, domain_id):
        return self._get_one("domains", DOMAIN_COLUMNS, "id", domain_id)

    def get_domain_by_host(self, host):
        return self._get_one("domains", DOMAIN_COLUMNS, "host", host)

    def list_domains(self):
        sql = "SELECT {} FROM domains ORDER BY created_at, id".format(", ".join(DOMAIN_COLUMNS))
        d = self._pool.runQuery(sql)
        d.addCallback(lambda rows: [dict(zip(DOMAIN_COLUMNS, r)) for r in rows])
        return d

    def update_domain(self, domain_id, fields, moves=()):
        """
        Change some columns and apply ``moves``, all or nothing; fires with the
        new record. ``Conflict`` when the host is taken, ``RouteClash`` when a
        move collides with another endpoint's route.
        """
        return self._update_moving("domains", DOMAIN_COLUMNS, domain_id, fields, moves, self.get_domain)

    def delete_domain(self, domain_id):
        """
        Fire with True when a row was deleted; ``InUse`` while endpoints use its
        host or collections belong to it (checked in the same transaction).
        """

        def delete(cursor):
            cursor.execute("SELECT host FROM domains WHERE id = ?", (domain_id,))
            row = cursor.fetchone()
            if row is None:
                return False
            cursor.execute("SELECT COUNT(*) FROM endpoints WHERE domain = ?", (row[0],))
            endpoints = cursor.fetchone()[0]
            cursor.execute("SELECT COUNT(*) FROM collections WHERE domain_id = ?", (domain_id,))
            collections = cursor.fetchone()[0]
            if endpoints or collections:
                raise InUse("domain", domain_id, {"endpoints": endpoints, "collections": collections})
            cursor.execute("DELETE FROM domains WHERE id = ?", (domain_id,))
            return True

        return self._pool.runInteraction(delete)

    def create_collection(self, record):
        """Insert a collection; ``Missing`` when its ``domain_id`` names no domain."""

        def insert(cursor):
            _check_domain(cursor, record.get("domain_id"))
            _insert_row(cursor, "collections", COLLECTION_COLUMNS, record)

        d = self._pool.runInteraction(insert)
        d.addErrback(_translate_integrity_error)
        d.addCallback(lambda _: self.get_collection(record["id"]))
        return d

    def get_collection(self, collection_id):
        return self._get_one("collections", COLLECTION_COLUMNS, "id", collection_id)

    def list_collections(self, domain_id=None):
        sql = "SELECT {} FROM collections".format(", ".join(COLLECTION_COLUMNS))
        args = ()
        if domain_id is not None:
            sql += " WHERE domain_id = ?"
            args = (domain_id,)
        d = self._pool.runQuery(sql + " ORDER BY created_at, id", args)
        d.addCallback(lambda rows: [dict(zip(COLLECTION_COLUMNS, r)) for r in rows])
        return d

    def update_collection(self, collection_id, fields, moves=()):
        """
        Like ``update_domain``; also ``Missing`` when a new ``domain_id`` names
        no domain.
        """
        return self._update_moving(
            "collections", COLLECTION_COLUMNS, collection_id, fields, moves, self.get_collection
        )

    def delete_collection(self, collection_id):
        """Fire with True when a row was deleted; ``InUse`` while endpoints are in it."""

        def delete(cursor):
            cursor.execute("SELECT COUNT(*) FROM endpoints WHERE collection_id = ?", (collection_id,))
            endpoints = cursor.fetchone()[0]
            if endpoints:
                raise InUse("collection", collection_id, {"endpoints": endpoints})
            cursor.execute("DELETE FROM collections WHERE id = ?", (collection_id,))
            return cursor.rowcount > 0

        return self._pool.runInteraction(delete)

    def _insert(self, table, all_columns, record, get):
        columns = [c for c in all_columns if c in record]
        d = self._pool.runInteraction(_insert_row, table, columns, record)
        d.addErrback(_translate_integrity_error)
        d.addCallback(lambda _: get(record["id"]))
        return d

    def _get_one(self, table, columns, key, value):
        sql = "SELECT {} FROM {} WHERE {} = ?".format(", ".join(columns), table, key)
        d = self._pool.runQuery(sql, (value,))
        d.addCallback(lambda rows: dict(zip(columns, rows[0])) if rows else None)
        return d

    def _update_moving(self, table, all_columns, record_id, fields, moves, get):
        unknown = set(fields) - set(all_columns) - {"id"}
        if unknown:
            raise ValueError(f"unknown {table} columns: " + ", ".join(sorted(unknown)))
        columns = [c for c in all_columns if c in fields and c != "id"]

        def update(cursor):
            if "domain_id" in fields:
                _check_domain(cursor, fields["domain_id"])
            if columns:
                cursor.execute(
                    "UPDATE {} SET {} WHERE id = ?".format(table, ", ".join(c + " = ?" for c in columns)),
                    tuple(fields[c] for c in columns) + (record_id,),
                )
            _move_endpoints(cursor, moves)

        d = self._pool.runInteraction(update)
        d.addErrback(_translate_integrity_error)
        d.addCallback(lambda _: get(record_id))
        return d

    # API keys

    def add_key(self, record):
        columns = [c for c in KEY_COLUMNS if c in record]
        sql = "INSERT INTO api_keys ({}) VALUES ({})".format(
            ", ".join(columns), ", ".join("?" for _ in columns)
        )
        d = self._pool.runOperation(sql, tuple(record[c] for c in columns))
        d.addErrback(_translate_integrity_error)
        return d

    def list_keys(self):
        sql = "SELECT {} FROM api_keys ORDER BY created_at, id".format(", ".join(KEY_COLUMNS))
        d = self._pool.runQuery(sql)
        d.addCallback(lambda rows: [dict(zip(KEY_COLUMNS, r)) for r in rows])
        return d

    def get_key(self, key_id):
        """The key record, or ``None``."""
        sql = "SELECT {} FROM api_keys WHERE id = ?".format(", ".join(KEY_COLUMNS))
        d = self._pool.runQuery(sql, (key_id,))
        d.addCallback(lambda rows: dict(zip(KEY_COLUMNS, rows[0])) if rows else None)
        return d

    def delete_key(self, key_id):
        """
        Delete a key and fire with its record. ``Missing`` when there is no such
        key; ``LastAdminKey`` when it is the only ``admin`` key (checked in the
        same transaction, so two concurrent deletes cannot both pass).
        """

        def delete(cursor):
            cursor.execute(
                "SELECT {} FROM api_keys WHERE id = ?".format(", ".join(KEY_COLUMNS)), (key_id,)
            )
            row = cursor.fetchone()
            if row is None:
                raise Missing("key", key_id)
            record = dict(zip(KEY_COLUMNS, row))
            if record["scope"] == "admin":
                cursor.execute(
                    "SELECT COUNT(*) FROM api_keys WHERE scope = 'admin' AND id != ?", (key_id,)
                )
                if cursor.fetchone()[0] == 0:
                    raise LastAdminKey(key_id)
            cursor.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
            return record

        return self._pool.runInteraction(delete)

    def touch_keys(self, last_used):
        """Record ``{key_id: last_used_at}``; ids of deleted keys are ignored."""

        def touch(cursor):
            cursor.executemany(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                [(value, key_id) for key_id, value in last_used.items()],
            )

        return self._pool.runInteraction(touch)


def _insert_row(cursor, table, columns, record):
    columns = [c for c in columns if c in record]
    cursor.execute(
        "INSERT INTO {} ({}) VALUES ({})".format(
            table, ", ".join(columns), ", ".join("?" for _ in columns)
        ),
        tuple(record[c] for c in columns),
    )


def _check_domain(cursor, domain_id):
    if domain_id is not None:
        cursor.execute("SELECT 1 FROM domains WHERE id = ?", (domain_id,))
        if cursor.fetchone() is None:
            raise Missing("domain", domain_id)


def _move_endpoints(cursor, moves):
    """
    Give endpoints a new (domain, path_shape), all or nothing. Two passes: the
    moved rows first leave their routes (a placeholder shape no pattern can
    have), so a move onto a route another moved endpoint is leaving is no
    clash; a real clash raises ``RouteClash`` naming the endpoint in the way.
    """
    import sqlite3

    for endpoint_id, _, _ in moves:
        cursor.execute(
            "UPDATE endpoints SET path_shape = ? WHERE id = ?", ("\x00" + endpoint_id, endpoint_id)
        )
    for endpoint_id, domain, path_shape in moves:
        try:
            cursor.execute(
                "UPDATE endpoints SET domain = ?, path_shape = ? WHERE id = ?",
                (domain, path_shape, endpoint_id),
            )
        except sqlite3.IntegrityError:
            cursor.execute(
                "SELECT o.id, o.name FROM endpoints o JOIN endpoints e ON e.id = ? "
                "WHERE o.domain = ? AND o.method = e.method AND o.path_shape = ? AND o.id != ?",
                (endpoint_id, domain, path_shape, endpoint_id),
            )
            row = cursor.fetchone() or (None, None)
            raise RouteClash(endpoint_id, row[0], row[1])


def _translate_integrity_error(failure):
    import sqlite3

    failure.trap(sqlite3.IntegrityError)
    raise Conflict(str(failure.value))
