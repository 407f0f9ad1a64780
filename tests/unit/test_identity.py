"""Client token verification: good tokens pass, and every way of forging or bending one is refused with the
right auth.failed reason and a client message that never echoes the token."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

from gateway.identity import (
    AuthFailure,
    TokenVerifier,
    VerifiedIdentity,
    key_fits,
    unverified_claims,
)
from gateway.jwks import (
    FileJwks,
    JwksError,
    JwksSource,
    KeySet,
    StaticJwks,
    UrlJwks,
    jwks_source,
    parse_jwks,
)
from pcigate.config.models import ClaimNames, Identity
from pcigate.devstack import issuer

ISS = "https://idp.example.com"
AUD = "pcigate"
NOW = 1_800_000_000.0
LEEWAY = 30
ALGS = ("ES256", "RS256", "EdDSA", "PS256")
REASONS = {
    "credential_missing",
    "credential_malformed",
    "signature_invalid",
    "issuer_untrusted",
    "audience_mismatch",
    "credential_expired",
    "credential_not_yet_valid",
    "key_unknown",
    "jwks_unavailable",
}

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


# --- keys and tokens --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    """One real key per algorithm, plus an impostor for each (same kid, different key)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "RS256": rsa_key,
        "PS256": rsa_key,
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
        "ES256-other": ec.generate_private_key(ec.SECP256R1()),
        "RS256-other": rsa_other,
        "PS256-other": rsa_other,
        "EdDSA-other": ed25519.Ed25519PrivateKey.generate(),
    }


