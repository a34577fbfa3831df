"""
A real S3-compatible server for the storage tests: moto's server mode
(``python -m moto.server``, the ``test`` extra) started as a child process on
a loopback port it picks itself (``-p 0``; the port is read from its
"Running on" line), stopped and reaped at the test's cleanup.

``S3Server.start(test_case)`` fires with the running server; ``bucket()``
creates a fresh bucket (one per test) through botocore in a thread, so the
reactor never waits on it.  Waiting for readiness is bounded and fails the
test with the server's output.
"""

import re
import sys
import uuid

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, returnValue
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.threads import deferToThread

ACCESS_KEY = "edgegw-test-key"
SECRET_KEY = "edgegw-test-secret"
REGION = "us-east-1"

_RUNNING = re.compile(rb"Running on (http://127\.0\.0\.1:\d+)")


class _Output(ProcessProtocol):
    """The server's output until it says where it listens, and its end."""

    def __init__(self):
        self.output = b""
        self.ready = Deferred()
        self.ended = Deferred()
        self.running = True

    def childDataReceived(self, fd, data):
        if self.ready.called:
            return  # a line per request from here on: not kept
        self.output += data
        found = _RUNNING.search(self.output)
        if found:
            self.ready.callback(found.group(1).decode("ascii"))

    def processEnded(self, reason):
        self.running = False
        if not self.ready.called:
            self.ready.errback(RuntimeError("moto's server exited before listening:\n" + self.output.decode("utf-8", "replace")))
        self.ended.callback(None)


class S3Server:
    """One moto server process; ``endpoint`` is its ``http://127.0.0.1:<port>``."""

    READY_BOUND = 60.0

    def __init__(self):
        self.endpoint = None
        self.protocol = _Output()
        self.process = None

    @classmethod
    @inlineCallbacks
    def start(cls, test_case):
        """Start a server for ``test_case``; it is stopped and reaped at its cleanup."""
        server = cls()
        server.process = reactor.spawnProcess(
            server.protocol,
            sys.executable,
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            env=None,
        )
        test_case.addCleanup(server.stop)
        ready = server.protocol.ready
        ready.addTimeout(cls.READY_BOUND, reactor)
        server.endpoint = yield ready
        returnValue(server)

    def stop(self):
        """Terminate the process; fires once it is reaped."""
        if self.protocol.running:
            try:
                self.process.signalProcess("KILL")
            except ProcessExitedAlready:
                pass
        return self.protocol.ended

    def client(self, secret_key=SECRET_KEY):
        """A botocore S3 client of this server (blocking: call it in a thread)."""
        import botocore.session

        return botocore.session.Session().create_client(
            "s3",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret_key,
        )

    def bucket(self):
        """Fires with the name of a new, empty bucket."""
        name = "edgegw-" + uuid.uuid4().hex[:16]

        def create():
            client = self.client()
            try:
                client.create_bucket(Bucket=name)
            finally:
                client.close()
            return name

        return deferToThread(create)

    def config(self, bucket, **extra):
        """A storage service config for ``bucket`` of this server."""
        config = {
            "backend": "s3",
            "endpoint": self.endpoint,
            "bucket": bucket,
            "region": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
        }
        config.update(extra)
        return config
