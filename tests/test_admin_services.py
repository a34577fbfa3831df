"""
Services and bindings through the management API, against a real Klein app and
a real SQLite store; the service plane's registry is a fake that records what
it was told (the registry's own tests cover connectors). Config validation,
masking and secret merging are the service plane's real ``config`` module.
"""

import json
import os

from treq.testing import StubTreq
from twisted.internet.defer import fail, succeed
from twisted.trial import unittest

from edgegw_tx.admin.logs import LogBook
from edgegw_tx.admin.manager import EndpointManager
from edgegw_tx.admin.services import ServiceManager
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.store import SQLiteStore
from tests.support.fakes import SynchronousReactor, make_store
from tests.support.handlers import HELLO
from tests.support.fakes import FakeBuilder, FakePool
from tests.support.fakes import FakeRegistry
from tests.support.fakes import fake_runtime

MASK = "********"
SECRET = "s3cret-pw"
POSTGRES = {"host": "db.internal", "database": "app", "username": "app", "password": SECRET}


def service_error(kind, message):
    """The service plane's ``ServiceError`` with this kind and message."""
    from edgegw_tx.services.errors import ServiceError

    return ServiceError(kind, message)


class ServiceAPITests(unittest.TestCase):
    def setUp(self):
        FakePool.instances = []
        self.registry = FakeRegistry()
        runtime = fake_runtime(self, registry=self.registry)
        self.services, self.manager, self.api = runtime.service_manager, runtime.manager, runtime.api
        self.client = StubTreq(self.api.resource())

    def call(self, method, path, body=None, key="admin"):
        """(status, document, raw body) of one API call."""
        headers = {"Authorization": "Bearer " + {"admin": self.admin_key, "read": self.read_key}[key]}
        data = json.dumps(body).encode() if body is not None else None
        d = self.client.request(method, "http://admin" + path, headers=headers, data=data)
        self.client.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, json.loads(content), content

    def create_service(self, **overrides):
        body = {"name": "main-db", "service_type": "postgres", "config": dict(POSTGRES)}
        body.update(overrides)
        code, document, _ = self.call("POST", "/api/services", body)
        self.assertEqual(code, 201, document)
        return document["data"]

    def create_endpoint(self, name="hello", path="/hello"):
        body = {"name": name, "path": path, "method": "GET", "code": HELLO}
        code, document, _ = self.call("POST", "/api/endpoints", body)
        self.assertEqual(code, 201, document)
        return document["data"]

    def bound(self, endpoint_id):
        """The endpoint's ``services`` as its GET shows them."""
        return self.call("GET", "/api/endpoints/" + endpoint_id)[1]["data"]["services"]

    def bind(self, endpoint_id, service_id, pool_id="main"):
        return self.call(
            "POST",
            "/api/endpoints/%s/services" % endpoint_id,
            {"service_id": service_id, "pool_id": pool_id},
        )

    # services: create and read

    def test_create_answers_201_with_normalised_masked_config(self):
        """POST /api/services stores the service with defaults filled in and answers it masked."""
        data = self.create_service()
        self.assertEqual((data["name"], data["service_type"]), ("main-db", "postgres"))
        self.assertEqual(data["config"]["port"], 5432)
        self.assertEqual(data["config"]["host"], "db.internal")
        self.assertEqual(data["config"]["password"], MASK)
        self.assertTrue(data["id"] and data["created_at"] and data["updated_at"])

    def test_create_configures_the_registry_with_the_clear_secret(self):
        """The registry gets {id, name, service_type, config} with the real password."""
        data = self.create_service()
        configured = self.registry.configured[data["id"]]
        self.assertEqual(set(configured), {"id", "name", "service_type", "config"})
        self.assertEqual(configured["config"]["password"], SECRET)

    def test_every_answer_masks_secrets(self):
        """POST, GET, list and PUT answers never contain a stored secret."""
        service = self.create_service()
        path = "/api/services/" + service["id"]
        answers = [
            self.call("GET", path),
            self.call("GET", "/api/services"),
            self.call("GET", "/api/services", key="read"),
            self.call("PUT", path, {"name": "renamed"}),
            self.call("PUT", path, {"config": dict(POSTGRES, password="other-secret")}),
        ]
        for code, document, raw in answers:
            self.assertEqual(code, 200, document)
            self.assertNotIn(SECRET.encode(), raw)
            self.assertNotIn(b"other-secret", raw)
        self.assertEqual(answers[0][1]["data"]["config"]["password"], MASK)
        self.assertEqual(answers[1][1]["data"]["items"][0]["config"]["password"], MASK)

    def test_a_record_stored_before_a_new_field_is_answered_normalised(self):
        """A storage record stored as {"path"} (before backends) is answered with backend filesystem and the S3 fields null."""
        view = ServiceManager(None, FakeRegistry()).view(
            {"id": "s1", "name": "files", "service_type": "storage", "config": {"path": "files"}}
        )
        self.assertEqual(view["config"]["backend"], "filesystem")
        self.assertEqual(view["config"]["path"], "files")
        self.assertIsNone(view["config"]["bucket"])

    def test_list_pages_and_filters_by_type(self):
        """GET /api/services pages like the endpoint list and filters by service_type."""
        self.create_service()
        self.create_service(name="cache", service_type="redis", config={"host": "cache"})
        data = self.call("GET", "/api/services")[1]["data"]
        self.assertEqual([s["name"] for s in data["items"]], ["main-db", "cache"])
        self.assertEqual((data["total"], data["page"], data["pages"]), (2, 1, 1))
        data = self.call("GET", "/api/services?service_type=redis")[1]["data"]
        self.assertEqual([s["name"] for s in data["items"]], ["cache"])
        data = self.call("GET", "/api/services?limit=1&page=2")[1]["data"]
        self.assertEqual(([s["name"] for s in data["items"]], data["pages"]), (["cache"], 2))
        self.assertEqual(self.call("GET", "/api/services?page=0")[0], 400)

    def test_read_key_may_read_but_not_write_services(self):
        """A read-scoped key lists and reads services but cannot create, test or bind."""
        service = self.create_service()
        endpoint = self.create_endpoint()
        self.assertEqual(self.call("GET", "/api/services", key="read")[0], 200)
        self.assertEqual(self.call("GET", "/api/services/" + service["id"], key="read")[0], 200)
        self.assertEqual(
            self.call("GET", "/api/endpoints/%s/services" % endpoint["id"], key="read")[0], 200
        )
        for method, path, body in (
            ("POST", "/api/services", {"name": "x", "service_type": "sqlite"}),
            ("PUT", "/api/services/" + service["id"], {"name": "x"}),
            ("DELETE", "/api/services/" + service["id"], None),
            ("POST", "/api/services/%s/test" % service["id"], None),
            (
                "POST",
                "/api/endpoints/%s/services" % endpoint["id"],
                {"service_id": service["id"], "pool_id": "db"},
            ),
        ):
            code, document, _ = self.call(method, path, body, key="read")
            self.assertEqual(code, 403, (method, path))
        self.assertEqual(len(self.registry.tested), 0)
        self.assertEqual(self.registry.bound, {})

    # services: validation

    def test_missing_fields_are_400_naming_them(self):
        """name and service_type are required; config may be left out."""
        for body, field in (
            ({"service_type": "sqlite"}, "name"),
            ({"name": "x"}, "service_type"),
        ):
            code, document, _ = self.call("POST", "/api/services", body)
            self.assertEqual((code, document["error"]), (400, "missing field '%s'" % field))

    def test_unknown_service_type_is_400(self):
        """A service_type outside sqlite, postgres, redis, storage is refused naming the field."""
        code, document, _ = self.call("POST", "/api/services", {"name": "x", "service_type": "mysql"})
        self.assertEqual(code, 400)
        self.assertIn(
            "field 'service_type' must be one of: sqlite, postgres, redis, storage", document["error"]
        )

    def test_bad_names_are_400(self):
        """A name must be 1-64 letters, digits, _, - or ., so it can name a file."""
        for name in ("", "a b", "../etc", ".hidden", "x" * 65, 5, None):
            code, document, _ = self.call("POST", "/api/services", {"name": name, "service_type": "sqlite"})
            self.assertEqual(code, 400, name)
            self.assertIn("field 'name'", document["error"])

    def test_unknown_top_level_field_is_400(self):
        """A typo in a field name is reported, on create and on update."""
        code, document, _ = self.call(
            "POST", "/api/services", {"name": "x", "service_type": "sqlite", "confg": {}}
        )
        self.assertEqual((code, document["error"]), (400, "unknown field 'confg'"))
        service = self.create_service()
        code, document, _ = self.call("PUT", "/api/services/" + service["id"], {"typ": "redis"})
        self.assertEqual((code, document["error"]), (400, "unknown field 'typ'"))

    def test_config_must_be_an_object(self):
        """config given as anything but a JSON object is refused naming the field."""
        code, document, _ = self.call(
            "POST", "/api/services", {"name": "x", "service_type": "sqlite", "config": "path=x"}
        )
        self.assertEqual((code, document["error"]), (400, "field 'config' must be an object"))

    def test_bad_config_field_is_400_naming_it(self):
        """A config the service plane rejects answers 400 naming e.g. config.port; nothing is stored."""
        code, document, _ = self.call(
            "POST",
            "/api/services",
            {"name": "x", "service_type": "postgres", "config": dict(POSTGRES, port="five")},
        )
        self.assertEqual(code, 400)
        self.assertIn("'config.port'", document["error"])
        self.assertEqual(document["field"], "config.port")
        self.assertEqual(self.call("GET", "/api/services")[1]["data"]["total"], 0)
        self.assertEqual(self.registry.configured, {})

    def test_bad_config_on_update_is_400_and_keeps_the_old(self):
        """An update with a bad config changes nothing, in the store or the registry."""
        service = self.create_service()
        code, document, _ = self.call(
            "PUT", "/api/services/" + service["id"], {"config": dict(POSTGRES, port=-1)}
        )
        self.assertEqual(code, 400)
        self.assertIn("'config.port'", document["error"])
        read = self.call("GET", "/api/services/" + service["id"])[1]["data"]
        self.assertEqual(read["config"]["port"], 5432)
        self.assertEqual(self.registry.events, [("configure", service["id"])])

    def test_duplicate_name_is_409(self):
        """Two services cannot share a name, in any case; renaming onto a taken name is refused too."""
        self.create_service()
        for name in ("main-db", "MAIN-DB"):
            code, document, _ = self.call(
                "POST", "/api/services", {"name": name, "service_type": "sqlite"}
            )
            self.assertEqual(code, 409, name)
            self.assertIn("already exists", document["error"])
        other = self.create_service(name="other", service_type="sqlite", config={})
        code, document, _ = self.call("PUT", "/api/services/" + other["id"], {"name": "main-db"})
        self.assertEqual(code, 409)

    # services: update

    def test_put_back_what_get_returned_keeps_the_secret(self):
        """A record read with GET (password masked) sent back with PUT keeps the stored password."""
        service = self.create_service()
        read = self.call("GET", "/api/services/" + service["id"])[1]["data"]
        read["config"]["host"] = "db2.internal"
        code, document, _ = self.call("PUT", "/api/services/" + service["id"], read)
        self.assertEqual(code, 200, document)
        self.assertEqual(document["data"]["config"]["host"], "db2.internal")
        configured = self.registry.configured[service["id"]]["config"]
        self.assertEqual((configured["host"], configured["password"]), ("db2.internal", SECRET))
        stored = self.successResultOf(self.store.get_service(service["id"]))
        self.assertEqual(stored["config"]["password"], SECRET)

    def test_unchanged_put_keeps_the_connector(self):
        """A record PUT back as read changes nothing: the registry is not told again."""
        service = self.create_service()
        read = self.call("GET", "/api/services/" + service["id"])[1]["data"]
        code, document, _ = self.call("PUT", "/api/services/" + service["id"], read)
        self.assertEqual((code, document["data"]), (200, read))
        self.assertEqual(self.registry.events, [("configure", service["id"])])

    def test_put_new_secret_replaces_it(self):
        """A new password sent with PUT is stored and given to the registry."""
        service = self.create_service()
        self.call("PUT", "/api/services/" + service["id"], {"config": dict(POSTGRES, password="new-pw")})
        self.assertEqual(self.registry.configured[service["id"]]["config"]["password"], "new-pw")

    def test_put_rename_reconfigures(self):
        """A rename alone is stored and the registry is told the new record."""
        service = self.create_service()
        code, document, _ = self.call("PUT", "/api/services/" + service["id"], {"name": "renamed"})
        self.assertEqual((code, document["data"]["name"]), (200, "renamed"))
        self.assertEqual(self.registry.configured[service["id"]]["name"], "renamed")

    def test_service_type_cannot_change(self):
        """PUT with another service_type answers 400; the same type is accepted."""
        service = self.create_service()
        code, document, _ = self.call(
            "PUT", "/api/services/" + service["id"], {"service_type": "redis", "config": {"host": "x"}}
        )
        self.assertEqual(code, 400)
        self.assertIn("'service_type' cannot change", document["error"])
        code, _, _ = self.call("PUT", "/api/services/" + service["id"], {"service_type": "postgres"})
        self.assertEqual(code, 200)

    # services: delete, unknown ids, test

    def test_delete_removes_from_store_and_registry(self):
        """DELETE answers deleted, the registry closes the connector, and the id is gone."""
        service = self.create_service()
        code, document, _ = self.call("DELETE", "/api/services/" + service["id"])
        self.assertEqual((code, document["data"]), (200, {"id": service["id"], "deleted": True}))
        self.assertEqual(self.registry.removed, [service["id"]])
        self.assertEqual(self.call("GET", "/api/services/" + service["id"])[0], 404)

    def test_delete_of_a_bound_service_is_409_naming_the_bindings(self):
        """A bound service is not deleted: 409 names each endpoint and binding name."""
        service = self.create_service()
        endpoint = self.create_endpoint()
        self.bind(endpoint["id"], service["id"], "main")
        self.bind(endpoint["id"], service["id"], "replica")
        code, document, _ = self.call("DELETE", "/api/services/" + service["id"])
        self.assertEqual(code, 409)
        self.assertIn("'hello' as 'main'", document["error"])
        self.assertIn("'hello' as 'replica'", document["error"])
        self.assertEqual(
            document["bindings"],
            [
                {"endpoint_id": endpoint["id"], "endpoint_name": "hello", "pool_id": "main"},
                {"endpoint_id": endpoint["id"], "endpoint_name": "hello", "pool_id": "replica"},
            ],
        )
        self.assertEqual(self.registry.removed, [])
        self.assertEqual(self.call("GET", "/api/services/" + service["id"])[0], 200)

    def test_unknown_service_id_is_404(self):
        """Every per-service call on an unknown id answers 404."""
        for method, suffix in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/test")):
            code, document, _ = self.call(method, "/api/services/nope" + suffix, {"name": "x"})
            self.assertEqual(code, 404, (method, suffix))
            self.assertEqual(document["error"], "no service with id 'nope'")

    def test_test_answers_latency(self):
        """POST /api/services/{id}/test answers the registry's latency; it tested the clear config."""
        service = self.create_service()
        self.registry.test_result = succeed({"latency_ms": 2.25})
        code, document, _ = self.call("POST", "/api/services/%s/test" % service["id"])
        self.assertEqual((code, document), (200, {"ok": True, "data": {"latency_ms": 2.25}}))
        self.assertEqual(self.registry.tested[0]["config"]["password"], SECRET)

    def test_test_failure_is_502_with_the_backend_message(self):
        """A failed test answers 502 with the backend's message and the error kind."""
        service = self.create_service()
        self.registry.test_result = fail(
            service_error("ServiceUnavailable", 'could not connect to server: "db.internal"')
        )
        code, document, _ = self.call("POST", "/api/services/%s/test" % service["id"])
        self.assertEqual(code, 502)
        self.assertEqual(
            document,
            {
                "ok": False,
                "error": 'could not connect to server: "db.internal"',
                "kind": "ServiceUnavailable",
            },
        )

    # bindings

    def test_bind_shows_on_endpoint_reads(self):
        """A binding answers 201 and appears in the endpoint's GET, the list and its services call."""
        service = self.create_service()
        endpoint = self.create_endpoint()
        self.assertEqual(endpoint["services"], {})
        code, document, _ = self.bind(endpoint["id"], service["id"], "main")
        self.assertEqual(code, 201, document)
        self.assertEqual(
            {k: document["data"][k] for k in ("endpoint_id", "pool_id", "service_id", "replaced")},
            {
                "endpoint_id": endpoint["id"],
                "pool_id": "main",
                "service_id": service["id"],
                "replaced": None,
            },
        )
        expected = {"main": service["id"]}
        self.assertEqual(self.bound(endpoint["id"]), expected)
        self.assertEqual(self.call("GET", "/api/endpoints")[1]["data"]["items"][0]["services"], expected)
        listed = self.call("GET", "/api/endpoints/%s/services" % endpoint["id"])[1]["data"]
        self.assertEqual(listed, expected)
        self.assertEqual(self.registry.bound, {endpoint["id"]: expected})

    def test_binding_a_name_again_replaces_it(self):
        """POSTing a pool_id already bound points it at the new service: 200 with the replaced id."""
        first = self.create_service()
        second = self.create_service(name="second")
        endpoint = self.create_endpoint()
        self.bind(endpoint["id"], first["id"], "main")
        code, document, _ = self.bind(endpoint["id"], second["id"], "main")
        self.assertEqual((code, document["data"]["replaced"]), (200, first["id"]))
        self.assertEqual(self.bound(endpoint["id"]), {"main": second["id"]})
        self.assertEqual(self.registry.bound[endpoint["id"]], {"main": second["id"]})
        # the first service is free again
        self.assertEqual(self.call("DELETE", "/api/services/" + first["id"])[0], 200)

    def test_one_service_under_two_names_unbinds_by_name(self):
        """A service bound as two names loses only the name given to DELETE."""
        service = self.create_service()
        endpoint = self.create_endpoint()
        self.bind(endpoint["id"], service["id"], "main")
        self.bind(endpoint["id"], service["id"], "replica")
        code, document, _ = self.call("DELETE", "/api/endpoints/%s/services/replica" % endpoint["id"])
        self.assertEqual(code, 200, document)
        self.assertEqual(
            document["data"],
            {
                "endpoint_id": endpoint["id"],
                "pool_id": "replica",
                "service_id": service["id"],
                "deleted": True,
            },
        )
        self.assertEqual(self.bound(endpoint["id"]), {"main": service["id"]})
        self.assertEqual(self.registry.bound[endpoint["id"]], {"main": service["id"]})
        self.assertIn(("unbind", endpoint["id"], "replica"), self.registry.events)

    def test_unbind_unknown_name_is_404(self):
        """Unbinding a name that is not bound answers 404, also the second time."""
        service = self.create_service()
        endpoint = self.create_endpoint()
        self.bind(endpoint["id"], service["id"], "main")
        self.assertEqual(self.call("DELETE", "/api/endpoints/%s/services/main" % endpoint["id"])[0], 200)
        code, document, _ = self.call("DELETE", "/api/endpoints/%s/services/main" % endpoint["id"])
        self.assertEqual(code, 404)
        self.assertIn("no service bound as 'main'", document["error"])

    def test_unbind_by_service_id_is_404_naming_the_binding_names(self):
        """A client that sends the service id (as spec/API.md's path reads) is told the names to use."""
        service = self.create_service()
        endpoint = self.create_endpoint()
        self.bind(endpoint["id"], service["id"], "main")
        code, document, _ = self.call(
            "DELETE", "/api/endpoints/%s/services/%s" % (endpoint["id"], service["id"])
        )
        self.assertEqual(code, 404)
        self.assertIn("is a service id, bound here as 'main'", document["error"])
        self.assertEqual(self.registry.bound[endpoint["id"]], {"main": service["id"]})

    def test_bind_unknown_endpoint_or_service_is_404(self):
        """Binding to an unknown endpoint, or an unknown service, answers 404 and binds nothing."""
        service = self.create_service()
        endpoint = self.create_endpoint()
        code, document, _ = self.bind("nope", service["id"])
        self.assertEqual((code, document["error"]), (404, "no endpoint with id 'nope'"))
        code, document, _ = self.bind(endpoint["id"], "nope")
        self.assertEqual((code, document["error"]), (404, "no service with id 'nope'"))
        self.assertEqual(self.registry.bound, {})
        for method in ("GET",):
            self.assertEqual(self.call(method, "/api/endpoints/nope/services")[0], 404)
        self.assertEqual(self.call("DELETE", "/api/endpoints/nope/services/main")[0], 404)

    def test_bad_binding_payloads_are_400(self):
        """pool_id must be 1-64 of [A-Za-z0-9_-]; both fields are required; no others are allowed."""
        service = self.create_service()
        endpoint = self.create_endpoint()
        path = "/api/endpoints/%s/services" % endpoint["id"]
        for pool_id in ("", "a b", "x/y", "é", "x" * 65, 7, None):
            code, document, _ = self.call("POST", path, {"service_id": service["id"], "pool_id": pool_id})
            self.assertEqual(code, 400, pool_id)
            self.assertIn("field 'pool_id'", document["error"])
        self.assertEqual(self.bind(endpoint["id"], service["id"], "A_z-09" + "x" * 58)[0], 201)
        for body, message in (
            ({"pool_id": "main"}, "missing field 'service_id'"),
            ({"service_id": service["id"]}, "missing field 'pool_id'"),
            ({"service_id": 3, "pool_id": "main"}, "field 'service_id' must be a string"),
            ({"service_id": service["id"], "pool_id": "main", "alias": "x"}, "unknown field 'alias'"),
        ):
            code, document, _ = self.call("POST", path, body)
            self.assertEqual((code, document["error"]), (400, message))
        code, document, _ = self.call("POST", path, ["main"])
        self.assertEqual(code, 400)

    def test_endpoint_record_with_services_can_be_put_back(self):
        """An endpoint read with GET, services included, can be sent back with PUT; bindings stay."""
        service = self.create_service()
        endpoint = self.create_endpoint()
        self.bind(endpoint["id"], service["id"], "main")
        read = self.call("GET", "/api/endpoints/" + endpoint["id"])[1]["data"]
        read["services"] = {}
        code, document, _ = self.call("PUT", "/api/endpoints/" + endpoint["id"], read)
        self.assertEqual(code, 200, document)
        self.assertEqual(document["data"]["services"], {"main": service["id"]})

    def test_deleting_an_endpoint_deletes_its_bindings(self):
        """Deleting an endpoint unbinds it in the store and the registry; its services can then go."""
        service = self.create_service()
        endpoint = self.create_endpoint()
        self.bind(endpoint["id"], service["id"], "main")
        self.bind(endpoint["id"], service["id"], "replica")
        self.assertEqual(self.call("DELETE", "/api/endpoints/" + endpoint["id"])[0], 200)
        self.assertEqual(self.registry.bound[endpoint["id"]], {})
        self.assertEqual(self.successResultOf(self.store.list_bindings()), [])
        self.assertEqual(self.call("DELETE", "/api/services/" + service["id"])[0], 200)


