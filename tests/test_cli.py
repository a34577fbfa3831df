"""
The ``edgegw`` command-line client, driven through ``edgegw_tx.cli.commands.run``.

Endpoint commands (deploy, ls, logs) run against the real management API (a
real Klein app over a real SQLite store, with the fake builder and worker pool
of tests/test_admin_api.py). Keys and imports, and the error cases, run against
``FakeAPI``, a small resource that answers the documented shapes and records
what it was sent. Everything goes through ``StubTreq``: no sockets, and time
only moves when a test advances the reactor's clock.
"""

import io
import json
import os
import sys

from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.trial import unittest
from twisted.web.resource import Resource

from edgegw_tx.cli import commands as cli
from edgegw_tx.admin.auth import KeyRing
from tests.support.fakes import SynchronousReactor, make_store
from tests.support.handlers import HELLO
from tests.support.fakes import FakePool
from tests.support.fakes import fake_runtime
from tests.support import harness

GOODBYE = HELLO.replace("Hello, World!", "Goodbye!")
BROKEN = "fn handle() {}\n"


class FakeAPI(Resource):
    """
    Answers ``answers[(method, path)] = (status, document)``; anything else is
    a 404 envelope. Every request is kept in ``requests`` as a dict of method,
    path, args, headers and body.
    """

    isLeaf = True

    def __init__(self, answers=None):
        super().__init__()
        self.answers = dict(answers or {})
        self.requests = []

    def render(self, request):
        method = request.method.decode()
        path = request.path.decode()
        self.requests.append(
            {
                "method": method,
                "path": path,
                "args": {k.decode(): v[-1].decode() for k, v in request.args.items()},
                "authorization": (request.getHeader(b"authorization") or b"").decode(),
                "content_type": (request.getHeader(b"content-type") or b"").decode(),
                "body": request.content.read(),
            }
        )
        status, document = self.answers.get(
            (method, path), (404, {"ok": False, "error": f"no such API route: {path}"})
        )
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        if isinstance(document, bytes):
            return document
        return json.dumps(document).encode()


class RefusingHTTP:
    """An HTTP client whose every connection is refused, as treq reports it."""

    def __init__(self):
        self.urls = []

    def request(self, method, url, **kwargs):
        self.urls.append(url)
        return fail(ConnectionRefusedError("Connection refused"))


class CLITestCase(unittest.TestCase):
    def setUp(self):
        self.reactor = SynchronousReactor()
        self.reactor.advance(1_000_000)
        self.tmp = self.mktemp()
        os.makedirs(self.tmp)

    def write(self, name, content):
        path = os.path.join(self.tmp, name)
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(path, mode) as f:
            f.write(content)
        return path

    def start(self, *argv, http=None, environ=None):
        """Start a command line; (its Deferred, stdout, stderr)."""
        http = http if http is not None else self.http
        environ = environ if environ is not None else {"EDGEGW_KEY": self.key}
        out, err = io.StringIO(), io.StringIO()
        d = cli.run(
            list(argv), reactor=self.reactor, http=http, environ=environ, stdout=out, stderr=err
        )
        self.flush(http)
        return d, out, err

    def flush(self, http=None):
        http = http if http is not None else self.http
        if isinstance(http, StubTreq):
            http.flush()

    def cli(self, *argv, http=None, environ=None):
        """Run a command line to its end; (exit code, stdout, stderr)."""
        d, out, err = self.start(*argv, http=http, environ=environ)
        code = self.successResultOf(d)
        return code, out.getvalue(), err.getvalue()

    def shutdown(self):
        """What Ctrl-C does under ``react``: the reactor's before-shutdown triggers run."""
        for f, args, kwargs in self.reactor.triggers.get("before", {}).get("shutdown", []):
            f(*args, **kwargs)


class FailingPool(FakePool):
    """Workers that die before they are ready, having said why."""

    def start(self):
        self.log("stderr", "thread 'main' panicked at src/main.rs:3:5")
        return fail(RuntimeError("worker exited with status 101"))


class GatewayTestCase(CLITestCase):
    """Against the real management API with fake builds and workers."""

    pool_factory = FakePool

    def setUp(self):
        super().setUp()
        store = make_store(self, self.reactor)
        # The key ring's own clock, so its last-used timers are not the CLI's delayed calls.
        self.keys = KeyRing(store, reactor=SynchronousReactor())
        self.successResultOf(self.keys.load())
        _, self.key = self.successResultOf(self.keys.create("test", "admin"))
        runtime = fake_runtime(self, store=store, keys=self.keys, reactor=self.reactor, pool_factory=self.pool_factory)
        self.runtime, self.builder, self.manager = runtime, runtime.builder, runtime.manager
        self.logbook = runtime.logbook
        # The gateway knows the domain the tests deploy to.
        self.successResultOf(runtime.domains.create({"host": "api.example.com"}))
        self.api = runtime.api
        self.http = StubTreq(runtime.api.resource())

    def endpoints(self):
        return sorted(self.successResultOf(self.manager.list()), key=lambda r: r["name"])


