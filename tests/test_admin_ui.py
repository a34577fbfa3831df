"""
The Admin UI (``admin_ui/``, served at ``/admin/``) in a real browser:
Debian's headless Chromium (``/usr/bin/chromium``, installed by
``tools/setup-browser``) driven by Playwright for Python, against a real
gateway (real store, real cargo, real workers) listening on 127.0.0.1.

The gateway runs on the reactor as in ``tests/test_integration.py``; the
browser is driven synchronously in a thread (``deferToThread``), so the
reactor keeps serving the API and the data plane meanwhile.

Screenshots of every page are written to ``admin-ui-screenshots/<test>/``
under trial's working directory (``_trial_temp/`` with ``make test``), or
under ``$EDGEGW_UI_SCREENSHOTS`` when set; each test prints its folder.

The tests skip, saying why, only when the browser or its driver is not
installed (a machine where ``tools/setup-browser`` could not install
Chromium, or no Playwright in the virtualenv) or cargo is missing.
"""

import json
import os
import shutil

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.support.harness import SHARED_TARGET, GatewayHarness, _cargo_or_skip

CHROMIUM = os.environ.get("EDGEGW_CHROMIUM", "/usr/bin/chromium")
# Seconds the browser waits for the slow steps (a cold cargo build, a worker start).
SLOW = 240

BROKEN = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    let greeting = "Hello from the UI";
    eprintln!("ui-test handled {} {}", req.method, req.path);
    Response::ok(json!({"message": greting, "path": req.path}))
}

handler_loop!(handle);
"""
BROKEN_LINE = 6  # `greting`: cannot find value

FIXED = BROKEN.replace("greting", "greeting")

XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_LOGGER = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    eprintln!("<b>bold</b><img src=x onerror=alert(3)> {}", req.path);
    Response::ok(json!({"html": "<script>alert(4)</script>"}))
}

handler_loop!(handle);
// </textarea><script>alert(2)</script>
"""


def _browser_or_skip():
    """Playwright's sync API and the Chromium binary, or SkipTest saying which is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise unittest.SkipTest(
            f"Playwright for Python is not installed ({e}); `make setup` installs it (the `test` extra)"
        )
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise unittest.SkipTest(
            f"no Chromium at {CHROMIUM}: tools/setup-browser installs Debian's `chromium`"
            " (as root on Debian); set EDGEGW_CHROMIUM to use another binary"
        )
    return sync_playwright


def screenshot_folder(test_name):
    base = os.environ.get("EDGEGW_UI_SCREENSHOTS") or os.path.abspath("admin-ui-screenshots")
    folder = os.path.join(base, test_name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


class BrowserSession:
    """One Chromium page on the gateway's Admin UI, with the problems the page reported."""

    def __init__(self, sync_playwright, admin_url, folder, width=1280, height=800):
        self.admin = admin_url
        self.folder = folder
        self.count = 0
        self.problems = []  # uncaught exceptions and CSP refusals
        self.dialogs = []
        self._playwright = playwright = sync_playwright().start()
        self.browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        self.context = self.browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        self.page.on("console", self._console)
        self.page.on("dialog", self._dialog)

    def _console(self, message):
        text = message.text
        if message.type == "error" and "Failed to load resource" not in text:
            # What is left: CSP refusals ("Refused to ...") and errors the UI logged.
            self.problems.append(f"console: {text}")

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def shot(self, name, full_page=True):
        self.count += 1
        path = os.path.join(self.folder, f"{self.count:02d}-{name}.png")
        self.page.screenshot(path=path, full_page=full_page)
        return path

    def goto(self, fragment):
        self.page.goto(self.admin + "/admin/" + fragment)

    def sign_in(self, key):
        self.goto("")
        self.page.wait_for_selector("#api-key")
        self.shot("sign-in")
        self.page.fill("#api-key", key)
        self.page.click("form button[type=submit]")
        self.page.wait_for_selector("#nav:not([hidden])")

    def close(self):
        try:
            self.browser.close()
        finally:
            self._playwright.stop()


class AdminUITestCase(unittest.TestCase):
    timeout = 900

    @inlineCallbacks
    def setUp(self):
        self.sync_playwright = _browser_or_skip()
        cargo = _cargo_or_skip()
        os.makedirs(SHARED_TARGET, exist_ok=True)
        self.gateway = GatewayHarness(self, os.path.abspath(self.mktemp()), cargo)
        yield self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.admin = self.gateway.api[: -len("/api")]
        self.folder = screenshot_folder(self._testMethodName)
        print(f"\nAdmin UI screenshots of {self._testMethodName}: {self.folder}")

    def in_browser(self, steps, **size):
        """Run ``steps(session)`` in a thread with a fresh browser; the page must report no problem."""

        def run():
            session = BrowserSession(self.sync_playwright, self.admin, self.folder, **size)
            try:
                steps(session)
            except Exception:
                try:
                    session.shot("failure")
                except Exception:
                    pass
                raise
            finally:
                session.close()
            return session

        d = deferToThread(run)
        d.addCallback(lambda session: self.assertEqual(session.problems, [], "the page reported problems"))
        return d


