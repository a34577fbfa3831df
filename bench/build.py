"""
Benchmark: what the build sandbox adds to a compile (docs/isolation.md, "Builds").

Compiles the hello handler with real cargo, with and without the sandbox
(bwrap, rlimits, the build user), alternating, each in a target directory of
its own:

  - cold: a fresh target directory, so serde, serde_json and the SDK compile too;
  - warm: another handler (a different comment, so a new digest) once the
    common crates are built, as every later compile on a gateway.

Also times the sandbox alone: ``/bin/true`` run directly and through the
same bwrap/prlimit/setpriv command line a build uses (``--launch`` times each).
Prints the medians per way as JSON.  Run as root (the sandbox switches users).

    .venv/bin/python bench/build.py [--cold 2] [--warm 7] [--launch 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

HELLO = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"message": "Hello, World!", "path": req.path, "method": req.method}))
}

handler_loop!(handle);
"""


def time_launch(rounds: int) -> dict[str, float]:
    """Median milliseconds of /bin/true alone and in the build sandbox (before the reactor runs: blocking is fine)."""
    import subprocess
    import time

    from edgegw_tx.build.sandbox import BuildSandbox

    sandboxed = BuildSandbox.for_gateway().argv(["/bin/true"], cwd="/", env={"PATH": "/usr/bin:/bin"})
    out = {}
    for way, argv in (("direct", ["/bin/true"]), ("sandboxed", sandboxed)):
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run(argv, check=True)
            times.append(time.perf_counter() - start)
        out[way] = round(statistics.median(times) * 1000, 2)
    return out


def main() -> None:
    """Parse the options, run the rounds on the real reactor, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--cold", type=int, default=2, help="cold compiles timed each way")
    parser.add_argument("--warm", type=int, default=7, help="warm compiles timed each way per cold round")
    parser.add_argument("--launch", type=int, default=100, help="sandbox launches of /bin/true timed each way")
    args = parser.parse_args()
    launch = time_launch(args.launch)

    from twisted.internet import task

    from edgegw_tx.build.builder import Builder
    from edgegw_tx.build.cargo import find_cargo

    times: dict[str, dict[str, list[float]]] = {
        way: {"cold": [], "warm": []} for way in ("sandboxed", "unsandboxed")
    }
    counter = iter(range(10**6))

    async def compile_once(builder: Builder, kind: str, way: str) -> None:
        code = HELLO + f"// {way} {kind} {next(counter)}\n"
        result = await builder.build("bench", code)
        times[way][kind].append(result.seconds)

    async def run(reactor) -> None:
        scratch = tempfile.mkdtemp(prefix="edgegw-bench-build-")
        try:
            for round_ in range(args.cold):
                for way in ("sandboxed", "unsandboxed"):
                    data = os.path.join(scratch, f"{way}-{round_}")
                    builder = Builder(
                        data,
                        os.path.join(ROOT, "rust_sdk"),
                        cargo=find_cargo(None),
                        reactor=reactor,
                        sandbox=way == "sandboxed",
                    )
                    await builder.toolchain()
                    await compile_once(builder, "cold", way)
                    for _ in range(args.warm):
                        await compile_once(builder, "warm", way)
                    shutil.rmtree(data)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        summary = {
            way: {kind: {"median_s": round(statistics.median(v), 3), "runs": len(v)} for kind, v in kinds.items() if v}
            for way, kinds in times.items()
        }
        summary["launch_true_ms"] = launch
        print(json.dumps(summary, indent=2))

    def go(reactor):
        from twisted.internet.defer import ensureDeferred

        return ensureDeferred(run(reactor))

    task.react(go)  # exits the process when run() is done


if __name__ == "__main__":
    main()
