"""
The ``auth`` part of a policy (edgegw_tx/policy/auth.py): its 400s by field,
API keys of consumers (consumers.py), the identity header fields it sets and
``strip_identity``, which removes a client's forged ones.  Tokens
(``type: jwt``) are in test_policy_jwt.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.admin import schemadocs
from edgegw_tx.admin.auth import hash_key as admin_hash_key
from edgegw_tx.policy import auth, jwt, model
from edgegw_tx.policy.consumers import ConsumerKeys, ConsumerRecord, generate_key, hash_key
from edgegw_tx.policy.part import PolicyContext, PolicyRequest

DOCS = Path(__file__).resolve().parent.parent / "docs" / "policies.md"


def request(headers: dict[str, str]) -> PolicyRequest:
    """A GET with ``headers`` (lower-case names)."""
    return PolicyRequest("GET", "/orders", dict(headers), "192.0.2.1")


def refused(test: unittest.TestCase, config: object) -> model.PolicyError:
    """The error validating ``{"auth": config}`` on an endpoint raises."""
    return test.assertRaises(model.PolicyError, model.validate, {"auth": config}, "endpoint")


class ConsumerKeysTests(unittest.TestCase):
    """Key hash → consumer, as the data plane looks keys up."""

    def test_hash_and_generate_are_the_admin_keys(self) -> None:
        """Consumer keys are made and hashed by the admin keys' own functions (one rule for both)."""
        key = generate_key()
        self.assertEqual(hash_key(key), admin_hash_key(key))
        self.assertNotEqual(generate_key(), key)

    def test_lookup(self) -> None:
        """A key of an enabled consumer gives its name; a disabled consumer's or an unknown key gives None."""
        good, off = generate_key(), generate_key()
        keys = ConsumerKeys()
        keys.load(
            [
                ConsumerRecord(name="shop", enabled=True, key_hashes=[hash_key(good)]),
                ConsumerRecord(name="old", enabled=False, key_hashes=[hash_key(off)]),
            ]
        )
        self.assertEqual(keys.lookup(good), "shop")
        self.assertIsNone(keys.lookup(off))
        self.assertIsNone(keys.lookup(generate_key()))
        self.assertIsNone(keys.lookup(hash_key(good)))

    def test_load_replaces(self) -> None:
        """``load`` is a full reload: a key no longer in the records is gone."""
        key = generate_key()
        keys = ConsumerKeys()
        keys.load([ConsumerRecord(name="shop", enabled=True, key_hashes=[hash_key(key)])])
        keys.load([])
        self.assertIsNone(keys.lookup(key))


class AuthSchemaTests(unittest.TestCase):
    """What ``validate`` accepts and refuses in ``policy.auth`` (the jwt fields' own rules: test_policy_jwt.py)."""

    def test_accepts_api_key(self) -> None:
        """``api_key`` with or without a header name is accepted as given."""
        for config in ({"type": "api_key"}, {"type": "api_key", "header": "X-Consumer-Key"}):
            self.assertEqual(model.validate({"auth": config}, "endpoint"), {"auth": config})

    def test_type_required_and_known(self) -> None:
        """A missing or unknown ``type`` is refused naming policy.auth.type."""
        self.assertEqual(refused(self, {}).field, "policy.auth.type")
        error = refused(self, {"type": "basic"})
        self.assertEqual(error.field, "policy.auth.type")
        self.assertIn("api_key, jwt", error.message)

    def test_unknown_field(self) -> None:
        """A field the part does not have is refused by its full path."""
        error = refused(self, {"type": "api_key", "headr": "X-Key"})
        self.assertEqual(error.field, "policy.auth.headr")
        self.assertIn("unknown field", error.message)

    def test_jwt_fields_refused_with_api_key(self) -> None:
        """A jwt-only field on an ``api_key`` config is refused by its name."""
        error = refused(self, {"type": "api_key", "algorithms": ["RS256"]})
        self.assertEqual(error.field, "policy.auth.algorithms")
        self.assertIn("only for type 'jwt'", error.message)

    def test_header_name(self) -> None:
        """A header that is no HTTP token, too long, or one of the identity fields is refused naming policy.auth.header."""
        for header in ("X Key", "", "x" * (auth.MAX_HEADER_NAME + 1), "X-Edgegw-Consumer"):
            error = refused(self, {"type": "api_key", "header": header})
            self.assertEqual(error.field, "policy.auth.header")

    def test_secret_masked(self) -> None:
        """``secret`` is one of the part's SECRETS, so the API masks it."""
        self.assertEqual(auth.SECRETS, ("secret",))


