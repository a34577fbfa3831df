"""
Compile once, run everywhere: binaries shared through the store.

A node that compiles a digest stores the binary in the shared store; another
node needing that digest fetches it, checks its sha256 and keeps it in its
local artifact cache (``build.artifacts.ArtifactStore``). Two nodes asked to
compile the same digest at once agree through a claim in the store: the one
holding it compiles (refreshing the claim while cargo runs), the others
poll until the binary is there, and take the claim over when it vanishes
without a binary (that build failed there; it is compiled here, to report
its errors) or goes stale (its node died).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any, Generator

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from edgegw_tx.build.artifacts import ArtifactStore
from edgegw_tx.build.cargo import BuildError
from edgegw_tx.store.errors import StoreUnavailable
from edgegw_tx.store.interface import IArtifactStore

class ArtifactCorrupt(BuildError):
    """The stored binary's bytes do not match its recorded sha256 (or size)."""


class SharedArtifacts:
    """
    The store's binaries for one node (``node``): ``fetch`` one into the local
    cache, or ``obtain`` one (fetch, else compile under a claim and share it).
    ``reactor`` runs the file and hashing work in threads; ``clock`` times
    the polls and the claim's refreshes.
    """

    log = Logger()

    def __init__(
        self,
        store: IArtifactStore,
        node: str,
        reactor: Any,
        clock: IReactorTime | None = None,
        poll: float = 0.25,
        stale_after: float = 30.0,
        refresh: float = 10.0,
        recheck: float = 2.0,
    ) -> None:
        self._store = store
        self.node = node
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        self.poll = poll
        self.stale_after = stale_after
        self.refresh = refresh
        self.recheck = recheck

    def _thread(self, work: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), work, *args)

    @inlineCallbacks
    def fetch(self, digest: str, local: ArtifactStore) -> Generator["Deferred[Any]", Any, str | None]:
        """
        Copy the stored binary of ``digest`` into ``local``; fires with its
        local path, or None when the store does not have it. ``ArtifactCorrupt``
        when its bytes do not match the recorded sha256.
        """
        record = yield self._store.get_artifact(digest)
        if record is None:
            return None
        path: str = yield self._thread(_verify_and_put, record, digest, local)
        self.log.info("Fetched the binary {digest} compiled by node {node} ({size} bytes)",
                      digest=digest[:12], node=record.get("node"), size=len(record["data"]))
        return path

    @inlineCallbacks
    def share(self, digest: str, binary: str, metadata: dict[str, Any]) -> Generator["Deferred[Any]", Any, None]:
        """Store the local ``binary`` of ``digest`` for the other nodes."""
        data = yield self._thread(_read, binary)
        yield self._store.put_artifact(digest, data, metadata, self.node)

    def forget(self, digest: str) -> "Deferred[None]":
        """
        Delete the store's copy of ``digest``: the ledger found that no
        endpoint of the cluster uses it any more. A failure is logged; the
        next prune of that digest, or the endpoint's delete, tries again.
        """
        d: Deferred[None] = self._store.delete_artifacts([digest])

        def failed(failure: Failure) -> None:
            self.log.warn("Could not delete the stored binary {digest}: {error}",
                          digest=digest[:12], error=failure.value)

        return d.addErrback(failed)

    @inlineCallbacks
    def obtain(
        self,
        digest: str,
        local: ArtifactStore,
        compile: Callable[[], "Deferred[Any]"],
        timeout: float,
    ) -> Generator["Deferred[Any]", Any, tuple[str | None, Any]]:
        """
        The binary of ``digest`` once in the cluster: ``(path, None)`` when
        fetched from the store, ``(None, result)`` when ``compile()`` ran here
        (its result; the binary is then shared). A store that cannot be
        reached makes this node compile on its own.
        """
        started = self._clock.seconds()
        try:
            while True:
                path = yield self.fetch(digest, local)
                if path is not None:
                    return path, None
                holder = yield self._store.claim_build(digest, self.node, self.stale_after)
                if holder is None:
                    # Ours; it may have been shared between the check and the claim.
                    if (yield self._store.has_artifact(digest)):
                        yield self._store.release_build(digest, self.node)
                        continue
                    break
                if self._clock.seconds() - started > timeout:
                    raise BuildError(
                        f"waited {timeout:g} s for node {holder} to compile {digest[:12]}; giving up"
                    )
                yield self._wait_for(digest, holder, started, timeout)
        except StoreUnavailable as e:
            self.log.warn("Compiling {digest} here without the cluster: {error}", digest=digest[:12], error=e)
            result = yield compile()
            return None, result
        result = yield self._compile_claimed(digest, compile)
        return None, result

    @inlineCallbacks
    def _wait_for(self, digest: str, holder: str, started: float, timeout: float) -> Generator["Deferred[Any]", Any, None]:
        """Poll until the binary is stored, or ``recheck`` seconds passed (the caller then re-checks the claim)."""
        checks = max(1, int(self.recheck / self.poll))
        for _ in range(checks):
            yield deferLater(self._clock, self.poll, lambda: None)
            if (yield self._store.has_artifact(digest)):
                return
            if self._clock.seconds() - started > timeout:
                return

    def _compile_claimed(self, digest: str, compile: Callable[[], "Deferred[Any]"]) -> "Deferred[Any]":
        """Compile holding the claim (refreshed while cargo runs), share the binary, release the claim."""
        refresh = LoopingCall(self._refresh_claim, digest)
        refresh.clock = self._clock
        refresh.start(self.refresh, now=False)

        def share(result: Any) -> "Deferred[Any]":
            shared = self.share(digest, result.binary, local_metadata(result))
            # This node has it either way; the others compile it themselves.
            shared.addErrback(lambda f: self.log.warn("Could not share the binary {digest}: {error}",
                                                      digest=digest[:12], error=f.value))
            return shared.addCallback(lambda _: result)

        def release(outcome: Any) -> "Deferred[Any]":
            if refresh.running:
                refresh.stop()
            released = self._store.release_build(digest, self.node)
            released.addErrback(lambda f: self.log.warn("Could not release the build claim on {digest}: {error}",
                                                        digest=digest[:12], error=f.value))
            return released.addCallback(lambda _: outcome)

        d = maybeDeferred(compile)
        d.addCallback(share)
        d.addBoth(release)
        return d

    def _refresh_claim(self, digest: str) -> "Deferred[None]":
        d = self._store.claim_build(digest, self.node, self.stale_after)
        d.addErrback(lambda f: self.log.warn("Could not refresh the build claim on {digest}: {error}",
                                             digest=digest[:12], error=f.value))
        return d.addCallback(lambda _: None)


def local_metadata(result: Any) -> dict[str, Any]:
    """What the local cache records beside a binary: its warnings and dependencies."""
    return {"warnings": list(getattr(result, "warnings", [])), "dependencies": list(getattr(result, "dependencies", []))}


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _verify_and_put(record: dict[str, Any], digest: str, local: ArtifactStore) -> str:
    """Check the bytes against the record, then store them locally (blocking: a thread)."""
    data: bytes = bytes(record["data"])
    actual = hashlib.sha256(data).hexdigest()
    if actual != record.get("sha256") or ("size" in record and record["size"] != len(data)):
        raise ArtifactCorrupt(
            f"the stored binary of {digest[:12]} (from node {record.get('node')}) is damaged:"
            f" sha256 {actual[:12]} instead of {str(record.get('sha256'))[:12]}"
        )
    return local.put(digest, io.BytesIO(data), dict(record.get("metadata") or {}))
