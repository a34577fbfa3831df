"""
What a worker process may do, and the launcher that sets it up (docs/isolation.md).

Twisted's ``spawnProcess`` has no pre-exec hook, so the worker is spawned
through small programs, each setting one thing up and exec'ing the next;
the last one execs the worker binary::

    [network prefix] setsid prlimit --as=B:B --cpu=S:S ... --
        bwrap --die-with-parent --unshare-pid --unshare-ipc --unshare-uts
              [--unshare-net] <read-only /usr, /lib*, a few /etc files>
              --proc /proc --dev /dev --tmpfs /dev/shm --tmpfs /tmp
              --ro-bind <binary> <binary> --bind <sandbox> <sandbox> --chdir <sandbox> --
        /bin/sh -c 'unset PWD; exec 0<&3 1>&4 3<&- 4<&- "$@"' sh   (see FRAME_FDS)
        setpriv --no-new-privs --reuid=U --regid=U --clear-groups
                --inh-caps=-all --bounding-set=-all -- <binary>

  - ``setsid``: the launcher leads its own process group; the worker inside
    stays in it (bwrap without ``--new-session``), so ``os.killpg`` of the pid
    ``spawnProcess`` reported (bwrap's) reaches the worker and what it forked;
  - ``prlimit``: the endpoint's ``settings.limits``, soft = hard, inherited by
    the worker; ``RLIMIT_NPROC`` counts the processes of the endpoint's own uid;
  - ``bwrap`` (Debian's bubblewrap): new pid, mount, IPC, UTS and (policy
    ``"none"``) network namespaces.  The worker sees only its own processes;
    when it exits, the namespace's pid 1 exits and the kernel kills every
    process left in the namespace, so nothing it forked outlives it, even
    after ``setsid()``.  ``--die-with-parent``: a worker dies with its gateway;
  - ``setpriv``: the endpoint's own uid and gid (gid = uid, no supplementary
    group, no capability), ``no_new_privs``.

When the gateway is not root, bwrap adds ``--unshare-user`` (an unprivileged
user namespace) and the worker keeps the gateway's uid; where the kernel
forbids those, only ``setsid prlimit setpriv --no-new-privs`` remain.  The
mode in force is logged at start and shown by ``GET /api/health``.

The environment is the endpoint's ``env`` plus a minimal ``PATH``.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import sandboxing
from ..hostcommands import TOOL_PATH, locate
from ..sandboxing import user_ids

TOOLS = ("setsid", "prlimit", "setpriv")
SANDBOX_TOOL = "bwrap"
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"

FRAME_FDS = (3, 4)
"""The worker's frame pipes (its stdin, its stdout) as the launcher gets them
when it runs bwrap: bwrap's own processes keep descriptors 0-2 open for the
worker's whole life, so a worker that closed its stdout would go unnoticed;
descriptors above 2 they close, and ``/bin/sh`` moves them to 0 and 1 inside."""

_MOVE_FRAME_FDS = 'unset PWD; exec 0<&3 1>&4 3<&- 4<&- "$@"'

DEFAULT_WORKER_UIDS = (61184, 65519)
"""The uids endpoints get one each of (``--worker-uids``): systemd's range for
dynamic users, which no package allocates from."""

# The isolation modes, strongest first (docs/isolation.md).
PER_ENDPOINT = "per-endpoint-uid"
SHARED_USER = "shared-user"
USER_NAMESPACE = "user-namespace"
RLIMITS_ONLY = "rlimits-only"
MODES = (PER_ENDPOINT, SHARED_USER, USER_NAMESPACE, RLIMITS_ONLY)

# What of the host a worker sees, read-only: the programs and libraries a
# Rust binary and its loader need, and the few /etc files name resolution
# and TLS read (those missing on the host are skipped).
SYSTEM_DIRS = sandboxing.SYSTEM_DIRS
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/ssl",
)

_MB = 1024 * 1024
# settings.limits key -> (prlimit option, bytes per unit)
LIMIT_OPTIONS = {
    "memory_mb": ("--as", _MB),
    "cpu_seconds": ("--cpu", 1),
    "open_files": ("--nofile", 1),
    "processes": ("--nproc", 1),
    "file_size_mb": ("--fsize", _MB),
}

# Modes in the data directory when workers run as other users: defence in
# depth, as a namespaced worker does not see the data directory at all.
_MODES = {"sandbox": 0o711, "artifacts": 0o700, "build": 0o700, "services": 0o700}


class IsolationError(Exception):
    """Workers cannot be isolated as asked: a tool, the worker user or a uid is missing."""


@dataclass(frozen=True)
class WorkerUser:
    """An unprivileged identity workers run as."""

    name: str
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"{self.name} (uid {self.uid}, gid {self.gid})"


def find_tools(search_path: str = TOOL_PATH, names: Sequence[str] = TOOLS) -> dict[str, str]:
    """
    The absolute paths of ``names`` (util-linux's ``setsid``, ``prlimit``,
    ``setpriv`` by default).

    :raises IsolationError: naming the missing ones.
    """
    found, missing = locate(names, search_path)
    if missing:
        raise IsolationError(
            "worker isolation needs {} from util-linux, not found in {}:"
            " install util-linux (Debian/Ubuntu: apt-get install util-linux)".format(
                ", ".join(missing), search_path
            )
        )
    return found


def find_bwrap(search_path: str = TOOL_PATH) -> str | None:
    """bubblewrap's ``bwrap``, or None."""
    return shutil.which(SANDBOX_TOOL, path=search_path)


