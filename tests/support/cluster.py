"""
A cluster of real gateways for the integration tests and bench/cluster.py:
N ``twistd -n edgegw`` processes on loopback ports, each with a data dir of
its own, sharing one PostgreSQL database (``--store postgresql://...``),
real cargo, real workers.

The nodes are plain child processes (``subprocess.Popen``, their output in
``<data-dir>/twistd.out``), not the reactor's: a test class can keep one
cluster for all its tests (``SharedClusterMixin``) without leaving the
reactor dirty between tests. Starting, the API calls, load and polling go
through the reactor: every wait is bounded, nothing sleeps. Only stopping
blocks (``close_blocking``, at process exit), waiting for the nodes to end.

Each node's cargo target directory is a link to the suite's shared one
(``.cache/test-target``, as ``GatewayHarness`` uses), so a cluster pays no
cold build of the SDK's crates.
"""

import atexit
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

import treq
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks, returnValue
from twisted.web.client import Agent, HTTPConnectionPool

from tests.support import pg
from tests.support.hardening import pause, wait_for
from tests.support.harness import ROOT, SDK, SHARED_TARGET, _free_port, test_worker_uids

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def _die_with_the_test():
    """In the node's child before exec: SIGKILL it when the test process dies (no node outlives a crashed run)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class NodeFailed(AssertionError):
    """A node ended, or did not come up in time; the message has the end of its output."""


def _http():
    """A treq client on a non-persistent pool: nothing stays open in the reactor after a call."""
    return treq.client.HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


def query(uri, sql, *params):
    """Run one statement on the database of ``uri`` and commit (blocking, short); its rows, or None."""
    import psycopg2

    connection = psycopg2.connect(uri, connect_timeout=5)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall() if cursor.description else None
        connection.commit()
        return rows
    finally:
        connection.close()


class Node:
    """
    One ``twistd edgegw`` of a cluster. ``base`` is its data plane's URL,
    ``api`` its management API's; ``key`` the cluster's admin key.
    """

    def __init__(self, cluster, index, name, store_uri):
        self.cluster = cluster
        self.index = index
        self.name = name
        self.store_uri = store_uri  # None: the node's own SQLite file
        self.data_dir = os.path.join(cluster.root, name)
        os.makedirs(os.path.join(self.data_dir, "build"))
        if cluster.shared_target:
            # The suite's shared cargo target (see the module's docstring).
            os.symlink(SHARED_TARGET, os.path.join(self.data_dir, "build", "target"))
        self.port = _free_port()
        self.admin_port = _free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.api = "http://127.0.0.1:%d/api" % self.admin_port
        self.out_path = os.path.join(self.data_dir, "twistd.out")
        self.process = None
        self.key = None
        self.http = _http()

    # -- its life ------------------------------------------------------------

    def argv(self):
        low, high = self.cluster.worker_uids
        argv = [
            TWISTD, "-n", "--pidfile=", "edgegw",
            "--data-dir", self.data_dir,
            "--listen", "tcp:%d:interface=127.0.0.1" % self.port,
            "--admin-listen", "tcp:%d:interface=127.0.0.1" % self.admin_port,
            "--sdk", SDK, "--cargo", self.cluster.cargo,
            "--worker-uids", "%d-%d" % (low, high),
            # No background build of the common crates: a cold compile stays cold (bench/cluster.py)
            # and a node that only fetches builds nothing.
            "--no-warm-up",
        ]
        if self.store_uri is not None:
            argv += ["--store", self.store_uri, "--node-name", self.name]
        return argv + list(self.cluster.extra)

    def spawn(self):
        """Start the process (not waiting for it); its output is appended to ``twistd.out``."""
        assert not self.running(), "%s is running already" % self.name
        with open(self.out_path, "ab") as out:
            out.write(b"---- started by the test at %.3f\n" % time.time())
            out.flush()
            self.process = subprocess.Popen(
                self.argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=ROOT, env=dict(os.environ), start_new_session=True,
                preexec_fn=_die_with_the_test,
            )

    @property
    def pid(self):
        return self.process.pid if self.process is not None else None

    def running(self):
        return self.process is not None and self.process.poll() is None

    def output(self, tail=4000):
        """The node's output (stdout and stderr, every run), its last ``tail`` characters."""
        try:
            with open(self.out_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return text[-tail:] if tail else text

    def _failed(self, why):
        return NodeFailed("%s (%s): %s\n---- its output:\n%s" % (self.name, self.base, why, self.output()))

    @inlineCallbacks
    def healthy(self):
        """Whether ``/api/health`` answers 200 now; fails when the process ended."""
        if not self.running():
            raise self._failed("ended with status %r" % (self.process.returncode if self.process else None))
        try:
            response = yield self.http.get(self.api + "/health", timeout=2)
            yield response.content()
        except Exception:
            returnValue(False)
        returnValue(response.code == 200)

    def wait_healthy(self, timeout=90):
        """Poll ``/api/health`` through the reactor until it answers 200."""
        return wait_for(self.healthy, timeout, interval=0.1, message="%s to serve /api/health" % self.name)

    @inlineCallbacks
    def start(self, timeout=90):
        """Start (again) and wait until healthy, through the reactor."""
        self.spawn()
        yield self.wait_healthy(timeout)

    def kill(self):
        """SIGKILL: the node dies with no chance to say goodbye. Reaped before this returns."""
        if self.running():
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    @inlineCallbacks
    def stop(self, timeout=30):
        """SIGTERM and wait for the end through the reactor; SIGKILL after ``timeout``. Fires with the exit status."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                yield wait_for(lambda: not self.running(), timeout, interval=0.05, message="%s to stop" % self.name)
            except AssertionError:
                self.kill()
        if self.process is not None:
            self.process.wait(timeout=30)
            returnValue(self.process.returncode)

    def stop_blocking(self, timeout=30):
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    # -- talking to it ---------------------------------------------------------

    @inlineCallbacks
    def call(self, method, path, body=None, headers=None, key=None, timeout=120):
        """
        A management API call: ``(status, decoded JSON or None, response
        headers)``. ``key`` defaults to the cluster's admin key.
        """
        sent = {"Authorization": "Bearer " + (key or self.key)}
        sent.update(headers or {})
        response = yield self.http.request(
            method, self.api + path,
            data=json.dumps(body).encode() if body is not None else None,
            headers=sent, timeout=timeout,
        )
        content = yield response.content()
        try:
            document = json.loads(content) if content else None
        except ValueError:
            document = content.decode(errors="replace")
        returnValue((response.code, document, response.headers))

    @inlineCallbacks
    def ok(self, method, path, body=None, expect=(200, 201), **kwargs):
        """A call that must answer ``expect``: its ``data``."""
        code, document, _ = yield self.call(method, path, body, **kwargs)
        if code not in expect:
            raise AssertionError("%s %s on %s answered %s: %r" % (method, path, self.name, code, document))
        returnValue(document["data"] if isinstance(document, dict) and "data" in document else document)

    @inlineCallbacks
    def get(self, path, timeout=10, **kwargs):
        """A data-plane request: ``(status, body bytes)``."""
        response = yield self.http.get(self.base + path, timeout=timeout, **kwargs)
        content = yield response.content()
        returnValue((response.code, content))

    @inlineCallbacks
    def answer(self, path):
        """``(status, JSON body or None)`` of a GET on the data plane; ``(None, repr)`` when the request failed."""
        try:
            code, content = yield self.get(path)
        except Exception as e:
            returnValue((None, repr(e)))
        try:
            returnValue((code, json.loads(content)))
        except ValueError:
            returnValue((code, None))

    @inlineCallbacks
    def wait_answer(self, path, predicate, timeout=30, message=None, interval=0.05):
        """
        Poll a data-plane GET until ``predicate(status, body)``; fires with
        ``(status, body)``. On time-out the failure has the last answer and
        the end of the node's output.
        """
        last = []

        @inlineCallbacks
        def check():
            got = yield self.answer(path)
            last[:] = [got]
            returnValue(got if predicate(*got) else None)

        try:
            got = yield wait_for(check, timeout, interval=interval, message=message or "%s to answer %s as expected" % (self.name, path))
        except AssertionError as e:
            raise self._failed("%s; last answer %r" % (e, last[0] if last else None))
        returnValue(got)

    @inlineCallbacks
    def create(self, name, path, code, method="GET", **settings):
        """Create an endpoint (not compiled): its id."""
        body = {"name": name, "path": path, "method": method, "code": code}
        if settings:
            body["settings"] = settings
        data = yield self.ok("POST", "/endpoints", body, expect=(201,))
        returnValue(data["id"])

    @inlineCallbacks
    def deploy(self, name, path, code, method="GET", **settings):
        """Create, compile and start an endpoint on this node: its id."""
        endpoint_id = yield self.create(name, path, code, method, **settings)
        yield self.ok("POST", "/endpoints/%s/compile" % endpoint_id)
        yield self.ok("POST", "/endpoints/%s/start" % endpoint_id)
        returnValue(endpoint_id)

    @inlineCallbacks
    def redeploy(self, endpoint_id, code):
        """The three calls of a deploy (docs/api.md, "Deploying"): PUT code, compile, restart; the compile's build."""
        yield self.ok("PUT", "/endpoints/%s" % endpoint_id, {"code": code})
        compiled = yield self.ok("POST", "/endpoints/%s/compile" % endpoint_id)
        yield self.ok("POST", "/endpoints/%s/restart" % endpoint_id)
        returnValue(compiled["build"])


class Cluster:
    """
    ``size`` nodes named ``n1``, ``n2``... sharing one new PostgreSQL
    database (``uri``; dropped at ``close``). ``proxy_port``: the nodes whose
    index is in ``proxied`` reach the database through that port (a
    ``TCPProxy``) instead of the server's, so a test can cut their store.
    ``shared=False`` runs each node on its own SQLite file (no ``--store``):
    only for checking the harness itself on an edgegw without cluster mode.
    ``shared_target=False`` gives each node a cargo target of its own (cold
    builds, as on a new machine: the bench's compile time). ``database``: an
    existing database's URI (the caller drops it); ``key``: an admin key it
    holds already (no node mints one then).
    """

    def __init__(
        self, size=2, shared=True, proxy_port=None, proxied=(), cargo=None, extra=(), database=None, shared_target=True,
        key=None,
    ):
        self.size = size
        self.shared_target = shared_target
        self.shared = shared
        self.proxy_port = proxy_port
        self.proxied = set(proxied)
        self.extra = list(extra)
        if cargo is None:
            from edgegw_tx.build.cargo import find_cargo

            cargo = find_cargo(None)
        self.cargo = cargo
        self.worker_uids = test_worker_uids()
        self.uri = database
        self.own_database = False
        self.root = None
        self.nodes = []
        self.key = key  # given: the database has keys already, so no node writes admin.key

    def __getitem__(self, index):
        return self.nodes[index]

    def _make(self):
        if self.shared_target:
            # A node re-owns its target directory for the build user, but through
            # the link it re-owns only the link: give the build user the real one.
            from edgegw_tx.build.sandbox import BuildSandbox

            BuildSandbox.for_gateway().prepare([SHARED_TARGET])
        if self.shared and self.uri is None:
            self.uri = pg.create_database()
            self.own_database = True
        self.root = tempfile.mkdtemp(prefix="edgegw-cluster-")
        # Workers run as other users: they must be able to pass through to their binaries.
        os.chmod(self.root, 0o711)
        for index in range(self.size):
            self.nodes.append(Node(self, index, "n%d" % (index + 1), self._store_uri(index)))

    def _store_uri(self, index):
        if not self.shared:
            return None
        if index in self.proxied:
            assert self.proxy_port, "a proxied node needs proxy_port"
            return "postgresql://%s@127.0.0.1:%d/%s" % (pg.USER, self.proxy_port, pg.database_name(self.uri))
        return self.uri

    def _read_key(self, node):
        with open(os.path.join(node.data_dir, "admin.key")) as f:
            return f.read().strip()

    def _keys(self):
        """The first node mints the cluster's key; without a shared store each node has its own."""
        if self.key is None:
            self.key = self._read_key(self.nodes[0])
        for node in self.nodes:
            node.key = self.key if self.shared else self._read_key(node)

    @inlineCallbacks
    def start(self, timeout=90, together=False):
        """
        Make the database and data dirs, start the first node (it applies the
        migrations and mints the key), then the others together; fires once
        every one is healthy. ``together``: spawn every node at once (two
        nodes racing for the migrations and the bootstrap key).
        """
        self._make()
        if together:
            for node in self.nodes:
                node.spawn()
            yield DeferredList([node.wait_healthy(timeout) for node in self.nodes], fireOnOneErrback=True, consumeErrors=True)
        else:
            first, *others = self.nodes
            yield first.start(timeout)
            for node in others:
                node.spawn()
            for node in others:
                yield node.wait_healthy(timeout)
        if together:
            keys = [n for n in self.nodes if os.path.exists(os.path.join(n.data_dir, "admin.key"))]
            if self.key is None:
                self.key = self._read_key(keys[0]) if keys else None
            for node in self.nodes:
                node.key = self.key
        else:
            self._keys()
        returnValue(self)

    def close_blocking(self):
        """Stop every node (SIGTERM together, SIGKILL after 30 s), reaped; drop the database; remove the data dirs."""
        for node in self.nodes:
            if node.running():
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop_blocking()
        self._forget()

    @inlineCallbacks
    def close(self):
        """``close_blocking`` through the reactor (a cluster per test, its proxy still forwarding meanwhile)."""
        yield DeferredList([node.stop() for node in self.nodes], consumeErrors=True)
        self._forget()

    def _forget(self):
        if self.own_database and self.uri is not None:
            pg.drop_database(self.uri)
            self.uri = None
        if self.root is not None and not os.environ.get("EDGEGW_KEEP_CLUSTER"):
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def outputs(self):
        """Every node's output tail, for a failure message."""
        return "\n".join("==== %s\n%s" % (node.name, node.output()) for node in self.nodes)

    # -- the shared database, read directly -----------------------------------

    def query(self, sql, *params):
        """Rows of a query on the cluster's database (blocking, short: psycopg2 straight)."""
        return query(self.uri, sql, *params)


class SharedClusterMixin:
    """
    One cluster for every test of a class (``cluster_size`` nodes, made by
    ``make_cluster``): started by the first test's ``setUp`` and stopped by
    the cleanup of the class's last test (by name: trial's order), or when
    the process exits if that test ran in another trial process (``--jobs``).
    Tests of such a class must leave every node running and give their
    endpoints paths of their own.
    """

    cluster_size = 2
    cluster_timeout = 90

    def make_cluster(self):
        return Cluster(self.cluster_size)

    @inlineCallbacks
    def setUp(self):
        cls = type(self)
        if cls.__dict__.get("_cluster") is None:
            cluster = self.make_cluster()
            cls._cluster = cluster
            atexit.register(cluster.close_blocking)
            try:
                yield cluster.start(self.cluster_timeout)
            except BaseException:
                cls._cluster = None
                yield cluster.close()
                raise
        self.cluster = cls._cluster
        last = max(name for name in dir(cls) if name.startswith("test"))
        if self._testMethodName == last:
            self.addCleanup(self._close_cluster)

    @inlineCallbacks
    def _close_cluster(self):
        cls = type(self)
        cluster, cls._cluster = cls._cluster, None
        if cluster is not None:
            yield cluster.close()


class Load:
    """
    ``clients`` loops sending ``GET url`` back to back over keep-alive
    connections until ``stop()``; counts answers by status and every
    failure (a non-2xx status or a failed request: reset, refused, timed
    out). ``bodies`` counts the distinct answers (e.g. versions seen).
    """

    def __init__(self, url, clients=4, timeout=10, key=lambda body: body):
        self.url = url
        self.clients = clients
        self.timeout = timeout
        self.key = key
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = clients
        self.http = treq.client.HTTPClient(Agent(reactor, pool=self.pool))
        self.running = False
        self.statuses = Counter()
        self.bodies = Counter()
        self.failures = []
        self.done = []

    @property
    def total(self):
        return sum(self.statuses.values()) + sum(1 for f in self.failures if f[0] is None)

    @property
    def failed(self):
        return len(self.failures)

    def start(self):
        self.running = True
        self.done = [self._loop() for _ in range(self.clients)]
        return self

    @inlineCallbacks
    def _loop(self):
        while self.running:
            try:
                response = yield self.http.get(self.url, timeout=self.timeout)
                content = yield response.content()
            except Exception as e:
                self.failures.append((None, repr(e), reactor.seconds()))
                yield pause(0.01)  # a refused connection fails at once: do not spin
                continue
            self.statuses[response.code] += 1
            if 200 <= response.code < 300:
                self.bodies[self.key(content)] += 1
            else:
                self.failures.append((response.code, content[:200], reactor.seconds()))

    @inlineCallbacks
    def stop(self):
        """End the loops (each finishes its request), close the connections; fires with self."""
        self.running = False
        yield DeferredList(self.done, consumeErrors=True)
        yield self.pool.closeCachedConnections()
        returnValue(self)

    def summary(self):
        return "%d requests, %d failed %r, statuses %r" % (
            self.total, self.failed, self.failures[:5], dict(self.statuses))
