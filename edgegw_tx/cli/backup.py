"""
``edgegw backup FILE`` and ``edgegw restore FILE``: a gateway's data
directory in one file, and back (docs/operations.md).

A backup is a tar file (gzip-compressed when FILE ends in ``.gz`` or
``.tgz``) holding what a gateway cannot rebuild:

* the store (``edgegw.sqlite3``): endpoints and their code, versions,
  services, bindings, domains, collections, their traffic policies, API
  keys and consumers' keys (their hashes).  Copied
  with SQLite's online backup API, so the copy is one consistent state of the
  store while the gateway goes on serving and writing;
* ``admin.key``, the admin key's file;
* ``artifacts/``, the compiled handlers, so a restored gateway starts its
  endpoints without compiling.  An artifact is immutable and complete once its
  binary is there; the ones being written are left out.  They are copied
  after the store, so every version the store's copy names is in the backup;
* ``services/``, the files of the ``sqlite`` and ``storage`` services: a
  SQLite database through the backup API, the rest as they are (a storage
  object is replaced by a rename, never rewritten in place), without the
  objects still being written (a storage folder's ``tmp/``);
* ``stats-history.json``, the dashboard's history.

Left out, because the gateway makes them again: the cargo projects and target
(``build/``), the workers' working directories (``sandbox/``), the lock, a
cluster node's ``last-known.sqlite3``.  A store on PostgreSQL is not in the
data directory: the command refuses and says to use ``pg_dump``.

The first member, ``edgegw-backup.json``, says what the file is: its format,
the store's schema (the number of its last migration) and what it holds.
``restore`` refuses a backup of a newer schema than this edgegw knows, and a
data directory that is not empty; it extracts into a folder inside the data
directory and moves the result into place only once all of it is there, with
the data directory's lock held so that no gateway starts meanwhile.

Both are blocking file work, run in the reactor's thread pool; Ctrl-C stops
them between files and removes what was half written.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from edgegw_tx.admin.history import HISTORY_FILE
from edgegw_tx.cli.commands import FAILED, INTERRUPTED, OK, USAGE, Console
from edgegw_tx.datadir_lock import LOCK_NAME, DataDirInUse, DataDirLock
from edgegw_tx.store.sqlite import FILE_NAME as STORE_NAME
from edgegw_tx.store.sqlite import SCHEMA_VERSION

__all__ = [
    "FORMAT",
    "MANIFEST",
    "BackupFailed",
    "Summary",
    "add_parsers",
    "contents",
    "make_backup",
    "restore_backup",
    "run_command",
]

#: The version of the backup file's layout; ``restore`` reads this one and older.
FORMAT = 1

#: The backup's first member: what the file is and holds.
MANIFEST = "edgegw-backup.json"

ARTIFACTS = "artifacts"
SERVICES = "services"
BINARY = "handler"  # an artifact is whole once its binary is there (build/artifacts.py)



def _key_name() -> str:
    """The admin key file's name (imported here: its module is slow to load, and ``edgegw ls`` loads this one)."""
    from edgegw_tx.cli.reset_admin import KEY_NAME

    return KEY_NAME


def contents() -> tuple[str, ...]:
    """The names a backup may hold at its top, besides the manifest."""
    return (STORE_NAME, _key_name(), HISTORY_FILE, ARTIFACTS, SERVICES)

#: The commands of this module (run without the management API).
COMMANDS = ("backup", "restore")

_SQLITE_HEADER = b"SQLite format 3\x00"
_SIDECARS = ("-wal", "-shm", "-journal")
_BUSY_TIMEOUT = 30.0  # seconds a copy waits for the gateway's write to end


