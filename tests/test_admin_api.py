"""
The management API end to end through a real Klein app and a real SQLite store,
with the build and process planes replaced by fakes (their own tests cover them).
"""


from twisted.internet.defer import fail

from edgegw_tx.build.cargo import CompileFailed
from edgegw_tx.gateway.routes import Match, NoRoute
from tests.support.fakes import FakePool
from tests.support.handlers import HELLO
from tests.support.admin import AdminAPITestCase

class AdminAPITests(AdminAPITestCase):

    # health and auth

    def test_health_needs_no_key(self):
        """GET /api/health answers without a key and names the version."""
        code, document = self.call("GET", "/api/health", key=None)
        self.assertEqual(code, 200)
        self.assertEqual(document["data"]["status"], "healthy")
        self.assertTrue(document["data"]["version"])

    def test_missing_key_is_401(self):
        """Any other call without a key answers 401 with the envelope."""
        code, document = self.call("GET", "/api/endpoints", key=None)
        self.assertEqual(code, 401)
        self.assertEqual(document["ok"], False)
        self.assertIn("Authorization: Bearer", document["error"])

    def test_wrong_key_is_401(self):
        """A key that is not known answers 401."""
        code, document = self.call("GET", "/api/endpoints", key="egw_not-a-key")
        self.assertEqual((code, document["error"]), (401, "invalid API key"))

    def test_read_key_cannot_write(self):
        """A read-scoped key may GET but not POST."""
        self.assertEqual(self.call("GET", "/api/endpoints", key="read")[0], 200)
        code, document = self.call(
            "POST", "/api/endpoints", {"name": "x", "path": "/x", "method": "GET"}, key="read"
        )
        self.assertEqual(code, 403)
        self.assertIn("may only read", document["error"])

    def test_unknown_route_is_404_json(self):
        """An unknown /api path answers a JSON 404, not an HTML page."""
        code, document = self.call("GET", "/api/nothing-here")
        self.assertEqual(code, 404)
        self.assertIn("/api/nothing-here", document["error"])

    def test_non_utf8_path_is_400_json(self):
        """A path that is not UTF-8 once decoded answers a JSON 400, not Klein's HTML page."""
        code, document = self.call("GET", "/api/endpoints/%ff")
        self.assertEqual(code, 400)
        self.assertEqual(document, {"ok": False, "error": "the request path is not UTF-8"})

    def test_wrong_method_is_405_json(self):
        """A known path with a wrong method answers 405 JSON."""
        code, document = self.call("PATCH", "/api/endpoints")
        self.assertEqual(code, 405)
        self.assertIn("PATCH", document["error"])

    # create and validation

    def test_create_answers_created_record(self):
        """POST /api/endpoints stores the endpoint with status created and defaults."""
        data = self.create_hello()
        self.assertEqual(data["status"], "created")
        self.assertEqual(data["domain"], "*")
        self.assertEqual(
            data["settings"],
            {
                "min_instances": 1,
                "max_instances": 4,
                "max_queue": 1000,
                "timeout": 30.0,
                "max_requests": 0,
                "idle_timeout": 60.0,
                "env": {},
                "pipeline": 16,
                "concurrency": 64,
                "limits": {
                    "memory_mb": 1024,
                    "cpu_seconds": 3600,
                    "open_files": 256,
                    "processes": 1024,
                    "file_size_mb": 64,
                },
                "network": "none",
                "dependencies": {},
            },
        )
        code, document = self.call("GET", "/api/endpoints/" + data["id"])
        self.assertEqual((code, document["data"]["name"]), (200, "hello"))

    def test_invalid_json_is_400(self):
        """A body that is not JSON answers 400 saying so."""
        code, document = self.call("POST", "/api/endpoints", raw=b"{not json")
        self.assertEqual(code, 400)
        self.assertIn("not valid JSON", document["error"])

    def test_missing_field_is_400_naming_it(self):
        """A create without a path names the missing field."""
        code, document = self.call("POST", "/api/endpoints", {"name": "x", "method": "GET"})
        self.assertEqual((code, document["error"]), (400, "missing field 'path'"))

    def test_wrongly_typed_field_is_400_naming_it(self):
        """A name that is not a string names the field."""
        code, document = self.call(
            "POST", "/api/endpoints", {"name": 5, "path": "/x", "method": "GET"}
        )
        self.assertEqual(code, 400)
        self.assertIn("'name'", document["error"])

    def test_unknown_field_is_400(self):
        """A typo in a field name is reported, not silently dropped."""
        code, document = self.call(
            "POST", "/api/endpoints", {"name": "x", "path": "/x", "method": "GET", "metod": "GET"}
        )
        self.assertEqual((code, document["error"]), (400, "unknown field 'metod'"))

    def test_malformed_paths_are_400(self):
        """Unbalanced braces, empty segments and a missing leading slash are refused."""
        for path in ("/users/{", "//x", "x/y"):
            code, document = self.call(
                "POST", "/api/endpoints", {"name": "x", "path": path, "method": "GET"}
            )
            self.assertEqual(code, 400, path)
            self.assertIn("'path'", document["error"])

    def test_unknown_method_is_400(self):
        """A method outside the HTTP set is refused naming the field."""
        code, document = self.call(
            "POST", "/api/endpoints", {"name": "x", "path": "/x", "method": "FETCH"}
        )
        self.assertEqual(code, 400)
        self.assertIn("'method'", document["error"])

    def test_bad_settings_are_400(self):
        """Instances, timeout and env are checked."""
        for settings, field in (
            ({"instances": 0}, "settings.instances"),
            ({"timeout": -1}, "settings.timeout"),
            ({"env": {"A B": "x"}}, "settings.env"),
            ({"pipeline": 0}, "settings.pipeline"),
        ):
            code, document = self.call(
                "POST",
                "/api/endpoints",
                {"name": "x", "path": "/x", "method": "GET", "settings": settings},
            )
            self.assertEqual(code, 400)
            self.assertIn(field, document["error"])

    def test_bad_dependencies_are_400(self):
        """settings.dependencies: each malformed entry answers 400 naming settings.dependencies.<name>."""
        for dependencies, field in (
            ("chrono", "settings.dependencies"),
            (["chrono"], "settings.dependencies"),
            ({"9lives": "1"}, "settings.dependencies.9lives"),
            ({"a/b": "1"}, "settings.dependencies.a/b"),
            ({"chrono": ""}, "settings.dependencies.chrono"),
            ({"chrono": "0.4\"\npath = \"/etc"}, "settings.dependencies.chrono"),
            ({"chrono": 4}, "settings.dependencies.chrono"),
            ({"chrono": {"features": ["serde"]}}, "settings.dependencies.chrono.version"),
            ({"chrono": {"version": "0.4", "path": "/etc"}}, "settings.dependencies.chrono.path"),
            ({"chrono": {"version": "0.4", "git": "https://x/y"}}, "settings.dependencies.chrono.git"),
            ({"chrono": {"version": "0.4", "registry": "r"}}, "settings.dependencies.chrono.registry"),
            ({"chrono": {"version": "0.4", "features": ["a b"]}}, "settings.dependencies.chrono.features"),
            ({"chrono": {"version": "0.4", "default-features": 0}}, "settings.dependencies.chrono.default-features"),
            ({"rust-edge-gateway-sdk": "1"}, "settings.dependencies.rust-edge-gateway-sdk"),
        ):
            code, document = self.call(
                "POST",
                "/api/endpoints",
                {"name": "x", "path": "/x", "method": "GET", "settings": {"dependencies": dependencies}},
            )
            self.assertEqual(code, 400, dependencies)
            self.assertIn("field '%s'" % field, document["error"])
        self.assertEqual(self.call("GET", "/api/endpoints")[1]["data"]["total"], 0)

    def test_bad_top_level_dependencies_are_400(self):
        """dependencies given at the top level, like instances, is checked too and named as such."""
        endpoint = self.create_hello()
        code, document = self.call(
            "PUT", "/api/endpoints/" + endpoint["id"], {"dependencies": {"rust_edge_gateway_sdk": "1"}}
        )
        self.assertEqual(code, 400)
        self.assertIn("field 'dependencies.rust_edge_gateway_sdk'", document["error"])

    def test_dependencies_are_stored_and_built(self):
        """Valid dependencies are stored normalised, can be PUT back, and reach the builder."""
        chrono = {"version": "=0.4.23", "features": ["serde", "clock", "serde"]}
        endpoint = self.create_hello(settings={"dependencies": {"anyhow": "1", "chrono": chrono}})
        stored = {"anyhow": "1", "chrono": {"version": "=0.4.23", "features": ["clock", "serde"]}}
        self.assertEqual(endpoint["settings"]["dependencies"], stored)
        code, document = self.call("PUT", "/api/endpoints/" + endpoint["id"], endpoint)
        self.assertEqual(code, 200, document)
        code, document = self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        self.assertEqual(code, 200, document)
        self.assertEqual(self.builder.builds[-1], (endpoint["id"], HELLO, stored))

    def test_dependency_change_drops_artifact(self):
        """Changing settings.dependencies of a compiled endpoint drops its artifact, like a code change."""
        endpoint = self.create_hello()
        self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        code, document = self.call(
            "PUT", "/api/endpoints/" + endpoint["id"], {"settings": {"dependencies": {"anyhow": "1"}}}
        )
        self.assertEqual(code, 200, document)
        self.assertEqual((document["data"]["status"], document["data"]["artifact"]), ("created", None))

    def test_unresolvable_dependency_is_422_with_cargos_message(self):
        """A crate cargo cannot find answers 422: cargo's error line as summary, its whole message as diagnostic."""
        endpoint = self.create_hello(settings={"dependencies": {"anyhow": "1"}})
        message = (
            "warning: an unrelated cargo warning\n"
            "error: no matching package named `anyhow` found\n"
            "location searched: directory source `/usr/share/cargo/registry` "
            "(which is replacing registry `crates-io`)"
        )
        diagnostic = {"level": "error", "message": message, "line": None, "column": None, "rendered": message}
        self.builder.pending = fail(CompileFailed([diagnostic]))
        code, document = self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        self.assertEqual(code, 422)
        self.assertEqual(document["error"], "compilation failed: error: no matching package named `anyhow` found")
        self.assertEqual(document["diagnostics"], [diagnostic])
        record = self.call("GET", "/api/endpoints/" + endpoint["id"])[1]["data"]
        self.assertEqual(record["status"], "error")
        self.assertEqual(record["last_error"], "error: no matching package named `anyhow` found")

    def test_same_route_twice_is_409(self):
        """The same (domain, method, path) twice conflicts, also with other param names."""
        self.create_hello(path="/users/{id}")
        code, document = self.call(
            "POST", "/api/endpoints", {"name": "two", "path": "/users/{uid}", "method": "GET"}
        )
        self.assertEqual(code, 409)
        self.assertIn("already serves GET /users/{uid}", document["error"])

    def test_unknown_id_is_404(self):
        """Every per-endpoint call on an unknown id answers 404."""
        for method, suffix in (
            ("GET", ""),
            ("PUT", ""),
            ("DELETE", ""),
            ("POST", "/compile"),
            ("POST", "/start"),
            ("POST", "/stop"),
            ("POST", "/restart"),
            ("GET", "/logs"),
        ):
            code, document = self.call(method, "/api/endpoints/nope" + suffix, {"name": "x"})
            self.assertEqual(code, 404, (method, suffix))
            self.assertIn("no endpoint with id 'nope'", document["error"])

    # compile, start, stop

    def test_compile_then_start(self):
        """Compile answers compiled with the build; start answers running with pids."""
        endpoint = self.create_hello()
        code, document = self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        self.assertEqual(code, 200)
        self.assertEqual(document["data"]["status"], "compiled")
        self.assertEqual(document["data"]["build"]["dependencies"], ["serde", "serde_json"])
        code, document = self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        self.assertEqual(code, 200)
        self.assertEqual(document["data"]["status"], "running")
        self.assertEqual(document["data"]["pids"], [4242])
        self.assertEqual(FakePool.instances[0].binary, "/artifacts/d1/handler")
        match = self.routes.match("example.com", "GET", "/hello")
        self.assertIs(match.target, FakePool.instances[0])

    def test_compile_error_is_422_with_diagnostics(self):
        """Broken code answers 422 with the diagnostics; the endpoint records the error."""
        endpoint = self.create_hello(code="")
        code, document = self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        self.assertEqual(code, 422)
        self.assertEqual(document["diagnostics"][0]["line"], 1)
        self.assertIn("main", document["error"])
        status = self.call("GET", "/api/endpoints/" + endpoint["id"])[1]["data"]["status"]
        self.assertEqual(status, "error")

    def test_compile_without_cargo_is_503(self):
        """When cargo cannot be found, compile answers 503 with the builder's advice."""
        from edgegw_tx.build import CargoNotFound

        endpoint = self.create_hello()
        self.builder.pending = fail(CargoNotFound("cargo not found: install Rust or pass --cargo"))
        code, document = self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        self.assertEqual(code, 503)
        self.assertIn("--cargo", document["error"])

    def test_start_before_compile_is_409(self):
        """Starting an endpoint that was never compiled says to compile first."""
        endpoint = self.create_hello()
        code, document = self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        self.assertEqual(code, 409)
        self.assertIn("compile", document["error"])

    def test_start_disabled_is_409(self):
        """A disabled endpoint does not start."""
        endpoint = self.create_hello(enabled=False)
        self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        code, document = self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        self.assertEqual(code, 409)
        self.assertIn("disabled", document["error"])

    def test_workers_failing_to_start_is_502(self):
        """Workers that die before ready answer 502 naming the logs; status becomes error."""
        endpoint = self.create_hello()
        self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])

        original = FakePool.start

        def broken(pool):
            return fail(RuntimeError("worker exited with status 101 before ready"))

        FakePool.start = broken
        self.addCleanup(setattr, FakePool, "start", original)
        code, document = self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        self.assertEqual(code, 502)
        self.assertIn("status 101", document["error"])
        self.assertIn("/logs", document["error"])
        self.assertIsInstance(self.routes.match("h", "GET", "/hello"), NoRoute)

    def test_stop_stops_workers_and_route(self):
        """Stop drains the pool, removes the route and answers stopped."""
        endpoint = self.create_hello()
        self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        code, document = self.call("POST", "/api/endpoints/%s/stop" % endpoint["id"])
        self.assertEqual((code, document["data"]["status"]), (200, "stopped"))
        self.assertTrue(FakePool.instances[0].stopped)
        self.assertIsInstance(self.routes.match("h", "GET", "/hello"), NoRoute)

    def test_restart_swaps_pools(self):
        """Restart starts new workers before stopping the old ones."""
        endpoint = self.create_hello()
        self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        code, document = self.call("POST", "/api/endpoints/%s/restart" % endpoint["id"])
        self.assertEqual((code, document["data"]["status"]), (200, "running"))
        old, new = FakePool.instances
        self.assertTrue(old.stopped)
        self.assertIs(self.routes.match("h", "GET", "/hello").target, new)

    def test_code_update_makes_status_created(self):
        """Changing the code of a compiled endpoint drops its artifact."""
        endpoint = self.create_hello()
        self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        code, document = self.call(
            "PUT", "/api/endpoints/" + endpoint["id"], {"code": HELLO + "\n// v2\n"}
        )
        self.assertEqual(code, 200)
        self.assertEqual((document["data"]["status"], document["data"]["artifact"]), ("created", None))

    def test_put_back_what_get_returned(self):
        """A record read with GET can be sent back with PUT unchanged."""
        endpoint = self.create_hello()
        code, document = self.call("PUT", "/api/endpoints/" + endpoint["id"], endpoint)
        self.assertEqual(code, 200, document)

    def test_update_route_of_running_endpoint_moves_route(self):
        """Changing the path of a running endpoint serves the new path only."""
        endpoint = self.create_hello()
        self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        self.call("PUT", "/api/endpoints/" + endpoint["id"], {"path": "/hi"})
        self.assertIsInstance(self.routes.match("h", "GET", "/hi"), Match)
        self.assertIsInstance(self.routes.match("h", "GET", "/hello"), NoRoute)

    def test_delete_stops_and_forgets(self):
        """Delete stops the workers and the id is gone afterwards."""
        endpoint = self.create_hello()
        self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        code, document = self.call("DELETE", "/api/endpoints/" + endpoint["id"])
        self.assertEqual((code, document["data"]["deleted"]), (200, True))
        self.assertTrue(FakePool.instances[0].stopped)
        self.assertEqual(self.call("GET", "/api/endpoints/" + endpoint["id"])[0], 404)

    def test_logs_with_since(self):
        """Logs list worker lines with timestamps; since filters older ones out."""
        endpoint = self.create_hello()
        self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        code, document = self.call("GET", "/api/endpoints/%s/logs" % endpoint["id"])
        self.assertEqual(code, 200)
        [line] = document["data"]["lines"]
        self.assertEqual(line["line"], "worker up")
        self.assertIn("T", line["timestamp"])
        later = "/api/endpoints/%s/logs?since=%s" % (endpoint["id"], line["time"])
        self.assertEqual(self.call("GET", later)[1]["data"]["lines"], [])
        code, document = self.call("GET", "/api/endpoints/%s/logs?since=yesterday" % endpoint["id"])
        self.assertEqual(code, 400)

    def test_list_filters_and_pages(self):
        """The list filters by enabled and pages with page/limit."""
        self.create_hello()
        self.create_hello(name="b", path="/b", enabled=False)
        data = self.call("GET", "/api/endpoints?enabled=false")[1]["data"]
        self.assertEqual([e["name"] for e in data["items"]], ["b"])
        data = self.call("GET", "/api/endpoints?limit=1&page=2")[1]["data"]
        self.assertEqual((data["total"], data["pages"], len(data["items"])), (2, 2, 1))
        self.assertEqual(self.call("GET", "/api/endpoints?limit=0")[0], 400)


    def test_env_name_with_trailing_newline_is_400(self):
        """An env variable name ending in a newline is refused (a regex `$` would let it through)."""
        code, document = self.call(
            "POST", "/api/endpoints",
            {"name": "x", "path": "/x", "method": "GET", "settings": {"env": {"A\n": "1"}}},
        )
        self.assertEqual(code, 400)
        self.assertIn("settings.env", document["error"])


