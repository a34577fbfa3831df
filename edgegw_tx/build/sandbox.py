"""
The sandbox cargo and rustc run in (docs/isolation.md, "Builds").

Handler code is hostile even before it runs: ``include_str!``, ``include!``
and ``#[path]`` make rustc read any file the compiler can read, and
``include_bytes!("/dev/zero")`` makes it allocate without end.  So every build
runs as::

    bwrap <only the build's inputs> --unshare-pid --unshare-net ... --
      prlimit --as=... --cpu=... --fsize=... --nproc=... --
        setpriv --no-new-privs --reuid=U --regid=G --clear-groups ... --
          <sysroot>/bin/cargo build ...

  - ``bwrap`` (Debian's bubblewrap) runs as root, so it needs no user
    namespace: a new mount namespace shows ``/usr`` and the toolchain
    read-only, the build's own project read-only (its ``Cargo.lock``
    writable), the shared target directory and the build's cargo home
    writable, a fresh ``/proc`` of a new pid namespace, a minimal ``/dev`` and
    a private ``/tmp``; of ``/etc`` only ``/etc/alternatives`` (``cc`` is a
    link through it); no network (a namespace with only loopback);
  - ``prlimit`` (util-linux): ``BUILD_LIMITS``, soft = hard, for cargo, rustc,
    the linker and build scripts alike;
  - ``setpriv`` (util-linux): the build user, never root, no supplementary
    groups, no capabilities, ``no_new_privs``.

Not root, the gateway cannot switch users: bwrap then makes an unprivileged
user namespace (``--unshare-user``) and the build keeps the gateway's uid.

This module only says *how* to run a command in the sandbox (``argv``) and
prepares the directories the build user writes (``prepare``); ``Builder``
decides what is visible.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..hostcommands import TOOL_PATH, locate
from ..sandboxing import SYSTEM_DIRS, system_binds, user_ids
from .cargo import BuildError

TOOLS = ("bwrap", "prlimit", "setpriv")

# Outside the systemd dynamic range 61184-65519 that per-endpoint worker uids
# come from (--worker-uids), and not nobody: a build never shares a uid with a
# worker, so a worker cannot signal, trace or read a build, nor write what it writes.
DEFAULT_BUILD_USER = "61000"

_MiB = 1024 * 1024
_GiB = 1024 * _MiB
# prlimit option -> (value, what it bounds): the one source for the argv and
# docs/isolation.md's table (a test compares them).  2 GiB of address space:
# the cold build of every crate in project.KNOWN_CRATES passes with 1 GiB and
# fails in syn with 512 MiB (rustc 1.95, measured), so 2 GiB leaves room for
# larger crates; /dev/zero stops there.
BUILD_LIMITS: Mapping[str, tuple[int, str]] = {
    "--as": (2 * _GiB, "address space of each process (RLIMIT_AS)"),
    "--cpu": (600, "CPU seconds of each process (RLIMIT_CPU)"),
    "--fsize": (1 * _GiB, "largest file written (RLIMIT_FSIZE)"),
    "--nproc": (1024, "processes and threads of the build user (RLIMIT_NPROC)"),
}
# The build's private /tmp (a tmpfs in memory): the linker's temporary files.
TMP_SIZE = 1 * _GiB

# System directories shown read-only: a symlink on the host (merged /usr:
# /lib -> usr/lib) is made a symlink, a directory is bound.
# The only part of /etc the toolchain needs: Debian's /usr/bin/cc is a link
# through /etc/alternatives.
ETC_FOR_BUILDS = ("/etc/alternatives",)
# What `cargo fetch` (crates-io only, with network, no code runs) needs
# beyond that: name resolution and the CA certificates.
ETC_FOR_FETCH = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates")
# Places bwrap makes itself; their ancestors need no --dir.
_MADE = ("/", "/proc", "/dev", "/tmp")


class SandboxError(BuildError):
    """Builds cannot be sandboxed as asked: a tool is missing or the build user is unusable."""


@dataclass(frozen=True)
class BuildUser:
    """The unprivileged user cargo and rustc run as."""

    uid: int
    gid: int

    def __str__(self) -> str:
        return f"uid {self.uid}, gid {self.gid}"


def find_tools(search_path: str | None = None) -> dict[str, str]:
    """
    The absolute paths of ``bwrap``, ``prlimit`` and ``setpriv`` in
    ``search_path`` (default ``TOOL_PATH``).

    :raises SandboxError: naming the missing ones and their packages.
    """
    search_path = TOOL_PATH if search_path is None else search_path
    found, missing = locate(TOOLS, search_path)
    if missing:
        raise SandboxError(
            "sandboxed builds need {} (bwrap: Debian's bubblewrap; prlimit, setpriv: util-linux),"
            " not found in {}: run tools/setup-sandbox or apt-get install bubblewrap util-linux".format(
                ", ".join(missing), search_path
            )
        )
    return found


def resolve_build_user(spec: str) -> BuildUser:
    """
    ``--build-user`` as numbers: a user name (its primary group), ``uid`` or
    ``uid:gid`` (numbers need no entry in /etc/passwd).

    :raises SandboxError: unknown, malformed, or root.
    """
    try:
        _, uid, gid = user_ids(spec)
    except KeyError:
        raise SandboxError(f"build user {spec!r}: no such user or group (give a name, uid or uid:gid)")
    if uid == 0 or gid == 0:
        raise SandboxError(f"build user {spec!r} is root: builds need an unprivileged user")
    return BuildUser(uid, gid)


def limit_arguments(limits: Mapping[str, tuple[int, str]] = BUILD_LIMITS) -> list[str]:
    """prlimit options, soft = hard so nothing in the build can raise them again."""
    return [f"{option}={value}:{value}" for option, (value, _) in limits.items()]


def _ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/a", "/a/b"]``."""
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


