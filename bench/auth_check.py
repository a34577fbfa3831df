"""
What the ``auth`` policy part costs a request, in-process (no network): the
built check run on a request with a valid credential, best of 9 runs, in
microseconds of CPU per request.  The rest of a request (HTTP, the worker) is
what ``bench/cpu.py`` measures; this is what ``auth`` adds to it.

  strip_identity   the removal of forged identity fields every request pays
  api_key          one SHA-256 and one dict lookup
  jwt, remembered  a token seen before (jwt.Verifier's cache): a dict lookup
                   and the clock compared with its validity
  jwt, first time  a token verified in full: HS256 an HMAC, ES256 a P-256
                   signature, RS256 a 2048-bit RSA signature; then its claims

    .venv/bin/python bench/auth_check.py
"""

import timeit

from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from edgegw_tx.policy import auth
from edgegw_tx.policy.consumers import ConsumerKeys, generate_key, hash_key
from edgegw_tx.policy.part import PolicyContext, PolicyRequest

NOW = 1_800_000_000
CLAIMS = {"sub": "alice", "iss": "https://id.example.com", "aud": "orders-api", "iat": NOW, "exp": NOW + 3600}


def best(call, number):
    """Best of 9 runs of ``call``, in microseconds (the shortest is the least disturbed)."""
    return min(timeit.repeat(call, number=number, repeat=9)) / number * 1e6


def cost(check, headers, number):
    """Microseconds per check of a request with ``headers``."""
    assert check.check(PolicyRequest("GET", "/hello", dict(headers), "127.0.0.1"), []) is None
    return best(lambda: check.check(PolicyRequest("GET", "/hello", dict(headers), "127.0.0.1"), []), number)


def full(check, headers, number):
    """Microseconds per full verification of the token in ``headers`` (the cache bypassed)."""
    token = headers["authorization"].removeprefix("Bearer ")
    assert check.verifier.check(token)[1] is not None
    return best(lambda: check.verifier.check(token), number)


def jwt_case(alg, key, config):
    """A built jwt check and the header of a valid token for it."""
    context = PolicyContext(seconds=lambda: float(NOW))
    token = jose_jwt.encode({"alg": alg, "kid": "k1"}, dict(CLAIMS), key, algorithms=[alg])
    base = {"type": "jwt", "algorithms": [alg], "issuer": CLAIMS["iss"], "audience": CLAIMS["aud"]}
    return auth.build({**base, **config}, context), {"authorization": "Bearer " + token}


def main():
    key = generate_key()
    consumers = ConsumerKeys()
    consumers.load([{"name": "shop", "enabled": True, "key_hashes": [hash_key(key)]}])
    api_key = auth.build({"type": "api_key"}, PolicyContext(seconds=lambda: 0.0, consumers=consumers))
    secret = "s" * 32
    rsa, ec = RSAKey.generate_key(2048, {"kid": "k1"}), ECKey.generate_key("P-256", {"kid": "k1"})
    jwts = [
        ("HS256", *jwt_case("HS256", OctKey.import_key(secret), {"secret": secret})),
        ("ES256", *jwt_case("ES256", ec, {"jwks": {"keys": [ec.as_dict(private=False)]}})),
        ("RS256", *jwt_case("RS256", rsa, {"jwks": {"keys": [rsa.as_dict(private=False)]}})),
    ]
    headers = {"host": "localhost", "accept": "*/*", "user-agent": "wrk"}
    strip = best(lambda: auth.strip_identity(dict(headers)), 200_000) - best(lambda: dict(headers), 200_000)
    print("| check | µs per request |")
    print("| --- | --- |")
    print(f"| strip_identity (no identity fields sent) | {strip:.2f} |")
    print(f"| api_key | {cost(api_key, {'x-api-key': key}, 100_000):.1f} |")
    for alg, check, request_headers in jwts:
        print(f"| jwt {alg}, remembered token | {cost(check, request_headers, 100_000):.1f} |")
    for alg, check, request_headers in jwts:
        print(f"| jwt {alg}, first time (full verification) | {full(check, request_headers, 2_000):.0f} |")


if __name__ == "__main__":
    main()