class QuickStartIntegrationTests(AdminUITestCase):

    def test_quick_start_in_the_browser(self):
        """
        The brief's getting-started path in the UI: sign in, create an endpoint,
        paste code with an error, compile and see it at its line, fix it, compile,
        start, send a request from the test console and see the JSON, see the
        handler's log line, stop it; then every page, wide and narrow.
        """
        key = self.gateway.key

        def steps(s):
            page = s.page
            s.sign_in(key)
            page.wait_for_selector("[data-testid=quick-start]")
            s.shot("dashboard-empty")

            page.click("a:has-text('New endpoint')")
            page.wait_for_selector("[data-testid=code-input]")
            self.assertIn("handler_loop!(handle);", page.input_value("[data-testid=code-input]"))
            page.fill("[data-testid=name]", "hello-ui")
            page.fill("[data-testid=path]", "/hello-ui")
            s.shot("new-endpoint")

            # Paste code with an error, then Ctrl+S: created, then compiled.
            page.fill("[data-testid=code-input]", "")
            page.focus("[data-testid=code-input]")
            page.keyboard.insert_text(BROKEN)
            page.keyboard.press("Control+s")
            page.wait_for_selector("[data-testid=diagnostics] li", timeout=SLOW * 1000)
            first = page.locator("[data-testid=diagnostics] li").first
            self.assertEqual(first.get_attribute("data-line"), str(BROKEN_LINE))
            self.assertIn("greting", first.inner_text())
            # ... and at its line in the editor: the line and its gutter number are marked.
            marked = page.locator(f".ce-lines > .ce-line:nth-child({BROKEN_LINE})")
            self.assertIn("ce-line-error", marked.get_attribute("class"))
            self.assertIn("greting", marked.inner_text())
            self.assertEqual(page.locator(".ce-gutter .ce-mark-error").first.get_attribute("data-line"), str(BROKEN_LINE))
            page.wait_for_selector("[data-testid=endpoint-status]:has-text('error')")
            # The failure is said once: how many errors and the first at its line, under the editor;
            # not the API's "compilation failed: ..." after it, nor again at the top or in a notice.
            status = page.inner_text("[data-testid=compile-status]")
            self.assertTrue(status.startswith(f"Compile failed: 1 error; line {BROKEN_LINE}: "), status)
            self.assertEqual(status.count("greting"), 1, status)
            self.assertNotIn("compilation failed", status)
            self.assertTrue(page.locator("[data-testid=last-error]").is_hidden())
            self.assertEqual(page.locator(".notice-error").count(), 0)
            s.shot("compile-error")

            # The jump from the list puts the caret on that line.
            first.locator("button.diag-jump").click()
            caret_line = page.evaluate(
                "() => { const t = document.querySelector('[data-testid=code-input]');"
                " return t.value.slice(0, t.selectionStart).split('\\n').length; }"
            )
            self.assertEqual(caret_line, BROKEN_LINE)

            # Fix it in the editor, compile with Ctrl+Enter. Tab indents, Shift+Tab dedents.
            page.fill("[data-testid=code-input]", FIXED)
            page.keyboard.press("Control+End")
            page.keyboard.press("Tab")
            self.assertEqual(page.input_value("[data-testid=code-input]"), FIXED + "    ")
            self.assertEqual(page.evaluate("() => document.activeElement.dataset.testid"), "code-input")
            page.keyboard.press("Shift+Tab")
            self.assertEqual(page.input_value("[data-testid=code-input]"), FIXED)
            page.keyboard.press("Control+Enter")
            page.wait_for_selector("[data-testid=compile-status].ok", timeout=SLOW * 1000)
            self.assertIn("Compiled in", page.inner_text("[data-testid=compile-status]"))
            self.assertEqual(page.locator("[data-testid=diagnostics] li").count(), 0)
            self.assertEqual(page.locator(".ce-line-error").count(), 0)
            page.wait_for_selector("[data-testid=endpoint-status]:has-text('compiled')")
            s.shot("compiled")

            # The editor takes the page's width: a 120-character line shows whole, no sideways scroll.
            widths = page.evaluate(
                "() => [document.querySelector('[data-testid=code-editor]').getBoundingClientRect().width,"
                " document.querySelector('main').clientWidth]"
            )
            self.assertGreater(widths[0], 0.9 * widths[1] - 40, f"editor {widths[0]} px of main's {widths[1]} px")
            page.focus("[data-testid=code-input]")
            page.keyboard.press("Control+End")
            page.keyboard.insert_text("\n// " + "x" * 117)
            overflow = page.evaluate(
                "() => { const t = document.querySelector('[data-testid=code-input]'); return t.scrollWidth - t.clientWidth; }"
            )
            self.assertLessEqual(overflow, 0, "a 120-character line is cut off")
            s.shot("long-line")
            page.fill("[data-testid=code-input]", FIXED)

            page.click("[data-testid=start]")
            page.wait_for_selector("[data-testid=endpoint-status]:has-text('running')", timeout=SLOW * 1000)
            page.wait_for_selector("[data-testid=workers-table]")

            # The test console: GET /hello-ui answers the handler's JSON.
            self.assertEqual(page.input_value("[data-testid=console-path]"), "/hello-ui")
            page.fill("[data-testid=console-headers]", "Accept: application/json")
            page.click("[data-testid=console-send]")
            page.wait_for_selector("[data-testid=console-status]")
            self.assertEqual(page.inner_text("[data-testid=console-status]"), "200 OK")
            body = json.loads(page.inner_text("[data-testid=console-body-out]"))
            self.assertEqual(body, {"message": "Hello from the UI", "path": "/hello-ui"})
            self.assertRegex(page.inner_text("[data-testid=console-time]"), r"^\d+(\.\d)? ms$")

            # The handler's stderr line shows in the live logs.
            page.wait_for_selector("[data-testid=logs] :text('ui-test handled GET /hello-ui')", timeout=30_000)
            page.wait_for_selector("[data-testid=versions] table")
            s.shot("running-test-console-logs")

            # The dashboard charts its rate and latency (a sample every 5 s).
            endpoint_page = page.url
            s.goto("#/dashboard")
            row = page.locator("[data-testid=endpoint-charts] tbody tr", has_text="hello-ui")
            row.wait_for(timeout=30_000)
            self.assertEqual(row.locator("svg[role=img]").count(), 2)
            # Its "Served" is the count the "Requests served" card sums: the one test-console request.
            self.assertEqual(row.locator("[data-testid=endpoint-served]").inner_text(), "1")
            s.shot("dashboard-running")
            page.goto(endpoint_page)
            page.wait_for_selector("[data-testid=endpoint-status]:has-text('running')")

            page.click("[data-testid=stop]")
            page.wait_for_selector("[data-testid=endpoint-status]:has-text('stopped')", timeout=SLOW * 1000)
            s.shot("stopped")

            # Unsaved code is not lost to a click elsewhere without asking.
            endpoint_page = page.url
            page.focus("[data-testid=code-input]")
            page.keyboard.press("Control+End")
            page.keyboard.type("// unsaved")
            page.click("#nav a[data-page=endpoints]")
            page.wait_for_selector("dialog.confirm-dialog")
            s.shot("leave-unsaved")
            page.click("dialog.confirm-dialog button:has-text('Cancel')")
            self.assertEqual(page.url, endpoint_page)
            self.assertTrue(page.input_value("[data-testid=code-input]").endswith("// unsaved"))
            page.click("#nav a[data-page=endpoints]")
            page.click("dialog.confirm-dialog button:has-text('Leave without saving')")
            page.wait_for_selector("[data-testid=endpoints-table]")

            # Every page, for people to look at.
            for fragment, ready, name in (
                ("#/dashboard", "[data-testid=card-endpoints]", "dashboard"),
                ("#/endpoints", "[data-testid=endpoints-table] tbody tr", "endpoints"),
                ("#/services", "[data-testid=service-editor] h2", "services"),
                ("#/domains", "[data-testid=domains] h2", "domains-collections"),
                ("#/consumers", "[data-testid=consumers] h2", "consumers"),
                ("#/import", "[data-testid=import-spec]", "import"),
                ("#/keys", "[data-testid=keys] table", "api-keys"),
            ):
                s.goto(fragment)
                page.wait_for_selector(ready)
                s.shot(name)

            # Search and the status filter narrow the list.
            s.goto("#/endpoints")
            page.wait_for_selector("[data-testid=endpoints-table] tbody tr")
            page.select_option("[data-testid=filter-status]", "running")
            page.wait_for_selector("[data-testid=endpoints-table]", state="hidden")
            page.select_option("[data-testid=filter-status]", "stopped")
            page.fill("[data-testid=search]", "hello-ui")
            self.assertEqual(page.locator("[data-testid=endpoints-table] tbody tr").count(), 1)

            # A narrow window: the editor page still fits.
            page.set_viewport_size({"width": 420, "height": 860})
            page.click("a.row-link:has-text('hello-ui')")
            page.wait_for_selector("[data-testid=code-editor]")
            width = page.evaluate("() => document.documentElement.scrollWidth")
            self.assertLessEqual(width, 420 + 1, "the page scrolls sideways on a narrow window")
            s.shot("endpoint-narrow")

        return self.in_browser(steps)


