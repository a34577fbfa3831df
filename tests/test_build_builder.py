"""
Tests for ``Builder`` on a fake process reactor: no real cargo, no real time.

The fake records every ``spawnProcess`` (argv, env, cwd) and lets the test play
the child: feed stdout, end it with an exit code or a signal.
"""

import os
import stat
import tomllib
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from edgegw_tx.build import Builder, BuildResult, CargoNotFound, CompileFailed
from edgegw_tx.build.builder import EMPTY_CODE_MESSAGE
from edgegw_tx.build.cargo import BuildError

from tests.support.builds import BROKEN, RESOLVE_STDERR, WARN
from tests.support.builds import HELLO, TOOLCHAIN, ProcessReactor, artifact_line, executable

class BuilderTestCase(SynchronousTestCase):
    """Builds a Builder over a temp data dir, a fake SDK and fake cargo/rustc files."""

    def setUp(self):
        self.base = Path(os.path.abspath(self.mktemp()))
        self.bin = self.base / "toolchain" / "bin"
        self.cargo = executable(str(self.bin / "cargo"))
        self.rustc = executable(str(self.bin / "rustc"))
        self.sdk = self.base / "sdk"
        (self.sdk / "src").mkdir(parents=True)
        (self.sdk / "Cargo.toml").write_text('[package]\nname = "rust-edge-gateway-sdk"\nversion = "0.1.0"\n')
        (self.sdk / "src" / "lib.rs").write_text("pub mod prelude {}\n")
        self.data = self.base / "data"
        self.reactor = ProcessReactor()
        self.builder = self.make_builder()

    def make_builder(self, **kw):
        kw.setdefault("cargo", self.cargo)
        kw.setdefault("crate_source", "debian")
        kw.setdefault("reactor", self.reactor)
        # The sandboxed command line has its own tests (test_build_sandbox).
        kw.setdefault("sandbox", False)
        return Builder(self.data, self.sdk, **kw)

    def answer_toolchain(self, identity=TOOLCHAIN):
        """Play ``rustc -vV``, which the builder asks once before its first build."""
        child = self.reactor.children[-1]
        self.assertEqual(child.args, [self.rustc, "-vV"])
        child.out(identity)
        child.exit(0)

    def cargo_child(self):
        child = self.reactor.children[-1]
        self.assertEqual(child.args[0], self.cargo)
        return child

    def succeed_cargo(self, child, package, content=b"\x7fELF fake handler", messages=b""):
        binary = executable(str(self.data / "build" / "target" / "release" / package), content)
        child.out(messages + artifact_line(package, binary))
        child.exit(0)

    def hello(self, endpoint_id="hello", code=HELLO):
        """Build ``code``, answering rustc and cargo; returns the BuildResult."""
        d = self.builder.build(endpoint_id, code)
        if self.reactor.children and self.reactor.children[-1].args[1:] == ["-vV"]:
            self.answer_toolchain()
        self.succeed_cargo(self.cargo_child(), "h-" + endpoint_id)
        return self.successResultOf(d)