class ApiKeyCheckTests(unittest.TestCase):
    """``type: api_key`` on requests."""

    def setUp(self) -> None:
        self.key, self.off = generate_key(), generate_key()
        self.consumers = ConsumerKeys()
        self.consumers.load(
            [
                ConsumerRecord(name="shop", enabled=True, key_hashes=[hash_key(self.key)]),
                ConsumerRecord(name="old", enabled=False, key_hashes=[hash_key(self.off)]),
            ]
        )
        self.context = PolicyContext(seconds=Clock().seconds, consumers=self.consumers)

    def check(self, config: dict[str, str], headers: dict[str, str]) -> tuple[object, PolicyRequest]:
        """The verdict of ``config`` built and run on a request with ``headers``, and the request after."""
        built = auth.build(config, self.context)
        req = request(headers)
        return built.check(req, []), req

    def assertUnauthorized(self, verdict: object, words: str) -> None:
        """``verdict`` is a 401 challenging for the X-API-Key header, its JSON error holding ``words``."""
        assert isinstance(verdict, tuple)
        status, headers, body = verdict
        self.assertEqual(status, 401)
        self.assertIn(("www-authenticate", 'ApiKey header="X-API-Key"'), headers)
        self.assertIn(("content-type", "application/json"), headers)
        self.assertIn(words, json.loads(body)["error"])

    def test_good_key(self) -> None:
        """An enabled consumer's key goes on, named in CONSUMER_HEADER, the key itself removed."""
        verdict, req = self.check({"type": "api_key"}, {"x-api-key": self.key, "accept": "*/*"})
        self.assertIsNone(verdict)
        self.assertEqual(req.headers, {auth.CONSUMER_HEADER: "shop", "accept": "*/*"})

    def test_configured_header(self) -> None:
        """``header`` names where the key is (any case); the default header then means nothing."""
        config = {"type": "api_key", "header": "X-Consumer-Key"}
        verdict, req = self.check(config, {"x-consumer-key": self.key})
        self.assertIsNone(verdict)
        self.assertEqual(req.headers[auth.CONSUMER_HEADER], "shop")
        verdict, _ = self.check(config, {"x-api-key": self.key})
        assert isinstance(verdict, tuple)
        self.assertIn(("www-authenticate", 'ApiKey header="X-Consumer-Key"'), verdict[1])

    def test_missing(self) -> None:
        """No key (or an empty one) is a 401 saying which header to send."""
        for headers in ({}, {"x-api-key": " "}):
            verdict, req = self.check({"type": "api_key"}, headers)
            self.assertUnauthorized(verdict, "missing API key: send it in the X-API-Key header")
            self.assertNotIn(auth.CONSUMER_HEADER, req.headers)

    def test_unknown_and_disabled(self) -> None:
        """An unknown key or a disabled consumer's is a 401 that does not echo the key."""
        for key in (generate_key(), self.off):
            verdict, req = self.check({"type": "api_key"}, {"x-api-key": key})
            self.assertUnauthorized(verdict, "not one of an enabled consumer")
            assert isinstance(verdict, tuple)
            self.assertNotIn(key.encode(), verdict[2])
            self.assertNotIn(auth.CONSUMER_HEADER, req.headers)

    def test_reload_seen_without_rebuild(self) -> None:
        """A consumer disabled after the route was built is refused at once (the check reads the live keys)."""
        built = auth.build({"type": "api_key"}, self.context)
        self.consumers.load([ConsumerRecord(name="shop", enabled=False, key_hashes=[hash_key(self.key)])])
        verdict = built.check(request({"x-api-key": self.key}), [])
        self.assertUnauthorized(verdict, "not one of an enabled consumer")

    def test_build_needs_consumers(self) -> None:
        """Building an api_key check without the consumers is a programming error, said at build."""
        self.assertRaises(ValueError, auth.build, {"type": "api_key"}, PolicyContext(seconds=Clock().seconds))


class StripIdentityTests(unittest.TestCase):
    """The identity fields a client cannot forge."""

    def test_strips_all_three(self) -> None:
        """``strip_identity`` removes every identity field and leaves the others."""
        headers = {name: "forged" for name in auth.IDENTITY_HEADERS}
        headers["accept"] = "*/*"
        auth.strip_identity(headers)
        self.assertEqual(headers, {"accept": "*/*"})
        auth.strip_identity(headers)
        self.assertEqual(headers, {"accept": "*/*"})

    def test_names(self) -> None:
        """The names the handler and the rate limiter read are the documented ones, in lower case."""
        self.assertEqual(
            (auth.CONSUMER_HEADER, auth.SUBJECT_HEADER, auth.CLAIMS_HEADER),
            ("x-edgegw-consumer", "x-edgegw-subject", "x-edgegw-claims"),
        )

    def test_forged_consumer_replaced(self) -> None:
        """A forged consumer name, stripped and then checked, is replaced by the key's consumer."""
        key = generate_key()
        consumers = ConsumerKeys()
        consumers.load([ConsumerRecord(name="shop", enabled=True, key_hashes=[hash_key(key)])])
        built = auth.build({"type": "api_key"}, PolicyContext(seconds=Clock().seconds, consumers=consumers))
        req = request({"x-api-key": key, auth.CONSUMER_HEADER: "admin"})
        auth.strip_identity(req.headers)
        self.assertIsNone(built.check(req, []))
        self.assertEqual(req.headers[auth.CONSUMER_HEADER], "shop")


class DocsTests(unittest.TestCase):
    """docs/policies.md says what auth.SCHEMA says."""

    def test_table_matches_schema(self) -> None:
        """The auth table has the fields, types and defaults of auth.SCHEMA (schemadocs renders it unchanged)."""
        document = DOCS.read_text(encoding="utf-8")
        self.patch(schemadocs, "TABLES", {**schemadocs.TABLES, "policy-auth": auth.SCHEMA})
        begin = document.index("<!-- schema:policy-auth -->\n")
        table = document[begin : document.index("<!-- /schema -->\n", begin) + len("<!-- /schema -->\n")]
        self.assertEqual(schemadocs.render(table), table)

    def test_algorithms_listed(self) -> None:
        """The docs list the algorithms a policy may name, as jwt.ALGORITHMS has them."""
        document = " ".join(DOCS.read_text(encoding="utf-8").split())
        sentence = document[document.index("Each of `algorithms` is one of") :].split(" (RFC 9864")[0]
        self.assertEqual(tuple(re.findall(r"`([A-Za-z0-9]+)`", sentence)[1:]), jwt.ALGORITHMS)

    def test_token_cache_size_documented(self) -> None:
        """The number of tokens a route remembers is the one jwt.TOKEN_CACHE_SIZE says."""
        document = " ".join(DOCS.read_text(encoding="utf-8").split())
        self.assertIn(f"remembers the tokens it verified (up to {jwt.TOKEN_CACHE_SIZE:,} per route,", document)
