"""
API keys for the management API.

Keys are random tokens shown once; the store keeps only their SHA-256. Because
keys carry 256 bits of entropy a plain hash is enough (no slow KDF needed), and
every check compares against all known hashes with ``hmac.compare_digest`` so
timing says nothing about which key, or how much of one, matched.

``last_used_at`` is kept in memory on every successful check and written to the
store at most once per ``FLUSH_INTERVAL`` per key (the first use at once, later
ones coalesced into one write when the interval is over), and on ``flush``
(shut-down). Readers (``list``) see the newer of the in-memory and the
stored value (another node of a cluster may have used the key since).

In a cluster the keys are shared: ``load`` is a full reload (after another
node made or revoked a key), and the first admin key is made once per
cluster (``bootstrap`` through the store's ``add_first_key``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import uuid
from datetime import datetime, timezone
from typing import Any, NoReturn

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from edgegw_tx.admin.errors import BadRequest, Conflict, NotFound
from edgegw_tx.admin.schema import MAX_KEY_NAME
from edgegw_tx.store import LastAdminKey, Missing, StoreUnavailable
from edgegw_tx.store.interface import IKeyStore, Record

SCOPES = ("read", "admin")
KEY_PREFIX = "egw_"
MAX_NAME = MAX_KEY_NAME
FLUSH_INTERVAL = 60.0
_FIELDS = ("name", "scope")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


def _newer(first: str | None, second: str | None) -> str | None:
    """The later of two ISO 8601 UTC stamps (either may be None)."""
    if first is None or second is None:
        return first or second
    return max(first, second, key=lambda stamp: datetime.fromisoformat(stamp))


def check_new_key(payload: object) -> tuple[str, str]:
    """``(name, scope)`` of a ``POST /api/keys`` body, or ``BadRequest`` naming the field."""
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object with 'name' and 'scope'")
    for field in payload:
        if field not in _FIELDS:
            raise BadRequest(f"unknown field '{field}'", field=field)
    for field in _FIELDS:
        if field not in payload:
            raise BadRequest(f"missing field '{field}'", field=field)
    name, scope = payload["name"], payload["scope"]
    if not isinstance(name, str):
        raise BadRequest("field 'name' must be a string", field="name")
    if not name.strip():
        raise BadRequest("field 'name' must not be empty", field="name")
    if len(name) > MAX_NAME:
        raise BadRequest(f"field 'name' is longer than {MAX_NAME} characters", field="name")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadRequest("field 'name' must not contain control characters", field="name")
    if scope not in SCOPES:
        raise BadRequest("field 'scope' must be one of: " + ", ".join(SCOPES), field="scope")
    return name, scope


def generate_key() -> str:
    """A new key's plaintext: the prefix, then 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """What the store keeps of a key (its SHA-256, hex)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _write_private_file(path: str, text: str) -> None:
    """
    Write ``text`` to ``path`` readable by the owner only (0600): into a new
    file beside it, then renamed over it, so a reader never sees half a key and
    a symlink planted at ``path`` is replaced, not followed.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path + ".new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(temporary, path)
    except OSError:
        os.unlink(temporary)
        raise


def write_key_file(reactor: Any, path: str, plaintext: str) -> Deferred[str]:
    """Write a key to ``path`` (0600) in the reactor's thread pool; fires with ``path``."""
    d = deferToThreadPool(reactor, reactor.getThreadPool(), _write_private_file, path, plaintext + "\n")
    return d.addCallback(lambda _: path)