class RunCargoTests(BuilderTestCase):
    """How cargo is started: arguments, directory, environment, project files."""

    def test_cargo_command_line(self):
        """cargo runs `build --release --message-format=json` in the endpoint's project directory."""
        self.builder.build("hello", HELLO)
        self.answer_toolchain()
        child = self.cargo_child()
        self.assertEqual(child.args, [self.cargo, "build", "--release", "--message-format=json"])
        self.assertEqual(child.executable, self.cargo)
        self.assertEqual(child.path, str(self.data / "build" / "endpoints" / "hello"))
        self.assertTrue(child.stdin_closed)

    def test_cargo_environment(self):
        """cargo gets an explicit env: its own dir on PATH, the shared target dir, no colour, nothing unrelated."""
        self.patch(os, "environ", {"PATH": "/usr/bin", "HOME": "/home/gw", "AWS_SECRET": "x"})
        builder = self.make_builder()
        builder.build("hello", HELLO)
        self.answer_toolchain()
        env = self.cargo_child().env
        self.assertEqual(
            env,
            {
                "PATH": f"{self.bin}:/usr/bin",
                "HOME": "/home/gw",
                "CARGO_TARGET_DIR": str(self.data / "build" / "target"),
                "CARGO_TERM_COLOR": "never",
            },
        )

    def test_target_dir_can_be_shared(self):
        """An explicit target_dir replaces <data_dir>/build/target (tests share one across data dirs)."""
        builder = self.make_builder(target_dir=self.base / "shared-target")
        builder.build("hello", HELLO)
        self.answer_toolchain()
        self.assertEqual(self.cargo_child().env["CARGO_TARGET_DIR"], str(self.base / "shared-target"))

    def test_project_files(self):
        """The project holds Cargo.toml for h-<id> and the code verbatim as src/main.rs."""
        self.builder.build("hello", HELLO)
        self.answer_toolchain()
        project = self.data / "build" / "endpoints" / "hello"
        self.assertEqual((project / "src" / "main.rs").read_text(), HELLO)
        doc = tomllib.loads((project / "Cargo.toml").read_text())
        self.assertEqual(doc["package"]["name"], "h-hello")
        self.assertEqual(doc["dependencies"]["rust-edge-gateway-sdk"]["path"], str(self.sdk))

    def test_debian_config(self):
        """With crate_source debian the offline Debian registry config sits above the projects."""
        self.builder.build("hello", HELLO)
        self.answer_toolchain()
        config = (self.data / "build" / ".cargo" / "config.toml").read_text()
        self.assertIn('replace-with = "debian"', config)

    def test_crates_io_has_no_config(self):
        """With crate_source crates-io no source replacement is written."""
        builder = self.make_builder(crate_source="crates-io")
        builder.build("hello", HELLO)
        self.answer_toolchain()
        self.assertFalse((self.data / "build" / ".cargo" / "config.toml").exists())


class ResultTests(BuilderTestCase):
    """A successful build is stored by digest and described by a BuildResult."""

    def test_binary_is_stored(self):
        """The binary is copied to artifacts/<digest>/handler, mode 0755, with the timing and dependencies."""
        d = self.builder.build("hello", HELLO)
        self.answer_toolchain()
        self.reactor.advance(1.5)
        self.succeed_cargo(self.cargo_child(), "h-hello", b"binary bytes")
        result = self.successResultOf(d)
        self.assertIsInstance(result, BuildResult)
        self.assertRegex(result.digest, "^[0-9a-f]{64}$")
        self.assertEqual(result.binary, str(self.data / "artifacts" / result.digest / "handler"))
        self.assertEqual(Path(result.binary).read_bytes(), b"binary bytes")
        self.assertEqual(stat.S_IMODE(os.stat(result.binary).st_mode), 0o755)
        self.assertFalse(result.cached)
        self.assertEqual(result.seconds, 1.5)
        self.assertEqual(result.dependencies, ["rust-edge-gateway-sdk", "serde", "serde_json"])
        self.assertEqual(self.builder.artifact(result.digest), result.binary)

    def test_detected_dependencies_are_reported(self):
        """Crates the code names and the SDK's async feature show in the result and Cargo.toml, also when cached."""
        code = HELLO.replace("handler_loop!", "handler_loop_async!").replace(
            "Response::ok(", "let _id = uuid::Uuid::new_v4();\n    Response::ok("
        )
        expected = ["rust-edge-gateway-sdk", "rust-edge-gateway-sdk/async", "serde", "serde_json", "uuid", "tokio"]
        result = self.hello("asyncy", code)
        self.assertEqual(result.dependencies, expected)
        doc = tomllib.loads((self.data / "build" / "endpoints" / "asyncy" / "Cargo.toml").read_text())
        self.assertEqual(doc["dependencies"]["rust-edge-gateway-sdk"]["features"], ["async"])
        self.assertEqual(doc["dependencies"]["uuid"], {"version": "1", "features": ["v4", "serde"]})
        self.assertEqual(doc["dependencies"]["tokio"], {"version": "1", "features": ["rt", "macros", "time", "sync"]})
        again = self.successResultOf(self.builder.build("asyncy", code))
        self.assertTrue(again.cached)
        self.assertEqual(again.dependencies, expected)

    def test_explicit_dependencies_reach_cargo_toml(self):
        """extra_dependencies in the settings' shape are written to Cargo.toml and reported."""
        extra = {"chrono": {"version": "=0.4.23", "features": ["serde"]}, "anyhow": "1"}
        d = self.builder.build("hello", HELLO + "// chrono::Utc\n", extra_dependencies=extra)
        self.answer_toolchain()
        doc = tomllib.loads((self.data / "build" / "endpoints" / "hello" / "Cargo.toml").read_text())
        self.assertEqual(doc["dependencies"]["chrono"], {"version": "=0.4.23", "features": ["serde"]})
        self.assertEqual(doc["dependencies"]["anyhow"], "1")
        self.succeed_cargo(self.cargo_child(), "h-hello")
        self.assertEqual(
            self.successResultOf(d).dependencies,
            ["rust-edge-gateway-sdk", "serde", "serde_json", "anyhow", "chrono"],
        )

    def test_invalid_explicit_dependency(self):
        """A path dependency or the SDK itself raises InvalidDependency before anything runs."""
        from edgegw_tx.build import InvalidDependency

        for extra in ({"x": {"version": "1", "path": "/etc"}}, {"rust-edge-gateway-sdk": "1"}):
            self.assertRaises(InvalidDependency, self.builder.build, "hello", HELLO, extra)
        self.assertEqual(self.reactor.children, [])

    def test_warnings_are_reported_and_remembered(self):
        """The handler's own warnings come with the result, also when it is later served from the cache."""
        d = self.builder.build("warn", HELLO)
        self.answer_toolchain()
        self.succeed_cargo(self.cargo_child(), "h-warn", messages=WARN + b"\n")
        first = self.successResultOf(d)
        self.assertEqual([(w["line"], w["message"]) for w in first.warnings], [(4, "unused variable: `unused`")])
        again = self.successResultOf(self.builder.build("warn", HELLO))
        self.assertTrue(again.cached)
        self.assertEqual(again.warnings, first.warnings)

    def test_artifact_rejects_non_digests(self):
        """artifact() answers None for unknown digests and for anything that is not 64 hex digits."""
        self.assertIsNone(self.builder.artifact("0" * 64))
        self.assertIsNone(self.builder.artifact("../../etc/passwd"))
        self.assertIsNone(self.builder.artifact(""))

    def test_success_without_executable(self):
        """cargo exiting 0 without naming the binary is a BuildError, not a crash."""
        d = self.builder.build("hello", HELLO)
        self.answer_toolchain()
        self.cargo_child().exit(0)
        self.failureResultOf(d, BuildError)


