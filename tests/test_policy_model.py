"""
A traffic policy as a whole (edgegw_tx/policy/model.py): the schema of each
level, validation errors by full field path, per-part inheritance and its
sources, masking secrets and taking them back, and the compiled check's order,
short-circuit and Deferred chaining (on fake parts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.admin import schemadocs
from edgegw_tx.policy import model
from edgegw_tx.policy.part import PolicyContext, PolicyRequest, Verdict
from edgegw_tx.services.config import MASK

DOCS = Path(__file__).resolve().parent.parent / "docs" / "policies.md"
CONTEXT = PolicyContext(seconds=Clock().seconds)
SPLIT = {"versions": [{"version": "a1b2c3d", "weight": 90}, {"version": "e4f5a6b", "weight": 10}]}


def refused(test: unittest.TestCase, policy: Any, level: str = "endpoint") -> model.PolicyError:
    """The error ``validate`` raises for ``policy`` on ``level``."""
    return test.assertRaises(model.PolicyError, model.validate, policy, level)


class SchemaTests(unittest.TestCase):
    """``policy_schema``: which parts each level has, each nullable."""

    def test_parts_by_level(self) -> None:
        """Every part is on an endpoint; traffic_split is not on collections or domains."""
        self.assertEqual(set(model.policy_schema("endpoint")["properties"]), set(model.PARTS))
        for level in ("collection", "domain"):
            self.assertEqual(
                set(model.policy_schema(level)["properties"]), set(model.PARTS) - set(model.ENDPOINT_ONLY)
            )

    def test_all_parts_present(self) -> None:
        """The six parts of the issue are all loaded."""
        self.assertEqual(
            set(model.PARTS), {"cors", "ip", "auth", "rate_limit", "limits", "traffic_split"}
        )

    def test_parts_nullable_and_closed(self) -> None:
        """Each part's schema takes null (inherit) and the policy object refuses unknown parts."""
        schema = model.policy_schema("endpoint")
        self.assertIs(schema["additionalProperties"], False)
        for name, part in schema["properties"].items():
            self.assertIn("null", part["type"], name)
            self.assertIn("object", part["type"], name)
            self.assertIs(part["additionalProperties"], False, name)

    def test_descriptions_say_inheritance(self) -> None:
        """A part's description says what null means on its level."""
        self.assertIn("the collection's", model.policy_schema("endpoint")["properties"]["limits"]["description"])
        self.assertIn("the domain's", model.policy_schema("collection")["properties"]["limits"]["description"])
        self.assertIn("none", model.policy_schema("domain")["properties"]["limits"]["description"])

    def test_unknown_level(self) -> None:
        """A level that is not domain, collection or endpoint is a programming error."""
        self.assertRaises(ValueError, model.policy_schema, "node")


