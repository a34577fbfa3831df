"""
Host commands: where the gateway finds them, and running one as a child of the
reactor.

The build plane (cargo under bubblewrap) and the process plane (bubblewrap,
util-linux, iproute2, nftables) both need this, and neither may import the
other, so it lives here, below both.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from .pipeholders import end

TOOL_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
"""Where host tools are looked up: the system's own directories, never the
gateway's ``PATH``, which an operator's shell may have changed."""


def locate(names: Iterable[str], search_path: str = TOOL_PATH) -> tuple[dict[str, str], list[str]]:
    """The absolute paths of ``names`` found in ``search_path``, and the names not found."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        path = shutil.which(name, path=search_path)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    return found, missing


@dataclass(frozen=True)
class ProcessOutput:
    """What a finished command wrote, and how it ended (``code`` None when a signal ended it)."""

    stdout: bytes
    stderr: bytes
    code: int | None
    signal: int | None = None


class _Collector(ProcessProtocol):
    """Writes ``stdin``, collects stdout and stderr; fires ``ended`` in processEnded."""

    def __init__(self, stdin: bytes = b"") -> None:
        self.ended: Deferred[ProcessOutput] = Deferred()
        self._stdin = stdin
        self._out: list[bytes] = []
        self._err: list[bytes] = []

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None, "the reactor connects a transport before this"
        if self._stdin:
            transport.write(self._stdin)
        transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self._out.append(data)

    def errReceived(self, data: bytes) -> None:
        self._err.append(data)

    def processEnded(self, reason: Failure) -> None:
        exc = reason.value
        code = getattr(exc, "exitCode", None)
        signal = getattr(exc, "signal", None)
        if not isinstance(exc, (ProcessDone, ProcessTerminated)):
            code = None
        self.ended.callback(ProcessOutput(b"".join(self._out), b"".join(self._err), code, signal))


class Running:
    """The commands ``run`` started for one owner that still run, so that its stop ends them all."""

    def __init__(self) -> None:
        self._ended: dict[Any, Deferred[ProcessOutput]] = {}

    def add(self, transport: Any, ended: Deferred[ProcessOutput]) -> None:
        """Remember a command until it ended."""
        self._ended[transport] = ended

        def forget(result: ProcessOutput) -> ProcessOutput:
            self._ended.pop(transport, None)
            return result

        ended.addCallback(forget)

    def end_all(self, reactor: Any) -> Deferred[None]:
        """Kill every command still running with whatever holds its pipes (``pipeholders.end``); fires once all ended."""
        ending = [end(reactor, transport, ended) for transport, ended in list(self._ended.items())]
        return gatherResults(ending, consumeErrors=True).addCallback(lambda _: None)


def run(
    reactor: Any,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    timeout: float | None = None,
    stdin: bytes = b"",
    running: Running | None = None,
) -> Deferred[ProcessOutput]:
    """
    Run ``argv`` (an absolute path first) as a child of the reactor; fires with
    its ``ProcessOutput``.  After ``timeout`` seconds the child is killed with
    every process still holding its pipes (``pipeholders.end``: a bwrap's
    orphaned clone too); the output then has ``signal`` set.  ``running``
    remembers it while it runs.
    """
    proto = _Collector(stdin)
    transport = reactor.spawnProcess(proto, argv[0], list(argv), env=dict(env), path=cwd)
    if running is not None:
        running.add(transport, proto.ended)
    if timeout is None:
        return proto.ended
    killing: list[Deferred[None]] = []
    call = reactor.callLater(timeout, lambda: killing.append(end(reactor, transport, proto.ended)))
    output: Deferred[ProcessOutput] = Deferred()

    def deliver(result: ProcessOutput) -> None:
        if call.active():
            call.cancel()
        if killing:
            # Once the processes killed with it have exited too.
            killing[0].addCallback(lambda _: output.callback(result))
        else:
            output.callback(result)

    proto.ended.addCallback(deliver)
    return output