class KeyRing:
    """The set of valid API keys, cached in memory, persisted in the store."""

    log = Logger()

    def __init__(self, store: IKeyStore, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._store = store
        self._reactor = reactor
        self._keys: list[Record] = []
        self._used: dict[str, str] = {}  # key id -> last_used_at, newest (maybe not written yet)
        self._written: dict[str, float] = {}  # key id -> reactor time of its last write
        self._timers: dict[str, IDelayedCall] = {}  # key id -> DelayedCall of its next write
        self._unrecorded = False  # the store refused the last write (said once per outage)

    def load(self) -> Deferred[list[Record]]:
        """
        Read every key from the store into memory, replacing what was there
        (a key revoked on another node stops working here); fires with them.
        Uses not written yet stay due for the keys still there.
        """
        return self._store.list_keys().addCallback(self._loaded)

    def _loaded(self, keys: list[Record]) -> list[Record]:
        self._keys = keys
        present = {k["id"] for k in keys}
        for key_id in [k for k in self._used if k not in present]:
            self._forget(key_id)
        return keys

    def _forget(self, key_id: str) -> None:
        """Drop what is held of a deleted key's use (a write due for it is cancelled)."""
        timer = self._timers.pop(key_id, None)
        if timer is not None:
            timer.cancel()
        self._written.pop(key_id, None)
        self._used.pop(key_id, None)

    def authenticate(self, token: str | None) -> Record | None:
        """The key record matching ``token``, or None."""
        if not token:
            return None
        candidate = hash_key(token)
        found = None
        for record in self._keys:
            if hmac.compare_digest(candidate, record["key_hash"]):
                found = record
        if found is not None:
            self._touch(found["id"])
        return found

    # last_used_at

    def _touch(self, key_id: str) -> None:
        now = self._reactor.seconds()
        self._used[key_id] = _iso(now)
        if key_id in self._timers:
            return  # a write is due; it will take the newest value
        last = self._written.get(key_id)
        if last is None or now - last >= FLUSH_INTERVAL:
            self._write([key_id])
        else:
            self._timers[key_id] = self._reactor.callLater(
                last + FLUSH_INTERVAL - now, self._due, key_id
            )

    def _due(self, key_id: str) -> None:
        del self._timers[key_id]
        self._write([key_id])

    def _write(self, key_ids: list[str]) -> Deferred[None]:
        now = self._reactor.seconds()
        for key_id in key_ids:
            self._written[key_id] = now
        d = self._store.touch_keys({key_id: self._used[key_id] for key_id in key_ids})
        d.addCallback(self._recorded)
        d.addErrback(self._not_recorded)
        return d

    def _recorded(self, _: object) -> None:
        self._unrecorded = False

    def _not_recorded(self, failure: Failure) -> None:
        """
        A store that cannot be reached is said once per outage, without a
        traceback (the times stay in memory and the next use writes them);
        anything else is a bug, logged in full.
        """
        if failure.check(StoreUnavailable):
            if not self._unrecorded:
                self._unrecorded = True
                self.log.warn("Could not record when API keys were used: {error}", error=failure.value)
            return
        self.log.failure("Recording when API keys were used failed", failure)

    def flush(self) -> Deferred[None]:
        """Write every ``last_used_at`` still held back (on shut-down); fires when written."""
        key_ids = list(self._timers)
        for key_id in key_ids:
            self._timers.pop(key_id).cancel()
        if not key_ids:
            return succeed(None)
        return self._write(key_ids)

    # reading and revoking

    def view(self, record: Record) -> dict[str, Any]:
        """What the API shows of a key: never its hash (nor, having none, its plaintext)."""
        return {
            "id": record["id"],
            "name": record["name"],
            "scope": record["scope"],
            "created_at": record["created_at"],
            "last_used_at": _newer(self._used.get(record["id"]), record.get("last_used_at")),
            # The If-Match of a DELETE /api/keys/{id}.
            "revision": record.get("revision", 0),
        }

    def list(self) -> list[dict[str, Any]]:
        """Every key's view, oldest first."""
        return [self.view(record) for record in self._keys]

    def revoke(self, key_id: str, revision: int | None = None) -> Deferred[dict[str, Any]]:
        """
        Delete a key; fire with its view once the in-memory list no longer has
        it, so the very next request with it is refused. ``NotFound`` for an
        unknown id, ``Conflict`` for the last admin key; with ``revision`` (an
        ``If-Match``) only if the key is still at it, else the store's ``Stale``.
        """
        d = self._store.delete_key(key_id, revision=revision)

        def deleted(record: Record) -> dict[str, Any]:
            self._keys = [k for k in self._keys if k["id"] != key_id]
            view = self.view(record)
            self._forget(key_id)
            return view

        def refused(failure: Failure) -> NoReturn:
            failure.trap(Missing, LastAdminKey)
            if failure.check(Missing):
                raise NotFound(f"no API key with id '{key_id}'")
            raise Conflict(
                f"key '{key_id}' is the last admin key and cannot be deleted: without it nobody "
                "could manage the gateway; create another admin key first"
            )

        return d.addCallbacks(deleted, refused)

    def create(self, name: str, scope: str) -> Deferred[tuple[Record, str]]:
        """Fire with ``(record, plaintext)``; the plaintext is never stored."""
        record, plaintext = self._new_record(name, scope)
        d = self._store.add_key(record).addCallback(lambda _: self.load())
        return d.addCallback(lambda _: (record, plaintext))

    @staticmethod
    def _new_record(name: str, scope: str) -> tuple[Record, str]:
        """A new key's record and plaintext (the plaintext is never stored)."""
        if scope not in SCOPES:
            raise ValueError("scope must be one of: " + ", ".join(SCOPES))
        plaintext = generate_key()
        record = {
            "id": uuid.uuid4().hex,
            "name": name,
            "scope": scope,
            "key_hash": hash_key(plaintext),
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
        return record, plaintext

    def bootstrap(self, key_path: str) -> Deferred[str | None]:
        """
        On first start (no key at all) create an admin key and write it to
        ``key_path`` with mode 0600. Fires with the path written, or None.
        The store inserts it only if it still has no key (``add_first_key``):
        of the nodes of a cluster starting at once, one makes the cluster's
        first key; the others load it, write no file and say so.
        """
        if self._keys:
            return self._noop()
        record, plaintext = self._new_record("bootstrap", "admin")
        d = self._store.add_first_key(record)

        def inserted(first: bool) -> Deferred[str | None]:
            loaded = self.load()
            if not first:
                self.log.info(
                    "The cluster's first admin API key was made by another node; no key file is written here"
                )
                return loaded.addCallback(lambda _: None)
            loaded.addCallback(lambda _: write_key_file(self._reactor, key_path, plaintext))
            return loaded.addCallback(logged)

        def logged(_: object) -> str | None:
            self.log.info("Created the first admin API key; it is in {path}", path=key_path)
            return key_path

        return d.addCallback(inserted)

    @staticmethod
    def _noop() -> Deferred[str | None]:
        return succeed(None)
