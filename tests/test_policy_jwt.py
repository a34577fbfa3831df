"""
``auth`` with ``type: jwt`` (edgegw_tx/policy/jwt.py, auth.py): tokens signed
by joserfc with RS256, ES256 and HS256 on a fake clock; every way a token is
bad is a 401 with the RFC 6750 challenge naming the problem; a good one sets
the identity fields; and the configurations that would allow algorithm
confusion are refused with a 400 naming the field.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from typing import Any

from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey
from twisted.internet.task import Clock
from twisted.trial import unittest

from edgegw_tx.policy import auth, jwt, model
from edgegw_tx.policy.part import PolicyContext, PolicyRequest

NOW = 1_800_000_000
SECRET = "s" * jwt.MIN_SECRET_BYTES
ISSUER = "https://id.example.com"
AUDIENCE = "orders-api"


@functools.cache
def rsa_key(kid: str = "rsa-1") -> RSAKey:
    """An RSA key pair, made once per test run."""
    return RSAKey.generate_key(2048, {"kid": kid})


@functools.cache
def ec_key() -> ECKey:
    """A P-256 key pair, made once per test run."""
    return ECKey.generate_key("P-256", {"kid": "ec-1"})


def public(key: Key) -> dict[str, Any]:
    """The public JWK of ``key``."""
    return dict(key.as_dict(private=False))


def b64(data: bytes) -> str:
    """base64url without padding, as JWS writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims at NOW, changed by ``changes`` (None removes a claim)."""
    value = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": NOW - 10, "exp": NOW + 300, "scope": "read"}
    value.update(changes)
    return {name: v for name, v in value.items() if v is not None}


def sign(key: Any, alg: str, payload: dict[str, Any], kid: str | None = None) -> str:
    """A token signed by joserfc."""
    header = {"alg": alg} if kid is None else {"alg": alg, "kid": kid}
    if isinstance(key, str):
        key = OctKey.import_key(key)
    return jose_jwt.encode(header, payload, key, algorithms=[alg])


def rs256_config(**changes: Any) -> dict[str, Any]:
    """A jwt config for RS256 and ES256 with both public keys, the issuer and the audience."""
    config = {
        "type": "jwt",
        "algorithms": ["RS256", "ES256"],
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks": {"keys": [public(rsa_key()), public(ec_key())]},
    }
    config.update(changes)
    return config


class JwtCheckTests(unittest.TestCase):
    """Tokens on requests."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.context = PolicyContext(seconds=self.clock.seconds)

    def run_check(self, config: dict[str, Any], token: str | None, scheme: str = "Bearer ") -> tuple[Any, PolicyRequest]:
        """The verdict of ``config`` (validated, built) on a request carrying ``token``, and the request after."""
        model.validate({"auth": config}, "endpoint")
        built = auth.build(config, self.context)
        headers = {"accept": "*/*"} if token is None else {"authorization": scheme + token}
        req = PolicyRequest("GET", "/orders", headers, "192.0.2.1")
        return built.check(req, []), req

    def assertRefused(self, verdict: Any, words: str, token: str | None = None) -> None:
        """``verdict`` is a 401 whose Bearer challenge and JSON error say ``words``, without the token."""
        self.assertIsInstance(verdict, tuple)
        status, headers, body = verdict
        self.assertEqual(status, 401)
        error = json.loads(body)["error"]
        self.assertIn(words, error)
        challenge = dict(headers)["www-authenticate"]
        self.assertEqual(
            challenge, f'Bearer realm="edgegw", error="invalid_token", error_description="{error}"'
        )
        if token:
            self.assertNotIn(token.encode(), body)
            self.assertNotIn(token, challenge)

    def refused(self, config: dict[str, Any], token: str, words: str) -> PolicyRequest:
        """Check that ``token`` is refused with ``words``; the request after (no identity set)."""
        verdict, req = self.run_check(config, token)
        self.assertRefused(verdict, words, token)
        for name in auth.IDENTITY_HEADERS:
            self.assertNotIn(name, req.headers)
        return req

    def test_good_rs256(self) -> None:
        """A valid RS256 token goes on with its sub as subject and consumer and its claims as JSON."""
        token = sign(rsa_key(), "RS256", claims(), kid="rsa-1")
        verdict, req = self.run_check(rs256_config(), token)
        self.assertIsNone(verdict)
        self.assertEqual(req.headers[auth.SUBJECT_HEADER], "alice")
        self.assertEqual(req.headers[auth.CONSUMER_HEADER], "alice")
        self.assertEqual(json.loads(req.headers[auth.CLAIMS_HEADER]), claims())
        self.assertEqual(req.headers["authorization"], "Bearer " + token)

    def test_good_es256(self) -> None:
        """A valid ES256 token, its key chosen by kid from the same set, goes on."""
        token = sign(ec_key(), "ES256", claims(), kid="ec-1")
        verdict, req = self.run_check(rs256_config(), token)
        self.assertIsNone(verdict)
        self.assertEqual(req.headers[auth.SUBJECT_HEADER], "alice")

    def test_good_hs256(self) -> None:
        """A valid HS256 token signed with the configured secret goes on."""
        config = {"type": "jwt", "algorithms": ["HS256"], "secret": SECRET}
        verdict, req = self.run_check(config, sign(SECRET, "HS256", claims()))
        self.assertIsNone(verdict)
        self.assertEqual(req.headers[auth.SUBJECT_HEADER], "alice")

    def test_good_ed25519(self) -> None:
        """A valid token signed with an Ed25519 key (alg Ed25519, RFC 9864) goes on."""
        key = OKPKey.generate_key("Ed25519", {"kid": "ed-1"})
        config = {"type": "jwt", "algorithms": ["Ed25519"], "jwks": {"keys": [public(key)]}}
        verdict, req = self.run_check(config, sign(key, "Ed25519", claims(), kid="ed-1"))
        self.assertIsNone(verdict)
        self.assertEqual(req.headers[auth.SUBJECT_HEADER], "alice")

    def test_one_key_without_kid(self) -> None:
        """A set of one key without kid verifies tokens that name no kid."""
        key = RSAKey.generate_key(2048)
        config = rs256_config(algorithms=["RS256"], jwks={"keys": [public(key)]})
        verdict, _ = self.run_check(config, sign(key, "RS256", claims()))
        self.assertIsNone(verdict)

    def test_one_key_token_without_kid(self) -> None:
        """A token naming no kid is verified by the set's only key, even one with a kid; with two keys it is refused."""
        config = rs256_config(algorithms=["RS256"], jwks={"keys": [public(rsa_key())]})
        verdict, _ = self.run_check(config, sign(rsa_key(), "RS256", claims()))
        self.assertIsNone(verdict)
        self.refused(rs256_config(), sign(rsa_key(), "RS256", claims()), "key id (kid) names no key")

    def test_no_sub(self) -> None:
        """A valid token without sub sets only the claims (no subject, no consumer)."""
        verdict, req = self.run_check(rs256_config(), sign(rsa_key(), "RS256", claims(sub=None), kid="rsa-1"))
        self.assertIsNone(verdict)
        self.assertNotIn(auth.SUBJECT_HEADER, req.headers)
        self.assertNotIn(auth.CONSUMER_HEADER, req.headers)
        self.assertIn(auth.CLAIMS_HEADER, req.headers)

    def test_forged_identity_replaced(self) -> None:
        """Identity fields sent by the client, stripped then checked, hold the token's values only."""
        config = rs256_config()
        built = auth.build(config, self.context)
        token = sign(rsa_key(), "RS256", claims(sub=None), kid="rsa-1")
        headers = {"authorization": "Bearer " + token, **{name: "forged" for name in auth.IDENTITY_HEADERS}}
        req = PolicyRequest("GET", "/orders", headers, "192.0.2.1")
        auth.strip_identity(req.headers)
        self.assertIsNone(built.check(req, []))
        self.assertNotIn(auth.CONSUMER_HEADER, req.headers)
        self.assertNotIn("forged", req.headers[auth.CLAIMS_HEADER])

    def test_missing(self) -> None:
        """No token is a 401 with a bare Bearer challenge (RFC 6750 3.1) and a body saying what to send."""
        verdict, _ = self.run_check(rs256_config(), None)
        status, headers, body = verdict
        self.assertEqual(status, 401)
        self.assertEqual(dict(headers)["www-authenticate"], 'Bearer realm="edgegw"')
        self.assertIn("missing token: send 'Bearer <token>' in the Authorization header", json.loads(body)["error"])

    def test_not_bearer(self) -> None:
        """An Authorization of another scheme is refused naming the expected form."""
        verdict, _ = self.run_check(rs256_config(), "dXNlcjpwYXNz", scheme="Basic ")
        self.assertRefused(verdict, "must be 'Bearer <token>'")

    def test_configured_header(self) -> None:
        """With another ``header`` the bare token is read from it."""
        config = rs256_config(header="X-Token")
        model.validate({"auth": config}, "endpoint")
        built = auth.build(config, self.context)
        token = sign(rsa_key(), "RS256", claims(), kid="rsa-1")
        req = PolicyRequest("GET", "/", {"x-token": token}, None)
        self.assertIsNone(built.check(req, []))
        self.assertEqual(req.headers[auth.SUBJECT_HEADER], "alice")

    def test_expired(self) -> None:
        """A token expired longer ago than the leeway is refused as expired; within the leeway it goes on."""
        self.refused(rs256_config(), sign(rsa_key(), "RS256", claims(exp=NOW - 31), kid="rsa-1"), "expired")
        verdict, _ = self.run_check(rs256_config(), sign(rsa_key(), "RS256", claims(exp=NOW - 29), kid="rsa-1"))
        self.assertIsNone(verdict)
        config = rs256_config(leeway_seconds=0)
        self.refused(config, sign(rsa_key(), "RS256", claims(exp=NOW - 1), kid="rsa-1"), "expired")

    def test_expires_on_the_clock(self) -> None:
        """The injected clock decides: a token good now is refused once the clock passes exp and the leeway."""
        config = rs256_config()
        built = auth.build(config, self.context)
        token = sign(rsa_key(), "RS256", claims(), kid="rsa-1")
        self.assertIsNone(built.check(PolicyRequest("GET", "/", {"authorization": "Bearer " + token}, None), []))
        self.clock.advance(300 + jwt.DEFAULT_LEEWAY)
        verdict = built.check(PolicyRequest("GET", "/", {"authorization": "Bearer " + token}, None), [])
        self.assertRefused(verdict, "expired", token)

    def test_verified_tokens_remembered_and_bounded(self) -> None:
        """A verified token is remembered (checked again it is the same entry); at most cache_size, the oldest forgotten."""
        config = {"type": "jwt", "algorithms": ["HS256"], "secret": SECRET}
        verifier = jwt.build(config, self.clock.seconds, cache_size=2)
        tokens = [sign(SECRET, "HS256", claims(sub=f"user{i}")) for i in range(3)]
        _, first = verifier.verify(tokens[0])
        self.assertIs(verifier.verify(tokens[0])[1], first)
        for token in tokens[1:]:
            self.assertIsNotNone(verifier.verify(token)[1])
        self.assertEqual(list(verifier.cache), tokens[1:])
        self.assertEqual(verifier.verify("garbage")[1], None)
        self.assertEqual(list(verifier.cache), tokens[1:])

    def test_remembered_token_rechecked_on_the_clock(self) -> None:
        """A remembered token past exp and the leeway is refused as expired and forgotten."""
        verifier = jwt.build({"type": "jwt", "algorithms": ["HS256"], "secret": SECRET}, self.clock.seconds)
        token = sign(SECRET, "HS256", claims(exp=NOW + 10))
        self.assertIsNotNone(verifier.verify(token)[1])
        self.clock.advance(10 + jwt.DEFAULT_LEEWAY - 1)
        self.assertIsNotNone(verifier.verify(token)[1])
        self.clock.advance(1)
        self.assertEqual(verifier.verify(token), ("the token has expired", None))
        self.assertEqual(verifier.cache, {})

    def test_no_exp(self) -> None:
        """A token without exp is refused (a token valid for ever is not accepted)."""
        self.refused(rs256_config(), sign(rsa_key(), "RS256", claims(exp=None), kid="rsa-1"), "no 'exp' claim")

    def test_not_yet_valid(self) -> None:
        """A token whose nbf is beyond now and the leeway is refused as not valid yet."""
        self.refused(rs256_config(), sign(rsa_key(), "RS256", claims(nbf=NOW + 31), kid="rsa-1"), "not valid yet")

    def test_issued_in_the_future(self) -> None:
        """A token whose iat is beyond now and the leeway is refused."""
        self.refused(rs256_config(), sign(rsa_key(), "RS256", claims(iat=NOW + 600), kid="rsa-1"), "issued in the future")

    def test_wrong_issuer(self) -> None:
        """Another issuer, or none when one is configured, is refused naming the issuer."""
        self.refused(rs256_config(), sign(rsa_key(), "RS256", claims(iss="https://evil.example"), kid="rsa-1"), "issuer (iss)")
        self.refused(rs256_config(), sign(rsa_key(), "RS256", claims(iss=None), kid="rsa-1"), "no 'iss' claim")

    def test_wrong_audience(self) -> None:
        """Another audience is refused; a list holding the configured one goes on."""
        self.refused(rs256_config(), sign(rsa_key(), "RS256", claims(aud="billing"), kid="rsa-1"), "audience (aud)")
        verdict, _ = self.run_check(rs256_config(), sign(rsa_key(), "RS256", claims(aud=["billing", AUDIENCE]), kid="rsa-1"))
        self.assertIsNone(verdict)

    def test_alg_none(self) -> None:
        """An unsigned token (alg none) is refused, whatever the configured algorithms."""
        token = b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(json.dumps(claims()).encode()) + "."
        self.refused(rs256_config(), token, "algorithm is not one this API accepts")
        config = {"type": "jwt", "algorithms": ["HS256"], "secret": SECRET}
        self.refused(config, token, "algorithm is not one this API accepts")

    def test_hs_rs_confusion(self) -> None:
        """An HS256 token MACed with the RSA public key's PEM is refused: HS256 is not accepted with jwks."""
        pem = rsa_key().as_pem(private=False)
        signing_input = b64(b'{"alg":"HS256","typ":"JWT","kid":"rsa-1"}') + "." + b64(json.dumps(claims()).encode())
        mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        self.refused(rs256_config(), signing_input + "." + b64(mac), "algorithm is not one this API accepts")

    def test_alg_must_fit_key(self) -> None:
        """A token naming an accepted algorithm but another type's key (ES256 with the RSA kid) is refused."""
        token = sign(ec_key(), "ES256", claims(), kid="rsa-1")
        self.refused(rs256_config(), token, "algorithm does not fit its key")

    def test_bad_signature(self) -> None:
        """A token signed by another key of the same kid is refused as a bad signature."""
        other = RSAKey.generate_key(2048)
        self.refused(rs256_config(), sign(other, "RS256", claims(), kid="rsa-1"), "signature does not verify")
        config = {"type": "jwt", "algorithms": ["HS256"], "secret": SECRET}
        self.refused(config, sign("t" * 32, "HS256", claims()), "signature does not verify")

    def test_tampered_claims(self) -> None:
        """A valid token whose claims were changed after signing is refused as a bad signature."""
        head, _, signature = sign(rsa_key(), "RS256", claims(), kid="rsa-1").split(".")
        forged = head + "." + b64(json.dumps(claims(sub="admin")).encode()) + "." + signature
        self.refused(rs256_config(), forged, "signature does not verify")

    def test_unknown_kid(self) -> None:
        """A kid that is in no key of the set is refused as unknown."""
        token = sign(rsa_key(), "RS256", claims(), kid="rsa-9")
        self.refused(rs256_config(), token, "key id (kid) names no key")

    def test_garbage(self) -> None:
        """Tokens that are no JWS are refused as such: random text, two parts, bad base64, a non-JSON header."""
        for token in ("garbage", "a.b", "a.b.c", b64(b"not json") + ".e30.", "é.é.é", b64(b"[1]") + ".e30.sig"):
            self.refused(rs256_config(), token, "not a signed JWT")

    def test_claims_not_an_object(self) -> None:
        """A correctly signed token whose payload is not a JSON object is refused."""
        config = {"type": "jwt", "algorithms": ["HS256"], "secret": SECRET}
        signing_input = b64(b'{"alg":"HS256"}') + "." + b64(b"[1,2]")
        mac = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
        self.refused(config, signing_input + "." + b64(mac), "claims are not a JSON object")


