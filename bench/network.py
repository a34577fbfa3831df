"""
Benchmark: what a network policy other than "none" costs (docs/isolation.md, "Network policy").

Three figures, as root (network namespaces need it):

* ``prepare_ms`` / ``remove_ms``: an endpoint's "outbound" namespace made
  ready (``ip netns add``, loopback, nftables table, pasta connected) and
  removed again, once per endpoint (``--prepares`` times, median);
* ``spawn_*_ms``: spawn → ``ready`` of the hello worker through today's
  launcher with network "none" (bwrap unshares the network) and with the
  namespace's ``nsenter`` prefix, alternating (``--rounds``, median);
* ``rps_*``: hello requests per second through a real gateway (wrk -c32,
  ``--seconds`` each, alternating ``--runs`` times, median) to an endpoint
  with "none" and one with "outbound": requests go over the workers' pipes,
  so the policy should not show.

    .venv/bin/python bench/network.py [--prepares 20] [--rounds 100] [--runs 3] [--seconds 5]
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from spawn import HELLO  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--prepares", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/network.py: network namespaces need root")

    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.utils import getProcessOutput

    from edgegw_tx.admin.validation import DEFAULT_LIMITS
    from edgegw_tx.build.builder import Builder
    from edgegw_tx.build.cargo import find_cargo
    from edgegw_tx.workers.isolation import Isolation, environment
    from edgegw_tx.workers.network import NetworkNamespaces
    from edgegw_tx.workers.process import WorkerProcess

    results = {}

    async def namespaces(spaces):
        prepare, remove = [], []
        for i in range(args.prepares):
            start = time.perf_counter()
            await spaces.acquire(f"bench{i}", "outbound")
            prepare.append(time.perf_counter() - start)
            start = time.perf_counter()
            await spaces.release(f"bench{i}", "outbound")
            remove.append(time.perf_counter() - start)
        results["prepare_ms"] = round(statistics.median(prepare) * 1000, 1)
        results["remove_ms"] = round(statistics.median(remove) * 1000, 1)

    async def spawns(spaces, data_dir, binary):
        isolation = Isolation.for_gateway()
        identity = isolation.identity(isolation.uids[0])
        sandbox = os.path.join(data_dir, "sandbox", "bench")
        isolation.prepare_sandbox(sandbox, identity)
        os.chmod(data_dir, 0o711)
        os.chmod(os.path.dirname(sandbox), 0o711)
        prefix = await spaces.acquire("spawn", "outbound")
        ways = {
            "none": isolation.launcher(DEFAULT_LIMITS, identity, binary=binary, sandbox=sandbox),
            "outbound": isolation.launcher(DEFAULT_LIMITS, identity, prefix, binary=binary, sandbox=sandbox),
        }

        async def once(launcher):
            worker = WorkerProcess("bench", log=lambda stream, line: None, process_group=True, frame_fds=isolation.frame_fds)
            in_fd, out_fd = isolation.frame_fds
            null = os.open(os.devnull, os.O_RDWR)
            child_fds = {in_fd: "w", out_fd: "r", 2: "r", 0: null, 1: null}
            start = time.perf_counter()
            argv = launcher + [binary]
            reactor.spawnProcess(worker, argv[0], argv, env=environment({}), path=sandbox, childFDs=child_fds)
            os.close(null)
            await worker.when_ready()
            elapsed = time.perf_counter() - start
            await worker.stop(1.0)
            return elapsed

        times = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, launcher in ways.items():
                times[name].append(await once(launcher))
        for name, values in times.items():
            results[f"spawn_{name}_ms"] = round(statistics.median(values) * 1000, 2)
        results["spawn_added_ms"] = round(results["spawn_outbound_ms"] - results["spawn_none_ms"], 2)
        await spaces.release("spawn", "outbound")

    async def throughput(data_dir, cargo):
        from tests.support.harness import GatewayHarness

        class Quiet:
            def assertEqual(self, *a):
                assert a[0] == a[1], a

        gateway = GatewayHarness(Quiet(), os.path.join(data_dir, "gateway"), cargo)
        await gateway.start()
        try:
            for name, policy in (("none", "none"), ("outbound", "outbound")):
                await gateway.deploy(name, "/" + name, HELLO, network=policy, min_instances=1, max_instances=1)
            rps = {"none": [], "outbound": []}
            for _ in range(args.runs):
                for name in rps:
                    out = await getProcessOutput(
                        "/usr/bin/wrk", ["-t1", "-c32", f"-d{args.seconds}s", gateway.base + "/" + name], env={}
                    )
                    rps[name].append(float(re.search(rb"Requests/sec:\s+([0-9.]+)", out).group(1)))
            for name, values in rps.items():
                results[f"rps_{name}"] = round(statistics.median(values))
                results[f"rps_{name}_all"] = [round(v) for v in values]
        finally:
            await gateway.stop()

    async def run(data_dir):
        target = os.path.join(ROOT, ".cache", "test-target")
        os.makedirs(target, exist_ok=True)
        cargo = find_cargo(None)
        builder = Builder(data_dir, os.path.join(ROOT, "rust_sdk"), cargo=cargo, target_dir=target)
        binary = (await builder.build("bench", HELLO)).binary
        spaces = NetworkNamespaces("bench0", reactor)
        try:
            await namespaces(spaces)
            await spawns(spaces, data_dir, binary)
        finally:
            await spaces.close()
        await throughput(data_dir, cargo)

    def done(result):
        reactor.stop()
        return result

    with tempfile.TemporaryDirectory(prefix="edgegw-network-") as data_dir:
        d = ensureDeferred(run(data_dir))
        d.addErrback(lambda f: (f.printTraceback(), None)[1])
        d.addBoth(done)
        reactor.run()
    results.update(prepares=args.prepares, rounds=args.rounds, runs=args.runs, seconds=args.seconds)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
