"""
What every part of a traffic policy provides, so the parts stay independent.

A policy (docs/policies.md) has parts: ``cors``, ``ip``, ``auth``,
``rate_limit``, ``limits`` and ``traffic_split``.  Each part is a module of
this package with:

* ``SCHEMA``: the part's JSON Schema (a closed object, plain dicts so a part
  imports nothing of ``edgegw_tx.admin``, which builds on them);
  ``model.policy_schema`` composes the parts into the ``policy`` object of
  each level, and validation, the OpenAPI document and the docs tables
  derive from it.
* ``problems(config) -> list[Problem]``: what the schema cannot say (a CIDR
  that does not parse, ``*`` origins with credentials, a JWK that is no key),
  each a ``(field, message)`` with ``field`` relative to the part
  (``"allow_origins[0]"``); empty when the part is sound.  Called only with a
  config that passed ``SCHEMA``.
* ``SECRETS``: the part's field names whose values are masked in every answer
  of the management API.
* ``build(config, context) -> Check``: the part compiled for the data plane,
  once per route change, never per request.  ``traffic_split`` (``split.py``) has
  none: the dispatcher serves it by choosing a pool, not by a check.

A ``Check`` runs before the worker is involved.  ``check`` either answers the
request itself (an ``Early`` answer: a preflight's 204, a 401, 403, 413 or
429) or lets it go on (``None``); a check that needs a network round trip
(the cluster-scope rate limit) returns a Deferred firing with one of those.
Either way it may append header fields to ``extra``: they are added to the
answer the client gets, whoever gives it (CORS, ``RateLimit-*``).  A check
may change ``request.headers`` (the request frame's headers): ``auth`` sets
the identity fields the handler reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred

__all__ = ["Check", "Early", "PolicyContext", "PolicyRequest", "Problem", "Verdict"]

Problem = tuple[str, str]
"""``(field relative to the part, message)``: one reason a config is refused (400)."""

Early = tuple[int, list[tuple[str, str]], bytes]
"""An answer given by the gateway itself: status, lower-case header fields, body."""

Verdict = Early | None
"""What a check decides: answer now (``Early``), or go on to the worker (``None``)."""


@dataclass(slots=True)
class PolicyRequest:
    """The request as checks see it."""

    method: str
    #: the path in its normal form (what routing matched)
    path: str
    #: the request frame's headers: lower-case names, joined values; checks may change them
    headers: dict[str, str]
    #: the TCP peer's address (``ip`` and ``rate_limit`` read ``X-Forwarded-For`` only from trusted proxies)
    client_ip: str | None
    #: the length of the request body in bytes
    body_length: int = 0


class Check(Protocol):
    """One policy part, compiled for a route."""

    def check(
        self, request: PolicyRequest, extra: list[tuple[str, str]]
    ) -> Verdict | Deferred[Verdict]:
        """Decide on ``request``; append header fields for the answer to ``extra``."""


@dataclass(slots=True)
class PolicyContext:
    """What ``build`` may need from the running gateway (tests pass fakes)."""

    #: the clock: seconds since the epoch (``reactor.seconds``; a ``Clock`` in tests)
    seconds: Callable[[], float]
    #: the reactor (for ``callLater`` and Deferred timeouts)
    reactor: Any = None
    #: consumer API keys: key → consumer name, or None (``auth`` ``api_key``); see auth.py
    consumers: Any = None
    #: a Redis service by name → something with ``command(args) -> Deferred`` (cluster-scope rate limits), or None
    redis: Callable[[str], Any] | None = None
    #: counts an event for the metrics: ``count(metric_name, labels)``
    count: Callable[[str, dict[str, str]], None] | None = None
