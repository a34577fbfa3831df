"""
CPU time per request: what each server spends of its own process's CPU for one
request, beside requests per second. On a 2-core machine that wrk, the server
and the worker share, req/s moves with whatever else runs; the server's CPU
seconds per request move much less, so this is the figure to compare changes
of the hot path with.

Servers, each measured in alternating rounds (wrk -t1 -c32, 2 s warm-up, then
--duration seconds; the median of the rounds is reported):

  edgegw     a real ``twistd edgegw`` serving the scenario's handler
  minimal    bench/minimal_path.py: httptools -> the same compiled worker over
             frames -> back, nothing else (what moving frames alone costs)
  ceiling    bench/httptools_baseline.py: httptools answering a constant
  twisted    bench/baseline.py --no-access-log: a bare twisted.web resource
  before     with --before REV: a second ``twistd edgegw`` running the
             ``edgegw_tx`` of git revision REV (extracted to a temporary
             directory, first on PYTHONPATH), to compare a change in
             alternating rounds of one run

    .venv/bin/python bench/cpu.py [--scenario hello|echo-16k|redis-get-async|sqlite-query-async] [--rounds 3]
                                  [--duration 5] [--servers edgegw,minimal,...]
                                  [--before REV] [--gateway-options '...']
                                  [--with-hello]

--with-hello adds a server "hello": GET /hello of the same edgegw gateway
(a second endpoint), measured in each round right after the scenario, and
prints the scenario's req/s over hello's, per round.

redis-get-async binds the endpoint to the Redis at 127.0.0.1:6379 (one GET
per request from an async handler), sqlite-query-async to a fresh SQLite
service (one query); the minimal path is left out of them (it has no
service plane), the baselines answer without asking the service.

--gateway-options adds options to the ``twistd edgegw`` command line of the
edgegw server (e.g. ``--gateway-options '--access-log /tmp/access.log'`` to
measure the access log's cost).

The CPU per request of the gateway's workers (and the minimal path's worker)
and of wrk itself are reported too: on two cores, what wrk and the worker
take bounds what more server processes can add (docs/performance.md).
"""

import argparse
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as harness  # noqa: E402

SCENARIOS = {
    "hello": ("GET", "/hello", harness.HELLO, None),
    "echo-16k": ("POST", "/echo", harness.ECHO, os.path.join(harness.HERE, "echo16k.lua")),
    "redis-get-async": ("GET", "/redis-async", harness.REDIS_GET_ASYNC, None),
    "sqlite-query-async": ("GET", "/sqlite-async", harness.SQLITE_QUERY_ASYNC, None),
}
BINDINGS = {
    "redis-get-async": ("cache", "redis", {"host": "127.0.0.1", "port": 6379}),
    "sqlite-query-async": ("db", "sqlite", {}),
}
"""Scenarios whose handler calls a service: (binding, service type, config); the minimal path has none."""
SERVERS = ("edgegw", "minimal", "ceiling", "twisted")


