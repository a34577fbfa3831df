"""Tests for endpoints with several routes, through the admin API (``routes``, and its one-route form)."""

from edgegw_tx.admin.schema import MAX_ROUTES
from edgegw_tx.gateway.routes import Match, MethodNotAllowed
from tests.support.admin import AdminAPITestCase
from tests.support.fakes import FakePool
from tests.support.handlers import HELLO

CRUD = [
    {"method": "GET", "path": "/notes"},
    {"method": "POST", "path": "/notes"},
    {"method": "GET", "path": "/notes/{id}"},
    {"method": "DELETE", "path": "/notes/{id}"},
]


class RoutesAPITests(AdminAPITestCase):
    """``routes`` on create, read and update; its limits and conflicts."""

    def notes(self, **overrides):
        """The four-route notes endpoint, created."""
        body = {"name": "notes", "routes": CRUD, "code": HELLO}
        body.update(overrides)
        return self.created("/api/endpoints", body)

    def test_get_shows_routes_and_the_first_as_method_and_path(self):
        """A multi-route record answers every route in order, ``method``/``path`` being the first."""
        record = self.notes()
        self.assertEqual(record["routes"], CRUD)
        self.assertEqual((record["method"], record["path"], record["route"]), ("GET", "/notes", "GET */notes"))
        code, document = self.call("GET", "/api/endpoints/" + record["id"])
        self.assertEqual((code, document["data"]["routes"]), (200, CRUD))

    def test_one_route_form_is_a_list_of_one(self):
        """An endpoint created with method and path shows ``routes`` with that one route (normalised)."""
        record = self.created("/api/endpoints", {"name": "h", "method": "get", "path": "/h", "code": HELLO})
        self.assertEqual(record["routes"], [{"method": "GET", "path": "/h"}])

    def test_put_back_what_get_returned(self):
        """A multi-route record read with GET can be sent back with PUT unchanged (both forms agree)."""
        record = self.notes()
        code, document = self.call("PUT", "/api/endpoints/" + record["id"], record)
        self.assertEqual((code, document["data"]["routes"]), (200, CRUD), document)

    def test_both_forms_disagreeing_are_400(self):
        """``method`` or ``path`` beside ``routes`` that is not its first route is a 400 naming the field."""
        code, document = self.call(
            "POST", "/api/endpoints", {"name": "n", "routes": CRUD, "path": "/other", "code": HELLO}
        )
        self.assertEqual((code, document["field"]), (400, "path"))
        self.assertIn("first route", document["error"])
        code, document = self.call(
            "POST", "/api/endpoints", {"name": "n", "routes": CRUD, "method": "post", "code": HELLO}
        )
        self.assertEqual((code, document["field"]), (400, "method"))

    def test_bad_routes_are_400_naming_the_route(self):
        """None, too many, a bad path, an unknown field or the same route twice: 400 naming where."""
        cases = [
            ({"routes": []}, "routes"),
            ({"routes": [{"method": "GET", "path": f"/r{i}"} for i in range(MAX_ROUTES + 1)]}, "routes"),
            ({"routes": [CRUD[0], {"method": "GET", "path": "/x/{"}]}, "routes[1].path"),
            ({"routes": [{"method": "GET", "path": "/x", "extra": 1}]}, "routes[0].extra"),
            ({"routes": [{"method": "GET"}]}, "routes[0].path"),
            ({"routes": [CRUD[2], {"method": "GET", "path": "/notes/{other}"}]}, "routes[1]"),
            ({}, "routes"),
        ]
        for extra, field in cases:
            code, document = self.call("POST", "/api/endpoints", dict({"name": "n", "code": HELLO}, **extra))
            self.assertEqual((code, document.get("field")), (400, field), (extra, document))
            self.assertIn(field.split(".")[0].split("[")[0], document["error"])
        self.assertEqual(self.call("GET", "/api/endpoints")[1]["data"]["items"], [])

    def test_a_route_held_by_another_endpoint_is_409_naming_both(self):
        """Creating or updating onto any route of another endpoint is a 409 naming the route and its holder."""
        notes = self.notes()
        code, document = self.call(
            "POST",
            "/api/endpoints",
            {"name": "other", "routes": [{"method": "PUT", "path": "/notes/{id}"}, {"method": "DELETE", "path": "/notes/{n}"}]},
        )
        self.assertEqual(code, 409, document)
        self.assertIn("DELETE /notes/{n}", document["error"])
        self.assertIn("'notes'", document["error"])
        self.assertEqual(document["conflicts_with"], notes["id"])
        other = self.created("/api/endpoints", {"name": "other", "method": "PUT", "path": "/notes/{id}"})
        code, document = self.call(
            "PUT", "/api/endpoints/" + other["id"], {"routes": [{"method": "PUT", "path": "/notes/{id}"}, CRUD[1]]}
        )
        self.assertEqual(code, 409, document)
        self.assertIn("POST /notes", document["error"])
        self.assertEqual(self.call("GET", "/api/endpoints/" + other["id"])[1]["data"]["routes"], [
            {"method": "PUT", "path": "/notes/{id}"}
        ])

    def test_running_endpoint_serves_all_its_routes_from_one_pool(self):
        """Started, every route reaches the endpoint's one pool; a new set replaces the old at once."""
        record = self.notes()
        self.call("POST", "/api/endpoints/%s/compile" % record["id"])
        self.call("POST", "/api/endpoints/%s/start" % record["id"])
        self.assertEqual(len(FakePool.instances), 1)
        for method, path in (("GET", "/notes"), ("POST", "/notes"), ("GET", "/notes/1"), ("DELETE", "/notes/1")):
            found = self.routes.match("h", method, path)
            self.assertIsInstance(found, Match)
            self.assertIs(found.target, FakePool.instances[0])
        self.call("PUT", "/api/endpoints/" + record["id"], {"routes": CRUD[:2]})
        self.assertNotIsInstance(self.routes.match("h", "DELETE", "/notes/1"), Match)
        self.assertIsInstance(self.routes.match("h", "POST", "/notes"), Match)
        self.assertEqual(self.routes.match("h", "PUT", "/notes"), MethodNotAllowed(["GET", "HEAD", "POST"]))

    def test_one_route_form_update_changes_the_first_route(self):
        """An update with only ``path`` changes the first route and keeps the others."""
        record = self.notes()
        code, document = self.call("PUT", "/api/endpoints/" + record["id"], {"path": "/memos"})
        self.assertEqual(code, 200, document)
        self.assertEqual(document["data"]["routes"], [{"method": "GET", "path": "/memos"}] + CRUD[1:])


