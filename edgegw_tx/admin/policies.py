"""
The ``policy`` field of domains, collections and endpoints as the management
API takes and shows it (docs/policies.md).

A body's ``policy`` is checked by ``edgegw_tx.policy.model`` (its schema is
part of the body's, its parts' own rules after), so every refusal is a 400
naming the field (``policy.cors.allow_origins[0]``).  Secrets are masked in
every answer, as service passwords are; a policy read, edited and PUT back
with its secrets still masked keeps the stored ones (``unmasked``).

A ``traffic_split`` names versions by digest or a unique prefix of one; they
must be versions of the endpoint (its compiles, ``IVersionStore``), and are
stored as full digests, so a later compile whose digest shares the prefix
cannot change which version a split serves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edgegw_tx.admin.errors import BadRequest
from edgegw_tx.policy import model
from edgegw_tx.store.interface import Record

__all__ = ["checked", "resolve_versions", "shown", "unmasked"]


def unmasked(payload: Any, current: Mapping[str, Any] | None) -> Any:
    """``payload`` with its ``policy``'s masked secrets taken from ``current``'s stored policy."""
    if not isinstance(payload, dict) or "policy" not in payload or current is None:
        return payload
    return dict(payload, policy=model.unmask(payload["policy"], current.get("policy")))


def checked(policy: Any, level: str) -> dict[str, Any]:
    """The policy to store (null parts dropped; None is ``{}``), or the 400 naming its field."""
    try:
        return model.validate(policy, level)
    except model.PolicyError as e:
        raise BadRequest(e.message, field=e.field) from None


def resolve_versions(policy: dict[str, Any], versions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """
    ``policy`` with each ``traffic_split`` version as the full digest of one
    of ``versions`` (the endpoint's, ``list_versions``) it names exactly or
    by a unique prefix; a 400 naming ``policy.traffic_split.versions[i].version`` otherwise.
    """
    split = policy.get("traffic_split")
    if not split:
        return policy
    digests = [str(v["digest"]) for v in versions]
    resolved = []
    for i, entry in enumerate(split["versions"]):
        given = str(entry["version"]).lower()
        field = f"policy.traffic_split.versions[{i}].version"
        matches = [d for d in digests if d == given] or [d for d in digests if d.startswith(given)]
        if not matches:
            raise BadRequest(
                f"field '{field}': '{entry['version']}' is no version of this endpoint (GET /api/endpoints/{{id}}/versions)",
                field=field,
            )
        if len(matches) > 1:
            raise BadRequest(
                f"field '{field}': '{entry['version']}' is the start of {len(matches)} versions' digests; give more of it",
                field=field,
            )
        resolved.append(dict(entry, version=matches[0]))
    return dict(policy, traffic_split=dict(split, versions=resolved))


def shown(record: Record) -> Record:
    """``record`` (a domain, collection or endpoint) as answered: its policy's secrets masked."""
    return dict(record, policy=model.masked(record.get("policy")))
