"""
What the hardening tests share (tests/test_hardening_workers.py and
tests/test_hardening_chaos.py): a hostile Rust handler, a bare HTTP/1.1 client
that tells a complete answer from a reset or a hang, a real ``twistd edgegw``
process, and looks at /proc (children, zombies, descriptors, RSS).

Everything runs on the real reactor; waiting is done with Deferreds, never
with sleeps.
"""

import json
import os
import shutil
import signal
import sys

from httptools import HttpResponseParser
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, returnValue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, TimeoutError
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests.support.harness import ROOT, SDK, SHARED_TARGET, GatewayHarness, _cargo_or_skip, _Collect, _free_port

# A handler that misbehaves on demand, ``GET /{prefix}/{what}``.  The hostile
# cases write raw bytes on the frame channel the way handler code can whatever
# the SDK does: the SDK moved the frames off fd 1 onto a private descriptor,
# which is found in /proc/self/fd and written with std::fs::File (the same
# write(2) a libc::write would make).  Everything after the bad bytes hangs,
# so only the gateway's reaction (a kill) can end the worker.
HOSTILE = r"""use rust_edge_gateway_sdk::prelude::*;
use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::unix::io::FromRawFd;
use std::time::{Duration, Instant};

/// The SDK's private copy of the worker's stdout: the descriptor above 2
/// open write-only on a pipe that is not stderr's.
fn frame_fd() -> i32 {
    let stderr = std::fs::read_link("/proc/self/fd/2").ok();
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    fds.sort();
    for fd in fds {
        let target = match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
            Ok(target) => target,
            Err(_) => continue,
        };
        if !target.to_string_lossy().starts_with("pipe:") || Some(&target) == stderr.as_ref() {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        let write_only = info
            .lines()
            .filter_map(|line| line.strip_prefix("flags:"))
            .any(|flags| u32::from_str_radix(flags.trim(), 8).map_or(false, |f| f & 3 == 1));
        if write_only {
            return fd;
        }
    }
    panic!("the frame descriptor was not found");
}

/// The frame channel, borrowed: never closed by dropping it.
fn frame_out() -> ManuallyDrop<File> {
    // SAFETY: the descriptor stays open; ManuallyDrop never closes it.
    ManuallyDrop::new(unsafe { File::from_raw_fd(frame_fd()) })
}

fn raw(bytes: &[u8]) {
    frame_out().write_all(bytes).expect("write on the frame channel");
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn close_frame_channel() {
    // SAFETY: closes the SDK's descriptor on purpose; the SDK never writes it again
    // (this worker never answers another request).
    drop(unsafe { File::from_raw_fd(frame_fd()) });
}

/// This worker as the tests know it: its pid inside its own pid namespace is
/// always the same, so it says which namespace it is in (the inode of
/// /proc/self/ns/pid); the tests map that to the pid the gateway reports.
fn worker_id() -> u64 {
    let link = std::fs::read_link("/proc/self/ns/pid").expect("/proc/self/ns/pid");
    let text = link.to_string_lossy();
    text.trim_start_matches("pid:[").trim_end_matches(']').parse().expect("pid:[inode]")
}

fn handle(req: Request) -> Response {
    let what = req.path_param("what").cloned().unwrap_or_default();
    match what.as_str() {
        "exit" => std::process::exit(3),
        "spin" => loop {
            std::hint::spin_loop()
        },
        "close-stdout" => {
            close_frame_channel();
            hang()
        }
        "close-stdout-later" => {
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                close_frame_channel();
            });
            Response::ok(json!({"pid": worker_id()}))
        }
        "huge-prefix" => {
            let mut out = frame_out();
            out.write_all(&[0xff; 4]).unwrap();
            // Then 64 MiB more: a gateway that buffered past its cap would hold it all.
            let junk = vec![b'x'; 1 << 20];
            for _ in 0..64 {
                if out.write_all(&junk).is_err() {
                    break;
                }
            }
            hang()
        }
        "short-frame" => {
            raw(&[0, 0, 0, 100]);
            raw(b"0123456789");
            hang()
        }
        "not-json" => {
            raw(&framed(b"this is not JSON"));
            hang()
        }
        "not-object" => {
            raw(&framed(b"[1, 2, 3]"));
            hang()
        }
        "unknown-type" => {
            raw(&framed(br#"{"type": "surprise", "id": 1}"#));
            hang()
        }
        "noise" => {
            println!("noise: println from {}", req.path);
            print!("noise: print without a newline, ");
            print!("then a frame-like \x00\x00\x00\x0f{{\"type\":\"ready\"}}");
            println!();
            std::io::stdout()
                .write_all(b"noise: raw bytes on fd 1 \x00\x00\x00\x02{}\n")
                .unwrap();
            print!("noise: the last print, no newline");
            Response::ok(json!({"noisy": true, "pid": worker_id()}))
        }
        "stderr-burst" => {
            let mut burst = Vec::with_capacity(11 << 20);
            burst.extend_from_slice(b"burst: start\n");
            let mut n = 0;
            while burst.len() < 5 << 20 {
                n += 1;
                burst.extend_from_slice(format!("burst line {n:07} {}\n", "x".repeat(80)).as_bytes());
            }
            // 5 MiB more without a newline: one very long line.
            burst.resize(burst.len() + (5 << 20), b'y');
            burst.extend_from_slice(b"\nburst: done\n");
            let started = Instant::now();
            std::io::stderr().write_all(&burst).unwrap();
            let write_ms = started.elapsed().as_millis() as u64;
            Response::ok(json!({"pid": worker_id(), "bytes": burst.len(), "write_ms": write_ms}))
        }
        _ => Response::ok(json!({"what": what, "pid": worker_id()})),
    }
}

handler_loop!(handle);
"""


