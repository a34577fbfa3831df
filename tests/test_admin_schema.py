"""
The management API's one schema (``edgegw_tx/admin/schema.py``) and the
server's checks that come from it (``edgegw_tx/admin/validation.py``).

The published patterns are ECMA-262 (what JSON Schema and every client's
validator read), and the server and the published document agree on every
body: those hypothesis generates from the document, and those just outside it
(one character over a ``maxLength``, a wrong type, an unknown field, a missing
required field, a value off its pattern). The server refuses more than the
schema only for the rules a schema cannot say, listed in ``PYTHON_ONLY``, and
a policy part's own rules (a 400 naming a ``policy.`` field: docs/policies.md).
"""

import json
import os
import re
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.trial import unittest

from edgegw_tx.admin import schemadocs
from edgegw_tx.admin.errors import BadRequest
from edgegw_tx.admin.openapi import DOCUMENT_JSON
from edgegw_tx.admin.imports import openapi_options
from edgegw_tx.admin.probe import check_test_request
from edgegw_tx.admin.schema import MAX_CODE, MAX_DESCRIPTION, MAX_NAME, SERVICE_CONFIG_INPUT, SERVICE_TYPES
from edgegw_tx.admin.services import ServiceManager
from edgegw_tx.admin.validation import SchemaValidator, ecma_regex, endpoint_fields, rollback_version
from edgegw_tx.services.config import validate_config

