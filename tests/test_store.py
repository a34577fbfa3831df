"""
The stores, against a real SQLite file and a real PostgreSQL database: one
suite of behaviours (mixins), run on each (``...SQLiteTests`` and
``...PostgresIntegrationTests``), plus what only one of them does.
"""

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from edgegw_tx.store import Conflict, IStore, SQLiteStore
from edgegw_tx.store.errors import LastAdminKey, Missing, RouteClash, Stale
from edgegw_tx.store.interface import IClusterStore
from tests.support.fakes import endpoint, make_store
from tests.support.interfaces import verify_fake
from tests.support.pg import postgres_store


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


class PostgresInterfaceIntegrationTests(unittest.TestCase):
    """The PostgreSQL store is another IStore, a shared one (IClusterStore)."""

    def test_postgres_store_provides_icluster_store(self):
        """An opened PostgresStore provides IClusterStore (so IStore), and says it is shared."""
        from edgegw_tx.store.postgres import PostgresStore

        store = postgres_store(self)
        self.assertTrue(verifyObject(IClusterStore, store))
        self.assertTrue(store.shared)
        self.assertFalse(make_store(self).shared)
        public = {name for name in vars(PostgresStore) if not name.startswith("_") and callable(vars(PostgresStore)[name])}
        self.assertEqual(public - set(IClusterStore.names(all=True)), set())


class OnSQLite:
    """The suite on a SQLite file."""

    def make(self):
        return make_store(self)

    def reopen(self):
        """Another store on the same file, opened."""
        from tests.support.fakes import SynchronousReactor

        reactor = SynchronousReactor()
        again = SQLiteStore(self.store.path, reactor=reactor, threadpool=reactor.getThreadPool())
        self.successResultOf(again.open())
        self.addCleanup(again.close)
        return again


class OnPostgres:
    """The suite on a PostgreSQL database of the test's own."""

    def make(self):
        return postgres_store(self)

    def reopen(self):
        """Another store on the same database, opened."""
        return postgres_store(self, uri=self.store.uri)


def route(method, path, shape=None):
    """One stored route: method, path and its shape (the path unless given)."""
    return {"method": method, "path": path, "path_shape": shape or path}


class EndpointStoreMixin:
    def setUp(self):
        self.store = self.make()

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
        self.failureResultOf(self.store.create_endpoint(endpoint(id="e2", name="other")), Conflict)
        self.assertEqual([e["id"] for e in self.successResultOf(self.store.list_endpoints())], ["e1"])

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

    def test_routes_round_trip_in_order(self):
        """An endpoint's several routes read back in order; its columns hold the first."""
        routes = [route("GET", "/notes"), route("POST", "/notes"), route("GET", "/notes/{id}", "/notes/{}")]
        created = self.successResultOf(self.store.create_endpoint(endpoint(routes=routes)))
        self.assertEqual(created["routes"], routes)
        self.assertEqual((created["method"], created["path"]), ("GET", "/notes"))
        listed = self.successResultOf(self.store.list_endpoints())
        self.assertEqual(listed[0]["routes"], routes)

    def test_a_route_is_unique_across_endpoints(self):
        """Any route of one endpoint taken by any route of another is a Conflict; nothing of the write stays."""
        self.successResultOf(
            self.store.create_endpoint(endpoint(routes=[route("GET", "/notes"), route("DELETE", "/notes/{id}", "/notes/{}")]))
        )
        taken = endpoint(id="e2", name="two", routes=[route("PUT", "/notes/{x}", "/notes/{}"), route("DELETE", "/notes/{n}", "/notes/{}")])
        self.failureResultOf(self.store.create_endpoint(taken), Conflict)
        self.assertEqual([e["id"] for e in self.successResultOf(self.store.list_endpoints())], ["e1"])
        self.successResultOf(self.store.create_endpoint(endpoint(id="e2", name="two", routes=[route("PUT", "/notes/{x}", "/notes/{}")])))
        self.failureResultOf(
            self.store.update_endpoint("e2", {"routes": [route("PUT", "/notes/{x}", "/notes/{}"), route("GET", "/notes")]}),
            Conflict,
        )
        self.assertEqual(self.successResultOf(self.store.get_endpoint("e2"))["routes"], [route("PUT", "/notes/{x}", "/notes/{}")])

    def test_update_replaces_the_routes_and_delete_frees_them(self):
        """An update with routes replaces the whole set (columns follow); a deleted endpoint's routes are free again."""
        self.successResultOf(self.store.create_endpoint(endpoint(routes=[route("GET", "/a"), route("POST", "/a")])))
        updated = self.successResultOf(self.store.update_endpoint("e1", {"routes": [route("POST", "/a"), route("PUT", "/b")]}))
        self.assertEqual(updated["routes"], [route("POST", "/a"), route("PUT", "/b")])
        self.assertEqual((updated["method"], updated["path"], updated["path_shape"]), ("POST", "/a", "/a"))
        self.successResultOf(self.store.create_endpoint(endpoint(id="e2", name="two", routes=[route("GET", "/a")])))
        self.assertTrue(self.successResultOf(self.store.delete_endpoint("e1")))
        self.successResultOf(self.store.create_endpoint(endpoint(id="e3", name="three", routes=[route("PUT", "/b")])))

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
        """Data written survives closing and reopening the store."""
        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.store.close()
        again = self.reopen()
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


