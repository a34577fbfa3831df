"""
Benchmark: hello through edgegw versus a bare twisted.web resource, same run.

Starts a real ``twistd edgegw`` on a fresh data dir, creates, compiles (cold:
empty cargo target; warm: a second handler once the crates are built) and
starts the hello handler, starts bench/baseline.py twice (a default Site, which
writes an access-log line per request, and one without, like the gateway's
data plane), then runs the same wrk load against each and prints requests/s
and the ratios. Every process it
starts is stopped before it exits.

    make bench            # or: .venv/bin/python bench/run.py [--duration 10] [--connections 32]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

HELLO = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"message": "Hello, World!", "path": req.path, "method": req.method}))
}

handler_loop!(handle);
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, key, method, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.load(response)["data"]


def wait_for(url, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered at {url}")


def wrk(url, threads, connections, duration):
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, int(errors.group(1)) if errors else 0, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")

    data_dir = tempfile.mkdtemp(prefix="edgegw-bench-")
    port, admin_port, base_port, bare_port = free_port(), free_port(), free_port(), free_port()
    processes = []
    try:
        gateway = subprocess.Popen(
            [
                os.path.join(BIN, "twistd"), "-n", "--pidfile=", "--logfile", os.path.join(data_dir, "twistd.log"),
                "edgegw", "--data-dir", data_dir,
                "--listen", f"tcp:{port}:interface=127.0.0.1",
                "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1",
            ],
            cwd=ROOT,
        )
        processes.append(gateway)
        baseline = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "baseline.py"), str(base_port)])
        processes.append(baseline)
        bare = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "bench", "baseline.py"), str(bare_port), "--no-access-log"]
        )
        processes.append(bare)
        wait_for(f"http://127.0.0.1:{admin_port}/api/health")
        with open(os.path.join(data_dir, "admin.key")) as f:
            key = f.read().strip()

        hello = api(admin_port, key, "POST", "/endpoints", {"name": "hello", "path": "/hello", "method": "GET", "code": HELLO})
        cold = api(admin_port, key, "POST", f"/endpoints/{hello['id']}/compile")["build"]["seconds"]
        second = api(admin_port, key, "POST", "/endpoints", {"name": "hello2", "path": "/hello2", "method": "GET", "code": HELLO + "// another handler\n"})
        warm = api(admin_port, key, "POST", f"/endpoints/{second['id']}/compile")["build"]["seconds"]
        api(admin_port, key, "POST", f"/endpoints/{hello['id']}/start")
        wait_for(f"http://127.0.0.1:{base_port}/hello")
        wait_for(f"http://127.0.0.1:{bare_port}/hello")

        results = {"compile_cold_s": cold, "compile_warm_s": warm}
        for name, url in (
            ("twisted.web", f"http://127.0.0.1:{base_port}/hello"),
            ("twisted.web without access log", f"http://127.0.0.1:{bare_port}/hello"),
            ("edgegw", f"http://127.0.0.1:{port}/hello"),
        ):
            wrk(url, args.threads, args.connections, 2)  # warm-up
            rate, errors, _ = wrk(url, args.threads, args.connections, args.duration)
            results[name] = {"requests_per_s": rate, "non_2xx": errors}
        gateway = results["edgegw"]["requests_per_s"]
        results["ratio"] = round(gateway / results["twisted.web"]["requests_per_s"], 3)
        results["ratio_without_access_log"] = round(
            gateway / results["twisted.web without access log"]["requests_per_s"], 3
        )
        results["wrk"] = f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s"
        print(json.dumps(results, indent=2))
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        with open(os.path.join(ROOT, "bench", "results", time.strftime("%Y%m%d-%H%M%S") + ".json"), "w") as f:
            json.dump(results, f, indent=2)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