class ServiceLoadTests(unittest.TestCase):
    """What a gateway start gives the registry, from a store written by an earlier run."""

    def test_reopened_store_restores_services_and_bindings(self):
        """After reopening the store, load() configures every service (clear secrets) then binds."""
        reactor = SynchronousReactor()
        store = make_store(self, reactor)
        first = ServiceManager(store, FakeRegistry())
        manager = EndpointManager(store, FakeBuilder(), RouteTable(), FakePool, LogBook(reactor))
        service = self.successResultOf(
            first.create({"name": "main-db", "service_type": "postgres", "config": dict(POSTGRES)})
        )
        endpoint = self.successResultOf(
            manager.create({"name": "hello", "path": "/hello", "method": "GET", "code": HELLO})
        )
        self.successResultOf(first.bind(endpoint["id"], {"service_id": service["id"], "pool_id": "main"}))
        store.close()

        reactor = SynchronousReactor()
        again = SQLiteStore(store.path, reactor=reactor, threadpool=reactor.getThreadPool())
        self.successResultOf(again.open())
        self.addCleanup(again.close)
        registry = FakeRegistry()
        loaded = self.successResultOf(ServiceManager(again, registry).load())
        self.assertEqual(loaded, (1, 1))
        self.assertEqual(
            registry.events,
            [("configure", service["id"]), ("bind", endpoint["id"], "main", service["id"])],
        )
        self.assertEqual(registry.configured[service["id"]]["config"]["password"], SECRET)

    def test_a_service_the_registry_refuses_does_not_stop_the_load(self):
        """One service whose connector cannot be made is logged; the rest still load."""
        store = make_store(self)
        writer = ServiceManager(store, FakeRegistry())
        bad = self.successResultOf(writer.create({"name": "bad", "service_type": "sqlite"}))
        good = self.successResultOf(writer.create({"name": "good", "service_type": "sqlite"}))
        registry = FakeRegistry()
        original = registry.configure

        def configure(service):
            if service["id"] == bad["id"]:
                raise RuntimeError("driver missing")
            original(service)

        registry.configure = configure
        self.successResultOf(ServiceManager(store, registry).load())
        self.assertEqual(list(registry.configured), [good["id"]])


