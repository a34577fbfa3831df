"""
API keys through the management API (``/api/keys``), ``last_used_at`` and the
brute-force throttle, end to end through the Klein app and a real SQLite store,
on a fake clock.
"""

import json
import os

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.trial import unittest
from twisted.web.resource import Resource

from edgegw_tx.admin.api import AdminAPI
from edgegw_tx.admin.auth import FLUSH_INTERVAL, KeyRing
from edgegw_tx.admin.throttle import AuthThrottle
from tests.support.fakes import SynchronousReactor, make_store

START = 1_000_000


class PeerResource(Resource):
    """Lets a test choose the client address with an ``X-Test-Peer`` header."""

    isLeaf = True

    def __init__(self, inner):
        super().__init__()
        self._inner = inner

    def render(self, request):
        peer = request.getHeader(b"x-test-peer")
        if peer:
            request.client = IPv4Address("TCP", peer.decode("ascii"), 31337)
        return self._inner.render(request)


class _KeysAPICase(unittest.TestCase):
    """An AdminAPI on a real store, a bootstrap admin key and a read key."""

    def setUp(self):
        self.reactor = SynchronousReactor()
        self.reactor.advance(START)
        self.store = make_store(self, self.reactor)
        self.keys = KeyRing(self.store, reactor=self.reactor)
        self.successResultOf(self.keys.load())
        path = os.path.join(self.mktemp(), "admin.key")
        self.successResultOf(self.keys.bootstrap(path))
        with open(path) as f:
            self.admin_key = f.read().strip()
        self.api = AdminAPI(None, self.keys, self.reactor)
        self.client = StubTreq(PeerResource(self.api.resource()))
        self.read_key = self.create({"name": "viewer", "scope": "read"})["key"]

    def request(self, method, path, body=None, key=None, authorization=None, peer="10.0.0.1", extra=None):
        """``(code, document, headers)``; ``key`` defaults to the bootstrap admin key."""
        headers = {"X-Test-Peer": peer, **(extra or {})}
        if authorization is None:
            authorization = "Bearer " + (key or self.admin_key)
        if authorization is not False:
            headers["Authorization"] = authorization
        data = json.dumps(body).encode() if body is not None else None
        d = self.client.request(method, "http://admin" + path, headers=headers, data=data)
        self.client.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        return response.code, json.loads(content), response.headers

    def call(self, *args, **kwargs):
        code, document, _ = self.request(*args, **kwargs)
        return code, document

    def create(self, body, key=None):
        code, document = self.call("POST", "/api/keys", body, key=key)
        self.assertEqual(code, 201, document)
        return document["data"]



