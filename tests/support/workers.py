"""
A fake worker process (the transport a ``WorkerProcess`` talks to, played by
the test) and a memory reactor that spawns them, shared by the worker, pool
and framing tests; no process, no real time.
"""

import itertools

from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest

from edgegw_tx.workers.framing import GATEWAY_FRAME_TYPES, FrameProtocol, encode_frame
from edgegw_tx.workers.pool import WorkerPool

READY_FRAME = {"type": "ready", "protocol": 1, "sdk": "0.1.0"}


class FakeProcess:
    """
    The parts of ``IProcessTransport`` a ``WorkerProcess`` uses, recording what
    it is asked to do; the test plays the child with ``send``, ``stderr`` and
    ``exit``.
    """

    def __init__(self, proto, pid=4242, argv=(), env=None, path=None, childFDs=None, reactor=None):
        """
        :param reactor: the clock the worker writes on: what it writes reaches
            the child at the end of the reactor turn, which ``frames`` and
            ``stdin`` run first.
        """
        self.proto = proto
        self.reactor = reactor
        self.pid = pid
        self.argv = list(argv)
        self.env = env
        self.path = path
        self.childFDs = childFDs
        self.written = bytearray()
        self.signals = []
        self.stdin_closed = False
        self.lost = False

    # IProcessTransport

    def write(self, data):
        self.written += data

    def closeStdin(self):
        self.stdin_closed = True

    def loseConnection(self):
        self.lost = True

    def signalProcess(self, signal):
        if self.pid is None:
            raise ProcessExitedAlready()
        self.signals.append(signal)

    # the test's side

    def stdin(self):
        """The bytes the gateway wrote to the child's stdin by the end of this reactor turn."""
        if self.reactor is not None:
            self.reactor.advance(0)
        return bytes(self.written)

    def frames(self):
        """The frames the gateway wrote to the child's stdin by the end of this reactor turn."""
        frames = []
        FrameProtocol(frames.append, self.fail_parse, types=GATEWAY_FRAME_TYPES).dataReceived(
            self.stdin()
        )
        return frames

    @staticmethod
    def fail_parse(problem):
        raise AssertionError(problem)

    def send(self, frame):
        """The child writes ``frame`` to its stdout."""
        self.proto.childDataReceived(1, encode_frame(frame))

    def stdout(self, data):
        self.proto.childDataReceived(1, data)

    def stderr(self, data):
        self.proto.childDataReceived(2, data)

    def exit(self, code=0, signal=None):
        """The child exits (or dies of ``signal``); pipes close, it is reaped."""
        if signal is not None:
            reason = ProcessTerminated(None, signal, signal)
        elif code:
            reason = ProcessTerminated(code, None, code << 8)
        else:
            reason = ProcessDone(0)
        self.pid = None
        self.proto.processExited(Failure(reason))
        for fd in (0, 1, 2):
            self.proto.childConnectionLost(fd)
        self.proto.processEnded(Failure(reason))


class FakeProcessReactor(MemoryReactorClock):
    """
    A memory reactor and clock whose ``spawnProcess`` returns ``FakeProcess``es
    (in the spirit of twisted.runner's DummyProcessReactor).

    :ivar processes: every process spawned, in order.
    :ivar spawn_error: raised by the next spawnProcess calls when set.
    """

    def __init__(self):
        super().__init__()
        self.processes = []
        self.spawn_error = None
        self._pids = itertools.count(100)

    def spawnProcess(
        self,
        processProtocol,
        executable,
        args=(),
        env=None,
        path=None,
        uid=None,
        gid=None,
        usePTY=False,
        childFDs=None,
    ):
        if self.spawn_error is not None:
            raise self.spawn_error
        assert executable == args[0]
        assert usePTY is False
        process = FakeProcess(
            processProtocol, next(self._pids), args, env, path, childFDs, reactor=self
        )
        self.processes.append(process)
        processProtocol.makeConnection(process)
        return process


class PoolTestCase(unittest.TestCase):
    """Helpers: a fake process reactor and pools on it."""

    def setUp(self):
        self.reactor = FakeProcessReactor()
        self.lines = []

    def pool(self, **kwargs):
        kwargs.setdefault("reactor", self.reactor)
        kwargs.setdefault("log", lambda stream, line: self.lines.append((stream, line)))
        return WorkerPool("hello", ["/srv/handler", "-v"], **kwargs)

    def started(self, **kwargs):
        """A pool whose workers all sent ready."""
        pool = self.pool(**kwargs)
        d = pool.start()
        for process in self.reactor.processes:
            process.send(READY_FRAME)
        self.successResultOf(d)
        return pool

    def requests(self, process):
        return [f for f in process.frames() if f["type"] == "request"]

    def respond(self, process, status=200):
        """The worker answers the last request it was sent."""
        request = self.requests(process)[-1]
        process.send({"type": "response", "id": request["id"], "status": status,
                      "headers": {}, "body": request.get("path")})
