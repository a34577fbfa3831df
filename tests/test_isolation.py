"""
Worker isolation (docs/isolation.md), checked on real workers in /proc: the
cleared environment, no_new_privs, the resource limits, the worker user, the
process group killed as a whole, and limits that stop a misbehaving handler
without harming the gateway. Plus the settings' validation and the launcher.
"""

import os
import pwd
import signal
import stat
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, returnValue
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python import usage
from twisted.trial import unittest

from edgegw_tx.admin.errors import BadRequest
from edgegw_tx.admin.validation import (
    DEFAULT_LIMITS,
    effective_settings,
    endpoint_fields,
    pool_settings_changed,
)
from edgegw_tx.workers import isolation
from edgegw_tx.workers import isolation as isolation_module
from edgegw_tx.workers.isolation import Isolation, IsolationError, WorkerUser
from tests.support.hardening import worker_in
from tests.support.isolation import IsolationTestCase, kill_group_later

RESOURCE_ROWS = {
    "memory_mb": "Max address space",
    "cpu_seconds": "Max cpu time",
    "open_files": "Max open files",
    "processes": "Max processes",
    "file_size_mb": "Max file size",
}
_MB = 1024 * 1024
_UNIT = {"memory_mb": _MB, "file_size_mb": _MB}


# -- /proc ---------------------------------------------------------------------


