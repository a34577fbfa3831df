"""
The build plane's face: handler code in, a content-addressed binary out.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred, DeferredLock, fail, gatherResults, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from .artifacts import ArtifactStore, compute_digest, sdk_fingerprint
from .cargo import (
    CARGO_ARGS,
    DEBIAN_REGISTRY,
    BuildError,
    CompileFailed,
    ProcessOutput,
    Running,
    child_env,
    failure_diagnostics,
    find_cargo,
    parse_messages,
    resolve_crate_source,
    run,
    toolchain_identity,
    toolchain_sysroot,
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
from .sandbox import DEFAULT_BUILD_USER, BuildSandbox

STOPPING = "the gateway is stopping: no more builds"
"""Why a build asked for after ``Builder.stop`` fails."""

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

    Builds run in a ``BuildSandbox`` (``sandbox=True``: bwrap, rlimits and
    ``build_user`` when root; raises ``SandboxError`` at once when a tool is
    missing).  ``sandbox=False`` runs cargo as the gateway: only for
    measuring what the sandbox costs (bench/build.py) and for unit tests.
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
        sandbox: BuildSandbox | bool = True,
        build_user: str = DEFAULT_BUILD_USER,
        shared: Any = None,
    ):
        """
        ``shared`` (a ``cluster.artifacts.SharedArtifacts``, with a store
        several nodes share) makes a digest compile once in the cluster: a
        local cache miss fetches the binary another node stored, or compiles
        under the cluster's claim and stores it for the others.
        """
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.data_dir = Path(data_dir).absolute()
        self.sdk_path = os.path.abspath(sdk_path)
        self.crate_source = resolve_crate_source(crate_source)
        self.build_root = self.data_dir / "build"
        self.target_dir = Path(target_dir).absolute() if target_dir else self.build_root / "target"
        self.timeout = timeout
        self.artifacts = ArtifactStore(self.data_dir / "artifacts")
        if sandbox is True:
            sandbox = BuildSandbox.for_gateway(build_user)
        self.sandbox: BuildSandbox | None = sandbox or None
        # The build user's cargo home: its package-cache lock, crates-io downloads.
        self.cargo_home = self.build_root / "cargo-home"
        self._sysroot: str | None = None
        self._cargo_arg = cargo
        self._cargo: str | None = None
        self._toolchain: str | None = None
        self._toolchain_pending: _Shared | None = None
        self._inflight: dict[str, _Shared] = {}
        self._locks: dict[str, DeferredLock] = {}
        self.shared = shared
        self._fetching: dict[str, _Shared] = {}
        self._before_compile: list[Callable[[], Deferred[None]]] = []
        self._running = Running()
        self._stopped = False

    # -- public ---------------------------------------------------------------

    def stop(self) -> Deferred[None]:
        """
        The gateway stops: kill the builds still running, with every process
        holding their pipes (``pipeholders``), and start no more; fires once
        they ended.  Their callers get a failed build.
        """
        self._stopped = True
        return self._running.end_all(self._reactor)

    def before_compile(self, hook: Callable[[], Deferred[None]]) -> None:
        """
        Have every compile wait for ``hook()`` before it runs cargo: the
        start-up warm-up (warmup.py) ends its own build there, so a compile
        does not queue behind a low-priority cargo on the target's lock.
        """
        self._before_compile.append(hook)

    def artifact(self, digest: str) -> str | None:
        """Path of the stored binary for ``digest``, or None."""
        return self.artifacts.path(digest)

    def fetch(self, digest: str) -> Deferred[str | None]:
        """
        The local binary of ``digest``, fetched from the cluster's store when
        this node does not have it; None when neither has it (or the store is
        not shared). Concurrent fetches of one digest share one copy.
        """
        binary = self.artifacts.path(digest)
        if binary is not None:
            return succeed(binary)
        if self.shared is None:
            return succeed(None)
        pending = self._fetching.get(digest)
        if pending is None:
            pending = self._fetching[digest] = _Shared()

            def done(result: Any) -> None:
                del self._fetching[digest]
                pending.fire(result)

            self.shared.fetch(digest, self.artifacts).addBoth(done)
        result: Deferred[str | None] = pending.new()
        return result

    def remove_artifact(self, digest: str) -> Deferred[bool]:
        """
        Delete the stored binary of ``digest`` in a thread; fires with True
        when there was one here. In a cluster the store's copy goes too: the
        ledger asks only for digests no endpoint of the cluster uses.
        """
        d: Deferred[bool] = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self.artifacts.remove, digest
        )
        if self.shared is not None:
            shared = self.shared
            d.addCallback(lambda removed: shared.forget(digest).addCallback(lambda _: removed))
        return d

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

            self.build_root.chmod(0o700)
            d = toolchain_identity(self._reactor, cargo, self._env(cargo), str(self.build_root))
            if self.sandbox is not None:
                d.addCallback(self._sandbox_ready, cargo)
            d.addBoth(done)
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
        return self.toolchain().addCallback(self._start, endpoint_id, package, code, deps, started)

    # -- private --------------------------------------------------------------

    def _sandbox_ready(self, identity: str, cargo: str) -> Deferred[str]:
        """
        Learn the toolchain's sysroot (what the sandbox shows and runs cargo
        from, without rustup) and hand the writable directories to the build
        user, in a thread: the first time that re-owns a whole target directory.
        """
        assert self.sandbox is not None
        sandbox = self.sandbox
        d = toolchain_sysroot(self._reactor, cargo, self._env(cargo), str(self.build_root))

        def prepare(sysroot: str) -> Deferred[str]:
            self._sysroot = sysroot
            if not os.path.isfile(os.path.join(sysroot, "bin", "cargo")):
                raise BuildError(
                    f"the toolchain's sysroot {sysroot} has no bin/cargo, which sandboxed builds run;"
                    " install the toolchain with rustup or Debian's cargo"
                )
            prepared = deferToThreadPool(
                self._reactor,
                self._reactor.getThreadPool(),
                sandbox.prepare,
                [str(self.target_dir), str(self.cargo_home)],
            )
            return prepared.addCallback(lambda _: identity)

        return d.addCallback(prepare)

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

            def compile() -> Deferred[BuildResult]:
                return lock.run(self._compile, endpoint_id, package, code, deps, digest, started)

            if self.shared is None:
                running = compile()
            else:
                running = self.shared.obtain(digest, self.artifacts, compile, self.timeout)
                running.addCallback(self._obtained, digest, deps, started)
            running.addBoth(self._finished, endpoint_id, digest, shared)
        return shared.new()

    def _obtained(
        self, outcome: tuple[str | None, Any], digest: str, deps: list[Dependency], started: float
    ) -> BuildResult:
        """A shared build's outcome: compiled here (its result) or fetched (cached, no compiler ran here)."""
        fetched, result = outcome
        if fetched is None:
            assert isinstance(result, BuildResult)
            return result
        return BuildResult(
            digest,
            fetched,
            True,
            self._reactor.seconds() - started,
            dependency_names(deps),
            self.artifacts.metadata(digest).get("warnings", []),
        )

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
        if not self._before_compile:
            return self._cargo_build(endpoint_id, package, code, deps, digest, started)
        waited = gatherResults([hook() for hook in self._before_compile], consumeErrors=True)
        return waited.addCallback(lambda _: self._cargo_build(endpoint_id, package, code, deps, digest, started))

    def _cargo_build(
        self,
        endpoint_id: str,
        package: str,
        code: str,
        deps: list[Dependency],
        digest: str,
        started: float,
    ) -> Deferred[BuildResult]:
        if self._stopped:
            raise BuildError(STOPPING)
        cargo = self._find_cargo()
        project_dir = self.build_root / "endpoints" / endpoint_id
        write_crate_source_config(self.build_root, self.crate_source)
        main_rs = write_project(project_dir, manifest(package, deps), code)
        if self.sandbox is None:
            d = run(self._reactor, [cargo, *CARGO_ARGS], self._env(cargo), str(project_dir), self.timeout, running=self._running)
        elif self.crate_source == "crates-io":
            # Downloads need the network but run no code; the build that runs
            # build scripts and proc macros then has none.
            d = self._sandboxed(project_dir, ("fetch",), network=True)
            d.addCallback(self._after_fetch, project_dir)
        else:
            d = self._sandboxed(project_dir, CARGO_ARGS)
        return d.addCallback(self._store, package, str(main_rs), deps, digest, started)

    def _after_fetch(self, output: ProcessOutput, project_dir: Path) -> ProcessOutput | Deferred[ProcessOutput]:
        if output.code != 0 or output.signal is not None:
            return output
        if self._stopped:
            raise BuildError(STOPPING)
        return self._sandboxed(project_dir, (*CARGO_ARGS, "--offline"))

    def sandboxed_argv(
        self, project_dir: Path, args: tuple[str, ...], network: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        """
        The command line and environment of ``cargo <args>`` for one project
        in the sandbox: the toolchain, SDK, crate registry, crate-source
        config and the project (all read-only, the project's Cargo.lock
        writable), the shared target directory and the cargo home (writable).
        Nothing else of the data directory.
        """
        assert self.sandbox is not None and self._sysroot is not None
        real = os.path.realpath
        sysroot = real(self._sysroot)
        project = real(project_dir)
        target = real(self.target_dir)
        home = real(self.cargo_home)
        read_only = [sysroot, real(self.sdk_path)]
        if self.crate_source == "debian":
            read_only.append(real(DEBIAN_REGISTRY))
        config = self.build_root / ".cargo"
        if config.is_dir():
            read_only.append(real(config))
        read_only.append(project)
        env = {
            "PATH": os.pathsep.join([os.path.join(sysroot, "bin"), "/usr/bin", "/bin"]),
            "RUSTC": os.path.join(sysroot, "bin", "rustc"),
            "CARGO_HOME": home,
            "HOME": home,
            "CARGO_TARGET_DIR": target,
            "CARGO_TERM_COLOR": "never",
            "TMPDIR": "/tmp",
        }
        argv = self.sandbox.argv(
            [os.path.join(sysroot, "bin", "cargo"), *args],
            cwd=project,
            env=env,
            read_only=read_only,
            writable=[os.path.join(project, "Cargo.lock"), target, home],
            network=network,
        )
        return argv, env

    def _sandboxed(self, project_dir: Path, args: tuple[str, ...], network: bool = False) -> Deferred[ProcessOutput]:
        assert self.sandbox is not None
        # Cargo writes the lock file; everything else of the project stays the gateway's.
        self.sandbox.prepare([], [str(project_dir / "Cargo.lock")])
        argv, env = self.sandboxed_argv(project_dir, args, network)
        return run(self._reactor, argv, env, str(project_dir), self.timeout, running=self._running)

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
            raise CompileFailed(failure_diagnostics(report, output, main_rs))
        if report.executable is None:
            raise BuildError("cargo succeeded but reported no executable for " + package)
        names = dependency_names(deps)
        warnings = [d for d in report.diagnostics if d["level"] == "warning"]
        metadata = {"warnings": warnings, "dependencies": names}
        if self.sandbox is None:
            # A release binary is megabytes: copy it off the reactor thread.
            copied = deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), self.artifacts.put, digest, report.executable, metadata
            )
        else:
            expected = os.path.join(os.path.realpath(self.target_dir), "release", package)
            if report.executable != expected:
                raise BuildError(f"cargo reported the binary at {report.executable}, not at {expected}")
            copied = deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), self._take_output, package, digest, metadata
            )
        return copied.addCallback(
            lambda binary: BuildResult(
                digest, binary, False, self._reactor.seconds() - started, names, warnings
            )
        )

    def _take_output(self, package: str, digest: str, metadata: dict[str, Any]) -> str:
        """
        Copy a sandboxed build's binary into the artifacts, then delete it
        from the shared target directory, where the next endpoint's build
        could read it (``include_bytes!``).  The build user owns that
        directory, so nothing in it is followed: ``release/`` and the binary
        are opened with O_NOFOLLOW and must be a directory and a regular file.
        Blocking: runs in a thread.
        """
        release = fd = -1
        try:
            directory = os.open(self.target_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                release = os.open("release", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            finally:
                os.close(directory)
            fd = os.open(package, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=release)
        except OSError as e:
            if release >= 0:
                os.close(release)
            raise BuildError(
                f"cannot take the build's output release/{package} from {self.target_dir}:"
                f" {e.strerror} (a link or something other than the binary cargo wrote)"
            )
        try:
            with os.fdopen(fd, "rb") as binary:
                if not stat.S_ISREG(os.fstat(binary.fileno()).st_mode):
                    raise BuildError(f"the build's output {package} is not a regular file")
                stored = self.artifacts.put(digest, binary, metadata)
            _unlink_outputs(release, package)
        finally:
            os.close(release)
        return stored

    def _find_cargo(self) -> str:
        if self._cargo is None:
            self._cargo = find_cargo(self._cargo_arg)
        return self._cargo

    def _env(self, cargo: str) -> dict[str, str]:
        return child_env(cargo, str(self.target_dir))


def _unlink_outputs(release: int, package: str) -> None:
    """Remove ``release/<package>`` and ``release/deps/<crate>-<hash>*`` (the binary and its dep-info)."""
    os.unlink(package, dir_fd=release)
    try:
        deps = os.open("deps", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=release)
    except FileNotFoundError:
        return
    try:
        prefix = package.replace("-", "_") + "-"
        for name in os.listdir(deps):
            if name.startswith(prefix):
                try:
                    os.unlink(name, dir_fd=deps)
                except IsADirectoryError:
                    pass
    finally:
        os.close(deps)


def _error(message: str) -> dict[str, Any]:
    return {"level": "error", "message": message, "line": None, "column": None, "rendered": message}
