"""
Property-based tests of L{FrameProtocol} (and of L{WorkerProcess} on top of
it), with hypothesis: random and adversarial byte streams (valid frames mixed
with garbage, bodies that are not protocol, huge length prefixes) fed in
random chunks.

The oracle is a plain parser of the whole stream at once, built on
L{decode_frame}: what a body means is decode_frame's business (unit tested in
test_workers_framing); what is pinned here is that the streaming parser agrees
with the oracle however the stream is cut, never raises, and never holds more
than one frame's worth of bytes.
"""

import struct

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from edgegw_tx.errors import ProtocolViolation
from edgegw_tx.workers.framing import (
    DEFAULT_MAX_FRAME,
    WORKER_FRAME_TYPES,
    FrameError,
    FrameProtocol,
    decode_frame,
    encode_frame,
)
from edgegw_tx.workers.process import KILLED, READY, WorkerProcess
from tests.support.workers import READY_FRAME, FakeProcess

# Modest counts: the whole module runs in a few seconds.
PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_PREFIX = struct.Struct(">I")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)

frames = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    st.sampled_from(sorted(WORKER_FRAME_TYPES)),
    st.dictionaries(st.text(max_size=8).filter(lambda k: k != "type"), json_values, max_size=4),
)


def _framed(body):
    return _PREFIX.pack(len(body)) + body


# Pieces of a hostile stream.
pieces = st.one_of(
    frames.map(encode_frame),  # a valid frame
    st.binary(max_size=24),  # raw garbage (it may well parse as prefixes)
    st.binary(max_size=24).map(_framed),  # a well-framed body that is not protocol
    st.sampled_from(
        [b"[1, 2]", b"null", b'"ready"', b'{"type": "surprise"}', b"{}", b'{"type": 1}', b"\xff\xfe"]
    ).map(_framed),
    st.integers(2**16, 2**32 - 1).map(_PREFIX.pack),  # a huge length prefix
)


def oracle(stream, max_frame):
    """
    Parse the whole C{stream} at once: (frames, violated, leftover bytes).
    """
    found = []
    offset = 0
    while len(stream) - offset >= 4:
        (length,) = _PREFIX.unpack_from(stream, offset)
        if length > max_frame:
            return found, True, 0
        end = offset + 4 + length
        if end > len(stream):
            break
        try:
            found.append(decode_frame(stream[offset + 4 : end]))
        except FrameError:
            return found, True, 0
        offset = end
    return found, False, len(stream) - offset


@st.composite
def chunked(draw, parts):
    """C{parts} joined into one stream, then cut at random points."""
    stream = b"".join(draw(parts))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0] + cuts + [len(stream)]
    return stream, [stream[a:b] for a, b in zip(bounds, bounds[1:])]


class Recorder:
    """A FrameProtocol and what it delivered."""

    def __init__(self, max_frame):
        self.frames = []
        self.violations = []
        self.protocol = FrameProtocol(self.frames.append, self.violations.append, max_frame=max_frame)

    def feed(self, test_case, chunks):
        cap = self.protocol.max_frame + 4
        for chunk in chunks:
            self.protocol.dataReceived(chunk)
            test_case.assertLessEqual(self.protocol.buffered, cap)


