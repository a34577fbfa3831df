"""
Fakes of the control plane's seams inside the endpoint manager
(edgegw_tx/admin/): the builder's binaries and the store's versions (the
artifact ledger), a scripted pool, the route table logging switches and the
store's record reads and writes (the deployments). tests/test_admin_seams.py
checks each against the Protocol of the seam it stands in for, beside the
real implementation.
"""

from typing import Any, Optional

from twisted.internet.defer import Deferred, fail, succeed

from edgegw_tx.gateway.routes import RouteTable

Record = dict[str, Any]


class FakeBinaries:
    """
    Stored binaries by digest; ``gate`` (a Deferred) holds the next removal
    until fired; ``shared`` are the digests the cluster's store has (``fetch``
    copies one into ``stored``), ``fetched`` logs the fetches.
    """

    def __init__(self, *digests: str) -> None:
        self.stored = set(digests)
        self.removed: list[str] = []
        self.gate: Optional[Deferred[None]] = None
        self.broken: set[str] = set()
        self.shared: set[str] = set()
        self.fetched: list[str] = []

    def artifact(self, digest: str) -> Optional[str]:
        """The binary's path when stored."""
        return f"/artifacts/{digest}/handler" if digest in self.stored else None

    def fetch(self, digest: str) -> "Deferred[Optional[str]]":
        """Copy a ``shared`` binary into ``stored``; fire with its path (None when not shared)."""
        self.fetched.append(digest)
        if digest not in self.shared:
            return succeed(None)
        self.stored.add(digest)
        return succeed(self.artifact(digest))

    def remove_artifact(self, digest: str) -> "Deferred[Any]":
        """Delete, at once or when ``gate`` fires; a digest in ``broken`` fails."""
        if digest in self.broken:
            return fail(OSError(f"cannot remove {digest}"))

        def remove(_: Any) -> bool:
            self.removed.append(digest)
            self.stored.discard(digest)
            return True

        gate, self.gate = self.gate, None
        if gate is not None:
            return gate.addCallback(remove)
        return succeed(remove(None))


class FakeVersionStore:
    """Version rows per endpoint, newest last; ``named`` digests are used by some record."""

    def __init__(self) -> None:
        self.rows: dict[str, list[str]] = {}
        self.named: set[str] = set()

    def record_version(self, record: dict[str, Any], cached: bool = False) -> "Deferred[None]":
        """Append (or move to newest) the version's digest."""
        rows = self.rows.setdefault(record["endpoint_id"], [])
        if record["digest"] in rows:
            rows.remove(record["digest"])
        rows.append(record["digest"])
        return succeed(None)

    def prune_versions(self, endpoint_id: str, keep: int, protected: Any = ()) -> "Deferred[list[str]]":
        """Drop all but the ``keep`` newest (and the protected); fire with the dropped ones no record names."""
        rows = self.rows.get(endpoint_id, [])
        doomed = [d for d in rows[: max(len(rows) - keep, 0)] if d not in set(protected)]
        self.rows[endpoint_id] = [d for d in rows if d not in doomed]
        return self.unused_digests(doomed, protected)

    def unused_digests(self, digests: Any, protected: Any = ()) -> "Deferred[list[str]]":
        """Those no row and no record names."""
        rows = {d for ds in self.rows.values() for d in ds}
        return succeed([d for d in digests if d not in rows and d not in self.named and d not in set(protected)])


class ScriptedPool:
    """A pool that logs start, ready and stop in ``events``; ``fail`` or ``hold_stop`` script it."""

    def __init__(self, events: list[tuple[str, Optional[str]]], record: Record, version: Optional[str]) -> None:
        self.events = events
        self.name = record["name"]
        self.record = record
        self.version = version
        self.pids: list[int] = []
        self.fail: Optional[Exception] = None
        self.stopping: Optional[Deferred[None]] = None
        self.hold_stop = False

    def start(self) -> "Deferred[Any]":
        """Ready at once, or failing with ``fail``."""
        self.events.append(("start", self.version))
        if self.fail is not None:
            return fail(self.fail)
        self.pids = [len(self.events)]
        self.events.append(("ready", self.version))
        return succeed(self.pids)

    def stop(self) -> "Deferred[Any]":
        """Stopped at once, or when the test fires ``stopping`` (a drain in progress)."""
        self.events.append(("stop", self.version))
        if self.hold_stop:
            self.stopping = Deferred()
            return self.stopping
        self.pids = []
        return succeed(None)

    def workers(self) -> list[dict[str, Any]]:
        """One row per pid."""
        state = "draining" if self.stopping is not None else "ready"
        return [{"pid": pid, "version": self.version, "state": state} for pid in self.pids]

    def stats(self) -> dict[str, Any]:
        """What views and stats read."""
        return {"name": self.name, "workers": len(self.pids), "queued": 0}


class LoggedRoutes(RouteTable):
    """The real route table, logging which version each route switch points at."""

    def __init__(self, events: list[tuple[str, Optional[str]]]) -> None:
        super().__init__()
        self.events = events

    def place(self, key: str, routes: Any, target: Any, policy: Any = None) -> Any:
        """Log, then route."""
        self.events.append(("route", target.version))
        return super().place(key, routes, target, policy)


class RecordStore:
    """The deployment's store seam over a dict of records."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}

    def get_endpoint(self, endpoint_id: str) -> "Deferred[Optional[Record]]":
        """A copy of the record, or None."""
        record = self.records.get(endpoint_id)
        return succeed(dict(record) if record is not None else None)

    def update_endpoint(self, endpoint_id: str, fields: Record, revision: Optional[int] = None) -> "Deferred[Record]":
        """Merge the fields in."""
        self.records[endpoint_id].update(fields)
        return succeed(dict(self.records[endpoint_id]))


class DesiredRecords(RecordStore, FakeVersionStore):
    """
    The store seams of a whole ``EndpointManager`` (records, versions) over
    dicts, for reconciliation: a test writes ``records`` as another node of
    the cluster would; ``writes`` logs every ``update_endpoint`` made here.
    """

    def __init__(self) -> None:
        RecordStore.__init__(self)
        FakeVersionStore.__init__(self)
        self.writes: list[tuple[str, Record]] = []

    def list_endpoints(self) -> "Deferred[list[Record]]":
        """Copies of every record, in insertion order."""
        return succeed([dict(r) for r in self.records.values()])

    def list_versions(self, endpoint_id: str) -> "Deferred[list[Record]]":
        """The endpoint's version rows, newest first."""
        return succeed([{"endpoint_id": endpoint_id, "digest": d} for d in reversed(self.rows.get(endpoint_id, []))])

    def update_endpoint(self, endpoint_id: str, fields: Record, revision: Optional[int] = None) -> "Deferred[Record]":
        """Log the write, then merge it in."""
        self.writes.append((endpoint_id, dict(fields)))
        return super().update_endpoint(endpoint_id, fields)