class CacheTests(BuilderTestCase):
    """Identical inputs never compile twice."""

    def test_cache_hit_runs_no_cargo(self):
        """Building unchanged code again returns cached=True with the same digest and starts no process."""
        first = self.hello()
        spawned = len(self.reactor.children)
        again = self.successResultOf(self.builder.build("hello", HELLO))
        self.assertEqual(len(self.reactor.children), spawned)
        self.assertTrue(again.cached)
        self.assertEqual((again.digest, again.binary), (first.digest, first.binary))

    def test_cache_survives_restart(self):
        """A new Builder over the same data dir finds the artifact after asking rustc only."""
        first = self.hello()
        builder = self.make_builder()
        d = builder.build("hello", HELLO)
        self.answer_toolchain()
        self.assertEqual(self.successResultOf(d).digest, first.digest)
        self.assertTrue(self.successResultOf(builder.build("hello", HELLO)).cached)

    def test_same_code_other_endpoint(self):
        """The digest does not depend on the endpoint: the same code elsewhere is a cache hit."""
        first = self.hello("one")
        other = self.successResultOf(self.builder.build("two", HELLO))
        self.assertTrue(other.cached)
        self.assertEqual(other.digest, first.digest)

    def test_digest_inputs(self):
        """Changing the code, the dependencies, the SDK sources, the toolchain or the crate source changes the digest."""
        base = self.hello().digest
        digests = {base}
        digests.add(self.hello(code=HELLO + "\n").digest)

        d = self.builder.build("hello", HELLO, {"regex": "1"})
        self.succeed_cargo(self.cargo_child(), "h-hello")
        digests.add(self.successResultOf(d).digest)

        (self.sdk / "src" / "lib.rs").write_text("pub mod prelude { }\n")
        digests.add(self.hello().digest)

        builder = self.make_builder()
        d = builder.build("hello", HELLO)
        self.answer_toolchain(TOOLCHAIN.replace(b"1.95.0", b"1.96.0"))
        self.succeed_cargo(self.cargo_child(), "h-hello")
        digests.add(self.successResultOf(d).digest)

        builder = self.make_builder(crate_source="crates-io")
        d = builder.build("hello", HELLO)
        self.answer_toolchain()
        self.succeed_cargo(self.cargo_child(), "h-hello")
        digests.add(self.successResultOf(d).digest)
        self.assertEqual(len(digests), 6)

    def test_digest_follows_dependencies(self):
        """Detected crates, explicit crates, their versions and features each give another digest."""
        digests = [self.hello().digest]
        for extra in (
            {"regex": "1"},
            {"regex": "1.7"},
            {"regex": {"version": "1.7", "features": ["unicode"]}},
            {"regex": {"version": "1.7", "features": ["unicode"], "default-features": False}},
        ):
            d = self.builder.build("hello", HELLO, extra)
            self.succeed_cargo(self.cargo_child(), "h-hello")
            digests.append(self.successResultOf(d).digest)
        digests.append(self.hello(code=HELLO.replace("Response::ok", "uuid::Uuid::nil(); Response::ok")).digest)
        self.assertEqual(len(set(digests)), len(digests))

    def test_comment_change_keeps_dependencies(self):
        """A crate named only in a comment adds no dependency (the digest still changes with the code)."""
        result = self.hello(code=HELLO + "// TODO: use chrono::Utc\n")
        self.assertEqual(result.dependencies, ["rust-edge-gateway-sdk", "serde", "serde_json"])

    def test_toolchain_asked_once(self):
        """rustc -vV runs once per Builder, however many builds follow."""
        self.hello("one")
        self.hello("two", HELLO + "// two\n")
        rustc_runs = [c for c in self.reactor.children if c.args[1:] == ["-vV"]]
        self.assertEqual(len(rustc_runs), 1)

    def test_toolchain_failure_is_not_remembered(self):
        """A failing rustc fails the build with its stderr, and the next build asks again."""
        d = self.builder.build("hello", HELLO)
        rustc = self.reactor.children[-1]
        rustc.err(b"error: toolchain 'stable' is not installed\n")
        rustc.exit(1)
        failure = self.failureResultOf(d, BuildError)
        self.assertIn("not installed", str(failure.value))
        self.hello()


