"""
The OpenAPI document of the management API (``edgegw_tx/admin/openapi.py``).

Offline: it is valid OpenAPI 3.1 (openapi-spec-validator), it has exactly one
operation per route of the Klein app, and ``GET /api/openapi.json`` serves it
without a key.

Live: schemathesis runs all its checks (as ``--checks all``, answers slower
than 30 s failing too) against a real gateway (real store, real cargo, real
worker processes) with an admin key, and must find nothing: no 5xx, no status,
content type, header or body that the document does not describe, no
schema-valid request refused, no invalid one accepted. It runs as a child
process (the reactor keeps serving the API while it waits), in all its phases
(coverage, fuzzing, stateful along the document's links), with a data dir of
its own, so it may delete whatever it finds. ``tests/schemathesis_hooks.py``
tells it that a raw ``application/zip`` body is bytes.
What differs from a production gateway, and why:

* the brute-force throttle of failed authentications is lifted: schemathesis
  sends requests without a key on purpose (to check they answer 401), and a
  throttled address gets 429 for everything after a few of them. The throttle
  has its own tests (``tests/test_admin_keys.py``).
* postgres and redis services connect only to loopback hosts: schemathesis
  invents host names and addresses, and this suite sends traffic nowhere but
  127.0.0.0/8 (no DNS either). A test of any other host fails the way an
  unreachable backend does (502, ``ServiceUnavailable``) without connecting.

Per-operation settings (``SCHEMATHESIS_CONFIG``), for what a schema cannot
say and schemathesis's generic checks would misread:

* creating or changing an endpoint, a collection or a domain, changing a
  service and importing may refuse schema-valid data with 400: the schema
  says what a ``domain``, ``collection_id`` or ``domain_id`` looks like, not
  which records exist (one that does not is a 400); a service's new config
  must be of its stored type; a spec or a zip must be a valid one; a
  ``policy``'s parts have rules that read fields together or parse them (a
  CIDR, an origin's host, an algorithm with its key: docs/policies.md). No
  schema of a string or of bytes can say these. Every other check still
  runs on these operations;
* ``POST /api/endpoints/{id}/compile`` may refuse a request with 422: the
  request is well formed but the stored code does not compile;
* the operations on one endpoint or collection are not asked to find the
  record just created (``ensure_resource_availability``): a cascading delete
  (``DELETE /api/domains/{id}?cascade=true``, or of a collection) removes
  endpoints and collections without a DELETE on their own path, which is the
  only delete schemathesis knows of; and a binding's 404 may name the body's
  ``service_id``, which schemathesis takes for the endpoint. The check still
  runs for services, domains and keys;
* 413 counts as refusing a request: a body over 8 MiB, which a string within
  its ``maxLength`` can make once JSON escapes it;
* 412 counts as refusing a request: a well-formed ``If-Match`` names a
  revision, and whether the record is still at it is the store's to say
  (checked before the body, so a bad body at a stale revision is a 412);
* ``POST /api/services/{id}/test`` may answer 502: the backend failed, which
  is the documented outcome of testing a service whose backend is down.
* ``POST /api/test-request`` may answer 502 or 504: the data plane refused the
  request or took longer than the ``timeout`` asked for (``1e-300`` is a
  valid one), the documented outcomes of a test request.

``EDGEGW_SCHEMATHESIS_EXAMPLES`` (default 40) and ``EDGEGW_SCHEMATHESIS_SEED``
(default fixed, for a repeatable run; ``random`` for a new one) tune the run.
"""

import ipaddress
import json
import os
import re
import sys
from urllib.parse import urlsplit

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from edgegw_tx import __version__
from edgegw_tx.admin.api import AdminAPI
from edgegw_tx.admin.openapi import DOCUMENT, DOCUMENT_JSON
from edgegw_tx.admin.throttle import AuthThrottle
from edgegw_tx.runtime import GatewayRuntime
from tests.support.handlers import HELLO
from tests.support.harness import ROOT, SDK, SHARED_TARGET, GatewayHarness, _cargo_or_skip
from tests.support.fakes import StubResolver

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

# What a schema cannot say (see the module docstring), as schemathesis.toml.
SCHEMATHESIS_CONFIG = """
# Every check; an answer slower than 30 s is a failure too.
[checks]
enabled = true
max_response_time = 30

[phases.stateful]
max-steps = 40

# 413 (a body over 8 MiB, which a long enough string of escaped characters
# makes) is a refusal like any other.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "413", "415", "422", "428", "429", "5xx"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "413", "429", "5xx"]

[[operations]]
include-operation-id = [
  "createEndpoint", "updateEndpoint", "createCollection", "updateCollection",
  "createDomain", "updateDomain", "updateService", "importOpenapi", "importBundle",
]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "412", "413", "429"]

[[operations]]
include-operation-id = "compileEndpoint"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

[[operations]]
include-path-regex = "^/api/(endpoints|collections)/[{]"
checks.ensure_resource_availability.enabled = false

[[operations]]
include-operation-id = "testService"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "502"]

[[operations]]
include-operation-id = "testRequest"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "502", "504"]
"""