# -- /proc ------------------------------------------------------------------


def proc_stat(pid):
    """(state, ppid) of a process from /proc/<pid>/stat, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def children(pid):
    """{child pid: state} of the processes whose parent is ``pid``."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat[1] == pid:
                found[int(name)] = stat[0]
    return found


def pid_namespace(pid):
    """The inode of the pid namespace of ``pid``, or None if it is gone."""
    try:
        link = os.readlink("/proc/%d/ns/pid" % pid)
    except OSError:
        return None
    return int(link[len("pid:[") : -1])


def ns_pids(pid):
    """``NSpid`` of ``pid``: its pid in each pid namespace it is in, outermost first."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(n) for n in line.split()[1:]]
    except OSError:
        pass
    return []


def launcher_of(namespace):
    """
    The pid the gateway reports for the worker whose handler said it runs
    in pid namespace ``namespace`` (``pid_namespace``): bwrap's, the parent
    of that namespace's pid 1.  None when there is no such namespace.
    """
    for name in os.listdir("/proc"):
        if name.isdigit() and pid_namespace(int(name)) == namespace and ns_pids(int(name))[-1:] == [1]:
            stat = proc_stat(int(name))
            return stat[1] if stat else None
    return None


def worker_in(launcher):
    """The host pid of the worker (pid 2 of its namespace) under the launcher pid ``launcher``, or None."""
    for init in children(launcher):
        for pid in children(init):
            if ns_pids(pid)[-1:] == [2]:
                return pid
    return None


def with_launcher_pid(body):
    """A handler's answer with its ``pid`` (a pid namespace, ``pid_namespace``) as the gateway's pid."""
    if isinstance(body, dict) and isinstance(body.get("pid"), int):
        body = dict(body, pid=launcher_of(body["pid"]))
    return body


def alive(pid):
    """True if ``pid`` exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def processes_under(directory):
    """Pids of live processes whose executable lies under ``directory`` (a data dir's workers)."""
    directory = os.path.realpath(directory) + os.sep
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            exe = os.readlink("/proc/%s/exe" % name)
        except OSError:
            continue
        if exe.startswith(directory) and alive(int(name)):
            found.append(int(name))
    return found


def fds(pid="self"):
    """The open descriptors of a process: {fd: what it points at}."""
    found = {}
    base = "/proc/%s/fd" % pid
    for name in os.listdir(base):
        try:
            found[int(name)] = os.readlink(os.path.join(base, name))
        except OSError:
            pass  # closed while listing (the listing's own descriptor)
    return found