class ConcurrencyTests(BuilderTestCase):
    """One cargo run per digest; one project directory per endpoint at a time."""

    def test_concurrent_builds_share_one_run(self):
        """A second build of the same code while the first runs starts no cargo and gets the same result."""
        d1 = self.builder.build("hello", HELLO)
        self.answer_toolchain()
        d2 = self.builder.build("hello", HELLO)
        self.assertIsNot(d1, d2)
        self.assertEqual(len(self.reactor.children), 2)  # rustc and one cargo
        self.succeed_cargo(self.cargo_child(), "h-hello")
        r1, r2 = self.successResultOf(d1), self.successResultOf(d2)
        self.assertEqual(r1, r2)
        self.assertFalse(r1.cached)

    def test_shared_deferreds_are_independent(self):
        """A callback on one caller's Deferred does not change what another caller gets."""
        d1 = self.builder.build("hello", HELLO)
        self.answer_toolchain()
        d2 = self.builder.build("hello", HELLO)
        d1.addCallback(lambda result: "replaced")
        self.succeed_cargo(self.cargo_child(), "h-hello")
        self.assertEqual(self.successResultOf(d1), "replaced")
        self.assertIsInstance(self.successResultOf(d2), BuildResult)

    def test_cancelled_caller_leaves_others(self):
        """A caller that cancels its Deferred gets CancelledError; the run goes on for the others."""
        from twisted.internet.defer import CancelledError

        d1 = self.builder.build("hello", HELLO)
        self.answer_toolchain()
        d2 = self.builder.build("hello", HELLO)
        d1.cancel()
        self.failureResultOf(d1, CancelledError)
        self.succeed_cargo(self.cargo_child(), "h-hello")
        self.assertFalse(self.successResultOf(d2).cached)

    def test_shared_failure_reaches_every_caller(self):
        """When the shared run fails, every caller gets CompileFailed."""
        d1 = self.builder.build("broken", HELLO)
        self.answer_toolchain()
        d2 = self.builder.build("broken", HELLO)
        child = self.cargo_child()
        child.out(BROKEN)
        child.exit(101)
        for d in (d1, d2):
            self.assertEqual(len(self.failureResultOf(d, CompileFailed).value.diagnostics), 2)

    def test_new_code_waits_for_running_build(self):
        """New code for an endpoint whose build is running starts cargo only after that build ends."""
        d1 = self.builder.build("hello", HELLO)
        self.answer_toolchain()
        first = self.cargo_child()
        d2 = self.builder.build("hello", HELLO + "// v2\n")
        self.assertEqual(len(self.reactor.children), 2)
        self.succeed_cargo(first, "h-hello", b"v1")
        self.assertEqual(len(self.reactor.children), 3)
        main_rs = self.data / "build" / "endpoints" / "hello" / "src" / "main.rs"
        self.assertEqual(main_rs.read_text(), HELLO + "// v2\n")
        self.succeed_cargo(self.cargo_child(), "h-hello", b"v2")
        r1, r2 = self.successResultOf(d1), self.successResultOf(d2)
        self.assertNotEqual(r1.digest, r2.digest)
        self.assertEqual(Path(r2.binary).read_bytes(), b"v2")

    def test_different_endpoints_build_at_once(self):
        """Builds of different endpoints each start cargo right away (cargo locks the target dir itself)."""
        self.builder.build("one", HELLO)
        self.answer_toolchain()
        self.builder.build("two", HELLO + "// two\n")
        cargo_runs = [c for c in self.reactor.children if c.args[0] == self.cargo]
        self.assertEqual([c.path.rsplit("/", 1)[1] for c in cargo_runs], ["one", "two"])