_DOCUMENT = json.loads(DOCUMENT_JSON)
PUBLISHED = dict(_DOCUMENT["components"]["schemas"])
# The bodies written inline in their operation, named by its operationId.
PUBLISHED.update(
    (operation["operationId"], operation["requestBody"]["content"]["application/json"]["schema"])
    for item in _DOCUMENT["paths"].values()
    for operation in item.values()
    if isinstance(operation, dict)
    and "application/json" in operation.get("requestBody", {}).get("content", {})
    and "$ref" not in operation["requestBody"]["content"]["application/json"]["schema"]
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Python's regex syntax that ECMA-262 does not have (or reads otherwise).
NOT_ECMA = re.compile(r"\\[AZz]|\(\?P|\(\?<[=!]|\(\?[aiLmsux]|\(\?#")

# What only the server checks, by the words of its 400 (docs/api.md says so too).
PYTHON_ONLY = (
    "is not a valid path pattern",  # the path's grammar: a parameter named twice, bad percent-escapes
    "must not be above max_instances",  # min_instances <= max_instances
    "is not an IPv6 address",  # a network entry's [address]: the pattern only approximates IPv6's grammar
    "has a segment longer than",  # a service path's segment, in UTF-8 bytes (the pattern counts characters)
    "is the one-route form of 'routes'",  # method/path beside routes must be its first route
    "is the same route as",  # one method and path shape once among an endpoint's routes
)


def published_patterns(node: Any) -> list[str]:
    """Every ``pattern`` in a part of the published document."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(published_patterns(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(published_patterns(value))
    return found


def schema_accepts(name: str, body: Any) -> bool:
    """Whether the published schema ``name`` accepts ``body``."""
    return not list(SchemaValidator(PUBLISHED[name]).iter_errors(body))


class PatternTests(unittest.SynchronousTestCase):
    def test_published_patterns_are_ecma_262(self) -> None:
        """No published pattern uses Python-only syntax (\\Z, look-behind, named groups, inline flags)."""
        patterns = published_patterns(json.loads(DOCUMENT_JSON))
        self.assertGreater(len(patterns), 20)
        for pattern in patterns:
            self.assertIsNone(NOT_ECMA.search(pattern), pattern)
            re.compile(pattern)

    def test_host_with_white_space_and_capitals_agrees(self) -> None:
        """' API.Example.com ' is a host for the server and for the published schema alike."""
        body = {"name": "x", "path": "/x", "method": "GET", "domain": " API.Example.com "}
        self.assertEqual(endpoint_fields(body)["domain"], "api.example.com")
        self.assertTrue(schema_accepts("EndpointCreate", body))
        self.assertTrue(schema_accepts("EndpointUpdate", {"domain": " API.Example.com "}))

    def test_non_ascii_paths_agree(self) -> None:
        """A path with a non-ASCII literal or its percent-escape is a path for the server and the schema."""
        for path in ("/café", "/%C3%A9/{id}"):
            body = {"name": "x", "path": path, "method": "GET"}
            self.assertEqual(endpoint_fields(body)["path"], path)
            self.assertTrue(schema_accepts("EndpointCreate", body), path)

    def test_dollar_ends_the_text(self) -> None:
        """A pattern's $ does not match before a final newline, as in ECMA-262 (Python's would)."""
        self.assertIsNone(ecma_regex("^[A-Z]+$").search("A\n"))
        self.assertIsNotNone(ecma_regex("^[A-Z$]+$").search("A$"))
        self.assertFalse(schema_accepts("EndpointCreate", {"name": "x", "path": "/x", "method": "GET\n"}))


# -- bodies from the published schema, and just outside it ------------------------------


def _strings(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """Strings of ``schema``: its patterns (every one of an ``allOf``), length and ``not``."""
    patterns = [schema["pattern"]] if "pattern" in schema else []
    patterns += [part["pattern"] for part in schema.get("allOf", ()) if "pattern" in part]
    refused = [part["not"]["pattern"] for part in [schema, *schema.get("allOf", ())] if "pattern" in part.get("not", {})]
    if patterns:
        base = st.from_regex(ecma_regex(patterns[0]))
    elif "enum" in schema:
        base = st.sampled_from(schema["enum"])
    else:
        base = st.text(max_size=min(schema.get("maxLength", 30), 30))
    return base.filter(
        lambda s: len(s) <= schema.get("maxLength", len(s))
        and len(s) >= schema.get("minLength", 0)
        and all(ecma_regex(p).search(s) for p in patterns[1:])
        and not any(ecma_regex(p).search(s) for p in refused)
    )


def values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the (published, ref-free) ``schema`` accepts, for the keywords the document uses."""
    if "const" in schema:
        return st.just(schema["const"])
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema and "type" not in schema:
            return st.one_of([values(part) for part in schema[combinator]])
    kind = schema.get("type")
    if isinstance(kind, list):
        one_type = [dict(schema, type=one) for one in kind if one != "null"]
        for part in one_type:
            if "enum" in part:
                part["enum"] = [v for v in part["enum"] if v is not None]
        return st.one_of([*map(values, one_type), st.none()])
    if schema.get("enum") and kind != "string":
        return st.sampled_from(schema["enum"])
    if kind == "string":
        return _strings(schema)
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        if "anyOf" in schema:  # the limits: 0, or a range
            return st.one_of([st.just(0), st.integers(schema["anyOf"][1]["minimum"], schema["anyOf"][1]["maximum"])])
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(low, schema.get("maximum"), exclude_min="exclusiveMinimum" in schema, allow_nan=False)
    if kind == "array":
        return st.lists(values(schema["items"]), min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object":
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        if not properties:  # a map
            keys = _strings(dict(schema.get("propertyNames", {}), type="string"))
            return st.dictionaries(keys, values(schema["additionalProperties"]), max_size=min(schema.get("maxProperties", 3), 3))
        writable = {k: v for k, v in properties.items() if {"type", "oneOf", "anyOf", "const"} & set(v)}
        bodies = st.fixed_dictionaries(
            {k: values(writable[k]) for k in required},
            optional={k: values(v) for k, v in writable.items() if k not in required},
        )
        if "if" in schema or "allOf" in schema or "anyOf" in schema:  # a rule across fields: keep the bodies that keep it
            return bodies.filter(lambda body: not list(SchemaValidator(schema).iter_errors(body)))
        return bodies
    raise AssertionError(f"no strategy for {schema}")


WRONG_TYPES = (None, True, 1.5, 7, "x", [], {})
EXAMPLES = 500
BODIES = [
    "EndpointCreate",
    "EndpointUpdate",
    "TestRequestInput",
    "RollbackInput",
    "importOpenapi",
    "ServiceCreate",
    "ServiceUpdate",
]
"""The request bodies the agreement tests feed to the server's checks."""
# A body that disagrees is reported as found: shrinking bodies this size through
# the filters above takes minutes.
NO_SHRINKING = (Phase.explicit, Phase.reuse, Phase.generate)


@st.composite
def just_outside(draw: st.DrawFn, name: str) -> tuple[str, dict[str, Any]]:
    """A body of ``name`` with one change that takes it outside the schema: (what was done, the body)."""
    schema = PUBLISHED[name]
    if "oneOf" in schema:  # a body per service type: one of them
        schema = draw(st.sampled_from(schema["oneOf"]))
    body = dict(draw(values(schema)))
    config = schema["properties"].get("config", {})
    if "properties" in config and draw(st.booleans()):  # a service's config: the change inside it
        body["config"] = dict(body.get("config", {}))
        return draw(_one_change(config, body["config"], "config."))
    return draw(_one_change(schema, body, ""))


@st.composite
def _one_change(draw: st.DrawFn, schema: dict[str, Any], body: dict[str, Any], prefix: str) -> tuple[str, Any]:
    """One change to ``body`` (of the object ``schema``, changed in place) that takes it outside."""
    properties = schema["properties"]
    typed = sorted(k for k, v in properties.items() if "type" in v)
    kinds = ["type", "unknown"]
    kinds += ["longer"] if any("maxLength" in properties[k] for k in typed) else []
    kinds += ["missing"] if schema.get("required") else []
    kinds += ["pattern"] if any("pattern" in properties[k] for k in typed) else []
    kind = draw(st.sampled_from(kinds))
    if kind == "longer":
        field = draw(st.sampled_from(sorted(k for k in typed if "maxLength" in properties[k])))
        body[field] = "a" * (properties[field]["maxLength"] + 1)
    elif kind == "type":
        field = draw(st.sampled_from(typed))
        body[field] = draw(st.sampled_from(WRONG_TYPES))
    elif kind == "unknown":
        field = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in properties))
        body[field] = draw(st.sampled_from(WRONG_TYPES))
    elif kind == "missing":
        field = draw(st.sampled_from(schema["required"]))
        body.pop(field, None)
    else:
        field = draw(st.sampled_from(sorted(k for k in typed if "pattern" in properties[k])))
        pattern = ecma_regex(properties[field]["pattern"])
        body[field] = draw(st.text(max_size=20).filter(lambda s: not pattern.search(s)))
    return f"{kind} {prefix}{field}", body


