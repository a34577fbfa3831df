"""
The gateway's own configuration store on SQLite, through ``adbapi``: the
``IStore`` of a single gateway, in one file.

Every call runs on the pool's single worker thread, so the reactor never waits
on the disk and statements run in the order they were issued. Records are plain
dicts; JSON-valued columns (``settings``, ``config``, ``dependencies``) are
decoded here so callers never see SQL types, and sqlite3's integrity errors
become ``Conflict``.

The schema is the numbered migrations of ``edgegw_tx.store.sqlite_schema``,
run by ``SQLiteStore.open``; what is SQLite's own (rowids for the order of
versions, ``INSERT OR REPLACE``, ``COLLATE NOCASE``) stays in this module and
that one.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Concatenate, ParamSpec, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from edgegw_tx.store.errors import (
    Conflict,
    InUse,
    LastAdminKey,
    Missing,
    NoFreeUid,
    RouteClash,
    ServiceInUse,
    StoreRefused,
    StoreTooNew,
)
from edgegw_tx.store.interface import IStore, Move, Record
from edgegw_tx.store.migrations import Migration
from edgegw_tx.store.sqlite_schema import MIGRATIONS, migrate

__all__ = [
    "Conflict",
    "InUse",
    "LastAdminKey",
    "Missing",
    "NoFreeUid",
    "RouteClash",
    "SCHEMA_VERSION",
    "SQLiteStore",
    "ServiceInUse",
    "StoreRefused",
    "StoreTooNew",
]

#: The schema this code writes: the number of its last migration.
SCHEMA_VERSION = MIGRATIONS[-1].version

#: The store's file in a gateway's data directory.
FILE_NAME = "edgegw.sqlite3"

_P = ParamSpec("_P")
_T = TypeVar("_T")

# adbapi hands interactions a Transaction, which forwards to the sqlite3 cursor.
Cursor = sqlite3.Cursor
Row = tuple[Any, ...]

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


def _connect(connection: sqlite3.Connection) -> None:
    """Each connection: write-ahead log (readers do not block the writer), foreign keys enforced."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")


def _decode_endpoint(row: Row) -> Record:
    record = dict(zip(ENDPOINT_COLUMNS, row))
    record["enabled"] = bool(record["enabled"])
    record["settings"] = json.loads(record["settings"])
    return record


def _decode_version(row: Row) -> Record:
    record = dict(zip(VERSION_COLUMNS, row))
    record["dependencies"] = json.loads(record["dependencies"])
    return record


def _unused(cursor: Cursor, digests: Iterable[str], protected: Collection[str] = ()) -> list[str]:
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


def _decode_service(row: Row) -> Record:
    record = dict(zip(SERVICE_COLUMNS, row))
    record["config"] = json.loads(record["config"])
    return record


def _services_of(cursor: Cursor, endpoint_id: str) -> dict[str, str]:
    """The endpoint's bindings as ``{pool_id: service_id}``."""
    cursor.execute(
        "SELECT pool_id, service_id FROM bindings WHERE endpoint_id = ? ORDER BY pool_id",
        (endpoint_id,),
    )
    return dict(cursor.fetchall())


def _encode(column: str, value: Any) -> Any:
    """A record's value as its column holds it: JSON text, 0/1 for flags."""
    if column in ("settings", "config"):
        return json.dumps(value, sort_keys=True)
    if column == "enabled":
        return int(bool(value))
    return value


