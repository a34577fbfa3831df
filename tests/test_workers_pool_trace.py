"""Tests for the trace ids on the endpoint's log lines: the pool's attribution, the LogBook and the API."""

from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.admin.logs import LogBook
from edgegw_tx.workers.pool import traced_log
from edgegw_tx.processes.group import ProcessGroup
from edgegw_tx.processes.proxies import PoolProxy
from tests.support.admin import AdminAPITestCase
from tests.support.fakes import FakePool
from tests.support.processes import LoopbackReactor
from tests.support.workers import PoolTestCase

TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "0af7651916cd43dd8448eb211c80319c"


def traced_request(path, trace_id=None, traceparent=None):
    headers = {}
    if trace_id is not None:
        headers["traceparent"] = f"00-{trace_id}-b7ad6b7169203331-01"
    if traceparent is not None:
        headers["traceparent"] = traceparent
    return {"method": "GET", "path": path, "headers": headers}


class PoolAttributionTests(PoolTestCase):
    """A worker's stderr line gets the trace id of the oldest unanswered request sent to it."""

    def setUp(self):
        super().setUp()
        self.traced = []

    def pool(self, **kwargs):
        kwargs.setdefault("log", lambda stream, line, trace_id=None: self.traced.append((stream, line, trace_id)))
        return super().pool(**kwargs)

    def stderr_lines(self):
        return [(line, trace_id) for stream, line, trace_id in self.traced if stream == "stderr"]

    def test_line_while_serving(self):
        """A line written while a request is served carries its trace id; one after the answer carries none."""
        pool = self.started()
        [process] = self.reactor.processes
        process.stderr(b"before\n")
        pool.request(traced_request("/a", TRACE_A))
        process.stderr(b"serving a\n")
        self.respond(process)
        process.stderr(b"idle\n")
        self.assertEqual(
            self.stderr_lines(), [("before", None), ("serving a", TRACE_A), ("idle", None)]
        )

    def test_pipelined_requests_oldest_first(self):
        """With two requests written ahead, a line goes to the first until it is answered, then to the second."""
        pool = self.started(pipeline=2)
        [process] = self.reactor.processes
        pool.request(traced_request("/a", TRACE_A))
        pool.request(traced_request("/b", TRACE_B))
        self.assertEqual(len(self.requests(process)), 2)
        process.stderr(b"one\n")
        first = self.requests(process)[0]
        process.send({"type": "response", "id": first["id"], "status": 200, "headers": {}, "body": ""})
        process.stderr(b"two\n")
        self.assertEqual(self.stderr_lines(), [("one", TRACE_A), ("two", TRACE_B)])

    def test_no_or_invalid_traceparent(self):
        """A request without a traceparent, or with an invalid one, gives its lines no trace id."""
        pool = self.started()
        [process] = self.reactor.processes
        for frame in (
            {"method": "GET", "path": "/plain"},
            traced_request("/bad", traceparent="garbage"),
            {"method": "GET", "path": "/odd", "headers": ["not", "a", "dict"]},
        ):
            pool.request(frame)
            process.stderr(b"line\n")
            self.respond(process)
        self.assertEqual(self.stderr_lines(), [("line", None)] * 3)

    def test_gateway_lines_carry_none(self):
        """What the gateway says about a worker is not attributed to a request."""
        pool = self.started()
        [process] = self.reactor.processes
        d = pool.request(traced_request("/a", TRACE_A))
        process.exit(code=3)
        self.failureResultOf(d)
        gateway = [trace_id for stream, _, trace_id in self.traced if stream == "gateway"]
        self.assertTrue(gateway)
        self.assertEqual(set(gateway), {None})

    def test_last_words_of_a_crash(self):
        """A line flushed when the worker dies (no newline) still goes with the request it was serving."""
        pool = self.started()
        [process] = self.reactor.processes
        d = pool.request(traced_request("/a", TRACE_A))
        process.stderr(b"thread 'main' panicked")
        process.exit(code=101)
        self.assertIn(("thread 'main' panicked", TRACE_A), self.stderr_lines())
        self.failureResultOf(d)

    def test_two_argument_log_still_works(self):
        """A ``log(stream, line)`` callback gets the lines without trace ids, even for traced requests."""
        lines = []
        pool = self.started(log=lambda stream, line: lines.append((stream, line)))
        [process] = self.reactor.processes
        pool.request(traced_request("/a", TRACE_A))
        process.stderr(b"serving a\n")
        self.assertIn(("stderr", "serving a"), lines)