class _ServiceStore:
    """The part of a store a service create or update touches, answering at once."""

    def __init__(self, current: dict[str, Any]) -> None:
        self.current = current

    def get_service(self, service_id: str) -> Deferred[dict[str, Any]]:
        return succeed(self.current)

    def create_service(self, record: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return succeed(record)

    def update_service(self, service_id: str, fields: dict[str, Any], revision: int | None = None) -> Deferred[dict[str, Any]]:
        return succeed(dict(self.current, **fields))


class _Registry:
    """A registry that takes every connector."""

    def configure(self, service: dict[str, Any]) -> None:
        pass


def _stored_type(body: Any) -> str:
    """
    The type of the service a PUT body is for (a schema cannot know the stored
    one): its ``service_type``, else the type whose config schema takes its config.
    """
    if isinstance(body, dict) and body.get("service_type") in SERVICE_TYPES:
        return str(body["service_type"])
    config = body.get("config") if isinstance(body, dict) else None
    for service_type in SERVICE_TYPES:
        if not list(SchemaValidator(SERVICE_CONFIG_INPUT[service_type]).iter_errors(config)):
            return service_type
    return "sqlite"


_MINIMAL: dict[str, dict[str, Any]] = {
    "sqlite": {},
    "postgres": {"host": "db", "database": "d", "username": "u"},
    "redis": {"host": "db"},
    "storage": {},
}
"""A stored service's config of each type, before defaults."""


def service_body(name: str, body: Any) -> None:
    """Run ``body`` through the server's create (or update) of a service; raise its 400."""
    service_type = _stored_type(body)
    stored = {
        "id": "s1",
        "name": "stored",
        "service_type": service_type,
        "config": validate_config(service_type, _MINIMAL[service_type], name="stored"),
        "created_at": "t",
        "updated_at": "t",
    }
    manager = ServiceManager(_ServiceStore(stored), _Registry())
    done = manager.create(body) if name == "ServiceCreate" else manager.update("s1", body)
    failures: list[Failure] = []
    done.addErrback(failures.append)
    if failures:
        failures[0].raiseException()


class AgreementTests(unittest.SynchronousTestCase):
    """
    The server's checks and the published schema agree on each body: accepted
    by the server exactly when valid for the schema, but for ``PYTHON_ONLY``.
    """

    cases = {"inside": 0, "outside": 0, "disagreements": 0}

    def server_accepts(self, name: str, body: Any) -> bool:
        """Whether the server takes ``body`` as the body of ``name`` (a 400 is False)."""
        try:
            if name == "TestRequestInput":
                check_test_request(body)
            elif name == "RollbackInput":
                rollback_version(body)
            elif name == "importOpenapi":
                openapi_options(body)
            elif name in ("ServiceCreate", "ServiceUpdate"):
                service_body(name, body)
            else:
                current = None if name == "EndpointCreate" else endpoint_fields({"name": "x", "path": "/x", "method": "GET"})
                endpoint_fields(body, current)
        except BadRequest as e:
            # A policy part's own rules (its ``problems``: fields read together, a CIDR parsed).
            part_rule = str(e.extra.get("field", "")).startswith("policy.")
            if part_rule or any(words in e.message for words in PYTHON_ONLY):
                return schema_accepts(name, body)  # a rule the schema cannot say: not a disagreement
            return False
        return True

    def agree(self, name: str, body: Any, where: str) -> None:
        """Fail, naming the body, unless the server and the schema agree on it."""
        schema, server = schema_accepts(name, body), self.server_accepts(name, body)
        if schema != server:
            self.cases["disagreements"] += 1
        self.assertEqual(schema, server, f"{where}: schema {schema}, server {server}: {body!r}")

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), phases=NO_SHRINKING)
    @given(st.sampled_from(BODIES).flatmap(lambda n: st.tuples(st.just(n), values(PUBLISHED[n]))))
    def test_bodies_of_the_schema_are_accepted(self, case: tuple[str, Any]) -> None:
        """Every body generated from the published schema is accepted by the server."""
        name, body = case
        self.cases["inside"] += 1
        self.agree(name, body, "inside")
        self.assertTrue(schema_accepts(name, body), body)

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), phases=NO_SHRINKING)
    @given(st.sampled_from(BODIES).flatmap(lambda n: st.tuples(st.just(n), just_outside(n))))
    def test_bodies_just_outside_are_refused(self, case: tuple[str, tuple[str, Any]]) -> None:
        """A body one step outside the schema is refused by the server whenever the schema refuses it."""
        name, (change, body) = case
        self.cases["outside"] += 1
        self.agree(name, body, change)


