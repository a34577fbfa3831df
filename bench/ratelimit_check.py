"""
What a node-scope ``rate_limit`` costs a request, in-process (no network):
the built check run on a request, best of 9 runs, in microseconds of CPU per
request.  The rest of a request is what ``bench/cpu.py`` measures; this is
what the limit adds to it.

  allowed         one client under its limit (the common case)
  refused         one client over its limit: the 429 built
  new key, full   a new client address each time, the table at its cap (one evicted each time)

    .venv/bin/python bench/ratelimit_check.py

With ``--cluster``: a cluster-scope limit against the local Redis
(127.0.0.1:6379) over the gateway's own Redis connector, one check at a time: the wall time of each
check, p50 and p99 in microseconds, beside a bare ``PING`` on the same
connection (the round trip any Redis call pays).  Its keys are deleted at the
end.

    .venv/bin/python bench/ratelimit_check.py --cluster
"""

import sys
import time
import timeit
import uuid

from edgegw_tx.policy.part import PolicyContext, PolicyRequest
from edgegw_tx.policy.ratelimit import MAX_TRACKED_KEYS, build

ROUNDS = 100_000


class Ticking:
    """A clock that moves 1 ms per reading, so a limit of 1,000,000/s is never reached."""

    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        self.now += 0.001
        return self.now


def best(run):
    """Best of 9 runs of ROUNDS calls, µs per call."""
    return min(timeit.repeat(run, number=ROUNDS, repeat=9)) / ROUNDS * 1e6


def percentiles(samples):
    """p50 and p99 of ``samples`` (seconds), in µs."""
    ordered = sorted(samples)
    return tuple(ordered[int(len(ordered) * q)] * 1e6 for q in (0.5, 0.99))


def cluster(reactor, rounds=5_000):
    """The cluster-scope check's wall time per request against the local Redis, beside a PING."""
    from twisted.internet.defer import ensureDeferred

    from edgegw_tx.policy.ratelimit import REDIS_PREFIX, policy_hash
    from edgegw_tx.services.config import validate_config
    from edgegw_tx.services.redis import RedisConnector

    async def run():
        redis = validate_config("redis", {"host": "127.0.0.1", "pool_size": 1}, name="bench")
        connection = RedisConnector(redis, name="bench", call_timeout=5.0, reactor=reactor)
        await connection.command(["PING"])  # connected before timing
        config = {"requests": 1_000_000, "per_seconds": 1, "scope": "cluster", "redis_service": "bench"}
        context = PolicyContext(seconds=reactor.seconds, reactor=reactor, redis={"bench": connection}.get)
        identity = f"bench-{uuid.uuid4()}"
        check = build(config, context, identity)
        timings = {"PING": [], "check": []}
        try:
            for n in range(rounds):
                request = PolicyRequest("GET", "/hello", {}, f"10.0.{n >> 8 & 255}.{n & 255}")
                started = time.perf_counter()
                await connection.command(["PING"])
                timings["PING"].append(time.perf_counter() - started)
                started = time.perf_counter()
                await check.check(request, [])
                timings["check"].append(time.perf_counter() - started)
            for name, samples in timings.items():
                p50, p99 = percentiles(samples)
                print(f"{name:6} p50 {p50:6.0f} µs   p99 {p99:6.0f} µs   ({rounds} sequential)")
        finally:
            mine = await connection.command(["KEYS", REDIS_PREFIX + policy_hash(config, identity) + ":*"])
            if mine:
                await connection.command(["DEL", *mine])
            await connection.close()

    return ensureDeferred(run())


def main():
    if "--cluster" in sys.argv[1:]:
        from twisted.internet import task

        task.react(cluster)
        return
    clock = Ticking()
    baseline = best(clock)
    request = PolicyRequest("GET", "/hello", {}, "192.0.2.1")

    allowed = build({"requests": 1_000_000, "per_seconds": 1}, PolicyContext(seconds=clock))
    refused = build({"requests": 1, "per_seconds": 86_400}, PolicyContext(seconds=clock))
    refused.check(request, [])
    full = build({"requests": 1, "per_seconds": 86_400}, PolicyContext(seconds=clock))
    requests = [PolicyRequest("GET", "/hello", {}, f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
                for n in range(4 * MAX_TRACKED_KEYS)]
    for each in requests[:MAX_TRACKED_KEYS]:
        full.check(each, [])
    fresh = iter(requests[MAX_TRACKED_KEYS:] * 20)

    for name, run in [
        ("allowed", lambda: allowed.check(request, [])),
        ("refused", lambda: refused.check(request, [])),
        ("new key, full", lambda: full.check(next(fresh), [])),
    ]:
        print(f"{name:15} {best(run) - baseline:6.2f} µs")


if __name__ == "__main__":
    main()
