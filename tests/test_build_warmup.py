"""
The warm-up of the shared cargo target at start (edgegw_tx/build/warmup.py):
a background build of the common crates, at low priority, skipped when the
target is warm already, ended when the gateway stops.
"""

import glob
import json
import os
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from edgegw_tx.build.builder import Builder
from edgegw_tx.build.cargo import BuildError
from edgegw_tx.build.sandbox import DEFAULT_BUILD_USER, BuildSandbox, SandboxError, find_tools, resolve_build_user
from edgegw_tx.build.warmup import MARKER_NAME, NICENESS, WARM_UP_PACKAGE, WarmUp
from edgegw_tx.pipeholders import GRACE_SECONDS, ROUND_SECONDS
from tests.support.handlers import HELLO
from tests.support.hardening import alive, wait_for
from tests.support.harness import SDK, SHARED_TARGET, GatewayHarness, GatewayTestCase, _cargo_or_skip


class FakeBuilder:
    """What WarmUp uses of a Builder, unsandboxed, with a made-up toolchain."""

    def __init__(self, root):
        self.build_root = Path(root) / "build"
        self.target_dir = Path(root) / "target"
        self.target_dir.mkdir(parents=True)
        self.sdk_path = SDK
        self.crate_source = "crates-io"
        self.sandbox = None

    def toolchain(self):
        return succeed("rustc 1.0.0 (fake)")

    def before_compile(self, hook):
        self.hook = hook

    def _find_cargo(self):
        return "/usr/bin/cargo"

    def _env(self, cargo):
        return {"PATH": "/usr/bin"}


class FakeTransport:
    """A spawned process that ends when the test says so."""

    def __init__(self, proto):
        self.proto = proto
        self.signals = []

    def closeStdin(self):
        pass

    def signalProcess(self, name):
        self.signals.append(name)

    def loseConnection(self):
        self.signals.append("closed our ends")


class ProcessClock(Clock):
    """A Clock that records spawnProcess calls instead of running anything."""

    def __init__(self):
        super().__init__()
        self.spawned = []

    def spawnProcess(self, proto, executable, args, env=None, path=None):
        transport = FakeTransport(proto)
        self.spawned.append((args, transport))
        proto.makeConnection(transport)
        return transport


def end(transport, code=0, signal=None):
    """The fake process ends: with ``code``, or killed by ``signal``."""
    if signal is None and code == 0:
        reason = ProcessDone(0)
    else:
        reason = ProcessTerminated(code if signal is None else None, signal)
    transport.proto.processEnded(Failure(reason))