class DocsTests(unittest.SynchronousTestCase):
    """The field tables of docs/api.md are what ``admin/schemadocs.py`` renders from the schema."""

    def test_tables_match_the_schema(self) -> None:
        """docs/api.md's and docs/policies.md's marked tables are current and all there (run tools/gen-api-docs when this fails)."""
        names: set[str] = set()
        for doc in ("api.md", "policies.md"):
            with open(os.path.join(ROOT, "docs", doc), encoding="utf-8") as f:
                document = f.read()
            names.update(re.findall(r"<!-- schema:([a-z-]+) -->", document))
            self.assertEqual(schemadocs.render(document), document, doc)
        self.assertEqual(names, set(schemadocs.TABLES))

    def test_a_changed_limit_shows_in_the_table(self) -> None:
        """A table row's type column carries the schema's limit, so a changed limit changes the document."""
        rendered = schemadocs.render_table("endpoint")
        self.assertIn(f"| `name` | string, 1–{MAX_NAME} characters | required |", rendered)
        self.assertIn(f"| `code` | string, at most {MAX_CODE:,} characters |", rendered)
        self.assertIn(f"| `description` | string, at most {MAX_DESCRIPTION:,} characters |", rendered)


class UILimitsTests(unittest.SynchronousTestCase):
    """The Admin UI's input limits are the schema's (``admin_ui/js/limits.js``, generated)."""

    def test_limits_file_is_current(self) -> None:
        """admin_ui/js/limits.js is what schemadocs renders (run tools/gen-api-docs when this fails)."""
        with open(os.path.join(ROOT, "admin_ui", "js", "limits.js"), encoding="utf-8") as f:
            self.assertEqual(f.read(), schemadocs.render_ui_limits())

    def test_no_limit_is_written_in_the_ui(self) -> None:
        """No page bounds an input with a number of its own: every maxlength reads LIMITS."""
        pages = os.path.join(ROOT, "admin_ui", "js")
        for directory, _, names in os.walk(pages):
            for name in names:
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    self.assertNotRegex(f.read(), r"maxlength:\s*\d", name)


