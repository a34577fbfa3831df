"""
``auth`` with ``type: jwt``: a bearer token verified with joserfc.

The configuration names the algorithms it accepts and one kind of key for
all of them: a ``secret`` for the HMAC family (HS*), or an inline JWK set
(``jwks``) of public keys for the signature families (RS*, PS*, ES*, EdDSA,
Ed25519).  Never both, so a token cannot make the gateway use an RSA public
key as an HMAC secret (the classic algorithm confusion).  At request time
the token's ``alg`` must be one of ``algorithms`` and fit the key chosen by
its ``kid``; ``none`` is never in ``algorithms`` (the schema's enum leaves it
out).  Keys are parsed once, in ``build``; a new token costs one signature
check and one claims check on the clock the gateway injects, a token seen
before a dict lookup (``Verifier``).  This module knows nothing of HTTP:
``auth.py`` reads the header, answers the 401 and sets the identity.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key, OctKey, import_key
from joserfc.jws import JWSRegistry, extract_compact, validate_compact
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from edgegw_tx.policy.part import Problem

__all__ = [
    "ALGORITHMS",
    "DEFAULT_LEEWAY",
    "HMAC_ALGORITHMS",
    "MAX_CLAIM_VALUE",
    "MAX_JWKS_KEYS",
    "MAX_LEEWAY",
    "MAX_SECRET",
    "MIN_SECRET_BYTES",
    "TOKEN_CACHE_SIZE",
    "Verified",
    "Verifier",
    "build",
    "problems",
]

KEY_TYPES: Mapping[str, str] = {
    "HS256": "oct", "HS384": "oct", "HS512": "oct",
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
    "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
    "ES256": "EC", "ES384": "EC", "ES512": "EC",
    "EdDSA": "OKP", "Ed25519": "OKP",
}  # fmt: skip
"""Each accepted algorithm → the JWK key type (``kty``) it verifies with."""
ALGORITHMS = tuple(KEY_TYPES)
"""The algorithms a policy may accept (``none`` is not one of them)."""
HMAC_ALGORITHMS = frozenset(alg for alg, kty in KEY_TYPES.items() if kty == "oct")
"""The algorithms verified with ``secret``; every other one with ``jwks``."""
MIN_SECRET_BYTES = 32
"""An HMAC secret's least length: 256 bits, the output size of HS256 (RFC 7518, section 3.2)."""
MAX_SECRET = 1024
"""An HMAC secret's greatest length, in characters."""
MAX_JWKS_KEYS = 16
"""The most keys an inline JWK set may hold (a rotation needs two or three)."""
MAX_CLAIM_VALUE = 1024
"""The longest ``issuer`` or ``audience``."""
DEFAULT_LEEWAY = 30
"""Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat`` unless ``leeway_seconds`` says otherwise."""
MAX_LEEWAY = 3600
"""The greatest ``leeway_seconds``."""
TOKEN_CACHE_SIZE = 4096
"""The most verified tokens a route's check remembers (``Verifier``)."""
_PUBLIC_MEMBERS = ("kty", "kid", "use", "alg", "key_ops", "n", "e", "crv", "x", "y", "x5c", "x5t", "x5t#S256", "x5u")

JWK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A public key as a JWK (RFC 7517): RSA, EC or OKP (Ed25519).",
    "required": ["kty"],
    # Any other member is refused, in words that cover a private key's too (d, p, q, ...).
    "additionalProperties": {
        "not": {},
        "x-error": "is not a member of a public JWK: give the public key only, with " + ", ".join(_PUBLIC_MEMBERS),
    },
    "properties": {
        "kty": {"type": "string", "enum": ["RSA", "EC", "OKP"], "description": "The key type."},
        "kid": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "description": "The key id a token names in its header; needed when the set has more than one key.",
        },
        "use": {"type": "string", "enum": ["sig"], "description": "The key's use: signatures."},
        "alg": {
            "type": "string",
            "enum": [alg for alg in ALGORITHMS if alg not in HMAC_ALGORITHMS],
            "description": "The one algorithm this key verifies, when given.",
        },
        "key_ops": {"type": "array", "items": {"type": "string"}, "description": "The key's operations."},
        **{
            name: {"type": "string", "description": f"The JWK member '{name}' (base64url)."}
            for name in ("n", "e", "crv", "x", "y", "x5t", "x5t#S256", "x5u")
        },
        "x5c": {"type": "array", "items": {"type": "string"}, "description": "The key's X.509 certificate chain."},
    },
}
"""One key of ``jwks``: public members only (a private member is refused like any other)."""

JWKS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The public keys tokens are verified with, as an inline JWK set (RFC 7517): for RS*, PS*, ES*, EdDSA and Ed25519.",
    "required": ["keys"],
    "additionalProperties": False,
    "properties": {
        "keys": {"type": "array", "minItems": 1, "maxItems": MAX_JWKS_KEYS, "items": JWK_SCHEMA},
    },
}
"""The ``jwks`` field."""

