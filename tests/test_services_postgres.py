"""
Integration tests of the PostgreSQL connector through
L{ServiceRegistry.call_handler}, against the machine's real server
(127.0.0.1:5432, database C{test}, user C{postgres}, trust auth).  Each test
works in a schema of its own, dropped in cleanup.
"""

import uuid

import psycopg2
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from edgegw_tx.services.errors import ServiceError
from edgegw_tx.services.postgres import connect_kwargs
from edgegw_tx.services.registry import ServiceRegistry

SERVER = {"host": "127.0.0.1", "port": 5432, "database": "test", "username": "postgres"}


def _admin():
    return psycopg2.connect(host=SERVER["host"], port=SERVER["port"],
                            dbname=SERVER["database"], user=SERVER["username"],
                            connect_timeout=3)


def _server_available():
    try:
        _admin().close()
    except psycopg2.Error as e:
        return str(e)
    return None


_UNAVAILABLE = _server_available()


class PostgresTestCase(unittest.TestCase):
    if _UNAVAILABLE:
        skip = f"no PostgreSQL at 127.0.0.1:5432: {_UNAVAILABLE}"

    call_timeout = 5.0
    pool_size = 2

    def setUp(self):
        self.schema = f"edgegw_test_{uuid.uuid4().hex[:12]}"
        self.addCleanup(self._drop_schema)
        self.registry = ServiceRegistry(self.mktemp(), call_timeout=self.call_timeout,
                                        reactor=reactor)
        self.addCleanup(self.registry.close)
        self.registry.configure({"id": "p1", "name": "main", "service_type": "postgres",
                                 "config": dict(SERVER, pool_size=self.pool_size)})
        self.registry.bind("e1", "main", "p1")
        self.handler = self.registry.call_handler("e1")
        return self.ok("execute", f"CREATE SCHEMA {self.schema}")

    def _drop_schema(self):
        connection = _admin()
        try:
            connection.autocommit = True
            connection.cursor().execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            connection.close()

    def t(self, name):
        return f"{self.schema}.{name}"

    def call(self, action, sql, *params):
        return self.handler({"type": "call", "id": 1, "request": "r", "service": "db",
                             "pool": "main", "action": action,
                             "args": {"sql": sql, "params": list(params)}})

    @inlineCallbacks
    def ok(self, action, sql, *params):
        result = yield self.call(action, sql, *params)
        self.assertTrue(result["ok"], result)
        return result["data"]

    @inlineCallbacks
    def error(self, action, sql, *params):
        result = yield self.call(action, sql, *params)
        self.assertFalse(result["ok"], result)
        return result["error"]


