"""
The consumers' keys at run time: one ``ConsumerKeys`` per process, loaded
from the store at start and again after every change of a consumer.

The control process reads the store (``list_consumers``: each consumer with
its key hashes) and, with ``--processes N``, sends the same records to every
data-plane process (the ``consumers`` command, replayed to a respawned one),
whose own ``ConsumerKeys`` its routes' ``api_key`` checks read.  Only key
hashes travel: a key is never kept in clear anywhere.  Loading replaces the
whole set in one assignment, so a request sees the keys before or after a
change, never half of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed

from edgegw_tx.policy.consumers import ConsumerKeys, ConsumerRecord

__all__ = ["ConsumerLoader", "records_of"]


def records_of(stored: Iterable[Mapping[str, Any]]) -> list[ConsumerRecord]:
    """
    The store's consumers as ``ConsumerKeys.load`` reads them: name, enabled
    and key hashes (``key_hashes``, or the ``key_hash`` of each of ``keys``).
    """
    records: list[ConsumerRecord] = []
    for consumer in stored:
        hashes = consumer.get("key_hashes")
        if hashes is None:
            hashes = [key["key_hash"] for key in consumer.get("keys") or () if key.get("key_hash")]
        records.append(
            {"name": str(consumer["name"]), "enabled": bool(consumer.get("enabled", True)), "key_hashes": list(hashes)}
        )
    return records


class ConsumerLoader:
    """Loads ``keys`` from the store's consumers, and tells the data-plane processes."""

    def __init__(
        self,
        keys: ConsumerKeys,
        source: Callable[[], Any] | None,
        send: Callable[[list[ConsumerRecord]], object] | None = None,
    ) -> None:
        """
        :param source: fires with the stored consumers (the store's
            ``list_consumers``); None: the store keeps none, nothing is loaded.
        :param send: gives the records to the data-plane processes
            (``ProcessGroup.change("consumers", records=...)``), or None.
        """
        self.keys = keys
        self._source = source
        self._send = send

    def reload(self) -> Deferred[None]:
        """Read the consumers again and replace every process's keys; call after any consumer change."""
        if self._source is None:
            return succeed(None)
        d: Deferred[Any] = maybeDeferred(self._source)
        return d.addCallback(self._loaded)

    def _loaded(self, stored: Iterable[Mapping[str, Any]]) -> None:
        records = records_of(stored)
        self.keys.load(records)
        if self._send is not None:
            self._send(records)
