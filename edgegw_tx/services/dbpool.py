"""
What the SQLite and PostgreSQL connectors share: an ``adbapi`` pool created on
first use, the ``query`` and ``execute`` actions, a ping, a close that never
blocks the reactor.

Every statement runs in one of the pool's threads through
``runWithConnection``: adbapi commits when the function returns and rolls back
when it raises, so a failed statement leaves its connection clean for the next
call.  Rows are converted to JSON values in that thread too
(``edgegw_tx.services.sql.convert_rows``).

A call's Deferred can be cancelled (the broker does so when the call times
out): a call still waiting for a thread never runs, and a subclass may
interrupt one that is running (SQLite does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from .args import Args
from .errors import DATABASE_ERROR, ServiceError, bad_request
from .sql import PlaceholderError, convert_rows

__all__ = ["DatabaseConnector"]


class _CallState:
    """Shared by a call's thread and its canceller."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.raw: Any = None
        self.cancelled = False


class DatabaseConnector:
    """
    Base of the SQL connectors.

    Subclasses set ``service_type`` and implement ``_make_pool``,
    ``_prepare`` and ``_classify``; they may override ``_interrupt``,
    ``_before`` and ``_last_insert_id``.
    """

    kind = "db"
    service_type = ""
    actions = ("execute", "query")

    def __init__(self, config: dict[str, Any], *, name: str, call_timeout: float, reactor: Any):
        self.config = config
        self.name = name
        self.call_timeout = call_timeout
        self._reactor = reactor
        self._pool: adbapi.ConnectionPool | None = None
        self._closed = False

    # -- the connector interface --------------------------------------------

    def call(self, action: str, args: object) -> Deferred[Any]:
        """Run ``action`` (``query`` or ``execute``) with ``args``."""
        if action not in self.actions:
            raise bad_request(f"unknown db action {action!r} (expected execute or query)")
        a = Args(f"db {action}", args)
        sql = a.string("sql", nonempty=True)
        params = a.list("params", [])
        try:
            statement, bound = self._prepare(sql, params)
        except PlaceholderError as e:
            raise ServiceError(DATABASE_ERROR, str(e)) from None
        work = self._query if action == "query" else self._execute
        return self._run(work, statement, bound)

    def ping(self) -> Deferred[float]:
        """``SELECT 1``; fires with its duration in milliseconds (connecting excluded)."""
        return self._run(self._ping)

    def close(self) -> Deferred[None]:
        """
        Close every connection and stop the pool's threads.  Joining the
        threads waits for a statement in progress, so it happens in the
        reactor's thread pool, never in the reactor thread.
        """
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return succeed(None)
        reactor = self._reactor
        for attr in ("shutdownID", "startID"):
            trigger = getattr(pool, attr, None)
            if trigger is not None:
                reactor.removeSystemEventTrigger(trigger)
                setattr(pool, attr, None)
        return deferToThreadPool(reactor, reactor.getThreadPool(), pool.finalClose)

    # -- for subclasses -----------------------------------------------------

    def _make_pool(self) -> adbapi.ConnectionPool:
        raise NotImplementedError

    def _prepare(self, sql: str, params: list[Any]) -> tuple[str, tuple[Any, ...]]:
        """The statement and parameters the driver gets (in the reactor thread)."""
        raise NotImplementedError

    def _classify(self, error: BaseException) -> ServiceError | None:
        """The ServiceError for a driver exception, or None (a bug: Internal)."""
        raise NotImplementedError

    def _interrupt(self, raw: Any) -> None:
        """Stop the statement running on driver connection ``raw`` (reactor thread)."""

    def _before(self, conn: adbapi.Connection) -> None:
        """Called in the pool thread before each call with the adbapi connection."""

    def _last_insert_id(self, cursor: Any, sql: str) -> int | None:
        return None

    def _fallback(self, value: Any) -> Any:
        return str(value)

    # -- internals ----------------------------------------------------------

    def _get_pool(self) -> adbapi.ConnectionPool:
        if self._closed:
            raise ServiceError(
                "ServiceUnavailable", f"the {self.service_type} service is closed"
            )
        if self._pool is None:
            self._pool = self._make_pool()
        return self._pool

    def _run(self, func: Callable[..., Any], *args: Any) -> Deferred[Any]:
        pool = self._get_pool()
        state = _CallState()

        def work(conn: adbapi.Connection) -> Any:
            if state.cancelled:
                raise CancelledError()
            self._before(conn)
            cursor = conn.cursor()
            try:
                with state.lock:
                    state.raw = getattr(cursor, "connection", None)
                return func(cursor, *args)
            finally:
                with state.lock:
                    state.raw = None
                cursor.close()

        def cancel(outer: Deferred[Any]) -> None:
            state.cancelled = True
            with state.lock:
                if state.raw is not None:
                    self._interrupt(state.raw)

        outer: Deferred[Any] = Deferred(cancel)

        def relay(result: Any) -> None:
            if not outer.called:
                outer.callback(result)

        inner = pool.runWithConnection(work)
        inner.addErrback(self._translate)
        inner.addBoth(relay)
        return outer

    def _translate(self, failure: Failure) -> Failure:
        if failure.check(ServiceError, CancelledError):
            return failure
        value = failure.value
        assert value is not None, "a Failure always holds its exception"
        error = self._classify(value)
        if error is None:
            return failure
        return Failure(error)

    def _query(self, cursor: Any, sql: str, params: tuple[Any, ...]) -> dict[str, Any]:
        cursor.execute(sql, params)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return convert_rows(description, rows, self._fallback)

    def _execute(self, cursor: Any, sql: str, params: tuple[Any, ...]) -> dict[str, Any]:
        cursor.execute(sql, params)
        count = cursor.rowcount
        return {
            "rows_affected": count if count is not None and count >= 0 else 0,
            "last_insert_id": self._last_insert_id(cursor, sql),
        }

    def _ping(self, cursor: Any) -> float:
        start = time.perf_counter()
        cursor.execute("SELECT 1")
        cursor.fetchall()
        return (time.perf_counter() - start) * 1000.0
