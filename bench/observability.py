"""
What observability costs (issue 17's closing numbers), on this machine, in
one run:

  metrics      ``twistd edgegw`` as shipped: metrics always on, no access log
  no-metrics   the same from a copy of ``edgegw_tx`` whose
               ``EndpointSeries.record`` counts nothing, compiled like the
               checkout (tools/compile-hot-path): the build "with the metrics
               calls removed"
  access-log   as shipped, with ``--access-log`` to a file in its data dir

All three run through this script re-run as a twistd wrapper with one hash
seed; ``--variants metrics,metrics#2,...``
adds a second gateway alike, which shows how far two equal gateways differ
on this machine (a difference below that is noise).

Each serves the hello handler; they are measured in alternating rounds
(the order rotates each round), wrk -t1 -c32, 2 s warm-up, then --duration
seconds, like bench/cpu.py (whose helpers it uses): the gateway process's CPU
seconds per request is the figure (all its threads: the access log's writer
thread too), with its reactor thread's share and req/s beside it; the median
of the rounds is reported, with metrics vs no-metrics (target ≤ 5 %) and
access-log vs metrics (target ≤ 10 %).

Then the time of one ``GET /metrics`` scrape with 1,000 endpoints:

  real         the metrics gateway with 999 more endpoints started with
               min_instances 0 (routes and pools, no processes; only hello
               has traffic), scraped over HTTP with its admin key: wall time
               and the gateway's CPU per scrape, median of --scrapes
  in-process   the registry (observability/exposition.py) over 1,000
               endpoints that *all* have traffic (5 method/status pairs each)
               and a pool each: snapshot + render, median of --scrapes

    .venv/bin/python bench/observability.py [--rounds 5] [--duration 5]
        [--variants metrics,metrics#2,no-metrics,access-log] [--scrapes 20] [--no-scrape]
"""

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

AS_TWISTD = "--as-twistd"

if __name__ == "__main__" and sys.argv[1:2] == [AS_TWISTD]:
    # The wrapper every variant runs through (so they start alike): twistd
    # with the rest of the arguments.
    del sys.path[0]  # bench/: none of its modules may shadow what twistd imports
    arguments = sys.argv[2:]
    from twisted.scripts.twistd import run as _twistd

    sys.argv = ["twistd"] + arguments
    _twistd()
    sys.exit(0)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu  # noqa: E402
import run as harness  # noqa: E402

VARIANTS = ("metrics", "no-metrics", "access-log")
ENDPOINTS = 1000


_RECORD_BODY = re.compile(
    r'(    def record\(self[^\n]*\n        """[^\n]*"""\n).*?(?=\n\n    )', re.S
)


def tree_without_metrics():
    """
    A directory holding a copy of the checkout's ``edgegw_tx`` whose
    ``EndpointSeries.record`` counts nothing, compiled with
    tools/compile-hot-path when the checkout's is (a compiled module's
    methods cannot be replaced at run time, so the copy is the way).
    """
    from edgegw_tx import compiled

    tree = tempfile.mkdtemp(prefix="edgegw-no-metrics-")
    shutil.copytree(
        os.path.join(harness.ROOT, "edgegw_tx"),
        os.path.join(tree, "edgegw_tx"),
        ignore=shutil.ignore_patterns("*.so", compiled.MANIFEST, "__pycache__"),
    )
    os.makedirs(os.path.join(tree, "tools"))
    shutil.copy(os.path.join(harness.ROOT, "tools", "compile-hot-path"), os.path.join(tree, "tools"))
    shutil.copy(os.path.join(harness.ROOT, "pyproject.toml"), tree)
    path = os.path.join(tree, "edgegw_tx", "observability", "metrics.py")
    with open(path) as f:
        source, found = _RECORD_BODY.subn(r"\1        return", f.read())
    if found != 1:
        raise SystemExit("bench/observability.py: EndpointSeries.record not found in metrics.py")
    with open(path, "w") as f:
        f.write(source)
    if compiled.state == "compiled":
        subprocess.run([sys.executable, os.path.join(tree, "tools", "compile-hot-path")], cwd=tree, check=True)
    return tree


def start(variant, data_dir, port, admin_port, trees):
    """
    One gateway of ``variant`` on a fresh data dir (its log in the data dir).
    Every variant runs through this script's twistd wrapper, with the same
    hash seed: two gateways of the same variant differ by less then.
    ``trees``: the no-metrics copy, made on first use.
    """
    kind = variant.split("#")[0]
    env = dict(os.environ, PYTHONHASHSEED="0")
    if kind == "no-metrics":
        if "no-metrics" not in trees:
            trees["no-metrics"] = tree_without_metrics()
        env["PYTHONPATH"] = trees["no-metrics"]
    argv = [sys.executable, os.path.abspath(__file__), AS_TWISTD]
    argv += [
        "-n", "--pidfile=", "--logfile", os.path.join(data_dir, "twistd.log"),
        "edgegw", "--data-dir", data_dir,
        "--listen", f"tcp:{port}:interface=127.0.0.1",
        "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1",
        # (found beside the package otherwise, and the no-metrics copy has none)
        "--sdk", os.path.join(harness.ROOT, "rust_sdk"),
    ]
    if kind == "access-log":
        argv += ["--access-log", os.path.join(data_dir, "access.log")]
    if os.environ.get("CARGO"):
        argv += ["--cargo", os.environ["CARGO"]]
    return subprocess.Popen(argv, cwd=harness.ROOT, env=env)


