"""
Traffic policies end to end: a real gateway, a real compiled handler echoing
the identity header fields it receives, real HTTP; the cluster-scope limit
with two data-plane processes counting in the real Redis.

Most tests give the policies to the deployments directly (``policy_of``, as
the endpoint manager passes it), one per part; the last sets a policy and a
consumer through the management API on a running endpoint.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from joserfc import jwt as jose_jwt
from joserfc.jwk import RSAKey
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from edgegw_tx.policy import model, ratelimit
from edgegw_tx.policy.consumers import generate_key, hash_key
from edgegw_tx.services.config import validate_config
from edgegw_tx.services.redis import RedisConnector
from tests.support.harness import GatewayTestCase

ECHO_IDENTITY = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    let field = |name: &str| req.header(name).cloned().unwrap_or_default();
    Response::ok(json!({
        "consumer": field("x-edgegw-consumer"),
        "subject": field("x-edgegw-subject"),
        "claims": field("x-edgegw-claims"),
        "api_key": field("x-api-key"),
    }))
}

handler_loop!(handle);
"""

ORIGIN = "https://app.example.com"
ISSUER = "https://id.example.com"
AUDIENCE = "orders"


class PolicyTestsMixin:
    """Deploys endpoints whose effective policy the test sets by endpoint name."""

    def given_policies(self) -> dict[str, dict[str, Any]]:
        """Endpoint name → its policy; the deployments ask ``policy_of`` for each route placed."""
        policies: dict[str, dict[str, Any]] = {}

        def policy_of(record: dict[str, Any]) -> model.Effective:
            parts = policies.get(record["name"], {})
            return model.Effective(dict(parts), {name: "endpoint" for name in parts})

        self.gateway.runtime.manager.deployments.policy_of = policy_of
        return policies

    @inlineCallbacks
    def deploy_with(self, name: str, path: str, policy: dict[str, Any]) -> Any:
        """Deploy the echo handler at GET ``path`` (no OPTIONS route: the gateway answers preflights) under ``policy``; its record."""
        self.policies[name] = policy
        started = yield self.gateway.deploy(name, None, ECHO_IDENTITY, routes=[("GET", path)])
        return started

    @inlineCallbacks
    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Any:
        """(status, header fields in lower case, decoded JSON body or None)."""
        response, content = yield self.gateway.request(method, path, headers=headers or {})
        fields = {name.decode().lower(): values[-1].decode() for name, values in response.headers.getAllRawHeaders()}
        return response.code, fields, json.loads(content) if content else None


