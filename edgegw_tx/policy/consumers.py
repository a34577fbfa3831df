"""
The API keys of consumers (``auth`` with ``type: api_key``), as the data plane
looks them up.

Consumers are kept by the management API (``/api/consumers``) as admin keys
are: each key is shown once and stored as its SHA-256 (``generate_key`` and
``hash_key`` are the admin keys' own, imported).  A key carries 256 random
bits, so a plain hash is enough, and a lookup is one hash and one dict
lookup: the dict is keyed by the hash, which a client cannot steer, so its
timing tells nothing about the keys held.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

from edgegw_tx.admin.auth import generate_key, hash_key

__all__ = ["ConsumerKeys", "ConsumerRecord", "generate_key", "hash_key"]


class ConsumerRecord(TypedDict):
    """What ``ConsumerKeys.load`` reads of a stored consumer."""

    name: str
    enabled: bool
    #: the SHA-256 (hex, ``hash_key``) of each of the consumer's keys
    key_hashes: list[str]


class ConsumerKeys:
    """Key hash → (consumer name, enabled); ``context.consumers`` of a policy's ``build``."""

    def __init__(self) -> None:
        self._by_hash: dict[str, tuple[str, bool]] = {}

    def load(self, records: Iterable[ConsumerRecord]) -> None:
        """Replace every key with those of ``records`` (the store's consumers, after any change)."""
        by_hash: dict[str, tuple[str, bool]] = {}
        for record in records:
            for digest in record["key_hashes"]:
                by_hash[digest] = (record["name"], record["enabled"])
        self._by_hash = by_hash

    def lookup(self, key: str) -> str | None:
        """The name of the enabled consumer ``key`` belongs to, or None."""
        found = self._by_hash.get(hash_key(key))
        if found is None or not found[1]:
            return None
        return found[0]
