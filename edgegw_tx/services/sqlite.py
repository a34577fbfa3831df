"""
The SQLite connector: a database file under ``<data_dir>/services/``.

One ``adbapi`` pool with exactly one connection (``cp_min=cp_max=1``) and so one
thread: calls to a service run one after the other, in order, which is what
SQLite wants from a single writer, and the reactor never waits on the disk.
The connection is opened on the first call, in that thread, with

* ``journal_mode=WAL`` (readers elsewhere do not block on our writes),
* ``busy_timeout`` = the call timeout (another process holding the file),
* ``foreign_keys=ON`` (declared foreign keys are enforced).

``create_if_missing`` false and no file → ``ServiceUnavailable`` naming the
path; true → the file and its folders are created.  The resolved path must
stay inside ``<data_dir>/services/`` (a symlink leading out is refused).

``?`` placeholders are SQLite's own.  ``last_insert_id`` is the cursor's
``lastrowid`` after an INSERT or REPLACE that changed rows, null otherwise.
A call that times out is interrupted (``sqlite3.Connection.interrupt``), so a
runaway statement does not hold the service's only connection.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from twisted.enterprise import adbapi

from .dbpool import DatabaseConnector
from .errors import DATABASE_ERROR, SERVICE_UNAVAILABLE, ServiceError, bad_request
from .sql import sqlite_params, statement_inserts

__all__ = ["SQLiteConnector"]


def _inside(path: str, root: str) -> bool:
    root = os.path.realpath(root)
    return os.path.realpath(path).startswith(root + os.sep)


class _SQLitePool(adbapi.ConnectionPool):
    """An adbapi pool that checks the file before opening it (in its thread)."""

    threadID: Callable[[], int]  # set by adbapi.ConnectionPool.__init__

    def __init__(self, connector: SQLiteConnector, path: str, mode: str, reactor: Any):
        self._connector = connector
        self._file = path
        uri = "file:" + quote(path) + "?mode=" + mode
        adbapi.ConnectionPool.__init__(
            self,
            "sqlite3",
            uri,
            uri=True,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=connector._opened,
            cp_reactor=reactor,
        )

    def connect(self) -> Any:
        if self.connections.get(self.threadID()) is None:
            self._connector._check_file(self._file)
        try:
            return adbapi.ConnectionPool.connect(self)
        except sqlite3.Error as e:
            raise ServiceError(
                SERVICE_UNAVAILABLE,
                f"cannot open sqlite database {self._connector.config['path']!r}: {e}",
            ) from None


class SQLiteConnector(DatabaseConnector):
    """``db`` calls on one SQLite file."""

    service_type = "sqlite"

    def __init__(self, config: dict[str, Any], *, data_dir: str, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.root = os.path.join(os.path.abspath(data_dir), "services")
        self.path = os.path.join(self.root, config["path"])

    def _make_pool(self) -> adbapi.ConnectionPool:
        mode = "rwc" if self.config["create_if_missing"] else "rw"
        return _SQLitePool(self, self.path, mode, self._reactor)

    def _check_file(self, path: str) -> None:
        """In the pool thread, before connecting."""
        relative = self.config["path"]
        if self.config["create_if_missing"]:
            os.makedirs(self.root, exist_ok=True)
        if not _inside(path, self.root):
            raise ServiceError(
                SERVICE_UNAVAILABLE,
                f"sqlite database {relative!r} resolves outside the services folder",
            )
        if self.config["create_if_missing"]:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if not _inside(path, self.root):
                raise ServiceError(
                    SERVICE_UNAVAILABLE,
                    f"sqlite database {relative!r} resolves outside the services folder",
                )
        elif not os.path.isfile(path):
            raise ServiceError(
                SERVICE_UNAVAILABLE,
                f"sqlite database {relative!r} does not exist"
                " (create_if_missing is false)",
            )

    def _opened(self, connection: sqlite3.Connection) -> None:
        timeout_ms = max(1, int(self.call_timeout * 1000))
        connection.execute("PRAGMA journal_mode=WAL").fetchall()
        connection.execute(f"PRAGMA busy_timeout={timeout_ms}").fetchall()
        connection.execute("PRAGMA foreign_keys=ON").fetchall()

    def _prepare(self, sql: str, params: list[Any]) -> tuple[str, tuple[Any, ...]]:
        return sql, sqlite_params(params)

    def _interrupt(self, raw: Any) -> None:
        raw.interrupt()

    def _last_insert_id(self, cursor: Any, sql: str) -> int | None:
        if cursor.rowcount > 0 and statement_inserts(sql):
            rowid: int | None = cursor.lastrowid
            return rowid
        return None

    def _classify(self, error: BaseException) -> ServiceError | None:
        if isinstance(error, OverflowError):
            return bad_request("a parameter is outside SQLite's 64-bit integer range")
        if isinstance(error, (sqlite3.Error, sqlite3.Warning)):
            return ServiceError(DATABASE_ERROR, str(error))
        return None
