"""
Warming the shared cargo target when the gateway starts.

The first handler compiled into an empty target directory builds the crates
every handler uses (the SDK, serde, serde_json: 10-13 s on two cores); later
ones reuse them and take under a second.  ``WarmUp`` builds a trivial handler
with those crates in the background, at the lowest CPU priority, so that a
newcomer's first compile is as quick as the rest.  A compile asked for
meanwhile ends the warm-up's build first (``Builder.before_compile``) and runs
at normal priority, keeping every crate the warm-up finished: waiting on the
target's lock behind a build at the lowest priority would be slow on a busy
machine.  A marker in
the target directory remembers a finished warm-up for this toolchain, SDK and
crate source, so later starts (of this data dir or another sharing the target)
skip it without running cargo; emptying the target removes the marker too.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..pipeholders import Killer, end
from .artifacts import compute_digest, sdk_fingerprint
from .cargo import CARGO_ARGS, BuildError, stderr_diagnostic, write_crate_source_config
from .project import dependencies, manifest, write_if_changed, write_project

WARM_UP_PACKAGE = "edgegw-warm-up"
"""Its crate name: not ``h-<id>``, so no endpoint's binary can collide with it."""

WARM_UP_CODE = """\
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"path": req.path}))
}

handler_loop!(handle);
"""

NICENESS = 19
"""The warm-up's ``nice`` value: it yields the CPU to requests and to everything else."""

MARKER_NAME = "edgegw-warm-up.key"


_INTERRUPTED = (signal.SIGINT, signal.SIGTERM)
"""Signals that end cargo because the gateway is being stopped, not because the build failed."""


class _Interrupted(Exception):
    """cargo was stopped by SIGINT or SIGTERM: a stop, not a failure worth a warning."""


class _Output(ProcessProtocol):
    """Collects a child's stderr and how it ended (stdout is cargo's JSON, not needed)."""

    def __init__(self) -> None:
        self.ended: Deferred[tuple[int | None, int | None, bytes]] = Deferred()
        self._err: list[bytes] = []

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.closeStdin()

    def errReceived(self, data: bytes) -> None:
        self._err.append(data)

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        self.ended.callback((code, signal, b"".join(self._err)))


