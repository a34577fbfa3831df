"""
The ``auth`` part of a policy: only clients with a credential reach the
handler, and the handler learns who they are.

``type: api_key``: the key in a header (``X-API-Key`` unless ``header`` says
otherwise) must be one of an enabled consumer's (``consumers.py``).
``type: jwt``: a bearer token verified with joserfc (``jwt.py``).  A missing
or bad credential is answered 401 with ``WWW-Authenticate`` and a JSON body
naming the problem, never echoing the credential.

The identity a check verified reaches the handler as request header fields
the gateway sets (``CONSUMER_HEADER``, ``SUBJECT_HEADER``, ``CLAIMS_HEADER``).
A client could send them too, so the dispatcher calls ``strip_identity`` on
every request, with or without a policy: what the handler reads was set by
the gateway or is absent.  An API key is removed from the request once
verified (the handler needs the consumer's name, not its secret); a bearer
token is left (the handler may pass it on to a service it calls).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from edgegw_tx.policy import jwt
from edgegw_tx.policy.part import Early, PolicyContext, PolicyRequest, Problem, Verdict

__all__ = [
    "CLAIMS_HEADER",
    "CONSUMER_HEADER",
    "DEFAULT_API_KEY_HEADER",
    "DEFAULT_JWT_HEADER",
    "IDENTITY_HEADERS",
    "MAX_HEADER_NAME",
    "REALM",
    "SCHEMA",
    "SECRETS",
    "SUBJECT_HEADER",
    "ApiKeyCheck",
    "Consumers",
    "JwtCheck",
    "build",
    "problems",
    "strip_identity",
]

CONSUMER_HEADER = "x-edgegw-consumer"
"""The consumer's name (``api_key``), or the token's ``sub`` (``jwt``); rate limits by ``consumer`` read it."""
SUBJECT_HEADER = "x-edgegw-subject"
"""The verified token's ``sub`` claim (``jwt``)."""
CLAIMS_HEADER = "x-edgegw-claims"
"""The verified token's claims as a JSON object (``jwt``)."""
IDENTITY_HEADERS = (CONSUMER_HEADER, SUBJECT_HEADER, CLAIMS_HEADER)
"""Every header field only the gateway may set."""

TYPES = ("api_key", "jwt")
"""The kinds of credential."""
DEFAULT_API_KEY_HEADER = "X-API-Key"
"""Where an API key is looked for unless ``header`` says otherwise."""
DEFAULT_JWT_HEADER = "Authorization"
"""Where a token is looked for unless ``header`` says otherwise (as ``Bearer <token>``; elsewhere bare)."""
MAX_HEADER_NAME = 64
"""The longest ``header`` name."""
HEADER_NAME_PATTERN = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
"""A header field name (an HTTP token, RFC 9110 section 5.1)."""
REALM = "edgegw"
"""The realm of the ``Bearer`` challenge."""

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Who may call: an API key of an enabled consumer, or a signed JWT.",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {
            "type": "string",
            "enum": list(TYPES),
            "description": "api_key: a consumer's key in a header; jwt: a bearer token signed by a key given here.",
        },
        "header": {
            "type": "string",
            "pattern": HEADER_NAME_PATTERN,
            "maxLength": MAX_HEADER_NAME,
            "description": (
                f"The request header holding the credential: {DEFAULT_API_KEY_HEADER} (api_key) or"
                f" {DEFAULT_JWT_HEADER} as 'Bearer <token>' (jwt) unless given; any other header holds the bare token."
            ),
        },
        **jwt.PROPERTIES,
    },
}
"""The ``auth`` part's schema: the fields of both types, ``problems`` says which go with which."""
SECRETS = ("secret",)
"""Masked in every answer of the management API."""


def strip_identity(headers: dict[str, str]) -> None:
    """Remove the identity fields a client sent (``headers`` has lower-case names)."""
    if CONSUMER_HEADER in headers:
        del headers[CONSUMER_HEADER]
    if SUBJECT_HEADER in headers:
        del headers[SUBJECT_HEADER]
    if CLAIMS_HEADER in headers:
        del headers[CLAIMS_HEADER]


