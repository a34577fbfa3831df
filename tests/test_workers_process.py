"""
Tests for L{edgegw_tx.workers.process} (its fake transport and reactor are in
tests/support/workers.py).
"""

import fcntl
import os

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.process import ProcessWriter
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest

from edgegw_tx.errors import ProtocolViolation, WorkerCrashed
from edgegw_tx.workers.framing import encode_frame
from edgegw_tx.workers.process import (
    ENDED,
    KILLED,
    PIPE_SIZE,
    READY,
    STARTING,
    STOPPING,
    WorkerProcess,
)
from tests.support.workers import READY_FRAME, FakeProcess

class WorkerProcessTests(unittest.TestCase):
    def setUp(self):
        self.clock = MemoryReactorClock()
        self.lines = []
        self.worker = WorkerProcess(
            "hello",
            log=lambda stream, line: self.lines.append((stream, line)),
            start_timeout=5,
            kill_time=2,
            max_line=16,
            reactor=self.clock,
        )
        self.process = FakeProcess(self.worker, reactor=self.clock)
        self.worker.makeConnection(self.process)

    def ready(self):
        self.process.send(READY_FRAME)
        self.assertEqual(self.worker.state, READY)

    def stderr_lines(self):
        return [line for stream, line in self.lines if stream == "stderr"]

    def test_ready(self):
        """when_ready fires once the worker sent ready, which sets protocol and sdk."""
        d = self.worker.when_ready()
        self.assertNoResult(d)
        self.process.send(READY_FRAME)
        self.assertIs(self.successResultOf(d), self.worker)
        self.assertEqual((self.worker.protocol_version, self.worker.sdk), (1, "0.1.0"))
        self.assertTrue(self.worker.accepting)
        self.assertIs(self.successResultOf(self.worker.when_ready()), self.worker)

    def test_ready_concurrency(self):
        """A ready frame's concurrency is kept; without one the worker serves one request at a time."""
        self.assertEqual(self.worker.concurrency, 1)
        self.process.send(dict(READY_FRAME, concurrency=64))
        self.assertEqual((self.worker.state, self.worker.concurrency), (READY, 64))

    def test_ready_concurrency_must_be_a_positive_integer(self):
        """A ready frame whose concurrency is not a positive integer is a protocol violation."""
        for bad in (0, -1, "8", 2.5, True):
            with self.subTest(concurrency=bad):
                self.setUp()
                self.process.send(dict(READY_FRAME, concurrency=bad))
                self.assertEqual(self.process.signals, ["KILL"])
                self.assertIn("positive integer", self.lines[-1][1])

    def test_request_before_ready(self):
        """No request is written before ready."""
        f = self.failureResultOf(self.worker.request({"method": "GET"}), WorkerCrashed)
        self.assertIn("starting", f.value.message)
        self.assertEqual(self.process.stdin(), b"")

    def test_ids_correlate_out_of_order(self):
        """Each response fires the Deferred of its own id, whatever the order."""
        self.ready()
        frame = {"method": "GET", "path": "/a"}
        d1 = self.worker.request(frame)
        d2 = self.worker.request({"method": "GET", "path": "/b"})
        self.assertEqual(frame, {"method": "GET", "path": "/a"})
        sent = self.process.frames()
        self.assertEqual(
            [(f["type"], f["id"], f["path"]) for f in sent],
            [("request", 1, "/a"), ("request", 2, "/b")],
        )
        self.assertEqual(self.worker.in_flight, 2)
        self.process.send({"type": "response", "id": 2, "status": 201})
        self.assertNoResult(d1)
        self.assertEqual(self.successResultOf(d2)["status"], 201)
        self.process.send({"type": "response", "id": 1, "status": 200})
        self.assertEqual(
            self.successResultOf(d1), {"type": "response", "id": 1, "status": 200}
        )
        self.assertEqual((self.worker.in_flight, self.worker.served), (0, 2))

    def test_stderr_lines(self):
        """Stderr is split into lines; partial lines wait for their newline."""
        self.process.stderr(b"one\ntw")
        self.assertEqual(self.stderr_lines(), ["one"])
        self.process.stderr(b"o\r\nthree\n\n")
        self.assertEqual(self.stderr_lines(), ["one", "two", "three", ""])

    def test_stderr_long_line_capped(self):
        """A line longer than max_line is passed on in max_line pieces."""
        self.process.stderr(b"a" * 16 + b"b" * 20)
        self.assertEqual(self.stderr_lines(), ["a" * 16, "b" * 16])
        self.process.stderr(b"\n" + b"c" * 16 + b"\n")
        self.assertEqual(self.stderr_lines(), ["a" * 16, "b" * 16, "bbbb", "c" * 16])

    def test_stderr_flushed_at_exit(self):
        """A last line without newline is logged when the process ends."""
        self.process.stderr(b"panicked at x")
        self.assertEqual(self.stderr_lines(), [])
        self.process.exit(101)
        self.assertEqual(self.stderr_lines(), ["panicked at x"])

    def test_stderr_invalid_utf8(self):
        """Bytes that are not UTF-8 are replaced, not fatal."""
        self.process.stderr(b"caf\xe9\n")
        self.assertEqual(self.stderr_lines(), ["caf\ufffd"])

    def test_exit_fails_in_flight(self):
        """An exit fails every request in flight with WorkerCrashed naming the status."""
        self.ready()
        d1 = self.worker.request({})
        d2 = self.worker.request({})
        ended = self.worker.when_ended()
        self.process.exit(101)
        for d in (d1, d2):
            f = self.failureResultOf(d, WorkerCrashed)
            self.assertEqual(
                f.value.message,
                "worker 4242 of hello exited with status 101 before answering",
            )
        self.assertIs(self.successResultOf(ended), self.worker)
        self.assertEqual(self.worker.state, ENDED)
        self.assertEqual(self.worker.exit_code, 101)
        self.assertIn(("gateway", "worker 4242 exited with status 101"), self.lines)

    def test_signal_named(self):
        """A death by signal names the signal."""
        self.ready()
        d = self.worker.request({})
        self.process.exit(signal=11)
        f = self.failureResultOf(d, WorkerCrashed)
        self.assertIn("was killed by signal 11 (SIGSEGV)", f.value.message)

    def test_exit_before_ready(self):
        """An exit before ready fails when_ready with the status and last stderr lines."""
        d = self.worker.when_ready()
        self.process.stderr(b"no config\nbye")
        self.process.exit(1)
        f = self.failureResultOf(d, WorkerCrashed)
        self.assertEqual(
            f.value.message,
            "worker 4242 of hello exited with status 1 before sending ready;"
            " last stderr lines:\nno config\nbye",
        )
        self.failureResultOf(self.worker.when_ready(), WorkerCrashed)

    def test_start_timeout(self):
        """No ready within start_timeout: SIGKILL, and when_ready fails saying so."""
        d = self.worker.when_ready()
        self.clock.advance(4.9)
        self.assertEqual(self.process.signals, [])
        self.clock.advance(0.1)
        self.assertEqual(self.process.signals, ["KILL"])
        self.assertEqual(self.worker.state, KILLED)
        self.assertNoResult(d)
        self.process.exit(signal=9)
        f = self.failureResultOf(d, WorkerCrashed)
        self.assertIn("sent no ready within 5s and was killed", f.value.message)
        self.assertIn("wrote nothing to stderr", f.value.message)

    def test_ready_cancels_start_timeout(self):
        """A worker that sent ready is not killed by the start timeout."""
        self.ready()
        self.clock.advance(10)
        self.assertEqual(self.process.signals, [])

    def test_violation_kills(self):
        """Garbage on stdout kills the worker and fails in-flight requests at once."""
        self.ready()
        d = self.worker.request({})
        self.process.stdout(b"\x00\x00\x00\x02hi")
        self.assertEqual(self.process.signals, ["KILL"])
        f = self.failureResultOf(d, ProtocolViolation)
        self.assertIn("broke the frame protocol (frame is not valid JSON", f.value.message)
        self.process.send({"type": "response", "id": 1})
        self.process.exit(signal=9)
        self.assertEqual(self.worker.state, ENDED)

    def test_oversized_frame_kills(self):
        """A length prefix over the cap is a violation naming the size."""
        worker = WorkerProcess("hello", max_frame=100, reactor=self.clock, log=lambda *a: None)
        process = FakeProcess(worker, reactor=self.clock)
        worker.makeConnection(process)
        d = worker.when_ready()
        process.stdout(b"\x00\x10\x00\x00")
        self.assertEqual(process.signals, ["KILL"])
        process.exit(signal=9)
        f = self.failureResultOf(d, ProtocolViolation)
        self.assertIn("frame of 1048576 bytes exceeds the 100-byte cap", f.value.message)

    def test_unknown_id_kills(self):
        """A response for an id not in flight is a violation."""
        self.ready()
        d = self.worker.request({})
        self.process.send({"type": "response", "id": 7, "status": 200})
        self.assertEqual(self.process.signals, ["KILL"])
        f = self.failureResultOf(d, ProtocolViolation)
        self.assertIn("response for unknown id 7", f.value.message)

    def test_second_ready_kills(self):
        """Ready is sent once; a second one is a violation."""
        self.ready()
        self.process.send(READY_FRAME)
        self.assertEqual(self.process.signals, ["KILL"])

    def test_bad_ready_kills(self):
        """A ready without an integer protocol is a violation."""
        self.process.send({"type": "ready", "protocol": "1", "sdk": "0.1"})
        self.assertEqual(self.process.signals, ["KILL"])

    def test_call_unbound(self):
        """With no broker, a call is answered ServiceUnavailable naming the binding."""
        self.ready()
        self.process.send(
            {"type": "call", "id": 3, "request": 1, "service": "db", "pool": "main",
             "action": "query", "args": {}}
        )
        self.assertEqual(
            self.process.frames(),
            [{"type": "result", "id": 3, "ok": False,
              "error": {"kind": "ServiceUnavailable",
                        "message": "no service bound as 'main'"}}],
        )

    def test_call_handler(self):
        """A plugged-in call handler answers asynchronously; its result becomes a result frame."""
        calls = []

        def handler(frame):
            calls.append(frame)
            d = Deferred()
            calls.append(d)
            return d

        self.worker.call_handler = handler
        self.ready()
        self.process.send({"type": "call", "id": 9, "pool": "cache", "action": "get"})
        self.assertEqual(calls[0]["pool"], "cache")
        self.assertEqual(self.process.frames(), [])
        calls[1].callback({"ok": True, "data": "v"})
        self.assertEqual(
            self.process.frames(), [{"type": "result", "id": 9, "ok": True, "data": "v"}]
        )

    def test_call_handler_error(self):
        """A call handler that raises answers an error result instead of hanging the worker."""
        self.worker.call_handler = lambda frame: 1 / 0
        self.ready()
        self.process.send({"type": "call", "id": 1, "pool": "x"})
        [result] = self.process.frames()
        self.assertEqual((result["id"], result["ok"]), (1, False))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_stop_idle(self):
        """stop() closes stdin at once, TERMs after drain_timeout, KILLs kill_time later."""
        self.ready()
        d = self.worker.stop(3)
        self.assertTrue(self.process.stdin_closed)
        self.assertFalse(self.worker.accepting)
        self.failureResultOf(self.worker.request({}), WorkerCrashed)
        self.clock.advance(2.9)
        self.assertEqual(self.process.signals, [])
        self.clock.advance(0.1)
        self.assertEqual(self.process.signals, ["TERM"])
        self.clock.advance(2)
        self.assertEqual(self.process.signals, ["TERM", "KILL"])
        self.assertNoResult(d)
        self.process.exit(signal=9)
        self.assertIs(self.successResultOf(d), self.worker)

    def test_stop_clean_exit(self):
        """A worker that exits after stdin closed is never signalled."""
        self.ready()
        d = self.worker.stop(3)
        self.process.exit(0)
        self.successResultOf(d)
        self.clock.advance(10)
        self.assertEqual(self.process.signals, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_waits_for_in_flight(self):
        """
        stop() keeps stdin open while a request is in flight, so the worker
        still gets the results of its service calls; it closes after the response.
        """
        self.ready()
        d = self.worker.request({})
        self.worker.stop(3)
        self.assertEqual(self.worker.state, STOPPING)
        self.assertFalse(self.process.stdin_closed)
        self.process.send({"type": "call", "id": 1, "pool": "db"})
        self.assertEqual(self.process.frames()[-1]["type"], "result")
        self.process.send({"type": "response", "id": 1, "status": 200})
        self.successResultOf(d)
        self.assertTrue(self.process.stdin_closed)

    def test_pipes_closed_after_exit(self):
        """If the pipes stay open after the child was reaped, they are closed after kill_time."""
        self.process.pid = None
        self.worker.processExited(Failure(ProcessDone(0)))
        self.clock.advance(2)
        self.assertTrue(self.process.lost)

    def test_kill_after_exit(self):
        """Killing a worker whose process is already gone does not raise."""
        self.ready()
        self.process.pid = None
        self.worker.kill(ProtocolViolation("x"))
        self.assertEqual(self.worker.state, KILLED)

    def test_closed_stdout_kills_a_live_child(self):
        """
        A child that closes its stdout and lives on is killed after
        stdout_grace; its requests fail with WorkerCrashed saying so, and no
        new request is written to it meanwhile.
        """
        self.ready()
        d = self.worker.request({})
        self.worker.childConnectionLost(1)
        self.assertFalse(self.worker.accepting)
        later = self.worker.request({})
        self.assertIn("without stdout", self.failureResultOf(later, WorkerCrashed).value.message)
        self.clock.advance(self.worker.stdout_grace - 0.01)
        self.assertNoResult(d)
        self.assertEqual(self.process.signals, [])
        self.clock.advance(0.01)
        self.assertEqual(self.process.signals, ["KILL"])
        self.assertEqual(self.worker.state, KILLED)
        message = "worker 4242 of hello closed its stdout but kept running and was killed"
        self.assertEqual(self.failureResultOf(d, WorkerCrashed).value.message, message)
        self.assertIn(("gateway", message), self.lines)

    def test_closed_stdout_then_exit_is_a_plain_exit(self):
        """A child whose stdout closes because it exits is not killed: its exit status is the news."""
        self.ready()
        d = self.worker.request({})
        self.worker.childConnectionLost(1)
        self.process.exit(3)
        self.clock.advance(self.worker.stdout_grace * 2)
        self.assertEqual(self.process.signals, [])
        self.assertIn("exited with status 3", self.failureResultOf(d, WorkerCrashed).value.message)

    def test_closed_stdout_after_reaping_is_not_killed(self):
        """Stdout closing after the child was reaped (a grandchild held it) arms no kill."""
        self.ready()
        self.process.pid = None
        self.worker.processExited(Failure(ProcessDone(0)))
        self.worker.childConnectionLost(1)
        self.clock.advance(self.worker.stdout_grace)
        self.assertNotEqual(self.worker.state, KILLED)


class _Pipe:
    """The parent's end of a real pipe, as Twisted's process transport holds it."""

    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd


class RealPipeTests(unittest.TestCase):
    """The frame pipes, on real pipes (no child process needed)."""

    def setUp(self):
        self.fds = []
        self.ends = {}
        for child_fd in (0, 1, 2):
            read, write = os.pipe()
            self.fds += [read, write]
            os.set_blocking(read, False)
            # The gateway writes the child's stdin and reads its stdout and stderr.
            self.ends[child_fd] = (read, write)
        for fd in self.fds:
            self.addCleanup(os.close, fd)
        self.process = FakeProcess(None)
        self.process.pipes = {
            0: _Pipe(self.ends[0][1]),
            1: _Pipe(self.ends[1][0]),
            2: _Pipe(self.ends[2][0]),
        }
        self.worker = WorkerProcess("hello", log=lambda *a: None, reactor=MemoryReactorClock())
        self.process.proto = self.worker
        self.worker.makeConnection(self.process)

    def test_frame_pipes_are_grown(self):
        """stdin and stdout hold PIPE_SIZE bytes; stderr keeps the default."""
        size = lambda fd: fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)  # noqa: E731
        self.assertEqual(size(self.ends[0][1]), PIPE_SIZE)
        self.assertEqual(size(self.ends[1][0]), PIPE_SIZE)
        self.assertEqual(size(self.ends[2][0]), 65536)

    def test_a_full_read_is_followed_by_the_rest_at_once(self):
        """
        Twisted hands over a child's stdout 8 KiB at a time, a reactor turn
        each; after a full 8 KiB the rest of the pipe is read in the same
        call, so a 100 KiB frame is delivered at once.
        """
        frame = encode_frame(dict(READY_FRAME, sdk="x" * 100_000))
        read, write = self.ends[1]
        self.assertEqual(os.write(write, frame), len(frame))
        first = os.read(read, 8192)
        d = self.worker.when_ready()
        self.worker.childDataReceived(1, first)
        self.assertIs(self.successResultOf(d), self.worker)
        self.assertEqual(len(self.worker.sdk), 100_000)
        with self.assertRaises(BlockingIOError):
            os.read(read, 1)

    def test_a_short_read_is_not_followed(self):
        """Less than 8 KiB means the pipe was empty: no extra read is made."""
        read, write = self.ends[1]
        frame = encode_frame(READY_FRAME)
        os.write(write, frame[:5])
        os.write(write, frame[5:])
        d = self.worker.when_ready()
        self.worker.childDataReceived(1, os.read(read, 5))
        self.assertNoResult(d)
        self.assertEqual(os.read(read, 8192), frame[5:])


