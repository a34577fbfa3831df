"""
Fakes for the tests of ``--processes`` (edgegw_tx/processes/): a reactor whose
``spawnProcess`` starts an in-memory data-plane process running the real
``DataPlane`` and ``ControlChannel`` with fake worker pools, joined to the
control process by a loopback wire instead of pipes; no process, socket,
thread or real time.
"""

import itertools
from collections import deque

from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.python.failure import Failure

from edgegw_tx.errors import WorkerCrashed
from edgegw_tx.gateway.routes import RouteTable
from edgegw_tx.processes.channel import ControlChannel
from edgegw_tx.processes.dataplane import DataPlane
from tests.support.fakes import SynchronousReactor


class FakeListeningPort:
    """What the process group uses of the port it binds and never accepts on."""

    def __init__(self, port, fd=7):
        self.port = port
        self.fd = fd
        self.reading = True
        self.listening = True

    def stopReading(self):
        self.reading = False

    def fileno(self):
        return self.fd

    def getHost(self):
        return IPv4Address("TCP", "127.0.0.1", self.port)

    def stopListening(self):
        self.listening = False
        return succeed(None)


class FakeWorkerPool:
    """A data-plane process's worker pool: ``WorkerPool``'s signature and face, no processes."""

    _next_pid = itertools.count(5000)

    def __init__(self, name, argv, *, log, call_handler, reactor, **options):
        self.name = name
        self.argv = argv
        self.log = log
        self.call_handler = call_handler
        self.options = options
        self.version = options.get("version")
        self.state = "new"
        self.served = 0
        self._pids = []

    def start(self):
        self.state = "running"
        self._pids = [next(FakeWorkerPool._next_pid) for _ in range(self.options.get("min_instances", 1))]
        self.log("gateway", "worker %d is ready" % self._pids[0])
        if self.options.get("env", {}).get("FAIL_START"):
            self.state = "stopped"
            return fail(WorkerCrashed("the worker exited with status 3 before it was ready"))
        return succeed(list(self._pids))

    def stop(self):
        self.state = "stopped"
        self._pids = []
        return succeed(None)

    def request(self, frame):
        self.served += 1
        return succeed({"type": "response", "status": 200, "headers": {}, "body": self.name})

    def workers(self):
        return [
            {"pid": pid, "version": self.version, "state": "ready", "served": self.served, "in_flight": 0}
            for pid in self._pids
        ]

    def stats(self):
        return {
            "name": self.name,
            "state": self.state,
            "workers": len(self._pids),
            "ready": len(self._pids),
            "queued": 0,
            "served": self.served,
            "failed": 0,
            "rejected": 0,
        }


class FakeRegistry:
    """A data-plane process's service registry: records what it is told."""

    def __init__(self):
        self.services = {}
        self.bound = {}
        self.closed = False

    def configure(self, service):
        self.services[service["id"]] = service

    def remove(self, service_id):
        self.services.pop(service_id, None)
        return succeed(None)

    def bind(self, endpoint_id, pool_id, service_id):
        self.bound[(endpoint_id, pool_id)] = service_id

    def unbind(self, endpoint_id, pool_id):
        self.bound.pop((endpoint_id, pool_id), None)

    def call_handler(self, endpoint_id):
        return lambda frame: {"ok": True, "data": endpoint_id}

    def close(self):
        self.closed = True
        return succeed(None)


class _Wire:
    """Delivers writes in the order they were made, never re-entrantly."""

    def __init__(self):
        self._queue = deque()
        self._delivering = False

    def send(self, deliver, *args):
        self._queue.append((deliver, args))
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._queue:
                deliver, args = self._queue.popleft()
                deliver(*args)
        finally:
            self._delivering = False


class _ChildTransport:
    """The data-plane process's side of its stdio: writes go to the control process."""

    def __init__(self, process):
        self.process = process

    def write(self, data):
        self.process.reactor.wire.send(self.process.to_parent, data)

    def loseConnection(self):
        self.process.exit()