class BackupFailed(Exception):
    """Why a backup or a restore did not happen, in one line; ``usage`` when it is the caller's mistake."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


class _Stopped(Exception):
    """Ctrl-C: the work stopped between two files."""


@dataclass
class Summary:
    """What a backup holds, or what a restore put back."""

    path: str
    schema: int
    endpoints: int
    artifacts: int
    files: int
    size: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)


# --- backup -------------------------------------------------------------------


def make_backup(data_dir: str, target: str, stop: threading.Event | None = None) -> Summary:
    """
    Write the backup of ``data_dir`` to ``target`` (blocking: run it in a
    thread).  The file is written under a temporary name beside ``target``
    (mode 0600: it holds the admin key) and renamed when complete, so
    ``target`` is a whole backup or untouched.  ``BackupFailed`` when the
    data directory holds no SQLite store or a file cannot be read or written.
    """
    started = time.monotonic()
    stop = stop or threading.Event()
    store = os.path.join(data_dir, STORE_NAME)
    if not os.path.isfile(store):
        raise BackupFailed(
            f"{data_dir} holds no store ({STORE_NAME}): pass the gateway's --data-dir; a gateway with"
            " a PostgreSQL store (--store postgresql://...) is backed up with pg_dump (docs/operations.md)",
            usage=True,
        )
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise BackupFailed(f"cannot write {target}: there is no folder {folder}", usage=True)
    compressed = target.endswith((".gz", ".tgz"))
    try:
        fd, partial = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".partial", dir=folder)
    except OSError as e:
        raise BackupFailed(f"cannot write in {folder}: {e.strerror or e}") from None
    try:
        with tempfile.TemporaryDirectory(prefix=".edgegw-backup-", dir=folder) as scratch:
            with os.fdopen(fd, "wb") as out:
                tar = tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) if compressed else tarfile.open(
                    fileobj=out, mode="w"
                )
                with tar:
                    summary = _write(tar, data_dir, scratch, stop)
                out.flush()
                os.fsync(out.fileno())
        os.replace(partial, target)
    except BaseException as e:
        _unlink(partial)
        if isinstance(e, _Stopped):
            raise
        if isinstance(e, OSError):
            where = f" {e.filename}" if e.filename else ""
            raise BackupFailed(f"backup failed:{where} {e.strerror or e}") from None
        if isinstance(e, sqlite3.Error):
            raise BackupFailed(f"backup failed: cannot copy a SQLite database: {e}") from None
        raise
    summary.path = target
    summary.size = os.path.getsize(target)
    summary.seconds = time.monotonic() - started
    return summary


def _write(tar: tarfile.TarFile, data_dir: str, scratch: str, stop: threading.Event) -> Summary:
    """The members, manifest first: the store's copy decides what the manifest says."""
    store_copy = os.path.join(scratch, STORE_NAME)
    _copy_sqlite(os.path.join(data_dir, STORE_NAME), store_copy)
    schema, endpoints = _describe_store(store_copy)
    members: list[tuple[str, Callable[[], None]]] = []
    skipped: list[str] = []

    def add_file(source: str, name: str) -> Callable[[], None]:
        return lambda: _add_file(tar, source, name, skipped)

    members.append((STORE_NAME, lambda: _add_file(tar, store_copy, STORE_NAME, skipped, mode=0o600)))
    for name in (_key_name(), HISTORY_FILE):
        if os.path.isfile(os.path.join(data_dir, name)):
            members.append((name, add_file(os.path.join(data_dir, name), name)))
    artifacts = 0
    for digest, files in _artifacts(os.path.join(data_dir, ARTIFACTS)):
        artifacts += 1
        for source in files:
            name = f"{ARTIFACTS}/{digest}/{os.path.basename(source)}"
            members.append((name, add_file(source, name)))
    for source, name, is_sqlite in _service_files(data_dir):
        if is_sqlite:
            copy = os.path.join(scratch, "services-" + str(len(members)))
            members.append((name, _sqlite_member(tar, source, copy, name, skipped)))
        else:
            members.append((name, add_file(source, name)))

    manifest = {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "schema": schema,
        "endpoints": endpoints,
        "artifacts": artifacts,
        "contents": sorted({name.split("/")[0] for name, _ in members}),
    }
    _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n", 0o600)
    for _, add in members:
        if stop.is_set():
            raise _Stopped()
        add()
    return Summary("", schema, endpoints, artifacts, len(members) - len(skipped), skipped=skipped)


