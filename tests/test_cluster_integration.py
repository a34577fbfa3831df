"""
Cluster mode with its real parts (issue 16): real ``twistd edgegw`` nodes on
loopback ports sharing one PostgreSQL database (a new one per cluster,
dropped after), real cargo, real workers. Every wait polls with a bound.

``ClusterIntegrationTests`` share one two-node cluster for the class (each
test has endpoints of its own); the fault tests change their cluster's life
(SIGKILL, the store cut through ``TCPProxy``), so each has its own.
"""

import json
import os
import sqlite3
import uuid
from contextlib import closing

from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial import unittest

from tests.support import pg
from tests.support.cluster import Cluster, Load, SharedClusterMixin, query, wait_for
from tests.support.handlers import HELLO
from tests.support.harness import _cargo_or_skip
from tests.support.tcpproxy import TCPProxy

VERSIONED = """use rust_edge_gateway_sdk::prelude::*;

// %(token)s
fn handle(_req: Request) -> Response {
    Response::ok(json!({"version": "%(version)s"}))
}

handler_loop!(handle);
"""

SQL = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Result<Response, HandlerError> {
    let result = DbPool::new("db").query("SELECT 41 + 1 AS n", &[])?;
    Ok(Response::ok(json!({"rows": result.rows})))
}