class LoopbackProcess:
    """
    A data-plane process in memory: a real ``DataPlane`` behind a real
    ``ControlChannel``, with ``FakeWorkerPool``s and a ``FakeRegistry``.
    ``IProcessTransport`` on the control process's side.

    :ivar commands: the commands it received, in order: (name, args).
    """

    def __init__(self, reactor, proto, pid, argv, env, childFDs):
        self.reactor = reactor
        self.proto = proto
        self.pid = pid
        self.argv = argv
        self.env = env
        self.childFDs = childFDs
        self.signals = []
        self.ended = False
        self.stdin_closed = False
        self.commands = []
        self.booted = False
        self.paused = False
        self.unread = b""
        self.routes = RouteTable()
        self.registry = FakeRegistry()
        self.plane = DataPlane(
            self.routes,
            object(),
            self.registry,
            pool_factory=self._pool,
            index=int(argv[argv.index("--index") + 1]),
            reactor=reactor,
        )
        self.pools = []
        responders = {}
        for name, responder in self.plane.responders().items():
            responders[name] = self._recording(name, responder)
        self.channel = ControlChannel(responders, on_close=lambda reason: self._closed())
        self.plane.attach(self.channel.notify)

    def _pool(self, *args, **kwargs):
        pool = FakeWorkerPool(*args, **kwargs)
        self.pools.append(pool)
        return pool

    def _recording(self, name, responder):
        def run(**args):
            self.commands.append((name, args))
            return responder(**args)

        return run

    def boot(self):
        """The program starts: its channel connects, says hello and reads what waited in the pipe."""
        self.booted = True
        self.channel.makeConnection(_ChildTransport(self))
        self.channel.notify("hello", pid=self.pid)
        self._read_waiting()

    def pause(self):
        """The program stops reading its channel (busy, hung): commands wait in the pipe."""
        self.paused = True

    def resume(self):
        """It reads again, what waited first."""
        self.paused = False
        self._read_waiting()

    def _read_waiting(self):
        waiting, self.unread = self.unread, b""
        if waiting:
            self.to_child(waiting)

    def command_names(self):
        return [name for name, _ in self.commands]

    # the wire

    def to_parent(self, data):
        if not self.ended:
            self.proto.childDataReceived(1, data)

    def to_child(self, data):
        if self.ended:
            return
        if not self.booted or self.paused:
            self.unread += data  # it waits in the pipe until the program reads
            return
        self.channel.dataReceived(data)

    def stderr(self, text):
        self.proto.childDataReceived(2, text.encode())

    # IProcessTransport

    def write(self, data):
        self.reactor.wire.send(self.to_child, data)

    def closeStdin(self):
        self.stdin_closed = True
        self.reactor.wire.send(self._stdin_closed)

    def _stdin_closed(self):
        if not self.ended:
            self.channel.connectionLost(Failure(ProcessDone(0)))

    def _closed(self):
        # The program drains, then ends.
        self.plane.shutdown().addCallback(lambda _: self.exit())

    def loseConnection(self):
        self.closeStdin()

    def signalProcess(self, signal):
        if self.ended:
            raise ProcessExitedAlready()
        self.signals.append(signal)
        if signal == "KILL":
            self.exit(signal=9)

    def exit(self, code=0, signal=None):
        """The process ends (of ``signal``, or with exit ``code``) and is reaped."""
        if self.ended:
            return
        self.ended = True
        if signal is not None:
            reason = ProcessTerminated(None, signal, signal)
        elif code:
            reason = ProcessTerminated(code, None, code << 8)
        else:
            reason = ProcessDone(0)
        self.reactor.processes_ended.append(self)
        self.proto.processEnded(Failure(reason))


class LoopbackReactor(SynchronousReactor):
    """
    A memory reactor and clock whose ``spawnProcess`` starts a
    ``LoopbackProcess`` (booted at once unless ``auto_boot`` is False) and whose
    ``listenTCP`` gives a ``FakeListeningPort``.

    :ivar processes: every process spawned, in order.
    """

    def __init__(self):
        super().__init__()
        self.wire = _Wire()
        self.processes = []
        self.processes_ended = []
        self.auto_boot = True
        self.spawn_error = None
        self._pids = itertools.count(100)
        self.ports = []

    def listenTCP(self, port, factory, backlog=50, interface=""):
        listening = FakeListeningPort(port or 9080)
        listening.factory = factory
        self.ports.append(listening)
        return listening

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
        process = LoopbackProcess(self, processProtocol, next(self._pids), list(args), env, childFDs)
        self.processes.append(process)
        processProtocol.makeConnection(process)
        if self.auto_boot:
            process.boot()
        return process

    def live(self):
        return [p for p in self.processes if not p.ended]