class ServiceStoreMixin:
    def setUp(self):
        self.store = self.make()

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


def domain(**overrides):
    record = {"id": "d1", "host": "api.example.com", "created_at": "t0", "updated_at": "t0"}
    record.update(overrides)
    return record


def key(**overrides):
    record = {"id": "k1", "name": "first", "scope": "admin", "key_hash": "h1", "created_at": "t0"}
    record.update(overrides)
    return record


class DomainStoreMixin:
    def setUp(self):
        self.store = self.make()

    def test_moves_apply_with_the_domain_change(self):
        """A domain's new host moves its endpoints in the same write; two endpoints may swap routes."""
        self.successResultOf(self.store.create_domain(domain()))
        self.successResultOf(self.store.create_endpoint(endpoint(domain="api.example.com")))
        self.successResultOf(self.store.create_endpoint(endpoint(id="e2", path="/b", path_shape="/b", domain="api.example.com")))
        updated = self.successResultOf(
            self.store.update_domain(
                "d1", {"host": "new.example.com"},
                [("e1", "new.example.com", ("/b",)), ("e2", "new.example.com", ("/hello",))],
            )
        )
        self.assertEqual(updated["host"], "new.example.com")
        routes = {e["id"]: (e["domain"], e["path_shape"]) for e in self.successResultOf(self.store.list_endpoints())}
        self.assertEqual(routes, {"e1": ("new.example.com", "/b"), "e2": ("new.example.com", "/hello")})

    def test_a_move_onto_a_taken_route_clashes_and_changes_nothing(self):
        """RouteClash names the endpoint in the way; the domain and every endpoint stay as they were."""
        self.successResultOf(self.store.create_domain(domain()))
        self.successResultOf(self.store.create_endpoint(endpoint(domain="new.example.com")))
        self.successResultOf(self.store.create_endpoint(endpoint(id="e2", name="two", domain="api.example.com")))
        failure = self.failureResultOf(
            self.store.update_domain("d1", {"host": "new.example.com"}, [("e2", "new.example.com", ("/hello",))]),
            RouteClash,
        )
        self.assertEqual((failure.value.endpoint_id, failure.value.other_id, failure.value.other_name), ("e2", "e1", "hello"))
        self.assertEqual(self.successResultOf(self.store.get_domain("d1"))["host"], "api.example.com")
        self.assertEqual(self.successResultOf(self.store.get_endpoint("e2"))["domain"], "api.example.com")
        # The store is still usable after the failed transaction.
        self.successResultOf(self.store.create_collection(
            {"id": "c1", "name": "c", "domain_id": "d1", "base_path": "/c", "created_at": "t0", "updated_at": "t0"}
        ))

    def test_collections_need_their_domain(self):
        """A collection naming no domain is Missing; a used domain or collection cannot go (InUse)."""
        from edgegw_tx.store import InUse

        collection = {"id": "c1", "name": "c", "domain_id": "d1", "base_path": "/c", "created_at": "t0", "updated_at": "t0"}
        self.failureResultOf(self.store.create_collection(collection), Missing)
        self.successResultOf(self.store.create_domain(domain()))
        self.successResultOf(self.store.create_collection(collection))
        self.failureResultOf(self.store.delete_domain("d1"), InUse)
        self.successResultOf(self.store.create_endpoint(endpoint(collection_id="c1")))
        self.failureResultOf(self.store.delete_collection("c1"), InUse)
        self.assertEqual([c["id"] for c in self.successResultOf(self.store.list_collections("d1"))], ["c1"])


