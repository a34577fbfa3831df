"""
Integration tests of the SQLite connector through
L{ServiceRegistry.call_handler}: a real file in the test's temp dir, real
adbapi threads, the real reactor.
"""

import base64
import os
import sqlite3

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from edgegw_tx.services.errors import ServiceError
from edgegw_tx.services.registry import ServiceRegistry


class SQLiteTestCase(unittest.TestCase):
    call_timeout = 5.0

    def setUp(self):
        self.data_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.data_dir)
        self.registry = ServiceRegistry(self.data_dir, call_timeout=self.call_timeout,
                                        reactor=reactor)
        self.addCleanup(self.registry.close)
        self.configure()
        self.handler = self.registry.call_handler("e1")

    def configure(self, **config):
        self.registry.configure({"id": "s1", "name": "notes", "service_type": "sqlite",
                                 "config": config})
        self.registry.bind("e1", "main", "s1")

    def call(self, action, sql, *params):
        return self.handler({"type": "call", "id": 1, "request": "r", "service": "db",
                             "pool": "main", "action": action,
                             "args": {"sql": sql, "params": list(params)}})

    @inlineCallbacks
    def ok(self, action, sql, *params):
        result = yield self.call(action, sql, *params)
        self.assertTrue(result["ok"], result)
        return result["data"]


