"""
A PostgreSQL database of its own for a test: the tests that need the real
server (127.0.0.1:5432, user ``postgres``, trust authentication) create one
with a random name and drop it when the test ends, so two trial processes
never share a database.

These calls block (psycopg2 directly): they run in ``setUp`` and cleanups,
before and after the reactor does the test's work.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import psycopg2
from psycopg2 import sql

#: The server the tests use, and the database to connect to for creating others.
HOST = os.environ.get("EDGEGW_TEST_PGHOST", "127.0.0.1")
PORT = int(os.environ.get("EDGEGW_TEST_PGPORT", "5432"))
USER = os.environ.get("EDGEGW_TEST_PGUSER", "postgres")
ADMIN_DATABASE = "postgres"

#: Every test database's name starts with this (a leftover is easy to spot and drop).
PREFIX = "edgegw_t_"


def _admin_connection():
    """An autocommit connection to the server's ``postgres`` database (CREATE/DROP DATABASE need one)."""
    connection = psycopg2.connect(host=HOST, port=PORT, user=USER, dbname=ADMIN_DATABASE, connect_timeout=5)
    connection.autocommit = True
    return connection


def uri_for(name):
    """The libpq URI of database ``name`` on the test server."""
    return f"postgresql://{USER}@{HOST}:{PORT}/{name}"


def database_name(uri):
    """The database a ``postgresql://`` URI names."""
    return urlsplit(uri).path.lstrip("/")


def create_database():
    """Create an empty database with a fresh random name; its URI."""
    name = PREFIX + os.urandom(8).hex()
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        connection.close()
    return uri_for(name)


def terminate_connections(uri):
    """
    End every server process connected to the database of ``uri`` (as an
    operator's ``pg_terminate_backend`` would): its clients see their
    connections cut. Fires nothing; returns how many were ended.
    """
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database_name(uri),),
            )
            (count,) = cursor.fetchone()
    finally:
        connection.close()
    return count


def drop_database(uri):
    """Drop the database of ``uri`` (ending its connections first); nothing if it is gone."""
    name = database_name(uri)
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    finally:
        connection.close()


def fresh_database(test_case):
    """
    A new empty database for ``test_case``, dropped when the test ends (after
    the test's own cleanups, which run first because this one is added first);
    its URI, ``postgresql://postgres@127.0.0.1:5432/edgegw_t_<hex>``.
    """
    uri = create_database()
    test_case.addCleanup(drop_database, uri)
    return uri


def postgres_store(test_case, uri=None, reactor=None, **options):
    """
    A ``PostgresStore`` on ``uri`` (a fresh database by default), opened,
    running synchronously on a ``SynchronousReactor`` like ``make_store``'s
    SQLite stores (every call has fired when it returns); closed at the end of
    the test. ``options`` go to ``PostgresStore``.
    """
    from edgegw_tx.store.postgres import PostgresStore
    from tests.support.fakes import SynchronousReactor

    uri = uri or fresh_database(test_case)
    reactor = reactor or SynchronousReactor()
    store = PostgresStore(uri, reactor=reactor, threadpool=reactor.getThreadPool(), **options)
    test_case.addCleanup(store.close)
    test_case.successResultOf(store.open())
    return store