class WarmUpTests(unittest.TestCase):
    """The warm-up's life on a fake reactor: no cargo runs."""

    def setUp(self):
        self.clock = ProcessClock()
        self.builder = FakeBuilder(self.mktemp())
        self.warm_up = WarmUp(self.builder, self.clock)

    def test_start_returns_before_the_build_ends_and_runs_cargo_at_low_priority(self):
        """start() fires only when cargo ends; cargo runs as `nice -n 19 cargo build --release` in the warm-up project."""
        done = self.warm_up.start()
        self.assertNoResult(done)
        [(argv, transport)] = self.clock.spawned
        self.assertEqual(argv[1:3], ["-n", str(NICENESS)])
        self.assertTrue(argv[0].endswith("/nice"))
        self.assertEqual(argv[3:6], ["/usr/bin/cargo", "build", "--release"])
        self.assertIn(WARM_UP_PACKAGE, (self.builder.build_root / "warm-up" / "Cargo.toml").read_text())
        end(transport)
        self.assertEqual(self.successResultOf(done), "warmed")

    def test_a_warm_target_is_not_built_again(self):
        """After a finished warm-up (marker and binary in the target), the next one runs no cargo."""
        done = self.warm_up.start()
        end(self.clock.spawned[0][1])
        self.successResultOf(done)
        (self.builder.target_dir / "release").mkdir()
        (self.builder.target_dir / "release" / WARM_UP_PACKAGE).write_bytes(b"binary")
        again = WarmUp(self.builder, self.clock)
        self.assertEqual(self.successResultOf(again.start()), "skipped")
        self.assertEqual(len(self.clock.spawned), 1)

    def test_an_emptied_target_is_warmed_again(self):
        """A marker whose binary is gone (the target was emptied) does not count as warm."""
        (self.builder.target_dir / MARKER_NAME).write_text(self.warm_up.key("rustc 1.0.0 (fake)"))
        self.warm_up.start()
        self.assertEqual(len(self.clock.spawned), 1)

    def test_a_failed_build_is_logged_not_raised(self):
        """cargo failing makes the outcome `failed`; the Deferred does not fail (start must not be hurt)."""
        done = self.warm_up.start()
        transport = self.clock.spawned[0][1]
        transport.proto.errReceived(b"error: no matching package named `serde` found\n")
        end(transport, code=101)
        self.assertEqual(self.successResultOf(done), "failed")
        self.assertFalse((self.builder.target_dir / MARKER_NAME).exists())
        self.flushLoggedErrors()

    def test_cargo_interrupted_by_ctrl_c_is_a_stop_not_a_failure(self):
        """cargo ended by SIGINT or SIGTERM (Ctrl+C reached its process group): outcome `stopped`, no warning."""
        for signum in (2, 15):
            warm_up = WarmUp(self.builder, self.clock)
            done = warm_up.start()
            transport = self.clock.spawned[-1][1]
            end(transport, signal=signum)
            self.assertEqual(self.successResultOf(done), "stopped")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_stop_kills_a_running_build_and_waits_for_it(self):
        """stop() sends KILL to cargo and fires once the process has ended; the outcome is `stopped`."""
        done = self.warm_up.start()
        transport = self.clock.spawned[0][1]
        stopped = self.warm_up.stop()
        self.assertEqual(transport.signals, ["KILL"])
        self.assertNoResult(stopped)
        end(transport, signal=9)
        self.successResultOf(stopped)
        self.assertEqual(self.successResultOf(done), "stopped")

    def test_stop_kills_what_holds_the_builds_pipes_until_it_ended(self):
        """stop() has the processes holding the build's pipes killed round after round (an orphaned bwrap clone), firing once the build ended."""
        rounds = []
        warm_up = WarmUp(self.builder, self.clock, kill=lambda inodes, wait: rounds.append(inodes) or succeed([4242]))
        done = warm_up.start()
        transport = self.clock.spawned[-1][1]
        stopped = warm_up.stop()
        self.assertEqual(transport.signals, ["KILL"])
        self.clock.advance(ROUND_SECONDS)
        self.assertEqual(len(rounds), 2)
        self.assertNoResult(stopped)
        end(transport, signal=9)
        self.successResultOf(stopped)
        self.assertEqual(self.successResultOf(done), "stopped")

    def test_stop_ends_within_the_grace_whatever_holds_the_pipes(self):
        """Holders that never let go: after GRACE_SECONDS the gateway closes its ends of the pipes, so the build ends and stop() fires."""
        warm_up = WarmUp(self.builder, self.clock, kill=lambda inodes, wait: succeed([4242]))
        done = warm_up.start()
        transport = self.clock.spawned[-1][1]
        stopped = warm_up.stop()
        self.clock.pump([ROUND_SECONDS] * int(GRACE_SECONDS / ROUND_SECONDS + 2))
        self.assertEqual(transport.signals, ["KILL", "closed our ends"])
        end(transport, signal=9)  # what closing them brings (the pid was reaped)
        self.successResultOf(stopped)
        self.assertEqual(self.successResultOf(done), "stopped")

    def test_a_compile_ends_the_warm_up_first(self):
        """The hook a warm-up gives its builder kills the running warm-up build and fires once it ended."""
        done = self.warm_up.start()
        transport = self.clock.spawned[0][1]
        yielded = self.builder.hook()
        self.assertEqual(transport.signals, ["KILL"])
        self.assertNoResult(yielded)
        end(transport, signal=9)
        self.successResultOf(yielded)
        self.assertEqual(self.successResultOf(done), "stopped")

    def test_a_toolchain_that_raises_is_a_failed_warm_up(self):
        """A toolchain check raising at once (no cargo) makes the outcome `failed`, never an exception at start."""

        def no_cargo():
            raise BuildError("cargo was not found")

        self.builder.toolchain = no_cargo
        self.assertEqual(self.successResultOf(self.warm_up.start()), "failed")
        self.flushLoggedErrors()

    def test_stop_before_the_build_began_spawns_nothing(self):
        """A warm-up stopped while the toolchain is still being asked never starts cargo."""
        self._toolchain = Deferred()
        self.builder.toolchain = lambda: self._toolchain
        done = self.warm_up.start()
        self.successResultOf(self.warm_up.stop())
        self._toolchain.callback("rustc 1.0.0 (fake)")
        self.assertEqual(self.successResultOf(done), "stopped")
        self.assertEqual(self.clock.spawned, [])