def _copy_sqlite(source: str, copy: str) -> None:
    """One consistent state of the database ``source``, written to ``copy`` (SQLite's online backup API)."""
    uri = "file:" + quote(os.path.abspath(source)) + "?mode=ro"
    src = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT)
    try:
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)  # all pages in one step: one read transaction, one state
            # A file that stands alone: no write-ahead log to go with it.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def _describe_store(path: str) -> tuple[int, int]:
    """The schema (number of the last migration) and the number of endpoints of a store's copy."""
    connection = sqlite3.connect(path)
    try:
        try:
            (schema,) = connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
            (endpoints,) = connection.execute("SELECT COUNT(*) FROM endpoints").fetchone()
        except sqlite3.DatabaseError as e:
            raise BackupFailed(f"{STORE_NAME} is not an edgegw store ({e})") from None
    finally:
        connection.close()
    return int(schema), int(endpoints)


def _artifacts(root: str) -> Iterator[tuple[str, list[str]]]:
    """Each whole artifact: its digest and files, without the temporary ones of a build being stored."""
    try:
        digests = sorted(os.listdir(root))
    except FileNotFoundError:
        return
    for digest in digests:
        folder = os.path.join(root, digest)
        if not os.path.isfile(os.path.join(folder, BINARY)):
            continue  # being written, or not an artifact
        try:
            names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
        except FileNotFoundError:
            continue  # removed meanwhile
        yield digest, [os.path.join(folder, n) for n in names]


def _service_files(data_dir: str) -> Iterator[tuple[str, str, bool]]:
    """
    The services' files: (path, name in the backup, whether it is a SQLite
    database).  A database's journal files are not copied (the backup API
    reads through them); nor is a storage folder's ``tmp/`` (objects still
    being written).
    """
    root = os.path.join(data_dir, SERVICES)
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if "objects" in dirs and "tmp" in dirs:
            dirs.remove("tmp")
        databases = {name for name in files if _is_sqlite(os.path.join(folder, name))}
        for name in sorted(files):
            if any(name.endswith(s) and name[: -len(s)] in databases for s in _SIDECARS):
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, data_dir).replace(os.sep, "/")
            yield path, relative, name in databases


def _is_sqlite(path: str) -> bool:
    """Whether the file begins like a SQLite database."""
    try:
        with open(path, "rb") as f:
            return f.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    except OSError:
        return False


def _sqlite_member(tar: tarfile.TarFile, source: str, copy: str, name: str, skipped: list[str]) -> Callable[[], None]:
    """Adding a service's database: a consistent copy of it, then that copy."""

    def add() -> None:
        try:
            _copy_sqlite(source, copy)
        except sqlite3.OperationalError:
            if os.path.exists(source):
                raise
            skipped.append(name)  # the service's file was deleted meanwhile
            return
        _add_file(tar, copy, name, skipped, mode=stat.S_IMODE(os.stat(source).st_mode))
        os.unlink(copy)

    return add


def _add_file(tar: tarfile.TarFile, source: str, name: str, skipped: list[str], mode: int | None = None) -> None:
    """
    ``source`` as the member ``name``: its size taken from the open file, so a
    file replaced by a rename meanwhile is copied whole; one deleted meanwhile
    is left out.
    """
    try:
        f = open(source, "rb")
    except FileNotFoundError:
        skipped.append(name)
        return
    with f:
        info = tar.gettarinfo(arcname=name, fileobj=f)
        if not info.isfile():
            skipped.append(name)
            return
        if mode is not None:
            info.mode = mode
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, f)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    """A member from memory."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _unlink(path: str) -> None:
    """Remove ``path`` if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- restore ------------------------------------------------------------------