handler_loop_result!(handle);
"""

# Generous bounds: a change reaches the other nodes in well under a second
# (NOTIFY), or within the 2 s fallback poll; starting workers adds a little.
PROPAGATION = 20


def versioned(version, token="same"):
    """A handler answering ``{"version": version}``; ``token`` changes the digest without changing the answer."""
    return VERSIONED % {"version": version, "token": token}


def serves(version):
    """A predicate on ``(status, body)``: the endpoint answers ``version``."""
    return lambda status, body: status == 200 and isinstance(body, dict) and body.get("version") == version


def version_of(content):
    try:
        return json.loads(content).get("version")
    except ValueError:
        return None


def items(data):
    """The list of a list answer, whatever its envelope (``[...]`` or ``{"items": [...]}``)."""
    if isinstance(data, list):
        return data
    for name in ("items", "nodes"):
        if isinstance(data, dict) and name in data:
            return data[name]
    raise AssertionError("not a list answer: %r" % (data,))


class ClusterIntegrationTests(SharedClusterMixin, unittest.TestCase):
    """Two nodes, n1 and n2, on one database: what one is told, the other does."""

    timeout = 300

    @inlineCallbacks
    def setUp(self):
        _cargo_or_skip()
        yield SharedClusterMixin.setUp(self)
        self.n1, self.n2 = self.cluster[0], self.cluster[1]

    @inlineCallbacks
    def test_an_endpoint_started_on_one_node_is_served_by_the_other(self):
        """An endpoint created, compiled and started on n1 answers on n2's data plane, from a binary n2 did not compile."""
        yield self.n1.deploy("hello", "/spread/hello", HELLO)
        status, body = yield self.n2.wait_answer(
            "/spread/hello", lambda status, body: status == 200, timeout=PROPAGATION
        )
        self.assertEqual(body, {"message": "Hello, World!", "path": "/spread/hello", "method": "GET"})

    @inlineCallbacks
    def test_an_edit_on_one_node_reaches_the_other_without_a_failed_request(self):
        """A redeploy made through n2 is served by n1 while n1 is under load, and none of n1's requests fails."""
        endpoint_id = yield self.n1.deploy("edit", "/edit", versioned("v1"))
        yield self.n2.wait_answer("/edit", serves("v1"), timeout=PROPAGATION)
        load = Load(self.n1.base + "/edit", clients=4, key=version_of).start()
        try:
            yield wait_for(lambda: load.bodies["v1"] > 50, 10, message="load on n1")
            yield self.n2.redeploy(endpoint_id, versioned("v2"))
            yield wait_for(lambda: load.bodies["v2"] > 50, PROPAGATION, message="n1's load to see v2")
        finally:
            yield load.stop()
        self.assertEqual(load.failures, [], load.summary())
        self.assertEqual(set(load.bodies), {"v1", "v2"}, load.summary())

    @inlineCallbacks
    def test_a_service_bound_on_one_node_serves_the_endpoint_on_the_other(self):
        """A service created and bound to an endpoint through n1 is reached by that endpoint's workers on n2."""
        service = yield self.n1.ok(
            "POST", "/services", {"name": "db-" + uuid.uuid4().hex[:6], "service_type": "sqlite", "config": {}}, expect=(201,)
        )
        endpoint_id = yield self.n1.create("sql", "/sql", SQL)
        yield self.n1.ok("POST", "/endpoints/%s/services" % endpoint_id, {"service_id": service["id"], "pool_id": "db"})
        yield self.n1.ok("POST", "/endpoints/%s/compile" % endpoint_id)
        yield self.n1.ok("POST", "/endpoints/%s/start" % endpoint_id)
        status, body = yield self.n2.wait_answer("/sql", lambda status, body: status == 200, timeout=PROPAGATION)
        self.assertEqual(body, {"rows": [{"n": 42}]})

    @inlineCallbacks
    def test_a_collections_new_base_path_moves_the_route_on_the_other_node(self):
        """An endpoint of a collection whose base path n1 changes answers on n2 at the new path, and not at the old one."""
        collection = yield self.n1.ok("POST", "/collections", {"name": "moving", "base_path": "/moving-a"}, expect=(201,))
        endpoint_id = yield self.n1.create("moved", "/hello", HELLO)
        yield self.n1.ok("PUT", "/endpoints/%s" % endpoint_id, {"collection_id": collection["id"]})
        yield self.n1.ok("POST", "/endpoints/%s/compile" % endpoint_id)
        yield self.n1.ok("POST", "/endpoints/%s/start" % endpoint_id)
        yield self.n2.wait_answer("/moving-a/hello", lambda status, body: status == 200, timeout=PROPAGATION)
        yield self.n1.ok("PUT", "/collections/%s" % collection["id"], {"base_path": "/moving-b"})
        yield self.n2.wait_answer("/moving-b/hello", lambda status, body: status == 200, timeout=PROPAGATION)
        status, _ = yield self.n2.answer("/moving-a/hello")
        self.assertEqual(status, 404)

    @inlineCallbacks
    def test_a_key_revoked_on_one_node_is_refused_by_the_other(self):
        """A key made on n1 works on n2; once n1 revokes it, n2 answers 401 to it."""
        made = yield self.n1.ok("POST", "/keys", {"name": "spread-" + uuid.uuid4().hex[:6], "scope": "read"}, expect=(201,))

        def status_on_n2():
            return self.n2.call("GET", "/endpoints", key=made["key"]).addCallback(lambda answer: answer[0])

        yield wait_for(lambda: status_on_n2().addCallback(lambda code: code == 200), PROPAGATION, message="n2 to accept the new key")
        yield self.n1.ok("DELETE", "/keys/%s" % made["id"])
        yield wait_for(lambda: status_on_n2().addCallback(lambda code: code == 401), PROPAGATION, message="n2 to refuse the revoked key")

    @inlineCallbacks
    def test_stopping_on_one_node_stops_the_endpoint_on_every_node(self):
        """An endpoint stopped through n1 stops answering on n2 too: n2 answers what n1 answers."""
        endpoint_id = yield self.n1.deploy("stopped", "/stopped", versioned("s1"))
        yield self.n2.wait_answer("/stopped", serves("s1"), timeout=PROPAGATION)
        yield self.n1.ok("POST", "/endpoints/%s/stop" % endpoint_id)
        stopped_status, _ = yield self.n1.answer("/stopped")
        self.assertNotEqual(stopped_status, 200)
        yield self.n2.wait_answer("/stopped", lambda status, body: status == stopped_status, timeout=PROPAGATION)

    @inlineCallbacks
    def test_if_match_with_an_old_revision_answers_412(self):
        """A PUT or DELETE whose If-Match names a revision another node already replaced answers 412; the current one passes."""
        endpoint_id = yield self.n1.create("etag", "/etag", HELLO)
        code, _, headers = yield self.n1.call("GET", "/endpoints/%s" % endpoint_id)
        [old] = headers.getRawHeaders("etag")
        yield self.n2.ok("PUT", "/endpoints/%s" % endpoint_id, {"description": "changed on n2"})
        code, document, _ = yield self.n1.call(
            "PUT", "/endpoints/%s" % endpoint_id, {"description": "changed on n1"}, headers={"If-Match": old}
        )
        self.assertEqual(code, 412, document)
        self.assertIn("changed by someone else", document["error"])
        code, document, _ = yield self.n1.call("DELETE", "/endpoints/%s" % endpoint_id, headers={"If-Match": old})
        self.assertEqual(code, 412, document)
        code, current, headers = yield self.n1.call("GET", "/endpoints/%s" % endpoint_id)
        self.assertEqual(current["data"]["description"], "changed on n2")
        [now] = headers.getRawHeaders("etag")
        self.assertNotEqual(now, old)
        code, document, headers = yield self.n1.call(
            "PUT", "/endpoints/%s" % endpoint_id, {"description": "changed on n1"}, headers={"If-Match": now}
        )
        self.assertEqual(code, 200, document)
        self.assertNotEqual(headers.getRawHeaders("etag"), [now])

    @inlineCallbacks
    def test_the_same_code_compiled_on_two_nodes_at_once_runs_cargo_once(self):
        """Two compiles of new code asked of n1 and n2 at the same moment give one digest, and only one of them ran cargo."""
        code = versioned("once", token=uuid.uuid4().hex)  # a digest nobody built yet
        endpoint_id = yield self.n1.create("once", "/once", code)
        builds = yield gatherResults(
            [node.ok("POST", "/endpoints/%s/compile" % endpoint_id) for node in (self.n1, self.n2)]
        )
        digests = {build["build"]["digest"] for build in builds}
        self.assertEqual(len(digests), 1, builds)
        compiled = [build["build"]["cached"] for build in builds]
        self.assertEqual(sorted(compiled), [False, True], "exactly one cargo run: %r" % builds)
        [digest] = digests
        rows = self.cluster.query("SELECT count(*) FROM artifacts WHERE digest = %s", digest)
        self.assertEqual(rows, [(1,)])

    @inlineCallbacks
    def test_nodes_lists_every_node_up_with_its_workers(self):
        """GET /api/nodes on either node lists n1 and n2 with their data-plane addresses, up, and the workers each runs."""
        endpoint_id = yield self.n1.deploy("counted", "/counted", versioned("c1"))
        yield self.n2.wait_answer("/counted", serves("c1"), timeout=PROPAGATION)

        @inlineCallbacks
        def listed():
            data = yield self.n2.ok("GET", "/nodes")
            nodes = {node["name"]: node for node in items(data)}
            ready = set(nodes) >= {"n1", "n2"} and all(
                nodes[name]["state"] == "up" and nodes[name]["workers"] >= 1 for name in ("n1", "n2")
            )
            return nodes if ready else None

        nodes = yield wait_for(listed, PROPAGATION, message="both nodes up with workers in /api/nodes")
        self.assertEqual(nodes["n1"]["address"], "127.0.0.1:%d" % self.n1.port)
        self.assertEqual(nodes["n2"]["address"], "127.0.0.1:%d" % self.n2.port)
        self.assertEqual(nodes["n2"]["self"], True)
        self.assertEqual(nodes["n1"]["self"], False)
        view = yield self.n1.ok("GET", "/endpoints/%s" % endpoint_id)
        self.assertGreaterEqual(view["nodes"].get("n1", 0), 1, view)