class EscapingIntegrationTests(AdminUITestCase):

    @inlineCallbacks
    def test_names_code_and_logs_are_shown_as_text(self):
        """
        A name such as <img src=x onerror=alert(1)>, code holding </textarea>,
        and log lines and response bodies holding HTML are shown as text: no
        element is made of them, no script runs, no dialog opens.
        """
        deployed = yield self.gateway.deploy(XSS_NAME, "/xss", XSS_LOGGER)
        code, _ = yield self.gateway.call("POST", "/keys", {"name": "<script>alert(5)</script>", "scope": "read"})
        self.assertEqual(code, 201)
        code, _ = yield self.gateway.call("POST", "/collections", {"name": "<svg onload=alert(6)>"})
        self.assertEqual(code, 201)
        yield self.gateway.request("GET", "/xss")  # a log line with HTML in it
        key = self.gateway.key
        endpoint_id = deployed["id"]

        def steps(s):
            page = s.page
            page.add_init_script("window.__xss = 0; window.alert = () => { window.__xss += 1; };")
            s.sign_in(key)
            s.goto("#/endpoints")
            link = page.locator("a.row-link").first
            link.wait_for()
            self.assertEqual(link.inner_text(), XSS_NAME)
            s.shot("endpoints-with-html-name")

            s.goto("#/endpoints/" + endpoint_id)
            page.wait_for_selector("[data-testid=code-input]")
            self.assertEqual(page.inner_text("[data-testid=endpoint-title]"), XSS_NAME)
            self.assertEqual(page.input_value("[data-testid=name]"), XSS_NAME)
            self.assertEqual(page.input_value("[data-testid=code-input]"), XSS_LOGGER)
            self.assertIn("</textarea><script>alert(2)</script>", page.inner_text(".ce-lines"))
            page.wait_for_selector("[data-testid=logs] :text('<b>bold</b><img src=x onerror=alert(3)> /xss')")
            page.click("[data-testid=console-send]")
            page.wait_for_selector("[data-testid=console-body-out]")
            self.assertIn("<script>alert(4)</script>", page.inner_text("[data-testid=console-body-out]"))
            s.shot("endpoint-with-html")

            s.goto("#/keys")
            page.wait_for_selector("[data-testid=keys] :text('<script>alert(5)</script>')")
            s.goto("#/domains")
            page.wait_for_selector("[data-testid=collections] :text('<svg onload=alert(6)>')")
            s.goto("#/dashboard")
            page.wait_for_selector("[data-testid=card-endpoints]")
            s.shot("dashboard")

            # Nothing the data said became an element, and nothing ran.
            self.assertEqual(page.locator("main img, main script, main svg[onload], main b").count(), 0)
            self.assertEqual(page.evaluate("() => window.__xss"), 0)
            self.assertEqual(s.dialogs, [])

        yield self.in_browser(steps)


