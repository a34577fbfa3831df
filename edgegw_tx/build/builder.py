"""
The build plane's face: handler code in, a content-addressed binary out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from twisted.internet.defer import Deferred, DeferredLock, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from .artifacts import ArtifactStore, compute_digest, sdk_fingerprint
from .cargo import (
    CARGO_ARGS,
    BuildError,
    CompileFailed,
    ProcessOutput,
    child_env,
    failure_diagnostics,
    find_cargo,
    parse_messages,
    resolve_crate_source,
    run,
    toolchain_identity,
    write_crate_source_config,
)
from .project import (
    Dependency,
    dependencies,
    dependency_names,
    manifest,
    package_name,
    write_project,
)

EMPTY_CODE_MESSAGE = (
    "the handler code is empty: write a handler such as "
    "`fn handle(req: Request) -> Response { ... }` after "
    "`use rust_edge_gateway_sdk::prelude::*;` and end with `handler_loop!(handle);`"
)


@dataclass(frozen=True)
class BuildResult:
    """
    A compiled handler: ``binary`` is the stored artifact for ``digest``.

    ``dependencies`` names the crates of its Cargo.toml in manifest order, with
    the SDK features the gateway turned on as ``rust-edge-gateway-sdk/async``
    right after the SDK (see ``project.dependency_names``).
    """

    digest: str
    binary: str
    cached: bool
    seconds: float
    dependencies: list[str]
    warnings: list[dict[str, Any]] = field(default_factory=list)


class _Shared:
    """One outcome handed to any number of callers, each through its own Deferred."""

    def __init__(self) -> None:
        self._waiters: list[Deferred[Any]] = []
        self._done = False
        self._result: Any = None

    def fire(self, result: Any) -> None:
        self._done, self._result = True, result
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            self._deliver(d)

    def new(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        if self._done:
            self._deliver(d)
        else:
            self._waiters.append(d)
        return d

    def _deliver(self, d: Deferred[Any]) -> None:
        if isinstance(self._result, Failure):
            d.errback(self._result)
        else:
            d.callback(self._result)


class Builder:
    """
    Compiles handler code with cargo into binaries stored by digest.

    One cargo project per endpoint under ``<data_dir>/build/endpoints/<id>``,
    one shared target directory so dependencies compile once, and one cargo
    run per digest however many callers ask for it.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        sdk_path: str | os.PathLike[str],
        *,
        cargo: str | None = None,
        crate_source: str = "auto",
        reactor: Any = None,
        target_dir: str | os.PathLike[str] | None = None,
        timeout: float = 600.0,
    ):
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self._reactor = reactor
        self.data_dir = Path(data_dir).absolute()
        self.sdk_path = os.path.abspath(sdk_path)
        self.crate_source = resolve_crate_source(crate_source)
        self.build_root = self.data_dir / "build"
        self.target_dir = Path(target_dir).absolute() if target_dir else self.build_root / "target"
        self.timeout = timeout
        self.artifacts = ArtifactStore(self.data_dir / "artifacts")
        self._cargo_arg = cargo
        self._cargo: str | None = None
        self._toolchain: str | None = None
        self._toolchain_pending: _Shared | None = None
        self._inflight: dict[str, _Shared] = {}
        self._locks: dict[str, DeferredLock] = {}

    # -- public ---------------------------------------------------------------

    def artifact(self, digest: str) -> str | None:
        """Path of the stored binary for ``digest``, or None."""
        return self.artifacts.path(digest)

    def remove_artifact(self, digest: str) -> Deferred[bool]:
        """Delete the stored binary of ``digest`` in a thread; fires with True when there was one."""
        return deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self.artifacts.remove, digest
        )

    def toolchain(self) -> Deferred[str]:
        """
        ``rustc -vV`` of the toolchain in use, asked once and remembered; fails
        with ``CargoNotFound`` when there is no cargo (a startup check for the tap).
        """
        if self._toolchain is not None:
            return succeed(self._toolchain)
        if self._toolchain_pending is None:
            try:
                cargo = self._find_cargo()
            except BuildError:
                return fail()
            self.build_root.mkdir(parents=True, exist_ok=True)
            pending = self._toolchain_pending = _Shared()

            def done(result: Any) -> None:
                self._toolchain_pending = None
                if not isinstance(result, Failure):
                    self._toolchain = result
                pending.fire(result)

            toolchain_identity(self._reactor, cargo, self._env(cargo), str(self.build_root)).addBoth(done)
            return pending.new()
        return self._toolchain_pending.new()

    def build(
        self,
        endpoint_id: str,
        code: str,
        extra_dependencies: Mapping[str, Any] | None = None,
    ) -> Deferred[BuildResult]:
        """
        Compile ``code`` for ``endpoint_id``.

        ``extra_dependencies`` is the endpoint setting ``dependencies`` as
        stored: crate name → version requirement, or → ``{"version",
        "features", "default-features"}`` (``project.check_dependencies``).
        They join the crates detected in the code, replacing one of the same
        name, and are part of the manifest and so of the digest.

        Raises ``ValueError`` at once for an invalid id or extra dependency
        (``InvalidDependency``; a caller's bug, not a build outcome).  The Deferred fails with
        ``CompileFailed`` when the code does not compile (or is empty),
        ``CargoNotFound`` when there is no cargo.  An existing artifact is
        returned with ``cached=True`` without running cargo; callers asking for
        a digest that is being built share that one run.
        """
        package = package_name(endpoint_id)
        deps = dependencies(code, self.sdk_path, extra_dependencies)
        started = self._reactor.seconds()
        if not code.strip():
            return fail(CompileFailed([_error(EMPTY_CODE_MESSAGE)]))
        d = self.toolchain()
        d.addCallback(self._start, endpoint_id, package, code, deps, started)
        return d

    # -- private --------------------------------------------------------------

    def _start(
        self,
        toolchain: str,
        endpoint_id: str,
        package: str,
        code: str,
        deps: list[Dependency],
        started: float,
    ) -> BuildResult | Deferred[BuildResult]:
        # The digest uses a fixed package name: identical code deployed to two
        # endpoints is one artifact.
        digest = compute_digest(
            code, manifest("handler", deps), sdk_fingerprint(self.sdk_path), toolchain, self.crate_source
        )
        binary = self.artifacts.path(digest)
        if binary is not None:
            return BuildResult(
                digest,
                binary,
                True,
                self._reactor.seconds() - started,
                dependency_names(deps),
                self.artifacts.metadata(digest).get("warnings", []),
            )
        shared = self._inflight.get(digest)
        if shared is None:
            shared = self._inflight[digest] = _Shared()
            # One project directory per endpoint: builds of different code for
            # the same endpoint take turns.
            lock = self._locks.setdefault(endpoint_id, DeferredLock())
            running = lock.run(self._compile, endpoint_id, package, code, deps, digest, started)
            running.addBoth(self._finished, endpoint_id, digest, shared)
        return shared.new()

    def _finished(self, result: Any, endpoint_id: str, digest: str, shared: _Shared) -> None:
        if self._inflight.get(digest) is shared:
            del self._inflight[digest]
        lock = self._locks.get(endpoint_id)
        if lock is not None and not lock.locked:
            del self._locks[endpoint_id]
        shared.fire(result)

    def _compile(
        self,
        endpoint_id: str,
        package: str,
        code: str,
        deps: list[Dependency],
        digest: str,
        started: float,
    ) -> Deferred[BuildResult]:
        cargo = self._find_cargo()
        project_dir = self.build_root / "endpoints" / endpoint_id
        write_crate_source_config(self.build_root, self.crate_source)
        main_rs = write_project(project_dir, manifest(package, deps), code)
        d = run(self._reactor, [cargo, *CARGO_ARGS], self._env(cargo), str(project_dir), self.timeout)
        d.addCallback(self._store, package, str(main_rs), deps, digest, started)
        return d

    def _store(
        self,
        output: ProcessOutput,
        package: str,
        main_rs: str,
        deps: list[Dependency],
        digest: str,
        started: float,
    ) -> Deferred[BuildResult]:
        report = parse_messages(output.stdout.splitlines(), main_rs, package)
        if output.code != 0 or output.signal is not None:
            raise CompileFailed(failure_diagnostics(report, output))
        if report.executable is None:
            raise BuildError("cargo succeeded but reported no executable for " + package)
        names = dependency_names(deps)
        warnings = [d for d in report.diagnostics if d["level"] == "warning"]
        # A release binary is megabytes: copy it off the reactor thread.
        copied = deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            self.artifacts.put,
            digest,
            report.executable,
            {"warnings": warnings, "dependencies": names},
        )
        return copied.addCallback(
            lambda binary: BuildResult(
                digest, binary, False, self._reactor.seconds() - started, names, warnings
            )
        )

    def _find_cargo(self) -> str:
        if self._cargo is None:
            self._cargo = find_cargo(self._cargo_arg)
        return self._cargo

    def _env(self, cargo: str) -> dict[str, str]:
        return child_env(cargo, str(self.target_dir))


def _error(message: str) -> dict[str, Any]:
    return {"level": "error", "message": message, "line": None, "column": None, "rendered": message}
