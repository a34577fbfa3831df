"""
The gateway's own configuration store on SQLite, through ``adbapi``: the
``IStore`` of a single gateway, in one file.

The store's logic is ``SQLStore``'s (edgegw_tx/store/sql.py); this module is
what is SQLite's own: one connection on one thread (so statements run in the
order they were issued and the reactor never waits on the disk), the
write-ahead log, rowids for the order of versions, and the schema of
``edgegw_tx.store.sqlite_schema`` run by ``open``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from edgegw_tx.store.interface import IStore
from edgegw_tx.store.migrations import Migration
from edgegw_tx.store.sql import Dialect, SQLStore, Tx, iso, make_pool
from edgegw_tx.store.sqlite_schema import MIGRATIONS, migrate

__all__ = ["FILE_NAME", "SCHEMA_VERSION", "SQLiteDialect", "SQLiteStore"]

#: The schema this code writes: the number of its last migration.
SCHEMA_VERSION = MIGRATIONS[-1].version

#: The store's file in a gateway's data directory.
FILE_NAME = "edgegw.sqlite3"


class SQLiteDialect(Dialect):
    """sqlite3: ``?`` placeholders, rowids, ``INSERT OR IGNORE``, a file that is always there."""

    name = "sqlite"
    integrity_errors = (sqlite3.IntegrityError,)
    unavailable_errors = ()


def _connect(connection: sqlite3.Connection) -> None:
    """Each connection: write-ahead log (readers do not block the writer), foreign keys enforced."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA foreign_keys=ON")


@implementer(IStore)
class SQLiteStore(SQLStore):
    """Endpoints, services and their bindings, domains, collections and API keys in one SQLite file."""

    shared = False

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
        self.where = path
        self._migrations = migrations
        pool = make_pool(
            threadpool,
            "sqlite3",
            path,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=_connect,
            cp_reactor=reactor,
        )
        super().__init__(pool, SQLiteDialect(), reactor)

    def open(self) -> Deferred[None]:
        """
        Create the file or bring it up to date (``sqlite_schema.migrate``: all
        pending migrations in one transaction); fires when the store is usable.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        d: Deferred[None] = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), os.makedirs, directory, exist_ok=True
        )
        d.addCallback(lambda _: self._migrate())
        return d

    def _migrate(self) -> Deferred[None]:
        def run(tx: Tx) -> None:
            migrate(tx.cursor, self.path, iso(self._reactor.seconds()), self._migrations)

        d: Deferred[None] = self._pool.runInteraction(lambda cursor: run(Tx(cursor, self._dialect)))
        return d

    def close(self) -> None:
        self._pool.close()
