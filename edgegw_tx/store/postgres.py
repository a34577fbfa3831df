"""
The store on PostgreSQL, shared by the nodes of a cluster: ``SQLStore``'s
logic over psycopg2 through ``adbapi`` (it reconnects a connection found
dead), the schema of ``edgegw_tx.store.postgres_schema``, and what a shared
store has beyond a single node's: the snapshot of the configuration a node
keeps (``save_snapshot``) and, when the database cannot be reached at start,
an offline mode serving reads from that snapshot until it answers again.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from edgegw_tx.store import sqlite_schema
from edgegw_tx.store.errors import StoreRefused, StoreUnavailable
from edgegw_tx.store.interface import IClusterStore
from edgegw_tx.store.migrations import Migration
from edgegw_tx.store.postgres_schema import MIGRATIONS, migrate
from edgegw_tx.store.sql import Dialect, SQLStore, Tx, iso, make_pool
from edgegw_tx.store.sqlite import SQLiteStore

_P = ParamSpec("_P")
_T = TypeVar("_T")

#: The tables a snapshot holds: the configuration a node serves.
SNAPSHOT_TABLES = (
    "endpoints",
    "endpoint_routes",
    "services",
    "bindings",
    "domains",
    "collections",
    "api_keys",
    "consumers",
    "consumer_keys",
    "versions",
    "worker_uids",
)

#: libpq's options on every connection: give up connecting after 5 s, and find a
#: connection whose server vanished without a word (a cut network) in about 10 s
#: instead of TCP's minutes, so no pool thread hangs on it.
CONNECTION_OPTIONS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10000,
}

#: Words of the server's refusal (it answered: waiting will not help).
_REFUSALS = (
    "password authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
    "authentication failed",
    "too many connections",
)


class PostgresDialect(Dialect):
    """psycopg2: ``%s`` placeholders, ``seq`` for versions, ``ON CONFLICT``, row locks, advisory locks."""

    name = "postgresql"
    integrity_errors = (psycopg2.IntegrityError,)
    unavailable_errors = (psycopg2.OperationalError, psycopg2.InterfaceError)
    version_order = "seq"
    now_epoch = "extract(epoch FROM clock_timestamp())::double precision"
    for_update = " FOR UPDATE"

    def convert(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def insert_ignore(self, table: str, columns: Sequence[str], values: Sequence[str] = ()) -> str:
        return "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING".format(
            table, ", ".join(columns), ", ".join(values or ["?"] * len(columns))
        )

    def lock(self, tx: Tx, key: int) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (key,))

    def blob(self, data: bytes) -> Any:
        return psycopg2.Binary(data)


def redact(uri: str) -> str:
    """The URI without its password (and query), for messages: ``postgresql://user@host:port/db``."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def first_line(error: BaseException) -> str:
    """The first line of an error's text (libpq's run over several)."""
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def refused(error: BaseException) -> bool:
    """Whether a connection error is the server's refusal (login, database, rights), not its absence."""
    text = str(error)
    return any(words in text for words in _REFUSALS)


