"""
What a worker process may do, and the launcher that sets it up (docs/isolation.md).

Twisted's C{spawnProcess} has no pre-exec hook, so the worker is spawned
through three small util-linux tools, each setting one thing up and exec'ing
the next, the last one the worker binary; no fork, so the worker keeps the pid
C{spawnProcess} reported::

    setsid prlimit --as=B:B --cpu=S:S --nofile=N:N --nproc=N:N --fsize=B:B --
        setpriv --no-new-privs [--reuid=U --regid=G --clear-groups] -- <binary>

  - C{setsid}: the worker leads its own process group (and session), so
    stopping it signals the whole group and nothing it forked lingers;
  - C{prlimit}: the endpoint's C{settings.limits}, soft = hard so the worker
    cannot raise them again;
  - C{setpriv}: C{no_new_privs} (exec never grants privileges: no setuid
    binaries, no file capabilities) and, when the gateway runs as root, the
    unprivileged worker user with no supplementary groups.

Measured on a 2-CPU machine the three execs add about 2 ms to a worker's
start; a Python launcher (C{python -I -S}) would add about 7 ms.

The environment is the endpoint's C{env} plus a minimal C{PATH}; the working
directory is the endpoint's sandbox, owned by the worker user.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass

TOOLS = ("setsid", "prlimit", "setpriv")
TOOL_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_WORKER_USER = "nobody"
NO_WORKER_USER = "none"

_MB = 1024 * 1024
# settings.limits key -> (prlimit option, bytes per unit)
LIMIT_OPTIONS = {
    "memory_mb": ("--as", _MB),
    "cpu_seconds": ("--cpu", 1),
    "open_files": ("--nofile", 1),
    "processes": ("--nproc", 1),
    "file_size_mb": ("--fsize", _MB),
}

# Modes in the data directory when workers run as another user: they may
# pass sandbox/ to their own sandbox, nothing else.
_MODES = {"sandbox": 0o711, "artifacts": 0o700, "build": 0o700, "services": 0o700}


class IsolationError(Exception):
    """Workers cannot be isolated as asked: a tool or the worker user is missing."""


@dataclass(frozen=True)
class WorkerUser:
    """The unprivileged user workers run as."""

    name: str
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"{self.name} (uid {self.uid}, gid {self.gid})"


def find_tools(search_path: str = TOOL_PATH) -> dict[str, str]:
    """
    The absolute paths of C{setsid}, C{prlimit} and C{setpriv}.

    @raise IsolationError: naming the missing ones.
    """
    found = {name: shutil.which(name, path=search_path) for name in TOOLS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise IsolationError(
            "worker isolation needs {} from util-linux, not found in {}:"
            " install util-linux (Debian/Ubuntu: apt-get install util-linux)".format(
                ", ".join(missing), search_path
            )
        )
    return {name: path for name, path in found.items() if path is not None}


def resolve_user(spec: str) -> WorkerUser:
    """
    C{spec} as a L{WorkerUser}: a user name (its primary group), or
    C{uid} / C{uid:gid} numbers, which need no entry in /etc/passwd.

    @raise IsolationError: for an unknown name, root, or a malformed spec.
    """
    name, _, group = spec.partition(":")
    try:
        if name.isdigit():
            uid = int(name)
            try:
                entry = pwd.getpwuid(uid)
                name, gid = entry.pw_name, entry.pw_gid
            except KeyError:
                gid = uid
        else:
            entry = pwd.getpwnam(name)
            uid, gid = entry.pw_uid, entry.pw_gid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise IsolationError(
            f"worker user {spec!r}: no such user or group (give a name, uid or uid:gid)"
        )
    if uid == 0 or gid == 0:
        raise IsolationError(f"worker user {spec!r} is root: workers need an unprivileged user")
    return WorkerUser(name, uid, gid)


def environment(env: Mapping[str, str]) -> dict[str, str]:
    """A worker's whole environment: the endpoint's variables and a minimal C{PATH} (theirs wins)."""
    return {"PATH": MINIMAL_PATH, **env}


def limit_arguments(limits: Mapping[str, int]) -> list[str]:
    """C{prlimit} options for C{settings.limits}; a limit of 0 is not set (the gateway's own applies)."""
    arguments = []
    for key, (option, unit) in LIMIT_OPTIONS.items():
        value = limits.get(key, 0)
        if value:
            arguments.append(f"{option}={value * unit}:{value * unit}")
    return arguments


class Isolation:
    """
    How this gateway isolates its workers: the launcher's tools, and the
    worker user (None: workers keep the gateway's user).
    """

    def __init__(self, user: WorkerUser | None, tools: Mapping[str, str]):
        self.user = user
        self.tools = dict(tools)

    @classmethod
    def for_gateway(cls, worker_user: str | None = DEFAULT_WORKER_USER) -> Isolation:
        """
        Find the tools; switch to C{worker_user} only when running as root
        (anyone else cannot switch, and C{"none"} or None keeps the gateway's
        user).

        @raise IsolationError: a tool is missing or the user is unknown.
        """
        tools = find_tools()
        user = None
        if worker_user not in (None, "", NO_WORKER_USER) and os.geteuid() == 0:
            user = resolve_user(worker_user)
        return cls(user, tools)

    def describe(self) -> str:
        """Who the workers run as, for the log."""
        if self.user is not None:
            return f"workers run as {self.user}"
        return (
            f"workers run as the gateway's user (uid {os.geteuid()}): their"
            " process limit counts all of that user's processes"
        )

    def launcher(self, limits: Mapping[str, int]) -> list[str]:
        """The argv put before the worker binary's (see the module docstring)."""
        argv = [self.tools["setsid"], self.tools["prlimit"], *limit_arguments(limits), "--"]
        argv += [self.tools["setpriv"], "--no-new-privs"]
        if self.user is not None:
            argv += [f"--reuid={self.user.uid}", f"--regid={self.user.gid}", "--clear-groups"]
        return argv + ["--"]

    # -- files: blocking, but a handful of metadata calls on our own directory

    def prepare_data_dir(self, data_dir: str) -> None:
        """
        With a worker user: it may pass the data directory and C{sandbox/} to
        its own sandbox (mode 0711: no listing) and read nothing else there:
        the binaries, cargo projects and the services' files are private
        (0700), and so are the files at the top (L{protect_files}).

        A worker needs no access to its binary's folder: C{setpriv} keeps its
        capabilities until it execs the binary, and C{spawnProcess} entered the
        sandbox as root.  So parents of the data directory that others may not
        pass (a home directory) only stop a worker from naming its sandbox by
        absolute path; relative paths always work.
        """
        if self.user is None:
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
        With a worker user: the files at the top of the data directory (the
        store and its journal, the admin key) readable by the gateway's user
        only.  SQLite gives the journal files it creates later the store's mode.
        """
        if self.user is None:
            return
        for entry in os.scandir(data_dir):
            if entry.is_file(follow_symlinks=False):
                mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                if mode & 0o077:
                    os.chmod(entry.path, mode & 0o700)

    def prepare_sandbox(self, path: str) -> None:
        """The endpoint's working directory: created, and the worker user's alone (0700)."""
        os.makedirs(path, exist_ok=True)
        if self.user is not None:
            os.chown(path, self.user.uid, self.user.gid)
            os.chmod(path, 0o700)
