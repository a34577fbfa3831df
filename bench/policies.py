"""
Hello with traffic policies, same run: requests per second and the gateway's
CPU per request for GET /hello on routes with no policy, with ``cors`` (a
request from an allowed origin, so the headers are added), with a node-scope
``rate_limit`` that is never hit, with ``auth`` ``jwt`` (RS256, one token
reused by the client as clients do, so after its first request the verifier
remembers it), and with a cluster-scope ``rate_limit`` counting in the local
Redis.  Then the latency a cluster-scope limit adds to a request: p50 and
p99 over one connection (``wrk -c1 --latency``, so no request waits behind
another) of the route with no policy and of the one with the cluster limit.

The server is the gateway's own data plane in one process (the httptools
front, ``Dispatcher``, ``Observer``, ``RouteTable``, ``WorkerPool``: compiled
when ``make setup`` compiled them), each scenario a route of its own on the
same worker pool of the hello handler, its policy compiled as the
deployments compile it (``placing.placed``).  A real ``twistd edgegw``
compiles the hello handler first.  Scenarios alternate, once per round
(wrk -t1 -c32, 2 s warm-up, --duration seconds); the median of the rounds
is reported.

    .venv/bin/python bench/policies.py [--rounds 5] [--duration 5] [--no-cluster]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as harness  # noqa: E402
from cpu import cpu_seconds, start_endpoint  # noqa: E402

ORIGIN = "https://app.example.com"
ISSUER = "https://id.example.com"
AUDIENCE = "hello-api"
REDIS_SERVICE = "bench"

SCENARIOS = ("none", "cors", "rate_limit_node", "jwt_rs256", "rate_limit_cluster")
"""Route path suffixes, in the order of each round."""


def policies(jwks):
    """Each scenario's policy (an endpoint's own)."""
    return {
        "none": {},
        "cors": {"cors": {"allow_origins": [ORIGIN], "allow_methods": ["GET"]}},
        "rate_limit_node": {"rate_limit": {"requests": 1_000_000, "per_seconds": 1, "key": "ip"}},
        "jwt_rs256": {
            "auth": {"type": "jwt", "algorithms": ["RS256"], "issuer": ISSUER, "audience": AUDIENCE, "jwks": jwks}
        },
        "rate_limit_cluster": {
            "rate_limit": {
                "requests": 1_000_000, "per_seconds": 1, "key": "ip", "scope": "cluster",
                "redis_service": REDIS_SERVICE,
            }
        },
    }


def serve(port, binary, config_path):
    """The server: one worker pool of ``binary``, a route per scenario, the gateway's HTTP front."""
    from twisted.internet import reactor

    from edgegw_tx import compiled
    from edgegw_tx.gateway.front import data_plane_factory
    from edgegw_tx.gateway.observe import Observer
    from edgegw_tx.gateway.routes import RouteTable
    from edgegw_tx.observability.metrics import RequestMetrics
    from edgegw_tx.policy import model, placing
    from edgegw_tx.runtime import pool_options
    from edgegw_tx.services.redis import RedisConnector
    from edgegw_tx.workers.pool import WorkerPool

    with open(config_path) as f:
        config = json.load(f)
    redis = RedisConnector({"host": "127.0.0.1", "port": 6379}, name=REDIS_SERVICE, call_timeout=5.0, reactor=reactor)
    metrics = RequestMetrics()
    context = placing.context_of(reactor, None, metrics.count)
    context.redis = {REDIS_SERVICE: redis}.get
    # An endpoint's default settings, as the gateway starts its pool.
    pool = WorkerPool("hello", [binary], reactor=reactor, **pool_options({}))
    routes = RouteTable()
    for name, parts in config["policies"].items():
        effective = model.Effective(parts, {part: "endpoint" for part in parts})
        owners = {"endpoint": f"endpoint:bench-{name}", "collection": "collection:None", "domain": "domain:*"}
        routes.place(name, [("*", "GET", f"/{name}")], pool, placing.placed(effective, context, owners, name))
    factory = data_plane_factory("httptools", routes, reactor, None, Observer(metrics, reactor.seconds))
    print(f"request path: {compiled.state}", file=sys.stderr, flush=True)
    pool.start().addCallback(lambda _: reactor.listenTCP(port, factory, interface="127.0.0.1"))
    reactor.run()