class DeployTests(GatewayTestCase):
    def test_deploy_creates_compiles_and_starts(self):
        """A first deploy creates the endpoint named after the file, compiles it, starts it and says so in one line."""
        path = self.write("hello.rs", HELLO)
        code, out, err = self.cli("deploy", path, "--path", "/hello", "--method", "GET")
        self.assertEqual(
            (code, out, err), (0, "deployed hello: GET /hello (running, pids 4242)\n", "")
        )
        [record] = self.endpoints()
        self.assertEqual(
            (record["name"], record["code"], record["status"]), ("hello", HELLO, "running")
        )
        self.assertEqual(len(self.builder.builds), 1)
        self.assertEqual([p.started for p in FakePool.instances], [True])

    def test_deploy_again_updates_and_restarts(self):
        """A second deploy of the same name updates the code in place and restarts the running workers on it."""
        path = self.write("hello.rs", HELLO)
        self.assertEqual(self.cli("deploy", path, "--path", "/hello", "--method", "GET")[0], 0)
        self.write("hello.rs", GOODBYE)
        code, out, err = self.cli("deploy", path, "--path", "/hello", "--method", "GET")
        self.assertEqual(
            (code, out, err), (0, "deployed hello: GET /hello (running, pids 4242)\n", "")
        )
        [record] = self.endpoints()
        self.assertEqual(record["code"], GOODBYE)
        self.assertEqual([b[1] for b in self.builder.builds], [HELLO, GOODBYE])
        old, new = FakePool.instances
        self.assertTrue(old.stopped, "the old workers were drained")
        self.assertTrue(new.started and not new.stopped)
        self.assertEqual(record["deployed"], "d2", "the new binary serves")

    def test_redeploy_keeps_route_when_not_given(self):
        """An update needs no --path or --method: the endpoint keeps its route, and a stopped one is started."""
        path = self.write("hello.rs", HELLO)
        self.cli("deploy", path, "--path", "/hi", "--method", "POST")
        record = self.endpoints()[0]
        self.successResultOf(self.manager.stop(record["id"]))
        code, out, _ = self.cli("deploy", path)
        self.assertEqual((code, out), (0, "deployed hello: POST /hi (running, pids 4242)\n"))

    def test_deploy_options_reach_the_record(self):
        """--name, --domain, --instances and --timeout are stored on the endpoint."""
        path = self.write("hello.rs", HELLO)
        code, out, _ = self.cli(
            "deploy",
            path,
            "--path",
            "/g",
            "--method",
            "get",
            "--name",
            "greet",
            "--domain",
            "api.example.com",
            "--instances",
            "3",
            "--timeout",
            "2.5",
        )
        self.assertEqual(
            (code, out), (0, "deployed greet: GET /g on api.example.com (running, pids 4242)\n")
        )
        [record] = self.endpoints()
        self.assertEqual(record["name"], "greet")
        self.assertEqual(record["domain"], "api.example.com")
        settings = record["settings"]
        # --instances N is the API's shorthand for min_instances = max_instances = N.
        self.assertEqual((settings["min_instances"], settings["max_instances"], settings["timeout"]), (3, 3, 2.5))

    def test_deploy_with_routes_makes_one_endpoint_serving_them_all(self):
        """Repeated --route gives one endpoint its whole set of routes; ls lists the others under the first."""
        path = self.write("notes.rs", HELLO)
        code, out, err = self.cli(
            "deploy", path, "--route", "GET /notes", "--route", "post /notes", "--route", "GET /notes/{id}"
        )
        self.assertEqual(
            (code, out, err),
            (0, "deployed notes: GET /notes, POST /notes, GET /notes/{id} (running, pids 4242)\n", ""),
        )
        [record] = self.endpoints()
        self.assertEqual(
            [(r["method"], r["path"]) for r in record["routes"]],
            [("GET", "/notes"), ("POST", "/notes"), ("GET", "/notes/{id}")],
        )
        self.assertEqual(len(FakePool.instances), 1)
        code, out, _ = self.cli("ls")
        self.assertEqual(
            out,
            f"NAME   ID{' ' * 32}METHOD  PATH         DOMAIN  STATUS   VERSION  PIDS\n"
            f"notes  {record['id']}  GET     /notes       *       running  d1       4242\n"
            f"{' ' * 41}POST    /notes\n"
            f"{' ' * 41}GET     /notes/{{id}}\n",
        )

    def test_route_and_path_together_are_a_usage_error(self):
        """--route with --path (or --method), or a --route that is no method and path, is exit 2 before anything is sent."""
        path = self.write("notes.rs", HELLO)
        code, out, err = self.cli("deploy", path, "--route", "GET /notes", "--path", "/x")
        self.assertEqual((code, out, err), (2, "", "error: give --route, or --path and --method, not both\n"))
        code, _, err = self.cli("deploy", path, "--route", "/notes")
        self.assertEqual(code, 2)
        self.assertIn('must be a method and a path, e.g. "GET /notes/{id}"', err)
        self.assertEqual(self.endpoints(), [])

    def test_deploy_of_a_new_name_needs_a_path(self):
        """Creating needs a route: without --path the deploy stops with exit 2 before creating anything."""
        path = self.write("hello.rs", HELLO)
        code, out, err = self.cli("deploy", path)
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(
            err, "error: there is no endpoint named 'hello' yet: pass --path (or --route) to create it\n"
        )
        self.assertEqual(self.endpoints(), [])

    def test_compile_failure_prints_rendered_diagnostics(self):
        """A 422 from compile prints each diagnostic's rendered text, cargo's summary and how to remove the created endpoint to stderr, exit 1, nothing started."""
        path = self.write("broken.rs", BROKEN)
        code, out, err = self.cli("deploy", path, "--path", "/b")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(
            err,
            "error[E0601]: `main` function not found\n\n"
            "error: could not compile `broken` due to 1 previous error\n"
            f"note: the endpoint 'broken' was created (status error): fix {path} and deploy it "
            "again, or `edgegw rm broken` removes it\n",
        )
        self.assertEqual(FakePool.instances, [])
        self.assertEqual(self.endpoints()[0]["status"], "error")

    def test_missing_file_is_a_usage_error(self):
        """A .rs file that cannot be read is reported with exit 2, and nothing is sent."""
        code, out, err = self.cli("deploy", os.path.join(self.tmp, "nope.rs"), "--path", "/x")
        self.assertEqual(code, 2)
        self.assertIn("cannot read", err)
        self.assertIn("nope.rs: No such file or directory", err)
        self.assertEqual(self.endpoints(), [])

    def test_ctrl_c_during_a_deploy_exits_130(self):
        """Ctrl-C while the compile is still running ends the command with 'interrupted' and exit 130."""
        self.builder.pending = Deferred()
        path = self.write("hello.rs", HELLO)
        d, out, err = self.start("deploy", path, "--path", "/hello")
        self.assertNoResult(d)
        self.shutdown()
        self.assertEqual(self.successResultOf(d), 130)
        self.assertEqual(err.getvalue(), "interrupted\n")


class FailingStartTests(GatewayTestCase):
    pool_factory = FailingPool

    def test_workers_that_die_point_to_the_logs(self):
        """When the workers die on start the gateway's message is shown with a hint to run edgegw logs, exit 1."""
        code, out, err = self.cli("deploy", self.write("hello.rs", HELLO), "--path", "/hello")
        self.assertEqual((code, out), (1, ""))
        first, hint = err.splitlines()
        self.assertTrue(
            first.startswith("error: the workers of endpoint 'hello' failed to start"), first
        )
        self.assertEqual(hint, "hint: `edgegw logs hello` shows what the workers wrote")
        self.assertIn("panicked", self.cli("logs", "hello")[1])


class DiagnosticsTests(CLITestCase):
    def setUp(self):
        super().setUp()
        self.key = "egw_k"
        record = {"id": "e1", "name": "calc", "method": "GET", "path": "/calc", "domain": "*"}
        self.api = FakeAPI(
            {
                ("GET", "/api/endpoints"): (200, {"ok": True, "data": {"items": [], "pages": 1}}),
                ("POST", "/api/endpoints"): (201, {"ok": True, "data": record}),
                ("POST", "/api/endpoints/e1/compile"): (
                    422,
                    {
                        "ok": False,
                        "error": "compilation failed: mismatched types (line 4)",
                        "diagnostics": [
                            {
                                "level": "warning",
                                "message": "unused variable: `x`",
                                "line": 4,
                                "column": 9,
                                "rendered": "warning: unused variable: `x`\n --> src/main.rs:4:9\n",
                            },
                            {
                                "level": "error",
                                "message": "mismatched types",
                                "line": 4,
                                "column": 18,
                                "rendered": "error[E0308]: mismatched types\n --> src/main.rs:4:18\n",
                            },
                            {"level": "error", "message": "no rendering", "line": 9, "column": 2},
                        ],
                    },
                ),
            }
        )
        self.http = StubTreq(self.api)

    def test_diagnostics_name_the_users_file(self):
        """Rendered diagnostics point at the deployed file rather than the gateway's src/main.rs; warnings are shown too."""
        path = self.write("calc.rs", "fn main() {}\n")
        code, out, err = self.cli("deploy", path, "--path", "/calc")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(
            err,
            f"warning: unused variable: `x`\n --> {path}:4:9\n\n"
            f"error[E0308]: mismatched types\n --> {path}:4:18\n\n"
            "error: no rendering\n --> line 9, column 2\n\n"
            "error: could not compile `calc` due to 2 previous errors\n"
            f"note: the endpoint 'calc' was created (status error): fix {path} and deploy it "
            "again, or `edgegw rm calc` removes it\n",
        )
        self.assertEqual(
            [(r["method"], r["path"]) for r in self.api.requests],
            [
                ("GET", "/api/endpoints"),
                ("POST", "/api/endpoints"),
                ("POST", "/api/endpoints/e1/compile"),
            ],
        )


