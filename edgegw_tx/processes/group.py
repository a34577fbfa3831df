"""
The data-plane processes of ``--processes N`` (N > 1), seen from the control
process: spawned, kept in step, respawned, stopped.

On start (in ``privilegedStartService``, before twistd drops privileges) the
control process binds the public listening socket once (a ``tcp:`` or
``tcp6:`` ``--listen`` string) and never accepts on it itself; then it
spawns N data-plane processes (``child.py``) with ``reactor.spawnProcess``,
an explicit environment and the socket as their fd 3, so every process
accepts from the same socket and the kernel spreads the connections.

Every change of the data planes is a command (``state.py``) sent to every
live process over its control channel (the child's stdin and stdout,
``channel.py``) and recorded in one ``PlaneState``. A process that starts
(first start or respawn) is sent the recorded state first; once its pools
are started it is told to ``listen``. A process that ends without being
asked to is respawned, its restart delay doubling from ``min_restart_delay``
to ``max_restart_delay`` (reset by ``stable_time`` seconds of life), as
``twisted.runner.procmon`` does. On stop, each process's stdin is closed (it
drains its pools and exits), SIGTERM follows after ``stop_timeout`` seconds
and SIGKILL after a further ``kill_time``; the service has stopped when every
process is reaped.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, TimeoutError, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from edgegw_tx.processes.channel import ChannelClosed, ControlChannel
from edgegw_tx.processes.state import PlaneState

if TYPE_CHECKING:
    from edgegw_tx.processes.proxies import PoolProxy

CHILD_MODULE = "edgegw_tx.processes.child"
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The inherited listening socket's number in a data-plane process.
LISTEN_FD = 3
# A data-plane process's stderr is logged by line; a longer run without a newline is cut.
MAX_LOG_LINE = 64 * 1024

_log = Logger(namespace="edgegw.processes")


class NotSharable(ValueError):
    """The ``--listen`` string is not one the processes can share."""


def check_sharable(description: str) -> None:
    """
    Raise ``NotSharable`` unless the endpoint string ``description`` listens
    on TCP (``tcp:`` or ``tcp6:``): only a plain TCP socket is bound once and
    adopted by every data-plane process (TLS would be terminated by no one).
    """
    endpoint = serverFromString(None, description)
    if not isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint)):
        raise NotSharable(
            f"--listen {description!r} cannot be shared by several processes: with --processes"
            " above 1 it must be a tcp: or tcp6: endpoint (the socket is bound once and adopted"
            " by every data-plane process); for TLS or a unix socket run --processes 1 or put a"
            " proxy in front"
        )


class DataPlaneSocket(Factory):
    """The factory of the port the control process holds for the data planes: it never accepts."""

    noisy = False

    def buildProtocol(self, addr: Any) -> None:
        return None


class DataPlaneProcess(ProcessProtocol):
    """
    One data-plane process: its control channel on its stdin/stdout, its
    stderr copied into the log.

    :ivar index: its place, 1..N; a respawn takes the place of the one it replaces.
    :ivar up: it said hello (its reactor runs and reads the channel).
    :ivar serving: it was told to listen and answered.
    """

    # Set by the reactor before connectionMade (ProcessProtocol says Optional).
    transport: IProcessTransport

    def __init__(self, group: ProcessGroup, index: int):
        self.group = group
        self.index = index
        self.pid: int | None = None
        self.up = False
        self.serving = False
        self.started_at = 0.0
        self.channel = ControlChannel(
            {"hello": self._hello, "log": group.worker_log},
        )
        self._errbuf = b""
        self._ended = False
        self._waiters: list[Deferred[None]] = []
        self._timers: list[Any] = []

    def connectionMade(self) -> None:
        self.pid = self.transport.pid
        self.channel.makeConnection(self.transport)  # type: ignore[no-untyped-call]  # Twisted's, unannotated
        self.group.process_started(self)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1:
            self.channel.dataReceived(data)
        elif childFD == 2:
            *lines, self._errbuf = (self._errbuf + data).split(b"\n")
            if len(self._errbuf) > MAX_LOG_LINE:
                lines.append(self._errbuf)
                self._errbuf = b""
            for line in lines:
                self._stderr(line)

    def _stderr(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if text:
            _log.info("[data plane {index}] {line}", index=self.index, line=text)

    def _hello(self, pid: int | None = None) -> None:
        self.up = True

    def processEnded(self, reason: Failure) -> None:
        if self._errbuf:
            self._stderr(self._errbuf)
            self._errbuf = b""
        self._ended = True
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self.channel.connectionLost(reason)
        self.group.process_ended(self, reason)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def when_ended(self) -> Deferred[None]:
        if self._ended:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def stop(self, clock: Any, stop_timeout: float, kill_time: float) -> Deferred[None]:
        """Close its stdin (it drains and exits); SIGTERM, then SIGKILL, if it lingers."""
        if not self._ended:
            self.transport.closeStdin()
            self._timers = [
                clock.callLater(stop_timeout, self.signal, "TERM"),
                clock.callLater(stop_timeout + kill_time, self.signal, "KILL"),
            ]
        return self.when_ended()

    def signal(self, name: str) -> None:
        if self._ended:
            return
        _log.warn(
            "data plane {index} (pid {pid}) is still running: sending SIG{name}",
            index=self.index,
            pid=self.pid,
            name=name,
        )
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass


class ProcessGroup(Service):
    """
    N data-plane processes sharing one listening socket, kept in step with
    the commands of the control process.

    :ivar state: the commands applied so far (``PlaneState``).
    :ivar port: the listening port (bound in ``privilegedStartService``, or
        ``startService``); None when stopped.
    """

    def __init__(
        self,
        count: int,
        listen: str,
        data_dir: str,
        *,
        http: str | None = None,
        http_limits: dict[str, Any] | None = None,
        observe: dict[str, Any] | None = None,
        environ: dict[str, str] | None = None,
        executable: str = sys.executable,
        min_restart_delay: float = 0.1,
        max_restart_delay: float = 10.0,
        stable_time: float = 10.0,
        stop_timeout: float = 30.0,
        kill_time: float = 5.0,
        answer_timeout: float = 30.0,
        refresh_timeout: float = 2.0,
        reactor: Any = None,
    ):
        """
        :param count: how many data-plane processes (at least 1).
        :param listen: the endpoint string of public traffic (``tcp:`` or ``tcp6:``).
        :param data_dir: the gateway's data directory (services' files).
        :param http: the data plane's HTTP layer (``--http``).
        :param http_limits: its limits (``edgegw_tx.gateway.front.data_plane_factory``).
        :param observe: what each process records (``access_log``,
            ``access_log_max_bytes``, ``health_path``, ``shutdown_delay``:
            ``child.py``'s ``--observe``).
        :param environ: the environment the processes start from (the
            control process's by default); ``PYTHONPATH`` gets this source tree
            first, so they run the same code.
        :param answer_timeout: seconds after which a process that did not
            acknowledge a change is logged (the change goes on).
        :param refresh_timeout: seconds ``refresh`` waits for a process's
            snapshot before using the last one it had.
        """
        if count < 1:
            raise ValueError("a process group needs at least one process")
        check_sharable(listen)
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.count = count
        self._listen = listen
        self.data_dir = data_dir
        self.http = http
        self.http_limits = dict(http_limits or {})
        self.observe = dict(observe or {})
        self._environ = dict(os.environ if environ is None else environ)
        self.executable = executable
        self.min_restart_delay = min_restart_delay
        self.max_restart_delay = max_restart_delay
        self.stable_time = stable_time
        self.stop_timeout = stop_timeout
        self.kill_time = kill_time
        self.answer_timeout = answer_timeout
        self.refresh_timeout = refresh_timeout
        self.state = PlaneState()
        self.port: Any = None
        self._family = "inet"
        self._children: dict[int, DataPlaneProcess] = {}
        self._delays: dict[int, float] = {}
        self._respawns: dict[int, Any] = {}
        self._pools: dict[int, PoolProxy] = {}
        self._next_pool = 1
        self._stopping = False
        self._refreshing: list[Deferred[None]] | None = None
        self._port_waiters: list[Deferred[Any]] = []

    # -- the processes -----------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        Bind the socket: twistd calls this before it drops privileges
        (``--uid``), so a port below 1024 works, as for one process.
        """
        Service.privilegedStartService(self)
        self._bind_once()

    def startService(self) -> None:
        self._stopping = False
        self._bind_once()
        Service.startService(self)
        for index in range(1, self.count + 1):
            self._spawn(index)

    def _bind_once(self) -> None:
        if self.port is not None:
            return
        self.port = self._bind()
        waiters, self._port_waiters = self._port_waiters, []
        for d in waiters:
            d.callback(self.port)

    def when_listening(self) -> Deferred[Any]:
        """Fires with the listening port once bound."""
        if self.port is not None:
            return succeed(self.port)
        d: Deferred[Any] = Deferred()
        self._port_waiters.append(d)
        return d

    def _bind(self) -> Any:
        """Listen (synchronously, so a taken port fails the start) without ever accepting."""
        endpoint = serverFromString(self._reactor, self._listen)
        outcome: list[Any] = []
        endpoint.listen(DataPlaneSocket()).addBoth(outcome.append)
        [port] = outcome
        if isinstance(port, Failure):
            port.raiseException()
        # The data-plane processes accept; this process only holds the socket.
        port.stopReading()
        self._family = "inet6" if isinstance(endpoint, TCP6ServerEndpoint) else "inet"
        return port

    def processes(self) -> list[DataPlaneProcess]:
        """The live data-plane processes, by index."""
        return [self._children[i] for i in sorted(self._children)]

    def _argv(self, index: int) -> list[str]:
        argv = [
            self.executable,
            "-m",
            CHILD_MODULE,
            "--data-dir",
            self.data_dir,
            "--index",
            str(index),
            "--listen-fd",
            str(LISTEN_FD),
            "--family",
            self._family,
        ]
        if self.http:
            argv += ["--http", self.http]
        if self.http_limits:
            argv += ["--http-limits", json.dumps(self.http_limits, sort_keys=True)]
        if self.observe:
            argv += ["--observe", json.dumps(self.observe, sort_keys=True)]
        return argv

    def signal_all(self, name: str) -> None:
        """Send every running data-plane process the signal ``name`` (``HUP``: reopen its access log)."""
        for process in list(self._children.values()):
            transport = process.transport
            if transport is not None and not process._ended:
                try:
                    transport.signalProcess(name)
                except ProcessExitedAlready:
                    pass

    def environment(self) -> dict[str, str]:
        """The processes' environment: the given one, this source tree first on ``PYTHONPATH``."""
        env = dict(self._environ)
        rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != _SOURCE_ROOT]
        env["PYTHONPATH"] = os.pathsep.join([_SOURCE_ROOT] + rest)
        return env

    def _spawn(self, index: int) -> None:
        self._respawns.pop(index, None)
        if self._stopping:
            return
        process = DataPlaneProcess(self, index)
        process.started_at = self._reactor.seconds()
        try:
            self._reactor.spawnProcess(
                process,
                self.executable,
                self._argv(index),
                env=self.environment(),
                childFDs={0: "w", 1: "r", 2: "r", LISTEN_FD: self.port.fileno()},
            )
        except Exception as e:
            _log.error("could not start data plane {index}: {e}", index=index, e=e)
            self._children.pop(index, None)
            self._schedule_respawn(index, lived=0.0)

    def process_started(self, process: DataPlaneProcess) -> None:
        """A process was spawned (its pipes are open): give it the state, then let it listen."""
        self._children[process.index] = process
        _log.info("data plane {index} started (pid {pid})", index=process.index, pid=process.pid)
        calls = []
        for command, args in self.state.replay():
            d = process.channel.call(command, **args)
            if command == "start_pool":
                pool = self._pools.get(args["pool"])
                if pool is not None:
                    d.addCallback(pool.update_view, process.index)
            d.addErrback(self._replay_failed, process, command)
            calls.append(d)
        done = DeferredList(calls)
        done.addCallback(lambda _: process.channel.call("listen"))
        done.addCallbacks(self._listening, self._listen_failed, callbackArgs=(process,), errbackArgs=(process,))

    def _replay_failed(self, failure: Failure, process: DataPlaneProcess, command: str) -> None:
        if not failure.check(ChannelClosed):
            _log.error(
                "data plane {index}: {command} failed: {error}",
                index=process.index,
                command=command,
                error=failure.getErrorMessage(),
            )

    def _listening(self, answer: Any, process: DataPlaneProcess) -> None:
        process.serving = True
        _log.info("data plane {index} (pid {pid}) serves", index=process.index, pid=process.pid)

    def _listen_failed(self, failure: Failure, process: DataPlaneProcess) -> None:
        if not failure.check(ChannelClosed):
            _log.failure("data plane {index} could not listen", failure, index=process.index)

    def process_ended(self, process: DataPlaneProcess, reason: Failure) -> None:
        """A process was reaped: forget its workers; respawn it unless stopping."""
        index = process.index
        if self._children.get(index) is process:
            del self._children[index]
        for pool in self._pools.values():
            pool.forget_process(index)
        if self._stopping:
            _log.info("data plane {index} (pid {pid}) ended", index=index, pid=process.pid)
            return
        _log.error(
            "data plane {index} (pid {pid}) ended unexpectedly: {why}",
            index=index,
            pid=process.pid,
            why=reason.getErrorMessage(),
        )
        self._schedule_respawn(index, lived=self._reactor.seconds() - process.started_at)

    def _schedule_respawn(self, index: int, lived: float) -> None:
        if self._stopping or index in self._respawns:
            return
        if lived >= self.stable_time or index not in self._delays:
            delay = self.min_restart_delay
        else:
            delay = min(self._delays[index] * 2, self.max_restart_delay)
        self._delays[index] = delay
        self._respawns[index] = self._reactor.callLater(delay, self._spawn, index)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        self._stopping = True
        for call in self._respawns.values():
            if call.active():
                call.cancel()
        self._respawns.clear()
        port, self.port = self.port, None
        if port is not None:
            # Only this process's copy of the socket: the data planes close theirs as they stop.
            port.stopListening()
        ended = [
            p.stop(self._reactor, self.stop_timeout, self.kill_time) for p in self.processes()
        ]
        return DeferredList(ended).addCallback(lambda _: None)

    # -- changes -------------------------------------------------------------

    def apply(self, command: str, **args: Any) -> list[tuple[int, Deferred[Any]]]:
        """
        Record ``command`` and send it to every live process; the answers,
        as (index, Deferred), fail with ``ChannelClosed`` for a process that
        went away (its respawn gets the recorded state instead).
        """
        self.state.apply(command, args)
        return [(p.index, p.channel.call(command, **args)) for p in self.processes()]

    def change(self, command: str, **args: Any) -> Deferred[None]:
        """
        ``apply``, firing once every live process applied it. A failure there
        is logged, not raised: the control process's own check already passed,
        and a process that could not follow is one to read the log of.
        """
        waits = []
        for index, d in self.apply(command, **args):
            d.addTimeout(self.answer_timeout, self._reactor)
            d.addErrback(self._change_failed, index, command)
            waits.append(d)
        return DeferredList(waits).addCallback(lambda _: None)

    def _change_failed(self, failure: Failure, index: int, command: str) -> None:
        if failure.check(ChannelClosed):
            return
        if failure.check(TimeoutError):
            _log.error(
                "data plane {index} did not acknowledge {command} within {seconds}s",
                index=index,
                command=command,
                seconds=self.answer_timeout,
            )
            return
        _log.error(
            "data plane {index}: {command} failed: {error}",
            index=index,
            command=command,
            error=failure.getErrorMessage(),
        )

    def drain(self) -> Deferred[None]:
        """
        A stop has begun: every process's health path answers 503 from now on
        (a respawn too), while it goes on serving until ``stopService``.
        """
        return self.change("drain")

    # -- pools ---------------------------------------------------------------

    def new_pool_number(self) -> int:
        number = self._next_pool
        self._next_pool += 1
        return number

    def register(self, pool: PoolProxy) -> None:
        """``pool`` gets the log lines and snapshots of its number."""
        self._pools[pool.number] = pool

    def unregister(self, pool: PoolProxy) -> None:
        if self._pools.get(pool.number) is pool:
            del self._pools[pool.number]

    def worker_log(self, pool: int, stream: str, line: str, trace_id: str | None = None) -> None:
        """The ``log`` note: a line about a worker of pool number ``pool`` (with
        the trace id of the request it was serving, see ``WorkerPool``)."""
        target = self._pools.get(pool)
        if target is not None:
            target.traced_log(stream, line, trace_id)

    def refresh(self) -> Deferred[None]:
        """
        Ask every process that is up for the stats and workers of its pools
        and give them to the pools; fires when done (never fails). Calls made
        while one runs share it: a process answers a snapshot before any
        command sent after it, so a part still unanswered was asked after
        every change whose answer came.
        """
        waiter: Deferred[None] = Deferred()
        if self._refreshing is not None:
            self._refreshing.append(waiter)
            return waiter
        self._refreshing = [waiter]
        asks = []
        for process in self.processes():
            if not process.up:
                continue
            d = process.channel.call("snapshot")
            d.addTimeout(self.refresh_timeout, self._reactor)
            d.addCallbacks(
                self._snapshot, self._no_snapshot, callbackArgs=(process.index,), errbackArgs=(process,)
            )
            asks.append(d)
        DeferredList(asks).addCallback(self._refreshed)
        return waiter

    def metrics(self) -> Deferred[list[dict[str, Any]]]:
        """
        Every process's counters for ``GET /metrics`` (``DataPlane.metrics``):
        a process that does not answer within ``refresh_timeout`` (or is down)
        is left out of the sum.
        """
        asks = []
        for process in self.processes():
            if not process.up:
                continue
            d = process.channel.call("metrics")
            d.addTimeout(self.refresh_timeout, self._reactor)
            asks.append(d)

        def answered(results: list[tuple[bool, Any]]) -> list[dict[str, Any]]:
            return [answer for ok, answer in results if ok and isinstance(answer, dict)]

        return DeferredList(asks, consumeErrors=True).addCallback(answered)

    def _snapshot(self, views: list[dict[str, Any]], index: int) -> None:
        # A process answers in the order it was asked, so this is newer than
        # any view of it given before; a pool it does not have yet (asked
        # before its start_pool) keeps what it had.
        for view in views:
            number = view.get("pool")
            pool = self._pools.get(number) if isinstance(number, int) else None
            if pool is not None:
                pool.update_view(view, index)

    def _no_snapshot(self, failure: Failure, process: DataPlaneProcess) -> None:
        if not failure.check(ChannelClosed):
            _log.warn(
                "data plane {index} gave no snapshot ({error}); showing its last one",
                index=process.index,
                error=failure.getErrorMessage() or type(failure.value).__name__,
            )

    def _refreshed(self, _: Any) -> None:
        waiters, self._refreshing = self._refreshing or [], None
        for d in waiters:
            d.callback(None)

