"""The dev issuer's tokens verify against its JWKS the way a relying party would check them."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from pcigate.devstack import issuer


@pytest.fixture
def dev_issuer(tmp_path: Path) -> tuple[Path, Path]:
    key, jwks = tmp_path / "signing-key.pem", tmp_path / "jwks.json"
    issuer.ensure_issuer(key, jwks)
    return key, jwks


def verify(token: str, jwks_path: Path) -> dict[str, object]:
    keys = jwt.PyJWKSet.from_dict(json.loads(jwks_path.read_text()))
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    return jwt.decode(
        token, key.key, algorithms=["ES256"], audience=issuer.DEV_AUDIENCE, issuer=issuer.DEV_ISSUER
    )


def test_key_is_private_and_stable(dev_issuer: tuple[Path, Path]) -> None:
    key, jwks = dev_issuer
    assert key.stat().st_mode & 0o077 == 0
    first = jwks.read_text()
    issuer.ensure_issuer(key, jwks)
    assert jwks.read_text() == first


def test_human_token_round_trip(dev_issuer: tuple[Path, Path]) -> None:
    key, jwks = dev_issuer
    token = issuer.mint(key, issuer.TokenRequest(sub="alice@example.com", groups=("engineers", "oncall")))
    claims = verify(token, jwks)
    assert claims["sub"] == "alice@example.com"
    assert claims["groups"] == ["engineers", "oncall"]
    assert claims["kind"] == "human"
    assert "on_behalf_of" not in claims
    assert int(claims["exp"]) - int(claims["iat"]) == 900  # type: ignore[call-overload]


def test_agent_token_names_its_human(dev_issuer: tuple[Path, Path]) -> None:
    key, jwks = dev_issuer
    req = issuer.TokenRequest(
        sub="bot@example.com", groups=("agents",), kind="agent", on_behalf_of="alice@example.com"
    )
    claims = verify(issuer.mint(key, req), jwks)
    assert claims["kind"] == "agent"
    assert claims["on_behalf_of"] == "alice@example.com"


def test_agent_without_human_is_refused(dev_issuer: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="on-behalf-of"):
        issuer.mint(dev_issuer[0], issuer.TokenRequest(sub="bot", groups=(), kind="agent"))


def test_expired_token_fails_verification(dev_issuer: tuple[Path, Path]) -> None:
    key, jwks = dev_issuer
    token = issuer.mint(key, issuer.TokenRequest(sub="a", groups=(), ttl_seconds=60), now=1_000_000)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(token, jwks)


def test_kid_is_rfc7638_thumbprint() -> None:
    # RFC 7638 §3.1 gives the thumbprint input order crv, kty, x, y for EC keys; check our kid is
    # the SHA-256 of exactly that member set, independent of how we built it.
    jwk = issuer.public_jwk(ec.generate_private_key(ec.SECP256R1()))
    canonical = f'{{"crv":"P-256","kty":"EC","x":"{jwk["x"]}","y":"{jwk["y"]}"}}'
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    assert jwk["kid"] == expected


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400)]
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert issuer.parse_ttl(text) == seconds


@pytest.mark.parametrize("bad", ["", "0", "15x", "-5m", "25h", "2d"])
def test_parse_ttl_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        issuer.parse_ttl(bad)
