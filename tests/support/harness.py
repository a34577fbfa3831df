"""
A whole gateway with its real parts, for the integration tests: real cargo
compiling real handlers, real worker processes, real HTTP over 127.0.0.1 on
ports chosen by the kernel.

The cargo target directory is shared between tests (and runs) in
``.cache/test-target`` so the suite pays the cold build of the common crates once.
"""

import fcntl
import json
import os
import socket
import sys
import tempfile

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, returnValue
from twisted.internet.protocol import ProcessProtocol
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

from edgegw_tx.build.cargo import CargoNotFound, find_cargo
from edgegw_tx.runtime import GatewayRuntime
from edgegw_tx.workers.isolation import DEFAULT_WORKER_UIDS

# Slices of the default worker uid range, one per test process (trial -j, or
# another run on this host): gateways of two processes drawing "the lowest
# free uid" at the same moment would give two endpoints the same uid.  The
# first slice is left to the ``twistd edgegw`` processes tests start, which
# draw from the start of the range.
UID_SLICE = 500
_claimed_slice = None  # the open lock file of this process's slice, kept for its life


def test_worker_uids():
    """This process's own slice of the default worker uids, claimed with a non-blocking flock; the whole range if none is free."""
    global _claimed_slice
    first, last = DEFAULT_WORKER_UIDS
    if _claimed_slice is None:
        for index in range(1, (last - first + 1) // UID_SLICE):
            lock = open(os.path.join(tempfile.gettempdir(), f"edgegw-test-uids-{index}.lock"), "a")
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            _claimed_slice = (lock, index)
            break
        else:
            return DEFAULT_WORKER_UIDS
    index = _claimed_slice[1]
    return (first + index * UID_SLICE, first + (index + 1) * UID_SLICE - 1)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


SDK = os.path.join(ROOT, "rust_sdk")


SHARED_TARGET = os.path.join(ROOT, ".cache", "test-target")


def _cargo_or_skip():
    try:
        return find_cargo(None)
    except CargoNotFound as e:
        raise unittest.SkipTest(str(e))


class GatewayHarness:
    """Start and stop a GatewayRuntime, and talk to it over real HTTP."""

    def __init__(self, test_case, data_dir, cargo, **runtime_options):
        self.test_case = test_case
        self.data_dir = data_dir
        self.cargo = cargo
        self.runtime_options = runtime_options  # more GatewayRuntime arguments
        if "worker_user" not in runtime_options:
            runtime_options.setdefault("worker_uids", test_worker_uids())
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = treq.client.HTTPClient(Agent(reactor, pool=self.pool))

    @inlineCallbacks
    def start(self):
        self.runtime = GatewayRuntime(
            self.data_dir,
            "tcp:0:interface=127.0.0.1",
            "tcp:0:interface=127.0.0.1",
            sdk_path=SDK,
            cargo=self.cargo,
            build_target_dir=SHARED_TARGET,
            **self.runtime_options,
        )
        yield self.runtime.startService()
        ports = yield self.runtime.ports()
        data, admin = ports[:2]  # then --metrics-listen's, when given
        self.ports = ports
        self.base = "http://127.0.0.1:%d" % data.getHost().port
        self.api = "http://127.0.0.1:%d/api" % admin.getHost().port
        with open(os.path.join(self.data_dir, "admin.key")) as f:
            self.key = f.read().strip()

    def stop(self):
        return self.runtime.stopService()

    @inlineCallbacks
    def call(self, method, path, body=None):
        response = yield self.http.request(
            method,
            self.api + path,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": "Bearer " + self.key},
        )
        document = yield response.json()
        returnValue((response.code, document))

    @inlineCallbacks
    def get(self, path):
        response = yield self.http.get(self.base + path)
        content = yield response.content()
        returnValue((response, content))

    @inlineCallbacks
    def request(self, method, path, **kwargs):
        """A request to the data plane: (response, body bytes)."""
        response = yield self.http.request(method, self.base + path, **kwargs)
        content = yield response.content()
        returnValue((response, content))

    @inlineCallbacks
    def deploy(self, name, path, code, method="GET", routes=None, **settings):
        """
        Create, compile and start an endpoint at ``method`` ``path``, or at
        every (method, path) of ``routes``; its record once started.
        """
        body = {"name": name, "code": code, "settings": settings}
        if routes is None:
            body.update(path=path, method=method)
        else:
            body["routes"] = [{"method": m, "path": p} for m, p in routes]
        code_, created = yield self.call("POST", "/endpoints", body)
        self.test_case.assertEqual(code_, 201, created)
        endpoint_id = created["data"]["id"]
        status, compiled = yield self.call("POST", "/endpoints/%s/compile" % endpoint_id)
        self.test_case.assertEqual(status, 200, compiled)
        status, started = yield self.call("POST", "/endpoints/%s/start" % endpoint_id)
        self.test_case.assertEqual(status, 200, started)
        returnValue(started["data"])


class GatewayTestCase(unittest.TestCase):
    """
    A real gateway per test in ``self.gateway``; skipped when there is no cargo.
    ``runtime_options``: more GatewayRuntime arguments.
    """

    timeout = 600
    runtime_options = {}

    @inlineCallbacks
    def setUp(self):
        cargo = _cargo_or_skip()
        os.makedirs(SHARED_TARGET, exist_ok=True)
        self.gateway = GatewayHarness(
            self, os.path.abspath(self.mktemp()), cargo, **self.runtime_options
        )
        yield self.gateway.start()
        self.addCleanup(lambda: self.gateway.stop())

    @inlineCallbacks
    def json_request(self, method, path, **kwargs):
        """A data-plane request whose answer is JSON (or empty): (response, decoded body)."""
        response, content = yield self.gateway.request(method, path, **kwargs)
        returnValue((response, json.loads(content) if content else None))

    @inlineCallbacks
    def service(self, name, service_type, config):
        """Create a service through the API; its record."""
        code, document = yield self.gateway.call(
            "POST", "/services", {"name": name, "service_type": service_type, "config": config}
        )
        self.assertEqual(code, 201, document)
        returnValue(document["data"])

    @inlineCallbacks
    def deploy_routes(self, name, code, routes, bindings, env=None, **settings):
        """
        Deploy ``code`` as one endpoint serving every (method, path) of
        ``routes``, with service ``bindings`` ({pool id: service id}), ``env``
        and other ``settings``; its id.
        """
        started = yield self.gateway.deploy(name, None, code, routes=routes, env=env or {}, **settings)
        for pool_id, service_id in bindings.items():
            status, bound = yield self.gateway.call(
                "POST",
                "/endpoints/%s/services" % started["id"],
                {"service_id": service_id, "pool_id": pool_id},
            )
            self.assertIn(status, (200, 201), bound)
        returnValue(started["id"])


class _Collect(ProcessProtocol):
    """A child's output (both streams) and its exit status."""

    def __init__(self, ended):
        self.ended = ended
        self.output = b""

    def childDataReceived(self, fd, data):
        self.output += data

    def processEnded(self, reason):
        self.ended.callback((reason.value.exitCode, reason.value.signal))


@inlineCallbacks
def run_twistd_until_it_ends(data_dir):
    """
    Start a real ``twistd -n edgegw`` on ``data_dir`` (loopback ports, no
    cargo) and wait for it to end, for tests of what refuses to start:
    fires with ``((exit code, signal), output of both streams as text)``.
    """
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    ended = Deferred()
    collector = _Collect(ended)
    reactor.spawnProcess(
        collector,
        twistd,
        [twistd, "-n", "--pidfile=", "edgegw", "--data-dir", data_dir,
         "--listen", "tcp:0:interface=127.0.0.1", "--admin-listen", "tcp:0:interface=127.0.0.1",
         "--cargo", "/bin/false"],
        env=dict(os.environ),
        path=ROOT,
    )
    status = yield ended
    returnValue((status, collector.output.decode(errors="replace")))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

