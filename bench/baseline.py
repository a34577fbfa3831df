"""
The yardstick: a bare twisted.web resource answering the same bytes as the
hello handler, on the same reactor the gateway would use.

    python bench/baseline.py PORT [--no-access-log]

A default Site writes an access-log line per request; the gateway's data plane
does not, so the harness measures the baseline both ways.
"""

import sys

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

BODY = b'{"message":"Hello, World!","method":"GET","path":"/hello"}'


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        return BODY


if __name__ == "__main__":
    site = Site(Hello())
    site.noisy = False
    if "--no-access-log" in sys.argv:
        site.log = lambda request: None
    reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
    reactor.run()
