"""
What the service broker adds to a Redis GET.

    .venv/bin/python bench/redis_call.py [--calls 2000] [--host 127.0.0.1] [--port 6379]

Runs GET of one key, one call at a time, two ways on the same reactor:

* direct: the Redis connector alone (``RedisConnector.call("get", ...)``);
* broker: ``ServiceRegistry.call_handler(endpoint)(call_frame)``, the path a
  worker's ``call`` frame takes once it is decoded (bindings, argument checks,
  the per-call timeout, error mapping, the result dict), minus the framing.

Both use ten connections.  The two ways alternate
in blocks of 100 calls after a warm-up, so drift hits both alike.  Prints
p50/p99/mean per way and the difference, then one JSON line.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import ensureDeferred  # noqa: E402

from edgegw_tx.services.config import validate_config  # noqa: E402
from edgegw_tx.services.redis import RedisConnector  # noqa: E402
from edgegw_tx.services.registry import ServiceRegistry  # noqa: E402


def percentile(samples, fraction):
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(samples):
    return {
        "p50_us": round(percentile(samples, 0.50) * 1e6, 1),
        "p99_us": round(percentile(samples, 0.99) * 1e6, 1),
        "mean_us": round(statistics.fmean(samples) * 1e6, 1),
    }


async def main(options):
    key = f"edgegw:bench:{uuid.uuid4().hex}"
    config = validate_config("redis", {"host": options.host, "port": options.port}, name="bench")
    direct = RedisConnector(config, name="bench", call_timeout=5.0, reactor=reactor)
    registry = ServiceRegistry(tempfile.mkdtemp(prefix="edgegw-bench-"), reactor=reactor)
    registry.configure({"id": "r", "name": "cache", "service_type": "redis",
                        "config": {"host": options.host, "port": options.port}})
    registry.bind("e", "cache", "r")
    handler = registry.call_handler("e")
    frame = {"type": "call", "id": 1, "request": "bench", "service": "redis",
             "pool": "cache", "action": "get", "args": {"key": key}}
    try:
        await direct.call("set", {"key": key, "value": "x" * 32})

        async def one_direct():
            start = time.perf_counter()
            value = await direct.call("get", {"key": key})
            elapsed = time.perf_counter() - start
            assert value == "x" * 32, value
            return elapsed

        async def one_broker():
            start = time.perf_counter()
            result = await handler(frame)
            elapsed = time.perf_counter() - start
            assert result == {"ok": True, "data": "x" * 32}, result
            return elapsed

        for _ in range(300):  # warm-up: connections open, code paths hot
            await one_direct()
            await one_broker()

        samples = {"direct": [], "broker": []}
        block = 100
        while len(samples["direct"]) < options.calls:
            for name, one in (("direct", one_direct), ("broker", one_broker)):
                for _ in range(block):
                    samples[name].append(await one())
        result = {way: summary(s) for way, s in samples.items()}
        result["added_us"] = {
            k: round(result["broker"][k] - result["direct"][k], 1)
            for k in ("p50_us", "p99_us", "mean_us")
        }
        result["calls"] = len(samples["direct"])
        for way in ("direct", "broker", "added_us"):
            row = result[way]
            print(f"{way:>8}: p50 {row['p50_us']:7.1f} us   p99 {row['p99_us']:7.1f} us"
                  f"   mean {row['mean_us']:7.1f} us")
        print(json.dumps(result))
    finally:
        await direct.call("del", {"keys": [key]})
        await direct.close()
        await registry.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6379)
    options = parser.parse_args()
    outcome = []

    def run():
        d = ensureDeferred(main(options))
        d.addErrback(lambda f: outcome.append(f) or f.printTraceback())
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
    sys.exit(1 if outcome else 0)
