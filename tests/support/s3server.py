"""
A real S3-compatible server for the storage tests: moto's server mode
(``python -m moto.server``, the ``test`` extra) started as a child process on
a loopback port it picks itself (``-p 0``; the port is read from its
"Running on" line), stopped and reaped at the test's cleanup.

The server checks request signatures (moto's IAM authentication, on after
the first ``NO_AUTH_ACTIONS`` requests): ``start`` makes an IAM user with a key
pair allowed everything, ``access_key`` / ``secret_key``, so a wrong secret is
refused as a real S3 refuses it (``SignatureDoesNotMatch``).

``S3Server.start(test_case)`` fires with the running server; ``bucket()``
creates a fresh bucket (one per test) through botocore in a thread, so the
reactor never waits on it.  Waiting for readiness is bounded and fails the
test with the server's output.
"""

import json
import os
import re
import sys
import uuid

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, returnValue
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.threads import deferToThread

REGION = "us-east-1"
NO_AUTH_ACTIONS = 3
"""The requests moto takes unsigned: the IAM user, its key pair, its policy (``_make_key``)."""
_ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)

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
        self.access_key = None
        self.secret_key = None

    @classmethod
    @inlineCallbacks
    def start(cls, test_case):
        """Start a server for ``test_case``; it is stopped and reaped at its cleanup."""
        server = cls()
        server.process = reactor.spawnProcess(
            server.protocol,
            sys.executable,
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(NO_AUTH_ACTIONS)),
        )
        test_case.addCleanup(server.stop)
        ready = server.protocol.ready
        ready.addTimeout(cls.READY_BOUND, reactor)
        server.endpoint = yield ready
        yield deferToThread(server._make_key)
        returnValue(server)

    def _make_key(self):
        """An IAM user allowed everything, and its key pair (the server's unsigned requests)."""
        import botocore.session

        iam = botocore.session.Session().create_client(
            "iam", region_name=REGION, endpoint_url=self.endpoint,
            aws_access_key_id="unsigned", aws_secret_access_key="unsigned",
        )
        try:
            iam.create_user(UserName="edgegw")
            key = iam.create_access_key(UserName="edgegw")["AccessKey"]
            iam.put_user_policy(UserName="edgegw", PolicyName="all", PolicyDocument=_ALLOW_ALL)
        finally:
            iam.close()
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    def stop(self):
        """Terminate the process; fires once it is reaped."""
        if self.protocol.running:
            try:
                self.process.signalProcess("KILL")
            except ProcessExitedAlready:
                pass
        return self.protocol.ended

    def client(self):
        """A botocore S3 client of this server (blocking: call it in a thread)."""
        import botocore.session

        return botocore.session.Session().create_client(
            "s3",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
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
            "access_key": self.access_key,
            "secret_key": self.secret_key,
        }
        config.update(extra)
        return config