def wait_until_served(url, headers, seconds=60):
    """Until ``url`` answers 200 to a GET with ``headers``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered GET {url} with 200")


def script(directory, name, headers):
    """A wrk Lua script sending ``headers``; None when there are none."""
    if not headers:
        return None
    path = os.path.join(directory, f"{name}.lua")
    with open(path, "w") as f:
        for header, value in headers.items():
            f.write(f"wrk.headers[{json.dumps(header)}] = {json.dumps(value)}\n")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--no-cluster", action="store_true", help="leave out the cluster-scope limit (no Redis)")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "BINARY", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.serve[2])
        return
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import RSAKey

    scenarios = [s for s in SCENARIOS if not (args.no_cluster and s == "rate_limit_cluster")]
    if "rate_limit_cluster" in scenarios and not harness.redis_up():
        raise SystemExit("nothing answered PING/SET on 127.0.0.1:6379 (--no-cluster leaves that scenario out)")
    key = RSAKey.generate_key(2048, {"kid": "bench"})
    token = jose_jwt.encode(
        {"alg": "RS256", "kid": "bench"},
        {"sub": "bench", "iss": ISSUER, "aud": AUDIENCE, "iat": int(time.time()), "exp": int(time.time()) + 86400},
        key,
        algorithms=["RS256"],
    )
    jwks = {"keys": [dict(key.as_dict(private=False))]}
    headers = {"cors": {"Origin": ORIGIN}, "jwt_rs256": {"Authorization": f"Bearer {token}"}}

    data_dir = tempfile.mkdtemp(prefix="edgegw-policies-")
    processes = []
    try:
        admin_port, port = harness.free_port(), harness.free_port()
        gateway = harness.start_gateway(data_dir, harness.free_port(), admin_port, [])
        processes.append(gateway)
        harness.wait_for(f"http://127.0.0.1:{admin_port}/api/health")
        digest = start_endpoint(admin_port, harness.admin_key(data_dir), "/hello", "GET", harness.HELLO)
        binary = os.path.join(data_dir, "artifacts", digest, "handler")
        config = os.path.join(data_dir, "policies.json")
        with open(config, "w") as f:
            json.dump({"policies": {name: policies(jwks)[name] for name in scenarios}}, f)
        server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", str(port), binary, config])
        processes.append(server)
        scripts = {name: script(data_dir, name, headers.get(name)) for name in scenarios}
        for name in scenarios:
            wait_until_served(f"http://127.0.0.1:{port}/{name}", headers.get(name, {}))

        rates = {name: [] for name in scenarios}
        costs = {name: [] for name in scenarios}
        latency_of = [name for name in ("none", "rate_limit_cluster") if name in scenarios]
        latencies = {name: [] for name in latency_of}
        for round_ in range(args.rounds):
            for name in scenarios:
                url = f"http://127.0.0.1:{port}/{name}"
                harness.wrk(url, 1, 32, 2, script=scripts[name])
                before = cpu_seconds(server.pid)
                rate, failed, out = harness.wrk(url, 1, 32, args.duration, script=scripts[name])
                if failed:
                    raise SystemExit(f"{name}: {failed} answers were not 2xx")
                served = int(re.search(r"(\d+) requests in", out).group(1))
                rates[name].append(rate)
                costs[name].append((cpu_seconds(server.pid) - before) / served * 1e6)
            for name in latency_of:
                result = harness.wrk(f"http://127.0.0.1:{port}/{name}", 1, 1, args.duration, latency=True)
                latencies[name].append((result["p50_ms"], result["p99_ms"]))
            print(f"round {round_ + 1}: " + ", ".join(
                f"{n} {rates[n][-1]:,.0f} req/s {costs[n][-1]:.1f} us" for n in scenarios)
                + "; c1 p50/p99 ms: " + ", ".join(f"{n} {latencies[n][-1][0]}/{latencies[n][-1][1]}" for n in latency_of),
                file=sys.stderr, flush=True)

        median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
        print(f"hello by policy, wrk -t1 -c32 -d{args.duration}s, median of {args.rounds} rounds")
        print("| policy | req/s | ratio to none | gateway CPU µs per request |")
        print("| --- | --- | --- | --- |")
        for name in scenarios:
            ratio = median([r / n for r, n in zip(rates[name], rates["none"])])
            print(f"| {name} | {median(rates[name]):,.0f} | {ratio:.2f} | {median(costs[name]):.1f} |")
        if len(latency_of) == 2:
            print(f"one connection (wrk -t1 -c1 -d{args.duration}s --latency), median of {args.rounds} rounds:")
            for name in latency_of:
                print(f"  {name}: p50 {median([l[0] for l in latencies[name]]):.3f} ms,"
                      f" p99 {median([l[1] for l in latencies[name]]):.3f} ms")
            added = [c[1] - n[1] for c, n in zip(latencies["rate_limit_cluster"], latencies["none"])]
            added50 = [c[0] - n[0] for c, n in zip(latencies["rate_limit_cluster"], latencies["none"])]
            print("  added by the cluster-scope limit, per round: p50 "
                  + ", ".join(f"{a:.3f}" for a in sorted(added50)) + f" ms (median {median(added50):.3f});"
                  + " p99 " + ", ".join(f"{a:.3f}" for a in sorted(added)) + f" ms (median {median(added):.3f})")
    finally:
        harness.stop(processes)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