class RoutesInCollectionsTests(AdminAPITestCase):
    """A collection's base path and domain apply to every route of its endpoints, and move them together."""

    def test_base_path_change_moves_every_route(self):
        """A new base path moves all routes of a running endpoint at once; the old paths stop serving."""
        collection = self.created("/api/collections", {"name": "c", "base_path": "/v1"})
        record = self.created(
            "/api/endpoints", {"name": "notes", "routes": CRUD, "code": HELLO, "collection_id": collection["id"]}
        )
        self.assertEqual(record["route"], "GET */v1/notes")
        self.call("POST", "/api/endpoints/%s/compile" % record["id"])
        self.call("POST", "/api/endpoints/%s/start" % record["id"])
        self.assertIsInstance(self.routes.match("h", "DELETE", "/v1/notes/3"), Match)
        code, document = self.call("PUT", "/api/collections/" + collection["id"], {"base_path": "/v2"})
        self.assertEqual(code, 200, document)
        for method, path in (("GET", "/notes"), ("POST", "/notes"), ("GET", "/notes/3"), ("DELETE", "/notes/3")):
            self.assertIsInstance(self.routes.match("h", method, "/v2" + path), Match)
            self.assertNotIsInstance(self.routes.match("h", method, "/v1" + path), Match)

    def test_a_move_onto_another_endpoints_route_is_409_naming_it(self):
        """A base path that would put any route onto another endpoint's is refused, naming that route and endpoint."""
        collection = self.created("/api/collections", {"name": "c", "base_path": "/v1"})
        self.created("/api/endpoints", {"name": "notes", "routes": CRUD, "code": HELLO, "collection_id": collection["id"]})
        other = self.created("/api/endpoints", {"name": "old-delete", "method": "DELETE", "path": "/v2/notes/{n}"})
        code, document = self.call("PUT", "/api/collections/" + collection["id"], {"base_path": "/v2"})
        self.assertEqual(code, 409, document)
        self.assertIn("DELETE */v2/notes/{id}", document["error"])
        self.assertIn("'old-delete'", document["error"])
        self.assertEqual(document["conflicts_with"], other["id"])
