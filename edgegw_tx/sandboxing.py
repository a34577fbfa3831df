"""
What the build sandbox (``build/sandbox.py``) and the worker sandbox
(``workers/isolation.py``) share: the host's system directories shown
read-only in bubblewrap's empty root, and a user given as a name or numbers.
Both planes use it and neither imports the other.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable, Iterable

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
"""What a program of the host needs to run: binaries and shared libraries."""


def system_binds(
    dirs: Iterable[str] = SYSTEM_DIRS,
    lexists: Callable[[str], bool] = os.path.lexists,
    islink: Callable[[str], bool] = os.path.islink,
    readlink: Callable[[str], str] = os.readlink,
) -> list[str]:
    """
    bwrap options showing ``dirs`` read-only as the host has them: a symlink
    (Debian's merged /usr: ``/lib -> usr/lib``) is recreated as a symlink, a
    directory is bound, a missing one left out.
    """
    options: list[str] = []
    for path in dirs:
        if not lexists(path):
            continue
        if islink(path):
            options += ["--symlink", readlink(path), path]
        else:
            options += ["--ro-bind", path, path]
    return options


def user_ids(spec: str) -> tuple[str, int, int]:
    """
    ``spec`` as (name, uid, gid): a user name (its primary group), or ``uid`` /
    ``uid:gid`` numbers, which need no entry in /etc/passwd (the name is then
    the passwd entry's, or the number).

    :raises KeyError: an unknown user or group name.
    """
    name, _, group = str(spec).partition(":")
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
    return name, uid, gid