class RevisionMixin:
    """Every record carries the revision of its last change; If-Match writes check it."""

    def setUp(self):
        self.store = self.make()

    def test_each_write_gives_a_new_higher_revision(self):
        """Creating then updating an endpoint gives it a revision, then a higher one; reads return it."""
        created = self.successResultOf(self.store.create_endpoint(endpoint()))
        self.assertGreater(created["revision"], 0)
        updated = self.successResultOf(self.store.update_endpoint("e1", {"status": "stopped"}))
        self.assertGreater(updated["revision"], created["revision"])
        self.assertEqual(self.successResultOf(self.store.get_endpoint("e1"))["revision"], updated["revision"])

    def test_a_write_at_an_old_revision_is_stale(self):
        """update/delete with a revision that is not the record's fail with Stale naming the current one; nothing changes."""
        created = self.successResultOf(self.store.create_endpoint(endpoint()))
        now = self.successResultOf(self.store.update_endpoint("e1", {"description": "x"}))["revision"]
        failure = self.failureResultOf(
            self.store.update_endpoint("e1", {"description": "y"}, revision=created["revision"]), Stale
        )
        self.assertEqual((failure.value.what, failure.value.record_id, failure.value.current), ("endpoint", "e1", now))
        self.failureResultOf(self.store.delete_endpoint("e1", revision=created["revision"]), Stale)
        self.assertEqual(self.successResultOf(self.store.get_endpoint("e1"))["description"], "x")
        done = self.successResultOf(self.store.update_endpoint("e1", {"description": "z"}, revision=now))
        self.assertEqual(done["description"], "z")
        self.assertTrue(self.successResultOf(self.store.delete_endpoint("e1", revision=done["revision"])))
        self.assertIsNone(self.successResultOf(self.store.update_endpoint("e1", {"description": "z"}, revision=1)))
        self.assertFalse(self.successResultOf(self.store.delete_endpoint("e1", revision=1)))

    def test_every_kind_checks_its_revision(self):
        """Services, domains, collections and keys are Stale at an old revision too, each named by its kind."""
        from tests.test_store import service

        s = self.successResultOf(self.store.create_service(service()))
        d = self.successResultOf(self.store.create_domain(domain()))
        c = self.successResultOf(self.store.create_collection(
            {"id": "c1", "name": "c", "domain_id": "d1", "base_path": "/c", "created_at": "t0", "updated_at": "t0"}
        ))
        self.successResultOf(self.store.add_key(key()))
        self.successResultOf(self.store.add_key(key(id="k2", key_hash="h2")))
        k = self.successResultOf(self.store.get_key("k2"))
        for record in (s, d, c, k):
            self.assertGreater(record["revision"], 0)
        stale = [
            self.store.update_service("s1", {"name": "x"}, revision=s["revision"] + 100),
            self.store.delete_service("s1", revision=s["revision"] + 100),
            self.store.update_domain("d1", {"description": "x"}, revision=d["revision"] + 100),
            self.store.delete_domain("d1", revision=d["revision"] + 100),
            self.store.update_collection("c1", {"name": "x"}, revision=c["revision"] + 100),
            self.store.delete_collection("c1", revision=c["revision"] + 100),
            self.store.delete_key("k2", revision=k["revision"] + 100),
        ]
        kinds = [self.failureResultOf(d, Stale).value.what for d in stale]
        self.assertEqual(kinds, ["service", "service", "domain", "domain", "collection", "collection", "key"])
        self.assertEqual(self.successResultOf(self.store.delete_key("k2", revision=k["revision"]))["id"], "k2")
        self.assertEqual(
            self.successResultOf(self.store.update_service("s1", {"name": "x"}, revision=s["revision"]))["name"], "x"
        )

    def test_the_change_log_has_every_kind(self):
        """Triggers log inserts, updates and deletes of each kind (bindings under their endpoint), oldest first."""
        from tests.test_store import service

        start = self.successResultOf(self.store.changes_since(0))["revision"]
        self.successResultOf(self.store.create_endpoint(endpoint()))
        self.successResultOf(self.store.create_service(service()))
        self.successResultOf(self.store.bind("e1", "main", "s1", "t0"))
        self.successResultOf(self.store.create_domain(domain()))
        self.successResultOf(self.store.create_collection(
            {"id": "c1", "name": "c", "domain_id": "d1", "base_path": "/c", "created_at": "t0", "updated_at": "t0"}
        ))
        self.successResultOf(self.store.add_key(key()))
        self.successResultOf(self.store.update_endpoint("e1", {"status": "running"}))
        self.successResultOf(self.store.unbind("e1", "main"))
        self.successResultOf(self.store.delete_collection("c1"))
        log = self.successResultOf(self.store.changes_since(start))
        kinds = [(c["kind"], c["record_id"]) for c in log["changes"]]
        self.assertEqual(
            kinds,
            [("endpoint", "e1"), ("service", "s1"), ("binding", "e1"), ("domain", "d1"), ("collection", "c1"),
             ("key", "k1"), ("endpoint", "e1"), ("binding", "e1"), ("collection", "c1")],
        )
        revisions = [c["revision"] for c in log["changes"]]
        self.assertEqual(revisions, sorted(set(revisions)))
        self.assertEqual(log["revision"], revisions[-1])
        self.assertTrue(log["complete"])
        self.assertEqual(self.successResultOf(self.store.get_endpoint("e1"))["revision"], revisions[6])

    def test_a_key_used_is_no_change(self):
        """touch_keys (last_used_at) writes no change row and keeps the key's revision."""
        self.successResultOf(self.store.add_key(key()))
        before = self.successResultOf(self.store.changes_since(0))
        self.successResultOf(self.store.touch_keys({"k1": "t9"}))
        after = self.successResultOf(self.store.changes_since(0))
        self.assertEqual(after["revision"], before["revision"])
        self.assertEqual(self.successResultOf(self.store.get_key("k1"))["last_used_at"], "t9")

    def test_pruned_changes_make_the_log_incomplete(self):
        """After prune_changes(keep), asking from before the kept rows says complete False; from after, True."""
        for n in range(5):
            self.successResultOf(self.store.add_key(key(id=f"k{n}", key_hash=f"h{n}")))
        log = self.successResultOf(self.store.changes_since(0))
        newest = log["revision"]
        self.assertEqual(self.successResultOf(self.store.prune_changes(2)), 3)
        self.assertFalse(self.successResultOf(self.store.changes_since(0))["complete"])
        kept = self.successResultOf(self.store.changes_since(newest - 2))
        self.assertEqual((kept["complete"], len(kept["changes"]), kept["revision"]), (True, 2, newest))
        self.successResultOf(self.store.prune_changes(0))
        self.assertEqual(self.successResultOf(self.store.changes_since(newest))["revision"], newest)


