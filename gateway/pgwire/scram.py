"""Upstream password authentication client: SCRAM-SHA-256[-PLUS] (RFC 5802/7677), md5 and cleartext.

Pure and I/O-free: the session feeds the server's Authentication requests in and writes the returned bytes.
The gateway logs in upstream with vaulted credentials, so this is a security boundary: every server message
is validated strictly, SCRAM must prove the server knows the password before AuthenticationOk is accepted,
and no error text ever contains the password.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from collections import OrderedDict
from collections.abc import Collection, Sequence
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from . import messages as m

SCRAM_SHA_256: Final = "SCRAM-SHA-256"
SCRAM_SHA_256_PLUS: Final = "SCRAM-SHA-256-PLUS"
MIN_ITERATIONS: Final = 4096  # RFC 7677's minimum and PostgreSQL's default: fewer is a downgrade
MAX_ITERATIONS: Final = 1_000_000  # bounds the CPU a hostile upstream can make us burn
_NONCE_BYTES: Final = 18  # as libpq
_MAX_SERVER_ERROR: Final = 200


class AuthError(Exception):
    """Upstream authentication failed or the server misbehaved. Never carries the password."""


# --- helpers --------------------------------------------------------------------------------------------


def _password_bytes(password: str) -> bytes:
    try:
        return password.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise AuthError("the upstream password is not encodable as UTF-8") from None


def _prohibited(ch: str) -> bool:
    return (
        stringprep.in_table_c21_c22(ch)
        or stringprep.in_table_c3(ch)
        or stringprep.in_table_c4(ch)
        or stringprep.in_table_c5(ch)
        or stringprep.in_table_c6(ch)
        or stringprep.in_table_c7(ch)
        or stringprep.in_table_c8(ch)
        or stringprep.in_table_c9(ch)
        or stringprep.in_table_a1(ch)
    )


def saslprep(password: str) -> bytes:
    """RFC 4013 SASLprep as PostgreSQL's pg_saslprep applies it, returning the bytes to hash.

    Follows PostgreSQL rather than the letter of the RFC, because the stored verifier was made by it: pure
    ASCII passes unchanged; unassigned code points are prohibited; the prohibition and bidi checks look at
    the mapped (pre-NFKC) characters; and whenever preparation fails (including an empty result) the raw
    password bytes are used, as libpq does.
    """
    raw = _password_bytes(password)
    if raw.isascii():
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    mapped = [" " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)]
    if not mapped or any(_prohibited(ch) for ch in mapped):
        return raw
    if any(stringprep.in_table_d1(ch) for ch in mapped) and (
        any(stringprep.in_table_d2(ch) for ch in mapped)
        or not stringprep.in_table_d1(mapped[0])
        or not stringprep.in_table_d1(mapped[-1])
    ):
        return raw
    return unicodedata.normalize("NFKC", "".join(mapped)).encode("utf-8")


def tls_server_end_point(der_cert: bytes) -> bytes:
    """RFC 5929 tls-server-end-point channel-binding data: the hash of the server's DER certificate with its
    signature's hash, upgraded to SHA-256 when that is MD5 or SHA-1."""
    try:
        algorithm = x509.load_der_x509_certificate(der_cert).signature_hash_algorithm
    except (ValueError, UnsupportedAlgorithm):
        raise AuthError("cannot read the upstream server certificate's signature algorithm") from None
    if algorithm is None:
        raise AuthError(
            "the upstream server certificate's signature algorithm has no hash (e.g. Ed25519): "
            "tls-server-end-point channel binding is undefined for it"
        )
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(der_cert)
    return digest.finalize()


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    """PostgreSQL's md5 response, without its NUL: b"md5" + hex(md5(hex(md5(password + user)) + salt))."""
    if len(salt) != 4:
        raise AuthError(f"the server's md5 salt is {len(salt)} bytes, not 4")
    inner = hashlib.md5(_password_bytes(password) + _password_bytes(user), usedforsecurity=False)
    outer = hashlib.md5(inner.hexdigest().encode("ascii") + salt, usedforsecurity=False)
    return b"md5" + outer.hexdigest().encode("ascii")