class ValidateTests(unittest.TestCase):
    """``validate``: what is stored, and the field each refusal names."""

    def test_nulls_dropped(self) -> None:
        """Parts set to null are left out of what is stored; None is the empty policy."""
        self.assertEqual(model.validate({"cors": None, "limits": {"timeout": 1}}, "domain"), {"limits": {"timeout": 1}})
        self.assertEqual(model.validate(None, "endpoint"), {})
        self.assertEqual(model.validate({}, "endpoint"), {})

    def test_not_an_object(self) -> None:
        """A policy that is not an object is refused naming ``policy``."""
        for value in ([], "cors", 1):
            error = refused(self, value)
            self.assertEqual(error.field, "policy")
            self.assertIn("must be an object or null", error.message)

    def test_unknown_part(self) -> None:
        """An unknown part is refused by its path."""
        error = refused(self, {"limits": {}, "cros": {}})
        self.assertEqual((error.field, error.message), ("policy.cros", "unknown field 'policy.cros'"))

    def test_part_not_an_object(self) -> None:
        """Every part that is not an object (nor null) is refused naming the part."""
        for name in model.PARTS:
            error = refused(self, {name: [1]})
            self.assertEqual(error.field, f"policy.{name}")

    def test_unknown_field_in_every_part(self) -> None:
        """An unknown field inside each part is refused by its full path."""
        for name in model.PARTS:
            error = refused(self, {name: {"bogus": 1}})
            self.assertEqual(error.field, f"policy.{name}.bogus", name)
            self.assertIn("policy." + name + ".bogus", error.message)

    def test_schema_errors_by_path(self) -> None:
        """Each part's schema refusal names the field inside the part, array indexes included."""
        cases = [
            ({"cors": {"allow_origins": [5]}}, "policy.cors.allow_origins[0]"),
            ({"ip": {"deny": ["nonsense"]}}, "policy.ip.deny[0]"),
            ({"rate_limit": {"requests": 0, "per_seconds": 1}}, "policy.rate_limit.requests"),
            ({"auth": {"type": "api_key", "header": 5}}, "policy.auth.header"),
            ({"limits": {"timeout": 0}}, "policy.limits.timeout"),
            ({"traffic_split": {"versions": [SPLIT["versions"][0], {"version": "xyz", "weight": 10}]}},
             "policy.traffic_split.versions[1].version"),
        ]
        for policy, path in cases:
            self.assertEqual(refused(self, policy).field, path, policy)

    def test_part_problems_by_path(self) -> None:
        """A part's own checks (beyond the schema) are named by their full path."""
        cases = [
            ({"cors": {"allow_origins": ["*"], "allow_credentials": True}}, "policy.cors.allow_credentials"),
            ({"ip": {"allow": ["10.0.0.1/8"]}}, "policy.ip.allow[0]"),
            ({"traffic_split": {"versions": [{"version": "a1b2c3d", "weight": 50}]}}, "policy.traffic_split.versions"),
        ]
        for policy, path in cases:
            error = refused(self, policy)
            self.assertEqual(error.field, path, policy)
            self.assertTrue(error.message.startswith(f"field '{path}': "), error.message)

    def test_traffic_split_endpoints_only(self) -> None:
        """traffic_split is accepted on an endpoint and refused as unknown on a collection or a domain."""
        self.assertEqual(model.validate({"traffic_split": SPLIT}, "endpoint"), {"traffic_split": SPLIT})
        for level in ("collection", "domain"):
            self.assertEqual(refused(self, {"traffic_split": SPLIT}, level).field, "policy.traffic_split")

    def test_split_weights_and_versions(self) -> None:
        """Weights must add up to 100; one version named twice (or by a prefix of another) is refused."""
        twice = {"versions": [{"version": "a1b2c3d", "weight": 50}, {"version": "A1B2C3D4", "weight": 50}]}
        self.assertEqual(refused(self, {"traffic_split": twice}).field, "policy.traffic_split.versions[1].version")
        self.assertIn("add up to 90", refused(self, {"traffic_split": {"versions": SPLIT["versions"][:1] + [
            {"version": "e4f5a6b", "weight": 0}]}}).message)

    def test_split_sticky(self) -> None:
        """sticky takes header:<Name> or cookie:<name>, nothing else."""
        for sticky in ("header:X-User", "cookie:uid"):
            model.validate({"traffic_split": {**SPLIT, "sticky": sticky}}, "endpoint")
        for sticky in ("ip", "header:", "cookie:a b", "query:x"):
            error = refused(self, {"traffic_split": {**SPLIT, "sticky": sticky}})
            self.assertEqual(error.field, "policy.traffic_split.sticky")


class InheritanceTests(unittest.TestCase):
    """``effective``: each part from the nearest level that sets it."""

    def test_nearest_level_wins_per_part(self) -> None:
        """Each part comes whole from the endpoint, else the collection, else the domain, and says which."""
        domain = {"cors": {"allow_origins": ["https://d.example"]}, "limits": {"timeout": 9}, "ip": {"deny": ["10.0.0.0/8"]}}
        collection = {"cors": {"allow_origins": ["https://c.example"], "max_age": 60}, "limits": None}
        endpoint = {"cors": {"allow_origins": ["https://e.example"]}}
        result = model.effective(endpoint, collection, domain)
        self.assertEqual(
            result.parts,
            {"cors": {"allow_origins": ["https://e.example"]}, "limits": {"timeout": 9}, "ip": {"deny": ["10.0.0.0/8"]}},
        )
        self.assertEqual(result.sources, {"cors": "endpoint", "limits": "domain", "ip": "domain"})

    def test_part_replaced_not_merged(self) -> None:
        """A part set on the endpoint does not keep the collection's other fields of that part."""
        result = model.effective({"limits": {"max_body": 5}}, {"limits": {"timeout": 3}}, None)
        self.assertEqual(result.parts, {"limits": {"max_body": 5}})
        self.assertEqual(result.sources, {"limits": "endpoint"})

    def test_collection_over_domain(self) -> None:
        """With nothing on the endpoint, the collection's part wins over the domain's."""
        result = model.effective(None, {"limits": {"timeout": 3}}, {"limits": {"timeout": 4}})
        self.assertEqual((result.parts, result.sources), ({"limits": {"timeout": 3}}, {"limits": "collection"}))

    def test_nothing_anywhere(self) -> None:
        """No policy on any level is the empty effective policy."""
        result = model.effective(None, {}, None)
        self.assertEqual((result.parts, result.sources), ({}, {}))

    def test_split_from_endpoint_only(self) -> None:
        """A traffic_split on a collection or domain (stored before a change) is never inherited."""
        result = model.effective({}, {"traffic_split": SPLIT}, {"traffic_split": SPLIT})
        self.assertEqual(result.parts, {})
        self.assertEqual(model.effective({"traffic_split": SPLIT}, None, None).sources, {"traffic_split": "endpoint"})