class KeyStoreMixin:
    def setUp(self):
        self.store = self.make()

    def test_the_first_key_is_added_once(self):
        """add_first_key inserts into an empty store only: True, then False (the key of the first stays)."""
        self.assertTrue(self.successResultOf(self.store.add_first_key(key())))
        self.assertFalse(self.successResultOf(self.store.add_first_key(key(id="k2", key_hash="h2"))))
        self.assertEqual([k["id"] for k in self.successResultOf(self.store.list_keys())], ["k1"])

    def test_the_last_admin_key_stays(self):
        """Deleting the only admin key is LastAdminKey; an unknown one Missing."""
        self.successResultOf(self.store.add_key(key()))
        self.failureResultOf(self.store.delete_key("k1"), LastAdminKey)
        self.failureResultOf(self.store.delete_key("nope"), Missing)
        self.successResultOf(self.store.add_key(key(id="k2", key_hash="h2")))
        self.assertEqual(self.successResultOf(self.store.delete_key("k1"))["id"], "k1")


class NodeStoreMixin:
    def setUp(self):
        self.store = self.make()

    def node(self, **overrides):
        record = {"name": "n1", "address": "127.0.0.1:8080", "admin_address": "127.0.0.1:9090",
                  "version": "0.1", "started_at": "t0", "workers": {"e1": 2}}
        record.update(overrides)
        return record

    def test_heartbeats_and_list(self):
        """A heartbeat inserts then updates the node's row; list_nodes by name, seen just now by the store's clock."""
        self.successResultOf(self.store.heartbeat(self.node(name="n2")))
        self.successResultOf(self.store.heartbeat(self.node()))
        self.successResultOf(self.store.heartbeat(self.node(workers={})))
        nodes = self.successResultOf(self.store.list_nodes())
        self.assertEqual([(n["name"], n["workers"]) for n in nodes], [("n1", {}), ("n2", {"e1": 2})])
        self.assertLess(nodes[0]["seconds_since_seen"], 60)
        self.assertRegex(nodes[0]["last_seen"], r"^\d{4}-\d\d-\d\dT")
        self.assertEqual(nodes[0]["admin_address"], "127.0.0.1:9090")
        self.assertTrue(self.successResultOf(self.store.remove_node("n2")))
        self.assertFalse(self.successResultOf(self.store.remove_node("n2")))