def restore_backup(source: str, data_dir: str, stop: threading.Event | None = None) -> Summary:
    """
    Put the backup ``source`` into ``data_dir``, which must be empty or not
    exist yet (blocking: run it in a thread).  ``BackupFailed`` when it is not
    empty, is in use, or ``source`` is not a backup this edgegw can restore;
    then ``data_dir`` is left as it was (created, at most).
    """
    started = time.monotonic()
    stop = stop or threading.Event()
    _check_empty(data_dir)
    try:
        tar = tarfile.open(source, mode="r:*")
    except FileNotFoundError:
        raise BackupFailed(f"there is no file {source}", usage=True) from None
    except (tarfile.TarError, OSError) as e:
        raise BackupFailed(f"{source} is not an edgegw backup ({e})", usage=True) from None
    with tar:
        manifest = _read_manifest(tar, source)
        created = not os.path.isdir(data_dir)
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        lock = DataDirLock(data_dir)
        try:
            lock.acquire()
        except DataDirInUse as e:
            raise BackupFailed(f"{e}: restore into a stopped gateway's data directory") from None
        try:
            _check_empty(data_dir, LOCK_NAME)
            summary = _extract(tar, source, data_dir, manifest, stop)
        except BaseException:
            lock.release()
            if created:
                shutil.rmtree(data_dir, ignore_errors=True)
            raise
        lock.release()
    summary.size = os.path.getsize(source)
    summary.seconds = time.monotonic() - started
    return summary


def _check_empty(data_dir: str, *allowed: str) -> None:
    """``BackupFailed`` unless ``data_dir`` is missing or holds nothing but ``allowed``."""
    try:
        names = set(os.listdir(data_dir)) - set(allowed)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise BackupFailed(f"{data_dir} is not a directory", usage=True) from None
    except OSError as e:
        raise BackupFailed(f"cannot read {data_dir}: {e.strerror or e}") from None
    if names:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise BackupFailed(
            f"{data_dir} is not empty ({shown}): restore into a new or empty data directory", usage=True
        )


def _read_manifest(tar: tarfile.TarFile, source: str) -> dict[str, Any]:
    """The first member's document, checked: a backup of a format and schema this edgegw reads."""
    try:
        first = tar.next()
        reader = tar.extractfile(first) if first is not None and first.name == MANIFEST else None
        manifest = json.loads(reader.read()) if reader is not None else None
    except (tarfile.TarError, OSError, ValueError) as e:
        raise BackupFailed(f"{source} is not an edgegw backup ({e})", usage=True) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format"), int):
        raise BackupFailed(f"{source} is not an edgegw backup (no {MANIFEST} at its start)", usage=True)
    if manifest["format"] > FORMAT:
        raise BackupFailed(
            f"{source} was written by a newer edgegw (backup format {manifest['format']}, this one reads"
            f" {FORMAT}): restore it with that version or a later one"
        )
    schema = manifest.get("schema")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise BackupFailed(
            f"{source} holds a store of a newer edgegw (schema {schema}, this one knows up to"
            f" {SCHEMA_VERSION}): upgrade edgegw, then restore"
        )
    return manifest


def _extract(
    tar: tarfile.TarFile, source: str, data_dir: str, manifest: dict[str, Any], stop: threading.Event
) -> Summary:
    """
    Every member into a folder inside ``data_dir``, then each top-level entry
    renamed into place; nothing is in place until all of it was read.
    """
    allowed = contents()
    staging = tempfile.mkdtemp(prefix=".restore-", dir=data_dir)
    files = 0
    try:
        for member in tar:
            if stop.is_set():
                raise _Stopped()
            if member.name == MANIFEST:
                continue  # read already; not part of the data directory
            top = member.name.split("/")[0]
            if top not in allowed or not (member.isfile() or member.isdir()):
                raise BackupFailed(f"{source} is not an edgegw backup (unexpected member {member.name!r})")
            try:
                tar.extract(member, staging, filter="data")
            except tarfile.FilterError as e:
                raise BackupFailed(f"{source} is not an edgegw backup ({e})") from None
            files += member.isfile()
        if not os.path.isfile(os.path.join(staging, STORE_NAME)):
            raise BackupFailed(f"{source} is not an edgegw backup (no {STORE_NAME} in it)")
        for name in sorted(os.listdir(staging)):
            path = os.path.join(staging, name)
            os.chmod(path, 0o700 if os.path.isdir(path) else 0o600)
            os.replace(path, os.path.join(data_dir, name))
    except (tarfile.TarError, EOFError) as e:
        raise BackupFailed(f"{source} is damaged ({e}); nothing was restored") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    schema = manifest["schema"]
    return Summary(
        data_dir, schema, int(manifest.get("endpoints", 0)), int(manifest.get("artifacts", 0)), files
    )


