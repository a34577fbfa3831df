"""
One worker child process, seen from the gateway.

Its stdout carries frames, its stderr is its log (spec/IPC.md).  Requests are
correlated with responses by id through a dict id -> Deferred, as AMP does with
its tags, so nothing here assumes answers come back in order.  Whatever goes
wrong with the child, every Deferred handed out is fired exactly once: with the
response, or with a ``GatewayError`` saying what happened.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import signal
from collections import deque
from collections.abc import Callable
from typing import Any, TypeGuard
from typing import Protocol as Structural

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.process import ProcessWriter
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import GatewayError, ProtocolViolation, WorkerCrashed
from .framing import DEFAULT_MAX_FRAME, FrameProtocol, encode_frame

LogCallback = Callable[[str, str], object]
"""``log(stream, line)``: ``stream`` is ``"stderr"`` for the worker's own output
and ``"gateway"`` for what the process plane has to say about the worker."""

CallHandler = Callable[[dict[str, Any]], Any]
"""``handler(call_frame) -> dict | Deferred[dict]``: the ``ok`` and ``data`` or
``error`` fields of the ``result`` frame answering the call."""

STARTING = "starting"
READY = "ready"
STOPPING = "stopping"
KILLED = "killed"
ENDED = "ended"

_logger = Logger(namespace="edgegw.workers")

PIPE_SIZE = 1 << 18
"""Bytes the frame pipes to and from a worker (its stdin and stdout) are
asked to hold; Linux's default is 64 KiB.  A batch of pipelined requests or
answers with 16 KiB bodies then moves in one write and one read instead of
many reactor turns (docs/performance.md).  256 KiB rather than the 1 MiB
Linux allows: an unprivileged user's pipes may hold 64 MiB in all
(``/proc/sys/fs/pipe-user-pages-soft``), which leaves room for 128 workers."""

_TWISTED_READ = 8192  # what Twisted's process reader asks for per read


def _grow_pipe(fd: int) -> None:
    """Ask for a pipe of ``PIPE_SIZE``; keep the default where refused (a
    user over ``/proc/sys/fs/pipe-user-pages-soft``, or not Linux)."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass


def twisted_log(stream: str, line: str) -> None:
    """The default log callback: Twisted's logging system."""
    _logger.info("{stream}: {line}", stream=stream, line=line)


def unbound_service(frame: dict[str, Any]) -> dict[str, Any]:
    """
    Answer a service call while no broker is plugged in.

    It is also what a broker answers for a binding name it does not know.
    """
    return {
        "ok": False,
        "error": {
            "kind": "ServiceUnavailable",
            "message": f"no service bound as '{frame.get('pool')}'",
        },
    }


def _is_id(value: object) -> TypeGuard[int]:
    return type(value) is int and value >= 0


class _Child(Structural):
    """
    What a worker needs of its process transport (Twisted's Process, or a
    test's fake).  What the methods return is ignored (``object``: compiled,
    a declared ``None`` would be checked).
    """

    pid: int | None
    pipes: dict[int, object]

    def write(self, data: bytes) -> object: ...
    def writeToChild(self, childFD: int, data: bytes) -> object: ...
    def closeStdin(self) -> object: ...
    def closeChildFD(self, descriptor: int) -> object: ...
    def signalProcess(self, signalID: str | int) -> object: ...
    def loseConnection(self) -> object: ...


