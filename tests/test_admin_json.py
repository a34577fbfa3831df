"""
JSON request bodies of the management API (edgegw_tx/admin/jsonbody.py):
hostile nesting, lone surrogates and non-numbers are 400s naming the problem,
never 500s, on every route that reads a body.
"""

import json

from twisted.trial import unittest

from edgegw_tx.admin.errors import BadRequest
from edgegw_tx.admin.jsonbody import parse_json_body
from edgegw_tx.admin.limits import MAX_JSON_DEPTH
from tests.support.admin import AdminAPITestCase


def nested(depth: int) -> bytes:
    """A body of ``depth`` arrays inside each other, in an object field."""
    return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"


class ParseTests(unittest.TestCase):
    """parse_json_body on its own."""

    def refused(self, data: bytes) -> str:
        return self.assertRaises(BadRequest, parse_json_body, data).message

    def test_plain_documents_pass(self) -> None:
        """Ordinary JSON, surrogate pairs (an emoji) and nesting up to the limit are returned as parsed."""
        self.assertEqual(parse_json_body(b'{"a": [1, {"b": "x"}]}'), {"a": [1, {"b": "x"}]})
        self.assertEqual(parse_json_body(b'{"n": "\\ud83d\\ude00"}'), {"n": "\U0001f600"})
        self.assertEqual(parse_json_body(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH), json.loads(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH))

    def test_too_deep_is_refused(self) -> None:
        """One level over MAX_JSON_DEPTH, 1,000 levels and 100,000 levels all give the same 400."""
        expected = f"the request body is nested too deeply: at most {MAX_JSON_DEPTH} arrays and objects inside each other"
        for depth in (MAX_JSON_DEPTH + 1, 1000, 100_000):
            self.assertEqual(self.refused(b"[" * depth + b"]" * depth), expected)
        self.assertEqual(self.refused(b'{"a":' * 1000 + b"1" + b"}" * 1000), expected)

    def test_lone_surrogate_is_refused_naming_where(self) -> None:
        """A lone surrogate in a value or a key is a 400 naming the field (or the key's object)."""
        self.assertEqual(
            self.refused(b'{"name": "\\ud800"}'),
            "the request body holds a lone surrogate (\\ud800) in field 'name': JSON strings must be Unicode text",
        )
        self.assertIn("in field 'settings.env.X[1]'", self.refused(b'{"settings": {"env": {"X": ["a", "b\\udfff"]}}}'))
        self.assertIn("in a key of field 'settings.env'", self.refused(b'{"settings": {"env": {"\\udc00": "v"}}}'))
        self.assertIn("in the body", self.refused(b'"\\ud800"'))

    def test_not_numbers_are_refused(self) -> None:
        """NaN and Infinity, which Python's json accepts, are not JSON: 400."""
        for text in (b'{"timeout": NaN}', b'{"timeout": Infinity}', b'{"timeout": -Infinity}'):
            self.assertIn("is not a JSON number", self.refused(text))

    def test_empty_and_broken_bodies(self) -> None:
        """An empty body and broken JSON keep their messages."""
        self.assertEqual(self.refused(b"  \n"), "the request body is empty; send a JSON object")
        self.assertIn("the request body is not valid JSON", self.refused(b'{"a": '))
        self.assertIn("the request body is not valid JSON", self.refused(b'{"a": "\xff"}'))


class ThroughTheAPITests(AdminAPITestCase):
    """The same bodies through the Klein app on a real store: 400, never 500."""

    def test_deep_bodies_are_400_on_every_route_that_reads_one(self) -> None:
        """1,000-deep JSON to endpoints, keys, services, domains, collections, test requests and imports is a 400."""
        for path in ("/api/endpoints", "/api/keys", "/api/services", "/api/domains", "/api/collections",
                     "/api/test-request", "/api/import/openapi"):
            code, document = self.call("POST", path, raw=nested(1000))
            if code == 404:
                continue  # this gateway has no such manager: the route answers 404 before reading
            self.assertEqual(code, 400, (path, document))
            self.assertIn("nested too deeply", document["error"])

    def test_lone_surrogate_in_a_name_is_400(self) -> None:
        """An endpoint or key named "\\ud800" is a 400 naming the field, and nothing is stored."""
        body = b'{"name": "\\ud800", "path": "/x", "method": "GET"}'
        code, document = self.call("POST", "/api/endpoints", raw=body)
        self.assertEqual(code, 400, document)
        self.assertIn("lone surrogate (\\ud800) in field 'name'", document["error"])
        code, document = self.call("POST", "/api/keys", raw=b'{"name": "\\ud800", "scope": "read"}')
        self.assertEqual(code, 400, document)
        self.assertEqual(self.call("GET", "/api/endpoints")[1]["data"]["total"], 0)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_surrogate_in_an_update_is_400(self) -> None:
        """PUT with a surrogate in settings.env is refused like a POST."""
        code, document = self.call("POST", "/api/endpoints", {"name": "a", "path": "/a", "method": "GET"})
        self.assertEqual(code, 201, document)
        code, document = self.call(
            "PUT", "/api/endpoints/" + document["data"]["id"], raw=b'{"settings": {"env": {"K": "\\ud800"}}}'
        )
        self.assertEqual(code, 400, document)
        self.assertIn("field 'settings.env.K'", document["error"])
