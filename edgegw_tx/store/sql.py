"""
Every ``IStore`` method once, in SQL that SQLite and PostgreSQL both run.

``SQLStore`` holds the store's logic: the statements (written with ``?``
placeholders), the transactions, the decoding of records, the revision checks
of ``If-Match`` and the translation of a driver's errors into the store's
(``edgegw_tx.store.errors``).  What differs between the databases is a small
``Dialect``: the driver's placeholders and error classes, how the order of
versions is kept, "insert unless there" and the database's clock.  The
subclasses (``SQLiteStore``, ``PostgresStore``) add a connection pool, a
schema (their migrations) and what is theirs alone.

Each method's work is a function of a ``Tx`` (a cursor speaking ``?``) run in
one transaction on the pool's thread, so the reactor never waits on the
database; a method says whether it only reads, since a read may be retried
once on a lost connection (the pool reconnects) and a write never is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Concatenate, ParamSpec, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from edgegw_tx.store import schema_ddl
from edgegw_tx.store.errors import (
    Conflict,
    InUse,
    LastAdminKey,
    Missing,
    NoFreeUid,
    RouteClash,
    ServiceInUse,
    Stale,
    StoreUnavailable,
)
from edgegw_tx.store.interface import Move, Record

_P = ParamSpec("_P")
_T = TypeVar("_T")

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
    "policy",
)

KEY_COLUMNS = ("id", "name", "scope", "key_hash", "created_at", "last_used_at")

SERVICE_COLUMNS = ("id", "name", "service_type", "config", "created_at", "updated_at")

BINDING_COLUMNS = ("endpoint_id", "pool_id", "service_id", "created_at")

DOMAIN_COLUMNS = ("id", "host", "description", "created_at", "updated_at", "policy")

VERSION_COLUMNS = ("endpoint_id", "digest", "code", "dependencies", "compile_seconds", "created_at")

COLLECTION_COLUMNS = (
    "id",
    "name",
    "domain_id",
    "base_path",
    "description",
    "created_at",
    "updated_at",
    "policy",
)

#: A consumer (migration 8); its keys are ``CONSUMER_KEY_COLUMNS`` rows.
CONSUMER_COLUMNS = ("id", "name", "enabled", "created_at", "updated_at")

CONSUMER_KEY_COLUMNS = ("id", "consumer_id", "key_hash", "created_at")

NODE_COLUMNS = ("name", "address", "admin_address", "version", "started_at", "workers")

ARTIFACT_COLUMNS = ("digest", "sha256", "size", "data", "metadata", "node", "created_at")

#: The record kinds with a ``revision`` (migration 6): table, and the name a ``Stale`` gives.
REVISIONED = {**dict(schema_ddl.REVISIONED), "consumers": "consumer"}

#: What a path shape is while its endpoint moves (no route's shape starts so: they start with ``/``).
_MOVING = "#moving:"

#: Advisory lock keys of PostgreSQL (no-ops on SQLite): the first key; the change log
#: (the same key as its triggers', ``postgres_schema.CHANGES_LOCK``).
FIRST_KEY_LOCK = 0x6564_6701
CHANGES_LOCK = 0x6564_6702


class Dialect:
    """
    What one database does its own way; the base is SQLite's, which speaks
    ``?`` already.
    """

    #: For messages and tests: ``sqlite`` or ``postgresql``.
    name = "sqlite"
    #: The driver's "a uniqueness or reference rule broke" errors.
    integrity_errors: tuple[type[BaseException], ...] = ()
    #: The driver's "the database cannot be reached" errors.
    unavailable_errors: tuple[type[BaseException], ...] = ()
    #: The column that orders versions by when they were recorded.
    version_order = "rowid"
    #: An expression: the database's clock, in seconds since the epoch.
    now_epoch = "((julianday('now') - 2440587.5) * 86400.0)"
    #: Appended to a SELECT that the transaction's later writes depend on.
    for_update = ""

    def convert(self, sql: str) -> str:
        """``sql`` in the driver's placeholders."""
        return sql

    def insert_ignore(self, table: str, columns: Sequence[str], values: Sequence[str] = ()) -> str:
        """
        An INSERT of ``columns`` that does nothing when the row's key is
        taken; ``values`` are their SQL expressions (``?`` each by default).
        """
        return "INSERT OR IGNORE INTO {} ({}) VALUES ({})".format(
            table, ", ".join(columns), ", ".join(values or ["?"] * len(columns))
        )

    def lock(self, tx: Tx, key: int) -> None:
        """Serialize with other transactions taking ``key`` until this one ends (SQLite: one writer anyway)."""

    def blob(self, data: bytes) -> Any:
        """``data`` as the driver binds a binary value."""
        return data


