"""
Unit tests of the ``rate_limit`` policy part (edgegw_tx/policy/ratelimit.py):
its schema and problems, the node-scope limiter on a ``Clock``, and the
cluster-scope limiter against a fake Redis link (the real Redis is in
test_policy_ratelimit_redis).
"""

import json
from pathlib import Path

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest

from jsonschema import Draft202012Validator
from edgegw_tx.policy import ratelimit
from edgegw_tx.policy.auth import CONSUMER_HEADER
from edgegw_tx.policy.part import PolicyContext, PolicyRequest
from edgegw_tx.policy.ratelimit import (
    MAX_KEY_LENGTH,
    MAX_PER_SECONDS,
    MAX_REQUESTS,
    MAX_TRACKED_KEYS,
    SCHEMA,
    SCRIPT,
    STORE_ERRORS_METRIC,
    STORE_TIMEOUT,
    KeyRule,
    build,
    problems,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "policies.md"


def request(client_ip="192.0.2.1", **headers):
    """A GET with ``headers`` (lower-case names) from ``client_ip``."""
    return PolicyRequest(method="GET", path="/", headers=dict(headers), client_ip=client_ip)


def fields(extra):
    """The RateLimit-* fields of ``extra`` as a dict of ints."""
    return {name: int(value) for name, value in extra if name.startswith("ratelimit-")}


VALIDATOR = Draft202012Validator(SCHEMA)


def check_schema(schema, config):
    """Fail when ``config`` breaks the schema (the management API validates with this draft)."""
    Draft202012Validator(schema).validate(config)


class SchemaTests(unittest.SynchronousTestCase):
    """What the schema and ``problems`` accept and refuse, each naming the field."""

    def refused(self, config):
        """The fields the schema refuses in ``config`` (a property name for required/additional ones)."""
        errors = list(VALIDATOR.iter_errors(config))
        self.assertTrue(errors, config)
        return {".".join(map(str, e.absolute_path)) or e.message for e in errors}

    def test_minimal_and_full_configs_pass(self):
        """``requests`` and ``per_seconds`` alone pass, and so does every field set."""
        check_schema(SCHEMA, {"requests": 10, "per_seconds": 60})
        check_schema(SCHEMA, {"requests": 10, "per_seconds": 60, "key": "header:X-Tenant", "scope": "cluster",
                              "redis_service": "cache", "on_store_error": "deny"})

    def test_unknown_field_refused(self):
        """A field the part does not have is refused, named."""
        self.assertIn("burst", " ".join(self.refused({"requests": 1, "per_seconds": 1, "burst": 5})))

    def test_requests_and_period_bounded_by_constants(self):
        """``requests`` and ``per_seconds`` are refused below 1 and above their named maximum."""
        for config, name in [
            ({"requests": 0, "per_seconds": 1}, "requests"),
            ({"requests": MAX_REQUESTS + 1, "per_seconds": 1}, "requests"),
            ({"requests": 1, "per_seconds": 0}, "per_seconds"),
            ({"requests": 1, "per_seconds": MAX_PER_SECONDS + 1}, "per_seconds"),
            ({"requests": 1.5, "per_seconds": 1}, "requests"),
        ]:
            self.assertEqual(self.refused(config), {name})
        check_schema(SCHEMA, {"requests": MAX_REQUESTS, "per_seconds": MAX_PER_SECONDS})

    def test_requests_and_period_required(self):
        """A config without ``requests`` or ``per_seconds`` is refused naming the missing one."""
        self.assertIn("per_seconds", " ".join(self.refused({"requests": 1})))
        self.assertIn("'requests'", " ".join(self.refused({"per_seconds": 1})))

    def test_key_forms(self):
        """``key`` is ip, consumer, global or header:<token>; anything else is refused, its message naming the forms."""
        for key in ("ip", "consumer", "global", "header:X-Tenant-Id"):
            check_schema(SCHEMA, {"requests": 1, "per_seconds": 1, "key": key})
        for key in ("header:", "header:bad name", "cookie:x", "IP", "header:" + "a" * 129):
            self.assertEqual(self.refused({"requests": 1, "per_seconds": 1, "key": key}), {"key"})
        self.assertIn("header:<Name>", SCHEMA["properties"]["key"]["x-error"])

    def test_scope_and_store_error_enums(self):
        """``scope`` and ``on_store_error`` take only their listed values."""
        self.assertEqual(self.refused({"requests": 1, "per_seconds": 1, "scope": "region"}), {"scope"})
        self.assertEqual(self.refused({"requests": 1, "per_seconds": 1, "on_store_error": "maybe"}), {"on_store_error"})

    def test_every_field_described(self):
        """Every field has a description (it becomes the OpenAPI document and the docs)."""
        for name, field in SCHEMA["properties"].items():
            self.assertTrue(field.get("description"), name)

    def test_cluster_needs_redis_service(self):
        """``scope: cluster`` without ``redis_service`` is a problem naming it."""
        self.assertEqual([f for f, _ in problems({"requests": 1, "per_seconds": 1, "scope": "cluster"})],
                         ["redis_service"])
        self.assertEqual(problems({"requests": 1, "per_seconds": 1, "scope": "cluster", "redis_service": "r"}), [])

    def test_node_refuses_store_fields(self):
        """``redis_service`` and ``on_store_error`` are problems with scope node (explicit or default)."""
        self.assertEqual([f for f, _ in problems({"requests": 1, "per_seconds": 1, "redis_service": "r"})],
                         ["redis_service"])
        self.assertEqual([f for f, _ in problems({"requests": 1, "per_seconds": 1, "scope": "node",
                                                  "on_store_error": "deny"})], ["on_store_error"])
        self.assertEqual(problems({"requests": 1, "per_seconds": 1}), [])


class NodeLimitTests(unittest.SynchronousTestCase):
    """The node-scope limiter (GCRA in memory) on a fake clock."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)

    def limiter(self, **config):
        """A node-scope check on the test's clock."""
        return build(dict({"requests": 5, "per_seconds": 10}, **config), PolicyContext(seconds=self.clock.seconds))

    def test_burst_then_429(self):
        """An idle key gets ``requests`` at once; the next is a 429 naming the limit, with Retry-After."""
        check = self.limiter()
        for _ in range(5):
            self.assertIsNone(check.check(request(), []))
        status, headers, body = check.check(request(), [])
        self.assertEqual(status, 429)
        self.assertEqual(dict(headers)["retry-after"], "2")
        self.assertEqual(dict(headers)["content-type"], "application/json")
        self.assertEqual(json.loads(body), {"error": "rate limit exceeded: 5 requests per 10 seconds"})

    def test_headers_on_every_answer(self):
        """Allowed and refused requests alike get RateLimit-Limit, -Remaining (counting down) and -Reset."""
        check = self.limiter()
        seen = []
        for _ in range(6):
            extra = []
            check.check(request(), extra)
            seen.append(fields(extra))
        self.assertEqual([f["ratelimit-remaining"] for f in seen], [4, 3, 2, 1, 0, 0])
        self.assertEqual({f["ratelimit-limit"] for f in seen}, {5})
        self.assertEqual([f["ratelimit-reset"] for f in seen], [2, 4, 6, 8, 10, 10])

    def test_one_request_earned_back_per_interval(self):
        """After the burst, one request comes back every per_seconds / requests, not before."""
        check = self.limiter()
        for _ in range(5):
            check.check(request(), [])
        self.clock.advance(1.999)
        self.assertEqual(check.check(request(), [])[0], 429)
        self.clock.advance(0.001)
        self.assertIsNone(check.check(request(), []))
        self.assertEqual(check.check(request(), [])[0], 429)

    def test_full_budget_after_idle_period(self):
        """A key idle for per_seconds has its whole burst again (and an idle key's entry counts as none)."""
        check = self.limiter()
        for _ in range(5):
            check.check(request(), [])
        self.clock.advance(10)
        extra = []
        self.assertIsNone(check.check(request(), extra))
        self.assertEqual(fields(extra)["ratelimit-remaining"], 4)

    def test_most_in_one_period_after_idle(self):
        """After an idle period a key gets the burst plus what it earns back: 2 * requests - 1 in one period."""
        check = self.limiter(requests=100, per_seconds=60)
        start, allowed = self.clock.seconds(), 0
        while self.clock.seconds() < start + 60:
            allowed += check.check(request(), []) is None
            self.clock.advance(0.049)  # off the 0.6 s grid: no float ties
        self.assertEqual(allowed, 199)

    def test_retry_after_at_least_one_second(self):
        """Retry-After is whole seconds, at least 1, even for a shorter wait; the message says "1 second"."""
        check = self.limiter(requests=100, per_seconds=1)
        for _ in range(100):
            check.check(request(), [])
        status, headers, body = check.check(request(), [])
        self.assertEqual((status, dict(headers)["retry-after"]), (429, "1"))
        self.assertEqual(json.loads(body)["error"], "rate limit exceeded: 100 requests per 1 second")

    def test_ip_keys_count_apart(self):
        """With ``key: ip`` each client address has its own budget."""
        check = self.limiter(requests=1)
        self.assertIsNone(check.check(request("192.0.2.1"), []))
        self.assertEqual(check.check(request("192.0.2.1"), [])[0], 429)
        self.assertIsNone(check.check(request("2001:db8::1"), []))

    def test_global_key_shared(self):
        """With ``key: global`` every client spends one budget."""
        check = self.limiter(requests=1, key="global")
        self.assertIsNone(check.check(request("192.0.2.1"), []))
        self.assertEqual(check.check(request("192.0.2.2"), [])[0], 429)

    def test_consumer_key_reads_auth_header_else_address(self):
        """``key: consumer`` counts per consumer (the auth part's header); without one, per client address."""
        check = self.limiter(requests=1, key="consumer")
        self.assertIsNone(check.check(request("192.0.2.1", **{CONSUMER_HEADER: "alice"}), []))
        self.assertEqual(check.check(request("192.0.2.9", **{CONSUMER_HEADER: "alice"}), [])[0], 429)
        self.assertIsNone(check.check(request("192.0.2.1", **{CONSUMER_HEADER: "bob"}), []))
        self.assertIsNone(check.check(request("192.0.2.1"), []))
        self.assertEqual(check.check(request("192.0.2.1"), [])[0], 429)
        self.assertIsNone(check.check(request("192.0.2.2"), []))

    def test_header_key_case_insensitive_missing_counts_by_address(self):
        """``key: header:X-Tenant`` counts per value of that header (any name case); without it, per address."""
        check = self.limiter(requests=1, key="header:X-Tenant")
        self.assertIsNone(check.check(request("192.0.2.1", **{"x-tenant": "a"}), []))
        self.assertEqual(check.check(request("192.0.2.2", **{"x-tenant": "a"}), [])[0], 429)
        self.assertIsNone(check.check(request("192.0.2.1", **{"x-tenant": "b"}), []))
        self.assertIsNone(check.check(request("192.0.2.1"), []))
        self.assertIsNone(check.check(request("192.0.2.2", **{"x-tenant": ""}), []))

    def test_header_value_cannot_pose_as_address(self):
        """A header value equal to a client address is a different key from that address."""
        check = self.limiter(requests=1, key="header:X-Tenant")
        self.assertIsNone(check.check(request("192.0.2.1"), []))
        self.assertIsNone(check.check(request("192.0.2.7", **{"x-tenant": "192.0.2.1"}), []))

    def test_long_key_kept_as_digest(self):
        """A header value longer than MAX_KEY_LENGTH is counted under its digest, no longer than the cap."""
        rule = KeyRule("header:X-Tenant")
        long_a, long_b = "a" * 10_000, "a" * 9_999 + "b"
        key_a = rule.of(request(**{"x-tenant": long_a}))
        self.assertLessEqual(len(key_a), MAX_KEY_LENGTH)
        self.assertNotEqual(key_a, rule.of(request(**{"x-tenant": long_b})))

    def test_tracked_keys_bounded(self):
        """Rotating addresses cannot grow memory: beyond MAX_TRACKED_KEYS the least recently seen key goes."""
        check = self.limiter(requests=1)
        check.check(request("10.0.0.0"), [])
        for n in range(1, MAX_TRACKED_KEYS + 10):
            if n == 100:
                self.assertEqual(check.check(request("10.0.0.0"), [])[0], 429)  # refused, and now recent
            check.check(request(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"), [])
        self.assertEqual(len(check), MAX_TRACKED_KEYS)
        self.assertEqual(check.check(request("10.0.0.0"), [])[0], 429)
        self.assertIsNone(check.check(request("10.0.0.1"), []))  # the oldest: forgotten, a fresh budget


class FakeRedis:
    """A RedisLink whose replies the test sets: a list of Deferreds or callables, one per command."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.sent = []

    def command(self, args):
        """Record ``args``; answer with the next reply."""
        self.sent.append(args)
        reply = self.replies.pop(0)
        return reply() if callable(reply) else reply


class NoScript(Exception):
    """What a Redis client raises for a script Redis does not have."""


class ClusterLimitTests(unittest.SynchronousTestCase):
    """The cluster-scope limiter: the command it sends, reading its answer, and a failing store."""

    def setUp(self):
        self.clock = Clock()
        self.counted = []
        self.links = {}

    def limiter(self, link, identity="route-1", **config):
        """A cluster-scope check on service ``cache`` served by ``link``."""
        self.links["cache"] = link
        context = PolicyContext(seconds=self.clock.seconds, reactor=self.clock, redis=self.links.get,
                                count=lambda name, labels: self.counted.append((name, labels)))
        base = {"requests": 5, "per_seconds": 10, "scope": "cluster", "redis_service": "cache"}
        return build(dict(base, **config), context, identity)

    def verdict(self, check, req=None, extra=None):
        """The check's verdict, fired synchronously."""
        result = self.successResultOf(check.check(req or request(), [] if extra is None else extra))
        return result

    def test_one_evalsha_with_namespaced_key(self):
        """A request is one EVALSHA of the script with the key under edgegw:rl:<policy hash>:."""
        link = FakeRedis(succeed([1, 4, 0, 2_000_000]))
        self.assertIsNone(self.verdict(self.limiter(link), request("192.0.2.1")))
        [args] = link.sent
        self.assertEqual(args[:3], ["EVALSHA", ratelimit._SCRIPT_SHA, "1"])
        self.assertRegex(args[3], r"^edgegw:rl:[0-9a-f]{16}:a:192\.0\.2\.1$")
        self.assertEqual(args[4:], ["2000000", "10000000"])

    def test_reply_becomes_headers_and_429(self):
        """The script's answer sets the RateLimit-* fields; a refusal is the 429 with Retry-After rounded up."""
        extra = []
        link = FakeRedis(succeed([1, 3, 0, 4_000_000]), succeed([0, 0, 1_500_000, 9_500_000]))
        check = self.limiter(link)
        self.assertIsNone(self.verdict(check, extra=extra))
        self.assertEqual(fields(extra), {"ratelimit-limit": 5, "ratelimit-remaining": 3, "ratelimit-reset": 4})
        extra = []
        status, headers, _ = self.verdict(check, extra=extra)
        self.assertEqual((status, dict(headers)["retry-after"]), (429, "2"))
        self.assertEqual(fields(extra), {"ratelimit-limit": 5, "ratelimit-remaining": 0, "ratelimit-reset": 10})

    def test_noscript_loads_by_eval(self):
        """After NOSCRIPT the same call is sent by EVAL with the script, and its answer counts."""
        link = FakeRedis(fail(NoScript("NOSCRIPT No matching script")), succeed([1, 4, 0, 2_000_000]))
        self.assertIsNone(self.verdict(self.limiter(link)))
        self.assertEqual([args[:2] for args in link.sent], [["EVALSHA", ratelimit._SCRIPT_SHA], ["EVAL", SCRIPT]])
        self.assertEqual(link.sent[0][2:], link.sent[1][2:])
        self.assertEqual(self.counted, [])

    def test_store_error_allows_by_default_and_counts(self):
        """A failing Redis lets the request through (on_store_error allow), counted in the metric."""
        extra = []
        link = FakeRedis(fail(ConnectionError("refused")))
        self.assertIsNone(self.verdict(self.limiter(link), extra=extra))
        self.assertEqual(self.counted, [(STORE_ERRORS_METRIC, {"service": "cache", "on_store_error": "allow"})])
        self.assertEqual(extra, [("ratelimit-limit", "5")])

    def test_store_error_denies_with_503(self):
        """With on_store_error deny a failing Redis answers 503 with a message and Retry-After, counted."""
        link = FakeRedis(fail(NoScript("ERR something else")))
        status, headers, body = self.verdict(self.limiter(link, on_store_error="deny"))
        self.assertEqual((status, dict(headers)["retry-after"]), (503, "1"))
        self.assertIn("rate limit", json.loads(body)["error"])
        self.assertEqual(len(link.sent), 1)  # not NOSCRIPT: no EVAL retry
        self.assertEqual(self.counted, [(STORE_ERRORS_METRIC, {"service": "cache", "on_store_error": "deny"})])

    def test_slow_store_times_out(self):
        """Redis that does not answer within STORE_TIMEOUT is a store error; the pending call is cancelled."""
        cancelled = []
        check = self.limiter(FakeRedis(Deferred(cancelled.append)), on_store_error="deny")
        result = check.check(request(), [])
        self.assertNoResult(result)
        self.clock.advance(STORE_TIMEOUT)
        self.assertEqual(self.successResultOf(result)[0], 503)
        self.assertEqual(len(cancelled), 1)
        self.assertEqual(len(self.counted), 1)

    def test_missing_service_or_raising_link_is_store_error(self):
        """No Redis service by that name, or a link that raises, is a store error, not a traceback."""
        check = self.limiter(FakeRedis())
        del self.links["cache"]
        self.assertIsNone(self.verdict(check))

        def broken():
            raise RuntimeError("not connected")

        self.assertIsNone(self.verdict(self.limiter(FakeRedis(broken))))
        self.assertEqual(len(self.counted), 2)

    def test_malformed_reply_is_store_error(self):
        """A reply that is not the script's four numbers is a store error."""
        self.assertEqual(self.verdict(self.limiter(FakeRedis(succeed(b"OK")), on_store_error="deny"))[0], 503)

    def test_identity_and_numbers_name_the_budget(self):
        """Two limits share Redis keys only with the same identity, numbers and key kind."""
        def key(identity="route-1", **config):
            link = FakeRedis(succeed([1, 4, 0, 1]))
            self.verdict(self.limiter(link, identity, **config))
            return link.sent[0][3]

        self.assertEqual(key(), key(on_store_error="deny"))
        self.assertNotEqual(key(), key("route-2"))
        self.assertNotEqual(key(), key(requests=6))
        self.assertNotEqual(key(), key(key="global"))

    def test_cluster_needs_reactor(self):
        """Building a cluster-scope limit without a reactor (for its timeout) is refused at build."""
        config = {"requests": 1, "per_seconds": 1, "scope": "cluster", "redis_service": "cache"}
        self.assertRaises(ValueError, build, config, PolicyContext(seconds=self.clock.seconds))


class DocsTests(unittest.SynchronousTestCase):
    """docs/policies.md's rate_limit section says what the module says."""

    def section(self):
        """The rate_limit section of docs/policies.md."""
        document = DOCS.read_text(encoding="utf-8")
        start = document.index("\n## rate_limit\n")
        return document[start : document.index("\n## ", start + 1)]

    def test_table_matches_schema(self):
        """The field table has the fields, types and defaults of SCHEMA."""
        from edgegw_tx.admin import schemadocs

        section = self.section()
        begin = section.index("<!-- schema:policy-rate-limit -->\n")
        table = section[begin : section.index("<!-- /schema -->\n", begin) + len("<!-- /schema -->\n")]
        self.patch(schemadocs, "TABLES", {**schemadocs.TABLES, "policy-rate-limit": SCHEMA})
        self.assertEqual(schemadocs.render(table), table)

    def test_constants_in_prose(self):
        """The numbers the prose gives are the module's constants."""
        section = self.section()
        for said in (
            f"at most {MAX_TRACKED_KEYS:,} keys",
            f"longer than {MAX_KEY_LENGTH} characters",
            f"within {STORE_TIMEOUT * 1000:g} ms",
            f"`{STORE_ERRORS_METRIC}`",
            f"`{ratelimit.REDIS_PREFIX}<16 hex digits",
            "draft-ietf-httpapi-ratelimit-headers-06",
        ):
            self.assertIn(said, section.replace("\n", " "))