def public_jwk(key: PrivateKey, kid: str | None, alg: str | None = None) -> dict[str, Any]:
    pub = key.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(pub, as_dict=True)
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(pub, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(pub, as_dict=True)
    assert isinstance(jwk, dict)
    jwk = dict(jwk)
    if kid is not None:
        jwk["kid"] = kid
    if alg is not None:
        jwk["alg"] = alg
    return jwk


KID = {"ES256": "ec-1", "RS256": "rsa-1", "PS256": "rsa-1", "EdDSA": "ed-1"}


@pytest.fixture(scope="module")
def jwks(keys: dict[str, PrivateKey]) -> dict[str, Any]:
    # The RSA key has no "alg": it serves RS256 and PS256 alike, as the allow-list permits.
    return {
        "keys": [
            public_jwk(keys["ES256"], "ec-1", "ES256"),
            public_jwk(keys["RS256"], "rsa-1"),
            {**public_jwk(keys["EdDSA"], "ed-1"), "use": "sig"},
        ]
    }


def config(**overrides: Any) -> Identity:
    base: dict[str, Any] = {
        "issuer": ISS,
        "audience": AUD,
        "jwks": "file:/nonexistent/jwks.json",
        "algorithms": ALGS,
        "leeway": f"{LEEWAY}s",
    }
    return Identity.model_validate({**base, **overrides})


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_verifier(jwks_doc: dict[str, Any], clock: Clock | None = None, **overrides: Any) -> TokenVerifier:
    cfg = config(**overrides)
    return TokenVerifier(cfg, StaticJwks(parse_jwks(jwks_doc, cfg.algorithms)), now=clock or Clock())


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "alice@example.com",
        "name": "Alice",
        "groups": ["engineers", "oncall"],
        "iat": int(NOW) - 10,
        "nbf": int(NOW) - 10,
        "exp": int(NOW) + 600,
        "jti": "jti-123",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64(json.dumps(value).encode())


def sign(
    keys: dict[str, PrivateKey],
    alg: str,
    payload: dict[str, Any] | bytes | None = None,
    *,
    kid: str | None = "default",
    key: str | None = None,
    header: dict[str, Any] | None = None,
) -> str:
    """A compact JWS built by hand (so headers and payloads can be anything), signed with a real key."""
    head: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        head["kid"] = KID[alg] if kid == "default" else kid
    head.update(header or {})
    head = {k: v for k, v in head.items() if v is not None}
    body = payload if isinstance(payload, bytes) else json.dumps(claims() if payload is None else payload)
    body_bytes = body if isinstance(body, bytes) else body.encode()
    signing_input = f"{b64json(head)}.{b64(body_bytes)}".encode()
    algorithm = get_default_algorithms()[alg]
    signature = algorithm.sign(signing_input, keys[key or alg])
    return f"{signing_input.decode()}.{b64(signature)}"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def refused(verifier: TokenVerifier, token: str, reason: str) -> AuthFailure:
    with pytest.raises(AuthFailure) as info:
        await verifier.verify(token)
    failure = info.value
    assert failure.reason == reason, (failure.reason, failure.detail)
    # Nothing the client or the logs see carries the token, or its signature.
    signature = token.rsplit(".", 1)[-1]
    for text in (failure.client_message, failure.detail, str(failure)):
        if token:
            assert token not in text
        if len(signature) >= 16:
            assert signature not in text
    assert failure.sqlstate == (
        "28000" if reason in {"credential_missing", "credential_malformed", "jwks_unavailable"} else "28P01"
    )
    return failure


# --- good tokens ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA", "PS256"])
async def test_good_token_for_each_algorithm(
    alg: str, keys: dict[str, PrivateKey], jwks: dict[str, Any]
) -> None:
    verifier = make_verifier(jwks)
    token = sign(keys, alg, claims(groups=["engineers", "oncall", "engineers"], amr=["pwd", "otp"]))
    ident = await verifier.verify(token)
    assert ident == VerifiedIdentity(
        sub="alice@example.com",
        iss=ISS,
        name="Alice",
        groups=("engineers", "oncall"),
        kind="human",
        on_behalf_of=None,
        jti="jti-123",
        expires_at=datetime.fromtimestamp(NOW + 600, tz=UTC),
        amr=("pwd", "otp"),
    )
    assert ident.expires_at.tzinfo is UTC


async def test_pyjwt_encoded_tokens_verify(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    verifier = make_verifier(jwks)
    token = jwt.encode(claims(aud=["other", AUD]), keys["ES256"], algorithm="ES256", headers={"kid": "ec-1"})
    assert (await verifier.verify(token)).sub == "alice@example.com"


async def test_typ_variants(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    verifier = make_verifier(jwks)
    for typ in ("JWT", "jwt", "at+jwt", "AT+JWT"):
        await verifier.verify(sign(keys, "ES256", header={"typ": typ}))
    no_typ = sign(keys, "ES256", header={"typ": None})
    assert (await verifier.verify(no_typ)).sub == "alice@example.com"
    bad_typs: tuple[object, ...] = ("JOSE", "dpop+jwt", 1)
    for bad in bad_typs:
        await refused(verifier, sign(keys, "ES256", header={"typ": bad}), "credential_malformed")


async def test_kid_less_token_uses_the_only_key_for_its_alg(
    keys: dict[str, PrivateKey], jwks: dict[str, Any]
) -> None:
    verifier = make_verifier(jwks)
    assert (await verifier.verify(sign(keys, "EdDSA", kid=None))).sub == "alice@example.com"
    two_ec = {"keys": [*jwks["keys"], public_jwk(keys["ES256-other"], "ec-2")]}
    await refused(make_verifier(two_ec), sign(keys, "ES256", kid=None), "key_unknown")


# --- forged and bent tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA", "PS256"])
async def test_forged_with_same_kid(alg: str, keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    forged = sign(keys, alg, key=f"{alg}-other")
    failure = await refused(make_verifier(jwks), forged, "signature_invalid")
    assert failure.claimed_sub == "alice@example.com"
    assert failure.claimed_iss == ISS
    assert failure.jti == "jti-123"


async def test_tampered_payload(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    header, _, signature = sign(keys, "ES256").split(".")
    tampered = f"{header}.{b64json(claims(groups=['admins']))}.{signature}"
    await refused(make_verifier(jwks), tampered, "signature_invalid")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
async def test_alg_none(alg: str, jwks: dict[str, Any]) -> None:
    token = f"{b64json({'alg': alg, 'kid': 'ec-1'})}.{b64json(claims())}."
    await refused(make_verifier(jwks), token, "signature_invalid")


@pytest.mark.parametrize(
    ("alg", "key_name", "kid"), [("HS256", "RS256", "rsa-1"), ("HS256", "ES256", "ec-1")]
)
async def test_hmac_with_public_key_as_secret(
    alg: str, key_name: str, kid: str, keys: dict[str, PrivateKey], jwks: dict[str, Any]
) -> None:
    """The classic confusion attack: HMAC keyed with the public key PEM the verifier holds."""
    pem = (
        keys[key_name]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = f"{b64json({'alg': alg, 'typ': 'JWT', 'kid': kid})}.{b64json(claims())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    await refused(make_verifier(jwks), f"{signing_input}.{b64(mac)}", "signature_invalid")


async def test_alg_outside_allow_list(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    only_ec = make_verifier(jwks, algorithms=["ES256"])
    await refused(only_ec, sign(keys, "RS256"), "signature_invalid")
    await refused(only_ec, sign(keys, "EdDSA"), "signature_invalid")
    await only_ec.verify(sign(keys, "ES256"))


async def test_rs256_header_with_ec_kid(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    token = sign(keys, "RS256", kid="ec-1")  # signed with the real RSA key; the kid names the EC key
    await refused(make_verifier(jwks), token, "signature_invalid")
    token = sign(keys, "ES256", kid="rsa-1")
    await refused(make_verifier(jwks), token, "signature_invalid")


async def test_key_type_guard_does_not_trust_the_source(
    keys: dict[str, PrivateKey], jwks: dict[str, Any]
) -> None:
    """A source that hands back the wrong key for the alg is refused before PyJWT sees the token."""
    rsa_key = jwt.PyJWK(public_jwk(keys["RS256"], "rsa-1"), algorithm="RS256")

    class Liar(JwksSource):
        async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
            return rsa_key

    verifier = TokenVerifier(config(), Liar(), now=Clock())
    await refused(verifier, sign(keys, "ES256"), "signature_invalid")

    ec_key = jwt.PyJWK(public_jwk(keys["ES256"], "ec-1"), algorithm="ES256")
    ec_key.algorithm_name = "RS256"  # a key object that claims an algorithm it cannot serve
    assert not key_fits("RS256", ec_key)

    class Relabelled(JwksSource):
        async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
            return ec_key

    verifier = TokenVerifier(config(), Relabelled(), now=Clock())
    failure = await refused(verifier, sign(keys, "RS256"), "signature_invalid")
    assert "cannot verify" in failure.detail  # refused by the guard, not by a failed signature check
    assert not key_fits("ES384", jwt.PyJWK(public_jwk(keys["ES256"], "ec-1"), algorithm="ES256"))
    assert not key_fits("ES256", jwt.PyJWK({**public_jwk(keys["ES256"], "x"), "use": "enc"}))
    assert key_fits("ES256", jwt.PyJWK(public_jwk(keys["ES256"], "x")))
    assert key_fits("PS256", jwt.PyJWK(public_jwk(keys["RS256"], "x"), algorithm="PS256"))
    declared_rs = jwt.PyJWK(public_jwk(keys["RS256"], "x", "RS256"), algorithm="PS256")
    assert not key_fits("PS256", declared_rs)


async def test_key_with_declared_alg_serves_only_that_alg(keys: dict[str, PrivateKey]) -> None:
    doc = {"keys": [public_jwk(keys["RS256"], "rsa-1", "RS256")]}
    verifier = make_verifier(doc)
    await verifier.verify(sign(keys, "RS256"))
    await refused(verifier, sign(keys, "PS256"), "signature_invalid")


async def test_critical_header_refused(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    verifier = make_verifier(jwks)
    headers: list[dict[str, Any]] = [
        {"crit": ["exp"], "exp": 1},
        {"b64": False, "crit": ["b64"]},
        {"crit": []},
        {"b64": True},
    ]
    for header in headers:
        failure = await refused(verifier, sign(keys, "ES256", header=header), "credential_malformed")
        assert "critical" in failure.detail  # refused by us, before PyJWT's own crit handling


async def test_header_jwk_and_jku_are_ignored(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    """A token that brings its own key (jwk/jku/x5u) is still checked against our JWKS only."""
    attacker = keys["ES256-other"]
    header = {"jwk": public_jwk(attacker, "ec-1"), "jku": "https://evil.example/jwks.json"}
    await refused(
        make_verifier(jwks), sign(keys, "ES256", header=header, key="ES256-other"), "signature_invalid"
    )


async def test_unknown_kid(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    failure = await refused(make_verifier(jwks), sign(keys, "ES256", kid="nope"), "key_unknown")
    assert failure.claimed_sub == "alice@example.com"
    assert failure.jti == "jti-123"


@pytest.mark.parametrize("kid", [17, "", ["ec-1"], "k" * 1025])
async def test_bad_kid(kid: object, keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    await refused(make_verifier(jwks), sign(keys, "ES256", header={"kid": kid}), "credential_malformed")


# --- issuer, audience, times ------------------------------------------------------------------------------


class CountingSource(JwksSource):
    def __init__(self, inner: JwksSource) -> None:
        self.inner = inner
        self.calls = 0

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        self.calls += 1
        return await self.inner.key_for(kid, alg)


@pytest.mark.parametrize(
    "iss", ["https://evil.example.com", ISS + "/", ISS + ".evil", "https://idp.example", None, 5, ""]
)
async def test_wrong_issuer(iss: object, keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    cfg = config()
    source = CountingSource(StaticJwks(parse_jwks(jwks, cfg.algorithms)))
    verifier = TokenVerifier(cfg, source, now=Clock())
    await refused(verifier, sign(keys, "ES256", claims(iss=iss)), "issuer_untrusted")
    assert source.calls == 0  # foreign tokens never reach the key source (no JWKS refresh)


@pytest.mark.parametrize("aud", ["other", ["a", "b"], [], None, 7, ["pcigate2"], "PCIGATE"])
async def test_wrong_audience(aud: object, keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    await refused(make_verifier(jwks), sign(keys, "ES256", claims(aud=aud)), "audience_mismatch")


async def test_audience_list(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    await make_verifier(jwks).verify(sign(keys, "ES256", claims(aud=["x", AUD])))


async def test_expiry_with_leeway_boundaries(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    clock = Clock()
    verifier = make_verifier(jwks, clock)
    token = sign(keys, "ES256", claims(exp=int(NOW) + 100))
    clock.now = NOW + 100 + LEEWAY - 0.001
    await verifier.verify(token)
    clock.now = NOW + 100 + LEEWAY
    failure = await refused(verifier, token, "credential_expired")
    assert "expired" in failure.client_message
    clock.now = NOW + 10_000
    await refused(verifier, token, "credential_expired")


async def test_zero_leeway(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    clock = Clock()
    verifier = make_verifier(jwks, clock, leeway=0)
    token = sign(keys, "ES256", claims(exp=int(NOW) + 100, nbf=int(NOW) + 50, iat=int(NOW) + 50))
    clock.now = NOW + 49.999
    await refused(verifier, token, "credential_not_yet_valid")
    clock.now = NOW + 50
    await verifier.verify(token)
    clock.now = NOW + 100
    await refused(verifier, token, "credential_expired")


@pytest.mark.parametrize("field", ["nbf", "iat"])
async def test_not_yet_valid_with_leeway_boundaries(
    field: str, keys: dict[str, PrivateKey], jwks: dict[str, Any]
) -> None:
    clock = Clock()
    verifier = make_verifier(jwks, clock)
    token = sign(keys, "ES256", claims(**{field: int(NOW) + 100}))
    clock.now = NOW + 100 - LEEWAY
    await verifier.verify(token)
    clock.now = NOW + 100 - LEEWAY - 0.001
    await refused(verifier, token, "credential_not_yet_valid")
    clock.now = NOW
    await refused(verifier, token, "credential_not_yet_valid")


async def test_default_clock_is_wall_time(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    cfg = config()
    verifier = TokenVerifier(cfg, StaticJwks(parse_jwks(jwks, cfg.algorithms)))
    now = int(time.time())
    future = claims(iat=now + 3600, nbf=now + 3600, exp=now + 7200)
    await refused(verifier, sign(keys, "ES256", future), "credential_not_yet_valid")
    await verifier.verify(sign(keys, "ES256", claims(iat=now, nbf=now, exp=now + 60)))


@pytest.mark.parametrize(
    "exp", [None, "1800000600", True, [1], {"t": 1}, 1e300, 10**400, float("inf"), float("nan"), -1e300]
)
async def test_bad_or_missing_exp(exp: object, keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    payload = json.dumps(claims(exp=exp)).encode()  # json writes Infinity/NaN, and Python reads them back
    reason = "credential_expired" if exp == -1e300 else "credential_malformed"
    failure = await refused(make_verifier(jwks), sign(keys, "ES256", payload), reason)
    if exp is None:
        assert failure.detail == "exp claim missing"
        assert "'exp'" in failure.client_message


@pytest.mark.parametrize("field", ["nbf", "iat"])
async def test_bad_nbf_iat(field: str, keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    for value in ("soon", float("nan"), False):
        token = sign(keys, "ES256", json.dumps(claims(**{field: value})).encode())
        await refused(make_verifier(jwks), token, "credential_malformed")


@pytest.mark.parametrize("sub", [None, "", 42, ["a"], "x" * 257, "alice\n", "bob\u202e", "carol\x85"])
async def test_bad_or_missing_sub(sub: object, keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    failure = await refused(make_verifier(jwks), sign(keys, "ES256", claims(sub=sub)), "credential_malformed")
    assert failure.claimed_sub is None  # unusable in an event, so not reported


async def test_sub_of_256_chars(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    assert (await make_verifier(jwks).verify(sign(keys, "ES256", claims(sub="s" * 256)))).sub == "s" * 256


# --- shape of the token -----------------------------------------------------------------------------------


async def test_oversized_token_is_not_parsed(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    token = sign(keys, "ES256", claims(padding="p" * 200))
    await make_verifier(jwks, max_token_bytes=len(token)).verify(token)
    failure = await refused(
        make_verifier(jwks, max_token_bytes=len(token) - 1), token, "credential_malformed"
    )
    assert (failure.claimed_sub, failure.claimed_iss, failure.jti) == (None, None, None)
    assert str(len(token) - 1) in failure.client_message


GARBAGE = [
    "hunter2",
    "   ",
    "a.b",
    "a.b.c",
    "a.b.c.d",
    "....",
    "..",
    "eyJ.eyJ.",
    "é.é.é",
    "\x00",
    "Bearer x.y.z",
    "ey J.ey J.x",
    f"{b64json({'alg': 'ES256'})}.{b64json([1, 2])}.AAAA",
    f"{b64json([1])}.{b64json(claims())}.AAAA",
    f"{b64json({'alg': 'ES256'})}=.{b64json(claims())}.AAAA",
    f"{b64json({'alg': 'ES256'})}.{b64json(claims())}.A",
    f"{b64(b'not json')}.{b64json(claims())}.AAAA",
    f"{b64json({'alg': 'ES256'})}.{b64(b'{')}.AAAA",
    f"{b64json({'alg': 'ES256'})}.{b64(b'[' * 5000)}.AAAA",
]


@pytest.mark.parametrize("token", GARBAGE)
async def test_garbage(token: str, jwks: dict[str, Any]) -> None:
    await refused(make_verifier(jwks), token, "credential_malformed")


async def test_missing_credential(jwks: dict[str, Any]) -> None:
    failure = await refused(make_verifier(jwks), "", "credential_missing")
    assert failure.sqlstate == "28000"


async def test_header_without_alg(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    for alg in (None, 256):
        token = f"{b64json({'alg': alg, 'kid': 'ec-1'})}.{b64json(claims())}.AAAA"
        await refused(make_verifier(jwks), token, "credential_malformed")


async def test_two_segment_token_reports_claimed_identity(jwks: dict[str, Any]) -> None:
    token = f"{b64json({'alg': 'ES256'})}.{b64json(claims(sub='mallory'))}"
    failure = await refused(make_verifier(jwks), token, "credential_malformed")
    assert failure.claimed_sub == "mallory"


async def test_non_canonical_signature_encoding(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    token = sign(keys, "EdDSA")
    head, body, sig = token.split(".")
    # 64-byte Ed25519 signature: 86 base64url chars, the last one carrying 4 unused bits.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    bent = sig[:-1] + last[last.index(sig[-1]) ^ 1]
    await refused(make_verifier(jwks), f"{head}.{body}.{bent}", "credential_malformed")


FUZZ_KEY = ed25519.Ed25519PrivateKey.generate()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=200).map(lambda b: ".".join([b64(b)] * 3)))
def test_anything_is_refused_with_a_schema_reason(token: str) -> None:
    verifier = make_verifier({"keys": [public_jwk(FUZZ_KEY, "z")]})
    with pytest.raises(AuthFailure) as info:
        run(verifier.verify(token))
    assert info.value.reason in REASONS
    if len(token) >= 8 and token in info.value.client_message:  # shorter ones occur by chance
        # allowed only where the words are the message's own ("password"): the same message must come
        # back for an input that shares nothing with it
        with pytest.raises(AuthFailure) as plain:
            run(verifier.verify("#" * len(token)))
        assert info.value.client_message == plain.value.client_message


# --- claims -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ("admins", ("admins",)),
        (["a", "b", "a", "c", "b"], ("a", "b", "c")),
        ([], ()),
        (None, ()),
        (["g" * 256], ("g" * 256,)),
        ([f"g{i}" for i in range(256)], tuple(f"g{i}" for i in range(256))),
    ],
)
async def test_groups(
    groups: object, expected: tuple[str, ...], keys: dict[str, PrivateKey], jwks: dict[str, Any]
) -> None:
    ident = await make_verifier(jwks).verify(sign(keys, "ES256", claims(groups=groups)))
    assert ident.groups == expected


@pytest.mark.parametrize(
    "groups",
    [
        7,
        {"a": 1},
        ["a", 1],
        [["a"]],
        [""],
        ["g" * 257],
        ["ok", "bad\x00"],
        ["rtl\u2066"],
        [f"g{i}" for i in range(257)],
        True,
    ],
)
async def test_bad_groups(groups: object, keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    failure = await refused(
        make_verifier(jwks), sign(keys, "ES256", claims(groups=groups)), "credential_malformed"
    )
    assert "groups" in failure.client_message


@pytest.mark.parametrize("kind", ["human", "agent", "service"])
async def test_kind(kind: str, keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    ident = await make_verifier(jwks).verify(sign(keys, "ES256", claims(kind=kind, on_behalf_of="bob")))
    assert (ident.kind, ident.on_behalf_of) == (kind, "bob")


async def test_kind_defaults_from_config(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    ident = await make_verifier(jwks, default_kind="service").verify(sign(keys, "ES256"))
    assert ident.kind == "service"
    assert (await make_verifier(jwks).verify(sign(keys, "ES256"))).kind == "human"


@pytest.mark.parametrize("kind", ["robot", "Human", 1, ["agent"], ""])
async def test_bad_kind(kind: object, keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    await refused(make_verifier(jwks), sign(keys, "ES256", claims(kind=kind)), "credential_malformed")


@pytest.mark.parametrize("obo", [1, "", "x" * 257, ["bob"], "bob\t"])
async def test_bad_on_behalf_of(obo: object, keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    token = sign(keys, "ES256", claims(kind="agent", on_behalf_of=obo))
    await refused(make_verifier(jwks), token, "credential_malformed")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Alice", "Alice"), (None, None), ("", None), (7, None), ("Eve\u202egnirts", None), ("n" * 300, None)],
)
async def test_name_is_kept_only_when_an_event_can_carry_it(
    name: object, expected: str | None, keys: dict[str, PrivateKey], jwks: dict[str, Any]
) -> None:
    assert (await make_verifier(jwks).verify(sign(keys, "ES256", claims(name=name)))).name == expected


async def test_amr_and_jti(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    verifier = make_verifier(jwks)
    amr = ["pwd", 3, "", "mfa\x00", "otp", "pwd", *[f"m{i}" for i in range(30)]]
    ident = await verifier.verify(sign(keys, "ES256", claims(amr=amr, jti="j" * 257)))
    assert ident.amr == ("pwd", "otp", *[f"m{i}" for i in range(14)])
    assert ident.jti is None
    assert (await verifier.verify(sign(keys, "ES256", claims(amr="mfa", jti=None)))).amr == ("mfa",)
    assert (await verifier.verify(sign(keys, "ES256", claims(amr={"x": 1})))).amr == ()


async def test_custom_claim_names(keys: dict[str, PrivateKey], jwks: dict[str, Any]) -> None:
    names = ClaimNames(groups="roles", kind="actor_type", on_behalf_of="act_for", name="preferred_username")
    verifier = make_verifier(jwks, claims=names.model_dump())
    token = sign(
        keys,
        "ES256",
        claims(
            roles="dba", actor_type="agent", act_for="alice", preferred_username="bot-1", groups=7, kind="bad"
        ),
    )
    ident = await verifier.verify(token)
    assert (ident.groups, ident.kind, ident.on_behalf_of, ident.name) == (("dba",), "agent", "alice", "bot-1")


# --- failure details --------------------------------------------------------------------------------------


def test_auth_failure_drops_values_an_event_cannot_carry() -> None:
    failure = AuthFailure(
        "signature_invalid", claimed_sub="a\x00b", claimed_iss="https://" + "i" * 400, jti="j" * 257
    )
    assert failure.claimed_sub is None
    assert failure.claimed_iss == "https://" + "i" * 400  # issuers may be up to 512 characters
    assert failure.jti is None
    assert AuthFailure("key_unknown", claimed_iss="i" * 513).claimed_iss is None
    assert AuthFailure("key_unknown", claimed_sub=5).claimed_sub is None
    assert AuthFailure("credential_expired").sqlstate == "28P01"
    assert AuthFailure("credential_malformed").sqlstate == "28000"
    assert AuthFailure("jwks_unavailable").sqlstate == "28000"


def test_unverified_claims() -> None:
    token = f"{b64json({'alg': 'ES256'})}.{b64json({'sub': 'eve', 'n': 1})}.sig"
    assert unverified_claims(token) == {"sub": "eve", "n": 1}
    assert unverified_claims(f"x.{b64json({'sub': 'eve'})}") == {"sub": "eve"}
    for junk in (
        "",
        "x",
        "a.b.c",
        "a.!!!.c",
        f"x.{b64json([1])}.y",
        f"x.{b64(b'[' * 50_000)}.y",
        "x." * 40_000,
    ):
        assert unverified_claims(junk) == {}
    assert unverified_claims(None) == {}  # type: ignore[arg-type]
    assert unverified_claims(f"x.{b64json({'sub': 'e' * 70_000})}.y") == {}


async def test_a_broken_key_source_fails_closed(keys: dict[str, PrivateKey]) -> None:
    class Broken(JwksSource):
        async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
            raise RuntimeError("bug")

    failure = await refused(
        TokenVerifier(config(), Broken(), now=Clock()), sign(keys, "ES256"), "jwks_unavailable"
    )
    assert failure.claimed_sub == "alice@example.com"


# --- the dev issuer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "req",
    [
        issuer.TokenRequest(sub="alice@example.com", groups=("engineers", "oncall")),
        issuer.TokenRequest(sub="bot", groups=("agents",), kind="agent", on_behalf_of="alice@example.com"),
        issuer.TokenRequest(sub="etl", groups=(), kind="service", name="Nightly ETL", ttl_seconds=60),
    ],
)
async def test_dev_issuer_tokens(req: issuer.TokenRequest, tmp_path: Path) -> None:
    key_path, jwks_path = tmp_path / "key.pem", tmp_path / "jwks.json"
    jwk = issuer.ensure_issuer(key_path, jwks_path)
    cfg = Identity(
        issuer=issuer.DEV_ISSUER,
        audience=issuer.DEV_AUDIENCE,
        jwks=f"file:{jwks_path}",
        algorithms=("ES256",),
    )
    clock = Clock()
    verifier = TokenVerifier(cfg, jwks_source(cfg), now=clock)
    token = issuer.mint(key_path, req, now=NOW)
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"]
    ident = await verifier.verify(token)
    assert ident.sub == req.sub
    assert ident.iss == issuer.DEV_ISSUER
    assert ident.groups == req.groups
    assert ident.kind == req.kind
    assert ident.on_behalf_of == req.on_behalf_of
    assert ident.name == (req.name or req.sub)
    assert ident.expires_at == datetime.fromtimestamp(NOW + req.ttl_seconds, tz=UTC)
    clock.now = NOW + req.ttl_seconds + LEEWAY
    await refused(verifier, token, "credential_expired")
    other_aud = issuer.mint(key_path, issuer.TokenRequest(sub="a", groups=(), audience="elsewhere"), now=NOW)
    clock.now = NOW
    await refused(verifier, other_aud, "audience_mismatch")


# --- key sets ---------------------------------------------------------------------------------------------


def test_parse_jwks_skips_unusable_keys(
    keys: dict[str, PrivateKey], caplog: pytest.LogCaptureFixture
) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ec_private = keys["ES256"]
    assert isinstance(ec_private, ec.EllipticCurvePrivateKey)
    private_ec = ECAlgorithm.to_jwk(ec_private, as_dict=True)
    good = public_jwk(keys["ES256"], "good")
    doc = {
        "keys": [
            "not an object",
            {**private_ec, "kid": "private"},
            {**public_jwk(keys["ES256"], "enc"), "use": "enc"},
            {**public_jwk(keys["ES256"], "ops"), "key_ops": ["encrypt"]},
            {"kty": "oct", "k": b64(b"secret"), "kid": "oct"},
            {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "broken"},
            {"kty": "EC", "crv": "P-521", "x": "AAAA", "y": "AAAA", "kid": "p521"},
            {"kty": "XYZ", "kid": "xyz"},
            public_jwk(weak, "weak"),
            public_jwk(keys["ES256"], "hs", "HS256"),
            public_jwk(keys["ES256"], "mislabelled", "RS256"),
            {**public_jwk(keys["ES256"], None), "kid": 5},
            good,
        ]
    }
    with caplog.at_level(logging.DEBUG, logger="gateway.jwks"):
        keyset = parse_jwks(json.dumps(doc), ALGS)
    assert keyset.size == 1
    assert keyset.lookup("good", "ES256") is not None
    for kid in ("private", "enc", "ops", "oct", "broken", "p521", "xyz", "weak", "hs", "mislabelled"):
        assert keyset.lookup(kid, "ES256") is None, kid
        assert keyset.lookup(kid, "RS256") is None, kid
    assert any("private" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert "AAAA" not in caplog.text  # key material never logged


@pytest.mark.parametrize(
    "doc", [b"not json", b"[]", b'{"keys": {}}', b'{"keys": []}', b'{"keys": [1, {}]}', b"{}"]
)
def test_parse_jwks_refuses_documents_without_usable_keys(doc: bytes) -> None:
    with pytest.raises(JwksError):
        parse_jwks(doc, ALGS)


def test_rsa_key_serves_each_allowed_rsa_alg(keys: dict[str, PrivateKey]) -> None:
    keyset = parse_jwks({"keys": [public_jwk(keys["RS256"], "r")]}, ("RS256", "PS256", "ES256"))
    rs, ps = keyset.lookup("r", "RS256"), keyset.lookup("r", "PS256")
    assert rs is not None and ps is not None
    assert (rs.algorithm_name, ps.algorithm_name) == ("RS256", "PS256")
    assert keyset.lookup("r", "RS384") is not None  # the kid is known: its key, for the verifier to refuse
    assert not key_fits("RS384", keyset.lookup("r", "RS384"))  # type: ignore[arg-type]
    assert keyset.lookup(None, "RS256") is rs
    assert KeySet().lookup("r", "RS256") is None


# --- the JWKS file ----------------------------------------------------------------------------------------


def write_jwks(path: Path, doc: object, mtime: float) -> None:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    os.utime(path, (mtime, mtime))


async def test_file_jwks_reloads_on_change_at_most_once_a_second(
    keys: dict[str, PrivateKey], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jwks.json"
    clock = Clock(100.0)
    source = FileJwks(path, ALGS, now=clock)
    with pytest.raises(AuthFailure) as info:
        await source.key_for("ec-1", "ES256")
    assert info.value.reason == "jwks_unavailable"

    clock.now += 1
    write_jwks(path, {"keys": [public_jwk(keys["ES256"], "ec-1")]}, 1000)
    assert (await source.key_for("ec-1", "ES256")).key_id == "ec-1"

    write_jwks(path, {"keys": [public_jwk(keys["ES256-other"], "ec-2")]}, 2000)
    clock.now += 0.5
    assert (await source.key_for("ec-1", "ES256")).key_id == "ec-1"  # not re-checked yet
    clock.now += 0.5
    with pytest.raises(AuthFailure) as info:
        await source.key_for("ec-1", "ES256")
    assert info.value.reason == "key_unknown"
    assert (await source.key_for("ec-2", "ES256")).key_id == "ec-2"

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.jwks"):
        write_jwks(path, '{"keys": [', 3000)
        clock.now += 1
        assert (await source.key_for("ec-2", "ES256")).key_id == "ec-2"  # last good set kept
        clock.now += 1
        await source.key_for("ec-2", "ES256")
        path.unlink()
        clock.now += 1
        await source.key_for("ec-2", "ES256")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once per distinct problem, not once per second
    assert "keeping the last good key set" in warnings[0].getMessage()

    write_jwks(path, {"keys": [public_jwk(keys["ES256"], "ec-3")]}, 4000)
    clock.now += 1
    assert (await source.key_for("ec-3", "ES256")).key_id == "ec-3"


async def test_file_jwks_refuses_huge_files(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_bytes(b" " * (1 << 20) + b'{"keys": []}')
    with pytest.raises(AuthFailure) as info:
        await FileJwks(path, ALGS).key_for(None, "ES256")
    assert info.value.reason == "jwks_unavailable"


def test_jwks_source_from_config(tmp_path: Path) -> None:
    file_source = jwks_source(config(jwks=f"file:{tmp_path}/jwks.json"))
    assert isinstance(file_source, FileJwks)
    assert file_source.path == tmp_path / "jwks.json"
    url_source = jwks_source(config(jwks="https://idp.example.com/.well-known/jwks.json", jwks_refresh="2m"))
    assert isinstance(url_source, UrlJwks)
    assert url_source.url == "https://idp.example.com/.well-known/jwks.json"
    with pytest.raises(ValueError, match="https"):
        UrlJwks("http://idp.example.com/jwks", ALGS)
    UrlJwks("http://127.0.0.1:1/jwks", ALGS)


def test_leeway_config_is_seconds() -> None:
    assert config(leeway="2m").leeway == timedelta(minutes=2)
