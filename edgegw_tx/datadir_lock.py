"""
One gateway per data directory.

Two gateways on one data directory would both run every endpoint, and a delete
on one would leave the other serving it.  So whoever opens the store first
holds an exclusive ``flock`` on ``<data-dir>/edgegw.lock`` for as long as it
runs, with its pid written in the file; a second one finds the lock taken and
refuses to start, naming that pid.  ``edgegw keys reset-admin`` takes the same
lock, so it never writes to a store a running gateway holds.

Why ``flock``: the kernel drops the lock when the holder's last descriptor
closes, however it ends (even ``kill -9``), so there is never a stale lock to
clean up, and the pid in the file is only read while the lock is held.  The
file is never deleted: removing it would let a newcomer lock a fresh file while
the holder still locks the unlinked one.  The descriptor is opened with
``O_CLOEXEC``, so no worker, cargo or data-plane process inherits it (Twisted's
``spawnProcess`` closes it in the child anyway), and with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import fcntl
import os

LOCK_NAME = "edgegw.lock"
"""The lock file's name in the data directory."""


class DataDirInUse(Exception):
    """Another process holds the data directory; ``str()`` is the one-line message for the operator."""

    def __init__(self, data_dir: str, lock_path: str, pid: int | None) -> None:
        holder = f"edgegw pid {pid}" if pid is not None else "another edgegw process"
        super().__init__(f"data dir {data_dir} is in use by {holder} (lock {lock_path})")
        self.data_dir = data_dir
        self.lock_path = lock_path
        self.pid = pid


class DataDirLock:
    """The exclusive lock on one data directory, held from ``acquire`` to ``release``."""

    def __init__(self, data_dir: str) -> None:
        """``data_dir`` as the operator gave it: messages name it that way."""
        self.data_dir = data_dir
        self.path = os.path.join(data_dir, LOCK_NAME)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """
        Take the lock (creating the data directory and the file, mode 0600, if
        needed) and write this process's pid in it; at once, never waiting.
        Raises ``DataDirInUse`` naming the holder's pid when another process
        holds it, ``OSError`` when the directory or file cannot be made.
        """
        if self._fd is not None:
            return
        os.makedirs(self.data_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(self.data_dir, self.path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.record_pid()

    def record_pid(self) -> None:
        """
        Write this process's pid in the held lock file: again after twistd
        daemonised (the lock passed to the forked process, the pid changed).
        """
        if self._fd is None:
            raise RuntimeError("the data dir lock is not held")
        text = f"{os.getpid()}\n".encode("ascii")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)

    def release(self) -> None:
        """Let the lock go (closing the file); the file stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    """The pid the holder wrote, or None (not written yet, or not a pid)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        pid = int(text)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return pid if pid > 0 else None
