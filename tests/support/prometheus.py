"""
A real Prometheus server for the end-to-end metrics tests: Debian's
``prometheus`` (installed by ``tools/setup-prometheus``) started on a free
loopback port with a configuration this module writes, its data directory
in the test's temporary directory, stopped and reaped at the test's cleanup.

Waiting is always bounded: the server's readiness and a query's expected
value are polled on the reactor (no sleeping), and a bound that runs out
fails the test with what Prometheus last said (its answer, the targets'
last scrape errors, its output).
"""

import json
import os
import shutil
import socket

import treq
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks, returnValue
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool

PROMETHEUS = os.environ.get("EDGEGW_PROMETHEUS", "")


def prometheus_or_skip():
    """The ``prometheus`` binary; the test skips, saying why, when there is none."""
    binary = PROMETHEUS or shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.access(binary, os.X_OK):
        raise unittest.SkipTest(
            f"no prometheus at {binary}: tools/setup-prometheus (run by make test as root) "
            "installs Debian's `prometheus`"
        )
    return binary


def promtool():
    """The ``promtool`` beside Prometheus (same package), or None."""
    return shutil.which("promtool") or (
        "/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None
    )


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_job(name, target, key=None, interval="1s"):
    """
    One ``scrape_configs`` entry: ``target`` (``host:port``) scraped at
    ``/metrics`` every ``interval``, with ``key`` as its bearer token when given.
    """
    job = {
        "job_name": name,
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "metrics_path": "/metrics",
        "static_configs": [{"targets": [target]}],
    }
    if key is not None:
        job["authorization"] = {"type": "Bearer", "credentials": key}
    return job


class _Output(ProcessProtocol):
    """Prometheus's output (both streams) and a Deferred for its end."""

    def __init__(self):
        self.output = b""
        self.ended = Deferred()
        self.running = True

    def childDataReceived(self, fd, data):
        self.output += data

    def processEnded(self, reason):
        self.running = False
        self.ended.callback(reason.value)


class PrometheusServer:
    """
    One Prometheus process for a test: ``start()``, ``query(expression)``,
    ``wait_for_value(expression, value)``, ``stop()`` (also added to the
    test's cleanup by ``start``).

    :ivar url: ``http://127.0.0.1:<port>`` once started.
    """

    READY_BOUND = 60.0  # seconds for the server to answer /-/ready
    POLL = 0.25

    def __init__(self, test_case, directory, jobs, binary=None):
        self.test_case = test_case
        self.directory = os.path.abspath(directory)
        self.jobs = jobs
        self.binary = binary or prometheus_or_skip()
        self.process = None
        self.protocol = None
        self.url = None
        self.http = treq.client.HTTPClient(
            Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        )

    def write_config(self):
        """prometheus.yml in the server's directory (JSON is YAML), returned as its path."""
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, "prometheus.yml")
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": self.jobs}
        with open(path, "w") as f:
            json.dump(config, f, indent=2)
        return path

    @inlineCallbacks
    def start(self):
        """Spawn the server and wait until it answers ``/-/ready`` (a port lost to a race is retried)."""
        config = self.write_config()
        self.test_case.addCleanup(self.stop)
        for attempt in range(3):
            port = _free_port()
            self.url = f"http://127.0.0.1:{port}"
            self.protocol = _Output()
            self.process = reactor.spawnProcess(
                self.protocol,
                self.binary,
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={os.path.join(self.directory, 'data')}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                path=self.directory,
            )
            ready = yield self._wait_ready()
            if ready:
                return
            if b"address already in use" not in self.protocol.output:
                break
        self.test_case.fail(
            "prometheus did not become ready; its output:\n"
            + self.protocol.output.decode(errors="replace")[-4000:]
        )

    @inlineCallbacks
    def _wait_ready(self):
        waited = 0.0
        while waited < self.READY_BOUND and self.protocol.running:
            try:
                response = yield self.http.get(self.url + "/-/ready")
                yield response.content()
                if response.code == 200:
                    returnValue(True)
            except Exception:
                pass  # not listening yet
            yield task.deferLater(reactor, self.POLL, lambda: None)
            waited += self.POLL
        returnValue(False)

    @inlineCallbacks
    def stop(self):
        """SIGTERM, then SIGKILL if it has not ended within 20 s; fires once the process is reaped."""
        protocol = self.protocol
        if protocol is None or not protocol.running:
            return
        try:
            self.process.signalProcess("TERM")
        except ProcessExitedAlready:
            pass
        killer = reactor.callLater(20, self._kill)
        yield protocol.ended
        if killer.active():
            killer.cancel()

    def _kill(self):
        try:
            self.process.signalProcess("KILL")
        except ProcessExitedAlready:
            pass

    @inlineCallbacks
    def api(self, path, **params):
        """GET ``/api/v1/<path>``: the decoded JSON document."""
        response = yield self.http.get(self.url + "/api/v1/" + path, params=params)
        body = yield response.content()
        returnValue(json.loads(body))

    @inlineCallbacks
    def query(self, expression):
        """An instant query: its ``data.result`` list (a query Prometheus refuses fails the test)."""
        document = yield self.api("query", query=expression)
        if document.get("status") != "success":
            self.test_case.fail(f"prometheus refused {expression!r}: {document}")
        returnValue(document["data"]["result"])

    @inlineCallbacks
    def targets(self):
        """Each active target's job, health and last scrape error."""
        document = yield self.api("targets")
        returnValue(
            [
                {
                    "job": t["labels"].get("job"),
                    "health": t.get("health"),
                    "lastError": t.get("lastError"),
                }
                for t in document["data"]["activeTargets"]
            ]
        )

    @inlineCallbacks
    def wait_for_value(self, expression, expected, bound=60.0):
        """
        Poll the instant query ``expression`` until its single value is
        ``expected``; fail, with the last answer and the targets, after
        ``bound`` seconds.
        """
        waited, result = 0.0, None
        while waited < bound:
            result = yield self.query(expression)
            if len(result) == 1 and float(result[0]["value"][1]) == expected:
                returnValue(float(result[0]["value"][1]))
            yield task.deferLater(reactor, self.POLL, lambda: None)
            waited += self.POLL
        targets = yield self.targets()
        self.test_case.fail(
            f"{expression} did not reach {expected} within {bound:.0f} s: last answer {result}; "
            f"targets {targets}"
        )