FAKE_SECRET_PARTS = {"auth": SimpleNamespace(SECRETS=("secret", "jwks")), "cors": SimpleNamespace(SECRETS=())}


class MaskingTests(unittest.TestCase):
    """``masked`` and ``unmask``: secrets never shown, kept when sent back masked."""

    stored = {
        "auth": {"type": "jwt", "secret": "s3cr3t-s3cr3t", "jwks": {"keys": [{"kty": "oct"}]}, "issuer": "me"},
        "cors": {"allow_origins": ["*"]},
    }

    def test_masked(self) -> None:
        """Every secret that is set shows as the mask; other fields and parts unchanged; input untouched."""
        shown = model.masked(self.stored, FAKE_SECRET_PARTS)
        self.assertEqual(
            shown,
            {"auth": {"type": "jwt", "secret": MASK, "jwks": MASK, "issuer": "me"}, "cors": {"allow_origins": ["*"]}},
        )
        self.assertEqual(self.stored["auth"]["secret"], "s3cr3t-s3cr3t")

    def test_round_trip(self) -> None:
        """PUTting back what GET showed keeps the stored secrets."""
        shown = model.masked(self.stored, FAKE_SECRET_PARTS)
        self.assertEqual(model.unmask(shown, self.stored, FAKE_SECRET_PARTS), self.stored)

    def test_new_secret_replaces(self) -> None:
        """A secret sent as a new value replaces the stored one; a masked one beside it is kept."""
        sent = {"auth": {"type": "jwt", "secret": "new-one", "jwks": MASK, "issuer": "me"}}
        result = model.unmask(sent, self.stored, FAKE_SECRET_PARTS)
        self.assertEqual(result["auth"]["secret"], "new-one")
        self.assertEqual(result["auth"]["jwks"], self.stored["auth"]["jwks"])

    def test_mask_without_stored_secret_dropped(self) -> None:
        """A mask sent where nothing is stored is dropped (validation then names the field missing)."""
        sent = {"auth": {"type": "jwt", "secret": MASK}}
        self.assertEqual(model.unmask(sent, None, FAKE_SECRET_PARTS), {"auth": {"type": "jwt"}})

    def test_not_a_policy_passes_through(self) -> None:
        """What is not an object is returned as it is, for validation to refuse."""
        self.assertEqual(model.unmask([1], self.stored, FAKE_SECRET_PARTS), [1])

    def test_real_parts_secrets_masked(self) -> None:
        """With the real parts, a JWT secret of the auth part never shows."""
        secrets = model.PARTS["auth"].SECRETS
        self.assertTrue(secrets)
        config = {name: "x" * 40 for name in secrets}
        self.assertEqual(model.masked({"auth": config}), {"auth": {name: MASK for name in secrets}})


@dataclass
class FakePart:
    """A part whose check answers ``verdict`` and records that it ran."""

    name: str
    log: list[str]
    verdict: Any = None
    header: tuple[str, str] | None = None

    def check(self, request: PolicyRequest, extra: list[tuple[str, str]]) -> Any:
        """Record the call, add ``header`` to ``extra``, answer ``verdict``."""
        self.log.append(self.name)
        if self.header is not None:
            extra.append(self.header)
        return self.verdict


@dataclass
class FakeModule:
    """A part module whose ``build`` returns a ``FakePart``."""

    part: FakePart
    built: list[Any] = field(default_factory=list)

    def build(self, config: Any, context: PolicyContext) -> FakePart:
        """The fake check; remembers the config it was built from."""
        self.built.append(config)
        return self.part


def fakes(log: list[str], **verdicts: Any) -> dict[str, FakeModule]:
    """A fake module for each checking part, answering ``verdicts[name]`` (None by default)."""
    return {
        name: FakeModule(FakePart(name, log, verdicts.get(name)))
        for name in ("limits", "rate_limit", "auth", "ip", "cors")  # not in check order on purpose
    }


