"""
Benchmark: cluster mode (issue 16), the numbers of docs/cluster.md and the
cluster section of docs/performance.md.

Starts real ``twistd edgegw`` nodes sharing one new PostgreSQL database on
127.0.0.1:5432 (tests/support/cluster.py; the database is dropped at the end)
and measures:

  propagation   a change on n1 (a rollback to the other of two compiled
                versions) until n2's data plane answers the new version:
                p50, p99, max over ``--changes`` changes
  fetch         compiling the hello handler on n1 (cold: an empty cargo
                target, as on a new node; then warm: new code, crates built)
                against n2 getting the same version from the store
  rps           hello with wrk: one node directly, then haproxy (round
                robin, HTTP keep-alive to the nodes) in front of one node and
                of two nodes
  kill          requests failed on n2 while n1 is killed (SIGKILL) under
                load on n2
  store-loss    data-plane requests failed on both nodes while every store
                connection is cut for ``--loss`` seconds (a TCP forwarder
                between the nodes and PostgreSQL, tests/support/tcpproxy.py),
                and how long after the store is back writes are taken again

Every process it starts is stopped before it exits; it writes
bench/results/cluster-<timestamp>.json.

    .venv/bin/python bench/cluster.py [--changes 50] [--duration 10] [--loss 10] [--only propagation,fetch,...]

Needs wrk and haproxy for ``rps``: ``make bench-cluster`` installs them
(tools/setup-bench) and runs this with ``BENCH_ARGS``.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "bench", "results")
SCENARIOS = ("fetch", "rps", "propagation", "kill", "store-loss")

VERSIONED = """use rust_edge_gateway_sdk::prelude::*;

// %(token)s
fn handle(_req: Request) -> Response {
    Response::ok(json!({"version": "%(version)s"}))
}

handler_loop!(handle);
"""

HAPROXY = """global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend edge
    bind 127.0.0.1:%(port)d
    default_backend nodes
backend nodes
    balance roundrobin
