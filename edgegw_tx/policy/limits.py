"""
The ``limits`` part of a policy: a route's own request time and body size.

``{"timeout": seconds, "max_body": bytes}``, each optional.  ``timeout``
replaces the endpoint's ``settings.timeout`` (the dispatcher reads it from the
compiled policy; past it the answer is 504, as without a policy);
``max_body`` answers 413 to a larger body before the worker is involved.  The
HTTP layer's ``--max-body`` still applies first, so ``max_body`` can only
lower the gateway's cap (docs/policies.md, "limits").

The ranges are written here rather than read from ``edgegw_tx.admin.schema``:
that module composes the policy schema, so importing it would be a cycle.
``MAX_TIMEOUT`` is the same ceiling as the endpoint setting's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgegw_tx.policy.part import Early, PolicyContext, PolicyRequest, Problem, Verdict

__all__ = ["MAX_BODY", "MAX_TIMEOUT", "SCHEMA", "SECRETS", "LimitsCheck", "build", "problems"]

MAX_TIMEOUT = 3600.0
"""Longest ``timeout``, in seconds (the endpoint setting ``timeout`` has the same)."""
MAX_BODY = 1024 * 1024 * 1024
"""Largest ``max_body``, in bytes (1 GiB; the gateway's ``--max-body`` caps it first anyway)."""

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "this route's own request time and body size, replacing the gateway's",
    "properties": {
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_TIMEOUT,
            "description": "seconds a request may take, replacing the endpoint's settings.timeout; beyond: 504",
            "x-error": f"must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}",
        },
        "max_body": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_BODY,
            "description": "largest request body in bytes; beyond: 413 before the worker is involved"
            " (the gateway's --max-body applies first)",
        },
    },
}

SECRETS: tuple[str, ...] = ()
"""Nothing of this part is secret."""


def problems(config: dict[str, Any]) -> list[Problem]:
    """Nothing beyond the schema: any timeout and body size in range go together."""
    return []


@dataclass(slots=True, frozen=True)
class LimitsCheck:
    """The compiled part: a body-size check, and the timeout the dispatcher applies."""

    #: seconds per request, or None: the endpoint's ``settings.timeout``
    timeout: float | None
    #: largest body in bytes, or None: only the gateway's ``--max-body``
    max_body: int | None

    def check(self, request: PolicyRequest, extra: list[tuple[str, str]]) -> Verdict:
        """413 when the body is longer than ``max_body``."""
        if self.max_body is not None and request.body_length > self.max_body:
            return too_large(self.max_body)
        return None


def too_large(max_body: int) -> Early:
    """The 413 answer, naming the cap."""
    body = json.dumps({"error": f"the request body is larger than {max_body} bytes (this route's limit)"})
    return 413, [("content-type", "application/json")], body.encode()


def build(config: dict[str, Any], context: PolicyContext) -> LimitsCheck:
    """The ``limits`` part of a route: a ``LimitsCheck``."""
    timeout = config.get("timeout")
    max_body = config.get("max_body")
    return LimitsCheck(
        timeout=None if timeout is None else float(timeout),
        max_body=None if max_body is None else int(max_body),
    )
