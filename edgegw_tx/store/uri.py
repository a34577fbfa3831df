"""
Which store a gateway uses (``twistd edgegw --store URI``): ``sqlite:PATH``
(the default, a file in the data directory) or a libpq URI
``postgresql://user:password@host:port/database`` (``postgres://`` too).

``parse_store`` reads the option, ``check_store`` is the blocking look at the
store ``twistd`` makes before the reactor runs (a store that cannot be used
stops it with one line), and ``open_store`` makes the store object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edgegw_tx.store.errors import StoreRefused
from edgegw_tx.store.interface import IStore
from edgegw_tx.store.sqlite import FILE_NAME

#: The schemes of a PostgreSQL store.
POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class StoreSpec:
    """
    A parsed ``--store``: ``kind`` ``sqlite`` (``path``) or ``postgresql``
    (``uri``); ``where`` names it in messages (no password).
    """

    kind: str
    path: str = ""
    uri: str = ""
    where: str = ""

    @property
    def shared(self) -> bool:
        """Whether several gateways may use it."""
        return self.kind == "postgresql"


def default_store(data_dir: str) -> StoreSpec:
    """The store of a gateway given no ``--store``: its SQLite file in the data directory."""
    path = os.path.abspath(os.path.join(data_dir, FILE_NAME))
    return StoreSpec("sqlite", path=path, where=path)


def parse_store(text: str | None, data_dir: str) -> StoreSpec:
    """
    ``sqlite:PATH`` (relative to the current directory), a ``postgresql://``
    or ``postgres://`` URI, or nothing (the default). ValueError naming the
    problem otherwise.
    """
    if text is None or not text.strip():
        return default_store(data_dir)
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    if not colon:
        raise ValueError(
            f"--store {text!r} is neither sqlite:PATH nor a postgresql://user:password@host:port/database URI"
        )
    scheme = scheme.lower()
    if scheme == "sqlite":
        if rest.startswith("//"):
            rest = rest[2:]
        if not rest:
            raise ValueError("--store sqlite: needs a file path, e.g. sqlite:./var/edgegw.sqlite3")
        path = os.path.abspath(rest)
        if os.path.isdir(path):
            raise ValueError(f"--store {text!r} is a directory; name the SQLite file in it")
        return StoreSpec("sqlite", path=path, where=path)
    if scheme in POSTGRES_SCHEMES:
        from edgegw_tx.store.postgres import redact

        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 (a bad port raises here)
        except ValueError as e:
            raise ValueError(f"--store {text!r} is not a valid PostgreSQL URI: {e}") from None
        if not parts.hostname:
            raise ValueError(f"--store {text!r} names no host: postgresql://user:password@host:port/database")
        if not parts.path.lstrip("/"):
            raise ValueError(f"--store {text!r} names no database: postgresql://user:password@host:port/database")
        return StoreSpec("postgresql", uri=text, where=redact(text))
    raise ValueError(f"--store {text!r}: unknown kind of store {scheme!r} (sqlite:PATH or postgresql://...)")


def open_store(spec: StoreSpec, reactor: Any = None, snapshot_path: str | None = None) -> IStore:
    """The store of ``spec``, not yet opened (the caller's ``open()`` migrates it)."""
    if spec.kind == "sqlite":
        from edgegw_tx.store.sqlite import SQLiteStore

        return SQLiteStore(spec.path, reactor=reactor)
    from edgegw_tx.store.postgres import PostgresStore

    return PostgresStore(spec.uri, reactor=reactor, snapshot_path=snapshot_path)


def check_store(spec: StoreSpec, snapshot_path: str | None = None, current: bool = False) -> str | None:
    """
    Blocking (``twistd``'s ``makeService``, before the reactor runs): refuse
    with ``StoreRefused`` (one line) a store this gateway cannot use. SQLite:
    a file a newer edgegw wrote, or no database. PostgreSQL: a refused login,
    an unknown database, a schema a newer edgegw wrote; an unreachable server
    too, unless the node has its last-known configuration (``snapshot_path``):
    then a one-line notice saying it starts from it. None when all is well.
    ``current``: also refuse a PostgreSQL store that lacks some of this code's
    migrations (a tool that must not migrate a cluster's schema under its
    running nodes, nor give an empty database a schema by mistake).
    """
    if spec.kind == "sqlite":
        from edgegw_tx.store.sqlite_schema import check_file

        check_file(spec.path)
        return None
    import psycopg2

    from edgegw_tx.store.migrations import plan
    from edgegw_tx.store.postgres import CONNECTION_OPTIONS, first_line, refused
    from edgegw_tx.store.postgres_schema import MIGRATIONS, applied

    try:
        connection = psycopg2.connect(spec.uri, **CONNECTION_OPTIONS)
    except psycopg2.Error as e:
        if refused(e):
            raise StoreRefused(f"the store {spec.where} refused the connection: {first_line(e)}") from None
        if snapshot_path is not None and os.path.exists(snapshot_path):
            return (
                f"the store {spec.where} is unreachable ({first_line(e)}); starting from the last-known"
                f" configuration in {snapshot_path}"
            )
        raise StoreRefused(f"cannot reach the store {spec.where}: {first_line(e)}") from None
    try:
        with connection.cursor() as cursor:
            done = applied(cursor)
    except psycopg2.Error as e:
        raise StoreRefused(f"cannot read the store {spec.where}: {first_line(e)}") from None
    finally:
        connection.close()
    todo = plan(spec.where, done, MIGRATIONS)
    if current and todo:
        if not done:
            raise StoreRefused(f"the store {spec.where} has no edgegw schema: start a node on it first")
        raise StoreRefused(
            f"the store {spec.where} is at schema version {max(done)}, older than this edgegw's"
            f" {MIGRATIONS[-1].version}: start a node of this edgegw on it first (it migrates the store)"
        )
    return None
