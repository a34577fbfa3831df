"""
The dispatcher runs a route's traffic policy (gateway/dispatch.py with
policy/model.py): early answers, header fields on the worker's answer, a
check that waits, identity headers stripped.  Unit tests: real compiled
policies, a fake target, a ``Clock``.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx.gateway.dispatch import Dispatcher, GatewayRequest, GatewayResponse
from edgegw_tx.gateway.observe import Observer
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.observability.metrics import RequestMetrics
from edgegw_tx.policy import model
from edgegw_tx.policy.consumers import ConsumerKeys, generate_key, hash_key
from edgegw_tx.policy.part import PolicyContext, PolicyRequest

ORIGIN = "https://app.example.com"


class Target:
    """A pool stand-in: records frames, answers when the test says."""

    name = "echo"

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.pending: list[Deferred[dict[str, Any]]] = []

    def request(self, frame: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Hold the request until the test fires it."""
        self.frames.append(frame)
        d: Deferred[dict[str, Any]] = Deferred()
        self.pending.append(d)
        return d


class Waiting:
    """A part that waits (as the cluster rate limit does) and fires with what the test gives."""

    def __init__(self) -> None:
        self.pending: list[Deferred[Any]] = []

    def check(self, request: PolicyRequest, extra: list[tuple[str, str]]) -> Deferred[Any]:
        """A Deferred the test fires."""
        extra.append(("ratelimit-limit", "5"))
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        return d


def request(
    method: str = "GET",
    path: str = "/a",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    client_ip: str = "192.0.2.7",
) -> GatewayRequest:
    """A request as the HTTP layer gives it (headers already the frame's dict)."""
    return GatewayRequest(method, "x", path, b"", dict(headers or {}), body, client_ip)