def problems(config: Mapping[str, Any]) -> list[Problem]:
    """What the schema cannot say: which fields go with the type, which key with which algorithm."""
    header = config.get("header")
    if isinstance(header, str) and header.lower() in IDENTITY_HEADERS:
        return [("header", f"'{header}' is set by the gateway itself: name another header")]
    if config["type"] == "api_key":
        return [(name, "is only for type 'jwt'") for name in jwt.PROPERTIES if name in config]
    return jwt.problems(config)


class Consumers(Protocol):
    """What an ``api_key`` check needs of the consumers (``consumers.ConsumerKeys``)."""

    def lookup(self, key: str) -> str | None:
        """The name of the enabled consumer ``key`` belongs to, or None."""


def _unauthorized(challenge: str, problem: str) -> Early:
    """A 401 with its challenge and a JSON body naming the problem."""
    body = json.dumps({"error": problem}).encode("utf-8")
    return 401, [("www-authenticate", challenge), ("content-type", "application/json")], body


class ApiKeyCheck:
    """A consumer's API key in a header; the consumer's name to the handler."""

    def __init__(self, header: str, consumers: Consumers) -> None:
        #: the header field name as configured (for the challenge and the messages)
        self.name = header
        #: the same in lower case, as the request frame's headers are
        self.header = header.lower()
        self.consumers = consumers
        self.challenge = f'ApiKey header="{header}"'

    def check(self, request: PolicyRequest, extra: list[tuple[str, str]]) -> Verdict:
        """Let a request with a known key go on, its consumer named and its key removed; a 401 otherwise."""
        key = request.headers.pop(self.header, None)
        if key is None or not key.strip():
            return _unauthorized(self.challenge, f"missing API key: send it in the {self.name} header")
        consumer = self.consumers.lookup(key.strip())
        if consumer is None:
            return _unauthorized(self.challenge, "the API key is not one of an enabled consumer")
        request.headers[CONSUMER_HEADER] = consumer
        return None


class JwtCheck:
    """A bearer token; its ``sub`` and claims to the handler."""

    def __init__(self, header: str, verifier: jwt.Verifier) -> None:
        self.name = header
        self.header = header.lower()
        #: whether the value is ``Bearer <token>`` (the Authorization field) or the bare token
        self.bearer = self.header == "authorization"
        self.verifier = verifier

    def refuse(self, problem: str) -> Early:
        """The 401 of RFC 6750: ``invalid_token`` and the problem in ``error_description`` too."""
        challenge = f'Bearer realm="{REALM}", error="invalid_token", error_description="{problem}"'
        return _unauthorized(challenge, problem)

    def check(self, request: PolicyRequest, extra: list[tuple[str, str]]) -> Verdict:
        """Let a request with a valid token go on, its identity set; a 401 otherwise."""
        value = request.headers.get(self.header)
        if value is None or not value.strip():
            # RFC 6750 section 3.1: no error code when the request had no credential.
            how = "'Bearer <token>'" if self.bearer else "the token"
            return _unauthorized(f'Bearer realm="{REALM}"', f"missing token: send {how} in the {self.name} header")
        token = value.strip()
        if self.bearer:
            scheme, _, token = token.partition(" ")
            if scheme.lower() != "bearer":
                return self.refuse(f"the {self.name} header must be 'Bearer <token>'")
        problem, verified = self.verifier.verify(token.strip())
        if verified is None:
            return self.refuse(problem)
        if verified.subject is not None:
            request.headers[SUBJECT_HEADER] = verified.subject
            request.headers[CONSUMER_HEADER] = verified.subject
        request.headers[CLAIMS_HEADER] = verified.claims
        return None


def build(config: Mapping[str, Any], context: PolicyContext) -> ApiKeyCheck | JwtCheck:
    """The check of a config that passed ``SCHEMA`` and ``problems``; keys are parsed here, once."""
    if config["type"] == "api_key":
        if context.consumers is None:
            raise ValueError("an api_key policy needs the consumers (PolicyContext.consumers)")
        return ApiKeyCheck(str(config.get("header", DEFAULT_API_KEY_HEADER)), context.consumers)
    return JwtCheck(str(config.get("header", DEFAULT_JWT_HEADER)), jwt.build(config, context.seconds))
