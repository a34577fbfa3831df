"""
What a node-scope ``rate_limit`` costs a request, in-process (no network):
the built check run on a request, best of 9 runs, in microseconds of CPU per
request.  The rest of a request is what ``bench/cpu.py`` measures; this is
what the limit adds to it.  (A cluster-scope limit adds one Redis round trip,
which only a real gateway and Redis measure.)

  allowed         one client under its limit (the common case)
  refused         one client over its limit: the 429 built
  new key, full   a new client address each time, the table at its cap (one evicted each time)

    .venv/bin/python bench/ratelimit_check.py
"""

import timeit

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


def main():
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
