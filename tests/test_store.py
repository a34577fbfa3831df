"""The SQLite store, against a real SQLite file."""

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from edgegw_tx.store import Conflict, IStore, SQLiteStore
from tests.support.fakes import make_store
from tests.support.interfaces import verify_fake
from tests.support.fakes import endpoint


class InterfaceTests(unittest.TestCase):
    """The SQLite store is one implementation of IStore, and IStore is all it offers."""

    def test_sqlite_store_provides_istore(self):
        """A real, opened SQLiteStore provides IStore: every method it names, with compatible signatures."""
        self.assertTrue(verifyObject(IStore, make_store(self)))

    def test_istore_covers_every_public_method(self):
        """Each public method of SQLiteStore is in IStore, so callers need nothing SQLite-only."""
        public = {name for name in vars(SQLiteStore) if not name.startswith("_") and callable(vars(SQLiteStore)[name])}
        self.assertEqual(public - set(IStore.names(all=True)), set())


class FakeCheckTests(unittest.TestCase):
    """verify_fake: a fake of part of the store has only IStore's methods, with their signatures."""

    def test_a_partial_fake_with_the_right_signatures_passes(self):
        """A fake with two of IStore's methods, as the interface declares them, passes."""

        class Versions:
            def record_version(self, record, cached=False):
                pass

            def list_versions(self, endpoint_id):
                pass

        verify_fake(IStore, Versions())

    def test_a_drifted_fake_fails(self):
        """A method IStore does not have, or one whose parameters differ, fails naming it."""

        class Renamed:
            def free_worker_uid(self, endpoint_id):
                pass

        class Drifted:
            def prune_versions(self, endpoint_id):
                pass

        error = self.assertRaises(AssertionError, verify_fake, IStore, Renamed())
        self.assertIn("has methods IStore does not: free_worker_uid", str(error))
        error = self.assertRaises(AssertionError, verify_fake, IStore, Drifted())
        self.assertIn("prune_versions", str(error))

    def test_the_store_fakes_of_the_manager_tests(self):
        """The fakes of parts of the store in tests/support/control.py are fakes of IStore's role interfaces."""
        from edgegw_tx.store.interface import IEndpointStore, IVersionStore
        from tests.support.control import FakeVersionStore, RecordStore

        verify_fake(IVersionStore, FakeVersionStore())
        verify_fake(IEndpointStore, RecordStore())


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
        from tests.support.fakes import SynchronousReactor

        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.store.close()
        reactor = SynchronousReactor()
        again = SQLiteStore(self.store.path, reactor=reactor, threadpool=reactor.getThreadPool())
        self.successResultOf(again.open())
        self.addCleanup(again.close)
        self.assertEqual(self.successResultOf(again.get_endpoint("e1"))["name"], "hello")


def service(**overrides):
    record = {
        "id": "s1",
        "name": "main-db",
        "service_type": "postgres",
        "config": {"host": "db", "port": 5432, "password": "pw"},
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
    }
    record.update(overrides)
    return record


