"""
The per-process ceiling: a Twisted ``Protocol`` on httptools (llhttp) that
answers the same bytes as the benchmark handlers (bench/baseline.py's
``answer``) with no routing, dispatch or worker behind it. Keep-alive aware
(HTTP/1.0 or ``Connection: close`` closes after the answer); pipelined
requests are answered in order.

    python bench/httptools_baseline.py PORT
"""

import os
import sys
from email.utils import formatdate

import httptools
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baseline import answer  # noqa: E402


class Constant(Protocol):
    def connectionMade(self):
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = []

    # httptools callbacks
    def on_message_begin(self):
        self.url = b""
        self.body = []

    def on_url(self, url):
        self.url += url

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        path = self.url.split(b"?", 1)[0]
        found = answer(self.parser.get_method(), path, b"".join(self.body))
        keep_alive = self.parser.should_keep_alive()
        if found is None:
            status, ctype, payload = b"404 Not Found", b"text/plain", b""
        else:
            status, (ctype, payload) = b"200 OK", found
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nServer: bench\r\nDate: " + date()
            + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: " + str(len(payload)).encode()
            + (b"" if keep_alive else b"\r\nConnection: close") + b"\r\n\r\n" + payload
        )
        if not keep_alive:
            self.transport.loseConnection()

    def dataReceived(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.transport.loseConnection()
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.loseConnection()


_date = [0, b""]


def date():
    now = int(reactor.seconds())
    if now != _date[0]:
        _date[0], _date[1] = now, formatdate(now, usegmt=True).encode()
    return _date[1]


if __name__ == "__main__":
    factory = Factory.forProtocol(Constant)
    factory.noisy = False
    reactor.listenTCP(int(sys.argv[1]), factory, interface="127.0.0.1", backlog=1024)
    reactor.run()