%(servers)s
"""


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def ms(seconds):
    return round(seconds * 1000, 1)


def wrk(url, duration, connections=32):
    """Requests per second and failures (non-2xx and socket errors) of ``wrk -t1``."""
    out = subprocess.run(
        ["wrk", "-t1", "-c%d" % connections, "-d%ds" % duration, url], capture_output=True, text=True, check=True
    ).stdout
    import re

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests_per_s": round(rate),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--loss", type=int, default=10, help="seconds the store is cut")
    parser.add_argument("--clients", type=int, default=8, help="load loops of the kill and store-loss runs")
    parser.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    args = parser.parse_args()
    wanted = [s for s in SCENARIOS if not args.only or s in args.only.split(",")]
    if "rps" in wanted and not (shutil.which("wrk") and shutil.which("haproxy")):
        raise SystemExit("rps needs wrk and haproxy: apt-get install wrk haproxy (or --only without rps)")

    from twisted.internet import task
    from twisted.internet.defer import ensureDeferred

    results = {"stamp": time.strftime("%Y%m%d-%H%M%S"), "machine": "%d CPUs" % os.cpu_count(), "scenarios": {}}

    async def measure(reactor):
        try:
            await run(reactor, args, wanted, results)
        finally:
            # react() exits the process when this ends: write what was measured first.
            os.makedirs(RESULTS, exist_ok=True)
            path = os.path.join(RESULTS, "cluster-%s.json" % results["stamp"])
            with open(path, "w") as f:
                json.dump(results, f, indent=2)
            print(json.dumps(results["scenarios"], indent=2))
            print("written to", os.path.relpath(path, ROOT))

    task.react(lambda reactor: ensureDeferred(measure(reactor)))


async def run(reactor, args, wanted, results):
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import deferLater

    from tests.support import pg
    from tests.support.cluster import Cluster, Load, wait_for
    from tests.support.handlers import HELLO
    from tests.support.tcpproxy import TCPProxy

    def versioned(version, token="bench"):
        return VERSIONED % {"version": version, "token": token}

    def say(text):
        print("--", text, file=sys.stderr, flush=True)

    out = results["scenarios"]
    direct = ("fetch", "rps", "propagation", "kill")
    if any(s in wanted for s in direct):
        # Its own cargo targets: the first compile is as cold as on a new node.
        cluster = Cluster(2, shared_target=False)
        try:
            await cluster.start()
            n1, n2 = cluster[0], cluster[1]
            say("cluster up: %s, %s" % (n1.base, n2.base))
            hello = await n1.create("hello", "/hello", HELLO)
            if "fetch" in wanted:
                say("fetch")
                start = reactor.seconds()
                built = await n1.ok("POST", "/endpoints/%s/compile" % hello)
                cold = reactor.seconds() - start
                start = reactor.seconds()
                fetched = await n2.ok("POST", "/endpoints/%s/compile" % hello)
                fetch = reactor.seconds() - start
                warm_id = await n1.create("warm", "/warm", HELLO.replace("Hello, World!", "Hello, %s!" % uuid.uuid4().hex[:8]))
                start = reactor.seconds()
                warm_built = await n1.ok("POST", "/endpoints/%s/compile" % warm_id)
                warm = reactor.seconds() - start
                start = reactor.seconds()
                warm_fetched = await n2.ok("POST", "/endpoints/%s/compile" % warm_id)
                warm_fetch = reactor.seconds() - start
                size = cluster.query("SELECT size FROM artifacts WHERE digest = %s", built["build"]["digest"])
                out["fetch"] = {
                    "binary_bytes": size[0][0] if size else None,
                    "compile_cold_s": round(cold, 3),
                    "fetch_s": round(fetch, 3),
                    "compile_warm_s": round(warm, 3),
                    "fetch_warm_s": round(warm_fetch, 3),
                    "cargo_ran_on_n2": [not fetched["build"]["cached"], not warm_fetched["build"]["cached"]],
                    "note": "wall time of POST /api/endpoints/{id}/compile on n1 (cargo) and then on n2 (from the store)",
                }
                assert built["build"]["cached"] is False and warm_built["build"]["cached"] is False
            else:
                await n1.ok("POST", "/endpoints/%s/compile" % hello)
            await n1.ok("POST", "/endpoints/%s/start" % hello)
            await n2.wait_answer("/hello", lambda status, body: status == 200, timeout=30)

            if "rps" in wanted:
                say("rps")
                out["rps"] = await rps(reactor, cluster, args.duration)

            if "propagation" in wanted:
                say("propagation over %d changes" % args.changes)
                endpoint = await n1.create("versions", "/versions", versioned("a"))
                digests = {}
                for version in ("a", "b"):
                    await n1.ok("PUT", "/endpoints/%s" % endpoint, {"code": versioned(version)})
                    built = await n1.ok("POST", "/endpoints/%s/compile" % endpoint)
                    digests[version] = built["build"]["digest"]
                await n1.ok("POST", "/endpoints/%s/start" % endpoint)
                current = "b"
                await n2.wait_answer("/versions", lambda s, b: s == 200 and b.get("version") == current, timeout=30)
                times = []
                for i in range(args.changes):
                    current = "a" if current == "b" else "b"
                    await n1.ok("POST", "/endpoints/%s/rollback" % endpoint, {"version": digests[current]})
                    start = reactor.seconds()
                    await n2.wait_answer(
                        "/versions", lambda s, b: s == 200 and isinstance(b, dict) and b.get("version") == current,
                        timeout=30, interval=0.005,
                    )
                    times.append(reactor.seconds() - start)
                out["propagation"] = {
                    "changes": len(times),
                    "p50_ms": ms(statistics.median(times)),
                    "p99_ms": ms(percentile(times, 0.99)),
                    "max_ms": ms(max(times)),
                    "note": "from n1's rollback call answering to n2's data plane answering the new version (polled every 5 ms)",
                }

            if "kill" in wanted:
                say("kill")
                load = Load(n2.base + "/hello", clients=args.clients).start()
                await deferLater(reactor, 3, lambda: None)
                before = load.total
                killed_at = reactor.seconds()
                n1.kill()
                await deferLater(reactor, 5, lambda: None)
                await load.stop()
                out["kill"] = {
                    "requests_on_n2": load.total,
                    "after_the_kill": load.total - before,
                    "failed": load.failed,
                    "failures": [str(f[:2]) for f in load.failures[:5]],
                    "seconds_after_the_kill": round(reactor.seconds() - killed_at, 1),
                }
        finally:
            await cluster.close()

    if "store-loss" in wanted:
        say("store loss of %d s" % args.loss)
        proxy = TCPProxy(pg.PORT, host=pg.HOST)
        await proxy.start()
        cluster = Cluster(2, proxy_port=proxy.port, proxied={0, 1})
        try:
            await cluster.start()
            n1, n2 = cluster[0], cluster[1]
            hello = await n1.deploy("hello", "/hello", HELLO)
            await n2.wait_answer("/hello", lambda status, body: status == 200, timeout=30)
            loads = [Load(n.base + "/hello", clients=args.clients // 2).start() for n in (n1, n2)]
            await deferLater(reactor, 2, lambda: None)
            await proxy.cut()
            cut_at = reactor.seconds()
            write_while_cut = (await n1.call("PUT", "/endpoints/%s" % hello, {"description": "cut"}))[0]
            await deferLater(reactor, args.loss, lambda: None)
            await proxy.restore()
            back_at = reactor.seconds()

            async def write_taken():
                answer = await n1.call("PUT", "/endpoints/%s" % hello, {"description": "back"})
                return answer[0] == 200

            await wait_for(lambda: ensureDeferred(write_taken()), 60, interval=0.05, message="n1's writes after the store is back")
            api_back = reactor.seconds() - back_at
            await deferLater(reactor, 2, lambda: None)
            for load in loads:
                await load.stop()
            out["store-loss"] = {
                "cut_s": round(back_at - cut_at, 1),
                "requests": sum(load.total for load in loads),
                "failed": sum(load.failed for load in loads),
                "failures": [str(f[:2]) for load in loads for f in load.failures[:3]],
                "write_status_while_cut": write_while_cut,
                "api_answering_again_after_s": round(api_back, 2),
            }
        finally:
            await cluster.close()
            await proxy.stop()


async def rps(reactor, cluster, duration):
    """wrk against n1, then haproxy in front of n1, then in front of n1 and n2."""
    from tests.support.harness import _free_port

    n1, n2 = cluster[0], cluster[1]
    found = {"n1 direct": wrk(n1.base + "/hello", duration)}
    for label, nodes in (("haproxy -> n1", [n1]), ("haproxy -> n1 + n2", [n1, n2])):
        port = _free_port()
        servers = "\n".join("    server %s 127.0.0.1:%d" % (n.name, n.port) for n in nodes)
        directory = tempfile.mkdtemp(prefix="edgegw-haproxy-")
        config = os.path.join(directory, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(HAPROXY % {"port": port, "servers": servers})
        balancer = subprocess.Popen(["haproxy", "-db", "-f", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            from tests.support.cluster import wait_for

            def listening():
                import socket

                with socket.socket() as s:
                    return s.connect_ex(("127.0.0.1", port)) == 0

            await wait_for(listening, 10, message="haproxy")
            found[label] = wrk("http://127.0.0.1:%d/hello" % port, duration)
        finally:
            balancer.send_signal(signal.SIGTERM)
            balancer.wait(timeout=10)
            shutil.rmtree(directory, ignore_errors=True)
    found["note"] = "wrk -t1 -c32 -d%ds; wrk, haproxy, both nodes and their workers share %d CPUs" % (duration, os.cpu_count())
    return found


if __name__ == "__main__":
    main()
