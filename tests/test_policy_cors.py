"""
The ``cors`` policy part (``edgegw_tx.policy.cors``): the schema's and
``problems``' 400s, origins in their normal form, preflights answered 204 or
403 by the gateway, and the fields added to other answers for an allowed
origin only.  No gateway: checks are called directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from edgegw_tx.admin import schemadocs
from edgegw_tx.admin.errors import BadRequest
from edgegw_tx.admin.validation import check_schema
from edgegw_tx.policy import cors
from edgegw_tx.policy.part import PolicyRequest

APP = "https://app.example.com"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "policies.md"


def _refused(config: dict[str, Any]) -> tuple[str, str]:
    """The (field, message) of the 400 ``config`` gets from the part's schema."""
    try:
        check_schema(cors.SCHEMA, config, prefix="policy.cors")
    except BadRequest as e:
        return str(e.extra["field"]), e.message
    raise AssertionError(f"{config!r} passed the schema")


def _request(method: str, **headers: str) -> PolicyRequest:
    """A request with ``headers`` (``access_control_request_method=`` for the dashed name)."""
    fields = {name.replace("_", "-"): value for name, value in headers.items()}
    return PolicyRequest(method=method, path="/items", headers=fields, client_ip="192.0.2.1")


def _preflight(config: dict[str, Any], origin: str = APP, method: str = "PUT", headers: str | None = None) -> Any:
    """What the part answers an OPTIONS preflight; nothing may be added to ``extra``."""
    fields = {"origin": origin, "access_control_request_method": method}
    if headers is not None:
        fields["access_control_request_headers"] = headers
    extra: list[tuple[str, str]] = []
    verdict = cors.build(config).check(_request("OPTIONS", **fields), extra)
    assert extra == [], extra
    return verdict


def _actual(config: dict[str, Any], method: str = "GET", **headers: str) -> list[tuple[str, str]]:
    """The fields the part adds to the answer of a request that goes on to the handler."""
    extra: list[tuple[str, str]] = []
    verdict = cors.build(config).check(_request(method, **headers), extra)
    assert verdict is None, verdict
    return extra