class RealWarmUpTests(unittest.TestCase):
    """Real cargo into an empty target directory."""

    timeout = 900

    @inlineCallbacks
    def test_warm_up_builds_the_common_crates_then_skips(self):
        """A warm-up leaves the SDK and serde_json compiled in the target; a second one is skipped; a handler then builds."""
        cargo = _cargo_or_skip()
        root = os.path.abspath(self.mktemp())
        builder = Builder(root, SDK, cargo=cargo, reactor=reactor, sandbox=False)
        outcome = yield WarmUp(builder, reactor).start()
        self.assertEqual(outcome, "warmed")
        deps = os.path.join(builder.target_dir, "release", "deps")
        for crate in ("rust_edge_gateway_sdk", "serde_json", "serde"):
            self.assertTrue(glob.glob(os.path.join(deps, "lib%s-*.rlib" % crate)), crate)
        outcome = yield WarmUp(builder, reactor).start()
        self.assertEqual(outcome, "skipped")
        built = yield builder.build("first", HELLO)
        self.assertFalse(built.cached)


class BeforeCompileTests(unittest.TestCase):
    """Builder.before_compile: a compile runs cargo only after its hooks fired."""

    timeout = 300

    @inlineCallbacks
    def test_compile_waits_for_the_hook(self):
        """While a hook's Deferred is pending the endpoint's project is not even written; once it fires the build completes."""
        cargo = _cargo_or_skip()
        os.makedirs(SHARED_TARGET, exist_ok=True)
        builder = Builder(os.path.abspath(self.mktemp()), SDK, cargo=cargo, reactor=reactor, sandbox=False,
                          target_dir=SHARED_TARGET)
        gate = Deferred()
        builder.before_compile(lambda: gate)
        built = builder.build("gated", HELLO)
        yield builder.toolchain()
        self.assertNoResult(built)
        self.assertFalse((builder.build_root / "endpoints" / "gated").exists())
        gate.callback(None)
        result = yield built
        self.assertFalse(result.cached)


class RuntimeWarmUpIntegrationTests(GatewayTestCase):
    """The gateway (with ``warm_up``, as ``twistd edgegw`` makes it) starts a warm-up of its builder's target."""

    runtime_options = {"warm_up": True}

    @inlineCallbacks
    def test_the_gateway_warms_its_target_at_start(self):
        """A started gateway has a warm-up of its own builder's target, which ends warm (or finds it warm)."""
        warm_up = self.gateway.runtime.warm_up
        self.assertIsNotNone(warm_up)
        self.assertIsNotNone(warm_up.done, "startService began it")
        outcome = yield warm_up.start()
        self.assertIn(outcome, ("warmed", "skipped"))
        self.assertTrue(os.path.exists(os.path.join(self.gateway.runtime.builder.target_dir, MARKER_NAME)))


class TapWarmUpTests(unittest.TestCase):
    """`twistd edgegw` turns the warm-up on."""

    def test_make_service_asks_for_the_warm_up(self):
        """makeService gives the runtime warm_up=True (GatewayRuntime's own default is off)."""
        from edgegw_tx import tap

        made = []
        self.patch(tap, "GatewayRuntime", lambda **kwargs: made.append(kwargs))
        options = tap.Options()
        options.parseOptions(["--data-dir", self.mktemp()])
        tap.makeService(options)
        self.addCleanup(made[0]["data_dir_lock"].release)
        self.assertIs(made[0]["warm_up"], True)

    def test_no_warm_up_turns_it_off(self):
        """--no-warm-up gives the runtime warm_up=False."""
        from edgegw_tx import tap

        made = []
        self.patch(tap, "GatewayRuntime", lambda **kwargs: made.append(kwargs))
        options = tap.Options()
        options.parseOptions(["--no-warm-up", "--data-dir", self.mktemp()])
        tap.makeService(options)
        self.addCleanup(made[0]["data_dir_lock"].release)
        self.assertIs(made[0]["warm_up"], False)


HELD_BWRAP = """\
#!/bin/sh
# bwrap, held (for a command line matching the pattern) between cloning the
# sandbox's first process and letting it run (--userns-block-fd on a FIFO
# nobody writes): the window in which that clone has not yet asked to die with
# bwrap.  --info-fd names the clone's pid.
case "$*" in
{pattern})
    exec 4<>'{fifo}' 3>'{info}'
    exec '{bwrap}' --info-fd 3 --unshare-user --userns-block-fd 4 "$@";;
esac
exec '{bwrap}' "$@"
"""