class KeysAPITests(_KeysAPICase):
    def listed(self, key=None):
        code, document = self.call("GET", "/api/keys", key=key)
        self.assertEqual(code, 200, document)
        return {item["name"]: item for item in document["data"]["items"]}

    def stored(self, name):
        return {k["name"]: k for k in self.successResultOf(self.store.list_keys())}[name]

    # create, list

    def test_bootstrap_key_is_the_first_admin_key(self):
        """The key written at first start is listed as the admin key named bootstrap."""
        data = self.listed()["bootstrap"]
        self.assertEqual(data["scope"], "admin")
        self.assertTrue(data["current"])

    def test_create_shows_the_plaintext_once(self):
        """POST answers 201 with the plaintext in data.key; later lists never show it or the hash."""
        data = self.create({"name": "ci", "scope": "admin"})
        self.assertTrue(data["key"].startswith("egw_"))
        self.assertEqual(
            sorted(data), ["created_at", "id", "key", "last_used_at", "name", "revision", "scope"]
        )
        self.assertEqual((data["name"], data["scope"], data["last_used_at"]), ("ci", "admin", None))
        code, document = self.call("GET", "/api/keys")
        self.assertEqual(code, 200)
        text = json.dumps(document)
        self.assertNotIn(data["key"], text)
        self.assertNotIn(self.stored("ci")["key_hash"], text)
        for item in document["data"]["items"]:
            self.assertEqual(
                sorted(item), ["created_at", "current", "id", "last_used_at", "name", "revision", "scope"]
            )
        self.assertEqual(document["data"]["total"], 3)

    def test_new_key_works_at_once(self):
        """A created key authenticates on the very next request, and is the current one there."""
        data = self.create({"name": "ci", "scope": "admin"})
        listed = self.listed(key=data["key"])
        self.assertTrue(listed["ci"]["current"])
        self.assertFalse(listed["bootstrap"]["current"])
        self.assertFalse(listed["viewer"]["current"])

    def test_read_scope_cannot_create_or_delete(self):
        """A read key may list keys but POST and DELETE answer 403."""
        self.assertIn("viewer", self.listed(key=self.read_key))
        code, document = self.call(
            "POST", "/api/keys", {"name": "x", "scope": "admin"}, key=self.read_key
        )
        self.assertEqual(code, 403)
        self.assertIn("may only read", document["error"])
        target = self.listed()["bootstrap"]["id"]
        code, _ = self.call("DELETE", "/api/keys/" + target, key=self.read_key)
        self.assertEqual(code, 403)
        self.assertIn("bootstrap", self.listed())

    # revoke

    def test_revoked_key_is_refused_on_the_next_request(self):
        """DELETE answers once the key is gone from memory: the next request with it is 401."""
        data = self.create({"name": "ci", "scope": "read"})
        self.assertEqual(self.call("GET", "/api/keys", key=data["key"])[0], 200)
        code, document = self.call("DELETE", "/api/keys/" + data["id"])
        self.assertEqual(code, 200)
        self.assertEqual((document["data"]["id"], document["data"]["deleted"]), (data["id"], True))
        code, document = self.call("GET", "/api/keys", key=data["key"])
        self.assertEqual((code, document["error"]), (401, "invalid API key"))
        self.assertNotIn("ci", self.listed())
        self.assertNotIn("ci", [k["name"] for k in self.successResultOf(self.store.list_keys())])

    def test_admin_key_may_revoke_itself_when_another_admin_remains(self):
        """Revoking the key making the request works; that key is refused afterwards."""
        data = self.create({"name": "ci", "scope": "admin"})
        code, _ = self.call("DELETE", "/api/keys/" + data["id"], key=data["key"])
        self.assertEqual(code, 200)
        self.assertEqual(self.call("GET", "/api/keys", key=data["key"])[0], 401)

    def test_last_admin_key_cannot_be_deleted(self):
        """Deleting the only admin key answers 409 saying why, and the key keeps working."""
        target = self.listed()["bootstrap"]["id"]
        code, document = self.call("DELETE", "/api/keys/" + target)
        self.assertEqual(code, 409)
        self.assertIn("last admin key", document["error"])
        self.assertIn("create another admin key first", document["error"])
        self.assertIn("bootstrap", self.listed())
        # With a second admin key, the first one can go.
        self.create({"name": "ci", "scope": "admin"})
        self.assertEqual(self.call("DELETE", "/api/keys/" + target)[0], 200)
        self.assertEqual(self.call("GET", "/api/keys")[0], 401)

    def test_unknown_key_id_is_404(self):
        """DELETE of an id that is not a key answers 404 naming it."""
        code, document = self.call("DELETE", "/api/keys/no-such-key")
        self.assertEqual(code, 404)
        self.assertIn("no-such-key", document["error"])

    def test_deleting_a_key_twice_is_404(self):
        """A key already revoked is unknown the second time."""
        data = self.create({"name": "ci", "scope": "read"})
        self.assertEqual(self.call("DELETE", "/api/keys/" + data["id"])[0], 200)
        self.assertEqual(self.call("DELETE", "/api/keys/" + data["id"])[0], 404)

    # validation

    def test_bad_bodies_are_400_naming_the_field(self):
        """Each invalid create names the field, in the message and in ``field``."""
        cases = [
            ({"scope": "read"}, "name", "missing field 'name'"),
            ({"name": "x"}, "scope", "missing field 'scope'"),
            ({"name": "x", "scope": "read", "expires": 3}, "expires", "unknown field 'expires'"),
            ({"name": 5, "scope": "read"}, "name", "field 'name' must be a string"),
            ({"name": "  ", "scope": "read"}, "name", "field 'name' must not be empty"),
            ({"name": "x" * 101, "scope": "read"}, "name", "longer than 100"),
            ({"name": "a\nb", "scope": "read"}, "name", "control characters"),
            ({"name": "x", "scope": "root"}, "scope", "field 'scope' must be one of: read, admin"),
            ({"name": "x", "scope": None}, "scope", "field 'scope'"),
        ]
        for body, field, message in cases:
            code, document = self.call("POST", "/api/keys", body)
            self.assertEqual(code, 400, body)
            self.assertIn(message, document["error"])
            self.assertEqual(document["field"], field)
        self.assertEqual(sorted(self.listed()), ["bootstrap", "viewer"])

    def test_name_of_100_characters_is_accepted(self):
        """The name limit is inclusive: 1 and 100 characters are fine."""
        self.create({"name": "x" * 100, "scope": "read"})
        self.create({"name": "y", "scope": "read"})

    def test_body_must_be_an_object(self):
        """A JSON array or a missing body answers 400."""
        code, document = self.call("POST", "/api/keys", ["name"])
        self.assertEqual(code, 400)
        self.assertIn("JSON object", document["error"])
        self.assertEqual(self.call("POST", "/api/keys")[0], 400)

    # the Authorization header

    def test_key_with_surrounding_whitespace_is_trimmed(self):
        """Spaces or tabs around the key (a pasted key) still authenticate."""
        code, _ = self.call("GET", "/api/keys", authorization="Bearer   %s \t" % self.admin_key)
        self.assertEqual(code, 200)
        code, _ = self.call("GET", "/api/keys", authorization="bearer\t%s" % self.admin_key)
        self.assertEqual(code, 200)

    def test_other_scheme_is_401_saying_to_use_bearer(self):
        """Basic, Token or a bare key answer 401 telling to use Bearer, without echoing the key."""
        for authorization in ("Basic dXNlcjpwYXNz", "Token " + self.admin_key, self.admin_key):
            code, document, headers = self.request("GET", "/api/keys", authorization=authorization)
            self.assertEqual(code, 401)
            self.assertIn("use Bearer", document["error"])
            self.assertNotIn(self.admin_key[:8], document["error"])
            self.assertEqual(headers.getRawHeaders("www-authenticate"), ['Bearer realm="edgegw"'])

    def test_missing_or_empty_key_is_401(self):
        """No header, or Bearer with nothing after it, answers 401 naming the header to send."""
        for authorization in (False, "Bearer", "Bearer    "):
            code, document = self.call("GET", "/api/keys", authorization=authorization)
            self.assertEqual(code, 401)
            self.assertIn("Authorization: Bearer <key>", document["error"])

    # last_used_at

    def test_last_used_at_is_written_at_most_once_per_minute(self):
        """First use is written at once; later uses show in GET at once but reach the store after a minute."""
        data = self.create({"name": "ci", "scope": "read"})
        self.call("GET", "/api/keys", key=data["key"])
        first = self.listed()["ci"]["last_used_at"]
        self.assertTrue(first.startswith("1970-01-12T13:46:40"))
        self.assertEqual(self.stored("ci")["last_used_at"], first)

        self.reactor.advance(10)
        self.call("GET", "/api/keys", key=data["key"])
        self.reactor.advance(10)
        self.call("GET", "/api/keys", key=data["key"])
        latest = self.listed()["ci"]["last_used_at"]
        self.assertTrue(latest.startswith("1970-01-12T13:47:00"))
        self.assertEqual(self.stored("ci")["last_used_at"], first)

        self.reactor.advance(FLUSH_INTERVAL - 20 - 1)
        self.assertEqual(self.stored("ci")["last_used_at"], first)
        self.reactor.advance(1)
        self.assertEqual(self.stored("ci")["last_used_at"], latest)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_flush_writes_held_back_times(self):
        """On shut-down ``flush`` writes what is held back and cancels the timer."""
        data = self.create({"name": "ci", "scope": "read"})
        self.call("GET", "/api/keys", key=data["key"])
        self.reactor.advance(5)
        self.call("GET", "/api/keys", key=data["key"])
        self.assertIn((data["id"],), [call.args for call in self.reactor.getDelayedCalls()])
        self.assertNotEqual(self.stored("ci")["last_used_at"], self.listed()["ci"]["last_used_at"])
        self.successResultOf(self.keys.flush())
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.stored("ci")["last_used_at"], self.listed()["ci"]["last_used_at"])
        self.assertEqual(self.stored("ci")["last_used_at"][:19], "1970-01-12T13:46:45")

    def test_last_used_at_survives_a_reload(self):
        """A new KeyRing on the same store (a restart) shows the flushed time."""
        self.call("GET", "/api/keys", key=self.read_key)
        self.successResultOf(self.keys.flush())
        again = KeyRing(self.store, reactor=self.reactor)
        self.successResultOf(again.load())
        views = {v["name"]: v for v in again.list()}
        self.assertEqual(views["viewer"]["last_used_at"], self.listed()["viewer"]["last_used_at"])

    def test_revoking_cancels_a_pending_write(self):
        """A revoked key leaves no timer behind."""
        data = self.create({"name": "ci", "scope": "read"})
        self.call("GET", "/api/keys", key=data["key"])
        self.reactor.advance(1)
        self.call("GET", "/api/keys", key=data["key"])
        self.assertIn((data["id"],), [call.args for call in self.reactor.getDelayedCalls()])
        self.assertEqual(self.call("DELETE", "/api/keys/" + data["id"])[0], 200)
        self.assertNotIn((data["id"],), [call.args for call in self.reactor.getDelayedCalls()])

    # brute-force throttle

    def test_too_many_failures_are_429_for_that_address_only(self):
        """After 5 failures an address gets 429 with Retry-After for its next failure; others are unaffected."""
        for _ in range(5):
            self.assertEqual(self.call("GET", "/api/keys", key="egw_guess")[0], 401)
        code, document, headers = self.request("GET", "/api/keys", key="egw_guess")
        self.assertEqual(code, 429)
        self.assertEqual(document["ok"], False)
        self.assertIn("too many failed authentications", document["error"])
        self.assertEqual(document["retry_after"], 1)
        self.assertEqual(headers.getRawHeaders("retry-after"), ["1"])
        # Another address is unaffected, failing or not.
        self.assertEqual(self.call("GET", "/api/keys", peer="10.0.0.2")[0], 200)
        self.assertEqual(self.call("GET", "/api/keys", key="egw_guess", peer="10.0.0.2")[0], 401)

    def test_valid_key_gets_in_from_a_throttled_address(self):
        """A handler failing in a loop from the operator's address cannot lock the
        operator out: once the address is throttled (429 for bad keys, a missing key
        or another scheme), the admin key and a read key from it still get 200 and
        take no attempt, while the next bad key is still a 429."""
        for _ in range(20):
            self.call("GET", "/api/keys", key="egw_guess", peer="127.0.0.1")
        for authorization in ("Bearer egw_guess", False, "Basic x"):
            code, _, headers = self.request("GET", "/api/keys", authorization=authorization, peer="127.0.0.1")
            self.assertEqual(code, 429, authorization)
            self.assertEqual(headers.getRawHeaders("retry-after"), ["1"])
        self.assertEqual(self.call("GET", "/api/keys", peer="127.0.0.1")[0], 200)
        self.assertEqual(self.call("POST", "/api/keys", {"name": "ci", "scope": "read"}, peer="127.0.0.1")[0], 201)
        self.assertEqual(self.call("GET", "/api/keys", key=self.read_key, peer="127.0.0.1")[0], 200)
        self.assertEqual(self.call("GET", "/api/keys", key="egw_guess", peer="127.0.0.1")[0], 429)

    def test_missing_keys_and_other_schemes_count_as_failures(self):
        """No header and a wrong scheme take attempts like a wrong key."""
        for _ in range(3):
            self.call("GET", "/api/keys", authorization=False)
        for _ in range(2):
            self.call("GET", "/api/keys", authorization="Basic x")
        self.assertEqual(self.call("GET", "/api/keys", authorization=False)[0], 429)

    def test_bucket_refills_with_time(self):
        """2 attempts a second come back, up to the burst of 5."""
        for _ in range(5):
            self.call("GET", "/api/keys", key="egw_guess")
        self.assertEqual(self.call("GET", "/api/keys", key="egw_guess")[0], 429)
        self.reactor.advance(0.5)
        self.assertEqual(self.call("GET", "/api/keys", key="egw_guess")[0], 401)
        self.assertEqual(self.call("GET", "/api/keys", key="egw_guess")[0], 429)
        self.reactor.advance(0.5)
        self.assertEqual(self.call("GET", "/api/keys", key="egw_guess")[0], 401)
        self.reactor.advance(60)
        for _ in range(5):
            self.assertEqual(self.call("GET", "/api/keys", key="egw_guess")[0], 401)
        self.assertEqual(self.call("GET", "/api/keys", key="egw_guess")[0], 429)

    def test_successes_take_no_attempts(self):
        """Any number of good requests, and 403s, never lead to 429."""
        for _ in range(20):
            self.assertEqual(self.call("GET", "/api/keys")[0], 200)
            self.assertEqual(
                self.call("DELETE", "/api/keys/x", key=self.read_key)[0], 403
            )
        self.assertEqual(self.call("GET", "/api/keys", key="egw_guess")[0], 401)

    def test_health_is_never_throttled(self):
        """GET /api/health needs no key, so failures elsewhere do not block it."""
        for _ in range(10):
            self.call("GET", "/api/keys", key="egw_guess")
        self.assertEqual(self.call("GET", "/api/health", authorization=False)[0], 200)