# --- the commands -------------------------------------------------------------


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """``backup`` and ``restore`` in the command table of ``edgegw`` (cli/commands.py)."""
    backup = commands.add_parser(
        "backup",
        parents=[common],
        help="write the data dir's store, keys, compiled handlers and service files to FILE",
        description="A consistent snapshot while the gateway runs (SQLite's online backup API); "
        "run it as the gateway's user. FILE is a tar file, compressed when it ends in .gz or "
        "tgz, mode 0600 (it holds the admin key); an existing FILE is replaced once the new one "
        "is complete. A PostgreSQL store is backed up with pg_dump (docs/operations.md).",
    )
    backup.add_argument("file", metavar="FILE")
    restore = commands.add_parser(
        "restore",
        parents=[common],
        help="put a backup into a new or empty data dir (then start the gateway on it)",
        description="Refuses a data dir that is not empty, and a backup of a newer edgegw. Run it "
        "as the gateway's user: the files are created as the user who runs it.",
    )
    restore.add_argument("file", metavar="FILE")


def run_command(options: argparse.Namespace, data_dir: str, reactor: Any, console: Console) -> Deferred[int]:
    """
    ``backup`` or ``restore`` on ``data_dir``, in the reactor's thread pool;
    fires with the exit code.  Ctrl-C (the reactor's shutdown) stops the work
    between two files.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    stop = threading.Event()
    pool = reactor.getThreadPool()
    d: Deferred[int]
    if options.command == "backup":
        d = deferToThreadPool(reactor, pool, make_backup, data_dir, options.file, stop).addCallback(
            _told_backup, console
        )
    else:
        d = deferToThreadPool(reactor, pool, restore_backup, options.file, data_dir, stop).addCallback(
            _told_restore, console
        )
    if hasattr(reactor, "addSystemEventTrigger"):
        reactor.addSystemEventTrigger("before", "shutdown", stop.set)

    def failed(failure: Failure) -> int:
        if failure.check(_Stopped):
            console.err("interrupted")
            return INTERRUPTED
        failure.trap(BackupFailed)
        error = failure.value
        assert isinstance(error, BackupFailed), "trapped above"
        console.error(error.message)
        return USAGE if error.usage else FAILED

    return d.addErrback(failed)


def _told_backup(summary: Summary, console: Console) -> int:
    """The backup's one line."""
    console.out(
        f"backed up {summary.endpoints} endpoints, {summary.artifacts} compiled handlers and"
        f" {summary.files} files (store schema {summary.schema}) to {summary.path}:"
        f" {_size(summary.size)} in {summary.seconds:.1f} s"
    )
    for name in summary.skipped:
        console.warning(f"{name} was deleted during the backup and is not in it")
    return OK


def _told_restore(summary: Summary, console: Console) -> int:
    """The restore's lines: what is where, and what to do next."""
    console.out(
        f"restored {summary.endpoints} endpoints, {summary.artifacts} compiled handlers and"
        f" {summary.files} files (store schema {summary.schema}) into {summary.path}"
    )
    console.out(f"start the gateway with --data-dir {summary.path}: it runs the endpoints that were running")
    return OK


def _size(size: int) -> str:
    """A byte count for people."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