def reactor_cpu_seconds(pid):
    """utime + stime of the process's main thread (the reactor's), in seconds."""
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(admin_port, key):
    """One ``GET /metrics``: (seconds, body bytes)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{admin_port}/metrics", headers={"Authorization": f"Bearer {key}"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    return time.perf_counter() - started, body


def hello_requests(body):
    """``sum(edgegw_http_requests_total{endpoint="hello"})`` read from a scrape's text."""
    return sum(
        float(value)
        for value in re.findall(rb'^edgegw_http_requests_total\{[^}]*endpoint="hello"[^}]*\} (\S+)$', body, re.M)
    )


def median(values):
    return sorted(values)[len(values) // 2]


def measure_rounds(args, variants, gateways):
    """Alternating rounds: req/s, CPU µs per request and the reactor thread's share of it, each {variant: [per round]}."""
    rates = {v: [] for v in variants}
    costs = {v: [] for v in variants}
    reactor_costs = {v: [] for v in variants}
    for round_ in range(args.rounds):
        order = variants[round_ % len(variants):] + variants[: round_ % len(variants)]
        for variant in order:
            gateway = gateways[variant]
            url = f"http://127.0.0.1:{gateway['port']}/hello"
            harness.wrk(url, 1, 32, 2)
            pid = gateway["process"].pid
            before, reactor_before = cpu.cpu_seconds(pid), reactor_cpu_seconds(pid)
            rate, non_2xx, out = harness.wrk(url, 1, 32, args.duration)
            served = int(re.search(r"(\d+) requests in", out).group(1))
            if non_2xx:
                raise SystemExit(f"{variant}: {non_2xx} answers were not 2xx")
            costs[variant].append((cpu.cpu_seconds(pid) - before) / served * 1e6)
            reactor_costs[variant].append((reactor_cpu_seconds(pid) - reactor_before) / served * 1e6)
            rates[variant].append(rate)
        print(
            f"round {round_ + 1}: "
            + ", ".join(f"{v} {rates[v][-1]:,.0f} req/s {costs[v][-1]:.1f} µs" for v in variants),
            file=sys.stderr,
            flush=True,
        )
    return rates, costs, reactor_costs


def real_scrapes(args, gateway):
    """The metrics gateway's scrape with 1 and with 1,000 endpoints: rows of the scrape table."""
    admin_port, key, pid = gateway["admin_port"], gateway["key"], gateway["process"].pid
    rows = []

    def timed(label):
        scrape(admin_port, key)  # warm
        cpu_before = cpu.cpu_seconds(pid)
        walls, body = [], b""
        for _ in range(args.scrapes):
            wall, body = scrape(admin_port, key)
            walls.append(wall)
        per_scrape_cpu = (cpu.cpu_seconds(pid) - cpu_before) / args.scrapes
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        rows.append((label, median(walls) * 1e3, per_scrape_cpu * 1e3, len(body), series))

    timed("real, 1 endpoint (hello)")
    started = time.monotonic()

    def extra(i):
        path = f"/svc{i % 10}/v1/items{i}/{{id}}" if i % 2 else f"/svc{i % 10}/static{i}"
        eid = harness.api(admin_port, key, "POST", "/endpoints", {
            "name": f"extra-{i}", "path": path, "method": "GET", "code": harness.HELLO,
            "settings": {"min_instances": 0, "max_instances": 1},
        })["id"]
        harness.api(admin_port, key, "POST", f"/endpoints/{eid}/compile")
        harness.api(admin_port, key, "POST", f"/endpoints/{eid}/start")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(extra, range(1, ENDPOINTS)))
    print(f"999 more endpoints set up in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    timed(f"real, {ENDPOINTS:,} endpoints (hello has traffic)")
    return rows


def in_process_scrape(args):
    """The registry over 1,000 endpoints that all have traffic: a row of the scrape table."""
    from edgegw_tx.observability.exposition import Metrics, local_planes
    from edgegw_tx.observability.metrics import RequestMetrics, compile_timings, plane_snapshot

    requests = RequestMetrics()
    pools = {}
    for i in range(ENDPOINTS):
        name = f"endpoint-{i}"
        series = requests.series(name)
        for method, status in (("GET", 200), ("GET", 404), ("POST", 201), ("POST", 500), ("GET", 503)):
            for seconds in (0.0003, 0.002, 0.04):
                series.record(method, status, 120, 900, seconds)
        pools[f"id-{i}"] = {"name": name, "workers": 2, "busy": 1, "queued": 0, "crashed": 1}

    def plane():
        return plane_snapshot(requests, None, None)

    metrics = Metrics(local_planes(plane), lambda: pools, compiles=compile_timings())
    walls, body = [], b""
    for _ in range(args.scrapes + 1):
        started = time.perf_counter()
        body = metrics.render([plane()])
        walls.append(time.perf_counter() - started)
    walls = walls[1:]
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    wall = median(walls) * 1e3
    return (f"in-process, {ENDPOINTS:,} endpoints all with traffic", wall, wall, len(body), series)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS),
        help="comma-separated; NAME#2 is a second gateway of NAME (how far two alike differ)",
    )
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--no-scrape", action="store_true", help="skip the scrape-time measurements")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = {v.split("#")[0] for v in variants} - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")

    gateways = {}
    trees = {}
    try:
        for variant in variants:
            data_dir = tempfile.mkdtemp(prefix=f"edgegw-obs-{variant}-")
            port, admin_port = harness.free_port(), harness.free_port()
            gateways[variant] = {
                "process": start(variant, data_dir, port, admin_port, trees),
                "port": port, "admin_port": admin_port, "data_dir": data_dir,
            }
        for variant, gateway in gateways.items():
            harness.wait_for(f"http://127.0.0.1:{gateway['admin_port']}/api/health")
            gateway["key"] = key = harness.admin_key(gateway["data_dir"])
            endpoint = harness.api(gateway["admin_port"], key, "POST", "/endpoints", {
                "name": "hello", "path": "/hello", "method": "GET", "code": harness.HELLO,
            })["id"]
            harness.api(gateway["admin_port"], key, "POST", f"/endpoints/{endpoint}/compile")
            harness.api(gateway["admin_port"], key, "POST", f"/endpoints/{endpoint}/start")
            cpu.wait_until_served(f"http://127.0.0.1:{gateway['port']}/hello", "GET")

        rates, costs, reactor_costs = measure_rounds(args, variants, gateways)

        # Each variant did what it says: counted (or not), logged (or not).
        checks = []
        for variant, gateway in gateways.items():
            try:
                _, body = scrape(gateway["admin_port"], gateway["key"])
            except OSError as e:
                checks.append(f"{variant}: no /metrics ({e})")
            else:
                checks.append(f"{variant}: /metrics counts {hello_requests(body):,.0f} hello requests")
            if variant.split("#")[0] == "access-log":
                with open(os.path.join(gateway["data_dir"], "access.log"), "rb") as f:
                    lines = sum(1 for _ in f)
                checks.append(f"{variant}: {lines:,} lines written")

        print(f"hello, wrk -t1 -c32 -d{args.duration}s, median of {args.rounds} alternating rounds")
        print("| gateway | req/s | CPU µs per request: gateway process | its reactor thread |")
        print("| --- | --- | --- | --- |")
        for variant in variants:
            print(
                f"| {variant} | {median(rates[variant]):,.0f} | {median(costs[variant]):.1f}"
                f" | {median(reactor_costs[variant]):.1f} |"
            )
        cost = {v: median(costs[v]) for v in variants}
        if "metrics" in cost and "no-metrics" in cost:
            print(
                f"\nmetrics cost: {cost['metrics'] - cost['no-metrics']:+.1f} µs per request, "
                f"{(cost['metrics'] / cost['no-metrics'] - 1) * 100:+.1f} % of the CPU without them (target ≤ 5 %)"
            )
        if "metrics" in cost and "access-log" in cost:
            print(
                f"access log cost: {cost['access-log'] - cost['metrics']:+.1f} µs per request, "
                f"{(cost['access-log'] / cost['metrics'] - 1) * 100:+.1f} % of the CPU without it (target ≤ 10 %)"
            )
        print("checks: " + "; ".join(checks))

        if not args.no_scrape:
            rows = [in_process_scrape(args)]
            if "metrics" in gateways:
                rows = real_scrapes(args, gateways["metrics"]) + rows
            print(f"\n/metrics scrape, median of {args.scrapes}")
            print("| scrape | wall ms | gateway CPU ms | bytes | samples |")
            print("| --- | --- | --- | --- | --- |")
            for label, wall, cpu_ms, size, series in rows:
                print(f"| {label} | {wall:.1f} | {cpu_ms:.1f} | {size:,} | {series:,} |")
    finally:
        harness.stop([g["process"] for g in gateways.values()])
        for gateway in gateways.values():
            shutil.rmtree(gateway["data_dir"], ignore_errors=True)
        for tree in trees.values():
            shutil.rmtree(tree, ignore_errors=True)


if __name__ == "__main__":
    main()