class WorkerProcess:
    """
    The protocol of one worker child.

    A process protocol to the reactor (``makeConnection``,
    ``childDataReceived``, ``childConnectionLost``, ``processExited``,
    ``processEnded``) without Twisted's ``ProcessProtocol`` as its base:
    compiled (edgegw_tx/compiled.py), a class without a Python base is a
    native one, whose attributes are fields rather than dict entries.

    :ivar state: one of ``STARTING`` (spawned, no ``ready`` yet), ``READY``
        (accepts requests), ``STOPPING`` (stdin closed or about to be),
        ``KILLED`` (sent SIGKILL), ``ENDED`` (reaped, pipes closed).
    :ivar pid: the child's pid, kept after it ended for messages.
    :ivar served: how many responses it delivered.
    :ivar stderr_tail: the last lines it wrote to stderr.
    """

    # The reactor sets it (makeConnection) before any method below runs.
    transport: _Child

    stderr_tail_lines = 20

    stdout_grace = 1.0
    """Seconds a child that closed its stdout has to exit before it is killed."""

    def __init__(
        self,
        name: str,
        *,
        log: LogCallback | None = None,
        call_handler: CallHandler | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_line: int = 8192,
        start_timeout: float = 10.0,
        kill_time: float = 5.0,
        process_group: bool = False,
        frame_fds: tuple[int, int] = (0, 1),
        reactor: Any = None,
    ):
        """
        :param name: the pool's name, used in every message.
        :param call_handler: answers ``call`` frames (the service broker hook).
        :param max_line: longest stderr line passed to ``log``; longer ones
            are split.
        :param start_timeout: seconds to wait for ``ready`` before SIGKILL.
        :param kill_time: seconds between SIGTERM and SIGKILL when stopping.
        :param process_group: the child makes itself the leader of its own
            process group (the isolation launcher's ``setsid``): signals go to
            the whole group, and what is left of the group once the child
            exited is killed, so nothing it forked lingers.
        :param frame_fds: the child descriptors of its frame pipes (requests
            to it, frames from it); (0, 1) unless a launcher moves them
            (``edgegw_tx.workers.isolation.FRAME_FDS``).
        :param reactor: provides the clock (``callLater``, ``seconds``).
        """
        if reactor is None:
            # Imported under another name: compiled (edgegw_tx/compiled.py), an import
            # inside a function binds a module global, not the parameter.
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.name = name
        self._clock = reactor
        self._log = log or twisted_log
        self.call_handler = call_handler or unbound_service
        self._frames = FrameProtocol(
            self._frame_received, self._violation, max_frame=max_frame
        )
        self._max_line = max_line
        self._errbuf = bytearray()
        self.stderr_tail: deque[str] = deque(maxlen=self.stderr_tail_lines)
        self.start_timeout = start_timeout
        self.kill_time = kill_time
        self.process_group = process_group
        self._in_fd, self._out_fd = frame_fds

        self._stdout_lost = False
        self.state = STARTING
        self.pid: int | None = None
        self.started_at: float | None = None
        self.protocol_version: int | None = None
        self.sdk: str | None = None
        # Requests it serves at once, from its ready frame (async handlers
        # announce it); 1 for a worker that serves one at a time.
        self.concurrency = 1
        self.served = 0
        self.exit_code: int | None = None
        self.exit_signal: int | None = None

        self._ids = itertools.count(1)
        self._pending: dict[int, Callable[[dict[str, Any] | Failure], object]] = {}
        self._death: GatewayError | None = None
        self._stdin_closed = False
        self._ready_result: WorkerProcess | Failure | None = None
        self._ready_waiters: list[Deferred[WorkerProcess]] = []
        self._ended_waiters: list[Deferred[WorkerProcess]] = []
        self._start_call: Any = None
        self._term_call: Any = None
        self._kill_call: Any = None
        self._pipes_call: Any = None
        self._stdout_call: Any = None
        self._reaped = False
        # Frames for the child written this reactor turn, sent by _flush.
        self._out: list[bytes] = []
        self._flush_call: Any = None

    # -- what the pool uses ------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        self._update_accepting()

    def _update_accepting(self) -> None:
        # An attribute, not a property: the pool reads it for every request.
        self.accepting = self._state == READY and not self._stdout_lost
        """True while ``request`` may be called."""

    @property
    def in_flight(self) -> int:
        """Requests written and not yet answered."""
        return len(self._pending)

    def when_ready(self) -> Deferred[WorkerProcess]:
        """
        A new Deferred firing with this worker once it sent ``ready``, or
        failing with a ``GatewayError`` (message ends with its last stderr
        lines) once it ended without.
        """
        if isinstance(self._ready_result, Failure):
            return fail(self._ready_result)
        if self._ready_result is not None:
            return succeed(self)
        d: Deferred[WorkerProcess] = Deferred()
        self._ready_waiters.append(d)
        return d

    def when_ended(self) -> Deferred[WorkerProcess]:
        """A new Deferred firing with this worker once it is reaped and its pipes closed."""
        if self.state == ENDED:
            return succeed(self)
        d: Deferred[WorkerProcess] = Deferred()
        self._ended_waiters.append(d)
        return d

    def request(self, frame: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """
        Send ``frame`` as a ``request`` with a fresh id.

        :return: fires with the ``response`` frame dict; fails with
            ``WorkerCrashed`` or ``ProtocolViolation`` if the worker dies or is
            killed first.
        """
        d: Deferred[dict[str, Any]] = Deferred()

        def answer(result: dict[str, Any] | Failure) -> None:
            if not d.called:
                d.callback(result)  # a Failure runs the errbacks

        self.send(dict(frame), answer)  # the caller's frame stays as it was
        return d

    def send(
        self, frame: dict[str, Any], answer: Callable[[dict[str, Any] | Failure], object]
    ) -> None:
        """
        ``request`` without a Deferred, for the pool's hot path: ``answer`` is
        called exactly once, with the ``response`` frame or a ``Failure``
        (possibly before this returns).  ``frame`` is not copied: its
        ``type`` and ``id`` are set in place.
        """
        if not self.accepting:
            state = "without stdout" if self.state == READY else self.state
            answer(Failure(WorkerCrashed(f"worker {self.pid} of {self.name} is {state}")))
            return
        request_id = next(self._ids)
        # In place, not on a copy: the caller hands the frame over, and a
        # frame sent again (to another worker, after this one died) gets
        # that worker's id the same way.
        frame["type"] = "request"
        frame["id"] = request_id
        try:
            data = encode_frame(frame)
        except (TypeError, ValueError) as e:
            answer(Failure(e))
            return
        self._pending[request_id] = answer
        self._write(data)

    def stop(self, drain_timeout: float) -> Deferred[WorkerProcess]:
        """
        Ask the worker to exit: close its stdin once it has no request in
        flight (it still needs stdin for the ``result`` of its service calls),
        SIGTERM after ``drain_timeout``, SIGKILL ``kill_time`` later.

        :return: fires when the process ended.
        """
        d = self.when_ended()
        if self.state in (STARTING, READY):
            self.state = STOPPING
            self._cancel("_start_call")
            if not self._pending:
                self._close_stdin()
            self._term_call = self._clock.callLater(drain_timeout, self._terminate)
        return d

    def kill(self, reason: GatewayError) -> None:
        """
        SIGKILL the worker now; requests in flight fail with ``reason`` at once
        rather than when the exit is noticed.
        """
        if self.state in (KILLED, ENDED):
            return
        self.state = KILLED
        self._death = reason
        self._frames.stop()
        self._drop_output()
        self._cancel("_start_call")
        self._cancel("_term_call")
        self._fail_pending(reason)
        self._signal("KILL")

    def spawn_failed(self, reason: BaseException) -> None:
        """spawnProcess raised: end this worker without a process."""
        self._death = WorkerCrashed(
            f"worker of {self.name} could not be spawned: {reason}"
        )
        self._log("gateway", self._death.message)
        self._ended()

    def exit_description(self) -> str:
        """How the process ended, for messages: ``exited with status 1``."""
        if self.exit_signal is not None:
            try:
                signame = signal.Signals(self.exit_signal).name
            except ValueError:
                signame = "unknown"
            return f"was killed by signal {self.exit_signal} ({signame})"
        code = self.exit_code
        if code is not None and code > 128:
            # bwrap (docs/isolation.md) reports a worker killed by signal N as
            # status 128 + N, as shells do.
            try:
                signame = signal.Signals(code - 128).name
            except ValueError:
                pass
            else:
                return f"exited with status {code} (128 + signal {code - 128}, {signame})"
        return f"exited with status {code}"

    # -- the process protocol ----------------------------------------------

    def makeConnection(self, transport: _Child) -> None:
        """The child is spawned and its pipes open (as ``ProcessProtocol.makeConnection``)."""
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:
        self.pid = self.transport.pid
        self.started_at = self._clock.seconds()
        pipes = getattr(self.transport, "pipes", {})
        for fd in (self._in_fd, self._out_fd):
            if fd in pipes:
                _grow_pipe(pipes[fd].fileno())
        if self.start_timeout:
            self._start_call = self._clock.callLater(
                self.start_timeout, self._start_timed_out
            )

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == self._out_fd:
            if len(data) == _TWISTED_READ:
                data = self._read_rest(data)
            self._frames.dataReceived(data)
        elif childFD == 2:
            self._stderr_received(data)

    def _read_rest(self, data: bytes) -> bytes:
        """
        Twisted reads a child's pipe 8 KiB at a time, one reactor turn per
        read: a 64 KiB response took eight.  A read that filled those 8 KiB
        is followed here by reads of what else the pipe holds, at once.  End
        of file and errors are left for Twisted's reader to meet next.
        """
        reader = getattr(self.transport, "pipes", {}).get(self._out_fd)
        if reader is None:
            return data
        chunks = [data]
        fd = reader.fileno()
        while True:
            try:
                more = os.read(fd, PIPE_SIZE)
            except OSError:  # EAGAIN: empty now
                break
            if more:
                chunks.append(more)
            if len(more) < PIPE_SIZE:
                break
        return b"".join(chunks) if len(chunks) > 1 else data

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == self._in_fd:
            self._stdin_closed = True
        elif childFD == self._out_fd and not self._reaped and self.state in (STARTING, READY, STOPPING):
            # No frame can come any more: a child that is exiting is reaped
            # within the grace (processEnded then says how it ended); one that
            # lives on without its frame channel is killed.
            self._stdout_lost = True
            self._update_accepting()
            self._stdout_call = self._clock.callLater(self.stdout_grace, self._stdout_closed)

    def processExited(self, reason: Failure) -> None:
        """
        The child is reaped.  With ``process_group``, the rest of its group
        is killed now.  If a grandchild still holds its stdout or stderr open
        (it left the group, or there is none), processEnded would never come:
        close our ends after a grace.
        """
        self._reaped = True
        self._cancel("_stdout_call")  # it did exit: no kill for a closed stdout
        if self.process_group:
            # Whatever the worker forked dies with it (and lets go of its pipes).
            self._signal_group(signal.SIGKILL)
        self._pipes_call = self._clock.callLater(
            self.kill_time, self.transport.loseConnection
        )

    def processEnded(self, reason: Failure) -> None:
        self.exit_code = getattr(reason.value, "exitCode", None)
        self.exit_signal = getattr(reason.value, "signal", None)
        self._flush_stderr()
        self._log("gateway", f"worker {self.pid} {self.exit_description()}")
        self._ended()

    # -- internals ---------------------------------------------------------

    def _ended(self) -> None:
        self.state = ENDED
        self._frames.stop()
        self._drop_output()
        for name in ("_start_call", "_term_call", "_kill_call", "_pipes_call", "_stdout_call"):
            self._cancel(name)
        if self._pending:
            self._fail_pending(
                WorkerCrashed(
                    f"worker {self.pid} of {self.name} {self.exit_description()}"
                    " before answering"
                )
            )
        if self._ready_result is None:
            self._settle_ready(Failure(self._start_failure()))
        waiters, self._ended_waiters = self._ended_waiters, []
        for d in waiters:
            d.callback(self)

    def _start_failure(self) -> GatewayError:
        if self._death is not None:
            kind, message = type(self._death), self._death.message
        else:
            kind, message = WorkerCrashed, (
                f"worker {self.pid} of {self.name} {self.exit_description()}"
                " before sending ready"
            )
        if self.stderr_tail:
            tail = "; last stderr lines:\n" + "\n".join(self.stderr_tail)
        elif self.pid is not None:
            tail = "; it wrote nothing to stderr"
        else:
            tail = ""
        return kind(message + tail)

    def _settle_ready(self, result: WorkerProcess | Failure) -> None:
        self._ready_result = result
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def _fail_pending(self, reason: GatewayError) -> None:
        pending, self._pending = self._pending, {}
        for answer in pending.values():
            answer(Failure(reason))

    def _cancel(self, name: str) -> None:
        call = getattr(self, name)
        if call is not None and call.active():
            call.cancel()
        setattr(self, name, None)

    def _signal(self, name: str) -> None:
        if self.process_group and self._signal_group(getattr(signal, "SIG" + name)):
            return
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass

    def _signal_group(self, signum: int) -> bool:
        """
        ``os.killpg`` the worker's group: True if it was signalled, False when
        there is no such group (the child has not run ``setsid`` yet, or the
        group is gone).  The group outlives its leader while a member is
        left, so this also reaches grandchildren of a worker already reaped.
        """
        if self.pid is None:
            return False
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            return False
        except OSError as e:
            self._log("gateway", f"cannot signal the process group of worker {self.pid}: {e}")
            return False
        return True

    def _write(self, data: bytes) -> None:
        """
        Queue a frame for the child; the frames of one reactor turn leave
        together at its end (``_flush``).
        """
        self._out.append(data)
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        """
        Write this turn's frames in one write.  Twisted's pipe writer adds
        itself to the reactor as a writer and removes itself again for every
        write (several epoll_ctl calls each time); with nothing already
        waiting in its buffer the frames go straight to the pipe instead, and
        only what the pipe does not take (full: EAGAIN, or a partial write)
        is handed to the writer, behind nothing, so no byte is lost or
        reordered and the reactor never blocks.
        """
        self._flush_call = None
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        pipes: dict[int, object] | None = getattr(self.transport, "pipes", None)
        if pipes is None:  # a transport without pipes: its write is stdin's
            if self._in_fd == 0:
                self.transport.write(data)
            return
        writer = pipes.get(self._in_fd)
        if writer is None:  # closed: the child reads no more
            return
        if isinstance(writer, ProcessWriter):
            if (
                not writer.dataBuffer
                and not writer._tempDataBuffer
                and writer.connected
                and not writer.disconnecting
            ):
                sent = writer.writeSomeData(data)
                if isinstance(sent, int):  # else an error: the writer meets it again
                    if sent == len(data):
                        return
                    data = data[sent:]
            writer.write(data)
        elif self._in_fd == 0:
            self.transport.write(data)
        else:
            self.transport.writeToChild(self._in_fd, data)

    def _drop_output(self) -> None:
        """The child is being killed or is gone: what it has not been sent is dropped."""
        self._cancel("_flush_call")
        self._out.clear()

    def _close_stdin(self) -> None:
        if not self._stdin_closed:
            # What this turn queued goes first; Twisted closes the pipe once
            # its buffer is written.
            self._cancel("_flush_call")
            self._flush()
            self._stdin_closed = True
            if self._in_fd == 0:
                self.transport.closeStdin()
            else:
                self.transport.closeChildFD(self._in_fd)

    def _terminate(self) -> None:
        self._term_call = None
        self._signal("TERM")
        self._kill_call = self._clock.callLater(self.kill_time, self._signal, "KILL")

    def _start_timed_out(self) -> None:
        self._start_call = None
        message = (
            f"worker {self.pid} of {self.name} sent no ready within"
            f" {self.start_timeout:g}s and was killed"
        )
        self._log("gateway", message)
        self.kill(WorkerCrashed(message))

    def _stdout_closed(self) -> None:
        self._stdout_call = None
        if self.state in (KILLED, ENDED):
            return
        message = (
            f"worker {self.pid} of {self.name} closed its stdout but kept running"
            " and was killed"
        )
        self._log("gateway", message)
        self.kill(WorkerCrashed(message))

    def _violation(self, problem: str) -> None:
        message = (
            f"worker {self.pid} of {self.name} broke the frame protocol"
            f" ({problem}) and was killed"
        )
        self._log("gateway", message)
        self.kill(ProtocolViolation(message))

    def _frame_received(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "response":
            self._response(frame)
        elif kind == "call":
            self._call(frame)
        else:
            self._ready(frame)

    def _ready(self, frame: dict[str, Any]) -> None:
        if self._ready_result is not None:
            self._violation("a second ready frame")
            return
        protocol, sdk = frame.get("protocol"), frame.get("sdk")
        if type(protocol) is not int or not isinstance(sdk, str):
            self._violation('ready needs an integer "protocol" and a string "sdk"')
            return
        concurrency = frame.get("concurrency", 1)
        if type(concurrency) is not int or concurrency < 1:
            self._violation('ready\'s "concurrency" must be a positive integer')
            return
        self.protocol_version, self.sdk = protocol, sdk
        self.concurrency = concurrency
        self._cancel("_start_call")
        if self.state == STARTING:
            self.state = READY
        self._settle_ready(self)

    def _response(self, frame: dict[str, Any]) -> None:
        request_id = frame.get("id")
        answer = self._pending.pop(request_id, None) if _is_id(request_id) else None
        if answer is None:
            self._violation(f"response for unknown id {request_id!r}")
            return
        self.served += 1
        answer(frame)
        if self.state == STOPPING and not self._pending:
            self._close_stdin()

    def _call(self, frame: dict[str, Any]) -> None:
        call_id = frame.get("id")
        if not _is_id(call_id):
            self._violation(f"call with invalid id {call_id!r}")
            return
        d = maybeDeferred(self.call_handler, frame)
        d.addErrback(self._call_failed, frame)
        d.addCallback(self._send_result, call_id)

    def _call_failed(self, failure: Failure, frame: dict[str, Any]) -> dict[str, Any]:
        _logger.failure("service call {frame!r} failed", failure, frame=frame)
        return {
            "ok": False,
            "error": {"kind": "Internal", "message": "the service call failed"},
        }

    def _send_result(self, result: dict[str, Any], call_id: int) -> None:
        if self.state not in (READY, STOPPING) or self._stdin_closed:
            return
        out = dict(result)
        out["type"] = "result"
        out["id"] = call_id
        try:
            data = encode_frame(out)
        except (TypeError, ValueError) as e:
            data = encode_frame(
                {
                    "type": "result",
                    "id": call_id,
                    "ok": False,
                    "error": {"kind": "Internal", "message": f"unencodable result: {e}"},
                }
            )
        self._write(data)

    def _stderr_received(self, data: bytes) -> None:
        buf = self._errbuf
        buf += data
        start, limit = 0, self._max_line
        while True:
            newline = buf.find(b"\n", start, start + limit + 1)
            if newline != -1:
                self._line(buf[start:newline])
                start = newline + 1
            elif len(buf) - start >= limit:
                self._line(buf[start : start + limit])
                start += limit
            else:
                break
        del buf[:start]

    def _flush_stderr(self) -> None:
        if self._errbuf:
            self._line(self._errbuf)
            self._errbuf = bytearray()

    def _line(self, raw: bytes | bytearray) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        line = raw.decode("utf-8", "replace")
        self.stderr_tail.append(line)
        self._log("stderr", line)
