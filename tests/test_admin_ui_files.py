"""
The Admin UI's files as the control plane serves them (``edgegw_tx/admin/ui.py``),
and static checks of ``admin_ui/`` itself: nothing fetched from elsewhere, no
inline script, no HTML built from strings. The UI in a browser is
``tests/test_admin_ui.py``.
"""

import gzip
import os
import re

from treq.testing import StubTreq
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from edgegw_tx.admin.api import AdminAPI
from edgegw_tx.admin.ui import CONTENT_SECURITY_POLICY, UI_DIRECTORY, AdminUI, load_files
from tests.support.fakes import keyed_store


class ServingTests(unittest.TestCase):
    def setUp(self):
        folder = self.mktemp()
        os.makedirs(os.path.join(folder, "js"))
        os.makedirs(os.path.join(folder, ".git"))
        self.files = {
            "index.html": b"<!doctype html><title>x</title>" + b" " * 600,
            "js/app.js": b"export const a = 1;\n",
            "app.css": b"body{}",
            "notes.bak": b"not served",
            ".git/config": b"secret",
        }
        for name, data in self.files.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        self.ui = AdminUI(folder)
        self.client = StubTreq(self.ui)

    def get(self, path, method="GET", **headers):
        d = self.client.request(method, "http://admin" + path, headers=headers)
        self.client.flush()
        response = self.successResultOf(d)
        return response, self.successResultOf(response.content())

    def test_index_and_headers(self):
        """/admin/ is index.html, with a strict CSP, nosniff, no framing, and revalidation."""
        response, body = self.get("/admin/")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, self.files["index.html"])
        headers = response.headers
        self.assertEqual(headers.getRawHeaders("content-type"), ["text/html; charset=utf-8"])
        self.assertEqual(headers.getRawHeaders("content-security-policy"), [CONTENT_SECURITY_POLICY])
        self.assertIn("script-src 'self'", CONTENT_SECURITY_POLICY)
        self.assertNotIn("unsafe-inline", CONTENT_SECURITY_POLICY)
        self.assertEqual(headers.getRawHeaders("x-content-type-options"), ["nosniff"])
        self.assertEqual(headers.getRawHeaders("x-frame-options"), ["DENY"])
        self.assertEqual(headers.getRawHeaders("cache-control"), ["no-cache"])

    def test_content_types(self):
        """Modules are JavaScript, styles CSS."""
        response, body = self.get("/admin/js/app.js")
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/javascript; charset=utf-8"])
        self.assertEqual(body, self.files["js/app.js"])
        response, _ = self.get("/admin/app.css")
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/css; charset=utf-8"])

    def render(self, path, **headers):
        """The resource's answer as it is written (treq would follow redirects and gunzip)."""
        request = DummyRequest([])
        request.path = path.encode()
        for name, value in headers.items():
            request.requestHeaders.setRawHeaders(name, [value])
        body = self.ui.render(request)
        return request, body

    def test_redirects(self):
        """/admin and / lead to /admin/."""
        for path in ("/admin", "/"):
            request, _ = self.render(path)
            self.assertEqual((request.responseCode, request.responseHeaders.getRawHeaders("location")), (301, ["/admin/"]))

    def test_only_known_files(self):
        """Unknown names, other extensions, hidden folders and escapes are 404s."""
        for path in ("/admin/nope.js", "/admin/notes.bak", "/admin/.git/config", "/admin/../app.css",
                     "/admin/%2e%2e/x", "/admin/%ff"):
            response, body = self.get(path)
            self.assertEqual(response.code, 404, path)
            self.assertNotIn(b"secret", body)

    def test_read_only(self):
        """Only GET and HEAD."""
        response, _ = self.get("/admin/", method="POST")
        self.assertEqual((response.code, response.headers.getRawHeaders("allow")), (405, ["GET, HEAD"]))
        response, body = self.get("/admin/", method="HEAD")
        self.assertEqual((response.code, body), (200, b""))

    def test_etag_and_gzip(self):
        """An unchanged file is a 304; a client that takes gzip gets it compressed."""
        response, _ = self.get("/admin/")
        [etag] = response.headers.getRawHeaders("etag")
        response, body = self.get("/admin/", **{"If-None-Match": etag})
        self.assertEqual((response.code, body), (304, b""))
        request, body = self.render("/admin/", **{"Accept-Encoding": "gzip, deflate"})
        self.assertEqual(request.responseHeaders.getRawHeaders("content-encoding"), ["gzip"])
        self.assertEqual(gzip.decompress(body), self.files["index.html"])
        request, body = self.render("/admin/")
        self.assertEqual((request.responseHeaders.getRawHeaders("content-encoding"), body), (None, self.files["index.html"]))

    def test_not_installed(self):
        """A gateway without the UI's files says so."""
        self.client = StubTreq(AdminUI(self.mktemp()))
        response, body = self.get("/admin/")
        self.assertEqual(response.code, 404)
        self.assertIn(b"not installed", body)


class MountedTests(unittest.TestCase):
    def test_beside_the_api(self):
        """The control plane serves the UI under /admin/ and the API under /api/."""
        keyed_store(self)
        client = StubTreq(AdminAPI(None, self.keys, self.reactor).resource())
        d = client.get("http://admin/admin/")
        client.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertIn(b'src="js/main.js"', self.successResultOf(response.content()))
        d = client.get("http://admin/api/health")
        client.flush()
        self.assertEqual(self.successResultOf(d).code, 200)


class SourceTests(unittest.TestCase):
    """What the standards of the UI forbid, checked in its source."""

    def setUp(self):
        self.sources = {}
        for folder, _, names in os.walk(UI_DIRECTORY):
            for name in names:
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    self.sources[os.path.relpath(path, UI_DIRECTORY)] = f.read()

    def test_every_file_is_served(self):
        """Every file of admin_ui/ has a content type the server knows."""
        self.assertEqual(sorted("/admin/" + name for name in self.sources), sorted(load_files(UI_DIRECTORY)))

    def test_nothing_from_elsewhere(self):
        """No URL of another origin: the UI works with no network (no CDN)."""
        for name, text in self.sources.items():
            found = re.findall(r"""(?:src|href|url|import)\s*[=(]?\s*["']?(?:https?:)?//""", text)
            self.assertEqual(found, [], name)

    def test_no_inline_script(self):
        """Scripts are files (the CSP forbids inline ones)."""
        html = self.sources["index.html"]
        for tag in re.findall(r"<script\b[^>]*>", html):
            self.assertIn("src=", tag)
        self.assertNotRegex(html, r"\son[a-z]+\s*=")

    def test_no_html_from_strings(self):
        """The DOM is built with text nodes: no innerHTML, outerHTML, insertAdjacentHTML or document.write."""
        for name, text in self.sources.items():
            if name.endswith(".js"):
                self.assertNotRegex(text, r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(", name)
