"""The dev OIDC issuer: an ES256 signing key, its JWKS, and tokens for `pcigate token`.

Production verifies tokens from a real identity provider; the dev issuer exists so a newcomer can mint
identities (humans, agents acting on behalf of a human, services) without one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pcigate.devstack.files import write_json, write_private

DEV_ISSUER = "https://dev.pcigate.local"
DEV_AUDIENCE = "pcigate"
MAX_TTL_SECONDS = 24 * 3600

Kind = Literal["human", "agent", "service"]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public JWK with its RFC 7638 thumbprint as ``kid``."""
    nums = key.public_key().public_numbers()
    jwk = {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64url(nums.x.to_bytes(32, "big")),
        "y": _b64url(nums.y.to_bytes(32, "big")),
    }
    thumb = _b64url(hashlib.sha256(json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()).digest())
    return {**jwk, "kid": thumb, "alg": "ES256", "use": "sig"}


def ensure_issuer(key_path: Path, jwks_path: Path) -> dict[str, str]:
    """Create the signing key once; (re)write the JWKS from it. Returns the public JWK."""
    if key_path.exists():
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        key = loaded
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
    jwk = public_jwk(key)
    write_json(jwks_path, {"keys": [jwk]}, mode=0o644)
    return jwk


_TTL = re.compile(r"^(\d+)([smhd]?)$")


def parse_ttl(text: str) -> int:
    """``90``, ``30s``, ``15m``, ``2h``, ``1d`` → seconds; bounded so dev tokens stay short-lived."""
    m = _TTL.match(text.strip())
    if not m:
        raise ValueError(f"invalid ttl {text!r}: use a number with s, m, h or d (e.g. 15m)")
    seconds = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if not 0 < seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl must be between 1s and {MAX_TTL_SECONDS // 3600}h")
    return seconds


@dataclass(frozen=True)
class TokenRequest:
    sub: str
    groups: tuple[str, ...]
    kind: Kind = "human"
    on_behalf_of: str | None = None
    name: str | None = None
    ttl_seconds: int = 900
    audience: str = DEV_AUDIENCE
    issuer: str = DEV_ISSUER


def mint(key_path: Path, req: TokenRequest, now: float | None = None) -> str:
    if req.kind == "agent" and not req.on_behalf_of:
        raise ValueError(
            "an agent token needs --on-behalf-of: the human an agent acts for is part of its identity"
        )
    loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": req.issuer,
        "aud": req.audience,
        "sub": req.sub,
        "name": req.name or req.sub,
        "groups": list(req.groups),
        "kind": req.kind,
        "iat": issued,
        "nbf": issued,
        "exp": issued + req.ttl_seconds,
        "jti": str(uuid.uuid4()),
    }
    if req.on_behalf_of:
        claims["on_behalf_of"] = req.on_behalf_of
    return jwt.encode(claims, loaded, algorithm="ES256", headers={"kid": public_jwk(loaded)["kid"]})