class CountingWriter(ProcessWriter):
    """Twisted's writer of a child's stdin, counting the writes made to the pipe."""

    def __init__(self, reactor, proc, name, fileno):
        super().__init__(reactor, proc, name, fileno)
        self.writes = []

    def writeSomeData(self, data):
        sent = super().writeSomeData(data)
        self.writes.append((len(data), sent))
        return sent


class StdinWriteTests(unittest.TestCase):
    """
    Frames to a worker, on a real stdin pipe held by Twisted's own pipe
    writer on a memory reactor: one write per reactor turn straight to the
    pipe, and the writer's buffer only for what the pipe does not take.
    """

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.read_fd, write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.addCleanup(os.close, self.read_fd)
        self.addCleanup(os.close, write_fd)
        self.calls = []
        self.worker = WorkerProcess(
            "hello", log=lambda *a: None, reactor=self.clock, call_handler=self.call
        )
        self.process = FakeProcess(self.worker, reactor=self.clock)
        self.writer = CountingWriter(self.clock, self.process, 0, write_fd)
        self.process.pipes = {0: self.writer}
        self.worker.makeConnection(self.process)  # grows the pipe to PIPE_SIZE
        self.process.send(READY_FRAME)

    def call(self, frame):
        self.calls.append(frame)
        return {"ok": True, "data": frame["id"]}

    def child_reads(self):
        """Everything in the pipe now, as the child would read it."""
        chunks = []
        while True:
            try:
                chunk = os.read(self.read_fd, PIPE_SIZE)
            except BlockingIOError:
                return b"".join(chunks)
            chunks.append(chunk)

    def fill_pipe(self):
        """The child reads nothing for a while: the pipe is full."""
        filler = b"-" * 65536
        n = 0
        while True:
            try:
                n += os.write(self.writer.fileno(), filler)
            except BlockingIOError:
                return n

    def test_frames_of_one_turn_leave_in_one_write(self):
        """
        Two requests and a service call's result queued in one turn reach the
        pipe in one write at the end of the turn, in order, and the writer
        is never added to the reactor (no epoll_ctl).
        """
        first = self.worker.request({"path": "/a"})
        self.process.send({"type": "call", "id": 7, "pool": "cache"})
        second = self.worker.request({"path": "/b"})
        self.assertEqual((self.child_reads(), self.writer.writes), (b"", []))
        self.clock.advance(0)
        expected = b"".join(
            [
                encode_frame({"path": "/a", "type": "request", "id": 1}),
                encode_frame({"ok": True, "data": 7, "type": "result", "id": 7}),
                encode_frame({"path": "/b", "type": "request", "id": 2}),
            ]
        )
        self.assertEqual(self.child_reads(), expected)
        self.assertEqual(self.writer.writes, [(len(expected), len(expected))])
        self.assertEqual(self.clock.getWriters(), [])
        self.assertIn(self.writer, self.clock.getReaders())  # its close watch stays
        self.assertNoResult(first)
        self.assertNoResult(second)

    def test_a_full_pipe_hands_the_frames_to_the_writer(self):
        """
        A full pipe (EAGAIN) leaves the turn's frames in Twisted's writer; the
        next turn's frames queue behind them, not past them, and all arrive
        once the child reads and the reactor finds the pipe writable.
        """
        filler = self.fill_pipe()
        self.worker.request({"path": "/a"})
        self.clock.advance(0)
        self.assertEqual(self.writer.writes[-1][1], 0)  # EAGAIN: nothing taken
        self.assertEqual(self.clock.getWriters(), [self.writer])
        self.worker.request({"path": "/b"})
        self.clock.advance(0)
        self.assertEqual(len(self.writer.writes), 1)  # not written past the buffer
        self.assertEqual(len(self.child_reads()), filler)
        self.writer.doWrite()  # what the reactor does once the pipe is writable
        self.assertEqual(
            self.child_reads(),
            encode_frame({"path": "/a", "type": "request", "id": 1})
            + encode_frame({"path": "/b", "type": "request", "id": 2}),
        )
        self.assertEqual(self.clock.getWriters(), [])

    def test_a_partial_write_leaves_the_rest_to_the_writer(self):
        """
        A frame bigger than the room in the pipe goes in part; the rest is
        written by Twisted's writer, every byte once and in order, and the
        turn after the buffer emptied writes straight to the pipe again.
        """
        body = "x" * (PIPE_SIZE + 1000)
        self.worker.request({"path": "/big", "body": body})
        self.clock.advance(0)
        frame = encode_frame({"path": "/big", "body": body, "type": "request", "id": 1})
        [(size, sent)] = self.writer.writes
        self.assertEqual((size, sent), (len(frame), PIPE_SIZE))
        got = self.child_reads()
        self.writer.doWrite()
        got += self.child_reads()
        self.assertEqual(got, frame)
        self.assertEqual(self.clock.getWriters(), [])
        self.worker.request({"path": "/small"})
        self.clock.advance(0)
        self.assertEqual(self.child_reads(), encode_frame({"path": "/small", "type": "request", "id": 2}))
        self.assertEqual(len(self.writer.writes), 3)  # the big frame's two, the small one's
        self.assertEqual(self.clock.getWriters(), [])

    def test_stopping_sends_the_turns_frames_before_closing_stdin(self):
        """A result queued in the turn a stop closes stdin is written before the close."""
        d = self.worker.request({"path": "/a"})
        self.clock.advance(0)
        self.child_reads()
        self.process.send({"type": "call", "id": 3, "pool": "cache"})
        self.worker.stop(10)
        self.process.send({"type": "response", "id": 1, "status": 200})
        self.successResultOf(d)
        self.assertTrue(self.process.stdin_closed)
        self.assertEqual(self.child_reads(), encode_frame({"ok": True, "data": 3, "type": "result", "id": 3}))

    def test_a_killed_worker_is_sent_nothing_more(self):
        """What was queued for a worker killed in the same turn is dropped, not written to it."""
        self.worker.request({"path": "/a"}).addErrback(lambda f: None)
        self.worker.kill(WorkerCrashed("killed"))
        self.clock.advance(0)
        self.assertEqual((self.child_reads(), self.writer.writes), (b"", []))


