"""
`make bench`: edgegw against two baselines answering the same bytes, same run.

Starts a real ``twistd edgegw`` on a fresh data dir and three baselines:
bench/baseline.py twice (a default twisted.web Site, which writes an access-log
line per request, and one without the access log, as the gateway's data plane
runs) and bench/httptools_baseline.py (a constant-answering httptools Protocol:
the per-process ceiling). Each scenario gets a 2 s warm-up then
``wrk -t1 --latency -d<duration>s`` against each target:

  hello       GET /hello, small JSON, 32 connections (also the default Site)
  hello-c1    the same at 1 connection (latency, p50)
  echo-16k    POST /echo with a 16 KiB body (bench/echo16k.lua), echoed back
  path-params GET /users/{id}/posts/{slug} (docs/examples/path_params.rs)
  redis-get   one Redis GET per request via the service plane (skipped when
              nothing answers PING on 127.0.0.1:6379); the baselines answer
              the same bytes without asking Redis
  redis-get-async     the same from an async handler (`get_async(..).await`:
              one worker serves many requests at once); edgegw only
  sqlite-query        one SQLite query per request (`SELECT ? AS value`) on a
              bound SQLite service, sync handler; edgegw only
  sqlite-query-async  the same from an async handler (`query_async`)
  rss-100-20  the gateway's RSS with 100 endpoints defined and 20 running
              (one worker each) after 5 s of hello at 32 connections
  processes-2 hello against a second gateway started with --processes 2
              (two data-plane processes on the shared socket), and the
              first gateway (--processes 1) measured again right after it
  routes-1000 GET /hello with 999 more endpoints started with min_instances 0
              (routes in the table, no worker processes), against GET
              /hello with 1 route measured just before they were added
              (and the `hello` row of the same run)

Only the scenario's endpoint is running during a scenario (hello stays
running), so `hello` is measured with one route in the table.

Reports req/s, ratios, p50/p99, the gateway's peak RSS (VmHWM of the twistd
process; sum of VmHWM over its worker processes), writes
bench/results/<timestamp>.json and .png (when matplotlib is installed: the
`bench` extra), and rewrites the table between the bench markers of
docs/performance.md. Every process it starts is stopped before it exits.

    make bench            # or: .venv/bin/python bench/run.py [--duration 10] [--connections 32]
                          #     [--only hello,echo-16k] [--no-docs] [--profile]
"""

import argparse
import concurrent.futures
import json
import os
import platform
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
HERE = os.path.join(ROOT, "bench")
RESULTS = os.path.join(HERE, "results")
DOC = os.path.join(ROOT, "docs", "performance.md")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

HELLO = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"message": "Hello, World!", "path": req.path, "method": req.method}))
}

handler_loop!(handle);
"""

ECHO = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::binary(200, req.body_bytes(), "application/octet-stream")
}

handler_loop!(handle);
"""

REDIS_GET = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Result<Response, HandlerError> {
    let value = RedisPool::new("cache").get("edgegw-bench-key")?;
    Ok(Response::ok(json!({"value": value})))
}

handler_loop_result!(handle);
"""
REDIS_VALUE = "edgegw-bench-value"

REDIS_GET_ASYNC = """use rust_edge_gateway_sdk::prelude::*;

async fn handle(_req: Request) -> Result<Response, HandlerError> {
    let value = RedisPool::new("cache").get_async("edgegw-bench-key").await?;
    Ok(Response::ok(json!({"value": value})))
}

handler_loop_async_result!(handle);
"""

SQLITE_QUERY = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Result<Response, HandlerError> {
    let rows = DbPool::new("db").query("SELECT ? AS value", &["edgegw-bench-value"])?;
    Ok(Response::ok(json!({"value": rows.first().map(|r| r["value"].clone())})))
}

handler_loop_result!(handle);
"""