class CrudIntegrationTests(PostgresTestCase):
    @inlineCallbacks
    def test_crud(self):
        """Insert with RETURNING, execute (no last_insert_id), query, update, delete."""
        notes = self.t("notes")
        yield self.ok("execute", f"CREATE TABLE {notes} (id serial PRIMARY KEY, body text)")
        data = yield self.ok("query", f"INSERT INTO {notes} (body) VALUES (?) RETURNING id", "hi")
        self.assertEqual(data, {"columns": ["id"], "rows": [{"id": 1}]})
        data = yield self.ok("execute", f"INSERT INTO {notes} (body) VALUES (?), (?)", "a", "b")
        self.assertEqual(data, {"rows_affected": 2, "last_insert_id": None})
        data = yield self.ok("query", f"SELECT id, body FROM {notes} WHERE id = ?", 1)
        self.assertEqual(data, {"columns": ["id", "body"], "rows": [{"id": 1, "body": "hi"}]})
        data = yield self.ok("execute", f"UPDATE {notes} SET body = ? WHERE id >= ?", "x", 2)
        self.assertEqual(data["rows_affected"], 2)
        data = yield self.ok("execute", f"DELETE FROM {notes} WHERE body = ?", "x")
        self.assertEqual(data["rows_affected"], 2)
        data = yield self.ok("query", f"SELECT count(*) AS n FROM {notes}")
        self.assertEqual(data["rows"], [{"n": 1}])

    @inlineCallbacks
    def test_execute_commits(self):
        """What execute wrote is visible to another connection at once."""
        yield self.ok("execute", f"CREATE TABLE {self.t('c')} (a int)")
        yield self.ok("execute", f"INSERT INTO {self.t('c')} VALUES (?)", 7)
        connection = _admin()
        try:
            cursor = connection.cursor()
            cursor.execute(f"SELECT a FROM {self.t('c')}")
            self.assertEqual(cursor.fetchall(), [(7,)])
        finally:
            connection.close()

    @inlineCallbacks
    def test_injection_literal(self):
        """Parameters holding SQL, quotes, '?' and '%' are stored literally."""
        yield self.ok("execute", f"CREATE TABLE {self.t('s')} (v text)")
        values = ["x'); DROP TABLE s; --", "100% sure?", "%s %(a)s", "it's \\ \"q\"", "$$?$$"]
        for value in values:
            yield self.ok("execute", f"INSERT INTO {self.t('s')} VALUES (?)", value)
        data = yield self.ok("query", f"SELECT v FROM {self.t('s')}")
        self.assertEqual([row["v"] for row in data["rows"]], values)

    @inlineCallbacks
    def test_placeholders_in_quotes(self):
        """'?' in literals, identifiers, comments and dollar quotes is not a placeholder; '%' survives."""
        data = yield self.ok(
            "query",
            "SELECT '?' AS q, ? AS p, $$ ? $$ AS d, $t$?$t$ AS t, E'\\'?' AS e,"
            " '100%' AS pct, 7 % 4 AS m, 1 AS \"?col\" -- ?\n /* ? */",
            "param",
        )
        self.assertEqual(data["rows"], [{"q": "?", "p": "param", "d": " ? ", "t": "?",
                                         "e": "'?", "pct": "100%", "m": 3, "?col": 1}])

    @inlineCallbacks
    def test_percent_without_params(self):
        """A statement with '%' and no parameters reaches the server unchanged."""
        data = yield self.ok("query", "SELECT '50%' AS p, 10 % 3 AS m")
        self.assertEqual(data["rows"], [{"p": "50%", "m": 1}])

    @inlineCallbacks
    def test_count_mismatch(self):
        """A parameter count that does not match is a DatabaseError."""
        error = yield self.error("query", "SELECT ?, ?", 1)
        self.assertEqual(error, {"kind": "DatabaseError", "message":
                                 "the statement has 2 placeholders but 1 parameter was given"})

    @inlineCallbacks
    def test_syntax_error_then_recovery(self):
        """A syntax error is a DatabaseError with PostgreSQL's message; the pool then works."""
        for _ in range(self.pool_size + 1):
            error = yield self.error("query", "SELEC 1")
            self.assertEqual(error, {"kind": "DatabaseError",
                                     "message": 'syntax error at or near "SELEC"'})
            data = yield self.ok("query", "SELECT 1 AS one")
            self.assertEqual(data["rows"], [{"one": 1}])

    @inlineCallbacks
    def test_constraint_detail(self):
        """A unique violation names the constraint and gives PostgreSQL's DETAIL."""
        yield self.ok("execute", f"CREATE TABLE {self.t('u')} (id int PRIMARY KEY)")
        yield self.ok("execute", f"INSERT INTO {self.t('u')} VALUES (1)")
        error = yield self.error("execute", f"INSERT INTO {self.t('u')} VALUES (1)")
        self.assertEqual(error["kind"], "DatabaseError")
        self.assertIn('duplicate key value violates unique constraint "u_pkey"',
                      error["message"])
        self.assertIn("Key (id)=(1) already exists.", error["message"])

    @inlineCallbacks
    def test_conversions(self):
        """numeric, timestamps, bytea, json/jsonb, NaN, interval, uuid, arrays, ranges."""
        data = yield self.ok("query", """
            SELECT 12.50::numeric AS num, 123456789012345678901234567890::numeric AS big,
                   '2024-05-06 07:08:09.5+00'::timestamptz AS tstz,
                   '2024-05-06 07:08:09'::timestamp AS ts, '2024-05-06'::date AS d,
                   '12:30'::time AS t, '\\x00ff'::bytea AS b,
                   '{"a": [1, 2.5, null]}'::jsonb AS jb, '[true]'::json AS j,
                   'NaN'::float8 AS nan, '-Infinity'::float8 AS ninf, 1.5::float4 AS f4,
                   interval '1 day 2 hours' AS iv,
                   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
                   ARRAY[1, 2] AS arr, ARRAY[1.5::numeric] AS narr,
                   int4range(1, 5) AS r, true AS yes, NULL::int AS nothing,
                   9007199254740993::int8 AS i8
        """)
        row = data["rows"][0]
        self.assertEqual(row, {
            "num": "12.50",
            "big": "123456789012345678901234567890",
            "tstz": "2024-05-06T07:08:09.500000+00:00",
            "ts": "2024-05-06T07:08:09",
            "d": "2024-05-06",
            "t": "12:30:00",
            "b": "AP8=",
            "jb": {"a": [1, 2.5, None]},
            "j": [True],
            "nan": "NaN",
            "ninf": "-Infinity",
            "f4": 1.5,
            "iv": 93600.0,
            "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "arr": [1, 2],
            "narr": ["1.5"],
            "r": "[1,5)",
            "yes": True,
            "nothing": None,
            "i8": 9007199254740993,
        })

    @inlineCallbacks
    def test_json_params(self):
        """Lists and objects bind as JSON; booleans and null as themselves."""
        table = self.t("j")
        yield self.ok("execute", f"CREATE TABLE {table} (doc jsonb, tags json, flag bool, n int)")
        yield self.ok("execute", f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                      {"a": [1, "x"], "b": None}, ["t", 1], True, None)
        data = yield self.ok("query", f"SELECT doc, tags, flag, n, doc->'a'->>1 AS x FROM {table}")
        self.assertEqual(data["rows"], [{"doc": {"a": [1, "x"], "b": None}, "tags": ["t", 1],
                                         "flag": True, "n": None, "x": "x"}])


