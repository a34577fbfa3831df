"""
A route's policy as the deployments place it: compiled once per route change,
the same way in the control process and in every data-plane process.

The deployments (admin/deployments.py) compute an endpoint's effective policy
and call ``placed``; with ``--processes N`` the policy travels to each
data-plane process as ``wire`` (JSON, secrets included: an internal pipe)
and is compiled there by ``from_wire`` with that process's own
``PolicyContext`` (its clock, consumers, Redis services, metrics), so a
node-scope rate limit counts in the process that serves the request.

A policy that cannot be compiled where it is placed (an ``api_key`` policy
without consumers, a Redis service this process does not have) must not
let requests through unchecked: the route answers 503 naming the problem
(``Unavailable``) until the policy is placed again, and the problem is logged.
"""

from __future__ import annotations

import json
from dataclasses import replace
from collections.abc import Callable, Mapping
from typing import Any

from twisted.logger import Logger

from edgegw_tx.policy import model
from edgegw_tx.policy.consumers import ConsumerKeys
from edgegw_tx.policy.part import Early, PolicyContext, PolicyRequest

__all__ = ["Unavailable", "context_of", "from_wire", "identity", "owners_of", "placed", "wire"]

_log = Logger(namespace="edgegw.policy")


class Unavailable:
    """The check of a policy that could not be compiled: every request 503, naming why."""

    def __init__(self, problem: str) -> None:
        body = json.dumps({"error": f"this route's policy could not be applied: {problem}"}).encode()
        self.answer: Early = (503, [("content-type", "application/json"), ("retry-after", "5")], body)

    def check(self, request: PolicyRequest, extra: list[tuple[str, str]]) -> Early:
        """Refuse: a request must not pass a policy that is not in force."""
        return self.answer


def context_of(reactor: Any, registry: Any, count: Callable[[str, dict[str, str]], None] | None) -> PolicyContext:
    """
    One process's context: its clock, a ``ConsumerKeys`` of its own (loaded
    and reloaded by whoever wires the process), the Redis services of its
    ``registry`` by name, its metrics' ``count``.
    """
    return PolicyContext(
        seconds=reactor.seconds,
        reactor=reactor,
        consumers=ConsumerKeys(),
        redis=getattr(registry, "redis", None),
        count=count,
    )


def owners_of(record: Mapping[str, Any]) -> dict[str, str]:
    """The records an endpoint's policy parts can come from, by level (``model.compile``'s ``owners``)."""
    return {
        "endpoint": f"endpoint:{record['id']}",
        "collection": f"collection:{record.get('collection_id')}",
        "domain": f"domain:{record.get('domain')}",
    }


def wire(policy: model.Effective, owners: Mapping[str, str]) -> dict[str, Any]:
    """The JSON form sent to data-plane processes (and the route identity's source)."""
    return {"parts": policy.parts, "sources": policy.sources, "owners": dict(owners)}


def identity(policy: model.Effective, owners: Mapping[str, str]) -> str:
    """
    A text that changes whenever what a route enforces would: its parts and the
    records they came from (a cluster budget is named after its record).
    Empty for no policy, so a route without one is identified as before.
    """
    if not policy.parts:
        return ""
    used = {level: owners[level] for level in sorted(set(policy.sources.values())) if level in owners}
    return json.dumps({"parts": policy.parts, "owners": used}, sort_keys=True, separators=(",", ":"))


def placed(
    policy: model.Effective, context: PolicyContext, owners: Mapping[str, str], name: str = ""
) -> model.CompiledPolicy | None:
    """
    ``policy`` compiled for a route, None when it has no part; when a part
    cannot be built here, a policy refusing every request 503 (logged, naming
    ``name``, the endpoint).
    """
    source = wire(policy, owners)
    try:
        compiled = model.compile(policy, context, owners=owners)
    except (ValueError, KeyError, TypeError) as e:
        _log.error("The policy of {name} could not be applied: {e}; its routes answer 503", name=name, e=e)
        return model.CompiledPolicy(checks=(Unavailable(str(e)),), source=source)
    return None if compiled is None else replace(compiled, source=source)


def from_wire(sent: Mapping[str, Any] | None, context: PolicyContext, name: str = "") -> model.CompiledPolicy | None:
    """A policy as ``wire`` sent it (or None), compiled with this process's ``context``."""
    if not sent:
        return None
    effective = model.Effective(dict(sent.get("parts") or {}), dict(sent.get("sources") or {}))
    return placed(effective, context, dict(sent.get("owners") or {}), name)