class ListTests(GatewayTestCase):
    def test_ls_prints_a_table(self):
        """ls shows name, id, method, path, domain, status, version and pids in aligned columns, sorted by name."""
        self.cli("deploy", self.write("hello.rs", HELLO), "--path", "/hello")
        self.successResultOf(
            self.manager.create(
                {
                    "name": "add-user",
                    "path": "/users",
                    "method": "POST",
                    "domain": "api.example.com",
                }
            )
        )
        code, out, err = self.cli("ls")
        self.assertEqual((code, err), (0, ""))
        ids = {e["name"]: e["id"] for e in self.endpoints()}
        self.assertEqual(
            out,
            f"NAME      ID{' ' * 32}METHOD  PATH    DOMAIN           STATUS   VERSION  PIDS\n"
            f"add-user  {ids['add-user']}  POST    /users  api.example.com  created  -        -\n"
            f"hello     {ids['hello']}  GET     /hello  *                running  d1       4242\n",
        )

    def test_ls_reads_every_page(self):
        """ls follows the list's pages until the last one."""
        self.patch(cli, "PAGE_SIZE", 2)
        for i in range(5):
            self.successResultOf(
                self.manager.create({"name": f"e{i}", "path": f"/e{i}", "method": "GET"})
            )
        code, out, _ = self.cli("ls")
        self.assertEqual(code, 0)
        self.assertEqual(
            [line.split()[0] for line in out.splitlines()[1:]], ["e0", "e1", "e2", "e3", "e4"]
        )

    def test_ls_with_no_endpoints(self):
        """An empty gateway says so instead of printing a bare header."""
        self.assertEqual(self.cli("ls"), (0, "no endpoints\n", ""))


class _Nodes:
    """A node directory (cluster/nodes.py) of fixed nodes."""

    name = "n1"

    def __init__(self, nodes):
        self.nodes = nodes

    def list(self):
        return succeed([dict(n) for n in self.nodes])


class NodesTests(GatewayTestCase):
    def test_nodes_prints_a_table(self):
        """nodes shows each node's name (this one marked), address, version, state, workers and last heartbeat."""
        self.api.nodes = _Nodes(
            [
                {"name": "n1", "address": "10.0.0.1:8080", "version": "1.0", "state": "up", "workers": 3,
                 "last_seen": "2026-12-07T19:00:00+00:00", "endpoints": {}, "self": True},
                {"name": "n2", "address": "10.0.0.2:8080", "version": "1.0", "state": "down", "workers": 0,
                 "last_seen": "2026-12-07T18:59:00+00:00", "endpoints": {}, "self": False},
            ]
        )
        code, out, err = self.cli("nodes")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(
            out,
            "NAME            ADDRESS        VERSION  STATE  WORKERS  LAST SEEN\n"
            "n1 (this node)  10.0.0.1:8080  1.0      up     3        2026-12-07T19:00:00+00:00\n"
            "n2              10.0.0.2:8080  1.0      down   0        2026-12-07T18:59:00+00:00\n",
        )

    def test_nodes_of_a_gateway_without_them(self):
        """A gateway without a node directory: the API's 404 message, exit status not 0."""
        self.api.nodes = None
        code, out, err = self.cli("nodes")
        self.assertNotEqual(code, 0)
        self.assertIn("nodes are not available in this gateway", err)


class LogsTests(GatewayTestCase):
    def deploy_hello(self):
        self.cli("deploy", self.write("hello.rs", HELLO), "--path", "/hello")
        return self.endpoints()[0]["id"]

    def test_logs_prints_timestamp_stream_line(self):
        """logs NAME prints each line as 'timestamp stream line'."""
        endpoint_id = self.deploy_hello()
        self.reactor.advance(5)
        self.logbook.writer(endpoint_id)("stderr", "GET /hello took 1 ms")
        code, out, err = self.cli("logs", "hello")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(
            out,
            "1970-01-12T13:46:40+00:00 stderr worker up\n"
            "1970-01-12T13:46:45+00:00 stderr GET /hello took 1 ms\n",
        )

    def test_logs_since_seconds_ago(self):
        """--since N shows only the lines of the last N seconds."""
        endpoint_id = self.deploy_hello()
        self.reactor.advance(100)
        self.logbook.writer(endpoint_id)("stderr", "recent")
        code, out, _ = self.cli("logs", "hello", "--since", "30")
        self.assertEqual((code, out), (0, "1970-01-12T13:48:20+00:00 stderr recent\n"))

    def test_follow_polls_every_second_until_ctrl_c(self):
        """--follow asks again each second for lines after the last one seen, and Ctrl-C ends it with exit 0."""
        endpoint_id = self.deploy_hello()
        log = self.logbook.writer(endpoint_id)
        d, out, err = self.start("logs", "hello", "--follow")
        self.assertEqual(out.getvalue(), "1970-01-12T13:46:40+00:00 stderr worker up\n")
        for n in range(3):
            self.reactor.advance(0.5)
            log("stdout", f"line {n}")
            self.reactor.advance(0.5)
            self.flush()
            self.assertNoResult(d)
        self.assertEqual(
            out.getvalue().splitlines()[1:],
            [
                "1970-01-12T13:46:40.500000+00:00 stdout line 0",
                "1970-01-12T13:46:41.500000+00:00 stdout line 1",
                "1970-01-12T13:46:42.500000+00:00 stdout line 2",
            ],
        )
        self.shutdown()
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(err.getvalue(), "")
        self.assertEqual(self.reactor.getDelayedCalls(), [], "no poll left scheduled")

    def test_follow_without_new_lines_prints_nothing_more(self):
        """A poll that finds no new line prints nothing and does not repeat old lines."""
        self.deploy_hello()
        d, out, _ = self.start("logs", "hello", "-f")
        for _ in range(3):
            self.reactor.advance(1)
            self.flush()
        self.assertEqual(out.getvalue().count("worker up"), 1)
        self.shutdown()
        self.assertEqual(self.successResultOf(d), 0)

    def test_logs_of_an_unknown_endpoint(self):
        """An unknown name is an error naming it, exit 1."""
        self.assertEqual(
            self.cli("logs", "nope"),
            (1, "", "error: no endpoint named 'nope'; `edgegw ls` lists them\n"),
        )


IMPORT_ANSWER = {
    "ok": True,
    "data": {
        "created": [
            {"id": "e1", "name": "listPets", "method": "GET", "path": "/pets", "status": "created"}
        ],
        "updated": [],
        "skipped": [{"name": "getPet", "reason": "no handler file"}],
        "collection": {"id": "c1", "name": "Petstore"},
    },
}