class ServiceStoreTests(unittest.TestCase):
    def setUp(self):
        self.store = make_store(self)

    def bind(self, endpoint_id="e1", pool_id="main", service_id="s1"):
        return self.store.bind(endpoint_id, pool_id, service_id, "2026-01-02T00:00:00+00:00")

    def test_create_and_get_round_trip(self):
        """A created service reads back with its JSON config decoded, secrets in clear."""
        created = self.successResultOf(self.store.create_service(service()))
        self.assertEqual(created, dict(service(), revision=created["revision"]))
        self.assertEqual(self.successResultOf(self.store.get_service("s1")), created)
        self.assertIsNone(self.successResultOf(self.store.get_service("nope")))
        self.assertEqual(self.successResultOf(self.store.list_services()), [created])

    def test_same_name_twice_conflicts_ignoring_case(self):
        """Service names are unique regardless of case, on insert and on rename."""
        self.successResultOf(self.store.create_service(service()))
        self.failureResultOf(self.store.create_service(service(id="s2", name="MAIN-db")), Conflict)
        self.successResultOf(self.store.create_service(service(id="s2", name="other")))
        self.failureResultOf(self.store.update_service("s2", {"name": "Main-DB"}), Conflict)

    def test_update_changes_only_given_columns(self):
        """An update writes the given columns, encoding config as JSON."""
        self.successResultOf(self.store.create_service(service()))
        updated = self.successResultOf(self.store.update_service("s1", {"config": {"host": "db2"}}))
        self.assertEqual((updated["config"], updated["name"]), ({"host": "db2"}, "main-db"))
        self.assertRaises(ValueError, self.store.update_service, "s1", {"bogus": 1})
        self.assertIsNone(self.successResultOf(self.store.update_service("nope", {"name": "x"})))

    def test_bindings_show_on_endpoint_records(self):
        """get_endpoint and list_endpoints carry the bindings as services {pool_id: service_id}."""
        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.successResultOf(self.store.create_service(service()))
        self.assertEqual(self.successResultOf(self.store.get_endpoint("e1"))["services"], {})
        self.assertIsNone(self.successResultOf(self.bind()))
        self.assertIsNone(self.successResultOf(self.bind(pool_id="replica")))
        expected = {"main": "s1", "replica": "s1"}
        self.assertEqual(self.successResultOf(self.store.get_endpoint("e1"))["services"], expected)
        self.assertEqual(self.successResultOf(self.store.list_endpoints())[0]["services"], expected)
        bindings = self.successResultOf(self.store.list_bindings())
        self.assertEqual(
            [(b["endpoint_id"], b["pool_id"], b["service_id"]) for b in bindings],
            [("e1", "main", "s1"), ("e1", "replica", "s1")],
        )

    def test_binding_a_name_again_replaces_it(self):
        """bind() on a taken (endpoint, pool_id) points it at the new service and says which it replaced."""
        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.successResultOf(self.store.create_service(service()))
        self.successResultOf(self.store.create_service(service(id="s2", name="other")))
        self.successResultOf(self.bind())
        self.assertEqual(self.successResultOf(self.bind(service_id="s2")), "s1")
        self.assertEqual(self.successResultOf(self.store.get_endpoint("e1"))["services"], {"main": "s2"})

    def test_bind_to_missing_records_fails_with_missing(self):
        """Binding to an unknown endpoint or service fails with Missing naming which."""
        from edgegw_tx.store import Missing

        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.successResultOf(self.store.create_service(service()))
        failure = self.failureResultOf(self.bind(endpoint_id="nope"), Missing)
        self.assertEqual((failure.value.what, failure.value.record_id), ("endpoint", "nope"))
        failure = self.failureResultOf(self.bind(service_id="nope"), Missing)
        self.assertEqual((failure.value.what, failure.value.record_id), ("service", "nope"))
        self.assertEqual(self.successResultOf(self.store.list_bindings()), [])

    def test_unbind_reports_what_was_bound(self):
        """unbind() fires with the service id that was bound, then None."""
        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.successResultOf(self.store.create_service(service()))
        self.successResultOf(self.bind())
        self.assertEqual(self.successResultOf(self.store.unbind("e1", "main")), "s1")
        self.assertIsNone(self.successResultOf(self.store.unbind("e1", "main")))

    def test_deleting_an_endpoint_deletes_its_bindings(self):
        """The bindings of a deleted endpoint go with it."""
        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.successResultOf(self.store.create_service(service()))
        self.successResultOf(self.bind())
        self.assertTrue(self.successResultOf(self.store.delete_endpoint("e1")))
        self.assertEqual(self.successResultOf(self.store.list_bindings()), [])
        self.assertTrue(self.successResultOf(self.store.delete_service("s1")))

    def test_a_bound_service_cannot_be_deleted(self):
        """delete_service refuses with ServiceInUse listing endpoint id, name and pool_id."""
        from edgegw_tx.store import ServiceInUse

        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.successResultOf(self.store.create_service(service()))
        self.successResultOf(self.bind())
        failure = self.failureResultOf(self.store.delete_service("s1"), ServiceInUse)
        self.assertIsInstance(failure.value, Conflict)
        self.assertEqual(
            failure.value.bindings, [{"endpoint_id": "e1", "endpoint_name": "hello", "pool_id": "main"}]
        )
        self.assertIsNotNone(self.successResultOf(self.store.get_service("s1")))
        self.assertFalse(self.successResultOf(self.store.delete_service("nope")))