def _now(seconds: float) -> str:
    """A reactor time as the ISO 8601 text the store's records use."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


@implementer(IStore)
class SQLiteStore:
    """Endpoints, services and their bindings, domains, collections and API keys in one SQLite file."""

    def __init__(
        self,
        path: str,
        reactor: Any = None,
        threadpool: ThreadPool | None = None,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        """
        ``threadpool`` replaces adbapi's own (tests pass a synchronous one);
        ``migrations`` are the schema's (tests pass others).
        """
        if reactor is None:
            from twisted.internet import reactor
        self.path = path
        self._reactor = reactor
        self._migrations = migrations
        # adbapi is not annotated: the typed helpers below are its only callers.
        self._pool: Any = adbapi.ConnectionPool(
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

    def _interaction(
        self, interaction: Callable[Concatenate[Cursor, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> Deferred[_T]:
        """Run ``interaction(cursor, ...)`` in one transaction on the store's thread."""
        d: Deferred[_T] = self._pool.runInteraction(interaction, *args, **kwargs)
        return d

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> Deferred[list[Row]]:
        d: Deferred[list[Row]] = self._pool.runQuery(sql, args)
        return d

    def _operation(self, sql: str, args: tuple[Any, ...] = ()) -> Deferred[None]:
        d: Deferred[None] = self._pool.runOperation(sql, args)
        d.addErrback(_translate_integrity_error)
        return d

    def open(self) -> Deferred[None]:
        """
        Create the file or bring it up to date (``sqlite_schema.migrate``: all
        pending migrations in one transaction); fires when the store is usable.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        d: Deferred[None] = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), os.makedirs, directory, exist_ok=True
        )
        d.addCallback(
            lambda _: self._interaction(migrate, self.path, _now(self._reactor.seconds()), self._migrations)
        )
        d.addCallback(lambda _: None)
        return d

    def close(self) -> None:
        self._pool.close()

    # endpoints

    def create_endpoint(self, record: Record) -> Deferred[Record]:
        columns = [c for c in ENDPOINT_COLUMNS if c in record]
        sql = "INSERT INTO endpoints ({}) VALUES ({})".format(
            ", ".join(columns), ", ".join("?" for _ in columns)
        )
        values = tuple(_encode(c, record[c]) for c in columns)
        return self._operation(sql, values).addCallback(lambda _: self._existing_endpoint(record["id"]))

    def _existing_endpoint(self, endpoint_id: str) -> Deferred[Record]:
        """The endpoint just written (so there is one)."""
        return self.get_endpoint(endpoint_id).addCallback(_present)

    def get_endpoint(self, endpoint_id: str) -> Deferred[Record | None]:
        """
        Fire with the endpoint's record, or None when there is none. The record's
        ``services`` is its bindings, ``{pool_id: service_id}``.
        """

        def get(cursor: Cursor) -> Record | None:
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

        return self._interaction(get)

    def list_endpoints(self) -> Deferred[list[Record]]:
        def list_(cursor: Cursor) -> list[Record]:
            cursor.execute(
                "SELECT {} FROM endpoints ORDER BY created_at, id".format(
                    ", ".join(ENDPOINT_COLUMNS)
                )
            )
            records = [_decode_endpoint(r) for r in cursor.fetchall()]
            cursor.execute("SELECT endpoint_id, pool_id, service_id FROM bindings ORDER BY pool_id")
            services: dict[str, dict[str, str]] = {}
            for endpoint_id, pool_id, service_id in cursor.fetchall():
                services.setdefault(endpoint_id, {})[pool_id] = service_id
            for record in records:
                record["services"] = services.get(record["id"], {})
            return records

        return self._interaction(list_)

    def update_endpoint(self, endpoint_id: str, fields: Record) -> Deferred[Record | None]:
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
        return self._operation(sql, values).addCallback(lambda _: self.get_endpoint(endpoint_id))

    def delete_endpoint(self, endpoint_id: str) -> Deferred[bool]:
        """Fire with True when a row was deleted. Its bindings go with it."""

        def delete(cursor: Cursor) -> bool:
            # The foreign key cascades too; this keeps it true without the pragma.
            cursor.execute("DELETE FROM bindings WHERE endpoint_id = ?", (endpoint_id,))
            cursor.execute("DELETE FROM versions WHERE endpoint_id = ?", (endpoint_id,))
            cursor.execute("DELETE FROM worker_uids WHERE endpoint_id = ?", (endpoint_id,))
            cursor.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))
            return cursor.rowcount > 0

        return self._interaction(delete)

    # worker uids (migration 5)

    def allocate_worker_uid(
        self,
        endpoint_id: str,
        first: int,
        last: int,
        busy: Callable[[], Iterable[int]] | None = None,
    ) -> Deferred[int]:
        """
        Fire with the endpoint's worker uid: the recorded one, else the lowest
        of ``first``..``last`` that no endpoint has and ``busy()`` (called in
        the store's thread) does not name, now recorded.  Fails with
        ``NoFreeUid`` when none is left, ``Missing`` for an unknown endpoint.
        """

        def allocate(cursor: Cursor) -> int:
            cursor.execute("SELECT uid FROM worker_uids WHERE endpoint_id = ?", (endpoint_id,))
            row = cursor.fetchone()
            if row is not None:
                uid: int = row[0]
                return uid
            cursor.execute("SELECT 1 FROM endpoints WHERE id = ?", (endpoint_id,))
            if cursor.fetchone() is None:
                raise Missing("endpoint", endpoint_id)
            cursor.execute("SELECT uid FROM worker_uids WHERE uid BETWEEN ? AND ?", (first, last))
            taken = {uid for (uid,) in cursor.fetchall()} | set(busy() if busy is not None else ())
            for uid in range(first, last + 1):
                if uid not in taken:
                    cursor.execute(
                        "INSERT INTO worker_uids (endpoint_id, uid) VALUES (?, ?)", (endpoint_id, uid)
                    )
                    return uid
            raise NoFreeUid(f"no free worker uid left in {first}-{last} (--worker-uids)")

        return self._interaction(allocate)

    def worker_uids(self) -> Deferred[dict[str, int]]:
        """Fire with ``{endpoint_id: uid}`` of every endpoint that has one."""
        return self._query("SELECT endpoint_id, uid FROM worker_uids").addCallback(
            lambda rows: {endpoint_id: uid for endpoint_id, uid in rows}
        )

    # versions (migration 4): one row per (endpoint, digest) it compiled

    def record_version(self, record: Record, cached: bool = False) -> Deferred[None]:
        """
        Record a successful compile, ``record`` having ``VERSION_COLUMNS``
        (``dependencies`` a dict). The same digest again replaces the row, so it
        is the newest; a ``cached`` build (no cargo run) keeps the row's
        ``compile_seconds``, the time the binary really took.
        """

        def record_(cursor: Cursor) -> None:
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

        return self._interaction(record_)

    def list_versions(self, endpoint_id: str) -> Deferred[list[Record]]:
        """The endpoint's versions, newest first (``dependencies`` decoded)."""
        sql = "SELECT {} FROM versions WHERE endpoint_id = ? ORDER BY rowid DESC".format(
            ", ".join(VERSION_COLUMNS)
        )
        return self._query(sql, (endpoint_id,)).addCallback(
            lambda rows: [_decode_version(r) for r in rows]
        )

    def prune_versions(
        self, endpoint_id: str, keep: int, protected: Iterable[str] = ()
    ) -> Deferred[list[str]]:
        """
        Keep the endpoint's ``keep`` newest versions, and any whose digest is
        its ``deployed`` or ``artifact`` or in ``protected``; delete the other
        rows. Fires with the deleted digests no longer used anywhere (see
        ``_unused``): those whose artifacts may go.
        """
        protected = frozenset(protected)

        def prune(cursor: Cursor) -> list[str]:
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

        return self._interaction(prune)

    def unused_digests(self, digests: Iterable[str], protected: Iterable[str] = ()) -> Deferred[list[str]]:
        """Those of ``digests`` that no endpoint deploys, has compiled or keeps as a version."""
        return self._interaction(_unused, list(digests), frozenset(protected))

    # services

    def create_service(self, record: Record) -> Deferred[Record]:
        """Insert a service; ``Conflict`` when its name is taken (ignoring case)."""
        columns = list(SERVICE_COLUMNS)
        sql = "INSERT INTO services ({}) VALUES ({})".format(
            ", ".join(columns), ", ".join("?" for _ in columns)
        )
        values = tuple(_encode(c, record[c]) for c in columns)
        return self._operation(sql, values).addCallback(
            lambda _: self.get_service(record["id"]).addCallback(_present)
        )

    def get_service(self, service_id: str) -> Deferred[Record | None]:
        """Fire with the service's record (config decoded, secrets in clear), or None."""
        sql = "SELECT {} FROM services WHERE id = ?".format(", ".join(SERVICE_COLUMNS))
        return self._query(sql, (service_id,)).addCallback(
            lambda rows: _decode_service(rows[0]) if rows else None
        )

    def list_services(self) -> Deferred[list[Record]]:
        sql = "SELECT {} FROM services ORDER BY created_at, id".format(", ".join(SERVICE_COLUMNS))
        return self._query(sql).addCallback(lambda rows: [_decode_service(r) for r in rows])

    def update_service(self, service_id: str, fields: Record) -> Deferred[Record | None]:
        """Change some columns; fires with the new record (None if gone)."""
        unknown = set(fields) - set(SERVICE_COLUMNS) - {"id"}
        if unknown:
            raise ValueError("unknown service columns: " + ", ".join(sorted(unknown)))
        columns = [c for c in SERVICE_COLUMNS if c in fields and c != "id"]
        if not columns:
            return self.get_service(service_id)
        sql = "UPDATE services SET {} WHERE id = ?".format(", ".join(c + " = ?" for c in columns))
        values = tuple(_encode(c, fields[c]) for c in columns) + (service_id,)
        return self._operation(sql, values).addCallback(lambda _: self.get_service(service_id))

    def delete_service(self, service_id: str) -> Deferred[bool]:
        """
        Fire with True when a row was deleted, False when there was none; fail
        with ``ServiceInUse`` (a ``Conflict``) while endpoints are bound to it.
        """

        def delete(cursor: Cursor) -> bool:
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

        return self._interaction(delete)

    # bindings

    def bind(self, endpoint_id: str, pool_id: str, service_id: str, created_at: str) -> Deferred[str | None]:
        """
        Bind the service to the endpoint under ``pool_id``, replacing what that
        name was bound to. Fires with the service id it replaced, or None; fails
        with ``Missing`` when the endpoint or the service does not exist.
        """

        def bind(cursor: Cursor) -> str | None:
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

        return self._interaction(bind)

    def unbind(self, endpoint_id: str, pool_id: str) -> Deferred[str | None]:
        """Remove a binding; fires with the service id it was bound to, or None."""

        def unbind(cursor: Cursor) -> str | None:
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
            service: str = row[0]
            return service

        return self._interaction(unbind)

    def list_bindings(self) -> Deferred[list[Record]]:
        """Every binding, ``{endpoint_id, pool_id, service_id, created_at}``."""
        sql = "SELECT {} FROM bindings ORDER BY endpoint_id, pool_id".format(
            ", ".join(BINDING_COLUMNS)
        )
        return self._query(sql).addCallback(lambda rows: [dict(zip(BINDING_COLUMNS, r)) for r in rows])

    # domains and collections (migration 3)
    #
    # An endpoint refers to its domain by host (``endpoints.domain``) and to its
    # collection by id; its ``domain`` and ``path_shape`` are those of the route
    # it is served at (the collection's base path and domain applied), so the
    # UNIQUE rule on endpoints holds over effective routes. ``moves`` below are
    # ``(endpoint_id, domain, path_shape)`` changes applied in the same
    # transaction as the domain or collection change that causes them.

    def create_domain(self, record: Record) -> Deferred[Record]:
        """Insert a domain; ``Conflict`` when its host is taken."""
        return self._insert("domains", DOMAIN_COLUMNS, record, self.get_domain)

    def get_domain(self, domain_id: str) -> Deferred[Record | None]:
        return self._get_one("domains", DOMAIN_COLUMNS, "id", domain_id)

    def get_domain_by_host(self, host: str) -> Deferred[Record | None]:
        return self._get_one("domains", DOMAIN_COLUMNS, "host", host)

    def list_domains(self) -> Deferred[list[Record]]:
        sql = "SELECT {} FROM domains ORDER BY created_at, id".format(", ".join(DOMAIN_COLUMNS))
        return self._query(sql).addCallback(lambda rows: [dict(zip(DOMAIN_COLUMNS, r)) for r in rows])

    def update_domain(self, domain_id: str, fields: Record, moves: Sequence[Move] = ()) -> Deferred[Record | None]:
        """
        Change some columns and apply ``moves``, all or nothing; fires with the
        new record. ``Conflict`` when the host is taken, ``RouteClash`` when a
        move collides with another endpoint's route.
        """
        return self._update_moving("domains", DOMAIN_COLUMNS, domain_id, fields, moves, self.get_domain)

    def delete_domain(self, domain_id: str) -> Deferred[bool]:
        """
        Fire with True when a row was deleted; ``InUse`` while endpoints use its
        host or collections belong to it (checked in the same transaction).
        """

        def delete(cursor: Cursor) -> bool:
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

        return self._interaction(delete)

    def create_collection(self, record: Record) -> Deferred[Record]:
        """Insert a collection; ``Missing`` when its ``domain_id`` names no domain."""

        def insert(cursor: Cursor) -> None:
            _check_domain(cursor, record.get("domain_id"))
            _insert_row(cursor, "collections", COLLECTION_COLUMNS, record)

        d = self._interaction(insert)
        d.addErrback(_translate_integrity_error)
        return d.addCallback(lambda _: self.get_collection(record["id"]).addCallback(_present))

    def get_collection(self, collection_id: str) -> Deferred[Record | None]:
        return self._get_one("collections", COLLECTION_COLUMNS, "id", collection_id)

    def list_collections(self, domain_id: str | None = None) -> Deferred[list[Record]]:
        sql = "SELECT {} FROM collections".format(", ".join(COLLECTION_COLUMNS))
        args: tuple[Any, ...] = ()
        if domain_id is not None:
            sql += " WHERE domain_id = ?"
            args = (domain_id,)
        return self._query(sql + " ORDER BY created_at, id", args).addCallback(
            lambda rows: [dict(zip(COLLECTION_COLUMNS, r)) for r in rows]
        )

    def update_collection(
        self, collection_id: str, fields: Record, moves: Sequence[Move] = ()
    ) -> Deferred[Record | None]:
        """
        Like ``update_domain``; also ``Missing`` when a new ``domain_id`` names
        no domain.
        """
        return self._update_moving(
            "collections", COLLECTION_COLUMNS, collection_id, fields, moves, self.get_collection
        )

    def delete_collection(self, collection_id: str) -> Deferred[bool]:
        """Fire with True when a row was deleted; ``InUse`` while endpoints are in it."""

        def delete(cursor: Cursor) -> bool:
            cursor.execute("SELECT COUNT(*) FROM endpoints WHERE collection_id = ?", (collection_id,))
            endpoints = cursor.fetchone()[0]
            if endpoints:
                raise InUse("collection", collection_id, {"endpoints": endpoints})
            cursor.execute("DELETE FROM collections WHERE id = ?", (collection_id,))
            return cursor.rowcount > 0

        return self._interaction(delete)

    def _insert(
        self,
        table: str,
        all_columns: Sequence[str],
        record: Record,
        get: Callable[[str], Deferred[Record | None]],
    ) -> Deferred[Record]:
        columns = [c for c in all_columns if c in record]
        d = self._interaction(_insert_row, table, columns, record)
        d.addErrback(_translate_integrity_error)
        return d.addCallback(lambda _: get(record["id"]).addCallback(_present))

    def _get_one(self, table: str, columns: Sequence[str], key: str, value: str) -> Deferred[Record | None]:
        sql = "SELECT {} FROM {} WHERE {} = ?".format(", ".join(columns), table, key)
        return self._query(sql, (value,)).addCallback(
            lambda rows: dict(zip(columns, rows[0])) if rows else None
        )

    def _update_moving(
        self,
        table: str,
        all_columns: Sequence[str],
        record_id: str,
        fields: Record,
        moves: Sequence[Move],
        get: Callable[[str], Deferred[Record | None]],
    ) -> Deferred[Record | None]:
        unknown = set(fields) - set(all_columns) - {"id"}
        if unknown:
            raise ValueError(f"unknown {table} columns: " + ", ".join(sorted(unknown)))
        columns = [c for c in all_columns if c in fields and c != "id"]

        def update(cursor: Cursor) -> None:
            if "domain_id" in fields:
                _check_domain(cursor, fields["domain_id"])
            if columns:
                cursor.execute(
                    "UPDATE {} SET {} WHERE id = ?".format(table, ", ".join(c + " = ?" for c in columns)),
                    tuple(fields[c] for c in columns) + (record_id,),
                )
            _move_endpoints(cursor, moves)

        d = self._interaction(update)
        d.addErrback(_translate_integrity_error)
        return d.addCallback(lambda _: get(record_id))

    # API keys

    def add_key(self, record: Record) -> Deferred[None]:
        columns = [c for c in KEY_COLUMNS if c in record]
        sql = "INSERT INTO api_keys ({}) VALUES ({})".format(
            ", ".join(columns), ", ".join("?" for _ in columns)
        )
        return self._operation(sql, tuple(record[c] for c in columns))

    def list_keys(self) -> Deferred[list[Record]]:
        sql = "SELECT {} FROM api_keys ORDER BY created_at, id".format(", ".join(KEY_COLUMNS))
        return self._query(sql).addCallback(lambda rows: [dict(zip(KEY_COLUMNS, r)) for r in rows])

    def get_key(self, key_id: str) -> Deferred[Record | None]:
        """The key record, or ``None``."""
        sql = "SELECT {} FROM api_keys WHERE id = ?".format(", ".join(KEY_COLUMNS))
        return self._query(sql, (key_id,)).addCallback(
            lambda rows: dict(zip(KEY_COLUMNS, rows[0])) if rows else None
        )

    def delete_key(self, key_id: str) -> Deferred[Record]:
        """
        Delete a key and fire with its record. ``Missing`` when there is no such
        key; ``LastAdminKey`` when it is the only ``admin`` key (checked in the
        same transaction, so two concurrent deletes cannot both pass).
        """

        def delete(cursor: Cursor) -> Record:
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

        return self._interaction(delete)

    def touch_keys(self, last_used: Mapping[str, str]) -> Deferred[None]:
        """Record ``{key_id: last_used_at}``; ids of deleted keys are ignored."""

        def touch(cursor: Cursor) -> None:
            cursor.executemany(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                [(value, key_id) for key_id, value in last_used.items()],
            )

        return self._interaction(touch)


def _present(record: Record | None) -> Record:
    """A record just written, read back in the same call: there is one."""
    assert record is not None, "a record just written is gone"
    return record


def _insert_row(cursor: Cursor, table: str, columns: Sequence[str], record: Record) -> None:
    columns = [c for c in columns if c in record]
    cursor.execute(
        "INSERT INTO {} ({}) VALUES ({})".format(
            table, ", ".join(columns), ", ".join("?" for _ in columns)
        ),
        tuple(record[c] for c in columns),
    )


def _check_domain(cursor: Cursor, domain_id: str | None) -> None:
    if domain_id is not None:
        cursor.execute("SELECT 1 FROM domains WHERE id = ?", (domain_id,))
        if cursor.fetchone() is None:
            raise Missing("domain", domain_id)


def _move_endpoints(cursor: Cursor, moves: Sequence[Move]) -> None:
    """
    Give endpoints a new (domain, path_shape), all or nothing. Two passes: the
    moved rows first leave their routes (a placeholder shape no pattern can
    have), so a move onto a route another moved endpoint is leaving is no
    clash; a real clash raises ``RouteClash`` naming the endpoint in the way.
    """
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


def _translate_integrity_error(failure: Failure) -> None:
    """sqlite3's broken UNIQUE or foreign key, as the store's ``Conflict``."""
    failure.trap(sqlite3.IntegrityError)
    raise Conflict(str(failure.value))