class StartingTests(_KeysAPICase):
    """Until the runtime has loaded keys and endpoints, the API says it is starting."""

    def test_health_and_calls_answer_503_while_starting(self):
        """Health is 503 "starting"; a call with a valid key is 503, not 401; both with Retry-After."""
        self.api.starting = True
        code, document, headers = self.request("GET", "/api/health")
        self.assertEqual((code, document["data"]["status"]), (503, "starting"))
        self.assertEqual(headers.getRawHeaders("retry-after"), ["1"])
        code, document, headers = self.request("GET", "/api/keys")
        self.assertEqual(code, 503)
        self.assertIn("the gateway is starting", document["error"])
        self.assertEqual(headers.getRawHeaders("retry-after"), ["1"])
        self.api.starting = False
        self.assertEqual(self.request("GET", "/api/health")[0], 200)
        self.assertEqual(self.request("GET", "/api/keys")[0], 200)


class CrossSiteTests(_KeysAPICase):
    """A browser on another site cannot make the API change anything, even with a key."""

    def _post(self, **extra):
        return self.request("POST", "/api/keys", {"name": "x", "scope": "read"}, extra=extra)

    def test_cross_site_fetch_is_403(self):
        """Sec-Fetch-Site: cross-site (or same-site: another origin) on a POST → 403 naming it."""
        for value in ("cross-site", "same-site"):
            code, document, _ = self._post(**{"Sec-Fetch-Site": value})
            self.assertEqual(code, 403)
            self.assertIn("cross-site requests may not change anything (Sec-Fetch-Site: " + value, document["error"])

    def test_foreign_origin_is_403(self):
        """An Origin other than the API's own on a POST → 403; nothing is created."""
        before = len(self.call("GET", "/api/keys")[1]["data"]["items"])
        for origin in ("http://evil.example", "null", "https://admin"):
            code, document, _ = self._post(Origin=origin)
            self.assertEqual(code, 403, origin)
            self.assertIn("Origin: " + origin, document["error"])
        self.assertEqual(len(self.call("GET", "/api/keys")[1]["data"]["items"]), before)

    def test_same_origin_and_plain_clients_may_write(self):
        """The Admin UI (same origin) and clients without those headers (curl, the CLI) work."""
        self.assertEqual(self._post(Origin="http://admin", **{"Sec-Fetch-Site": "same-origin"})[0], 201)
        self.assertEqual(self._post()[0], 201)

    def test_cross_site_reads_are_not_refused(self):
        """GET changes nothing: a cross-site GET is left to the key check."""
        code, _, _ = self.request("GET", "/api/keys", extra={"Sec-Fetch-Site": "cross-site"})
        self.assertEqual(code, 200)