class ArtifactStoreMixin:
    def setUp(self):
        self.store = self.make()

    def test_put_get_has_delete(self):
        """A binary reads back byte for byte with its sha256, size, metadata and node; putting it again changes nothing."""
        import hashlib

        data = bytes(range(256)) * 10
        self.assertFalse(self.successResultOf(self.store.has_artifact("abc")))
        self.successResultOf(self.store.put_artifact("abc", data, {"compile_seconds": 1.5}, "n1"))
        self.successResultOf(self.store.put_artifact("abc", b"other", {}, "n2"))
        stored = self.successResultOf(self.store.get_artifact("abc"))
        self.assertEqual(
            (stored["data"], stored["sha256"], stored["size"], stored["metadata"], stored["node"]),
            (data, hashlib.sha256(data).hexdigest(), len(data), {"compile_seconds": 1.5}, "n1"),
        )
        self.assertTrue(self.successResultOf(self.store.has_artifact("abc")))
        self.successResultOf(self.store.delete_artifacts(["abc", "nope"]))
        self.assertIsNone(self.successResultOf(self.store.get_artifact("abc")))

    def test_claims(self):
        """The first claim wins; another node is told who holds it; the holder refreshes; a release frees it."""
        self.assertIsNone(self.successResultOf(self.store.claim_build("abc", "n1", 30)))
        self.assertEqual(self.successResultOf(self.store.claim_build("abc", "n2", 30)), "n1")
        self.assertIsNone(self.successResultOf(self.store.claim_build("abc", "n1", 30)))
        self.successResultOf(self.store.release_build("abc", "n2"))
        self.assertEqual(self.successResultOf(self.store.claim_build("abc", "n2", 30)), "n1")
        self.successResultOf(self.store.release_build("abc", "n1"))
        self.assertIsNone(self.successResultOf(self.store.claim_build("abc", "n2", 30)))

    def test_a_stale_claim_is_taken_over(self):
        """A claim older than stale_after (its node died) goes to the node asking."""
        self.assertIsNone(self.successResultOf(self.store.claim_build("abc", "n1", 30)))
        self.assertIsNone(self.successResultOf(self.store.claim_build("abc", "n2", -1)))
        self.assertEqual(self.successResultOf(self.store.claim_build("abc", "n1", 30)), "n2")


