"""
What the management API shows of an endpoint: its stored record joined with
what runs now.

Pure functions: the record comes from the store, the running state (``Live``)
from the deployments (admin/deployments.py), the served path from the
collections. Keeping them here lets the API's shapes be tested without pools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from edgegw_tx.admin import validation
from edgegw_tx.policy.model import masked
from edgegw_tx.store.interface import Record

# The settings with their defaults filled in, typed here while validation.py is not.
effective_settings: Callable[[dict[str, Any]], dict[str, Any]] = validation.effective_settings
routes_of: Callable[[Record], list[Record]] = validation.routes_of

# Record columns that are the store's business, never shown.
_HIDDEN = ("path_shape",)
SHORT_DIGEST = 12


def short(digest: Optional[str]) -> Optional[str]:
    """The first hex digits of a digest, enough to tell versions apart (None stays None)."""
    return digest[:SHORT_DIGEST] if digest else None


@dataclass(frozen=True)
class Live:
    """What runs for one endpoint now: its pool's processes and the version it serves."""

    pids: list[int] = field(default_factory=list)
    # the workers of the serving pool, then of pools being drained
    workers: list[dict[str, Any]] = field(default_factory=list)
    queue: int = 0
    # the digest the running pool serves; None when nothing runs
    digest: Optional[str] = None
    # a traffic split's versions: [{version, weight, served}]; empty when not split
    traffic: list[dict[str, Any]] = field(default_factory=list)


def endpoint_view(record: Record, live: Live, full_path: str) -> Record:
    """The public shape of an endpoint record; ``full_path`` is its path with its collection's base path."""
    public = {k: v for k, v in record.items() if k not in _HIDDEN}
    public["settings"] = effective_settings(record["settings"])
    public["pids"] = list(live.pids)
    public["route"] = "{} {}{}".format(record["method"], record["domain"], full_path)
    # Every route as written (the first is ``method`` and ``path``); shapes are the store's.
    public["routes"] = [{"method": r["method"], "path": r["path"]} for r in routes_of(record)]
    # The live version: what the running pool serves (else what last ran).
    public["version"] = short(live.digest or record["deployed"])
    public["workers"] = list(live.workers)
    public["queue"] = live.queue
    public["traffic"] = list(live.traffic)
    # Its own policy, secrets masked (admin/policies.py).
    public["policy"] = masked(record.get("policy"))
    return public


def node_workers(endpoint_id: str, nodes: Sequence[Record], own: Optional[str], own_count: int) -> dict[str, int]:
    """
    ``{node name: workers}`` of one endpoint across the cluster, for its view:
    every node that is up, from its last heartbeat (``nodes`` as
    ``NodeDirectory.list()`` answers them; a node that is down runs nothing
    anyone can reach), and this node, ``own``, from ``own_count``, its live
    count, which is newer than any heartbeat.
    """
    counts = {
        node["name"]: int((node.get("endpoints") or {}).get(endpoint_id, 0))
        for node in nodes
        if node.get("state") == "up"
    }
    if own is not None:
        counts[own] = own_count
    return dict(sorted(counts.items()))


def version_views(
    rows: list[Record], record: Record, live_digest: Optional[str], stored: Callable[[str], bool]
) -> list[Record]:
    """
    The endpoint's version rows as the API shows them: ``short``, ``live``
    (the version served, else the deployed one), ``current`` (the build of the
    current code) and ``available`` (``stored``: its binary is still there, so
    a rollback can use it).
    """
    live = live_digest or record["deployed"]
    return [
        dict(
            row,
            short=short(row["digest"]),
            live=row["digest"] == live,
            current=row["digest"] == record["artifact"],
            available=stored(row["digest"]),
        )
        for row in rows
    ]
