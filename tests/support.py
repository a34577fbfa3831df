"""
Fakes shared by the unit tests.

``SynchronousReactor`` runs "thread" work inline, so code that uses adbapi or
``deferToThreadPool`` can be tested against a real SQLite file with no threads
and no real time: every Deferred has fired by the time the call returns.
"""

from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHostnameResolver
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer


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
    Resolves the names it is given, every other name to C{fallback} (none by
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