class ConditionalWriteTests(AdminAPITestCase):
    """
    ``ETag`` and ``If-Match`` (issue 16): the API's side, with the managers'
    writes replaced where the test needs a revision or a ``Stale`` of its own;
    ``EndToEndRevisionTests`` runs them over the real store.
    """

    def revised_get(self, manager, revision):
        """Make ``manager.get`` answer its record with ``revision``."""
        get = manager.get
        self.patch(manager, "get", lambda *a, **k: get(*a, **k).addCallback(lambda r: dict(r, revision=revision)))

    def recording(self, manager, name, answer=None):
        """Replace ``manager.<name>`` by a fake that records its ``revision`` keyword; the list of them."""
        seen = []
        original = getattr(manager, name)

        def fake(*args, revision=None, **kwargs):
            seen.append(revision)
            if answer is not None:
                return answer(*args, **kwargs)
            return original(*args, **kwargs)

        self.patch(manager, name, fake)
        return seen

    def test_get_answers_the_revision_as_etag(self):
        """GET of one endpoint answers ``ETag: "<revision>"``, and the record shows ``revision``."""
        endpoint = self.create_hello()
        self.revised_get(self.manager, 7)
        code, headers, document = self.exchange("GET", "/api/endpoints/" + endpoint["id"])
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("etag"), ['"7"'])
        self.assertEqual(document["data"]["revision"], 7)

    def test_no_revision_no_etag(self):
        """A record without a revision (a store before them) answers no ETag rather than a wrong one."""
        endpoint = self.create_hello()
        self.patch(self.manager, "get", lambda endpoint_id: self.store.get_endpoint(endpoint_id).addCallback(
            lambda r: {k: v for k, v in r.items() if k != "revision"}))
        code, headers, _ = self.exchange("GET", "/api/endpoints/" + endpoint["id"])
        self.assertEqual((code, headers.getRawHeaders("etag")), (200, None))

    def test_if_match_forms_pass_their_revision(self):
        """``"3"``, ``W/"3"`` and a bare ``3`` ask for revision 3; ``*`` and no If-Match ask for none (the last write wins)."""
        endpoint = self.create_hello()
        seen = self.recording(self.manager, "update")
        path = "/api/endpoints/" + endpoint["id"]
        for value in ('"3"', 'W/"3"', "3", "*", None):
            headers = {"If-Match": value} if value is not None else {}
            code, _, document = self.exchange("PUT", path, {"description": "x"}, headers=headers)
            self.assertEqual(code, 200, document)
        self.assertEqual(seen, [3, 3, 3, None, None])

    def test_malformed_if_match_is_400_naming_the_header(self):
        """An If-Match that is not one quoted revision is a 400 naming the header; nothing is written."""
        endpoint = self.create_hello()
        seen = self.recording(self.manager, "update")
        for value in ("three", '"x"', '"3", "4"', '"-1"', '"03"', '3"'):
            code, _, document = self.exchange(
                "PUT", "/api/endpoints/" + endpoint["id"], {"description": "x"}, headers={"If-Match": value}
            )
            self.assertEqual(code, 400, value)
            self.assertIn("If-Match", document["error"])
            self.assertEqual(document["field"], "If-Match")
        self.assertEqual(seen, [])

    def test_stale_is_412_with_the_revision_now(self):
        """A write the store finds ``Stale`` answers 412 saying who moved and to which revision."""
        from edgegw_tx.store.errors import Stale

        endpoint = self.create_hello()
        self.recording(self.manager, "update", answer=lambda endpoint_id, body: fail(Stale("endpoint", endpoint_id, 9)))
        code, _, document = self.exchange(
            "PUT", "/api/endpoints/" + endpoint["id"], {"description": "x"}, headers={"If-Match": '"8"'}
        )
        self.assertEqual(code, 412)
        self.assertEqual(
            document["error"],
            f"endpoint '{endpoint['id']}' was changed by someone else (now at revision 9); GET it again and retry",
        )
        self.assertEqual(document["revision"], 9)

    def test_every_conditional_write_passes_its_revision(self):
        """PUT and DELETE of endpoints, domains, collections and services, and DELETE of keys, pass If-Match on."""
        domain = self.created("/api/domains", {"host": "api.example.com"})
        collection = self.created("/api/collections", {"name": "c"})
        service = self.created("/api/services", {"name": "db", "service_type": "sqlite"})
        endpoint = self.create_hello()
        _, key = self.successResultOf(self.keys.create("spare", "read"))
        key_id = next(k["id"] for k in self.keys.list() if k["name"] == "spare")
        services = self.runtime.service_manager
        calls = [
            (self.manager, "update", "PUT", "/api/endpoints/" + endpoint["id"], {"description": "x"}),
            (self.domains, "update", "PUT", "/api/domains/" + domain["id"], {"description": "x"}),
            (self.collections, "update", "PUT", "/api/collections/" + collection["id"], {"description": "x"}),
            (services, "update", "PUT", "/api/services/" + service["id"], {"name": "db2"}),
            (self.manager, "delete", "DELETE", "/api/endpoints/" + endpoint["id"], None),
            (self.collections, "delete", "DELETE", "/api/collections/" + collection["id"], None),
            (self.domains, "delete", "DELETE", "/api/domains/" + domain["id"], None),
            (services, "delete", "DELETE", "/api/services/" + service["id"], None),
            (self.keys, "revoke", "DELETE", "/api/keys/" + key_id, None),
        ]
        for revision, (manager, name, method, path, body) in enumerate(calls, start=1):
            seen = self.recording(manager, name)
            code, _, document = self.exchange(method, path, body, headers={"If-Match": f'"{revision}"'})
            self.assertEqual((code, seen), (200, [revision]), (method, path, document))

    def test_writes_answer_the_new_etag(self):
        """A create, a PUT and a lifecycle call answer the ETag of the record as they left it."""
        self.patch(self.manager, "view", lambda record, view=self.manager.view: dict(view(record), revision=5))
        endpoint = self.create_hello()
        for method, path, body in [
            ("PUT", "/api/endpoints/" + endpoint["id"], {"description": "x"}),
            ("POST", "/api/endpoints/" + endpoint["id"] + "/compile", None),
            ("POST", "/api/endpoints/" + endpoint["id"] + "/stop", None),
        ]:
            code, headers, _ = self.exchange(method, path, body)
            self.assertEqual((code, headers.getRawHeaders("etag")), (200, ['"5"']), (method, path))


