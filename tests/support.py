"""
Fakes shared by the unit tests.

``SynchronousReactor`` runs "thread" work inline, so code that uses adbapi or
``deferToThreadPool`` can be tested against a real SQLite file with no threads
and no real time: every Deferred has fired by the time the call returns.
"""

from twisted.internet.testing import MemoryReactorClock


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
