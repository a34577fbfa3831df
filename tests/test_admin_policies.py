"""
The ``policy`` of domains, collections and endpoints over the management
API (admin/policies.py): validation with the field named, masking,
inheritance and where each part came from, and running endpoints placed
again when a policy they inherit changes.
"""

from edgegw_tx.gateway.routes import Match
from tests.support.admin import AdminAPITestCase
from tests.support.handlers import HELLO

SECRET = "s" * 40
CORS = {"allow_origins": ["https://app.example.com"]}
JWT = {"type": "jwt", "algorithms": ["HS256"], "secret": SECRET}


class PolicyAPITests(AdminAPITestCase):
    """policy on each level: stored, checked, masked, inherited."""

    def endpoint(self, **more):
        """A new endpoint at GET /users/{id}."""
        return self.created("/api/endpoints", dict(name="users", path="/users/{id}", method="GET", code=HELLO, **more))

    def running(self, **more):
        """An endpoint compiled and started (its pool is a fake)."""
        return self.started(self.endpoint(**more))

    def assertRefused(self, method, path, body, field):
        """A 400 whose ``field`` is ``field`` and whose message names it."""
        code, document = self.call(method, path, body)
        self.assertEqual(code, 400, (body, document))
        self.assertEqual(document["field"], field, document)
        self.assertIn(field, document["error"])
        return document

    def placed_policy(self, path="/users/1"):
        """The compiled policy the route table holds for GET ``path`` (None: none)."""
        match = self.routes.match("h", "GET", path)
        self.assertIsInstance(match, Match)
        return match.policy

    def test_each_level_stores_and_answers_its_policy(self):
        """A policy given on POST of a domain, collection and endpoint is answered by GET; none is {}."""
        domain = self.created("/api/domains", {"host": "api.example.com", "policy": {"cors": CORS}})
        collection = self.created("/api/collections", {"name": "c", "policy": {"limits": {"timeout": 5}}})
        endpoint = self.endpoint(policy={"rate_limit": {"requests": 10, "per_seconds": 60, "key": "ip"}})
        self.assertEqual(self.call("GET", "/api/domains/" + domain["id"])[1]["data"]["policy"], {"cors": CORS})
        self.assertEqual(
            self.call("GET", "/api/collections/" + collection["id"])[1]["data"]["policy"], {"limits": {"timeout": 5}}
        )
        self.assertEqual(
            self.call("GET", "/api/endpoints/" + endpoint["id"])[1]["data"]["policy"],
            {"rate_limit": {"requests": 10, "per_seconds": 60, "key": "ip"}},
        )
        self.assertEqual(self.created("/api/domains", {"host": "b.example.com"})["policy"], {})
        # null parts are dropped (they inherit); PUT without policy keeps it
        code, document = self.call("PUT", "/api/domains/" + domain["id"], {"policy": {"cors": CORS, "ip": None}})
        self.assertEqual(document["data"]["policy"], {"cors": CORS})
        code, document = self.call("PUT", "/api/domains/" + domain["id"], {"description": "x"})
        self.assertEqual((code, document["data"]["policy"]), (200, {"cors": CORS}))

    def test_each_refusal_names_its_field(self):
        """Schema and part rules, unknown parts and fields, and traffic_split off endpoints are 400s naming the field."""
        endpoint = self.endpoint()
        collection = self.created("/api/collections", {"name": "c"})
        domain = self.created("/api/domains", {"host": "api.example.com"})
        self.assertRefused("PUT", "/api/endpoints/" + endpoint["id"], {"policy": {"cors": {"allow_origins": ["nope"]}}},
                           "policy.cors.allow_origins[0]")
        self.assertRefused("PUT", "/api/endpoints/" + endpoint["id"],
                           {"policy": {"cors": {"allow_origins": ["*"], "allow_credentials": True}}},
                           "policy.cors.allow_credentials")
        self.assertRefused("PUT", "/api/endpoints/" + endpoint["id"], {"policy": {"waf": {}}}, "policy.waf")
        self.assertRefused("PUT", "/api/endpoints/" + endpoint["id"],
                           {"policy": {"limits": {"timeout": 5, "retries": 2}}}, "policy.limits.retries")
        self.assertRefused("PUT", "/api/endpoints/" + endpoint["id"], {"policy": {"ip": {"allow": ["10.0.0.300/8"]}}},
                           "policy.ip.allow[0]")
        self.assertRefused("PUT", "/api/endpoints/" + endpoint["id"], {"policy": []}, "policy")
        split = {"traffic_split": {"versions": [{"version": "abc", "weight": 100}]}}
        self.assertRefused("PUT", "/api/collections/" + collection["id"], {"policy": split}, "policy.traffic_split")
        self.assertRefused("PUT", "/api/domains/" + domain["id"], {"policy": split}, "policy.traffic_split")
        self.assertRefused("POST", "/api/collections", {"name": "d", "policy": {"rate_limit": {"requests": 0, "per_seconds": 1, "key": "ip"}}},
                           "policy.rate_limit.requests")
        self.assertRefused("POST", "/api/domains", {"host": "c.example.com", "policy": {"auth": {"type": "jwt"}}},
                           "policy.auth.algorithms")
        # nothing of a refused write was stored
        self.assertEqual(self.call("GET", "/api/endpoints/" + endpoint["id"])[1]["data"]["policy"], {})

    def test_secrets_are_masked_and_a_masked_put_keeps_them(self):
        """GET shows the JWT secret masked; PUT back as read keeps the stored one; another value replaces it."""
        collection = self.created("/api/collections", {"name": "c", "policy": {"auth": JWT}})
        self.assertEqual(collection["policy"]["auth"]["secret"], "********")
        read = self.call("GET", "/api/collections/" + collection["id"])[1]["data"]
        self.assertEqual(read["policy"]["auth"]["secret"], "********")
        code, document = self.call("PUT", "/api/collections/" + collection["id"], dict(read, description="again"))
        self.assertEqual(code, 200, document)
        stored = self.successResultOf(self.store.get_collection(collection["id"]))
        self.assertEqual(stored["policy"]["auth"]["secret"], SECRET)
        other = "t" * 40
        self.call("PUT", "/api/collections/" + collection["id"], {"policy": {"auth": dict(JWT, secret=other)}})
        stored = self.successResultOf(self.store.get_collection(collection["id"]))
        self.assertEqual(stored["policy"]["auth"]["secret"], other)
        # the masked secret with no stored one is missing, not "********"
        endpoint = self.endpoint()
        self.assertRefused("PUT", "/api/endpoints/" + endpoint["id"],
                           {"policy": {"auth": dict(JWT, secret="********")}}, "policy.auth.jwks")

    def test_endpoint_answers_effective_policy_and_sources(self):
        """GET of one endpoint: each part from the nearest level that sets it, masked, and where it came from; PUT back as read."""
        self.created("/api/domains", {"host": "api.example.com", "policy": {"cors": CORS, "auth": JWT}})
        collection = self.created(
            "/api/collections", {"name": "c", "policy": {"cors": {"allow_origins": ["https://other.example.com"]}}}
        )
        endpoint = self.endpoint(domain="api.example.com", collection_id=collection["id"],
                                 policy={"limits": {"timeout": 5}})
        data = self.call("GET", "/api/endpoints/" + endpoint["id"])[1]["data"]
        self.assertEqual(data["policy_sources"], {"cors": "collection", "auth": "domain", "limits": "endpoint"})
        self.assertEqual(data["effective_policy"]["cors"], {"allow_origins": ["https://other.example.com"]})
        self.assertEqual(data["effective_policy"]["auth"]["secret"], "********")
        self.assertEqual(data["effective_policy"]["limits"], {"timeout": 5})
        # what GET answered can be PUT back as it is (effective_policy and policy_sources are read-only)
        code, document = self.call("PUT", "/api/endpoints/" + endpoint["id"], data)
        self.assertEqual((code, document["data"]["policy"]), (200, {"limits": {"timeout": 5}}), document)
        plain = self.created("/api/endpoints", {"name": "p", "path": "/p", "method": "GET", "code": HELLO})
        data = self.call("GET", "/api/endpoints/" + plain["id"])[1]["data"]
        self.assertEqual((data["effective_policy"], data["policy_sources"]), ({}, {}))

    def test_a_policy_change_on_any_level_places_running_routes_again(self):
        """Changing a running endpoint's own, its collection's or its domain's policy, or its collection, changes its route's policy at once."""
        collection = self.created("/api/collections", {"name": "c"})
        other = self.created("/api/collections", {"name": "d", "policy": {"limits": {"timeout": 7}}})
        live = self.running(collection_id=collection["id"])
        self.assertIsNone(self.placed_policy())
        star = self.created("/api/domains", {"host": "*", "policy": {"limits": {"timeout": 2}}})
        self.assertEqual(self.placed_policy().timeout, 2.0, "a new * domain's policy is its endpoints' at once")
        self.call("PUT", "/api/domains/" + star["id"], {"policy": {"limits": {"timeout": 3}}})
        self.assertEqual(self.placed_policy().timeout, 3.0)
        self.call("PUT", "/api/collections/" + collection["id"], {"policy": {"limits": {"timeout": 4}}})
        self.assertEqual(self.placed_policy().timeout, 4.0)
        self.call("PUT", "/api/endpoints/" + live["id"], {"policy": {"limits": {"timeout": 5}}})
        self.assertEqual(self.placed_policy().timeout, 5.0)
        self.call("PUT", "/api/endpoints/" + live["id"], {"policy": None, "collection_id": other["id"]})
        self.assertEqual(self.placed_policy().timeout, 7.0)
        self.call("PUT", "/api/collections/" + other["id"], {"policy": {}})
        self.assertEqual(self.placed_policy().timeout, 3.0)
        self.call("PUT", "/api/domains/" + star["id"], {"policy": None})
        self.assertIsNone(self.placed_policy())

    def test_a_policy_changed_by_another_node_is_placed_after_reload(self):
        """A domain's or endpoint's policy written to the store elsewhere: reloading and reconciling (a follower's batch) places it."""
        star = self.created("/api/domains", {"host": "*"})
        live = self.running()
        self.successResultOf(self.store.update_domain(star["id"], {"policy": {"limits": {"timeout": 6}}}))
        self.assertIsNone(self.placed_policy(), "nothing changes here before the change is applied")
        self.successResultOf(self.collections.load())
        outcomes = self.successResultOf(self.manager.reconcile_all())
        self.assertNotEqual(outcomes[live["id"]], "failed")
        self.assertEqual(self.placed_policy().timeout, 6.0)
        self.successResultOf(self.store.update_endpoint(live["id"], {"policy": {"limits": {"timeout": 8}}}))
        self.successResultOf(self.manager.reconcile(live["id"]))
        self.assertEqual(self.placed_policy().timeout, 8.0)

    def test_traffic_split_names_versions_of_the_endpoint(self):
        """A split's version must be a digest or unique prefix of the endpoint's versions (400 naming it); stored in full."""
        endpoint = self.endpoint()
        digests = ["ab12cd30" + "0" * 56, "ab12cd3f" + "1" * 56]
        for digest in digests:
            self.successResultOf(self.store.record_version({
                "endpoint_id": endpoint["id"], "digest": digest, "code": HELLO, "dependencies": {},
                "compile_seconds": 1.0, "created_at": "2026-01-01T00:00:00+00:00",
            }))
        path = "/api/endpoints/" + endpoint["id"]
        split = {"versions": [{"version": "ab12cd30", "weight": 90}, {"version": "abcdef0", "weight": 10}]}
        document = self.assertRefused(
            "PUT", path, {"policy": {"traffic_split": split}}, "policy.traffic_split.versions[1].version"
        )
        self.assertIn("no version", document["error"])
        split = {"versions": [{"version": "ab12cd3", "weight": 100}]}
        document = self.assertRefused(
            "PUT", path, {"policy": {"traffic_split": split}}, "policy.traffic_split.versions[0].version"
        )
        self.assertIn("the start of 2 versions", document["error"])
        split = {"versions": [{"version": "AB12CD30", "weight": 90}, {"version": digests[1], "weight": 10}]}
        code, document = self.call("PUT", path, {"policy": {"traffic_split": split}})
        self.assertEqual(code, 200, document)
        self.assertEqual(
            document["data"]["policy"]["traffic_split"]["versions"],
            [{"version": digests[0], "weight": 90}, {"version": digests[1], "weight": 10}],
        )
        self.assertRefused("POST", "/api/endpoints",
                           {"name": "n", "path": "/n", "method": "GET", "policy": {"traffic_split": split}},
                           "policy.traffic_split.versions[0].version")
