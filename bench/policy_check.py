"""
What a route's compiled policy (``edgegw_tx.policy.model.compile``) costs a
request, in-process: microseconds of CPU per request, best of 9 runs.  Each
part's own cost is in its bench (``auth_check.py``, ``cors_ip_check.py``,
``ratelimit_check.py``); this is what putting them together adds, and the
whole chain on a request every part lets through.

  limits alone        LimitsCheck.check called directly (one comparison)
  policy: limits      the same through CompiledPolicy.check: the difference
                      is the chain's own cost
  policy: all parts   cors (an allowed origin), ip (a deny list), auth
                      (api_key), rate_limit (node scope, never hit), limits

A route with no policy has no compiled policy (``compile`` gives None) and
pays nothing of this.

    .venv/bin/python bench/policy_check.py
"""

import timeit

from edgegw_tx.policy import limits, model
from edgegw_tx.policy.consumers import ConsumerKeys, generate_key, hash_key
from edgegw_tx.policy.part import PolicyContext, PolicyRequest

NUMBER = 200_000


def best(call):
    """Best of 9 runs of ``call``, in microseconds (the shortest is the least disturbed)."""
    return min(timeit.repeat(call, number=NUMBER, repeat=9)) / NUMBER * 1e6


def main():
    key = generate_key()
    consumers = ConsumerKeys()
    consumers.load([{"name": "shop", "enabled": True, "key_hashes": [hash_key(key)]}])
    context = PolicyContext(seconds=lambda: 0.0, consumers=consumers)
    headers = {"host": "localhost", "origin": "https://app.example.com", "x-api-key": key}

    def request():
        return PolicyRequest("POST", "/orders", dict(headers), "192.0.2.7", 100)

    def compiled(policy):
        result = model.compile(model.effective(model.validate(policy, "endpoint"), None, None), context)
        assert result is not None and result.check(request(), []) is None
        return result

    only_limits = compiled({"limits": {"max_body": 1024}})
    everything = compiled(
        {
            "cors": {"allow_origins": ["https://app.example.com"]},
            "ip": {"deny": ["10.0.0.0/8", "2001:db8::/32"]},
            "auth": {"type": "api_key"},
            "rate_limit": {"requests": 1_000_000, "per_seconds": 1},
            "limits": {"max_body": 1024},
        }
    )
    direct = limits.build({"max_body": 1024}, context)
    making = best(request)
    print("| check | µs per request |")
    print("| --- | --- |")
    print(f"| limits alone | {best(lambda: direct.check(request(), [])) - making:.2f} |")
    print(f"| policy: limits | {best(lambda: only_limits.check(request(), [])) - making:.2f} |")
    print(f"| policy: all parts | {best(lambda: everything.check(request(), [])) - making:.1f} |")


if __name__ == "__main__":
    main()