class PolicyIntegrationTests(PolicyTestsMixin, GatewayTestCase):
    """One gateway process: every part of a policy against a real worker."""

    @inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        self.policies = self.given_policies()

    @inlineCallbacks
    def test_cors_preflight_and_headers(self) -> Any:
        """The gateway answers an allowed preflight 204 itself; the worker's answer gets the CORS fields; another origin none."""
        yield self.deploy_with("cors", "/cors", {"cors": {"allow_origins": [ORIGIN], "allow_methods": ["GET"]}})
        status, fields, _ = yield self.get(
            "/cors", {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}, method="OPTIONS"
        )
        self.assertEqual((status, fields["access-control-allow-origin"]), (204, ORIGIN))
        self.assertIn("x-request-id", fields)
        status, fields, body = yield self.get("/cors", {"Origin": ORIGIN})
        self.assertEqual((status, fields["access-control-allow-origin"]), (200, ORIGIN))
        self.assertIn("consumer", body)
        status, fields, _ = yield self.get("/cors", {"Origin": "https://evil.example"})
        self.assertEqual(status, 200)
        self.assertNotIn("access-control-allow-origin", fields)

    @inlineCallbacks
    def test_ip_403(self) -> Any:
        """A client outside ``allow`` gets 403 naming its address."""
        yield self.deploy_with("ip", "/ip", {"ip": {"allow": ["10.0.0.0/8"]}})
        status, _, body = yield self.get("/ip")
        self.assertEqual(status, 403)
        self.assertEqual(body, {"error": "client address 127.0.0.1 is not allowed"})

    @inlineCallbacks
    def test_api_key_401_and_200_and_forged_identity(self) -> Any:
        """No or a wrong key: 401 with a challenge; a stored consumer's key (loaded by the runtime): the handler sees the consumer, not the key nor a forged name."""
        key = generate_key()
        store, stamp = self.gateway.runtime.store, "2026-12-08T00:00:00+00:00"
        yield store.create_consumer({"id": "c1", "name": "shop", "enabled": True, "created_at": stamp, "updated_at": stamp})
        yield store.add_consumer_key({"id": "k1", "consumer_id": "c1", "key_hash": hash_key(key), "created_at": stamp})
        yield self.gateway.runtime.consumers.reload()
        yield self.deploy_with("keyed", "/keyed", {"auth": {"type": "api_key"}})
        status, fields, _ = yield self.get("/keyed", {"X-Edgegw-Consumer": "root"})
        self.assertEqual(status, 401)
        self.assertIn("www-authenticate", fields)
        status, _, _ = yield self.get("/keyed", {"X-API-Key": "wrong"})
        self.assertEqual(status, 401)
        status, _, body = yield self.get("/keyed", {"X-API-Key": key, "X-Edgegw-Consumer": "root"})
        self.assertEqual(status, 200)
        self.assertEqual((body["consumer"], body["api_key"]), ("shop", ""))

    @inlineCallbacks
    def test_jwt_401_and_200(self) -> Any:
        """A token signed by the configured RS256 key: the handler gets its sub and claims; an expired one or none: 401."""
        key = RSAKey.generate_key(2048, {"kid": "k1"})
        jwks = {"keys": [dict(key.as_dict(private=False))]}
        yield self.deploy_with(
            "jwt", "/jwt",
            {"auth": {"type": "jwt", "algorithms": ["RS256"], "issuer": ISSUER, "audience": AUDIENCE, "jwks": jwks}},
        )
        now = int(time.time())

        def token(**claims: Any) -> str:
            payload = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
            return str(jose_jwt.encode({"alg": "RS256", "kid": "k1"}, payload, key, algorithms=["RS256"]))

        status, _, body = yield self.get("/jwt", {"Authorization": "Bearer " + token(), "X-Edgegw-Subject": "root"})
        self.assertEqual(status, 200)
        self.assertEqual((body["subject"], body["consumer"]), ("alice", "alice"))
        self.assertEqual(json.loads(body["claims"])["iss"], ISSUER)
        status, fields, _ = yield self.get("/jwt", {"Authorization": "Bearer " + token(exp=now - 3600)})
        self.assertEqual(status, 401)
        self.assertIn("invalid_token", fields["www-authenticate"])
        status, _, _ = yield self.get("/jwt")
        self.assertEqual(status, 401)

    @inlineCallbacks
    def test_rate_limit_429_with_headers(self) -> Any:
        """Past a node limit: 429 from the gateway with Retry-After and RateLimit-*; within it the worker's answer carries them."""
        yield self.deploy_with("limited", "/limited", {"rate_limit": {"requests": 2, "per_seconds": 60}})
        for remaining in ("1", "0"):
            status, fields, _ = yield self.get("/limited")
            self.assertEqual((status, fields["ratelimit-remaining"]), (200, remaining))
        status, fields, body = yield self.get("/limited")
        self.assertEqual(status, 429)
        self.assertEqual((fields["ratelimit-limit"], fields["ratelimit-remaining"]), ("2", "0"))
        self.assertIn("retry-after", fields)
        self.assertIn("error", body)

    @inlineCallbacks
    def test_policy_change_rerouted(self) -> Any:
        """A changed policy is a drift: reconcile places the new one on the running routes, no restart."""
        record = yield self.deploy_with("changing", "/changing", {})
        status, _, _ = yield self.get("/changing")
        self.assertEqual(status, 200)
        self.policies["changing"] = {"ip": {"deny": ["127.0.0.0/8"]}}
        outcome = yield self.gateway.runtime.manager.reconcile(record["id"])
        self.assertEqual(outcome, "rerouted")
        status, _, _ = yield self.get("/changing")
        self.assertEqual(status, 403)