def _cors_fields(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {name: value for name, value in headers if name.startswith("access-control-")}


class SchemaTests(unittest.TestCase):
    """What the schema refuses, each with a 400 naming the field."""

    def test_full_config_passes(self) -> None:
        """Every field set to a sound value passes the schema and ``problems``."""
        config = {
            "allow_origins": [APP, "http://localhost:5173"],
            "allow_methods": ["GET", "PUT"],
            "allow_headers": ["Content-Type", "X-Request-Id"],
            "expose_headers": ["X-Total-Count"],
            "allow_credentials": True,
            "max_age": 600,
        }
        check_schema(cors.SCHEMA, config)
        self.assertEqual(cors.problems(config), [])

    def test_unknown_field_refused(self) -> None:
        """A field the part does not have is refused by name."""
        field, message = _refused({"allow_origins": [APP], "allow_origin": [APP]})
        self.assertEqual(field, "policy.cors.allow_origin")
        self.assertIn("unknown field", message)

    def test_origins_required(self) -> None:
        """allow_origins is required and may not be empty."""
        self.assertEqual(_refused({})[0], "policy.cors.allow_origins")
        self.assertIn("at least 1", _refused({"allow_origins": []})[1])

    def test_origin_with_path_refused(self) -> None:
        """An origin with a path (a URL, not an origin) is refused with an example of an origin."""
        field, message = _refused({"allow_origins": [APP + "/"]})
        self.assertEqual(field, "policy.cors.allow_origins[0]")
        self.assertIn("no path", message)

    def test_null_origin_refused(self) -> None:
        """The "null" origin (sandboxed pages, files: anyone can be it) cannot be allowed."""
        self.assertEqual(_refused({"allow_origins": ["null"]})[0], "policy.cors.allow_origins[0]")

    def test_method_must_be_token(self) -> None:
        """A method with a space is refused, saying what a method may hold."""
        field, message = _refused({"allow_origins": [APP], "allow_methods": ["GET PUT"]})
        self.assertEqual(field, "policy.cors.allow_methods[0]")
        self.assertIn("a method name", message)

    def test_header_must_be_token(self) -> None:
        """A header name with a colon is refused."""
        field, _ = _refused({"allow_origins": [APP], "expose_headers": ["X-A:"]})
        self.assertEqual(field, "policy.cors.expose_headers[0]")

    def test_max_age_bounded(self) -> None:
        """max_age above MAX_AGE or below 0 is refused, naming the range."""
        field, message = _refused({"allow_origins": [APP], "max_age": cors.MAX_AGE + 1})
        self.assertEqual(field, "policy.cors.max_age")
        self.assertIn(str(cors.MAX_AGE), message)
        self.assertEqual(_refused({"allow_origins": [APP], "max_age": -1})[0], "policy.cors.max_age")

    def test_too_many_origins(self) -> None:
        """More than MAX_ORIGINS origins is refused, naming the limit."""
        origins = [f"https://a{i}.example.com" for i in range(cors.MAX_ORIGINS + 1)]
        field, message = _refused({"allow_origins": origins})
        self.assertEqual(field, "policy.cors.allow_origins")
        self.assertIn(str(cors.MAX_ORIGINS), message)

    def test_every_field_described(self) -> None:
        """Every field has a description (they become the OpenAPI document and docs)."""
        for name, field in cors.SCHEMA["properties"].items():
            self.assertTrue(field.get("description"), name)


class ProblemsTests(unittest.TestCase):
    """What ``problems`` finds beyond the schema, and the origins' normal form."""

    def test_star_with_credentials(self) -> None:
        """["*"] with allow_credentials is refused at configuration, on allow_credentials."""
        found = cors.problems({"allow_origins": ["*"], "allow_credentials": True})
        self.assertEqual([field for field, _ in found], ["allow_credentials"])
        self.assertIn("list the origins", found[0][1])

    def test_star_among_others(self) -> None:
        """"*" must stand alone."""
        found = cors.problems({"allow_origins": [APP, "*"]})
        self.assertEqual(found, [("allow_origins", '"*" must be the only origin when it is given')])

    def test_bad_host_and_port(self) -> None:
        """A host that is no name, a port beyond 65535 and bracketed hosts that are no IPv6 address are named by index."""
        found = cors.problems(
            {"allow_origins": ["https://a..example.com", "https://a.example.com:70000", "http://[x]", "http://[::1"]}
        )
        self.assertEqual(
            [field for field, _ in found],
            ["allow_origins[0]", "allow_origins[1]", "allow_origins[2]", "allow_origins[3]"],
        )
        self.assertIn("IPv6", found[3][1])
        self.assertIn("port", found[1][1])

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.one_of(st.text(max_size=40), st.from_regex(r"\A[a-z]{1,5}://[\x21-\x7e]{1,30}\Z")))
    def test_any_text_a_problem_or_an_origin(self, text: str) -> None:
        """Whatever a client sends as an origin, ``problems`` answers with problems (a 400), never an exception."""
        found = cors.problems({"allow_origins": [text]})
        if not found:
            self.assertEqual(cors.normal_origin(cors.normal_origin(text)), cors.normal_origin(text))

    def test_normal_form(self) -> None:
        """Origins are lower-cased and lose their scheme's default port, as browsers write them."""
        cases = {
            "HTTPS://App.Example.COM": APP,
            "https://app.example.com:443": APP,
            "http://app.example.com:80": "http://app.example.com",
            "http://localhost:8080": "http://localhost:8080",
            "https://app.example.com:80": "https://app.example.com:80",
            "http://[0:0::1]:3000": "http://[::1]:3000",
            "*": "*",
        }
        for text, expected in cases.items():
            self.assertEqual(cors.normal_origin(text), expected, text)

    def test_written_origin_matches_browser_origin(self) -> None:
        """An origin configured with its default port and capitals matches what the browser sends."""
        extra = _actual({"allow_origins": ["HTTPS://APP.example.com:443"]}, origin=APP)
        self.assertEqual(_cors_fields(extra), {"access-control-allow-origin": APP})