class AuthThrottleTests(unittest.TestCase):
    """The bucket table on its own: its memory stays bounded."""

    def setUp(self):
        self.clock = SynchronousReactor()
        self.throttle = AuthThrottle(self.clock, burst=5, rate=2.0, max_clients=100)

    def test_idle_buckets_are_evicted(self):
        """A bucket that refilled says nothing and is dropped."""
        for i in range(50):
            self.throttle.failed("10.0.0.%d" % i)
        self.assertEqual(len(self.throttle), 50)
        self.clock.advance(0.4)
        for _ in range(5):
            self.throttle.failed("10.1.0.1")
        self.assertEqual(len(self.throttle), 51)
        self.clock.advance(2.2)  # the first 50 are full again (0.5 s), the last not (2.5 s)
        self.assertEqual(self.throttle.retry_after("10.9.9.9"), 0)
        self.assertEqual(len(self.throttle), 1)

    def test_table_size_is_capped(self):
        """Many addresses failing at once never hold more than max_clients buckets."""
        for i in range(1000):
            self.throttle.failed("10.0.%d.%d" % (i // 256, i % 256))
        self.assertEqual(len(self.throttle), 100)

    def test_retry_after_is_when_one_attempt_is_back(self):
        """An empty bucket waits 1/rate seconds, rounded up to whole seconds."""
        throttle = AuthThrottle(self.clock, burst=2, rate=0.25)
        throttle.failed("a")
        self.assertEqual(throttle.retry_after("a"), 0)
        throttle.failed("a")
        self.assertEqual(throttle.retry_after("a"), 4)
        self.clock.advance(3.5)
        self.assertEqual(throttle.retry_after("a"), 1)
        self.clock.advance(0.5)
        self.assertEqual(throttle.retry_after("a"), 0)