class RoutesFormIntegrationTests(AdminUITestCase):

    @inlineCallbacks
    def test_the_form_adds_and_removes_routes(self):
        """
        The endpoint form lists its routes: Add route gives a second row, Save
        stores both as the endpoint's routes (the list shows the other one);
        Remove takes one away again, and the last one cannot be removed.
        """
        code, created = yield self.gateway.call("POST", "/endpoints", {"name": "notes", "path": "/notes", "method": "GET"})
        self.assertEqual(code, 201, created)
        endpoint_id = created["data"]["id"]
        key = self.gateway.key
        saved = []

        def steps(s):
            page = s.page
            s.sign_in(key)
            s.goto("#/endpoints/" + endpoint_id)
            page.wait_for_selector("[data-testid=path]")
            self.assertTrue(page.is_disabled("[data-testid=remove-route]"), "the only route can be removed")
            page.click("[data-testid=add-route]")
            page.select_option("[data-testid=method-2]", "DELETE")
            page.fill("[data-testid=path-2]", "/notes/{id}")
            s.shot("two-routes")
            page.click("[data-testid=save]")
            page.wait_for_selector("[data-testid=save]:has-text('Saved')")
            saved.append(True)
            s.goto("#/endpoints")
            page.wait_for_selector("[data-testid=more-routes]")
            self.assertEqual(page.inner_text("[data-testid=more-routes]"), "also DELETE /notes/{id}")
            s.goto("#/endpoints/" + endpoint_id)
            page.wait_for_selector("[data-testid=path-2]")
            self.assertEqual(page.input_value("[data-testid=path-2]"), "/notes/{id}")
            page.click("[data-testid=remove-route]")
            self.assertEqual(page.input_value("[data-testid=path]"), "/notes/{id}")
            self.assertEqual(page.locator("[data-testid=path-2]").count(), 0)
            page.click("[data-testid=save]")
            page.wait_for_selector("[data-testid=save]:has-text('Saved')")

        yield self.in_browser(steps)
        self.assertEqual(saved, [True])
        code, record = yield self.gateway.call("GET", "/endpoints/" + endpoint_id)
        self.assertEqual(record["data"]["routes"], [{"method": "DELETE", "path": "/notes/{id}"}])


