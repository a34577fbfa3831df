"""
Fakes shared by the unit tests: a synchronous reactor, real SQLite stores on
it, a resolver, the build and process planes of the management API, the
service registry, and a stored endpoint record.

``SynchronousReactor`` runs "thread" work inline, so code that uses adbapi or
``deferToThreadPool`` can be tested against a real SQLite file with no threads
and no real time: every Deferred has fired by the time the call returns.
"""

import json
from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IHostnameResolver
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from edgegw_tx.build.cargo import CompileFailed


class SynchronousThreadPool:
    """The part of ``ThreadPool`` that ``deferToThreadPool`` uses, run inline."""

    def callInThreadWithCallback(self, onResult, func, *args, **kwargs):
        try:
            result = func(*args, **kwargs)
        except BaseException:
            from twisted.python.failure import Failure

            onResult(False, Failure())
        else:
            onResult(True, result)

    def start(self):
        pass

    def stop(self):
        pass


class SynchronousReactor(MemoryReactorClock):
    """A memory reactor and clock whose thread pool and callFromThread are inline."""

    def __init__(self):
        super().__init__()
        self._pool = SynchronousThreadPool()

    def getThreadPool(self):
        return self._pool

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


def make_store(test_case, reactor=None):
    """A real SQLiteStore in the test's temp dir, running synchronously."""
    import os

    from edgegw_tx.store import SQLiteStore

    reactor = reactor or SynchronousReactor()
    directory = test_case.mktemp()
    store = SQLiteStore(
        os.path.join(directory, "store.sqlite3"),
        reactor=reactor,
        threadpool=reactor.getThreadPool(),
    )
    test_case.successResultOf(store.open())
    test_case.addCleanup(store.close)
    return store


def keyed_store(test_case):
    """
    The admin tests' common ground: a SynchronousReactor far from time zero, a
    real store, and a KeyRing holding an ``admin`` and a ``read`` key. Sets
    ``reactor``, ``store``, ``keys``, ``admin_key`` and ``read_key`` on the test.
    """
    from edgegw_tx.admin.auth import KeyRing

    test_case.reactor = SynchronousReactor()
    test_case.reactor.advance(1_000_000)
    test_case.store = make_store(test_case, test_case.reactor)
    test_case.keys = KeyRing(test_case.store, reactor=test_case.reactor)
    test_case.successResultOf(test_case.keys.load())
    _, test_case.admin_key = test_case.successResultOf(test_case.keys.create("test", "admin"))
    _, test_case.read_key = test_case.successResultOf(test_case.keys.create("viewer", "read"))


@implementer(IHostnameResolver)
class StubResolver:
    """
    Resolves the names it is given, every other name to ``fallback`` (none by
    default), and sends no DNS query: allow-list names in tests never leave
    the machine.
    """

    def __init__(self, names: dict[str, list[str]], fallback: Sequence[str] = ()):
        self.names = names
        self.fallback = list(fallback)
        self.asked: list[str] = []

    def resolveHostName(
        self,
        receiver: Any,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Any = None,
        transportSemantics: str = "TCP",
    ) -> Any:
        self.asked.append(hostName)
        receiver.resolutionBegan(None)
        for address in self.names.get(hostName, self.fallback):
            receiver.addressResolved(IPv4Address("TCP", address, portNumber))
        receiver.resolutionComplete()
        return None


class FakeBuildResult:
    def __init__(self, digest):
        self.digest = digest
        self.cached = False
        self.seconds = 0.5
        self.dependencies = ["serde", "serde_json"]
        self.binary = "/artifacts/" + digest + "/handler"


class FakeBuilder:
    """Compiles any code containing ``handler_loop!``; other code fails on line 1."""

    sandbox = None  # the real builder's build sandbox, None where there is none

    def __init__(self):
        self.builds = []
        self.pending = None

    def build(self, endpoint_id, code, extra_dependencies=None):
        self.builds.append((endpoint_id, code, extra_dependencies))
        if self.pending is not None:
            return self.pending
        if "handler_loop!" not in code:
            return fail(
                CompileFailed(
                    [
                        {
                            "level": "error",
                            "message": "`main` function not found in crate",
                            "line": 1,
                            "column": 1,
                            "rendered": "error[E0601]: `main` function not found",
                        }
                    ]
                )
            )
        return succeed(FakeBuildResult("d%d" % len(self.builds)))

    def artifact(self, digest):
        return "/artifacts/" + digest + "/handler"

    def fetch(self, digest):
        """Every digest is stored here already (``artifact``), so nothing is ever fetched."""
        return succeed(self.artifact(digest))

    def remove_artifact(self, digest):
        return succeed(False)