class JwtSchemaTests(unittest.TestCase):
    """The 400s of ``type: jwt`` configurations, by field."""

    def refused(self, config: dict[str, Any], field: str, words: str) -> None:
        """Validating ``config`` is refused naming policy.auth.<field> with ``words``."""
        error = self.assertRaises(model.PolicyError, model.validate, {"auth": config}, "endpoint")
        self.assertEqual(error.field, "policy.auth." + field)
        self.assertIn(words, error.message)

    def test_accepts(self) -> None:
        """A jwks config and a secret config are accepted as given."""
        for config in (rs256_config(), {"type": "jwt", "algorithms": ["HS256", "HS512"], "secret": SECRET, "leeway_seconds": 0}):
            self.assertEqual(model.validate({"auth": config}, "endpoint"), {"auth": config})

    def test_algorithms(self) -> None:
        """algorithms is required, non-empty, from the list (none is not in it), without repeats."""
        self.refused({"type": "jwt", "secret": SECRET}, "algorithms", "is required")
        self.refused(rs256_config(algorithms=[]), "algorithms", "at least 1")
        self.refused(rs256_config(algorithms=["none"]), "algorithms[0]", "must be one of")
        self.refused(rs256_config(algorithms=["RS256", "RS256"]), "algorithms", "not valid")

    def test_key_kind_per_algorithm(self) -> None:
        """HS* with jwks, RS* with a secret, both or neither key: each refused at configuration."""
        self.refused(rs256_config(algorithms=["RS256", "HS256"]), "algorithms[1]", "needs 'secret'")
        self.refused({"type": "jwt", "algorithms": ["RS256"], "secret": SECRET}, "algorithms[0]", "needs 'jwks'")
        self.refused(rs256_config(secret=SECRET), "secret", "cannot both be given")
        self.refused({"type": "jwt", "algorithms": ["RS256"]}, "jwks", "is required")

    def test_secret_length(self) -> None:
        """A secret shorter than MIN_SECRET_BYTES or longer than MAX_SECRET is refused naming both lengths."""
        for length in (jwt.MIN_SECRET_BYTES - 1, jwt.MAX_SECRET + 1):
            config = {"type": "jwt", "algorithms": ["HS256"], "secret": "s" * length}
            self.refused(config, "secret", f"{jwt.MIN_SECRET_BYTES} to {jwt.MAX_SECRET} characters")

    def test_leeway_range(self) -> None:
        """leeway_seconds below 0 or above MAX_LEEWAY is refused with its range."""
        for value in (-1, jwt.MAX_LEEWAY + 1, 1.5):
            self.refused(rs256_config(leeway_seconds=value), "leeway_seconds", "leeway_seconds")

    def test_private_key_refused(self) -> None:
        """A private JWK in jwks is refused naming one of its private members (jwks is not masked)."""
        key = dict(rsa_key().as_dict(private=True))
        error = self.assertRaises(model.PolicyError, model.validate, {"auth": rs256_config(jwks={"keys": [key]})}, "endpoint")
        self.assertIn(error.field.removeprefix("policy.auth.jwks.keys[0]."), {"d", "p", "q", "dp", "dq", "qi"})
        self.assertIn("give the public key only", error.message)

    def test_unknown_key_member(self) -> None:
        """A member no public JWK has is refused by name, with the members a key may have."""
        key = dict(public(rsa_key()), kdi="rsa-1")
        self.refused(rs256_config(jwks={"keys": [key]}), "jwks.keys[0].kdi", "kty, kid, use, alg")
        self.assertEqual(set(jwt.JWK_SCHEMA["properties"]), set(jwt._PUBLIC_MEMBERS))

    def test_bad_keys(self) -> None:
        """An unparsable key, an oct key, many keys without kid, a repeated kid, an algorithm without key: refused."""
        self.refused(rs256_config(jwks={"keys": [{"kty": "RSA", "n": "AQAB"}]}), "jwks.keys[0]", "not a usable RSA key")
        self.refused(rs256_config(jwks={"keys": [{"kty": "oct"}]}), "jwks.keys[0].kty", "must be one of")
        no_kid = [public(RSAKey.generate_key(2048)), public(RSAKey.generate_key(2048))]
        self.refused(rs256_config(algorithms=["RS256"], jwks={"keys": no_kid}), "jwks.keys", "needs a 'kid'")
        twice = [public(rsa_key()), public(rsa_key())]
        self.refused(rs256_config(algorithms=["RS256"], jwks={"keys": twice}), "jwks.keys", "more than one key")
        self.refused(rs256_config(jwks={"keys": [public(rsa_key())]}), "algorithms[1]", "no key in 'jwks' verifies 'ES256'")
        self.refused(rs256_config(jwks={"keys": []}), "jwks.keys", "at least 1")
        too_many = [dict(public(rsa_key()), kid=str(i)) for i in range(jwt.MAX_JWKS_KEYS + 1)]
        self.refused(rs256_config(jwks={"keys": too_many}), "jwks.keys", f"at most {jwt.MAX_JWKS_KEYS}")
