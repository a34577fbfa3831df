"""
A traffic policy as a whole: its parts, its schema on each level, inheritance,
masking, and the one check a route runs.

The parts are independent modules (``part.py`` says what each provides);
this module only composes them, so adding a part is an import and a line of ``PARTS``.

Inheritance is per part: the effective policy of a request takes each part
whole from the endpoint's policy, or where that part is null or left out from
its collection's, then its domain's.  Parts are never merged field by field
(an endpoint's ``cors`` with other origins does not keep the collection's
``max_age``): a part's fields are read together (``*`` origins and
credentials, an algorithm and its key), so a part is checked and replaced as
one.  ``traffic_split`` exists on endpoints only.

``compile`` runs once per route change; the check it returns runs the parts
in ``CHECK_ORDER`` and stops at the first early answer.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from twisted.internet.defer import Deferred

from edgegw_tx.policy import auth, cors, ipfilter, limits, ratelimit, split
from edgegw_tx.policy.part import Check, PolicyContext, PolicyRequest, Verdict
from edgegw_tx.services.config import MASK

__all__ = [
    "CHECK_ORDER",
    "ENDPOINT_ONLY",
    "LEVELS",
    "OWNED",
    "PARTS",
    "CompiledPolicy",
    "Effective",
    "PolicyError",
    "compile",
    "effective",
    "masked",
    "policy_schema",
    "unmask",
    "validate",
]

LEVELS = ("endpoint", "collection", "domain")
"""Where a policy is set, the nearest to a request first: the order inheritance looks."""

ENDPOINT_ONLY = ("traffic_split",)
"""Parts an endpoint's policy may have and a collection's or a domain's may not."""

PARTS: dict[str, ModuleType] = {
    "cors": cors,
    "ip": ipfilter,
    "auth": auth,
    "rate_limit": ratelimit,
    "limits": limits,
    "traffic_split": split,
}
"""Part name → its module (``SCHEMA``, ``problems``, ``SECRETS``, ``build``), in the order of the docs."""

CHECK_ORDER = ("cors", "ip", "auth", "rate_limit", "limits")
"""
The order a route's parts check a request.  ``cors`` first: it answers a
preflight before anything is charged for it, and its headers are in ``extra``
when a later part answers (a browser can read a 401 or a 429).  ``ip`` next,
the cheapest refusal; ``auth`` before ``rate_limit``, whose ``consumer`` key is
the identity ``auth`` found; ``limits`` last.
"""


class PolicyError(ValueError):
    """A policy refused: ``field`` is its full path (``policy.cors.allow_origins[0]``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# -- the schema and its checks -------------------------------------------------------


def _nullable(schema: dict[str, Any], parent: str | None) -> dict[str, Any]:
    """A part's schema that also takes null, which inherits the ``parent``'s part."""
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    inherit = f"null or left out: the {parent}'s" if parent else "null or left out: none"
    return {**schema, "type": [*types, "null"], "description": f"{schema.get('description', '')}; {inherit}"}


@functools.cache
def policy_schema(level: str) -> dict[str, Any]:
    """The JSON Schema of the ``policy`` object on a ``domain``, ``collection`` or ``endpoint``."""
    if level not in LEVELS:
        raise ValueError(f"no policy level {level!r}")
    parent = LEVELS[LEVELS.index(level) + 1] if level != LEVELS[-1] else None
    return {
        "type": "object",
        "additionalProperties": False,
        "description": f"traffic policy of the {level} (docs/policies.md); each part null or left out is "
        + (f"the {parent}'s" if parent else "not applied"),
        "properties": {
            name: _nullable(module.SCHEMA, parent)
            for name, module in PARTS.items()
            if level == "endpoint" or name not in ENDPOINT_ONLY
        },
    }


def _path(part: str, field: str) -> str:
    """The full path of a part's field: ``policy.cors`` + ``allow_origins[0]``."""
    if not field:
        return f"policy.{part}"
    return f"policy.{part}{field}" if field.startswith("[") else f"policy.{part}.{field}"


def validate(policy: Any, level: str) -> dict[str, Any]:
    """
    ``policy`` as stored: its parts that are set (null ones dropped); a
    ``PolicyError`` naming the first field the schema or a part refuses.
    None is the empty policy.
    """
    # The management API's validator, so a policy's 400s read as all others do;
    # imported here because edgegw_tx.admin composes this module's schema.
    from edgegw_tx.admin.errors import BadRequest as _BadRequest
    from edgegw_tx.admin.validation import check_schema as _check_schema

    if policy is None:
        return {}
    if not isinstance(policy, dict):
        raise PolicyError("policy", "field 'policy' must be an object or null")
    try:
        _check_schema(policy_schema(level), policy, prefix="policy")
    except _BadRequest as e:
        raise PolicyError(str(e.extra.get("field", "policy")), e.message) from None
    stored = {name: config for name, config in policy.items() if config is not None}
    for name, config in stored.items():
        for where, message in PARTS[name].problems(config):
            path = _path(name, where)
            raise PolicyError(path, f"field '{path}': {message}")
    return stored


# -- inheritance -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Effective:
    """The policy a request gets, and where each of its parts came from."""

    #: part name → its config, only the parts that are set
    parts: dict[str, Any] = field(default_factory=dict)
    #: part name → "endpoint", "collection" or "domain"
    sources: dict[str, str] = field(default_factory=dict)