def proc_status(pid):
    """``/proc/<pid>/status`` as a dict of its fields."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def proc_environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        entries = [e.decode() for e in f.read().split(b"\0") if e]
    return dict(e.split("=", 1) for e in entries)


def proc_limits(pid):
    """``/proc/<pid>/limits``: row name -> (soft, hard) strings."""
    rows = {}
    with open(f"/proc/{pid}/limits") as f:
        next(f)
        for line in f:
            name = line[:26].strip()
            soft, hard = line[26:].split()[:2]
            rows[name] = (soft, hard)
    return rows


def expected_rows(limits, own):
    """The /proc rows a worker with ``limits`` shows; 0 keeps ``own`` (the gateway's row)."""
    rows = {}
    for key, row in RESOURCE_ROWS.items():
        value = limits[key] * _UNIT.get(key, 1)
        rows[row] = own[row] if value == 0 else (str(value), str(value))
    return rows


def live_processes():
    """pid -> (pgid, state, uid) of every process now."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            uid = os.stat(f"/proc/{name}").st_uid
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        found[int(name)] = (int(fields[2]), fields[0], uid)
    return found


def group_members(pgid):
    """The pids of process group ``pgid`` that still run (zombies excluded)."""
    return sorted(pid for pid, (group, state, _) in live_processes().items() if group == pgid and state != "Z")


def processes_of(uid):
    return sorted(pid for pid, (_, state, owner) in live_processes().items() if owner == uid and state != "Z")


def unused_uid():
    """A uid no account and no process has, below the worker uid range: a private worker user for one test."""
    busy = {owner for _, _, owner in live_processes().values()}
    first = isolation.DEFAULT_WORKER_UIDS[0]
    for uid in range(first - 1000 + os.getpid() % 1000, first):
        if uid in busy:
            continue
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise unittest.SkipTest("no free uid for a private worker user")


@inlineCallbacks
def eventually(predicate, timeout=5.0):
    """Poll ``predicate`` every 20 ms until true; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            returnValue(value)
        yield deferLater(reactor, 0.02, lambda: None)


def needs_root():
    if os.geteuid() != 0:
        raise unittest.SkipTest("workers switch users only when the gateway runs as root")


# -- real workers ----------------------------------------------------------------


class WorkerProcessIntegrationTests(IsolationTestCase):

    @inlineCallbacks
    def test_no_new_privs_and_clean_environment(self):
        """
        A worker has NoNewPrivs 1, no capability, and an environment of
        exactly its endpoint's variables and PATH: nothing of the gateway's (a
        secret in its environment, the admin key, a bound service's password).
        """
        os.environ["EDGEGW_SECRET"] = "gateway-secret-do-not-leak"
        self.addCleanup(os.environ.pop, "EDGEGW_SECRET", None)
        code, service = yield self.gateway.call(
            "POST",
            "/services",
            {
                "name": "db",
                "service_type": "postgres",
                "config": {
                    "host": "127.0.0.1",
                    "database": "test",
                    "username": "postgres",
                    "password": "pg-password-do-not-leak",
                },
            },
        )
        self.assertEqual(code, 201, service)
        started, pid = yield self.deploy_probe("envy", env={"GREETING": "hello"})
        code, bound = yield self.gateway.call(
            "POST",
            "/endpoints/%s/services" % started["id"],
            {"service_id": service["data"]["id"], "pool_id": "main"},
        )
        self.assertIn(code, (200, 201), bound)
        # Binding restarts nothing: look at the worker serving now.
        code, record = yield self.gateway.call("GET", "/endpoints/" + started["id"])
        self.assertEqual(record["data"]["pids"], [pid])
        worker = worker_in(pid)
        status = proc_status(worker)
        self.assertEqual(status["NoNewPrivs"], "1")
        self.assertEqual((status["CapEff"], status["CapPrm"], status["CapBnd"]), ("0" * 16,) * 3)
        environ = proc_environ(worker)
        self.assertEqual(environ, {"GREETING": "hello", "PATH": isolation.MINIMAL_PATH})
        with open(f"/proc/{worker}/environ", "rb") as f:
            raw = f.read()
        for secret in ("gateway-secret-do-not-leak", "pg-password-do-not-leak", self.gateway.key):
            self.assertNotIn(secret.encode(), raw)
        self.assertEqual(
            os.readlink(f"/proc/{worker}/cwd"),
            os.path.join(self.gateway.runtime.data_dir, "sandbox", started["id"]),
        )

    @inlineCallbacks
    def test_limits_configured_and_default(self):
        """
        /proc/<pid>/limits of a worker shows its endpoint's configured limits
        (soft = hard), the documented defaults for one that sets none, and
        the gateway's own limit where a limit is 0.
        """
        own = proc_limits(os.getpid())
        configured = {"memory_mb": 512, "cpu_seconds": 60, "open_files": 64, "processes": 500, "file_size_mb": 8}
        _, pid = yield self.deploy_probe("tight", limits=configured)
        _, default_pid = yield self.deploy_probe("loose")
        unset = dict(DEFAULT_LIMITS, file_size_mb=0, cpu_seconds=0)
        _, unset_pid = yield self.deploy_probe("unset", limits={"file_size_mb": 0, "cpu_seconds": 0})

        for launcher, limits in ((pid, configured), (default_pid, DEFAULT_LIMITS), (unset_pid, unset)):
            rows = proc_limits(worker_in(launcher))
            self.assertEqual(
                {row: rows[row] for row in RESOURCE_ROWS.values()}, expected_rows(limits, own), limits
            )
        self.assertEqual(proc_limits(worker_in(default_pid))["Max address space"], (str(1024 * _MB),) * 2)

    @inlineCallbacks
    def test_stop_kills_the_whole_group(self):
        """
        A grandchild holding the worker's stdout open dies when the endpoint
        stops: the stop does not wait out the pipes' grace, the pool's slot is
        freed and nothing of the worker's process group is left.
        """
        started, pid = yield self.deploy_probe("forky")
        code, body = yield self.get_json("/forky/fork")
        self.assertEqual(code, 200, body)
        # bwrap, its pid 1, the worker and the grandchild.
        self.assertEqual(len(group_members(pid)), 4, group_members(pid))

        began = time.monotonic()
        stopped = yield self.stop_endpoint(started["id"])
        elapsed = time.monotonic() - began
        self.assertEqual((stopped["status"], stopped["pids"]), ("stopped", []))
        self.assertLess(elapsed, 4.0)  # the pipes' grace (kill_time) is 5 s
        left = yield eventually(lambda: not group_members(pid))
        self.assertTrue(left, f"left in group {pid}: {group_members(pid)}")

    @inlineCallbacks
    def test_kill_on_timeout_kills_the_whole_group(self):
        """A worker killed for overrunning its timeout takes its grandchild with it; a new worker serves."""
        started, pid = yield self.deploy_probe("slow", timeout=1)
        code, body = yield self.get_json("/slow/fork")
        self.assertEqual(code, 200, body)
        response, _ = yield self.json_request("GET", "/slow/spin")
        self.assertEqual(response.code, 504)
        gone = yield eventually(lambda: not group_members(pid))
        self.assertTrue(gone, f"left in group {pid}: {group_members(pid)}")
        code, body = yield self.get_json("/slow/pid")
        self.assertEqual(code, 200)
        self.assertNotIn(body["pid"], (pid, None))
        kill_group_later(self, body["pid"])

    @inlineCallbacks
    def test_memory_limit_kills_only_that_worker(self):
        """
        A handler allocating beyond its memory limit: that worker dies (502
        naming the signal), the other endpoint's worker and the gateway live
        on, and the next request is served by a new worker.
        """
        _, bystander = yield self.deploy_probe("bystander")
        _, pid = yield self.deploy_probe("greedy", limits={"memory_mb": 128})
        code, body = yield self.get_json("/greedy/alloc?mb=64")
        self.assertEqual((code, body), (200, {"allocated_mb": 64, "first": 1}))

        response, body = yield self.json_request("GET", "/greedy/alloc?mb=2048")
        self.assertEqual(response.code, 502, body)
        self.assertIn("signal", body["error"])
        code, body = yield self.get_json("/greedy/pid")
        self.assertEqual(code, 200)
        self.assertNotIn(body["pid"], (pid, None))
        kill_group_later(self, body["pid"])
        code, body = yield self.get_json("/bystander/pid")
        self.assertEqual((code, body), (200, {"pid": bystander}))


class EndpointIdentityIntegrationTests(IsolationTestCase):
    """Each endpoint its own uid and namespaces: what one endpoint's code may not do to another's."""

    def setUp(self):
        needs_root()
        return IsolationTestCase.setUp(self)

    @inlineCallbacks
    def test_each_endpoint_has_its_own_recorded_uid(self):
        """
        Two endpoints' workers run as two distinct uids of the range (gid the
        same, no supplementary group), each owning its sandbox (0700); the
        uids are those recorded in the store, kept across a gateway restart.
        """
        a, pid_a = yield self.deploy_probe("alpha")
        b, pid_b = yield self.deploy_probe("beta")
        recorded = yield self.gateway.runtime.store.worker_uids()
        first, last = isolation.DEFAULT_WORKER_UIDS
        uids = {}
        for started, pid in ((a, pid_a), (b, pid_b)):
            uid = recorded[started["id"]]
            self.assertTrue(first <= uid <= last, uid)
            status = proc_status(worker_in(pid))
            self.assertEqual(status["Uid"].split(), [str(uid)] * 4)
            self.assertEqual(status["Gid"].split(), [str(uid)] * 4)
            self.assertEqual(status["Groups"].strip(), "")
            code, body = yield self.get_json("/%s/who" % started["name"])
            self.assertEqual((body["uid"], body["gid"]), (uid, uid))
            sandbox = os.stat(os.path.join(self.gateway.runtime.data_dir, "sandbox", started["id"]))
            self.assertEqual((sandbox.st_uid, sandbox.st_gid, stat.S_IMODE(sandbox.st_mode)), (uid, uid, 0o700))
            uids[started["id"]] = uid
        self.assertNotEqual(uids[a["id"]], uids[b["id"]])

        yield self.gateway.stop()
        yield self.gateway.start()
        again = yield self.gateway.runtime.store.worker_uids()
        self.assertEqual({k: again[k] for k in uids}, uids)
        code, body = yield self.get_json("/alpha/who")
        self.assertEqual((code, body["uid"]), (200, uids[a["id"]]))
        code, record = yield self.gateway.call("GET", "/endpoints/" + a["id"])
        for pid in record["data"]["pids"]:
            kill_group_later(self, pid)

    @inlineCallbacks
    def test_one_endpoint_cannot_reach_another(self):
        """
        Endpoint A's code cannot write into B's sandbox, read B's
        /proc/<pid>/environ, SIGSTOP B's worker (not even see its pid or the
        gateway's), nor see B's /tmp or /dev/shm; the data directory is not there.
        """
        a, pid_a = yield self.deploy_probe("aa")
        b, pid_b = yield self.deploy_probe("bb", env={"B_SECRET": "b-secret"})
        data_dir = self.gateway.runtime.data_dir
        b_sandbox = os.path.join(data_dir, "sandbox", b["id"])
        b_worker = worker_in(pid_b)

        code, body = yield self.get_json("/aa/write?path=" + os.path.join(b_sandbox, "planted"))
        self.assertEqual((code, body), (200, {"error": "NotFound"}))
        self.assertFalse(os.path.exists(os.path.join(b_sandbox, "planted")))
        for path in (f"/proc/{b_worker}/environ", f"/proc/{pid_b}/environ", os.path.join(data_dir, "admin.key")):
            code, body = yield self.get_json("/aa/read?path=" + path)
            self.assertEqual((code, body), (200, {"error": "NotFound"}), path)
        for target in (b_worker, pid_b, os.getpid()):
            code, body = yield self.get_json("/aa/stop?pid=%d" % target)
            self.assertEqual((code, body), (200, {"errno": 3}), target)  # ESRCH: no such process
        self.assertEqual(proc_status(b_worker)["State"][0], "S")  # not T (stopped)
        code, body = yield self.get_json("/bb/pid")
        self.assertEqual((code, body), (200, {"pid": pid_b}))

        code, who = yield self.get_json("/aa/who")
        # Its namespace's pid 1 (bwrap) and itself: nothing of B nor of the gateway.
        self.assertEqual((who["own_pid"], sorted(who["visible"])), (2, [1, 2]))

        for path in ("/tmp/from-a", "/dev/shm/from-a"):
            code, body = yield self.get_json("/aa/write?path=" + path)
            self.assertEqual((code, body), (200, {"ok": True}), path)
            code, body = yield self.get_json("/bb/read?path=" + path)
            self.assertEqual((code, body), (200, {"error": "NotFound"}), path)
            self.assertFalse(os.path.exists(path))

    @inlineCallbacks
    def test_no_network_but_its_own_loopback(self):
        """
        With network "none" (the default) a worker cannot connect to the
        host's PostgreSQL or Redis on 127.0.0.1, nor to the gateway's own
        data plane; its loopback is its own.
        """
        _, pid = yield self.deploy_probe("offline")
        data_port = self.gateway.base.rsplit(":", 1)[1]
        for addr in ("127.0.0.1:5432", "127.0.0.1:6379", "127.0.0.1:" + data_port):
            code, body = yield self.get_json("/offline/connect?addr=" + addr)
            self.assertEqual((code, body), (200, {"error": "ConnectionRefused"}), addr)

    @inlineCallbacks
    def test_orphans_do_not_outlive_their_worker(self):
        """
        Children that leave the worker's session (setsid -f, and a double fork
        calling setsid()) die with the worker: after stop, after the worker
        is killed, after a restart and after delete, none is left.
        """
        started, pid = yield self.deploy_probe("orphaner", max_instances=1)
        endpoint = "/endpoints/" + started["id"]
        for step, marker in enumerate(("987601", "987602", "987603", "987604")):
            code, body = yield self.get_json("/orphaner/orphans?marker=" + marker)
            self.assertEqual((code, body), (200, {"setsid": True}))
            orphans = yield eventually(lambda: len(sleepers(marker)) == 2)
            self.assertTrue(orphans, f"the orphans did not start: {sleepers(marker)}")
            if step == 0:
                code, document = yield self.gateway.call("POST", endpoint + "/stop")
                self.assertEqual(code, 200, document)
                code, document = yield self.gateway.call("POST", endpoint + "/start")
                self.assertEqual(code, 200, document)
            elif step == 1:
                [launcher] = (yield self.gateway.call("GET", endpoint))[1]["data"]["pids"]
                os.kill(launcher, signal.SIGKILL)
            elif step == 2:
                code, document = yield self.gateway.call("POST", endpoint + "/restart")
                self.assertEqual(code, 200, document)
            else:
                code, document = yield self.gateway.call("DELETE", endpoint)
                self.assertEqual(code, 200, document)
            gone = yield eventually(lambda: not sleepers(marker))
            self.assertTrue(gone, f"step {step}: orphans left: {sleepers(marker)}")
            if step < 3:
                yield eventually(lambda: self.get_json("/orphaner/pid") and True)
                code, record = yield self.gateway.call("GET", endpoint)
                for launcher in record["data"]["pids"]:
                    kill_group_later(self, launcher)

    @inlineCallbacks
    def test_health_says_which_isolation(self):
        """GET /api/health names the isolation in force: a uid per endpoint and namespaces, as root."""
        code, document = yield self.gateway.call("GET", "/health")
        self.assertEqual(code, 200)
        self.assertEqual(document["data"]["isolation"]["mode"], isolation.PER_ENDPOINT)
        self.assertIn("namespaces", document["data"]["isolation"]["detail"])


def sleepers(marker):
    """Pids of live ``sleep <marker>`` processes."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"sleep", marker.encode()] and live_processes().get(int(name), (0, "Z"))[1] != "Z":
                found.append(int(name))
    return found


class SharedUserIntegrationTests(IsolationTestCase):
    """``--worker-user <uid>``: every endpoint shares that uid, so only its workers count toward its process limit."""

    def setUp(self):
        needs_root()
        self.uid = unused_uid()
        self.runtime_options = {"worker_user": str(self.uid)}
        return IsolationTestCase.setUp(self)

    @inlineCallbacks
    def test_fork_bomb_is_capped(self):
        """
        A handler forking without end gets EAGAIN at the endpoint's process
        limit; the gateway and the worker live on, and once the endpoint stops
        not one process of the worker user is left.
        """
        started, pid = yield self.deploy_probe("bomb", limits={"processes": 40})
        self.assertEqual(proc_status(worker_in(pid))["Uid"].split()[0], str(self.uid))
        code, body = yield self.get_json("/bomb/forkbomb")
        self.assertEqual(code, 200, body)
        self.assertEqual(body["errno"], 11)  # EAGAIN
        self.assertEqual(body["forked"], 40 - 1)  # the worker is one of the 40
        self.assertEqual(len(processes_of(self.uid)), 40)

        code, body = yield self.get_json("/bomb/pid")
        self.assertEqual((code, body), (200, {"pid": pid}))
        yield self.stop_endpoint(started["id"])
        left = yield eventually(lambda: not processes_of(self.uid))
        self.assertTrue(left, f"left of uid {self.uid}: {processes_of(self.uid)}")


# -- settings, launcher, option ------------------------------------------------------


class LimitSettingsTests(unittest.TestCase):
    """``settings.limits``: defaults, partial changes, 400s naming the field."""

    def create(self, **settings):
        return endpoint_fields({"name": "x", "path": "/x", "method": "GET", "settings": settings})

    def test_defaults(self):
        """A new endpoint gets the documented limits; an old record without them reads with them."""
        self.assertEqual(
            self.create()["settings"]["limits"],
            {"memory_mb": 1024, "cpu_seconds": 3600, "open_files": 256, "processes": 1024, "file_size_mb": 64},
        )
        self.assertEqual(effective_settings({})["limits"], DEFAULT_LIMITS)
        self.assertEqual(effective_settings({"limits": {"processes": 5}})["limits"]["memory_mb"], 1024)

    def test_given_limits_replace_the_stored_ones(self):
        """An update naming one limit keeps the others as stored; 0 is accepted (the gateway's own)."""
        created = self.create(limits={"memory_mb": 256, "processes": 0})
        self.assertEqual(created["settings"]["limits"], dict(DEFAULT_LIMITS, memory_mb=256, processes=0))
        updated = endpoint_fields({"limits": {"open_files": 32}}, {"settings": created["settings"]})
        self.assertEqual(
            updated["settings"]["limits"], dict(DEFAULT_LIMITS, memory_mb=256, processes=0, open_files=32)
        )
        # A change of limits is a change of the running workers' settings: they are replaced.
        self.assertTrue(pool_settings_changed(created["settings"], updated["settings"]))
        self.assertFalse(pool_settings_changed({}, {"limits": DEFAULT_LIMITS}))

    def test_bad_limits_are_400_naming_the_field(self):
        """Wrong types, out-of-range values and unknown limits answer 400 saying what is allowed."""
        for limits, field, words in (
            ([], "settings.limits", "must be an object of limits: memory_mb, cpu_seconds"),
            ({"memory_mb": 8}, "settings.limits.memory_mb", "0 (the gateway's own limit) or an integer from 16 to"),
            ({"memory_mb": "1024"}, "settings.limits.memory_mb", "integer"),
            ({"cpu_seconds": -1}, "settings.limits.cpu_seconds", "from 1 to"),
            ({"open_files": 1.5}, "settings.limits.open_files", "integer"),
            ({"processes": True}, "settings.limits.processes", "integer"),
            ({"file_size_mb": 10**9}, "settings.limits.file_size_mb", "from 1 to 1048576"),
            ({"memory": 1}, "settings.limits.memory", "unknown field 'settings.limits.memory'"),
        ):
            with self.assertRaises(BadRequest) as caught:
                self.create(limits=limits)
            self.assertEqual((caught.exception.status, caught.exception.extra["field"]), (400, field), limits)
            self.assertIn(words, caught.exception.message, limits)
        with self.assertRaises(BadRequest) as caught:
            endpoint_fields({"name": "x", "path": "/x", "method": "GET", "limits": {"processes": -1}})
        self.assertEqual(caught.exception.extra["field"], "limits.processes")


class LauncherTests(unittest.TestCase):
    """The launcher's argv, the environment, and clear errors when something is missing."""

    tools = {
        "setsid": "/usr/bin/setsid",
        "prlimit": "/usr/bin/prlimit",
        "setpriv": "/usr/bin/setpriv",
        "bwrap": "/usr/bin/bwrap",
    }

    def launcher(self, mode, identity, network_prefix=()):
        isolation = Isolation(mode, self.tools, euid=0 if mode == isolation_module.PER_ENDPOINT else 1000)
        return isolation.launcher(
            dict(DEFAULT_LIMITS, file_size_mb=0),
            identity,
            network_prefix,
            binary="/d/artifacts/x/handler",
            sandbox="/d/sandbox/e",
        )

    def test_launcher_argv(self):
        """
        setsid, prlimit with soft = hard limits (0 left out), bwrap with its
        own pid, IPC, UTS and network namespaces, the binary read-only and the
        sandbox read-write as working directory, then setpriv with
        no_new_privs, the endpoint's uid and no capability.
        """
        argv = self.launcher(isolation_module.PER_ENDPOINT, WorkerUser("edgegw-61184", 61184, 61184))
        bwrap = argv.index("/usr/bin/bwrap")
        self.assertEqual(
            argv[:bwrap],
            [
                "/usr/bin/setsid",
                "/usr/bin/prlimit",
                "--as=1073741824:1073741824",
                "--cpu=3600:3600",
                "--nofile=256:256",
                "--nproc=1024:1024",
                "--",
            ],
        )
        setpriv = argv.index("/usr/bin/setpriv")
        sandbox = argv[bwrap:setpriv]
        for option in ("--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net"):
            self.assertIn(option, sandbox)
        self.assertNotIn("--unshare-user", sandbox)
        self.assertNotIn("--new-session", sandbox)  # the worker stays in the launcher's process group
        text = " ".join(sandbox)
        for binds in (
            "--ro-bind /usr /usr",
            "--proc /proc",
            "--dev /dev",
            "--perms 1777 --tmpfs /dev/shm --perms 1777 --tmpfs /tmp",
            "--ro-bind /d/artifacts/x/handler /d/artifacts/x/handler",
            "--bind /d/sandbox/e /d/sandbox/e --chdir /d/sandbox/e --",
        ):
            self.assertIn(binds, text)
        sources = [sandbox[i + 1] for i, word in enumerate(sandbox) if word in ("--bind", "--ro-bind", "--ro-bind-try")]
        # Nothing else of the data directory; the folders above are empty and not listable.
        self.assertEqual([path for path in sources if path.startswith("/d/")], ["/d/artifacts/x/handler", "/d/sandbox/e"])
        self.assertIn("--perms 0711 --dir /d --perms 0711 --dir /d/artifacts", text)
        self.assertEqual(
            argv[setpriv:],
            [
                "/usr/bin/setpriv",
                "--no-new-privs",
                "--reuid=61184",
                "--regid=61184",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ],
        )

    def test_network_prefix_goes_first_and_keeps_the_namespace(self):
        """A network policy's prefix argv comes first, and bwrap then does not unshare the network."""
        prefix = ["/usr/bin/nsenter", "--net=/run/netns/edgegw-x", "--"]
        argv = self.launcher(isolation_module.PER_ENDPOINT, WorkerUser("u", 61184, 61184), prefix)
        self.assertEqual(argv[:3], prefix)
        self.assertEqual(argv[3], "/usr/bin/setsid")
        self.assertNotIn("--unshare-net", argv)

    def test_weaker_modes(self):
        """
        Not root: bwrap in a user namespace and no uid switch; without user
        namespaces only setsid, prlimit and setpriv --no-new-privs.
        """
        argv = self.launcher(isolation_module.USER_NAMESPACE, None)
        self.assertIn("--unshare-user", argv)
        self.assertEqual(argv[argv.index("/usr/bin/setpriv"):], ["/usr/bin/setpriv", "--no-new-privs", "--"])
        argv = self.launcher(isolation_module.RLIMITS_ONLY, None)
        self.assertNotIn("/usr/bin/bwrap", argv)
        self.assertEqual(argv[0], "/usr/bin/setsid")
        self.assertEqual(argv[-3:], ["/usr/bin/setpriv", "--no-new-privs", "--"])

    def test_mode_chosen_and_said(self):
        """
        Root gets a uid per endpoint (or the shared --worker-user); not root a
        user namespace where the kernel allows one, else rlimits only; each
        mode has a health entry naming it.
        """
        modes = {
            (0, None, True): isolation_module.PER_ENDPOINT,
            (0, "nobody", True): isolation_module.SHARED_USER,
            (1000, None, True): isolation_module.USER_NAMESPACE,
            (1000, None, False): isolation_module.RLIMITS_ONLY,
        }
        for (euid, user, userns), mode in modes.items():
            chosen = Isolation.for_gateway(user, euid=euid, userns=lambda: userns)
            self.assertEqual(chosen.mode, mode)
            self.assertEqual(chosen.health()["mode"], mode)
            self.assertIn(mode, chosen.describe())
        self.assertIn("weakest", Isolation.for_gateway(euid=1000, userns=lambda: False).health()["detail"])

    def test_user_namespaces_from_sysctls(self):
        """Unprivileged user namespaces count as allowed unless a sysctl forbids them."""
        def reader(values):
            return lambda path: values.get(path)

        self.assertTrue(isolation_module.user_namespaces_allowed(reader({})))
        for path, value in (
            ("/proc/sys/user/max_user_namespaces", "0\n"),
            ("/proc/sys/kernel/unprivileged_userns_clone", "0\n"),
            ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1\n"),
        ):
            self.assertFalse(isolation_module.user_namespaces_allowed(reader({path: value})), path)

    def test_uid_ranges(self):
        """--worker-uids FIRST-LAST parses; malformed, reversed or root ranges are refused."""
        self.assertEqual(isolation_module.parse_uid_range("61184-65519"), (61184, 65519))
        for spec in ("61184", "a-b", "65519-61184", "0-10", "-5-10"):
            with self.assertRaises(IsolationError):
                isolation_module.parse_uid_range(spec)

    def test_environment_is_the_endpoints_and_path(self):
        """Only the endpoint's variables and a minimal PATH, which the endpoint may replace."""
        self.assertEqual(isolation.environment({"A": "1"}), {"A": "1", "PATH": "/usr/local/bin:/usr/bin:/bin"})
        self.assertEqual(isolation.environment({"PATH": "/opt/bin"}), {"PATH": "/opt/bin"})

    def test_missing_tool_is_a_clear_error(self):
        """Without util-linux's tools the gateway refuses to start, saying which and how to get them."""
        empty = self.mktemp()
        os.makedirs(empty)
        with self.assertRaises(IsolationError) as caught:
            isolation.find_tools(empty)
        message = str(caught.exception)
        self.assertIn("setsid, prlimit, setpriv from util-linux", message)
        self.assertIn("apt-get install util-linux", message)

    def test_worker_users(self):
        """Names, uid and uid:gid resolve; unknown names and root are refused."""
        nobody = pwd.getpwnam("nobody")
        self.assertEqual(isolation.resolve_user("nobody"), WorkerUser("nobody", nobody.pw_uid, nobody.pw_gid))
        numbers = isolation.resolve_user("64999:64998")
        self.assertEqual((numbers.uid, numbers.gid), (64999, 64998))
        for spec, words in (("no-such-user-here", "no such user"), ("root", "is root"), ("0", "is root")):
            with self.assertRaises(IsolationError) as caught:
                isolation.resolve_user(spec)
            self.assertIn(words, str(caught.exception))

    def test_worker_user_option(self):
        """twistd edgegw --worker-user takes a user and refuses an unknown one."""
        from edgegw_tx.tap import Options

        options = Options()
        options.parseOptions(["--worker-user", "nobody"])
        self.assertEqual(options["worker-user"], "nobody")
        if os.geteuid() == 0:
            with self.assertRaises(usage.UsageError) as caught:
                Options().parseOptions(["--worker-user", "no-such-user-here"])
            self.assertIn("no such user", str(caught.exception))


class WorkerUidStoreTests(unittest.TestCase):
    """The store's record of each endpoint's worker uid (schema 5)."""

    def setUp(self):
        from tests.support.fakes import make_store
        from tests.support.fakes import endpoint

        self.store = make_store(self)
        for n in (1, 2, 3):
            self.successResultOf(self.store.create_endpoint(endpoint(id=f"e{n}", path=f"/e{n}", path_shape=f"/e{n}")))

    def allocate(self, endpoint_id, busy=()):
        return self.successResultOf(self.store.allocate_worker_uid(endpoint_id, 100, 103, lambda: busy))

    def test_one_uid_per_endpoint_recorded_once(self):
        """Each endpoint gets its own uid, the same one every time it asks; busy uids are skipped."""
        self.assertEqual(self.allocate("e1"), 100)
        self.assertEqual(self.allocate("e1", busy={100}), 100)
        self.assertEqual(self.allocate("e2", busy={101}), 102)
        self.assertEqual(self.successResultOf(self.store.worker_uids()), {"e1": 100, "e2": 102})

    def test_delete_frees_the_uid(self):
        """Deleting an endpoint frees its uid for the next endpoint."""
        self.allocate("e1")
        self.successResultOf(self.store.delete_endpoint("e1"))
        self.assertEqual(self.successResultOf(self.store.worker_uids()), {})
        self.assertEqual(self.allocate("e2"), 100)

    def test_full_range_and_unknown_endpoint(self):
        """No free uid left is NoFreeUid naming the option; an unknown endpoint gets none."""
        from edgegw_tx.store import Missing, NoFreeUid

        self.allocate("e1", busy={101, 102, 103})
        failure = self.failureResultOf(self.store.allocate_worker_uid("e2", 100, 103, lambda: {101, 102, 103}))
        failure.trap(NoFreeUid)
        self.assertIn("--worker-uids", str(failure.value))
        self.failureResultOf(self.store.allocate_worker_uid("nope", 100, 103), Missing)

    def test_busy_uids_are_accounts_and_processes(self):
        """busy_uids names uids of accounts and of running processes in the range, nothing outside it."""
        nobody = pwd.getpwnam("nobody").pw_uid
        self.assertIn(nobody, isolation.busy_uids(nobody, nobody))
        self.assertIn(os.getuid(), isolation.busy_uids(os.getuid(), os.getuid()))
        self.assertEqual(isolation.busy_uids(4000000000, 4000000001), set())


class _Collect(ProcessProtocol):
    """What a child writes on its descriptor 4 (the moved stdout), and its end."""

    def __init__(self):
        self.out = b""
        self.ended = Deferred()

    def childDataReceived(self, fd, data):
        if fd == 4:
            self.out += data

    def processEnded(self, reason):
        self.ended.callback(self.out.decode())


class UserNamespaceModeTests(unittest.TestCase):
    """The launcher of a gateway that is not root: bwrap in an unprivileged user namespace."""

    @inlineCallbacks
    def test_unprivileged_launcher_isolates(self):
        """
        Run as nobody, the user-namespace launcher gives a process its own pid
        namespace (it sees two pids), only a loopback, its sandbox as working
        directory and no capability, with the frame pipes on 0 and 1.
        """
        needs_root()  # to become nobody for the test
        if not isolation.user_namespaces_allowed():
            raise unittest.SkipTest("this kernel forbids unprivileged user namespaces")
        tools = dict(isolation.find_tools(), bwrap=isolation.find_bwrap())
        nobody = pwd.getpwnam("nobody")
        sandbox = os.path.abspath(self.mktemp())
        os.makedirs(sandbox)
        os.chmod(os.path.dirname(sandbox), 0o711)
        os.chown(sandbox, nobody.pw_uid, nobody.pw_gid)
        launcher = Isolation(isolation.USER_NAMESPACE, tools, euid=nobody.pw_uid).launcher(
            DEFAULT_LIMITS, None, binary="/usr/bin/sh", sandbox=sandbox
        )
        drop = [tools["setpriv"], f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]
        script = "ls /proc | grep -c '^[0-9]'; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; pwd; grep CapEff /proc/self/status"
        argv = drop + launcher + ["/usr/bin/sh", "-c", script]
        null = os.open(os.devnull, os.O_RDWR)
        self.addCleanup(os.close, null)
        collect = _Collect()
        reactor.spawnProcess(
            collect, argv[0], argv, env={"PATH": isolation.MINIMAL_PATH}, path=sandbox,
            childFDs={0: null, 1: null, 2: 2, 3: "w", 4: "r"},
        )
        out = yield collect.ended
        # bwrap's pid 1, sh, ls and grep at most: none of the host's processes.
        count, *rest = out.split("\n")
        self.assertLessEqual(int(count), 4, out)
        self.assertEqual(rest[0], "lo")  # the only interface
        self.assertEqual(rest[1], sandbox)
        self.assertIn("CapEff:\t0000000000000000", rest)


class ManagerUidTests(unittest.TestCase):
    """The endpoint manager draws an endpoint's uid at create and hands it to the pool factory."""

    def setUp(self):
        from edgegw_tx.admin.logs import LogBook
        from edgegw_tx.admin.manager import EndpointManager
        from edgegw_tx.gateway.routes import RouteTable
        from tests.support.fakes import SynchronousReactor, make_store
        from tests.support.fakes import FakeBuilder

        reactor = SynchronousReactor()
        self.store = make_store(self, reactor)
        root = Isolation(isolation.PER_ENDPOINT, {}, uids=(70000, 70001), euid=0)
        self.manager = EndpointManager(
            self.store, FakeBuilder(), RouteTable(), None, LogBook(reactor),
            uids=isolation.UidAllocator(self.store, root), reactor=reactor,
        )

    def create(self, name):
        return self.manager.create({"name": name, "path": "/" + name, "method": "GET", "code": "x"})

    def test_create_draws_a_uid_and_delete_frees_it(self):
        """Each created endpoint has its own uid recorded; deleting it frees the uid."""
        first = self.successResultOf(self.create("one"))
        second = self.successResultOf(self.create("two"))
        uids = self.successResultOf(self.store.worker_uids())
        self.assertEqual(uids, {first["id"]: 70000, second["id"]: 70001})
        self.successResultOf(self.manager.delete(first["id"]))
        self.assertEqual(self.successResultOf(self.store.worker_uids()), {second["id"]: 70001})

    def test_recorded_uid_is_read_not_written(self):
        """
        An endpoint that has its uid gets it by a read alone, so a cluster node
        serving its last-known configuration (writes refused) can start it.
        """
        from twisted.internet.defer import fail

        from edgegw_tx.store.errors import StoreUnavailable

        record = self.successResultOf(self.create("one"))
        allocator = isolation.UidAllocator(self.store, Isolation(isolation.PER_ENDPOINT, {}, uids=(70000, 70001), euid=0))
        self.patch(self.store, "allocate_worker_uid", lambda *a, **kw: fail(StoreUnavailable("db", "offline")))
        self.assertEqual(self.successResultOf(allocator.allocate(record["id"])), 70000)

    def test_no_uid_left_is_409_and_no_endpoint(self):
        """When the range is used up, create answers 409 naming --worker-uids and stores nothing."""
        from edgegw_tx.admin.errors import Conflict

        self.successResultOf(self.create("one"))
        self.successResultOf(self.create("two"))
        failure = self.failureResultOf(self.create("three"), Conflict)
        self.assertIn("--worker-uids", failure.value.message)
        names = [e["name"] for e in self.successResultOf(self.store.list_endpoints())]
        self.assertEqual(names, ["one", "two"])
