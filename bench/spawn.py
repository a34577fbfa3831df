"""
Benchmark: what worker isolation adds to a worker's start (docs/isolation.md).

Compiles the hello handler (real cargo, the tests' shared target directory),
then spawns it ``--rounds`` times each way, alternating, and times spawn →
``ready`` frame: the binary alone; through the launcher before namespaces
(``setsid prlimit ... setpriv ...`` with the default limits, as ``nobody``
when run as root: "rlimits"); and through today's launcher (bwrap's pid,
mount, IPC, UTS and network namespaces and, as root, the endpoint's own uid:
"namespaced"). Prints the medians and the differences as JSON.

    .venv/bin/python bench/spawn.py [--rounds 200]
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

HELLO = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"message": "Hello, World!"}))
}

handler_loop!(handle);
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="spawns timed each way")
    args = parser.parse_args()

    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    from edgegw_tx.admin.validation import DEFAULT_LIMITS
    from edgegw_tx.build.builder import Builder
    from edgegw_tx.build.cargo import find_cargo
    from edgegw_tx.workers.isolation import RLIMITS_ONLY, Isolation, environment, find_tools, resolve_user
    from edgegw_tx.workers.process import WorkerProcess

    results = {}

    async def run(data_dir):
        target = os.path.join(ROOT, ".cache", "test-target")
        os.makedirs(target, exist_ok=True)
        builder = Builder(data_dir, os.path.join(ROOT, "rust_sdk"), cargo=find_cargo(None), target_dir=target)
        binary = (await builder.build("bench", HELLO)).binary
        isolation = Isolation.for_gateway()
        old = Isolation(RLIMITS_ONLY, find_tools())
        old_user = resolve_user("nobody") if os.geteuid() == 0 else None
        identity = isolation.identity(isolation.uids[0]) if os.geteuid() == 0 else None
        sandbox = os.path.join(data_dir, "sandbox", "bench")
        isolation.prepare_sandbox(sandbox, identity)
        os.chmod(data_dir, 0o711)
        os.chmod(os.path.dirname(sandbox), 0o711)
        limits = DEFAULT_LIMITS
        ways = {
            "direct": ([], {}, False, (0, 1)),
            "rlimits": (old.launcher(limits, old_user, binary=binary, sandbox=sandbox), environment({}), True, (0, 1)),
            "namespaced": (
                isolation.launcher(limits, identity, binary=binary, sandbox=sandbox),
                environment({}),
                True,
                isolation.frame_fds,
            ),
        }

        async def once(launcher, env, group, frame_fds):
            worker = WorkerProcess("bench", log=lambda stream, line: None, process_group=group, frame_fds=frame_fds)
            start = time.perf_counter()
            argv = launcher + [binary]
            in_fd, out_fd = frame_fds
            child_fds = {in_fd: "w", out_fd: "r", 2: "r"}
            null = os.open(os.devnull, os.O_RDWR)
            if frame_fds != (0, 1):
                child_fds.update({0: null, 1: null})
            reactor.spawnProcess(worker, argv[0], argv, env=env, path=sandbox, childFDs=child_fds)
            os.close(null)
            await worker.when_ready()
            elapsed = time.perf_counter() - start
            await worker.stop(1.0)
            return elapsed

        times = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, way in ways.items():
                times[name].append(await once(*way))
        for name, values in times.items():
            results[name + "_ms"] = round(statistics.median(values) * 1000, 3)
        results["rlimits_added_ms"] = round(results["rlimits_ms"] - results["direct_ms"], 3)
        results["namespaced_added_ms"] = round(results["namespaced_ms"] - results["direct_ms"], 3)
        results["rounds"] = args.rounds
        results["mode"] = isolation.mode

    def done(result):
        reactor.stop()
        return result

    with tempfile.TemporaryDirectory(prefix="edgegw-spawn-") as data_dir:
        d = ensureDeferred(run(data_dir))
        d.addErrback(lambda f: (f.printTraceback(), None)[1])
        d.addBoth(done)
        reactor.run()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