class StoreUnavailableTests(AdminAPITestCase):
    """The store unreachable (a PostgreSQL store's database down): 503 naming it, never a 500."""

    def test_unreachable_store_is_503_with_retry_after(self):
        """Any call whose store call fails with ``StoreUnavailable`` answers 503, its message and Retry-After: 5."""
        from edgegw_tx.store.errors import StoreUnavailable

        down = StoreUnavailable("postgresql://edgegw@db:5432/edgegw", "connection refused")
        self.patch(self.manager, "list", lambda: fail(down))
        self.patch(self.manager, "create", lambda body: fail(down))
        for method, path, body in [
            ("GET", "/api/endpoints", None),
            ("POST", "/api/endpoints", {"name": "x", "path": "/x", "method": "GET"}),
        ]:
            code, headers, document = self.exchange(method, path, body)
            self.assertEqual(code, 503, (method, path))
            self.assertEqual(headers.getRawHeaders("retry-after"), ["5"])
            self.assertEqual(document["error"], str(down))
            self.assertIn("postgresql://edgegw@db:5432/edgegw", document["error"])
            self.assertEqual(document["retry_after"], 5)


class FakeNodes:
    """A ``NodeDirectory`` (cluster/nodes.py) of fixed nodes; ``down`` makes ``list`` fail as a lost store would."""

    name = "n1"

    def __init__(self, nodes):
        self.nodes = nodes
        self.down = None

    def list(self):
        from twisted.internet.defer import succeed

        return fail(self.down) if self.down is not None else succeed([dict(n) for n in self.nodes])


