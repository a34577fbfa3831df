"""
Consumers: the clients an ``api_key`` policy admits (``/api/consumers``).

A consumer is a name (unique ignoring case; the handler receives it) and
whether it is enabled; it has API keys, each shown once when made and
stored as its SHA-256 only, as the gateway's admin keys are.  Every change
(a consumer's, or one of its keys') calls ``changed()``: the runtime reloads
every process's ``ConsumerKeys`` (policy/consumerload.py), and the change
log tells the other nodes of a cluster, which reload theirs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Generator, Optional

from twisted.internet.defer import Deferred, inlineCallbacks, succeed

from edgegw_tx.admin import schema
from edgegw_tx.admin.errors import Conflict, NotFound
from edgegw_tx.admin.records import now
from edgegw_tx.admin.validation import check_schema
from edgegw_tx.policy.consumers import generate_key, hash_key
from edgegw_tx.store import Conflict as StoreConflict
from edgegw_tx.store import Missing
from edgegw_tx.store.interface import IConsumerStore, Record

__all__ = ["ConsumerManager", "view"]


def view(record: Record) -> Record:
    """A consumer as answered: its keys' ids and times, never their hashes."""
    keys = [{"id": key["id"], "created_at": key["created_at"]} for key in record.get("keys") or ()]
    return {
        "id": record["id"],
        "name": record["name"],
        "enabled": record["enabled"],
        "keys": keys,
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
        "revision": record.get("revision", 0),
    }


class ConsumerManager:
    """Consumer records and their keys; see the module docstring."""

    def __init__(self, store: IConsumerStore, changed: Optional[Callable[[], Any]] = None) -> None:
        """``changed()`` runs after every write (reloads the data plane's keys); may return a Deferred."""
        self._store = store
        self._changed = changed

    # reading

    @inlineCallbacks
    def get(self, consumer_id: str) -> Generator["Deferred[Any]", Any, Record]:
        """The consumer (with key hashes: use ``view`` to answer it); 404 when there is none."""
        record: Optional[Record] = yield self._store.get_consumer(consumer_id)
        if record is None:
            raise NotFound(f"no consumer with id '{consumer_id}'")
        return record

    def list(self) -> "Deferred[list[Record]]":
        """Every consumer, oldest first."""
        records: Deferred[list[Record]] = self._store.list_consumers()
        return records

    # writing

    @inlineCallbacks
    def create(self, payload: Any) -> Generator["Deferred[Any]", Any, Record]:
        """A new consumer (no keys yet); 409 when its name is taken ignoring case."""
        check_schema(schema.CONSUMER_CREATE, payload)
        stamp = now()
        record = {
            "id": uuid.uuid4().hex,
            "name": payload["name"].strip(),
            "enabled": payload.get("enabled", True),
            "created_at": stamp,
            "updated_at": stamp,
        }
        try:
            stored: Record = yield self._store.create_consumer(record)
        except StoreConflict:
            raise _name_taken(record["name"])
        yield self._after()
        return stored

    @inlineCallbacks
    def update(
        self, consumer_id: str, payload: Any, revision: Optional[int] = None
    ) -> Generator["Deferred[Any]", Any, Record]:
        """Rename, enable or disable a consumer; ``revision``: an ``If-Match`` (else ``Stale``)."""
        check_schema(schema.CONSUMER_UPDATE, payload)
        current: Record = yield self.get(consumer_id)
        fields: Record = {}
        if "name" in payload:
            fields["name"] = payload["name"].strip()
        if "enabled" in payload:
            fields["enabled"] = payload["enabled"]
        fields = {k: v for k, v in fields.items() if v != current[k]}
        if not fields:
            return current
        fields["updated_at"] = now()
        try:
            record: Optional[Record] = yield self._store.update_consumer(consumer_id, fields, revision=revision)
        except StoreConflict:
            raise _name_taken(str(fields.get("name", current["name"])))
        if record is None:
            raise NotFound(f"no consumer with id '{consumer_id}'")
        yield self._after()
        return record

    @inlineCallbacks
    def delete(self, consumer_id: str, revision: Optional[int] = None) -> Generator["Deferred[Any]", Any, Record]:
        """Delete a consumer and its keys (refused from the next request on)."""
        record: Record = yield self.get(consumer_id)
        deleted = yield self._store.delete_consumer(consumer_id, revision=revision)
        if not deleted:
            raise NotFound(f"no consumer with id '{consumer_id}'")
        yield self._after()
        return record

    @inlineCallbacks
    def add_key(self, consumer_id: str) -> Generator["Deferred[Any]", Any, Record]:
        """A new key of the consumer: ``{"id", "consumer_id", "key", "created_at"}``, the key in clear this once."""
        key = generate_key()
        record = {"id": uuid.uuid4().hex, "consumer_id": consumer_id, "key_hash": hash_key(key), "created_at": now()}
        try:
            yield self._store.add_consumer_key(record)
        except Missing:
            raise NotFound(f"no consumer with id '{consumer_id}'")
        yield self._after()
        return {"id": record["id"], "consumer_id": consumer_id, "key": key, "created_at": record["created_at"]}

    @inlineCallbacks
    def delete_key(self, consumer_id: str, key_id: str) -> Generator["Deferred[Any]", Any, Record]:
        """Delete one of the consumer's keys; 404 when it has no such key."""
        yield self.get(consumer_id)
        deleted = yield self._store.delete_consumer_key(consumer_id, key_id)
        if not deleted:
            raise NotFound(f"consumer '{consumer_id}' has no key with id '{key_id}'")
        yield self._after()
        return {"id": key_id, "consumer_id": consumer_id, "deleted": True}

    def _after(self) -> "Deferred[Any]":
        """Tell the data plane (its keys are reloaded before the write's answer)."""
        if self._changed is None:
            return succeed(None)
        result = self._changed()
        return result if isinstance(result, Deferred) else succeed(result)


def _name_taken(name: str) -> Conflict:
    """409 for a name another consumer has (ignoring case)."""
    return Conflict(f"a consumer named '{name}' already exists (names are unique ignoring case)", field="name")