def resolve_user(spec: str) -> WorkerUser:
    """
    ``spec`` as a ``WorkerUser``: a user name (its primary group), or
    ``uid`` / ``uid:gid`` numbers, which need no entry in /etc/passwd.

    :raises IsolationError: for an unknown name, root, or a malformed spec.
    """
    try:
        name, uid, gid = user_ids(spec)
    except KeyError:
        raise IsolationError(
            f"worker user {spec!r}: no such user or group (give a name, uid or uid:gid)"
        )
    if uid == 0 or gid == 0:
        raise IsolationError(f"worker user {spec!r} is root: workers need an unprivileged user")
    return WorkerUser(name, uid, gid)


def parse_uid_range(spec: str) -> tuple[int, int]:
    """
    ``--worker-uids FIRST-LAST`` as numbers.

    :raises IsolationError: malformed, reversed, or including root.
    """
    first, dash, last = spec.partition("-")
    if not (dash and first.strip().isdigit() and last.strip().isdigit()):
        raise IsolationError(f"worker uids {spec!r}: give a range FIRST-LAST such as 61184-65519")
    low, high = int(first), int(last)
    if low < 1 or high < low or high > 0xFFFFFFFE:
        raise IsolationError(
            f"worker uids {spec!r}: FIRST must be at least 1 and LAST from FIRST to 4294967294"
        )
    return low, high


def user_namespaces_allowed(read: Callable[[str], str | None] | None = None) -> bool:
    """
    Whether this kernel lets an unprivileged process create a user
    namespace (for bwrap ``--unshare-user``), from its sysctls.
    """
    read = read or _read_sysctl
    limit = read("/proc/sys/user/max_user_namespaces")
    if limit is not None and limit.strip() == "0":
        return False
    for switch, forbidding in (
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1"),
    ):
        value = read(switch)
        if value is not None and value.strip() == forbidding:
            return False
    return True


