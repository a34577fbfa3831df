"""
The ``cors`` part: which other sites' pages may call a route from a browser.

A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
is answered by the gateway: 204 with the ``Access-Control-Allow-*`` fields
when the origin, the method and every requested header are allowed; else 403
without any of them (so the browser blocks the call) and a JSON body naming
what was refused (for the human reading it in the browser's network tab or
with curl).  Any other request goes on to the handler; when its ``Origin`` is
allowed, ``Access-Control-Allow-Origin`` (and ``-Credentials``,
``Access-Control-Expose-Headers``) are added to the answer, and when it is
not, none are.  Unless the origins are ``["*"]``, every answer carries
``Vary: Origin``, so a cache never hands one origin's answer to another.

Request headers: only those in ``allow_headers`` may be asked for; left out
or empty, none but the ones browsers send without asking (the CORS-safelisted
``Accept``, ``Accept-Language``, ``Content-Language`` and a form's
``Content-Type``).  A JSON body's ``Content-Type`` is not safelisted: list it.

``build`` normalises everything once (origins lower-cased, default ports
dropped, header names lower-cased into frozensets) and prepares the answer
fields, so ``check`` is a few dict and set lookups.
"""

from __future__ import annotations

import json
import re
from typing import Any
from ipaddress import IPv6Address
from urllib.parse import urlsplit

from edgegw_tx.policy.part import Early, PolicyContext, PolicyRequest, Problem

__all__ = [
    "DEFAULT_METHODS",
    "MAX_AGE",
    "MAX_NAMES",
    "MAX_NAME_LENGTH",
    "MAX_ORIGINS",
    "MAX_ORIGIN_LENGTH",
    "NAME",
    "SCHEMA",
    "SECRETS",
    "CORS",
    "build",
    "normal_origin",
    "problems",
]

NAME = "cors"
"""The part's name in a policy."""

MAX_ORIGINS = 100
"""Most entries of ``allow_origins``."""

MAX_ORIGIN_LENGTH = 300
"""Longest origin: a scheme, ``://``, a host name of up to 253 characters and a port."""

MAX_NAMES = 50
"""Most entries of ``allow_methods``, ``allow_headers`` and ``expose_headers`` each."""

MAX_NAME_LENGTH = 64
"""Longest method or header name."""

MAX_AGE = 86400
"""Longest ``max_age`` in seconds (a day: Firefox's cap; Chromium's is two hours)."""

DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
"""The methods a preflight may ask for when ``allow_methods`` is left out."""

_TOKEN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
# The origin's shape; normal_origin checks the host and port precisely.
_ORIGIN = r"^(\*|[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s]+)$"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def _names(
    description: str, what: str, default: list[str] | None = None, min_items: int = 0
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "array",
        "maxItems": MAX_NAMES,
        "description": description,
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_NAME_LENGTH,
            "pattern": _TOKEN,
            "x-error": f"must be {what} (letters, digits and !#$%&'*+.^_`|~-)",
        },
    }
    if default is not None:
        schema["default"] = default
    if min_items:
        schema["minItems"] = min_items
    return schema


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["allow_origins"],
    "description": "cross-origin calls from browsers: preflights answered by the gateway",
    "properties": {
        "allow_origins": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_ORIGINS,
            "description": 'origins whose pages may call (scheme://host[:port]), or ["*"] for any',
            "items": {
                "type": "string",
                "maxLength": MAX_ORIGIN_LENGTH,
                "pattern": _ORIGIN,
                "x-error": "must be an origin such as https://app.example.com (scheme://host[:port], no path), or *",
            },
        },
        "allow_methods": _names(
            "methods a preflight may ask for", "a method name", default=list(DEFAULT_METHODS), min_items=1
        ),
        "allow_headers": _names(
            "request header names a preflight may ask for; left out or empty, none beyond the CORS-safelisted ones",
            "a header name",
        ),
        "expose_headers": _names("answer header names the calling page may read", "a header name"),
        "allow_credentials": {
            "type": "boolean",
            "default": False,
            "description": 'let the page send cookies and read the answer (not with ["*"] origins)',
        },
        "max_age": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_AGE,
            "description": "seconds a browser may keep a preflight's answer (left out: no Access-Control-Max-Age)",
        },
    },
}
"""The part's JSON Schema: a closed object; every limit a constant of this module."""

SECRETS: tuple[str, ...] = ()
"""Nothing of this part is secret."""


def normal_origin(text: str) -> str:
    """
    ``text`` as browsers write an origin: scheme and host lower-cased, the
    scheme's default port left out; ValueError saying why when it is none.
    """
    if text == "*":
        return text
    if not re.fullmatch(_ORIGIN, text):
        raise ValueError("is not an origin such as https://app.example.com (scheme://host[:port], no path)")
    try:
        parts = urlsplit(text.lower())
    except ValueError:  # an unclosed "[" or a "]" astray
        raise ValueError("has a host in brackets that is not an IPv6 address") from None
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    host = parts.hostname or ""
    if ":" in host:
        try:
            bracketed = f"[{IPv6Address(host)}]"
        except ValueError:
            raise ValueError("has a host in brackets that is not an IPv6 address") from None
    else:
        if not _HOST_NAME.match(host):
            raise ValueError("has a host that is not a host name or address (write a name in its ASCII form)")
        bracketed = host
    if port is None or port == _DEFAULT_PORTS.get(parts.scheme):
        return f"{parts.scheme}://{bracketed}"
    return f"{parts.scheme}://{bracketed}:{port}"


