"""
The worker frame format: a 4-byte big-endian length, then that many bytes of
UTF-8 JSON holding one object with a ``"type"`` (spec/IPC.md, "Framing").

The parser is our own rather than ``IntNStringReceiver``: that one re-joins its
whole buffer on every read (quadratic when a big frame arrives in pieces) and
caps frames at 99,999 bytes unless told otherwise.  Here the length prefix is
checked against the cap as soon as its 4 bytes are in, before any of the body
is buffered, and a broken stream stays broken: after a violation no further
frame is delivered.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection
from typing import Any

import orjson
from twisted.internet.interfaces import ITransport

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
"""The default cap on a frame's length prefix, in bytes."""

WORKER_FRAME_TYPES = frozenset({"ready", "response", "call"})
"""Frame types a worker may send to the gateway."""

GATEWAY_FRAME_TYPES = frozenset({"request", "result"})
"""Frame types the gateway sends to a worker."""

_PREFIX = struct.Struct(">I")
_PREFIX_MAX = 2 ** (8 * _PREFIX.size) - 1


class FrameError(ValueError):
    """A frame broke the protocol; the message names the problem."""


def encode_frame(obj: dict[str, Any]) -> bytes:
    """
    Serialise ``obj`` as one frame.

    orjson writes compact UTF-8 directly (no intermediate str), several times
    faster than the standard library on the hot path (docs/performance.md).
    NaN and infinities, which JSON lacks, are written as ``null``.
    """
    if not isinstance(obj, dict):
        raise TypeError(f"a frame is a dict, not {type(obj).__name__}")
    try:
        body = orjson.dumps(obj)
    except orjson.JSONEncodeError as e:
        raise FrameError(f"frame cannot be written as JSON ({e})") from None
    if len(body) > _PREFIX_MAX:
        raise FrameError(f"frame of {len(body)} bytes does not fit a 4-byte length")
    return _PREFIX.pack(len(body)) + body


def decode_frame(
    body: bytes | bytearray | memoryview, types: Collection[str] = WORKER_FRAME_TYPES
) -> dict[str, Any]:
    """
    Parse one frame body (without its length prefix) and check its type.

    orjson accepts only strict UTF-8 and strict JSON (no NaN, no Infinity);
    on failure the UTF-8 check is repeated to name the offending byte.
    """
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError as u:
            raise FrameError(
                f"frame is not valid UTF-8 ({u.reason} at byte {u.start})"
            ) from None
        raise FrameError(f"frame is not valid JSON ({e})") from None
    if obj.__class__ is not dict:
        raise FrameError(f"frame is a JSON {_json_kind(obj)}, not an object")
    kind = obj.get("type")
    if kind is None:
        raise FrameError('frame has no "type"')
    if kind.__class__ is not str or kind not in types:
        raise FrameError(f"unknown frame type {kind!r}")
    return obj


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


class FrameProtocol:
    """
    Turns a byte stream into frame dicts.

    A parser fed through ``dataReceived`` (how ``WorkerProcess`` feeds it a
    child's stdout); given a transport (``makeConnection``), ``sendFrame``
    writes to it.  No Twisted ``Protocol`` base: compiled
    (edgegw_tx/compiled.py), a class without a Python base is a native one.

    :ivar max_frame: the cap on a frame's length prefix, in bytes.
    :ivar broken: True once a violation was reported or ``stop`` was called;
        from then on input is ignored.
    """

    # Only sendFrame reads it, which needs makeConnection first; as a plain
    # parser nothing does.
    transport: ITransport

    def makeConnection(self, transport: ITransport) -> None:
        """Frames sent from now on go to ``transport``."""
        self.transport = transport

    def __init__(
        self,
        frame_received: Callable[[dict[str, Any]], object],
        violation: Callable[[str], object],
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        types: Collection[str] = WORKER_FRAME_TYPES,
    ):
        """
        :param frame_received: called with each frame, in order.
        :param violation: called once with a description of the first
            protocol violation; no frame is delivered after it.
        :param types: the frame types accepted from the peer.
        """
        if not 0 < max_frame <= _PREFIX_MAX:
            raise ValueError(f"max_frame must be in 1..{_PREFIX_MAX}")
        self._frame_received = frame_received
        self._violation = violation
        self.max_frame = max_frame
        self._types = frozenset(types)
        self._buffer = bytearray()
        self.broken = False
        self._stopped = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buffer)

    def dataReceived(self, data: bytes) -> None:
        """
        Deliver every complete frame in the buffer.

        Frames are parsed first and delivered after the buffer is trimmed, so
        a callback that calls ``stop`` ends delivery cleanly.  Frames before a
        violation in the same chunk are still delivered, then the violation.
        """
        if self.broken:
            return
        buf = self._buffer
        source: bytes | bytearray
        if buf:
            buf += data
            source = buf
        else:
            source = data  # the common case: parse the read itself, no copy
        frames = []
        problem = None
        offset = 0
        end = len(source)
        with memoryview(source) as view:
            while end - offset >= _PREFIX.size:
                (length,) = _PREFIX.unpack_from(view, offset)
                if length > self.max_frame:
                    problem = f"frame of {length} bytes exceeds the {self.max_frame}-byte cap"
                    break
                stop = offset + _PREFIX.size + length
                if stop > end:
                    break
                try:
                    frames.append(decode_frame(view[offset + _PREFIX.size : stop], self._types))
                except FrameError as e:
                    problem = str(e)
                    break
                offset = stop
        if problem is not None:
            self._buffer = bytearray()
            self.broken = True
        elif source is buf:
            del buf[:offset]
        elif offset < end:
            buf += data[offset:]
        for frame in frames:
            if self._stopped:
                return
            self._frame_received(frame)
        if problem is not None and not self._stopped:
            self._violation(problem)

    def stop(self) -> None:
        """Deliver nothing more (not even the rest of the current chunk)."""
        self._stopped = self.broken = True
        self._buffer = bytearray()

    def sendFrame(self, obj: dict[str, Any]) -> None:
        """Write ``obj`` as one frame to the transport."""
        self.transport.write(encode_frame(obj))
