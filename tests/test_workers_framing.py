"""
Tests for L{edgegw_tx.workers.framing}.
"""

import json
import struct

from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from edgegw_tx.workers.framing import (
    DEFAULT_MAX_FRAME,
    GATEWAY_FRAME_TYPES,
    FrameError,
    FrameProtocol,
    decode_frame,
    encode_frame,
)


def raw_frame(body: bytes) -> bytes:
    """A frame around arbitrary bytes, valid or not."""
    return struct.pack(">I", len(body)) + body


class EncodeFrameTests(unittest.TestCase):
    def test_layout(self):
        """A frame is a 4-byte big-endian length and compact UTF-8 JSON."""
        data = encode_frame({"type": "ready", "sdk": "é"})
        body = '{"type":"ready","sdk":"é"}'.encode()
        self.assertEqual(data, struct.pack(">I", len(body)) + body)

    def test_not_a_dict(self):
        """Only an object can be a frame."""
        self.assertRaises(TypeError, encode_frame, ["ready"])

    def test_nan_written_as_null(self):
        """NaN and infinities are not JSON: they go out as null, never as invalid JSON."""
        data = encode_frame({"type": "x", "v": float("nan"), "w": float("-inf")})
        self.assertEqual(json.loads(data[4:]), {"type": "x", "v": None, "w": None})

    def test_unserialisable_value_refused(self):
        """A value JSON has no form for is a FrameError naming the problem, not a crash."""
        error = self.assertRaises(FrameError, encode_frame, {"type": "x", "v": object()})
        self.assertIn("cannot be written as JSON", str(error))


class DecodeFrameTests(unittest.TestCase):
    def test_utf16_refused(self):
        """A body in UTF-16 is not silently accepted: frames are UTF-8 only."""
        body = json.dumps({"type": "ready"}).encode("utf-16")
        e = self.assertRaises(FrameError, decode_frame, body)
        self.assertIn("UTF-8", str(e))

    def test_types_selectable(self):
        """The accepted frame types are a parameter (the gateway's side by default)."""
        self.assertEqual(
            decode_frame(b'{"type":"request","id":1}', GATEWAY_FRAME_TYPES)["id"], 1
        )
        self.assertRaises(FrameError, decode_frame, b'{"type":"request","id":1}')


class FrameProtocolTests(unittest.TestCase):
    def setUp(self):
        self.frames = []
        self.violations = []
        self.proto = FrameProtocol(
            self.frames.append, self.violations.append, max_frame=1024
        )

    def test_default_cap(self):
        """The cap is 16 MiB unless configured, not IntNStringReceiver's 99,999 bytes."""
        proto = FrameProtocol(self.frames.append, self.violations.append)
        self.assertEqual(proto.max_frame, DEFAULT_MAX_FRAME)
        big = {"type": "response", "id": 1, "body": "x" * 200_000}
        proto.dataReceived(encode_frame(big))
        self.assertEqual(self.frames, [big])

    def test_byte_by_byte(self):
        """A frame fed one byte at a time is delivered once, when complete."""
        data = encode_frame({"type": "ready", "protocol": 1, "sdk": "0.1"})
        for i in range(len(data) - 1):
            self.proto.dataReceived(data[i : i + 1])
            self.assertEqual(self.frames, [])
        self.proto.dataReceived(data[-1:])
        self.assertEqual(self.frames, [{"type": "ready", "protocol": 1, "sdk": "0.1"}])
        self.assertEqual(self.proto.buffered, 0)

    def test_several_in_one_chunk(self):
        """Several frames in one chunk, plus the start of another, come out in order."""
        frames = [{"type": "response", "id": i} for i in range(3)]
        tail = encode_frame({"type": "response", "id": 3})
        self.proto.dataReceived(b"".join(map(encode_frame, frames)) + tail[:5])
        self.assertEqual(self.frames, frames)
        self.proto.dataReceived(tail[5:])
        self.assertEqual(self.frames[-1], {"type": "response", "id": 3})

    def test_oversized_prefix_rejected_before_body(self):
        """A length over the cap is a violation as soon as the 4 prefix bytes arrive."""
        self.proto.dataReceived(struct.pack(">I", 1025)[:3])
        self.assertEqual(self.violations, [])
        self.proto.dataReceived(struct.pack(">I", 1025)[3:])
        self.assertEqual(
            self.violations, ["frame of 1025 bytes exceeds the 1024-byte cap"]
        )
        self.assertEqual(self.proto.buffered, 0)

    def test_cap_is_inclusive(self):
        """A frame exactly at the cap is accepted."""
        body = b'{"type":"call","id":1,"a":"'
        body += b"x" * (1024 - len(body) - 2) + b'"}'
        self.assertEqual(len(body), 1024)
        self.proto.dataReceived(raw_frame(body))
        self.assertEqual(len(self.frames), 1)

    def test_not_an_object(self):
        """A JSON value that is not an object is a violation naming its kind."""
        self.proto.dataReceived(raw_frame(b"[1,2]"))
        self.assertEqual(self.violations, ["frame is a JSON array, not an object"])

    def test_invalid_json(self):
        """Bytes that are not JSON are a violation."""
        self.proto.dataReceived(raw_frame(b"{nope"))
        self.assertEqual(len(self.violations), 1)
        self.assertIn("not valid JSON", self.violations[0])

    def test_invalid_utf8(self):
        """Bytes that are not UTF-8 are a violation."""
        self.proto.dataReceived(raw_frame(b'{"type":"\xff"}'))
        self.assertIn("not valid UTF-8", self.violations[0])

    def test_missing_type(self):
        """An object without "type" is a violation."""
        self.proto.dataReceived(raw_frame(b'{"id":1}'))
        self.assertEqual(self.violations, ['frame has no "type"'])

    def test_unknown_type(self):
        """A type the peer may not send is a violation."""
        self.proto.dataReceived(encode_frame({"type": "request", "id": 1}))
        self.assertEqual(self.violations, ["unknown frame type 'request'"])

    def test_nothing_after_violation(self):
        """Frames before a violation are delivered; nothing after it, ever."""
        good = encode_frame({"type": "response", "id": 1})
        self.proto.dataReceived(good + raw_frame(b"7") + good)
        self.proto.dataReceived(good)
        self.assertEqual(self.frames, [{"type": "response", "id": 1}])
        self.assertEqual(self.violations, ["frame is a JSON number, not an object"])
        self.assertTrue(self.proto.broken)

    def test_stop_from_callback(self):
        """A callback that calls stop() ends delivery, even mid-chunk."""
        def received(frame):
            self.frames.append(frame)
            proto.stop()

        proto = FrameProtocol(received, self.violations.append)
        good = encode_frame({"type": "response", "id": 1})
        proto.dataReceived(good + good + raw_frame(b"7"))
        self.assertEqual(len(self.frames), 1)
        self.assertEqual(self.violations, [])
        self.assertTrue(proto.broken)

    def test_send_frame(self):
        """sendFrame writes one encoded frame to the transport."""
        transport = StringTransport()
        self.proto.makeConnection(transport)
        self.proto.sendFrame({"type": "result", "id": 2, "ok": True})
        self.assertEqual(
            transport.value(), encode_frame({"type": "result", "id": 2, "ok": True})
        )
