"""
Tests for L{edgegw_tx.workers.pool}, on a fake process reactor: no real
processes, no real time.
"""

import random

from twisted.internet.defer import CancelledError

from edgegw_tx.errors import (
    Overloaded,
    PoolStopped,
    ProtocolViolation,
    RequestTimedOut,
    WorkerCrashed,
)
from edgegw_tx.workers.framing import encode_frame

from tests.support.workers import READY_FRAME
from tests.support.workers import PoolTestCase


class PoolTests(PoolTestCase):
    def test_spawn_arguments(self):
        """Workers get argv, a cleared environment, the cwd and three pipes."""
        pool = self.pool(min_instances=2, max_instances=2, env={"A": "1"}, cwd="/sandbox")
        pool.start()
        self.assertEqual(len(self.reactor.processes), 2)
        for process in self.reactor.processes:
            self.assertEqual(process.argv, ["/srv/handler", "-v"])
            self.assertEqual(process.env, {"A": "1"})
            self.assertEqual(process.path, "/sandbox")
            self.assertEqual(process.childFDs, {0: "w", 1: "r", 2: "r"})
        self.pool().start()
        self.assertEqual(self.reactor.processes[-1].env, {})

    def test_moved_frame_pipes(self):
        """
        With frame_fds (3, 4) the pipes are the child's 3 and 4 and its stdin
        and stdout are /dev/null (closed again in the gateway once spawned).
        """
        import os

        before = set(os.listdir("/proc/self/fd"))
        self.pool(frame_fds=(3, 4)).start()
        [process] = self.reactor.processes
        null = process.childFDs.pop(0)
        self.assertEqual(process.childFDs, {1: null, 2: "r", 3: "w", 4: "r"})
        self.assertEqual(set(os.listdir("/proc/self/fd")), before)

    def test_start_waits_for_ready(self):
        """start() fires with the pids only once every worker sent ready."""
        pool = self.pool(min_instances=2, max_instances=2)
        d = pool.start()
        first, second = self.reactor.processes
        first.send(READY_FRAME)
        self.assertNoResult(d)
        second.send(READY_FRAME)
        self.assertEqual(self.successResultOf(d), [100, 101])
        self.assertEqual(pool.pids, [100, 101])

    def test_start_fails_when_worker_exits(self):
        """
        A worker exiting before ready fails start() with its status and last
        stderr lines, once the other workers were stopped too; none restarts.
        """
        pool = self.pool(min_instances=2, max_instances=2)
        d = pool.start()
        first, second = self.reactor.processes
        second.send(READY_FRAME)
        first.stderr(b"thread 'main' panicked at 'no DATABASE_URL'\n")
        first.exit(101)
        self.assertNoResult(d)
        self.assertTrue(second.stdin_closed)
        second.exit(0)
        f = self.failureResultOf(d, WorkerCrashed)
        self.assertEqual(
            f.value.message,
            "worker 100 of hello exited with status 101 before sending ready;"
            " last stderr lines:\nthread 'main' panicked at 'no DATABASE_URL'",
        )
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 2)
        self.assertEqual(pool.pids, [])
        self.successResultOf(pool.stop())

    def test_start_fails_when_spawn_fails(self):
        """A spawnProcess error fails start() with the error."""
        self.reactor.spawn_error = OSError(24, "Too many open files")
        f = self.failureResultOf(self.pool().start(), WorkerCrashed)
        self.assertIn("could not be spawned", f.value.message)
        self.assertIn("Too many open files", f.value.message)

    def test_request_served(self):
        """A request goes to an idle worker with an id; its response fires the Deferred."""
        pool = self.started()
        [process] = self.reactor.processes
        d = pool.request({"method": "GET", "path": "/a"})
        [sent] = self.requests(process)
        self.assertEqual(sent, {"type": "request", "id": 1, "method": "GET", "path": "/a"})
        self.respond(process)
        self.assertEqual(
            self.successResultOf(d),
            {"type": "response", "id": 1, "status": 200, "headers": {}, "body": "/a"},
        )
        self.assertEqual(pool.stats()["served"], 1)

    def test_fifo_queue(self):
        """With every worker busy, requests wait and are served in arrival order."""
        pool = self.started()
        [process] = self.reactor.processes
        ds = [pool.request({"path": f"/{i}"}) for i in range(3)]
        self.assertEqual([r["path"] for r in self.requests(process)], ["/0"])
        self.assertEqual(pool.stats()["queued"], 2)
        for i in range(3):
            self.respond(process)
            self.assertEqual(self.successResultOf(ds[i])["body"], f"/{i}")
        self.assertEqual([r["path"] for r in self.requests(process)], ["/0", "/1", "/2"])

    def test_requests_before_ready_wait(self):
        """Requests made while the pool starts are served once a worker is ready."""
        pool = self.pool()
        pool.start()
        d = pool.request({"path": "/early"})
        [process] = self.reactor.processes
        process.send(READY_FRAME)
        self.respond(process)
        self.assertEqual(self.successResultOf(d)["body"], "/early")

    def test_parallel_workers(self):
        """Each idle worker takes one request."""
        pool = self.started(min_instances=2, max_instances=2)
        pool.request({"path": "/a"})
        pool.request({"path": "/b"})
        first, second = self.reactor.processes
        self.assertEqual([r["path"] for r in self.requests(first)], ["/a"])
        self.assertEqual([r["path"] for r in self.requests(second)], ["/b"])

    def test_timeout_kills_and_replaces(self):
        """
        A request unanswered after the timeout fails with 504; its worker is
        killed and replaced, and the queued request is served by the replacement.
        """
        pool = self.started(timeout=5, min_restart_delay=0.5)
        [process] = self.reactor.processes
        d = pool.request({"path": "/slow"})
        self.reactor.advance(1)
        queued = pool.request({"path": "/next"})
        self.reactor.advance(3.5)
        self.assertNoResult(d)
        self.reactor.advance(0.5)
        f = self.failureResultOf(d, RequestTimedOut)
        self.assertEqual(f.value.status, 504)
        self.assertEqual(
            f.value.message, "hello: worker 100 gave no response within 5s and was killed"
        )
        self.assertEqual(process.signals, ["KILL"])
        process.exit(signal=9)
        self.reactor.advance(0.5)
        replacement = self.reactor.processes[-1]
        self.assertIsNot(replacement, process)
        replacement.send(READY_FRAME)
        self.assertEqual([r["path"] for r in self.requests(replacement)], ["/next"])
        self.respond(replacement)
        self.assertEqual(self.successResultOf(queued)["body"], "/next")
        self.assertEqual(pool.pids, [replacement.pid])

    def test_timeout_counts_from_dispatch(self):
        """The handler gets its whole timeout from dispatch, whatever it waited in the queue."""
        pool = self.started(timeout=5)
        [process] = self.reactor.processes
        pool.request({"path": "/a"})
        d = pool.request({"path": "/b"})
        self.reactor.advance(3)
        self.respond(process)
        self.reactor.advance(4.9)
        self.assertNoResult(d)
        self.assertEqual(process.signals, [])

    def test_queue_wait_times_out(self):
        """A request still queued after the timeout fails with 504 and kills nobody."""
        pool = self.started(timeout=5)
        [process] = self.reactor.processes
        pool.request({"path": "/a"})
        served = pool.request({"path": "/b"})
        waiting = pool.request({"path": "/c"})
        self.reactor.advance(4)
        self.respond(process)  # /b is dispatched at t=4, /c still waits
        self.reactor.advance(1)
        f = self.failureResultOf(waiting, RequestTimedOut)
        self.assertEqual(f.value.message, "hello: no worker was free within 5s")
        self.assertEqual(process.signals, [])
        self.assertNoResult(served)
        self.assertEqual(pool.stats()["queued"], 0)

    def test_crash_fails_and_restarts(self):
        """A worker dying mid-request fails it with 502 and is restarted after min_restart_delay."""
        pool = self.started(min_restart_delay=1)
        [process] = self.reactor.processes
        d = pool.request({"path": "/a"})
        process.exit(signal=11)
        f = self.failureResultOf(d, WorkerCrashed)
        self.assertEqual(f.value.status, 502)
        self.assertEqual(
            f.value.message,
            "worker 100 of hello was killed by signal 11 (SIGSEGV) before answering",
        )
        self.assertEqual(pool.pids, [])
        self.reactor.advance(0.5)
        self.assertEqual(len(self.reactor.processes), 1)
        self.reactor.advance(0.5)
        self.assertEqual(len(self.reactor.processes), 2)
        self.assertEqual(pool.stats()["restarts"], 1)
        self.assertEqual(pool.stats()["failed"], 1)

    def test_backoff_doubles_and_resets(self):
        """
        Replacements that die without serving wait twice as long each time, up
        to max_restart_delay.
        """
        self.started(min_restart_delay=1, max_restart_delay=4)
        delays = []
        for _ in range(5):
            before = self.reactor.seconds()
            self.reactor.processes[-1].exit(1)
            count = len(self.reactor.processes)
            while len(self.reactor.processes) == count:
                self.reactor.advance(0.5)
            delays.append(self.reactor.seconds() - before)
        self.assertEqual(delays, [1, 2, 4, 4, 4])

    def test_backoff_reset_after_serving(self):
        """A worker that served a request is restarted after min_restart_delay again."""
        pool = self.started(min_restart_delay=1, max_restart_delay=8)
        self.reactor.processes[-1].exit(1)
        self.reactor.advance(1)
        self.reactor.processes[-1].exit(1)
        self.reactor.advance(2)
        process = self.reactor.processes[-1]
        process.send(READY_FRAME)
        pool.request({"path": "/ok"})
        self.respond(process)
        process.exit(1)
        self.reactor.advance(1)
        self.assertEqual(len(self.reactor.processes), 4)

    def test_queued_survive_crash(self):
        """Requests queued behind a crashed worker are served by its replacement."""
        pool = self.started()
        [process] = self.reactor.processes
        d1 = pool.request({"path": "/a"})
        d2 = pool.request({"path": "/b"})
        process.exit(1)
        self.failureResultOf(d1, WorkerCrashed)
        self.reactor.advance(0.1)
        replacement = self.reactor.processes[-1]
        replacement.send(READY_FRAME)
        self.respond(replacement)
        self.assertEqual(self.successResultOf(d2)["body"], "/b")

    def test_violation(self):
        """A worker breaking the protocol fails its request with 502 and is replaced."""
        pool = self.started()
        [process] = self.reactor.processes
        d = pool.request({"path": "/a"})
        process.send({"type": "response", "id": 99})
        self.assertEqual(process.signals, ["KILL"])
        f = self.failureResultOf(d, ProtocolViolation)
        self.assertIn("response for unknown id 99", f.value.message)
        process.exit(signal=9)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), 2)
        self.assertEqual(pool.pids, [self.reactor.processes[1].pid])

    def test_queue_full(self):
        """With max_queue requests waiting, the next fails at once with 503 and a retry_after."""
        pool = self.started(max_queue=2)
        pool.request({})
        pool.request({})
        pool.request({})
        f = self.failureResultOf(pool.request({}), Overloaded)
        self.assertEqual((f.value.status, f.value.retry_after), (503, 1))
        self.assertEqual(pool.stats()["queued"], 2)
        self.assertEqual(pool.stats()["rejected"], 1)

    def test_cancel_queued(self):
        """Cancelling a queued request removes it from the queue."""
        pool = self.started()
        [process] = self.reactor.processes
        pool.request({"path": "/a"})
        d = pool.request({"path": "/b"})
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(pool.stats()["queued"], 0)
        self.respond(process)
        self.assertEqual(len(self.requests(process)), 1)

    def test_submit_answers_through_the_callback(self):
        """
        submit() is request() without a Deferred: the callback gets the
        response frame once, and the pool counts it as served.
        """
        pool = self.started()
        [process] = self.reactor.processes
        answers = []
        pool.submit({"method": "GET", "path": "/a"}, answers.append)
        self.assertEqual(answers, [])
        self.respond(process)
        self.assertEqual(
            answers,
            [{"type": "response", "id": 1, "status": 200, "headers": {}, "body": "/a"}],
        )
        self.assertEqual(pool.stats()["served"], 1)

    def test_submit_failures_are_failures(self):
        """
        What request() would fail with reaches submit()'s callback as a
        Failure: a full queue at once, a crash when it happens.
        """
        pool = self.started(max_queue=1)
        [process] = self.reactor.processes
        answers = []
        pool.submit({"path": "/a"}, answers.append)
        pool.submit({"path": "/b"}, answers.append)
        pool.submit({"path": "/c"}, answers.append)
        [full] = answers
        full.trap(Overloaded)
        process.exit(1)
        self.assertEqual(len(answers), 2)
        answers[1].trap(WorkerCrashed)
        self.assertEqual(pool.stats()["rejected"], 1)

    def test_a_raising_callback_does_not_break_the_worker(self):
        """
        A callback that raises is logged; the other answers in the same read
        from the worker are still delivered and the worker keeps serving.
        """
        pool = self.started(pipeline=2)
        [process] = self.reactor.processes
        answers = []

        def broken(result):
            raise RuntimeError("the caller's bug")

        pool.submit({"path": "/a"}, broken)
        pool.submit({"path": "/b"}, answers.append)
        first, second = self.requests(process)
        process.stdout(  # both answers in one read
            encode_frame({"type": "response", "id": first["id"], "status": 200, "body": "a"})
            + encode_frame({"type": "response", "id": second["id"], "status": 200, "body": "b"})
        )
        self.assertEqual([a["body"] for a in answers], ["b"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(pool.stats()["served"], 2)
        pool.submit({"path": "/c"}, answers.append)
        self.respond(process)
        self.assertEqual([a["body"] for a in answers], ["b", "/c"])

    def test_stop_drains_then_escalates(self):
        """
        stop() serves what was accepted, closes each worker's stdin once it
        is idle, sends TERM at the drain deadline and KILL kill_time later.
        """
        pool = self.started(min_instances=2, max_instances=2, drain_timeout=10, kill_time=3)
        first, second = self.reactor.processes
        d1 = pool.request({"path": "/a"})
        d2 = pool.request({"path": "/b"})
        d3 = pool.request({"path": "/c"})
        stopped = pool.stop()
        self.failureResultOf(pool.request({}), PoolStopped)
        self.assertFalse(first.stdin_closed)
        self.respond(first)
        self.assertEqual(self.successResultOf(d1)["body"], "/a")
        self.assertEqual(self.requests(first)[-1]["path"], "/c")
        self.respond(second)
        self.successResultOf(d2)
        self.assertTrue(second.stdin_closed)
        second.exit(0)
        self.respond(first)
        self.successResultOf(d3)
        self.assertTrue(first.stdin_closed)
        self.reactor.advance(9.9)
        self.assertEqual(first.signals, [])
        self.reactor.advance(0.1)
        self.assertEqual(first.signals, ["TERM"])
        self.reactor.advance(3)
        self.assertEqual(first.signals, ["TERM", "KILL"])
        self.assertEqual(second.signals, [])
        self.assertNoResult(stopped)
        first.exit(signal=9)
        self.assertIsNone(self.successResultOf(stopped))
        self.assertEqual(pool.pids, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_deadline_fails_queue(self):
        """Requests still queued at the drain deadline fail with PoolStopped."""
        pool = self.started(drain_timeout=2, timeout=30)
        [process] = self.reactor.processes
        pool.request({"path": "/a"})
        d = pool.request({"path": "/b"})
        pool.stop()
        self.reactor.advance(2)
        f = self.failureResultOf(d, PoolStopped)
        self.assertEqual(f.value.status, 503)
        self.assertEqual(process.signals, ["TERM"])

    def test_crash_while_stopping(self):
        """
        A worker dying during the drain is not restarted; the requests it
        left queued fail with PoolStopped.
        """
        pool = self.started()
        [process] = self.reactor.processes
        d1 = pool.request({"path": "/a"})
        d2 = pool.request({"path": "/b"})
        stopped = pool.stop()
        process.exit(1)
        self.failureResultOf(d1, WorkerCrashed)
        f = self.failureResultOf(d2, PoolStopped)
        self.assertEqual(f.value.message, "hello stopped before the request was served")
        self.successResultOf(stopped)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 1)

    def test_stop_cancels_restart(self):
        """A restart pending when stop() is called never happens."""
        pool = self.started(min_restart_delay=1)
        self.reactor.processes[0].exit(1)
        d = pool.stop()
        self.successResultOf(d)
        self.reactor.advance(10)
        self.assertEqual(len(self.reactor.processes), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_while_starting(self):
        """Stopping a pool still starting fails start() with PoolStopped."""
        pool = self.pool()
        started = pool.start()
        [process] = self.reactor.processes
        stopped = pool.stop()
        self.assertTrue(process.stdin_closed)
        process.exit(0)
        self.successResultOf(stopped)
        self.failureResultOf(started, PoolStopped)

    def test_request_before_start(self):
        """A pool not started refuses requests."""
        f = self.failureResultOf(self.pool().request({}), PoolStopped)
        self.assertEqual(f.value.message, "hello is not started")

    def test_request_after_stop(self):
        """A stopped pool refuses requests with PoolStopped."""
        pool = self.started()
        d = pool.stop()
        self.reactor.processes[0].exit(0)
        self.successResultOf(d)
        f = self.failureResultOf(pool.request({}), PoolStopped)
        self.assertEqual(f.value.message, "hello is stopped")
        self.successResultOf(pool.stop())

    def test_service_call_unbound(self):
        """A worker's service call is answered ServiceUnavailable until a broker is plugged in."""
        self.started()
        [process] = self.reactor.processes
        process.send({"type": "call", "id": 1, "request": 1, "service": "db",
                      "pool": "main", "action": "query", "args": {}})
        [result] = [f for f in process.frames() if f["type"] == "result"]
        self.assertEqual(result["error"]["message"], "no service bound as 'main'")

    def test_stderr_logged(self):
        """Worker stderr lines reach the pool's log callback."""
        self.started()
        self.reactor.processes[0].stderr(b"hello from rust\n")
        self.assertIn(("stderr", "hello from rust"), self.lines)


class PipelineTests(PoolTestCase):
    """Several requests written to one worker ahead of its answers."""

    def respond_to(self, process, request_id, status=200):
        process.send({"type": "response", "id": request_id, "status": status,
                      "headers": {}, "body": None})

    def test_requests_are_written_ahead_up_to_the_depth(self):
        """With pipeline=3 the first three requests go to the worker at once, the fourth waits."""
        pool = self.started(pipeline=3)
        [process] = self.reactor.processes
        ds = [pool.request({"path": "/%d" % i}) for i in range(4)]
        self.assertEqual([f["path"] for f in self.requests(process)], ["/0", "/1", "/2"])
        self.respond_to(process, 1)
        self.successResultOf(ds[0])
        self.assertEqual(self.requests(process)[-1]["path"], "/3")
        for request_id in (2, 3, 4):
            self.respond_to(process, request_id)
        for d in ds[1:]:
            self.assertEqual(self.successResultOf(d)["status"], 200)

    def test_service_is_timed_from_the_head(self):
        """A request behind another is timed from when it starts being served, not when written."""
        pool = self.started(pipeline=2, timeout=10)
        [process] = self.reactor.processes
        first = pool.request({"path": "/a"})
        second = pool.request({"path": "/b"})
        self.reactor.advance(9)
        self.respond_to(process, 1)
        self.successResultOf(first)
        self.reactor.advance(9)
        self.assertNoResult(second)
        self.assertFalse(process.signals)
        self.reactor.advance(2)
        self.failureResultOf(second, RequestTimedOut)
        self.assertEqual(process.signals, ["KILL"])

    def test_crash_fails_the_head_and_requeues_the_rest(self):
        """When a worker dies, only the request it was serving fails; the others go to its replacement."""
        pool = self.started(pipeline=3)
        [process] = self.reactor.processes
        head = pool.request({"path": "/a"})
        behind = [pool.request({"path": "/b"}), pool.request({"path": "/c"})]
        process.exit(3)
        self.failureResultOf(head, WorkerCrashed)
        for d in behind:
            self.assertNoResult(d)
        self.reactor.advance(1)
        replacement = self.reactor.processes[-1]
        self.assertIsNot(replacement, process)
        replacement.send(READY_FRAME)
        self.assertEqual([f["path"] for f in self.requests(replacement)], ["/b", "/c"])
        for f in self.requests(replacement):
            self.respond_to(replacement, f["id"])
        for d in behind:
            self.assertEqual(self.successResultOf(d)["status"], 200)

    def test_timeout_of_the_head_requeues_the_rest(self):
        """A stuck head is killed with 504; the requests behind it are served by the next worker."""
        pool = self.started(pipeline=2, timeout=5)
        [process] = self.reactor.processes
        head = pool.request({"path": "/a"})
        self.reactor.advance(3)
        behind = pool.request({"path": "/b"})
        self.reactor.advance(2)
        self.failureResultOf(head, RequestTimedOut)
        self.assertEqual(process.signals, ["KILL"])
        self.assertNoResult(behind)
        process.exit(signal=9)
        self.reactor.advance(1)
        replacement = self.reactor.processes[-1]
        replacement.send(READY_FRAME)
        [sent] = self.requests(replacement)
        self.assertEqual(sent["path"], "/b")
        self.respond_to(replacement, sent["id"])
        self.assertEqual(self.successResultOf(behind)["status"], 200)

    def test_waiting_in_the_pipe_counts_toward_the_timeout(self):
        """A request stuck in a worker's pipe fails 504 after its timeout, without killing the worker."""
        pool = self.started(pipeline=3, timeout=5)
        [process] = self.reactor.processes
        first = pool.request({"path": "/a"})
        self.reactor.advance(0.5)
        second = pool.request({"path": "/b"})
        third = pool.request({"path": "/c"})
        self.reactor.advance(3.5)
        self.respond_to(process, 1)
        self.successResultOf(first)
        self.reactor.advance(1.4)
        self.assertNoResult(third)
        self.reactor.advance(0.2)
        f = self.failureResultOf(third, RequestTimedOut)
        self.assertIn("no worker was free within 5s", f.value.message)
        self.assertNoResult(second)
        self.assertEqual(process.signals, [])
        self.respond_to(process, 2)
        self.successResultOf(second)

    def test_service_time_counts_from_the_head(self):
        """A request that waited behind another gets its full timeout once its worker starts on it."""
        pool = self.started(pipeline=2, timeout=5)
        [process] = self.reactor.processes
        pool.request({"path": "/slow"})
        self.reactor.advance(1)
        behind = pool.request({"path": "/b"})
        self.reactor.advance(3.9)
        self.respond_to(process, 1)
        self.reactor.advance(4.9)
        self.assertNoResult(behind)
        self.reactor.advance(0.2)
        f = self.failureResultOf(behind, RequestTimedOut)
        self.assertIn("no response within 5s", f.value.message)
        self.assertEqual(process.signals, ["KILL"])

    def test_least_busy_worker_is_chosen(self):
        """New requests go to the worker with the fewest requests in flight."""
        pool = self.started(min_instances=2, max_instances=2, pipeline=4)
        first, second = self.reactor.processes
        for i in range(4):
            pool.request({"path": "/%d" % i})
        self.assertEqual([f["path"] for f in self.requests(first)], ["/0", "/2"])
        self.assertEqual([f["path"] for f in self.requests(second)], ["/1", "/3"])

    def test_pipeline_must_be_positive(self):
        """A pipeline depth below 1 is refused."""
        self.assertRaises(ValueError, self.pool, pipeline=0)


class PolicyTests(PoolTestCase):
    """min_instances, max_instances, idle_timeout, max_requests, max_queue."""

    def ready(self, process):
        process.send(READY_FRAME)

    def respond_to(self, process, request_id, status=200):
        process.send({"type": "response", "id": request_id, "status": status,
                      "headers": {}, "body": None})

    def test_scale_to_zero(self):
        """
        With min_instances=0 no process runs until the first request, which
        waits for its worker's ready and is served; the worker is stopped after
        idle_timeout, and the next request spawns a new one at once.
        """
        pool = self.pool(min_instances=0, max_instances=1, idle_timeout=30)
        self.assertEqual(self.successResultOf(pool.start()), [])
        self.assertEqual(self.reactor.processes, [])
        d = pool.request({"path": "/a"})
        [process] = self.reactor.processes
        self.assertNoResult(d)
        self.ready(process)
        self.respond(process)
        self.assertEqual(self.successResultOf(d)["body"], "/a")
        self.reactor.advance(29.9)
        self.assertFalse(process.stdin_closed)
        self.reactor.advance(0.1)
        self.assertTrue(process.stdin_closed)
        process.exit(0)
        self.assertEqual((pool.pids, pool.workers()), ([], []))
        d = pool.request({"path": "/b"})
        self.assertEqual(len(self.reactor.processes), 2)
        second = self.reactor.processes[1]
        self.ready(second)
        self.respond(second)
        self.assertEqual(self.successResultOf(d)["body"], "/b")
        stats = pool.stats()
        self.assertEqual(
            (stats["restarts"], stats["failed"], stats["scaled_down"], stats["spawned"]),
            (0, 0, 1, 2),
        )

    def test_scale_from_zero_start_failure(self):
        """
        When the worker spawned for waiting requests fails to start, they fail
        at once with WorkerCrashed naming its exit status and last stderr
        lines; the next request's spawn waits out the restart backoff.
        """
        pool = self.pool(min_instances=0, max_instances=1, min_restart_delay=1)
        pool.start()
        waiting = [pool.request({"path": "/a"}), pool.request({"path": "/b"})]
        [process] = self.reactor.processes
        process.stderr(b"thread 'main' panicked at 'no DATABASE_URL'\n")
        process.exit(101)
        for d in waiting:
            f = self.failureResultOf(d, WorkerCrashed)
            self.assertEqual(
                f.value.message,
                "worker 100 of hello exited with status 101 before sending ready;"
                " last stderr lines:\nthread 'main' panicked at 'no DATABASE_URL'",
            )
        self.assertEqual(pool.stats()["queued"], 0)
        d = pool.request({"path": "/c"})
        self.reactor.advance(0.9)
        self.assertEqual(len(self.reactor.processes), 1)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), 2)
        second = self.reactor.processes[1]
        self.ready(second)
        self.respond(second)
        self.assertEqual(self.successResultOf(d)["body"], "/c")
        self.assertEqual(pool.stats()["restarts"], 1)

    def test_start_failure_with_another_worker_keeps_queue(self):
        """A scale-up worker failing to start leaves the queue to the workers that are ready."""
        pool = self.started(min_instances=1, max_instances=2)
        first = self.reactor.processes[0]
        pool.request({"path": "/a"})
        queued = pool.request({"path": "/b"})
        extra = self.reactor.processes[1]
        extra.exit(1)
        self.assertNoResult(queued)
        self.respond(first)
        self.assertEqual(self.requests(first)[-1]["path"], "/b")
        self.respond(first)
        self.successResultOf(queued)

    def test_scale_up_to_max(self):
        """
        Requests that find no ready worker with room spawn workers, one per
        request a starting worker cannot take, up to max_instances and not
        beyond; the new workers serve the queue once ready.
        """
        pool = self.started(min_instances=1, max_instances=3)
        first = self.reactor.processes[0]
        ds = [pool.request({"path": f"/{i}"}) for i in range(5)]
        self.assertEqual(len(self.reactor.processes), 3)
        _, second, third = self.reactor.processes
        self.assertEqual([w["state"] for w in pool.workers()], ["busy", "starting", "starting"])
        self.ready(second)
        self.ready(third)
        self.assertEqual([r["path"] for r in self.requests(second)], ["/1"])
        self.assertEqual([r["path"] for r in self.requests(third)], ["/2"])
        self.assertEqual(pool.stats()["queued"], 2)
        for process in (first, second, third, first, second):
            self.respond(process)
        for i, d in enumerate(ds):
            self.assertEqual(self.successResultOf(d)["body"], f"/{i}")
        self.assertEqual(len(self.reactor.processes), 3)
        self.assertEqual(pool.stats()["workers"], 3)

    def test_starting_worker_absorbs_a_pipeline(self):
        """
        One starting worker is counted for C{pipeline} queued requests: a
        burst spawns another only once the queue outgrows the capacity of
        those already starting.
        """
        pool = self.started(min_instances=1, max_instances=3, pipeline=4)
        for i in range(4):
            pool.request({"path": f"/{i}"})
        self.assertEqual(len(self.reactor.processes), 1)
        pool.request({"path": "/4"})
        self.assertEqual(len(self.reactor.processes), 2)
        for i in range(5, 8):
            pool.request({"path": f"/{i}"})
        self.assertEqual(len(self.reactor.processes), 2)
        pool.request({"path": "/8"})
        self.assertEqual(len(self.reactor.processes), 3)
        self.ready(self.reactor.processes[1])
        self.assertEqual(len(self.requests(self.reactor.processes[1])), 4)

    def test_no_scale_up_while_starting(self):
        """Requests made while start() runs wait for the first workers; none are added."""
        pool = self.pool(min_instances=1, max_instances=3)
        started = pool.start()
        ds = [pool.request({"path": f"/{i}"}) for i in range(3)]
        self.assertEqual(len(self.reactor.processes), 1)
        self.ready(self.reactor.processes[0])
        self.successResultOf(started)
        # Running now: the two still queued get their workers.
        self.assertEqual(len(self.reactor.processes), 3)
        for d in ds:
            self.assertNoResult(d)

    def test_scale_down_to_min(self):
        """
        Workers above min_instances idle for idle_timeout are stopped
        gracefully, longest idle first (stdin closed, TERM after
        drain_timeout); the pool never goes below min_instances.
        """
        pool = self.started(min_instances=1, max_instances=3, idle_timeout=60,
                            drain_timeout=10, kill_time=3)
        ds = [pool.request({"path": f"/{i}"}) for i in range(3)]
        first, second, third = self.reactor.processes
        self.ready(second)
        self.ready(third)
        self.reactor.advance(1)
        self.respond(second)  # idle since t=1
        self.reactor.advance(1)
        self.respond(third)  # idle since t=2
        self.reactor.advance(1)
        self.respond(first)  # idle since t=3
        for d in ds:
            self.successResultOf(d)
        self.reactor.advance(57.9)
        self.assertFalse(second.stdin_closed)
        self.reactor.advance(0.1)
        self.assertEqual((second.stdin_closed, third.stdin_closed), (True, False))
        self.assertEqual([w["state"] for w in pool.workers()], ["ready", "draining", "ready"])
        self.reactor.advance(1)
        self.assertTrue(third.stdin_closed)
        third.exit(0)
        self.reactor.advance(9)  # drain_timeout after second's stdin was closed
        self.assertEqual(second.signals, ["TERM"])
        self.reactor.advance(3)
        self.assertEqual(second.signals, ["TERM", "KILL"])
        second.exit(signal=9)
        self.reactor.advance(1000)
        self.assertFalse(first.stdin_closed)
        self.assertEqual(pool.pids, [first.pid])
        self.assertEqual(len(self.reactor.processes), 3)
        stats = pool.stats()
        self.assertEqual((stats["scaled_down"], stats["restarts"]), (2, 0))

    def test_idle_timer_is_lazy(self):
        """
        One idle timer per pool, whatever the traffic: it re-checks when it
        fires, so a worker used again meanwhile is stopped idle_timeout after
        its last answer, not after its first.
        """
        pool = self.pool(min_instances=0, max_instances=1, idle_timeout=10)
        pool.start()
        d = pool.request({})
        [process] = self.reactor.processes
        self.ready(process)
        self.respond(process)
        self.successResultOf(d)
        for _ in range(50):
            self.reactor.advance(0.1)
            d = pool.request({})
            self.respond(process)
            self.successResultOf(d)
        # The worker's lazy watchdog and the pool's idle timer: nothing per request.
        self.assertLessEqual(len(self.reactor.getDelayedCalls()), 2)
        self.reactor.advance(9.9)
        self.assertFalse(process.stdin_closed)
        self.reactor.advance(0.1)
        self.assertTrue(process.stdin_closed)

    def test_max_queue(self):
        """
        max_queue counts the requests waiting in the pool's queue, including
        for a worker's start, not those written to workers; beyond, 503.
        """
        pool = self.pool(min_instances=0, max_instances=1, max_queue=2, pipeline=2)
        pool.start()
        waiting = [pool.request({}), pool.request({})]
        f = self.failureResultOf(pool.request({}), Overloaded)
        self.assertEqual((f.value.status, f.value.retry_after), (503, 1))
        self.assertEqual(
            f.value.message, "hello: all workers are busy and 2 requests are waiting"
        )
        [process] = self.reactor.processes
        self.ready(process)
        self.assertEqual(len(self.requests(process)), 2)
        more = [pool.request({}), pool.request({})]
        self.failureResultOf(pool.request({}), Overloaded)
        self.assertEqual(pool.stats()["queued"], 2)
        self.assertEqual(pool.stats()["rejected"], 2)
        for d in waiting + more:
            self.assertNoResult(d)

    def test_recycling_jitter(self):
        """
        Each worker is recycled after its own limit, drawn from the injected
        random source in [max_requests, max_requests * 1.25]; no request fails.
        """
        seed = 4
        draws = random.Random(seed)
        limits = [draws.randint(100, 125) for _ in range(3)]
        self.assertNotEqual(limits[0], limits[1])
        pool = self.started(max_requests=100, random=random.Random(seed))
        readied = {self.reactor.processes[0]}
        for i in range(limits[0] + limits[1] + 1):
            process = self.reactor.processes[-1]
            d = pool.request({"path": f"/{i}"})
            if process not in readied:
                self.ready(process)
                readied.add(process)
            self.respond(process)
            self.successResultOf(d)
            if process.stdin_closed:
                process.exit(0)
        counts = [len(self.requests(p)) for p in self.reactor.processes]
        self.assertEqual(counts, [limits[0], limits[1], 1])
        stats = pool.stats()
        self.assertEqual(
            (stats["recycled"], stats["failed"], stats["restarts"]), (2, 0, 0)
        )

    def test_recycling_pipelined(self):
        """
        A worker reaching its limit gets no new request, a replacement is
        spawned at once, and its stdin is closed only after it answered every
        request already pipelined to it: none fails, none is requeued.
        """
        seed = 7
        limit = random.Random(seed).randint(4, 5)
        pool = self.started(pipeline=3, max_requests=4, random=random.Random(seed))
        [old] = self.reactor.processes
        ds = [pool.request({"path": f"/{i}"}) for i in range(limit + 3)]
        answered = 0
        while answered < len(self.requests(old)):
            if len(self.reactor.processes) == 2 and answered == limit - 3:
                # Just retired with a full pipe.
                self.assertEqual(
                    [(w["state"], w["in_flight"]) for w in pool.workers()],
                    [("draining", 3), ("starting", 0)],
                )
            self.assertFalse(old.stdin_closed)
            self.respond_to(old, self.requests(old)[answered]["id"])
            answered += 1
        self.assertEqual(answered, limit)
        self.assertTrue(old.stdin_closed)
        old.exit(0)
        _, new = self.reactor.processes
        self.ready(new)
        self.assertEqual(
            [r["path"] for r in self.requests(new)], [f"/{i}" for i in range(limit, limit + 3)]
        )
        for request in self.requests(new):
            self.respond_to(new, request["id"])
        for d in ds:
            self.assertEqual(self.successResultOf(d)["status"], 200)
        stats = pool.stats()
        self.assertEqual(
            (stats["served"], stats["failed"], stats["restarts"], stats["recycled"]),
            (limit + 3, 0, 0, 1),
        )
        self.assertEqual(pool.pids, [new.pid])

    def test_recycling_replaces_only_below_min(self):
        """A recycled worker is replaced only if the pool would fall below min_instances."""
        # max_requests=2: the jitter range [2, 2.5] holds one whole number.
        pool = self.started(min_instances=1, max_instances=2, max_requests=2)
        first = self.reactor.processes[0]
        a = pool.request({"path": "/a"})
        b = pool.request({"path": "/b"})
        second = self.reactor.processes[1]
        self.ready(second)
        self.respond(first)
        self.respond(second)
        c = pool.request({"path": "/c"})
        self.assertEqual(self.requests(first)[-1]["path"], "/c")
        self.assertEqual([w["state"] for w in pool.workers()], ["draining", "ready"])
        self.assertEqual(len(self.reactor.processes), 2)
        self.respond(first)
        self.assertTrue(first.stdin_closed)
        first.exit(0)
        for d in (a, b, c):
            self.successResultOf(d)
        self.assertEqual(pool.pids, [second.pid])
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 2)

    def test_workers_states(self):
        """workers() follows a worker through starting, busy, ready and draining."""
        pool = self.pool(min_instances=0, max_instances=1, idle_timeout=5, version="sha256:ab")
        pool.start()
        self.assertEqual(pool.workers(), [])
        d = pool.request({"path": "/a"})
        [process] = self.reactor.processes

        def worker(state, served, in_flight):
            return [{"pid": 100, "version": "sha256:ab", "state": state,
                     "served": served, "in_flight": in_flight}]

        self.assertEqual(pool.workers(), worker("starting", 0, 0))
        self.ready(process)
        self.assertEqual(pool.workers(), worker("busy", 0, 1))
        self.respond(process)
        self.successResultOf(d)
        self.assertEqual(pool.workers(), worker("ready", 1, 0))
        self.reactor.advance(5)
        self.assertEqual(pool.workers(), worker("draining", 1, 0))
        process.exit(0)
        self.assertEqual(pool.workers(), [])

    def test_stats(self):
        """stats() reports the policy and the queue besides its counters."""
        pool = self.started(min_instances=1, max_instances=2, pipeline=1, version="v1")
        pool.request({})
        pool.request({})
        pool.request({})
        stats = pool.stats()
        self.assertEqual(
            {k: stats[k] for k in ("min_instances", "max_instances", "queued", "workers",
                                   "starting", "ready", "busy", "version")},
            {"min_instances": 1, "max_instances": 2, "queued": 2, "workers": 2,
             "starting": 1, "ready": 1, "busy": 1, "version": "v1"},
        )

    def test_stop_drains_scaled_up_workers(self):
        """
        stop() with scaled-up workers, one still starting, serves every
        accepted request on them, then closes each one's stdin.
        """
        pool = self.started(min_instances=1, max_instances=3, drain_timeout=10)
        ds = [pool.request({"path": f"/{i}"}) for i in range(4)]
        first, second, third = self.reactor.processes
        self.ready(second)
        stopped = pool.stop()
        self.failureResultOf(pool.request({}), PoolStopped)
        self.ready(third)
        self.respond(first)
        self.assertEqual(self.requests(first)[-1]["path"], "/3")
        for process in (second, third, first):
            self.assertFalse(process.stdin_closed)
            self.respond(process)
            self.assertTrue(process.stdin_closed)
            process.exit(0)
        for i, d in enumerate(ds):
            self.assertEqual(self.successResultOf(d)["body"], f"/{i}")
        self.successResultOf(stopped)
        self.assertEqual(len(self.reactor.processes), 3)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_with_idle_timer_and_backoff_pending(self):
        """stop() cancels the pool's idle and spawn timers."""
        pool = self.pool(min_instances=0, max_instances=2, idle_timeout=10, min_restart_delay=5)
        pool.start()
        d = pool.request({})
        [process] = self.reactor.processes
        self.ready(process)
        self.respond(process)
        self.successResultOf(d)
        process.exit(1)  # crashed: the next spawn waits 5s
        waiting = pool.request({})
        stopped = pool.stop()
        self.failureResultOf(waiting, PoolStopped)
        self.successResultOf(stopped)
        self.assertEqual(len(self.reactor.processes), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_scale_from_zero_spawn_error(self):
        """A spawnProcess error fails the waiting request with it and leaves no timer behind."""
        pool = self.pool(min_instances=0, max_instances=1)
        pool.start()
        self.reactor.spawn_error = OSError(24, "Too many open files")
        f = self.failureResultOf(pool.request({}), WorkerCrashed)
        self.assertIn("could not be spawned", f.value.message)
        self.assertIn("Too many open files", f.value.message)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.reactor.spawn_error = None
        d = pool.request({})
        self.reactor.advance(0.1)
        [process] = self.reactor.processes
        self.ready(process)
        self.respond(process)
        self.successResultOf(d)

    def test_crashes_share_one_backoff(self):
        """
        Workers crashing together are replaced together after one delay: the
        backoff is the pool's, and doubles once per round, not per worker.
        """
        pool = self.started(min_instances=2, max_instances=2, min_restart_delay=1)
        for process in list(self.reactor.processes):
            process.exit(1)
        self.assertEqual(pool.pids, [])
        self.reactor.advance(0.9)
        self.assertEqual(len(self.reactor.processes), 2)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), 4)
        for process in self.reactor.processes[2:]:
            process.exit(1)
        self.reactor.advance(1.9)
        self.assertEqual(len(self.reactor.processes), 4)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), 6)
        self.assertEqual(pool.stats()["restarts"], 4)

    def test_policy_validated(self):
        """Nonsense policies are refused."""
        for kwargs in (
            {"min_instances": -1},
            {"max_instances": 0, "min_instances": 0},
            {"min_instances": 3, "max_instances": 2},
            {"max_queue": -1},
            {"max_requests": -1},
            {"idle_timeout": -1},
        ):
            self.assertRaises(ValueError, self.pool, **kwargs)