class CrudTests(SQLiteTestCase):
    @inlineCallbacks
    def test_crud(self):
        """Create, insert (last_insert_id), query, update (rows_affected), delete."""
        data = yield self.ok("execute",
                             "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n REAL)")
        self.assertEqual(data, {"rows_affected": 0, "last_insert_id": None})
        data = yield self.ok("execute", "INSERT INTO notes (body, n) VALUES (?, ?)", "hi", 1.5)
        self.assertEqual(data, {"rows_affected": 1, "last_insert_id": 1})
        data = yield self.ok("execute", "INSERT INTO notes (body) VALUES (?)", "there")
        self.assertEqual(data["last_insert_id"], 2)
        data = yield self.ok("query", "SELECT id, body, n FROM notes WHERE id = ?", 1)
        self.assertEqual(data, {"columns": ["id", "body", "n"],
                                "rows": [{"id": 1, "body": "hi", "n": 1.5}]})
        data = yield self.ok("execute", "UPDATE notes SET body = ? WHERE id > ?", "x", 0)
        self.assertEqual(data, {"rows_affected": 2, "last_insert_id": None})
        data = yield self.ok("execute", "DELETE FROM notes WHERE id = ?", 2)
        self.assertEqual(data["rows_affected"], 1)
        data = yield self.ok("query", "SELECT count(*) AS c FROM notes")
        self.assertEqual(data["rows"], [{"c": 1}])

    @inlineCallbacks
    def test_file_location(self):
        """The database is <data_dir>/services/<name>.sqlite3, in WAL mode."""
        yield self.ok("execute", "CREATE TABLE t (a)")
        path = os.path.join(self.data_dir, "services", "notes.sqlite3")
        self.assertTrue(os.path.isfile(path))
        data = yield self.ok("query", "PRAGMA journal_mode")
        self.assertEqual(data["rows"], [{"journal_mode": "wal"}])

    @inlineCallbacks
    def test_values(self):
        """JSON params: lists/objects stored as JSON text, booleans as 1/0, null; BLOBs as base64."""
        yield self.ok("execute", "CREATE TABLE v (a, b, c, d, e)")
        yield self.ok("execute", "INSERT INTO v VALUES (?, ?, ?, ?, ?)",
                      [1, "x"], {"k": True}, True, None, 2**62)
        yield self.ok("execute", "INSERT INTO v (a) VALUES (X'00FF')")
        yield self.ok("execute", "INSERT INTO v (a) VALUES (9e999)")
        data = yield self.ok("query", "SELECT a, b, c, d, e FROM v")
        self.assertEqual(data["rows"], [
            {"a": '[1,"x"]', "b": '{"k":true}', "c": 1, "d": None, "e": 2**62},
            {"a": base64.b64encode(b"\x00\xff").decode(), "b": None, "c": None, "d": None,
             "e": None},
            {"a": "Infinity", "b": None, "c": None, "d": None, "e": None},
        ])

    @inlineCallbacks
    def test_injection_literal(self):
        """A parameter holding SQL is stored literally."""
        yield self.ok("execute", "CREATE TABLE t (s TEXT)")
        evil = "x'); DROP TABLE t; --"
        yield self.ok("execute", "INSERT INTO t VALUES (?)", evil)
        data = yield self.ok("query", "SELECT s FROM t")
        self.assertEqual(data["rows"], [{"s": evil}])

    @inlineCallbacks
    def test_errors(self):
        """SQLite errors are DatabaseError with SQLite's message; the service keeps working."""
        result = yield self.call("query", "SELECT * FROM notes WHERE id = ?", 3)
        self.assertEqual(result, {"ok": False, "error": {"kind": "DatabaseError",
                                                         "message": "no such table: notes"}})
        result = yield self.call("query", "SELEC 1")
        self.assertEqual(result["error"]["kind"], "DatabaseError")
        self.assertIn("syntax error", result["error"]["message"])
        result = yield self.call("query", "SELECT ?, ?", 1)
        self.assertEqual(result["error"]["kind"], "DatabaseError")
        self.assertIn("bindings", result["error"]["message"])
        data = yield self.ok("query", "SELECT 1 AS one")
        self.assertEqual(data["rows"], [{"one": 1}])

    @inlineCallbacks
    def test_failed_statement_rolled_back(self):
        """A statement that fails half-way leaves nothing behind (the call's transaction rolls back)."""
        yield self.ok("execute", "CREATE TABLE u (a UNIQUE)")
        yield self.ok("execute", "INSERT INTO u VALUES (1)")
        result = yield self.call("execute", "INSERT INTO u VALUES (2), (1)")
        self.assertEqual(result["error"]["kind"], "DatabaseError")
        data = yield self.ok("query", "SELECT a FROM u")
        self.assertEqual(data["rows"], [{"a": 1}])

    @inlineCallbacks
    def test_bad_args(self):
        """Missing sql or params that are not a list: BadRequest naming the argument."""
        result = yield self.handler({"service": "db", "pool": "main", "action": "query",
                                     "args": {}})
        self.assertEqual(result["error"], {"kind": "BadRequest",
                                           "message": "db query: missing argument 'sql'"})
        result = yield self.handler({"service": "db", "pool": "main", "action": "query",
                                     "args": {"sql": "SELECT 1", "params": "x"}})
        self.assertEqual(result["error"]["message"],
                         "db query: argument 'params' must be a list, not a string")
        result = yield self.call("execute", "SELECT ?", 2**70)
        self.assertEqual(result["error"]["kind"], "BadRequest")

    @inlineCallbacks
    def test_missing_file(self):
        """create_if_missing false and no file: ServiceUnavailable naming the path."""
        self.configure(path="sub/none.db", create_if_missing=False)
        result = yield self.call("query", "SELECT 1")
        self.assertEqual(result["error"], {
            "kind": "ServiceUnavailable",
            "message": "sqlite database 'sub/none.db' does not exist (create_if_missing is false)",
        })
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, "services", "sub")))

    @inlineCallbacks
    def test_existing_file(self):
        """create_if_missing false opens an existing file in a subfolder."""
        folder = os.path.join(self.data_dir, "services", "sub")
        os.makedirs(folder)
        connection = sqlite3.connect(os.path.join(folder, "have.db"))
        connection.execute("CREATE TABLE t (a)")
        connection.execute("INSERT INTO t VALUES (42)")
        connection.commit()
        connection.close()
        self.configure(path="sub/have.db", create_if_missing=False)
        data = yield self.ok("query", "SELECT a FROM t")
        self.assertEqual(data["rows"], [{"a": 42}])

    @inlineCallbacks
    def test_symlink_out(self):
        """A database path that a symlink leads out of the services folder is refused."""
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        os.makedirs(os.path.join(self.data_dir, "services"))
        os.symlink(outside, os.path.join(self.data_dir, "services", "link"))
        self.configure(path="link/x.db")
        result = yield self.call("query", "SELECT 1")
        self.assertEqual(result["error"]["kind"], "ServiceUnavailable")
        self.assertIn("outside the services folder", result["error"]["message"])
        self.assertEqual(os.listdir(outside), [])

    @inlineCallbacks
    def test_test(self):
        """test() reports a latency for a good config and a message for a missing file."""
        result = yield self.registry.test({"id": "t", "name": "probe",
                                           "service_type": "sqlite", "config": {}})
        self.assertIsInstance(result["latency_ms"], float)
        try:
            yield self.registry.test({"id": "t", "name": "probe", "service_type": "sqlite",
                                      "config": {"path": "absent.db",
                                                 "create_if_missing": False}})
        except ServiceError as e:
            self.assertEqual(e.kind, "ServiceUnavailable")
            self.assertIn("'absent.db' does not exist", e.message)
        else:
            self.fail("test() of a missing file succeeded")

    @inlineCallbacks
    def test_close(self):
        """close() stops the pool's thread and closes the file; later calls are refused."""
        yield self.ok("execute", "CREATE TABLE t (a)")
        connector = self.registry._services["s1"].connector
        pool = connector._pool
        yield self.registry.close()
        self.assertFalse([t for t in pool.threadpool.threads if t.is_alive()])
        self.assertEqual(pool.connections, {})
        self.assertRaises(ServiceError, connector.call, "query", {"sql": "SELECT 1"})

    @inlineCallbacks
    def test_reconfigure(self):
        """Replacing the config closes the old pool; the new one serves calls."""
        yield self.ok("execute", "CREATE TABLE t (a)")
        self.configure(path="second.db")
        data = yield self.ok("query", "SELECT name FROM sqlite_master")
        self.assertEqual(data["rows"], [])


class TimeoutTests(SQLiteTestCase):
    call_timeout = 0.5

    @inlineCallbacks
    def test_runaway_interrupted(self):
        """
        A statement overrunning the call timeout answers ServiceUnavailable and
        is interrupted, so the service's only connection serves the next call.
        """
        endless = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
                   " SELECT count(*) FROM c")
        started = reactor.seconds()
        result = yield self.call("query", endless)
        self.assertEqual(result["error"]["kind"], "ServiceUnavailable")
        self.assertIn("did not answer within 0.5s", result["error"]["message"])
        data = yield self.ok("query", "SELECT 2 AS two")
        self.assertEqual(data["rows"], [{"two": 2}])
        self.assertLess(reactor.seconds() - started, 2.0)