def start_before(revision, data_dir, tree, port, admin_port):
    """``twistd edgegw`` running ``edgegw_tx`` as of ``revision`` (extracted to ``tree``)."""
    if os.path.isdir(os.path.join(revision, "edgegw_tx")):
        tree = revision  # a directory holding an edgegw_tx package (e.g. a compiled one)
    else:
        archive = subprocess.run(
            ["git", "archive", revision, "edgegw_tx"], cwd=harness.ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    env = dict(os.environ, PYTHONPATH=tree)
    return subprocess.Popen(
        [
            os.path.join(harness.BIN, "twistd"), "-n", "--pidfile=", "--logfile", os.path.join(data_dir, "twistd.log"),
            "edgegw", "--data-dir", data_dir,
            "--listen", f"tcp:{port}:interface=127.0.0.1",
            "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1",
            "--no-warm-up",  # as the edgegw server (harness.start_gateway)
            # the SDK is found beside the package, which is in the temporary tree
            "--sdk", os.path.join(harness.ROOT, "rust_sdk"),
        ],
        cwd=harness.ROOT,
        env=env,
    )


def start_endpoint(admin_port, key, path, method, code, binding=None):
    """Create, compile and start the scenario's endpoint (bound to its service, if any); its artifact digest."""
    endpoint = harness.api(admin_port, key, "POST", "/endpoints", {"name": "bench", "path": path, "method": method, "code": code})["id"]
    if binding is not None:
        pool, kind, config = binding
        service = harness.api(admin_port, key, "POST", "/services", {"name": f"bench-{pool}", "service_type": kind, "config": config})
        harness.api(admin_port, key, "POST", f"/endpoints/{endpoint}/services", {"service_id": service["id"], "pool_id": pool})
    harness.api(admin_port, key, "POST", f"/endpoints/{endpoint}/compile")
    return harness.api(admin_port, key, "POST", f"/endpoints/{endpoint}/start")["artifact"]


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    """CPU seconds of this process's reaped children: the wrk runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_until_served(url, method, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = b"x" if method == "POST" else None
            urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered {method} {url}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="hello")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--before", metavar="REV", help="also run edgegw_tx of this git revision (or of this directory holding an edgegw_tx package)")
    parser.add_argument("--gateway-options", default="", help="extra twistd edgegw options of the edgegw server")
    parser.add_argument("--with-hello", action="store_true", help="also measure GET /hello of the edgegw server in each round (a server named hello), for the scenario's ratio to hello's req/s")
    args = parser.parse_args()
    servers = args.servers.split(",")
    if args.before:
        servers.insert(0, "before")
    if args.with_hello:
        servers.append("hello")
    unknown = set(servers) - set(SERVERS) - {"before", "hello"}
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    method, path, code, script = SCENARIOS[args.scenario]
    binding = BINDINGS.get(args.scenario)
    if binding is not None:
        if "minimal" in servers:
            servers.remove("minimal")  # it has no service plane
        if binding[1] == "redis" and not harness.redis_up():
            raise SystemExit("nothing answered PING/SET on 127.0.0.1:6379")

    data_dir = tempfile.mkdtemp(prefix="edgegw-cpu-")
    ports = {name: harness.free_port() for name in SERVERS + ("before",)}
    admin_port = harness.free_port()
    processes = []
    cleanup = []
    pids = {}
    try:
        gateway = harness.start_gateway(
            data_dir, ports["edgegw"], admin_port, shlex.split(args.gateway_options)
        )
        processes.append(gateway)
        pids["edgegw"] = gateway.pid
        harness.wait_for(f"http://127.0.0.1:{admin_port}/api/health")
        key = harness.admin_key(data_dir)
        digest = start_endpoint(admin_port, key, path, method, code, binding)
        paths = {name: (method, path, script) for name in servers}
        if "hello" in servers:
            hello_method, hello_path, hello_code, hello_script = SCENARIOS["hello"]
            if path != hello_path:
                start_endpoint(admin_port, key, hello_path, hello_method, hello_code)
            paths["hello"] = (hello_method, hello_path, hello_script)
            ports["hello"], pids["hello"] = ports["edgegw"], gateway.pid
        binary = os.path.join(data_dir, "artifacts", digest, "handler")
        if args.before:
            before_dir = tempfile.mkdtemp(prefix="edgegw-cpu-before-")
            tree = tempfile.mkdtemp(prefix="edgegw-cpu-tree-")
            cleanup += [before_dir, tree]
            before_admin = harness.free_port()
            before = start_before(args.before, before_dir, tree, ports["before"], before_admin)
            processes.append(before)
            pids["before"] = before.pid
            harness.wait_for(f"http://127.0.0.1:{before_admin}/api/health")
            start_endpoint(before_admin, harness.admin_key(before_dir), path, method, code, binding)
        for name, argv in (
            ("minimal", ["minimal_path.py", str(ports["minimal"]), binary]),
            ("ceiling", ["httptools_baseline.py", str(ports["ceiling"])]),
            ("twisted", ["baseline.py", str(ports["twisted"]), "--no-access-log"]),
        ):
            if name in servers:
                argv[0] = os.path.join(harness.HERE, argv[0])
                process = subprocess.Popen([sys.executable] + argv)
                processes.append(process)
                pids[name] = process.pid
        for name in servers:
            wait_until_served(f"http://127.0.0.1:{ports[name]}{paths[name][1]}", paths[name][0])

        rates = {name: [] for name in servers}
        costs = {name: [] for name in servers}
        worker_costs = {name: [] for name in servers}
        wrk_costs = {name: [] for name in servers}
        for round_ in range(args.rounds):
            for name in servers:
                _, path, script = paths[name]
                url = f"http://127.0.0.1:{ports[name]}{path}"
                harness.wrk(url, 1, 32, 2, script=script)
                workers = harness.workers(pids[name])
                before = cpu_seconds(pids[name]), sum(cpu_seconds(w) for w in workers)
                wrk_before = children_cpu_seconds()
                rate, _, out = harness.wrk(url, 1, 32, args.duration, script=script)
                served = int(re.search(r"(\d+) requests in", out).group(1))
                wrk_costs[name].append((children_cpu_seconds() - wrk_before) / served * 1e6)
                rates[name].append(rate)
                costs[name].append((cpu_seconds(pids[name]) - before[0]) / served * 1e6)
                if workers:
                    worker_costs[name].append(
                        (sum(cpu_seconds(w) for w in workers) - before[1]) / served * 1e6
                    )
            print(f"round {round_ + 1}: " + ", ".join(f"{n} {rates[n][-1]:,.0f} req/s {costs[n][-1]:.1f} us" for n in servers), file=sys.stderr, flush=True)

        median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
        print(f"{args.scenario}, wrk -t1 -c32 -d{args.duration}s, median of {args.rounds} rounds")
        print("| server | req/s | CPU µs per request: server | its workers | wrk |")
        print("| --- | --- | --- | --- | --- |")
        for name in servers:
            worker = f"{median(worker_costs[name]):.1f}" if worker_costs[name] else "–"
            print(
                f"| {name} | {median(rates[name]):,.0f} | {median(costs[name]):.1f}"
                f" | {worker} | {median(wrk_costs[name]):.1f} |"
            )
        if "hello" in servers and args.scenario != "hello":
            ratios = sorted(e / h for e, h in zip(rates["edgegw"], rates["hello"]))
            print(f"{args.scenario} / hello req/s, per round: " + ", ".join(f"{r:.2f}" for r in ratios)
                  + f" (median {ratios[len(ratios) // 2]:.2f})")
    finally:
        harness.stop(processes)
        for folder in cleanup:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