@implementer(IClusterStore)
class PostgresStore(SQLStore):
    """
    The configuration of a cluster in one PostgreSQL database.

    :ivar online: False while the database could not be reached since start
        and reads come from the snapshot.
    """

    shared = True
    log = Logger()

    def __init__(
        self,
        uri: str,
        reactor: Any = None,
        snapshot_path: str | None = None,
        threadpool: ThreadPool | None = None,
        migrations: Sequence[Migration] = MIGRATIONS,
        retry_every: float = 3.0,
        connections: int = 4,
    ) -> None:
        """
        :param uri: a libpq URI, ``postgresql://user:password@host:port/database``.
        :param snapshot_path: the node's last-known configuration (a SQLite
            file ``save_snapshot`` writes), served when the database cannot be
            reached at start; None: no offline start.
        :param threadpool: replaces adbapi's own (tests pass a synchronous one).
        :param retry_every: seconds between tries to reach the database, offline.
        """
        if reactor is None:
            from twisted.internet import reactor
        self.uri = uri
        self.where = redact(uri)
        self.snapshot_path = snapshot_path
        self.online = True
        self._migrations = migrations
        self._threadpool = threadpool
        self._retry_every = retry_every
        self._snapshot: SQLiteStore | None = None
        self._snapshot_revision: int | None = None
        self._retry: Any = None
        self._callbacks: list[Callable[[], object]] = []
        self._closed = False
        pool = make_pool(
            threadpool,
            "psycopg2",
            uri,
            cp_min=1,
            cp_max=connections,
            cp_reconnect=True,
            cp_noisy=False,
            cp_reactor=reactor,
            **CONNECTION_OPTIONS,
        )
        super().__init__(pool, PostgresDialect(), reactor)

    # life

    def open(self) -> Deferred[None]:
        """
        Bring the database up to this code's schema (the first node to start
        does; the others wait on its lock, then find it done). Unreachable:
        with a snapshot, go offline (reads from it, writes ``StoreUnavailable``)
        and keep trying; without one, ``StoreRefused``.
        """
        d = self._migrate()

        def unreachable(failure: Failure) -> Deferred[None]:
            failure.trap(StoreUnavailable)
            assert isinstance(failure.value, StoreUnavailable)
            reason = failure.value.reason
            if self.snapshot_path is None or not os.path.exists(self.snapshot_path):
                raise StoreRefused(f"cannot reach the store {self.where}: {reason}")
            return self._go_offline(reason)

        d.addErrback(unreachable)
        return d

    def _migrate(self) -> Deferred[None]:
        now = iso(self._reactor.seconds())

        def run(cursor: Any) -> None:
            migrate(cursor, self.where, now, self._migrations)

        try:
            d: Deferred[None] = self._pool.runInteraction(run)
        except Exception as e:
            return fail(e)

        def translate(failure: Failure) -> Failure:
            error = failure.value
            if isinstance(error, psycopg2.OperationalError) and refused(error):
                return Failure(StoreRefused(f"the store {self.where} refused the connection: {first_line(error)}"))
            return self._translate(failure)

        d.addErrback(translate)
        return d

    def close(self) -> None:
        self._closed = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None
        self._pool.close()

    # offline

    def _go_offline(self, reason: str) -> Deferred[None]:
        assert self.snapshot_path is not None
        snapshot = SQLiteStore(self.snapshot_path, reactor=self._reactor, threadpool=self._threadpool)
        d = snapshot.open()
        d.addCallback(lambda _: snapshot._read(_revision))

        def offline(revision: int) -> None:
            self._snapshot = snapshot
            self._snapshot_revision = revision
            self.online = False
            self.log.warn(
                "the store {where} is unreachable ({reason}): serving the last-known configuration"
                " of revision {revision} from {path} until it answers",
                where=self.where,
                reason=reason,
                revision=revision,
                path=self.snapshot_path,
            )
            self._schedule()

        def unusable(failure: Failure) -> None:
            snapshot.close()
            raise StoreRefused(
                f"cannot reach the store {self.where} ({reason}), and its last-known configuration"
                f" {self.snapshot_path} cannot be read: {first_line(failure.value or Exception())}"
            )

        d.addCallbacks(offline, unusable)
        return d

    def _schedule(self) -> None:
        if not self._closed:
            self._retry = self._reactor.callLater(self._retry_every, self._try_online)

    def _try_online(self) -> None:
        self._retry = None
        d = self._migrate()

        def back(_: None) -> None:
            if self._closed:
                return
            snapshot, self._snapshot = self._snapshot, None
            self.online = True
            self._snapshot_revision = None
            if snapshot is not None:
                snapshot.close()
            self.log.info("the store {where} answers again: serving its configuration", where=self.where)
            for callback in list(self._callbacks):
                try:
                    callback()
                except Exception:
                    self.log.failure("a callback of the store's return failed")

        def still_down(failure: Failure) -> None:
            if not failure.check(StoreUnavailable):
                self.log.error(
                    "the store {where} answers but cannot be used: {error}", where=self.where, error=failure.value
                )
            self._schedule()

        d.addCallbacks(back, still_down)

    def when_online(self, callback: Callable[[], object]) -> None:
        self._callbacks.append(callback)

    def snapshot_revision(self) -> int | None:
        return None if self.online else self._snapshot_revision

    def _run(
        self, write: bool, work: Callable[Concatenate[Tx, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> Deferred[_T]:
        """Online: the database's. Offline: reads from the snapshot, writes refused."""
        if self.online:
            return super()._run(write, work, *args, **kwargs)
        if write or self._snapshot is None:
            return fail(
                StoreUnavailable(
                    self.where,
                    "the database cannot be reached; this node serves its last-known configuration"
                    f" of revision {self._snapshot_revision}",
                )
            )
        return self._snapshot._run(False, work, *args, **kwargs)

    # the snapshot

    def save_snapshot(self, path: str) -> Deferred[int]:
        """
        Read the configuration in one REPEATABLE READ transaction, then write
        it (in a thread) to a new SQLite file of the SQLite schema without its
        triggers, the revision as its one change row, mode 0600, renamed over
        ``path``.
        """
        if not self.online:
            return fail(StoreUnavailable(self.where, "offline: the snapshot is what this node serves"))
        now = iso(self._reactor.seconds())
        d = self._read(_read_configuration)

        def write(data: tuple[int, dict[str, tuple[list[str], list[Any]]]]) -> Deferred[int]:
            done: Deferred[int] = deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), _write_snapshot, path, data, now
            )
            return done

        return d.addCallback(write)


def _revision(tx: Tx) -> int:
    revision: int = tx.value("SELECT COALESCE(max(revision), 0) FROM changes")
    return revision


def _read_configuration(tx: Tx) -> tuple[int, dict[str, tuple[list[str], list[Any]]]]:
    """The revision and every configuration table's rows, as one consistent read."""
    tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    revision = _revision(tx)
    tables: dict[str, tuple[list[str], list[Any]]] = {}
    for table in SNAPSHOT_TABLES:
        order = " ORDER BY seq" if table == "versions" else ""
        tx.execute(f"SELECT * FROM {table}{order}")
        columns = [c[0] for c in tx.cursor.description]
        keep = [i for i, c in enumerate(columns) if c != "seq"]
        rows = [tuple(row[i] for i in keep) for row in tx.fetchall()]
        tables[table] = ([columns[i] for i in keep], rows)
    return revision, tables


def _write_snapshot(path: str, data: tuple[int, dict[str, tuple[list[str], list[Any]]]], now: str) -> int:
    """Blocking: write the snapshot file (a thread's work)."""
    revision, tables = data
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # A name of its own (mode 0600), so two saves at once never write one file.
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        connection = sqlite3.connect(temporary)
        try:
            cursor = connection.cursor()
            sqlite_schema.migrate(cursor, path, now)
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            for (name,) in cursor.fetchall():
                cursor.execute(f"DROP TRIGGER {name}")
            for table in SNAPSHOT_TABLES:
                columns, rows = tables[table]
                cursor.executemany(
                    "INSERT INTO {} ({}) VALUES ({})".format(table, ", ".join(columns), ", ".join("?" for _ in columns)),
                    rows,
                )
            if revision:
                cursor.execute(
                    "INSERT INTO changes (revision, kind, record_id, at) VALUES (?, 'snapshot', '', ?)", (revision, now)
                )
            connection.commit()
        finally:
            connection.close()
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return revision
