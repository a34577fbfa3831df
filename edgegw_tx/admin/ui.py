"""
The Admin UI: the static files of ``admin_ui/`` served at ``/admin/`` by the
control plane, beside the management API (docs/admin-ui.md).

The files are read once, when the gateway starts (a few dozen kilobytes;
restart the gateway to serve edited ones), with a strong ETag each and a gzip
copy of the text ones, so the reactor never touches the disk for them. Every
answer forbids what the UI does not need: scripts and styles only from this
origin and no inline ones (``Content-Security-Policy``), no MIME sniffing,
no framing, no referrer. ``/admin`` and ``/`` redirect to ``/admin/``.
"""

import gzip
import hashlib
import os
from urllib.parse import unquote

from twisted.web.resource import Resource
from twisted.web.server import Request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UI_DIRECTORY = os.path.join(ROOT, "admin_ui")
PREFIX = b"/admin/"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
_COMPRESSIBLE = (".html", ".js", ".mjs", ".css", ".svg", ".json", ".txt")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class _File:
    """One servable file, read once: its bytes, gzipped copy (when smaller) and ETag."""

    __slots__ = ("data", "gzipped", "content_type", "etag")

    def __init__(self, data: bytes, content_type: str, compress: bool) -> None:
        self.data = data
        self.content_type = content_type.encode("ascii")
        self.etag = b'"' + hashlib.sha256(data).hexdigest()[:20].encode("ascii") + b'"'
        self.gzipped: bytes | None = None
        if compress and len(data) > 256:
            packed = gzip.compress(data, compresslevel=9, mtime=0)
            if len(packed) < len(data):
                self.gzipped = packed


def load_files(directory: str) -> dict[str, _File]:
    """``{"/admin/<relative path>": _File}`` of the servable files under ``directory``."""
    files: dict[str, _File] = {}
    if not os.path.isdir(directory):
        return files
    for folder, subfolders, names in os.walk(directory):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(names):
            extension = os.path.splitext(name)[1].lower()
            if name.startswith(".") or extension not in CONTENT_TYPES:
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            with open(path, "rb") as f:
                data = f.read()
            files["/admin/" + relative] = _File(data, CONTENT_TYPES[extension], extension in _COMPRESSIBLE)
    return files


class AdminUI(Resource):
    """``/admin/...``: the UI's files, read once (``load_files``)."""

    isLeaf = True

    def __init__(self, directory: str = UI_DIRECTORY) -> None:
        Resource.__init__(self)
        self.directory = directory
        self.files = load_files(directory)

    def render(self, request: Request) -> bytes:
        for header, value in SECURITY_HEADERS:
            request.setHeader(header, value)
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return _text(request, "the Admin UI's files can only be read (GET)\n")
        path = request.path
        if path == b"/admin" or path == b"/":
            return _redirect(request, b"/admin/")
        try:
            name = unquote(path.decode("ascii"), errors="strict")
        except (UnicodeDecodeError, ValueError):
            request.setResponseCode(404)
            return _text(request, "no such file\n")
        if name == "/admin/":
            name = "/admin/index.html"
        entry = self.files.get(name)
        if entry is None:
            request.setResponseCode(404)
            if not self.files:
                return _text(request, f"the Admin UI is not installed: no files in {self.directory}\n")
            return _text(request, "no such file in the Admin UI\n")
        request.setHeader(b"content-type", entry.content_type)
        request.setHeader(b"etag", entry.etag)
        # Revalidated on every load (a 304 is a few bytes): an upgraded gateway is never half-cached.
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"vary", b"accept-encoding")
        wanted = request.getHeader(b"if-none-match")
        if wanted is not None and entry.etag in [t.strip() for t in wanted.split(b",")]:
            request.setResponseCode(304)
            return b""
        data = entry.data
        accepted = (request.getHeader(b"accept-encoding") or b"").lower()
        if entry.gzipped is not None and b"gzip" in accepted:
            request.setHeader(b"content-encoding", b"gzip")
            data = entry.gzipped
        return data  # twisted.web sets Content-Length, and writes no body for HEAD


def _text(request: Request, message: str) -> bytes:
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return message.encode("utf-8")


def _redirect(request: Request, location: bytes) -> bytes:
    request.setResponseCode(301)
    request.setHeader(b"location", location)
    request.setHeader(b"cache-control", b"no-store")
    return _text(request, "the Admin UI is at /admin/\n")


def is_ui_path(path: bytes) -> bool:
    """Whether the control plane answers ``path`` (bytes) with the UI rather than the API."""
    return path == b"/" or path == b"/admin" or path.startswith(PREFIX)


_DEFAULT: list[AdminUI] = []


def default_ui() -> AdminUI:
    """The ``AdminUI`` of ``admin_ui/``, loaded once per process."""
    if not _DEFAULT:
        _DEFAULT.append(AdminUI())
    return _DEFAULT[0]