class ClusterFaultIntegrationTests(unittest.TestCase):
    """
    Two nodes per test: n1 reaches PostgreSQL directly, n2 through a
    ``TCPProxy`` the test can cut, as a network would.
    """

    timeout = 300

    @inlineCallbacks
    def setUp(self):
        cargo = _cargo_or_skip()
        self.proxy = TCPProxy(pg.PORT, host=pg.HOST)
        yield self.proxy.start()
        self.addCleanup(self.proxy.stop)  # after the nodes: cleanups run last first
        self.cluster = Cluster(2, proxy_port=self.proxy.port, proxied={1}, cargo=cargo)
        self.addCleanup(self.cluster.close)
        yield self.cluster.start()
        self.n1, self.n2 = self.cluster[0], self.cluster[1]
        self.endpoint_id = yield self.n1.deploy("fault", "/fault", versioned("v1"))
        yield self.n2.wait_answer("/fault", serves("v1"), timeout=PROPAGATION)

    @inlineCallbacks
    def test_a_node_killed_under_load_changes_nothing_for_the_other_and_catches_up_when_back(self):
        """
        SIGKILL of n1 while n2 is under load fails none of n2's requests; n2
        lists n1 as down; a change made on n2 meanwhile is served by n1 once
        it is started again.
        """
        load = Load(self.n2.base + "/fault", clients=4, key=version_of).start()
        try:
            yield wait_for(lambda: load.total > 50, 10, message="load on n2")
            self.n1.kill()
            seen = load.total

            @inlineCallbacks
            def n1_down():
                data = yield self.n2.ok("GET", "/nodes")
                return any(node["name"] == "n1" and node["state"] == "down" for node in items(data))

            yield wait_for(n1_down, 30, interval=0.2, message="n2 to list n1 as down")
            self.assertGreater(load.total, seen)
        finally:
            yield load.stop()
        self.assertEqual(load.failures, [], load.summary())
        yield self.n2.redeploy(self.endpoint_id, versioned("v2"))
        yield self.n1.start()
        yield self.n1.wait_answer("/fault", serves("v2"), timeout=PROPAGATION)

    @inlineCallbacks
    def test_a_lost_store_leaves_the_data_plane_serving_and_the_api_answering_503_until_it_is_back(self):
        """
        With n2's database connections cut, n2 serves every request of its
        load, answers a write with 503 naming the store, and once the store
        is back serves the change n1 made meanwhile and takes writes again.
        """
        load = Load(self.n2.base + "/fault", clients=4, key=version_of).start()
        try:
            yield wait_for(lambda: load.total > 50, 10, message="load on n2")
            yield self.proxy.cut()

            @inlineCallbacks
            def refused():
                code, document, headers = yield self.n2.call(
                    "PUT", "/endpoints/%s" % self.endpoint_id, {"description": "while cut"}
                )
                return (code, document, headers) if code == 503 else None

            code, document, headers = yield wait_for(refused, 15, interval=0.2, message="n2 to answer 503")
            self.assertIn("store", document["error"])
            self.assertIn(str(self.proxy.port), document["error"])
            self.assertEqual(headers.getRawHeaders("retry-after"), ["5"])
            yield self.n1.redeploy(self.endpoint_id, versioned("v2"))
            seen = load.total
            yield wait_for(lambda: load.total > seen + 50, 10, message="more load on n2 while cut")
            self.assertEqual(set(load.bodies), {"v1"}, "n2 cannot know of v2 yet")
            yield self.proxy.restore()
            yield wait_for(lambda: load.bodies["v2"] > 20, PROPAGATION, message="n2 to serve v2 after the store is back")
        finally:
            yield load.stop()
        self.assertEqual(load.failures, [], load.summary())

        @inlineCallbacks
        def writes():
            code, _, _ = yield self.n2.call("PUT", "/endpoints/%s" % self.endpoint_id, {"description": "back"})
            return code == 200

        yield wait_for(writes, PROPAGATION, interval=0.2, message="n2 to take writes again")

    @inlineCallbacks
    def test_terminated_store_connections_fail_no_request_and_are_made_again(self):
        """
        ``pg_terminate_backend`` of every connection to the database fails
        none of n2's requests under load; afterwards a change made on n1
        still reaches n2 and n2 takes writes.
        """
        load = Load(self.n2.base + "/fault", clients=4, key=version_of).start()
        try:
            yield wait_for(lambda: load.total > 50, 10, message="load on n2")
            self.assertGreater(pg.terminate_connections(self.cluster.uri), 0)
            seen = load.total
            yield wait_for(lambda: load.total > seen + 100, 10, message="more load on n2")
        finally:
            yield load.stop()
        self.assertEqual(load.failures, [], load.summary())

        @inlineCallbacks
        def write(node):
            code, _, _ = yield node.call("PUT", "/endpoints/%s" % self.endpoint_id, {"description": node.name})
            return code == 200

        yield wait_for(lambda: write(self.n1), PROPAGATION, interval=0.2, message="n1 to take writes again")
        yield wait_for(lambda: write(self.n2), PROPAGATION, interval=0.2, message="n2 to take writes again")
        yield self.n1.redeploy(self.endpoint_id, versioned("v2"))
        yield self.n2.wait_answer("/fault", serves("v2"), timeout=PROPAGATION)

    @inlineCallbacks
    def test_a_node_started_while_the_store_is_down_serves_its_last_known_configuration(self):
        """
        n2 restarted while its store is unreachable starts, says in its log
        that it serves the last-known configuration, serves the endpoint,
        and catches up with n1's change once the store is back.
        """
        snapshot = os.path.join(self.n2.data_dir, "last-known.sqlite3")

        def saved():
            """Whether n2's snapshot has the endpoint running (it is saved a moment after a change)."""
            if not os.path.exists(snapshot):
                return False
            with closing(sqlite3.connect("file:%s?mode=ro" % snapshot, uri=True)) as db:
                rows = db.execute("SELECT status, deployed FROM endpoints WHERE id = ?", (self.endpoint_id,)).fetchall()
            return bool(rows) and rows[0][0] == "running" and rows[0][1] is not None

        yield wait_for(saved, PROPAGATION, interval=0.1, message="n2's snapshot %s to have the endpoint running" % snapshot)
        self.n2.kill()
        yield self.proxy.cut()
        yield self.n2.start()
        self.assertIn("last-known", self.n2.output(tail=20000))
        yield self.n2.wait_answer("/fault", serves("v1"), timeout=PROPAGATION)
        yield self.n1.redeploy(self.endpoint_id, versioned("v2"))
        yield self.proxy.restore()
        yield self.n2.wait_answer("/fault", serves("v2"), timeout=PROPAGATION)