class HeldBwrapWarmUpIntegrationTests(unittest.TestCase):
    """
    A real sandboxed warm-up ended while its bwrap has cloned the sandbox's
    first process but not yet let it run: killed there, bwrap leaves the
    clone orphaned (parent pid 1), blocked for ever, ignoring SIGTERM and
    holding the build's pipes.
    """

    timeout = 120

    def setUp(self):
        self.cargo = _cargo_or_skip()
        try:
            tools = find_tools()
        except SandboxError as e:
            raise unittest.SkipTest(str(e))
        self.root = os.path.realpath(self.mktemp())
        os.makedirs(self.root)
        self.tools = tools
        self.builder = self.held_builder("*")
        self.warm_up = WarmUp(self.builder, reactor)

    def held_builder(self, pattern, **options):
        """A Builder whose bwrap is held for command lines matching the shell ``pattern``."""
        fifo = os.path.join(self.root, "hold")
        os.mkfifo(fifo)
        self.info = os.path.join(self.root, "info")
        wrapper = os.path.join(self.root, "bwrap")
        with open(wrapper, "w") as f:
            f.write(HELD_BWRAP.format(pattern=pattern, fifo=fifo, info=self.info, bwrap=self.tools["bwrap"]))
        os.chmod(wrapper, 0o755)
        user = resolve_build_user(DEFAULT_BUILD_USER) if os.geteuid() == 0 else None
        sandbox = BuildSandbox(dict(self.tools, bwrap=wrapper), user)
        return Builder(os.path.join(self.root, "data"), SDK, cargo=self.cargo, reactor=reactor, sandbox=sandbox, **options)

    def clone_pid(self):
        """Fires with the host pid of bwrap's clone once bwrap has made it (and holds it)."""

        def read():
            try:
                with open(self.info) as f:
                    return json.loads(f.read())["child-pid"]
            except (OSError, ValueError, KeyError):
                return None

        return wait_for(read, 100, interval=0.05, message="bwrap's clone")

    def assertNothingLeft(self, clone):
        """Neither bwrap's clone nor any process running in the warm-up's project is alive."""
        self.assertFalse(alive(clone), "bwrap's clone %d outlived the warm-up" % clone)
        project = str(self.warm_up.project_dir)
        left = []
        for name in os.listdir("/proc"):
            if name.isdigit() and alive(int(name)):
                try:
                    with open("/proc/%s/cmdline" % name, "rb") as f:
                        if project.encode() in f.read():
                            left.append(int(name))
                except OSError:
                    pass
        self.assertEqual(left, [])

    @inlineCallbacks
    def test_a_compile_ends_the_warm_up_and_its_orphaned_clone(self):
        """A compile's hook fires although bwrap's orphaned clone holds the pipes: the clone is killed too; outcome `stopped`."""
        done = self.warm_up.start()
        clone = yield self.clone_pid()
        yield self.warm_up.yield_to_compile()
        self.assertEqual((yield done), "stopped")
        self.assertNothingLeft(clone)

    @inlineCallbacks
    def test_the_compile_asked_for_proceeds(self):
        """A compile asked for while the warm-up's bwrap is caught in the window ends the warm-up and then compiles (bwrap not held for it)."""
        self.root = os.path.join(self.root, "second")
        os.makedirs(self.root)
        builder = self.held_builder("*/build/warm-up*", target_dir=SHARED_TARGET)
        warm_up = WarmUp(builder, reactor)
        warm_up.is_warm = lambda toolchain: False  # the shared target may be warm: build anyway
        done = warm_up.start()
        clone = yield self.clone_pid()
        built = yield builder.build("after-warm-up", HELLO)
        self.assertFalse(built.cached)
        self.assertEqual((yield done), "stopped")
        self.assertFalse(alive(clone))

    @inlineCallbacks
    def test_stop_ends_the_warm_up_and_its_orphaned_clone(self):
        """stop() (the gateway stopping) fires although bwrap's orphaned clone holds the pipes; nothing of the build is left."""
        done = self.warm_up.start()
        clone = yield self.clone_pid()
        yield self.warm_up.stop()
        self.assertEqual((yield done), "stopped")
        self.assertNothingLeft(clone)

    @inlineCallbacks
    def test_a_gateway_stopped_during_the_warm_up_stops(self):
        """A real gateway stopped while bwrap's clone is caught in the window: stopService fires, its warm-up is `stopped`, nothing of it is left."""
        gateway = GatewayHarness(self, os.path.join(self.root, "gateway"), self.cargo, builder=self.builder, warm_up=True)
        yield gateway.start()
        clone = yield self.clone_pid()
        yield gateway.stop()
        self.assertEqual(gateway.runtime.warm_up.outcome, "stopped")
        self.assertNothingLeft(clone)

    @inlineCallbacks
    def test_builder_stop_ends_a_build_and_its_orphaned_clone(self):
        """Builder.stop() (the gateway stopping) fails a compile caught in the same window and leaves no process of it; later builds are refused."""
        built = self.builder.build("held", HELLO)
        clone = yield self.clone_pid()
        yield self.builder.stop()
        yield self.assertFailure(built, BuildError)
        self.assertFalse(alive(clone), "bwrap's clone %d outlived the build" % clone)
        refused = yield self.assertFailure(self.builder.build("later", HELLO), BuildError)
        self.assertIn("the gateway is stopping", str(refused))
