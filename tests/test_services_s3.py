"""
Tests for L{edgegw_tx.services.s3}: the storage service's S3-compatible
backend, through the broker (the ``call`` frames workers send) on the real
reactor and its thread pool, against a real S3-compatible server (moto's
server mode, L{tests.support.s3server}) on loopback, one bucket per test;
then a whole gateway: the management API on an S3 service and a compiled
handler (docs/examples/services/files.rs) storing its files in the bucket.
"""

import base64
import json
import os

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, inlineCallbacks, returnValue
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from edgegw_tx.services.config import MASK
from edgegw_tx.services.errors import ServiceError
from edgegw_tx.services.registry import ServiceRegistry
from edgegw_tx.services.s3 import S3StorageConnector

from tests.support.handlers import example
from tests.support.harness import GatewayTestCase
from tests.support.s3server import S3Server


def b64(data):
    return base64.b64encode(data).decode("ascii")


class S3StorageTests(unittest.TestCase):
    """One moto server and one fresh bucket per test; calls through the broker."""

    async def _start(self, **extra):
        self.server = await S3Server.start(self)
        self.bucket = await self.server.bucket()
        self.registry = ServiceRegistry(self.mktemp(), reactor=reactor)
        self.addCleanup(self.registry.close)
        self.registry.configure({"id": "s", "name": "objects", "service_type": "storage",
                                 "config": self.server.config(self.bucket, **extra)})
        self.registry.bind("e", "blobs", "s")
        self.handler = self.registry.call_handler("e")

    def call(self, action, **args):
        return self.handler({"type": "call", "id": 1, "request": "r", "service": "storage",
                             "pool": "blobs", "action": action, "args": args})

    def run_async(self, coroutine):
        return ensureDeferred(coroutine)

    async def _operations(self):
        await self._start()
        self.assertIsInstance(self.registry._services["s"].connector, S3StorageConnector)
        data = bytes(range(256))
        put = await self.call("put", key="img/cat.bin", data_base64=b64(data),
                              content_type="image/x-cat")
        self.assertEqual(put, {"ok": True, "data": {"key": "img/cat.bin", "size": 256}})
        await self.call("put", key="img/dog.txt", data_base64=b64(b"woof"))
        await self.call("put", key="readme", data_base64=b64(b"hi"), content_type="text/plain")

        got = await self.call("get", key="img/cat.bin")
        self.assertEqual(got, {"ok": True, "data": {"data_base64": b64(data),
                                                    "content_type": "image/x-cat", "size": 256}})
        dog = await self.call("get", key="img/dog.txt")
        self.assertEqual(dog["data"]["content_type"], "application/octet-stream")

        listed = await self.call("list", prefix="img/")
        self.assertEqual(listed["data"], [{"key": "img/cat.bin", "size": 256},
                                          {"key": "img/dog.txt", "size": 4}])
        everything = await self.call("list")
        self.assertEqual([o["key"] for o in everything["data"]], ["img/cat.bin", "img/dog.txt", "readme"])

        # What the server holds is what was put: another client reads it back.
        def read_back():
            client = self.server.client()
            try:
                answer = client.get_object(Bucket=self.bucket, Key="img/cat.bin")
                return answer["Body"].read(), answer["ContentType"]
            finally:
                client.close()

        self.assertEqual(await deferToThread(read_back), (data, "image/x-cat"))

        self.assertEqual(await self.call("delete", key="img/cat.bin"), {"ok": True, "data": True})
        self.assertEqual(await self.call("delete", key="img/cat.bin"), {"ok": True, "data": False})
        self.assertEqual(await self.call("get", key="img/cat.bin"), {"ok": True, "data": None})
        self.assertEqual(await self.call("delete", key="img"), {"ok": True, "data": False},
                         "a prefix of a key is not a key")
        bad = await self.call("get", key="../x")
        self.assertEqual(bad["error"]["kind"], "StorageError")
        self.assertIn("'..'", bad["error"]["message"])

    def test_operations(self):
        """put, get (bytes and content type), list by prefix and delete work on the bucket; a missing key is null/false."""
        return self.run_async(self._operations())

    async def _missing_bucket(self):
        await self._start()

        def remove_bucket():
            client = self.server.client()
            try:
                client.delete_bucket(Bucket=self.bucket)
            finally:
                client.close()

        await deferToThread(remove_bucket)
        for action, args in (("put", {"key": "a", "data_base64": b64(b"x")}), ("get", {"key": "a"}),
                             ("delete", {"key": "a"}), ("list", {})):
            answer = await self.call(action, **args)
            self.assertEqual(answer["ok"], False, action)
            self.assertEqual(answer["error"]["kind"], "StorageError", action)
            self.assertIn("NoSuchBucket", answer["error"]["message"], action)
            self.assertIn(self.bucket, answer["error"]["message"], action)

    def test_missing_bucket(self):
        """Every action on a bucket that does not exist answers a StorageError naming the bucket and NoSuchBucket."""
        return self.run_async(self._missing_bucket())

    async def _wrong_secret(self):
        await self._start(secret_key="not-the-secret")
        answer = await self.call("put", key="a", data_base64=b64(b"x"))
        self.assertEqual(answer["error"]["kind"], "StorageError")
        self.assertIn("SignatureDoesNotMatch", answer["error"]["message"])
        self.assertNotIn("not-the-secret", answer["error"]["message"])

    def test_wrong_secret(self):
        """A wrong secret key is refused by the server: a StorageError saying SignatureDoesNotMatch (and not the secret)."""
        return self.run_async(self._wrong_secret())

    async def _unreachable(self):
        await self._start()
        await self.server.stop()
        answer = await self.call("get", key="a")
        self.assertEqual(answer["error"]["kind"], "ServiceUnavailable")
        self.assertIn("cannot reach the S3 bucket", answer["error"]["message"])

    def test_unreachable(self):
        """A server that is not there answers ServiceUnavailable, saying so."""
        return self.run_async(self._unreachable())

    async def _shared(self):
        await self._start()
        # A second service (another node's, in a cluster) on the same bucket sees the same objects.
        self.registry.configure({"id": "t", "name": "other", "service_type": "storage",
                                 "config": self.server.config(self.bucket, addressing_style="path")})
        self.registry.bind("e2", "blobs", "t")
        other = self.registry.call_handler("e2")
        await self.call("put", key="shared", data_base64=b64(b"one copy"))
        got = await other({"type": "call", "id": 2, "request": "r", "service": "storage",
                           "pool": "blobs", "action": "get", "args": {"key": "shared"}})
        self.assertEqual(base64.b64decode(got["data"]["data_base64"]), b"one copy")

    def test_two_services_share_the_bucket(self):
        """An object put through one service is read through another on the same bucket (what cluster nodes do)."""
        return self.run_async(self._shared())

    async def _test_probe(self):
        await self._start()
        tested = await self.registry.test({"id": "x", "name": "probe", "service_type": "storage",
                                           "config": self.server.config(self.bucket)})
        self.assertIsInstance(tested["latency_ms"], float)
        listed = await self.call("list")
        self.assertEqual(listed["data"], [], "the probe object is deleted")
        try:
            await self.registry.test({"id": "x", "name": "probe", "service_type": "storage",
                                      "config": self.server.config("no-such-bucket")})
        except ServiceError as e:
            self.assertEqual(e.kind, "StorageError")
            self.assertIn("NoSuchBucket", e.message)
        else:
            self.fail("testing a missing bucket succeeded")

    def test_registry_test(self):
        """test() puts, reads and deletes a probe object (leaving none), and fails naming a missing bucket."""
        return self.run_async(self._test_probe())


