"""
The ``ip`` part: which client addresses may reach a route.

``deny`` wins over ``allow``; with ``allow`` given, an address outside it is
refused too.  Refused requests get 403 with a JSON body naming the address,
before any worker is involved.  The client address is the TCP peer's, or,
when the peer is one of ``trusted_proxies``, what ``X-Forwarded-For`` says
(``forwarded.py``); ``X-Forwarded-For`` is never read otherwise.  The
address so resolved replaces ``request.client_ip`` for the parts checked
after this one (``rate_limit`` with ``key: ip`` counts the real client).  A client
whose address cannot be told (a trusted proxy sent an entry that is no
address) is refused: the rules cannot be applied to it.

``build`` parses every CIDR once into ``Networks`` (sorted ranges, one binary
search per list), so a check costs the same for one CIDR or ``MAX_CIDRS``.
"""

from __future__ import annotations

from typing import Any

from edgegw_tx.policy.forwarded import client_ip
from edgegw_tx.policy.networks import Networks, address_text, network_problem, read_address
from edgegw_tx.policy.part import Early, PolicyContext, PolicyRequest, Problem

__all__ = ["MAX_CIDRS", "MAX_CIDR_LENGTH", "NAME", "SCHEMA", "SECRETS", "IPFilter", "build", "problems"]

NAME = "ip"
"""The part's name in a policy."""

MAX_CIDRS = 1000
"""Most CIDRs in one of ``allow``, ``deny``, ``trusted_proxies``."""

MAX_CIDR_LENGTH = 64
"""Longest CIDR text (an IPv6 network with an embedded IPv4 address fits in 49)."""

_CIDR = {
    "type": "string",
    "maxLength": MAX_CIDR_LENGTH,
    "pattern": r"^\s*[0-9A-Fa-f:.]+(/[0-9]{1,3})?\s*$",
    "x-error": "must be an IPv4 or IPv6 address or network in CIDR notation, such as 192.0.2.0/24 or 2001:db8::/32",
    "description": "an IPv4 or IPv6 network in CIDR notation (192.0.2.0/24, 2001:db8::/32), or one address",
}


def _cidrs(description: str, min_items: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "array",
        "items": _CIDR,
        "maxItems": MAX_CIDRS,
        "description": description,
    }
    if min_items:
        schema["minItems"] = min_items
    return schema


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "which client addresses may call: 403 for the others",
    "properties": {
        "allow": _cidrs(
            "only clients in these networks may call (left out: every client not denied)", min_items=1
        ),
        "deny": _cidrs("clients in these networks are refused, even when allow holds them too"),
        "trusted_proxies": _cidrs(
            "proxies whose X-Forwarded-For names the client; left out or empty, the header is never read"
        ),
    },
}
"""The part's JSON Schema: a closed object, the CIDR lists bounded by ``MAX_CIDRS``."""

SECRETS: tuple[str, ...] = ()
"""Nothing of this part is secret."""

_FIELDS = ("allow", "deny", "trusted_proxies")


def problems(config: dict[str, Any]) -> list[Problem]:
    """Each CIDR that is no network (or has host bits set), named by its field and index."""
    found: list[Problem] = []
    for field in _FIELDS:
        for i, text in enumerate(config.get(field) or ()):
            problem = network_problem(text)
            if problem is not None:
                found.append((f"{field}[{i}]", problem))
    return found


def _refusal(message: str) -> Early:
    """A 403 whose body says ``message`` (no JSON escape needed: an address's text has no quote nor backslash)."""
    return 403, [("content-type", "application/json")], b'{"error": "' + message.encode() + b'"}'


class IPFilter:
    """The ``ip`` part of one route, its networks parsed."""

    __slots__ = ("_allow", "_deny", "_trusted")

    def __init__(self, allow: Networks | None, deny: Networks, trusted: Networks) -> None:
        self._allow = allow
        self._deny = deny
        self._trusted = trusted

    def check(self, request: PolicyRequest, extra: list[tuple[str, str]]) -> Early | None:
        """None for an address the rules let through; a 403 naming it otherwise."""
        if len(self._trusted):
            address = client_ip(request.client_ip, request.headers, self._trusted)
            if address is not None:
                # The real client from here on: a rate limit's ``ip`` key counts it, not the proxy.
                request.client_ip = address_text(address)
        else:
            address = read_address(request.client_ip)
        if address is None:
            return _refusal("the client's address could not be determined")
        if address in self._deny:
            return _refusal(f"client address {address_text(address)} is denied")
        if self._allow is not None and address not in self._allow:
            return _refusal(f"client address {address_text(address)} is not allowed")
        return None


def build(config: dict[str, Any], context: PolicyContext | None = None) -> IPFilter:
    """The part compiled for a route (``config`` passed ``SCHEMA`` and ``problems``)."""
    allow = config.get("allow")
    return IPFilter(
        None if allow is None else Networks.parse(allow),
        Networks.parse(config.get("deny") or ()),
        Networks.parse(config.get("trusted_proxies") or ()),
    )