class EndReasonTests(PoolTestCase):
    """Why workers ended unasked, counted for ``edgegw_worker_restarts_total{reason}``."""

    def reasons(self, pool):
        stats = pool.stats()
        return {key: stats[key] for key in ("crashed", "timed_out", "recycled", "out_of_memory")}

    def test_crash(self):
        """A worker dying of a signal while running is one crash, nothing else."""
        pool = self.started()
        self.reactor.processes[-1].exit(signal=11)
        self.assertEqual(self.reasons(pool), {"crashed": 1, "timed_out": 0, "recycled": 0, "out_of_memory": 0})

    def test_timeout_kill_is_not_a_crash(self):
        """A worker the pool killed for a timeout is counted once, as a timeout."""
        pool = self.started(timeout=5)
        process = self.reactor.processes[-1]
        d = pool.request({"path": "/slow"})
        self.reactor.advance(5)
        self.failureResultOf(d, RequestTimedOut)
        self.assertEqual(process.signals, ["KILL"])
        process.exit(signal=9)
        self.assertEqual(self.reasons(pool), {"crashed": 0, "timed_out": 1, "recycled": 0, "out_of_memory": 0})

    def test_recycle(self):
        """A worker retired after its ``max_requests`` is counted as recycled, and its exit as nothing more."""
        pool = self.started(max_requests=1)
        process = self.reactor.processes[-1]
        pool.request({"path": "/a"})
        self.respond(process)
        process.exit(0)
        self.assertEqual(self.reasons(pool), {"crashed": 0, "timed_out": 0, "recycled": 1, "out_of_memory": 0})

    def test_out_of_memory(self):
        """A worker that aborts after Rust's failed-allocation line is counted as memory."""
        pool = self.started()
        process = self.reactor.processes[-1]
        process.stderr(b"memory allocation of 1073741824 bytes failed\n")
        process.exit(signal=6)
        self.assertEqual(self.reasons(pool), {"crashed": 0, "timed_out": 0, "recycled": 0, "out_of_memory": 1})

    def test_stopped_workers_are_not_counted(self):
        """Workers the pool stops (scale-down, pool stop) end without a reason."""
        pool = self.started()
        pool.stop()
        for process in self.reactor.processes:
            process.exit(0)
        self.assertEqual(self.reasons(pool), {"crashed": 0, "timed_out": 0, "recycled": 0, "out_of_memory": 0})