class Tx:
    """A cursor in one transaction that takes ``?`` placeholders, whatever the driver."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        self.cursor.execute(self.dialect.convert(sql), tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.cursor.executemany(self.dialect.convert(sql), [tuple(r) for r in rows])

    def fetchone(self) -> Row | None:
        row: Row | None = self.cursor.fetchone()
        return row

    def fetchall(self) -> list[Row]:
        return list(self.cursor.fetchall())

    @property
    def rowcount(self) -> int:
        count: int = self.cursor.rowcount
        return count

    def one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, or None."""
        self.execute(sql, args)
        return self.fetchone()

    def value(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """The first column of the first row of a query (a query that has one)."""
        row = self.one(sql, args)
        assert row is not None, sql
        return row[0]


def _decode_endpoint(row: Row) -> Record:
    record = dict(zip(ENDPOINT_COLUMNS + ("revision",), row))
    record["enabled"] = bool(record["enabled"])
    record["settings"] = json.loads(record["settings"])
    record["policy"] = json.loads(record["policy"])
    return record


def _decode_version(row: Row) -> Record:
    record = dict(zip(VERSION_COLUMNS, row))
    record["dependencies"] = json.loads(record["dependencies"])
    return record


def _decode_service(row: Row) -> Record:
    record = dict(zip(SERVICE_COLUMNS + ("revision",), row))
    record["config"] = json.loads(record["config"])
    return record


def _plain(columns: Sequence[str]) -> Callable[[Row], Record]:
    def decode(row: Row) -> Record:
        record = dict(zip(tuple(columns) + ("revision",), row))
        if "policy" in record:
            record["policy"] = json.loads(record["policy"])
        if "enabled" in record:
            record["enabled"] = bool(record["enabled"])
        return record

    return decode


def _select(table: str, columns: Sequence[str]) -> str:
    """SELECT of a revisioned table's columns and its revision."""
    return "SELECT {}, revision FROM {}".format(", ".join(columns), table)


def _encode(column: str, value: Any) -> Any:
    """A record's value as its column holds it: JSON text, 0/1 for flags."""
    if column in ("settings", "config", "metadata", "workers", "policy"):
        return json.dumps(value, sort_keys=True)
    if column == "enabled":
        return int(bool(value))
    return value


def iso(seconds: float) -> str:
    """Seconds since the epoch as the ISO 8601 text the store's records use."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _present(record: Record | None) -> Record:
    """A record just written, read back in the same transaction: there is one."""
    assert record is not None, "a record just written is gone"
    return record


def _unused(tx: Tx, digests: Iterable[str], protected: Collection[str] = ()) -> list[str]:
    """
    Those of ``digests`` (in their order, once each) not in ``protected`` and
    not any endpoint's ``deployed`` or ``artifact`` nor any endpoint's kept
    version: artifacts are content-addressed, so one may serve several endpoints.
    """
    unused = []
    for digest in dict.fromkeys(digests):
        if digest in protected:
            continue
        if (
            tx.one(
                "SELECT 1 FROM endpoints WHERE deployed = ? OR artifact = ? "
                "UNION ALL SELECT 1 FROM versions WHERE digest = ?",
                (digest, digest, digest),
            )
            is None
        ):
            unused.append(digest)
    return unused


def _services_of(tx: Tx, endpoint_id: str) -> dict[str, str]:
    """The endpoint's bindings as ``{pool_id: service_id}``."""
    tx.execute(
        "SELECT pool_id, service_id FROM bindings WHERE endpoint_id = ? ORDER BY pool_id",
        (endpoint_id,),
    )
    return dict(tx.fetchall())


def _routes_by_endpoint(tx: Tx, endpoint_id: str | None = None) -> dict[str, list[Record]]:
    """Endpoints' routes as ``{endpoint_id: [{method, path, path_shape}]}`` in order (one endpoint's, or all)."""
    where, args = (" WHERE endpoint_id = ?", (endpoint_id,)) if endpoint_id is not None else ("", ())
    tx.execute(
        "SELECT endpoint_id, method, path, path_shape FROM endpoint_routes" + where + " ORDER BY endpoint_id, position",
        args,
    )
    routes: dict[str, list[Record]] = {}
    for owner, method, path, path_shape in tx.fetchall():
        routes.setdefault(owner, []).append({"method": method, "path": path, "path_shape": path_shape})
    return routes


def _write_routes(tx: Tx, endpoint_id: str, domain: str, routes: Sequence[Mapping[str, Any]]) -> None:
    """Give the endpoint exactly ``routes`` (``{method, path, path_shape}`` each) on ``domain``; the first in its own columns too."""
    tx.execute("DELETE FROM endpoint_routes WHERE endpoint_id = ?", (endpoint_id,))
    tx.executemany(
        "INSERT INTO endpoint_routes (endpoint_id, position, method, path, domain, path_shape) VALUES (?, ?, ?, ?, ?, ?)",
        [(endpoint_id, i, r["method"], r["path"], domain, r["path_shape"]) for i, r in enumerate(routes)],
    )


def _routes_given(record: Record) -> list[Record]:
    """The routes a write gives: ``routes``, or the one-route form's columns."""
    if record.get("routes"):
        return list(record["routes"])
    return [{"method": record["method"], "path": record["path"], "path_shape": record["path_shape"]}]


def _get_endpoint(tx: Tx, endpoint_id: str) -> Record | None:
    row = tx.one(_select("endpoints", ENDPOINT_COLUMNS) + " WHERE id = ?", (endpoint_id,))
    if row is None:
        return None
    record = _decode_endpoint(row)
    record["services"] = _services_of(tx, endpoint_id)
    record["routes"] = _routes_by_endpoint(tx, endpoint_id).get(endpoint_id, [])
    return record


def _get_row(tx: Tx, table: str, columns: Sequence[str], key: str, value: str) -> Row | None:
    return tx.one(_select(table, columns) + f" WHERE {key} = ?", (value,))


def _check_revision(tx: Tx, table: str, record_id: str, revision: int | None) -> bool:
    """
    Whether the record exists (locked for the transaction's writes where the
    database has row locks); ``Stale`` when ``revision`` is given and is not
    the record's.
    """
    row = tx.one(f"SELECT revision FROM {table} WHERE id = ?{tx.dialect.for_update}", (record_id,))
    if row is None:
        return False
    if revision is not None and row[0] != revision:
        raise Stale(REVISIONED[table], record_id, row[0])
    return True


def _update_row(tx: Tx, table: str, record_id: str, columns: Sequence[str], fields: Record) -> None:
    if columns:
        tx.execute(
            "UPDATE {} SET {} WHERE id = ?".format(table, ", ".join(c + " = ?" for c in columns)),
            tuple(_encode(c, fields[c]) for c in columns) + (record_id,),
        )


def _insert_row(tx: Tx, table: str, columns: Sequence[str], record: Record) -> None:
    columns = [c for c in columns if c in record]
    tx.execute(
        "INSERT INTO {} ({}) VALUES ({})".format(table, ", ".join(columns), ", ".join("?" for _ in columns)),
        tuple(_encode(c, record[c]) for c in columns),
    )


def _check_domain(tx: Tx, domain_id: str | None) -> None:
    if domain_id is not None and tx.one("SELECT 1 FROM domains WHERE id = ?", (domain_id,)) is None:
        raise Missing("domain", domain_id)


def _move_endpoints(tx: Tx, moves: Sequence[Move]) -> None:
    """
    Give endpoints a new domain and path shapes (one per route, in order), all
    or nothing. Two passes: the moved rows first leave their routes (a
    placeholder shape no pattern can have), so a move onto a route another
    moved endpoint is leaving is no clash; a real clash raises ``RouteClash``
    naming the endpoint in the way and the route, found by a query before the
    write (PostgreSQL would abort the whole transaction on the broken UNIQUE
    rule).
    """
    for endpoint_id, _, _ in moves:
        tx.execute("UPDATE endpoints SET path_shape = ? WHERE id = ?", (_MOVING + endpoint_id, endpoint_id))
        tx.execute(
            "UPDATE endpoint_routes SET path_shape = CAST(? AS TEXT) || CAST(position AS TEXT) WHERE endpoint_id = ?",
            (_MOVING + endpoint_id + ":", endpoint_id),
        )
    for endpoint_id, domain, shapes in moves:
        tx.execute("SELECT method FROM endpoint_routes WHERE endpoint_id = ? ORDER BY position", (endpoint_id,))
        methods = [method for (method,) in tx.fetchall()]
        for position, (method, path_shape) in enumerate(zip(methods, shapes)):
            row = tx.one(
                "SELECT e.id, e.name FROM endpoint_routes r JOIN endpoints e ON e.id = r.endpoint_id "
                "WHERE r.domain = ? AND r.method = ? AND r.path_shape = ? AND r.endpoint_id != ?",
                (domain, method, path_shape, endpoint_id),
            )
            if row is not None:
                raise RouteClash(endpoint_id, row[0], row[1], position)
            tx.execute(
                "UPDATE endpoint_routes SET domain = ?, path_shape = ? WHERE endpoint_id = ? AND position = ?",
                (domain, path_shape, endpoint_id, position),
            )
        tx.execute(
            "UPDATE endpoints SET domain = ?, path_shape = ? WHERE id = ?", (domain, shapes[0], endpoint_id)
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


class Pool(adbapi.ConnectionPool):
    """
    adbapi's pool, with a transaction of its own: when a failed transaction
    cannot even be rolled back (the server ended the connection), the
    connection is dropped quietly, so the next one connects anew, and the
    failure is the caller's to report (as ``StoreUnavailable``) rather than a
    logged traceback of the pool's.
    """

    def _runInteraction(self, interaction: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        connection = self.connect()  # type: ignore[no-untyped-call]  # adbapi is not annotated
        try:
            cursor = connection.cursor()
            result = interaction(cursor, *args, **kwargs)
            cursor.close()
            connection.commit()
            return result
        except BaseException:
            try:
                connection.rollback()
            except Exception:
                self.disconnect(connection)  # type: ignore[no-untyped-call]  # adbapi is not annotated
            raise


def make_pool(threadpool: ThreadPool | None, *args: Any, **kwargs: Any) -> Any:
    """
    A ``Pool`` (adbapi's arguments; it is not annotated, so neither is what it
    makes), running on ``threadpool`` when one is given instead of its own
    (tests pass a synchronous one).
    """
    factory: Any = Pool
    pool = factory(*args, **kwargs)
    if threadpool is not None:
        pool.threadpool = threadpool
    return pool


class SQLStore:
    """
    The store's logic over a DB-API pool (``adbapi``) and a ``Dialect``;
    subclasses make the pool and the schema.

    :ivar where: the store, for messages.
    """

    shared = False
    where = ""

    def __init__(self, pool: Any, dialect: Dialect, reactor: Any) -> None:
        # adbapi is not annotated: ``_run`` is its only caller.
        self._pool: Any = pool
        self._dialect = dialect
        self._reactor = reactor

    # running work

    def _run(
        self, write: bool, work: Callable[Concatenate[Tx, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> Deferred[_T]:
        """
        Run ``work(tx, ...)`` in one transaction; the driver's errors become
        the store's. A read that finds the connection lost runs once more (on
        a new connection).
        """
        d = self._attempt(work, *args, **kwargs)
        if not write:

            def again(failure: Failure) -> Deferred[_T] | Failure:
                if failure.check(StoreUnavailable):
                    return self._attempt(work, *args, **kwargs)
                return failure

            d.addErrback(again)
        return d

    def _attempt(
        self, work: Callable[Concatenate[Tx, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> Deferred[_T]:
        dialect = self._dialect

        def interaction(cursor: Any) -> _T:
            return work(Tx(cursor, dialect), *args, **kwargs)

        try:
            d: Deferred[_T] = self._pool.runInteraction(interaction)
        except Exception as e:  # a closed pool, or one that cannot connect at once
            d = Deferred()
            d.errback(Failure(e))
        d.addErrback(self._translate)
        return d

    def _translate(self, failure: Failure) -> Failure:
        """The driver's errors as the store's: ``Conflict``, ``StoreUnavailable``."""
        error = failure.value
        if isinstance(error, self._dialect.integrity_errors):
            return Failure(Conflict(_first_line(error)))
        if isinstance(error, adbapi.ConnectionLost) or isinstance(error, self._dialect.unavailable_errors):
            return Failure(StoreUnavailable(self.where, _first_line(error)))
        return failure

    def _read(
        self, work: Callable[Concatenate[Tx, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> Deferred[_T]:
        return self._run(False, work, *args, **kwargs)

    def _write(
        self, work: Callable[Concatenate[Tx, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> Deferred[_T]:
        """
        A change of the configuration (the change log's triggers fire): it
        first takes the change log's lock (PostgreSQL), so that no two such
        transactions can each hold a row the other waits for while one holds
        that lock.
        """

        def change(tx: Tx) -> _T:
            tx.dialect.lock(tx, CHANGES_LOCK)
            return work(tx, *args, **kwargs)

        return self._run(True, change)

    def _keep(
        self, work: Callable[Concatenate[Tx, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> Deferred[_T]:
        """A write of the store's bookkeeping (versions, uids, key use, nodes, binaries, claims): no change logged."""
        return self._run(True, work, *args, **kwargs)

    def _now(self) -> str:
        """The reactor's time as record text (the caller's clock, for records the caller would date)."""
        return iso(self._reactor.seconds())

    # endpoints

    def create_endpoint(self, record: Record) -> Deferred[Record]:
        """Insert an endpoint with its ``routes`` (or its one route's columns); ``Conflict`` when another has one of them."""
        routes = _routes_given(record)
        row = {k: v for k, v in record.items() if k != "routes"}
        row.update(method=routes[0]["method"], path=routes[0]["path"], path_shape=routes[0]["path_shape"])

        def create(tx: Tx) -> Record:
            _insert_row(tx, "endpoints", ENDPOINT_COLUMNS, row)
            _write_routes(tx, record["id"], row["domain"], routes)
            return _present(_get_endpoint(tx, record["id"]))

        return self._write(create)

    def get_endpoint(self, endpoint_id: str) -> Deferred[Record | None]:
        """The endpoint's record with its bindings as ``services``, or None."""
        return self._read(_get_endpoint, endpoint_id)

    def list_endpoints(self) -> Deferred[list[Record]]:
        def list_(tx: Tx) -> list[Record]:
            tx.execute(_select("endpoints", ENDPOINT_COLUMNS) + " ORDER BY created_at, id")
            records = [_decode_endpoint(r) for r in tx.fetchall()]
            tx.execute("SELECT endpoint_id, pool_id, service_id FROM bindings ORDER BY pool_id")
            services: dict[str, dict[str, str]] = {}
            for endpoint_id, pool_id, service_id in tx.fetchall():
                services.setdefault(endpoint_id, {})[pool_id] = service_id
            routes = _routes_by_endpoint(tx)
            for record in records:
                record["services"] = services.get(record["id"], {})
                record["routes"] = routes.get(record["id"], [])
            return records

        return self._read(list_)

    def update_endpoint(
        self, endpoint_id: str, fields: Record, revision: int | None = None
    ) -> Deferred[Record | None]:
        """
        Change some columns, and with ``routes`` all the routes (the first
        in the columns too); fires with the new record (None if gone).
        ``Conflict`` when another endpoint has one of the routes.
        """
        routes = fields.get("routes")
        fields = {k: v for k, v in fields.items() if k != "routes"}
        if routes:
            fields.update(method=routes[0]["method"], path=routes[0]["path"], path_shape=routes[0]["path_shape"])
        columns = _columns("endpoints", ENDPOINT_COLUMNS, fields)

        def update(tx: Tx) -> Record | None:
            if not _check_revision(tx, "endpoints", endpoint_id, revision):
                return None
            _update_row(tx, "endpoints", endpoint_id, columns, fields)
            if routes or "domain" in fields or {"method", "path", "path_shape"} & set(fields):
                current = _present(_get_endpoint(tx, endpoint_id))
                given = list(routes) if routes else current["routes"]
                if not routes:
                    # The one-route form: the first route is the columns'.
                    given[0] = {k: current[k] for k in ("method", "path", "path_shape")}
                _write_routes(tx, endpoint_id, current["domain"], given)
            return _get_endpoint(tx, endpoint_id)

        return self._write(update)

    def delete_endpoint(self, endpoint_id: str, revision: int | None = None) -> Deferred[bool]:
        """Fire with True when a row was deleted. Its bindings, versions and uid go with it."""

        def delete(tx: Tx) -> bool:
            if not _check_revision(tx, "endpoints", endpoint_id, revision):
                return False
            tx.execute("DELETE FROM bindings WHERE endpoint_id = ?", (endpoint_id,))
            tx.execute("DELETE FROM versions WHERE endpoint_id = ?", (endpoint_id,))
            tx.execute("DELETE FROM worker_uids WHERE endpoint_id = ?", (endpoint_id,))
            tx.execute("DELETE FROM endpoint_routes WHERE endpoint_id = ?", (endpoint_id,))
            tx.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))
            return tx.rowcount > 0

        return self._write(delete)

    # worker uids

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
        the store's thread) does not name, now recorded.
        """

        def allocate(tx: Tx) -> int:
            row = tx.one("SELECT uid FROM worker_uids WHERE endpoint_id = ?", (endpoint_id,))
            if row is not None:
                uid: int = row[0]
                return uid
            if tx.one("SELECT 1 FROM endpoints WHERE id = ?" + tx.dialect.for_update, (endpoint_id,)) is None:
                raise Missing("endpoint", endpoint_id)
            tx.execute("SELECT uid FROM worker_uids WHERE uid BETWEEN ? AND ?", (first, last))
            taken = {uid for (uid,) in tx.fetchall()} | set(busy() if busy is not None else ())
            for uid in range(first, last + 1):
                if uid not in taken:
                    tx.execute("INSERT INTO worker_uids (endpoint_id, uid) VALUES (?, ?)", (endpoint_id, uid))
                    return uid
            raise NoFreeUid(f"no free worker uid left in {first}-{last} (--worker-uids)")

        return self._keep(allocate)

    def worker_uids(self) -> Deferred[dict[str, int]]:
        def uids(tx: Tx) -> dict[str, int]:
            tx.execute("SELECT endpoint_id, uid FROM worker_uids")
            return {endpoint_id: uid for endpoint_id, uid in tx.fetchall()}

        return self._read(uids)

    # versions: one row per (endpoint, digest) it compiled

    def record_version(self, record: Record, cached: bool = False) -> Deferred[None]:
        """
        Record a successful compile. The same digest again replaces the row, so
        it is the newest; a ``cached`` build (no cargo run) keeps the row's
        ``compile_seconds``, the time the binary really took.
        """

        def record_(tx: Tx) -> None:
            values = dict(record)
            key = (record["endpoint_id"], record["digest"])
            row = tx.one("SELECT compile_seconds FROM versions WHERE endpoint_id = ? AND digest = ?", key)
            if cached and row is not None:
                values["compile_seconds"] = row[0]
            values["dependencies"] = json.dumps(values.get("dependencies") or {}, sort_keys=True)
            tx.execute("DELETE FROM versions WHERE endpoint_id = ? AND digest = ?", key)
            tx.execute(
                "INSERT INTO versions ({}) VALUES ({})".format(
                    ", ".join(VERSION_COLUMNS), ", ".join("?" for _ in VERSION_COLUMNS)
                ),
                tuple(values[c] for c in VERSION_COLUMNS),
            )

        return self._keep(record_)

    def list_versions(self, endpoint_id: str) -> Deferred[list[Record]]:
        """The endpoint's versions, newest first (``dependencies`` decoded)."""

        def list_(tx: Tx) -> list[Record]:
            tx.execute(
                "SELECT {} FROM versions WHERE endpoint_id = ? ORDER BY {} DESC".format(
                    ", ".join(VERSION_COLUMNS), tx.dialect.version_order
                ),
                (endpoint_id,),
            )
            return [_decode_version(r) for r in tx.fetchall()]

        return self._read(list_)

    def prune_versions(self, endpoint_id: str, keep: int, protected: Iterable[str] = ()) -> Deferred[list[str]]:
        """
        Keep the endpoint's ``keep`` newest versions, and any whose digest is
        its ``deployed`` or ``artifact`` or in ``protected``; delete the other
        rows. Fires with the deleted digests no longer used anywhere.
        """
        protected = frozenset(protected)

        def prune(tx: Tx) -> list[str]:
            row = tx.one("SELECT deployed, artifact FROM endpoints WHERE id = ?", (endpoint_id,)) or (None, None)
            spared = set(protected) | {d for d in row if d}
            tx.execute(
                f"SELECT digest FROM versions WHERE endpoint_id = ? ORDER BY {tx.dialect.version_order} DESC",
                (endpoint_id,),
            )
            digests = [r[0] for r in tx.fetchall()]
            doomed = [d for d in digests[max(keep, 0) :] if d not in spared]
            tx.executemany(
                "DELETE FROM versions WHERE endpoint_id = ? AND digest = ?", [(endpoint_id, d) for d in doomed]
            )
            return _unused(tx, doomed, protected)

        return self._keep(prune)

    def unused_digests(self, digests: Iterable[str], protected: Iterable[str] = ()) -> Deferred[list[str]]:
        return self._read(_unused, list(digests), frozenset(protected))

    # services

    def create_service(self, record: Record) -> Deferred[Record]:
        """Insert a service; ``Conflict`` when its name is taken (ignoring case)."""

        def create(tx: Tx) -> Record:
            _insert_row(tx, "services", SERVICE_COLUMNS, record)
            return _decode_service(_row(_get_row(tx, "services", SERVICE_COLUMNS, "id", record["id"])))

        return self._write(create)

    def get_service(self, service_id: str) -> Deferred[Record | None]:
        def get(tx: Tx) -> Record | None:
            row = _get_row(tx, "services", SERVICE_COLUMNS, "id", service_id)
            return _decode_service(row) if row is not None else None

        return self._read(get)

    def list_services(self) -> Deferred[list[Record]]:
        def list_(tx: Tx) -> list[Record]:
            tx.execute(_select("services", SERVICE_COLUMNS) + " ORDER BY created_at, id")
            return [_decode_service(r) for r in tx.fetchall()]

        return self._read(list_)

    def update_service(self, service_id: str, fields: Record, revision: int | None = None) -> Deferred[Record | None]:
        columns = _columns("services", SERVICE_COLUMNS, fields)

        def update(tx: Tx) -> Record | None:
            if not _check_revision(tx, "services", service_id, revision):
                return None
            _update_row(tx, "services", service_id, columns, fields)
            return _decode_service(_row(_get_row(tx, "services", SERVICE_COLUMNS, "id", service_id)))

        return self._write(update)

    def delete_service(self, service_id: str, revision: int | None = None) -> Deferred[bool]:
        """False when there was none; ``ServiceInUse`` while endpoints are bound to it."""

        def delete(tx: Tx) -> bool:
            if not _check_revision(tx, "services", service_id, revision):
                return False
            tx.execute(
                "SELECT b.endpoint_id, e.name, b.pool_id FROM bindings b "
                "JOIN endpoints e ON e.id = b.endpoint_id "
                "WHERE b.service_id = ? ORDER BY e.name, b.pool_id",
                (service_id,),
            )
            bound = [
                {"endpoint_id": endpoint_id, "endpoint_name": name, "pool_id": pool_id}
                for endpoint_id, name, pool_id in tx.fetchall()
            ]
            if bound:
                raise ServiceInUse(service_id, bound)
            tx.execute("DELETE FROM services WHERE id = ?", (service_id,))
            return tx.rowcount > 0

        return self._write(delete)

    # bindings

    def bind(self, endpoint_id: str, pool_id: str, service_id: str, created_at: str) -> Deferred[str | None]:
        def bind(tx: Tx) -> str | None:
            for table, what, record_id in (
                ("endpoints", "endpoint", endpoint_id),
                ("services", "service", service_id),
            ):
                if tx.one(f"SELECT 1 FROM {table} WHERE id = ?{tx.dialect.for_update}", (record_id,)) is None:
                    raise Missing(what, record_id)
            key = (endpoint_id, pool_id)
            row = tx.one("SELECT service_id FROM bindings WHERE endpoint_id = ? AND pool_id = ?", key)
            if row is None:
                tx.execute(
                    "INSERT INTO bindings (endpoint_id, pool_id, service_id, created_at) VALUES (?, ?, ?, ?)",
                    key + (service_id, created_at),
                )
                return None
            tx.execute(
                "UPDATE bindings SET service_id = ?, created_at = ? WHERE endpoint_id = ? AND pool_id = ?",
                (service_id, created_at) + key,
            )
            replaced: str = row[0]
            return replaced

        return self._write(bind)

    def unbind(self, endpoint_id: str, pool_id: str) -> Deferred[str | None]:
        def unbind(tx: Tx) -> str | None:
            key = (endpoint_id, pool_id)
            row = tx.one("SELECT service_id FROM bindings WHERE endpoint_id = ? AND pool_id = ?", key)
            if row is None:
                return None
            tx.execute("DELETE FROM bindings WHERE endpoint_id = ? AND pool_id = ?", key)
            service: str = row[0]
            return service

        return self._write(unbind)

    def list_bindings(self) -> Deferred[list[Record]]:
        def list_(tx: Tx) -> list[Record]:
            tx.execute("SELECT {} FROM bindings ORDER BY endpoint_id, pool_id".format(", ".join(BINDING_COLUMNS)))
            return [dict(zip(BINDING_COLUMNS, r)) for r in tx.fetchall()]

        return self._read(list_)

    # domains and collections
    #
    # An endpoint refers to its domain by host (``endpoints.domain``) and to its
    # collection by id; its ``domain`` and ``path_shape`` are those of the route
    # it is served at, so the UNIQUE rule on endpoints holds over effective
    # routes. ``moves`` are applied in the transaction of the change causing them.

    def create_domain(self, record: Record) -> Deferred[Record]:
        def create(tx: Tx) -> Record:
            _insert_row(tx, "domains", DOMAIN_COLUMNS, record)
            return _plain(DOMAIN_COLUMNS)(_row(_get_row(tx, "domains", DOMAIN_COLUMNS, "id", record["id"])))

        return self._write(create)

    def get_domain(self, domain_id: str) -> Deferred[Record | None]:
        return self._get_one("domains", DOMAIN_COLUMNS, "id", domain_id)

    def get_domain_by_host(self, host: str) -> Deferred[Record | None]:
        return self._get_one("domains", DOMAIN_COLUMNS, "host", host)

    def list_domains(self) -> Deferred[list[Record]]:
        return self._list("domains", DOMAIN_COLUMNS)

    def update_domain(
        self, domain_id: str, fields: Record, moves: Sequence[Move] = (), revision: int | None = None
    ) -> Deferred[Record | None]:
        return self._update_moving("domains", DOMAIN_COLUMNS, domain_id, fields, moves, revision)

    def delete_domain(self, domain_id: str, revision: int | None = None) -> Deferred[bool]:
        """``InUse`` while endpoints use its host or collections belong to it (checked in the same transaction)."""

        def delete(tx: Tx) -> bool:
            if not _check_revision(tx, "domains", domain_id, revision):
                return False
            host = tx.value("SELECT host FROM domains WHERE id = ?", (domain_id,))
            endpoints = tx.value("SELECT COUNT(*) FROM endpoints WHERE domain = ?", (host,))
            collections = tx.value("SELECT COUNT(*) FROM collections WHERE domain_id = ?", (domain_id,))
            if endpoints or collections:
                raise InUse("domain", domain_id, {"endpoints": endpoints, "collections": collections})
            tx.execute("DELETE FROM domains WHERE id = ?", (domain_id,))
            return True

        return self._write(delete)

    def create_collection(self, record: Record) -> Deferred[Record]:
        """Insert a collection; ``Missing`` when its ``domain_id`` names no domain."""

        def create(tx: Tx) -> Record:
            _check_domain(tx, record.get("domain_id"))
            _insert_row(tx, "collections", COLLECTION_COLUMNS, record)
            row = _get_row(tx, "collections", COLLECTION_COLUMNS, "id", record["id"])
            return _plain(COLLECTION_COLUMNS)(_row(row))

        return self._write(create)

    def get_collection(self, collection_id: str) -> Deferred[Record | None]:
        return self._get_one("collections", COLLECTION_COLUMNS, "id", collection_id)

    def list_collections(self, domain_id: str | None = None) -> Deferred[list[Record]]:
        return self._list("collections", COLLECTION_COLUMNS, "domain_id", domain_id)

    def update_collection(
        self, collection_id: str, fields: Record, moves: Sequence[Move] = (), revision: int | None = None
    ) -> Deferred[Record | None]:
        return self._update_moving("collections", COLLECTION_COLUMNS, collection_id, fields, moves, revision)

    def delete_collection(self, collection_id: str, revision: int | None = None) -> Deferred[bool]:
        def delete(tx: Tx) -> bool:
            if not _check_revision(tx, "collections", collection_id, revision):
                return False
            endpoints = tx.value("SELECT COUNT(*) FROM endpoints WHERE collection_id = ?", (collection_id,))
            if endpoints:
                raise InUse("collection", collection_id, {"endpoints": endpoints})
            tx.execute("DELETE FROM collections WHERE id = ?", (collection_id,))
            return tx.rowcount > 0

        return self._write(delete)

    def _get_one(self, table: str, columns: Sequence[str], key: str, value: str) -> Deferred[Record | None]:
        def get(tx: Tx) -> Record | None:
            row = _get_row(tx, table, columns, key, value)
            return _plain(columns)(row) if row is not None else None

        return self._read(get)

    def _list(
        self, table: str, columns: Sequence[str], key: str | None = None, value: str | None = None
    ) -> Deferred[list[Record]]:
        def list_(tx: Tx) -> list[Record]:
            if key is not None and value is not None:
                tx.execute(_select(table, columns) + f" WHERE {key} = ? ORDER BY created_at, id", (value,))
            else:
                tx.execute(_select(table, columns) + " ORDER BY created_at, id")
            return [_plain(columns)(r) for r in tx.fetchall()]

        return self._read(list_)

    def _update_moving(
        self,
        table: str,
        all_columns: Sequence[str],
        record_id: str,
        fields: Record,
        moves: Sequence[Move],
        revision: int | None,
    ) -> Deferred[Record | None]:
        columns = _columns(table, all_columns, fields)

        def update(tx: Tx) -> Record | None:
            if not _check_revision(tx, table, record_id, revision):
                return None
            if "domain_id" in fields:
                _check_domain(tx, fields["domain_id"])
            _update_row(tx, table, record_id, columns, fields)
            _move_endpoints(tx, moves)
            return _plain(all_columns)(_row(_get_row(tx, table, all_columns, "id", record_id)))

        return self._write(update)

    # API keys

    def add_key(self, record: Record) -> Deferred[None]:
        return self._write(_insert_row, "api_keys", KEY_COLUMNS, record)

    def add_first_key(self, record: Record) -> Deferred[bool]:
        """Insert ``record`` only when there is no key at all (two nodes at once: one wins)."""

        def add(tx: Tx) -> bool:
            tx.dialect.lock(tx, FIRST_KEY_LOCK)
            if tx.one("SELECT 1 FROM api_keys") is not None:
                return False
            _insert_row(tx, "api_keys", KEY_COLUMNS, record)
            return True

        return self._write(add)

    def list_keys(self) -> Deferred[list[Record]]:
        return self._list("api_keys", KEY_COLUMNS)

    def get_key(self, key_id: str) -> Deferred[Record | None]:
        return self._get_one("api_keys", KEY_COLUMNS, "id", key_id)

    def delete_key(self, key_id: str, revision: int | None = None) -> Deferred[Record]:
        """
        Delete a key and fire with its record. ``Missing`` when there is no such
        key; ``LastAdminKey`` when it is the only ``admin`` key (checked in the
        same transaction, the admin keys locked where the database has row locks).
        """

        def delete(tx: Tx) -> Record:
            if not _check_revision(tx, "api_keys", key_id, revision):
                raise Missing("key", key_id)
            record = _plain(KEY_COLUMNS)(_row(_get_row(tx, "api_keys", KEY_COLUMNS, "id", key_id)))
            if record["scope"] == "admin":
                tx.execute("SELECT id FROM api_keys WHERE scope = 'admin' AND id != ?" + tx.dialect.for_update, (key_id,))
                if not tx.fetchall():
                    raise LastAdminKey(key_id)
            tx.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
            return record

        return self._write(delete)

    def touch_keys(self, last_used: Mapping[str, str]) -> Deferred[None]:
        def touch(tx: Tx) -> None:
            tx.executemany(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                [(value, key_id) for key_id, value in sorted(last_used.items())],
            )

        return self._keep(touch)

    # consumers and their API keys (migration 8)

    def create_consumer(self, record: Record) -> Deferred[Record]:
        """Insert a consumer; ``Conflict`` when its name is taken (ignoring case)."""

        def create(tx: Tx) -> Record:
            _insert_row(tx, "consumers", CONSUMER_COLUMNS, record)
            return _present(_get_consumer(tx, record["id"]))

        return self._write(create)

    def get_consumer(self, consumer_id: str) -> Deferred[Record | None]:
        return self._read(_get_consumer, consumer_id)

    def list_consumers(self) -> Deferred[list[Record]]:
        def list_(tx: Tx) -> list[Record]:
            tx.execute(_select("consumers", CONSUMER_COLUMNS) + " ORDER BY created_at, id")
            consumers = [_plain(CONSUMER_COLUMNS)(r) for r in tx.fetchall()]
            keys = _consumer_keys(tx)
            for consumer in consumers:
                consumer["keys"] = keys.get(consumer["id"], [])
            return consumers

        return self._read(list_)

    def update_consumer(self, consumer_id: str, fields: Record, revision: int | None = None) -> Deferred[Record | None]:
        columns = _columns("consumers", CONSUMER_COLUMNS, fields)

        def update(tx: Tx) -> Record | None:
            if not _check_revision(tx, "consumers", consumer_id, revision):
                return None
            _update_row(tx, "consumers", consumer_id, columns, fields)
            return _get_consumer(tx, consumer_id)

        return self._write(update)

    def delete_consumer(self, consumer_id: str, revision: int | None = None) -> Deferred[bool]:
        def delete(tx: Tx) -> bool:
            if not _check_revision(tx, "consumers", consumer_id, revision):
                return False
            tx.execute("DELETE FROM consumers WHERE id = ?", (consumer_id,))
            return tx.rowcount > 0

        return self._write(delete)

    def add_consumer_key(self, record: Record) -> Deferred[Record]:
        """Insert a key (id, consumer_id, key_hash, created_at); ``Missing`` for an unknown consumer."""

        def add(tx: Tx) -> Record:
            if tx.one(f"SELECT 1 FROM consumers WHERE id = ?{tx.dialect.for_update}", (record["consumer_id"],)) is None:
                raise Missing("consumer", record["consumer_id"])
            _insert_row(tx, "consumer_keys", CONSUMER_KEY_COLUMNS, record)
            return {c: record[c] for c in CONSUMER_KEY_COLUMNS}

        return self._write(add)

    def delete_consumer_key(self, consumer_id: str, key_id: str) -> Deferred[bool]:
        def delete(tx: Tx) -> bool:
            tx.execute("DELETE FROM consumer_keys WHERE id = ? AND consumer_id = ?", (key_id, consumer_id))
            return tx.rowcount > 0

        return self._write(delete)

    # the change log (migration 6; the database's triggers write it)

    def changes_since(self, revision: int) -> Deferred[Record]:
        def since(tx: Tx) -> Record:
            newest, oldest = tx.one("SELECT max(revision), min(revision) FROM changes") or (None, None)
            if newest is None:
                return {"revision": 0, "changes": [], "complete": revision <= 0}
            tx.execute("SELECT revision, kind, record_id FROM changes WHERE revision > ? ORDER BY revision", (revision,))
            changes = [{"revision": r, "kind": k, "record_id": i} for r, k, i in tx.fetchall()]
            # Rows committed between the two queries (PostgreSQL's READ COMMITTED) are in ``changes``.
            newest = max([newest] + [c["revision"] for c in changes[-1:]])
            return {"revision": newest, "changes": changes, "complete": revision >= oldest - 1}

        return self._read(since)

    def prune_changes(self, keep: int) -> Deferred[int]:
        """Keep at least the newest row: it is the store's revision."""

        def prune(tx: Tx) -> int:
            tx.execute(
                "DELETE FROM changes WHERE revision NOT IN "
                "(SELECT revision FROM (SELECT revision FROM changes ORDER BY revision DESC LIMIT ?) AS newest)",
                (max(keep, 1),),
            )
            return tx.rowcount

        return self._keep(prune)

    # nodes (migration 6)

    def heartbeat(self, node: Record) -> Deferred[None]:
        columns = [c for c in NODE_COLUMNS if c != "name" and c in node]

        def beat(tx: Tx) -> None:
            values = tuple(_encode(c, node[c]) for c in columns)
            now = tx.dialect.now_epoch
            tx.execute(
                "UPDATE nodes SET {}last_seen = {} WHERE name = ?".format("".join(c + " = ?, " for c in columns), now),
                values + (node["name"],),
            )
            if tx.rowcount == 0:
                tx.execute(
                    "INSERT INTO nodes (name, {}last_seen) VALUES (?, {}{})".format(
                        "".join(c + ", " for c in columns), "?, " * len(columns), now
                    ),
                    (node["name"],) + values,
                )

        return self._keep(beat)

    def list_nodes(self) -> Deferred[list[Record]]:
        def list_(tx: Tx) -> list[Record]:
            tx.execute(
                "SELECT {}, last_seen, {} - last_seen FROM nodes ORDER BY name".format(
                    ", ".join(NODE_COLUMNS), tx.dialect.now_epoch
                )
            )
            nodes = []
            for row in tx.fetchall():
                record = dict(zip(NODE_COLUMNS, row))
                record["workers"] = json.loads(record["workers"] or "{}")
                record["last_seen"] = iso(row[-2])
                record["seconds_since_seen"] = max(float(row[-1]), 0.0)
                nodes.append(record)
            return nodes

        return self._read(list_)

    def remove_node(self, name: str) -> Deferred[bool]:
        def remove(tx: Tx) -> bool:
            tx.execute("DELETE FROM nodes WHERE name = ?", (name,))
            return tx.rowcount > 0

        return self._keep(remove)

    # shared binaries and build claims (migration 6)

    def put_artifact(self, digest: str, data: bytes, metadata: Record, node: str) -> Deferred[None]:
        import hashlib

        values = (
            digest,
            hashlib.sha256(data).hexdigest(),
            len(data),
            self._dialect.blob(data),
            _encode("metadata", metadata),
            node,
            self._now(),
        )

        def put(tx: Tx) -> None:
            tx.execute(tx.dialect.insert_ignore("artifacts", ARTIFACT_COLUMNS), values)

        return self._keep(put)

    def get_artifact(self, digest: str) -> Deferred[Record | None]:
        def get(tx: Tx) -> Record | None:
            row = tx.one("SELECT {} FROM artifacts WHERE digest = ?".format(", ".join(ARTIFACT_COLUMNS)), (digest,))
            if row is None:
                return None
            record = dict(zip(ARTIFACT_COLUMNS, row))
            record["data"] = bytes(record["data"])
            record["metadata"] = json.loads(record["metadata"])
            return record

        return self._read(get)

    def has_artifact(self, digest: str) -> Deferred[bool]:
        def has(tx: Tx) -> bool:
            return tx.one("SELECT 1 FROM artifacts WHERE digest = ?", (digest,)) is not None

        return self._read(has)

    def delete_artifacts(self, digests: Iterable[str]) -> Deferred[None]:
        rows = [(d,) for d in dict.fromkeys(digests)]

        def delete(tx: Tx) -> None:
            tx.executemany("DELETE FROM artifacts WHERE digest = ?", rows)

        return self._keep(delete)

    def claim_build(self, digest: str, node: str, stale_after: float) -> Deferred[str | None]:
        """None when ``node`` holds the claim now (a new one, its own refreshed, or a stale one taken over)."""

        def claim(tx: Tx) -> str | None:
            now = tx.dialect.now_epoch
            tx.execute(
                f"DELETE FROM build_claims WHERE digest = ? AND node != ? AND claimed_at < {now} - ?",
                (digest, node, stale_after),
            )
            insert = tx.dialect.insert_ignore("build_claims", ("digest", "node", "claimed_at"), ("?", "?", now))
            holder = None
            while holder is None:  # (again when the holder released it between the two statements)
                tx.execute(insert, (digest, node))
                if tx.rowcount == 1:
                    return None
                holder = tx.one("SELECT node FROM build_claims WHERE digest = ?", (digest,))
            if holder[0] == node:
                tx.execute(f"UPDATE build_claims SET claimed_at = {now} WHERE digest = ?", (digest,))
                return None
            other: str = holder[0]
            return other

        return self._keep(claim)

    def release_build(self, digest: str, node: str) -> Deferred[None]:
        def release(tx: Tx) -> None:
            tx.execute("DELETE FROM build_claims WHERE digest = ? AND node = ?", (digest, node))

        return self._keep(release)


def _consumer_keys(tx: Tx, consumer_id: str | None = None) -> dict[str, list[Record]]:
    """Consumer id → its keys (id, key_hash, created_at), oldest first."""
    where = " WHERE consumer_id = ?" if consumer_id is not None else ""
    tx.execute(
        "SELECT {} FROM consumer_keys{} ORDER BY created_at, id".format(", ".join(CONSUMER_KEY_COLUMNS), where),
        () if consumer_id is None else (consumer_id,),
    )
    keys: dict[str, list[Record]] = {}
    for row in tx.fetchall():
        key = dict(zip(CONSUMER_KEY_COLUMNS, row))
        keys.setdefault(key.pop("consumer_id"), []).append(key)
    return keys


def _get_consumer(tx: Tx, consumer_id: str) -> Record | None:
    """The consumer with its ``keys``, or None."""
    row = _get_row(tx, "consumers", CONSUMER_COLUMNS, "id", consumer_id)
    if row is None:
        return None
    consumer = _plain(CONSUMER_COLUMNS)(row)
    consumer["keys"] = _consumer_keys(tx, consumer_id).get(consumer_id, [])
    return consumer


def _columns(table: str, all_columns: Sequence[str], fields: Record) -> list[str]:
    """The columns ``fields`` writes; ValueError at once for one ``table`` does not have."""
    unknown = set(fields) - set(all_columns) - {"id"}
    if unknown:
        what = REVISIONED.get(table, table.rstrip("s"))
        raise ValueError(f"unknown {what} columns: " + ", ".join(sorted(unknown)))
    return [c for c in all_columns if c in fields and c != "id"]


def _row(row: Row | None) -> Row:
    assert row is not None, "a record just written is gone"
    return row
