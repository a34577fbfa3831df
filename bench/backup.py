"""
Benchmark: ``edgegw backup`` of a gateway with many endpoints, and the time
from ``edgegw restore`` to the first request served by the restored gateway.

Starts a real ``twistd edgegw`` on a fresh data dir (bench/run.py's
``start_gateway``), creates ``--endpoints`` endpoints, each with code of its
own (so each has a binary of its own, as real endpoints do), compiles and
starts them; then, with the gateway running:

* ``backup``: ``edgegw backup`` to a ``.tar`` and to a ``.tar.gz`` file, each
  as the command a cron job runs (its wall time, Python's start included) and
  the file's size;
* ``restore``: the gateway stopped, ``edgegw restore`` into an empty data dir
  (its wall time), a new gateway started there, and the time until one
  endpoint answers 200 (and until all of them have); the total is "restore to
  first served request".

    .venv/bin/python bench/backup.py [--endpoints 100]

Prints the numbers as JSON and writes them to bench/results/backup-<time>.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import BIN, ROOT, admin_key, api, free_port, start_gateway, stop, wait_for  # noqa: E402

CODE = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"endpoint": %d}))
}

handler_loop!(handle);
"""


def edgegw(*args):
    """``edgegw ARGS`` as a command; its wall time in seconds and its output."""
    started = time.monotonic()
    done = subprocess.run([os.path.join(BIN, "edgegw"), *args], capture_output=True, text=True, cwd=ROOT)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"edgegw {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return seconds, done.stdout.strip()


def served(url):
    """Whether ``url`` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=100)
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="edgegw-bench-backup-")
    results = {"endpoints": args.endpoints}
    processes = []
    try:
        data_dir = os.path.join(scratch, "var")
        port, admin_port = free_port(), free_port()
        processes.append(start_gateway(data_dir, port, admin_port))
        wait_for(f"http://127.0.0.1:{admin_port}/api/health")
        key = admin_key(data_dir)
        started = time.monotonic()
        for n in range(args.endpoints):
            created = api(admin_port, key, "POST", "/endpoints",
                          {"name": f"e{n}", "path": f"/e{n}", "method": "GET", "code": CODE % n})
            api(admin_port, key, "POST", f"/endpoints/{created['id']}/compile")
            api(admin_port, key, "POST", f"/endpoints/{created['id']}/start")
        results["deploy_all_s"] = round(time.monotonic() - started, 1)
        if not all(served(f"http://127.0.0.1:{port}/e{n}") for n in range(args.endpoints)):
            raise SystemExit("not every endpoint serves before the backup")

        for suffix in ("tar", "tar.gz"):
            target = os.path.join(scratch, f"backup.{suffix}")
            seconds, said = edgegw("backup", target, "--data-dir", data_dir)
            results[f"backup_{suffix}"] = {
                "wall_s": round(seconds, 2),
                "size_mib": round(os.path.getsize(target) / 2**20, 1),
                "said": said,
            }
        stop(processes)
        processes.clear()

        restored = os.path.join(scratch, "restored")
        started = time.monotonic()
        restore_s, _ = edgegw("restore", os.path.join(scratch, "backup.tar.gz"), "--data-dir", restored)
        port, admin_port = free_port(), free_port()
        gateway_started = time.monotonic()
        processes.append(start_gateway(restored, port, admin_port))
        while not served(f"http://127.0.0.1:{port}/e0"):
            time.sleep(0.02)
        first = time.monotonic()
        pending = set(range(args.endpoints))
        while pending:
            pending = {n for n in pending if not served(f"http://127.0.0.1:{port}/e{n}")}
            if pending:
                time.sleep(0.05)
        results["restore"] = {
            "restore_s": round(restore_s, 2),
            "start_to_first_request_s": round(first - gateway_started, 2),
            "restore_to_first_request_s": round(first - started, 2),
            "restore_to_all_serving_s": round(time.monotonic() - started, 2),
            "compiled_after_restore": os.path.isdir(os.path.join(restored, "build", "endpoints")),
        }
    finally:
        stop(processes)
        shutil.rmtree(scratch, ignore_errors=True)

    print(json.dumps(results, indent=2))
    folder = os.path.join(ROOT, "bench", "results")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, time.strftime("backup-%Y%m%d-%H%M%S.json")), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
