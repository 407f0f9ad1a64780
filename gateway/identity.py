"""Client identity: the OIDC JWT a client sends as its PostgreSQL password, verified.

Every check that needs no key runs before the key lookup, so garbage, unsigned or foreign tokens never
cause a JWKS fetch. Only public keys are involved, so the order of checks leaks nothing secret. A failure
carries a reason code from the ``auth.failed`` schema, the claimed (unverified) identity for that event,
and a message that is safe to show the client: no failure ever echoes the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from pcigate.config.models import Identity

if TYPE_CHECKING:
    from gateway.jwks import JwksSource

__all__ = [
    "AuthFailure",
    "Kind",
    "Reason",
    "TokenVerifier",
    "VerifiedIdentity",
    "event_text",
    "key_fits",
    "unverified_claims",
]

log = logging.getLogger(__name__)

Kind = Literal["human", "agent", "service"]
Reason = Literal[
    "credential_missing",
    "credential_malformed",
    "signature_invalid",
    "issuer_untrusted",
    "audience_mismatch",
    "credential_expired",
    "credential_not_yet_valid",
    "key_unknown",
    "jwks_unavailable",
    "no_group_grants_connection",
]

_KINDS: Final = frozenset({"human", "agent", "service"})
_TYPS: Final = frozenset({"jwt", "at+jwt"})
_RSA_ALGS: Final = frozenset({"RS256", "RS384", "RS512", "PS256"})
_EC_CURVES: Final = {"ES256": "secp256r1", "ES384": "secp384r1"}
MIN_RSA_BITS: Final = 2048

MAX_CLAIM_CHARS: Final = 256
MAX_ISS_CHARS: Final = 512  # the envelope schema allows longer issuers than subjects
MAX_GROUPS: Final = 256
MAX_AMR: Final = 16
MAX_KID_CHARS: Final = 1024
# unverified_claims has no config: bound it by the largest max_token_bytes the config allows.
MAX_UNVERIFIED_BYTES: Final = 65536

# Characters the event schemas refuse in identity strings: C0/C1 controls and bidi overrides.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")

_MESSAGES: Final[Mapping[Reason, str]] = {
    "credential_missing": "no token was sent: "
    "use an identity token from your identity provider as the password",
    "credential_malformed": "the password is not a valid identity token (JWT): "
    "use a token from your identity provider as the password",
    "signature_invalid": "token signature is not valid",
    "issuer_untrusted": "token was not issued by the identity provider this gateway trusts",
    "audience_mismatch": "token is not meant for this gateway (audience mismatch): "
    "request a token for this gateway from your identity provider",
    "credential_expired": "token has expired; get a new one with your identity provider",
    "credential_not_yet_valid": "token is not valid yet; check your clock or get a new token",
    "key_unknown": "token is signed with a key this gateway does not know; "
    "get a new one with your identity provider",
    "jwks_unavailable": "the gateway cannot load the identity provider's signing keys right now; "
    "try again later",
    "no_group_grants_connection": "none of your groups may use this connection; "
    "ask for access to a group the connection allows",
}
# 28000 invalid_authorization_specification: nothing usable was presented, or we could not check it;
# 28P01 invalid_password: a token was presented and it is not good.
_SQLSTATE_28000: Final = frozenset(
    {"credential_missing", "credential_malformed", "jwks_unavailable", "no_group_grants_connection"}
)


def event_text(value: object, max_chars: int = MAX_CLAIM_CHARS) -> str | None:
    """``value`` if the event schemas accept it as an identity string (1..max chars, no controls)."""
    if isinstance(value, str) and 0 < len(value) <= max_chars and _UNSAFE.search(value) is None:
        return value
    return None


class AuthFailure(Exception):  # noqa: N818 -- the name is the contract
    """Why a token was refused, with what the ``auth.failed`` event and the client's ErrorResponse need.

    ``claimed_*`` and ``jti`` come from the unverified payload: they say who the token claims to be, never
    who it is. ``detail`` is for operator logs; like everything here it never contains the token.
    """

    def __init__(
        self,
        reason: Reason,
        client_message: str | None = None,
        *,
        detail: str = "",
        claimed_sub: object = None,
        claimed_iss: object = None,
        jti: object = None,
    ) -> None:
        self.reason: Reason = reason
        self.client_message: str = client_message or _MESSAGES[reason]
        self.detail: str = detail
        self.claimed_sub: str | None = event_text(claimed_sub)
        self.claimed_iss: str | None = event_text(claimed_iss, MAX_ISS_CHARS)
        self.jti: str | None = event_text(jti)
        super().__init__(f"{reason}: {detail or self.client_message}")

    @property
    def sqlstate(self) -> str:
        return "28000" if self.reason in _SQLSTATE_28000 else "28P01"

    def claiming(self, claims: Mapping[str, object]) -> AuthFailure:
        """The same failure, attributed to the identity an unverified payload claims."""
        return AuthFailure(
            self.reason,
            self.client_message,
            detail=self.detail,
            claimed_sub=claims.get("sub"),
            claimed_iss=claims.get("iss"),
            jti=claims.get("jti"),
        )


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """Who a verified token says the client is; every string already fits the event schemas."""

    sub: str
    iss: str
    name: str | None
    groups: tuple[str, ...]
    kind: Kind
    on_behalf_of: str | None
    jti: str | None
    expires_at: datetime
    amr: tuple[str, ...]


def key_fits(alg: str, key: jwt.PyJWK) -> bool:
    """Whether ``key`` may verify a token signed with ``alg``.

    Checked on the loaded key object, not only on JWK strings, so a key of the wrong type (an EC key for an
    RS256 token, an RSA key's bytes as an HMAC secret) can never reach the signature check whatever the
    JWKS or the token claim.
    """
    if key.algorithm_name != alg or key.public_key_use not in (None, "sig"):
        return False
    raw = getattr(key, "_jwk_data", None)
    declared = raw.get("alg") if isinstance(raw, dict) else None
    if declared is not None and declared != alg:
        return False
    obj: object = key.key
    if alg in _RSA_ALGS:
        return key.key_type == "RSA" and isinstance(obj, rsa.RSAPublicKey) and obj.key_size >= MIN_RSA_BITS
    curve = _EC_CURVES.get(alg)
    if curve is not None:
        return key.key_type == "EC" and isinstance(obj, ec.EllipticCurvePublicKey) and obj.curve.name == curve
    if alg == "EdDSA":
        return key.key_type == "OKP" and isinstance(obj, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_object(segment: str) -> dict[str, Any] | None:
    if len(segment) % 4 == 1 or not _B64URL.fullmatch(segment):
        return None
    try:
        value = json.loads(_b64decode(segment))
    except (ValueError, RecursionError, binascii.Error):
        return None
    return value if isinstance(value, dict) else None


def unverified_claims(token: str) -> dict[str, object]:
    """The payload of ``token`` without any verification, or ``{}``: only for the ``auth.failed`` event."""
    try:
        if not isinstance(token, str) or len(token) > MAX_UNVERIFIED_BYTES:
            return {}
        parts = token.split(".", 3)
        if len(parts) < 2:
            return {}
        return cast(dict[str, object], _json_object(parts[1]) or {})
    except Exception:  # best effort by contract: never raise from the failure path
        return {}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range (JSON allows thousands of digits)
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class _Parsed:
    alg: str
    kid: str | None
    claims: dict[str, Any]


class TokenVerifier:
    """Verifies client tokens against one issuer's keys; one instance serves every connection."""

    def __init__(self, config: Identity, keys: JwksSource, *, now: Callable[[], float] = time.time) -> None:
        self._config = config
        self._keys = keys
        self._now = now
        self._algorithms = frozenset(config.algorithms)
        self._leeway = config.leeway.total_seconds()
        self._max_bytes = config.max_token_bytes
        self._claims = config.claims
        # Time claims are checked here against the injectable clock; PyJWT checks presence, iss and aud.
        self._options: Any = {
            "require": ["exp", "iss", "aud", "sub"],
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_jti": False,
            "strict_aud": False,
        }

    async def verify(self, token: str) -> VerifiedIdentity:
        parsed = self._parse(token)
        try:
            key = await self._keys.key_for(parsed.kid, parsed.alg)
        except AuthFailure as exc:
            raise exc.claiming(parsed.claims) from None
        except Exception as exc:  # a broken key source must fail closed, with a reason the event accepts
            log.exception("JWKS lookup failed unexpectedly")
            raise AuthFailure("jwks_unavailable", detail=type(exc).__name__).claiming(parsed.claims) from None
        return self._check(token, parsed, key)

    # --- before the key: structure and header -------------------------------------------------------------

    def _parse(self, token: str) -> _Parsed:
        if not token:
            raise AuthFailure("credential_missing", detail="empty password")
        if not isinstance(token, str) or len(token) > self._max_bytes:
            # Not even parsed: an oversized token only costs us its length check.
            raise AuthFailure(
                "credential_malformed",
                f"token is larger than {self._max_bytes} bytes",
                detail=f"token longer than max_token_bytes ({self._max_bytes})",
            )
        parts = token.split(".")
        if len(parts) != 3:
            raise self._malformed(token, f"{len(parts)} segments, expected 3")
        header_seg, payload_seg, signature_seg = parts
        if (
            not header_seg
            or not payload_seg
            or len(signature_seg) % 4 == 1
            or not _B64URL.fullmatch(signature_seg)
        ):
            raise self._malformed(token, "segment is not base64url")
        header = _json_object(header_seg)
        if header is None:
            raise self._malformed(token, "header is not a base64url JSON object")
        claims = _json_object(payload_seg)
        if claims is None:
            raise self._malformed(token, "payload is not a base64url JSON object")

        def fail(reason: Reason, detail: str, message: str | None = None) -> AuthFailure:
            return AuthFailure(reason, message, detail=detail).claiming(claims)

        alg = header.get("alg")
        if not isinstance(alg, str):
            raise fail("credential_malformed", "header has no alg")
        if alg not in self._algorithms:
            raise fail("signature_invalid", f"alg {alg[:20]!r} is not allowed")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _TYPS):
            raise fail("credential_malformed", "typ is not JWT", "the password is not a JWT identity token")
        if "crit" in header or "b64" in header:
            raise fail("credential_malformed", "critical header extensions are not supported")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_CHARS):
            raise fail("credential_malformed", "kid is not a string")
        # Refused before the key lookup so foreign tokens never trigger a JWKS refresh; checked again,
        # verified, by PyJWT below.
        if claims.get("iss") != self._config.issuer:
            raise fail("issuer_untrusted", "iss is not the configured issuer")
        return _Parsed(alg, kid, claims)

    @staticmethod
    def _malformed(token: str, detail: str) -> AuthFailure:
        return AuthFailure("credential_malformed", detail=detail).claiming(unverified_claims(token))

    # --- with the key: signature, then claims --------------------------------------------------------------

    def _check(self, token: str, parsed: _Parsed, key: jwt.PyJWK) -> VerifiedIdentity:
        claimed = parsed.claims

        def fail(reason: Reason, detail: str, message: str | None = None) -> AuthFailure:
            return AuthFailure(reason, message, detail=detail).claiming(claimed)

        if not key_fits(parsed.alg, key):
            raise fail("signature_invalid", f"key {parsed.kid!r} ({key.key_type}) cannot verify {parsed.alg}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[parsed.alg],
                audience=self._config.audience,
                issuer=self._config.issuer,
                options=self._options,
            )
        except jwt.InvalidSignatureError:  # before DecodeError: it is a subclass
            raise fail("signature_invalid", "signature does not verify") from None
        except (jwt.InvalidAlgorithmError, jwt.InvalidKeyError) as exc:
            raise fail("signature_invalid", type(exc).__name__) from None
        except jwt.InvalidIssuerError:
            raise fail("issuer_untrusted", "iss does not match") from None
        except jwt.InvalidAudienceError:
            raise fail("audience_mismatch", "aud does not contain our audience") from None
        except jwt.MissingRequiredClaimError as exc:
            missing = {"aud": "audience_mismatch", "iss": "issuer_untrusted"}
            reason = cast(Reason, missing.get(exc.claim, "credential_malformed"))
            raise fail(reason, f"{exc.claim} claim missing", _missing_message(exc.claim, reason)) from None
        except jwt.PyJWTError as exc:
            raise fail("credential_malformed", type(exc).__name__) from None
        except Exception:  # fail closed on anything PyJWT did not anticipate
            log.exception("token verification failed unexpectedly")
            raise fail("signature_invalid", "unexpected verification error") from None
        return self._identity(claims, fail)

    def _identity(self, claims: dict[str, Any], fail: Callable[..., AuthFailure]) -> VerifiedIdentity:
        now = self._now()
        leeway = self._leeway
        exp = _number(claims.get("exp"))
        if exp is None:
            raise fail("credential_malformed", "exp is not a number")
        if exp <= now - leeway:
            raise fail("credential_expired", "exp passed")
        for name in ("nbf", "iat"):
            if claims.get(name) is None:
                continue
            when = _number(claims[name])
            if when is None:
                raise fail("credential_malformed", f"{name} is not a number")
            if when > now + leeway:
                raise fail("credential_not_yet_valid", f"{name} is in the future")
        try:
            expires_at = datetime.fromtimestamp(exp, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise fail("credential_malformed", "exp is out of range") from None

        sub = event_text(claims.get("sub"))
        if sub is None:
            raise fail(
                "credential_malformed", "sub is not a usable string", "token subject (sub) is not valid"
            )
        names = self._claims
        groups = _groups(claims.get(names.groups))
        if groups is None:
            raise fail(
                "credential_malformed",
                "groups claim invalid",
                f"token {names.groups!r} claim must be a list of at most {MAX_GROUPS} group names",
            )
        kind = claims.get(names.kind)
        if kind is None:
            kind = self._config.default_kind
        elif not isinstance(kind, str) or kind not in _KINDS:
            raise fail(
                "credential_malformed",
                "kind claim invalid",
                f"token {names.kind!r} claim must be human, agent or service",
            )
        on_behalf_of = claims.get(names.on_behalf_of)
        if on_behalf_of is not None:
            on_behalf_of = event_text(on_behalf_of)
            if on_behalf_of is None:
                raise fail(
                    "credential_malformed",
                    "on_behalf_of claim invalid",
                    f"token {names.on_behalf_of!r} claim must be a subject string",
                )
        return VerifiedIdentity(
            sub=sub,
            iss=self._config.issuer,
            # A display name is cosmetic: one the events cannot carry is dropped, not fatal.
            name=event_text(claims.get(names.name)),
            groups=groups,
            kind=cast(Kind, kind),
            on_behalf_of=on_behalf_of,
            jti=event_text(claims.get("jti")),
            expires_at=expires_at,
            amr=_amr(claims.get("amr")),
        )


def _missing_message(claim: str, reason: Reason) -> str | None:
    if reason != "credential_malformed":
        return None
    return f"token has no {claim!r} claim; get a new one with your identity provider"


def _groups(value: object) -> tuple[str, ...] | None:
    """Groups in claim order without duplicates, or None if the claim is not a list of group names."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_GROUPS:
        return None
    seen: dict[str, None] = {}
    for item in items:
        if event_text(item) is None:
            return None
        seen[item] = None
    return tuple(seen)


def _amr(value: object) -> tuple[str, ...]:
    """Authentication methods; informational, so malformed entries are dropped rather than refused."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return ()
    kept: dict[str, None] = {}
    for item in items[:MAX_GROUPS]:
        text = event_text(item)
        if text is not None:
            kept[text] = None
            if len(kept) == MAX_AMR:
                break
    return tuple(kept)