def _read_sysctl(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def busy_uids(first: int, last: int, proc: str = "/proc") -> set[int]:
    """
    The uids of ``first``..``last`` not free for an endpoint: an account or
    group has it, or a process runs as it (a worker of another gateway on
    this host, or one of a deleted endpoint not reaped yet).  Blocking: a
    scan of /proc; the store calls it in its thread.
    """
    busy = set()
    for entry in pwd.getpwall():
        if first <= entry.pw_uid <= last:
            busy.add(entry.pw_uid)
    for group in grp.getgrall():
        if first <= group.gr_gid <= last:
            busy.add(group.gr_gid)
    for name in os.listdir(proc):
        if name.isdigit():
            try:
                with open(os.path.join(proc, name, "status")) as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            busy.update(
                                uid for uid in map(int, line.split()[1:]) if first <= uid <= last
                            )
                            break
            except OSError:
                continue
    return busy


def environment(env: Mapping[str, str]) -> dict[str, str]:
    """A worker's whole environment: the endpoint's variables and a minimal ``PATH`` (theirs wins)."""
    return {"PATH": MINIMAL_PATH, **env}


def limit_arguments(limits: Mapping[str, int]) -> list[str]:
    """``prlimit`` options for ``settings.limits``; a limit of 0 is not set (the gateway's own applies)."""
    arguments = []
    for key, (option, unit) in LIMIT_OPTIONS.items():
        value = limits.get(key, 0)
        if value:
            arguments.append(f"{option}={value * unit}:{value * unit}")
    return arguments


def system_binds(exists: Callable[[str], bool] = os.path.lexists) -> list[str]:
    """bwrap options showing the host's system directories read-only, then the few ``ETC_FILES`` there are."""
    options = sandboxing.system_binds(SYSTEM_DIRS, lexists=exists)
    for path in ETC_FILES:
        options += ["--ro-bind-try", path, path]
    return options


def parent_dirs(paths: Iterable[str]) -> list[str]:
    """
    bwrap options creating the folders above ``paths`` in the sandbox's
    empty root, mode 0711 (passable, not listable): bwrap would make them
    0700, which the worker's uid could not pass.
    """
    options: list[str] = []
    made: set[str] = set()
    for path in paths:
        parent = os.path.dirname(os.path.normpath(path))
        chain = []
        while parent not in ("/", "") and parent not in made:
            chain.append(parent)
            made.add(parent)
            parent = os.path.dirname(parent)
        for folder in reversed(chain):
            options += ["--perms", "0711", "--dir", folder]
    return options


class Isolation:
    """
    How this gateway isolates its workers: the mode (``PER_ENDPOINT``,
    ``SHARED_USER``, ``USER_NAMESPACE`` or ``RLIMITS_ONLY``), the launcher's
    tools, the shared user (``SHARED_USER``) and the range endpoints' uids
    come from (``PER_ENDPOINT``).
    """

    def __init__(
        self,
        mode: str,
        tools: Mapping[str, str],
        user: WorkerUser | None = None,
        uids: tuple[int, int] = DEFAULT_WORKER_UIDS,
        euid: int | None = None,
    ):
        self.mode = mode
        self.tools = dict(tools)
        self.user = user
        self.uids = uids
        self._euid = os.geteuid() if euid is None else euid
        self._system = system_binds() if mode != RLIMITS_ONLY else []

    @classmethod
    def for_gateway(
        cls,
        worker_user: str | None = None,
        worker_uids: str | tuple[int, int] = DEFAULT_WORKER_UIDS,
        euid: int | None = None,
        userns: Callable[[], bool] = user_namespaces_allowed,
    ) -> Isolation:
        """
        The strongest mode this gateway can have.  As root: bwrap is
        required, and each endpoint gets a uid of ``worker_uids``, unless
        ``worker_user`` names one user all share.  Otherwise: bwrap in a user
        namespace where the kernel allows, else rlimits only.

        :raises IsolationError: a tool is missing, the user is unknown or the
            range malformed.
        """
        tools = find_tools()
        uids = parse_uid_range(worker_uids) if isinstance(worker_uids, str) else worker_uids
        euid = os.geteuid() if euid is None else euid
        bwrap = find_bwrap()
        if euid == 0:
            if bwrap is None:
                raise IsolationError(
                    "worker isolation needs bwrap from bubblewrap, not found in"
                    f" {TOOL_PATH}: run make setup, or apt-get install bubblewrap"
                )
            tools[SANDBOX_TOOL] = bwrap
            if worker_user:
                return cls(SHARED_USER, tools, resolve_user(worker_user), uids, euid)
            return cls(PER_ENDPOINT, tools, None, uids, euid)
        if bwrap is not None and userns():
            tools[SANDBOX_TOOL] = bwrap
            return cls(USER_NAMESPACE, tools, None, uids, euid)
        return cls(RLIMITS_ONLY, tools, None, uids, euid)

    @property
    def namespaced(self) -> bool:
        """Workers run in namespaces of their own (bwrap)."""
        return self.mode != RLIMITS_ONLY

    @property
    def frame_fds(self) -> tuple[int, int]:
        """The child descriptors the pool gives the frame pipes on (``FRAME_FDS`` under bwrap)."""
        return FRAME_FDS if self.namespaced else (0, 1)

    def identity(self, uid: int | None) -> WorkerUser | None:
        """
        Who an endpoint's workers run as: its own ``uid`` (``PER_ENDPOINT``),
        the shared user, or None (the gateway's user).

        :raises IsolationError: ``PER_ENDPOINT`` without a uid.
        """
        if self.mode == PER_ENDPOINT:
            if uid is None:
                raise IsolationError("the endpoint has no worker uid allocated")
            return WorkerUser(f"edgegw-{uid}", uid, uid)
        return self.user if self.mode == SHARED_USER else None

    def health(self) -> dict[str, str]:
        """The mode and what it means, for ``GET /api/health`` and the log."""
        first, last = self.uids
        details = {
            PER_ENDPOINT: (
                f"each endpoint runs as a uid of its own from {first}-{last}, in its own pid,"
                " mount, IPC, UTS and network namespaces (bubblewrap)"
            ),
            SHARED_USER: (
                f"all endpoints run as {self.user} (--worker-user), each worker in its own"
                " namespaces (bubblewrap); endpoints share the process limit"
            ),
            USER_NAMESPACE: (
                f"the gateway is not root: workers run as its uid {self._euid} in unprivileged"
                " user namespaces with their own pid, mount, IPC, UTS and network namespaces"
                " (bubblewrap); endpoints share the process limit"
            ),
            RLIMITS_ONLY: (
                f"weakest: the gateway is not root and cannot use bubblewrap in a user namespace:"
                f" workers run as its uid {self._euid} with rlimits and no_new_privs only; they"
                " see the host's processes, files and network"
            ),
        }
        return {"mode": self.mode, "detail": details[self.mode]}

    def describe(self) -> str:
        """The line logged at start."""
        info = self.health()
        return f"Worker isolation: {info['mode']}: {info['detail']}"

    def launcher(
        self,
        limits: Mapping[str, int],
        identity: WorkerUser | None,
        network_prefix: Sequence[str] = (),
        *,
        binary: str,
        sandbox: str,
    ) -> list[str]:
        """
        The argv put before the worker binary's (see the module docstring).

        :param identity: from ``identity``: the uid the worker switches to.
        :param network_prefix: the endpoint's network policy as an argv that
            execs the rest (no fork: the pid must stay the launcher's), e.g.
            ``["nsenter", "--net=/run/netns/edgegw-<id>", "--"]``.  Empty
            means policy ``"none"``: bwrap's ``--unshare-net``, a namespace with
            only its own loopback.  Non-empty: put first, and bwrap keeps the
            network namespace the prefix entered.
        :param binary: bound read-only at its own path.
        :param sandbox: the endpoint's directory, bound read-write at its
            own path and the working directory.
        """
        argv = list(network_prefix)
        argv += [self.tools["setsid"], self.tools["prlimit"], *limit_arguments(limits), "--"]
        if self.namespaced:
            argv += [self.tools[SANDBOX_TOOL], "--die-with-parent"]
            if self.mode == USER_NAMESPACE:
                argv.append("--unshare-user")
            argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "worker"]
            if not network_prefix:
                argv.append("--unshare-net")
            argv += self._system
            argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm"]
            argv += ["--perms", "1777", "--tmpfs", "/tmp"]
            argv += parent_dirs((binary, sandbox))
            argv += ["--ro-bind", binary, binary, "--bind", sandbox, sandbox, "--chdir", sandbox, "--"]
            argv += ["/bin/sh", "-c", _MOVE_FRAME_FDS, "sh"]
        argv += [self.tools["setpriv"], "--no-new-privs"]
        if identity is not None:
            argv += [
                f"--reuid={identity.uid}",
                f"--regid={identity.gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ]
        return argv + ["--"]

    # -- files: blocking, but a handful of metadata calls on our own directory

    def prepare_data_dir(self, data_dir: str) -> None:
        """
        As root: workers' users may pass the data directory and ``sandbox/``
        (mode 0711: no listing) and read nothing else there: the binaries,
        cargo projects and the services' files are private (0700), and so are
        the files at the top (``protect_files``).  Namespaced workers do not
        even see the data directory; this is for the rlimits-only mode and
        as defence in depth.
        """
        if self._euid != 0:
            return
        os.makedirs(data_dir, exist_ok=True)
        os.chmod(data_dir, 0o711)
        for name, mode in _MODES.items():
            path = os.path.join(data_dir, name)
            os.makedirs(path, exist_ok=True)
            os.chmod(path, mode)
        self.protect_files(data_dir)

    def protect_files(self, data_dir: str) -> None:
        """
        As root: the files at the top of the data directory (the store and
        its journal, the admin key) readable by the gateway's user only.
        SQLite gives the journal files it creates later the store's mode.
        """
        if self._euid != 0:
            return
        for entry in os.scandir(data_dir):
            if entry.is_file(follow_symlinks=False):
                mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                if mode & 0o077:
                    os.chmod(entry.path, mode & 0o700)

    def prepare_sandbox(self, path: str, identity: WorkerUser | None) -> None:
        """
        The endpoint's working directory: created, and its workers' alone
        (0700).  A sandbox that belonged to another uid (an older gateway
        ran every endpoint as ``nobody``) is handed over with its files.
        """
        os.makedirs(path, exist_ok=True)
        if identity is None:
            return
        info = os.lstat(path)
        if (info.st_uid, info.st_gid) != (identity.uid, identity.gid):
            for entry in _tree(path):
                os.lchown(entry, identity.uid, identity.gid)
        os.chmod(path, 0o700)


def _tree(path: str) -> Iterable[str]:
    """``path`` and everything under it, not following symlinks."""
    yield path
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            yield os.path.join(root, name)


class UidAllocator:
    """
    Each endpoint's own worker uid, like systemd's ``DynamicUser``: drawn once
    from the gateway's range, recorded in the store (so it survives
    restarts), freed when the endpoint is deleted.  A uid an account, a group
    or a running process has is skipped: a process of a deleted endpoint not
    yet gone, or a worker of another gateway on this host.  There is nothing
    to free: the store drops the uid with the endpoint's record.
    """

    def __init__(self, store: Any, isolation: Isolation):
        self._store = store
        self._isolation = isolation

    def allocate(self, endpoint_id: str) -> Any:
        """A Deferred firing with the endpoint's uid (the recorded one if any), or None outside ``PER_ENDPOINT``."""
        from twisted.internet.defer import succeed

        if self._isolation.mode != PER_ENDPOINT:
            return succeed(None)
        first, last = self._isolation.uids

        def recorded(uids: dict[str, int]) -> Any:
            # A read first: a cluster node serving its last-known configuration
            # (the store offline, writes refused) still starts its endpoints.
            if endpoint_id in uids:
                return uids[endpoint_id]
            return self._store.allocate_worker_uid(endpoint_id, first, last, lambda: busy_uids(first, last))

        return self._store.worker_uids().addCallback(recorded)