def effective(
    endpoint_policy: Mapping[str, Any] | None,
    collection_policy: Mapping[str, Any] | None,
    domain_policy: Mapping[str, Any] | None,
) -> Effective:
    """Each part from the nearest level that sets it (module docstring: per part, never merged)."""
    levels = (endpoint_policy or {}, collection_policy or {}, domain_policy or {})
    parts: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in PARTS:
        for level, policy in zip(LEVELS, levels):
            if level != "endpoint" and name in ENDPOINT_ONLY:
                break
            config = policy.get(name)
            if config is not None:
                parts[name] = config
                sources[name] = level
                break
    return Effective(parts, sources)


# -- secrets ---------------------------------------------------------------------------


def masked(policy: Mapping[str, Any] | None, parts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """
    A copy of ``policy`` with every secret that is set replaced by the mask
    (``"********"``), as service passwords are.  ``parts`` replaces ``PARTS`` (tests).
    """
    modules = PARTS if parts is None else parts
    result: dict[str, Any] = {}
    for name, config in (policy or {}).items():
        secrets = getattr(modules.get(name), "SECRETS", ())
        if isinstance(config, dict) and any(config.get(secret) for secret in secrets):
            config = {key: MASK if key in secrets and value else value for key, value in config.items()}
        result[name] = config
    return result


def unmask(new: Any, old: Mapping[str, Any] | None, parts: Mapping[str, Any] | None = None) -> Any:
    """
    ``new`` (as a client sent it) where each secret sent back as the mask takes
    the stored value from ``old`` (or is dropped when there was none, so
    validation names it missing).  Any other value replaces the stored secret.
    Run before ``validate``; what is not a policy is returned as it is.
    ``parts`` replaces ``PARTS`` (tests).
    """
    if not isinstance(new, dict):
        return new
    modules = PARTS if parts is None else parts
    old = old if isinstance(old, Mapping) else {}
    result: dict[str, Any] = {}
    for name, config in new.items():
        secrets = getattr(modules.get(name), "SECRETS", ())
        if isinstance(config, dict) and any(config.get(secret) == MASK for secret in secrets):
            stored = old.get(name)
            stored = stored if isinstance(stored, Mapping) else {}
            config = dict(config)
            for secret in secrets:
                if config.get(secret) == MASK:
                    if stored.get(secret):
                        config[secret] = stored[secret]
                    else:
                        del config[secret]
        result[name] = config
    return result


# -- the data plane --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """
    A route's policy, compiled: ``check`` runs before the worker is involved.

    Whoever answers the request (an early answer or the worker) adds the
    header fields the checks appended to ``extra``; that is how CORS and
    ``RateLimit-*`` reach a 401 or a 429 too.
    """

    #: the parts' checks, in ``CHECK_ORDER``
    checks: tuple[Check, ...]
    #: seconds per request (``limits.timeout``), or None: the endpoint's ``settings.timeout``
    timeout: float | None = None
    #: the ``traffic_split`` part as configured, or None
    split: dict[str, Any] | None = None
    #: what it was compiled from, as data-plane processes are sent it (``placing.wire``), or None
    source: dict[str, Any] | None = None

    def check(self, request: PolicyRequest, extra: list[tuple[str, str]]) -> Verdict | Deferred[Verdict]:
        """The first early answer of the parts, or None: go on to the worker (a Deferred if a part waits)."""
        index = 0
        for part in self.checks:
            index += 1
            verdict = part.check(request, extra)
            if verdict is not None:
                if isinstance(verdict, Deferred):
                    return verdict.addCallback(self._resume, index, request, extra)
                return verdict
        return None

    def _run(self, start: int, request: PolicyRequest, extra: list[tuple[str, str]]) -> Verdict | Deferred[Verdict]:
        checks = self.checks
        for index in range(start, len(checks)):
            verdict = checks[index].check(request, extra)
            if verdict is None:
                continue
            if isinstance(verdict, Deferred):
                return verdict.addCallback(self._resume, index + 1, request, extra)
            return verdict
        return None

    def _resume(
        self, verdict: Verdict, start: int, request: PolicyRequest, extra: list[tuple[str, str]]
    ) -> Verdict | Deferred[Verdict]:
        """After a part that waited: its answer, or the parts after it."""
        if verdict is not None:
            return verdict
        return self._run(start, request, extra)


OWNED = ("rate_limit",)
"""Parts whose ``build`` takes ``identity``: the record the part belongs to (a cluster budget's name)."""


def compile(
    policy: Effective,
    context: PolicyContext,
    parts: Mapping[str, Any] | None = None,
    owners: Mapping[str, str] | None = None,
) -> CompiledPolicy | None:
    """
    ``policy`` compiled for a route (once per route change), or None when no
    part is set: a route without a policy pays nothing.  ``owners`` names the
    record of each level (``{"endpoint": "endpoint:7", "domain": ...}``); a
    part of ``OWNED`` is built with the name of the record it came from, so
    two records' cluster rate limits never share a budget.  ``parts``
    replaces ``PARTS`` (tests).
    """
    if not policy.parts:
        return None
    modules = PARTS if parts is None else parts
    checks = []
    for name in CHECK_ORDER:
        if name not in policy.parts:
            continue
        build = modules[name].build
        if name in OWNED and owners is not None:
            checks.append(build(policy.parts[name], context, identity=owners[policy.sources[name]]))
        else:
            checks.append(build(policy.parts[name], context))
    limits = policy.parts.get("limits") or {}
    timeout = limits.get("timeout")
    return CompiledPolicy(
        checks=tuple(checks),
        timeout=None if timeout is None else float(timeout),
        split=policy.parts.get("traffic_split"),
    )
