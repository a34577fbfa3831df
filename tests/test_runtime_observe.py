"""
The runtime's wiring of the data plane's bookkeeping: the observer its data
plane answers through, the access log opened at start and closed at stop,
SIGHUP reopening it, the health path draining from the start of shutdown
and the data plane serving on for --shutdown-delay before its listeners close.
"""

import os
import signal

from twisted.internet.defer import succeed
from twisted.trial import unittest

from edgegw_tx.observability.accesslog import AccessLog
from tests.support.fakes import fake_runtime


class FakeAccessLog:
    """Counts reopens and closes."""

    def __init__(self):
        self.reopened = 0
        self.closed = 0

    def write(self, line):
        pass

    def reopen(self):
        self.reopened += 1

    def close(self):
        self.closed += 1
        return succeed(None)


class RuntimeObserverTests(unittest.TestCase):
    def test_data_plane_answers_through_the_observer(self):
        """The data plane's dispatcher records in the runtime's RequestMetrics, with its health path."""
        runtime = fake_runtime(self, health_path="/-/ready")
        dispatcher = runtime._data_site.dispatcher
        self.assertIs(dispatcher.observer, runtime.observer)
        self.assertIs(runtime.observer.metrics, runtime.request_metrics)
        self.assertEqual(runtime.observer.health_path, "/-/ready")
        self.assertIsNone(runtime.observer.access_log)

    def test_starting_then_serving_then_draining(self):
        """The health path says starting until the routes are restored, draining once stop begins."""
        runtime = fake_runtime(self)
        observer = runtime.observer
        runtime.routes.restoring = True
        self.assertEqual(observer.health()[0], 503)
        self.successResultOf(runtime.startService())
        self.assertEqual(observer.health()[0], 200)
        self.successResultOf(runtime.stopService())
        self.assertEqual(observer.health()[0], 503)
        self.assertIn(b"draining", observer.health()[2])

    def test_shutdown_delay_serves_on_before_the_listeners_close(self):
        """
        --shutdown-delay: on stop the health path answers 503 at once, the
        listeners stay open and the workers run for the delay; then they close.
        """
        runtime = fake_runtime(self, shutdown_delay=3)
        self.successResultOf(runtime.startService())
        d = runtime.stopService()
        self.assertEqual(runtime.observer.health()[0], 503)
        self.reactor.advance(2.9)
        self.assertNoResult(d)
        self.assertEqual([service.running for service in runtime.listeners], [True, True])
        self.reactor.advance(0.1)
        self.successResultOf(d)
        self.assertEqual([service.running for service in runtime.listeners], [False, False])

    def test_no_shutdown_delay_closes_at_once(self):
        """Without --shutdown-delay (0) stop closes the listeners without waiting for the clock."""
        runtime = fake_runtime(self)
        self.successResultOf(runtime.startService())
        self.successResultOf(runtime.stopService())
        self.assertEqual([service.running for service in runtime.listeners], [False, False])

    def test_access_log_sighup_and_close(self):
        """
        --access-log: opened at start, reopened on SIGHUP, closed at stop,
        and the SIGHUP handler there before is given back.
        """
        before = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, before)
        runtime = fake_runtime(self, access_log=os.path.abspath(self.mktemp()))
        self.successResultOf(runtime.startService())
        real = runtime.observer.access_log
        self.assertIsInstance(real, AccessLog)
        real.close()  # its writer thread ends; a fake takes its place below
        fake = runtime.observer.access_log = FakeAccessLog()
        os.kill(os.getpid(), signal.SIGHUP)  # the fake reactor runs callFromThread inline
        self.assertEqual(fake.reopened, 1)
        self.successResultOf(runtime.stopService())
        self.assertEqual(fake.closed, 1)
        self.assertIsNone(runtime.observer.access_log)
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)