class ServiceSchemaTests(unittest.SynchronousTestCase):
    """The services' config schema is built from ``services.config.FIELDS``, its one source."""

    def test_every_field_of_the_table_is_published(self) -> None:
        """Each type's config in the document has the table's fields, required ones, ranges and choices."""
        from edgegw_tx.services.config import FIELDS

        variants = {v["properties"]["service_type"]["const"]: v for v in PUBLISHED["ServiceCreate"]["oneOf"]}
        self.assertEqual(set(variants), set(FIELDS))
        for service_type, table in FIELDS.items():
            config = variants[service_type]["properties"]["config"]
            self.assertEqual(list(config["properties"]), list(table), service_type)
            self.assertEqual(
                config.get("required", []), [n for n, f in table.items() if f.required and not f.backend], service_type
            )
            # A storage backend's required field is required when that backend is chosen.
            for name, field in table.items():
                if field.required and field.backend:
                    rules = [r for r in config["allOf"] if r.get("if", {}).get("properties", {}).get("backend") == {"const": field.backend}]
                    self.assertEqual([name in r["then"]["required"] for r in rules], [True], name)
            for name, field in table.items():
                published = config["properties"][name]
                if field.kind == "integer":
                    self.assertEqual((published["minimum"], published["maximum"]), (field.low, field.high))
                if field.kind == "choice":
                    self.assertEqual([c for c in published["enum"] if c], list(field.choices))

    def test_a_field_added_to_the_table_is_published(self) -> None:
        """A field added to FIELDS shows in the schema with no other change (nothing is copied)."""
        from edgegw_tx.admin import schema
        from edgegw_tx.services import config

        table = dict(config.FIELDS["redis"], timeout=config.Field("integer", 5, 1, 60))
        self.patch(config, "FIELDS", dict(config.FIELDS, redis=table))
        published = schema.service_config("redis", output=False)["properties"]["timeout"]
        self.assertEqual((published["minimum"], published["maximum"]), (1, 60))
        self.assertIn("timeout", schema.service_config("redis", output=True)["required"])

    def test_non_ascii_path_segments_agree(self) -> None:
        """A segment of 100 two-byte characters (200 bytes) is a path for the server and the schema alike."""
        body = {"name": "files", "service_type": "storage", "config": {"path": "data/" + "é" * 100}}
        service_body("ServiceCreate", body)
        self.assertTrue(schema_accepts("ServiceCreate", body))

    def test_a_segment_over_its_bytes_is_refused_in_words(self) -> None:
        """A segment of 121 two-byte characters (242 bytes) is a 400 that says bytes, naming config.path."""
        body = {"name": "files", "service_type": "storage", "config": {"path": "é" * 121}}
        e = self.assertRaises(BadRequest, service_body, "ServiceCreate", body)
        self.assertEqual(e.extra["field"], "config.path")
        self.assertIn("longer than 240 bytes", e.message)

    def test_a_put_naming_its_type_holds_a_config_of_it(self) -> None:
        """The published PUT body refuses a config of another type than the service_type it names, as the server does."""
        body = {"service_type": "postgres", "config": {"host": "db"}}  # a redis config
        self.assertRaises(BadRequest, service_body, "ServiceUpdate", body)
        self.assertFalse(schema_accepts("ServiceUpdate", body))
        self.assertTrue(schema_accepts("ServiceUpdate", {"config": {"host": "db"}}))

    def test_the_docs_tables_are_the_tables(self) -> None:
        """docs/api.md's service config tables come from FIELDS: each field, its range and default."""
        from edgegw_tx.services.config import FIELDS, MAX_POOL_SIZE

        for service_type, table in FIELDS.items():
            rendered = schemadocs.render_table(f"service-{service_type}")
            self.assertEqual(re.findall(r"^\| `([a-z_]+)` \|", rendered, re.M), list(table), service_type)
        postgres = schemadocs.render_table("service-postgres")
        self.assertIn(f"| `pool_size` | int 1–{MAX_POOL_SIZE} or null | `10` |", postgres)
        self.assertIn("| `host` | string, at most 253 characters | required |", postgres)
        self.assertIn("| `path` | string, at most 1,024 characters or null | `<name>.sqlite3` |", schemadocs.render_table("service-sqlite"))

    def test_the_ui_form_is_the_table(self) -> None:
        """The Admin UI's service form reads each type's fields from limits.js (FIELDS), writing none itself."""
        from edgegw_tx.services.config import FIELDS

        form = schemadocs.ui_service_fields()
        self.assertEqual({t: [row[0] for row in rows] for t, rows in form.items()}, {t: list(f) for t, f in FIELDS.items()})
        self.assertIn(["pool_size", "int", 10, "1 to 100"], form["postgres"])
        with open(os.path.join(ROOT, "admin_ui", "js", "pages", "services.js"), encoding="utf-8") as f:
            page = f.read()
        self.assertNotRegex(page, r'\["(port|pool_size|ssl_mode|host)"')
        self.assertNotIn('"********"', page)

    def test_each_service_page_has_its_generated_table(self) -> None:
        """docs/services/<type>.md carries its type's config table, current (run tools/gen-api-docs when this fails)."""
        for service_type in SERVICE_TYPES:
            with open(os.path.join(ROOT, "docs", "services", f"{service_type}.md"), encoding="utf-8") as f:
                page = f.read()
            self.assertEqual(re.findall(r"<!-- schema:([a-z-]+) -->", page), [f"service-{service_type}"])
            self.assertEqual(schemadocs.render(page), page, service_type)