class ImportTests(CLITestCase):
    def setUp(self):
        super().setUp()
        self.key = "egw_test"
        self.api = FakeAPI(
            {
                ("POST", "/api/import/openapi"): (200, IMPORT_ANSWER),
                ("POST", "/api/import/bundle"): (200, IMPORT_ANSWER),
            }
        )
        self.http = StubTreq(self.api)

    def test_zip_goes_to_bundle_as_raw_body(self):
        """A .zip is posted unchanged to /api/import/bundle with its flags in the query."""
        zipped = b"PK\x03\x04 not really a zip"
        path = self.write("pets.zip", zipped)
        code, out, err = self.cli(
            "import",
            path,
            "--domain",
            "pets.example.com",
            "--create-collection",
            "--compile",
            "--start",
        )
        self.assertEqual((code, err), (0, ""))
        [request] = self.api.requests
        self.assertEqual((request["method"], request["path"]), ("POST", "/api/import/bundle"))
        self.assertEqual(request["body"], zipped)
        self.assertEqual(request["content_type"], "application/zip")
        self.assertEqual(
            request["args"],
            {
                "domain": "pets.example.com",
                "create_collection": "true",
                "compile": "true",
                "start": "true",
            },
        )

    def test_spec_goes_to_openapi_as_text(self):
        """Any other file is read as text and sent as {spec, domain, create_collection} to /api/import/openapi."""
        spec = "openapi: 3.0.0\ninfo: {title: Petstore, version: '1'}\npaths: {}\n"
        path = self.write("petstore.yaml", spec)
        code, _, _ = self.cli("import", path, "--domain", "pets.example.com", "--create-collection")
        self.assertEqual(code, 0)
        [request] = self.api.requests
        self.assertEqual((request["method"], request["path"]), ("POST", "/api/import/openapi"))
        self.assertEqual(
            json.loads(request["body"]),
            {"spec": spec, "domain": "pets.example.com", "create_collection": True},
        )
        self.assertEqual(request["args"], {})

    def test_summary_is_printed_readably(self):
        """The answer's lists become headed sections with one line per item."""
        code, out, _ = self.cli("import", self.write("petstore.json", "{}"))
        self.assertEqual(code, 0)
        self.assertEqual(
            out,
            "created (1):\n"
            "  listPets: GET /pets (created)\n"
            "updated: none\n"
            "skipped (1):\n"
            "  getPet (reason: no handler file)\n"
            "collection: Petstore\n",
        )

    def test_compile_flag_with_a_spec_is_refused(self):
        """--compile and --start only make sense for bundles: with a spec they are a usage error, nothing sent."""
        code, _, err = self.cli(
            "import", self.write("petstore.yaml", "openapi: 3.0.0\n"), "--compile"
        )
        self.assertEqual(code, 2)
        self.assertIn("--compile and --start apply to bundles (.zip) only", err)
        self.assertEqual(self.api.requests, [])

    def test_an_import_listing_failures_exits_1(self):
        """An answer whose 'errors' list is not empty prints it and exits 1."""
        self.api.answers[("POST", "/api/import/bundle")] = (
            200,
            {
                "ok": True,
                "data": {"created": [], "errors": [{"name": "getPet", "error": "compile failed"}]},
            },
        )
        code, out, _ = self.cli("import", self.write("b.ZIP", b"PK"), "--compile")
        self.assertEqual(code, 1)
        self.assertIn("errors (1):\n  getPet (error: compile failed)\n", out)

    def test_a_refused_import_is_an_error(self):
        """A 400 from the import prints its message and exits 1."""
        self.api.answers[("POST", "/api/import/openapi")] = (
            400,
            {"ok": False, "error": "the spec is neither JSON nor YAML"},
        )
        code, out, err = self.cli("import", self.write("x.txt", "%%%"))
        self.assertEqual((code, out, err), (1, "", "error: the spec is neither JSON nor YAML\n"))


KEY_RECORD = {
    "id": "k1",
    "name": "ci",
    "scope": "read",
    "created_at": "2025-01-01T00:00:00+00:00",
    "last_used_at": None,
}


class KeysTests(CLITestCase):
    def setUp(self):
        super().setUp()
        self.key = "egw_admin"
        self.api = FakeAPI(
            {
                ("POST", "/api/keys"): (
                    201,
                    {"ok": True, "data": dict(KEY_RECORD, key="egw_s3cret")},
                ),
                ("GET", "/api/keys"): (
                    200,
                    {
                        "ok": True,
                        "data": [
                            {
                                "id": "k0",
                                "name": "admin",
                                "scope": "admin",
                                "current": True,
                                "created_at": "2024-12-31T00:00:00+00:00",
                                "last_used_at": "2025-01-02T00:00:00+00:00",
                            },
                            KEY_RECORD,
                        ],
                    },
                ),
                ("DELETE", "/api/keys/k1"): (
                    200,
                    {"ok": True, "data": {"id": "k1", "deleted": True}},
                ),
                ("DELETE", "/api/keys/k0"): (
                    409,
                    {"ok": False, "error": "k0 is the last admin key"},
                ),
            }
        )
        self.http = StubTreq(self.api)

    def test_create_prints_the_key_once_with_a_warning(self):
        """keys create posts {name, scope}; the plaintext alone goes to stdout, the warning to stderr."""
        code, out, err = self.cli("keys", "create", "ci", "--scope", "read")
        self.assertEqual((code, out), (0, "egw_s3cret\n"))
        self.assertIn("created key 'ci' (id k1, scope read)", err)
        self.assertIn("only time the key is shown", err)
        self.assertEqual(json.loads(self.api.requests[0]["body"]), {"name": "ci", "scope": "read"})

    def test_create_defaults_to_read_scope(self):
        """Without --scope a key is created with the least power, read."""
        self.cli("keys", "create", "ci")
        self.assertEqual(json.loads(self.api.requests[0]["body"])["scope"], "read")

    def test_ls_prints_a_table_without_values(self):
        """keys ls lists id, name, scope, creation and last use; an unused key says never, the caller's own is marked."""
        code, out, _ = self.cli("keys", "ls")
        self.assertEqual(code, 0)
        self.assertEqual(
            out.splitlines(),
            [
                "ID  NAME              SCOPE  CREATED                    LAST USED",
                "k0  admin (this key)  admin  2024-12-31T00:00:00+00:00  2025-01-02T00:00:00+00:00",
                "k1  ci                read   2025-01-01T00:00:00+00:00  never",
            ],
        )

    def test_ls_of_a_paged_answer(self):
        """A paged list ({items, pages}) is read to its last page."""
        self.api.answers[("GET", "/api/keys")] = (
            200,
            {
                "ok": True,
                "data": {"items": [KEY_RECORD], "total": 1, "page": 1, "limit": 100, "pages": 1},
            },
        )
        code, out, _ = self.cli("keys", "ls")
        self.assertEqual((code, len(out.splitlines())), (0, 2))

    def test_revoke_deletes_by_id(self):
        """keys revoke ID sends DELETE /api/keys/ID and confirms."""
        self.assertEqual(self.cli("keys", "revoke", "k1"), (0, "revoked key k1\n", ""))
        self.assertEqual(self.api.requests[0]["method"], "DELETE")

    def test_revoke_refused(self):
        """A refusal (the last admin key) is printed as 'error: <message>' with exit 1."""
        self.assertEqual(
            self.cli("keys", "revoke", "k0"), (1, "", "error: k0 is the last admin key\n")
        )