class ServiceSyncTests(unittest.TestCase):
    """
    ``ServiceManager.sync``: another node (a second manager on the same store,
    with its own registry) changes services and bindings; this node's registry
    follows by difference.
    """

    def setUp(self):
        reactor = SynchronousReactor()
        self.store = make_store(self, reactor)
        self.other = ServiceManager(self.store, FakeRegistry())
        self.endpoints = EndpointManager(self.store, FakeBuilder(), RouteTable(), FakePool, LogBook(reactor))
        self.registry = FakeRegistry()
        self.here = ServiceManager(self.store, self.registry)
        self.successResultOf(self.here.load())

    def service(self, name="main-db", **config):
        """A service made by the other node."""
        return self.successResultOf(
            self.other.create({"name": name, "service_type": "postgres", "config": dict(POSTGRES, **config)})
        )

    def endpoint(self, name="hello"):
        """An endpoint (of the shared store)."""
        return self.successResultOf(
            self.endpoints.create({"name": name, "path": "/" + name, "method": "GET", "code": HELLO})
        )

    def sync(self):
        """Sync this node; fire with what it did, the registry's events from here on cleared."""
        del self.registry.events[:]
        return self.successResultOf(self.here.sync())

    def test_new_services_and_bindings_are_configured_and_bound(self):
        """A service and a binding made elsewhere reach this node's registry."""
        service = self.service()
        endpoint = self.endpoint()
        self.successResultOf(self.other.bind(endpoint["id"], {"service_id": service["id"], "pool_id": "main"}))
        self.assertEqual(self.sync(), {"configured": 1, "removed": 0, "bound": 1, "unbound": 0})
        self.assertEqual(
            self.registry.events,
            [("configure", service["id"]), ("bind", endpoint["id"], "main", service["id"])],
        )
        self.assertEqual(self.registry.configured[service["id"]]["config"]["password"], SECRET)

    def test_only_a_changed_service_is_configured_again(self):
        """A config change remakes that connector; an unchanged service keeps its own (and its connections)."""
        changed = self.service("one")
        self.service("two")
        self.sync()
        self.successResultOf(self.other.update(changed["id"], {"config": dict(POSTGRES, database="other")}))
        self.assertEqual(self.sync(), {"configured": 1, "removed": 0, "bound": 0, "unbound": 0})
        self.assertEqual(self.registry.events, [("configure", changed["id"])])
        self.assertEqual(self.registry.configured[changed["id"]]["config"]["database"], "other")

    def test_nothing_changed_does_nothing(self):
        """A sync with the registry already in step tells it nothing."""
        service = self.service()
        endpoint = self.endpoint()
        self.successResultOf(self.other.bind(endpoint["id"], {"service_id": service["id"], "pool_id": "main"}))
        self.sync()
        self.assertEqual(self.sync(), {"configured": 0, "removed": 0, "bound": 0, "unbound": 0})
        self.assertEqual(self.registry.events, [])

    def test_a_rebound_name_and_a_removed_binding_follow(self):
        """A binding pointed at another service is bound again; one removed elsewhere is unbound here."""
        first, second = self.service("one"), self.service("two")
        endpoint = self.endpoint()
        for pool_id in ("main", "cache"):
            self.successResultOf(self.other.bind(endpoint["id"], {"service_id": first["id"], "pool_id": pool_id}))
        self.sync()
        self.successResultOf(self.other.bind(endpoint["id"], {"service_id": second["id"], "pool_id": "main"}))
        self.successResultOf(self.other.unbind(endpoint["id"], "cache"))
        self.assertEqual(self.sync(), {"configured": 0, "removed": 0, "bound": 1, "unbound": 1})
        self.assertEqual(self.registry.bindings(endpoint["id"]), {"main": second["id"]})

    def test_a_deleted_service_is_removed(self):
        """A service deleted elsewhere is closed and forgotten here; the others stay."""
        doomed, kept = self.service("one"), self.service("two")
        self.sync()
        self.successResultOf(self.other.delete(doomed["id"]))
        self.assertEqual(self.sync(), {"configured": 0, "removed": 1, "bound": 0, "unbound": 0})
        self.assertEqual(self.registry.events, [("remove", doomed["id"])])
        self.assertEqual(list(self.registry.configured), [kept["id"]])

    def test_the_bindings_of_a_deleted_endpoint_are_unbound(self):
        """An endpoint deleted elsewhere (its bindings with it) leaves no binding in this registry."""
        service = self.service()
        endpoint = self.endpoint()
        self.successResultOf(self.other.bind(endpoint["id"], {"service_id": service["id"], "pool_id": "main"}))
        self.sync()
        self.successResultOf(self.endpoints.delete(endpoint["id"]))
        self.assertEqual(self.sync()["unbound"], 1)
        self.assertEqual(self.registry.bindings(endpoint["id"]), {})


