"""
``--processes N`` and the data plane's bookkeeping: the control process
passes --access-log, --access-log-max-bytes and --health-path to every
data-plane process (``--observe``), which builds its own ``Observer``.
"""

import json
import os
import signal

from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.observability.metrics import RequestMetrics
from edgegw_tx.processes import child
from edgegw_tx.processes.group import ProcessGroup
from tests.support.fakes import SynchronousReactor
from tests.support.processes import LoopbackReactor


class ObserveOptionsTests(unittest.TestCase):
    def test_passed_to_each_process(self):
        """Each data-plane process's command line carries the options as one JSON argument."""
        observe = {"access_log": "/var/log/edgegw.log", "access_log_max_bytes": 1000, "health_path": "/hz"}
        group = ProcessGroup(2, "tcp:9080", "/data", observe=observe, reactor=LoopbackReactor())
        argv = group._argv(2)
        self.assertEqual(json.loads(argv[argv.index("--observe") + 1]), observe)
        self.assertEqual(child.parse_args(argv[argv.index("--data-dir") :]).observe, observe)

    def test_each_process_its_own_file(self):
        """
        Rotated by size, process N writes PATH.N (one writer per file); its
        health path is the option's; SIGHUP reopens its log.
        """
        before = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, before)
        path = os.path.abspath(self.mktemp())
        args = child.parse_args(
            ["--data-dir", "/d", "--index", "2", "--observe",
             json.dumps({"access_log": path, "access_log_max_bytes": 1000, "health_path": "/hz"})]
        )
        observer = child._observer(args, RequestMetrics(), SynchronousReactor())
        # Ends its writer thread; nothing waits for it.
        self.addCleanup(lambda: observer.access_log.close() and None)
        self.assertEqual(observer.access_log.path, path + ".2")
        self.assertEqual(observer.health_path, "/hz")
        self.assertIsNot(signal.getsignal(signal.SIGHUP), before)

    def test_defaults(self):
        """Without --observe: no access log, the default health path."""
        observer = child._observer(child.parse_args(["--data-dir", "/d"]), RequestMetrics(), Clock())
        self.assertIsNone(observer.access_log)
        self.assertEqual(observer.health_path, "/healthz")

    def test_health_follows_the_route_tables_restoring(self):
        """A data-plane process's health path says starting while its route table is restoring."""
        restoring = [True]
        observer = child._observer(
            child.parse_args(["--data-dir", "/d"]), RequestMetrics(), Clock(), lambda: restoring[0]
        )
        self.assertEqual(observer.health()[0], 503)
        restoring[0] = False
        self.assertEqual(observer.health()[0], 200)