class _Directory:
    """A node directory (``cluster/nodes.py``) of fixed nodes; ``down`` makes it fail as a lost store does."""

    name = "node-a"

    def __init__(self, nodes):
        self.nodes = nodes
        self.down = None

    def list(self):
        from twisted.internet.defer import fail, succeed

        return fail(self.down) if self.down is not None else succeed([dict(n) for n in self.nodes])


class NodesPanelIntegrationTests(AdminUITestCase):

    @inlineCallbacks
    def test_dashboard_shows_the_nodes(self):
        """
        The dashboard's Nodes panel lists each node's name (this one marked),
        address, version, state, workers and last heartbeat, names as text;
        an endpoint's page gives its workers on each node that is up; with the
        store unreachable the panel says why instead, and the rest of the
        dashboard still shows.
        """
        from datetime import datetime, timedelta, timezone

        from edgegw_tx.store.errors import StoreUnavailable

        now = datetime.now(timezone.utc)
        directory = _Directory(
            [
                {"name": "node-a", "address": "127.0.0.1:8080", "admin_address": "127.0.0.1:9081",
                 "version": "1.2.3", "started_at": (now - timedelta(hours=1)).isoformat(),
                 "last_seen": (now - timedelta(seconds=1)).isoformat(), "state": "up", "workers": 2,
                 "endpoints": {"e1": 2}, "self": True},
                {"name": "<b>node-b</b>", "address": "127.0.0.1:8082", "admin_address": "127.0.0.1:9082",
                 "version": "1.2.3", "started_at": (now - timedelta(hours=2)).isoformat(),
                 "last_seen": (now - timedelta(seconds=30)).isoformat(), "state": "down", "workers": 1,
                 "endpoints": {"e1": 1}, "self": False},
                {"name": "node-c", "address": "127.0.0.1:8084", "admin_address": "127.0.0.1:9084",
                 "version": "1.2.3", "started_at": (now - timedelta(hours=2)).isoformat(),
                 "last_seen": (now - timedelta(seconds=1)).isoformat(), "state": "up", "workers": 0,
                 "endpoints": {}, "self": False},
            ]
        )
        self.gateway.runtime.api.nodes = directory
        code, document = yield self.gateway.call("POST", "/endpoints", {"name": "spread", "path": "/spread", "method": "GET"})
        self.assertEqual(code, 201, document)
        endpoint_id = document["data"]["id"]
        directory.nodes[2]["endpoints"] = {endpoint_id: 2}

        def steps(s):
            page = s.page
            s.sign_in(self.gateway.key)
            rows = page.locator("[data-testid=nodes-table] tbody tr")
            rows.first.wait_for()
            self.assertEqual(rows.count(), 3)
            first = [c.strip() for c in rows.nth(0).locator("td").all_inner_texts()]
            self.assertEqual(first[:5], ["node-a (this node)", "127.0.0.1:8080", "1.2.3", "up", "2"])
            self.assertRegex(first[5], r"^\d+ s ago$")
            second = [c.strip() for c in rows.nth(1).locator("td").all_inner_texts()]
            self.assertEqual(second[:5], ["<b>node-b</b>", "127.0.0.1:8082", "1.2.3", "down", "1"])
            self.assertEqual(page.locator("[data-testid=nodes] b").count(), 0)
            self.assertEqual(page.inner_text("[data-testid=nodes-summary]"), "2 of 3 up, from their heartbeats")
            s.shot("dashboard-nodes")

            s.goto("#/endpoints/" + endpoint_id)
            page.wait_for_selector("[data-testid=workers-per-node]")
            self.assertEqual(
                page.inner_text("[data-testid=workers-per-node]"),
                "Workers per node: node-a 0 · node-c 2 (this node's below)",
            )
            s.shot("endpoint-workers-per-node")

            directory.down = StoreUnavailable("postgresql://edgegw@db:5432/edgegw", "connection refused")
            s.goto("#/dashboard")
            page.wait_for_selector("[data-testid=nodes-error]")
            self.assertIn("postgresql://edgegw@db:5432/edgegw", page.inner_text("[data-testid=nodes-error]"))
            page.wait_for_selector("[data-testid=card-endpoints]")
            s.shot("dashboard-nodes-store-down")

        yield self.in_browser(steps)