def problems(config: dict[str, Any]) -> list[Problem]:
    """Origins that are none, ``*`` among others, ``*`` with credentials."""
    found: list[Problem] = []
    origins = config["allow_origins"]
    for i, text in enumerate(origins):
        try:
            normal_origin(text)
        except ValueError as e:
            found.append((f"allow_origins[{i}]", f"{text!r} {e}"))
    if "*" in origins and len(origins) > 1:
        found.append(("allow_origins", '"*" must be the only origin when it is given'))
    if "*" in origins and config.get("allow_credentials"):
        found.append(
            (
                "allow_credentials",
                'cannot be true with allow_origins ["*"]: browsers refuse credentials for any origin; list the origins',
            )
        )
    return found


def _refusal(message: str, vary: list[tuple[str, str]]) -> Early:
    body = json.dumps({"error": message}).encode()
    return 403, [("content-type", "application/json"), *vary], body


class CORS:
    """The ``cors`` part of one route, its answers prepared."""

    __slots__ = (
        "_any",
        "_origins",
        "_methods",
        "_method_list",
        "_headers",
        "_header_list",
        "_vary",
        "_preflight",
        "_actual",
    )

    def __init__(
        self,
        origins: frozenset[str] | None,
        methods: tuple[str, ...],
        headers: tuple[str, ...],
        expose: tuple[str, ...],
        credentials: bool,
        max_age: int | None,
    ) -> None:
        #: every origin allowed (["*"]): answers say "*" and do not vary by origin
        self._any = origins is None
        self._origins = origins or frozenset()
        self._methods = frozenset(methods)
        self._method_list = ", ".join(methods)
        self._headers = frozenset(name.lower() for name in headers)
        self._header_list = ", ".join(headers)
        self._vary: list[tuple[str, str]] = [] if self._any else [("vary", "origin")]
        # The fields after Access-Control-Allow-Origin, for a preflight and for any other answer.
        preflight = [("access-control-allow-methods", self._method_list)]
        if headers:
            preflight.append(("access-control-allow-headers", self._header_list))
        if max_age is not None:
            preflight.append(("access-control-max-age", str(max_age)))
        actual: list[tuple[str, str]] = []
        if expose:
            actual.append(("access-control-expose-headers", ", ".join(expose)))
        if credentials:
            preflight.append(("access-control-allow-credentials", "true"))
            actual.append(("access-control-allow-credentials", "true"))
        self._preflight = preflight
        self._actual = actual

    def _allow_origin(self, origin: str) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None when it is not allowed."""
        if self._any:
            return "*"
        origin = origin.lower()
        return origin if origin in self._origins else None

    def check(self, request: PolicyRequest, extra: list[tuple[str, str]]) -> Early | None:
        """A preflight's answer, or None with the CORS fields of an allowed origin added to ``extra``."""
        headers = request.headers
        origin = headers.get("origin")
        if origin is None:
            extra.extend(self._vary)
            return None
        asked = headers.get("access-control-request-method")
        if asked is None or request.method != "OPTIONS":
            allowed = self._allow_origin(origin)
            extra.extend(self._vary)
            if allowed is not None:
                extra.append(("access-control-allow-origin", allowed))
                extra.extend(self._actual)
            return None
        return self._preflight_answer(origin, asked, headers.get("access-control-request-headers"))

    def _preflight_answer(self, origin: str, method: str, asked_headers: str | None) -> Early:
        """204 with the allow fields, or 403 naming the origin, method or header refused."""
        allowed = self._allow_origin(origin)
        if allowed is None:
            return _refusal(f"origin {origin!r} is not allowed to call this route", self._vary)
        if method not in self._methods:
            return _refusal(
                f"method {method!r} is not allowed for cross-origin calls (allowed: {self._method_list})",
                self._vary,
            )
        for name in (asked_headers or "").split(","):
            name = name.strip().lower()
            if name and name not in self._headers:
                allowed_names = self._header_list or "none beyond the CORS-safelisted ones"
                return _refusal(
                    f"request header {name!r} is not allowed for cross-origin calls (allowed: {allowed_names})",
                    self._vary,
                )
        return 204, [*self._vary, ("access-control-allow-origin", allowed), *self._preflight], b""


def build(config: dict[str, Any], context: PolicyContext | None = None) -> CORS:
    """The part compiled for a route (``config`` passed ``SCHEMA`` and ``problems``)."""
    origins = config["allow_origins"]
    return CORS(
        None if origins == ["*"] else frozenset(normal_origin(o) for o in origins),
        tuple(config.get("allow_methods", DEFAULT_METHODS)),
        tuple(config.get("allow_headers") or ()),
        tuple(config.get("expose_headers") or ()),
        bool(config.get("allow_credentials", False)),
        config.get("max_age"),
    )
