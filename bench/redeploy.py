"""
Benchmark: cold start from zero workers, and redeploys under load.

Runs a real ``GatewayRuntime`` in this process (real cargo with the tests'
shared target directory, real workers, HTTP on 127.0.0.1 port 0) and measures:

* cold start: an endpoint with ``min_instances=0`` and a short
  ``idle_timeout``; once its worker stopped, the latency of the first request
  (the worker is spawned and must send ready) minus the median latency of warm
  requests right after it;
* redeploys: ``--clients`` clients send requests without pause while the
  endpoint is redeployed ``--redeploys`` times (PUT code → compile → restart,
  alternating two versions): failed requests, requests per second, the time
  each restart call took, and the switch time the manager measured (from the
  new workers' ready to the route switched, ``EndpointManager.last_switch``).

    .venv/bin/python bench/redeploy.py [--rounds 5] [--clients 16] [--redeploys 10]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

VERSIONED = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"version": "%s"}))
}

handler_loop!(handle);
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="cold starts measured")
    parser.add_argument("--warm", type=int, default=20, help="warm requests after each cold one")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--redeploys", type=int, default=10)
    args = parser.parse_args()

    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred, gatherResults
    from twisted.internet.task import deferLater
    from twisted.web.client import Agent, HTTPConnectionPool

    import treq
    from edgegw_tx.build.cargo import find_cargo
    from edgegw_tx.runtime import GatewayRuntime

    results = {}

    async def run(data_dir):
        target = os.path.join(ROOT, ".cache", "test-target")
        os.makedirs(target, exist_ok=True)
        runtime = GatewayRuntime(
            data_dir,
            "tcp:0:interface=127.0.0.1",
            "tcp:0:interface=127.0.0.1",
            sdk_path=os.path.join(ROOT, "rust_sdk"),
            cargo=find_cargo(None),
            build_target_dir=target,
        )
        await runtime.startService()
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = args.clients
        http = treq.client.HTTPClient(Agent(reactor, pool=pool))
        try:
            data, admin = await runtime.ports()
            base = "http://127.0.0.1:%d" % data.getHost().port
            api = "http://127.0.0.1:%d/api" % admin.getHost().port
            with open(os.path.join(data_dir, "admin.key")) as f:
                headers = {"Authorization": "Bearer " + f.read().strip()}

            async def call(method, path, body=None):
                response = await http.request(
                    method, api + path, data=json.dumps(body).encode() if body is not None else None,
                    headers=headers,
                )
                document = await response.json()
                return response.code, document

            async def ok(method, path, body=None):
                status, document = await call(method, path, body)
                assert status in (200, 201), document
                return document["data"]

            async def deploy(name, path, code, **settings):
                record = await ok(
                    "POST", "/endpoints",
                    {"name": name, "path": path, "method": "GET", "code": code, "settings": settings},
                )
                await ok("POST", "/endpoints/%s/compile" % record["id"])
                return await ok("POST", "/endpoints/%s/start" % record["id"])

            async def timed_get(url):
                start = time.perf_counter()
                response = await http.get(url)
                await response.content()
                assert response.code == 200, response.code
                return time.perf_counter() - start

            # cold start from zero
            lazy = await deploy("lazy", "/lazy", VERSIONED % "A", min_instances=0, max_instances=1, idle_timeout=0.5)
            assert lazy["pids"] == [], lazy["pids"]
            colds, warms = [], []
            for _ in range(args.rounds):
                for _ in range(100):
                    record = await ok("GET", "/endpoints/" + lazy["id"])
                    if not record["pids"]:
                        break
                    await deferLater(reactor, 0.1, lambda: None)
                assert not record["pids"], "the idle worker did not stop"
                colds.append(await timed_get(base + "/lazy"))
                warms.extend([await timed_get(base + "/lazy") for _ in range(args.warm)])
            cold, warm = statistics.median(colds), statistics.median(warms)
            results["cold_start"] = {
                "first_request_ms": round(cold * 1000, 2),
                "warm_request_ms": round(warm * 1000, 3),
                "cold_start_ms": round((cold - warm) * 1000, 2),
                "rounds": args.rounds,
                "first_request_ms_all": [round(c * 1000, 2) for c in colds],
            }

            # redeploys under load
            endpoint = await deploy("versioned", "/v", VERSIONED % "A")
            state = {"stop": False, "deadline": time.monotonic() + 300}
            outcomes = {"ok": 0, "failed": 0, "garbled": 0}

            async def client():
                for _ in range(50_000):
                    if state["stop"] or time.monotonic() > state["deadline"]:
                        return
                    try:
                        response = await http.get(base + "/v")
                        body = await response.content()
                    except Exception:
                        outcomes["failed"] += 1
                        continue
                    if response.code != 200:
                        outcomes["failed"] += 1
                    elif json.loads(body) not in ({"version": "A"}, {"version": "B"}):
                        outcomes["garbled"] += 1
                    else:
                        outcomes["ok"] += 1

            clients = [ensureDeferred(client()) for _ in range(args.clients)]
            restarts, switches, cached = [], [], []
            began = time.perf_counter()
            for i in range(args.redeploys):
                await ok("PUT", "/endpoints/" + endpoint["id"], {"code": VERSIONED % ("B" if i % 2 == 0 else "A")})
                compiled = await ok("POST", "/endpoints/%s/compile" % endpoint["id"])
                cached.append(compiled["build"]["cached"])
                start = time.perf_counter()
                await ok("POST", "/endpoints/%s/restart" % endpoint["id"])
                restarts.append(time.perf_counter() - start)
                switches.append(runtime.manager.last_switch["ready_to_switch_ms"])
                await deferLater(reactor, 0.3, lambda: None)
            state["stop"] = True
            await gatherResults(clients)
            elapsed = time.perf_counter() - began
            total = sum(outcomes.values())
            results["redeploys"] = {
                "redeploys": args.redeploys,
                "clients": args.clients,
                "requests": total,
                "failed": outcomes["failed"],
                "garbled": outcomes["garbled"],
                "requests_per_s": round(total / elapsed),
                "compiles_cached": cached,
                "restart_call_ms": {
                    "median": round(statistics.median(restarts) * 1000, 1),
                    "max": round(max(restarts) * 1000, 1),
                },
                "switch_ms": {"median": statistics.median(switches), "max": max(switches), "all": switches},
            }
        finally:
            await pool.closeCachedConnections()
            await runtime.stopService()

    failures = []

    def done(result):
        if hasattr(result, "getTraceback"):
            failures.append(result.getTraceback())
        reactor.stop()

    with tempfile.TemporaryDirectory() as data_dir:
        reactor.callWhenRunning(lambda: ensureDeferred(run(data_dir)).addBoth(done))
        reactor.run()
    if failures:
        print(failures[0], file=sys.stderr)
        sys.exit(1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