class S3GatewayIntegrationTests(GatewayTestCase):
    """A real gateway: the management API on an S3 storage service, and a compiled handler storing through it."""

    @inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.server = yield S3Server.start(self)
        self.bucket = yield self.server.bucket()

    @inlineCallbacks
    def create(self, name, config):
        code, document = yield self.gateway.call(
            "POST", "/services", {"name": name, "service_type": "storage", "config": config}
        )
        returnValue((code, document))

    @inlineCallbacks
    def test_api(self):
        """POST/GET mask both keys; a bad endpoint or a missing bucket is a 400 naming it; /test answers 200, or 502 naming the missing bucket."""
        code, created = yield self.create("objects", self.server.config(self.bucket))
        self.assertEqual(code, 201, created)
        config = created["data"]["config"]
        self.assertEqual((config["access_key"], config["secret_key"]), (MASK, MASK))
        self.assertEqual((config["backend"], config["bucket"], config["path"]), ("s3", self.bucket, None))
        code, got = yield self.gateway.call("GET", "/services/%s" % created["data"]["id"])
        self.assertEqual((code, got["data"]["config"]["secret_key"]), (200, MASK))
        self.assertNotIn(self.server.secret_key, json.dumps(got))

        code, tested = yield self.gateway.call("POST", "/services/%s/test" % created["data"]["id"])
        self.assertEqual(code, 200, tested)
        self.assertIsInstance(tested["data"]["latency_ms"], float)

        code, missing = yield self.create("gone", self.server.config("no-such-bucket"))
        self.assertEqual(code, 201, missing)
        code, failed = yield self.gateway.call("POST", "/services/%s/test" % missing["data"]["id"])
        self.assertEqual((code, failed["kind"]), (502, "StorageError"), failed)
        self.assertIn("'no-such-bucket': NoSuchBucket", failed["error"])

        code, refused = yield self.create("bad", self.server.config(self.bucket, endpoint="ftp://example"))
        self.assertEqual((code, refused["field"]), (400, "config.endpoint"), refused)
        self.assertIn("not an http:// or https:// URL", refused["error"])
        code, refused = yield self.create("bad", {"backend": "s3"})
        self.assertEqual((code, refused["field"]), (400, "config.bucket"), refused)

    @inlineCallbacks
    def test_files_example(self):
        """docs/examples/services/files.rs, compiled, stores, reads, lists and deletes its files in the bucket."""
        code, service = yield self.create("files", self.server.config(self.bucket))
        self.assertEqual(code, 201, service)
        code_text = example("files")
        for method, path in (("PUT", "/files/{name}"), ("GET", "/files/{name}"), ("GET", "/files"), ("DELETE", "/files/{name}")):
            started = yield self.gateway.deploy(
                "files-%s%s" % (method.lower(), path.replace("/", "-").replace("{", "").replace("}", "")),
                path, code_text, method=method,
            )
            status, bound = yield self.gateway.call(
                "POST", "/endpoints/%s/services" % started["id"],
                {"service_id": service["data"]["id"], "pool_id": "files"},
            )
            self.assertIn(status, (200, 201), bound)

        data = bytes(range(256)) * 8
        response, created = yield self.json_request(
            "PUT", "/files/blob.bin", data=data, headers={"Content-Type": "application/x-blob"}
        )
        self.assertEqual((response.code, created), (201, {"name": "blob.bin", "size": len(data)}))
        response, content = yield self.gateway.request("GET", "/files/blob.bin")
        self.assertEqual((response.code, content), (200, data))
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/x-blob"])
        response, listing = yield self.json_request("GET", "/files")
        self.assertEqual(listing, {"files": [{"name": "blob.bin", "size": len(data)}]})

        # The object is in the bucket (where another node would read it), not under the data dir.
        def read_back():
            client = self.server.client()
            try:
                return client.get_object(Bucket=self.bucket, Key="blob.bin")["Body"].read()
            finally:
                client.close()

        self.assertEqual((yield deferToThread(read_back)), data)
        self.assertFalse(os.path.exists(os.path.join(self.gateway.data_dir, "services", "files")))

        response, _ = yield self.json_request("DELETE", "/files/blob.bin")
        self.assertEqual(response.code, 204)
        response, body = yield self.json_request("GET", "/files/blob.bin")
        self.assertEqual(response.code, 404, body)
        response, body = yield self.json_request("DELETE", "/files/blob.bin")
        self.assertEqual(response.code, 404, body)