class MovedPipes(FakeProcess):
    """A L{FakeProcess} whose frame pipes are the child's descriptors 3 and 4 (isolation.FRAME_FDS)."""

    def __init__(self, proto, null_fd, reactor):
        super().__init__(proto, reactor=reactor)
        # /dev/null is no pipe: growing it fails quietly.
        self.pipes = {fd: _Pipe(null_fd) for fd in (2, 3, 4)}
        self.closed_fds = []

    def write(self, data):
        raise AssertionError("nothing may be written to the launcher's stdin (/dev/null)")

    def writeToChild(self, fd, data):
        assert fd == 3, fd
        self.written += data

    def closeChildFD(self, fd):
        self.closed_fds.append(fd)
        self.pipes.pop(fd, None)

    def send(self, frame):
        self.proto.childDataReceived(4, encode_frame(frame))


class MovedFramePipeTests(unittest.TestCase):
    """
    Under bwrap the frame pipes reach the launcher as descriptors 3 and 4:
    bwrap's own processes keep 0-2 open as long as the worker lives, so a
    worker closing its stdout would go unseen on 1.
    """

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.lines = []
        self.worker = WorkerProcess(
            "hello",
            log=lambda stream, line: self.lines.append((stream, line)),
            frame_fds=(3, 4),
            reactor=self.clock,
        )
        null = os.open(os.devnull, os.O_RDONLY)
        self.addCleanup(os.close, null)
        self.process = MovedPipes(self.worker, null, self.clock)
        self.worker.makeConnection(self.process)

    def test_frames_go_over_the_moved_pipes(self):
        """Frames are read from descriptor 4 and requests written to 3; data on 1 is not a frame."""
        self.worker.childDataReceived(1, encode_frame(READY_FRAME))
        self.assertEqual(self.worker.state, STARTING)
        self.process.send(READY_FRAME)
        d = self.worker.request({"method": "GET", "path": "/a"})
        [sent] = self.process.frames()
        self.process.send({"type": "response", "id": sent["id"], "status": 200})
        self.assertEqual(self.successResultOf(d)["status"], 200)

    def test_stop_closes_the_moved_stdin(self):
        """Stopping closes descriptor 3, the worker's stdin; a write after it is closed is dropped."""
        self.process.send(READY_FRAME)
        self.worker.stop(10)
        self.assertEqual(self.process.closed_fds, [3])
        self.worker._write(b"late")  # the pipe is gone: no KeyError from Twisted
        self.assertEqual(self.process.stdin(), b"")

    def test_closing_the_moved_stdout_is_noticed(self):
        """A worker that closes its frame output (4) and lives on is killed after the grace."""
        self.process.send(READY_FRAME)
        self.worker.childConnectionLost(4)
        self.assertFalse(self.worker.accepting)
        self.clock.advance(self.worker.stdout_grace)
        self.assertEqual(self.worker.state, KILLED)
        self.assertEqual(self.process.signals, ["KILL"])