class RevisionTests(unittest.TestCase):
    """``revision=`` (an If-Match) on the service writes: passed to the store, ``Stale`` unchanged."""

    def setUp(self):
        self.store = make_store(self)
        self.services = ServiceManager(self.store, FakeRegistry())
        self.record = self.successResultOf(self.services.create({"name": "db", "service_type": "sqlite"}))

    def test_an_update_at_the_current_revision_is_applied(self):
        """The revision read is the one the record has: the change is made (and the revision moves on)."""
        updated = self.successResultOf(
            self.services.update(self.record["id"], {"name": "db2"}, revision=self.record["revision"])
        )
        self.assertEqual(updated["name"], "db2")
        self.assertNotEqual(updated["revision"], self.record["revision"])

    def test_a_stale_revision_changes_nothing(self):
        """Someone else wrote the record first: ``Stale`` naming its revision now, for update and delete."""
        from edgegw_tx.store.errors import Stale

        now = self.successResultOf(self.services.update(self.record["id"], {"name": "db2"}))
        failure = self.failureResultOf(
            self.services.update(self.record["id"], {"name": "db3"}, revision=self.record["revision"]), Stale
        )
        self.assertEqual(failure.value.current, now["revision"])
        self.failureResultOf(self.services.delete(self.record["id"], revision=self.record["revision"]), Stale)
        self.assertEqual(self.successResultOf(self.services.get(self.record["id"]))["name"], "db2")


