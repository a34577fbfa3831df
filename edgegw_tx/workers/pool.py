"""
A pool of identical workers serving one deployed version of an endpoint.

A worker is synchronous: it reads one request frame, answers it, then reads
the next.  The pool may still write up to C{pipeline} requests to one worker
ahead of its answers: they wait in the worker's pipe instead of the gateway's
queue, which lets one reactor turn carry many frames each way.  Only the first
request written and not yet answered (the head) is being served, so when a
worker dies or is killed the head fails and the requests behind it, never
started, go back to the front of the queue for the next worker.  A new request
goes to the ready worker with the fewest requests in flight.  Each of the
C{instances} slots keeps one worker alive, restarting it with a doubling
delay like C{twisted.runner.procmon} does, so a crash loop cannot become a
fork storm.

Timeouts: C{timeout} bounds the wait for service (in the queue or behind
other requests in a worker's pipe) and, separately, the handler's run from the
moment the request becomes its worker's head.  Only the second kills the
worker (it may be stuck); a request that waited its whole timeout fails
without harming anyone.  So a client waits at most about twice C{timeout},
and a worker is never killed for time it did not spend.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from ..errors import (
    GatewayError,
    Overloaded,
    PoolStopped,
    RequestTimedOut,
)
from .framing import DEFAULT_MAX_FRAME
from .process import (
    READY,
    STARTING,
    CallHandler,
    LogCallback,
    WorkerProcess,
    twisted_log,
)

_NEW, _STARTING, _RUNNING, _STOPPING, _STOPPED = (
    "new",
    "starting",
    "running",
    "stopping",
    "stopped",
)


class _Job:
    """One accepted request: queued while C{worker} is None, then dispatched."""

    __slots__ = ("frame", "deferred", "timer", "worker", "since")

    def __init__(self, frame: dict[str, Any], since: float):
        self.frame = frame
        self.deferred: Deferred[dict[str, Any]]
        self.timer: Any = None  # only while waiting in the pool's queue
        self.worker: WorkerProcess | None = None
        self.since = since


class _Line:
    """
    The requests written to one worker, in order; C{jobs[0]} is being served.

    One lazy watchdog per worker times them all, instead of a timer per
    request: it fires at the earliest deadline it knew of, re-checks, and
    re-arms for the next, so the request path never touches the timer heap.
    """

    __slots__ = ("jobs", "head_since", "watchdog")

    def __init__(self) -> None:
        self.jobs: deque[_Job] = deque()
        self.head_since = 0.0
        self.watchdog: Any = None


class _Slot:
    """One of the pool's C{instances}: its worker and its restart backoff."""

    __slots__ = ("worker", "delay", "restart")

    def __init__(self, delay: float):
        self.worker: WorkerProcess | None = None
        self.delay = delay
        self.restart: Any = None