class ConfigTests(CLITestCase):
    def setUp(self):
        super().setUp()
        self.key = "unused"
        self.api = FakeAPI(
            {("GET", "/api/endpoints"): (200, {"ok": True, "data": {"items": [], "pages": 1}})}
        )
        self.http = StubTreq(self.api)
        self.data_dir = os.path.join(self.tmp, "var")
        os.makedirs(self.data_dir)
        self.write("var/admin.key", "egw_from_file\n")

    def sent_key(self):
        return self.api.requests[-1]["authorization"]

    def test_flag_beats_environment_and_file(self):
        """--key wins over EDGEGW_KEY and admin.key."""
        env = {"EDGEGW_KEY": "egw_from_env", "EDGEGW_DATA_DIR": self.data_dir}
        self.assertEqual(self.cli("ls", "--key", "egw_from_flag", environ=env)[0], 0)
        self.assertEqual(self.sent_key(), "Bearer egw_from_flag")

    def test_environment_beats_file(self):
        """EDGEGW_KEY wins over admin.key."""
        self.cli("ls", environ={"EDGEGW_KEY": "egw_from_env", "EDGEGW_DATA_DIR": self.data_dir})
        self.assertEqual(self.sent_key(), "Bearer egw_from_env")

    def test_key_file_in_data_dir(self):
        """Without flag or variable the key is read from <data-dir>/admin.key, the dir from --data-dir or EDGEGW_DATA_DIR."""
        self.cli("--data-dir", self.data_dir, "ls", environ={})
        self.assertEqual(self.sent_key(), "Bearer egw_from_file")
        self.cli("ls", environ={"EDGEGW_DATA_DIR": self.data_dir})
        self.assertEqual(self.sent_key(), "Bearer egw_from_file")

    def test_missing_key_is_exit_2(self):
        """No key anywhere: a message saying where to put one, exit 2, no request."""
        empty = os.path.join(self.tmp, "empty")
        code, out, err = self.cli("ls", "--data-dir", empty, environ={})
        self.assertEqual((code, out), (2, ""))
        self.assertIn("error: no API key: pass --key, set EDGEGW_KEY", err)
        self.assertIn(os.path.join(empty, "admin.key") + " does not exist", err)
        self.assertEqual(self.api.requests, [])

    def test_url_from_flag_and_environment(self):
        """--url beats EDGEGW_URL, which beats the default 127.0.0.1:9081."""
        refusing = RefusingHTTP()
        self.cli("ls", http=refusing, environ={"EDGEGW_KEY": "k"})
        self.cli("ls", http=refusing, environ={"EDGEGW_KEY": "k", "EDGEGW_URL": "http://env:1/"})
        self.cli(
            "--url",
            "http://flag:2",
            "ls",
            http=refusing,
            environ={"EDGEGW_KEY": "k", "EDGEGW_URL": "http://env:1"},
        )
        self.assertEqual(
            [u.split("?")[0] for u in refusing.urls],
            [
                "http://127.0.0.1:9081/api/endpoints",
                "http://env:1/api/endpoints",
                "http://flag:2/api/endpoints",
            ],
        )

    def test_options_after_the_command(self):
        """The connection options may also follow the command, as in 'edgegw ls --key K'."""
        self.cli("ls", "--key", "egw_after", environ={})
        self.assertEqual(self.sent_key(), "Bearer egw_after")


class ErrorTests(CLITestCase):
    def setUp(self):
        super().setUp()
        self.key = "egw_k"
        self.api = FakeAPI()
        self.http = StubTreq(self.api)

    def test_not_ok_answer_prints_error_and_exits_1(self):
        """Any {"ok": false} answer prints 'error: <message>' on stderr, exit 1."""
        self.api.answers[("GET", "/api/endpoints")] = (
            401,
            {"ok": False, "error": "invalid API key"},
        )
        self.assertEqual(self.cli("ls"), (1, "", "error: invalid API key\n"))

    def test_unreachable_gateway_exits_2(self):
        """A refused connection says which URL could not be reached, exit 2, no traceback."""
        code, out, err = self.cli("ls", http=RefusingHTTP())
        self.assertEqual((code, out), (2, ""))
        self.assertTrue(
            err.startswith("error: cannot reach the gateway at http://127.0.0.1:9081: "), err
        )
        self.assertIn("Connection refused", err)
        self.assertEqual(err.count("\n"), 1)

    def test_answer_that_is_not_the_gateways_json(self):
        """Something else listening on the URL (HTML, no envelope) is reported, exit 1."""
        self.api.answers[("GET", "/api/endpoints")] = (200, b"<html>hello</html>")
        code, _, err = self.cli("ls")
        self.assertEqual(code, 1)
        self.assertIn(
            "is not the gateway's JSON; is http://127.0.0.1:9081 an edgegw management API?", err
        )

    def test_bad_arguments_print_usage_and_exit_2(self):
        """Unknown commands, missing arguments and bad values are argparse usage errors, exit 2."""
        for argv in (
            ["frobnicate"],
            ["deploy"],
            ["deploy", "x.rs", "--instances", "zero"],
            ["keys"],
            [],
        ):
            code, out, err = self.cli(*argv)
            self.assertEqual((code, out), (2, ""), argv)
            self.assertIn("usage: edgegw", err)
        self.assertEqual(self.api.requests, [])

    def test_help_exits_0(self):
        """--help prints the usage to stdout and exits 0."""
        code, out, _ = self.cli("--help")
        self.assertEqual(code, 0)
        self.assertIn("deploy", out)

    def test_bad_url_is_a_usage_error(self):
        """A --url without http:// or https:// is refused before anything is sent."""
        code, _, err = self.cli("--url", "127.0.0.1:9081", "ls")
        self.assertEqual(code, 2)
        self.assertIn("--url must start with http:// or https://", err)

    def test_unexpected_failure_is_one_line(self):
        """A bug in the client prints one 'error: unexpected ...' line, not a traceback, exit 1."""

        class Exploding:
            def request(self, method, url, **kwargs):
                return fail(ZeroDivisionError("oops"))

        code, _, err = self.cli("ls", http=Exploding())
        self.assertEqual(code, 1)
        self.assertEqual(
            err, "error: unexpected ZeroDivisionError: oops (EDGEGW_DEBUG=1 shows where)\n"
        )

    def test_debug_shows_the_traceback(self):
        """With EDGEGW_DEBUG set, an unexpected failure also prints its traceback, for bug reports."""

        class Exploding:
            def request(self, method, url, **kwargs):
                return fail(ZeroDivisionError("oops"))

        code, _, err = self.cli(
            "ls", http=Exploding(), environ={"EDGEGW_KEY": "k", "EDGEGW_DEBUG": "1"}
        )
        self.assertEqual(code, 1)
        self.assertIn("Traceback", err)
        self.assertTrue(
            err.endswith("error: unexpected ZeroDivisionError: oops (EDGEGW_DEBUG=1 shows where)\n")
        )


class EntryPointTests(unittest.TestCase):
    def test_ctrl_c_outside_the_reactor_exits_130(self):
        """A KeyboardInterrupt the reactor did not catch (Ctrl-C during start-up) ends with 'interrupted', exit 130."""
        import edgegw_tx.cli

        def interrupted(argv):
            raise KeyboardInterrupt()

        stderr = io.StringIO()
        self.patch(cli, "main", interrupted)
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as raised:
            edgegw_tx.cli.main([])
        self.assertEqual((raised.exception.code, stderr.getvalue()), (130, "interrupted\n"))


# --- the commands that manage what is deployed (cli/manage.py) -----------------


class ManageTestCase(GatewayTestCase):
    """Against the real management API: helpers to deploy and find endpoints."""

    def deploy(self, name="hello", code=HELLO, path=None):
        """Deploy ``code`` as ``name`` with the CLI; the endpoint's record."""
        result = self.cli("deploy", self.write(f"{name}.rs", code), "--path", path or f"/{name}")
        self.assertEqual(result[0], 0, result)
        return self.record(name)

    def record(self, name):
        return next(e for e in self.endpoints() if e["name"] == name)


