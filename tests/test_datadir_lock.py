"""
One gateway per data directory (edgegw_tx/datadir_lock.py): the lock on its
own, through ``makeService``, and two real ``twistd edgegw`` on one data dir.
"""

import fcntl
import os
import stat
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial import unittest

from edgegw_tx.datadir_lock import LOCK_NAME, DataDirInUse, DataDirLock
from tests.support.harness import ROOT, _Collect, run_twistd_until_it_ends


class DataDirLockTests(unittest.TestCase):
    """The lock file: exclusive, naming its holder, not inherited."""

    def setUp(self) -> None:
        self.data_dir = os.path.abspath(self.mktemp())

    def hold(self) -> DataDirLock:
        lock = DataDirLock(self.data_dir)
        lock.acquire()
        self.addCleanup(lock.release)
        return lock

    def test_acquire_creates_a_private_file_with_the_pid(self) -> None:
        """The first holder creates the data dir and edgegw.lock (0600) holding its pid."""
        lock = self.hold()
        self.assertTrue(lock.held)
        self.assertEqual(lock.path, os.path.join(self.data_dir, LOCK_NAME))
        self.assertEqual(stat.S_IMODE(os.stat(lock.path).st_mode), 0o600)
        with open(lock.path) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")

    def test_second_holder_is_refused_naming_the_pid(self) -> None:
        """A second lock on the same data dir fails at once with the holder's pid and the lock path."""
        self.hold()
        error = self.assertRaises(DataDirInUse, DataDirLock(self.data_dir).acquire)
        self.assertEqual(error.pid, os.getpid())
        self.assertEqual(
            str(error),
            f"data dir {self.data_dir} is in use by edgegw pid {os.getpid()}"
            f" (lock {self.data_dir}/edgegw.lock)",
        )

    def test_released_lock_can_be_taken_again(self) -> None:
        """After release (the holder stopped) the next one gets it, and writes its own pid."""
        first = DataDirLock(self.data_dir)
        first.acquire()
        first.release()
        self.assertFalse(first.held)
        self.hold()

    def test_holder_without_a_pid_yet(self) -> None:
        """A holder that has not written its pid yet is named as 'another edgegw process'."""
        lock = self.hold()
        os.truncate(lock.path, 0)
        error = self.assertRaises(DataDirInUse, DataDirLock(self.data_dir).acquire)
        self.assertIsNone(error.pid)
        self.assertIn("is in use by another edgegw process", str(error))

    def test_stale_file_of_a_dead_holder_is_no_obstacle(self) -> None:
        """A lock file left by a holder that died (its pid still written) does not stop a new start."""
        os.makedirs(self.data_dir)
        with open(os.path.join(self.data_dir, LOCK_NAME), "w") as f:
            f.write("999999\n")
        lock = self.hold()
        with open(lock.path) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")

    def test_record_pid_rewrites_the_pid(self) -> None:
        """record_pid (after twistd forked) replaces the pid, however long the old one was."""
        lock = self.hold()
        with open(lock.path, "w") as f:
            f.write("12345678901\n")
        lock.record_pid()
        with open(lock.path) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")

    def test_descriptor_is_close_on_exec(self) -> None:
        """The lock's descriptor has FD_CLOEXEC: nothing exec'd (workers, cargo) inherits it."""
        lock = self.hold()
        self.assertTrue(fcntl.fcntl(lock._fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)

    def test_symlink_is_not_followed(self) -> None:
        """A symlink planted as edgegw.lock is refused (OSError), not followed to its target."""
        os.makedirs(self.data_dir)
        target = os.path.abspath(self.mktemp())
        os.symlink(target, os.path.join(self.data_dir, LOCK_NAME))
        self.assertRaises(OSError, DataDirLock(self.data_dir).acquire)
        self.assertFalse(os.path.exists(target))

    @inlineCallbacks
    def test_spawned_processes_do_not_hold_it(self):
        """A child started by spawnProcess (as workers and cargo are) has no descriptor of the lock file."""
        lock = self.hold()
        ended = Deferred()
        collector = _Collect(ended)
        script = (
            "import os\n"
            "for fd in os.listdir('/proc/self/fd'):\n"
            "    try: print(os.readlink('/proc/self/fd/' + fd))\n"
            "    except OSError: pass\n"
        )
        reactor.spawnProcess(collector, sys.executable, [sys.executable, "-c", script], env={})
        status = yield ended
        self.assertEqual(status, (0, None), collector.output)
        self.assertNotIn(lock.path, collector.output.decode())


class MakeServiceTests(unittest.TestCase):
    """``twistd edgegw``'s makeService takes the lock before anything else."""

    def options(self, data_dir: str):
        from edgegw_tx.tap import Options

        options = Options()
        options.parseOptions(["--data-dir", data_dir])
        return options

    def test_make_service_refuses_a_held_data_dir(self) -> None:
        """With the data dir locked, makeService exits with the one-line message (no runtime made)."""
        from edgegw_tx import tap

        made = []
        self.patch(tap, "GatewayRuntime", lambda **kwargs: made.append(kwargs))
        data_dir = self.mktemp()
        lock = DataDirLock(data_dir)
        lock.acquire()
        self.addCleanup(lock.release)
        error = self.assertRaises(SystemExit, tap.makeService, self.options(data_dir))
        self.assertEqual(
            str(error.code),
            f"data dir {data_dir} is in use by edgegw pid {os.getpid()} (lock {data_dir}/edgegw.lock)",
        )
        self.assertEqual(made, [])

    def test_make_service_hands_the_held_lock_to_the_runtime(self) -> None:
        """makeService takes the lock and gives it to the runtime, which releases it when it stops."""
        from edgegw_tx import tap

        made = []
        self.patch(tap, "GatewayRuntime", lambda **kwargs: made.append(kwargs))
        data_dir = self.mktemp()
        tap.makeService(self.options(data_dir))
        lock = made[0]["data_dir_lock"]
        self.addCleanup(lock.release)
        self.assertTrue(lock.held)
        self.assertRaises(DataDirInUse, DataDirLock(data_dir).acquire)


class TwoGatewaysIntegrationTests(unittest.TestCase):
    """Two real ``twistd edgegw`` on one data dir: the second refuses to start."""

    timeout = 120

    @inlineCallbacks
    def test_second_twistd_refuses_naming_the_first(self):
        """The second twistd exits 1 with one line naming the first one's pid and no
        traceback, before it listens; the first keeps serving."""
        from tests.support.hardening import TwistdGateway

        data_dir = os.path.abspath(self.mktemp())
        first = TwistdGateway(self, data_dir)
        yield first.start()
        status, output = yield run_twistd_until_it_ends(data_dir)
        self.assertEqual(status, (1, None), output)
        self.assertEqual(
            output.strip(),
            f"data dir {data_dir} is in use by edgegw pid {first.pid} (lock {data_dir}/edgegw.lock)",
        )
        response = yield first.harness.http.get(first.harness.api + "/health")
        yield response.content()
        self.assertEqual(response.code, 200)


class RuntimeTests(unittest.TestCase):
    """GatewayRuntime holds the lock from the start of startService to the end of stopService."""

    def make_runtime(self, data_dir: str):
        from edgegw_tx.runtime import GatewayRuntime
        from edgegw_tx.store import SQLiteStore
        from edgegw_tx.store.sqlite import FILE_NAME
        from tests.support.fakes import FakeRegistry, SynchronousReactor

        fake = SynchronousReactor()
        # The store's work inline, on the fake reactor's thread pool.
        store = SQLiteStore(os.path.join(data_dir, FILE_NAME), reactor=fake, threadpool=fake.getThreadPool())
        runtime = GatewayRuntime(
            data_dir, "tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1",
            sdk_path=os.path.join(ROOT, "rust_sdk"), reactor=fake, registry=FakeRegistry(), store=store,
        )
        runtime.manager.restore = lambda: None
        return runtime, fake

    def test_runtime_takes_the_lock_and_lets_it_go(self) -> None:
        """A runtime made without a lock takes it before opening the store and releases it once stopped."""
        data_dir = os.path.abspath(self.mktemp())
        runtime, _ = self.make_runtime(data_dir)
        self.successResultOf(runtime.startService())
        self.assertTrue(runtime.data_dir_lock.held)
        self.assertRaises(DataDirInUse, DataDirLock(data_dir).acquire)
        self.successResultOf(runtime.stopService())
        self.assertFalse(runtime.data_dir_lock.held)
        again = DataDirLock(data_dir)
        again.acquire()
        again.release()

    def test_second_runtime_does_not_open_the_store(self) -> None:
        """A second runtime on a held data dir stops its reactor before the store is opened or a key written."""
        data_dir = os.path.abspath(self.mktemp())
        lock = DataDirLock(data_dir)
        lock.acquire()
        self.addCleanup(lock.release)
        runtime, fake = self.make_runtime(data_dir)
        stopped = []
        fake.stop = lambda: stopped.append(True)
        self.successResultOf(runtime.startService())
        self.assertEqual(stopped, [True])
        self.assertEqual(os.listdir(data_dir), ["edgegw.lock"])
        self.assertEqual(len(self.flushLoggedErrors(DataDirInUse)), 1)


class SeveralProcessesIntegrationTests(unittest.TestCase):
    """With --processes N only the control process holds the lock."""

    timeout = 120

    @inlineCallbacks
    def test_data_plane_processes_hold_no_lock(self):
        """The lock file names the control process, which has it open; its data-plane children do not."""
        from tests.support.hardening import TwistdGateway

        data_dir = os.path.abspath(self.mktemp())
        gateway = TwistdGateway(self, data_dir, extra=["--processes", "2"])
        yield gateway.start()
        lock_path = os.path.join(data_dir, LOCK_NAME)
        with open(lock_path) as f:
            self.assertEqual(f.read(), f"{gateway.pid}\n")

        def holds(pid):
            fds = os.path.join("/proc", str(pid), "fd")
            return any(os.readlink(os.path.join(fds, fd)) == lock_path for fd in os.listdir(fds))

        def data_plane(pid):
            # Not the start-up warm-up's cargo or rustc (build/warmup.py), also a child.
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    return b"--index" in f.read().split(b"\0")
            except FileNotFoundError:
                return False

        with open(f"/proc/{gateway.pid}/task/{gateway.pid}/children") as f:
            children = [int(pid) for pid in f.read().split() if data_plane(int(pid))]
        self.assertEqual(len(children), 2)
        self.assertTrue(holds(gateway.pid))
        self.assertEqual([pid for pid in children if holds(pid)], [])