class ClusterLimitIntegrationTests(PolicyTestsMixin, GatewayTestCase):
    """Two data-plane processes: a cluster-scope limit spends one budget in the real Redis; consumers' keys reach both."""

    runtime_options = {"processes": 2}

    @inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        self.policies = self.given_policies()
        config = validate_config("redis", {"host": "127.0.0.1", "pool_size": 1}, name="cleanup")
        self.redis = RedisConnector(config, name="cleanup", call_timeout=5.0, reactor=reactor)
        self.addCleanup(self.redis.close)

    @inlineCallbacks
    def forget(self, endpoint_id: str, config: dict[str, Any]) -> Any:
        """Delete the keys this test's limit made in Redis."""
        prefix = ratelimit.REDIS_PREFIX + ratelimit.policy_hash(config, f"endpoint:{endpoint_id}") + ":"
        keys = yield self.redis.command(["KEYS", prefix + "*"])
        if keys:
            yield self.redis.command(["DEL", *keys])

    @inlineCallbacks
    def test_two_processes_share_one_budget(self) -> Any:
        """Requests answered by both data-plane processes spend one budget: RateLimit-Remaining falls by one each time, then 429."""
        name = f"rl-{uuid.uuid4().hex[:8]}"
        yield self.service(name, "redis", {"host": "127.0.0.1", "port": 6379})
        budget = 12
        config = {"requests": budget, "per_seconds": 60, "key": "global", "scope": "cluster", "redis_service": name}
        record = yield self.deploy_with("clustered", "/clustered", {"rate_limit": config})
        self.addCleanup(self.forget, record["id"], config)
        for spent in range(1, budget + 1):
            status, fields, _ = yield self.get("/clustered")
            self.assertEqual((status, fields["ratelimit-remaining"]), (200, str(budget - spent)))
        status, fields, _ = yield self.get("/clustered")
        self.assertEqual((status, fields["ratelimit-remaining"]), (429, "0"))
        planes = yield self.gateway.runtime.processes.metrics()
        served = [
            sum(n for series in plane["requests"].values() for _method, _status, n in series["counts"])
            for plane in planes
        ]
        self.assertEqual(sum(served), budget + 1)
        self.assertTrue(all(served), f"every data-plane process answered some: {served}")

    @inlineCallbacks
    def test_consumers_reach_every_process(self) -> Any:
        """A consumer's key loaded by the control process is known to both data-plane processes."""
        key = generate_key()
        store, stamp = self.gateway.runtime.store, "2026-12-08T00:00:00+00:00"
        yield store.create_consumer({"id": "c1", "name": "shop", "enabled": True, "created_at": stamp, "updated_at": stamp})
        yield store.add_consumer_key({"id": "k1", "consumer_id": "c1", "key_hash": hash_key(key), "created_at": stamp})
        yield self.gateway.runtime.consumers.reload()
        yield self.deploy_with("keyed", "/keyed", {"auth": {"type": "api_key"}})
        # Which process accepts a connection is the kernel's choice: ask until
        # both have answered (every answer admitted), a bounded number of times.
        served: list[int] = []
        for _ in range(200):
            status, _, body = yield self.get("/keyed", {"X-API-Key": key})
            self.assertEqual((status, body["consumer"]), (200, "shop"))
            planes = yield self.gateway.runtime.processes.metrics()
            served = [
                sum(n for series in plane["requests"].values() for _method, _status, n in series["counts"])
                for plane in planes
            ]
            if len(served) == 2 and all(served):
                break
        self.assertTrue(all(served) and len(served) == 2, f"every data-plane process answered some: {served}")


class PolicyThroughTheAPIIntegrationTests(GatewayTestCase):
    """A policy and a consumer set through the management API reach the running endpoint's routes."""

    @inlineCallbacks
    def test_policy_and_consumer_by_api(self) -> Any:
        """PUT an endpoint's policy (api_key auth) on a running endpoint: 401 at once; a consumer's new key: 200 naming it."""
        record = yield self.gateway.deploy("api", "/api-policy", ECHO_IDENTITY)
        response, _ = yield self.gateway.request("GET", "/api-policy")
        self.assertEqual(response.code, 200)
        code, put = yield self.gateway.call("PUT", f"/endpoints/{record['id']}", {"policy": {"auth": {"type": "api_key"}}})
        self.assertEqual(code, 200, put)
        response, _ = yield self.gateway.request("GET", "/api-policy")
        self.assertEqual(response.code, 401)
        code, consumer = yield self.gateway.call("POST", "/consumers", {"name": "shop"})
        self.assertEqual(code, 201, consumer)
        code, key = yield self.gateway.call("POST", f"/consumers/{consumer['data']['id']}/keys")
        self.assertEqual(code, 201, key)
        response, content = yield self.gateway.request("GET", "/api-policy", headers={"X-API-Key": key["data"]["key"]})
        self.assertEqual((response.code, json.loads(content)["consumer"]), (200, "shop"))
