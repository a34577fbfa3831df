"""
A pool of identical workers serving one deployed version of an endpoint,
growing and shrinking between ``min_instances`` and ``max_instances``.

A worker is synchronous: it reads one request frame, answers it, then reads
the next.  The pool may still write up to ``pipeline`` requests to one worker
ahead of its answers: they wait in the worker's pipe instead of the gateway's
queue, which lets one reactor turn carry many frames each way.  Only the first
request written and not yet answered (the head) is being served, so when a
worker dies or is killed the head fails and the requests behind it, never
started, go back to the front of the queue for the next worker.  A new request
goes to the ready worker with the fewest requests in flight (the first such in
spawn order, so load gathers on the oldest workers and the newest go idle).

Policy:

  - ``min_instances`` workers are kept alive: ``start()`` spawns them, and one
    that ends without being asked to is replaced.  Spawns wait out a restart
    delay doubling from ``min_restart_delay`` to ``max_restart_delay``, like
    ``twisted.runner.procmon`` does, so a crash loop cannot become a fork
    storm; the delay is the pool's (not per worker) and also holds back the
    spawns made for load.  A worker that served a request or lived
    ``stable_time`` seconds resets it.
  - Scale up: while the requests waiting in the pool's queue outnumber what
    the starting workers will take once ready (``pipeline`` each), and fewer
    than ``max_instances`` workers are starting or ready, one more is spawned.
    With ``min_instances=0`` the first request spawns a worker and waits in the
    queue for its ``ready``.  If a worker fails to start while no other worker
    is ready or starting, the queued requests fail at once with its error
    (exit status and last stderr lines) instead of waiting out their timeout.
  - Scale down: a worker above ``min_instances`` idle (nothing in flight) for
    ``idle_timeout`` seconds is stopped gracefully, longest idle first.  One
    lazy timer per pool does it: armed when a worker goes idle and none is
    armed, it re-checks when it fires and re-arms for the next candidate, so
    the request path never touches the timer heap.
  - Recycling: a worker that was sent its limit of requests, drawn per worker
    from ``[max_requests, max_requests * 1.25]`` so that workers do not recycle
    together, gets no new requests; a replacement is spawned if the pool would
    otherwise fall below ``min_instances``; its stdin is closed once it answered
    everything it was sent, so no request fails because of recycling.

Draining workers (recycling, idle-stopping, or stopped with the pool) count
neither toward ``min_instances`` nor toward ``max_instances``: a pool of
``max_instances`` may briefly have more processes while old ones finish.

Concurrent workers: a worker whose ``ready`` announces a ``concurrency`` above
1 (an async handler, docs/sdk/async.md) serves every request it was sent at
once and answers in any order.  It gets up to the smaller of that and the
pool's ``concurrency`` in flight (instead of ``pipeline``); each request is
timed from its own send and one that overruns ``timeout`` fails alone (504)
while the others go on.  The worker is killed only when it also answered
nothing for a whole ``timeout`` (a blocked runtime, or every task stuck); when
it dies its requests fail (they had all started), none is served again.

Timeouts: ``timeout`` bounds the wait for service (in the queue, including a
worker's start, or behind other requests in a worker's pipe) and, separately,
the handler's run from the moment the request becomes its worker's head.  Only
the second kills the worker (it may be stuck); a request that waited its whole
timeout fails without harming anyone.  So a client waits at most about twice
``timeout``, and a worker is never killed for time it did not spend.
"""

from __future__ import annotations

import inspect
import os
import random as _random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import (
    GatewayError,
    Overloaded,
    PoolStopped,
    RequestTimedOut,
    WorkerCrashed,
)
from ..observability.trace import trace_id_of
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

_log = Logger(namespace="edgegw.workers")

Answer = Callable[[Any], object]
"""``answer(result)``: called once with a ``response`` frame dict or a ``Failure``."""

# Why a worker gets no new requests.
_RECYCLING, _IDLE = "recycling", "idle"

# Float slack when a lazy timer re-checks the deadline it was armed for.
_EPSILON = 1e-9


TracedLog = Callable[[str, str, "str | None"], object]
"""``log(stream, line, trace_id)``: a ``LogCallback`` that also takes the trace
id of the request a worker's stderr line is attributed to (None for none)."""


def traced_log(log: LogCallback) -> TracedLog:
    """
    ``log`` as a ``TracedLog``: itself when it takes a third argument (the
    LogBook's writers), else a wrapper that drops the trace id, so two-argument
    callbacks keep working.  Checked once, when a pool is made.
    """
    try:
        inspect.signature(log).bind("stderr", "line", None)
    except (TypeError, ValueError):
        return lambda stream, line, trace_id: log(stream, line)
    return cast(TracedLog, log)


