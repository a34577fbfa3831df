"""
The PostgreSQL connector: an ``adbapi`` pool over psycopg2.

* Pool: ``cp_min=1``, ``cp_max=pool_size`` (default 10) threads, one connection
  each, opened on first use; ``cp_reconnect=True``.
* Each connection is opened with ``connect_timeout`` = the call timeout
  (rounded up, at least 2 s as libpq wants), ``application_name=edgegw`` and
  ``statement_timeout`` = the call timeout + 250 ms, so a statement the broker
  gave up on is cancelled by the server instead of holding a pool thread.
* ``?`` placeholders are translated to ``%s``
  (``edgegw_tx.services.sql.translate_placeholders``); a parameter count that
  does not match is a ``DatabaseError`` before anything is sent.  Parameters
  are always bound by psycopg2, never pasted into the text: lists and objects
  as ``Json``, everything else as itself.
* A statement that fails → ``DatabaseError`` with PostgreSQL's message (its
  primary message, then its DETAIL when there is one); adbapi rolls the
  transaction back, so the connection serves the next call.  A connection
  that cannot be made or was lost, and a statement cancelled by the timeout →
  ``ServiceUnavailable``.  After a lost connection every connection of the
  pool is replaced before its next use (PostgreSQL restarted: only the call
  that noticed fails).
* ``execute`` commits; ``last_insert_id`` is always null — use
  ``query`` with ``INSERT ... RETURNING id``, which commits as well.
* Note: when a call times out the statement may still have been committed
  (the server finished it just as the broker gave up).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import psycopg2
import psycopg2.errorcodes
import psycopg2.extras
from twisted.enterprise import adbapi

from .dbpool import DatabaseConnector
from .errors import (
    DATABASE_ERROR,
    SERVICE_UNAVAILABLE,
    ServiceError,
    one_line,
)
from .sql import check_count, translate_placeholders

__all__ = ["PostgresConnector", "connect_kwargs", "describe_error"]

STATEMENT_GRACE_MS = 250


def connect_kwargs(config: dict[str, Any], call_timeout: float) -> dict[str, Any]:
    """The keyword arguments of ``psycopg2.connect`` for a normalised config."""
    kwargs: dict[str, Any] = {
        "host": config["host"],
        "port": config["port"],
        "dbname": config["database"],
        "user": config["username"],
        "sslmode": config["ssl_mode"],
        "connect_timeout": max(2, math.ceil(call_timeout)),
        "application_name": "edgegw",
        # a little after the broker gives up, so the caller always gets the
        # broker's message and the server frees the connection right after
        "options": f"-c statement_timeout={int(call_timeout * 1000) + STATEMENT_GRACE_MS}",
    }
    if config.get("password"):
        kwargs["password"] = config["password"]
    return kwargs


def _is_connection_error(error: psycopg2.Error) -> bool:
    code = error.pgcode
    if code is None:
        # raised by libpq itself: no server, connection lost, SSL failure
        return isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError))
    return code.startswith("08") or code in (
        psycopg2.errorcodes.QUERY_CANCELED,
        psycopg2.errorcodes.ADMIN_SHUTDOWN,
        psycopg2.errorcodes.CRASH_SHUTDOWN,
        psycopg2.errorcodes.CANNOT_CONNECT_NOW,
    )


def describe_error(error: BaseException) -> str:
    """PostgreSQL's message for ``error``: primary message, then DETAIL."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if not primary:
        return one_line(str(error)) or type(error).__name__
    detail = getattr(diag, "message_detail", None)
    return f"{primary} (DETAIL: {detail})" if detail else primary


def _range_text(value: psycopg2.extras.Range[Any]) -> str:
    if value.isempty:
        return "empty"
    lower = "" if value.lower is None else str(value.lower)
    upper = "" if value.upper is None else str(value.upper)
    return (
        ("[" if value.lower_inc else "(")
        + f"{lower},{upper}"
        + ("]" if value.upper_inc else ")")
    )


class _Connection(adbapi.Connection):
    """
    adbapi's connection wrapper, quiet about a connection that is already
    closed: the rollback after a lost connection just forgets it (the next
    call opens a new one) instead of logging two "Rollback failed" tracebacks.
    """

    def rollback(self) -> None:
        raw = self._connection
        if raw is not None and raw.closed:
            self._pool.disconnect(raw)
            return
        adbapi.Connection.rollback(self)


class _PostgresPool(adbapi.ConnectionPool):
    """Connection failures become ServiceUnavailable with libpq's message."""

    connectionFactory = _Connection

    def connect(self) -> Any:
        try:
            return adbapi.ConnectionPool.connect(self)
        except psycopg2.Error as e:
            raise ServiceError(
                SERVICE_UNAVAILABLE, f"cannot connect to postgres: {one_line(str(e))}"
            ) from None


class PostgresConnector(DatabaseConnector):
    """``db`` calls on a PostgreSQL database."""

    service_type = "postgres"

    def __init__(self, config: dict[str, Any], **kwargs: Any):
        super().__init__(config, **kwargs)
        self._generation = 0
        self._thread_generation: dict[int, int] = {}
        self._lock = threading.Lock()

    def _make_pool(self) -> adbapi.ConnectionPool:
        # adbapi.ConnectionPool's constructor is not annotated.
        return _PostgresPool(  # type: ignore[no-untyped-call]
            "psycopg2",
            cp_min=1,
            cp_max=self.config["pool_size"],
            cp_reconnect=True,
            cp_reactor=self._reactor,
            **connect_kwargs(self.config, self.call_timeout),
        )

    def _prepare(self, sql: str, params: list[Any]) -> tuple[str, tuple[Any, ...]]:
        text, count = translate_placeholders(sql)
        check_count(count, params)
        return text, tuple(
            psycopg2.extras.Json(p) if isinstance(p, (list, dict)) else p
            for p in params
        )

    def _before(self, conn: adbapi.Connection) -> None:
        """Replace this thread's connection if it is closed or predates a loss."""
        tid = threading.get_ident()
        with self._lock:
            generation = self._generation
            stale = self._thread_generation.get(tid, generation) != generation
            self._thread_generation[tid] = generation
        if stale or getattr(conn, "closed", False):
            conn.reconnect()

    def _classify(self, error: BaseException) -> ServiceError | None:
        if not isinstance(error, psycopg2.Error):
            return None
        message = describe_error(error)
        if _is_connection_error(error):
            if error.pgcode == psycopg2.errorcodes.QUERY_CANCELED:
                message = f"the statement was cancelled: {message}"
            else:
                message = f"postgres connection lost: {message}"
                with self._lock:
                    self._generation += 1
            return ServiceError(SERVICE_UNAVAILABLE, message)
        return ServiceError(DATABASE_ERROR, message)

    def _fallback(self, value: Any) -> Any:
        if isinstance(value, psycopg2.extras.Range):
            return _range_text(value)
        return str(value)