class PreflightTests(unittest.TestCase):
    """OPTIONS with Origin and Access-Control-Request-Method: answered by the gateway."""

    config = {
        "allow_origins": [APP],
        "allow_methods": ["GET", "PUT"],
        "allow_headers": ["Content-Type", "X-Trace"],
        "allow_credentials": True,
        "max_age": 600,
    }

    def assertRefused(self, verdict: Any, words: str) -> None:
        """A 403 without any CORS field, whose JSON error holds ``words``."""
        status, headers, body = verdict
        self.assertEqual(status, 403)
        self.assertEqual(_cors_fields(headers), {})
        self.assertIn(("content-type", "application/json"), headers)
        self.assertIn(words, json.loads(body)["error"])

    def test_allowed(self) -> None:
        """An allowed origin, method and headers: 204, the origin echoed, every allow field, no body."""
        status, headers, body = _preflight(self.config, headers="content-type,x-trace")
        self.assertEqual((status, body), (204, b""))
        self.assertEqual(
            _cors_fields(headers),
            {
                "access-control-allow-origin": APP,
                "access-control-allow-methods": "GET, PUT",
                "access-control-allow-headers": "Content-Type, X-Trace",
                "access-control-max-age": "600",
                "access-control-allow-credentials": "true",
            },
        )
        self.assertIn(("vary", "origin"), headers)

    def test_origin_refused(self) -> None:
        """Another origin: 403 naming it, without the fields, so the browser blocks the call."""
        self.assertRefused(_preflight(self.config, origin="https://evil.example"), "'https://evil.example'")

    def test_method_refused(self) -> None:
        """A method not allowed: 403 naming it and the allowed ones."""
        self.assertRefused(_preflight(self.config, method="DELETE"), "'DELETE' is not allowed for cross-origin calls (allowed: GET, PUT)")

    def test_header_refused(self) -> None:
        """A header not allowed among allowed ones: 403 naming it."""
        self.assertRefused(_preflight(self.config, headers="content-type, x-secret"), "request header 'x-secret'")

    def test_headers_case_insensitive(self) -> None:
        """Requested header names match allow_headers whatever their case."""
        self.assertEqual(_preflight(self.config, headers="Content-Type,X-TRACE")[0], 204)

    def test_origin_case_insensitive(self) -> None:
        """The Origin field matches whatever its case; the allow field echoes it in lower case."""
        status, headers, _ = _preflight(self.config, origin="https://APP.example.com")
        self.assertEqual(status, 204)
        self.assertEqual(_cors_fields(headers)["access-control-allow-origin"], APP)

    def test_empty_allow_headers(self) -> None:
        """Without allow_headers a preflight asking for no header passes (no Allow-Headers field); any header is refused."""
        config = {"allow_origins": [APP]}
        status, headers, _ = _preflight(config, method="GET")
        self.assertEqual(status, 204)
        self.assertNotIn("access-control-allow-headers", _cors_fields(headers))
        self.assertRefused(_preflight(config, headers="content-type"), "none beyond the CORS-safelisted ones")

    def test_defaults(self) -> None:
        """Left out: DEFAULT_METHODS allowed, no Max-Age, no Allow-Credentials."""
        status, headers, _ = _preflight({"allow_origins": [APP]}, method="PATCH")
        self.assertEqual(status, 204)
        fields = _cors_fields(headers)
        self.assertEqual(fields["access-control-allow-methods"], ", ".join(cors.DEFAULT_METHODS))
        self.assertNotIn("access-control-max-age", fields)
        self.assertNotIn("access-control-allow-credentials", fields)

    def test_any_origin(self) -> None:
        """["*"]: any origin is answered "*", and the answer does not vary by origin."""
        status, headers, _ = _preflight({"allow_origins": ["*"]}, origin="https://anyone.example")
        self.assertEqual(status, 204)
        self.assertEqual(_cors_fields(headers)["access-control-allow-origin"], "*")
        self.assertNotIn(("vary", "origin"), headers)


class ActualRequestTests(unittest.TestCase):
    """Requests that go on to the handler: fields in ``extra`` for an allowed origin only."""

    config = {
        "allow_origins": [APP],
        "expose_headers": ["X-Total-Count", "ETag"],
        "allow_credentials": True,
    }

    def test_allowed_origin(self) -> None:
        """An allowed origin gets Allow-Origin (echoed), Expose-Headers, Allow-Credentials and Vary."""
        extra = _actual(self.config, origin=APP)
        self.assertEqual(
            _cors_fields(extra),
            {
                "access-control-allow-origin": APP,
                "access-control-expose-headers": "X-Total-Count, ETag",
                "access-control-allow-credentials": "true",
            },
        )
        self.assertIn(("vary", "origin"), extra)

    def test_other_origin(self) -> None:
        """Another origin gets no CORS field (the browser keeps the answer from the page), only Vary."""
        self.assertEqual(_actual(self.config, origin="https://evil.example"), [("vary", "origin")])

    def test_no_origin(self) -> None:
        """A same-origin or non-browser request gets only Vary: Origin, so caches keep answers apart."""
        self.assertEqual(_actual(self.config), [("vary", "origin")])

    def test_any_origin(self) -> None:
        """["*"]: "*" for every origin, no Vary, no Expose-Headers unless configured."""
        self.assertEqual(
            _actual({"allow_origins": ["*"]}, origin="https://x.example"),
            [("access-control-allow-origin", "*")],
        )
        self.assertEqual(_actual({"allow_origins": ["*"]}), [])

    def test_options_without_request_method_goes_on(self) -> None:
        """OPTIONS without Access-Control-Request-Method is no preflight: it goes on to the handler."""
        extra = _actual(self.config, method="OPTIONS", origin=APP)
        self.assertEqual(_cors_fields(extra)["access-control-allow-origin"], APP)
        self.assertEqual(_actual(self.config, method="OPTIONS"), [("vary", "origin")])

    def test_request_method_field_on_other_methods_ignored(self) -> None:
        """Access-Control-Request-Method on a GET does not make it a preflight."""
        extra = _actual(self.config, method="GET", origin=APP, access_control_request_method="PUT")
        self.assertEqual(_cors_fields(extra)["access-control-allow-origin"], APP)


class DocsTests(unittest.TestCase):
    """docs/policies.md says what cors.SCHEMA says."""

    def test_table_matches_schema(self) -> None:
        """The cors table has the fields, types and defaults of cors.SCHEMA (schemadocs renders it unchanged)."""
        document = DOCS.read_text(encoding="utf-8")
        self.patch(schemadocs, "TABLES", {**schemadocs.TABLES, "policy-cors": cors.SCHEMA})
        begin = document.index("<!-- schema:policy-cors -->\n")
        table = document[begin : document.index("<!-- /schema -->\n", begin) + len("<!-- /schema -->\n")]
        self.assertEqual(schemadocs.render(table), table)
