"""
The ``rate_limit`` part of a policy: at most ``requests`` per ``per_seconds``
for each key (a client address, a consumer, a header's value, or everyone).

The algorithm is GCRA (the generic cell rate algorithm, a leaky bucket kept as
one number per key): each key stores its *theoretical arrival time* (TAT).  A
request advances it by the emission interval ``per_seconds / requests`` and is
allowed while the TAT stays within ``per_seconds`` of now.  Why GCRA rather
than a sliding window: one integer per key (the smallest state to bound and to
keep in Redis), no boundary where a fixed window would let twice the limit
through, and an exact answer for ``Retry-After``.  Bursts: an idle key may
spend its whole budget at once (``requests`` back to back), then earns one
request back every ``per_seconds / requests``.  A key whose TAT has passed is
the same as no key, so expired entries need no cleanup: they are simply
overwritten or evicted.

Times are whole microseconds (integers), so the budget arithmetic is exact.

``scope: node`` counts in this process's memory, at most ``MAX_TRACKED_KEYS``
keys per limited route: a new key beyond it evicts the least recently counted
one, so rotating client addresses cannot grow memory.  ``scope: cluster``
counts in a Redis service with one atomic round trip (a Lua script, by
EVALSHA, loaded with EVAL after a NOSCRIPT), on Redis's own clock so that the
nodes' clocks need not agree; a store that fails or is slower than
``STORE_TIMEOUT`` lets the request through or answers 503, by
``on_store_error``, counted in ``STORE_ERRORS_METRIC``.

The ``ip`` key is ``request.client_ip``: the TCP peer's address in its
normal form, or the client the route's ``ip`` part resolved behind its
trusted proxies (it runs first and writes it there); this part has no
trusted proxies of its own and never reads ``X-Forwarded-For`` itself.

The answer headers follow draft-ietf-httpapi-ratelimit-headers-06
(``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset``).
User docs: docs/policies.md, "rate_limit".
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from edgegw_tx.observability.metrics import RATELIMIT_STORE_ERRORS
from edgegw_tx.policy.auth import CONSUMER_HEADER
from edgegw_tx.policy.part import Check, Early, PolicyContext, PolicyRequest, Problem, Verdict

__all__ = [
    "KEY_PATTERN",
    "MAX_KEY_LENGTH",
    "MAX_PER_SECONDS",
    "MAX_REQUESTS",
    "MAX_TRACKED_KEYS",
    "REDIS_PREFIX",
    "SCHEMA",
    "SCRIPT",
    "SECRETS",
    "STORE_ERRORS_METRIC",
    "STORE_TIMEOUT",
    "ClusterRateLimit",
    "KeyRule",
    "NodeRateLimit",
    "RedisLink",
    "build",
    "problems",
]

MAX_REQUESTS = 1_000_000
"""Largest ``requests``."""
MAX_PER_SECONDS = 86_400
"""Longest ``per_seconds`` (a day)."""
MAX_HEADER_NAME = 128
"""Longest header name in a ``key`` of ``header:<Name>``."""
MAX_SERVICE_NAME = 64
"""Longest ``redis_service`` (the management API's service names are no longer)."""
MAX_TRACKED_KEYS = 50_000
"""Keys one node-scope limit tracks at most (about 10 MB); beyond, the least recently seen is forgotten."""
MAX_KEY_LENGTH = 128
"""A key longer than this (a long header value) is kept as its SHA-256, so no key costs more."""
STORE_TIMEOUT = 0.25
"""Seconds a cluster-scope limit waits for Redis before ``on_store_error`` decides (requests wait far longer)."""
REDIS_PREFIX = "edgegw:rl:"
"""Prefix of every Redis key a cluster-scope limit writes."""
STORE_ERRORS_METRIC = RATELIMIT_STORE_ERRORS
"""Counter of cluster-scope checks whose Redis failed or was too slow (labels: service, on_store_error)."""

KEY_PATTERN = rf"^(ip|consumer|global|header:[!#$%&'*+.^_`|~0-9A-Za-z-]{{1,{MAX_HEADER_NAME}}})$"
"""What a ``key`` may be; a header name is an HTTP token."""

_DESCRIPTION = (
    "at most `requests` per `per_seconds` for each key; beyond: 429 with Retry-After;"
    " every answer of the route carries RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset"
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": _DESCRIPTION,
    "required": ["requests", "per_seconds"],
    "properties": {
        "requests": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_REQUESTS,
            "description": "requests allowed per key in `per_seconds`; an idle key may spend them all at once",
        },
        "per_seconds": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PER_SECONDS,
            "description": "the period in whole seconds; one request is earned back every per_seconds / requests",
        },
        "key": {
            "type": "string",
            "pattern": KEY_PATTERN,
            "default": "ip",
            "description": "what is counted: `ip` (the client address), `consumer` (the auth part's consumer;"
            " the client address without one), `header:<Name>` (that request header's value; the client address"
            " without it) or `global` (every request together)",
            "x-error": "must be ip, consumer, global or header:<Name> with a header name",
        },
        "scope": {
            "type": "string",
            "enum": ["node", "cluster"],
            "default": "node",
            "description": "`node`: counted in each gateway process's memory; `cluster`: counted in"
            " `redis_service`, one budget for every node and process",
        },
        "redis_service": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_SERVICE_NAME,
            "description": "the Redis service counting a `cluster` limit (required with it, refused with `node`)",
        },
        "on_store_error": {
            "type": "string",
            "enum": ["allow", "deny"],
            "default": "allow",
            "description": "when the Redis of a `cluster` limit fails or is slow: `allow` the request,"
            " or `deny` it with 503",
        },
    },
}