PROPERTIES: dict[str, Any] = {
    "algorithms": {
        "type": "array",
        "minItems": 1,
        "maxItems": len(ALGORITHMS),
        "uniqueItems": True,
        "items": {"type": "string", "enum": list(ALGORITHMS)},
        "description": "jwt: the algorithms a token may be signed with; HS* need 'secret', the others 'jwks'.",
    },
    "issuer": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_CLAIM_VALUE,
        "description": "jwt: when given, a token's 'iss' claim must be this.",
    },
    "audience": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_CLAIM_VALUE,
        "description": "jwt: when given, a token's 'aud' claim must be or include this.",
    },
    "jwks": JWKS_SCHEMA,
    "secret": {
        "type": "string",
        "minLength": MIN_SECRET_BYTES,
        "maxLength": MAX_SECRET,
        "x-error": f"must be a string of {MIN_SECRET_BYTES} to {MAX_SECRET} characters",
        "description": f"jwt: the HMAC secret of HS256, HS384 and HS512, at least {MIN_SECRET_BYTES} characters; masked in answers.",
    },
    "leeway_seconds": {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_LEEWAY,
        "default": DEFAULT_LEEWAY,
        "description": "jwt: seconds of clock skew allowed when checking 'exp', 'nbf' and 'iat'.",
    },
}
"""The fields of ``auth`` that only ``type: jwt`` has (``auth.SCHEMA`` holds them)."""


def _keys(jwks: Mapping[str, Any]) -> tuple[list[Key], list[Problem]]:
    """The keys of a JWK set, and the problems of the ones that are no public key."""
    keys: list[Key] = []
    found: list[Problem] = []
    for index, data in enumerate(jwks["keys"]):
        field = f"jwks.keys[{index}]"
        try:
            key = import_key(dict(data))
        except (JoseError, ValueError, TypeError) as e:
            found.append((field, f"is not a usable {data.get('kty')} key ({type(e).__name__})"))
            continue
        if key.is_private:
            found.append((field, "is a private key: give the public key only"))
            continue
        keys.append(key)
    return keys, found


def problems(config: Mapping[str, Any]) -> list[Problem]:
    """What the schema cannot say of a ``jwt`` config: which key for which algorithm."""
    found: list[Problem] = []
    if "algorithms" not in config:
        return [("algorithms", "is required with type 'jwt'")]
    algorithms: Sequence[str] = config["algorithms"]
    has_secret, has_jwks = "secret" in config, "jwks" in config
    if has_secret and has_jwks:
        return [("secret", "and 'jwks' cannot both be given: HS* algorithms use 'secret', the others 'jwks'")]
    if not has_secret and not has_jwks:
        return [("jwks", "or 'secret' is required with type 'jwt'")]
    for index, alg in enumerate(algorithms):
        if alg in HMAC_ALGORITHMS and not has_secret:
            found.append((f"algorithms[{index}]", f"'{alg}' is an HMAC algorithm: it needs 'secret', not 'jwks'"))
        elif alg not in HMAC_ALGORITHMS and not has_jwks:
            found.append((f"algorithms[{index}]", f"'{alg}' is a public-key algorithm: it needs 'jwks', not 'secret'"))
    if found or not has_jwks:
        return found
    keys, found = _keys(config["jwks"])
    kids = [key.kid for key in keys]
    if len(config["jwks"]["keys"]) > 1 and None in kids:
        found.append(("jwks.keys", "every key needs a 'kid' when the set has more than one"))
    for kid in {kid for kid in kids if kid is not None and kids.count(kid) > 1}:
        found.append(("jwks.keys", f"the kid '{kid}' is given to more than one key"))
    for index, alg in enumerate(algorithms):
        if keys and not any(_fits(key, alg) for key in keys):
            found.append((f"algorithms[{index}]", f"no key in 'jwks' verifies '{alg}'"))
    return found


def _fits(key: Key, alg: str) -> bool:
    """Whether ``key`` may verify a token signed with ``alg`` (its type, and its own ``alg`` if it names one)."""
    return key.key_type == KEY_TYPES[alg] and (key.alg is None or key.alg == alg)


@dataclass(frozen=True, slots=True)
class Verified:
    """What a valid token tells the handler, and the times it stays valid in."""

    #: the ``sub`` claim, when it is a string
    subject: str | None
    #: every claim, as JSON (ASCII)
    claims: str
    #: valid while the clock (whole seconds) is below this: ``exp`` + leeway
    until: float
    #: and at or above this: the later of ``nbf`` and ``iat``, less the leeway
    since: float


def _verified(claims: dict[str, Any], leeway: int) -> Verified:
    """The ``Verified`` of claims that passed the checks (``exp`` is required, so present)."""
    subject = claims.get("sub")
    starts = [value for value in (claims.get("nbf"), claims.get("iat")) if isinstance(value, (int, float))]
    return Verified(
        subject if isinstance(subject, str) else None,
        json.dumps(claims, separators=(",", ":"), ensure_ascii=True),
        float(claims["exp"]) + leeway,
        (max(starts) - leeway) if starts else float("-inf"),
    )