CONCURRENT_READY = dict(READY_FRAME, concurrency=1024)


class ConcurrentWorkerTests(PoolTestCase):
    """Workers whose ready announces a concurrency (async handlers)."""

    def concurrent(self, **kwargs):
        """A started pool of one worker that announced it serves 1024 requests at once."""
        pool = self.pool(**kwargs)
        d = pool.start()
        [process] = self.reactor.processes
        process.send(CONCURRENT_READY)
        self.successResultOf(d)
        return pool, process

    def respond_to(self, process, request_id, status=200):
        process.send({"type": "response", "id": request_id, "status": status,
                      "headers": {}, "body": None})

    def test_in_flight_is_capped_by_the_pools_concurrency(self):
        """A concurrent worker gets min(its concurrency, the pool's) requests at once, not pipeline."""
        pool, process = self.concurrent(pipeline=2, concurrency=5)
        ds = [pool.request({"path": f"/{i}"}) for i in range(7)]
        self.assertEqual(len(self.requests(process)), 5)
        self.assertEqual(pool.stats()["queued"], 2)
        self.assertIn(("gateway", "worker 100 is ready (protocol 1, sdk 0.1.0, 5 requests at once)"), self.lines)
        self.respond_to(process, 3)
        self.assertEqual(self.successResultOf(ds[2])["status"], 200)
        self.assertEqual(len(self.requests(process)), 6)

    def test_a_worker_without_concurrency_keeps_the_pipeline(self):
        """A worker whose ready names no concurrency gets pipeline requests, as before."""
        pool = self.started(pipeline=2, concurrency=5)
        [process] = self.reactor.processes
        for i in range(4):
            pool.request({"path": f"/{i}"})
        self.assertEqual(len(self.requests(process)), 2)

    def test_answers_in_any_order(self):
        """Answers of a concurrent worker settle their own requests, whatever their order."""
        pool, process = self.concurrent(concurrency=8)
        ds = [pool.request({"path": f"/{i}"}) for i in range(3)]
        for request_id in (3, 1, 2):
            self.respond_to(process, request_id, status=200 + request_id)
        self.assertEqual([self.successResultOf(d)["status"] for d in ds], [201, 202, 203])
        self.assertEqual(pool.stats()["served"], 3)

    def test_each_request_is_timed_from_its_own_send(self):
        """
        A concurrent worker's request that overruns the timeout fails alone
        (504) while the worker goes on answering the others; it is not killed.
        """
        pool, process = self.concurrent(concurrency=8, timeout=10)
        slow = pool.request({"path": "/slow"})
        self.reactor.advance(6)
        later = pool.request({"path": "/later"})
        quick = pool.request({"path": "/quick"})
        self.reactor.advance(2)
        self.respond_to(process, 3)
        self.successResultOf(quick)
        self.reactor.advance(2)
        self.failureResultOf(slow, RequestTimedOut)
        self.assertNoResult(later)
        self.respond_to(process, 2)
        self.assertEqual(self.successResultOf(later)["status"], 200)
        self.assertEqual(process.signals, [])
        self.respond_to(process, 1)  # the late answer is dropped
        self.assertEqual(pool.stats()["failed"], 1)

    def test_killed_when_it_answers_nothing_for_a_timeout(self):
        """A concurrent worker holding an overdue request that answered nothing for a whole timeout is killed."""
        pool, process = self.concurrent(concurrency=8, timeout=10)
        first = pool.request({"path": "/a"})
        self.reactor.advance(5)
        second = pool.request({"path": "/b"})
        self.reactor.advance(5)
        self.failureResultOf(first, RequestTimedOut)
        self.assertEqual(process.signals, ["KILL"])
        f = self.failureResultOf(second, RequestTimedOut)
        self.assertIn("answered nothing within 10s and was killed", f.value.message)
        self.assertEqual(pool.stats()["timed_out"], 1)

    def test_crash_fails_every_request_in_flight(self):
        """When a concurrent worker dies, its requests fail (all had started): none is served again."""
        pool, process = self.concurrent(concurrency=8)
        ds = [pool.request({"path": f"/{i}"}) for i in range(3)]
        process.exit(3)
        for d in ds:
            self.failureResultOf(d, WorkerCrashed)
        self.reactor.advance(1)
        replacement = self.reactor.processes[-1]
        replacement.send(CONCURRENT_READY)
        self.assertEqual(self.requests(replacement), [])

    def test_concurrency_must_be_positive(self):
        """concurrency below 1 is refused."""
        self.assertRaises(ValueError, self.pool, concurrency=0)