class TestAndCloseIntegrationTests(PostgresTestCase):
    @inlineCallbacks
    def test_test_latency(self):
        """test() of a good config fires with a latency."""
        result = yield self.registry.test({"id": "t", "name": "t", "service_type": "postgres",
                                           "config": SERVER})
        self.assertIsInstance(result["latency_ms"], float)
        self.assertGreater(result["latency_ms"], 0)

    @inlineCallbacks
    def test_test_failures(self):
        """test() fails with the backend's message: no server, no such database."""
        for config, text in ((dict(SERVER, port=1), "Connection refused"),
                             (dict(SERVER, database="edgegw_no_such_db"),
                              'database "edgegw_no_such_db" does not exist')):
            try:
                yield self.registry.test({"id": "t", "name": "t",
                                          "service_type": "postgres", "config": config})
            except ServiceError as e:
                self.assertEqual(e.kind, "ServiceUnavailable")
                self.assertIn(text, e.message)
            else:
                self.fail(f"test() succeeded with {config}")

    @inlineCallbacks
    def test_unreachable_call(self):
        """A call to a server that is not there answers ServiceUnavailable."""
        self.registry.configure({"id": "p2", "name": "gone", "service_type": "postgres",
                                 "config": dict(SERVER, port=1)})
        self.registry.bind("e1", "gone", "p2")
        result = yield self.handler({"service": "db", "pool": "gone", "action": "query",
                                     "args": {"sql": "SELECT 1"}})
        self.assertEqual(result["error"]["kind"], "ServiceUnavailable")
        self.assertIn("cannot connect to postgres", result["error"]["message"])

    @inlineCallbacks
    def test_close_leaves_nothing(self):
        """close() ends the pool's threads and its server connections."""
        data = yield self.ok("query", "SELECT pg_backend_pid() AS pid")
        pid = data["rows"][0]["pid"]
        pool = self.registry._services["p1"].connector._pool
        self.assertTrue(pool.threadpool.threads)
        yield self.registry.close()
        self.assertFalse([t for t in pool.threadpool.threads if t.is_alive()])
        self.assertEqual(pool.connections, {})
        for _ in range(50):
            connection = _admin()
            try:
                cursor = connection.cursor()
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
                (count,) = cursor.fetchone()
            finally:
                connection.close()
            if not count:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(count, 0)

    def test_connect_kwargs(self):
        """The connection carries the timeouts, sslmode and application_name."""
        kwargs = connect_kwargs(dict(SERVER, password="pw", ssl_mode="require", pool_size=3),
                                2.5)
        self.assertEqual(kwargs["connect_timeout"], 3)
        self.assertEqual(kwargs["options"], "-c statement_timeout=2750")
        self.assertEqual(kwargs["sslmode"], "require")
        self.assertEqual(kwargs["password"], "pw")
        self.assertEqual(kwargs["application_name"], "edgegw")


class TimeoutIntegrationTests(PostgresTestCase):
    call_timeout = 0.5
    pool_size = 1

    @inlineCallbacks
    def test_slow_statement(self):
        """
        A statement overrunning the call timeout answers ServiceUnavailable;
        the server cancels it, so the pool's one connection serves the next call.
        """
        started = reactor.seconds()
        error = yield self.error("query", "SELECT pg_sleep(5)")
        self.assertEqual(error["kind"], "ServiceUnavailable")
        self.assertIn("did not answer within 0.5s", error["message"])
        data = yield self.ok("query", "SELECT 2 AS two")
        self.assertEqual(data["rows"], [{"two": 2}])
        self.assertLess(reactor.seconds() - started, 3.0)


class ConnectionLossIntegrationTests(PostgresTestCase):
    pool_size = 2

    @inlineCallbacks
    def test_lost_connections_replaced(self):
        """
        When the server drops every connection of the pool (as on a restart),
        the call that notices answers ServiceUnavailable and every later call
        succeeds: the other connections are replaced before their next use.
        """
        results = yield gatherResults([
            self.ok("query", "SELECT pg_backend_pid() AS pid, pg_sleep(0.2)")
            for _ in range(self.pool_size)
        ])
        pids = {data["rows"][0]["pid"] for data in results}
        self.assertEqual(len(pids), self.pool_size)
        connection = _admin()
        try:
            cursor = connection.cursor()
            for pid in pids:
                cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
        finally:
            connection.close()
        error = yield self.error("query", "SELECT 1")
        self.assertEqual(error["kind"], "ServiceUnavailable")
        for _ in range(4):
            data = yield self.ok("query", "SELECT pg_backend_pid() AS pid")
            self.assertNotIn(data["rows"][0]["pid"], pids)