def _trace_of(frame: Any) -> str | None:
    """The trace id in a request frame's ``traceparent`` header, if it has a valid one."""
    headers = frame.get("headers") if isinstance(frame, dict) else None
    return trace_id_of(headers.get("traceparent")) if isinstance(headers, dict) else None


class _Job:
    """
    One accepted request: queued while ``worker`` is None, then dispatched.
    ``answer`` is called once, with the response frame or a ``Failure``;
    ``done`` says it was.
    """

    __slots__ = ("frame", "answer", "done", "timer", "worker", "since", "sent_at")

    def __init__(self, frame: dict[str, Any], answer: Answer, since: float):
        self.frame = frame
        self.answer = answer
        self.done = False
        self.timer: Any = None  # only while waiting in the pool's queue
        self.worker: _Worker | None = None
        self.since = since
        self.sent_at = since  # when it was written to its worker


class _Worker:
    """
    One worker process as the pool sees it, from spawn to end.

    ``jobs`` are the requests written to it, in order; ``jobs[0]`` is being
    served.  One lazy watchdog per worker times them all, instead of a timer
    per request: it fires at the earliest deadline it knew of, re-checks, and
    re-arms for the next.

    :ivar sent: requests written to it.
    :ivar limit: ``sent`` at which it is recycled; 0 for never.
    :ivar draining: None while it may get requests, else why not
        (``_RECYCLING``, ``_IDLE``).
    :ivar stopped: the pool asked it to exit, so its end is no failure.
    :ivar idle_since: when its last request was answered (or it got ready).
    :ivar killed_for: why the pool killed it (``"timeout"``), so its end is
        counted once, under that reason.
    :ivar room: most requests in flight: the pool's ``pipeline``, or for a
        concurrent worker its announced concurrency capped by the pool's.
    :ivar concurrent: it serves all its requests at once (see the module
        docstring); ``head_since`` is then when it last answered one (or
        became busy).
    """

    __slots__ = (
        "process",
        "version",
        "jobs",
        "head_since",
        "watchdog",
        "sent",
        "limit",
        "draining",
        "stopped",
        "idle_since",
        "killed_for",
        "room",
        "concurrent",
    )

    def __init__(self, process: WorkerProcess, version: str | None, limit: int, room: int):
        self.process = process
        self.version = version
        self.jobs: deque[_Job] = deque()
        self.head_since = 0.0
        self.watchdog: Any = None
        self.sent = 0
        self.limit = limit
        self.draining: str | None = None
        self.stopped = False
        self.idle_since = 0.0
        self.killed_for: str | None = None
        self.room = room
        self.concurrent = False