class ClusterStartIntegrationTests(unittest.TestCase):
    """Nodes starting together on an empty database."""

    timeout = 300

    @inlineCallbacks
    def test_two_nodes_started_at_once_on_an_empty_database_share_one_bootstrap_key(self):
        """
        Two nodes started at the same moment on an empty database both come
        up (one applies the migrations, the other waits); only one mints the
        bootstrap key, and that key works on both.
        """
        cargo = _cargo_or_skip()
        cluster = Cluster(2, cargo=cargo)
        self.addCleanup(cluster.close)
        yield cluster.start(together=True)
        written = [n.name for n in cluster.nodes if os.path.exists(os.path.join(n.data_dir, "admin.key"))]
        self.assertEqual(len(written), 1, cluster.outputs())
        self.assertEqual(cluster.query("SELECT count(*) FROM api_keys"), [(1,)])
        for node in cluster.nodes:
            code, document, _ = yield node.call("GET", "/endpoints")
            self.assertEqual(code, 200, (node.name, document))


class ClusterUpgradeIntegrationTests(unittest.TestCase):
    """A gateway's PostgreSQL database from before cluster mode."""

    timeout = 300

    @inlineCallbacks
    def test_nodes_on_a_database_of_the_previous_schema_upgrade_it_and_serve_its_endpoints(self):
        """
        Two nodes started on a database at migration 5 holding a key and an
        endpoint bring it to the last migration; the old endpoint reads at revision 0 (ETag
        "0"), the old key works on both, and the endpoint compiled and
        started through n1 is served by n2.
        """
        from edgegw_tx.admin.auth import hash_key
        from edgegw_tx.store.postgres_schema import MIGRATIONS

        cargo = _cargo_or_skip()
        uri = pg.fresh_database(self)
        pg.postgres_store(self, uri=uri, migrations=MIGRATIONS[:5]).close()
        key = "before-the-cluster-" + uuid.uuid4().hex
        query(
            uri,
            "INSERT INTO api_keys (id, name, scope, key_hash, created_at) VALUES (%s, 'old', 'admin', %s, 't0')",
            uuid.uuid4().hex, hash_key(key),
        )
        endpoint_id = uuid.uuid4().hex
        query(
            uri,
            "INSERT INTO endpoints (id, name, path, path_shape, method, domain, code, settings, status, created_at,"
            " updated_at) VALUES (%s, 'old', '/old', '/old', 'GET', '*', %s, '{}', 'created', 't0', 't0')",
            endpoint_id, HELLO,
        )
        cluster = Cluster(2, cargo=cargo, database=uri, key=key)
        self.addCleanup(cluster.close)
        yield cluster.start()
        n1, n2 = cluster[0], cluster[1]
        self.assertEqual(cluster.query("SELECT max(version) FROM schema_migrations"), [(MIGRATIONS[-1].version,)])
        self.assertFalse(os.path.exists(os.path.join(n1.data_dir, "admin.key")), "the database had a key already")
        code, document, headers = yield n2.call("GET", "/endpoints/%s" % endpoint_id)
        self.assertEqual((code, headers.getRawHeaders("etag")), (200, ['"0"']), document)
        yield n1.ok("POST", "/endpoints/%s/compile" % endpoint_id)
        yield n1.ok("POST", "/endpoints/%s/start" % endpoint_id)
        yield n2.wait_answer("/old", lambda status, body: status == 200, timeout=PROPAGATION)
