"""
The service examples in docs/examples/services/, each deployed through a real
gateway with real cargo and real workers, talking to real SQLite, PostgreSQL,
Redis and storage through the gateway's service plane.
"""

import os
import socket
import sqlite3
import uuid

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from tests.support.harness import GatewayTestCase
from tests.support.handlers import EXAMPLES, example

def _reachable(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _redis(*args):
    """One command to the machine's Redis, for test set-up and clean-up."""
    payload = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args)
    )
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as s:
        s.sendall(payload)
        return s.recv(65536)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceExampleIntegrationTests(GatewayTestCase):

    def test_every_example_is_tested(self):
        """Each .rs file in docs/examples/services has a test here."""
        names = sorted(f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".rs"))
        tested = sorted(n[5:] for n in dir(self) if n.startswith("test_") and n[5:] in names)
        self.assertEqual(names, tested)

    @inlineCallbacks
    def check_notes_api(self):
        response, note = yield self.json_request("POST", "/notes", json={"title": "first", "body": "hi"})
        self.assertEqual(response.code, 201, note)
        self.assertEqual((note["title"], note["body"]), ("first", "hi"))
        self.assertTrue(note["created_at"])
        note_id = note["id"]

        hostile = "'); DROP TABLE notes; --"
        response, stored = yield self.json_request("POST", "/notes", json={"title": hostile})
        self.assertEqual((response.code, stored["title"]), (201, hostile))

        response, listing = yield self.json_request("GET", "/notes")
        self.assertEqual([n["title"] for n in listing["notes"]], ["first", hostile])

        response, updated = yield self.json_request(
            "PUT", "/notes/%d" % note_id, json={"title": "renamed", "body": "there"}
        )
        self.assertEqual((response.code, updated["title"]), (200, "renamed"))
        response, got = yield self.json_request("GET", "/notes/%d" % note_id)
        self.assertEqual((response.code, got["body"]), (200, "there"))

        response, body = yield self.json_request("POST", "/notes", json={"title": " "})
        self.assertEqual(response.code, 400)
        self.assertIn("title must not be empty", body["error"])

        response, _ = yield self.json_request("DELETE", "/notes/%d" % note_id)
        self.assertEqual(response.code, 204)
        response, body = yield self.json_request("GET", "/notes/%d" % note_id)
        self.assertEqual(response.code, 404)
        self.assertIn("no note %d" % note_id, body["error"])
        response, body = yield self.json_request("DELETE", "/notes/%d" % note_id)
        self.assertEqual(response.code, 404)

    NOTES_ROUTES = [
        ("GET", "/notes"),
        ("POST", "/notes"),
        ("GET", "/notes/{id}"),
        ("PUT", "/notes/{id}"),
        ("DELETE", "/notes/{id}"),
    ]

    @inlineCallbacks
    def test_notes_sqlite(self):
        """notes_sqlite.rs: full CRUD over SQLite; an injection attempt is stored as text."""
        db = yield self.service("notes-db", "sqlite", {})
        yield self.deploy_routes("notes", example("notes_sqlite"), self.NOTES_ROUTES, {"notes": db["id"]})
        yield self.check_notes_api()

    @inlineCallbacks
    def test_notes_postgres(self):
        """notes_postgres.rs: the same CRUD over the machine's PostgreSQL, in a table of its own."""
        if not _reachable(5432):
            raise unittest.SkipTest("PostgreSQL is not running on 127.0.0.1:5432")
        table = "notes_" + uuid.uuid4().hex[:12]

        def drop():
            import psycopg2

            with psycopg2.connect(host="127.0.0.1", dbname="test", user="postgres") as conn:
                with conn.cursor() as cursor:
                    cursor.execute("DROP TABLE IF EXISTS " + table)

        self.addCleanup(drop)
        db = yield self.service(
            "notes-pg", "postgres", {"host": "127.0.0.1", "database": "test", "username": "postgres"}
        )
        yield self.deploy_routes(
            "pgnotes", example("notes_postgres"), self.NOTES_ROUTES, {"notes": db["id"]},
            env={"NOTES_TABLE": table},
        )
        yield self.check_notes_api()

    @inlineCallbacks
    def test_cached_read(self):
        """cached_read.rs: a miss loads from SQLite and fills Redis, then hits; with Redis gone it bypasses."""
        if not _reachable(6379):
            raise unittest.SkipTest("Redis is not running on 127.0.0.1:6379")
        prefix = "edgegw-test-" + uuid.uuid4().hex[:12]
        self.addCleanup(_redis, "DEL", prefix + ":1")
        catalog = yield self.service("catalog", "sqlite", {})
        path = os.path.join(self.gateway.data_dir, "services", "catalog.sqlite3")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL)")
            conn.execute("INSERT INTO products VALUES (1, 'teapot', 1899)")
        cache = yield self.service("cache", "redis", {"host": "127.0.0.1"})
        endpoint_id = yield self.deploy_routes(
            "products", example("cached_read"), [("GET", "/products/{id}")],
            {"cache": cache["id"], "catalog": catalog["id"]}, env={"CACHE_PREFIX": prefix},
        )
        expected = {"id": 1, "name": "teapot", "price_cents": 1899}
        for state in ("MISS", "HIT"):
            response, product = yield self.json_request("GET", "/products/1")
            self.assertEqual((response.code, product), (200, expected))
            self.assertEqual(response.headers.getRawHeaders("x-cache"), [state])
        self.assertIn(b"teapot", _redis("GET", prefix + ":1"))
        response, body = yield self.json_request("GET", "/products/2")
        self.assertEqual(response.code, 404)

        # Point "cache" at a Redis that is not there: the running worker sees the
        # new binding at once and still answers, from the database.
        dead = yield self.service("dead-cache", "redis", {"host": "127.0.0.1", "port": _free_port()})
        status, _ = yield self.gateway.call(
            "POST", "/endpoints/%s/services" % endpoint_id, {"service_id": dead["id"], "pool_id": "cache"}
        )
        self.assertEqual(status, 200)
        response, product = yield self.json_request("GET", "/products/1")
        self.assertEqual((response.code, product), (200, expected))
        self.assertEqual(response.headers.getRawHeaders("x-cache"), ["BYPASS"])

    @inlineCallbacks
    def test_files(self):
        """files.rs: binary upload and download through storage, listing, delete, and a hostile key."""
        store = yield self.service("files", "storage", {})
        yield self.deploy_routes(
            "files", example("files"),
            [("PUT", "/files/{name}"), ("GET", "/files/{name}"), ("GET", "/files"), ("DELETE", "/files/{name}")],
            {"files": store["id"]},
        )
        data = bytes(range(256)) * 8
        response, created = yield self.json_request(
            "PUT", "/files/blob.bin", data=data, headers={"Content-Type": "application/x-blob"}
        )
        self.assertEqual((response.code, created), (201, {"name": "blob.bin", "size": len(data)}))
        response, content = yield self.gateway.request("GET", "/files/blob.bin")
        self.assertEqual(response.code, 200)
        self.assertEqual(content, data)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/x-blob"])
        response, listing = yield self.json_request("GET", "/files")
        self.assertEqual(listing, {"files": [{"name": "blob.bin", "size": len(data)}]})

        # A dot-segment never reaches the handler (docs/routing.md); an escaped
        # "/" does, as data in the parameter, and storage refuses the key.
        response, body = yield self.json_request("PUT", "/files/%2E%2E", data=b"escape")
        self.assertEqual(response.code, 400)
        self.assertIn("dot-segment", body["error"])
        response, body = yield self.json_request("PUT", "/files/..%2Fescape", data=b"escape")
        self.assertEqual(response.code, 500)
        self.assertIn("..", body["error"])
        written = []
        for folder, _, names in os.walk(self.gateway.data_dir):
            for name in names:
                with open(os.path.join(folder, name), "rb") as f:
                    if f.read() == b"escape":
                        written.append(os.path.join(folder, name))
        self.assertEqual(written, [], "the hostile key must not be stored anywhere")

        response, _ = yield self.json_request("DELETE", "/files/blob.bin")
        self.assertEqual(response.code, 204)
        response, body = yield self.json_request("GET", "/files/blob.bin")
        self.assertEqual(response.code, 404)

    @inlineCallbacks
    def test_petstore(self):
        """petstore.rs: list, create, get and delete pets; bad input answers 400."""
        pets = yield self.service("pets", "sqlite", {})
        yield self.deploy_routes(
            "pets", example("petstore"),
            [("GET", "/pets"), ("POST", "/pets"), ("GET", "/pets/{petId}"), ("DELETE", "/pets/{petId}")],
            {"pets": pets["id"]},
        )
        response, listing = yield self.json_request("GET", "/pets")
        self.assertEqual((response.code, listing), (200, []))
        response, rex = yield self.json_request("POST", "/pets", json={"name": "Rex", "tag": "dog"})
        self.assertEqual((response.code, rex["name"], rex["tag"]), (201, "Rex", "dog"))
        response, tom = yield self.json_request("POST", "/pets", json={"name": "Tom"})
        self.assertIsNone(tom["tag"])
        response, listing = yield self.json_request("GET", "/pets?limit=1")
        self.assertEqual([p["name"] for p in listing], ["Rex"])
        response, got = yield self.json_request("GET", "/pets/%d" % rex["id"])
        self.assertEqual(got, rex)
        response, body = yield self.json_request("GET", "/pets?limit=many")
        self.assertEqual(response.code, 400)
        self.assertIn("'limit'", body["error"])
        response, body = yield self.json_request("POST", "/pets", json={"tag": "cat"})
        self.assertEqual(response.code, 400)
        self.assertIn("name", body["error"])
        response, _ = yield self.json_request("DELETE", "/pets/%d" % rex["id"])
        self.assertEqual(response.code, 204)
        response, body = yield self.json_request("GET", "/pets/%d" % rex["id"])
        self.assertEqual(response.code, 404)

    @inlineCallbacks
    def test_unbound_name_is_service_unavailable(self):
        """A handler calling a name the endpoint has no binding for answers 503 saying so."""
        yield self.deploy_routes("lonely", example("petstore"), [("GET", "/pets")], {})
        response, body = yield self.json_request("GET", "/pets")
        self.assertEqual(response.code, 503)
        self.assertIn("no service bound as 'pets'", body["error"])