class WarmUp:
    """
    One background build of ``WARM_UP_CODE`` with a ``Builder``'s toolchain,
    sandbox, crate source and shared target (see the module docstring).
    ``start()`` returns at once; ``stop()`` ends a build still running.
    """

    log = Logger()

    def __init__(self, builder: Any, reactor: Any, niceness: int = NICENESS, kill: Killer | None = None) -> None:
        """``kill``: how the processes still holding a stopped build's pipes are killed (``pipeholders.end``)."""
        self._builder = builder
        self._reactor = reactor
        self._niceness = niceness
        self._kill = kill
        self.project_dir: Path = builder.build_root / "warm-up"
        self._transport: Any = None
        self._proto: _Output | None = None
        #: ``"warmed"``, ``"skipped"`` (already warm), ``"failed"`` or ``"stopped"`` once done; None before.
        self.outcome: str | None = None
        self.seconds: float | None = None
        self.done: Deferred[str] | None = None
        self._stopped = False
        builder.before_compile(self.yield_to_compile)

    def start(self) -> Deferred[str]:
        """Begin the warm-up (once); fires with its ``outcome``, never fails."""
        done = self.done
        if done is None:
            started = self._reactor.seconds()
            toolchain: Deferred[str] = maybeDeferred(self._builder.toolchain)
            ran: Deferred[str] = toolchain.addCallback(self._run)
            done = self.done = ran.addErrback(self._failed).addCallback(self._finished, started)
        result: Deferred[str] = Deferred()

        def hand_on(outcome: str) -> str:
            result.callback(outcome)
            return outcome

        done.addCallback(hand_on)
        return result

    def yield_to_compile(self) -> Deferred[None]:
        """A compile is about to run cargo: end the warm-up (it keeps what it built) and let it go first."""
        if self.done is not None and self.outcome is None and not self._stopped:
            self.log.info("a compile was asked for: the warm-up build ends, the compile builds the rest")
        return self.stop()

    def stop(self) -> Deferred[None]:
        """
        Kill a warm-up build that still runs, with every process holding its
        pipes (a bwrap killed while setting up leaves its sandbox's first
        process behind: ``pipeholders``), and wait for it to end.
        """
        self._stopped = True
        if self._transport is None or self._proto is None or self.done is None:
            return succeed(None)
        killed = end(self._reactor, self._transport, self._proto.ended, kill=self._kill)
        ended: Deferred[None] = Deferred()

        def hand_on(outcome: str) -> str:
            killed.addCallback(ended.callback)
            return outcome

        self.done.addCallback(hand_on)
        return ended

    def key(self, toolchain: str) -> str:
        """What a finished warm-up is valid for: its inputs, as a build digest."""
        b = self._builder
        deps = dependencies(WARM_UP_CODE, b.sdk_path)
        digest = compute_digest(
            WARM_UP_CODE, manifest(WARM_UP_PACKAGE, deps), sdk_fingerprint(b.sdk_path), toolchain, b.crate_source
        )
        return digest + "\n"

    def is_warm(self, toolchain: str) -> bool:
        """The marker matches and the warm-up's binary is still in the target (nobody emptied it)."""
        try:
            marker = (Path(self._builder.target_dir) / MARKER_NAME).read_text()
        except OSError:
            return False
        binary = os.path.join(self._builder.target_dir, "release", WARM_UP_PACKAGE)
        return marker == self.key(toolchain) and os.path.isfile(binary)

    def _run(self, toolchain: str) -> str | Deferred[str]:
        if self._stopped:
            return "stopped"
        if self.is_warm(toolchain):
            return "skipped"
        b = self._builder
        deps = dependencies(WARM_UP_CODE, b.sdk_path)
        write_crate_source_config(b.build_root, b.crate_source)
        write_project(self.project_dir, manifest(WARM_UP_PACKAGE, deps), WARM_UP_CODE)
        if b.sandbox is not None and b.crate_source == "crates-io":
            # Downloads need the network; the build that runs build scripts has none.
            d = self._cargo(("fetch",), network=True)
            d.addCallback(lambda _: self._cargo((*CARGO_ARGS, "--offline")))
        else:
            d = self._cargo(CARGO_ARGS)
        return d.addCallback(lambda _: self._mark(toolchain))

    def _cargo(self, args: tuple[str, ...], network: bool = False) -> Deferred[None]:
        """Run ``cargo <args>`` for the warm-up's project, as the builder runs a build, at low priority."""
        b = self._builder
        if self._stopped:
            raise BuildError("the gateway is stopping")
        if b.sandbox is None:
            cargo = b._find_cargo()
            argv, env = [cargo, *args], b._env(cargo)
        else:
            b.sandbox.prepare([], [str(self.project_dir / "Cargo.lock")])
            argv, env = b.sandboxed_argv(self.project_dir, args, network)
        nice = shutil.which("nice", path="/usr/bin:/bin")
        if nice is not None:
            argv = [nice, "-n", str(self._niceness), *argv]
        proto = self._proto = _Output()
        self._transport = self._reactor.spawnProcess(proto, argv[0], argv, env=env, path=str(self.project_dir))

        def ended(result: tuple[int | None, int | None, bytes]) -> None:
            self._transport = self._proto = None
            code, signal, stderr = result
            if signal in _INTERRUPTED:
                # Ctrl+C or a stop reached cargo's process group first.
                raise _Interrupted()
            if code != 0 or signal is not None:
                raise BuildError(stderr_diagnostic(stderr, code, signal)["message"])

        return proto.ended.addCallback(ended)

    def _mark(self, toolchain: str) -> str:
        write_if_changed(Path(self._builder.target_dir) / MARKER_NAME, self.key(toolchain))
        return "warmed"

    def _failed(self, failure: Failure) -> str:
        if self._stopped or failure.check(_Interrupted):
            return "stopped"
        # No cargo, a broken toolchain, a crate source without the crates: the
        # first compile will say so to the user; the log says it here.
        self.log.warn(
            "warming the build target failed (the first compile will be slower): {reason}",
            reason=failure.getErrorMessage(),
        )
        return "failed"

    def _finished(self, outcome: str, started: float) -> str:
        self.outcome = outcome
        self.seconds = self._reactor.seconds() - started
        if outcome == "warmed":
            self.log.info("warmed the build target for the first compile in {seconds:.1f} s", seconds=self.seconds)
        elif outcome == "skipped":
            self.log.info("the build target is warm already: no warm-up build")
        return outcome
