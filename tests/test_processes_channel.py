"""
The control channel between the control process and a data-plane process
(edgegw_tx/processes/channel.py), on a StringTransport.
"""

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from edgegw_tx.errors import WorkerCrashed
from edgegw_tx.processes.channel import CHANNEL_FRAME_TYPES, ChannelClosed, ControlChannel, RemoteError
from edgegw_tx.workers.framing import FrameProtocol, encode_frame


def frames_in(transport):
    """The frames written to ``transport`` so far."""
    frames = []
    FrameProtocol(frames.append, AssertionError, types=CHANNEL_FRAME_TYPES).dataReceived(transport.value())
    return frames


class ControlChannelTests(unittest.TestCase):
    def setUp(self):
        self.ran = []
        self.closed = []
        self.later = Deferred()
        self.channel = ControlChannel(
            {
                "add": lambda a, b: a + b,
                "later": lambda: self.later,
                "crash": lambda: fail(WorkerCrashed("worker 12 exited with status 3")),
                "log": lambda **args: self.ran.append(args),
                "typo": lambda: {}["missing"],
            },
            on_close=self.closed.append,
        )
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def feed(self, frame, byte_by_byte=False):
        data = encode_frame(frame)
        if byte_by_byte:
            for i in range(len(data)):
                self.channel.dataReceived(data[i : i + 1])
        else:
            self.channel.dataReceived(data)

    def test_call_writes_a_call_frame_and_fires_with_the_answer(self):
        """call() sends the command with a fresh id; the answer with that id fires its Deferred."""
        first = self.channel.call("start_pool", pool=1)
        second = self.channel.call("snapshot")
        [one, two] = frames_in(self.transport)
        self.assertEqual(one, {"type": "call", "id": 1, "command": "start_pool", "args": {"pool": 1}})
        self.assertEqual((two["id"], two["command"], two["args"]), (2, "snapshot", {}))
        self.feed({"type": "answer", "id": 2, "ok": True, "data": [1, 2]}, byte_by_byte=True)
        self.assertEqual(self.successResultOf(second), [1, 2])
        self.assertNoResult(first)
        self.feed({"type": "answer", "id": 1, "ok": True, "data": None})
        self.assertIsNone(self.successResultOf(first))

    def test_error_answer_fails_with_remote_error(self):
        """An answer with ok false fails the call with RemoteError carrying kind and message."""
        d = self.channel.call("start_pool", pool=1)
        self.feed({"type": "answer", "id": 1, "ok": False, "kind": "WorkerCrashed", "error": "status 3"})
        error = self.failureResultOf(d, RemoteError).value
        self.assertEqual((error.kind, error.message, str(error)), ("WorkerCrashed", "status 3", "status 3"))

    def test_calls_from_the_peer_are_answered(self):
        """The peer's call runs its responder with the args; the result goes back as an answer."""
        self.feed({"type": "call", "id": 7, "command": "add", "args": {"a": 2, "b": 3}})
        self.assertEqual(frames_in(self.transport), [{"type": "answer", "id": 7, "ok": True, "data": 5}])

    def test_deferred_results_are_answered_when_they_fire(self):
        """A responder's Deferred is answered once it fires, and later calls are not held up."""
        self.feed({"type": "call", "id": 1, "command": "later", "args": {}})
        self.feed({"type": "call", "id": 2, "command": "add", "args": {"a": 1, "b": 1}})
        self.assertEqual([f["id"] for f in frames_in(self.transport)], [2])
        self.later.callback({"pids": [1]})
        self.assertEqual(frames_in(self.transport)[-1], {"type": "answer", "id": 1, "ok": True, "data": {"pids": [1]}})

    def test_failures_are_answered_with_kind_and_message(self):
        """A failing responder answers ok false with its exception's class name and message."""
        self.feed({"type": "call", "id": 3, "command": "crash", "args": {}})
        self.assertEqual(
            frames_in(self.transport),
            [{"type": "answer", "id": 3, "ok": False, "kind": "WorkerCrashed", "error": "worker 12 exited with status 3"}],
        )

    def test_unexpected_errors_are_answered_and_logged(self):
        """A bug in a responder is answered as an error and its traceback logged."""
        self.feed({"type": "call", "id": 4, "command": "typo", "args": {}})
        [answer] = frames_in(self.transport)
        self.assertEqual((answer["ok"], answer["kind"]), (False, "KeyError"))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_unknown_command_is_an_error_answer(self):
        """A call naming no responder is answered with an error naming it."""
        self.feed({"type": "call", "id": 5, "command": "explode", "args": {}})
        [answer] = frames_in(self.transport)
        self.assertEqual((answer["ok"], answer["kind"]), (False, "UnknownCommand"))
        self.assertIn("'explode'", answer["error"])

    def test_notes_run_without_an_answer(self):
        """A note runs its responder and nothing is written back; notify() writes a note."""
        self.feed({"type": "note", "command": "log", "args": {"pool": 1, "line": "hi"}})
        self.assertEqual(self.ran, [{"pool": 1, "line": "hi"}])
        self.assertEqual(self.transport.value(), b"")
        self.channel.notify("log", pool=2, stream="stderr", line="x")
        self.assertEqual(
            frames_in(self.transport),
            [{"type": "note", "command": "log", "args": {"pool": 2, "stream": "stderr", "line": "x"}}],
        )

    def test_connection_lost_fails_every_pending_call(self):
        """When the peer goes away, unanswered calls fail with ChannelClosed and on_close runs once."""
        first = self.channel.call("a")
        second = self.channel.call("b")
        self.channel.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(first, ChannelClosed)
        self.failureResultOf(second, ChannelClosed)
        self.assertEqual(len(self.closed), 1)
        self.channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.closed), 1)

    def test_calls_after_close_fail_at_once_and_notes_are_dropped(self):
        """After the connection is lost, call() fails with ChannelClosed and notify() writes nothing."""
        self.channel.connectionLost(Failure(ConnectionDone()))
        self.transport.clear()
        self.failureResultOf(self.channel.call("snapshot"), ChannelClosed)
        self.channel.notify("log", line="x")
        self.assertEqual(self.transport.value(), b"")

    def test_a_cancelled_call_ignores_its_late_answer(self):
        """A call cancelled (a timeout) fails with CancelledError; its answer arriving later is dropped."""
        d = self.channel.call("snapshot")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.feed({"type": "answer", "id": 1, "ok": True, "data": []})

    def test_broken_stream_closes_the_connection(self):
        """Bytes that are not frames break the channel: it closes the connection."""
        self.channel.dataReceived(b"\x00\x00\x00\x02{]")
        self.assertTrue(self.transport.disconnecting)
        self.flushLoggedErrors()

    def test_close_loses_the_connection(self):
        """close() closes the transport (the peer sees end of file)."""
        self.channel.close()
        self.assertTrue(self.transport.disconnecting)