class RemoveTests(ManageTestCase):
    def test_rm_by_name_deletes_the_endpoint(self):
        """rm NAME deletes the endpoint, stopping its workers, and says which one it removed."""
        endpoint_id = self.deploy()["id"]
        code, out, err = self.cli("rm", "hello")
        self.assertEqual((code, out, err), (0, f"removed hello (id {endpoint_id})\n", ""))
        self.assertEqual(self.endpoints(), [])
        self.assertTrue(FakePool.instances[0].stopped)

    def test_rm_by_id_and_several_at_once(self):
        """rm takes ids as well as names, and several of them."""
        first, second = self.deploy("a")["id"], self.deploy("b")["id"]
        code, out, _ = self.cli("rm", first, "b")
        self.assertEqual(out, f"removed a (id {first})\nremoved b (id {second})\n")
        self.assertEqual((code, self.endpoints()), (0, []))

    def test_a_create_that_failed_to_compile_can_be_removed(self):
        """The endpoint a failed first deploy leaves in 'error' is removed by rm."""
        self.assertEqual(self.cli("deploy", self.write("broken.rs", BROKEN), "--path", "/b")[0], 1)
        self.assertEqual(self.record("broken")["status"], "error")
        self.assertEqual(self.cli("rm", "broken")[0], 0)
        self.assertEqual(self.endpoints(), [])

    def test_rm_of_an_unknown_name(self):
        """rm of a name nobody has is exit 1 with a pointer to ls."""
        code, out, err = self.cli("rm", "nope")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "error: no endpoint named 'nope'; `edgegw ls` lists them\n")


class LifecycleTests(ManageTestCase):
    def test_stop_start_restart(self):
        """stop, start and restart each change the endpoint and print its status and pids."""
        self.deploy()
        self.assertEqual(self.cli("stop", "hello"), (0, "hello: stopped\n", ""))
        self.assertEqual(self.record("hello")["status"], "stopped")
        self.assertEqual(self.cli("start", "hello"), (0, "hello: running (pids 4242)\n", ""))
        self.assertEqual(self.cli("restart", "hello"), (0, "hello: running (pids 4242)\n", ""))
        self.assertEqual(len(FakePool.instances), 3)

    def test_start_of_an_endpoint_never_compiled_is_refused(self):
        """Starting an endpoint with no compiled code is the gateway's 409, exit 1, one line."""
        self.successResultOf(self.manager.create({"name": "raw", "path": "/raw", "method": "GET"}))
        code, out, err = self.cli("start", "raw")
        self.assertEqual((code, out), (1, ""))
        self.assertTrue(err.startswith("error: ") and err.count("\n") == 1, err)
        self.assertIn("compile", err)


class VersionTests(ManageTestCase):
    def setUp(self):
        super().setUp()
        build = self.builder.build

        def hex_build(*args, **kwargs):
            # Digests the rollback call takes: 64 hex digits, "d1000..." for the first build.
            def widen(result):
                result.digest = result.digest.ljust(64, "0")
                return result

            return build(*args, **kwargs).addCallback(widen)

        self.builder.build = hex_build

    def test_versions_lists_newest_first_with_live_and_current(self):
        """versions prints one row per compiled version, newest first, the live and current one marked."""
        self.deploy()
        self.deploy(code=GOODBYE)
        code, out, err = self.cli("versions", "hello")
        self.assertEqual((code, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["VERSION", "CREATED", "COMPILE", "LIVE", "CURRENT", "BINARY"])
        self.assertEqual([line.split()[0] for line in lines[1:]], ["d20000000000", "d10000000000"])
        self.assertIn("live", lines[1].split())
        self.assertIn("current", lines[1].split())
        self.assertNotIn("live", lines[2].split())

    def test_versions_code_prints_that_versions_source(self):
        """versions --code VERSION prints the source of that version alone."""
        self.deploy()
        self.deploy(code=GOODBYE)
        self.assertEqual(self.cli("versions", "hello", "--code", "d1"), (0, HELLO, ""))
        code, _, err = self.cli("versions", "hello", "--code", "d")
        self.assertEqual((code, err), (1, "error: 2 versions of 'hello' start with 'd'\n"))

    def test_rollback_serves_the_earlier_version(self):
        """rollback NAME VERSION makes that version live again and says so."""
        self.deploy()
        self.deploy(code=GOODBYE)
        code, out, err = self.cli("rollback", "hello", "d100000")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, "hello: running (serving version d10000000000; pids 4242)\n")
        self.assertEqual(self.record("hello")["deployed"], "d1".ljust(64, "0"))

    def test_rollback_to_an_unknown_version(self):
        """A version the endpoint never had is the gateway's 404, exit 1."""
        self.deploy()
        code, _, err = self.cli("rollback", "hello", "fffffff")
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("error: "), err)


class SettingsTests(ManageTestCase):
    def test_settings_shows_every_setting_flattened(self):
        """settings NAME prints one dotted KEY = JSON value line per setting."""
        self.deploy()
        code, out, _ = self.cli("settings", "hello")
        self.assertEqual(code, 0)
        self.assertIn("timeout = 30.0\n", out)
        self.assertIn("limits.memory_mb = 1024\n", out)
        self.assertIn('network = "none"\n', out)

    def test_settings_key_shows_one(self):
        """settings NAME KEY prints that setting alone; an unknown key is exit 1."""
        self.deploy()
        self.assertEqual(self.cli("settings", "hello", "max_queue"), (0, "max_queue = 1000\n", ""))
        code, _, err = self.cli("settings", "hello", "nope")
        self.assertEqual(code, 1)
        self.assertIn("no setting nope", err)

    def test_settings_assignments_change_the_endpoint(self):
        """KEY=VALUE changes top-level and nested settings, keeping the other nested ones, and prints what changed."""
        self.deploy()
        self.successResultOf(
            self.manager.update(self.record("hello")["id"], {"settings": {"env": {"KEEP": "1"}}})
        )
        code, out, err = self.cli(
            "settings", "hello", "timeout=5", "limits.memory_mb=256", "env.TOKEN=123"
        )
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(
            out, 'env.TOKEN = "123"\nlimits.memory_mb = 256\ntimeout = 5.0\n'
        )
        settings = self.record("hello")["settings"]
        self.assertEqual(settings["env"], {"KEEP": "1", "TOKEN": "123"})
        self.assertEqual((settings["timeout"], settings["limits"]["memory_mb"]), (5.0, 256))
        self.assertEqual(settings["limits"]["open_files"], 256)

    def test_unset_drops_an_env_variable(self):
        """--unset env.KEY removes that variable and leaves the others."""
        self.deploy()
        self.cli("settings", "hello", "env.A=1", "env.B=2")
        self.assertEqual(self.cli("settings", "hello", "--unset", "env.A"), (0, "env.A = (unset)\n", ""))
        self.assertEqual(self.record("hello")["settings"]["env"], {"B": "2"})

    def test_a_bad_value_is_the_gateways_400(self):
        """A value the gateway refuses is exit 1 with its message naming the field."""
        self.deploy()
        code, _, err = self.cli("settings", "hello", "timeout=-1")
        self.assertEqual(code, 1)
        self.assertIn("timeout", err)

    def test_show_and_change_at_once_is_a_usage_error(self):
        """Mixing KEY and KEY=VALUE is refused before anything is sent, exit 2."""
        self.deploy()
        self.assertEqual(self.cli("settings", "hello", "timeout", "max_queue=5")[0], 2)


