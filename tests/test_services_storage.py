"""
Tests for L{edgegw_tx.services.storage}: key validation, confinement to the
root (including symlinks), atomic writes, per-key order, listing.  File work
runs inline on L{SynchronousReactor}, against a real temp folder; one
round trip goes through the broker on the real reactor's thread pool.
"""

import base64
import os

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial import unittest

from edgegw_tx.services.errors import ServiceError
from edgegw_tx.services.registry import ServiceRegistry
from edgegw_tx.services.storage import StorageConnector, check_key, check_prefix

from tests.support.fakes import SynchronousReactor


def b64(data):
    return base64.b64encode(data).decode("ascii")


class KeyTests(unittest.TestCase):
    def test_valid(self):
        """Ordinary keys, nested keys, dot-files and unicode are accepted."""
        for key in ("a", "img/cat.png", ".hidden", "a/.b/c", "ünï/cødé", "x" * 250):
            self.assertEqual(check_key(key), key)

    def test_invalid(self):
        """Each invalid key is a StorageError naming the key."""
        cases = {
            "": "empty",
            "/abs": "start with '/'",
            "a/../b": "'..' segment",
            "..": "'..' segment",
            "./a": "'.' segment",
            "a//b": "empty segment",
            "a/": "empty segment",
            "a\\b": "backslash",
            "a\x00b": "control",
            "a\nb": "control",
            "x" * 1025: "longer than 1024",
            "é" * 126: "longer than 250 bytes",
        }
        for key, problem in cases.items():
            e = self.assertRaises(ServiceError, check_key, key)
            self.assertEqual(e.kind, "StorageError")
            self.assertIn(problem, e.message, key)
            self.assertIn(repr(key)[:40], e.message)
        self.assertEqual(self.assertRaises(ServiceError, check_key, 5).kind, "StorageError")

    def test_prefixes(self):
        """A prefix may be empty or end in a partial or empty segment, but not climb."""
        for prefix in ("", "img/", "img/ca", "a/b/.", ".."):
            self.assertEqual(check_prefix(prefix), prefix)
        for prefix in ("../x", "/a", "a//b", "a\\b"):
            self.assertRaises(ServiceError, check_prefix, prefix)


class StorageTestCase(unittest.TestCase):
    def setUp(self):
        self.data_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.data_dir)
        self.reactor = SynchronousReactor()
        self.storage = self.connector("files")

    def connector(self, path):
        return StorageConnector(
            {"path": path}, data_dir=self.data_dir, name="files",
            call_timeout=5.0, reactor=self.reactor,
        )

    def call(self, action, **args):
        return self.successResultOf(self.storage.call(action, args))

    def error(self, action, **args):
        try:
            d = self.storage.call(action, args)
        except ServiceError as e:
            return e
        return self.failureResultOf(d, ServiceError).value

    @property
    def root(self):
        return os.path.join(self.data_dir, "services", "files")


