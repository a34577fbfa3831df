"""
Following the shared store's change log, so this node serves what the
cluster was told.

The follower keeps the last revision it applied. Something wakes it (a
``NOTIFY``, a reconnection, the periodic check every ``interval`` seconds,
the store coming back online); it then reads the changes after that
revision and hands them to ``apply`` (``sync.ChangeApplier``) as one batch.
Wakes that arrive while a batch is being applied are coalesced into one
more read afterwards: one batch at a time, in revision order. When the log
was pruned past our revision (``complete`` False) ``apply`` is told to
reload everything. A store that cannot be reached is reported once and
tried again at the next wake; nothing is skipped, since the revision only
moves when a batch was applied.

After a batch the configuration is saved as the last-known snapshot (at
most once per ``snapshot_every`` seconds), from which a node starts when
PostgreSQL is down. Every ``prune_every`` seconds the log is cut to its
``keep`` newest rows (any node may; a node further behind than that reloads
everything).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generator

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from edgegw_tx.store.errors import StoreUnavailable
from edgegw_tx.store.interface import IChangeLog, Record

#: ``apply(changes, complete)``: see ``sync.ChangeApplier.apply``.
Apply = Callable[[list[Record], bool], "Deferred[Any]"]


def current_revision(store: IChangeLog) -> "Deferred[int]":
    """The newest revision of the store's change log (0 for none)."""
    return store.changes_since(0).addCallback(lambda result: int(result["revision"]))


class Follower:
    """Applies the changes after ``revision``, batch by batch; see the module docstring."""

    log = Logger()

    def __init__(
        self,
        store: IChangeLog,
        apply: Apply,
        clock: IReactorTime,
        revision: int,
        interval: float = 2.0,
        snapshot: Callable[[], "Deferred[Any]"] | None = None,
        snapshot_every: float = 1.0,
        where: str = "the store",
        keep: int | None = None,
        prune_every: float = 600.0,
    ) -> None:
        self._store = store
        self._apply = apply
        self._clock = clock
        #: The last revision applied.
        self.revision = revision
        self._interval = interval
        self._snapshot = snapshot
        self._snapshot_every = snapshot_every
        self._where = where
        self._loop: LoopingCall | None = None
        self._running: Deferred[None] | None = None
        self._again = False
        self._reported = False
        self._last_snapshot: float | None = None
        self._snapshot_call: IDelayedCall | None = None
        self._snapshotting: Deferred[Any] | None = None
        self._stopped = False
        self._keep = keep
        self._prune_every = prune_every
        self._pruner: LoopingCall | None = None

    def start(self) -> None:
        """Check the log now and every ``interval`` seconds."""
        self._stopped = False
        loop = self._loop = LoopingCall(self.wake)
        loop.clock = self._clock
        loop.start(self._interval, now=True)
        if self._keep is not None:
            pruner = self._pruner = LoopingCall(self._prune)
            pruner.clock = self._clock
            pruner.start(self._prune_every, now=False)

    def _prune(self) -> "Deferred[None]":
        """Cut the change log to its ``keep`` newest rows (errors logged: it is only housekeeping)."""
        assert self._keep is not None
        d = self._store.prune_changes(self._keep)

        def failed(failure: Any) -> None:
            if not failure.check(StoreUnavailable):
                self.log.failure("Pruning the change log failed", failure)

        return d.addCallbacks(lambda _: None, failed)

    def stop(self) -> "Deferred[None]":
        """No more checks; fires when the batch (and snapshot) in progress are done."""
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._pruner is not None and self._pruner.running:
            self._pruner.stop()
        self._pruner = None
        if self._snapshot_call is not None and self._snapshot_call.active():
            self._snapshot_call.cancel()
        self._snapshot_call = None
        pending = [d for d in (self._running, self._snapshotting) if d is not None]
        if not pending:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        gatherResults([_settled(d) for d in pending]).addBoth(lambda _: waiting.callback(None))
        return waiting

    def wake(self) -> "Deferred[None]":
        """
        Read and apply what changed (again after the current batch, if one is
        running); fires when the log has been read up to date (or could not be).
        """
        if self._stopped:
            return succeed(None)
        if self._running is not None:
            self._again = True
            return _settled(self._running)
        running = self._running = self._follow()
        running.addBoth(self._done)
        return _settled(running)

    def _done(self, result: Any) -> None:
        self._running = None

    @inlineCallbacks
    def _follow(self) -> Generator["Deferred[Any]", Any, None]:
        while True:
            self._again = False
            try:
                applied = yield self._batch()
            except StoreUnavailable as e:
                if not self._reported:
                    self._reported = True
                    self.log.warn(
                        "Cannot follow the changes of {where} ({error}); serving revision {revision}"
                        " until it answers",
                        where=self._where,
                        error=e.reason,
                        revision=self.revision,
                    )
                return
            except Exception:
                self.log.failure("Following the change log failed at revision {revision}", revision=self.revision)
                return
            if self._reported:
                self._reported = False
                self.log.info("Following the changes of {where} again (revision {revision})",
                              where=self._where, revision=self.revision)
            if applied:
                self._snapshot_soon()
            if not self._again or self._stopped:
                return

    @inlineCallbacks
    def _batch(self) -> Generator["Deferred[Any]", Any, bool]:
        """One read and its apply; whether anything was applied."""
        result = yield self._store.changes_since(self.revision)
        newest = int(result["revision"])
        changes: list[Record] = list(result["changes"])
        # A log that went backwards (a store restored from a backup) is reloaded whole too.
        complete = bool(result["complete"]) and newest >= self.revision
        if complete and not changes:
            self.revision = max(self.revision, newest)
            return False
        yield self._apply(changes, complete)
        self.revision = newest
        return True

    # -- the last-known snapshot ---------------------------------------------

    def _snapshot_soon(self) -> None:
        """Save the snapshot now, or when ``snapshot_every`` has passed since the last."""
        if self._snapshot is None or self._stopped:
            return
        if self._snapshot_call is not None and self._snapshot_call.active():
            return
        now = self._clock.seconds()
        due = 0.0 if self._last_snapshot is None else self._last_snapshot + self._snapshot_every - now
        if due > 0 or self._snapshotting is not None:
            self._snapshot_call = self._clock.callLater(max(due, self._snapshot_every), self._save_snapshot)
        else:
            self._save_snapshot()

    def save_snapshot(self) -> "Deferred[None]":
        """Save the last-known snapshot now (at start); errors are logged."""
        return self._save_snapshot()

    def _save_snapshot(self) -> "Deferred[None]":
        self._snapshot_call = None
        if self._snapshot is None or self._snapshotting is not None:
            return succeed(None)
        self._last_snapshot = self._clock.seconds()
        d = self._snapshotting = self._snapshot()

        def failed(failure: Any) -> None:
            if not failure.check(StoreUnavailable):
                self.log.failure("Saving the last-known configuration failed", failure)

        def done(_: object) -> None:
            self._snapshotting = None

        d.addErrback(failed)
        d.addBoth(done)
        return _settled(d)


def _settled(d: "Deferred[Any]") -> "Deferred[None]":
    """A Deferred that fires (with None) when ``d`` does, without touching ``d``'s result."""
    waiting: Deferred[None] = Deferred()

    def passthrough(result: Any) -> Any:
        waiting.callback(None)
        return result

    d.addBoth(passthrough)
    return waiting
