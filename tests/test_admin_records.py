"""
The endpoint records on their own (edgegw_tx/admin/records.py): create and
update over a real SQLite store, the worker uid given at create, and the
routing lock that serialises every write deciding routes, with fakes of the
uid allocator.
"""

from typing import Any, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial import unittest

from edgegw_tx.admin.errors import Conflict
from edgegw_tx.admin.records import EndpointRecords
from edgegw_tx.store import NoFreeUid
from tests.support.fakes import make_store

Record = dict[str, Any]

CODE = "fn main() {}"


def payload(**fields: Any) -> Record:
    """A create body."""
    body: Record = {"name": "hello", "path": "/hello", "method": "GET", "code": CODE}
    body.update(fields)
    return body


class CountingUids:
    """The uid seam: a uid per endpoint from 61001 up, or NoFreeUid once ``free`` is 0."""

    def __init__(self, free: int = 10) -> None:
        self.free = free
        self.given: dict[str, int] = {}

    def allocate(self, endpoint_id: str) -> "Deferred[Optional[int]]":
        """The endpoint's uid (the same one again), or NoFreeUid."""
        if endpoint_id not in self.given:
            if self.free == 0:
                return fail(NoFreeUid("all 0 worker uids are taken"))
            self.free -= 1
            self.given[endpoint_id] = 61001 + len(self.given)
        return succeed(self.given[endpoint_id])


class RecordsTests(unittest.TestCase):
    """Create, update and the routing lock of ``EndpointRecords``."""

    def setUp(self) -> None:
        self.store = make_store(self)
        self.uids = CountingUids()
        self.records = EndpointRecords(self.store, self.uids)

    def test_create_gives_the_endpoint_its_worker_uid(self) -> None:
        """A created endpoint has a uid of its own from the allocator."""
        created = self.successResultOf(self.records.create(payload()))
        self.assertEqual(created["status"], "created")
        self.assertEqual(self.uids.given, {created["id"]: 61001})

    def test_create_without_a_free_uid_is_409_and_stores_nothing(self) -> None:
        """With every uid taken the create fails whole: 409 naming the endpoint, no record left."""
        self.uids.free = 0
        failure = self.failureResultOf(self.records.create(payload()), Conflict)
        self.assertIn("endpoint 'hello' cannot get a worker uid", failure.value.message)
        self.assertEqual(self.successResultOf(self.records.list()), [])

    def test_a_taken_route_is_409_naming_it(self) -> None:
        """A second endpoint on the same method, domain and path shape is refused with the route."""
        self.successResultOf(self.records.create(payload(path="/{x}")))
        failure = self.failureResultOf(self.records.create(payload(name="other", path="/{y}")), Conflict)
        self.assertIn("already serves GET /{y} on domain '*'", failure.value.message)

    def test_writes_wait_for_a_routing_write_in_progress(self) -> None:
        """A create waits while another routing write (a domain or collection change) runs."""
        held: Deferred[None] = Deferred()
        writing = self.records.routing_write(lambda: held)
        creating = self.records.create(payload())
        self.assertNoResult(creating)
        held.callback(None)
        self.successResultOf(writing)
        self.successResultOf(creating)

    def test_an_update_follows_inside_the_same_routing_write(self) -> None:
        """``moved`` runs after the store write and before another routing write can start."""
        created = self.successResultOf(self.records.create(payload()))
        seen: list[Any] = []
        gate: Deferred[None] = Deferred()

        def moved(current: Record, record: Record) -> "Deferred[Record]":
            seen.append((current["path"], record["path"]))
            return gate.addCallback(lambda _: record)

        updating = self.records.update(created["id"], {"path": "/moved"}, moved)
        other = self.records.routing_write(lambda: seen.append("other"))
        self.assertEqual(seen, [("/hello", "/moved")])
        gate.callback(None)
        self.assertEqual(self.successResultOf(updating)["path"], "/moved")
        self.successResultOf(other)
        self.assertEqual(seen[-1], "other")

    def test_a_code_change_drops_the_compiled_artifact(self) -> None:
        """New code makes the stored binary not the endpoint's: artifact None, status created."""
        created = self.successResultOf(self.records.create(payload()))
        self.successResultOf(self.records.write(created["id"], {"artifact": "d" * 64, "status": "compiled"}))
        updated = self.successResultOf(
            self.records.update(created["id"], {"code": CODE + " "}, lambda c, r: succeed(r))
        )
        self.assertEqual((updated["artifact"], updated["status"]), (None, "created"))