class NodesTests(AdminAPITestCase):
    """``GET /api/nodes`` and the endpoints' workers per node."""

    def setUp(self):
        super().setUp()
        from treq.testing import StubTreq

        from edgegw_tx.admin.api import AdminAPI

        self.directory = FakeNodes(
            [
                {"name": "n1", "address": "127.0.0.1:8080", "state": "up", "workers": 0, "endpoints": {}, "self": True},
                {"name": "n2", "address": "127.0.0.1:8081", "state": "up", "workers": 3,
                 "endpoints": {"e-2": 3}, "self": False},
                {"name": "n3", "address": "127.0.0.1:8082", "state": "down", "workers": 1,
                 "endpoints": {"e-2": 1}, "self": False},
            ]
        )
        self.api = AdminAPI(
            self.manager, self.keys, self.reactor, services=self.runtime.service_manager,
            domains=self.domains, collections=self.collections, nodes=self.directory,
        )
        self.client = StubTreq(self.api.resource())

    def test_nodes_are_listed_a_page_at_a_time(self):
        """GET /api/nodes (a read key will do) answers the directory's nodes as a page."""
        code, document = self.call("GET", "/api/nodes", key="read")
        self.assertEqual(code, 200)
        self.assertEqual([n["name"] for n in document["data"]["items"]], ["n1", "n2", "n3"])
        self.assertEqual(document["data"]["total"], 3)
        self.assertEqual(document["data"]["items"][1]["endpoints"], {"e-2": 3})

    def test_a_gateway_of_one_node_lists_itself(self):
        """The runtime's own directory on a SQLite store: this node alone, up, marked ``self``."""
        self.build()
        code, document = self.call("GET", "/api/nodes")
        self.assertEqual(code, 200, document)
        [node] = document["data"]["items"]
        self.assertEqual((node["state"], node["self"], node["name"]), ("up", True, self.api.nodes.name))
        self.assertEqual(self.create_hello()["nodes"], {node["name"]: 0})

    def test_without_a_directory_nodes_are_404(self):
        """A gateway built without a node directory answers 404 for /api/nodes, and endpoints show no nodes."""
        self.build()
        self.api.nodes = None
        code, document = self.call("GET", "/api/nodes")
        self.assertEqual(code, 404)
        self.assertIn("nodes", document["error"])
        self.assertNotIn("nodes", self.create_hello())

    def test_endpoint_shows_workers_per_node_that_is_up(self):
        """An endpoint's ``nodes``: every node up from its heartbeat, this one from its live pool."""
        endpoint = self.create_hello()
        self.directory.nodes[1]["endpoints"] = {endpoint["id"]: 3}
        self.directory.nodes[2]["endpoints"] = {endpoint["id"]: 1}
        self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        code, document = self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        self.assertEqual(code, 200, document)
        live = len(document["data"]["pids"])
        self.assertGreater(live, 0)
        self.assertEqual(document["data"]["nodes"], {"n1": live, "n2": 3})
        code, document = self.call("GET", "/api/endpoints")
        self.assertEqual(document["data"]["items"][0]["nodes"], {"n1": live, "n2": 3})

    def test_store_down_nodes_503_endpoints_still_shown(self):
        """With the store unreachable /api/nodes is a 503, while an endpoint still shows with this node's count."""
        from edgegw_tx.store.errors import StoreUnavailable

        endpoint = self.create_hello()
        self.directory.down = StoreUnavailable("postgresql://edgegw@db:5432/edgegw", "connection refused")
        code, document = self.call("GET", "/api/nodes")
        self.assertEqual(code, 503)
        code, document = self.call("GET", "/api/endpoints/" + endpoint["id"])
        self.assertEqual((code, document["data"]["nodes"]), (200, {"n1": 0}))


