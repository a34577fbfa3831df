"""
API keys for the management API.

Keys are random tokens shown once; the store keeps only their SHA-256. Because
keys carry 256 bits of entropy a plain hash is enough (no slow KDF needed), and
every check compares against all known hashes with ``hmac.compare_digest`` so
timing says nothing about which key, or how much of one, matched.
"""

import hashlib
import hmac
import os
import secrets
import uuid
from datetime import datetime, timezone

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

SCOPES = ("read", "admin")
KEY_PREFIX = "egw_"


def generate_key():
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key):
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _write_private_file(path, text):
    """Write ``text`` to ``path`` readable by the owner only (0600)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


class KeyRing:
    """The set of valid API keys, cached in memory, persisted in the store."""

    log = Logger()

    def __init__(self, store, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self._store = store
        self._reactor = reactor
        self._keys = []

    def load(self):
        d = self._store.list_keys()
        d.addCallback(self._loaded)
        return d

    def _loaded(self, keys):
        self._keys = keys
        return keys

    def authenticate(self, token):
        """The key record matching ``token``, or None."""
        if not token:
            return None
        candidate = hash_key(token)
        found = None
        for record in self._keys:
            if hmac.compare_digest(candidate, record["key_hash"]):
                found = record
        return found

    def create(self, name, scope):
        """Fire with ``(record, plaintext)``; the plaintext is never stored."""
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
        d = self._store.add_key(record)
        d.addCallback(lambda _: self.load())
        d.addCallback(lambda _: (record, plaintext))
        return d

    def bootstrap(self, key_path):
        """
        On first start (no key at all) create an admin key and write it to
        ``key_path`` with mode 0600. Fires with the path written, or None.
        """
        if self._keys:
            return self._noop()
        d = self.create("bootstrap", "admin")

        def write(result):
            _, plaintext = result
            pool = self._reactor.getThreadPool()
            return deferToThreadPool(
                self._reactor, pool, _write_private_file, key_path, plaintext + "\n"
            )

        def logged(_):
            self.log.info("Created the first admin API key; it is in {path}", path=key_path)
            return key_path

        d.addCallback(write)
        d.addCallback(logged)
        return d

    @staticmethod
    def _noop():
        from twisted.internet.defer import succeed

        return succeed(None)