SECRETS: tuple[str, ...] = ()

SCRIPT = """\
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - tolerance > now then
  return {0, 0, next_tat - tolerance - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return {1, math.floor((tolerance - (next_tat - now)) / interval), 0, next_tat - now}
"""
"""
GCRA in one atomic step on Redis's clock.  KEYS[1]: the key; ARGV: the
emission interval and the burst tolerance, in microseconds.  Answers
``{allowed, remaining, retry_after_us, reset_us}``; the key expires when its
bucket is full again.
"""

_SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
_MICROS = 1_000_000
_JSON = ("content-type", "application/json")


class RedisLink(Protocol):
    """What a cluster-scope limit needs of a Redis service: one command, its reply."""

    def command(self, args: list[str]) -> Deferred[Any]:
        """Send ``args`` (a command and its arguments); fire with the reply, fail with the error (``NOSCRIPT ...``)."""


def problems(config: dict[str, Any]) -> list[Problem]:
    """``redis_service`` is required with ``scope: cluster`` and meaningless with ``node``."""
    cluster = config.get("scope", "node") == "cluster"
    if cluster and "redis_service" not in config:
        return [("redis_service", "is required with scope cluster (the Redis service that counts)")]
    if not cluster and "redis_service" in config:
        return [("redis_service", "is only for scope cluster (scope node counts in memory)")]
    if not cluster and "on_store_error" in config:
        return [("on_store_error", "is only for scope cluster (scope node has no store to fail)")]
    return []


class KeyRule:
    """What a request is counted under: ``key`` compiled."""

    __slots__ = ("header", "kind")

    def __init__(self, key: str) -> None:
        #: "global", "header" (consumer is the auth part's header) or "ip"
        self.kind = "header" if key == "consumer" or key.startswith("header:") else key
        self.header = CONSUMER_HEADER if key == "consumer" else key[len("header:") :].lower()

    def of(self, request: PolicyRequest) -> str:
        """The key: ``h:<value>`` of the header, else ``a:<client address>``; ``""`` for global."""
        if self.kind == "global":
            return ""
        if self.kind == "header":
            value = request.headers.get(self.header)
            if value:
                return _bounded("h:" + value)
        # The TCP peer as the transport wrote it (see the module docstring).
        return _bounded("a:" + (request.client_ip or ""))


