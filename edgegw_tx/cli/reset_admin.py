"""
``edgegw keys reset-admin``: the way back in when ``admin.key`` is lost.

Every other command goes through the management API, which needs a key; this
one cannot, so it opens the store itself, as the user the gateway runs as
(root, usually): whoever may write the data directory, or log in to the
cluster's database, owns the gateway anyway.

Which store: ``--store`` (the syntax of ``twistd edgegw --store``), by default
the SQLite file of the data directory.  A SQLite store belongs to one gateway:
the command refuses while that gateway holds the data dir's lock
(edgegw_tx/datadir_lock.py), and holds the lock itself while it works, so no
gateway starts half-way through.  A PostgreSQL store is a cluster's, shared by
nodes that may well be running: no lock, each node takes the new key and drops
the revoked ones from the change log, as for any key made through the API.

The order keeps a way in at every step: the new admin key is stored first,
then written to ``<data-dir>/admin.key`` (0600), and only then are the other
admin keys revoked.  ``read`` keys are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from datetime import datetime, timezone
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThreadPool

from edgegw_tx.admin.auth import KeyRing, write_key_file
from edgegw_tx.admin.errors import NotFound
from edgegw_tx.datadir_lock import DataDirInUse, DataDirLock
from edgegw_tx.store import StoreRefused, StoreUnavailable
from edgegw_tx.store.interface import IStore
from edgegw_tx.store.sqlite import FILE_NAME as STORE_NAME
from edgegw_tx.store.uri import StoreSpec, check_store, open_store, parse_store

KEY_NAME = "admin.key"


class ResetRefused(Exception):
    """Why the reset did not happen, in one line for the operator; ``usage`` when it is the caller's mistake."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


def store_spec(data_dir: str, store: str | None) -> StoreSpec:
    """
    The store to reset: ``store`` (a ``--store`` value) or the data dir's
    SQLite file, which must exist (``ResetRefused``, usage, otherwise).
    """
    if store is None or not store.strip():
        path = os.path.join(data_dir, STORE_NAME)
        if not os.path.isfile(path):
            raise ResetRefused(
                f"{data_dir} is not a gateway's data directory (no {STORE_NAME} in it);"
                " pass --data-dir (or EDGEGW_DATA_DIR), or --store for a cluster's PostgreSQL store",
                usage=True,
            )
        return StoreSpec("sqlite", path=path, where=path)
    try:
        spec = parse_store(store, data_dir)
    except ValueError as e:
        raise ResetRefused(str(e), usage=True) from None
    if spec.kind == "sqlite" and not os.path.isfile(spec.path):
        raise ResetRefused(f"--store: there is no SQLite store at {spec.path}", usage=True)
    return spec


def _lock(data_dir: str) -> DataDirLock:
    """The data dir's lock, held: a gateway using a SQLite store must not run meanwhile."""
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except DataDirInUse as e:
        who = f"pid {e.pid}" if e.pid is not None else "another edgegw process"
        raise ResetRefused(f"stop the gateway first ({who} holds {data_dir}, lock {e.lock_path})") from None
    except OSError as e:
        raise ResetRefused(f"cannot lock {lock.path}: {e.strerror or e} (run as the gateway's user)") from None
    return lock


def _make_private_directory(path: str) -> bool:
    """Create ``path`` (0700) unless it is there; whether it was created (blocking: run in a thread)."""
    if os.path.isdir(path):
        return False
    os.makedirs(path, mode=0o700)
    os.chmod(path, 0o700)  # the umask may have taken bits off
    return True


@inlineCallbacks
def reset_admin(
    data_dir: str, reactor: Any, say: Callable[[str], None], store: str | None = None
) -> Generator[Deferred[Any], Any, str]:
    """
    Mint a new admin key in the store (``store``, a ``--store`` value, or the
    SQLite file of ``data_dir``), write it to ``<data_dir>/admin.key`` and
    revoke every other admin key.  ``say`` gets what was done, line by line.
    Fires with the key file's path; fails with ``ResetRefused`` when the store
    is missing, in use (SQLite), cannot be opened or reached, or the key file
    cannot be written.
    """
    spec = store_spec(data_dir, store)
    # A shared store's nodes keep running; a SQLite store's gateway must not.
    lock = None if spec.shared or not os.path.isdir(data_dir) else _lock(data_dir)
    opened: IStore | None = None
    try:
        try:
            if spec.shared:
                # A tool must not migrate a schema under the cluster's running nodes.
                yield deferToThreadPool(reactor, reactor.getThreadPool(), check_store, spec, None, True)
            opened = open_store(spec, reactor=reactor)
            yield opened.open()
        except (StoreRefused, StoreUnavailable) as e:  # unreachable, refused, too new: one line already
            raise ResetRefused(str(e)) from None
        except Exception as e:  # sqlite3's errors: not writable, not a database ...
            raise ResetRefused(f"cannot open the store {spec.where}: {e}") from None
        key_path: str = yield _reset(opened, data_dir, reactor, say)
        if spec.shared:
            say(
                f"the store {spec.where} is shared: every node of the cluster takes the new key and"
                " drops the revoked ones within seconds (through the store's change log); none needs a restart"
            )
        return key_path
    finally:
        if opened is not None:
            opened.close()
        if lock is not None:
            lock.release()


@inlineCallbacks
def _reset(
    store: IStore, data_dir: str, reactor: Any, say: Callable[[str], None]
) -> Generator[Deferred[Any], Any, str]:
    """The three steps on an opened store: store the new key, write its file, revoke the other admin keys."""
    keys = KeyRing(store, reactor=reactor)
    try:
        before = yield keys.load()
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        record, plaintext = yield keys.create(f"reset-admin {stamp}", "admin")
    except StoreUnavailable as e:
        raise ResetRefused(f"{e}; no key file was written, the old admin keys still work") from None

    key_path = os.path.join(data_dir, KEY_NAME)
    try:
        created = yield deferToThreadPool(reactor, reactor.getThreadPool(), _make_private_directory, data_dir)
        yield write_key_file(reactor, key_path, plaintext)
    except OSError as e:
        # No file, no key: the old admin keys stay valid.
        problem = f"cannot write {key_path}: {e.strerror or e}"
        try:
            yield keys.revoke(record["id"])
        except StoreUnavailable as lost:
            raise ResetRefused(
                f"{problem}; the old admin keys still work ({lost}, so the unused new key"
                f" {record['id']} is still stored: revoke it)"
            ) from None
        raise ResetRefused(f"{problem}; nothing was changed") from None
    if created:
        say(f"created {data_dir} (mode 0700)")
    say(f"new admin key '{record['name']}' (id {record['id']}) written to {key_path} (mode 0600)")

    old = [k for k in before if k["scope"] == "admin"]
    for done, key in enumerate(old):
        try:
            yield keys.revoke(key["id"])
        except NotFound:  # another operator of the cluster was quicker
            say(f"admin key '{key['name']}' (id {key['id']}) was already revoked")
            continue
        except StoreUnavailable as e:
            left = ", ".join(f"'{k['name']}' (id {k['id']})" for k in old[done:])
            raise ResetRefused(
                f"{e}; the new key in {key_path} works, but these admin keys were not revoked: {left};"
                " run reset-admin again"
            ) from None
        say(f"revoked admin key '{key['name']}' (id {key['id']})")
    return key_path