class FrameProtocolProperties(unittest.TestCase):

    @PROPERTIES
    @given(max_frame=st.integers(16, 4096), data=st.data())
    def test_any_stream_any_chunking_agrees_with_the_oracle(self, max_frame, data):
        """
        Whatever the bytes and however they are cut: dataReceived never
        raises, never buffers more than max_frame + 4 bytes, delivers exactly
        the frames before the first violation, then reports that violation
        once (or, with no violation, holds exactly the unfinished tail).
        """
        stream, chunks = data.draw(chunked(st.lists(pieces, max_size=10)))
        expected, violated, leftover = oracle(stream, max_frame)
        recorder = Recorder(max_frame)
        recorder.feed(self, chunks)
        self.assertEqual(recorder.frames, expected)
        self.assertEqual(len(recorder.violations), 1 if violated else 0)
        self.assertEqual(recorder.protocol.broken, violated)
        self.assertEqual(recorder.protocol.buffered, leftover)

    @PROPERTIES
    @given(data=st.data())
    def test_valid_frames_split_anywhere_arrive_identically(self, data):
        """Valid frames cut at any points arrive whole, equal and in order, nothing left over."""
        sent = data.draw(st.lists(frames, min_size=1, max_size=8))
        stream, chunks = data.draw(chunked(st.just([encode_frame(f) for f in sent])))
        recorder = Recorder(len(stream) + 1)
        recorder.feed(self, chunks)
        self.assertEqual(recorder.frames, sent)
        self.assertEqual(recorder.violations, [])
        self.assertEqual(recorder.protocol.buffered, 0)

    @PROPERTIES
    @given(
        before=st.lists(frames, max_size=3),
        length=st.integers(1025, 2**32 - 1),
        body=st.binary(max_size=64),
        one_byte_at_a_time=st.booleans(),
    )
    def test_huge_prefix_is_refused_on_its_four_bytes(self, before, length, body, one_byte_at_a_time):
        """
        A prefix over the cap is a violation as soon as its 4 bytes are in,
        before any of its body: the frames before it are delivered, nothing
        is buffered, and what follows is ignored.
        """
        recorder = Recorder(1024)
        head = b"".join(encode_frame(f) for f in before) + _PREFIX.pack(length)
        if one_byte_at_a_time:
            recorder.feed(self, [head[i : i + 1] for i in range(len(head))])
        else:
            recorder.feed(self, [head])
        self.assertEqual(recorder.frames, before)
        self.assertEqual(len(recorder.violations), 1)
        self.assertIn("exceeds the 1024-byte cap", recorder.violations[0])
        self.assertEqual(recorder.protocol.buffered, 0)
        recorder.feed(self, [body, encode_frame({"type": "ready"})])
        self.assertEqual((recorder.frames, len(recorder.violations)), (before, 1))


class WorkerProcessProperties(unittest.TestCase):

    @PROPERTIES
    @given(data=st.data(), answered=st.integers(0, 4))
    def test_a_broken_stream_kills_the_worker(self, data, answered):
        """
        A ready worker with four requests in flight answers some of them,
        then writes bytes that are no frame (garbage, bodies that are not
        protocol, huge prefixes), all cut at random points: the answers
        arrive; if the bytes break the framing the worker is SIGKILLed and
        every other request fails with ProtocolViolation, otherwise (an
        unfinished tail) it is still ready and they wait.  Nothing raises.
        """
        tail = data.draw(st.lists(pieces, max_size=4))
        tail_frames, violated, _ = oracle(b"".join(tail), DEFAULT_MAX_FRAME)
        assume(not tail_frames)  # valid frames are the other tests' business
        clock = MemoryReactorClock()
        worker = WorkerProcess("prop", log=lambda stream, line: None, reactor=clock)
        process = FakeProcess(worker, reactor=clock)
        worker.makeConnection(process)
        process.send(READY_FRAME)
        results = [[] for _ in range(4)]
        for result in results:
            worker.request({}).addBoth(result.append)
        answers = [
            encode_frame({"type": "response", "id": i + 1, "status": 200}) for i in range(answered)
        ]
        _, chunks = data.draw(chunked(st.just(answers + tail)))
        for chunk in chunks:
            process.stdout(chunk)
        for i in range(answered):
            self.assertEqual(results[i][0]["id"], i + 1)
        if violated:
            self.assertEqual((worker.state, process.signals), (KILLED, ["KILL"]))
            for result in results[answered:]:
                result[0].trap(ProtocolViolation)
        else:
            self.assertEqual((worker.state, process.signals), (READY, []))
            self.assertEqual(results[answered:], [[]] * (4 - answered))
