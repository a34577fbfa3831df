"""The SQLite store, against a real SQLite file."""

from twisted.trial import unittest

from edgegw_tx.store import Conflict
from tests.support import make_store


def endpoint(**overrides):
    record = {
        "id": "e1",
        "name": "hello",
        "path": "/hello",
        "path_shape": "/hello",
        "method": "GET",
        "domain": "*",
        "code": "fn main() {}",
        "enabled": True,
        "settings": {"instances": 1, "timeout": 30.0, "env": {}},
        "status": "created",
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
    }
    record.update(overrides)
    return record


class EndpointStoreTests(unittest.TestCase):
    def setUp(self):
        self.store = make_store(self)

    def test_create_and_get_round_trip(self):
        """A created endpoint reads back with its JSON settings and boolean flag decoded."""
        created = self.successResultOf(self.store.create_endpoint(endpoint()))
        self.assertEqual(created["settings"], {"instances": 1, "timeout": 30.0, "env": {}})
        self.assertIs(created["enabled"], True)
        self.assertEqual(self.successResultOf(self.store.get_endpoint("e1")), created)

    def test_get_unknown_is_none(self):
        """Reading an id that does not exist gives None, not an error."""
        self.assertIsNone(self.successResultOf(self.store.get_endpoint("nope")))

    def test_same_route_twice_conflicts(self):
        """Two endpoints with the same domain, method and path shape are refused."""
        self.successResultOf(self.store.create_endpoint(endpoint()))
        failure = self.failureResultOf(
            self.store.create_endpoint(endpoint(id="e2", name="other")), Conflict
        )
        self.assertIn("UNIQUE", str(failure.value))

    def test_same_path_other_method_is_allowed(self):
        """The same path under another method is a different route."""
        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.successResultOf(self.store.create_endpoint(endpoint(id="e2", method="POST")))
        self.assertEqual(len(self.successResultOf(self.store.list_endpoints())), 2)

    def test_update_changes_only_given_columns(self):
        """An update writes the given columns and leaves the others alone."""
        self.successResultOf(self.store.create_endpoint(endpoint()))
        updated = self.successResultOf(
            self.store.update_endpoint("e1", {"status": "compiled", "artifact": "abc"})
        )
        self.assertEqual((updated["status"], updated["artifact"]), ("compiled", "abc"))
        self.assertEqual(updated["code"], "fn main() {}")

    def test_update_into_a_taken_route_conflicts(self):
        """Moving an endpoint onto another endpoint's route is refused."""
        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.successResultOf(
            self.store.create_endpoint(endpoint(id="e2", path="/b", path_shape="/b"))
        )
        self.failureResultOf(
            self.store.update_endpoint("e2", {"path": "/hello", "path_shape": "/hello"}), Conflict
        )

    def test_update_unknown_column_is_refused(self):
        """Only known columns can be written."""
        self.assertRaises(ValueError, self.store.update_endpoint, "e1", {"bogus": 1})

    def test_delete(self):
        """Delete reports whether a row went away."""
        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.assertTrue(self.successResultOf(self.store.delete_endpoint("e1")))
        self.assertFalse(self.successResultOf(self.store.delete_endpoint("e1")))
        self.assertIsNone(self.successResultOf(self.store.get_endpoint("e1")))

    def test_reopen_keeps_data(self):
        """Data written survives closing and reopening the file."""
        from edgegw_tx.store import SQLiteStore
        from tests.support import SynchronousReactor

        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.store.close()
        reactor = SynchronousReactor()
        again = SQLiteStore(self.store.path, reactor=reactor, threadpool=reactor.getThreadPool())
        self.successResultOf(again.open())
        self.addCleanup(again.close)
        self.assertEqual(self.successResultOf(again.get_endpoint("e1"))["name"], "hello")
