"""
Handler programs written in the original rust-edge-gateway's style
(tests/fixtures/original/), compiled against this SDK and served by a real
gateway: the petstore-style document CRUD over SQLite, PostgreSQL and a
storage service, and the original's service calls (string SQL parameters,
setex's argument order, EnvVars). One compile per program: each test method
deploys one program under every route it needs.
"""

import json
import os
import socket

import psycopg2
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from tests.support import pg
from tests.support.harness import ROOT, GatewayTestCase

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "original")

PET_ROUTES = [
    ("GET", "/pets"),
    ("POST", "/pets"),
    ("GET", "/pets/{id}"),
    ("PUT", "/pets/{id}"),
    ("DELETE", "/pets/{id}"),
]


def fixture(name):
    """The source of tests/fixtures/original/<name>.rs."""
    with open(os.path.join(FIXTURES, name + ".rs")) as f:
        return f.read()


def _reachable(port):
    """Whether something listens on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class OriginalSDKIntegrationTests(GatewayTestCase):

    @inlineCallbacks
    def check_petstore(self, prefix, kind):
        """Create, get, list by status, update and delete pets under ``prefix``."""
        pets = prefix + "/pets"
        for pet in (
            {"id": "1", "name": "Rex", "status": "available"},
            {"id": "2", "name": "Tom", "status": "sold"},
            {"id": "3", "name": "Kit", "status": "available"},
        ):
            response, created = yield self.json_request("POST", pets, json=pet)
            self.assertEqual((response.code, created), (201, pet))
        response, body = yield self.json_request("POST", pets, json={"id": "1", "name": "Again"})
        self.assertEqual(response.code, 409, body)

        response, got = yield self.json_request("GET", pets + "/2")
        self.assertEqual((response.code, got), (200, {"id": "2", "name": "Tom", "status": "sold"}))
        response, body = yield self.json_request("GET", pets + "/9")
        self.assertEqual((response.code, body["error"]), (404, "pet 9 not found"))

        response, listing = yield self.json_request("GET", pets + "?status=available")
        self.assertEqual(response.code, 200, listing)
        self.assertEqual(listing["kind"], kind)
        self.assertEqual([p["name"] for p in listing["pets"]], ["Rex", "Kit"])
        response, listing = yield self.json_request("GET", pets)
        self.assertEqual([p["id"] for p in listing["pets"]], ["1", "2", "3"])

        response, updated = yield self.json_request(
            "PUT", pets + "/3", json={"name": "Kit", "status": "sold"}
        )
        self.assertEqual((response.code, updated["status"]), (200, "sold"))
        response, body = yield self.json_request("PUT", pets + "/9", json={"name": "Nobody"})
        self.assertEqual(response.code, 404, body)
        response, listing = yield self.json_request("GET", pets + "?status=sold")
        self.assertEqual(sorted(p["name"] for p in listing["pets"]), ["Kit", "Tom"])

        response, _ = yield self.json_request("DELETE", pets + "/2")
        self.assertEqual(response.code, 204)
        response, _ = yield self.json_request("DELETE", pets + "/2")
        self.assertEqual(response.code, 404)
        response, listing = yield self.json_request("GET", pets)
        self.assertEqual([p["id"] for p in listing["pets"]], ["1", "3"])

    @inlineCallbacks
    def test_petstore_over_sqlite_postgres_and_storage(self):
        """petstore.rs (Storage::database/object_storage, e.to_response, EnvVars) does full CRUD with list by status over SQLite, PostgreSQL and a storage service, each table made on first use."""
        code = fixture("petstore")
        sqlite = yield self.service("pets-sqlite", "sqlite", {})
        stores = [("/lite", "Database", {"PET_STORE": "database"}, sqlite)]
        if _reachable(pg.PORT):
            uri = pg.create_database()
            self.addCleanup(pg.drop_database, uri)
            postgres = yield self.service(
                "pets-pg", "postgres",
                {"host": pg.HOST, "port": pg.PORT, "database": pg.database_name(uri), "username": pg.USER},
            )
            stores.append(("/pg", "Database", {"PET_STORE": "database", "PET_PLACE": "shop_pets"}, postgres))
        files = yield self.service("pets-files", "storage", {})
        stores.append(("/obj", "ObjectStorage", {"PET_STORE": "object", "PET_PLACE": "shop/pets"}, files))
        for prefix, _, env, service in stores:
            routes = [(method, prefix + path) for method, path in PET_ROUTES]
            yield self.deploy_routes("pets" + prefix.replace("/", "-"), code, routes, {"main": service["id"]}, env)
        for prefix, kind, _, _ in stores:
            yield self.check_petstore(prefix, kind)

        if len(stores) == 2:
            raise unittest.SkipTest("PostgreSQL is not running on 127.0.0.1:%d (SQLite and storage passed)" % pg.PORT)
        # The documented layout, made by the SDK on first use.
        connection = psycopg2.connect(uri)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'shop_pets' ORDER BY ordinal_position"
                )
                columns = [row[0] for row in cursor.fetchall()]
                cursor.execute("SELECT id, data, status, created_at FROM shop_pets ORDER BY id")
                rows = cursor.fetchall()
        finally:
            connection.close()
        self.assertEqual(columns, ["id", "data", "status", "created_at", "updated_at"])
        self.assertEqual([(r[0], json.loads(r[1])["name"], r[2]) for r in rows], [("1", "Rex", "available"), ("3", "Kit", "sold")])
        self.assertRegex(rows[0][3], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    @inlineCallbacks
    def test_original_service_calls(self):
        """services.rs: SQL with &[&str], &[&String], Vec<String>, &[json!()] and params![] (NULL included), setex(key, value, seconds) and EnvVars all work as the original's docs say."""
        if not _reachable(6379):
            raise unittest.SkipTest("Redis is not running on 127.0.0.1:6379")
        db = yield self.service("notes", "sqlite", {})
        cache = yield self.service("cache", "redis", {"host": "127.0.0.1"})
        yield self.deploy_routes(
            "orig", fixture("services"),
            [("POST", "/notes"), ("GET", "/notes/{id}"), ("GET", "/env/{name}")],
            {"main": db["id"], "cache": cache["id"]},
            {"GREETING": "hej"},
        )
        body = "two words 'quoted'); DROP TABLE notes; --"
        response, created = yield self.json_request("POST", "/notes", data=body.encode())
        self.assertEqual(response.code, 201, created)
        self.assertEqual((created["same_body"], created["by_id"]), (1, 1))
        response, got = yield self.json_request("GET", "/notes/%d" % created["id"])
        self.assertEqual(response.code, 200, got)
        self.assertEqual(
            got,
            {"row": {"body": body, "words": len(body.split()), "score": 0.5, "pinned": 1, "tag": None},
             "cached": body},
        )
        response, env = yield self.json_request("GET", "/env/GREETING")
        self.assertEqual((response.code, env), (200, {"value": "hej"}))
        response, env = yield self.json_request("GET", "/env/NOT_SET")
        self.assertEqual(env, {"value": None})