class ServiceTests(ManageTestCase):
    def test_create_ls_test_rm(self):
        """services create, ls, test and rm work on a service named by its name."""
        code, out, err = self.cli("services", "create", "notes-db", "sqlite", "path=notes.sqlite3")
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(out.startswith("created sqlite service notes-db (id "), out)
        code, out, _ = self.cli("services", "ls")
        self.assertEqual(out.splitlines()[0].split(), ["ID", "NAME", "TYPE", "WHERE"])
        self.assertIn("notes-db", out.splitlines()[1].split())
        self.assertEqual(self.cli("services", "test", "notes-db"), (0, "notes-db: ok (1.5 ms)\n", ""))
        code, out, _ = self.cli("services", "rm", "notes-db")
        self.assertTrue(out.startswith("removed service notes-db"), out)
        self.assertEqual(self.cli("services", "ls")[1], "no services\n")

    def test_config_values_are_typed(self):
        """Numbers and booleans in KEY=VALUE are sent as JSON numbers and booleans."""
        code, _, err = self.cli(
            "services", "create", "cache", "redis", "host=127.0.0.1", "port=6380", "use_tls=false"
        )
        self.assertEqual((code, err), (0, ""))
        code, out, _ = self.cli("services", "ls", "--json")
        config = json.loads(out)[0]["config"]
        self.assertEqual((config["port"], config["use_tls"]), (6380, False))

    def test_unknown_type_is_a_usage_error(self):
        """A service type that does not exist is argparse's usage error, exit 2."""
        self.assertEqual(self.cli("services", "create", "x", "mongodb")[0], 2)


class BindingTests(ManageTestCase):
    def setUp(self):
        super().setUp()
        self.deploy("notes")
        self.cli("services", "create", "notes-db", "sqlite")

    def test_bind_under_the_services_name_then_unbind(self):
        """bind without --pool binds under the service's name; unbind removes it."""
        code, out, err = self.cli("bind", "notes", "notes-db")
        self.assertEqual((code, out, err), (0, "bound notes-db to notes as 'notes-db'\n", ""))
        self.assertEqual(list(self.record("notes")["services"]), ["notes-db"])
        self.assertEqual(self.cli("unbind", "notes", "notes-db"), (0, "unbound 'notes-db' from notes\n", ""))
        self.assertEqual(self.record("notes")["services"], {})

    def test_bind_with_a_pool_id(self):
        """--pool names the binding as the handler's pool_id."""
        self.assertEqual(self.cli("bind", "notes", "notes-db", "--pool", "main")[0], 0)
        self.assertEqual(list(self.record("notes")["services"]), ["main"])

    def test_a_pool_id_that_cannot_be_one(self):
        """A pool id outside [A-Za-z0-9_-] is refused before anything is sent, exit 2."""
        code, _, err = self.cli("bind", "notes", "notes-db", "--pool", "a.b")
        self.assertEqual(code, 2)
        self.assertIn("cannot be a pool id", err)


class DomainAndCollectionTests(ManageTestCase):
    def test_domains_create_ls_rm(self):
        """domains create, ls and rm by host."""
        code, out, _ = self.cli("domains", "create", "shop.example.com", "--description", "shop")
        self.assertTrue(out.startswith("created domain shop.example.com (id "), out)
        rows = [line.split()[1] for line in self.cli("domains", "ls")[1].splitlines()]
        self.assertEqual(rows, ["HOST", "api.example.com", "shop.example.com"])
        self.assertEqual(self.cli("domains", "rm", "shop.example.com"), (0, "removed domain shop.example.com\n", ""))

    def test_rm_of_a_domain_in_use_needs_cascade(self):
        """A domain with endpoints is refused (exit 1) until --cascade, which deletes them too."""
        self.cli("deploy", self.write("u.rs", HELLO), "--path", "/u", "--domain", "api.example.com")
        code, _, err = self.cli("domains", "rm", "api.example.com")
        self.assertEqual(code, 1)
        self.assertIn("still has 1 endpoint", err)
        code, out, _ = self.cli("domains", "rm", "api.example.com", "--cascade")
        self.assertEqual((code, out), (0, "removed domain api.example.com with 1 endpoint\n"))
        self.assertEqual(self.endpoints(), [])

    def test_collections_create_ls_rm(self):
        """collections create with a domain host and base path, ls shows them, rm by name."""
        code, out, err = self.cli(
            "collections", "create", "shop", "--domain", "api.example.com", "--base-path", "/v1"
        )
        self.assertEqual((code, err), (0, ""))
        lines = self.cli("collections", "ls")[1].splitlines()
        self.assertEqual(lines[1].split()[1:], ["shop", "api.example.com", "/v1"])
        self.assertEqual(self.cli("collections", "rm", "shop"), (0, "removed collection shop\n", ""))
        self.assertEqual(self.cli("collections", "ls")[1], "no collections\n")

    def test_collection_on_an_unknown_domain(self):
        """--domain naming no domain is exit 1 with a pointer to domains ls."""
        code, _, err = self.cli("collections", "create", "shop", "--domain", "nope.example.com")
        self.assertEqual(code, 1)
        self.assertIn("`edgegw domains ls`", err)


class ConsumerCommandTests(ManageTestCase):
    def test_consumers_create_key_ls_rm(self):
        """consumers create, key (the key alone on stdout, then known to the data plane), ls, key --delete and rm."""
        code, out, err = self.cli("consumers", "create", "mobile")
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(out.startswith("created consumer mobile (id "), out)
        code, out, err = self.cli("consumers", "key", "mobile")
        self.assertEqual(code, 0, err)
        key = out.strip()
        self.assertEqual(out, key + "\n")
        self.assertIn("only time the key is shown", err)
        consumers = self.runtime.policy_context.consumers
        self.assertEqual(consumers.lookup(key), "mobile")
        listed = json.loads(self.cli("consumers", "ls", "--json")[1])
        self.assertEqual([(c["name"], c["enabled"], len(c["keys"])) for c in listed], [("mobile", True, 1)])
        self.assertNotIn(key, self.cli("consumers", "ls")[1])
        key_id = listed[0]["keys"][0]["id"]
        self.assertEqual(self.cli("consumers", "ls")[1].splitlines()[1].split()[1:], ["mobile", "yes", key_id])
        code, out, _ = self.cli("consumers", "key", "mobile", "--delete", key_id)
        self.assertEqual((code, out), (0, f"deleted key {key_id} of consumer mobile\n"))
        self.assertIsNone(consumers.lookup(key))
        self.assertEqual(self.cli("consumers", "rm", "MOBILE"), (0, "removed consumer mobile and its keys\n", ""))
        self.assertEqual(self.cli("consumers", "ls")[1], "no consumers\n")

    def test_refusals_are_one_line_errors(self):
        """A taken name and an unknown consumer exit 1 with the reason; --disabled creates it disabled."""
        self.assertEqual(self.cli("consumers", "create", "web", "--disabled")[0], 0)
        self.assertFalse(json.loads(self.cli("consumers", "ls", "--json")[1])[0]["enabled"])
        code, _, err = self.cli("consumers", "create", "WEB")
        self.assertEqual(code, 1)
        self.assertIn("already exists", err)
        code, _, err = self.cli("consumers", "key", "nobody")
        self.assertEqual(code, 1)
        self.assertIn("`edgegw consumers ls`", err)