class BuildSandbox:
    """
    How this gateway sandboxes builds: the tools, and the build user (None:
    not root, so bwrap makes a user namespace and the gateway's uid stays).
    """

    def __init__(
        self,
        tools: Mapping[str, str],
        user: BuildUser | None,
        limits: Mapping[str, tuple[int, str]] = BUILD_LIMITS,
        exists: Callable[[str], bool] = os.path.lexists,
    ) -> None:
        self.tools = dict(tools)
        self.user = user
        self.limits = dict(limits)
        self._exists = exists

    @classmethod
    def for_gateway(cls, build_user: str = DEFAULT_BUILD_USER) -> BuildSandbox:
        """
        Find the tools; as root, resolve ``build_user`` (``--build-user``).

        :raises SandboxError: a tool is missing or the user is root/unknown.
        """
        tools = find_tools()
        user = resolve_build_user(build_user)
        return cls(tools, user if os.geteuid() == 0 else None)

    def describe(self) -> str:
        """One line for the log at start."""
        who = f"as {self.user}" if self.user else "as the gateway's user in a user namespace"
        return f"builds run sandboxed (bwrap, no network, rlimits) {who}"

    def owner(self) -> tuple[int, int] | None:
        """Who must own what builds write; None when builds keep the gateway's uid."""
        return None if self.user is None else (self.user.uid, self.user.gid)

    def argv(
        self,
        command: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        read_only: Sequence[str] = (),
        writable: Sequence[str] = (),
        network: bool = False,
    ) -> list[str]:
        """
        The command line running ``command`` in the sandbox.

        Only ``read_only`` and ``writable`` paths (absolute, each shown at its
        own path so cargo's paths mean the same inside and out; later ones may
        lie inside earlier ones) and the system directories are visible.  The
        environment is exactly ``env``.  ``network`` keeps the host's network
        and its resolver files: only for ``cargo fetch``, which runs no code.
        """
        options = [self.tools["bwrap"], "--clearenv"]
        for name, value in env.items():
            options += ["--setenv", name, value]
        options += system_binds()
        options += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(TMP_SIZE), "--tmpfs", "/tmp"]
        mounts: list[tuple[str, str]] = [
            ("--ro-bind", p) for p in ETC_FOR_BUILDS + (ETC_FOR_FETCH if network else ()) if self._exists(p)
        ]
        mounts += [("--ro-bind", p) for p in read_only] + [("--bind", p) for p in writable]
        made: set[str] = set()
        bound: list[str] = []
        for kind, path in mounts:
            # bwrap makes missing parents 0700 (root's): the build user could
            # not pass them, so each is made 0755 first.
            for parent in _ancestors(path):
                if parent in made or _under(parent, bound) or _under(parent, SYSTEM_DIRS) or parent in _MADE:
                    continue
                options += ["--perms", "0755", "--dir", parent]
                made.add(parent)
            options += [kind, path, path]
            bound.append(path)
        options += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not network:
            options.append("--unshare-net")
        if self.user is None:
            options.append("--unshare-user")
        options += ["--die-with-parent", "--new-session", "--chdir", cwd, "--"]
        options += [self.tools["prlimit"], *limit_arguments(self.limits), "--"]
        options += [self.tools["setpriv"], "--no-new-privs"]
        if self.user is not None:
            options += [
                f"--reuid={self.user.uid}",
                f"--regid={self.user.gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ]
        return options + ["--", *command]

    def prepare(self, writable: Iterable[str], files: Iterable[str] = ()) -> None:
        """
        Make ``writable`` directories (mode 0700: no worker reads them) and
        their contents, and ``files`` (created empty), the build user's.  Blocking
        (a walk of the target directory the first time): callers use a thread
        for directories.  Nothing is followed: a symlink the build planted is
        re-owned itself, never its target.
        """
        owner = self.owner()
        for directory in writable:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
            if owner is None:
                continue
            for root, dirs, names in os.walk(directory):
                for name in dirs + names:
                    _chown(os.path.join(root, name), owner)
            _chown(directory, owner)
        for path in files:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                if owner is not None:
                    os.fchown(fd, *owner)
            finally:
                os.close(fd)


def _chown(path: str, owner: tuple[int, int]) -> None:
    """
    Give ``path`` to ``owner``. A file gone meanwhile needs no owner: another
    build sharing the target dir (a cluster's nodes, the test suite) deletes
    its outputs while this one walks the directory.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if (st.st_uid, st.st_gid) != owner:
        os.lchown(path, *owner)