class WorkerPool:
    """
    Workers of one binary, a FIFO queue in front of them.

    @ivar stable_time: a worker that lived this many seconds, or served a
        request, proves the binary works: its restart uses
        C{min_restart_delay} again.
    @ivar served: requests answered by a worker.
    @ivar failed: accepted requests that failed (crash, timeout, violation).
    @ivar rejected: requests refused at once (queue full, pool stopped).
    @ivar restarts: replacement workers spawned.
    """

    stable_time = 10.0

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        instances: int = 1,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        log: LogCallback | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        queue_limit: int = 1000,
        drain_timeout: float = 10.0,
        min_restart_delay: float = 0.1,
        max_restart_delay: float = 30.0,
        start_timeout: float = 10.0,
        kill_time: float = 5.0,
        call_handler: CallHandler | None = None,
        pipeline: int = 1,
        reactor: Any = None,
    ):
        """
        @param argv: the binary and its arguments; C{argv[0]} is executed.
        @param env: the worker's whole environment (nothing is inherited).
        @param log: C{log(stream, line)}, see L{LogCallback}.
        @param start_timeout: seconds a worker has to send C{ready}.
        @param kill_time: seconds between SIGTERM and SIGKILL.
        @param call_handler: answers the workers' service calls; the default
            answers C{ServiceUnavailable}.
        @param pipeline: most requests written to one worker ahead of its
            answers (1: strictly one at a time).
        @param reactor: spawns the processes and provides the clock.
        """
        if reactor is None:
            from twisted.internet import reactor
        if instances < 1:
            raise ValueError("a pool needs at least one instance")
        if not argv:
            raise ValueError("argv must name the binary")
        if pipeline < 1:
            raise ValueError("pipeline must be at least 1")
        self.name = name
        self.argv = list(argv)
        self.instances = instances
        self.timeout = timeout
        self.env = env or {}
        self.cwd = cwd
        self.max_frame = max_frame
        self.queue_limit = queue_limit
        self.drain_timeout = drain_timeout
        self.min_restart_delay = min_restart_delay
        self.max_restart_delay = max_restart_delay
        self.start_timeout = start_timeout
        self.kill_time = kill_time
        self.call_handler = call_handler
        self.pipeline = pipeline
        self._log = log or twisted_log
        self._reactor = reactor

        self._state = _NEW
        self._slots = [_Slot(min_restart_delay) for _ in range(instances)]
        self._ready: list[WorkerProcess] = []
        # Per ready worker, its requests in the order written; [0] is being served.
        self._lines: dict[WorkerProcess, _Line] = {}
        self._queue: deque[_Job] = deque()
        self._dispatching = False
        self._start_d: Deferred[list[int]] | None = None
        self._start_error: GatewayError | None = None
        self._stop_waiters: list[Deferred[None]] = []
        self._drain_call: Any = None
        self._drain_deadline = 0.0

        self.served = 0
        self.failed = 0
        self.rejected = 0
        self.restarts = 0

    # -- public face -------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """The pids of the live workers (started or starting)."""
        return [
            s.worker.pid
            for s in self._slots
            if s.worker is not None and s.worker.pid is not None
        ]

    def stats(self) -> dict[str, Any]:
        """Counters and gauges for the admin API."""
        workers = [s.worker for s in self._slots if s.worker is not None]
        return {
            "name": self.name,
            "state": self._state,
            "instances": self.instances,
            "workers": len(workers),
            "ready": sum(1 for w in workers if w.accepting),
            "busy": sum(1 for w in workers if w.in_flight),
            "queued": len(self._queue),
            "served": self.served,
            "failed": self.failed,
            "rejected": self.rejected,
            "restarts": self.restarts,
        }

    def start(self) -> Deferred[list[int]]:
        """
        Spawn the workers.

        @return: fires with their pids once every one sent C{ready}; fails
            with the first worker's error (its exit status and last stderr
            lines) if one ends before, after the others were stopped.
        """
        if self._state != _NEW:
            return fail(RuntimeError(f"pool {self.name} was already started"))
        self._state = _STARTING
        self._start_d = d = Deferred()
        for slot in self._slots:
            if self._state != _STARTING:
                break
            self._spawn(slot)
        return d

    def request(self, frame: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """
        Serve C{frame}, a C{request} frame without C{id}.

        @return: fires with the worker's C{response} frame dict, or fails
            with L{Overloaded}, L{PoolStopped}, L{RequestTimedOut},
            L{WorkerCrashed} or L{ProtocolViolation}.  Cancelling it drops a
            queued request; a dispatched one runs on and its answer is
            discarded.
        """
        if self._state not in (_STARTING, _RUNNING):
            self.rejected += 1
            return fail(PoolStopped(self._closed_message()))
        job = _Job(frame, self._reactor.seconds())
        job.deferred = d = Deferred(lambda _: self._cancel(job))
        if not self._queue:
            # The common case: nothing waits, so skip the queue if a worker has room.
            worker = self._least_busy()
            if worker is not None:
                self._send(worker, job)
                return d
        self._queue.append(job)
        self._dispatch()
        if job.worker is None:
            if len(self._queue) > self.queue_limit:
                # Still queued, so it is the last: dispatch takes from the front.
                self._queue.pop()
                self.rejected += 1
                return fail(
                    Overloaded(
                        f"{self.name}: all workers are busy and"
                        f" {self.queue_limit} requests are waiting",
                        retry_after=1,
                    )
                )
            job.timer = self._reactor.callLater(self.timeout, self._expired, job)
        return d

    def stop(self) -> Deferred[None]:
        """
        Stop accepting requests, serve those already accepted, then stop the
        workers (stdin closed, SIGTERM after C{drain_timeout}, SIGKILL after a
        further C{kill_time}).  Requests still queued at the drain deadline
        fail with L{PoolStopped}.

        @return: fires once every worker has ended.
        """
        if self._state in (_NEW, _STOPPED):
            self._state = _STOPPED
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._stop_waiters.append(d)
        if self._state != _STOPPING:
            self._begin_stop()
        return d

    # -- dispatch ----------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand queued requests to ready workers; re-entrant calls fold into the running loop."""
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._queue:
                worker = self._least_busy()
                if worker is None:
                    break
                self._send(worker, self._queue.popleft())
        finally:
            self._dispatching = False
        if self._state == _STOPPING:
            self._drain()

    def _least_busy(self) -> WorkerProcess | None:
        """The ready worker with the fewest requests in flight, if one has room."""
        best = None
        room = self.pipeline
        for worker in self._ready:
            load = len(self._lines[worker].jobs)
            if load < room and worker.accepting:
                best, room = worker, load
                if load == 0:
                    break
        return best

    def _send(self, worker: WorkerProcess, job: _Job) -> None:
        job.worker = worker
        if job.timer is not None:
            if job.timer.active():
                job.timer.cancel()  # the line's watchdog times it from here on
            job.timer = None
        line = self._lines[worker]
        line.jobs.append(job)
        if len(line.jobs) == 1:
            line.head_since = self._reactor.seconds()
        if line.watchdog is None:
            self._watch(worker, line)
        d = worker.request(job.frame)
        d.addCallbacks(
            self._answered,
            self._answered,
            callbackArgs=(worker, job),
            errbackArgs=(worker, job),
        )

    def _watch(self, worker: WorkerProcess, line: _Line) -> None:
        """Arm the watchdog for the earliest deadline in C{line}, if any."""
        deadline = None
        for job in line.jobs:
            due = (line.head_since if job is line.jobs[0] else job.since) + self.timeout
            if deadline is None or due < deadline:
                if job is line.jobs[0] or not job.deferred.called:
                    deadline = due
        if deadline is not None:
            delay = max(0.0, deadline - self._reactor.seconds())
            line.watchdog = self._reactor.callLater(delay, self._watchdog, worker, line)

    def _watchdog(self, worker: WorkerProcess, line: _Line) -> None:
        line.watchdog = None
        if not line.jobs or self._lines.get(worker) is not line:
            return
        now = self._reactor.seconds()
        head = line.jobs[0]
        if now - line.head_since >= self.timeout:
            error = RequestTimedOut(
                f"{self.name}: worker {worker.pid} gave no response within"
                f" {self.timeout:g}s and was killed"
            )
            self._log("gateway", error.message)
            self._settle(head, Failure(error))
            worker.kill(error)
            return
        for job in line.jobs:
            if job is not head and not job.deferred.called and now - job.since >= self.timeout:
                # It waits in the worker's pipe: the worker answers it later
                # (the answer is dropped); its service is timed then.
                self._settle(job, Failure(self._wait_expired()))
        self._watch(worker, line)

    def _wait_expired(self) -> RequestTimedOut:
        return RequestTimedOut(f"{self.name}: no worker was free within {self.timeout:g}s")

    def _answered(
        self, result: dict[str, Any] | Failure, worker: WorkerProcess, job: _Job
    ) -> None:
        if job.worker is not worker:
            return  # put back in the queue when its worker died; served elsewhere
        line = self._lines.get(worker)
        if line is not None:
            jobs = line.jobs
            if jobs and jobs[0] is job:
                jobs.popleft()
                line.head_since = self._reactor.seconds()
            elif job in jobs:
                jobs.remove(job)
        self._settle(job, result)
        if line is not None and line.jobs and not worker.accepting:
            self._requeue(line)
        if self._queue or self._state == _STOPPING:
            self._dispatch()

    def _requeue(self, line: _Line) -> None:
        """Requests written behind a failed one were never started: serve them elsewhere."""
        if line.watchdog is not None and line.watchdog.active():
            line.watchdog.cancel()
        line.watchdog = None
        now = self._reactor.seconds()
        while line.jobs:
            job = line.jobs.pop()
            job.worker = None
            if job.deferred.called:
                continue
            self._queue.appendleft(job)
            job.timer = self._reactor.callLater(
                max(0.0, job.since + self.timeout - now), self._expired, job
            )

    def _settle(self, job: _Job, result: dict[str, Any] | Failure) -> None:
        if job.deferred.called:
            return
        if isinstance(result, Failure):
            self.failed += 1
            job.deferred.errback(result)
        else:
            self.served += 1
            job.deferred.callback(result)

    def _expired(self, job: _Job) -> None:
        """A request waited its whole timeout in the pool's queue."""
        job.timer = None
        self._queue.remove(job)
        self._settle(job, Failure(self._wait_expired()))

    def _cancel(self, job: _Job) -> None:
        if job.worker is None:
            self._queue.remove(job)
            if job.timer is not None:
                job.timer.cancel()
        # A dispatched request runs on: its timer still guards the worker.

    def _fail_queue(self, error: GatewayError) -> None:
        while self._queue:
            job = self._queue.popleft()
            if job.timer is not None:
                job.timer.cancel()
            self._settle(job, Failure(error))

    # -- worker lifecycle --------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        worker = WorkerProcess(
            self.name,
            log=self._log,
            call_handler=self.call_handler,
            max_frame=self.max_frame,
            start_timeout=self.start_timeout,
            kill_time=self.kill_time,
            reactor=self._reactor,
        )
        slot.worker = worker
        worker.when_ready().addCallbacks(
            self._worker_ready, self._worker_not_ready, errbackArgs=(worker,)
        )
        worker.when_ended().addCallback(self._worker_ended, slot)
        try:
            self._reactor.spawnProcess(
                worker,
                self.argv[0],
                self.argv,
                env=self.env,
                path=self.cwd,
                childFDs={0: "w", 1: "r", 2: "r"},
                usePTY=False,
            )
        except Exception as e:
            worker.spawn_failed(e)

    def _worker_ready(self, worker: WorkerProcess) -> None:
        if not worker.accepting:
            return
        self._log(
            "gateway",
            f"worker {worker.pid} is ready (protocol {worker.protocol_version},"
            f" sdk {worker.sdk})",
        )
        self._ready.append(worker)
        self._lines[worker] = _Line()
        self._dispatch()
        if self._state == _STARTING and all(
            s.worker is not None and s.worker.accepting for s in self._slots
        ):
            self._state = _RUNNING
            d, self._start_d = self._start_d, None
            assert d is not None
            d.callback(self.pids)

    def _worker_not_ready(self, failure: Failure, worker: WorkerProcess) -> None:
        if self._state != _STARTING:
            return  # _worker_ended restarts it, or the pool is stopping anyway
        error = failure.value
        self._log("gateway", f"{self.name} failed to start: {error}")
        self._start_error = error
        self._fail_queue(error)
        self._begin_stop()

    def _worker_ended(self, worker: WorkerProcess, slot: _Slot) -> None:
        if slot.worker is worker:
            slot.worker = None
        if worker in self._ready:
            self._ready.remove(worker)
            line = self._lines.pop(worker)
            self._requeue(line)
            if self._queue:
                self._dispatch()
        if self._state not in (_STARTING, _RUNNING):
            self._drain()
            return
        uptime = self._reactor.seconds() - (worker.started_at or 0.0)
        if worker.served or (worker.started_at is not None and uptime >= self.stable_time):
            slot.delay = self.min_restart_delay
        delay = slot.delay
        slot.delay = min(delay * 2, self.max_restart_delay)
        self._log("gateway", f"restarting a worker of {self.name} in {delay:g}s")
        slot.restart = self._reactor.callLater(delay, self._restart, slot)

    def _restart(self, slot: _Slot) -> None:
        slot.restart = None
        self.restarts += 1
        self._spawn(slot)

    # -- stopping ----------------------------------------------------------

    def _closed_message(self) -> str:
        if self._state == _NEW:
            return f"{self.name} is not started"
        return f"{self.name} is {self._state}"

    def _begin_stop(self) -> None:
        self._state = _STOPPING
        for slot in self._slots:
            if slot.restart is not None and slot.restart.active():
                slot.restart.cancel()
            slot.restart = None
        self._drain_deadline = self._reactor.seconds() + self.drain_timeout
        self._drain_call = self._reactor.callLater(
            self.drain_timeout, self._drain_expired
        )
        self._dispatch()

    def _drain(self) -> None:
        """While stopping: stop each worker once nothing is left for it to do."""
        live = [s.worker for s in self._slots if s.worker is not None]
        if self._queue and not any(w.state in (STARTING, READY) for w in live):
            self._fail_queue(
                PoolStopped(f"{self.name} stopped before the request was served")
            )
        if not self._queue:
            remaining = max(0.0, self._drain_deadline - self._reactor.seconds())
            for worker in live:
                if worker.state in (STARTING, READY) and not worker.in_flight:
                    worker.stop(remaining)
        if not live and not self._queue:
            self._finish_stop()

    def _drain_expired(self) -> None:
        self._drain_call = None
        self._fail_queue(
            PoolStopped(f"{self.name} stopped before the request was served")
        )
        for slot in self._slots:
            worker = slot.worker
            if worker is not None and worker.state in (STARTING, READY):
                worker.stop(0)

    def _finish_stop(self) -> None:
        if self._state == _STOPPED:
            return
        self._state = _STOPPED
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        if self._start_d is not None:
            d, self._start_d = self._start_d, None
            d.errback(
                self._start_error
                or PoolStopped(f"{self.name} was stopped before it started")
            )
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)
