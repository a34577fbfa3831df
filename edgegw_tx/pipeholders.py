"""
Ending a child command together with every process still holding its pipes.

Killing the pid the reactor spawned is not enough for a sandboxed build.
bwrap clones the sandbox's first process, which waits for bwrap's go-ahead,
sets up the mounts, and only then asks the kernel to kill it when bwrap dies
(``--die-with-parent``).  A bwrap killed in that window leaves its clone
orphaned (parent pid 1): blocked for ever on the go-ahead, or running the
whole build unsupervised.  The clone is init of its own pid namespace, so it
ignores SIGTERM, and it holds the child's stdout and stderr, so the reactor
never reports the command ended (``processEnded`` waits for every pipe to
close) and whoever waits for it waits for ever.  A nice 19 warm-up on a busy
machine spends long enough in that window to be caught there.

So ``end`` sends SIGKILL to the spawned pid and to every other process
holding one of its pipes (found in ``/proc/*/fd``; killing a sandbox's first
process ends its whole pid namespace), again every ``ROUND_SECONDS`` until
the pipes close; after ``GRACE_SECONDS`` it closes the gateway's own ends
whatever still holds them, so the wait always ends.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

ROUND_SECONDS = 0.2
"""How often the pipes' holders are looked for and killed until the pipes close."""

GRACE_SECONDS = 5.0
"""After this, the gateway closes its ends of the pipes whatever still holds them."""

Killer = Callable[[frozenset[int], float], "Deferred[list[int]]"]
"""Kills the processes holding pipes of these inodes, waiting up to so many seconds for them to exit; fires with their pids."""

log = Logger()


def pipe_inodes(transport: Any) -> frozenset[int]:
    """The inodes of the pipes the gateway still holds to a spawned process (none for a fake transport)."""
    inodes = set()
    for pipe in getattr(transport, "pipes", {}).values():
        try:
            inodes.add(os.fstat(pipe.fileno()).st_ino)
        except (OSError, ValueError, AttributeError):
            pass  # closed already
    return frozenset(inodes)


def _held(pid: int, links: frozenset[str]) -> bool:
    """``pid`` has a descriptor on one of the pipes (``pipe:[inode]``)."""
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return False  # gone, or not ours to see
    for name in names:
        try:
            if os.readlink(os.path.join(base, name)) in links:
                return True
        except OSError:
            continue  # closed meanwhile
    return False


def holders(inodes: Iterable[int], own: int | None = None) -> list[int]:
    """The pids, other than ``own`` (this process), holding a pipe of one of ``inodes``."""
    links = frozenset(f"pipe:[{inode}]" for inode in inodes)
    own = os.getpid() if own is None else own
    if not links:
        return []
    return [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) != own and _held(int(n), links)]


def kill_holders(inodes: frozenset[int], wait: float) -> list[int]:
    """
    SIGKILL every process ``holders`` finds and wait (up to ``wait`` seconds)
    for them to have exited; the pids killed.  Blocking (a walk of ``/proc``):
    callers use a thread.  Each is signalled and waited for through a pidfd
    taken before checking it still holds a pipe, so a pid reused meanwhile is
    never signalled.
    """
    links = frozenset(f"pipe:[{inode}]" for inode in inodes)
    killed: dict[int, int] = {}
    try:
        for pid in holders(inodes):
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue  # gone already
            try:
                if not _held(pid, links):
                    raise ProcessLookupError(pid)  # let go meanwhile, or another process now
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except OSError:  # that, or it ended between the check and the signal
                os.close(pidfd)
                continue
            killed[pidfd] = pid
        # A pidfd is readable once its process has exited: a sandbox's first
        # process does so only after the rest of its pid namespace.
        waiting = select.poll()
        for pidfd in killed:
            waiting.register(pidfd, select.POLLIN)
        left, deadline = set(killed), time.monotonic() + wait
        while left and time.monotonic() < deadline:
            for pidfd, _ in waiting.poll(max(0.0, deadline - time.monotonic()) * 1000):
                waiting.unregister(pidfd)
                left.discard(pidfd)
    finally:
        for pidfd in killed:
            os.close(pidfd)
    return sorted(killed.values())


def kill_holders_in_thread(reactor: Any) -> Killer:
    """``kill_holders`` in the reactor's thread pool: the walk of ``/proc`` never blocks the reactor."""

    def kill(inodes: frozenset[int], wait: float) -> Deferred[list[int]]:
        if not inodes:
            return succeed([])
        return deferToThreadPool(reactor, reactor.getThreadPool(), kill_holders, inodes, wait)

    return kill


def end(
    reactor: Any,
    transport: Any,
    ended: Deferred[Any],
    *,
    kill: Killer | None = None,
    grace: float = GRACE_SECONDS,
    every: float = ROUND_SECONDS,
) -> Deferred[None]:
    """
    Kill the process of ``transport`` and whatever holds its pipes, round
    after round until ``ended`` (fired by its protocol's ``processEnded``)
    fires; after ``grace`` seconds, close the gateway's ends so that it does.
    Fires once ``ended`` fired and the processes killed have exited.
    """
    finished: Deferred[None] = Deferred()
    if ended.called:
        finished.callback(None)
        return finished
    kill = kill_holders_in_thread(reactor) if kill is None else kill
    inodes = pipe_inodes(transport)
    deadline = reactor.seconds() + grace
    pending: list[Any] = []
    killing = [False]
    try:
        transport.signalProcess("KILL")
    except Exception:  # already gone: processEnded is on its way
        pass

    def finish() -> None:
        if not finished.called:
            finished.callback(None)

    def one_round() -> None:
        pending.clear()
        if ended.called:
            return finish()
        killing[0] = True
        killed = kill(inodes, max(0.0, deadline - reactor.seconds()))
        killed.addErrback(lambda f: log.failure("killing the processes holding a command's pipes", f))
        killed.addCallback(after)

    def after(killed: list[int] | None) -> None:
        killing[0] = False
        if ended.called:
            return finish()
        if reactor.seconds() < deadline:
            pending.append(reactor.callLater(every, one_round))
            return
        log.warn(
            "a stopped command's pipes are still held (processes {pids}): closing the gateway's ends",
            pids=killed,
        )
        transport.loseConnection()

    def on_ended(result: Any) -> Any:
        for call in pending:
            if call.active():
                call.cancel()
        if not killing[0]:
            finish()
        return result

    ended.addBoth(on_ended)
    one_round()
    return finished