def rss_kib(pid):
    """VmRSS of a process, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def pause(seconds):
    """A Deferred firing after ``seconds`` on the real reactor (no sleep)."""
    return deferLater(reactor, seconds, lambda: None)


@inlineCallbacks
def wait_for(predicate, timeout, interval=0.02, message="condition"):
    """
    Poll ``predicate`` (it may return a Deferred) until it is true; fail after
    ``timeout`` seconds.  Fires with its last true value.
    """
    deadline = reactor.seconds() + timeout
    while True:
        value = yield predicate()
        if value:
            returnValue(value)
        if reactor.seconds() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, message))
        yield pause(interval)


# -- tests on a real gateway -------------------------------------------------


def reachable_data_dir(test_case):
    """
    A new data directory path for ``test_case``: trial makes its parent mode
    0700, which workers running as another user could not pass.
    """
    path = os.path.abspath(test_case.mktemp())
    os.chmod(os.path.dirname(path), 0o711)
    return path


class HostileWorkerMixin:
    """Deploying the hostile handler and looking at its pool through the API."""

    @inlineCallbacks
    def deploy_hostile(self, prefix="/h", **settings):
        settings.setdefault("instances", 1)
        started = yield self.gateway.deploy(
            prefix.strip("/") or "hostile", prefix + "/{what}", HOSTILE, **settings
        )
        self.prefix = prefix
        self.endpoint_id = started["id"]
        returnValue(started)

    @inlineCallbacks
    def view(self):
        code, document = yield self.gateway.call("GET", "/endpoints/%s" % self.endpoint_id)
        self.assertEqual(code, 200, document)
        returnValue(document["data"])

    @inlineCallbacks
    def log_lines(self):
        code, document = yield self.gateway.call("GET", "/endpoints/%s/logs" % self.endpoint_id)
        self.assertEqual(code, 200, document)
        returnValue(document["data"]["lines"])

    @inlineCallbacks
    def hit(self, what):
        """GET {prefix}/{what}: (status, decoded JSON body, seconds it took)."""
        started = reactor.seconds()
        response, content = yield self.gateway.get("%s/%s" % (self.prefix, what))
        elapsed = reactor.seconds() - started
        body = with_launcher_pid(json.loads(content)) if content else None
        returnValue((response.code, body, elapsed))

    def ready_pool(self, size, without=()):
        """
        Wait until the pool has exactly ``size`` workers, all ready, none of
        them in ``without``; fires with their pids.
        """

        @inlineCallbacks
        def check():
            view = yield self.view()
            workers = view["workers"]
            pids = [w["pid"] for w in workers]
            if (
                len(workers) == size
                and all(w["state"] == "ready" for w in workers)
                and not set(pids) & set(without)
            ):
                returnValue(pids)
            returnValue(None)

        return wait_for(check, 15, message="%d ready workers" % size)

    def assertGone(self, pid):
        """``pid`` is not running and was reaped (no zombie)."""
        self.assertFalse(alive(pid), "worker %d still runs" % pid)
        self.assertNotIn(pid, children(os.getpid()), "worker %d is a zombie" % pid)

    def assertNoZombies(self):
        zombies = [pid for pid, state in children(os.getpid()).items() if state == "Z"]
        self.assertEqual(zombies, [])

    @inlineCallbacks
    def check_replaced(self, old_pid):
        """The worker ``old_pid`` is gone, a new one is ready and answers 200."""
        [new_pid] = yield self.ready_pool(1, without=[old_pid])
        self.assertGone(old_pid)
        status, body, _ = yield self.hit("fine")
        self.assertEqual((status, body["pid"]), (200, new_pid))
        returnValue(new_pid)


class HardeningTestCase(HostileWorkerMixin, unittest.TestCase):
    """
    A real gateway made by the test itself with ``start_gateway`` (stopped at
    cleanup if still running), on a data directory that workers running as
    another user (docs/isolation.md) can reach.
    """

    timeout = 600

    @inlineCallbacks
    def start_gateway(self, data_dir=None):
        cargo = _cargo_or_skip()
        os.makedirs(SHARED_TARGET, exist_ok=True)
        gateway = GatewayHarness(self, data_dir or reachable_data_dir(self), cargo)
        yield gateway.start()
        running = [True]

        def stop():
            if running[0]:
                running[0] = False
                return gateway.stop()

        gateway.stop_once = stop
        self.addCleanup(stop)
        self.gateway = gateway
        returnValue(gateway)

    @inlineCallbacks
    def kill_served_worker(self, size):
        """
        SIGKILL the worker that answers the next request (it served, so its
        restart is not held back) and wait for the pool to be whole again.
        """
        status, body, _ = yield self.hit("fine")
        self.assertEqual(status, 200)
        os.kill(body["pid"], signal.SIGKILL)
        yield self.ready_pool(size, without=[body["pid"]])


# -- a bare HTTP/1.1 client --------------------------------------------------


class ClosedWithoutAnswer(Exception):
    """The connection ended before a complete response."""


class RawHTTP(Protocol):
    """
    One client connection: requests one after the other, each answered by a
    complete response (status, body, keep-alive) or failing with
    ``ClosedWithoutAnswer`` (reset or close, even after part of a response) or
    ``TimeoutError`` (no complete answer in time: a hang).

    No retries and no connection pool: what the server did is what is seen.
    """

    def __init__(self):
        self._parser = HttpResponseParser(self)
        self._waiting = None
        self._body = []
        self.connected_ = False

    def connectionMade(self):
        self.connected_ = True

    def request(self, data, timeout):
        d = self._waiting = Deferred()
        self._body = []
        self.transport.write(data)
        d.addTimeout(timeout, reactor, onTimeoutCancel=self._timed_out)
        return d

    def _timed_out(self, result, timeout):
        self._waiting = None  # answered here: connectionLost must not fire it again
        self.transport.abortConnection()
        raise TimeoutError(string="no complete answer within %gs" % timeout)

    def on_body(self, body):
        self._body.append(body)

    def on_message_complete(self):
        d, self._waiting = self._waiting, None
        if d is not None:
            d.callback(
                (self._parser.get_status_code(), b"".join(self._body), self._parser.should_keep_alive())
            )

    def dataReceived(self, data):
        try:
            self._parser.feed_data(data)
        except Exception as e:
            d, self._waiting = self._waiting, None
            self.transport.abortConnection()
            if d is not None:
                d.errback(ClosedWithoutAnswer("unparsable response: %s" % e))

    def connectionLost(self, reason):
        self.connected_ = False
        d, self._waiting = self._waiting, None
        if d is not None:
            d.errback(ClosedWithoutAnswer(reason.getErrorMessage()))


def connect(port):
    """A Deferred firing with a connected ``RawHTTP`` to 127.0.0.1:``port``."""
    return connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10), RawHTTP())


def get_bytes(path, keep_alive=True):
    """The bytes of a GET request."""
    return (
        b"GET %s HTTP/1.1\r\nHost: hardening.test\r\n%s\r\n"
        % (path.encode(), b"" if keep_alive else b"Connection: close\r\n")
    )


@inlineCallbacks
def one_request(port, path, timeout):
    """
    One request on a fresh connection (``Connection: close``).

    :return: ``("answered", status)``, ``("refused", None)`` when the connection
        was refused, ``("dropped", message)`` when it was accepted and ended
        without a complete answer, or ``("hang", None)``.
    """
    try:
        client = yield connect(port)
    except ConnectError:
        returnValue(("refused", None))
    try:
        status, _, _ = yield client.request(get_bytes(path, keep_alive=False), timeout)
    except ClosedWithoutAnswer as e:
        returnValue(("dropped", str(e)))
    except TimeoutError:
        returnValue(("hang", None))
    client.transport.loseConnection()
    returnValue(("answered", status))


def port_of(url):
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


# -- a real twistd process ---------------------------------------------------


def _twistd():
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    return twistd if os.path.exists(twistd) else shutil.which("twistd")


class TwistdGateway:
    """
    ``twistd -n edgegw`` as a child process on a data directory, with
    ``--cargo /bin/false``: it serves what was compiled before (by a
    ``GatewayHarness`` on the same directory) and compiles nothing.
    """

    def __init__(self, test_case, data_dir, extra=()):
        self.test_case = test_case
        self.data_dir = data_dir
        self.extra = list(extra)  # more twistd edgegw options
        self.process = None
        self.ended = None

    @inlineCallbacks
    def start(self, timeout=60):
        self.port, self.admin_port = _free_port(), _free_port()
        self.ended = Deferred()
        self.exit = []
        self.ended.addCallback(lambda status: self.exit.append(status) or status)
        self.collector = _Collect(self.ended)
        twistd = _twistd()
        self.process = reactor.spawnProcess(
            self.collector,
            twistd,
            [
                twistd, "-n", "--pidfile=", "edgegw", "--data-dir", self.data_dir,
                "--listen", "tcp:%d:interface=127.0.0.1" % self.port,
                "--admin-listen", "tcp:%d:interface=127.0.0.1" % self.admin_port,
                "--cargo", "/bin/false", "--sdk", SDK, "--no-warm-up",
                *self.extra,
            ],
            env=dict(os.environ),
            path=ROOT,
        )
        self.pid = self.process.pid
        self.test_case.addCleanup(self.kill)
        self.harness = GatewayHarness(self.test_case, self.data_dir, "/bin/false")
        self.harness.base = "http://127.0.0.1:%d" % self.port
        self.harness.api = "http://127.0.0.1:%d/api" % self.admin_port

        @inlineCallbacks
        def healthy():
            if self.exit:
                raise AssertionError("twistd ended: %r\n%s" % (self.exit, self.output()))
            try:
                response = yield self.harness.http.get(self.harness.api + "/health")
                yield response.content()
            except Exception:
                returnValue(False)
            returnValue(response.code == 200)

        yield wait_for(healthy, timeout, interval=0.1, message="twistd to serve /api/health")
        with open(os.path.join(self.data_dir, "admin.key")) as f:
            self.harness.key = f.read().strip()

    def output(self):
        return self.collector.output.decode(errors="replace")

    def stop(self):
        """SIGTERM; fires with (exit code, signal) once it ended."""
        if not self.exit:
            self.process.signalProcess("TERM")
        return self.ended

    def kill(self):
        if self.process is not None and not self.exit:
            self.process.signalProcess("KILL")
            return self.ended