class WorkerPool:
    """
    Workers of one binary, a FIFO queue in front of them.

    :ivar stable_time: a worker that lived this many seconds, or served a
        request, proves the binary works: the next restart delay is
        ``min_restart_delay`` again.
    :ivar served: requests answered by a worker.
    :ivar failed: accepted requests that failed (crash, timeout, violation,
        failed start).
    :ivar rejected: requests refused at once (queue full, pool stopped).
    :ivar spawned: worker processes spawned, the first ones included.
    :ivar restarts: workers spawned to replace one that ended without being
        asked to (crash, kill, failed start).
    :ivar recycled: workers retired after their ``max_requests``.
    :ivar scaled_down: workers stopped after ``idle_timeout``.
    """

    stable_time = 10.0

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        min_instances: int = 1,
        max_instances: int = 1,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        log: LogCallback | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_queue: int = 1000,
        max_requests: int = 0,
        idle_timeout: float | None = 60.0,
        drain_timeout: float = 10.0,
        min_restart_delay: float = 0.1,
        max_restart_delay: float = 30.0,
        start_timeout: float = 10.0,
        kill_time: float = 5.0,
        call_handler: CallHandler | None = None,
        pipeline: int = 1,
        concurrency: int = 1,
        version: str | None = None,
        random: _random.Random | None = None,
        launcher: Sequence[str] = (),
        process_group: bool = False,
        frame_fds: Sequence[int] = (0, 1),
        reactor: Any = None,
    ):
        """
        :param argv: the binary and its arguments; ``argv[0]`` is executed.
        :param min_instances: workers kept alive, 0 to scale to zero.
        :param max_instances: most workers starting or serving at once.
        :param env: the worker's whole environment (nothing is inherited).
        :param log: ``log(stream, line)``, see ``LogCallback``; one that
            takes a third argument also gets the trace id of a worker's stderr
            lines (see ``_worker_log``).
        :param max_queue: most requests waiting in the pool's queue (not
            counting those written to workers); beyond, ``Overloaded``.
        :param max_requests: requests sent to a worker before it is recycled,
            jittered up to +25% per worker; 0 for never.
        :param idle_timeout: seconds a worker above ``min_instances`` may stay
            idle before it is stopped; None for never.
        :param drain_timeout: seconds between closing a stopping worker's
            stdin and SIGTERM.
        :param start_timeout: seconds a worker has to send ``ready``.
        :param kill_time: seconds between SIGTERM and SIGKILL.
        :param call_handler: answers the workers' service calls; the default
            answers ``ServiceUnavailable``.
        :param pipeline: most requests written to one worker ahead of its
            answers (1: strictly one at a time).
        :param concurrency: most requests in flight on one worker that
            serves many at once (its ``ready`` announces how many it takes;
            the smaller of the two applies).
        :param version: an opaque label (a digest) reported with each worker.
        :param random: draws the recycling limits; a new ``random.Random()``
            by default.
        :param launcher: an argv put before ``argv`` that sets the worker up
            and execs it (``edgegw_tx.workers.isolation``); ``launcher[0]`` is
            then what is executed.
        :param process_group: each worker leads its own process group (the
            launcher runs ``setsid``): stopping or killing it signals the
            whole group (see ``WorkerProcess``).
        :param frame_fds: the child descriptors the frame pipes are given on
            (requests to the worker, frames from it): (0, 1), or the
            launcher's (``edgegw_tx.workers.isolation.FRAME_FDS``), which
            then gets /dev/null as its stdin and stdout.
        :param reactor: spawns the processes and provides the clock.
        """
        if reactor is None:
            # Imported under another name: compiled (edgegw_tx/compiled.py), an import
            # inside a function binds a module global, not the parameter.
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        if min_instances < 0:
            raise ValueError("min_instances must not be negative")
        if max_instances < 1:
            raise ValueError("a pool needs at least one instance")
        if max_instances < min_instances:
            raise ValueError("max_instances must be at least min_instances")
        if not argv:
            raise ValueError("argv must name the binary")
        if pipeline < 1:
            raise ValueError("pipeline must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_queue < 0:
            raise ValueError("max_queue must not be negative")
        if max_requests < 0:
            raise ValueError("max_requests must not be negative")
        if idle_timeout is not None and idle_timeout < 0:
            raise ValueError("idle_timeout must not be negative")
        self.name = name
        self.argv = list(argv)
        self.min_instances = min_instances
        self.max_instances = max_instances
        self.timeout = timeout
        self.env = env or {}
        self.cwd = cwd
        self.max_frame = max_frame
        self.max_queue = max_queue
        self.max_requests = max_requests
        self.idle_timeout = idle_timeout
        self.drain_timeout = drain_timeout
        self.min_restart_delay = min_restart_delay
        self.max_restart_delay = max_restart_delay
        self.start_timeout = start_timeout
        self.kill_time = kill_time
        self.call_handler = call_handler
        self.pipeline = pipeline
        self.concurrency = concurrency
        self.launcher = list(launcher)
        self.process_group = process_group
        in_fd, out_fd = frame_fds
        self.frame_fds = (in_fd, out_fd)
        self.version = version
        self._random = random if random is not None else _random.Random()
        self._log = log or twisted_log
        self._traced_log = traced_log(self._log)
        self._reactor = reactor

        self._state = _NEW
        # Every worker from spawn to end, in spawn order.
        self._workers: dict[WorkerProcess, _Worker] = {}
        # The workers that take new requests: ready and not draining.
        self._ready: list[_Worker] = []
        self._queue: deque[_Job] = deque()
        self._dispatching = False
        self._scaling = False
        # Restart backoff, the pool's: no spawn before _not_before; the next
        # failure waits _delay.
        self._delay = min_restart_delay
        self._not_before = 0.0
        self._spawn_call: Any = None
        self._idle_call: Any = None
        self._debt = 0  # workers that ended unasked and were not replaced yet
        self._start_d: Deferred[list[int]] | None = None
        self._start_error: BaseException | None = None
        self._stop_waiters: list[Deferred[None]] = []
        self._drain_call: Any = None
        self._drain_deadline = 0.0

        self.served = 0
        self.failed = 0
        self.rejected = 0
        self.spawned = 0
        self.restarts = 0
        self.recycled = 0
        # Where the data plane's observer remembers this endpoint's request
        # counters (gateway/observe.py): declared, as a compiled pool takes
        # no attribute it does not declare.
        self._edgegw_series: tuple[object, object] | None = None
        self.scaled_down = 0
        # Workers that ended unasked, by why (edgegw_worker_restarts_total{reason}).
        self.crashed = 0
        self.timed_out = 0
        self.out_of_memory = 0

    # -- public face -------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """The pids of the live workers (starting, ready or draining)."""
        return [p.pid for p in self._workers if p.pid is not None]

    def workers(self) -> list[dict[str, Any]]:
        """
        The live workers, in spawn order: ``pid``, ``version``, ``state``
        (``starting``, ``ready`` when idle, ``busy`` with requests in flight,
        ``draining`` when recycling, idle-stopping or stopping), ``served``
        (responses delivered) and ``in_flight``.
        """
        return [
            {
                "pid": w.process.pid,
                "version": w.version,
                "state": self._worker_state(w),
                "served": w.process.served,
                "in_flight": w.process.in_flight,
            }
            for w in self._workers.values()
        ]

    def stats(self) -> dict[str, Any]:
        """
        Counters and gauges for the admin API. How long requests took is the
        data plane's to count (``observability.metrics.RequestMetrics``, from
        the request's head to its answer), once, for /metrics and the charts.
        """
        states = [self._worker_state(w) for w in self._workers.values()]
        return {
            "name": self.name,
            "state": self._state,
            "version": self.version,
            "min_instances": self.min_instances,
            "max_instances": self.max_instances,
            "workers": len(states),
            "starting": states.count("starting"),
            "ready": len(self._ready),
            "busy": sum(1 for w in self._workers.values() if w.jobs),
            "draining": states.count("draining"),
            "queued": len(self._queue),
            "served": self.served,
            "failed": self.failed,
            "rejected": self.rejected,
            "spawned": self.spawned,
            "restarts": self.restarts,
            "recycled": self.recycled,
            "scaled_down": self.scaled_down,
            "crashed": self.crashed,
            "timed_out": self.timed_out,
            "out_of_memory": self.out_of_memory,
        }

    def start(self) -> Deferred[list[int]]:
        """
        Spawn ``min_instances`` workers.

        :return: fires with their pids once every one sent ``ready`` (at once
            with ``[]`` when ``min_instances`` is 0); fails with the first
            worker's error (its exit status and last stderr lines) if one ends
            before, after the others were stopped.
        """
        if self._state != _NEW:
            return fail(RuntimeError(f"pool {self.name} was already started"))
        if self.min_instances == 0:
            self._state = _RUNNING
            return succeed([])
        self._state = _STARTING
        self._start_d = d = Deferred[list[int]]()
        for _ in range(self.min_instances):
            if self._state != _STARTING:
                break
            self._spawn()
        return d

    def request(self, frame: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """
        Serve ``frame``, a ``request`` frame without ``id``.

        :return: fires with the worker's ``response`` frame dict, or fails
            with ``Overloaded``, ``PoolStopped``, ``RequestTimedOut``,
            ``WorkerCrashed`` or ``ProtocolViolation``.  Cancelling it drops a
            queued request; a dispatched one runs on and its answer is
            discarded.
        """
        job: _Job | None = None

        def answer(result: Any) -> None:
            if not d.called:
                d.callback(result)  # a Failure runs the errbacks

        def cancel(_: Deferred[dict[str, Any]]) -> None:
            if job is not None:
                self._cancel(job)

        d: Deferred[dict[str, Any]] = Deferred(cancel)
        job = self._accept(frame, answer)
        return d

    def submit(self, frame: dict[str, Any], answer: Answer) -> None:
        """
        ``request`` without a Deferred, for the data plane's hot path:
        ``answer`` is called exactly once, with the ``response`` frame or a
        ``Failure`` of the same errors, possibly before this returns.  The
        pool owns ``frame`` from then on.
        """
        self._accept(frame, answer)

    def _accept(self, frame: dict[str, Any], answer: Answer) -> _Job | None:
        """Take a request: to a worker with room, else the queue; None if refused."""
        if self._state not in (_STARTING, _RUNNING):
            self.rejected += 1
            answer(Failure(PoolStopped(self._closed_message())))
            return None
        job = _Job(frame, answer, self._reactor.seconds())
        if not self._queue:
            # The common case: nothing waits, so skip the queue if a worker has room.
            worker = self._least_busy()
            if worker is not None:
                self._send(worker, job)
                return job
        self._queue.append(job)
        self._dispatch()
        if job.worker is None:
            if len(self._queue) > self.max_queue:
                # Still queued, so it is the last: dispatch takes from the front.
                self._queue.pop()
                self.rejected += 1
                answer(
                    Failure(
                        Overloaded(
                            f"{self.name}: all workers are busy and"
                            f" {self.max_queue} requests are waiting",
                            retry_after=1,
                        )
                    )
                )
                return None
            job.timer = self._reactor.callLater(self.timeout, self._expired, job)
            self._scale()
        return job

    def stop(self) -> Deferred[None]:
        """
        Stop accepting requests, serve those already accepted, then stop the
        workers (stdin closed, SIGTERM after ``drain_timeout``, SIGKILL after a
        further ``kill_time``).  Requests still queued at the drain deadline
        fail with ``PoolStopped``.

        :return: fires once every worker has ended.
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

    def _least_busy(self) -> _Worker | None:
        """The ready worker with the fewest requests in flight, if one has room."""
        best = None
        least = 0
        for worker in self._ready:
            load = len(worker.jobs)
            if load < worker.room and (best is None or load < least) and worker.process.accepting:
                best, least = worker, load
                if load == 0:
                    break
        return best

    def _send(self, worker: _Worker, job: _Job) -> None:
        job.worker = worker
        if job.timer is not None:
            if job.timer.active():
                job.timer.cancel()  # the worker's watchdog times it from here on
            job.timer = None
        jobs = worker.jobs
        jobs.append(job)
        if len(jobs) == 1:
            worker.head_since = self._reactor.seconds()
        if worker.concurrent:
            job.sent_at = self._reactor.seconds()
        if worker.watchdog is None:
            self._watch(worker)
        worker.sent += 1
        # A plain callback, not a Deferred: one allocation fewer per request.
        worker.process.send(job.frame, lambda result: self._answered(result, worker, job))
        if worker.sent == worker.limit:
            self.recycled += 1
            self._log(
                "gateway",
                f"recycling worker {worker.process.pid} of {self.name}"
                f" after {worker.sent} requests",
            )
            self._retire(worker, _RECYCLING)

    def _watch(self, worker: _Worker) -> None:
        """Arm the watchdog for the earliest deadline among ``worker``'s requests, if any."""
        deadline = None
        jobs = worker.jobs
        if worker.concurrent:
            for job in jobs:
                # A request that failed its timeout and is still running
                # counts from the worker's last answer (the kill rule).
                due = (job.sent_at if not job.done else worker.head_since) + self.timeout
                if deadline is None or due < deadline:
                    deadline = due
            jobs = deque()
        for job in jobs:
            due = (worker.head_since if job is jobs[0] else job.since) + self.timeout
            if deadline is None or due < deadline:
                if job is jobs[0] or not job.done:
                    deadline = due
        if deadline is not None:
            delay = max(0.0, deadline - self._reactor.seconds())
            worker.watchdog = self._reactor.callLater(delay, self._watchdog, worker)

    def _watchdog(self, worker: _Worker) -> None:
        worker.watchdog = None
        if not worker.jobs or self._workers.get(worker.process) is not worker:
            return
        now = self._reactor.seconds()
        jobs = worker.jobs
        if worker.concurrent:
            self._watchdog_concurrent(worker, now)
            return
        head = jobs[0]
        pid = worker.process.pid
        if now - worker.head_since >= self.timeout:
            error = RequestTimedOut(
                f"{self.name}: worker {pid} gave no response within"
                f" {self.timeout:g}s and was killed"
            )
            self._log("gateway", error.message)
            self._settle(head, Failure(error))
            worker.killed_for = "timeout"
            self.timed_out += 1
            worker.process.kill(error)
            return
        for job in jobs:
            if job is not head and not job.done and now - job.since >= self.timeout:
                # It waits in the worker's pipe: the worker answers it later
                # (the answer is dropped); its service is timed then.
                self._settle(job, Failure(self._wait_expired()))
        self._watch(worker)

    def _watchdog_concurrent(self, worker: _Worker, now: float) -> None:
        """
        Fail each request of a concurrent worker that overran ``timeout``
        from its own send; kill the worker if it holds an overdue request
        and answered nothing for a whole ``timeout``.
        """
        overdue = False
        for job in worker.jobs:
            if job.done:
                overdue = True
            elif now - job.sent_at >= self.timeout:
                overdue = True
                self._settle(
                    job,
                    Failure(
                        RequestTimedOut(
                            f"{self.name}: worker {worker.process.pid} gave no"
                            f" response within {self.timeout:g}s"
                        )
                    ),
                )
        if overdue and now - worker.head_since >= self.timeout:
            error = RequestTimedOut(
                f"{self.name}: worker {worker.process.pid} answered nothing"
                f" within {self.timeout:g}s and was killed"
            )
            self._log("gateway", error.message)
            worker.killed_for = "timeout"
            self.timed_out += 1
            worker.process.kill(error)
            return
        self._watch(worker)

    def _wait_expired(self) -> RequestTimedOut:
        return RequestTimedOut(f"{self.name}: no worker was free within {self.timeout:g}s")

    def _answered(
        self, result: dict[str, Any] | Failure, worker: _Worker, job: _Job
    ) -> None:
        if job.worker is not worker:
            return  # put back in the queue when its worker died; served elsewhere
        jobs = worker.jobs
        if jobs and jobs[0] is job:
            jobs.popleft()
            worker.head_since = self._reactor.seconds()
        elif job in jobs:
            jobs.remove(job)
            if worker.concurrent:
                worker.head_since = self._reactor.seconds()
        self._settle(job, result)
        if jobs:
            if not worker.process.accepting and not worker.concurrent:
                self._requeue(worker)
                self._scale()
        elif worker.process.accepting:
            if worker.draining is not None:
                self._stop_worker(worker)  # recycling: all it was sent is answered
            else:
                self._became_idle(worker)
        if self._queue or self._state == _STOPPING:
            self._dispatch()

    def _requeue(self, worker: _Worker) -> None:
        """Requests written behind a failed one were never started: serve them elsewhere."""
        if worker.watchdog is not None and worker.watchdog.active():
            worker.watchdog.cancel()
        worker.watchdog = None
        now = self._reactor.seconds()
        jobs = worker.jobs
        if worker.concurrent:
            # Every one had started: none may run twice.  The worker's end
            # failed them already (WorkerProcess fails what is pending).
            error = WorkerCrashed(f"worker {worker.process.pid} of {self.name} ended")
            while jobs:
                job = jobs.popleft()
                job.worker = None
                self._settle(job, Failure(error))
            return
        while jobs:
            job = jobs.pop()
            job.worker = None
            if job.done:
                continue
            self._queue.appendleft(job)
            job.timer = self._reactor.callLater(
                max(0.0, job.since + self.timeout - now), self._expired, job
            )

    def _settle(self, job: _Job, result: dict[str, Any] | Failure) -> None:
        if job.done:
            return
        job.done = True
        if isinstance(result, Failure):
            self.failed += 1
        else:
            self.served += 1
        try:
            job.answer(result)
        except Exception:
            # The caller's bug must not break the worker's frame delivery.
            _log.failure("answering a request of {name} failed", name=self.name)

    def _expired(self, job: _Job) -> None:
        """A request waited its whole timeout in the pool's queue."""
        job.timer = None
        self._queue.remove(job)
        self._settle(job, Failure(self._wait_expired()))

    def _cancel(self, job: _Job) -> None:
        """The caller gave up on ``job``: its answer is no longer wanted."""
        job.done = True
        if job.worker is None:
            self._queue.remove(job)
            if job.timer is not None:
                job.timer.cancel()
        # A dispatched request runs on: its worker's watchdog still guards it.

    def _fail_queue(self, error: BaseException) -> None:
        while self._queue:
            job = self._queue.popleft()
            if job.timer is not None:
                job.timer.cancel()
            self._settle(job, Failure(error))

    # -- policy ------------------------------------------------------------

    def _scale(self) -> None:
        """
        Spawn what the policy asks for now, one worker at a time, re-counting
        after each: up to ``min_instances``, then one more while the queue holds
        more than the starting workers will take, below ``max_instances``.
        Spawns wait for the restart backoff on a single lazy timer.
        """
        if self._scaling:
            return  # the running loop re-counts after each spawn
        self._scaling = True
        try:
            while self._spawn_wanted():
                now = self._reactor.seconds()
                if now < self._not_before:
                    if self._spawn_call is None:
                        self._spawn_call = self._reactor.callLater(
                            self._not_before - now, self._spawn_due
                        )
                    return
                worker = self._spawn()
                if worker.process not in self._workers:
                    # Ended at once (spawnProcess raised): retry on the clock
                    # if still wanted, never in this loop.
                    if self._spawn_call is None and self._spawn_wanted():
                        self._spawn_call = self._reactor.callLater(
                            max(0.0, self._not_before - now), self._spawn_due
                        )
                    return
        finally:
            self._scaling = False

    def _spawn_wanted(self) -> bool:
        if self._state not in (_STARTING, _RUNNING):
            return False
        active = starting = 0
        for worker in self._workers.values():
            if worker.draining is None:
                active += 1
                if worker.process.state == STARTING:
                    starting += 1
        if active < self.min_instances:
            return True
        # While starting, the first workers take the queue once ready.
        return (
            self._state == _RUNNING
            and active < self.max_instances
            and len(self._queue) > starting * self.pipeline
        )

    def _spawn_due(self) -> None:
        self._spawn_call = None
        self._scale()

    def _became_idle(self, worker: _Worker) -> None:
        """``worker`` has nothing in flight: time it for scale-down if the pool is above its minimum."""
        worker.idle_since = self._reactor.seconds()
        if (
            self._idle_call is None
            and self.idle_timeout is not None
            and self._state == _RUNNING
            and len(self._workers) > self.min_instances
        ):
            self._idle_call = self._reactor.callLater(self.idle_timeout, self._idle_check)

    def _idle_check(self) -> None:
        """The lazy scale-down timer: stop the workers idle long enough, re-arm for the next."""
        self._idle_call = None
        if self._state != _RUNNING or self.idle_timeout is None:
            return
        excess = (
            sum(1 for w in self._workers.values() if w.draining is None)
            - self.min_instances
        )
        if excess <= 0:
            return
        now = self._reactor.seconds()
        idle = sorted(
            (w for w in self._ready if not w.jobs and w.process.accepting),
            key=lambda w: w.idle_since,
        )
        for worker in idle:
            due = worker.idle_since + self.idle_timeout
            if due > now + _EPSILON:
                self._idle_call = self._reactor.callLater(due - now, self._idle_check)
                return
            self.scaled_down += 1
            self._log(
                "gateway",
                f"stopping worker {worker.process.pid} of {self.name}:"
                f" idle for {self.idle_timeout:g}s",
            )
            self._retire(worker, _IDLE)
            excess -= 1
            if excess == 0:
                return

    def _retire(self, worker: _Worker, reason: str) -> None:
        """
        Send ``worker`` no new requests; replace it if the pool needs it, then
        stop it once it has answered all it was sent.
        """
        worker.draining = reason
        if worker in self._ready:
            self._ready.remove(worker)
        self._scale()
        if not worker.jobs:
            self._stop_worker(worker)

    def _stop_worker(self, worker: _Worker) -> None:
        """Close its stdin (it exits 0); SIGTERM and SIGKILL follow as in stop()."""
        if worker.stopped:
            return
        worker.stopped = True
        if self._state == _STOPPING:
            timeout = max(0.0, self._drain_deadline - self._reactor.seconds())
        else:
            timeout = self.drain_timeout
        worker.process.stop(timeout)

    def _worker_state(self, worker: _Worker) -> str:
        state = worker.process.state
        if worker.draining is not None or worker.stopped or state not in (STARTING, READY):
            return "draining"
        if state == STARTING:
            return "starting"
        return "busy" if worker.jobs else "ready"

    # -- worker lifecycle --------------------------------------------------

    def _worker_log(self, holder: list[_Worker]) -> LogCallback:
        """
        The log of one worker's process: its stderr lines get the trace id of
        the oldest request sent to it and not yet answered, the one it serves
        (it serves one at a time).  A best guess: stderr and the answers come
        through separate pipes, so a line read after its request's answer goes
        with the next request, or none (docs/sdk/request.md).
        """
        traced = self._traced_log

        def log(stream: str, line: str) -> object:
            jobs = holder[0].jobs if holder and stream == "stderr" else None
            if jobs and holder[0].concurrent and len(jobs) > 1:
                jobs = None  # many requests run at once: no single one to name
            return traced(stream, line, _trace_of(jobs[0].frame) if jobs else None)

        return log

    def _spawn(self) -> _Worker:
        holder: list[_Worker] = []
        process = WorkerProcess(
            self.name,
            log=self._worker_log(holder),
            call_handler=self.call_handler,
            max_frame=self.max_frame,
            start_timeout=self.start_timeout,
            kill_time=self.kill_time,
            process_group=self.process_group,
            frame_fds=self.frame_fds,
            reactor=self._reactor,
        )
        limit = 0
        if self.max_requests:
            limit = self._random.randint(
                self.max_requests, int(self.max_requests * 1.25)
            )
        worker = _Worker(process, self.version, limit, self.pipeline)
        holder.append(worker)
        self._workers[process] = worker
        self.spawned += 1
        if self._debt:
            self._debt -= 1
            self.restarts += 1
        process.when_ready().addCallbacks(
            self._worker_ready, self._worker_not_ready, errbackArgs=(process,)
        )
        process.when_ended().addCallback(self._worker_ended)
        argv = self.launcher + self.argv
        in_fd, out_fd = self.frame_fds
        null = None
        try:
            child_fds: dict[int, Any] = {in_fd: "w", out_fd: "r", 2: "r"}
            if (in_fd, out_fd) != (0, 1):
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                child_fds.update({0: null, 1: null})
            self._reactor.spawnProcess(
                process,
                argv[0],
                argv,
                env=self.env,
                path=self.cwd,
                childFDs=child_fds,
                usePTY=False,
            )
        except Exception as e:
            process.spawn_failed(e)
        finally:
            if null is not None:
                os.close(null)
        return worker

    def _worker_ready(self, process: WorkerProcess) -> None:
        worker = self._workers.get(process)
        if worker is None or not process.accepting or worker.draining is not None:
            return
        if process.concurrency > 1:
            worker.concurrent = True
            worker.room = min(process.concurrency, self.concurrency)
        concurrency = f", {worker.room} requests at once" if worker.concurrent else ""
        self._log(
            "gateway",
            f"worker {process.pid} is ready (protocol {process.protocol_version},"
            f" sdk {process.sdk}{concurrency})",
        )
        self._ready.append(worker)
        self._dispatch()
        started = self._state == _STARTING and len(self._ready) >= self.min_instances
        if started:
            self._state = _RUNNING
        self._scale()
        if not worker.jobs and worker in self._ready:
            self._became_idle(worker)
        if started and self._start_d is not None:
            d, self._start_d = self._start_d, None
            d.callback(self.pids)

    def _worker_not_ready(self, failure: Failure, process: WorkerProcess) -> None:
        error = failure.value
        assert error is not None, "a Failure always holds its exception"
        if self._state == _STARTING:
            self._log("gateway", f"{self.name} failed to start: {error}")
            self._start_error = error
            self._fail_queue(error)
            self._begin_stop()
        elif self._state == _RUNNING:
            self._log("gateway", f"a worker of {self.name} failed to start: {error}")
            if not any(
                w.draining is None and w.process.state in (STARTING, READY)
                for p, w in self._workers.items()
                if p is not process
            ):
                # Nothing else will serve the queue: say why now rather
                # than let every request wait out its timeout.
                self._fail_queue(error)
        # Otherwise the pool is stopping anyway.

    def _worker_ended(self, process: WorkerProcess) -> None:
        worker = self._workers.pop(process, None)
        if worker is None:
            return
        if worker in self._ready:
            self._ready.remove(worker)
        self._requeue(worker)
        if self._queue:
            self._dispatch()
        if self._state not in (_STARTING, _RUNNING):
            self._drain()
            return
        if not worker.stopped:
            self._count_end(worker)
            self._backoff(worker)
        self._scale()

    def _count_end(self, worker: _Worker) -> None:
        """A worker ended unasked: count why (a timeout kill was counted when it was killed)."""
        if worker.killed_for is not None:
            return
        # Past its memory limit (RLIMIT_AS) a Rust worker's allocation fails:
        # the runtime prints this line and aborts.
        if any("memory allocation of" in line for line in worker.process.stderr_tail):
            self.out_of_memory += 1
        else:
            self.crashed += 1

    def _backoff(self, worker: _Worker) -> None:
        """A worker ended without being asked to: hold the next spawn back."""
        process = worker.process
        now = self._reactor.seconds()
        uptime = now - (process.started_at or 0.0)
        if process.served or (process.started_at is not None and uptime >= self.stable_time):
            self._delay = self.min_restart_delay
        if now >= self._not_before:
            # Deaths while a delay runs share it rather than doubling it again.
            delay = self._delay
            self._delay = min(delay * 2, self.max_restart_delay)
            self._not_before = now + delay
        self._debt += 1
        active = sum(1 for w in self._workers.values() if w.draining is None)
        if active < self.min_instances:
            self._log(
                "gateway",
                f"restarting a worker of {self.name} in {self._not_before - now:g}s",
            )

    # -- stopping ----------------------------------------------------------

    def _closed_message(self) -> str:
        if self._state == _NEW:
            return f"{self.name} is not started"
        return f"{self.name} is {self._state}"

    def _begin_stop(self) -> None:
        self._state = _STOPPING
        for name in ("_spawn_call", "_idle_call"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)
        self._drain_deadline = self._reactor.seconds() + self.drain_timeout
        self._drain_call = self._reactor.callLater(
            self.drain_timeout, self._drain_expired
        )
        self._dispatch()

    def _drain(self) -> None:
        """While stopping: stop each worker once nothing is left for it to do."""
        live = list(self._workers.values())
        if self._queue and not any(
            w.draining is None and w.process.state in (STARTING, READY) for w in live
        ):
            self._fail_queue(
                PoolStopped(f"{self.name} stopped before the request was served")
            )
        if not self._queue:
            for worker in live:
                if worker.process.state in (STARTING, READY) and not worker.jobs:
                    self._stop_worker(worker)
        if not live and not self._queue:
            self._finish_stop()

    def _drain_expired(self) -> None:
        self._drain_call = None
        self._fail_queue(
            PoolStopped(f"{self.name} stopped before the request was served")
        )
        for worker in list(self._workers.values()):
            if worker.process.state in (STARTING, READY):
                worker.stopped = True
                worker.process.stop(0)

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
        for waiter in waiters:
            waiter.callback(None)