def _hmac(key: bytes, data: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def _escape_saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def _valid_nonce(nonce: str) -> bool:
    return bool(nonce) and all(0x21 <= ord(c) <= 0x7E and c != "," for c in nonce)


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AuthError(f"malformed SCRAM message: invalid base64 in {what}") from None


class ScramKeyCache:
    """Derived (ClientKey, ServerKey) per (password, salt, iterations).

    PBKDF2 at 4096 iterations costs milliseconds of CPU on the event loop for every upstream login; the
    server's salt and count rarely change, so a pool that reconnects can skip it. Keys are as sensitive as
    the password they come from and live only in this process's memory; the password is looked up by a
    keyed hash under a per-cache random secret, so the cache itself holds no fast-to-crack password hash.
    """

    def __init__(self, maxsize: int = 256) -> None:
        self._maxsize = maxsize
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[tuple[bytes, bytes, int], tuple[bytes, bytes]] = OrderedDict()

    def _key(self, password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes, int]:
        return hmac.digest(self._secret, password, "sha256"), salt, iterations

    def get(self, password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes] | None:
        key = self._key(password, salt, iterations)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, password: bytes, salt: bytes, iterations: int, keys: tuple[bytes, bytes]) -> None:
        self._entries[self._key(password, salt, iterations)] = keys
        self._entries.move_to_end(self._key(password, salt, iterations))
        while len(self._entries) > self._maxsize:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def derive_keys(prepared_password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(ClientKey, ServerKey) from SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)."""
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
    salted = kdf.derive(prepared_password)
    return _hmac(salted, b"Client Key"), _hmac(salted, b"Server Key")


# --- SCRAM ----------------------------------------------------------------------------------------------


class ScramSha256Client:
    """One SCRAM-SHA-256 exchange, client side. Call in order: ``mechanism_for`` (optional), ``client_first``,
    ``client_final``, ``verify_server_final``; ``verified`` is True only after the server proved itself.

    PostgreSQL takes the user from the startup packet and sends an empty SCRAM username (``n=``); so do we,
    unless ``username`` is given (RFC test vectors).
    """

    def __init__(
        self,
        user: str,
        password: str,
        *,
        channel_binding: bytes | None = None,
        nonce: str | None = None,
        username: str = "",
        require_channel_binding: bool = False,
        min_iterations: int = MIN_ITERATIONS,
        max_iterations: int = MAX_ITERATIONS,
        key_cache: ScramKeyCache | None = None,
    ) -> None:
        if require_channel_binding and not channel_binding:
            raise AuthError("channel binding is required but no TLS server certificate data was given")
        self.user = user
        self._password = saslprep(password)
        self._cb_data = channel_binding or None
        self._require_cb = require_channel_binding
        if nonce is None:
            nonce = base64.b64encode(secrets.token_bytes(_NONCE_BYTES)).decode("ascii")
        elif not _valid_nonce(nonce):
            raise ValueError("a SCRAM nonce is printable ASCII without ','")
        self._nonce = nonce
        self._username = username
        self._min_iterations = min_iterations
        self._max_iterations = max_iterations
        self._cache = key_cache
        self.mechanism: str | None = None
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_signature: bytes | None = None
        self._state = "start"
        self.verified = False

    def mechanism_for(self, offered: Sequence[str]) -> str:
        """Pick the mechanism: -PLUS when we have channel-binding data and the server offers it."""
        if self._state != "start":
            raise AuthError("SCRAM mechanism chosen twice")
        if self._cb_data is not None and SCRAM_SHA_256_PLUS in offered:
            self.mechanism = SCRAM_SHA_256_PLUS
        elif self._require_cb:
            raise AuthError(
                "channel binding is required, but the upstream server does not offer SCRAM-SHA-256-PLUS"
            )
        elif SCRAM_SHA_256 in offered:
            self.mechanism = SCRAM_SHA_256
        else:
            names = ", ".join(repr(o[:40]) for o in offered[:8]) or "none"
            raise AuthError(f"the upstream server offers no supported SASL mechanism ({names})")
        return self.mechanism

    def client_first(self) -> bytes:
        if self._state != "start":
            raise AuthError("SCRAM client-first already sent")
        if self.mechanism is None:
            self.mechanism_for([SCRAM_SHA_256])
        if self.mechanism == SCRAM_SHA_256_PLUS:
            self._gs2_header = "p=tls-server-end-point,,"
        elif self._cb_data is not None:
            self._gs2_header = "y,,"  # we could bind but the server did not offer: lets it detect a downgrade
        else:
            self._gs2_header = "n,,"
        self._client_first_bare = f"n={_escape_saslname(self._username)},r={self._nonce}"
        self._state = "first"
        return (self._gs2_header + self._client_first_bare).encode("utf-8")

    def client_final(self, server_first: bytes) -> bytes:
        if self._state != "first":
            raise AuthError("unexpected SCRAM server-first-message")
        self._state = "failed"
        try:
            text = bytes(server_first).decode("ascii")
        except UnicodeDecodeError:
            raise AuthError("malformed SCRAM server-first-message: not ASCII") from None
        parts = text.split(",")
        if parts and parts[0].startswith("m="):
            raise AuthError("the SCRAM server requires an unsupported mandatory extension")
        if len(parts) != 3 or not all(p[:2] == a for p, a in zip(parts, ("r=", "s=", "i="), strict=True)):
            raise AuthError("malformed SCRAM server-first-message: expected r=,s=,i= and nothing else")
        nonce, salt_b64, iter_text = (p[2:] for p in parts)
        if not nonce.startswith(self._nonce) or len(nonce) <= len(self._nonce) or not _valid_nonce(nonce):
            raise AuthError("the SCRAM server nonce does not extend our nonce")
        salt = _b64decode(salt_b64, "salt")
        if not salt:
            raise AuthError("malformed SCRAM server-first-message: empty salt")
        if not (iter_text.isascii() and iter_text.isdigit()) or len(iter_text) > 10:
            raise AuthError("malformed SCRAM server-first-message: invalid iteration count")
        iterations = int(iter_text)
        if iterations < self._min_iterations:
            raise AuthError(
                f"the SCRAM server asks for {iterations} iterations, fewer than the minimum "
                f"{self._min_iterations}: refusing a weakened exchange"
            )
        if iterations > self._max_iterations:
            raise AuthError(
                f"the SCRAM server asks for {iterations} iterations, "
                f"more than the maximum {self._max_iterations}"
            )
        cbind = self._gs2_header.encode("ascii")
        if self.mechanism == SCRAM_SHA_256_PLUS:
            assert self._cb_data is not None
            cbind += self._cb_data
        without_proof = f"c={base64.b64encode(cbind).decode('ascii')},r={nonce}"
        auth_message = f"{self._client_first_bare},{text},{without_proof}".encode()
        keys = self._cache.get(self._password, salt, iterations) if self._cache is not None else None
        if keys is None:
            keys = derive_keys(self._password, salt, iterations)
            if self._cache is not None:
                self._cache.put(self._password, salt, iterations, keys)
        client_key, server_key = keys
        signature = _hmac(_sha256(client_key), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(server_key, auth_message)
        self._state = "final"
        return f"{without_proof},p={base64.b64encode(proof).decode('ascii')}".encode("ascii")

    def verify_server_final(self, server_final: bytes) -> None:
        if self._state != "final" or self._server_signature is None:
            raise AuthError("unexpected SCRAM server-final-message")
        self._state = "failed"
        try:
            text = bytes(server_final).decode("ascii")
        except UnicodeDecodeError:
            raise AuthError("malformed SCRAM server-final-message: not ASCII") from None
        if text.startswith("e="):
            reason = "".join(c for c in text[2:_MAX_SERVER_ERROR] if c.isprintable())
            raise AuthError(f"the upstream server rejected SCRAM authentication: {reason}")
        if not text.startswith("v=") or "," in text:
            raise AuthError("malformed SCRAM server-final-message: expected v=")
        signature = _b64decode(text[2:], "server signature")
        if not hmac.compare_digest(signature, self._server_signature):
            raise AuthError(
                "the upstream server's SCRAM signature is wrong: it did not prove it knows the password"
            )
        self._state = "done"
        self.verified = True


# --- the whole exchange ---------------------------------------------------------------------------------

AUTH_METHODS: Final = frozenset({"none", "password", "md5", "scram-sha-256"})
_UNSUPPORTED: Final = {
    m.AUTH_KERBEROS_V5: "Kerberos V5",
    6: "SCM credentials",
    m.AUTH_GSS: "GSSAPI",
    m.AUTH_GSS_CONTINUE: "GSSAPI",
    m.AUTH_SSPI: "SSPI",
}


class PasswordAuthenticator:
    """Answers one upstream server's Authentication requests until AuthenticationOk.

    ``respond(code, payload)`` takes ``messages.parse_authentication``'s result and returns the message to
    send, or None when nothing is to be sent; ``done`` turns True on an acceptable AuthenticationOk.
    ``allowed`` narrows the methods like libpq's require_auth ("none" = the server asked for nothing), and
    only one method may run per connection, so a server cannot switch to a weaker one mid-exchange.
    """

    def __init__(
        self,
        user: str,
        password: str,
        *,
        channel_binding: bytes | None = None,
        require_channel_binding: bool = False,
        allowed: Collection[str] = AUTH_METHODS,
        nonce: str | None = None,
        min_iterations: int = MIN_ITERATIONS,
        max_iterations: int = MAX_ITERATIONS,
        key_cache: ScramKeyCache | None = None,
    ) -> None:
        unknown = set(allowed) - AUTH_METHODS
        if unknown:
            raise ValueError(f"unknown authentication methods {sorted(unknown)}")
        if "\0" in password:
            raise AuthError("the upstream password contains a NUL character, which PostgreSQL cannot accept")
        if require_channel_binding and not channel_binding:
            raise AuthError("channel binding is required but no TLS server certificate data was given")
        self._user = user
        self._password = password
        self._allowed = frozenset(allowed)
        self._require_cb = require_channel_binding
        self._new_scram = functools.partial(
            ScramSha256Client,
            user,
            password,
            channel_binding=channel_binding,
            nonce=nonce,
            require_channel_binding=require_channel_binding,
            min_iterations=min_iterations,
            max_iterations=max_iterations,
            key_cache=key_cache,
        )
        self._scram: ScramSha256Client | None = None
        self.method: str | None = None
        self.done = False

    def _start(self, method: str) -> None:
        if self.method is not None:
            raise AuthError(f"the upstream server asked for {method} after {self.method} had started")
        if method not in self._allowed:
            raise AuthError(f"the upstream server asked for {method} authentication, which is not allowed")
        if self._require_cb and method != "scram-sha-256":
            raise AuthError(f"channel binding is required, but the upstream server asked for {method}")
        self.method = method

    def respond(self, code: int, payload: bytes) -> bytes | None:
        if self.done:
            raise AuthError("authentication request after AuthenticationOk")
        if code == m.AUTH_OK:
            self._ok()
            return None
        if code == m.AUTH_CLEARTEXT_PASSWORD:
            self._start("password")
            return m.password_message(_password_bytes(self._password))
        if code == m.AUTH_MD5_PASSWORD:
            self._start("md5")
            return m.password_message(md5_password(self._user, self._password, payload))
        if code == m.AUTH_SASL:
            self._start("scram-sha-256")
            try:
                offered = m.parse_sasl_mechanisms(payload)
            except m.ProtocolError:
                raise AuthError("malformed SASL mechanism list from the upstream server") from None
            scram = self._new_scram()
            self._scram = scram
            mechanism = scram.mechanism_for(offered)
            return m.sasl_initial_response(mechanism, scram.client_first())
        if code == m.AUTH_SASL_CONTINUE:
            if self._scram is None:
                raise AuthError("SASLContinue without a SASL exchange")
            return m.sasl_response(self._scram.client_final(payload))
        if code == m.AUTH_SASL_FINAL:
            if self._scram is None:
                raise AuthError("SASLFinal without a SASL exchange")
            self._scram.verify_server_final(payload)
            return None
        what = _UNSUPPORTED.get(code, f"unknown ({code})")
        raise AuthError(
            f"the upstream server asked for {what} authentication, which the gateway does not support"
        )

    def _ok(self) -> None:
        if self.method is None:
            self._start("none")
        elif self._scram is not None and not self._scram.verified:
            raise AuthError("the upstream server sent AuthenticationOk before completing SCRAM")
        if self._require_cb and (self._scram is None or self._scram.mechanism != SCRAM_SHA_256_PLUS):
            raise AuthError("channel binding is required, but the upstream server did not use it")
        self.done = True
