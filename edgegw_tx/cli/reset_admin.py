"""
``edgegw keys reset-admin``: the way back in when ``admin.key`` is lost.

Every other command goes through the management API, which needs a key; this
one cannot, so it works on the data directory itself, as the user the gateway
runs as (root, usually): whoever may write the data directory owns the gateway
anyway.  It opens the store directly, so it refuses while a gateway holds the
data dir's lock (edgegw_tx/datadir_lock.py), and holds that lock itself while
it works, so no gateway starts half-way through.

The order keeps a way in at every step: the new admin key is stored first,
then written to ``<data-dir>/admin.key`` (0600), and only then are the other
admin keys revoked.  ``read`` keys are left alone.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from collections.abc import Callable, Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from edgegw_tx.admin.auth import KeyRing, write_key_file
from edgegw_tx.datadir_lock import DataDirInUse, DataDirLock
from edgegw_tx.store import SQLiteStore, StoreRefused
from edgegw_tx.store.sqlite import FILE_NAME as STORE_NAME

KEY_NAME = "admin.key"


class ResetRefused(Exception):
    """Why the reset did not happen, in one line for the operator; ``usage`` when it is the caller's mistake."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


@inlineCallbacks
def reset_admin(data_dir: str, reactor: Any, say: Callable[[str], None]) -> Generator[Deferred[Any], Any, str]:
    """
    Mint a new admin key for the gateway of ``data_dir``, write it to its
    ``admin.key`` and revoke every other admin key.  ``say`` gets what was
    done, line by line.  Fires with the key file's path; fails with
    ``ResetRefused`` when the data dir is not a gateway's, is in use, or cannot
    be written.
    """
    store_path = os.path.join(data_dir, STORE_NAME)
    if not os.path.isfile(store_path):
        raise ResetRefused(
            f"{data_dir} is not a gateway's data directory (no {STORE_NAME} in it);"
            " pass --data-dir (or EDGEGW_DATA_DIR)",
            usage=True,
        )
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except DataDirInUse as e:
        who = f"pid {e.pid}" if e.pid is not None else "another edgegw process"
        raise ResetRefused(f"stop the gateway first ({who} holds {data_dir}, lock {e.lock_path})") from None
    except OSError as e:
        raise ResetRefused(f"cannot lock {lock.path}: {e.strerror or e} (run as the gateway's user)") from None
    store = SQLiteStore(store_path, reactor=reactor)
    try:
        try:
            yield store.open()
        except StoreRefused as e:  # a newer edgegw's store, a failed migration: one line already
            raise ResetRefused(str(e)) from None
        except Exception as e:  # sqlite3's errors: not writable, not a database ...
            raise ResetRefused(f"cannot open the store {store_path}: {e}") from None
        keys = KeyRing(store, reactor=reactor)
        before = yield keys.load()
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        record, plaintext = yield keys.create(f"reset-admin {stamp}", "admin")
        key_path = os.path.join(data_dir, KEY_NAME)
        try:
            yield write_key_file(reactor, key_path, plaintext)
        except OSError as e:
            # No file, no key: the old admin keys stay valid.
            yield keys.revoke(record["id"])
            raise ResetRefused(f"cannot write {key_path}: {e.strerror or e}; nothing was changed") from None
        say(f"new admin key '{record['name']}' (id {record['id']}) written to {key_path} (mode 0600)")
        for old in before:
            if old["scope"] == "admin":
                yield keys.revoke(old["id"])
                say(f"revoked admin key '{old['name']}' (id {old['id']})")
        return key_path
    finally:
        store.close()
        lock.release()