class PolicyConsumerStoreMixin:
    """Migration 8: a policy on domains, collections and endpoints; consumers and their key hashes."""

    def setUp(self):
        self.store = self.make()

    def test_policy_round_trips_on_each_level(self):
        """A policy written on a domain, a collection and an endpoint reads back decoded; none is {}."""
        cors = {"cors": {"allow_origins": ["https://a.example"]}}
        self.successResultOf(self.store.create_domain(domain()))
        self.assertEqual(self.successResultOf(self.store.get_domain("d1"))["policy"], {})
        self.successResultOf(self.store.update_domain("d1", {"policy": cors}))
        self.assertEqual(self.successResultOf(self.store.get_domain("d1"))["policy"], cors)
        c = self.successResultOf(self.store.create_collection(
            {"id": "c1", "name": "c", "domain_id": "d1", "base_path": "/c", "created_at": "t0", "updated_at": "t0",
             "policy": cors}
        ))
        self.assertEqual(c["policy"], cors)
        self.assertEqual(self.successResultOf(self.store.list_collections())[0]["policy"], cors)
        e = self.successResultOf(self.store.create_endpoint(endpoint()))
        self.assertEqual(e["policy"], {})
        limits = {"limits": {"timeout": 5}}
        self.successResultOf(self.store.update_endpoint("e1", {"policy": limits}))
        self.assertEqual(self.successResultOf(self.store.list_endpoints())[0]["policy"], limits)

    def test_consumers_with_keys_round_trip(self):
        """A consumer reads back with enabled as a boolean and its keys (id, hash, created_at) oldest first."""
        created = self.successResultOf(self.store.create_consumer(consumer()))
        self.assertEqual((created["name"], created["enabled"], created["keys"]), ("mobile", True, []))
        self.assertGreater(created["revision"], 0)
        self.successResultOf(self.store.add_consumer_key({"id": "ck1", "consumer_id": "u1", "key_hash": "h1", "created_at": "t1"}))
        self.successResultOf(self.store.add_consumer_key({"id": "ck2", "consumer_id": "u1", "key_hash": "h2", "created_at": "t2"}))
        got = self.successResultOf(self.store.get_consumer("u1"))
        self.assertEqual(
            got["keys"],
            [{"id": "ck1", "key_hash": "h1", "created_at": "t1"}, {"id": "ck2", "key_hash": "h2", "created_at": "t2"}],
        )
        self.assertEqual([c["keys"] for c in self.successResultOf(self.store.list_consumers())], [got["keys"]])
        self.assertIsNone(self.successResultOf(self.store.get_consumer("nope")))

    def test_consumer_names_are_unique_ignoring_case_and_key_hashes_unique(self):
        """A second consumer named the same in other case, or a key hash taken, is a Conflict; a key for no consumer is Missing."""
        self.successResultOf(self.store.create_consumer(consumer()))
        self.failureResultOf(self.store.create_consumer(consumer(id="u2", name="MOBILE")), Conflict)
        self.successResultOf(self.store.add_consumer_key({"id": "ck1", "consumer_id": "u1", "key_hash": "h1", "created_at": "t1"}))
        self.failureResultOf(
            self.store.add_consumer_key({"id": "ck2", "consumer_id": "u1", "key_hash": "h1", "created_at": "t1"}), Conflict
        )
        self.failureResultOf(
            self.store.add_consumer_key({"id": "ck3", "consumer_id": "zz", "key_hash": "h3", "created_at": "t1"}), Missing
        )

    def test_update_delete_and_the_change_log(self):
        """Updates (Stale at an old revision), key adds/deletes and deletes (keys go too) are each a consumer change."""
        start = self.successResultOf(self.store.changes_since(0))["revision"]
        created = self.successResultOf(self.store.create_consumer(consumer()))
        updated = self.successResultOf(self.store.update_consumer("u1", {"enabled": False}, revision=created["revision"]))
        self.assertFalse(updated["enabled"])
        self.assertEqual(
            self.failureResultOf(self.store.update_consumer("u1", {"name": "x"}, revision=created["revision"]), Stale).value.what,
            "consumer",
        )
        self.successResultOf(self.store.add_consumer_key({"id": "ck1", "consumer_id": "u1", "key_hash": "h1", "created_at": "t1"}))
        self.assertFalse(self.successResultOf(self.store.delete_consumer_key("u1", "nope")))
        self.assertTrue(self.successResultOf(self.store.delete_consumer_key("u1", "ck1")))
        self.successResultOf(self.store.add_consumer_key({"id": "ck2", "consumer_id": "u1", "key_hash": "h2", "created_at": "t1"}))
        self.assertTrue(self.successResultOf(self.store.delete_consumer("u1")))
        self.assertFalse(self.successResultOf(self.store.delete_consumer("u1")))
        # The key went with its consumer: its hash is free again.
        self.successResultOf(self.store.create_consumer(consumer(id="u3", name="other")))
        self.successResultOf(self.store.add_consumer_key({"id": "ck9", "consumer_id": "u3", "key_hash": "h2", "created_at": "t1"}))
        log = self.successResultOf(self.store.changes_since(start))["changes"]
        self.assertEqual({c["kind"] for c in log}, {"consumer"})
        self.assertEqual({c["record_id"] for c in log}, {"u1", "u3"})
        self.assertGreaterEqual(len([c for c in log if c["record_id"] == "u1"]), 6)


def consumer(**overrides):
    """A consumer record as the API writes it."""
    record = {"id": "u1", "name": "mobile", "enabled": True, "created_at": "t0", "updated_at": "t0"}
    record.update(overrides)
    return record


class StoreSQLiteTests(
    OnSQLite, EndpointStoreMixin, ServiceStoreMixin, DomainStoreMixin, RevisionMixin, KeyStoreMixin,
    NodeStoreMixin, ArtifactStoreMixin, PolicyConsumerStoreMixin, unittest.TestCase
):
    """The store's behaviours on SQLite."""


class StorePostgresIntegrationTests(
    OnPostgres, EndpointStoreMixin, ServiceStoreMixin, DomainStoreMixin, RevisionMixin, KeyStoreMixin,
    NodeStoreMixin, ArtifactStoreMixin, PolicyConsumerStoreMixin, unittest.TestCase
):
    """The same behaviours on PostgreSQL."""