class EndToEndRevisionTests(AdminAPITestCase):
    """``If-Match`` through the real managers and store: the second of two writers from one revision gets 412."""

    def etag(self, path):
        """The ETag GET answers for ``path``."""
        code, headers, document = self.exchange("GET", path)
        self.assertEqual(code, 200, document)
        [etag] = headers.getRawHeaders("etag")
        self.assertEqual(etag, '"%d"' % document["data"]["revision"])
        return etag

    def assert_second_writer_loses(self, path, body):
        """Two PUTs with the same If-Match: the first is a 200 with a new ETag, the second a 412; DELETE too."""
        first = self.etag(path)
        code, headers, document = self.exchange("PUT", path, body, headers={"If-Match": first})
        self.assertEqual(code, 200, document)
        [now] = headers.getRawHeaders("etag")
        self.assertNotEqual(now, first)
        self.assertEqual(self.etag(path), now)
        code, _, document = self.exchange("PUT", path, body, headers={"If-Match": first})
        self.assertEqual(code, 412, document)
        self.assertIn("was changed by someone else (now at revision %s)" % now.strip('"'), document["error"])
        code, _, document = self.exchange("DELETE", path, headers={"If-Match": first})
        self.assertEqual(code, 412, document)
        code, _, document = self.exchange("DELETE", path, headers={"If-Match": now})
        self.assertEqual(code, 200, document)

    def test_endpoint(self):
        """An endpoint changed since the If-Match's revision is neither changed nor deleted (412)."""
        endpoint = self.create_hello()
        self.assert_second_writer_loses("/api/endpoints/" + endpoint["id"], {"description": "mine"})

    def test_domain_collection_service(self):
        """Domains, collections and services: the same rule."""
        domain = self.created("/api/domains", {"host": "api.example.com"})
        collection = self.created("/api/collections", {"name": "c"})
        service = self.created("/api/services", {"name": "db", "service_type": "sqlite"})
        self.assert_second_writer_loses("/api/collections/" + collection["id"], {"description": "mine"})
        self.assert_second_writer_loses("/api/domains/" + domain["id"], {"description": "mine"})
        self.assert_second_writer_loses("/api/services/" + service["id"], {"name": "db2"})

    def test_without_if_match_the_last_write_wins(self):
        """No If-Match: both writers succeed, as before revisions."""
        endpoint = self.create_hello()
        for description in ("a", "b"):
            code, document = self.call("PUT", "/api/endpoints/" + endpoint["id"], {"description": description})
            self.assertEqual(code, 200, document)
        self.assertEqual(self.call("GET", "/api/endpoints/" + endpoint["id"])[1]["data"]["description"], "b")