class OutputTests(ManageTestCase):
    def run_on(self, argv, stdout, stderr, environ=None):
        """Run with the given streams; the exit code."""
        environ = dict(environ or {}, EDGEGW_KEY=self.key)
        d = cli.run(argv, reactor=self.reactor, http=self.http, environ=environ, stdout=stdout, stderr=stderr)
        self.flush()
        return self.successResultOf(d)

    def test_ls_json_is_the_records(self):
        """ls --json prints the endpoint records as a JSON list, ids and status included."""
        endpoint_id = self.deploy()["id"]
        code, out, _ = self.cli("ls", "--json")
        records = json.loads(out)
        self.assertEqual((code, [(r["id"], r["status"]) for r in records]), (0, [(endpoint_id, "running")]))

    def test_json_before_the_command_and_of_a_deploy(self):
        """--json may come before the command; a deploy's JSON is the record with its build."""
        code, out, _ = self.cli("--json", "deploy", self.write("hello.rs", HELLO), "--path", "/hello")
        record = json.loads(out)
        self.assertEqual((code, record["status"], record["build"]["digest"]), (0, "running", "d1"))

    def test_colours_on_a_terminal_only(self):
        """On a terminal the status and the error prefix are coloured; NO_COLOR or a pipe gives plain text."""

        class Terminal(io.StringIO):
            def isatty(self):
                return True

        self.deploy()
        out, err = Terminal(), Terminal()
        self.run_on(["ls"], out, err)
        self.assertIn("\033[32mrunning", out.getvalue())
        self.run_on(["rm", "nope"], out, err)
        self.assertEqual(err.getvalue(), "\033[1;31merror:\033[0m no endpoint named 'nope'; `edgegw ls` lists them\n")
        for streams, environ in (((Terminal(), Terminal()), {"NO_COLOR": "1"}), ((io.StringIO(), io.StringIO()), {})):
            self.run_on(["ls"], *streams, environ=environ)
            self.run_on(["rm", "nope"], *streams, environ=environ)
            self.assertNotIn("\033", streams[0].getvalue() + streams[1].getvalue())

    def test_warnings_of_a_successful_compile_are_shown(self):
        """A deploy whose compile warned prints the warnings, naming the user's file, and still succeeds."""
        build = self.builder.build

        def warning_build(*args, **kwargs):
            def warn(result):
                result.warnings = [
                    {"level": "warning", "message": "unused variable: `x`",
                     "rendered": "warning: unused variable: `x`\n --> src/main.rs:3:9\n"}
                ]
                return result

            return build(*args, **kwargs).addCallback(warn)

        self.builder.build = warning_build
        path = self.write("hello.rs", HELLO)
        code, out, err = self.cli("deploy", path, "--path", "/hello")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("deployed hello"), out)
        self.assertEqual(
            err,
            f"warning: unused variable: `x`\n --> {path}:3:9\n\n"
            "warning: `hello` compiled with 1 warning\n",
        )

    def test_every_command_has_an_example_in_its_help(self):
        """Each command's and action's --help ends with an example of it."""
        parser = cli.build_parser()

        def walk(parser, prefix):
            for action in parser._actions:
                if hasattr(action, "choices") and isinstance(action.choices, dict):
                    for name, sub in action.choices.items():
                        yield prefix + name, sub
                        yield from walk(sub, prefix + name + " ")

        commands = dict(walk(parser, ""))
        for name in ("rm", "stop", "versions", "rollback", "settings", "services create", "bind", "domains rm"):
            self.assertIn(name, commands)
        for name, sub in commands.items():
            self.assertIn("example:\n  edgegw " + name.split()[0], sub.format_help(), name)
        code, out, _ = self.cli("rm", "--help")
        self.assertEqual(code, 0)
        self.assertIn("example:\n  edgegw rm hello\n", out)


class RealGatewayIntegrationTests(harness.GatewayTestCase):
    """The commands in sequence against a real gateway: real cargo, real workers, real HTTP."""

    @inlineCallbacks
    def edgegw(self, *argv):
        """Run one command line against the gateway; (exit code, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        environ = {"EDGEGW_KEY": self.gateway.key, "EDGEGW_URL": self.gateway.api[: -len("/api")]}
        code = yield cli.run(
            list(argv), reactor=reactor, http=self.gateway.http, environ=environ, stdout=out, stderr=err
        )
        return code, out.getvalue(), err.getvalue()

    @inlineCallbacks
    def test_a_session_of_commands(self):
        """deploy, ls --json, settings, stop/start, a second deploy (its cargo warning shown, naming the file), versions, rollback, services, bind/unbind and rm, each doing what it says on a live gateway."""
        work = self.mktemp()
        os.makedirs(work)
        hello = os.path.join(work, "hello.rs")
        with open(hello, "w") as f:
            f.write(HELLO)
        code, out, err = yield self.edgegw("deploy", hello, "--path", "/hello")
        self.assertEqual(code, 0, err)
        response, body = yield self.gateway.get("/hello")
        self.assertIn(b"Hello, World!", body)

        code, out, _ = yield self.edgegw("ls", "--json")
        (record,) = json.loads(out)
        self.assertEqual((record["name"], record["status"]), ("hello", "running"))
        first = record["deployed"]

        self.assertEqual((yield self.edgegw("settings", "hello", "timeout=5"))[:2], (0, "timeout = 5.0\n"))
        self.assertEqual((yield self.edgegw("stop", record["id"]))[:2], (0, "hello: stopped\n"))
        response, _ = yield self.gateway.get("/hello")
        self.assertEqual(response.code, 404)
        code, out, _ = yield self.edgegw("start", "hello")
        self.assertTrue(out.startswith("hello: running (pids "), out)

        with open(hello, "w") as f:
            f.write(GOODBYE.replace("fn handle(req: Request) -> Response {\n", "fn handle(req: Request) -> Response {\n    let unused = 1;\n"))
        code, _, err = yield self.edgegw("deploy", hello)
        self.assertEqual(code, 0, err)
        self.assertIn(f"--> {hello}:4:9", err)
        self.assertTrue(err.endswith("warning: `hello` compiled with 1 warning\n"), err)
        _, body = yield self.gateway.get("/hello")
        self.assertIn(b"Goodbye!", body)
        code, out, _ = yield self.edgegw("versions", "hello")
        self.assertEqual(len(out.splitlines()), 3, out)
        self.assertEqual((yield self.edgegw("rollback", "hello", first[:12]))[0], 0)
        _, body = yield self.gateway.get("/hello")
        self.assertIn(b"Hello, World!", body)

        self.assertEqual((yield self.edgegw("services", "create", "notes-db", "sqlite"))[0], 0)
        self.assertEqual((yield self.edgegw("services", "test", "notes-db"))[0], 0)
        self.assertEqual((yield self.edgegw("bind", "hello", "notes-db", "--pool", "main"))[0], 0)
        code, _, err = yield self.edgegw("services", "rm", "notes-db")
        self.assertEqual(code, 1, "a bound service is not deleted")
        self.assertEqual((yield self.edgegw("unbind", "hello", "main"))[0], 0)
        self.assertEqual((yield self.edgegw("services", "rm", "notes-db"))[0], 0)

        self.assertEqual((yield self.edgegw("rm", "hello"))[0], 0)
        self.assertEqual((yield self.edgegw("ls")), (0, "no endpoints\n", ""))
        response, _ = yield self.gateway.get("/hello")
        self.assertEqual(response.code, 404)
