"""
The gateway's own configuration store on SQLite, through ``adbapi``.

Every call runs on the pool's single worker thread, so the reactor never waits
on the disk and statements run in the order they were issued. Records are plain
dicts; JSON-valued columns (``settings``) are decoded here so callers never see
SQL types.
"""

import json
import os

from twisted.enterprise import adbapi
from twisted.internet.threads import deferToThreadPool

SCHEMA_VERSION = 1

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

KEY_COLUMNS = ("id", "name", "scope", "key_hash", "created_at")


class Conflict(Exception):
    """A uniqueness rule of the store was broken (e.g. the same route twice)."""


def _connect(connection):
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")


def _decode_endpoint(row):
    record = dict(zip(ENDPOINT_COLUMNS, row))
    record["enabled"] = bool(record["enabled"])
    record["settings"] = json.loads(record["settings"])
    return record


def _encode(column, value):
    if column == "settings":
        return json.dumps(value, sort_keys=True)
    if column == "enabled":
        return int(bool(value))
    return value


class SQLiteStore:
    """Endpoints and API keys in one SQLite file."""

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
        """Create the schema if needed; fires when the store is usable."""
        directory = os.path.dirname(os.path.abspath(self.path))

        def create(cursor):
            for statement in _SCHEMA:
                cursor.execute(statement)
            cursor.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
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
        """Fire with the endpoint's record, or None when there is none."""
        sql = "SELECT {} FROM endpoints WHERE id = ?".format(", ".join(ENDPOINT_COLUMNS))
        d = self._pool.runQuery(sql, (endpoint_id,))
        d.addCallback(lambda rows: _decode_endpoint(rows[0]) if rows else None)
        return d

    def list_endpoints(self):
        sql = "SELECT {} FROM endpoints ORDER BY created_at, id".format(
            ", ".join(ENDPOINT_COLUMNS)
        )
        d = self._pool.runQuery(sql)
        d.addCallback(lambda rows: [_decode_endpoint(r) for r in rows])
        return d

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
        """Fire with True when a row was deleted."""

        def delete(cursor):
            cursor.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))
            return cursor.rowcount > 0

        return self._pool.runInteraction(delete)

    # API keys

    def add_key(self, record):
        columns = list(KEY_COLUMNS)
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


def _translate_integrity_error(failure):
    import sqlite3

    failure.trap(sqlite3.IntegrityError)
    raise Conflict(str(failure.value))
