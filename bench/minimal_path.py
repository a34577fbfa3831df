"""
The smallest gateway path, for comparison: an httptools ``Protocol`` that
sends every request as a frame to one Rust worker over the Int32 framing
(orjson) and writes the worker's answer back. No routing, limits, request
ids, validation, statistics or timeouts: what the gateway would cost if it
did nothing but move frames (bench/cpu.py measures it beside the gateway).

    python bench/minimal_path.py PORT WORKER_BINARY
"""

import os
import struct
import sys
from collections import deque
from itertools import count

import httptools
import orjson
from pybase64 import b64decode
from twisted.internet import reactor
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from httptools_baseline import date  # noqa: E402

_PREFIX = struct.Struct(">I")


class Worker(ProcessProtocol):
    """One worker; answers are matched to requests by id."""

    def __init__(self):
        self.buffer = bytearray()
        self.pending = {}
        self.ids = count(1)

    def send(self, frame, answer):
        frame["id"] = request_id = next(self.ids)
        body = orjson.dumps(frame)
        self.pending[request_id] = answer
        self.transport.write(_PREFIX.pack(len(body)) + body)

    def childDataReceived(self, fd, data):
        if fd != 1:
            return
        buffer = self.buffer
        buffer += data
        offset, end = 0, len(buffer)
        while end - offset >= 4:
            (length,) = _PREFIX.unpack_from(buffer, offset)
            if end - offset - 4 < length:
                break
            frame = orjson.loads(memoryview(buffer)[offset + 4 : offset + 4 + length])
            offset += 4 + length
            answer = self.pending.pop(frame.get("id"), None)
            if answer is not None:
                answer(frame)
        del buffer[:offset]


WORKER = Worker()


class Slot:
    __slots__ = ("data",)

    def __init__(self):
        self.data = None


class MinimalPath(Protocol):
    def connectionMade(self):
        self.parser = httptools.HttpRequestParser(self)
        self.slots = deque()
        self.url = b""
        self.headers = {}
        self.body = []

    def on_message_begin(self):
        self.url = b""
        self.headers = {}
        self.body = []

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers[name.decode("latin-1").lower()] = value.decode("utf-8", "replace")

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        parser = self.parser
        slot = Slot()
        self.slots.append(slot)
        path, _, _ = self.url.partition(b"?")
        body = b"".join(self.body)
        frame = {
            "type": "request",
            "method": parser.get_method().decode(),
            "path": path.decode(),
            "query": {},
            "headers": self.headers,
            "params": {},
            "body": body.decode("utf-8", "replace") if body else None,
            "client_ip": "127.0.0.1",
            "request_id": "0",
        }
        WORKER.send(frame, lambda answer: self.answer(answer, slot))

    def answer(self, frame, slot):
        text = frame.get("body_base64")
        if text is not None:
            body = b64decode(text)
        else:
            body = (frame.get("body") or "").encode()
        parts = [b"HTTP/1.1 %d OK\r\ndate: %s\r\n" % (frame["status"], date())]
        for name, value in (frame.get("headers") or {}).items():
            parts.append(b"%s: %s\r\n" % (name.encode(), value.encode()))
        parts.append(b"content-length: %d\r\n\r\n" % len(body))
        parts.append(body)
        slot.data = b"".join(parts)
        slots = self.slots
        while slots and slots[0].data is not None:
            self.transport.write(slots.popleft().data)

    def dataReceived(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.loseConnection()


if __name__ == "__main__":
    binary = sys.argv[2]
    reactor.spawnProcess(WORKER, binary, [binary], env={}, childFDs={0: "w", 1: "r", 2: 2})
    factory = Factory.forProtocol(MinimalPath)
    factory.noisy = False
    reactor.listenTCP(int(sys.argv[1]), factory, interface="127.0.0.1", backlog=1024)
    reactor.run()
