"""
What the ``cors`` and ``ip`` policy parts cost a request, in-process (no
network): each built check run on a request, best of 9 runs, in microseconds
of CPU per request.  The rest of a request is what ``bench/cpu.py``
measures; this is what the part adds to it.

  cors, no Origin          a same-origin or non-browser request (Vary only)
  cors, allowed Origin     a cross-origin call: the allow fields added
  cors, preflight          an allowed preflight answered 204
  ip, IPv4 / IPv6          an allowed peer, 2 CIDRs
  ip, 1,000 CIDRs          an allowed peer, 1,000 allow and 1 deny CIDRs
  ip, X-Forwarded-For      a trusted proxy's peer, two entries walked
  ip, refused              the 403 built (its body names the address)

    .venv/bin/python bench/cors_ip_check.py
"""

import timeit

from edgegw_tx.policy import cors, ipfilter
from edgegw_tx.policy.part import PolicyRequest

ROUNDS = 100_000
APP = "https://app.example.com"


def best(run):
    """Best of 9 runs of ROUNDS calls, µs per call."""
    return min(timeit.repeat(run, number=ROUNDS, repeat=9)) / ROUNDS * 1e6


def main():
    part = cors.build(
        {"allow_origins": [APP, "https://admin.example.com"], "allow_headers": ["Content-Type"],
         "expose_headers": ["X-Total-Count"], "max_age": 600}
    )
    plain = PolicyRequest("GET", "/hello", {"host": "api.example.com"}, "192.0.2.1")
    cross = PolicyRequest("GET", "/hello", {"host": "api.example.com", "origin": APP}, "192.0.2.1")
    preflight = PolicyRequest(
        "OPTIONS", "/hello",
        {"host": "api.example.com", "origin": APP, "access-control-request-method": "PUT",
         "access-control-request-headers": "content-type"},
        "192.0.2.1",
    )
    two = ipfilter.build({"allow": ["192.0.2.0/24", "2001:db8::/32"]})
    many = ipfilter.build(
        {"allow": [f"10.{i // 256}.{i % 256}.0/24" for i in range(999)] + ["192.0.2.0/24"],
         "deny": ["10.0.0.0/24"]}
    )
    proxied = ipfilter.build({"allow": ["203.0.113.0/24"], "trusted_proxies": ["192.0.2.0/24"]})
    v6 = PolicyRequest("GET", "/hello", {}, "2001:db8::1")
    forwarded = PolicyRequest("GET", "/hello", {"x-forwarded-for": "203.0.113.7, 192.0.2.9"}, "192.0.2.1")
    outsider = PolicyRequest("GET", "/hello", {}, "198.51.100.1")
    cases = {
        "cors, no Origin": lambda: part.check(plain, []),
        "cors, allowed Origin": lambda: part.check(cross, []),
        "cors, preflight": lambda: part.check(preflight, []),
        "ip, IPv4": lambda: two.check(plain, []),
        "ip, IPv6": lambda: two.check(v6, []),
        "ip, 1,000 CIDRs": lambda: many.check(plain, []),
        "ip, X-Forwarded-For": lambda: proxied.check(forwarded, []),
        "ip, refused": lambda: two.check(outsider, []),
    }
    for name, run in cases.items():
        print(f"{name:24} {best(run):5.2f} µs")


if __name__ == "__main__":
    main()