class Verifier:
    """
    Tokens verified against the keys parsed at build, on the injected clock.

    A client sends the same token on request after request, so a verified
    token is remembered (up to ``TOKEN_CACHE_SIZE``, the oldest forgotten
    first): the next request with the very same string pays a dict lookup
    and a comparison of the clock with the times the token is valid in, not a
    signature check.  Only a token that passed every check is remembered, so
    a client cannot fill the cache without valid tokens, and any change to a
    token makes another string, which is verified in full.
    """

    def __init__(
        self,
        keys: dict[str | None, Key],
        algorithms: frozenset[str],
        claims: JWTClaimsRegistry,
        seconds: Callable[[], float],
        leeway: int,
        cache_size: int = TOKEN_CACHE_SIZE,
    ) -> None:
        #: key id → key; the one key of a set without ``kid`` (or the secret) is under None
        self.keys = keys
        #: the key of a token that names no ``kid``: the only key, when there is one
        self.only = next(iter(keys.values())) if len(keys) == 1 else None
        self.algorithms = algorithms
        #: one registry per algorithm: joserfc then accepts exactly the token's checked ``alg``
        self.registries = {alg: JWSRegistry(algorithms=[alg]) for alg in algorithms}
        self.claims = claims
        self.seconds = seconds
        self.leeway = leeway
        self.cache_size = cache_size
        #: token → what it verified to; insertion order is age
        self.cache: dict[str, Verified] = {}

    def verify(self, token: str) -> tuple[str, Verified | None]:
        """``("", verified)`` of a valid token, or ``(what is wrong, None)``; never the token in the words."""
        known = self.cache.get(token)
        if known is not None:
            now = int(self.seconds())
            if known.since <= now < known.until:
                return "", known
            del self.cache[token]
        problem, claims = self.check(token)
        if claims is None:
            return problem, None
        verified = _verified(claims, self.leeway)
        if len(self.cache) >= self.cache_size:
            del self.cache[next(iter(self.cache))]
        self.cache[token] = verified
        return "", verified

    def check(self, token: str) -> tuple[str, dict[str, Any] | None]:
        """``("", claims)`` of a token verified in full, or ``(what is wrong, None)``."""
        try:
            signed = extract_compact(token.encode("ascii"))
            header = signed.headers()
        except (JoseError, ValueError, TypeError, UnicodeError):
            return "the token is not a signed JWT (JWS compact serialization)", None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            return "the token's algorithm is not one this API accepts", None
        kid = header.get("kid")
        if isinstance(kid, str):
            key = self.keys.get(kid) or self.keys.get(None)
        else:
            key = self.only
        if key is None:
            return "the token's key id (kid) names no key this API knows", None
        if not _fits(key, alg):
            return "the token's algorithm does not fit its key", None
        try:
            if not validate_compact(signed, key, registry=self.registries[alg]):
                return "the token's signature does not verify", None
        except BadSignatureError:
            return "the token's signature does not verify", None
        except (JoseError, ValueError, TypeError):
            return "the token's header or key is not valid", None
        try:
            claims = json.loads(signed.payload or b"")
        except ValueError:
            claims = None
        if not isinstance(claims, dict):
            return "the token's claims are not a JSON object", None
        try:
            self.claims.validate(claims)
        except ExpiredTokenError:
            return "the token has expired", None
        except MissingClaimError as e:
            return f"the token has no '{_claim_names(e)}' claim", None
        except InvalidClaimError as e:
            return _invalid_claim(e), None
        return "", claims


_CLAIM_WORDS = {
    "iss": "the token's issuer (iss) is not the one this API accepts",
    "aud": "the token's audience (aud) does not include this API",
    "nbf": "the token is not valid yet (nbf)",
    "iat": "the token was issued in the future (iat)",
    "exp": "the token's expiry (exp) is not a NumericDate",
    "sub": "the token's subject (sub) is not a string",
}


def _claim_names(error: ClaimError) -> str:
    """The claim names a joserfc claim error is about (its ``claim``)."""
    return error.claim


def _invalid_claim(error: InvalidClaimError) -> str:
    """Words for an invalid claim, from the claim's name only (its value is the client's)."""
    return _CLAIM_WORDS.get(_claim_names(error), "a claim of the token is not valid")


def build(config: Mapping[str, Any], seconds: Callable[[], float], cache_size: int = TOKEN_CACHE_SIZE) -> Verifier:
    """The verifier of a config that passed the schema and ``problems``; ``seconds`` is the clock."""
    keys: dict[str | None, Key] = {}
    if "secret" in config:
        keys[None] = OctKey.import_key(config["secret"])
    else:
        parsed, _ = _keys(config["jwks"])
        for key in parsed:
            keys[key.kid] = key
    options: dict[str, ClaimsOption] = {"exp": {"essential": True}}
    if "issuer" in config:
        options["iss"] = {"essential": True, "value": config["issuer"]}
    if "audience" in config:
        options["aud"] = {"essential": True, "value": config["audience"]}
    leeway = int(config.get("leeway_seconds", DEFAULT_LEEWAY))
    claims = JWTClaimsRegistry(now=lambda: int(seconds()), leeway=leeway, **options)
    return Verifier(keys, frozenset(config["algorithms"]), claims, seconds, leeway, cache_size)