class RuntimeWiringTests(unittest.TestCase):
    """GatewayRuntime with a fake registry, a memory reactor and a real store file."""

    def make_runtime(self, registry):
        from edgegw_tx.runtime import GatewayRuntime

        reactor = SynchronousReactor()
        # adbapi's own thread pool would need a running reactor; run the store inline.
        store = SQLiteStore(
            os.path.join(self.data_dir, "edgegw.sqlite3"), reactor=reactor, threadpool=reactor.getThreadPool()
        )
        return GatewayRuntime(
            self.data_dir,
            "tcp:0:interface=127.0.0.1",
            "tcp:0:interface=127.0.0.1",
            sdk_path=os.path.abspath("rust_sdk"),
            reactor=reactor,
            registry=registry,
            store=store,
        )

    def setUp(self):
        self.data_dir = os.path.abspath(self.mktemp())

    def test_start_loads_services_before_restoring_endpoints(self):
        """A second start gives the registry the stored services and bindings before restore runs."""
        registry = FakeRegistry()
        runtime = self.make_runtime(registry)
        self.successResultOf(runtime.startService())
        service = self.successResultOf(
            runtime.service_manager.create({"name": "files", "service_type": "sqlite"})
        )
        endpoint = self.successResultOf(
            runtime.manager.create({"name": "hello", "path": "/hello", "method": "GET", "code": HELLO})
        )
        self.successResultOf(
            runtime.service_manager.bind(endpoint["id"], {"service_id": service["id"], "pool_id": "files"})
        )
        self.successResultOf(runtime.stopService())
        self.assertEqual(registry.events[-1], ("close",))

        events = []
        registry = FakeRegistry(events)
        runtime = self.make_runtime(registry)
        runtime.manager.restore = lambda: events.append(("restore",))
        self.successResultOf(runtime.startService())
        self.addCleanup(runtime.stopService)
        self.assertEqual(
            events,
            [
                ("configure", service["id"]),
                ("bind", endpoint["id"], "files", service["id"]),
                ("restore",),
            ],
        )

    def test_pools_get_the_endpoints_call_handler(self):
        """The pool factory hands each endpoint's workers the registry's handler for that endpoint."""
        registry = FakeRegistry()
        runtime = self.make_runtime(registry)
        record = {
            "id": "e1",
            "name": "hello",
            "worker_uid": 61184,
            "settings": {"instances": 1, "timeout": 30.0, "env": {}, "pipeline": 16},
        }
        pool = runtime._make_pool(record, "/bin/true", lambda stream, line: None)
        self.assertIs(pool.call_handler, registry.handlers["e1"])

    def test_stop_closes_the_registry_after_the_pools(self):
        """Stopping drains the workers first, then closes the service connectors."""
        events = []
        registry = FakeRegistry(events)
        runtime = self.make_runtime(registry)
        self.successResultOf(runtime.startService())
        original = runtime.manager.stop_all

        def stop_all():
            events.append(("stop_all",))
            return original()

        runtime.manager.stop_all = stop_all
        self.successResultOf(runtime.stopService())
        self.assertEqual(events[-2:], [("stop_all",), ("close",)])