SQLITE_QUERY_ASYNC = """use rust_edge_gateway_sdk::prelude::*;

async fn handle(_req: Request) -> Result<Response, HandlerError> {
    let rows = DbPool::new("db").query_async("SELECT ? AS value", &["edgegw-bench-value"]).await?;
    Ok(Response::ok(json!({"value": rows.first().map(|r| r["value"].clone())})))
}

handler_loop_async_result!(handle);
"""
# Scenarios with one service call per request: (name, path, code, service binding).
SERVICE_SCENARIOS = (
    ("redis-get-async", "/redis-async", REDIS_GET_ASYNC, "cache"),
    ("sqlite-query", "/sqlite", SQLITE_QUERY, "db"),
    ("sqlite-query-async", "/sqlite-async", SQLITE_QUERY_ASYNC, "db"),
)

# target names, in chart order
TARGETS = ("edgegw", "twisted.web, no access log", "httptools Protocol", "twisted.web, default Site")
SCENARIOS = (
    "hello", "hello-c1", "echo-16k", "path-params", "redis-get", "redis-get-async", "sqlite-query",
    "sqlite-query-async", "rss-100-20", "processes-2", "routes-1000",
)


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


def start_profile(pid, duration, output):
    """py-spy sampling the gateway for ``duration`` s (collapsed stacks, for flame graphs and grep)."""
    os.makedirs(os.path.dirname(output), exist_ok=True)
    return subprocess.Popen(
        [os.path.join(BIN, "py-spy"), "record", "--pid", str(pid), "--duration", str(duration),
         "--rate", "250", "--nonblocking", "--format", "raw", "--output", output],
        stdout=subprocess.DEVNULL,
    )


def top_frames(collapsed, count=25):
    """Self time per function from a py-spy collapsed file, largest first."""
    totals, samples = {}, 0
    with open(collapsed) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not n.isdigit():  # a frame name with a line break in it
                continue
            samples += int(n)
            leaf = stack.rsplit(";", 1)[-1]
            totals[leaf] = totals.get(leaf, 0) + int(n)
    return samples, sorted(totals.items(), key=lambda kv: -kv[1])[:count]


def wait_for(url, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered at {url}")


def _ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, threads, connections, duration, script=None, latency=False):
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s"]
    if latency:
        command.append("--latency")
    if script:
        command += ["-s", script]
    out = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if not latency:
        return rate, int(errors.group(1)) if errors else 0, out
    result = {"requests_per_s": rate, "non_2xx": int(errors.group(1)) if errors else 0}
    if socket_errors:
        result["socket_errors"] = socket_errors.group(1).strip()
    for pct in ("50", "99"):
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        result[f"p{pct}_ms"] = round(_ms(*found.groups()), 3) if found else None
    return result


def _status_kib(pid, field):
    """A ``kB`` line of /proc/<pid>/status (VmRSS, VmHWM), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def vmhwm_kib(pid):
    return _status_kib(pid, "VmHWM")


def vmrss_kib(pid):
    return _status_kib(pid, "VmRSS")


def process_table():
    """{pid: (parent pid, command name)} of every process now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        table[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), comm)
    return table


def children(pid):
    return [child for child, (parent, _) in process_table().items() if parent == pid]


def workers(pid):
    """
    The worker processes under ``pid``, at any depth: a worker runs under
    bubblewrap's two processes (docs/isolation.md), which are left out.
    """
    table = process_table()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, comm) in table.items():
            if ppid == parent:
                frontier.append(child)
                if comm != "bwrap":
                    found.append(child)
    return found


def gateway_memory(pid):
    measured = [(child, vmhwm_kib(child)) for child in workers(pid)]
    measured = [(child, kib) for child, kib in measured if kib is not None]
    return {
        "twistd_vmhwm_kib": vmhwm_kib(pid),
        "workers": len(measured),
        "workers_vmhwm_kib_sum": sum(kib for _, kib in measured),
    }


def redis_up():
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as s:
            s.sendall(b"*3\r\n$3\r\nSET\r\n$16\r\nedgegw-bench-key\r\n$%d\r\n%s\r\n" % (len(REDIS_VALUE), REDIS_VALUE.encode()))
            return s.recv(64).startswith(b"+OK")
    except OSError:
        return False


