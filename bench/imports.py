"""
Benchmark: POST /api/import/openapi of a generated spec, end to end.

Runs a real ``GatewayRuntime`` in this process (real reactor, thread pool,
SQLite store, HTTP on 127.0.0.1 port 0), imports a generated YAML spec of
``--operations`` operations (first import: every endpoint created; second:
every endpoint unchanged), and prints the wall time of each call and of
parsing and validating the spec alone. No cargo run is involved.

    .venv/bin/python bench/imports.py [--operations 50] [--rounds 5]
"""

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def generated_spec(operations):
    """A valid OpenAPI 3.0 YAML spec with ``operations`` operations (GET and DELETE per path)."""
    lines = [
        "openapi: 3.0.3",
        "info: {title: Generated, version: '1.0'}",
        "servers: [{url: 'https://api.example.com/v1'}]",
        "paths:",
    ]
    for i in range((operations + 1) // 2):
        lines += [
            f"  /items{i}/{{id}}:",
            "    parameters: [{name: id, in: path, required: true, schema: {type: string}}]",
            "    get:",
            f"      operationId: getItem{i}",
            f"      summary: Read item kind {i}",
            "      responses:",
            "        '200':",
            "          description: the item",
            "          content: {application/json: {schema: {$ref: '#/components/schemas/Item'}}}",
        ]
        if 2 * i + 1 < operations:
            lines += [
                "    delete:",
                f"      operationId: deleteItem{i}",
                "      responses: {'204': {description: deleted}}",
            ]
    lines += [
        "components:",
        "  schemas:",
        "    Item: {type: object, properties: {id: {type: string}, name: {type: string}}}",
    ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--operations", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    import treq
    from edgegw_tx.admin.imports import load_spec
    from edgegw_tx.runtime import GatewayRuntime

    spec = generated_spec(args.operations)
    timings = {"parse and validate": [], "first import": [], "re-import": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        _, ops = load_spec(spec)
        timings["parse and validate"].append(time.perf_counter() - start)
    assert len(ops) == args.operations, len(ops)

    async def run():
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as data_dir:
                runtime = GatewayRuntime(
                    data_dir,
                    "tcp:0:interface=127.0.0.1",
                    "tcp:0:interface=127.0.0.1",
                    sdk_path=os.path.join(ROOT, "rust_sdk"),
                )
                await runtime.startService()
                try:
                    _, admin = await runtime.ports()
                    url = "http://127.0.0.1:%d/api/import/openapi" % admin.getHost().port
                    with open(os.path.join(data_dir, "admin.key")) as f:
                        headers = {"Authorization": "Bearer " + f.read().strip()}
                    for label, key in (("first import", "created"), ("re-import", "unchanged")):
                        start = time.perf_counter()
                        response = await treq.post(url, json={"spec": spec}, headers=headers)
                        document = await response.json()
                        timings[label].append(time.perf_counter() - start)
                        assert response.code == 200, document
                        assert len(document["data"][key]) == args.operations, document
                finally:
                    await runtime.stopService()

    failures = []

    def done(result):
        if hasattr(result, "getTraceback"):
            failures.append(result.getTraceback())
        reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(run()).addBoth(done))
    reactor.run()
    if failures:
        print(failures[0], file=sys.stderr)
        sys.exit(1)
    summary = {
        label: {"best_ms": round(min(values) * 1000, 1), "median_ms": round(sorted(values)[len(values) // 2] * 1000, 1)}
        for label, values in timings.items()
    }
    print(json.dumps({"operations": args.operations, "spec_bytes": len(spec), "rounds": args.rounds, **summary}, indent=2))


if __name__ == "__main__":
    main()