class PostgresRevisionIntegrationTests(EndToEndRevisionTests):
    """
    The same over a real PostgreSQL store (a database of the test's own), and
    what the API answers when the store's connections are cut.
    """

    def setUp(self):
        from edgegw_tx.admin.auth import KeyRing
        from tests.support.fakes import SynchronousReactor
        from tests.support.pg import postgres_store

        self.reactor = SynchronousReactor()
        self.reactor.advance(1_000_000)
        self.store = postgres_store(self, reactor=self.reactor)
        self.keys = KeyRing(self.store, reactor=self.reactor)
        self.successResultOf(self.keys.load())
        _, self.admin_key = self.successResultOf(self.keys.create("test", "admin"))
        _, self.read_key = self.successResultOf(self.keys.create("viewer", "read"))
        self.build()

    def test_cut_connections_503_then_recovery(self):
        """
        With the store's connections cut, a write answers 503 naming the store
        (no password) with Retry-After, a read still answers (it retries once
        on a fresh connection), and the write succeeds when sent again.
        """
        from tests.support.pg import terminate_connections

        self.create_hello()
        self.assertGreater(terminate_connections(self.store.where), 0)
        code, headers, document = self.exchange("POST", "/api/keys", {"name": "ci", "scope": "read"})
        self.assertEqual(code, 503, document)
        self.assertIn(self.store.where, document["error"])
        self.assertEqual(headers.getRawHeaders("retry-after"), ["5"])
        code, document = self.call("GET", "/api/endpoints")
        self.assertEqual((code, document["data"]["total"]), (200, 1))
        code, document = self.call("POST", "/api/keys", {"name": "ci", "scope": "read"})
        self.assertEqual(code, 201, document)
        # adbapi logs the rollback it could not make on the cut connection.
        self.flushLoggedErrors()