class StorageTests(StorageTestCase):
    def test_put_get(self):
        """put stores bytes and content type; get returns them with the size."""
        self.assertEqual(
            self.call("put", key="img/cat.png", data_base64=b64(b"\x89PNG"),
                      content_type="image/png"),
            {"key": "img/cat.png", "size": 4},
        )
        self.assertEqual(
            self.call("get", key="img/cat.png"),
            {"data_base64": b64(b"\x89PNG"), "content_type": "image/png", "size": 4},
        )
        with open(os.path.join(self.root, "objects", "img", "cat.png"), "rb") as f:
            self.assertEqual(f.read(), b"\x89PNG")

    def test_default_content_type(self):
        """Without content_type an object is application/octet-stream."""
        self.call("put", key="k", data_base64=b64(b""))
        self.assertEqual(self.call("get", key="k")["content_type"], "application/octet-stream")

    def test_get_missing(self):
        """get of a missing key is null."""
        self.assertIsNone(self.call("get", key="nope"))
        self.assertIsNone(self.call("get", key="no/such/folder"))

    def test_overwrite(self):
        """put replaces an object and its content type; no temp file is left."""
        self.call("put", key="a", data_base64=b64(b"one"), content_type="text/plain")
        self.call("put", key="a", data_base64=b64(b"second"), content_type="text/csv")
        self.assertEqual(
            self.call("get", key="a"),
            {"data_base64": b64(b"second"), "content_type": "text/csv", "size": 6},
        )
        self.assertEqual(os.listdir(os.path.join(self.root, "tmp")), [])

    def test_delete(self):
        """delete says whether the key existed and prunes empty folders."""
        self.call("put", key="a/b/c", data_base64=b64(b"x"))
        self.assertTrue(self.call("delete", key="a/b/c"))
        self.assertFalse(self.call("delete", key="a/b/c"))
        self.assertIsNone(self.call("get", key="a/b/c"))
        self.assertEqual(os.listdir(os.path.join(self.root, "objects")), [])
        self.assertEqual(os.listdir(os.path.join(self.root, "meta")), [])
        # now "a" can be an object
        self.call("put", key="a", data_base64=b64(b"x"))

    def test_list(self):
        """list returns keys with the prefix, sorted, with sizes."""
        for key in ("b", "a/2", "a/1", "ab", "a/sub/x", "c/1"):
            self.call("put", key=key, data_base64=b64(key.encode()))
        self.assertEqual(
            [item["key"] for item in self.call("list", prefix="")],
            ["a/1", "a/2", "a/sub/x", "ab", "b", "c/1"],
        )
        self.assertEqual(
            self.call("list", prefix="a/"),
            [{"key": "a/1", "size": 3}, {"key": "a/2", "size": 3},
             {"key": "a/sub/x", "size": 7}],
        )
        self.assertEqual([i["key"] for i in self.call("list", prefix="a")],
                         ["a/1", "a/2", "a/sub/x", "ab"])
        self.assertEqual([i["key"] for i in self.call("list", prefix="a/s")], ["a/sub/x"])
        self.assertEqual(self.call("list", prefix="zzz/"), [])
        self.assertEqual(len(self.call("list")), 6)

    def test_list_skips_temp_and_links(self):
        """Files being written (tmp/) and symlinks are never listed."""
        self.call("put", key="a", data_base64=b64(b"x"))
        open(os.path.join(self.root, "tmp", "put-partial"), "wb").close()
        os.symlink("/etc/passwd", os.path.join(self.root, "objects", "link"))
        self.assertEqual(self.call("list", prefix=""), [{"key": "a", "size": 1}])

    def test_invalid_key_named(self):
        """An invalid key in a call is a StorageError naming it; nothing is written."""
        for key in ("../escape", "/etc/passwd", "a\\b", "a/../../b"):
            e = self.error("put", key=key, data_base64=b64(b"x"))
            self.assertEqual(e.kind, "StorageError")
            self.assertIn(repr(key), e.message)
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, "escape")))

    def test_symlink_escape(self):
        """A symlinked folder leading out of the root cannot be read or written through."""
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        with open(os.path.join(outside, "secret"), "wb") as f:
            f.write(b"secret")
        self.call("put", key="seed", data_base64=b64(b"x"))
        os.symlink(outside, os.path.join(self.root, "objects", "evil"))
        for action, args in (
            ("get", {"key": "evil/secret"}),
            ("put", {"key": "evil/new", "data_base64": b64(b"x")}),
            ("delete", {"key": "evil/secret"}),
            ("list", {"prefix": "evil/"}),
        ):
            e = self.error(action, **args)
            self.assertEqual(e.kind, "StorageError", action)
            self.assertIn("resolves outside", e.message)
        self.assertEqual(os.listdir(outside), ["secret"])

    def test_symlinked_file_escape(self):
        """A symlink named like a key and pointing out of the root is refused."""
        self.call("put", key="seed", data_base64=b64(b"x"))
        os.symlink("/etc/hostname", os.path.join(self.root, "objects", "host"))
        self.assertIn("resolves outside", self.error("get", key="host").message)

    def test_root_symlinked_out(self):
        """A storage folder that is a symlink out of <data_dir>/services is refused."""
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        os.makedirs(os.path.join(self.data_dir, "services"))
        os.symlink(outside, self.root)
        e = self.error("put", key="k", data_base64=b64(b"x"))
        self.assertIn("outside the services folder", e.message)
        self.assertEqual(os.listdir(outside), [])

    def test_prefix_conflicts(self):
        """A key cannot be both an object and the folder of other objects."""
        self.call("put", key="a", data_base64=b64(b"x"))
        e = self.error("put", key="a/b", data_base64=b64(b"x"))
        self.assertEqual(e.kind, "StorageError")
        self.assertIn("conflicts", e.message)
        self.call("put", key="d/e", data_base64=b64(b"x"))
        e = self.error("put", key="d", data_base64=b64(b"x"))
        self.assertIn("folder of other objects", e.message)
        self.assertEqual(os.listdir(os.path.join(self.root, "tmp")), [])

    def test_bad_arguments(self):
        """Bad base64, a missing key, an unknown action: BadRequest naming it."""
        e = self.error("put", key="k", data_base64="not base64!")
        self.assertEqual((e.kind, e.message),
                         ("BadRequest", "storage put: argument 'data_base64' is not valid base64"))
        e = self.error("get")
        self.assertEqual((e.kind, e.message), ("BadRequest", "storage get: missing argument 'key'"))
        e = self.error("get", key=3)
        self.assertEqual(e.message, "storage get: argument 'key' must be a string, not an integer")
        e = self.error("copy", key="k")
        self.assertEqual(e.kind, "BadRequest")

    def test_ping(self):
        """ping writes, reads and deletes a probe object and leaves nothing behind."""
        ms = self.successResultOf(self.storage.ping())
        self.assertIsInstance(ms, float)
        self.assertEqual(self.call("list"), [])

    def test_close(self):
        """After close, calls are refused as ServiceUnavailable."""
        self.successResultOf(self.storage.close())
        self.assertEqual(self.error("get", key="k").kind, "ServiceUnavailable")