ALL = {"cors": {}, "ip": {}, "auth": {}, "rate_limit": {}, "limits": {}}
REQUEST = PolicyRequest("GET", "/x", {}, "192.0.2.1")
TOO_MANY: Verdict = (429, [("retry-after", "1")], b'{"error": "too many requests"}')


class CompileTests(unittest.TestCase):
    """``compile`` and the compiled check."""

    def compiled(self, modules: dict[str, FakeModule], parts: dict[str, Any] = ALL) -> model.CompiledPolicy:
        """The policy of ``parts`` on the endpoint, compiled with ``modules``."""
        result = model.compile(model.effective(parts, None, None), CONTEXT, modules)
        assert result is not None
        return result

    def test_empty_is_none(self) -> None:
        """No part set on any level compiles to None: the route pays nothing."""
        self.assertIsNone(model.compile(model.effective(None, None, None), CONTEXT))
        self.assertIsNone(model.compile(model.effective({}, {"cors": None}, {}), CONTEXT))

    def test_order(self) -> None:
        """Parts check in CHECK_ORDER: cors, ip, auth, rate_limit, limits, whatever the modules' order."""
        log: list[str] = []
        self.assertIsNone(self.compiled(fakes(log)).check(REQUEST, []))
        self.assertEqual(log, ["cors", "ip", "auth", "rate_limit", "limits"])
        self.assertEqual(model.CHECK_ORDER, ("cors", "ip", "auth", "rate_limit", "limits"))

    def test_only_set_parts_built(self) -> None:
        """Only the parts set are built and checked, each from its config."""
        log: list[str] = []
        modules = fakes(log)
        self.compiled(modules, {"ip": {"deny": []}, "limits": {"max_body": 1}}).check(REQUEST, [])
        self.assertEqual(log, ["ip", "limits"])
        self.assertEqual(modules["ip"].built, [{"deny": []}])
        self.assertEqual(modules["cors"].built, [])

    def test_first_early_answer_stops(self) -> None:
        """The first part that answers is the answer; the parts after it do not run."""
        log: list[str] = []
        verdict = self.compiled(fakes(log, auth=(401, [], b"{}"))).check(REQUEST, [])
        self.assertEqual(verdict, (401, [], b"{}"))
        self.assertEqual(log, ["cors", "ip", "auth"])

    def test_preflight_not_charged(self) -> None:
        """A preflight answered by cors never reaches auth or rate_limit."""
        log: list[str] = []
        preflight = (204, [("access-control-allow-origin", "https://a.example")], b"")
        self.assertEqual(self.compiled(fakes(log, cors=preflight)).check(REQUEST, []), preflight)
        self.assertEqual(log, ["cors"])

    def test_cors_headers_reach_later_answers(self) -> None:
        """Headers cors adds to ``extra`` are there when a later part answers (a 429 a browser can read)."""
        log: list[str] = []
        modules = fakes(log, rate_limit=TOO_MANY)
        modules["cors"].part.header = ("access-control-allow-origin", "https://a.example")
        extra: list[tuple[str, str]] = []
        self.assertEqual(self.compiled(modules).check(REQUEST, extra), TOO_MANY)
        self.assertEqual(extra, [("access-control-allow-origin", "https://a.example")])

    def test_deferred_part_chains_the_rest(self) -> None:
        """A part answering a Deferred holds the later parts until it fires None, then they run."""
        log: list[str] = []
        waiting: Deferred[Verdict] = Deferred()
        result = self.compiled(fakes(log, rate_limit=waiting)).check(REQUEST, [])
        assert isinstance(result, Deferred)
        self.assertEqual(log, ["cors", "ip", "auth", "rate_limit"])
        outcome: list[Verdict] = []
        result.addCallback(outcome.append)
        self.assertEqual(outcome, [])
        waiting.callback(None)
        self.assertEqual(log, ["cors", "ip", "auth", "rate_limit", "limits"])
        self.assertEqual(outcome, [None])

    def test_deferred_early_answer_stops(self) -> None:
        """A Deferred firing an early answer is the answer; the later parts never run."""
        log: list[str] = []
        waiting: Deferred[Verdict] = Deferred()
        result = self.compiled(fakes(log, rate_limit=waiting)).check(REQUEST, [])
        assert isinstance(result, Deferred)
        waiting.callback(TOO_MANY)
        self.assertEqual(self.successResultOf(result), TOO_MANY)
        self.assertEqual(log, ["cors", "ip", "auth", "rate_limit"])

    def test_two_deferred_parts(self) -> None:
        """A second waiting part after a first is chained too; the answer is the later one's."""
        log: list[str] = []
        first: Deferred[Verdict] = Deferred()
        second: Deferred[Verdict] = Deferred()
        result = self.compiled(fakes(log, auth=first, limits=second)).check(REQUEST, [])
        assert isinstance(result, Deferred)
        first.callback(None)
        self.assertNoResult(result)
        self.assertEqual(log, ["cors", "ip", "auth", "rate_limit", "limits"])
        second.callback((413, [], b"{}"))
        self.assertEqual(self.successResultOf(result), (413, [], b"{}"))

    def test_deferred_failure_propagates(self) -> None:
        """A waiting part that fails fails the check; the later parts do not run."""
        log: list[str] = []
        waiting: Deferred[Verdict] = Deferred()
        result = self.compiled(fakes(log, auth=waiting)).check(REQUEST, [])
        assert isinstance(result, Deferred)
        waiting.errback(RuntimeError("store down"))
        self.failureResultOf(result, RuntimeError)
        self.assertEqual(log, ["cors", "ip", "auth"])

    def test_timeout_and_split(self) -> None:
        """The compiled policy carries limits' timeout and the split as configured; no checks for a split alone."""
        compiled = model.compile(model.effective({"traffic_split": SPLIT}, None, {"limits": {"timeout": 2}}), CONTEXT)
        assert compiled is not None
        self.assertEqual((compiled.timeout, compiled.split), (2.0, SPLIT))
        alone = model.compile(model.effective({"traffic_split": SPLIT}, None, None), CONTEXT)
        assert alone is not None
        self.assertEqual((alone.checks, alone.timeout), ((), None))

    def test_rate_limit_built_with_its_owner(self) -> None:
        """rate_limit is built with the name of the record it came from (its cluster budget); others without."""
        calls: list[tuple[Any, dict[str, Any]]] = []

        class Recording:
            def build(self, config: Any, context: PolicyContext, **keywords: Any) -> FakePart:
                calls.append((config, keywords))
                return FakePart("x", [])

        owners = {"endpoint": "endpoint:7", "collection": "collection:3", "domain": "domain:api.example.com"}
        policy = model.effective({"limits": {}}, {"rate_limit": {"requests": 1}}, None)
        model.compile(policy, CONTEXT, {"rate_limit": Recording(), "limits": Recording()}, owners)
        self.assertEqual(calls, [({"requests": 1}, {"identity": "collection:3"}), ({}, {})])

    def test_real_parts_build(self) -> None:
        """A valid policy of every checking part compiles with the real modules, one check each."""
        policy = model.validate(
            {
                "cors": {"allow_origins": ["https://a.example"]},
                "ip": {"deny": ["10.0.0.0/8"]},
                "auth": {"type": "api_key", "header": "X-API-Key"},
                "rate_limit": {"requests": 10, "per_seconds": 1},
                "limits": {"max_body": 10},
            },
            "endpoint",
        )
        compiled = model.compile(model.effective(policy, None, None), PolicyContext(seconds=Clock().seconds, consumers={}))
        assert compiled is not None
        self.assertEqual(len(compiled.checks), 5)


class DocsTests(unittest.TestCase):
    """docs/policies.md says what the schemas say."""

    def test_part_tables_match_schemas(self) -> None:
        """The limits and traffic_split tables have the fields, types and defaults of their SCHEMA."""
        document = DOCS.read_text(encoding="utf-8")
        owned = {"policy-limits": model.PARTS["limits"].SCHEMA, "policy-traffic-split": model.PARTS["traffic_split"].SCHEMA}
        self.assertLessEqual(set(owned), set(re.findall(r"<!-- schema:([a-z_-]+) -->", document)))
        self.patch(schemadocs, "TABLES", {**schemadocs.TABLES, **owned})
        for name in owned:
            begin = document.index(f"<!-- schema:{name} -->\n")
            table = document[begin : document.index("<!-- /schema -->\n", begin) + len("<!-- /schema -->\n")]
            self.assertEqual(schemadocs.render(table), table, name)

    def test_check_order_documented(self) -> None:
        """The order table of docs/policies.md lists the parts in CHECK_ORDER."""
        document = DOCS.read_text(encoding="utf-8")
        listed = re.findall(r"^\| \d \| `([a-z_]+)` \|", document, re.M)
        self.assertEqual(tuple(listed), model.CHECK_ORDER)
