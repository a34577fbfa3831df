"""Tests for ``edgegw_tx.observability.accesslog``: batched, off-reactor, never failing the caller."""

import errno
import json
import os
import threading

import orjson

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.observability.accesslog import (
    duration_ms,
    AccessLog,
    ThreadWriter,
    open_sink,
)


class ManualWriter:
    """A ``Writer`` that runs submitted work only when the test says so, and notes the thread."""

    def __init__(self):
        self.work = []
        self.stopped = False
        self.threads = set()

    def submit(self, work):
        self.work.append(work)

    def call_back(self, f, *args):
        f(*args)

    def stop(self):
        self.stopped = True

    def run(self):
        while self.work:
            self.threads.add(threading.get_ident())
            self.work.pop(0)()


class MemorySink:
    """A sink keeping what it got; ``fail`` makes writes raise that errno."""

    def __init__(self):
        self.data = b""
        self.fail = None
        self.reopened = 0
        self.closed = False
        self.threads = set()

    def write(self, data):
        self.threads.add(threading.get_ident())
        if self.fail is not None:
            raise OSError(self.fail, os.strerror(self.fail))
        self.data += data

    def flush(self):
        pass

    def reopen(self):
        self.reopened += 1

    def close(self):
        self.closed = True

    def lines(self):
        return [json.loads(line) for line in self.data.splitlines()]


def line(n, **extra):
    return {"request_id": f"r{n}", "status": 200, **extra}


class AccessLogTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.writer = ManualWriter()
        self.sink = MemorySink()
        self.opened = []
        self.drops = []

    def open(self, path, max_bytes):
        self.opened.append((path, max_bytes))
        return self.sink

    def log(self, **kwargs):
        kwargs.setdefault("writer", self.writer)
        kwargs.setdefault("open_sink", self.open)
        return AccessLog("access.log", self.clock, kwargs.pop("max_bytes", None), self.drops.append, **kwargs)

    def test_write_only_queues(self):
        """``write`` hands nothing to the writer and opens nothing; the batch goes after ``interval``."""
        log = self.log()
        for n in range(3):
            log.write(line(n))
        self.assertEqual((self.writer.work, self.opened, self.sink.data), ([], [], b""))
        self.clock.advance(0.19)
        self.assertEqual(self.writer.work, [])
        self.clock.advance(0.01)
        self.assertEqual(len(self.writer.work), 1)
        self.assertEqual(self.sink.data, b"")  # still not written on this thread
        self.writer.run()
        self.assertEqual([entry["request_id"] for entry in self.sink.lines()], ["r0", "r1", "r2"])
        self.assertEqual(self.opened, [("access.log", None)])
        self.assertEqual((log.written, log.dropped, self.drops), (3, 0, []))

    def test_full_batch_goes_at_once(self):
        """``batch_lines`` waiting lines go to the writer at once, and the timer is cancelled."""
        log = self.log(batch_lines=4)
        for n in range(4):
            log.write(line(n))
        self.assertEqual(len(self.writer.work), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        log.write(line(4))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.writer.run()
        self.assertEqual(len(self.sink.lines()), 4)

    def test_one_line_per_request_in_order(self):
        """Every line is one JSON object on one line, in the order written, across batches."""
        log = self.log(batch_lines=10)
        for n in range(25):
            log.write(line(n, path="/a\nb", user_agent='x"y'))
        log.flush()
        self.writer.run()
        lines = self.sink.lines()
        self.assertEqual([entry["request_id"] for entry in lines], [f"r{n}" for n in range(25)])
        self.assertEqual(lines[0]["path"], "/a\nb")
        self.assertEqual(self.sink.data.count(b"\n"), 25)

    def test_time_becomes_iso(self):
        """A ``time`` in epoch seconds is written as an ISO 8601 UTC time with milliseconds."""
        log = self.log()
        log.write(line(0, time=1.5))
        log.write(line(1, time="given"))
        log.write(line(2, time=1_796_674_500.25))
        log.write(line(3, time=1_796_674_501))
        log.flush()
        self.writer.run()
        self.assertEqual(
            [entry["time"] for entry in self.sink.lines()],
            ["1970-01-01T00:00:01.500Z", "given", "2026-12-07T20:15:00.250Z", "2026-12-07T20:15:01.000Z"],
        )

    def test_unencodable_line_dropped_alone(self):
        """A line orjson cannot encode is dropped and counted; the others are written."""
        log = self.log()
        log.write(line(0))
        log.write(line(1, bad=object()))
        log.write(line(2))
        log.flush()
        self.writer.run()
        self.assertEqual([entry["request_id"] for entry in self.sink.lines()], ["r0", "r2"])
        self.assertEqual((log.dropped, self.drops, log.written), (1, [1], 2))

    def test_full_disk_drops_and_counts(self):
        """Writes failing with ENOSPC drop their lines and count them; once there is room, lines are written again."""
        log = self.log()
        self.sink.fail = errno.ENOSPC
        log.write(line(0))
        log.write(line(1))
        log.flush()
        self.writer.run()
        self.assertEqual((log.dropped, self.drops), (2, [2]))
        self.sink.fail = None
        log.write(line(2))
        log.flush()
        self.writer.run()
        self.assertEqual([entry["request_id"] for entry in self.sink.lines()], ["r2"])
        self.assertEqual((log.dropped, log.written), (2, 1))
        self.assertFalse(self.sink.closed)

    def test_other_write_error_reopens_later(self):
        """Another write error (EIO) drops the batch and closes the file; the next batch opens it again."""
        log = self.log()
        self.sink.fail = errno.EIO
        log.write(line(0))
        log.flush()
        self.writer.run()
        self.assertEqual((log.dropped, self.sink.closed), (1, True))
        self.sink.fail = None
        self.clock.advance(1)
        log.write(line(1))
        log.flush()
        self.writer.run()
        self.assertEqual(len(self.opened), 2)
        self.assertEqual([entry["request_id"] for entry in self.sink.lines()], ["r1"])

    def test_open_failure_retried_after_a_second(self):
        """A file that cannot be opened drops lines; it is tried again at most once per ``retry_open``."""
        failures = [PermissionError(errno.EACCES, "denied")] * 2

        def opener(path, max_bytes):
            self.opened.append(path)
            if failures:
                raise failures.pop()
            return self.sink

        log = self.log(open_sink=opener)
        for n in range(3):
            log.write(line(n))
            log.flush()
            self.writer.run()
        self.assertEqual(len(self.opened), 1)  # no new try within the second
        self.assertEqual(log.dropped, 3)
        self.clock.advance(1)
        log.write(line(3))
        log.flush()
        self.writer.run()
        self.clock.advance(1)
        log.write(line(4))
        log.flush()
        self.writer.run()
        self.assertEqual(len(self.opened), 3)
        self.assertEqual([entry["request_id"] for entry in self.sink.lines()], ["r4"])
        self.assertEqual((log.dropped, sum(self.drops)), (4, 4))

    def test_backlog_limit(self):
        """Beyond ``max_backlog`` lines waiting for the writer, new batches are dropped and counted."""
        log = self.log(batch_lines=2, max_backlog=4)
        for n in range(7):
            log.write(line(n))
        self.assertEqual(len(self.writer.work), 2)
        self.assertEqual(log.dropped, 2)
        self.writer.run()
        self.assertEqual(len(self.sink.lines()), 4)
        log.write(line(7))
        log.write(line(8))
        self.writer.run()
        self.assertEqual(len(self.sink.lines()), 6)

    def test_on_drop_errors_do_not_escape(self):
        """An ``on_drop`` that raises does not reach the caller of ``write``."""

        def boom(n):
            raise RuntimeError("metric broken")

        log = AccessLog("x", self.clock, None, boom, writer=self.writer, open_sink=self.open, max_backlog=0)
        log.write(line(0))
        log.flush()
        self.assertEqual(log.dropped, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_reopen(self):
        """``reopen`` writes what waits, then reopens the file on the writer thread."""
        log = self.log()
        log.write(line(0))
        log.reopen()
        self.assertEqual(self.sink.reopened, 0)
        self.writer.run()
        self.assertEqual((len(self.sink.lines()), self.sink.reopened), (1, 1))

    def test_close_flushes(self):
        """``close`` writes what waits, closes the file, stops the writer and fires after."""
        log = self.log()
        log.write(line(0))
        d = log.close()
        self.assertNoResult(d)
        self.assertTrue(self.writer.stopped)
        self.writer.run()
        self.successResultOf(d)
        self.assertEqual((len(self.sink.lines()), self.sink.closed), (1, True))
        self.successResultOf(log.close())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_write_after_close(self):
        """Lines written after ``close`` set no timer and are dropped when their batch would go."""
        log = self.log(batch_lines=2)
        self.writer.run()
        log.close()
        self.writer.run()
        log.write(line(0))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        log.write(line(1))
        self.assertEqual(log.dropped, 2)

    def test_bad_arguments(self):
        """Nonsense settings are refused with a message."""
        self.assertRaises(ValueError, AccessLog, "", self.clock, None, print, writer=self.writer)
        self.assertRaises(ValueError, AccessLog, "x", self.clock, -1, print, writer=self.writer)
        self.assertRaises(ValueError, AccessLog, "x", self.clock, None, print, writer=self.writer, batch_lines=0)


class FileTests(unittest.TestCase):
    """The real ``LogFile`` under the access log, on the manual writer."""

    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "access.log")
        self.clock = Clock()
        self.clock.advance(1000)
        self.writer = ManualWriter()
        self.drops = []

    def log(self, path=None, max_bytes=None):
        return AccessLog(path or self.path, self.clock, max_bytes, self.drops.append, writer=self.writer)

    def read(self, path):
        with open(path, "rb") as f:
            return [json.loads(text) for text in f.read().splitlines()]

    def test_rotation_by_size(self):
        """Past ``max_bytes`` the file is rotated to ``.1``; every line stays whole in one file."""
        log = self.log(max_bytes=200)
        for n in range(30):
            log.write(line(n, path="/p" * 10))
            if n % 3 == 2:
                log.flush()
                self.writer.run()
        log.close()
        self.writer.run()
        files = sorted(name for name in os.listdir(self.dir))
        self.assertIn("access.log.1", files)
        ids = []
        for name in files:
            ids += [entry["request_id"] for entry in self.read(os.path.join(self.dir, name))]
        self.assertEqual(sorted(ids, key=lambda r: int(r[1:])), [f"r{n}" for n in range(30)])
        self.assertLess(os.path.getsize(os.path.join(self.dir, "access.log.1")), 400)

    def test_reopen_after_logrotate(self):
        """After the file is moved away, ``reopen`` starts a new one under the path."""
        log = self.log()
        log.write(line(0))
        log.flush()
        self.writer.run()
        os.rename(self.path, self.path + ".old")
        log.reopen()
        log.write(line(1))
        log.flush()
        self.writer.run()
        self.assertEqual([e["request_id"] for e in self.read(self.path + ".old")], ["r0"])
        self.assertEqual([e["request_id"] for e in self.read(self.path)], ["r1"])

    def test_copytruncate(self):
        """After the file is truncated under the log (copytruncate), lines go to its new start, not past zeros."""
        log = self.log()
        log.write(line(0))
        log.flush()
        self.writer.run()
        os.truncate(self.path, 0)
        log.write(line(1))
        log.flush()
        self.writer.run()
        with open(self.path, "rb") as f:
            data = f.read()
        self.assertNotIn(b"\0", data)
        self.assertEqual([json.loads(text)["request_id"] for text in data.splitlines()], ["r1"])

    def test_two_logs_share_a_file(self):
        """Two access logs on one file (two processes) append; neither writes over the other's lines."""
        first, second = self.log(), self.log()
        for n in range(6):
            (first if n % 2 else second).write(line(n))
            first.flush()
            second.flush()
            self.writer.run()
        self.assertEqual(sorted(e["request_id"] for e in self.read(self.path)), [f"r{n}" for n in range(6)])

    def test_unwritable_path(self):
        """A path that cannot be a file (under a regular file) drops lines and counts them, never raising."""
        blocker = os.path.join(self.dir, "file")
        with open(blocker, "w"):
            pass
        log = self.log(path=os.path.join(blocker, "access.log"))
        for n in range(3):
            log.write(line(n))
        log.flush()
        self.writer.run()
        self.assertEqual((log.dropped, self.drops), (3, [3]))
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        d = log.close()
        self.writer.run()
        self.successResultOf(d)

    def test_directory_as_path(self):
        """A directory given as the path drops lines too."""
        log = self.log(path=self.dir)
        log.write(line(0))
        log.flush()
        self.writer.run()
        self.assertEqual(log.dropped, 1)

    def test_stdout_sink(self):
        """``-`` writes to file descriptor 1 and is never closed by the log."""
        read_end, write_end = os.pipe()
        saved = os.dup(1)
        try:
            os.dup2(write_end, 1)
            sink = open_sink("-", None)
            sink.write(b'{"a":1}\n')
            sink.close()
            sink.reopen()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            self.assertEqual(f.read(), b'{"a":1}\n')


class ThreadWriterTests(unittest.TestCase):
    """The real writer thread, with the real reactor (no timers are left behind)."""

    def test_written_off_the_reactor_thread(self):
        """Batches are written by the writer thread, never the thread that calls ``write``."""
        sink = MemorySink()
        drops = []
        log = AccessLog("x", reactor, None, drops.append, open_sink=lambda path, max_bytes: sink)
        for n in range(600):
            log.write(line(n))
        d = log.close()

        def check(_):
            self.assertEqual(len(sink.lines()), 600)
            self.assertTrue(sink.closed)
            self.assertEqual(len(sink.threads), 1)
            self.assertNotIn(threading.get_ident(), sink.threads)
            self.assertEqual((log.written, drops), (600, []))

        return d.addCallback(check)

    def test_work_errors_do_not_end_the_thread(self):
        """A failing piece of work is logged and the thread goes on with the next."""
        writer = ThreadWriter(reactor)

        def boom():
            raise RuntimeError("bad batch")

        d = Deferred()
        writer.submit(boom)
        writer.submit(lambda: writer.call_back(d.callback, "after"))
        writer.stop()

        def check(result):
            self.assertEqual(result, "after")
            self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

        return d.addCallback(check)


class DurationTests(unittest.TestCase):
    def test_milliseconds_rounded_to_the_microsecond(self):
        """duration_ms gives milliseconds with at most three decimals, rounded half up."""
        self.assertEqual(duration_ms(0.000123), 0.123)
        self.assertEqual(duration_ms(0.0001234), 0.123)
        self.assertEqual(duration_ms(0.0001236), 0.124)
        self.assertEqual(duration_ms(1.5), 1500.0)
        self.assertEqual(duration_ms(0.0), 0.0)
        self.assertEqual(orjson.dumps(duration_ms(0.0421)), b"42.1")