def admin_key(data_dir, seconds=60):
    """The bootstrap key, once the gateway has written it (the API may answer health first)."""
    path = os.path.join(data_dir, "admin.key")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                key = f.read().strip()
            if key:
                return key
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"no admin key at {path}")


def start_gateway(data_dir, port, admin_port, extra=()):
    """A real ``twistd edgegw`` on a fresh data dir, its log in the data dir."""
    return subprocess.Popen(
        [
            os.path.join(BIN, "twistd"), "-n", "--pidfile=", "--logfile", os.path.join(data_dir, "twistd.log"),
            "edgegw", "--data-dir", data_dir,
            "--listen", f"tcp:{port}:interface=127.0.0.1",
            "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1",
            # compile_cold_s is the first compile into an empty target, with no warm-up ahead of it.
            "--no-warm-up",
            *extra,
        ]
        + (["--cargo", os.environ["CARGO"]] if os.environ.get("CARGO") else []),
        cwd=ROOT,
    )


def stop(processes):
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def machine():
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def chart(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install -e '.[bench]'): no PNG"
    names = [s for s in SCENARIOS if s in results["scenarios"] and "targets" in results["scenarios"][s]]
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(names)), 4.5))
    width = 0.8 / len(TARGETS)
    for i, target in enumerate(TARGETS):
        xs, ys = [], []
        for j, name in enumerate(names):
            got = results["scenarios"][name]["targets"].get(target)
            if got:
                xs.append(j + (i - (len(TARGETS) - 1) / 2) * width)
                ys.append(got["requests_per_s"])
        if xs:
            ax.bar(xs, ys, width, label=target)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("requests/s")
    ax.set_title(f"edgegw and baselines, {results['wrk']} ({results['machine']['nproc']} CPUs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def _n(value):
    return f"{value:,.0f}" if value is not None else "–"


def _p(result):
    return f"{result['p50_ms']:.2f} / {result['p99_ms']:.2f}" if result and result.get("p50_ms") is not None else "–"


def table(results):
    m = results["machine"]
    lines = [
        BEGIN,
        f"Produced by `{results['command']}` on {m['date']}: {m['nproc']} CPUs, {m['cpu']};"
        f" `{results['wrk']}` per target after a 2 s warm-up; wrk, the gateway and its workers share the machine."
        f" Compile through the API: cold {results['compile_cold_s']} s, warm {results['compile_warm_s']} s."
        f" File: `bench/results/{results['stamp']}.json`.",
        "",
        "| scenario | edgegw req/s | twisted.web, no log | httptools Protocol | ratio to twisted.web (no log) | ratio to httptools | edgegw p50 / p99 ms | twisted.web (no log) p50 / p99 ms | httptools p50 / p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in SCENARIOS:
        s = results["scenarios"].get(name)
        if s is None:
            continue
        if "skipped" in s:
            lines.append(f"| {name} | skipped: {s['skipped']} | | | | | | | |")
            continue
        t = s["targets"]
        e, b, h = t.get("edgegw"), t.get("twisted.web, no access log"), t.get("httptools Protocol")
        lines.append(
            f"| {name} ({s['connections']} conn.) | {_n(e['requests_per_s'])} | {_n(b and b['requests_per_s'])}"
            f" | {_n(h and h['requests_per_s'])} | {s.get('ratio_twisted_web_no_log', '–')} | {s.get('ratio_httptools', '–')}"
            f" | {_p(e)} | {_p(b)} | {_p(h)} |"
        )
    hello = results["scenarios"].get("hello", {}).get("targets", {})
    site = hello.get("twisted.web, default Site")
    mem = results["memory"]
    lines += [
        "",
        "Notes: " + "; ".join(
            ([f"hello against the default twisted.web Site (access log on): {_n(site['requests_per_s'])} req/s, ratio {results['scenarios']['hello'].get('ratio_twisted_web_default_site')}"] if site else [])
            + [s_note for s_note in results["notes"]]
            + [f"gateway peak RSS (VmHWM): twistd {mem['twistd_vmhwm_kib'] / 1024:.1f} MiB; its workers, summed: {mem['workers_vmhwm_kib_sum'] / 1024:.1f} MiB at most ({mem['workers']} workers, at the end of a scenario)"]
        ) + ".",
        END,
    ]
    return "\n".join(lines)


def update_doc(text):
    with open(DOC) as f:
        doc = f.read()
    if BEGIN in doc and END in doc:
        doc = doc[: doc.index(BEGIN)] + text + doc[doc.index(END) + len(END):]
    else:
        anchor = "## Where the time goes"
        section = "### Harness results (`make bench`, rewritten by each run)\n\n" + text + "\n\n"
        doc = doc.replace(anchor, section + anchor, 1) if anchor in doc else doc + "\n" + section
    with open(DOC, "w") as f:
        f.write(doc)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    parser.add_argument(
        "--profile", action="store_true",
        help="sample the gateway with py-spy during each edgegw run: bench/results/<stamp>-<scenario>.collapsed",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    wanted = [s for s in SCENARIOS if not args.only or s in args.only.split(",")]

    data_dir = tempfile.mkdtemp(prefix="edgegw-bench-")
    cleanup = [data_dir]
    port, admin_port = free_port(), free_port()
    site_port, bare_port, fast_port = free_port(), free_port(), free_port()
    processes = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    command = "make bench" if os.environ.get("MAKELEVEL") else " ".join([".venv/bin/python", "bench/run.py"] + sys.argv[1:])
    results = {
        "stamp": stamp, "machine": machine(), "command": command,
        "wrk": f"wrk -t{args.threads} -d{args.duration}s --latency", "scenarios": {}, "notes": [],
    }
    try:
        gateway = start_gateway(data_dir, port, admin_port)
        processes.append(gateway)
        for argv in (
            [os.path.join(HERE, "baseline.py"), str(site_port)],
            [os.path.join(HERE, "baseline.py"), str(bare_port), "--no-access-log"],
            [os.path.join(HERE, "httptools_baseline.py"), str(fast_port)],
        ):
            processes.append(subprocess.Popen([sys.executable] + argv))
        wait_for(f"http://127.0.0.1:{admin_port}/api/health")
        key = admin_key(data_dir)

        def create(name, path, method, code, **settings):
            return api(admin_port, key, "POST", "/endpoints", dict(name=name, path=path, method=method, code=code, **settings))["id"]

        def compile_(eid):
            return api(admin_port, key, "POST", f"/endpoints/{eid}/compile")["build"]["seconds"]

        hello = create("hello", "/hello", "GET", HELLO)
        results["compile_cold_s"] = compile_(hello)
        echo = create("echo", "/echo", "POST", ECHO)
        results["compile_warm_s"] = compile_(echo)
        with open(os.path.join(ROOT, "docs", "examples", "path_params.rs")) as f:
            params = create("path-params", "/users/{id}/posts/{slug}", "GET", f.read())
        compile_(params)
        redis_id = None
        if "redis-get" in wanted:
            if redis_up():
                service = api(admin_port, key, "POST", "/services", {"name": "cache", "service_type": "redis", "config": {"host": "127.0.0.1", "port": 6379}})
                redis_id = create("redis-get", "/redis", "GET", REDIS_GET)
                api(admin_port, key, "POST", f"/endpoints/{redis_id}/services", {"service_id": service["id"], "pool_id": "cache"})
                compile_(redis_id)
            else:
                results["scenarios"]["redis-get"] = {"skipped": "nothing answered PING/SET on 127.0.0.1:6379"}
        service_ids = {}
        bound = {}
        for name, path, code, binding in SERVICE_SCENARIOS:
            if name not in wanted:
                continue
            if binding == "cache" and not redis_up():
                results["scenarios"][name] = {"skipped": "nothing answered PING/SET on 127.0.0.1:6379"}
                continue
            if binding not in service_ids:
                config = {"host": "127.0.0.1", "port": 6379} if binding == "cache" else {}
                kind = "redis" if binding == "cache" else "sqlite"
                service_ids[binding] = api(admin_port, key, "POST", "/services", {"name": f"bench-{binding}", "service_type": kind, "config": config})["id"]
            eid = create(name, path, "GET", code)
            api(admin_port, key, "POST", f"/endpoints/{eid}/services", {"service_id": service_ids[binding], "pool_id": binding})
            compile_(eid)
            bound[name] = (path, eid)
        api(admin_port, key, "POST", f"/endpoints/{hello}/start")
        for p in (site_port, bare_port, fast_port):
            wait_for(f"http://127.0.0.1:{p}/hello")
        wait_for(f"http://127.0.0.1:{port}/hello")

        def measure(name, path, connections, endpoint=None, script=None, targets=TARGETS[:3]):
            print(f"-- {name}", file=sys.stderr, flush=True)
            if endpoint:
                api(admin_port, key, "POST", f"/endpoints/{endpoint}/start")
            try:
                urls = {
                    "edgegw": port, "twisted.web, no access log": bare_port,
                    "httptools Protocol": fast_port, "twisted.web, default Site": site_port,
                }
                got, bodies = {}, {}
                for target in targets:
                    data = b"x" * 16384 if script else None
                    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{urls[target]}{path}", data=data), timeout=10) as r:
                        bodies[target] = r.read()
                    url = f"http://127.0.0.1:{urls[target]}{path}"
                    wrk(url, args.threads, connections, 2, script)  # warm-up
                    profiler = None
                    if args.profile and target == "edgegw":
                        profiler = start_profile(gateway.pid, args.duration, os.path.join(RESULTS, f"{stamp}-{name}.collapsed"))
                    got[target] = wrk(url, args.threads, connections, args.duration, script, latency=True)
                    if profiler is not None:
                        profiler.wait(timeout=60)
                    if target == "edgegw":
                        memory = gateway_memory(gateway.pid)
            finally:
                if endpoint:
                    api(admin_port, key, "POST", f"/endpoints/{endpoint}/stop")
            scenario = {"path": path, "connections": connections, "targets": got, "memory": memory,
                        "same_bytes": len(set(bodies.values())) == 1}
            if not scenario["same_bytes"]:
                results["notes"].append(f"{name}: the targets' bodies DIFFER: " + repr(bodies)[:300])
            e = got["edgegw"]["requests_per_s"]
            for target, label in (
                ("twisted.web, no access log", "ratio_twisted_web_no_log"),
                ("httptools Protocol", "ratio_httptools"),
                ("twisted.web, default Site", "ratio_twisted_web_default_site"),
            ):
                if target in got:
                    scenario[label] = round(e / got[target]["requests_per_s"], 3)
            results["scenarios"][name] = scenario
            print(json.dumps({name: scenario}), file=sys.stderr, flush=True)

        c = args.connections
        if "hello" in wanted:
            measure("hello", "/hello", c, targets=TARGETS)
        if "hello-c1" in wanted:
            measure("hello-c1", "/hello", 1)
        if "echo-16k" in wanted:
            measure("echo-16k", "/echo", c, echo, script=os.path.join(HERE, "echo16k.lua"))
        if "path-params" in wanted:
            measure("path-params", "/users/42/posts/hello-world", c, params)
        if redis_id:
            measure("redis-get", "/redis", c, redis_id)
        for name, (path, eid) in bound.items():
            measure(name, path, c, eid, targets=TARGETS[:1])
        if "rss-100-20" in wanted:
            print("-- rss-100-20", file=sys.stderr, flush=True)
            defined = api(admin_port, key, "GET", "/endpoints")["total"]
            extra_ids = []
            for i in range(100 - defined):
                eid = create(f"rss-{i}", f"/rss/{i}", "GET", HELLO)
                compile_(eid)
                extra_ids.append(eid)
            started_ids = extra_ids[:19]  # and hello: 20 running
            for eid in started_ids:
                api(admin_port, key, "POST", f"/endpoints/{eid}/start")
            wrk(f"http://127.0.0.1:{port}/hello", args.threads, c, 5)
            listed = api(admin_port, key, "GET", "/endpoints?limit=1000")
            running = sum(1 for e in listed["items"] if e["status"] == "running")
            results["rss"] = {
                "endpoints_defined": listed["total"],
                "endpoints_running": running,
                "twistd_vmrss_kib": vmrss_kib(gateway.pid),
                **gateway_memory(gateway.pid),
            }
            results["notes"].append(
                f"rss-100-20: with {results['rss']['endpoints_defined']} endpoints defined and {running} running "
                f"({results['rss']['workers']} workers) after 5 s of hello at {c} connections, twistd's RSS was "
                f"{results['rss']['twistd_vmrss_kib'] / 1024:.1f} MiB (peak {results['rss']['twistd_vmhwm_kib'] / 1024:.1f} MiB)"
            )
            for eid in started_ids:
                api(admin_port, key, "POST", f"/endpoints/{eid}/stop")
        if "processes-2" in wanted:
            print("-- processes-2", file=sys.stderr, flush=True)
            data_dir2 = tempfile.mkdtemp(prefix="edgegw-bench-n2-")
            cleanup.append(data_dir2)
            port2, admin2 = free_port(), free_port()
            gateway2 = start_gateway(data_dir2, port2, admin2, ["--processes", "2"])
            processes.append(gateway2)
            wait_for(f"http://127.0.0.1:{admin2}/api/health")
            key2 = admin_key(data_dir2)
            hello2 = api(admin2, key2, "POST", "/endpoints", dict(name="hello", path="/hello", method="GET", code=HELLO))["id"]
            api(admin2, key2, "POST", f"/endpoints/{hello2}/compile")
            api(admin2, key2, "POST", f"/endpoints/{hello2}/start")
            wait_for(f"http://127.0.0.1:{port2}/hello")
            got = {}
            for label, target_port in (("edgegw --processes 2", port2), ("edgegw --processes 1", port)):
                wrk(f"http://127.0.0.1:{target_port}/hello", args.threads, c, 2)
                got[label] = wrk(f"http://127.0.0.1:{target_port}/hello", args.threads, c, args.duration, latency=True)
            planes = children(gateway2.pid)
            scenario = {
                "path": "/hello", "connections": c,
                "targets": {"edgegw": got["edgegw --processes 2"], "edgegw --processes 1": got["edgegw --processes 1"]},
                "ratio_to_processes_1": round(got["edgegw --processes 2"]["requests_per_s"] / got["edgegw --processes 1"]["requests_per_s"], 3),
                "memory": {"twistd_vmhwm_kib": vmhwm_kib(gateway2.pid), "data_planes_vmhwm_kib": [vmhwm_kib(p) for p in planes]},
            }
            base = results["scenarios"].get("hello")
            if base:
                for target, label in (("twisted.web, no access log", "ratio_twisted_web_no_log"), ("httptools Protocol", "ratio_httptools")):
                    scenario[label] = round(got["edgegw --processes 2"]["requests_per_s"] / base["targets"][target]["requests_per_s"], 3)
            results["scenarios"]["processes-2"] = scenario
            results["notes"].append(
                f"processes-2: hello on a gateway with --processes 2 (two data-plane processes sharing the socket, "
                f"one control process): {_n(got['edgegw --processes 2']['requests_per_s'])} req/s against "
                f"{_n(got['edgegw --processes 1']['requests_per_s'])} req/s for --processes 1 measured right after, "
                f"{scenario['ratio_to_processes_1']}×; wrk itself needs most of a core of the two; ratios use the `hello` baselines; "
                f"the control process's peak RSS {scenario['memory']['twistd_vmhwm_kib'] / 1024:.1f} MiB, each data-plane process "
                + ", ".join(f"{k / 1024:.1f}" for k in scenario["memory"]["data_planes_vmhwm_kib"] if k) + " MiB"
            )
            stop([gateway2])
        if "routes-1000" in wanted:
            # GET /hello with 1 route, measured just before: the machine's speed
            # drifts over a whole run, so the `hello` row is no fair yardstick.
            hello_url = f"http://127.0.0.1:{port}/hello"
            wrk(hello_url, args.threads, c, 2)
            one_route = wrk(hello_url, args.threads, c, args.duration, latency=True)
            # 999 more endpoints, same code (compiled once: content-addressed),
            # started with min_instances 0: routes in the table, no processes.
            started = time.monotonic()

            def extra(i):
                path = f"/svc{i % 10}/v1/items{i}/{{id}}" if i % 2 else f"/svc{i % 10}/static{i}"
                eid = create(f"extra-{i}", path, "GET", HELLO, settings={"min_instances": 0, "max_instances": 1})
                compile_(eid)
                api(admin_port, key, "POST", f"/endpoints/{eid}/start")

            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(extra, range(1, 1000)))
            results["routes_1000_setup_s"] = round(time.monotonic() - started, 1)
            # the baselines have no route table: their numbers are the same as in `hello`
            measure("routes-1000", "/hello", c, targets=TARGETS[:1])
            r = results["scenarios"]["routes-1000"]
            r["one_route_just_before"] = one_route
            r["ratio_to_1_route"] = round(r["targets"]["edgegw"]["requests_per_s"] / one_route["requests_per_s"], 3)
            base = results["scenarios"].get("hello")
            if base:
                r["ratio_to_hello_1_route"] = round(r["targets"]["edgegw"]["requests_per_s"] / base["targets"]["edgegw"]["requests_per_s"], 3)
                for target, label in (("twisted.web, no access log", "ratio_twisted_web_no_log"), ("httptools Protocol", "ratio_httptools")):
                    r[label] = round(r["targets"]["edgegw"]["requests_per_s"] / base["targets"][target]["requests_per_s"], 3)
            results["notes"].append(
                f"routes-1000: 999 more endpoints (same code, compiled once; half static paths, half with a parameter; "
                f"set up in {results['routes_1000_setup_s']} s) started with min_instances 0, so the route table holds 1,000 "
                f"routes and no worker process runs for them; GET /hello then measured {r['ratio_to_1_route']}× "
                f"GET /hello with 1 route measured just before the 999 were added ({_n(one_route['requests_per_s'])} req/s), "
                f"{r.get('ratio_to_hello_1_route', '–')}× the `hello` row; ratios use the `hello` baselines"
            )
        if redis_id:
            results["notes"].append("redis-get: the handler does one RedisPool GET per request; the baselines answer the same bytes without asking Redis")
        hello_rps = results["scenarios"].get("hello", {}).get("targets", {}).get("edgegw", {}).get("requests_per_s")
        calls = [n for n in ("redis-get", "redis-get-async", "sqlite-query", "sqlite-query-async")
                 if "targets" in results["scenarios"].get(n, {})]
        if hello_rps and calls:
            results["notes"].append(
                "one service call per request, ratio to hello's edgegw req/s: " + ", ".join(
                    f"{n} {results['scenarios'][n]['targets']['edgegw']['requests_per_s'] / hello_rps:.2f}×" for n in calls
                ) + " (the -async ones: async handlers, every request a task, up to `concurrency` 64 per worker)"
            )
        results["memory"] = {
            "twistd_vmhwm_kib": vmhwm_kib(gateway.pid),
            "workers_vmhwm_kib_sum": max((s["memory"].get("workers_vmhwm_kib_sum", 0) for s in results["scenarios"].values() if "memory" in s), default=0),
            "workers": max((s["memory"].get("workers", 0) for s in results["scenarios"].values() if "memory" in s), default=0),
        }
    finally:
        stop(processes)
        for folder in cleanup:
            shutil.rmtree(folder, ignore_errors=True)

    os.makedirs(RESULTS, exist_ok=True)
    png_note = chart(results, os.path.join(RESULTS, stamp + ".png"))
    if png_note:
        results["notes"].append(png_note)
    with open(os.path.join(RESULTS, stamp + ".json"), "w") as f:
        json.dump(results, f, indent=2)
    text = table(results)
    if not args.no_docs and not args.profile:  # numbers taken under a profiler are not the table's
        update_doc(text)
    print(json.dumps(results, indent=2))
    print(text)
    print(f"wrote bench/results/{stamp}.json" + ("" if png_note else f" and bench/results/{stamp}.png"))


if __name__ == "__main__":
    main()