class FakePool:
    instances = []

    def __init__(self, record, binary, log, version=None):
        self.name = record["name"]
        self.binary = binary
        self.log = log
        self.version = version
        self.settings = record["settings"]
        self.pids = []
        self.started = False
        self.stopped = False
        self.start_error = None
        FakePool.instances.append(self)

    def start(self):
        if self.start_error is not None:
            return fail(self.start_error)
        self.started = True
        self.pids = [4242]
        self.log("stderr", "worker up")
        return succeed(self.pids)

    def stop(self):
        self.stopped = True
        self.pids = []
        return succeed(None)

    def request(self, frame):
        return Deferred()

    def workers(self):
        state = "draining" if self.stopped else "ready"
        return [
            {"pid": pid, "version": self.version, "state": state, "served": 0, "in_flight": 0}
            for pid in self.pids
        ]

    def stats(self):
        return {"name": self.name, "workers": len(self.pids), "queued": 0}


class FakeRegistry:
    """Records every call of the ``ServiceRegistry`` interface; keeps bindings like it."""

    def __init__(self, events=None):
        self.events = events if events is not None else []
        self.configured = {}
        self.removed = []
        self.bound = {}
        self.handlers = {}
        self.test_result = succeed({"latency_ms": 1.5})
        self.tested = []
        self.closed = False

    def configure(self, service):
        self.events.append(("configure", service["id"]))
        self.configured[service["id"]] = json.loads(json.dumps(service))

    def remove(self, service_id):
        self.events.append(("remove", service_id))
        self.removed.append(service_id)
        self.configured.pop(service_id, None)
        return succeed(None)

    def bind(self, endpoint_id, pool_id, service_id):
        self.events.append(("bind", endpoint_id, pool_id, service_id))
        self.bound.setdefault(endpoint_id, {})[pool_id] = service_id

    def unbind(self, endpoint_id, pool_id):
        self.events.append(("unbind", endpoint_id, pool_id))
        self.bound.get(endpoint_id, {}).pop(pool_id, None)

    def bindings(self, endpoint_id):
        return dict(self.bound.get(endpoint_id, {}))

    def call_handler(self, endpoint_id):
        def handler(frame):
            return succeed({"ok": True, "data": None})

        self.handlers[endpoint_id] = handler
        return handler

    def test(self, service):
        self.tested.append(service)
        return self.test_result

    def close(self):
        self.events.append(("close",))
        self.closed = True
        return succeed(None)


def endpoint(**overrides):
    record = {
        "id": "e1",
        "name": "hello",
        "path": "/hello",
        "path_shape": "/hello",
        "method": "GET",
        "domain": "*",
        "code": "fn main() {}",
        "enabled": True,
        "settings": {"instances": 1, "timeout": 30.0, "env": {}},
        "status": "created",
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
    }
    record.update(overrides)
    return record


def fake_runtime(test_case, **options):
    """
    A ``GatewayRuntime`` on fakes in one line, not started: ``keyed_store``'s
    reactor, store and keys (set on ``test_case`` too; those already there
    are used, so a test can build a second runtime on its store), a
    ``FakeBuilder``, ``FakePool``s, a ``FakeRegistry`` and rlimits-only
    isolation (no host tool is looked for).  ``options`` are more or other
    constructor arguments; a test giving ``store`` gives ``reactor`` and
    ``keys`` with it.
    """
    import os

    from edgegw_tx.runtime import GatewayRuntime
    from edgegw_tx.workers.isolation import RLIMITS_ONLY, Isolation

    FakePool.instances = []
    arguments = dict(
        data_dir=os.path.abspath(test_case.mktemp()),
        listen="tcp:0:interface=127.0.0.1",
        admin_listen="tcp:0:interface=127.0.0.1",
        sdk_path="/nonexistent/rust_sdk",
        builder=FakeBuilder(),
        pool_factory=FakePool,
        registry=FakeRegistry(),
        isolation=Isolation(RLIMITS_ONLY, {}),
    )
    if "store" not in options:
        if getattr(test_case, "store", None) is None:
            keyed_store(test_case)
        arguments.update(reactor=test_case.reactor, store=test_case.store, keys=test_case.keys)
    arguments.update(options)
    return GatewayRuntime(**arguments)
