"""
A raw HTTP/1.1 client over the real reactor (it tells a complete answer from a
close), the parser of what it received, and a data-plane target that echoes
every frame: shared by the HTTP conformance tests and the listener tests.
"""

import json

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater

WAIT = 5  # seconds: the most any test waits for the server


class EchoTarget:
    """Answers every frame with its method, path, query and body, at once;
    ``/held`` requests wait for the test to fire them."""

    name = "echo"

    def __init__(self):
        self.frames = []
        self.held = []

    def request(self, frame):
        self.frames.append(frame)
        if frame["path"].startswith("/held"):
            d = Deferred()
            self.held.append(d)
            return d
        if frame["path"].startswith("/slow"):
            return deferLater(reactor, 0.05, self._answer, frame)
        return succeed(self._answer(frame))

    @staticmethod
    def _answer(frame):
        text = "%s %s %s %s" % (
            frame["method"],
            frame["path"],
            json.dumps(frame["query"], sort_keys=True),
            frame["body"] or "",
        )
        return {"status": 200, "headers": {"content-type": "text/plain"}, "body": text}


def parse_responses(raw, heads=()):
    """Split ``raw`` into (status, headers dict, body) triples; an incomplete
    tail is left out.  ``heads`` are the indexes of answers to HEAD requests."""
    responses = []
    while True:
        end = raw.find(b"\r\n\r\n")
        if end == -1:
            return responses
        lines = raw[:end].split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        length = int(headers.get("content-length", "0"))
        if status < 200 or len(responses) in heads:
            length = 0
        if len(raw) < end + 4 + length:
            return responses
        responses.append((status, headers, raw[end + 4 : end + 4 + length]))
        raw = raw[end + 4 + length :]


class RawClient(Protocol):
    """Collects every byte; ``closed`` fires with them when the server closes."""

    def __init__(self):
        self.data = b""
        self.closed = Deferred()
        self._waiting = []

    def dataReceived(self, data):
        self.data += data
        for entry in list(self._waiting):
            count, heads, d = entry
            if len(parse_responses(self.data, heads)) >= count:
                self._waiting.remove(entry)
                d.callback(self.data)

    def connectionLost(self, reason):
        for _, _, d in self._waiting:
            d.callback(self.data)
        self._waiting = []
        self.closed.callback(self.data)

    def responses(self, count, heads=()):
        """Fire with the raw bytes once ``count`` responses arrived (or on close)."""
        d = Deferred()
        if len(parse_responses(self.data, heads)) >= count:
            d.callback(self.data)
        else:
            self._waiting.append((count, heads, d))
        return d.addTimeout(WAIT, reactor)
