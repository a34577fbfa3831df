"""
Domains, collections, effective routes and stats through the management API,
against a real Klein app, a real SQLite store and the real route table; the
build and process planes are the fakes of tests/test_admin_api.py.
"""

import uuid

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.testing import StringTransport

from edgegw_tx.gateway.routes import Match, MethodNotAllowed, NoRoute
from tests.support.handlers import HELLO
from tests.support.fakes import FakePool
from tests.support.admin import AdminAPITestCase


class CountingPool(FakePool):
    """A fake pool with the counters of ``WorkerPool.stats()``."""

    def stats(self):
        return {"name": self.name, "workers": 2, "served": 5, "failed": 1, "rejected": 2}


class DomainsAPITests(AdminAPITestCase):
    def build(self):
        """Managers and API over the test's store, as the runtime wires them (and loads them)."""
        super().build(pool_factory=CountingPool)

    def domain(self, host="api.example.com", **more):
        return self.created("/api/domains", dict(host=host, **more))

    def collection(self, name="v1", **more):
        return self.created("/api/collections", dict(name=name, **more))

    def endpoint(self, name="users", path="/users/{id}", method="GET", **more):
        body = dict(name=name, path=path, method=method, code=HELLO, **more)
        return self.created("/api/endpoints", body)

    def running(self, **more):
        """An endpoint compiled and started (its pool is a fake)."""
        return self.started(self.endpoint(**more))

    def assertBadField(self, method, path, body, field):
        code, document = self.call(method, path, body)
        self.assertEqual(code, 400, (body, document))
        self.assertIn("'%s'" % field, document["error"], body)
        return document

    def assertServes(self, host, method, path, endpoint_id, params=None):
        match = self.routes.match(host, method, path)
        self.assertIsInstance(match, Match, (host, method, path))
        self.assertEqual(match.key, endpoint_id)
        if params is not None:
            self.assertEqual(match.params, params)

    def assertNoRoute(self, host, method, path):
        self.assertIsInstance(self.routes.match(host, method, path), NoRoute, (host, method, path))

    # domains: CRUD

    def test_domain_crud(self):
        """POST stores the host lower-cased (201); GET, the list with total, PUT and DELETE work."""
        data = self.domain(host="API.Example.COM", description="public API")
        self.assertEqual((data["host"], data["description"]), ("api.example.com", "public API"))
        self.assertEqual(set(data), {"id", "host", "description", "policy", "created_at", "updated_at", "revision"})
        self.assertEqual(self.call("GET", "/api/domains/" + data["id"])[1]["data"], data)
        listed = self.call("GET", "/api/domains")[1]["data"]
        self.assertEqual((listed["total"], listed["items"]), (1, [data]))
        code, document = self.call("PUT", "/api/domains/" + data["id"], {"description": "v2"})
        self.assertEqual((code, document["data"]["description"]), (200, "v2"))
        code, document = self.call("PUT", "/api/domains/" + data["id"], document["data"])
        self.assertEqual(code, 200, document)
        code, document = self.call("DELETE", "/api/domains/" + data["id"])
        self.assertEqual((code, document["data"]["deleted"]), (200, True))
        self.assertEqual(self.call("GET", "/api/domains/" + data["id"])[0], 404)

    def test_wildcard_domain_record(self):
        """A domain may be '*'; by_host finds records whatever the case of the host asked."""
        self.domain(host="*")
        self.domain(host="shop.example.com")
        self.assertEqual(self.successResultOf(self.domains.by_host("*"))["host"], "*")
        self.assertEqual(
            self.successResultOf(self.domains.by_host("Shop.Example.com"))["host"], "shop.example.com"
        )
        self.assertIsNone(self.successResultOf(self.domains.by_host("nope.example.com")))

    def test_domain_bad_input_is_400_naming_the_field(self):
        """Missing, mistyped or malformed host, a bad description and unknown fields name the field."""
        for body, field in (
            ({}, "host"),
            ({"host": 5}, "host"),
            ({"host": ""}, "host"),
            ({"host": "bad host"}, "host"),
            ({"host": "api.example.com:8080"}, "host"),
            ({"host": "-x.example.com"}, "host"),
            ({"host": "a.example.com", "description": 3}, "description"),
            ({"host": "a.example.com", "hots": "x"}, "hots"),
        ):
            self.assertBadField("POST", "/api/domains", body, field)
        code, document = self.call("POST", "/api/domains", ["api.example.com"])
        self.assertEqual(code, 400)
        self.assertIn("JSON object", document["error"])
        data = self.domain()
        self.assertBadField("PUT", "/api/domains/" + data["id"], {"host": "x y"}, "host")
        self.assertBadField("PUT", "/api/domains/" + data["id"], {"colour": "red"}, "colour")
        self.assertEqual(self.call("GET", "/api/domains")[1]["data"]["total"], 1)

    def test_duplicate_host_is_409(self):
        """A host twice (ignoring case), by POST or by PUT, answers 409 naming the host."""
        self.domain()
        code, document = self.call("POST", "/api/domains", {"host": "API.example.com"})
        self.assertEqual(code, 409)
        self.assertIn("'api.example.com' already exists", document["error"])
        other = self.domain(host="other.example.com")
        code, document = self.call("PUT", "/api/domains/" + other["id"], {"host": "api.example.com"})
        self.assertEqual(code, 409)
        self.assertIn("already exists", document["error"])

    def test_unknown_ids_are_404(self):
        """Every per-domain and per-collection call on an unknown id answers 404 naming it."""
        for method, path in (
            ("GET", "/api/domains/nope"),
            ("PUT", "/api/domains/nope"),
            ("DELETE", "/api/domains/nope"),
            ("GET", "/api/domains/nope/collections"),
            ("GET", "/api/collections/nope"),
            ("PUT", "/api/collections/nope"),
            ("DELETE", "/api/collections/nope"),
            ("GET", "/api/collections/nope/endpoints"),
        ):
            code, document = self.call(method, path, {"description": "x"})
            self.assertEqual(code, 404, (method, path))
            self.assertIn("with id 'nope'", document["error"])

    def test_read_key_reads_only(self):
        """A read key may list domains, collections and stats, not create them."""
        for path in ("/api/domains", "/api/collections", "/api/stats"):
            self.assertEqual(self.call("GET", path, key="read")[0], 200, path)
        self.assertEqual(self.call("POST", "/api/domains", {"host": "a.b"}, key="read")[0], 403)

    # endpoints and domains

    def test_endpoint_domain_must_be_a_known_domain(self):
        """An endpoint's domain is '*' or an existing domain's host, otherwise 400 naming 'domain'."""
        document = self.assertBadField(
            "POST", "/api/endpoints", {"name": "u", "path": "/u", "method": "GET", "domain": "api.example.com"}, "domain"
        )
        self.assertIn("POST /api/domains", document["error"])
        self.endpoint(name="any", path="/any")
        self.domain()
        data = self.endpoint(domain="API.example.com")
        self.assertEqual(data["domain"], "api.example.com")
        self.assertBadField("PUT", "/api/endpoints/" + data["id"], {"domain": "else.example.com"}, "domain")

    def test_startup_creates_domains_and_collections_endpoints_already_use(self):
        """load() gives hosts and collection ids used before schema 3 records; they keep serving."""
        now = "2024-01-01T00:00:00+00:00"
        record = {
            "id": uuid.uuid4().hex,
            "name": "legacy",
            "path": "/old",
            "path_shape": "/old",
            "method": "GET",
            "domain": "legacy.example.com",
            "collection_id": "c-legacy",
            "status": "created",
            "created_at": now,
            "updated_at": now,
        }
        self.successResultOf(self.store.create_endpoint(record))
        self.build()
        [domain] = self.call("GET", "/api/domains")[1]["data"]["items"]
        self.assertEqual(domain["host"], "legacy.example.com")
        code, document = self.call("GET", "/api/collections/c-legacy")
        self.assertEqual((code, document["data"]["base_path"]), (200, ""))
        members = self.call("GET", "/api/collections/c-legacy/endpoints")[1]["data"]
        self.assertEqual([e["id"] for e in members["items"]], [record["id"]])
        self.assertEqual(members["items"][0]["route"], "GET legacy.example.com/old")
        self.assertEqual(self.successResultOf(self.domains.load()), [])

    def test_delete_domain_with_endpoints_is_409_unless_cascade(self):
        """409 names how many endpoints and collections remain; ?cascade=true deletes them, stopping workers."""
        domain = self.domain()
        collection = self.collection(domain_id=domain["id"], base_path="/v1")
        inside = self.running(name="inside", collection_id=collection["id"])
        direct = self.running(name="direct", path="/direct", domain="api.example.com")
        other = self.endpoint(name="elsewhere", path="/elsewhere")
        code, document = self.call("DELETE", "/api/domains/" + domain["id"])
        self.assertEqual(code, 409)
        self.assertIn("2 endpoint(s) and 1 collection(s)", document["error"])
        self.assertEqual((document["endpoints"], document["collections"]), (2, 1))
        self.assertEqual(self.call("DELETE", "/api/domains/%s?cascade=maybe" % domain["id"])[0], 400)
        code, document = self.call("DELETE", "/api/domains/%s?cascade=true" % domain["id"])
        self.assertEqual(code, 200, document)
        self.assertEqual(document["data"]["cascaded"], {"endpoints": 2, "collections": 1})
        self.assertTrue(all(pool.stopped for pool in FakePool.instances))
        for gone in ("/api/endpoints/" + inside["id"], "/api/endpoints/" + direct["id"],
                     "/api/collections/" + collection["id"], "/api/domains/" + domain["id"]):
            self.assertEqual(self.call("GET", gone)[0], 404, gone)
        self.assertEqual(self.call("GET", "/api/endpoints/" + other["id"])[0], 200)
        self.assertEqual(len(self.routes), 0)

    def test_domain_host_change_moves_running_endpoints(self):
        """PUT host: the running endpoint answers on the new host at once, not on the old one."""
        domain = self.domain()
        data = self.running(domain="api.example.com")
        code, document = self.call("PUT", "/api/domains/" + domain["id"], {"host": "api2.example.com"})
        self.assertEqual(code, 200, document)
        self.assertServes("api2.example.com", "GET", "/users/7", data["id"], {"id": "7"})
        self.assertNoRoute("api.example.com", "GET", "/users/7")
        record = self.call("GET", "/api/endpoints/" + data["id"])[1]["data"]
        self.assertEqual((record["domain"], record["route"]), ("api2.example.com", "GET api2.example.com/users/{id}"))

    # collections

    def test_collection_crud(self):
        """POST (201, defaults), GET, list (filter by domain_id), PUT back, DELETE."""
        data = self.collection()
        self.assertEqual(
            {k: data[k] for k in ("name", "domain_id", "base_path", "description")},
            {"name": "v1", "domain_id": None, "base_path": "", "description": ""},
        )
        domain = self.domain()
        other = self.collection(name="shops", domain_id=domain["id"], base_path="/shops/{shop}")
        self.assertEqual(self.call("GET", "/api/collections/" + other["id"])[1]["data"], other)
        self.assertEqual(self.call("GET", "/api/collections")[1]["data"]["total"], 2)
        listed = self.call("GET", "/api/collections?domain_id=" + domain["id"])[1]["data"]
        self.assertEqual(listed["items"], [other])
        listed = self.call("GET", "/api/domains/%s/collections" % domain["id"])[1]["data"]
        self.assertEqual(listed["items"], [other])
        self.assertEqual(self.successResultOf(self.collections.list(domain["id"])), [other])
        code, document = self.call("PUT", "/api/collections/" + data["id"], dict(data, base_path="/v1"))
        self.assertEqual((code, document["data"]["base_path"]), (200, "/v1"))
        code, document = self.call("PUT", "/api/collections/" + data["id"], {"domain_id": domain["id"]})
        self.assertEqual((code, document["data"]["domain_id"]), (200, domain["id"]))
        code, document = self.call("DELETE", "/api/collections/" + data["id"])
        self.assertEqual((code, document["data"]["deleted"]), (200, True))
        self.assertEqual(self.call("GET", "/api/collections/" + data["id"])[0], 404)

    def test_collection_bad_input_is_400_naming_the_field(self):
        """Name, domain_id, base_path, description and unknown fields are each named."""
        for body, field in (
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": 1}, "name"),
            ({"name": "v", "domain_id": 5}, "domain_id"),
            ({"name": "v", "domain_id": "nope"}, "domain_id"),
            ({"name": "v", "base_path": "/"}, "base_path"),
            ({"name": "v", "base_path": "v1"}, "base_path"),
            ({"name": "v", "base_path": "/v1/"}, "base_path"),
            ({"name": "v", "base_path": "/a/{"}, "base_path"),
            ({"name": "v", "base_path": "//a"}, "base_path"),
            ({"name": "v", "base_path": None}, "base_path"),
            ({"name": "v", "description": []}, "description"),
            ({"name": "v", "basepath": "/v1"}, "basepath"),
        ):
            self.assertBadField("POST", "/api/collections", body, field)
        data = self.collection()
        self.assertBadField("PUT", "/api/collections/" + data["id"], {"domain_id": "nope"}, "domain_id")
        self.assertBadField("PUT", "/api/collections/" + data["id"], {"base_path": "/x/"}, "base_path")
        self.assertEqual(self.call("GET", "/api/collections")[1]["data"]["total"], 1)

    def test_endpoint_collection_id_must_exist(self):
        """An endpoint naming an unknown collection answers 400 naming 'collection_id'."""
        self.assertBadField(
            "POST", "/api/endpoints", {"name": "u", "path": "/u", "method": "GET", "collection_id": "nope"}, "collection_id"
        )
        data = self.endpoint()
        self.assertBadField("PUT", "/api/endpoints/" + data["id"], {"collection_id": "nope"}, "collection_id")

    def test_collection_serves_at_base_path_on_its_domain(self):
        """An endpoint in a collection is routed at base_path + path on the collection's host."""
        domain = self.domain()
        shops = self.collection(name="shops", domain_id=domain["id"], base_path="/shops/{shop}")
        data = self.running(path="/users/{id}", collection_id=shops["id"])
        self.assertEqual(data["domain"], "api.example.com")
        self.assertEqual(data["route"], "GET api.example.com/shops/{shop}/users/{id}")
        self.assertEqual(data["path"], "/users/{id}")
        self.assertServes("api.example.com:8080", "GET", "/shops/s1/users/7", data["id"], {"shop": "s1", "id": "7"})
        self.assertNoRoute("api.example.com", "GET", "/users/7")
        self.assertNoRoute("other.example.com", "GET", "/shops/s1/users/7")
        members = self.call("GET", "/api/collections/%s/endpoints" % shops["id"])[1]["data"]
        self.assertEqual((members["total"], members["items"][0]["pids"]), (1, [4242]))

    def test_collection_without_domain_uses_endpoint_domain_and_root_path(self):
        """With no domain the endpoint's own domain is used; path '/' under /v1 is served at /v1."""
        v1 = self.collection(base_path="/v1")
        data = self.running(path="/", collection_id=v1["id"])
        self.assertEqual(data["route"], "GET */v1")
        self.assertServes("anything.example.com", "GET", "/v1", data["id"])
        self.assertNoRoute("anything.example.com", "GET", "/")

    def test_endpoint_domain_against_collection_domain(self):
        """In a collection with a domain, another 'domain' is a 400; the record read with GET can be PUT back."""
        domain = self.domain()
        self.domain(host="other.example.com")
        tied = self.collection(domain_id=domain["id"], base_path="/v1")
        self.assertBadField(
            "POST",
            "/api/endpoints",
            {"name": "u", "path": "/u", "method": "GET", "collection_id": tied["id"], "domain": "other.example.com"},
            "domain",
        )
        data = self.endpoint(collection_id=tied["id"], domain="api.example.com")
        code, document = self.call("PUT", "/api/endpoints/" + data["id"], data)
        self.assertEqual(code, 200, document)
        self.assertBadField("PUT", "/api/endpoints/" + data["id"], {"domain": "*"}, "domain")

    def test_duplicate_parameter_through_base_path_is_400(self):
        """A path whose parameter repeats one of the base path's answers 400 naming 'path'."""
        shops = self.collection(base_path="/shops/{shop}")
        document = self.assertBadField(
            "POST", "/api/endpoints", {"name": "u", "path": "/x/{shop}", "method": "GET", "collection_id": shops["id"]}, "path"
        )
        self.assertIn("duplicate parameter", document["error"])

    def test_uniqueness_is_over_effective_routes(self):
        """/users in collection /v1 clashes with a plain /v1/users (409 naming it); in /v2 it does not."""
        plain = self.endpoint(name="plain", path="/v1/users")
        v1 = self.collection(base_path="/v1")
        v2 = self.collection(name="v2", base_path="/v2")
        code, document = self.call(
            "POST", "/api/endpoints", {"name": "x", "path": "/users", "method": "GET", "collection_id": v1["id"]}
        )
        self.assertEqual(code, 409)
        self.assertIn("('plain', id %s) already serves GET /v1/users" % plain["id"], document["error"])
        data = self.endpoint(name="x", path="/users", collection_id=v2["id"])
        code, document = self.call("PUT", "/api/endpoints/" + data["id"], {"collection_id": v1["id"]})
        self.assertEqual(code, 409)
        self.assertIn("'plain'", document["error"])

    def test_moving_a_running_endpoint_between_collections(self):
        """PUT collection_id moves the route at once: the old route answers NoRoute, the new one matches."""
        domain = self.domain()
        v1 = self.collection(base_path="/v1")
        v2 = self.collection(name="v2", base_path="/v2", domain_id=domain["id"])
        data = self.running(collection_id=v1["id"])
        self.assertServes("h", "GET", "/v1/users/1", data["id"])
        code, document = self.call("PUT", "/api/endpoints/" + data["id"], {"collection_id": v2["id"]})
        self.assertEqual(code, 200, document)
        self.assertEqual(document["data"]["route"], "GET api.example.com/v2/users/{id}")
        self.assertServes("api.example.com", "GET", "/v2/users/1", data["id"])
        self.assertNoRoute("h", "GET", "/v1/users/1")
        self.assertNoRoute("h", "GET", "/v2/users/1")
        code, document = self.call("PUT", "/api/endpoints/" + data["id"], {"collection_id": None})
        self.assertEqual(code, 200, document)
        self.assertEqual(document["data"]["route"], "GET api.example.com/users/{id}")
        self.assertServes("api.example.com", "GET", "/users/1", data["id"])
        self.assertNoRoute("api.example.com", "GET", "/v2/users/1")
        self.assertEqual(len(self.routes), 1)

    def test_route_changes_of_a_running_endpoint_are_immediate(self):
        """Path, method and domain changes of a running endpoint move its route at once, same pool."""
        self.domain()
        data = self.running()
        pool = FakePool.instances[-1]
        for change, old, new, after in (
            ({"path": "/people/{pid}"}, ("h", "GET", "/users/3"), ("h", "GET", "/people/3"), NoRoute),
            ({"method": "POST"}, ("h", "GET", "/people/3"), ("h", "POST", "/people/3"), MethodNotAllowed),
            ({"domain": "api.example.com"}, ("h", "POST", "/people/3"), ("api.example.com", "POST", "/people/3"), NoRoute),
        ):
            self.assertIs(self.routes.match(*old).target, pool, change)
            code, document = self.call("PUT", "/api/endpoints/" + data["id"], change)
            self.assertEqual(code, 200, document)
            self.assertIsInstance(self.routes.match(*old), after, change)
            self.assertIs(self.routes.match(*new).target, pool, change)
        self.assertEqual(len(self.routes), 1)

    def test_base_path_change_reroutes_running_endpoints(self):
        """PUT base_path moves every running member at once; a stopped one serves the new path when started."""
        v1 = self.collection(base_path="/v1")
        live = self.running(collection_id=v1["id"])
        idle = self.endpoint(name="idle", path="/idle", collection_id=v1["id"])
        code, document = self.call("PUT", "/api/collections/" + v1["id"], {"base_path": "/v2"})
        self.assertEqual(code, 200, document)
        self.assertServes("h", "GET", "/v2/users/9", live["id"], {"id": "9"})
        self.assertNoRoute("h", "GET", "/v1/users/9")
        self.call("POST", "/api/endpoints/%s/compile" % idle["id"])
        self.assertEqual(self.call("POST", "/api/endpoints/%s/start" % idle["id"])[0], 200)
        self.assertServes("h", "GET", "/v2/idle", idle["id"])
        self.assertEqual(self.call("GET", "/api/endpoints/" + idle["id"])[1]["data"]["route"], "GET */v2/idle")

    def test_base_path_change_onto_a_taken_route_is_409_and_changes_nothing(self):
        """A base path that would put a member on another endpoint's route answers 409 naming both."""
        self.endpoint(name="plain", path="/v2/users/{id}")
        v1 = self.collection(base_path="/v1")
        live = self.running(name="member", collection_id=v1["id"])
        code, document = self.call("PUT", "/api/collections/" + v1["id"], {"base_path": "/v2"})
        self.assertEqual(code, 409)
        self.assertIn("endpoint 'member' would be served at GET */v2/users/{id}", document["error"])
        self.assertIn("'plain'", document["error"])
        self.assertEqual(self.call("GET", "/api/collections/" + v1["id"])[1]["data"]["base_path"], "/v1")
        self.assertServes("h", "GET", "/v1/users/1", live["id"])

    def test_base_path_change_may_move_members_onto_each_others_old_routes(self):
        """Members of one collection shifting onto routes other members are leaving is not a clash."""
        c = self.collection(base_path="")
        a = self.running(name="a", path="/y", collection_id=c["id"])
        b = self.running(name="b", path="/x/y", collection_id=c["id"])
        code, document = self.call("PUT", "/api/collections/" + c["id"], {"base_path": "/x"})
        self.assertEqual(code, 200, document)
        self.assertServes("h", "GET", "/x/y", a["id"])
        self.assertServes("h", "GET", "/x/x/y", b["id"])
        self.assertNoRoute("h", "GET", "/y")

    def test_base_path_making_a_duplicate_parameter_is_409(self):
        """A base path whose parameter repeats a member's is refused naming the member."""
        c = self.collection()
        self.endpoint(name="member", path="/x/{shop}", collection_id=c["id"])
        code, document = self.call("PUT", "/api/collections/" + c["id"], {"base_path": "/s/{shop}"})
        self.assertEqual(code, 409)
        self.assertIn("endpoint 'member'", document["error"])

    def test_collection_domain_change_moves_members(self):
        """Giving a collection a domain moves its members (running ones at once) to that host."""
        domain = self.domain()
        c = self.collection(base_path="/v1")
        live = self.running(collection_id=c["id"])
        code, document = self.call("PUT", "/api/collections/" + c["id"], {"domain_id": domain["id"]})
        self.assertEqual(code, 200, document)
        self.assertServes("api.example.com", "GET", "/v1/users/1", live["id"])
        self.assertNoRoute("other.example.com", "GET", "/v1/users/1")
        listed = self.call("GET", "/api/endpoints?domain=API.example.com")[1]["data"]
        self.assertEqual(([e["id"] for e in listed["items"]], listed["total"]), ([live["id"]], 1))

    def test_delete_collection_with_endpoints_is_409_unless_cascade(self):
        """409 names how many endpoints remain; ?cascade=true deletes them, stopping workers and routes."""
        c = self.collection(base_path="/v1")
        live = self.running(collection_id=c["id"])
        idle = self.endpoint(name="idle", path="/idle", collection_id=c["id"])
        code, document = self.call("DELETE", "/api/collections/" + c["id"])
        self.assertEqual(code, 409)
        self.assertIn("2 endpoint(s)", document["error"])
        self.assertEqual(document["endpoints"], 2)
        code, document = self.call("DELETE", "/api/collections/%s?cascade=true" % c["id"])
        self.assertEqual(code, 200, document)
        self.assertEqual(document["data"]["cascaded"], {"endpoints": 2, "collections": 0})
        self.assertTrue(FakePool.instances[0].stopped)
        self.assertNoRoute("h", "GET", "/v1/users/1")
        for gone in (live["id"], idle["id"]):
            self.assertEqual(self.call("GET", "/api/endpoints/" + gone)[0], 404)

    def test_endpoint_list_filters(self):
        """The endpoint list filters by domain and collection_id and keeps total."""
        self.domain()
        c = self.collection(base_path="/v1")
        a = self.endpoint(name="a", path="/a", collection_id=c["id"])
        b = self.endpoint(name="b", path="/b", domain="api.example.com")
        self.endpoint(name="c", path="/c")
        data = self.call("GET", "/api/endpoints?collection_id=" + c["id"])[1]["data"]
        self.assertEqual(([e["id"] for e in data["items"]], data["total"]), ([a["id"]], 1))
        data = self.call("GET", "/api/endpoints?domain=api.example.com")[1]["data"]
        self.assertEqual(([e["id"] for e in data["items"]], data["total"]), ([b["id"]], 1))
        data = self.call("GET", "/api/endpoints?limit=2&page=2")[1]["data"]
        self.assertEqual((data["total"], data["pages"], len(data["items"])), (3, 2, 1))

    def test_restart_of_gateway_restores_routes_under_base_paths(self):
        """Running endpoints in collections are routed at base_path + path after a restart."""
        c = self.collection(base_path="/v1")
        data = self.running(collection_id=c["id"])
        self.build()
        self.successResultOf(self.manager.restore())
        self.assertServes("h", "GET", "/v1/users/1", data["id"])

    # stats

    def test_stats(self):
        """GET /api/stats counts endpoints by status, requests from the data plane's counters, workers from the pools."""
        self.running(name="a", path="/a")
        self.running(name="b", path="/b")
        stopped = self.running(name="c", path="/c")
        self.call("POST", "/api/endpoints/%s/stop" % stopped["id"])
        self.endpoint(name="d", path="/d")
        self.reactor.advance(12.5)
        code, document = self.call("GET", "/api/stats")
        self.assertEqual(code, 200, document)
        data = document["data"]
        self.assertEqual(
            data["endpoints"],
            {"total": 4, "by_status": {"created": 1, "compiled": 0, "running": 2, "stopped": 1, "error": 0}},
        )
        self.assertEqual(
            data["requests"],
            {
                "served": 0,
                "failed": 0,
                "rejected": 4,
                "mean_ms": None,
                "p50_ms": None,
                # The gateway's own answers' series, there from the start (as on /metrics).
                "by_endpoint": [
                    {"endpoint": "", "id": None, "served": 0, "failed": 0, "mean_ms": None, "p50_ms": None}
                ],
            },
        )
        self.assertEqual(data["workers"], 4)
        self.assertEqual(data["uptime_seconds"], 12.5)
        self.assertTrue(data["version"])

    def send(self, request):
        """``request`` (raw HTTP/1.1) on a new connection to the runtime's data plane; what it answered."""
        protocol = self.runtime.listeners[0].factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        protocol.makeConnection(transport)
        protocol.dataReceived(request)
        return transport.value()

    def test_stats_requests_are_the_metrics_counters(self):
        """
        After answers of two endpoints (200, 500) and the gateway's own 404
        (endpoint ""), sent through the data plane, /api/stats's served and
        failed equal the sum of its per-endpoint counts and of
        edgegw_http_requests_total on /metrics, not the pools' own counters.
        """
        a = self.running(name="a", path="/a")
        self.running(name="b", path="/b")
        statuses = {"a": 200, "b": 500}
        for pool in FakePool.instances:
            pool.request = lambda frame, status=statuses[pool.name]: succeed(
                {"status": status, "headers": {}, "body": "x"}
            )
        for raw, status in (
            (b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", 200),
            (b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", 200),
            (b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n", 500),
            (b"GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n", 404),
        ):
            self.assertIn(b" %d " % status, self.send(raw))
        requests = self.call("GET", "/api/stats")[1]["data"]["requests"]
        by_endpoint = {e["endpoint"]: (e["id"], e["served"], e["failed"]) for e in requests["by_endpoint"]}
        self.assertEqual(by_endpoint, {"": (None, 1, 0), "a": (a["id"], 2, 0), "b": (by_endpoint["b"][0], 1, 1)})
        self.assertEqual((requests["served"], requests["failed"]), (4, 1))
        self.assertEqual(requests["served"], sum(e["served"] for e in requests["by_endpoint"]))
        self.assertEqual(requests["rejected"], 4)  # the pools' own (CountingPool), in no request count
        self.assertIsNotNone(requests["p50_ms"])

        d = self.client.request("GET", "http://admin/metrics", headers={"Authorization": "Bearer " + self.read_key})
        self.client.flush()
        text = self.successResultOf(self.successResultOf(d).content()).decode("utf-8")
        answered = [
            (s.labels["endpoint"], int(s.labels["code"]), s.value)
            for family in text_string_to_metric_families(text)
            if family.name == "edgegw_http_requests"
            for s in family.samples
        ]
        self.assertEqual(requests["served"], sum(n for _, _, n in answered))
        self.assertEqual(requests["failed"], sum(n for _, code, n in answered if code >= 500))
        self.assertIn(("", 404, 1), answered)

    # a cluster: If-Match revisions, and changes another node made

    def test_domain_writes_at_a_stale_revision_change_nothing(self):
        """``revision=`` of an update or a (cascading) delete that is not the domain's: Stale, nothing deleted."""
        from edgegw_tx.store.errors import Stale

        data = self.domain()
        member = self.endpoint(domain="api.example.com")
        failure = self.failureResultOf(self.domains.update(data["id"], {"description": "x"}, revision=-1), Stale)
        self.assertEqual(failure.value.current, data["revision"])
        self.failureResultOf(self.domains.delete(data["id"], cascade=True, revision=-1), Stale)
        self.assertEqual(self.call("GET", "/api/endpoints/" + member["id"])[0], 200)
        updated = self.successResultOf(self.domains.update(data["id"], {"description": "x"}, revision=data["revision"]))
        self.successResultOf(self.domains.delete(data["id"], cascade=True, revision=updated["revision"]))
        self.assertEqual(self.call("GET", "/api/endpoints/" + member["id"])[0], 404)

    def test_collection_writes_at_a_stale_revision_change_nothing(self):
        """The same for a collection's update and delete."""
        from edgegw_tx.store.errors import Stale

        data = self.collection(base_path="/v1")
        self.failureResultOf(self.collections.update(data["id"], {"base_path": "/v2"}, revision=-1), Stale)
        self.failureResultOf(self.collections.delete(data["id"], revision=-1), Stale)
        self.assertEqual(self.successResultOf(self.collections.get(data["id"]))["base_path"], "/v1")
        self.successResultOf(self.collections.update(data["id"], {"base_path": "/v2"}, revision=data["revision"]))

    def test_endpoint_delete_at_a_stale_revision_keeps_it_running(self):
        """A delete whose revision is not the endpoint's is Stale before its pool is touched."""
        from edgegw_tx.store.errors import Stale

        data = self.running()
        self.failureResultOf(self.manager.delete(data["id"], revision=data["revision"] + 1000), Stale)
        self.failureResultOf(self.manager.update(data["id"], {"name": "x"}, revision=data["revision"] + 1000), Stale)
        self.assertServes("any.host", "GET", "/users/7", data["id"])
        current = self.successResultOf(self.manager.get(data["id"]))
        self.successResultOf(self.manager.delete(data["id"], revision=current["revision"]))
        self.assertNoRoute("any.host", "GET", "/users/7")

    def test_a_base_path_changed_elsewhere_moves_the_route_after_a_reload(self):
        """Another node's collection change: ``collections.load`` then ``reconcile_all`` reroutes the pool here."""
        collection = self.collection(base_path="/v1")
        data = self.running(collection_id=collection["id"])
        self.assertServes("any.host", "GET", "/v1/users/7", data["id"])
        self.successResultOf(
            self.store.update_collection(collection["id"], {"base_path": "/v2"}, [(data["id"], "*", ("/v2/users/{}",))])
        )
        self.successResultOf(self.collections.load())
        self.assertEqual(self.successResultOf(self.manager.reconcile_all()), {data["id"]: "rerouted"})
        self.assertServes("any.host", "GET", "/v2/users/7", data["id"])
        self.assertNoRoute("any.host", "GET", "/v1/users/7")