class DeferredThreadPool:
    """A thread pool whose work runs only when the test says so."""

    def __init__(self):
        self.queue = []

    def callInThreadWithCallback(self, onResult, func, *args, **kwargs):
        self.queue.append((onResult, func, args, kwargs))

    def run_one(self):
        onResult, func, args, kwargs = self.queue.pop(0)
        onResult(True, func(*args, **kwargs))


class OrderTests(StorageTestCase):
    def setUp(self):
        super().setUp()
        self.pool = DeferredThreadPool()
        self.reactor.getThreadPool = lambda: self.pool

    def test_same_key_in_order(self):
        """Calls on one key wait for each other; other keys do not wait."""
        put = self.storage.call("put", {"key": "k", "data_base64": b64(b"1")})
        get = self.storage.call("get", {"key": "k"})
        other = self.storage.call("get", {"key": "other"})
        self.assertEqual(len(self.pool.queue), 2)  # the put and the other key's get
        self.pool.run_one()
        self.assertEqual(self.successResultOf(put)["size"], 1)
        self.pool.run_one()
        self.assertIsNone(self.successResultOf(other))
        self.pool.run_one()
        self.assertEqual(self.successResultOf(get)["size"], 1)
        self.assertEqual(self.storage._locks, {})

    def test_cancel_keeps_order(self):
        """A cancelled (timed-out) call still holds its key until its file work is done."""
        put = self.storage.call("put", {"key": "k", "data_base64": b64(b"1")})
        put.cancel()
        self.failureResultOf(put)
        get = self.storage.call("get", {"key": "k"})
        self.assertEqual(len(self.pool.queue), 1)
        self.pool.run_one()
        self.pool.run_one()
        self.assertEqual(self.successResultOf(get)["size"], 1)

    def test_close_waits(self):
        """close fires only once the calls in progress are done."""
        self.storage.call("put", {"key": "k", "data_base64": b64(b"1")})
        closed = self.storage.close()
        self.assertNoResult(closed)
        self.pool.run_one()
        self.successResultOf(closed)


class RegistryStorageTests(unittest.TestCase):
    """Through the broker on the real reactor and its real thread pool."""

    def setUp(self):
        self.data_dir = os.path.abspath(self.mktemp())
        self.registry = ServiceRegistry(self.data_dir, reactor=reactor)
        self.addCleanup(self.registry.close)
        self.registry.configure({"id": "f", "name": "files", "service_type": "storage",
                                 "config": {}})
        self.registry.bind("e", "blobs", "f")
        self.handler = self.registry.call_handler("e")

    def call(self, action, **args):
        return self.handler({"type": "call", "id": 1, "request": "r", "service": "storage",
                             "pool": "blobs", "action": action, "args": args})

    async def _round_trip(self):
        put = await self.call("put", key="docs/a.txt", data_base64=b64(b"hello"),
                              content_type="text/plain")
        self.assertEqual(put, {"ok": True, "data": {"key": "docs/a.txt", "size": 5}})
        got = await self.call("get", key="docs/a.txt")
        self.assertEqual(got["data"], {"data_base64": b64(b"hello"),
                                       "content_type": "text/plain", "size": 5})
        listed = await self.call("list", prefix="docs/")
        self.assertEqual(listed["data"], [{"key": "docs/a.txt", "size": 5}])
        deleted = await self.call("delete", key="docs/a.txt")
        self.assertEqual(deleted, {"ok": True, "data": True})
        bad = await self.call("get", key="../x")
        self.assertEqual(bad["error"]["kind"], "StorageError")
        self.assertTrue(os.path.isdir(os.path.join(self.data_dir, "services", "files",
                                                   "objects")))
        tested = await self.registry.test({"id": "t", "name": "probe",
                                           "service_type": "storage", "config": {}})
        self.assertIsInstance(tested["latency_ms"], float)

    def test_round_trip(self):
        """put, get, list, delete and test() through call_handler with real threads."""
        return ensureDeferred(self._round_trip())