ECHO = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    let custom = req.header("x-custom").cloned().unwrap_or_default();
    let consumer = req.header("x-edgegw-consumer").cloned().unwrap_or_default();
    Response::ok(json!({"method": req.method, "custom": custom, "consumer": consumer}))
}

handler_loop!(handle);
"""

# A script the browser runs on a page: fetch `url` with a header no simple
# request may carry (so the browser asks with a preflight first); what it got,
# or the error the fetch was rejected with.
CROSS_ORIGIN_FETCH = """async (url) => {
  try {
    const response = await fetch(url, {headers: {"X-Custom": "from-the-page"}});
    return {ok: true, status: response.status, body: await response.json(),
            requestId: response.headers.get("x-request-id")};
  } catch (error) {
    return {ok: false, error: error.name};
  }
}"""


class _Page(Resource):
    """A page with nothing on it, the origin a cross-origin fetch is made from."""

    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return b"<!doctype html><html><head><title>another site</title></head><body>another site</body></html>"


class CorsBrowserIntegrationTests(AdminUITestCase):

    def site(self):
        """A tiny web site on a port of its own (another origin than the gateway's): its base URL."""
        port = reactor.listenTCP(0, Site(_Page()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return "http://127.0.0.1:%d" % port.getHost().port

    @inlineCallbacks
    def test_the_browser_enforces_a_cors_policy(self):
        """
        A route whose policy allows the origin http://127.0.0.1:<A> and the
        header X-Custom: a page served from port A fetches it with X-Custom
        (a preflight first), and reads the handler's answer and an exposed
        header; the same fetch from a page on port B (not allowed) is rejected
        by the browser (TypeError), the handler's answer unread.
        """
        allowed, other = self.site(), self.site()
        deployed = yield self.gateway.deploy("cors-echo", "/cors-echo", ECHO)
        policy = {
            "cors": {
                "allow_origins": [allowed],
                "allow_methods": ["GET"],
                "allow_headers": ["X-Custom"],
                "expose_headers": ["X-Request-Id"],
                "max_age": 60,
            }
        }
        code, document = yield self.gateway.call("PUT", "/endpoints/" + deployed["id"], {"policy": policy})
        self.assertEqual(code, 200, document)
        url = self.gateway.base + "/cors-echo"
        answers = {}

        def steps(s):
            page = s.page
            page.goto(allowed + "/")
            answers["allowed"] = page.evaluate(CROSS_ORIGIN_FETCH, url)
            page.goto(other + "/")
            answers["other"] = page.evaluate(CROSS_ORIGIN_FETCH, url)
            # The browser says why in its console; that is the behaviour under test, not a problem of a page.
            refused = [p for p in s.problems if "blocked by CORS policy" in p]
            self.assertTrue(refused, s.problems)
            s.problems[:] = [p for p in s.problems if p not in refused]

        yield self.in_browser(steps)
        self.assertEqual(answers["allowed"]["ok"], True, answers)
        self.assertEqual(answers["allowed"]["status"], 200)
        self.assertEqual(answers["allowed"]["body"], {"method": "GET", "custom": "from-the-page", "consumer": ""})
        self.assertTrue(answers["allowed"]["requestId"], "the exposed x-request-id is readable")
        self.assertEqual(answers["other"], {"ok": False, "error": "TypeError"})


class PolicyPagesIntegrationTests(AdminUITestCase):

    @inlineCallbacks
    def test_policies_edited_on_each_level_and_the_effective_one_shown(self):
        """
        A collection's policy with an origin that is not one: the API's 400 is
        shown under the JSON at its line (3), the text kept; fixed, it is saved
        and listed. A domain's rate limit and the endpoint's own limits are
        saved from their pages; the endpoint page shows the effective policy:
        cors from its collection (named), rate_limit from its domain, limits
        from itself; the API has each record's own policy as typed.
        """
        code, domain = yield self.gateway.call("POST", "/domains", {"host": "api.example.com"})
        self.assertEqual(code, 201, domain)
        code, collection = yield self.gateway.call(
            "POST", "/collections", {"name": "shop", "domain_id": domain["data"]["id"], "base_path": "/shop"}
        )
        self.assertEqual(code, 201, collection)
        code, endpoint = yield self.gateway.call(
            "POST", "/endpoints", {"name": "cart", "path": "/cart", "method": "GET", "collection_id": collection["data"]["id"]}
        )
        self.assertEqual(code, 201, endpoint)
        endpoint_id = endpoint["data"]["id"]
        bad = '{\n  "cors": {\n    "allow_origins": ["not an origin"]\n  }\n}'
        cors = {"allow_origins": ["https://app.example.com"]}
        rate_limit = {"requests": 10, "per_seconds": 60, "key": "ip"}
        own = {"limits": {"timeout": 5}}

        def steps(s):
            page = s.page
            s.sign_in(self.gateway.key)
            s.goto("#/domains")
            collections = page.locator("[data-testid=collections]")
            collections.locator("button:has-text('Edit')").first.click()
            collections.locator("[data-testid=policy-input]").fill(bad)
            page.click("[data-testid=collection-save]")
            problem = collections.locator("[data-testid=policy-error]")
            problem.wait_for()
            self.assertEqual(problem.get_attribute("data-line"), "3")
            self.assertIn("allow_origins[0]", problem.inner_text())
            self.assertEqual(collections.locator("[data-testid=policy-input]").input_value(), bad)
            s.shot("collection-policy-refused")
            collections.locator("[data-testid=policy-input]").fill(json.dumps({"cors": cors}, indent=2))
            page.click("[data-testid=collection-save]")
            page.wait_for_selector("[data-testid=collection-policy]:has-text('cors')")

            domains = page.locator("[data-testid=domains]")
            domains.locator("button:has-text('Edit')").first.click()
            domains.locator("[data-testid=policy-input]").fill(json.dumps({"rate_limit": rate_limit}))
            page.click("[data-testid=domain-save]")
            page.wait_for_selector("[data-testid=domain-policy]:has-text('rate_limit')")
            s.shot("domains-with-policies")

            s.goto("#/endpoints/" + endpoint_id)
            page.wait_for_selector("[data-testid=policy] [data-testid=policy-input]")
            page.fill("[data-testid=policy] [data-testid=policy-input]", json.dumps(own))
            page.click("[data-testid=save-policy]")
            page.wait_for_selector("[data-testid=effective-policy] [data-source=endpoint]")
            rows = page.locator("table[data-testid=effective-policy] tbody tr")
            found = {}
            for i in range(rows.count()):
                cells = rows.nth(i).locator("td")
                found[cells.nth(0).inner_text()] = (cells.nth(1).locator("span").first.get_attribute("data-source"), cells.nth(1).inner_text())
            self.assertEqual(found["cors"], ("collection", "its collection (shop)"))
            self.assertEqual(found["rate_limit"], ("domain", "its domain (api.example.com)"))
            self.assertEqual(found["limits"][0], "endpoint")
            self.assertEqual(sorted(found), ["cors", "limits", "rate_limit"])
            s.shot("endpoint-effective-policy")

        yield self.in_browser(steps)
        _, record = yield self.gateway.call("GET", "/endpoints/" + endpoint_id)
        self.assertEqual(record["data"]["policy"], own)
        _, record = yield self.gateway.call("GET", "/collections/" + collection["data"]["id"])
        self.assertEqual(record["data"]["policy"]["cors"], cors)
        _, record = yield self.gateway.call("GET", "/domains/" + domain["data"]["id"])
        self.assertEqual(record["data"]["policy"]["rate_limit"]["requests"], 10)


class ConsumersPageIntegrationTests(AdminUITestCase):

    @inlineCallbacks
    def test_consumers_created_given_a_key_disabled_and_deleted(self):
        """
        The Consumers page creates a consumer, gives it a key shown once (with
        Copy) that opens a route whose policy asks for an API key (the handler
        told the consumer's name); Disable makes the key refused (401); its
        key and then the consumer are deleted from the page.
        """
        deployed = yield self.gateway.deploy("keyed", "/keyed", ECHO)
        policy = {"auth": {"type": "api_key", "header": "X-API-Key"}}
        code, document = yield self.gateway.call("PUT", "/endpoints/" + deployed["id"], {"policy": policy})
        self.assertEqual(code, 200, document)
        shown = {}

        def create(s):
            page = s.page
            s.sign_in(self.gateway.key)
            s.goto("#/consumers")
            page.wait_for_selector("[data-testid=consumers] h2")
            page.fill("[data-testid=consumer-name]", "mobile-app")
            page.click("[data-testid=create-consumer]")
            row = page.locator("[data-testid=consumers-table] tbody tr", has_text="mobile-app")
            row.wait_for()
            self.assertEqual(row.locator("[data-testid=consumer-state]").inner_text(), "enabled")
            row.locator("[data-testid=new-consumer-key-button]").click()
            shown["key"] = page.input_value("[data-testid=consumer-key-value]")
            page.click("[data-testid=copy-consumer-key]")
            row.locator("[data-testid=consumer-keys] li").wait_for()
            s.shot("consumer-key-shown-once")
            page.click("[data-testid=new-consumer-key] button:has-text('Done')")
            self.assertEqual(page.locator("[data-testid=consumer-key-value]").count(), 0)

        yield self.in_browser(create)
        key = shown["key"]
        self.assertTrue(key)
        code, listed = yield self.gateway.call("GET", "/consumers")
        self.assertNotIn(key, json.dumps(listed), "the key is shown once, never listed")
        response, body = yield self.gateway.request("GET", "/keyed", headers={"X-API-Key": key})
        self.assertEqual(response.code, 200, body)
        self.assertEqual(json.loads(body)["consumer"], "mobile-app")

        def disable(s):
            page = s.page
            s.sign_in(self.gateway.key)
            s.goto("#/consumers")
            row = page.locator("[data-testid=consumers-table] tbody tr", has_text="mobile-app")
            row.locator("[data-testid=toggle-consumer]:has-text('Disable')").click()
            row.locator("[data-testid=consumer-state]:has-text('disabled')").wait_for()
            s.shot("consumer-disabled")

        yield self.in_browser(disable)
        response, _ = yield self.gateway.request("GET", "/keyed", headers={"X-API-Key": key})
        self.assertEqual(response.code, 401)

        def delete(s):
            page = s.page
            s.sign_in(self.gateway.key)
            s.goto("#/consumers")
            row = page.locator("[data-testid=consumers-table] tbody tr", has_text="mobile-app")
            row.locator("[data-testid=delete-consumer-key]").click()
            page.click("dialog.confirm-dialog button:has-text('Delete key')")
            row.locator(":text('no key')").wait_for()
            row.locator("[data-testid=delete-consumer]").click()
            page.click("dialog.confirm-dialog button:has-text('Delete')")
            page.wait_for_selector("[data-testid=consumers] :text('No consumers yet.')")

        yield self.in_browser(delete)
        code, listed = yield self.gateway.call("GET", "/consumers")
        self.assertEqual(listed["data"]["items"], [])


class TrafficSplitIntegrationTests(AdminUITestCase):

    @inlineCallbacks
    def test_the_endpoint_page_shows_the_split(self):
        """
        An endpoint split 70/30 between two compiled versions: its page lists
        both versions with their weights, and the requests each was given add
        up to the 20 sent after the split was placed.
        """
        from twisted.internet.task import deferLater

        deployed = yield self.gateway.deploy("split", "/split", ECHO)
        endpoint_id = deployed["id"]
        first = deployed["version"]
        code, document = yield self.gateway.call("PUT", "/endpoints/" + endpoint_id, {"code": ECHO.replace('"custom"', '"header"')})
        self.assertEqual(code, 200, document)
        code, compiled = yield self.gateway.call("POST", "/endpoints/%s/compile" % endpoint_id)
        self.assertEqual(code, 200, compiled)
        second = compiled["data"]["build"]["digest"][:12]
        split = {"versions": [{"version": first, "weight": 70}, {"version": second, "weight": 30}]}
        code, document = yield self.gateway.call("PUT", "/endpoints/" + endpoint_id, {"policy": {"traffic_split": split}})
        self.assertEqual(code, 200, document)
        for _ in range(600):  # both versions' pools start before the split is placed
            _, record = yield self.gateway.call("GET", "/endpoints/" + endpoint_id)
            if len(record["data"]["traffic"]) == 2:
                break
            yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual([t["version"] for t in record["data"]["traffic"]], [first, second], record["data"])
        for _ in range(20):
            response, _ = yield self.gateway.request("GET", "/split")
            self.assertEqual(response.code, 200)

        def steps(s):
            page = s.page
            s.sign_in(self.gateway.key)
            s.goto("#/endpoints/" + endpoint_id)
            page.wait_for_function(
                "() => { const t = document.querySelector('[data-testid=traffic-table]'); if (!t) return false;"
                " return [...t.querySelectorAll('tbody tr')].reduce((n, r) => n + Number(r.cells[2].textContent), 0) === 20; }"
            )
            rows = page.locator("[data-testid=traffic-table] tbody tr")
            self.assertEqual(rows.count(), 2)
            self.assertEqual(rows.nth(0).locator("td").nth(0).inner_text(), first)
            self.assertEqual(rows.nth(0).locator("td").nth(1).inner_text(), "70 %")
            self.assertEqual(rows.nth(1).locator("td").nth(0).inner_text(), second)
            self.assertEqual(rows.nth(1).locator("td").nth(1).inner_text(), "30 %")
            s.shot("endpoint-traffic-split")

        yield self.in_browser(steps)
