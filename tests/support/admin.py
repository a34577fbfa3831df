"""
The management API over a runtime of fakes (``fake_runtime``) and how its
tests call it: the base class of the admin API tests, so that none borrows
another module's setUp.
"""

import json

from treq.testing import StubTreq
from twisted.trial import unittest

from tests.support.fakes import fake_runtime
from tests.support.handlers import HELLO


class AdminAPITestCase(unittest.TestCase):
    """
    ``self.runtime``, a ``GatewayRuntime`` of fakes, with its managers and
    API as attributes, a StubTreq ``client`` on the API, and an ``admin`` and
    a ``read`` key (``keyed_store``).
    """

    def setUp(self):
        self.build()

    def build(self, **options):
        """(Re)build the runtime over the test's store, collections and domains loaded as a start loads them."""
        runtime = self.runtime = fake_runtime(self, **options)
        self.builder, self.routes, self.manager, self.api = runtime.builder, runtime.routes, runtime.manager, runtime.api
        self.collections, self.domains = runtime.collections, runtime.domains
        self.successResultOf(self.collections.load())
        self.successResultOf(self.domains.load())
        self.client = StubTreq(self.api.resource())

    def call(self, method, path, body=None, key="admin", raw=None):
        """(status, decoded JSON) of one call; ``key`` is ``admin``, ``read``, a key itself or None."""
        code, _, document = self.exchange(method, path, body, key, raw)
        return code, document

    def exchange(self, method, path, body=None, key="admin", raw=None, headers=None):
        """(status, response headers, decoded JSON) of one call sending ``headers`` too; as ``call``."""
        headers = dict(headers or {})
        if key is not None:
            headers["Authorization"] = "Bearer " + (
                {"admin": self.admin_key, "read": self.read_key}.get(key, key)
            )
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        d = self.client.request(method, "http://admin" + path, headers=headers, data=data)
        self.client.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        return response.code, response.headers, json.loads(content)

    def created(self, path, body):
        """POST ``body`` to ``path``: the record, asserting a 201."""
        code, document = self.call("POST", path, body)
        self.assertEqual(code, 201, document)
        return document["data"]

    def started(self, endpoint):
        """``endpoint`` (a record) compiled and started through the API: the started record (its pool is a fake)."""
        self.assertEqual(self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])[0], 200)
        code, document = self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        self.assertEqual(code, 200, document)
        return document["data"]

    def create_hello(self, **overrides):
        """The HELLO endpoint at GET /hello (``overrides`` changes the body)."""
        body = {"name": "hello", "path": "/hello", "method": "GET", "code": HELLO}
        body.update(overrides)
        return self.created("/api/endpoints", body)