def document_operations():
    """``{(path, METHOD)}`` of the document."""
    return {
        (path, method.upper())
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def app_operations():
    """``{(path, METHOD)}`` of the Klein app, its rules written as OpenAPI paths."""
    operations = set()
    for rule in AdminAPI.app.url_map.iter_rules():
        paths = [rule.rule]
        # <any(a, b):name> is one path per choice.
        while any("<any(" in p for p in paths):
            expanded = []
            for path in paths:
                match = re.search(r"<any\(([^)]*)\):\w+>", path)
                if match is None:
                    expanded.append(path)
                    continue
                for choice in match.group(1).split(","):
                    expanded.append(path[: match.start()] + choice.strip() + path[match.end() :])
            paths = expanded
        for path in paths:
            path = re.sub(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>", r"{\1}", path)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                operations.add((path, method))
    return operations


class DocumentTests(unittest.SynchronousTestCase):
    def test_valid_openapi_3_1(self):
        """openapi-spec-validator finds nothing wrong with the document."""
        from openapi_spec_validator import OpenAPIV31SpecValidator, validate

        self.assertEqual(DOCUMENT["openapi"], "3.1.0")
        validate(DOCUMENT, cls=OpenAPIV31SpecValidator)

    def test_version(self):
        """``info.version`` is the gateway's version."""
        self.assertEqual(DOCUMENT["info"]["version"], __version__)

    def test_every_route_is_described(self):
        """Each route of the app is an operation of the document, and nothing else is."""
        app, document = app_operations(), document_operations()
        self.assertEqual(sorted(app - document), [], "routes the document does not describe")
        self.assertEqual(sorted(document - app), [], "operations the app does not serve")

    def test_operation_ids_are_unique(self):
        ids = [
            op["operationId"]
            for item in DOCUMENT["paths"].values()
            for method, op in item.items()
            if method in HTTP_METHODS
        ]
        self.assertEqual(len(ids), len(set(ids)))

    def test_keyed_operations_answer_401(self):
        """Every operation but health and this document needs a key and says so."""
        for path, item in DOCUMENT["paths"].items():
            for method, op in item.items():
                if method not in HTTP_METHODS:
                    continue
                public = op.get("security") == []
                self.assertEqual(
                    public, path in ("/api/health", "/api/openapi.json"), (method, path)
                )
                if not public:
                    self.assertIn("401", op["responses"], (method, path))
                    self.assertIn("429", op["responses"], (method, path))
                    self.assertEqual("403" in op["responses"], method != "get", (method, path))

    def test_service_rules_match_the_service_plane(self):
        """admin/schema.py's service config rules are the service plane's own objects, not copies."""
        from edgegw_tx.admin import schema
        from edgegw_tx.services import config

        for name in ("SERVICE_TYPES", "SSL_MODES", "MAX_POOL_SIZE", "MASK"):
            self.assertIs(getattr(schema, name), getattr(config, name), name)

    def test_body_caps_match_the_api(self):
        """The body caps the document states are api.py's."""
        from edgegw_tx.admin import api, openapi

        self.assertEqual(openapi.MAX_BODY, api.MAX_BODY)
        self.assertEqual(openapi.IMPORT_MAX_BODY, api.IMPORT_MAX_BODY)

    def test_served_without_a_key(self):
        """GET /api/openapi.json answers the document, bare, with no Authorization header."""
        from treq.testing import StubTreq

        api = AdminAPI(None, None, Clock())
        client = StubTreq(api.resource())
        response = self.successResultOf(client.get("http://admin/api/openapi.json"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        body = self.successResultOf(response.content())
        self.assertEqual(body, DOCUMENT_JSON)
        self.assertEqual(json.loads(body), DOCUMENT)


class FoundBySchemathesisTests(unittest.TestCase):
    """What running the document against the API found wrong, fixed."""

    def test_whole_float_is_an_integer(self):
        """``2.0`` is the integer 2 (JSON Schema says so, and JSON has one number type)."""
        from edgegw_tx.admin.errors import BadRequest
        from edgegw_tx.admin.validation import endpoint_fields
        from edgegw_tx.services.config import ConfigError, validate_config

        fields = endpoint_fields({"name": "a", "path": "/a", "method": "GET", "instances": 2.0, "pipeline": 8.0})
        self.assertEqual((fields["settings"]["min_instances"], fields["settings"]["pipeline"]), (2, 8))
        self.assertIs(type(fields["settings"]["min_instances"]), int)
        config = validate_config("redis", {"host": "127.0.0.1", "pool_size": 99.0}, name="r")
        self.assertEqual(config["pool_size"], 99)
        self.assertIs(type(config["pool_size"]), int)
        for wrong in (2.5, True, "2", float("inf")):
            with self.assertRaises(BadRequest):
                endpoint_fields({"name": "a", "path": "/a", "method": "GET", "instances": wrong})
            with self.assertRaises(ConfigError):
                validate_config("redis", {"host": "127.0.0.1", "port": wrong}, name="r")

    @inlineCallbacks
    def test_malformed_form_answers_the_envelope(self):
        """A multipart body with no part is the API's JSON 400, not Twisted's bare one."""
        import treq

        runtime = GatewayRuntime(
            os.path.abspath(self.mktemp()),
            "tcp:0:interface=127.0.0.1",
            "tcp:0:interface=127.0.0.1",
            sdk_path=SDK,
        )
        yield runtime.startService()
        self.addCleanup(runtime.stopService)
        _, admin = yield runtime.ports()
        with open(os.path.join(runtime.data_dir, "admin.key")) as f:
            key = f.read().strip()
        response = yield treq.post(
            "http://127.0.0.1:%d/api/import/bundle" % admin.getHost().port,
            data=b"--b--\r\n",
            headers={"Authorization": "Bearer " + key, "Content-Type": "multipart/form-data; boundary=b"},
            persistent=False,
        )
        self.assertEqual(response.code, 400)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        document = yield response.json()
        self.assertEqual((document["ok"], document["field"]), (False, "bundle"))

    def test_query_name_not_utf8(self):
        """``?%ff=1`` is a parameter the list does not know, not a 500 (found by hand, alongside)."""
        from treq.testing import StubTreq

        from edgegw_tx.admin.auth import KeyRing
        from edgegw_tx.admin.logs import LogBook
        from edgegw_tx.admin.manager import EndpointManager
        from edgegw_tx.gateway.routes import RouteTable
        from tests.support.fakes import SynchronousReactor, make_store

        reactor_ = SynchronousReactor()
        store = make_store(self, reactor_)
        keys = KeyRing(store, reactor=reactor_)
        self.successResultOf(keys.load())
        _, key = self.successResultOf(keys.create("test", "admin"))
        manager = EndpointManager(store, None, RouteTable(), None, LogBook(reactor_))
        client = StubTreq(AdminAPI(manager, keys, reactor_).resource())
        d = client.get("http://admin/api/endpoints?%ff=1", headers={"Authorization": "Bearer " + key})
        client.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)


# -- live ---------------------------------------------------------------------


def _loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Unreachable:
    """A connector for a host this suite may not reach: fails like a backend that is down."""

    def __init__(self, host):
        self._host = host

    def _refuse(self, *args, **kwargs):
        from twisted.internet.defer import fail

        from edgegw_tx.services.errors import SERVICE_UNAVAILABLE, ServiceError

        return fail(
            ServiceError(SERVICE_UNAVAILABLE, f"{self._host} is not a loopback host (test gateway)")
        )

    def __getattr__(self, name):
        return self._refuse

    def close(self):
        return succeed(None)


def _loopback_only(factory):
    def make(config, **kwargs):
        if _loopback(config["host"]):
            return factory(config, **kwargs)
        return _Unreachable(config["host"])

    return make


def _s3_loopback_only(factory):
    """Storage connectors, but an S3 one of a non-loopback endpoint (or AWS's: none) is unreachable."""

    def make(config, **kwargs):
        if config.get("backend") != "s3":
            return factory(config, **kwargs)
        host = urlsplit(config["endpoint"] or "https://s3.amazonaws.com").hostname or ""
        if _loopback(host):
            return factory(config, **kwargs)
        return _Unreachable(host)

    return make


class SchemathesisHarness(GatewayHarness):
    """A GatewayHarness whose gateway reaches loopback hosts only and does not throttle."""

    @inlineCallbacks
    def start(self):
        from edgegw_tx.services.registry import ServiceRegistry

        registry = ServiceRegistry(self.data_dir, reactor=reactor)
        registry.connector_types = dict(
            registry.connector_types,
            postgres=_loopback_only(registry.connector_types["postgres"]),
            redis=_loopback_only(registry.connector_types["redis"]),
            storage=_s3_loopback_only(registry.connector_types["storage"]),
        )
        self.runtime = GatewayRuntime(
            self.data_dir,
            "tcp:0:interface=127.0.0.1",
            "tcp:0:interface=127.0.0.1",
            sdk_path=SDK,
            cargo=self.cargo,
            build_target_dir=SHARED_TARGET,
            registry=registry,
        )
        self.runtime.api._throttle = AuthThrottle(reactor, burst=10**9)
        # Allow-list names that schemathesis makes up resolve to TEST-NET-1
        # without a DNS query: nothing leaves the machine.
        self.runtime.network.resolver = StubResolver({}, fallback=["192.0.2.1"])
        yield self.runtime.startService()
        data, admin = yield self.runtime.ports()
        self.base = "http://127.0.0.1:%d" % data.getHost().port
        self.api = "http://127.0.0.1:%d/api" % admin.getHost().port
        with open(os.path.join(self.data_dir, "admin.key")) as f:
            self.key = f.read().strip()


class SchemathesisIntegrationTests(unittest.TestCase):
    # A cold cargo target dir builds the SDK's crates first (minutes); warm, ~30 s.
    timeout = 900

    @inlineCallbacks
    def setUp(self):
        cargo = _cargo_or_skip()
        try:
            import schemathesis  # noqa: F401
        except ImportError:
            raise unittest.SkipTest("schemathesis is not installed (make setup installs it)")
        os.makedirs(SHARED_TARGET, exist_ok=True)
        self.work = os.path.abspath(self.mktemp())
        os.makedirs(self.work)
        self.gateway = SchemathesisHarness(self, os.path.join(self.work, "data"), cargo)
        yield self.gateway.start()
        self.addCleanup(lambda: self.gateway.stop())

    @inlineCallbacks
    def test_schemathesis_finds_nothing(self):
        """schemathesis --checks all against the live API: 0 failures, 0 errors."""
        # Something of each kind to find: a running endpoint (warms cargo's
        # target dir too, so fuzzed compiles are quick), a service bound to
        # it, a domain and a collection on it.
        endpoint = yield self.gateway.deploy("hello", "/hello", HELLO)
        status, domain = yield self.gateway.call("POST", "/domains", {"host": "api.schemathesis.test"})
        self.assertEqual(status, 201, domain)
        status, collection = yield self.gateway.call(
            "POST",
            "/collections",
            {"name": "v1", "base_path": "/v1", "domain_id": domain["data"]["id"]},
        )
        self.assertEqual(status, 201, collection)
        status, service = yield self.gateway.call(
            "POST", "/services", {"name": "notes", "service_type": "sqlite"}
        )
        self.assertEqual(status, 201, service)
        status, bound = yield self.gateway.call(
            "POST",
            "/endpoints/%s/services" % endpoint["id"],
            {"service_id": service["data"]["id"], "pool_id": "db"},
        )
        self.assertEqual(status, 201, bound)

        config = os.path.join(self.work, "schemathesis.toml")
        with open(config, "w") as f:
            f.write(SCHEMATHESIS_CONFIG)
        report = os.path.join(self.work, "report.json")
        examples = os.environ.get("EDGEGW_SCHEMATHESIS_EXAMPLES", "40")
        seed = os.environ.get("EDGEGW_SCHEMATHESIS_SEED", "20261126")
        argv = ["-m", "schemathesis.cli", "--config-file", config, "--no-color", "run"]
        argv += [self.gateway.api + "/openapi.json"]
        argv += ["--header", "Authorization: Bearer " + self.gateway.key]
        argv += ["--max-examples", examples, "--request-timeout", "120"]
        argv += ["--report", "json", "--report-json-path", report]
        if seed != "random":
            argv += ["--seed", seed]
        env = dict(
            os.environ,
            NO_COLOR="1",
            SCHEMATHESIS_HOOKS="tests.schemathesis_hooks",
            PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
        )
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, argv, env=env, path=self.work, reactor=reactor
        )
        output = (out + err).decode("utf-8", "replace")
        with open(os.path.join(self.work, "schemathesis.txt"), "w") as f:
            f.write(output)
        with open(report) as f:
            result = json.load(f)
        cases = result["test_cases"]["generated"]
        summary = [line for line in output.splitlines() if re.search(r"\bin [0-9.]+s\b", line)]
        print(f"\nschemathesis: {cases} test cases, seed {result['seed']}")
        print(summary[-1] if summary else output[-2000:])
        failures = sum(f["count"] for f in result["failures"])
        self.assertEqual(
            (failures, len(result["errors"]), code), (0, 0, 0), output[-20000:]
        )
        # Every operation but GET /api/openapi.json, which schemathesis leaves
        # out as the one serving the document (DocumentTests cover it).
        operations = result["operations"]
        self.assertEqual(operations["total"], len(document_operations()) - 1, output[-5000:])
        self.assertEqual(operations["tested"], operations["total"], output[-5000:])
        self.assertGreater(cases, 100)
        # Not blind for part of the run: schemathesis may revoke keys, and
        # could revoke its own once it made another admin key.
        status, keys = yield self.gateway.call("GET", "/keys")
        self.assertEqual(status, 200, keys)