def _bounded(key: str) -> str:
    """``key``, or its SHA-256 when longer than ``MAX_KEY_LENGTH``."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return "#" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def _count(number: int, noun: str) -> str:
    """``1 request``, ``5 requests``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _seconds(micros: int) -> int:
    """``micros`` rounded up to whole seconds."""
    return -(-micros // _MICROS)


class _Limit:
    """The numbers of one limit and the answers built from them."""

    __slots__ = ("body", "interval", "limit", "tolerance")

    def __init__(self, requests: int, per_seconds: int) -> None:
        #: microseconds between two requests at the steady rate
        self.interval = per_seconds * _MICROS // requests
        #: how far ahead of now a key's TAT may run: the whole budget
        self.tolerance = self.interval * requests
        self.limit = str(requests)
        limit = f"{_count(requests, 'request')} per {_count(per_seconds, 'second')}"
        #: the 429's body, written once
        self.body = json.dumps({"error": f"rate limit exceeded: {limit}"}).encode()

    def headers(self, extra: list[tuple[str, str]], remaining: int, reset: int) -> None:
        """Append the RateLimit-* fields (``reset`` in microseconds)."""
        extra.append(("ratelimit-limit", self.limit))
        extra.append(("ratelimit-remaining", str(remaining)))
        extra.append(("ratelimit-reset", str(_seconds(reset))))

    def refused(self, retry: int) -> Early:
        """The 429, with ``Retry-After`` (``retry`` in microseconds) in whole seconds, at least 1."""
        return 429, [_JSON, ("retry-after", str(max(1, _seconds(retry))))], self.body


class NodeRateLimit:
    """A node-scope limit: each key's TAT in this process's memory, bounded."""

    __slots__ = ("_keys", "_limit", "_seconds", "_tats")

    def __init__(self, limit: _Limit, keys: KeyRule, seconds: Callable[[], float]) -> None:
        self._limit = limit
        self._keys = keys
        self._seconds = seconds
        #: key -> TAT (µs); least recently counted first
        self._tats: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        """Keys tracked now."""
        return len(self._tats)

    def check(self, request: PolicyRequest, extra: list[tuple[str, str]]) -> Verdict:
        """Count the request under its key: None within the limit, else the 429."""
        limit = self._limit
        key = self._keys.of(request)
        now = int(self._seconds() * _MICROS)
        tats = self._tats
        tat = tats.get(key, now)
        if tat < now:
            tat = now
        next_tat = tat + limit.interval
        if next_tat - limit.tolerance > now:
            # a refused key is a busy one: keep it recent, last to be evicted
            tats.move_to_end(key)
            limit.headers(extra, 0, tat - now)
            return limit.refused(next_tat - limit.tolerance - now)
        if key in tats:
            tats.move_to_end(key)
        elif len(tats) >= MAX_TRACKED_KEYS:
            tats.popitem(last=False)
        tats[key] = next_tat
        limit.headers(extra, (limit.tolerance - (next_tat - now)) // limit.interval, next_tat - now)
        return None


class ClusterRateLimit:
    """A cluster-scope limit: one EVALSHA per request on the named Redis service."""

    __slots__ = ("_context", "_deny", "_keys", "_labels", "_limit", "_prefix", "_service")

    def __init__(self, limit: _Limit, keys: KeyRule, config: dict[str, Any], context: PolicyContext,
                 identity: str) -> None:
        if context.reactor is None:
            raise ValueError("a cluster-scope rate limit needs the context's reactor (for its store timeout)")
        self._limit = limit
        self._keys = keys
        self._context = context
        self._service: str = config["redis_service"]
        self._deny = config.get("on_store_error", "allow") == "deny"
        self._labels = {"service": self._service, "on_store_error": "deny" if self._deny else "allow"}
        self._prefix = REDIS_PREFIX + policy_hash(config, identity) + ":"

    def check(self, request: PolicyRequest, extra: list[tuple[str, str]]) -> Deferred[Verdict]:
        """Count the request in Redis; fires None within the limit, else the 429 (or 503 per ``on_store_error``)."""
        key = self._prefix + self._keys.of(request)
        args = [str(self._limit.interval), str(self._limit.tolerance)]
        try:
            link = self._link()
            answer = link.command(["EVALSHA", _SCRIPT_SHA, "1", key, *args])
            answer.addErrback(_load_script, link, ["EVAL", SCRIPT, "1", key, *args])
        except Exception:
            answer = Deferred()
            answer.errback()
        answer.addTimeout(STORE_TIMEOUT, self._context.reactor)
        decided: Deferred[Verdict] = answer.addCallback(self._decided, extra)
        return decided.addErrback(self._store_error, extra)

    def _link(self) -> RedisLink:
        """The Redis service now (looked up per request so that reconfiguring the service needs no rebuild)."""
        redis = self._context.redis
        link = None if redis is None else redis(self._service)
        if link is None:
            raise LookupError(f"no Redis service named {self._service!r}")
        result: RedisLink = link
        return result

    def _decided(self, reply: Any, extra: list[tuple[str, str]]) -> Verdict:
        """The script's answer as the verdict and headers."""
        allowed, remaining, retry, reset = (int(value) for value in reply)
        self._limit.headers(extra, remaining, reset)
        return None if allowed else self._limit.refused(retry)

    def _store_error(self, failure: Failure, extra: list[tuple[str, str]]) -> Verdict:
        """Redis failed or was slow: count it; let the request through, or 503."""
        count = self._context.count
        if count is not None:
            count(STORE_ERRORS_METRIC, self._labels)
        extra.append(("ratelimit-limit", self._limit.limit))
        if not self._deny:
            return None
        body = json.dumps({"error": "the rate limit cannot be checked now (its store is unavailable)"})
        return 503, [_JSON, ("retry-after", "1")], body.encode()


def _load_script(failure: Failure, link: RedisLink, args: list[str]) -> Deferred[Any] | Failure:
    """After NOSCRIPT (a Redis that restarted or never saw the script): the same call by EVAL, which loads it."""
    if "NOSCRIPT" not in str(failure.value):
        return failure
    return link.command(args)


def policy_hash(config: dict[str, Any], identity: str) -> str:
    """The part of a Redis key naming the limit: ``identity`` and what is counted, hashed (16 hex digits)."""
    counted = [identity, config["requests"], config["per_seconds"], config.get("key", "ip")]
    return hashlib.sha256(json.dumps(counted).encode()).hexdigest()[:16]


def build(config: dict[str, Any], context: PolicyContext, identity: str = "") -> Check:
    """
    The ``rate_limit`` part of a route.  ``identity`` names what the limit
    belongs to (the record whose policy it is): two routes with the same
    identity and numbers share a cluster budget; node-scope budgets are per
    built check.
    """
    limit = _Limit(int(config["requests"]), int(config["per_seconds"]))
    keys = KeyRule(config.get("key", "ip"))
    if config.get("scope", "node") == "cluster":
        return ClusterRateLimit(limit, keys, config, context, identity)
    return NodeRateLimit(limit, keys, context.seconds)