class PolicyDispatchTests(SynchronousTestCase):
    """A route's policy decides before the worker, and its header fields reach the answer."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.consumers = ConsumerKeys()
        self.key = generate_key()
        self.consumers.load([{"name": "acme", "enabled": True, "key_hashes": [hash_key(self.key)]}])
        self.context = PolicyContext(seconds=self.clock.seconds, reactor=self.clock, consumers=self.consumers)
        self.target = Target()
        self.routes = RouteTable()
        self.metrics = RequestMetrics()
        observer = Observer(self.metrics, self.clock.seconds)
        self.dispatcher = Dispatcher(self.routes, observer=observer)

    def place(self, parts: dict[str, Any]) -> None:
        """Route ``/a`` (GET, POST, OPTIONS) to the target under the policy ``parts``."""
        compiled = model.compile(model.Effective(parts, {name: "endpoint" for name in parts}), self.context)
        self.routes.place(
            "e1", [("*", "GET", "/a"), ("*", "POST", "/a"), ("*", "OPTIONS", "/a")], self.target, compiled
        )

    def serve(self, req: GatewayRequest) -> Deferred[GatewayResponse]:
        """Dispatch ``req``."""
        return self.dispatcher.dispatch(req)

    def worker_answers(self) -> None:
        """The target answers its last request 200."""
        self.target.pending[-1].callback({"status": 200, "headers": {"x-w": "1"}, "body": "ok"})

    def test_no_policy_goes_to_the_worker(self) -> None:
        """A route placed without a policy matches with ``policy`` None and reaches the worker unchanged."""
        self.routes.place("e1", [("*", "GET", "/a")], self.target)
        self.assertIsNone(self.routes.match("x", "GET", "/a").policy)  # type: ignore[union-attr]
        d = self.serve(request())
        self.worker_answers()
        self.assertEqual(self.successResultOf(d).status, 200)

    def test_preflight_answered_without_the_worker(self) -> None:
        """A CORS preflight gets 204 from the gateway, with x-request-id, and no frame reaches the worker."""
        self.place({"cors": {"allow_origins": [ORIGIN], "allow_methods": ["GET", "POST"]}})
        d = self.serve(
            request("OPTIONS", headers={"origin": ORIGIN, "access-control-request-method": "POST"})
        )
        response = self.successResultOf(d)
        headers = dict(response.headers)
        self.assertEqual(response.status, 204)
        self.assertEqual(headers["access-control-allow-origin"], ORIGIN)
        self.assertIn("x-request-id", headers)
        self.assertEqual(self.target.frames, [])
        self.assertEqual(self.metrics.series("echo").counts, {("OPTIONS", 204): 1})

    def test_cors_headers_added_to_the_worker_answer(self) -> None:
        """An allowed origin's request goes to the worker, whose answer gets the CORS fields too."""
        self.place({"cors": {"allow_origins": [ORIGIN]}})
        d = self.serve(request(headers={"origin": ORIGIN}))
        self.worker_answers()
        headers = dict(self.successResultOf(d).headers)
        self.assertEqual(headers["access-control-allow-origin"], ORIGIN)
        self.assertEqual(headers["x-w"], "1")

    def test_ip_refused_with_403(self) -> None:
        """A client outside ``allow`` gets the gateway's 403 naming its address; the worker sees nothing."""
        self.place({"ip": {"allow": ["10.0.0.0/8"]}})
        response = self.successResultOf(self.serve(request()))
        self.assertEqual(response.status, 403)
        self.assertIn("192.0.2.7", json.loads(response.body)["error"])
        self.assertEqual(self.target.frames, [])

    def test_api_key_names_the_consumer_and_forged_identity_is_stripped(self) -> None:
        """A good key reaches the handler as the consumer's name, the key removed; a forged name is replaced."""
        self.place({"auth": {"type": "api_key"}})
        self.serve(request(headers={"x-api-key": self.key, "x-edgegw-consumer": "root"}))
        frame = self.target.frames[-1]
        self.assertEqual(frame["headers"]["x-edgegw-consumer"], "acme")
        self.assertNotIn("x-api-key", frame["headers"])

    def test_missing_key_401(self) -> None:
        """No key: 401 with a challenge, from the gateway."""
        self.place({"auth": {"type": "api_key"}})
        response = self.successResultOf(self.serve(request(headers={"x-edgegw-consumer": "root"})))
        self.assertEqual(response.status, 401)
        self.assertIn("www-authenticate", dict(response.headers))
        self.assertEqual(self.target.frames, [])

    def test_identity_stripped_without_a_policy(self) -> None:
        """On a route with no policy, identity fields a client sends never reach the handler."""
        self.routes.place("e1", [("*", "GET", "/a")], self.target)
        self.serve(
            request(headers={"x-edgegw-consumer": "a", "x-edgegw-subject": "b", "x-edgegw-claims": "{}"})
        )
        headers = self.target.frames[-1]["headers"]
        self.assertFalse({"x-edgegw-consumer", "x-edgegw-subject", "x-edgegw-claims"} & set(headers))

    def test_rate_limit_429_with_headers(self) -> None:
        """Past a node limit: 429 with Retry-After and RateLimit-*; the allowed one carries RateLimit-* too."""
        self.place({"rate_limit": {"requests": 1, "per_seconds": 60, "key": "ip"}})
        first = self.serve(request())
        self.worker_answers()
        self.assertIn("ratelimit-limit", dict(self.successResultOf(first).headers))
        second = self.successResultOf(self.serve(request()))
        headers = dict(second.headers)
        self.assertEqual(second.status, 429)
        self.assertIn("retry-after", headers)
        self.assertEqual(headers["ratelimit-remaining"], "0")
        self.assertEqual(len(self.target.frames), 1)

    def test_max_body_413(self) -> None:
        """A body over ``limits.max_body`` gets 413 before the worker; one at the cap goes through."""
        self.place({"limits": {"max_body": 4}})
        self.assertEqual(self.successResultOf(self.serve(request("POST", body=b"12345"))).status, 413)
        self.serve(request("POST", body=b"1234"))
        self.assertEqual(len(self.target.frames), 1)

    def test_a_check_that_waits(self) -> None:
        """A Deferred verdict: nothing answered until it fires; None then goes to the worker with its fields."""
        waiting = Waiting()
        self.routes.place("e1", [("*", "GET", "/a")], self.target, model.CompiledPolicy(checks=(waiting,)))
        d = self.serve(request())
        self.assertNoResult(d)
        self.assertEqual(self.target.frames, [])
        waiting.pending[-1].callback(None)
        self.worker_answers()
        self.assertEqual(dict(self.successResultOf(d).headers)["ratelimit-limit"], "5")

    def test_a_check_that_waits_then_refuses(self) -> None:
        """A Deferred firing with an early answer gives that answer, the part's fields on it."""
        waiting = Waiting()
        self.routes.place("e1", [("*", "GET", "/a")], self.target, model.CompiledPolicy(checks=(waiting,)))
        d = self.serve(request())
        waiting.pending[-1].callback((429, [("content-type", "application/json")], b"{}"))
        response = self.successResultOf(d)
        self.assertEqual((response.status, dict(response.headers)["ratelimit-limit"]), (429, "5"))
        self.assertEqual(self.target.frames, [])
        self.assertEqual(self.metrics.series("echo").counts, {("GET", 429): 1})

    def test_a_check_that_fails_is_a_500(self) -> None:
        """A check raising (or its Deferred failing) is a JSON 500, logged, never a traceback to the client."""
        waiting = Waiting()
        self.routes.place("e1", [("*", "GET", "/a")], self.target, model.CompiledPolicy(checks=(waiting,)))
        d = self.serve(request())
        waiting.pending[-1].errback(RuntimeError("boom"))
        response = self.successResultOf(d)
        self.assertEqual(response.status, 500)
        self.assertNotIn(b"boom", response.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_replacing_the_policy(self) -> None:
        """Placing the key again with another policy applies it to the next request (the match cache forgets)."""
        self.place({"ip": {"allow": ["10.0.0.0/8"]}})
        self.assertEqual(self.successResultOf(self.serve(request())).status, 403)
        self.place({})
        self.serve(request())
        self.assertEqual(len(self.target.frames), 1)


class PreflightWithoutOptionsRouteTests(SynchronousTestCase):
    """A browser's preflight for a route that has no OPTIONS route is answered by that route's cors part."""

    def setUp(self) -> None:
        self.target = Target()
        self.routes = RouteTable()
        self.metrics = RequestMetrics()
        self.dispatcher = Dispatcher(self.routes, observer=Observer(self.metrics, Clock().seconds))
        context = PolicyContext(seconds=Clock().seconds)
        cors = model.compile(model.Effective({"cors": {"allow_origins": [ORIGIN], "allow_methods": ["POST"]}},
                                             {"cors": "endpoint"}), context)
        self.routes.place("e1", [("*", "POST", "/a")], self.target, cors)
        self.routes.place("e2", [("*", "POST", "/b")], self.target)

    def preflight(self, path: str, origin: str = ORIGIN) -> GatewayResponse:
        """OPTIONS ``path`` asking for POST."""
        headers = {"origin": origin, "access-control-request-method": "POST"}
        return self.successResultOf(self.dispatcher.dispatch(request("OPTIONS", path, headers=headers)))

    def test_answered_204_by_the_routes_cors(self) -> None:
        """OPTIONS on a POST-only route with cors: 204 with the CORS fields, recorded, no worker."""
        response = self.preflight("/a")
        self.assertEqual(response.status, 204)
        self.assertEqual(dict(response.headers)["access-control-allow-origin"], ORIGIN)
        self.assertEqual(self.target.frames, [])
        self.assertEqual(self.metrics.series("echo").counts, {("OPTIONS", 204): 1})

    def test_refused_origin_403(self) -> None:
        """A preflight from an origin not allowed: the cors part's 403, without CORS fields."""
        response = self.preflight("/a", "https://evil.example")
        self.assertEqual(response.status, 403)
        self.assertNotIn("access-control-allow-origin", dict(response.headers))

    def test_no_cors_is_405(self) -> None:
        """A route without a cors part: the 405 it always had."""
        self.assertEqual(self.preflight("/b").status, 405)

    def test_not_a_preflight_is_405(self) -> None:
        """OPTIONS without Access-Control-Request-Method is no preflight: 405."""
        response = self.successResultOf(self.dispatcher.dispatch(request("OPTIONS", "/a", headers={"origin": ORIGIN})))
        self.assertEqual(response.status, 405)
