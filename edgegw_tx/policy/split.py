"""
The ``traffic_split`` part of an endpoint's policy: which versions serve it,
in what shares (a canary).

``{"versions": [{"version": "<digest or prefix>", "weight": 90}, ...],
"sticky": "header:<Name>" | "cookie:<name>"}``.  The versions are an object's
field rather than the part itself so that ``sticky`` has a place beside them.
This module is the configuration only (schema and rules); serving requests by
pools of several versions is the dispatcher's (docs/policies.md,
"traffic_split").  Whether each version exists is checked where the endpoint's
versions are known, not here.
"""

from __future__ import annotations

from typing import Any

from edgegw_tx.policy.part import Problem

__all__ = ["MAX_STICKY", "MAX_VERSIONS", "SCHEMA", "SECRETS", "TOTAL_WEIGHT", "problems"]

MAX_VERSIONS = 4
"""Most versions one endpoint is split over (each is a pool of workers)."""
TOTAL_WEIGHT = 100
"""What the weights add up to: each is a percentage."""
MAX_STICKY = 200
"""Longest ``sticky`` value, in characters."""

# A header field's or a cookie's name: an RFC 9110 token.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["versions"],
    "description": "endpoints only: the versions that serve the endpoint, each with its share of requests",
    "properties": {
        "versions": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_VERSIONS,
            "description": f"the versions and their weights (percentages adding up to {TOTAL_WEIGHT})",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["version", "weight"],
                "properties": {
                    "version": {
                        "type": "string",
                        "pattern": "^[0-9A-Fa-f]{7,64}$",
                        "description": "a version's digest, or its first 7 or more hex digits",
                        "x-error": "must be a version's digest (7 to 64 hex digits;"
                        " GET /api/endpoints/{id}/versions lists them)",
                    },
                    "weight": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": TOTAL_WEIGHT,
                        "description": "the percentage of requests this version serves",
                    },
                },
            },
        },
        "sticky": {
            "type": "string",
            "maxLength": MAX_STICKY,
            "pattern": f"^(header:{_TOKEN}|cookie:{_TOKEN})$",
            "description": "keeps one client on one version: the request header or cookie whose value"
            " picks the version; without it each request is drawn on its own",
            "x-error": "must be 'header:<Name>' or 'cookie:<name>'",
        },
    },
}

SECRETS: tuple[str, ...] = ()


def problems(config: dict[str, Any]) -> list[Problem]:
    """Weights that do not add up to 100; a version named twice (or by prefixes of one another)."""
    found: list[Problem] = []
    versions = config["versions"]
    seen: list[str] = []
    for index, entry in enumerate(versions):
        version = entry["version"].lower()
        for other in seen:
            if version.startswith(other) or other.startswith(version):
                found.append((f"versions[{index}].version", f"names the same version as an earlier entry ({other})"))
                break
        seen.append(version)
    total = sum(entry["weight"] for entry in versions)
    if total != TOTAL_WEIGHT:
        found.append(("versions", f"weights add up to {total}; they must add up to {TOTAL_WEIGHT}"))
    return found
