"""
The artifact ledger: which compiled binaries are in use, and which may go.

Binaries are content-addressed, so endpoints with the same code share one and
an endpoint's older versions keep theirs for rollbacks. A binary is deleted
only when nothing counts on it:

* no pool holds a *claim* on its digest. A deployment claims the digest it
  starts a pool on and keeps the claim while that pool serves and while it
  drains; the ledger counts claims per digest;
* no stored endpoint names it as a version, its ``artifact`` or its
  ``deployed`` one (the store answers that).

A node of a cluster may lack a binary another node compiled: ``claim``
then asks the builder to fetch it from the shared store (``Binaries.fetch``),
outside the lock (a download should not hold up the other claims), and
claims it once it is there.

The ledger owns one lock. Taking a digest into use (``claim``, ``record``) and
deleting binaries (``forget``, and the pruning at the end of ``record``) run
under it, so a binary cannot be deleted between the check that it exists and
the claim or version row that keeps it. Nothing else is locked while the
ledger's lock is held.
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Iterable, Optional, Protocol, TypeVar

from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks
from twisted.logger import Logger

from edgegw_tx.store.interface import IVersionStore

T = TypeVar("T")


class Binaries(Protocol):
    """What the ledger needs of the builder: where a digest's binary is, fetching and deleting one."""

    def artifact(self, digest: str) -> Optional[str]:
        """The path of the digest's binary, or None when it is not stored."""

    def fetch(self, digest: str) -> "Deferred[Optional[str]]":
        """
        Fetch the digest's binary from the cluster's shared store into the
        local artifacts; fires with its path, or None when the store does not
        have it (or is not shared).
        """

    def remove_artifact(self, digest: str) -> "Deferred[Any]":
        """Delete the digest's binary."""


class ArtifactLedger:
    """Claims on binaries, version rows and pruning; see the module docstring."""

    log = Logger()

    def __init__(self, store: IVersionStore, binaries: Binaries, keep_versions: int) -> None:
        """``keep_versions``: how many of an endpoint's newest versions keep their rows (``--keep-versions``)."""
        self._store = store
        self._binaries = binaries
        self._keep_versions = keep_versions
        # digest -> how many pools count on it (starting, serving or draining)
        self._claims: dict[str, int] = {}
        self._lock = DeferredLock()

    def stored(self, digest: str) -> bool:
        """Whether the digest's binary is still there (a rollback can use it)."""
        return self._binaries.artifact(digest) is not None

    @inlineCallbacks
    def available(self, digest: str) -> Generator["Deferred[Any]", Any, bool]:
        """Whether the digest's binary is here, or could be fetched from the cluster's shared store."""
        if self.stored(digest):
            return True
        fetched = yield self._binaries.fetch(digest)
        return fetched is not None

    def versions(self, endpoint_id: str) -> "Deferred[list[dict[str, Any]]]":
        """The endpoint's version rows, newest first."""
        return self._store.list_versions(endpoint_id)

    def in_use(self) -> set[str]:
        """Digests some pool counts on: their binaries stay whatever the store says."""
        return set(self._claims)

    @inlineCallbacks
    def claim(self, digest: str) -> Generator["Deferred[Any]", Any, Optional[str]]:
        """
        Fire with the digest's binary, counted as in use until ``release``; or
        with None (and nothing counted) when the binary is gone here and the
        builder could not fetch it from the shared store.
        """
        binary: Optional[str] = yield self._lock.run(self._claim, digest)
        if binary is not None:
            return binary
        fetched = yield self._binaries.fetch(digest)
        if fetched is None:
            return None
        self.log.info("Fetched the binary {digest} from the store", digest=digest)
        binary = yield self._lock.run(self._claim, digest)
        return binary

    def _claim(self, digest: str) -> Optional[str]:
        binary = self._binaries.artifact(digest)
        if binary is not None:
            self._claims[digest] = self._claims.get(digest, 0) + 1
        return binary

    def release(self, digest: str) -> None:
        """Give back one claim on ``digest`` (from ``claim``)."""
        count = self._claims.get(digest, 0) - 1
        if count > 0:
            self._claims[digest] = count
        else:
            self._claims.pop(digest, None)

    def record(
        self,
        version: dict[str, Any],
        cached: bool,
        adopt: Callable[[], "Deferred[tuple[T, bool]]"],
    ) -> "Deferred[Optional[T]]":
        """
        Make a build a version of its endpoint, under the lock. When the
        binary of ``version["digest"]`` is gone (pruned meanwhile), fire with
        None: the caller builds again. Otherwise ``adopt()`` writes the
        endpoint's record and fires with ``(outcome, adopted)``; when adopted,
        the version row is recorded (``cached``: no cargo run) and the
        endpoint's versions beyond ``keep_versions`` pruned, their unused
        binaries deleted. Fires with ``outcome``.
        """
        return self._lock.run(self._record, version, cached, adopt)

    @inlineCallbacks
    def _record(
        self,
        version: dict[str, Any],
        cached: bool,
        adopt: Callable[[], "Deferred[tuple[T, bool]]"],
    ) -> Generator["Deferred[Any]", Any, Optional[T]]:
        if not self.stored(version["digest"]):
            return None
        outcome, adopted = yield adopt()
        if adopted:
            yield self._store.record_version(version, cached=cached)
            unused = yield self._store.prune_versions(version["endpoint_id"], self._keep_versions, self.in_use())
            yield self._remove(unused)
        result: T = outcome
        return result

    def forget(self, digests: Iterable[str]) -> "Deferred[None]":
        """Delete the binaries of those ``digests`` that nothing uses any more (an endpoint's, at its delete)."""
        return self._lock.run(self._forget, [d for d in digests if d])

    @inlineCallbacks
    def _forget(self, digests: list[str]) -> Generator["Deferred[Any]", Any, None]:
        unused = yield self._store.unused_digests(digests, self.in_use())
        yield self._remove(unused)

    @inlineCallbacks
    def _remove(self, digests: Iterable[str]) -> Generator["Deferred[Any]", Any, None]:
        """Under the lock: delete binaries, never one claimed; a failure is logged, not raised."""
        in_use = self.in_use()
        for digest in digests:
            if digest in in_use:
                continue
            try:
                yield self._binaries.remove_artifact(digest)
                self.log.info("Removed the unused binary {digest}", digest=digest)
            except Exception as e:
                self.log.error("Could not remove the binary {digest}: {e}", digest=digest, e=e)
