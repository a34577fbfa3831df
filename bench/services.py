"""
Benchmarks of the service plane through a real gateway and real workers.

1. Added latency of a handler's Redis GET: the handler times its own
   ``RedisPool::get`` (call frame → gateway → Redis → result frame) and answers
   the microseconds; the same GET straight from Python on a plain socket is the
   baseline. p50 and p99 of each, and the difference.
2. Requests/s of the SQLite notes API (docs/examples/services/notes_sqlite.rs)
   reading one note, with wrk.

    .venv/bin/python bench/services.py [--calls 2000] [--duration 10]
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import BIN, ROOT, api, free_port, wait_for, wrk  # noqa: E402

TIMED_GET = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Result<Response, HandlerError> {
    let cache = RedisPool::new("cache");
    let started = std::time::Instant::now();
    let value = cache.get("edgegw-bench-key")?;
    let micros = started.elapsed().as_secs_f64() * 1e6;
    Ok(Response::ok(json!({"us": micros, "found": value.is_some()})))
}

handler_loop_result!(handle);
"""


def direct_get_latencies(calls):
    """GET over one plain socket: the least a client can pay."""
    latencies = []
    with socket.create_connection(("127.0.0.1", 6379)) as s:
        command = b"*2\r\n$3\r\nGET\r\n$16\r\nedgegw-bench-key\r\n"
        for _ in range(calls):
            started = time.perf_counter()
            s.sendall(command)
            reply = s.recv(4096)
            latencies.append((time.perf_counter() - started) * 1e6)
            assert reply.startswith(b"$")
    return latencies


def percentiles(values):
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 1),
        "p99": round(ordered[int(len(ordered) * 0.99) - 1], 1),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--instances", type=int, default=1, help="workers of the notes endpoint")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="edgegw-bench-")
    port, admin = free_port(), free_port()
    gateway = subprocess.Popen(
        [
            os.path.join(BIN, "twistd"), "-n", "--pidfile=", "--logfile", os.path.join(data_dir, "twistd.log"),
            "edgegw", "--data-dir", data_dir,
            "--listen", f"tcp:{port}:interface=127.0.0.1",
            "--admin-listen", f"tcp:{admin}:interface=127.0.0.1",
        ],
        cwd=ROOT,
    )
    try:
        wait_for(f"http://127.0.0.1:{admin}/api/health")
        with open(os.path.join(data_dir, "admin.key")) as f:
            key = f.read().strip()

        def deploy(name, method, path, code, bindings, instances=1):
            endpoint = api(admin, key, "POST", "/endpoints", {
                "name": name, "path": path, "method": method, "code": code, "instances": instances,
            })
            for pool_id, service_id in bindings.items():
                api(admin, key, "POST", f"/endpoints/{endpoint['id']}/services", {"service_id": service_id, "pool_id": pool_id})
            api(admin, key, "POST", f"/endpoints/{endpoint['id']}/compile")
            api(admin, key, "POST", f"/endpoints/{endpoint['id']}/start")

        redis = api(admin, key, "POST", "/services", {"name": "cache", "service_type": "redis", "config": {"host": "127.0.0.1"}})
        deploy("timed-get", "GET", "/timed-get", TIMED_GET, {"cache": redis["id"]})
        through = []
        for _ in range(args.calls):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/timed-get") as response:
                through.append(json.load(response)["us"])
        direct = direct_get_latencies(args.calls)
        results = {
            "redis_get_us_direct": percentiles(direct),
            "redis_get_us_through_gateway": percentiles(through),
        }
        results["redis_get_us_added"] = {
            k: round(results["redis_get_us_through_gateway"][k] - results["redis_get_us_direct"][k], 1)
            for k in ("p50", "p99")
        }

        with open(os.path.join(ROOT, "docs", "examples", "services", "notes_sqlite.rs")) as f:
            notes = f.read()
        db = api(admin, key, "POST", "/services", {"name": "notes-db", "service_type": "sqlite", "config": {}})
        deploy("notes-post", "POST", "/notes", notes, {"notes": db["id"]})
        deploy("notes-get", "GET", "/notes/{id}", notes, {"notes": db["id"]}, args.instances)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/notes", data=json.dumps({"title": "bench", "body": "x" * 100}).encode(),
            method="POST", headers={"Content-Type": "application/json"},
        )
        note = json.load(urllib.request.urlopen(request))
        url = f"http://127.0.0.1:{port}/notes/{note['id']}"
        wrk(url, 1, 32, 2)
        rate, non_2xx, _ = wrk(url, 1, 32, args.duration)
        results["sqlite_notes_get_requests_per_s"] = rate
        results["sqlite_notes_non_2xx"] = non_2xx
        results["notes_instances"] = args.instances
        results["wrk"] = f"wrk -t1 -c32 -d{args.duration}s"
        print(json.dumps(results, indent=2))
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()


if __name__ == "__main__":
    main()