class FailureTests(BuilderTestCase):
    """Failed builds say why, in the user's terms."""

    def test_compile_error_lines(self):
        """rustc errors become CompileFailed diagnostics on the user's lines."""
        d = self.builder.build("broken", HELLO)
        self.answer_toolchain()
        child = self.cargo_child()
        child.out(BROKEN)
        child.err(b"error: could not compile `h-broken` (bin \"h-broken\") due to 2 previous errors\n")
        child.exit(101)
        e = self.failureResultOf(d, CompileFailed).value
        self.assertEqual([(x["line"], x["column"]) for x in e.diagnostics], [(5, 18), (6, 37)])
        self.assertFalse((self.data / "artifacts").exists())

    def test_resolution_failure(self):
        """A cargo failure with no rustc message is reported from cargo's stderr."""
        d = self.builder.build("hello", HELLO, {"chrono": "0.4"})
        self.answer_toolchain()
        child = self.cargo_child()
        child.err(RESOLVE_STDERR)
        child.exit(101)
        [diag] = self.failureResultOf(d, CompileFailed).value.diagnostics
        self.assertIn("no matching package named `chrono`", diag["message"])

    def test_empty_code(self):
        """Empty or blank code fails at once with a helpful CompileFailed and runs nothing."""
        for code in ("", "  \n\t"):
            e = self.failureResultOf(self.builder.build("hello", code), CompileFailed).value
            self.assertEqual(e.diagnostics[0]["message"], EMPTY_CODE_MESSAGE)
            self.assertIn("handler_loop!", str(e))
        self.assertEqual(self.reactor.children, [])

    def test_invalid_endpoint_id(self):
        """An id outside [A-Za-z0-9_-] raises ValueError before anything is written or run."""
        for bad in ("../evil", "a/b", "", "a b", "ü"):
            self.assertRaises(ValueError, self.builder.build, bad, HELLO)
        self.assertEqual(self.reactor.children, [])
        self.assertFalse(self.data.exists())

    def test_cargo_missing(self):
        """With no cargo the build fails with CargoNotFound telling how to fix it."""
        builder = self.make_builder(cargo=str(self.base / "nowhere" / "cargo"))
        e = self.failureResultOf(builder.build("hello", HELLO), CargoNotFound).value
        self.assertIn("--cargo", str(e))
        self.assertEqual(self.reactor.children, [])

    def test_missing_sdk(self):
        """An SDK path without Cargo.toml fails the build with a BuildError naming it."""
        builder = Builder(
            self.data, self.base / "no-sdk", cargo=self.cargo, crate_source="debian", reactor=self.reactor, sandbox=False
        )
        d = builder.build("hello", HELLO)
        self.answer_toolchain()
        self.assertIn("no-sdk", str(self.failureResultOf(d, BuildError).value))

    def test_timeout_kills_cargo(self):
        """A build running past the timeout is killed and fails with CompileFailed saying it was stopped."""
        builder = self.make_builder(timeout=60)
        d = builder.build("hello", HELLO)
        self.answer_toolchain()
        child = self.cargo_child()
        self.reactor.advance(59)
        self.assertEqual(child.signals, [])
        self.reactor.advance(1)
        self.assertEqual(child.signals, ["KILL"])
        child.killed(9)
        [diag] = self.failureResultOf(d, CompileFailed).value.diagnostics
        self.assertIn("signal 9", diag["message"])

    def test_finished_build_cancels_timeout(self):
        """A build that ends leaves no pending kill timer behind."""
        self.hello()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