class TracedLogTests(unittest.TestCase):
    def test_three_arguments_kept(self):
        """A callback taking a third argument is used as it is."""

        def log(stream, line, trace_id=None):
            pass

        self.assertIs(traced_log(log), log)
        writer = LogBook(Clock()).writer("e")
        self.assertIs(traced_log(writer), writer)

    def test_two_arguments_wrapped(self):
        """A two-argument callback is wrapped so the trace id is dropped."""
        got = []
        wrapped = traced_log(lambda stream, line: got.append((stream, line)))
        wrapped("stderr", "x", TRACE_A)
        self.assertEqual(got, [("stderr", "x")])


class LogBookTraceTests(unittest.TestCase):
    def test_trace_id_kept(self):
        """A line's trace id comes back with it; lines without one have None."""
        book = LogBook(Clock())
        log = book.writer("e")
        log("stderr", "traced", TRACE_A)
        log("stderr", "plain")
        log("gateway", "worker 1 ended")
        self.assertEqual(
            [(entry["line"], entry["trace_id"]) for entry in book.lines("e")],
            [("traced", TRACE_A), ("plain", None), ("worker 1 ended", None)],
        )


class EndpointLogsAPITests(AdminAPITestCase):
    def test_logs_show_trace_id(self):
        """``GET /api/endpoints/{id}/logs`` gives each line's ``trace_id`` (null when none)."""
        endpoint = self.create_hello()
        self.call("POST", "/api/endpoints/%s/compile" % endpoint["id"])
        self.call("POST", "/api/endpoints/%s/start" % endpoint["id"])
        FakePool.instances[-1].log("stderr", "handled", TRACE_A)
        code, document = self.call("GET", "/api/endpoints/%s/logs" % endpoint["id"])
        self.assertEqual(code, 200)
        self.assertEqual(
            [(line["line"], line["trace_id"]) for line in document["data"]["lines"]],
            [("worker up", None), ("handled", TRACE_A)],
        )


class ProcessesTraceTests(unittest.TestCase):
    """With ``--processes``, a line's trace id crosses the control channel to the pool's log."""

    def setUp(self):
        self.reactor = LoopbackReactor()
        self.group = ProcessGroup(
            1,
            "tcp:9080:interface=127.0.0.1",
            "/data",
            http="httptools",
            environ={"PATH": "/usr/bin"},
            executable="/venv/bin/python",
            reactor=self.reactor,
        )
        self.group.startService()
        self.addCleanup(lambda: self.group.stopService() if self.group.running else None)
        for process in self.reactor.processes:
            process.boot()

    def start_pool(self, log):
        pool = PoolProxy(self.group, "hello", ["/artifacts/d1/handler"], endpoint_id="e1", log=log, min_instances=1)
        self.successResultOf(pool.start())
        [plane_pool] = self.reactor.processes[0].pools
        return plane_pool

    def test_trace_id_reaches_the_log(self):
        """A traced line in a data-plane process arrives with its trace id; an untraced one with None."""
        lines = []
        plane_pool = self.start_pool(lambda stream, line, trace_id=None: lines.append((stream, line, trace_id)))
        plane_pool.log("stderr", "traced", TRACE_A)
        plane_pool.log("stderr", "plain")
        self.assertEqual(lines[-2:], [("stderr", "traced", TRACE_A), ("stderr", "plain", None)])

    def test_two_argument_log(self):
        """A two-argument log on the control side still gets traced lines, without the id."""
        lines = []
        plane_pool = self.start_pool(lambda stream, line: lines.append((stream, line)))
        plane_pool.log("stderr", "traced", TRACE_A)
        self.assertEqual(lines[-1], ("stderr", "traced"))
