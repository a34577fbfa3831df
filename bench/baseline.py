"""
The yardstick: a bare twisted.web resource answering the same bytes as the
benchmark handlers (bench/run.py), on the same reactor the gateway would use.

    python bench/baseline.py PORT [--no-access-log]

A default Site writes an access-log line per request; the gateway's data plane
does not, so the harness measures the baseline both ways.

Routes (the same bytes the handlers answer):
  GET  /hello, /redis            constant JSON
  POST /echo                     the request body, application/octet-stream
  GET  /users/{id}/posts/{slug}  {"slug":...,"user_id":id}
"""

import json
import sys

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

BODY = b'{"message":"Hello, World!","method":"GET","path":"/hello"}'
REDIS_BODY = b'{"value":"edgegw-bench-value"}'


def answer(method, path, body):
    """(content type, bytes) for a request, or None: shared with the httptools baseline."""
    if method == b"GET" and path == b"/hello":
        return b"application/json", BODY
    if method == b"GET" and path == b"/redis":
        return b"application/json", REDIS_BODY
    if method == b"POST" and path == b"/echo":
        return b"application/octet-stream", body
    parts = path.split(b"/")
    if method == b"GET" and len(parts) == 5 and parts[1] == b"users" and parts[3] == b"posts" and parts[2].isdigit():
        doc = {"slug": parts[4].decode(), "user_id": int(parts[2])}
        return b"application/json", json.dumps(doc, separators=(",", ":")).encode()
    return None


class Bench(Resource):
    isLeaf = True

    def render(self, request):
        body = request.content.read() if request.method == b"POST" else b""
        found = answer(request.method, request.path, body)
        if found is None:
            request.setResponseCode(404)
            return b""
        request.setHeader(b"content-type", found[0])
        return found[1]


if __name__ == "__main__":
    site = Site(Bench())
    site.noisy = False
    if "--no-access-log" in sys.argv:
        site.log = lambda request: None
    reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
    reactor.run()
